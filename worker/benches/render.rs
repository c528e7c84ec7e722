//! The renderer's hot path: what Linux's drm/qxl sends for every damaged frame — a COPY of
//! a top-down 32-bit bitmap whose stride is the framebuffer pitch into the xRGB primary,
//! with clip rectangles — at 1024x768 and 1920x1080.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use saffron_ring::abi::{QXL_EFFECT_OPAQUE, SPICE_IMAGE_SCALE_MODE_INTERPOLATE, SPICE_ROPD_OP_PUT};
use saffron_ring::parse::{
    Bitmap, BitmapFormat, Brush, Clip, CopyBody, DrawBody, Drawable, Fill, Image, ImageDescriptor,
    Rect, ReleaseInfo, SurfaceFormat, SurfaceMemory,
};
use saffron_worker::{Renderer, Surface, SurfaceTable};
use vm_memory::{GuestAddress, GuestMemoryMmap};

fn rect(left: i32, top: i32, right: i32, bottom: i32) -> Rect {
    Rect {
        top,
        left,
        bottom,
        right,
    }
}

fn drawable(bbox: Rect, clip: Clip, body: DrawBody) -> Drawable {
    Drawable {
        release: ReleaseInfo {
            id: 1,
            addr: GuestAddress(0),
        },
        surface_id: 0,
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

/// A full-screen COPY as qxl_draw_dirty_fb builds it, clipped by `clips`.
fn linux_copy(w: u32, h: u32, clips: Vec<Rect>) -> Drawable {
    let stride = w * 4;
    let data: Vec<u8> = (0..stride * h).map(|i| (i * 7) as u8).collect();
    let image = Image::Bitmap(Bitmap {
        descriptor: ImageDescriptor {
            id: 0,
            flags: 0,
            width: w,
            height: h,
        },
        format: BitmapFormat::Bit32,
        top_down: true,
        unstable: false,
        width: w,
        height: h,
        stride,
        palette: None,
        data,
    });
    let full = rect(0, 0, w as i32, h as i32);
    drawable(
        full,
        Clip::Rects(clips),
        DrawBody::Copy(CopyBody {
            src: Box::new(image),
            src_area: full,
            rop_descriptor: SPICE_ROPD_OP_PUT,
            scale_mode: SPICE_IMAGE_SCALE_MODE_INTERPOLATE,
            mask: None,
        }),
    )
}

fn setup(w: u32, h: u32) -> (GuestMemoryMmap, SurfaceTable) {
    let len = u64::from(w) * u64::from(h) * 4;
    let base = 1u64 << 20;
    let mem =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), (base + len) as usize)]).expect("memory");
    let surface = Surface::new(
        SurfaceMemory {
            addr: GuestAddress(base),
            len,
        },
        w,
        h,
        (w * 4) as i32,
        SurfaceFormat::Xrgb8888,
    )
    .expect("surface");
    let mut table = SurfaceTable::new(1024);
    table.create(0, surface).expect("create");
    (mem, table)
}

fn bench_copy(c: &mut Criterion) {
    let mut group = c.benchmark_group("copy_32bit_full_screen");
    for (w, h) in [(1024u32, 768u32), (1920, 1080)] {
        let (mem, table) = setup(w, h);
        let (wi, hi) = (w as i32, h as i32);
        let cases = [
            ("one_clip_rect", vec![rect(0, 0, wi, hi)]),
            (
                "four_clip_rects",
                vec![
                    rect(0, 0, wi / 2, hi / 2),
                    rect(wi / 2, 0, wi, hi / 2),
                    rect(0, hi / 2, wi / 2, hi),
                    rect(wi / 2, hi / 2, wi, hi),
                ],
            ),
        ];
        group.throughput(Throughput::Bytes(u64::from(w) * u64::from(h) * 4));
        for (name, clips) in cases {
            let d = linux_copy(w, h, clips);
            let mut renderer = Renderer::new();
            group.bench_with_input(BenchmarkId::new(name, format!("{w}x{h}")), &d, |b, d| {
                b.iter(|| renderer.draw(&mem, &table, d).expect("draw"))
            });
        }
        let fill = drawable(
            rect(0, 0, wi, hi),
            Clip::None,
            DrawBody::Fill(Fill {
                brush: Brush::Solid(0x0012_3456),
                rop_descriptor: SPICE_ROPD_OP_PUT,
                mask: None,
            }),
        );
        let mut renderer = Renderer::new();
        group.bench_with_input(
            BenchmarkId::new("solid_fill", format!("{w}x{h}")),
            &fill,
            |b, d| b.iter(|| renderer.draw(&mem, &table, d).expect("draw")),
        );
    }
    group.finish();
}

criterion_group!(benches, bench_copy);
criterion_main!(benches);
