//! The adaptive state encoder and decoder keep in lockstep: per channel, which Golomb code
//! each context bucket currently prefers; per group of channels coded together, when the
//! next model update happens and how long the run coder expects runs to be.

use super::tables::{
    BPC, BUCKET_OF, BUCKET_RANGE, FAMILY, MELC_LEN, MELC_STATES, NUM_BUCKETS, TABRAND, WM_MAX,
    WM_NEXT, low_mask, wm_trigger,
};

/// One channel's model: for each context bucket, running code-length totals for every code
/// and the code that is currently cheapest.
pub(super) struct Model {
    best: [u8; NUM_BUCKETS],
    /// `best` spread over the context values, so the hot loops need one lookup, not two.
    best_of_ctx: [u8; 256],
    counters: [[u32; BPC]; NUM_BUCKETS],
}

impl Model {
    pub fn new() -> Self {
        Model {
            best: [(BPC - 1) as u8; NUM_BUCKETS],
            best_of_ctx: [(BPC - 1) as u8; 256],
            counters: [[0; BPC]; NUM_BUCKETS],
        }
    }

    /// The code to use when the previous pixel's folded residual was `ctx`.
    #[inline(always)]
    pub fn code_for(&self, ctx: u8) -> usize {
        self.best_of_ctx[ctx as usize] as usize
    }

    /// Charges every code for coding `val` in context `ctx`, picks the cheapest (the highest
    /// code wins a tie, as the reference scans from the top) and halves the totals once the
    /// best one passes `trigger`, so the model keeps following the picture.
    pub fn update(&mut self, ctx: u8, val: u8, trigger: u32) {
        let b = BUCKET_OF[ctx as usize] as usize;
        let counters = &mut self.counters[b];
        let mut best = BPC - 1;
        counters[best] += FAMILY.len[best][val as usize] as u32;
        let mut best_len = counters[best];
        for code in (0..BPC - 1).rev() {
            counters[code] += FAMILY.len[code][val as usize] as u32;
            if counters[code] < best_len {
                best = code;
                best_len = counters[code];
            }
        }
        if self.best[b] != best as u8 {
            self.best[b] = best as u8;
            self.best_of_ctx[BUCKET_RANGE[b].clone()].fill(best as u8);
        }
        if best_len > trigger {
            for c in counters.iter_mut() {
                *c >>= 1;
            }
        }
    }
}

/// A stretch of a row coded with one wait mask.
#[derive(Clone, Copy, Debug)]
pub(super) struct Segment {
    pub start: usize,
    pub end: usize,
    pub wmidx: u32,
}

/// The segments of one row: at most one per wait-mask step plus the remainder.
pub(super) struct RowPlan {
    segs: [Segment; WM_MAX as usize + 2],
    len: usize,
}

impl RowPlan {
    pub fn segments(&self) -> &[Segment] {
        &self.segs[..self.len]
    }
}

/// State shared by the channels coded together (the three colour channels share one, alpha
/// has its own): the update schedule and the run-length coder.
pub(super) struct Adapt {
    /// Pixels left before the next model update.
    pub waitcnt: usize,
    seed: u8,
    /// The halving threshold for the current wait mask.
    pub trigger: u32,
    wmidx: u32,
    wmileft: usize,
    melc_state: usize,
    melc_len: u32,
    melc_order: usize,
}

impl Adapt {
    pub fn new() -> Self {
        Adapt {
            waitcnt: 0,
            seed: 0xff,
            trigger: wm_trigger(0),
            wmidx: 0,
            wmileft: WM_NEXT,
            melc_state: 0,
            melc_len: MELC_LEN[0],
            melc_order: 1 << MELC_LEN[0],
        }
    }

    /// The next value of the shared pseudo-random sequence, masked to the wait mask.
    #[inline]
    pub fn next_wait(&mut self, waitmask: u32) -> usize {
        self.seed = self.seed.wrapping_add(1);
        (TABRAND[self.seed as usize] & waitmask) as usize
    }

