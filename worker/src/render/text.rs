//! TEXT: raster glyph strings, with an optional background.
//!
//! Layout as in spice's `canvas_get_str_mask`: glyph `i` covers the box whose top-left
//! corner is `render_pos + glyph_origin`, `width × height` pixels; its rows are stored
//! bottom-up (the last row of data is the top of the glyph) unless the string has
//! RASTER_TOP_DOWN, which spice leaves unimplemented; 1-bpp rows are most significant bit
//! first, 4-bpp rows high nibble first with coverage `nibble << 4`, 8-bpp rows one coverage
//! byte per pixel. Overlapping glyphs combine by OR (1 bpp) or maximum (4/8 bpp), then the
//! fore brush is composited OVER the destination through that coverage, once.

use saffron_ring::abi::{SPICE_ROPD_OP_PUT, SPICE_STRING_FLAGS_RASTER_TOP_DOWN};
use saffron_ring::parse::{Brush, RasterGlyph, Rect, SurfaceFormat, Text};
use vm_memory::GuestMemory;

use super::source::BrushSource;
use super::{Limitation, Outcome, RenderError, Target};
use crate::pixel::{argb_to_native, mul_pixel, native_to_argb, over};
use crate::region::is_empty;

/// A glyph's box as (top, left, bottom, right), in 64-bit so hostile positions cannot
/// overflow.
type GlyphBox = (i64, i64, i64, i64);

fn glyph_box(g: &RasterGlyph) -> GlyphBox {
    let left = i64::from(g.render_pos.x) + i64::from(g.glyph_origin.x);
    let top = i64::from(g.render_pos.y) + i64::from(g.glyph_origin.y);
    (
        top,
        left,
        top + i64::from(g.height),
        left + i64::from(g.width),
    )
}

/// Coverage (0..=255) of glyph pixel `(gx, gy)`, `gy` counted from the glyph's top.
fn coverage(g: &RasterGlyph, bpp: u8, top_down: bool, gx: u32, gy: u32) -> u8 {
    let h = u32::from(g.height);
    let row = if top_down {
        gy
    } else {
        h.saturating_sub(1 + gy)
    };
    let row_bytes = (u64::from(g.width) * u64::from(bpp)).div_ceil(8);
    let at = |i: u64| {
        usize::try_from(u64::from(row) * row_bytes + i)
            .ok()
            .and_then(|i| g.data.get(i))
            .copied()
            .unwrap_or(0)
    };
    let gx = u64::from(gx);
    match bpp {
        1 => {
            if (at(gx / 8) >> (7 - gx % 8)) & 1 != 0 {
                0xff
            } else {
                0
            }
        }
        4 => {
            let b = at(gx / 2);
            if gx % 2 == 0 { b & 0xf0 } else { b << 4 }
        }
        _ => at(gx),
    }
}

