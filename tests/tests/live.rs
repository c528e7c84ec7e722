//! Live display: Spice clients (the library client, decoding every format) stay connected on
//! the display channel while the real guest draws many KMS frames (full-frame and partial
//! DIRTYFB updates), one client per image compression, all at once; once the guest has drawn
//! its last frame, each client's copy of the screen is exactly that frame (sha256 of packed
//! R,G,B, as the guest hashes its dumb buffer), having received a stream of updates on the
//! way, not a single picture at the end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use saffron_server::client::{Screen, Session, read_msg};
use saffron_server::wire::msg;
use saffron_tests::{GuestOptions, boot_guest_with_sync, serial_guard, sha256_hex, with_tag};
use saffron_vmm::run::Vm;
use saffron_vmm::spice::SpiceOptions;

const PASSWORD: &str = "saffron-live-ticket";
/// Frames the guest draws (half of them full-frame redraws), as fast as it can.
const FRAMES: u32 = 240;
/// How long the display channel must be silent before the client's picture is compared with
/// the rendered one (comparing while updates stream in would only waste time).
const QUIET: Duration = Duration::from_millis(300);
/// Fewest DRAW_COPYs each client must get while the guest draws: that many separate updates
/// mean it followed along. (A raw full-screen update is four 1 MiB bands, a compressed one a
/// single DRAW_COPY; the guest's partial updates come one each.)
const MIN_DRAWS: u64 = 8;

/// The client's view, shared with its reader thread.
struct Live {
    screen: Screen,
    /// When the last display message arrived.
    last: Instant,
    /// DRAW_COPY messages so far.
    draws: u64,
    error: Option<String>,
}

impl Live {
    /// The client's picture as packed R,G,B (the byte order the guest hashes).
    fn rgb(&self) -> Vec<u8> {
        self.screen
            .pixels
            .chunks_exact(4)
            .flat_map(|p| [p[2], p[1], p[0]])
            .collect()
    }
}

/// The display client: its shared view, the thread that reads, and how to stop it.
struct Client {
    live: Arc<Mutex<Live>>,
    stop: Arc<AtomicBool>,
    stream: std::net::TcpStream,
    reader: JoinHandle<()>,
    _session: Session,
}

fn connect(addr: std::net::SocketAddr) -> Client {
    let session = Session::connect(addr, PASSWORD).expect("main channel");
    let mut display = session.display().expect("display channel");
    display
        .set_timeout(Duration::from_secs(600))
        .expect("read timeout");
    let stream = display.stream.try_clone().expect("stream clone");
    let live = Arc::new(Mutex::new(Live {
        screen: Screen::new(),
        last: Instant::now(),
        draws: 0,
        error: None,
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (live, stop) = (Arc::clone(&live), Arc::clone(&stop));
        std::thread::spawn(move || {
            loop {
                // Blocks outside the lock; the test stops the thread by shutting the socket.
                let m = read_msg(&mut display);
                let mut l = live.lock().unwrap();
                let (ty, body) = match m {
                    Ok(m) => m,
                    Err(e) => {
                        if !stop.load(Ordering::Acquire) {
                            l.error = Some(format!("display channel: {e}"));
                        }
                        return;
                    }
                };
                if let Err(e) = l.screen.handle(&mut display, ty, &body) {
                    l.error = Some(format!("display message {ty}: {e}"));
                    return;
                }
                if ty == msg::DISPLAY_DRAW_COPY {
                    l.draws += 1;
                }
                l.last = Instant::now();
            }
        })
    };
    Client {
        live,
        stop,
        stream,
        reader,
        _session: session,
    }
}

/// Waits until the client's picture is the one the worker has rendered (compared with a
/// screendump once the display channel has been silent for [`QUIET`]): the server has
/// delivered everything. How long that takes is not the point (the host may be busy); that it
/// happens is, so the bound is generous. Returns (width, height, sha256 of R,G,B, draws so far,
/// how long it took).
fn settled(client: &Client, vm: &Vm, what: &str) -> (u32, u32, String, u64, Duration) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "{what}: the client's picture never became the rendered one within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
        {
            let l = client.live.lock().unwrap();
            if let Some(e) = &l.error {
                panic!("{what}: {e}");
            }
            if l.draws == 0 || l.last.elapsed() < QUIET {
                continue;
            }
        }
        let (dw, dh, dump) = vm
            .server()
            .worker()
            .screendump()
            .unwrap_or_else(|e| panic!("{what}: screendump: {e}"));
        let l = client.live.lock().unwrap();
        let rgb = l.rgb();
        if (l.screen.width, l.screen.height) == (dw, dh) && rgb == dump {
            return (dw, dh, sha256_hex(&rgb), l.draws, start.elapsed());
        }
    }
}

