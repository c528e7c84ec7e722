//! The pixel layouts the codecs take and give.

use thiserror::Error;

/// Pixel layouts, as Spice bitmaps store them (little endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// 4 bytes B, G, R, X. The X byte carries nothing: encoders ignore it and decoders
    /// write 0 there.
    Rgb32,
    /// 4 bytes B, G, R, A (straight alpha).
    Rgba,
    /// 3 bytes B, G, R.
    Rgb24,
    /// A little-endian u16 per pixel, x1r5g5b5 (the top bit carries nothing; decoders write 0).
    Rgb16,
}

impl PixelFormat {
    /// Bytes per pixel.
    pub const fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb32 | PixelFormat::Rgba => 4,
            PixelFormat::Rgb24 => 3,
            PixelFormat::Rgb16 => 2,
        }
    }
}

/// Why an [`ImageRef`] cannot be built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("image of {width}x{height} is empty")]
    Empty { width: u32, height: u32 },
    #[error("stride {stride} is shorter than a row of {width} {format:?} pixels")]
    StrideTooShort {
        stride: usize,
        width: u32,
        format: PixelFormat,
    },
    #[error("{len} bytes cannot hold {height} rows of stride {stride}")]
    TooShort {
        len: usize,
        height: u32,
        stride: usize,
    },
}

/// A borrowed image: `height` top-down rows, row `y` starting at `data[y * stride]`.
#[derive(Clone, Copy, Debug)]
pub struct ImageRef<'a> {
    width: u32,
    height: u32,
    stride: usize,
    format: PixelFormat,
    data: &'a [u8],
}

impl<'a> ImageRef<'a> {
    /// Checks that `data` holds the rows it claims to, so encoders may index rows freely.
    pub fn new(
        width: u32,
        height: u32,
        stride: usize,
        format: PixelFormat,
        data: &'a [u8],
    ) -> Result<Self, ImageError> {
        if width == 0 || height == 0 {
            return Err(ImageError::Empty { width, height });
        }
        let row = (width as usize)
            .checked_mul(format.bytes_per_pixel())
            .ok_or(ImageError::StrideTooShort {
                stride,
                width,
                format,
            })?;
        if stride < row {
            return Err(ImageError::StrideTooShort {
                stride,
                width,
                format,
            });
        }
        let need = (height as usize - 1)
            .checked_mul(stride)
            .and_then(|n| n.checked_add(row));
        if need.is_none_or(|n| n > data.len()) {
            return Err(ImageError::TooShort {
                len: data.len(),
                height,
                stride,
            });
        }
        Ok(ImageRef {
            width,
            height,
            stride,
            format,
            data,
        })
    }

    /// A tightly packed image (`stride = width * bytes_per_pixel`).
    pub fn packed(
        width: u32,
        height: u32,
        format: PixelFormat,
        data: &'a [u8],
    ) -> Result<Self, ImageError> {
        let stride = (width as usize).saturating_mul(format.bytes_per_pixel());
        ImageRef::new(width, height, stride, format, data)
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn stride(&self) -> usize {
        self.stride
    }

    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// Row `y` (top-down), exactly `width * bytes_per_pixel` bytes. Panics past the last row,
    /// which only our own loops can ask for.
    pub fn row(&self, y: u32) -> &'a [u8] {
        let start = y as usize * self.stride;
        let len = self.width as usize * self.format.bytes_per_pixel();
        &self.data[start..start + len]
    }

    /// The rows one after another, without padding.
    pub fn rows(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.height).map(|y| self.row(y))
    }
}

/// A decoded image: top-down, tightly packed rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedImage {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    /// `width * height * format.bytes_per_pixel()` bytes.
    pub pixels: Vec<u8>,
}

impl DecodedImage {
    /// Whether `self` shows the same picture as `image`: equal size and format, equal pixels,
    /// the X byte of `Rgb32` and the top bit of `Rgb16` ignored.
    pub fn same_picture(&self, image: &ImageRef<'_>) -> bool {
        if self.width != image.width()
            || self.height != image.height()
            || self.format != image.format()
        {
            return false;
        }
        let row_len = self.width as usize * self.format.bytes_per_pixel();
        if self.pixels.len() != row_len * self.height as usize {
            return false;
        }
        self.pixels
            .chunks_exact(row_len)
            .zip(image.rows())
            .all(|(a, b)| match self.format {
                PixelFormat::Rgb32 => a
                    .chunks_exact(4)
                    .zip(b.chunks_exact(4))
                    .all(|(p, q)| p[..3] == q[..3]),
                PixelFormat::Rgb16 => a
                    .chunks_exact(2)
                    .zip(b.chunks_exact(2))
                    .all(|(p, q)| p[0] == q[0] && p[1] & 0x7f == q[1] & 0x7f),
                PixelFormat::Rgba | PixelFormat::Rgb24 => a == b,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_respect_the_stride() {
        let data: Vec<u8> = (0..24).collect();
        let img = ImageRef::new(2, 3, 8, PixelFormat::Rgb24, &data).unwrap();
        assert_eq!(img.row(1), &data[8..14]);
        assert_eq!(img.rows().count(), 3);
    }

    #[test]
    fn short_buffers_are_refused() {
        let data = [0u8; 10];
        assert!(matches!(
            ImageRef::new(2, 2, 8, PixelFormat::Rgb32, &data),
            Err(ImageError::TooShort { .. })
        ));
        assert!(matches!(
            ImageRef::new(3, 1, 8, PixelFormat::Rgb32, &data),
            Err(ImageError::StrideTooShort { .. })
        ));
        assert!(ImageRef::new(0, 1, 8, PixelFormat::Rgb32, &data).is_err());
    }

    #[test]
    fn same_picture_ignores_the_x_byte() {
        let a = [1, 2, 3, 0xff];
        let img = ImageRef::packed(1, 1, PixelFormat::Rgb32, &a).unwrap();
        let d = DecodedImage {
            width: 1,
            height: 1,
            format: PixelFormat::Rgb32,
            pixels: vec![1, 2, 3, 0],
        };
        assert!(d.same_picture(&img));
    }
}
