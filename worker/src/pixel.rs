//! Pixel values: how each surface format stores a pixel, conversions between formats, the
//! bitwise raster operations, and premultiplied-alpha arithmetic.
//!
//! Inside the renderer a pixel is a `u32` holding the *native* value of the destination
//! format (a whole x/ARGB word, a 16-bit 555/565 word, an 8-bit alpha, or one bit). Bitwise
//! ROPs work on native values, as spice's canvas does, so BLACKNESS on an xRGB surface
//! clears the unused top byte too. Blending works on "canonical" a8r8g8b8 values with
//! premultiplied alpha (pixman's convention, which spice's canvas inherits).

use saffron_ring::abi::{
    SPICE_ROPD_INVERS_BRUSH, SPICE_ROPD_INVERS_DEST, SPICE_ROPD_INVERS_RES, SPICE_ROPD_INVERS_SRC,
    SPICE_ROPD_OP_AND, SPICE_ROPD_OP_BLACKNESS, SPICE_ROPD_OP_INVERS, SPICE_ROPD_OP_OR,
    SPICE_ROPD_OP_PUT, SPICE_ROPD_OP_WHITENESS, SPICE_ROPD_OP_XOR,
};
use saffron_ring::parse::SurfaceFormat;

/// Bits one pixel of `format` takes in memory.
pub fn bits_per_pixel(format: SurfaceFormat) -> u32 {
    format.bits_per_pixel()
}

/// Byte range `[start, end)` of a row holding pixels `[x, x + n)` of `format`, in 64-bit
/// arithmetic so no guest value can overflow it.
pub(crate) fn span_byte_range(format: SurfaceFormat, x: u32, n: u32) -> (u64, u64) {
    let bpp = u64::from(bits_per_pixel(format));
    let start = u64::from(x) * bpp / 8;
    let end = (u64::from(x) + u64::from(n)) * bpp;
    (start, end.div_ceil(8))
}

/// Decodes native pixels from `bytes`, which start at the byte holding pixel `x` (only the
/// 1-bpp format cares where in that byte the span starts). Writes `out.len()` pixels; a
/// short `bytes` leaves the rest 0 (callers size it exactly).
pub(crate) fn decode_native(format: SurfaceFormat, x: u32, bytes: &[u8], out: &mut [u32]) {
    match format {
        SurfaceFormat::Xrgb8888 | SurfaceFormat::Argb8888 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                if let &[a, b, c, d] = c {
                    *o = u32::from_le_bytes([a, b, c, d]);
                }
            }
        }
        SurfaceFormat::Rgb555 | SurfaceFormat::Rgb565 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                if let &[a, b] = c {
                    *o = u32::from(u16::from_le_bytes([a, b]));
                }
            }
        }
        SurfaceFormat::A8 => {
            for (o, b) in out.iter_mut().zip(bytes) {
                *o = u32::from(*b);
            }
        }
        SurfaceFormat::A1 => {
            // pixman's a1 on little-endian hosts: the leftmost pixel is the least
            // significant bit.
            let first = x & 7;
            for (i, o) in out.iter_mut().enumerate() {
                let bit = first as usize + i;
                let byte = bytes.get(bit / 8).copied().unwrap_or(0);
                *o = u32::from((byte >> (bit % 8)) & 1);
            }
        }
    }
}

/// Encodes native pixels into `bytes` (the same layout [`decode_native`] reads). For the
/// 1-bpp format `bytes` must already hold the current memory, as neighbouring bits are
/// kept.
pub(crate) fn encode_native(format: SurfaceFormat, x: u32, px: &[u32], bytes: &mut [u8]) {
    match format {
        SurfaceFormat::Xrgb8888 | SurfaceFormat::Argb8888 => {
            for (c, p) in bytes.chunks_exact_mut(4).zip(px) {
                c.copy_from_slice(&p.to_le_bytes());
            }
        }
        SurfaceFormat::Rgb555 | SurfaceFormat::Rgb565 => {
            for (c, p) in bytes.chunks_exact_mut(2).zip(px) {
                c.copy_from_slice(&(*p as u16).to_le_bytes());
            }
        }
        SurfaceFormat::A8 => {
            for (b, p) in bytes.iter_mut().zip(px) {
                *b = *p as u8;
            }
        }
        SurfaceFormat::A1 => {
            let first = x & 7;
            for (i, p) in px.iter().enumerate() {
                let bit = first as usize + i;
                if let Some(byte) = bytes.get_mut(bit / 8) {
                    let mask = 1u8 << (bit % 8);
                    if p & 1 != 0 {
                        *byte |= mask;
                    } else {
                        *byte &= !mask;
                    }
                }
            }
        }
    }
}

