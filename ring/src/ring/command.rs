//! The device as consumer of the command and cursor rings.

use std::sync::atomic::{Ordering, fence};

use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::{CONS, NOTIFY_ON_CONS, NOTIFY_ON_PROD, PROD, RingError, RingLayout, mem_err};
use crate::abi::{
    QXL_COMMAND_RING_SIZE, QXL_CURSOR_RING_SIZE, QXL_INTERRUPT_CURSOR, QXL_INTERRUPT_DISPLAY,
    QXLCommand, QXLRam,
};

/// A command taken off a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Popped {
    pub command: QXLCommand,
    /// The interrupt bit to raise because the guest asked to hear when this entry was taken
    /// (it was waiting for room in a full ring), if any.
    pub raise: Option<u32>,
}

/// Outcome of [`CommandRing::prepare_to_idle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idle {
    /// The ring is empty and the guest will kick the device on its next push.
    Armed,
    /// Commands arrived meanwhile; keep consuming.
    MoreWork,
}

/// A guest → device ring of [`QXLCommand`]s (the command ring or the cursor ring).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandRing {
    layout: RingLayout,
    irq: u32,
}

impl CommandRing {
    /// The command ring of the RAM header at `ram`.
    pub fn command(ram: GuestAddress) -> Result<Self, RingError> {
        Self::in_ram(
            ram,
            core::mem::offset_of!(QXLRam, cmd_ring),
            QXL_COMMAND_RING_SIZE,
            QXL_INTERRUPT_DISPLAY,
        )
    }

    /// The cursor ring of the RAM header at `ram`.
    pub fn cursor(ram: GuestAddress) -> Result<Self, RingError> {
        Self::in_ram(
            ram,
            core::mem::offset_of!(QXLRam, cursor_ring),
            QXL_CURSOR_RING_SIZE,
            QXL_INTERRUPT_CURSOR,
        )
    }

    fn in_ram(ram: GuestAddress, offset: usize, size: u32, irq: u32) -> Result<Self, RingError> {
        let base = ram
            .0
            .checked_add(offset as u64)
            .map(GuestAddress)
            .ok_or(RingError::AddressOverflow { addr: ram.0 })?;
        let item_size = core::mem::size_of::<QXLCommand>() as u64;
        Ok(CommandRing {
            layout: RingLayout {
                base,
                size,
                item_size,
            },
            irq,
        })
    }

    /// Guest address of the ring header.
    pub fn base(&self) -> GuestAddress {
        self.layout.base
    }

    /// The interrupt bit this ring raises when the guest waits for room.
    pub fn irq(&self) -> u32 {
        self.irq
    }

    /// Number of commands waiting.
    pub fn pending<M: GuestMemory>(&self, mem: &M) -> Result<u32, RingError> {
        let prod = self.layout.load(mem, PROD, Ordering::Acquire)?;
        let cons = self.layout.load(mem, CONS, Ordering::Relaxed)?;
        self.layout.pending(prod, cons)
    }

    /// The next command, without consuming it.
    pub fn peek<M: GuestMemory>(&self, mem: &M) -> Result<Option<QXLCommand>, RingError> {
        let prod = self.layout.load(mem, PROD, Ordering::Acquire)?;
        let cons = self.layout.load(mem, CONS, Ordering::Relaxed)?;
        if self.layout.pending(prod, cons)? == 0 {
            return Ok(None);
        }
        let addr = self.layout.item(cons)?;
        mem.read_obj(addr).map(Some).map_err(mem_err(addr))
    }

    /// Takes the next command, telling whether the guest must be interrupted.
    pub fn pop<M: GuestMemory>(&self, mem: &M) -> Result<Option<Popped>, RingError> {
        let prod = self.layout.load(mem, PROD, Ordering::Acquire)?;
        let cons = self.layout.load(mem, CONS, Ordering::Relaxed)?;
        if self.layout.pending(prod, cons)? == 0 {
            return Ok(None);
        }
        let addr = self.layout.item(cons)?;
        let command: QXLCommand = mem.read_obj(addr).map_err(mem_err(addr))?;
        let cons = cons.wrapping_add(1);
        // Release: the entry is read before the guest may see its slot as free.
        self.layout.store(mem, CONS, cons, Ordering::Release)?;
        // Our cons store must be visible before we read notify_on_cons, mirroring the guest
        // that sets notify_on_cons and then re-reads cons; otherwise both may miss the wakeup.
        fence(Ordering::SeqCst);
        let notify_on_cons = self.layout.load(mem, NOTIFY_ON_CONS, Ordering::Relaxed)?;
        let raise = (cons == notify_on_cons).then_some(self.irq);
        Ok(Some(Popped { command, raise }))
    }

