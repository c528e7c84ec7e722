//! Small building blocks shared by every command: addresses, points, rectangles, chunks.

use core::mem::offset_of;

/// A guest pointer in QXL form: memslot id (top 8 bits), generation (next 8), offset in slot.
///
/// Named after the ABI typedef so it can be matched against `qxl_dev.h`.
#[allow(clippy::upper_case_acronyms)]
pub type QXLPHYSICAL = u64;

/// A 28.4 fixed-point number, as used by paths and line attributes.
#[allow(clippy::upper_case_acronyms)]
pub type QXLFIXED = i32;

/// A point in 28.4 fixed point.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLPointFix {
    pub x: QXLFIXED,
    pub y: QXLFIXED,
}

/// A point in surface coordinates.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLPoint {
    pub x: i32,
    pub y: i32,
}

/// A 16-bit point, used by cursor positions and composite origins.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLPoint16 {
    pub x: i16,
    pub y: i16,
}

/// A signed rectangle. Note the field order: top, left, bottom, right.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLRect {
    pub top: i32,
    pub left: i32,
    pub bottom: i32,
    pub right: i32,
}

/// An unsigned rectangle (client monitor heads). Same field order as [`QXLRect`].
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLURect {
    pub top: u32,
    pub left: u32,
    pub bottom: u32,
    pub right: u32,
}

/// First 8 bytes of every command: the guest's release id on the way in, and the "next" link
/// of the release chain once the device hands the command back (a C union of two `u64`s).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLReleaseInfo {
    pub id: u64,
}

/// Header of one link of a data chunk chain; `data_size` bytes of payload follow it.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLDataChunk {
    pub data_size: u32,
    pub prev_chunk: QXLPHYSICAL,
    pub next_chunk: QXLPHYSICAL,
}

abi_pod! {
    QXLPointFix = 8,
    QXLPoint = 8,
    QXLPoint16 = 4,
    QXLRect = 16,
    QXLURect = 16,
    QXLReleaseInfo = 8,
    QXLDataChunk = 20,
}

const _: () = assert!(offset_of!(QXLRect, left) == 4);
const _: () = assert!(offset_of!(QXLRect, right) == 12);
const _: () = assert!(offset_of!(QXLDataChunk, prev_chunk) == 4);
const _: () = assert!(offset_of!(QXLDataChunk, next_chunk) == 12);

/// Reads a C union member out of the raw bytes of the union.
///
/// ABI structs keep their unions as byte arrays (Rust unions of packed structs would need
/// `unsafe` to read); this copies the leading bytes into the member's type. Members are at
/// most as large as the union (asserted where each union is declared), so nothing is lost.
pub fn union_member<T: vm_memory::ByteValued + Default>(raw: &[u8]) -> T {
    let mut value = T::default();
    let dst = value.as_mut_slice();
    let n = dst.len().min(raw.len());
    if let (Some(dst), Some(src)) = (dst.get_mut(..n), raw.get(..n)) {
        dst.copy_from_slice(src);
    }
    value
}
