//! `hostile`: a misbehaving guest. With no driver bound, writes deterministic pseudo-random
//! garbage into the QXL RAM header (rings, `update_area`, `mem_slot`, `create_surface`), puts
//! ring entries pointing anywhere (and at garbage inside BAR0), and pokes random I/O ports,
//! all through the sysfs `resource0`/`resource3` files.
//!
//! The host test checks that the device survives it (the VMM keeps running and the device
//! records a guest bug), and that a reset plus the real driver bring the screen back.
//! `--reset yes` ends with a write to the RESET port (with `--rounds 0`, that is all it does).

use std::fs::File;
use std::os::fd::AsRawFd;

use crate::args::Options;
use crate::error::{Error, Result};
use crate::pattern::Xorshift32;
use crate::qxl::{Qxl, RAM_BAR};

/// Upper bound on `--rounds`.
const MAX_ROUNDS: u64 = 10_000_000;

/// `QXLRam` offsets (docs/qxl-device.md; checked against `saffron_ring::abi::ram`).
mod ram {
    /// `sizeof(QXLRam)`.
    pub const SIZE: u64 = 5348;
    /// `int_mask`.
    pub const INT_MASK: u64 = 8;
    /// `cmd_ring`: a ring header (num_items, prod, notify_on_prod, cons, notify_on_cons) and
    /// 32 items of 16 bytes (data u64, type u32, padding u32).
    pub const CMD_RING: u64 = 4108;
    /// `cursor_ring`, laid out as `cmd_ring`.
    pub const CURSOR_RING: u64 = 4640;
    /// `release_ring`: a ring header and 8 u64 ids.
    pub const RELEASE_RING: u64 = 5172;
    /// `update_area` (QXLRect: top, left, bottom, right as i32).
    pub const UPDATE_AREA: u64 = 5256;
    /// `update_surface` (u32).
    pub const UPDATE_SURFACE: u64 = 5272;
    /// `mem_slot` (mem_start u64, mem_end u64).
    pub const MEM_SLOT: u64 = 5276;
    /// `create_surface` (width, height, stride, format, position, mouse_mode, flags, type, mem).
    pub const CREATE_SURFACE: u64 = 5292;
    /// Items in the command and cursor rings.
    pub const RING_ITEMS: u32 = 32;
    /// Size of a ring item.
    pub const ITEM_SIZE: u64 = 16;
    /// Offset of the items after a ring header.
    pub const ITEMS: u64 = 20;
    /// Offset of `prod` in a ring header.
    pub const PROD: u64 = 4;
    /// `QXLSurfaceCreate` size.
    pub const CREATE_SIZE: usize = 40;
}

/// Port numbers (QXL revision 5).
mod port {
    pub const NOTIFY_CMD: u16 = 0;
    pub const NOTIFY_CURSOR: u16 = 1;
    pub const UPDATE_AREA: u16 = 2;
    pub const RESET: u16 = 5;
    pub const MEMSLOT_ADD: u16 = 8;
    pub const CREATE_PRIMARY: u16 = 12;
    pub const UPDATE_AREA_ASYNC: u16 = 16;
    pub const MEMSLOT_ADD_ASYNC: u16 = 17;
    pub const CREATE_PRIMARY_ASYNC: u16 = 18;
}

/// Offset of `slot_generation` in the ROM (BAR2).
const ROM_SLOT_GENERATION: usize = 0x44;
/// A memory BAR: `resource2` is the ROM.
const ROM_BAR: u32 = 2;

/// The garbage generator and what it has written.
struct Hostile<'a> {
    qxl: &'a Qxl,
    rng: Xorshift32,
    /// BAR0's guest-physical address, for memslots that the device accepts.
    bar0_phys: u64,
    /// The ROM, for a slot generation that passes the memslot check.
    rom: Option<Rom>,
    writes: u64,
}

