//! QUIC, Spice's lossless image codec (SPICE_IMAGE_TYPE_QUIC).
//!
//! QUIC is SFALIC-style predictive coding: each channel's pixel is predicted from its left and
//! upper neighbours, the error is folded to a small number and sent with one of eight
//! Golomb-Rice codes, the code chosen per context bucket by an adaptive model; below the first
//! row, stretches of repeated pixels are sent as runs with an adaptive run-length code. The
//! model adapts on a pseudo-random schedule the decoder replays, so encoder and decoder must
//! make the same decisions in the same order: this module follows spice-common's `quic.c`
//! (what spice-gtk decodes with, and what spice-html5's `quic.js` mirrors) decision for
//! decision, including its quirks (contexts left over from the row above after a run, the
//! wait-mask segments splitting the first rows).
//!
//! The stream: 32-bit words, each stored little endian, bits consumed most significant first.
//! Header words: magic `QUIC`, version 0, image type, width, height; then the rows, top down;
//! for RGBA each row's colour is followed by its alpha. The stream ends with the last word
//! padded with zeros plus one zero word, which the reference decoder reads ahead.
//!
//! Only the 8-bit-per-channel types we send are implemented: RGB32, RGB24 and RGBA. GRAY and
//! RGB16 streams are refused by the decoder.

mod bits;
mod decode;
mod encode;
mod model;
mod tables;
#[cfg(test)]
mod tests;

use thiserror::Error;

use crate::image::{DecodedImage, ImageRef, PixelFormat};

/// "QUIC" read as a little-endian u32.
const QUIC_MAGIC: u32 = 0x4349_5551;
/// spice-common computes its version as major (0) in both halves, so every stream says 0.
const QUIC_VERSION: u32 = 0;

/// QUIC image types (spice-common's `QuicImageType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuicType {
    Gray = 1,
    Rgb16 = 2,
    Rgb24 = 3,
    Rgb32 = 4,
    Rgba = 5,
}

impl QuicType {
    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => QuicType::Gray,
            2 => QuicType::Rgb16,
            3 => QuicType::Rgb24,
            4 => QuicType::Rgb32,
            5 => QuicType::Rgba,
            _ => return None,
        })
    }
}

/// Why an image cannot be QUIC-encoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("QUIC encoding of {format:?} images is not implemented")]
    Unsupported { format: PixelFormat },
    #[error("image of {width}x{height} is larger than QUIC's signed 32-bit sizes allow")]
    TooLarge { width: u32, height: u32 },
}

/// Why a QUIC stream was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("QUIC stream ends before its image does")]
    Truncated,
    #[error("bad QUIC magic {found:#010x} (expected {QUIC_MAGIC:#010x})")]
    BadMagic { found: u32 },
    #[error("unknown QUIC version {found:#x} (expected {QUIC_VERSION})")]
    BadVersion { found: u32 },
    #[error("invalid QUIC image type {value}")]
    InvalidType { value: u32 },
    #[error("QUIC image type {ty:?} is not supported")]
    UnsupportedType { ty: QuicType },
    #[error("QUIC image of {width}x{height} is empty")]
    Empty { width: u32, height: u32 },
    #[error("QUIC image of {width}x{height} has more than the {max_pixels} pixels allowed")]
    TooManyPixels {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    #[error("{bytes} bytes cannot hold a QUIC image of {width}x{height}")]
    TooShortFor {
        width: u32,
        height: u32,
        bytes: usize,
    },
    #[error("run at row {row}, column {column} goes past the end of its row segment")]
    BadRun { row: u32, column: usize },
}

/// Encodes `image` as a QUIC stream: exactly the bytes a Spice QUIC image carries after its
/// `data_size`. Rgb32 becomes QUIC RGB32 (the X byte is not sent), Rgb24 RGB24, Rgba RGBA;
/// Rgb16 is refused.
pub fn encode(image: &ImageRef<'_>) -> Result<Vec<u8>, EncodeError> {
    let ty = match image.format() {
        PixelFormat::Rgb32 => QuicType::Rgb32,
        PixelFormat::Rgb24 => QuicType::Rgb24,
        PixelFormat::Rgba => QuicType::Rgba,
        format @ PixelFormat::Rgb16 => return Err(EncodeError::Unsupported { format }),
    };
    let (width, height) = (image.width(), image.height());
    // spice-common holds sizes in `int`.
    if width > i32::MAX as u32 || height > i32::MAX as u32 {
        return Err(EncodeError::TooLarge { width, height });
    }
    Ok(encode::encode_image(image, ty))
}

/// Decodes a QUIC stream (starting at its magic). RGB32 streams come out as Rgb32 with X = 0,
/// RGB24 as Rgb24, RGBA as Rgba. Images of more than `max_pixels` pixels are refused before
/// anything is allocated for them.
pub fn decode(data: &[u8], max_pixels: u64) -> Result<DecodedImage, DecodeError> {
    decode::decode_image(data, max_pixels)
}
