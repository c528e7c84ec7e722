//! A minimal DRM/KMS client on raw ioctls: enough to light up one CRTC with a dumb buffer and
//! send damage, the way a simple compositor or `modetest` does.
//!
//! The structures mirror `<drm/drm.h>` and `<drm/drm_mode.h>` for x86_64 and the ioctl numbers
//! are computed with the kernel's `_IOWR` encoding; tests pin both to the values the C compiler
//! gives for the headers. libdrm is not used: the probe must stay a small static binary.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;
const DRM_IOCTL_BASE: u64 = b'd' as u64;

/// The kernel's `_IOC(dir, 'd', nr, size)`.
const fn drm_ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (DRM_IOCTL_BASE << 8) | nr
}

/// `DRM_IOWR(nr, T)`.
const fn drm_iowr<T>(nr: u64) -> u64 {
    drm_ioc(IOC_READ | IOC_WRITE, nr, std::mem::size_of::<T>())
}

/// `DRM_IOCTL_SET_MASTER`: `_IO('d', 0x1e)`.
pub const DRM_IOCTL_SET_MASTER: u64 = drm_ioc(0, 0x1e, 0);
/// `DRM_IOCTL_GET_CAP`.
pub const DRM_IOCTL_GET_CAP: u64 = drm_iowr::<DrmGetCap>(0x0c);
/// `DRM_IOCTL_MODE_GETRESOURCES`.
pub const DRM_IOCTL_MODE_GETRESOURCES: u64 = drm_iowr::<DrmModeCardRes>(0xa0);
/// `DRM_IOCTL_MODE_SETCRTC`.
pub const DRM_IOCTL_MODE_SETCRTC: u64 = drm_iowr::<DrmModeCrtc>(0xa2);
/// `DRM_IOCTL_MODE_GETENCODER`.
pub const DRM_IOCTL_MODE_GETENCODER: u64 = drm_iowr::<DrmModeGetEncoder>(0xa6);
/// `DRM_IOCTL_MODE_GETCONNECTOR`.
pub const DRM_IOCTL_MODE_GETCONNECTOR: u64 = drm_iowr::<DrmModeGetConnector>(0xa7);
/// `DRM_IOCTL_MODE_ADDFB`.
pub const DRM_IOCTL_MODE_ADDFB: u64 = drm_iowr::<DrmModeFbCmd>(0xae);
/// `DRM_IOCTL_MODE_RMFB` (its argument is a bare `unsigned int`).
pub const DRM_IOCTL_MODE_RMFB: u64 = drm_iowr::<u32>(0xaf);
/// `DRM_IOCTL_MODE_DIRTYFB`.
pub const DRM_IOCTL_MODE_DIRTYFB: u64 = drm_iowr::<DrmModeFbDirtyCmd>(0xb1);
/// `DRM_IOCTL_MODE_CREATE_DUMB`.
pub const DRM_IOCTL_MODE_CREATE_DUMB: u64 = drm_iowr::<DrmModeCreateDumb>(0xb2);
/// `DRM_IOCTL_MODE_MAP_DUMB`.
pub const DRM_IOCTL_MODE_MAP_DUMB: u64 = drm_iowr::<DrmModeMapDumb>(0xb3);
/// `DRM_IOCTL_MODE_DESTROY_DUMB`.
pub const DRM_IOCTL_MODE_DESTROY_DUMB: u64 = drm_iowr::<DrmModeDestroyDumb>(0xb4);
/// `DRM_IOCTL_MODE_CURSOR2`.
pub const DRM_IOCTL_MODE_CURSOR2: u64 = drm_iowr::<DrmModeCursor2>(0xbb);

/// `DRM_MODE_CURSOR_BO`: set (or, with handle 0, remove) the cursor image.
pub const DRM_MODE_CURSOR_BO: u32 = 0x01;
/// `DRM_MODE_CURSOR_MOVE`: move the cursor.
pub const DRM_MODE_CURSOR_MOVE: u32 = 0x02;

