//! LZ tests, and the synthetic images the GLZ tests reuse.

use proptest::prelude::*;

use super::*;

/// A small deterministic generator (xorshift), so failures reproduce.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What a synthetic image looks like.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scene {
    Noise,
    Gradient,
    Text,
    Blocks,
    /// A desktop-like mix: solid background, a window with text, a gradient title bar.
    Desktop,
}

/// Packed BGRA/BGRX pixels (4 bytes each) of a `w`x`h` scene; alpha varies only for
/// scenes where it makes sense.
pub(crate) fn scene(kind: Scene, w: u32, h: u32, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let (w, h) = (w as usize, h as usize);
    let mut px = vec![0u8; w * h * 4];
    let set = |px: &mut [u8], x: usize, y: usize, c: [u8; 4]| {
        px[(y * w + x) * 4..(y * w + x) * 4 + 4].copy_from_slice(&c);
    };
    match kind {
        Scene::Noise => px.iter_mut().for_each(|b| *b = rng.next() as u8),
        Scene::Gradient => {
            for y in 0..h {
                for x in 0..w {
                    set(
                        &mut px,
                        x,
                        y,
                        [(x * 3) as u8, (y * 5) as u8, (x + y) as u8, 255],
                    );
                }
            }
        }
        Scene::Text | Scene::Desktop => {
            let bg = [0xee, 0xee, 0xee, 0xff];
            for y in 0..h {
                for x in 0..w {
                    set(&mut px, x, y, bg);
                }
            }
            // 8 glyph shapes of 6x10, reused like letters in lines of text.
            let glyphs: Vec<u64> = (0..8).map(|_| rng.next()).collect();
            let ink = [0x20, 0x20, 0x20, 0xff];
            let top = if matches!(kind, Scene::Desktop) {
                h / 8
            } else {
                0
            };
            let mut y0 = top + 2;
            while y0 + 10 < h {
                let mut x0 = 3;
                while x0 + 6 < w {
                    let g = glyphs[rng.below(8) as usize];
                    if rng.below(7) != 0 {
                        for gy in 0..10 {
                            for gx in 0..6 {
                                if g >> ((gy * 6 + gx) % 64) & 1 == 1 {
                                    set(&mut px, x0 + gx, y0 + gy, ink);
                                }
                            }
                        }
                    }
                    x0 += 7;
                }
                y0 += 13;
            }
            if matches!(kind, Scene::Desktop) {
                for y in 0..top {
                    for x in 0..w {
                        set(&mut px, x, y, [(x / 4) as u8, 0x40, 0x80, 0xff]);
                    }
                }
            }
        }
        Scene::Blocks => {
            for y in 0..h {
                for x in 0..w {
                    let c = ((x / 13) * 7 + (y / 9) * 3) as u8;
                    set(&mut px, x, y, [c, c.wrapping_mul(3), 0x55, c & 0xf0]);
                }
            }
        }
    }
    px
}

/// `pixels` (4 bytes each, packed) converted to `format` rows of `stride` bytes, with the
/// padding and ignored bits filled with junk so encoders are seen to ignore them.
pub(crate) fn to_format(
    pixels: &[u8],
    w: u32,
    h: u32,
    format: PixelFormat,
    pad: usize,
) -> (Vec<u8>, usize) {
    let bpp = format.bytes_per_pixel();
    let stride = w as usize * bpp + pad;
    let mut out = vec![0xa5u8; stride * h as usize];
    for y in 0..h as usize {
        for x in 0..w as usize {
            let p = &pixels[(y * w as usize + x) * 4..][..4];
            let d = &mut out[y * stride + x * bpp..][..bpp];
            match format {
                PixelFormat::Rgb32 => d.copy_from_slice(&[p[0], p[1], p[2], p[3] ^ 0x5a]),
                PixelFormat::Rgba => d.copy_from_slice(p),
                PixelFormat::Rgb24 => d.copy_from_slice(&p[..3]),
                PixelFormat::Rgb16 => {
                    let v = u16::from(p[0] >> 3)
                        | u16::from(p[1] >> 3) << 5
                        | u16::from(p[2] >> 3) << 10;
                    d.copy_from_slice(&(v | u16::from(p[3] & 0x80) << 8).to_le_bytes());
                }
            }
        }
    }
    (out, stride)
}

const FORMATS: [PixelFormat; 4] = [
    PixelFormat::Rgb32,
    PixelFormat::Rgba,
    PixelFormat::Rgb24,
    PixelFormat::Rgb16,
];

