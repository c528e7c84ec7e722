//! One regression test per bug class of the QXL / spice CVE history (qxl-device.md §12.3)
//! that applies to the code in this crate. Each test is named for its class and drives the
//! public API with the hostile input that class is about.

use std::mem::{offset_of, size_of};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use saffron_ring::abi::*;
use saffron_ring::chunks::{ChainStart, ChunkError, ChunkLimits, read_chain, read_chain_observed};
use saffron_ring::memslot::{BarRange, MemSlotError, MemSlotTable, make_phys};
use saffron_ring::parse::{
    Clip, Command, Context, DrawBody, Image, MAX_MONITORS, ParseError, parse_command,
    parse_monitors_config, validate_surface,
};
use saffron_ring::ring::{CommandRing, RingError};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

/// One "BAR" of 1 MiB at 1 MiB, registered as slot 1 (generation 0).
const BAR: u64 = 0x10_0000;
const BAR_LEN: u64 = 0x10_0000;

fn setup() -> (GuestMemoryMmap, MemSlotTable) {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
    let mut slots = MemSlotTable::new();
    let bar = BarRange {
        base: GuestAddress(BAR),
        len: BAR_LEN,
    };
    slots
        .add(
            1,
            QXLMemSlot {
                mem_start: BAR,
                mem_end: BAR + BAR_LEN,
            },
            &[bar],
        )
        .unwrap();
    (mem, slots)
}

fn p(offset: u64) -> QXLPHYSICAL {
    make_phys(1, 0, offset).unwrap()
}

fn put<T: ByteValued>(mem: &GuestMemoryMmap, offset: u64, v: T) {
    mem.write_obj(v, GuestAddress(BAR + offset)).unwrap();
}

fn put_bytes(mem: &GuestMemoryMmap, offset: u64, b: &[u8]) {
    mem.write_slice(b, GuestAddress(BAR + offset)).unwrap();
}

fn chunk(data_size: u32, next_chunk: QXLPHYSICAL) -> QXLDataChunk {
    QXLDataChunk {
        data_size,
        prev_chunk: 0,
        next_chunk,
    }
}

fn union<T: ByteValued, const N: usize>(v: T) -> [u8; N] {
    let mut u = [0u8; N];
    u[..size_of::<T>()].copy_from_slice(v.as_slice());
    u
}

/// A COPY drawable at 0x100 of an 8 × 4 32-bit chunked bitmap (image at 0x400, two data
/// chunks at 0x800 and 0x900) clipped to two rectangles (at 0x600).
fn put_copy_drawable(mem: &GuestMemoryMmap) -> QXLCommand {
    let stride = 32u32;
    put(mem, 0x800, chunk(64, p(0x900)));
    put_bytes(mem, 0x800 + 20, &[0x11; 64]);
    put(mem, 0x900, chunk(64, 0));
    put_bytes(mem, 0x900 + 20, &[0x22; 64]);
    let image = QXLImage {
        descriptor: QXLImageDescriptor {
            id: 1,
            type_: SPICE_IMAGE_TYPE_BITMAP,
            flags: 0,
            width: 8,
            height: 4,
        },
        bitmap: QXLBitmap {
            format: SPICE_BITMAP_FMT_32BIT,
            flags: 0,
            x: 8,
            y: 4,
            stride,
            palette: 0,
            data: p(0x800),
        },
    };
    put(mem, 0x400, image);
    put(
        mem,
        0x600,
        QXLClipRects {
            num_rects: 2,
            chunk: chunk(32, 0),
        },
    );
    let r = |t, l, b, rr| QXLRect {
        top: t,
        left: l,
        bottom: b,
        right: rr,
    };
    put(mem, 0x600 + size_of::<QXLClipRects>() as u64, r(0, 0, 2, 8));
    put(
        mem,
        0x600 + size_of::<QXLClipRects>() as u64 + 16,
        r(2, 0, 4, 4),
    );
    let d = QXLDrawable {
        release_info: QXLReleaseInfo { id: 42 },
        surface_id: 0,
        type_: QXL_DRAW_COPY,
        bbox: r(0, 0, 4, 8),
        clip: QXLClip {
            type_: SPICE_CLIP_TYPE_RECTS,
            data: p(0x600),
        },
        surfaces_dest: [-1; 3],
        u: union(QXLCopy {
            src_bitmap: p(0x400),
            src_area: r(0, 0, 4, 8),
            rop_descriptor: SPICE_ROPD_OP_PUT,
            scale_mode: 0,
            mask: QXLQMask::default(),
        }),
        ..Default::default()
    };
    put(mem, 0x100, d);
    QXLCommand {
        data: p(0x100),
        type_: QXL_CMD_DRAW,
        padding: 0,
    }
}

