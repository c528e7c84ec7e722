//! `kms`: drive the display through the KMS API the way a simple compositor does.
//!
//! Opens the DRM device as master, picks the first connected connector and a mode, scans out an
//! XRGB8888 dumb buffer with `SETCRTC`, then animates it (`--motion`):
//!   * `bars` (default): even frames redraw everything (the pattern with a vertical bar that
//!     moves right) and send one full-frame `DIRTYFB` clip, odd frames repaint one to four small
//!     squares and send only their clips;
//!   * `tiles`: two 128x128 photographs are pasted in turn into the cells of a grid, one per
//!     frame, each sent as its own clip: the same pictures again and again at new places (icons,
//!     a file manager's thumbnails), which a server's image cache should send only once;
//!   * `video`: a 320x240 window in the middle of the screen shows a new picture every frame,
//!     a view panning across a larger photograph, sent as one clip per frame: what a video
//!     player gives a display server (pace it with `--fps`);
//!   * `photo`: a 320x240 photograph ([`crate::image::photo`]) moves over the pattern by 8
//!     pixels right and down per frame, wrapping around at the edges; each frame restores the
//!     background where the photo was, draws it at its new place and sends those two clips (what
//!     a window dragged across a desktop, or a video overlay, gives a display server).
//!
//! The digest printed at the end is read back from the dumb buffer, so it is what the device
//! was asked to show.
//!
//! The CRTC stays ours until the process closes the device: the kernel then restores the fbdev
//! console (`drm_lastclose`). That is why `--sync` hands over to the host from inside this
//! command, while the picture is still on screen. In the meantime fbcon cannot reach the screen:
//! its damage goes to the fbdev framebuffer, which is no longer on the plane (qxl ignores dirty
//! calls for a buffer that is not the primary surface); `fbcon-off --kd graphics` additionally
//! stops it from drawing at all.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::args::Options;
use crate::drm::{
    CONNECTOR_CONNECTED, Card, Connector, DRM_CAP_DUMB_BUFFER, DrmClipRect, DrmModeModeinfo, Dumb,
    Resources,
};
use crate::error::{Error, Result};
use crate::image::{FrameHasher, HashFormat, Image, Pattern, PixelFormat, Rect};
use crate::map::SharedMapping;

/// Upper bound for `--frames`, so a typo cannot keep the (slow, emulated) guest busy for hours.
const MAX_FRAMES: u64 = 100_000;

/// Size of the photograph `--motion photo` moves (smaller if the framebuffer is).
const PHOTO_SIZE: (usize, usize) = (320, 240);
/// Pixels the photograph moves right and down per frame.
const PHOTO_STEP: usize = 8;
/// Noise seed of the photograph.
const PHOTO_SEED: u32 = 1;

/// Size of the pop-up `--overlay-at` puts over the video window.
const OVERLAY_SIZE: (usize, usize) = (140, 90);
/// Default size of the window `--motion video` plays in (smaller if the framebuffer is).
const VIDEO_SIZE: (u64, u64) = (320, 240);
/// Pixels the view pans right and down per video frame, across a photograph twice the
/// window's size.
const VIDEO_PAN: (usize, usize) = (5, 3);
/// Noise seed of the video's photograph.
const VIDEO_SEED: u32 = 4;

/// Side of the square photographs `--motion tiles` pastes (smaller if the framebuffer is).
const TILE_SIDE: usize = 128;
/// Distance between two grid cells of `--motion tiles`, both ways.
const TILE_PITCH: usize = 160;
/// Noise seeds of the two tiles.
const TILE_SEEDS: [u32; 2] = [2, 3];

/// How the timed frames change the picture (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Motion {
    Bars,
    Photo,
    Tiles,
    Video,
}