impl Hostile<'_> {
    fn word(&mut self) -> u32 {
        self.rng.next_word()
    }

    fn below(&mut self, n: u32) -> u32 {
        if n == 0 { 0 } else { self.word() % n }
    }

    fn quad(&mut self) -> u64 {
        (u64::from(self.word()) << 32) | u64::from(self.word())
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 4);
        while v.len() < len {
            v.extend_from_slice(&self.word().to_le_bytes());
        }
        v.truncate(len);
        v
    }

    fn header(&self) -> u64 {
        self.qxl.header_offset()
    }

    fn ram_write(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.qxl.ram.write_bytes(offset, data)?;
        self.writes += 1;
        Ok(())
    }

    fn out(&mut self, port: u16, value: u8) -> Result<()> {
        self.qxl.ports.write_u8(port, value)?;
        self.writes += 1;
        Ok(())
    }

    /// An address for a ring entry or a surface: half the time a memslot-encoded one (slot 0
    /// or any, the current generation or any, an offset inside BAR0 or near its end), else
    /// 64 random bits.
    fn address(&mut self) -> u64 {
        if self.word() & 1 == 0 {
            return self.quad();
        }
        let slot = if self.word() & 3 == 0 {
            u64::from(self.below(256))
        } else {
            0
        };
        let generation = if self.word() & 3 == 0 {
            u64::from(self.below(256))
        } else {
            u64::from(self.rom.as_ref().map_or(0, Rom::slot_generation))
        };
        let bar = self.qxl.ram.len() as u64;
        let offset = match self.below(4) {
            0 => bar - 1 - u64::from(self.below(64)),
            1 => self.header() + u64::from(self.below(ram::SIZE as u32)),
            // Where `bar_garbage` writes most often.
            2 => u64::from(self.below(1 << 16)),
            _ => self.quad() % bar,
        };
        (slot << 56) | (generation << 48) | offset
    }

    /// Random bytes somewhere in the RAM header.
    fn header_garbage(&mut self) -> Result<()> {
        // log_buf is most of the header and harmless: half the time aim past it.
        let from = if self.word() & 1 == 0 {
            0
        } else {
            ram::CMD_RING as u32
        };
        let off = from + self.below(ram::SIZE as u32 - from);
        let len = 1 + self.below(64);
        let len = len.min(ram::SIZE as u32 - off) as usize;
        let data = self.bytes(len);
        self.ram_write(self.header() + u64::from(off), &data)
    }

    /// A random u32 into one field of one ring header (num_items, prod, notify, cons, ...).
    fn ring_field(&mut self) -> Result<()> {
        let ring = [ram::CMD_RING, ram::CURSOR_RING, ram::RELEASE_RING][self.below(3) as usize];
        let field = u64::from(self.below(5)) * 4;
        let value = match self.below(3) {
            0 => self.word(),
            1 => self.below(64),
            _ => u32::MAX - self.below(4),
        };
        self.ram_write(self.header() + ring + field, &value.to_le_bytes())
    }

    /// Garbage somewhere below the header: what the ring entries' addresses may land on.
    fn bar_garbage(&mut self) -> Result<()> {
        let bar = self.qxl.ram.len() as u64;
        let len = 1 + u64::from(self.below(256));
        let max = self.header().saturating_sub(len);
        let off = if self.word() & 1 == 0 {
            // Near the start, where plausible slot-0 addresses point most often.
            u64::from(self.below(1 << 16)).min(max)
        } else {
            self.quad() % bar.min(max.max(1))
        };
        let data = self.bytes(len as usize);
        self.ram_write(off, &data)
    }

    /// An entry at the producer index of the command or cursor ring, then a kick.
    fn ring_entry(&mut self, cursor: bool) -> Result<()> {
        let ring = self.header()
            + if cursor {
                ram::CURSOR_RING
            } else {
                ram::CMD_RING
            };
        let mut prod = [0u8; 4];
        self.qxl.ram.read_bytes(ring + ram::PROD, &mut prod)?;
        let prod = u32::from_le_bytes(prod);
        let mut item = [0u8; ram::ITEM_SIZE as usize];
        item[..8].copy_from_slice(&self.address().to_le_bytes());
        let type_ = if self.word() & 3 == 0 {
            self.word()
        } else {
            self.below(7)
        };
        item[8..12].copy_from_slice(&type_.to_le_bytes());
        let index = u64::from(prod % ram::RING_ITEMS);
        self.ram_write(ring + ram::ITEMS + index * ram::ITEM_SIZE, &item)?;
        let new_prod = if self.word() & 7 == 0 {
            self.word()
        } else {
            prod.wrapping_add(1)
        };
        self.ram_write(ring + ram::PROD, &new_prod.to_le_bytes())?;
        let kick = if cursor {
            port::NOTIFY_CURSOR
        } else {
            port::NOTIFY_CMD
        };
        let val = self.word() as u8;
        self.out(kick, val)
    }

    /// A garbage (or, a quarter of the time, well-formed) `mem_slot`, then MEMSLOT_ADD.
    fn memslot_add(&mut self) -> Result<()> {
        let bar = self.qxl.ram.len() as u64;
        let well_formed = self.word() & 1 == 0;
        let (start, end) = match self.below(4) {
            _ if well_formed => (self.bar0_phys, self.bar0_phys + bar),
            1 => {
                let a = self.bar0_phys + self.quad() % bar;
                (a, a.wrapping_add(u64::from(self.word())))
            }
            _ => (self.quad(), self.quad()),
        };
        let mut slot = [0u8; 16];
        slot[..8].copy_from_slice(&start.to_le_bytes());
        slot[8..].copy_from_slice(&end.to_le_bytes());
        self.ram_write(self.header() + ram::MEM_SLOT, &slot)?;
        let id = if well_formed {
            0
        } else if self.word() & 1 == 0 {
            self.below(8) as u8
        } else {
            self.word() as u8
        };
        let p = if self.word() & 1 == 0 {
            port::MEMSLOT_ADD
        } else {
            port::MEMSLOT_ADD_ASYNC
        };
        self.out(p, id)
    }

    /// A garbage (or plausible) `create_surface`, then CREATE_PRIMARY.
    fn create_primary(&mut self) -> Result<()> {
        let mut c = self.bytes(ram::CREATE_SIZE);
        if self.word() & 1 == 0 {
            // Plausible: small sizes, a stride that may or may not match, format 32 bpp, an
            // address that may be inside slot 0.
            let w = 1 + self.below(1024);
            let h = 1 + self.below(768);
            let stride = match self.below(3) {
                0 => (w * 4) as i32,
                1 => -((w * 4) as i32),
                _ => self.word() as i32,
            };
            c[0..4].copy_from_slice(&w.to_le_bytes());
            c[4..8].copy_from_slice(&h.to_le_bytes());
            c[8..12].copy_from_slice(&stride.to_le_bytes());
            c[12..16].copy_from_slice(&32u32.to_le_bytes());
            c[28..32].copy_from_slice(&0u32.to_le_bytes());
            let mem = self.address();
            c[32..40].copy_from_slice(&mem.to_le_bytes());
        }
        self.ram_write(self.header() + ram::CREATE_SURFACE, &c)?;
        let val = if self.word() & 3 == 0 {
            self.word() as u8
        } else {
            0
        };
        let p = if self.word() & 1 == 0 {
            port::CREATE_PRIMARY
        } else {
            port::CREATE_PRIMARY_ASYNC
        };
        self.out(p, val)
    }

    /// A garbage `update_area`/`update_surface`, then UPDATE_AREA (sync or async).
    fn update_area(&mut self) -> Result<()> {
        let area = self.bytes(16);
        self.ram_write(self.header() + ram::UPDATE_AREA, &area)?;
        let surface = if self.word() & 1 == 0 { 0 } else { self.word() };
        self.ram_write(self.header() + ram::UPDATE_SURFACE, &surface.to_le_bytes())?;
        let p = if self.word() & 1 == 0 {
            port::UPDATE_AREA
        } else {
            port::UPDATE_AREA_ASYNC
        };
        let val = self.word() as u8;
        self.out(p, val)
    }

    /// One random 1-byte write to any of the 32 ports.
    fn random_port(&mut self) -> Result<()> {
        let p = self.below(32) as u16;
        let val = self.word() as u8;
        self.out(p, val)
    }

    fn round(&mut self) -> Result<()> {
        match self.below(20) {
            0..=2 => self.header_garbage(),
            3..=4 => self.ring_field(),
            5..=6 => self.bar_garbage(),
            7..=9 => self.ring_entry(false),
            10..=11 => self.ring_entry(true),
            12 => self.memslot_add(),
            13 => self.create_primary(),
            14 => self.update_area(),
            15..=17 => self.random_port(),
            // The device ignores everything but RESET after a guest bug: reset now and then
            // so the garbage keeps reaching it.
            _ => {
                let val = self.word() as u8;
                self.out(port::RESET, val)
            }
        }
    }
}

