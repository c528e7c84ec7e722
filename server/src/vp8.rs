//! VP8 video frames through libvpx (Debian's `libvpx-dev`, bound by `env-libvpx-sys`): the
//! modern codec of our streams (`SPICE_VIDEO_CODEC_TYPE_VP8`). spice-gtk decodes it with
//! GStreamer's `vp8dec` (gstreamer1.0-plugins-good, which its MJPEG path needs anyway);
//! spice-html5 through the browser's MediaSource.
//!
//! # Why VP8 (and libvpx)
//! The issue asked for one codec that spice-gtk decodes through GStreamer, H.264 or VP8,
//! chosen by bytes at equal quality and by encode CPU. A scratch benchmark (not kept: it
//! needs openh264) encoded 100 frames of a panning photo-like picture with a moving block,
//! 25 frames/s, one thread, real-time CBR, with libvpx 1.12 (`cpu-used` 8) and `openh264`
//! 0.9 (camera real-time mode), and decoded every frame:
//!
//! | size, target | VP8: kbit/s, Y PSNR, encode ms | H.264: kbit/s, Y PSNR, encode ms |
//! |---|---|---|
//! | 320x240, 300k | 270, 39.3 dB, 1.0–1.2 | 302, 36.3 dB, 0.6 (3 frames skipped) |
//! | 320x240, 1000k | 708, 48.4 dB, 1.0–1.2 | 977, 44.0 dB, 0.8–1.2 |
//! | 640x480, 300k | 266, 35.4 dB, 3.2–4.2 | 304, 34.3 dB, 1.6–1.8 (3 skipped) |
//! | 640x480, 1000k | 895, 43.7 dB, 2.9–3.1 | 1008, 36.3 dB, 2.4–3.1 (2 skipped) |
//!
//! openh264's default scene-change detection costs it 3–5 dB here (an IDR every 17
//! frames); with it off the two are within a few tenths of a dB at equal rate, H.264 up to
//! 2x cheaper at 640x480 — but only when its build finds `nasm` (without it, silently, its
//! encode is 3x slower), and its screen-content mode ignored the rate. VP8 decided it: equal
//! or better bytes at equal quality, CPU within 2x and far below a frame's time, its
//! decoder in the GStreamer package spice-gtk's MJPEG path already needs
//! (gstreamer1.0-plugins-good; H.264 needs gstreamer1.0-libav), spice-html5 decodes it too,
//! and its encoder is a Debian library rather than a bundled C++ build.
//!
//! Two settings come from that benchmark: libvpx's first key frame, left alone, spends the
//! whole initial buffer (116 KB at 640x480 and 1 Mbit/s, nearly a second of that link) and
//! starves the frames after it, so key frames are capped at 3x an average frame and the
//! rate buffer is short (1 s); and a positive `cpu-used` lets libvpx pick its speed from
//! the time a frame may take, so a loaded host gets faster, larger frames, not late ones.
//!
//! # One encoder per stream
//! A stream's frames depend on the ones before them, so each stream owns an [`Encoder`] of
//! its size; frames are real-time (no lag: one frame in, one frame out), rate-controlled to a
//! target bit rate that the stream's quality moves (client reports, the link estimate). A
//! frame the client may not have (the stream's first, or after [`Encoder::force_key`]) is
//! a key frame.

use std::os::raw::{c_int, c_uint, c_ulong};
use std::ptr;