/// x555 → x8r8g8b8, replicating the top bits into the low ones (spice's expansion).
pub fn rgb555_to_argb(c: u32) -> u32 {
    let r = (c >> 10) & 0x1f;
    let g = (c >> 5) & 0x1f;
    let b = c & 0x1f;
    ((r << 3 | r >> 2) << 16) | ((g << 3 | g >> 2) << 8) | (b << 3 | b >> 2)
}

/// r5g6b5 → x8r8g8b8 with the same replication.
pub fn rgb565_to_argb(c: u32) -> u32 {
    let r = (c >> 11) & 0x1f;
    let g = (c >> 5) & 0x3f;
    let b = c & 0x1f;
    ((r << 3 | r >> 2) << 16) | ((g << 2 | g >> 4) << 8) | (b << 3 | b >> 2)
}

/// x8r8g8b8 → x555 by truncation (spice's `rgb_32_to_16_555`).
pub fn argb_to_rgb555(c: u32) -> u32 {
    ((c >> 3) & 0x001f) | ((c >> 6) & 0x03e0) | ((c >> 9) & 0x7c00)
}

/// x8r8g8b8 → r5g6b5 by truncation.
pub fn argb_to_rgb565(c: u32) -> u32 {
    ((c >> 3) & 0x001f) | ((c >> 5) & 0x07e0) | ((c >> 8) & 0xf800)
}

/// A native value of `format` as a canonical a8r8g8b8 word. Formats without alpha keep
/// whatever their top byte holds (xRGB) or get 0 there (16-bit); whether that byte means
/// anything is the caller's knowledge (see [`has_alpha`]).
pub fn native_to_argb(format: SurfaceFormat, v: u32) -> u32 {
    match format {
        SurfaceFormat::Xrgb8888 | SurfaceFormat::Argb8888 => v,
        SurfaceFormat::Rgb555 => rgb555_to_argb(v),
        SurfaceFormat::Rgb565 => rgb565_to_argb(v),
        SurfaceFormat::A8 => (v & 0xff) << 24,
        SurfaceFormat::A1 => {
            if v & 1 != 0 {
                0xff00_0000
            } else {
                0
            }
        }
    }
}

/// A canonical a8r8g8b8 word as a native value of `format`. `src_has_alpha` says whether
/// the word's top byte is an alpha; when it is not, alpha-only formats get opaque pixels
/// (pixman converts x8r8g8b8 to a8 as 0xff).
pub fn argb_to_native(format: SurfaceFormat, v: u32, src_has_alpha: bool) -> u32 {
    let alpha = if src_has_alpha { v >> 24 } else { 0xff };
    match format {
        SurfaceFormat::Xrgb8888 | SurfaceFormat::Argb8888 => v,
        SurfaceFormat::Rgb555 => argb_to_rgb555(v),
        SurfaceFormat::Rgb565 => argb_to_rgb565(v),
        SurfaceFormat::A8 => alpha,
        SurfaceFormat::A1 => u32::from(alpha >= 0x80),
    }
}

/// Whether the pixels of `format` carry an alpha channel.
pub fn has_alpha(format: SurfaceFormat) -> bool {
    matches!(
        format,
        SurfaceFormat::Argb8888 | SurfaceFormat::A8 | SurfaceFormat::A1
    )
}

/// The bitwise operations spice reduces ROP descriptors to (its `SpiceROP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RopOp {
    /// `src`
    Copy,
    Or,
    And,
    Xor,
    /// `0`
    Clear,
    /// all ones
    Set,
    /// `!dst`
    Invert,
}

