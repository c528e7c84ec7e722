//! `scroll`: how fast text scrolls through the framebuffer console (fbcon).
//!
//! Writes numbered lines to a VT as fast as it takes them, one `write` per line as a program
//! printing line by line does. Once the cursor is on the bottom row every line feed scrolls the
//! whole console; the DRM fbdev emulation (qxl's included) redraws the text into its shadow
//! buffer and hands the damage to the driver from a worker, so the device sees a stream of
//! (partly coalesced) full-screen updates of mostly flat colour with glyphs on it.
//!
//! The VT must be in text mode (`fbcon-off --kd text`), or fbcon draws nothing and this
//! measures only the tty layer.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use crate::args::Options;
use crate::error::{Error, Result};

/// Upper bound for `--lines`, so a typo cannot keep the (slow, emulated) guest busy for hours.
const MAX_LINES: u64 = 1_000_000;

/// VT escape written before the timed lines: cursor to column 1 of row 999, which the console
/// clamps to its last row.
pub(crate) const TO_BOTTOM: &[u8] = b"\x1b[999;1H";

/// The text of line `n` (without its line end): numbered and of a length that varies from line
/// to line, so that consecutive screens differ in more than the line number.
pub(crate) fn line_text(n: u64) -> String {
    const WORDS: [&str; 9] = [
        "the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog",
    ];
    let words = 3 + (n % 7) as usize;
    let mut s = format!("line {n}:");
    for k in 0..words {
        s.push(' ');
        s.push_str(WORDS[(n as usize + k) % WORDS.len()]);
    }
    s.push_str(&format!(" {}", n.wrapping_mul(n)));
    s
}

/// `scroll [--tty /dev/tty0] [--lines 400] [--phase NAME]`: writes `--lines` lines (see
/// [`line_text`], each ended by CR LF) to the tty and prints
/// `SAFFRON-SCROLL lines= lines_per_s= elapsed_ms= bytes= tty=` (`bytes` counts the lines).
///
/// Before the clock starts the lines are formatted and the cursor is sent to the bottom row
/// ([`TO_BOTTOM`]), so that every line scrolls the console. With `--phase NAME`,
/// `SAFFRON-PHASE name=NAME begin` and `... end` are printed right around the writes, so that
/// the host can sample its own counters over exactly that stretch.
pub fn run(mut opts: Options) -> Result<()> {
    let tty = PathBuf::from(opts.take("tty").unwrap_or_else(|| "/dev/tty0".to_string()));
    let lines = opts.u64_or("lines", 400, MAX_LINES)?;
    let phase = opts.take("phase");
    opts.finish()?;
    if lines == 0 {
        return Err(Error::Usage("--lines must be at least 1".to_string()));
    }
    if let Some(p) = &phase {
        super::sync::check_token("phase", p)?;
    }

    let text: Vec<Vec<u8>> = (1..=lines)
        .map(|n| format!("{}\r\n", line_text(n)).into_bytes())
        .collect();
    let bytes: usize = text.iter().map(Vec::len).sum();
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .open(&tty)
        .map_err(|e| Error::io("open", &tty, e))?;
    out.write_all(TO_BOTTOM)
        .map_err(|e| Error::io("write", &tty, e))?;

    if let Some(p) = &phase {
        println!("SAFFRON-PHASE name={p} begin");
    }
    let start = Instant::now();
    for line in &text {
        out.write_all(line)
            .map_err(|e| Error::io("write", &tty, e))?;
    }
    let elapsed = start.elapsed();
    if let Some(p) = &phase {
        println!("SAFFRON-PHASE name={p} end");
    }
    let rate = lines as f64 / elapsed.as_secs_f64().max(1e-9);
    println!(
        "SAFFRON-SCROLL lines={lines} lines_per_s={rate:.2} elapsed_ms={} bytes={bytes} tty={}",
        elapsed.as_millis(),
        tty.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_numbered_and_vary() {
        assert_eq!(line_text(1), "line 1: quick brown fox jumps 1");
        assert_eq!(line_text(17), "line 17: dog the quick brown fox jumps 289");
        let mut seen = std::collections::HashSet::new();
        for n in 1..=400 {
            let t = line_text(n);
            assert!(t.starts_with(&format!("line {n}: ")), "{t}");
            assert!(t.ends_with(&format!(" {}", n * n)), "{t}");
            // Fits one row of the 128-column console at 1024x768, so every line scrolls once.
            assert!(t.len() < 128, "{t}");
            assert!(seen.insert(t));
        }
        // Lengths differ from one line to the next.
        assert_ne!(line_text(5).len(), line_text(6).len());
    }

    #[test]
    fn option_errors_come_first() {
        let opts = Options::parse(["--lines", "0"]).unwrap();
        assert!(matches!(run(opts), Err(Error::Usage(_))));
        let opts = Options::parse(["--lines", "1000001"]).unwrap();
        assert!(matches!(run(opts), Err(Error::Usage(_))));
        let opts = Options::parse(["--phase", "a b"]).unwrap();
        assert!(matches!(run(opts), Err(Error::Usage(_))));
        let opts = Options::parse(["--bogus", "1"]).unwrap();
        assert!(matches!(run(opts), Err(Error::Usage(_))));
        let opts = Options::parse(["--tty", "/nonexistent/tty9"]).unwrap();
        assert!(matches!(run(opts), Err(Error::Io { .. })));
    }
}
