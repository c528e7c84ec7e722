//! Shared pieces of the fuzz targets: a small device address space with two memslots, a
//! byte reader that never fails (missing bytes read as 0), and builders of valid guest
//! structures used both by the structure-aware targets and by the seed generator
//! (`cargo run --example gen_corpus`).

use saffron_ring::abi::*;
use saffron_ring::memslot::{BarRange, MemSlotTable, make_phys};
use saffron_ring::parse::{SurfaceFormat, SurfaceMemory};
use saffron_worker::{Surface, SurfaceTable};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

/// "BAR0": command structures, images, chunks. Slot 1 covers all of it.
pub const RAM: u64 = 0;
pub const RAM_SIZE: u64 = 64 << 10;
/// "BAR1": surfaces. Slot 2 covers all of it.
pub const VRAM: u64 = 1 << 20;
pub const VRAM_SIZE: u64 = 256 << 10;
/// Surface ids below this are valid.
pub const N_SURFACES: u32 = 8;
/// The primary: 64 × 64 xRGB at VRAM offset 0, stride 256.
pub const PRIMARY_W: u32 = 64;
pub const PRIMARY_H: u32 = 64;

pub fn bars() -> [BarRange; 2] {
    [
        BarRange {
            base: GuestAddress(RAM),
            len: RAM_SIZE,
        },
        BarRange {
            base: GuestAddress(VRAM),
            len: VRAM_SIZE,
        },
    ]
}

pub fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[
        (GuestAddress(RAM), RAM_SIZE as usize),
        (GuestAddress(VRAM), VRAM_SIZE as usize),
    ])
    .expect("anonymous memory")
}

/// Slot 1 = RAM, slot 2 = VRAM, generation 0 (what Linux sets up).
pub fn slots() -> MemSlotTable {
    let mut t = MemSlotTable::new();
    let [ram, vram] = bars();
    for (id, bar) in [(1, ram), (2, vram)] {
        t.add(
            id,
            QXLMemSlot {
                mem_start: bar.base.0,
                mem_end: bar.base.0 + bar.len,
            },
            &bars(),
        )
        .expect("slot inside its BAR");
    }
    t
}

/// A pointer into slot 1 (RAM).
pub fn p1(offset: u64) -> QXLPHYSICAL {
    make_phys(1, 0, offset).unwrap_or(0)
}

/// A pointer into slot 2 (VRAM).
pub fn p2(offset: u64) -> QXLPHYSICAL {
    make_phys(2, 0, offset).unwrap_or(0)
}

/// A surface table holding the primary.
pub fn surfaces_with_primary() -> SurfaceTable {
    let mut t = SurfaceTable::new(N_SURFACES);
    let primary = Surface::new(
        SurfaceMemory {
            addr: GuestAddress(VRAM),
            len: u64::from(PRIMARY_W * PRIMARY_H * 4),
        },
        PRIMARY_W,
        PRIMARY_H,
        (PRIMARY_W * 4) as i32,
        SurfaceFormat::from_raw(SPICE_SURFACE_FMT_32_xRGB).expect("xRGB"),
    )
    .expect("primary fits");
    t.create(0, primary).expect("fresh table");
    t
}

/// Zeroes `mem` and copies `image` to the start of RAM (extra bytes are dropped).
pub fn load_ram(mem: &GuestMemoryMmap, image: &[u8]) {
    let zero = vec![0u8; VRAM_SIZE as usize];
    let _ = mem.write_slice(&zero[..RAM_SIZE as usize], GuestAddress(RAM));
    let _ = mem.write_slice(&zero, GuestAddress(VRAM));
    let n = image.len().min(RAM_SIZE as usize);
    let _ = mem.write_slice(&image[..n], GuestAddress(RAM));
}

/// Little-endian reads from fuzz input; past the end every read is 0.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.bytes.len());
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        head
    }
    fn fixed<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        let src = self.take(N);
        b[..src.len()].copy_from_slice(src);
        b
    }
    pub fn u8(&mut self) -> u8 {
        self.fixed::<1>()[0]
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.fixed())
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.fixed())
    }
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.fixed())
    }
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.bytes.len())
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Little-endian writes, the inverse of [`Reader`].
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
}

