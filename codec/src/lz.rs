//! LZ, the dictionary coder of spice-common (`SPICE_IMAGE_TYPE_LZ_RGB` and `LZ_PLT`).
//!
//! The payload after the image's `data_size` is a header of seven big-endian u32s (magic
//! `"LZ  "`, version 1.1, [`LzType`], width, height, stride, top_down) followed by one code
//! stream over all `width * height` pixels (rows are not coded separately). A code is a
//! control byte `c`:
//!
//! * `c < 32`: `c + 1` literal pixels follow (RGB24/RGB32: 3 bytes B, G, R; RGB16: the
//!   x555 value as 2 bytes, high byte first; palette and alpha: 1 byte).
//! * `c >= 32`: a copy of earlier pixels. `c >> 5` is the length code (7 means "add the
//!   following bytes while they are 255, and the first one that is not"), then one byte
//!   completes a 13-bit `distance - 1` with the low 5 bits of `c`; the value 8191 (all ones)
//!   instead announces a big-endian u16 holding `distance - 8192`. The copy is
//!   `length code + bias` pixels long, the bias being 0 for RGB24/32, 1 for RGB16 and 2 for
//!   palette and alpha streams (whose shortest useful copy is longer). Distance 1 repeats
//!   the previous pixel: that is how runs are coded.
//!
//! RGBA is an RGB32 stream followed by a second, independent stream of the alpha bytes;
//! XXXA is that alpha stream alone (JPEG_ALPHA uses it). Palette images (PLT1/4 LE/BE,
//! PLT8) code the packed row *bytes*, `stride * height` of them.
//!
//! spice-common's decoder asserts (aborting the client) when a copy reaches before the
//! start or past the end, and when bytes are left over after the last pixel, so the
//! encoder here never emits any of those, and the decoder refuses them.
//!
//! The encoder follows the same idea as spice-common's (a hash table keyed by three
//! consecutive pixels, greedy matching up to the farthest distance the format can say,
//! runs found before the hash is consulted) but works on a copy of the pixels as `u32`
//! keys, so a comparison is one integer compare and the unused X byte never matters.

use thiserror::Error;

use crate::image::{DecodedImage, ImageRef, PixelFormat};

/// `"LZ  "` read as a big-endian u32.
pub const MAGIC: u32 = 0x2020_5a4c;
/// Version 1.1 (major in the high half).
pub const VERSION: u32 = 0x0001_0001;
/// Bytes of the LZ header (seven u32s).
pub const HEADER_LEN: usize = 28;

/// The image types of an LZ (and GLZ) stream, numbered as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum LzType {
    Plt1Le = 1,
    Plt1Be = 2,
    Plt4Le = 3,
    Plt4Be = 4,
    Plt8 = 5,
    Rgb16 = 6,
    Rgb24 = 7,
    Rgb32 = 8,
    Rgba = 9,
    /// Alpha only (the alpha stream of RGBA without the colour stream).
    Xxxa = 10,
    /// Alpha-only 8-bit images; no Spice server sends them and this crate does not code them.
    A8 = 11,
}

impl LzType {
    /// The type numbered `v` on the wire.
    pub fn from_wire(v: u32) -> Option<LzType> {
        Some(match v {
            1 => LzType::Plt1Le,
            2 => LzType::Plt1Be,
            3 => LzType::Plt4Le,
            4 => LzType::Plt4Be,
            5 => LzType::Plt8,
            6 => LzType::Rgb16,
            7 => LzType::Rgb24,
            8 => LzType::Rgb32,
            9 => LzType::Rgba,
            10 => LzType::Xxxa,
            11 => LzType::A8,
            _ => return None,
        })
    }

    /// The LZ type that codes images of `format`.
    pub fn for_format(format: PixelFormat) -> LzType {
        match format {
            PixelFormat::Rgb32 => LzType::Rgb32,
            PixelFormat::Rgba => LzType::Rgba,
            PixelFormat::Rgb24 => LzType::Rgb24,
            PixelFormat::Rgb16 => LzType::Rgb16,
        }
    }

    /// Bytes per pixel of an RGB-family type, which the header's stride must be a multiple
    /// of (`None` for palette types, whose stride counts packed bytes).
    pub fn rgb_bytes_per_pixel(self) -> Option<usize> {
        match self {
            LzType::Rgb16 => Some(2),
            LzType::Rgb24 => Some(3),
            LzType::Rgb32 | LzType::Rgba | LzType::Xxxa => Some(4),
            LzType::A8 => Some(1),
            _ => None,
        }
    }
}

