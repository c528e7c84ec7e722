//! The display channel (spec §4, §8): the primary surface, pushed by the display source.
//!
//! Each client subscribes a bounded [`Pipe`] to the [`DisplaySource`]; an encoder thread per
//! client takes the items the worker pushes into it and turns each into Spice messages: a
//! fill as DRAW_FILL, the guest's COPY_BITS as COPY_BITS (the client moves pixels it has),
//! rendered pixels as a DRAW_COPY of an image encoded for that client. Nothing is polled: a
//! client hears of a change because the guest drew it. The encoder waits while the client's
//! send queue is full, so a slow client lets its pipe fill, and the pipe merges what it holds
//! (see `saffron_display::pipe`); the guest never waits for a client.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use saffron_display::{
    DisplayItem, DisplaySource, DrawContent, Head, Monitors, Pipe, Pixels, Popped, Rect,
};
use tracing::{debug, info};

use crate::cache::{self, Lookup, PixmapCache};
use crate::channel::{Channel, Event};
use crate::conn::{ConnError, SendQueue, Traffic};
use crate::image::{
    self, BITMAP_HEADER_SIZE, Compression, DESCRIPTOR_SIZE, ImageEncoder, WanCompression,
};
use crate::link::LinkRequest;
use crate::link_estimate::LinkMonitor;
use crate::lossy::{LossyArea, LossyAreas};
use crate::server::Shared;
use crate::session::Session;
use crate::stream::{
    Drawing, Offered, Resend, StreamReport, StreamingVideo, Streams, VideoCodec,
    parse_preferred_codecs,
};
use crate::tls::Stream;
use crate::wire::{FULL_HEADER_SIZE, Reader, Writer, has_cap, msg};

/// Largest raw DRAW_COPY body we build after the first draw; bigger areas are split into row
/// bands, so one message does not hold the writer for long.
pub const MAX_DRAW_BODY: usize = 1 << 20;
/// ACK window announced with SET_ACK (spice-server's value).
const ACK_WINDOW: u32 = 20;
/// Largest client message on the display channel (INIT is 14 bytes; reports are small).
pub(crate) const MAX_DISPLAY_MESSAGE: u32 = 4096;
/// Client display cap SIZED_STREAM.
const CAP_SIZED_STREAM: u32 = 0;
/// Client display cap MONITORS_CONFIG.
const CAP_MONITORS_CONFIG: u32 = 1;
/// Client display cap STREAM_REPORT.
const CAP_STREAM_REPORT: u32 = 4;
/// Client stream reports kept for the encoder between two items; more are dropped (a
/// client reports every 5 frames or second per stream, so this is never reached honestly).
const MAX_PENDING_REPORTS: usize = 64;
/// Client display cap LZ4_COMPRESSION.
const CAP_LZ4_COMPRESSION: u32 = 5;
/// The client lists the video codecs it decodes (CAP_CODEC_*); without it, MJPEG only.
const CAP_MULTI_CODEC: u32 = 8;
/// Resource type PIXMAP in an INVAL_LIST.
const RES_TYPE_PIXMAP: u8 = 1;
/// Surface format 32_xRGB; surface flag PRIMARY.
const SURFACE_FMT_32_XRGB: u32 = 32;
const SURFACE_FLAG_PRIMARY: u32 = 1;
/// Offset of the image from the start of a DRAW_COPY body with clip NONE and no mask.
const DRAW_COPY_IMAGE_OFFSET: u32 = 57;
/// Header bytes of a raw DRAW_COPY body before the pixel data.
pub const DRAW_COPY_HEADER: usize =
    DRAW_COPY_IMAGE_OFFSET as usize + DESCRIPTOR_SIZE + BITMAP_HEADER_SIZE;
/// How long the encoder waits for an item before it checks whether the client is gone.
const IDLE_CHECK: Duration = Duration::from_millis(100);
/// When, after a stream ends, spice-html5 gets the stream's area painted again from the
/// surface. It decodes MJPEG frames through Image elements and paints each once it has
/// loaded, even after the stream is destroyed; a frame still loading when the stream ended
/// would land over the exact picture that followed it, and stay there.
const HTML5_REPAINTS: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(2)];
/// Repaints waiting at most; more are merged into one.
const MAX_REPAINTS: usize = 16;
/// How often the display channel pings its client for the link estimate: often enough that
/// a link that changes shows within seconds, rarely enough to cost nothing (a plain ping is
/// 18 bytes; see `link_estimate` for the occasional padded probe).
const LINK_PING_INTERVAL: Duration = Duration::from_secs(1);
/// JPEG quality of still images on slow links (spice-server's `jpeg_quality` default): high
/// enough that a photograph looks right until its lossless re-send.
const STILL_JPEG_QUALITY: u8 = 85;

/// A DRAW_FILL body: `rect` of surface 0 filled with a solid `0x00RRGGBB` brush, rop PUT, no
/// clip, no mask.
pub fn draw_fill(rect: Rect, color: u32) -> Vec<u8> {
    let mut out = Writer::with_capacity(DRAW_FILL_BODY);
    box_header(&mut out, rect);
    out.u8(1) // brush SOLID
        .u32(color)
        .u16(8) // rop OP_PUT
        .u8(0) // mask flags
        .i32(0)
        .i32(0)
        .u32(0); // no mask bitmap
    out.buf
}

/// Surface 0, the box, clip NONE: how every draw message starts.
fn box_header(out: &mut Writer, rect: Rect) {
    out.u32(0) // surface
        .i32(rect.top as i32)
        .i32(rect.left as i32)
        .i32(rect.bottom as i32)
        .i32(rect.right as i32)
        .u8(0); // clip NONE
}

/// A COPY_BITS body: the client copies the `area`-sized rectangle at (`src_x`, `src_y`) to
/// `area` (pixels it already has), no clip.
pub fn copy_bits(area: Rect, src_x: u32, src_y: u32) -> Vec<u8> {
    let mut out = Writer::with_capacity(COPY_BITS_BODY);
    box_header(&mut out, area);
    out.i32(src_x as i32).i32(src_y as i32);
    out.buf
}

/// Size of a [`copy_bits`] body.
pub const COPY_BITS_BODY: usize = 29;

/// Size of a [`draw_fill`] body.
pub const DRAW_FILL_BODY: usize = 41;

/// A DRAW_COPY body putting the image `image` (a whole SpiceImage: descriptor and payload,
/// `area`'s size) at `area` of surface 0, rop PUT.
pub fn draw_copy(area: Rect, image: &[u8]) -> Vec<u8> {
    let mut out = Writer::with_capacity(DRAW_COPY_IMAGE_OFFSET as usize + image.len());
    box_header(&mut out, area);
    out.u32(DRAW_COPY_IMAGE_OFFSET)
        .i32(0) // src_area: the whole image
        .i32(0)
        .i32(area.height() as i32)
        .i32(area.width() as i32)
        .u16(8) // rop OP_PUT
        .u8(0) // scale mode
        .u8(0) // mask flags
        .i32(0)
        .i32(0)
        .u32(0) // no mask bitmap
        .bytes(image);
    out.buf
}

/// Cuts the rows of a `width`-wide area into bands whose raw DRAW_COPY bodies stay under
/// `max_body` (at least one row each).
pub fn bands(
    width: u32,
    height: u32,
    max_body: usize,
) -> impl Iterator<Item = std::ops::Range<u32>> {
    let row_bytes = (width as usize * 4).max(1);
    let rows = u32::try_from((max_body.saturating_sub(DRAW_COPY_HEADER) / row_bytes).max(1))
        .unwrap_or(u32::MAX);
    (0..height)
        .step_by(rows as usize)
        .map(move |top| top..top.saturating_add(rows).min(height))
}

/// Most heads one MONITORS_CONFIG announces: what a device can have (the ROM's client
/// monitors config holds 64), so a worker bug cannot make a huge message.
const MAX_HEADS: usize = 64;

/// A MONITORS_CONFIG body (SpiceMsgDisplayMonitorsConfig): `count`, `max_allowed`, then per
/// head its id, surface id (0: every head shows part of the one primary, as with one qxl
/// device), width, height, x, y and flags (none, as spice-server sends).
fn monitors_config(m: &Monitors) -> Vec<u8> {
    let heads = m.heads.get(..MAX_HEADS).unwrap_or(&m.heads);
    // At most 64 heads: both fit u16.
    let count = u16::try_from(heads.len()).unwrap_or(u16::MAX);
    let max_allowed = u16::try_from(m.max_allowed).unwrap_or(u16::MAX).max(count);
    let mut w = Writer::default();
    w.u16(count).u16(max_allowed);
    for h in heads {
        w.u32(h.id)
            .u32(0) // surface id
            .u32(h.width)
            .u32(h.height)
            .u32(h.x)
            .u32(h.y)
            .u32(0); // flags
    }
    w.buf
}