/// Builds an image of slot-1 memory: objects are appended 8-byte aligned and their slot-1
/// pointers returned. Offset 0 is left unused so that pointer 0 stays "none".
pub struct RamImage(pub Vec<u8>);

impl Default for RamImage {
    fn default() -> Self {
        RamImage(vec![0u8; 64])
    }
}

impl RamImage {
    pub fn bytes(&mut self, b: &[u8]) -> QXLPHYSICAL {
        while self.0.len() % 8 != 0 {
            self.0.push(0);
        }
        let at = self.0.len() as u64;
        self.0.extend_from_slice(b);
        p1(at)
    }
    pub fn obj<T: ByteValued>(&mut self, v: T) -> QXLPHYSICAL {
        self.bytes(v.as_slice())
    }
    /// A chunk chain holding `data` split into `pieces` chunks; returns the first header.
    pub fn chain(&mut self, data: &[u8], pieces: usize) -> QXLPHYSICAL {
        let size = data.len().div_ceil(pieces.max(1)).max(1);
        let parts: Vec<&[u8]> = data.chunks(size).collect();
        let mut next = 0;
        for part in parts.iter().rev() {
            let mut b = QXLDataChunk {
                data_size: part.len() as u32,
                prev_chunk: 0,
                next_chunk: next,
            }
            .as_slice()
            .to_vec();
            b.extend_from_slice(part);
            next = self.bytes(&b);
        }
        next
    }
}

/// Copies `v` into `u` (a drawable's or cursor command's union bytes).
pub fn set_union<T: ByteValued, const N: usize>(u: &mut [u8; N], v: T) {
    let s = v.as_slice();
    u[..s.len()].copy_from_slice(s);
}

pub fn rect(top: i32, left: i32, bottom: i32, right: i32) -> QXLRect {
    QXLRect {
        top,
        left,
        bottom,
        right,
    }
}

/// A drawable on surface `surface_id` with `bbox`, no clip, and `body` in its union.
pub fn drawable<T: ByteValued>(
    surface_id: u32,
    type_: u8,
    bbox: QXLRect,
    clip: QXLClip,
    body: T,
    release_id: u64,
) -> QXLDrawable {
    let mut d = QXLDrawable {
        release_info: QXLReleaseInfo { id: release_id },
        surface_id,
        type_,
        bbox,
        clip,
        surfaces_dest: [-1; 3],
        ..Default::default()
    };
    set_union(&mut d.u, body);
    d
}

/// A bitmap image (descriptor + bitmap) pointing at `data` (a chain unless DIRECT).
pub fn bitmap_image(
    format: u8,
    flags: u8,
    width: u32,
    height: u32,
    stride: u32,
    palette: QXLPHYSICAL,
    data: QXLPHYSICAL,
) -> QXLImage {
    QXLImage {
        descriptor: QXLImageDescriptor {
            id: 0x1234,
            type_: SPICE_IMAGE_TYPE_BITMAP,
            flags: 0,
            width,
            height,
        },
        bitmap: QXLBitmap {
            format,
            flags,
            x: width,
            y: height,
            stride,
            palette,
            data,
        },
    }
}

/// A palette of `n` entries.
pub fn palette(img: &mut RamImage, n: u16) -> QXLPHYSICAL {
    let mut b = QXLPalette {
        unique: 7,
        num_ents: n,
    }
    .as_slice()
    .to_vec();
    for i in 0..u32::from(n) {
        b.extend_from_slice(&(0x0001_0203u32.wrapping_mul(i + 1)).to_le_bytes());
    }
    img.bytes(&b)
}

/// A clip list of `rects`.
pub fn clip_rects(img: &mut RamImage, rects: &[QXLRect]) -> QXLClip {
    let mut data = Vec::new();
    for r in rects {
        data.extend_from_slice(r.as_slice());
    }
    let mut b = (rects.len() as u32).to_le_bytes().to_vec();
    b.extend_from_slice(
        QXLDataChunk {
            data_size: data.len() as u32,
            prev_chunk: 0,
            next_chunk: 0,
        }
        .as_slice(),
    );
    b.extend_from_slice(&data);
    QXLClip {
        type_: SPICE_CLIP_TYPE_RECTS,
        data: img.bytes(&b),
    }
}

