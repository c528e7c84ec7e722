//! The host's X display for real-client tests: Xvfb of the guest's size with a window
//! manager that honours full-screen requests (matchbox), so that remote-viewer in kiosk mode
//! shows the guest 1:1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The X screen: the guest's mode, so that remote-viewer in kiosk mode (full screen, no
/// toolbar) shows the guest at 100% zoom.
pub const SCREEN: (u32, u32) = (1024, 768);

/// Kills a child process when dropped (a failing test must not leave Xvfb running).
pub struct Reaper(pub Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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
        if socket.exists() || Path::new(&format!("/tmp/.X{n}-lock")).exists() {
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
