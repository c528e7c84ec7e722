//! Spice LZ4 images (`SPICE_IMAGE_TYPE_LZ4`, 109), sent only to clients that announce the
//! display capability `LZ4_COMPRESSION` (spice-gtk built with LZ4; spice-html5 never does).
//!
//! # Format
//!
//! The payload (the bytes after `data_size` of `SpiceLZ4Data`):
//!
//! | bytes | meaning |
//! |-------|---------|
//! | 0     | `top_down`: non-zero if the stream's first row is the top row of the image |
//! | 1     | `SpiceBitmapFmt`: 6 `16BIT`, 7 `24BIT`, 8 `32BIT`, 9 `RGBA` (nothing else) |
//! | 2..   | one or more blocks: compressed length (u32 **big-endian**), then a raw LZ4 block |
//!
//! The blocks decompressed and concatenated are the image rows, each packed at
//! `width * bytes_per_pixel` with no padding, bottom row first when `top_down` is 0. The
//! payload carries no width or height: the client takes them from the image descriptor.
//!
//! How spice-gtk decodes it (spice-common `canvas_get_lz4`), which fixes what we may send:
//!
//! * It decodes every block with one `LZ4_streamDecode_t`, `LZ4_decompress_safe_continue`, into
//!   the surface memory right after the previous block's output. The output is one flat
//!   buffer, so a block may copy from up to 64 KiB of earlier output, across block boundaries
//!   ("linked blocks"); independent blocks are valid too.
//! * Each block may fill whatever is left of the image: block boundaries need not fall on row
//!   boundaries and blocks may be of any size. A block that fails, or decodes to nothing, fails
//!   the whole image. It reads blocks until the payload ends, so nothing may follow the last
//!   block. It does not check that the blocks fill the image (missing rows stay garbage);
//!   our decoder refuses that.
//! * `32BIT` and `RGBA` are the same bytes (B, G, R, X/A); the client draws the first as
//!   x8r8g8b8 (X ignored) and the second as a8r8g8b8. `24BIT` is B, G, R; `16BIT` is
//!   little-endian x1r5g5b5. For 24- and 16-bit images the client's surface rows are padded to
//!   4 bytes: it decodes packed rows and then moves each row to its aligned place, so the wire
//!   is packed in every format.
//! * With `top_down` 0 it decodes into a surface with a negative stride: the first row in the
//!   stream ends up at the bottom.
//!
//! spice-server (`lz4-encoder.c`) writes the bitmap's own `top_down` flag and format, and one
//! block per chunk of whole rows of the bitmap (usually the whole image), linked through
//! `LZ4_compress_fast_continue`; it only chooses LZ4 for bitmaps without row padding.
//!
//! # Our encoder
//!
//! Always top-down (that is how [`ImageRef`] holds rows). The packed rows are cut into blocks
//! of [`BLOCK_LEN`] bytes, each compressed with the previous 64 KiB as the LZ4 dictionary, which
//! is exactly what the client's stream decoder has behind the block: the result compresses as
//! well as one big block (matches cross block boundaries) while the encoder's working buffer
//! stays block-sized and in cache. The rows are copied into that buffer as they are (the X
//! byte of `Rgb32` included; the client ignores it): LZ4 needs contiguous input and
//! [`ImageRef`] hands out rows. Payloads were checked outside this repository against
//! liblz4 1.9.4 decoding them exactly as `canvas_get_lz4` does, for all four formats, odd
//! sizes and multi-block frames; and payloads made the way `lz4-encoder.c` makes them (one
//! linked block per 1 or 17 rows or per image, top-down and bottom-up) decode with ours.
//!
//! LZ4 cannot shrink noise-like pictures: the payload can then be slightly larger than the
//! raw pixels. spice-server sends such images uncompressed instead; so should our callers
//! (compare the payload length with `width * height * bytes_per_pixel`).

