//! Regions: where a drawing may paint, as disjoint horizontal spans grouped in bands.
//!
//! Guests send clip rectangles that may overlap; drawing them one by one would apply XOR,
//! INVERS or alpha blending twice where they do. A region is their union, stored like
//! pixman's: bands of rows `[top, bottom)` each holding sorted, disjoint, non-touching
//! `[left, right)` spans, bands sorted top to bottom and never sharing rows.

use saffron_ring::parse::Rect;
use thiserror::Error;

/// Most spans a region built from guest rectangles may hold. Overlapping rectangles can
/// multiply into bands × spans far beyond their count (16384 rectangles arranged as a
/// grid would need a gigabyte); a real clip list needs a few thousand.
pub const MAX_REGION_SPANS: usize = 1 << 20;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RegionError {
    #[error("the union of {rects} clip rectangles needs more than {MAX_REGION_SPANS} spans")]
    TooComplex { rects: usize },
}

/// A horizontal strip of rows with the spans painted in each of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Band {
    pub top: i32,
    pub bottom: i32,
    /// Sorted, disjoint `[left, right)` spans.
    pub spans: Vec<(i32, i32)>,
}

/// A set of pixels as disjoint bands of spans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Region {
    bands: Vec<Band>,
}

/// The intersection of two rectangles (possibly empty, never inverted).
pub fn intersect(a: Rect, b: Rect) -> Rect {
    let r = Rect {
        top: a.top.max(b.top),
        left: a.left.max(b.left),
        bottom: a.bottom.min(b.bottom),
        right: a.right.min(b.right),
    };
    if r.top >= r.bottom || r.left >= r.right {
        Rect::default()
    } else {
        r
    }
}

/// Whether `r` holds no pixel.
pub fn is_empty(r: &Rect) -> bool {
    r.top >= r.bottom || r.left >= r.right
}

impl Region {
    /// The pixels of `r`.
    pub fn from_rect(r: Rect) -> Region {
        if is_empty(&r) {
            return Region::default();
        }
        Region {
            bands: vec![Band {
                top: r.top,
                bottom: r.bottom,
                spans: vec![(r.left, r.right)],
            }],
        }
    }

    /// The union of `rects`, each first cut to `within`; fails when it would hold more than
    /// [`MAX_REGION_SPANS`] spans.
    pub fn from_rects(rects: &[Rect], within: Rect) -> Result<Region, RegionError> {
        let mut cut: Vec<Rect> = rects
            .iter()
            .map(|r| intersect(*r, within))
            .filter(|r| !is_empty(r))
            .collect();
        match cut.as_slice() {
            [] => return Ok(Region::default()),
            [only] => return Ok(Region::from_rect(*only)),
            _ => {}
        }
        cut.sort_unstable_by_key(|r| (r.top, r.left));
        let mut edges: Vec<i32> = cut.iter().flat_map(|r| [r.top, r.bottom]).collect();
        edges.sort_unstable();
        edges.dedup();

        let mut region = Region::default();
        let mut next = 0usize; // first rectangle not yet active
        let mut active: Vec<Rect> = Vec::new();
        let mut spans: Vec<(i32, i32)> = Vec::new();
        let mut total = 0usize;
        for pair in edges.windows(2) {
            let &[top, bottom] = pair else { continue };
            active.retain(|r| r.bottom > top);
            while let Some(r) = cut.get(next).filter(|r| r.top <= top) {
                active.push(*r);
                next += 1;
            }
            spans.clear();
            spans.extend(active.iter().map(|r| (r.left, r.right)));
            spans.sort_unstable();
            let merged = merge_spans(&spans);
            total += merged.len();
            if total > MAX_REGION_SPANS {
                return Err(RegionError::TooComplex { rects: rects.len() });
            }
            region.push_band(top, bottom, merged);
        }
        Ok(region)
    }

    /// Appends a band below the existing ones, coalescing with the last band when it is
    /// adjacent and has the same spans.
    fn push_band(&mut self, top: i32, bottom: i32, spans: Vec<(i32, i32)>) {
        if spans.is_empty() || top >= bottom {
            return;
        }
        if let Some(last) = self.bands.last_mut()
            && last.bottom == top
            && last.spans == spans
        {
            last.bottom = bottom;
            return;
        }
        self.bands.push(Band { top, bottom, spans });
    }

    pub fn is_empty(&self) -> bool {
        self.bands.is_empty()
    }

    pub fn bands(&self) -> &[Band] {
        &self.bands
    }

