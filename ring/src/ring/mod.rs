//! The three SPICE rings in the RAM header, seen from the device.
//!
//! The guest produces into the command and cursor rings and consumes the release ring; the
//! device does the opposite. Both sides follow the `spice/ipc_ring.h` rules: free-running
//! `u32` counters, `empty ⇔ prod == cons`, notify the other side only when the counter just
//! written equals the other side's `notify_on_*` value.
//!
//! Every counter is read once into a local per operation, the slot index is masked with our
//! own ring size (never the guest-writable `num_items`), and a producer that claims to be
//! more than a ring's worth ahead is reported as a guest bug.

mod command;
mod release;

pub use command::{CommandRing, Idle, Popped};
pub use release::{Push, ReleaseRing};

use std::sync::atomic::Ordering;

use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError};

use crate::abi::QXLRingHeader;

/// Errors of ring access.
#[derive(Debug, Error)]
pub enum RingError {
    #[error(
        "ring at {base:#x}: prod {prod} is {ahead} entries ahead of cons {cons}, more than its {size} entries"
    )]
    Overrun {
        base: u64,
        prod: u32,
        cons: u32,
        ahead: u32,
        size: u32,
    },
    #[error("ring field at {addr:#x} is not addressable")]
    AddressOverflow { addr: u64 },
    #[error("guest memory access at {addr:#x} failed")]
    Memory {
        addr: u64,
        #[source]
        source: GuestMemoryError,
    },
    #[error("release id 0 cannot be handed back: 0 marks an empty release ring slot")]
    ZeroReleaseId,
}

// Slots are counters masked with `size - 1`, which needs power-of-two sizes.
const _: () = assert!(crate::abi::QXL_COMMAND_RING_SIZE.is_power_of_two());
const _: () = assert!(crate::abi::QXL_CURSOR_RING_SIZE.is_power_of_two());
const _: () = assert!(crate::abi::QXL_RELEASE_RING_SIZE.is_power_of_two());

/// Offsets of the header counters, from the ABI definition.
const PROD: u64 = core::mem::offset_of!(QXLRingHeader, prod) as u64;
const NOTIFY_ON_PROD: u64 = core::mem::offset_of!(QXLRingHeader, notify_on_prod) as u64;
const CONS: u64 = core::mem::offset_of!(QXLRingHeader, cons) as u64;
const NOTIFY_ON_CONS: u64 = core::mem::offset_of!(QXLRingHeader, notify_on_cons) as u64;
const ITEMS: u64 = core::mem::size_of::<QXLRingHeader>() as u64;

/// Where one ring's fields are in guest memory, and how many entries it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RingLayout {
    base: GuestAddress,
    size: u32,
    item_size: u64,
}

impl RingLayout {
    fn field(&self, offset: u64) -> Result<GuestAddress, RingError> {
        self.base
            .0
            .checked_add(offset)
            .map(GuestAddress)
            .ok_or(RingError::AddressOverflow { addr: self.base.0 })
    }

    /// Address of the entry a free-running counter designates.
    fn item(&self, counter: u32) -> Result<GuestAddress, RingError> {
        let slot = u64::from(counter & (self.size - 1));
        let offset = slot
            .checked_mul(self.item_size)
            .and_then(|o| o.checked_add(ITEMS))
            .ok_or(RingError::AddressOverflow { addr: self.base.0 })?;
        self.field(offset)
    }

    fn load<M: GuestMemory>(
        &self,
        mem: &M,
        offset: u64,
        order: Ordering,
    ) -> Result<u32, RingError> {
        let addr = self.field(offset)?;
        mem.load(addr, order).map_err(|source| RingError::Memory {
            addr: addr.0,
            source,
        })
    }

    fn store<M: GuestMemory>(
        &self,
        mem: &M,
        offset: u64,
        value: u32,
        order: Ordering,
    ) -> Result<(), RingError> {
        let addr = self.field(offset)?;
        mem.store(value, addr, order)
            .map_err(|source| RingError::Memory {
                addr: addr.0,
                source,
            })
    }

    /// Entries between `cons` and `prod`, rejecting a distance no honest producer can reach.
    fn pending(&self, prod: u32, cons: u32) -> Result<u32, RingError> {
        let ahead = prod.wrapping_sub(cons);
        if ahead > self.size {
            return Err(RingError::Overrun {
                base: self.base.0,
                prod,
                cons,
                ahead,
                size: self.size,
            });
        }
        Ok(ahead)
    }
}

fn mem_err(addr: GuestAddress) -> impl FnOnce(GuestMemoryError) -> RingError {
    move |source| RingError::Memory {
        addr: addr.0,
        source,
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    /// Guest address of the RAM header in ring tests.
    pub const RAM: GuestAddress = GuestAddress(0x10_0000);

    pub fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x20_0000)]).unwrap()
    }
}