use lz4_flex::block::{
    CompressError, DecompressError, compress_into_with_dict, decompress_into_with_dict,
    get_maximum_output_size,
};
use thiserror::Error;

use crate::image::{DecodedImage, ImageRef, PixelFormat};

/// How far back an LZ4 match can reach, so how much earlier output a block can use.
const WINDOW: usize = 64 * 1024;

/// Uncompressed bytes per block written by [`encode`]. Large enough that the per-block costs
/// (hashing the 64 KiB dictionary, the 4-byte length) are a few per cent, small enough that the
/// block and its compressed form stay in the CPU cache.
pub const BLOCK_LEN: usize = 1 << 20;

/// The most an LZ4 block can expand: each byte of match-length extension adds at most 255
/// output bytes. A payload of `n` bytes cannot decompress to more than `n * 256` bytes, which
/// bounds what we allocate before decompressing.
const MAX_EXPANSION: usize = 256;

/// Spice's `SpiceBitmapFmt` values that LZ4 images may carry.
const FMT_16BIT: u8 = 6;
const FMT_24BIT: u8 = 7;
const FMT_32BIT: u8 = 8;
const FMT_RGBA: u8 = 9;

/// Why an image could not be encoded. Our own images are always valid, so these report a
/// defect in the LZ4 library rather than in the input.
#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("LZ4 block compression failed: {0}")]
    Compress(#[from] CompressError),
    #[error("a compressed block of {0} bytes does not fit its 32-bit length")]
    BlockTooLong(usize),
}

/// Why an LZ4 payload was refused.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("image of {width}x{height} is empty")]
    Empty { width: u32, height: u32 },
    #[error("image of {width}x{height} exceeds the limit of {max_pixels} pixels")]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    #[error("{len} bytes cannot hold the 2-byte LZ4 image header")]
    MissingHeader { len: usize },
    #[error("bitmap format {0} is not one LZ4 images carry (6, 7, 8 or 9)")]
    UnknownFormat(u8),
    #[error(
        "{len} bytes of LZ4 data cannot decompress to the {need} bytes of a {width}x{height} image"
    )]
    ImpossibleSize {
        len: usize,
        need: u64,
        width: u32,
        height: u32,
    },
    #[error("no LZ4 block follows the header")]
    NoBlocks,
    #[error("the block length at offset {offset} needs 4 bytes, only {left} are left")]
    TruncatedLength { offset: usize, left: usize },
    #[error("the block at offset {offset} claims {len} bytes, only {left} are left")]
    TruncatedBlock {
        offset: usize,
        len: u32,
        left: usize,
    },
    #[error("the block at offset {offset} follows a complete image")]
    ExtraBlock { offset: usize },
    #[error("the block at offset {offset} is not valid LZ4: {source}")]
    Block {
        offset: usize,
        source: DecompressError,
    },
    #[error("the block at offset {offset} decompresses to nothing")]
    EmptyBlock { offset: usize },
    #[error("the blocks decompress to {got} bytes, a {width}x{height} image needs {need}")]
    Incomplete {
        got: usize,
        need: usize,
        width: u32,
        height: u32,
    },
}

