//! `spice-probe`: a Spice display client for benchmarks. It links main and display like
//! spice-gtk (same display caps and cache sizes, so a server compresses and caches as it would
//! for a real client), answers ACKs and pings, decodes nothing, and counts what arrives.
//!
//! ```text
//! spice-probe ADDR [PASSWORD]
//! ```
//!
//! Every line read on stdin prints one JSON line on stdout with the counters so far:
//! `{"t":secs,"bytes":n,"messages":n,"updates":n,"streams":n,"surfaces":n}` (`updates`: draw
//! commands, copy-bits and video stream frames; `streams`: stream frames alone). It ends when
//! stdin closes or the server closes the display channel.
//!
//! `"vp8"` counts the stream frames of VP8 streams among `streams`.
//!
//! With `SPICE_PROBE_CODECS=LIST` (comma-separated `mjpeg`, `vp8`; default `mjpeg`, what
//! spice-gtk without GStreamer's VP8 decoder announces) it announces those stream codecs.
//! With `SPICE_PROBE_LINK=BITS_PER_SEC,DELAY_MS` it connects through a userspace shaper
//! (`saffron-shaper`), which makes a link of that rate and one-way delay, both ways, from the
//! line `shape` on stdin on (before it, bytes pass at once: a benchmark throttles only the
//! phase it measures, not the backlog of the ones before).
//!
//! With `SPICE_PROBE_TIMES=FILE` in the environment it also writes to FILE, per update, the
//! wall-clock time at which it arrived (seconds since the epoch, to the microsecond, one per
//! line): ci/bench-qxl matches them with QEMU's own time stamps of the guest's NOTIFY_CMD to
//! time each frame from the guest to the client. The wall clock, because QEMU's log trace
//! backend stamps with it.

use std::fs::File;
use std::io::{BufRead, LineWriter, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use saffron_server::client::{Channel, ClientError, Session};

/// SpiceMsgcDisplayInit as spice-gtk sends it: a pixmap cache and a GLZ dictionary of the
/// default sizes (in 4-byte pixels), so the server may use both.
const PIXMAP_CACHE_PIXELS: i64 = 80 * 1024 * 1024 / 4;
const GLZ_WINDOW_PIXELS: i32 = 12 * 1024 * 1024 / 4;
/// Display caps spice-gtk offers without GL: sized stream, monitors config, composite,
/// A8 surface, LZ4, multi-codec; then the codecs (`CODEC_MJPEG` 9, `CODEC_VP8` 10).
const DISPLAY_CAPS: u32 = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 8);
const CAP_CODEC_MJPEG: u32 = 9;
const CAP_CODEC_VP8: u32 = 10;
const STREAM_CREATE: u16 = 122;
const STREAM_DESTROY: u16 = 125;
const CODEC_VP8: u8 = 2;

const MSGC_DISPLAY_INIT: u16 = 101;
const SET_ACK: u16 = 3;
const MSGC_ACK_SYNC: u16 = 1;
const MSGC_ACK: u16 = 2;
const COPY_BITS: u16 = 104;
const STREAM_DATA: u16 = 123;
const STREAM_DATA_SIZED: u16 = 316;
const SURFACE_CREATE: u16 = 314;

#[derive(Default)]
struct Counters {
    bytes: AtomicU64,
    messages: AtomicU64,
    updates: AtomicU64,
    streams: AtomicU64,
    vp8: AtomicU64,
    surfaces: AtomicU64,
}

fn is_update(ty: u16) -> bool {
    matches!(
        ty,
        COPY_BITS | STREAM_DATA | STREAM_DATA_SIZED | 302..=313 | 318
    )
}

