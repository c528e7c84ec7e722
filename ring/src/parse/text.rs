//! Vector payloads: paths (STROKE) and glyph strings (TEXT).
//!
//! Both are chunk chains of variable-length records. The chain is copied once, then walked
//! with every record length checked against what is left, in 64-bit arithmetic.

use vm_memory::GuestMemory;

use super::{ByteReader, Context, MAX_VECTOR_BYTES, ParseError, Point};
use crate::abi::{
    QXLPHYSICAL, QXLPath, QXLPathSeg, QXLPointFix, QXLRasterGlyph, QXLString,
    SPICE_STRING_FLAGS_RASTER_A1, SPICE_STRING_FLAGS_RASTER_A4, SPICE_STRING_FLAGS_RASTER_A8,
};
use crate::chunks::{ChainStart, ChunkLimits};
use crate::memslot::phys_add;

/// One segment of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathSeg {
    /// `QXL_PATH_*`.
    pub flags: u32,
    /// Points in 28.4 fixed point.
    pub points: Vec<Point>,
}

/// A path to stroke.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Path {
    pub segments: Vec<PathSeg>,
}

/// One glyph of a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RasterGlyph {
    pub render_pos: Point,
    pub glyph_origin: Point,
    pub width: u16,
    pub height: u16,
    /// `height` rows of `ceil(width × bpp / 8)` bytes of coverage.
    pub data: Vec<u8>,
}

/// A run of glyphs to draw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlyphString {
    /// `SPICE_STRING_FLAGS_*`.
    pub flags: u16,
    /// Coverage bits per pixel: 1, 4 or 8.
    pub bpp: u8,
    pub glyphs: Vec<RasterGlyph>,
}

pub(super) fn parse_path<M: GuestMemory>(
    ctx: &Context<'_, M>,
    phys: QXLPHYSICAL,
) -> Result<Path, ParseError> {
    let (path, _) = ctx.read::<QXLPath>(phys)?;
    let header_at = phys_add(phys, core::mem::offset_of!(QXLPath, chunk) as u64)?;
    let data = ctx.chain(
        ChainStart::Inline {
            header: path.chunk,
            header_at,
        },
        ChunkLimits::bytes(MAX_VECTOR_BYTES),
    )?;
    let mut reader = ByteReader::new(&data);
    let mut segments = Vec::new();
    while let Some(seg) = reader.take_obj::<QXLPathSeg>() {
        let count = seg.count;
        let remaining = reader.remaining();
        let bytes = u64::from(count) * core::mem::size_of::<QXLPointFix>() as u64;
        let points = reader
            .take(bytes)
            .ok_or(ParseError::PathOverrun { count, remaining })?;
        let points = points
            .chunks_exact(core::mem::size_of::<QXLPointFix>())
            .map(|p| Point::from(crate::abi::union_member::<QXLPointFix>(p)))
            .collect();
        segments.push(PathSeg {
            flags: seg.flags,
            points,
        });
    }
    Ok(Path { segments })
}

