//! Off-screen surface commands (QXL_CMD_SURFACE).

use core::mem::offset_of;

use super::basic::{QXLPHYSICAL, QXLReleaseInfo};

/// Payload of a surface CREATE command.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLSurface {
    /// `SPICE_SURFACE_FMT_*`.
    pub format: u32,
    pub width: u32,
    pub height: u32,
    /// Negative for bottom-up surfaces (`data` still points at the lowest address).
    pub stride: i32,
    pub data: QXLPHYSICAL,
}

/// A surface command; only CREATE has a payload.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLSurfaceCmd {
    pub release_info: QXLReleaseInfo,
    pub surface_id: u32,
    /// `QXL_SURFACE_CMD_*`.
    pub type_: u8,
    /// `QXL_SURF_FLAG_KEEP_DATA`.
    pub flags: u32,
    pub surface_create: QXLSurface,
}

abi_pod! {
    QXLSurface = 24,
    QXLSurfaceCmd = 41,
}

const _: () = assert!(offset_of!(QXLSurfaceCmd, surface_id) == 8);
const _: () = assert!(offset_of!(QXLSurfaceCmd, type_) == 12);
const _: () = assert!(offset_of!(QXLSurfaceCmd, flags) == 13);
const _: () = assert!(offset_of!(QXLSurfaceCmd, surface_create) == 17);
const _: () = assert!(offset_of!(QXLSurface, stride) == 12);
const _: () = assert!(offset_of!(QXLSurface, data) == 16);
