//! Test images, pixel formats and the screen hash shared by `fbfill`, `fbhash` and `kms`.
//!
//! The host compares the guest's idea of the screen with a screendump that it turns into packed
//! 8-bit R,G,B triplets, so that is the canonical form here too: an [`Image`] is row-major RGB
//! bytes, and [`FrameHasher`] turns rows of any supported memory layout into the same bytes
//! before hashing. The patterns are fixed (the host may regenerate them) and every one of them
//! tells red from blue, so a swapped channel order cannot go unnoticed.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::pattern::Xorshift32;

/// Largest side accepted for a generated image; far above any mode the tests use, it keeps a
/// typo from allocating gigabytes in a 512 MiB guest.
pub const MAX_SIDE: u32 = 16384;

/// One colour channel of a pixel: `length` bits starting at bit `offset` of the little-endian
/// pixel word (the fbdev `fb_bitfield` convention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    /// Bit position of the channel's least significant bit.
    pub offset: u32,
    /// Width of the channel in bits.
    pub length: u32,
}

/// How pixels are laid out in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    /// Bytes per pixel.
    pub bytes: usize,
    /// Red channel.
    pub red: Channel,
    /// Green channel.
    pub green: Channel,
    /// Blue channel.
    pub blue: Channel,
}

impl PixelFormat {
    /// DRM's XRGB8888 (fbdev 32 bpp truecolor): bytes B, G, R, X in memory.
    pub const XRGB8888: PixelFormat = PixelFormat {
        bytes: 4,
        red: Channel {
            offset: 16,
            length: 8,
        },
        green: Channel {
            offset: 8,
            length: 8,
        },
        blue: Channel {
            offset: 0,
            length: 8,
        },
    };

    /// Byte index of each of R, G and B inside a pixel, if every channel is a whole byte.
    ///
    /// Only such formats can be converted to RGB without rounding, and rounding rules are
    /// exactly what the host and guest could disagree on; other formats are refused.
    pub fn rgb_byte_indices(&self) -> Result<[usize; 3]> {
        let index = |c: Channel, name: &str| {
            let byte = usize::try_from(c.offset / 8).unwrap_or(usize::MAX);
            if c.length == 8 && c.offset.is_multiple_of(8) && byte < self.bytes {
                Ok(byte)
            } else {
                Err(Error::Check(format!(
                    "{name} channel at bit {} with {} bits is not a whole byte of a \
                     {}-byte pixel",
                    c.offset, c.length, self.bytes
                )))
            }
        };
        Ok([
            index(self.red, "red")?,
            index(self.green, "green")?,
            index(self.blue, "blue")?,
        ])
    }
}

/// What `fbhash` and friends feed to SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFormat {
    /// Packed R,G,B bytes per visible pixel: the form the host computes from its screendump.
    Rgb,
    /// The visible bytes of each row exactly as in memory (padding skipped, X bytes kept).
    Raw,
}

impl HashFormat {
    /// Parses `rgb` or `raw`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "rgb" => Ok(HashFormat::Rgb),
            "raw" => Ok(HashFormat::Raw),
            _ => Err(Error::Usage(format!(
                "--format must be rgb or raw, not {s:?}"
            ))),
        }
    }

    /// The name printed in `format=`.
    pub fn name(self) -> &'static str {
        match self {
            HashFormat::Rgb => "rgb",
            HashFormat::Raw => "raw",
        }
    }
}

/// Hashes a picture row by row, converting each row to the chosen [`HashFormat`].
pub struct FrameHasher {
    width: usize,
    bytes: usize,
    rgb: Option<[usize; 3]>,
    sha: Sha256,
    scratch: Vec<u8>,
}

impl FrameHasher {
    /// A hasher for rows of `width` pixels in `pixel` layout.
    pub fn new(width: usize, pixel: PixelFormat, format: HashFormat) -> Result<Self> {
        let rgb = match format {
            HashFormat::Rgb => Some(pixel.rgb_byte_indices()?),
            HashFormat::Raw => None,
        };
        Ok(FrameHasher {
            width,
            bytes: pixel.bytes,
            rgb,
            sha: Sha256::new(),
            scratch: Vec::with_capacity(width * 3),
        })
    }

