//! The Spice guest agent with the real spice-vdagent and a real remote-viewer: the X guest
//! (`ci/build-guest --xorg`) runs Xorg on the qxl device, spice-vdagentd on the virtio-serial
//! port `com.redhat.spice.0` that `saffron run` gives it (a chardev socket our process
//! serves) and the X session agent; remote-viewer runs in Xvfb on the host, and `xclip` acts on
//! both clipboards.
//!
//! - Before the agents start, a client's INIT says no agent (and the earlier tests, which boot
//!   guests without one, are the rest of "no agent").
//! - Host to guest: ASCII text, UTF-8 text with multi-byte characters, 1 MiB of text and a PNG
//!   image put on the host's clipboard are what the guest's `xclip -o` returns, byte for byte
//!   (the guest prints the sha256).
//! - The agents restart in the guest (the port closes and reopens), then the host drops the
//!   agent link (as when QEMU's chardev reconnects): the agent comes back both times.
//! - Guest to host: 1 KiB and 1 MiB of text the guest puts on its clipboard are what the
//!   host's `xclip -o` returns.
//! - A 300 KB file sent through the agent (FILE_XFER_*, as remote-viewer does on a drop) is
//!   saved whole by the guest's session agent.
//! - With `--spice-disable-copy-paste` and `--spice-disable-agent-file-xfer` nothing crosses
//!   either way (clipboard, file) while the agent is connected, and the display goes on.
//!
//! The rounds' times are printed (clipboard latency, polled every 200 ms on each side).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use saffron_tests::xhost::{Reaper, start_x, start_x_sized};
use saffron_tests::{
    GuestOptions, GuestVariant, Record, boot_guest_with_sync, serial_guard, sha256_hex,
    spicy_screenshot, with_tag,
};
use saffron_vmm::run::Vm;
use saffron_vmm::spice::SpiceOptions;

const PASSWORD: &str = "saffron-agent-ticket";
/// The line the guest's `agent_text` repeats (tests/guest/workloads/xorg/agent.sh).
const GUEST_LINE: &str = "Saffron guest clipboard: 0123456789 abcdefghijklmnopqrstuvwxyz.\n";

/// `len` bytes of the guest's text (its `yes LINE | head -c len`).
fn guest_text(len: usize) -> Vec<u8> {
    GUEST_LINE.bytes().cycle().take(len).collect()
}

/// A small RGBA PNG with every pixel different.
fn png_image() -> Vec<u8> {
    let (w, h) = (64u32, 48u32);
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().expect("png header");
    let px: Vec<u8> = (0..w * h)
        .flat_map(|i| [(i % 251) as u8, (i / 7) as u8, (i * 13) as u8, 255])
        .collect();
    writer.write_image_data(&px).expect("png data");
    writer.finish().expect("png end");
    out
}

/// What the host puts on its clipboard, per round: the MIME type the guest asks for, the
/// target the host offers, and the bytes.
fn host_rounds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let ascii: Vec<u8> = b"Saffron host clipboard, plain ASCII: the quick brown fox jumps over the lazy dog 0123456789 ~!@#$%^&*()_+{}|:<>?\n"
        .iter()
        .copied()
        .cycle()
        .take(1024)
        .collect();
    let utf8 = "Grüße aus dem Wirt: ÄÖÜ ß, 日本語のテキスト, Ελληνικά, русский, emoji 🦀🚀✓ — “quotes” …\n"
        .repeat(3)
        .into_bytes();
    let big: Vec<u8> = "Saffron host clipboard, 1 MiB: lorem ipsum dolor sit amet 0123456789.\n"
        .bytes()
        .cycle()
        .take(1 << 20)
        .collect();
    vec![
        ("UTF8_STRING", "UTF8_STRING", ascii),
        ("UTF8_STRING", "UTF8_STRING", utf8),
        ("UTF8_STRING", "UTF8_STRING", big),
        ("image/png", "image/png", png_image()),
    ]
}

