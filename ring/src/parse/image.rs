//! Images referenced by drawing bodies, brushes and masks.
//!
//! Guests may send bitmaps (flat or chunked), QUIC-compressed data, or a reference to
//! another surface; every other type exists only on the server → client side and is refused.
//! QUIC bytes are returned raw: decoding them is the renderer's business, and its decoder
//! must treat them as hostile (CVE-2020-14355).

use vm_memory::{ByteValued, GuestMemory};

use super::{Context, MAX_IMAGE_BYTES, MAX_IMAGE_DIMENSION, MAX_PALETTE_ENTRIES, ParseError};
use crate::abi::{
    QXL_BITMAP_DIRECT, QXL_BITMAP_TOP_DOWN, QXL_BITMAP_UNSTABLE, QXL_QUIC_CHUNK_OFFSET,
    QXLDataChunk, QXLImage, QXLPHYSICAL, QXLPalette, QXLQUICData, QXLSurfaceId,
    SPICE_BITMAP_FMT_1BIT_BE, SPICE_BITMAP_FMT_1BIT_LE, SPICE_BITMAP_FMT_4BIT_BE,
    SPICE_BITMAP_FMT_4BIT_LE, SPICE_BITMAP_FMT_8BIT, SPICE_BITMAP_FMT_8BIT_A,
    SPICE_BITMAP_FMT_16BIT, SPICE_BITMAP_FMT_24BIT, SPICE_BITMAP_FMT_32BIT, SPICE_BITMAP_FMT_RGBA,
    SPICE_IMAGE_TYPE_BITMAP, SPICE_IMAGE_TYPE_QUIC, SPICE_IMAGE_TYPE_SURFACE, union_member,
};
use crate::chunks::{ChainStart, ChunkLimits};
use crate::memslot::phys_add;

/// Pixel formats of bitmaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BitmapFormat {
    /// 1 bpp, paletted, least significant bit first.
    Bit1Le,
    /// 1 bpp, paletted, most significant bit first.
    Bit1Be,
    Bit4Le,
    Bit4Be,
    /// 8 bpp, paletted.
    Bit8,
    /// x555.
    Bit16,
    /// B, G, R bytes.
    Bit24,
    /// xRGB as a little-endian u32.
    Bit32,
    /// ARGB as a little-endian u32.
    Rgba,
    /// 8-bit alpha only.
    Bit8A,
}

impl BitmapFormat {
    /// The format of a `SPICE_BITMAP_FMT_*` value.
    pub fn from_raw(format: u8) -> Option<Self> {
        Some(match format {
            SPICE_BITMAP_FMT_1BIT_LE => Self::Bit1Le,
            SPICE_BITMAP_FMT_1BIT_BE => Self::Bit1Be,
            SPICE_BITMAP_FMT_4BIT_LE => Self::Bit4Le,
            SPICE_BITMAP_FMT_4BIT_BE => Self::Bit4Be,
            SPICE_BITMAP_FMT_8BIT => Self::Bit8,
            SPICE_BITMAP_FMT_16BIT => Self::Bit16,
            SPICE_BITMAP_FMT_24BIT => Self::Bit24,
            SPICE_BITMAP_FMT_32BIT => Self::Bit32,
            SPICE_BITMAP_FMT_RGBA => Self::Rgba,
            SPICE_BITMAP_FMT_8BIT_A => Self::Bit8A,
            _ => return None,
        })
    }

    pub fn bits_per_pixel(self) -> u32 {
        match self {
            Self::Bit1Le | Self::Bit1Be => 1,
            Self::Bit4Le | Self::Bit4Be => 4,
            Self::Bit8 | Self::Bit8A => 8,
            Self::Bit16 => 16,
            Self::Bit24 => 24,
            Self::Bit32 | Self::Rgba => 32,
        }
    }

    /// Whether pixels are palette indices.
    pub fn is_paletted(self) -> bool {
        matches!(
            self,
            Self::Bit1Le | Self::Bit1Be | Self::Bit4Le | Self::Bit4Be | Self::Bit8
        )
    }
}

