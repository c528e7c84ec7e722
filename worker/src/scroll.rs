//! Finding scrolls in what the guest copies onto the primary, so that a client can be told
//! "move what you have" instead of being sent the whole picture again.
//!
//! Linux's fbdev emulation scrolls the text console by redrawing it in a shadow buffer and
//! sending the damaged area, usually the whole screen, as one plain copy of a bitmap: a
//! 1024x768 picture per scrolled line, of which all but one text line is already on the
//! client, only higher up. spice-server sends that picture whole. We keep a signature of
//! each row of the last plain copy onto an area; when the next copy onto the same area has
//! most of its rows at a common vertical offset from the last one, the publisher checks the
//! rows against the surface and sends a COPY_BITS plus the rows that really are new.
//!
//! The signatures only propose an offset; nothing is sent on their word. The publisher
//! compares the rows it relies on with the surface's pixels before the copy is drawn.

use saffron_display::Rect;

/// Smallest copy looked at: scrolling needs rows to move, and small copies cost little anyway.
const MIN_WIDTH: u32 = 64;
const MIN_HEIGHT: u32 = 32;
/// Fewest rows that must agree on one offset, and the share of the copy's rows they must be:
/// the offset of a scroll is confirmed by many distinct text rows.
const MIN_VOTES: usize = 4;
const MIN_VOTE_SHARE: usize = 8;

/// Areas whose last copy is remembered: the console's whole screen, and a few others that
/// smaller copies (a blinking cursor, an echoed line) interleave with it.
const AREAS: usize = 4;

/// The row signatures of the last plain copy onto each of the last few areas of the primary.
#[derive(Debug, Default)]
pub struct ScrollDetector {
    /// Least recently copied first.
    last: Vec<(Rect, Vec<u64>)>,
}

/// A row's signature: a hash of all of its pixels, X bytes ignored. Every pixel counts: the
/// lines of a console differ in a few characters (line numbers), so a sample of the row
/// would make most of them look alike. Four independent lanes keep the multiplies from
/// waiting on each other; a 1024-pixel row costs about half a microsecond.
fn signature(row: &[u8]) -> u64 {
    const MASK: u64 = 0x00ff_ffff_00ff_ffff;
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut lanes = [
        0x243f_6a88_85a3_08d3u64,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    ];
    let mut blocks = row.chunks_exact(32);
    for block in &mut blocks {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            *lane = (*lane ^ (u64::from_le_bytes(w) & MASK))
                .wrapping_mul(K)
                .rotate_left(29);
        }
    }
    for (i, px) in blocks.remainder().chunks_exact(4).enumerate() {
        let v = u64::from(u32::from_le_bytes([px[0], px[1], px[2], 0]));
        lanes[i % 4] = (lanes[i % 4] ^ v).wrapping_mul(K).rotate_left(29);
    }
    lanes.iter().fold(row.len() as u64, |h, l| {
        (h ^ l).wrapping_mul(K).rotate_left(31)
    })
}

