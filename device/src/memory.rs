//! The device's own memory: the RAM BAR (BAR0) and the surface memory behind the VRAM BAR
//! (BAR1) and the optional 64-bit VRAM BAR (BAR4).
//!
//! Both are host mappings that the guest also maps (a VMM maps the same memfd into the guest),
//! so the device reaches them through vm-memory's checked accessors in a private "device
//! address space": BAR0 at [`RAM_BASE`], the surface memory at [`VRAM_BASE`]. As in QEMU,
//! BAR1 and BAR4 are two windows on that one block: BAR1 its first `vram_size` bytes, BAR4
//! all of it, so a surface reached through either BAR is the same pixels. Guest physical
//! addresses never appear here; memslot translation turns them into device addresses.

use thiserror::Error;
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap};

/// Where BAR0 lives in the device address space.
pub const RAM_BASE: GuestAddress = GuestAddress(0);
/// Where the surface memory (BAR1, and BAR4 when present) lives in the device address space:
/// far above any BAR0 size, so a length that overruns BAR0 can never land in it.
pub const VRAM_BASE: GuestAddress = GuestAddress(1 << 40);

/// Which memory BAR an access targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryBar {
    /// BAR0: RAM header, rings, command data, the surface-0 area.
    Ram,
    /// BAR1: surface memory (the first `vram_size` bytes of it).
    Vram,
    /// BAR4: all of the surface memory (64-bit, prefetchable).
    Vram64,
}

