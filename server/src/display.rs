//! The display channel (spec §4, §8): one primary surface fed from the [`DisplaySource`].
//!
//! Each client has an updater thread that polls the source, diffs the new frame with the last
//! frame queued for *that* client: a vertical scroll goes first as a COPY_BITS (the client
//! moves pixels it has), then each region still changed (runs of changed rows, see
//! [`changed_rects`]) as a DRAW_FILL when it is one solid colour, else as raw 32-bit top-down
//! BITMAP DRAW_COPYs cut into row bands under [`MAX_DRAW_BODY`] (except the first draw on a
//! new surface, which is one whole DRAW_COPY). Raw bitmaps are the one image format every
//! Spice client decodes; compression comes later.

use std::sync::Arc;
use std::thread;

use tracing::{debug, warn};

use crate::conn::{
    Common, ConnError, SendQueue, Traffic, handle_common, read_counted, spawn_writer,
};
use crate::damage::{
    Rect, Scroll, apply_scroll, bounding_box, changed_rects, find_scroll, solid_color,
};
use crate::link::LinkRequest;
use crate::server::Shared;
use crate::session::Session;
use crate::source::{Frame, Head};
use crate::tls::Stream;
use crate::wire::{Writer, has_cap, msg};

/// Largest DRAW_COPY body we build; bigger areas are split into row bands.
pub const MAX_DRAW_BODY: usize = 1 << 20;
/// ACK window announced with SET_ACK (spice-server's value).
const ACK_WINDOW: u32 = 20;
/// Largest client message on the display channel (INIT is 14 bytes; reports are small).
pub(crate) const MAX_DISPLAY_MESSAGE: u32 = 4096;
/// Client display cap MONITORS_CONFIG.
const CAP_MONITORS_CONFIG: u32 = 1;
/// Surface format 32_xRGB; surface flag PRIMARY.
const SURFACE_FMT_32_XRGB: u32 = 32;
const SURFACE_FLAG_PRIMARY: u32 = 1;
/// Offset of the image from the start of a DRAW_COPY body with clip NONE and no mask.
const DRAW_COPY_IMAGE_OFFSET: u32 = 57;
/// Header bytes of a DRAW_COPY body before the pixel data.
pub const DRAW_COPY_HEADER: usize = 93;

/// A DRAW_FILL body: `rect` of surface 0 filled with a solid `0x00RRGGBB` brush, rop PUT, no
/// clip, no mask.
pub fn draw_fill(rect: Rect, color: u32) -> Vec<u8> {
    let mut out = Writer::with_capacity(DRAW_FILL_BODY);
    out.u32(0) // surface
        .i32(rect.top as i32)
        .i32(rect.left as i32)
        .i32(rect.bottom as i32)
        .i32(rect.right as i32)
        .u8(0) // clip NONE
        .u8(1) // brush SOLID
        .u32(color)
        .u16(8) // rop OP_PUT
        .u8(0) // mask flags
        .i32(0)
        .i32(0)
        .u32(0); // no mask bitmap
    out.buf
}

/// A COPY_BITS body: the client moves `scroll.dest`'s pixels from `dy` rows away (pixels it
/// already has), no clip.
pub fn copy_bits(scroll: Scroll) -> Vec<u8> {
    let d = scroll.dest;
    let mut out = Writer::with_capacity(COPY_BITS_BODY);
    out.u32(0) // surface
        .i32(d.top as i32)
        .i32(d.left as i32)
        .i32(d.bottom as i32)
        .i32(d.right as i32)
        .u8(0) // clip NONE
        .i32(d.left as i32) // source position x
        .i32(d.top as i32 + scroll.dy); // source position y
    out.buf
}

/// Size of a [`copy_bits`] body.
pub const COPY_BITS_BODY: usize = 29;

/// Size of a [`draw_fill`] body.
pub const DRAW_FILL_BODY: usize = 41;

/// Cuts `rect` into row bands whose DRAW_COPY bodies stay under `max_body` (at least one row).
pub fn bands(rect: Rect, max_body: usize) -> impl Iterator<Item = Rect> {
    let row_bytes = ((rect.right - rect.left) as usize * 4).max(1);
    let rows = u32::try_from((max_body.saturating_sub(DRAW_COPY_HEADER) / row_bytes).max(1))
        .unwrap_or(u32::MAX);
    (rect.top..rect.bottom)
        .step_by(rows as usize)
        .map(move |top| Rect {
            top,
            bottom: top.saturating_add(rows).min(rect.bottom),
            ..rect
        })
}

