//! Per-client image encoding: how the pixels of one drawing go on the wire.
//!
//! Every image the display channel sends is a SpiceImage (descriptor + payload). Which
//! payload depends on the client and on the user's `image-compression` choice; a client never
//! gets a format it cannot decode.

use std::fmt;
use std::str::FromStr;

use saffron_display::Pixels;

use crate::wire::Writer;

/// SpiceImage types.
pub mod image_type {
    pub const BITMAP: u8 = 0;
    pub const QUIC: u8 = 1;
    pub const LZ_RGB: u8 = 101;
    pub const GLZ_RGB: u8 = 102;
    pub const ZLIB_GLZ_RGB: u8 = 107;
    pub const LZ4: u8 = 109;
    pub const JPEG: u8 = 105;
    pub const FROM_CACHE: u8 = 103;
}

/// Image descriptor flag CACHE_ME: the client keeps the decoded image under its id.
pub const IMAGE_CACHE_ME: u8 = 1;

/// Bitmap format 32BIT (B, G, R, X).
const BITMAP_FMT_32BIT: u8 = 8;
/// Bitmap flag TOP_DOWN.
const BITMAP_TOP_DOWN: u8 = 4;
/// Bytes of a SpiceImage descriptor (id u64, type u8, flags u8, width u32, height u32).
pub const DESCRIPTOR_SIZE: usize = 18;
/// Bytes of a raw BITMAP payload header (format, flags, x, y, stride, palette).
pub const BITMAP_HEADER_SIZE: usize = 18;

/// The user's choice of image compression: QEMU's `image-compression` values, plus lz4.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// GLZ for synthetic content, QUIC for photographic (QEMU's default).
    #[default]
    AutoGlz,
    /// LZ for synthetic content, QUIC for photographic.
    AutoLz,
    Quic,
    Glz,
    Lz,
    /// LZ4 for clients with the cap (others get LZ).
    Lz4,
    /// Raw bitmaps.
    Off,
}

impl Compression {
    /// Every value, as the command line spells it.
    pub const NAMES: &'static [&'static str] =
        &["auto_glz", "auto_lz", "quic", "glz", "lz", "lz4", "off"];
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::AutoGlz => "auto_glz",
            Compression::AutoLz => "auto_lz",
            Compression::Quic => "quic",
            Compression::Glz => "glz",
            Compression::Lz => "lz",
            Compression::Lz4 => "lz4",
            Compression::Off => "off",
        })
    }
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto_glz" => Compression::AutoGlz,
            "auto_lz" => Compression::AutoLz,
            "quic" => Compression::Quic,
            "glz" => Compression::Glz,
            "lz" => Compression::Lz,
            "lz4" => Compression::Lz4,
            "off" | "never" => Compression::Off,
            other => {
                return Err(format!(
                    "unknown image compression '{other}' (one of {})",
                    Compression::NAMES.join(", ")
                ));
            }
        })
    }
}

/// Writes a SpiceImage descriptor.
pub fn descriptor(out: &mut Writer, id: u64, ty: u8, flags: u8, width: u32, height: u32) {
    out.u64(id).u8(ty).u8(flags).u32(width).u32(height);
}

/// A raw top-down 32BIT bitmap of rows `rows` of `px` (the one image every client decodes).
pub fn raw_bitmap(out: &mut Writer, id: u64, px: &Pixels, rows: std::ops::Range<u32>) {
    raw_bitmap_flagged(out, id, 0, px, rows);
}

/// [`raw_bitmap`] with descriptor flags.
fn raw_bitmap_flagged(
    out: &mut Writer,
    id: u64,
    flags: u8,
    px: &Pixels,
    rows: std::ops::Range<u32>,
) {
    let (w, h) = (px.width, rows.end - rows.start);
    let stride = w as usize * 4;
    descriptor(out, id, image_type::BITMAP, flags, w, h);
    out.u8(BITMAP_FMT_32BIT)
        .u8(BITMAP_TOP_DOWN)
        .u32(w)
        .u32(h)
        .u32(stride as u32)
        .u32(0); // no palette
    let start = rows.start as usize * stride;
    let end = rows.end as usize * stride;
    if let Some(data) = px.bgrx.get(start..end) {
        out.bytes(data);
    }
}

