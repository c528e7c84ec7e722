//! What the guest sends that we decode into pixels: bitmaps of every format (with palettes,
//! strides, chunking, top-down or not) drawn by COPY / BLEND / OPAQUE / TRANSPARENT /
//! ALPHA_BLEND onto surfaces of every format, and cursor shapes of every type through
//! `shape_argb`. Structure-aware: the fuzzer picks the fields, this target lays out valid
//! pointers, so the decoders are reached on nearly every input. (QUIC is not decoded yet.)
//!
//! Input: see the `r.*()` reads below in order; the rest of the input is the pixel data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saffron_fuzz::*;
use saffron_ring::abi::*;
use saffron_ring::parse::{
    Command, Context, CursorCmdKind, SurfaceFormat, SurfaceMemory, parse_command,
};
use saffron_worker::{Renderer, Surface, SurfaceTable, shape_argb};
use std::sync::OnceLock;
use vm_memory::{ByteValued, GuestAddress, GuestMemoryMmap};

static MEM: OnceLock<GuestMemoryMmap> = OnceLock::new();

const SURFACE_FORMATS: [u32; 6] = [
    SPICE_SURFACE_FMT_32_xRGB,
    SPICE_SURFACE_FMT_32_ARGB,
    SPICE_SURFACE_FMT_16_565,
    SPICE_SURFACE_FMT_16_555,
    SPICE_SURFACE_FMT_8_A,
    SPICE_SURFACE_FMT_1_A,
];
const DRAWS: [u8; 5] = [
    QXL_DRAW_COPY,
    QXL_DRAW_BLEND,
    QXL_DRAW_OPAQUE,
    QXL_DRAW_TRANSPARENT,
    QXL_DRAW_ALPHA_BLEND,
];