/// Failures creating or accessing device memory.
#[derive(Debug, Error)]
pub enum MemoryError {
    /// The mappings could not be created.
    #[error("cannot map device memory: {0}")]
    Map(#[from] vm_memory::mmap::FromRangesError),
    /// An access outside the BAR.
    #[error("access of {len} bytes at {offset:#x} is outside {bar:?} ({size:#x} bytes)")]
    OutOfRange {
        /// Target BAR.
        bar: MemoryBar,
        /// Offset in the BAR.
        offset: u64,
        /// Length of the access.
        len: usize,
        /// Size of the BAR.
        size: u64,
    },
    /// vm-memory refused the access.
    #[error("guest memory access failed: {0}")]
    Access(#[from] vm_memory::GuestMemoryError),
}

/// BAR0 and surface memory (BAR1, BAR4).
#[derive(Debug)]
pub struct DeviceMemory {
    mem: GuestMemoryMmap,
    ram_size: u64,
    vram_size: u64,
    vram64_size: u64,
}

impl DeviceMemory {
    /// Private anonymous memory: for tests and for front ends that never share the BARs.
    /// `vram64_size` is BAR4's size, 0 for none.
    pub fn anonymous(ram_size: u64, vram_size: u64, vram64_size: u64) -> Result<Self, MemoryError> {
        Self::build(ram_size, None, vram_size, vram64_size, None)
    }

    /// Memory backed by files (memfds) that a front end also hands to the VMM, so that the
    /// guest's view and ours are the same pages. `vram` holds the surface memory: at least
    /// `vram_size` bytes, and `vram64_size` (BAR4's size, 0 for none) when that is larger.
    pub fn from_files(
        ram: FileOffset,
        ram_size: u64,
        vram: FileOffset,
        vram_size: u64,
        vram64_size: u64,
    ) -> Result<Self, MemoryError> {
        Self::build(ram_size, Some(ram), vram_size, vram64_size, Some(vram))
    }

    fn build(
        ram_size: u64,
        ram: Option<FileOffset>,
        vram_size: u64,
        vram64_size: u64,
        vram: Option<FileOffset>,
    ) -> Result<Self, MemoryError> {
        let size = |s: u64| usize::try_from(s).unwrap_or(usize::MAX);
        let mem = GuestMemoryMmap::from_ranges_with_files([
            (RAM_BASE, size(ram_size), ram),
            (VRAM_BASE, size(vram_size.max(vram64_size)), vram),
        ])?;
        Ok(DeviceMemory {
            mem,
            ram_size,
            vram_size,
            vram64_size,
        })
    }

    /// The device address space, for ring and command parsing.
    pub fn guest_memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Size of BAR0.
    pub fn ram_size(&self) -> u64 {
        self.ram_size
    }

    /// Size of BAR1.
    pub fn vram_size(&self) -> u64 {
        self.vram_size
    }

    /// Size of BAR4 (0 when the device has none).
    pub fn vram64_size(&self) -> u64 {
        self.vram64_size
    }

    /// Bytes of surface memory: BAR4's size when present, else BAR1's.
    pub fn surface_memory_size(&self) -> u64 {
        self.vram_size.max(self.vram64_size)
    }

    /// Device address of `offset` in `bar`, checking that `len` bytes fit.
    pub fn address(
        &self,
        bar: MemoryBar,
        offset: u64,
        len: usize,
    ) -> Result<GuestAddress, MemoryError> {
        let (base, size) = match bar {
            MemoryBar::Ram => (RAM_BASE, self.ram_size),
            MemoryBar::Vram => (VRAM_BASE, self.vram_size),
            MemoryBar::Vram64 => (VRAM_BASE, self.vram64_size),
        };
        let end = offset.checked_add(len as u64);
        match end {
            Some(end) if end <= size => Ok(GuestAddress(base.0 + offset)),
            _ => Err(MemoryError::OutOfRange {
                bar,
                offset,
                len,
                size,
            }),
        }
    }

    /// Reads bytes from a BAR (a trapped guest access, or the host looking at device memory).
    pub fn read(&self, bar: MemoryBar, offset: u64, data: &mut [u8]) -> Result<(), MemoryError> {
        let addr = self.address(bar, offset, data.len())?;
        self.mem.read_slice(data, addr)?;
        Ok(())
    }

    /// Writes bytes into a BAR.
    pub fn write(&self, bar: MemoryBar, offset: u64, data: &[u8]) -> Result<(), MemoryError> {
        let addr = self.address(bar, offset, data.len())?;
        self.mem.write_slice(data, addr)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_separate_and_bounded() {
        let m = DeviceMemory::anonymous(1 << 20, 1 << 16, 0).unwrap();
        m.write(MemoryBar::Ram, 0, &[1, 2, 3]).unwrap();
        m.write(MemoryBar::Vram, 0, &[9]).unwrap();
        let mut b = [0; 3];
        m.read(MemoryBar::Ram, 0, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3]);
        m.read(MemoryBar::Vram, 0, &mut b[..1]).unwrap();
        assert_eq!(b[0], 9);
        assert!(m.read(MemoryBar::Vram, (1 << 16) - 2, &mut b).is_err());
        assert!(m.write(MemoryBar::Ram, u64::MAX, &[0]).is_err());
        m.write(MemoryBar::Ram, (1 << 20) - 1, &[7]).unwrap();
    }

    #[test]
    fn bar4_is_bar1_and_more() {
        let m = DeviceMemory::anonymous(1 << 20, 1 << 16, 1 << 18).unwrap();
        assert_eq!(m.surface_memory_size(), 1 << 18);
        m.write(MemoryBar::Vram, 0x100, &[1, 2]).unwrap();
        let mut b = [0; 2];
        m.read(MemoryBar::Vram64, 0x100, &mut b).unwrap();
        assert_eq!(b, [1, 2], "BAR1's bytes are BAR4's first bytes");
        // Past BAR1, only BAR4 reaches.
        m.write(MemoryBar::Vram64, 1 << 16, &[7]).unwrap();
        assert!(m.read(MemoryBar::Vram, 1 << 16, &mut b[..1]).is_err());
        m.read(MemoryBar::Vram64, (1 << 18) - 1, &mut b[..1])
            .unwrap();
        assert!(m.read(MemoryBar::Vram64, (1 << 18) - 1, &mut b).is_err());
        assert_eq!(
            m.address(MemoryBar::Vram64, 0, 1).unwrap(),
            m.address(MemoryBar::Vram, 0, 1).unwrap()
        );
        // Without BAR4 nothing reaches through it.
        let m = DeviceMemory::anonymous(1 << 20, 1 << 16, 0).unwrap();
        assert!(m.read(MemoryBar::Vram64, 0, &mut b[..1]).is_err());
    }
}
