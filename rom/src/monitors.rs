//! The client monitors config in the ROM: the layout the host side would like the guest to
//! use, guarded by a CRC the guest checks before trusting it (it may read the ROM while the
//! device rewrites it).
//!
//! The CRC is the reflected CRC-32 (polynomial 0xEDB88320) with initial value 0 and no final
//! inversion — what Linux's `crc32(0, p, len)` computes — over the whole 1028-byte struct.

use saffron_ring::abi::{
    CLIENT_MONITORS_CONFIG_CRC32_POLY, QXL_CLIENT_MONITORS_MAX, QXLClientMonitorsConfig, QXLURect,
};
use thiserror::Error;
use vm_memory::ByteValued;

/// Errors building a client monitors config.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ClientMonitorsError {
    #[error("{count} heads requested, the ROM holds at most {QXL_CLIENT_MONITORS_MAX}")]
    TooManyHeads { count: usize },
    #[error("head {index} is inverted: {rect:?}")]
    InvertedHead { index: usize, rect: QXLURect },
}

/// Byte-at-a-time lookup table for the reflected polynomial.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ CLIENT_MONITORS_CONFIG_CRC32_POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// Continues a reflected CRC-32 from `crc` over `data`, with no inversion at either end.
pub fn crc32_le(mut crc: u32, data: &[u8]) -> u32 {
    for &byte in data {
        let index = usize::from((crc as u8) ^ byte);
        // `index` is a u8, and the table has 256 entries.
        crc = (crc >> 8) ^ CRC_TABLE.get(index).copied().unwrap_or_default();
    }
    crc
}

/// The CRC the guest expects in `client_monitors_config_crc` for `config`.
pub fn client_monitors_crc(config: &QXLClientMonitorsConfig) -> u32 {
    crc32_le(0, config.as_slice())
}

/// A config describing `heads` (each `{top, left, bottom, right}` in the client's space).
pub fn client_monitors_config(
    heads: &[QXLURect],
) -> Result<QXLClientMonitorsConfig, ClientMonitorsError> {
    if heads.len() > QXL_CLIENT_MONITORS_MAX {
        return Err(ClientMonitorsError::TooManyHeads { count: heads.len() });
    }
    let mut config = QXLClientMonitorsConfig::default();
    for (index, (slot, rect)) in config.heads.iter_mut().zip(heads).enumerate() {
        let (top, left, bottom, right) = (rect.top, rect.left, rect.bottom, rect.right);
        if top > bottom || left > right {
            return Err(ClientMonitorsError::InvertedHead { index, rect: *rect });
        }
        *slot = *rect;
    }
    // At most 64 heads: fits u16.
    config.count = u16::try_from(heads.len()).unwrap_or(u16::MAX);
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The CRC straight from its definition: one bit at a time, LSB first.
    fn reference_crc(data: &[u8]) -> u32 {
        let mut crc = 0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                let lsb = crc & 1;
                crc >>= 1;
                if lsb != 0 {
                    crc ^= 0xedb8_8320;
                }
            }
        }
        crc
    }

    #[test]
    fn standard_crc32_check_value() {
        // The usual CRC-32 inverts on entry and exit; "123456789" must give 0xCBF43926.
        assert_eq!(crc32_le(!0, b"123456789") ^ !0, 0xcbf4_3926);
    }

    #[test]
    fn empty_config_has_crc_zero() {
        // Initial value 0 and no inversion: an all-zero ROM area is already consistent.
        assert_eq!(client_monitors_crc(&QXLClientMonitorsConfig::default()), 0);
    }

    #[test]
    fn preferred_1280x800_matches_the_bitwise_definition() {
        let head = QXLURect {
            top: 0,
            left: 0,
            bottom: 800,
            right: 1280,
        };
        let config = client_monitors_config(&[head]).unwrap();
        assert_eq!({ config.count }, 1);
        let bytes = config.as_slice();
        assert_eq!(bytes.len(), 1028);
        assert_eq!(&bytes[..4], &[1, 0, 0, 0]);
        assert_eq!(client_monitors_crc(&config), reference_crc(bytes));
        assert_ne!(client_monitors_crc(&config), 0);
    }

    #[test]
    fn rejects_too_many_or_inverted_heads() {
        let head = QXLURect {
            top: 0,
            left: 0,
            bottom: 1,
            right: 1,
        };
        assert_eq!(
            client_monitors_config(&[head; 65]),
            Err(ClientMonitorsError::TooManyHeads { count: 65 })
        );
        assert!(client_monitors_config(&[head; 64]).is_ok());
        let bad = QXLURect {
            top: 10,
            left: 0,
            bottom: 5,
            right: 1,
        };
        assert!(matches!(
            client_monitors_config(&[head, bad]),
            Err(ClientMonitorsError::InvertedHead { index: 1, .. })
        ));
    }

    proptest! {
        #[test]
        fn table_crc_equals_bitwise_crc(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            prop_assert_eq!(crc32_le(0, &data), reference_crc(&data));
        }
    }
}
