//! The control-socket commands shared by `saffron run` and `saffron device`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use serde_json::{Value, json};

use crate::control::ControlHandler;
use crate::intx::Intx;
use crate::vfio_user::{DeviceServer, FrontendStats, SharedDevice, lock};
use saffron_worker::red::WorkerControl;

/// What the control socket can see and do.
pub struct Api {
    mode: &'static str,
    device: SharedDevice,
    worker: WorkerControl,
    intx: Arc<Intx>,
    frontend: Arc<FrontendStats>,
    quit: Arc<AtomicBool>,
    vmm_pid: AtomicU32,
    spice: std::sync::OnceLock<Arc<saffron_server::ServerHandle>>,
}

impl Api {
    /// An API over `server`'s device; `mode` is "run" or "device"; `quit` is set by the
    /// `quit` command and watched by the main loop.
    pub fn new(mode: &'static str, server: &DeviceServer, quit: Arc<AtomicBool>) -> Self {
        Api {
            mode,
            device: Arc::clone(server.device()),
            worker: server.worker().clone(),
            intx: Arc::clone(server.intx()),
            frontend: Arc::clone(server.stats()),
            quit,
            vmm_pid: AtomicU32::new(0),
            spice: std::sync::OnceLock::new(),
        }
    }

    /// An API over a device a front end other than the vfio-user server runs (the built-in
    /// VMM): its device, worker and interrupt line.
    pub fn with_parts(
        mode: &'static str,
        device: SharedDevice,
        worker: WorkerControl,
        intx: Arc<Intx>,
        quit: Arc<AtomicBool>,
    ) -> Self {
        Api {
            mode,
            device,
            worker,
            intx,
            frontend: Arc::new(FrontendStats::default()),
            quit,
            vmm_pid: AtomicU32::new(0),
            spice: std::sync::OnceLock::new(),
        }
    }

    /// Records the pid of the VMM we started (shown by `status`).
    pub fn set_vmm_pid(&self, pid: u32) {
        self.vmm_pid.store(pid, Ordering::Relaxed);
    }

    /// Gives the API the Spice server, for the password commands.
    pub fn set_spice(&self, handle: Arc<saffron_server::ServerHandle>) {
        let _ = self.spice.set(handle);
    }

    fn set_password(&self, request: &Value) -> Result<Value, String> {
        let spice = self.spice.get().ok_or("no Spice server (--spice)")?;
        let password = request
            .get("password")
            .and_then(Value::as_str)
            .ok_or("set_password needs \"password\"")?;
        let lifetime = request
            .get("expiry_seconds")
            .and_then(Value::as_u64)
            .map(std::time::Duration::from_secs);
        spice
            .set_ticket(password, lifetime)
            .map_err(|e| e.to_string())?;
        Ok(json!({}))
    }

    /// The image compression of display clients that connect from now on (spice-server's
    /// `set_image_compression`; `mode` takes the `--spice-image-compression` values).
    fn set_image_compression(&self, request: &Value) -> Result<Value, String> {
        let spice = self.spice.get().ok_or("no Spice server (--spice)")?;
        let mode: saffron_server::Compression = request
            .get("mode")
            .and_then(Value::as_str)
            .ok_or("set_image_compression needs \"mode\"")?
            .parse()?;
        spice.set_image_compression(mode);
        Ok(json!({ "mode": mode.to_string() }))
    }

    fn expire_password(&self) -> Result<Value, String> {
        let spice = self.spice.get().ok_or("no Spice server (--spice)")?;
        // A password nobody knows, already expired: no new link succeeds until set_password.
        let nonce = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        spice
            .set_ticket(&nonce, Some(std::time::Duration::ZERO))
            .map_err(|e| e.to_string())?;
        Ok(json!({}))
    }

    fn client_info(&self) -> Result<Value, String> {
        let spice = self.spice.get().ok_or("no Spice server (--spice)")?;
        let clients: Vec<Value> = spice.clients().iter().map(client_json).collect();
        let i = spice.image_totals();
        let v = spice.stream_totals();
        let a = spice.agent_stats();
        Ok(json!({
            "clients": clients,
            // The guest agent link: whether an agent is there, and what went through it.
            "agent": {
                "connected": spice.agent_connected(),
                "links": a.links, "resets": a.resets,
                "pieces_to_client": a.pieces_to_client, "pieces_dropped": a.pieces_dropped,
                "bytes_to_guest": a.bytes_to_guest,
            },
            "image_compression": spice.image_compression().to_string(),
            // Every display client's images so far, by format, and their bytes.
            "images": {
                "raw": i.raw, "quic": i.quic, "lz": i.lz, "glz": i.glz,
                "zlib_glz": i.zlib_glz, "lz4": i.lz4,
                "pixel_bytes": i.pixel_bytes, "payload_bytes": i.payload_bytes,
            },
            // Every display client's video streams so far (see `streams_json`).
            "streams": streams_json(&v),
        }))
    }

