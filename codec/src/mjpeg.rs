//! MJPEG: the video codec every Spice client decodes (`SPICE_VIDEO_CODEC_TYPE_MJPEG`).
//!
//! A Spice MJPEG stream is a sequence of independent, plain baseline JFIF pictures, one per
//! STREAM_DATA message. spice-gtk hands each to libjpeg(-turbo) with `jpeg_read_header` and
//! reads it as BGRX; it refuses nothing a baseline JPEG may hold, but its scanline buffer has
//! room for at most 4 rows per call (`rec_outbuf_height`), which rules out vertical sampling
//! factors above 2 with fancy upsampling off. We write 4:2:0 (factors 2x2), as spice-server's
//! encoder does, so the pictures are the ones its clients have always decoded.
//!
//! # Why `jpeg-encoder` and not libjpeg-turbo (`turbojpeg`)
//! Measured on this corpus at quality 70, 4:2:0 (a scratch benchmark; two shared cores, so
//! times are rough): a 320x240 photo frame 1.1–1.7 ms and 4.7 KB at 37.5 dB with
//! `jpeg-encoder` (simd), 0.3–0.4 ms and 4.7 KB at 37.9 dB with `turbojpeg`; 1920x1080
//! photo 37–47 ms vs 14–18 ms, same bytes within 1 %, PSNR within 0.3 dB. libjpeg-turbo is
//! 2–4x cheaper per frame, but: the `turbojpeg` crate's current line needs libjpeg-turbo 3,
//! which neither Debian 12 nor 13 packages (only its old 0.5 line links Debian's 2.1; the
//! alternative is a vendored cmake + nasm build); it is C on a per-frame path; and the
//! streams we make (regions of a few hundred pixels a side, at most 30 frames/s) cost a
//! few ms of a core per second of video. Equal bytes and quality, no C and no system
//! library decided it; `encode` is the one function to swap if CPU per frame becomes the
//! bound (`benches/codecs.rs` measures it as `mjpeg-q70`).

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

use crate::image::{ImageRef, PixelFormat};

/// Lowest and highest quality we encode at (spice-server's MJPEG encoder moves between 20
/// and 95 too; below 20 blocks dominate the picture).
pub const MIN_QUALITY: u8 = 20;
pub const MAX_QUALITY: u8 = 95;

/// The largest side a baseline JPEG can describe.
pub const MAX_SIDE: u32 = u16::MAX as u32;

/// Why a picture could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum MjpegError {
    #[error("a {0:?} image cannot be sent as MJPEG (32-bit BGRX only)")]
    Format(PixelFormat),
    #[error("a {width}x{height} picture is outside JPEG's 1..={MAX_SIDE} sides")]
    Size { width: u32, height: u32 },
    #[error("the JPEG encoder failed: {0}")]
    Encoder(#[from] jpeg_encoder::EncodingError),
}

/// Encodes a 32-bit BGRX image as one baseline JFIF picture at `quality` (clamped to
/// [`MIN_QUALITY`]..=[`MAX_QUALITY`]), chroma sampled 4:2:0.
pub fn encode(image: &ImageRef<'_>, quality: u8) -> Result<Vec<u8>, MjpegError> {
    if !matches!(image.format(), PixelFormat::Rgb32 | PixelFormat::Rgba) {
        return Err(MjpegError::Format(image.format()));
    }
    let (width, height) = (image.width(), image.height());
    let (Ok(w16), Ok(h16)) = (u16::try_from(width), u16::try_from(height)) else {
        return Err(MjpegError::Size { width, height });
    };
    if w16 == 0 || h16 == 0 {
        return Err(MjpegError::Size { width, height });
    }
    let row = width as usize * 4;
    // The encoder wants packed rows (`ImageRef` checked that they are all there).
    let packed: Vec<u8> = image.rows().flatten().copied().collect();
    let mut out = Vec::with_capacity(row * height as usize / 10 + 1024);
    let mut enc = Encoder::new(&mut out, quality.clamp(MIN_QUALITY, MAX_QUALITY));
    enc.set_sampling_factor(SamplingFactor::F_2_2);
    enc.encode(&packed, w16, h16, ColorType::Bgra)?;
    Ok(out)
}

