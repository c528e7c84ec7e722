//! Deterministic test and benchmark images, generated rather than stored.
//!
//! Codec behaviour depends heavily on content: screen text repeats a few glyphs on a flat
//! background (dictionary coders shine), user interfaces mix flat areas, sharp edges and short
//! gradients, and photographs are smooth and noisy (predictive coders such as QUIC shine). These
//! three generators stand in for those classes so that tests and benchmarks compare codecs on
//! the same, reproducible pictures without shipping image files. Every image comes from a fixed
//! seed: the same size always gives the same bytes.
//!
//! All three return tightly packed [`PixelFormat::Rgb32`](crate::PixelFormat::Rgb32) rows
//! (B, G, R, X with X = 0), `width * height * 4` bytes, top-down.

/// A small deterministic generator (SplitMix64): good enough for picture noise and layout, and
/// with no dependency, so the corpus is the same on every platform and crate version.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`); the modulo bias is irrelevant for pictures.
    fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % u64::from(n)) as u32
    }
}

/// An RGB colour; stored as B, G, R, 0.
#[derive(Clone, Copy)]
struct Rgb(u8, u8, u8);

/// A packed Rgb32 canvas with clipped drawing helpers.
struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: u32, height: u32, background: Rgb) -> Self {
        let (width, height) = (width as usize, height as usize);
        let mut pixels = vec![0; width * height * 4];
        for px in pixels.chunks_exact_mut(4) {
            px.copy_from_slice(&[background.2, background.1, background.0, 0]);
        }
        Canvas {
            width,
            height,
            pixels,
        }
    }

    fn put(&mut self, x: usize, y: usize, c: Rgb) {
        if x < self.width && y < self.height {
            let i = (y * self.width + x) * 4;
            self.pixels[i..i + 3].copy_from_slice(&[c.2, c.1, c.0]);
        }
    }

    fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, c: Rgb) {
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(self.width) {
                self.put(xx, yy, c);
            }
        }
    }

    /// A one-pixel frame just inside the rectangle.
    fn frame(&mut self, x: usize, y: usize, w: usize, h: usize, c: Rgb) {
        if w == 0 || h == 0 {
            return;
        }
        self.fill(x, y, w, 1, c);
        self.fill(x, y + h - 1, w, 1, c);
        self.fill(x, y, 1, h, c);
        self.fill(x + w - 1, y, 1, h, c);
    }

    /// A left-to-right blend from `a` to `b`, as title bars and progress bars draw it.
    fn hgradient(&mut self, x: usize, y: usize, w: usize, h: usize, a: Rgb, b: Rgb) {
        let span = w.max(2) - 1;
        for xx in 0..w {
            let mix = |p: u8, q: u8| ((p as usize * (span - xx) + q as usize * xx) / span) as u8;
            let c = Rgb(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2));
            self.fill(x + xx, y, 1, h, c);
        }
    }

    /// A top-to-bottom blend from `a` to `b`.
    fn vgradient(&mut self, x: usize, y: usize, w: usize, h: usize, a: Rgb, b: Rgb) {
        let span = h.max(2) - 1;
        for yy in 0..h {
            let mix = |p: u8, q: u8| ((p as usize * (span - yy) + q as usize * yy) / span) as u8;
            let c = Rgb(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2));
            self.fill(x, y + yy, w, 1, c);
        }
    }
}

/// Glyph cell size of the text generators: a common terminal font size.
const CELL_W: usize = 8;
const CELL_H: usize = 16;

/// A fixed font of glyph-like bitmaps: 8x16 cells whose 6x10 core is built from a few strokes
/// (bars, stems, dots), so that glyphs look like letters to a codec: sparse, aligned, and each
/// one repeated wherever the same character appears.
struct Font {
    glyphs: Vec<[u8; CELL_W * CELL_H]>,
}