fn round_trip(kind: Scene, w: u32, h: u32, format: PixelFormat, pad: usize) -> usize {
    let base = scene(kind, w, h, u64::from(w * 31 + h));
    let (data, stride) = to_format(&base, w, h, format, pad);
    let img = ImageRef::new(w, h, stride, format, &data).unwrap();
    let enc = encode(&img).unwrap();
    let dec = decode(&enc, u64::from(w) * u64::from(h)).unwrap();
    assert!(
        dec.same_picture(&img),
        "{kind:?} {w}x{h} {format:?} pad {pad}"
    );
    enc.len()
}

#[test]
fn header_is_seven_big_endian_words() {
    let px = [1u8, 2, 3, 4, 5, 6, 7, 8];
    let img = ImageRef::packed(2, 1, PixelFormat::Rgb32, &px).unwrap();
    let enc = encode(&img).unwrap();
    assert_eq!(&enc[..4], &[0x20, 0x20, 0x5a, 0x4c]);
    assert_eq!(&enc[4..8], &[0, 1, 0, 1]);
    assert_eq!(be32(&enc, 8), 8);
    assert_eq!(be32(&enc, 12), 2);
    assert_eq!(be32(&enc, 16), 1);
    assert_eq!(be32(&enc, 20), 8);
    assert_eq!(be32(&enc, 24), 1);
    // One literal run of two pixels, B G R each.
    assert_eq!(&enc[28..], &[1, 1, 2, 3, 5, 6, 7]);
}

#[test]
fn a_solid_image_is_a_run() {
    let px = vec![9u8; 100 * 4];
    let img = ImageRef::packed(100, 1, PixelFormat::Rgb32, &px).unwrap();
    let enc = encode(&img).unwrap();
    // literal, then a copy at distance 1 of the other 99 pixels: 7 + (99 - 7) = 7, 92.
    assert_eq!(&enc[28..], &[0, 9, 9, 9, 7 << 5, 92, 0]);
    assert!(decode(&enc, 100).unwrap().same_picture(&img));
}

#[test]
fn every_format_and_shape_round_trips() {
    for format in FORMATS {
        for (w, h) in [
            (1, 1),
            (1, 7),
            (7, 1),
            (2, 2),
            (3, 5),
            (33, 3),
            (17, 40),
            (301, 13),
        ] {
            for kind in [
                Scene::Noise,
                Scene::Gradient,
                Scene::Text,
                Scene::Blocks,
                Scene::Desktop,
            ] {
                for pad in [0, 3] {
                    round_trip(kind, w, h, format, pad);
                }
            }
        }
    }
}

#[test]
fn long_runs_and_far_copies_round_trip() {
    // A wide image: the row above is more than 8191 pixels back, so copies use the far form;
    // and two rows apart is beyond the farthest distance.
    for w in [5000u32, 9000, 40000, 80000] {
        round_trip(Scene::Text, w, 4, PixelFormat::Rgb32, 0);
        round_trip(Scene::Text, w, 4, PixelFormat::Rgba, 0);
        round_trip(Scene::Text, w, 3, PixelFormat::Rgb16, 0);
    }
    let px = vec![0x77u8; 300 * 300 * 4];
    let img = ImageRef::packed(300, 300, PixelFormat::Rgba, &px).unwrap();
    let enc = encode(&img).unwrap();
    assert!(enc.len() < 28 + 2 * 400, "{}", enc.len());
    assert!(decode(&enc, 90000).unwrap().same_picture(&img));
}

#[test]
fn screen_content_compresses() {
    let n = round_trip(Scene::Desktop, 640, 400, PixelFormat::Rgb32, 0);
    assert!(n * 8 < 640 * 400 * 4, "{n} bytes");
}

#[test]
fn alpha_only_round_trips() {
    let base = scene(Scene::Blocks, 37, 21, 5);
    let img = ImageRef::packed(37, 21, PixelFormat::Rgba, &base).unwrap();
    let enc = encode_alpha(&img).unwrap();
    assert_eq!(be32(&enc, 8), LzType::Xxxa as u32);
    let dec = decode(&enc, 10_000).unwrap();
    assert_eq!(dec.format, PixelFormat::Rgba);
    for (d, s) in dec.pixels.chunks(4).zip(base.chunks(4)) {
        assert_eq!(d, &[0, 0, 0, s[3]]);
    }
    let rgb = ImageRef::packed(37, 21, PixelFormat::Rgb32, &base).unwrap();
    assert_eq!(
        encode_alpha(&rgb),
        Err(EncodeError::NoAlpha(PixelFormat::Rgb32))
    );
}

#[test]
fn bottom_up_payloads_come_out_top_down() {
    let base = scene(Scene::Gradient, 5, 4, 1);
    let img = ImageRef::packed(5, 4, PixelFormat::Rgba, &base).unwrap();
    let mut enc = encode(&img).unwrap();
    enc[24..28].copy_from_slice(&0u32.to_be_bytes());
    let dec = decode(&enc, 20).unwrap();
    let flipped: Vec<u8> = base.chunks(20).rev().flatten().copied().collect();
    assert_eq!(dec.pixels, flipped);
}

