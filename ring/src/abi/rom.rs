//! The ROM BAR: QXLRom, followed by the QXLModes table.

use core::mem::offset_of;

use super::basic::QXLURect;
use super::consts::QXL_CLIENT_MONITORS_MAX;

/// Monitor layout the client (host side) would like; lives inside [`QXLRom`], checked by the
/// guest against `client_monitors_config_crc`.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QXLClientMonitorsConfig {
    pub count: u16,
    pub padding: u16,
    pub heads: [QXLURect; QXL_CLIENT_MONITORS_MAX],
}

impl Default for QXLClientMonitorsConfig {
    fn default() -> Self {
        QXLClientMonitorsConfig {
            count: 0,
            padding: 0,
            heads: [QXLURect::default(); QXL_CLIENT_MONITORS_MAX],
        }
    }
}

/// The device description the guest reads from BAR2.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QXLRom {
    pub magic: u32,
    pub id: u32,
    pub update_id: u32,
    pub compression_level: u32,
    pub log_level: u32,
    pub mode: u32,
    pub modes_offset: u32,
    pub num_pages: u32,
    pub pages_offset: u32,
    pub draw_area_offset: u32,
    pub surface0_area_size: u32,
    pub ram_header_offset: u32,
    pub mm_clock: u32,
    pub n_surfaces: u32,
    pub flags: u64,
    pub slots_start: u8,
    pub slots_end: u8,
    pub slot_gen_bits: u8,
    pub slot_id_bits: u8,
    pub slot_generation: u8,
    pub client_present: u8,
    pub client_capabilities: [u8; 58],
    pub client_monitors_config_crc: u32,
    pub client_monitors_config: QXLClientMonitorsConfig,
}

impl Default for QXLRom {
    fn default() -> Self {
        QXLRom {
            magic: 0,
            id: 0,
            update_id: 0,
            compression_level: 0,
            log_level: 0,
            mode: 0,
            modes_offset: 0,
            num_pages: 0,
            pages_offset: 0,
            draw_area_offset: 0,
            surface0_area_size: 0,
            ram_header_offset: 0,
            mm_clock: 0,
            n_surfaces: 0,
            flags: 0,
            slots_start: 0,
            slots_end: 0,
            slot_gen_bits: 0,
            slot_id_bits: 0,
            slot_generation: 0,
            client_present: 0,
            client_capabilities: [0; 58],
            client_monitors_config_crc: 0,
            client_monitors_config: QXLClientMonitorsConfig::default(),
        }
    }
}

/// One entry of the compat-mode table that follows the ROM.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLMode {
    pub id: u32,
    pub x_res: u32,
    pub y_res: u32,
    pub bits: u32,
    pub stride: u32,
    pub x_mili: u32,
    pub y_mili: u32,
    pub orientation: u32,
}

/// Header of the mode table; `n_modes` [`QXLMode`] entries follow.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLModes {
    pub n_modes: u32,
}

abi_pod! {
    QXLClientMonitorsConfig = 1028,
    QXLRom = 1160,
    QXLMode = 32,
    QXLModes = 4,
}

const _: () = assert!(offset_of!(QXLRom, modes_offset) == 0x18);
const _: () = assert!(offset_of!(QXLRom, surface0_area_size) == 0x28);
const _: () = assert!(offset_of!(QXLRom, ram_header_offset) == 0x2c);
const _: () = assert!(offset_of!(QXLRom, n_surfaces) == 0x34);
const _: () = assert!(offset_of!(QXLRom, flags) == 0x38);
const _: () = assert!(offset_of!(QXLRom, slots_start) == 0x40);
const _: () = assert!(offset_of!(QXLRom, slot_generation) == 0x44);
const _: () = assert!(offset_of!(QXLRom, client_present) == 0x45);
const _: () = assert!(offset_of!(QXLRom, client_capabilities) == 0x46);
const _: () = assert!(offset_of!(QXLRom, client_monitors_config_crc) == 0x80);
const _: () = assert!(offset_of!(QXLRom, client_monitors_config) == 0x84);
const _: () = assert!(offset_of!(QXLClientMonitorsConfig, heads) == 4);
