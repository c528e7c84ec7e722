//! `heads`: light several monitors at once, as a compositor does once a client asks for more
//! than one display.
//!
//! The qxl driver reports a connector as connected when the ROM's client monitors config (a
//! Spice client's layout, through the device) has an enabled head at that connector's index.
//! This command waits until `--count` connectors are connected, then scans out one XRGB8888
//! dumb buffer of each connector's preferred mode on its own CRTC: the driver puts them side
//! by side on one primary surface and tells the device where each head is in its monitors
//! config. Each head gets its own picture, so a host can tell them apart.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::kms::{pick_crtc, upload};
use crate::args::Options;
use crate::drm::{CONNECTOR_CONNECTED, Card, Connector, DRM_CAP_DUMB_BUFFER, DrmModeModeinfo};
use crate::error::{Error, Result};
use crate::image::{Pattern, Rect};
use crate::map::SharedMapping;

/// Most heads this command lights (drm/qxl's default `num_heads` is 4).
const MAX_COUNT: u64 = 4;

/// The pictures of the heads, one per head, all different.
const PATTERNS: [&str; 4] = ["hgrad", "random:7", "checker:16", "vgrad"];

/// One head's buffer; released (framebuffer, then dumb buffer) when dropped.
struct HeadBuffer<'a> {
    card: &'a Card,
    handle: u32,
    fb_id: Option<u32>,
    map: Option<SharedMapping>,
}

impl Drop for HeadBuffer<'_> {
    fn drop(&mut self) {
        // Errors cannot be reported from here; closing the device releases everything anyway.
        drop(self.map.take());
        if let Some(fb) = self.fb_id.take() {
            let _ = self.card.rm_fb(fb);
        }
        let _ = self.card.destroy_dumb(self.handle);
    }
}

/// The connected connectors that have modes, in the driver's order.
fn connected(card: &Card) -> Result<Vec<Connector>> {
    let res = card.resources()?;
    let mut out = Vec::new();
    for &id in &res.connectors {
        let conn = card.connector(id)?;
        if conn.connection == CONNECTOR_CONNECTED && !conn.modes.is_empty() {
            out.push(conn);
        }
    }
    Ok(out)
}

