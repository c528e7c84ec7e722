//! Bus traits for in-process VMMs, shaped like rust-vmm `vm-device`'s `MutDevicePio` and
//! `MutDeviceMmio` (that crate is unmaintained, so we keep the shape, not the dependency).
//!
//! A VMM registers the device on its port and MMIO buses at the ranges [`QxlDevice::pio_ranges`]
//! and [`QxlDevice::mmio_ranges`] name, then forwards each exit as `(base, offset, data)`. The
//! device decodes the absolute address itself, as a PCI device on a real bus does: the legacy
//! VGA ports and window, then its own BARs where the guest programmed them. The RAM and VRAM
//! BARs are meant to be mapped as guest memory by the VMM (KVM memory slots); trapped accesses
//! to them still work, through the device's checked accessors.

use crate::qxl::{QxlDevice, VBE_PORTS, VGA_PORTS, VGA_WINDOW, bar};

/// A port address (the `base` of a registered range).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PioAddress(pub u16);
/// An offset from a [`PioAddress`].
pub type PioAddressOffset = u16;
/// A guest-physical MMIO address (the `base` of a registered range).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MmioAddress(pub u64);
/// An offset from an [`MmioAddress`].
pub type MmioAddressOffset = u64;

/// A device on a port bus, driven through `&mut` (the VMM serialises accesses).
pub trait MutDevicePio {
    /// A read of `data.len()` bytes at `base + offset`.
    fn pio_read(&mut self, base: PioAddress, offset: PioAddressOffset, data: &mut [u8]);
    /// A write of `data` at `base + offset`.
    fn pio_write(&mut self, base: PioAddress, offset: PioAddressOffset, data: &[u8]);
}

/// A device on an MMIO bus, driven through `&mut`.
pub trait MutDeviceMmio {
    /// A read of `data.len()` bytes at `base + offset`.
    fn mmio_read(&mut self, base: MmioAddress, offset: MmioAddressOffset, data: &mut [u8]);
    /// A write of `data` at `base + offset`.
    fn mmio_write(&mut self, base: MmioAddress, offset: MmioAddressOffset, data: &[u8]);
}

/// Where an access lands on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    VgaPort(u16),
    VgaWindow(u64),
    Bar(usize, u64),
    Nothing,
}

impl QxlDevice {
    /// The port ranges to register for this device: the VGA and VBE ports when it has a VGA.
    /// Its I/O BAR moves with the guest's programming; register it where the firmware put it
    /// (see `PciConfig::bar_address`).
    pub fn pio_ranges(&self) -> Vec<std::ops::Range<u16>> {
        if self.has_vga() {
            vec![VGA_PORTS, VBE_PORTS]
        } else {
            Vec::new()
        }
    }

    /// The fixed MMIO ranges of this device: the legacy window when it has a VGA.
    pub fn mmio_ranges(&self) -> Vec<std::ops::Range<u64>> {
        if self.has_vga() {
            vec![VGA_WINDOW]
        } else {
            Vec::new()
        }
    }

    fn decode_pio(&self, port: u16) -> Target {
        if self.has_vga() && (VGA_PORTS.contains(&port) || VBE_PORTS.contains(&port)) {
            return Target::VgaPort(port);
        }
        match self.pci().bar_address(bar::IO) {
            Some(base) if (base..base + self.bar_size(bar::IO)).contains(&u64::from(port)) => {
                Target::Bar(bar::IO, u64::from(port) - base)
            }
            _ => Target::Nothing,
        }
    }

    fn decode_mmio(&self, addr: u64) -> Target {
        if self.has_vga() && VGA_WINDOW.contains(&addr) {
            return Target::VgaWindow(addr);
        }
        for index in [bar::RAM, bar::VRAM, bar::ROM, bar::VRAM64] {
            let Some(base) = self.pci().bar_address(index) else {
                continue;
            };
            let size = self.bar_size(index);
            if let Some(off) = addr.checked_sub(base).filter(|o| *o < size) {
                return Target::Bar(index, off);
            }
        }
        Target::Nothing
    }

    fn access_read(&mut self, target: Target, data: &mut [u8]) {
        match target {
            Target::VgaPort(port) => self.vga_port_read(port, data),
            Target::VgaWindow(addr) => self.vga_window_read(addr, data),
            Target::Bar(index, off) => self.bar_read(index, off, data),
            Target::Nothing => data.fill(0xff),
        }
    }

    fn access_write(&mut self, target: Target, data: &[u8]) {
        match target {
            Target::VgaPort(port) => self.vga_port_write(port, data),
            Target::VgaWindow(addr) => self.vga_window_write(addr, data),
            Target::Bar(index, off) => self.bar_write(index, off, data),
            Target::Nothing => {}
        }
    }
}

impl MutDevicePio for QxlDevice {
    fn pio_read(&mut self, base: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        let target = base
            .0
            .checked_add(offset)
            .map_or(Target::Nothing, |p| self.decode_pio(p));
        self.access_read(target, data);
    }

    fn pio_write(&mut self, base: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        let target = base
            .0
            .checked_add(offset)
            .map_or(Target::Nothing, |p| self.decode_pio(p));
        self.access_write(target, data);
    }
}

impl MutDeviceMmio for QxlDevice {
    fn mmio_read(&mut self, base: MmioAddress, offset: MmioAddressOffset, data: &mut [u8]) {
        let target = base
            .0
            .checked_add(offset)
            .map_or(Target::Nothing, |a| self.decode_mmio(a));
        self.access_read(target, data);
    }

    fn mmio_write(&mut self, base: MmioAddress, offset: MmioAddressOffset, data: &[u8]) {
        let target = base
            .0
            .checked_add(offset)
            .map_or(Target::Nothing, |a| self.decode_mmio(a));
        self.access_write(target, data);
    }
}
