//! Areas a display client holds as lossy JPEG, remembered with their exact pixels so that
//! they can be sent again losslessly: once the link allows it, or once the area has been
//! still for [`LOSSY_STILL`]. A still screen must end pixel-exact, whatever went lossy on
//! the way.
//!
//! A later drawing over part of an area makes that part exact (or someone else's
//! business), so the area shrinks to what is left of it, cut into at most four rectangles
//! with their pixels cropped. What is remembered is bounded ([`MAX_AREAS`], [`MAX_BYTES`]):
//! past either, the oldest area is handed back to be re-sent at once rather than forgotten.

use std::time::{Duration, Instant};

use saffron_display::{Pixels, Rect};

/// How long an area must stay undrawn before it is re-sent losslessly on a link that is
/// still slow (or with `jpeg-wan-compression=always`). Well past a stream's timeout (1 s)
/// and the link estimate's probe interval (3 s): a lossless re-send costs a slow link
/// seconds, which is worth paying once the picture has settled, not between the frames of
/// an animation that merely stutters, nor just before the estimate would have seen the
/// link recover.
pub const LOSSY_STILL: Duration = Duration::from_secs(5);
/// Areas remembered at most (a drawing cutting areas into pieces cannot grow the list
/// without bound).
pub const MAX_AREAS: usize = 64;
/// Pixel bytes remembered at most: two 4K frames.
pub const MAX_BYTES: usize = 2 * 3840 * 2160 * 4;

/// One area the client holds lossy.
pub(crate) struct LossyArea {
    pub area: Rect,
    /// The exact pixels of `area` (its size, BGRX).
    pub pixels: Pixels,
    /// When it was sent lossy.
    pub since: Instant,
}

/// One client's lossy areas.
#[derive(Default)]
pub(crate) struct LossyAreas {
    areas: Vec<LossyArea>,
    bytes: usize,
}

impl LossyAreas {
    /// `area` was just sent lossy, its exact pixels `pixels`. Returns the areas that no longer
    /// fit in the bounds (the oldest): the caller re-sends them losslessly now.
    pub(crate) fn add(&mut self, area: Rect, pixels: Pixels, now: Instant) -> Vec<LossyArea> {
        self.overwritten(area);
        self.bytes = self.bytes.saturating_add(pixels.bgrx.len());
        self.areas.push(LossyArea {
            area,
            pixels,
            since: now,
        });
        let mut evicted = Vec::new();
        while self.areas.len() > MAX_AREAS || (self.bytes > MAX_BYTES && self.areas.len() > 1) {
            let Some(oldest) = (0..self.areas.len()).min_by_key(|&i| self.areas[i].since) else {
                break;
            };
            evicted.push(self.remove(oldest));
        }
        evicted
    }

    /// Something exact was drawn over `area`: what it covers is no longer lossy.
    pub(crate) fn overwritten(&mut self, area: Rect) {
        if !self.areas.iter().any(|a| a.area.intersect(&area).is_some()) {
            return;
        }
        let old = std::mem::take(&mut self.areas);
        self.bytes = 0;
        for a in old {
            if a.area.intersect(&area).is_none() {
                self.bytes = self.bytes.saturating_add(a.pixels.bgrx.len());
                self.areas.push(a);
                continue;
            }
            for piece in subtract(a.area, area) {
                if let Some(pixels) = crop(&a.pixels, a.area, piece) {
                    self.bytes = self.bytes.saturating_add(pixels.bgrx.len());
                    self.areas.push(LossyArea {
                        area: piece,
                        pixels,
                        since: a.since,
                    });
                }
            }
        }
        // Cutting may leave more pieces than [`MAX_AREAS`]: none is forgotten (its pixels
        // are not exact on the client); the next `add` or `take_due` hands the excess back.
    }

    /// Takes the areas overlapping `area` (a COPY_BITS is about to read them: the client
    /// must hold them exactly first).
    pub(crate) fn take_overlapping(&mut self, area: Rect) -> Vec<LossyArea> {
        self.take_where(|a| a.area.intersect(&area).is_some())
    }

