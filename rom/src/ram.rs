//! The RAM header (QXLRam) at the end of BAR0, seen from the device.
//!
//! The device writes it whole at reset; afterwards it only ORs bits into `int_pending` and
//! moves ring counters, while the guest writes `int_mask`, the port arguments and its own
//! ring counters. Every read here is one copy out of guest memory; callers validate the copy.

use core::mem::offset_of;
use std::sync::atomic::{AtomicU32, Ordering};

use saffron_ring::abi::{
    QXL_COMMAND_RING_SIZE, QXL_CURSOR_RING_SIZE, QXL_LOG_BUF_SIZE, QXL_RAM_MAGIC,
    QXL_RELEASE_RING_SIZE, QXLMemSlot, QXLPHYSICAL, QXLRam, QXLRect, QXLSurfaceCreate,
};
use saffron_ring::ring::{CommandRing, ReleaseRing, RingError};
use thiserror::Error;
use vm_memory::{
    ByteValued, Bytes, GuestAddress, GuestMemory, GuestMemoryError, Permissions, VolatileMemory,
    VolatileMemoryError,
};

/// Errors of RAM header access.
#[derive(Debug, Error)]
pub enum RamError {
    #[error("RAM header address {addr:#x} is not 4-byte aligned")]
    Misaligned { addr: u64 },
    #[error("RAM header field at offset {offset} is not addressable from {base:#x}")]
    AddressOverflow { base: u64, offset: usize },
    #[error("guest memory access at {addr:#x} failed")]
    Memory {
        addr: u64,
        #[source]
        source: GuestMemoryError,
    },
    #[error("int_pending at {addr:#x} cannot be accessed atomically")]
    Atomic {
        addr: u64,
        #[source]
        source: VolatileMemoryError,
    },
    #[error("ring setup failed")]
    Ring(#[from] RingError),
}

/// The RAM header at a guest address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamHeader {
    base: GuestAddress,
}

impl RamHeader {
    /// The header at `base` (BAR0 address + ROM `ram_header_offset`).
    ///
    /// Interrupt bits and ring counters are accessed atomically, which needs 4-byte
    /// alignment; BAR and page alignment give far more.
    pub fn new(base: GuestAddress) -> Result<Self, RamError> {
        if !base.0.is_multiple_of(4) {
            return Err(RamError::Misaligned { addr: base.0 });
        }
        // All fields must be addressable, so later offsets cannot overflow.
        base.0
            .checked_add(core::mem::size_of::<QXLRam>() as u64)
            .ok_or(RamError::AddressOverflow {
                base: base.0,
                offset: 0,
            })?;
        Ok(RamHeader { base })
    }

    /// Guest address of the header.
    pub fn base(&self) -> GuestAddress {
        self.base
    }

    /// Writes the reset values: magic, no interrupt pending or enabled, empty rings whose
    /// consumers want a kick on the first push, an empty release batch.
    pub fn reset<M: GuestMemory>(&self, mem: &M) -> Result<(), RamError> {
        let mut ram = QXLRam {
            magic: QXL_RAM_MAGIC,
            ..QXLRam::default()
        };
        for (header, size) in [
            (&mut ram.cmd_ring.header, QXL_COMMAND_RING_SIZE),
            (&mut ram.cursor_ring.header, QXL_CURSOR_RING_SIZE),
            (&mut ram.release_ring.header, QXL_RELEASE_RING_SIZE),
        ] {
            header.num_items = size;
            header.prod = 0;
            header.cons = 0;
            header.notify_on_prod = 1;
            header.notify_on_cons = 0;
        }
        ram.release_ring.items = [0; QXL_RELEASE_RING_SIZE as usize];
        ram.update_surface = 0;
        ram.monitors_config = 0;
        mem.write_obj(ram, self.base)
            .map_err(|source| RamError::Memory {
                addr: self.base.0,
                source,
            })
    }

    /// Atomically ORs `bits` into `int_pending`; returns the bits that were pending before.
    ///
    /// The guest's interrupt handler `xchg`s the register to 0 concurrently, so a plain
    /// read-modify-write could lose either side's update.
    pub fn raise<M: GuestMemory>(&self, mem: &M, bits: u32) -> Result<u32, RamError> {
        let addr = self.field(offset_of!(QXLRam, int_pending))?;
        let memory = |source| RamError::Memory {
            addr: addr.0,
            source,
        };
        let slice = mem
            .get_slices(addr, 4, Permissions::ReadWrite)
            .map_err(memory)?
            .next()
            .ok_or(RamError::Memory {
                addr: addr.0,
                source: GuestMemoryError::InvalidGuestAddress(addr),
            })?
            .map_err(memory)?;
        let pending: &AtomicU32 = slice.get_atomic_ref(0).map_err(|source| RamError::Atomic {
            addr: addr.0,
            source,
        })?;
        Ok(pending.fetch_or(bits, Ordering::SeqCst))
    }

    /// The pending interrupt bits.
    pub fn int_pending<M: GuestMemory>(&self, mem: &M) -> Result<u32, RamError> {
        self.load(mem, offset_of!(QXLRam, int_pending))
    }