    /// The region's pixels as disjoint rectangles, in band order.
    pub fn rects(&self) -> impl Iterator<Item = Rect> + '_ {
        self.bands.iter().flat_map(|b| {
            b.spans.iter().map(move |&(left, right)| Rect {
                top: b.top,
                left,
                bottom: b.bottom,
                right,
            })
        })
    }

    /// Number of pixels (for tests and statistics).
    pub fn area(&self) -> u64 {
        self.rects()
            .map(|r| (i64::from(r.right - r.left) * i64::from(r.bottom - r.top)) as u64)
            .sum()
    }

    /// The smallest rectangle holding the region.
    pub fn extents(&self) -> Rect {
        let (Some(first), Some(last)) = (self.bands.first(), self.bands.last()) else {
            return Rect::default();
        };
        let left = self
            .bands
            .iter()
            .filter_map(|b| b.spans.first().map(|s| s.0))
            .min()
            .unwrap_or(0);
        let right = self
            .bands
            .iter()
            .filter_map(|b| b.spans.last().map(|s| s.1))
            .max()
            .unwrap_or(0);
        Rect {
            top: first.top,
            left,
            bottom: last.bottom,
            right,
        }
    }

    /// The part of the region inside `r`.
    pub fn intersect_rect(&self, r: Rect) -> Region {
        let mut out = Region::default();
        for band in &self.bands {
            let top = band.top.max(r.top);
            let bottom = band.bottom.min(r.bottom);
            if top >= bottom {
                continue;
            }
            let spans: Vec<(i32, i32)> = band
                .spans
                .iter()
                .map(|&(a, b)| (a.max(r.left), b.min(r.right)))
                .filter(|(a, b)| a < b)
                .collect();
            out.push_band(top, bottom, spans);
        }
        out
    }

    /// Appends to `out` the parts of `[x0, x1)` on row `y` inside the region.
    pub fn clip_span(&self, y: i32, x0: i32, x1: i32, out: &mut Vec<(i32, i32)>) {
        let i = self.bands.partition_point(|b| b.bottom <= y);
        let Some(band) = self.bands.get(i).filter(|b| b.top <= y) else {
            return;
        };
        for &(a, b) in &band.spans {
            let (l, r) = (a.max(x0), b.min(x1));
            if l < r {
                out.push((l, r));
            }
        }
    }

    /// Whether pixel `(x, y)` is in the region.
    pub fn contains(&self, x: i32, y: i32) -> bool {
        self.bands.iter().any(|b| {
            (b.top..b.bottom).contains(&y) && b.spans.iter().any(|&(l, r)| (l..r).contains(&x))
        })
    }
}

/// Merges sorted spans into disjoint, non-touching ones.
fn merge_spans(sorted: &[(i32, i32)]) -> Vec<(i32, i32)> {
    let mut out: Vec<(i32, i32)> = Vec::with_capacity(sorted.len());
    for &(a, b) in sorted {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rect(top: i32, left: i32, bottom: i32, right: i32) -> Rect {
        Rect {
            top,
            left,
            bottom,
            right,
        }
    }

    #[test]
    fn overlapping_rects_become_disjoint_bands() {
        let within = rect(0, 0, 100, 100);
        let r = Region::from_rects(&[rect(0, 0, 10, 10), rect(5, 5, 15, 15)], within).unwrap();
        assert_eq!(r.area(), 100 + 100 - 25);
        assert_eq!(
            r.bands(),
            &[
                Band {
                    top: 0,
                    bottom: 5,
                    spans: vec![(0, 10)]
                },
                Band {
                    top: 5,
                    bottom: 10,
                    spans: vec![(0, 15)]
                },
                Band {
                    top: 10,
                    bottom: 15,
                    spans: vec![(5, 15)]
                },
            ]
        );
        assert_eq!(r.extents(), rect(0, 0, 15, 15));
        // Adjacent rectangles with the same spans coalesce; touching spans merge.
        let r = Region::from_rects(
            &[rect(0, 0, 5, 5), rect(5, 0, 10, 5), rect(0, 5, 10, 8)],
            within,
        )
        .unwrap();
        assert_eq!(r.rects().collect::<Vec<_>>(), vec![rect(0, 0, 10, 8)]);
        // Cut to `within`; empty and inverted rects vanish.
        let r = Region::from_rects(
            &[
                rect(-5, -5, 5, 5),
                rect(3, 3, 1, 1),
                rect(i32::MIN, 0, i32::MAX, 1),
            ],
            rect(0, 0, 4, 4),
        )
        .unwrap();
        assert_eq!(r.area(), 16);
        assert!(Region::from_rects(&[], within).unwrap().is_empty());
        assert_eq!(
            r.intersect_rect(rect(1, 1, 3, 2))
                .rects()
                .collect::<Vec<_>>(),
            vec![rect(1, 1, 3, 2)]
        );
    }

    #[test]
    fn grids_of_thin_rects_are_refused() {
        // 2048 one-pixel columns and 2048 short rows at distinct heights: every band holds
        // every column, so the union would need 2048 × 4096 spans.
        let mut rects: Vec<Rect> = (0..2048)
            .map(|i| rect(0, i * 2, 16384, i * 2 + 1))
            .collect();
        rects.extend((0..2048).map(|i| rect(i * 4, 8192, i * 4 + 1, 8193)));
        assert_eq!(
            Region::from_rects(&rects, rect(0, 0, 16384, 16384)),
            Err(RegionError::TooComplex { rects: 4096 })
        );
    }

    proptest! {
        /// The region holds exactly the pixels some (cut) rectangle holds, each once.
        #[test]
        fn union_is_exact(
            rects in proptest::collection::vec((0i32..20, 0i32..20, 0i32..20, 0i32..20), 0..8),
        ) {
            let rects: Vec<Rect> = rects.into_iter().map(|(a, b, c, d)| rect(a, b, c, d)).collect();
            let within = rect(2, 1, 18, 17);
            let region = Region::from_rects(&rects, within).unwrap();
            let mut count = 0u64;
            for y in 0..20 {
                for x in 0..20 {
                    let inside = rects.iter().any(|r| {
                        let r = intersect(*r, within);
                        (r.top..r.bottom).contains(&y) && (r.left..r.right).contains(&x)
                    });
                    prop_assert_eq!(region.contains(x, y), inside);
                    count += u64::from(inside);
                }
            }
            prop_assert_eq!(region.area(), count);
            for w in region.bands().windows(2) {
                prop_assert!(w[0].bottom <= w[1].top);
            }
            for b in region.bands() {
                for s in b.spans.windows(2) {
                    prop_assert!(s[0].1 < s[1].0);
                }
            }
        }
    }
}