/// CVE-2015-5261 / CVE-2015-3247 / CVE-2021-4207 class: a size or count fetched twice.
/// Everything is copied once: changing chunk headers, pixels, clip counts and the image
/// header after the parse changes nothing in what was parsed.
#[test]
fn double_fetch_guest_changes_after_parse_do_not_matter() {
    let (mem, slots) = setup();
    let cmd = put_copy_drawable(&mem);
    let ctx = Context::new(&mem, &slots, 16);
    let Ok(Command::Draw(d)) = parse_command(&ctx, &cmd) else {
        panic!("the valid drawable parses");
    };
    // The guest rewrites everything it handed over.
    put(&mem, 0x800, chunk(u32::MAX, p(0x800)));
    put_bytes(&mem, 0x800 + 20, &[0xee; 64]);
    put(
        &mem,
        0x600,
        QXLClipRects {
            num_rects: 0xffff,
            chunk: chunk(u32::MAX, p(0x600)),
        },
    );
    put(
        &mem,
        0x400 + offset_of!(QXLImage, bitmap) as u64 + 2,
        u32::MAX,
    );
    let DrawBody::Copy(copy) = &d.body else {
        panic!("a copy")
    };
    let Image::Bitmap(bitmap) = &*copy.src else {
        panic!("a bitmap")
    };
    assert_eq!((bitmap.width, bitmap.height, bitmap.stride), (8, 4, 32));
    assert_eq!(bitmap.data.len(), 128);
    assert!(bitmap.data[..64].iter().all(|&b| b == 0x11));
    assert!(bitmap.data[64..].iter().all(|&b| b == 0x22));
    let Clip::Rects(rects) = &d.clip else {
        panic!("rects")
    };
    assert_eq!(rects.len(), 2);
    // And the rewritten memory is rejected on the next parse, not trusted.
    assert!(parse_command(&ctx, &cmd).is_err());
}