/// The heads of `m` a client can show on its `width` x `height` surface: non-empty and inside
/// it (the worker already clips them; a stale item from before a new surface may not fit).
/// None left: the whole surface, as spice-server announces a primary without a config.
fn showable(m: Monitors, width: u32, height: u32) -> Monitors {
    let fits = |h: &Head| {
        h.width > 0
            && h.height > 0
            && u64::from(h.x) + u64::from(h.width) <= u64::from(width)
            && u64::from(h.y) + u64::from(h.height) <= u64::from(height)
    };
    let heads: Vec<Head> = m.heads.into_iter().filter(fits).take(MAX_HEADS).collect();
    if heads.is_empty() {
        return Monitors::whole(width, height);
    }
    Monitors {
        max_allowed: m.max_allowed,
        heads,
    }
}

/// What the client said in its DISPLAY_INIT: its cache and GLZ dictionary budgets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DisplayInit {
    pub pixmap_cache_id: u8,
    pub pixmap_cache_size: i64,
    pub glz_dictionary_id: u8,
    pub glz_window_size: i32,
}

impl DisplayInit {
    fn parse(body: &[u8]) -> Option<DisplayInit> {
        let mut r = Reader::new(body);
        Some(DisplayInit {
            pixmap_cache_id: r.u8().ok()?,
            pixmap_cache_size: r.u64().ok()? as i64,
            glz_dictionary_id: r.u8().ok()?,
            glz_window_size: r.u32().ok()? as i32,
        })
    }
}

/// Per-client display state: what the client has, and how its images are encoded.
pub(crate) struct ClientDisplay {
    surface: Option<(u32, u32)>,
    marked: bool,
    monitors_cap: bool,
    /// The monitors last sent in a MONITORS_CONFIG (clients with the cap).
    sent_monitors: Option<Monitors>,
    /// Where the heads this client shows are listed for `client_info`.
    listed_heads: Option<Arc<Mutex<Vec<Head>>>>,
    image_id: u64,
    base_limit: usize,
    compression: Compression,
    images: ImageEncoder,
    /// The client's pixmap cache, as we model it (empty until its DISPLAY_INIT).
    cache: PixmapCache,
    /// Whether the client's DISPLAY_INIT was applied (GLZ and caches wait for it).
    init_applied: bool,
    /// A spice-html5 client: images only as QUIC, LZ_RGB or raw 32-bit bitmaps (never GLZ,
    /// zlib-GLZ or LZ4, whatever it announces), draws only as DRAW_COPY without clip or mask,
    /// solid DRAW_FILL and COPY_BITS (what every client gets from us), no MONITORS_CONFIG.
    html5: bool,
    /// Regions redrawn like video, sent as streams.
    streams: Streams,
    /// Where the multimedia clock starts (the server's; see [`Streams`]).
    clock: Instant,
    /// When photographic images go as JPEG (`jpeg-wan-compression`; never until set).
    jpeg: WanCompression,
    /// Whether the link estimate calls the client's link slow.
    link_slow: bool,
    /// Areas the client holds as JPEG, to be sent again losslessly.
    lossy: LossyAreas,
    /// The time of what is being applied (items are timed by when the encoder takes them).
    now: Instant,
    /// spice-html5: areas of ended streams to paint again from the surface, and when (see
    /// [`HTML5_REPAINTS`]).
    repaints: Vec<(Instant, Rect)>,
}

impl ClientDisplay {
    #[cfg(test)]
    pub(crate) fn new(monitors_cap: bool, base_limit: usize) -> ClientDisplay {
        ClientDisplay::with_encoding(
            monitors_cap,
            base_limit,
            Compression::Off,
            WanCompression::Never,
            false,
        )
    }

    /// A client whose images are compressed as `compression` allows, and as it can decode
    /// (`lz4_cap`; GLZ once its DISPLAY_INIT gives a dictionary window).
    pub(crate) fn with_encoding(
        monitors_cap: bool,
        base_limit: usize,
        compression: Compression,
        wan: WanCompression,
        lz4_cap: bool,
    ) -> ClientDisplay {
        ClientDisplay {
            surface: None,
            marked: false,
            monitors_cap,
            sent_monitors: None,
            listed_heads: None,
            image_id: 0,
            base_limit,
            compression,
            images: ImageEncoder::new(compression, wan, lz4_cap),
            cache: PixmapCache::new(0),
            init_applied: false,
            html5: false,
            streams: Streams::new(StreamingVideo::Off, false, false),
            clock: Instant::now(),
            jpeg: WanCompression::Never,
            link_slow: false,
            lossy: LossyAreas::default(),
            now: Instant::now(),
            repaints: Vec::new(),
        }
    }

    /// When photographic images go as JPEG (QEMU's `jpeg-wan-compression`). spice-gtk
    /// decodes JPEG images (there is no cap for it), so the user's choice and the link
    /// decide; spice-html5 never gets them (see [`ClientDisplay::lossy_allowed`]).
    pub(crate) fn set_jpeg(&mut self, mode: WanCompression) {
        self.jpeg = mode;
    }

    /// What the link estimate says of the client's link now.
    pub(crate) fn set_link_slow(&mut self, slow: bool) {
        self.link_slow = slow;
    }

    /// What the link estimate says now: whether the link is slow, and its rate. Only a slow
    /// link's rate paces the streams: a fast link's samples may be limited by what we sent
    /// (an ACK window of a 10 frames/s video measures 10 frames/s), and pacing by that would
    /// lower the quality step by step for nothing.
    pub(crate) fn set_link(&mut self, (slow, bits_per_sec): (bool, Option<u64>)) {
        self.set_link_slow(slow);
        self.streams.set_link_rate(bits_per_sec.filter(|_| slow));
    }

    /// Whether images may go lossy now: never with `image-compression=off` (raw is what it
    /// promises), never to spice-html5 (it decodes a JPEG through an `Image` element and
    /// paints it when that loads, after drawings that followed it, which could leave the
    /// JPEG over a later exact picture), else as `jpeg-wan-compression` and the link say.
    fn lossy_allowed(&self) -> bool {
        self.compression != Compression::Off
            && !self.html5
            && match self.jpeg {
                WanCompression::Always => true,
                WanCompression::Auto => self.link_slow,
                WanCompression::Never => false,
            }
    }

    /// Sends again, losslessly, the lossy areas that are due: all once the link allows,
    /// else those still for a while. False when the client's queue overflowed.
    pub(crate) fn refine_lossy(&mut self, queue: &SendQueue, now: Instant) -> bool {
        self.now = now;
        let due = self.lossy.take_due(now, self.lossy_allowed());
        if !due.is_empty() {
            debug!(areas = due.len(), "lossy areas sent again losslessly");
        }
        self.resend_lossless(queue, due)
    }

    fn resend_lossless(&mut self, queue: &SendQueue, areas: Vec<LossyArea>) -> bool {
        areas.into_iter().all(|a| {
            self.images.note_lossless_resend();
            !self.fits(a.area) || self.image(queue, a.area, &a.pixels, false, false)
        })
    }

    /// Detects streams as `mode` says (off until called); `sized_cap`: the client takes
    /// STREAM_DATA_SIZED; `clock`: the start of the server's multimedia time.
    pub(crate) fn set_streaming(
        &mut self,
        mode: StreamingVideo,
        sized_cap: bool,
        report_cap: bool,
        clock: Instant,
    ) {
        self.streams = Streams::new(mode, sized_cap, report_cap);
        self.streams.set_clip_cap(!self.html5);
        self.clock = clock;
    }

    /// The codecs new streams may use, best first (see `stream::client_codecs`).
    pub(crate) fn set_stream_codecs(&mut self, codecs: Vec<VideoCodec>) {
        self.streams.set_codecs(codecs);
    }

    /// The server's multimedia time now, in ms (wraps), as `Shared::mm_time`.
    pub(crate) fn mm_time(&self) -> u32 {
        self.clock.elapsed().as_millis() as u32
    }

    /// Ends the streams that went still; their last frames go lossless. False when the
    /// client's queue overflowed.
    pub(crate) fn expire_streams(&mut self, queue: &SendQueue, now: Instant) -> bool {
        let mut resends = Vec::new();
        self.streams.expire(queue, now, &mut resends);
        self.resend(queue, resends)
    }

    /// Takes the client's stream reports. False when the client's queue overflowed.
    pub(crate) fn stream_reports(&mut self, queue: &SendQueue, reports: Vec<StreamReport>) -> bool {
        let mut resends = Vec::new();
        for r in &reports {
            self.streams.report(queue, r, &mut resends);
        }
        self.resend(queue, resends)
    }

    /// Sends, in order, the last frames of ended streams (lossless) and held pictures.
    fn resend(&mut self, queue: &SendQueue, resends: Vec<Resend>) -> bool {
        if self.html5 {
            for r in resends.iter().filter(|r| r.ends_stream) {
                self.repaint_later(r.area);
            }
        }
        resends.into_iter().all(|r| {
            // A frame of another surface (stale) is not sent. A stream's last frame goes
            // exactly; a held picture as any picture would (lossy on a slow link, refined
            // later).
            !(self.fits(r.area) && r.pixels.is_consistent())
                || self.image(queue, r.area, &r.pixels, false, !r.ends_stream)
        })
    }

