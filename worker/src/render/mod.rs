//! The software renderer: applies parsed drawables to surfaces in guest memory.
//!
//! Semantics follow spice-common's software canvas (canvas_base.c, sw_canvas.c,
//! pixman_utils.c), which is what a Spice client draws and what QEMU's guests have always
//! been rendered with: a drawing paints its bbox, cut to the surface, to the clip
//! rectangles (their union) and to its mask; ROP descriptors reduce to bitwise operations on
//! whole native pixels; blending uses pixman's premultiplied 8-bit arithmetic.
//!
//! Work is done a row span at a time, one checked guest-memory access per span, so the
//! common case (Linux's full-screen COPY of a 32-bit top-down bitmap) is a memcpy per row.
//!
//! What cannot be rendered exactly is logged once per kind ([`Limitation`]) and counted in
//! [`RenderStats`]: `approximated` when something close was drawn, `unsupported` when
//! nothing could be. A drawable that is itself wrong (missing surface, bbox outside the
//! surface) is an error and draws nothing.

mod composite;
mod raster;
mod source;
mod stroke;
mod text;

use saffron_ring::parse::{Clip, DrawBody, Drawable, Rect};
use thiserror::Error;
use tracing::warn;
use vm_memory::GuestMemory;

use crate::region::{Region, intersect};

use crate::surface::{Surface, SurfaceError, SurfaceTable};
use source::Mask;

/// Errors rendering one drawable. The drawable is not (or only partly, for memory errors)
/// drawn; the caller releases it all the same.
#[derive(Debug, Error)]
pub enum RenderError {
    #[error("surface access failed")]
    Surface(#[from] SurfaceError),
    #[error("bbox {bbox:?} is outside the {width}x{height} destination surface {surface_id}")]
    BboxOutside {
        surface_id: u32,
        bbox: Rect,
        width: u32,
        height: u32,
    },
    #[error("clip rectangles are too complex")]
    Clip(#[from] crate::region::RegionError),
    #[error("source area {area:?} is inverted or negative")]
    InvalidSourceArea { area: Rect },
    #[error("{n} source pixels at ({x}, {y}) are outside the {width}x{height} source")]
    SourceOutside {
        x: u32,
        y: u32,
        n: u32,
        width: u32,
        height: u32,
    },
}

/// Kinds of drawables, for statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DrawKind {
    Nop,
    Fill,
    Opaque,
    Copy,
    CopyBits,
    Blend,
    Blackness,
    Whiteness,
    Invers,
    Rop3,
    Stroke,
    Text,
    Transparent,
    AlphaBlend,
    Composite,
}

impl DrawKind {
    /// Every kind, in QXL_DRAW_* order.
    pub const ALL: [DrawKind; 15] = [
        DrawKind::Nop,
        DrawKind::Fill,
        DrawKind::Opaque,
        DrawKind::Copy,
        DrawKind::CopyBits,
        DrawKind::Blend,
        DrawKind::Blackness,
        DrawKind::Whiteness,
        DrawKind::Invers,
        DrawKind::Rop3,
        DrawKind::Stroke,
        DrawKind::Text,
        DrawKind::Transparent,
        DrawKind::AlphaBlend,
        DrawKind::Composite,
    ];

