//! ZLIB_GLZ_RGB: a GLZ payload deflated once more.
//!
//! spice-server (zlib-encoder.c) compresses the GLZ bytes with `deflateInit` + `deflate`, so
//! the payload is a **zlib stream** (RFC 1950: 2-byte header, deflate data, Adler-32), not raw
//! deflate; spice-gtk (decode-zlib.c) inflates it with `inflateInit` into a buffer of
//! exactly `glz_data_size` bytes and hands that to its GLZ decoder. The Spice image carries
//! `glz_data_size` (the inflated size) and `data_size` (this stream's size) before it; the
//! server writes those.
//!
//! spice-server wraps only when the client's link is slow, only GLZ payloads of at least
//! [`MIN_GLZ_SIZE`] bytes, at level [`DEFAULT_LEVEL`], and sends the plain GLZ instead when
//! deflating did not make it smaller. Those choices are the caller's; the GLZ image inside
//! is in the GLZ dictionary either way.

use std::io::Write;

use flate2::write::ZlibEncoder;
use flate2::{Compression, Decompress, FlushDecompress, Status};
use thiserror::Error;

/// The level spice-server uses (`ZLIB_DEFAULT_COMPRESSION_LEVEL`).
pub const DEFAULT_LEVEL: u32 = 3;
/// spice-server does not wrap GLZ payloads smaller than this (`MIN_GLZ_SIZE_FOR_ZLIB`).
pub const MIN_GLZ_SIZE: usize = 100;
/// Deflate cannot expand more than about 1032 times, so a larger claimed size is a lie.
const MAX_RATIO: usize = 1032;

/// Why a GLZ payload could not be deflated.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("zlib level {0} is not in 0..=9")]
    BadLevel(u32),
    #[error("deflate failed: {0}")]
    Deflate(String),
}

/// Why a ZLIB_GLZ_RGB payload was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("inflated size {glz_size} is over the {max} bytes allowed")]
    TooLarge { glz_size: usize, max: usize },
    #[error("{len} zlib bytes cannot inflate to {glz_size} bytes")]
    Implausible { len: usize, glz_size: usize },
    #[error("zlib stream is corrupt: {0}")]
    Corrupt(String),
    #[error("zlib stream ends after {got} of the {glz_size} announced bytes")]
    Short { got: usize, glz_size: usize },
    #[error("zlib stream inflates to more than the {glz_size} announced bytes")]
    Long { glz_size: usize },
    #[error("{count} bytes follow the end of the zlib stream")]
    TrailingBytes { count: usize },
}

/// Deflates a GLZ payload into a zlib stream at `level` (0..=9; spice-server uses 3).
pub fn compress(glz: &[u8], level: u32) -> Result<Vec<u8>, EncodeError> {
    if level > 9 {
        return Err(EncodeError::BadLevel(level));
    }
    let mut z = ZlibEncoder::new(
        Vec::with_capacity(glz.len() / 2 + 64),
        Compression::new(level),
    );
    z.write_all(glz)
        .map_err(|e| EncodeError::Deflate(e.to_string()))?;
    z.finish().map_err(|e| EncodeError::Deflate(e.to_string()))
}

/// Inflates a ZLIB_GLZ_RGB payload back into the GLZ payload of exactly `glz_size` bytes
/// (the image's `glz_data_size`), refusing sizes over `max_bytes` before allocating.
pub fn decompress(zlib: &[u8], glz_size: usize, max_bytes: usize) -> Result<Vec<u8>, DecodeError> {
    if glz_size > max_bytes {
        return Err(DecodeError::TooLarge {
            glz_size,
            max: max_bytes,
        });
    }
    if glz_size > zlib.len().saturating_mul(MAX_RATIO).saturating_add(64) {
        return Err(DecodeError::Implausible {
            len: zlib.len(),
            glz_size,
        });
    }
    // One spare byte tells "exactly glz_size" from "more".
    let mut out = vec![0u8; glz_size + 1];
    let mut z = Decompress::new(true);
    let status = z
        .decompress(zlib, &mut out, FlushDecompress::Finish)
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    let got = z.total_out() as usize;
    if got > glz_size {
        return Err(DecodeError::Long { glz_size });
    }
    if status != Status::StreamEnd {
        return Err(DecodeError::Short { got, glz_size });
    }
    if got != glz_size {
        return Err(DecodeError::Short { got, glz_size });
    }
    let used = z.total_in() as usize;
    if used != zlib.len() {
        return Err(DecodeError::TrailingBytes {
            count: zlib.len() - used,
        });
    }
    out.truncate(glz_size);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::glz::{Decoder, Encoder};
    use crate::image::{ImageRef, PixelFormat};

    fn glz_payload() -> Vec<u8> {
        let px: Vec<u8> = (0..200 * 100 * 4).map(|i| ((i / 4) % 37) as u8).collect();
        let img = ImageRef::packed(200, 100, PixelFormat::Rgb32, &px).unwrap();
        Encoder::new(1 << 20).encode(&img).unwrap()
    }

    #[test]
    fn it_is_a_zlib_stream_that_round_trips() {
        let glz = glz_payload();
        let z = compress(&glz, DEFAULT_LEVEL).unwrap();
        // zlib header: CM 8 (deflate), 32 KiB window, header checksum.
        assert_eq!(z[0], 0x78);
        assert_eq!((u16::from(z[0]) << 8 | u16::from(z[1])) % 31, 0);
        let back = decompress(&z, glz.len(), 1 << 20).unwrap();
        assert_eq!(back, glz);
        let img = Decoder::new(1 << 20).decode(&back, 1 << 20).unwrap();
        assert_eq!((img.width, img.height), (200, 100));
        for level in 0..=9 {
            let z = compress(&glz, level).unwrap();
            assert_eq!(decompress(&z, glz.len(), 1 << 20).unwrap(), glz);
        }
        assert_eq!(compress(&glz, 10), Err(EncodeError::BadLevel(10)));
        assert_eq!(
            decompress(&compress(&[], 3).unwrap(), 0, 0).unwrap(),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn bad_streams_are_refused() {
        let glz = glz_payload();
        let z = compress(&glz, 3).unwrap();
        let n = glz.len();
        assert!(matches!(
            decompress(&z, n, n - 1),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            decompress(&z[..2], 1 << 20, usize::MAX),
            Err(DecodeError::Implausible { .. })
        ));
        assert!(matches!(
            decompress(&z, n - 1, 1 << 20),
            Err(DecodeError::Long { .. })
        ));
        assert!(matches!(
            decompress(&z, n + 1, 1 << 20),
            Err(DecodeError::Short { .. })
        ));
        assert!(matches!(
            decompress(&z[..z.len() / 2], n, 1 << 20),
            Err(DecodeError::Short { .. })
        ));
        let mut long = z.clone();
        long.push(0);
        assert_eq!(
            decompress(&long, n, 1 << 20),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
        let mut bad = z.clone();
        bad[0] = 0x79;
        assert!(matches!(
            decompress(&bad, n, 1 << 20),
            Err(DecodeError::Corrupt(_))
        ));
        // Damaged data: an error, never a panic (Adler-32 catches what inflate does not).
        let mut bad = z.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(decompress(&bad, n, 1 << 20).is_err());
        for i in 0..z.len() {
            let mut bad = z.clone();
            bad[i] ^= 0x5a;
            let _ = decompress(&bad, n, 1 << 20);
        }
    }
}
