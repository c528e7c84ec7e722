//! End-to-end smoke test with the desktop client users run: `remote-viewer` (Debian's
//! virt-viewer) in an Xvfb X server connects to the guest's Spice server;
//! - a screenshot of the X screen shows the guest's picture, every pixel of it, 1:1 — checked
//!   against the hash the guest computed of its own `/dev/fb0` — for a first picture (sent
//!   whole), for the next ones (sent as the changes: a solid screen as a fill), and for the
//!   text console after it scrolled many times (scrolls sent as copies of what the client has),
//!   and for KMS frames that paste the same two pictures again and again (sent once, then as
//!   references to remote-viewer's own pixmap cache);
//! - a line typed into remote-viewer's window (xdotool) is what the guest reads from its
//!   console tty (Spice inputs → QMP → the guest's PS/2 keyboard).
//!
//! remote-viewer runs in kiosk mode (full screen, no toolbar) under matchbox, a window manager
//! that honours full-screen requests, on an X screen of the guest's size: that is what makes
//! the picture 1:1 (a plain window scales it).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use saffron_tests::xhost::{Reaper, find_exact, start_x, x_screenshot};
use saffron_tests::{GuestOptions, boot_guest_with_sync, serial_guard, sha256_hex, with_tag};
use saffron_vmm::spice::SpiceOptions;

const PASSWORD: &str = "saffron-rv-ticket";
/// The guest's pictures: the first reaches the client whole, the solid one as a DRAW_FILL,
/// the last as a DRAW_COPY of the changes.
const PATTERNS: [&str; 3] = ["random:11", "solid:3366cc", "hgrad"];
/// Typed into remote-viewer: lower and upper case, digits, shifted symbols, spaces.
const TYPED: &str = "Saffron types: echo $((6*7)) > ok_A-Z/[1]!";