    /// Splits a row of `width` pixels where the wait mask widens (every [`WM_NEXT`] pixels
    /// until it reaches [`WM_MAX`]), advancing the schedule as the reference does.
    pub fn plan_row(&mut self, width: usize) -> RowPlan {
        let mut plan = RowPlan {
            segs: [Segment {
                start: 0,
                end: 0,
                wmidx: 0,
            }; WM_MAX as usize + 2],
            len: 0,
        };
        let mut pos = 0;
        let mut left = width;
        while self.wmidx < WM_MAX && self.wmileft <= left {
            if self.wmileft > 0 {
                plan.segs[plan.len] = Segment {
                    start: pos,
                    end: pos + self.wmileft,
                    wmidx: self.wmidx,
                };
                plan.len += 1;
                left -= self.wmileft;
                pos += self.wmileft;
            }
            self.wmidx += 1;
            self.wmileft = WM_NEXT;
        }
        if left > 0 {
            plan.segs[plan.len] = Segment {
                start: pos,
                end: pos + left,
                wmidx: self.wmidx,
            };
            plan.len += 1;
            if self.wmidx < WM_MAX {
                self.wmileft -= left;
            }
        }
        plan
    }

    /// Prepares for coding `seg`; returns its wait mask.
    pub fn enter(&mut self, seg: &Segment) -> u32 {
        self.trigger = wm_trigger(seg.wmidx);
        low_mask(seg.wmidx)
    }

    /// Run length one "hit" bit stands for in the current run coder state.
    #[inline]
    pub fn melc_order(&self) -> usize {
        self.melc_order
    }

    /// Number of remainder bits after the hits in the current state.
    #[inline]
    pub fn melc_len(&self) -> u32 {
        self.melc_len
    }

    /// One more hit: expect longer runs.
    #[inline]
    pub fn melc_hit(&mut self) {
        if self.melc_state < MELC_STATES - 1 {
            self.melc_state += 1;
            self.melc_len = MELC_LEN[self.melc_state];
            self.melc_order = 1 << self.melc_len;
        }
    }

    /// A run ended: expect slightly shorter runs.
    #[inline]
    pub fn melc_end(&mut self) {
        if self.melc_state > 0 {
            self.melc_state -= 1;
            self.melc_len = MELC_LEN[self.melc_state];
            self.melc_order = 1 << self.melc_len;
        }
    }
}

/// Byte offset of channel `c` of a group of `N` inside a Spice pixel (B, G, R[, X|A]): the
/// colour group is coded R, G, B; a group of one is alpha.
#[inline(always)]
pub(super) const fn channel_offset<const N: usize>(c: usize) -> usize {
    if N == 1 { 3 } else { 2 - c }
}

/// Whether pixels `a` and `b` of `row` agree on the `N` channels of the group (the X byte,
/// and alpha for the colour group, never take part).
#[inline(always)]
pub(super) fn same_pixel<const N: usize, const BPP: usize>(row: &[u8], a: usize, b: usize) -> bool {
    (0..N).all(|c| {
        let off = channel_offset::<N>(c);
        row[a * BPP + off] == row[b * BPP + off]
    })
}

/// How many pixels of `row` from `start` on (stopping at `end`) repeat pixel `start - 1` on
/// the group's channels: the length of a run. `start` must be at least 1.
pub(super) fn run_length<const N: usize, const BPP: usize>(
    row: &[u8],
    start: usize,
    end: usize,
) -> usize {
    let span = &row[start * BPP..end * BPP];
    let reference = &row[(start - 1) * BPP..][..BPP];
    if BPP == 4 {
        // Whole pixels as words, masked to the group's bytes.
        let mask: u32 = if N == 1 { 0xff00_0000 } else { 0x00ff_ffff };
        let word = |p: &[u8]| u32::from_le_bytes([p[0], p[1], p[2], p[3]]) & mask;
        count_same(span, BPP, |p| word(p) == word(reference))
    } else {
        count_same(span, BPP, |p| {
            (0..N).all(|c| {
                let off = channel_offset::<N>(c);
                p[off] == reference[off]
            })
        })
    }
}

