//! What drawings read: guest bitmaps (already copied out of guest memory by the parser),
//! other surfaces, brushes and 1-bpp masks — turned into rows of pixels.
//!
//! Bitmap decoding follows spice-common's `spice_bitmap_to_pixman`: rows are stored
//! bottom-up unless the TOP_DOWN flag is set; 1- and 4-bpp formats index the palette
//! (a missing entry reads as 0); 16-bit pixels are x555 widened by bit replication; 24-bit
//! pixels are B, G, R bytes; 32-bit pixels are copied as they are, unused top byte included.
//! The 1BIT_LE and 4BIT_LE formats, which spice's canvas refuses, are decoded the way their
//! names say (leftmost pixel in the least significant bit / low nibble).

use saffron_ring::abi::QXL_IMAGE_HIGH_BITS_SET;
use saffron_ring::parse::{Bitmap, BitmapFormat, Image, Point, QMask, SurfaceFormat};
use vm_memory::GuestMemory;

use super::{Limitation, RenderError};
use crate::pixel::{
    argb_to_native, decode_native, native_to_argb, rgb555_to_argb, span_byte_range,
};
use crate::surface::{Surface, SurfaceTable};
use saffron_ring::parse::Rect;

/// A guest bitmap read row by row.
pub(crate) struct BitmapRows<'a> {
    bitmap: &'a Bitmap,
    /// Palette entries; indices past the end read as 0.
    palette: Vec<u32>,
    /// The guest asks for the top byte of 32-bit pixels to be set (HIGH_BITS_SET).
    high_bits: bool,
}

impl<'a> BitmapRows<'a> {
    pub(crate) fn new(bitmap: &'a Bitmap) -> Self {
        BitmapRows {
            bitmap,
            palette: bitmap
                .palette
                .as_ref()
                .map(|p| p.entries.clone())
                .unwrap_or_default(),
            high_bits: bitmap.descriptor.flags & QXL_IMAGE_HIGH_BITS_SET != 0
                && !matches!(bitmap.format, BitmapFormat::Rgba | BitmapFormat::Bit8A),
        }
    }

