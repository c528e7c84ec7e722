//! The QUIC encoder.
//!
//! Rows are read straight from the image: the residual of a pixel is only computed when the
//! pixel is coded, so pixels inside runs cost no more than a comparison.

use super::bits::BitWriter;
use super::model::{Channels, Segment, channel_offset, run_length, same_pixel};
use super::tables::{FAMILY, fold};
use super::{QUIC_MAGIC, QUIC_VERSION, QuicType};
use crate::image::ImageRef;

/// Encodes `image` as a QUIC stream of type `ty` (RGB32, RGB24 or RGBA, matching the image's
/// pixel format).
pub(super) fn encode_image(image: &ImageRef<'_>, ty: QuicType) -> Vec<u8> {
    let width = image.width() as usize;
    let height = image.height();

    // Room for a byte per coded channel: noise needs about that, screen content far less
    // (untouched capacity costs no memory), and only pathological images grow past it.
    let channels = if ty == QuicType::Rgba { 4 } else { 3 };
    let mut bw = BitWriter::with_capacity(64 + width * height as usize * channels);
    for v in [QUIC_MAGIC, QUIC_VERSION, ty as u32, image.width(), height] {
        bw.put(v >> 16, 16);
        bw.put(v & 0xffff, 16);
    }
    match ty {
        QuicType::Rgb24 => encode_rows::<3, false>(image, &mut bw),
        QuicType::Rgba => encode_rows::<4, true>(image, &mut bw),
        _ => encode_rows::<4, false>(image, &mut bw),
    }
    bw.finish()
}

/// Codes every row: colour first, then (for RGBA) alpha, each with its own models.
fn encode_rows<const BPP: usize, const ALPHA: bool>(image: &ImageRef<'_>, bw: &mut BitWriter) {
    let width = image.width() as usize;
    let mut rgb = Channels::<3>::new(width);
    let mut alpha = Channels::<1>::new(if ALPHA { width } else { 0 });
    let mut prev: &[u8] = &[];
    for y in 0..image.height() {
        let cur = image.row(y);
        code_row::<3, BPP>(&mut rgb, bw, prev, cur);
        if ALPHA {
            code_row::<1, BPP>(&mut alpha, bw, prev, cur);
        }
        prev = cur;
    }
}

/// Codes one row of `N` channels (`prev` is empty on the first row), split into the segments
/// the wait-mask schedule dictates.
fn code_row<const N: usize, const BPP: usize>(
    ch: &mut Channels<N>,
    bw: &mut BitWriter,
    prev: &[u8],
    cur: &[u8],
) {
    let first_row = prev.is_empty();
    ch.start_row(first_row);
    let plan = ch.adapt.plan_row(cur.len() / BPP);
    for seg in plan.segments() {
        if first_row {
            code_segment::<N, BPP, true>(ch, bw, prev, cur, seg);
        } else {
            code_segment::<N, BPP, false>(ch, bw, prev, cur, seg);
        }
    }
}

/// Codes column `i` of every channel: the prediction error, folded, with the channel's best
/// code for the context left by column `i - 1`. On the first row a pixel is predicted by its
/// left neighbour (the first by 0); below, the first pixel by the one above and the others
/// by the mean of left and above, rounded down.
#[inline(always)]
fn code_pixel<const N: usize, const BPP: usize, const FIRST_ROW: bool>(
    ch: &mut Channels<N>,
    bw: &mut BitWriter,
    prev: &[u8],
    cur: &[u8],
    i: usize,
) {
    let px = &cur[i * BPP..][..BPP];
    let mut res = [0u8; N];
    match (FIRST_ROW, i) {
        (true, 0) => {
            for (c, r) in res.iter_mut().enumerate() {
                *r = fold(px[channel_offset::<N>(c)]);
            }
        }
        (true, _) => {
            let left = &cur[(i - 1) * BPP..][..BPP];
            for (c, r) in res.iter_mut().enumerate() {
                let off = channel_offset::<N>(c);
                *r = fold(px[off].wrapping_sub(left[off]));
            }
        }
        (false, 0) => {
            let up = &prev[..BPP];
            for (c, r) in res.iter_mut().enumerate() {
                let off = channel_offset::<N>(c);
                *r = fold(px[off].wrapping_sub(up[off]));
            }
        }
        (false, _) => {
            let left = &cur[(i - 1) * BPP..][..BPP];
            let up = &prev[i * BPP..][..BPP];
            for (c, r) in res.iter_mut().enumerate() {
                let off = channel_offset::<N>(c);
                let pred = ((left[off] as u16 + up[off] as u16) >> 1) as u8;
                *r = fold(px[off].wrapping_sub(pred));
            }
        }
    }
    for ((model, ctx), v) in ch.models.iter().zip(ch.ctx.iter_mut()).zip(res) {
        let code = model.code_for(ctx[i]) & 7;
        bw.put_packed(FAMILY.code[code][v as usize]);
        ctx[i + 1] = v;
    }
}

/// Codes columns `seg.start..seg.end`. The control flow mirrors the reference exactly,
/// because the decoder replays it: models are updated at pseudo-randomly spaced columns, and
/// (below the first row) a run is tried wherever the row above repeats a pixel and the two
/// pixels to the left are equal.
fn code_segment<const N: usize, const BPP: usize, const FIRST_ROW: bool>(
    ch: &mut Channels<N>,
    bw: &mut BitWriter,
    prev: &[u8],
    cur: &[u8],
    seg: &Segment,
) {
    let waitmask = ch.adapt.enter(seg);
    let end = seg.end;
    let mut i = seg.start;
    let mut stop;
    if i == 0 {
        code_pixel::<N, BPP, FIRST_ROW>(ch, bw, prev, cur, 0);
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
                    if run_here(i, run_index) {
                        break 'coding true;
                    }
                    code_pixel::<N, BPP, FIRST_ROW>(ch, bw, prev, cur, i);
                    i += 1;
                }
                ch.update(stop);
                stop = i + ch.adapt.next_wait(waitmask);
            }
            while i < end {
                if run_here(i, run_index) {
                    break 'coding true;
                }
                code_pixel::<N, BPP, FIRST_ROW>(ch, bw, prev, cur, i);
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
        let len = run_length::<N, BPP>(cur, i, end);
        put_run(ch, bw, len);
        i += len;
        if i == end {
            return;
        }
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
