//! Drawable bodies: what a drawing command does, with the images, brushes, masks, paths
//! and strings it references copied out of guest memory.

use vm_memory::GuestMemory;

use super::image::parse_image;
use super::text::{parse_path, parse_string};
use super::{Context, GlyphString, Image, ParseError, Path, Point, Rect};
use crate::abi::{
    QXL_COPY_BITS, QXL_DRAW_ALPHA_BLEND, QXL_DRAW_BLACKNESS, QXL_DRAW_BLEND, QXL_DRAW_COMPOSITE,
    QXL_DRAW_COPY, QXL_DRAW_FILL, QXL_DRAW_INVERS, QXL_DRAW_NOP, QXL_DRAW_OPAQUE, QXL_DRAW_ROP3,
    QXL_DRAW_STROKE, QXL_DRAW_TEXT, QXL_DRAW_TRANSPARENT, QXL_DRAW_WHITENESS, QXLAlphaBlend,
    QXLBlackness, QXLBrush, QXLComposite, QXLCopy, QXLCopyBits, QXLFill, QXLOpaque, QXLPHYSICAL,
    QXLPattern, QXLQMask, QXLRect, QXLRop3, QXLStroke, QXLText, QXLTransform, QXLTransparent,
    SPICE_BRUSH_TYPE_NONE, SPICE_BRUSH_TYPE_PATTERN, SPICE_BRUSH_TYPE_SOLID,
    SPICE_LINE_FLAGS_STYLED, union_member,
};

/// How an area is filled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Brush {
    None,
    /// A colour in the destination surface's format.
    Solid(u32),
    /// An image tiled from `pos`.
    Pattern {
        image: Box<Image>,
        pos: Point,
    },
}

/// A 1-bpp mask limiting a drawing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QMask {
    /// `SPICE_MASK_FLAGS_*`.
    pub flags: u8,
    pub pos: Point,
    pub bitmap: Box<Image>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fill {
    pub brush: Brush,
    pub rop_descriptor: u16,
    pub mask: Option<QMask>,
}

