//! STROKE: paths drawn as X11 zero-width lines, the way spice's canvas draws every stroke.
//!
//! Spice hands each polyline of the path to X's `miZeroLine` (copied into spice-common's
//! lines.c) with CapNotLast, whatever the line width: Bresenham from each point to the next
//! without its end point, ties broken by X's default octant bias, and the last point of the
//! polyline left out. Coordinates are 28.4 fixed point rounded with spice's `fix_to_int`
//! (halves round down); Bezier segments are flattened by spice's recursive subdivision.
//! Each segment's pixels are painted once, through the fore mode's ROP with the brush.

use saffron_ring::abi::{
    QXL_PATH_BEGIN, QXL_PATH_BEZIER, QXL_PATH_CLOSE, QXL_PATH_END, SPICE_LINE_FLAGS_STYLED,
};
use saffron_ring::parse::{Point, Stroke};
use vm_memory::GuestMemory;

use super::source::BrushSource;
use super::{Limitation, Outcome, RenderError, Target};
use crate::pixel::{Rop, RopInput};
use crate::region::Region;

/// Most pixels one stroke may make the renderer visit: a screen's worth of lines many
/// times over, yet a bound on what a hostile path can cost.
const PIXEL_BUDGET: u64 = 1 << 25;

/// Most points Bezier flattening may add to one stroke (8 MiB of points).
const CURVE_BUDGET: u64 = 1 << 20;

/// Deepest Bezier subdivision; spice's recursion has no bound (a degenerate curve makes it
/// recurse forever), 2^16 pieces per curve are far more than any screen needs.
const MAX_BEZIER_DEPTH: u32 = 16;

/// spice's `fix_to_int`: 28.4 fixed point to an integer, fractions above one half rounding
/// up.
fn fix_to_int(v: i32) -> i32 {
    let whole = v >> 4;
    if v & 0x0f > 8 { whole + 1 } else { whole }
}

/// Dot product of 28.4 vectors, in 128 bits: hostile control points are far enough apart
/// to overflow 64.
fn dot(x1: i64, y1: i64, x2: i64, y2: i64) -> i128 {
    (i128::from(x1) * i128::from(x2) + i128::from(y1) * i128::from(y2)) >> 4
}

struct Painter<'t, 'a, 'b, M> {
    t: &'t mut Target<'a, M>,
    region: Region,
    brush: BrushSource<'b, M>,
    rop: Rop,
    budget: u64,
    curve_budget: u64,
    exhausted: bool,
    runs: Vec<(i32, i32)>,
    b: Vec<u32>,
    d: Vec<u32>,
}