    /// Asks the guest to kick the device on its next push, then re-checks for work.
    ///
    /// The Linux driver only kicks when its new prod equals notify_on_prod; a device that
    /// skips this step after draining gets one kick ever.
    pub fn prepare_to_idle<M: GuestMemory>(&self, mem: &M) -> Result<Idle, RingError> {
        let prod = self.layout.load(mem, PROD, Ordering::Acquire)?;
        let cons = self.layout.load(mem, CONS, Ordering::Relaxed)?;
        if self.layout.pending(prod, cons)? != 0 {
            return Ok(Idle::MoreWork);
        }
        self.layout
            .store(mem, NOTIFY_ON_PROD, prod.wrapping_add(1), Ordering::Relaxed)?;
        // The guest pushes, then reads notify_on_prod; we write notify_on_prod, then read prod.
        fence(Ordering::SeqCst);
        let prod = self.layout.load(mem, PROD, Ordering::Acquire)?;
        if self.layout.pending(prod, cons)? != 0 {
            return Ok(Idle::MoreWork);
        }
        Ok(Idle::Armed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{RAM, memory};
    use super::*;
    use crate::abi::{QXLCommandRing, QXLRingHeader};
    use proptest::prelude::*;
    use vm_memory::{Address, GuestMemoryMmap};

    /// A guest-side producer, written as the Linux driver behaves.
    struct Guest<'a> {
        mem: &'a GuestMemoryMmap,
        base: GuestAddress,
    }

    impl Guest<'_> {
        fn header(&self) -> QXLRingHeader {
            self.mem.read_obj(self.base).unwrap()
        }
        fn set_header(&self, h: QXLRingHeader) {
            self.mem.write_obj(h, self.base).unwrap();
        }
        /// Pushes like qxl_ring_push; returns whether the device must be kicked.
        fn push(&self, data: u64) -> bool {
            let mut h = self.header();
            assert!(h.prod.wrapping_sub(h.cons) < QXL_COMMAND_RING_SIZE);
            let slot = u64::from(h.prod % QXL_COMMAND_RING_SIZE);
            let item = QXLCommand {
                data,
                type_: 1,
                padding: 0,
            };
            self.mem
                .write_obj(item, self.base.unchecked_add(20 + slot * 16))
                .unwrap();
            h.prod = h.prod.wrapping_add(1);
            self.set_header(h);
            h.prod == h.notify_on_prod
        }
    }

    fn setup() -> (GuestMemoryMmap, CommandRing) {
        let mem = memory();
        let ring = CommandRing::command(RAM).unwrap();
        let mut r = QXLCommandRing::default();
        r.header.num_items = QXL_COMMAND_RING_SIZE;
        r.header.notify_on_prod = 1;
        mem.write_obj(r, ring.base()).unwrap();
        (mem, ring)
    }

    #[test]
    fn ring_sits_at_its_abi_offset() {
        assert_eq!(
            CommandRing::command(RAM).unwrap().base(),
            GuestAddress(RAM.0 + 4108)
        );
        assert_eq!(
            CommandRing::cursor(RAM).unwrap().base(),
            GuestAddress(RAM.0 + 4640)
        );
        assert_eq!(
            CommandRing::cursor(RAM).unwrap().irq(),
            QXL_INTERRUPT_CURSOR
        );
    }

    #[test]
    fn pop_returns_commands_in_order_and_consumes() {
        let (mem, ring) = setup();
        let guest = Guest {
            mem: &mem,
            base: ring.base(),
        };
        assert!(
            guest.push(0x100),
            "first push after reset kicks (notify_on_prod = 1)"
        );
        assert!(!guest.push(0x200));
        assert_eq!(ring.pending(&mem).unwrap(), 2);
        assert_eq!({ ring.peek(&mem).unwrap().unwrap().data }, 0x100);
        assert_eq!({ ring.pop(&mem).unwrap().unwrap().command.data }, 0x100);
        assert_eq!({ ring.pop(&mem).unwrap().unwrap().command.data }, 0x200);
        assert_eq!(ring.pop(&mem).unwrap(), None);
        assert_eq!({ guest.header().cons }, 2);
    }