/// Puts `data` on the host's clipboard as `target` (xclip stays in the background serving it
/// until another owner takes the selection).
fn host_set_clipboard(display: &str, target: &str, data: &[u8]) {
    let mut child = Command::new("xclip")
        .args(["-i", "-selection", "clipboard", "-t", target])
        .env("DISPLAY", display)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run xclip (apt-get install xclip)");
    child
        .stdin
        .take()
        .expect("xclip stdin")
        .write_all(data)
        .expect("write to xclip");
    assert!(child.wait().expect("xclip").success(), "xclip -i failed");
}

/// The host's clipboard as UTF8_STRING (None when nobody offers it).
fn host_get_clipboard(display: &str) -> Option<Vec<u8>> {
    let out = Command::new("timeout")
        .args([
            "20",
            "xclip",
            "-o",
            "-selection",
            "clipboard",
            "-t",
            "UTF8_STRING",
        ])
        .env("DISPLAY", display)
        .stderr(Stdio::null())
        .output()
        .expect("cannot run xclip (apt-get install xclip)");
    out.status.success().then_some(out.stdout)
}

/// Starts remote-viewer on the guest (kiosk, as the remote-viewer test).
fn start_viewer(vm: &Vm, display: &str, dir: &Path) -> Reaper {
    let port = vm.spice().expect("spice server").local_addr().port();
    let vv = dir.join("guest.vv");
    std::fs::write(
        &vv,
        format!("[virt-viewer]\ntype=spice\nhost=127.0.0.1\nport={port}\npassword={PASSWORD}\n"),
    )
    .unwrap();
    let child = Command::new("remote-viewer")
        .args(["--kiosk", "--kiosk-quit", "on-disconnect"])
        .arg(&vv)
        .env("DISPLAY", display)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("remote-viewer.log")).unwrap())
        .spawn()
        .expect("cannot run remote-viewer (apt-get install virt-viewer)");
    Reaper(child)
}