/// Body of COPY and BLEND: draw `src_area` of `src` into the bbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyBody {
    pub src: Box<Image>,
    pub src_area: Rect,
    pub rop_descriptor: u16,
    pub scale_mode: u8,
    pub mask: Option<QMask>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opaque {
    pub src: Box<Image>,
    pub src_area: Rect,
    pub brush: Brush,
    pub rop_descriptor: u16,
    pub scale_mode: u8,
    pub mask: Option<QMask>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rop3 {
    pub src: Box<Image>,
    pub src_area: Rect,
    pub brush: Brush,
    /// Ternary raster operation code.
    pub rop3: u8,
    pub scale_mode: u8,
    pub mask: Option<QMask>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transparent {
    pub src: Box<Image>,
    pub src_area: Rect,
    /// Source pixels of this colour are not drawn.
    pub src_color: u32,
    pub true_color: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlphaBlend {
    /// `SPICE_ALPHA_FLAGS_*`.
    pub alpha_flags: u16,
    pub alpha: u8,
    pub src: Box<Image>,
    pub src_area: Rect,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineAttr {
    /// `SPICE_LINE_FLAGS_*`.
    pub flags: u8,
    pub join_style: u8,
    pub end_style: u8,
    /// 28.4 fixed point.
    pub width: i32,
    pub miter_limit: i32,
    /// Dash pattern (28.4 fixed point), present when the STYLED flag is.
    pub style: Vec<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stroke {
    pub path: Path,
    pub attr: LineAttr,
    pub brush: Brush,
    pub fore_mode: u16,
    pub back_mode: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text {
    pub string: GlyphString,
    pub back_area: Rect,
    pub fore_brush: Brush,
    pub back_brush: Brush,
    pub fore_mode: u16,
    pub back_mode: u16,
}

/// A Porter-Duff composition (from X RENDER).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Composite {
    /// Operator, filters, repeat modes and component alpha; see `QXLComposite`.
    pub flags: u32,
    pub src: Box<Image>,
    pub src_transform: Option<QXLTransform>,
    pub mask: Option<Box<Image>>,
    pub mask_transform: Option<QXLTransform>,
    pub src_origin: Point,
    pub mask_origin: Point,
}

/// What a drawable does, with every referenced object copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DrawBody {
    Nop,
    Fill(Fill),
    Opaque(Opaque),
    Copy(CopyBody),
    /// Copy the bbox-sized area at `src_pos` of the destination surface to the bbox.
    CopyBits {
        src_pos: Point,
    },
    Blend(CopyBody),
    Blackness {
        mask: Option<QMask>,
    },
    Whiteness {
        mask: Option<QMask>,
    },
    Invers {
        mask: Option<QMask>,
    },
    Rop3(Rop3),
    Stroke(Stroke),
    Text(Text),
    Transparent(Transparent),
    AlphaBlend(AlphaBlend),
    Composite(Composite),
}

pub(super) fn parse_body<M: GuestMemory>(
    ctx: &Context<'_, M>,
    type_: u8,
    u: &[u8],
) -> Result<DrawBody, ParseError> {
    Ok(match type_ {
        QXL_DRAW_NOP => DrawBody::Nop,
        QXL_DRAW_FILL => {
            let f: QXLFill = union_member(u);
            DrawBody::Fill(Fill {
                brush: parse_brush(ctx, f.brush)?,
                rop_descriptor: f.rop_descriptor,
                mask: parse_mask(ctx, f.mask)?,
            })
        }
        QXL_DRAW_OPAQUE => {
            let o: QXLOpaque = union_member(u);
            let (src, src_area) = parse_source(ctx, o.src_bitmap, o.src_area)?;
            DrawBody::Opaque(Opaque {
                src,
                src_area,
                brush: parse_brush(ctx, o.brush)?,
                rop_descriptor: o.rop_descriptor,
                scale_mode: o.scale_mode,
                mask: parse_mask(ctx, o.mask)?,
            })
        }
        QXL_DRAW_COPY => DrawBody::Copy(parse_copy(ctx, union_member(u))?),
        QXL_DRAW_BLEND => DrawBody::Blend(parse_copy(ctx, union_member(u))?),
        QXL_COPY_BITS => {
            let c: QXLCopyBits = union_member(u);
            DrawBody::CopyBits {
                src_pos: c.src_pos.into(),
            }
        }
        QXL_DRAW_BLACKNESS => DrawBody::Blackness {
            mask: parse_mask(ctx, union_member::<QXLBlackness>(u).mask)?,
        },
        QXL_DRAW_WHITENESS => DrawBody::Whiteness {
            mask: parse_mask(ctx, union_member::<QXLBlackness>(u).mask)?,
        },
        QXL_DRAW_INVERS => DrawBody::Invers {
            mask: parse_mask(ctx, union_member::<QXLBlackness>(u).mask)?,
        },
        QXL_DRAW_ROP3 => {
            let r: QXLRop3 = union_member(u);
            let (src, src_area) = parse_source(ctx, r.src_bitmap, r.src_area)?;
            DrawBody::Rop3(Rop3 {
                src,
                src_area,
                brush: parse_brush(ctx, r.brush)?,
                rop3: r.rop3,
                scale_mode: r.scale_mode,
                mask: parse_mask(ctx, r.mask)?,
            })
        }
        QXL_DRAW_STROKE => {
            let s: QXLStroke = union_member(u);
            let a = s.attr;
            let style = if a.flags & SPICE_LINE_FLAGS_STYLED != 0 {
                if a.style == 0 {
                    return Err(ParseError::MissingLineStyle { nseg: a.style_nseg });
                }
                let bytes = ctx.read_bytes(
                    a.style,
                    u64::from(a.style_nseg) * 4,
                    super::MAX_LINE_STYLE_BYTES,
                )?;
                bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect()
            } else {
                Vec::new()
            };
            DrawBody::Stroke(Stroke {
                path: parse_path(ctx, s.path)?,
                attr: LineAttr {
                    flags: a.flags,
                    join_style: a.join_style,
                    end_style: a.end_style,
                    width: a.width,
                    miter_limit: a.miter_limit,
                    style,
                },
                brush: parse_brush(ctx, s.brush)?,
                fore_mode: s.fore_mode,
                back_mode: s.back_mode,
            })
        }
        QXL_DRAW_TEXT => {
            let t: QXLText = union_member(u);
            DrawBody::Text(Text {
                string: parse_string(ctx, t.str_)?,
                back_area: t.back_area.into(),
                fore_brush: parse_brush(ctx, t.fore_brush)?,
                back_brush: parse_brush(ctx, t.back_brush)?,
                fore_mode: t.fore_mode,
                back_mode: t.back_mode,
            })
        }
        QXL_DRAW_TRANSPARENT => {
            let t: QXLTransparent = union_member(u);
            let (src, src_area) = parse_source(ctx, t.src_bitmap, t.src_area)?;
            DrawBody::Transparent(Transparent {
                src,
                src_area,
                src_color: t.src_color,
                true_color: t.true_color,
            })
        }
        QXL_DRAW_ALPHA_BLEND => {
            let a: QXLAlphaBlend = union_member(u);
            let (src, src_area) = parse_source(ctx, a.src_bitmap, a.src_area)?;
            DrawBody::AlphaBlend(AlphaBlend {
                alpha_flags: a.alpha_flags,
                alpha: a.alpha,
                src,
                src_area,
            })
        }
        QXL_DRAW_COMPOSITE => {
            let c: QXLComposite = union_member(u);
            let mask = match c.mask {
                0 => None,
                phys => Some(Box::new(parse_image(ctx, phys, false)?)),
            };
            DrawBody::Composite(Composite {
                flags: c.flags,
                src: Box::new(parse_image(ctx, c.src, false)?),
                src_transform: parse_transform(ctx, c.src_transform)?,
                mask_transform: if mask.is_some() {
                    parse_transform(ctx, c.mask_transform)?
                } else {
                    None
                },
                mask,
                src_origin: c.src_origin.into(),
                mask_origin: c.mask_origin.into(),
            })
        }
        type_ => return Err(ParseError::UnknownDrawType { type_ }),
    })
}

fn parse_brush<M: GuestMemory>(ctx: &Context<'_, M>, brush: QXLBrush) -> Result<Brush, ParseError> {
    match brush.type_ {
        SPICE_BRUSH_TYPE_NONE => Ok(Brush::None),
        SPICE_BRUSH_TYPE_SOLID => Ok(Brush::Solid(union_member::<u32>(&brush.u))),
        SPICE_BRUSH_TYPE_PATTERN => {
            let pattern: QXLPattern = union_member(&brush.u);
            let image = parse_image(ctx, pattern.pat, false)?;
            Ok(Brush::Pattern {
                image: Box::new(image),
                pos: pattern.pos.into(),
            })
        }
        type_ => Err(ParseError::UnknownBrushType { type_ }),
    }
}

fn parse_mask<M: GuestMemory>(
    ctx: &Context<'_, M>,
    mask: QXLQMask,
) -> Result<Option<QMask>, ParseError> {
    if mask.bitmap == 0 {
        return Ok(None);
    }
    let bitmap = Box::new(parse_image(ctx, mask.bitmap, true)?);
    Ok(Some(QMask {
        flags: mask.flags,
        pos: mask.pos.into(),
        bitmap,
    }))
}

fn parse_copy<M: GuestMemory>(ctx: &Context<'_, M>, c: QXLCopy) -> Result<CopyBody, ParseError> {
    let (src, src_area) = parse_source(ctx, c.src_bitmap, c.src_area)?;
    Ok(CopyBody {
        src,
        src_area,
        rop_descriptor: c.rop_descriptor,
        scale_mode: c.scale_mode,
        mask: parse_mask(ctx, c.mask)?,
    })
}

/// A mandatory source image and the area of it that is read: not inverted, not negative,
/// and for bitmaps inside the bitmap (other sources are checked by the renderer, which knows
/// their size).
fn parse_source<M: GuestMemory>(
    ctx: &Context<'_, M>,
    phys: QXLPHYSICAL,
    area: QXLRect,
) -> Result<(Box<Image>, Rect), ParseError> {
    let image = parse_image(ctx, phys, false)?;
    let area = Rect::from(area).well_formed()?;
    if let Image::Bitmap(b) = &image {
        let inside = u32::try_from(area.right).is_ok_and(|r| r <= b.width)
            && u32::try_from(area.bottom).is_ok_and(|b_| b_ <= b.height);
        if !inside {
            return Err(ParseError::SourceAreaOutside {
                area,
                width: b.width,
                height: b.height,
            });
        }
    }
    Ok((Box::new(image), area))
}

fn parse_transform<M: GuestMemory>(
    ctx: &Context<'_, M>,
    phys: QXLPHYSICAL,
) -> Result<Option<QXLTransform>, ParseError> {
    if phys == 0 {
        return Ok(None);
    }
    Ok(Some(ctx.read::<QXLTransform>(phys)?.0))
}