/// A COPY of a `w × h` bitmap in `format` (palette when paletted) to `bbox` of the primary,
/// clipped to two rectangles.
pub fn copy_drawable(img: &mut RamImage, format: u8, w: u32, h: u32, direct: bool) -> QXLPHYSICAL {
    let bpp = SPICE_BITMAP_FMT_BPP
        .get(usize::from(format))
        .copied()
        .unwrap_or(32);
    let stride = (w * bpp).div_ceil(8).next_multiple_of(4);
    let pixels: Vec<u8> = (0..stride * h).map(|i| (i * 37 % 251) as u8).collect();
    let data = if direct {
        img.bytes(&pixels)
    } else {
        img.chain(&pixels, 2)
    };
    let pal = match format {
        SPICE_BITMAP_FMT_1BIT_LE | SPICE_BITMAP_FMT_1BIT_BE => palette(img, 2),
        SPICE_BITMAP_FMT_4BIT_LE | SPICE_BITMAP_FMT_4BIT_BE => palette(img, 16),
        SPICE_BITMAP_FMT_8BIT => palette(img, 256),
        _ => 0,
    };
    let flags = if direct { QXL_BITMAP_DIRECT } else { 0 } | QXL_BITMAP_TOP_DOWN;
    let image = img.obj(bitmap_image(format, flags, w, h, stride, pal, data));
    let bbox = rect(4, 4, 4 + h as i32, 4 + w as i32);
    let clip = clip_rects(img, &[rect(4, 4, 8, 60), rect(8, 4, 60, 30)]);
    let copy = QXLCopy {
        src_bitmap: image,
        src_area: rect(0, 0, h as i32, w as i32),
        rop_descriptor: SPICE_ROPD_OP_PUT,
        scale_mode: 0,
        mask: QXLQMask::default(),
    };
    img.obj(drawable(0, QXL_DRAW_COPY, bbox, clip, copy, 1))
}

/// A solid FILL of `bbox` on `surface_id`.
pub fn fill_drawable(img: &mut RamImage, surface_id: u32, bbox: QXLRect) -> QXLPHYSICAL {
    let mut brush = QXLBrush {
        type_: SPICE_BRUSH_TYPE_SOLID,
        u: [0; 16],
    };
    brush.u[..4].copy_from_slice(&0x00ff_8000u32.to_le_bytes());
    let fill = QXLFill {
        brush,
        rop_descriptor: SPICE_ROPD_OP_PUT,
        mask: QXLQMask::default(),
    };
    let clip = QXLClip {
        type_: SPICE_CLIP_TYPE_NONE,
        data: 0,
    };
    img.obj(drawable(surface_id, QXL_DRAW_FILL, bbox, clip, fill, 2))
}

/// A surface CREATE of `id`: `w × h` xRGB in VRAM at `vram_offset`.
pub fn surface_create(
    img: &mut RamImage,
    id: u32,
    w: u32,
    h: u32,
    vram_offset: u64,
) -> QXLPHYSICAL {
    img.obj(QXLSurfaceCmd {
        release_info: QXLReleaseInfo { id: 3 },
        surface_id: id,
        type_: QXL_SURFACE_CMD_CREATE,
        flags: 0,
        surface_create: QXLSurface {
            format: SPICE_SURFACE_FMT_32_xRGB,
            width: w,
            height: h,
            stride: (w * 4) as i32,
            data: p2(vram_offset),
        },
    })
}