impl Motion {
    fn parse(s: &str) -> Result<Self> {
        match s {
            "bars" => Ok(Motion::Bars),
            "photo" => Ok(Motion::Photo),
            "tiles" => Ok(Motion::Tiles),
            "video" => Ok(Motion::Video),
            _ => Err(Error::Usage(format!(
                "--motion must be bars, photo, tiles or video, not {s:?}"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Motion::Bars => "bars",
            Motion::Photo => "photo",
            Motion::Tiles => "tiles",
            Motion::Video => "video",
        }
    }
}

/// The cell tile frame `i` pastes into, in a `w x h` picture with `side`-sized tiles: frames
/// go through both tiles at a cell, then on to the next cell, row by row, wrapping around.
fn tile_rect(i: usize, w: usize, h: usize, side: usize) -> Rect {
    let cols = (w.saturating_sub(side) / TILE_PITCH + 1).max(1);
    let rows = (h.saturating_sub(side) / TILE_PITCH + 1).max(1);
    let cell = (i / TILE_SEEDS.len()) % (cols * rows);
    Rect {
        x: (cell % cols) * TILE_PITCH,
        y: (cell / cols) * TILE_PITCH,
        w: side,
        h: side,
    }
}

/// Draws tile frame `i` into `img` (tile `i % 2` into its cell) and returns the cell.
fn draw_tile_frame(i: usize, tiles: &[Image], img: &mut Image) -> Vec<Rect> {
    let tile = &tiles[i % tiles.len()];
    let cell = tile_rect(i, img.width, img.height, tile.width);
    let whole = Rect {
        x: 0,
        y: 0,
        w: tile.width,
        h: tile.height,
    };
    img.paste(tile, whole, cell.x, cell.y);
    vec![cell]
}

/// Where the video window of a `w x h` picture is: `vw x vh`, centred.
fn video_rect(w: usize, h: usize, vw: usize, vh: usize) -> Rect {
    Rect {
        x: (w - vw) / 2,
        y: (h - vh) / 2,
        w: vw,
        h: vh,
    }
}

/// A pop-up over the video window's top-right corner (a menu over a playing video): partly
/// over the window, partly beside it; bars of two greys in a dark frame.
fn overlay_rect(window: Rect, w: usize, h: usize) -> Rect {
    let (ow, oh) = (OVERLAY_SIZE.0.min(w), OVERLAY_SIZE.1.min(h));
    Rect {
        x: (window.x + window.w).saturating_sub(ow / 2).min(w - ow),
        y: window.y.saturating_sub(oh / 3).min(h - oh),
        w: ow,
        h: oh,
    }
}

/// The pop-up's picture, `r`-sized.
fn overlay_image(r: Rect) -> Image {
    let mut rgb = Vec::with_capacity(r.w * r.h * 3);
    for y in 0..r.h {
        for x in 0..r.w {
            let edge = x < 2 || y < 2 || x + 2 >= r.w || y + 2 >= r.h;
            let v: u8 = if edge {
                40
            } else if (y / 12) % 2 == 0 {
                230
            } else {
                205
            };
            rgb.extend_from_slice(&[v, v, v.saturating_add(10)]);
        }
    }
    Image {
        width: r.w,
        height: r.h,
        rgb,
    }
}

/// Draws video frame `i` into `img`: the view of `film` (at least the window's size) panned
/// `i` steps, each axis bouncing back and forth inside it; returns the window.
fn draw_video_frame(i: usize, film: &Image, window: Rect, img: &mut Image) -> Vec<Rect> {
    let bounce = |step: usize, room: usize| {
        if room == 0 {
            return 0;
        }
        let p = (i * step) % (2 * room);
        if p <= room { p } else { 2 * room - p }
    };
    let view = Rect {
        x: bounce(VIDEO_PAN.0, film.width - window.w),
        y: bounce(VIDEO_PAN.1, film.height - window.h),
        w: window.w,
        h: window.h,
    };
    img.paste(film, view, window.x, window.y);
    vec![window]
}

/// The buffer on screen and everything that must be released, in reverse order, when done.
struct Scanout<'a> {
    card: &'a Card,
    dumb: Dumb,
    fb_id: Option<u32>,
    map: Option<SharedMapping>,
}

impl Scanout<'_> {
    fn map(&self) -> &SharedMapping {
        // Set right after creation and only taken in `drop`.
        self.map.as_ref().expect("scanout mapping")
    }
}

impl Drop for Scanout<'_> {
    fn drop(&mut self) {
        // Errors cannot be reported from here; closing the device releases everything anyway.
        drop(self.map.take());
        if let Some(fb) = self.fb_id.take() {
            let _ = self.card.rm_fb(fb);
        }
        let _ = self.card.destroy_dumb(self.dumb.handle);
    }
}

/// Picks the mode: `want` (width, height) if given, else the preferred one, else the first.
/// Among several modes of the requested size the preferred one wins, then the first listed.
fn pick_mode(modes: &[DrmModeModeinfo], want: Option<(u32, u32)>) -> Option<DrmModeModeinfo> {
    let fits = |m: &&DrmModeModeinfo| match want {
        Some((w, h)) => u32::from(m.hdisplay) == w && u32::from(m.vdisplay) == h,
        None => true,
    };
    modes
        .iter()
        .filter(fits)
        .find(|m| m.preferred())
        .or_else(|| modes.iter().find(fits))
        .copied()
}

/// The CRTC for `conn`: the one its current encoder drives, else the first its encoders can.
pub(crate) fn pick_crtc(card: &Card, res: &Resources, conn: &Connector) -> Result<u32> {
    if conn.encoder_id != 0 {
        let enc = card.encoder(conn.encoder_id)?;
        if enc.crtc_id != 0 {
            return Ok(enc.crtc_id);
        }
    }
    for &id in &conn.encoders {
        let enc = card.encoder(id)?;
        if let Some(&crtc) = res
            .crtcs
            .iter()
            .enumerate()
            .find(|(i, _)| *i < 32 && enc.possible_crtcs & (1 << i) != 0)
            .map(|(_, c)| c)
        {
            return Ok(crtc);
        }
    }
    Err(Error::Check(format!(
        "connector {} has no encoder that can drive a CRTC",
        conn.name()
    )))
}

