//! The host hand-shake on the serial console: print `SAFFRON-SYNC`, wait for a `go` line.
//!
//! The host takes its screendump while the guest holds still, so the guest announces each
//! picture and blocks on the console (its stdin) until the host answers. Input that came before
//! the announcement is discarded first, so a stray or late line from an earlier round cannot
//! release this one.

use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// What the host must write, alone on a line (after trimming blanks and `\r`); anything after a
/// space is allowed and ignored, e.g. `go 3`.
pub const GO: &str = "go";

/// Longest input line kept while waiting; longer noise is dropped, not accumulated.
const MAX_LINE: usize = 4096;

/// Whether `line` releases a sync.
fn is_go(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    text == GO
        || text
            .strip_prefix(GO)
            .is_some_and(|rest| rest.starts_with(' '))
}

/// Prints `SAFFRON-SYNC id=<id>[ label=<label>]` on stdout and waits up to `timeout` for a `go`
/// line on `input`; returns how long it waited.
pub fn sync(
    input: BorrowedFd<'_>,
    id: &str,
    label: Option<&str>,
    timeout: Duration,
) -> Result<Duration> {
    // Fails with ENOTTY on a pipe, where there is no stale terminal input to drop.
    // SAFETY: tcflush only takes the descriptor, which `input` keeps open.
    unsafe { libc::tcflush(input.as_raw_fd(), libc::TCIFLUSH) };
    let mut out = std::io::stdout().lock();
    let line = match label {
        Some(l) => format!("SAFFRON-SYNC id={id} label={l}"),
        None => format!("SAFFRON-SYNC id={id}"),
    };
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("write", "stdout", e))?;
    drop(out);
    wait_for_go(input, timeout).map_err(|e| match e {
        Error::Check(msg) => Error::Check(format!("sync id={id}: {msg}")),
        other => other,
    })
}

/// Reads lines from `input` until one is [`GO`], the input ends or `timeout` passes.
pub fn wait_for_go(input: BorrowedFd<'_>, timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    let mut line: Vec<u8> = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(Error::Check(format!(
                "no {GO:?} line on stdin within {} ms",
                timeout.as_millis()
            )));
        }
        let mut pfd = libc::pollfd {
            fd: input.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Round up so that a sub-millisecond remainder does not spin with a zero timeout.
        let ms = left.as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd on our stack for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io("poll", "stdin", e));
        }
        if rc == 0 {
            continue;
        }
        // SAFETY: reads at most buf.len() bytes into our own buffer from an open descriptor.
        let n = unsafe { libc::read(input.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if matches!(
                e.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
            ) {
                continue;
            }
            return Err(Error::io("read", "stdin", e));
        }
        if n == 0 {
            return Err(Error::Check(format!(
                "stdin closed after {} ms without a {GO:?} line",
                start.elapsed().as_millis()
            )));
        }
        for &b in &buf[..n as usize] {
            if b == b'\n' || b == b'\r' {
                if is_go(&line) {
                    return Ok(start.elapsed());
                }
                line.clear();
            } else if line.len() < MAX_LINE {
                line.push(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn go_lines() {
        assert!(is_go(b"go"));
        assert!(is_go(b" go "));
        assert!(is_go(b"go 3"));
        assert!(!is_go(b"gone"));
        assert!(!is_go(b""));
        assert!(!is_go(b"no go"));
    }

    #[test]
    fn releases_on_go_after_other_lines() {
        let (r, mut w) = std::io::pipe().unwrap();
        w.write_all(b"hello\r\nnot yet\ngo\r\n").unwrap();
        assert!(wait_for_go(r.as_fd(), Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn waits_for_a_line_written_later() {
        let (r, mut w) = std::io::pipe().unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            w.write_all(b"g").unwrap();
            std::thread::sleep(Duration::from_millis(20));
            w.write_all(b"o\n").unwrap();
            w
        });
        let waited = wait_for_go(r.as_fd(), Duration::from_secs(5)).unwrap();
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        drop(writer.join().unwrap());
    }

    #[test]
    fn times_out_and_reports_eof() {
        let (r, w) = std::io::pipe().unwrap();
        let t0 = Instant::now();
        let e = wait_for_go(r.as_fd(), Duration::from_millis(100)).unwrap_err();
        assert!(t0.elapsed() >= Duration::from_millis(100));
        assert!(e.to_string().contains("within 100 ms"), "{e}");
        drop(w);
        let e = wait_for_go(r.as_fd(), Duration::from_secs(5)).unwrap_err();
        assert!(e.to_string().contains("stdin closed"), "{e}");
    }
}
