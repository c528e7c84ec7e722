//! Surfaces: pixel blocks living in guest (BAR) memory, and the table of them by id.
//!
//! As in QEMU the renderer draws straight into the guest's surface memory, so what the guest
//! reads back after UPDATE_AREA is our rendering. Every access goes through vm-memory's
//! checked accessors, one call per row span, and is bounded by the surface's *own*
//! validated range: a rectangle that is wrong in any way fails with an error instead of
//! reaching memory outside the surface.
//!
//! A negative stride means bottom-up storage: the range still starts at its lowest address
//! and row 0 is its last `|stride|` bytes.

use std::collections::BTreeMap;

use saffron_ring::parse::{SurfaceCreate, SurfaceFormat, SurfaceMemory};
use thiserror::Error;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryError};

use crate::pixel::{decode_native, encode_native, span_byte_range};

/// Errors using surfaces.
#[derive(Debug, Error)]
pub enum SurfaceError {
    #[error("surface id {id} is not below {n_surfaces}")]
    IdOutOfRange { id: u32, n_surfaces: u32 },
    #[error("surface {id} does not exist")]
    Missing { id: u32 },
    #[error("surface {id} already exists")]
    Exists { id: u32 },
    #[error(
        "surface of {width}x{height} with stride {stride} does not fit its {len} bytes of memory"
    )]
    Geometry {
        width: u32,
        height: u32,
        stride: i32,
        len: u64,
    },
    #[error("{n} pixels at ({x}, {y}) are outside the {width}x{height} surface")]
    SpanOutside {
        x: u32,
        y: u32,
        n: u32,
        width: u32,
        height: u32,
    },
    #[error("guest memory access of {len} bytes at {addr:#x} failed")]
    Memory {
        addr: u64,
        len: usize,
        #[source]
        source: GuestMemoryError,
    },
}

/// One surface: its pixel memory and geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Surface {
    /// The guest range holding the pixels (device address space).
    pub memory: SurfaceMemory,
    pub width: u32,
    pub height: u32,
    /// Bytes from one row to the next; negative for bottom-up storage.
    pub stride: i32,
    pub format: SurfaceFormat,
}

impl Surface {
    /// A surface after checking that `height` rows of `|stride|` bytes, each holding
    /// `width` pixels, fit in `memory`.
    pub fn new(
        memory: SurfaceMemory,
        width: u32,
        height: u32,
        stride: i32,
        format: SurfaceFormat,
    ) -> Result<Self, SurfaceError> {
        let abs = u64::from(stride.unsigned_abs());
        let (_, row_bytes) = span_byte_range(format, 0, width);
        let fits = width > 0
            && height > 0
            && row_bytes <= abs
            && abs
                .checked_mul(u64::from(height))
                .is_some_and(|size| size <= memory.len);
        if !fits {
            return Err(SurfaceError::Geometry {
                width,
                height,
                stride,
                len: memory.len,
            });
        }
        Ok(Surface {
            memory,
            width,
            height,
            stride,
            format,
        })
    }

    /// The surface a validated CREATE (or CREATE_PRIMARY) describes.
    pub fn from_create(create: &SurfaceCreate) -> Result<Self, SurfaceError> {
        Surface::new(
            create.memory,
            create.width,
            create.height,
            create.stride,
            create.format,
        )
    }

    /// Whether rows are stored bottom-up.
    pub fn is_bottom_up(&self) -> bool {
        self.stride < 0
    }

    /// Where pixels `[x, x + n)` of row `y` are: guest address and byte length. Fails
    /// unless they are inside the surface and the bytes inside its memory range.
    fn span(&self, x: u32, y: u32, n: u32) -> Result<(GuestAddress, usize), SurfaceError> {
        let outside = || SurfaceError::SpanOutside {
            x,
            y,
            n,
            width: self.width,
            height: self.height,
        };
        if y >= self.height || u64::from(x) + u64::from(n) > u64::from(self.width) {
            return Err(outside());
        }
        let abs = u64::from(self.stride.unsigned_abs());
        let row = if self.stride < 0 {
            u64::from(self.height - 1 - y)
        } else {
            u64::from(y)
        };
        let (start, end) = span_byte_range(self.format, x, n);
        let offset = row.checked_mul(abs).and_then(|o| o.checked_add(start));
        let len = end - start;
        match offset {
            Some(offset)
                if end <= abs
                    && offset
                        .checked_add(len)
                        .is_some_and(|e| e <= self.memory.len) =>
            {
                let addr = self.memory.addr.checked_add(offset).ok_or_else(outside)?;
                Ok((addr, usize::try_from(len).map_err(|_| outside())?))
            }
            _ => Err(outside()),
        }
    }

