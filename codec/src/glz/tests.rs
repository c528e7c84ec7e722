use proptest::prelude::*;

use super::*;
use crate::lz::tests::{Rng, Scene, scene, to_format};

fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

#[test]
fn header_layout() {
    let px = [1u8, 2, 3, 4, 5, 6, 7, 8];
    let img = ImageRef::packed(2, 1, PixelFormat::Rgb32, &px).unwrap();
    let mut enc = Encoder::new(1000);
    let first = enc.encode(&img).unwrap();
    let second = enc.encode(&img).unwrap();
    for (d, id, dist) in [(&first, 0u64, 0u32), (&second, 1, 1)] {
        assert_eq!(be32(d, 0), MAGIC);
        assert_eq!(be32(d, 4), VERSION);
        assert_eq!(d[8], 8 | 0x10);
        assert_eq!((be32(d, 9), be32(d, 13), be32(d, 17)), (2, 1, 8));
        assert_eq!(u64::from(be32(d, 21)) << 32 | u64::from(be32(d, 25)), id);
        assert_eq!(be32(d, 29), dist);
    }
    assert_eq!(&first[33..], &[1, 1, 2, 3, 5, 6, 7]);
    let mut dec = Decoder::new(1000);
    assert!(dec.decode(&first, 10).unwrap().same_picture(&img));
    assert!(dec.decode(&second, 10).unwrap().same_picture(&img));
}

#[test]
fn copy_forms_round_trip_through_the_parser() {
    // Every size class of offset and image distance, for each kind.
    for dist in [
        0u64,
        1,
        63,
        64,
        16383,
        16384,
        4_194_303,
        4_194_304,
        255,
        256,
        65535,
        65536,
        (1 << 24) - 1,
    ] {
        for offset in [
            0usize,
            15,
            4095,
            4096,
            (1 << 17) - 1,
            1 << 17,
            (1 << 25) - 1,
        ] {
            if offset >= 4096 && dist >= 1 << 24 {
                continue;
            }
            let mut out = Vec::new();
            put_copy::<RgbKind>(&mut out, 1000, dist, offset);
            assert_eq!(out.len(), copy_cost(dist, offset) + 4, "{dist} {offset}");
            // Parse it back the way the decoder does.
            let mut r = Reader { data: &out, pos: 0 };
            let ctrl = r.byte().unwrap();
            assert_eq!(r.length::<RgbKind>(ctrl).unwrap(), 1000);
            let mut o = usize::from(ctrl & 15) | usize::from(r.byte().unwrap()) << 4;
            let b = r.byte().unwrap();
            let mut d = 0u64;
            if ctrl & 16 == 0 {
                d = u64::from(b & 63);
                for i in 0..b >> 6 {
                    d |= u64::from(r.byte().unwrap()) << (6 + 8 * i);
                }
            } else {
                o |= usize::from(b & 31) << 12;
                for i in 0..b >> 6 {
                    d |= u64::from(r.byte().unwrap()) << (8 * i);
                }
                if b & 32 != 0 {
                    o |= usize::from(r.byte().unwrap()) << 17;
                }
            }
            assert_eq!((d, o, r.pos), (dist, offset, out.len()));
        }
    }
}

fn image(kind: Scene, w: u32, h: u32, seed: u64, format: PixelFormat) -> (Vec<u8>, usize) {
    to_format(&scene(kind, w, h, seed), w, h, format, 0)
}

#[test]
fn single_images_round_trip() {
    for format in [
        PixelFormat::Rgb32,
        PixelFormat::Rgba,
        PixelFormat::Rgb24,
        PixelFormat::Rgb16,
    ] {
        for (w, h) in [(1, 1), (1, 5), (5, 1), (3, 3), (33, 17), (200, 70)] {
            for kind in [
                Scene::Noise,
                Scene::Gradient,
                Scene::Text,
                Scene::Blocks,
                Scene::Desktop,
            ] {
                let (data, stride) = image(kind, w, h, u64::from(w + h), format);
                let img = ImageRef::new(w, h, stride, format, &data).unwrap();
                let mut enc = Encoder::new(1 << 20);
                let mut dec = Decoder::new(1 << 20);
                let out = enc.encode(&img).unwrap();
                assert!(
                    dec.decode(&out, 1 << 20).unwrap().same_picture(&img),
                    "{kind:?} {w}x{h} {format:?}"
                );
            }
        }
    }
}

