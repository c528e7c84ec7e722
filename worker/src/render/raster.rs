//! Drawings that paint the region with a brush, a source image, or both, through a ROP:
//! FILL, BLACKNESS/WHITENESS/INVERS, COPY/BLEND, OPAQUE, ROP3, TRANSPARENT, ALPHA_BLEND,
//! and COPY_BITS.

use saffron_ring::abi::{
    SPICE_ALPHA_FLAGS_DEST_HAS_ALPHA, SPICE_ALPHA_FLAGS_SRC_SURFACE_HAS_ALPHA,
    SPICE_IMAGE_SCALE_MODE_NEAREST,
};
use saffron_ring::parse::{
    AlphaBlend, CopyBody, Fill, Image, Opaque, Point, QMask, Rect, Rop3, SurfaceFormat, Transparent,
};
use vm_memory::GuestMemory;

use super::source::{BrushSource, ImageSource, Mask};
use super::{Limitation, Outcome, RenderError, Target, surface_rect, translate};
use crate::pixel::{
    Rop, RopInput, argb_to_native, argb_to_rgb555, argb_to_rgb565, mul_pixel, native_to_argb, over,
};

/// Early return with the limitation when something cannot be opened.
macro_rules! open_or_skip {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(limitation) => return Ok(Outcome::Unsupported(limitation)),
        }
    };
}

fn open_mask<'a>(mask: Option<&'a QMask>, bbox: Rect) -> Result<Option<Mask<'a>>, Limitation> {
    mask.map(|m| Mask::open(m, bbox)).transpose()
}

/// Fixed colours of BLACKNESS, WHITENESS and INVERS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Solid {
    Black,
    White,
    Invert,
}

/// Writes `n` pixels of colour `c` from `(x, y)`, through a row of encoded bytes built once.
struct SolidRow {
    color: u32,
    bytes: Vec<u8>,
}

impl SolidRow {
    fn new() -> Self {
        SolidRow {
            color: 0,
            bytes: Vec::new(),
        }
    }

    fn write<M: GuestMemory>(
        &mut self,
        t: &mut Target<'_, M>,
        x: i32,
        y: i32,
        n: usize,
        color: u32,
    ) -> Result<(), RenderError> {
        let format = t.surface.format;
        if format == SurfaceFormat::A1 {
            return t.write(x, y, &vec![color; n]);
        }
        let bpp = (format.bits_per_pixel() / 8) as usize;
        if color != self.color || self.bytes.len() < n * bpp {
            self.color = color;
            let px = vec![color; n.max(self.bytes.len() / bpp.max(1))];
            self.bytes.resize(px.len() * bpp, 0);
            crate::pixel::encode_native(format, 0, &px, &mut self.bytes);
        }
        let bytes = self.bytes.get(..n * bpp).unwrap_or_default();
        t.surface.write_bytes(t.mem, x as u32, y as u32, bytes)?;
        Ok(())
    }
}

/// BLACKNESS, WHITENESS, INVERS: constant operations through the clip and mask.
pub(crate) fn solid<M: GuestMemory>(
    t: &mut Target<'_, M>,
    mask: Option<&QMask>,
    what: Solid,
) -> Result<Outcome, RenderError> {
    let mask = open_or_skip!(open_mask(mask, t.bbox));
    let region = std::mem::take(&mut t.region);
    let mut row = SolidRow::new();
    let mut d = Vec::new();
    Target::<M>::for_each_span(&region, mask.as_ref(), |y, x0, x1| {
        let n = (x1 - x0) as usize;
        match what {
            Solid::Black => row.write(t, x0, y, n, 0),
            Solid::White => row.write(t, x0, y, n, u32::MAX),
            Solid::Invert => {
                d.resize(n, 0);
                t.read(x0, y, &mut d)?;
                d.iter_mut().for_each(|v| *v = !*v);
                t.write(x0, y, &d)
            }
        }
    })?;
    Ok(Outcome::Exact)
}

