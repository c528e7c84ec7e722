//! Finding the device and reading its PCI state through sysfs.
//!
//! The guest runs no driver for the device, so everything goes through
//! `/sys/bus/pci/devices/<slot>/`: `vendor`/`device` to find it, `config` for config space,
//! `resource` for the BAR layout the kernel assigned, and `enable` to switch decoding on.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where the kernel lists PCI functions.
pub const SYSFS_PCI_DEVICES: &str = "/sys/bus/pci/devices";
/// Environment variable that replaces [`SYSFS_PCI_DEVICES`], so the host can run the probe
/// against a fake sysfs tree made of plain files (see `tests/fake_sysfs.rs`).
pub const SYSFS_OVERRIDE_ENV: &str = "SAFFRON_GUEST_SYSFS_PCI";

/// The directory to scan: the override if set, else the real sysfs.
pub fn devices_dir() -> PathBuf {
    std::env::var_os(SYSFS_OVERRIDE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SYSFS_PCI_DEVICES))
}
/// Red Hat's PCI vendor id, used by QEMU's QXL.
pub const QXL_VENDOR: u16 = 0x1b36;
/// QXL's PCI device id.
pub const QXL_DEVICE: u16 = 0x0100;

/// Config-space offsets and bits we use (PCI Local Bus 3.0, section 6.2).
pub mod cfg {
    /// Command register (u16).
    pub const COMMAND: u64 = 0x04;
    /// Status register (u16).
    pub const STATUS: u64 = 0x06;
    /// Revision id (u8).
    pub const REVISION: u64 = 0x08;
    /// Class code, 3 bytes starting with the programming interface.
    pub const CLASS: u64 = 0x09;
    /// Subsystem vendor id (u16).
    pub const SUBSYS_VENDOR: u64 = 0x2c;
    /// Subsystem id (u16).
    pub const SUBSYS_DEVICE: u64 = 0x2e;
    /// Interrupt pin (u8, 1 = INTA#).
    pub const INTERRUPT_PIN: u64 = 0x3d;
    /// Command: I/O space decoding.
    pub const COMMAND_IO: u16 = 1 << 0;
    /// Command: memory space decoding.
    pub const COMMAND_MEMORY: u16 = 1 << 1;
    /// Command: INTx disable (PCI 2.3).
    pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
    /// Status: INTx asserted by the function, independent of INTx disable (PCI 2.3).
    pub const STATUS_INTERRUPT: u16 = 1 << 3;
}

/// `IORESOURCE_*` flags the kernel prints in the `resource` file (include/linux/ioport.h).
pub mod ioresource {
    /// An I/O port range.
    pub const IO: u64 = 0x100;
    /// A memory range.
    pub const MEM: u64 = 0x200;
    /// Prefetchable memory.
    pub const PREFETCH: u64 = 0x2000;
    /// A 64-bit memory BAR.
    pub const MEM_64: u64 = 0x10_0000;
}

/// One line of the sysfs `resource` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// First address (bus address as the CPU sees it, or port number).
    pub start: u64,
    /// Last address, inclusive.
    pub end: u64,
    /// `IORESOURCE_*` flags.
    pub flags: u64,
}

impl Resource {
    /// Parses `0x<start> 0x<end> 0x<flags>`.
    pub fn parse(line: &str) -> Option<Self> {
        let mut it = line.split_whitespace().map(parse_hex);
        let r = Resource {
            start: it.next()??,
            end: it.next()??,
            flags: it.next()??,
        };
        it.next().is_none().then_some(r)
    }

    /// Whether the kernel assigned anything to this line.
    pub fn is_present(&self) -> bool {
        self.flags != 0 && self.end > self.start
    }

    /// Size in bytes (or ports); 0 when absent.
    pub fn size(&self) -> u64 {
        if self.is_present() {
            self.end - self.start + 1
        } else {
            0
        }
    }

    /// `io`, `mem64` or `mem32`, the names the host test expects (`unknown` for anything else,
    /// which a BAR should never be).
    pub fn kind(&self) -> &'static str {
        if self.flags & ioresource::IO != 0 {
            "io"
        } else if self.flags & ioresource::MEM == 0 {
            "unknown"
        } else if self.flags & ioresource::MEM_64 != 0 {
            "mem64"
        } else {
            "mem32"
        }
    }

    /// Whether the range is prefetchable memory.
    pub fn prefetchable(&self) -> bool {
        self.flags & ioresource::PREFETCH != 0
    }
}