    /// Ends the streams `area` overlaps before something else changes or reads it.
    fn unstream(&mut self, queue: &SendQueue, area: Rect) -> bool {
        let mut resends = Vec::new();
        self.streams.touched(queue, area, &mut resends);
        self.resend(queue, resends)
    }

    /// Schedules the repaints of an ended stream's area for spice-html5.
    fn repaint_later(&mut self, area: Rect) {
        for after in HTML5_REPAINTS {
            self.repaints.push((self.now + after, area));
        }
        if self.repaints.len() > MAX_REPAINTS {
            let latest = self.repaints.iter().map(|r| r.0).max().unwrap_or(self.now);
            let all = self
                .repaints
                .drain(..)
                .map(|r| r.1)
                .reduce(|a, b| a.union(&b));
            self.repaints.extend(all.map(|a| (latest, a)));
        }
    }

    /// The area due to be painted again from the surface at `now` (the union of the due
    /// repaints), if any.
    pub(crate) fn due_repaint(&mut self, now: Instant) -> Option<Rect> {
        let mut due = None;
        self.repaints.retain(|&(at, area)| {
            if at > now {
                return true;
            }
            due = Some(due.map_or(area, |d: Rect| d.union(&area)));
            false
        });
        due
    }

    /// Restricts this client to what spice-html5 draws (see the field's documentation).
    pub(crate) fn for_html5(mut self) -> ClientDisplay {
        self.html5 = true;
        self.monitors_cap = false;
        self.streams.set_clip_cap(false);
        self.images = ImageEncoder::new(self.compression, WanCompression::Never, false);
        self
    }

    /// The client's DISPLAY_INIT: its pixmap cache and GLZ dictionary budgets (each bounded
    /// by ours). Applied once; a second INIT is ignored, since the dictionary's ids must run
    /// on without a gap for the client.
    pub(crate) fn apply_init(&mut self, init: &DisplayInit) {
        if self.init_applied {
            return;
        }
        self.init_applied = true;
        if self.html5 {
            if init.glz_window_size != 0 {
                info!(
                    window = init.glz_window_size,
                    "an html5-like client asks for a GLZ dictionary; sending it none"
                );
            }
        } else {
            self.images.set_glz_window(i64::from(init.glz_window_size));
        }
        if init.pixmap_cache_size > crate::cache::MAX_CACHE_PIXELS as i64 {
            tracing::info!(
                asked = init.pixmap_cache_size,
                used = crate::cache::MAX_CACHE_PIXELS,
                "client's pixmap cache is larger than we model; using our bound"
            );
        }
        // Raw bitmaps are what `off` promises: no cache either.
        if self.compression != Compression::Off {
            self.cache = PixmapCache::new(init.pixmap_cache_size);
        }
    }

    /// The client lost queued messages (its send queue overflowed): a CACHE_ME may be among
    /// them, so the client's cache is cleared and ours with it.
    pub(crate) fn forget_cache(&mut self, queue: &SendQueue) {
        self.cache.clear();
        let _ = queue.push(msg::DISPLAY_INVAL_ALL_PIXMAPS, vec![0], false);
    }

    pub(crate) fn encode_stats(&self) -> image::EncodeStats {
        self.images.stats()
    }

    pub(crate) fn stream_stats(&self) -> crate::stream::StreamStats {
        self.streams.stats()
    }

    /// Sends what `item` changed. False when the client's queue overflowed (its updates were
    /// thrown away): the caller asks for the surface again.
    pub(crate) fn apply(&mut self, queue: &SendQueue, item: DisplayItem) -> bool {
        self.apply_at(queue, item, Instant::now())
    }

    /// [`ClientDisplay::apply`] of an item taken at `now` (stream detection times frames).
    pub(crate) fn apply_at(&mut self, queue: &SendQueue, item: DisplayItem, now: Instant) -> bool {
        self.now = now;
        match item {
            DisplayItem::SurfaceCreate(info) => {
                self.lossy.clear();
                self.streams.clear(queue);
                self.destroy(queue);
                let mut w = Writer::default();
                w.u32(0)
                    .u32(info.width)
                    .u32(info.height)
                    .u32(SURFACE_FMT_32_XRGB)
                    .u32(SURFACE_FLAG_PRIMARY);
                let _ = queue.push(msg::DISPLAY_SURFACE_CREATE, w.buf, false);
                // Two full frames must always fit, or a full refresh could never be queued.
                let frame = (info.width as usize * info.height as usize).saturating_mul(4);
                queue.set_limit(self.base_limit.max(frame.saturating_mul(2) + (1 << 16)));
                self.surface = Some((info.width, info.height));
                self.marked = false;
                self.sent_monitors = None;
                debug!(width = info.width, height = info.height, "surface created");
                true
            }
            DisplayItem::SurfaceDestroy => {
                self.lossy.clear();
                self.streams.clear(queue);
                self.destroy(queue);
                true
            }
            DisplayItem::Reset => true,
            DisplayItem::Monitors(monitors) => {
                let Some((w, h)) = self.surface else {
                    return true;
                };
                let monitors = showable(monitors, w, h);
                if let Some(listed) = &self.listed_heads {
                    *listed.lock().unwrap_or_else(|e| e.into_inner()) = monitors.heads.clone();
                }
                if self.monitors_cap && self.sent_monitors.as_ref() != Some(&monitors) {
                    let body = monitors_config(&monitors);
                    let _ = queue.push(msg::DISPLAY_MONITORS_CONFIG, body, false);
                    debug!(heads = monitors.heads.len(), "monitors config sent");
                    self.sent_monitors = Some(monitors);
                }
                true
            }
            DisplayItem::CopyBits { area, src_x, src_y } => {
                if !self.fits(area) {
                    return true;
                }
                // The copy reads the client's pixels at the source: a stream there must have
                // its exact last frame shown first.
                let src = Rect::new(
                    src_x,
                    src_y,
                    src_x.saturating_add(area.width()),
                    src_y.saturating_add(area.height()),
                );
                if !self.unstream(queue, area) || !src.is_none_or(|r| self.unstream(queue, r)) {
                    return false;
                }
                // Likewise a lossy area there: exact before it is copied.
                if let Some(src) = src {
                    let read = self.lossy.take_overlapping(src);
                    if !self.resend_lossless(queue, read) {
                        return false;
                    }
                }
                self.lossy.overwritten(area);
                self.drawn(queue, msg::DISPLAY_COPY_BITS, copy_bits(area, src_x, src_y))
            }
            DisplayItem::Draw(d) => {
                if !self.fits(d.area) {
                    return true;
                }
                match d.content {
                    DrawContent::Fill(color) => {
                        self.lossy.overwritten(d.area);
                        let mut resends = Vec::new();
                        self.streams
                            .drawn_over(queue, d.area, Drawing::Fill(color), &mut resends);
                        self.resend(queue, resends)
                            && self.drawn(queue, msg::DISPLAY_DRAW_FILL, draw_fill(d.area, color))
                    }
                    DrawContent::Image(px) => {
                        if !px.is_consistent()
                            || px.width != d.area.width()
                            || px.height != d.area.height()
                        {
                            debug!("inconsistent image ignored");
                            return true;
                        }
                        let mut resends = Vec::new();
                        let mm_time = self.mm_time();
                        match self
                            .streams
                            .image(queue, d.area, &px, now, mm_time, &mut resends)
                        {
                            Offered::Frame => {
                                // The stream's end re-sends its region exactly.
                                self.lossy.overwritten(d.area);
                                true
                            }
                            Offered::Overflow => false,
                            Offered::Held => {
                                // Sent later (before anything touches it), or covered
                                // by a later picture.
                                self.lossy.overwritten(d.area);
                                self.resend(queue, resends)
                            }
                            Offered::Image => {
                                let congested = queue.queued_bytes() > queue.limit() / 4;
                                self.resend(queue, resends)
                                    && self.image(queue, d.area, &px, congested, true)
                            }
                        }
                    }
                }
            }
        }
    }

    /// Whether `area` lies in the client's surface (items for another are stale).
    fn fits(&self, area: Rect) -> bool {
        self.surface
            .is_some_and(|(w, h)| Rect::of_size(w, h).contains(&area) && !area.is_empty())
    }

    fn destroy(&mut self, queue: &SendQueue) {
        if self.surface.take().is_some() {
            let _ = queue.push(
                msg::DISPLAY_SURFACE_DESTROY,
                0u32.to_le_bytes().to_vec(),
                false,
            );
        }
    }

    /// Queues a drawing message, then MARK after the first drawing on a surface.
    fn drawn(&mut self, queue: &SendQueue, ty: u16, body: Vec<u8>) -> bool {
        if queue.push(ty, body, true).is_err() {
            return false;
        }
        if !self.marked {
            let _ = queue.push(msg::DISPLAY_MARK, Vec::new(), false);
            self.marked = true;
        }
        true
    }

