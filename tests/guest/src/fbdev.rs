//! The Linux fbdev interface (`/dev/fbN`): geometry through `FBIOGET_VSCREENINFO` and
//! `FBIOGET_FSCREENINFO`, pixels through `pread` and `mmap`.
//!
//! The structures mirror `<linux/fb.h>` for x86_64; the ioctl numbers are the historical
//! un-encoded ones (`0x4600`, `0x4602`). Tests pin sizes and offsets to the values the C
//! compiler gives for the kernel header.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::image::{Channel, FrameHasher, HashFormat, PixelFormat};

/// `FBIOGET_VSCREENINFO`.
pub const FBIOGET_VSCREENINFO: u64 = 0x4600;
/// `FBIOGET_FSCREENINFO`.
pub const FBIOGET_FSCREENINFO: u64 = 0x4602;

/// `struct fb_bitfield`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FbBitfield {
    /// Beginning of the bitfield.
    pub offset: u32,
    /// Length of the bitfield.
    pub length: u32,
    /// Non-zero if the most significant bit is on the right.
    pub msb_right: u32,
}

/// `struct fb_var_screeninfo`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct FbVarScreeninfo {
    /// Visible resolution.
    pub xres: u32,
    /// Visible resolution.
    pub yres: u32,
    /// Virtual resolution.
    pub xres_virtual: u32,
    /// Virtual resolution.
    pub yres_virtual: u32,
    /// Offset from virtual to visible.
    pub xoffset: u32,
    /// Offset from virtual to visible.
    pub yoffset: u32,
    /// Bits per pixel.
    pub bits_per_pixel: u32,
    /// 0 = colour, 1 = grayscale, >1 = FOURCC.
    pub grayscale: u32,
    /// Red channel.
    pub red: FbBitfield,
    /// Green channel.
    pub green: FbBitfield,
    /// Blue channel.
    pub blue: FbBitfield,
    /// Transparency.
    pub transp: FbBitfield,
    /// Non-standard pixel format.
    pub nonstd: u32,
    /// See `FB_ACTIVATE_*`.
    pub activate: u32,
    /// Height of picture in mm.
    pub height: u32,
    /// Width of picture in mm.
    pub width: u32,
    /// Obsolete.
    pub accel_flags: u32,
    /// Pixel clock in ps.
    pub pixclock: u32,
    /// Time from sync to picture.
    pub left_margin: u32,
    /// Time from picture to sync.
    pub right_margin: u32,
    /// Time from sync to picture.
    pub upper_margin: u32,
    /// Time from picture to sync.
    pub lower_margin: u32,
    /// Length of horizontal sync.
    pub hsync_len: u32,
    /// Length of vertical sync.
    pub vsync_len: u32,
    /// See `FB_SYNC_*`.
    pub sync: u32,
    /// See `FB_VMODE_*`.
    pub vmode: u32,
    /// Angle of counter-clockwise rotation.
    pub rotate: u32,
    /// Colourspace for FOURCC-based modes.
    pub colorspace: u32,
    /// Reserved.
    pub reserved: [u32; 4],
}

/// `struct fb_fix_screeninfo`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct FbFixScreeninfo {
    /// Identification string, e.g. `qxldrmfb`.
    pub id: [u8; 16],
    /// Physical start of the framebuffer memory.
    pub smem_start: u64,
    /// Length of the framebuffer memory.
    pub smem_len: u32,
    /// See `FB_TYPE_*`.
    pub type_: u32,
    /// Interleave for interleaved planes.
    pub type_aux: u32,
    /// See `FB_VISUAL_*`.
    pub visual: u32,
    /// Zero if no hardware panning.
    pub xpanstep: u16,
    /// Zero if no hardware panning.
    pub ypanstep: u16,
    /// Zero if no hardware ywrap.
    pub ywrapstep: u16,
    /// Length of a line in bytes.
    pub line_length: u32,
    /// Physical start of the MMIO region.
    pub mmio_start: u64,
    /// Length of the MMIO region.
    pub mmio_len: u32,
    /// Acceleration hint for the driver.
    pub accel: u32,
    /// See `FB_CAP_*`.
    pub capabilities: u16,
    /// Reserved.
    pub reserved: [u16; 2],
}

/// Where the visible picture of a framebuffer lies in its memory, and in which pixel format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// Driver name from the fixed info (`qxldrmfb`, `vesafb`, ...).
    pub id: String,
    /// Visible width in pixels (`xres`).
    pub width: u32,
    /// Visible height in pixels (`yres`).
    pub height: u32,
    /// Column of the visible area's left edge in the virtual screen (`xoffset`).
    pub xoffset: u32,
    /// Row of the visible area's top edge in the virtual screen (`yoffset`).
    pub yoffset: u32,
    /// Bytes from one row to the next (`line_length`).
    pub stride: u32,
    /// Bits per pixel.
    pub bpp: u32,
    /// Size of the framebuffer memory (`smem_len`), the most that can be mapped.
    pub mem_len: u32,
    /// The pixel layout, from the var info's bitfields.
    pub pixel: PixelFormat,
}

