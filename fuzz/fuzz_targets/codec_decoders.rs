//! The image decoders of `saffron-codec` on hostile streams, and the encoders' round trip.
//!
//! The library client and the tests decode what a server sends with these decoders, so a
//! malformed stream must give an error, never a panic, a hang or an allocation past the
//! bound. The first byte picks what to do with the rest:
//!
//! - 0 QUIC, 1 LZ (RGB types), 2 LZ (palette types), 3 LZ4 (width and height from the next
//!   two bytes), 4 zlib-GLZ, 5 GLZ (the rest split at 0xFF 0xFE into successive images
//!   decoded with one dictionary, as a client's stream of images);
//! - 6: the rest is an image (width from the next byte, then 32-bit pixels): each encoder's
//!   output must decode to exactly that image.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saffron_codec::{ImageRef, PixelFormat, glz, lz, lz4, quic, zlib_glz};

/// Bound on decoded pixels (a 1024x1024 image): enough to reach every code path.
const MAX_PIXELS: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    match op % 7 {
        0 => {
            let _ = quic::decode(rest, MAX_PIXELS);
        }
        1 => {
            let _ = lz::decode(rest, MAX_PIXELS);
        }
        2 => {
            let _ = lz::decode_palette(rest, MAX_PIXELS);
        }
        3 => {
            if let [w, h, stream @ ..] = rest {
                let _ = lz4::decode(stream, u32::from(*w) + 1, u32::from(*h) + 1, MAX_PIXELS);
            }
        }
        4 => {
            if let [a, b, stream @ ..] = rest {
                let size = usize::from(u16::from_le_bytes([*a, *b]));
                let _ = zlib_glz::decompress(stream, size, 1 << 22);
            }
        }
        5 => {
            let mut d = glz::Decoder::new(1 << 16);
            for image in split(rest) {
                let _ = d.decode(image, MAX_PIXELS);
            }
        }
        _ => round_trip(rest),
    }
});

/// `data` cut at each 0xFF 0xFE.
fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == 0xff && data[i + 1] == 0xfe {
            out.push(&data[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    out.push(&data[start..]);
    out
}

fn round_trip(rest: &[u8]) {
    let Some((&w, px)) = rest.split_first() else {
        return;
    };
    let w = u32::from(w % 64) + 1;
    let h = (px.len() / (w as usize * 4)).min(64) as u32;
    if h == 0 {
        return;
    }
    let Ok(img) = ImageRef::packed(w, h, PixelFormat::Rgb32, px) else {
        return;
    };
    let max = u64::from(w) * u64::from(h);
    let q = quic::encode(&img).expect("QUIC encodes every RGB32 image");
    assert!(
        quic::decode(&q, max)
            .expect("QUIC decodes its own")
            .same_picture(&img)
    );
    let l = lz::encode(&img).expect("LZ encodes every RGB32 image");
    assert!(
        lz::decode(&l, max)
            .expect("LZ decodes its own")
            .same_picture(&img)
    );
    let l4 = lz4::encode(&img).expect("LZ4 encodes every RGB32 image");
    assert!(
        lz4::decode(&l4, w, h, max)
            .expect("LZ4 decodes its own")
            .same_picture(&img)
    );
    let mut e = glz::Encoder::new(1 << 12);
    let mut d = glz::Decoder::new(1 << 12);
    for _ in 0..3 {
        let g = e.encode(&img).expect("GLZ encodes every RGB32 image");
        assert!(
            d.decode(&g, max)
                .expect("GLZ decodes its own")
                .same_picture(&img)
        );
    }
}