/// FILL: the brush through the ROP (brush, dest).
pub(crate) fn fill<M: GuestMemory>(
    t: &mut Target<'_, M>,
    f: &Fill,
) -> Result<Outcome, RenderError> {
    let mask = open_or_skip!(open_mask(f.mask.as_ref(), t.bbox));
    let mut brush = open_or_skip!(BrushSource::open(&f.brush, t.mem, t.surfaces)?);
    let rop = Rop::from_descriptor(f.rop_descriptor, RopInput::Brush, RopInput::Dest);
    let format = t.surface.format;
    let region = std::mem::take(&mut t.region);
    let mut row = SolidRow::new();
    let (mut b, mut d) = (Vec::new(), Vec::new());
    Target::<M>::for_each_span(&region, mask.as_ref(), |y, x0, x1| {
        let n = (x1 - x0) as usize;
        if let (BrushSource::Solid(c), true) = (&brush, rop.is_copy()) {
            return row.write(t, x0, y, n, *c);
        }
        b.resize(n, 0);
        brush.row(format, x0, y, &mut b)?;
        t.apply_rop(rop, x0, y, &mut b, &mut d)?;
        t.write(x0, y, &b)
    })?;
    Ok(Outcome::Exact)
}

/// How destination pixels map to source pixels.
enum Map {
    /// Same size: source = destination + offset.
    Offset { dx: i64, dy: i64 },
    /// Scaled with nearest-neighbour sampling: the source column of each bbox column and
    /// the source row of each bbox row, `None` where the sample falls outside the image.
    Scaled {
        left: i32,
        top: i32,
        xs: Vec<Option<u32>>,
        ys: Vec<Option<u32>>,
    },
}

/// Source coordinates of `n` destination pixels from bbox offset 0, sampling `src_len`
/// pixels from `src_start` of an image `limit` pixels long, the way pixman's nearest filter
/// does it for spice's scale transform: 16.16 fixed point, scale = src·65536/dst truncated,
/// sample at pixel centres, and `floor(x - ε)`.
fn nearest_axis(src_start: i32, src_len: i64, n: i64, limit: u32) -> Vec<Option<u32>> {
    if n <= 0 {
        return Vec::new();
    }
    // pixman keeps the scale in a 32-bit pixman_fixed_t.
    let scale = i64::from(((src_len * 65536) / n) as i32);
    (0..n)
        .map(|i| {
            let v = ((scale * (i * 65536 + 32768) + 0x8000) >> 16) + (i64::from(src_start) << 16);
            let p = (v - 1) >> 16;
            u32::try_from(p).ok().filter(|p| *p < limit)
        })
        .collect()
}

/// A source image with its mapping onto the destination.
struct Sampler<'a, M> {
    image: ImageSource<'a, M>,
    map: Map,
    /// The last full source row read for scaled sampling (native or argb values).
    cache: Option<(u32, bool, Vec<u32>)>,
}