/// When GLZ images are wrapped in zlib (QEMU's `zlib-glz-wan-compression`), and when
/// photographic images go as lossy JPEG (QEMU's `jpeg-wan-compression`, same values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WanCompression {
    /// When the client's link is the bottleneck: its send queue already holds a backlog when
    /// the image is encoded (more CPU per image buys fewer bytes on a link that is full).
    #[default]
    Auto,
    Never,
    Always,
}

impl FromStr for WanCompression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => WanCompression::Auto,
            "never" | "off" => WanCompression::Never,
            "always" | "on" => WanCompression::Always,
            other => {
                return Err(format!(
                    "unknown wan compression '{other}' (auto, never, always)"
                ));
            }
        })
    }
}

impl fmt::Display for WanCompression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WanCompression::Auto => "auto",
            WanCompression::Never => "never",
            WanCompression::Always => "always",
        })
    }
}

/// Images smaller than this many bytes of pixels go raw: a compressed stream's own header
/// would cost about as much (spice-server's threshold too).
const MIN_SIZE_TO_COMPRESS: usize = 54;
/// GLZ payloads at least this large are worth wrapping in zlib (spice-server's threshold).
const MIN_ZLIB_GLZ_SIZE: usize = 100;
/// zlib level for ZLIB_GLZ_RGB (spice-server's).
const ZLIB_LEVEL: u32 = 3;

/// Counters of one client's image encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeStats {
    pub raw: u64,
    pub quic: u64,
    pub lz: u64,
    pub glz: u64,
    pub zlib_glz: u64,
    pub lz4: u64,
    /// Lossy JPEG images (slow links, `jpeg-wan-compression`), and the areas they covered
    /// sent again losslessly once the link allowed or they went still.
    pub jpeg: u64,
    pub lossless_resends: u64,
    /// Images the client already had: sent as FROM_CACHE.
    pub from_cache: u64,
    /// Bytes of pixels given, and bytes of payload produced.
    pub pixel_bytes: u64,
    pub payload_bytes: u64,
}

impl EncodeStats {
    fn add(&mut self, o: &EncodeStats) {
        self.raw += o.raw;
        self.quic += o.quic;
        self.lz += o.lz;
        self.glz += o.glz;
        self.zlib_glz += o.zlib_glz;
        self.lz4 += o.lz4;
        self.jpeg += o.jpeg;
        self.lossless_resends += o.lossless_resends;
        self.from_cache += o.from_cache;
        self.pixel_bytes += o.pixel_bytes;
        self.payload_bytes += o.payload_bytes;
    }
}

/// What every display client's encoder did, summed over the server's life: what was sent in
/// which format, for the control socket and the tests.
#[derive(Debug, Default)]
pub struct ImageTotals(std::sync::Mutex<EncodeStats>);

impl ImageTotals {
    pub fn snapshot(&self) -> EncodeStats {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, s: &EncodeStats) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).add(s);
    }
}

/// One client's image encoder: the user's choice, what the client can decode, and the
/// client's GLZ dictionary.
pub struct ImageEncoder {
    compression: Compression,
    wan: WanCompression,
    lz4_cap: bool,
    glz: Option<saffron_codec::glz::Encoder>,
    next_id: u64,
    stats: EncodeStats,
    /// Where else each image is counted: the server's totals, the channel's own.
    totals: Vec<std::sync::Arc<ImageTotals>>,
}

impl ImageEncoder {
    /// An encoder for a client that announced (or not) the LZ4 cap. GLZ stays off until the
    /// client's DISPLAY_INIT gives a dictionary window ([`ImageEncoder::set_glz_window`]).
    pub fn new(compression: Compression, wan: WanCompression, lz4_cap: bool) -> ImageEncoder {
        ImageEncoder {
            compression,
            wan,
            lz4_cap,
            glz: None,
            next_id: 0,
            stats: EncodeStats::default(),
            totals: Vec::new(),
        }
    }