/// Encodes `image` as a Spice LZ4 payload (what follows `data_size`).
pub fn encode(image: &ImageRef<'_>) -> Result<Vec<u8>, EncodeError> {
    let format = match image.format() {
        PixelFormat::Rgb16 => FMT_16BIT,
        PixelFormat::Rgb24 => FMT_24BIT,
        PixelFormat::Rgb32 => FMT_32BIT,
        PixelFormat::Rgba => FMT_RGBA,
    };
    let row_len = image.width() as usize * image.format().bytes_per_pixel();
    // ImageRef has checked that the rows exist in memory, so this cannot overflow.
    let total = row_len * image.height() as usize;
    let block_len = BLOCK_LEN.min(total);

    // The output buffer is sized for the worst case of every block up front, so blocks are
    // compressed straight into it: no copy, no regrowth. A large zeroed allocation comes from
    // fresh (lazily zeroed) pages, so only the bytes actually written ever cost anything.
    let blocks = total.div_ceil(block_len);
    let mut out = vec![0u8; 2 + blocks * (4 + get_maximum_output_size(block_len))];
    out[..2].copy_from_slice(&[1, format]);
    let mut len = 2;

    // `window` holds the dictionary (the last `history` bytes before the block) followed by
    // the block being filled.
    let mut window: Vec<u8> = Vec::with_capacity(WINDOW + block_len);
    let mut history = 0;
    let mut rows = image.rows();
    let mut pending: &[u8] = &[];
    loop {
        while window.len() < history + block_len {
            if pending.is_empty() {
                match rows.next() {
                    Some(row) => pending = row,
                    None => break,
                }
            }
            let take = pending.len().min(history + block_len - window.len());
            let (now, later) = pending.split_at(take);
            window.extend_from_slice(now);
            pending = later;
        }
        if window.len() == history {
            break;
        }
        let (dict, block) = window.split_at(history);
        let (length, free) = out[len..].split_at_mut(4);
        let n = compress_into_with_dict(block, free, dict)?;
        let n32 = u32::try_from(n).map_err(|_| EncodeError::BlockTooLong(n))?;
        length.copy_from_slice(&n32.to_be_bytes());
        len += 4 + n;

        let keep = window.len().min(WINDOW);
        let start = window.len() - keep;
        window.copy_within(start.., 0);
        window.truncate(keep);
        history = keep;
    }
    out.truncate(len);
    Ok(out)
}

/// Decodes a Spice LZ4 payload of a `width x height` image (sizes from the image descriptor),
/// refusing images of more than `max_pixels` pixels before allocating anything.
///
/// Accepts what spice-gtk accepts (any block sizes, blocks referencing earlier blocks,
/// bottom-up rows), except that the blocks must fill the image exactly. The X byte of `32BIT`
/// pixels and the top bit of `16BIT` pixels come out as 0.
pub fn decode(
    data: &[u8],
    width: u32,
    height: u32,
    max_pixels: u64,
) -> Result<DecodedImage, DecodeError> {
    if width == 0 || height == 0 {
        return Err(DecodeError::Empty { width, height });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(DecodeError::TooLarge {
            width,
            height,
            max_pixels,
        });
    }
    let [top_down, format, ref body @ ..] = *data else {
        return Err(DecodeError::MissingHeader { len: data.len() });
    };
    let format = match format {
        FMT_16BIT => PixelFormat::Rgb16,
        FMT_24BIT => PixelFormat::Rgb24,
        FMT_32BIT => PixelFormat::Rgb32,
        FMT_RGBA => PixelFormat::Rgba,
        other => return Err(DecodeError::UnknownFormat(other)),
    };
    if body.is_empty() {
        return Err(DecodeError::NoBlocks);
    }
    let need = pixels.saturating_mul(format.bytes_per_pixel() as u64);
    let impossible = DecodeError::ImpossibleSize {
        len: data.len(),
        need,
        width,
        height,
    };
    if need > (body.len() as u64).saturating_mul(MAX_EXPANSION as u64) {
        return Err(impossible);
    }
    let Ok(need) = usize::try_from(need) else {
        return Err(impossible);
    };

    let mut out = vec![0u8; need];
    let mut filled = 0;
    let mut rest = body;
    // Every pass consumes at least the 4-byte length, so the loop ends.
    while !rest.is_empty() {
        let offset = data.len() - rest.len();
        let Some((len, after)) = rest.split_first_chunk::<4>() else {
            return Err(DecodeError::TruncatedLength {
                offset,
                left: rest.len(),
            });
        };
        let len = u32::from_be_bytes(*len);
        let Some(block) = usize::try_from(len).ok().and_then(|l| after.get(..l)) else {
            return Err(DecodeError::TruncatedBlock {
                offset,
                len,
                left: after.len(),
            });
        };
        rest = &after[block.len()..];
        if filled == need {
            return Err(DecodeError::ExtraBlock { offset });
        }
        let (before, free) = out.split_at_mut(filled);
        let dict = &before[filled.saturating_sub(WINDOW)..];
        let n = decompress_into_with_dict(block, free, dict)
            .map_err(|source| DecodeError::Block { offset, source })?;
        if n == 0 {
            return Err(DecodeError::EmptyBlock { offset });
        }
        filled += n;
    }
    if filled != need {
        return Err(DecodeError::Incomplete {
            got: filled,
            need,
            width,
            height,
        });
    }

    let row_len = width as usize * format.bytes_per_pixel();
    if top_down == 0 {
        flip_rows(&mut out, row_len);
    }
    match format {
        PixelFormat::Rgb32 => out.chunks_exact_mut(4).for_each(|p| p[3] = 0),
        PixelFormat::Rgb16 => out.chunks_exact_mut(2).for_each(|p| p[1] &= 0x7f),
        PixelFormat::Rgba | PixelFormat::Rgb24 => {}
    }
    Ok(DecodedImage {
        width,
        height,
        format,
        pixels: out,
    })
}