impl Geometry {
    /// Builds the geometry from the two info structures, checking that every visible row lies
    /// inside the framebuffer memory, so later accesses can be computed without overflow.
    pub fn from_info(var: &FbVarScreeninfo, fix: &FbFixScreeninfo) -> Result<Self> {
        let id_len = fix.id.iter().position(|&b| b == 0).unwrap_or(fix.id.len());
        let id = String::from_utf8_lossy(&fix.id[..id_len]).into_owned();
        let bpp = var.bits_per_pixel;
        if bpp == 0 || !bpp.is_multiple_of(8) {
            return Err(Error::Check(format!(
                "{id}: unsupported bits_per_pixel {bpp}"
            )));
        }
        for (name, c) in [("red", var.red), ("green", var.green), ("blue", var.blue)] {
            if c.msb_right != 0 {
                return Err(Error::Check(format!("{id}: {name} has msb_right set")));
            }
        }
        let chan = |c: FbBitfield| Channel {
            offset: c.offset,
            length: c.length,
        };
        let geo = Geometry {
            id,
            width: var.xres,
            height: var.yres,
            xoffset: var.xoffset,
            yoffset: var.yoffset,
            stride: fix.line_length,
            bpp,
            mem_len: fix.smem_len,
            pixel: PixelFormat {
                bytes: (bpp / 8) as usize,
                red: chan(var.red),
                green: chan(var.green),
                blue: chan(var.blue),
            },
        };
        // u128: the product of two u32-derived factors cannot overflow it.
        let bytes = u128::from(bpp / 8);
        let row_end = (u128::from(var.xoffset) + u128::from(var.xres)) * bytes;
        let rows = u128::from(var.yoffset) + u128::from(var.yres);
        let stride = u128::from(fix.line_length);
        let fits = var.xres > 0
            && var.yres > 0
            && row_end <= stride
            && (rows - 1) * stride + row_end <= u128::from(fix.smem_len);
        if !fits {
            return Err(Error::Check(format!(
                "{}: visible {}x{}+{}+{} at {bpp} bpp does not fit line_length {} and \
                 smem_len {}",
                geo.id, var.xres, var.yres, var.xoffset, var.yoffset, fix.line_length, fix.smem_len
            )));
        }
        Ok(geo)
    }

    /// Bytes of one visible row.
    pub fn row_len(&self) -> usize {
        self.width as usize * self.pixel.bytes
    }

    /// Offset in the framebuffer memory of the first visible pixel of visible row `y`.
    pub fn row_offset(&self, y: u32) -> u64 {
        (u64::from(self.yoffset) + u64::from(y)) * u64::from(self.stride)
            + u64::from(self.xoffset) * self.pixel.bytes as u64
    }

    /// Hashes the visible rows read through `read_row(offset, buf)`.
    pub fn hash_with(
        &self,
        format: HashFormat,
        mut read_row: impl FnMut(u64, &mut [u8]) -> Result<()>,
    ) -> Result<String> {
        let mut hasher = FrameHasher::new(self.width as usize, self.pixel, format)?;
        let mut buf = vec![0u8; self.row_len()];
        for y in 0..self.height {
            read_row(self.row_offset(y), &mut buf)?;
            hasher.update_row(&buf);
        }
        Ok(hasher.finish())
    }
}

/// An open `/dev/fbN` with its geometry.
#[derive(Debug)]
pub struct Framebuffer {
    file: File,
    path: PathBuf,
    geometry: Geometry,
}

