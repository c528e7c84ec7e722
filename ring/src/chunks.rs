//! Reading QXLDataChunk chains into one owned buffer.
//!
//! Bitmaps, QUIC data, clip lists, paths, glyph strings and cursor shapes are stored by the
//! guest as linked chunks, each possibly in a different memslot. The chain is guest data:
//! it can loop, repeat a chunk, point outside the slots, or add up to more than the host
//! should ever allocate. Every chunk header is read once, every chunk's data range is
//! translated on its own, the total length is capped before anything is allocated, the
//! number of chunks (empty ones included) is capped, and a chunk that shares a byte with an
//! earlier chunk of the same chain ends the chain as an error: honest chunks never overlap,
//! so a loop is caught at its first repeat (one map lookup per chunk) and no chain can make
//! the device copy more than the memory its slots cover.

use std::collections::BTreeMap;

use thiserror::Error;
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemory, GuestMemoryError};

use crate::abi::{QXLDataChunk, QXLPHYSICAL};
use crate::memslot::{MemSlotError, MemSlotTable, phys_add};

/// Most chunks one chain may have.
///
/// Linux sends single-chunk data; X and Windows drivers split large images into chunks of
/// at least a page. 65536 page-sized chunks cover 256 MiB, the largest payload
/// ([`MAX_CHUNK_DATA`]), so no honest chain needs more. (Loops end earlier, at the first
/// chunk that overlaps another; this caps chains of many tiny distinct chunks.)
pub const MAX_CHUNKS: u32 = 65_536;

/// Most bytes one chain may hold: one 8192 × 8192 image at 32 bpp
/// (`parse::MAX_IMAGE_BYTES`), the largest frame any QXL driver sends (Linux's and QEMU's
/// largest mode is 8192 × 8192). Parsers tighten it to the size they expect; since chunks
/// may not overlap, a chain is also bounded by the memory its slots cover (128 MiB with the
/// default BARs), so a looping or self-overlapping chain is refused after copying each
/// byte of guest memory at most once, never after copying this much.
pub const MAX_CHUNK_DATA: u64 = crate::parse::MAX_IMAGE_BYTES;

const HEADER_SIZE: u64 = core::mem::size_of::<QXLDataChunk>() as u64;

/// Errors reading a chunk chain.
#[derive(Debug, Error)]
pub enum ChunkError {
    #[error("chunk address does not translate")]
    Translate(#[from] MemSlotError),
    #[error("guest memory access at {addr:#x} failed")]
    Memory {
        addr: u64,
        #[source]
        source: GuestMemoryError,
    },
    #[error("chain has more than {limit} chunks (a loop, or a DoS attempt)")]
    TooManyChunks { limit: u32 },
    #[error("chain holds more than {limit} bytes (next chunk adds {chunk_size})")]
    TooLarge { limit: u64, chunk_size: u32 },
    #[error("chunk at {addr:#x} overlaps an earlier chunk of the chain (a loop)")]
    Overlap { addr: u64 },
}

/// The guest memory (device addresses) a chain's chunks, header and data, have covered.
#[derive(Default)]
struct Covered(BTreeMap<u64, u64>);

impl Covered {
    /// Records `[start, end)`; false if it shares a byte with a range recorded before.
    fn claim(&mut self, start: u64, end: u64) -> bool {
        let before = self
            .0
            .range(..=start)
            .next_back()
            .is_some_and(|(_, e)| *e > start);
        let after = self.0.range(start..).next().is_some_and(|(s, _)| *s < end);
        if before || after {
            return false;
        }
        self.0.insert(start, end);
        true
    }
}

/// Caps for one chain; parsers tighten them when the expected size is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkLimits {
    pub max_bytes: u64,
    pub max_chunks: u32,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            max_bytes: MAX_CHUNK_DATA,
            max_chunks: MAX_CHUNKS,
        }
    }
}

impl ChunkLimits {
    /// The default limits with at most `max_bytes` of data.
    pub fn bytes(max_bytes: u64) -> Self {
        ChunkLimits {
            max_bytes: max_bytes.min(MAX_CHUNK_DATA),
            ..Self::default()
        }
    }
}

