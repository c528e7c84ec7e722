//! `browser-probe`: spice-html5 in a headless Chromium as a benchmark's client. It opens the
//! page through a counting TCP proxy, so the bytes the browser receives (HTTP and WebSocket,
//! every channel) are counted the same way whoever serves them, and counts in the page the
//! animation frames in which the display canvas was drawn to (what the user sees move).
//!
//! ```text
//! browser-probe ADDR                 # saffron: the page and WebSocket on its Spice port
//! browser-probe ADDR --websockify    # a plain Spice server (libspice): websockify serves
//!                                    # Debian's spice-html5 and bridges WebSocket to ADDR
//! ```
//!
//! Every line read on stdin prints one JSON line on stdout with the counters so far, in the
//! shape of spice-probe's: `{"t":secs,"bytes":n,"updates":n,"streams":0}` (`updates`: frames
//! the page painted). It may start before the server listens: the page is loaded again every
//! 10 s until it shows the display. It ends when stdin closes.

use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use saffron_tests::webdriver::Chrome;
use serde_json::json;

/// Where Debian's spice-html5 package puts the client.
const HTML5_DIR: &str = "/usr/share/spice-html5";
/// How often the page is loaded again while it shows no display canvas.
const RELOAD_EVERY: Duration = Duration::from_secs(10);

/// Counts, in the page, the animation frames in which the display canvas was drawn to.
/// Installed after the page has loaded: spice-html5 draws through these prototype methods,
/// so every later draw is seen.
const PAINT_COUNTER: &str = r#"
if (!window.__saffronPainted) {
    window.__saffronPainted = 0;
    let dirty = false;
    const P = CanvasRenderingContext2D.prototype;
    for (const m of ['putImageData', 'drawImage', 'fillRect']) {
        const orig = P[m];
        P[m] = function (...a) {
            if (this.canvas && this.canvas.id === 'spice_surface_0') dirty = true;
            return orig.apply(this, a);
        };
    }
    const tick = () => {
        if (dirty) { window.__saffronPainted++; dirty = false; }
        requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
}
return true;
"#;

/// A loopback proxy to `upstream` that counts the bytes going down to its clients.
fn counting_proxy(upstream: SocketAddr, down: Arc<AtomicU64>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                continue;
            };
            pump(server, c2, Some(down.clone()));
            pump(client, s2, None);
        }
    });
    Ok(addr)
}

fn pump(mut from: TcpStream, mut to: TcpStream, count: Option<Arc<AtomicU64>>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(c) = &count {
                c.fetch_add(n as u64, Relaxed);
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// A free loopback port (bound and released: websockify binds it next).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Kills websockify when the probe ends.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(addr), websockify) = (
        args.first().and_then(|a| a.parse::<SocketAddr>().ok()),
        args.get(1).map(String::as_str) == Some("--websockify"),
    ) else {
        eprintln!("usage: browser-probe ADDR [--websockify]");
        std::process::exit(2);
    };
    if let Err(e) = run(addr, websockify) {
        eprintln!("browser-probe: {e}");
        std::process::exit(1);
    }
}

fn run(addr: SocketAddr, websockify: bool) -> Result<(), String> {
    let started = Instant::now();
    let mut _bridge = None;
    let upstream = if websockify {
        let port = free_port().map_err(|e| e.to_string())?;
        let child = Command::new("websockify")
            .args([
                "--web",
                HTML5_DIR,
                &format!("127.0.0.1:{port}"),
                &addr.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run websockify (apt-get install websockify): {e}"))?;
        _bridge = Some(Reaper(child));
        let bridge = SocketAddr::from(([127, 0, 0, 1], port));
        let until = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(bridge).is_err() {
            if Instant::now() > until {
                return Err("websockify did not listen within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bridge
    } else {
        addr
    };
    let down = Arc::new(AtomicU64::new(0));
    let proxy = counting_proxy(upstream, down.clone()).map_err(|e| e.to_string())?;
    let home = std::env::temp_dir().join(format!("saffron-browser-probe-{}", std::process::id()));
    let chrome = Chrome::start(&home, None)?;
    let page = if websockify {
        format!("http://{proxy}/spice_auto.html")
    } else {
        format!("http://{proxy}/")
    };
    // Sample requests come on stdin from the start (the guest may still be booting): they
    // are answered at once, with zero paints until the page shows the display.
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if line.is_err() || tx.send(()).is_err() {
                break;
            }
        }
    });
    let mut counting = false;
    let mut loaded: Option<Instant> = None;
    loop {
        if !counting {
            // The page is (re)loaded until it shows the display canvas: the server may not
            // listen yet, or have no surface to show.
            if loaded.is_none_or(|at| at.elapsed() > RELOAD_EVERY) {
                // Refused while the server does not listen yet: tried again.
                let _ = chrome.navigate(&page);
                loaded = Some(Instant::now());
            }
            if chrome.find("#spice_surface_0").is_some()
                && chrome.execute(PAINT_COUNTER, json!([])).is_ok()
            {
                counting = true;
                eprintln!(
                    "browser-probe: {page} shows the display after {:?}",
                    started.elapsed()
                );
            }
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(()) => {
                let painted = if counting {
                    chrome
                        .execute("return window.__saffronPainted || 0;", json!([]))
                        .ok()
                        .and_then(|v| v.as_u64())
                        .unwrap_or(0)
                } else {
                    0
                };
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "{}",
                    json!({
                        "t": started.elapsed().as_secs_f64(),
                        "bytes": down.load(Relaxed),
                        "updates": painted,
                        "streams": 0,
                    })
                );
                let _ = out.flush();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    drop(chrome);
    let _ = std::fs::remove_dir_all(&home);
    Ok(())
}