    fn status(&self) -> Value {
        let dev = lock(&self.device);
        let pci = dev.pci();
        let bars: Vec<Value> = (0..4)
            .map(|i| {
                json!({
                    "index": i,
                    "size": dev.bar_size(i),
                    "address": pci.bar_address(i),
                })
            })
            .collect();
        let pid = self.vmm_pid.load(Ordering::Relaxed);
        json!({
            "mode": self.mode,
            "state": "running",
            "vmm_pid": (pid != 0).then_some(pid),
            "spice": self.spice.get().map(|s| s.local_addr().to_string()),
            "device": {
                "vendor_id": saffron_device::qxl::QXL_VENDOR_ID,
                "device_id": saffron_device::qxl::QXL_DEVICE_ID,
                "revision": saffron_device::qxl::QXL_REVISION,
                "bars": bars,
                "irq_mode": format!("{:?}", self.intx.mode()).to_lowercase(),
                "irq_level": dev.irq_level(),
            },
        })
    }

    fn screendump(&self, request: &Value) -> Result<Value, String> {
        let path = request
            .get("path")
            .and_then(Value::as_str)
            .ok_or("screendump needs \"path\"")?;
        // One head's rectangle on request; the first head shown by default.
        let (width, height, rgb) = match request.get("head") {
            None | Some(Value::Null) => self.worker.screendump()?,
            Some(h) => {
                let id = h
                    .as_u64()
                    .and_then(|h| u32::try_from(h).ok())
                    .ok_or("screendump \"head\" must be a head id")?;
                self.worker.head_screendump(id)?
            }
        };
        let png = saffron_worker::encode_png(width, height, &rgb).map_err(|e| e.to_string())?;
        std::fs::write(path, png).map_err(|e| format!("cannot write {path}: {e}"))?;
        Ok(json!({"path": path, "width": width, "height": height}))
    }

    fn stats(&self) -> Value {
        let worker = self.worker.stats();
        // What the guest's monitors show of the primary, as display clients are told (kept
        // out of the big `json!` below, which is at the macro's recursion limit).
        let heads = worker
            .as_ref()
            .map(|w| json!({"max": w.max_heads, "shown": heads_json(&w.heads)}));
        let dev = lock(&self.device);
        let s = dev.stats();
        let regions: Vec<u64> = self
            .frontend
            .region_messages
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        json!({
            "io_writes": s.io_writes.to_vec(),
            "io_ignored": s.io_ignored,
            "bar_accesses": s.bar_accesses.to_vec(),
            "irq_raised": s.irq_raised,
            "intx_signals": self.intx.signals(),
            "resets": s.resets,
            "region_messages": regions,
            "dma_maps": self.frontend.dma_maps.load(Ordering::Relaxed),
            "last_guest_log": s.last_log,
            "commands": s.commands,
            "cursor_commands": s.cursor_commands,
            "releases": s.releases,
            "async_completions": s.async_completions,
            "guest_bugs": s.guest_bugs,
            "last_guest_bug": s.last_guest_bug,
            "primary_creates": s.primary_creates,
            "heads": heads,
            "worker": worker.map(|w| json!({
                "draws": w.draws,
                "dropped_draws": w.dropped_draws,
                "dropped_outside_surface": w.dropped_outside_surface,
                "dropped_no_surface": w.dropped_no_surface,
                "surface_commands": w.surface_commands,
                "cursor_commands": w.cursor_commands,
                "other_commands": w.other_commands,
                "bad_commands": w.bad_commands,
                "surfaces": w.surface_ids,
                "held_surface_creates": w.held_surface_creates,
                "render": w.render.iter().map(|(k, c)| json!({
                    "kind": k,
                    "rendered": c.rendered,
                    "approximated": c.approximated,
                    "unsupported": c.unsupported,
                    "failed": c.dropped,
                })).collect::<Vec<_>>(),
                "cursor": {
                    "x": w.cursor.x,
                    "y": w.cursor.y,
                    "visible": w.cursor.visible,
                    "shape": w.cursor.shape.as_ref().map(|(kind, width, height, hot_x, hot_y)| json!({
                        "type": kind,
                        "width": width,
                        "height": height,
                        "hot_x": hot_x,
                        "hot_y": hot_y,
                    })),
                    "shape_generation": w.cursor.shape_generation,
                    "resets": w.cursor.resets,
                },
            })),
        })
    }
}

/// Heads as the control socket lists them.
fn heads_json(heads: &[saffron_display::Head]) -> Value {
    heads
        .iter()
        .map(|h| json!({"id": h.id, "x": h.x, "y": h.y, "width": h.width, "height": h.height}))
        .collect()
}

