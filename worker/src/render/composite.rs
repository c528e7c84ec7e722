//! COMPOSITE: X RENDER's Porter-Duff composition, as X.org's qxl driver sends it.
//!
//! Follows spice's `canvas_draw_composite`, i.e. pixman: destination pixel
//! `bbox.top_left + (i, j)` takes source sample `src_origin + (i, j)` (and mask sample
//! `mask_origin + (i, j)`), each through its optional affine transform applied to the pixel
//! centre in 16.16 fixed point; out-of-image samples follow the repeat mode (none:
//! transparent, normal, pad, reflect). The operator works on premultiplied a8r8g8b8 with
//! pixman's rounding; SOURCE_OPAQUE / DEST_OPAQUE (and formats without alpha) make that
//! alpha 0xff. Operators 0..=13 (CLEAR … SATURATE) are exact; the disjoint, conjoint and
//! blend-mode operators are counted as unsupported. Transforms that need interpolation
//! are sampled with nearest neighbour and counted as approximated.

use saffron_ring::abi::QXLTransform;
use saffron_ring::parse::{Composite, Image, SurfaceFormat};
use vm_memory::GuestMemory;

use super::source::ImageSource;
use super::{Limitation, Outcome, RenderError, Target, surface_rect};
use crate::pixel::{argb_to_native, mul_un8, native_to_argb};

const SOURCE_OPAQUE: u32 = 1 << 22;
const MASK_OPAQUE: u32 = 1 << 23;
const DEST_OPAQUE: u32 = 1 << 24;

/// pixman repeat modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repeat {
    None,
    Normal,
    Pad,
    Reflect,
}

impl Repeat {
    fn from_bits(v: u32) -> Repeat {
        match v & 3 {
            0 => Repeat::None,
            1 => Repeat::Normal,
            2 => Repeat::Pad,
            _ => Repeat::Reflect,
        }
    }

    /// Where coordinate `p` lands in an axis `len` long, `None` for transparent.
    fn wrap(self, p: i64, len: i64) -> Option<i64> {
        if len <= 0 {
            return None;
        }
        match self {
            Repeat::None => (0..len).contains(&p).then_some(p),
            Repeat::Normal => Some(p.rem_euclid(len)),
            Repeat::Pad => Some(p.clamp(0, len - 1)),
            Repeat::Reflect => {
                let m = p.rem_euclid(2 * len);
                Some(if m >= len { 2 * len - 1 - m } else { m })
            }
        }
    }
}

/// One sampled image (source or mask) of the composition.
struct Sampled<'a, M> {
    image: ImageSource<'a, M>,
    transform: Option<QXLTransform>,
    origin: (i64, i64),
    repeat: Repeat,
    /// Force alpha to 0xff.
    opaque: bool,
    row: Vec<u32>,
}

/// Whether `t` moves pixels by whole pixels only (then any filter samples exactly).
fn is_integer_translation(t: &QXLTransform) -> bool {
    let one = 1u32 << 16;
    t.t00 == one
        && t.t11 == one
        && t.t01 == 0
        && t.t10 == 0
        && t.t02 & 0xffff == 0
        && t.t12 & 0xffff == 0
}

impl<M: GuestMemory> Sampled<'_, M> {
    /// Image coordinates of the sample for destination offset `(i, j)` (pixman's nearest:
    /// transform the pixel centre, then `floor(v - ε)`).
    fn coords(&self, i: i64, j: i64) -> (i64, i64) {
        let (x, y) = (self.origin.0 + i, self.origin.1 + j);
        match &self.transform {
            None => (x, y),
            Some(t) => {
                // 128-bit: hostile matrices and origins overflow 64 bits.
                let m = |v: u32| i128::from(v as i32);
                let vx = (i128::from(x) << 16) + 0x8000;
                let vy = (i128::from(y) << 16) + 0x8000;
                let tx = (m(t.t00) * vx + m(t.t01) * vy + (m(t.t02) << 16) + 0x8000) >> 16;
                let ty = (m(t.t10) * vx + m(t.t11) * vy + (m(t.t12) << 16) + 0x8000) >> 16;
                let clamp = |v: i128| (v.clamp(i128::from(i64::MIN), i128::from(i64::MAX))) as i64;
                (clamp((tx - 1) >> 16), clamp((ty - 1) >> 16))
            }
        }
    }

    /// Canonical premultiplied samples for destination offsets `(i0 + k, j)`.
    fn fetch(&mut self, i0: i64, j: i64, out: &mut [u32]) -> Result<(), RenderError> {
        let (w, h) = (
            i64::from(self.image.width()),
            i64::from(self.image.height()),
        );
        let mut k = 0usize;
        while k < out.len() {
            // A run of samples on one image row is read with one access.
            let (x, y) = self.coords(i0 + k as i64, j);
            let Some(sy) = self.repeat.wrap(y, h) else {
                if let Some(o) = out.get_mut(k) {
                    *o = 0;
                }
                k += 1;
                continue;
            };
            let mut xs = vec![self.repeat.wrap(x, w)];
            let mut end = k + 1;
            while end < out.len() {
                let (nx, ny) = self.coords(i0 + end as i64, j);
                if self.repeat.wrap(ny, h) != Some(sy) {
                    break;
                }
                xs.push(self.repeat.wrap(nx, w));
                end += 1;
            }
            let lo = xs.iter().flatten().min().copied();
            let hi = xs.iter().flatten().max().copied();
            if let (Some(lo), Some(hi)) = (lo, hi) {
                self.row.resize((hi - lo + 1) as usize, 0);
                self.image.argb_row(lo as u32, sy as u32, &mut self.row)?;
            }
            let alpha = self.image.has_alpha() && !self.opaque;
            for (o, sx) in out.get_mut(k..end).unwrap_or_default().iter_mut().zip(&xs) {
                *o = match (sx, lo) {
                    (Some(sx), Some(lo)) => {
                        let v = self.row.get((sx - lo) as usize).copied().unwrap_or(0);
                        if alpha { v } else { v | 0xff00_0000 }
                    }
                    _ => 0,
                };
            }
            k = end;
        }
        Ok(())
    }
}

