//! Video streams (spec §8 "streams"): regions the guest redraws like video go to the client as
//! an MJPEG stream instead of one lossless image per frame.
//!
//! # Detection (spice-server's heuristics, per client)
//! spice-server (`video-stream.cpp`) watches the drawables it is about to send: a COPY whose
//! destination equals the previous one's, at least 96x96 pixels, within 200 ms of it, counts
//! one more frame; a frame whose picture is not "low graduality" (text, UI) counts as gradual.
//! After 20 frames, a fifth of them gradual, the region becomes a stream; with
//! `streaming-video=all` every frame counts as gradual. A stream takes further frames up to
//! 1 s apart, and stops after 1 s without one. We do the same on the push pipeline, per
//! client, on the images the worker publishes (KMS, fbdev and X.org alike: all arrive as
//! [`saffron_display::Draw`]s of rendered pixels), timed by when the client's encoder takes
//! them.
//!
//! # Pixel-exact once still
//! A stream's frames are lossy and the client shows them late (at their mm-time, see below).
//! So whatever else touches a stream's region (a drawing that is not its next frame, a
//! COPY_BITS reading or writing it) first ends the stream; and a stream that goes still
//! ends too. Ending is STREAM_DESTROY (the client drops frames it still holds) followed by
//! the last frame sent again through the lossless image path, so that what the client
//! keeps is exactly the guest's picture.
//!
//! # Slow links
//! spice-server measures a client's link once, at connect, and then follows only the
//! client's stream reports. We follow the link estimate (`link_estimate`) as it goes: while
//! it calls a client's link slow, a frame is skipped when more than [`MAX_BACKLOG`] of data
//! already waits for that client (our queue and its socket), and a stream's quality steps
//! down while its frames exceed the share of the link that affords [`TARGET_FPS`]. The
//! client gets fewer, smaller frames, each fresh, instead of a backlog that grows; a skipped
//! frame is still the stream's latest picture, which its end re-sends exactly.
//!
//! # Time stamps
//! Each frame carries the server's multimedia time (`Shared::mm_time`, the clock the main
//! channel's INIT and the playback channel use), taken when it is encoded. spice-gtk shows a
//! frame when its own session clock (the INIT's time, 400 ms behind ours) reaches the stamp,
//! and drops frames already late.

use std::sync::Arc;
use std::time::{Duration, Instant};

use saffron_codec::graduality::{self, Graduality};
use saffron_codec::{ImageRef, PixelFormat, mjpeg};
use saffron_display::{Pixels, Rect};
use tracing::{debug, info, warn};

use crate::conn::SendQueue;
use crate::wire::{Writer, msg};

/// QEMU's `streaming-video`: which regions become streams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StreamingVideo {
    /// Never stream.
    Off,
    /// Any region redrawn like video, whatever its content.
    All,
    /// Only regions whose frames look photographic often enough (spice-server's default).
    #[default]
    Filter,
}

impl StreamingVideo {
    pub const NAMES: [&'static str; 3] = ["off", "all", "filter"];
}

impl std::str::FromStr for StreamingVideo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(StreamingVideo::Off),
            "all" => Ok(StreamingVideo::All),
            "filter" => Ok(StreamingVideo::Filter),
            _ => Err(format!(
                "streaming-video must be off, all or filter, not {s:?}"
            )),
        }
    }
}

/// A codec our streams are encoded in (`SPICE_VIDEO_CODEC_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// Independent JPEG pictures, our own encoder (`mjpeg`); every client decodes it.
    Mjpeg,
    /// VP8 through libvpx (`vp8`); spice-gtk decodes it with GStreamer's vp8dec.
    Vp8,
}

impl VideoCodec {
    /// Its `SPICE_VIDEO_CODEC_TYPE`.
    pub fn wire(self) -> u8 {
        match self {
            VideoCodec::Mjpeg => 1,
            VideoCodec::Vp8 => 2,
        }
    }

    /// The codec of a `SPICE_VIDEO_CODEC_TYPE`, if we encode it.
    pub fn of_wire(t: u8) -> Option<VideoCodec> {
        match t {
            1 => Some(VideoCodec::Mjpeg),
            2 => Some(VideoCodec::Vp8),
            _ => None,
        }
    }

    /// Its display channel capability (`SPICE_DISPLAY_CAP_CODEC_*`).
    pub fn cap(self) -> u32 {
        match self {
            VideoCodec::Mjpeg => 9,
            VideoCodec::Vp8 => 10,
        }
    }
}

/// spice-server's `video-codecs` (QEMU's `-spice video-codec=`): the encoders streams may
/// use, best first, as `encoder:codec` pairs separated by `;` (`spice:mjpeg;gstreamer:vp8`),
/// or `auto`. spice-server names its
/// own MJPEG encoder `spice:mjpeg` and its GStreamer ones `gstreamer:CODEC`; we build MJPEG
/// and VP8 (libvpx, in process), and take `gstreamer:mjpeg` and `gstreamer:vp8` as those
/// codecs, so that a QEMU command line's list means here what it means there. A list naming
/// a codec we do not build (h264, vp9, h265) is refused, as QEMU refuses one its
/// spice-server cannot build ("Invalid video codecs"), rather than left to fall back
/// silently. `auto` is VP8 first, then MJPEG: for the same picture quality VP8 frames are a
/// fraction of MJPEG's (see `vp8`), and a client that does not decode VP8 still gets MJPEG.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoCodecs {
    text: String,
    order: Vec<VideoCodec>,
}

/// Encoder and codec names `video-codecs` knows (spice-server's).
const VIDEO_ENCODERS: [&str; 2] = ["spice", "gstreamer"];
const VIDEO_CODECS: [&str; 5] = ["mjpeg", "vp8", "vp9", "h264", "h265"];

impl Default for VideoCodecs {
    fn default() -> Self {
        VideoCodecs {
            text: "auto".to_string(),
            order: vec![VideoCodec::Vp8, VideoCodec::Mjpeg],
        }
    }
}

impl VideoCodecs {
    /// The codecs, best first, each once.
    pub fn order(&self) -> &[VideoCodec] {
        &self.order
    }
}

impl std::str::FromStr for VideoCodecs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(VideoCodecs::default());
        }
        let mut order = Vec::new();
        for entry in s.split(';').filter(|e| !e.is_empty()) {
            let Some((encoder, codec)) = entry.split_once(':') else {
                return Err(format!(
                    "video-codecs: {entry:?} is not encoder:codec (e.g. spice:mjpeg)"
                ));
            };
            if !VIDEO_ENCODERS.contains(&encoder) {
                return Err(format!(
                    "video-codecs: unknown encoder {encoder:?} (spice or gstreamer)"
                ));
            }
            if !VIDEO_CODECS.contains(&codec) {
                return Err(format!(
                    "video-codecs: unknown codec {codec:?} (mjpeg, vp8, vp9, h264 or h265)"
                ));
            }
            let c = match (encoder, codec) {
                (_, "mjpeg") => VideoCodec::Mjpeg,
                ("gstreamer", "vp8") => VideoCodec::Vp8,
                ("spice", _) => {
                    return Err(format!(
                        "video-codecs: the spice encoder does only mjpeg, not {codec} \
                         (gstreamer:{codec})"
                    ));
                }
                _ => {
                    return Err(format!(
                        "video-codecs: {encoder}:{codec} is not built in; this server \
                         encodes streams as mjpeg (spice:mjpeg) and vp8 (gstreamer:vp8)"
                    ));
                }
            };
            if !order.contains(&c) {
                order.push(c);
            }
        }
        if order.is_empty() {
            return Err("video-codecs: no encoder:codec given (e.g. spice:mjpeg)".to_string());
        }
        Ok(VideoCodecs {
            text: s.to_string(),
            order,
        })
    }
}

impl std::fmt::Display for VideoCodecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a PREFERRED_VIDEO_CODEC_TYPE was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PreferredCodecsError {
    #[error("PREFERRED_VIDEO_CODEC_TYPE of {0} bytes")]
    Empty(usize),
    #[error("PREFERRED_VIDEO_CODEC_TYPE says {said} codecs and holds {have}")]
    Count { said: usize, have: usize },
}

/// A PREFERRED_VIDEO_CODEC_TYPE body: a count, then that many codec types (u8 each), best
/// first. Unknown types are kept (they rank nothing of ours).
pub fn parse_preferred_codecs(body: &[u8]) -> Result<&[u8], PreferredCodecsError> {
    let (&n, list) = body
        .split_first()
        .ok_or(PreferredCodecsError::Empty(body.len()))?;
    if list.len() != usize::from(n) {
        return Err(PreferredCodecsError::Count {
            said: usize::from(n),
            have: list.len(),
        });
    }
    Ok(list)
}

/// The codecs a display client gets streams in, best first: the server's list (`ours`), in
/// the order of the client's PREFERRED_VIDEO_CODEC_TYPE where it gave one (codecs it did not
/// name follow, in our order), keeping only those it decodes: a client announcing
/// MULTI_CODEC says which (`caps`); an older one takes MJPEG, the only codec there was
/// (spice-server's rules).
pub fn client_codecs(
    ours: &[VideoCodec],
    multi_codec: bool,
    caps: impl Fn(u32) -> bool,
    preferred: &[u8],
) -> Vec<VideoCodec> {
    let decodes = |c: VideoCodec| {
        if multi_codec {
            caps(c.cap())
        } else {
            c == VideoCodec::Mjpeg
        }
    };
    let rank = |c: VideoCodec| {
        preferred
            .iter()
            .position(|&t| VideoCodec::of_wire(t) == Some(c))
            .unwrap_or(usize::MAX)
    };
    let mut list: Vec<VideoCodec> = ours.iter().copied().filter(|&c| decodes(c)).collect();
    // A stable sort: equal ranks (both unnamed) keep our order.
    list.sort_by_key(|&c| rank(c));
    list
}

impl std::fmt::Display for StreamingVideo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StreamingVideo::Off => "off",
            StreamingVideo::All => "all",
            StreamingVideo::Filter => "filter",
        })
    }
}