impl Font {
    fn new(count: usize, seed: u64) -> Self {
        let mut rng = Rng(seed);
        let glyphs = (0..count)
            .map(|_| {
                let mut g = [0u8; CELL_W * CELL_H];
                let mut set = |x: usize, y: usize| g[y * CELL_W + x] = 1;
                // Baseline at row 12, x-height from row 6, ascenders from row 3.
                let top = if rng.below(3) == 0 { 3 } else { 6 };
                for _ in 0..2 + rng.below(3) {
                    match rng.below(4) {
                        // Vertical stem.
                        0 => {
                            let x = 1 + rng.below(5) as usize;
                            (top..=12).for_each(|y| set(x, y));
                        }
                        // Horizontal bar.
                        1 => {
                            let y = top + rng.below((13 - top) as u32) as usize;
                            (1..=5).for_each(|x| set(x, y));
                        }
                        // Diagonal.
                        2 => (0..5).for_each(|i| set(1 + i, top + i * (12 - top) / 4)),
                        // Bowl: a small box.
                        _ => {
                            for x in 1..=5 {
                                set(x, 8);
                                set(x, 12);
                            }
                            for y in 8..=12 {
                                set(1, y);
                                set(5, y);
                            }
                        }
                    }
                }
                g
            })
            .collect();
        Font { glyphs }
    }

    fn draw(&self, canvas: &mut Canvas, glyph: usize, x: usize, y: usize, fg: Rgb) {
        let g = &self.glyphs[glyph % self.glyphs.len()];
        for gy in 0..CELL_H {
            for gx in 0..CELL_W {
                if g[gy * CELL_W + gx] != 0 {
                    canvas.put(x + gx, y + gy, fg);
                }
            }
        }
    }

    /// Lines of "words" starting at (x, y) inside a `w x h` box; returns nothing, clips silently.
    #[allow(clippy::too_many_arguments)]
    fn paragraph(
        &self,
        canvas: &mut Canvas,
        rng: &mut Rng,
        x: usize,
        y: usize,
        w: usize,
        h: usize,
        fg: Rgb,
    ) {
        let cols = w / CELL_W;
        for row in 0..h / CELL_H {
            let len = rng.below(cols as u32 + 1) as usize;
            let mut col = 0;
            while col < len {
                let word = 1 + rng.below(9) as usize;
                for _ in 0..word.min(len - col) {
                    // Letter frequencies are skewed: a few glyphs make most of the text.
                    let glyph = (rng.below(20) * rng.below(20) / 8) as usize;
                    self.draw(canvas, glyph, x + col * CELL_W, y + row * CELL_H, fg);
                    col += 1;
                }
                col += 1; // the space
            }
        }
    }
}

/// A terminal-like screen: 8x16 glyphs on a plain dark background, lines of words of varying
/// length, a coloured prompt at the start of some lines, and a cursor block.
pub fn text(width: u32, height: u32) -> Vec<u8> {
    let mut c = Canvas::new(width, height, Rgb(0x1e, 0x1e, 0x1e));
    let font = Font::new(48, 0x7465_7874);
    let mut rng = Rng(1);
    let (fg, prompt) = (Rgb(0xd0, 0xd0, 0xd0), Rgb(0x4e, 0xc9, 0x4e));
    let cols = c.width / CELL_W;
    for row in 0..c.height / CELL_H {
        let y = row * CELL_H;
        let mut col = 0;
        if rng.below(4) == 0 {
            for g in [5, 11, 3, 9, 1] {
                font.draw(&mut c, g, col * CELL_W, y, prompt);
                col += 1;
            }
            col += 1;
        }
        let len = col + rng.below(cols.saturating_sub(col) as u32 + 1) as usize;
        while col < len {
            let word = 1 + rng.below(9) as usize;
            for _ in 0..word.min(len - col) {
                let glyph = (rng.below(20) * rng.below(20) / 8) as usize;
                font.draw(&mut c, glyph, col * CELL_W, y, fg);
                col += 1;
            }
            col += 1;
        }
    }
    let last = (c.height / CELL_H).saturating_sub(1);
    c.fill(0, last * CELL_H, CELL_W, CELL_H, fg);
    c.pixels
}