    /// The stored bytes of image row `y` (0 = top).
    fn data_row(&self, y: u32) -> Option<&'a [u8]> {
        let b = self.bitmap;
        if y >= b.height {
            return None;
        }
        let row = if b.top_down { y } else { b.height - 1 - y };
        let start = usize::try_from(u64::from(row) * u64::from(b.stride)).ok()?;
        let end = start.checked_add(usize::try_from(b.stride).ok()?)?;
        b.data.get(start..end)
    }

    /// The raw little-endian bytes of pixels `[x, x + n)` of row `y`, when the bitmap's
    /// 32-bit pixels are used as they are (the COPY fast path).
    pub(crate) fn raw32(&self, x: u32, y: u32, n: u32) -> Option<&'a [u8]> {
        if !matches!(self.bitmap.format, BitmapFormat::Bit32 | BitmapFormat::Rgba) || self.high_bits
        {
            return None;
        }
        let start = usize::try_from(x).ok()?.checked_mul(4)?;
        let end = start.checked_add(usize::try_from(n).ok()?.checked_mul(4)?)?;
        self.data_row(y)?.get(start..end)
    }

    fn entry(&self, index: u32) -> u32 {
        self.palette.get(index as usize).copied().unwrap_or(0)
    }

    /// Canonical a8r8g8b8 values of pixels `[x, x + out.len())` of row `y`. Pixels outside
    /// the bitmap read as 0 (callers stay inside).
    pub(crate) fn argb_row(&self, x: u32, y: u32, out: &mut [u32]) {
        let Some(row) = self.data_row(y) else {
            out.fill(0);
            return;
        };
        let byte = |i: u64| {
            usize::try_from(i)
                .ok()
                .and_then(|i| row.get(i))
                .copied()
                .unwrap_or(0)
        };
        let x = u64::from(x);
        match self.bitmap.format {
            BitmapFormat::Bit1Le | BitmapFormat::Bit1Be => {
                let lsb = self.bitmap.format == BitmapFormat::Bit1Le;
                for (i, o) in (x..).zip(out.iter_mut()) {
                    let b = byte(i / 8);
                    let bit = if lsb { b >> (i % 8) } else { b >> (7 - i % 8) } & 1;
                    *o = self.entry(u32::from(bit));
                }
            }
            BitmapFormat::Bit4Le | BitmapFormat::Bit4Be => {
                let low_first = self.bitmap.format == BitmapFormat::Bit4Le;
                for (i, o) in (x..).zip(out.iter_mut()) {
                    let b = byte(i / 2);
                    let first = i % 2 == 0;
                    let nibble = if first == low_first { b & 0x0f } else { b >> 4 };
                    *o = self.entry(u32::from(nibble));
                }
            }
            BitmapFormat::Bit8 => {
                for (i, o) in (x..).zip(out.iter_mut()) {
                    *o = self.entry(u32::from(byte(i)));
                }
            }
            BitmapFormat::Bit8A => {
                for (i, o) in (x..).zip(out.iter_mut()) {
                    *o = u32::from(byte(i)) << 24;
                }
            }
            BitmapFormat::Bit16 => {
                for (i, o) in (x..).zip(out.iter_mut()) {
                    let v = u32::from(byte(i * 2)) | u32::from(byte(i * 2 + 1)) << 8;
                    *o = rgb555_to_argb(v);
                }
            }
            BitmapFormat::Bit24 => {
                for (i, o) in (x..).zip(out.iter_mut()) {
                    let (b, g, r) = (byte(i * 3), byte(i * 3 + 1), byte(i * 3 + 2));
                    *o = u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b);
                }
            }
            BitmapFormat::Bit32 | BitmapFormat::Rgba => {
                for (i, o) in (x..).zip(out.iter_mut()) {
                    *o = u32::from_le_bytes([
                        byte(i * 4),
                        byte(i * 4 + 1),
                        byte(i * 4 + 2),
                        byte(i * 4 + 3),
                    ]);
                }
            }
        }
        if self.high_bits {
            out.iter_mut().for_each(|v| *v |= 0xff00_0000);
        }
    }

    /// Whether the decoded top byte is an alpha.
    pub(crate) fn has_alpha(&self) -> bool {
        matches!(self.bitmap.format, BitmapFormat::Rgba | BitmapFormat::Bit8A)
    }
}

enum Pixels<'a, M> {
    Bitmap(BitmapRows<'a>),
    Surface {
        surface: Surface,
        mem: &'a M,
        /// Rows read before the drawing started (when the source is the destination).
        snapshot: Option<Snapshot>,
    },
}

/// Rows of a surface copied out before a drawing into that same surface.
struct Snapshot {
    area: Rect,
    /// Bytes per copied row (pixels `area.left..area.right`, in the surface's encoding).
    row_len: usize,
    bytes: Vec<u8>,
}

impl Snapshot {
    /// The copied bytes holding pixels `[x, x + n)` of row `y`, if the copy has them all.
    fn row_bytes(&self, format: SurfaceFormat, x: u32, y: u32, n: usize) -> Option<&[u8]> {
        let a = &self.area;
        let (xi, yi, n64) = (i64::from(x), i64::from(y), n as i64);
        let inside = yi >= i64::from(a.top)
            && yi < i64::from(a.bottom)
            && xi >= i64::from(a.left)
            && xi + n64 <= i64::from(a.right);
        if !inside {
            return None;
        }
        let (base, _) = span_byte_range(format, a.left as u32, 0);
        let (start, end) = span_byte_range(format, x, u32::try_from(n).ok()?);
        let row = usize::try_from(yi - i64::from(a.top)).ok()?;
        let offset = row.checked_mul(self.row_len)?;
        let from = offset.checked_add(usize::try_from(start - base).ok()?)?;
        let to = offset.checked_add(usize::try_from(end - base).ok()?)?;
        self.bytes.get(from..to)
    }
}

