//! The QXL device shell: PCI identity, BAR layout, trapped BAR accesses and the interrupt
//! level. The QXL behaviour behind the I/O ports (memslots, surfaces, rings) grows here.

use std::sync::atomic::{AtomicU32, Ordering};

use thiserror::Error;
use tracing::{debug, info, warn};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, VolatileMemory};

use crate::irq::IrqLine;
use crate::memory::{DeviceMemory, MemoryBar, MemoryError};
use crate::pci::{BarKind, BarSpec, PciConfig, PciConfigError, PciIdentity};

/// Red Hat, Inc. (QEMU's paravirtual devices).
pub const QXL_VENDOR_ID: u16 = 0x1b36;
/// QXL_DEVICE_ID_STABLE.
pub const QXL_DEVICE_ID: u16 = 0x0100;
/// Revision 5: same ABI as 4, but VGA port writes no longer leave native mode.
pub const QXL_REVISION: u8 = 5;
/// Display controller, VGA-compatible (the "primary" QXL variant).
pub const QXL_CLASS_VGA: u32 = 0x03_00_00;
/// Size of the ROM BAR.
pub const QXL_ROM_SIZE: u64 = 8192;
/// Size of the I/O BAR (revision ≥ 3).
pub const QXL_IO_SIZE: u64 = 32;
/// The RAM header occupies the last 8 KiB of BAR0.
pub const RAM_HEADER_SIZE: u64 = 8192;

/// BAR numbers; Linux's qxl driver hard-codes them.
pub mod bar {
    /// RAM: surface-0 area, driver heap, RAM header at the end.
    pub const RAM: usize = 0;
    /// VRAM: surface memory.
    pub const VRAM: usize = 1;
    /// ROM: QXLRom and the mode table, read-only.
    pub const ROM: usize = 2;
    /// I/O ports.
    pub const IO: usize = 3;
}

/// I/O port numbers the shell itself acts on (offsets in the I/O BAR).
pub mod port {
    /// Recompute the interrupt line from int_pending & int_mask.
    pub const UPDATE_IRQ: u8 = 3;
    /// Hard reset of the QXL state.
    pub const RESET: u8 = 5;
    /// Print the guest's log buffer.
    pub const LOG: u8 = 7;
}

// Offsets inside the RAM header (QXLRam) used by the shell.
const RAM_MAGIC: u32 = 0x4152_5851; // "QXRA"
const RAM_OFF_MAGIC: u64 = 0;
const RAM_OFF_INT_PENDING: u64 = 4;
const RAM_OFF_INT_MASK: u64 = 8;
const RAM_OFF_LOG_BUF: u64 = 12;
const LOG_BUF_SIZE: usize = 4096;

/// Sizes of the device's BARs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QxlConfig {
    /// BAR0 size in bytes (power of two, > the RAM header).
    pub ram_size: u64,
    /// BAR1 size in bytes (power of two, ≥ 4 KiB).
    pub vram_size: u64,
}

impl Default for QxlConfig {
    fn default() -> Self {
        QxlConfig {
            ram_size: 64 << 20,
            vram_size: 64 << 20,
        }
    }
}