/// Smallest frame, in pixels, that may become a stream (spice-server's `RED_STREAM_MIN_SIZE`).
pub const MIN_STREAM_PIXELS: u64 = 96 * 96;
/// Frames before a region becomes a stream (`RED_STREAM_FRAMES_START_CONDITION`).
pub const START_FRAMES: u32 = 20;
/// Longest gap between two frames while detecting (`RED_STREAM_DETECTION_MAX_DELTA`).
pub const DETECTION_GAP: Duration = Duration::from_millis(200);
/// Longest gap between two frames of a stream, and how long a still stream lives
/// (`RED_STREAM_CONTINUOUS_MAX_DELTA`, `RED_STREAM_TIMEOUT`).
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(1);
/// Frames without a gradual one after which counting starts over
/// (`RED_STREAM_FRAMES_RESET_CONDITION`).
const RESET_FRAMES: u32 = 100;
/// Candidate regions remembered (spice-server's `NUM_TRACE_ITEMS`).
const TRACES: usize = 8;
/// Streams one client may have at once; a further candidate waits for one to end. spice-gtk
/// keeps its streams in an array indexed by id, so ids stay below this.
pub const MAX_STREAMS: usize = 8;
/// MJPEG quality of stream frames (spice-server's encoder starts around here on a LAN).
pub const DEFAULT_QUALITY: u8 = 70;
/// Frames per client report, and the longest time between two, asked for in
/// STREAM_ACTIVATE_REPORT (spice-server's `RED_STREAM_CLIENT_REPORT_WINDOW` and `_TIMEOUT`).
const REPORT_WINDOW: u32 = 5;
const REPORT_TIMEOUT_MS: u32 = 1000;
/// Quality steps taken on a client report: down when frames were dropped or late, up when a
/// whole report window arrived in time.
const QUALITY_DOWN: u8 = 10;
const QUALITY_UP: u8 = 5;
/// Share of dropped frames (in percent) above which quality goes down.
const DROP_PERCENT: u64 = 10;
/// `num_frames` of a report from a client that cannot decode the stream.
const REPORT_CANNOT_DECODE: u32 = u32::MAX;
/// Size of a STREAM_REPORT body.
pub const STREAM_REPORT_SIZE: usize = 32;
/// Longest the bytes waiting for a client (our queue and its socket's) may take on its
/// estimated link before a stream frame is skipped: the client then gets fewer frames, each
/// still fresh, instead of a backlog that grows (the bound is 1 s of data).
const MAX_BACKLOG: Duration = Duration::from_millis(300);
/// Share of the estimated link, in percent, the streams' frames aim to fill at
/// [`TARGET_FPS`]; the rest is for pings, cursor and lossless pictures.
const LINK_SHARE_PERCENT: u64 = 70;
/// Frame rate the link-driven quality aims to afford: below the guest's 25-30 frames/s, above
/// the 10/s a slow link must still deliver.
const TARGET_FPS: u64 = 15;
/// Frames averaged (exponentially) for a stream's frame size.
const SIZE_AVERAGE: u64 = 4;
/// Stream flag TOP_DOWN.
const STREAM_FLAG_TOP_DOWN: u8 = 1;
/// SpiceClip types.
const CLIP_NONE: u8 = 0;
const CLIP_RECTS: u8 = 1;
/// Drawings a stream may have over it, and rectangles its visible part may take, before
/// one more ends it instead of clipping it.
const MAX_OCCLUDERS: usize = 8;
const MAX_CLIP_RECTS: usize = 32;
/// VP8 bits per pixel of a stream's frames at [`DEFAULT_QUALITY`], in thousandths, at
/// [`VP8_RATE_FPS`]: the rate a stream's encoder aims at before reports and the link move it
/// (scaled by quality, as MJPEG's quality scales its frames).
const VP8_MILLIBITS_PER_PIXEL: u64 = 150;
const VP8_RATE_FPS: u64 = 25;
/// The lowest VP8 rate we aim at, kilobits per second.
const VP8_MIN_KBPS: u64 = 30;

/// What one client's streams sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// STREAM_CREATE messages.
    pub created: u64,
    /// STREAM_DESTROY messages.
    pub destroyed: u64,
    /// STREAM_DATA and STREAM_DATA_SIZED messages.
    pub frames: u64,
    /// Of which STREAM_DATA_SIZED.
    pub sized_frames: u64,
    /// Of which VP8 frames (the rest MJPEG), and of those key frames.
    pub vp8_frames: u64,
    pub vp8_key_frames: u64,
    /// STREAM_CLIP messages: a drawing over part of a stream clipped it (rather than
    /// ending it), or a frame painted over such a drawing and the clip was lifted.
    pub clips: u64,
    pub unclips: u64,
    /// Bytes of JPEG in them, and the raw pixel bytes they carried.
    pub frame_bytes: u64,
    pub pixel_bytes: u64,
    /// Last frames sent again losslessly as their stream ended.
    pub lossless_resends: u64,
    /// Client stream reports taken, and of them those that lowered or raised the quality.
    pub reports: u64,
    pub quality_down: u64,
    pub quality_up: u64,
    /// Reports refused: absurd values, or a stream (or stream generation) not live.
    pub reports_refused: u64,
    /// Frames not sent because the client's link had [`MAX_BACKLOG`] of data waiting.
    pub skipped_frames: u64,
    /// Quality steps down and up taken because the frames did not fit, or fitted easily,
    /// the client's estimated link.
    pub link_quality_down: u64,
    pub link_quality_up: u64,
}

impl StreamStats {
    pub(crate) fn add(&mut self, o: &StreamStats) {
        self.created += o.created;
        self.destroyed += o.destroyed;
        self.frames += o.frames;
        self.sized_frames += o.sized_frames;
        self.vp8_frames += o.vp8_frames;
        self.vp8_key_frames += o.vp8_key_frames;
        self.clips += o.clips;
        self.unclips += o.unclips;
        self.frame_bytes += o.frame_bytes;
        self.pixel_bytes += o.pixel_bytes;
        self.lossless_resends += o.lossless_resends;
        self.reports += o.reports;
        self.quality_down += o.quality_down;
        self.quality_up += o.quality_up;
        self.reports_refused += o.reports_refused;
        self.skipped_frames += o.skipped_frames;
        self.link_quality_down += o.link_quality_down;
        self.link_quality_up += o.link_quality_up;
    }
}

/// Every display client's streams, summed over the server's life (control socket, tests).
#[derive(Debug, Default)]
pub struct StreamTotals(std::sync::Mutex<StreamStats>);

impl StreamTotals {
    pub fn snapshot(&self) -> StreamStats {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, s: &StreamStats) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).add(s);
    }
}

/// What a client says of a stream's last frames (SPICE_MSGC_DISPLAY_STREAM_REPORT), sent
/// after our STREAM_ACTIVATE_REPORT to clients with the STREAM_REPORT cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamReport {
    pub stream_id: u32,
    /// The `unique_id` of our STREAM_ACTIVATE_REPORT: which generation of the id it is about.
    pub unique_id: u32,
    pub start_frame_mm_time: u32,
    pub end_frame_mm_time: u32,
    /// Frames the report covers; `u32::MAX` when the client cannot decode the stream.
    pub num_frames: u32,
    /// Of them, those dropped because they arrived too late.
    pub num_drops: u32,
    /// How early (positive) or late the last frame arrived, in ms, against its mm-time.
    pub last_frame_delay: i32,
    pub audio_delay: u32,
}

/// Why a STREAM_REPORT was not taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("STREAM_REPORT of {0} bytes (it has {STREAM_REPORT_SIZE})")]
    Size(usize),
    #[error("STREAM_REPORT with {drops} drops of {frames} frames")]
    Drops { drops: u32, frames: u32 },
}

impl StreamReport {
    /// Parses and checks a report body: exactly [`STREAM_REPORT_SIZE`] bytes, no more drops
    /// than frames (unless the client says it cannot decode).
    pub fn parse(body: &[u8]) -> Result<StreamReport, ReportError> {
        let b: &[u8; STREAM_REPORT_SIZE] =
            body.try_into().map_err(|_| ReportError::Size(body.len()))?;
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let r = StreamReport {
            stream_id: u(0),
            unique_id: u(4),
            start_frame_mm_time: u(8),
            end_frame_mm_time: u(12),
            num_frames: u(16),
            num_drops: u(20),
            last_frame_delay: u(24) as i32,
            audio_delay: u(28),
        };
        if r.num_frames != REPORT_CANNOT_DECODE && r.num_drops > r.num_frames {
            return Err(ReportError::Drops {
                drops: r.num_drops,
                frames: r.num_frames,
            });
        }
        Ok(r)
    }

    /// Whether the client says it cannot decode the stream at all.
    pub fn cannot_decode(&self) -> bool {
        self.num_frames == REPORT_CANNOT_DECODE
    }
}

/// The quality the next frames of a stream get after `report`, from `current`: lower when
/// more than a tenth of the frames were dropped or the last one came late, higher when a
/// whole window came in time and nothing was dropped; always within
/// [`mjpeg::MIN_QUALITY`]..=[`DEFAULT_QUALITY`] (above the default the frames grow much
/// faster than they gain).
pub fn next_quality(current: u8, report: &StreamReport) -> u8 {
    let frames = u64::from(report.num_frames);
    let drops = u64::from(report.num_drops);
    let current = current.clamp(mjpeg::MIN_QUALITY, DEFAULT_QUALITY);
    let q = if drops * 100 > frames * DROP_PERCENT || report.last_frame_delay < 0 {
        current.saturating_sub(QUALITY_DOWN)
    } else if drops == 0 && frames >= u64::from(REPORT_WINDOW) {
        current.saturating_add(QUALITY_UP)
    } else {
        current
    };
    q.clamp(mjpeg::MIN_QUALITY, DEFAULT_QUALITY)
}

/// Added to a late frame's lateness when the client's multimedia latency is raised, so that
/// the next frames are not just barely on time.
const LATENCY_MARGIN_MS: u32 = 100;

/// The multimedia latency (ms) a client needs after `report`, when it says the last frame
/// came late (a negative delay): the `current` latency plus the lateness plus a margin.
/// None when the frame was on time (or the report says the client cannot decode).
pub fn required_latency(report: &StreamReport, current: u32) -> Option<u32> {
    if report.cannot_decode() || report.last_frame_delay >= 0 {
        return None;
    }
    Some(
        current
            .saturating_add(report.last_frame_delay.unsigned_abs())
            .saturating_add(LATENCY_MARGIN_MS),
    )
}

/// A region seen redrawn, not (yet) a stream.
#[derive(Clone, Debug)]
struct Trace {
    dest: Rect,
    time: Instant,
    frames: u32,
    gradual: u32,
    last_gradual: u32,
    /// The candidate's latest picture, not sent because the client's slow link was backed
    /// up: sent (as any picture) before anything else touches its area or when the candidate
    /// goes still, or dropped when a later picture (or the stream it becomes) covers it.
    held: Option<Arc<Pixels>>,
}