/// A DRAW_COPY body drawing `rect` of `frame` onto surface 0 from a raw top-down 32BIT bitmap.
/// `rect` must lie inside the frame (callers derive it from the frame).
pub fn draw_copy(frame: &Frame, rect: Rect, image_id: u64) -> Vec<u8> {
    let (w, h) = (rect.right - rect.left, rect.bottom - rect.top);
    let stride = w as usize * 4;
    let mut out = Writer::with_capacity(DRAW_COPY_HEADER + stride * h as usize);
    out.u32(0) // surface
        .i32(rect.top as i32)
        .i32(rect.left as i32)
        .i32(rect.bottom as i32)
        .i32(rect.right as i32)
        .u8(0) // clip NONE
        .u32(DRAW_COPY_IMAGE_OFFSET)
        .i32(0) // src_area: the whole image
        .i32(0)
        .i32(h as i32)
        .i32(w as i32)
        .u16(8) // rop OP_PUT
        .u8(0) // scale mode
        .u8(0) // mask flags
        .i32(0)
        .i32(0)
        .u32(0) // no mask bitmap
        .u64(image_id)
        .u8(0) // image type BITMAP
        .u8(0) // image flags
        .u32(w)
        .u32(h)
        .u8(8) // bitmap format 32BIT
        .u8(4) // TOP_DOWN
        .u32(w)
        .u32(h)
        .u32(stride as u32)
        .u32(0); // no palette
    let src_stride = frame.width as usize * 4;
    for y in rect.top..rect.bottom {
        let start = y as usize * src_stride + rect.left as usize * 4;
        if let Some(row) = frame.pixels.get(start..start + stride) {
            out.bytes(row);
        }
    }
    out.buf
}

/// Per-client display state: what the client has.
struct Updater {
    surface: Option<(u32, u32)>,
    last: Option<Frame>,
    marked: bool,
    monitors_cap: bool,
    /// The head last sent in a MONITORS_CONFIG (clients with the cap).
    sent_head: Option<Head>,
    image_id: u64,
    base_limit: usize,
    warned: bool,
}