impl<'a, M: GuestMemory> Sampler<'a, M> {
    /// Maps `src_area` of `image` onto the bbox. Unscaled, the target region is cut to
    /// the pixels whose source exists. A source that is the destination surface itself is
    /// read in full first.
    fn new(
        t: &mut Target<'_, M>,
        mut image: ImageSource<'a, M>,
        source: &Image,
        src_area: Rect,
    ) -> Result<Self, RenderError> {
        let bbox = t.bbox;
        if !src_area.is_well_formed() {
            return Err(RenderError::InvalidSourceArea { area: src_area });
        }
        // Both rectangles are well formed (the bbox was checked against the surface), so
        // these differences cannot overflow.
        let (bw, bh) = (bbox.right - bbox.left, bbox.bottom - bbox.top);
        let (sw, sh) = (
            src_area.right - src_area.left,
            src_area.bottom - src_area.top,
        );
        let same_surface =
            matches!(source, Image::Surface { surface_id, .. } if *surface_id == t.surface_id);
        let map = if bw == sw && bh == sh {
            let dx = i64::from(src_area.left) - i64::from(bbox.left);
            let dy = i64::from(src_area.top) - i64::from(bbox.top);
            let image_rect = Rect {
                top: 0,
                left: 0,
                bottom: i32::try_from(image.height()).unwrap_or(i32::MAX),
                right: i32::try_from(image.width()).unwrap_or(i32::MAX),
            };
            t.region = t.region.intersect_rect(translate(image_rect, -dx, -dy));
            if same_surface {
                image.snapshot(translate(t.region.extents(), dx, dy))?;
            }
            Map::Offset { dx, dy }
        } else {
            if same_surface {
                image.snapshot(surface_rect(t.surface))?;
            }
            Map::Scaled {
                left: bbox.left,
                top: bbox.top,
                xs: nearest_axis(src_area.left, i64::from(sw), i64::from(bw), image.width()),
                ys: nearest_axis(src_area.top, i64::from(sh), i64::from(bh), image.height()),
            }
        };
        Ok(Sampler {
            image,
            map,
            cache: None,
        })
    }

    fn is_scaled(&self) -> bool {
        matches!(self.map, Map::Scaled { .. })
    }

    /// Source pixels for destination `[x, x + out.len())` of row `y`, in `format`
    /// (`None`: canonical a8r8g8b8). Scaled samples outside the image read as 0.
    fn row(
        &mut self,
        format: Option<SurfaceFormat>,
        x: i32,
        y: i32,
        out: &mut [u32],
    ) -> Result<(), RenderError> {
        match &self.map {
            Map::Offset { dx, dy } => {
                let sx = u32::try_from(i64::from(x) + dx).unwrap_or(u32::MAX);
                let sy = u32::try_from(i64::from(y) + dy).unwrap_or(u32::MAX);
                match format {
                    Some(f) => self.image.native_row(f, sx, sy, out),
                    None => self.image.argb_row(sx, sy, out),
                }
            }
            Map::Scaled { left, top, xs, ys } => {
                let Some(sy) = usize::try_from(i64::from(y) - i64::from(*top))
                    .ok()
                    .and_then(|j| ys.get(j).copied().flatten())
                else {
                    out.fill(0);
                    return Ok(());
                };
                let argb = format.is_none();
                let row = match self.cache.take() {
                    Some((cy, ca, row)) if cy == sy && ca == argb => row,
                    other => {
                        let mut row = other.map(|c| c.2).unwrap_or_default();
                        row.resize(self.image.width() as usize, 0);
                        match format {
                            Some(f) => self.image.native_row(f, 0, sy, &mut row)?,
                            None => self.image.argb_row(0, sy, &mut row)?,
                        }
                        row
                    }
                };
                let first = usize::try_from(i64::from(x) - i64::from(*left)).unwrap_or(usize::MAX);
                for (i, o) in out.iter_mut().enumerate() {
                    *o = first
                        .checked_add(i)
                        .and_then(|c| xs.get(c).copied().flatten())
                        .and_then(|sx| row.get(sx as usize).copied())
                        .unwrap_or(0);
                }
                self.cache = Some((sy, argb, row));
                Ok(())
            }
        }
    }

    /// The bytes of a 32-bit bitmap row that a plain unscaled copy writes as they are.
    fn raw32(&self, x: i32, y: i32, n: usize) -> Option<&'a [u8]> {
        let Map::Offset { dx, dy } = self.map else {
            return None;
        };
        let sx = u32::try_from(i64::from(x) + dx).ok()?;
        let sy = u32::try_from(i64::from(y) + dy).ok()?;
        self.image.raw32(sx, sy, u32::try_from(n).ok()?)
    }
}

