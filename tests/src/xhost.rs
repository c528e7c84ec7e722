//! The host's X display for real-client tests: Xvfb of the guest's size with a window
//! manager that honours full-screen requests (matchbox), so that remote-viewer in kiosk mode
//! shows the guest 1:1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The X screen: the guest's mode, so that remote-viewer in kiosk mode (full screen, no
/// toolbar) shows the guest at 100% zoom.
pub const SCREEN: (u32, u32) = (1024, 768);

/// Ends a child process when dropped (a failing test must not leave Xvfb running): SIGTERM
/// first, so that an X server removes its lock file and socket, then SIGKILL after 2 s.
pub struct Reaper(pub Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.0.id()) {
            // SAFETY: kill(2) on our own child's pid, which is not reaped yet (we still hold
            // the Child), so the pid cannot name another process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether display `n`'s lock file names a process that is still running. A lock left by an
/// X server that was killed (SIGKILL leaves it behind) does not count, and is removed with
/// its socket, so that killed test runs do not use up the display numbers.
fn display_in_use(n: u32) -> bool {
    let lock = format!("/tmp/.X{n}-lock");
    let socket = format!("/tmp/.X11-unix/X{n}");
    match std::fs::read_to_string(&lock) {
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(pid) if Path::new(&format!("/proc/{pid}")).exists() => true,
            Ok(_) => {
                let _ = std::fs::remove_file(&lock);
                let _ = std::fs::remove_file(&socket);
                false
            }
            // Unreadable: somebody else's business.
            Err(_) => true,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Path::new(&socket).exists(),
        Err(_) => true,
    }
}

/// Starts Xvfb on a free display number, with a window manager, and returns the display name
/// and both processes.
pub fn start_x() -> (String, Reaper, Reaper) {
    start_x_sized(SCREEN)
}

/// [`start_x`] on an X screen of `size`.
pub fn start_x_sized(size: (u32, u32)) -> (String, Reaper, Reaper) {
    let (display, xvfb) = start_xvfb_sized(size);
    let wm = Command::new("matchbox-window-manager")
        .args(["-use_titlebar", "no"])
        .env("DISPLAY", &display)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run matchbox-window-manager (apt-get install matchbox-window-manager)");
    (display, xvfb, Reaper(wm))
}

pub fn start_xvfb() -> (String, Reaper) {
    start_xvfb_sized(SCREEN)
}

/// [`start_xvfb`] with a screen of `size`.
pub fn start_xvfb_sized(size: (u32, u32)) -> (String, Reaper) {
    for n in 90..140u32 {
        let n = n + std::process::id() % 50;
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
        if display_in_use(n) {
            continue;
        }
        let child = Command::new("Xvfb")
            .arg(format!(":{n}"))
            .args(["-screen", "0", &format!("{}x{}x24", size.0, size.1)])
            .args(["-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run Xvfb (apt-get install xvfb)");
        let mut xvfb = Reaper(child);
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if socket.exists() {
                return (format!(":{n}"), xvfb);
            }
            if let Ok(Some(_)) = xvfb.0.try_wait() {
                break; // lost a race for this display number: try the next
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("could not start Xvfb on any display :90..:190");
}

/// The X screen as packed RGB, read with `xwd -root` (ZPixmap, 32 bits per pixel, LSB first):
/// what a full-screen client shows.
pub fn x_screenshot(display: &str) -> Result<(u32, u32, Vec<u8>), String> {
    let out = Command::new("xwd")
        .args(["-root", "-silent", "-display", display])
        .output()
        .map_err(|e| format!("cannot run xwd (apt-get install x11-apps): {e}"))?;
    if !out.status.success() {
        return Err(format!("xwd: {}", String::from_utf8_lossy(&out.stderr)));
    }
    parse_xwd(&out.stdout)
}

/// An XWD dump of a 24-bit TrueColor screen as packed RGB. Its pixels take 32 bits or, on
/// some of the tests' Xvfb screens (cause not pinned down), 24: the header's
/// bits_per_pixel says which.
pub fn parse_xwd(d: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
    let field = |i: usize| -> Result<u32, String> {
        d.get(i * 4..i * 4 + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| "truncated XWD header".to_string())
    };
    let (header, format, w, h) = (field(0)?, field(2)?, field(4)?, field(5)?);
    let (byte_order, bpp, stride) = (field(7)? as usize, field(11)?, field(12)? as usize);
    let (ncolors, masks) = (field(19)?, (field(14)?, field(15)?, field(16)?));
    let px_bytes = match bpp {
        24 => 3,
        32 => 4,
        _ => return Err(format!("unexpected XWD: {bpp} bits per pixel")),
    };
    if format != 2
        || byte_order != 0
        || masks != (0xff0000, 0xff00, 0xff)
        || stride < w as usize * px_bytes
    {
        return Err(format!(
            "unexpected XWD: format {format} byte order {byte_order} masks {masks:x?} stride {stride}"
        ));
    }
    let start = header as usize + ncolors as usize * 12;
    let data = d
        .get(start..start + stride * h as usize)
        .ok_or("truncated XWD pixels")?;
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for row in data.chunks_exact(stride) {
        for px in row[..w as usize * px_bytes].chunks_exact(px_bytes) {
            rgb.extend_from_slice(&[px[2], px[1], px[0]]);
        }
    }
    Ok((w, h, rgb))
}

/// Where the `gw` x `gh` RGB picture `guest` sits, 1:1, inside the screenshot, if anywhere.
pub fn find_exact(
    shot: &(u32, u32, Vec<u8>),
    guest: &[u8],
    gw: u32,
    gh: u32,
) -> Option<(u32, u32)> {
    let (sw, sh, ref px) = *shot;
    if sw < gw || sh < gh || gw == 0 || gh == 0 {
        return None;
    }
    let row = (gw * 3) as usize;
    let first = guest.get(..row)?;
    for y in 0..=(sh - gh) {
        for x in 0..=(sw - gw) {
            let at = |yy: u32| ((y + yy) * sw + x) as usize * 3;
            if px.get(at(0)..at(0) + row) != Some(first) {
                continue;
            }
            if (0..gh).all(|yy| {
                px.get(at(yy)..at(yy) + row)
                    == guest.get((yy as usize) * row..(yy as usize + 1) * row)
            }) {
                return Some((x, y));
            }
        }
    }
    None
}
