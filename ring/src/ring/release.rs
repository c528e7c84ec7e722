//! The device as producer of the release ring.
//!
//! Released commands are handed back in chains: the entry at `prod` is the batch being built
//! (0 = empty) and holds the id of one command; each command's `release_info` (the 8 bytes
//! that carried its id on submission) is overwritten with the id of the next command in the
//! chain, 0 ending it. Pushing the batch (`prod++`) gives the whole chain to the guest.
//!
//! New commands are put at the head of the chain (their `next` is the old head). The guest
//! frees every command of a chain whatever its order, and a head insertion needs no memory of
//! the previous command, so a restored or reset device cannot follow a stale pointer (the
//! class of CVE-2019-12155).

use std::sync::atomic::{Ordering, fence};

use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::{CONS, NOTIFY_ON_PROD, PROD, RingError, RingLayout, mem_err};
use crate::abi::{QXL_INTERRUPT_DISPLAY, QXL_RELEASE_RING_SIZE, QXLRam};

/// Outcome of [`ReleaseRing::push`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// Nothing was collected since the last push.
    Empty,
    /// The guest has not consumed enough; the batch stays open and keeps growing.
    Full,
    /// The batch was handed to the guest.
    Pushed {
        /// The interrupt bit to raise because the guest waits for releases, if any.
        raise: Option<u32>,
    },
}

/// The device → guest ring of released command chains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReleaseRing {
    layout: RingLayout,
}

impl ReleaseRing {
    /// The release ring of the RAM header at `ram`.
    pub fn new(ram: GuestAddress) -> Result<Self, RingError> {
        let base = ram
            .0
            .checked_add(core::mem::offset_of!(QXLRam, release_ring) as u64)
            .map(GuestAddress)
            .ok_or(RingError::AddressOverflow { addr: ram.0 })?;
        let layout = RingLayout {
            base,
            size: QXL_RELEASE_RING_SIZE,
            item_size: 8,
        };
        Ok(ReleaseRing { layout })
    }

    /// Guest address of the ring header.
    pub fn base(&self) -> GuestAddress {
        self.layout.base
    }

    /// The id at the head of the batch being built (0 when empty).
    pub fn batch_head<M: GuestMemory>(&self, mem: &M) -> Result<u64, RingError> {
        let prod = self.layout.load(mem, PROD, Ordering::Relaxed)?;
        let addr = self.layout.item(prod)?;
        mem.read_obj(addr).map_err(mem_err(addr))
    }

    /// Adds the command with release id `id`, whose `release_info` is at guest address
    /// `info`, to the batch being built.
    pub fn release<M: GuestMemory>(
        &self,
        mem: &M,
        info: GuestAddress,
        id: u64,
    ) -> Result<(), RingError> {
        if id == 0 {
            return Err(RingError::ZeroReleaseId);
        }
        let prod = self.layout.load(mem, PROD, Ordering::Relaxed)?;
        let head_addr = self.layout.item(prod)?;
        let head: u64 = mem.read_obj(head_addr).map_err(mem_err(head_addr))?;
        mem.write_obj(head, info).map_err(mem_err(info))?;
        mem.write_obj(id, head_addr).map_err(mem_err(head_addr))
    }

    /// Whether a push would be refused: one slot is always the batch under construction, so
    /// the ring is full one entry early.
    pub fn is_full<M: GuestMemory>(&self, mem: &M) -> Result<bool, RingError> {
        let prod = self.layout.load(mem, PROD, Ordering::Relaxed)?;
        let cons = self.layout.load(mem, CONS, Ordering::Acquire)?;
        Ok(self.layout.pending(prod, cons)? + 1 >= self.layout.size)
    }