#[test]
fn a_repeated_image_is_a_reference() {
    let (data, stride) = image(Scene::Desktop, 300, 200, 4, PixelFormat::Rgb32);
    let img = ImageRef::new(300, 200, stride, PixelFormat::Rgb32, &data).unwrap();
    let mut enc = Encoder::new(1 << 20);
    let mut dec = Decoder::new(1 << 20);
    let first = enc.encode(&img).unwrap();
    let second = enc.encode(&img).unwrap();
    assert!(
        second.len() < 33 + 300,
        "{} then {}",
        first.len(),
        second.len()
    );
    assert!(dec.decode(&first, 1 << 20).unwrap().same_picture(&img));
    assert!(dec.decode(&second, 1 << 20).unwrap().same_picture(&img));
    // Without the first image, the second cannot be decoded.
    let mut fresh = Decoder::new(1 << 20);
    assert_eq!(
        fresh.decode(&second, 1 << 20).err(),
        Some(DecodeError::MissingImage { id: 1, wanted: 0 })
    );
}

/// A scrolled screen of incompressible content (what fbdev's benchmark draws): every frame is
/// the previous one moved up by some rows, so after the first each is mostly a reference,
/// also long after the image the content first appeared in has left the window (its hash
/// entries must move on to the images that copied it).
#[test]
fn a_scrolled_screen_stays_a_reference_after_the_window_wraps() {
    let (w, h) = (64u32, 48u32);
    let mut seed = 7u32;
    let noise: Vec<u8> = (0..w * h * 4)
        .map(|_| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) as u8
        })
        .collect();
    let stride = w as usize * 4;
    // Three frames fit the window: it wraps every few frames.
    let mut enc = Encoder::new(3 * w * h + 1);
    let mut dec = Decoder::new(3 * w * h + 1);
    for frame in 0..20usize {
        let px: Vec<u8> = (0..h as usize)
            .flat_map(|y| {
                let s = ((y + frame * 5) % h as usize) * stride;
                noise[s..s + stride].to_vec()
            })
            .collect();
        let img = ImageRef::packed(w, h, PixelFormat::Rgb32, &px).unwrap();
        let out = enc.encode(&img).unwrap();
        assert!(dec.decode(&out, 1 << 20).unwrap().same_picture(&img));
        if frame > 0 {
            assert!(
                out.len() < (w * h) as usize / 4,
                "frame {frame}: {} bytes for a moved picture",
                out.len()
            );
        }
    }
}