    /// The interrupt bits the guest has enabled.
    pub fn int_mask<M: GuestMemory>(&self, mem: &M) -> Result<u32, RamError> {
        self.load(mem, offset_of!(QXLRam, int_mask))
    }

    /// The level of the (level-triggered) interrupt line: some enabled bit is pending.
    pub fn irq_level<M: GuestMemory>(&self, mem: &M) -> Result<bool, RamError> {
        Ok(self.int_pending(mem)? & self.int_mask(mem)? != 0)
    }

    /// UPDATE_AREA argument: the rectangle.
    pub fn update_area<M: GuestMemory>(&self, mem: &M) -> Result<QXLRect, RamError> {
        self.read(mem, offset_of!(QXLRam, update_area))
    }

    /// UPDATE_AREA argument: the surface id.
    pub fn update_surface<M: GuestMemory>(&self, mem: &M) -> Result<u32, RamError> {
        self.read(mem, offset_of!(QXLRam, update_surface))
    }

    /// MEMSLOT_ADD argument.
    pub fn mem_slot<M: GuestMemory>(&self, mem: &M) -> Result<QXLMemSlot, RamError> {
        self.read(mem, offset_of!(QXLRam, mem_slot))
    }

    /// CREATE_PRIMARY argument.
    pub fn create_surface<M: GuestMemory>(&self, mem: &M) -> Result<QXLSurfaceCreate, RamError> {
        self.read(mem, offset_of!(QXLRam, create_surface))
    }

    /// MONITORS_CONFIG_ASYNC argument: where the guest's QXLMonitorsConfig is.
    pub fn monitors_config<M: GuestMemory>(&self, mem: &M) -> Result<QXLPHYSICAL, RamError> {
        self.read(mem, offset_of!(QXLRam, monitors_config))
    }

    /// QXL_IO_LOG argument: the log buffer up to its first NUL (the guest need not write one;
    /// the copy never exceeds the buffer).
    pub fn log_message<M: GuestMemory>(&self, mem: &M) -> Result<Vec<u8>, RamError> {
        let addr = self.field(offset_of!(QXLRam, log_buf))?;
        let mut buf = vec![0u8; QXL_LOG_BUF_SIZE];
        mem.read_slice(&mut buf, addr)
            .map_err(|source| RamError::Memory {
                addr: addr.0,
                source,
            })?;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        buf.truncate(end);
        Ok(buf)
    }

    /// The command ring inside this header.
    pub fn command_ring(&self) -> Result<CommandRing, RamError> {
        Ok(CommandRing::command(self.base)?)
    }

    /// The cursor ring inside this header.
    pub fn cursor_ring(&self) -> Result<CommandRing, RamError> {
        Ok(CommandRing::cursor(self.base)?)
    }

    /// The release ring inside this header.
    pub fn release_ring(&self) -> Result<ReleaseRing, RamError> {
        Ok(ReleaseRing::new(self.base)?)
    }

    fn field(&self, offset: usize) -> Result<GuestAddress, RamError> {
        self.base
            .0
            .checked_add(offset as u64)
            .map(GuestAddress)
            .ok_or(RamError::AddressOverflow {
                base: self.base.0,
                offset,
            })
    }

    fn load<M: GuestMemory>(&self, mem: &M, offset: usize) -> Result<u32, RamError> {
        let addr = self.field(offset)?;
        mem.load(addr, Ordering::Acquire)
            .map_err(|source| RamError::Memory {
                addr: addr.0,
                source,
            })
    }