/// A ROP descriptor reduced to an operation on (source, destination) pixels: optionally
/// invert either input, apply `op`, optionally invert the result.
///
/// This is the algebra behind spice's `ropd_descriptor_to_rop` table: e.g. OR with
/// INVERS_RES and INVERS_SRC is `!(!s | d)` = `s & !d` (its AND_REVERSE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rop {
    pub op: RopOp,
    pub invert_src: bool,
    pub invert_dst: bool,
    pub invert_result: bool,
}

/// Which operand of a drawing a descriptor's INVERS_* bit names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopInput {
    Src,
    Brush,
    Dest,
}

fn invert_flag(input: RopInput) -> u16 {
    match input {
        RopInput::Src => SPICE_ROPD_INVERS_SRC,
        RopInput::Brush => SPICE_ROPD_INVERS_BRUSH,
        RopInput::Dest => SPICE_ROPD_INVERS_DEST,
    }
}

impl Rop {
    /// Plain copy of the source.
    pub const COPY: Rop = Rop {
        op: RopOp::Copy,
        invert_src: false,
        invert_dst: false,
        invert_result: false,
    };

    /// Reduces `SPICE_ROPD_*` `desc` for a drawing whose "source" operand is `src` and
    /// whose "destination" operand is `dst` (FILL: brush and dest; COPY: src and dest;
    /// OPAQUE: brush and the freshly copied src). Precedence follows spice: PUT, OR, AND,
    /// XOR, BLACKNESS, WHITENESS, INVERS; no operation bit at all means a plain copy.
    pub fn from_descriptor(desc: u16, src: RopInput, dst: RopInput) -> Rop {
        let invert_src = desc & invert_flag(src) != 0;
        let invert_dst = desc & invert_flag(dst) != 0;
        let invert_result = desc & SPICE_ROPD_INVERS_RES != 0;
        let with = |op| Rop {
            op,
            invert_src,
            invert_dst,
            invert_result,
        };
        let bare = |op| Rop {
            op,
            invert_src: false,
            invert_dst: false,
            invert_result: false,
        };
        if desc & SPICE_ROPD_OP_PUT != 0 {
            Rop {
                invert_dst: false,
                ..with(RopOp::Copy)
            }
        } else if desc & SPICE_ROPD_OP_OR != 0 {
            with(RopOp::Or)
        } else if desc & SPICE_ROPD_OP_AND != 0 {
            with(RopOp::And)
        } else if desc & SPICE_ROPD_OP_XOR != 0 {
            with(RopOp::Xor)
        } else if desc & SPICE_ROPD_OP_BLACKNESS != 0 {
            bare(RopOp::Clear)
        } else if desc & SPICE_ROPD_OP_WHITENESS != 0 {
            bare(RopOp::Set)
        } else if desc & SPICE_ROPD_OP_INVERS != 0 {
            bare(RopOp::Invert)
        } else {
            Rop::COPY
        }
    }

    /// Whether the result is the source unchanged (the fast path).
    pub fn is_copy(&self) -> bool {
        self.op == RopOp::Copy && self.invert_src == self.invert_result
    }

    /// Whether the result depends on the destination (so it must be read first).
    pub fn reads_dest(&self) -> bool {
        matches!(self.op, RopOp::Or | RopOp::And | RopOp::Xor | RopOp::Invert)
    }

    /// Applies the operation to one pixel. Every bit of the native value takes part.
    #[inline]
    pub fn apply(&self, src: u32, dst: u32) -> u32 {
        let s = if self.invert_src { !src } else { src };
        let d = if self.invert_dst { !dst } else { dst };
        let r = match self.op {
            RopOp::Copy => s,
            RopOp::Or => s | d,
            RopOp::And => s & d,
            RopOp::Xor => s ^ d,
            RopOp::Clear => return 0,
            RopOp::Set => return u32::MAX,
            RopOp::Invert => return !dst,
        };
        if self.invert_result { !r } else { r }
    }
}

