//! Spice image codecs, pure: bytes in, bytes out, no I/O and no threads.
//!
//! Each format lives in its own module with an encoder (what the server sends) and a decoder
//! (what our library client, the tests and the fuzzers use to check the encoder, and to prove
//! a malformed stream is refused without a panic). The formats are the ones spice-gtk and
//! spice-html5 decode; `../shared/docs/spice-protocol.md` §5 describes their headers.
//!
//! Images go in as an [`ImageRef`] (top-down rows, any stride) and come out of decoders as a
//! [`DecodedImage`] (top-down, tightly packed), so every codec can be checked the same way:
//! `decode(encode(x)) == x`.

pub mod corpus;
pub mod glz;
pub mod graduality;
pub mod image;
pub mod lz;
pub mod lz4;
pub mod mjpeg;
pub mod quic;
pub mod yuv;
pub mod zlib_glz;

pub use image::{DecodedImage, ImageError, ImageRef, PixelFormat};
