//! `fbbench`: how many full-screen frames per second a client of the fbdev interface
//! (`/dev/fb0`) gets through the driver's deferred I/O to the device.
//!
//! Each frame rewrites every visible row through an `mmap` of the framebuffer and `msync`s the
//! mapping. The kernel tracks the written pages; the `msync` reaches the driver's `fsync`, which
//! runs the deferred-I/O flush at once (instead of after its delay), so every frame's damage is
//! handed to the DRM fbdev emulation, which copies it to the device. The picture scrolls by a
//! fixed number of rows per frame, so consecutive frames differ everywhere.

use std::time::Instant;

use super::fb::fb_path;
use crate::args::Options;
use crate::error::{Error, Result};
use crate::fbdev::Framebuffer;
use crate::image::Pattern;
use crate::map::SharedMapping;

/// Upper bound for `--frames`, so a typo cannot keep the (slow, emulated) guest busy for hours.
const MAX_FRAMES: u64 = 100_000;
/// Rows the picture scrolls by from one frame to the next: not a divisor of common heights, so
/// the sequence of frames does not repeat soon.
const SCROLL_ROWS: usize = 37;

/// The source row that visible row `y` of frame `frame` shows, in a picture of `height` rows.
fn source_row(y: usize, frame: usize, height: usize) -> usize {
    (y + frame * SCROLL_ROWS) % height
}

/// `fbbench [--fb fb0] [--frames 60] [--pattern random:1] [--phase NAME]`: prints
/// `SAFFRON-BENCH fb_frames= fb_fps= width= height= stride= bpp= pattern= elapsed_ms=`.
///
/// The picture is rendered and converted to the framebuffer's pixel layout once, before the
/// clock starts, so a frame costs the guest a copy and a flush, not a pixel conversion. With
/// `--phase NAME`, `SAFFRON-PHASE name=NAME begin` and `... end` are printed right around the
/// timed frames, so that the host can sample its own counters over exactly that stretch.
pub fn run(mut opts: Options) -> Result<()> {
    let name = opts.take("fb").unwrap_or_else(|| "fb0".to_string());
    let frames = opts.u64_or("frames", 60, MAX_FRAMES)? as usize;
    let pattern = Pattern::parse(
        &opts
            .take("pattern")
            .unwrap_or_else(|| "random:1".to_string()),
    )?;
    let phase = opts.take("phase");
    opts.finish()?;
    if frames == 0 {
        return Err(Error::Usage("--frames must be at least 1".to_string()));
    }
    if let Some(p) = &phase {
        super::sync::check_token("phase", p)?;
    }

    let path = fb_path(&name);
    let fb = Framebuffer::open(&path, true)?;
    let geo = fb.geometry().clone();
    // Refuses formats whose channels are not whole bytes before anything is drawn.
    geo.pixel.rgb_byte_indices()?;
    let image = pattern.render(geo.width, geo.height)?;
    let row_len = geo.row_len();
    let height = geo.height as usize;
    let mut encoded = Vec::with_capacity(row_len * height);
    let mut row = Vec::with_capacity(row_len);
    for y in 0..height {
        image.encode_span(y, 0, image.width, geo.pixel, &mut row);
        encoded.extend_from_slice(&row);
    }
    let map = SharedMapping::new(fb.file(), 0, geo.mem_len as usize, &path)?;

    if let Some(p) = &phase {
        println!("SAFFRON-PHASE name={p} begin");
    }
    let start = Instant::now();
    for frame in 0..frames {
        for y in 0..geo.height {
            let src = source_row(y as usize, frame, height) * row_len;
            map.write_at(geo.row_offset(y), &encoded[src..src + row_len])?;
        }
        map.sync()?;
    }
    let elapsed = start.elapsed();
    if let Some(p) = &phase {
        println!("SAFFRON-PHASE name={p} end");
    }
    let fps = frames as f64 / elapsed.as_secs_f64().max(1e-9);
    println!(
        "SAFFRON-BENCH fb_frames={frames} fb_fps={fps:.2} width={} height={} stride={} bpp={} \
         pattern={pattern} elapsed_ms={}",
        geo.width,
        geo.height,
        geo.stride,
        geo.bpp,
        elapsed.as_millis()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_scroll_and_wrap() {
        assert_eq!(source_row(0, 0, 768), 0);
        assert_eq!(source_row(767, 0, 768), 767);
        assert_eq!(source_row(0, 1, 768), SCROLL_ROWS);
        assert_eq!(source_row(767, 1, 768), SCROLL_ROWS - 1);
        assert_eq!(source_row(5, 3, 1), 0);
        // Consecutive frames show a different row everywhere.
        for y in 0..768 {
            assert_ne!(source_row(y, 4, 768), source_row(y, 5, 768));
        }
    }

    #[test]
    fn option_errors_come_first() {
        let opts = Options::parse(["--frames", "0"]).unwrap();
        assert!(matches!(run(opts), Err(Error::Usage(_))));
        let opts = Options::parse(["--frames", "100001"]).unwrap();
        assert!(matches!(run(opts), Err(Error::Usage(_))));
        let opts = Options::parse(["--pattern", "plaid"]).unwrap();
        assert!(matches!(run(opts), Err(Error::Usage(_))));
        let opts = Options::parse(["--phase", "a b"]).unwrap();
        assert!(matches!(run(opts), Err(Error::Usage(_))));
        let opts = Options::parse(["--bogus", "1"]).unwrap();
        assert!(matches!(run(opts), Err(Error::Usage(_))));
        let opts = Options::parse(["--fb", "/nonexistent/fb9"]).unwrap();
        assert!(matches!(run(opts), Err(Error::Io { .. })));
    }
}
