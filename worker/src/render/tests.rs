//! Renderer tests on real guest memory: exact pixel values for every drawing, clip rects,
//! bottom-up bitmaps and surfaces, palettes, overlapping COPY_BITS; and a property test that
//! arbitrary drawables never panic nor write outside the destination surface.

use saffron_ring::abi::*;
use saffron_ring::parse::{
    AlphaBlend, Bitmap, BitmapFormat, Brush, Clip, Composite, CopyBody, DrawBody, Drawable, Fill,
    GlyphString, Image, ImageDescriptor, LineAttr, Opaque, Palette, Path, PathSeg, Point, QMask,
    RasterGlyph, Rect, ReleaseInfo, Rop3, Stroke, SurfaceFormat, SurfaceMemory, Text, Transparent,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::surface::{Surface, SurfaceTable};

pub(crate) const MEM_SIZE: u64 = 0x40_0000;

pub(crate) fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap()
}

/// `[left, right) × [top, bottom)` in x, y order (QXLRect's field order is top first).
pub(crate) fn rect(left: i32, top: i32, right: i32, bottom: i32) -> Rect {
    Rect {
        top,
        left,
        bottom,
        right,
    }
}

pub(crate) fn surface(addr: u64, w: u32, h: u32, stride: i32, format: SurfaceFormat) -> Surface {
    Surface::new(
        SurfaceMemory {
            addr: GuestAddress(addr),
            len: u64::from(stride.unsigned_abs()) * u64::from(h),
        },
        w,
        h,
        stride,
        format,
    )
    .unwrap()
}

pub(crate) fn drawable(surface_id: u32, bbox: Rect, clip: Clip, body: DrawBody) -> Drawable {
    Drawable {
        release: ReleaseInfo {
            id: 1,
            addr: GuestAddress(0),
        },
        surface_id,
        effect: QXL_EFFECT_OPAQUE,
        self_bitmap: false,
        self_bitmap_area: Rect::default(),
        bbox,
        clip,
        mm_time: 0,
        surfaces_dest: [None; 3],
        surfaces_rects: [Rect::default(); 3],
        body,
    }
}

pub(crate) fn bitmap(
    format: BitmapFormat,
    w: u32,
    h: u32,
    stride: u32,
    top_down: bool,
    data: Vec<u8>,
    palette: Option<Vec<u32>>,
) -> Box<Image> {
    Box::new(Image::Bitmap(Bitmap {
        descriptor: ImageDescriptor {
            id: 1,
            flags: 0,
            width: w,
            height: h,
        },
        format,
        top_down,
        unstable: false,
        width: w,
        height: h,
        stride,
        palette: palette.map(|entries| Palette { unique: 1, entries }),
        data,
    }))
}

/// A top-down 32-bit bitmap from rows of pixels, with `pad` extra bytes per row.
pub(crate) fn bitmap32(rows: &[Vec<u32>], pad: u32) -> Box<Image> {
    let w = rows[0].len() as u32;
    let stride = w * 4 + pad;
    let mut data = Vec::new();
    for r in rows {
        for p in r {
            data.extend_from_slice(&p.to_le_bytes());
        }
        data.extend(std::iter::repeat_n(0xeeu8, pad as usize));
    }
    bitmap(
        BitmapFormat::Bit32,
        w,
        rows.len() as u32,
        stride,
        true,
        data,
        None,
    )
}

fn surface_image(id: u32) -> Box<Image> {
    Box::new(Image::Surface {
        descriptor: ImageDescriptor {
            id: 0,
            flags: 0,
            width: 0,
            height: 0,
        },
        surface_id: id,
    })
}

fn copy_body(src: Box<Image>, src_area: Rect, rop: u16) -> CopyBody {
    CopyBody {
        src,
        src_area,
        rop_descriptor: rop,
        scale_mode: SPICE_IMAGE_SCALE_MODE_NEAREST,
        mask: None,
    }
}

/// Every pixel of `s`, row by row.
pub(crate) fn pixels(mem: &GuestMemoryMmap, s: &Surface) -> Vec<Vec<u32>> {
    let mut scratch = Vec::new();
    (0..s.height)
        .map(|y| {
            let mut row = vec![0; s.width as usize];
            s.read_pixels(mem, 0, y, &mut row, &mut scratch).unwrap();
            row
        })
        .collect()
}

fn paint(mem: &GuestMemoryMmap, s: &Surface, f: impl Fn(u32, u32) -> u32) {
    let mut scratch = Vec::new();
    for y in 0..s.height {
        let row: Vec<u32> = (0..s.width).map(|x| f(x, y)).collect();
        s.write_pixels(mem, 0, y, &row, &mut scratch).unwrap();
    }
}

/// A table with an 8x6 xRGB primary at 0x1000 (stride 40), filled with `bg`.
fn setup(bg: u32) -> (GuestMemoryMmap, SurfaceTable, Surface) {
    let mem = memory();
    let mut table = SurfaceTable::new(8);
    let s = surface(0x1000, 8, 6, 40, SurfaceFormat::Xrgb8888);
    table.create(0, s).unwrap();
    paint(&mem, &s, |_, _| bg);
    (mem, table, s)
}

fn draw(mem: &GuestMemoryMmap, table: &SurfaceTable, d: &Drawable) -> Renderer {
    let mut r = Renderer::new();
    r.draw(mem, table, d).unwrap();
    r
}

const BG: u32 = 0x0011_1111;

#[test]
fn copy_32bit_top_down_with_overlapping_clip_rects() {
    let (mem, table, s) = setup(BG);
    let src = bitmap32(
        &[
            vec![0x01, 0x02, 0x03, 0x04],
            vec![0x05, 0x06, 0x07, 0x08],
            vec![0x09, 0x0a, 0x0b, 0x0c],
        ],
        12,
    );
    let clip = Clip::Rects(vec![rect(2, 1, 4, 3), rect(3, 2, 5, 4), rect(0, 0, 1, 1)]);
    let d = drawable(
        0,
        rect(2, 1, 6, 4),
        clip,
        DrawBody::Copy(copy_body(src, rect(0, 0, 4, 3), SPICE_ROPD_OP_PUT)),
    );
    let r = draw(&mem, &table, &d);
    let p = pixels(&mem, &s);
    let b = BG;
    assert_eq!(p[0], vec![b; 8]);
    assert_eq!(p[1], vec![b, b, 0x01, 0x02, b, b, b, b]);
    assert_eq!(p[2], vec![b, b, 0x05, 0x06, 0x07, b, b, b]);
    assert_eq!(p[3], vec![b, b, b, 0x0a, 0x0b, b, b, b]);
    assert_eq!(p[4], vec![b; 8]);
    assert_eq!(r.stats().get(DrawKind::Copy).rendered, 1);
}

#[test]
fn copy_from_a_sub_area_and_bottom_up_bitmap() {
    let (mem, table, s) = setup(BG);
    // 3x2 bottom-up: stored rows are [bottom, top].
    let mut data = Vec::new();
    for v in [0x10u32, 0x11, 0x12, 0x20, 0x21, 0x22] {
        data.extend_from_slice(&v.to_le_bytes());
    }
    let src = bitmap(BitmapFormat::Bit32, 3, 2, 12, false, data, None);
    let d = drawable(
        0,
        rect(0, 0, 2, 2),
        Clip::None,
        DrawBody::Copy(copy_body(src, rect(1, 0, 3, 2), SPICE_ROPD_OP_PUT)),
    );
    draw(&mem, &table, &d);
    let p = pixels(&mem, &s);
    assert_eq!(&p[0][..3], &[0x21, 0x22, BG]);
    assert_eq!(&p[1][..3], &[0x11, 0x12, BG]);
}

