//! Video streams with the desktop client users run: remote-viewer (Debian's virt-viewer, i.e.
//! spice-gtk) in an Xvfb X server, connected to the guest's Spice server while the guest plays
//! a 320x240 "video" through KMS at 25 frames/s (`saffron-guest kms --motion video`: a view
//! panning across a photograph, a new picture every frame).
//!
//! - The server detects the region as video and sends it as a stream (STREAM_CREATE,
//!   STREAM_DATA): VP8 by default (remote-viewer decodes it with GStreamer's vp8dec), MJPEG
//!   when `--spice-video-codecs spice:mjpeg` says so; either is far smaller than the
//!   lossless images of the same frames would be.
//! - While it plays (the guest pauses for half a second after frame 60), remote-viewer's
//!   picture of the window is within 30 dB PSNR of the guest's frame: the client decodes and
//!   shows our frames as they come.
//! - When the video stops, the stream ends and its last frame goes again losslessly: the
//!   screenshot of remote-viewer is then exactly the guest's own picture (the guest's digest
//!   of its KMS buffer), every pixel of it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use saffron_codec::{ImageRef, PixelFormat, quic};
use saffron_server::stream::{VideoCodec, VideoCodecs};
use saffron_shaper::{Link, Shaper};
use saffron_tests::xhost::{Reaper, find_exact, start_x, x_screenshot};
use saffron_tests::{GuestOptions, boot_guest_with_sync, serial_guard, sha256_hex, with_tag};
use saffron_vmm::spice::SpiceOptions;

const PASSWORD: &str = "saffron-video-ticket";
/// The guest's screen and its video window (`kms --motion video`: 320x240, centred).
const SCREEN: (u32, u32) = (1024, 768);
const WINDOW: (u32, u32, u32, u32) = (352, 264, 320, 240);
/// Frames the guest plays (4 s at 25 frames/s).
const FRAMES: u64 = 100;
/// With `kms --overlay-at`, the pop-up over the window's top-right corner (`overlay_rect` in
/// the guest tool: 140x90, half its width and two thirds of its height over the window), and
/// the frame it comes at.
const OVERLAY: (u32, u32, u32, u32) = (602, 234, 140, 90);
const OVERLAY_AT: u64 = 40;

/// What the host saw at the guest's syncs.
#[derive(Default)]
struct Seen {
    /// Where remote-viewer showed the guest's screen before the video (it is connected).
    ready: Option<(u32, u32)>,
    /// While playing: PSNR of remote-viewer's window against the guest's frame, whether it
    /// was exact, and the stream counters then.
    playing: Option<(f64, bool, saffron_server::StreamStats)>,
    /// While playing, with the pop-up: whether remote-viewer showed it exactly.
    overlay_exact: Option<bool>,
    /// The digest of the exact guest picture remote-viewer showed after the video, and how
    /// long after the guest stopped.
    still: Option<(String, Duration)>,
    /// The server's stream counters then.
    streams: Option<saffron_server::StreamStats>,
    /// Bytes of the video window's last frame as a lossless QUIC image, for comparison.
    quic_bytes: usize,
}

/// Waits up to `within` for remote-viewer's screen to hold the guest's `w x h` picture
/// exactly; returns where, and the digest of that region of the screenshot.
fn wait_exact(
    display: &str,
    guest: &[u8],
    w: u32,
    h: u32,
    within: Duration,
) -> Option<(u32, u32, String)> {
    let until = Instant::now() + within;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
        let Ok(shot) = x_screenshot(display) else {
            continue;
        };
        if let Some((x, y)) = find_exact(&shot, guest, w, h) {
            let (sw, _, ref px) = shot;
            let mut region = Vec::with_capacity(guest.len());
            for yy in 0..h {
                let at = (((y + yy) * sw + x) * 3) as usize;
                region.extend_from_slice(&px[at..at + (w * 3) as usize]);
            }
            return Some((x, y, sha256_hex(&region)));
        }
    }
    None
}