/// A source image of a drawing, of any kind the renderer reads.
pub(crate) struct ImageSource<'a, M> {
    pixels: Pixels<'a, M>,
    width: u32,
    height: u32,
    /// The top byte of the canonical value is an alpha.
    alpha: bool,
    scratch: Vec<u8>,
    row: Vec<u32>,
}

impl<'a, M: GuestMemory> ImageSource<'a, M> {
    /// Opens `image`. `surface_has_alpha` says whether an xRGB surface's top byte should be
    /// taken as alpha (ALPHA_BLEND's SRC_SURFACE_HAS_ALPHA). Fails when a referenced surface
    /// does not exist; QUIC images are a limitation.
    pub(crate) fn open(
        image: &'a Image,
        mem: &'a M,
        surfaces: &SurfaceTable,
        surface_has_alpha: bool,
    ) -> Result<Result<Self, Limitation>, RenderError> {
        let (pixels, width, height, alpha) = match image {
            Image::Bitmap(b) => {
                let rows = BitmapRows::new(b);
                let alpha = rows.has_alpha();
                (Pixels::Bitmap(rows), b.width, b.height, alpha)
            }
            Image::Surface { surface_id, .. } => {
                let surface = *surfaces.get(*surface_id)?;
                let alpha = match surface.format {
                    SurfaceFormat::Xrgb8888 => surface_has_alpha,
                    SurfaceFormat::Rgb555 | SurfaceFormat::Rgb565 => false,
                    SurfaceFormat::Argb8888 | SurfaceFormat::A8 | SurfaceFormat::A1 => true,
                };
                let pixels = Pixels::Surface {
                    surface,
                    mem,
                    snapshot: None,
                };
                (pixels, surface.width, surface.height, alpha)
            }
            Image::Quic { .. } => return Ok(Err(Limitation::QuicImage)),
        };
        Ok(Ok(ImageSource {
            pixels,
            width,
            height,
            alpha,
            scratch: Vec::new(),
            row: Vec::new(),
        }))
    }

    pub(crate) fn width(&self) -> u32 {
        self.width
    }

    pub(crate) fn height(&self) -> u32 {
        self.height
    }

    pub(crate) fn has_alpha(&self) -> bool {
        self.alpha
    }

    /// Reads `area` of a surface source now, so a drawing into the same surface cannot
    /// change what is read later (a copy within one surface behaves like memmove). The
    /// copy keeps the surface's own encoding, so it is never larger than the surface.
    pub(crate) fn snapshot(&mut self, area: Rect) -> Result<(), RenderError> {
        let Pixels::Surface {
            surface,
            mem,
            snapshot,
        } = &mut self.pixels
        else {
            return Ok(());
        };
        let area = crate::region::intersect(area, super::surface_rect(surface));
        let (x0, w) = (area.left as u32, (area.right - area.left) as u32);
        let (start, end) = span_byte_range(surface.format, x0, w);
        let row_len = usize::try_from(end - start).unwrap_or(0);
        let mut bytes = Vec::new();
        if row_len > 0 {
            for y in area.top..area.bottom {
                surface.read_bytes(*mem, x0, y as u32, w, &mut self.scratch)?;
                bytes.extend_from_slice(&self.scratch);
            }
        }
        *snapshot = Some(Snapshot {
            area,
            row_len,
            bytes,
        });
        Ok(())
    }

    /// Native values of the source's own format (surfaces) for `[x, x + n)` of row `y`,
    /// which must be inside the source.
    fn surface_row(
        surface: &Surface,
        mem: &M,
        snapshot: &Option<Snapshot>,
        x: u32,
        y: u32,
        out: &mut [u32],
        scratch: &mut Vec<u8>,
    ) -> Result<(), RenderError> {
        if let Some(snap) = snapshot
            && let Some(bytes) = snap.row_bytes(surface.format, x, y, out.len())
        {
            decode_native(surface.format, x, bytes, out);
            return Ok(());
        }
        surface.read_pixels(mem, x, y, out, scratch)?;
        Ok(())
    }