#[test]
fn copy_into_a_bottom_up_surface_writes_the_last_row_first() {
    let mem = memory();
    let mut table = SurfaceTable::new(2);
    let s = surface(0x1000, 2, 3, -8, SurfaceFormat::Xrgb8888);
    table.create(1, s).unwrap();
    let src = bitmap32(&[vec![0xa, 0xb], vec![0xc, 0xd]], 0);
    let d = drawable(
        1,
        rect(0, 0, 2, 2),
        Clip::None,
        DrawBody::Copy(copy_body(src, rect(0, 0, 2, 2), SPICE_ROPD_OP_PUT)),
    );
    draw(&mem, &table, &d);
    // Row 0 is the last 8 bytes of the range.
    assert_eq!(
        mem.read_obj::<[u32; 2]>(GuestAddress(0x1010)).unwrap(),
        [0xa, 0xb]
    );
    assert_eq!(
        mem.read_obj::<[u32; 2]>(GuestAddress(0x1008)).unwrap(),
        [0xc, 0xd]
    );
    assert_eq!(
        mem.read_obj::<[u32; 2]>(GuestAddress(0x1000)).unwrap(),
        [0, 0]
    );
}

/// Draws a 1-row bitmap of `w` pixels at the top-left and returns the first `w` pixels.
fn decode_row(format: BitmapFormat, w: u32, data: Vec<u8>, palette: Option<Vec<u32>>) -> Vec<u32> {
    let (mem, table, s) = setup(BG);
    let stride = data.len() as u32;
    let src = bitmap(format, w, 1, stride, true, data, palette);
    let d = drawable(
        0,
        rect(0, 0, w as i32, 1),
        Clip::None,
        DrawBody::Copy(copy_body(src, rect(0, 0, w as i32, 1), SPICE_ROPD_OP_PUT)),
    );
    draw(&mem, &table, &d);
    pixels(&mem, &s)[0][..w as usize].to_vec()
}

#[test]
fn bitmap_formats_and_palettes() {
    let pal = vec![0x0000_0000, 0x00ff_ffff, 0x00ff_0000, 0x0000_ff00];
    assert_eq!(
        decode_row(
            BitmapFormat::Bit1Be,
            5,
            vec![0b1010_0000],
            Some(pal.clone())
        ),
        vec![0xffffff, 0, 0xffffff, 0, 0]
    );
    assert_eq!(
        decode_row(
            BitmapFormat::Bit1Le,
            5,
            vec![0b0000_0101],
            Some(pal.clone())
        ),
        vec![0xffffff, 0, 0xffffff, 0, 0]
    );
    assert_eq!(
        decode_row(BitmapFormat::Bit4Be, 3, vec![0x23, 0x10], Some(pal.clone())),
        vec![0xff0000, 0x00ff00, 0xffffff]
    );
    assert_eq!(
        decode_row(BitmapFormat::Bit4Le, 3, vec![0x23, 0x01], Some(pal.clone())),
        vec![0x00ff00, 0xff0000, 0xffffff]
    );
    // Index 7 is past the palette: 0, as spice's zero-filled table gives.
    assert_eq!(
        decode_row(BitmapFormat::Bit8, 3, vec![3, 2, 7], Some(pal.clone())),
        vec![0x00ff00, 0xff0000, 0]
    );
    // x555: red 0x1f, green 0x10, blue 0x01.
    assert_eq!(
        decode_row(
            BitmapFormat::Bit16,
            1,
            0x7e01u16.to_le_bytes().to_vec(),
            None
        ),
        vec![0x00ff_8408]
    );
    assert_eq!(
        decode_row(BitmapFormat::Bit24, 2, vec![1, 2, 3, 4, 5, 6], None),
        vec![0x030201, 0x060504]
    );
    // 32-bit pixels keep their top byte; RGBA too (COPY does not blend).
    assert_eq!(
        decode_row(
            BitmapFormat::Rgba,
            1,
            0x8012_3456u32.to_le_bytes().to_vec(),
            None
        ),
        vec![0x8012_3456]
    );
    assert_eq!(
        decode_row(
            BitmapFormat::Bit32,
            1,
            0xff12_3456u32.to_le_bytes().to_vec(),
            None
        ),
        vec![0xff12_3456]
    );
}

#[test]
fn copy_from_another_surface_is_clipped_to_it() {
    let (mem, mut table, s) = setup(BG);
    // The source is stored bottom-up: rows are still read by their logical index.
    let src = surface(0x8000, 3, 2, -12, SurfaceFormat::Xrgb8888);
    table.create(3, src).unwrap();
    paint(&mem, &src, |x, y| 0x100 + y * 16 + x);
    // src_area (1,0)-(5,2) reaches past the 3-wide source: those pixels are not drawn.
    let d = drawable(
        0,
        rect(4, 2, 8, 4),
        Clip::None,
        DrawBody::Copy(copy_body(
            surface_image(3),
            rect(1, 0, 5, 2),
            SPICE_ROPD_OP_PUT,
        )),
    );
    draw(&mem, &table, &d);
    let p = pixels(&mem, &s);
    assert_eq!(&p[2][4..], &[0x101, 0x102, BG, BG]);
    assert_eq!(&p[3][4..], &[0x111, 0x112, BG, BG]);
    // A missing source surface is an error.
    let d = drawable(
        0,
        rect(0, 0, 1, 1),
        Clip::None,
        DrawBody::Copy(copy_body(
            surface_image(5),
            rect(0, 0, 1, 1),
            SPICE_ROPD_OP_PUT,
        )),
    );
    let mut r = Renderer::new();
    assert!(matches!(
        r.draw(&mem, &table, &d),
        Err(RenderError::Surface(
            crate::surface::SurfaceError::Missing { id: 5 }
        ))
    ));
    assert_eq!(r.stats().get(DrawKind::Copy).dropped, 1);
}

#[test]
fn rop_descriptors_on_copy_and_blend() {
    let dst = 0x00f0_f0f0u32;
    let src = 0x00cc_ccccu32;
    let cases = [
        (SPICE_ROPD_OP_PUT, src),
        (SPICE_ROPD_OP_PUT | SPICE_ROPD_INVERS_SRC, !src),
        (SPICE_ROPD_OP_OR, src | dst),
        (SPICE_ROPD_OP_AND, src & dst),
        (SPICE_ROPD_OP_XOR, src ^ dst),
        (SPICE_ROPD_OP_AND | SPICE_ROPD_INVERS_DEST, src & !dst),
        (SPICE_ROPD_OP_OR | SPICE_ROPD_INVERS_RES, !(src | dst)),
        (SPICE_ROPD_OP_XOR | SPICE_ROPD_INVERS_SRC, !src ^ dst),
        (SPICE_ROPD_OP_BLACKNESS, 0),
        (SPICE_ROPD_OP_WHITENESS, 0xffff_ffff),
        (SPICE_ROPD_OP_INVERS, !dst),
        // The brush bit does not apply to COPY.
        (SPICE_ROPD_OP_PUT | SPICE_ROPD_INVERS_BRUSH, src),
    ];
    for blend in [false, true] {
        for (rop, want) in cases {
            let (mem, table, s) = setup(dst);
            let body = copy_body(bitmap32(&[vec![src]], 0), rect(0, 0, 1, 1), rop);
            let body = if blend {
                DrawBody::Blend(body)
            } else {
                DrawBody::Copy(body)
            };
            draw(
                &mem,
                &table,
                &drawable(0, rect(1, 1, 2, 2), Clip::None, body),
            );
            let p = pixels(&mem, &s);
            assert_eq!(p[1][1], want, "rop {rop:#x} blend {blend}");
            assert_eq!(p[1][0], dst);
        }
    }
}

