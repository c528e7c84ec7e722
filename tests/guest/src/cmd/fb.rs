//! Framebuffer commands: `fbhash` (what the guest believes is on screen), `fbfill` (put a known
//! picture there), `fbcon-off` (keep the console from drawing over it) and `settle` (wait).
//!
//! The host compares these digests with the sha256 of its screendump, converted to packed R,G,B
//! bytes; `--format rgb` (the default) hashes exactly those bytes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::args::Options;
use crate::error::{Error, Result};
use crate::fbdev::Framebuffer;
use crate::image::{HashFormat, Pattern};
use crate::map::SharedMapping;

/// Default pause after `fbfill`'s flush: the DRM fbdev emulation's deferred I/O runs its damage
/// worker after `fsync` schedules it, and the driver then queues the drawing to the device; under
/// TCG that can take a few hundred milliseconds.
const DEFAULT_SETTLE_MS: u64 = 500;
/// Upper bound for any pause, so a typo cannot stall a test run for hours.
const MAX_SETTLE_MS: u64 = 600_000;

/// `/dev/<name>`, or `name` itself if it is a path.
pub(super) fn fb_path(name: &str) -> PathBuf {
    if name.contains('/') {
        PathBuf::from(name)
    } else {
        Path::new("/dev").join(name)
    }
}

/// Makes a driver id usable as one `key=value` token (vesafb's is `VESA VGA`).
fn token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if t.is_empty() { "-".to_string() } else { t }
}

/// `fbhash [--fb fb0] [--format rgb|raw]`: prints
/// `SAFFRON-FB width= height= stride= bpp= format= id= sha256=` over the visible pixels.
///
/// Geometry comes from the fbdev ioctls (`xres`, `yres`, `xoffset`, `yoffset`, `line_length`,
/// `bits_per_pixel` and the colour bitfields), so padding and panned-away rows are skipped.
/// Pixels are read with `pread`, which for the DRM fbdev emulation returns its shadow buffer.
pub fn hash(mut opts: Options) -> Result<()> {
    let name = opts.take("fb").unwrap_or_else(|| "fb0".to_string());
    let format = HashFormat::parse(&opts.take("format").unwrap_or_else(|| "rgb".to_string()))?;
    opts.finish()?;
    let fb = Framebuffer::open(&fb_path(&name), false)?;
    let geo = fb.geometry();
    let sha = fb.hash(format)?;
    println!(
        "SAFFRON-FB width={} height={} stride={} bpp={} format={} id={} sha256={sha}",
        geo.width,
        geo.height,
        geo.stride,
        geo.bpp,
        format.name(),
        token(&geo.id)
    );
    Ok(())
}

/// `fbfill --pattern P [--fb fb0] [--settle-ms 500]`: draws a full-screen pattern through an
/// `mmap` of the framebuffer, flushes it, waits, reads it back and prints
/// `SAFFRON-FBFILL pattern= width= height= stride= bpp= settle_ms= sha256=` (the rgb digest).
///
/// The mmap path is the one fbdev clients use and the one that exercises deferred I/O: the
/// kernel tracks the written pages, and `msync`/`fsync` make it run the damage flush at once
/// instead of after its delay. The flush itself is asynchronous (a second worker copies the
/// shadow to the DRM buffer and calls the driver), hence the pause.
pub fn fill(mut opts: Options) -> Result<()> {
    let name = opts.take("fb").unwrap_or_else(|| "fb0".to_string());
    let pattern = Pattern::parse(
        &opts
            .take("pattern")
            .ok_or_else(|| Error::Usage("--pattern is required".to_string()))?,
    )?;
    let settle_ms = opts.u64_or("settle-ms", DEFAULT_SETTLE_MS, MAX_SETTLE_MS)?;
    opts.finish()?;

    let path = fb_path(&name);
    let fb = Framebuffer::open(&path, true)?;
    let geo = fb.geometry().clone();
    // Refuses formats whose channels are not whole bytes before anything is drawn.
    geo.pixel.rgb_byte_indices()?;
    let image = pattern.render(geo.width, geo.height)?;

    let map = SharedMapping::new(fb.file(), 0, geo.mem_len as usize, &path)?;
    let mut row = Vec::with_capacity(geo.row_len());
    for y in 0..geo.height {
        image.encode_span(y as usize, 0, image.width, geo.pixel, &mut row);
        map.write_at(geo.row_offset(y), &row)?;
    }
    map.sync()?;
    drop(map);
    // msync already reached the driver's fsync; this one also covers a driver that lacks it.
    if let Err(e) = fb.file().sync_all()
        && e.raw_os_error() != Some(libc::EINVAL)
    {
        return Err(Error::io("fsync", &path, e));
    }
    std::thread::sleep(Duration::from_millis(settle_ms));

    let want = image.sha256();
    let got = fb.hash(HashFormat::Rgb)?;
    if got != want {
        return Err(Error::Check(format!(
            "{}: read back sha256 {got} after writing {pattern} (sha256 {want})",
            path.display()
        )));
    }
    println!(
        "SAFFRON-FBFILL pattern={pattern} width={} height={} stride={} bpp={} settle_ms={settle_ms} \
         sha256={want}",
        geo.width, geo.height, geo.stride, geo.bpp
    );
    Ok(())
}