/// Bits per pixel of the palette layouts LZ_PLT images use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaletteDepth {
    /// 1 bit per pixel, first pixel in the least significant bit.
    Bits1Le,
    /// 1 bit per pixel, first pixel in the most significant bit.
    Bits1Be,
    /// 4 bits per pixel, first pixel in the low nibble.
    Bits4Le,
    /// 4 bits per pixel, first pixel in the high nibble.
    Bits4Be,
    /// One byte per pixel.
    Bits8,
}

impl PaletteDepth {
    fn lz_type(self) -> LzType {
        match self {
            PaletteDepth::Bits1Le => LzType::Plt1Le,
            PaletteDepth::Bits1Be => LzType::Plt1Be,
            PaletteDepth::Bits4Le => LzType::Plt4Le,
            PaletteDepth::Bits4Be => LzType::Plt4Be,
            PaletteDepth::Bits8 => LzType::Plt8,
        }
    }

    fn from_lz_type(t: LzType) -> Option<PaletteDepth> {
        Some(match t {
            LzType::Plt1Le => PaletteDepth::Bits1Le,
            LzType::Plt1Be => PaletteDepth::Bits1Be,
            LzType::Plt4Le => PaletteDepth::Bits4Le,
            LzType::Plt4Be => PaletteDepth::Bits4Be,
            LzType::Plt8 => PaletteDepth::Bits8,
            _ => return None,
        })
    }

    /// Bits per pixel.
    pub fn bits(self) -> u32 {
        match self {
            PaletteDepth::Bits1Le | PaletteDepth::Bits1Be => 1,
            PaletteDepth::Bits4Le | PaletteDepth::Bits4Be => 4,
            PaletteDepth::Bits8 => 8,
        }
    }

    /// Bytes of one packed row of `width` pixels: the stride LZ_PLT headers carry.
    pub fn row_bytes(self, width: u32) -> u64 {
        (u64::from(width) * u64::from(self.bits())).div_ceil(8)
    }
}

/// Why an image could not be encoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("image of {width}x{height} is empty")]
    Empty { width: u32, height: u32 },
    #[error("image of {width}x{height} is too large for LZ (over 2^31 pixels, or rows over 4 GiB)")]
    TooLarge { width: u32, height: u32 },
    #[error(
        "palette stride {stride} is shorter than the {needed} bytes a row of {width} pixels needs"
    )]
    StrideTooShort {
        stride: usize,
        needed: u64,
        width: u32,
    },
    #[error("{len} bytes cannot hold {height} rows of stride {stride}")]
    DataTooShort {
        len: usize,
        height: u32,
        stride: usize,
    },
    #[error("XXXA (alpha only) needs an Rgba image, not {0:?}")]
    NoAlpha(PixelFormat),
}

/// Why a code stream is malformed (shared by LZ and GLZ).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum StreamError {
    #[error("stream ends at byte {at} in the middle of a code")]
    Truncated { at: usize },
    #[error(
        "literal run of {count} pixels at pixel {at} goes past the {total} pixels of the image"
    )]
    LiteralOverrun { at: u64, count: u64, total: u64 },
    #[error("copy of {len} pixels at pixel {at} goes past the {total} pixels of the image")]
    CopyOverrun { at: u64, len: u64, total: u64 },
    #[error("copy at pixel {at} reaches {distance} pixels back, before the start of the image")]
    CopyBeforeStart { at: u64, distance: u64 },
}

/// Why an LZ payload was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("{len} bytes are too short for the {HEADER_LEN}-byte LZ header")]
    ShortHeader { len: usize },
    #[error("bad magic {0:#010x} (LZ is 0x20205a4c)")]
    BadMagic(u32),
    #[error("unsupported version {0:#010x} (only 1.1 exists)")]
    BadVersion(u32),
    #[error("unknown LZ image type {0}")]
    UnknownType(u32),
    #[error("LZ image type {0:?} is not decoded by this function")]
    WrongType(LzType),
    #[error("image of {width}x{height} is empty")]
    Empty { width: u32, height: u32 },
    #[error("image of {width}x{height} has more than the {max} pixels allowed")]
    TooManyPixels { width: u32, height: u32, max: u64 },
    #[error("{pixels} pixels cannot come out of a {len}-byte stream")]
    ImplausibleSize { pixels: u64, len: usize },
    #[error("stride {stride} of a {width}-pixel {ty:?} row should be {expected}")]
    BadStride {
        ty: LzType,
        width: u32,
        stride: u32,
        expected: u64,
    },
    #[error("{count} bytes left after the last pixel")]
    TrailingBytes { count: usize },
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// Longest distance a copy can reach in a single-image LZ stream: 8192 + 65535.
pub(crate) const LZ_MAX_DISTANCE: usize = 8192 + 0xffff;
/// Longest distance that still fits the short (13-bit) form.
const LZ_NEAR_DISTANCE: usize = 8191;
/// log2 of the LZ hash table's entries. spice-common uses 2^13; 2^16 finds the row above
/// in wide screen images far more often and (u32 entries) still fits in a L2 cache.
const LZ_HASH_BITS: u32 = 16;
/// Literals per control byte.
const MAX_LITERALS: usize = 32;

