//! One module per subcommand; each parses its own options and prints its `SAFFRON-` lines.

pub mod agent_stub;
pub mod bar_rw;
pub mod bench;
pub mod cursor;
pub mod fb;
pub mod fbbench;
pub mod find;
pub mod heads;
pub mod hostile;
pub mod input;
pub mod irq;
pub mod kms;
pub mod log;
pub mod qxl_surface;
pub mod scroll;
pub mod sound;
pub mod sync;
pub mod xwd;

use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::pci::{self, PciDevice};

/// Finds the device at `--slot`, or the first one present.
///
/// Commands take `--slot` out of their options first and call this only after
/// [`Options::finish`], so a mistyped option is reported as such even where no device exists.
fn find_device(slot: Option<String>) -> Result<PciDevice> {
    PciDevice::find(&pci::devices_dir(), slot.as_deref())
}

/// Hex SHA-256 of `data`, the form the host test compares.
fn sha256_hex(data: &[u8]) -> String {
    crate::image::hex(&Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::pattern;

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    /// The digest `rig.sh`'s bar-rw step must print as write_sha256 (host reference value).
    #[test]
    fn sha256_of_rig_write_pattern() {
        assert_eq!(
            sha256_hex(&pattern(0x5AFF_0001, 0x10_0000)),
            "c38cbbdb4bc3577a5d29aa71a97383fd522e928ca64f9f97e6199c342ceb6a8c"
        );
    }
}