/// The common part of every image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageDescriptor {
    /// The guest's cache key for this image.
    pub id: u64,
    /// `QXL_IMAGE_*` flags.
    pub flags: u8,
    pub width: u32,
    pub height: u32,
}

/// A colour table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Palette {
    pub unique: u64,
    pub entries: Vec<u32>,
}

/// An uncompressed image with its pixels copied out of guest memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bitmap {
    pub descriptor: ImageDescriptor,
    pub format: BitmapFormat,
    /// Row 0 is the top row (otherwise the bottom one).
    pub top_down: bool,
    /// The guest said it may change the pixels after submission (informative: we copied).
    pub unstable: bool,
    pub width: u32,
    pub height: u32,
    pub stride: u32,
    pub palette: Option<Palette>,
    /// `height × stride` bytes.
    pub data: Vec<u8>,
}

/// An image as a drawing command references it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Image {
    Bitmap(Bitmap),
    /// The pixels of another surface.
    Surface {
        descriptor: ImageDescriptor,
        surface_id: u32,
    },
    /// QUIC-compressed data, not decoded.
    Quic {
        descriptor: ImageDescriptor,
        data: Vec<u8>,
    },
}

impl Image {
    pub fn descriptor(&self) -> &ImageDescriptor {
        match self {
            Image::Bitmap(b) => &b.descriptor,
            Image::Surface { descriptor, .. } | Image::Quic { descriptor, .. } => descriptor,
        }
    }
}

/// Parses the image at `phys`. `is_mask` images (1-bpp masks) may omit their palette.
pub(super) fn parse_image<M: GuestMemory>(
    ctx: &Context<'_, M>,
    phys: QXLPHYSICAL,
    is_mask: bool,
) -> Result<Image, ParseError> {
    if phys == 0 {
        return Err(ParseError::MissingImage);
    }
    // The bitmap form is the largest; spice-server reads that much for every image too.
    let (image, _) = ctx.read::<QXLImage>(phys)?;
    let d = image.descriptor;
    let descriptor = ImageDescriptor {
        id: d.id,
        flags: d.flags,
        width: d.width,
        height: d.height,
    };
    match d.type_ {
        SPICE_IMAGE_TYPE_BITMAP => {
            parse_bitmap(ctx, &image, descriptor, is_mask).map(Image::Bitmap)
        }
        SPICE_IMAGE_TYPE_SURFACE => {
            let surface: QXLSurfaceId = union_member(image.bitmap.as_slice());
            let surface_id = ctx.surface_id(surface.surface_id)?;
            Ok(Image::Surface {
                descriptor,
                surface_id,
            })
        }
        SPICE_IMAGE_TYPE_QUIC => {
            let union = image.bitmap.as_slice();
            let quic: QXLQUICData = union_member(union);
            let header: QXLDataChunk = union_member(
                union
                    .get(core::mem::size_of::<QXLQUICData>()..)
                    .unwrap_or_default(),
            );
            let header_at = phys_add(phys, QXL_QUIC_CHUNK_OFFSET)?;
            let declared = quic.data_size;
            let limit = image_limit(ctx);
            if u64::from(declared) > limit {
                return Err(ParseError::ImageTooLarge {
                    size: u64::from(declared),
                    limit,
                });
            }
            let data = ctx.chain(
                ChainStart::Inline { header, header_at },
                ChunkLimits::bytes(u64::from(declared)),
            )?;
            if data.len() as u64 != u64::from(declared) {
                return Err(ParseError::QuicDataSize {
                    declared,
                    found: data.len() as u64,
                });
            }
            Ok(Image::Quic { descriptor, data })
        }
        type_ => Err(ParseError::UnsupportedImageType { type_ }),
    }
}

/// The most image bytes a command may name: [`MAX_IMAGE_BYTES`], and never more than the
/// memslots cover, so an image that cannot be in guest memory is refused before anything is
/// copied (rather than after copying all the memory there is).
fn image_limit<M: GuestMemory>(ctx: &Context<'_, M>) -> u64 {
    MAX_IMAGE_BYTES.min(ctx.slots.covered_bytes())
}