/// Waits (up to 25 s: the guest waits 60 s for "go") until the agent is connected and has
/// sent a client more than `after` pieces (remote-viewer's AGENT_START asks for its
/// capabilities): then the clipboard can cross.
fn wait_agent_talks(vm: &Vm, after: u64) -> Result<Duration, String> {
    let spice = vm.spice().expect("spice server");
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(25) {
        if spice.agent_connected() && spice.agent_stats().pieces_to_client > after {
            return Ok(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "no agent talking to a client after 25 s: connected={} {:?} clients={}",
        spice.agent_connected(),
        spice.agent_stats(),
        spice.clients().len()
    ))
}

/// What a fresh client's INIT says: agent_connected.
fn init_agent_connected(vm: &Vm) -> u32 {
    let addr = vm.spice().expect("spice server").local_addr();
    let mut main =
        saffron_server::client::Channel::link(addr, 0, 1, PASSWORD, &[]).expect("main link");
    let (ty, body) = main.read().expect("INIT");
    assert_eq!(ty, 103, "MAIN_INIT first");
    u32::from_le_bytes(body[16..20].try_into().unwrap())
}

/// A whole agent message (VDAgentMessage header + data).
fn agent_message(type_: u32, data: &[u8]) -> Vec<u8> {
    let mut m = 1u32.to_le_bytes().to_vec();
    m.extend(type_.to_le_bytes());
    m.extend(0u64.to_le_bytes());
    m.extend((data.len() as u32).to_le_bytes());
    m.extend(data);
    m
}

/// A client of our own that sends `data` as file `name` to the guest agent (what
/// remote-viewer does on a drop): AGENT_START, FILE_XFER_START, then FILE_XFER_DATA pieces
/// within its agent tokens, until the agent reports success (waiting at most `wait` for each
/// answer). Returns how long it took.
fn send_file(vm: &Vm, name: &str, data: &[u8], wait: Duration) -> Result<Duration, String> {
    use saffron_server::client::Session;
    const ID: u32 = 7;
    let t0 = Instant::now();
    let addr = vm.spice().expect("spice server").local_addr();
    let mut session = Session::connect(addr, PASSWORD).map_err(|e| e.to_string())?;
    let main = &mut session.main;
    main.set_timeout(wait).map_err(|e| e.to_string())?;
    let mut tokens = 10u32;
    main.send(106, &u32::MAX.to_le_bytes())
        .map_err(|e| e.to_string())?;
    let mut start = ID.to_le_bytes().to_vec();
    start.extend(format!("[vdagent-file-xfer]\nname={name}\nsize={}\n\0", data.len()).bytes());
    let mut outgoing = vec![agent_message(10, &start)];
    for piece in data.chunks(2048 - 20 - 12) {
        let mut d = ID.to_le_bytes().to_vec();
        d.extend((piece.len() as u64).to_le_bytes());
        d.extend(piece);
        outgoing.push(agent_message(12, &d));
    }
    let mut outgoing = outgoing.into_iter();
    // Send FILE_XFER_START, then the data once the agent says it can take it.
    let first = outgoing.next().expect("the start message");
    main.send(107, &first).map_err(|e| e.to_string())?;
    tokens -= 1;
    let mut can_send = false;
    let mut partial: Vec<u8> = Vec::new();
    loop {
        // Pings keep the channel busy, so the bounds are on the whole transfer: `wait` for
        // the agent's first answer, four times that for all of it.
        let bound = if can_send { wait * 4 } else { wait };
        if t0.elapsed() > bound {
            return Err(format!(
                "no answer from the agent within {bound:?} (can send: {can_send})"
            ));
        }
        while can_send && tokens > 0 {
            let Some(m) = outgoing.next() else { break };
            main.send(107, &m).map_err(|e| e.to_string())?;
            tokens -= 1;
        }
        let (ty, body) = main
            .read()
            .map_err(|e| format!("{e} after {:?}", t0.elapsed()))?;
        match ty {
            110 => tokens += u32::from_le_bytes(body[..4].try_into().unwrap()),
            109 => {
                partial.extend(&body);
                if partial.len() < 20 {
                    continue;
                }
                let size = u32::from_le_bytes(partial[16..20].try_into().unwrap()) as usize;
                if partial.len() < 20 + size {
                    continue;
                }
                let msg: Vec<u8> = partial.drain(..20 + size).collect();
                let ty = u32::from_le_bytes(msg[4..8].try_into().unwrap());
                if ty == 11 {
                    let id = u32::from_le_bytes(msg[20..24].try_into().unwrap());
                    let result = u32::from_le_bytes(msg[24..28].try_into().unwrap());
                    match (id, result) {
                        (ID, 0) => can_send = true,
                        (ID, 3) => return Ok(t0.elapsed()),
                        (ID, other) => return Err(format!("file transfer status {other}")),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

fn options(mode: &str, types: &str, sizes: &str, dir: &Path) -> GuestOptions {
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let mut opts = GuestOptions::new("agent");
    opts.variant = GuestVariant::Xorg;
    opts.args = vec![mode.into(), types.into(), sizes.into()];
    opts.spice = SpiceOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        password_file: Some(password_file),
        disable_copy_paste: mode == "nocopy",
        disable_agent_file_xfer: mode == "nocopy",
        ..SpiceOptions::default()
    };
    opts.timeout = Duration::from_secs(900);
    opts
}

fn clip<'a>(recs: &'a [Record], dir: &str, n: usize) -> &'a Record {
    with_tag(recs, "CLIP")
        .into_iter()
        .find(|r| r.get("dir") == dir && r.get("n") == n.to_string())
        .unwrap_or_else(|| panic!("no CLIP dir={dir} n={n}"))
}

#[test]
fn clipboard_crosses_both_ways_through_spice_vdagent() {
    let _g = serial_guard();
    let dir = std::env::temp_dir().join(format!("saffron-agent-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (display, _xvfb, _wm) = start_x();
    let rounds = host_rounds();
    let types: Vec<&str> = rounds.iter().map(|r| r.0).collect();
    let sizes = [1024usize, 1 << 20];
    let size_arg: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
    let opts = options("copy", &types.join("+"), &size_arg.join("+"), &dir);

    let mut viewer: Option<Reaper> = None;
    let mut no_agent_init = None;
    let mut agent_up = None;
    let mut comebacks = None;
    let mut before_restart = 0;
    let xfer_data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 253) as u8).collect();
    let mut xfer = None;
    // Per guest-to-host round: what the host's clipboard held, and how long it took.
    let mut g2h: Vec<(Option<Vec<u8>>, Duration)> = Vec::new();
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |sync, vm| {
            let label = sync.get("label");
            if label == "no-agent" {
                no_agent_init = Some(init_agent_connected(vm));
            } else if label == "agent-up" {
                viewer = Some(start_viewer(vm, &display, &dir));
                agent_up = Some(wait_agent_talks(vm, 0));
            } else if label == "agent-restart" {
                before_restart = vm.spice().expect("spice").agent_stats().pieces_to_client;
            } else if label == "agent-restarted" {
                let spice = vm.spice().expect("spice server");
                // The new spice-vdagentd announces itself: remote-viewer hears from it.
                let restarted = wait_agent_talks(vm, before_restart);
                // Then our side drops the link: QEMU reconnects within a second.
                let talking = spice.agent_stats().pieces_to_client;
                spice.reset_agent_link();
                let reconnected = wait_agent_talks(vm, talking);
                comebacks = Some((restarted, reconnected, spice.agent_stats().links));
            } else if label == "xfer" {
                xfer = Some(send_file(
                    vm,
                    "saffron-xfer.bin",
                    &xfer_data,
                    Duration::from_secs(30),
                ));
            } else if let Some(n) = label.strip_prefix("h2g-") {
                let i: usize = n.parse().expect("round number");
                let (_, target, data) = &rounds[i - 1];
                host_set_clipboard(&display, target, data);
            } else if let Some(n) = label.strip_prefix("g2h-") {
                let i: usize = n.parse().expect("round number");
                let want = guest_text(sizes[i - 1]);
                let t0 = Instant::now();
                let mut got = None;
                while t0.elapsed() < Duration::from_secs(120) {
                    got = host_get_clipboard(&display);
                    if got.as_ref() == Some(&want) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                g2h.push((got, t0.elapsed()));
            }
        },
    );
    drop(viewer);
    let serial = &run.serial;
    println!("agent: comebacks {comebacks:?}");
    run.assert_workload_ok("agent");
    let recs = run.records();
    assert_eq!(no_agent_init, Some(0), "INIT before the agents started");
    let up = agent_up
        .expect("agent-up sync")
        .unwrap_or_else(|e| panic!("{e}; serial:\n{serial}"));
    println!("agent: talking to remote-viewer {up:?} after it started");
    let (restarted, reconnected, links) = comebacks.expect("agent-restarted sync");
    let restarted =
        restarted.unwrap_or_else(|e| panic!("after the agents restarted: {e}; serial:\n{serial}"));
    let reconnected =
        reconnected.unwrap_or_else(|e| panic!("after the link was reset: {e}; serial:\n{serial}"));
    assert_eq!(links, 2, "QEMU's chardev made a second stream");
    println!(
        "agent: back {restarted:?} after the guest's agents restarted, {reconnected:?} after \
         the link was reset"
    );

    for (i, (ty, _, data)) in rounds.iter().enumerate() {
        let r = clip(&recs, "h2g", i + 1);
        assert_eq!(r.get("status"), "ok", "round {} ({ty})", i + 1);
        assert_eq!(
            r.num("bytes"),
            data.len() as u64,
            "h2g round {} ({ty})",
            i + 1
        );
        assert_eq!(
            r.get("sha256"),
            sha256_hex(data),
            "h2g round {} ({ty}): the guest read other bytes",
            i + 1
        );
        println!(
            "agent: host -> guest {ty} {} bytes in {} ms",
            data.len(),
            r.get("ms")
        );
    }
    assert_eq!(g2h.len(), sizes.len(), "every guest-to-host round ran");
    for (i, ((got, took), size)) in g2h.iter().zip(sizes).enumerate() {
        let want = guest_text(size);
        let r = clip(&recs, "g2h", i + 1);
        assert_eq!(
            r.get("sha256"),
            sha256_hex(&want),
            "the guest set what we expect"
        );
        let got = got.as_ref().unwrap_or_else(|| {
            panic!(
                "g2h round {}: the host clipboard never held the guest's text; see {}",
                i + 1,
                dir.display()
            )
        });
        assert_eq!(got.len(), size, "g2h round {}", i + 1);
        assert!(*got == want, "g2h round {}: other bytes", i + 1);
        println!("agent: guest -> host {size} bytes in {took:?}");
    }
    let took = xfer
        .expect("xfer sync")
        .unwrap_or_else(|e| panic!("file transfer: {e}; serial:\n{serial}"));
    let files = with_tag(&recs, "XFER");
    assert_eq!(files.len(), 1, "one file saved; serial:\n{serial}");
    assert_eq!(files[0].get("name"), "saffron-xfer.bin");
    assert_eq!(
        files[0].get("sha256"),
        sha256_hex(&xfer_data),
        "the file arrived whole"
    );
    println!(
        "agent: file transfer of {} bytes in {took:?}",
        xfer_data.len()
    );
    let stats = run.vm.spice().expect("spice").agent_stats();
    println!("agent: {stats:?}");
    assert_eq!(stats.resets, 0, "no agent link reset");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn copy_paste_off_lets_nothing_cross() {
    let _g = serial_guard();
    let dir = std::env::temp_dir().join(format!("saffron-agent-off-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (display, _xvfb, _wm) = start_x();
    let host_text = b"Saffron: this must not reach the guest\n".to_vec();
    let opts = options("nocopy", "UTF8_STRING", "1024", &dir);
    let mut viewer: Option<Reaper> = None;
    let mut agent_up = None;
    let mut leaked = None;
    let mut pictures = None;
    let mut xfer = None;
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |sync, vm| match sync.get("label") {
            "agent-up" => {
                viewer = Some(start_viewer(vm, &display, &dir));
                agent_up = Some(wait_agent_talks(vm, 0));
            }
            "h2g-1" => host_set_clipboard(&display, "UTF8_STRING", &host_text),
            "xfer" => {
                // Dropped by the server: the agent never answers.
                xfer = Some(send_file(
                    vm,
                    "blocked.bin",
                    &[1; 5000],
                    Duration::from_secs(5),
                ));
            }
            "g2h-1" => {
                // 6 s of the host clipboard never holding the guest's text (a crossing takes
                // well under a second in the copy test; the server drops these messages, it
                // does not delay them).
                let want = guest_text(1024);
                let t0 = Instant::now();
                leaked = Some(false);
                while t0.elapsed() < Duration::from_secs(6) {
                    if host_get_clipboard(&display).as_ref() == Some(&want) {
                        leaked = Some(true);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
            "done" => {
                // The display goes on: a client's picture is our screendump.
                drop(viewer.take());
                let port = vm.spice().expect("spice").local_addr().port();
                let shot = spicy_screenshot(port, PASSWORD, &dir.join("shot.ppm"))
                    .expect("spicy-screenshot");
                let dump = vm.server().worker().screendump().expect("screendump");
                pictures = Some((shot, dump));
            }
            _ => {}
        },
    );
    let serial = &run.serial;
    run.assert_workload_ok("agent");
    agent_up
        .expect("agent-up sync")
        .unwrap_or_else(|e| panic!("{e}; serial:\n{serial}"));
    let recs = run.records();
    assert_eq!(
        clip(&recs, "h2g", 1).get("status"),
        "none",
        "the host's clipboard reached the guest"
    );
    assert_eq!(
        leaked,
        Some(false),
        "the guest's clipboard reached the host"
    );
    assert!(
        xfer.expect("xfer sync").is_err(),
        "a file transfer went through with --spice-disable-agent-file-xfer"
    );
    assert!(
        with_tag(&recs, "XFER").is_empty(),
        "no file reached the guest"
    );
    let ((sw, sh, shot), (dw, dh, dump)) = pictures.expect("pictures at the end");
    assert_eq!((sw, sh), (dw, dh));
    assert!(shot == dump, "the client's picture is the screendump");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The guest's resolution follows the client's window, then the client's pointer goes through
/// the agent, in one X session (each X guest boot costs CI most of a minute).
///
/// Resize: remote-viewer full screen on an 800x600 X screen sends that size as its monitors
/// config, the server passes it to the agent (without the physical sizes spice-vdagentd 0.22
/// refuses), spice-vdagent sets X's mode with xrandr, and the qxl driver gives the device a
/// primary surface of that size.
///
/// Mouse, as spice-server's agent mouse: with spice-vdagent connected, remote-viewer's pointer
/// positions go to the agent as VD_AGENT_MOUSE_STATE (not to the VMM's virtio tablet), and
/// spice-vdagentd's own uinput tablet in the guest reports exactly where the host put the
/// pointer in remote-viewer's window, which is 1:1 with the guest's screen once it took the
/// window's size.
#[test]
fn the_client_window_size_and_mouse_go_through_the_agent() {
    const WINDOW: (u32, u32) = (800, 600);
    const POINT: (u32, u32) = (300, 200);
    let _g = serial_guard();
    let dir = std::env::temp_dir().join(format!("saffron-agent-resize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (display, _xvfb, _wm) = start_x_sized(WINDOW);
    let opts = options("resize", "-", "-", &dir);
    let mut viewer: Option<Reaper> = None;
    let mut resized = None;
    let mut mouse_states = 0;
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |sync, vm| match sync.get("label") {
            "agent-up" => viewer = Some(start_viewer(vm, &display, &dir)),
            "resized" => {
                let worker = vm.server().worker();
                let t0 = Instant::now();
                let mut last = None;
                while t0.elapsed() < Duration::from_secs(50) {
                    last = worker.primary_size();
                    if last == Some(WINDOW) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                resized = Some((last, t0.elapsed()));
            }
            "ready" => {
                let xdo = |args: &[&str]| {
                    let ok = Command::new("xdotool")
                        .args(args)
                        .env("DISPLAY", &display)
                        .status()
                        .expect("cannot run xdotool (apt-get install xdotool)")
                        .success();
                    assert!(ok, "xdotool {args:?}");
                };
                // A first move from elsewhere, then the point (the client sends on change).
                xdo(&["mousemove", "10", "10"]);
                std::thread::sleep(Duration::from_millis(500));
                xdo(&["mousemove", &POINT.0.to_string(), &POINT.1.to_string()]);
                std::thread::sleep(Duration::from_millis(1500));
                mouse_states = vm.spice().expect("spice").agent_stats().mouse_states;
                xdo(&["key", "F12"]);
            }
            _ => {}
        },
    );
    drop(viewer);
    let serial = &run.serial;
    run.assert_workload_ok("agent");
    let (size, took) = resized.expect("resized sync");
    assert_eq!(
        size,
        Some(WINDOW),
        "the primary surface after {took:?}; serial:\n{serial}"
    );
    let recs = run.records();
    let xwd = with_tag(&recs, "XWD");
    assert_eq!(xwd.len(), 1, "serial:\n{serial}");
    assert_eq!(
        (xwd[0].num("width"), xwd[0].num("height")),
        (u64::from(WINDOW.0), u64::from(WINDOW.1)),
        "X's root window"
    );
    println!("agent: the guest took the window's {WINDOW:?} within {took:?} of the sync");
    let log = with_tag(&recs, "AGENTLOG");
    assert_eq!(log.len(), 1, "serial:\n{serial}");
    println!("agent: {:?}", log[0].fields);
    assert_eq!(
        log[0].get("invalid"),
        "0",
        "spice-vdagentd refused a monitors config; serial:\n{serial}"
    );
    let tablet = with_tag(&recs, "INPUTDEV")
        .into_iter()
        .find(|r| r.get("name").contains("vdagent"))
        .unwrap_or_else(|| panic!("no spice-vdagentd tablet; serial:\n{serial}"));
    let node = tablet.get("node").to_string();
    // The last absolute X and Y the agent's tablet reported (EV_ABS = 3, ABS_X 0, ABS_Y 1).
    let last_abs = |code: &str| {
        with_tag(&recs, "EV")
            .into_iter()
            .rfind(|r| r.get("node") == node && r.get("type") == "3" && r.get("code") == code)
            .map(|r| r.num("value"))
    };
    println!(
        "agent mouse: {mouse_states} mouse states; the agent's tablet ends at ({:?}, {:?})",
        last_abs("0"),
        last_abs("1")
    );
    assert!(mouse_states > 0, "positions went to the agent");
    assert_eq!(
        (last_abs("0"), last_abs("1")),
        (Some(u64::from(POINT.0)), Some(u64::from(POINT.1))),
        "serial:\n{serial}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