use saffron_codec::ImageRef;
use saffron_codec::yuv::{self, Planes};
use vpx_sys::{
    VPX_DECODER_ABI_VERSION, VPX_DL_REALTIME, VPX_EFLAG_FORCE_KF, VPX_ENCODER_ABI_VERSION,
    VPX_FRAME_IS_KEY, vp8e_enc_control_id, vpx_codec_ctx_t, vpx_codec_cx_pkt_kind,
    vpx_codec_enc_cfg_t, vpx_codec_err_t, vpx_codec_iter_t, vpx_image_t, vpx_img_fmt, vpx_kf_mode,
    vpx_rc_mode,
};

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum Vp8Error {
    #[error("libvpx: {what}: {code:?}")]
    Codec {
        what: &'static str,
        code: vpx_codec_err_t,
    },
    #[error("a {width}x{height} frame for a {want_w}x{want_h} VP8 stream")]
    Size {
        width: u32,
        height: u32,
        want_w: u32,
        want_h: u32,
    },
    #[error("VP8 frames are 1..={MAX_SIDE} pixels a side, not {0}x{1}")]
    Side(u32, u32),
    #[error(transparent)]
    Convert(#[from] yuv::YuvError),
    #[error("libvpx gave no frame")]
    NoFrame,
}

/// The largest side a VP8 frame can have (14 bits).
pub const MAX_SIDE: u32 = 16383;
/// libvpx's `cpu-used` for real-time VP8: positive, it lets libvpx choose its speed so that
/// a frame takes at most (16 - CPU_USED)/16 of the frame time.
const CPU_USED: c_int = 8;
/// The largest key frame, in percent of an average frame (see the module's doc).
const MAX_INTRA_PERCENT: c_int = 300;
/// Frames between key frames at most, so a decoder that lost its way recovers.
const KEY_INTERVAL: c_uint = 250;

fn ok(what: &'static str, code: vpx_codec_err_t) -> Result<(), Vp8Error> {
    if code == vpx_codec_err_t::VPX_CODEC_OK {
        Ok(())
    } else {
        Err(Vp8Error::Codec { what, code })
    }
}

/// A real-time VP8 encoder of `width x height` frames.
pub struct Encoder {
    ctx: vpx_codec_ctx_t,
    cfg: vpx_codec_enc_cfg_t,
    /// The I420 picture frames are converted into (libvpx's own allocation).
    img: *mut vpx_image_t,
    width: u32,
    height: u32,
    pts: i64,
    key_next: bool,
}

// SAFETY: the encoder context and image are owned by this value alone and libvpx keeps no
// thread-local state for them; moving it to another thread (the client's encoder thread)
// is sound. It is not Sync: every call takes `&mut self`.
unsafe impl Send for Encoder {}

impl Encoder {
    /// An encoder aiming at `kbps` kilobits per second at `fps` frames per second.
    pub fn new(width: u32, height: u32, kbps: u32, fps: u32) -> Result<Encoder, Vp8Error> {
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return Err(Vp8Error::Side(width, height));
        }
        // SAFETY: vpx_codec_vp8_cx returns a pointer to libvpx's static interface table.
        let iface = unsafe { vpx_sys::vpx_codec_vp8_cx() };
        let mut cfg = std::mem::MaybeUninit::<vpx_codec_enc_cfg_t>::zeroed();
        // SAFETY: iface is libvpx's VP8 interface and cfg writable memory for a config.
        ok("config", unsafe {
            vpx_sys::vpx_codec_enc_config_default(iface, cfg.as_mut_ptr(), 0)
        })?;
        // SAFETY: vpx_codec_enc_config_default succeeded, so it wrote a whole, valid config
        // (all-zero is not one: some of its enums have no 0).
        let mut cfg = unsafe { cfg.assume_init() };
        cfg.g_w = width;
        cfg.g_h = height;
        cfg.g_timebase.num = 1;
        cfg.g_timebase.den = fps.max(1) as c_int;
        cfg.g_threads = 1;
        cfg.g_lag_in_frames = 0;
        cfg.g_error_resilient = 0;
        cfg.rc_end_usage = vpx_rc_mode::VPX_CBR;
        cfg.rc_target_bitrate = kbps.max(1);
        // The whole quantizer range: grainy pictures need the top of it to stay near the
        // rate (capped at 56, a grainy 640x480 pan ran at 6x its target).
        cfg.rc_min_quantizer = 4;
        cfg.rc_max_quantizer = 63;
        cfg.rc_undershoot_pct = 95;
        cfg.rc_overshoot_pct = 25;
        cfg.rc_buf_sz = 1000;
        cfg.rc_buf_initial_sz = 500;
        cfg.rc_buf_optimal_sz = 600;
        cfg.rc_dropframe_thresh = 0;
        cfg.kf_mode = vpx_kf_mode::VPX_KF_AUTO;
        cfg.kf_max_dist = KEY_INTERVAL;
        // SAFETY: an all-zero context is what vpx_codec_enc_init_ver expects to fill in.
        let mut ctx: vpx_codec_ctx_t = unsafe { std::mem::zeroed() };
        // SAFETY: ctx and cfg are valid for the call; the ABI version is the one the
        // bindings were generated for.
        ok("init", unsafe {
            vpx_sys::vpx_codec_enc_init_ver(
                &mut ctx,
                iface,
                &cfg,
                0,
                VPX_ENCODER_ABI_VERSION as c_int,
            )
        })?;
        // SAFETY: ctx was initialised above; VP8E_SET_CPUUSED takes an int.
        let speed = unsafe {
            vpx_sys::vpx_codec_control_(
                &mut ctx,
                vp8e_enc_control_id::VP8E_SET_CPUUSED as c_int,
                CPU_USED,
            )
        };
        // SAFETY: as above; VP8E_SET_MAX_INTRA_BITRATE_PCT takes an unsigned int.
        let intra = unsafe {
            vpx_sys::vpx_codec_control_(
                &mut ctx,
                vp8e_enc_control_id::VP8E_SET_MAX_INTRA_BITRATE_PCT as c_int,
                MAX_INTRA_PERCENT as c_uint,
            )
        };
        // SAFETY: a null image asks libvpx to allocate one (freed in Drop); sizes checked.
        let img = unsafe {
            vpx_sys::vpx_img_alloc(
                ptr::null_mut(),
                vpx_img_fmt::VPX_IMG_FMT_I420,
                width,
                height,
                1,
            )
        };
        let enc = Encoder {
            ctx,
            cfg,
            img,
            width,
            height,
            pts: 0,
            key_next: true,
        };
        ok("cpu-used", speed)?;
        ok("max-intra-rate", intra)?;
        if img.is_null() {
            return Err(Vp8Error::NoFrame);
        }
        Ok(enc)
    }

    /// The frame size this encoder takes.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The target bit rate, kilobits per second.
    pub fn kbps(&self) -> u32 {
        self.cfg.rc_target_bitrate
    }

    /// Aims the following frames at `kbps` (no key frame needed).
    pub fn set_kbps(&mut self, kbps: u32) -> Result<(), Vp8Error> {
        let kbps = kbps.max(1);
        if kbps == self.cfg.rc_target_bitrate {
            return Ok(());
        }
        self.cfg.rc_target_bitrate = kbps;
        // SAFETY: ctx is a live encoder and cfg its own config with the rate changed.
        ok("set rate", unsafe {
            vpx_sys::vpx_codec_enc_config_set(&mut self.ctx, &self.cfg)
        })
    }

    /// The next frame is a key frame (the client may have lost the ones before).
    pub fn force_key(&mut self) {
        self.key_next = true;
    }

    /// Encodes one frame (BGRX, the encoder's size); returns the VP8 frame and whether it is
    /// a key frame.
    pub fn encode(&mut self, image: &ImageRef<'_>) -> Result<(Vec<u8>, bool), Vp8Error> {
        if (image.width(), image.height()) != (self.width, self.height) {
            return Err(Vp8Error::Size {
                width: image.width(),
                height: image.height(),
                want_w: self.width,
                want_h: self.height,
            });
        }
        // SAFETY: img was allocated by vpx_img_alloc for this size, in I420: its planes hold
        // `stride * rows` bytes (luma: height rows, chroma: half, rounded up), owned by the
        // image until Drop, and nothing else refers to them during this call.
        let planes = unsafe {
            let img = &*self.img;
            let (_, ch) = yuv::chroma_size(self.width, self.height);
            let plane = |i: usize, rows: u32| {
                let stride = img.stride[i] as usize;
                (
                    std::slice::from_raw_parts_mut(img.planes[i], stride * rows as usize),
                    stride,
                )
            };
            Planes {
                y: plane(0, self.height),
                u: plane(1, ch),
                v: plane(2, ch),
            }
        };
        yuv::bgrx_to_i420(image, planes)?;
        let flags = if self.key_next {
            VPX_EFLAG_FORCE_KF as vpx_sys::vpx_enc_frame_flags_t
        } else {
            0
        };
        // SAFETY: ctx is a live encoder and img a filled picture of its size.
        ok("encode", unsafe {
            vpx_sys::vpx_codec_encode(
                &mut self.ctx,
                self.img,
                self.pts,
                1,
                flags,
                VPX_DL_REALTIME as c_ulong,
            )
        })?;
        self.pts += 1;
        let mut out = Vec::new();
        let mut key = false;
        let mut iter: vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: ctx is a live encoder; iter starts null and is advanced by libvpx.
            let pkt = unsafe { vpx_sys::vpx_codec_get_cx_data(&mut self.ctx, &mut iter) };
            if pkt.is_null() {
                break;
            }
            // SAFETY: a non-null packet is valid until the next call on ctx.
            let pkt = unsafe { &*pkt };
            if pkt.kind != vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                continue;
            }
            // SAFETY: a frame packet's union member is `frame`, whose buf holds sz bytes
            // until the next call on ctx.
            let frame = unsafe { pkt.data.frame };
            // SAFETY: as above.
            let data =
                unsafe { std::slice::from_raw_parts(frame.buf as *const u8, frame.sz as usize) };
            out.extend_from_slice(data);
            key |= frame.flags & VPX_FRAME_IS_KEY != 0;
        }
        if out.is_empty() {
            return Err(Vp8Error::NoFrame);
        }
        self.key_next = false;
        Ok((out, key))
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: ctx was initialised in new and img allocated there; both are released
        // once, here.
        unsafe {
            vpx_sys::vpx_codec_destroy(&mut self.ctx);
            vpx_sys::vpx_img_free(self.img);
        }
    }
}

