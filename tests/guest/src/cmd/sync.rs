//! `sync`: the hand-over point where the host takes its screendump.

use std::os::fd::AsFd;
use std::time::Duration;

use crate::args::Options;
use crate::console;
use crate::error::{Error, Result};

/// Default wait for the host's `go`: long enough for a screendump under TCG, short enough that a
/// host that never answers does not hang the test forever.
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// Upper bound for `--timeout-ms`.
const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// Checks that `value` is one `key=value` token the host can split on spaces.
pub fn check_token(key: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "--{key} {value:?}: use letters, digits and _.:- only"
        )))
    }
}

/// Waits for the host after printing `SAFFRON-SYNC`, then prints `SAFFRON-GO id= waited_ms=`.
pub fn hand_over(id: &str, label: Option<&str>, timeout_ms: u64) -> Result<()> {
    let stdin = std::io::stdin();
    let waited = console::sync(stdin.as_fd(), id, label, Duration::from_millis(timeout_ms))?;
    println!("SAFFRON-GO id={id} waited_ms={}", waited.as_millis());
    Ok(())
}

/// `sync --id ID [--label L] [--timeout-ms 60000]`: prints `SAFFRON-SYNC id=ID [label=L]`, then
/// blocks until a line `go` arrives on stdin (the serial console), and prints
/// `SAFFRON-GO id=ID waited_ms=N`. Fails after the timeout, or if stdin ends.
pub fn run(mut opts: Options) -> Result<()> {
    let id = opts
        .take("id")
        .ok_or_else(|| Error::Usage("--id is required".to_string()))?;
    let label = opts.take("label");
    let timeout_ms = opts.u64_or("timeout-ms", DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS)?;
    opts.finish()?;
    check_token("id", &id)?;
    if let Some(l) = &label {
        check_token("label", l)?;
    }
    hand_over(&id, label.as_deref(), timeout_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        check_token("id", "1").unwrap();
        check_token("label", "solid:ff0000").unwrap();
        assert!(check_token("id", "").is_err());
        assert!(check_token("id", "a b").is_err());
        assert!(check_token("id", "a=b").is_err());
    }
}