/// CVE-2015-3247 class: monitors config `count` changed while the host copies. The count
/// is read once, so whatever a racing guest does, the result is one consistent count,
/// capped at MAX_MONITORS.
#[test]
fn double_fetch_monitors_count_changed_concurrently() {
    let (mem, slots) = setup();
    put(
        &mem,
        0x100,
        QXLMonitorsConfig {
            count: 2,
            max_allowed: 0,
        },
    );
    let mem = Arc::new(mem);
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (mem, stop) = (Arc::clone(&mem), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let count: u16 = if n.is_multiple_of(2) { 2 } else { 0xffff };
                mem.write_obj(count, GuestAddress(BAR + 0x100)).unwrap();
                n = n.wrapping_add(1);
            }
        })
    };
    let ctx = Context::new(&*mem, &slots, 16);
    for _ in 0..20_000 {
        match parse_monitors_config(&ctx, p(0x100)) {
            Ok(cfg) => assert!(
                cfg.heads.len() == 2 || cfg.heads.len() == usize::from(MAX_MONITORS),
                "{} heads",
                cfg.heads.len()
            ),
            // 0xffff heads of 20 bytes overrun the slot: a typed error.
            Err(ParseError::Translate(MemSlotError::OutOfSlot { .. })) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
}

/// Monitors-config count class (CVE-2015-3247, CVE-2017-7506): count 0, count above the
/// guest's own max_allowed, and a count far above what the host keeps.
#[test]
fn monitors_config_count_is_checked_and_capped() {
    let (mem, slots) = setup();
    let ctx = Context::new(&mem, &slots, 16);
    put(
        &mem,
        0x100,
        QXLMonitorsConfig {
            count: 0,
            max_allowed: 4,
        },
    );
    assert!(matches!(
        parse_monitors_config(&ctx, p(0x100)),
        Err(ParseError::NoMonitors)
    ));
    put(
        &mem,
        0x100,
        QXLMonitorsConfig {
            count: 5,
            max_allowed: 4,
        },
    );
    assert!(matches!(
        parse_monitors_config(&ctx, p(0x100)),
        Err(ParseError::TooManyMonitors {
            count: 5,
            max_allowed: 4
        })
    ));
    put(
        &mem,
        0x100,
        QXLMonitorsConfig {
            count: 1000,
            max_allowed: 0,
        },
    );
    let cfg = parse_monitors_config(&ctx, p(0x100)).unwrap();
    assert_eq!(cfg.heads.len(), usize::from(MAX_MONITORS));
    // The declared array must still fit the slot, even the heads that are dropped.
    let near_end = BAR_LEN - size_of::<QXLMonitorsConfig>() as u64 - 10 * 20;
    put(
        &mem,
        near_end,
        QXLMonitorsConfig {
            count: 11,
            max_allowed: 0,
        },
    );
    assert!(matches!(
        parse_monitors_config(&ctx, p(near_end)),
        Err(ParseError::Translate(MemSlotError::OutOfSlot { .. }))
    ));
}

/// Missing index / size check class (QEMU's ring checks, §12.1 item 1): the ring index is
/// masked with our constant, never the guest's num_items, and a producer far ahead of the
/// consumer is an error rather than a read past the ring.
#[test]
fn missing_index_check_ring_index_masked_prod_far_ahead_is_error() {
    let mem: GuestMemoryMmap =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    let ram = GuestAddress(0x1000);
    let ring = CommandRing::command(ram).unwrap();
    let hdr = 0x1000 + offset_of!(QXLRam, cmd_ring) as u64;
    let items = hdr + size_of::<QXLRingHeader>() as u64;
    let field = |f: usize| GuestAddress(hdr + f as u64);
    // num_items lies: it is ignored.
    mem.write_obj(0xffff_ffffu32, field(offset_of!(QXLRingHeader, num_items)))
        .unwrap();
    // cons near u32::MAX: the index wraps and is masked to the 32-entry ring.
    let cons = 0xffff_fffeu32;
    mem.write_obj(cons, field(offset_of!(QXLRingHeader, cons)))
        .unwrap();
    mem.write_obj(cons.wrapping_add(1), field(offset_of!(QXLRingHeader, prod)))
        .unwrap();
    let slot = u64::from(cons % QXL_COMMAND_RING_SIZE);
    let marker = QXLCommand {
        data: 0x1234,
        type_: QXL_CMD_DRAW,
        padding: 0,
    };
    mem.write_obj(marker, GuestAddress(items + slot * 16))
        .unwrap();
    let popped = ring.pop(&mem).unwrap().expect("one command");
    assert_eq!({ popped.command.data }, 0x1234);
    // prod 1000 entries ahead: an overrun error, nothing read.
    mem.write_obj(0u32, field(offset_of!(QXLRingHeader, cons)))
        .unwrap();
    mem.write_obj(1000u32, field(offset_of!(QXLRingHeader, prod)))
        .unwrap();
    assert!(matches!(
        ring.pop(&mem),
        Err(RingError::Overrun { ahead: 1000, .. })
    ));
    assert!(ring.peek(&mem).is_err());
    // prod behind cons (wrapped far ahead) too.
    mem.write_obj(10u32, field(offset_of!(QXLRingHeader, cons)))
        .unwrap();
    mem.write_obj(5u32, field(offset_of!(QXLRingHeader, prod)))
        .unwrap();
    assert!(ring.pop(&mem).is_err());
}

/// CVE-2019-3813 (slot index off-by-one) and CVE-2022-4144 (start checked, not the size):
/// slot 8 does not exist; an object straddling the slot end does not translate.
#[test]
fn missing_index_check_memslot_id_and_object_size() {
    let (_, mut slots) = setup();
    let bars = [BarRange {
        base: GuestAddress(BAR),
        len: BAR_LEN,
    }];
    let r = QXLMemSlot {
        mem_start: BAR,
        mem_end: BAR + 0x1000,
    };
    assert_eq!(
        slots.add(QXL_NUM_MEMSLOTS as u32, r, &bars),
        Err(MemSlotError::InvalidSlotId { id: 8 })
    );
    assert!(matches!(
        slots.translate(make_phys(8, 0, 0).unwrap(), 1),
        Err(MemSlotError::SlotInactive { slot: 8, .. })
    ));
    assert!(slots.translate(p(BAR_LEN - 4), 4).is_ok());
    assert!(matches!(
        slots.translate(p(BAR_LEN - 4), 5),
        Err(MemSlotError::OutOfSlot { .. })
    ));
    assert!(matches!(
        slots.translate(p(4), u64::MAX),
        Err(MemSlotError::OutOfSlot { .. })
    ));
    // A structure whose start is in the slot but whose end is not (the drawable is 191 bytes).
    let (mem, slots) = setup();
    let ctx = Context::new(&mem, &slots, 16);
    let cmd = QXLCommand {
        data: p(BAR_LEN - 100),
        type_: QXL_CMD_DRAW,
        padding: 0,
    };
    let err = parse_command(&ctx, &cmd).unwrap_err();
    assert!(
        err.release.is_some(),
        "the release info itself fits and is kept"
    );
    assert!(matches!(
        err.error,
        ParseError::Translate(MemSlotError::OutOfSlot { .. })
    ));
}

/// Integer overflow class (CVE-2015-5261 bitmap sizes, CVE-2016-2150 stride × height):
/// huge width / height / stride give typed errors, never a wrapped size or a panic.
#[test]
fn integer_overflow_width_height_stride() {
    let (mem, slots) = setup();
    let ctx = Context::new(&mem, &slots, 16);
    let cmd = put_copy_drawable(&mem);
    let bitmap_at = 0x400 + offset_of!(QXLImage, bitmap) as u64;
    for (x, y, stride) in [
        (u32::MAX, u32::MAX, u32::MAX),
        (0x1_0000, 0x1_0000, 0x4_0000),
        (16_384, 16_384, 16_384 * 4),
        (1, 0x8000, u32::MAX),
        (0x4000_0001, 1, 4),
        (8, 4, 8 * 4 - 1),
        (0, 4, 32),
    ] {
        put(&mem, bitmap_at + 2, x);
        put(&mem, bitmap_at + 6, y);
        put(&mem, bitmap_at + 10, stride);
        let err = parse_command(&ctx, &cmd).expect_err("rejected");
        assert!(
            matches!(
                err.error,
                ParseError::InvalidImageSize { .. }
                    | ParseError::ImageTooLarge { .. }
                    | ParseError::StrideTooSmall { .. }
                    | ParseError::SourceAreaOutside { .. }
            ),
            "{x}x{y} stride {stride}: {:?}",
            err.error
        );
    }
    // Surfaces: i32::MIN stride, |stride| · height above 256 MiB, stride too small.
    assert!(matches!(
        validate_surface(SPICE_SURFACE_FMT_32_xRGB, 16, 16, i32::MIN),
        Err(ParseError::InvalidSurfaceStride { .. })
    ));
    assert!(matches!(
        validate_surface(SPICE_SURFACE_FMT_32_xRGB, 8192, 8192, -131_072),
        Err(ParseError::SurfaceTooLarge { .. })
    ));
    // 16384 × 16384 × 4 = 1 GiB fits spice-server's 31-bit limit and a 2 GiB BAR, but is
    // four times the largest mode any driver sets: refused. 8192 × 8192 × 4 is the largest.
    assert!(matches!(
        validate_surface(SPICE_SURFACE_FMT_32_xRGB, 16_384, 16_384, 16_384 * 4),
        Err(ParseError::InvalidSurfaceSize { .. })
    ));
    assert!(validate_surface(SPICE_SURFACE_FMT_32_xRGB, 8192, 8192, 8192 * 4).is_ok());
    assert!(matches!(
        validate_surface(SPICE_SURFACE_FMT_32_xRGB, u32::MAX, u32::MAX, i32::MAX),
        Err(ParseError::InvalidSurfaceSize { .. })
    ));
    assert!(matches!(
        validate_surface(SPICE_SURFACE_FMT_32_xRGB, 100, 1, 396),
        Err(ParseError::InvalidSurfaceStride { .. })
    ));
}

/// Chunk-chain loop and overflow class (CVE-2015-5261 unbounded chunk lists): a chain
/// pointing at itself, or a loop of real chunks, ends at the first chunk that overlaps an
/// earlier one, after copying each byte at most once (not at the byte or chunk cap); a chunk
/// of 4 GiB - 1 bytes is cut off by the byte cap before anything that large is allocated.
#[test]
fn chunk_chain_loop_and_overflow() {
    let (mem, slots) = setup();
    put(&mem, 0x100, chunk(0, p(0x100)));
    assert!(matches!(
        read_chain(
            &mem,
            &slots,
            ChainStart::At(p(0x100)),
            ChunkLimits::default()
        ),
        Err(ChunkError::Overlap { .. })
    ));
    put(&mem, 0x200, chunk(4096, p(0x200)));
    let mut copied = 0;
    assert!(matches!(
        read_chain_observed(
            &mem,
            &slots,
            ChainStart::At(p(0x200)),
            ChunkLimits::default(),
            &mut |_, b| copied += b.len()
        ),
        Err(ChunkError::Overlap { .. })
    ));
    assert_eq!(
        copied,
        20 + 4096 + 20,
        "one pass of the loop, not up to the byte cap"
    );
    put(&mem, 0x300, chunk(u32::MAX, 0));
    assert!(matches!(
        read_chain(
            &mem,
            &slots,
            ChainStart::At(p(0x300)),
            ChunkLimits::default()
        ),
        Err(ChunkError::TooLarge { .. })
    ));
    // Two chunks whose sizes add past u32: capped, no wrap.
    put(&mem, 0x400, chunk(0x8000_0000, p(0x500)));
    put(&mem, 0x500, chunk(0x8000_0000, 0));
    assert!(
        read_chain(
            &mem,
            &slots,
            ChainStart::At(p(0x400)),
            ChunkLimits::default()
        )
        .is_err()
    );
    // A chunk whose data runs past the slot end.
    put(&mem, BAR_LEN - 40, chunk(21, 0));
    assert!(matches!(
        read_chain(
            &mem,
            &slots,
            ChainStart::At(p(BAR_LEN - 40)),
            ChunkLimits::default()
        ),
        Err(ChunkError::Translate(MemSlotError::OutOfSlot { .. }))
    ));
}

/// CVE-2015-5260 (surface id as an index) and CVE-2016-2150 (surface outside its memory):
/// ids ≥ n_surfaces are rejected; a surface whose pixels run past its slot is rejected.
#[test]
fn surface_outside_its_memory_and_bad_ids() {
    let (mem, slots) = setup();
    let ctx = Context::new(&mem, &slots, 16);
    let create = |id: u32, data: QXLPHYSICAL, w: u32, h: u32| QXLSurfaceCmd {
        release_info: QXLReleaseInfo { id: 9 },
        surface_id: id,
        type_: QXL_SURFACE_CMD_CREATE,
        flags: 0,
        surface_create: QXLSurface {
            format: SPICE_SURFACE_FMT_32_xRGB,
            width: w,
            height: h,
            stride: (w * 4) as i32,
            data,
        },
    };
    let cmd = QXLCommand {
        data: p(0x100),
        type_: QXL_CMD_SURFACE,
        padding: 0,
    };
    put(&mem, 0x100, create(1, p(0x1000), 64, 64));
    assert!(parse_command(&ctx, &cmd).is_ok());
    // 64 × 64 × 4 = 16 KiB starting 8 KiB before the slot end.
    put(&mem, 0x100, create(1, p(BAR_LEN - 0x2000), 64, 64));
    assert!(matches!(
        parse_command(&ctx, &cmd).unwrap_err().error,
        ParseError::Translate(MemSlotError::OutOfSlot { .. })
    ));
    for id in [16, 17, u32::MAX] {
        put(&mem, 0x100, create(id, p(0x1000), 64, 64));
        assert!(matches!(
            parse_command(&ctx, &cmd).unwrap_err().error,
            ParseError::SurfaceIdOutOfRange { .. }
        ));
    }
}

/// CVE-2021-4206 (cursor width × height overflow) and CVE-2021-4207 (cursor header double
/// fetch): dimensions are capped, the data must hold the declared shape, and the header
/// fields parsed are the ones the size was checked against.
#[test]
fn cursor_size_is_bounded() {
    let (mem, slots) = setup();
    let ctx = Context::new(&mem, &slots, 16);
    let put_cursor = |type_: u16, w: u16, h: u16, data_size: u32| {
        let c = QXLCursor {
            header: QXLCursorHeader {
                unique: 1,
                type_,
                width: w,
                height: h,
                hot_spot_x: 0,
                hot_spot_y: 0,
            },
            data_size,
            chunk: chunk(data_size, 0),
        };
        put(&mem, 0x400, c);
        let cmd = QXLCursorCmd {
            release_info: QXLReleaseInfo { id: 3 },
            type_: QXL_CURSOR_SET,
            u: union(QXLCursorSet {
                position: QXLPoint16 { x: 0, y: 0 },
                visible: 1,
                shape: p(0x400),
            }),
            ..Default::default()
        };
        put(&mem, 0x100, cmd);
        parse_command(
            &ctx,
            &QXLCommand {
                data: p(0x100),
                type_: QXL_CMD_CURSOR,
                padding: 0,
            },
        )
    };
    assert!(put_cursor(SPICE_CURSOR_TYPE_ALPHA, 32, 32, 32 * 32 * 4).is_ok());
    for (w, h) in [(0xffff, 0xffff), (513, 1), (1, 513), (0x8000, 0x8000)] {
        let err = put_cursor(SPICE_CURSOR_TYPE_ALPHA, w, h, 64).unwrap_err();
        assert!(
            matches!(err.error, ParseError::CursorTooLarge { .. }),
            "{w}x{h}"
        );
    }
    // The chunk holds less than the shape needs.
    let err = put_cursor(SPICE_CURSOR_TYPE_ALPHA, 64, 64, 100).unwrap_err();
    assert!(matches!(
        err.error,
        ParseError::CursorDataTooShort {
            needed: 16384,
            found: 100
        }
    ));
    let err = put_cursor(SPICE_CURSOR_TYPE_MONO, 64, 64, 511).unwrap_err();
    assert!(matches!(
        err.error,
        ParseError::CursorDataTooShort { needed: 1024, .. }
    ));
    // A chunk claiming more than the cursor cap is refused before copying.
    let err = put_cursor(SPICE_CURSOR_TYPE_ALPHA, 16, 16, u32::MAX).unwrap_err();
    assert!(matches!(
        err.error,
        ParseError::Chunks(ChunkError::TooLarge { .. })
    ));
}