/// A deterministic colour for square `j` of frame `i` (and the bar, with `j` = 0).
fn frame_color(i: usize, j: usize) -> [u8; 3] {
    [
        (i * 37 + j * 91) as u8,
        (i * 59 + 128) as u8 ^ (j as u8),
        (255 - (i * 13) % 256) as u8,
    ]
}

/// The squares an odd frame `i` repaints in a `w x h` picture: one to four, spread over the
/// screen and drifting from frame to frame.
fn partial_rects(i: usize, w: usize, h: usize) -> Vec<Rect> {
    let side = (w.min(h) / 12).max(1);
    let n = 1 + (i / 2) % 4;
    (0..n)
        .map(|j| Rect {
            x: (j * w / 4 + i * 17) % (w - side + 1),
            y: (j * h / 4 + i * 11) % (h - side + 1),
            w: side,
            h: side,
        })
        .collect()
}

/// The bar of even frame `i`: `w / 16` wide, full height, moving `w / 32` per full frame and
/// wrapping around.
fn bar_rect(i: usize, w: usize, h: usize) -> Rect {
    let bar = (w / 16).max(1);
    let step = (w / 32).max(1);
    Rect {
        x: (i / 2 * step) % (w - bar + 1),
        y: 0,
        w: bar,
        h,
    }
}

/// Draws frame `i` into `img`, which holds frame `i - 1` (or `base` for the first), and returns
/// the rects that changed: the whole picture for even frames, the squares for odd ones.
fn draw_frame(i: usize, base: &Image, img: &mut Image) -> Vec<Rect> {
    let (w, h) = (img.width, img.height);
    if i.is_multiple_of(2) {
        img.rgb.copy_from_slice(&base.rgb);
        img.fill_rect(bar_rect(i, w, h), frame_color(i, 0));
        vec![Rect { x: 0, y: 0, w, h }]
    } else {
        let rects = partial_rects(i, w, h);
        for (j, r) in rects.iter().enumerate() {
            img.fill_rect(*r, frame_color(i, j + 1));
        }
        rects
    }
}

/// Where the `pw x ph` photo's top-left corner is after `i` steps in a `w x h` picture
/// (`pw <= w`, `ph <= h`): [`PHOTO_STEP`] right and down per step, each axis wrapping around on
/// its own once the photo would stick out.
fn photo_pos(i: usize, w: usize, h: usize, pw: usize, ph: usize) -> (usize, usize) {
    (
        (i * PHOTO_STEP) % (w - pw + 1),
        (i * PHOTO_STEP) % (h - ph + 1),
    )
}

/// The rects photo frame `i` changes: where the photo was (after `i` steps), then where it goes
/// (after `i + 1`). They overlap except when an axis wraps around.
fn photo_rects(i: usize, w: usize, h: usize, pw: usize, ph: usize) -> [Rect; 2] {
    let at = |(x, y)| Rect { x, y, w: pw, h: ph };
    [
        at(photo_pos(i, w, h, pw, ph)),
        at(photo_pos(i + 1, w, h, pw, ph)),
    ]
}

/// Draws photo frame `i` into `img`, which shows `base` with `photo` at its place after `i`
/// steps: restores the background under the old place, draws the photo at the new one, and
/// returns both rects.
fn draw_photo_frame(i: usize, base: &Image, photo: &Image, img: &mut Image) -> Vec<Rect> {
    let (pw, ph) = (photo.width, photo.height);
    let [old, new] = photo_rects(i, img.width, img.height, pw, ph);
    img.paste(base, old, old.x, old.y);
    img.paste(
        photo,
        Rect {
            x: 0,
            y: 0,
            w: pw,
            h: ph,
        },
        new.x,
        new.y,
    );
    vec![old, new]
}

fn clip(r: Rect) -> DrmClipRect {
    // Callers keep rects inside the framebuffer, whose sides (at most 8192) fit in u16.
    DrmClipRect {
        x1: r.x as u16,
        y1: r.y as u16,
        x2: (r.x + r.w) as u16,
        y2: (r.y + r.h) as u16,
    }
}

/// Copies `rect` of `img` into the buffer as XRGB8888.
pub(crate) fn upload(
    map: &SharedMapping,
    pitch: u32,
    img: &Image,
    rect: Rect,
    row: &mut Vec<u8>,
) -> Result<()> {
    for y in rect.y..rect.y + rect.h {
        img.encode_span(y, rect.x, rect.w, PixelFormat::XRGB8888, row);
        map.write_at(y as u64 * u64::from(pitch) + rect.x as u64 * 4, row)?;
    }
    Ok(())
}