    /// The kind of a drawable body.
    pub fn of(body: &DrawBody) -> DrawKind {
        match body {
            DrawBody::Nop => DrawKind::Nop,
            DrawBody::Fill(_) => DrawKind::Fill,
            DrawBody::Opaque(_) => DrawKind::Opaque,
            DrawBody::Copy(_) => DrawKind::Copy,
            DrawBody::CopyBits { .. } => DrawKind::CopyBits,
            DrawBody::Blend(_) => DrawKind::Blend,
            DrawBody::Blackness { .. } => DrawKind::Blackness,
            DrawBody::Whiteness { .. } => DrawKind::Whiteness,
            DrawBody::Invers { .. } => DrawKind::Invers,
            DrawBody::Rop3(_) => DrawKind::Rop3,
            DrawBody::Stroke(_) => DrawKind::Stroke,
            DrawBody::Text(_) => DrawKind::Text,
            DrawBody::Transparent(_) => DrawKind::Transparent,
            DrawBody::AlphaBlend(_) => DrawKind::AlphaBlend,
            DrawBody::Composite(_) => DrawKind::Composite,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counts for one kind of drawable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrawCounts {
    /// Drawn (exactly, or approximately when also counted in `approximated`).
    pub rendered: u64,
    /// Drawn, but something in it could not be rendered exactly (see [`Limitation`]).
    pub approximated: u64,
    /// Not drawn because of a [`Limitation`].
    pub unsupported: u64,
    /// Not drawn because the drawable breaks spice-server's rules ([`RenderError`]): dropped,
    /// as spice-server drops it.
    pub dropped: u64,
}

/// What the renderer did, per kind of drawable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RenderStats {
    counts: [DrawCounts; 15],
}

impl RenderStats {
    /// The counts of `kind`.
    pub fn get(&self, kind: DrawKind) -> DrawCounts {
        self.counts.get(kind.index()).copied().unwrap_or_default()
    }

    /// Every kind with its counts.
    pub fn iter(&self) -> impl Iterator<Item = (DrawKind, DrawCounts)> + '_ {
        DrawKind::ALL.iter().map(|k| (*k, self.get(*k)))
    }

    fn entry(&mut self, kind: DrawKind) -> Option<&mut DrawCounts> {
        self.counts.get_mut(kind.index())
    }
}

/// Things the renderer does not render exactly, each logged once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limitation {
    /// A QUIC-compressed image (no decoder yet); the drawing is skipped.
    QuicImage,
    /// Scaling with SPICE_IMAGE_SCALE_MODE_INTERPOLATE: drawn with nearest neighbour.
    InterpolatedScaling,
    /// A QMask whose image is not a bitmap (e.g. a surface); the drawing is skipped.
    MaskNotBitmap,
    /// A QMask bitmap that is not 1 bpp; the drawing is skipped.
    MaskFormat,
    /// A stroke wider than 0: drawn as spice's canvas does, with 1-pixel lines.
    WideStroke,
    /// A dashed stroke: drawn solid.
    StyledStroke,
    /// A path or Bezier so long the pixel budget ran out: drawn in part.
    StrokeBudget,
    /// TEXT with a fore mode other than PUT and a back area: spice draws nothing either.
    TextForeMode,
    /// TEXT with a pattern fore brush: tiled from the surface origin (spice ties the tile to
    /// the string's bounds).
    TextPatternOrigin,
    /// A COMPOSITE operator other than the Porter-Duff ones (0..=13); skipped.
    CompositeOperator,
    /// A COMPOSITE transform or filter sampled with nearest neighbour where pixman
    /// would interpolate.
    CompositeFilter,
}

impl Limitation {
    const ALL: [Limitation; 11] = [
        Limitation::QuicImage,
        Limitation::InterpolatedScaling,
        Limitation::MaskNotBitmap,
        Limitation::MaskFormat,
        Limitation::WideStroke,
        Limitation::StyledStroke,
        Limitation::StrokeBudget,
        Limitation::TextForeMode,
        Limitation::TextPatternOrigin,
        Limitation::CompositeOperator,
        Limitation::CompositeFilter,
    ];

    fn bit(self) -> u32 {
        let index = Limitation::ALL.iter().position(|l| *l == self).unwrap_or(0);
        1 << index
    }
}

/// How a drawing went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Exact,
    Approximated(Limitation),
    Unsupported(Limitation),
}

/// The software renderer. Holds no surface state (surfaces live in guest memory and the
/// [`SurfaceTable`]), only statistics and which limitations were already logged.
#[derive(Debug, Default)]
pub struct Renderer {
    stats: RenderStats,
    warned: u32,
}