/// A VP8 decoder giving BGRX pictures: for the tests and benchmarks that check what a
/// client would show.
pub struct Decoder {
    ctx: vpx_codec_ctx_t,
}

// SAFETY: as for Encoder: owned context, no shared state.
unsafe impl Send for Decoder {}

impl Decoder {
    pub fn new() -> Result<Decoder, Vp8Error> {
        // SAFETY: an all-zero context is what vpx_codec_dec_init_ver fills in.
        let mut ctx: vpx_codec_ctx_t = unsafe { std::mem::zeroed() };
        // SAFETY: libvpx's static VP8 decoder interface, a null (default) config.
        ok("decoder init", unsafe {
            vpx_sys::vpx_codec_dec_init_ver(
                &mut ctx,
                vpx_sys::vpx_codec_vp8_dx(),
                ptr::null(),
                0,
                VPX_DECODER_ABI_VERSION as c_int,
            )
        })?;
        Ok(Decoder { ctx })
    }

    /// Decodes one frame: (width, height, BGRX).
    pub fn decode(&mut self, frame: &[u8]) -> Result<(u32, u32, Vec<u8>), Vp8Error> {
        let len = c_uint::try_from(frame.len()).map_err(|_| Vp8Error::NoFrame)?;
        // SAFETY: ctx is a live decoder; frame is `len` readable bytes for the call.
        ok("decode", unsafe {
            vpx_sys::vpx_codec_decode(&mut self.ctx, frame.as_ptr(), len, ptr::null_mut(), 0)
        })?;
        let mut iter: vpx_codec_iter_t = ptr::null();
        // SAFETY: ctx is a live decoder; the image stays valid until the next decode.
        let img = unsafe { vpx_sys::vpx_codec_get_frame(&mut self.ctx, &mut iter) };
        if img.is_null() {
            return Err(Vp8Error::NoFrame);
        }
        // SAFETY: libvpx's decoded I420 image: d_w x d_h, planes of stride x rows bytes.
        let (w, h, y, u, v) = unsafe {
            let img = &*img;
            let (w, h) = (img.d_w, img.d_h);
            let ch = h.div_ceil(2) as usize;
            let plane = |i: usize, rows: usize| {
                let stride = img.stride[i] as usize;
                (
                    std::slice::from_raw_parts(img.planes[i] as *const u8, stride * rows),
                    stride,
                )
            };
            (w, h, plane(0, h as usize), plane(1, ch), plane(2, ch))
        };
        let bgrx = yuv::i420_to_bgrx(w, h, y, u, v)?;
        Ok((w, h, bgrx))
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: initialised in new, released once here.
        unsafe {
            vpx_sys::vpx_codec_destroy(&mut self.ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use saffron_codec::{PixelFormat, corpus, mjpeg};

    use super::*;

    /// Frame `i` of a panning photograph, `w x h` out of a larger one.
    fn frame(big: &[u8], bw: u32, w: u32, h: u32, i: u32) -> Vec<u8> {
        (0..h)
            .flat_map(|y| {
                let at = (((y + i) * bw + i * 3) * 4) as usize;
                big[at..at + (w * 4) as usize].to_vec()
            })
            .collect()
    }

    #[test]
    fn a_panning_photo_streams_within_its_rate_and_decodes_close() {
        let (w, h, fps) = (320u32, 240u32, 25u32);
        let (bw, bh) = (w + 3 * 60, h + 60);
        let big = corpus::photo(bw, bh);
        let mut enc = Encoder::new(w, h, 800, fps).unwrap();
        let mut dec = Decoder::new().unwrap();
        let (mut bytes, mut keys, mut worst) = (0usize, 0, f64::INFINITY);
        for i in 0..50 {
            let f = frame(&big, bw, w, h, i);
            let img = ImageRef::packed(w, h, PixelFormat::Rgb32, &f).unwrap();
            if i == 30 {
                enc.force_key();
            }
            let (vp8, key) = enc.encode(&img).unwrap();
            assert_eq!(key, i == 0 || i == 30, "frame {i}");
            keys += usize::from(key);
            bytes += vp8.len();
            if i == 0 {
                // Capped at 3x an average frame (4,000 bytes at this rate), with slack.
                assert!(vp8.len() < 16_000, "first key frame {} bytes", vp8.len());
            }
            let (dw, dh, got) = dec.decode(&vp8).unwrap();
            assert_eq!((dw, dh), (w, h));
            if i >= 5 {
                worst = worst.min(mjpeg::psnr(&f, &got));
            }
        }
        assert_eq!(keys, 2);
        // 800 kbit/s at 25 frames/s is 4,000 bytes a frame; CBR keeps near it.
        let per_frame = bytes / 50;
        assert!(per_frame < 6_000, "{per_frame} bytes a frame");
        assert!(worst > 28.0, "worst PSNR {worst:.1} dB");
        // A lower rate gives smaller frames.
        enc.set_kbps(200).unwrap();
        assert_eq!(enc.kbps(), 200);
        let mut low = 0;
        for i in 50..60 {
            let f = frame(&big, bw, w, h, i);
            let img = ImageRef::packed(w, h, PixelFormat::Rgb32, &f).unwrap();
            low += enc.encode(&img).unwrap().0.len();
        }
        assert!(low / 10 < per_frame, "{} at 200 kbit/s", low / 10);
    }

    #[test]
    fn odd_sizes_work_and_wrong_sizes_are_refused() {
        let (w, h) = (97u32, 33u32);
        let px = corpus::photo(w, h);
        let img = ImageRef::packed(w, h, PixelFormat::Rgb32, &px).unwrap();
        let mut enc = Encoder::new(w, h, 300, 25).unwrap();
        let (vp8, key) = enc.encode(&img).unwrap();
        assert!(key);
        let (dw, dh, got) = Decoder::new().unwrap().decode(&vp8).unwrap();
        assert_eq!((dw, dh), (w, h));
        assert!(mjpeg::psnr(&px, &got) > 25.0);
        let small = ImageRef::packed(2, 2, PixelFormat::Rgb32, &px[..16]).unwrap();
        assert!(matches!(enc.encode(&small), Err(Vp8Error::Size { .. })));
        assert!(matches!(
            Encoder::new(0, 10, 300, 25),
            Err(Vp8Error::Side(0, 10))
        ));
        assert!(Decoder::new().unwrap().decode(&[1, 2, 3]).is_err());
    }
}