/// The name QEMU and spice-server use for a Spice channel type.
fn channel_name(channel_type: u8) -> String {
    match channel_type {
        1 => "main".into(),
        2 => "display".into(),
        3 => "inputs".into(),
        4 => "cursor".into(),
        other => other.to_string(),
    }
}

/// Video stream counters: MJPEG frames and their bytes, the last frames re-sent losslessly
/// as streams went still, client reports and the quality steps they caused, and the frames
/// skipped and quality steps taken to fit a slow client's link.
fn streams_json(v: &saffron_server::StreamStats) -> Value {
    json!({
        "created": v.created, "destroyed": v.destroyed, "frames": v.frames,
        "sized_frames": v.sized_frames, "frame_bytes": v.frame_bytes,
        "pixel_bytes": v.pixel_bytes, "lossless_resends": v.lossless_resends,
        "reports": v.reports, "quality_down": v.quality_down,
        "quality_up": v.quality_up, "reports_refused": v.reports_refused,
        "skipped_frames": v.skipped_frames,
        "link_quality_down": v.link_quality_down, "link_quality_up": v.link_quality_up,
        "vp8_frames": v.vp8_frames, "vp8_key_frames": v.vp8_key_frames,
        "clips": v.clips, "unclips": v.unclips,
    })
}

/// One client of `client_info`: its session, where it is, its channels and what they moved.
fn client_json(c: &saffron_server::ClientInfo) -> Value {
    let channels: Vec<Value> = c
        .channels
        .iter()
        .map(|ch| {
            json!({
                "type": channel_name(ch.channel_type),
                "id": ch.channel_id,
                "tls": ch.tls,
                "websocket": ch.websocket,
                "html5": ch.html5,
                "peer": ch.peer.map(|p| p.to_string()),
                "bytes_sent": ch.bytes_sent,
                // Display channels: drawings dropped as covered by later ones, merged into
                // a resync when the client fell behind, and resyncs.
                "display": ch.display.map(|d| json!({
                    "items": d.pushed,
                    "dropped_covered": d.dropped_covered,
                    "merged": d.merged,
                    "overflows": d.overflows,
                    "resyncs": d.resyncs,
                })),
                // Display channels: what this client's images went as.
                "images": ch.images.map(|i| json!({
                    "raw": i.raw, "quic": i.quic, "lz": i.lz, "glz": i.glz,
                    "zlib_glz": i.zlib_glz, "lz4": i.lz4, "from_cache": i.from_cache,
                    "jpeg": i.jpeg, "lossless_resends": i.lossless_resends,
                })),
                // Display channels: this client's video streams.
                "streams": ch.streams.as_ref().map(streams_json),
                // Display channels: the link estimate (see server/src/link_estimate.rs).
                "link": ch.link.map(|l| json!({
                    "rtt_ms": l.rtt.map(|d| d.as_secs_f64() * 1000.0),
                    "min_rtt_ms": l.min_rtt.map(|d| d.as_secs_f64() * 1000.0),
                    "bandwidth_bps": l.bits_per_sec,
                    "backlog_bytes": l.backlog_bytes,
                    "slow": l.slow,
                    "rtt_samples": l.rtt_samples,
                    "bandwidth_samples": l.bandwidth_samples,
                })),
                "bytes_received": ch.bytes_received,
                // Display channels: the heads (monitors) this client was told of.
                "heads": ch.heads.as_deref().map(heads_json),
            })
        })
        .collect();
    json!({
        "session_id": c.session_id,
        "peer": c.peer.map(|p| p.to_string()),
        "mouse_mode": match c.mouse_mode {
            saffron_server::session::MOUSE_MODE_CLIENT => "client",
            _ => "server",
        },
        "rtt_ms": c.rtt.map(|d| d.as_secs_f64() * 1000.0),
        // How far behind the server's multimedia clock the client's runs (stream frames'
        // slack; raised when its reports say frames came late).
        "mm_latency_ms": c.mm_latency,
        "bytes_sent": c.channels.iter().map(|ch| ch.bytes_sent).sum::<u64>(),
        "bytes_received": c.channels.iter().map(|ch| ch.bytes_received).sum::<u64>(),
        "channels": channels,
    })
}

impl ControlHandler for Api {
    fn handle(&self, cmd: &str, request: &Value) -> Result<Value, String> {
        match cmd {
            "status" => Ok(self.status()),
            "stats" => Ok(self.stats()),
            "screendump" => self.screendump(request),
            "set_password" => self.set_password(request),
            "expire_password" => self.expire_password(),
            "set_image_compression" => self.set_image_compression(request),
            "client_info" => self.client_info(),
            "quit" => {
                self.quit.store(true, Ordering::Release);
                Ok(json!({}))
            }
            other => Err(format!(
                "unknown command '{other}' (status, stats, screendump, set_password, expire_password, set_image_compression, client_info, quit)"
            )),
        }
    }
}