#[test]
fn a_connected_client_follows_many_frames_and_ends_on_the_last() {
    let _g = serial_guard();
    let dir = std::env::temp_dir().join(format!("saffron-live-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let mut opts = GuestOptions::new("spice-live");
    opts.args = vec!["1024".into(), "768".into(), FRAMES.to_string()];
    opts.timeout = Duration::from_secs(240);
    opts.spice = SpiceOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        password_file: Some(password_file),
        ..SpiceOptions::default()
    };
    use saffron_server::Compression;
    // One client per image compression, each linked while the server used it.
    let mut clients: Vec<(&str, Client)> = Vec::new();
    let mut before = Vec::new();
    let mut last = Vec::new();
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |sync, vm| match sync.get("label") {
            "connect" => {
                let spice = vm.spice().expect("spice server");
                for mode in Compression::NAMES {
                    spice.set_image_compression(mode.parse().unwrap());
                    let c = connect(spice.local_addr());
                    // Its display channel has linked (and taken the mode) once SET_ACK came.
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while c.live.lock().unwrap().screen.window == 0 {
                        assert!(Instant::now() < deadline, "{mode}: no SET_ACK");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    clients.push((mode, c));
                }
                // Each client holds the console's picture before the guest starts drawing.
                for (mode, c) in &clients {
                    before.push(settled(c, vm, &format!("{mode}: before the frames")));
                }
            }
            "kms" => {
                for (mode, c) in &clients {
                    last.push(settled(c, vm, &format!("{mode}: after the last frame")));
                }
                // Each client got the format its mode names (the library client links as
                // spice-gtk does: LZ4 cap and a GLZ window).
                for (mode, c) in &clients {
                    let types: Vec<u8> = c
                        .live
                        .lock()
                        .unwrap()
                        .screen
                        .images
                        .keys()
                        .copied()
                        .collect();
                    let want: &[u8] = match *mode {
                        "off" => &[0],
                        "quic" => &[1],
                        "lz" => &[101],
                        "glz" => &[102],
                        "lz4" => &[109],
                        _ => &[],
                    };
                    assert!(
                        want.iter().all(|t| types.contains(t)),
                        "{mode}: the client decoded image types {types:?}"
                    );
                }
                let stats = vm.server().worker().stats().expect("worker stats");
                println!("live: published {:?}", stats.publish);
                assert!(
                    stats.publish.images_from_commands > 0,
                    "DIRTYFB copies reach clients without a read-back: {:?}",
                    stats.publish
                );
            }
            other => panic!("unexpected sync {other}"),
        },
    );
    assert_eq!(
        clients.len(),
        Compression::NAMES.len(),
        "the guest never asked for the clients"
    );
    for (_, client) in &clients {
        client.stop.store(true, Ordering::Release);
        let _ = client.stream.shutdown(std::net::Shutdown::Both);
    }
    for (_, client) in clients.drain(..) {
        client.reader.join().expect("reader thread");
    }
    run.assert_workload_ok("spice-live");

    let recs = run.records();
    let kms = with_tag(&recs, "KMS")
        .into_iter()
        .find(|r| r.fields.contains_key("sha256"))
        .unwrap_or_else(|| panic!("no KMS result; serial:\n{}", run.serial));
    assert_eq!(kms.num("frames"), u64::from(FRAMES));
    assert_eq!(last.len(), Compression::NAMES.len());
    for ((mode, first), end) in Compression::NAMES.iter().zip(&before).zip(&last) {
        let (_, _, _, draws_before, _) = first;
        let (w, h, digest, draws_after, caught_up) = end;
        assert_eq!(
            (u64::from(*w), u64::from(*h)),
            (kms.num("width"), kms.num("height")),
            "{mode}: the client's surface is the guest's mode"
        );
        assert_eq!(
            digest,
            kms.get("sha256"),
            "{mode}: the client's last picture differs from the guest's last frame"
        );
        let during = draws_after - draws_before;
        println!(
            "live {mode}: guest {} frames at {} fps in {} ms; client got {during} DRAW_COPYs \
             meanwhile ({draws_before} before) and held the last frame {caught_up:?} after \
             the guest's sync",
            FRAMES,
            kms.get("fps"),
            kms.get("elapsed_ms")
        );
        assert!(
            during >= MIN_DRAWS,
            "{mode}: the client got {during} DRAW_COPYs while the guest drew {FRAMES} \
             frames; want at least {MIN_DRAWS}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