/// How one stream's pixels are coded: literal bytes and the copy-length bias.
pub(crate) trait Kind {
    /// Added to the length code to get the copy length in pixels.
    const BIAS: usize;
    /// Bytes of a literal pixel.
    const LIT: usize;
    /// Shortest copy worth coding with the short distance form.
    const NEAR_MIN: usize;
    /// Shortest copy worth coding with the long distance form.
    const FAR_MIN: usize;
    /// Appends the literal bytes of `key`.
    fn put(out: &mut Vec<u8>, key: u32);
    /// The key of the literal in `b` (exactly `LIT` bytes).
    fn get(b: &[u8]) -> u32;
}

/// RGB24/RGB32 colour: key `b | g << 8 | r << 16`, literal bytes B, G, R.
pub(crate) struct RgbKind;
/// RGB16: key is the x555 value, literal high byte first.
pub(crate) struct Rgb16Kind;
/// Palette bytes and alpha: one byte.
pub(crate) struct ByteKind;

impl Kind for RgbKind {
    const BIAS: usize = 0;
    const LIT: usize = 3;
    // A 1-pixel copy (2 bytes) saves nothing once the literal run it splits is counted.
    const NEAR_MIN: usize = 2;
    const FAR_MIN: usize = 3;
    #[inline(always)]
    fn put(out: &mut Vec<u8>, key: u32) {
        let b = key.to_le_bytes();
        out.extend_from_slice(&b[..3]);
    }
    #[inline(always)]
    fn get(b: &[u8]) -> u32 {
        u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16
    }
}

impl Kind for Rgb16Kind {
    const BIAS: usize = 1;
    const LIT: usize = 2;
    const NEAR_MIN: usize = 2;
    const FAR_MIN: usize = 3;
    #[inline(always)]
    fn put(out: &mut Vec<u8>, key: u32) {
        out.extend_from_slice(&[(key >> 8) as u8, key as u8]);
    }
    #[inline(always)]
    fn get(b: &[u8]) -> u32 {
        (u32::from(b[0]) << 8 | u32::from(b[1])) & 0x7fff
    }
}

impl Kind for ByteKind {
    const BIAS: usize = 2;
    const LIT: usize = 1;
    const NEAR_MIN: usize = 3;
    const FAR_MIN: usize = 5;
    #[inline(always)]
    fn put(out: &mut Vec<u8>, key: u32) {
        out.push(key as u8);
    }
    #[inline(always)]
    fn get(b: &[u8]) -> u32 {
        u32::from(b[0])
    }
}

/// Hash of three consecutive keys, `bits` wide.
#[inline(always)]
pub(crate) fn hash3(a: u32, b: u32, c: u32, bits: u32) -> usize {
    (hash32(a, b, c) >> (32 - bits)) as usize
}

/// The full 32-bit hash of three consecutive keys ([`hash3`] keeps its top bits).
#[inline(always)]
pub(crate) fn hash32(a: u32, b: u32, c: u32) -> u32 {
    let h = a.wrapping_mul(0x9e37_79b1)
        ^ b.wrapping_mul(0x85eb_ca77).rotate_left(11)
        ^ c.wrapping_mul(0xc2b2_ae3d).rotate_left(22);
    h.wrapping_mul(0x2722_0a95)
}

/// How many keys from the start of `a` and `b` are equal.
#[inline(always)]
pub(crate) fn common_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Appends `keys` as literal runs of at most 32.
#[inline]
pub(crate) fn put_literals<K: Kind>(out: &mut Vec<u8>, keys: &[u32]) {
    for chunk in keys.chunks(MAX_LITERALS) {
        out.push((chunk.len() - 1) as u8);
        for &k in chunk {
            K::put(out, k);
        }
    }
}