impl Trace {
    /// Its held picture, to be sent now.
    fn take_held(&mut self) -> Option<Resend> {
        self.held.take().map(|pixels| Resend {
            area: self.dest,
            pixels,
            ends_stream: false,
        })
    }
}

/// A stream the client holds.
struct Active {
    id: u32,
    /// Its codec, and for VP8 its encoder (frames depend on the ones before).
    codec: VideoCodec,
    vp8: Option<crate::vp8::Encoder>,
    /// Which generation of `id` this is, for the client's reports.
    unique_id: u32,
    /// JPEG quality of its frames, moved by the client's reports and its link.
    quality: u8,
    /// Average size of its recent frames, in bytes (0 before the first).
    frame_bytes: u64,
    dest: Rect,
    last_time: Instant,
    /// The last frame and where it went: what is sent losslessly when the stream ends.
    last_area: Rect,
    last_frame: Arc<Pixels>,
    /// Drawings over part of it since its frames last covered them: the client clips the
    /// stream's frames to `dest` minus these, and shows the drawings exactly.
    occluded: Occlusion,
}

/// What lies over part of a stream: the rectangles (inside its destination) and their
/// pixels as the client shows them, to tell whether a later frame paints the same there.
#[derive(Default)]
struct Occlusion {
    rects: Vec<Rect>,
    /// Per pixel of the destination (row-major): Some(BGRX) where a drawing is over it.
    pixels: Vec<Option<[u8; 4]>>,
}

impl Occlusion {
    fn is_empty(&self) -> bool {
        self.rects.is_empty()
    }

    /// Whether the frame `px` at `area` paints, wherever a drawing lies, what the drawing
    /// showed (the X byte aside).
    fn agrees(&self, dest: Rect, area: Rect, px: &Pixels) -> bool {
        let Some(a) = area.intersect(&dest) else {
            return true;
        };
        let dw = dest.width() as usize;
        (a.top..a.bottom).all(|y| {
            (a.left..a.right).all(|x| {
                let d = (y - dest.top) as usize * dw + (x - dest.left) as usize;
                let f =
                    ((y - area.top) as usize * px.width as usize + (x - area.left) as usize) * 4;
                match (self.pixels.get(d), px.bgrx.get(f..f + 3)) {
                    (Some(Some(want)), Some(got)) => want[..3] == *got,
                    _ => true,
                }
            })
        })
    }
}

/// What a drawing over a stream shows: a colour, or pixels of its area.
#[derive(Clone, Copy)]
pub(crate) enum Drawing<'a> {
    Fill(u32),
    Image(&'a Pixels),
}

impl Drawing<'_> {
    /// The drawing's pixel at (x, y) of the surface, its area starting at `area`.
    fn at(&self, area: Rect, x: u32, y: u32) -> [u8; 4] {
        match self {
            Drawing::Fill(c) => c.to_le_bytes(),
            Drawing::Image(px) => {
                let i =
                    ((y - area.top) as usize * px.width as usize + (x - area.left) as usize) * 4;
                px.bgrx
                    .get(i..i + 4)
                    .and_then(|p| p.try_into().ok())
                    .unwrap_or([0; 4])
            }
        }
    }
}

/// `dest` minus `holes`, as rectangles that do not overlap.
fn subtract(dest: Rect, holes: &[Rect]) -> Vec<Rect> {
    let mut parts = vec![dest];
    for h in holes {
        let mut next = Vec::with_capacity(parts.len() + 3);
        for p in parts {
            let Some(i) = p.intersect(h) else {
                next.push(p);
                continue;
            };
            // Above, below, then left and right of the hole within its rows.
            next.extend(Rect::new(p.left, p.top, p.right, i.top));
            next.extend(Rect::new(p.left, i.bottom, p.right, p.bottom));
            next.extend(Rect::new(p.left, i.top, i.left, i.bottom));
            next.extend(Rect::new(i.right, i.top, p.right, i.bottom));
        }
        parts = next.into_iter().filter(|r| !r.is_empty()).collect();
    }
    parts
}

/// A STREAM_CLIP body: the stream's frames show only in `visible` (None: everywhere).
fn stream_clip(id: u32, visible: Option<&[Rect]>) -> Vec<u8> {
    let mut w = Writer::with_capacity(16 + visible.map_or(0, |v| v.len() * 16));
    w.u32(id);
    match visible {
        None => {
            w.u8(CLIP_NONE);
        }
        Some(v) => {
            w.u8(CLIP_RECTS).u32(v.len() as u32);
            for &r in v {
                rect(&mut w, r);
            }
        }
    }
    w.buf
}

/// What became of an image offered to [`Streams::image`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offered {
    /// Queued as a stream frame.
    Frame,
    /// A stream frame that overflowed the client's send queue (which then dropped its
    /// droppable messages): the caller resyncs.
    Overflow,
    /// Not a stream frame: the caller sends it through the image path.
    Image,
    /// A repeated picture of a candidate region, held back while the client's slow link is
    /// backed up (see [`Trace::held`]); the caller sends `resends` only.
    Held,
}

/// A picture to send losslessly, in order, before anything else: the last frame of a stream
/// that just ended.
pub(crate) struct Resend {
    pub area: Rect,
    pub pixels: Arc<Pixels>,
    /// It ends a stream (the client may still be decoding that stream's frames), rather
    /// than being a held picture of a candidate.
    pub ends_stream: bool,
}

/// One client's stream detector and streams.
pub(crate) struct Streams {
    mode: StreamingVideo,
    sized_cap: bool,
    report_cap: bool,
    /// The next stream's `unique_id`.
    next_unique: u32,
    /// A client that said it cannot decode our streams gets no more.
    disabled: bool,
    traces: Vec<Trace>,
    active: Vec<Active>,
    stats: StreamStats,
    /// Where the counts also go: the server's totals, the channel's for `client_info`.
    totals: Vec<Arc<StreamTotals>>,
    /// The client's estimated link, bits per second (None: not measured).
    link_bps: Option<u64>,
    /// The codecs new streams may use, best first (empty: no streams).
    codecs: Vec<VideoCodec>,
    /// The client clips stream frames (STREAM_CLIP): a drawing over part of a stream clips
    /// it instead of ending it. spice-html5 ignores clips.
    clip_cap: bool,
}

impl Streams {
    /// `sized_cap`: the client takes STREAM_DATA_SIZED (frames smaller than the stream);
    /// `report_cap`: it sends STREAM_REPORTs when asked.
    pub(crate) fn new(mode: StreamingVideo, sized_cap: bool, report_cap: bool) -> Streams {
        Streams {
            mode,
            sized_cap,
            report_cap,
            next_unique: 0,
            disabled: false,
            traces: Vec::with_capacity(TRACES),
            active: Vec::new(),
            stats: StreamStats::default(),
            totals: Vec::new(),
            link_bps: None,
            codecs: vec![VideoCodec::Mjpeg],
            clip_cap: true,
        }
    }

    /// Whether the client honours STREAM_CLIP (spice-html5 does not).
    pub(crate) fn set_clip_cap(&mut self, clip: bool) {
        self.clip_cap = clip;
    }

    /// A drawing (`what`) over `area` that is not a stream frame: a stream it covers only
    /// in part goes on, clipped around it (STREAM_CLIP), when the client clips; otherwise
    /// (or past [`MAX_OCCLUDERS`]) the stream ends, its last frame re-sent first. Held
    /// pictures under it are sent first.
    pub(crate) fn drawn_over(
        &mut self,
        queue: &SendQueue,
        area: Rect,
        what: Drawing<'_>,
        resends: &mut Vec<Resend>,
    ) {
        self.occlude(queue, area, what, resends);
        self.release_held(area, None, resends);
    }

    /// The streams `area` overlaps are clipped around `what` or end (see `drawn_over`).
    fn occlude(
        &mut self,
        queue: &SendQueue,
        area: Rect,
        what: Drawing<'_>,
        resends: &mut Vec<Resend>,
    ) {
        let mut i = 0;
        while i < self.active.len() {
            let s = &self.active[i];
            let Some(over) = s.dest.intersect(&area) else {
                i += 1;
                continue;
            };
            let visible =
                (self.clip_cap && over != s.dest && s.occluded.rects.len() < MAX_OCCLUDERS)
                    .then(|| {
                        let mut holes = s.occluded.rects.clone();
                        holes.push(over);
                        subtract(s.dest, &holes)
                    })
                    .filter(|v| !v.is_empty() && v.len() <= MAX_CLIP_RECTS);
            let Some(visible) = visible else {
                self.end(queue, i, resends);
                continue;
            };
            let s = &mut self.active[i];
            let dw = s.dest.width() as usize;
            if s.occluded.pixels.is_empty() {
                s.occluded.pixels = vec![None; dw * s.dest.height() as usize];
            }
            for y in over.top..over.bottom {
                for x in over.left..over.right {
                    let d = (y - s.dest.top) as usize * dw + (x - s.dest.left) as usize;
                    if let Some(p) = s.occluded.pixels.get_mut(d) {
                        *p = Some(what.at(area, x, y));
                    }
                }
            }
            s.occluded.rects.push(over);
            let _ = queue.push(
                msg::DISPLAY_STREAM_CLIP,
                stream_clip(s.id, Some(&visible)),
                false,
            );
            debug!(id = s.id, rects = visible.len(), "stream clipped");
            self.count(StreamStats {
                clips: 1,
                ..StreamStats::default()
            });
            i += 1;
        }
    }

    /// A frame `px` at `area` of stream `i` is the guest's picture there now: where it does
    /// not show what the drawings over the stream showed, they are gone (painted over), and
    /// the clip is lifted before the frame goes.
    fn frame_over_drawings(&mut self, queue: &SendQueue, i: usize, area: Rect, px: &Pixels) {
        let Some(s) = self.active.get_mut(i) else {
            return;
        };
        if s.occluded.is_empty() || s.occluded.agrees(s.dest, area, px) {
            return;
        }
        s.occluded = Occlusion::default();
        let _ = queue.push(msg::DISPLAY_STREAM_CLIP, stream_clip(s.id, None), false);
        debug!(
            id = s.id,
            "stream unclipped: a frame painted over its drawings"
        );
        self.count(StreamStats {
            unclips: 1,
            ..StreamStats::default()
        });
    }

    /// The codecs new streams may use, best first (see [`client_codecs`]); streams already
    /// made keep theirs. None at all: no more streams.
    pub(crate) fn set_codecs(&mut self, codecs: Vec<VideoCodec>) {
        if codecs != self.codecs {
            info!(?codecs, "stream codecs");
        }
        self.codecs = codecs;
    }

