//! Memslots: how QXLPHYSICAL pointers written by the guest become guest addresses.
//!
//! The guest registers up to [`QXL_NUM_MEMSLOTS`] ranges of its BARs (MEMSLOT_ADD) and then
//! writes pointers as (slot id, generation, offset inside the slot). Every pointer is
//! translated together with the size of the object it designates, with the rule spice-server
//! applies (stricter than QEMU's): the slot exists and is active, the generation matches and
//! `offset + size <= slot size`, in checked arithmetic. Translating bare addresses is how
//! CVE-2022-4144 happened; an off-by-one in the slot index check was CVE-2019-3813.

use thiserror::Error;
use vm_memory::GuestAddress;

use crate::abi::{QXL_NUM_MEMSLOTS, QXL_SLOT_GEN_BITS, QXL_SLOT_ID_BITS, QXLMemSlot, QXLPHYSICAL};

/// Bits of a QXLPHYSICAL holding the offset inside the slot.
pub const QXL_PHYS_OFFSET_BITS: u32 = 64 - QXL_SLOT_ID_BITS as u32 - QXL_SLOT_GEN_BITS as u32;
/// Mask selecting the offset part of a QXLPHYSICAL.
pub const QXL_PHYS_OFFSET_MASK: u64 = (1 << QXL_PHYS_OFFSET_BITS) - 1;
const GEN_SHIFT: u32 = QXL_PHYS_OFFSET_BITS;
const ID_SHIFT: u32 = 64 - QXL_SLOT_ID_BITS as u32;

/// Errors of memslot registration and address translation; all are guest bugs.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum MemSlotError {
    #[error("memslot id {id} is not below {QXL_NUM_MEMSLOTS}")]
    InvalidSlotId { id: u32 },
    #[error("memslot {id} is already active")]
    SlotActive { id: u32 },
    #[error("memslot range start {start:#x} is above its end {end:#x}")]
    InvertedRange { start: u64, end: u64 },
    #[error("memslot range {start:#x}..{end:#x} is not inside one of the device's BARs")]
    OutsideBars { start: u64, end: u64 },
    #[error("address {phys:#x} names slot {slot}, which is not active")]
    SlotInactive { phys: QXLPHYSICAL, slot: u8 },
    #[error("address {phys:#x} has generation {found}, slot {slot} has generation {expected}")]
    GenerationMismatch {
        phys: QXLPHYSICAL,
        slot: u8,
        found: u8,
        expected: u8,
    },
    #[error("object of {size} bytes at {phys:#x} overruns its slot of {slot_size} bytes")]
    OutOfSlot {
        phys: QXLPHYSICAL,
        size: u64,
        slot_size: u64,
    },
    #[error("advancing {phys:#x} by {delta} bytes leaves the offset field")]
    OffsetOverflow { phys: QXLPHYSICAL, delta: u64 },
}

/// The slot id encoded in a QXLPHYSICAL.
pub fn phys_slot_id(phys: QXLPHYSICAL) -> u8 {
    // The shift leaves exactly QXL_SLOT_ID_BITS (8) bits.
    (phys >> ID_SHIFT) as u8
}

/// The generation encoded in a QXLPHYSICAL.
pub fn phys_generation(phys: QXLPHYSICAL) -> u8 {
    ((phys >> GEN_SHIFT) & ((1 << QXL_SLOT_GEN_BITS) - 1)) as u8
}

/// The offset inside the slot encoded in a QXLPHYSICAL.
pub fn phys_offset(phys: QXLPHYSICAL) -> u64 {
    phys & QXL_PHYS_OFFSET_MASK
}

/// Builds a QXLPHYSICAL the way a driver does; `None` if `offset` does not fit its field.
pub fn make_phys(slot: u8, generation: u8, offset: u64) -> Option<QXLPHYSICAL> {
    if offset > QXL_PHYS_OFFSET_MASK {
        return None;
    }
    Some((u64::from(slot) << ID_SHIFT) | (u64::from(generation) << GEN_SHIFT) | offset)
}

/// `phys + delta` within the same slot and generation.
///
/// Structures embed their first data chunk; its address is the parent's plus a constant, and
/// must stay in the parent's slot rather than carry into the generation bits.
pub fn phys_add(phys: QXLPHYSICAL, delta: u64) -> Result<QXLPHYSICAL, MemSlotError> {
    phys_offset(phys)
        .checked_add(delta)
        .filter(|offset| *offset <= QXL_PHYS_OFFSET_MASK)
        .map(|offset| (phys & !QXL_PHYS_OFFSET_MASK) | offset)
        .ok_or(MemSlotError::OffsetOverflow { phys, delta })
}