/// The outcome of a drawing that scaled with `scale_mode`.
fn scaled_outcome(scaled: bool, scale_mode: u8) -> Outcome {
    if scaled && scale_mode != SPICE_IMAGE_SCALE_MODE_NEAREST {
        Outcome::Approximated(Limitation::InterpolatedScaling)
    } else {
        Outcome::Exact
    }
}

/// COPY and BLEND: the source image through the ROP (src, dest).
pub(crate) fn copy<M: GuestMemory>(
    t: &mut Target<'_, M>,
    c: &CopyBody,
) -> Result<Outcome, RenderError> {
    let mask = open_or_skip!(open_mask(c.mask.as_ref(), t.bbox));
    let image = open_or_skip!(ImageSource::open(&c.src, t.mem, t.surfaces, false)?);
    let mut src = Sampler::new(t, image, &c.src, c.src_area)?;
    let rop = Rop::from_descriptor(c.rop_descriptor, RopInput::Src, RopInput::Dest);
    let format = t.surface.format;
    let direct =
        rop.is_copy() && matches!(format, SurfaceFormat::Xrgb8888 | SurfaceFormat::Argb8888);
    let region = std::mem::take(&mut t.region);
    let (mut s, mut d) = (Vec::new(), Vec::new());
    Target::<M>::for_each_span(&region, mask.as_ref(), |y, x0, x1| {
        let n = (x1 - x0) as usize;
        if direct && let Some(bytes) = src.raw32(x0, y, n) {
            // The hot path: one guest write per row span, straight from the bitmap.
            t.surface.write_bytes(t.mem, x0 as u32, y as u32, bytes)?;
            return Ok(());
        }
        s.resize(n, 0);
        src.row(Some(format), x0, y, &mut s)?;
        t.apply_rop(rop, x0, y, &mut s, &mut d)?;
        t.write(x0, y, &s)
    })?;
    Ok(scaled_outcome(src.is_scaled(), c.scale_mode))
}

/// OPAQUE: the source is copied, then the brush is applied through the ROP (brush, src).
pub(crate) fn opaque<M: GuestMemory>(
    t: &mut Target<'_, M>,
    o: &Opaque,
) -> Result<Outcome, RenderError> {
    let mask = open_or_skip!(open_mask(o.mask.as_ref(), t.bbox));
    let image = open_or_skip!(ImageSource::open(&o.src, t.mem, t.surfaces, false)?);
    let mut brush = open_or_skip!(BrushSource::open(&o.brush, t.mem, t.surfaces)?);
    let mut src = Sampler::new(t, image, &o.src, o.src_area)?;
    let rop = Rop::from_descriptor(o.rop_descriptor, RopInput::Brush, RopInput::Src);
    let format = t.surface.format;
    let region = std::mem::take(&mut t.region);
    let (mut s, mut b) = (Vec::new(), Vec::new());
    Target::<M>::for_each_span(&region, mask.as_ref(), |y, x0, x1| {
        let n = (x1 - x0) as usize;
        s.resize(n, 0);
        b.resize(n, 0);
        src.row(Some(format), x0, y, &mut s)?;
        brush.row(format, x0, y, &mut b)?;
        for (sv, bv) in s.iter_mut().zip(&b) {
            *sv = rop.apply(*bv, *sv);
        }
        t.write(x0, y, &s)
    })?;
    Ok(scaled_outcome(src.is_scaled(), o.scale_mode))
}

