//! Arbitrary memslot tables, pointers and chunk chains through `memslot::translate`,
//! `chunks::read_chain` and `chunks::read_flat`, checking what they promise: a translation
//! that succeeds lies wholly inside its slot and that slot inside a BAR; a chain never
//! yields more than its byte cap.
//!
//! Input: generation (u8), 3 × slot (id u8, start u32, len u32, as offsets from the base of
//! RAM or VRAM picked by the id's top bit), 4 × probe (phys u64, size u64), chain start
//! (phys u64, inline flag u8, inline header 20 bytes), caps (bytes u32, chunks u16), then
//! RAM contents.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saffron_fuzz::*;
use saffron_ring::abi::{QXLDataChunk, QXLMemSlot};
use saffron_ring::chunks::{ChainStart, ChunkLimits, read_chain, read_flat};
use saffron_ring::memslot::{MemSlotTable, phys_slot_id};
use std::sync::OnceLock;
use vm_memory::GuestMemoryMmap;

static MEM: OnceLock<GuestMemoryMmap> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let mem = MEM.get_or_init(memory);
    let mut r = Reader::new(data);
    let mut slots = MemSlotTable::new();
    slots.set_generation(r.u8());
    for _ in 0..3 {
        let id = r.u8();
        let base = if id & 0x80 != 0 { VRAM } else { RAM };
        let start = base + u64::from(r.u32());
        let end = start.wrapping_add(u64::from(r.u32()));
        let _ = slots.add(
            u32::from(id & 0x7f),
            QXLMemSlot {
                mem_start: start,
                mem_end: end,
            },
            &bars(),
        );
    }
    let bar_of = |a: u64, len: u64| {
        bars()
            .iter()
            .any(|b| a >= b.base.0 && a.checked_add(len).is_some_and(|e| e <= b.base.0 + b.len))
    };
    for _ in 0..4 {
        let (phys, size) = (r.u64(), r.u64());
        if let Ok(addr) = slots.translate(phys, size) {
            let slot = slots
                .get(u32::from(phys_slot_id(phys)))
                .expect("translated");
            assert!(addr.0 >= slot.start.0);
            assert!(
                addr.0 + size <= slot.start.0 + slot.size,
                "object leaves its slot"
            );
            assert!(bar_of(addr.0, size), "object leaves the BARs");
        }
        if let Ok(bytes) = read_flat(mem, &slots, phys, size, 1 << 16) {
            assert_eq!(bytes.len() as u64, size);
        }
        let _ = slots.remaining(phys);
    }
    let start_phys = r.u64();
    let inline = r.u8() & 1 == 1;
    let header = QXLDataChunk {
        data_size: r.u32(),
        prev_chunk: r.u64(),
        next_chunk: r.u64(),
    };
    let limits = ChunkLimits {
        max_bytes: u64::from(r.u32()).min(1 << 20),
        max_chunks: u32::from(r.u16()),
    };
    load_ram(mem, r.rest());
    let start = if inline {
        ChainStart::Inline {
            header,
            header_at: start_phys,
        }
    } else {
        ChainStart::At(start_phys)
    };
    if let Ok(bytes) = read_chain(mem, &slots, start, limits) {
        assert!(bytes.len() as u64 <= limits.max_bytes);
    }
});