/// Appends the control byte and length bytes of a copy of `len` pixels; `low5` goes in the
/// control byte's low bits.
#[inline]
pub(crate) fn put_len<K: Kind>(out: &mut Vec<u8>, len: usize, low5: u8) {
    let code = len - K::BIAS;
    debug_assert!(code >= 1);
    if code < 7 {
        out.push(((code as u8) << 5) | low5);
    } else {
        out.push((7 << 5) | low5);
        let mut rest = code - 7;
        while rest >= 255 {
            out.push(255);
            rest -= 255;
        }
        out.push(rest as u8);
    }
}

/// Appends an LZ copy of `len` pixels from `dist` pixels back.
#[inline]
fn put_lz_copy<K: Kind>(out: &mut Vec<u8>, dist: usize, len: usize) {
    let d = dist - 1;
    if d < LZ_NEAR_DISTANCE {
        put_len::<K>(out, len, (d >> 8) as u8);
        out.push(d as u8);
    } else {
        let far = d - LZ_NEAR_DISTANCE;
        put_len::<K>(out, len, 31);
        out.extend_from_slice(&[255, (far >> 8) as u8, far as u8]);
    }
}

/// Codes `keys` as one LZ stream appended to `out`. `htab` is scratch space of
/// `1 << LZ_HASH_BITS` entries (its contents do not matter: every candidate is verified).
fn compress<K: Kind>(keys: &[u32], htab: &mut [u32], out: &mut Vec<u8>) {
    let n = keys.len();
    let mut lit = 0usize;
    let mut pos = 0usize;
    let mut misses = 0usize;
    // The hash needs three keys and the run test looks at pos + 2.
    while pos + 3 <= n {
        let k0 = keys[pos];
        let (mut dist, mut len) = (0, 0);
        if pos > 0 && keys[pos - 1] == k0 && keys[pos + 1] == k0 && keys[pos + 2] == k0 {
            dist = 1;
            len = 3 + keys[pos + 3..].iter().take_while(|&&k| k == k0).count();
        } else {
            let h = hash3(k0, keys[pos + 1], keys[pos + 2], LZ_HASH_BITS);
            let cand = htab[h] as usize;
            htab[h] = pos as u32;
            if cand < pos && pos - cand <= LZ_MAX_DISTANCE {
                let l = common_len(&keys[cand..], &keys[pos..]);
                let d = pos - cand;
                let min = if d <= LZ_NEAR_DISTANCE {
                    K::NEAR_MIN
                } else {
                    K::FAR_MIN
                };
                if l >= min {
                    dist = d;
                    len = l;
                }
            }
        }
        if len == 0 {
            // Incompressible stretches: look at fewer positions the longer they last.
            misses += 1;
            pos += 1 + (misses >> 6);
            continue;
        }
        misses = 0;
        put_literals::<K>(out, &keys[lit..pos]);
        put_lz_copy::<K>(out, dist, len);
        let end = pos + len;
        // Index the last positions of the copy so the next match can start there.
        for p in [end - 2, end - 1] {
            if p > pos && p + 3 <= n {
                htab[hash3(keys[p], keys[p + 1], keys[p + 2], LZ_HASH_BITS)] = p as u32;
            }
        }
        pos = end;
        lit = end;
    }
    put_literals::<K>(out, &keys[lit..]);
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_header(out: &mut Vec<u8>, ty: LzType, width: u32, height: u32, stride: u32) {
    put_u32(out, MAGIC);
    put_u32(out, VERSION);
    put_u32(out, ty as u32);
    put_u32(out, width);
    put_u32(out, height);
    put_u32(out, stride);
    // Our images are always top-down.
    put_u32(out, 1);
}

/// Most pixels an encoder indexes (hash entries are u32 positions).
const MAX_ENCODE_PIXELS: u64 = 1 << 31;

/// The pixel count and the header's stride (a u32) of a `width`x`height` image of `bpp`
/// bytes per pixel.
fn check_size(width: u32, height: u32, bpp: u32) -> Result<(usize, u32), EncodeError> {
    let n = u64::from(width) * u64::from(height);
    if n == 0 {
        return Err(EncodeError::Empty { width, height });
    }
    let stride = width.checked_mul(bpp);
    match stride {
        Some(stride) if n <= MAX_ENCODE_PIXELS => Ok((n as usize, stride)),
        _ => Err(EncodeError::TooLarge { width, height }),
    }
}

/// The colour keys of an RGB-family image (X byte and RGB16's top bit dropped).
pub(crate) fn colour_keys(image: &ImageRef<'_>) -> Vec<u32> {
    let mut keys = Vec::with_capacity(image.width() as usize * image.height() as usize);
    for row in image.rows() {
        match image.format() {
            PixelFormat::Rgb32 | PixelFormat::Rgba => keys.extend(
                row.chunks_exact(4)
                    .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0])),
            ),
            PixelFormat::Rgb24 => keys.extend(
                row.chunks_exact(3)
                    .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0])),
            ),
            PixelFormat::Rgb16 => keys.extend(
                row.chunks_exact(2)
                    .map(|p| u32::from(u16::from_le_bytes([p[0], p[1]]) & 0x7fff)),
            ),
        }
    }
    keys
}

