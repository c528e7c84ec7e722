//! The RAM header at the end of BAR0 and the structures living in it: rings, memslot and
//! primary-surface arguments.

use core::mem::offset_of;

use super::basic::{QXLPHYSICAL, QXLRect};
use super::consts::{
    QXL_COMMAND_RING_SIZE, QXL_CURSOR_RING_SIZE, QXL_LOG_BUF_SIZE, QXL_RELEASE_RING_SIZE,
};

/// One entry of the command and cursor rings.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLCommand {
    /// Where the command structure is (its first 8 bytes are always a QXLReleaseInfo).
    pub data: QXLPHYSICAL,
    /// `QXL_CMD_*`.
    pub type_: u32,
    pub padding: u32,
}

/// The five counters every SPICE ring starts with (`SPICE_RING_DECLARE`).
///
/// `prod` and `cons` run freely and wrap at 2^32; the slot is the counter masked by the ring
/// size.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLRingHeader {
    pub num_items: u32,
    pub prod: u32,
    pub notify_on_prod: u32,
    pub cons: u32,
    pub notify_on_cons: u32,
}

/// The command ring (`QXLCommandRing`).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLCommandRing {
    pub header: QXLRingHeader,
    pub items: [QXLCommand; QXL_COMMAND_RING_SIZE as usize],
}

/// The cursor ring (`QXLCursorRing`); same shape as the command ring.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLCursorRing {
    pub header: QXLRingHeader,
    pub items: [QXLCommand; QXL_CURSOR_RING_SIZE as usize],
}

/// The release ring (`QXLReleaseRing`): each item is the id of the first command of a chain.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLReleaseRing {
    pub header: QXLRingHeader,
    pub items: [u64; QXL_RELEASE_RING_SIZE as usize],
}

/// Argument of MEMSLOT_ADD: a guest-physical range `[mem_start, mem_end)`.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLMemSlot {
    pub mem_start: u64,
    pub mem_end: u64,
}

/// Argument of CREATE_PRIMARY.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLSurfaceCreate {
    pub width: u32,
    pub height: u32,
    /// Negative for bottom-up surfaces.
    pub stride: i32,
    /// `SPICE_SURFACE_FMT_*`.
    pub format: u32,
    pub position: u32,
    pub mouse_mode: u32,
    pub flags: u32,
    /// `QXL_SURF_TYPE_PRIMARY`.
    pub type_: u32,
    pub mem: QXLPHYSICAL,
}

/// The RAM header, spice-protocol layout (5348 bytes; the device reserves 8 KiB for it).
///
/// Linux's copy appends 64 unused bytes of guest capabilities, which fit in the reservation.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QXLRam {
    pub magic: u32,
    pub int_pending: u32,
    pub int_mask: u32,
    pub log_buf: [u8; QXL_LOG_BUF_SIZE],
    pub cmd_ring: QXLCommandRing,
    pub cursor_ring: QXLCursorRing,
    pub release_ring: QXLReleaseRing,
    pub update_area: QXLRect,
    pub update_surface: u32,
    pub mem_slot: QXLMemSlot,
    pub create_surface: QXLSurfaceCreate,
    pub flags: u64,
    pub monitors_config: QXLPHYSICAL,
}

impl Default for QXLRam {
    fn default() -> Self {
        QXLRam {
            magic: 0,
            int_pending: 0,
            int_mask: 0,
            log_buf: [0; QXL_LOG_BUF_SIZE],
            cmd_ring: QXLCommandRing::default(),
            cursor_ring: QXLCursorRing::default(),
            release_ring: QXLReleaseRing::default(),
            update_area: QXLRect::default(),
            update_surface: 0,
            mem_slot: QXLMemSlot::default(),
            create_surface: QXLSurfaceCreate::default(),
            flags: 0,
            monitors_config: 0,
        }
    }
}

/// Bytes of BAR0 set aside for the RAM header: `sizeof(QXLRam)` rounded up to pages.
pub const QXL_RAM_HEADER_SIZE: u64 = 8192;

abi_pod! {
    QXLCommand = 16,
    QXLRingHeader = 20,
    QXLCommandRing = 532,
    QXLCursorRing = 532,
    QXLReleaseRing = 84,
    QXLMemSlot = 16,
    QXLSurfaceCreate = 40,
    QXLRam = 5348,
}

const _: () = assert!(core::mem::size_of::<QXLRam>() as u64 <= QXL_RAM_HEADER_SIZE);
const _: () = assert!(offset_of!(QXLCommand, type_) == 8);
const _: () = assert!(offset_of!(QXLRingHeader, prod) == 4);
const _: () = assert!(offset_of!(QXLRingHeader, notify_on_prod) == 8);
const _: () = assert!(offset_of!(QXLRingHeader, cons) == 12);
const _: () = assert!(offset_of!(QXLRingHeader, notify_on_cons) == 16);
const _: () = assert!(offset_of!(QXLCommandRing, items) == 20);
const _: () = assert!(offset_of!(QXLReleaseRing, items) == 20);
const _: () = assert!(offset_of!(QXLSurfaceCreate, format) == 12);
const _: () = assert!(offset_of!(QXLSurfaceCreate, type_) == 28);
const _: () = assert!(offset_of!(QXLSurfaceCreate, mem) == 32);
const _: () = assert!(offset_of!(QXLRam, int_pending) == 4);
const _: () = assert!(offset_of!(QXLRam, int_mask) == 8);
const _: () = assert!(offset_of!(QXLRam, log_buf) == 12);
const _: () = assert!(offset_of!(QXLRam, cmd_ring) == 4108);
const _: () = assert!(offset_of!(QXLRam, cursor_ring) == 4640);
const _: () = assert!(offset_of!(QXLRam, release_ring) == 5172);
const _: () = assert!(offset_of!(QXLRam, update_area) == 5256);
const _: () = assert!(offset_of!(QXLRam, update_surface) == 5272);
const _: () = assert!(offset_of!(QXLRam, mem_slot) == 5276);
const _: () = assert!(offset_of!(QXLRam, create_surface) == 5292);
const _: () = assert!(offset_of!(QXLRam, flags) == 5332);
const _: () = assert!(offset_of!(QXLRam, monitors_config) == 5340);
// The rings' counters are accessed atomically, so they must be 4-byte aligned relative to
// the (page-aligned) RAM header.
const _: () = assert!(offset_of!(QXLRam, int_pending) % 4 == 0);
const _: () = assert!(offset_of!(QXLRam, cmd_ring) % 4 == 0);
const _: () = assert!(offset_of!(QXLRam, cursor_ring) % 4 == 0);
const _: () = assert!(offset_of!(QXLRam, release_ring) % 4 == 0);