/// The ternary raster operation `rop3` on pattern `p`, source `s` and destination `d`,
/// bit by bit: result bit = bit `(p << 2) | (s << 1) | d` of `rop3` (the Windows
/// convention spice's rop3.c follows, e.g. 0xCC is SRCCOPY, 0xF0 PATCOPY, 0x5A PATINVERT).
#[inline]
pub fn rop3(code: u8, p: u32, s: u32, d: u32) -> u32 {
    let mut r = 0u32;
    for index in 0..8u8 {
        if code & (1 << index) != 0 {
            let pm = if index & 4 != 0 { p } else { !p };
            let sm = if index & 2 != 0 { s } else { !s };
            let dm = if index & 1 != 0 { d } else { !d };
            r |= pm & sm & dm;
        }
    }
    r
}

/// `a × b / 255`, rounded, the way pixman multiplies 8-bit channels.
#[inline]
pub fn mul_un8(a: u32, b: u32) -> u32 {
    let t = a * b + 0x80;
    ((t >> 8) + t) >> 8
}

#[inline]
fn channel(v: u32, shift: u32) -> u32 {
    (v >> shift) & 0xff
}

/// Multiplies every channel of `v` by `m / 255`.
#[inline]
pub fn mul_pixel(v: u32, m: u32) -> u32 {
    let mut out = 0;
    for shift in [0, 8, 16, 24] {
        out |= mul_un8(channel(v, shift), m) << shift;
    }
    out
}

/// Multiplies every channel of `v` by the matching channel of `m` (component alpha).
#[inline]
pub fn mul_pixel_ca(v: u32, m: u32) -> u32 {
    let mut out = 0;
    for shift in [0, 8, 16, 24] {
        out |= mul_un8(channel(v, shift), channel(m, shift)) << shift;
    }
    out
}

/// Channel-wise saturating add.
#[inline]
pub fn add_pixel(a: u32, b: u32) -> u32 {
    let mut out = 0;
    for shift in [0, 8, 16, 24] {
        out |= (channel(a, shift) + channel(b, shift)).min(0xff) << shift;
    }
    out
}