    /// Bytes of one visible row in memory (what [`FrameHasher::update_row`] expects).
    pub fn row_len(&self) -> usize {
        self.width * self.bytes
    }

    /// Adds one row of exactly [`FrameHasher::row_len`] bytes.
    pub fn update_row(&mut self, row: &[u8]) {
        debug_assert_eq!(row.len(), self.row_len());
        match self.rgb {
            None => self.sha.update(row),
            Some([r, g, b]) => {
                self.scratch.clear();
                for px in row.chunks_exact(self.bytes) {
                    self.scratch.extend_from_slice(&[px[r], px[g], px[b]]);
                }
                self.sha.update(&self.scratch);
            }
        }
    }

    /// Lower-case hex digest of everything added.
    pub fn finish(self) -> String {
        hex(&self.sha.finalize())
    }
}

/// Lower-case hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            // Writing to a String cannot fail.
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// An RGB picture: `width * height` packed R,G,B triplets, row after row, no padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// The pixels.
    pub rgb: Vec<u8>,
}

/// An axis-aligned rectangle of pixels, `[x, x + w) x [y, y + h)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left column.
    pub x: usize,
    /// Top row.
    pub y: usize,
    /// Width in pixels.
    pub w: usize,
    /// Height in pixels.
    pub h: usize,
}

impl Image {
    /// SHA-256 of the packed RGB bytes: equal to the `rgb` [`FrameHasher`] digest of the same
    /// picture in any memory layout.
    pub fn sha256(&self) -> String {
        hex(&Sha256::digest(&self.rgb))
    }

    /// The RGB bytes of row `y`.
    pub fn row(&self, y: usize) -> &[u8] {
        &self.rgb[y * self.width * 3..(y + 1) * self.width * 3]
    }

    /// The part of the picture inside `rect` (clipped to the image).
    pub fn crop(&self, rect: Rect) -> Image {
        let x_end = (rect.x + rect.w).min(self.width);
        let y_end = (rect.y + rect.h).min(self.height);
        let (x, y) = (rect.x.min(x_end), rect.y.min(y_end));
        let mut rgb = Vec::with_capacity((x_end - x) * (y_end - y) * 3);
        for row in y..y_end {
            rgb.extend_from_slice(&self.row(row)[x * 3..x_end * 3]);
        }
        Image {
            width: x_end - x,
            height: y_end - y,
            rgb,
        }
    }

    /// Paints `rect` (clipped to the image) with one colour.
    pub fn fill_rect(&mut self, rect: Rect, color: [u8; 3]) {
        let x_end = (rect.x + rect.w).min(self.width);
        let y_end = (rect.y + rect.h).min(self.height);
        for y in rect.y.min(y_end)..y_end {
            let start = (y * self.width + rect.x.min(x_end)) * 3;
            let end = (y * self.width + x_end) * 3;
            for px in self.rgb[start..end].chunks_exact_mut(3) {
                px.copy_from_slice(&color);
            }
        }
    }

    /// Copies `src_rect` of `src` (clipped to `src`) to (`x`, `y`) of this picture (clipped to
    /// it): the background restore and the sprite drawing of `kms --motion photo`.
    pub fn paste(&mut self, src: &Image, src_rect: Rect, x: usize, y: usize) {
        let w = (src_rect.x + src_rect.w)
            .min(src.width)
            .saturating_sub(src_rect.x)
            .min(self.width.saturating_sub(x));
        let h = (src_rect.y + src_rect.h)
            .min(src.height)
            .saturating_sub(src_rect.y)
            .min(self.height.saturating_sub(y));
        for row in 0..h {
            let from = ((src_rect.y + row) * src.width + src_rect.x) * 3;
            let to = ((y + row) * self.width + x) * 3;
            self.rgb[to..to + w * 3].copy_from_slice(&src.rgb[from..from + w * 3]);
        }
    }

