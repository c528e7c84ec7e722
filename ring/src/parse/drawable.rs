//! Drawing commands (QXL_CMD_DRAW): the drawable and its clip.

use vm_memory::GuestMemory;

use super::body::{DrawBody, parse_body};
use super::{ByteReader, Context, MAX_CLIP_RECTS, ParseError, Rect, ReleaseInfo};
use crate::abi::{
    QXLClip, QXLClipRects, QXLDrawable, QXLPHYSICAL, QXLRect, SPICE_CLIP_TYPE_NONE,
    SPICE_CLIP_TYPE_RECTS,
};
use crate::chunks::{ChainStart, ChunkLimits};
use crate::memslot::phys_add;

/// Where a drawing may paint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Clip {
    /// Only the bbox limits it.
    None,
    /// The union of these rectangles (intersected with the bbox). They are not checked: a
    /// renderer intersects them with the bbox, which is.
    Rects(Vec<Rect>),
}

/// A drawing command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drawable {
    pub release: ReleaseInfo,
    /// Destination surface, below the ROM's `n_surfaces` (its existence is the renderer's
    /// to check).
    pub surface_id: u32,
    /// `QXL_EFFECT_*`.
    pub effect: u8,
    pub self_bitmap: bool,
    pub self_bitmap_area: Rect,
    /// Destination rectangle: non-negative and not inverted (its fit in the surface is the
    /// renderer's to check).
    pub bbox: Rect,
    pub clip: Clip,
    pub mm_time: u32,
    /// Other surfaces this drawing reads, each below `n_surfaces`, with the areas read.
    pub surfaces_dest: [Option<u32>; 3],
    pub surfaces_rects: [Rect; 3],
    pub body: DrawBody,
}

pub(super) fn parse_drawable<M: GuestMemory>(
    ctx: &Context<'_, M>,
    phys: QXLPHYSICAL,
    release: ReleaseInfo,
) -> Result<Drawable, ParseError> {
    let (d, _) = ctx.read::<QXLDrawable>(phys)?;
    let surface_id = ctx.surface_id(d.surface_id)?;
    let bbox = Rect::from(d.bbox).well_formed()?;
    let clip = parse_clip(ctx, d.clip)?;
    let mut surfaces_dest = [None; 3];
    for (dest, id) in surfaces_dest.iter_mut().zip(d.surfaces_dest) {
        *dest = match id {
            -1 => None,
            id => Some(
                u32::try_from(id)
                    .ok()
                    .filter(|id| *id < ctx.n_surfaces)
                    .ok_or(ParseError::SurfaceIdOutOfRange {
                        id: i64::from(id),
                        n_surfaces: ctx.n_surfaces,
                    })?,
            ),
        };
    }
    let surfaces_rects = d.surfaces_rects.map(Rect::from);
    let body = parse_body(ctx, d.type_, &d.u)?;
    Ok(Drawable {
        release,
        surface_id,
        effect: d.effect,
        self_bitmap: d.self_bitmap != 0,
        self_bitmap_area: d.self_bitmap_area.into(),
        bbox,
        clip,
        mm_time: d.mm_time,
        surfaces_dest,
        surfaces_rects,
        body,
    })
}