/// The alpha keys of an Rgba image.
pub(crate) fn alpha_keys(image: &ImageRef<'_>) -> Vec<u32> {
    let mut keys = Vec::with_capacity(image.width() as usize * image.height() as usize);
    for row in image.rows() {
        keys.extend(row.chunks_exact(4).map(|p| u32::from(p[3])));
    }
    keys
}

/// Encodes `image` as an LZ_RGB payload of the type matching its format (RGB32, RGBA,
/// RGB24 or RGB16), top-down.
pub fn encode(image: &ImageRef<'_>) -> Result<Vec<u8>, EncodeError> {
    let bpp = image.format().bytes_per_pixel() as u32;
    let (n, stride) = check_size(image.width(), image.height(), bpp)?;
    let ty = LzType::for_format(image.format());
    let mut out = Vec::with_capacity(HEADER_LEN + n * 2 + 64);
    put_header(&mut out, ty, image.width(), image.height(), stride);
    let mut htab = vec![0u32; 1 << LZ_HASH_BITS];
    let keys = colour_keys(image);
    match image.format() {
        PixelFormat::Rgb32 | PixelFormat::Rgb24 => compress::<RgbKind>(&keys, &mut htab, &mut out),
        PixelFormat::Rgb16 => compress::<Rgb16Kind>(&keys, &mut htab, &mut out),
        PixelFormat::Rgba => {
            compress::<RgbKind>(&keys, &mut htab, &mut out);
            drop(keys);
            htab.fill(0);
            compress::<ByteKind>(&alpha_keys(image), &mut htab, &mut out);
        }
    }
    Ok(out)
}

/// Encodes the alpha channel of an Rgba `image` as an LZ payload of type XXXA (what
/// JPEG_ALPHA images carry after their JPEG).
pub fn encode_alpha(image: &ImageRef<'_>) -> Result<Vec<u8>, EncodeError> {
    if image.format() != PixelFormat::Rgba {
        return Err(EncodeError::NoAlpha(image.format()));
    }
    let (n, stride) = check_size(image.width(), image.height(), 4)?;
    let mut out = Vec::with_capacity(HEADER_LEN + n / 2 + 64);
    put_header(
        &mut out,
        LzType::Xxxa,
        image.width(),
        image.height(),
        stride,
    );
    let mut htab = vec![0u32; 1 << LZ_HASH_BITS];
    compress::<ByteKind>(&alpha_keys(image), &mut htab, &mut out);
    Ok(out)
}

/// Encodes a palette image as an LZ_PLT payload (the palette itself travels in the Spice
/// image, not here). `packed` holds `height` top-down rows of `stride` bytes, each row's
/// pixels packed as `depth` says; the payload's stride is the shortest row
/// ([`PaletteDepth::row_bytes`]), as spice-common requires.
pub fn encode_palette(
    width: u32,
    height: u32,
    depth: PaletteDepth,
    stride: usize,
    packed: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    check_size(width, height, 1)?;
    let row = depth.row_bytes(width);
    if (stride as u64) < row {
        return Err(EncodeError::StrideTooShort {
            stride,
            needed: row,
            width,
        });
    }
    let row = row as usize;
    let need = (height as usize - 1)
        .checked_mul(stride)
        .and_then(|v| v.checked_add(row));
    if need.is_none_or(|v| v > packed.len()) {
        return Err(EncodeError::DataTooShort {
            len: packed.len(),
            height,
            stride,
        });
    }
    let total = row * height as usize;
    if total as u64 > MAX_ENCODE_PIXELS {
        return Err(EncodeError::TooLarge { width, height });
    }
    let mut keys = Vec::with_capacity(total);
    for y in 0..height as usize {
        keys.extend(
            packed[y * stride..y * stride + row]
                .iter()
                .map(|&b| u32::from(b)),
        );
    }
    let mut out = Vec::with_capacity(HEADER_LEN + total + 64);
    put_header(&mut out, depth.lz_type(), width, height, row as u32);
    let mut htab = vec![0u32; 1 << LZ_HASH_BITS];
    compress::<ByteKind>(&keys, &mut htab, &mut out);
    Ok(out)
}