    /// Reads the bytes holding pixels `[x, x + n)` of row `y` into `buf` (resized to fit).
    pub fn read_bytes<M: GuestMemory>(
        &self,
        mem: &M,
        x: u32,
        y: u32,
        n: u32,
        buf: &mut Vec<u8>,
    ) -> Result<(), SurfaceError> {
        let (addr, len) = self.span(x, y, n)?;
        buf.resize(len, 0);
        mem.read_slice(buf, addr)
            .map_err(|source| SurfaceError::Memory {
                addr: addr.0,
                len,
                source,
            })
    }

    /// Writes `bytes`, the encoded pixels starting at `x` of row `y`. Their count follows
    /// from the length; a partial pixel at the end is refused.
    pub fn write_bytes<M: GuestMemory>(
        &self,
        mem: &M,
        x: u32,
        y: u32,
        bytes: &[u8],
    ) -> Result<(), SurfaceError> {
        let bpp = u64::from(self.format.bits_per_pixel());
        let bits = (bytes.len() as u64).saturating_mul(8);
        let n = u32::try_from(bits / bpp).unwrap_or(u32::MAX);
        let (addr, len) = self.span(x, y, n)?;
        if len != bytes.len() {
            return Err(SurfaceError::SpanOutside {
                x,
                y,
                n,
                width: self.width,
                height: self.height,
            });
        }
        mem.write_slice(bytes, addr)
            .map_err(|source| SurfaceError::Memory {
                addr: addr.0,
                len,
                source,
            })
    }

    /// Reads `out.len()` native pixel values from `x` of row `y`.
    pub fn read_pixels<M: GuestMemory>(
        &self,
        mem: &M,
        x: u32,
        y: u32,
        out: &mut [u32],
        scratch: &mut Vec<u8>,
    ) -> Result<(), SurfaceError> {
        let n = u32::try_from(out.len()).unwrap_or(u32::MAX);
        self.read_bytes(mem, x, y, n, scratch)?;
        decode_native(self.format, x, scratch, out);
        Ok(())
    }

    /// Writes native pixel values from `x` of row `y`.
    pub fn write_pixels<M: GuestMemory>(
        &self,
        mem: &M,
        x: u32,
        y: u32,
        px: &[u32],
        scratch: &mut Vec<u8>,
    ) -> Result<(), SurfaceError> {
        let n = u32::try_from(px.len()).unwrap_or(u32::MAX);
        if self.format == SurfaceFormat::A1 {
            // Pixels share bytes: keep the neighbours.
            self.read_bytes(mem, x, y, n, scratch)?;
        } else {
            let (start, end) = span_byte_range(self.format, x, n);
            scratch.resize(usize::try_from(end - start).unwrap_or(0), 0);
        }
        encode_native(self.format, x, px, scratch);
        let (addr, len) = self.span(x, y, n)?;
        mem.write_slice(scratch, addr)
            .map_err(|source| SurfaceError::Memory {
                addr: addr.0,
                len,
                source,
            })
    }
}

/// The surfaces of one device by id; id 0 is the primary.
#[derive(Clone, Debug)]
pub struct SurfaceTable {
    n_surfaces: u32,
    surfaces: BTreeMap<u32, Surface>,
}

impl SurfaceTable {
    /// An empty table for ids below `n_surfaces` (the ROM's value).
    pub fn new(n_surfaces: u32) -> Self {
        SurfaceTable {
            n_surfaces,
            surfaces: BTreeMap::new(),
        }
    }

    pub fn n_surfaces(&self) -> u32 {
        self.n_surfaces
    }

    fn check_id(&self, id: u32) -> Result<(), SurfaceError> {
        if id < self.n_surfaces {
            Ok(())
        } else {
            Err(SurfaceError::IdOutOfRange {
                id,
                n_surfaces: self.n_surfaces,
            })
        }
    }

    /// Adds surface `id`; creating an existing id is refused (CVE-2015-5260 was a double
    /// create).
    pub fn create(&mut self, id: u32, surface: Surface) -> Result<(), SurfaceError> {
        self.check_id(id)?;
        if self.surfaces.contains_key(&id) {
            return Err(SurfaceError::Exists { id });
        }
        self.surfaces.insert(id, surface);
        Ok(())
    }

    /// Removes surface `id` and returns it.
    pub fn destroy(&mut self, id: u32) -> Result<Surface, SurfaceError> {
        self.check_id(id)?;
        self.surfaces
            .remove(&id)
            .ok_or(SurfaceError::Missing { id })
    }

    /// Surface `id`, which must exist.
    pub fn get(&self, id: u32) -> Result<&Surface, SurfaceError> {
        self.check_id(id)?;
        self.surfaces.get(&id).ok_or(SurfaceError::Missing { id })
    }

    /// The primary surface (id 0), if created.
    pub fn primary(&self) -> Option<&Surface> {
        self.surfaces.get(&0)
    }

    /// Whether surface `id` exists.
    pub fn contains(&self, id: u32) -> bool {
        self.surfaces.contains_key(&id)
    }

    /// Removes every surface (DESTROY_ALL_SURFACES, reset).
    pub fn clear(&mut self) {
        self.surfaces.clear();
    }