    /// Canonical a8r8g8b8 values of `[x, x + out.len())` of row `y`. Opaque sources get
    /// their top byte as stored (see [`Self::has_alpha`]).
    pub(crate) fn argb_row(&mut self, x: u32, y: u32, out: &mut [u32]) -> Result<(), RenderError> {
        self.check(x, y, out.len())?;
        match &self.pixels {
            Pixels::Bitmap(rows) => rows.argb_row(x, y, out),
            Pixels::Surface {
                surface,
                mem,
                snapshot,
            } => {
                Self::surface_row(surface, mem, snapshot, x, y, out, &mut self.scratch)?;
                let format = surface.format;
                out.iter_mut().for_each(|v| *v = native_to_argb(format, *v));
            }
        }
        Ok(())
    }

    /// Values of `[x, x + out.len())` of row `y` in `format`'s native encoding.
    pub(crate) fn native_row(
        &mut self,
        format: SurfaceFormat,
        x: u32,
        y: u32,
        out: &mut [u32],
    ) -> Result<(), RenderError> {
        self.check(x, y, out.len())?;
        let alpha = self.alpha;
        match &self.pixels {
            Pixels::Surface {
                surface,
                mem,
                snapshot,
            } if surface.format == format => {
                Self::surface_row(surface, mem, snapshot, x, y, out, &mut self.scratch)?;
            }
            _ => {
                self.argb_row(x, y, out)?;
                out.iter_mut()
                    .for_each(|v| *v = argb_to_native(format, *v, alpha));
            }
        }
        Ok(())
    }

    /// The stored bytes of a 32-bit bitmap's pixels, when they can be copied as they are.
    pub(crate) fn raw32(&self, x: u32, y: u32, n: u32) -> Option<&'a [u8]> {
        match &self.pixels {
            Pixels::Bitmap(rows) => rows.raw32(x, y, n),
            Pixels::Surface { .. } => None,
        }
    }

    /// Reads the whole of row `y` in `format` into an internal buffer and returns it.
    pub(crate) fn full_native_row(
        &mut self,
        format: SurfaceFormat,
        y: u32,
    ) -> Result<Vec<u32>, RenderError> {
        let mut row = std::mem::take(&mut self.row);
        row.resize(self.width as usize, 0);
        let r = self.native_row(format, 0, y, &mut row);
        r.map(|()| row)
    }

    /// Gives back a buffer from [`Self::full_native_row`] for reuse.
    pub(crate) fn recycle(&mut self, row: Vec<u32>) {
        self.row = row;
    }

    fn check(&self, x: u32, y: u32, n: usize) -> Result<(), RenderError> {
        if y < self.height && u64::from(x) + n as u64 <= u64::from(self.width) {
            Ok(())
        } else {
            Err(RenderError::SourceOutside {
                x,
                y,
                n: u32::try_from(n).unwrap_or(u32::MAX),
                width: self.width,
                height: self.height,
            })
        }
    }
}

/// A brush ready to paint rows in the destination's format.
pub(crate) enum BrushSource<'a, M> {
    /// A colour (BRUSH_TYPE_NONE paints 0, as spice's canvas does for ROPs).
    Solid(u32),
    /// An image tiled so that its pixel (0, 0) lands on `pos` (and every multiple of its
    /// size away from it).
    Tile {
        image: ImageSource<'a, M>,
        pos: Point,
        /// The tile row currently decoded and its index.
        cached: Option<(u32, Vec<u32>)>,
    },
}

impl<'a, M: GuestMemory> BrushSource<'a, M> {
    pub(crate) fn open(
        brush: &'a saffron_ring::parse::Brush,
        mem: &'a M,
        surfaces: &SurfaceTable,
    ) -> Result<Result<Self, Limitation>, RenderError> {
        use saffron_ring::parse::Brush;
        Ok(Ok(match brush {
            Brush::None => BrushSource::Solid(0),
            Brush::Solid(c) => BrushSource::Solid(*c),
            Brush::Pattern { image, pos } => {
                match ImageSource::open(image, mem, surfaces, false)? {
                    Ok(image) => BrushSource::Tile {
                        image,
                        pos: *pos,
                        cached: None,
                    },
                    Err(l) => return Ok(Err(l)),
                }
            }
        }))
    }

