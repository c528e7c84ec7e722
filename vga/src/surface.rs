//! The picture a render produces.

/// A 32-bit BGRX image: each pixel is `0x00RRGGBB`, i.e. bytes B, G, R, X in little-endian
/// memory, rows packed (stride = width).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Surface {
    width: u32,
    height: u32,
    pixels: Vec<u32>,
}

impl Surface {
    /// A black surface.
    pub fn new(width: u32, height: u32) -> Self {
        Surface {
            width,
            height,
            pixels: vec![0; width as usize * height as usize],
        }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Pixels, row after row.
    pub fn pixels(&self) -> &[u32] {
        &self.pixels
    }

    /// The pixel at (x, y), None outside.
    pub fn pixel(&self, x: u32, y: u32) -> Option<u32> {
        if x >= self.width {
            return None;
        }
        self.pixels
            .get(y as usize * self.width as usize + x as usize)
            .copied()
    }

    /// Rows of pixels, mutable (for the renderers).
    pub(crate) fn rows_mut(&mut self) -> std::slice::ChunksExactMut<'_, u32> {
        self.pixels.chunks_exact_mut(self.width.max(1) as usize)
    }

    pub(crate) fn row_mut(&mut self, y: u32) -> Option<&mut [u32]> {
        let w = self.width as usize;
        let start = (y as usize).checked_mul(w)?;
        self.pixels.get_mut(start..start.checked_add(w)?)
    }

    /// Resizes to `width` x `height` (contents become black) if the size differs.
    pub(crate) fn resize(&mut self, width: u32, height: u32) {
        if (width, height) != (self.width, self.height) {
            *self = Surface::new(width, height);
        }
    }

    /// Clears to black, keeping the size.
    pub(crate) fn clear(&mut self) {
        self.pixels.fill(0);
    }

    /// 24-bit RGB bytes, row after row (what a PNG or PPM writer wants).
    pub fn to_rgb(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.pixels.len() * 3);
        for p in &self.pixels {
            out.extend_from_slice(&[(p >> 16) as u8, (p >> 8) as u8, *p as u8]);
        }
        out
    }
}
