//! Spice in a browser: Debian's Chromium (headless, driven through chromedriver) opens
//! `http://127.0.0.1:PORT/` on saffron's own Spice port, gets Debian's spice-html5 from it and
//! connects back over WebSocket to the real guest; what the page's display canvas holds
//! (read with getImageData, hashed in the page) is exactly the guest's own framebuffer:
//! - fbdev pictures (noise, sent whole, then a gradient over the live connection), the text
//!   console after fbcon scrolled it (COPY_BITS and new rows), and a KMS frame after full and
//!   partial updates of two repeated pictures (the html5 client's pixmap cache);
//! - a line typed into the page is what the guest reads from its tty;
//! - a wrong password gets spice-html5's own reaction (its "Permission denied." and its
//!   password prompt; answered with the right one, the page connects);
//! - the page over `https://` and `wss://` on the TLS port, its CA trusted by Chromium;
//! - closing the tab and opening a new one shows the screen again;
//! - a spice-gtk-like client connected at the same time still gets GLZ and LZ4, while the
//!   page's display channel only ever got what spice-html5 draws;
//! - the guest's hardware cursor shape (a second, short guest) becomes the page's CSS cursor,
//!   pixel for pixel, with its hot spot, and its hiding hides it;
//! - a click on the page's canvas, once html5 is in the client mouse mode, is the guest's
//!   virtio tablet at exactly that pixel with a left button press and release;
//! - a video in the guest reaches the page as an MJPEG stream painted into its canvas, and the
//!   page ends on exactly the guest's still picture.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use saffron_server::client::{Screen, Session};
use saffron_server::wire::msg;
use saffron_tests::webdriver::Chrome;
use saffron_tests::{
    GuestOptions, boot_guest_with_sync, records, serial_guard, sha256_hex, with_tag,
};
use saffron_vmm::run::Vm;
use saffron_vmm::spice::{SpiceOptions, default_web_root};
use serde_json::{Value, json};

const PASSWORD: &str = "saffron-browser-ticket";
/// The guest's fbdev pictures: the first reaches the page whole, the second as changes.
const PATTERNS: [&str; 2] = ["random:11", "hgrad"];
/// Typed into the page: lower and upper case, digits, shifted symbols, spaces.
const TYPED: &str = "Saffron types: echo $((6*7)) > ok_A-Z/[1]!";
/// Between two keys typed into the page.
const KEY_DELAY: Duration = Duration::from_millis(60);
/// How long the page may take to show a picture (the host runs a TCG guest and a browser).
const SHOW_WITHIN: Duration = Duration::from_secs(45);

/// The display canvas as (width, height, sha256 of packed R,G,B), hashed in the page.
const CANVAS_HASH: &str = r#"
const done = arguments[arguments.length - 1];
const c = document.getElementById('spice_surface_0');
if (!c) { done(null); return; }
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
const rgb = new Uint8Array(c.width * c.height * 3);
for (let i = 0, j = 0; i < d.length; i += 4, j += 3) {
    rgb[j] = d[i]; rgb[j + 1] = d[i + 1]; rgb[j + 2] = d[i + 2];
}
crypto.subtle.digest('SHA-256', rgb).then(h => done([c.width, c.height,
    Array.from(new Uint8Array(h)).map(b => b.toString(16).padStart(2, '0')).join('')]));
"#;

/// A test CA and a certificate it issued for 127.0.0.1, in QEMU's x509-dir layout.
fn make_pki(dir: &Path) -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let x509 = dir.join("x509");
    std::fs::create_dir_all(&x509).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(DnType::CommonName, "Saffron browser test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(x509.join("ca-cert.pem"), ca_cert.pem()).unwrap();
    std::fs::write(x509.join("server-cert.pem"), cert.pem()).unwrap();
    std::fs::write(x509.join("server-key.pem"), key.serialize_pem()).unwrap();
    x509
}