    /// Sends `px` at `area`: a fill when solid, else an image (lossy JPEG when `may_be_lossy`
    /// and the link calls for it, remembered for its lossless re-send).
    fn image(
        &mut self,
        queue: &SendQueue,
        area: Rect,
        px: &Pixels,
        congested: bool,
        may_be_lossy: bool,
    ) -> bool {
        // Whatever goes out now replaces what the client held there.
        self.lossy.overwritten(area);
        if self.marked
            && let Some(color) = px.solid_color()
        {
            return self.drawn(queue, msg::DISPLAY_DRAW_FILL, draw_fill(area, color));
        }
        if may_be_lossy && self.lossy_allowed() {
            // A picture the client already holds exactly costs nothing: no JPEG of it.
            let pixels = u64::from(px.width) * u64::from(px.height);
            if self.cache.wants(pixels)
                && let Some(id) = self
                    .cache
                    .hit(cache::content_key(px.width, px.height, &px.bgrx), pixels)
            {
                let img = self.images.from_cache(id, px.width, px.height);
                return self.drawn(queue, msg::DISPLAY_DRAW_COPY, draw_copy(area, &img));
            }
            if let Some(img) = self.images.encode_jpeg(px, STILL_JPEG_QUALITY) {
                if !self.drawn(queue, msg::DISPLAY_DRAW_COPY, draw_copy(area, &img)) {
                    return false;
                }
                let evicted = self.lossy.add(area, px.clone(), self.now);
                return self.resend_lossless(queue, evicted);
            }
        }
        if self.compression != Compression::Off {
            let pixels = u64::from(px.width) * u64::from(px.height);
            let cached = if self.cache.wants(pixels) {
                let key = cache::content_key(px.width, px.height, &px.bgrx);
                self.cache.lookup(key, pixels)
            } else {
                Lookup::Skip
            };
            let img = match cached {
                Lookup::Hit(id) => self.images.from_cache(id, px.width, px.height),
                Lookup::Insert { id, evicted } => {
                    // The client must drop what we evicted before it gets the new image.
                    for ids in evicted.chunks(usize::from(u16::MAX)) {
                        let mut w = Writer::with_capacity(2 + ids.len() * 9);
                        w.u16(ids.len() as u16);
                        for id in ids {
                            w.u8(RES_TYPE_PIXMAP).u64(*id);
                        }
                        let _ = queue.push(msg::DISPLAY_INVAL_LIST, w.buf, false);
                    }
                    self.images.encode_cached(px, congested, Some(id))
                }
                Lookup::Skip => self.images.encode(px, congested),
            };
            return self.drawn(queue, msg::DISPLAY_DRAW_COPY, draw_copy(area, &img));
        }
        // The first drawing on a new surface is one message even when large: spicy-screenshot
        // saves the picture at the first drawing it sees.
        let max_body = if self.marked {
            MAX_DRAW_BODY
        } else {
            usize::MAX
        };
        for rows in bands(px.width, px.height, max_body) {
            self.image_id = self.image_id.wrapping_add(1);
            let band = Rect {
                top: area.top + rows.start,
                bottom: area.top + rows.end,
                ..area
            };
            let mut img = Writer::with_capacity(
                DESCRIPTOR_SIZE + BITMAP_HEADER_SIZE + band.area() as usize * 4,
            );
            image::raw_bitmap(&mut img, self.image_id, px, rows);
            self.images.note_raw(band.area() as usize * 4);
            if !self.drawn(queue, msg::DISPLAY_DRAW_COPY, draw_copy(band, &img.buf)) {
                return false;
            }
        }
        true
    }

    /// The whole surface, for a resync after an overflow of the client's send queue.
    fn whole(&self) -> Option<Rect> {
        self.surface.map(|(w, h)| Rect::of_size(w, h))
    }
}

/// How long the first picture waits for the client's DISPLAY_INIT.
const INIT_WAIT: Duration = Duration::from_millis(250);

/// Where the reader thread leaves the client's DISPLAY_INIT for the encoder thread (the
/// first one only).
#[derive(Default)]
struct InitSlot {
    init: Mutex<Option<DisplayInit>>,
    arrived: std::sync::Condvar,
}

/// Where the reader thread leaves the client's stream reports for the encoder thread.
#[derive(Default)]
struct ReportSlot(Mutex<FromReader>);

/// What the channel's reader hands the encoder thread about streams.
#[derive(Default)]
struct FromReader {
    reports: Vec<StreamReport>,
    /// The codecs a new PREFERRED_VIDEO_CODEC_TYPE asks for, not yet applied.
    codecs: Option<Vec<VideoCodec>>,
}

impl ReportSlot {
    fn push(&self, r: StreamReport) {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if v.reports.len() < MAX_PENDING_REPORTS {
            v.reports.push(r);
        }
    }

    fn set_codecs(&self, codecs: Vec<VideoCodec>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).codecs = Some(codecs);
    }

    fn take(&self) -> FromReader {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// What decides a display client's stream codecs: ours, and what it said it decodes.
struct StreamCodecs {
    ours: Vec<VideoCodec>,
    multi_codec: bool,
    caps: Vec<u32>,
    html5: bool,
}

impl StreamCodecs {
    /// The codecs, best first, for a client that prefers `preferred` (wire codec types).
    /// spice-html5 announces VP8 when the browser's MediaSource plays WebM VP8, but plays it
    /// in a `<video>` element it makes "muted" with `setAttribute` after creating it, which
    /// does not mute it: a page nobody has clicked yet may not autoplay sound, so the video
    /// stays paused on its first frame until the stream ends (measured in Chromium: 41
    /// frames sent, 4 decoded, `paused`). MJPEG, which it paints into its canvas itself,
    /// shows every frame: html5 gets MJPEG unless it asks for VP8 first.
    fn for_client(&self, preferred: &[u8]) -> Vec<VideoCodec> {
        let mut list = crate::stream::client_codecs(
            &self.ours,
            self.multi_codec,
            |cap| has_cap(&self.caps, cap),
            preferred,
        );
        let asked_vp8 = preferred.first() == Some(&VideoCodec::Vp8.wire());
        if self.html5 && !asked_vp8 {
            list.retain(|&c| c == VideoCodec::Mjpeg);
        }
        list
    }
}

impl InitSlot {
    fn set(&self, init: DisplayInit) {
        let mut slot = self.init.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(init);
            self.arrived.notify_all();
        }
    }

    fn get(&self) -> Option<DisplayInit> {
        *self.init.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The INIT, waiting up to `timeout` for it.
    fn wait(&self, timeout: Duration) -> Option<DisplayInit> {
        let slot = self.init.lock().unwrap_or_else(|e| e.into_inner());
        let (slot, _) = self
            .arrived
            .wait_timeout_while(slot, timeout, |s| s.is_none())
            .unwrap_or_else(|e| e.into_inner());
        *slot
    }
}

/// What the channel's reader and pinger leave for the encoder.
struct FromClient<'a> {
    init: &'a InitSlot,
    reports: &'a ReportSlot,
    link: &'a LinkMonitor,
    /// Whether the guest's audio plays (its time stamps then drive the client's clock).
    playback: &'a crate::playback::Playback,
}

/// The encoder thread's loop: items from the pipe to messages in the queue, waiting while the
/// queue is full.
fn encode_loop(
    queue: &SendQueue,
    pipe: &Arc<Pipe>,
    source: &Arc<dyn DisplaySource>,
    session: &Session,
    client: &mut ClientDisplay,
    from: FromClient<'_>,
) {
    let FromClient {
        init,
        reports,
        link,
        playback,
    } = from;
    // Clients send DISPLAY_INIT right after linking; the first picture waits a moment for
    // it, so that it may already use the client's GLZ dictionary and cache.
    if let Some(i) = init.wait(INIT_WAIT) {
        client.apply_init(&i);
    }
    while !queue.is_closed() && !session.is_closed() {
        if !client.init_applied
            && let Some(i) = init.get()
        {
            client.apply_init(&i);
        }
        if !queue.wait_below(queue_room(queue), IDLE_CHECK) {
            continue;
        }
        let now = Instant::now();
        client.set_link(link.with(|e| (e.is_slow(now), e.bits_per_sec(now))));
        let from_reader = reports.take();
        if let Some(codecs) = from_reader.codecs {
            client.set_stream_codecs(codecs);
        }
        // Frames that came late: the client's clock goes further behind ours.
        if let Some(need) = from_reader
            .reports
            .iter()
            .filter_map(|r| crate::stream::required_latency(r, session.mm_latency()))
            .max()
        {
            session.raise_mm_latency(need, client.mm_time(), playback.playing());
        }
        if !client.expire_streams(queue, now)
            || !client.stream_reports(queue, from_reader.reports)
            || !client.refine_lossy(queue, now)
        {
            resync(queue, pipe, client);
        }
        if let Some(area) = client.due_repaint(now) {
            debug!(
                ?area,
                "an ended stream's area painted again for spice-html5"
            );
            pipe.force_resync(area);
        }
        match pipe.pop(IDLE_CHECK) {
            Popped::Item(item) => {
                // The estimate as it is now, not as before the wait.
                let now = Instant::now();
                client.set_link(link.with(|e| (e.is_slow(now), e.bits_per_sec(now))));
                if !client.apply(queue, item) {
                    resync(queue, pipe, client);
                }
            }
            Popped::Resync => source.resync(pipe),
            Popped::Idle => {}
            Popped::Closed => break,
        }
    }
}

