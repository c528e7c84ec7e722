//! How photographic an image looks: the cheap sampling estimator spice-server uses to route
//! photographs to QUIC and screen content to LZ/GLZ, and to decide whether a repeated blit
//! is video.
//!
//! # The rule (spice-server `bitmap_get_graduality_level`)
//!
//! Sample pixels along the image read as one flat sequence of pixels: start at the middle of
//! the first row, step 15 pixels (14 when 15 is a multiple of the width, i.e. widths 3, 5
//! and 15, so that samples do not all fall in one column), stop before the last row; a
//! sample that falls on the last pixel of a row moves one pixel left, and the steps go on
//! from there. Each sample `p` is compared with its right, lower and lower-right neighbours;
//! each pair scores
//!
//! * `+1` if some channel differs by at least the contrast threshold (60 on 8-bit channels, 8
//!   on the 5-bit channels of 16-bit pixels): a sharp edge, typical of text and UI;
//! * `+0.5` if the two pixels are equal: a flat area, typical of screen content;
//! * `-0.25` otherwise: a small change, typical of photographs.
//!
//! A sample whose three pairs are all equal scores 0 (but still counts). The score is the sum
//! over samples divided by three times the sample count; below -0.03 (below 0 for 16-bit)
//! the image is [`Graduality::High`], below 0.002 [`Graduality::Medium`], otherwise
//! [`Graduality::Low`]. Only red, green and blue count (not the X or alpha byte). Images one
//! pixel wide or high are Low. spice-server only ever sends High images to QUIC; its stream
//! detection counts any frame that is not Low as "gradual".
//!
//! # Deviations
//!
//! * spice-server walks each chunk of the bitmap with the *width* as row pitch; we use the
//!   real stride (identical for packed bitmaps, which is all spice-server's callers pass
//!   whenever the choice matters).
//! * An image in which every sample square is all one colour scores exactly 0, which
//!   spice-server calls Medium: a solid frame would count as video and a solid bitmap would
//!   not be told apart from mild gradients. We call it Low: a picture with no variation at
//!   all at the sampled points is not photographic.
//!
//! The estimate reads about one pixel in 15 (times four neighbours), far below the cost of
//! encoding the image.

use crate::image::{ImageRef, PixelFormat};

/// How gradual (photographic) an image is, as spice-server grades it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Graduality {
    /// Sharp edges and flat areas: text, UI. Best for LZ/GLZ.
    Low,
    /// Mostly flat with smooth parts, e.g. scaled video. Counts as video for stream detection.
    Medium,
    /// Smooth changes everywhere: a photograph. Best for QUIC.
    High,
}

/// Pixel stride between samples, as spice-server's `SAMPLE_JUMP`.
const SAMPLE_JUMP: usize = 15;

/// Pair scores, in quarters so that sums are exact integers (spice-server's doubles 0.5, 1.0
/// and -0.25 sum exactly too, so the final comparisons agree bit for bit).
const SAME: i64 = 2;
const CONTRAST: i64 = 4;
const NOT_CONTRAST: i64 = -1;

/// Classifies `image`; see the module documentation for the rule.
pub fn estimate(image: &ImageRef<'_>) -> Graduality {
    let (width, height) = (image.width() as usize, image.height() as usize);
    if width <= 1 || height <= 1 {
        return Graduality::Low;
    }
    let (sum, samples, informative) = match image.format() {
        PixelFormat::Rgb32 | PixelFormat::Rgba => sample::<8>(image, 60, |row, x| {
            let p = row.get(x * 4..)?.first_chunk::<8>()?;
            let key = |i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], 0]);
            Some((key(0), key(4)))
        }),
        PixelFormat::Rgb24 => sample::<8>(image, 60, |row, x| {
            let p = row.get(x * 3..)?.first_chunk::<6>()?;
            let key = |i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], 0]);
            Some((key(0), key(3)))
        }),
        PixelFormat::Rgb16 => sample::<5>(image, 8, |row, x| {
            let p = row.get(x * 2..)?.first_chunk::<4>()?;
            let key = |i: usize| u32::from(u16::from_le_bytes([p[i], p[i + 1]]) & 0x7fff);
            Some((key(0), key(2)))
        }),
    };
    if !informative {
        return Graduality::Low;
    }
    // The same arithmetic as spice-server: score = sum / (3 * samples), in doubles.
    let score = (sum as f64 * 0.25) / (samples * 3) as f64;
    let high = if image.format() == PixelFormat::Rgb16 {
        0.0
    } else {
        -0.03
    };
    if score < high {
        Graduality::High
    } else if score < 0.002 {
        Graduality::Medium
    } else {
        Graduality::Low
    }
}