/// Peak signal-to-noise ratio, in dB, of `got` against `want` (both BGRX, same size) over
/// the blue, green and red bytes; infinite when they are equal. How lossy paths are bounded
/// in tests and benchmarks.
pub fn psnr(want: &[u8], got: &[u8]) -> f64 {
    let mut sum = 0u64;
    let mut n = 0u64;
    for (a, b) in want.chunks_exact(4).zip(got.chunks_exact(4)) {
        for c in 0..3 {
            let d = i64::from(a[c]) - i64::from(b[c]);
            sum += (d * d) as u64;
            n += 1;
        }
    }
    if sum == 0 || n == 0 {
        return f64::INFINITY;
    }
    let mse = sum as f64 / n as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus;

    fn decode(jpeg: &[u8]) -> (u16, u16, Vec<u8>) {
        let mut d = jpeg_decoder::Decoder::new(jpeg);
        let rgb = d.decode().expect("our JPEG decodes");
        let info = d.info().expect("header read");
        assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24);
        let bgrx = rgb
            .chunks_exact(3)
            .flat_map(|p| [p[2], p[1], p[0], 0])
            .collect();
        (info.width, info.height, bgrx)
    }

    /// A photographic frame survives at a usable quality: the decoder that checks it is an
    /// independent one, and the bound is the 30 dB.
    #[test]
    fn a_photo_decodes_above_30_db_and_quality_orders_size_and_fidelity() {
        let (w, h) = (320u32, 240u32);
        let px = corpus::photo(w, h);
        let img = ImageRef::packed(w, h, PixelFormat::Rgb32, &px).unwrap();
        let mut last = (0usize, 0.0f64);
        for q in [30u8, 60, 85] {
            let jpeg = encode(&img, q).unwrap();
            assert_eq!(&jpeg[..4], &[0xff, 0xd8, 0xff, 0xe0], "SOI then JFIF APP0");
            let (dw, dh, got) = decode(&jpeg);
            assert_eq!((u32::from(dw), u32::from(dh)), (w, h));
            let p = psnr(&px, &got);
            assert!(p >= 30.0, "quality {q}: {p:.1} dB");
            assert!(jpeg.len() > last.0 && p > last.1, "quality {q} gains");
            assert!(
                jpeg.len() < px.len() / 4,
                "quality {q}: {} bytes",
                jpeg.len()
            );
            last = (jpeg.len(), p);
        }
    }

    #[test]
    fn strided_and_odd_sizes_encode_and_bad_inputs_are_refused() {
        let (w, h) = (17u32, 9u32);
        let stride = 80usize;
        let data: Vec<u8> = (0..stride * h as usize).map(|i| (i * 7) as u8).collect();
        let img = ImageRef::new(w, h, stride, PixelFormat::Rgb32, &data).unwrap();
        let (dw, dh, _) = decode(&encode(&img, 70).unwrap());
        assert_eq!((dw, dh), (17, 9));
        let small = vec![0u8; 16];
        let img = ImageRef::packed(2, 4, PixelFormat::Rgb16, &small).unwrap();
        assert!(matches!(encode(&img, 70), Err(MjpegError::Format(_))));
        let wide = vec![0u8; 70_000 * 4];
        let img = ImageRef::packed(70_000, 1, PixelFormat::Rgb32, &wide).unwrap();
        assert!(matches!(encode(&img, 70), Err(MjpegError::Size { .. })));
    }

    #[test]
    fn psnr_of_equal_and_of_different_pictures() {
        let a = [10u8, 20, 30, 0, 40, 50, 60, 0];
        assert!(psnr(&a, &a).is_infinite());
        let b = [11u8, 20, 30, 9, 40, 50, 60, 0];
        // One channel off by one in six: MSE 1/6.
        let want = 10.0 * (255.0f64 * 255.0 * 6.0).log10();
        assert!((psnr(&a, &b) - want).abs() < 1e-9);
    }
}
