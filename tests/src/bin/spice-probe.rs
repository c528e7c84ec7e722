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
/// A8 surface, LZ4, multi-codec, MJPEG.
const DISPLAY_CAPS: u32 =
    (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 8) | (1 << 9);

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
    let session = match Session::connect(addr, &password) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("spice-probe: main channel: {e}");
            std::process::exit(1);
        }
    };
    let display = match session.open(2, &[DISPLAY_CAPS]) {
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
        if line.is_err() {
            break;
        }
        let c = &counters;
        println!(
            "{{\"t\":{:.3},\"bytes\":{},\"messages\":{},\"updates\":{},\"streams\":{},\"surfaces\":{}}}",
            started.elapsed().as_secs_f64(),
            c.bytes.load(Relaxed),
            c.messages.load(Relaxed),
            c.updates.load(Relaxed),
            c.streams.load(Relaxed),
            c.surfaces.load(Relaxed),
        );
    }
}