/// The model of spice-gtk's decoder window: after image `id` with `dist`, it keeps ids
/// `id - dist ..= id` of those it had.
#[test]
fn the_window_wraps_many_times_and_both_sides_agree() {
    let window = 12_000u32;
    let mut enc = Encoder::new(window);
    let mut dec = Decoder::new(window);
    let mut rng = Rng(12345);
    let mut model: Vec<u64> = Vec::new();
    let (mut sent, mut raw, mut cross) = (0usize, 0usize, 0usize);
    let formats = [PixelFormat::Rgb32, PixelFormat::Rgba, PixelFormat::Rgb16];
    for n in 0..600u64 {
        // A few recurring pictures, so images reference earlier ones; sizes vary so the
        // number of images in the window changes.
        let (w, h) = (8 + rng.below(60) as u32, 4 + rng.below(50) as u32);
        let seed = rng.below(5);
        let kind = [Scene::Text, Scene::Blocks, Scene::Desktop][rng.below(3) as usize];
        let format = formats[rng.below(3) as usize];
        let (data, stride) = image(kind, w, h, seed, format);
        let img = ImageRef::new(w, h, stride, format, &data).unwrap();
        let held_before: Vec<u64> = enc.held_ids().collect();
        let out = enc.encode(&img).unwrap();
        let id = u64::from(be32(&out, 21)) << 32 | u64::from(be32(&out, 25));
        let dist = u64::from(be32(&out, 29));
        assert_eq!(id, n);
        // The encoder referenced only what it still held and what the client holds: the
        // head is held, and everything the client dropped is older than the head.
        if dist > 0 {
            assert!(held_before.contains(&(id - dist)));
        }
        model.retain(|&k| k >= id - dist);
        model.push(id);
        let decoded = dec.decode(&out, 1 << 20).unwrap();
        assert!(decoded.same_picture(&img), "image {n}");
        assert_eq!(dec.kept_ids().collect::<Vec<_>>(), model, "after image {n}");
        assert_eq!(enc.held_ids().collect::<Vec<_>>(), model, "after image {n}");
        assert!(enc.held_pixels <= u64::from(window));
        sent += out.len();
        raw += data.len();
        if out.len() < data.len() / 10 {
            cross += 1;
        }
    }
    // 600 images of ~1000 pixels in a 12000-pixel window: it wrapped dozens of times, and
    // recurring pictures went out as references.
    assert!(cross > 100, "{cross} small images");
    assert!(sent * 5 < raw, "{sent} of {raw}");
}

#[test]
fn images_of_another_type_are_never_referenced() {
    // Same picture as RGB16 and RGB32: a cross-type reference would make our decoder fail.
    let mut enc = Encoder::new(1 << 16);
    let mut dec = Decoder::new(1 << 16);
    for i in 0..6 {
        let format = if i % 2 == 0 {
            PixelFormat::Rgb16
        } else {
            PixelFormat::Rgb32
        };
        let (data, stride) = image(Scene::Text, 60, 30, 1, format);
        let img = ImageRef::new(60, 30, stride, format, &data).unwrap();
        let out = enc.encode(&img).unwrap();
        assert!(dec.decode(&out, 1 << 20).unwrap().same_picture(&img));
    }
}

#[test]
fn window_limits() {
    let px = vec![0u8; 100 * 4];
    let img = ImageRef::packed(10, 10, PixelFormat::Rgb32, &px).unwrap();
    assert_eq!(
        Encoder::new(0).encode(&img),
        Err(EncodeError::TooBigForWindow {
            pixels: 100,
            window: 0
        })
    );
    assert!(Encoder::new(100).encode(&img).is_err());
    let mut enc = Encoder::new(101);
    let a = enc.encode(&img).unwrap();
    let b = enc.encode(&img).unwrap();
    // The first image had to go to make room for the second: no reference, head is itself.
    assert_eq!(be32(&b, 29), 0);
    assert_eq!(enc.held_ids().collect::<Vec<_>>(), vec![1]);
    let mut dec = Decoder::new(101);
    dec.decode(&a, 1000).unwrap();
    dec.decode(&b, 1000).unwrap();
    assert_eq!(dec.kept_ids().collect::<Vec<_>>(), vec![1]);
    assert_eq!(Encoder::new(u32::MAX).window_pixels(), MAX_WINDOW_PIXELS);
    // A decoder with a smaller window than the server thinks refuses to keep too much.
    let mut enc = Encoder::new(1000);
    let mut small = Decoder::new(150);
    small.decode(&enc.encode(&img).unwrap(), 1000).unwrap();
    assert!(matches!(
        small.decode(&enc.encode(&img).unwrap(), 1000),
        Err(DecodeError::WindowOverflow { .. })
    ));
    assert!(matches!(
        Decoder::new(50).decode(&a, 1000),
        Err(DecodeError::LargerThanWindow { .. })
    ));
}

