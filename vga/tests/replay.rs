//! Replays of real QEMU 11 recordings (made by `ci/record-vga`: QEMU's `-device VGA` under
//! TCG, its log trace of the VGA ports and the legacy window, and its own screendump) must
//! give QEMU's picture pixel for pixel, in one of the two cursor-blink phases, and must see
//! every read return what QEMU returned.

use std::fs::File;
use std::io::BufReader;
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
fn check(name: &str) -> Vec<bool> {
    let r = replay(name);
    let stats = r.stats();
    assert!(stats.events > 1000, "{name}: only {} events", stats.events);
    assert_eq!(
        stats.read_mismatches, 0,
        "{name}: reads differ from QEMU's, first: {:?}",
        stats.first_mismatch
    );
    let (w, h, rgb) = screendump(name);
    let mut matching = Vec::new();
    let mut report = Vec::new();
    for cursor_visible in [true, false] {
        let s = r
            .vga()
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
    check("seabios");
}

#[test]
fn linux_vgacon_matches_qemu() {
    check("vgacon");
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