impl Updater {
    fn tick(&mut self, queue: &SendQueue, frame: Frame) {
        if !frame.is_consistent() {
            if !self.warned {
                warn!(
                    frame.width,
                    frame.height,
                    len = frame.pixels.len(),
                    "inconsistent frame ignored"
                );
                self.warned = true;
            }
            return;
        }
        let size = (frame.width, frame.height);
        if self.surface != Some(size) {
            if self.surface.is_some() {
                let _ = queue.push(
                    msg::DISPLAY_SURFACE_DESTROY,
                    0u32.to_le_bytes().to_vec(),
                    false,
                );
            }
            let mut w = Writer::default();
            w.u32(0)
                .u32(frame.width)
                .u32(frame.height)
                .u32(SURFACE_FMT_32_XRGB)
                .u32(SURFACE_FLAG_PRIMARY);
            let _ = queue.push(msg::DISPLAY_SURFACE_CREATE, w.buf, false);
            // Two full frames must always fit, or a full refresh could never be queued.
            queue.set_limit(
                self.base_limit
                    .max(frame.pixels.len().saturating_mul(2) + (1 << 16)),
            );
            self.surface = Some(size);
            self.last = None;
            self.marked = false;
            self.sent_head = None;
            debug!(
                width = frame.width,
                height = frame.height,
                "surface created"
            );
        } else if queue.queued_bytes() >= frame.pixels.len() {
            // The client is behind by a frame or more: let the changes accumulate (the next
            // diff against the last queued frame covers them all).
            return;
        }
        let (scroll, rects) = match &self.last {
            None => (None, vec![Rect::full(&frame)]),
            Some(last) if last.serial == frame.serial => return,
            Some(last) => {
                let rects = changed_rects(last, &frame);
                // A scrolled console changes in many regions split by blank rows: look for
                // the scroll in all of them at once.
                match bounding_box(&rects).and_then(|b| find_scroll(last, &frame, b)) {
                    Some(scroll) => {
                        let moved = apply_scroll(last, scroll);
                        (Some(scroll), changed_rects(&moved, &frame))
                    }
                    None => (None, rects),
                }
            }
        };
        if let Some(scroll) = scroll {
            debug!(
                dy = scroll.dy,
                rows = scroll.dest.bottom - scroll.dest.top,
                "scroll sent as COPY_BITS"
            );
        }
        if let Some(scroll) = scroll
            && queue
                .push(msg::DISPLAY_COPY_BITS, copy_bits(scroll), true)
                .is_err()
        {
            debug!("send queue overflow: whole surface marked dirty");
            self.last = None;
            return;
        }
        // The first draw on a new surface is one DRAW_COPY even when large or solid:
        // spicy-screenshot saves the picture at the first draw it sees, so that draw must hold
        // everything.
        let max_body = if self.marked {
            MAX_DRAW_BODY
        } else {
            usize::MAX
        };
        for rect in rects {
            if self.marked
                && let Some(color) = solid_color(&frame, rect)
            {
                if queue
                    .push(msg::DISPLAY_DRAW_FILL, draw_fill(rect, color), true)
                    .is_err()
                {
                    debug!("send queue overflow: whole surface marked dirty");
                    self.last = None;
                    return;
                }
                continue;
            }
            for band in bands(rect, max_body) {
                self.image_id = self.image_id.wrapping_add(1);
                let body = draw_copy(&frame, band, self.image_id);
                if queue.push(msg::DISPLAY_DRAW_COPY, body, true).is_err() {
                    debug!("send queue overflow: whole surface marked dirty");
                    self.last = None;
                    return;
                }
            }
        }
        // What the guest shows of the surface (its monitors config's head 0), sent to clients
        // that understand it whenever it changes, as spice-server forwards the guest's config.
        let head = frame.head.unwrap_or(Head {
            x: 0,
            y: 0,
            width: frame.width,
            height: frame.height,
        });
        self.last = Some(frame);
        if self.monitors_cap && self.sent_head != Some(head) {
            let _ = queue.push(msg::DISPLAY_MONITORS_CONFIG, monitors_config(head), false);
            self.sent_head = Some(head);
        }
        if !self.marked {
            let _ = queue.push(msg::DISPLAY_MARK, Vec::new(), false);
            self.marked = true;
        }
    }
}

/// A MONITORS_CONFIG body with one head on surface 0.
fn monitors_config(head: Head) -> Vec<u8> {
    let mut m = Writer::default();
    m.u16(1) // count
        .u16(1) // max allowed
        .u32(0) // id
        .u32(0) // surface id
        .u32(head.width)
        .u32(head.height)
        .u32(head.x)
        .u32(head.y)
        .u32(0); // flags
    m.buf
}