/// `kms [--card /dev/dri/card0] [--width W --height H] [--fb-width FW --fb-height FH]
/// [--x X --y Y] [--frames 60] [--fps 0] [--pattern hgrad] [--motion bars|photo|tiles|video]
/// [--video-width 320 --video-height 240] [--sync ID] [--sync-timeout-ms 60000] [--phase NAME] [--cursor-sync PREFIX] [--interval-ms 0]`.
///
/// The framebuffer is the mode's size unless `--fb-width/--fb-height` make it larger; the CRTC
/// then shows its `W x H` window from (`X`, `Y`) (default 0, 0). Frames draw over the whole
/// framebuffer; the digest is of the window, what the screen shows. `--pattern` is the picture
/// the bars are drawn on, or the background the photo moves over (the photo is on it from the
/// start, so every frame moves it). `--fps N` paces the frames at N per second (0, the
/// default: as fast as the guest can). `--hold-at N --hold-sync ID` hands over to the host
/// (`SAFFRON-SYNC id=ID label=playing frame=N`) right after frame N, with the picture of
/// that frame on screen, and plays on after `go` (the pace starts again from there): how a
/// host compares a client's picture with a frame while the video plays.
///
/// Prints `SAFFRON-KMS card= connector= crtc= modes=WxH@R,... preferred=WxH@R`, then after the
/// frames `SAFFRON-KMS width= height= frames= fps= sha256= mode= connector= crtc= full= partial=
/// clips= dirtyfb=ok|unsupported elapsed_ms= fb_width= fb_height= x= y= motion=`; with `--sync`,
/// then `SAFFRON-SYNC id=ID label=kms` and (after the host's `go`) `SAFFRON-GO`, before the
/// buffer is released.
/// `--video-width/--video-height` set the window `--motion video` plays in (default
/// 320x240; never larger than the framebuffer). `--overlay-at N` (video only) puts a pop-up
/// over the window's top-right corner before frame N, drawn as its own dirty rectangle, and
/// keeps it on top of every later frame (as a compositor keeps a menu over a video).
/// With `--phase NAME` (benchmarks), `SAFFRON-PHASE name=NAME begin` and `... end` are printed
/// right around the timed frames, so that the host can sample its own counters over exactly
/// that stretch (without the mode set, the first upload and the read-back).
/// With `--interval-ms N`, the first frame is preceded and each frame followed by N ms of
/// sleep, so that frames reach the device one at a time (the latency benchmark times each one from its DIRTYFB to the client).
/// With `--cursor-sync PREFIX`, after the frames the hardware cursor is set, moved and hidden
/// ([`super::cursor::exercise`]), with hand-overs `PREFIX-ready`, `-set`, `-move1`, `-move2`
/// and `-hide`.
pub fn run(mut opts: Options) -> Result<()> {
    let card_path = PathBuf::from(
        opts.take("card")
            .unwrap_or_else(|| "/dev/dri/card0".to_string()),
    );
    let width = opts.take_u64("width")?;
    let height = opts.take_u64("height")?;
    let frames = opts.u64_or("frames", 60, MAX_FRAMES)? as usize;
    let fps_pace = opts.u64_or("fps", 0, 1000)?;
    let hold_at = opts.take_u64("hold-at")?;
    let hold_sync = opts.take("hold-sync");
    if hold_at.is_some() != hold_sync.is_some() {
        return Err(Error::Usage(
            "--hold-at and --hold-sync go together".to_string(),
        ));
    }
    if let Some(id) = &hold_sync {
        super::sync::check_token("hold-sync", id)?;
    }
    let pattern = Pattern::parse(&opts.take("pattern").unwrap_or_else(|| "hgrad".to_string()))?;
    let motion = Motion::parse(&opts.take("motion").unwrap_or_else(|| "bars".to_string()))?;
    let video_size = (
        opts.u64_or("video-width", VIDEO_SIZE.0, 8192)? as usize,
        opts.u64_or("video-height", VIDEO_SIZE.1, 8192)? as usize,
    );
    if video_size.0 == 0 || video_size.1 == 0 {
        return Err(Error::Usage(
            "the video window must not be empty".to_string(),
        ));
    }
    let sync_id = opts.take("sync");
    let sync_timeout = opts.u64_or(
        "sync-timeout-ms",
        super::sync::DEFAULT_TIMEOUT_MS,
        3_600_000,
    )?;
    let phase = opts.take("phase");
    let cursor_sync = opts.take("cursor-sync");
    let fb_size = (opts.take_u64("fb-width")?, opts.take_u64("fb-height")?);
    let origin = (opts.u64_or("x", 0, 8192)?, opts.u64_or("y", 0, 8192)?);
    let interval = Duration::from_millis(opts.u64_or("interval-ms", 0, 60_000)?);
    let overlay_at = opts.take_u64("overlay-at")?;
    opts.finish()?;
    let want = match (width, height) {
        (None, None) => None,
        (Some(w), Some(h)) => Some((
            u32::try_from(w).map_err(|_| Error::Usage(format!("--width {w} too large")))?,
            u32::try_from(h).map_err(|_| Error::Usage(format!("--height {h} too large")))?,
        )),
        _ => {
            return Err(Error::Usage("--width and --height go together".to_string()));
        }
    };
    if let Some(id) = &sync_id {
        super::sync::check_token("sync", id)?;
    }
    if let Some(p) = &phase {
        super::sync::check_token("phase", p)?;
    }
    if let Some(p) = &cursor_sync {
        super::sync::check_token("cursor-sync", p)?;
    }

    let card = Card::open(&card_path)?;
    card.set_master()?;
    if card.get_cap(DRM_CAP_DUMB_BUFFER)? == 0 {
        return Err(Error::Check(format!(
            "{}: no dumb buffer support",
            card_path.display()
        )));
    }
    let res = card.resources()?;
    let mut seen = Vec::new();
    let mut chosen = None;
    for &id in &res.connectors {
        let conn = card.connector(id)?;
        seen.push(format!("{}:{}", conn.name(), conn.connection));
        if conn.connection == CONNECTOR_CONNECTED && !conn.modes.is_empty() {
            chosen = Some(conn);
            break;
        }
    }
    let conn = chosen.ok_or_else(|| {
        Error::Check(format!(
            "{}: no connected connector with modes (connector:status {})",
            card_path.display(),
            if seen.is_empty() {
                "none".to_string()
            } else {
                seen.join(",")
            }
        ))
    })?;
    let crtc = pick_crtc(&card, &res, &conn)?;
    let labels: Vec<String> = conn.modes.iter().map(DrmModeModeinfo::label).collect();
    let preferred = conn
        .modes
        .iter()
        .find(|m| m.preferred())
        .map_or_else(|| "none".to_string(), DrmModeModeinfo::label);
    println!(
        "SAFFRON-KMS card={} connector={} crtc={crtc} modes={} preferred={preferred}",
        card_path.display(),
        conn.name(),
        labels.join(",")
    );
    let mode = pick_mode(&conn.modes, want).ok_or_else(|| {
        let (w, h) = want.unwrap_or_default();
        Error::Check(format!("connector {} has no {w}x{h} mode", conn.name()))
    })?;
    let (w, h) = (u32::from(mode.hdisplay), u32::from(mode.vdisplay));
    let (x0, y0) = (origin.0 as u32, origin.1 as u32);
    let (fw, fh) = match fb_size {
        (None, None) => (w + x0, h + y0),
        (Some(fw), Some(fh)) => (
            u32::try_from(fw).map_err(|_| Error::Usage(format!("--fb-width {fw} too large")))?,
            u32::try_from(fh).map_err(|_| Error::Usage(format!("--fb-height {fh} too large")))?,
        ),
        _ => {
            return Err(Error::Usage(
                "--fb-width and --fb-height go together".to_string(),
            ));
        }
    };
    if u64::from(x0) + u64::from(w) > u64::from(fw) || u64::from(y0) + u64::from(h) > u64::from(fh)
    {
        return Err(Error::Usage(format!(
            "the {w}x{h} window at ({x0}, {y0}) does not fit the {fw}x{fh} framebuffer"
        )));
    }

    let dumb = card.create_dumb(fw, fh, 32)?;
    let mut scanout = Scanout {
        card: &card,
        dumb,
        fb_id: None,
        map: None,
    };
    if u64::from(dumb.pitch) < u64::from(fw) * 4
        || dumb.size < u64::from(dumb.pitch) * u64::from(fh)
    {
        return Err(Error::Check(format!(
            "dumb buffer {fw}x{fh}: pitch {} and size {} are too small",
            dumb.pitch, dumb.size
        )));
    }
    scanout.fb_id = Some(card.add_fb(fw, fh, &dumb)?);
    let offset = card.map_dumb(dumb.handle)?;
    let size = usize::try_from(dumb.size)
        .map_err(|_| Error::Check(format!("dumb buffer size {} too large", dumb.size)))?;
    scanout.map = Some(SharedMapping::new(card.file(), offset, size, &card_path)?);
    let fb_id = scanout.fb_id.unwrap_or_default();
    let map = scanout.map();

    let base = pattern.render(fw, fh)?;
    let mut img = base.clone();
    let (wu, hu) = (fw as usize, fh as usize);
    let photo = (motion == Motion::Photo).then(|| {
        let p = crate::image::photo(PHOTO_SIZE.0.min(wu), PHOTO_SIZE.1.min(hu), PHOTO_SEED);
        let (x, y) = photo_pos(0, wu, hu, p.width, p.height);
        let whole = Rect {
            x: 0,
            y: 0,
            w: p.width,
            h: p.height,
        };
        img.paste(&p, whole, x, y);
        p
    });
    let video = (motion == Motion::Video).then(|| {
        let (vw, vh) = (video_size.0.min(wu), video_size.1.min(hu));
        let film = crate::image::photo(2 * vw, 2 * vh, VIDEO_SEED);
        let window = video_rect(wu, hu, vw, vh);
        draw_video_frame(0, &film, window, &mut img);
        (film, window)
    });
    let side = TILE_SIDE.min(wu).min(hu);
    let tiles: Vec<Image> = if motion == Motion::Tiles {
        TILE_SEEDS
            .iter()
            .map(|&seed| crate::image::photo(side, side, seed))
            .collect()
    } else {
        Vec::new()
    };
    let full = Rect {
        x: 0,
        y: 0,
        w: wu,
        h: hu,
    };
    let mut row = Vec::with_capacity(wu * 4);
    upload(map, dumb.pitch, &img, full, &mut row)?;
    card.set_crtc(crtc, fb_id, conn.id, &mode, (x0, y0))?;

    let mut dirty_ok = true;
    let mut dirty = |clips: &[DrmClipRect]| -> Result<()> {
        if !dirty_ok {
            return Ok(());
        }
        match card.dirty_fb(fb_id, clips) {
            // Drivers without a dirty hook scan out the buffer directly; the DRM uapi documents
            // ENOSYS as "nothing to do" for this ioctl.
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOSYS) => {
                dirty_ok = false;
                Ok(())
            }
            other => other,
        }
    };
    let (mut n_full, mut n_partial, mut n_clips) = (0usize, 0usize, 0usize);
    // Paced frames are timed one by one: the first upload and the mode set get the same pause
    // to reach the client before the first of them.
    std::thread::sleep(interval);
    if let Some(p) = &phase {
        println!("SAFFRON-PHASE name={p} begin");
    }
    let start = Instant::now();
    // Where the pace counts from: the start, or the end of a hold.
    let (mut pace_from, mut pace_frame) = (start, 0usize);
    // The pop-up of `--overlay-at`, once drawn: where, and its picture.
    let mut overlay: Option<(Rect, Image)> = None;
    for i in 0..frames {
        if fps_pace > 0 {
            let due = std::time::Duration::from_secs((i - pace_frame) as u64) / fps_pace as u32;
            if let Some(wait) = due.checked_sub(pace_from.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if let (Some(at), Some((_, window))) = (overlay_at, &video)
            && at == i as u64
        {
            let r = overlay_rect(*window, wu, hu);
            let pop = overlay_image(r);
            img.paste(&pop, Rect { x: 0, y: 0, ..r }, r.x, r.y);
            upload(map, dumb.pitch, &img, r, &mut row)?;
            dirty(&[clip(r)])?;
            n_clips += 1;
            overlay = Some((r, pop));
        }
        let rects = match (&photo, &video, motion) {
            (_, Some((film, window)), _) => {
                let rects = draw_video_frame(i + 1, film, *window, &mut img);
                if let Some((r, pop)) = &overlay {
                    img.paste(pop, Rect { x: 0, y: 0, ..*r }, r.x, r.y);
                }
                rects
            }
            (Some(p), _, _) => draw_photo_frame(i, &base, p, &mut img),
            (None, _, Motion::Tiles) => draw_tile_frame(i, &tiles, &mut img),
            (None, _, _) => draw_frame(i, &base, &mut img),
        };
        let clips: Vec<DrmClipRect> = rects.iter().copied().map(clip).collect();
        if rects == [full] {
            n_full += 1;
        } else {
            n_partial += 1;
        }
        for r in rects {
            upload(map, dumb.pitch, &img, r, &mut row)?;
        }
        dirty(&clips)?;
        n_clips += clips.len();
        if !interval.is_zero() {
            std::thread::sleep(interval);
        }
        if let (Some(at), Some(id)) = (hold_at, &hold_sync)
            && at == i as u64
        {
            super::sync::hand_over(id, Some(&format!("playing frame={i}")), sync_timeout)?;
            (pace_from, pace_frame) = (Instant::now(), i + 1);
        }
    }
    let elapsed = start.elapsed();
    if let Some(p) = &phase {
        println!("SAFFRON-PHASE name={p} end");
    }
    let fps = if frames == 0 {
        0.0
    } else {
        frames as f64 / elapsed.as_secs_f64().max(1e-9)
    };

    // What the screen shows: the CRTC's window of the framebuffer, read back from it.
    let mut hasher = FrameHasher::new(w as usize, PixelFormat::XRGB8888, HashFormat::Rgb)?;
    let mut line = vec![0u8; hasher.row_len()];
    for y in y0..y0 + h {
        map.read_at(
            u64::from(y) * u64::from(dumb.pitch) + u64::from(x0) * 4,
            &mut line,
        )?;
        hasher.update_row(&line);
    }
    let sha = hasher.finish();
    let window = Rect {
        x: x0 as usize,
        y: y0 as usize,
        w: w as usize,
        h: h as usize,
    };
    let want_sha = img.crop(window).sha256();
    if sha != want_sha {
        return Err(Error::Check(format!(
            "dumb buffer reads back as sha256 {sha}, drew {want_sha}"
        )));
    }
    println!(
        "SAFFRON-KMS width={w} height={h} frames={frames} fps={fps:.2} sha256={sha} mode={} \
         connector={} crtc={crtc} full={n_full} partial={n_partial} clips={n_clips} \
         dirtyfb={} elapsed_ms={} fb_width={fw} fb_height={fh} x={x0} y={y0} motion={}",
        mode.label(),
        conn.name(),
        if dirty_ok { "ok" } else { "unsupported" },
        elapsed.as_millis(),
        motion.name()
    );
    if let Some(prefix) = &cursor_sync {
        super::cursor::exercise(&card, crtc, prefix, sync_timeout)?;
    }
    if let Some(id) = &sync_id {
        super::sync::hand_over(id, Some("kms"), sync_timeout)?;
    }
    drop(scanout);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drm::DRM_MODE_TYPE_PREFERRED;

    fn mode(w: u16, h: u16, preferred: bool) -> DrmModeModeinfo {
        DrmModeModeinfo {
            hdisplay: w,
            vdisplay: h,
            vrefresh: 60,
            type_: if preferred {
                DRM_MODE_TYPE_PREFERRED
            } else {
                0
            },
            ..Default::default()
        }
    }

    #[test]
    fn mode_choice() {
        let modes = [
            mode(800, 600, false),
            mode(1024, 768, false),
            mode(1280, 1024, true),
            mode(1024, 768, true),
        ];
        let pick = |want| pick_mode(&modes, want).map(|m| (m.hdisplay, m.type_));
        assert_eq!(pick(None), Some((1280, DRM_MODE_TYPE_PREFERRED)));
        assert_eq!(
            pick(Some((1024, 768))),
            Some((1024, DRM_MODE_TYPE_PREFERRED))
        );
        assert_eq!(pick(Some((800, 600))), Some((800, 0)));
        assert_eq!(pick(Some((640, 480))), None);
        assert_eq!(
            pick_mode(&[mode(640, 480, false)], None).map(|m| m.hdisplay),
            Some(640)
        );
    }

    /// Every rect a frame touches stays inside the picture, also for tiny modes, so the clips
    /// fit in u16 and the uploads in the buffer.
    #[test]
    fn rects_stay_inside() {
        for (w, h) in [(1024, 768), (1, 1), (3, 200), (640, 2)] {
            for i in 0..200 {
                let mut rects = partial_rects(i, w, h);
                rects.push(bar_rect(i, w, h));
                for r in rects {
                    assert!(r.w > 0 && r.h > 0, "{r:?}");
                    assert!(r.x + r.w <= w && r.y + r.h <= h, "{w}x{h} frame {i}: {r:?}");
                }
            }
            assert!((1..=4).contains(&partial_rects(7, w, h).len()));
        }
        assert_eq!(
            clip(Rect {
                x: 1,
                y: 2,
                w: 3,
                h: 4
            }),
            DrmClipRect {
                x1: 1,
                y1: 2,
                x2: 4,
                y2: 6
            }
        );
    }

    /// The picture `qxl-kms.sh` leaves on screen with its defaults (1024x768, 60 frames, hgrad),
    /// as its `SAFFRON-KMS ... sha256=` reports it and QEMU's own qxl-vga screendump showed it:
    /// pinned so that the host can check its screendump against a known value.
    #[test]
    fn final_picture_of_the_default_run() {
        let base = Pattern::HGrad.render(1024, 768).unwrap();
        let mut img = base.clone();
        let mut clips = 0;
        for i in 0..60 {
            clips += draw_frame(i, &base, &mut img).len();
        }
        assert_eq!(clips, 103);
        assert_eq!(
            img.sha256(),
            "0f26a92231f493a1c5b5c46c3785856382c79ebf48f007fa811bd1fbffbdbf97"
        );
    }

    /// Photo frames stay inside the picture, move by the step (wrapping per axis), and leave
    /// the picture as the background with the photo at its latest place.
    #[test]
    fn photo_moves_and_wraps() {
        let (w, h, pw, ph) = (1024, 768, 320, 240);
        assert_eq!(photo_pos(0, w, h, pw, ph), (0, 0));
        assert_eq!(photo_pos(1, w, h, pw, ph), (8, 8));
        // 705 columns and 529 rows of places: x wraps after step 88, y after step 66.
        assert_eq!(photo_pos(88, w, h, pw, ph), (704, 704 % 529));
        assert_eq!(photo_pos(89, w, h, pw, ph), (712 % 705, 712 % 529));
        for (w, h, pw, ph) in [(1024, 768, 320, 240), (320, 240, 320, 240), (10, 3, 4, 1)] {
            for i in 0..500 {
                let [old, new] = photo_rects(i, w, h, pw, ph);
                for r in [old, new] {
                    assert!(r.x + r.w <= w && r.y + r.h <= h, "{w}x{h} step {i}: {r:?}");
                    assert_eq!((r.w, r.h), (pw, ph));
                }
                assert_eq!(photo_rects(i + 1, w, h, pw, ph)[0], new);
            }
        }

        let base = Pattern::Solid([0x28, 0x40, 0x58]).render(64, 48).unwrap();
        let photo = crate::image::photo(20, 15, PHOTO_SEED);
        let whole = Rect {
            x: 0,
            y: 0,
            w: 20,
            h: 15,
        };
        let mut img = base.clone();
        img.paste(&photo, whole, 0, 0);
        for i in 0..37 {
            let rects = draw_photo_frame(i, &base, &photo, &mut img);
            assert_eq!(rects.len(), 2);
            let (x, y) = photo_pos(i + 1, 64, 48, 20, 15);
            let mut want = base.clone();
            want.paste(&photo, whole, x, y);
            assert_eq!(img, want, "frame {i}");
        }
    }

    /// Tile frames alternate the two tiles at a cell, then move on; cells stay inside the
    /// picture and do not overlap.
    #[test]
    fn the_overlay_lies_partly_over_the_video_window() {
        let window = video_rect(1024, 768, 320, 240);
        let r = overlay_rect(window, 1024, 768);
        assert_eq!((r.w, r.h), OVERLAY_SIZE);
        let over_x = (window.x + window.w).saturating_sub(r.x).min(r.w);
        let over_y = (r.y + r.h).saturating_sub(window.y).min(r.h);
        assert!(over_x > 0 && over_x < r.w, "{r:?} over {window:?}");
        assert!(over_y > 0 && over_y < r.h, "{r:?} over {window:?}");
        let img = overlay_image(r);
        assert_eq!(img.rgb.len(), r.w * r.h * 3);
    }

    #[test]
    fn video_frames_change_the_window_only_and_pan_back_and_forth() {
        let film = crate::image::photo(64, 48, VIDEO_SEED);
        let base = Pattern::HGrad.render(100, 80).unwrap();
        let window = video_rect(100, 80, 32, 24);
        assert_eq!((window.x, window.y), (34, 28));
        let mut img = base.clone();
        let mut seen = Vec::new();
        for i in 0..20 {
            assert_eq!(draw_video_frame(i, &film, window, &mut img), [window]);
            let shown = img.crop(window).sha256();
            assert!(!seen.contains(&shown), "frame {i} repeats an earlier one");
            seen.push(shown);
            // Outside the window nothing changed.
            let mut outside = img.clone();
            outside.paste(&base, window, window.x, window.y);
            assert_eq!(outside.sha256(), base.sha256());
        }
        // x bounces inside 32 pixels of room in steps of 5: back at 0 after 2 * 32 / gcd.
        assert_eq!(
            {
                let mut a = base.clone();
                draw_video_frame(64, &film, window, &mut a);
                a.sha256()
            },
            {
                let mut b = base.clone();
                draw_video_frame(0, &film, window, &mut b);
                b.sha256()
            },
            "frame 64 is frame 0 again (both axes back at 0)"
        );
    }

    #[test]
    fn tiles_alternate_and_move_on() {
        let (w, h) = (1024, 768);
        assert_eq!(tile_rect(0, w, h, 128), tile_rect(1, w, h, 128));
        assert_eq!(
            (tile_rect(2, w, h, 128).x, tile_rect(2, w, h, 128).y),
            (160, 0)
        );
        // 6 columns, 5 rows: frame 12 starts the second row, frame 60 wraps around.
        assert_eq!(
            (tile_rect(12, w, h, 128).x, tile_rect(12, w, h, 128).y),
            (0, 160)
        );
        assert_eq!(tile_rect(58, w, h, 128).y, 640);
        assert_eq!(tile_rect(60, w, h, 128), tile_rect(0, w, h, 128));
        for (w, h, side) in [(1024, 768, 128), (100, 60, 60), (128, 128, 128)] {
            for i in 0..200 {
                let r = tile_rect(i, w, h, side);
                assert!(r.x + r.w <= w && r.y + r.h <= h, "{w}x{h} frame {i}: {r:?}");
            }
        }
        let tiles: Vec<Image> = TILE_SEEDS
            .iter()
            .map(|&s| crate::image::photo(8, 8, s))
            .collect();
        assert_ne!(tiles[0], tiles[1]);
        let mut img = Pattern::Solid([0, 0, 0]).render(200, 20).unwrap();
        let rects = draw_tile_frame(3, &tiles, &mut img);
        assert_eq!(rects, [tile_rect(3, 200, 20, 8)]);
        assert_eq!(img.crop(rects[0]), tiles[1]);
    }

    #[test]
    fn option_errors_come_first() {
        let opts = Options::parse(["--width", "1024"]).unwrap();
        assert!(matches!(run(opts), Err(Error::Usage(_))));
        let opts = Options::parse(["--pattern", "plaid"]).unwrap();
        assert!(matches!(run(opts), Err(Error::Usage(_))));
        let opts = Options::parse(["--motion", "wobble"]).unwrap();
        assert!(matches!(run(opts), Err(Error::Usage(_))));
        let opts = Options::parse(["--sync", "a b"]).unwrap();
        assert!(matches!(run(opts), Err(Error::Usage(_))));
        let opts = Options::parse(["--phase", "a b"]).unwrap();
        assert!(matches!(run(opts), Err(Error::Usage(_))));
        let opts = Options::parse(["--cursor-sync", "a b"]).unwrap();
        assert!(matches!(run(opts), Err(Error::Usage(_))));
        let opts = Options::parse(["--card", "/nonexistent/card0"]).unwrap();
        assert!(matches!(run(opts), Err(Error::Io { .. })));
    }
}