/// Where a chain starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainStart {
    /// A pointer to the first chunk header (bitmap data).
    At(QXLPHYSICAL),
    /// The first header is embedded in a structure already copied out of guest memory; its
    /// data follows it at `header_at + 20`, in the structure's slot.
    Inline {
        header: QXLDataChunk,
        header_at: QXLPHYSICAL,
    },
}

/// Copies the payload of a chain into one buffer.
pub fn read_chain<M: GuestMemory>(
    mem: &M,
    slots: &MemSlotTable,
    start: ChainStart,
    limits: ChunkLimits,
) -> Result<Vec<u8>, ChunkError> {
    read_chain_observed(mem, slots, start, limits, &mut |_, _| {})
}

/// [`read_chain`], also handing every guest read to `observe` as (pointer, bytes copied):
/// each chunk header read through a pointer, then that chunk's data. The command recorder
/// uses it to keep exactly the guest memory a command referenced.
pub fn read_chain_observed<M: GuestMemory>(
    mem: &M,
    slots: &MemSlotTable,
    start: ChainStart,
    limits: ChunkLimits,
    observe: &mut dyn FnMut(QXLPHYSICAL, &[u8]),
) -> Result<Vec<u8>, ChunkError> {
    let (mut header, mut header_at) = match start {
        ChainStart::At(phys) => (read_header(mem, slots, phys, observe)?, phys),
        ChainStart::Inline { header, header_at } => (header, header_at),
    };
    let mut data = Vec::new();
    let mut chunks = 0u32;
    let mut covered = Covered::default();
    loop {
        chunks += 1;
        if chunks > limits.max_chunks {
            return Err(ChunkError::TooManyChunks {
                limit: limits.max_chunks,
            });
        }
        let chunk_size = header.data_size;
        let total = (data.len() as u64).checked_add(u64::from(chunk_size));
        match total {
            Some(total) if total <= limits.max_bytes => {}
            _ => {
                return Err(ChunkError::TooLarge {
                    limit: limits.max_bytes,
                    chunk_size,
                });
            }
        }
        let data_at = phys_add(header_at, HEADER_SIZE)?;
        let addr = slots.translate(data_at, u64::from(chunk_size))?;
        // The header lies just before its data in the same slot (phys_add kept the slot).
        let start = addr.0.saturating_sub(HEADER_SIZE);
        let end = addr.0.saturating_add(u64::from(chunk_size));
        if !covered.claim(start, end) {
            return Err(ChunkError::Overlap { addr: start });
        }
        if chunk_size != 0 {
            let old_len = data.len();
            // chunk_size ≤ max_bytes ≤ MAX_CHUNK_DATA, far below usize::MAX.
            data.resize(old_len + chunk_size as usize, 0);
            let dst = data.get_mut(old_len..).unwrap_or_default();
            mem.read_slice(dst, addr).map_err(mem_err(addr))?;
            observe(data_at, dst);
        }
        let next = header.next_chunk;
        if next == 0 {
            return Ok(data);
        }
        header = read_header(mem, slots, next, observe)?;
        header_at = next;
    }
}

/// Copies `len` contiguous bytes at `phys` (data that is not chunked, e.g. DIRECT bitmaps).
pub fn read_flat<M: GuestMemory>(
    mem: &M,
    slots: &MemSlotTable,
    phys: QXLPHYSICAL,
    len: u64,
    max_bytes: u64,
) -> Result<Vec<u8>, ChunkError> {
    if len > max_bytes.min(MAX_CHUNK_DATA) {
        return Err(ChunkError::TooLarge {
            limit: max_bytes,
            chunk_size: u32::try_from(len).unwrap_or(u32::MAX),
        });
    }
    let addr = slots.translate(phys, len)?;
    // len ≤ MAX_CHUNK_DATA.
    let mut data = vec![0u8; len as usize];
    mem.read_slice(&mut data, addr).map_err(mem_err(addr))?;
    Ok(data)
}

fn read_header<M: GuestMemory>(
    mem: &M,
    slots: &MemSlotTable,
    phys: QXLPHYSICAL,
    observe: &mut dyn FnMut(QXLPHYSICAL, &[u8]),
) -> Result<QXLDataChunk, ChunkError> {
    let addr = slots.translate(phys, HEADER_SIZE)?;
    let header: QXLDataChunk = mem.read_obj(addr).map_err(mem_err(addr))?;
    observe(phys, header.as_slice());
    Ok(header)
}

