//! The QUIC encoder.
//!
//! Each row is first turned into folded prediction residuals per channel (a pass with no
//! state, so it runs fast), then a second pass walks the row in the reference's order and
//! entropy-codes those residuals, switching to the run coder where the reference does.

use super::bits::BitWriter;
use super::model::{Channels, Segment};
use super::tables::{FAMILY, fold};
use super::{QUIC_MAGIC, QUIC_VERSION, QuicType};
use crate::image::ImageRef;

/// Byte offsets of R, G, B inside a pixel (Spice pixels are B, G, R[, X|A]); QUIC codes the
/// channels in that order.
const RGB_OFFSETS: [usize; 3] = [2, 1, 0];
const ALPHA_OFFSET: usize = 3;

/// Encodes `image` as a QUIC stream of type `ty` (RGB32, RGB24 or RGBA, matching the image's
/// pixel format).
pub(super) fn encode_image(image: &ImageRef<'_>, ty: QuicType) -> Vec<u8> {
    let width = image.width() as usize;
    let height = image.height();
    let bpp = image.format().bytes_per_pixel();
    let with_alpha = ty == QuicType::Rgba;

    // A generous first guess; screen content usually needs far less.
    let raw = width * height as usize * bpp;
    let mut bw = BitWriter::with_capacity(64 + raw / 2);
    for v in [QUIC_MAGIC, QUIC_VERSION, ty as u32, image.width(), height] {
        bw.put(v >> 16, 16);
        bw.put(v & 0xffff, 16);
    }

    let mut rgb = Channels::<3>::new(width);
    let mut alpha = Channels::<1>::new(if with_alpha { width } else { 0 });
    let mut res: [Vec<u8>; 3] = std::array::from_fn(|_| vec![0; width]);
    let mut res_a: [Vec<u8>; 1] = [vec![0u8; if with_alpha { width } else { 0 }]];
    let mut keys = vec![0u32; width];
    let mut keys_prev = vec![0u32; width];
    let mut keys_a = vec![0u32; if with_alpha { width } else { 0 }];
    let mut keys_a_prev = keys_a.clone();

    let mut prev_row: Option<&[u8]> = None;
    for y in 0..height {
        let row = image.row(y);
        for (out, &off) in res.iter_mut().zip(RGB_OFFSETS.iter()) {
            residuals(prev_row, row, bpp, off, out);
        }
        rgb_keys(row, bpp, &mut keys);
        code_row(&mut rgb, &mut bw, &res, &keys_prev, &keys, y == 0);
        if with_alpha {
            residuals(prev_row, row, bpp, ALPHA_OFFSET, &mut res_a[0]);
            for (k, px) in keys_a.iter_mut().zip(row.chunks_exact(bpp)) {
                *k = px[ALPHA_OFFSET] as u32;
            }
            code_row(&mut alpha, &mut bw, &res_a, &keys_a_prev, &keys_a, y == 0);
            std::mem::swap(&mut keys_a, &mut keys_a_prev);
        }
        std::mem::swap(&mut keys, &mut keys_prev);
        prev_row = Some(row);
    }
    bw.finish()
}

/// The folded prediction residuals of one channel of `row`: on the first row each pixel is
/// predicted by its left neighbour (the first by 0); below, the first pixel by the one above
/// and the others by the mean of left and above, rounded down.
fn residuals(prev: Option<&[u8]>, row: &[u8], bpp: usize, off: usize, out: &mut [u8]) {
    let cur = row.chunks_exact(bpp).map(|p| p[off]);
    match prev {
        None => {
            let mut left = 0u8;
            for (o, c) in out.iter_mut().zip(cur) {
                *o = fold(c.wrapping_sub(left));
                left = c;
            }
        }
        Some(prev) => {
            let above = prev.chunks_exact(bpp).map(|p| p[off]);
            let mut iter = out.iter_mut().zip(cur.zip(above));
            let Some((o, (c, a))) = iter.next() else {
                return;
            };
            *o = fold(c.wrapping_sub(a));
            let mut left = c;
            for (o, (c, a)) in iter {
                let pred = ((left as u16 + a as u16) >> 1) as u8;
                *o = fold(c.wrapping_sub(pred));
                left = c;
            }
        }
    }
}