/// Reverses the order of the `row_len`-byte rows of `pixels` in place (bottom-up to top-down).
fn flip_rows(pixels: &mut [u8], row_len: usize) {
    let rows = pixels.len() / row_len;
    for i in 0..rows / 2 {
        let (upper, lower) = pixels.split_at_mut((rows - 1 - i) * row_len);
        upper[i * row_len..(i + 1) * row_len].swap_with_slice(&mut lower[..row_len]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus;
    use proptest::prelude::*;

    const MAX: u64 = 1 << 26;

    fn round_trip(img: &ImageRef<'_>) -> Vec<u8> {
        let enc = encode(img).unwrap();
        let dec = decode(&enc, img.width(), img.height(), MAX).unwrap();
        assert!(
            dec.same_picture(img),
            "{}x{} {:?}",
            img.width(),
            img.height(),
            img.format()
        );
        enc
    }

    /// Splits the payload after the header into (length, block) pairs.
    fn blocks(enc: &[u8]) -> Vec<&[u8]> {
        let mut rest = &enc[2..];
        let mut v = Vec::new();
        while !rest.is_empty() {
            let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            v.push(&rest[4..4 + n]);
            rest = &rest[4 + n..];
        }
        v
    }

    #[test]
    fn header_says_top_down_and_format() {
        for (format, byte) in [
            (PixelFormat::Rgb16, 6),
            (PixelFormat::Rgb24, 7),
            (PixelFormat::Rgb32, 8),
            (PixelFormat::Rgba, 9),
        ] {
            let data = vec![0x5a; 3 * 2 * format.bytes_per_pixel()];
            let enc = round_trip(&ImageRef::packed(3, 2, format, &data).unwrap());
            assert_eq!(enc[..2], [1, byte]);
            let n = u32::from_be_bytes(enc[2..6].try_into().unwrap()) as usize;
            assert_eq!(enc.len(), 6 + n, "one block, nothing after it");
        }
    }

    #[test]
    fn small_and_odd_shapes() {
        for (w, h) in [(1, 1), (1, 37), (37, 1), (3, 3), (13, 7), (129, 65)] {
            for format in [
                PixelFormat::Rgb16,
                PixelFormat::Rgb24,
                PixelFormat::Rgb32,
                PixelFormat::Rgba,
            ] {
                let bpp = format.bytes_per_pixel();
                let data: Vec<u8> = (0..w * h * bpp).map(|i| (i * 7 % 251) as u8).collect();
                round_trip(&ImageRef::packed(w as u32, h as u32, format, &data).unwrap());
            }
        }
    }

    #[test]
    fn padded_strides_are_packed_on_the_wire() {
        let (w, h, stride) = (5u32, 4u32, 5 * 3 + 7);
        let data: Vec<u8> = (0..stride * h as usize).map(|i| i as u8).collect();
        let img = ImageRef::new(w, h, stride, PixelFormat::Rgb24, &data).unwrap();
        let enc = round_trip(&img);
        let raw = lz4_flex::block::decompress(blocks(&enc)[0], 1000).unwrap();
        assert_eq!(raw.len(), 5 * 3 * 4);
        assert_eq!(raw[15..30], data[stride..stride + 15]);
    }

    #[test]
    fn large_images_use_linked_blocks() {
        // 1.6 MB of text: two blocks, the second referencing the first.
        let (w, h) = (800u32, 500u32);
        let data = corpus::text(w, h);
        let img = ImageRef::packed(w, h, PixelFormat::Rgb32, &data).unwrap();
        let enc = round_trip(&img);
        let b = blocks(&enc);
        assert_eq!(b.len(), 2);
        // Alone, the second block refers to bytes it does not have.
        let second_len = data.len() - BLOCK_LEN;
        assert!(lz4_flex::block::decompress(b[1], second_len).is_err());
        assert!(
            enc.len() * 10 < data.len(),
            "text compresses well: {}",
            enc.len()
        );
    }

    #[test]
    fn long_runs_and_noise() {
        let solid = vec![0xffu8; 640 * 480 * 4];
        let enc = round_trip(&ImageRef::packed(640, 480, PixelFormat::Rgba, &solid).unwrap());
        assert!(enc.len() < 5000, "{}", enc.len());
        let mut seed = 1u32;
        let noise: Vec<u8> = (0..300 * 200 * 3)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 24) as u8
            })
            .collect();
        let enc = round_trip(&ImageRef::packed(300, 200, PixelFormat::Rgb24, &noise).unwrap());
        assert!(enc.len() < noise.len() + noise.len() / 100 + 32);
    }

    #[test]
    fn decodes_bottom_up_and_independent_blocks() {
        // Hand-built payload: bottom-up 2x3 Rgb32, one independent block per row, and the X
        // byte set in the stream.
        let rows: [[u8; 8]; 3] = [[1, 2, 3, 9, 4, 5, 6, 9], [7; 8], [8, 8, 8, 8, 0, 0, 0, 0]];
        let mut payload = vec![0, FMT_32BIT];
        for row in rows.iter().rev() {
            let block = lz4_flex::block::compress(row);
            payload.extend_from_slice(&(block.len() as u32).to_be_bytes());
            payload.extend_from_slice(&block);
        }
        let dec = decode(&payload, 2, 3, MAX).unwrap();
        assert_eq!(
            dec.pixels,
            [
                1, 2, 3, 0, 4, 5, 6, 0, 7, 7, 7, 0, 7, 7, 7, 0, 8, 8, 8, 0, 0, 0, 0, 0
            ]
        );
    }

    #[test]
    fn rgb16_top_bit_is_cleared() {
        let data = [0xff, 0xff, 0x34, 0x12];
        let img = ImageRef::packed(2, 1, PixelFormat::Rgb16, &data).unwrap();
        let dec = decode(&encode(&img).unwrap(), 2, 1, MAX).unwrap();
        assert_eq!(dec.pixels, [0xff, 0x7f, 0x34, 0x12]);
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let data = corpus::ui(64, 40);
        let img = ImageRef::packed(64, 40, PixelFormat::Rgb32, &data).unwrap();
        let enc = encode(&img).unwrap();
        let err = |d: &[u8], w, h| decode(d, w, h, MAX).unwrap_err();

        assert!(matches!(err(&enc, 0, 40), DecodeError::Empty { .. }));
        assert!(matches!(
            err(&[], 64, 40),
            DecodeError::MissingHeader { len: 0 }
        ));
        assert!(matches!(
            err(&enc[..1], 64, 40),
            DecodeError::MissingHeader { len: 1 }
        ));
        assert!(matches!(err(&enc[..2], 64, 40), DecodeError::NoBlocks));
        assert!(matches!(
            err(&enc[..7], 64, 40),
            DecodeError::ImpossibleSize { .. }
        ));
        assert!(matches!(err(&[1, 8], 1, 1), DecodeError::NoBlocks));
        let mut bad = enc.clone();
        bad[1] = 10;
        assert!(matches!(err(&bad, 64, 40), DecodeError::UnknownFormat(10)));
        // Truncated anywhere: an error, never a panic.
        for cut in 3..enc.len() {
            assert!(decode(&enc[..cut], 64, 40, MAX).is_err(), "cut at {cut}");
        }
        assert!(matches!(
            err(&[1, 8, 0, 0], 1, 1),
            DecodeError::TruncatedLength { .. }
        ));
        // Wrong dimensions: too few or too many pixels for the blocks.
        assert!(matches!(err(&enc, 64, 39), DecodeError::Block { .. }));
        assert!(matches!(err(&enc, 64, 41), DecodeError::Incomplete { .. }));
        // A second block after a complete image, and an empty block.
        let mut extra = enc.clone();
        extra.extend_from_slice(&[0, 0, 0, 1, 0x10]);
        assert!(matches!(
            err(&extra, 64, 40),
            DecodeError::ExtraBlock { .. }
        ));
        let mut empty = vec![1, 8, 0, 0, 0, 1, 0];
        empty.extend_from_slice(&enc[2..]);
        assert!(matches!(
            err(&empty, 64, 40),
            DecodeError::EmptyBlock { .. }
        ));
        // A length beyond the payload.
        let mut long = enc.clone();
        long[2] = 0x80;
        assert!(matches!(
            err(&long, 64, 40),
            DecodeError::TruncatedBlock { .. }
        ));
    }

    #[test]
    fn huge_dimensions_are_refused_before_allocating() {
        let enc = [1, 8, 0, 0, 0, 2, 0x10, 0];
        assert!(matches!(
            decode(&enc, u32::MAX, u32::MAX, u64::MAX),
            Err(DecodeError::ImpossibleSize { .. })
        ));
        assert!(matches!(
            decode(&enc, 100_000, 100_000, MAX),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    fn format_strategy() -> impl Strategy<Value = PixelFormat> {
        prop_oneof![
            Just(PixelFormat::Rgb16),
            Just(PixelFormat::Rgb24),
            Just(PixelFormat::Rgb32),
            Just(PixelFormat::Rgba),
        ]
    }

    proptest! {
        #[test]
        fn random_images_round_trip(
            w in 1u32..40, h in 1u32..40, pad in 0usize..9, format in format_strategy(),
            seed in any::<u64>(), palette in 1u64..300,
        ) {
            let bpp = format.bytes_per_pixel();
            let stride = w as usize * bpp + pad;
            // Few colours make matches likely; many make literals.
            let mut s = seed;
            let data: Vec<u8> = (0..stride * h as usize)
                .map(|i| {
                    if i % bpp == 0 {
                        s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    }
                    ((s >> 33) % palette) as u8 ^ (i % bpp) as u8
                })
                .collect();
            let img = ImageRef::new(w, h, stride, format, &data).unwrap();
            round_trip(&img);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200),
                                w in 1u32..64, h in 1u32..64) {
            let _ = decode(&data, w, h, MAX);
            let mut framed = vec![1, 8];
            framed.extend_from_slice(&(data.len() as u32).to_be_bytes());
            framed.extend_from_slice(&data);
            let _ = decode(&framed, w, h, MAX);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn corpus_round_trips(w in 1u32..300, h in 1u32..200, kind in 0usize..3) {
            let make: [fn(u32, u32) -> Vec<u8>; 3] = [corpus::text, corpus::ui, corpus::photo];
            let data = make[kind](w, h);
            round_trip(&ImageRef::packed(w, h, PixelFormat::Rgb32, &data).unwrap());
        }
    }
}