/// A parsed LZ header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub ty: LzType,
    pub width: u32,
    pub height: u32,
    pub stride: u32,
    pub top_down: bool,
}

fn be32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

impl Header {
    /// Reads and checks the header at the start of `data`.
    pub fn parse(data: &[u8]) -> Result<Header, DecodeError> {
        if data.len() < HEADER_LEN {
            return Err(DecodeError::ShortHeader { len: data.len() });
        }
        let magic = be32(data, 0);
        if magic != MAGIC {
            return Err(DecodeError::BadMagic(magic));
        }
        let version = be32(data, 4);
        if version != VERSION {
            return Err(DecodeError::BadVersion(version));
        }
        let raw = be32(data, 8);
        let ty = LzType::from_wire(raw).ok_or(DecodeError::UnknownType(raw))?;
        let (width, height) = (be32(data, 12), be32(data, 16));
        if width == 0 || height == 0 {
            return Err(DecodeError::Empty { width, height });
        }
        Ok(Header {
            ty,
            width,
            height,
            stride: be32(data, 20),
            top_down: be32(data, 24) != 0,
        })
    }
}

/// Refuses `pixels` that the `len` bytes of codes after a header cannot produce (a code
/// byte yields at most 255 pixels), so a tiny hostile stream cannot make us allocate much.
pub(crate) fn plausible(pixels: u64, len: usize) -> bool {
    pixels <= (len as u64 + 1).saturating_mul(255)
}

/// Where decoded pixels go: whole `u32` keys, or only the alpha byte (bits 24..32).
pub(crate) trait Target {
    fn lit(dst: &mut u32, v: u32);
    /// Copies `len` pixels from `from` to `to` (`from < to`), in order, so an overlapping
    /// copy repeats the pattern as the format requires.
    fn copy(px: &mut [u32], from: usize, to: usize, len: usize);
    /// Copies pixels of another image (GLZ); `dst` and `src` have the same length.
    fn copy_from(dst: &mut [u32], src: &[u32]);
}

/// Writes whole keys.
pub(crate) struct Whole;
/// Writes the alpha byte only.
pub(crate) struct AlphaByte;

impl Target for Whole {
    #[inline(always)]
    fn lit(dst: &mut u32, v: u32) {
        *dst = v;
    }
    #[inline]
    fn copy(px: &mut [u32], from: usize, to: usize, len: usize) {
        let dist = to - from;
        if dist == 1 {
            let v = px[from];
            px[to..to + len].fill(v);
        } else if dist >= len {
            px.copy_within(from..from + len, to);
        } else {
            // Overlapping: copy the repeating period until done.
            let mut done = 0;
            while done < len {
                let n = dist.min(len - done);
                px.copy_within(from + done..from + done + n, to + done);
                done += n;
            }
        }
    }
    #[inline]
    fn copy_from(dst: &mut [u32], src: &[u32]) {
        dst.copy_from_slice(src);
    }
}

impl Target for AlphaByte {
    #[inline(always)]
    fn lit(dst: &mut u32, v: u32) {
        *dst = (*dst & 0x00ff_ffff) | v << 24;
    }
    #[inline]
    fn copy(px: &mut [u32], from: usize, to: usize, len: usize) {
        for i in 0..len {
            let a = px[from + i] & 0xff00_0000;
            px[to + i] = (px[to + i] & 0x00ff_ffff) | a;
        }
    }
    #[inline]
    fn copy_from(dst: &mut [u32], src: &[u32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = (*d & 0x00ff_ffff) | (s & 0xff00_0000);
        }
    }
}

/// A cursor over code bytes.
pub(crate) struct Reader<'a> {
    pub data: &'a [u8],
    pub pos: usize,
}

