use proptest::prelude::*;

use super::*;

/// Builds a packed image of `format` from a per-pixel function giving B, G, R, X/A.
fn image(w: u32, h: u32, format: PixelFormat, f: impl Fn(u32, u32) -> [u8; 4]) -> Vec<u8> {
    let bpp = format.bytes_per_pixel();
    let mut v = Vec::with_capacity((w * h) as usize * bpp);
    for y in 0..h {
        for x in 0..w {
            v.extend_from_slice(&f(x, y)[..bpp]);
        }
    }
    v
}

fn round_trip(img: &ImageRef<'_>) -> Vec<u8> {
    let enc = encode(img).unwrap();
    assert_eq!(enc.len() % 4, 0);
    let dec = decode(&enc, u64::MAX).unwrap();
    assert!(
        dec.same_picture(img),
        "{}x{} {:?} does not round-trip",
        img.width(),
        img.height(),
        img.format()
    );
    enc
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const FORMATS: [PixelFormat; 3] = [PixelFormat::Rgb32, PixelFormat::Rgb24, PixelFormat::Rgba];

// Streams made by spice-common's own encoder (quic.c built outside this repository) from the
// images below: ours must be byte-identical, and our decoder must read theirs.
const REF_RGB32_6X5: &str = "51554943000000000400000006000000050000003a80808ed00700809e01001d\
    510100801de880d0500a00007350b240b90e506541cb816819102dcf60e4392003d1721d5a9e83961cb45c0fc8\
    f540b20e5a0ec4723d6879839603d1722024d341cb73301c8896ebd0f21cb400000000";
const REF_RGBA_5X4: &str = "5155494300000000050000000500000004000000809480ef816040c001033188\
    0000801f899236210000ae750065de395a97a80400005cf300c5bc37bf79adcb6f00308c0000000000000000";
const REF_RGB24_9X3: &str = "51554943000000000300000009000000030000008080801a10000080500e2819\
    979783720000949780518c0039180800de00007024989c0b27af3a3972dfc973d1292d72710300807a8480e700\
    000000";

fn reference_images() -> Vec<(&'static str, u32, u32, PixelFormat, Vec<u8>)> {
    vec![
        (
            REF_RGB32_6X5,
            6,
            5,
            PixelFormat::Rgb32,
            image(6, 5, PixelFormat::Rgb32, |x, y| {
                let b = if (x + y) % 3 != 0 { 100 } else { 7 };
                [(x * 40) as u8, (y * 50) as u8, b, 0x99]
            }),
        ),
        (
            REF_RGBA_5X4,
            5,
            4,
            PixelFormat::Rgba,
            image(5, 4, PixelFormat::Rgba, |x, y| {
                let a = if x < 3 { 255 } else { (y * 60) as u8 };
                [10, (x * y * 17) as u8, 200, a]
            }),
        ),
        (
            REF_RGB24_9X3,
            9,
            3,
            PixelFormat::Rgb24,
            image(9, 3, PixelFormat::Rgb24, |x, y| {
                if y > 0 && x > 1 {
                    [1, 2, 3, 0]
                } else {
                    [(x * 9) as u8, (y * 9) as u8, 77, 0]
                }
            }),
        ),
    ]
}

#[test]
fn matches_the_reference_encoder_byte_for_byte() {
    for (stream, w, h, format, data) in reference_images() {
        let img = ImageRef::packed(w, h, format, &data).unwrap();
        let want: Vec<u8> = hex(&stream.replace(char::is_whitespace, ""));
        assert_eq!(encode(&img).unwrap(), want, "{format:?} {w}x{h}");
        assert!(decode(&want, u64::MAX).unwrap().same_picture(&img));
    }
}

/// FNV-1a, to pin a long reference stream without spelling it out.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[test]
fn matches_the_reference_encoder_on_a_wide_image() {
    // Wider than the first wait-mask segments, with runs, contexts left over from runs, and
    // isolated odd pixels; the reference encoder made 7832 bytes with this hash.
    let palette = [
        [250, 250, 250, 0],
        [20, 30, 40, 0],
        [200, 100, 0, 0],
        [0, 128, 255, 0],
    ];
    let data = image(2100, 5, PixelFormat::Rgb32, |x, y| {
        if (x * 7 + y * 3) % 97 == 0 {
            [x as u8, (x * y) as u8, (y * 40) as u8, 0]
        } else {
            palette[((x / 13 + (y / 2) * 3) % 4) as usize]
        }
    });
    let img = ImageRef::packed(2100, 5, PixelFormat::Rgb32, &data).unwrap();
    let enc = round_trip(&img);
    assert_eq!((enc.len(), fnv1a(&enc)), (7832, 0xbff8_9500_406e_ccf0));
}

#[test]
fn header_words() {
    let px = [1, 2, 3, 4];
    for (format, ty) in [
        (PixelFormat::Rgb32, 4u32),
        (PixelFormat::Rgba, 5),
        (PixelFormat::Rgb24, 3),
    ] {
        let img = ImageRef::packed(1, 1, format, &px[..format.bytes_per_pixel()]).unwrap();
        let enc = round_trip(&img);
        let words: Vec<u32> = enc
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
            .collect();
        assert_eq!(&enc[..4], b"QUIC");
        assert_eq!(&words[1..5], &[0, ty, 1, 1]);
        assert_eq!(*words.last().unwrap(), 0, "stream ends with a zero word");
    }
}

#[test]
fn rgb16_is_refused() {
    let px = [0u8; 8];
    let img = ImageRef::packed(2, 2, PixelFormat::Rgb16, &px).unwrap();
    assert_eq!(
        encode(&img),
        Err(EncodeError::Unsupported {
            format: PixelFormat::Rgb16
        })
    );
}

#[test]
fn rgb32_decodes_with_a_zero_x_byte() {
    let data = image(3, 2, PixelFormat::Rgb32, |x, y| [x as u8, y as u8, 9, 0xee]);
    let img = ImageRef::packed(3, 2, PixelFormat::Rgb32, &data).unwrap();
    let dec = decode(&encode(&img).unwrap(), 100).unwrap();
    assert_eq!(dec.format, PixelFormat::Rgb32);
    assert!(dec.pixels.chunks_exact(4).all(|p| p[3] == 0));
    assert!(dec.same_picture(&img));
}

#[test]
fn thin_and_odd_sizes_round_trip() {
    let sizes = [
        (1, 1),
        (1, 2),
        (2, 1),
        (1, 9),
        (9, 1),
        (2, 2),
        (3, 3),
        (4, 3),
        (5, 7),
        (31, 3),
        (2047, 2),
        (2048, 2),
        (2049, 3),
        (4097, 2),
    ];
    for (w, h) in sizes {
        for format in FORMATS {
            let data = image(w, h, format, |x, y| {
                let v = (x * 7 + y * 13) as u8;
                [v, v ^ 0x55, (x / 3) as u8, (y * 40) as u8]
            });
            round_trip(&ImageRef::packed(w, h, format, &data).unwrap());
        }
    }
}

#[test]
fn padded_strides_are_ignored() {
    for format in FORMATS {
        let (w, h) = (5u32, 4u32);
        let stride = w as usize * format.bytes_per_pixel() + 7;
        let data: Vec<u8> = (0..stride * h as usize)
            .map(|i| (i * 37 % 251) as u8)
            .collect();
        let img = ImageRef::new(w, h, stride, format, &data).unwrap();
        let enc = round_trip(&img);
        // The padding bytes must not matter.
        let mut other = data.clone();
        for y in 0..h as usize {
            other[y * stride + stride - 7..(y + 1) * stride].fill(0xab);
        }
        let img2 = ImageRef::new(w, h, stride, format, &other).unwrap();
        assert_eq!(encode(&img2).unwrap(), enc);
    }
}

#[test]
fn long_runs_compress_well() {
    // Runs longer than a wait-mask segment, and rows wider than the first segments.
    let (w, h) = (5000u32, 6u32);
    for format in FORMATS {
        let data = image(w, h, format, |x, _| {
            if x < 3 {
                [1, 2, 3, 4]
            } else {
                [200, 100, 50, 25]
            }
        });
        let enc = round_trip(&ImageRef::packed(w, h, format, &data).unwrap());
        assert!(
            enc.len() < data.len() / 20,
            "{format:?}: {} bytes",
            enc.len()
        );
    }
}

#[test]
fn noise_costs_about_its_size() {
    let (w, h) = (97u32, 61u32);
    let data = image(w, h, PixelFormat::Rgb24, |x, y| {
        let mut s = (y * w + x).wrapping_mul(0x9e37_79b9);
        s ^= s >> 15;
        s = s.wrapping_mul(0x85eb_ca6b);
        s ^= s >> 13;
        let b = s.to_le_bytes();
        [b[3], b[2], b[1], 0]
    });
    let enc = round_trip(&ImageRef::packed(w, h, PixelFormat::Rgb24, &data).unwrap());
    assert!(
        enc.len() < data.len() + data.len() / 8,
        "{} bytes",
        enc.len()
    );
}

fn valid_stream() -> Vec<u8> {
    let data = image(13, 11, PixelFormat::Rgba, |x, y| {
        [
            (x * 20) as u8,
            (y * 3) as u8,
            ((x * y) % 7) as u8,
            (x % 2 * 255) as u8,
        ]
    });
    encode(&ImageRef::packed(13, 11, PixelFormat::Rgba, &data).unwrap()).unwrap()
}

#[test]
fn every_truncation_is_an_error() {
    let enc = valid_stream();
    for len in 0..enc.len() {
        assert!(
            decode(&enc[..len], u64::MAX).is_err(),
            "prefix of {len} bytes"
        );
    }
    // A partial trailing word is ignored, as spice-gtk does.
    let mut longer = enc.clone();
    longer.extend_from_slice(&[1, 2]);
    assert!(decode(&longer, u64::MAX).is_ok());
}

#[test]
fn bad_headers_are_refused() {
    let enc = valid_stream();
    let with_word = |i: usize, v: u32| {
        let mut s = enc.clone();
        s[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        s
    };
    assert_eq!(
        decode(&with_word(0, 0x5a4c_2020), u64::MAX),
        Err(DecodeError::BadMagic { found: 0x5a4c_2020 })
    );
    assert_eq!(
        decode(&with_word(1, 0x0001_0001), u64::MAX),
        Err(DecodeError::BadVersion { found: 0x0001_0001 })
    );
    for bad in [0, 6, 0xffff_ffff] {
        assert_eq!(
            decode(&with_word(2, bad), u64::MAX),
            Err(DecodeError::InvalidType { value: bad })
        );
    }
    assert_eq!(
        decode(&with_word(2, 1), u64::MAX),
        Err(DecodeError::UnsupportedType { ty: QuicType::Gray })
    );
    assert_eq!(
        decode(&with_word(2, 2), u64::MAX),
        Err(DecodeError::UnsupportedType {
            ty: QuicType::Rgb16
        })
    );
    assert!(matches!(
        decode(&with_word(3, 0), u64::MAX),
        Err(DecodeError::Empty { .. })
    ));
    assert!(matches!(
        decode(&with_word(4, 0), u64::MAX),
        Err(DecodeError::Empty { .. })
    ));
    // Huge sizes fail on the pixel limit, or on the stream length, before any allocation.
    let huge = {
        let mut s = with_word(3, 0xffff_ffff);
        s[16..20].copy_from_slice(&0xffff_ffffu32.to_le_bytes());
        s
    };
    assert!(matches!(
        decode(&huge, 1 << 24),
        Err(DecodeError::TooManyPixels { .. })
    ));
    assert!(matches!(
        decode(&huge, u64::MAX),
        Err(DecodeError::TooShortFor { .. })
    ));
    assert!(matches!(
        decode(&valid_stream(), 13 * 11 - 1),
        Err(DecodeError::TooManyPixels { .. })
    ));
}

#[test]
fn a_body_of_ones_is_refused_without_panic() {
    // Row 1 of a 4x2 image with a repeated pixel: the encoder starts a run at column 3.
    let data = image(4, 2, PixelFormat::Rgb32, |x, y| {
        if y == 0 {
            [5, 5, 5, 0]
        } else if x < 3 {
            [9, 9, 9, 0]
        } else {
            [1, 1, 1, 0]
        }
    });
    let img = ImageRef::packed(4, 2, PixelFormat::Rgb32, &data).unwrap();
    let enc = round_trip(&img);
    // Setting every bit after the header makes codewords short and runs endless; whatever
    // the decoder makes of it, it must return rather than panic or loop.
    let mut bad = enc.clone();
    bad[20..].fill(0xff);
    assert!(decode(&bad, u64::MAX).is_err());
}

fn arb_format() -> impl Strategy<Value = PixelFormat> {
    prop_oneof![
        Just(PixelFormat::Rgb32),
        Just(PixelFormat::Rgb24),
        Just(PixelFormat::Rgba)
    ]
}

/// Synthetic screen-like content: a few colours in blocks, glyph-like strokes, gradients.
fn synthetic(w: u32, h: u32, format: PixelFormat, kind: u8, seed: u32) -> Vec<u8> {
    let palette: Vec<[u8; 4]> = (0..4u32)
        .map(|i| (seed.wrapping_mul(2_654_435_761).rotate_left(i * 8) ^ i).to_le_bytes())
        .collect();
    image(w, h, format, |x, y| match kind % 4 {
        0 => palette[((x / 5 + y / 3) % 4) as usize],
        1 => {
            let on = y % 12 > 2 && (x % 7 == 1 || (y % 12 == 6 && x % 7 < 5));
            palette[on as usize]
        }
        2 => [(x * 3) as u8, (y * 5) as u8, (x + y) as u8, (x * y) as u8],
        _ => {
            let n = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ seed) % 11;
            if n == 0 {
                [n as u8, (x * 9) as u8, 3, 200]
            } else {
                palette[2]
            }
        }
    })
}

proptest! {
    #[test]
    fn random_images_round_trip(
        w in 1u32..40,
        h in 1u32..12,
        format in arb_format(),
        bytes in proptest::collection::vec(any::<u8>(), 40 * 12 * 4),
    ) {
        let n = (w * h) as usize * format.bytes_per_pixel();
        let img = ImageRef::packed(w, h, format, &bytes[..n]).unwrap();
        let dec = decode(&encode(&img).unwrap(), u64::MAX).unwrap();
        prop_assert!(dec.same_picture(&img));
    }

    #[test]
    fn synthetic_images_round_trip(
        w in 1u32..90,
        h in 1u32..30,
        format in arb_format(),
        kind in 0u8..4,
        seed in any::<u32>(),
    ) {
        let data = synthetic(w, h, format, kind, seed);
        let img = ImageRef::packed(w, h, format, &data).unwrap();
        let dec = decode(&encode(&img).unwrap(), u64::MAX).unwrap();
        prop_assert!(dec.same_picture(&img));
    }

    #[test]
    fn garbage_after_a_header_never_panics(
        ty in 3u32..6,
        w in 1u32..64,
        h in 1u32..64,
        body in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut s = Vec::new();
        for v in [QUIC_MAGIC, QUIC_VERSION, ty, w, h] {
            s.extend_from_slice(&v.to_le_bytes());
        }
        s.extend_from_slice(&body);
        if let Ok(d) = decode(&s, u64::MAX) {
            prop_assert_eq!(d.pixels.len(), (w * h) as usize * d.format.bytes_per_pixel());
        }
    }

    #[test]
    fn corrupted_streams_never_panic(flips in proptest::collection::vec((0usize..4096, 0u8..8), 1..6)) {
        let mut s = valid_stream();
        let n = s.len();
        for (pos, bit) in flips {
            s[20 + pos % (n - 20)] ^= 1 << bit;
        }
        let _ = decode(&s, u64::MAX);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn wide_images_round_trip(
        w in 2000u32..4300,
        h in 1u32..4,
        format in arb_format(),
        kind in 0u8..4,
        seed in any::<u32>(),
    ) {
        let data = synthetic(w, h, format, kind, seed);
        let img = ImageRef::packed(w, h, format, &data).unwrap();
        let dec = decode(&encode(&img).unwrap(), u64::MAX).unwrap();
        prop_assert!(dec.same_picture(&img));
    }
}