/// A cursor SET with a `w × h` shape of `type_` whose data is `data`.
pub fn cursor_set(img: &mut RamImage, type_: u16, w: u16, h: u16, data: &[u8]) -> QXLPHYSICAL {
    let cursor = QXLCursor {
        header: QXLCursorHeader {
            unique: 9,
            type_,
            width: w,
            height: h,
            hot_spot_x: w / 2,
            hot_spot_y: h / 2,
        },
        data_size: data.len() as u32,
        chunk: QXLDataChunk {
            data_size: data.len() as u32,
            prev_chunk: 0,
            next_chunk: 0,
        },
    };
    let mut b = cursor.as_slice().to_vec();
    b.extend_from_slice(data);
    let shape = img.bytes(&b);
    let mut cmd = QXLCursorCmd {
        release_info: QXLReleaseInfo { id: 4 },
        type_: QXL_CURSOR_SET,
        ..Default::default()
    };
    set_union(
        &mut cmd.u,
        QXLCursorSet {
            position: QXLPoint16 { x: 10, y: 10 },
            visible: 1,
            shape,
        },
    );
    img.obj(cmd)
}

/// Bytes of a cursor shape of `type_` at `w × h` with the size the parser expects.
pub fn cursor_data(type_: u16, w: u16, h: u16) -> Vec<u8> {
    let (w, h) = (usize::from(w), usize::from(h));
    let mask = w.div_ceil(8) * h;
    let n = match type_ {
        SPICE_CURSOR_TYPE_ALPHA | SPICE_CURSOR_TYPE_COLOR32 => w * h * 4 + mask,
        SPICE_CURSOR_TYPE_MONO => 2 * mask,
        SPICE_CURSOR_TYPE_COLOR4 => (w.div_ceil(2) * h) + 16 * 4 + mask,
        SPICE_CURSOR_TYPE_COLOR8 => w * h + 256 * 4 + mask,
        SPICE_CURSOR_TYPE_COLOR16 => w * h * 2 + mask,
        _ => w * h * 3 + mask,
    };
    (0..n).map(|i| (i * 13 % 256) as u8).collect()
}

/// Pieces of the `device_ports` target shared with the seed generator.
pub mod device {
    use super::*;
    use arbitrary::Arbitrary;
    use core::mem::offset_of;
    use saffron_device::QxlDevice;
    use saffron_device::qxl::bar;

    pub const RAM_SIZE: u64 = 256 << 10;
    pub const VRAM_SIZE: u64 = 64 << 10;
    pub const RAM_HEADER: u64 = 8192;
    pub const BAR0_ADDR: u32 = 0xf400_0000;
    pub const BAR1_ADDR: u32 = 0xf800_0000;
    /// Where BAR4 (when the device has one) is programmed: above 4 GiB, as a 64-bit BAR may be.
    pub const BAR4_ADDR: u64 = 0x8_0000_0000;
    pub const IO_ADDR: u32 = 0xc040;