#[test]
fn fill_solid_rop_and_pattern() {
    let (mem, table, s) = setup(BG);
    let fill = |brush, rop| {
        DrawBody::Fill(Fill {
            brush,
            rop_descriptor: rop,
            mask: None,
        })
    };
    draw(
        &mem,
        &table,
        &drawable(
            0,
            rect(1, 1, 7, 5),
            Clip::Rects(vec![rect(0, 0, 3, 3), rect(5, 3, 9, 9)]),
            fill(Brush::Solid(0x00ab_cdef), SPICE_ROPD_OP_PUT),
        ),
    );
    let p = pixels(&mem, &s);
    let (b, c) = (BG, 0x00ab_cdef);
    assert_eq!(p[0], vec![b; 8]);
    assert_eq!(p[1], vec![b, c, c, b, b, b, b, b]);
    assert_eq!(p[3], vec![b, b, b, b, b, c, c, b]);
    assert_eq!(p[5], vec![b; 8]);
    // XOR with the brush inverted.
    draw(
        &mem,
        &table,
        &drawable(
            0,
            rect(0, 0, 1, 1),
            Clip::None,
            fill(
                Brush::Solid(0xff),
                SPICE_ROPD_OP_XOR | SPICE_ROPD_INVERS_BRUSH,
            ),
        ),
    );
    assert_eq!(pixels(&mem, &s)[0][0], !0xffu32 ^ BG);
    // BRUSH_TYPE_NONE paints 0 through the ROP (INVERS with no brush inverts).
    draw(
        &mem,
        &table,
        &drawable(
            0,
            rect(7, 5, 8, 6),
            Clip::None,
            fill(Brush::None, SPICE_ROPD_OP_PUT),
        ),
    );
    assert_eq!(pixels(&mem, &s)[5][7], 0);
    // A 2x2 pattern tiled so its pixel (0, 0) lands on (1, 1).
    let tile = bitmap32(&[vec![1, 2], vec![3, 4]], 0);
    draw(
        &mem,
        &table,
        &drawable(
            0,
            rect(0, 0, 4, 3),
            Clip::None,
            fill(
                Brush::Pattern {
                    image: tile,
                    pos: Point { x: 1, y: 1 },
                },
                SPICE_ROPD_OP_PUT,
            ),
        ),
    );
    let p = pixels(&mem, &s);
    assert_eq!(&p[0][..4], &[4, 3, 4, 3]);
    assert_eq!(&p[1][..4], &[2, 1, 2, 1]);
    assert_eq!(&p[2][..4], &[4, 3, 4, 3]);
}

#[test]
fn blackness_whiteness_invers() {
    let (mem, table, s) = setup(BG);
    let clip = Clip::Rects(vec![rect(0, 0, 2, 1)]);
    draw(
        &mem,
        &table,
        &drawable(
            0,
            rect(0, 0, 8, 1),
            clip.clone(),
            DrawBody::Whiteness { mask: None },
        ),
    );
    draw(
        &mem,
        &table,
        &drawable(
            0,
            rect(1, 0, 8, 1),
            Clip::None,
            DrawBody::Invers { mask: None },
        ),
    );
    draw(
        &mem,
        &table,
        &drawable(
            0,
            rect(3, 0, 4, 1),
            Clip::None,
            DrawBody::Blackness { mask: None },
        ),
    );
    let p = pixels(&mem, &s);
    assert_eq!(p[0], vec![u32::MAX, 0, !BG, 0, !BG, !BG, !BG, !BG]);
}

#[test]
fn opaque_rop3_and_transparent() {
    // OPAQUE: source copied, then brush AND source.
    let (mem, table, s) = setup(BG);
    let body = DrawBody::Opaque(Opaque {
        src: bitmap32(&[vec![0x00ff_00ff, 0x0000_ffff]], 0),
        src_area: rect(0, 0, 2, 1),
        brush: Brush::Solid(0x00f0_f0f0),
        rop_descriptor: SPICE_ROPD_OP_AND,
        scale_mode: 1,
        mask: None,
    });
    draw(
        &mem,
        &table,
        &drawable(0, rect(0, 0, 2, 1), Clip::None, body),
    );
    assert_eq!(&pixels(&mem, &s)[0][..3], &[0x00f0_00f0, 0x0000_f0f0, BG]);

    // ROP3 0xB8 (PSDPxax): where S is set keep D, elsewhere take P.
    let (mem, table, s) = setup(0x0f0f_0f0f);
    let body = DrawBody::Rop3(Rop3 {
        src: bitmap32(&[vec![0xffff_0000]], 0),
        src_area: rect(0, 0, 1, 1),
        brush: Brush::Solid(0x1234_5678),
        rop3: 0xb8,
        scale_mode: 1,
        mask: None,
    });
    draw(
        &mem,
        &table,
        &drawable(0, rect(0, 0, 1, 1), Clip::None, body),
    );
    assert_eq!(pixels(&mem, &s)[0][0], 0x0f0f_5678);

    // TRANSPARENT: the key compares RGB only.
    let (mem, table, s) = setup(BG);
    let body = DrawBody::Transparent(Transparent {
        src: bitmap32(&[vec![0xff00_ff00, 0x0000_ff00, 0x0012_3456]], 0),
        src_area: rect(0, 0, 3, 1),
        src_color: 0,
        true_color: 0x7700_ff00,
    });
    draw(
        &mem,
        &table,
        &drawable(0, rect(0, 0, 3, 1), Clip::None, body),
    );
    assert_eq!(&pixels(&mem, &s)[0][..3], &[BG, BG, 0x0012_3456]);
}

/// Reference memmove of the bbox-sized area at `src` to `bbox` within `clip`, on a grid.
fn reference_copy_bits(p: &mut [Vec<u32>], bbox: Rect, src: Point, clip: &Region) {
    let orig = p.to_vec();
    let (dx, dy) = (bbox.left - src.x, bbox.top - src.y);
    for (y, row) in p.iter_mut().enumerate() {
        for (x, v) in row.iter_mut().enumerate() {
            let (x, y) = (x as i32, y as i32);
            if !clip.contains(x, y) {
                continue;
            }
            let (sx, sy) = (x - dx, y - dy);
            if let Some(s) = orig.get(sy as usize).and_then(|r| r.get(sx as usize))
                && sx >= 0
                && sy >= 0
            {
                *v = *s;
            }
        }
    }
}

#[test]
fn copy_bits_overlapping_in_every_direction() {
    for (dx, dy) in [
        (0i32, 1i32),
        (0, -1),
        (1, 0),
        (-1, 0),
        (2, 1),
        (-1, -2),
        (1, -1),
        (-2, 1),
    ] {
        let (mem, table, s) = setup(0);
        paint(&mem, &s, |x, y| y * 8 + x + 1);
        let mut want = pixels(&mem, &s);
        let bbox = rect(1 + dx.min(0).abs(), 1, 7 - dx.max(0), 5);
        let bbox = rect(bbox.left + dx.max(0), bbox.top + dy.max(0), bbox.right, 5);
        let src = Point {
            x: bbox.left - dx,
            y: bbox.top - dy,
        };
        let clip_rects = vec![rect(0, 0, 4, 3), rect(3, 2, 8, 6), rect(5, 0, 8, 2)];
        let region = Region::from_rects(
            &clip_rects,
            crate::region::intersect(bbox, rect(0, 0, 8, 6)),
        )
        .unwrap();
        reference_copy_bits(&mut want, bbox, src, &region);
        draw(
            &mem,
            &table,
            &drawable(
                0,
                bbox,
                Clip::Rects(clip_rects),
                DrawBody::CopyBits { src_pos: src },
            ),
        );
        assert_eq!(pixels(&mem, &s), want, "dx {dx} dy {dy}");
    }
}

