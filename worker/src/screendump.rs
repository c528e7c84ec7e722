//! Screendumps: a surface's pixels as 8-bit RGB, and PNG encoding of them.
//!
//! Used by tests and the control socket to see what the guest shows. The pixels are read
//! from guest memory through the same checked row accessors the renderer uses.

use thiserror::Error;
use vm_memory::GuestMemory;

use crate::pixel::{has_alpha, native_to_argb};
use crate::surface::{Surface, SurfaceError};

#[derive(Debug, Error)]
pub enum ScreendumpError {
    #[error("reading the surface failed")]
    Surface(#[from] SurfaceError),
    #[error("{len} bytes of RGB do not make a {width}x{height} image")]
    Size { width: u32, height: u32, len: usize },
    #[error("PNG encoding failed")]
    Png(#[from] png::EncodingError),
}

/// A rectangle of a surface: `width × height` pixels from column `x`, row `y`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Area {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Area {
    /// All of `surface`.
    pub fn whole(surface: &Surface) -> Self {
        Area {
            x: 0,
            y: 0,
            width: surface.width,
            height: surface.height,
        }
    }

    /// The part of this area inside `surface`, or `None` when nothing of it is.
    pub fn clipped_to(self, surface: &Surface) -> Option<Self> {
        let right = u64::from(self.x) + u64::from(self.width);
        let bottom = u64::from(self.y) + u64::from(self.height);
        let right = right.min(u64::from(surface.width));
        let bottom = bottom.min(u64::from(surface.height));
        let width = u32::try_from(right.checked_sub(u64::from(self.x))?).ok()?;
        let height = u32::try_from(bottom.checked_sub(u64::from(self.y))?).ok()?;
        (width > 0 && height > 0).then_some(Area {
            x: self.x,
            y: self.y,
            width,
            height,
        })
    }
}

/// The surface as `width × height` RGB triplets, top row first, whatever its storage
/// order. Colour formats give their colour (the unused or alpha byte of 32-bit pixels is
/// dropped, not blended); alpha-only formats (A8, A1) give their alpha as grey.
pub fn surface_rgb<M: GuestMemory>(
    mem: &M,
    surface: &Surface,
) -> Result<(u32, u32, Vec<u8>), ScreendumpError> {
    area_rgb(mem, surface, Area::whole(surface))
}

/// `area` of the surface as RGB triplets, as [`surface_rgb`] gives the whole. Fails unless
/// the area lies inside the surface.
pub fn area_rgb<M: GuestMemory>(
    mem: &M,
    surface: &Surface,
    area: Area,
) -> Result<(u32, u32, Vec<u8>), ScreendumpError> {
    let (w, h) = (area.width, area.height);
    let mut rgb = Vec::with_capacity(w as usize * h as usize * 3);
    let mut row = vec![0u32; w as usize];
    let mut scratch = Vec::new();
    let alpha_only =
        has_alpha(surface.format) && surface.format != saffron_ring::parse::SurfaceFormat::Argb8888;
    for y in 0..h {
        let sy = area_row(surface, area, y)?;
        surface.read_pixels(mem, area.x, sy, &mut row, &mut scratch)?;
        for v in &row {
            let argb = native_to_argb(surface.format, *v);
            if alpha_only {
                let a = (argb >> 24) as u8;
                rgb.extend_from_slice(&[a, a, a]);
            } else {
                rgb.extend_from_slice(&[(argb >> 16) as u8, (argb >> 8) as u8, argb as u8]);
            }
        }
    }
    Ok((w, h, rgb))
}

/// The surface as `width × height` pixels of 32-bit xRGB in little-endian byte order
/// (B, G, R, X), top row first: the layout of a Spice 32BIT bitmap, so a display channel can
/// send rows as they are. The X byte is 0.
pub fn surface_bgrx<M: GuestMemory>(
    mem: &M,
    surface: &Surface,
) -> Result<(u32, u32, Vec<u8>), ScreendumpError> {
    area_bgrx(mem, surface, Area::whole(surface))
}

/// `area` of the surface as B, G, R, X bytes (X = 0), as [`surface_bgrx`] gives the whole.
/// Fails unless the area lies inside the surface. 32-bit surfaces are copied row by row
/// without a per-pixel conversion (their bytes already are B, G, R, X/A).
pub fn area_bgrx<M: GuestMemory>(
    mem: &M,
    surface: &Surface,
    area: Area,
) -> Result<(u32, u32, Vec<u8>), ScreendumpError> {
    use saffron_ring::parse::SurfaceFormat;
    let (w, h) = (area.width, area.height);
    let row_bytes = w as usize * 4;
    let mut out = Vec::with_capacity(row_bytes * h as usize);
    let direct = matches!(
        surface.format,
        SurfaceFormat::Xrgb8888 | SurfaceFormat::Argb8888
    );
    let mut row = vec![0u32; w as usize];
    let mut scratch = Vec::new();
    for y in 0..h {
        let sy = area_row(surface, area, y)?;
        if direct {
            surface.read_bytes(mem, area.x, sy, w, &mut scratch)?;
            let start = out.len();
            out.extend_from_slice(&scratch);
            for px in out[start..].chunks_exact_mut(4) {
                px[3] = 0;
            }
            continue;
        }
        surface.read_pixels(mem, area.x, sy, &mut row, &mut scratch)?;
        for v in &row {
            let argb = native_to_argb(surface.format, *v) & 0x00ff_ffff;
            out.extend_from_slice(&argb.to_le_bytes());
        }
    }
    Ok((w, h, out))
}

/// The surface row of row `y` of `area` (an error past the last row a u32 can name; the
/// surface's own reads check the rest).
fn area_row(surface: &Surface, area: Area, y: u32) -> Result<u32, SurfaceError> {
    area.y.checked_add(y).ok_or(SurfaceError::SpanOutside {
        x: area.x,
        y: u32::MAX,
        n: area.width,
        width: surface.width,
        height: surface.height,
    })
}

/// Encodes `rgb` (`width × height` RGB triplets, top row first) as an 8-bit RGB PNG with
/// exactly those pixels.
pub fn encode_png(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, ScreendumpError> {
    let expected = u64::from(width) * u64::from(height) * 3;
    if width == 0 || height == 0 || rgb.len() as u64 != expected {
        return Err(ScreendumpError::Size {
            width,
            height,
            len: rgb.len(),
        });
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(rgb)?;
        writer.finish()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::surface::tests::{memory, xrgb};

    #[test]
    fn bottom_up_surface_dumps_top_row_first() {
        let mem = memory();
        let s = xrgb(0x1000, 2, 2, -8);
        let mut scratch = Vec::new();
        s.write_pixels(&mem, 0, 0, &[0xff11_2233, 0x0044_5566], &mut scratch)
            .unwrap();
        s.write_pixels(&mem, 0, 1, &[0x0077_8899, 0x00aa_bbcc], &mut scratch)
            .unwrap();
        let (w, h, rgb) = surface_rgb(&mem, &s).unwrap();
        assert_eq!((w, h), (2, 2));
        assert_eq!(
            rgb,
            vec![
                0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc
            ]
        );
        let png = encode_png(w, h, &rgb).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (2, 2));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(&buf[..info.buffer_size()], rgb.as_slice());
        assert!(matches!(
            encode_png(2, 2, &rgb[..11]),
            Err(ScreendumpError::Size { .. })
        ));
    }

    #[test]
    fn an_area_is_cut_out_of_the_surface() {
        let mem = memory();
        let s = xrgb(0x1000, 4, 3, 16);
        let mut scratch = Vec::new();
        for y in 0..3 {
            let row: Vec<u32> = (0..4).map(|x| y * 4 + x).collect();
            s.write_pixels(&mem, 0, y, &row, &mut scratch).unwrap();
        }
        let area = Area {
            x: 1,
            y: 1,
            width: 2,
            height: 2,
        };
        let (w, h, rgb) = area_rgb(&mem, &s, area).unwrap();
        assert_eq!((w, h), (2, 2));
        // Blue channel = the pixel's index: 5, 6 on row 1 and 9, 10 on row 2.
        let blue: Vec<u8> = rgb.chunks(3).map(|p| p[2]).collect();
        assert_eq!(blue, [5, 6, 9, 10]);
        // Areas are clipped to the surface, or refused when nothing is left.
        let wide = Area {
            x: 2,
            y: 1,
            width: 100,
            height: 100,
        };
        assert_eq!(
            wide.clipped_to(&s),
            Some(Area {
                x: 2,
                y: 1,
                width: 2,
                height: 2
            })
        );
        for outside in [
            Area {
                x: 4,
                y: 0,
                width: 1,
                height: 1,
            },
            Area {
                x: 0,
                y: 3,
                width: 1,
                height: 1,
            },
            Area {
                x: 0,
                y: 0,
                width: 0,
                height: 1,
            },
            Area {
                x: u32::MAX,
                y: u32::MAX,
                width: u32::MAX,
                height: u32::MAX,
            },
        ] {
            assert_eq!(outside.clipped_to(&s), None, "{outside:?}");
        }
        assert!(area_rgb(&mem, &s, wide).is_err(), "an unclipped area fails");
        assert_eq!(Area::whole(&s).clipped_to(&s), Some(Area::whole(&s)));
    }
}