    /// Number of existing surfaces.
    pub fn len(&self) -> usize {
        self.surfaces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.surfaces.is_empty()
    }

    /// Existing surfaces in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Surface)> {
        self.surfaces.iter().map(|(id, s)| (*id, s))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    pub(crate) fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    pub(crate) fn xrgb(addr: u64, width: u32, height: u32, stride: i32) -> Surface {
        let len = u64::from(stride.unsigned_abs()) * u64::from(height);
        Surface::new(
            SurfaceMemory {
                addr: GuestAddress(addr),
                len,
            },
            width,
            height,
            stride,
            SurfaceFormat::Xrgb8888,
        )
        .unwrap()
    }

    #[test]
    fn rows_of_top_down_and_bottom_up_surfaces() {
        let mem = memory();
        let mut scratch = Vec::new();
        let top = xrgb(0x1000, 4, 3, 16);
        top.write_pixels(&mem, 1, 2, &[7, 8], &mut scratch).unwrap();
        assert_eq!(
            mem.read_obj::<u32>(GuestAddress(0x1000 + 2 * 16 + 4))
                .unwrap(),
            7
        );
        // Bottom-up: row 0 is the last 16 bytes.
        let bottom = xrgb(0x2000, 4, 3, -16);
        bottom.write_pixels(&mem, 0, 0, &[9], &mut scratch).unwrap();
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x2000 + 32)).unwrap(), 9);
        bottom.write_pixels(&mem, 3, 2, &[5], &mut scratch).unwrap();
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x2000 + 12)).unwrap(), 5);
        let mut out = [0u32; 4];
        bottom
            .read_pixels(&mem, 0, 2, &mut out, &mut scratch)
            .unwrap();
        assert_eq!(out, [0, 0, 0, 5]);
    }

    #[test]
    fn spans_outside_the_surface_are_refused() {
        let mem = memory();
        let mut scratch = Vec::new();
        let s = xrgb(0x1000, 4, 3, 16);
        for (x, y, n) in [
            (0, 3, 1),
            (4, 0, 1),
            (3, 0, 2),
            (u32::MAX, 0, 2),
            (0, u32::MAX, 1),
        ] {
            assert!(matches!(
                s.write_pixels(&mem, x, y, &vec![0; n as usize], &mut scratch),
                Err(SurfaceError::SpanOutside { .. })
            ));
        }
        // A hand-built surface whose geometry lies about its memory cannot escape it.
        let liar = Surface {
            memory: SurfaceMemory {
                addr: GuestAddress(0x1000),
                len: 16,
            },
            ..s
        };
        assert!(liar.write_pixels(&mem, 0, 1, &[1], &mut scratch).is_err());
        assert!(liar.write_bytes(&mem, 0, 0, &[0; 16]).is_ok());
        assert!(liar.write_bytes(&mem, 0, 0, &[0; 17]).is_err());
        // Memory that is not mapped fails as a memory error.
        let unmapped = xrgb(0x20_0000, 4, 1, 16);
        assert!(matches!(
            unmapped.write_pixels(&mem, 0, 0, &[1], &mut scratch),
            Err(SurfaceError::Memory { .. })
        ));
    }

    #[test]
    fn geometry_must_fit_memory() {
        let m = SurfaceMemory {
            addr: GuestAddress(0),
            len: 64,
        };
        assert!(Surface::new(m, 4, 4, 16, SurfaceFormat::Xrgb8888).is_ok());
        assert!(Surface::new(m, 4, 5, 16, SurfaceFormat::Xrgb8888).is_err());
        assert!(Surface::new(m, 5, 4, 16, SurfaceFormat::Xrgb8888).is_err());
        assert!(Surface::new(m, 4, 4, i32::MIN, SurfaceFormat::Xrgb8888).is_err());
        assert!(Surface::new(m, 0, 4, 16, SurfaceFormat::Xrgb8888).is_err());
        assert!(Surface::new(m, 8, 4, 16, SurfaceFormat::Rgb565).is_ok());
        assert!(Surface::new(m, 128, 4, 16, SurfaceFormat::A1).is_ok());
    }

    #[test]
    fn table_ids() {
        let mut t = SurfaceTable::new(4);
        let s = xrgb(0x1000, 4, 3, 16);
        t.create(0, s).unwrap();
        assert!(matches!(
            t.create(0, s),
            Err(SurfaceError::Exists { id: 0 })
        ));
        assert!(matches!(
            t.create(4, s),
            Err(SurfaceError::IdOutOfRange {
                id: 4,
                n_surfaces: 4
            })
        ));
        assert!(matches!(t.get(1), Err(SurfaceError::Missing { id: 1 })));
        assert_eq!(t.primary(), Some(&s));
        assert_eq!(t.len(), 1);
        assert_eq!(t.destroy(0).unwrap(), s);
        assert!(matches!(t.destroy(0), Err(SurfaceError::Missing { id: 0 })));
        t.create(3, s).unwrap();
        t.clear();
        assert!(t.is_empty());
    }
}
