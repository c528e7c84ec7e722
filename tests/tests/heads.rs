//! The client's monitors config through the QXL ROM, with a real guest and a real client and
//! no agent acting on it.
//!
//! The X guest's kernel (Debian 12, drm/qxl) runs no X and no spice-vdagent: only
//! `saffron-guest agent-stub`, which answers capability requests so that remote-viewer sends
//! its monitors config at all (spice-gtk sends one only while an agent is connected) and does
//! nothing with it. remote-viewer runs full screen on an 800x600 X screen while the guest is
//! at the driver's 1024x768. The test checks that:
//! - the device wrote the client's layout into the ROM and raised CLIENT_MONITORS_CONFIG;
//! - the guest's qxl driver made it its connector's preferred mode (read back from sysfs);
//! - a KMS client in the guest that sets the preferred mode (as a compositor does on the
//!   hotplug) gives the device a primary surface of the window's size;
//! - remote-viewer then shows the guest's frame 1:1, pixel for pixel, on its whole screen.
//!
//! The resize test does the same in a plain window that changes size twice, and finds the
//! guest's new frame 1:1 in the window each time.
//!
//! The multi-head tests (`heads` workload) take two and four heads end to end: our library
//! client's layout lights that many guest monitors, each announced head's pixels are exactly
//! the guest's buffer for it, and remote-viewer opens a window per head showing exactly that
//! head's pixels.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use saffron_tests::xhost::{Reaper, find_exact, start_x_sized, start_xvfb_sized, x_screenshot};
use saffron_tests::{
    GuestOptions, GuestVariant, boot_guest_with_sync, serial_guard, sha256_hex, with_tag,
};
use saffron_vmm::run::Vm;
use saffron_vmm::spice::SpiceOptions;

const PASSWORD: &str = "saffron-heads-ticket";
/// remote-viewer's screen: not the guest's 1024x768.
const WINDOW: (u32, u32) = (800, 600);

fn start_viewer(vm: &Vm, display: &str, dir: &Path, kiosk: bool) -> Reaper {
    let port = vm.spice().expect("spice server").local_addr().port();
    let vv = dir.join("guest.vv");
    std::fs::write(
        &vv,
        format!("[virt-viewer]\ntype=spice\nhost=127.0.0.1\nport={port}\npassword={PASSWORD}\n"),
    )
    .unwrap();
    let mut cmd = Command::new("remote-viewer");
    if kiosk {
        cmd.args(["--kiosk", "--kiosk-quit", "on-disconnect"]);
    }
    let child = cmd
        .arg(&vv)
        .env("DISPLAY", display)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("remote-viewer.log")).unwrap())
        .spawn()
        .expect("cannot run remote-viewer (apt-get install virt-viewer)");
    Reaper(child)
}

/// What the host saw at the guest's `kms` sync.
#[derive(Debug, Default)]
struct AtKms {
    primary: Option<(u32, u32)>,
    client_monitors_configs: u64,
    /// Whether remote-viewer's whole screen equalled the worker's screendump, and how long
    /// that took to become true.
    exact: Option<Duration>,
    last_error: String,
}