fn palette_round_trip(
    depth: PaletteDepth,
    w: u32,
    h: u32,
    pad: usize,
    seed: u64,
) -> DecodedPalette {
    let row = depth.row_bytes(w) as usize;
    let stride = row + pad;
    let mut rng = Rng(seed | 1);
    let mut packed = vec![0u8; stride * h as usize];
    for (i, b) in packed.iter_mut().enumerate() {
        // Text-like: mostly background, some structure.
        *b = if rng.below(5) == 0 {
            rng.next() as u8
        } else {
            (i % 3) as u8
        };
    }
    let enc = encode_palette(w, h, depth, stride, &packed).unwrap();
    assert_eq!(be32(&enc, 20) as usize, row);
    let dec = decode_palette(&enc, u64::from(w) * u64::from(h)).unwrap();
    assert_eq!(
        (dec.depth, dec.width, dec.height, dec.stride),
        (depth, w, h, row)
    );
    for y in 0..h as usize {
        assert_eq!(&dec.rows[y * row..][..row], &packed[y * stride..][..row]);
    }
    dec
}

#[test]
fn palette_images_round_trip() {
    for depth in [
        PaletteDepth::Bits1Le,
        PaletteDepth::Bits1Be,
        PaletteDepth::Bits4Le,
        PaletteDepth::Bits4Be,
        PaletteDepth::Bits8,
    ] {
        for (w, h) in [(1, 1), (9, 1), (1, 9), (13, 7), (64, 64), (1000, 3)] {
            for pad in [0, 2] {
                palette_round_trip(depth, w, h, pad, u64::from(w + h));
            }
        }
    }
    assert_eq!(PaletteDepth::Bits1Le.row_bytes(9), 2);
    assert_eq!(PaletteDepth::Bits4Be.row_bytes(3), 2);
    assert!(matches!(
        encode_palette(9, 2, PaletteDepth::Bits1Be, 1, &[0; 4]),
        Err(EncodeError::StrideTooShort { .. })
    ));
    assert!(matches!(
        encode_palette(8, 2, PaletteDepth::Bits8, 8, &[0; 15]),
        Err(EncodeError::DataTooShort { .. })
    ));
}

#[test]
fn palette_and_rgb_decoders_refuse_each_other() {
    let enc = encode_palette(8, 1, PaletteDepth::Bits8, 8, &[1; 8]).unwrap();
    assert_eq!(decode(&enc, 8), Err(DecodeError::WrongType(LzType::Plt8)));
    let px = [0u8; 4];
    let rgb = encode(&ImageRef::packed(1, 1, PixelFormat::Rgb32, &px).unwrap()).unwrap();
    assert_eq!(
        decode_palette(&rgb, 8),
        Err(DecodeError::WrongType(LzType::Rgb32))
    );
}

fn sample() -> Vec<u8> {
    let base = scene(Scene::Desktop, 64, 48, 3);
    encode(&ImageRef::packed(64, 48, PixelFormat::Rgba, &base).unwrap()).unwrap()
}

#[test]
fn malformed_headers_are_refused() {
    let good = sample();
    assert!(decode(&good, 64 * 48).is_ok());
    assert_eq!(
        decode(&good[..10], 1 << 20),
        Err(DecodeError::ShortHeader { len: 10 })
    );
    let mut bad = good.clone();
    bad[0] = 0;
    assert!(matches!(
        decode(&bad, 1 << 20),
        Err(DecodeError::BadMagic(_))
    ));
    let mut bad = good.clone();
    bad[7] = 2;
    assert!(matches!(
        decode(&bad, 1 << 20),
        Err(DecodeError::BadVersion(_))
    ));
    let mut bad = good.clone();
    bad[11] = 12;
    assert_eq!(decode(&bad, 1 << 20), Err(DecodeError::UnknownType(12)));
    let mut bad = good.clone();
    bad[23] ^= 4;
    assert!(matches!(
        decode(&bad, 1 << 20),
        Err(DecodeError::BadStride { .. })
    ));
    assert!(matches!(
        decode(&good, 100),
        Err(DecodeError::TooManyPixels { .. })
    ));
    let mut bad = good.clone();
    bad[12..16].copy_from_slice(&0u32.to_be_bytes());
    assert!(matches!(
        decode(&bad, 1 << 20),
        Err(DecodeError::Empty { .. })
    ));
    // Huge dimensions with a tiny stream fail before allocating.
    let mut huge = good[..28].to_vec();
    huge[12..16].copy_from_slice(&0x10000u32.to_be_bytes());
    huge[16..20].copy_from_slice(&0x10000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&0x40000u32.to_be_bytes());
    huge.extend_from_slice(&[0xe0, 255, 255, 255, 0]);
    assert!(matches!(
        decode(&huge, u64::MAX),
        Err(DecodeError::ImplausibleSize { .. })
    ));
}