    /// Writes pixels `x_range` of row `y` into `out` in `pixel` layout; bytes that belong to no
    /// channel (the X of XRGB) are zero, as the kernel's own fbcon leaves them.
    pub fn encode_span(&self, y: usize, x: usize, w: usize, pixel: PixelFormat, out: &mut Vec<u8>) {
        out.clear();
        out.resize(w * pixel.bytes, 0);
        let [r, g, b] = pixel
            .rgb_byte_indices()
            .expect("encode_span needs a byte-aligned RGB format");
        let src = &self.row(y)[x * 3..(x + w) * 3];
        for (dst, rgb) in out.chunks_exact_mut(pixel.bytes).zip(src.chunks_exact(3)) {
            dst[r] = rgb[0];
            dst[g] = rgb[1];
            dst[b] = rgb[2];
        }
    }
}

/// A deterministic "photograph" of `width x height` (each at least 1): a sky that brightens
/// towards a rounded hill, a sun with a soft glow, a ground shaded from the horizon down, and
/// a little noise (at most 3 either way per channel, xorshift32 from `seed`) over it all.
///
/// Integer arithmetic only, so every build draws the same pixels. Smooth gradients with grain
/// are what a Spice server sees of photos and video: the pictures its image compressors
/// (QUIC, LZ, GLZ) and stream detection are tuned for, unlike the flat test patterns.
pub fn photo(width: usize, height: usize, seed: u32) -> Image {
    let (width, height) = (width.max(1), height.max(1));
    let (w, h) = (width as i64, height as i64);
    let mut rng = Xorshift32::new(seed);
    let mut rgb = Vec::with_capacity(width * height * 3);
    // The sun: centre and radius; the glow reaches three radii.
    let (sx, sy, sr) = (w * 7 / 10, h * 3 / 10, (w.min(h) / 11).max(1));
    let glow = 9 * sr * sr;
    for y in 0..h {
        for x in 0..w {
            // The horizon: a dome, highest (at 45 % of the height) in the middle.
            let u = 2 * x - w; // -w..w
            let horizon = h * 45 / 100 + h * 15 / 100 * u * u / (w * w);
            let mut px = if y < horizon {
                // Sky: deep blue at the top to pale near the horizon.
                let t = y * 256 / horizon.max(1); // 0..256
                let mut c = [40 + t * 150 / 256, 80 + t * 130 / 256, 170 + t * 70 / 256];
                let d2 = (x - sx) * (x - sx) + (y - sy) * (y - sy);
                if d2 < sr * sr {
                    c = [255, 244, 200];
                } else if d2 < glow {
                    // Warm glow, fading with the square of the distance.
                    let g = (glow - d2) * 256 / glow; // 0..256
                    c[0] += (255 - c[0]) * g / 256;
                    c[1] += (230 - c[1]).max(0) * g / 300;
                    c[2] -= c[2] * g / 700;
                }
                c
            } else {
                // Ground: sunlit green at the horizon to dark earth at the bottom, a little
                // lighter towards the sun's side.
                let t = (y - horizon) * 256 / (h - horizon).max(1); // 0..256
                let side = x * 40 / w; // 0..40
                [
                    70 + side - t * 30 / 256,
                    140 + side - t * 85 / 256,
                    50 - t * 25 / 256,
                ]
            };
            let n = rng.next_word();
            for (k, c) in px.iter_mut().enumerate() {
                let grain = i64::from((n >> (8 * k)) & 0xff) % 7 - 3;
                *c = (*c + grain).clamp(0, 255);
            }
            rgb.extend(px.iter().map(|&c| c as u8));
        }
    }
    Image { width, height, rgb }
}

