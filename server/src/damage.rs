//! What changed between two frames, in forms cheap to send: regions of changed rows, solid
//! regions (a fill), and vertical scrolls (a copy of pixels the client already has).
//!
//! Pure functions over [`Frame`]s, no I/O, so they can be unit-tested and fuzzed.

use std::collections::HashMap;

use crate::source::Frame;

/// A rectangle in surface pixels, edges exclusive at bottom/right (Spice order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub top: u32,
    pub left: u32,
    pub bottom: u32,
    pub right: u32,
}

impl Rect {
    pub fn full(frame: &Frame) -> Rect {
        Rect {
            top: 0,
            left: 0,
            bottom: frame.height,
            right: frame.width,
        }
    }
}

/// Unchanged rows allowed inside one changed region before it is split in two. A region costs
/// about a hundred bytes of message headers and a row of a 1024-wide surface 4 KiB, so only
/// tiny gaps are worth sending as pixels to save a message.
const SPLIT_GAP_ROWS: u32 = 2;
/// Most regions sent per tick; a frame changed in more places than this goes as the bounding
/// box of all of them (one big message beats hundreds of small ones).
pub const MAX_REGIONS: usize = 64;
/// Solid regions of at least this many pixels go as a DRAW_FILL (41 bytes) instead of pixels.
const MIN_FILL_PIXELS: u64 = 16;

/// What changed between two frames, as regions in top-to-bottom order: runs of changed rows
/// (split where at least [`SPLIT_GAP_ROWS`] + 1 rows are unchanged), each as wide as the
/// changes in it. A new size means the whole frame.
pub fn changed_rects(old: &Frame, new: &Frame) -> Vec<Rect> {
    if old.width != new.width || old.height != new.height {
        return vec![Rect::full(new)];
    }
    let stride = new.width as usize * 4;
    let rows = old
        .pixels
        .chunks_exact(stride)
        .zip(new.pixels.chunks_exact(stride));
    let mut out: Vec<Rect> = Vec::new();
    let mut current: Option<Rect> = None;
    for (y, (a, b)) in rows.enumerate() {
        if a == b {
            continue;
        }
        let px = |(p, q): (&[u8], &[u8])| p != q;
        let pairs = || a.chunks_exact(4).zip(b.chunks_exact(4));
        let left = pairs().position(px).unwrap_or(0) as u32;
        let right = (new.width as usize - pairs().rev().position(px).unwrap_or(0)) as u32;
        let y = y as u32;
        current = Some(match current {
            Some(r) if y - r.bottom <= SPLIT_GAP_ROWS => Rect {
                top: r.top,
                left: r.left.min(left),
                bottom: y + 1,
                right: r.right.max(right),
            },
            other => {
                out.extend(other);
                Rect {
                    top: y,
                    left,
                    bottom: y + 1,
                    right,
                }
            }
        });
    }
    out.extend(current);
    if out.len() > MAX_REGIONS {
        out = bounding_box(&out).into_iter().collect();
    }
    out
}

/// The smallest rectangle holding all of `rects`.
pub fn bounding_box(rects: &[Rect]) -> Option<Rect> {
    let (first, rest) = rects.split_first()?;
    Some(rest.iter().fold(*first, |r, q| Rect {
        top: r.top.min(q.top),
        left: r.left.min(q.left),
        bottom: r.bottom.max(q.bottom),
        right: r.right.max(q.right),
    }))
}

/// The colour of `rect` in `frame` if every pixel in it is the same (all four bytes), as
/// `0x00RRGGBB`; `None` otherwise or when the rect is too small to be worth a fill.
pub fn solid_color(frame: &Frame, rect: Rect) -> Option<u32> {
    let (w, h) = (rect.right - rect.left, rect.bottom - rect.top);
    if u64::from(w) * u64::from(h) < MIN_FILL_PIXELS {
        return None;
    }
    let stride = frame.width as usize * 4;
    let first_at = rect.top as usize * stride + rect.left as usize * 4;
    let first = frame.pixels.get(first_at..first_at + 4)?;
    for y in rect.top..rect.bottom {
        let start = y as usize * stride + rect.left as usize * 4;
        let row = frame.pixels.get(start..start + w as usize * 4)?;
        if !row.chunks_exact(4).all(|p| p == first) {
            return None;
        }
    }
    Some(u32::from_le_bytes([first[0], first[1], first[2], 0]))
}

/// Smallest region (rows) worth looking for a scroll in; below it pixels are cheap enough.
const MIN_SCROLL_ROWS: u32 = 32;
/// Rows whose content appears more often than this in the old frame (blank lines, say) give
/// no evidence of a shift; they are not used to vote. Glyph rows repeat inside a text line
/// (straight stems), so the bound is above a console font's height.
const MAX_ROW_REPEATS: usize = 24;
/// Offsets with the most votes that are checked row by row; the longest exact run wins.
const SCROLL_CANDIDATES: usize = 3;