/// The guest-physical range a memory BAR currently occupies.
///
/// BARs move when the guest reprograms them, so the caller passes the current ranges to
/// [`MemSlotTable::add`] rather than the table remembering them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarRange {
    pub base: GuestAddress,
    pub len: u64,
}

impl BarRange {
    /// Whether `[start, end)` lies inside the BAR.
    fn contains(&self, start: u64, end: u64) -> bool {
        let Some(bar_end) = self.base.0.checked_add(self.len) else {
            return false;
        };
        self.base.0 <= start && start <= end && end <= bar_end
    }
}

/// One active memslot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemSlot {
    /// Guest address of offset 0 of the slot.
    pub start: GuestAddress,
    /// Bytes addressable through the slot.
    pub size: u64,
    /// Generation addresses must carry to use the slot.
    pub generation: u8,
}

/// The device's memslots, indexed by the id in QXLPHYSICAL bits 63..56.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemSlotTable {
    slots: [Option<MemSlot>; QXL_NUM_MEMSLOTS as usize],
    generation: u8,
}

impl MemSlotTable {
    /// An empty table with generation 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers slot `id` for the guest range in `slot` (MEMSLOT_ADD).
    ///
    /// The range must lie inside one of `bars` so a guest cannot make the device read memory
    /// outside the device (e.g. the VM's own RAM). The slot gets the current
    /// [`generation`](Self::generation), which the device publishes in the ROM.
    pub fn add(
        &mut self,
        id: u32,
        slot: QXLMemSlot,
        bars: &[BarRange],
    ) -> Result<(), MemSlotError> {
        let QXLMemSlot {
            mem_start: start,
            mem_end: end,
        } = slot;
        let generation = self.generation;
        let entry = self.entry_mut(id)?;
        if entry.is_some() {
            return Err(MemSlotError::SlotActive { id });
        }
        if start > end {
            return Err(MemSlotError::InvertedRange { start, end });
        }
        if !bars.iter().any(|bar| bar.contains(start, end)) {
            return Err(MemSlotError::OutsideBars { start, end });
        }
        *entry = Some(MemSlot {
            start: GuestAddress(start),
            size: end - start,
            generation,
        });
        Ok(())
    }

    /// Unregisters slot `id` (MEMSLOT_DEL). Deleting an inactive slot is allowed.
    pub fn del(&mut self, id: u32) -> Result<(), MemSlotError> {
        *self.entry_mut(id)? = None;
        Ok(())
    }

    /// Forgets every slot (device reset). The generation is kept.
    pub fn reset(&mut self) {
        self.slots = Default::default();
    }

    /// The generation new slots get; what the ROM's `slot_generation` must say.
    pub fn generation(&self) -> u8 {
        self.generation
    }

    /// Changes the generation given to slots added from now on.
    ///
    /// QEMU keeps it at 0. Changing it on reset makes pointers the guest computed before the
    /// reset stop translating; Linux re-reads the ROM after every MEMSLOT_ADD.
    pub fn set_generation(&mut self, generation: u8) {
        self.generation = generation;
    }