/// `DRM_CAP_DUMB_BUFFER`.
pub const DRM_CAP_DUMB_BUFFER: u64 = 1;
/// `DRM_MODE_TYPE_PREFERRED`.
pub const DRM_MODE_TYPE_PREFERRED: u32 = 1 << 3;
/// `connector_status_connected` (libdrm's `DRM_MODE_CONNECTED`).
pub const CONNECTOR_CONNECTED: u32 = 1;
/// `DRM_MODE_FB_DIRTY_MAX_CLIPS`.
pub const DIRTY_MAX_CLIPS: usize = 256;

/// `struct drm_get_cap`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DrmGetCap {
    /// Capability asked for.
    pub capability: u64,
    /// Its value.
    pub value: u64,
}

/// `struct drm_mode_card_res`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DrmModeCardRes {
    /// User pointer to a `u32` array of framebuffer ids.
    pub fb_id_ptr: u64,
    /// User pointer to a `u32` array of CRTC ids.
    pub crtc_id_ptr: u64,
    /// User pointer to a `u32` array of connector ids.
    pub connector_id_ptr: u64,
    /// User pointer to a `u32` array of encoder ids.
    pub encoder_id_ptr: u64,
    /// Number of framebuffers.
    pub count_fbs: u32,
    /// Number of CRTCs.
    pub count_crtcs: u32,
    /// Number of connectors.
    pub count_connectors: u32,
    /// Number of encoders.
    pub count_encoders: u32,
    /// Smallest framebuffer width.
    pub min_width: u32,
    /// Largest framebuffer width.
    pub max_width: u32,
    /// Smallest framebuffer height.
    pub min_height: u32,
    /// Largest framebuffer height.
    pub max_height: u32,
}

/// `struct drm_mode_modeinfo`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DrmModeModeinfo {
    /// Pixel clock in kHz.
    pub clock: u32,
    /// Horizontal display size.
    pub hdisplay: u16,
    /// Horizontal sync start.
    pub hsync_start: u16,
    /// Horizontal sync end.
    pub hsync_end: u16,
    /// Horizontal total size.
    pub htotal: u16,
    /// Horizontal skew.
    pub hskew: u16,
    /// Vertical display size.
    pub vdisplay: u16,
    /// Vertical sync start.
    pub vsync_start: u16,
    /// Vertical sync end.
    pub vsync_end: u16,
    /// Vertical total size.
    pub vtotal: u16,
    /// Vertical scan.
    pub vscan: u16,
    /// Approximate vertical refresh rate in Hz.
    pub vrefresh: u32,
    /// `DRM_MODE_FLAG_*`.
    pub flags: u32,
    /// `DRM_MODE_TYPE_*`.
    pub type_: u32,
    /// NUL-terminated mode name.
    pub name: [u8; 32],
}

impl DrmModeModeinfo {
    /// `WxH@R`, the form printed in `modes=`.
    pub fn label(&self) -> String {
        format!("{}x{}@{}", self.hdisplay, self.vdisplay, self.vrefresh)
    }

    /// Whether the driver marks this mode as preferred.
    pub fn preferred(&self) -> bool {
        self.type_ & DRM_MODE_TYPE_PREFERRED != 0
    }
}

/// `struct drm_mode_get_connector`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DrmModeGetConnector {
    /// User pointer to a `u32` array of encoder ids.
    pub encoders_ptr: u64,
    /// User pointer to a `drm_mode_modeinfo` array.
    pub modes_ptr: u64,
    /// User pointer to a `u32` array of property ids.
    pub props_ptr: u64,
    /// User pointer to a `u64` array of property values.
    pub prop_values_ptr: u64,
    /// Number of modes.
    pub count_modes: u32,
    /// Number of properties.
    pub count_props: u32,
    /// Number of encoders.
    pub count_encoders: u32,
    /// Currently attached encoder, 0 if none.
    pub encoder_id: u32,
    /// Connector id (input).
    pub connector_id: u32,
    /// `DRM_MODE_CONNECTOR_*`.
    pub connector_type: u32,
    /// Index among connectors of the same type.
    pub connector_type_id: u32,
    /// 1 connected, 2 disconnected, 3 unknown.
    pub connection: u32,
    /// Width in millimetres.
    pub mm_width: u32,
    /// Height in millimetres.
    pub mm_height: u32,
    /// `DRM_MODE_SUBPIXEL_*`.
    pub subpixel: u32,
    /// Padding.
    pub pad: u32,
}

