//! A userspace TCP proxy that makes a slow link out of loopback, for tests of clients behind
//! one: every connection to [`Shaper::addr`] is forwarded to the upstream address, each way
//! at a fixed rate and with a fixed one-way delay, while [`Shaper::set_throttled`] says so.
//!
//! The reading side waits for each chunk's time on the link before reading the next, so the
//! sender's socket backs up as it would on a real slow link (what a server sees through
//! `SIOCOUTQ`); the delay is added after the transmission time, as a long path would.
//! Unthrottled, bytes pass at once. Nothing is dropped: a TCP sender never loses data, it
//! only waits.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Bytes read at once: about 6 ms of a 2 Mbit/s link, so the pacing is smooth.
const CHUNK: usize = 1460;

/// The link a [`Shaper`] makes: rate and one-way delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub bits_per_sec: u64,
    pub delay: Duration,
}

/// A throttling proxy; it serves until the process ends.
pub struct Shaper {
    addr: SocketAddr,
    throttled: Arc<AtomicBool>,
}

impl Shaper {
    /// Starts a proxy to `upstream` on a free loopback port, throttled to `link` from the
    /// start.
    pub fn start(upstream: SocketAddr, link: Link) -> std::io::Result<Shaper> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let throttled = Arc::new(AtomicBool::new(true));
        let t = throttled.clone();
        thread::spawn(move || {
            for down in listener.incoming() {
                let Ok(down) = down else { return };
                let Ok(up) = TcpStream::connect(upstream) else {
                    return;
                };
                let _ = down.set_nodelay(true);
                let _ = up.set_nodelay(true);
                let (Ok(up2), Ok(down2)) = (up.try_clone(), down.try_clone()) else {
                    return;
                };
                pump(up2, down2, link, t.clone());
                pump(down, up, link, t.clone());
            }
        });
        Ok(Shaper { addr, throttled })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Throttles every connection (true) or lets bytes through at once (false).
    pub fn set_throttled(&self, on: bool) {
        self.throttled.store(on, Ordering::Release);
    }
}

/// Forwards `from` to `to` (see the module documentation).
fn pump(mut from: TcpStream, mut to: TcpStream, link: Link, throttled: Arc<AtomicBool>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let rate = link.bits_per_sec.max(1);
    thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        let mut link_free = Instant::now();
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let now = Instant::now();
            let due = if throttled.load(Ordering::Acquire) {
                let on_wire = Duration::from_micros(n as u64 * 8_000_000 / rate);
                link_free = link_free.max(now) + on_wire;
                link_free + link.delay
            } else {
                link_free = now;
                now
            };
            if tx.send((due, buf[..n].to_vec())).is_err() {
                break;
            }
            thread::sleep(link_free.saturating_duration_since(Instant::now()));
        }
    });
    thread::spawn(move || {
        for (at, data) in rx {
            thread::sleep(at.saturating_duration_since(Instant::now()));
            if to.write_all(&data).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100 kB through a 2 Mbit/s, 25 ms link take about 0.4 s plus the delay, arrive whole
    /// and in order; unthrottled they pass at once.
    #[test]
    fn bytes_take_their_time_on_the_link_and_arrive_whole() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream = echo.local_addr().unwrap();
        thread::spawn(move || {
            for s in echo.incoming() {
                let mut s = s.unwrap();
                let mut r = s.try_clone().unwrap();
                thread::spawn(move || {
                    let _ = std::io::copy(&mut r, &mut s);
                });
            }
        });
        let link = Link {
            bits_per_sec: 2_000_000,
            delay: Duration::from_millis(25),
        };
        let shaper = Shaper::start(upstream, link).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let round = |data: &[u8]| {
            let mut c = TcpStream::connect(shaper.addr()).unwrap();
            let t0 = Instant::now();
            let mut w = c.try_clone().unwrap();
            let d = data.to_vec();
            let writer = thread::spawn(move || w.write_all(&d).unwrap());
            let mut back = vec![0u8; data.len()];
            c.read_exact(&mut back).unwrap();
            writer.join().unwrap();
            (t0.elapsed(), back)
        };
        let (slow, back) = round(&data);
        assert!(back == data, "whole and in order");
        // Each way 0.4 s on the wire (pipelined) plus 2 x 25 ms of delay.
        assert!(slow >= Duration::from_millis(400), "{slow:?}");
        shaper.set_throttled(false);
        let (fast, back) = round(&data);
        assert!(back == data);
        assert!(fast < slow / 2, "unthrottled {fast:?} against {slow:?}");
    }
}