/// The full-screen test pictures of `fbfill` and `kms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Every pixel the same colour.
    Solid([u8; 3]),
    /// Left to right: R = 0..255, G = 0x80, B = 255 - R.
    HGrad,
    /// Top to bottom: G = 0..255, R = 255 - G, B = 0x40.
    VGrad,
    /// One xorshift32 word per pixel in row-major order (the `bar-rw` generator and seed rule);
    /// R, G, B are bits 16..24, 8..16 and 0..8 of the word.
    Random(u32),
    /// Squares of N pixels, [`CHECKER_EVEN`] where (x / N + y / N) is even, else
    /// [`CHECKER_ODD`].
    Checker(u32),
}

/// Checker colour of the square at the top-left corner.
pub const CHECKER_EVEN: [u8; 3] = [0xff, 0xcc, 0x00];
/// The other checker colour.
pub const CHECKER_ODD: [u8; 3] = [0x00, 0x33, 0x99];

impl Pattern {
    /// Parses `solid:RRGGBB`, `hgrad`, `vgrad`, `random:SEED` or `checker:N`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::Usage(format!("--pattern {s:?}: {why}"));
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        match (kind, arg) {
            ("solid", Some(hexrgb)) => {
                if hexrgb.len() != 6 || !hexrgb.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("the colour is six hex digits RRGGBB"));
                }
                let v = u32::from_str_radix(hexrgb, 16).map_err(|_| bad("bad colour"))?;
                let [_, r, g, b] = v.to_be_bytes();
                Ok(Pattern::Solid([r, g, b]))
            }
            ("hgrad", None) => Ok(Pattern::HGrad),
            ("vgrad", None) => Ok(Pattern::VGrad),
            ("random", Some(seed)) => crate::args::parse_u64(seed)
                .and_then(|v| u32::try_from(v).ok())
                .map(Pattern::Random)
                .ok_or_else(|| bad("the seed is a 32-bit number")),
            ("checker", Some(n)) => crate::args::parse_u64(n)
                .and_then(|v| u32::try_from(v).ok())
                .filter(|&v| v > 0)
                .map(Pattern::Checker)
                .ok_or_else(|| bad("the square size is a positive number")),
            _ => Err(bad(
                "expected solid:RRGGBB, hgrad, vgrad, random:SEED or checker:N",
            )),
        }
    }

    /// Draws the pattern at `width x height`.
    pub fn render(&self, width: u32, height: u32) -> Result<Image> {
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return Err(Error::Check(format!(
                "image size {width}x{height} is outside 1..={MAX_SIDE}"
            )));
        }
        let (w, h) = (width as usize, height as usize);
        let mut rgb = Vec::with_capacity(w * h * 3);
        // Gradient steps: 0 at the first column/row, 255 at the last.
        let ramp = |i: usize, n: usize| if n > 1 { (i * 255 / (n - 1)) as u8 } else { 0 };
        let mut rng = match self {
            Pattern::Random(seed) => Some(Xorshift32::new(*seed)),
            _ => None,
        };
        for y in 0..h {
            for x in 0..w {
                let px = match self {
                    Pattern::Solid(c) => *c,
                    Pattern::HGrad => {
                        let r = ramp(x, w);
                        [r, 0x80, 255 - r]
                    }
                    Pattern::VGrad => {
                        let g = ramp(y, h);
                        [255 - g, g, 0x40]
                    }
                    Pattern::Random(_) => {
                        let word = rng.as_mut().map_or(0, Xorshift32::next_word);
                        let [_, r, g, b] = word.to_be_bytes();
                        [r, g, b]
                    }
                    Pattern::Checker(n) => {
                        let n = *n as usize;
                        if (x / n + y / n).is_multiple_of(2) {
                            CHECKER_EVEN
                        } else {
                            CHECKER_ODD
                        }
                    }
                };
                rgb.extend_from_slice(&px);
            }
        }
        Ok(Image {
            width: w,
            height: h,
            rgb,
        })
    }
}

