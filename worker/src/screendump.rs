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

/// The surface as `width × height` RGB triplets, top row first, whatever its storage
/// order. Colour formats give their colour (the unused or alpha byte of 32-bit pixels is
/// dropped, not blended); alpha-only formats (A8, A1) give their alpha as grey.
pub fn surface_rgb<M: GuestMemory>(
    mem: &M,
    surface: &Surface,
) -> Result<(u32, u32, Vec<u8>), ScreendumpError> {
    let (w, h) = (surface.width, surface.height);
    let mut rgb = Vec::with_capacity(w as usize * h as usize * 3);
    let mut row = vec![0u32; w as usize];
    let mut scratch = Vec::new();
    let alpha_only =
        has_alpha(surface.format) && surface.format != saffron_ring::parse::SurfaceFormat::Argb8888;
    for y in 0..h {
        surface.read_pixels(mem, 0, y, &mut row, &mut scratch)?;
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
    let (w, h) = (surface.width, surface.height);
    let mut out = Vec::with_capacity(w as usize * h as usize * 4);
    let mut row = vec![0u32; w as usize];
    let mut scratch = Vec::new();
    for y in 0..h {
        surface.read_pixels(mem, 0, y, &mut row, &mut scratch)?;
        for v in &row {
            let argb = native_to_argb(surface.format, *v) & 0x00ff_ffff;
            out.extend_from_slice(&argb.to_le_bytes());
        }
    }
    Ok((w, h, out))
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
}
