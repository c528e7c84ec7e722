//! `qxl-surface`: an off-screen surface through the qxl driver's own ioctls, the way a 3D or
//! X.org client of the driver makes one.
//!
//! Allocates a surface bo (`QXL_ALLOC_SURF`), maps it and writes a picture into it, then asks
//! for `QXL_UPDATE_AREA` over it: the driver first turns the bo into a device surface (a
//! SURFACE CREATE command on the ring), then waits for the device's IO_CMD. The picture is read
//! back from the bo and its digest printed, so the host can compare it with the surface it
//! sees. Closing the handle frees the bo, which makes the driver send a SURFACE DESTROY.

use std::path::PathBuf;

use crate::args::Options;
use crate::drm::Card;
use crate::error::{Error, Result};
use crate::image::{FrameHasher, HashFormat, Pattern, PixelFormat};
use crate::map::SharedMapping;
use crate::qxl_drm::SURFACE_FMT_32_XRGB;

/// Largest side accepted, so the bo stays a small part of the surface memory.
const MAX_SIDE: u64 = 1024;

/// `qxl-surface [--card /dev/dri/card0] [--width 64] [--height 64] [--pattern random:7]
/// --sync N [--sync-timeout-ms 60000]`.
///
/// Prints `SAFFRON-QXLSURF width= height= stride= sha256=` once the device surface exists,
/// hands over with `SAFFRON-SYNC id=N label=surface-created`, closes the bo, prints
/// `SAFFRON-QXLSURF closed=1` and hands over again with `id=N+1 label=surface-closed`.
pub fn run(mut opts: Options) -> Result<()> {
    let card_path = PathBuf::from(
        opts.take("card")
            .unwrap_or_else(|| "/dev/dri/card0".to_string()),
    );
    let width = opts.u64_or("width", 64, MAX_SIDE)? as u32;
    let height = opts.u64_or("height", 64, MAX_SIDE)? as u32;
    let pattern = Pattern::parse(
        &opts
            .take("pattern")
            .unwrap_or_else(|| "random:7".to_string()),
    )?;
    let sync = opts.require_u64("sync")?;
    let sync_timeout = opts.u64_or(
        "sync-timeout-ms",
        super::sync::DEFAULT_TIMEOUT_MS,
        3_600_000,
    )?;
    opts.finish()?;
    if width == 0 || height == 0 {
        return Err(Error::Usage("--width and --height must be positive".into()));
    }

    let card = Card::open(&card_path)?;
    card.set_master()?;
    let stride = width * 4;
    let handle = card.qxl_alloc_surf(SURFACE_FMT_32_XRGB, width, height, stride as i32)?;
    let offset = card.qxl_map(handle)?;
    let len = stride as usize * height as usize;
    let map = SharedMapping::new(card.file(), offset, len, &card_path)?;
    let img = pattern.render(width, height)?;
    let mut row = Vec::new();
    for y in 0..img.height {
        img.encode_span(y, 0, img.width, PixelFormat::XRGB8888, &mut row);
        map.write_at(y as u64 * u64::from(stride), &row)?;
    }
    // The bo is device memory (msync refuses such mappings): a full fence drains the
    // write-combining buffers before the driver hands the surface to the device.
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    card.qxl_update_area(handle, 0, 0, width, height)?;

    let mut hasher = FrameHasher::new(img.width, PixelFormat::XRGB8888, HashFormat::Rgb)?;
    let mut line = vec![0u8; hasher.row_len()];
    for y in 0..height {
        map.read_at(u64::from(y) * u64::from(stride), &mut line)?;
        hasher.update_row(&line);
    }
    let sha = hasher.finish();
    if sha != img.sha256() {
        return Err(Error::Check(format!(
            "surface bo reads back as sha256 {sha}, wrote {}",
            img.sha256()
        )));
    }
    println!("SAFFRON-QXLSURF width={width} height={height} stride={stride} sha256={sha}");
    super::sync::hand_over(&sync.to_string(), Some("surface-created"), sync_timeout)?;

    drop(map);
    card.gem_close(handle)?;
    println!("SAFFRON-QXLSURF closed=1");
    super::sync::hand_over(
        &(sync + 1).to_string(),
        Some("surface-closed"),
        sync_timeout,
    )
}
