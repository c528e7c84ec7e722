//! A type-0 PCI configuration space: the 256 bytes a guest sees, with the rules that make
//! BAR sizing, read-only identity bytes, write-1-to-clear status bits and the PCI 2.3 INTx
//! disable/status pair behave as on real hardware.
//!
//! Every access is applied byte by byte through a write mask, so the guest may use any width or
//! alignment (a VMM may forward an unaligned 2-byte write; cloud-hypervisor sizes BARs with
//! 4-byte writes, Linux uses 1/2/4) and still get exactly the bits the device allows.

use thiserror::Error;

/// Size of the conventional configuration space. No extended (PCIe) space: QXL is a PCI device.
pub const CONFIG_SPACE_SIZE: usize = 256;

const VENDOR_ID: usize = 0x00;
const DEVICE_ID: usize = 0x02;
const COMMAND: usize = 0x04;
const STATUS: usize = 0x06;
const REVISION_ID: usize = 0x08;
const HEADER_TYPE: usize = 0x0e;
const BAR0: usize = 0x10;
const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
const SUBSYSTEM_ID: usize = 0x2e;
const EXPANSION_ROM: usize = 0x30;
const INTERRUPT_LINE: usize = 0x3c;
const INTERRUPT_PIN: usize = 0x3d;

/// Command register bits the guest may change: I/O space, memory space, bus master, parity
/// error response, SERR# enable and INTx disable. Everything else is hard-wired to 0.
const COMMAND_WRITABLE: u16 = 0x0001 | 0x0002 | 0x0004 | 0x0040 | 0x0100 | COMMAND_INTX_DISABLE;
/// PCI 2.3: when set the function must not assert INTx (the status bit still tracks it).
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Command bit that enables decoding of I/O BARs.
pub const COMMAND_IO_SPACE: u16 = 1 << 0;
/// Command bit that enables decoding of memory BARs.
pub const COMMAND_MEMORY_SPACE: u16 = 1 << 1;
/// PCI 2.3: read-only mirror of the function's internal interrupt level.
pub const STATUS_INTERRUPT: u16 = 1 << 3;
/// Status bits that are write-1-to-clear (parity, target/master aborts, SERR, parity error).
const STATUS_W1C: u16 = 0x0100 | 0x0800 | 0x1000 | 0x2000 | 0x4000 | 0x8000;

/// Expansion ROM BAR: enable bit; the address field starts at bit 11 (2 KiB minimum).
const ROM_ENABLE: u32 = 1;
const ROM_ADDRESS_MASK: u32 = 0xffff_f800;

/// Number of base address registers in a type-0 header.
pub const NUM_BARS: usize = 6;

/// What kind of address space a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// 32-bit memory BAR.
    Memory32 {
        /// Whether reads have no side effects (prefetchable).
        prefetchable: bool,
    },
    /// 64-bit memory BAR: occupies this register and the next one.
    Memory64 {
        /// Whether reads have no side effects (prefetchable).
        prefetchable: bool,
    },
    /// I/O space BAR.
    Io,
}

/// One BAR the device implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarSpec {
    /// Register index, 0..=5 (a 64-bit BAR also takes index + 1).
    pub index: usize,
    /// Size in bytes: a power of two, at least 16 for memory and 4 for I/O.
    pub size: u64,
    /// Address space and width.
    pub kind: BarKind,
}

/// The identity bytes of a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciIdentity {
    /// Vendor id.
    pub vendor_id: u16,
    /// Device id.
    pub device_id: u16,
    /// Revision id.
    pub revision: u8,
    /// Class code: base class, sub-class, programming interface (e.g. 0x030000).
    pub class_code: u32,
    /// Subsystem vendor id.
    pub subsystem_vendor_id: u16,
    /// Subsystem id.
    pub subsystem_id: u16,
}

/// A BAR layout or access the configuration space cannot honour.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PciConfigError {
    /// BAR index beyond 5, or a 64-bit BAR at index 5.
    #[error("BAR {0} does not exist in a type-0 header")]
    BarIndex(usize),
    /// Two BARs claim the same register.
    #[error("BAR register {0} is already in use")]
    BarInUse(usize),
    /// Size not a power of two or too small for its kind.
    #[error("BAR {index} size {size:#x} is not a valid power of two for its kind")]
    BarSize {
        /// Register index.
        index: usize,
        /// Offending size.
        size: u64,
    },
    /// Expansion ROM size not a power of two of at least 2 KiB (or zero for none).
    #[error("expansion ROM size {0:#x} is not a power of two of at least 2 KiB")]
    RomSize(u32),
}