/// Starts remote-viewer full screen on `display`, connecting to 127.0.0.1:`port` with the
/// test's password; its log goes to `dir`.
fn start_viewer(display: &str, dir: &std::path::Path, port: u16) -> Reaper {
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

/// remote-viewer announces VP8 (GStreamer's vp8dec) and MJPEG; by default it gets VP8. A
/// pop-up comes over the video's corner at frame 40: the stream goes on, clipped around it
/// (STREAM_CLIP), and remote-viewer shows the pop-up exactly while the video plays.
#[test]
fn a_video_reaches_remote_viewer_as_a_vp8_stream_clipped_by_a_popup_and_ends_exact() {
    remote_viewer_video(VideoCodecs::default(), VideoCodec::Vp8, true);
}

/// With `--spice-video-codecs spice:mjpeg`, the same video (no pop-up) goes as MJPEG.
#[test]
fn a_video_reaches_remote_viewer_as_an_mjpeg_stream_and_ends_exact() {
    remote_viewer_video("spice:mjpeg".parse().unwrap(), VideoCodec::Mjpeg, false);
}

/// The `w x h` region at (`x`, `y`) of the guest's screen (`gw` wide) and of the screenshot
/// (`sw` wide, the screen shown at `at`), both packed RGB; None if either is short.
fn regions(
    guest: &[u8],
    gw: u32,
    shot: &[u8],
    sw: u32,
    at: (u32, u32),
    (x, y, w, h): (u32, u32, u32, u32),
) -> Option<(Vec<u8>, Vec<u8>)> {
    let (mut want, mut got) = (Vec::new(), Vec::new());
    for yy in y..y + h {
        let g = ((yy * gw + x) * 3) as usize;
        let s = (((at.1 + yy) * sw + at.0 + x) * 3) as usize;
        want.extend_from_slice(guest.get(g..g + (w * 3) as usize)?);
        got.extend_from_slice(shot.get(s..s + (w * 3) as usize)?);
    }
    Some((want, got))
}

fn remote_viewer_video(codecs: VideoCodecs, want: VideoCodec, overlay: bool) {
    let _g = serial_guard();
    let dir = std::env::temp_dir().join(format!("saffron-video-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let (display, _xvfb, _wm) = start_x();

    let mut opts = GuestOptions::new("qxl-video");
    opts.args = vec![FRAMES.to_string()];
    if overlay {
        let (_, _, w, h) = WINDOW;
        opts.args.extend([w, h, 25].map(|n| n.to_string()));
        opts.args.push(OVERLAY_AT.to_string());
    }
    opts.spice = SpiceOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        password_file: Some(password_file),
        video_codecs: codecs,
        ..SpiceOptions::default()
    };
    let mut viewer: Option<Reaper> = None;
    let mut seen = Seen::default();
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |sync, vm| {
            let spice = vm.spice().expect("spice server");
            let (gw, gh, guest) = vm.server().worker().screendump().expect("screendump");
            match sync.get("label") {
                "ready" => {
                    viewer = Some(start_viewer(&display, &dir, spice.local_addr().port()));
                    seen.ready = wait_exact(&display, &guest, gw, gh, Duration::from_secs(45))
                        .map(|(x, y, _)| (x, y));
                }
                "playing" => {
                    // Past the client's 400 ms of mm-time delay, before the stream's 1 s
                    // still timeout.
                    std::thread::sleep(Duration::from_millis(550));
                    let (Some((sx, sy)), Ok((sw, _, px))) = (seen.ready, x_screenshot(&display))
                    else {
                        return;
                    };
                    let (x, y, w, h) = WINDOW;
                    let (mut want, mut got) = (Vec::new(), Vec::new());
                    for yy in y..y + h {
                        let g = ((yy * gw + x) * 3) as usize;
                        let s = (((sy + yy) * sw + sx + x) * 3) as usize;
                        let (Some(gr), Some(sr)) = (
                            guest.get(g..g + (w * 3) as usize),
                            px.get(s..s + (w * 3) as usize),
                        ) else {
                            return;
                        };
                        want.extend(gr.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0], 0]));
                        got.extend(sr.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0], 0]));
                    }
                    let psnr = saffron_codec::mjpeg::psnr(&want, &got);
                    seen.playing = Some((psnr, want == got, spice.stream_totals()));
                    if overlay {
                        seen.overlay_exact = regions(&guest, gw, &px, sw, (sx, sy), OVERLAY)
                            .map(|(want, got)| want == got);
                    }
                }
                "kms" => {
                    let stopped = Instant::now();
                    let exact = wait_exact(&display, &guest, gw, gh, Duration::from_secs(20));
                    seen.still = exact.map(|(_, _, d)| (d, stopped.elapsed()));
                    seen.streams = Some(spice.stream_totals());
                    // The window's last frame, as the lossless path would send each frame.
                    let (x, y, w, h) = WINDOW;
                    let bgrx: Vec<u8> = (y..y + h)
                        .flat_map(|yy| {
                            let at = ((yy * gw + x) * 3) as usize;
                            guest[at..at + (w * 3) as usize]
                                .chunks_exact(3)
                                .flat_map(|p| [p[2], p[1], p[0], 0])
                                .collect::<Vec<u8>>()
                        })
                        .collect();
                    let img = ImageRef::packed(w, h, PixelFormat::Rgb32, &bgrx).unwrap();
                    seen.quic_bytes = quic::encode(&img).expect("quic encodes").len();
                }
                other => panic!("unexpected sync {other}"),
            }
        },
    );
    drop(viewer);
    run.assert_workload_ok("qxl-video");
    assert!(
        seen.ready.is_some(),
        "remote-viewer never showed the guest before the video; see {}",
        dir.display()
    );
    let (psnr, exact, during) = seen.playing.expect("a screenshot while the video played");
    println!(
        "video ({want:?}): while playing, remote-viewer's window at {psnr:.1} dB (exact: \
         {exact}); {during:?}"
    );
    assert!(during.created >= 1, "no stream by frame 60: {during:?}");
    assert!(
        psnr >= 30.0,
        "remote-viewer's picture while playing is {psnr:.1} dB from the guest's frame"
    );
    if overlay {
        assert!(
            during.clips >= 1 && during.destroyed == 0 && during.created == 1,
            "the pop-up clipped the live stream rather than ending it: {during:?}"
        );
        assert_eq!(
            seen.overlay_exact,
            Some(true),
            "remote-viewer showed the pop-up over the playing video exactly; see {}",
            dir.display()
        );
    }
    let recs = run.records();
    let kms = with_tag(&recs, "KMS")
        .into_iter()
        .find(|r| r.fields.contains_key("sha256"))
        .expect("the guest's KMS record");
    assert_eq!(
        (kms.num("width"), kms.num("height")),
        (u64::from(SCREEN.0), u64::from(SCREEN.1))
    );
    assert_eq!(kms.num("frames"), FRAMES);
    let s = seen.streams.expect("stream counters at the end");
    println!(
        "video: guest played {} frames at {} fps; server sent {s:?}; lossless QUIC of one \
         frame {} bytes",
        kms.num("frames"),
        kms.get("fps"),
        seen.quic_bytes
    );
    assert!(s.created >= 1, "no stream was created: {s:?}");
    let vp8 = match want {
        VideoCodec::Vp8 => s.frames,
        VideoCodec::Mjpeg => 0,
    };
    assert_eq!(s.vp8_frames, vp8, "every frame {want:?}: {s:?}");
    // 20 frames are sent lossless before a stream starts, and the pause after frame 60
    // (longer than the stream's 1 s still timeout with the host's screenshot) ends the
    // first stream, so the second is detected again: 100 - 2 x 20 at most, less what the
    // pipe merged while the encoder was busy.
    assert!(
        s.frames >= FRAMES * 2 / 5,
        "too few frames went as stream frames: {s:?}"
    );
    let per_frame = s.frame_bytes / s.frames.max(1);
    assert!(
        per_frame * 3 < seen.quic_bytes as u64,
        "{want:?} frames ({per_frame} bytes) are not well below lossless QUIC ({} bytes)",
        seen.quic_bytes
    );
    assert!(
        s.lossless_resends >= 1,
        "the stream's last frame was not re-sent losslessly: {s:?}"
    );
    let (digest, after) = seen.still.unwrap_or_else(|| {
        panic!(
            "remote-viewer never showed the still picture exactly; see {}",
            dir.display()
        )
    });
    println!("video: remote-viewer showed the exact still picture {after:?} after the video");
    assert_eq!(
        digest,
        kms.get("sha256"),
        "what remote-viewer shows differs from the guest's KMS buffer"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The slow link of the throttled test: 1 Mbit/s and 25 ms each way (50 ms round trip). The
/// issue asks for 2 Mbit/s, but there this video's MJPEG frames (about 9 kB at 20 frames/s,
/// 1.5 Mbit/s) fit without any adaptation: at half that rate the server has to fit them.
const SLOW: Link = Link {
    bits_per_sec: 1_000_000,
    delay: Duration::from_millis(25),
};
/// The throttled test's video: 640x480 at 30 frames/s for 6 s.
const SLOW_VIDEO: (u32, u32, u64, u64) = (640, 480, 30, 180);

/// One look at the throttled client's display channel (client_info), while the video plays.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    backlog: u64,
    slow: bool,
    streams: saffron_server::StreamStats,
}