    /// Takes the areas due a lossless re-send at `now`: all of them when `lossy_allowed` is
    /// false (the link allows lossless again), else those still for [`LOSSY_STILL`] — and,
    /// whatever the time, those beyond [`MAX_AREAS`] (the oldest).
    pub(crate) fn take_due(&mut self, now: Instant, lossy_allowed: bool) -> Vec<LossyArea> {
        let mut due = self.take_where(|a| {
            !lossy_allowed || now.saturating_duration_since(a.since) >= LOSSY_STILL
        });
        while self.areas.len() > MAX_AREAS {
            let Some(oldest) = (0..self.areas.len()).min_by_key(|&i| self.areas[i].since) else {
                break;
            };
            due.push(self.remove(oldest));
        }
        due
    }

    pub(crate) fn clear(&mut self) {
        self.areas.clear();
        self.bytes = 0;
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.areas.len()
    }

    fn remove(&mut self, i: usize) -> LossyArea {
        let a = self.areas.swap_remove(i);
        self.bytes = self.bytes.saturating_sub(a.pixels.bgrx.len());
        a
    }

    fn take_where(&mut self, f: impl Fn(&LossyArea) -> bool) -> Vec<LossyArea> {
        let (taken, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.areas).into_iter().partition(f);
        self.areas = kept;
        self.bytes = self.areas.iter().map(|a| a.pixels.bgrx.len()).sum();
        taken
    }
}

/// `a` without `cut`: at most four rectangles (the bands above and below the cut, and the
/// pieces left and right of it).
fn subtract(a: Rect, cut: Rect) -> Vec<Rect> {
    let Some(i) = a.intersect(&cut) else {
        return vec![a];
    };
    [
        Rect::new(a.left, a.top, a.right, i.top),
        Rect::new(a.left, i.bottom, a.right, a.bottom),
        Rect::new(a.left, i.top, i.left, i.bottom),
        Rect::new(i.right, i.top, a.right, i.bottom),
    ]
    .into_iter()
    .flatten()
    .filter(|r| !r.is_empty())
    .collect()
}