fn parse_bitmap<M: GuestMemory>(
    ctx: &Context<'_, M>,
    image: &QXLImage,
    descriptor: ImageDescriptor,
    is_mask: bool,
) -> Result<Bitmap, ParseError> {
    let b = image.bitmap;
    let (raw_format, flags, width, height, stride) = (b.format, b.flags, b.x, b.y, b.stride);
    let format = BitmapFormat::from_raw(raw_format)
        .ok_or(ParseError::InvalidBitmapFormat { format: raw_format })?;
    if width == 0 || height == 0 || width > MAX_IMAGE_DIMENSION || height > MAX_IMAGE_DIMENSION {
        return Err(ParseError::InvalidImageSize { width, height });
    }
    let bpp = format.bits_per_pixel();
    let row_bytes = (u64::from(width) * u64::from(bpp)).div_ceil(8);
    if u64::from(stride) < row_bytes {
        return Err(ParseError::StrideTooSmall { stride, width, bpp });
    }
    let size = u64::from(height) * u64::from(stride);
    let limit = image_limit(ctx);
    if size > limit {
        return Err(ParseError::ImageTooLarge { size, limit });
    }
    let palette = match b.palette {
        0 if format.is_paletted() && !is_mask => {
            return Err(ParseError::MissingPalette { format: raw_format });
        }
        0 => None,
        phys => Some(parse_palette(ctx, phys)?),
    };
    let data = if flags & QXL_BITMAP_DIRECT != 0 {
        ctx.read_bytes(b.data, size, MAX_IMAGE_BYTES)?
    } else {
        let data = ctx.chain(ChainStart::At(b.data), ChunkLimits::bytes(size))?;
        if data.len() as u64 != size {
            return Err(ParseError::BitmapDataSize {
                expected: size,
                found: data.len() as u64,
            });
        }
        data
    };
    Ok(Bitmap {
        descriptor,
        format,
        top_down: flags & QXL_BITMAP_TOP_DOWN != 0,
        unstable: flags & QXL_BITMAP_UNSTABLE != 0,
        width,
        height,
        stride,
        palette,
        data,
    })
}

