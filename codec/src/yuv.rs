//! BGRX ↔ I420 (planar Y, then U and V at half resolution both ways), BT.601 limited range:
//! what video encoders such as libvpx take and what their decoders give back. Streams are
//! cut from our own surfaces, so the conversion is exact arithmetic on checked sizes; odd
//! widths and heights round the chroma planes up, as libvpx lays them out.

use crate::image::{ImageRef, PixelFormat};

/// Why a conversion was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum YuvError {
    #[error("a {0:?} image cannot be converted (32-bit BGRX only)")]
    Format(PixelFormat),
    #[error("plane {plane} is {have} bytes with stride {stride}, {want} needed")]
    Plane {
        plane: usize,
        have: usize,
        stride: usize,
        want: usize,
    },
}

/// Chroma planes' size for a `width x height` picture: half, rounded up.
pub fn chroma_size(width: u32, height: u32) -> (u32, u32) {
    (width.div_ceil(2), height.div_ceil(2))
}

/// One I420 picture's planes, borrowed with their strides.
pub struct Planes<'a> {
    pub y: (&'a mut [u8], usize),
    pub u: (&'a mut [u8], usize),
    pub v: (&'a mut [u8], usize),
}

fn check(plane: usize, len: usize, stride: usize, w: u32, h: u32) -> Result<(), YuvError> {
    let want = if h == 0 {
        0
    } else {
        stride * (h as usize - 1) + w as usize
    };
    if stride < w as usize || len < want {
        return Err(YuvError::Plane {
            plane,
            have: len,
            stride,
            want,
        });
    }
    Ok(())
}

fn luma(b: i32, g: i32, r: i32) -> u8 {
    (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8
}

/// Writes `image` (BGRX or BGRA, alpha ignored) into `out`, chroma averaged over each 2x2
/// block (the block's pixels inside the picture).
pub fn bgrx_to_i420(image: &ImageRef<'_>, out: Planes<'_>) -> Result<(), YuvError> {
    if !matches!(image.format(), PixelFormat::Rgb32 | PixelFormat::Rgba) {
        return Err(YuvError::Format(image.format()));
    }
    let (w, h) = (image.width(), image.height());
    let (cw, ch) = chroma_size(w, h);
    let Planes { y, u, v } = out;
    check(0, y.0.len(), y.1, w, h)?;
    check(1, u.0.len(), u.1, cw, ch)?;
    check(2, v.0.len(), v.1, cw, ch)?;
    for row in 0..h {
        let src = image.row(row);
        let dst = &mut y.0[row as usize * y.1..][..w as usize];
        for (d, p) in dst.iter_mut().zip(src.chunks_exact(4)) {
            *d = luma(i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
        }
    }
    for cy in 0..ch {
        let rows = [image.row(cy * 2), image.row((cy * 2 + 1).min(h - 1))];
        let urow = &mut u.0[cy as usize * u.1..][..cw as usize];
        let vrow = &mut v.0[cy as usize * v.1..][..cw as usize];
        for cx in 0..cw as usize {
            let (mut b, mut g, mut r) = (0i32, 0i32, 0i32);
            let xs = [cx * 2, (cx * 2 + 1).min(w as usize - 1)];
            for src in rows {
                for x in xs {
                    let p = &src[x * 4..x * 4 + 3];
                    b += i32::from(p[0]);
                    g += i32::from(p[1]);
                    r += i32::from(p[2]);
                }
            }
            let (b, g, r) = ((b + 2) >> 2, (g + 2) >> 2, (r + 2) >> 2);
            urow[cx] = (((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128) as u8;
            vrow[cx] = (((112 * r - 94 * g - 18 * b + 128) >> 8) + 128) as u8;
        }
    }
    Ok(())
}

/// The inverse: a packed BGRX picture from I420 planes (`y`, `u`, `v` with their strides),
/// as a decoder's output is shown. For tests and benchmarks (PSNR of a decoded stream).
pub fn i420_to_bgrx(
    width: u32,
    height: u32,
    y: (&[u8], usize),
    u: (&[u8], usize),
    v: (&[u8], usize),
) -> Result<Vec<u8>, YuvError> {
    let (cw, ch) = chroma_size(width, height);
    check(0, y.0.len(), y.1, width, height)?;
    check(1, u.0.len(), u.1, cw, ch)?;
    check(2, v.0.len(), v.1, cw, ch)?;
    let clamp = |x: i32| x.clamp(0, 255) as u8;
    let mut out = Vec::with_capacity(width as usize * height as usize * 4);
    for row in 0..height as usize {
        for x in 0..width as usize {
            let c = i32::from(y.0[row * y.1 + x]) - 16;
            let d = i32::from(u.0[row / 2 * u.1 + x / 2]) - 128;
            let e = i32::from(v.0[row / 2 * v.1 + x / 2]) - 128;
            let r = (298 * c + 409 * e + 128) >> 8;
            let g = (298 * c - 100 * d - 208 * e + 128) >> 8;
            let b = (298 * c + 516 * d + 128) >> 8;
            out.extend_from_slice(&[clamp(b), clamp(g), clamp(r), 0]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{corpus, mjpeg};

    fn planes(w: u32, h: u32) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let (cw, ch) = chroma_size(w, h);
        (
            vec![0; (w * h) as usize],
            vec![0; (cw * ch) as usize],
            vec![0; (cw * ch) as usize],
        )
    }

    #[test]
    fn a_photo_goes_there_and_back_within_the_colour_model() {
        for (w, h) in [(64, 48), (33, 17), (1, 1)] {
            let bgrx = corpus::photo(w, h);
            let img = ImageRef::packed(w, h, PixelFormat::Rgb32, &bgrx).unwrap();
            let (mut y, mut u, mut v) = planes(w, h);
            let cw = chroma_size(w, h).0 as usize;
            bgrx_to_i420(
                &img,
                Planes {
                    y: (&mut y, w as usize),
                    u: (&mut u, cw),
                    v: (&mut v, cw),
                },
            )
            .unwrap();
            let back = i420_to_bgrx(w, h, (&y, w as usize), (&u, cw), (&v, cw)).unwrap();
            let psnr = mjpeg::psnr(&bgrx, &back);
            assert!(psnr > 30.0, "{w}x{h}: {psnr:.1} dB");
        }
        // Grey stays grey, and the limited range's ends are where they belong.
        let grey = [128u8, 128, 128, 0].repeat(4);
        let img = ImageRef::packed(2, 2, PixelFormat::Rgb32, &grey).unwrap();
        let (mut y, mut u, mut v) = planes(2, 2);
        bgrx_to_i420(
            &img,
            Planes {
                y: (&mut y, 2),
                u: (&mut u, 1),
                v: (&mut v, 1),
            },
        )
        .unwrap();
        assert_eq!((u[0], v[0]), (128, 128));
        assert_eq!(luma(0, 0, 0), 16);
        assert_eq!(luma(255, 255, 255), 235);
    }

    #[test]
    fn short_planes_and_other_formats_are_refused() {
        let bgrx = vec![0u8; 4 * 4 * 4];
        let img = ImageRef::packed(4, 4, PixelFormat::Rgb32, &bgrx).unwrap();
        let (mut y, mut u, mut v) = planes(4, 4);
        let err = bgrx_to_i420(
            &img,
            Planes {
                y: (&mut y[..15], 4),
                u: (&mut u, 2),
                v: (&mut v, 2),
            },
        );
        assert!(matches!(err, Err(YuvError::Plane { plane: 0, .. })));
        let err = bgrx_to_i420(
            &img,
            Planes {
                y: (&mut y, 4),
                u: (&mut u, 1),
                v: (&mut v, 2),
            },
        );
        assert!(matches!(err, Err(YuvError::Plane { plane: 1, .. })));
        let rgb16 = vec![0u8; 4 * 4 * 2];
        let img = ImageRef::packed(4, 4, PixelFormat::Rgb16, &rgb16).unwrap();
        let err = bgrx_to_i420(
            &img,
            Planes {
                y: (&mut y, 4),
                u: (&mut u, 2),
                v: (&mut v, 2),
            },
        );
        assert!(matches!(err, Err(YuvError::Format(_))));
    }
}