/// ROP3: any ternary operation of brush (pattern), source and destination.
pub(crate) fn rop3<M: GuestMemory>(
    t: &mut Target<'_, M>,
    r: &Rop3,
) -> Result<Outcome, RenderError> {
    let mask = open_or_skip!(open_mask(r.mask.as_ref(), t.bbox));
    let image = open_or_skip!(ImageSource::open(&r.src, t.mem, t.surfaces, false)?);
    let mut brush = open_or_skip!(BrushSource::open(&r.brush, t.mem, t.surfaces)?);
    let mut src = Sampler::new(t, image, &r.src, r.src_area)?;
    let format = t.surface.format;
    let region = std::mem::take(&mut t.region);
    let (mut s, mut b, mut d) = (Vec::new(), Vec::new(), Vec::new());
    Target::<M>::for_each_span(&region, mask.as_ref(), |y, x0, x1| {
        let n = (x1 - x0) as usize;
        s.resize(n, 0);
        b.resize(n, 0);
        d.resize(n, 0);
        src.row(Some(format), x0, y, &mut s)?;
        brush.row(format, x0, y, &mut b)?;
        t.read(x0, y, &mut d)?;
        for ((dv, sv), bv) in d.iter_mut().zip(&s).zip(&b) {
            *dv = crate::pixel::rop3(r.rop3, *bv, *sv, *dv);
        }
        t.write(x0, y, &d)
    })?;
    Ok(scaled_outcome(src.is_scaled(), r.scale_mode))
}

/// The colour key of TRANSPARENT in the destination's format, and the bits compared.
fn color_key(format: SurfaceFormat, true_color: u32) -> (u32, u32) {
    match format {
        SurfaceFormat::Xrgb8888 | SurfaceFormat::Argb8888 => {
            (true_color & 0x00ff_ffff, 0x00ff_ffff)
        }
        SurfaceFormat::Rgb555 => (argb_to_rgb555(true_color), 0xffff),
        SurfaceFormat::Rgb565 => (argb_to_rgb565(true_color), 0xffff),
        SurfaceFormat::A8 => (0, 0xff),
        SurfaceFormat::A1 => (0, 1),
    }
}

/// TRANSPARENT: source pixels equal to the colour key are not drawn (spice compares the
/// RGB bits of `true_color` converted to the destination format; scaling is nearest).
pub(crate) fn transparent<M: GuestMemory>(
    t: &mut Target<'_, M>,
    tr: &Transparent,
) -> Result<Outcome, RenderError> {
    let image = open_or_skip!(ImageSource::open(&tr.src, t.mem, t.surfaces, false)?);
    let mut src = Sampler::new(t, image, &tr.src, tr.src_area)?;
    let format = t.surface.format;
    let (key, bits) = color_key(format, tr.true_color);
    let region = std::mem::take(&mut t.region);
    let (mut s, mut d) = (Vec::new(), Vec::new());
    Target::<M>::for_each_span(&region, None, |y, x0, x1| {
        let n = (x1 - x0) as usize;
        s.resize(n, 0);
        d.resize(n, 0);
        src.row(Some(format), x0, y, &mut s)?;
        if s.iter().all(|v| v & bits == key) {
            return Ok(());
        }
        t.read(x0, y, &mut d)?;
        for (dv, sv) in d.iter_mut().zip(&s) {
            if sv & bits != key {
                *dv = *sv;
            }
        }
        t.write(x0, y, &d)
    })?;
    Ok(Outcome::Exact)
}