/// `heads --count N [--card /dev/dri/card0] [--wait-ms 30000] [--sync ID]
/// [--sync-timeout-ms 60000]`.
///
/// Prints `SAFFRON-HEADS connected=N waited_ms=T`, then per head `SAFFRON-HEAD index=I
/// connector= crtc= width= height= sha256=` (the digest of the head's buffer read back, as
/// packed RGB), then with `--sync` hands over (`SAFFRON-SYNC id=ID label=heads`) while every
/// head is still lit.
pub fn run(mut opts: Options) -> Result<()> {
    let card_path = PathBuf::from(
        opts.take("card")
            .unwrap_or_else(|| "/dev/dri/card0".to_string()),
    );
    let count = opts.u64_or("count", 2, MAX_COUNT)? as usize;
    let wait = Duration::from_millis(opts.u64_or("wait-ms", 30_000, 600_000)?);
    let sync_id = opts.take("sync");
    let sync_timeout = opts.u64_or(
        "sync-timeout-ms",
        super::sync::DEFAULT_TIMEOUT_MS,
        3_600_000,
    )?;
    opts.finish()?;
    if count == 0 {
        return Err(Error::Usage("--count must be at least 1".to_string()));
    }
    if let Some(id) = &sync_id {
        super::sync::check_token("sync", id)?;
    }

    let card = Card::open(&card_path)?;
    card.set_master()?;
    if card.get_cap(DRM_CAP_DUMB_BUFFER)? == 0 {
        return Err(Error::Check(format!(
            "{}: no dumb buffer support",
            card_path.display()
        )));
    }
    // The client's layout arrives as a hotplug: wait for it.
    let t0 = Instant::now();
    let conns = loop {
        let conns = connected(&card)?;
        if conns.len() >= count {
            break conns;
        }
        if t0.elapsed() > wait {
            return Err(Error::Check(format!(
                "{} connected connectors after {} ms, not {count}",
                conns.len(),
                wait.as_millis()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "SAFFRON-HEADS connected={} waited_ms={}",
        conns.len(),
        t0.elapsed().as_millis()
    );
    let res = card.resources()?;
    let mut buffers = Vec::with_capacity(count);
    let mut used_crtcs = Vec::with_capacity(count);
    // (CRTC, framebuffer, connector, mode) of each head lit.
    let mut lit = Vec::with_capacity(count);
    for (index, conn) in conns.iter().take(count).enumerate() {
        let crtc = pick_crtc(&card, &res, conn)?;
        if used_crtcs.contains(&crtc) {
            return Err(Error::Check(format!(
                "connector {} would share CRTC {crtc}",
                conn.name()
            )));
        }
        used_crtcs.push(crtc);
        let mode: DrmModeModeinfo = conn
            .modes
            .iter()
            .find(|m| m.preferred())
            .or_else(|| conn.modes.first())
            .copied()
            .ok_or_else(|| Error::Check(format!("connector {} has no mode", conn.name())))?;
        let (w, h) = (u32::from(mode.hdisplay), u32::from(mode.vdisplay));
        let dumb = card.create_dumb(w, h, 32)?;
        let mut buf = HeadBuffer {
            card: &card,
            handle: dumb.handle,
            fb_id: None,
            map: None,
        };
        if u64::from(dumb.pitch) < u64::from(w) * 4
            || dumb.size < u64::from(dumb.pitch) * u64::from(h)
        {
            return Err(Error::Check(format!(
                "dumb buffer {w}x{h}: pitch {} and size {} are too small",
                dumb.pitch, dumb.size
            )));
        }
        buf.fb_id = Some(card.add_fb(w, h, &dumb)?);
        let offset = card.map_dumb(dumb.handle)?;
        let size = usize::try_from(dumb.size)
            .map_err(|_| Error::Check(format!("dumb buffer size {} too large", dumb.size)))?;
        let map = SharedMapping::new(card.file(), offset, size, &card_path)?;
        let img = Pattern::parse(PATTERNS[index % PATTERNS.len()])?.render(w, h)?;
        let whole = Rect {
            x: 0,
            y: 0,
            w: w as usize,
            h: h as usize,
        };
        let mut row = Vec::new();
        upload(&map, dumb.pitch, &img, whole, &mut row)?;
        let fb_id = buf.fb_id.unwrap_or_default();
        card.set_crtc(crtc, fb_id, conn.id, &mode, (0, 0))?;
        lit.push((crtc, fb_id, conn.id, mode));
        // What the head was asked to show, read back from its buffer.
        let mut hasher = Sha256::new();
        let mut line = vec![0u8; w as usize * 4];
        for y in 0..u64::from(h) {
            map.read_at(y * u64::from(dumb.pitch), &mut line)?;
            for px in line.chunks_exact(4) {
                // XRGB8888 in memory: B, G, R, X.
                hasher.update([px[2], px[1], px[0]]);
            }
        }
        println!(
            "SAFFRON-HEAD index={index} connector={} crtc={crtc} width={w} height={h} sha256={}",
            conn.name(),
            crate::image::hex(&hasher.finalize())
        );
        buf.map = Some(map);
        buffers.push(buf);
    }
    // drm/qxl lays dumb buffers side by side in one shadow primary that it re-creates (empty)
    // each time a head is added, and its DIRTYFB draws every buffer at the shadow's left edge
    // (Linux 6.1 passes no head offset there). A modeset draws a head's buffer at its place:
    // set every head once more now that the shadow has its final size.
    for (crtc, fb_id, conn_id, mode) in &lit {
        card.set_crtc(*crtc, *fb_id, *conn_id, mode, (0, 0))?;
    }
    if let Some(id) = &sync_id {
        super::sync::hand_over(id, Some("heads"), sync_timeout)?;
    }
    drop(buffers);
    Ok(())
}