impl QxlConfig {
    /// Sizes from megabyte counts as given on a command line.
    pub fn from_mb(ram_mb: u64, vram_mb: u64) -> Result<Self, QxlError> {
        let cfg = QxlConfig {
            ram_size: ram_mb.saturating_mul(1 << 20),
            vram_size: vram_mb.saturating_mul(1 << 20),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), QxlError> {
        let ok = |s: u64, min: u64| s.is_power_of_two() && s >= min && s <= 1 << 31;
        if !ok(self.ram_size, 2 * RAM_HEADER_SIZE) {
            return Err(QxlError::BarSize("RAM (BAR0)", self.ram_size));
        }
        if !ok(self.vram_size, 4096) {
            return Err(QxlError::BarSize("VRAM (BAR1)", self.vram_size));
        }
        Ok(())
    }
}

/// Errors building or driving the device.
#[derive(Debug, Error)]
pub enum QxlError {
    /// A BAR size the device cannot expose.
    #[error("{0} size {1:#x} must be a power of two within the supported range")]
    BarSize(&'static str, u64),
    /// The memory handed in does not match the configured sizes.
    #[error("device memory is {got_ram:#x}/{got_vram:#x} bytes, configured {ram:#x}/{vram:#x}")]
    MemorySize {
        /// Configured BAR0 size.
        ram: u64,
        /// Configured BAR1 size.
        vram: u64,
        /// Given BAR0 size.
        got_ram: u64,
        /// Given BAR1 size.
        got_vram: u64,
    },
    /// The configuration space rejected the layout.
    #[error("PCI configuration: {0}")]
    Pci(#[from] PciConfigError),
    /// A BAR access outside memory.
    #[error("device memory: {0}")]
    Memory(#[from] MemoryError),
}

/// Counters a front end or the control socket can report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QxlStats {
    /// 1-byte writes per I/O port.
    pub io_writes: [u64; QXL_IO_SIZE as usize],
    /// I/O BAR accesses that were not 1-byte writes (dropped, as QEMU does).
    pub io_ignored: u64,
    /// Trapped accesses per BAR (for BAR0/1 these are only the ones the VMM did not map).
    pub bar_accesses: [u64; 4],
    /// Times the interrupt level went from low to high.
    pub irq_raised: u64,
    /// Device resets (PCI reset or the RESET port).
    pub resets: u64,
    /// The last text the guest logged through the LOG port.
    pub last_log: String,
}

/// The QXL PCI function.
pub struct QxlDevice {
    cfg: QxlConfig,
    pci: PciConfig,
    memory: DeviceMemory,
    rom: Vec<u8>,
    irq: Box<dyn IrqLine>,
    level: bool,
    stats: QxlStats,
}

impl std::fmt::Debug for QxlDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QxlDevice")
            .field("cfg", &self.cfg)
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

impl QxlDevice {
    /// Builds the device over `memory` (which must have the configured BAR sizes), driving
    /// `irq`.
    pub fn new(
        cfg: QxlConfig,
        memory: DeviceMemory,
        irq: Box<dyn IrqLine>,
    ) -> Result<Self, QxlError> {
        cfg.validate()?;
        if memory.ram_size() != cfg.ram_size || memory.vram_size() != cfg.vram_size {
            return Err(QxlError::MemorySize {
                ram: cfg.ram_size,
                vram: cfg.vram_size,
                got_ram: memory.ram_size(),
                got_vram: memory.vram_size(),
            });
        }
        let mut pci = PciConfig::new(PciIdentity {
            vendor_id: QXL_VENDOR_ID,
            device_id: QXL_DEVICE_ID,
            revision: QXL_REVISION,
            class_code: QXL_CLASS_VGA,
            subsystem_vendor_id: 0x1af4,
            subsystem_id: 0x1100,
        });
        let mem32 = BarKind::Memory32 {
            prefetchable: false,
        };
        for (index, size, kind) in [
            (bar::RAM, cfg.ram_size, mem32),
            (bar::VRAM, cfg.vram_size, mem32),
            (bar::ROM, QXL_ROM_SIZE, mem32),
            (bar::IO, QXL_IO_SIZE, BarKind::Io),
        ] {
            pci.add_bar(BarSpec { index, size, kind })?;
        }
        let mut dev = QxlDevice {
            cfg,
            pci,
            memory,
            rom: vec![0; QXL_ROM_SIZE as usize],
            irq,
            level: false,
            stats: QxlStats::default(),
        };
        dev.reset_qxl();
        Ok(dev)
    }

    /// The configured sizes.
    pub fn config(&self) -> QxlConfig {
        self.cfg
    }

    /// The PCI configuration space (read-only view, e.g. for BAR addresses).
    pub fn pci(&self) -> &PciConfig {
        &self.pci
    }

    /// BAR0/BAR1 memory.
    pub fn memory(&self) -> &DeviceMemory {
        &self.memory
    }

    /// Counters since start.
    pub fn stats(&self) -> &QxlStats {
        &self.stats
    }

    /// The current interrupt level (int_pending & int_mask != 0 at the last evaluation).
    pub fn irq_level(&self) -> bool {
        self.level
    }

    /// Size of `bar` as exposed in config space (0 if the device has no such BAR).
    pub fn bar_size(&self, bar: usize) -> u64 {
        self.pci.bar(bar).map_or(0, |b| b.size)
    }

    /// A configuration space read.
    pub fn config_read(&self, offset: u64, data: &mut [u8]) {
        self.pci.read(offset, data);
    }

    /// A configuration space write. The INTx disable bit gates the line, so the level is
    /// re-driven after every write.
    pub fn config_write(&mut self, offset: u64, data: &[u8]) {
        let was_disabled = self.pci.intx_disabled();
        self.pci.write(offset, data);
        if was_disabled != self.pci.intx_disabled() {
            self.drive_line();
        }
    }

    /// A trapped BAR read. Reads outside a BAR or of a BAR the device lacks return 0xff, like
    /// an unclaimed bus cycle: the guest gets no fault and learns nothing.
    pub fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if let Some(n) = self.stats.bar_accesses.get_mut(bar) {
            *n += 1;
        }
        let ok = match bar {
            bar::RAM => self.memory.read(MemoryBar::Ram, offset, data).is_ok(),
            bar::VRAM => self.memory.read(MemoryBar::Vram, offset, data).is_ok(),
            bar::ROM => usize::try_from(offset)
                .ok()
                .and_then(|o| self.rom.get(o..o.checked_add(data.len())?))
                .map(|src| data.copy_from_slice(src))
                .is_some(),
            _ => false,
        };
        if !ok {
            data.fill(0xff);
        }
    }

    /// A trapped BAR write. Writes outside a BAR, into the ROM, or of the wrong width to an
    /// I/O port are dropped.
    pub fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if let Some(n) = self.stats.bar_accesses.get_mut(bar) {
            *n += 1;
        }
        let result = match bar {
            bar::RAM => self.memory.write(MemoryBar::Ram, offset, data),
            bar::VRAM => self.memory.write(MemoryBar::Vram, offset, data),
            bar::IO => {
                match (u8::try_from(offset), data) {
                    (Ok(port), [val]) if u64::from(port) < QXL_IO_SIZE => self.io_write(port, *val),
                    _ => self.stats.io_ignored += 1,
                }
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            debug!("dropped BAR{bar} write: {e}");
        }
    }

    /// PCI function reset: config space back to power-on values and a QXL hard reset.
    pub fn reset(&mut self) {
        self.pci.reset();
        self.reset_qxl();
    }

    fn io_write(&mut self, port: u8, val: u8) {
        if let Some(n) = self.stats.io_writes.get_mut(usize::from(port)) {
            *n += 1;
        }
        match port {
            port::UPDATE_IRQ => self.update_irq(),
            port::RESET => self.reset_qxl(),
            port::LOG => self.log_guest_text(),
            _ => debug!(port, val, "I/O port not handled by the device shell yet"),
        }
    }

    fn ram_header(&self) -> u64 {
        self.cfg.ram_size - RAM_HEADER_SIZE
    }

    fn ram_header_addr(&self, field: u64) -> GuestAddress {
        // In range by construction: the RAM header lies inside BAR0 (validated sizes).
        GuestAddress(crate::memory::RAM_BASE.0 + self.ram_header() + field)
    }

    /// Re-initialises the RAM header's interrupt state and drops the line.
    fn reset_qxl(&mut self) {
        self.stats.resets += 1;
        let mem = self.memory.guest_memory();
        let writes = [
            (RAM_OFF_MAGIC, RAM_MAGIC),
            (RAM_OFF_INT_PENDING, 0),
            (RAM_OFF_INT_MASK, 0),
        ];
        for (field, val) in writes {
            if let Err(e) = mem.write_obj(val, self.ram_header_addr(field)) {
                warn!("cannot reset RAM header: {e}");
            }
        }
        self.update_irq();
    }

    /// Sets bits in int_pending (atomically: the guest clears it with xchg concurrently) and
    /// re-evaluates the line.
    pub fn raise(&mut self, bits: u32) {
        let addr = self.ram_header_addr(RAM_OFF_INT_PENDING);
        let result = self
            .memory
            .guest_memory()
            .get_slice(addr, 4)
            .map_err(|e| e.to_string())
            .and_then(|s| {
                s.get_atomic_ref::<AtomicU32>(0)
                    .map(|p| {
                        p.fetch_or(bits, Ordering::AcqRel);
                    })
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = result {
            warn!("cannot raise interrupt bits {bits:#x}: {e}");
        }
        self.update_irq();
    }

    /// Line = (int_pending & int_mask) != 0, read fresh from the RAM header.
    fn update_irq(&mut self) {
        let mem = self.memory.guest_memory();
        let read = |field| {
            mem.load::<u32>(self.ram_header_addr(field), Ordering::Acquire)
                .unwrap_or(0)
        };
        let level = read(RAM_OFF_INT_PENDING) & read(RAM_OFF_INT_MASK) != 0;
        if level && !self.level {
            self.stats.irq_raised += 1;
        }
        self.level = level;
        self.pci.set_interrupt_status(level);
        self.drive_line();
    }

    fn drive_line(&self) {
        self.irq.set_level(self.level && !self.pci.intx_disabled());
    }

    fn log_guest_text(&mut self) {
        let mut buf = vec![0u8; LOG_BUF_SIZE];
        let addr = self.ram_header_addr(RAM_OFF_LOG_BUF);
        if self
            .memory
            .guest_memory()
            .read_slice(&mut buf, addr)
            .is_err()
        {
            return;
        }
        // The guest need not NUL-terminate: the copy is bounded by the buffer size.
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let text = String::from_utf8_lossy(&buf[..end]).trim_end().to_string();
        info!(target: "saffron::guest", "{text}");
        self.stats.last_log = text;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records every level the device drives.
    #[derive(Clone, Default)]
    struct FakeLine(Arc<Mutex<Vec<bool>>>);

    impl IrqLine for FakeLine {
        fn set_level(&self, asserted: bool) {
            self.0.lock().unwrap().push(asserted);
        }
    }

    impl FakeLine {
        fn last(&self) -> bool {
            *self.0.lock().unwrap().last().unwrap()
        }
    }

    const SMALL: QxlConfig = QxlConfig {
        ram_size: 1 << 20,
        vram_size: 1 << 16,
    };

    fn device() -> (QxlDevice, FakeLine) {
        let line = FakeLine::default();
        let mem = DeviceMemory::anonymous(SMALL.ram_size, SMALL.vram_size).unwrap();
        let dev = QxlDevice::new(SMALL, mem, Box::new(line.clone())).unwrap();
        (dev, line)
    }

    fn put_header(dev: &mut QxlDevice, field: u64, val: u32) {
        let off = SMALL.ram_size - RAM_HEADER_SIZE + field;
        dev.bar_write(bar::RAM, off, &val.to_le_bytes());
    }

    fn get_header(dev: &mut QxlDevice, field: u64) -> u32 {
        let off = SMALL.ram_size - RAM_HEADER_SIZE + field;
        let mut b = [0; 4];
        dev.bar_read(bar::RAM, off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn identity_and_bars() {
        let (dev, _) = device();
        let mut id = [0; 12];
        dev.config_read(0, &mut id);
        assert_eq!(&id[..4], &[0x36, 0x1b, 0x00, 0x01]);
        assert_eq!(id[8], QXL_REVISION);
        assert_eq!(&id[9..12], &[0x00, 0x00, 0x03]);
        assert_eq!(dev.bar_size(bar::RAM), SMALL.ram_size);
        assert_eq!(dev.bar_size(bar::VRAM), SMALL.vram_size);
        assert_eq!(dev.bar_size(bar::ROM), QXL_ROM_SIZE);
        assert_eq!(dev.bar_size(bar::IO), QXL_IO_SIZE);
        assert_eq!(dev.bar_size(4), 0);
    }

    #[test]
    fn reset_writes_ram_header() {
        let (mut dev, line) = device();
        assert_eq!(get_header(&mut dev, RAM_OFF_MAGIC), RAM_MAGIC);
        assert_eq!(get_header(&mut dev, RAM_OFF_INT_MASK), 0);
        assert!(!line.last());
    }

    #[test]
    fn update_irq_drives_pending_and_mask() {
        let (mut dev, line) = device();
        put_header(&mut dev, RAM_OFF_INT_PENDING, 1);
        dev.bar_write(bar::IO, port::UPDATE_IRQ.into(), &[0]);
        assert!(!line.last(), "masked");
        put_header(&mut dev, RAM_OFF_INT_MASK, 1);
        dev.bar_write(bar::IO, port::UPDATE_IRQ.into(), &[0]);
        assert!(line.last());
        assert!(dev.pci().interrupt_status());
        put_header(&mut dev, RAM_OFF_INT_PENDING, 0);
        dev.bar_write(bar::IO, port::UPDATE_IRQ.into(), &[0]);
        assert!(!line.last());
        assert!(!dev.pci().interrupt_status());
        assert_eq!(dev.stats().irq_raised, 1);
        assert_eq!(dev.stats().io_writes[usize::from(port::UPDATE_IRQ)], 3);
    }

    #[test]
    fn intx_disable_gates_the_line_but_not_the_status() {
        let (mut dev, line) = device();
        put_header(&mut dev, RAM_OFF_INT_MASK, 0x27);
        dev.config_write(5, &[0x04]);
        dev.raise(1);
        assert!(!line.last());
        assert!(dev.pci().interrupt_status());
        dev.config_write(5, &[0x00]);
        assert!(line.last(), "re-enabling INTx re-asserts a pending level");
    }

    #[test]
    fn raise_ors_bits() {
        let (mut dev, line) = device();
        put_header(&mut dev, RAM_OFF_INT_MASK, 0x04);
        dev.raise(0x01);
        assert!(!line.last());
        dev.raise(0x04);
        assert!(line.last());
        assert_eq!(get_header(&mut dev, RAM_OFF_INT_PENDING), 0x05);
    }

    #[test]
    fn reset_port_drops_the_line() {
        let (mut dev, line) = device();
        put_header(&mut dev, RAM_OFF_INT_MASK, 1);
        dev.raise(1);
        assert!(line.last());
        dev.bar_write(bar::IO, port::RESET.into(), &[0]);
        assert!(!line.last());
        assert_eq!(get_header(&mut dev, RAM_OFF_INT_MASK), 0);
    }

    #[test]
    fn log_port_reads_a_bounded_buffer() {
        let (mut dev, _) = device();
        let off = SMALL.ram_size - RAM_HEADER_SIZE + RAM_OFF_LOG_BUF;
        dev.bar_write(bar::RAM, off, b"hello\0junk");
        dev.bar_write(bar::IO, port::LOG.into(), &[0]);
        assert_eq!(dev.stats().last_log, "hello");
        dev.bar_write(bar::RAM, off, &[b'x'; LOG_BUF_SIZE]);
        dev.bar_write(bar::IO, port::LOG.into(), &[0]);
        assert_eq!(dev.stats().last_log.len(), LOG_BUF_SIZE);
    }

    #[test]
    fn odd_accesses_are_dropped_not_fatal() {
        let (mut dev, _) = device();
        dev.bar_write(bar::IO, 3, &[0, 0]);
        dev.bar_write(bar::IO, 200, &[0]);
        dev.bar_write(bar::IO, u64::MAX, &[0]);
        assert_eq!(dev.stats().io_ignored, 3);
        let mut b = [0u8; 4];
        dev.bar_read(bar::IO, 0, &mut b);
        assert_eq!(b, [0xff; 4]);
        dev.bar_read(bar::RAM, SMALL.ram_size - 2, &mut b);
        assert_eq!(b, [0xff; 4]);
        dev.bar_read(bar::ROM, QXL_ROM_SIZE - 2, &mut b);
        assert_eq!(b, [0xff; 4]);
        dev.bar_read(9, 0, &mut b);
        dev.bar_write(bar::ROM, 0, &[1, 2, 3, 4]);
        dev.bar_read(bar::ROM, 0, &mut b);
        assert_eq!(b, [0; 4], "ROM is read-only");
        dev.bar_write(bar::VRAM, u64::MAX - 1, &[1, 2, 3]);
    }

    #[test]
    fn sizes_are_validated() {
        assert!(QxlConfig::from_mb(64, 64).is_ok());
        assert!(QxlConfig::from_mb(48, 64).is_err());
        assert!(QxlConfig::from_mb(64, 0).is_err());
        assert!(QxlConfig::from_mb(u64::MAX, 64).is_err());
        let mem = DeviceMemory::anonymous(1 << 20, 1 << 20).unwrap();
        assert!(QxlDevice::new(SMALL, mem, Box::new(crate::irq::NoIrq)).is_err());
    }
}