/// ALPHA_BLEND: the source OVER the destination, with an overall alpha.
///
/// As in spice's canvas: 32BIT and other opaque sources count as alpha 0xff, RGBA bitmaps
/// and ARGB surfaces as premultiplied ARGB, an xRGB surface as ARGB only with
/// SRC_SURFACE_HAS_ALPHA; an xRGB destination is opaque unless DEST_HAS_ALPHA, and then
/// its unused byte is left 0 where the blend wrote (spice clears what pixman set there);
/// scaling is always nearest.
pub(crate) fn alpha_blend<M: GuestMemory>(
    t: &mut Target<'_, M>,
    a: &AlphaBlend,
) -> Result<Outcome, RenderError> {
    if a.alpha == 0 {
        return Ok(Outcome::Exact);
    }
    let src_alpha = a.alpha_flags & SPICE_ALPHA_FLAGS_SRC_SURFACE_HAS_ALPHA != 0;
    let image = open_or_skip!(ImageSource::open(&a.src, t.mem, t.surfaces, src_alpha)?);
    let opaque_src = !image.has_alpha();
    let mut src = Sampler::new(t, image, &a.src, a.src_area)?;
    let format = t.surface.format;
    let dest_flag = a.alpha_flags & SPICE_ALPHA_FLAGS_DEST_HAS_ALPHA != 0;
    let dest_alpha = match format {
        SurfaceFormat::Xrgb8888 => dest_flag,
        f => crate::pixel::has_alpha(f),
    };
    let global = u32::from(a.alpha);
    let region = std::mem::take(&mut t.region);
    let (mut s, mut d) = (Vec::new(), Vec::new());
    Target::<M>::for_each_span(&region, None, |y, x0, x1| {
        let n = (x1 - x0) as usize;
        s.resize(n, 0);
        d.resize(n, 0);
        src.row(None, x0, y, &mut s)?;
        t.read(x0, y, &mut d)?;
        for (dv, sv) in d.iter_mut().zip(&s) {
            let mut sp = if opaque_src { *sv | 0xff00_0000 } else { *sv };
            if global != 0xff {
                sp = mul_pixel(sp, global);
            }
            let mut dp = native_to_argb(format, *dv);
            if !dest_alpha {
                dp |= 0xff00_0000;
            }
            let r = over(sp, dp);
            *dv = match format {
                SurfaceFormat::Xrgb8888 if !dest_alpha => r & 0x00ff_ffff,
                f => argb_to_native(f, r, true),
            };
        }
        t.write(x0, y, &d)
    })?;
    Ok(Outcome::Exact)
}

/// COPY_BITS: moves the bbox-sized area at `src_pos` of the destination surface to the
/// bbox, like memmove: rows and spans are visited in the order that reads every source
/// pixel before anything overwrites it (spice's `copy_region` order), each span buffered.
pub(crate) fn copy_bits<M: GuestMemory>(
    t: &mut Target<'_, M>,
    src_pos: Point,
) -> Result<Outcome, RenderError> {
    let dx = i64::from(t.bbox.left) - i64::from(src_pos.x);
    let dy = i64::from(t.bbox.top) - i64::from(src_pos.y);
    if dx == 0 && dy == 0 {
        return Ok(Outcome::Exact);
    }
    // Only destination pixels whose source is inside the surface.
    let region = t
        .region
        .intersect_rect(translate(surface_rect(t.surface), dx, dy));
    let bands: Vec<_> = if dy > 0 {
        region.bands().iter().rev().collect()
    } else {
        region.bands().iter().collect()
    };
    let surface = *t.surface;
    let (mut bytes, mut px) = (Vec::new(), Vec::new());
    for band in bands {
        let rows: Vec<i32> = if dy > 0 {
            (band.top..band.bottom).rev().collect()
        } else {
            (band.top..band.bottom).collect()
        };
        let spans: Vec<&(i32, i32)> = if dx > 0 {
            band.spans.iter().rev().collect()
        } else {
            band.spans.iter().collect()
        };
        for y in rows {
            for &&(x0, x1) in &spans {
                let n = (x1 - x0) as u32;
                let (sx, sy) = ((i64::from(x0) - dx) as u32, (i64::from(y) - dy) as u32);
                if surface.format == SurfaceFormat::A1 {
                    px.resize(n as usize, 0);
                    surface.read_pixels(t.mem, sx, sy, &mut px, &mut bytes)?;
                    surface.write_pixels(t.mem, x0 as u32, y as u32, &px, &mut bytes)?;
                } else {
                    surface.read_bytes(t.mem, sx, sy, n, &mut bytes)?;
                    surface.write_bytes(t.mem, x0 as u32, y as u32, &bytes)?;
                }
            }
        }
    }
    Ok(Outcome::Exact)
}
