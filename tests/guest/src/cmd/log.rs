//! `log`: put text in `log_buf` and ring the LOG port, so the host can see it in the server log.

use crate::args::Options;
use crate::error::{Error, Result};
use crate::qxl::{Qxl, port};

/// Upper bound on `--count`, so a typo cannot keep the (slow, emulated) guest busy for hours.
const MAX_COUNT: u64 = 1_000_000;

/// Prints `SAFFRON-LOG count=N len=L` after N writes to the LOG port.
pub fn run(mut opts: Options) -> Result<()> {
    let slot = opts.take("slot");
    let text = opts
        .take("text")
        .ok_or_else(|| Error::Usage("--text is required".to_string()))?;
    let count = opts.u64_or("count", 1, MAX_COUNT)?;
    opts.finish()?;
    if text.as_bytes().contains(&0) {
        return Err(Error::Usage("--text must not contain NUL".to_string()));
    }
    let dev = super::find_device(slot)?;
    let qxl = Qxl::open(&dev)?;
    qxl.set_log_text(text.as_bytes())?;
    for _ in 0..count {
        qxl.out(port::LOG, 0)?;
    }
    println!("SAFFRON-LOG count={count} len={}", text.len());
    Ok(())
}
