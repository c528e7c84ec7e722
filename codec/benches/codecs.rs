//! Encode (and decode) throughput and compression ratio of the Spice image codecs on full-HD
//! text, UI and photo-like frames from the deterministic corpus, next to general-purpose
//! yardsticks (plain LZ4 blocks and zstd on the raw pixels).
//!
//! Throughput is in bytes of raw input pixels per second, so every codec is measured against
//! the same work. The compression ratio (input bytes / output bytes) is printed once per
//! (codec, image) before its measurement. Settings keep the whole run to a minute or two:
//! `cargo bench -p saffron-codec` (add `-- --quick` for a rough pass, or a name filter).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use saffron_codec::{ImageRef, PixelFormat, corpus, graduality, lz4};

const WIDTH: u32 = 1920;
const HEIGHT: u32 = 1080;

/// What an encoder gets: the image, and the same pixels as one packed slice for the
/// yardsticks, which know nothing of images.
struct Input<'a> {
    image: ImageRef<'a>,
    raw: &'a [u8],
}

type EncodeFn = fn(&Input<'_>) -> Vec<u8>;

/// GLZ's dictionary window for the bench: spice-gtk's largest (16 Mi pixels), which holds
/// several 1920x1080 frames.
const GLZ_WINDOW: u32 = saffron_codec::glz::MAX_WINDOW_PIXELS;

/// The codecs under test, one line each. GLZ gets a fresh dictionary per frame, so its
/// number is its single-image cost and ratio (what it gains across frames is the server's
/// benchmark's to show).
const CODECS: &[(&str, EncodeFn)] = &[
    ("spice-quic", |i| {
        saffron_codec::quic::encode(&i.image).expect("quic encodes")
    }),
    ("spice-lz", |i| {
        saffron_codec::lz::encode(&i.image).expect("lz encodes")
    }),
    ("spice-glz", |i| {
        saffron_codec::glz::Encoder::new(GLZ_WINDOW)
            .encode(&i.image)
            .expect("glz encodes")
    }),
    ("spice-lz4", |i| lz4::encode(&i.image).expect("lz4 encodes")),
    // Lossy: the MJPEG frames of video streams, at the streams' default quality.
    ("mjpeg-q70", |i| {
        saffron_codec::mjpeg::encode(&i.image, 70).expect("mjpeg encodes")
    }),
    ("lz4_flex-raw", |i| lz4_flex::block::compress(i.raw)),
    ("zstd1-raw", |i| {
        zstd::bulk::compress(i.raw, 1).expect("zstd encodes")
    }),
    ("zstd3-raw", |i| {
        zstd::bulk::compress(i.raw, 3).expect("zstd encodes")
    }),
];

type MakeFn = fn(u32, u32) -> Vec<u8>;

const IMAGES: &[(&str, MakeFn)] = &[
    ("text", corpus::text),
    ("ui", corpus::ui),
    ("photo", corpus::photo),
];

fn benches(c: &mut Criterion) {
    for &(image_name, make) in IMAGES {
        let raw = make(WIDTH, HEIGHT);
        let image = ImageRef::packed(WIDTH, HEIGHT, PixelFormat::Rgb32, &raw).expect("valid image");
        let input = Input { image, raw: &raw };
        let bytes = raw.len() as u64;
        println!(
            "{image_name}: {WIDTH}x{HEIGHT} Rgb32, graduality {:?}",
            graduality::estimate(&image)
        );

        let mut group = c.benchmark_group(format!("encode/{image_name}"));
        group.throughput(Throughput::Bytes(bytes));
        for &(codec, encode) in CODECS {
            let out = encode(&input);
            println!(
                "ratio {codec:>14} on {image_name:<5}: {:7.2} ({} -> {} bytes)",
                raw.len() as f64 / out.len() as f64,
                raw.len(),
                out.len()
            );
            group.bench_function(codec, |b| b.iter(|| encode(black_box(&input))));
        }
        group.finish();

        let mut group = c.benchmark_group(format!("decode/{image_name}"));
        group.throughput(Throughput::Bytes(bytes));
        let payload = lz4::encode(&image).expect("lz4 encodes");
        group.bench_function("spice-lz4", |b| {
            b.iter(|| lz4::decode(black_box(&payload), WIDTH, HEIGHT, u64::MAX).expect("decodes"))
        });
        group.finish();

        let mut group = c.benchmark_group(format!("graduality/{image_name}"));
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function("estimate", |b| {
            b.iter(|| graduality::estimate(black_box(&image)))
        });
        group.finish();
    }
}

criterion_group! {
    name = codecs;
    // A full-HD frame takes milliseconds: few samples over a short time measure it well
    // enough and keep the run short.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(codecs);