fn display_loop(
    mut d: Channel,
    c: &Counters,
    mut times: Option<LineWriter<File>>,
) -> Result<(), ClientError> {
    let mut init = Vec::with_capacity(14);
    init.push(1u8);
    init.extend(PIXMAP_CACHE_PIXELS.to_le_bytes());
    init.push(1u8);
    init.extend(GLZ_WINDOW_PIXELS.to_le_bytes());
    d.send(MSGC_DISPLAY_INIT, &init)?;
    let (mut window, mut received) = (0u32, 0u32);
    // The ids of live VP8 streams.
    let mut vp8 = std::collections::BTreeSet::new();
    let id_of = |body: &[u8], at: usize| {
        body.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    loop {
        let before = d.bytes_read;
        let (ty, body) = d.read()?;
        c.bytes.fetch_add(d.bytes_read - before, Relaxed);
        c.messages.fetch_add(1, Relaxed);
        if is_update(ty) {
            c.updates.fetch_add(1, Relaxed);
            if let Some(w) = &mut times {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                if writeln!(w, "{}.{:06}", now.as_secs(), now.subsec_micros()).is_err() {
                    eprintln!("spice-probe: cannot write SPICE_PROBE_TIMES; no more times");
                    times = None;
                }
            }
        }
        if matches!(ty, STREAM_DATA | STREAM_DATA_SIZED) {
            c.streams.fetch_add(1, Relaxed);
            if id_of(&body, 0).is_some_and(|id| vp8.contains(&id)) {
                c.vp8.fetch_add(1, Relaxed);
            }
        }
        if ty == STREAM_CREATE
            && let Some(id) = id_of(&body, 4)
        {
            if body.get(9) == Some(&CODEC_VP8) {
                vp8.insert(id);
            } else {
                vp8.remove(&id);
            }
        }
        if ty == STREAM_DESTROY
            && let Some(id) = id_of(&body, 0)
        {
            vp8.remove(&id);
        }
        if ty == SURFACE_CREATE {
            c.surfaces.fetch_add(1, Relaxed);
        }
        if ty == SET_ACK {
            window = body
                .get(4..8)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            d.send(MSGC_ACK_SYNC, body.get(..4).unwrap_or(&[]))?;
            continue;
        }
        if window > 0 {
            received += 1;
            if received.is_multiple_of(window) {
                d.send(MSGC_ACK, &[])?;
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(addr) = args.first().and_then(|a| a.parse::<SocketAddr>().ok()) else {
        eprintln!("usage: spice-probe ADDR [PASSWORD]");
        std::process::exit(2);
    };
    let password = args.get(1).cloned().unwrap_or_default();
    let mut caps = DISPLAY_CAPS;
    let codecs = std::env::var("SPICE_PROBE_CODECS").unwrap_or_else(|_| "mjpeg".into());
    for codec in codecs.split(',').filter(|c| !c.is_empty()) {
        caps |= 1
            << match codec {
                "mjpeg" => CAP_CODEC_MJPEG,
                "vp8" => CAP_CODEC_VP8,
                other => {
                    eprintln!("spice-probe: SPICE_PROBE_CODECS: unknown codec {other:?}");
                    std::process::exit(2);
                }
            };
    }
    // Through a shaped link, if asked: the shaper lives as long as the process.
    let mut shaper = None;
    if let Ok(link) = std::env::var("SPICE_PROBE_LINK") {
        let parsed = link
            .split_once(',')
            .and_then(|(b, d)| Some((b.parse::<u64>().ok()?, d.parse::<u64>().ok()?)));
        let Some((bits_per_sec, delay_ms)) = parsed else {
            eprintln!("spice-probe: SPICE_PROBE_LINK must be BITS_PER_SEC,DELAY_MS, not {link:?}");
            std::process::exit(2);
        };
        let link = saffron_shaper::Link {
            bits_per_sec,
            delay: Duration::from_millis(delay_ms),
        };
        match saffron_shaper::Shaper::start(addr, link) {
            Ok(s) => {
                s.set_throttled(false);
                shaper = Some(s);
            }
            Err(e) => {
                eprintln!("spice-probe: shaper: {e}");
                std::process::exit(1);
            }
        }
    }
    let addr = shaper.as_ref().map_or(addr, |s| s.addr());
    let session = match Session::connect(addr, &password) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("spice-probe: main channel: {e}");
            std::process::exit(1);
        }
    };
    let display = match session.open(2, &[caps]) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("spice-probe: display channel: {e}");
            std::process::exit(1);
        }
    };
    // Idle stretches are normal: wait as long as the benchmark runs.
    let _ = display.set_timeout(Duration::from_secs(3600));
    let times = match std::env::var_os("SPICE_PROBE_TIMES") {
        None => None,
        Some(path) => match File::create(&path) {
            Ok(f) => Some(LineWriter::new(f)),
            Err(e) => {
                eprintln!(
                    "spice-probe: SPICE_PROBE_TIMES {}: {e}",
                    path.to_string_lossy()
                );
                std::process::exit(1);
            }
        },
    };
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    {
        let c = counters.clone();
        std::thread::spawn(move || {
            if let Err(e) = display_loop(display, &c, times) {
                eprintln!("spice-probe: display channel ended: {e}");
            }
        });
    }
    // The main channel is read only to answer pings.
    let mut main = session.main;
    let _ = main.set_timeout(Duration::from_secs(3600));
    std::thread::spawn(move || while main.read().is_ok() {});
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else {
            break;
        };
        if line.trim() == "shape"
            && let Some(s) = &shaper
        {
            s.set_throttled(true);
        }
        let c = &counters;
        println!(
            "{{\"t\":{:.3},\"bytes\":{},\"messages\":{},\"updates\":{},\"streams\":{},\"vp8\":{},\"surfaces\":{}}}",
            started.elapsed().as_secs_f64(),
            c.bytes.load(Relaxed),
            c.messages.load(Relaxed),
            c.updates.load(Relaxed),
            c.streams.load(Relaxed),
            c.vp8.load(Relaxed),
            c.surfaces.load(Relaxed),
        );
    }
}