/// Where fbcon's sysfs knobs live.
const FBCON_SYSFS: &str = "/sys/class/graphics/fbcon";
/// `KDSETMODE` from `<linux/kd.h>`.
const KDSETMODE: u64 = 0x4b3a;
/// `KD_TEXT`.
const KD_TEXT: libc::c_int = 0;
/// `KD_GRAPHICS`.
const KD_GRAPHICS: libc::c_int = 1;
/// VT escapes: hide the cursor (DECTCEM off), no screen blanking (`setterm -blank 0`), no VESA
/// power-down (`setterm -powerdown 0`); the last two keep a slow test from finding a black
/// screen.
const QUIET_VT: &[u8] = b"\x1b[?25l\x1b[9;0]\x1b[14;0]";

/// `fbcon-off [--tty /dev/tty0] [--kd graphics|text]`: makes the framebuffer console leave the
/// screen alone, so that its content is static while it is hashed and dumped.
///
/// Stops the cursor blink (`fbcon/cursor_blink` = 0), hides the cursor and disables blanking on
/// the foreground VT. `--kd graphics` also switches the VT to `KD_GRAPHICS`, as a display server
/// does: fbcon then draws nothing at all (not even for kernel or tty output) until `--kd text`;
/// the picture already in the framebuffer stays. Prints
/// `SAFFRON-FBCON cursor=hidden blink=0 blank=0 kd=graphics|text|unchanged`.
pub fn console_off(mut opts: Options) -> Result<()> {
    let tty = PathBuf::from(opts.take("tty").unwrap_or_else(|| "/dev/tty0".to_string()));
    let kd = match opts.take("kd").as_deref() {
        None => None,
        Some("graphics") => Some(("graphics", KD_GRAPHICS)),
        Some("text") => Some(("text", KD_TEXT)),
        Some(other) => {
            return Err(Error::Usage(format!(
                "--kd must be graphics or text, not {other:?}"
            )));
        }
    };
    opts.finish()?;

    let blink = Path::new(FBCON_SYSFS).join("cursor_blink");
    std::fs::write(&blink, "0").map_err(|e| Error::io("write", &blink, e))?;
    let mut vt = std::fs::OpenOptions::new()
        .write(true)
        .open(&tty)
        .map_err(|e| Error::io("open", &tty, e))?;
    vt.write_all(QUIET_VT)
        .and_then(|()| vt.flush())
        .map_err(|e| Error::io("write", &tty, e))?;
    if let Some((_, mode)) = kd {
        use std::os::fd::AsRawFd;
        // SAFETY: KDSETMODE takes its argument by value; the fd is open for the call.
        let rc = unsafe { libc::ioctl(vt.as_raw_fd(), KDSETMODE as _, mode) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(Error::io("KDSETMODE", &tty, e));
        }
    }
    println!(
        "SAFFRON-FBCON cursor=hidden blink=0 blank=0 kd={}",
        kd.map_or("unchanged", |(name, _)| name)
    );
    Ok(())
}

/// `settle --ms N`: sleeps, so scripts need not rely on busybox's fractional `sleep`.
pub fn settle(mut opts: Options) -> Result<()> {
    let ms = opts.require_u64("ms")?;
    opts.finish()?;
    if ms > MAX_SETTLE_MS {
        return Err(Error::Usage(format!("--ms {ms} exceeds {MAX_SETTLE_MS}")));
    }
    std::thread::sleep(Duration::from_millis(ms));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tokens() {
        assert_eq!(fb_path("fb0"), Path::new("/dev/fb0"));
        assert_eq!(fb_path("/tmp/x"), Path::new("/tmp/x"));
        assert_eq!(token("VESA VGA"), "VESA_VGA");
        assert_eq!(token("qxldrmfb"), "qxldrmfb");
        assert_eq!(token(""), "-");
    }

    #[test]
    fn option_errors_come_first() {
        let opts = Options::parse(["--format", "bgr"]).unwrap();
        assert!(matches!(hash(opts), Err(Error::Usage(_))));
        let opts = Options::parse(["--fb", "fb0"]).unwrap();
        assert!(matches!(fill(opts), Err(Error::Usage(_))));
        let opts = Options::parse(["--pattern", "plaid"]).unwrap();
        assert!(matches!(fill(opts), Err(Error::Usage(_))));
        let opts = Options::parse(["--kd", "vga"]).unwrap();
        assert!(matches!(console_off(opts), Err(Error::Usage(_))));
        let opts = Options::parse(["--ms", "600001"]).unwrap();
        assert!(matches!(settle(opts), Err(Error::Usage(_))));
        settle(Options::parse(["--ms", "1"]).unwrap()).unwrap();
    }
}