#[test]
fn malformed_streams_are_refused() {
    let good = sample();
    for cut in [29, good.len() / 2, good.len() - 1] {
        assert!(decode(&good[..cut], 1 << 20).is_err(), "cut at {cut}");
    }
    let mut long = good.clone();
    long.push(0);
    assert_eq!(
        decode(&long, 1 << 20),
        Err(DecodeError::TrailingBytes { count: 1 })
    );
    // A copy first thing: nothing to copy from.
    let mut bad = good[..28].to_vec();
    bad[12..16].copy_from_slice(&2u32.to_be_bytes());
    bad[16..20].copy_from_slice(&1u32.to_be_bytes());
    bad[20..24].copy_from_slice(&8u32.to_be_bytes());
    bad.extend_from_slice(&[0x20, 0]);
    assert!(matches!(
        decode(&bad, 1 << 20),
        Err(DecodeError::Stream(StreamError::CopyBeforeStart { .. }))
    ));
    // A literal run longer than the image.
    let px = [0u8; 8];
    let mut bad = encode(&ImageRef::packed(2, 1, PixelFormat::Rgb32, &px).unwrap()).unwrap();
    bad[28] = 5;
    bad.extend_from_slice(&[0; 12]);
    assert!(matches!(
        decode(&bad, 1 << 20),
        Err(DecodeError::Stream(StreamError::LiteralOverrun { .. }))
    ));
    // A copy past the end.
    let mut bad = good[..28].to_vec();
    bad[12..16].copy_from_slice(&4u32.to_be_bytes());
    bad[16..20].copy_from_slice(&1u32.to_be_bytes());
    bad[20..24].copy_from_slice(&16u32.to_be_bytes());
    bad[8..12].copy_from_slice(&8u32.to_be_bytes());
    bad.extend_from_slice(&[0, 1, 2, 3, 0xe0, 10, 0]);
    assert!(matches!(
        decode(&bad, 1 << 20),
        Err(DecodeError::Stream(StreamError::CopyOverrun { .. }))
    ));
}

#[test]
fn random_bytes_never_panic() {
    let good = sample();
    let mut rng = Rng(77);
    for _ in 0..2000 {
        let mut bad = good.clone();
        for _ in 0..1 + rng.below(4) {
            let i = 28 + rng.below(bad.len() as u64 - 28) as usize;
            bad[i] = rng.next() as u8;
        }
        let _ = decode(&bad, 1 << 20);
        let _ = decode_palette(&bad, 1 << 20);
    }
}

fn any_format() -> impl Strategy<Value = PixelFormat> {
    prop::sample::select(FORMATS.to_vec())
}

fn any_scene() -> impl Strategy<Value = Scene> {
    prop::sample::select(vec![
        Scene::Noise,
        Scene::Gradient,
        Scene::Text,
        Scene::Blocks,
        Scene::Desktop,
    ])
}

proptest! {
    #[test]
    fn prop_synthetic_round_trip(kind in any_scene(), format in any_format(), w in 1u32..70, h in 1u32..40, pad in 0usize..5) {
        round_trip(kind, w, h, format, pad);
    }

    #[test]
    fn prop_random_pixels_round_trip(format in any_format(), w in 1u32..24, h in 1u32..12,
                                     bytes in prop::collection::vec(0u8..4, 24 * 12 * 4)) {
        // Few distinct values: plenty of short matches and runs at odd places.
        let (data, stride) = to_format(&bytes, w, h, format, 1);
        let img = ImageRef::new(w, h, stride, format, &data).unwrap();
        let dec = decode(&encode(&img).unwrap(), 1 << 20).unwrap();
        prop_assert!(dec.same_picture(&img));
    }

    #[test]
    fn prop_decoder_survives_garbage(tail in prop::collection::vec(any::<u8>(), 0..200), ty in 1u32..12) {
        let mut data = sample()[..28].to_vec();
        data[8..12].copy_from_slice(&ty.to_be_bytes());
        data[12..16].copy_from_slice(&7u32.to_be_bytes());
        data[16..20].copy_from_slice(&5u32.to_be_bytes());
        data[20..24].copy_from_slice(&28u32.to_be_bytes());
        data.extend_from_slice(&tail);
        let _ = decode(&data, 1 << 20);
        let _ = decode_palette(&data, 1 << 20);
    }
}
