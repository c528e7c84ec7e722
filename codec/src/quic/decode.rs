//! The QUIC decoder. It replays the encoder's control flow pixel by pixel (the model state
//! decides how every codeword is read), writing straight into the packed output rows.

use super::bits::BitReader;
use super::model::{Adapt, Channels, Segment, channel_offset, same_pixel};
use super::tables::{FAMILY, low_mask, unfold};
use super::{DecodeError, QUIC_MAGIC, QUIC_VERSION, QuicType};
use crate::image::{DecodedImage, PixelFormat};

pub(super) fn decode_image(data: &[u8], max_pixels: u64) -> Result<DecodedImage, DecodeError> {
    let mut rd = BitReader::new(data).ok_or(DecodeError::Truncated)?;
    let magic = rd.read_u32();
    if magic != QUIC_MAGIC {
        return Err(DecodeError::BadMagic { found: magic });
    }
    let version = rd.read_u32();
    let ty = rd.read_u32();
    let width = rd.read_u32();
    let height = rd.read_u32();
    if rd.overrun() {
        return Err(DecodeError::Truncated);
    }
    if version != QUIC_VERSION {
        return Err(DecodeError::BadVersion { found: version });
    }
    let ty = QuicType::from_u32(ty).ok_or(DecodeError::InvalidType { value: ty })?;
    let format = match ty {
        QuicType::Rgb32 => PixelFormat::Rgb32,
        QuicType::Rgb24 => PixelFormat::Rgb24,
        QuicType::Rgba => PixelFormat::Rgba,
        QuicType::Gray | QuicType::Rgb16 => return Err(DecodeError::UnsupportedType { ty }),
    };
    if width == 0 || height == 0 {
        return Err(DecodeError::Empty { width, height });
    }
    let pixels = width as u64 * height as u64;
    if pixels > max_pixels {
        return Err(DecodeError::TooManyPixels {
            width,
            height,
            max_pixels,
        });
    }
    // Every pixel of the first row and the first pixel of every other row cost at least one
    // bit per colour channel, so a stream too short for that is refused before we allocate.
    let min_bits = 3 * (width as u64 + height as u64 - 1);
    if rd.bits_left() < min_bits {
        return Err(DecodeError::TooShortFor {
            width,
            height,
            bytes: data.len(),
        });
    }

    let too_many = DecodeError::TooManyPixels {
        width,
        height,
        max_pixels,
    };
    let bpp = format.bytes_per_pixel();
    let total = pixels
        .checked_mul(bpp as u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or(too_many)?;
    let w = width as usize;
    let row_bytes = w * bpp;
    // Rows are appended as they are decoded, so a stream that fails early has allocated
    // little; the first reservation only guesses at plausible compression.
    let mut out = Vec::with_capacity(total.min(data.len().saturating_mul(64).max(row_bytes)));
    match ty {
        QuicType::Rgb24 => decode_rows::<3, false>(&mut rd, &mut out, w, height)?,
        QuicType::Rgba => decode_rows::<4, true>(&mut rd, &mut out, w, height)?,
        _ => decode_rows::<4, false>(&mut rd, &mut out, w, height)?,
    }
    Ok(DecodedImage {
        width,
        height,
        format,
        pixels: out,
    })
}

/// Decodes all rows into `out`, appending each before decoding into it.
fn decode_rows<const BPP: usize, const ALPHA: bool>(
    rd: &mut BitReader<'_>,
    out: &mut Vec<u8>,
    width: usize,
    height: u32,
) -> Result<(), DecodeError> {
    let row_bytes = width * BPP;
    let mut rgb = Channels::<3>::new(width);
    let mut alpha = Channels::<1>::new(if ALPHA { width } else { 0 });
    for y in 0..height {
        let start = out.len();
        out.resize(start + row_bytes, 0);
        let (before, cur) = out.split_at_mut(start);
        let prev = &before[start.saturating_sub(row_bytes)..];
        decode_row::<3, BPP>(&mut rgb, rd, prev, cur, y)?;
        if ALPHA {
            decode_row::<1, BPP>(&mut alpha, rd, prev, cur, y)?;
        }
        if rd.overrun() {
            return Err(DecodeError::Truncated);
        }
    }
    Ok(())
}

/// Decodes one row of `N` channels (`prev` is empty on the first row).
fn decode_row<const N: usize, const BPP: usize>(
    ch: &mut Channels<N>,
    rd: &mut BitReader<'_>,
    prev: &[u8],
    cur: &mut [u8],
    y: u32,
) -> Result<(), DecodeError> {
    let first_row = prev.is_empty();
    ch.start_row(first_row);
    let plan = ch.adapt.plan_row(cur.len() / BPP);
    for seg in plan.segments() {
        if first_row {
            decode_segment::<N, BPP, true>(ch, rd, prev, cur, seg, y)?;
        } else {
            decode_segment::<N, BPP, false>(ch, rd, prev, cur, seg, y)?;
        }
    }
    Ok(())
}

/// Reads one Golomb codeword of code `code` from the front of `window`: the value and the
/// codeword length. Escaped values past 255 cannot come from a valid encoder; like the
/// reference we keep their low 8 bits.
///
/// Both readings are computed and one is selected without a branch: on noisy content the
/// escape is taken about half the time, and a mispredicted branch per channel costs more
/// than the few extra instructions.
#[inline(always)]
fn golomb(code: usize, window: u32) -> (u8, u32) {
    let l = code as u32;
    let zeros = window.leading_zeros();
    let gr_len = zeros + 1 + l;
    let gr = (zeros << l) | (window.wrapping_shr(32u32.wrapping_sub(gr_len)) & low_mask(l));
    let esc_len = FAMILY.escape_len[code];
    let esc =
        FAMILY.gr_limit[code] + ((window >> (32 - esc_len)) & low_mask(FAMILY.suffix_len[code]));
    if window > FAMILY.escape_window_max[code] {
        (gr as u8, gr_len)
    } else {
        (esc as u8, esc_len)
    }
}

/// Decodes column `i` of every channel (see `encode::code_pixel` for the predictions).
#[inline(always)]
fn decode_pixel<const N: usize, const BPP: usize, const FIRST_ROW: bool>(
    ch: &mut Channels<N>,
    rd: &mut BitReader<'_>,
    prev: &[u8],
    cur: &mut [u8],
    i: usize,
) {
    let (done, rest) = cur.split_at_mut(i * BPP);
    let px = &mut rest[..BPP];
    // The pixel's neighbours: left (on this row) and above; both absent at the first column
    // of the first row.
    let left: &[u8] = if i > 0 { &done[(i - 1) * BPP..] } else { &[] };
    let up: &[u8] = if FIRST_ROW {
        &[]
    } else {
        &prev[i * BPP..][..BPP]
    };
    for (c, (model, ctx)) in ch.models.iter().zip(ch.ctx.iter_mut()).enumerate() {
        let off = channel_offset::<N>(c);
        let code = model.code_for(ctx[i]) & 7;
        let (v, len) = golomb(code, rd.peek());
        rd.eat(len);
        ctx[i + 1] = v;
        let pred = match (FIRST_ROW, i) {
            (true, 0) => 0,
            (true, _) => left[off],
            (false, 0) => up[off],
            (false, _) => ((left[off] as u16 + up[off] as u16) >> 1) as u8,
        };
        px[off] = unfold(v).wrapping_add(pred);
    }
}

/// Decodes columns `seg.start..seg.end` of row `y`, mirroring `encode::code_segment`.
fn decode_segment<const N: usize, const BPP: usize, const FIRST_ROW: bool>(
    ch: &mut Channels<N>,
    rd: &mut BitReader<'_>,
    prev: &[u8],
    cur: &mut [u8],
    seg: &Segment,
    y: u32,
) -> Result<(), DecodeError> {
    let waitmask = ch.adapt.enter(seg);
    let end = seg.end;
    let mut i = seg.start;
    let mut stop;
    if i == 0 {
        decode_pixel::<N, BPP, FIRST_ROW>(ch, rd, prev, cur, 0);
        if ch.adapt.waitcnt > 0 {
            ch.adapt.waitcnt -= 1;
        } else {
            ch.adapt.waitcnt = ch.adapt.next_wait(waitmask);
            ch.update(0);
        }
        i = 1;
        stop = i + ch.adapt.waitcnt;
    } else {
        stop = i + ch.adapt.waitcnt;
    }
    let mut run_index = 0usize;
    let run_here = |cur: &[u8], i: usize, run_index: usize| {
        !FIRST_ROW
            && same_pixel::<N, BPP>(prev, i - 1, i)
            && run_index != i
            && i > 2
            && same_pixel::<N, BPP>(cur, i - 1, i - 2)
    };
    loop {
        let run_found = 'coding: {
            while stop < end {
                while i <= stop {
                    if run_here(cur, i, run_index) {
                        break 'coding true;
                    }
                    decode_pixel::<N, BPP, FIRST_ROW>(ch, rd, prev, cur, i);
                    i += 1;
                }
                ch.update(stop);
                stop = i + ch.adapt.next_wait(waitmask);
            }
            while i < end {
                if run_here(cur, i, run_index) {
                    break 'coding true;
                }
                decode_pixel::<N, BPP, FIRST_ROW>(ch, rd, prev, cur, i);
                i += 1;
            }
            false
        };
        if !run_found {
            ch.adapt.waitcnt = stop - end;
            return Ok(());
        }
        run_index = i;
        ch.adapt.waitcnt = stop - i;
        let len =
            get_run(&mut ch.adapt, rd, end - i).ok_or(DecodeError::BadRun { row: y, column: i })?;
        fill_run::<N, BPP>(cur, i, len);
        i += len;
        if i == end {
            return Ok(());
        }
        stop = i + ch.adapt.waitcnt;
    }
}