/// Snapshot of a configuration space: everything needed to restore it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciConfigState {
    /// Register contents.
    pub regs: Vec<u8>,
}

/// A type-0 configuration space.
#[derive(Clone, Debug)]
pub struct PciConfig {
    regs: [u8; CONFIG_SPACE_SIZE],
    /// Bits the guest may write.
    wmask: [u8; CONFIG_SPACE_SIZE],
    /// Bits cleared by writing 1.
    w1cmask: [u8; CONFIG_SPACE_SIZE],
    bars: [Option<BarSpec>; NUM_BARS],
    rom_size: u32,
}

impl PciConfig {
    /// A configuration space for `id` with interrupt pin INTA and no BARs yet.
    pub fn new(id: PciIdentity) -> Self {
        let mut cfg = PciConfig {
            regs: [0; CONFIG_SPACE_SIZE],
            wmask: [0; CONFIG_SPACE_SIZE],
            w1cmask: [0; CONFIG_SPACE_SIZE],
            bars: [None; NUM_BARS],
            rom_size: 0,
        };
        cfg.put_u16(VENDOR_ID, id.vendor_id);
        cfg.put_u16(DEVICE_ID, id.device_id);
        cfg.put_u32(REVISION_ID, (id.class_code << 8) | u32::from(id.revision));
        cfg.regs[HEADER_TYPE] = 0;
        cfg.put_u16(SUBSYSTEM_VENDOR_ID, id.subsystem_vendor_id);
        cfg.put_u16(SUBSYSTEM_ID, id.subsystem_id);
        cfg.regs[INTERRUPT_PIN] = 1;
        cfg.wmask[INTERRUPT_LINE] = 0xff;
        cfg.set_wmask_u16(COMMAND, COMMAND_WRITABLE);
        cfg.w1cmask[STATUS..STATUS + 2].copy_from_slice(&STATUS_W1C.to_le_bytes());
        cfg
    }

    /// Declares a BAR. Its register then reads back `size - 1` as zeros when sized.
    pub fn add_bar(&mut self, bar: BarSpec) -> Result<(), PciConfigError> {
        let is64 = matches!(bar.kind, BarKind::Memory64 { .. });
        let last = if is64 { bar.index + 1 } else { bar.index };
        if last >= NUM_BARS {
            return Err(PciConfigError::BarIndex(bar.index));
        }
        for i in bar.index..=last {
            if self.bar_register_used(i) {
                return Err(PciConfigError::BarInUse(i));
            }
        }
        let min = if bar.kind == BarKind::Io { 4 } else { 16 };
        if !bar.size.is_power_of_two() || bar.size < min || (!is64 && bar.size > 1 << 31) {
            return Err(PciConfigError::BarSize {
                index: bar.index,
                size: bar.size,
            });
        }
        let mask = !(bar.size - 1);
        let off = BAR0 + 4 * bar.index;
        let (flags, low_mask) = match bar.kind {
            BarKind::Io => (0x1u32, (mask as u32) & !0x3),
            BarKind::Memory32 { prefetchable } => {
                (u32::from(prefetchable) << 3, (mask as u32) & !0xf)
            }
            BarKind::Memory64 { prefetchable } => {
                (0x4 | (u32::from(prefetchable) << 3), (mask as u32) & !0xf)
            }
        };
        self.put_u32(off, flags);
        self.set_wmask_u32(off, low_mask);
        if is64 {
            self.put_u32(off + 4, 0);
            self.set_wmask_u32(off + 4, (mask >> 32) as u32);
        }
        self.bars[bar.index] = Some(bar);
        Ok(())
    }

    /// Declares an expansion ROM of `size` bytes (0 = none, register reads as 0).
    pub fn set_rom_size(&mut self, size: u32) -> Result<(), PciConfigError> {
        if size != 0 && (!size.is_power_of_two() || size < 2048) {
            return Err(PciConfigError::RomSize(size));
        }
        self.rom_size = size;
        let mask = if size == 0 {
            0
        } else {
            (!(size - 1) & ROM_ADDRESS_MASK) | ROM_ENABLE
        };
        self.put_u32(EXPANSION_ROM, 0);
        self.set_wmask_u32(EXPANSION_ROM, mask);
        Ok(())
    }

