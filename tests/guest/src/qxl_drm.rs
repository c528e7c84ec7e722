//! The qxl driver's own ioctls (`<drm/qxl_drm.h>`), for off-screen surfaces: a surface bo is
//! created with `QXL_ALLOC_SURF`, becomes a device surface (a SURFACE CREATE command) the first
//! time the driver validates it (`QXL_UPDATE_AREA` does), and is destroyed (a SURFACE DESTROY
//! command) when its last handle is closed.

use crate::drm::Card;
use crate::error::Result;

const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;
/// `DRM_COMMAND_BASE`: driver ioctls start here.
const DRM_COMMAND_BASE: u64 = 0x40;

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((b'd' as u64) << 8) | nr
}

/// `DRM_IOCTL_GEM_CLOSE`: `DRM_IOW(0x09, struct drm_gem_close)`.
pub const DRM_IOCTL_GEM_CLOSE: u64 = ioc(IOC_WRITE, 0x09, size_of::<DrmGemClose>());
/// `DRM_IOCTL_QXL_MAP`.
pub const DRM_IOCTL_QXL_MAP: u64 = ioc(
    IOC_READ | IOC_WRITE,
    DRM_COMMAND_BASE + 0x01,
    size_of::<DrmQxlMap>(),
);
/// `DRM_IOCTL_QXL_UPDATE_AREA`.
pub const DRM_IOCTL_QXL_UPDATE_AREA: u64 = ioc(
    IOC_WRITE,
    DRM_COMMAND_BASE + 0x03,
    size_of::<DrmQxlUpdateArea>(),
);
/// `DRM_IOCTL_QXL_ALLOC_SURF`.
pub const DRM_IOCTL_QXL_ALLOC_SURF: u64 = ioc(
    IOC_READ | IOC_WRITE,
    DRM_COMMAND_BASE + 0x06,
    size_of::<DrmQxlAllocSurf>(),
);

/// `SPICE_SURFACE_FMT_32_xRGB`.
pub const SURFACE_FMT_32_XRGB: u32 = 32;

/// `struct drm_gem_close`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DrmGemClose {
    /// Handle to close.
    pub handle: u32,
    /// Padding.
    pub pad: u32,
}

/// `struct drm_qxl_map`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DrmQxlMap {
    /// The `mmap` offset (out).
    pub offset: u64,
    /// The bo.
    pub handle: u32,
    /// Padding.
    pub pad: u32,
}

/// `struct drm_qxl_update_area`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DrmQxlUpdateArea {
    /// The surface bo.
    pub handle: u32,
    /// Top row.
    pub top: u32,
    /// Left column.
    pub left: u32,
    /// Bottom row (exclusive).
    pub bottom: u32,
    /// Right column (exclusive).
    pub right: u32,
    /// Padding.
    pub pad: u32,
}

/// `struct drm_qxl_alloc_surf`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DrmQxlAllocSurf {
    /// `SPICE_SURFACE_FMT_*`.
    pub format: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per row (negative: bottom-up).
    pub stride: i32,
    /// The new bo (out).
    pub handle: u32,
    /// Padding.
    pub pad: u32,
}

impl Card {
    /// Allocates a surface bo of `width x height` pixels of `format`; returns its handle.
    pub fn qxl_alloc_surf(&self, format: u32, width: u32, height: u32, stride: i32) -> Result<u32> {
        let mut arg = DrmQxlAllocSurf {
            format,
            width,
            height,
            stride,
            ..Default::default()
        };
        // SAFETY: QXL_ALLOC_SURF takes a drm_qxl_alloc_surf, which has no pointers.
        unsafe {
            self.ioctl(
                "DRM_IOCTL_QXL_ALLOC_SURF",
                DRM_IOCTL_QXL_ALLOC_SURF,
                &mut arg,
            )?
        };
        Ok(arg.handle)
    }

    /// The `mmap` offset of bo `handle`.
    pub fn qxl_map(&self, handle: u32) -> Result<u64> {
        let mut arg = DrmQxlMap {
            handle,
            ..Default::default()
        };
        // SAFETY: QXL_MAP takes a drm_qxl_map, which has no pointers.
        unsafe { self.ioctl("DRM_IOCTL_QXL_MAP", DRM_IOCTL_QXL_MAP, &mut arg)? };
        Ok(arg.offset)
    }

    /// Asks the device to bring `[left, right) x [top, bottom)` of surface bo `handle` up to
    /// date in its memory (QXL_IO_UPDATE_AREA_ASYNC); the driver first makes the bo a device
    /// surface if it is not one yet.
    pub fn qxl_update_area(
        &self,
        handle: u32,
        left: u32,
        top: u32,
        right: u32,
        bottom: u32,
    ) -> Result<()> {
        let mut arg = DrmQxlUpdateArea {
            handle,
            top,
            left,
            bottom,
            right,
            pad: 0,
        };
        // SAFETY: QXL_UPDATE_AREA takes a drm_qxl_update_area, which has no pointers.
        unsafe {
            self.ioctl(
                "DRM_IOCTL_QXL_UPDATE_AREA",
                DRM_IOCTL_QXL_UPDATE_AREA,
                &mut arg,
            )
        }
    }

    /// Closes GEM handle `handle` (the last one frees the bo).
    pub fn gem_close(&self, handle: u32) -> Result<()> {
        let mut arg = DrmGemClose { handle, pad: 0 };
        // SAFETY: GEM_CLOSE takes a drm_gem_close, which has no pointers.
        unsafe { self.ioctl("DRM_IOCTL_GEM_CLOSE", DRM_IOCTL_GEM_CLOSE, &mut arg) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values `<drm/qxl_drm.h>` and `<drm/drm.h>` give on x86_64 (the `_IOC` encoding of
    /// their sizes and numbers).
    #[test]
    fn ioctl_numbers_match_the_kernel_header() {
        assert_eq!(DRM_IOCTL_GEM_CLOSE, 0x4008_6409);
        assert_eq!(DRM_IOCTL_QXL_MAP, 0xc010_6441);
        assert_eq!(DRM_IOCTL_QXL_UPDATE_AREA, 0x4018_6443);
        assert_eq!(DRM_IOCTL_QXL_ALLOC_SURF, 0xc018_6446);
        assert_eq!(size_of::<DrmQxlUpdateArea>(), 24);
        assert_eq!(size_of::<DrmQxlAllocSurf>(), 24);
        assert_eq!(size_of::<DrmQxlMap>(), 16);
    }
}