fn parse_clip<M: GuestMemory>(ctx: &Context<'_, M>, clip: QXLClip) -> Result<Clip, ParseError> {
    match clip.type_ {
        SPICE_CLIP_TYPE_NONE => Ok(Clip::None),
        SPICE_CLIP_TYPE_RECTS => {
            let (rects, _) = ctx.read::<QXLClipRects>(clip.data)?;
            let num_rects = rects.num_rects;
            if num_rects > MAX_CLIP_RECTS {
                return Err(ParseError::TooManyClipRects { num_rects });
            }
            let rect_size = core::mem::size_of::<QXLRect>() as u64;
            let expected = u64::from(num_rects) * rect_size;
            let header_at = phys_add(clip.data, core::mem::offset_of!(QXLClipRects, chunk) as u64)?;
            let data = ctx.chain(
                ChainStart::Inline {
                    header: rects.chunk,
                    header_at,
                },
                ChunkLimits::bytes(expected),
            )?;
            if data.len() as u64 != expected {
                return Err(ParseError::ClipRectsSize {
                    num_rects,
                    expected,
                    found: data.len() as u64,
                });
            }
            let mut reader = ByteReader::new(&data);
            let rects = std::iter::from_fn(|| reader.take_obj::<QXLRect>())
                .map(Rect::from)
                .collect();
            Ok(Clip::Rects(rects))
        }
        type_ => Err(ParseError::UnknownClipType { type_ }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::image::tests::bitmap_image;
    use super::super::test_util::{BAR, p, put, put_bytes, put_chunk, setup};
    use super::super::{
        Brush, Command, DrawBody, Fill, Image, ParseError, Point, QMask, parse_command,
    };
    use super::*;
    use crate::abi::{
        QXL_BITMAP_DIRECT, QXL_BITMAP_TOP_DOWN, QXL_CMD_DRAW, QXL_COPY_BITS, QXL_DRAW_BLACKNESS,
        QXL_DRAW_COPY, QXL_DRAW_FILL, QXL_EFFECT_OPAQUE, QXLBlackness, QXLBrush, QXLCommand,
        QXLCopy, QXLCopyBits, QXLDataChunk, QXLFill, QXLPoint, QXLQMask, QXLReleaseInfo,
        SPICE_BRUSH_TYPE_SOLID, SPICE_ROPD_OP_PUT, union_member,
    };
    use proptest::prelude::*;
    use vm_memory::{ByteValued, GuestAddress, GuestMemoryMmap};

    fn rect(top: i32, left: i32, bottom: i32, right: i32) -> QXLRect {
        QXLRect {
            top,
            left,
            bottom,
            right,
        }
    }

    fn body<T: ByteValued>(value: T) -> [u8; 68] {
        let mut u = [0u8; 68];
        u[..core::mem::size_of::<T>()].copy_from_slice(value.as_slice());
        u
    }

    /// What Linux's qxl_draw_dirty_fb builds: a COPY of a 4x2 top-down bitmap (stride 16)
    /// into bbox (10,20)-(12,24), clipped by two rectangles.
    fn linux_copy(mem: &GuestMemoryMmap) -> QXLDrawable {
        let rects = QXLClipRects {
            num_rects: 2,
            chunk: QXLDataChunk {
                data_size: 32,
                prev_chunk: 0,
                next_chunk: 0,
            },
        };
        put(mem, 0x400, rects);
        put(mem, 0x418, rect(10, 20, 11, 24));
        put(mem, 0x428, rect(11, 20, 12, 22));
        put(
            mem,
            0x600,
            bitmap_image(8, QXL_BITMAP_TOP_DOWN, 4, 2, 16, p(0x700)),
        );
        put_chunk(mem, 0x700, &[0x55; 32], 0);
        let copy = QXLCopy {
            src_bitmap: p(0x600),
            src_area: rect(0, 0, 2, 4),
            rop_descriptor: SPICE_ROPD_OP_PUT,
            ..Default::default()
        };
        let d = QXLDrawable {
            release_info: QXLReleaseInfo { id: 77 },
            surface_id: 0,
            effect: QXL_EFFECT_OPAQUE,
            type_: QXL_DRAW_COPY,
            bbox: rect(10, 20, 12, 24),
            clip: QXLClip {
                type_: SPICE_CLIP_TYPE_RECTS,
                data: p(0x400),
            },
            surfaces_dest: [-1; 3],
            u: body(copy),
            ..Default::default()
        };
        put(mem, 0x100, d);
        d
    }

    fn parse(
        mem: &GuestMemoryMmap,
        slots: &crate::memslot::MemSlotTable,
    ) -> Result<Command, super::super::CommandError> {
        let ctx = Context::new(mem, slots, 1024);
        parse_command(
            &ctx,
            &QXLCommand {
                data: p(0x100),
                type_: QXL_CMD_DRAW,
                padding: 0,
            },
        )
    }

    #[test]
    fn linux_copy_drawable_parses_fully() {
        let (mem, slots) = setup();
        linux_copy(&mem);
        let Command::Draw(d) = parse(&mem, &slots).unwrap() else {
            panic!()
        };
        assert_eq!(
            d.release,
            ReleaseInfo {
                id: 77,
                addr: GuestAddress(BAR + 0x100)
            }
        );
        assert_eq!(
            d.bbox,
            Rect {
                top: 10,
                left: 20,
                bottom: 12,
                right: 24
            }
        );
        assert_eq!(d.surfaces_dest, [None; 3]);
        let Clip::Rects(rects) = &d.clip else {
            panic!()
        };
        assert_eq!(rects.len(), 2);
        assert_eq!(
            rects[1],
            Rect {
                top: 11,
                left: 20,
                bottom: 12,
                right: 22
            }
        );
        let DrawBody::Copy(copy) = &d.body else {
            panic!()
        };
        assert_eq!(copy.rop_descriptor, SPICE_ROPD_OP_PUT);
        assert_eq!(copy.mask, None);
        let Image::Bitmap(b) = copy.src.as_ref() else {
            panic!()
        };
        assert_eq!((b.width, b.height, b.stride, b.data.len()), (4, 2, 16, 32));
    }

    type ErrorCheck = fn(&ParseError) -> bool;

    #[test]
    fn bad_bodies_still_yield_release_info() {
        let (mem, slots) = setup();
        let d = linux_copy(&mem);
        let cases: [(QXLDrawable, ErrorCheck); 7] = [
            (QXLDrawable { type_: 15, ..d }, |e| {
                matches!(e, ParseError::UnknownDrawType { type_: 15 })
            }),
            (
                QXLDrawable {
                    bbox: rect(12, 20, 10, 24),
                    ..d
                },
                |e| matches!(e, ParseError::InvalidRect { .. }),
            ),
            (
                QXLDrawable {
                    bbox: rect(-1, 20, 10, 24),
                    ..d
                },
                |e| matches!(e, ParseError::InvalidRect { .. }),
            ),
            (
                QXLDrawable {
                    surface_id: 1024,
                    ..d
                },
                |e| matches!(e, ParseError::SurfaceIdOutOfRange { .. }),
            ),
            (
                QXLDrawable {
                    surfaces_dest: [-1, 1024, -1],
                    ..d
                },
                |e| matches!(e, ParseError::SurfaceIdOutOfRange { .. }),
            ),
            (
                QXLDrawable {
                    clip: QXLClip { type_: 2, data: 0 },
                    ..d
                },
                |e| matches!(e, ParseError::UnknownClipType { type_: 2 }),
            ),
            (
                QXLDrawable {
                    u: body(QXLCopy {
                        src_area: rect(0, 0, 3, 4),
                        ..union_member(&d.u)
                    }),
                    ..d
                },
                |e| matches!(e, ParseError::SourceAreaOutside { .. }),
            ),
        ];
        for (bad, check) in cases {
            put(&mem, 0x100, bad);
            let err = parse(&mem, &slots).unwrap_err();
            assert!(check(&err.error), "{:?}", err.error);
            assert_eq!(
                err.release,
                Some(ReleaseInfo {
                    id: 77,
                    addr: GuestAddress(BAR + 0x100)
                })
            );
        }
    }

    #[test]
    fn clip_rect_count_must_match_the_chunks() {
        let (mem, slots) = setup();
        linux_copy(&mem);
        put(
            &mem,
            0x400,
            QXLClipRects {
                num_rects: 3,
                chunk: QXLDataChunk {
                    data_size: 32,
                    ..Default::default()
                },
            },
        );
        assert!(matches!(
            parse(&mem, &slots).unwrap_err().error,
            ParseError::ClipRectsSize {
                expected: 48,
                found: 32,
                ..
            }
        ));
        put(
            &mem,
            0x400,
            QXLClipRects {
                num_rects: 1,
                chunk: QXLDataChunk {
                    data_size: 32,
                    ..Default::default()
                },
            },
        );
        assert!(matches!(
            parse(&mem, &slots).unwrap_err().error,
            ParseError::Chunks(_)
        ));
        put(
            &mem,
            0x400,
            QXLClipRects {
                num_rects: MAX_CLIP_RECTS + 1,
                ..Default::default()
            },
        );
        assert!(matches!(
            parse(&mem, &slots).unwrap_err().error,
            ParseError::TooManyClipRects { .. }
        ));
    }

    #[test]
    fn fill_copy_bits_and_masks() {
        let (mem, slots) = setup();
        let d = linux_copy(&mem);
        let mut brush = QXLBrush {
            type_: SPICE_BRUSH_TYPE_SOLID,
            u: [0; 16],
        };
        brush.u[..4].copy_from_slice(&0x00ff_8000u32.to_le_bytes());
        let fill = QXLFill {
            brush,
            rop_descriptor: SPICE_ROPD_OP_PUT,
            mask: QXLQMask::default(),
        };
        put(
            &mem,
            0x100,
            QXLDrawable {
                type_: QXL_DRAW_FILL,
                u: body(fill),
                ..d
            },
        );
        let Command::Draw(parsed) = parse(&mem, &slots).unwrap() else {
            panic!()
        };
        assert_eq!(
            parsed.body,
            DrawBody::Fill(Fill {
                brush: Brush::Solid(0x00ff_8000),
                rop_descriptor: 8,
                mask: None
            })
        );

        let bits = QXLCopyBits {
            src_pos: QXLPoint { x: 3, y: 4 },
        };
        put(
            &mem,
            0x100,
            QXLDrawable {
                type_: QXL_COPY_BITS,
                u: body(bits),
                ..d
            },
        );
        let Command::Draw(parsed) = parse(&mem, &slots).unwrap() else {
            panic!()
        };
        assert_eq!(
            parsed.body,
            DrawBody::CopyBits {
                src_pos: Point { x: 3, y: 4 }
            }
        );

        // A 1-bpp mask without palette is fine; an unknown brush is not.
        put(
            &mem,
            0x800,
            bitmap_image(1, QXL_BITMAP_DIRECT, 8, 1, 1, p(0x900)),
        );
        let mask = QXLQMask {
            flags: 1,
            pos: Default::default(),
            bitmap: p(0x800),
        };
        let blackness = QXLBlackness { mask };
        put(
            &mem,
            0x100,
            QXLDrawable {
                type_: QXL_DRAW_BLACKNESS,
                u: body(blackness),
                ..d
            },
        );
        let Command::Draw(parsed) = parse(&mem, &slots).unwrap() else {
            panic!()
        };
        assert!(matches!(
            parsed.body,
            DrawBody::Blackness {
                mask: Some(QMask { flags: 1, .. })
            }
        ));
        let fill = QXLFill {
            brush: QXLBrush {
                type_: 3,
                u: [0; 16],
            },
            ..fill
        };
        put(
            &mem,
            0x100,
            QXLDrawable {
                type_: QXL_DRAW_FILL,
                u: body(fill),
                ..d
            },
        );
        assert!(matches!(
            parse(&mem, &slots).unwrap_err().error,
            ParseError::UnknownBrushType { type_: 3 }
        ));
    }

    #[test]
    fn commands_without_release_info() {
        let (mem, slots) = setup();
        let ctx = Context::new(&mem, &slots, 1024);
        let nop = QXLCommand {
            data: p(0x100),
            type_: 0,
            padding: 0,
        };
        let err = parse_command(&ctx, &nop).unwrap_err();
        assert!(err.release.is_none());
        assert!(matches!(
            err.error,
            ParseError::UnknownCommandType { type_: 0 }
        ));
        let unmapped = QXLCommand {
            data: crate::memslot::make_phys(6, 0, 0).unwrap(),
            type_: QXL_CMD_DRAW,
            padding: 0,
        };
        let err = parse_command(&ctx, &unmapped).unwrap_err();
        assert!(err.release.is_none());
        assert!(matches!(err.error, ParseError::Translate(_)));
    }

    proptest! {
        /// Arbitrary bytes where the drawable and its referents live never make the parser
        /// panic, and every failure after the release id was read carries it.
        #[test]
        fn arbitrary_drawables_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 191..1024),
            type_ in 0u8..16,
            clip in 0u32..3,
            pointers in proptest::collection::vec(0u64..0x1000, 4),
        ) {
            let (mem, slots) = setup();
            put_bytes(&mem, 0x100, &bytes);
            // Point some pointers into the same area so nested parsers run too.
            let mut d: QXLDrawable = union_member(&bytes);
            d.type_ = type_;
            d.clip = QXLClip { type_: clip, data: p(0x100 + pointers[0]) };
            let mut u = d.u;
            u[..8].copy_from_slice(&p(0x100 + pointers[1]).to_le_bytes());
            d.u = u;
            put(&mem, 0x100, d);
            let id = d.release_info.id;
            match parse(&mem, &slots) {
                Ok(Command::Draw(parsed)) => prop_assert_eq!(parsed.release.id, id),
                Ok(other) => prop_assert!(false, "not a drawable: {:?}", other),
                Err(e) => prop_assert_eq!(e.release.map(|r| r.id), Some(id)),
            }
        }
    }
}