#[test]
fn reset_restarts_ids() {
    let px = vec![7u8; 64 * 4];
    let img = ImageRef::packed(8, 8, PixelFormat::Rgb32, &px).unwrap();
    let mut enc = Encoder::new(1000);
    enc.encode(&img).unwrap();
    enc.encode(&img).unwrap();
    enc.reset();
    assert_eq!(enc.next_id(), 0);
    let out = enc.encode(&img).unwrap();
    assert_eq!((be32(&out, 25), be32(&out, 29)), (0, 0));
    // A fresh client (new session) decodes it without the old images.
    assert!(
        Decoder::new(1000)
            .decode(&out, 100)
            .unwrap()
            .same_picture(&img)
    );
}

fn sequence() -> Vec<Vec<u8>> {
    let mut enc = Encoder::new(1 << 14);
    (0..3)
        .map(|i| {
            let (data, stride) = image(Scene::Desktop, 40, 30, 1, PixelFormat::Rgba);
            let img = ImageRef::new(40, 30, stride, PixelFormat::Rgba, &data).unwrap();
            let _ = i;
            enc.encode(&img).unwrap()
        })
        .collect()
}

#[test]
fn malformed_payloads_are_refused() {
    let seq = sequence();
    let fresh = || {
        let mut d = Decoder::new(1 << 14);
        d.decode(&seq[0], 1 << 20).unwrap();
        d
    };
    assert!(fresh().decode(&seq[1], 1 << 20).is_ok());
    let p = &seq[1];
    for cut in [0, 10, 33, 40, p.len() - 1] {
        assert!(fresh().decode(&p[..cut], 1 << 20).is_err(), "cut {cut}");
    }
    let mut bad = p.clone();
    bad[0] ^= 1;
    assert!(matches!(
        fresh().decode(&bad, 1 << 20),
        Err(DecodeError::BadMagic(_))
    ));
    let mut bad = p.clone();
    bad[8] = 0x15;
    assert_eq!(
        fresh().decode(&bad, 1 << 20).err(),
        Some(DecodeError::UnsupportedType(5))
    );
    let mut bad = p.clone();
    bad[20] ^= 8;
    assert!(matches!(
        fresh().decode(&bad, 1 << 20),
        Err(DecodeError::BadStride { .. })
    ));
    assert!(matches!(
        fresh().decode(p, 100),
        Err(DecodeError::TooManyPixels { .. })
    ));
    let mut long = p.clone();
    long.push(0);
    assert_eq!(
        fresh().decode(&long, 1 << 20).err(),
        Some(DecodeError::TrailingBytes { count: 1 })
    );
    // Ids must go up.
    let mut d = fresh();
    assert!(matches!(
        d.decode(&seq[0], 1 << 20),
        Err(DecodeError::IdNotIncreasing { .. })
    ));
    // A head before id 0.
    let mut bad = seq[0].clone();
    bad[32] = 5;
    assert!(matches!(
        Decoder::new(1 << 14).decode(&bad, 1 << 20),
        Err(DecodeError::HeadBeforeZero { .. })
    ));
    // Huge dimensions with a tiny stream fail before allocating.
    let mut huge = seq[0][..33].to_vec();
    huge[9..13].copy_from_slice(&4000u32.to_be_bytes());
    huge[13..17].copy_from_slice(&4000u32.to_be_bytes());
    huge[17..21].copy_from_slice(&16000u32.to_be_bytes());
    huge.extend_from_slice(&[0xe0, 255, 255, 0, 0, 0]);
    assert!(matches!(
        Decoder::new(MAX_WINDOW_PIXELS).decode(&huge, u64::MAX),
        Err(DecodeError::ImplausibleSize { .. })
    ));
}