fn parse_palette<M: GuestMemory>(
    ctx: &Context<'_, M>,
    phys: QXLPHYSICAL,
) -> Result<Palette, ParseError> {
    let (header, _) = ctx.read::<QXLPalette>(phys)?;
    let num_ents = header.num_ents;
    if num_ents > MAX_PALETTE_ENTRIES {
        return Err(ParseError::PaletteTooLarge { num_ents });
    }
    let entries_at = phys_add(phys, core::mem::size_of::<QXLPalette>() as u64)?;
    let bytes = ctx.read_bytes(
        entries_at,
        u64::from(num_ents) * 4,
        u64::from(MAX_PALETTE_ENTRIES) * 4,
    )?;
    let entries = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    Ok(Palette {
        unique: header.unique,
        entries,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::test_util::{p, put, put_bytes, put_chunk, setup};
    use super::*;
    use crate::abi::{QXLBitmap, QXLImageDescriptor};
    use crate::memslot::MemSlotTable;
    use vm_memory::GuestMemoryMmap;

    pub(crate) fn bitmap_image(
        format: u8,
        flags: u8,
        x: u32,
        y: u32,
        stride: u32,
        data: u64,
    ) -> QXLImage {
        QXLImage {
            descriptor: QXLImageDescriptor {
                id: 42,
                type_: 0,
                flags: 0,
                width: x,
                height: y,
            },
            bitmap: QXLBitmap {
                format,
                flags,
                x,
                y,
                stride,
                palette: 0,
                data,
            },
        }
    }

    fn parse(
        mem: &GuestMemoryMmap,
        slots: &MemSlotTable,
        offset: u64,
    ) -> Result<Image, ParseError> {
        parse_image(&Context::new(mem, slots, 1024), p(offset), false)
    }

    #[test]
    fn chunked_top_down_bitmap_like_linux() {
        let (mem, slots) = setup();
        // 3x2 pixels, stride 16 (the framebuffer pitch, wider than 3 × 4).
        put(
            &mem,
            0x100,
            bitmap_image(8, QXL_BITMAP_TOP_DOWN, 3, 2, 16, p(0x200)),
        );
        put_chunk(&mem, 0x200, &[7u8; 32], 0);
        let Image::Bitmap(b) = parse(&mem, &slots, 0x100).unwrap() else {
            panic!()
        };
        assert_eq!(
            (b.format, b.width, b.height, b.stride, b.top_down),
            (BitmapFormat::Bit32, 3, 2, 16, true)
        );
        assert_eq!(b.data, vec![7u8; 32]);
        assert_eq!(b.descriptor.id, 42);
    }

    #[test]
    fn direct_bitmap_reads_flat_data() {
        let (mem, slots) = setup();
        put(
            &mem,
            0x100,
            bitmap_image(8, QXL_BITMAP_DIRECT, 2, 2, 8, p(0x300)),
        );
        put(&mem, 0x300, [1u8; 16]);
        let Image::Bitmap(b) = parse(&mem, &slots, 0x100).unwrap() else {
            panic!()
        };
        assert_eq!(b.data, vec![1u8; 16]);
    }

    #[test]
    fn bitmap_sizes_are_checked() {
        let (mem, slots) = setup();
        let cases = [
            (bitmap_image(8, 0, 4, 2, 15, p(0x200)), "stride"),
            (bitmap_image(8, 0, 0, 2, 16, p(0x200)), "zero"),
            (bitmap_image(8, 0, 20000, 1, 80000, p(0x200)), "wide"),
            (bitmap_image(0, 0, 4, 2, 16, p(0x200)), "format"),
            (bitmap_image(11, 0, 4, 2, 16, p(0x200)), "format"),
            (bitmap_image(8, 0, 8193, 1, 32772, p(0x200)), "wide"),
            (bitmap_image(8, 0, 8192, 8192, u32::MAX, p(0x200)), "size"),
            // 4 MiB: under MAX_IMAGE_BYTES, over the 2 MiB the two slots cover.
            (bitmap_image(8, 0, 1024, 1024, 4096, p(0x200)), "slots"),
        ];
        for (image, what) in cases {
            put(&mem, 0x100, image);
            let err = parse(&mem, &slots, 0x100).unwrap_err();
            let ok = match what {
                "stride" => matches!(
                    err,
                    ParseError::StrideTooSmall {
                        stride: 15,
                        width: 4,
                        bpp: 32
                    }
                ),
                "zero" | "wide" => matches!(err, ParseError::InvalidImageSize { .. }),
                "format" => matches!(err, ParseError::InvalidBitmapFormat { .. }),
                "slots" => matches!(
                    err,
                    ParseError::ImageTooLarge {
                        size: 0x40_0000,
                        limit: 0x20_0000
                    }
                ),
                _ => matches!(err, ParseError::ImageTooLarge { .. }),
            };
            assert!(ok, "{what}: {err:?}");
        }
        // The chunks must hold exactly height × stride bytes.
        put(&mem, 0x100, bitmap_image(8, 0, 4, 2, 16, p(0x200)));
        put_chunk(&mem, 0x200, &[0; 31], 0);
        assert!(matches!(
            parse(&mem, &slots, 0x100),
            Err(ParseError::BitmapDataSize {
                expected: 32,
                found: 31
            })
        ));
        put_chunk(&mem, 0x200, &[0; 33], 0);
        assert!(matches!(
            parse(&mem, &slots, 0x100),
            Err(ParseError::Chunks(_))
        ));
        // 1-bpp rows round up: 9 pixels need 2 bytes.
        put(
            &mem,
            0x100,
            QXLImage {
                bitmap: QXLBitmap {
                    palette: p(0x400),
                    ..bitmap_image(2, 0, 9, 1, 1, 0).bitmap
                },
                ..bitmap_image(2, 0, 9, 1, 1, 0)
            },
        );
        assert!(matches!(
            parse(&mem, &slots, 0x100),
            Err(ParseError::StrideTooSmall { .. })
        ));
    }

    #[test]
    fn paletted_bitmaps_need_a_bounded_palette() {
        let (mem, slots) = setup();
        let mut image = bitmap_image(5, QXL_BITMAP_DIRECT, 2, 1, 2, p(0x300));
        put(&mem, 0x100, image);
        assert!(matches!(
            parse(&mem, &slots, 0x100),
            Err(ParseError::MissingPalette { format: 5 })
        ));
        // Masks may omit it.
        assert!(parse_image(&Context::new(&mem, &slots, 1024), p(0x100), true).is_ok());
        image.bitmap.palette = p(0x400);
        put(&mem, 0x100, image);
        put(
            &mem,
            0x400,
            QXLPalette {
                unique: 9,
                num_ents: 2,
            },
        );
        put(&mem, 0x40a, [0x00ff_0000u32, 0x0000_ff00]);
        let Image::Bitmap(b) = parse(&mem, &slots, 0x100).unwrap() else {
            panic!()
        };
        assert_eq!(
            b.palette,
            Some(Palette {
                unique: 9,
                entries: vec![0x00ff_0000, 0x0000_ff00]
            })
        );
        put(
            &mem,
            0x400,
            QXLPalette {
                unique: 9,
                num_ents: 257,
            },
        );
        assert!(matches!(
            parse(&mem, &slots, 0x100),
            Err(ParseError::PaletteTooLarge { num_ents: 257 })
        ));
    }

    #[test]
    fn surface_and_quic_images() {
        let (mem, slots) = setup();
        let mut raw = [0u8; 48];
        raw[8] = SPICE_IMAGE_TYPE_SURFACE;
        raw[18..22].copy_from_slice(&5u32.to_le_bytes());
        put_bytes(&mem, 0x100, &raw);
        let image = parse(&mem, &slots, 0x100).unwrap();
        assert!(matches!(image, Image::Surface { surface_id: 5, .. }));
        raw[18..22].copy_from_slice(&1024u32.to_le_bytes());
        put_bytes(&mem, 0x100, &raw);
        assert!(matches!(
            parse(&mem, &slots, 0x100),
            Err(ParseError::SurfaceIdOutOfRange { .. })
        ));

        // QUIC: data_size then an inline chunk header at +22, data at +42.
        let mut raw = [0u8; 48];
        raw[8] = SPICE_IMAGE_TYPE_QUIC;
        raw[18..22].copy_from_slice(&4u32.to_le_bytes());
        raw[22..26].copy_from_slice(&4u32.to_le_bytes());
        put_bytes(&mem, 0x100, &raw);
        put(&mem, 0x100 + 42, *b"QUIC");
        let image = parse(&mem, &slots, 0x100).unwrap();
        assert_eq!(
            image,
            Image::Quic {
                descriptor: *image.descriptor(),
                data: b"QUIC".to_vec()
            }
        );
        raw[18..22].copy_from_slice(&5u32.to_le_bytes());
        put_bytes(&mem, 0x100, &raw);
        assert!(matches!(
            parse(&mem, &slots, 0x100),
            Err(ParseError::QuicDataSize {
                declared: 5,
                found: 4
            })
        ));
    }

    #[test]
    fn server_side_image_types_are_refused() {
        let (mem, slots) = setup();
        for type_ in [2u8, 100, 101, 102, 103, 105, 106, 107, 108, 109, 255] {
            let mut raw = [0u8; 48];
            raw[8] = type_;
            put_bytes(&mem, 0x100, &raw);
            assert!(matches!(
                parse(&mem, &slots, 0x100),
                Err(ParseError::UnsupportedImageType { type_: t }) if t == type_
            ));
        }
        assert!(matches!(
            parse_image(&Context::new(&mem, &slots, 1024), 0, false),
            Err(ParseError::MissingImage)
        ));
    }
}