/// `struct drm_mode_get_encoder`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DrmModeGetEncoder {
    /// Encoder id (input).
    pub encoder_id: u32,
    /// `DRM_MODE_ENCODER_*`.
    pub encoder_type: u32,
    /// Currently driven CRTC, 0 if none.
    pub crtc_id: u32,
    /// Bit mask of CRTC indices this encoder can drive.
    pub possible_crtcs: u32,
    /// Bit mask of encoders that can be cloned with this one.
    pub possible_clones: u32,
}

/// `struct drm_mode_crtc`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DrmModeCrtc {
    /// User pointer to a `u32` array of connector ids.
    pub set_connectors_ptr: u64,
    /// Number of connectors.
    pub count_connectors: u32,
    /// CRTC id.
    pub crtc_id: u32,
    /// Framebuffer id.
    pub fb_id: u32,
    /// Horizontal position of the CRTC in the framebuffer.
    pub x: u32,
    /// Vertical position of the CRTC in the framebuffer.
    pub y: u32,
    /// Gamma table size.
    pub gamma_size: u32,
    /// Whether `mode` is set.
    pub mode_valid: u32,
    /// The mode.
    pub mode: DrmModeModeinfo,
}

/// `struct drm_mode_create_dumb`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DrmModeCreateDumb {
    /// Height in pixels.
    pub height: u32,
    /// Width in pixels.
    pub width: u32,
    /// Bits per pixel.
    pub bpp: u32,
    /// Must be 0.
    pub flags: u32,
    /// GEM handle (output).
    pub handle: u32,
    /// Bytes per row (output).
    pub pitch: u32,
    /// Size in bytes (output).
    pub size: u64,
}

/// `struct drm_mode_map_dumb`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DrmModeMapDumb {
    /// GEM handle.
    pub handle: u32,
    /// Padding.
    pub pad: u32,
    /// Fake offset to pass to `mmap` on the DRM fd (output).
    pub offset: u64,
}

/// `struct drm_mode_destroy_dumb`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DrmModeDestroyDumb {
    /// GEM handle.
    pub handle: u32,
}

/// `struct drm_mode_fb_cmd` (legacy ADDFB: depth 24 + bpp 32 is XRGB8888).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DrmModeFbCmd {
    /// Framebuffer id (output).
    pub fb_id: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per row.
    pub pitch: u32,
    /// Bits per pixel.
    pub bpp: u32,
    /// Colour depth.
    pub depth: u32,
    /// GEM handle of the backing buffer.
    pub handle: u32,
}

/// `struct drm_mode_fb_dirty_cmd`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DrmModeFbDirtyCmd {
    /// Framebuffer id.
    pub fb_id: u32,
    /// `DRM_MODE_FB_DIRTY_*`.
    pub flags: u32,
    /// Fill colour for `DRM_MODE_FB_DIRTY_ANNOTATE_FILL`.
    pub color: u32,
    /// Number of clip rectangles.
    pub num_clips: u32,
    /// User pointer to a `drm_clip_rect` array.
    pub clips_ptr: u64,
}