/// The client's queue overflowed (its droppable messages are gone): its cache is cleared
/// and the whole surface sent again.
fn resync(queue: &SendQueue, pipe: &Pipe, client: &mut ClientDisplay) {
    debug!("send queue overflow: the surface is sent again");
    client.forget_cache(queue);
    if let Some(area) = client.whole() {
        pipe.force_resync(area);
    }
}

/// How full the client's queue may be before the encoder waits: half its bound (which the
/// surface raises to two frames), so a frame encoded now still fits.
fn queue_room(queue: &SendQueue) -> usize {
    (queue.limit() / 2).max(1)
}

/// Pings the client every [`LINK_PING_INTERVAL`] for the link estimate, each ping queued
/// behind what the client has yet to receive (so its round trip measures that backlog's
/// transfer too), padded when the estimate asks for a probe. Ends with the connection.
fn link_ping_loop(queue: &SendQueue, link: &LinkMonitor, started: Instant) {
    let mut id: u32 = 0;
    loop {
        id = id.wrapping_add(1);
        let now = Instant::now();
        let padding = link.with(|e| e.probe_bytes(now));
        let mut w = Writer::with_capacity(12 + padding);
        w.u32(id).u64(now.duration_since(started).as_nanos() as u64);
        w.buf.resize(12 + padding, 0);
        let waiting =
            (queue.queued_bytes() as u64).saturating_add(queue.socket_backlog().unwrap_or(0));
        let ahead = waiting.saturating_add((w.buf.len() + FULL_HEADER_SIZE) as u64);
        link.with(|e| {
            e.backlog(waiting);
            e.ping_sent(id, now, ahead);
        });
        if padding > 0 {
            debug!(padding, waiting, "link probe");
        }
        let _ = queue.push(msg::PING, w.buf, false);
        let until = now + LINK_PING_INTERVAL;
        while Instant::now() < until {
            if queue.is_closed() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub(crate) fn run(
    stream: Stream,
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    req: &LinkRequest,
    mini: bool,
    traffic: Arc<Traffic>,
    listed: &Arc<crate::session::LinkedChannel>,
) -> Result<(), ConnError> {
    // The compression is the one in force when the channel links: taken before anything is
    // sent, so a client that has seen SET_ACK knows which it got.
    let compression = *shared
        .image_compression
        .read()
        .unwrap_or_else(|e| e.into_inner());
    let mut ch = Channel::open(
        stream,
        mini,
        traffic,
        shared.config.queue_limit,
        MAX_DISPLAY_MESSAGE,
        Some(ACK_WINDOW),
    )?;
    let queue = ch.queue().clone();
    let link = Arc::new(LinkMonitor::default());
    queue.observe_acks(link.clone());
    *listed.link.lock().unwrap_or_else(|e| e.into_inner()) = Some(link.clone());

    let pipe = Arc::new(Pipe::new(shared.config.display_pipe_limit));
    *listed.pipe.lock().unwrap_or_else(|e| e.into_inner()) = Some(pipe.clone());
    let init = Arc::new(InitSlot::default());
    let client = ClientDisplay::with_encoding(
        has_cap(&req.channel_caps, CAP_MONITORS_CONFIG),
        shared.config.queue_limit,
        compression,
        shared.config.zlib_glz_wan_compression,
        has_cap(&req.channel_caps, CAP_LZ4_COMPRESSION),
    );
    let mut client = if req.is_html5() {
        client.for_html5()
    } else {
        client
    };
    client.set_jpeg(shared.config.jpeg_wan_compression);
    client.images.count_into(shared.image_totals.clone());
    client.images.count_into(listed.images.clone());
    client.listed_heads = Some(listed.heads.clone());
    // A client that decodes none of our codecs gets no streams: only lossless pictures.
    let codecs = StreamCodecs {
        ours: shared.config.video_codecs.order().to_vec(),
        multi_codec: has_cap(&req.channel_caps, CAP_MULTI_CODEC),
        caps: req.channel_caps.clone(),
        html5: req.is_html5(),
    };
    let first = codecs.for_client(&[]);
    if first.is_empty() {
        info!("display client decodes none of our video codecs: no video streams for it");
    }
    client.set_streaming(
        shared.config.streaming_video,
        has_cap(&req.channel_caps, CAP_SIZED_STREAM),
        has_cap(&req.channel_caps, CAP_STREAM_REPORT),
        shared.started,
    );
    client.set_stream_codecs(first);
    let reports = Arc::new(ReportSlot::default());
    client.streams.count_into(shared.stream_totals.clone());
    client.streams.count_into(listed.streams.clone());
    if !shared.source.subscribe(pipe.clone()) {
        info!("no display source to subscribe to");
    }
    {
        let (queue, link, started) = (queue.clone(), link.clone(), shared.started);
        ch.spawn("spice-display-ping", move || {
            link_ping_loop(&queue, &link, started)
        })?;
    }
    {
        let (queue, shared, session, pipe, init, reports, link) = (
            queue.clone(),
            shared.clone(),
            session.clone(),
            pipe.clone(),
            init.clone(),
            reports.clone(),
            link.clone(),
        );
        ch.spawn("spice-display", move || {
            encode_loop(
                &queue,
                &pipe,
                &shared.source,
                &session,
                &mut client,
                FromClient {
                    init: &init,
                    reports: &reports,
                    link: &link,
                    playback: &shared.playback,
                },
            );
            pipe.close();
            let s = client.encode_stats();
            let v = client.stream_stats();
            debug!(?s, ?v, "display client's images and streams");
        })?;
    }

    let result = ch.serve(session, |_, event| {
        match event {
            Event::Message(msg::MSGC_DISPLAY_INIT, body) => {
                let parsed = DisplayInit::parse(body);
                debug!(?parsed, "display INIT");
                if let Some(i) = parsed {
                    init.set(i);
                }
            }
            Event::Message(msg::MSGC_DISPLAY_STREAM_REPORT, body) => {
                match StreamReport::parse(body) {
                    Ok(r) => reports.push(r),
                    Err(e) => debug!(%e, "stream report refused"),
                }
            }
            Event::Message(msg::MSGC_DISPLAY_PREFERRED_VIDEO_CODEC_TYPE, body) => {
                match parse_preferred_codecs(body) {
                    Ok(list) => {
                        let chosen = codecs.for_client(list);
                        debug!(?list, ?chosen, "client's preferred video codecs");
                        reports.set_codecs(chosen);
                    }
                    Err(e) => debug!(%e, "preferred video codecs refused"),
                }
            }
            Event::Message(ty, _) => debug!(ty, "ignored display message"),
            Event::Pong(id) => {
                link.with(|e| e.pong(id, Instant::now()));
            }
        }
        Ok(())
    });
    pipe.close();
    ch.close();
    result
}

#[cfg(test)]
mod tests {

    use saffron_display::{Draw, Pixels, SurfaceInfo};

    use super::*;
    use crate::client::Screen;

    fn rect(l: u32, t: u32, r: u32, b: u32) -> Rect {
        Rect::new(l, t, r, b).unwrap()
    }

    /// What a client shows after the messages `queue` holds.
    fn replay(queue: &SendQueue, screen: &mut Screen) -> Vec<u16> {
        let mut sink = std::io::sink();
        let mut types = Vec::new();
        for (ty, body) in queue.take_all() {
            screen.handle(&mut sink, ty, &body).unwrap();
            types.push(ty);
        }
        types
    }

    fn image(area: Rect, f: impl Fn(u32, u32) -> u32) -> DisplayItem {
        let bgrx = (area.top..area.bottom)
            .flat_map(|y| (area.left..area.right).map(move |x| (x, y)))
            .flat_map(|(x, y)| (f(x, y) & 0xff_ffff).to_le_bytes())
            .collect();
        DisplayItem::image(area, bgrx, None)
    }

    /// PREFERRED_VIDEO_CODEC_TYPE: a count and that many types, nothing else; it orders the
    /// codecs the client announced; spice-html5 gets MJPEG unless it asks for VP8 first.
    #[test]
    fn preferred_codecs_are_checked_and_order_the_clients_codecs() {
        assert_eq!(parse_preferred_codecs(&[2, 2, 1]), Ok(&[2u8, 1][..]));
        assert_eq!(parse_preferred_codecs(&[0]), Ok(&[][..]));
        assert_eq!(
            parse_preferred_codecs(&[]),
            Err(crate::stream::PreferredCodecsError::Empty(0))
        );
        assert_eq!(
            parse_preferred_codecs(&[3, 1]),
            Err(crate::stream::PreferredCodecsError::Count { said: 3, have: 1 })
        );
        let caps = vec![(1 << 8) | (1 << 9) | (1 << 10)];
        let c = StreamCodecs {
            ours: vec![VideoCodec::Vp8, VideoCodec::Mjpeg],
            multi_codec: true,
            caps,
            html5: false,
        };
        assert_eq!(c.for_client(&[]), [VideoCodec::Vp8, VideoCodec::Mjpeg]);
        assert_eq!(c.for_client(&[1]), [VideoCodec::Mjpeg, VideoCodec::Vp8]);
        let html5 = StreamCodecs {
            ours: c.ours.clone(),
            caps: c.caps.clone(),
            html5: true,
            ..c
        };
        assert_eq!(html5.for_client(&[]), [VideoCodec::Mjpeg]);
        assert_eq!(html5.for_client(&[1, 2]), [VideoCodec::Mjpeg]);
        assert_eq!(html5.for_client(&[2]), [VideoCodec::Vp8, VideoCodec::Mjpeg]);
        let mjpeg_only = StreamCodecs {
            caps: vec![(1 << 8) | (1 << 9)],
            ..c
        };
        assert_eq!(mjpeg_only.for_client(&[2]), [VideoCodec::Mjpeg]);
    }

    #[test]
    fn layouts() {
        let fill = draw_fill(rect(2, 1, 4, 3), 0x00123456);
        assert_eq!(fill.len(), DRAW_FILL_BODY);
        assert_eq!(&fill[4..8], &1i32.to_le_bytes(), "top");
        assert_eq!(&fill[8..12], &2i32.to_le_bytes(), "left");
        assert_eq!((fill[20], fill[21]), (0, 1), "clip NONE, SOLID");
        assert_eq!(&fill[22..26], &0x00123456u32.to_le_bytes());
        let cb = copy_bits(rect(0, 0, 64, 120), 0, 8);
        assert_eq!(cb.len(), COPY_BITS_BODY);
        assert_eq!(&cb[21..29], &[0, 0, 0, 0, 8, 0, 0, 0]);
        let mut img = Writer::default();
        let px = Pixels {
            width: 2,
            height: 2,
            bgrx: vec![9; 16],
            guest_id: None,
        };
        image::raw_bitmap(&mut img, 7, &px, 0..2);
        let copy = draw_copy(rect(1, 1, 3, 3), &img.buf);
        assert_eq!(copy.len(), DRAW_COPY_HEADER + 16);
        assert_eq!(&copy[21..25], &57u32.to_le_bytes());
        assert_eq!((copy[75], copy[76]), (8, 4), "32BIT, TOP_DOWN");
    }

    #[test]
    fn bands_cover_the_rows() {
        let bs: Vec<_> = bands(10, 100, DRAW_COPY_HEADER + 40 * 7).collect();
        assert_eq!(bs.first().unwrap().start, 0);
        assert_eq!(bs.last().unwrap().end, 100);
        assert!(bs.iter().all(|b| b.end - b.start <= 7));
        assert!(bs.windows(2).all(|w| w[0].end == w[1].start));
    }

    /// Two heads side by side on one primary: one MONITORS_CONFIG with both, byte for byte as
    /// SpiceMsgDisplayMonitorsConfig lays them out; a disabled or stale head is not
    /// announced, and nothing showable means the whole surface.
    #[test]
    fn two_heads_go_out_in_one_monitors_config() {
        let q = SendQueue::new(1 << 20);
        let mut c = ClientDisplay::new(true, 1 << 20);
        let listed = Arc::new(Mutex::new(Vec::new()));
        c.listed_heads = Some(listed.clone());
        c.apply(
            &q,
            DisplayItem::SurfaceCreate(SurfaceInfo {
                width: 1664,
                height: 768,
            }),
        );
        q.take_all();
        let head = |id, x, y, width, height| Head {
            id,
            x,
            y,
            width,
            height,
        };
        let two = Monitors {
            max_allowed: 4,
            heads: vec![head(0, 0, 0, 1024, 768), head(1, 1024, 0, 640, 480)],
        };
        c.apply(&q, DisplayItem::Monitors(two.clone()));
        let sent = q.take_all();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, msg::DISPLAY_MONITORS_CONFIG);
        let le = |v: &[u32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let mut want = vec![2, 0, 4, 0]; // count 2, max_allowed 4
        want.extend(le(&[0, 0, 1024, 768, 0, 0, 0])); // id, surface, w, h, x, y, flags
        want.extend(le(&[1, 0, 640, 480, 1024, 0, 0]));
        assert_eq!(sent[0].1, want);
        // client_info lists them.
        assert_eq!(*listed.lock().unwrap(), two.heads);
        // The same again: nothing.
        c.apply(&q, DisplayItem::Monitors(two));
        assert!(q.take_all().is_empty());
        // A zero-sized head and one past the surface are left out.
        c.apply(
            &q,
            DisplayItem::Monitors(Monitors {
                max_allowed: 4,
                heads: vec![
                    head(0, 0, 0, 0, 768),
                    head(1, 1024, 0, 640, 480),
                    head(2, 1600, 0, 640, 480),
                ],
            }),
        );
        let sent = q.take_all();
        let mut want = vec![1, 0, 4, 0];
        want.extend(le(&[1, 0, 640, 480, 1024, 0, 0]));
        assert_eq!(sent[0].1, want);
        // Nothing showable: the whole surface as one head.
        c.apply(
            &q,
            DisplayItem::Monitors(Monitors {
                max_allowed: 4,
                heads: vec![head(0, 0, 0, 0, 0)],
            }),
        );
        let sent = q.take_all();
        let mut want = vec![1, 0, 1, 0];
        want.extend(le(&[0, 0, 1664, 768, 0, 0, 0]));
        assert_eq!(sent[0].1, want);
        // A worker bug with thousands of heads still makes a bounded message.
        let many = Monitors {
            max_allowed: u32::MAX,
            heads: (0..5000).map(|i| head(i, 0, 0, 1, 1)).collect(),
        };
        c.apply(&q, DisplayItem::Monitors(many));
        let sent = q.take_all();
        assert_eq!(&sent[0].1[..4], &[64, 0, 0xff, 0xff]);
        assert_eq!(sent[0].1.len(), 4 + 64 * 28);
    }

    #[test]
    fn a_new_surface_goes_out_whole_then_marked_and_monitors_follow_the_guest() {
        let q = SendQueue::new(1 << 20);
        let mut c = ClientDisplay::new(true, 1 << 20);
        let mut screen = Screen::new();
        let info = SurfaceInfo {
            width: 16,
            height: 8,
        };
        let head = Monitors::whole(16, 8);
        c.apply(&q, DisplayItem::SurfaceCreate(info));
        c.apply(&q, DisplayItem::Monitors(head.clone()));
        c.apply(&q, image(Rect::of_size(16, 8), |_, _| 7));
        assert_eq!(
            replay(&q, &mut screen),
            [
                msg::DISPLAY_SURFACE_CREATE,
                msg::DISPLAY_MONITORS_CONFIG,
                msg::DISPLAY_DRAW_COPY,
                msg::DISPLAY_MARK,
            ],
            "the first draw is a whole DRAW_COPY even when solid"
        );
        // The same head again: nothing; a new one: told, no pixels.
        c.apply(&q, DisplayItem::Monitors(head));
        assert!(q.take_all().is_empty());
        let window = Monitors {
            max_allowed: 1,
            heads: vec![Head {
                id: 0,
                x: 4,
                y: 2,
                width: 10,
                height: 6,
            }],
        };
        c.apply(&q, DisplayItem::Monitors(window));
        let sent = q.take_all();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            &sent[0].1[12..28],
            &[10, 0, 0, 0, 6, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0]
        );
        // A solid image after the first draw goes as a fill.
        c.apply(&q, image(rect(0, 0, 4, 4), |_, _| 9));
        assert_eq!(replay(&q, &mut screen), [msg::DISPLAY_DRAW_FILL]);
        // Items outside the surface (stale) are ignored.
        c.apply(&q, image(rect(10, 0, 20, 4), |_, _| 9));
        assert!(q.take_all().is_empty());
    }

    #[test]
    fn an_overflowing_queue_asks_for_the_surface_again() {
        let q = SendQueue::new(0);
        let mut c = ClientDisplay::new(false, 0);
        c.apply(
            &q,
            DisplayItem::SurfaceCreate(SurfaceInfo {
                width: 4,
                height: 4,
            }),
        );
        assert!(c.apply(&q, image(Rect::of_size(4, 4), |x, _| x)));
        q.set_limit(1);
        assert!(!c.apply(&q, image(Rect::of_size(4, 4), |x, y| x + y)));
        assert_eq!(c.whole(), Some(Rect::of_size(4, 4)));
    }

    /// Each `image-compression` value sends the format it names (or the one its rule picks),
    /// and only formats the client decodes: no GLZ without a dictionary window, no LZ4
    /// without the cap. The library client decodes each to exactly the source.
    #[test]
    fn each_compression_sends_its_format_and_the_client_decodes_it_exactly() {
        use saffron_codec::corpus;
        let (w, h) = (96u32, 64u32);
        let text = corpus::text(w, h);
        let photo = corpus::photo(w, h);
        let item = |bgrx: &[u8]| DisplayItem::image(Rect::of_size(w, h), bgrx.to_vec(), None);
        /// Compression, wan, LZ4 cap, GLZ window, image, the SpiceImage type expected.
        type Case<'a> = (&'a str, WanCompression, bool, i32, &'a [u8], u8);
        let cases: [Case; 12] = [
            ("off", WanCompression::Never, true, 1 << 20, &text, 0),
            ("quic", WanCompression::Never, true, 1 << 20, &text, 1),
            ("lz", WanCompression::Never, true, 1 << 20, &text, 101),
            ("glz", WanCompression::Never, true, 1 << 20, &text, 102),
            ("glz", WanCompression::Always, true, 1 << 20, &text, 107),
            ("glz", WanCompression::Never, true, 0, &text, 101),
            ("lz4", WanCompression::Never, true, 1 << 20, &text, 109),
            ("lz4", WanCompression::Never, false, 1 << 20, &text, 101),
            ("auto_glz", WanCompression::Never, true, 1 << 20, &text, 102),
            ("auto_glz", WanCompression::Never, true, 1 << 20, &photo, 1),
            ("auto_lz", WanCompression::Never, true, 1 << 20, &text, 101),
            ("auto_lz", WanCompression::Never, true, 0, &photo, 1),
        ];
        for (name, wan, lz4, window, pixels, want) in cases {
            let q = SendQueue::new(1 << 24);
            let mut c =
                ClientDisplay::with_encoding(false, 1 << 24, name.parse().unwrap(), wan, lz4);
            c.apply_init(&DisplayInit {
                glz_window_size: window,
                ..DisplayInit::default()
            });
            c.apply(
                &q,
                DisplayItem::SurfaceCreate(SurfaceInfo {
                    width: w,
                    height: h,
                }),
            );
            c.apply(&q, item(pixels));
            let mut screen = Screen::new();
            replay(&q, &mut screen);
            let what = format!("{name} (wan {wan}, lz4 {lz4}, window {window})");
            assert_eq!(
                screen.images.keys().copied().collect::<Vec<_>>(),
                [want],
                "{what}"
            );
            assert!(
                screen
                    .pixels
                    .chunks_exact(4)
                    .zip(pixels.chunks_exact(4))
                    .all(|(a, b)| a[..3] == b[..3]),
                "{what}: pixels differ"
            );
        }
    }

    /// spice-html5 gets QUIC, LZ or raw images whatever the compression and its INIT say (no
    /// GLZ, zlib-GLZ or LZ4), and no MONITORS_CONFIG.
    #[test]
    fn html5_gets_only_formats_it_decodes() {
        use saffron_codec::corpus;
        let (w, h) = (96u32, 64u32);
        for (name, pixels) in [
            ("glz", corpus::text(w, h)),
            ("lz4", corpus::text(w, h)),
            ("auto_glz", corpus::text(w, h)),
            ("auto_glz", corpus::photo(w, h)),
        ] {
            let q = SendQueue::new(1 << 24);
            let mut c = ClientDisplay::with_encoding(
                true,
                1 << 24,
                name.parse().unwrap(),
                WanCompression::Always,
                true,
            )
            .for_html5();
            c.apply_init(&DisplayInit {
                glz_window_size: 1 << 20,
                ..DisplayInit::default()
            });
            c.apply(
                &q,
                DisplayItem::SurfaceCreate(SurfaceInfo {
                    width: w,
                    height: h,
                }),
            );
            c.apply(&q, DisplayItem::Monitors(Monitors::whole(w, h)));
            c.apply(
                &q,
                DisplayItem::image(Rect::of_size(w, h), pixels.clone(), None),
            );
            let mut screen = Screen::new();
            let types = replay(&q, &mut screen);
            assert!(!types.contains(&msg::DISPLAY_MONITORS_CONFIG), "{name}");
            let formats: Vec<u8> = screen.images.keys().copied().collect();
            assert!(
                formats.iter().all(|f| [0, 1, 101].contains(f)),
                "{name}: {formats:?}"
            );
            assert!(
                screen
                    .pixels
                    .chunks_exact(4)
                    .zip(pixels.chunks_exact(4))
                    .all(|(a, b)| a[..3] == b[..3]),
                "{name}: pixels differ"
            );
        }
    }

    /// A picture that comes back goes as FROM_CACHE; when the client's cache budget is full
    /// the least recently used picture is invalidated before the new one is sent; a client
    /// that lost messages gets its cache cleared. The library client refuses a FROM_CACHE or
    /// an INVAL_LIST of an id it does not hold, so a wrong model would fail here.
    #[test]
    fn repeated_pictures_come_from_the_client_cache() {
        let (w, h) = (64u32, 32u32);
        let q = SendQueue::new(1 << 24);
        let mut c = ClientDisplay::with_encoding(
            false,
            1 << 24,
            Compression::Lz,
            WanCompression::Never,
            false,
        );
        // Room for two 32x32 pictures.
        c.apply_init(&DisplayInit {
            pixmap_cache_size: 2 * 32 * 32,
            ..DisplayInit::default()
        });
        c.apply(
            &q,
            DisplayItem::SurfaceCreate(SurfaceInfo {
                width: w,
                height: h,
            }),
        );
        c.apply(&q, image(Rect::of_size(w, h), |x, y| x * 3 + y));
        let mut screen = Screen::new();
        replay(&q, &mut screen);
        let picture = |n: u32| move |x: u32, y: u32| (x * 7 + y * 13) ^ (n * 0x10101);
        // Picture n drawn at `area` (the same pixels wherever it goes).
        let tile =
            |area: Rect, n: u32| image(area, move |x, y| picture(n)(x - area.left, y - area.top));
        let left = rect(0, 0, 32, 32);
        let right = rect(32, 0, 64, 32);
        // 1 and 2 fill the cache (evicting the first whole picture); 1 again is a hit,
        // wherever it is drawn.
        c.apply(&q, tile(left, 1));
        c.apply(&q, tile(right, 2));
        c.apply(&q, tile(right, 1));
        replay(&q, &mut screen);
        assert_eq!(c.images.stats().from_cache, 1);
        // 3 evicts 2 (least recently used); 2 then comes back as a new entry, evicting 1.
        c.apply(&q, tile(left, 3));
        let types = replay(&q, &mut screen);
        assert_eq!(types, [msg::DISPLAY_INVAL_LIST, msg::DISPLAY_DRAW_COPY]);
        c.apply(&q, tile(left, 2));
        replay(&q, &mut screen);
        // The first whole picture, then 2, then 1.
        assert_eq!(c.cache.evictions, 3);
        assert_eq!(screen.cache.len(), 2, "the client holds what we model");
        c.apply(&q, tile(right, 3));
        replay(&q, &mut screen);
        assert_eq!(c.images.stats().from_cache, 2);
        // What the client shows is the last picture in each half.
        let want: Vec<u32> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| {
                let (lx, n) = if x < 32 { (x, 2) } else { (x - 32, 3) };
                picture(n)(lx, y) & 0xff_ffff
            })
            .collect();
        assert_eq!(screen.xrgb(), want);
        // Lost messages: the whole cache goes.
        c.forget_cache(&q);
        replay(&q, &mut screen);
        assert!(screen.cache.is_empty());
        c.apply(&q, tile(left, 2));
        replay(&q, &mut screen);
        assert_eq!(
            c.images.stats().from_cache,
            2,
            "nothing is referenced after a clear"
        );
    }

    /// A client of a `w x h` surface, images as `auto_glz`, JPEG as `jpeg`, its surface
    /// drawn once with a solid background (which stays lossless).
    fn jpeg_client(w: u32, h: u32, jpeg: WanCompression) -> (ClientDisplay, Arc<SendQueue>) {
        let q = SendQueue::new(1 << 24);
        let mut c = ClientDisplay::with_encoding(
            false,
            1 << 24,
            Compression::AutoGlz,
            WanCompression::Never,
            false,
        );
        c.set_jpeg(jpeg);
        c.apply_init(&DisplayInit {
            glz_window_size: 1 << 20,
            pixmap_cache_size: 1 << 20,
            ..DisplayInit::default()
        });
        c.apply(
            &q,
            DisplayItem::SurfaceCreate(SurfaceInfo {
                width: w,
                height: h,
            }),
        );
        c.apply(&q, image(Rect::of_size(w, h), |_, _| 0x33_6699));
        (c, q)
    }

    /// On a slow link (`auto`), a photograph goes as JPEG (close, not exact) and text stays
    /// lossless; nothing is re-sent while the link stays slow and the area is fresh; once the
    /// link is fast again the area goes lossless and the client's picture is exact.
    #[test]
    fn slow_links_get_jpeg_photos_and_the_area_ends_exact_when_the_link_allows() {
        use saffron_codec::{corpus, mjpeg};
        let (w, h) = (160u32, 120u32);
        let (mut c, q) = jpeg_client(w, h, WanCompression::Auto);
        let mut screen = Screen::new();
        replay(&q, &mut screen);
        let t = Instant::now();
        let area = rect(16, 8, 144, 104);
        let photo = corpus::photo(area.width(), area.height());
        // Fast link: lossless (another photograph: this one is now in the client's cache,
        // and would come from there).
        let other: Vec<u8> = photo.iter().map(|b| 255 - b).collect();
        assert!(c.apply_at(&q, DisplayItem::image(area, other, None), t));
        replay(&q, &mut screen);
        assert_eq!(c.encode_stats().jpeg, 0);
        c.set_link_slow(true);
        let text = corpus::text(area.width(), area.height());
        assert!(c.apply_at(&q, DisplayItem::image(area, text.clone(), None), t));
        replay(&q, &mut screen);
        assert_eq!(c.encode_stats().jpeg, 0, "text stays lossless");
        assert!(crop(&screen, w, area) == text);
        assert!(c.apply_at(&q, DisplayItem::image(area, photo.clone(), None), t));
        replay(&q, &mut screen);
        assert_eq!(c.encode_stats().jpeg, 1);
        assert_eq!(screen.images.get(&image::image_type::JPEG), Some(&1));
        let shown = crop(&screen, w, area);
        assert!(shown != photo, "lossy");
        let p = mjpeg::psnr(&photo, &shown);
        assert!(p >= 30.0, "JPEG at {p:.1} dB");
        // Still slow, not still for long: nothing.
        assert!(c.refine_lossy(&q, t + Duration::from_secs(1)));
        assert!(q.take_all().is_empty());
        c.set_link_slow(false);
        assert!(c.refine_lossy(&q, t + Duration::from_secs(1)));
        assert_eq!(replay(&q, &mut screen), [msg::DISPLAY_DRAW_COPY]);
        assert!(crop(&screen, w, area) == photo, "exact again");
        assert_eq!(c.encode_stats().lossless_resends, 1);
        assert!(c.refine_lossy(&q, t + Duration::from_secs(9)));
        assert!(q.take_all().is_empty(), "once only");
    }

    /// With `always`, a lossy area that stays still goes lossless after LOSSY_STILL; a fill
    /// over part of it is kept (only the rest is re-sent); a COPY_BITS reading a lossy area
    /// gets it exact first, so the copy carries exact pixels. `never` sends no JPEG.
    #[test]
    fn lossy_areas_end_exact_when_still_around_later_drawings() {
        use saffron_codec::corpus;
        let (w, h) = (200u32, 120u32);
        let (mut c, q) = jpeg_client(w, h, WanCompression::Always);
        let mut screen = Screen::new();
        let mut truth = screen_truth(&q, &mut screen);
        let t = Instant::now();
        let area = rect(0, 0, 96, 96);
        let photo = corpus::photo(96, 96);
        assert!(c.apply_at(&q, DisplayItem::image(area, photo.clone(), None), t));
        paint(&mut truth, w, area, &photo);
        let fill = rect(40, 40, 140, 60);
        assert!(c.apply_at(
            &q,
            DisplayItem::Draw(Draw {
                area: fill,
                content: DrawContent::Fill(0x00ab_cdef),
            }),
            t,
        ));
        paint(
            &mut truth,
            w,
            fill,
            &[0xef, 0xcd, 0xab, 0].repeat(fill.area() as usize),
        );
        replay(&q, &mut screen);
        assert!(screen.pixels != truth);
        assert!(c.refine_lossy(&q, t + crate::lossy::LOSSY_STILL / 2));
        assert!(q.take_all().is_empty());
        assert!(c.refine_lossy(&q, t + crate::lossy::LOSSY_STILL));
        let types = replay(&q, &mut screen);
        assert!(types.len() >= 2, "the pieces around the fill: {types:?}");
        assert!(screen.pixels == truth, "exact, the fill kept");
        // A copy of a lossy area: exact first.
        let t = t + crate::lossy::LOSSY_STILL * 2;
        assert!(c.apply_at(&q, DisplayItem::image(area, photo.clone(), None), t));
        paint(&mut truth, w, area, &photo);
        let dest = rect(100, 0, 196, 96);
        assert!(c.apply_at(
            &q,
            DisplayItem::CopyBits {
                area: dest,
                src_x: 0,
                src_y: 0,
            },
            t,
        ));
        paint(&mut truth, w, dest, &photo);
        let types = replay(&q, &mut screen);
        assert_eq!(
            types,
            [
                msg::DISPLAY_DRAW_COPY,
                msg::DISPLAY_DRAW_COPY,
                msg::DISPLAY_COPY_BITS
            ]
        );
        assert!(screen.pixels == truth, "JPEG, exact re-send, copy");
        assert_eq!(c.encode_stats().jpeg, 2);
        // never: no JPEG even on a slow link; nor to spice-html5.
        let (mut c, q) = jpeg_client(w, h, WanCompression::Never);
        c.set_link_slow(true);
        c.apply_at(&q, DisplayItem::image(area, photo.clone(), None), t);
        assert_eq!(c.encode_stats().jpeg, 0);
        let (c, q) = jpeg_client(w, h, WanCompression::Always);
        let mut c = c.for_html5();
        c.apply_at(&q, DisplayItem::image(area, photo, None), t);
        assert_eq!(c.encode_stats().jpeg, 0, "html5");
    }

    /// `area` of a `w`-wide screen, as BGRX rows.
    fn crop(screen: &Screen, w: u32, area: Rect) -> Vec<u8> {
        (area.top..area.bottom)
            .flat_map(|y| {
                let at = ((y * w + area.left) * 4) as usize;
                screen.pixels[at..at + area.width() as usize * 4].to_vec()
            })
            .collect()
    }

    /// Paints `bgrx` at `area` of a `w`-wide BGRX picture (X kept 0, as the client shows).
    fn paint(truth: &mut [u8], w: u32, area: Rect, bgrx: &[u8]) {
        let row = area.width() as usize * 4;
        for (i, y) in (area.top..area.bottom).enumerate() {
            let at = ((y * w + area.left) * 4) as usize;
            truth[at..at + row].copy_from_slice(&bgrx[i * row..(i + 1) * row]);
        }
    }

    /// The client's picture after what `q` holds, which is then the truth.
    fn screen_truth(q: &SendQueue, screen: &mut Screen) -> Vec<u8> {
        replay(q, screen);
        screen.pixels.clone()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Whatever the worker pushes (images, fills, copy-bits either way), a client that
        /// applies the messages ends with exactly the picture the items describe, whatever
        /// the image compression (every codec, GLZ with its dictionary, zlib-wrapped GLZ).
        #[test]
        fn a_client_applying_the_messages_holds_the_worker_picture(
            compression in 0usize..7,
            (w, h) in (8u32..40, 8u32..40),
            ops in proptest::collection::vec(
                (0u8..4, 0u32..40, 0u32..40, 1u32..40, 1u32..40, 0u32..40, 0u32..40, 0u32..0xff_ffff),
                1..12,
            ),
        ) {
            let q = SendQueue::new(1 << 24);
            let compression: Compression = Compression::NAMES[compression].parse().unwrap();
            let mut c = ClientDisplay::with_encoding(false, 1 << 24, compression, WanCompression::Always, true);
            c.apply_init(&DisplayInit {
                glz_window_size: 1 << 16,
                // Room for a few pictures: hits and evictions both happen.
                pixmap_cache_size: 4096,
                ..DisplayInit::default()
            });
            let mut screen = Screen::new();
            let mut truth: Vec<u32> = vec![0; (w * h) as usize];
            c.apply(&q, DisplayItem::SurfaceCreate(SurfaceInfo { width: w, height: h }));
            c.apply(&q, image(Rect::of_size(w, h), |_, _| 0));
            for (kind, x, y, rw, rh, sx, sy, color) in ops {
                let (x, y) = (x % w, y % h);
                let area = rect(x, y, (x + rw).min(w), (y + rh).min(h));
                // Kind 3: one of three 32x32 pictures, so the cache hits.
                let (kind, area) = if kind == 3 && w >= 32 && h >= 32 {
                    let (x, y) = (x.min(w - 32), y.min(h - 32));
                    (3, rect(x, y, x + 32, y + 32))
                } else {
                    (kind.min(2), area)
                };
                let tile = color % 3;
                let item = match kind {
                    0 => DisplayItem::Draw(Draw { area, content: DrawContent::Fill(color) }),
                    3 => image(area, move |px, py| (px - area.left) * 5 + (py - area.top) * 9 + tile * 999),
                    1 => image(area, |px, py| if py % 3 == 0 { color } else { color ^ (px * 31 + py * 7) }),
                    _ => {
                        let (sx, sy) = (sx % (w - area.width() + 1), sy % (h - area.height() + 1));
                        DisplayItem::CopyBits { area, src_x: sx, src_y: sy }
                    }
                };
                // The worker's picture after the item.
                let before = truth.clone();
                for py in area.top..area.bottom {
                    for px in area.left..area.right {
                        let i = (py * w + px) as usize;
                        truth[i] = match (&item, kind) {
                            (_, 0) => color,
                            (_, 3) => ((px - area.left) * 5 + (py - area.top) * 9 + tile * 999) & 0xff_ffff,
                            (_, 1) if py % 3 == 0 => color,
                            (_, 1) => (color ^ (px * 31 + py * 7)) & 0xff_ffff,
                            (DisplayItem::CopyBits { src_x, src_y, .. }, _) => {
                                before[((src_y + py - area.top) * w + src_x + px - area.left) as usize]
                            }
                            _ => unreachable!(),
                        };
                    }
                }
                c.apply(&q, item);
            }
            replay(&q, &mut screen);
            proptest::prop_assert_eq!(screen.xrgb(), truth, "with {}", compression);
        }
    }
}
