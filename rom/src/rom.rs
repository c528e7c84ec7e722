//! The ROM BAR image: QXLRom followed by the compat mode table.
//!
//! The device keeps two copies, as QEMU does: the live ROM the guest sees and a "shadow" that
//! [`Rom::reset`] restores. Values set by the host (client monitors config, client presence
//! and capabilities, compression level, multimedia clock) go into both, so they survive a
//! guest reset; values that follow guest actions (slot generation, compat mode, update id) go
//! into the live copy only.

use core::mem::size_of;

use saffron_ring::abi::{
    QXL_NUM_MEMSLOTS, QXL_RAM_HEADER_SIZE, QXL_ROM_MAGIC, QXL_SLOT_GEN_BITS, QXL_SLOT_ID_BITS,
    QXLMode, QXLModes, QXLRom, QXLURect,
};
use thiserror::Error;
use vm_memory::ByteValued;

use crate::modes::{MODE_COUNT, mode_table};
use crate::monitors::{ClientMonitorsError, client_monitors_config, client_monitors_crc};

/// Page size of the guest's view of BAR0 ("io pages").
const QXL_PAGE_SIZE: u64 = 4096;

/// Errors building or updating the ROM.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum RomError {
    #[error(
        "BAR0 size {bar0_size:#x} cannot hold a {surface0_area_size:#x}-byte surface 0 area and the 8 KiB RAM header"
    )]
    Bar0TooSmall {
        bar0_size: u64,
        surface0_area_size: u64,
    },
    #[error("BAR0 size {bar0_size:#x} does not fit the ROM's 32-bit offsets")]
    Bar0TooLarge { bar0_size: u64 },
    #[error("BAR0 size {bar0_size:#x} is not a multiple of the 4 KiB page")]
    Bar0Unaligned { bar0_size: u64 },
    #[error(
        "{n_surfaces} surfaces: the guest needs at least 2 (its id allocator never ends otherwise)"
    )]
    TooFewSurfaces { n_surfaces: u32 },
    #[error("client capabilities of {len} bytes do not fit the ROM's 58")]
    CapabilitiesTooLong { len: usize },
    #[error("invalid client monitors config: {0}")]
    ClientMonitors(#[from] ClientMonitorsError),
}

// Even the unfiltered mode table fits in the ROM BAR after QXLRom and QXLModes.
const _: () = assert!(
    size_of::<QXLRom>() + size_of::<QXLModes>() + MODE_COUNT * size_of::<QXLMode>() <= Rom::SIZE
);

/// What the ROM describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RomConfig {
    /// Size of the RAM BAR (BAR0), whose last 8 KiB hold the RAM header.
    pub bar0_size: u64,
    /// Bytes at the start of BAR0 reserved for surface 0 / the VGA framebuffer ("vgamem");
    /// the guest sizes its largest mode by it. Rounded up to a page.
    pub surface0_area_size: u32,
    /// Surface ids the guest may use (0 is the primary).
    pub n_surfaces: u32,
    /// Device index, for guests with several QXL devices.
    pub id: u32,
    /// Verbosity the guest driver is asked to log with.
    pub log_level: u32,
}

impl Default for RomConfig {
    /// QEMU's defaults: 64 MiB BAR0, 16 MiB surface 0 area, 1024 surfaces.
    fn default() -> Self {
        RomConfig {
            bar0_size: 64 << 20,
            surface0_area_size: 16 << 20,
            n_surfaces: 1024,
            id: 0,
            log_level: 0,
        }
    }
}

/// The ROM BAR contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rom {
    live: QXLRom,
    shadow: QXLRom,
    modes: Vec<QXLMode>,
}

impl Rom {
    /// Bytes of the ROM BAR (two pages, as QEMU).
    pub const SIZE: usize = 8192;

    /// Builds the ROM for `config`.
    pub fn new(config: &RomConfig) -> Result<Rom, RomError> {
        let RomConfig {
            bar0_size,
            surface0_area_size,
            n_surfaces,
            id,
            log_level,
        } = *config;
        if n_surfaces < 2 {
            return Err(RomError::TooFewSurfaces { n_surfaces });
        }
        if !bar0_size.is_multiple_of(QXL_PAGE_SIZE) {
            return Err(RomError::Bar0Unaligned { bar0_size });
        }
        let surface0 = u64::from(surface0_area_size).next_multiple_of(QXL_PAGE_SIZE);
        let too_small = RomError::Bar0TooSmall {
            bar0_size,
            surface0_area_size: surface0,
        };
        let ram_header_offset = bar0_size
            .checked_sub(QXL_RAM_HEADER_SIZE)
            .ok_or(too_small)?;
        let pages_bytes = ram_header_offset.checked_sub(surface0).ok_or(too_small)?;
        let too_large = RomError::Bar0TooLarge { bar0_size };
        let ram_header_offset = u32::try_from(ram_header_offset).map_err(|_| too_large)?;
        let surface0 = u32::try_from(surface0).map_err(|_| too_large)?;
        let num_pages = u32::try_from(pages_bytes / QXL_PAGE_SIZE).map_err(|_| too_large)?;

        let modes = mode_table(surface0);

        let rom = QXLRom {
            magic: QXL_ROM_MAGIC,
            id,
            log_level,
            modes_offset: size_of::<QXLRom>() as u32,
            num_pages,
            pages_offset: surface0,
            draw_area_offset: 0,
            surface0_area_size: surface0,
            ram_header_offset,
            n_surfaces,
            slots_start: 1,
            slots_end: QXL_NUM_MEMSLOTS - 1,
            slot_gen_bits: QXL_SLOT_GEN_BITS,
            slot_id_bits: QXL_SLOT_ID_BITS,
            ..QXLRom::default()
        };
        Ok(Rom {
            live: rom,
            shadow: rom,
            modes,
        })
    }