impl fmt::Display for Pattern {
    /// The canonical spelling, as printed in `pattern=`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Solid([r, g, b]) => write!(f, "solid:{r:02x}{g:02x}{b:02x}"),
            Pattern::HGrad => write!(f, "hgrad"),
            Pattern::VGrad => write!(f, "vgrad"),
            Pattern::Random(seed) => write!(f, "random:{seed}"),
            Pattern::Checker(n) => write!(f, "checker:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_hex(data: &[u8]) -> String {
        hex(&Sha256::digest(data))
    }

    #[test]
    fn parse_and_display_round_trip() {
        for s in [
            "solid:ff0000",
            "solid:0a0B0c",
            "hgrad",
            "vgrad",
            "random:1",
            "random:0x5aff0001",
            "checker:8",
        ] {
            let p = Pattern::parse(s).unwrap();
            assert_eq!(Pattern::parse(&p.to_string()).unwrap(), p, "{s}");
        }
        assert_eq!(
            Pattern::parse("solid:0a0B0c").unwrap(),
            Pattern::Solid([0x0a, 0x0b, 0x0c])
        );
        assert_eq!(
            Pattern::parse("solid:0a0B0c").unwrap().to_string(),
            "solid:0a0b0c"
        );
        assert_eq!(
            Pattern::parse("random:0x5aff0001").unwrap().to_string(),
            "random:1526661121"
        );
        for bad in [
            "",
            "solid",
            "solid:",
            "solid:fff",
            "solid:ff00001",
            "solid:gg0000",
            "hgrad:1",
            "random",
            "random:x",
            "random:0x100000000",
            "checker:0",
            "checker",
            "plaid",
        ] {
            assert!(
                matches!(Pattern::parse(bad), Err(Error::Usage(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn patterns_have_the_documented_pixels() {
        let img = Pattern::Solid([1, 2, 3]).render(2, 2).unwrap();
        assert_eq!(img.rgb, [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]);

        let img = Pattern::HGrad.render(3, 2).unwrap();
        assert_eq!(img.row(0), [0, 0x80, 255, 127, 0x80, 128, 255, 0x80, 0]);
        assert_eq!(img.row(1), img.row(0));

        let img = Pattern::VGrad.render(1, 3).unwrap();
        assert_eq!(img.rgb, [255, 0, 0x40, 128, 127, 0x40, 0, 255, 0x40]);

        // Seed 1's first words are 0x00042021 and 0x04080601 (see pattern.rs).
        let img = Pattern::Random(1).render(2, 1).unwrap();
        assert_eq!(img.rgb, [0x04, 0x20, 0x21, 0x08, 0x06, 0x01]);

        let img = Pattern::Checker(2).render(4, 3).unwrap();
        let (e, o) = (CHECKER_EVEN, CHECKER_ODD);
        let rows: Vec<Vec<[u8; 3]>> = (0..3)
            .map(|y| img.row(y).chunks(3).map(|c| [c[0], c[1], c[2]]).collect())
            .collect();
        assert_eq!(rows, [vec![e, e, o, o], vec![e, e, o, o], vec![o, o, e, e]]);

        // A one-pixel-wide gradient does not divide by zero.
        assert_eq!(Pattern::HGrad.render(1, 1).unwrap().rgb, [0, 0x80, 255]);
        assert!(Pattern::HGrad.render(0, 1).is_err());
        assert!(Pattern::HGrad.render(1, MAX_SIDE + 1).is_err());
    }

    /// Reference digests at the guest's default mode (also computed by an independent Python
    /// implementation of the pattern definitions): the host may use them to check a screendump
    /// without trusting the guest's own report.
    #[test]
    fn digests_at_1024x768() {
        let digest = |p: &str| {
            Pattern::parse(p)
                .unwrap()
                .render(1024, 768)
                .unwrap()
                .sha256()
        };
        let red = [0xffu8, 0, 0].repeat(1024 * 768);
        assert_eq!(digest("solid:ff0000"), sha256_hex(&red));
        for (p, want) in [
            (
                "solid:ff0000",
                "bf3e97767685a90177d1158e2a9d1a9fc642cda0fb0c3f111b4bfa2b93e77b1d",
            ),
            (
                "hgrad",
                "12ec11764a244bb0aa8077722e9000afd652bd79f30de68cbdee6cf577d23beb",
            ),
            (
                "vgrad",
                "56d1642542a6ebd80faeac003389a44f887da6ad860fc5d7991e0fc9d4003c47",
            ),
            (
                "random:1",
                "1533c410450bb3beb996389af4f2bd447351ba753903c565e1e69474b309b107",
            ),
            (
                "checker:8",
                "70f73a6a26c28a5fc0796fc95967bdc57d76898f6cffd4a999fe694f6da7b024",
            ),
        ] {
            assert_eq!(digest(p), want, "{p}");
        }
    }

    #[test]
    fn xrgb_rows_hash_like_the_rgb_image() {
        let img = Pattern::Random(7).render(5, 3).unwrap();
        let mut hasher = FrameHasher::new(5, PixelFormat::XRGB8888, HashFormat::Rgb).unwrap();
        let mut raw = FrameHasher::new(5, PixelFormat::XRGB8888, HashFormat::Raw).unwrap();
        let mut row = Vec::new();
        let mut all = Vec::new();
        for y in 0..3 {
            img.encode_span(y, 0, 5, PixelFormat::XRGB8888, &mut row);
            // XRGB8888 in memory: B, G, R, X with X = 0.
            for (px, rgb) in row.chunks(4).zip(img.row(y).chunks(3)) {
                assert_eq!(px, [rgb[2], rgb[1], rgb[0], 0]);
            }
            hasher.update_row(&row);
            raw.update_row(&row);
            all.extend_from_slice(&row);
        }
        assert_eq!(hasher.finish(), img.sha256());
        assert_eq!(raw.finish(), sha256_hex(&all));
    }

    #[test]
    fn other_byte_orders_and_refused_formats() {
        // 24 bpp with red in the low byte (R, G, B in memory).
        let rgb24 = PixelFormat {
            bytes: 3,
            red: Channel {
                offset: 0,
                length: 8,
            },
            green: Channel {
                offset: 8,
                length: 8,
            },
            blue: Channel {
                offset: 16,
                length: 8,
            },
        };
        let mut h = FrameHasher::new(2, rgb24, HashFormat::Rgb).unwrap();
        h.update_row(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(h.finish(), sha256_hex(&[1, 2, 3, 4, 5, 6]));

        let rgb565 = PixelFormat {
            bytes: 2,
            red: Channel {
                offset: 11,
                length: 5,
            },
            green: Channel {
                offset: 5,
                length: 6,
            },
            blue: Channel {
                offset: 0,
                length: 5,
            },
        };
        assert!(FrameHasher::new(2, rgb565, HashFormat::Rgb).is_err());
        assert!(FrameHasher::new(2, rgb565, HashFormat::Raw).is_ok());
        // Red in byte 2 of a 2-byte pixel.
        let outside = PixelFormat {
            bytes: 2,
            ..PixelFormat::XRGB8888
        };
        assert!(outside.rgb_byte_indices().is_err());
    }

    #[test]
    fn fill_rect_clips() {
        let mut img = Pattern::Solid([0, 0, 0]).render(4, 2).unwrap();
        img.fill_rect(
            Rect {
                x: 3,
                y: 1,
                w: 5,
                h: 5,
            },
            [9, 9, 9],
        );
        let mut want = [0u8; 24];
        want[21..24].copy_from_slice(&[9, 9, 9]);
        assert_eq!(img.rgb, want);
        img.fill_rect(
            Rect {
                x: 9,
                y: 9,
                w: 1,
                h: 1,
            },
            [1, 1, 1],
        );
        assert_eq!(img.rgb, want);
    }

    #[test]
    fn paste_copies_a_clipped_window() {
        let src = Pattern::HGrad.render(4, 3).unwrap();
        let mut dst = Pattern::Solid([0, 0, 0]).render(3, 3).unwrap();
        // Source rect sticks out of the source (w 9) and the destination (x 1 + 3 > 3).
        dst.paste(
            &src,
            Rect {
                x: 1,
                y: 1,
                w: 9,
                h: 1,
            },
            1,
            2,
        );
        assert_eq!(dst.row(0), [0; 9]);
        assert_eq!(dst.row(1), [0; 9]);
        assert_eq!(&dst.row(2)[..3], [0, 0, 0]);
        assert_eq!(&dst.row(2)[3..], &src.row(1)[3..9]);
        // Entirely outside either picture: nothing happens.
        let before = dst.clone();
        dst.paste(
            &src,
            Rect {
                x: 4,
                y: 0,
                w: 2,
                h: 2,
            },
            0,
            0,
        );
        dst.paste(
            &src,
            Rect {
                x: 0,
                y: 0,
                w: 2,
                h: 2,
            },
            3,
            0,
        );
        assert_eq!(dst, before);
        // A whole picture pasted at the origin of one of its size is a copy.
        let mut copy = Pattern::Solid([1, 1, 1]).render(4, 3).unwrap();
        copy.paste(
            &src,
            Rect {
                x: 0,
                y: 0,
                w: 4,
                h: 3,
            },
            0,
            0,
        );
        assert_eq!(copy, src);
    }

    /// The photo is deterministic, smooth (neighbours differ by little) yet not flat (many
    /// colours, grain everywhere), and pinned so that both sides of a benchmark and every build
    /// draw the same picture.
    #[test]
    fn photo_is_smooth_grainy_and_pinned() {
        let img = photo(320, 240, 1);
        assert_eq!(
            (img.width, img.height, img.rgb.len()),
            (320, 240, 320 * 240 * 3)
        );
        assert_eq!(img, photo(320, 240, 1));
        assert_ne!(img, photo(320, 240, 2));
        let mut colours: Vec<[u8; 3]> = img.rgb.chunks(3).map(|c| [c[0], c[1], c[2]]).collect();
        let (mut sum, mut same) = (0u64, 0u64);
        for y in 0..240 {
            let row = img.row(y);
            for x in 1..320 {
                for k in 0..3 {
                    let d = u64::from(row[x * 3 + k].abs_diff(row[(x - 1) * 3 + k]));
                    sum += d;
                    same += u64::from(d == 0);
                }
            }
        }
        let pairs = 240 * 319 * 3;
        // Mean neighbour difference of a few levels: grain, not edges.
        assert!(
            sum * 10 / pairs < 40,
            "mean difference {}",
            sum as f64 / pairs as f64
        );
        assert!(same * 2 < pairs, "{same} of {pairs} neighbours equal");
        colours.sort_unstable();
        colours.dedup();
        assert!(colours.len() > 5000, "{} colours", colours.len());
        assert_eq!(
            img.sha256(),
            "6d609bd1b8dfa6b573fe07faad623a50f2df23ed2039f678f80c9915b660a45f"
        );
        // Degenerate sizes still give a picture.
        assert_eq!(photo(1, 1, 0).rgb.len(), 3);
        assert_eq!(photo(0, 5, 0).width, 1);
    }

    #[test]
    fn crop_takes_a_clipped_window() {
        let img = Pattern::HGrad.render(4, 3).unwrap();
        let c = img.crop(Rect {
            x: 1,
            y: 1,
            w: 2,
            h: 5,
        });
        assert_eq!((c.width, c.height), (2, 2));
        assert_eq!(c.row(0), &img.row(1)[3..9]);
        assert_eq!(c.row(1), &img.row(2)[3..9]);
        let whole = img.crop(Rect {
            x: 0,
            y: 0,
            w: 4,
            h: 3,
        });
        assert_eq!(whole, img);
    }
}