pub(super) fn parse_string<M: GuestMemory>(
    ctx: &Context<'_, M>,
    phys: QXLPHYSICAL,
) -> Result<GlyphString, ParseError> {
    let (string, _) = ctx.read::<QXLString>(phys)?;
    let (declared, length, flags) = (string.data_size, string.length, string.flags);
    let header_at = phys_add(phys, core::mem::offset_of!(QXLString, chunk) as u64)?;
    let data = ctx.chain(
        ChainStart::Inline {
            header: string.chunk,
            header_at,
        },
        ChunkLimits::bytes(MAX_VECTOR_BYTES),
    )?;
    if data.len() as u64 != u64::from(declared) {
        return Err(ParseError::StringDataSize {
            declared,
            found: data.len() as u64,
        });
    }
    // The first depth flag wins, as in spice-server.
    let bpp: u8 = if flags & SPICE_STRING_FLAGS_RASTER_A1 != 0 {
        1
    } else if flags & SPICE_STRING_FLAGS_RASTER_A4 != 0 {
        4
    } else if flags & SPICE_STRING_FLAGS_RASTER_A8 != 0 {
        8
    } else {
        return Err(ParseError::StringRasterFlags { flags });
    };
    let mut reader = ByteReader::new(&data);
    let mut glyphs = Vec::new();
    while reader.remaining() > 0 {
        let index = glyphs.len();
        let glyph = reader
            .take_obj::<QXLRasterGlyph>()
            .ok_or(ParseError::GlyphOverrun { index })?;
        let (width, height) = (glyph.width, glyph.height);
        let row = (u64::from(width) * u64::from(bpp)).div_ceil(8);
        let size = row * u64::from(height);
        let data = reader
            .take(size)
            .ok_or(ParseError::GlyphOverrun { index })?
            .to_vec();
        glyphs.push(RasterGlyph {
            render_pos: glyph.render_pos.into(),
            glyph_origin: glyph.glyph_origin.into(),
            width,
            height,
            data,
        });
    }
    if glyphs.len() != usize::from(length) {
        return Err(ParseError::GlyphCount {
            declared: length,
            found: glyphs.len(),
        });
    }
    Ok(GlyphString { flags, bpp, glyphs })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{p, put, put_bytes, setup};
    use super::*;
    use crate::abi::{QXLDataChunk, QXLPoint};

    fn chunk(size: u32) -> QXLDataChunk {
        QXLDataChunk {
            data_size: size,
            prev_chunk: 0,
            next_chunk: 0,
        }
    }

    #[test]
    fn path_segments_are_split_and_bounded() {
        let (mem, slots) = setup();
        let ctx = Context::new(&mem, &slots, 1024);
        // Two segments: 2 points, then 1 point.
        let mut payload = Vec::new();
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.extend_from_slice(&2u32.to_le_bytes());
        for v in [16i32, 32, 48, 64] {
            payload.extend_from_slice(&v.to_le_bytes());
        }
        payload.extend_from_slice(&2u32.to_le_bytes());
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.extend_from_slice(&[0; 8]);
        put(
            &mem,
            0x100,
            QXLPath {
                data_size: payload.len() as u32,
                chunk: chunk(payload.len() as u32),
            },
        );
        put_bytes(&mem, 0x118, &payload);
        let path = parse_path(&ctx, p(0x100)).unwrap();
        assert_eq!(path.segments.len(), 2);
        assert_eq!(
            path.segments[0].points,
            vec![Point { x: 16, y: 32 }, Point { x: 48, y: 64 }]
        );
        assert_eq!(path.segments[1].flags, 2);
        // A count that claims more points than there are bytes.
        payload[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        put_bytes(&mem, 0x118, &payload);
        assert!(matches!(
            parse_path(&ctx, p(0x100)),
            Err(ParseError::PathOverrun { .. })
        ));
    }

    fn glyph_bytes(width: u16, height: u16, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let g = QXLRasterGlyph {
            render_pos: QXLPoint { x: 1, y: 2 },
            glyph_origin: QXLPoint { x: 0, y: -1 },
            width,
            height,
        };
        v.extend_from_slice(vm_memory::ByteValued::as_slice(&g));
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn glyph_strings_are_checked_against_their_declarations() {
        let (mem, slots) = setup();
        let ctx = Context::new(&mem, &slots, 1024);
        // Two A1 glyphs: 9x2 (2 bytes per row) and 3x1.
        let mut payload = glyph_bytes(9, 2, &[0xff, 0x80, 0x7f, 0x00]);
        payload.extend(glyph_bytes(3, 1, &[0xe0]));
        let len = payload.len() as u32;
        put_bytes(&mem, 0x100 + 28, &payload);
        let header = |data_size, length, flags| QXLString {
            data_size,
            length,
            flags,
            chunk: chunk(len),
        };
        put(&mem, 0x100, header(len, 2, SPICE_STRING_FLAGS_RASTER_A1));
        let s = parse_string(&ctx, p(0x100)).unwrap();
        assert_eq!((s.bpp, s.glyphs.len()), (1, 2));
        assert_eq!(s.glyphs[0].data, vec![0xff, 0x80, 0x7f, 0x00]);
        assert_eq!(s.glyphs[1].render_pos, Point { x: 1, y: 2 });

        put(&mem, 0x100, header(len, 3, SPICE_STRING_FLAGS_RASTER_A1));
        assert!(matches!(
            parse_string(&ctx, p(0x100)),
            Err(ParseError::GlyphCount {
                declared: 3,
                found: 2
            })
        ));
        put(
            &mem,
            0x100,
            header(len + 1, 2, SPICE_STRING_FLAGS_RASTER_A1),
        );
        assert!(matches!(
            parse_string(&ctx, p(0x100)),
            Err(ParseError::StringDataSize { .. })
        ));
        put(&mem, 0x100, header(len, 2, 0));
        assert!(matches!(
            parse_string(&ctx, p(0x100)),
            Err(ParseError::StringRasterFlags { .. })
        ));
        // At 8 bpp the first glyph takes 18 bytes, eating into the second's header.
        put(&mem, 0x100, header(len, 2, SPICE_STRING_FLAGS_RASTER_A8));
        assert!(matches!(
            parse_string(&ctx, p(0x100)),
            Err(ParseError::GlyphOverrun { index: 1 })
        ));
    }
}