pub(crate) fn text<M: GuestMemory>(
    t: &mut Target<'_, M>,
    text: &Text,
) -> Result<Outcome, RenderError> {
    if t.region.is_empty() {
        return Ok(Outcome::Exact);
    }
    let format = t.surface.format;
    let back = text.back_area;
    if !is_empty(&back) {
        // Spice draws nothing at all for any other fore mode with a background.
        if text.fore_mode != SPICE_ROPD_OP_PUT {
            return Ok(Outcome::Unsupported(Limitation::TextForeMode));
        }
        let mut brush = match BrushSource::open(&text.back_brush, t.mem, t.surfaces)? {
            Ok(b) => b,
            Err(l) => return Ok(Outcome::Unsupported(l)),
        };
        let region = t.region.intersect_rect(back);
        let mut b = Vec::new();
        Target::<M>::for_each_span(&region, None, |y, x0, x1| {
            b.resize((x1 - x0) as usize, 0);
            brush.row(format, x0, y, &mut b)?;
            t.write(x0, y, &b)
        })?;
    }
    if matches!(text.fore_brush, Brush::None) {
        // Spice has no brush image to composite then.
        return Ok(Outcome::Exact);
    }
    let outcome = if matches!(text.fore_brush, Brush::Pattern { .. }) {
        Outcome::Approximated(Limitation::TextPatternOrigin)
    } else {
        Outcome::Exact
    };
    let mut brush = match BrushSource::open(&text.fore_brush, t.mem, t.surfaces)? {
        Ok(b) => b,
        Err(l) => return Ok(Outcome::Unsupported(l)),
    };
    let string = &text.string;
    let bpp = string.bpp;
    let top_down = string.flags & SPICE_STRING_FLAGS_RASTER_TOP_DOWN != 0;
    let ext = t.region.extents();
    // Glyphs that can touch the region, sorted by top for a sweep over rows.
    let mut glyphs: Vec<(&RasterGlyph, GlyphBox)> = string
        .glyphs
        .iter()
        .map(|g| (g, glyph_box(g)))
        .filter(|(_, (top, left, bottom, right))| {
            top < bottom
                && left < right
                && *bottom > i64::from(ext.top)
                && *top < i64::from(ext.bottom)
                && *right > i64::from(ext.left)
                && *left < i64::from(ext.right)
        })
        .collect();
    if glyphs.is_empty() {
        return Ok(outcome);
    }
    glyphs.sort_by_key(|(_, b)| b.0);
    let top = glyphs
        .iter()
        .map(|(_, b)| b.0)
        .min()
        .unwrap_or(0)
        .max(i64::from(ext.top));
    let bottom = glyphs
        .iter()
        .map(|(_, b)| b.2)
        .max()
        .unwrap_or(0)
        .min(i64::from(ext.bottom));
    let bounds = Rect {
        top: top as i32,
        left: ext.left,
        bottom: bottom as i32,
        right: ext.right,
    };
    let region = t.region.intersect_rect(bounds);
    let width = (ext.right - ext.left) as usize;
    let mut cov = vec![0u8; width];
    let (mut b, mut d) = (Vec::new(), Vec::new());
    let mut next = 0usize;
    let mut active: Vec<(&RasterGlyph, GlyphBox)> = Vec::new();
    let mut current_row = i64::MIN;
    for band in region.bands() {
        for y in band.top..band.bottom {
            let yy = i64::from(y);
            if yy != current_row {
                current_row = yy;
                // Coverage of this row over the region's width.
                active.retain(|(_, bx)| bx.2 > yy);
                while let Some(g) = glyphs.get(next).filter(|(_, bx)| bx.0 <= yy) {
                    active.push(*g);
                    next += 1;
                }
                cov.fill(0);
                for (g, (gt, gl, gb, gr)) in &active {
                    if !(*gt..*gb).contains(&yy) {
                        continue;
                    }
                    let gy = (yy - gt) as u32;
                    let from = (*gl).max(i64::from(ext.left));
                    let to = (*gr).min(i64::from(ext.right));
                    for x in from..to {
                        let c = coverage(g, bpp, top_down, (x - gl) as u32, gy);
                        if let Some(slot) = cov.get_mut((x - i64::from(ext.left)) as usize) {
                            *slot = if bpp == 1 { *slot | c } else { (*slot).max(c) };
                        }
                    }
                }
            }
            for &(x0, x1) in &band.spans {
                let lo = (x0 - ext.left) as usize;
                let hi = (x1 - ext.left) as usize;
                let Some(c) = cov.get(lo..hi) else { continue };
                if c.iter().all(|v| *v == 0) {
                    continue;
                }
                let n = hi - lo;
                b.resize(n, 0);
                d.resize(n, 0);
                brush.row(format, x0, y, &mut b)?;
                t.read(x0, y, &mut d)?;
                for ((dv, bv), cv) in d.iter_mut().zip(&b).zip(c) {
                    if *cv == 0 {
                        continue;
                    }
                    let s = mul_pixel(native_to_argb(format, *bv) | 0xff00_0000, u32::from(*cv));
                    let mut dp = native_to_argb(format, *dv);
                    if !crate::pixel::has_alpha(format) {
                        dp |= 0xff00_0000;
                    }
                    let r = over(s, dp);
                    *dv = match format {
                        // Spice clears the byte pixman sets when blending into xRGB.
                        SurfaceFormat::Xrgb8888 => r & 0x00ff_ffff,
                        f => argb_to_native(f, r, true),
                    };
                }
                t.write(x0, y, &d)?;
            }
        }
    }
    Ok(outcome)
}