#[test]
fn remote_viewer_shows_the_guest_screen() {
    let _g = serial_guard();
    let dir = std::env::temp_dir().join(format!("saffron-rv-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let (display, _xvfb, _wm) = start_x();

    let mut opts = GuestOptions::new("qxl-rv");
    opts.args = PATTERNS.iter().map(|p| p.to_string()).collect();
    opts.spice = SpiceOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        password_file: Some(password_file),
        ..SpiceOptions::default()
    };
    let mut seen: Vec<(u32, u32, String)> = Vec::new();
    let mut last_error = String::new();
    let mut viewer: Option<Reaper> = None;
    // The server's pixmap-cache references sent before and after the KMS tiles.
    let mut from_cache = (0, 0);
    // Console scrolls the worker sent as COPY_BITS plus new rows, at the scroll sync.
    let mut scrolls = 0;
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |sync, vm| match sync.get("label") {
            "typing" => {
                // The guest holds tty1 open and reads a line from it once we say "go".
                let typed = Command::new("xdotool")
                    .args(["type", "--delay", "60", TYPED])
                    .env("DISPLAY", &display)
                    .status()
                    .expect("cannot run xdotool (apt-get install xdotool)");
                assert!(typed.success(), "xdotool type failed");
                let enter = Command::new("xdotool")
                    .args(["key", "Return"])
                    .env("DISPLAY", &display)
                    .status()
                    .expect("xdotool");
                assert!(enter.success(), "xdotool key failed");
            }
            label => {
                let spice = vm.spice().expect("spice server");
                if label == "scroll" {
                    scrolls = vm
                        .server()
                        .worker()
                        .stats()
                        .map_or(0, |s| s.publish.scrolls);
                }
                if label == "kms" {
                    from_cache.1 = spice.image_totals().from_cache;
                } else {
                    from_cache.0 = spice.image_totals().from_cache;
                }
                let port = spice.local_addr().port();
                // Our own render tells where to look; the verdict is the guest's hash below.
                let (gw, gh, guest) = vm.server().worker().screendump().expect("screendump");
                let vv = dir.join("guest.vv");
                std::fs::write(
                    &vv,
                    format!(
                        "[virt-viewer]\ntype=spice\nhost=127.0.0.1\nport={port}\npassword={PASSWORD}\n"
                    ),
                )
                .unwrap();
                let started = Instant::now();
                if viewer.is_none() {
                    let child = Command::new("remote-viewer")
                        .args(["--kiosk", "--kiosk-quit", "on-disconnect"])
                        .arg(&vv)
                        .env("DISPLAY", &display)
                        .stdout(Stdio::null())
                        .stderr(std::fs::File::create(dir.join("remote-viewer.log")).unwrap())
                        .spawn()
                        .expect("cannot run remote-viewer (apt-get install virt-viewer)");
                    viewer = Some(Reaper(child));
                }
                // The guest waits 60 s for "go".
                let until = started + Duration::from_secs(45);
                let want = seen.len() + 1;
                while Instant::now() < until && seen.len() < want {
                    std::thread::sleep(Duration::from_millis(250));
                    match x_screenshot(&display) {
                        Ok(shot) => match find_exact(&shot, &guest, gw, gh) {
                            Some((x, y)) => {
                                let (sw, _, ref px) = shot;
                                let mut region = Vec::with_capacity(guest.len());
                                for yy in 0..gh {
                                    let at = (((y + yy) * sw + x) * 3) as usize;
                                    region.extend_from_slice(&px[at..at + (gw * 3) as usize]);
                                }
                                seen.push((gw, gh, sha256_hex(&region)));
                                println!(
                                    "remote-viewer showed {} at +{x}+{y} after {:?}",
                                    sync.get("label"),
                                    started.elapsed()
                                );
                            }
                            None => last_error = "guest picture not (yet) on the X screen".into(),
                        },
                        Err(e) => last_error = e,
                    }
                }
                if seen.len() < want
                    && let Ok(out) = Command::new("xwd")
                        .args(["-root", "-silent", "-display", &display])
                        .output()
                {
                    let _ = std::fs::write(dir.join("last-screen.xwd"), out.stdout);
                }
            }
        },
    );
    drop(viewer);
    run.assert_workload_ok("qxl-rv");
    let recs = run.records();
    let mut fbs = with_tag(&recs, "FB");
    fbs.extend(
        with_tag(&recs, "KMS")
            .into_iter()
            .filter(|r| r.fields.contains_key("sha256")),
    );
    let pictures: Vec<&str> = PATTERNS
        .iter()
        .copied()
        .chain(["scrolled console", "repeated KMS tiles"])
        .collect();
    assert_eq!(fbs.len(), pictures.len(), "serial:\n{}", run.serial);
    assert_eq!(
        seen.len(),
        pictures.len(),
        "remote-viewer never showed picture {} 1:1 ({last_error}); see {}",
        seen.len() + 1,
        dir.display()
    );
    for (i, (fb, (w, h, digest))) in fbs.iter().zip(&seen).enumerate() {
        assert_eq!(
            (u64::from(*w), u64::from(*h)),
            (fb.num("width"), fb.num("height"))
        );
        assert_eq!(
            digest,
            fb.get("sha256"),
            "picture {} ({}): what remote-viewer shows differs from the guest's /dev/fb0",
            i + 1,
            pictures[i]
        );
    }
    // fbcon's scrolls (the whole console redrawn one line higher) went to remote-viewer as
    // COPY_BITS of what it had plus the new rows, and it still showed the exact console.
    assert!(scrolls > 0, "no scroll was sent as a copy");
    println!("remote-viewer: {scrolls} console scrolls sent as COPY_BITS and new rows");
    // The tiles repeat two pictures: after the first of each, remote-viewer was sent
    // references to its own pixmap cache (FROM_CACHE), and still shows the exact frame.
    assert!(
        from_cache.1 > from_cache.0,
        "no pixmap-cache references during the KMS tiles: {from_cache:?}"
    );
    println!(
        "remote-viewer: {} pixmap-cache references for the tiles",
        from_cache.1 - from_cache.0
    );
    let typed = with_tag(&recs, "TYPED");
    assert_eq!(typed.len(), 1, "serial:\n{}", run.serial);
    let hex: String = TYPED.bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        typed[0].get("hex"),
        hex,
        "the guest read something else than what was typed into remote-viewer"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