#[inline]
fn ch(v: u32, shift: u32) -> u32 {
    (v >> shift) & 0xff
}

/// pixman's DIV_UN8: `a / b` in 0..=255 units, rounded.
fn div_un8(a: u32, b: u32) -> u32 {
    (a * 0xff + b / 2)
        .checked_div(b)
        .map_or(0xff, |q| q.min(0xff))
}

/// One Porter-Duff operator on a premultiplied pixel. `s` is the source already multiplied
/// by the mask; `sa` is its alpha per channel (the same four times without component
/// alpha).
fn combine(op: u8, s: u32, sa: [u32; 4], d: u32) -> u32 {
    let da = d >> 24;
    let mut out = 0;
    for (idx, shift) in [0u32, 8, 16, 24].into_iter().enumerate() {
        let (sc, dc) = (ch(s, shift), ch(d, shift));
        let sac = sa.get(idx).copied().unwrap_or(0xff);
        let (fa, fb) = match op {
            0 => (0, 0),
            1 => (0xff, 0),
            2 => (0, 0xff),
            3 => (0xff, 0xff - sac),
            4 => (0xff - da, 0xff),
            5 => (da, 0),
            6 => (0, sac),
            7 => (0xff - da, 0),
            8 => (0, 0xff - sac),
            9 => (da, 0xff - sac),
            10 => (0xff - da, sac),
            11 => (0xff - da, 0xff - sac),
            12 => (0xff, 0xff),
            _ => {
                // SATURATE: scale the source down so it fits what the destination lacks.
                let ida = 0xff - da;
                let f = if sac > ida { div_un8(ida, sac) } else { 0xff };
                (f, 0xff)
            }
        };
        out |= (mul_un8(sc, fa) + mul_un8(dc, fb)).min(0xff) << shift;
    }
    out
}