    /// The codec a new stream of `area` gets: the best that can encode a frame that size.
    fn codec_for(&self, area: Rect) -> Option<VideoCodec> {
        self.codecs.iter().copied().find(|c| {
            let max = match c {
                VideoCodec::Mjpeg => mjpeg::MAX_SIDE,
                VideoCodec::Vp8 => crate::vp8::MAX_SIDE,
            };
            area.width() <= max && area.height() <= max
        })
    }

    /// What the link estimate says the client's link delivers now, in bits per second:
    /// frames are skipped and their quality lowered to fit it (see [`Streams::image`]).
    pub(crate) fn set_link_rate(&mut self, bits_per_sec: Option<u64>) {
        self.link_bps = bits_per_sec.filter(|b| *b > 0);
    }

    /// Also counts into `totals` (the server's, the channel's).
    pub(crate) fn count_into(&mut self, totals: Arc<StreamTotals>) {
        self.totals.push(totals);
    }

    pub(crate) fn stats(&self) -> StreamStats {
        self.stats
    }

    /// A client's report on stream `r.stream_id`: its quality follows; a client that cannot
    /// decode it gets the stream ended (last frame lossless) and no more streams. Reports on
    /// streams that are not live, or on an older generation of the id, are refused.
    pub(crate) fn report(
        &mut self,
        queue: &SendQueue,
        r: &StreamReport,
        resends: &mut Vec<Resend>,
    ) {
        let Some(i) = self
            .active
            .iter()
            .position(|s| s.id == r.stream_id && s.unique_id == r.unique_id)
        else {
            self.count(StreamStats {
                reports_refused: 1,
                ..StreamStats::default()
            });
            return;
        };
        if r.cannot_decode() {
            info!(
                id = r.stream_id,
                "client cannot decode our stream; no more streams for it"
            );
            self.disabled = true;
            self.end(queue, i, resends);
            return;
        }
        let s = &mut self.active[i];
        let q = next_quality(s.quality, r);
        let (down, up) = (q < s.quality, q > s.quality);
        if down || up {
            debug!(
                id = s.id,
                from = s.quality,
                to = q,
                drops = r.num_drops,
                frames = r.num_frames,
                delay = r.last_frame_delay,
                "stream quality"
            );
        }
        s.quality = q;
        self.count(StreamStats {
            reports: 1,
            quality_down: u64::from(down),
            quality_up: u64::from(up),
            ..StreamStats::default()
        });
    }

    fn count(&mut self, d: StreamStats) {
        self.stats.add(&d);
        for t in &self.totals {
            t.add(&d);
        }
    }

    /// An image drawn at `area`: sent as a frame of a stream, or left to the caller, who
    /// first sends `resends` losslessly (the streams the image overlaps, ended). `mm_time`
    /// stamps the frame.
    pub(crate) fn image(
        &mut self,
        queue: &SendQueue,
        area: Rect,
        px: &Arc<Pixels>,
        now: Instant,
        mm_time: u32,
        resends: &mut Vec<Resend>,
    ) -> Offered {
        let candidate = self.mode != StreamingVideo::Off
            && !self.disabled
            && !self.codecs.is_empty()
            && area.area() >= MIN_STREAM_PIXELS;
        if candidate && let Some(i) = self.next_frame_of(area, now) {
            if self.link_backed_up(queue) {
                self.skip_frame(queue, i, area, px, now);
                return Offered::Frame;
            }
            match self.send_frame(queue, i, area, px, now, mm_time) {
                Some(true) => return Offered::Frame,
                Some(false) => return Offered::Overflow,
                None => {
                    // Could not encode: the stream ends and the picture goes lossless.
                    self.end(queue, i, resends);
                    return Offered::Image;
                }
            }
        }
        self.occlude(queue, area, Drawing::Image(px), resends);
        // Held pictures under this one go first, except its own candidate's: this picture
        // covers that one.
        self.release_held(area, Some(area).filter(|_| candidate), resends);
        if candidate {
            self.trace(queue, area, px, now, mm_time, resends)
        } else {
            Offered::Image
        }
    }

    /// Something other than a frame changes `area` (or reads it, for a COPY_BITS source):
    /// every stream it overlaps ends, its last frame to be re-sent first.
    /// Candidates' held pictures under it are sent first too.
    pub(crate) fn touched(&mut self, queue: &SendQueue, area: Rect, resends: &mut Vec<Resend>) {
        self.end_streams_over(queue, area, resends);
        self.release_held(area, None, resends);
    }

    /// Every stream `area` overlaps ends, its last frame to be re-sent first.
    fn end_streams_over(&mut self, queue: &SendQueue, area: Rect, resends: &mut Vec<Resend>) {
        while let Some(i) = self
            .active
            .iter()
            .position(|s| s.dest.intersect(&area).is_some())
        {
            self.end(queue, i, resends);
        }
    }

    /// The held pictures of candidates overlapping `area` (but the one at exactly `keep`)
    /// go to `resends`.
    fn release_held(&mut self, area: Rect, keep: Option<Rect>, resends: &mut Vec<Resend>) {
        for t in &mut self.traces {
            if Some(t.dest) != keep && t.dest.intersect(&area).is_some() {
                resends.extend(t.take_held());
            }
        }
    }

    /// Streams without a frame for [`STREAM_TIMEOUT`] end: the region went still. So do
    /// candidates past [`DETECTION_GAP`]: their held pictures go.
    pub(crate) fn expire(&mut self, queue: &SendQueue, now: Instant, resends: &mut Vec<Resend>) {
        for t in &mut self.traces {
            if now.saturating_duration_since(t.time) > DETECTION_GAP {
                resends.extend(t.take_held());
            }
        }
        while let Some(i) = self
            .active
            .iter()
            .position(|s| now.saturating_duration_since(s.last_time) > STREAM_TIMEOUT)
        {
            debug!(id = self.active[i].id, "stream went still");
            self.end(queue, i, resends);
        }
    }

    /// The surface goes (or is replaced): streams end without a re-send, the client drops
    /// them with the surface.
    pub(crate) fn clear(&mut self, queue: &SendQueue) {
        for s in std::mem::take(&mut self.active) {
            let _ = queue.push(
                msg::DISPLAY_STREAM_DESTROY,
                s.id.to_le_bytes().to_vec(),
                false,
            );
            self.count(StreamStats {
                destroyed: 1,
                ..StreamStats::default()
            });
        }
        self.traces.clear();
    }

    /// Whether the bytes waiting for the client (our queue and the socket's) would take more
    /// than [`MAX_BACKLOG`] on its estimated slow link. Never true while the link is
    /// unmeasured or fast.
    fn link_backed_up(&self, queue: &SendQueue) -> bool {
        let Some(bps) = self.link_bps else {
            return false;
        };
        let waiting =
            (queue.queued_bytes() as u64).saturating_add(queue.socket_backlog().unwrap_or(0));
        let allowed = bps / 8 * MAX_BACKLOG.as_millis() as u64 / 1000;
        waiting > allowed
    }

    /// Frame `px` of stream `i` is not sent: the stream goes on (and its end re-sends the
    /// latest picture, this one if no other follows).
    fn skip_frame(
        &mut self,
        queue: &SendQueue,
        i: usize,
        area: Rect,
        px: &Arc<Pixels>,
        now: Instant,
    ) {
        self.frame_over_drawings(queue, i, area, px);
        if let Some(s) = self.active.get_mut(i) {
            s.last_time = now;
            s.last_area = area;
            s.last_frame = px.clone();
        }
        self.count(StreamStats {
            skipped_frames: 1,
            ..StreamStats::default()
        });
    }

    /// Moves stream `i`'s quality so that its frames fit the client's link at
    /// [`TARGET_FPS`]: down a step when their average is over the budget, up a step (never
    /// above [`DEFAULT_QUALITY`]) when under 60 % of it.
    fn fit_link(&mut self, i: usize) {
        let Some(bps) = self.link_bps else {
            return;
        };
        let Some(s) = self.active.get_mut(i) else {
            return;
        };
        let budget = bps / 8 * LINK_SHARE_PERCENT / 100 / TARGET_FPS;
        let q = s.quality;
        if s.frame_bytes > budget {
            s.quality = q.saturating_sub(QUALITY_DOWN).max(mjpeg::MIN_QUALITY);
        } else if s.frame_bytes * 10 < budget * 6 {
            s.quality = q.saturating_add(QUALITY_UP).min(DEFAULT_QUALITY);
        }
        let (down, up) = (s.quality < q, s.quality > q);
        if down || up {
            debug!(
                id = s.id,
                from = q,
                to = s.quality,
                frame_bytes = s.frame_bytes,
                budget,
                "stream quality for the link"
            );
            self.count(StreamStats {
                link_quality_down: u64::from(down),
                link_quality_up: u64::from(up),
                ..StreamStats::default()
            });
        }
    }

    /// The rate a VP8 stream of `area` aims at, kilobits per second, at `quality`: its share
    /// of [`VP8_MILLIBITS_PER_PIXEL`] (the quality scales it as it scales MJPEG frames), and
    /// never more than the streams' share of the client's estimated link.
    fn vp8_kbps(&self, area: Rect, quality: u8) -> u32 {
        let full = area.area() * VP8_RATE_FPS * VP8_MILLIBITS_PER_PIXEL / 1000 / 1000;
        let mut kbps = full * u64::from(quality) / u64::from(DEFAULT_QUALITY);
        if let Some(bps) = self.link_bps {
            kbps = kbps.min(bps * LINK_SHARE_PERCENT / 100 / 1000);
        }
        kbps.clamp(VP8_MIN_KBPS, u64::from(u32::MAX)) as u32
    }

    /// The active stream `area` is the next frame of: its destination, or (clients taking
    /// sized frames) inside it and at least half of it, within [`STREAM_TIMEOUT`].
    fn next_frame_of(&self, area: Rect, now: Instant) -> Option<usize> {
        self.active.iter().position(|s| {
            // A VP8 encoder takes frames of its own size only.
            let fits = s.dest == area
                || (self.sized_cap
                    && s.codec == VideoCodec::Mjpeg
                    && s.dest.contains(&area)
                    && area.area().saturating_mul(2) >= s.dest.area());
            fits && now.saturating_duration_since(s.last_time) <= STREAM_TIMEOUT
        })
    }