impl Reader<'_> {
    #[inline(always)]
    pub fn byte(&mut self) -> Result<u8, StreamError> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or(StreamError::Truncated { at: self.pos })?;
        self.pos += 1;
        Ok(b)
    }

    #[inline(always)]
    pub fn take(&mut self, n: usize) -> Result<&[u8], StreamError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or(StreamError::Truncated {
            at: self.data.len(),
        })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Reads the length code of control byte `ctrl` (and its extension bytes), in pixels.
    #[inline(always)]
    pub fn length<K: Kind>(&mut self, ctrl: u8) -> Result<usize, StreamError> {
        let mut len = usize::from(ctrl >> 5);
        if len == 7 {
            loop {
                let b = self.byte()?;
                len += usize::from(b);
                if b != 255 {
                    break;
                }
            }
        }
        Ok(len + K::BIAS)
    }

    /// Decodes `count` literal pixels into `px[at..]`.
    #[inline(always)]
    pub fn literals<K: Kind, T: Target>(
        &mut self,
        px: &mut [u32],
        at: usize,
        count: usize,
    ) -> Result<(), StreamError> {
        let total = px.len();
        let dst = px
            .get_mut(at..at + count)
            .ok_or(StreamError::LiteralOverrun {
                at: at as u64,
                count: count as u64,
                total: total as u64,
            })?;
        let src = self.take(count * K::LIT)?;
        for (d, s) in dst.iter_mut().zip(src.chunks_exact(K::LIT)) {
            T::lit(d, K::get(s));
        }
        Ok(())
    }
}

/// Checks a copy of `len` pixels from `dist` back at pixel `at` of `total`, and does it.
#[inline(always)]
pub(crate) fn local_copy<T: Target>(
    px: &mut [u32],
    at: usize,
    dist: usize,
    len: usize,
) -> Result<(), StreamError> {
    let total = px.len();
    if dist > at || dist == 0 {
        return Err(StreamError::CopyBeforeStart {
            at: at as u64,
            distance: dist as u64,
        });
    }
    if len > total - at {
        return Err(StreamError::CopyOverrun {
            at: at as u64,
            len: len as u64,
            total: total as u64,
        });
    }
    T::copy(px, at - dist, at, len);
    Ok(())
}

/// Decodes one LZ stream filling all of `px`.
fn decompress<K: Kind, T: Target>(r: &mut Reader<'_>, px: &mut [u32]) -> Result<(), StreamError> {
    let total = px.len();
    let mut op = 0usize;
    while op < total {
        let ctrl = r.byte()?;
        if ctrl < 32 {
            let count = usize::from(ctrl) + 1;
            r.literals::<K, T>(px, op, count)?;
            op += count;
        } else {
            let len = r.length::<K>(ctrl)?;
            let low = r.byte()?;
            let mut d = usize::from(ctrl & 31) << 8 | usize::from(low);
            if d == 0x1fff {
                let hi = r.byte()?;
                let lo = r.byte()?;
                d = LZ_NEAR_DISTANCE + (usize::from(hi) << 8 | usize::from(lo));
            }
            local_copy::<T>(px, op, d + 1, len)?;
            op += len;
        }
    }
    Ok(())
}

/// Checks the size against the caller's limit and the input, and allocates the keys.
fn alloc_pixels(h: &Header, max_pixels: u64, code_len: usize) -> Result<Vec<u32>, DecodeError> {
    let n = u64::from(h.width) * u64::from(h.height);
    if n > max_pixels {
        return Err(DecodeError::TooManyPixels {
            width: h.width,
            height: h.height,
            max: max_pixels,
        });
    }
    if !plausible(n, code_len) {
        return Err(DecodeError::ImplausibleSize {
            pixels: n,
            len: code_len,
        });
    }
    Ok(vec![0u32; n as usize])
}

/// Turns decoded keys into top-down packed pixels of `format`.
pub(crate) fn keys_to_pixels(
    keys: &[u32],
    width: u32,
    format: PixelFormat,
    top_down: bool,
) -> Vec<u8> {
    let bpp = format.bytes_per_pixel();
    let mut out = Vec::with_capacity(keys.len() * bpp);
    let mut put_row = |row: &[u32]| match format {
        PixelFormat::Rgb32 => {
            out.extend(row.iter().flat_map(|&k| (k & 0x00ff_ffff).to_le_bytes()));
        }
        PixelFormat::Rgba => out.extend(row.iter().flat_map(|&k| k.to_le_bytes())),
        PixelFormat::Rgb24 => {
            out.extend(row.iter().flat_map(|&k| {
                let b = k.to_le_bytes();
                [b[0], b[1], b[2]]
            }));
        }
        PixelFormat::Rgb16 => {
            out.extend(
                row.iter()
                    .flat_map(|&k| ((k & 0x7fff) as u16).to_le_bytes()),
            );
        }
    };
    let w = width as usize;
    if top_down {
        keys.chunks_exact(w).for_each(&mut put_row);
    } else {
        keys.chunks_exact(w).rev().for_each(&mut put_row);
    }
    out
}

