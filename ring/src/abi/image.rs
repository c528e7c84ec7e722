//! Images referenced by drawing commands: the descriptor, the bitmap form, palettes, and the
//! QUIC and surface forms.

use core::mem::offset_of;

use super::basic::QXLPHYSICAL;

/// Fields common to every image.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLImageDescriptor {
    /// Cache key chosen by the guest: group in the low 32 bits, unique in the high 32.
    pub id: u64,
    /// `SPICE_IMAGE_TYPE_*`.
    pub type_: u8,
    /// `QXL_IMAGE_*`.
    pub flags: u8,
    pub width: u32,
    pub height: u32,
}

/// Bitmap form of an image (follows the descriptor).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLBitmap {
    /// `SPICE_BITMAP_FMT_*`.
    pub format: u8,
    /// `QXL_BITMAP_*`.
    pub flags: u8,
    /// Width in pixels.
    pub x: u32,
    /// Height in rows.
    pub y: u32,
    /// Bytes from one row to the next.
    pub stride: u32,
    /// → QXLPalette, or 0.
    pub palette: QXLPHYSICAL,
    /// → pixels if `QXL_BITMAP_DIRECT`, else → first QXLDataChunk.
    pub data: QXLPHYSICAL,
}

/// Surface form of an image: the source is another surface.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLSurfaceId {
    pub surface_id: u32,
}

/// QUIC form of an image: `data_size` bytes of compressed data, held in a chunk chain whose
/// first header immediately follows this field.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLQUICData {
    pub data_size: u32,
}

/// An image in its bitmap form: the descriptor followed by the largest union member.
///
/// Reading this much for every image is what spice-server does too, so a guest cannot place
/// a smaller image form in the last bytes of a slot.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLImage {
    pub descriptor: QXLImageDescriptor,
    pub bitmap: QXLBitmap,
}

/// Header of a palette; `num_ents` u32 colours follow.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLPalette {
    pub unique: u64,
    pub num_ents: u16,
}

abi_pod! {
    QXLImageDescriptor = 18,
    QXLBitmap = 30,
    QXLSurfaceId = 4,
    QXLQUICData = 4,
    QXLImage = 48,
    QXLPalette = 10,
}

const _: () = assert!(offset_of!(QXLImageDescriptor, type_) == 8);
const _: () = assert!(offset_of!(QXLImageDescriptor, width) == 10);
const _: () = assert!(offset_of!(QXLImage, bitmap) == 18);
const _: () = assert!(offset_of!(QXLBitmap, x) == 2);
const _: () = assert!(offset_of!(QXLBitmap, stride) == 10);
const _: () = assert!(offset_of!(QXLBitmap, palette) == 14);
const _: () = assert!(offset_of!(QXLBitmap, data) == 22);

/// Offset of the inline data chunk of a QUIC image from the image start.
pub const QXL_QUIC_CHUNK_OFFSET: u64 = 22;
const _: () = assert!(
    core::mem::size_of::<QXLImageDescriptor>() + core::mem::size_of::<QXLQUICData>()
        == QXL_QUIC_CHUNK_OFFSET as usize
);

/// Bits per pixel of each `SPICE_BITMAP_FMT_*`, indexed by format (0 = invalid).
pub const SPICE_BITMAP_FMT_BPP: [u32; 11] = [0, 1, 1, 4, 4, 8, 16, 24, 32, 32, 8];
