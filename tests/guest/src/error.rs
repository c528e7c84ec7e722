//! The one error type of the probe.
//!
//! Every failure ends up on the serial console as a single `SAFFRON-ERROR` line, so each variant
//! says which file, offset or value was wrong: the host test only sees that text.

use std::io;
use std::path::PathBuf;

/// Everything that can make a subcommand fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line was wrong (unknown subcommand or option, missing or bad value).
    #[error("usage: {0}")]
    Usage(String),
    /// A system call on a file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing (`open`, `read`, `mmap`, ...).
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying OS error.
        source: io::Error,
    },
    /// A read or write moved fewer bytes than asked, which sysfs does for out-of-range accesses.
    #[error("short {op} on {path} at offset {offset:#x}: {done} of {wanted} bytes")]
    ShortIo {
        /// `read` or `write`.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The file offset of the access.
        offset: u64,
        /// Bytes actually moved.
        done: usize,
        /// Bytes asked for.
        wanted: usize,
    },
    /// A sysfs file did not hold what the kernel documents.
    #[error("unexpected content in {path}: {content:?}")]
    Sysfs {
        /// The file read.
        path: PathBuf,
        /// What it held (trimmed).
        content: String,
    },
    /// No PCI function with our vendor and device id is present.
    #[error("no PCI device {vendor:04x}:{device:04x} under {}", dir.display())]
    NoDevice {
        /// Vendor id searched for.
        vendor: u16,
        /// Device id searched for.
        device: u16,
        /// Directory scanned.
        dir: PathBuf,
    },
    /// `--slot` names a function that is not our device.
    #[error("slot {slot} is {vendor:04x}:{device:04x}, not the QXL device")]
    WrongDevice {
        /// The slot given.
        slot: String,
        /// Its vendor id.
        vendor: u16,
        /// Its device id.
        device: u16,
    },
    /// The device does not decode the address space we need, even after asking the kernel to
    /// enable it.
    #[error("slot {slot}: {space} decoding is off (command={command:#06x})")]
    DecodingOff {
        /// The slot.
        slot: String,
        /// `memory` or `I/O`.
        space: &'static str,
        /// The command register as read.
        command: u16,
    },
    /// An access would fall outside a BAR or buffer.
    #[error("{what}: range [{offset:#x}, +{len:#x}) does not fit in {size:#x} bytes")]
    OutOfRange {
        /// Which region.
        what: &'static str,
        /// Start of the access.
        offset: u64,
        /// Length of the access.
        len: u64,
        /// Size of the region.
        size: u64,
    },
    /// A check on the device's behaviour failed; the text says which.
    #[error("{0}")]
    Check(String),
}

impl Error {
    /// Wraps an I/O error with the operation and file it came from.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Result alias used throughout the probe.
pub type Result<T> = std::result::Result<T, Error>;