    #[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Width {
        B1,
        B2,
        B4,
        B8,
    }

    impl Width {
        pub fn bytes(self) -> usize {
            match self {
                Width::B1 => 1,
                Width::B2 => 2,
                Width::B4 => 4,
                Width::B8 => 8,
            }
        }
    }

    /// RAM-header fields a driver writes.
    #[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Field {
        IntPending,
        IntMask,
        CmdProd,
        CmdCons,
        CmdNotifyOnProd,
        CursorProd,
        ReleaseCons,
        ReleaseProd,
        UpdateArea,
        UpdateSurface,
        MemSlotStart,
        MemSlotEnd,
        CreateWidth,
        CreateHeight,
        CreateStride,
        CreateFormat,
        CreateMem,
        MonitorsConfig,
        Raw(u16),
    }

    impl Field {
        /// (offset in the RAM header, bytes).
        pub fn place(self) -> (u64, usize) {
            let ring = |r: usize, f: usize| (r + f) as u64;
            let cs = offset_of!(QXLRam, create_surface);
            match self {
                Field::IntPending => (offset_of!(QXLRam, int_pending) as u64, 4),
                Field::IntMask => (offset_of!(QXLRam, int_mask) as u64, 4),
                Field::CmdProd => (
                    ring(
                        offset_of!(QXLRam, cmd_ring),
                        offset_of!(QXLRingHeader, prod),
                    ),
                    4,
                ),
                Field::CmdCons => (
                    ring(
                        offset_of!(QXLRam, cmd_ring),
                        offset_of!(QXLRingHeader, cons),
                    ),
                    4,
                ),
                Field::CmdNotifyOnProd => (
                    ring(
                        offset_of!(QXLRam, cmd_ring),
                        offset_of!(QXLRingHeader, notify_on_prod),
                    ),
                    4,
                ),
                Field::CursorProd => (
                    ring(
                        offset_of!(QXLRam, cursor_ring),
                        offset_of!(QXLRingHeader, prod),
                    ),
                    4,
                ),
                Field::ReleaseCons => (
                    ring(
                        offset_of!(QXLRam, release_ring),
                        offset_of!(QXLRingHeader, cons),
                    ),
                    4,
                ),
                Field::ReleaseProd => (
                    ring(
                        offset_of!(QXLRam, release_ring),
                        offset_of!(QXLRingHeader, prod),
                    ),
                    4,
                ),
                Field::UpdateArea => (offset_of!(QXLRam, update_area) as u64, 8),
                Field::UpdateSurface => (offset_of!(QXLRam, update_surface) as u64, 4),
                Field::MemSlotStart => (offset_of!(QXLRam, mem_slot) as u64, 8),
                Field::MemSlotEnd => (offset_of!(QXLRam, mem_slot) as u64 + 8, 8),
                Field::CreateWidth => ((cs + offset_of!(QXLSurfaceCreate, width)) as u64, 4),
                Field::CreateHeight => ((cs + offset_of!(QXLSurfaceCreate, height)) as u64, 4),
                Field::CreateStride => ((cs + offset_of!(QXLSurfaceCreate, stride)) as u64, 4),
                Field::CreateFormat => ((cs + offset_of!(QXLSurfaceCreate, format)) as u64, 4),
                Field::CreateMem => ((cs + offset_of!(QXLSurfaceCreate, mem)) as u64, 8),
                Field::MonitorsConfig => (offset_of!(QXLRam, monitors_config) as u64, 8),
                Field::Raw(at) => (u64::from(at) % (RAM_HEADER - 8), 8),
            }
        }
    }

    /// Valid guest objects the fuzzer can place and push, so the worker is reached with
    /// real traffic and not only with garbage.
    #[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Object {
        Copy {
            format: u8,
            w: u8,
            h: u8,
            direct: bool,
        },
        Fill {
            surface: u8,
            bottom: u8,
            right: u8,
        },
        SurfaceCreate {
            id: u8,
            w: u8,
            h: u8,
        },
        SurfaceDestroy {
            id: u8,
        },
        CursorSet {
            type_: u8,
            w: u8,
            h: u8,
        },
    }

    impl Object {
        /// (slot-1 image based at BAR0 offset 0, pointer to the command, command type).
        pub fn build(self) -> (Vec<u8>, QXLPHYSICAL, u32) {
            let mut img = RamImage::default();
            let (phys, t) = match self {
                Object::Copy {
                    format,
                    w,
                    h,
                    direct,
                } => (
                    copy_drawable(
                        &mut img,
                        format % 11,
                        u32::from(w % 48) + 1,
                        u32::from(h % 48) + 1,
                        direct,
                    ),
                    QXL_CMD_DRAW,
                ),
                Object::Fill {
                    surface,
                    bottom,
                    right,
                } => (
                    fill_drawable(
                        &mut img,
                        u32::from(surface % 4),
                        rect(0, 0, i32::from(bottom), i32::from(right)),
                    ),
                    QXL_CMD_DRAW,
                ),
                Object::SurfaceCreate { id, w, h } => (
                    surface_create(
                        &mut img,
                        u32::from(id % 4),
                        u32::from(w % 64) + 1,
                        u32::from(h % 64) + 1,
                        0,
                    ),
                    QXL_CMD_SURFACE,
                ),
                Object::SurfaceDestroy { id } => {
                    let p = img.obj(QXLSurfaceCmd {
                        release_info: QXLReleaseInfo { id: 5 },
                        surface_id: u32::from(id % 4),
                        type_: QXL_SURFACE_CMD_DESTROY,
                        ..Default::default()
                    });
                    (p, QXL_CMD_SURFACE)
                }
                Object::CursorSet { type_, w, h } => {
                    let (t, w, h) = (u16::from(type_ % 7), u16::from(w % 65), u16::from(h % 65));
                    let data = cursor_data(t, w, h);
                    (cursor_set(&mut img, t, w, h, &data), QXL_CMD_CURSOR)
                }
            };
            (img.0, phys, t)
        }
    }

    #[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
    pub enum Op {
        ConfigWrite {
            offset: u8,
            value: u32,
            width: Width,
        },
        BarWrite {
            bar: u8,
            offset: u32,
            value: u64,
            width: Width,
        },
        BarRead {
            bar: u8,
            offset: u32,
            width: Width,
        },
        RamField {
            field: Field,
            value: u64,
        },
        Io {
            port: u8,
            value: u8,
        },
        Push {
            cursor: bool,
            object: Option<Object>,
            offset: u32,
            type_: u8,
        },
        BringUp,
        Reset,
    }

    pub fn make_phys_slot1(offset: u64) -> QXLPHYSICAL {
        p1(offset)
    }

    fn put(dev: &mut QxlDevice, at: u64, b: &[u8]) {
        dev.bar_write(bar::RAM, RAM_SIZE - RAM_HEADER + at, b);
    }

    /// What firmware and Linux's qxl_device_init do: BARs, RESET, interrupt mask, memslot 1
    /// (BAR0 up to the RAM header) and 2 (BAR1), then a 64 × 64 primary in slot 2.
    pub fn bring_up(dev: &mut QxlDevice) {
        dev.config_write(0x10, &BAR0_ADDR.to_le_bytes());
        dev.config_write(0x14, &BAR1_ADDR.to_le_bytes());
        dev.config_write(0x1c, &IO_ADDR.to_le_bytes());
        dev.config_write(0x20, &BAR4_ADDR.to_le_bytes());
        dev.config_write(0x04, &0x0007u16.to_le_bytes());
        dev.bar_write(bar::IO, u64::from(QXL_IO_RESET), &[0]);
        put(
            dev,
            offset_of!(QXLRam, int_mask) as u64,
            &0x27u32.to_le_bytes(),
        );
        let b0 = u64::from(BAR0_ADDR);
        let b1 = u64::from(BAR1_ADDR);
        for (id, start, end) in [
            (1u8, b0, b0 + RAM_SIZE - RAM_HEADER),
            (2, b1, b1 + VRAM_SIZE),
        ] {
            let slot = QXLMemSlot {
                mem_start: start,
                mem_end: end,
            };
            put(dev, offset_of!(QXLRam, mem_slot) as u64, slot.as_slice());
            dev.bar_write(bar::IO, u64::from(QXL_IO_MEMSLOT_ADD), &[id]);
        }
        let create = QXLSurfaceCreate {
            width: 64,
            height: 64,
            stride: 256,
            format: SPICE_SURFACE_FMT_32_xRGB,
            position: 0,
            mouse_mode: 0,
            flags: 0,
            type_: QXL_SURF_TYPE_PRIMARY,
            mem: p2(0),
        };
        put(
            dev,
            offset_of!(QXLRam, create_surface) as u64,
            create.as_slice(),
        );
        dev.bar_write(bar::IO, u64::from(QXL_IO_CREATE_PRIMARY), &[0]);
    }
}

