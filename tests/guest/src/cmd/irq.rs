//! `irq`: raise and lower the device's INTx line through the QXL protocol and watch the
//! guest kernel receive it through `uio_pci_generic`.
//!
//! uio_pci_generic relies on PCI 2.3 INTx masking: its handler claims the interrupt only if
//! config status bit 3 (interrupt status) is set, and then sets command bit 10 (INTx disable)
//! so a level-triggered line cannot storm. It has no irqcontrol (a write to `/dev/uioN` fails
//! with ENOSYS): user space re-enables by clearing INTx disable in config space itself. So one round checks the whole chain: UPDATE_IRQ raises the line, the status bit
//! follows it, the kernel sees the interrupt, UPDATE_IRQ with nothing pending lowers it again.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::args::Options;
use crate::error::{Error, Result};
use crate::pci::{ConfigSpace, cfg};
use crate::qxl::{Qxl, port};

/// Upper bound on `--count`.
const MAX_COUNT: u64 = 100_000;
/// Default wait for one interrupt. In the device's polled mode the guest only notices the line
/// on a 250 Hz timer tick, and TCG is slow, so this is deliberately generous.
const DEFAULT_TIMEOUT_MS: u64 = 2000;
/// Pause between two reads of the status register while waiting for it to change.
const STATUS_POLL_INTERVAL: Duration = Duration::from_micros(200);
/// The event bit the test uses; any bit works since it sets the mask itself.
const TEST_EVENT: u32 = 1;

/// An open `/dev/uioN`.
struct Uio {
    file: File,
    path: PathBuf,
}

impl Uio {
    fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        Ok(Uio {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Waits up to `timeout` for the interrupt count to change and returns the new total, or
    /// `None` if it did not change in time. A read of `/dev/uioN` would block with no timeout,
    /// so we only read once `poll` says an event is there.
    fn wait_event(&mut self, timeout: Duration) -> Result<Option<u32>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
            let mut pfd = libc::pollfd {
                fd: self.file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `pfd` is a valid pollfd for the duration of the call and nfds is 1.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::io("poll", &self.path, err));
            }
            if rc > 0 {
                if pfd.revents & libc::POLLIN == 0 {
                    return Err(Error::Check(format!(
                        "poll on {} returned revents={:#x}",
                        self.path.display(),
                        pfd.revents
                    )));
                }
                let mut buf = [0u8; 4];
                self.file
                    .read_exact(&mut buf)
                    .map_err(|e| Error::io("read", &self.path, e))?;
                return Ok(Some(u32::from_ne_bytes(buf)));
            }
            if left.is_zero() {
                return Ok(None);
            }
        }
    }
}

/// Clears INTx disable in the command register so the next interrupt can arrive.
fn unmask(config: &ConfigSpace) -> Result<()> {
    let command = config.read_u16(cfg::COMMAND)?;
    config.write_u16(cfg::COMMAND, command & !cfg::COMMAND_INTX_DISABLE)
}

/// Polls config status bit 3 until it equals `asserted` or `timeout` passes.
fn wait_status(config: &ConfigSpace, asserted: bool, timeout: Duration) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let status = config.read_u16(cfg::STATUS)?;
        if (status & cfg::STATUS_INTERRUPT != 0) == asserted {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        sleep(STATUS_POLL_INTERVAL);
    }
}

/// Returns (median, max) of `samples` in µs, the median being the upper one for even counts;
/// (0, 0) when there are none.
fn median_max(samples: &mut [u64]) -> (u64, u64) {
    samples.sort_unstable();
    let median = samples.get(samples.len() / 2).copied().unwrap_or(0);
    let max = samples.last().copied().unwrap_or(0);
    (median, max)
}

/// Prints `SAFFRON-IRQ requested= delivered= asserted= lowered= late= median_us= max_us=` and
/// fails unless every round was delivered, seen asserted and lowered.
pub fn run(mut opts: Options) -> Result<()> {
    let slot = opts.take("slot");
    let count = opts.u64_or("count", 1, MAX_COUNT)?;
    let uio_path = opts.take("uio").unwrap_or_else(|| "/dev/uio0".to_string());
    let timeout = Duration::from_millis(opts.u64_or("timeout-ms", DEFAULT_TIMEOUT_MS, 600_000)?);
    opts.finish()?;

    let dev = super::find_device(slot)?;
    let qxl = Qxl::open(&dev)?;
    let config = dev.config()?;
    let mut uio = Uio::open(Path::new(&uio_path))?;

    // Start from a quiet line, whatever an earlier run left behind.
    qxl.set_int_mask(0)?;
    qxl.set_int_pending(0)?;
    qxl.out(port::UPDATE_IRQ, 0)?;
    let _ = uio.wait_event(Duration::ZERO)?;
    unmask(&config)?;

    let (mut delivered, mut asserted, mut lowered, mut late) = (0u64, 0u64, 0u64, 0u64);
    let mut latencies = Vec::new();
    for _ in 0..count {
        // An interrupt that arrived after the previous round gave up must not count for this one.
        if uio.wait_event(Duration::ZERO)?.is_some() {
            late += 1;
        }
        qxl.set_int_mask(TEST_EVENT)?;
        qxl.set_int_pending(TEST_EVENT)?;
        let start = Instant::now();
        qxl.out(port::UPDATE_IRQ, 0)?;
        if uio.wait_event(timeout)?.is_some() {
            latencies.push(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
            delivered += 1;
        }
        // The line stays up until we ack, with or without INTx disable set.
        if wait_status(&config, true, timeout)? {
            asserted += 1;
        }
        qxl.set_int_pending(0)?;
        qxl.out(port::UPDATE_IRQ, 0)?;
        if wait_status(&config, false, timeout)? {
            lowered += 1;
        }
        unmask(&config)?;
    }
    qxl.set_int_mask(0)?;
    qxl.out(port::UPDATE_IRQ, 0)?;

    let (median_us, max_us) = median_max(&mut latencies);
    println!(
        "SAFFRON-IRQ requested={count} delivered={delivered} asserted={asserted} \
         lowered={lowered} late={late} median_us={median_us} max_us={max_us}"
    );
    if delivered != count || asserted != count || lowered != count {
        return Err(Error::Check(format!(
            "{count} rounds: {delivered} delivered, {asserted} asserted, {lowered} lowered"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_max() {
        assert_eq!(median_max(&mut []), (0, 0));
        assert_eq!(median_max(&mut [7]), (7, 7));
        assert_eq!(median_max(&mut [30, 10, 20]), (20, 30));
        assert_eq!(median_max(&mut [40, 10, 30, 20]), (30, 40));
    }
}
