//! The guest's monitor layout (argument of MONITORS_CONFIG_ASYNC).

use core::mem::offset_of;

/// One output, backed by a region of a surface.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLHead {
    pub id: u32,
    pub surface_id: u32,
    pub width: u32,
    pub height: u32,
    pub x: u32,
    pub y: u32,
    pub flags: u32,
}

/// Header of the guest's monitors config; `count` [`QXLHead`]s follow it.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLMonitorsConfig {
    pub count: u16,
    /// The most heads the driver will ever use; 0 means no stated limit.
    pub max_allowed: u16,
}

abi_pod! {
    QXLHead = 28,
    QXLMonitorsConfig = 4,
}

const _: () = assert!(offset_of!(QXLHead, flags) == 24);