/// Decodes an LZ_RGB payload (types RGB32, RGBA, RGB24, RGB16, and XXXA, which comes out
/// as Rgba with zero colour) into a top-down image.
pub fn decode(data: &[u8], max_pixels: u64) -> Result<DecodedImage, DecodeError> {
    let h = Header::parse(data)?;
    let (format, bpp) = match h.ty {
        LzType::Rgb32 => (PixelFormat::Rgb32, 4),
        LzType::Rgba | LzType::Xxxa => (PixelFormat::Rgba, 4),
        LzType::Rgb24 => (PixelFormat::Rgb24, 3),
        LzType::Rgb16 => (PixelFormat::Rgb16, 2),
        other => return Err(DecodeError::WrongType(other)),
    };
    let expected = u64::from(h.width) * bpp;
    if u64::from(h.stride) != expected {
        return Err(DecodeError::BadStride {
            ty: h.ty,
            width: h.width,
            stride: h.stride,
            expected,
        });
    }
    let mut px = alloc_pixels(&h, max_pixels, data.len() - HEADER_LEN)?;
    let mut r = Reader {
        data,
        pos: HEADER_LEN,
    };
    match h.ty {
        LzType::Rgb32 | LzType::Rgb24 => decompress::<RgbKind, Whole>(&mut r, &mut px)?,
        LzType::Rgb16 => decompress::<Rgb16Kind, Whole>(&mut r, &mut px)?,
        LzType::Rgba => {
            decompress::<RgbKind, Whole>(&mut r, &mut px)?;
            decompress::<ByteKind, AlphaByte>(&mut r, &mut px)?;
        }
        _ => decompress::<ByteKind, AlphaByte>(&mut r, &mut px)?,
    }
    if r.pos != data.len() {
        return Err(DecodeError::TrailingBytes {
            count: data.len() - r.pos,
        });
    }
    Ok(DecodedImage {
        width: h.width,
        height: h.height,
        format,
        pixels: keys_to_pixels(&px, h.width, format, h.top_down),
    })
}

/// A decoded LZ_PLT payload: palette indices, still packed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedPalette {
    pub depth: PaletteDepth,
    pub width: u32,
    pub height: u32,
    /// Bytes per row in `rows` (the payload's stride).
    pub stride: usize,
    /// `height` top-down rows of `stride` bytes.
    pub rows: Vec<u8>,
}

/// Decodes an LZ_PLT payload into packed index rows (top-down).
pub fn decode_palette(data: &[u8], max_pixels: u64) -> Result<DecodedPalette, DecodeError> {
    let h = Header::parse(data)?;
    let depth = PaletteDepth::from_lz_type(h.ty).ok_or(DecodeError::WrongType(h.ty))?;
    let expected = depth.row_bytes(h.width);
    if u64::from(h.stride) != expected {
        return Err(DecodeError::BadStride {
            ty: h.ty,
            width: h.width,
            stride: h.stride,
            expected,
        });
    }
    let n = u64::from(h.width) * u64::from(h.height);
    if n > max_pixels {
        return Err(DecodeError::TooManyPixels {
            width: h.width,
            height: h.height,
            max: max_pixels,
        });
    }
    // The stream counts bytes, never more than pixels.
    let bytes = u64::from(h.stride) * u64::from(h.height);
    let code_len = data.len() - HEADER_LEN;
    if !plausible(bytes, code_len) {
        return Err(DecodeError::ImplausibleSize {
            pixels: bytes,
            len: code_len,
        });
    }
    let mut px = vec![0u32; bytes as usize];
    let mut r = Reader {
        data,
        pos: HEADER_LEN,
    };
    decompress::<ByteKind, Whole>(&mut r, &mut px)?;
    if r.pos != data.len() {
        return Err(DecodeError::TrailingBytes {
            count: data.len() - r.pos,
        });
    }
    let stride = h.stride as usize;
    let mut rows = Vec::with_capacity(px.len());
    let mut put = |row: &[u32]| rows.extend(row.iter().map(|&k| k as u8));
    if h.top_down {
        px.chunks_exact(stride).for_each(&mut put);
    } else {
        px.chunks_exact(stride).rev().for_each(&mut put);
    }
    Ok(DecodedPalette {
        depth,
        width: h.width,
        height: h.height,
        stride,
        rows,
    })
}

#[cfg(test)]
pub(crate) mod tests;