impl ScrollDetector {
    /// Records a plain copy of `height` rows of `width` 32-bit pixels onto `area`, row `y`
    /// being `row(y)`, and returns by how many rows its picture is the previous copy's onto the
    /// same area moved up (positive) or down (negative), when enough rows agree on one offset.
    pub fn observe<'a>(&mut self, area: Rect, row: impl Fn(usize) -> &'a [u8]) -> Option<i32> {
        if area.width() < MIN_WIDTH || area.height() < MIN_HEIGHT {
            return None;
        }
        let rows = area.height() as usize;
        let new: Vec<u64> = (0..rows).map(|y| signature(row(y))).collect();
        let previous = self
            .last
            .iter()
            .position(|(a, _)| *a == area)
            .map(|i| self.last.remove(i).1);
        if self.last.len() >= AREAS {
            self.last.remove(0);
        }
        self.last.push((area, new));
        let old = previous?;
        let (_, new) = self.last.last()?;
        // Where each signature of the old copy was, when only one row had it (blank rows and
        // repeated lines say nothing about the offset).
        let mut unique: std::collections::HashMap<u64, Option<usize>> =
            std::collections::HashMap::with_capacity(rows);
        for (y, s) in old.iter().enumerate() {
            unique
                .entry(*s)
                .and_modify(|at| *at = None)
                .or_insert(Some(y));
        }
        let mut votes: std::collections::HashMap<i32, usize> = std::collections::HashMap::new();
        for (y, s) in new.iter().enumerate() {
            if let Some(Some(from)) = unique.get(s) {
                let up = *from as i64 - y as i64;
                if up != 0 {
                    *votes.entry(up as i32).or_insert(0) += 1;
                }
            }
        }
        let (up, n) = votes.into_iter().max_by_key(|&(up, n)| (n, -up.abs()))?;
        (n >= MIN_VOTES && n * MIN_VOTE_SHARE >= rows).then_some(up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w x h` picture of "text": row y holds the pattern of line y / 16 and row y % 16.
    fn text(w: usize, h: usize, first_line: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(w * h * 4);
        for y in 0..h {
            let line = first_line + y / 16;
            for x in 0..w {
                let v = ((line * 7919 + (y % 16) * 131 + x * 17) % 251) as u8;
                out.extend_from_slice(&[v, v ^ 0x55, v.wrapping_mul(3), 0xff]);
            }
        }
        out
    }

    fn rows<'a>(img: &'a [u8], w: usize) -> impl Fn(usize) -> &'a [u8] {
        move |y| &img[y * w * 4..(y + 1) * w * 4]
    }

    #[test]
    fn signatures_see_every_pixel_but_not_x_bytes() {
        let row: Vec<u8> = (0..1027u32 * 4).map(|i| (i % 251) as u8).collect();
        let base = signature(&row);
        for at in [0, 517 * 4, 1024 * 4, 1026 * 4 + 2] {
            let mut other = row.clone();
            other[at] ^= 1;
            assert_ne!(signature(&other), base, "byte {at}");
        }
        let mut x_only = row.clone();
        x_only[3] ^= 0xff;
        x_only[1026 * 4 + 3] ^= 0xff;
        assert_eq!(signature(&x_only), base);
    }

    #[test]
    fn a_scrolled_copy_onto_the_same_area_gives_its_offset() {
        let (w, h) = (256, 128);
        let area = Rect::of_size(w as u32, h as u32);
        let mut d = ScrollDetector::default();
        let first = text(w, h, 0);
        assert_eq!(
            d.observe(area, rows(&first, w)),
            None,
            "nothing to compare with"
        );
        // Two text lines further: the picture moved up by 32 rows.
        let second = text(w, h, 2);
        assert_eq!(d.observe(area, rows(&second, w)), Some(32));
        // Back: moved down by 32.
        assert_eq!(d.observe(area, rows(&first, w)), Some(-32));
        // The same picture again: no move.
        assert_eq!(d.observe(area, rows(&first, w)), None);
    }

    #[test]
    fn other_areas_small_copies_and_unrelated_pictures_give_nothing() {
        let (w, h) = (256, 128);
        let mut d = ScrollDetector::default();
        let a = text(w, h, 0);
        let b = text(w, h, 2);
        d.observe(Rect::of_size(w as u32, h as u32), rows(&a, w));
        let moved = Rect::new(1, 0, w as u32 + 1, h as u32).unwrap();
        assert_eq!(d.observe(moved, rows(&b, w)), None, "another area");
        // Too small to bother.
        let small = Rect::of_size(32, 32);
        d.observe(small, rows(&a, 32));
        assert_eq!(d.observe(small, rows(&b, 32)), None);
        // The first area is still remembered across those, until enough others come.
        let whole = Rect::of_size(w as u32, h as u32);
        assert_eq!(d.observe(whole, rows(&b, w)), Some(32));
        for left in 1..=AREAS as u32 {
            d.observe(
                Rect::new(left, 0, w as u32, h as u32).unwrap(),
                rows(&a, w - 1),
            );
        }
        assert_eq!(d.observe(whole, rows(&a, w)), None, "forgotten");
        // Noise after text.
        let area = Rect::of_size(w as u32, h as u32);
        d.observe(area, rows(&a, w));
        let noise: Vec<u8> = (0..w * h * 4)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
            .collect();
        assert_eq!(d.observe(area, rows(&noise, w)), None);
        // A solid picture after a solid picture: every row alike, no offset.
        let solid = vec![9u8; w * h * 4];
        d.observe(area, rows(&solid, w));
        assert_eq!(d.observe(area, rows(&solid, w)), None);
    }
}
