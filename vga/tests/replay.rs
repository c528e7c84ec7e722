//! Replays of real QEMU 11 recordings (made by `ci/record-vga`: QEMU's `-device VGA` under
//! TCG, its log trace of the VGA ports and the legacy window, and its own screendump) must
//! give QEMU's picture pixel for pixel, in one of the two cursor-blink phases, and must see
//! every read return what QEMU returned.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use flate2::read::GzDecoder;
use saffron_vga::replay::Replay;
use saffron_vga::{RenderOptions, Surface};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn replay(name: &str) -> Replay {
    let file = File::open(data(&format!("{name}.trace.gz"))).expect("recording");
    let mut r = Replay::new();
    r.feed_reader(BufReader::new(GzDecoder::new(file)))
        .expect("trace replays");
    r
}

/// QEMU's video memory at the end of a recording (`pmemsave` of BAR 0).
fn vram_snapshot(name: &str) -> Vec<u8> {
    let file = File::open(data(&format!("{name}.vram.gz"))).expect("snapshot");
    let mut out = Vec::new();
    GzDecoder::new(file).read_to_end(&mut out).expect("gzip");
    out
}

/// QEMU's screendump as (width, height, RGB bytes).
fn screendump(name: &str) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(BufReader::new(
        File::open(data(&format!("{name}.png"))).expect("screendump"),
    ));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("png size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    assert_eq!(info.color_type, png::ColorType::Rgb, "QEMU writes RGB PNGs");
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn differing_pixels(s: &Surface, rgb: &[u8]) -> usize {
    s.to_rgb()
        .chunks(3)
        .zip(rgb.chunks(3))
        .filter(|(a, b)| a != b)
        .count()
}

/// Replays `name` and compares with QEMU's screendump; returns the blink phases that match.
fn check(name: &str, with_vram: bool) -> Vec<bool> {
    let r = replay(name);
    let stats = *r.stats();
    assert!(stats.events > 1000, "{name}: only {} events", stats.events);
    assert_eq!(
        stats.read_mismatches, 0,
        "{name}: reads differ from QEMU's, first: {:?}",
        stats.first_mismatch
    );
    let mut vga = r.into_vga();
    if with_vram {
        vga.load_vram(0, &vram_snapshot(name))
            .expect("snapshot fits");
    }
    let (w, h, rgb) = screendump(name);
    let mut matching = Vec::new();
    let mut report = Vec::new();
    for cursor_visible in [true, false] {
        let s = vga
            .screenshot(RenderOptions { cursor_visible })
            .expect("renders");
        assert_eq!((s.width(), s.height()), (w, h), "{name}: size");
        let diff = differing_pixels(&s, &rgb);
        if diff == 0 {
            matching.push(cursor_visible);
        }
        report.push((cursor_visible, diff));
    }
    assert!(
        !matching.is_empty(),
        "{name}: no cursor phase matches QEMU's screendump; differing pixels per phase: {report:?}"
    );
    matching
}

#[test]
fn seabios_boot_screen_matches_qemu() {
    check("seabios", false);
}

/// Mode 12h set by SeaBIOS's VGA BIOS, then drawn by a boot sector through write modes 0-3,
/// the bit mask, set/reset, rotate and XOR, latch copies and read mode 1, with one DAC entry
/// changed: all MMIO, all in the trace.
#[test]
fn planar_write_modes_match_qemu() {
    check("planar", false);
}

/// Mode 13h (320x200x256, chain-4, shown 640x400) set by SeaBIOS's VGA BIOS. The screen
/// fill went through QEMU's chain-4 RAM alias (not in the trace): the pixels come from the
/// video memory snapshot, the mode and a DAC entry from the trace.
#[test]
fn mode_13h_matches_qemu() {
    check("mode13h", true);
}

#[test]
fn linux_vgacon_matches_qemu() {
    check("vgacon", false);
}

/// Linux booted with vga=0x317: SeaBIOS's VGA BIOS sets 1024x768 at 16 bpp through the
/// DISPI registers (in the trace); the console is drawn into the linear framebuffer, which
/// QEMU maps as RAM (not in the trace), so its memory at the end comes from a snapshot.
#[test]
fn linux_vbe_16bpp_matches_qemu() {
    let r = replay("vbe");
    assert!(r.vga().vbe_enabled());
    check("vbe", true);
}

#[test]
fn vbe_picture_needs_the_mode_from_the_trace() {
    // The snapshot alone, on a VGA at reset, is not the picture: the trace's mode set is.
    let mut vga = saffron_vga::Vga::new(saffron_vga::DEFAULT_VRAM_SIZE).unwrap();
    vga.load_vram(0, &vram_snapshot("vbe")).unwrap();
    let s = vga.screenshot(RenderOptions::default()).unwrap();
    assert_eq!((s.width(), s.height()), (0, 0));
}

#[test]
fn phases_differ_where_the_cursor_is() {
    // The test above could pass for any phase only if the cursor were invisible: make sure
    // the recordings do show a cursor, so that the phase choice is a real one.
    let r = replay("seabios");
    let on = r
        .vga()
        .screenshot(RenderOptions {
            cursor_visible: true,
        })
        .unwrap();
    let off = r
        .vga()
        .screenshot(RenderOptions {
            cursor_visible: false,
        })
        .unwrap();
    assert_ne!(on, off);
}