    /// Also counts into `totals` (the server's, a channel's).
    pub fn count_into(&mut self, totals: std::sync::Arc<ImageTotals>) {
        self.totals.push(totals);
    }

    /// The client's GLZ dictionary window, in pixels (0 = the client has no GLZ decoder, as
    /// spice-html5). Bounded by [`saffron_codec::glz::MAX_WINDOW_PIXELS`] (spice-gtk's
    /// largest), so a client's absurd window costs us no more memory than a real one.
    pub fn set_glz_window(&mut self, window: i64) {
        let max = i64::from(saffron_codec::glz::MAX_WINDOW_PIXELS);
        if window > max {
            tracing::info!(
                window,
                max,
                "client's GLZ dictionary window is larger than we keep; using {max} pixels"
            );
        }
        self.glz = (window > 0)
            .then(|| saffron_codec::glz::Encoder::new(u32::try_from(window.min(max)).unwrap_or(0)));
    }

    pub fn stats(&self) -> EncodeStats {
        self.stats
    }

    /// The whole SpiceImage (descriptor and payload) for `px`, encoded as the user and the
    /// client allow. `congested`: the client's link is behind (see [`WanCompression::Auto`]).
    pub fn encode(&mut self, px: &Pixels, congested: bool) -> Vec<u8> {
        self.encode_cached(px, congested, None)
    }

    /// [`ImageEncoder::encode`], with CACHE_ME under `cache_id` when given.
    pub fn encode_cached(
        &mut self,
        px: &Pixels,
        congested: bool,
        cache_id: Option<u64>,
    ) -> Vec<u8> {
        let mut counted = EncodeStats::default();
        let out = self.encode_counted(px, congested, cache_id, &mut counted);
        self.count(&counted);
        out
    }

    /// A FROM_CACHE image: the client draws what it keeps under `id`.
    pub fn from_cache(&mut self, id: u64, width: u32, height: u32) -> Vec<u8> {
        let mut out = Writer::with_capacity(DESCRIPTOR_SIZE);
        descriptor(&mut out, id, image_type::FROM_CACHE, 0, width, height);
        self.count(&EncodeStats {
            from_cache: 1,
            pixel_bytes: u64::from(width) * u64::from(height) * 4,
            ..EncodeStats::default()
        });
        out.buf
    }

    /// Adds what one image cost to this client's stats and the server's totals.
    fn count(&mut self, delta: &EncodeStats) {
        self.stats.add(delta);
        for t in &self.totals {
            t.add(delta);
        }
    }

    /// `px` as a lossy JPEG SpiceImage at `quality`, if it is photographic enough to be
    /// worth it (JPEG blurs text and flat UI and often makes it larger) and encodes; `None`
    /// leaves it to the lossless path.
    pub fn encode_jpeg(&mut self, px: &Pixels, quality: u8) -> Option<Vec<u8>> {
        use saffron_codec::graduality::{Graduality, estimate};
        let img = saffron_codec::ImageRef::packed(
            px.width,
            px.height,
            saffron_codec::PixelFormat::Rgb32,
            &px.bgrx,
        )
        .ok()?;
        if px.bgrx.len() < MIN_SIZE_TO_COMPRESS || estimate(&img) == Graduality::Low {
            return None;
        }
        let jpeg = match saffron_codec::mjpeg::encode(&img, quality) {
            Ok(j) => j,
            Err(e) => {
                tracing::debug!(%e, "image not encoded as JPEG; sent lossless");
                return None;
            }
        };
        let size = u32::try_from(jpeg.len()).ok()?;
        self.next_id = self.next_id.wrapping_add(1);
        let mut out = Writer::with_capacity(DESCRIPTOR_SIZE + 4 + jpeg.len());
        descriptor(
            &mut out,
            self.next_id,
            image_type::JPEG,
            0,
            px.width,
            px.height,
        );
        out.u32(size).bytes(&jpeg);
        self.count(&EncodeStats {
            jpeg: 1,
            pixel_bytes: px.bgrx.len() as u64,
            payload_bytes: jpeg.len() as u64,
            ..EncodeStats::default()
        });
        Some(out.buf)
    }

