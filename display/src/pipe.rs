//! The bounded pipe from the worker to one display client.
//!
//! The worker must never wait for a client, and a client that reads slowly must not make us
//! hold an unbounded backlog. So a pipe is bounded in bytes and in items, and when the
//! worker's next item would not fit, the pipe *merges* what it holds instead of growing: the
//! pending drawings are thrown away and only the area they touched is remembered. Once the
//! client has taken the items that remain, it is told to ask for a resync, and the worker
//! pushes that area's current pixels, in order with everything after it. The client ends up
//! exactly where the guest is, having been sent less.
//!
//! The pipe also prunes the drawable tree as items arrive: a pending drawing that a later
//! opaque one covers entirely is dropped before anybody encodes it, unless a COPY_BITS
//! between them still reads its pixels.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::item::DisplayItem;
use crate::rect::Rect;

/// Most items a pipe holds: a flood of tiny draws merges as a flood of big ones would.
pub const MAX_ITEMS: usize = 4096;

/// How far back (in items) a new opaque drawing looks for drawings it covers. Bounds the
/// work per push; what lies further back is sent (correct, just not pruned).
const MAX_PRUNE_SCAN: usize = 256;

/// What the consumer gets from [`Pipe::pop`].
#[derive(Debug, PartialEq, Eq)]
pub enum Popped {
    /// The next item.
    Item(DisplayItem),
    /// Items were merged after an overflow: ask the source for a resync
    /// ([`crate::DisplaySource::resync`]); its pixels come through the pipe.
    Resync,
    /// Nothing arrived within the timeout.
    Idle,
    /// The pipe was closed.
    Closed,
}

/// Counters of one pipe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipeStats {
    /// Items the worker pushed.
    pub pushed: u64,
    /// Drawings dropped because a later opaque drawing covered them.
    pub dropped_covered: u64,
    /// Times the pipe was full and merged its drawings into a resync area.
    pub overflows: u64,
    /// Drawings merged into a resync area instead of being queued.
    pub merged: u64,
    /// Resyncs handed to the worker.
    pub resyncs: u64,
}

struct State {
    items: VecDeque<DisplayItem>,
    bytes: usize,
    limit: usize,
    /// Area whose drawings were merged away; `Some` until the worker takes it.
    resync: Option<Rect>,
    /// The consumer was told to ask for the resync (tell it once).
    resync_announced: bool,
    closed: bool,
    stats: PipeStats,
}

/// One display client's pipe. The worker pushes, the client's encoder pops.
pub struct Pipe {
    state: Mutex<State>,
    ready: Condvar,
}