    fn read<M: GuestMemory, T: ByteValued>(&self, mem: &M, offset: usize) -> Result<T, RamError> {
        let addr = self.field(offset)?;
        mem.read_obj(addr).map_err(|source| RamError::Memory {
            addr: addr.0,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use saffron_ring::abi::QXL_INTERRUPT_DISPLAY;
    use saffron_ring::ring::Idle;
    use std::sync::Arc;
    use vm_memory::{Address, GuestMemoryBackend, GuestMemoryMmap};

    const BASE: GuestAddress = GuestAddress(0x3ffe000);

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x400_0000)]).unwrap()
    }

    #[test]
    fn reset_writes_the_documented_values() {
        let mem = memory();
        mem.write_slice(&[0xaa; 8192], BASE).unwrap();
        let ram = RamHeader::new(BASE).unwrap();
        ram.reset(&mem).unwrap();
        let r: QXLRam = mem.read_obj(BASE).unwrap();
        assert_eq!(&mem.read_obj::<[u8; 4]>(BASE).unwrap(), b"QXRA");
        assert_eq!(({ r.int_pending }, { r.int_mask }), (0, 0));
        assert_eq!(({ r.update_surface }, { r.monitors_config }), (0, 0));
        for (h, n) in [
            (r.cmd_ring.header, 32),
            (r.cursor_ring.header, 32),
            (r.release_ring.header, 8),
        ] {
            assert_eq!(
                (
                    { h.num_items },
                    { h.prod },
                    { h.cons },
                    { h.notify_on_prod },
                    { h.notify_on_cons }
                ),
                (n, 0, 0, 1, 0)
            );
        }
        assert_eq!({ r.release_ring.items[0] }, 0);
        assert_eq!(ram.release_ring().unwrap().batch_head(&mem).unwrap(), 0);
        assert!(!ram.irq_level(&mem).unwrap());
    }

    #[test]
    fn rings_are_usable_after_reset() {
        let mem = memory();
        let ram = RamHeader::new(BASE).unwrap();
        ram.reset(&mem).unwrap();
        let ring = ram.command_ring().unwrap();
        assert_eq!(ring.pop(&mem).unwrap(), None);
        assert_eq!(ring.prepare_to_idle(&mem).unwrap(), Idle::Armed);
        assert_eq!(ram.cursor_ring().unwrap().pending(&mem).unwrap(), 0);
    }

    #[test]
    fn raise_ors_bits_and_level_follows_mask() {
        let mem = memory();
        let ram = RamHeader::new(BASE).unwrap();
        ram.reset(&mem).unwrap();
        assert_eq!(ram.raise(&mem, QXL_INTERRUPT_DISPLAY).unwrap(), 0);
        assert_eq!(ram.raise(&mem, 0x4).unwrap(), QXL_INTERRUPT_DISPLAY);
        assert_eq!(ram.int_pending(&mem).unwrap(), 0x5);
        assert!(!ram.irq_level(&mem).unwrap(), "masked");
        mem.write_obj(0x27u32, BASE.unchecked_add(8)).unwrap();
        assert_eq!(ram.int_mask(&mem).unwrap(), 0x27);
        assert!(ram.irq_level(&mem).unwrap());
    }

    #[test]
    fn raise_never_loses_a_concurrent_guest_xchg() {
        let mem = Arc::new(memory());
        let ram = RamHeader::new(BASE).unwrap();
        ram.reset(&*mem).unwrap();
        let device = {
            let mem = Arc::clone(&mem);
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    ram.raise(&*mem, 1).unwrap();
                }
            })
        };
        // The guest ISR: atomically take everything pending.
        let mut seen = 0u64;
        let slice = mem.get_slice(BASE.unchecked_add(4), 4).unwrap();
        let pending: &AtomicU32 = slice.get_atomic_ref(0).unwrap();
        while !device.is_finished() {
            seen += u64::from(pending.swap(0, Ordering::SeqCst) != 0);
        }
        device.join().unwrap();
        seen += u64::from(pending.swap(0, Ordering::SeqCst) != 0);
        assert!(seen >= 1);
        assert_eq!(pending.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn arguments_are_read_from_their_offsets() {
        let mem = memory();
        let ram = RamHeader::new(BASE).unwrap();
        ram.reset(&mem).unwrap();
        let slot = QXLMemSlot {
            mem_start: 0x1000,
            mem_end: 0x2000,
        };
        mem.write_obj(slot, BASE.unchecked_add(5276)).unwrap();
        assert_eq!(ram.mem_slot(&mem).unwrap(), slot);
        let create = QXLSurfaceCreate {
            width: 1024,
            height: 768,
            stride: 4096,
            format: 32,
            ..Default::default()
        };
        mem.write_obj(create, BASE.unchecked_add(5292)).unwrap();
        assert_eq!(ram.create_surface(&mem).unwrap(), create);
        mem.write_obj(0x0100_0000_0000_1000u64, BASE.unchecked_add(5340))
            .unwrap();
        assert_eq!(ram.monitors_config(&mem).unwrap(), 0x0100_0000_0000_1000);
        let area = QXLRect {
            top: 1,
            left: 2,
            bottom: 3,
            right: 4,
        };
        mem.write_obj(area, BASE.unchecked_add(5256)).unwrap();
        mem.write_obj(7u32, BASE.unchecked_add(5272)).unwrap();
        assert_eq!(ram.update_area(&mem).unwrap(), area);
        assert_eq!(ram.update_surface(&mem).unwrap(), 7);
    }

    #[test]
    fn log_is_bounded_without_a_nul() {
        let mem = memory();
        let ram = RamHeader::new(BASE).unwrap();
        mem.write_slice(b"hello\0world", BASE.unchecked_add(12))
            .unwrap();
        assert_eq!(ram.log_message(&mem).unwrap(), b"hello");
        mem.write_slice(&[b'x'; 4096], BASE.unchecked_add(12))
            .unwrap();
        assert_eq!(ram.log_message(&mem).unwrap().len(), 4096);
    }

    #[test]
    fn misplaced_headers_are_rejected() {
        assert!(matches!(
            RamHeader::new(GuestAddress(2)),
            Err(RamError::Misaligned { .. })
        ));
        assert!(RamHeader::new(GuestAddress(u64::MAX - 3)).is_err());
        let mem = memory();
        let outside = RamHeader::new(GuestAddress(0x800_0000)).unwrap();
        assert!(matches!(outside.reset(&mem), Err(RamError::Memory { .. })));
        assert!(outside.raise(&mem, 1).is_err());
    }
}