/// The display channel of session `id` in the server's client list: its stream counters and
/// link estimate.
fn display_channel(
    spice: &saffron_server::ServerHandle,
    id: u32,
) -> Option<saffron_server::session::ChannelInfo> {
    spice
        .clients()
        .into_iter()
        .filter(|c| c.session_id == id)
        .flat_map(|c| c.channels)
        .find(|ch| ch.channel_type == saffron_server::wire::channel::DISPLAY)
}

/// A video behind a slow link, with remote-viewer (VP8) through a userspace shaper at 1 Mbit/s
/// and 50 ms round trip, and our library client (MJPEG) connected directly at the same time:
/// - the server calls remote-viewer's link slow and fits its stream to it (frames skipped
///   while data waits, quality lowered while frames are too big), so remote-viewer still gets
///   at least 10 frames/s, and never more than 1 s of data waits for it;
/// - the direct client is on a fast link: its stream skips nothing and keeps its quality;
/// - once the link is restored and the video stops, both show the guest's last frame
///   exactly.
#[test]
fn a_throttled_remote_viewer_gets_a_paced_stream_and_ends_exact() {
    use saffron_server::client::{Screen, Session};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let _g = serial_guard();
    let dir = std::env::temp_dir().join(format!("saffron-video-slow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let (display, _xvfb, _wm) = start_x();
    let (vw, vh, fps, frames) = SLOW_VIDEO;
    let mut opts = GuestOptions::new("qxl-video");
    opts.args = [frames, u64::from(vw), u64::from(vh), fps]
        .iter()
        .map(u64::to_string)
        .collect();
    opts.spice = SpiceOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        password_file: Some(password_file),
        ..SpiceOptions::default()
    };
    let mut viewer: Option<Reaper> = None;
    let mut shaper: Option<Shaper> = None;
    let mut fast: Option<(Session, Arc<Mutex<Screen>>)> = None;
    let mut slow_id = None;
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut sampler = None;
    let mut ends: Option<(saffron_server::StreamStats, saffron_server::StreamStats)> = None;
    let mut exact: Option<(bool, bool, Duration)> = None;
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |sync, vm| {
            let spice = vm.spice().expect("spice server");
            match sync.get("label") {
                "ready" => {
                    let addr = spice.local_addr();
                    // The fast client, straight to the server, reading its display channel
                    // on a thread as a real client does.
                    let session = Session::connect(addr, PASSWORD).expect("fast client");
                    let mut d = session.display().expect("fast display channel");
                    d.set_timeout(Duration::from_secs(120)).unwrap();
                    let screen = Arc::new(Mutex::new(Screen::new()));
                    let s = screen.clone();
                    std::thread::spawn(move || {
                        while let Ok((ty, body)) = saffron_server::client::read_msg(&mut d) {
                            if s.lock().unwrap().handle(&mut d, ty, &body).is_err() {
                                break;
                            }
                        }
                    });
                    let fast_id = session.id;
                    fast = Some((session, screen));
                    let sh = Shaper::start(addr, SLOW).expect("shaper");
                    viewer = Some(start_viewer(&display, &dir, sh.addr().port()));
                    shaper = Some(sh);
                    // remote-viewer's session is the other one; its link is slow once the
                    // server has measured it.
                    let t0 = Instant::now();
                    while t0.elapsed() < Duration::from_secs(30) && slow_id.is_none() {
                        slow_id = spice
                            .clients()
                            .iter()
                            .filter(|c| c.session_id != fast_id)
                            .find(|c| c.channels.iter().any(|ch| ch.link.is_some_and(|l| l.slow)))
                            .map(|c| c.session_id);
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    let Some(id) = slow_id else { return };
                    let (samples, stop, spice) = (samples.clone(), stop.clone(), spice.clone());
                    sampler = Some(std::thread::spawn(move || {
                        while !stop.load(Ordering::Acquire) {
                            if let Some(ch) = display_channel(&spice, id)
                                && let (Some(l), Some(st)) = (ch.link, ch.streams)
                            {
                                samples.lock().unwrap().push(Sample {
                                    at: Instant::now(),
                                    backlog: l.backlog_bytes,
                                    slow: l.slow,
                                    streams: st,
                                });
                            }
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }));
                }
                "playing" => {}
                "kms" => {
                    stop.store(true, Ordering::Release);
                    if let Some(t) = sampler.take() {
                        let _ = t.join();
                    }
                    let fast_id = fast.as_ref().map_or(0, |f| f.0.id);
                    let of = |id| display_channel(spice, id).and_then(|ch| ch.streams);
                    if let (Some(s), Some(f)) = (slow_id.and_then(of), of(fast_id)) {
                        ends = Some((s, f));
                    }
                    // The link is restored; the video has stopped.
                    if let Some(sh) = &shaper {
                        sh.set_throttled(false);
                    }
                    let stopped = Instant::now();
                    let (gw, gh, guest) = vm.server().worker().screendump().expect("screendump");
                    let viewer_exact =
                        wait_exact(&display, &guest, gw, gh, Duration::from_secs(30)).is_some();
                    let fast_exact = fast.as_ref().is_some_and(|(_, screen)| {
                        let until = Instant::now() + Duration::from_secs(10);
                        loop {
                            let rgb: Vec<u8> = screen
                                .lock()
                                .unwrap()
                                .pixels
                                .chunks_exact(4)
                                .flat_map(|p| [p[2], p[1], p[0]])
                                .collect();
                            if rgb == guest {
                                break true;
                            }
                            if Instant::now() > until {
                                break false;
                            }
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    });
                    exact = Some((viewer_exact, fast_exact, stopped.elapsed()));
                }
                other => panic!("unexpected sync {other}"),
            }
        },
    );
    drop(viewer);
    run.assert_workload_ok("qxl-video");
    assert!(
        slow_id.is_some(),
        "remote-viewer's link behind the shaper was never called slow; see {}",
        dir.display()
    );
    let (slow, fast) = ends.expect("both clients' stream counters at the end");
    let samples = samples.lock().unwrap().clone();
    // The stretch the stream played for remote-viewer: from the first sample with a frame
    // sent to the last sample where frames were still being sent or skipped.
    let offered = |s: &Sample| s.streams.frames + s.streams.skipped_frames;
    let first = samples.iter().find(|s| s.streams.frames > 0);
    let last = samples
        .iter()
        .rev()
        .find(|s| first.is_some_and(|f| offered(s) > offered(f)));
    let (Some(first), Some(last)) = (first, last) else {
        panic!("remote-viewer got no stream: {slow:?}, samples {samples:?}");
    };
    let secs = last.at.duration_since(first.at).as_secs_f64();
    let rate = (last.streams.frames - first.streams.frames) as f64 / secs.max(0.001);
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= first.at && s.at <= last.at)
        .collect();
    let max_backlog = during.iter().map(|s| s.backlog).max().unwrap_or(0);
    println!(
        "video: throttled remote-viewer got {rate:.1} stream frames/s over {secs:.1} s, \
         backlog at most {max_backlog} bytes, slow throughout: {}; its streams {slow:?}; \
         the fast client's {fast:?}; exact after the video (viewer, fast, time): {exact:?}",
        during.iter().all(|s| s.slow)
    );
    // What the guest offered in that stretch (sent or skipped): under a loaded host a TCG
    // guest draws fewer than its 30 frames/s, and the paced stream is judged against what
    // there was to send. Without the pacing remote-viewer got 9.5 frames/s of 30, and the
    // backlog below is what fails then.
    let offered_rate = (offered(last) - offered(first)) as f64 / secs.max(0.001);
    assert!(
        rate >= (0.5 * offered_rate).min(10.0),
        "remote-viewer got {rate:.1} frames/s of the {offered_rate:.1} offered behind the \
         slow link: {slow:?}"
    );
    let second = SLOW.bits_per_sec / 8;
    let timeline: Vec<(u128, u64, u64)> = samples
        .iter()
        .map(|s| {
            let ms = s.at.saturating_duration_since(first.at).as_millis();
            (ms, s.backlog, s.streams.frames)
        })
        .collect();
    assert!(
        max_backlog <= second,
        "{max_backlog} bytes waited for remote-viewer, over 1 s of its link ({second}); \
         (ms, backlog, frames): {timeline:?}"
    );
    assert!(
        slow.skipped_frames + slow.link_quality_down > 0,
        "the slow client's stream was not fitted to its link: {slow:?}"
    );
    assert!(fast.created >= 1, "the fast client got a stream: {fast:?}");
    // Codecs per client: remote-viewer decodes VP8 (the default's first choice), our
    // library client announces no codecs and gets MJPEG.
    assert!(
        slow.frames > 0 && slow.vp8_frames == slow.frames,
        "remote-viewer's stream is VP8: {slow:?}"
    );
    assert_eq!(
        fast.vp8_frames, 0,
        "the library client's is MJPEG: {fast:?}"
    );
    assert_eq!(
        (fast.skipped_frames, fast.link_quality_down),
        (0, 0),
        "the fast client's stream keeps its frames and quality: {fast:?}"
    );
    let (viewer_exact, fast_exact, _) = exact.expect("checked after the video");
    assert!(
        viewer_exact,
        "remote-viewer never showed the guest's last frame exactly once the link was restored; \
         see {}",
        dir.display()
    );
    assert!(
        fast_exact,
        "the fast client's picture is the guest's last frame"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
