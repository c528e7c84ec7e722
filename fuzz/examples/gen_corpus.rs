//! Writes the seed corpus (`fuzz/corpus/<target>/`) from valid guest traffic:
//! `cargo run --example gen_corpus` in `fuzz/`. The seeds are committed; rerun after an
//! input-format change of a target.

use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use saffron_fuzz::device::{Field, Object, Op, Width};
use saffron_fuzz::*;
use saffron_ring::abi::*;
use vm_memory::ByteValued;

fn save(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// ring_commands: 4 × (phys, type) then the RAM image.
fn ring_seed(cmds: &[(QXLPHYSICAL, u32)], img: &RamImage) -> Vec<u8> {
    let mut w = Writer::default();
    for i in 0..4 {
        let (p, t) = cmds.get(i).copied().unwrap_or((0, QXL_CMD_NOP));
        w.u64(p).u32(t);
    }
    w.bytes(&img.0);
    w.0
}

fn ring_commands() {
    for (name, format, direct) in [
        ("copy_32bit_chunked", SPICE_BITMAP_FMT_32BIT, false),
        ("copy_8bit_palette_direct", SPICE_BITMAP_FMT_8BIT, true),
        ("copy_1bit_palette", SPICE_BITMAP_FMT_1BIT_BE, false),
        ("copy_16bit", SPICE_BITMAP_FMT_16BIT, false),
    ] {
        let mut img = RamImage::default();
        let d = copy_drawable(&mut img, format, 16, 12, direct);
        save(
            "ring_commands",
            name,
            &ring_seed(&[(d, QXL_CMD_DRAW)], &img),
        );
    }
    // Create surface 1, fill it, cursor set, destroy it.
    let mut img = RamImage::default();
    let create = surface_create(&mut img, 1, 32, 32, 0x8000);
    let fill = fill_drawable(&mut img, 1, rect(2, 2, 30, 30));
    let data = cursor_data(SPICE_CURSOR_TYPE_ALPHA, 32, 32);
    let cursor = cursor_set(&mut img, SPICE_CURSOR_TYPE_ALPHA, 32, 32, &data);
    let destroy = img.obj(QXLSurfaceCmd {
        release_info: QXLReleaseInfo { id: 6 },
        surface_id: 1,
        type_: QXL_SURFACE_CMD_DESTROY,
        ..Default::default()
    });
    let cmds = [
        (create, QXL_CMD_SURFACE),
        (fill, QXL_CMD_DRAW),
        (cursor, QXL_CMD_CURSOR),
        (destroy, QXL_CMD_SURFACE),
    ];
    save(
        "ring_commands",
        "surface_fill_cursor_destroy",
        &ring_seed(&cmds, &img),
    );
    let mut img = RamImage::default();
    let data = cursor_data(SPICE_CURSOR_TYPE_MONO, 32, 32);
    let c = cursor_set(&mut img, SPICE_CURSOR_TYPE_MONO, 32, 32, &data);
    let u = img.obj(QXLUpdateCmd {
        release_info: QXLReleaseInfo { id: 7 },
        area: rect(0, 0, 10, 10),
        update_id: 1,
        surface_id: 0,
    });
    let mut msg = QXLReleaseInfo { id: 8 }.as_slice().to_vec();
    msg.extend_from_slice(b"hello from the guest\0");
    let m = img.bytes(&msg);
    let cmds = [
        (c, QXL_CMD_CURSOR),
        (u, QXL_CMD_UPDATE),
        (m, QXL_CMD_MESSAGE),
    ];
    save(
        "ring_commands",
        "mono_cursor_update_message",
        &ring_seed(&cmds, &img),
    );
}

fn chunk_chains() {
    // Slots 1 (RAM, whole) and 2 (VRAM, first 64 KiB); probes at the slot ends; a 3-chunk
    // chain; a looping chain.
    for (name, looping) in [("three_chunks", false), ("loop", true)] {
        let mut img = RamImage::default();
        let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let start = img.chain(&data, 3);
        if looping {
            // Point the last chunk back at the first.
            let off = (img.0.len() - 100 - 20) as u64;
            let _ = off;
            let first = (start & 0xffff_ffff) as usize;
            let next_at = first + 12;
            img.0[next_at..next_at + 8].copy_from_slice(&start.to_le_bytes());
        }
        let mut w = Writer::default();
        w.u8(0);
        w.u8(1).u32(0).u32(RAM_SIZE as u32);
        w.u8(0x82).u32(0).u32(0x1_0000);
        w.u8(9).u32(0).u32(0);
        for (p, s) in [
            (p1(0x40), 20),
            (p1(RAM_SIZE - 16), 16),
            (p2(0xfff0), 17),
            (p1(8), u64::MAX),
        ] {
            w.u64(p).u64(s);
        }
        w.u64(start).u8(0).bytes(&[0; 20]).u32(0x10000).u16(16);
        w.bytes(&img.0);
        save("chunk_chains", name, &w.0);
    }
    // Inline first header (as clip rects / cursors / paths have).
    let mut img = RamImage::default();
    let rest = img.chain(&[7u8; 40], 1);
    let owner = img.bytes(&[0u8; 64]);
    let mut w = Writer::default();
    w.u8(0).u8(1).u32(0).u32(RAM_SIZE as u32);
    w.u8(0).u32(0).u32(0).u8(0).u32(0).u32(0);
    for _ in 0..4 {
        w.u64(p1(0x100)).u64(64);
    }
    w.u64(owner).u8(1).u32(44).u64(0).u64(rest).u32(4096).u16(8);
    w.bytes(&img.0);
    save("chunk_chains", "inline_header", &w.0);
}

fn decoders() {
    // surface fmt, flip, bitmap format, flags, w, w-high, h, stride delta, palette n,
    // palette present, pieces, src_area (t,l,b,r), bbox, draw, rop, scale, alpha flags,
    // alpha, src color, n clip, clip rects, cursor type, cw, cw mult, ch, trim, pixels.
    let cases: [(&str, u8, u8, u8, u16, u8, u16, u8); 6] = [
        (
            "copy_32_on_xrgb",
            0,
            SPICE_BITMAP_FMT_32BIT,
            QXL_BITMAP_TOP_DOWN,
            0,
            0,
            0,
            0,
        ),
        (
            "copy_8pal_on_565",
            2,
            SPICE_BITMAP_FMT_8BIT,
            0,
            256,
            1,
            1,
            1,
        ),
        (
            "blend_4pal_on_argb",
            1,
            SPICE_BITMAP_FMT_4BIT_BE,
            QXL_BITMAP_DIRECT,
            16,
            1,
            4,
            2,
        ),
        (
            "opaque_1bit_on_a8",
            4,
            SPICE_BITMAP_FMT_1BIT_LE,
            0,
            2,
            1,
            2,
            3,
        ),
        (
            "transparent_24_on_555",
            3,
            SPICE_BITMAP_FMT_24BIT,
            0,
            0,
            0,
            5,
            4,
        ),
        (
            "alpha_rgba_on_xrgb",
            0,
            SPICE_BITMAP_FMT_RGBA,
            QXL_BITMAP_TOP_DOWN,
            0,
            0,
            6,
            0,
        ),
    ];
    for (name, sfmt, bfmt, bflags, npal, palp, ctype, draw) in cases {
        let mut w = Writer::default();
        w.u8(sfmt)
            .u8(0)
            .u8(bfmt)
            .u8(bflags)
            .u8(20)
            .u8(0)
            .u8(16)
            .u16(2);
        w.u16(npal).u8(palp).u8(2);
        w.u8(0).u8(0).u8(16).u8(20);
        w.u8(4).u8(4).u8(20).u8(24);
        w.u8(draw)
            .u16(SPICE_ROPD_OP_PUT)
            .u8(0)
            .u16(0)
            .u8(200)
            .u32(0x00ff00ff);
        w.u8(2).bytes(&[4, 4, 10, 24, 10, 4, 20, 14]);
        w.u8(ctype as u8).u8(32).u8(0).u8(32).u16(0);
        let pixels: Vec<u8> = (0..2000u32).map(|i| (i * 7) as u8).collect();
        w.bytes(&pixels);
        save("decoders", name, &w.0);
    }
}

/// Encodes `ops` the way `arbitrary`'s derive decodes them (enum tag: a u32 whose
/// `(tag × variants) >> 32` is the index; integers little-endian; bool/Option: a byte).
fn tag(w: &mut Writer, idx: u64, n: u64) {
    w.u32(((idx << 32).div_ceil(n)) as u32);
}

fn enc_width(w: &mut Writer, x: Width) {
    tag(w, x as u64, 4);
}

fn enc_op(w: &mut Writer, op: &Op) {
    match *op {
        Op::ConfigWrite {
            offset,
            value,
            width,
        } => {
            tag(w, 0, 8);
            w.u8(offset).u32(value);
            enc_width(w, width);
        }
        Op::BarWrite {
            bar,
            offset,
            value,
            width,
        } => {
            tag(w, 1, 8);
            w.u8(bar).u32(offset).u64(value);
            enc_width(w, width);
        }
        Op::BarRead { bar, offset, width } => {
            tag(w, 2, 8);
            w.u8(bar).u32(offset);
            enc_width(w, width);
        }
        Op::RamField { field, value } => {
            tag(w, 3, 8);
            let all = [
                Field::IntPending,
                Field::IntMask,
                Field::CmdProd,
                Field::CmdCons,
                Field::CmdNotifyOnProd,
                Field::CursorProd,
                Field::ReleaseCons,
                Field::ReleaseProd,
                Field::UpdateArea,
                Field::UpdateSurface,
                Field::MemSlotStart,
                Field::MemSlotEnd,
                Field::CreateWidth,
                Field::CreateHeight,
                Field::CreateStride,
                Field::CreateFormat,
                Field::CreateMem,
                Field::MonitorsConfig,
            ];
            match all.iter().position(|f| *f == field) {
                Some(i) => tag(w, i as u64, 19),
                None => {
                    tag(w, 18, 19);
                    if let Field::Raw(at) = field {
                        w.u16(at);
                    }
                }
            }
            w.u64(value);
        }
        Op::Io { port, value } => {
            tag(w, 4, 8);
            w.u8(port).u8(value);
        }
        Op::Push {
            cursor,
            object,
            offset,
            type_,
        } => {
            tag(w, 5, 8);
            w.u8(u8::from(cursor));
            match object {
                None => {
                    w.u8(0);
                }
                Some(o) => {
                    w.u8(1);
                    match o {
                        Object::Copy {
                            format,
                            w: x,
                            h,
                            direct,
                        } => {
                            tag(w, 0, 5);
                            w.u8(format).u8(x).u8(h).u8(u8::from(direct));
                        }
                        Object::Fill {
                            surface,
                            bottom,
                            right,
                        } => {
                            tag(w, 1, 5);
                            w.u8(surface).u8(bottom).u8(right);
                        }
                        Object::SurfaceCreate { id, w: x, h } => {
                            tag(w, 2, 5);
                            w.u8(id).u8(x).u8(h);
                        }
                        Object::SurfaceDestroy { id } => {
                            tag(w, 3, 5);
                            w.u8(id);
                        }
                        Object::CursorSet { type_: t, w: x, h } => {
                            tag(w, 4, 5);
                            w.u8(t).u8(x).u8(h);
                        }
                    }
                }
            }
            w.u32(offset).u8(type_);
        }
        Op::BringUp => tag(w, 6, 8),
        Op::Reset => tag(w, 7, 8),
    }
}

fn device_seed(name: &str, ops: &[Op]) {
    let mut w = Writer::default();
    for op in ops {
        enc_op(&mut w, op);
    }
    // The encoding must decode back to the same ops, or the seed is not what it claims.
    let mut u = Unstructured::new(&w.0);
    for op in ops {
        assert_eq!(&Op::arbitrary(&mut u).unwrap(), op, "{name}");
    }
    save("device_ports", name, &w.0);
}

fn device_ports() {
    use Op::*;
    let push = |object| Push {
        cursor: false,
        object: Some(object),
        offset: 0,
        type_: 0,
    };
    device_seed(
        "bring_up_draw",
        &[
            BringUp,
            push(Object::Copy {
                format: SPICE_BITMAP_FMT_32BIT,
                w: 16,
                h: 16,
                direct: false,
            }),
            push(Object::Fill {
                surface: 0,
                bottom: 20,
                right: 20,
            }),
            Io {
                port: QXL_IO_UPDATE_AREA,
                value: 0,
            },
            Io {
                port: QXL_IO_FLUSH_RELEASE,
                value: 0,
            },
        ],
    );
    device_seed(
        "surfaces_and_cursor",
        &[
            BringUp,
            push(Object::SurfaceCreate {
                id: 1,
                w: 32,
                h: 32,
            }),
            push(Object::Fill {
                surface: 1,
                bottom: 32,
                right: 32,
            }),
            Push {
                cursor: true,
                object: Some(Object::CursorSet {
                    type_: 0,
                    w: 32,
                    h: 32,
                }),
                offset: 1,
                type_: 0,
            },
            push(Object::SurfaceDestroy { id: 1 }),
            Io {
                port: QXL_IO_DESTROY_ALL_SURFACES_ASYNC,
                value: 0,
            },
            Io {
                port: QXL_IO_DESTROY_PRIMARY,
                value: 0,
            },
        ],
    );
    device_seed(
        "ports_and_fields",
        &[
            BringUp,
            RamField {
                field: Field::UpdateArea,
                value: 0x0000_0010_0000_0000,
            },
            Io {
                port: QXL_IO_UPDATE_AREA_ASYNC,
                value: 0,
            },
            RamField {
                field: Field::MonitorsConfig,
                value: 0,
            },
            Io {
                port: QXL_IO_MONITORS_CONFIG_ASYNC,
                value: 0,
            },
            RamField {
                field: Field::CmdProd,
                value: 1000,
            },
            Io {
                port: QXL_IO_NOTIFY_CMD,
                value: 0,
            },
            Reset,
            ConfigWrite {
                offset: 0x10,
                value: 0xffff_ffff,
                width: Width::B4,
            },
            BarRead {
                bar: 2,
                offset: 0,
                width: Width::B8,
            },
            BarWrite {
                bar: 3,
                offset: 5,
                value: 0,
                width: Width::B2,
            },
        ],
    );
}

/// spice_channels: the main channel's agent traffic (AGENT_START, a VDAgentMonitorsConfig of
/// two heads split over two AGENT_DATA messages, AGENT_TOKEN, then a skipped clipboard
/// message), mini headers.
fn spice_channels() {
    let mut payload = Writer::default();
    payload.u32(2).u32(0);
    for x in [0i32, 1024] {
        payload.u32(768).u32(1024).u32(32).u32(x as u32).u32(0);
    }
    let mut message = Writer::default();
    message
        .u32(1)
        .u32(2)
        .u64(0)
        .u32(payload.0.len() as u32)
        .bytes(&payload.0);
    let mut clipboard = Writer::default();
    clipboard.u32(1).u32(4).u64(0).u32(5).bytes(b"hello");
    let (a, b) = message.0.split_at(25);
    let mut w = Writer::default();
    w.u8(0);
    let mut msg = |ty: u16, body: &[u8]| {
        w.u16(ty).u32(body.len() as u32).bytes(body);
    };
    msg(106, &u32::MAX.to_le_bytes());
    msg(107, a);
    msg(107, b);
    msg(108, &3u32.to_le_bytes());
    msg(107, &clipboard.0);
    msg(104, &[]);
    save("spice_channels", "main_agent", &w.0);

    // Record channel (selector bit 7, mini header): MODE raw, START_MARK, 10 ms of DATA, a
    // partial frame, then a MODE Opus (its data is ignored).
    let mut w = Writer::default();
    w.u8(0x80);
    let mut msg = |ty: u16, body: &[u8]| {
        w.u16(ty).u32(body.len() as u32).bytes(body);
    };
    msg(102, &[0, 0, 0, 0, 1, 0]);
    msg(103, &[0, 0, 0, 0]);
    msg(101, &[&[0u8; 4][..], &[7u8; 1920][..]].concat());
    msg(101, &[0, 0, 0, 0, 1, 2, 3]);
    msg(102, &[0, 0, 0, 0, 3, 0]);
    msg(101, &[&[0u8; 4][..], &[7u8; 64][..]].concat());
    save("spice_channels", "record_raw", &w.0);
}

/// codec_decoders: an op byte, then a stream each decoder accepts (made by our encoders from
/// small text-like, UI-like and photo-like images), and round-trip images.
fn codec_decoders() {
    use saffron_codec::{ImageRef, PixelFormat, corpus, glz, lz, lz4, quic, zlib_glz};
    let (w, h) = (24u32, 16u32);
    for (name, px) in [
        ("text", corpus::text(w, h)),
        ("ui", corpus::ui(w, h)),
        ("photo", corpus::photo(w, h)),
    ] {
        let img = ImageRef::packed(w, h, PixelFormat::Rgb32, &px).unwrap();
        let with_op = |op: u8, data: &[u8]| [&[op][..], data].concat();
        save(
            "codec_decoders",
            &format!("quic_{name}"),
            &with_op(0, &quic::encode(&img).unwrap()),
        );
        save(
            "codec_decoders",
            &format!("lz_{name}"),
            &with_op(1, &lz::encode(&img).unwrap()),
        );
        let lz4 = [
            &[3u8, (w - 1) as u8, (h - 1) as u8][..],
            &lz4::encode(&img).unwrap(),
        ]
        .concat();
        save("codec_decoders", &format!("lz4_{name}"), &lz4);
        let mut e = glz::Encoder::new(4 * w * h);
        let first = e.encode(&img).unwrap();
        let second = e.encode(&img).unwrap();
        let glz = [&[5u8][..], &first, &[0xff, 0xfe], &second].concat();
        save("codec_decoders", &format!("glz_{name}"), &glz);
        let z = zlib_glz::compress(&first, 3).unwrap();
        let size = (first.len() as u16).to_le_bytes();
        save(
            "codec_decoders",
            &format!("zlib_glz_{name}"),
            &[&[4u8, size[0], size[1]][..], &z].concat(),
        );
        save(
            "codec_decoders",
            &format!("round_trip_{name}"),
            &[&[6u8, (w - 1) as u8][..], &px].concat(),
        );
    }
    let indices: Vec<u8> = (0..w * h).map(|i| (i % 7) as u8).collect();
    let plt = lz::encode_palette(w, h, lz::PaletteDepth::Bits8, w as usize, &indices).unwrap();
    save(
        "codec_decoders",
        "lz_palette8",
        &[&[2u8][..], &plt].concat(),
    );
}

/// agent_chunks: a guest's stream (announce, a clipboard grab, a clipboard spanning chunks, a
/// server-port message) and a client's AGENT_DATA bodies, each under both policies.
fn agent_chunks() {
    fn message(ty: u32, data: &[u8]) -> Vec<u8> {
        let mut w = Writer::default();
        w.u32(1).u32(ty).u64(0).u32(data.len() as u32).bytes(data);
        w.0
    }
    fn chunk(port: u32, payload: &[u8]) -> Vec<u8> {
        let mut w = Writer::default();
        w.u32(port).u32(payload.len() as u32).bytes(payload);
        w.0
    }
    let announce = message(6, &[1, 0, 0, 0, 0xff, 0xff, 0x03, 0]);
    let grab = message(7, &[0, 0, 0, 0, 1, 0, 0, 0]);
    let text: Vec<u8> = b"Saffron clipboard "
        .iter()
        .copied()
        .cycle()
        .take(3000)
        .collect();
    let clip = message(4, &[&[0u8, 0, 0, 0, 1, 0, 0, 0][..], &text].concat());
    let mut guest = chunk(1, &announce);
    guest.extend(chunk(1, &grab));
    guest.extend(chunk(1, &clip[..1000]));
    guest.extend(chunk(2, &message(13, &[])));
    guest.extend(chunk(1, &clip[1000..]));
    for (mode, name) in [(0u8, "guest_all"), (6, "guest_nocopy")] {
        save("agent_chunks", name, &[&[mode, 3][..], &guest].concat());
    }
    // One body of both messages (2 × 28 bytes = 7 × 8), then the clipboard in 3 bodies.
    let mut client = vec![7u8];
    client.extend(&announce);
    client.extend(&grab);
    let mut clip8 = clip.clone();
    clip8.resize(clip.len().div_ceil(8) * 8, 0);
    for body in clip8.chunks(1024) {
        client.push((body.len() / 8) as u8);
        client.extend(body);
    }
    for mode in [1u8, 7] {
        save(
            "agent_chunks",
            &format!("client_{mode}"),
            &[&[mode][..], &client].concat(),
        );
    }
}

/// virtio_snd: a driver's bring-up and a short playback, in the target's op encoding (op 0
/// control: len, request, writable; op 1 I/O: stream, playback, len, readable, writable u16;
/// op 3 pacer: sub-op, args).
fn virtio_snd() {
    fn words(w: &[u32]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
    fn control(out: &mut Vec<u8>, req: &[u8], writable: u8) {
        out.push(0);
        out.push(req.len() as u8);
        out.extend_from_slice(req);
        out.push(writable);
    }
    let mut bring_up = Vec::new();
    control(&mut bring_up, &words(&[0x0100, 0, 2, 32]), 68);
    let mut sp = words(&[0x0101, 0, 7680, 3840, 0]);
    sp.extend([2, 5, 7, 0]);
    control(&mut bring_up, &sp, 4);
    control(&mut bring_up, &words(&[0x0102, 0]), 4);
    control(&mut bring_up, &words(&[0x0104, 0]), 4);
    let mut play = bring_up.clone();
    // One playback message: stream 0, 16 bytes of audio, 8 writable.
    let mut msg = words(&[0]);
    msg.extend([1u8; 16]);
    play.extend([1, 0, 1, msg.len() as u8]);
    play.extend(&msg);
    play.extend(8u16.to_le_bytes());
    // Pacer: push 3840 bytes, start, advance 25 ms, stop, drain.
    play.extend([3, 0]);
    play.extend(3840u16.to_le_bytes());
    play.extend([3, 1, 3, 4]);
    play.extend(2500u16.to_le_bytes());
    play.extend([3, 2, 3, 3]);
    control(&mut play, &words(&[0x0105, 0]), 4);
    control(&mut play, &words(&[0x0103, 0]), 4);
    save("virtio_snd", "bring_up", &bring_up);
    save("virtio_snd", "play_and_release", &play);
    // A control chain of readable then writable descriptors, and one in the wrong order.
    let mut chains = vec![2u8, 2];
    chains.extend(0x100u32.to_le_bytes());
    chains.extend(16u16.to_le_bytes());
    chains.push(0);
    chains.extend(0x200u32.to_le_bytes());
    chains.extend(68u16.to_le_bytes());
    chains.push(1);
    chains.extend(0u16.to_le_bytes());
    chains.extend([2, 2]);
    chains.extend(0x200u32.to_le_bytes());
    chains.extend(4u16.to_le_bytes());
    chains.push(1);
    chains.extend(0x100u32.to_le_bytes());
    chains.extend(16u16.to_le_bytes());
    chains.push(0);
    save("virtio_snd", "chains", &chains);
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("agent_chunks") {
        return agent_chunks();
    }
    agent_chunks();
    virtio_snd();
    codec_decoders();
    ring_commands();
    chunk_chains();
    decoders();
    device_ports();
    spice_channels();
    vga();
}

/// A committed QEMU recording (vga/tests/data), as text.
fn vga_recording(name: &str) -> String {
    use std::io::Read;
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../vga/tests/data/{name}.trace.gz"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// vga: op streams made from real traffic (first byte even) and trace text (first byte odd).
fn vga() {
    use saffron_fuzz::vga::Op;
    use saffron_vga::trace::{TraceEvent, parse_line};
    for (name, lines) in [("seabios", 1500), ("vbe", usize::MAX)] {
        let text = vga_recording(name);
        let mut ops = vec![0u8];
        let mut n = 0;
        for ev in text.lines().filter_map(|l| parse_line(l).unwrap()) {
            let op = match ev {
                TraceEvent::PortWrite { port, val } => Op::PortWrite { port, val },
                TraceEvent::PortRead { port, .. } => Op::PortRead { port },
                TraceEvent::VbeWrite { index, val } => Op::VbeWrite { index, val },
                TraceEvent::VbeRead { index, .. } => Op::VbeRead { index },
                TraceEvent::MemWrite { addr, val, .. } => Op::WindowWrite {
                    addr,
                    val: val as u8,
                },
                TraceEvent::MemRead { addr, .. } => Op::WindowRead { addr },
            };
            // The VBE recording's text traffic is the same as SeaBIOS's: keep its DISPI part.
            if name == "vbe" && !matches!(op, Op::VbeWrite { .. } | Op::VbeRead { .. }) {
                continue;
            }
            ops.extend_from_slice(&op.encode());
            n += 1;
            if n >= lines {
                break;
            }
        }
        for i in 0..64u64 {
            ops.extend_from_slice(
                &Op::LfbWrite {
                    offset: i * 97,
                    val: i as u8,
                }
                .encode(),
            );
        }
        ops.extend_from_slice(
            &Op::Render {
                cursor_visible: true,
            }
            .encode(),
        );
        save("vga", &format!("ops_{name}"), &ops);

        let mut trace = b"\x01".to_vec();
        for line in text
            .lines()
            .filter(|l| name != "vbe" || l.starts_with("vga_vbe"))
            .take(300)
        {
            trace.extend_from_slice(line.as_bytes());
            trace.push(b'\n');
        }
        save("vga", &format!("trace_{name}"), &trace);
    }
}