/// A vertical scroll inside a region: the destination rows `dest` now show what the old frame
/// had `dy` rows further down (`dy > 0`: content moved up, as a console scrolls).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scroll {
    /// Where the moved pixels go (the whole width of the region).
    pub dest: Rect,
    /// Old row = destination row + `dy`.
    pub dy: i32,
}

/// Looks for a vertical scroll of `rect`'s content between `old` and `new` (same size): rows
/// of `new` that equal rows of `old` shifted by one common offset. Returns the largest run of
/// destination rows that the shift explains exactly, if it covers at least half the region
/// (else pixels are about as cheap and far simpler).
pub fn find_scroll(old: &Frame, new: &Frame, rect: Rect) -> Option<Scroll> {
    if old.width != new.width
        || old.height != new.height
        || rect.bottom - rect.top < MIN_SCROLL_ROWS
        || rect.right > new.width
        || rect.bottom > new.height
    {
        return None;
    }
    let stride = new.width as usize * 4;
    let (l, r) = (rect.left as usize * 4, rect.right as usize * 4);
    fn row_of(f: &Frame, stride: usize, l: usize, r: usize, y: u32) -> Option<&[u8]> {
        let start = y as usize * stride;
        f.pixels.get(start + l..start + r)
    }
    // Old rows of the whole frame (the source may lie outside the region) by content.
    let mut by_content: HashMap<&[u8], Vec<u32>> = HashMap::new();
    for y in 0..old.height {
        let entry = by_content.entry(row_of(old, stride, l, r, y)?).or_default();
        if entry.len() <= MAX_ROW_REPEATS {
            entry.push(y);
        }
    }
    let mut votes: HashMap<i32, u32> = HashMap::new();
    for y in rect.top..rect.bottom {
        if let Some(ys) = by_content.get(row_of(new, stride, l, r, y)?)
            && ys.len() <= MAX_ROW_REPEATS
        {
            for &oy in ys {
                if oy != y {
                    *votes.entry(oy as i32 - y as i32).or_default() += 1;
                }
            }
        }
    }
    let mut ranked: Vec<(i32, u32)> = votes.into_iter().collect();
    ranked.sort_unstable_by_key(|&(dy, n)| (std::cmp::Reverse(n), dy.abs(), dy));
    let mut best: Option<(i32, u32, u32)> = None;
    for &(dy, _) in ranked.iter().take(SCROLL_CANDIDATES) {
        if let Some((top, bottom)) = longest_explained_run(old, new, rect, dy)
            && best.is_none_or(|(_, t, b)| bottom - top > b - t)
        {
            best = Some((dy, top, bottom));
        }
    }
    let (dy, top, bottom) = best?;
    if (bottom - top) * 2 < rect.bottom - rect.top {
        return None;
    }
    Some(Scroll {
        dest: Rect {
            top,
            bottom,
            ..rect
        },
        dy,
    })
}

/// The longest run of `rect`'s rows of `new` that equal `old`'s rows `dy` further down (rows
/// the same in both count too: a blank line moved onto a blank line is still explained).
fn longest_explained_run(old: &Frame, new: &Frame, rect: Rect, dy: i32) -> Option<(u32, u32)> {
    let stride = new.width as usize * 4;
    let (l, r) = (rect.left as usize * 4, rect.right as usize * 4);
    let same = |y: u32| -> bool {
        let Some(oy) = u32::try_from(i64::from(y) + i64::from(dy))
            .ok()
            .filter(|oy| *oy < old.height)
        else {
            return false;
        };
        let (a, b) = (oy as usize * stride, y as usize * stride);
        matches!(
            (old.pixels.get(a + l..a + r), new.pixels.get(b + l..b + r)),
            (Some(p), Some(q)) if p == q
        )
    };
    let mut best: Option<(u32, u32)> = None;
    let mut run: Option<u32> = None;
    for y in rect.top..=rect.bottom {
        match (y < rect.bottom && same(y), run) {
            (true, None) => run = Some(y),
            (false, Some(start)) => {
                if best.is_none_or(|(a, b)| y - start > b - a) {
                    best = Some((start, y));
                }
                run = None;
            }
            _ => {}
        }
    }
    best
}