/// The page's canvas as (width, height, hash), or None before it exists.
fn canvas(chrome: &Chrome) -> Option<(u32, u32, String)> {
    let v = chrome.execute_async(CANVAS_HASH, json!([])).ok()?;
    let a = v.as_array()?;
    Some((
        a.first()?.as_u64()? as u32,
        a.get(1)?.as_u64()? as u32,
        a.get(2)?.as_str()?.to_string(),
    ))
}

/// Waits until the current tab's canvas is exactly what the worker rendered (the guest holds
/// still at a sync); returns it. Panics with what the page said when it never is.
fn shows_the_screen(chrome: &Chrome, vm: &Vm, what: &str) -> (u32, u32, String) {
    let (w, h, dump) = vm.server().worker().screendump().expect("screendump");
    let want = (w, h, sha256_hex(&dump));
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < SHOW_WITHIN {
        last = canvas(chrome);
        if last.as_ref() == Some(&want) {
            println!("the page showed {what} after {:?}", started.elapsed());
            return want;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let messages = chrome
        .execute(
            "const m = document.getElementById('message-div'); return m ? m.textContent : '';",
            json!([]),
        )
        .unwrap_or(Value::Null);
    panic!("{what}: the page never showed the screen {want:?}; canvas {last:?}; page: {messages}");
}

/// Opens a tab at `url` (the redirect to spice_auto.html included).
fn open(chrome: &Chrome, url: &str) {
    chrome.new_tab().expect("new tab");
    chrome.navigate(url).expect("navigate");
}

/// What the server's display channels sent each client, split into spice-html5's and the
/// others' (summed).
fn image_formats(vm: &Vm) -> (Vec<saffron_server::image::EncodeStats>, usize) {
    let clients = vm.spice().expect("spice server").clients();
    let html5: Vec<_> = clients
        .iter()
        .flat_map(|c| &c.channels)
        .filter(|ch| ch.channel_type == 2 && ch.html5)
        .filter_map(|ch| ch.images)
        .collect();
    (html5, clients.len())
}

#[test]
fn spice_html5_served_by_saffron_shows_the_guest_and_types_into_it() {
    let _g = serial_guard();
    let web_root = default_web_root()
        .expect("spice-html5 is not installed (apt-get install spice-html5; ci/test does)");
    let dir = std::env::temp_dir().join(format!("saffron-browser-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let x509 = make_pki(&dir);
    let chrome = Chrome::start(&dir.join("home"), Some(&x509.join("ca-cert.pem")))
        .unwrap_or_else(|e| panic!("cannot start Chromium: {e}"));
    let mut opts = GuestOptions::new("qxl-rv");
    opts.args = PATTERNS.map(String::from).to_vec();
    opts.spice = SpiceOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        password_file: Some(password_file),
        tls_port: Some(0),
        x509_dir: Some(x509),
        web_root: Some(web_root),
        ..SpiceOptions::default()
    };
    let mut seen: Vec<(u32, u32, String)> = Vec::new();
    let mut page: Option<String> = None;
    let mut refused_message = String::new();
    let mut other_clients: Vec<Vec<u8>> = Vec::new();
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |sync, vm| {
            let spice = vm.spice().expect("spice server");
            let port = spice.local_addr().port();
            let label = sync.get("label");
            if label == "typing" {
                chrome.switch_to(page.as_ref().unwrap()).unwrap();
                let canvas = chrome.find("#spice_surface_0").expect("the display canvas");
                // One key at a time, as a person (and the remote-viewer test's xdotool, 60 ms
                // apart) types: the guest's PS/2 keyboard, fed through QMP while a TCG guest
                // drains it, drops keys that come faster than it reads them.
                for c in TYPED.chars().chain(['\n']) {
                    chrome
                        .send_keys(&canvas, &c.to_string())
                        .expect("typing into the page");
                    std::thread::sleep(KEY_DELAY);
                }
                std::thread::sleep(Duration::from_millis(500));
                return;
            }
            if page.is_none() {
                open(
                    &chrome,
                    &format!("http://127.0.0.1:{port}/?password={PASSWORD}"),
                );
                page = Some(chrome.window().unwrap());
            }
            chrome.switch_to(page.as_ref().unwrap()).unwrap();
            seen.push(shows_the_screen(&chrome, vm, label));
            match label {
                l if l == PATTERNS[0] => {
                    // A wrong password: spice-html5 says so and prompts for another; given
                    // the right one, it connects.
                    open(&chrome, &format!("http://127.0.0.1:{port}/?password=wrong"));
                    let started = Instant::now();
                    let prompt = loop {
                        if let Some(text) = chrome.alert_text() {
                            break text;
                        }
                        assert!(started.elapsed() < SHOW_WITHIN, "no password prompt");
                        std::thread::sleep(Duration::from_millis(100));
                    };
                    assert_eq!(prompt, "Password", "spice-html5's own prompt");
                    chrome
                        .answer_prompt(PASSWORD)
                        .expect("answering the prompt");
                    refused_message = chrome
                        .execute(
                            "return document.getElementById('message-div').textContent;",
                            json!([]),
                        )
                        .unwrap()
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    shows_the_screen(&chrome, vm, "the page after the prompt");
                    chrome.close_tab().unwrap();
                    // Over TLS: https:// for the page, wss:// for Spice.
                    let tls_port = spice.tls_local_addr().expect("TLS port").port();
                    open(
                        &chrome,
                        &format!("https://127.0.0.1:{tls_port}/?password={PASSWORD}"),
                    );
                    shows_the_screen(&chrome, vm, "the page over TLS");
                    let tls_channels = spice
                        .clients()
                        .iter()
                        .flat_map(|c| c.channels.clone())
                        .filter(|ch| ch.websocket && ch.tls && ch.html5)
                        .count();
                    assert!(
                        tls_channels >= 3,
                        "main, display, inputs, cursor over wss://"
                    );
                    chrome.close_tab().unwrap();
                }
                "scroll" => {
                    // spice-gtk-like clients at the same time: GLZ under auto_glz, LZ4 when
                    // asked, while the page keeps its own formats.
                    let addr = spice.local_addr();
                    for mode in ["auto_glz", "lz4"] {
                        spice.set_image_compression(mode.parse().unwrap());
                        let session = Session::connect(addr, PASSWORD).expect("main channel");
                        let mut display = session.display().expect("display channel");
                        let mut screen = Screen::new();
                        while screen.step(&mut display).expect("display") != msg::DISPLAY_MARK {}
                        other_clients.push(screen.images.keys().copied().collect());
                    }
                    spice.set_image_compression(Default::default());
                }
                "kms" => {
                    // Close the tab and open a new one: the page shows the screen again.
                    chrome.close_tab().unwrap();
                    let started = Instant::now();
                    while image_formats(vm).1 > 0 {
                        assert!(
                            started.elapsed() < Duration::from_secs(10),
                            "the closed tab's session never ended"
                        );
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    open(
                        &chrome,
                        &format!("http://127.0.0.1:{port}/?password={PASSWORD}"),
                    );
                    page = Some(chrome.window().unwrap());
                    shows_the_screen(&chrome, vm, "the page reopened");
                    let (html5, sessions) = image_formats(vm);
                    assert_eq!(sessions, 1);
                    assert_eq!(html5.len(), 1, "the reopened page's display channel");
                }
                _ => {}
            }
            // Every page's display channel so far got only what spice-html5 draws.
            for i in image_formats(vm).0 {
                assert_eq!((i.glz, i.zlib_glz, i.lz4), (0, 0, 0), "{label}: {i:?}");
                assert!(i.raw + i.quic + i.lz + i.from_cache > 0, "{label}: {i:?}");
            }
        },
    );
    drop(chrome);
    run.assert_workload_ok("qxl-rv");
    let recs = run.records();
    let mut fbs = with_tag(&recs, "FB");
    fbs.extend(
        with_tag(&recs, "KMS")
            .into_iter()
            .filter(|r| r.fields.contains_key("sha256")),
    );
    let pictures = [PATTERNS[0], PATTERNS[1], "scrolled console", "KMS tiles"];
    assert_eq!(fbs.len(), pictures.len(), "serial:\n{}", run.serial);
    assert_eq!(seen.len(), pictures.len());
    for ((fb, (w, h, digest)), what) in fbs.iter().zip(&seen).zip(pictures) {
        assert_eq!(
            (u64::from(*w), u64::from(*h)),
            (fb.num("width"), fb.num("height")),
            "{what}"
        );
        assert_eq!(
            digest,
            fb.get("sha256"),
            "{what}: the page's canvas differs from the guest's framebuffer"
        );
    }
    assert!(
        refused_message.contains("Permission denied."),
        "spice-html5's message for a wrong password: {refused_message:?}"
    );
    assert_eq!(other_clients.len(), 2);
    assert!(other_clients[0].contains(&102), "GLZ: {other_clients:?}");
    assert!(other_clients[1].contains(&109), "LZ4: {other_clients:?}");
    let typed = with_tag(&recs, "TYPED");
    assert_eq!(typed.len(), 1, "serial:\n{}", run.serial);
    let hex: String = TYPED.bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        typed[0].get("hex"),
        hex,
        "the guest read something else than what was typed into the page"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The page's CSS cursor: (the PNG's RGBA pixels, width, height, hot x, hot y), or None while
/// it is not an image.
fn css_cursor(chrome: &Chrome) -> Option<(Vec<u8>, u32, u32, u32, u32)> {
    let css = chrome
        .execute(
            "return document.getElementById('spice-screen').style.cursor;",
            json!([]),
        )
        .ok()?;
    let css = css.as_str()?;
    let start = css.find("data:image/png,")? + "data:image/png,".len();
    let rest = &css[start..];
    let end = rest.find(['"', ')'])?;
    let mut png_bytes = Vec::new();
    let enc = &rest.as_bytes()[..end];
    let mut i = 0;
    while i < enc.len() {
        if enc[i] == b'%' {
            let hex = std::str::from_utf8(enc.get(i + 1..i + 3)?).ok()?;
            png_bytes.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            png_bytes.push(enc[i]);
            i += 1;
        }
    }
    let mut hot = rest[end..]
        .trim_start_matches(['"', ')'])
        .split_whitespace()
        .take(2)
        .map(|n| n.trim_end_matches(',').parse::<u32>());
    let (hx, hy) = (hot.next()?.ok()?, hot.next()?.ok()?);
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().ok()?;
    let mut buf = vec![0; reader.output_buffer_size()?];
    let info = reader.next_frame(&mut buf).ok()?;
    buf.truncate(info.buffer_size());
    Some((buf, info.width, info.height, hx, hy))
}

/// A scratch folder named after `tag`, Chromium with its home in it, and options for the
/// `workload` guest whose Spice server (with the test's password) serves spice-html5.
fn page_rig(tag: &str, workload: &str) -> (PathBuf, Chrome, GuestOptions) {
    let web_root = default_web_root()
        .expect("spice-html5 is not installed (apt-get install spice-html5; ci/test does)");
    let dir = std::env::temp_dir().join(format!("saffron-browser-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let chrome = Chrome::start(&dir.join("home"), None)
        .unwrap_or_else(|e| panic!("cannot start Chromium: {e}"));
    let mut opts = GuestOptions::new(workload);
    opts.spice = SpiceOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        password_file: Some(password_file),
        web_root: Some(web_root),
        ..SpiceOptions::default()
    };
    (dir, chrome, opts)
}

#[test]
fn the_guest_cursor_shape_shows_in_the_page() {
    let _g = serial_guard();
    let (dir, chrome, opts) = page_rig("cursor", "qxl-cursor");
    let mut shape = None;
    let mut hidden = String::new();
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |sync, vm| match sync.get("id") {
            "cursor-ready" => {
                let port = vm.spice().expect("spice server").local_addr().port();
                open(
                    &chrome,
                    &format!("http://127.0.0.1:{port}/?password={PASSWORD}"),
                );
                shows_the_screen(&chrome, vm, "the KMS frame");
            }
            "cursor-set" => {
                let started = Instant::now();
                while shape.is_none() {
                    assert!(started.elapsed() < SHOW_WITHIN, "the cursor never showed");
                    std::thread::sleep(Duration::from_millis(100));
                    shape = css_cursor(&chrome);
                }
            }
            "cursor-hide" => {
                let started = Instant::now();
                while hidden != "none" && started.elapsed() < SHOW_WITHIN {
                    std::thread::sleep(Duration::from_millis(100));
                    hidden = chrome
                        .execute(
                            "return document.getElementById('spice-screen').style.cursor;",
                            json!([]),
                        )
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                }
            }
            _ => {}
        },
    );
    drop(chrome);
    run.assert_workload_ok("qxl-cursor");
    let recs = run.records();
    let set = with_tag(&recs, "CURSOR")
        .into_iter()
        .find(|r| r.get("op") == "set")
        .unwrap_or_else(|| panic!("no cursor set; serial:\n{}", run.serial));
    let (rgba, w, h, hx, hy) = shape.expect("the page's cursor");
    assert_eq!(
        (u64::from(w), u64::from(h), u64::from(hx), u64::from(hy)),
        (
            set.num("width"),
            set.num("height"),
            set.num("hot_x"),
            set.num("hot_y")
        ),
        "size and hot spot"
    );
    // The guest hashed its B, G, R, A bytes.
    let bgra: Vec<u8> = rgba
        .chunks_exact(4)
        .flat_map(|p| [p[2], p[1], p[0], p[3]])
        .collect();
    assert_eq!(
        sha256_hex(&bgra),
        set.get("sha256"),
        "the page's cursor differs from the guest's"
    );
    assert_eq!(hidden, "none", "the guest hid its cursor");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The stream counters of the page's display channel (the only spice-html5 one).
fn html5_streams(vm: &Vm) -> saffron_server::StreamStats {
    vm.spice()
        .expect("spice server")
        .clients()
        .iter()
        .flat_map(|c| &c.channels)
        .filter(|ch| ch.channel_type == 2 && ch.html5)
        .find_map(|ch| ch.streams)
        .unwrap_or_default()
}

/// A video played in the guest (`saffron-guest kms --motion video`, 320x240 at 25 frames/s)
/// reaches the page as an MJPEG stream (Chromium plays WebM VP8 and html5 announces VP8, but
/// html5's VP8 player stays paused on an unclicked page: html5 gets MJPEG by default), which
/// spice-html5 decodes frame by frame through Image elements; when the video stops, the stream ends, its last frame is sent again
/// losslessly, and the page's canvas ends on exactly the guest's picture: no JPEG still
/// decoding when the stream ended paints over the exact one.
#[test]
fn a_video_streams_to_the_page_and_the_page_ends_exact() {
    let _g = serial_guard();
    let (dir, chrome, mut opts) = page_rig("video", "qxl-video");
    opts.args = vec!["100".into()];
    let mut playing = None;
    let mut still = None;
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |sync, vm| {
            let port = vm.spice().expect("spice server").local_addr().port();
            match sync.get("label") {
                "ready" => {
                    open(
                        &chrome,
                        &format!("http://127.0.0.1:{port}/?password={PASSWORD}"),
                    );
                    shows_the_screen(&chrome, vm, "the console before the video");
                }
                "playing" => playing = Some(html5_streams(vm)),
                "kms" => {
                    let picture =
                        shows_the_screen(&chrome, vm, "the still picture after the video");
                    still = Some((picture, html5_streams(vm)));
                }
                other => panic!("unexpected sync {other}"),
            }
        },
    );
    drop(chrome);
    run.assert_workload_ok("qxl-video");
    let playing = playing.expect("the page's counters while the video played");
    let ((w, h, digest), end) = still.expect("the page's picture after the video");
    println!("browser video: while playing {playing:?}; at the end {end:?}");
    assert_eq!(end.vp8_frames, 0, "MJPEG to the page: {end:?}");
    assert!(
        playing.created >= 1,
        "no stream to the page by frame 60: {playing:?}"
    );
    assert!(
        end.frames >= 20,
        "few frames went to the page as a stream: {end:?}"
    );
    assert!(
        end.lossless_resends >= 1,
        "the stream's last frame was not re-sent losslessly: {end:?}"
    );
    let recs = run.records();
    let kms = with_tag(&recs, "KMS")
        .into_iter()
        .find(|r| r.fields.contains_key("sha256"))
        .expect("the guest's KMS record");
    assert_eq!(
        (u64::from(w), u64::from(h)),
        (kms.num("width"), kms.num("height"))
    );
    assert_eq!(
        digest,
        kms.get("sha256"),
        "the page's canvas differs from the guest's KMS buffer after the video"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Where the page is ready for a click in the client mouse mode: spice-html5's main
/// connection (the canvas's `sc`) switched to the client mode (2) and its inputs channel is up;
/// until then html5 sends positions as relative motion, or nothing at all. Returns where the
/// canvas's pixel (0, 0) is in the viewport (html5 sends the mouse event's offsetX and offsetY,
/// which start inside the canvas's border), and the viewport's size; or null.
const MOUSE_READY: &str = r#"
const c = document.getElementById('spice_surface_0');
if (!c || !c.sc || c.sc.mouse_mode !== 2 || !c.sc.inputs || c.sc.inputs.state !== 'ready') {
    return null;
}
const r = c.getBoundingClientRect();
return [r.left + c.clientLeft, r.top + c.clientTop, window.innerWidth, window.innerHeight];
"#;

/// One guest input event as the `input` workload printed it: (node, type, code, value).
fn guest_event(r: &saffron_tests::Record) -> Option<(String, u16, u16, i64)> {
    if r.tag != "EV" {
        return None;
    }
    Some((
        r.get("node").to_string(),
        r.get("type").parse().ok()?,
        r.get("code").parse().ok()?,
        r.get("value").parse().ok()?,
    ))
}

/// The page's own click on the display canvas: the browser asks for the client mouse mode,
/// and a click at pixel (X, Y) of the guest's screen becomes the guest's virtio tablet at
/// exactly that position (the axis range scaled as the VMM promises) with a left button press
/// and release; F12 typed into the page reaches the guest's keyboard and ends its reading.
#[test]
fn a_click_in_the_page_reaches_the_guest_tablet_at_that_pixel() {
    const EV_KEY: u16 = 1;
    const EV_ABS: u16 = 3;
    const BTN_LEFT: u16 = 0x110;
    const KEY_F12: u16 = 88;
    const AT: (u32, u32) = (200, 600);
    let _g = serial_guard();
    let (dir, chrome, mut opts) = page_rig("mouse", "input");
    let (tx, tap) = std::sync::mpsc::channel::<String>();
    opts.serial_tap = Some(tx);
    opts.timeout = Duration::from_secs(240);
    let mut chrome = Some(chrome);
    let mut tap = Some(tap);
    let mut clicker = None;
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |sync, vm| {
            assert_eq!(
                sync.get("label"),
                "ready",
                "one sync, with the devices open"
            );
            let chrome = chrome.take().expect("one sync");
            let tap = tap.take().expect("one sync");
            let port = vm.spice().expect("spice server").local_addr().port();
            open(
                &chrome,
                &format!("http://127.0.0.1:{port}/?password={PASSWORD}"),
            );
            let (w, h, _) = shows_the_screen(&chrome, vm, "the console");
            // The guest reads its devices once this returns: click from a thread, and
            // wait there for the guest to report the click before ending it with F12.
            clicker = Some(std::thread::spawn(move || {
                let started = Instant::now();
                let at = loop {
                    let v = chrome
                        .execute(MOUSE_READY, json!([]))
                        .unwrap_or(Value::Null);
                    if let Some(a) = v.as_array() {
                        let n = |i: usize| a.get(i).and_then(Value::as_f64).unwrap_or(-1.0);
                        break (n(0), n(1), n(2), n(3));
                    }
                    if started.elapsed() > SHOW_WITHIN {
                        return Err(format!("the page never got the client mouse mode: {v}"));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                };
                let (left, top, vw, vh) = at;
                let x = (left + f64::from(AT.0)).round() as i64;
                let y = (top + f64::from(AT.1)).round() as i64;
                if left.fract() != 0.0 || top.fract() != 0.0 || x >= vw as i64 || y >= vh as i64 {
                    return Err(format!(
                        "the canvas is at {at:?}: pixel {AT:?} not clickable"
                    ));
                }
                chrome.click_at(x, y)?;
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut released = false;
                while !released {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let Ok(line) = tap.recv_timeout(left) else {
                        return Err("the guest reported no button release within 30 s".into());
                    };
                    released = records(&line)
                        .iter()
                        .filter_map(guest_event)
                        .any(|(_, ty, code, v)| (ty, code, v) == (EV_KEY, BTN_LEFT, 0));
                }
                let canvas = chrome.find("#spice_surface_0").ok_or("no canvas")?;
                chrome.send_keys(&canvas, "\u{E03C}")?;
                Ok((w, h))
            }));
        },
    );
    let clicked = clicker
        .expect("the guest never got ready")
        .join()
        .expect("the clicking thread panicked");
    let (w, h) = clicked.unwrap_or_else(|e| panic!("{e}\nserial:\n{}", run.serial));
    run.assert_workload_ok("input");

    let recs = run.records();
    let node_of = |name: &str| {
        with_tag(&recs, "INPUTDEV")
            .into_iter()
            .find(|r| r.get("name") == name)
            .unwrap_or_else(|| panic!("no {name}; serial:\n{}", run.serial))
    };
    let tablet = node_of("QEMU_Virtio_Tablet");
    let keyboard = node_of("AT_Translated_Set_2_keyboard");
    // Pixel → axis value: pixel 0 is the axis minimum, the last pixel its maximum.
    let scale = |pixel: u32, size: u32, axis: &str| {
        let min = tablet
            .get(&format!("abs_{axis}_min"))
            .parse::<i64>()
            .unwrap();
        let max = tablet
            .get(&format!("abs_{axis}_max"))
            .parse::<i64>()
            .unwrap();
        min + i64::from(pixel) * (max - min) / i64::from(size - 1)
    };
    let want_tablet = vec![
        (EV_ABS, 0, scale(AT.0, w, "x")),
        (EV_ABS, 1, scale(AT.1, h, "y")),
        (EV_KEY, BTN_LEFT, 1),
        (EV_KEY, BTN_LEFT, 0),
    ];
    let events: Vec<_> = recs.iter().filter_map(guest_event).collect();
    let on = |node: &str| -> Vec<(u16, u16, i64)> {
        events
            .iter()
            .filter(|(n, ty, _, v)| {
                n == node && *ty != 0 && *ty != 4 && !(*ty == EV_KEY && *v == 2)
            })
            .map(|(_, ty, code, v)| (*ty, *code, *v))
            .collect()
    };
    assert_eq!(
        on(tablet.get("node")),
        want_tablet,
        "the tablet's events for a click at {AT:?} of {w}x{h}; serial:\n{}",
        run.serial
    );
    assert_eq!(
        on(keyboard.get("node")),
        [(EV_KEY, KEY_F12, 1), (EV_KEY, KEY_F12, 0)],
        "the keyboard's events; serial:\n{}",
        run.serial
    );
    println!("browser mouse: {AT:?} of {w}x{h} → {want_tablet:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