pub(crate) fn composite<M: GuestMemory>(
    t: &mut Target<'_, M>,
    c: &Composite,
) -> Result<Outcome, RenderError> {
    let flags = c.flags;
    let op = (flags & 0xff) as u8;
    if op > 13 {
        return Ok(Outcome::Unsupported(Limitation::CompositeOperator));
    }
    let src_filter = (flags >> 8) & 7;
    let mask_filter = (flags >> 11) & 7;
    let component_alpha = (flags >> 18) & 1 != 0;
    let mut outcome = Outcome::Exact;
    // pixman's FAST (0) and NEAREST (3) sample as we do; others interpolate.
    let inexact = |filter: u32, transform: &Option<QXLTransform>| {
        !matches!(filter, 0 | 3)
            && transform
                .as_ref()
                .is_some_and(|t| !is_integer_translation(t))
    };

    let mut src_image = match ImageSource::open(&c.src, t.mem, t.surfaces, false)? {
        Ok(i) => i,
        Err(l) => return Ok(Outcome::Unsupported(l)),
    };
    if matches!(c.src.as_ref(), Image::Surface { surface_id, .. } if *surface_id == t.surface_id) {
        src_image.snapshot(surface_rect(t.surface))?;
    }
    if inexact(src_filter, &c.src_transform) {
        outcome = Outcome::Approximated(Limitation::CompositeFilter);
    }
    let mut src = Sampled {
        image: src_image,
        transform: c.src_transform,
        origin: (i64::from(c.src_origin.x), i64::from(c.src_origin.y)),
        repeat: Repeat::from_bits(flags >> 14),
        opaque: flags & SOURCE_OPAQUE != 0,
        row: Vec::new(),
    };
    let mut mask = match &c.mask {
        None => None,
        Some(image) => {
            let mut mask_image = match ImageSource::open(image, t.mem, t.surfaces, false)? {
                Ok(i) => i,
                Err(l) => return Ok(Outcome::Unsupported(l)),
            };
            if matches!(image.as_ref(), Image::Surface { surface_id, .. } if *surface_id == t.surface_id)
            {
                mask_image.snapshot(surface_rect(t.surface))?;
            }
            if inexact(mask_filter, &c.mask_transform) {
                outcome = Outcome::Approximated(Limitation::CompositeFilter);
            }
            Some(Sampled {
                image: mask_image,
                transform: c.mask_transform,
                origin: (i64::from(c.mask_origin.x), i64::from(c.mask_origin.y)),
                repeat: Repeat::from_bits(flags >> 16),
                opaque: flags & MASK_OPAQUE != 0,
                row: Vec::new(),
            })
        }
    };
    let format = t.surface.format;
    let dest_alpha = flags & DEST_OPAQUE == 0 && crate::pixel::has_alpha(format);
    let (left, top) = (i64::from(t.bbox.left), i64::from(t.bbox.top));
    let region = std::mem::take(&mut t.region);
    let (mut s, mut m, mut d) = (Vec::new(), Vec::new(), Vec::new());
    Target::<M>::for_each_span(&region, None, |y, x0, x1| {
        let n = (x1 - x0) as usize;
        let (i0, j) = (i64::from(x0) - left, i64::from(y) - top);
        s.resize(n, 0);
        d.resize(n, 0);
        src.fetch(i0, j, &mut s)?;
        if let Some(mask) = mask.as_mut() {
            m.resize(n, 0);
            mask.fetch(i0, j, &mut m)?;
        }
        t.read(x0, y, &mut d)?;
        for (k, dv) in d.iter_mut().enumerate() {
            let sv = s.get(k).copied().unwrap_or(0);
            let (sp, sa) = match (mask.is_some(), m.get(k).copied()) {
                (true, Some(mv)) if component_alpha => {
                    let sa = sv >> 24;
                    let sp = crate::pixel::mul_pixel_ca(sv, mv);
                    let per = [0, 8, 16, 24].map(|sh| mul_un8(sa, ch(mv, sh)));
                    (sp, per)
                }
                (true, Some(mv)) => {
                    let sp = crate::pixel::mul_pixel(sv, mv >> 24);
                    (sp, [sp >> 24; 4])
                }
                _ => (sv, [sv >> 24; 4]),
            };
            let mut dp = native_to_argb(format, *dv);
            if !dest_alpha {
                dp |= 0xff00_0000;
            }
            let r = combine(op, sp, sa, dp);
            *dv = match format {
                // pixman stores xRGB without its unused byte.
                SurfaceFormat::Xrgb8888 => r & 0x00ff_ffff,
                f => argb_to_native(f, r, true),
            };
        }
        t.write(x0, y, &d)
    })?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_on_premultiplied_pixels() {
        let s = 0x8040_2010u32; // half-transparent
        let d = 0xff80_8080u32;
        let sa = [0x80; 4];
        assert_eq!(combine(0, s, sa, d), 0);
        assert_eq!(combine(1, s, sa, d), s);
        assert_eq!(combine(2, s, sa, d), d);
        assert_eq!(combine(3, s, sa, d), 0xff80_6050);
        assert_eq!(combine(5, s, sa, d), s); // dest opaque: IN keeps the source
        assert_eq!(combine(7, s, sa, d), 0); // OUT with an opaque dest
        assert_eq!(
            combine(12, 0xff80_8080, [0xff; 4], 0xff90_9090),
            0xffff_ffff
        );
        // SATURATE into a transparent destination is ADD.
        assert_eq!(combine(13, s, sa, 0), s);
    }

    #[test]
    fn repeat_modes() {
        assert_eq!(Repeat::None.wrap(-1, 4), None);
        assert_eq!(Repeat::None.wrap(3, 4), Some(3));
        assert_eq!(Repeat::Normal.wrap(-1, 4), Some(3));
        assert_eq!(Repeat::Pad.wrap(9, 4), Some(3));
        assert_eq!(Repeat::Reflect.wrap(4, 4), Some(3));
        assert_eq!(Repeat::Reflect.wrap(-1, 4), Some(0));
        assert_eq!(Repeat::Normal.wrap(5, 0), None);
    }
}