    fn end(&mut self, queue: &SendQueue, i: usize, resends: &mut Vec<Resend>) {
        let s = self.active.swap_remove(i);
        let _ = queue.push(
            msg::DISPLAY_STREAM_DESTROY,
            s.id.to_le_bytes().to_vec(),
            false,
        );
        if s.occluded.is_empty() {
            resends.push(Resend {
                area: s.last_area,
                pixels: s.last_frame,
                ends_stream: true,
            });
        } else {
            // The drawings over it are exact on the client, and newer than the last frame
            // there: only the rest of the last frame goes again.
            for r in subtract(s.last_area, &s.occluded.rects) {
                resends.push(Resend {
                    area: r,
                    pixels: Arc::new(crop(&s.last_frame, s.last_area, r)),
                    ends_stream: true,
                });
            }
        }
        self.count(StreamStats {
            destroyed: 1,
            lossless_resends: 1,
            ..StreamStats::default()
        });
        debug!(id = s.id, "stream ended; its last frame goes lossless");
    }

    /// Counts `area` as a frame of a candidate region; makes it a stream (sending this frame
    /// as its first) once it qualifies.
    fn trace(
        &mut self,
        queue: &SendQueue,
        area: Rect,
        px: &Arc<Pixels>,
        now: Instant,
        mm_time: u32,
        resends: &mut Vec<Resend>,
    ) -> Offered {
        // The candidate at this place, if any, goes on (or, past the gap, starts again); its
        // held picture is covered by this one either way.
        let prev = self
            .traces
            .iter()
            .position(|t| t.dest == area)
            .map(|i| self.traces.swap_remove(i))
            .filter(|t| now.saturating_duration_since(t.time) <= DETECTION_GAP);
        let gradual = match self.mode {
            StreamingVideo::Filter => is_gradual(px),
            _ => true,
        };
        let mut t = prev.unwrap_or(Trace {
            dest: area,
            time: now,
            frames: 0,
            gradual: 0,
            last_gradual: 0,
            held: None,
        });
        // This picture covers the candidate's held one, whatever becomes of it.
        t.held = None;
        t.time = now;
        t.frames = t.frames.saturating_add(1);
        if gradual {
            if t.frames.saturating_sub(t.last_gradual) > RESET_FRAMES {
                t.frames = 1;
                t.gradual = 1;
            } else {
                t.gradual = t.gradual.saturating_add(1);
            }
            t.last_gradual = t.frames;
        }
        let codec = self.codec_for(area);
        let start = t.frames >= START_FRAMES
            && codec.is_some()
            && u64::from(t.gradual) * 5 >= u64::from(t.frames)
            && self.active.len() < MAX_STREAMS;
        if !start {
            if self.traces.len() >= TRACES {
                // The oldest candidate makes room (its held picture goes now).
                if let Some(oldest) = (0..self.traces.len()).min_by_key(|&i| self.traces[i].time) {
                    resends.extend(self.traces.swap_remove(oldest).take_held());
                }
            }
            // A repeated picture while the slow link is backed up waits: the next one may
            // cover it, and the detection frames before a stream forms would otherwise pile
            // up seconds of data for the client.
            let offered = if t.frames > 1 && self.link_backed_up(queue) {
                t.held = Some(px.clone());
                Offered::Held
            } else {
                Offered::Image
            };
            self.traces.push(t);
            return offered;
        }
        let id = (0..MAX_STREAMS as u32)
            .find(|id| self.active.iter().all(|s| s.id != *id))
            .unwrap_or(0);
        let (codec, vp8) = match codec {
            Some(VideoCodec::Vp8) => {
                let kbps = self.vp8_kbps(area, DEFAULT_QUALITY);
                match crate::vp8::Encoder::new(area.width(), area.height(), kbps, 25) {
                    Ok(e) => (VideoCodec::Vp8, Some(e)),
                    Err(e) => {
                        warn!(%e, "no VP8 encoder: the stream is MJPEG");
                        (VideoCodec::Mjpeg, None)
                    }
                }
            }
            _ => (VideoCodec::Mjpeg, None),
        };
        let mut w = Writer::with_capacity(64);
        w.u32(0) // surface
            .u32(id)
            .u8(STREAM_FLAG_TOP_DOWN)
            .u8(codec.wire())
            .u64(u64::from(mm_time))
            .u32(area.width())
            .u32(area.height())
            .u32(area.width())
            .u32(area.height());
        rect(&mut w, area);
        w.u8(0); // clip NONE
        if queue
            .push(msg::DISPLAY_STREAM_CREATE, w.buf, false)
            .is_err()
        {
            return Offered::Image;
        }
        let unique_id = self.next_unique;
        self.next_unique = self.next_unique.wrapping_add(1);
        if self.report_cap {
            let mut w = Writer::with_capacity(16);
            w.u32(id)
                .u32(unique_id)
                .u32(REPORT_WINDOW)
                .u32(REPORT_TIMEOUT_MS);
            let _ = queue.push(msg::DISPLAY_STREAM_ACTIVATE_REPORT, w.buf, false);
        }
        info!(
            id,
            left = area.left,
            top = area.top,
            width = area.width(),
            height = area.height(),
            frames = t.frames,
            gradual = t.gradual,
            ?codec,
            "stream created"
        );
        self.active.push(Active {
            id,
            codec,
            vp8,
            unique_id,
            quality: DEFAULT_QUALITY,
            frame_bytes: 0,
            dest: area,
            last_time: now,
            last_area: area,
            last_frame: px.clone(),
            occluded: Occlusion::default(),
        });
        self.count(StreamStats {
            created: 1,
            ..StreamStats::default()
        });
        let i = self.active.len() - 1;
        match self.send_frame(queue, i, area, px, now, mm_time) {
            Some(true) => Offered::Frame,
            Some(false) => Offered::Overflow,
            None => {
                // The picture itself goes through the image path; nothing to re-send.
                let s = self.active.swap_remove(i);
                let _ = queue.push(
                    msg::DISPLAY_STREAM_DESTROY,
                    s.id.to_le_bytes().to_vec(),
                    false,
                );
                self.count(StreamStats {
                    destroyed: 1,
                    ..StreamStats::default()
                });
                Offered::Image
            }
        }
    }

    /// Encodes `px` and queues it as a frame of stream `i`: `None` when it cannot be encoded,
    /// `Some(false)` when the client's queue overflowed.
    fn send_frame(
        &mut self,
        queue: &SendQueue,
        i: usize,
        area: Rect,
        px: &Arc<Pixels>,
        now: Instant,
        mm_time: u32,
    ) -> Option<bool> {
        let img = ImageRef::packed(px.width, px.height, PixelFormat::Rgb32, &px.bgrx).ok()?;
        self.frame_over_drawings(queue, i, area, px);
        let quality = self.active.get(i)?.quality;
        let kbps = self.vp8_kbps(area, quality);
        let s = self.active.get_mut(i)?;
        let (jpeg, key) = match &mut s.vp8 {
            Some(enc) => {
                let r = enc.set_kbps(kbps).and_then(|()| enc.encode(&img));
                r.map(|(f, key)| (f, Some(key))).map_err(|e| e.to_string())
            }
            None => mjpeg::encode(&img, quality)
                .map(|j| (j, None))
                .map_err(|e| e.to_string()),
        }
        .map_err(|e| warn!(%e, "stream frame not encoded"))
        .ok()?;
        let size = u32::try_from(jpeg.len()).ok()?;
        let s = self.active.get_mut(i)?;
        let sized = area != s.dest;
        let mut w = Writer::with_capacity(jpeg.len() + 40);
        w.u32(s.id).u32(mm_time);
        let ty = if sized {
            w.u32(area.width()).u32(area.height());
            rect(&mut w, area);
            msg::DISPLAY_STREAM_DATA_SIZED
        } else {
            msg::DISPLAY_STREAM_DATA
        };
        w.u32(size).bytes(&jpeg);
        s.last_time = now;
        s.last_area = area;
        s.last_frame = px.clone();
        let size = u64::from(size);
        s.frame_bytes = if s.frame_bytes == 0 {
            size
        } else {
            (s.frame_bytes * (SIZE_AVERAGE - 1) + size) / SIZE_AVERAGE
        };
        let queued = queue.push(ty, w.buf, true).is_ok();
        if !queued && let Some(enc) = &mut s.vp8 {
            // The client will miss frames this one's successors depend on.
            enc.force_key();
        }
        self.fit_link(i);
        self.count(StreamStats {
            frames: 1,
            sized_frames: u64::from(sized),
            vp8_frames: u64::from(key.is_some()),
            vp8_key_frames: u64::from(key == Some(true)),
            frame_bytes: jpeg.len() as u64,
            pixel_bytes: px.bgrx.len() as u64,
            ..StreamStats::default()
        });
        Some(queued)
    }
}

/// Whether a frame counts as gradual (photographic) for `streaming-video=filter`: anything
/// but low graduality, as spice-server counts.
fn is_gradual(px: &Pixels) -> bool {
    ImageRef::packed(px.width, px.height, PixelFormat::Rgb32, &px.bgrx)
        .is_ok_and(|img| graduality::estimate(&img) != Graduality::Low)
}

/// The part `r` (inside `area`) of `px`, the pixels of `area`.
fn crop(px: &Pixels, area: Rect, r: Rect) -> Pixels {
    let row = px.width as usize * 4;
    let (x0, w) = ((r.left - area.left) as usize * 4, r.width() as usize * 4);
    let bgrx = (r.top..r.bottom)
        .flat_map(|y| {
            let at = (y - area.top) as usize * row + x0;
            px.bgrx.get(at..at + w).unwrap_or(&[]).iter().copied()
        })
        .collect();
    Pixels {
        width: r.width(),
        height: r.height(),
        bgrx,
        guest_id: None,
    }
}

/// A SpiceRect: top, left, bottom, right.
fn rect(w: &mut Writer, r: Rect) {
    w.i32(r.top as i32)
        .i32(r.left as i32)
        .i32(r.bottom as i32)
        .i32(r.right as i32);
}

#[cfg(test)]
mod tests {
    use saffron_codec::corpus;
    use saffron_display::{DisplayItem, Draw, DrawContent, SurfaceInfo};

    use super::*;
    use crate::client::Screen;
    use crate::display::ClientDisplay;

    const W: u32 = 320;
    const H: u32 = 240;