/// Parses a `0x`-prefixed hex number as the kernel prints it.
fn parse_hex(s: &str) -> Option<u64> {
    let hex = s.strip_prefix("0x")?;
    u64::from_str_radix(hex, 16).ok()
}

/// Reads a sysfs attribute as trimmed text.
pub fn read_attr(path: &Path) -> Result<String> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::io("read", path, e))
}

/// Reads a sysfs attribute holding one `0x` hex number.
fn read_hex_attr(path: &Path) -> Result<u64> {
    let s = read_attr(path)?;
    parse_hex(&s).ok_or(Error::Sysfs {
        path: path.to_path_buf(),
        content: s,
    })
}

/// Reads a sysfs attribute holding one decimal number.
pub fn read_dec_attr(path: &Path) -> Result<u64> {
    let s = read_attr(path)?;
    s.parse().map_err(|_| Error::Sysfs {
        path: path.to_path_buf(),
        content: s,
    })
}

/// A PCI function found in sysfs.
#[derive(Debug, Clone)]
pub struct PciDevice {
    slot: String,
    dir: PathBuf,
}

impl PciDevice {
    /// Finds the QXL device under `root`: the given slot (which must be QXL), or the first
    /// match by slot name.
    pub fn find(root: &Path, slot: Option<&str>) -> Result<Self> {
        if let Some(slot) = slot {
            let dev = PciDevice::at(root, slot);
            let (vendor, device) = dev.ids()?;
            if (vendor, device) != (QXL_VENDOR, QXL_DEVICE) {
                return Err(Error::WrongDevice {
                    slot: slot.to_string(),
                    vendor,
                    device,
                });
            }
            return Ok(dev);
        }
        let entries = fs::read_dir(root).map_err(|e| Error::io("list", root, e))?;
        let mut slots: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        // read_dir order is arbitrary; sorting makes "first match" mean the lowest address.
        slots.sort();
        for slot in slots {
            let dev = PciDevice::at(root, &slot);
            if let Ok((QXL_VENDOR, QXL_DEVICE)) = dev.ids() {
                return Ok(dev);
            }
        }
        Err(Error::NoDevice {
            vendor: QXL_VENDOR,
            device: QXL_DEVICE,
            dir: root.to_path_buf(),
        })
    }

    fn at(root: &Path, slot: &str) -> Self {
        PciDevice {
            slot: slot.to_string(),
            dir: root.join(slot),
        }
    }

    /// The slot name, e.g. `0000:00:03.0`.
    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// Path of a file in the device's sysfs directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn ids(&self) -> Result<(u16, u16)> {
        let id = |name: &str| -> Result<u16> {
            let path = self.path(name);
            let v = read_hex_attr(&path)?;
            u16::try_from(v).map_err(|_| Error::Sysfs {
                path,
                content: format!("{v:#x}"),
            })
        };
        Ok((id("vendor")?, id("device")?))
    }

    /// Name of the bound driver (`qxl`, `uio_pci_generic`), or `None` when unbound.
    pub fn driver(&self) -> Option<String> {
        let target = fs::read_link(self.path("driver")).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// The IRQ number the kernel routed the function's pin to.
    pub fn irq(&self) -> Result<u64> {
        read_dec_attr(&self.path("irq"))
    }

    /// All lines of the `resource` file (BARs 0..5, the expansion ROM, bridge windows).
    pub fn resources(&self) -> Result<Vec<Resource>> {
        let path = self.path("resource");
        let text = fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
        text.lines()
            .map(|line| {
                Resource::parse(line).ok_or_else(|| Error::Sysfs {
                    path: path.clone(),
                    content: line.to_string(),
                })
            })
            .collect()
    }

    /// Opens config space for reading (and writing, which root may do).
    pub fn config(&self) -> Result<ConfigSpace> {
        ConfigSpace::open(self.path("config"))
    }

    /// Makes sure the device decodes memory (and I/O if `need_io`) accesses.
    ///
    /// With no driver bound nothing guarantees the firmware left decoding on, and sysfs `mmap`
    /// and port I/O do not turn it on themselves; writing `1` to `enable` is the kernel's
    /// sanctioned way (`pci_enable_device`). A bound driver (uio_pci_generic) has done it already,
    /// and the kernel refuses the write then, so we only write when a bit is actually off.
    pub fn ensure_decoding(&self, need_io: bool) -> Result<()> {
        let config = self.config()?;
        let wanted = cfg::COMMAND_MEMORY | if need_io { cfg::COMMAND_IO } else { 0 };
        let command = config.read_u16(cfg::COMMAND)?;
        if command & wanted == wanted {
            return Ok(());
        }
        let enable = self.path("enable");
        fs::write(&enable, "1").map_err(|e| Error::io("write", &enable, e))?;
        let command = config.read_u16(cfg::COMMAND)?;
        let missing = wanted & !command;
        if missing & cfg::COMMAND_MEMORY != 0 {
            return Err(Error::DecodingOff {
                slot: self.slot.clone(),
                space: "memory",
                command,
            });
        }
        if missing & cfg::COMMAND_IO != 0 {
            return Err(Error::DecodingOff {
                slot: self.slot.clone(),
                space: "I/O",
                command,
            });
        }
        Ok(())
    }
}