impl Framebuffer {
    /// Opens `path` (read-write if `write`) and reads its geometry.
    pub fn open(path: &Path, write: bool) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        let mut var = FbVarScreeninfo::default();
        // SAFETY: FBIOGET_VSCREENINFO writes one fb_var_screeninfo, which `var` is (layout
        // pinned by the tests); the fd is open for the whole call.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), FBIOGET_VSCREENINFO as _, &mut var) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(Error::io("FBIOGET_VSCREENINFO", path, e));
        }
        let mut fix = FbFixScreeninfo::default();
        // SAFETY: as above, for FBIOGET_FSCREENINFO and fb_fix_screeninfo.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), FBIOGET_FSCREENINFO as _, &mut fix) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(Error::io("FBIOGET_FSCREENINFO", path, e));
        }
        let geometry = Geometry::from_info(&var, &fix)?;
        Ok(Framebuffer {
            file,
            path: path.to_path_buf(),
            geometry,
        })
    }

    /// The geometry read at open time.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// The open device.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Hashes the visible picture as the kernel returns it from `read` (for the DRM fbdev
    /// emulation: its shadow buffer, i.e. what the guest believes is on screen).
    pub fn hash(&self, format: HashFormat) -> Result<String> {
        self.geometry.hash_with(format, |offset, buf| {
            self.file
                .read_exact_at(buf, offset)
                .map_err(|e| Error::io("read", &self.path, e))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    /// Sizes and offsets from `<linux/fb.h>` on x86_64 (gcc, linux-libc-dev 6.1).
    #[test]
    fn layouts_match_the_kernel_header() {
        assert_eq!(size_of::<FbBitfield>(), 12);
        assert_eq!(size_of::<FbVarScreeninfo>(), 160);
        assert_eq!(offset_of!(FbVarScreeninfo, xoffset), 16);
        assert_eq!(offset_of!(FbVarScreeninfo, bits_per_pixel), 24);
        assert_eq!(offset_of!(FbVarScreeninfo, red), 32);
        assert_eq!(offset_of!(FbVarScreeninfo, transp), 68);
        assert_eq!(size_of::<FbFixScreeninfo>(), 80);
        assert_eq!(offset_of!(FbFixScreeninfo, smem_len), 24);
        assert_eq!(offset_of!(FbFixScreeninfo, visual), 36);
        assert_eq!(offset_of!(FbFixScreeninfo, line_length), 48);
    }

    fn xrgb_info(
        xres: u32,
        yres: u32,
        line_length: u32,
        smem_len: u32,
    ) -> (FbVarScreeninfo, FbFixScreeninfo) {
        let bf = |offset| FbBitfield {
            offset,
            length: 8,
            msb_right: 0,
        };
        let var = FbVarScreeninfo {
            xres,
            yres,
            xres_virtual: xres,
            yres_virtual: yres,
            bits_per_pixel: 32,
            red: bf(16),
            green: bf(8),
            blue: bf(0),
            ..Default::default()
        };
        let mut fix = FbFixScreeninfo {
            line_length,
            smem_len,
            ..Default::default()
        };
        fix.id[..8].copy_from_slice(b"qxldrmfb");
        (var, fix)
    }

    #[test]
    fn geometry_checks_bounds() {
        let (var, fix) = xrgb_info(1024, 768, 4096, 4096 * 768);
        let geo = Geometry::from_info(&var, &fix).unwrap();
        assert_eq!(geo.id, "qxldrmfb");
        assert_eq!(geo.pixel, PixelFormat::XRGB8888);
        assert_eq!(geo.row_len(), 4096);
        assert_eq!(geo.row_offset(767), 4096 * 767);

        let (var, fix) = xrgb_info(1024, 768, 4000, 4096 * 768);
        assert!(
            Geometry::from_info(&var, &fix).is_err(),
            "row longer than stride"
        );
        let (var, fix) = xrgb_info(1024, 768, 4096, 4096 * 767);
        assert!(
            Geometry::from_info(&var, &fix).is_err(),
            "rows beyond smem_len"
        );
        let (mut var, fix) = xrgb_info(1024, 768, 4096, 4096 * 768);
        var.bits_per_pixel = 12;
        assert!(Geometry::from_info(&var, &fix).is_err());
        let (mut var, fix) = xrgb_info(1024, 768, 4096, 4096 * 768);
        var.yres = 0;
        assert!(Geometry::from_info(&var, &fix).is_err());
    }

    /// Only the visible window is hashed: padding and the panned-away parts are skipped.
    #[test]
    fn hashes_the_visible_window_only() {
        // A 6x4 virtual screen of 3x2 visible pixels panned to (2, 1), stride 28 (4 bytes pad).
        let (mut var, fix) = xrgb_info(3, 2, 28, 28 * 4);
        var.xoffset = 2;
        var.yoffset = 1;
        let geo = Geometry::from_info(&var, &fix).unwrap();
        let mut mem = [0xEEu8; 28 * 4];
        let mut want_rgb = Vec::new();
        for y in 0..2u8 {
            for x in 0..3u8 {
                let off = (1 + y as usize) * 28 + (2 + x as usize) * 4;
                let (r, g, b) = (10 * y + x, 100 + x, 200 + y);
                mem[off..off + 4].copy_from_slice(&[b, g, r, 0x55]);
                want_rgb.extend_from_slice(&[r, g, b]);
            }
        }
        let read = |offset: u64, buf: &mut [u8]| {
            let o = offset as usize;
            buf.copy_from_slice(&mem[o..o + buf.len()]);
            Ok(())
        };
        let sha = |d: &[u8]| crate::image::hex(&<sha2::Sha256 as sha2::Digest>::digest(d));
        assert_eq!(
            geo.hash_with(HashFormat::Rgb, read).unwrap(),
            sha(&want_rgb)
        );
        let mut want_raw = Vec::new();
        want_raw.extend_from_slice(&mem[28 + 8..28 + 20]);
        want_raw.extend_from_slice(&mem[56 + 8..56 + 20]);
        assert_eq!(
            geo.hash_with(HashFormat::Raw, read).unwrap(),
            sha(&want_raw)
        );
    }
}
