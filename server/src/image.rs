//! Per-client image encoding: how the pixels of one drawing go on the wire.
//!
//! Every image the display channel sends is a SpiceImage (descriptor + payload). Which
//! payload depends on the client and on the user's `image-compression` choice; a client never
//! gets a format it cannot decode.

use std::fmt;
use std::str::FromStr;

use saffron_display::Pixels;

use crate::wire::Writer;

/// SpiceImage types.
pub mod image_type {
    pub const BITMAP: u8 = 0;
    pub const QUIC: u8 = 1;
    pub const LZ_RGB: u8 = 101;
    pub const GLZ_RGB: u8 = 102;
    pub const ZLIB_GLZ_RGB: u8 = 107;
    pub const LZ4: u8 = 109;
}

/// Bitmap format 32BIT (B, G, R, X).
const BITMAP_FMT_32BIT: u8 = 8;
/// Bitmap flag TOP_DOWN.
const BITMAP_TOP_DOWN: u8 = 4;
/// Bytes of a SpiceImage descriptor (id u64, type u8, flags u8, width u32, height u32).
pub const DESCRIPTOR_SIZE: usize = 18;
/// Bytes of a raw BITMAP payload header (format, flags, x, y, stride, palette).
pub const BITMAP_HEADER_SIZE: usize = 18;

/// The user's choice of image compression: QEMU's `image-compression` values, plus lz4.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// GLZ for synthetic content, QUIC for photographic (QEMU's default).
    #[default]
    AutoGlz,
    /// LZ for synthetic content, QUIC for photographic.
    AutoLz,
    Quic,
    Glz,
    Lz,
    /// LZ4 for clients with the cap (others get LZ).
    Lz4,
    /// Raw bitmaps.
    Off,
}

impl Compression {
    /// Every value, as the command line spells it.
    pub const NAMES: &'static [&'static str] =
        &["auto_glz", "auto_lz", "quic", "glz", "lz", "lz4", "off"];
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::AutoGlz => "auto_glz",
            Compression::AutoLz => "auto_lz",
            Compression::Quic => "quic",
            Compression::Glz => "glz",
            Compression::Lz => "lz",
            Compression::Lz4 => "lz4",
            Compression::Off => "off",
        })
    }
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto_glz" => Compression::AutoGlz,
            "auto_lz" => Compression::AutoLz,
            "quic" => Compression::Quic,
            "glz" => Compression::Glz,
            "lz" => Compression::Lz,
            "lz4" => Compression::Lz4,
            "off" | "never" => Compression::Off,
            other => {
                return Err(format!(
                    "unknown image compression '{other}' (one of {})",
                    Compression::NAMES.join(", ")
                ));
            }
        })
    }
}

/// Writes a SpiceImage descriptor.
pub fn descriptor(out: &mut Writer, id: u64, ty: u8, flags: u8, width: u32, height: u32) {
    out.u64(id).u8(ty).u8(flags).u32(width).u32(height);
}

/// A raw top-down 32BIT bitmap of rows `rows` of `px` (the one image every client decodes).
pub fn raw_bitmap(out: &mut Writer, id: u64, px: &Pixels, rows: std::ops::Range<u32>) {
    let (w, h) = (px.width, rows.end - rows.start);
    let stride = w as usize * 4;
    descriptor(out, id, image_type::BITMAP, 0, w, h);
    out.u8(BITMAP_FMT_32BIT)
        .u8(BITMAP_TOP_DOWN)
        .u32(w)
        .u32(h)
        .u32(stride as u32)
        .u32(0); // no palette
    let start = rows.start as usize * stride;
    let end = rows.end as usize * stride;
    if let Some(data) = px.bgrx.get(start..end) {
        out.bytes(data);
    }
}