/// Repeats pixel `start - 1` over `len` pixels (its group's channels only).
#[inline]
fn fill_run<const N: usize, const BPP: usize>(cur: &mut [u8], start: usize, len: usize) {
    if len == 0 {
        return;
    }
    let (head, tail) = cur.split_at_mut(start * BPP);
    let src = &head[(start - 1) * BPP..][..BPP];
    let run = &mut tail[..len * BPP];
    if N == 3 && BPP == 4 {
        // Copying whole pixels is faster, and harmless: the fourth byte is still 0 on this
        // row (X is never written; alpha is decoded after the colour of the whole row).
        let px = [src[0], src[1], src[2], src[3]];
        for dst in run.chunks_exact_mut(4) {
            dst.copy_from_slice(&px);
        }
    } else {
        for dst in run.chunks_exact_mut(BPP) {
            for c in 0..N {
                let off = channel_offset::<N>(c);
                dst[off] = src[off];
            }
        }
    }
}

/// Reads a MELCODE run length; `None` if it would pass `max` or the input ends inside it.
fn get_run(a: &mut Adapt, rd: &mut BitReader<'_>, max: usize) -> Option<usize> {
    let mut len = 0usize;
    loop {
        let ones = ((rd.peek() >> 24) as u8).leading_ones();
        for _ in 0..ones {
            len += a.melc_order();
            a.melc_hit();
        }
        if ones != 8 {
            rd.eat(ones + 1);
            break;
        }
        rd.eat(8);
        if len > max || rd.overrun() {
            return None;
        }
    }
    let bits = a.melc_len();
    if bits > 0 {
        len += (rd.peek() >> (32 - bits)) as usize;
        rd.eat(bits);
    }
    a.melc_end();
    (len <= max && !rd.overrun()).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_bounded_by_the_segment() {
        let ones = [0xffu8; 64];
        let mut rd = BitReader::new(&ones).unwrap();
        assert_eq!(get_run(&mut Adapt::new(), &mut rd, 1000), None);

        // Hits of 1, 1, 1, 1, 2 (the state climbs), then a zero and 1 remainder bit.
        let mut a = Adapt::new();
        let stream = 0b1111_1010_u32 << 24;
        let words = [stream.to_le_bytes(), [0; 4]].concat();
        let mut rd = BitReader::new(&words).unwrap();
        assert_eq!(get_run(&mut a, &mut rd, 100), Some(6 + 1));
        let mut a = Adapt::new();
        let mut rd = BitReader::new(&words).unwrap();
        assert_eq!(get_run(&mut a, &mut rd, 6), None);
    }
}