fn mem_err(addr: GuestAddress) -> impl FnOnce(GuestMemoryError) -> ChunkError {
    move |source| ChunkError::Memory {
        addr: addr.0,
        source,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::abi::QXLMemSlot;
    use crate::memslot::{BarRange, make_phys};
    use proptest::prelude::*;
    use vm_memory::GuestMemoryMmap;

    /// A BAR of 1 MiB at 1 MiB, registered as slot 1 (offset 0 = BAR start), and a second
    /// BAR at 4 MiB as slot 2.
    pub(crate) const BAR: u64 = 0x10_0000;
    pub(crate) const BAR2: u64 = 0x40_0000;

    pub(crate) fn setup() -> (GuestMemoryMmap, MemSlotTable) {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x80_0000)]).unwrap();
        let bars = [
            BarRange {
                base: GuestAddress(BAR),
                len: 0x10_0000,
            },
            BarRange {
                base: GuestAddress(BAR2),
                len: 0x10_0000,
            },
        ];
        let mut slots = MemSlotTable::new();
        slots
            .add(
                1,
                QXLMemSlot {
                    mem_start: BAR,
                    mem_end: BAR + 0x10_0000,
                },
                &bars,
            )
            .unwrap();
        slots
            .add(
                2,
                QXLMemSlot {
                    mem_start: BAR2,
                    mem_end: BAR2 + 0x10_0000,
                },
                &bars,
            )
            .unwrap();
        (mem, slots)
    }

    /// Slot 1 pointer to BAR offset `offset`.
    pub(crate) fn p(offset: u64) -> QXLPHYSICAL {
        make_phys(1, 0, offset).unwrap()
    }

    /// Writes a chunk with `data` at BAR offset `offset` of slot 1, linked to `next`.
    pub(crate) fn put_chunk(mem: &GuestMemoryMmap, offset: u64, data: &[u8], next: QXLPHYSICAL) {
        let header = QXLDataChunk {
            data_size: data.len() as u32,
            prev_chunk: 0,
            next_chunk: next,
        };
        mem.write_obj(header, GuestAddress(BAR + offset)).unwrap();
        mem.write_slice(data, GuestAddress(BAR + offset + 20))
            .unwrap();
    }

    #[test]
    fn concatenates_chunks_across_slots() {
        let (mem, slots) = setup();
        put_chunk(&mem, 0x100, b"hello ", p(0x200));
        put_chunk(&mem, 0x200, b"", make_phys(2, 0, 0x10).unwrap());
        let header = QXLDataChunk {
            data_size: 5,
            prev_chunk: 0,
            next_chunk: 0,
        };
        mem.write_obj(header, GuestAddress(BAR2 + 0x10)).unwrap();
        mem.write_slice(b"world", GuestAddress(BAR2 + 0x10 + 20))
            .unwrap();
        let data = read_chain(
            &mem,
            &slots,
            ChainStart::At(p(0x100)),
            ChunkLimits::default(),
        );
        assert_eq!(data.unwrap(), b"hello world");
    }

    #[test]
    fn observer_sees_every_header_and_data_read_in_order() {
        let (mem, slots) = setup();
        put_chunk(&mem, 0x100, b"ab", p(0x200));
        put_chunk(&mem, 0x200, b"", p(0x300));
        put_chunk(&mem, 0x300, b"cde", 0);
        let mut seen = Vec::new();
        let data = read_chain_observed(
            &mem,
            &slots,
            ChainStart::At(p(0x100)),
            ChunkLimits::default(),
            &mut |phys, bytes| seen.push((phys, bytes.to_vec())),
        );
        assert_eq!(data.unwrap(), b"abcde");
        let header = |data_size: u32, next| {
            QXLDataChunk {
                data_size,
                prev_chunk: 0,
                next_chunk: next,
            }
            .as_slice()
            .to_vec()
        };
        assert_eq!(
            seen,
            vec![
                (p(0x100), header(2, p(0x200))),
                (p(0x114), b"ab".to_vec()),
                (p(0x200), header(0, p(0x300))),
                (p(0x300), header(3, 0)),
                (p(0x314), b"cde".to_vec()),
            ]
        );
    }

    #[test]
    fn inline_start_uses_the_given_header() {
        let (mem, slots) = setup();
        mem.write_slice(b"abc", GuestAddress(BAR + 0x40 + 20))
            .unwrap();
        // Memory holds a different header; the copy we were given wins (no double fetch).
        put_chunk(&mem, 0x40, b"zzzzzzzz", 0);
        mem.write_slice(b"abc", GuestAddress(BAR + 0x40 + 20))
            .unwrap();
        let header = QXLDataChunk {
            data_size: 3,
            prev_chunk: 0,
            next_chunk: 0,
        };
        let start = ChainStart::Inline {
            header,
            header_at: p(0x40),
        };
        assert_eq!(
            read_chain(&mem, &slots, start, ChunkLimits::default()).unwrap(),
            b"abc"
        );
    }

    #[test]
    fn loops_are_cut_off_at_the_first_repeat() {
        let (mem, slots) = setup();
        let mut reads = 0;
        let mut count = |_: QXLPHYSICAL, _: &[u8]| reads += 1;
        // A chunk pointing at itself: the second visit overlaps the first.
        put_chunk(&mem, 0x100, b"x", p(0x100));
        let err = read_chain_observed(
            &mem,
            &slots,
            ChainStart::At(p(0x100)),
            ChunkLimits::bytes(1 << 30),
            &mut count,
        );
        assert!(matches!(err, Err(ChunkError::Overlap { addr }) if addr == BAR + 0x100));
        assert_eq!(
            reads, 3,
            "header, data, header again: nothing more was copied"
        );
        // Empty chunks too, and a longer cycle 0x100 → 0x200 → 0x300 → 0x200.
        put_chunk(&mem, 0x100, b"", p(0x200));
        put_chunk(&mem, 0x200, b"ab", p(0x300));
        put_chunk(&mem, 0x300, b"", p(0x200));
        let err = read_chain(
            &mem,
            &slots,
            ChainStart::At(p(0x100)),
            ChunkLimits::default(),
        );
        assert!(matches!(err, Err(ChunkError::Overlap { addr }) if addr == BAR + 0x200));
        // Distinct headers whose data overlap (each chunk's data runs over the next header).
        put_chunk(&mem, 0x400, &[7; 40], p(0x420));
        put_chunk(&mem, 0x420, &[7; 40], 0);
        let err = read_chain(
            &mem,
            &slots,
            ChainStart::At(p(0x400)),
            ChunkLimits::default(),
        );
        assert!(matches!(err, Err(ChunkError::Overlap { addr }) if addr == BAR + 0x420));
        // Touching is not overlapping: chunk 2 starts right where chunk 1's data ends.
        put_chunk(&mem, 0x500, b"abcd", p(0x518));
        put_chunk(&mem, 0x518, b"ef", 0);
        let ok = read_chain(
            &mem,
            &slots,
            ChainStart::At(p(0x500)),
            ChunkLimits::default(),
        );
        assert_eq!(ok.unwrap(), b"abcdef");
        // The chunk cap still bounds a long chain of distinct empty chunks.
        for i in 0..8u64 {
            put_chunk(&mem, 0x1000 + i * 0x20, b"", p(0x1000 + (i + 1) * 0x20));
        }
        let limits = ChunkLimits {
            max_bytes: 10,
            max_chunks: 7,
        };
        let err = read_chain(&mem, &slots, ChainStart::At(p(0x1000)), limits);
        assert!(matches!(err, Err(ChunkError::TooManyChunks { limit: 7 })));
    }

    #[test]
    fn a_loop_through_two_slots_over_the_same_memory_is_caught() {
        let (mem, _) = setup();
        // Slots 1 and 3 both map the BAR at 1 MiB: the same chunk under two pointers.
        let bar = BarRange {
            base: GuestAddress(BAR),
            len: 0x10_0000,
        };
        let mut slots = MemSlotTable::new();
        for id in [1, 3] {
            let range = QXLMemSlot {
                mem_start: BAR,
                mem_end: BAR + 0x10_0000,
            };
            slots.add(id, range, &[bar]).unwrap();
        }
        let alias = make_phys(3, 0, 0x100).unwrap();
        put_chunk(&mem, 0x100, b"loop", alias);
        let err = read_chain(
            &mem,
            &slots,
            ChainStart::At(p(0x100)),
            ChunkLimits::default(),
        );
        assert!(matches!(err, Err(ChunkError::Overlap { addr }) if addr == BAR + 0x100));
    }

    #[test]
    fn size_caps_apply_before_reading() {
        let (mem, slots) = setup();
        put_chunk(&mem, 0x100, &[1; 64], p(0x100));
        let err = read_chain(
            &mem,
            &slots,
            ChainStart::At(p(0x100)),
            ChunkLimits::bytes(100),
        );
        assert!(matches!(
            err,
            Err(ChunkError::TooLarge {
                limit: 100,
                chunk_size: 64
            })
        ));
        let header = QXLDataChunk {
            data_size: u32::MAX,
            prev_chunk: 0,
            next_chunk: 0,
        };
        mem.write_obj(header, GuestAddress(BAR)).unwrap();
        let err = read_chain(&mem, &slots, ChainStart::At(p(0)), ChunkLimits::default());
        assert!(matches!(err, Err(ChunkError::TooLarge { .. })));
    }

    #[test]
    fn each_chunk_must_fit_its_slot() {
        let (mem, slots) = setup();
        // Data would run past the end of slot 1.
        let header = QXLDataChunk {
            data_size: 64,
            prev_chunk: 0,
            next_chunk: 0,
        };
        mem.write_obj(header, GuestAddress(BAR + 0x10_0000 - 40))
            .unwrap();
        let err = read_chain(
            &mem,
            &slots,
            ChainStart::At(p(0x10_0000 - 40)),
            ChunkLimits::default(),
        );
        assert!(matches!(
            err,
            Err(ChunkError::Translate(MemSlotError::OutOfSlot { .. }))
        ));
        // A header pointer into an unregistered slot.
        put_chunk(&mem, 0, b"a", make_phys(5, 0, 0).unwrap());
        let err = read_chain(&mem, &slots, ChainStart::At(p(0)), ChunkLimits::default());
        assert!(matches!(
            err,
            Err(ChunkError::Translate(MemSlotError::SlotInactive { .. }))
        ));
    }

    #[test]
    fn flat_reads_are_bounded() {
        let (mem, slots) = setup();
        mem.write_slice(b"pixels", GuestAddress(BAR + 8)).unwrap();
        assert_eq!(read_flat(&mem, &slots, p(8), 6, 100).unwrap(), b"pixels");
        assert!(read_flat(&mem, &slots, p(8), 200, 100).is_err());
        assert!(read_flat(&mem, &slots, p(0x10_0000 - 2), 6, 100).is_err());
    }

    proptest! {
        /// Random chunk graphs written into a slot: the reader either returns exactly the
        /// concatenation along next_chunk (when the walk ends within the caps) or an error,
        /// and never more than the byte cap.
        #[test]
        fn random_chains(
            nodes in proptest::collection::vec((0u32..300, 0usize..12), 1..12),
            max_bytes in 0u64..2000,
            max_chunks in 1u32..20,
        ) {
            let (mem, slots) = setup();
            // Node i lives at offset i * 0x400; next index ≥ len means end of chain.
            for (i, &(size, next)) in nodes.iter().enumerate() {
                let next_phys = if next < nodes.len() { p(next as u64 * 0x400) } else { 0 };
                let data = vec![i as u8; size as usize];
                put_chunk(&mem, i as u64 * 0x400, &data, next_phys);
            }
            let limits = ChunkLimits { max_bytes, max_chunks };
            let result = read_chain(&mem, &slots, ChainStart::At(p(0)), limits);
            // Model walk.
            let mut expect = Vec::new();
            let mut at = 0usize;
            let mut count = 0u32;
            let model = loop {
                count += 1;
                if count > max_chunks { break None; }
                let (size, next) = nodes[at];
                if expect.len() as u64 + u64::from(size) > max_bytes { break None; }
                expect.extend(std::iter::repeat_n(at as u8, size as usize));
                if next >= nodes.len() { break Some(expect); }
                at = next;
            };
            match (result, model) {
                (Ok(data), Some(expect)) => prop_assert_eq!(data, expect),
                (Err(_), None) => {}
                (r, m) => prop_assert!(false, "reader {:?} vs model {:?}", r.map(|d| d.len()), m.map(|d| d.len())),
            }
        }
    }
}