fuzz_target!(|data: &[u8]| {
    let mem = MEM.get_or_init(memory);
    let mut r = Reader::new(data);
    // Destination surface 1 of a fuzzed format, 64 × 64 at VRAM 0.
    let fmt = SURFACE_FORMATS[usize::from(r.u8()) % SURFACE_FORMATS.len()];
    let format = SurfaceFormat::from_raw(fmt).expect("listed");
    let stride = (64 * format.bits_per_pixel())
        .div_ceil(8)
        .next_multiple_of(4);
    let mut surfaces = SurfaceTable::new(N_SURFACES);
    let dest = SurfaceMemory {
        addr: GuestAddress(VRAM),
        len: u64::from(stride * 64),
    };
    let surface = Surface::new(
        dest,
        64,
        64,
        stride as i32 * if r.u8() & 1 == 1 { -1 } else { 1 },
        format,
    );
    let _ = surfaces.create(1, surface.expect("fits"));

    // The bitmap.
    let bformat = r.u8() % 12;
    let bflags = r.u8();
    let (w, h) = (
        u32::from(r.u8()) + u32::from(r.u8() & 1) * 0x1_0000,
        u32::from(r.u8()),
    );
    let stride_delta = r.u16();
    let bpp = SPICE_BITMAP_FMT_BPP
        .get(usize::from(bformat))
        .copied()
        .unwrap_or(8);
    let bstride = ((w * bpp).div_ceil(8))
        .wrapping_add(u32::from(stride_delta))
        .wrapping_sub(2);
    let n_pal = r.u16() % 300;
    let pal_present = r.u8() & 1 == 1;
    let pieces = usize::from(r.u8() % 5);
    let src_area = rect(r.u8().into(), r.u8().into(), r.u8().into(), r.u8().into());
    let bbox = rect(r.u8().into(), r.u8().into(), r.u8().into(), r.u8().into());
    let draw = DRAWS[usize::from(r.u8()) % DRAWS.len()];
    let (rop, scale, alpha_flags, alpha) = (r.u16(), r.u8(), r.u16(), r.u8());
    let (src_color, n_clip) = (r.u32(), r.u8() % 4);
    let clip_rects: Vec<QXLRect> = (0..n_clip)
        .map(|_| rect(r.u8().into(), r.u8().into(), r.u8().into(), r.u8().into()))
        .collect();
    // The cursor.
    let ctype = u16::from(r.u8() % 8);
    let (cw, ch) = (
        u16::from(r.u8()) * (1 + u16::from(r.u8() & 3)),
        u16::from(r.u8()),
    );
    let cursor_trim = usize::from(r.u16());
    let pixels = r.rest();

    let mut img = RamImage::default();
    let pal = if pal_present {
        palette(&mut img, n_pal)
    } else {
        0
    };
    let want = usize::try_from(u64::from(bstride) * u64::from(h))
        .unwrap_or(usize::MAX)
        .min(32 << 10);
    let mut bytes = pixels.to_vec();
    bytes.resize(want, 0x5a);
    let direct = bflags & QXL_BITMAP_DIRECT != 0;
    let data_ptr = if direct {
        img.bytes(&bytes)
    } else {
        img.chain(&bytes, pieces)
    };
    let image = img.obj(bitmap_image(bformat, bflags, w, h, bstride, pal, data_ptr));
    let clip = if clip_rects.is_empty() {
        QXLClip {
            type_: SPICE_CLIP_TYPE_NONE,
            data: 0,
        }
    } else {
        clip_rects_clip(&mut img, &clip_rects)
    };
    let body: Vec<u8> = match draw {
        QXL_DRAW_OPAQUE => QXLOpaque {
            src_bitmap: image,
            src_area,
            brush: QXLBrush {
                type_: SPICE_BRUSH_TYPE_SOLID,
                u: [0x33; 16],
            },
            rop_descriptor: rop,
            scale_mode: scale,
            mask: QXLQMask::default(),
        }
        .as_slice()
        .to_vec(),
        QXL_DRAW_TRANSPARENT => QXLTransparent {
            src_bitmap: image,
            src_area,
            src_color,
            true_color: src_color,
        }
        .as_slice()
        .to_vec(),
        QXL_DRAW_ALPHA_BLEND => QXLAlphaBlend {
            alpha_flags,
            alpha,
            src_bitmap: image,
            src_area,
        }
        .as_slice()
        .to_vec(),
        _ => QXLCopy {
            src_bitmap: image,
            src_area,
            rop_descriptor: rop,
            scale_mode: scale,
            mask: QXLQMask::default(),
        }
        .as_slice()
        .to_vec(),
    };
    let mut d = drawable(1, draw, bbox, clip, QXLCopyBits::default(), 1);
    d.u[..body.len()].copy_from_slice(&body);
    let draw_ptr = img.obj(d);
    let cdata = cursor_data(ctype, cw.min(600), ch);
    let cdata = &cdata[..cdata.len().saturating_sub(cursor_trim % 64).min(24 << 10)];
    let cursor_ptr = cursor_set(&mut img, ctype, cw, ch, cdata);
    if img.0.len() > RAM_SIZE as usize {
        return;
    }
    load_ram(mem, &img.0);
    let slots = slots();
    let ctx = Context::new(mem, &slots, N_SURFACES);
    let mut renderer = Renderer::new();
    let cmd = QXLCommand {
        data: draw_ptr,
        type_: QXL_CMD_DRAW,
        padding: 0,
    };
    if let Ok(Command::Draw(d)) = parse_command(&ctx, &cmd) {
        let _ = renderer.draw(mem, &surfaces, &d);
    }
    let cmd = QXLCommand {
        data: cursor_ptr,
        type_: QXL_CMD_CURSOR,
        padding: 0,
    };
    if let Ok(Command::Cursor(c)) = parse_command(&ctx, &cmd) {
        if let CursorCmdKind::Set { shape, .. } = &c.kind {
            if let Some(argb) = shape_argb(shape) {
                assert_eq!(
                    argb.len(),
                    usize::from(shape.width) * usize::from(shape.height)
                );
            }
        }
    }
});

fn clip_rects_clip(img: &mut RamImage, rects: &[QXLRect]) -> QXLClip {
    clip_rects(img, rects)
}