#[test]
fn the_guest_follows_the_client_window_through_the_rom_without_an_agent() {
    let _g = serial_guard();
    let dir = std::env::temp_dir().join(format!("saffron-heads-rom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let (display, _xvfb, _wm) = start_x_sized(WINDOW);
    let mut opts = GuestOptions::new("monitors");
    opts.variant = GuestVariant::Xorg;
    opts.spice = SpiceOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        password_file: Some(password_file),
        ..SpiceOptions::default()
    };
    opts.timeout = Duration::from_secs(400);
    let mut viewer: Option<Reaper> = None;
    let mut at_kms = AtKms::default();
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |sync, vm| match sync.get("label") {
            "agent-up" => viewer = Some(start_viewer(vm, &display, &dir, true)),
            "kms" => {
                at_kms.primary = vm.server().worker().primary_size();
                at_kms.client_monitors_configs = saffron_vmm::vfio_user::lock(vm.device())
                    .stats()
                    .client_monitors_configs;
                let t0 = Instant::now();
                while t0.elapsed() < Duration::from_secs(40) {
                    let dump = vm.server().worker().screendump();
                    match (x_screenshot(&display), dump) {
                        (Ok(shot), Ok(dump)) if shot == dump => {
                            at_kms.exact = Some(t0.elapsed());
                            break;
                        }
                        (Ok(shot), Ok(dump)) => {
                            at_kms.last_error = format!(
                                "screen {}x{} differs from the {}x{} screendump",
                                shot.0, shot.1, dump.0, dump.1
                            )
                        }
                        (Err(e), _) => at_kms.last_error = e,
                        (_, Err(e)) => at_kms.last_error = format!("no screendump: {e}"),
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
            _ => {}
        },
    );
    drop(viewer);
    let serial = &run.serial;
    run.assert_workload_ok("monitors");
    let recs = run.records();
    let modes = with_tag(&recs, "MODES");
    let followed = modes
        .iter()
        .find(|r| r.fields.contains_key("after"))
        .unwrap_or_else(|| panic!("no SAFFRON-MODES after=; serial:\n{serial}"));
    println!("heads: {:?}", followed.fields);
    assert_eq!(followed.get("before"), "1024x768");
    assert_eq!(
        followed.get("after"),
        format!("{}x{}", WINDOW.0, WINDOW.1),
        "the connector's preferred mode"
    );
    let stub = with_tag(&recs, "AGENTSTUB");
    assert!(
        stub.iter().any(|r| r.fields.contains_key("monitors")),
        "the client sent its monitors config (the agent stub saw it too); serial:\n{serial}"
    );
    assert!(
        at_kms.client_monitors_configs >= 1,
        "the device raised CLIENT_MONITORS_CONFIG: {at_kms:?}"
    );
    assert_eq!(at_kms.primary, Some(WINDOW), "the guest's primary surface");
    let kms = with_tag(&recs, "KMS");
    let done = kms
        .iter()
        .find(|r| r.fields.contains_key("width"))
        .unwrap_or_else(|| panic!("no SAFFRON-KMS width=; serial:\n{serial}"));
    assert_eq!(
        (done.num("width"), done.num("height")),
        (u64::from(WINDOW.0), u64::from(WINDOW.1))
    );
    let took = at_kms.exact.unwrap_or_else(|| {
        panic!(
            "remote-viewer never showed the guest's frame 1:1: {}",
            at_kms.last_error
        )
    });
    println!(
        "heads: the guest took the client's {WINDOW:?} in {} ms; remote-viewer pixel-exact {took:?} after the guest's frame",
        followed.get("ms")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn xdotool(display: &str, args: &[&str]) -> String {
    let out = Command::new("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .output()
        .expect("cannot run xdotool (apt-get install xdotool)");
    assert!(out.status.success(), "xdotool {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A width and a height, or a position, in pixels.
type Size = (u32, u32);

/// Sets remote-viewer's window to `size` (its display widget gets that less the menus).
fn resize(display: &str, size: (u32, u32)) {
    let window = xdotool(
        display,
        &[
            "search",
            "--sync",
            "--onlyvisible",
            "--class",
            "remote-viewer",
        ],
    );
    let window = window.lines().last().unwrap_or_default().to_string();
    xdotool(
        display,
        &[
            "windowsize",
            &window,
            &size.0.to_string(),
            &size.1.to_string(),
        ],
    );
}

/// The window changes size mid-session: remote-viewer in a plain window (no window manager)
/// takes the guest's size; `xdotool windowsize` makes the window smaller, remote-viewer sends
/// its display's new size, and the guest follows, through the ROM only; then a second resize,
/// and the guest follows again.
#[test]
fn the_guest_follows_a_window_resize_through_the_rom() {
    const FIRST: (u32, u32) = (880, 660);
    const SECOND: (u32, u32) = (720, 560);
    let _g = serial_guard();
    let dir = std::env::temp_dir().join(format!("saffron-heads-resize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let (display, _xvfb) = start_xvfb_sized((1280, 1024));
    let mut opts = GuestOptions::new("monitors");
    opts.variant = GuestVariant::Xorg;
    opts.args = vec!["twice".into()];
    opts.spice = SpiceOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        password_file: Some(password_file),
        ..SpiceOptions::default()
    };
    opts.timeout = Duration::from_secs(400);
    let mut viewer: Option<Reaper> = None;
    // Per kms sync: the primary surface, and where the guest's frame was found 1:1.
    let mut seen: Vec<(Option<Size>, Option<Size>, String)> = Vec::new();
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |sync, vm| {
            if sync.get("label") == "agent-up" {
                viewer = Some(start_viewer(vm, &display, &dir, false));
                // remote-viewer sizes its window to the guest's screen, so it has nothing to
                // ask until its window changes: once it talks to the agent, make it smaller.
                let spice = vm.spice().expect("spice server");
                let t0 = Instant::now();
                while spice.agent_stats().pieces_to_client == 0 {
                    assert!(
                        t0.elapsed() < Duration::from_secs(40),
                        "remote-viewer never started the agent"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
                // It asks only once its display is up: give it a moment to draw.
                std::thread::sleep(Duration::from_secs(3));
                resize(&display, FIRST);
                return;
            }
            if sync.get("label") != "kms" {
                return;
            }
            let primary = vm.server().worker().primary_size();
            let t0 = Instant::now();
            let (mut found, mut why) = (None, String::new());
            while t0.elapsed() < Duration::from_secs(15) && found.is_none() {
                match (x_screenshot(&display), vm.server().worker().screendump()) {
                    (Ok(shot), Ok((gw, gh, guest))) => {
                        found = find_exact(&shot, &guest, gw, gh);
                        why = format!("{gw}x{gh} frame not 1:1 on the screen");
                    }
                    (Err(e), _) | (_, Err(e)) => why = e,
                }
                if found.is_none() {
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
            seen.push((primary, found, why));
            if sync.get("id") == "2" {
                resize(&display, SECOND);
            }
        },
    );
    drop(viewer);
    let serial = &run.serial;
    run.assert_workload_ok("monitors");
    let recs = run.records();
    let follows: Vec<_> = with_tag(&recs, "MODES")
        .into_iter()
        .filter(|r| r.fields.contains_key("after"))
        .collect();
    assert_eq!(follows.len(), 2, "serial:\n{serial}");
    let sent: Vec<String> = with_tag(&recs, "AGENTSTUB")
        .into_iter()
        .filter(|r| r.fields.contains_key("monitors"))
        .map(|r| r.get("heads").to_string())
        .collect();
    println!(
        "heads: the client sent {sent:?}; the guest followed {:?}",
        follows.iter().map(|r| r.fields.clone()).collect::<Vec<_>>()
    );
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (i, (primary, found, why)) in seen.iter().enumerate() {
        let after = follows[i].get("after");
        let size = primary.map(|(w, h)| format!("{w}x{h}"));
        assert_eq!(
            size.as_deref(),
            Some(after),
            "kms {i}: the primary surface is the new mode"
        );
        assert!(
            found.is_some(),
            "kms {i}: remote-viewer's window shows the guest's new frame 1:1: {why}"
        );
        assert!(
            sent.iter().any(|h| h.starts_with(&format!("{after}+"))),
            "kms {i}: {after} is a size the client sent: {sent:?}"
        );
    }
    assert_ne!(
        seen[0].0, seen[1].0,
        "the second window size is another mode"
    );
    println!(
        "heads: where remote-viewer showed the frames 1:1: {:?}",
        seen.iter().map(|s| s.1).collect::<Vec<_>>()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A VDAgentMessage (protocol 1) of `type_` holding `payload`, as a client's AGENT_DATA
/// carries it.
fn agent_message(type_: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = 1u32.to_le_bytes().to_vec();
    m.extend(type_.to_le_bytes());
    m.extend(0u64.to_le_bytes()); // opaque
    m.extend(u32::try_from(payload.len()).unwrap().to_le_bytes());
    m.extend(payload);
    m
}

/// A VDAgentMonitorsConfig of `heads` (width, height, x, y), 32 bits deep, no flags.
fn agent_monitors_config(heads: &[(u32, u32, u32, u32)]) -> Vec<u8> {
    let mut m = u32::try_from(heads.len()).unwrap().to_le_bytes().to_vec();
    m.extend(0u32.to_le_bytes());
    for &(w, h, x, y) in heads {
        for v in [h, w, 32, x, y] {
            m.extend(v.to_le_bytes());
        }
    }
    m
}

/// The heads of a SPICE_MSG_DISPLAY_MONITORS_CONFIG body: (id, x, y, width, height).
fn monitors_message(body: &[u8]) -> Vec<(u32, u32, u32, u32, u32)> {
    let u32_at = |o: usize| u32::from_le_bytes(body[o..o + 4].try_into().unwrap());
    let count = usize::from(u16::from_le_bytes([body[0], body[1]]));
    (0..count)
        .map(|i| {
            let at = 4 + i * 28;
            assert_eq!(u32_at(at + 4), 0, "every head is on the primary surface");
            (
                u32_at(at),
                u32_at(at + 16),
                u32_at(at + 20),
                u32_at(at + 8),
                u32_at(at + 12),
            )
        })
        .collect()
}

/// What the host saw at the guest's `heads` sync.
#[derive(Debug, Default)]
struct AtHeads {
    /// The last MONITORS_CONFIG the client got: (id, x, y, width, height) per head.
    announced: Vec<(u32, u32, u32, u32, u32)>,
    /// Per announced head, the SHA-256 of the RGB of its rectangle in the client's surface.
    client_digests: Vec<String>,
    /// Per announced head, the SHA-256 of the worker's dump of that head.
    worker_digests: Vec<String>,
    /// The worker's shown heads, from its stats.
    stats_heads: usize,
    client_monitors_configs: u64,
    /// The display messages read, by type.
    messages: Vec<u16>,
    last_error: String,
    /// What remote-viewer showed (see [`ViewerHeads`]).
    viewer: ViewerHeads,
}

/// What remote-viewer showed of the guest's heads.
#[derive(Debug, Default)]
struct ViewerHeads {
    /// The titles of its visible windows, sorted.
    windows: Vec<String>,
    /// Per head, where its exact pixels were found on remote-viewer's X screen (None: not
    /// found before the deadline).
    found: Vec<Option<(u32, u32)>>,
    /// How long it took until every head was found.
    took: Option<Duration>,
}

/// Gap between two remote-viewer windows placed side by side, for their menus and borders.
const WINDOW_GAP: u32 = 60;

/// Runs remote-viewer (on its own X screen, no window manager) until it shows a window per
/// head, places them side by side (with no window manager they would all sit at 0,0, one on
/// top of the other), and looks for each head's exact pixels (`heads`: width, height, RGB) on
/// the screen. spice-gtk makes one display per head a MONITORS_CONFIG announces, and
/// remote-viewer opens a window for each, showing the head 1:1 when the window fits it.
fn viewer_heads(vm: &Vm, dir: &Path, heads: &[(u32, u32, Vec<u8>)]) -> ViewerHeads {
    let screen_w = heads.iter().map(|h| h.0 + WINDOW_GAP).sum::<u32>() + WINDOW_GAP;
    let screen_h = heads.iter().map(|h| h.1).max().unwrap_or(0) + 200;
    let (display, _xvfb) = start_xvfb_sized((screen_w, screen_h));
    let _viewer = start_viewer(vm, &display, dir, false);
    let mut seen = ViewerHeads {
        found: vec![None; heads.len()],
        ..ViewerHeads::default()
    };
    let t0 = Instant::now();
    let mut windows: Vec<(String, String)> = Vec::new();
    while t0.elapsed() < Duration::from_secs(15) {
        let out = Command::new("xdotool")
            .args(["search", "--onlyvisible", "--class", "remote-viewer"])
            .env("DISPLAY", &display)
            .output()
            .expect("cannot run xdotool (apt-get install xdotool)");
        windows = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|w| (xdotool(&display, &["getwindowname", w]), w.to_string()))
            .collect();
        if windows.len() >= heads.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    windows.sort();
    seen.windows = windows.iter().map(|w| w.0.clone()).collect();
    // "saffron (1)" shows head 0, "saffron (2)" head 1, and so on: sorted by title (at most
    // 9 heads here), each goes right of the one before.
    let mut x = WINDOW_GAP;
    for ((_, id), head) in windows.iter().zip(heads) {
        xdotool(&display, &["windowmove", id, &x.to_string(), "0"]);
        x += head.0 + WINDOW_GAP;
    }
    while t0.elapsed() < Duration::from_secs(25) {
        if let Ok(shot) = x_screenshot(&display) {
            for (slot, (w, h, rgb)) in seen.found.iter_mut().zip(heads) {
                if slot.is_none() {
                    *slot = find_exact(&shot, rgb, *w, *h);
                }
            }
        }
        if seen.found.iter().all(Option::is_some) {
            seen.took = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    seen
}

/// The RGB bytes of `(x, y, w, h)` of a client's BGRX surface.
fn head_rgb(
    screen: &saffron_server::client::Screen,
    (x, y, w, h): (u32, u32, u32, u32),
) -> Vec<u8> {
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for row in y..y + h {
        let start = ((row * screen.width + x) * 4) as usize;
        for px in screen.pixels[start..start + (w * 4) as usize].chunks_exact(4) {
            rgb.extend_from_slice(&[px[2], px[1], px[0]]);
        }
    }
    rgb
}

/// Two monitors, end to end, with no agent: a Spice client (our library client) sends a
/// two-head layout; the device (`--heads 2`) puts both heads in the ROM; the guest's qxl
/// driver reports its second connector connected; the guest lights both (one buffer per
/// CRTC, which drm/qxl lays side by side on one primary surface); the display channel then
/// announces both heads in one MONITORS_CONFIG, and each head's pixels, as the client holds
/// them and as the worker dumps them, are exactly what the guest put in that head's buffer;
/// and remote-viewer, connecting then, opens a window per head showing exactly that head.
#[test]
fn a_two_head_client_layout_lights_two_guest_monitors_pixel_exact() {
    heads_end_to_end(&[(800, 600, 0, 0), (640, 480, 800, 0)]);
}

/// [`a_two_head_client_layout_lights_two_guest_monitors_pixel_exact`] with four heads, the
/// connectors Linux's drm/qxl makes (and our default `--heads`).
#[test]
fn a_four_head_client_layout_lights_four_guest_monitors_pixel_exact() {
    heads_end_to_end(&[
        (640, 480, 0, 0),
        (512, 384, 640, 0),
        (400, 300, 1152, 0),
        (320, 240, 1552, 0),
    ]);
}

/// The multi-head test for a client `layout` of (width, height, x, y) per head.
fn heads_end_to_end(layout: &[(u32, u32, u32, u32)]) {
    use saffron_server::client::{Screen, Session};
    use saffron_server::wire::msg;

    let n = layout.len();
    let _g = serial_guard();
    let dir = std::env::temp_dir().join(format!("saffron-heads-{n}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let mut opts = GuestOptions::new("heads");
    opts.variant = GuestVariant::Xorg;
    opts.agent = false;
    opts.qxl.max_heads = u32::try_from(n).unwrap();
    opts.args = vec![n.to_string()];
    opts.spice = SpiceOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        password_file: Some(password_file),
        ..SpiceOptions::default()
    };
    opts.timeout = Duration::from_secs(120);
    let (tap, serial_lines) = std::sync::mpsc::channel();
    opts.serial_tap = Some(tap);
    let mut layout_client: Option<Session> = None;
    let mut at = AtHeads::default();
    let mut guest_heads: Vec<(u32, u32, String)> = Vec::new();
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |sync, vm| match sync.get("label") {
            "ready" => {
                let addr = vm.spice().expect("spice server").local_addr();
                let mut s = Session::connect(addr, PASSWORD).expect("main channel");
                s.main
                    .send(msg::MSGC_MAIN_AGENT_START, &10u32.to_le_bytes())
                    .expect("AGENT_START");
                // VD_AGENT_MONITORS_CONFIG = 2.
                let m = agent_message(2, &agent_monitors_config(layout));
                s.main
                    .send(msg::MSGC_MAIN_AGENT_DATA, &m)
                    .expect("AGENT_DATA");
                layout_client = Some(s);
            }
            "heads" => {
                // The guest printed its heads before this sync.
                let text: String = serial_lines.try_iter().collect();
                guest_heads = with_tag(&saffron_tests::records(&text), "HEAD")
                    .iter()
                    .map(|r| {
                        let side = |k: &str| u32::try_from(r.num(k)).unwrap();
                        (side("width"), side("height"), r.get("sha256").to_string())
                    })
                    .collect();
                at.client_monitors_configs = saffron_vmm::vfio_user::lock(vm.device())
                    .stats()
                    .client_monitors_configs;
                let worker = vm.server().worker();
                at.stats_heads = worker.stats().map_or(0, |s| s.heads.len());
                let addr = vm.spice().expect("spice server").local_addr();
                let session = Session::connect(addr, PASSWORD).expect("main channel");
                let mut d = session.display().expect("display channel");
                d.set_timeout(Duration::from_secs(10)).unwrap();
                let mut screen = Screen::new();
                let mut marked = false;
                let mut heads_rgb = Vec::new();
                let t0 = Instant::now();
                while t0.elapsed() < Duration::from_secs(20) {
                    let (ty, body) = match d.read() {
                        Ok(m) => m,
                        Err(e) => {
                            at.last_error = format!("display channel: {e}");
                            break;
                        }
                    };
                    screen.handle(&mut d, ty, &body).expect("display message");
                    at.messages.push(ty);
                    if ty == msg::DISPLAY_MONITORS_CONFIG {
                        at.announced = monitors_message(&body);
                    }
                    marked |= ty == msg::DISPLAY_MARK;
                    if !marked || at.announced.len() != n {
                        continue;
                    }
                    heads_rgb = at
                        .announced
                        .iter()
                        .map(|&(_, x, y, w, h)| (w, h, head_rgb(&screen, (x, y, w, h))))
                        .collect();
                    at.client_digests = heads_rgb.iter().map(|h| sha256_hex(&h.2)).collect();
                    if at.client_digests.len() == guest_heads.len()
                        && at
                            .client_digests
                            .iter()
                            .zip(&guest_heads)
                            .all(|(c, g)| *c == g.2)
                    {
                        break;
                    }
                }
                at.worker_digests = at
                    .announced
                    .iter()
                    .map(|&(id, ..)| match worker.head_screendump(id) {
                        Ok((_, _, rgb)) => sha256_hex(&rgb),
                        Err(e) => e,
                    })
                    .collect();
                // What remote-viewer must show: the guest's pixels, as the library client
                // holds them (checked against the guest's digests below).
                at.viewer = viewer_heads(vm, &dir, &heads_rgb);
            }
            _ => {}
        },
    );
    drop(layout_client);
    let serial = &run.serial;
    run.assert_workload_ok("heads");
    assert!(
        at.client_monitors_configs >= 1,
        "the device raised CLIENT_MONITORS_CONFIG: {at:?}"
    );
    assert_eq!(
        guest_heads.len(),
        n,
        "the guest lit {n} heads; serial:\n{serial}"
    );
    let sizes: Vec<(u32, u32)> = guest_heads.iter().map(|g| (g.0, g.1)).collect();
    let wanted: Vec<(u32, u32)> = layout.iter().map(|l| (l.0, l.1)).collect();
    assert_eq!(
        sizes, wanted,
        "each guest head took its client head's size as its mode"
    );
    let announced: Vec<(u32, u32, u32)> = at
        .announced
        .iter()
        .map(|&(id, _, _, w, h)| (id, w, h))
        .collect();
    let wanted: Vec<(u32, u32, u32)> = (0u32..).zip(layout).map(|(id, l)| (id, l.0, l.1)).collect();
    assert_eq!(announced, wanted, "every head announced: {at:?}");
    assert_eq!(at.stats_heads, n, "the worker's stats list every head");
    for (i, g) in guest_heads.iter().enumerate() {
        assert_eq!(
            at.client_digests.get(i),
            Some(&g.2),
            "head {i}: the client's pixels differ from the guest's buffer ({at:?})"
        );
        assert_eq!(
            at.worker_digests.get(i),
            Some(&g.2),
            "head {i}: the worker's dump differs from the guest's buffer ({at:?})"
        );
    }
    let titles: Vec<String> = (1..=n).map(|k| format!("saffron ({k})")).collect();
    assert_eq!(
        at.viewer.windows, titles,
        "remote-viewer opened a window per announced head: {:?}",
        at.viewer
    );
    println!(
        "heads: remote-viewer showed all {n} heads 1:1 after {:?}: {:?}",
        at.viewer.took, at.viewer.found
    );
    assert!(
        at.viewer.found.iter().all(Option::is_some),
        "remote-viewer shows each head's exact pixels in its window: {:?}",
        at.viewer
    );
    let _ = std::fs::remove_dir_all(&dir);
}