/// How many leading `bpp`-byte pixels of `span` satisfy `same`.
#[inline(always)]
fn count_same(span: &[u8], bpp: usize, same: impl Fn(&[u8]) -> bool) -> usize {
    // Whole blocks first, tested without early exit so the compiler can vectorise: screen
    // content is mostly long runs.
    const BLOCK: usize = 16;
    let mut n = 0;
    for block in span.chunks_exact(BLOCK * bpp) {
        if !block.chunks_exact(bpp).fold(true, |all, p| all & same(p)) {
            break;
        }
        n += BLOCK;
    }
    n + span[n * bpp..]
        .chunks_exact(bpp)
        .take_while(|p| same(p))
        .count()
}

/// The models and context rows of `N` channels coded together, plus their shared state.
pub(super) struct Channels<const N: usize> {
    pub models: [Model; N],
    /// Per channel, the folded residual of every pixel last coded at that column, offset by
    /// one: `ctx[c][0]` is the context of column 0 (0 on the first row, then column 0 of the
    /// row above), `ctx[c][i + 1]` belongs to column `i`. Columns covered by a run keep the
    /// value of the row above; the reference does the same and both sides rely on it.
    pub ctx: [Vec<u8>; N],
    pub adapt: Adapt,
}

impl<const N: usize> Channels<N> {
    pub fn new(width: usize) -> Self {
        Channels {
            models: std::array::from_fn(|_| Model::new()),
            ctx: std::array::from_fn(|_| vec![0; width + 1]),
            adapt: Adapt::new(),
        }
    }

    /// Sets the context of column 0 for a new row (0 on the first row).
    pub fn start_row(&mut self, first_row: bool) {
        for ctx in self.ctx.iter_mut() {
            ctx[0] = if first_row { 0 } else { ctx[1] };
        }
    }

    /// Updates every channel's model with column `i`'s residual, in the context of column
    /// `i - 1` (or of the row start for `i == 0`).
    #[inline]
    pub fn update(&mut self, i: usize) {
        let trigger = self.adapt.trigger;
        for (model, ctx) in self.models.iter_mut().zip(self.ctx.iter()) {
            model.update(ctx[i], ctx[i + 1], trigger);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_where_the_wait_mask_widens() {
        let mut a = Adapt::new();
        let p = a.plan_row(3000);
        let segs: Vec<_> = p
            .segments()
            .iter()
            .map(|s| (s.start, s.end, s.wmidx))
            .collect();
        assert_eq!(segs, vec![(0, 2048, 0), (2048, 3000, 1)]);
        let p = a.plan_row(2000);
        let segs: Vec<_> = p
            .segments()
            .iter()
            .map(|s| (s.start, s.end, s.wmidx))
            .collect();
        assert_eq!(segs, vec![(0, 1096, 1), (1096, 2000, 2)]);
        // Once at the top mask, rows are no longer split.
        for _ in 0..10 {
            a.plan_row(5000);
        }
        assert_eq!(a.plan_row(100_000).segments().len(), 1);
    }

    #[test]
    fn run_length_ignores_other_channels_and_stops_at_the_end() {
        // RGB32 pixels: B, G, R, X; the X byte varies but does not break the run.
        let mut row = Vec::new();
        for i in 0..40u8 {
            let px = if i == 35 { [9, 9, 9, i] } else { [1, 2, 3, i] };
            row.extend_from_slice(&px);
        }
        assert_eq!(run_length::<3, 4>(&row, 1, 40), 34);
        assert_eq!(run_length::<3, 4>(&row, 1, 20), 19);
        assert_eq!(run_length::<3, 4>(&row, 35, 40), 0);
        assert_eq!(run_length::<3, 4>(&row, 36, 40), 0);
        assert_eq!(run_length::<1, 4>(&row, 1, 40), 0);
    }

    #[test]
    fn exact_fit_leaves_no_empty_segment() {
        let mut a = Adapt::new();
        let segs: Vec<_> = a
            .plan_row(2048)
            .segments()
            .iter()
            .map(|s| (s.start, s.end, s.wmidx))
            .collect();
        assert_eq!(segs, vec![(0, 2048, 0)]);
        assert_eq!(a.plan_row(1).segments()[0].wmidx, 1);
    }
}