impl<M: GuestMemory> Painter<'_, '_, '_, M> {
    fn spend(&mut self, n: u64) -> bool {
        if self.budget < n {
            self.budget = 0;
            self.exhausted = true;
            false
        } else {
            self.budget -= n;
            true
        }
    }

    /// Paints pixels `[x0, x1)` of row `y` that are inside the region.
    fn paint(&mut self, y: i64, x0: i64, x1: i64) -> Result<(), RenderError> {
        let clamp = |v: i64| v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        let Ok(y) = i32::try_from(y) else {
            return Ok(());
        };
        self.runs.clear();
        self.region
            .clip_span(y, clamp(x0), clamp(x1), &mut self.runs);
        let format = self.t.surface.format;
        for &(a, b) in &self.runs {
            let n = (b - a) as usize;
            self.b.resize(n, 0);
            self.brush.row(format, a, y, &mut self.b)?;
            self.t.apply_rop(self.rop, a, y, &mut self.b, &mut self.d)?;
            self.t.write(a, y, &self.b)?;
        }
        Ok(())
    }

    /// One zero-width segment from `p1` towards `p2`, end point excluded (miZeroLine).
    fn segment(&mut self, p1: (i32, i32), p2: (i32, i32)) -> Result<(), RenderError> {
        const XDECREASING: u32 = 4;
        const YDECREASING: u32 = 2;
        const YMAJOR: u32 = 1;
        // X's default bias: octants 2, 3, 4 and 5 round the other way.
        const BIAS: u32 = (1 << (YDECREASING | YMAJOR))
            | (1 << (XDECREASING | YDECREASING | YMAJOR))
            | (1 << (XDECREASING | YDECREASING))
            | (1 << XDECREASING);
        let (x1, y1) = (i64::from(p1.0), i64::from(p1.1));
        let (x2, y2) = (i64::from(p2.0), i64::from(p2.1));
        let mut octant = 0;
        let (adx, sdx) = if x2 < x1 {
            octant |= XDECREASING;
            (x1 - x2, -1)
        } else {
            (x2 - x1, 1)
        };
        let (ady, sdy) = if y2 < y1 {
            octant |= YDECREASING;
            (y1 - y2, -1)
        } else {
            (y2 - y1, 1)
        };
        let x_major = adx > ady;
        if !x_major {
            octant |= YMAJOR;
        }
        let bias = i64::from((BIAS >> octant) & 1);
        let (major, minor) = if x_major { (adx, ady) } else { (ady, adx) };
        if major == 0 {
            return Ok(());
        }
        // Bresenham steps along the major axis; the minor offset after `i` steps is
        // floor((2·i·minor + major - bias) / (2·major)), which is what miZeroLine's error
        // term yields, so the visible part can be walked without the rest.
        let ext = self.region.extents();
        let (lo, hi, start, step) = if x_major {
            (i64::from(ext.left), i64::from(ext.right), x1, sdx)
        } else {
            (i64::from(ext.top), i64::from(ext.bottom), y1, sdy)
        };
        // Steps i in [0, major) with start + step·i in [lo, hi).
        let (first, last) = if step > 0 {
            ((lo - start).max(0), (hi - 1 - start).min(major - 1))
        } else {
            ((start - (hi - 1)).max(0), (start - lo).min(major - 1))
        };
        if first > last {
            return Ok(());
        }
        if !self.spend((last - first + 1) as u64) {
            return Ok(());
        }
        let minor_at = |i: i64| (2 * i * minor + major - bias).div_euclid(2 * major);
        if x_major {
            // Runs of pixels on one row become one span.
            let mut run: Option<(i64, i64, i64)> = None; // (y, x_start, x_end)
            for i in first..=last {
                let x = x1 + sdx * i;
                let y = y1 + sdy * minor_at(i);
                run = match run {
                    Some((ry, a, b)) if ry == y => Some((ry, a.min(x), b.max(x + 1))),
                    Some((ry, a, b)) => {
                        self.paint(ry, a, b)?;
                        Some((y, x, x + 1))
                    }
                    None => Some((y, x, x + 1)),
                };
            }
            if let Some((ry, a, b)) = run {
                self.paint(ry, a, b)?;
            }
        } else {
            for i in first..=last {
                let y = y1 + sdy * i;
                let x = x1 + sdx * minor_at(i);
                self.paint(y, x, x + 1)?;
            }
        }
        Ok(())
    }

    /// Draws a polyline; its last point is not drawn (CapNotLast).
    fn polyline(&mut self, points: &[(i32, i32)]) -> Result<(), RenderError> {
        for pair in points.windows(2) {
            if let &[a, b] = pair {
                self.segment(a, b)?;
            }
        }
        Ok(())
    }

    /// spice's `subdivide_bezier`: split until both control points are within half a
    /// pixel of the chord, appending the end point of each flat piece.
    fn bezier(&mut self, out: &mut Vec<(i32, i32)>, p: [(i64, i64); 4], depth: u32) {
        let [p0, p1, p2, p3] = p;
        let a2 = dot(p1.0 - p0.0, p1.1 - p0.1, p1.0 - p0.0, p1.1 - p0.1);
        let b2 = dot(p3.0 - p0.0, p3.1 - p0.1, p3.0 - p0.0, p3.1 - p0.1);
        let c2 = dot(p2.0 - p3.0, p2.1 - p3.1, p2.0 - p3.0, p2.1 - p3.1);
        let ab = dot(p1.0 - p0.0, p1.1 - p0.1, p3.0 - p0.0, p3.1 - p0.1);
        let cb = dot(p2.0 - p3.0, p2.1 - p3.1, p0.0 - p3.0, p0.1 - p3.1);
        let h1 = a2.saturating_mul(b2).saturating_sub(ab.saturating_mul(ab)) >> 3;
        let h2 = c2.saturating_mul(b2).saturating_sub(cb.saturating_mul(cb)) >> 3;
        let flat = h1 < b2 && h2 < b2;
        let affordable = self.curve_budget > 0;
        if !affordable {
            self.exhausted = true;
        }
        if flat || depth >= MAX_BEZIER_DEPTH || !affordable {
            self.curve_budget = self.curve_budget.saturating_sub(1);
            out.push((fix_to_int(p3.0 as i32), fix_to_int(p3.1 as i32)));
            return;
        }
        let mid = |a: (i64, i64), b: (i64, i64)| ((a.0 + b.0) / 2, (a.1 + b.1) / 2);
        let p01 = mid(p0, p1);
        let p12 = mid(p1, p2);
        let p23 = mid(p2, p3);
        let p012 = mid(p01, p12);
        let p123 = mid(p12, p23);
        let p0123 = mid(p012, p123);
        self.bezier(out, [p0, p01, p012, p0123], depth + 1);
        self.bezier(out, [p0123, p123, p23, p3], depth + 1);
    }
}

