//! The few QXL ABI pieces the probe touches (see docs/qxl-device.md §3–§5).

use crate::error::{Error, Result};
use crate::mmio::{BarMapping, IoPorts};
use crate::pci::PciDevice;

/// The RAM header occupies the last 8 KiB of BAR0 (`ram_header_offset = bar0_size - 8192`).
pub const RAM_HEADER_SIZE: u64 = 8192;
/// `QXLRam.int_pending`: event bits the device raised.
pub const INT_PENDING: u64 = 4;
/// `QXLRam.int_mask`: event bits the guest wants as interrupts.
pub const INT_MASK: u64 = 8;
/// `QXLRam.log_buf`: text for the LOG port.
pub const LOG_BUF: u64 = 12;
/// Size of `log_buf`; one byte is kept for the terminating NUL.
pub const LOG_BUF_SIZE: usize = 4096;

/// BAR holding VRAM and the RAM header.
pub const RAM_BAR: u32 = 0;
/// The I/O BAR with the ports.
pub const IO_BAR: u32 = 3;

/// I/O port numbers (offsets in BAR3).
pub mod port {
    /// Recompute the INTx level from `int_pending & int_mask`.
    pub const UPDATE_IRQ: u16 = 3;
    /// Log the text in `log_buf`.
    pub const LOG: u16 = 7;
}

/// The device's BAR0 mapping and I/O ports, opened with decoding switched on.
#[derive(Debug)]
pub struct Qxl {
    /// BAR0 mapped in full.
    pub ram: BarMapping,
    /// BAR3.
    pub ports: IoPorts,
    header: u64,
}

impl Qxl {
    /// Opens BAR0 and BAR3 of `dev`.
    pub fn open(dev: &PciDevice) -> Result<Self> {
        dev.ensure_decoding(true)?;
        let ram = BarMapping::open(&dev.path(&format!("resource{RAM_BAR}")))?;
        let ports = IoPorts::open(&dev.path(&format!("resource{IO_BAR}")))?;
        let size = ram.len() as u64;
        let header = size.checked_sub(RAM_HEADER_SIZE).ok_or(Error::OutOfRange {
            what: "RAM header in BAR0",
            offset: 0,
            len: RAM_HEADER_SIZE,
            size,
        })?;
        Ok(Qxl { ram, ports, header })
    }

    /// Offset of the RAM header in BAR0.
    pub fn header_offset(&self) -> u64 {
        self.header
    }

    /// Writes `QXLRam.int_pending`.
    pub fn set_int_pending(&self, value: u32) -> Result<()> {
        self.ram.write_u32(self.header + INT_PENDING, value)
    }

    /// Writes `QXLRam.int_mask`.
    pub fn set_int_mask(&self, value: u32) -> Result<()> {
        self.ram.write_u32(self.header + INT_MASK, value)
    }

    /// Stores `text` plus a terminating NUL in `log_buf`.
    pub fn set_log_text(&self, text: &[u8]) -> Result<()> {
        if text.len() >= LOG_BUF_SIZE {
            return Err(Error::OutOfRange {
                what: "log_buf (text + NUL)",
                offset: 0,
                len: text.len() as u64 + 1,
                size: LOG_BUF_SIZE as u64,
            });
        }
        let mut buf = Vec::with_capacity(text.len() + 1);
        buf.extend_from_slice(text);
        buf.push(0);
        self.ram.write_bytes(self.header + LOG_BUF, &buf)
    }

    /// Writes `value` to `port`.
    pub fn out(&self, port: u16, value: u8) -> Result<()> {
        self.ports.write_u8(port, value)
    }
}