pub(crate) fn run(
    mut stream: Stream,
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    req: &LinkRequest,
    mini: bool,
    traffic: Arc<Traffic>,
) -> Result<(), ConnError> {
    let queue = SendQueue::new(shared.config.queue_limit);
    let span = tracing::Span::current();
    let writer = spawn_writer(
        stream.try_clone()?,
        queue.clone(),
        mini,
        span.clone(),
        traffic.clone(),
    )?;
    queue.set_ack(ACK_WINDOW);

    let mut updater = Updater {
        surface: None,
        last: None,
        marked: false,
        monitors_cap: has_cap(&req.channel_caps, CAP_MONITORS_CONFIG),
        sent_head: None,
        image_id: 0,
        base_limit: shared.config.queue_limit,
        warned: false,
    };
    let poller = {
        let (queue, shared, session) = (queue.clone(), shared.clone(), session.clone());
        thread::Builder::new()
            .name("spice-display".into())
            .spawn(move || {
                let _e = span.enter();
                while !queue.is_closed() && !session.is_closed() {
                    if let Some(frame) = shared.source.frame() {
                        updater.tick(&queue, frame);
                    }
                    thread::sleep(shared.config.poll_interval);
                }
            })?
    };

    let result = loop {
        let (ty, body) = match read_counted(&mut stream, mini, MAX_DISPLAY_MESSAGE, &traffic) {
            Ok(m) => m,
            Err(ConnError::Closed) => break Ok(()),
            Err(e) => break Err(e),
        };
        match handle_common(&queue, ty, &body) {
            Ok(Common::NotCommon) => {
                if ty == msg::MSGC_DISPLAY_INIT {
                    debug!("display INIT");
                } else {
                    debug!(ty, "ignored display message");
                }
            }
            Ok(Common::Disconnecting) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    queue.close();
    let _ = writer.join();
    let _ = poller.join();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::damage::tests::{frame, r};

    /// A fresh per-client updater.
    fn updater(monitors_cap: bool, base_limit: usize) -> Updater {
        Updater {
            surface: None,
            last: None,
            marked: false,
            monitors_cap,
            sent_head: None,
            image_id: 0,
            base_limit,
            warned: false,
        }
    }

    #[test]
    fn fill_layout() {
        let body = draw_fill(r(1, 2, 3, 4), 0x00123456);
        assert_eq!(body.len(), DRAW_FILL_BODY);
        assert_eq!(&body[4..8], &1i32.to_le_bytes());
        assert_eq!(body[20], 0, "clip NONE");
        assert_eq!(body[21], 1, "SOLID");
        assert_eq!(&body[22..26], &0x00123456u32.to_le_bytes());
        assert_eq!(&body[26..28], &8u16.to_le_bytes());
    }

    #[test]
    fn monitors_config_follows_the_guests_head() {
        let q = SendQueue::new(1 << 20);
        let mut u = updater(true, 1 << 20);
        u.tick(&q, frame(16, 8, 1, |_, _| 7));
        assert_eq!(
            q.take_types(),
            [
                msg::DISPLAY_SURFACE_CREATE,
                msg::DISPLAY_DRAW_COPY,
                msg::DISPLAY_MONITORS_CONFIG,
                msg::DISPLAY_MARK
            ]
        );
        assert_eq!(
            u.sent_head,
            Some(Head {
                x: 0,
                y: 0,
                width: 16,
                height: 8
            })
        );
        // The guest shows a 10x6 window from (4, 2): clients are told, with no pixels sent.
        let head = Head {
            x: 4,
            y: 2,
            width: 10,
            height: 6,
        };
        let mut f = frame(16, 8, 2, |_, _| 7);
        f.head = Some(head);
        u.tick(&q, f.clone());
        assert_eq!(q.take_types(), [msg::DISPLAY_MONITORS_CONFIG]);
        assert_eq!(u.sent_head, Some(head));
        let body = monitors_config(head);
        assert_eq!(
            &body[12..28],
            &[10, 0, 0, 0, 6, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0]
        );
        // Unchanged: nothing more.
        f.serial = 3;
        u.tick(&q, f);
        assert!(q.take_types().is_empty());
    }

    #[test]
    fn updater_sends_a_scroll_as_copy_bits_and_the_new_rows_as_pixels() {
        let q = SendQueue::new(1 << 24);
        let mut u = updater(false, 1 << 24);
        let lines = |first: u32, serial| {
            frame(64, 128, serial, move |x, y| {
                (first + y / 4) * 1000 + x + u32::from(y >= 124 && first > 0) * 7
            })
        };
        u.tick(&q, lines(0, 1));
        q.take_types();
        u.tick(&q, lines(2, 2));
        assert_eq!(
            q.take_types(),
            [msg::DISPLAY_COPY_BITS, msg::DISPLAY_DRAW_COPY],
            "a copy of 120 rows and 8 new rows"
        );
        let body = copy_bits(Scroll {
            dest: r(0, 0, 120, 64),
            dy: 8,
        });
        assert_eq!(body.len(), COPY_BITS_BODY);
        assert_eq!(&body[21..29], &[0, 0, 0, 0, 8, 0, 0, 0]);
    }

    #[test]
    fn updater_sends_fills_for_solid_changes_after_the_first_draw() {
        let q = SendQueue::new(1 << 20);
        let mut u = updater(false, 1 << 20);
        u.tick(&q, frame(16, 16, 1, |_, _| 7));
        let first = q.take_types();
        assert_eq!(
            first,
            vec![
                msg::DISPLAY_SURFACE_CREATE,
                msg::DISPLAY_DRAW_COPY,
                msg::DISPLAY_MARK
            ],
            "the first draw is a whole DRAW_COPY even when solid"
        );
        u.tick(&q, frame(16, 16, 2, |_, y| if y < 8 { 9 } else { 7 }));
        let next = q.take_types();
        assert_eq!(next, vec![msg::DISPLAY_DRAW_FILL]);
    }

    #[test]
    fn bands_cover_rect() {
        let r = Rect {
            top: 3,
            left: 1,
            bottom: 103,
            right: 11,
        };
        let bs: Vec<_> = bands(r, DRAW_COPY_HEADER + 40 * 7).collect();
        assert_eq!(bs.first().unwrap().top, 3);
        assert_eq!(bs.last().unwrap().bottom, 103);
        assert!(bs.iter().all(|b| b.bottom - b.top <= 7));
        assert!(bs.windows(2).all(|w| w[0].bottom == w[1].top));
    }

    #[test]
    fn draw_copy_layout() {
        let f = frame(4, 3, 1, |x, y| y * 16 + x);
        let body = draw_copy(
            &f,
            Rect {
                top: 1,
                left: 1,
                bottom: 3,
                right: 3,
            },
            9,
        );
        assert_eq!(body.len(), DRAW_COPY_HEADER + 2 * 2 * 4);
        assert_eq!(&body[21..25], &57u32.to_le_bytes());
        assert_eq!(body[75], 8);
        assert_eq!(body[76], 4);
        assert_eq!(&body[93..97], &(16 + 1u32).to_le_bytes());
        assert_eq!(&body[101..105], &(32 + 1u32).to_le_bytes());
    }

    #[test]
    fn overflow_resends_full_frame() {
        let q = SendQueue::new(0);
        let mut u = updater(false, 0);
        u.tick(&q, frame(4, 4, 1, |_, _| 1));
        assert!(u.marked && u.last.is_some());
        // Limit is now 2 frames + slack; force an overflow with a tiny limit.
        q.set_limit(1);
        u.tick(&q, frame(4, 4, 2, |x, _| x));
        assert!(u.last.is_none() || q.queued_bytes() > 0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Whatever the change (a scroll either way, rows replaced, solid areas, nothing), the
        /// messages an updater queues, applied by a client in order, turn the client's copy of
        /// the old frame into exactly the new one.
        #[test]
        fn a_client_applying_the_updates_ends_with_the_new_frame(
            (w, h) in (8u32..40, 32u32..96),
            rows in proptest::collection::vec(0u32..6, 96),
            dy in -40i32..40,
            replaced in proptest::collection::vec((0u32..96, 0u32..6), 0..12),
            solid in proptest::option::of((0u32..96, 0u32..96, 0u32..0x00ff_ffff)),
        ) {
            use crate::client::Screen;
            // Rows drawn from a few contents (repeats, as text lines have), each row's pixels
            // varying along x.
            let content = |r: u32, x: u32| r.wrapping_mul(0x0001_0101).wrapping_add(x * 3) & 0xff_ffff;
            let old = frame(w, h, 1, |x, y| content(rows[y as usize], x));
            let new_row = |y: u32| -> u32 {
                let src = y as i32 + dy;
                if (0..h as i32).contains(&src) { rows[src as usize] } else { 5 }
            };
            let mut new_rows: Vec<u32> = (0..h).map(new_row).collect();
            for (y, r) in &replaced {
                if let Some(row) = new_rows.get_mut(*y as usize) {
                    *row = *r;
                }
            }
            let new = frame(w, h, 2, |x, y| {
                match solid {
                    Some((top, len, color)) if (top..top + len).contains(&y) => color,
                    _ => content(new_rows[y as usize], x),
                }
            });
            let q = SendQueue::new(1 << 24);
            let mut u = updater(true, 1 << 24);
            let mut screen = Screen::new();
            let mut sink = std::io::sink();
            u.tick(&q, old.clone());
            for (ty, body) in q.take_all() {
                screen.handle(&mut sink, ty, &body).unwrap();
            }
            proptest::prop_assert_eq!(&screen.pixels, &*old.pixels);
            u.tick(&q, new.clone());
            for (ty, body) in q.take_all() {
                screen.handle(&mut sink, ty, &body).unwrap();
            }
            proptest::prop_assert_eq!(&screen.pixels, &*new.pixels);
        }
    }
}