/// `struct drm_mode_cursor2`: the legacy cursor ioctl with a hot spot.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DrmModeCursor2 {
    /// `DRM_MODE_CURSOR_BO` and/or `DRM_MODE_CURSOR_MOVE`.
    pub flags: u32,
    /// CRTC id.
    pub crtc_id: u32,
    /// Where the image's top-left corner goes, in CRTC pixels.
    pub x: i32,
    /// Where the image's top-left corner goes, in CRTC pixels.
    pub y: i32,
    /// Image width.
    pub width: u32,
    /// Image height.
    pub height: u32,
    /// GEM handle of an ARGB8888 buffer, 0 to remove the cursor.
    pub handle: u32,
    /// Hot spot, from the image's top-left corner.
    pub hot_x: i32,
    /// Hot spot, from the image's top-left corner.
    pub hot_y: i32,
}

/// `struct drm_clip_rect`: `[x1, x2) x [y1, y2)`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DrmClipRect {
    /// Left.
    pub x1: u16,
    /// Top.
    pub y1: u16,
    /// Right (exclusive).
    pub x2: u16,
    /// Bottom (exclusive).
    pub y2: u16,
}

/// Name of a `DRM_MODE_CONNECTOR_*` type, as the kernel spells it in sysfs.
pub fn connector_type_name(t: u32) -> &'static str {
    const NAMES: [&str; 21] = [
        "Unknown",
        "VGA",
        "DVI-I",
        "DVI-D",
        "DVI-A",
        "Composite",
        "SVIDEO",
        "LVDS",
        "Component",
        "DIN",
        "DP",
        "HDMI-A",
        "HDMI-B",
        "TV",
        "eDP",
        "Virtual",
        "DSI",
        "DPI",
        "Writeback",
        "SPI",
        "USB",
    ];
    NAMES.get(t as usize).copied().unwrap_or("Unknown")
}

/// What GETRESOURCES reports.
#[derive(Debug, Default, Clone)]
pub struct Resources {
    /// CRTC ids, in index order (bit i of `possible_crtcs` is `crtcs[i]`).
    pub crtcs: Vec<u32>,
    /// Connector ids.
    pub connectors: Vec<u32>,
}

/// What GETCONNECTOR reports.
#[derive(Debug, Clone)]
pub struct Connector {
    /// Connector id.
    pub id: u32,
    /// `DRM_MODE_CONNECTOR_*`.
    pub connector_type: u32,
    /// Index among connectors of the same type.
    pub type_id: u32,
    /// 1 connected, 2 disconnected, 3 unknown.
    pub connection: u32,
    /// Currently attached encoder, 0 if none.
    pub encoder_id: u32,
    /// Encoders that can drive it.
    pub encoders: Vec<u32>,
    /// Modes, in the driver's order.
    pub modes: Vec<DrmModeModeinfo>,
}

impl Connector {
    /// `Virtual-1` and the like.
    pub fn name(&self) -> String {
        format!(
            "{}-{}",
            connector_type_name(self.connector_type),
            self.type_id
        )
    }
}

/// A dumb buffer as created by the kernel.
#[derive(Debug, Clone, Copy)]
pub struct Dumb {
    /// GEM handle.
    pub handle: u32,
    /// Bytes per row.
    pub pitch: u32,
    /// Size in bytes.
    pub size: u64,
}

/// An open DRM device node.
#[derive(Debug)]
pub struct Card {
    file: File,
    path: PathBuf,
}

/// How many times the count-then-fill ioctls are retried when a hotplug changes the counts in
/// between.
const RETRIES: usize = 5;

