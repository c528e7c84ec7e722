//! The QUIC decoder. It replays the encoder's control flow pixel by pixel (the model state
//! decides how every codeword is read), writing straight into the packed output rows.

use super::bits::BitReader;
use super::model::{Adapt, Channels, Segment};
use super::tables::{FAMILY, low_mask, unfold};
use super::{DecodeError, QUIC_MAGIC, QUIC_VERSION, QuicType};
use crate::image::{DecodedImage, PixelFormat};

const RGB_OFFSETS: [usize; 3] = [2, 1, 0];
const ALPHA_OFFSETS: [usize; 1] = [3];

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

    let w = width as usize;
    let bpp = format.bytes_per_pixel();
    let row_bytes = w * bpp;
    let total = row_bytes * height as usize;
    // Rows are appended as they are decoded, so a stream that fails early has allocated
    // little; the first reservation only guesses at plausible compression.
    let mut out = Vec::with_capacity(total.min(data.len().saturating_mul(64).max(row_bytes)));
    let mut rgb = Channels::<3>::new(w);
    let mut alpha = Channels::<1>::new(if ty == QuicType::Rgba { w } else { 0 });

    for y in 0..height {
        let start = out.len();
        out.resize(start + row_bytes, 0);
        let (before, cur) = out.split_at_mut(start);
        let prev = &before[start.saturating_sub(row_bytes)..];
        let first = y == 0;
        decode_row(&mut rgb, &mut rd, prev, cur, bpp, RGB_OFFSETS, first, y)?;
        if ty == QuicType::Rgba {
            decode_row(&mut alpha, &mut rd, prev, cur, bpp, ALPHA_OFFSETS, first, y)?;
        }
        if rd.overrun() {
            return Err(DecodeError::Truncated);
        }
    }
    Ok(DecodedImage {
        width,
        height,
        format,
        pixels: out,
    })
}

/// Where one row's channels live and what it is decoded against.
struct RowCtx<'r, const N: usize> {
    prev: &'r [u8],
    cur: &'r mut [u8],
    bpp: usize,
    offs: [usize; N],
    y: u32,
}

#[allow(clippy::too_many_arguments)]
fn decode_row<const N: usize>(
    ch: &mut Channels<N>,
    rd: &mut BitReader<'_>,
    prev: &[u8],
    cur: &mut [u8],
    bpp: usize,
    offs: [usize; N],
    first_row: bool,
    y: u32,
) -> Result<(), DecodeError> {
    let mut row = RowCtx {
        prev,
        cur,
        bpp,
        offs,
        y,
    };
    ch.start_row(first_row);
    let plan = ch.adapt.plan_row(row.cur.len() / bpp);
    for seg in plan.segments() {
        if first_row {
            decode_segment::<N, true>(ch, rd, &mut row, seg)?;
        } else {
            decode_segment::<N, false>(ch, rd, &mut row, seg)?;
        }
    }
    Ok(())
}

/// Reads one Golomb codeword of code `code` from the front of `window`: the value and the
/// codeword length. Escaped values past 255 cannot come from a valid encoder; like the
/// reference we keep their low 8 bits.
#[inline(always)]
fn golomb(code: usize, window: u32) -> (u8, u32) {
    let l = code as u32;
    if window > FAMILY.escape_window_max[code] {
        let zeros = window.leading_zeros();
        let len = zeros + 1 + l;
        let v = (zeros << l) | ((window >> (32 - len)) & low_mask(l));
        (v as u8, len)
    } else {
        let len = FAMILY.escape_len[code];
        let v =
            FAMILY.gr_limit[code] + ((window >> (32 - len)) & low_mask(FAMILY.suffix_len[code]));
        (v as u8, len)
    }
}

/// Decodes column `i` of every channel.
#[inline(always)]
fn decode_pixel<const N: usize, const FIRST_ROW: bool>(
    ch: &mut Channels<N>,
    rd: &mut BitReader<'_>,
    row: &mut RowCtx<'_, N>,
    i: usize,
) {
    let bpp = row.bpp;
    for c in 0..N {
        let code = ch.models[c].code_for(ch.ctx[c][i]) & 7;
        let (v, len) = golomb(code, rd.peek());
        rd.eat(len);
        ch.ctx[c][i + 1] = v;
        let off = row.offs[c];
        let pred = match (FIRST_ROW, i) {
            (true, 0) => 0,
            (true, _) => row.cur[(i - 1) * bpp + off],
            (false, 0) => row.prev[off],
            (false, _) => {
                ((row.cur[(i - 1) * bpp + off] as u16 + row.prev[i * bpp + off] as u16) >> 1) as u8
            }
        };
        row.cur[i * bpp + off] = unfold(v).wrapping_add(pred);
    }
}

/// Whether pixels `a` and `b` of `row` agree on the channels at `offs`.
#[inline(always)]
fn same<const N: usize>(row: &[u8], bpp: usize, offs: &[usize; N], a: usize, b: usize) -> bool {
    offs.iter().all(|&o| row[a * bpp + o] == row[b * bpp + o])
}

/// Decodes columns `seg.start..seg.end`, mirroring `encode::code_segment`.
fn decode_segment<const N: usize, const FIRST_ROW: bool>(
    ch: &mut Channels<N>,
    rd: &mut BitReader<'_>,
    row: &mut RowCtx<'_, N>,
    seg: &Segment,
) -> Result<(), DecodeError> {
    let waitmask = ch.adapt.enter(seg);
    let end = seg.end;
    let mut i = seg.start;
    let mut stop;
    if i == 0 {
        decode_pixel::<N, FIRST_ROW>(ch, rd, row, 0);
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
    let run_here = |row: &RowCtx<'_, N>, i: usize, run_index: usize| {
        !FIRST_ROW
            && same(row.prev, row.bpp, &row.offs, i - 1, i)
            && run_index != i
            && i > 2
            && same(row.cur, row.bpp, &row.offs, i - 1, i - 2)
    };
    loop {
        let run_found = 'coding: {
            while stop < end {
                while i <= stop {
                    if run_here(row, i, run_index) {
                        break 'coding true;
                    }
                    decode_pixel::<N, FIRST_ROW>(ch, rd, row, i);
                    i += 1;
                }
                ch.update(stop);
                stop = i + ch.adapt.next_wait(waitmask);
            }
            while i < end {
                if run_here(row, i, run_index) {
                    break 'coding true;
                }
                decode_pixel::<N, FIRST_ROW>(ch, rd, row, i);
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
        let len = get_run(&mut ch.adapt, rd, end - i).ok_or(DecodeError::BadRun {
            row: row.y,
            column: i,
        })?;
        let (bpp, offs) = (row.bpp, row.offs);
        for k in i..i + len {
            for &o in offs.iter() {
                row.cur[k * bpp + o] = row.cur[(k - 1) * bpp + o];
            }
        }
        i += len;
        if i == end {
            return Ok(());
        }
        stop = i + ch.adapt.waitcnt;
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