    #[test]
    fn idle_rearms_the_guest_kick() {
        let (mem, ring) = setup();
        let guest = Guest {
            mem: &mem,
            base: ring.base(),
        };
        assert!(guest.push(1));
        ring.pop(&mem).unwrap().unwrap();
        // Without re-arming, the guest would never kick again.
        assert!(!guest.push(2));
        assert_eq!(ring.prepare_to_idle(&mem).unwrap(), Idle::MoreWork);
        ring.pop(&mem).unwrap().unwrap();
        assert_eq!(ring.prepare_to_idle(&mem).unwrap(), Idle::Armed);
        assert_eq!({ guest.header().notify_on_prod }, 3);
        assert!(guest.push(3), "the next push kicks");
    }

    #[test]
    fn pop_raises_when_guest_waits_for_room() {
        let (mem, ring) = setup();
        let guest = Guest {
            mem: &mem,
            base: ring.base(),
        };
        for i in 0..QXL_COMMAND_RING_SIZE {
            guest.push(u64::from(i));
        }
        // Ring full: the guest asks to be told when one entry is free.
        let mut h = guest.header();
        h.notify_on_cons = h.cons + 1;
        guest.set_header(h);
        assert_eq!(
            ring.pop(&mem).unwrap().unwrap().raise,
            Some(QXL_INTERRUPT_DISPLAY)
        );
        assert_eq!(ring.pop(&mem).unwrap().unwrap().raise, None);
    }

    #[test]
    fn producer_too_far_ahead_is_a_guest_bug() {
        let (mem, ring) = setup();
        let guest = Guest {
            mem: &mem,
            base: ring.base(),
        };
        let mut h = guest.header();
        h.prod = 33;
        guest.set_header(h);
        assert!(matches!(
            ring.pop(&mem),
            Err(RingError::Overrun {
                prod: 33,
                cons: 0,
                ahead: 33,
                ..
            })
        ));
        h.prod = 5;
        h.cons = 6;
        guest.set_header(h);
        assert!(matches!(ring.peek(&mem), Err(RingError::Overrun { .. })));
        assert!(matches!(
            ring.prepare_to_idle(&mem),
            Err(RingError::Overrun { .. })
        ));
    }

    #[test]
    fn guest_num_items_is_ignored() {
        let (mem, ring) = setup();
        let guest = Guest {
            mem: &mem,
            base: ring.base(),
        };
        let mut h = guest.header();
        h.num_items = 0xffff_ffff;
        h.prod = 31;
        h.cons = 31;
        guest.set_header(h);
        guest.push(7);
        assert_eq!({ ring.pop(&mem).unwrap().unwrap().command.data }, 7);
    }

    #[test]
    fn ring_outside_memory_is_an_error() {
        let mem = memory();
        let ring = CommandRing::command(GuestAddress(0x30_0000)).unwrap();
        assert!(matches!(ring.pop(&mem), Err(RingError::Memory { .. })));
        assert!(CommandRing::command(GuestAddress(u64::MAX - 8)).is_err());
    }

    proptest! {
        /// Across counter wrap-around, the device sees exactly what the guest pushed, in
        /// order, and the guest is kicked exactly when the device had armed the ring.
        #[test]
        fn wraps_around_without_losing_commands(
            start in prop_oneof![Just(0u32), Just(u32::MAX - 40), any::<u32>()],
            batches in proptest::collection::vec(1usize..=32, 1..20),
        ) {
            let (mem, ring) = setup();
            let guest = Guest { mem: &mem, base: ring.base() };
            let mut h = guest.header();
            h.prod = start;
            h.cons = start;
            h.notify_on_prod = start.wrapping_add(1);
            guest.set_header(h);
            let mut next = 0u64;
            let mut expect = 0u64;
            for batch in batches {
                let mut kicked = false;
                for _ in 0..batch {
                    kicked |= guest.push(next);
                    next += 1;
                }
                prop_assert!(kicked, "a push into an armed ring must kick");
                loop {
                    while let Some(p) = ring.pop(&mem).unwrap() {
                        prop_assert_eq!({ p.command.data }, expect);
                        expect += 1;
                    }
                    if ring.prepare_to_idle(&mem).unwrap() == Idle::Armed {
                        break;
                    }
                }
            }
            prop_assert_eq!(expect, next);
        }
    }
}