pub(crate) fn stroke<M: GuestMemory>(
    t: &mut Target<'_, M>,
    s: &Stroke,
) -> Result<Outcome, RenderError> {
    if t.region.is_empty() {
        return Ok(Outcome::Exact);
    }
    let brush = match BrushSource::open(&s.brush, t.mem, t.surfaces)? {
        Ok(b) => b,
        Err(l) => return Ok(Outcome::Unsupported(l)),
    };
    let mut outcome = if s.attr.flags & SPICE_LINE_FLAGS_STYLED != 0 {
        Outcome::Approximated(Limitation::StyledStroke)
    } else if s.attr.width != 0 {
        Outcome::Approximated(Limitation::WideStroke)
    } else {
        Outcome::Exact
    };
    let region = std::mem::take(&mut t.region);
    let mut p = Painter {
        t,
        region,
        brush,
        rop: Rop::from_descriptor(s.fore_mode, RopInput::Brush, RopInput::Dest),
        budget: PIXEL_BUDGET,
        curve_budget: CURVE_BUDGET,
        exhausted: false,
        runs: Vec::new(),
        b: Vec::new(),
        d: Vec::new(),
    };
    let fix = |pt: &Point| (fix_to_int(pt.x), fix_to_int(pt.y));
    let mut lines: Vec<(i32, i32)> = Vec::new();
    for seg in &s.path.segments {
        let mut points = seg.points.as_slice();
        if seg.flags & QXL_PATH_BEGIN != 0 {
            p.polyline(&lines)?;
            lines.clear();
            if let Some((first, rest)) = points.split_first() {
                lines.push(fix(first));
                points = rest;
            }
        }
        if seg.flags & QXL_PATH_BEZIER != 0 {
            if points.len() % 3 != 0 {
                // spice gives up on the whole stroke here, pending lines included.
                break;
            }
            for c in points.chunks_exact(3) {
                let Some(&(x0, y0)) = lines.last() else { break };
                let start = (i64::from(x0) << 4, i64::from(y0) << 4);
                let ctrl = |q: &Point| (i64::from(q.x), i64::from(q.y));
                let (Some(c1), Some(c2), Some(c3)) = (c.first(), c.get(1), c.get(2)) else {
                    break;
                };
                p.bezier(&mut lines, [start, ctrl(c1), ctrl(c2), ctrl(c3)], 0);
            }
        } else {
            lines.extend(points.iter().map(fix));
        }
        if seg.flags & QXL_PATH_END != 0 {
            if seg.flags & QXL_PATH_CLOSE != 0
                && let Some(&first) = lines.first()
            {
                lines.push(first);
            }
            p.polyline(&lines)?;
            lines.clear();
        }
    }
    p.polyline(&lines)?;
    if p.exhausted {
        outcome = Outcome::Approximated(Limitation::StrokeBudget);
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::fix_to_int;

    #[test]
    fn fixed_point_rounds_like_spice() {
        assert_eq!(fix_to_int(16), 1);
        assert_eq!(fix_to_int(16 + 8), 1);
        assert_eq!(fix_to_int(16 + 9), 2);
        assert_eq!(fix_to_int(-1), 0);
        assert_eq!(fix_to_int(-8), -1);
        assert_eq!(fix_to_int(-16), -1);
    }
}