/// Walks the sample positions; returns (sum of scores in quarters, number of samples,
/// whether any sample square held two different colours).
///
/// Pixels are compared as keys holding red, green and blue in `BITS`-bit fields (blue lowest)
/// and nothing else, so equal keys are equal colours; `pixels(row, x)` returns the keys of
/// pixel `x` of a row and of its right neighbour.
fn sample<const BITS: u32>(
    image: &ImageRef<'_>,
    contrast: i32,
    pixels: impl Fn(&[u8], usize) -> Option<(u32, u32)>,
) -> (i64, u64, bool) {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let jump = if !SAMPLE_JUMP.is_multiple_of(width) {
        SAMPLE_JUMP
    } else {
        SAMPLE_JUMP - 1
    };
    let mask = (1u32 << BITS) - 1;
    // Equal, a sharp edge in some channel, or a small change; written without early exits so
    // that it compiles to selects rather than unpredictable branches on noisy pictures.
    let pair = |a: u32, b: u32| -> i64 {
        let channel = |k: u32, c: u32| ((k >> (c * BITS)) & mask) as i32;
        let d0 = (channel(a, 0) - channel(b, 0)).abs();
        let d1 = (channel(a, 1) - channel(b, 1)).abs();
        let d2 = (channel(a, 2) - channel(b, 2)).abs();
        let d = d0.max(d1).max(d2);
        let small = if d == 0 { SAME } else { NOT_CONTRAST };
        if d >= contrast { CONTRAST } else { small }
    };

    let (mut sum, mut samples, mut informative) = (0i64, 0u64, false);
    // (x, y) of the current sample in the flat pixel sequence; the walk stops at the last row.
    let (mut x, mut y) = (width / 2, 0usize);
    while y < height - 1 {
        let (top, bottom) = (image.row(y as u32), image.row(y as u32 + 1));
        while x < width {
            if x == width - 1 {
                x -= 1;
            }
            // Always present: x + 1 < width, so both pixels lie within each row.
            if let (Some((p, right)), Some((below, diagonal))) = (pixels(top, x), pixels(bottom, x))
                && (p != right || p != below || p != diagonal)
            {
                sum += pair(p, right) + pair(p, below) + pair(p, diagonal);
                informative = true;
            }
            samples += 1;
            x += jump;
        }
        y += x / width;
        x %= width;
    }
    (sum, samples, informative)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus;

    fn rgb32(w: u32, h: u32, data: &[u8]) -> Graduality {
        estimate(&ImageRef::packed(w, h, PixelFormat::Rgb32, data).unwrap())
    }

    /// A literal transcription of spice-server's walk over a packed Rgb32 image (flat
    /// pointer arithmetic, double accumulation), to check that our incremental walk visits the
    /// same pixels and scores the same.
    /// `px(i)` gives the (r, g, b) of flat pixel `i`; `th` is the contrast threshold.
    fn reference_score(w: usize, h: usize, th: i32, px: impl Fn(usize) -> [i32; 3]) -> (f64, bool) {
        let cmp = |a: [i32; 3], b: [i32; 3]| -> usize {
            let mut any = 0;
            for c in 0..3 {
                let d = a[c] - b[c];
                if d <= -th || d >= th {
                    return 1;
                }
                any |= d;
            }
            if any == 0 { 0 } else { 2 }
        };
        let weights = [0.5, 1.0, -0.25];
        let jump = if 15 % w != 0 { 15 } else { 14 };
        let (mut cur, last_line) = (w / 2, (h - 1) * w);
        let (mut total, mut n, mut informative) = (0.0f64, 0usize, false);
        while cur < last_line {
            if (cur + 1) % w == 0 {
                cur -= 1;
            }
            let (a, b, c) = (
                cmp(px(cur), px(cur + 1)),
                cmp(px(cur), px(cur + w)),
                cmp(px(cur), px(cur + w + 1)),
            );
            if a | b | c != 0 {
                total += weights[a] + weights[b] + weights[c];
                informative = true;
            }
            n += 1;
            cur += jump;
        }
        (total / (n * 3) as f64, informative)
    }

    fn classify(score: f64, high: f64) -> Graduality {
        if score < high {
            Graduality::High
        } else if score < 0.002 {
            Graduality::Medium
        } else {
            Graduality::Low
        }
    }

    #[test]
    fn photos_are_gradual() {
        for (w, h) in [(64, 64), (320, 240), (333, 97)] {
            let g = rgb32(w, h, &corpus::photo(w, h));
            assert_eq!(g, Graduality::High, "{w}x{h}");
        }
    }

    #[test]
    fn screen_content_is_not() {
        for (w, h) in [(320, 240), (640, 480), (333, 97)] {
            assert_eq!(
                rgb32(w, h, &corpus::text(w, h)),
                Graduality::Low,
                "text {w}x{h}"
            );
            assert_eq!(
                rgb32(w, h, &corpus::ui(w, h)),
                Graduality::Low,
                "ui {w}x{h}"
            );
        }
        let solid = vec![0x40u8; 200 * 100 * 4];
        assert_eq!(rgb32(200, 100, &solid), Graduality::Low);
    }

    #[test]
    fn matches_the_reference_walk() {
        for (w, h) in [
            (2, 2),
            (3, 9),
            (5, 5),
            (15, 4),
            (16, 16),
            (30, 7),
            (64, 64),
            (333, 97),
        ] {
            for data in [corpus::photo(w, h), corpus::text(w, h), corpus::ui(w, h)] {
                let (w_, h_) = (w as usize, h as usize);
                let rgb = |i: usize| [2, 1, 0].map(|c| i32::from(data[i * 4 + c]));
                let (score, informative) = reference_score(w_, h_, 60, rgb);
                // Our one deviation: nothing varies at the samples.
                let expected = if informative {
                    classify(score, -0.03)
                } else {
                    Graduality::Low
                };
                assert_eq!(rgb32(w, h, &data), expected, "{w}x{h} score {score}");

                // The same picture as 16-bit x1r5g5b5, with garbage in the top bit.
                let p16: Vec<u8> = data
                    .chunks_exact(4)
                    .enumerate()
                    .flat_map(|(i, p)| {
                        let [b, g, r] = [p[0] >> 3, p[1] >> 3, p[2] >> 3].map(u16::from);
                        ((r << 10) | (g << 5) | b | ((i as u16 & 1) << 15)).to_le_bytes()
                    })
                    .collect();
                let rgb16 = |i: usize| {
                    let v = i32::from(u16::from_le_bytes([p16[i * 2], p16[i * 2 + 1]]));
                    [(v >> 10) & 31, (v >> 5) & 31, v & 31]
                };
                let (score, informative) = reference_score(w_, h_, 8, rgb16);
                let expected = if informative {
                    classify(score, 0.0)
                } else {
                    Graduality::Low
                };
                let img = ImageRef::packed(w, h, PixelFormat::Rgb16, &p16).unwrap();
                assert_eq!(estimate(&img), expected, "16-bit {w}x{h} score {score}");
            }
        }
    }

    #[test]
    fn thin_images_are_low() {
        let p = corpus::photo(100, 1);
        assert_eq!(rgb32(100, 1, &p), Graduality::Low);
        assert_eq!(rgb32(1, 100, &corpus::photo(1, 100)), Graduality::Low);
    }

    #[test]
    fn every_format_and_stride() {
        let (w, h) = (97u32, 61u32);
        let photo = corpus::photo(w, h);
        // Rgb24 and Rgb16 versions of the photo, with padded strides.
        let stride24 = w as usize * 3 + 5;
        let stride16 = w as usize * 2 + 6;
        let mut p24 = vec![0u8; stride24 * h as usize];
        let mut p16 = vec![0u8; stride16 * h as usize];
        for (i, px) in photo.chunks_exact(4).enumerate() {
            let (x, y) = (i % w as usize, i / w as usize);
            p24[y * stride24 + x * 3..][..3].copy_from_slice(&px[..3]);
            let v = (u16::from(px[2] >> 3) << 10)
                | (u16::from(px[1] >> 3) << 5)
                | u16::from(px[0] >> 3);
            p16[y * stride16 + x * 2..][..2].copy_from_slice(&v.to_le_bytes());
        }
        let g24 = estimate(&ImageRef::new(w, h, stride24, PixelFormat::Rgb24, &p24).unwrap());
        assert_eq!(g24, Graduality::High);
        let g16 = estimate(&ImageRef::new(w, h, stride16, PixelFormat::Rgb16, &p16).unwrap());
        assert_ne!(g16, Graduality::Low);
        let rgba = estimate(&ImageRef::packed(w, h, PixelFormat::Rgba, &photo).unwrap());
        assert_eq!(rgba, Graduality::High);
        // The X byte does not count.
        let mut noisy_x = corpus::text(w, h);
        noisy_x
            .iter_mut()
            .skip(3)
            .step_by(4)
            .enumerate()
            .for_each(|(i, b)| *b = i as u8);
        assert_eq!(rgb32(w, h, &noisy_x), Graduality::Low);
    }
}