/// Everything a drawing function needs about its destination.
pub(crate) struct Target<'a, M> {
    pub mem: &'a M,
    pub surfaces: &'a SurfaceTable,
    pub surface: &'a Surface,
    pub surface_id: u32,
    pub bbox: Rect,
    /// bbox ∩ surface ∩ clip.
    pub region: Region,
    pub scratch: Vec<u8>,
}

impl<M: GuestMemory> Target<'_, M> {
    /// Calls `f(y, x0, x1)` for every span of `region` on the destination, cut by `mask`.
    pub(crate) fn for_each_span(
        region: &Region,
        mask: Option<&Mask<'_>>,
        mut f: impl FnMut(i32, i32, i32) -> Result<(), RenderError>,
    ) -> Result<(), RenderError> {
        let mut runs = Vec::new();
        for band in region.bands() {
            for y in band.top..band.bottom {
                for &(x0, x1) in &band.spans {
                    match mask {
                        None => f(y, x0, x1)?,
                        Some(mask) => {
                            runs.clear();
                            mask.split(y, x0, x1, &mut runs);
                            for &(a, b) in &runs {
                                f(y, a, b)?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads destination pixels `[x, x + out.len())` of row `y` (inside the region).
    pub(crate) fn read(&mut self, x: i32, y: i32, out: &mut [u32]) -> Result<(), RenderError> {
        self.surface
            .read_pixels(self.mem, x as u32, y as u32, out, &mut self.scratch)?;
        Ok(())
    }

    /// Writes destination pixels from `x` of row `y` (inside the region).
    pub(crate) fn write(&mut self, x: i32, y: i32, px: &[u32]) -> Result<(), RenderError> {
        self.surface
            .write_pixels(self.mem, x as u32, y as u32, px, &mut self.scratch)?;
        Ok(())
    }

    /// Replaces `s` (the ROP's source operand, at `(x, y)`) by `rop(s, dest)`, reading the
    /// destination only when the operation needs it.
    pub(crate) fn apply_rop(
        &mut self,
        rop: crate::pixel::Rop,
        x: i32,
        y: i32,
        s: &mut [u32],
        d: &mut Vec<u32>,
    ) -> Result<(), RenderError> {
        if rop.is_copy() {
            return Ok(());
        }
        if rop.reads_dest() {
            d.resize(s.len(), 0);
            self.read(x, y, d)?;
            for (sv, dv) in s.iter_mut().zip(d.iter()) {
                *sv = rop.apply(*sv, *dv);
            }
        } else {
            s.iter_mut().for_each(|sv| *sv = rop.apply(*sv, 0));
        }
        Ok(())
    }
}

/// The rectangle of a whole surface.
pub(crate) fn surface_rect(s: &Surface) -> Rect {
    Rect {
        top: 0,
        left: 0,
        bottom: i32::try_from(s.height).unwrap_or(i32::MAX),
        right: i32::try_from(s.width).unwrap_or(i32::MAX),
    }
}

/// `r` moved by `(dx, dy)`, saturating (a region cut by it stays correct when the
/// move would overflow, since the result is then far outside any surface).
pub(crate) fn translate(r: Rect, dx: i64, dy: i64) -> Rect {
    let clamp = |v: i64| v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    Rect {
        top: clamp(i64::from(r.top) + dy),
        left: clamp(i64::from(r.left) + dx),
        bottom: clamp(i64::from(r.bottom) + dy),
        right: clamp(i64::from(r.right) + dx),
    }
}

impl Renderer {
    pub fn new() -> Self {
        Renderer::default()
    }

    /// What was drawn so far.
    pub fn stats(&self) -> &RenderStats {
        &self.stats
    }

    /// Renders `d` into its destination surface in `mem`.
    ///
    /// The destination must exist and the bbox must lie inside it (spice-server drops
    /// drawables that break either rule); anything the drawing reads outside a source
    /// surface is simply not drawn, as spice's canvas does.
    pub fn draw<M: GuestMemory>(
        &mut self,
        mem: &M,
        surfaces: &SurfaceTable,
        d: &Drawable,
    ) -> Result<(), RenderError> {
        let kind = DrawKind::of(&d.body);
        let result = self.draw_body(mem, surfaces, d);
        let (note, counts) = match result {
            Ok(outcome) => (Some(outcome), self.stats.entry(kind)),
            Err(_) => (None, self.stats.entry(kind)),
        };
        if let Some(c) = counts {
            match note {
                Some(Outcome::Exact) => c.rendered += 1,
                Some(Outcome::Approximated(_)) => {
                    c.rendered += 1;
                    c.approximated += 1;
                }
                Some(Outcome::Unsupported(_)) => c.unsupported += 1,
                None => c.dropped += 1,
            }
        }
        match result {
            Ok(Outcome::Approximated(l) | Outcome::Unsupported(l)) => {
                self.warn_once(kind, l);
                Ok(())
            }
            Ok(Outcome::Exact) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn warn_once(&mut self, kind: DrawKind, limitation: Limitation) {
        let bit = limitation.bit();
        if self.warned & bit == 0 {
            self.warned |= bit;
            warn!(
                ?kind,
                ?limitation,
                "cannot render exactly (logged once per kind; counted in render stats)"
            );
        }
    }

    fn draw_body<M: GuestMemory>(
        &mut self,
        mem: &M,
        surfaces: &SurfaceTable,
        d: &Drawable,
    ) -> Result<Outcome, RenderError> {
        let surface = surfaces.get(d.surface_id)?;
        let bounds = surface_rect(surface);
        let bbox = d.bbox;
        let inside =
            bbox.is_well_formed() && bbox.right <= bounds.right && bbox.bottom <= bounds.bottom;
        if !inside {
            return Err(RenderError::BboxOutside {
                surface_id: d.surface_id,
                bbox,
                width: surface.width,
                height: surface.height,
            });
        }
        if let DrawBody::Nop = d.body {
            return Ok(Outcome::Exact);
        }
        let area = intersect(bbox, bounds);
        let region = match &d.clip {
            Clip::None => Region::from_rect(area),
            Clip::Rects(rects) => Region::from_rects(rects, area)?,
        };
        let mut t = Target {
            mem,
            surfaces,
            surface,
            surface_id: d.surface_id,
            bbox,
            region,
            scratch: Vec::new(),
        };
        match &d.body {
            DrawBody::Nop => Ok(Outcome::Exact),
            DrawBody::Fill(f) => raster::fill(&mut t, f),
            DrawBody::Blackness { mask } => {
                raster::solid(&mut t, mask.as_ref(), raster::Solid::Black)
            }
            DrawBody::Whiteness { mask } => {
                raster::solid(&mut t, mask.as_ref(), raster::Solid::White)
            }
            DrawBody::Invers { mask } => {
                raster::solid(&mut t, mask.as_ref(), raster::Solid::Invert)
            }
            DrawBody::Copy(c) | DrawBody::Blend(c) => raster::copy(&mut t, c),
            DrawBody::Opaque(o) => raster::opaque(&mut t, o),
            DrawBody::Rop3(r) => raster::rop3(&mut t, r),
            DrawBody::Transparent(tr) => raster::transparent(&mut t, tr),
            DrawBody::AlphaBlend(a) => raster::alpha_blend(&mut t, a),
            DrawBody::CopyBits { src_pos } => raster::copy_bits(&mut t, *src_pos),
            DrawBody::Text(text) => text::text(&mut t, text),
            DrawBody::Stroke(s) => stroke::stroke(&mut t, s),
            DrawBody::Composite(c) => composite::composite(&mut t, c),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