/// One comparable value per pixel, from its colour channels only (the X or alpha byte never
/// takes part in colour runs).
fn rgb_keys(row: &[u8], bpp: usize, keys: &mut [u32]) {
    for (k, p) in keys.iter_mut().zip(row.chunks_exact(bpp)) {
        *k = p[0] as u32 | (p[1] as u32) << 8 | (p[2] as u32) << 16;
    }
}

/// Codes one row of `N` channels, split into the segments the wait-mask schedule dictates.
fn code_row<const N: usize>(
    ch: &mut Channels<N>,
    bw: &mut BitWriter,
    res: &[Vec<u8>; N],
    keys_prev: &[u32],
    keys: &[u32],
    first_row: bool,
) {
    ch.start_row(first_row);
    let plan = ch.adapt.plan_row(keys.len());
    for seg in plan.segments() {
        if first_row {
            code_segment::<N, false>(ch, bw, res, keys_prev, keys, seg);
        } else {
            code_segment::<N, true>(ch, bw, res, keys_prev, keys, seg);
        }
    }
}

/// Codes the residuals of column `i` with each channel's current best code.
#[inline(always)]
fn code_pixel<const N: usize>(
    ch: &mut Channels<N>,
    bw: &mut BitWriter,
    res: &[Vec<u8>; N],
    i: usize,
) {
    for c in 0..N {
        let v = res[c][i];
        let code = ch.models[c].code_for(ch.ctx[c][i]) & 7;
        bw.put_packed(FAMILY.code[code][v as usize]);
        ch.ctx[c][i + 1] = v;
    }
}

/// Codes columns `seg.start..seg.end`. The control flow mirrors the reference exactly,
/// because the decoder replays it: models are updated at pseudo-randomly spaced columns, and
/// (below the first row) a run is tried wherever the row above repeats a pixel and the two
/// pixels to the left are equal.
fn code_segment<const N: usize, const RUNS: bool>(
    ch: &mut Channels<N>,
    bw: &mut BitWriter,
    res: &[Vec<u8>; N],
    keys_prev: &[u32],
    keys: &[u32],
    seg: &Segment,
) {
    let waitmask = ch.adapt.enter(seg);
    let end = seg.end;
    let mut i = seg.start;
    let mut stop;
    if i == 0 {
        code_pixel(ch, bw, res, 0);
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
    // Column where the last run started: no second run may start there.
    let mut run_index = 0usize;
    let run_here = |i: usize, run_index: usize| {
        RUNS && keys_prev[i - 1] == keys_prev[i]
            && run_index != i
            && i > 2
            && keys[i - 1] == keys[i - 2]
    };
    loop {
        let run_found = 'coding: {
            while stop < end {
                while i <= stop {
                    if run_here(i, run_index) {
                        break 'coding true;
                    }
                    code_pixel(ch, bw, res, i);
                    i += 1;
                }
                ch.update(stop);
                stop = i + ch.adapt.next_wait(waitmask);
            }
            while i < end {
                if run_here(i, run_index) {
                    break 'coding true;
                }
                code_pixel(ch, bw, res, i);
                i += 1;
            }
            false
        };
        if !run_found {
            ch.adapt.waitcnt = stop - end;
            return;
        }
        // The run: how many pixels from `i` on repeat the one to their left. The update
        // countdown pauses meanwhile.
        run_index = i;
        ch.adapt.waitcnt = stop - i;
        let mut len = 0;
        while keys[i] == keys[i - 1] {
            len += 1;
            i += 1;
            if i == end {
                put_run(ch, bw, len);
                return;
            }
        }
        put_run(ch, bw, len);
        stop = i + ch.adapt.waitcnt;
    }
}

/// Sends a run length with the adaptive MELCODE: a one bit per full "expected run", then a
/// zero and the remainder in `melc_len` bits.
fn put_run<const N: usize>(ch: &mut Channels<N>, bw: &mut BitWriter, mut len: usize) {
    let a = &mut ch.adapt;
    let mut hits = 0;
    while len >= a.melc_order() {
        hits += 1;
        len -= a.melc_order();
        a.melc_hit();
    }
    bw.put_ones(hits);
    bw.put(len as u32, a.melc_len() + 1);
    a.melc_end();
}