    fn bar_register_used(&self, index: usize) -> bool {
        self.bars.iter().flatten().any(|b| {
            b.index == index || (matches!(b.kind, BarKind::Memory64 { .. }) && b.index + 1 == index)
        })
    }

    /// Reads `data.len()` bytes at `offset`; bytes past the end read as 0xff like an absent
    /// register, so a VMM's out-of-range probe cannot fault.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = offset
                .checked_add(i as u64)
                .and_then(|o| usize::try_from(o).ok())
                .and_then(|o| self.regs.get(o).copied())
                .unwrap_or(0xff);
        }
    }

    /// Writes `data` at `offset` through the write and write-1-to-clear masks. Bytes past the
    /// end are dropped.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &val) in data.iter().enumerate() {
            let Some(o) = offset
                .checked_add(i as u64)
                .and_then(|o| usize::try_from(o).ok())
                .filter(|&o| o < CONFIG_SPACE_SIZE)
            else {
                continue;
            };
            let wm = self.wmask[o];
            let w1c = self.w1cmask[o];
            let old = self.regs[o];
            self.regs[o] = ((old & !wm) | (val & wm)) & !(val & w1c);
        }
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.get_u16(COMMAND)
    }

    /// Whether the guest has set the INTx disable bit.
    pub fn intx_disabled(&self) -> bool {
        self.command() & COMMAND_INTX_DISABLE != 0
    }

    /// Mirrors the function's interrupt level into status bit 3 (read-only to the guest).
    pub fn set_interrupt_status(&mut self, asserted: bool) {
        let mut status = self.get_u16(STATUS);
        if asserted {
            status |= STATUS_INTERRUPT;
        } else {
            status &= !STATUS_INTERRUPT;
        }
        self.put_u16(STATUS, status);
    }

    /// Whether status bit 3 is set.
    pub fn interrupt_status(&self) -> bool {
        self.get_u16(STATUS) & STATUS_INTERRUPT != 0
    }

    /// The BAR declared at `index`, if any.
    pub fn bar(&self, index: usize) -> Option<BarSpec> {
        self.bars.get(index).copied().flatten()
    }

    /// The guest address the BAR is programmed to, if the matching decode bit in the command
    /// register is on (otherwise the BAR decodes nothing).
    pub fn bar_address(&self, index: usize) -> Option<u64> {
        let bar = self.bar(index)?;
        let off = BAR0 + 4 * index;
        let low = u64::from(self.get_u32(off));
        let (addr, enable) = match bar.kind {
            BarKind::Io => (low & !0x3, COMMAND_IO_SPACE),
            BarKind::Memory32 { .. } => (low & !0xf, COMMAND_MEMORY_SPACE),
            BarKind::Memory64 { .. } => {
                let high = u64::from(self.get_u32(off + 4));
                ((high << 32) | (low & !0xf), COMMAND_MEMORY_SPACE)
            }
        };
        (self.command() & enable != 0).then_some(addr)
    }

    /// Expansion ROM size (0 if none).
    pub fn rom_size(&self) -> u32 {
        self.rom_size
    }

    /// Resets the guest-writable state to power-on values (BAR addresses, command, status,
    /// interrupt line), keeping identity and layout.
    pub fn reset(&mut self) {
        for o in 0..CONFIG_SPACE_SIZE {
            self.regs[o] &= !self.wmask[o];
        }
        let status = self.get_u16(STATUS) & !(STATUS_W1C | STATUS_INTERRUPT);
        self.put_u16(STATUS, status);
    }

    /// Captures the registers for snapshot/restore.
    pub fn state(&self) -> PciConfigState {
        PciConfigState {
            regs: self.regs.to_vec(),
        }
    }

    /// Restores registers from a snapshot taken of a space with the same layout. Read-only
    /// bytes keep this space's values, so a snapshot cannot change the identity or BAR sizes.
    pub fn restore(&mut self, state: &PciConfigState) {
        for (o, &val) in state.regs.iter().enumerate().take(CONFIG_SPACE_SIZE) {
            let wm = self.wmask[o]
                | if (STATUS..STATUS + 2).contains(&o) {
                    0xff
                } else {
                    0
                };
            self.regs[o] = (self.regs[o] & !wm) | (val & wm);
        }
    }

    fn get_u16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.regs[off], self.regs[off + 1]])
    }

    fn get_u32(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.regs[off..off + 4]);
        u32::from_le_bytes(b)
    }

    fn put_u16(&mut self, off: usize, v: u16) {
        self.regs[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn put_u32(&mut self, off: usize, v: u32) {
        self.regs[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn set_wmask_u16(&mut self, off: usize, v: u16) {
        self.wmask[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn set_wmask_u32(&mut self, off: usize, v: u32) {
        self.wmask[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qxl_like() -> PciConfig {
        let mut c = PciConfig::new(PciIdentity {
            vendor_id: 0x1b36,
            device_id: 0x0100,
            revision: 5,
            class_code: 0x030000,
            subsystem_vendor_id: 0x1af4,
            subsystem_id: 0x1100,
        });
        c.add_bar(BarSpec {
            index: 0,
            size: 64 << 20,
            kind: BarKind::Memory32 {
                prefetchable: false,
            },
        })
        .unwrap();
        c.add_bar(BarSpec {
            index: 3,
            size: 32,
            kind: BarKind::Io,
        })
        .unwrap();
        c.add_bar(BarSpec {
            index: 4,
            size: 1 << 33,
            kind: BarKind::Memory64 { prefetchable: true },
        })
        .unwrap();
        c
    }

    fn r32(c: &PciConfig, off: u64) -> u32 {
        let mut b = [0; 4];
        c.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn w32(c: &mut PciConfig, off: u64, v: u32) {
        c.write(off, &v.to_le_bytes());
    }

    #[test]
    fn identity_is_read_only() {
        let mut c = qxl_like();
        assert_eq!(r32(&c, 0), 0x0100_1b36);
        assert_eq!(r32(&c, 8), 0x0300_0005);
        assert_eq!(r32(&c, 0x2c), 0x1100_1af4);
        w32(&mut c, 0, 0xffff_ffff);
        w32(&mut c, 8, 0);
        assert_eq!(r32(&c, 0), 0x0100_1b36);
        assert_eq!(r32(&c, 8), 0x0300_0005);
        let mut pin = [0];
        c.read(0x3d, &mut pin);
        assert_eq!(pin[0], 1);
    }

    #[test]
    fn memory_bar_sizing_probe() {
        let mut c = qxl_like();
        w32(&mut c, 0x10, 0xffff_ffff);
        let v = r32(&c, 0x10);
        assert_eq!(v, 0xfc00_0000, "64 MiB, 32-bit, non-prefetchable");
        assert_eq!((!(v & !0xf)).wrapping_add(1), 64 << 20);
        w32(&mut c, 0x10, 0xfe00_0000);
        assert_eq!(r32(&c, 0x10), 0xfc00_0000);
        w32(&mut c, 4, u32::from(COMMAND_MEMORY_SPACE));
        assert_eq!(c.bar_address(0), Some(0xfc00_0000));
    }

    #[test]
    fn io_bar_sizing_probe() {
        let mut c = qxl_like();
        w32(&mut c, 0x1c, 0xffff_ffff);
        let v = r32(&c, 0x1c);
        assert_eq!(v & 0x3, 0x1, "I/O indicator bit stays");
        assert_eq!((!(v & !0x3)).wrapping_add(1), 32);
        w32(&mut c, 0x1c, 0xc040);
        assert_eq!(
            c.bar_address(3),
            None,
            "decode off until command enables it"
        );
        w32(&mut c, 4, u32::from(COMMAND_IO_SPACE));
        assert_eq!(c.bar_address(3), Some(0xc040));
    }

    #[test]
    fn bar64_sizing_probe_spans_two_registers() {
        let mut c = qxl_like();
        w32(&mut c, 0x20, 0xffff_ffff);
        w32(&mut c, 0x24, 0xffff_ffff);
        let lo = r32(&c, 0x20);
        let hi = r32(&c, 0x24);
        assert_eq!(lo & 0xf, 0xc, "64-bit prefetchable flags");
        let mask = (u64::from(hi) << 32) | u64::from(lo & !0xf);
        assert_eq!((!mask).wrapping_add(1), 1 << 33);
        w32(&mut c, 0x20, 0);
        w32(&mut c, 0x24, 0x8);
        w32(&mut c, 4, u32::from(COMMAND_MEMORY_SPACE));
        assert_eq!(c.bar_address(4), Some(0x8_0000_0000));
    }

    #[test]
    fn unimplemented_bars_read_zero_when_sized() {
        let mut c = qxl_like();
        for off in [0x14u64, 0x18] {
            w32(&mut c, off, 0xffff_ffff);
            assert_eq!(r32(&c, off), 0);
        }
    }

    #[test]
    fn expansion_rom_sizing_and_enable() {
        let mut c = qxl_like();
        w32(&mut c, 0x30, 0xffff_ffff);
        assert_eq!(r32(&c, 0x30), 0, "no ROM: register is hard-wired to 0");
        c.set_rom_size(64 << 10).unwrap();
        w32(&mut c, 0x30, 0xffff_f800);
        assert_eq!(r32(&c, 0x30), 0xffff_0000);
        w32(&mut c, 0x30, 0xfeb0_0001);
        assert_eq!(r32(&c, 0x30), 0xfeb0_0001);
        assert_eq!(c.set_rom_size(1000), Err(PciConfigError::RomSize(1000)));
    }

    #[test]
    fn intx_disable_and_status() {
        let mut c = qxl_like();
        assert!(!c.intx_disabled());
        c.write(5, &[0x04]);
        assert!(c.intx_disabled());
        c.set_interrupt_status(true);
        let mut s = [0; 2];
        c.read(6, &mut s);
        assert_eq!(u16::from_le_bytes(s) & STATUS_INTERRUPT, STATUS_INTERRUPT);
        // The guest cannot clear or set the interrupt status bit itself.
        c.write(6, &0xffffu16.to_le_bytes());
        assert!(c.interrupt_status());
        c.set_interrupt_status(false);
        c.write(6, &STATUS_INTERRUPT.to_le_bytes());
        assert!(!c.interrupt_status());
    }

    #[test]
    fn command_reserved_bits_are_hard_wired() {
        let mut c = qxl_like();
        c.write(4, &0xffffu16.to_le_bytes());
        assert_eq!(c.command(), COMMAND_WRITABLE);
    }

    #[test]
    fn unaligned_and_out_of_range_accesses_are_harmless() {
        let mut c = qxl_like();
        c.write(0x11, &[0xff, 0xff, 0xff]);
        assert_eq!(r32(&c, 0x10), 0xfc00_0000);
        let mut b = [0u8; 8];
        c.read(252, &mut b);
        assert_eq!(&b[4..], &[0xff; 4]);
        c.write(254, &[1, 2, 3, 4]);
        c.write(u64::MAX, &[1, 2]);
        c.read(u64::MAX, &mut b);
        assert_eq!(b, [0xff; 8]);
    }

    #[test]
    fn bad_bar_layouts_are_refused() {
        let mut c = qxl_like();
        let bar = |index, size, kind| BarSpec { index, size, kind };
        let m32 = BarKind::Memory32 {
            prefetchable: false,
        };
        assert_eq!(
            c.add_bar(bar(0, 4096, m32)),
            Err(PciConfigError::BarInUse(0))
        );
        assert_eq!(
            c.add_bar(bar(
                5,
                4096,
                BarKind::Memory64 {
                    prefetchable: false
                }
            )),
            Err(PciConfigError::BarIndex(5))
        );
        assert!(matches!(
            c.add_bar(bar(1, 3000, m32)),
            Err(PciConfigError::BarSize { .. })
        ));
        assert_eq!(
            c.add_bar(bar(5, 4096, m32)),
            Err(PciConfigError::BarInUse(5))
        );
    }

    #[test]
    fn reset_and_restore() {
        let mut c = qxl_like();
        w32(&mut c, 0x10, 0xf000_0000);
        w32(&mut c, 4, 0x0407);
        let snap = c.state();
        c.reset();
        assert_eq!(r32(&c, 0x10), 0);
        assert_eq!(c.command(), 0);
        c.restore(&snap);
        assert_eq!(r32(&c, 0x10), 0xf000_0000);
        assert_eq!(c.command(), 0x0407);
        assert_eq!(r32(&c, 0), 0x0100_1b36);
    }
}