    /// The active slot `id`, if any.
    pub fn get(&self, id: u32) -> Option<&MemSlot> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.slots.get(i))
            .and_then(Option::as_ref)
    }

    /// Translates the object of `size` bytes at `phys` to the guest address of its first
    /// byte, checking the whole object lies inside the slot.
    pub fn translate(&self, phys: QXLPHYSICAL, size: u64) -> Result<GuestAddress, MemSlotError> {
        let slot_id = phys_slot_id(phys);
        let slot = self
            .slots
            .get(usize::from(slot_id))
            .and_then(Option::as_ref)
            .ok_or(MemSlotError::SlotInactive {
                phys,
                slot: slot_id,
            })?;
        let found = phys_generation(phys);
        if found != slot.generation {
            return Err(MemSlotError::GenerationMismatch {
                phys,
                slot: slot_id,
                found,
                expected: slot.generation,
            });
        }
        let offset = phys_offset(phys);
        let out_of_slot = MemSlotError::OutOfSlot {
            phys,
            size,
            slot_size: slot.size,
        };
        match offset.checked_add(size) {
            Some(end) if end <= slot.size => {}
            _ => return Err(out_of_slot),
        }
        // start + offset cannot overflow: start + size of the slot was range-checked against
        // a BAR at add time and offset < slot size, but stay checked regardless.
        slot.start
            .0
            .checked_add(offset)
            .map(GuestAddress)
            .ok_or(out_of_slot)
    }

    /// Bytes addressable through all active slots together. No honest object is larger, and
    /// no honest chunk chain (whose chunks never share memory) holds more.
    pub fn covered_bytes(&self) -> u64 {
        self.slots
            .iter()
            .flatten()
            .map(|s| s.size)
            .fold(0, u64::saturating_add)
    }

    /// Bytes from `phys` to the end of its slot, for objects whose length is only known by
    /// scanning them (QXLMessage text).
    pub fn remaining(&self, phys: QXLPHYSICAL) -> Result<u64, MemSlotError> {
        self.translate(phys, 0)?;
        let slot_size = self
            .get(u32::from(phys_slot_id(phys)))
            .map(|slot| slot.size)
            .unwrap_or_default();
        Ok(slot_size.saturating_sub(phys_offset(phys)))
    }

    fn entry_mut(&mut self, id: u32) -> Result<&mut Option<MemSlot>, MemSlotError> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .ok_or(MemSlotError::InvalidSlotId { id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BAR0: BarRange = BarRange {
        base: GuestAddress(0x1000_0000),
        len: 0x400_0000,
    };
    const BAR1: BarRange = BarRange {
        base: GuestAddress(0x2000_0000),
        len: 0x100_0000,
    };

    fn slot(start: u64, end: u64) -> QXLMemSlot {
        QXLMemSlot {
            mem_start: start,
            mem_end: end,
        }
    }

    fn table_with_main() -> MemSlotTable {
        let mut table = MemSlotTable::new();
        table
            .add(1, slot(0x1000_0000, 0x13ff_e000), &[BAR0, BAR1])
            .unwrap();
        table
    }

    #[test]
    fn phys_fields_round_trip() {
        let phys = make_phys(2, 7, 0x1234_5678_9abc).unwrap();
        assert_eq!(phys_slot_id(phys), 2);
        assert_eq!(phys_generation(phys), 7);
        assert_eq!(phys_offset(phys), 0x1234_5678_9abc);
        assert_eq!(make_phys(0, 0, QXL_PHYS_OFFSET_MASK + 1), None);
    }

    #[test]
    fn add_validates_id_state_order_and_bars() {
        let mut table = table_with_main();
        assert_eq!(
            table.add(8, slot(0x1000_0000, 0x1000_1000), &[BAR0]),
            Err(MemSlotError::InvalidSlotId { id: 8 })
        );
        assert_eq!(
            table.add(1, slot(0x1000_0000, 0x1000_1000), &[BAR0]),
            Err(MemSlotError::SlotActive { id: 1 })
        );
        assert_eq!(
            table.add(2, slot(0x1000_1000, 0x1000_0000), &[BAR0]),
            Err(MemSlotError::InvertedRange {
                start: 0x1000_1000,
                end: 0x1000_0000
            })
        );
        // Straddles the end of BAR0.
        assert!(matches!(
            table.add(2, slot(0x13ff_f000, 0x1400_1000), &[BAR0, BAR1]),
            Err(MemSlotError::OutsideBars { .. })
        ));
        // Guest RAM is not a BAR.
        assert!(matches!(
            table.add(2, slot(0, 0x1000), &[BAR0, BAR1]),
            Err(MemSlotError::OutsideBars { .. })
        ));
        // A whole BAR is fine, and so is an empty range at its end.
        table
            .add(2, slot(0x2000_0000, 0x2100_0000), &[BAR0, BAR1])
            .unwrap();
        table
            .add(3, slot(0x2100_0000, 0x2100_0000), &[BAR0, BAR1])
            .unwrap();
    }

    #[test]
    fn del_and_reset_deactivate() {
        let mut table = table_with_main();
        assert_eq!(table.del(9), Err(MemSlotError::InvalidSlotId { id: 9 }));
        table.del(1).unwrap();
        table.del(1).unwrap();
        assert!(table.get(1).is_none());
        let mut table = table_with_main();
        table.reset();
        assert!(table.get(1).is_none());
        assert!(matches!(
            table.translate(make_phys(1, 0, 0).unwrap(), 1),
            Err(MemSlotError::SlotInactive { slot: 1, .. })
        ));
    }

    #[test]
    fn translate_applies_the_spice_rule() {
        let table = table_with_main();
        let size = 0x3ff_e000;
        let at = |offset| make_phys(1, 0, offset).unwrap();
        assert_eq!(table.translate(at(0x10), 16), Ok(GuestAddress(0x1000_0010)));
        assert_eq!(
            table.translate(at(size - 16), 16),
            Ok(GuestAddress(0x13ff_dff0))
        );
        assert!(matches!(
            table.translate(at(size - 15), 16),
            Err(MemSlotError::OutOfSlot { .. })
        ));
        assert!(matches!(
            table.translate(at(size), 1),
            Err(MemSlotError::OutOfSlot { .. })
        ));
        assert!(matches!(
            table.translate(at(0), u64::MAX),
            Err(MemSlotError::OutOfSlot { .. })
        ));
        assert!(matches!(
            table.translate(make_phys(1, 1, 0).unwrap(), 1),
            Err(MemSlotError::GenerationMismatch {
                found: 1,
                expected: 0,
                ..
            })
        ));
        // Slot ids 8..=255 are representable in the pointer but never valid.
        for id in [8u8, 9, 255] {
            assert!(matches!(
                table.translate(make_phys(id, 0, 0).unwrap(), 1),
                Err(MemSlotError::SlotInactive { .. })
            ));
        }
    }

    #[test]
    fn remaining_counts_to_the_slot_end() {
        let table = table_with_main();
        assert_eq!(
            table.remaining(make_phys(1, 0, 0x3ff_d000).unwrap()),
            Ok(0x1000)
        );
        assert_eq!(table.remaining(make_phys(1, 0, 0x3ff_e000).unwrap()), Ok(0));
        assert!(
            table
                .remaining(make_phys(1, 0, 0x3ff_e001).unwrap())
                .is_err()
        );
        assert!(table.remaining(make_phys(2, 0, 0).unwrap()).is_err());
    }

    #[test]
    fn generation_is_recorded_per_slot() {
        let mut table = MemSlotTable::new();
        table.set_generation(3);
        table
            .add(1, slot(0x1000_0000, 0x1000_1000), &[BAR0])
            .unwrap();
        assert_eq!(table.generation(), 3);
        assert!(table.translate(make_phys(1, 3, 0).unwrap(), 4).is_ok());
        assert!(table.translate(make_phys(1, 0, 0).unwrap(), 4).is_err());
    }

    #[test]
    fn phys_add_stays_in_the_offset_field() {
        let phys = make_phys(1, 2, 10).unwrap();
        assert_eq!(phys_add(phys, 22), Ok(make_phys(1, 2, 32).unwrap()));
        let last = make_phys(1, 2, QXL_PHYS_OFFSET_MASK).unwrap();
        assert!(phys_add(last, 1).is_err());
    }

    proptest! {
        /// Whatever the guest writes, a successful translation lies wholly inside the slot.
        #[test]
        fn translation_stays_inside_the_slot(
            slot_id in 0u8..=255,
            generation in 0u8..4,
            offset in prop_oneof![0u64..0x2000, 0x3ff_d000u64..0x400_0000, any::<u64>()],
            size in prop_oneof![0u64..0x2000, any::<u64>()],
        ) {
            let table = table_with_main();
            let phys = (u64::from(slot_id) << 56) | (u64::from(generation) << 48)
                | (offset & QXL_PHYS_OFFSET_MASK);
            if let Ok(addr) = table.translate(phys, size) {
                let slot = table.get(1).unwrap();
                prop_assert_eq!(slot_id, 1);
                prop_assert_eq!(generation, 0);
                prop_assert!(addr.0 >= slot.start.0);
                let end = addr.0.checked_add(size).unwrap();
                prop_assert!(end <= slot.start.0 + slot.size);
            }
        }

        /// Adding never accepts a range outside every BAR.
        #[test]
        fn add_only_accepts_ranges_inside_a_bar(start in any::<u64>(), len in any::<u64>()) {
            let mut table = MemSlotTable::new();
            let end = start.saturating_add(len);
            if table.add(0, slot(start, end), &[BAR0, BAR1]).is_ok() {
                let inside = |bar: &BarRange| start >= bar.base.0 && end <= bar.base.0 + bar.len;
                prop_assert!(inside(&BAR0) || inside(&BAR1));
            }
        }
    }
}