#[test]
fn alpha_blend_sources_and_flags() {
    // A premultiplied half-transparent white RGBA bitmap over opaque black, global 255.
    let (mem, table, s) = setup(0x0000_0000);
    let src = bitmap(
        BitmapFormat::Rgba,
        1,
        1,
        4,
        true,
        0x8080_8080u32.to_le_bytes().to_vec(),
        None,
    );
    let blend = |src, flags, alpha| {
        DrawBody::AlphaBlend(AlphaBlend {
            alpha_flags: flags,
            alpha,
            src,
            src_area: rect(0, 0, 1, 1),
        })
    };
    draw(
        &mem,
        &table,
        &drawable(0, rect(0, 0, 1, 1), Clip::None, blend(src.clone(), 0, 255)),
    );
    // xRGB destination: the unused byte stays 0.
    assert_eq!(pixels(&mem, &s)[0][0], 0x0080_8080);
    // Global alpha halves it again: 0x40 over black.
    draw(
        &mem,
        &table,
        &drawable(0, rect(1, 0, 2, 1), Clip::None, blend(src.clone(), 0, 128)),
    );
    assert_eq!(pixels(&mem, &s)[0][1], 0x0040_4040);
    // 32BIT sources are opaque whatever their top byte.
    let opaque = bitmap32(&[vec![0x0012_3456]], 0);
    draw(
        &mem,
        &table,
        &drawable(0, rect(2, 0, 3, 1), Clip::None, blend(opaque, 0, 255)),
    );
    assert_eq!(pixels(&mem, &s)[0][2], 0x0012_3456);
    // DEST_HAS_ALPHA: a transparent destination takes the source alpha.
    draw(
        &mem,
        &table,
        &drawable(
            0,
            rect(3, 0, 4, 1),
            Clip::None,
            blend(src, SPICE_ALPHA_FLAGS_DEST_HAS_ALPHA, 255),
        ),
    );
    assert_eq!(pixels(&mem, &s)[0][3], 0x8080_8080);
    // An xRGB source surface is opaque unless SRC_SURFACE_HAS_ALPHA.
    let (mem, mut table, s) = setup(0x0000_0000);
    let src_surface = surface(0x8000, 1, 1, 4, SurfaceFormat::Xrgb8888);
    table.create(2, src_surface).unwrap();
    paint(&mem, &src_surface, |_, _| 0x4040_4040);
    draw(
        &mem,
        &table,
        &drawable(
            0,
            rect(0, 0, 1, 1),
            Clip::None,
            blend(surface_image(2), 0, 255),
        ),
    );
    assert_eq!(pixels(&mem, &s)[0][0], 0x0040_4040);
    paint(&mem, &s, |_, _| 0x00ff_ffff);
    draw(
        &mem,
        &table,
        &drawable(
            0,
            rect(0, 0, 1, 1),
            Clip::None,
            blend(
                surface_image(2),
                SPICE_ALPHA_FLAGS_SRC_SURFACE_HAS_ALPHA,
                255,
            ),
        ),
    );
    // 0x40 + 0xff × (1 - 0x40/255) = 0x40 + 0xbf = 0xff.
    assert_eq!(pixels(&mem, &s)[0][0], 0x00ff_ffff);
    paint(&mem, &s, |_, _| 0x0000_0000);
    draw(
        &mem,
        &table,
        &drawable(
            0,
            rect(0, 0, 1, 1),
            Clip::None,
            blend(
                surface_image(2),
                SPICE_ALPHA_FLAGS_SRC_SURFACE_HAS_ALPHA,
                255,
            ),
        ),
    );
    assert_eq!(pixels(&mem, &s)[0][0], 0x0040_4040);
}

#[test]
fn nearest_scaling_up_and_down() {
    let (mem, table, s) = setup(BG);
    let src = bitmap32(&[vec![1, 2], vec![3, 4]], 0);
    draw(
        &mem,
        &table,
        &drawable(
            0,
            rect(0, 0, 4, 4),
            Clip::None,
            DrawBody::Copy(copy_body(src, rect(0, 0, 2, 2), SPICE_ROPD_OP_PUT)),
        ),
    );
    let p = pixels(&mem, &s);
    assert_eq!(&p[0][..4], &[1, 1, 2, 2]);
    assert_eq!(&p[3][..4], &[3, 3, 4, 4]);
    let src = bitmap32(&[vec![1, 2, 3, 4], vec![5, 6, 7, 8]], 0);
    let mut body = copy_body(src, rect(0, 0, 4, 2), SPICE_ROPD_OP_PUT);
    body.scale_mode = SPICE_IMAGE_SCALE_MODE_INTERPOLATE;
    let r = draw(
        &mem,
        &table,
        &drawable(0, rect(5, 5, 7, 6), Clip::None, DrawBody::Copy(body)),
    );
    assert_eq!(&pixels(&mem, &s)[5][5..7], &[1, 3]);
    // Interpolation was asked for: drawn nearest and counted.
    let c = r.stats().get(DrawKind::Copy);
    assert_eq!((c.rendered, c.approximated), (1, 1));
}

#[test]
fn masks_limit_drawing() {
    let (mem, table, s) = setup(BG);
    // 4x1 1BIT_BE mask 1001, placed with pos (1, 0): mask pixel 1 lands on bbox.left.
    let mask = QMask {
        flags: 0,
        pos: Point { x: 1, y: 0 },
        bitmap: bitmap(BitmapFormat::Bit1Be, 4, 1, 1, true, vec![0b1001_0000], None),
    };
    let fill = |mask| {
        DrawBody::Fill(Fill {
            brush: Brush::Solid(7),
            rop_descriptor: SPICE_ROPD_OP_PUT,
            mask: Some(mask),
        })
    };
    draw(
        &mem,
        &table,
        &drawable(0, rect(0, 0, 8, 1), Clip::None, fill(mask.clone())),
    );
    // Mask pixels 1..3 cover x 0..2: bits 0,0,1 → only x = 2; beyond the mask: nothing.
    assert_eq!(pixels(&mem, &s)[0], vec![BG, BG, 7, BG, BG, BG, BG, BG]);
    let inverted = QMask {
        flags: SPICE_MASK_FLAGS_INVERS,
        ..mask
    };
    draw(
        &mem,
        &table,
        &drawable(0, rect(0, 1, 8, 2), Clip::None, fill(inverted)),
    );
    assert_eq!(pixels(&mem, &s)[1], vec![7, 7, BG, BG, BG, BG, BG, BG]);
    // A 1BIT_LE mask, bottom-up, two rows.
    let le = QMask {
        flags: 0,
        pos: Point { x: 0, y: 0 },
        bitmap: bitmap(
            BitmapFormat::Bit1Le,
            3,
            2,
            1,
            false,
            vec![0b001, 0b100],
            None,
        ),
    };
    draw(
        &mem,
        &table,
        &drawable(0, rect(0, 2, 3, 4), Clip::None, fill(le)),
    );
    let p = pixels(&mem, &s);
    assert_eq!(&p[2][..3], &[BG, BG, 7]);
    assert_eq!(&p[3][..3], &[7, BG, BG]);
    // An 8-bit mask is not something spice can use: counted, not drawn.
    let bad = QMask {
        flags: 0,
        pos: Point::default(),
        bitmap: bitmap(BitmapFormat::Bit8, 1, 1, 1, true, vec![1], Some(vec![0, 1])),
    };
    let mut r = Renderer::new();
    r.draw(
        &mem,
        &table,
        &drawable(0, rect(0, 5, 1, 6), Clip::None, fill(bad)),
    )
    .unwrap();
    assert_eq!(r.stats().get(DrawKind::Fill).unsupported, 1);
    assert_eq!(pixels(&mem, &s)[5][0], BG);
}