/// The sysfs `config` file of a function.
#[derive(Debug)]
pub struct ConfigSpace {
    file: File,
    path: PathBuf,
}

impl ConfigSpace {
    fn open(path: PathBuf) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        Ok(ConfigSpace { file, path })
    }

    fn read_exact<const N: usize>(&self, offset: u64) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        let done = self
            .file
            .read_at(&mut buf, offset)
            .map_err(|e| Error::io("read", &self.path, e))?;
        if done != N {
            return Err(Error::ShortIo {
                op: "read",
                path: self.path.clone(),
                offset,
                done,
                wanted: N,
            });
        }
        Ok(buf)
    }

    /// Reads one byte.
    pub fn read_u8(&self, offset: u64) -> Result<u8> {
        Ok(self.read_exact::<1>(offset)?[0])
    }

    /// Reads a little-endian u16 (sysfs does a single 16-bit config access when aligned).
    pub fn read_u16(&self, offset: u64) -> Result<u16> {
        Ok(u16::from_le_bytes(self.read_exact(offset)?))
    }

    /// Writes a little-endian u16 (one aligned 16-bit config access).
    pub fn write_u16(&self, offset: u64, value: u16) -> Result<()> {
        let buf = value.to_le_bytes();
        let done = self
            .file
            .write_at(&buf, offset)
            .map_err(|e| Error::io("write", &self.path, e))?;
        if done != buf.len() {
            return Err(Error::ShortIo {
                op: "write",
                path: self.path.clone(),
                offset,
                done,
                wanted: buf.len(),
            });
        }
        Ok(())
    }

    /// Reads the 24-bit class code (base class, subclass, prog-if) as `0xBBSSPP`.
    pub fn read_class(&self) -> Result<u32> {
        let [prog_if, sub, base] = self.read_exact::<3>(cfg::CLASS)?;
        Ok(u32::from_be_bytes([0, base, sub, prog_if]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resource_lines() {
        let bar0 =
            Resource::parse("0x00000000f4000000 0x00000000f7ffffff 0x0000000000040200").unwrap();
        assert!(bar0.is_present());
        assert_eq!(bar0.size(), 64 << 20);
        assert_eq!(bar0.kind(), "mem32");
        assert!(!bar0.prefetchable());

        let io =
            Resource::parse("0x000000000000c000 0x000000000000c01f 0x0000000000040101").unwrap();
        assert_eq!((io.kind(), io.size()), ("io", 32));

        let mem64 =
            Resource::parse("0x0000000800000000 0x0000000800003fff 0x000000000014220c").unwrap();
        assert_eq!(mem64.kind(), "mem64");
        assert!(mem64.prefetchable());

        let empty =
            Resource::parse("0x0000000000000000 0x0000000000000000 0x0000000000000000").unwrap();
        assert!(!empty.is_present());
        assert_eq!(empty.size(), 0);
    }

    #[test]
    fn rejects_malformed_resource_lines() {
        assert!(Resource::parse("").is_none());
        assert!(Resource::parse("0x0 0x1").is_none());
        assert!(Resource::parse("0x0 0x1 0x2 0x3").is_none());
        assert!(Resource::parse("0 1 2").is_none());
    }
}