    /// Hands the batch being built to the guest and opens an empty one.
    pub fn push<M: GuestMemory>(&self, mem: &M) -> Result<Push, RingError> {
        let prod = self.layout.load(mem, PROD, Ordering::Relaxed)?;
        let cons = self.layout.load(mem, CONS, Ordering::Acquire)?;
        let head_addr = self.layout.item(prod)?;
        let head: u64 = mem.read_obj(head_addr).map_err(mem_err(head_addr))?;
        if head == 0 {
            return Ok(Push::Empty);
        }
        if self.layout.pending(prod, cons)? + 1 >= self.layout.size {
            return Ok(Push::Full);
        }
        let prod = prod.wrapping_add(1);
        // The next batch starts empty; clear it before the guest can see the new prod so the
        // chain we just published is never mistaken for part of it.
        let next_addr = self.layout.item(prod)?;
        mem.write_obj(0u64, next_addr).map_err(mem_err(next_addr))?;
        // Release: chain links and the cleared slot are visible before the new prod.
        self.layout.store(mem, PROD, prod, Ordering::Release)?;
        // Pairs with the guest writing notify_on_prod and then re-reading prod.
        fence(Ordering::SeqCst);
        let notify_on_prod = self.layout.load(mem, NOTIFY_ON_PROD, Ordering::Relaxed)?;
        let raise = (prod == notify_on_prod).then_some(QXL_INTERRUPT_DISPLAY);
        Ok(Push::Pushed { raise })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{RAM, memory};
    use super::*;
    use crate::abi::{QXLReleaseRing, QXLRingHeader};
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use vm_memory::{Address, GuestMemoryMmap};

    /// Guest addresses of fake commands: command `id` lives at `CMDS + id * 64`.
    const CMDS: u64 = 0x1000;

    fn cmd_addr(id: u64) -> GuestAddress {
        GuestAddress(CMDS + id * 64)
    }

    fn setup() -> (GuestMemoryMmap, ReleaseRing) {
        let mem = memory();
        let ring = ReleaseRing::new(RAM).unwrap();
        let mut r = QXLReleaseRing::default();
        r.header.num_items = QXL_RELEASE_RING_SIZE;
        r.header.notify_on_prod = 1;
        mem.write_obj(r, ring.base()).unwrap();
        (mem, ring)
    }

    fn header(mem: &GuestMemoryMmap, ring: &ReleaseRing) -> QXLRingHeader {
        mem.read_obj(ring.base()).unwrap()
    }

    /// The Linux garbage collector: pops chain heads and walks every chain.
    fn guest_collect(mem: &GuestMemoryMmap, ring: &ReleaseRing) -> Vec<u64> {
        let mut h = header(mem, ring);
        let mut freed = Vec::new();
        while h.cons != h.prod {
            let slot = u64::from(h.cons % QXL_RELEASE_RING_SIZE);
            let mut id: u64 = mem
                .read_obj(ring.base().unchecked_add(20 + slot * 8))
                .unwrap();
            while id != 0 {
                freed.push(id);
                id = mem.read_obj(cmd_addr(id)).unwrap();
            }
            h.cons = h.cons.wrapping_add(1);
        }
        h.notify_on_prod = h.cons.wrapping_add(1);
        mem.write_obj(h, ring.base()).unwrap();
        freed
    }

    #[test]
    fn chains_every_released_command() {
        let (mem, ring) = setup();
        assert_eq!(ring.push(&mem).unwrap(), Push::Empty);
        for id in 1..=5 {
            mem.write_obj(id, cmd_addr(id)).unwrap();
            ring.release(&mem, cmd_addr(id), id).unwrap();
        }
        assert_eq!(ring.batch_head(&mem).unwrap(), 5);
        assert_eq!(
            ring.push(&mem).unwrap(),
            Push::Pushed {
                raise: Some(QXL_INTERRUPT_DISPLAY)
            }
        );
        assert_eq!(ring.batch_head(&mem).unwrap(), 0);
        let mut freed = guest_collect(&mem, &ring);
        freed.sort_unstable();
        assert_eq!(freed, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn full_ring_keeps_the_batch_open() {
        let (mem, ring) = setup();
        for id in 1..=7 {
            ring.release(&mem, cmd_addr(id), id).unwrap();
            assert!(matches!(ring.push(&mem).unwrap(), Push::Pushed { .. }));
        }
        assert!(ring.is_full(&mem).unwrap());
        ring.release(&mem, cmd_addr(8), 8).unwrap();
        ring.release(&mem, cmd_addr(9), 9).unwrap();
        assert_eq!(ring.push(&mem).unwrap(), Push::Full);
        assert_eq!(guest_collect(&mem, &ring).len(), 7);
        assert!(!ring.is_full(&mem).unwrap());
        assert!(matches!(
            ring.push(&mem).unwrap(),
            Push::Pushed { raise: Some(_) }
        ));
        let mut freed = guest_collect(&mem, &ring);
        freed.sort_unstable();
        assert_eq!(freed, vec![8, 9]);
    }

    #[test]
    fn zero_id_and_consumer_overrun_are_rejected() {
        let (mem, ring) = setup();
        assert!(matches!(
            ring.release(&mem, cmd_addr(1), 0),
            Err(RingError::ZeroReleaseId)
        ));
        ring.release(&mem, cmd_addr(1), 1).unwrap();
        let mut h = header(&mem, &ring);
        h.cons = 3; // the guest claims to have consumed entries never pushed
        mem.write_obj(h, ring.base()).unwrap();
        assert!(matches!(ring.push(&mem), Err(RingError::Overrun { .. })));
    }

    proptest! {
        /// Every id released is collected by the guest exactly once, across counter
        /// wrap-around, whatever the interleaving of pushes and guest collections.
        #[test]
        fn every_release_reaches_the_guest_once(
            start in prop_oneof![Just(u32::MAX - 5), any::<u32>()],
            ops in proptest::collection::vec(0u8..3, 1..200),
        ) {
            let (mem, ring) = setup();
            let mut h = header(&mem, &ring);
            h.prod = start;
            h.cons = start;
            h.notify_on_prod = start.wrapping_add(1);
            mem.write_obj(h, ring.base()).unwrap();
            let mut next_id = 1u64;
            let mut freed = BTreeSet::new();
            for op in ops {
                match op {
                    0 => {
                        ring.release(&mem, cmd_addr(next_id), next_id).unwrap();
                        next_id += 1;
                    }
                    1 => { ring.push(&mem).unwrap(); }
                    _ => {
                        for id in guest_collect(&mem, &ring) {
                            prop_assert!(freed.insert(id), "id {} released twice", id);
                        }
                    }
                }
            }
            // Drain: collect what was pushed, push what is still open, until nothing is left.
            loop {
                for id in guest_collect(&mem, &ring) {
                    prop_assert!(freed.insert(id));
                }
                if ring.push(&mem).unwrap() == Push::Empty {
                    break;
                }
            }
            prop_assert_eq!(freed.len() as u64, next_id - 1);
        }
    }
}