/// The `vga` target's input format, shared with the seed generator.
///
/// First byte even: a stream of 6-byte operations on a `saffron_vga::Vga` (see [`vga::Op`]).
/// First byte odd: the rest is QEMU trace text for `saffron_vga::replay::Replay`.
pub mod vga {
    use saffron_vga::regs::{VBE_DISPI_IOPORT_DATA, VBE_DISPI_IOPORT_INDEX};
    use saffron_vga::{RenderOptions, Vga};

    /// Video memory of the fuzzed VGA: small, so renders and VBE clears stay cheap, and the
    /// smallest size the model takes.
    pub const VRAM_SIZE: usize = 256 << 10;

    /// One guest access.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Op {
        PortWrite { port: u16, val: u8 },
        PortRead { port: u16 },
        VbeWrite { index: u16, val: u16 },
        VbeRead { index: u16 },
        WindowWrite { addr: u64, val: u8 },
        WindowRead { addr: u64 },
        LfbWrite { offset: u64, val: u8 },
        Render { cursor_visible: bool },
    }

    pub const OP_SIZE: usize = 6;

    /// Ports: mostly the VGA's own 0x3b0-0x3df, any port when bit 23 of the address is set.
    fn port(a: u32) -> u16 {
        if a & 0x80_0000 != 0 {
            a as u16
        } else {
            0x3b0 + (a % 0x30) as u16
        }
    }

    /// Window addresses: mostly 0xa0000-0xbffff, any 24-bit address when bit 23 is set.
    fn window(a: u32) -> u64 {
        if a & 0x80_0000 != 0 {
            u64::from(a) << 8
        } else {
            0xa0000 + u64::from(a % 0x20000)
        }
    }

    impl Op {
        pub fn decode(b: [u8; OP_SIZE]) -> Op {
            let a = u32::from_le_bytes([b[1], b[2], b[3], 0]);
            let val = u16::from_le_bytes([b[4], b[5]]);
            match b[0] % 8 {
                0 => Op::PortWrite {
                    port: port(a),
                    val: val as u8,
                },
                1 => Op::PortRead { port: port(a) },
                2 => Op::VbeWrite {
                    index: (a % 16) as u16,
                    val,
                },
                3 => Op::VbeRead {
                    index: (a % 16) as u16,
                },
                4 => Op::WindowWrite {
                    addr: window(a),
                    val: val as u8,
                },
                5 => Op::WindowRead { addr: window(a) },
                6 => Op::LfbWrite {
                    offset: u64::from(a),
                    val: val as u8,
                },
                _ => Op::Render {
                    cursor_visible: val & 1 != 0,
                },
            }
        }

        /// The bytes that decode to this op (for the seeds).
        pub fn encode(self) -> [u8; OP_SIZE] {
            let (kind, a, val): (u8, u32, u16) = match self {
                Op::PortWrite { port, val } => (0, enc_port(port), u16::from(val)),
                Op::PortRead { port } => (1, enc_port(port), 0),
                Op::VbeWrite { index, val } => (2, u32::from(index), val),
                Op::VbeRead { index } => (3, u32::from(index), 0),
                Op::WindowWrite { addr, val } => (4, (addr & 0x1ffff) as u32, u16::from(val)),
                Op::WindowRead { addr } => (5, (addr & 0x1ffff) as u32, 0),
                Op::LfbWrite { offset, val } => (6, offset as u32 & 0x7f_ffff, u16::from(val)),
                Op::Render { cursor_visible } => (7, 0, u16::from(cursor_visible)),
            };
            let a = a.to_le_bytes();
            let v = val.to_le_bytes();
            [kind, a[0], a[1], a[2], v[0], v[1]]
        }

        /// Applies the op; renders must succeed or refuse a too-large picture.
        pub fn apply(self, vga: &mut Vga) {
            match self {
                Op::PortWrite { port, val } => vga.io_write(port, val),
                Op::PortRead { port } => {
                    vga.io_read(port);
                }
                Op::VbeWrite { index, val } => {
                    vga.vbe_io_write(VBE_DISPI_IOPORT_INDEX, index);
                    vga.vbe_io_write(VBE_DISPI_IOPORT_DATA, val);
                }
                Op::VbeRead { index } => {
                    vga.vbe_io_write(VBE_DISPI_IOPORT_INDEX, index);
                    vga.vbe_io_read(VBE_DISPI_IOPORT_DATA);
                }
                Op::WindowWrite { addr, val } => vga.window_write(addr, val),
                Op::WindowRead { addr } => {
                    vga.window_read(addr);
                }
                Op::LfbWrite { offset, val } => vga.lfb_write(offset, val),
                Op::Render { cursor_visible } => {
                    match vga.screenshot(RenderOptions { cursor_visible }) {
                        Ok(_) | Err(saffron_vga::RenderError::TooLarge { .. }) => {}
                    }
                }
            }
        }
    }

    fn enc_port(port: u16) -> u32 {
        if (0x3b0..0x3e0).contains(&port) {
            u32::from(port - 0x3b0)
        } else {
            0x80_0000 | u32::from(port)
        }
    }
}