impl Card {
    /// Opens `path` (e.g. `/dev/dri/card0`) read-write.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        Ok(Card {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The open device.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Issues `request` with `arg`, retrying on EINTR/EAGAIN as libdrm's `drmIoctl` does.
    ///
    /// # Safety
    ///
    /// `request` must be an ioctl whose argument is a `T` (the ioctl size field says so for the
    /// encoded ones), and every user pointer inside `arg` must be valid for what the ioctl
    /// reads or writes through it.
    pub(crate) unsafe fn ioctl<T>(
        &self,
        op: &'static str,
        request: u64,
        arg: &mut T,
    ) -> Result<()> {
        loop {
            // SAFETY: the caller guarantees `arg` has the layout `request` expects and that its
            // embedded pointers are valid; the fd stays open for the call.
            let rc = unsafe {
                libc::ioctl(self.file.as_raw_fd(), request as _, std::ptr::from_mut(arg))
            };
            if rc == 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                _ => return Err(Error::io(op, &self.path, e)),
            }
        }
    }

    /// Becomes DRM master (a no-op if this open file already is, as the first opener is).
    pub fn set_master(&self) -> Result<()> {
        let rc = loop {
            // SAFETY: SET_MASTER takes no argument; the fd is open.
            let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), DRM_IOCTL_SET_MASTER as _, 0) };
            if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break rc;
            }
        };
        if rc != 0 {
            return Err(Error::io(
                "DRM_IOCTL_SET_MASTER",
                &self.path,
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// The value of capability `cap`.
    pub fn get_cap(&self, cap: u64) -> Result<u64> {
        let mut arg = DrmGetCap {
            capability: cap,
            value: 0,
        };
        // SAFETY: GET_CAP takes a drm_get_cap, which has no pointers.
        unsafe { self.ioctl("DRM_IOCTL_GET_CAP", DRM_IOCTL_GET_CAP, &mut arg)? };
        Ok(arg.value)
    }

    /// CRTCs, connectors and encoders.
    pub fn resources(&self) -> Result<Resources> {
        for _ in 0..RETRIES {
            let mut counts = DrmModeCardRes::default();
            // SAFETY: all array pointers are null with zero counts: the kernel only reports
            // the counts.
            unsafe {
                self.ioctl(
                    "DRM_IOCTL_MODE_GETRESOURCES",
                    DRM_IOCTL_MODE_GETRESOURCES,
                    &mut counts,
                )?
            };
            let mut fbs = vec![0u32; counts.count_fbs as usize];
            let mut crtcs = vec![0u32; counts.count_crtcs as usize];
            let mut connectors = vec![0u32; counts.count_connectors as usize];
            let mut encoders = vec![0u32; counts.count_encoders as usize];
            let mut res = DrmModeCardRes {
                fb_id_ptr: fbs.as_mut_ptr() as u64,
                crtc_id_ptr: crtcs.as_mut_ptr() as u64,
                connector_id_ptr: connectors.as_mut_ptr() as u64,
                encoder_id_ptr: encoders.as_mut_ptr() as u64,
                ..counts
            };
            // SAFETY: each pointer addresses a live Vec of exactly the count passed with it, and
            // the kernel writes at most that many ids.
            unsafe {
                self.ioctl(
                    "DRM_IOCTL_MODE_GETRESOURCES",
                    DRM_IOCTL_MODE_GETRESOURCES,
                    &mut res,
                )?
            };
            if res.count_fbs > counts.count_fbs
                || res.count_crtcs > counts.count_crtcs
                || res.count_connectors > counts.count_connectors
                || res.count_encoders > counts.count_encoders
            {
                continue;
            }
            crtcs.truncate(res.count_crtcs as usize);
            connectors.truncate(res.count_connectors as usize);
            return Ok(Resources { crtcs, connectors });
        }
        Err(Error::Check(format!(
            "{}: resource counts kept changing",
            self.path.display()
        )))
    }

    /// Connector `id`, probed (the zero-count first call makes the kernel refresh its modes).
    pub fn connector(&self, id: u32) -> Result<Connector> {
        for _ in 0..RETRIES {
            let mut counts = DrmModeGetConnector {
                connector_id: id,
                ..Default::default()
            };
            // SAFETY: all array pointers are null with zero counts: the kernel only reports
            // the counts (and probes the connector).
            unsafe {
                self.ioctl(
                    "DRM_IOCTL_MODE_GETCONNECTOR",
                    DRM_IOCTL_MODE_GETCONNECTOR,
                    &mut counts,
                )?
            };
            let mut encoders = vec![0u32; counts.count_encoders as usize];
            let mut modes = vec![DrmModeModeinfo::default(); counts.count_modes as usize];
            // Properties are not needed: a zero count makes the kernel skip them.
            let mut conn = DrmModeGetConnector {
                encoders_ptr: encoders.as_mut_ptr() as u64,
                modes_ptr: modes.as_mut_ptr() as u64,
                props_ptr: 0,
                prop_values_ptr: 0,
                count_props: 0,
                connector_id: id,
                ..counts
            };
            // SAFETY: the encoder and mode pointers address live Vecs of exactly the counts
            // passed with them; the kernel writes at most that many entries, and none for props.
            unsafe {
                self.ioctl(
                    "DRM_IOCTL_MODE_GETCONNECTOR",
                    DRM_IOCTL_MODE_GETCONNECTOR,
                    &mut conn,
                )?
            };
            if conn.count_encoders > counts.count_encoders || conn.count_modes > counts.count_modes
            {
                continue;
            }
            encoders.truncate(conn.count_encoders as usize);
            modes.truncate(conn.count_modes as usize);
            return Ok(Connector {
                id,
                connector_type: conn.connector_type,
                type_id: conn.connector_type_id,
                connection: conn.connection,
                encoder_id: conn.encoder_id,
                encoders,
                modes,
            });
        }
        Err(Error::Check(format!(
            "{}: connector {id}: mode count kept changing",
            self.path.display()
        )))
    }

    /// Encoder `id`.
    pub fn encoder(&self, id: u32) -> Result<DrmModeGetEncoder> {
        let mut enc = DrmModeGetEncoder {
            encoder_id: id,
            ..Default::default()
        };
        // SAFETY: GETENCODER takes a drm_mode_get_encoder, which has no pointers.
        unsafe {
            self.ioctl(
                "DRM_IOCTL_MODE_GETENCODER",
                DRM_IOCTL_MODE_GETENCODER,
                &mut enc,
            )?
        };
        Ok(enc)
    }

    /// Creates a dumb buffer.
    pub fn create_dumb(&self, width: u32, height: u32, bpp: u32) -> Result<Dumb> {
        let mut arg = DrmModeCreateDumb {
            width,
            height,
            bpp,
            ..Default::default()
        };
        // SAFETY: CREATE_DUMB takes a drm_mode_create_dumb, which has no pointers.
        unsafe {
            self.ioctl(
                "DRM_IOCTL_MODE_CREATE_DUMB",
                DRM_IOCTL_MODE_CREATE_DUMB,
                &mut arg,
            )?
        };
        Ok(Dumb {
            handle: arg.handle,
            pitch: arg.pitch,
            size: arg.size,
        })
    }

    /// The `mmap` offset of dumb buffer `handle`.
    pub fn map_dumb(&self, handle: u32) -> Result<u64> {
        let mut arg = DrmModeMapDumb {
            handle,
            ..Default::default()
        };
        // SAFETY: MAP_DUMB takes a drm_mode_map_dumb, which has no pointers.
        unsafe { self.ioctl("DRM_IOCTL_MODE_MAP_DUMB", DRM_IOCTL_MODE_MAP_DUMB, &mut arg)? };
        Ok(arg.offset)
    }

    /// Destroys dumb buffer `handle`.
    pub fn destroy_dumb(&self, handle: u32) -> Result<()> {
        let mut arg = DrmModeDestroyDumb { handle };
        // SAFETY: DESTROY_DUMB takes a drm_mode_destroy_dumb, which has no pointers.
        unsafe {
            self.ioctl(
                "DRM_IOCTL_MODE_DESTROY_DUMB",
                DRM_IOCTL_MODE_DESTROY_DUMB,
                &mut arg,
            )
        }
    }

    /// Wraps a buffer in an XRGB8888 framebuffer (legacy ADDFB, depth 24, 32 bpp).
    pub fn add_fb(&self, width: u32, height: u32, dumb: &Dumb) -> Result<u32> {
        let mut arg = DrmModeFbCmd {
            fb_id: 0,
            width,
            height,
            pitch: dumb.pitch,
            bpp: 32,
            depth: 24,
            handle: dumb.handle,
        };
        // SAFETY: ADDFB takes a drm_mode_fb_cmd, which has no pointers.
        unsafe { self.ioctl("DRM_IOCTL_MODE_ADDFB", DRM_IOCTL_MODE_ADDFB, &mut arg)? };
        Ok(arg.fb_id)
    }

    /// Removes framebuffer `fb_id` (turning off any CRTC that shows it).
    pub fn rm_fb(&self, fb_id: u32) -> Result<()> {
        let mut arg = fb_id;
        // SAFETY: RMFB takes a bare u32.
        unsafe { self.ioctl("DRM_IOCTL_MODE_RMFB", DRM_IOCTL_MODE_RMFB, &mut arg) }
    }

    /// Shows `fb_id` on `crtc_id` through `connector_id` in `mode`, from pixel (`x`, `y`)
    /// of the framebuffer on (a framebuffer may be larger than the mode).
    pub fn set_crtc(
        &self,
        crtc_id: u32,
        fb_id: u32,
        connector_id: u32,
        mode: &DrmModeModeinfo,
        (x, y): (u32, u32),
    ) -> Result<()> {
        let mut connectors = [connector_id];
        let mut arg = DrmModeCrtc {
            set_connectors_ptr: connectors.as_mut_ptr() as u64,
            count_connectors: 1,
            crtc_id,
            fb_id,
            x,
            y,
            gamma_size: 0,
            mode_valid: 1,
            mode: *mode,
        };
        // SAFETY: the connector pointer addresses a live one-element array, matching
        // count_connectors; the kernel only reads it.
        unsafe { self.ioctl("DRM_IOCTL_MODE_SETCRTC", DRM_IOCTL_MODE_SETCRTC, &mut arg) }
    }

    /// The legacy cursor ioctl (`DRM_IOCTL_MODE_CURSOR2`), as X servers and compositors
    /// without atomic use it: `flags` says whether the image (`handle`, `width` x `height`,
    /// hot spot) and/or the position (`x`, `y`: the image's top-left corner) change.
    pub fn cursor2(&self, arg: DrmModeCursor2) -> Result<()> {
        let mut arg = arg;
        // SAFETY: CURSOR2 takes a drm_mode_cursor2, which has no pointers.
        unsafe { self.ioctl("DRM_IOCTL_MODE_CURSOR2", DRM_IOCTL_MODE_CURSOR2, &mut arg) }
    }

    /// Tells the driver which parts of `fb_id` changed (at most [`DIRTY_MAX_CLIPS`] rects).
    pub fn dirty_fb(&self, fb_id: u32, clips: &[DrmClipRect]) -> Result<()> {
        if clips.len() > DIRTY_MAX_CLIPS {
            return Err(Error::Check(format!(
                "{} clip rects exceed DRM_MODE_FB_DIRTY_MAX_CLIPS",
                clips.len()
            )));
        }
        let mut arg = DrmModeFbDirtyCmd {
            fb_id,
            flags: 0,
            color: 0,
            num_clips: clips.len() as u32,
            clips_ptr: clips.as_ptr() as u64,
        };
        // SAFETY: the clip pointer addresses `clips`, live for the call, with num_clips
        // entries; the kernel only reads them.
        unsafe { self.ioctl("DRM_IOCTL_MODE_DIRTYFB", DRM_IOCTL_MODE_DIRTYFB, &mut arg) }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    /// Values printed by a C program built against libdrm 2.4.114's copies of the kernel
    /// headers (`drm.h`, `drm_mode.h`) on x86_64.
    #[test]
    fn ioctl_numbers_match_the_kernel_header() {
        assert_eq!(DRM_IOCTL_SET_MASTER, 0x641e);
        assert_eq!(DRM_IOCTL_GET_CAP, 0xc010_640c);
        assert_eq!(DRM_IOCTL_MODE_GETRESOURCES, 0xc040_64a0);
        assert_eq!(DRM_IOCTL_MODE_SETCRTC, 0xc068_64a2);
        assert_eq!(DRM_IOCTL_MODE_GETENCODER, 0xc014_64a6);
        assert_eq!(DRM_IOCTL_MODE_GETCONNECTOR, 0xc050_64a7);
        assert_eq!(DRM_IOCTL_MODE_ADDFB, 0xc01c_64ae);
        assert_eq!(DRM_IOCTL_MODE_RMFB, 0xc004_64af);
        assert_eq!(DRM_IOCTL_MODE_DIRTYFB, 0xc018_64b1);
        assert_eq!(DRM_IOCTL_MODE_CREATE_DUMB, 0xc020_64b2);
        assert_eq!(DRM_IOCTL_MODE_MAP_DUMB, 0xc010_64b3);
        assert_eq!(DRM_IOCTL_MODE_DESTROY_DUMB, 0xc004_64b4);
    }

    /// `DRM_IOWR(0xBB, struct drm_mode_cursor2)` of drm.h, the struct being nine 32-bit fields.
    #[test]
    fn cursor_ioctl_number() {
        assert_eq!(DRM_IOCTL_MODE_CURSOR2, 0xc024_64bb);
    }

    #[test]
    fn layouts_match_the_kernel_header() {
        assert_eq!(size_of::<DrmGetCap>(), 16);
        assert_eq!(size_of::<DrmModeCardRes>(), 64);
        assert_eq!(size_of::<DrmModeModeinfo>(), 68);
        assert_eq!(offset_of!(DrmModeModeinfo, vrefresh), 24);
        assert_eq!(offset_of!(DrmModeModeinfo, name), 36);
        assert_eq!(size_of::<DrmModeGetConnector>(), 80);
        assert_eq!(offset_of!(DrmModeGetConnector, connection), 60);
        assert_eq!(size_of::<DrmModeGetEncoder>(), 20);
        assert_eq!(size_of::<DrmModeCrtc>(), 104);
        assert_eq!(offset_of!(DrmModeCrtc, mode), 36);
        assert_eq!(size_of::<DrmModeCreateDumb>(), 32);
        assert_eq!(offset_of!(DrmModeCreateDumb, size), 24);
        assert_eq!(size_of::<DrmModeMapDumb>(), 16);
        assert_eq!(size_of::<DrmModeDestroyDumb>(), 4);
        assert_eq!(size_of::<DrmModeFbCmd>(), 28);
        assert_eq!(size_of::<DrmModeFbDirtyCmd>(), 24);
        assert_eq!(size_of::<DrmClipRect>(), 8);
        assert_eq!(size_of::<DrmModeCursor2>(), 36);
        assert_eq!(offset_of!(DrmModeCursor2, hot_x), 28);
    }

    #[test]
    fn names_and_labels() {
        assert_eq!(connector_type_name(15), "Virtual");
        assert_eq!(connector_type_name(99), "Unknown");
        let mode = DrmModeModeinfo {
            hdisplay: 1024,
            vdisplay: 768,
            vrefresh: 60,
            type_: DRM_MODE_TYPE_PREFERRED | 0x40,
            ..Default::default()
        };
        assert_eq!(mode.label(), "1024x768@60");
        assert!(mode.preferred());
    }

    /// A path that is not a DRM device fails cleanly on the first ioctl.
    #[test]
    fn ioctls_on_a_plain_file_fail_with_the_op_name() {
        let path = std::env::temp_dir().join(format!("saffron-guest-drm-{}", std::process::id()));
        std::fs::write(&path, b"").unwrap();
        let card = Card::open(&path).unwrap();
        let e = card.resources().unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(
            e.to_string().starts_with("DRM_IOCTL_MODE_GETRESOURCES "),
            "{e}"
        );
    }
}
