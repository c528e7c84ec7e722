//! A descriptor chain as guest memory segments: the driver-readable ones first, then the
//! driver-writable ones (virtio requires that order). Lengths are summed with checked
//! arithmetic and bounded, and guest bytes are only reached through vm-memory's checked
//! `read_slice`/`write_slice`.

use thiserror::Error;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};

/// What is wrong with a chain or its memory.
#[derive(Debug, Error)]
pub enum ChainError {
    /// A readable descriptor after a writable one.
    #[error("readable descriptor after a writable one")]
    Order,
    /// More readable or writable bytes than this kind of message may have.
    #[error("{what} bytes exceed {max}")]
    TooLong {
        /// "readable" or "writable".
        what: &'static str,
        /// The bound.
        max: usize,
    },
    /// A segment not in guest memory.
    #[error("guest memory: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
    /// A write past the writable part.
    #[error("{need} bytes do not fit in {have} writable bytes at offset {at}")]
    NoRoom { need: usize, have: usize, at: usize },
}

/// One descriptor's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub addr: GuestAddress,
    pub len: usize,
}

/// A chain's buffers, split by direction.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Segments {
    pub readable: Vec<Segment>,
    pub writable: Vec<Segment>,
    /// Sum of the readable lengths.
    pub readable_len: usize,
    /// Sum of the writable lengths.
    pub writable_len: usize,
}

impl Segments {
    /// Splits `(address, length, write-only)` descriptors, refusing a chain with more than
    /// `max` bytes either way or with a readable buffer after a writable one.
    pub fn from_descriptors(
        descs: impl IntoIterator<Item = (GuestAddress, u32, bool)>,
        max: usize,
    ) -> Result<Segments, ChainError> {
        let mut s = Segments::default();
        for (addr, len, write_only) in descs {
            let len = len as usize;
            let seg = Segment { addr, len };
            if write_only {
                s.writable_len = s
                    .writable_len
                    .checked_add(len)
                    .filter(|n| *n <= max)
                    .ok_or(ChainError::TooLong {
                        what: "writable",
                        max,
                    })?;
                s.writable.push(seg);
            } else {
                if !s.writable.is_empty() {
                    return Err(ChainError::Order);
                }
                s.readable_len = s
                    .readable_len
                    .checked_add(len)
                    .filter(|n| *n <= max)
                    .ok_or(ChainError::TooLong {
                        what: "readable",
                        max,
                    })?;
                s.readable.push(seg);
            }
        }
        Ok(s)
    }

    /// Copies the readable bytes out of guest memory (once; the copy is what gets parsed).
    pub fn read_all<M: GuestMemory>(&self, mem: &M) -> Result<Vec<u8>, ChainError> {
        let mut out = vec![0u8; self.readable_len];
        let mut at = 0;
        for seg in &self.readable {
            // at + len ≤ readable_len by construction.
            let dst = out.get_mut(at..at + seg.len).ok_or(ChainError::NoRoom {
                need: seg.len,
                have: self.readable_len,
                at,
            })?;
            mem.read_slice(dst, seg.addr)?;
            at += seg.len;
        }
        Ok(out)
    }

    /// Writes `bytes` at offset `at` of the writable part (across segments).
    pub fn write_at<M: GuestMemory>(
        &self,
        mem: &M,
        at: usize,
        bytes: &[u8],
    ) -> Result<(), ChainError> {
        let end = at
            .checked_add(bytes.len())
            .filter(|e| *e <= self.writable_len);
        if end.is_none() {
            return Err(ChainError::NoRoom {
                need: bytes.len(),
                have: self.writable_len,
                at,
            });
        }
        let mut seg_start = 0usize;
        let mut src = bytes;
        let mut pos = at;
        for seg in &self.writable {
            let seg_end = seg_start + seg.len;
            if src.is_empty() {
                break;
            }
            if pos < seg_end {
                let off = pos - seg_start;
                let n = (seg.len - off).min(src.len());
                let addr = seg
                    .addr
                    .checked_add(off as u64)
                    .ok_or(vm_memory::GuestMemoryError::InvalidGuestAddress(seg.addr))?;
                mem.write_slice(&src[..n], addr)?;
                src = &src[n..];
                pos += n;
            }
            seg_start = seg_end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap()
    }

    #[test]
    fn splits_reads_and_writes_across_segments() {
        let m = mem();
        m.write_slice(&[1, 2, 3], GuestAddress(0x100)).unwrap();
        m.write_slice(&[4, 5], GuestAddress(0x200)).unwrap();
        let s = Segments::from_descriptors(
            [
                (GuestAddress(0x100), 3, false),
                (GuestAddress(0x200), 2, false),
                (GuestAddress(0x300), 3, true),
                (GuestAddress(0x400), 5, true),
            ],
            64,
        )
        .unwrap();
        assert_eq!(s.read_all(&m).unwrap(), vec![1, 2, 3, 4, 5]);
        assert_eq!((s.readable_len, s.writable_len), (5, 8));
        s.write_at(&m, 2, &[9, 8, 7, 6]).unwrap();
        let mut a = [0u8; 3];
        let mut b = [0u8; 3];
        m.read_slice(&mut a, GuestAddress(0x300)).unwrap();
        m.read_slice(&mut b, GuestAddress(0x400)).unwrap();
        assert_eq!((a, b), ([0, 0, 9], [8, 7, 6]));
        assert!(matches!(
            s.write_at(&m, 6, &[0; 3]),
            Err(ChainError::NoRoom { .. })
        ));
        assert!(matches!(
            s.write_at(&m, usize::MAX, &[0]),
            Err(ChainError::NoRoom { .. })
        ));
    }

    #[test]
    fn hostile_chains() {
        assert!(matches!(
            Segments::from_descriptors(
                [(GuestAddress(0), 4, true), (GuestAddress(8), 4, false)],
                64
            ),
            Err(ChainError::Order)
        ));
        assert!(matches!(
            Segments::from_descriptors([(GuestAddress(0), u32::MAX, false)], 64),
            Err(ChainError::TooLong { .. })
        ));
        // Outside guest memory: an error, not a panic.
        let s = Segments::from_descriptors([(GuestAddress(u64::MAX - 1), 8, false)], 64).unwrap();
        assert!(s.read_all(&mem()).is_err());
        let s = Segments::from_descriptors([(GuestAddress(u64::MAX - 1), 8, true)], 64).unwrap();
        assert!(s.write_at(&mem(), 0, &[0; 8]).is_err());
    }
}