/// The ROM (BAR2) mapped read-only, for the live slot generation.
struct Rom {
    ptr: *const u8,
    len: usize,
}

impl Rom {
    /// Maps the ROM, or `None` if it cannot be mapped.
    fn open(dev: &crate::pci::PciDevice) -> Option<Rom> {
        let path = dev.path(&format!("resource{ROM_BAR}"));
        let file = File::open(&path).ok()?;
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len <= ROM_SLOT_GENERATION {
            return None;
        }
        // SAFETY: a fresh read-only shared mapping of a file we hold open, checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        Some(Rom {
            ptr: ptr.cast::<u8>().cast_const(),
            len,
        })
    }

    /// `QXLRom.slot_generation` as the device shows it now.
    fn slot_generation(&self) -> u8 {
        // SAFETY: ROM_SLOT_GENERATION < len (checked in `open`), inside the live mapping.
        unsafe { self.ptr.add(ROM_SLOT_GENERATION).read_volatile() }
    }
}

impl Drop for Rom {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `open` made; nothing refers to it afterwards.
        unsafe { libc::munmap(self.ptr.cast_mut().cast(), self.len) };
    }
}

/// `hostile --seed S --rounds N [--reset yes|no] [--slot S]`: prints
/// `SAFFRON-HOSTILE seed= rounds= writes= bar0=` after the garbage, then, with `--reset yes`,
/// writes the RESET port and prints `SAFFRON-HOSTILE-RESET via=port`.
pub fn run(mut opts: Options) -> Result<()> {
    let slot = opts.take("slot");
    let seed = opts.take_u64("seed")?.unwrap_or(1);
    let rounds = opts.u64_or("rounds", 1000, MAX_ROUNDS)?;
    let reset = match opts.take("reset").as_deref() {
        None | Some("no") => false,
        Some("yes") => true,
        Some(other) => {
            return Err(Error::Usage(format!("--reset yes|no, not {other:?}")));
        }
    };
    opts.finish()?;
    let seed = u32::try_from(seed)
        .map_err(|_| Error::Usage(format!("--seed {seed:#x} does not fit in 32 bits")))?;
    let dev = super::find_device(slot)?;
    if let Some(driver) = dev.driver() {
        return Err(Error::Check(format!(
            "driver {driver} is bound to {}: hostile writes need the device unbound",
            dev.slot()
        )));
    }
    let qxl = Qxl::open(&dev)?;
    let bar0_phys = dev
        .resources()?
        .get(RAM_BAR as usize)
        .map(|r| r.start)
        .unwrap_or(0);
    let rom = Rom::open(&dev);
    let has_rom = rom.is_some();
    let mut h = Hostile {
        qxl: &qxl,
        rng: Xorshift32::new(seed),
        bar0_phys,
        rom,
        writes: 0,
    };
    if rounds > 0 {
        // Interrupts are nobody's in the guest now: keep the mask off so the line stays
        // quiet unless the garbage itself sets it.
        h.ram_write(h.header() + ram::INT_MASK, &0u32.to_le_bytes())?;
        for _ in 0..rounds {
            h.round()?;
        }
        qxl.ram.sync()?;
        println!(
            "SAFFRON-HOSTILE seed={seed:#x} rounds={rounds} writes={} bar0={bar0_phys:#x} \
             rom={}",
            h.writes,
            if has_rom { "mapped" } else { "unmapped" }
        );
    }
    if reset {
        qxl.out(port::RESET, 0)?;
        println!("SAFFRON-HOSTILE-RESET via=port slot={}", dev.slot());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offsets must match the ABI the device uses.
    #[test]
    fn ram_offsets_follow_the_abi() {
        assert_eq!(
            ram::CMD_RING + ram::ITEMS + 32 * ram::ITEM_SIZE,
            ram::CURSOR_RING
        );
        assert_eq!(
            ram::CURSOR_RING + ram::ITEMS + 32 * ram::ITEM_SIZE,
            ram::RELEASE_RING
        );
        assert_eq!(ram::RELEASE_RING + ram::ITEMS + 8 * 8, ram::UPDATE_AREA);
        assert_eq!(ram::UPDATE_AREA + 16, ram::UPDATE_SURFACE);
        assert_eq!(ram::UPDATE_SURFACE + 4, ram::MEM_SLOT);
        assert_eq!(ram::MEM_SLOT + 16, ram::CREATE_SURFACE);
        assert_eq!(
            ram::CREATE_SURFACE + ram::CREATE_SIZE as u64 + 16,
            ram::SIZE
        );
    }
}