    /// The live QXLRom.
    pub fn header(&self) -> &QXLRom {
        &self.live
    }

    /// The compat modes listed after the ROM (QXL_IO_SET_MODE indexes this list).
    pub fn modes(&self) -> &[QXLMode] {
        &self.modes
    }

    /// The whole ROM BAR: QXLRom, QXLModes, the modes, zero padding to [`Rom::SIZE`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(Self::SIZE);
        bytes.extend_from_slice(self.live.as_slice());
        let n_modes = u32::try_from(self.modes.len()).unwrap_or(0);
        bytes.extend_from_slice(QXLModes { n_modes }.as_slice());
        for mode in &self.modes {
            bytes.extend_from_slice(mode.as_slice());
        }
        bytes.resize(Self::SIZE, 0);
        bytes
    }

    /// Restores the values of a freshly built ROM, keeping what the host has set since.
    pub fn reset(&mut self) {
        self.live = self.shadow;
    }

    /// Records the generation the guest must put in its addresses (after MEMSLOT_ADD).
    pub fn set_slot_generation(&mut self, generation: u8) {
        self.live.slot_generation = generation;
    }

    /// Records the compat mode set by QXL_IO_SET_MODE.
    pub fn set_mode(&mut self, mode: u32) {
        self.live.mode = mode;
    }

    /// Records the id of the last completed UPDATE command (compat drivers poll it).
    pub fn set_update_id(&mut self, update_id: u32) {
        self.live.update_id = update_id;
    }

    /// The image compression level the host uses; informative for the guest.
    pub fn set_compression_level(&mut self, level: u32) {
        self.live.compression_level = level;
        self.shadow.compression_level = level;
    }

    /// The multimedia clock the guest stamps drawables with.
    pub fn set_mm_clock(&mut self, mm_clock: u32) {
        self.live.mm_clock = mm_clock;
        self.shadow.mm_clock = mm_clock;
    }

    /// Whether a client is connected.
    pub fn set_client_present(&mut self, present: bool) {
        self.live.client_present = u8::from(present);
        self.shadow.client_present = u8::from(present);
    }

    /// The connected client's capability bitmap (at most 58 bytes; the rest is cleared).
    pub fn set_client_capabilities(&mut self, caps: &[u8]) -> Result<(), RomError> {
        let mut field = [0u8; 58];
        let dst = field
            .get_mut(..caps.len())
            .ok_or(RomError::CapabilitiesTooLong { len: caps.len() })?;
        dst.copy_from_slice(caps);
        self.live.client_capabilities = field;
        self.shadow.client_capabilities = field;
        Ok(())
    }

    /// Offers the guest a monitor layout (`{top, left, bottom, right}` per head), with the
    /// CRC the guest verifies. Returns whether the config changed, i.e. whether the
    /// device should raise QXL_INTERRUPT_CLIENT_MONITORS_CONFIG.
    pub fn set_client_monitors_config(&mut self, heads: &[QXLURect]) -> Result<bool, RomError> {
        let config = client_monitors_config(heads)?;
        let crc = client_monitors_crc(&config);
        let changed = config != self.live.client_monitors_config
            || crc != self.live.client_monitors_config_crc;
        for rom in [&mut self.live, &mut self.shadow] {
            rom.client_monitors_config = config;
            rom.client_monitors_config_crc = crc;
        }
        Ok(changed)
    }

    /// Offers one head of `width × height`: the guest's preferred initial resolution
    /// (Linux ≥ 4.12 honours it; without it Linux prefers 1024x768).
    pub fn set_preferred_resolution(&mut self, width: u32, height: u32) -> Result<bool, RomError> {
        self.set_client_monitors_config(&[QXLURect {
            top: 0,
            left: 0,
            bottom: height,
            right: width,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitors::crc32_le;
    use saffron_ring::abi::QXLClientMonitorsConfig;

    #[test]
    fn default_rom_matches_qemu_layout() {
        let rom = Rom::new(&RomConfig::default()).unwrap();
        let h = *rom.header();
        assert_eq!({ h.magic }, 0x4f52_5851);
        assert_eq!({ h.modes_offset }, 1160);
        assert_eq!({ h.ram_header_offset }, 0x03ff_e000);
        assert_eq!({ h.surface0_area_size }, 0x0100_0000);
        assert_eq!({ h.pages_offset }, 0x0100_0000);
        assert_eq!({ h.num_pages }, 12286);
        assert_eq!({ h.draw_area_offset }, 0);
        assert_eq!({ h.n_surfaces }, 1024);
        assert_eq!(
            (h.slots_start, h.slots_end, h.slot_gen_bits, h.slot_id_bits),
            (1, 7, 8, 8)
        );
        assert_eq!({ h.slot_generation }, 0);
        assert_eq!({ h.client_monitors_config_crc }, 0);
    }

    #[test]
    fn image_holds_rom_then_modes() {
        let rom = Rom::new(&RomConfig::default()).unwrap();
        let bytes = rom.to_bytes();
        assert_eq!(bytes.len(), Rom::SIZE);
        assert_eq!(&bytes[..4], b"QXRO");
        let n = u32::from_le_bytes(bytes[1160..1164].try_into().unwrap()) as usize;
        assert_eq!(n, rom.modes().len());
        assert!(n > 0);
        let first = QXLMode::from_slice(&bytes[1164..1196]).copied().unwrap();
        assert_eq!(first, rom.modes()[0]);
    }

    #[test]
    fn config_is_validated() {
        let mut c = RomConfig {
            n_surfaces: 1,
            ..RomConfig::default()
        };
        assert_eq!(
            Rom::new(&c),
            Err(RomError::TooFewSurfaces { n_surfaces: 1 })
        );
        c = RomConfig {
            bar0_size: 16 << 20,
            ..RomConfig::default()
        };
        assert!(matches!(Rom::new(&c), Err(RomError::Bar0TooSmall { .. })));
        c = RomConfig {
            bar0_size: 8 << 30,
            ..RomConfig::default()
        };
        assert_eq!(
            Rom::new(&c),
            Err(RomError::Bar0TooLarge { bar0_size: 8 << 30 })
        );
        c = RomConfig {
            bar0_size: (64 << 20) + 1,
            ..RomConfig::default()
        };
        assert!(matches!(Rom::new(&c), Err(RomError::Bar0Unaligned { .. })));
        // The surface 0 area is rounded up to a page.
        c = RomConfig {
            surface0_area_size: 4097,
            bar0_size: 4 << 20,
            ..RomConfig::default()
        };
        assert_eq!({ Rom::new(&c).unwrap().header().surface0_area_size }, 8192);
    }

    #[test]
    fn reset_restores_defaults_but_keeps_client_fields() {
        let mut rom = Rom::new(&RomConfig::default()).unwrap();
        let pristine = *rom.header();
        assert!(rom.set_preferred_resolution(1280, 800).unwrap());
        assert!(!rom.set_preferred_resolution(1280, 800).unwrap());
        rom.set_client_present(true);
        rom.set_client_capabilities(&[0xff, 1]).unwrap();
        rom.set_slot_generation(5);
        rom.set_mode(3);
        rom.set_update_id(9);
        rom.reset();
        let h = *rom.header();
        assert_eq!({ h.slot_generation }, 0);
        assert_eq!({ h.mode }, 0);
        assert_eq!({ h.update_id }, 0);
        assert_eq!(h.client_present, 1);
        assert_eq!(&h.client_capabilities[..3], &[0xff, 1, 0]);
        let config = h.client_monitors_config;
        assert_eq!({ config.count }, 1);
        assert_eq!({ config.heads[0].right }, 1280);
        assert_eq!({ config.heads[0].bottom }, 800);
        let expect = crc32_le(0, config.as_slice());
        assert_eq!({ h.client_monitors_config_crc }, expect);
        // Apart from the client fields, reset gives back the pristine ROM.
        let without_client = QXLRom {
            client_present: pristine.client_present,
            client_capabilities: pristine.client_capabilities,
            client_monitors_config: pristine.client_monitors_config,
            client_monitors_config_crc: pristine.client_monitors_config_crc,
            ..h
        };
        assert_eq!(without_client, pristine);
        assert!(rom.set_client_capabilities(&[0; 59]).is_err());
    }

    #[test]
    fn crc_in_image_covers_the_whole_config() {
        let mut rom = Rom::new(&RomConfig::default()).unwrap();
        rom.set_preferred_resolution(1280, 800).unwrap();
        let bytes = rom.to_bytes();
        let crc = u32::from_le_bytes(bytes[0x80..0x84].try_into().unwrap());
        let config_bytes = &bytes[0x84..0x84 + size_of::<QXLClientMonitorsConfig>()];
        assert_eq!(crc, crc32_le(0, config_bytes));
    }
}