    /// Counts an area sent again losslessly after a JPEG.
    pub fn note_lossless_resend(&mut self) {
        self.count(&EncodeStats {
            lossless_resends: 1,
            ..EncodeStats::default()
        });
    }

    /// Counts a raw image the caller sent itself (uncompressed row bands).
    pub fn note_raw(&mut self, pixel_bytes: usize) {
        self.count(&EncodeStats {
            raw: 1,
            pixel_bytes: pixel_bytes as u64,
            payload_bytes: pixel_bytes as u64,
            ..EncodeStats::default()
        });
    }

    /// Encodes `px`, counting what it did into `stats`.
    fn encode_counted(
        &mut self,
        px: &Pixels,
        congested: bool,
        cache_id: Option<u64>,
        stats: &mut EncodeStats,
    ) -> Vec<u8> {
        self.next_id = self.next_id.wrapping_add(1);
        let (id, flags) = match cache_id {
            Some(id) => (id, IMAGE_CACHE_ME),
            None => (self.next_id, 0),
        };
        let rows = 0..px.height;
        let mut out = Writer::with_capacity(DESCRIPTOR_SIZE + 64);
        let Ok(img) = saffron_codec::ImageRef::packed(
            px.width,
            px.height,
            saffron_codec::PixelFormat::Rgb32,
            &px.bgrx,
        ) else {
            raw_bitmap_flagged(&mut out, id, flags, px, rows);
            return out.buf;
        };
        stats.pixel_bytes += px.bgrx.len() as u64;
        let kind = self.choose(&img);
        let encoded = match kind {
            Kind::Raw => None,
            Kind::Quic => saffron_codec::quic::encode(&img)
                .ok()
                .map(|d| (image_type::QUIC, d)),
            Kind::Lz => saffron_codec::lz::encode(&img)
                .ok()
                .map(|d| (image_type::LZ_RGB, d)),
            Kind::Lz4 => saffron_codec::lz4::encode(&img)
                .ok()
                .map(|d| (image_type::LZ4, d)),
            // An image GLZ refuses (as large as the client's window) goes as LZ.
            Kind::Glz => self.glz(&img, congested).or_else(|| {
                saffron_codec::lz::encode(&img)
                    .ok()
                    .map(|d| (image_type::LZ_RGB, d))
            }),
        };
        // Anything but GLZ may fall back to raw when compression did not pay: GLZ may not,
        // since the client's dictionary must hold every image the encoder's does.
        let raw_size = px.bgrx.len() + BITMAP_HEADER_SIZE;
        match encoded {
            Some((ty, data))
                if matches!(ty, image_type::GLZ_RGB | image_type::ZLIB_GLZ_RGB)
                    || data.len() + 8 < raw_size =>
            {
                descriptor(&mut out, id, ty, flags, px.width, px.height);
                if ty != image_type::ZLIB_GLZ_RGB {
                    out.u32(data.len() as u32);
                }
                out.bytes(&data);
                stats.payload_bytes += data.len() as u64;
                match ty {
                    image_type::QUIC => stats.quic += 1,
                    image_type::LZ_RGB => stats.lz += 1,
                    image_type::LZ4 => stats.lz4 += 1,
                    image_type::GLZ_RGB => stats.glz += 1,
                    _ => stats.zlib_glz += 1,
                }
            }
            _ => {
                raw_bitmap_flagged(&mut out, id, flags, px, rows);
                stats.raw += 1;
                stats.payload_bytes += px.bgrx.len() as u64;
            }
        }
        out.buf
    }