fn stroke_body(points: Vec<(i32, i32)>, flags: u32, brush: u32, rop: u16) -> DrawBody {
    DrawBody::Stroke(Stroke {
        path: Path {
            segments: vec![PathSeg {
                flags,
                points: points
                    .into_iter()
                    .map(|(x, y)| Point {
                        x: x << 4,
                        y: y << 4,
                    })
                    .collect(),
            }],
        },
        attr: LineAttr {
            flags: 0,
            join_style: 0,
            end_style: 0,
            width: 0,
            miter_limit: 0,
            style: Vec::new(),
        },
        brush: Brush::Solid(brush),
        fore_mode: rop,
        back_mode: rop,
    })
}

fn set_pixels(p: &[Vec<u32>], bg: u32) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (y, row) in p.iter().enumerate() {
        for (x, v) in row.iter().enumerate() {
            if *v != bg {
                out.push((x, y));
            }
        }
    }
    out
}

#[test]
fn strokes_are_zero_width_lines_without_last_point() {
    let (mem, table, s) = setup(0);
    let all = rect(0, 0, 8, 6);
    let whole = QXL_PATH_BEGIN | QXL_PATH_END;
    draw(
        &mem,
        &table,
        &drawable(
            0,
            all,
            Clip::None,
            stroke_body(vec![(1, 1), (5, 1)], whole, 9, SPICE_ROPD_OP_PUT),
        ),
    );
    assert_eq!(
        set_pixels(&pixels(&mem, &s), 0),
        vec![(1, 1), (2, 1), (3, 1), (4, 1)]
    );

    // A shallow line: X's bias puts the step where miZeroLine does.
    let (mem, table, s) = setup(0);
    draw(
        &mem,
        &table,
        &drawable(
            0,
            all,
            Clip::None,
            stroke_body(vec![(0, 0), (4, 1)], whole, 9, SPICE_ROPD_OP_PUT),
        ),
    );
    assert_eq!(
        set_pixels(&pixels(&mem, &s), 0),
        vec![(0, 0), (1, 0), (2, 1), (3, 1)]
    );
    let (mem, table, s) = setup(0);
    draw(
        &mem,
        &table,
        &drawable(
            0,
            all,
            Clip::None,
            stroke_body(vec![(4, 1), (0, 0)], whole, 9, SPICE_ROPD_OP_PUT),
        ),
    );
    // Drawn backwards (octant 4, which X biases the other way) it takes the same pixels:
    // X lines are reversible; only the left-out end point changes.
    assert_eq!(
        set_pixels(&pixels(&mem, &s), 0),
        vec![(1, 0), (2, 1), (3, 1), (4, 1)]
    );

    // A closed triangle XORed: each corner drawn once (its segments exclude end points).
    let (mem, table, s) = setup(0);
    draw(
        &mem,
        &table,
        &drawable(
            0,
            all,
            Clip::None,
            stroke_body(
                vec![(1, 1), (4, 1), (1, 4)],
                whole | QXL_PATH_CLOSE,
                1,
                SPICE_ROPD_OP_XOR,
            ),
        ),
    );
    let p = pixels(&mem, &s);
    let mut got = set_pixels(&p, 0);
    got.sort();
    let mut want = vec![
        (1, 1),
        (2, 1),
        (3, 1),
        (4, 1),
        (3, 2),
        (2, 3),
        (1, 4),
        (1, 3),
        (1, 2),
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(p.iter().flatten().all(|v| *v <= 1));

    // Clipped by the clip rects and wide lines counted as approximated.
    let (mem, table, s) = setup(0);
    let mut body = stroke_body(vec![(0, 2), (8, 2)], whole, 5, SPICE_ROPD_OP_PUT);
    if let DrawBody::Stroke(st) = &mut body {
        st.attr.width = 3 << 4;
    }
    let r = draw(
        &mem,
        &table,
        &drawable(0, all, Clip::Rects(vec![rect(2, 0, 4, 6)]), body),
    );
    assert_eq!(set_pixels(&pixels(&mem, &s), 0), vec![(2, 2), (3, 2)]);
    assert_eq!(r.stats().get(DrawKind::Stroke).approximated, 1);
}

#[test]
fn bezier_strokes_flatten_and_degenerate_curves_end() {
    let (mem, table, s) = setup(0);
    let whole = QXL_PATH_BEGIN | QXL_PATH_END;
    let path = |segments| {
        DrawBody::Stroke(Stroke {
            path: Path { segments },
            attr: LineAttr {
                flags: 0,
                join_style: 0,
                end_style: 0,
                width: 0,
                miter_limit: 0,
                style: Vec::new(),
            },
            brush: Brush::Solid(3),
            fore_mode: SPICE_ROPD_OP_PUT,
            back_mode: SPICE_ROPD_OP_PUT,
        })
    };
    let p = |x: i32, y: i32| Point {
        x: x << 4,
        y: y << 4,
    };
    // Control points on the chord: flat at once, a straight line to (4, 1).
    let segs = vec![
        PathSeg {
            flags: QXL_PATH_BEGIN,
            points: vec![p(0, 1)],
        },
        PathSeg {
            flags: QXL_PATH_BEZIER | QXL_PATH_END,
            points: vec![p(1, 1), p(3, 1), p(4, 1)],
        },
    ];
    draw(
        &mem,
        &table,
        &drawable(0, rect(0, 0, 8, 6), Clip::None, path(segs)),
    );
    assert_eq!(
        set_pixels(&pixels(&mem, &s), 0),
        vec![(0, 1), (1, 1), (2, 1), (3, 1)]
    );
    // A curve whose points all coincide never becomes "flat" in spice's test; the depth
    // bound ends it and nothing is drawn (every piece has zero length).
    let (mem, table, s) = setup(0);
    let segs = vec![PathSeg {
        flags: whole | QXL_PATH_BEZIER,
        points: vec![p(2, 2), p(2, 2), p(2, 2), p(2, 2)],
    }];
    let r = draw(
        &mem,
        &table,
        &drawable(0, rect(0, 0, 8, 6), Clip::None, path(segs)),
    );
    assert!(set_pixels(&pixels(&mem, &s), 0).is_empty());
    assert_eq!(r.stats().get(DrawKind::Stroke).rendered, 1);
}

fn glyph(x: i32, y: i32, w: u16, h: u16, data: Vec<u8>) -> RasterGlyph {
    RasterGlyph {
        render_pos: Point { x, y },
        glyph_origin: Point {
            x: 0,
            y: -i32::from(h),
        },
        width: w,
        height: h,
        data,
    }
}

fn text_body(
    bpp: u8,
    glyphs: Vec<RasterGlyph>,
    back: Rect,
    fore: u32,
    back_color: u32,
) -> DrawBody {
    let flags = match bpp {
        1 => SPICE_STRING_FLAGS_RASTER_A1,
        4 => SPICE_STRING_FLAGS_RASTER_A4,
        _ => SPICE_STRING_FLAGS_RASTER_A8,
    };
    DrawBody::Text(Text {
        string: GlyphString { flags, bpp, glyphs },
        back_area: back,
        fore_brush: Brush::Solid(fore),
        back_brush: Brush::Solid(back_color),
        fore_mode: SPICE_ROPD_OP_PUT,
        back_mode: SPICE_ROPD_OP_PUT,
    })
}

#[test]
fn text_one_bit_glyphs_bottom_up_msb_first_over_a_background() {
    let (mem, table, s) = setup(BG);
    // A 3x2 glyph whose baseline is y = 3: it covers rows 1 and 2. Stored bottom-up:
    // first data row is the bottom row.
    let g = glyph(2, 3, 3, 2, vec![0b1010_0000, 0b0100_0000]);
    draw(
        &mem,
        &table,
        &drawable(
            0,
            rect(0, 0, 8, 6),
            Clip::None,
            text_body(1, vec![g], rect(1, 1, 6, 3), 0x00ff_ffff, 0x0022_2222),
        ),
    );
    let p = pixels(&mem, &s);
    let (b, k, w) = (BG, 0x0022_2222, 0x00ff_ffff);
    assert_eq!(p[0], vec![b; 8]);
    assert_eq!(p[1], vec![b, k, k, w, k, k, b, b]);
    assert_eq!(p[2], vec![b, k, w, k, w, k, b, b]);
    assert_eq!(p[3], vec![b; 8]);
}

#[test]
fn text_four_and_eight_bit_glyphs_blend_coverage() {
    let (mem, table, s) = setup(0);
    // 4 bpp: coverage is nibble << 4 (0xf → 0xf0), high nibble first.
    let g4 = glyph(0, 1, 2, 1, vec![0xf8]);
    let g8 = glyph(0, 2, 2, 1, vec![0xff, 0x80]);
    draw(
        &mem,
        &table,
        &drawable(
            0,
            rect(0, 0, 8, 6),
            Clip::None,
            text_body(4, vec![g4], Rect::default(), 0x00ff_ffff, 0),
        ),
    );
    draw(
        &mem,
        &table,
        &drawable(
            0,
            rect(0, 0, 8, 6),
            Clip::None,
            text_body(8, vec![g8], Rect::default(), 0x00ff_ffff, 0),
        ),
    );
    let p = pixels(&mem, &s);
    assert_eq!(&p[0][..2], &[0x00f0_f0f0, 0x0080_8080]);
    assert_eq!(&p[1][..2], &[0x00ff_ffff, 0x0080_8080]);
}

#[test]
fn composite_over_with_a8_mask_and_src() {
    let (mem, mut table, s) = setup(0x0000_0000);
    // Source: 1x1 ARGB surface repeated; mask: A8 surface.
    let src = surface(0x8000, 1, 1, 4, SurfaceFormat::Argb8888);
    let mask = surface(0x9000, 4, 1, 4, SurfaceFormat::A8);
    table.create(1, src).unwrap();
    table.create(2, mask).unwrap();
    paint(&mem, &src, |_, _| 0xffff_0000);
    mem.write_slice(&[0xff, 0x80, 0x00, 0x40], GuestAddress(0x9000))
        .unwrap();
    let body = DrawBody::Composite(Composite {
        flags: 3 | (1 << 14), // OVER, source repeat NORMAL
        src: surface_image(1),
        src_transform: None,
        mask: Some(surface_image(2)),
        mask_transform: None,
        src_origin: Point { x: 0, y: 0 },
        mask_origin: Point { x: 0, y: 0 },
    });
    draw(
        &mem,
        &table,
        &drawable(0, rect(2, 1, 6, 2), Clip::None, body),
    );
    let p = pixels(&mem, &s);
    assert_eq!(&p[1][2..6], &[0x00ff_0000, 0x0080_0000, 0, 0x0040_0000]);
    // SRC without mask from an xRGB source marked opaque replaces.
    let body = DrawBody::Composite(Composite {
        flags: 1 | (1 << 22),
        src: surface_image(1),
        src_transform: None,
        mask: None,
        mask_transform: None,
        src_origin: Point { x: 0, y: 0 },
        mask_origin: Point { x: 0, y: 0 },
    });
    // Outside the 1x1 source without repeat: transparent, so SRC clears.
    draw(
        &mem,
        &table,
        &drawable(0, rect(0, 3, 2, 4), Clip::None, body),
    );
    assert_eq!(&pixels(&mem, &s)[3][..2], &[0x00ff_0000, 0]);
    // An operator past SATURATE is counted, not drawn.
    let body = DrawBody::Composite(Composite {
        flags: 0x30,
        src: surface_image(1),
        src_transform: None,
        mask: None,
        mask_transform: None,
        src_origin: Point::default(),
        mask_origin: Point::default(),
    });
    let mut r = Renderer::new();
    r.draw(
        &mem,
        &table,
        &drawable(0, rect(0, 5, 1, 6), Clip::None, body),
    )
    .unwrap();
    assert_eq!(r.stats().get(DrawKind::Composite).unsupported, 1);
}

#[test]
fn composite_transform_translates_and_scales() {
    let (mem, mut table, s) = setup(0);
    let src = surface(0x8000, 4, 1, 16, SurfaceFormat::Xrgb8888);
    table.create(1, src).unwrap();
    paint(&mem, &src, |x, _| 0x10 * (x + 1));
    let composite = |t: QXLTransform| {
        DrawBody::Composite(Composite {
            flags: 1 | (1 << 22) | (1 << 8), // SRC, opaque source, bilinear filter
            src: surface_image(1),
            src_transform: Some(t),
            mask: None,
            mask_transform: None,
            src_origin: Point::default(),
            mask_origin: Point::default(),
        })
    };
    let translate = QXLTransform {
        t00: 1 << 16,
        t11: 1 << 16,
        t02: 1 << 16,
        ..Default::default()
    };
    let r = draw(
        &mem,
        &table,
        &drawable(0, rect(0, 0, 3, 1), Clip::None, composite(translate)),
    );
    assert_eq!(&pixels(&mem, &s)[0][..3], &[0x20, 0x30, 0x40]);
    assert_eq!(r.stats().get(DrawKind::Composite).approximated, 0);
    // Half-scale sampling (x / 2) with a bilinear filter: nearest, counted.
    let half = QXLTransform {
        t00: 1 << 15,
        t11: 1 << 16,
        ..Default::default()
    };
    let r = draw(
        &mem,
        &table,
        &drawable(0, rect(0, 1, 4, 2), Clip::None, composite(half)),
    );
    assert_eq!(&pixels(&mem, &s)[1][..4], &[0x10, 0x10, 0x20, 0x20]);
    assert_eq!(r.stats().get(DrawKind::Composite).approximated, 1);
}

#[test]
fn sixteen_bit_and_a8_destinations() {
    let mem = memory();
    let mut table = SurfaceTable::new(4);
    let s16 = surface(0x1000, 4, 2, 8, SurfaceFormat::Rgb555);
    let s565 = surface(0x2000, 4, 2, 8, SurfaceFormat::Rgb565);
    let a8 = surface(0x3000, 4, 2, 4, SurfaceFormat::A8);
    table.create(0, s16).unwrap();
    table.create(1, s565).unwrap();
    table.create(2, a8).unwrap();
    let src = || bitmap32(&[vec![0x00ff_8040, 0x0000_00ff]], 0);
    for id in [0, 1] {
        draw(
            &mem,
            &table,
            &drawable(
                id,
                rect(0, 0, 2, 1),
                Clip::None,
                DrawBody::Copy(copy_body(src(), rect(0, 0, 2, 1), SPICE_ROPD_OP_PUT)),
            ),
        );
    }
    assert_eq!(&pixels(&mem, &s16)[0][..2], &[0x7e08, 0x001f]);
    assert_eq!(&pixels(&mem, &s565)[0][..2], &[0xfc08, 0x001f]);
    // A solid fill takes the colour as a native value.
    draw(
        &mem,
        &table,
        &drawable(
            0,
            rect(0, 1, 4, 2),
            Clip::None,
            DrawBody::Fill(Fill {
                brush: Brush::Solid(0x1234),
                rop_descriptor: SPICE_ROPD_OP_PUT,
                mask: None,
            }),
        ),
    );
    assert_eq!(pixels(&mem, &s16)[1], vec![0x1234; 4]);
    // An 8BIT_A bitmap copied into an A8 surface keeps its bytes; RGBA gives its alpha.
    let a = bitmap(BitmapFormat::Bit8A, 2, 1, 2, true, vec![0x12, 0xfe], None);
    draw(
        &mem,
        &table,
        &drawable(
            2,
            rect(0, 0, 2, 1),
            Clip::None,
            DrawBody::Copy(copy_body(a, rect(0, 0, 2, 1), SPICE_ROPD_OP_PUT)),
        ),
    );
    let rgba = bitmap(
        BitmapFormat::Rgba,
        1,
        1,
        4,
        true,
        0x8011_2233u32.to_le_bytes().to_vec(),
        None,
    );
    draw(
        &mem,
        &table,
        &drawable(
            2,
            rect(2, 0, 3, 1),
            Clip::None,
            DrawBody::Copy(copy_body(rgba, rect(0, 0, 1, 1), SPICE_ROPD_OP_PUT)),
        ),
    );
    assert_eq!(&pixels(&mem, &a8)[0][..3], &[0x12, 0xfe, 0x80]);
}

#[test]
fn bad_drawables_are_errors_and_unsupported_images_are_counted() {
    let (mem, table, _) = setup(BG);
    let fill = DrawBody::Fill(Fill {
        brush: Brush::Solid(1),
        rop_descriptor: SPICE_ROPD_OP_PUT,
        mask: None,
    });
    let mut r = Renderer::new();
    assert!(matches!(
        r.draw(
            &mem,
            &table,
            &drawable(0, rect(0, 0, 9, 1), Clip::None, fill.clone())
        ),
        Err(RenderError::BboxOutside { .. })
    ));
    assert!(matches!(
        r.draw(
            &mem,
            &table,
            &drawable(0, rect(3, 0, 2, 1), Clip::None, fill.clone())
        ),
        Err(RenderError::BboxOutside { .. })
    ));
    assert!(matches!(
        r.draw(
            &mem,
            &table,
            &drawable(1, rect(0, 0, 1, 1), Clip::None, fill)
        ),
        Err(RenderError::Surface(_))
    ));
    assert_eq!(r.stats().get(DrawKind::Fill).dropped, 3);
    let quic = Box::new(Image::Quic {
        descriptor: ImageDescriptor {
            id: 0,
            flags: 0,
            width: 1,
            height: 1,
        },
        data: vec![0; 4],
    });
    r.draw(
        &mem,
        &table,
        &drawable(
            0,
            rect(0, 0, 1, 1),
            Clip::None,
            DrawBody::Copy(copy_body(quic, rect(0, 0, 1, 1), SPICE_ROPD_OP_PUT)),
        ),
    )
    .unwrap();
    assert_eq!(r.stats().get(DrawKind::Copy).unsupported, 1);
    r.draw(
        &mem,
        &table,
        &drawable(0, rect(0, 0, 1, 1), Clip::None, DrawBody::Nop),
    )
    .unwrap();
    assert_eq!(r.stats().get(DrawKind::Nop).rendered, 1);
}

#[test]
fn copy_within_one_surface_through_a_surface_image_is_memmove() {
    let (mem, table, s) = setup(0);
    paint(&mem, &s, |x, y| y * 8 + x + 1);
    let mut want = pixels(&mem, &s);
    let src_area = rect(0, 0, 6, 4);
    let bbox = rect(1, 1, 7, 5);
    let region = Region::from_rect(bbox);
    reference_copy_bits(&mut want, bbox, Point { x: 0, y: 0 }, &region);
    draw(
        &mem,
        &table,
        &drawable(
            0,
            bbox,
            Clip::None,
            DrawBody::Copy(copy_body(surface_image(0), src_area, SPICE_ROPD_OP_PUT)),
        ),
    );
    assert_eq!(pixels(&mem, &s), want);
}

mod fuzz {
    //! Arbitrary drawables against small surfaces surrounded by canaries.

    use super::*;
    use proptest::prelude::*;

    const CANARY: u8 = 0xa5;

    fn any_rect() -> impl Strategy<Value = Rect> {
        let coord = prop_oneof![
            6 => -3i32..14,
            1 => Just(i32::MIN),
            1 => Just(i32::MAX),
            1 => any::<i32>(),
        ];
        (coord.clone(), coord.clone(), coord.clone(), coord).prop_map(|(a, b, c, d)| Rect {
            top: a,
            left: b,
            bottom: c,
            right: d,
        })
    }

    /// Mostly well-formed rectangles inside a 9x7 area, sometimes anything.
    fn mostly_valid_rect() -> impl Strategy<Value = Rect> {
        prop_oneof![
            3 => (0i32..6, 0i32..5, 0i32..6, 0i32..5).prop_map(|(a, b, c, d)| {
                rect(a.min(c), b.min(d), a.max(c), b.max(d))
            }),
            1 => any_rect(),
        ]
    }

    fn any_point() -> impl Strategy<Value = Point> {
        let coord = prop_oneof![8 => -40i32..200, 1 => any::<i32>()];
        (coord.clone(), coord).prop_map(|(x, y)| Point { x, y })
    }

    fn any_format() -> impl Strategy<Value = BitmapFormat> {
        prop_oneof![
            Just(BitmapFormat::Bit1Le),
            Just(BitmapFormat::Bit1Be),
            Just(BitmapFormat::Bit4Le),
            Just(BitmapFormat::Bit4Be),
            Just(BitmapFormat::Bit8),
            Just(BitmapFormat::Bit16),
            Just(BitmapFormat::Bit24),
            Just(BitmapFormat::Bit32),
            Just(BitmapFormat::Rgba),
            Just(BitmapFormat::Bit8A),
        ]
    }

    fn any_image() -> impl Strategy<Value = Box<Image>> {
        let bitmap = (
            any_format(),
            1u32..7,
            1u32..5,
            0u32..30,
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..120),
            proptest::option::of(proptest::collection::vec(any::<u32>(), 0..5)),
        )
            .prop_map(|(f, w, h, stride, top_down, data, palette)| {
                bitmap(f, w, h, stride, top_down, data, palette)
            });
        prop_oneof![
            4 => bitmap,
            2 => (0u32..5).prop_map(surface_image),
        ]
    }

    fn any_brush() -> impl Strategy<Value = Brush> {
        prop_oneof![
            Just(Brush::None),
            any::<u32>().prop_map(Brush::Solid),
            (any_image(), any_point()).prop_map(|(image, pos)| Brush::Pattern { image, pos }),
        ]
    }

    fn any_mask() -> impl Strategy<Value = Option<QMask>> {
        proptest::option::of(
            (any::<u8>(), any_point(), any_image()).prop_map(|(flags, pos, bitmap)| QMask {
                flags,
                pos,
                bitmap,
            }),
        )
    }

    fn any_rop() -> impl Strategy<Value = u16> {
        prop_oneof![Just(SPICE_ROPD_OP_PUT), 0u16..0x800]
    }

    fn any_copy() -> impl Strategy<Value = CopyBody> {
        (
            any_image(),
            mostly_valid_rect(),
            any_rop(),
            0u8..3,
            any_mask(),
        )
            .prop_map(
                |(src, src_area, rop_descriptor, scale_mode, mask)| CopyBody {
                    src,
                    src_area,
                    rop_descriptor,
                    scale_mode,
                    mask,
                },
            )
    }

    fn any_body() -> impl Strategy<Value = DrawBody> {
        let path = proptest::collection::vec(
            (
                0u32..32,
                proptest::collection::vec(
                    prop_oneof![8 => (-200i32..300, -200i32..300), 1 => (any::<i32>(), any::<i32>())]
                        .prop_map(|(x, y)| Point { x, y }),
                    0..7,
                ),
            )
                .prop_map(|(flags, points)| PathSeg { flags, points }),
            0..4,
        );
        let glyphs = proptest::collection::vec(
            (
                any_point(),
                any_point(),
                0u16..9,
                0u16..6,
                proptest::collection::vec(any::<u8>(), 0..40),
            )
                .prop_map(|(render_pos, glyph_origin, width, height, data)| {
                    RasterGlyph {
                        render_pos,
                        glyph_origin,
                        width,
                        height,
                        data,
                    }
                }),
            0..4,
        );
        prop_oneof![
            Just(DrawBody::Nop),
            (any_brush(), any_rop(), any_mask()).prop_map(|(brush, rop_descriptor, mask)| {
                DrawBody::Fill(Fill {
                    brush,
                    rop_descriptor,
                    mask,
                })
            }),
            any_copy().prop_map(DrawBody::Copy),
            any_copy().prop_map(DrawBody::Blend),
            (
                any_image(),
                mostly_valid_rect(),
                any_brush(),
                any_rop(),
                any_mask()
            )
                .prop_map(|(src, src_area, brush, rop_descriptor, mask)| {
                    DrawBody::Opaque(Opaque {
                        src,
                        src_area,
                        brush,
                        rop_descriptor,
                        scale_mode: 1,
                        mask,
                    })
                }),
            (
                any_image(),
                any_rect(),
                any_brush(),
                any::<u8>(),
                any_mask()
            )
                .prop_map(|(src, src_area, brush, rop3, mask)| DrawBody::Rop3(Rop3 {
                    src,
                    src_area,
                    brush,
                    rop3,
                    scale_mode: 0,
                    mask,
                })),
            any_point().prop_map(|src_pos| DrawBody::CopyBits { src_pos }),
            any_mask().prop_map(|mask| DrawBody::Blackness { mask }),
            any_mask().prop_map(|mask| DrawBody::Whiteness { mask }),
            any_mask().prop_map(|mask| DrawBody::Invers { mask }),
            (any_image(), mostly_valid_rect(), any::<u32>()).prop_map(
                |(src, src_area, true_color)| {
                    DrawBody::Transparent(Transparent {
                        src,
                        src_area,
                        src_color: 0,
                        true_color,
                    })
                }
            ),
            (any_image(), mostly_valid_rect(), 0u16..4, any::<u8>()).prop_map(
                |(src, src_area, alpha_flags, alpha)| DrawBody::AlphaBlend(AlphaBlend {
                    alpha_flags,
                    alpha,
                    src,
                    src_area,
                })
            ),
            (path, any_brush(), any_rop(), 0i32..3, any::<u8>()).prop_map(
                |(segments, brush, fore_mode, width, flags)| DrawBody::Stroke(Stroke {
                    path: Path { segments },
                    attr: LineAttr {
                        flags,
                        join_style: 0,
                        end_style: 0,
                        width,
                        miter_limit: 0,
                        style: Vec::new(),
                    },
                    brush,
                    fore_mode,
                    back_mode: fore_mode,
                })
            ),
            (
                glyphs,
                prop_oneof![Just(1u8), Just(4), Just(8)],
                any::<u16>(),
                any_rect(),
                any_brush(),
                any_brush(),
                any_rop()
            )
                .prop_map(
                    |(glyphs, bpp, flags, back_area, fore_brush, back_brush, fore_mode)| {
                        DrawBody::Text(Text {
                            string: GlyphString { flags, bpp, glyphs },
                            back_area,
                            fore_brush,
                            back_brush,
                            fore_mode,
                            back_mode: fore_mode,
                        })
                    }
                ),
            (
                any::<u32>(),
                any_image(),
                proptest::option::of(any_image()),
                any_point(),
                any_point(),
                proptest::option::of(any::<[u32; 6]>())
            )
                .prop_map(|(flags, src, mask, src_origin, mask_origin, t)| {
                    let transform = t.map(|t| QXLTransform {
                        t00: t[0],
                        t01: t[1],
                        t02: t[2],
                        t10: t[3],
                        t11: t[4],
                        t12: t[5],
                    });
                    DrawBody::Composite(Composite {
                        flags,
                        src,
                        src_transform: transform,
                        mask,
                        mask_transform: transform,
                        src_origin,
                        mask_origin,
                    })
                }),
        ]
    }

    fn any_clip() -> impl Strategy<Value = Clip> {
        prop_oneof![
            Just(Clip::None),
            proptest::collection::vec(mostly_valid_rect(), 0..5).prop_map(Clip::Rects),
        ]
    }

    fn any_surface_format() -> impl Strategy<Value = SurfaceFormat> {
        prop_oneof![
            4 => Just(SurfaceFormat::Xrgb8888),
            1 => Just(SurfaceFormat::Argb8888),
            1 => Just(SurfaceFormat::Rgb555),
            1 => Just(SurfaceFormat::Rgb565),
            1 => Just(SurfaceFormat::A8),
            1 => Just(SurfaceFormat::A1),
        ]
    }

    /// Surfaces 0..3 at fixed places with 256-byte canary gaps between them.
    const BASES: [u64; 4] = [0x1000, 0x2000, 0x3000, 0x4000];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_drawables_stay_inside_the_destination(
            formats in proptest::collection::vec(any_surface_format(), 4),
            sizes in proptest::collection::vec((5u32..9, 4u32..7, any::<bool>()), 4),
            present in proptest::collection::vec(proptest::bool::weighted(0.8), 4),
            dest in 0u32..4,
            bbox in mostly_valid_rect(),
            clip in any_clip(),
            body in any_body(),
        ) {
            let mem = memory();
            mem.write_slice(&vec![CANARY; 0x8000], GuestAddress(0)).unwrap();
            let mut table = SurfaceTable::new(4);
            let mut ranges = Vec::new();
            for id in 0..4usize {
                let (w, h, bottom_up) = sizes[id];
                let bpp = formats[id].bits_per_pixel();
                let stride = ((w * bpp).div_ceil(8)).next_multiple_of(4) as i32;
                let stride = if bottom_up { -stride } else { stride };
                let s = surface(BASES[id], w, h, stride, formats[id]);
                ranges.push((s.memory.addr.0, s.memory.len));
                if present[id] || id as u32 == dest {
                    table.create(id as u32, s).unwrap();
                }
            }
            let d = drawable(dest, bbox, clip, body);
            let mut r = Renderer::new();
            let _ = r.draw(&mem, &table, &d);
            let mut all = vec![0u8; 0x8000];
            mem.read_slice(&mut all, GuestAddress(0)).unwrap();
            let (start, len) = ranges[dest as usize];
            for (addr, byte) in all.iter().enumerate() {
                let addr = addr as u64;
                let in_dest = addr >= start && addr < start + len;
                if !in_dest {
                    prop_assert_eq!(*byte, CANARY, "write outside the destination at {:#x}", addr);
                }
            }
            let counts = r.stats().get(DrawKind::of(&d.body));
            prop_assert_eq!(counts.rendered + counts.unsupported + counts.dropped, 1);
        }

        /// COPY_BITS equals a memmove of the source area, whatever the clip.
        #[test]
        fn copy_bits_is_memmove(
            bbox in (0i32..8, 0i32..6, 0i32..9, 0i32..7),
            src in (-3i32..10, -3i32..8),
            clip in proptest::collection::vec((0i32..8, 0i32..6, 0i32..9, 0i32..7), 0..4),
            use_clip in any::<bool>(),
        ) {
            let (mem, table, s) = setup(0);
            paint(&mem, &s, |x, y| y * 8 + x + 1);
            let bbox = rect(bbox.0, bbox.1, bbox.0.max(bbox.2), bbox.1.max(bbox.3));
            let clip_rects: Vec<Rect> = clip.into_iter().map(|(a, b, c, d)| rect(a, b, c, d)).collect();
            let within = crate::region::intersect(bbox, rect(0, 0, 8, 6));
            let region = if use_clip {
                Region::from_rects(&clip_rects, within).unwrap()
            } else {
                Region::from_rect(within)
            };
            let src = Point { x: src.0, y: src.1 };
            let mut want = pixels(&mem, &s);
            reference_copy_bits(&mut want, bbox, src, &region);
            let clip = if use_clip { Clip::Rects(clip_rects) } else { Clip::None };
            draw(&mem, &table, &drawable(0, bbox, clip, DrawBody::CopyBits { src_pos: src }));
            prop_assert_eq!(pixels(&mem, &s), want);
        }
    }
}