    /// A client of a `W x H` surface showing a photo, streams detected as `mode`.
    fn client(mode: StreamingVideo, sized: bool) -> (ClientDisplay, Arc<SendQueue>, Screen) {
        let q = SendQueue::new(1 << 24);
        let mut c = ClientDisplay::new(false, 1 << 24);
        c.set_streaming(mode, sized, true, Instant::now());
        let mut screen = Screen::new();
        c.apply(
            &q,
            DisplayItem::SurfaceCreate(SurfaceInfo {
                width: W,
                height: H,
            }),
        );
        c.apply(
            &q,
            DisplayItem::image(Rect::of_size(W, H), corpus::ui(W, H), None),
        );
        replay(&q, &mut screen);
        (c, q, screen)
    }

    fn replay(q: &SendQueue, screen: &mut Screen) -> Vec<u16> {
        let mut sink = std::io::sink();
        q.take_all()
            .into_iter()
            .map(|(ty, body)| {
                screen.handle(&mut sink, ty, &body).unwrap();
                ty
            })
            .collect()
    }

    /// What was queued reaches the client, then the region stays still after `t` until its
    /// stream ends (its last frame re-sent), and that reaches the client too.
    fn go_still(c: &mut ClientDisplay, q: &SendQueue, screen: &mut Screen, t: Instant) {
        replay(q, screen);
        assert!(c.expire_streams(q, t + STREAM_TIMEOUT + Duration::from_millis(1)));
        replay(q, screen);
    }

    /// Frame `i` of a video at `area`: a window of a larger photograph that pans.
    fn frame(area: Rect, i: u32, big: &[u8]) -> Vec<u8> {
        let (bw, off) = (2 * W, i * 3);
        (0..area.height())
            .flat_map(|y| {
                let at = (((y + off) * bw + off) * 4) as usize;
                big[at..at + area.width() as usize * 4].to_vec()
            })
            .collect()
    }

    /// `area` of the screen, as BGRX.
    fn crop(screen: &Screen, area: Rect) -> Vec<u8> {
        (area.top..area.bottom)
            .flat_map(|y| {
                let at = ((y * W + area.left) * 4) as usize;
                screen.pixels[at..at + area.width() as usize * 4].to_vec()
            })
            .collect()
    }

    fn decode_bgrx(jpeg: &[u8]) -> Vec<u8> {
        let mut d = jpeg_decoder::Decoder::new(jpeg);
        let rgb = d.decode().unwrap();
        rgb.chunks_exact(3)
            .flat_map(|p| [p[2], p[1], p[0], 0])
            .collect()
    }

    /// Plays `n` frames at `area` every `gap`, from `t0`; returns the time of the last.
    fn play(
        c: &mut ClientDisplay,
        q: &SendQueue,
        area: Rect,
        frames: std::ops::Range<u32>,
        t0: Instant,
        gap: Duration,
        big: &[u8],
    ) -> Instant {
        let mut t = t0;
        for i in frames {
            t = t0 + gap * i;
            assert!(c.apply_at(q, DisplayItem::image(area, frame(area, i, big), None), t));
        }
        t
    }

    /// 20 same-place photographic frames 40 ms apart make a stream; its frames are MJPEG
    /// within 30 dB of the guest's; once the region is still for a second the stream ends
    /// and the client's picture is exact again.
    #[test]
    fn a_video_region_becomes_a_stream_and_ends_exact_when_still() {
        let big = corpus::photo(2 * W, 2 * H);
        let (mut c, q, mut screen) = client(StreamingVideo::Filter, false);
        let area = Rect::new(40, 30, 200, 150).unwrap();
        let t0 = Instant::now();
        let gap = Duration::from_millis(40);
        play(&mut c, &q, area, 0..19, t0, gap, &big);
        let types = replay(&q, &mut screen);
        assert!(
            !types.contains(&msg::DISPLAY_STREAM_CREATE),
            "19 frames are not a video"
        );
        assert_eq!(c.stream_stats(), StreamStats::default());
        let t = play(&mut c, &q, area, 19..40, t0, gap, &big);
        let types = replay(&q, &mut screen);
        assert_eq!(types[0], msg::DISPLAY_STREAM_CREATE);
        assert_eq!(types[1], msg::DISPLAY_STREAM_ACTIVATE_REPORT);
        assert!(types[2..].iter().all(|t| *t == msg::DISPLAY_STREAM_DATA));
        let s = c.stream_stats();
        assert_eq!((s.created, s.frames, s.destroyed), (1, 21, 0));
        assert!(
            s.frame_bytes * 5 < s.pixel_bytes,
            "MJPEG frames are small: {s:?}"
        );
        let (dest, _, jpeg) = screen.last_frames.get(&0).unwrap().clone();
        assert_eq!(dest, [40, 30, 200, 150]);
        let last = frame(area, 39, &big);
        let p = mjpeg::psnr(&last, &decode_bgrx(&jpeg));
        assert!(p >= 30.0, "last stream frame at {p:.1} dB");
        // Not yet still: nothing happens.
        assert!(c.expire_streams(&q, t + Duration::from_millis(500)));
        assert!(replay(&q, &mut screen).is_empty());
        assert!(c.expire_streams(&q, t + STREAM_TIMEOUT + Duration::from_millis(1)));
        let types = replay(&q, &mut screen);
        assert_eq!(types[0], msg::DISPLAY_STREAM_DESTROY);
        assert_eq!(types[1], msg::DISPLAY_DRAW_COPY);
        assert!(screen.streams.is_empty());
        assert!(crop(&screen, area) == last, "the still picture is exact");
        assert_eq!(c.stream_stats().lossless_resends, 1);
    }

    /// A late frame in a report raises the latency by its lateness and a margin.
    #[test]
    fn late_frames_need_more_latency() {
        let mut r = StreamReport::parse(&[0u8; STREAM_REPORT_SIZE]).unwrap();
        r.num_frames = 5;
        r.last_frame_delay = 20;
        assert_eq!(required_latency(&r, 400), None, "on time");
        r.last_frame_delay = -150;
        assert_eq!(required_latency(&r, 400), Some(650));
        r.last_frame_delay = i32::MIN;
        assert_eq!(required_latency(&r, 400), Some(400 + (1u32 << 31) + 100));
        r.num_frames = u32::MAX;
        assert_eq!(required_latency(&r, 400), None, "cannot decode");
    }

    /// A rectangle minus holes: pieces that do not overlap, cover exactly the rest.
    #[test]
    fn subtracting_rectangles_leaves_exactly_the_rest() {
        let dest = Rect::new(10, 10, 60, 40).unwrap();
        let holes = [
            Rect::new(50, 0, 80, 20).unwrap(),
            Rect::new(20, 20, 30, 30).unwrap(),
            Rect::new(0, 35, 15, 90).unwrap(),
        ];
        let parts = subtract(dest, &holes);
        for y in 0..100 {
            for x in 0..100 {
                let p = Rect::new(x, y, x + 1, y + 1).unwrap();
                let want = dest.contains(&p) && holes.iter().all(|h| h.intersect(&p).is_none());
                let n = parts.iter().filter(|r| r.contains(&p)).count();
                assert_eq!(n, usize::from(want), "({x}, {y})");
            }
        }
        assert!(subtract(dest, &[dest]).is_empty());
        assert_eq!(subtract(dest, &[]), [dest]);
    }