/// A desktop: a vertical-gradient wallpaper, a row of icons, overlapping windows with gradient
/// title bars, buttons, text and solid panels, and a task bar.
pub fn ui(width: u32, height: u32) -> Vec<u8> {
    let mut c = Canvas::new(width, height, Rgb(0, 0, 0));
    let (w, h) = (c.width, c.height);
    let font = Font::new(48, 0x7569);
    let mut rng = Rng(2);
    c.vgradient(0, 0, w, h, Rgb(0x20, 0x40, 0x70), Rgb(0x10, 0x20, 0x38));

    // Desktop icons: a few distinct 32x32 pictures, each used several times.
    let icons: Vec<Vec<Rgb>> = (0..4)
        .map(|_| {
            let (a, b) = (
                Rgb(
                    rng.below(256) as u8,
                    rng.below(256) as u8,
                    rng.below(256) as u8,
                ),
                Rgb(
                    rng.below(256) as u8,
                    rng.below(256) as u8,
                    rng.below(256) as u8,
                ),
            );
            (0..32 * 32)
                .map(|i| {
                    let (x, y) = (i % 32, i / 32);
                    if (4..28).contains(&x) && (4..28).contains(&y) {
                        if (x / 6 + y / 6) % 2 == 0 { a } else { b }
                    } else {
                        Rgb(0xf0, 0xf0, 0xf0)
                    }
                })
                .collect()
        })
        .collect();
    for i in 0..h.saturating_sub(40) / 56 {
        let icon = &icons[i % icons.len()];
        for (p, &col) in icon.iter().enumerate() {
            c.put(16 + p % 32, 16 + i * 56 + p / 32, col);
        }
    }

    // Windows, back to front.
    for k in 0..4usize {
        let ww = (w / 2).max(40) - k * w / 24;
        let wh = (h / 2).max(40) - k * h / 24;
        let x = 80 + k * w / 7;
        let y = 30 + k * h / 9;
        c.fill(x, y, ww, wh, Rgb(0xf2, 0xf1, 0xf0));
        c.frame(x, y, ww, wh, Rgb(0x80, 0x80, 0x80));
        c.hgradient(
            x + 1,
            y + 1,
            ww.saturating_sub(2),
            24,
            Rgb(0x30, 0x60, 0xb0),
            Rgb(0x70, 0xa0, 0xe0),
        );
        font.paragraph(
            &mut c,
            &mut rng,
            x + 8,
            y + 5,
            ww / 2,
            CELL_H,
            Rgb(0xff, 0xff, 0xff),
        );
        // A side panel and a text area.
        c.fill(
            x + 1,
            y + 25,
            ww / 5,
            wh.saturating_sub(26),
            Rgb(0xe0, 0xe4, 0xea),
        );
        font.paragraph(
            &mut c,
            &mut rng,
            x + ww / 5 + 10,
            y + 34,
            ww.saturating_sub(ww / 5 + 20),
            wh.saturating_sub(90),
            Rgb(0x20, 0x20, 0x20),
        );
        // Buttons.
        for b in 0..3 {
            let bx = x + ww.saturating_sub(90 * (b + 1));
            let by = y + wh.saturating_sub(40);
            c.vgradient(bx, by, 80, 28, Rgb(0xfa, 0xfa, 0xfa), Rgb(0xd8, 0xd8, 0xd8));
            c.frame(bx, by, 80, 28, Rgb(0x90, 0x90, 0x90));
            font.paragraph(
                &mut c,
                &mut Rng(b as u64),
                bx + 12,
                by + 6,
                56,
                CELL_H,
                Rgb(0, 0, 0),
            );
        }
        // A progress bar.
        let px = x + ww / 5 + 10;
        let py = y + wh.saturating_sub(70);
        c.frame(px, py, ww / 2, 14, Rgb(0x90, 0x90, 0x90));
        c.hgradient(
            px + 1,
            py + 1,
            (ww / 2) * (k + 1) / 5,
            12,
            Rgb(0x20, 0xa0, 0x40),
            Rgb(0x60, 0xe0, 0x80),
        );
    }

    // Task bar.
    let bar = 36.min(h);
    c.fill(0, h - bar, w, bar, Rgb(0x28, 0x28, 0x30));
    for i in 0..w / 200 {
        c.fill(
            60 + i * 200,
            h - bar + 4,
            180,
            bar.saturating_sub(8),
            Rgb(0x40, 0x40, 0x4c),
        );
        font.paragraph(
            &mut c,
            &mut rng,
            70 + i * 200,
            h - bar + 10,
            160,
            CELL_H,
            Rgb(0xe0, 0xe0, 0xe0),
        );
    }
    c.pixels
}