    /// GLZ, wrapped in zlib when the user or the link asks for it. The ZLIB_GLZ_RGB payload
    /// carries its own two sizes, written here.
    fn glz(&mut self, img: &saffron_codec::ImageRef<'_>, congested: bool) -> Option<(u8, Vec<u8>)> {
        let glz = self.glz.as_mut()?.encode(img).ok()?;
        let wrap = match self.wan {
            WanCompression::Always => true,
            WanCompression::Never => false,
            WanCompression::Auto => congested,
        };
        if wrap
            && glz.len() >= MIN_ZLIB_GLZ_SIZE
            && let Ok(z) = saffron_codec::zlib_glz::compress(&glz, ZLIB_LEVEL)
            && z.len() < glz.len()
        {
            let mut payload = Writer::with_capacity(8 + z.len());
            payload.u32(glz.len() as u32).u32(z.len() as u32).bytes(&z);
            return Some((image_type::ZLIB_GLZ_RGB, payload.buf));
        }
        Some((image_type::GLZ_RGB, glz))
    }

    /// The codec for `img` under the user's choice and the client's abilities.
    fn choose(&self, img: &saffron_codec::ImageRef<'_>) -> Kind {
        use saffron_codec::graduality::{Graduality, estimate};
        let bytes = img.width() as usize * img.height() as usize * 4;
        if self.compression == Compression::Off || bytes < MIN_SIZE_TO_COMPRESS {
            return Kind::Raw;
        }
        let glz = if self.glz.is_some() {
            Kind::Glz
        } else {
            Kind::Lz
        };
        match self.compression {
            Compression::Off => Kind::Raw,
            Compression::Quic => Kind::Quic,
            Compression::Lz => Kind::Lz,
            Compression::Glz => glz,
            Compression::Lz4 if self.lz4_cap => Kind::Lz4,
            Compression::Lz4 => Kind::Lz,
            Compression::AutoGlz | Compression::AutoLz => {
                if estimate(img) == Graduality::High {
                    Kind::Quic
                } else if self.compression == Compression::AutoGlz {
                    glz
                } else {
                    Kind::Lz
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Raw,
    Quic,
    Lz,
    Glz,
    Lz4,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_names_round_trip() {
        for name in Compression::NAMES {
            let c: Compression = name.parse().unwrap();
            assert_eq!(c.to_string(), *name);
        }
        assert!("png".parse::<Compression>().is_err());
        assert_eq!("never".parse::<WanCompression>(), Ok(WanCompression::Never));
        assert!("sometimes".parse::<WanCompression>().is_err());
    }

    /// A client's DISPLAY_INIT decides the GLZ dictionary, within our bound: an absurd window
    /// is cut to spice-gtk's largest, none (0, as spice-html5) or a negative one means no GLZ.
    #[test]
    fn the_glz_window_is_the_clients_within_our_bound() {
        let mut e = ImageEncoder::new(Compression::Glz, WanCompression::Never, false);
        let window = |e: &ImageEncoder| e.glz.as_ref().map(|g| g.window_pixels());
        e.set_glz_window(i64::from(i32::MAX));
        assert_eq!(window(&e), Some(saffron_codec::glz::MAX_WINDOW_PIXELS));
        e.set_glz_window(3 << 20);
        assert_eq!(window(&e), Some(3 << 20));
        e.set_glz_window(0);
        assert_eq!(window(&e), None);
        e.set_glz_window(-5);
        assert_eq!(window(&e), None);
    }

    /// An image a codec would not shrink goes raw (noise through LZ4); GLZ, whose dictionary
    /// the client must mirror, always sends what it encoded.
    #[test]
    fn incompressible_images_go_raw_except_with_glz() {
        let mut seed = 1u32;
        let bgrx: Vec<u8> = (0..64 * 64 * 4)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (seed >> 16) as u8
            })
            .collect();
        let px = Pixels {
            width: 64,
            height: 64,
            bgrx,
            guest_id: None,
        };
        let mut lz4 = ImageEncoder::new(Compression::Lz4, WanCompression::Never, true);
        let img = lz4.encode(&px, false);
        assert_eq!(img[8], image_type::BITMAP);
        assert_eq!(lz4.stats().raw, 1);
        let mut glz = ImageEncoder::new(Compression::Glz, WanCompression::Never, false);
        glz.set_glz_window(1 << 20);
        let img = glz.encode(&px, false);
        assert_eq!(img[8], image_type::GLZ_RGB);
    }
}