#[test]
fn random_damage_never_panics() {
    let seq = sequence();
    let mut rng = Rng(99);
    for _ in 0..3000 {
        let mut d = Decoder::new(1 << 14);
        d.decode(&seq[0], 1 << 20).unwrap();
        let mut bad = seq[1].clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(bad.len() as u64) as usize;
            bad[i] = rng.next() as u8;
        }
        let _ = d.decode(&bad, 1 << 20);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_sequences_round_trip(window in 50u32..3000,
                                 shots in prop::collection::vec((1u32..30, 1u32..20, 0u64..3, 0usize..4), 1..25)) {
        let mut enc = Encoder::new(window);
        let mut dec = Decoder::new(window);
        let formats = [PixelFormat::Rgb32, PixelFormat::Rgba, PixelFormat::Rgb24, PixelFormat::Rgb16];
        for (w, h, seed, f) in shots {
            let (data, stride) = image(Scene::Blocks, w, h, seed, formats[f]);
            let img = ImageRef::new(w, h, stride, formats[f], &data).unwrap();
            match enc.encode(&img) {
                Ok(out) => prop_assert!(dec.decode(&out, 1 << 20).unwrap().same_picture(&img)),
                Err(EncodeError::TooBigForWindow { .. }) => prop_assert!(u64::from(w * h) >= u64::from(window)),
            }
        }
    }

    #[test]
    fn prop_garbage_never_panics(tail in prop::collection::vec(any::<u8>(), 0..120), ty in 0u8..32) {
        let mut data = sequence()[1][..33].to_vec();
        data[8] = ty;
        data[9..13].copy_from_slice(&6u32.to_be_bytes());
        data[13..17].copy_from_slice(&5u32.to_be_bytes());
        data[17..21].copy_from_slice(&24u32.to_be_bytes());
        data.extend_from_slice(&tail);
        let mut d = Decoder::new(1 << 14);
        d.decode(&sequence()[0], 1 << 20).unwrap();
        let _ = d.decode(&data, 1 << 20);
    }
}

#[test]
fn long_offsets_within_and_across_images() {
    // 700x300 = 210000 pixels: offsets past 2^17 both inside an image (rows far above)
    // and into the earlier image.
    let (a, _) = image(Scene::Text, 700, 300, 1, PixelFormat::Rgb32);
    let (mut b, _) = image(Scene::Text, 700, 300, 1, PixelFormat::Rgb32);
    // Change the top of the second copy so its first copies come from far into the first.
    b[..700 * 4 * 20]
        .iter_mut()
        .for_each(|x| *x = x.wrapping_add(1));
    let mut enc = Encoder::new(1 << 20);
    let mut dec = Decoder::new(1 << 20);
    for data in [&a, &b] {
        let img = ImageRef::packed(700, 300, PixelFormat::Rgb32, data).unwrap();
        let out = enc.encode(&img).unwrap();
        assert!(dec.decode(&out, 1 << 20).unwrap().same_picture(&img));
    }
}

/// A scrolled text console: glyphs repeat everywhere, so the hash table alone finds only
/// short matches in the image itself; the row-move detector offers the moved copy in the
/// previous image, and every scrolled frame costs a small part of the first.
#[test]
fn scrolled_text_is_found_moved_in_the_previous_image() {
    let (w, h) = (256u32, 192u32);
    let text = crate::corpus::text(w, h * 3);
    let stride = w as usize * 4;
    let mut enc = Encoder::new(4 * w * h);
    let mut dec = Decoder::new(4 * w * h);
    let mut sizes = Vec::new();
    for frame in 0..8usize {
        let top = frame * 13;
        let px = &text[top * stride..(top + h as usize) * stride];
        let img = ImageRef::packed(w, h, PixelFormat::Rgb32, px).unwrap();
        let out = enc.encode(&img).unwrap();
        assert!(dec.decode(&out, 1 << 20).unwrap().same_picture(&img));
        sizes.push(out.len());
    }
    for (i, s) in sizes.iter().enumerate().skip(1) {
        assert!(
            *s * 5 < sizes[0],
            "frame {i}: {s} bytes, the first {}",
            sizes[0]
        );
    }
    let rows = |top: usize| -> Vec<u32> {
        text[top * stride..(top + h as usize) * stride]
            .chunks_exact(4)
            .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0]))
            .collect()
    };
    assert_eq!(
        super::vertical_shift(&rows(0), &rows(13), w as usize),
        Some(-13)
    );
    assert_eq!(
        super::vertical_shift(&rows(13), &rows(0), w as usize),
        Some(13)
    );
    assert_eq!(super::vertical_shift(&rows(0), &rows(0), w as usize), None);
}