impl Pipe {
    /// A pipe holding at most `limit` bytes of items (see [`DisplayItem::cost`]), except that
    /// an empty pipe always takes one item, however big (a whole surface must always fit).
    pub fn new(limit: usize) -> Pipe {
        Pipe {
            state: Mutex::new(State {
                items: VecDeque::new(),
                bytes: 0,
                limit,
                resync: None,
                resync_announced: false,
                closed: false,
                stats: PipeStats::default(),
            }),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Worker side: queues `item` (pruning what it covers, merging on overflow). False once
    /// the consumer has closed the pipe: the worker forgets it then.
    pub fn push(&self, item: DisplayItem) -> bool {
        let mut s = self.lock();
        if s.closed {
            return false;
        }
        s.stats.pushed += 1;
        // While a resync is pending, drawings only grow its area: the resync, taken later by
        // the worker, shows their result.
        if let Some(area) = s.resync
            && let Some(touched) = item.touched_area()
        {
            s.resync = Some(area.union(&touched));
            s.stats.merged += 1;
            return true;
        }
        if let Some(cover) = item.opaque_area() {
            prune_covered(&mut s, cover);
        }
        let cost = item.cost();
        let full = s.items.len() >= MAX_ITEMS || s.bytes.saturating_add(cost) > s.limit;
        if full && !s.items.is_empty() {
            merge(&mut s);
            if let Some(touched) = item.touched_area() {
                s.resync = Some(s.resync.unwrap_or_default().union(&touched));
                s.stats.merged += 1;
                drop(s);
                self.ready.notify_all();
                return true;
            }
        }
        s.bytes = s.bytes.saturating_add(cost);
        s.items.push_back(item);
        drop(s);
        self.ready.notify_all();
        true
    }

    /// Consumer side: the next item, waiting up to `timeout` for one.
    pub fn pop(&self, timeout: Duration) -> Popped {
        let mut s = self.lock();
        loop {
            if s.closed {
                return Popped::Closed;
            }
            if let Some(item) = s.items.pop_front() {
                s.bytes = s.bytes.saturating_sub(item.cost());
                return Popped::Item(item);
            }
            if s.resync.is_some() && !s.resync_announced {
                s.resync_announced = true;
                s.stats.resyncs += 1;
                return Popped::Resync;
            }
            let (next, wait) = self
                .ready
                .wait_timeout(s, timeout)
                .unwrap_or_else(|e| e.into_inner());
            s = next;
            // After a timeout the loop's checks run once more: an item, a close or a resync
            // that came with the timeout still wins over Idle.
            if wait.timed_out()
                && s.items.is_empty()
                && !s.closed
                && (s.resync.is_none() || s.resync_announced)
            {
                return Popped::Idle;
            }
        }
    }

    /// Worker side: takes the area to resync (the worker then pushes its current pixels).
    /// Later drawings are queued normally again.
    pub fn take_resync(&self) -> Option<Rect> {
        let mut s = self.lock();
        s.resync_announced = false;
        s.resync.take()
    }

    /// Consumer side: the client could not take what it was given (its own send queue
    /// overflowed): `area` must be sent again. Pending drawings merge into it.
    pub fn force_resync(&self, area: Rect) {
        let mut s = self.lock();
        merge(&mut s);
        s.resync = Some(s.resync.unwrap_or_default().union(&area));
        drop(s);
        self.ready.notify_all();
    }

    /// Either side: the client is gone. The worker's next push returns false.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.items.clear();
        s.bytes = 0;
        drop(s);
        self.ready.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Bytes of items waiting (see [`DisplayItem::cost`]).
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    pub fn stats(&self) -> PipeStats {
        self.lock().stats
    }
}

impl std::fmt::Debug for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipe")
            .field("queued_bytes", &self.queued_bytes())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Drops the pending drawings that `cover` hides entirely, back to the last item that reads
/// or resets pixels (a COPY_BITS, a surface change).
fn prune_covered(s: &mut State, cover: Rect) {
    let len = s.items.len();
    let mut first = len;
    for (i, item) in s.items.iter().enumerate().rev().take(MAX_PRUNE_SCAN) {
        match item {
            DisplayItem::Draw(_) | DisplayItem::Monitors(_) => first = i,
            _ => break,
        }
    }
    if first == len {
        return;
    }
    let mut kept = VecDeque::with_capacity(len);
    let mut dropped = 0u64;
    let mut freed = 0usize;
    for (i, item) in s.items.drain(..).enumerate() {
        let covered =
            i >= first && matches!(&item, DisplayItem::Draw(d) if cover.contains(&d.area));
        if covered {
            dropped += 1;
            freed += item.cost();
        } else {
            kept.push_back(item);
        }
    }
    s.items = kept;
    s.bytes = s.bytes.saturating_sub(freed);
    s.stats.dropped_covered += dropped;
}

/// Throws away every pending drawing, remembering the area they touched as the resync area.
/// Surface and monitor items stay, in order.
fn merge(s: &mut State) {
    let mut area = s.resync.unwrap_or_default();
    let mut kept = VecDeque::new();
    let mut bytes = 0usize;
    let mut touched_any = s.resync.is_some();
    for item in s.items.drain(..) {
        match item.touched_area() {
            Some(t) => {
                area = area.union(&t);
                touched_any = true;
                s.stats.merged += 1;
            }
            None => {
                bytes += item.cost();
                kept.push_back(item);
            }
        }
    }
    s.items = kept;
    s.bytes = bytes;
    s.stats.overflows += 1;
    if touched_any {
        s.resync = Some(area);
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::item::{Draw, DrawContent, SurfaceInfo};

    fn rect(l: u32, t: u32, r: u32, b: u32) -> Rect {
        Rect::new(l, t, r, b).unwrap()
    }

    fn image(area: Rect) -> DisplayItem {
        DisplayItem::image(area, vec![7; area.area() as usize * 4], None)
    }

    fn fill(area: Rect) -> DisplayItem {
        DisplayItem::Draw(Draw {
            area,
            content: DrawContent::Fill(1),
        })
    }

    fn drain(p: &Pipe) -> Vec<DisplayItem> {
        let mut out = Vec::new();
        while let Popped::Item(i) = p.pop(Duration::ZERO) {
            out.push(i);
        }
        out
    }

    #[test]
    fn a_covered_drawing_is_dropped_before_it_is_sent() {
        let p = Pipe::new(1 << 20);
        p.push(image(rect(10, 10, 20, 20)));
        p.push(fill(rect(0, 30, 5, 35)));
        p.push(image(rect(0, 0, 50, 25)));
        assert_eq!(
            drain(&p),
            [fill(rect(0, 30, 5, 35)), image(rect(0, 0, 50, 25))]
        );
        assert_eq!(p.stats().dropped_covered, 1);
        assert_eq!(p.queued_bytes(), 0);
    }

    #[test]
    fn a_drawing_read_by_a_later_copy_bits_is_kept() {
        let p = Pipe::new(1 << 20);
        p.push(image(rect(0, 0, 10, 10)));
        p.push(DisplayItem::CopyBits {
            area: rect(0, 10, 10, 20),
            src_x: 0,
            src_y: 0,
        });
        p.push(fill(rect(0, 0, 10, 10)));
        assert_eq!(drain(&p).len(), 3);
        assert_eq!(p.stats().dropped_covered, 0);
    }

    #[test]
    fn overflow_merges_into_one_resync_and_keeps_surface_items() {
        let p = Pipe::new(1000);
        p.push(DisplayItem::SurfaceCreate(SurfaceInfo {
            width: 64,
            height: 64,
        }));
        p.push(image(rect(0, 0, 10, 10))); // 464 bytes
        p.push(image(rect(20, 20, 30, 30))); // would pass 1000: merged
        p.push(image(rect(40, 0, 41, 1))); // merged while the resync is pending
        assert_eq!(p.stats().overflows, 1);
        assert_eq!(
            p.pop(Duration::ZERO),
            Popped::Item(DisplayItem::SurfaceCreate(SurfaceInfo {
                width: 64,
                height: 64
            }))
        );
        assert_eq!(p.pop(Duration::ZERO), Popped::Resync);
        // Announced once, until the worker takes it.
        assert_eq!(p.pop(Duration::ZERO), Popped::Idle);
        assert_eq!(p.take_resync(), Some(rect(0, 0, 41, 30)));
        p.push(image(rect(0, 0, 41, 30)));
        assert!(matches!(p.pop(Duration::ZERO), Popped::Item(_)));
    }

    #[test]
    fn an_empty_pipe_takes_an_item_bigger_than_its_limit() {
        let p = Pipe::new(10);
        p.push(image(rect(0, 0, 100, 100)));
        assert_eq!(p.stats().overflows, 0);
        assert!(p.queued_bytes() > 10);
    }

    #[test]
    fn closing_tells_the_worker() {
        let p = Pipe::new(10);
        p.close();
        assert!(!p.push(fill(rect(0, 0, 1, 1))));
        assert_eq!(p.pop(Duration::from_millis(1)), Popped::Closed);
    }

    #[test]
    fn items_are_bounded_in_count() {
        let p = Pipe::new(usize::MAX);
        for i in 0..(MAX_ITEMS as u32 + 10) {
            p.push(DisplayItem::CopyBits {
                area: rect(0, 0, 1, 1),
                src_x: 0,
                src_y: i % 2,
            });
        }
        assert!(p.stats().overflows >= 1);
        assert!(drain(&p).len() <= MAX_ITEMS);
    }
}