/// `old` with `scroll` applied: what a client holds after the COPY_BITS.
pub fn apply_scroll(old: &Frame, scroll: Scroll) -> Frame {
    let mut pixels = (*old.pixels).clone();
    let stride = old.width as usize * 4;
    let (l, r) = (
        scroll.dest.left as usize * 4,
        scroll.dest.right as usize * 4,
    );
    let rows: Vec<u32> = if scroll.dy > 0 {
        (scroll.dest.top..scroll.dest.bottom).collect()
    } else {
        (scroll.dest.top..scroll.dest.bottom).rev().collect()
    };
    for y in rows {
        let src = (y as i64 + i64::from(scroll.dy)) as usize * stride;
        let dst = y as usize * stride;
        pixels.copy_within(src + l..src + r, dst + l);
    }
    Frame {
        pixels: std::sync::Arc::new(pixels),
        ..old.clone()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A frame whose pixel (x, y) is `f(x, y)` as 0x00RRGGBB.
    pub(crate) fn frame(w: u32, h: u32, serial: u64, f: impl Fn(u32, u32) -> u32) -> Frame {
        let px: Vec<u32> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect();
        Frame::from_xrgb(w, h, serial, &px)
    }

    pub(crate) fn r(top: u32, left: u32, bottom: u32, right: u32) -> Rect {
        Rect {
            top,
            left,
            bottom,
            right,
        }
    }

    #[test]
    fn diff_regions() {
        let a = frame(8, 16, 1, |_, _| 0);
        // Rows 1 and 3: a gap of one row stays one region.
        let b = frame(8, 16, 2, |x, y| {
            u32::from((x == 2 && y == 1) || (x == 5 && y == 3))
        });
        assert!(changed_rects(&a, &a).is_empty());
        assert_eq!(changed_rects(&a, &b), vec![r(1, 2, 4, 6)]);
        // Rows 1 and 12: two regions, each as wide as its own change.
        let c = frame(8, 16, 3, |x, y| {
            u32::from((x == 2 && y == 1) || ((4..7).contains(&x) && y == 12))
        });
        assert_eq!(changed_rects(&a, &c), vec![r(1, 2, 2, 3), r(12, 4, 13, 7)]);
        // A new size is the whole frame.
        assert_eq!(
            changed_rects(&a, &frame(4, 4, 4, |_, _| 0)),
            vec![r(0, 0, 4, 4)]
        );
    }

    #[test]
    fn too_many_regions_become_one() {
        let h = (MAX_REGIONS as u32 + 1) * 4;
        let a = frame(8, h, 1, |_, _| 0);
        let b = frame(8, h, 2, |x, y| u32::from(y % 4 == 0 && x == 3));
        assert_eq!(changed_rects(&a, &b), vec![r(0, 3, h - 3, 4)]);
    }

    #[test]
    fn solid_regions() {
        let f = frame(8, 8, 1, |x, _| if x < 4 { 0x00a0b0c0 } else { x });
        assert_eq!(solid_color(&f, r(0, 0, 8, 4)), Some(0x00a0b0c0));
        assert_eq!(solid_color(&f, r(0, 0, 8, 5)), None);
        assert_eq!(
            solid_color(&f, r(0, 0, 2, 2)),
            None,
            "too small to be worth it"
        );
    }

    /// A text console: 16-row lines of distinct content, on a blank background.
    fn console(first_line: u32, w: u32, h: u32, serial: u64) -> Frame {
        frame(w, h, serial, move |x, y| {
            let line = first_line + y / 16;
            if (y % 16) < 12 && x < 40 + (line * 7) % 50 {
                0x0010_0000 | (line * 97 + x * 3 + y % 16) & 0xffff
            } else {
                0
            }
        })
    }

    #[test]
    fn a_console_scroll_is_found_and_explains_all_but_the_new_line() {
        let (w, h) = (64, 128);
        let old = console(0, w, h, 1);
        // Three lines scrolled off the top, three new ones at the bottom.
        let c = console(3, w, h, 0);
        let new = frame(w, h, 2, |x, y| {
            let px = &c.pixels[((y * w + x) * 4) as usize..][..4];
            if y >= h - 48 {
                0x00ff_00ff
            } else {
                u32::from_le_bytes([px[0], px[1], px[2], 0])
            }
        });
        // Blank rows between lines split the change into regions: look in all of them.
        let all = bounding_box(&changed_rects(&old, &new)).expect("changes");
        let scroll = find_scroll(&old, &new, all).expect("a scroll");
        assert_eq!(scroll.dy, 48);
        assert_eq!((scroll.dest.top, scroll.dest.bottom), (0, h - 48));
        let predicted = apply_scroll(&old, scroll);
        // What is left to send: the three new lines only.
        assert_eq!(changed_rects(&predicted, &new), vec![r(h - 48, 0, h, w)]);
    }

    #[test]
    fn a_downward_scroll_is_found_too_and_noise_is_not_a_scroll() {
        let (w, h) = (64, 128);
        let old = console(5, w, h, 1);
        let new = console(3, w, h, 2); // two lines scrolled back in at the top
        let all = bounding_box(&changed_rects(&old, &new)).expect("changes");
        let scroll = find_scroll(&old, &new, all).expect("a scroll");
        assert_eq!(scroll.dy, -32);
        assert_eq!(
            apply_scroll(&old, scroll).pixels[32 * 64 * 4..],
            new.pixels[32 * 64 * 4..]
        );
        let noise = frame(w, h, 3, |x, y| (x * 7919 + y * 104729) ^ (y << 8));
        assert_eq!(find_scroll(&old, &noise, Rect::full(&noise)), None);
        let small = r(0, 0, MIN_SCROLL_ROWS - 1, w);
        assert_eq!(find_scroll(&old, &new, small), None, "too small to look");
    }
}