/// The pixels of `sub` (inside `at`) out of `px`, the pixels of `at`. `None` when `sub` is
/// not inside or `px` is not `at`'s size.
fn crop(px: &Pixels, at: Rect, sub: Rect) -> Option<Pixels> {
    if !at.contains(&sub) || px.width != at.width() || px.height != at.height() {
        return None;
    }
    let stride = px.width as usize * 4;
    let (x, w) = ((sub.left - at.left) as usize * 4, sub.width() as usize * 4);
    let mut bgrx = Vec::with_capacity(w * sub.height() as usize);
    for y in sub.top - at.top..sub.bottom - at.top {
        let start = y as usize * stride + x;
        bgrx.extend_from_slice(px.bgrx.get(start..start + w)?);
    }
    Some(Pixels {
        width: sub.width(),
        height: sub.height(),
        bgrx,
        guest_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(l: u32, t: u32, r: u32, b: u32) -> Rect {
        Rect::new(l, t, r, b).unwrap()
    }

    /// Pixels of `area` whose value is their surface position, so crops can be checked.
    fn pixels(area: Rect) -> Pixels {
        let bgrx = (area.top..area.bottom)
            .flat_map(|y| (area.left..area.right).flat_map(move |x| [x as u8, y as u8, 7, 0]))
            .collect();
        Pixels {
            width: area.width(),
            height: area.height(),
            bgrx,
            guest_id: None,
        }
    }

    #[test]
    fn a_drawing_over_part_of_an_area_leaves_the_rest_with_its_own_pixels() {
        let mut l = LossyAreas::default();
        let t = Instant::now();
        let a = rect(10, 10, 50, 40);
        assert!(l.add(a, pixels(a), t).is_empty());
        l.overwritten(rect(20, 0, 30, 20));
        // The pieces cover exactly `a` minus the cut, each with its own pixels.
        let mut covered = 0;
        for p in &l.areas {
            assert!(p.area.intersect(&rect(20, 0, 30, 20)).is_none());
            assert!(a.contains(&p.area));
            assert!(p.pixels.bgrx == pixels(p.area).bgrx, "{:?}", p.area);
            covered += p.area.area();
        }
        assert_eq!(covered, a.area() - 10 * 10);
        assert_eq!(l.bytes, covered as usize * 4);
        l.overwritten(rect(0, 0, 100, 100));
        assert_eq!((l.len(), l.bytes), (0, 0));
    }

    #[test]
    fn areas_are_due_when_the_link_allows_or_when_still() {
        let mut l = LossyAreas::default();
        let t = Instant::now();
        l.add(rect(0, 0, 8, 8), pixels(rect(0, 0, 8, 8)), t);
        l.add(
            rect(8, 0, 16, 8),
            pixels(rect(8, 0, 16, 8)),
            t + LOSSY_STILL / 2,
        );
        assert!(l.take_due(t + LOSSY_STILL / 2, true).is_empty());
        let due = l.take_due(t + LOSSY_STILL, true);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].area, rect(0, 0, 8, 8));
        let due = l.take_due(t + LOSSY_STILL, false);
        assert_eq!(due.len(), 1, "the link allows: all at once");
        assert_eq!(l.len(), 0);
        // A copy reading an area takes it.
        l.add(rect(0, 0, 8, 8), pixels(rect(0, 0, 8, 8)), t);
        assert!(l.take_overlapping(rect(8, 8, 9, 9)).is_empty());
        assert_eq!(l.take_overlapping(rect(7, 7, 9, 9)).len(), 1);
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_goes_back_exact() {
        let mut l = LossyAreas::default();
        let t = Instant::now();
        let mut evicted = Vec::new();
        for i in 0..(MAX_AREAS as u32 + 10) {
            let a = rect(i * 2, 0, i * 2 + 2, 2);
            evicted.extend(l.add(a, pixels(a), t + Duration::from_millis(u64::from(i))));
        }
        assert_eq!(l.len(), MAX_AREAS);
        assert_eq!(evicted.len(), 10);
        assert_eq!(evicted[0].area, rect(0, 0, 2, 2), "the oldest first");
        // Bytes: one huge area pushes the others out, itself kept.
        let big = rect(0, 10, 3840 * 2, 10 + 2160 + 1);
        let huge = Pixels {
            width: big.width(),
            height: big.height(),
            bgrx: vec![0; big.area() as usize * 4],
            guest_id: None,
        };
        let out = l.add(big, huge, t + Duration::from_secs(1));
        assert!(out.len() >= MAX_AREAS - 1, "{}", out.len());
        assert_eq!(l.len(), 1);
        // Cutting many areas into pieces: back within bounds at the next look.
        let mut l = LossyAreas::default();
        for i in 0..MAX_AREAS as u32 {
            let a = rect(0, i * 3, 30, i * 3 + 3);
            l.add(a, pixels(a), t);
        }
        l.overwritten(rect(10, 0, 20, 1000));
        assert_eq!(l.len(), 2 * MAX_AREAS);
        let due = l.take_due(t, true);
        assert_eq!((due.len(), l.len()), (MAX_AREAS, MAX_AREAS));
    }

    #[test]
    fn crop_refuses_what_does_not_fit() {
        let a = rect(0, 0, 4, 4);
        assert!(crop(&pixels(a), a, rect(2, 2, 5, 4)).is_none());
        assert!(crop(&pixels(rect(0, 0, 3, 4)), a, rect(0, 0, 1, 1)).is_none());
        assert_eq!(subtract(a, rect(10, 10, 12, 12)), vec![a]);
        assert!(subtract(a, rect(0, 0, 4, 4)).is_empty());
    }
}