/// Porter-Duff OVER on premultiplied pixels: `src + dst × (1 - src.alpha)`.
#[inline]
pub fn over(src: u32, dst: u32) -> u32 {
    let ia = 0xff - (src >> 24);
    add_pixel(src, mul_pixel(dst, ia))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_round_trips() {
        let cases = [
            (SurfaceFormat::Xrgb8888, 0x12_345678, 4),
            (SurfaceFormat::Rgb555, 0x7fff, 2),
            (SurfaceFormat::Rgb565, 0xf81f, 2),
            (SurfaceFormat::A8, 0x80, 1),
        ];
        for (format, v, bytes) in cases {
            let mut buf = vec![0u8; bytes];
            encode_native(format, 0, &[v], &mut buf);
            let mut out = [0u32];
            decode_native(format, 0, &buf, &mut out);
            assert_eq!(out[0], v, "{format:?}");
        }
        // 1 bpp keeps neighbouring bits and starts at bit x & 7.
        let mut buf = [0b1000_0001u8, 0];
        encode_native(SurfaceFormat::A1, 3, &[1, 0, 1, 1, 1, 1, 1, 0], &mut buf);
        assert_eq!(buf, [0b1110_1001, 0b0000_0011]);
        let mut out = [0u32; 8];
        decode_native(SurfaceFormat::A1, 3, &buf, &mut out);
        assert_eq!(out, [1, 0, 1, 1, 1, 1, 1, 0]);
    }

    #[test]
    fn sixteen_bit_conversions_match_spice() {
        assert_eq!(rgb555_to_argb(0x7fff), 0x00ff_ffff);
        assert_eq!(rgb555_to_argb(0x7c00), 0x00ff_0000);
        assert_eq!(rgb555_to_argb(0x0010), 0x0000_0084);
        assert_eq!(argb_to_rgb555(0x00ff_8040), 0x7e08);
        assert_eq!(argb_to_rgb565(0x00ff_8040), 0xfc08);
        assert_eq!(rgb565_to_argb(0xffff), 0x00ff_ffff);
        for v in 0..0x8000 {
            assert_eq!(argb_to_rgb555(rgb555_to_argb(v)), v);
        }
    }

    #[test]
    fn descriptors_reduce_like_spice() {
        use RopInput::{Brush, Dest, Src};
        let r = |d| Rop::from_descriptor(d, Src, Dest);
        let (s, d) = (0b1100u32, 0b1010u32);
        let lo = |v: u32| v & 0xf;
        assert!(r(SPICE_ROPD_OP_PUT).is_copy());
        assert_eq!(
            lo(r(SPICE_ROPD_OP_PUT | SPICE_ROPD_INVERS_SRC).apply(s, d)),
            0b0011
        );
        // PUT with both inversions cancels: spice's COPY.
        assert!(r(SPICE_ROPD_OP_PUT | SPICE_ROPD_INVERS_SRC | SPICE_ROPD_INVERS_RES).is_copy());
        // OR + INVERS_RES + INVERS_SRC = src & !dst (AND_REVERSE).
        let rop = r(SPICE_ROPD_OP_OR | SPICE_ROPD_INVERS_RES | SPICE_ROPD_INVERS_SRC);
        assert_eq!(lo(rop.apply(s, d)), lo(s & !d));
        // AND + INVERS_DEST = src & !dst; XOR + INVERS_SRC = EQUIV.
        assert_eq!(
            lo(r(SPICE_ROPD_OP_AND | SPICE_ROPD_INVERS_DEST).apply(s, d)),
            lo(s & !d)
        );
        assert_eq!(
            lo(r(SPICE_ROPD_OP_XOR | SPICE_ROPD_INVERS_SRC).apply(s, d)),
            lo(!s ^ d)
        );
        assert_eq!(
            r(SPICE_ROPD_OP_BLACKNESS | SPICE_ROPD_INVERS_RES).apply(s, d),
            0
        );
        assert_eq!(r(SPICE_ROPD_OP_WHITENESS).apply(s, d), u32::MAX);
        assert_eq!(
            r(SPICE_ROPD_OP_INVERS | SPICE_ROPD_INVERS_DEST).apply(s, d),
            !d
        );
        assert!(r(0).is_copy());
        assert!(r(SPICE_ROPD_INVERS_SRC).is_copy());
        // The brush's bit applies to the brush operand only.
        let fill = Rop::from_descriptor(SPICE_ROPD_OP_PUT | SPICE_ROPD_INVERS_BRUSH, Brush, Dest);
        assert_eq!(fill.apply(s, d), !s);
        let fill = Rop::from_descriptor(SPICE_ROPD_OP_PUT | SPICE_ROPD_INVERS_SRC, Brush, Dest);
        assert!(fill.is_copy());
    }

    #[test]
    fn rop3_codes() {
        let (p, s, d) = (0xf0f0_f0f0u32, 0xcccc_ccccu32, 0xaaaa_aaaau32);
        assert_eq!(rop3(0xcc, p, s, d), s);
        assert_eq!(rop3(0xf0, p, s, d), p);
        assert_eq!(rop3(0xaa, p, s, d), d);
        assert_eq!(rop3(0x5a, p, s, d), p ^ d);
        assert_eq!(rop3(0x66, p, s, d), s ^ d);
        assert_eq!(rop3(0x01, p, s, d), !(p | s | d));
        assert_eq!(rop3(0xb8, p, s, d), (p & !s) | (d & s));
        assert_eq!(rop3(0x00, p, s, d), 0);
        assert_eq!(rop3(0xff, p, s, d), u32::MAX);
    }

    #[test]
    fn blending_rounds_like_pixman() {
        assert_eq!(mul_un8(255, 255), 255);
        assert_eq!(mul_un8(128, 255), 128);
        assert_eq!(mul_un8(128, 128), 64);
        assert_eq!(mul_un8(1, 127), 0);
        assert_eq!(mul_un8(1, 128), 1);
        // Half-transparent white over opaque black.
        assert_eq!(over(0x8080_8080, 0xff00_0000), 0xff80_8080);
        // Opaque source replaces, transparent source keeps.
        assert_eq!(over(0xff12_3456, 0xffab_cdef), 0xff12_3456);
        assert_eq!(over(0, 0xffab_cdef), 0xffab_cdef);
        assert_eq!(add_pixel(0xf0f0_f0f0, 0x2020_2020), 0xffff_ffff);
    }
}