/// A photograph-like picture: per channel, a sum of waves at various angles, mostly low
/// frequencies with some finer texture (built separably so that large images stay cheap), a
/// few soft-edged objects in front, a vignette, and a little sensor noise.
pub fn photo(width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let mut rng = Rng(3);
    // Frequencies are relative to a 512-pixel period, whatever the picture size.
    let scale = std::f32::consts::TAU / 512.0;
    let mut planes = vec![[0f32; 3]; w * h];
    for ch in 0..3 {
        for term in 0..8 {
            // Five broad waves, then three finer, fainter ones.
            let (freq, amp) = if term < 5 {
                (2.5, 10.0 + rng.below(25) as f32)
            } else {
                (16.0, 2.0 + rng.below(5) as f32)
            };
            let fx = (rng.below(200) as f32 / 100.0 - 1.0) * freq * scale;
            let fy = (rng.below(200) as f32 / 100.0 - 1.0) * freq * scale;
            let phase = rng.below(628) as f32 / 100.0;
            // sin(fx x + fy y + p) = sin(fx x) cos(fy y + p) + cos(fx x) sin(fy y + p)
            let (sx, cx): (Vec<f32>, Vec<f32>) = (0..w).map(|x| (fx * x as f32).sin_cos()).unzip();
            for y in 0..h {
                let (sy, cy) = (fy * y as f32 + phase).sin_cos();
                let row = &mut planes[y * w..(y + 1) * w];
                for ((p, &s), &c) in row.iter_mut().zip(&sx).zip(&cx) {
                    p[ch] += amp * (s * cy + c * sy);
                }
            }
        }
    }
    // Objects: ellipses of their own shade, blended in over a few pixels of edge.
    for _ in 0..6 {
        let (ox, oy) = (rng.below(width) as f32, rng.below(height) as f32);
        let rx = (w as f32 / 12.0) * (1.0 + rng.below(200) as f32 / 100.0);
        let ry = (h as f32 / 12.0) * (1.0 + rng.below(200) as f32 / 100.0);
        let shade = [0, 1, 2].map(|_| rng.below(120) as f32 - 60.0);
        let edge = 2.0 + rng.below(3) as f32;
        let (x0, x1) = (
            (ox - rx - edge).max(0.0) as usize,
            ((ox + rx + edge) as usize).min(w),
        );
        let (y0, y1) = (
            (oy - ry - edge).max(0.0) as usize,
            ((oy + ry + edge) as usize).min(h),
        );
        for y in y0..y1 {
            for x in x0..x1 {
                let (dx, dy) = ((x as f32 - ox) / rx, (y as f32 - oy) / ry);
                // Distance outside the outline, in pixels, roughly.
                let d = ((dx * dx + dy * dy).sqrt() - 1.0) * rx.min(ry);
                let a = (0.5 - d / edge).clamp(0.0, 1.0);
                let p = &mut planes[y * w + x];
                for ch in 0..3 {
                    p[ch] += a * shade[ch];
                }
            }
        }
    }
    let base = [110.0f32, 120.0, 130.0];
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let norm = 1.0 / (cx * cx + cy * cy).max(1.0);
    let mut pixels = vec![0u8; w * h * 4];
    for (i, (px, p)) in pixels.chunks_exact_mut(4).zip(&planes).enumerate() {
        let (x, y) = ((i % w) as f32 - cx, (i / w) as f32 - cy);
        let vignette = 1.0 - 0.35 * (x * x + y * y) * norm;
        let noise = rng.next_u64();
        for ch in 0..3 {
            let n = ((noise >> (ch * 8)) & 7) as f32 - 3.5;
            let v = (base[ch] + p[ch]) * vignette + n;
            // B, G, R order: channel 0 is red.
            px[2 - ch] = v.clamp(0.0, 255.0) as u8;
        }
    }
    pixels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_determinism() {
        for f in [text, ui, photo] {
            for (w, h) in [(1, 1), (7, 3), (64, 48), (300, 200)] {
                let a = f(w, h);
                assert_eq!(a.len(), (w * h * 4) as usize);
                assert_eq!(a, f(w, h));
                assert!(a.chunks_exact(4).all(|p| p[3] == 0));
            }
        }
    }

    #[test]
    fn content_classes_differ() {
        let distinct = |p: &[u8]| {
            let mut v: Vec<&[u8]> = p.chunks_exact(4).collect();
            v.sort_unstable();
            v.dedup();
            v.len()
        };
        // Text uses a handful of colours, a photo thousands.
        assert!(distinct(&text(320, 200)) <= 3);
        assert!(distinct(&photo(320, 200)) > 2000);
        let ui = distinct(&ui(640, 480));
        assert!(ui > 20 && ui < 2000, "{ui}");
    }
}
