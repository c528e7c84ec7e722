//! Cursor ring commands and cursor shapes.

use core::mem::offset_of;

use super::basic::{QXLDataChunk, QXLPHYSICAL, QXLPoint16, QXLReleaseInfo};
use super::consts::QXL_CURSUR_DEVICE_DATA_SIZE;

/// Fixed part of a cursor shape.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLCursorHeader {
    pub unique: u64,
    /// `SPICE_CURSOR_TYPE_*`.
    pub type_: u16,
    pub width: u16,
    pub height: u16,
    pub hot_spot_x: u16,
    pub hot_spot_y: u16,
}

/// A cursor shape: header, declared data size, and the first (inline) data chunk.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLCursor {
    pub header: QXLCursorHeader,
    pub data_size: u32,
    pub chunk: QXLDataChunk,
}

/// The SET variant of the cursor command union.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLCursorSet {
    pub position: QXLPoint16,
    pub visible: u8,
    pub shape: QXLPHYSICAL,
}

/// The TRAIL variant of the cursor command union.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLCursorTrail {
    pub length: u16,
    pub frequency: u16,
}

/// A cursor ring command. The C union `u` is kept as raw bytes (the size of its largest
/// member, SET); the parser reinterprets it according to `type_`.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QXLCursorCmd {
    pub release_info: QXLReleaseInfo,
    /// `QXL_CURSOR_*`.
    pub type_: u8,
    pub u: [u8; 13],
    pub device_data: [u8; QXL_CURSUR_DEVICE_DATA_SIZE],
}

impl Default for QXLCursorCmd {
    fn default() -> Self {
        QXLCursorCmd {
            release_info: QXLReleaseInfo::default(),
            type_: 0,
            u: [0; 13],
            device_data: [0; QXL_CURSUR_DEVICE_DATA_SIZE],
        }
    }
}

abi_pod! {
    QXLCursorHeader = 18,
    QXLCursor = 42,
    QXLCursorSet = 13,
    QXLCursorTrail = 4,
    QXLCursorCmd = 150,
}

const _: () = assert!(offset_of!(QXLCursor, data_size) == 18);
const _: () = assert!(offset_of!(QXLCursor, chunk) == 22);
const _: () = assert!(offset_of!(QXLCursorSet, shape) == 5);
const _: () = assert!(offset_of!(QXLCursorCmd, u) == 9);
const _: () = assert!(offset_of!(QXLCursorCmd, device_data) == 22);
// The union must be exactly as large as its largest member.
const _: () = assert!(core::mem::size_of::<QXLCursorSet>() == 13);