    /// Brush pixels for `[x, x + out.len())` of row `y` in `format`.
    pub(crate) fn row(
        &mut self,
        format: SurfaceFormat,
        x: i32,
        y: i32,
        out: &mut [u32],
    ) -> Result<(), RenderError> {
        match self {
            BrushSource::Solid(c) => out.fill(*c),
            BrushSource::Tile { image, pos, cached } => {
                let (w, h) = (i64::from(image.width()), i64::from(image.height()));
                if w == 0 || h == 0 {
                    out.fill(0);
                    return Ok(());
                }
                let ty = (i64::from(y) - i64::from(pos.y)).rem_euclid(h) as u32;
                let row = match cached.take() {
                    Some((cy, row)) if cy == ty => row,
                    other => {
                        if let Some((_, old)) = other {
                            image.recycle(old);
                        }
                        image.full_native_row(format, ty)?
                    }
                };
                let mut tx = (i64::from(x) - i64::from(pos.x)).rem_euclid(w) as usize;
                for o in out.iter_mut() {
                    *o = row.get(tx).copied().unwrap_or(0);
                    tx += 1;
                    if tx as i64 == w {
                        tx = 0;
                    }
                }
                *cached = Some((ty, row));
            }
        }
        Ok(())
    }
}

/// A 1-bpp mask limiting where a drawing paints (QMask).
///
/// As in spice's `canvas_mask_pixman`: mask pixel `(0, 0)` sits at `bbox.top_left - pos`;
/// a set bit lets the drawing through (a clear one with the INVERS flag); outside the
/// mask nothing is drawn, inverted or not. Bits are least significant first for
/// 1BIT_LE, most significant first for 1BIT_BE; rows bottom-up unless TOP_DOWN.
pub(crate) struct Mask<'a> {
    rows: BitmapRows<'a>,
    lsb_first: bool,
    invert: bool,
    width: u32,
    height: u32,
    origin_x: i64,
    origin_y: i64,
}

impl<'a> Mask<'a> {
    pub(crate) fn open(mask: &'a QMask, bbox: Rect) -> Result<Self, Limitation> {
        let Image::Bitmap(b) = mask.bitmap.as_ref() else {
            return Err(Limitation::MaskNotBitmap);
        };
        let lsb_first = match b.format {
            BitmapFormat::Bit1Le => true,
            BitmapFormat::Bit1Be => false,
            _ => return Err(Limitation::MaskFormat),
        };
        Ok(Mask {
            rows: BitmapRows::new(b),
            lsb_first,
            invert: mask.flags & saffron_ring::abi::SPICE_MASK_FLAGS_INVERS != 0,
            width: b.width,
            height: b.height,
            origin_x: i64::from(bbox.left) - i64::from(mask.pos.x),
            origin_y: i64::from(bbox.top) - i64::from(mask.pos.y),
        })
    }

    /// Appends to `out` the runs of `[x0, x1)` on row `y` that the mask lets through.
    pub(crate) fn split(&self, y: i32, x0: i32, x1: i32, out: &mut Vec<(i32, i32)>) {
        let my = i64::from(y) - self.origin_y;
        let Some(row) = u32::try_from(my)
            .ok()
            .filter(|my| *my < self.height)
            .and_then(|my| self.rows.data_row(my))
        else {
            return;
        };
        let lo = i64::from(x0).max(self.origin_x);
        let hi = i64::from(x1).min(self.origin_x + i64::from(self.width));
        let mut run: Option<i64> = None;
        for x in lo..hi {
            let mx = (x - self.origin_x) as u64;
            let byte = row.get((mx / 8) as usize).copied().unwrap_or(0);
            let bit = if self.lsb_first {
                byte >> (mx % 8)
            } else {
                byte >> (7 - mx % 8)
            } & 1;
            let on = (bit != 0) != self.invert;
            match (on, run) {
                (true, None) => run = Some(x),
                (false, Some(start)) => {
                    out.push((start as i32, x as i32));
                    run = None;
                }
                _ => {}
            }
        }
        if let Some(start) = run {
            out.push((start as i32, hi as i32));
        }
    }
}