    /// `video-codecs` takes QEMU's syntax and refuses, with a reason, what is not built in.
    #[test]
    fn video_codecs_take_qemu_syntax_and_refuse_what_is_not_built() {
        use VideoCodec::{Mjpeg, Vp8};
        for (ok, order) in [
            ("auto", &[Vp8, Mjpeg][..]),
            ("spice:mjpeg", &[Mjpeg]),
            ("spice:mjpeg;", &[Mjpeg]),
            ("spice:mjpeg;spice:mjpeg", &[Mjpeg]),
            ("gstreamer:vp8", &[Vp8]),
            ("spice:mjpeg;gstreamer:vp8", &[Mjpeg, Vp8]),
            ("gstreamer:vp8;gstreamer:mjpeg;spice:mjpeg", &[Vp8, Mjpeg]),
        ] {
            let v: VideoCodecs = ok.parse().unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(v.order(), order, "{ok}");
            assert_eq!(v.to_string(), ok);
        }
        for (bad, why) in [
            ("", "no encoder"),
            (";", "no encoder"),
            ("mjpeg", "not encoder:codec"),
            ("ffmpeg:mjpeg", "unknown encoder"),
            ("spice:av1", "unknown codec"),
            ("gstreamer:h264", "not built in"),
            ("spice:mjpeg;gstreamer:vp9", "not built in"),
            ("spice:vp8", "does only mjpeg"),
        ] {
            let e = bad.parse::<VideoCodecs>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(VideoCodecs::default().to_string(), "auto");
    }

    /// A client's codecs: ours it decodes, in its preferred order where it gave one.
    #[test]
    fn a_client_gets_the_codecs_it_decodes_in_the_order_it_prefers() {
        use VideoCodec::{Mjpeg, Vp8};
        let ours = [Vp8, Mjpeg];
        let caps = |list: &'static [u32]| move |c: u32| list.contains(&c);
        // An old client (no MULTI_CODEC): MJPEG, the only codec there was.
        assert_eq!(client_codecs(&ours, false, caps(&[]), &[]), [Mjpeg]);
        // spice-gtk with GStreamer's VP8 decoder: ours, in our order.
        assert_eq!(
            client_codecs(&ours, true, caps(&[9, 10]), &[]),
            [Vp8, Mjpeg]
        );
        // ... unless it prefers MJPEG (SPICE_VIDEO_CODEC_TYPE 1); unknown types rank nothing.
        assert_eq!(
            client_codecs(&ours, true, caps(&[9, 10]), &[1, 3]),
            [Mjpeg, Vp8]
        );
        assert_eq!(
            client_codecs(&ours, true, caps(&[9, 10]), &[3, 2]),
            [Vp8, Mjpeg]
        );
        // Only what it decodes, and only what we were told to use.
        assert_eq!(client_codecs(&ours, true, caps(&[9]), &[2]), [Mjpeg]);
        assert!(client_codecs(&ours, true, caps(&[11]), &[]).is_empty());
        assert_eq!(client_codecs(&[Mjpeg], true, caps(&[9, 10]), &[2]), [Mjpeg]);
    }

    /// With VP8 first, a video region becomes a VP8 stream: a key frame, then frames that
    /// need the ones before; decoded in order they stay within 30 dB of the guest's frames,
    /// each far smaller than MJPEG's; when the region goes still the stream ends and the
    /// client's picture is exact.
    #[test]
    fn a_vp8_stream_decodes_close_and_ends_exact() {
        let big = corpus::photo(2 * W, 2 * H);
        let (mut c, q, mut screen) = client(StreamingVideo::Filter, false);
        c.set_stream_codecs(vec![VideoCodec::Vp8, VideoCodec::Mjpeg]);
        let area = Rect::new(40, 30, 200, 150).unwrap();
        let t0 = Instant::now();
        let mut decoder = crate::vp8::Decoder::new().unwrap();
        let mut worst = f64::INFINITY;
        let mut decoded = 0;
        let mut t = t0;
        for i in 0..60 {
            t = play(
                &mut c,
                &q,
                area,
                i..i + 1,
                t0,
                Duration::from_millis(40),
                &big,
            );
            for (ty, body) in q.take_all() {
                screen.handle(&mut std::io::sink(), ty, &body).unwrap();
                if ty == msg::DISPLAY_STREAM_DATA {
                    let (_, got) = body.split_at(12);
                    let (dw, dh, px) = decoder.decode(got).unwrap();
                    assert_eq!((dw, dh), (area.width(), area.height()));
                    worst = worst.min(mjpeg::psnr(&frame(area, i, &big), &px));
                    decoded += 1;
                }
            }
        }
        assert_eq!(screen.stream_codecs.get(&0), Some(&2), "a VP8 stream");
        let s = c.stream_stats();
        assert_eq!(
            (s.created, s.vp8_frames, s.vp8_key_frames),
            (1, 41, 1),
            "{s:?}"
        );
        assert_eq!(decoded, 41);
        assert!(worst >= 30.0, "worst VP8 frame at {worst:.1} dB");
        let jpeg = mjpeg::encode(
            &ImageRef::packed(
                area.width(),
                area.height(),
                PixelFormat::Rgb32,
                &frame(area, 59, &big),
            )
            .unwrap(),
            DEFAULT_QUALITY,
        )
        .unwrap();
        assert!(
            s.frame_bytes / s.frames * 2 < jpeg.len() as u64,
            "VP8 {} bytes a frame, MJPEG {}",
            s.frame_bytes / s.frames,
            jpeg.len()
        );
        go_still(&mut c, &q, &mut screen, t);
        assert!(screen.streams.is_empty());
        assert!(crop(&screen, area) == frame(area, 59, &big), "exact");
    }

    /// On a slow link (100 kbit/s), frames larger than the link affords at [`TARGET_FPS`]
    /// lower the stream's quality step by step, and the frames shrink.
    #[test]
    fn a_slow_link_lowers_the_stream_quality_until_frames_fit() {
        let big = corpus::photo(2 * W, 2 * H);
        let (mut c, q, mut screen) = client(StreamingVideo::Filter, false);
        c.set_link((true, Some(100_000)));
        let area = Rect::new(40, 30, 200, 150).unwrap();
        let (t0, gap) = (Instant::now(), Duration::from_millis(40));
        let mut sizes = Vec::new();
        for i in 0..40 {
            play(&mut c, &q, area, i..i + 1, t0, gap, &big);
            replay(&q, &mut screen);
            if let Some((_, _, jpeg)) = screen.last_frames.get(&0) {
                sizes.push(jpeg.len());
            }
        }
        let s = c.stream_stats();
        assert_eq!(s.created, 1, "{s:?}");
        assert!(s.link_quality_down >= 2, "{s:?}");
        assert_eq!(s.skipped_frames, 0, "nothing waited: {s:?}");
        let (first, last) = (sizes[0], sizes[sizes.len() - 1]);
        assert!(
            last * 4 < first * 3,
            "frames shrank: {first} -> {last} bytes"
        );
    }

    /// On a slow link (500 kbit/s), frames are skipped while more than [`MAX_BACKLOG`] of data
    /// waits for the client, so what waits stays near that bound; the stream's end re-sends
    /// the latest picture (a skipped one) exactly. A fast link skips nothing.
    #[test]
    fn a_backed_up_slow_link_skips_frames_and_ends_exact() {
        let big = corpus::photo(2 * W, 2 * H);
        let area = Rect::new(40, 30, 200, 150).unwrap();
        let (t0, gap) = (Instant::now(), Duration::from_millis(40));
        let (mut fast, fq, _) = client(StreamingVideo::Filter, false);
        fast.set_link((false, Some(2_000_000)));
        play(&mut fast, &fq, area, 0..60, t0, gap, &big);
        let s = fast.stream_stats();
        assert_eq!((s.skipped_frames, s.frames), (0, 41), "fast: {s:?}");

        let (mut c, q, mut screen) = client(StreamingVideo::Filter, false);
        c.set_link((true, Some(500_000)));
        play(&mut c, &q, area, 0..20, t0, gap, &big);
        replay(&q, &mut screen);
        // From the stream's second frame on, nobody reads the queue: it is the backlog.
        let t = play(&mut c, &q, area, 20..60, t0, gap, &big);
        let s = c.stream_stats();
        assert!(s.skipped_frames > 0, "{s:?}");
        assert_eq!(s.frames + s.skipped_frames, 41, "{s:?}");
        let allowed = 500_000 / 8 * MAX_BACKLOG.as_millis() as usize / 1000;
        let one_frame = (area.area() * 4) as usize;
        assert!(
            q.queued_bytes() <= allowed + one_frame,
            "{} bytes wait, against {allowed} allowed",
            q.queued_bytes()
        );
        go_still(&mut c, &q, &mut screen, t);
        assert!(
            crop(&screen, area) == frame(area, 59, &big),
            "the still picture is the last frame, exactly"
        );
    }

    /// Before a stream forms on a backed-up slow link, the repeated pictures of a candidate
    /// region wait instead of piling up (each is a whole lossless picture); a drawing over the
    /// region sends the held one first; the stream still forms at the 20th picture; and a
    /// candidate that goes still gets its held picture sent. The client ends exact.
    #[test]
    fn a_backed_up_slow_link_holds_candidate_pictures() {
        let big = corpus::photo(2 * W, 2 * H);
        let area = Rect::new(40, 30, 200, 150).unwrap();
        let one_frame = (area.area() * 4) as usize;
        let (t0, gap) = (Instant::now(), Duration::from_millis(40));
        let (mut c, q, mut screen) = client(StreamingVideo::Filter, false);
        c.set_link((true, Some(500_000)));
        // Nobody reads the queue: the first picture (raw, 77 kB) backs the link up.
        play(&mut c, &q, area, 0..10, t0, gap, &big);
        assert!(
            q.queued_bytes() < one_frame + 1024,
            "{} bytes wait: the held pictures were sent",
            q.queued_bytes()
        );
        assert_eq!(c.stream_stats(), StreamStats::default());
        replay(&q, &mut screen);
        assert!(crop(&screen, area) == frame(area, 0, &big));
        // A fill over part of the region: the held picture (frame 9) goes first.
        let fill = Rect::new(100, 100, 200, 140).unwrap();
        c.apply_at(
            &q,
            DisplayItem::Draw(Draw {
                area: fill,
                content: DrawContent::Fill(0x123456),
            }),
            t0 + gap * 10,
        );
        assert_eq!(
            replay(&q, &mut screen),
            [msg::DISPLAY_DRAW_COPY, msg::DISPLAY_DRAW_FILL]
        );
        let mut want = frame(area, 9, &big);
        for y in 70..110 {
            for x in 60..160 {
                let i = ((y * 160 + x) * 4) as usize;
                want[i..i + 4].copy_from_slice(&[0x56, 0x34, 0x12, 0]);
            }
        }
        assert!(crop(&screen, area) == want, "held picture, then the fill");
        // The candidate goes on and becomes a stream at its 20th picture, backed up or not.
        let t = play(&mut c, &q, area, 10..30, t0, gap, &big);
        let s = c.stream_stats();
        assert_eq!(s.created, 1, "{s:?}");
        assert!(
            q.queued_bytes() < 2 * one_frame + 4096,
            "{} bytes",
            q.queued_bytes()
        );
        go_still(&mut c, &q, &mut screen, t);
        assert!(
            crop(&screen, area) == frame(area, 29, &big),
            "exact at the end"
        );

        // A candidate that goes still before it is a stream: its held picture is sent.
        let (mut c, q, mut screen) = client(StreamingVideo::Filter, false);
        c.set_link((true, Some(500_000)));
        let t = play(&mut c, &q, area, 0..5, t0, gap, &big);
        replay(&q, &mut screen);
        assert!(crop(&screen, area) == frame(area, 0, &big));
        assert!(c.expire_streams(&q, t + DETECTION_GAP / 2));
        assert!(q.take_all().is_empty(), "not still yet");
        assert!(c.expire_streams(&q, t + DETECTION_GAP + Duration::from_millis(1)));
        replay(&q, &mut screen);
        assert!(
            crop(&screen, area) == frame(area, 4, &big),
            "the held picture"
        );
    }

    /// Frames more than 200 ms apart, frames too small, and text-like frames under `filter`
    /// are not video; `all` takes the text, `off` nothing.
    #[test]
    fn what_is_not_video_stays_lossless() {
        let big = corpus::photo(2 * W, 2 * H);
        let area = Rect::new(0, 0, 160, 120).unwrap();
        let t0 = Instant::now();
        let (mut c, q, _) = client(StreamingVideo::Filter, false);
        play(
            &mut c,
            &q,
            area,
            0..40,
            t0,
            Duration::from_millis(250),
            &big,
        );
        let small = Rect::new(0, 0, 95, 96).unwrap();
        play(
            &mut c,
            &q,
            small,
            0..40,
            t0,
            Duration::from_millis(40),
            &big,
        );
        assert_eq!(c.stream_stats().created, 0);
        let text = corpus::text(160, 120);
        let texts = |c: &mut ClientDisplay, q: &SendQueue| {
            for i in 0..40u32 {
                // Text that scrolls a row per frame: changes every time, never gradual.
                let mut px = text.clone();
                px.rotate_left((i * 160 * 4) as usize);
                c.apply_at(
                    q,
                    DisplayItem::image(area, px, None),
                    t0 + Duration::from_millis(40) * i,
                );
            }
        };
        texts(&mut c, &q);
        assert_eq!(c.stream_stats().created, 0, "filter: text is no video");
        let (mut c, q, _) = client(StreamingVideo::All, false);
        texts(&mut c, &q);
        assert_eq!(c.stream_stats().created, 1, "all: any redrawn region is");
        let (mut c, q, _) = client(StreamingVideo::Off, false);
        play(&mut c, &q, area, 0..40, t0, Duration::from_millis(40), &big);
        assert_eq!(c.stream_stats().created, 0);
    }

    /// A drawing over part of a stream, or a copy reading it, ends the stream first: the
    /// last frame goes lossless before it, so the client's picture is exact. A client with
    /// SIZED_STREAM gets a smaller frame inside the stream as STREAM_DATA_SIZED.
    #[test]
    fn drawings_clip_a_stream_and_its_end_is_exact_and_smaller_frames_are_sized() {
        let big = corpus::photo(2 * W, 2 * H);
        let area = Rect::new(0, 0, 160, 120).unwrap();
        let t0 = Instant::now();
        let gap = Duration::from_millis(40);
        let (mut c, q, mut screen) = client(StreamingVideo::Filter, true);
        let t = play(&mut c, &q, area, 0..25, t0, gap, &big);
        let inner = Rect::new(0, 0, 160, 100).unwrap();
        c.apply_at(
            &q,
            DisplayItem::image(inner, frame(inner, 25, &big), None),
            t + gap,
        );
        let types = replay(&q, &mut screen);
        assert_eq!(types.last(), Some(&msg::DISPLAY_STREAM_DATA_SIZED));
        assert_eq!(screen.last_frames.get(&0).unwrap().0, [0, 0, 160, 100]);
        // A fill over its corner: the stream is clipped around it and goes on.
        let fill = Rect::new(100, 100, 200, 140).unwrap();
        let fill_item = || {
            DisplayItem::Draw(Draw {
                area: fill,
                content: DrawContent::Fill(0x123456),
            })
        };
        c.apply_at(&q, fill_item(), t + gap * 2);
        let types = replay(&q, &mut screen);
        assert_eq!(
            types,
            [msg::DISPLAY_STREAM_CLIP, msg::DISPLAY_DRAW_FILL],
            "clipped, not ended"
        );
        // A frame that paints over the fill (the fill is gone): the clip is lifted first.
        c.apply_at(
            &q,
            DisplayItem::image(area, frame(area, 26, &big), None),
            t + gap * 3,
        );
        let types = replay(&q, &mut screen);
        assert_eq!(types, [msg::DISPLAY_STREAM_CLIP, msg::DISPLAY_STREAM_DATA]);
        // The fill again, then a frame that leaves it (a window over the video): still
        // clipped; then the stream goes still and only the rest of its last frame is sent
        // again, the fill staying exact.
        c.apply_at(&q, fill_item(), t + gap * 4);
        let mut last = frame(area, 27, &big);
        for y in 100..120 {
            for x in 100..160 {
                let i = ((y * 160 + x) * 4) as usize;
                last[i..i + 4].copy_from_slice(&[0x56, 0x34, 0x12, 0]);
            }
        }
        c.apply_at(
            &q,
            DisplayItem::image(area, last.clone(), None),
            t + gap * 5,
        );
        let types = replay(&q, &mut screen);
        assert_eq!(
            types,
            [
                msg::DISPLAY_STREAM_CLIP,
                msg::DISPLAY_DRAW_FILL,
                msg::DISPLAY_STREAM_DATA
            ]
        );
        let st = c.stream_stats();
        assert_eq!(
            (st.created, st.clips, st.unclips, st.destroyed),
            (1, 2, 1, 0)
        );
        go_still(&mut c, &q, &mut screen, t + gap * 5);
        assert!(screen.streams.is_empty());
        assert!(crop(&screen, area) == last, "exact, fill included");
        // A drawing over all of a stream ends it.
        let t = play(&mut c, &q, area, 0..25, t + gap * 40, gap, &big);
        replay(&q, &mut screen);
        c.apply_at(
            &q,
            DisplayItem::Draw(Draw {
                area: Rect::new(0, 0, 200, 140).unwrap(),
                content: DrawContent::Fill(0x654321),
            }),
            t + gap,
        );
        let types = replay(&q, &mut screen);
        assert_eq!(types[0], msg::DISPLAY_STREAM_DESTROY);
        assert_eq!(types.last(), Some(&msg::DISPLAY_DRAW_FILL));
        let t = t + gap;
        // A new stream, then a scroll reading it: ended first as well.
        let t = play(&mut c, &q, area, 0..25, t + gap * 3, gap, &big);
        replay(&q, &mut screen);
        assert_eq!(c.stream_stats().created, 3);
        c.apply_at(
            &q,
            DisplayItem::CopyBits {
                area: Rect::new(200, 0, 300, 50).unwrap(),
                src_x: 10,
                src_y: 10,
            },
            t + gap,
        );
        let types = replay(&q, &mut screen);
        assert_eq!(types[0], msg::DISPLAY_STREAM_DESTROY);
        assert_eq!(types.last(), Some(&msg::DISPLAY_COPY_BITS));
    }

    /// spice-html5 paints a stream frame when its Image has loaded, even after the stream
    /// ended: the area of a stream that ends gets painted again from the surface later,
    /// twice; other clients' ended streams do not.
    #[test]
    fn an_ended_stream_is_painted_again_for_spice_html5_only() {
        let big = corpus::photo(2 * W, 2 * H);
        let area = Rect::new(0, 0, 160, 120).unwrap();
        let fill = Rect::new(100, 100, 200, 140).unwrap();
        let gap = Duration::from_millis(40);
        for html5 in [true, false] {
            let (c, q, _) = client(StreamingVideo::Filter, false);
            let mut c = if html5 { c.for_html5() } else { c };
            let t0 = Instant::now();
            let t = play(&mut c, &q, area, 0..25, t0, gap, &big);
            assert_eq!(
                c.due_repaint(t + Duration::from_secs(10)),
                None,
                "still live"
            );
            let end = t + gap;
            c.apply_at(
                &q,
                DisplayItem::Draw(Draw {
                    area: fill,
                    content: DrawContent::Fill(0x123456),
                }),
                end,
            );
            // html5 ignores STREAM_CLIP: a drawing over part of its stream ends it; another
            // client's stream is clipped around the drawing and goes on.
            let st = c.stream_stats();
            assert_eq!(
                (st.lossless_resends, st.clips),
                if html5 { (1, 0) } else { (0, 1) },
                "{html5}"
            );
            assert_eq!(c.due_repaint(end + Duration::from_millis(100)), None);
            if html5 {
                let first = c.due_repaint(end + Duration::from_millis(600));
                assert_eq!(first, Some(area), "the first repaint");
                assert_eq!(c.due_repaint(end + Duration::from_millis(700)), None);
                assert_eq!(c.due_repaint(end + Duration::from_secs(3)), Some(area));
            }
            assert_eq!(
                c.due_repaint(end + Duration::from_secs(10)),
                None,
                "{html5}"
            );
        }
    }

    fn report_bytes(id: u32, unique: u32, frames: u32, drops: u32, delay: i32) -> Vec<u8> {
        let mut w = Writer::default();
        w.u32(id)
            .u32(unique)
            .u32(1000)
            .u32(1200)
            .u32(frames)
            .u32(drops)
            .i32(delay)
            .u32(0);
        w.buf
    }

    #[test]
    fn reports_are_checked_and_move_quality_within_bounds() {
        assert_eq!(StreamReport::parse(&[0; 31]), Err(ReportError::Size(31)));
        assert_eq!(StreamReport::parse(&[0; 33]), Err(ReportError::Size(33)));
        assert_eq!(
            StreamReport::parse(&report_bytes(0, 0, 5, 6, 0)),
            Err(ReportError::Drops {
                drops: 6,
                frames: 5
            })
        );
        let cannot = StreamReport::parse(&report_bytes(0, 0, u32::MAX, u32::MAX, 0)).unwrap();
        assert!(cannot.cannot_decode());
        let r = |frames, drops, delay| {
            StreamReport::parse(&report_bytes(0, 0, frames, drops, delay)).unwrap()
        };
        assert_eq!(next_quality(70, &r(5, 0, 100)), 70, "at the top already");
        assert_eq!(
            next_quality(50, &r(5, 0, 100)),
            55,
            "a whole window in time"
        );
        assert_eq!(
            next_quality(50, &r(3, 0, 100)),
            50,
            "too few frames to tell"
        );
        assert_eq!(next_quality(50, &r(5, 1, 100)), 40, "a fifth dropped");
        assert_eq!(next_quality(50, &r(5, 0, -3)), 40, "late");
        assert_eq!(next_quality(25, &r(10, 10, -9999)), mjpeg::MIN_QUALITY);
        assert_eq!(next_quality(255, &r(0, 0, i32::MAX)), DEFAULT_QUALITY);
    }

    /// A client's reports of dropped frames lower its stream's quality (its frames shrink);
    /// reports on a stream that is not live are refused; a client that cannot decode gets
    /// the stream ended, its last frame lossless, and no new stream.
    #[test]
    fn client_reports_steer_a_stream() {
        let big = corpus::photo(2 * W, 2 * H);
        let area = Rect::new(0, 0, 160, 120).unwrap();
        let t0 = Instant::now();
        let gap = Duration::from_millis(40);
        let (mut c, q, mut screen) = client(StreamingVideo::Filter, false);
        play(&mut c, &q, area, 0..25, t0, gap, &big);
        replay(&q, &mut screen);
        let before = c.stream_stats();
        let report =
            |frames, drops| StreamReport::parse(&report_bytes(0, 0, frames, drops, 10)).unwrap();
        let stale = StreamReport::parse(&report_bytes(0, 7, 5, 5, 10)).unwrap();
        assert!(c.stream_reports(&q, vec![report(5, 3), report(5, 3), report(5, 3), stale]));
        let s = c.stream_stats();
        assert_eq!((s.reports, s.quality_down, s.reports_refused), (3, 3, 1));
        play(&mut c, &q, area, 25..30, t0, gap, &big);
        replay(&q, &mut screen);
        let s2 = c.stream_stats();
        let per_frame = |s: &StreamStats, b: &StreamStats| {
            (s.frame_bytes - b.frame_bytes) / (s.frames - b.frames)
        };
        assert!(
            per_frame(&s2, &s) < per_frame(&before, &StreamStats::default()),
            "quality 40 frames are smaller than quality 70 ones"
        );
        let cannot = StreamReport::parse(&report_bytes(0, 0, u32::MAX, 0, 0)).unwrap();
        assert!(c.stream_reports(&q, vec![cannot]));
        let types = replay(&q, &mut screen);
        assert_eq!(types, [msg::DISPLAY_STREAM_DESTROY, msg::DISPLAY_DRAW_COPY]);
        play(&mut c, &q, area, 30..60, t0, gap, &big);
        assert_eq!(c.stream_stats().created, 1, "no new stream for that client");
    }
}
