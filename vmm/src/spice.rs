//! Wiring the Spice server to the device: the red worker's primary surface is the display
//! source, its cursor state the cursor source, and client input goes to the VMM's input
//! devices.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use saffron_display::{Head, Pipe, Watch};
use saffron_ring::abi::QXLURect;
use saffron_server::{Cursor, CursorKind, CursorShape, CursorSource, DisplaySource, ServerConfig};
use saffron_worker::red::WorkerControl;
use saffron_worker::{CursorState, CursorType};

use crate::vfio_user::{SharedDevice, lock};

/// What the user asked of the Spice server on the command line.
#[derive(Clone, Debug)]
pub struct SpiceOptions {
    /// Where to listen; `None` = no Spice server.
    pub addr: Option<SocketAddr>,
    /// File holding the ticket password (first line).
    pub password_file: Option<PathBuf>,
    /// Accept clients without a ticket.
    pub disable_ticketing: bool,
    /// Allow an unauthenticated listener on a non-loopback address.
    pub insecure: bool,
    /// A TLS port beside the plain one (same address).
    pub tls_port: Option<u16>,
    /// Directory with server-cert.pem and server-key.pem, as QEMU's x509-dir.
    pub x509_dir: Option<PathBuf>,
    /// Channels that must use TLS: main, display, inputs, cursor, or default (all).
    pub secure_channels: Vec<String>,
    /// Record every byte clients send, one file per connection, into this directory.
    pub record_dir: Option<PathBuf>,
    /// How images are compressed for display clients.
    pub image_compression: saffron_server::Compression,
    /// When GLZ images are wrapped in zlib.
    pub zlib_glz_wan_compression: saffron_server::WanCompression,
    /// When photographic images go as lossy JPEG (QEMU's `jpeg-wan-compression`).
    pub jpeg_wan_compression: saffron_server::WanCompression,
    /// Which regions redrawn like video go as streams (QEMU's `streaming-video`).
    pub streaming_video: saffron_server::StreamingVideo,
    /// The codecs streams may use (QEMU's `-spice video-codec=`, a spice-server video-codecs
    /// list).
    pub video_codecs: saffron_server::VideoCodecs,
    /// No clipboard through the guest agent (QEMU's `disable-copy-paste`).
    pub disable_copy_paste: bool,
    /// No file transfer through the guest agent (QEMU's `disable-agent-file-xfer`).
    pub disable_agent_file_xfer: bool,
    /// Offer the playback and record channels (the VMM has a sound device).
    pub sound: bool,
    /// Send playback as Opus to clients that decode it.
    pub playback_compression: bool,
    /// The web client's files, served to browsers on the Spice ports (`None`: none).
    pub web_root: Option<PathBuf>,
    /// The client mouse mode through the guest agent (QEMU's `agent-mouse`).
    pub agent_mouse: bool,
}

/// Where Debian's `spice-html5` package puts the web client.
pub const DEBIAN_SPICE_HTML5: &str = "/usr/share/spice-html5";

/// The default `--spice-web-root`: Debian's spice-html5 when it is installed.
pub fn default_web_root() -> Option<PathBuf> {
    let dir = PathBuf::from(DEBIAN_SPICE_HTML5);
    dir.join(saffron_server::http::AUTO_PAGE)
        .is_file()
        .then_some(dir)
}

impl Default for SpiceOptions {
    /// No server; when there is one, QEMU's defaults (playback compression on).
    fn default() -> Self {
        SpiceOptions {
            addr: None,
            password_file: None,
            disable_ticketing: false,
            insecure: false,
            tls_port: None,
            x509_dir: None,
            secure_channels: Vec::new(),
            record_dir: None,
            image_compression: saffron_server::Compression::default(),
            zlib_glz_wan_compression: saffron_server::WanCompression::default(),
            jpeg_wan_compression: saffron_server::WanCompression::default(),
            streaming_video: saffron_server::StreamingVideo::default(),
            video_codecs: saffron_server::VideoCodecs::default(),
            disable_copy_paste: false,
            disable_agent_file_xfer: false,
            sound: false,
            playback_compression: true,
            web_root: default_web_root(),
            agent_mouse: true,
        }
    }
}

/// The Spice channel type of a channel name, as QEMU's tls-channel= takes them.
fn channel_types(name: &str) -> Result<Vec<u8>, String> {
    Ok(match name {
        "main" => vec![1],
        "display" => vec![2],
        "inputs" => vec![3],
        "cursor" => vec![4],
        "playback" => vec![5],
        "record" => vec![6],
        "default" | "all" => vec![1, 2, 3, 4, 5, 6],
        other => {
            return Err(format!(
                "unknown Spice channel '{other}' (main, display, inputs, cursor, playback, record, default)"
            ));
        }
    })
}

impl SpiceOptions {
    /// The server configuration, reading the password file.
    pub fn config(&self, addr: SocketAddr, name: &str) -> Result<ServerConfig, String> {
        let mut cfg = ServerConfig::new(addr);
        cfg.disable_ticketing = self.disable_ticketing;
        cfg.insecure = self.insecure;
        cfg.name = Some(name.to_string());
        cfg.record_dir = self.record_dir.clone();
        cfg.image_compression = self.image_compression;
        cfg.zlib_glz_wan_compression = self.zlib_glz_wan_compression;
        cfg.jpeg_wan_compression = self.jpeg_wan_compression;
        cfg.streaming_video = self.streaming_video;
        cfg.video_codecs = self.video_codecs.clone();
        cfg.agent = saffron_server::AgentPolicy {
            copy_paste: !self.disable_copy_paste,
            file_xfer: !self.disable_agent_file_xfer,
        };
        cfg.sound = self.sound;
        cfg.playback_compression = self.playback_compression;
        if let Some(dir) = &self.web_root {
            if !dir.is_dir() {
                return Err(format!(
                    "--spice-web-root {}: not a directory",
                    dir.display()
                ));
            }
            tracing::info!(dir = %dir.display(), "serving the web client on the Spice ports");
        }
        cfg.web_root = self.web_root.clone();
        cfg.agent_mouse = self.agent_mouse;
        match (self.tls_port, &self.x509_dir) {
            (Some(port), Some(dir)) => {
                let tls_addr = SocketAddr::new(addr.ip(), port);
                cfg.tls = Some(saffron_server::TlsConfig::from_x509_dir(tls_addr, dir));
            }
            (Some(_), None) => return Err("--spice-tls-port needs --spice-x509-dir".into()),
            (None, Some(_)) => return Err("--spice-x509-dir needs --spice-tls-port".into()),
            (None, None) => {}
        }
        for name in &self.secure_channels {
            for t in channel_types(name)? {
                if !cfg.secure_channels.contains(&t) {
                    cfg.secure_channels.push(t);
                }
            }
        }
        if !cfg.secure_channels.is_empty() && cfg.tls.is_none() {
            return Err("--spice-secure-channels needs a TLS port (--spice-tls-port)".into());
        }
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("password file {}: {e}", path.display()))?;
            let password = text.lines().next().unwrap_or("").to_string();
            if password.is_empty() {
                return Err(format!("password file {} is empty", path.display()));
            }
            cfg.password = Some(password);
        } else if !self.disable_ticketing {
            tracing::warn!(
                "Spice ticketing is on and no password is set: clients are refused until \
                 one is set (--spice-password-file or the control socket's set_password)"
            );
        }
        Ok(cfg)
    }
}

/// The worker as the server's [`DisplaySource`]: each display client's pipe is subscribed to
/// the worker, which pushes what it draws on the primary surface. A client's monitors config
/// goes to the device, which offers it to the guest through its ROM.
pub struct WorkerDisplay {
    worker: WorkerControl,
    device: Option<SharedDevice>,
}

impl WorkerDisplay {
    /// A source over `worker`, passing clients' monitors configs on to `device`.
    pub fn new(worker: WorkerControl, device: Option<SharedDevice>) -> Arc<Self> {
        Arc::new(WorkerDisplay { worker, device })
    }
}

impl DisplaySource for WorkerDisplay {
    fn subscribe(&self, pipe: Arc<Pipe>) -> bool {
        self.worker.subscribe(pipe)
    }

    fn resync(&self, pipe: &Arc<Pipe>) {
        self.worker.resync(pipe.clone());
    }

    fn client_monitors_config(&self, heads: &[Head]) {
        let Some(device) = &self.device else {
            return;
        };
        let rects: Vec<QXLURect> = heads
            .iter()
            .map(|h| QXLURect {
                top: h.y,
                left: h.x,
                // The server checked that no head ends past u32.
                bottom: h.y.saturating_add(h.height),
                right: h.x.saturating_add(h.width),
            })
            .collect();
        match lock(device).set_client_monitors_config(&rects) {
            Ok(outcome) => tracing::debug!(?outcome, heads = rects.len(), "client monitors config"),
            Err(e) => tracing::warn!("client monitors config refused: {e}"),
        }
    }
}

/// The worker's cursor state as the server's [`CursorSource`]: the worker publishes its state
/// after every cursor command, and cursor clients wait on that, so an idle client costs
/// nothing. The shape's pixels are converted (and shared by every client) only when the guest
/// sets a new one.
pub struct WorkerCursor {
    watch: Arc<Watch<CursorState>>,
    last: Mutex<Option<Cursor>>,
}

impl WorkerCursor {
    /// A source over `worker`.
    pub fn new(worker: WorkerControl) -> Arc<Self> {
        Arc::new(WorkerCursor {
            watch: worker.cursor_watch(),
            last: Mutex::new(None),
        })
    }

    /// The server's view of `state`, sharing the converted shape with the last one when the
    /// shape did not change.
    fn convert(&self, state: &CursorState) -> Cursor {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let c = cursor_from_worker(state, last.as_ref());
        *last = Some(c.clone());
        c
    }
}

/// The server's view of the worker's cursor. Shapes of the colour types (which no current
/// driver sends, and whose layouts the server does not check) become "no cursor".
pub fn cursor_from_worker(state: &CursorState, previous: Option<&Cursor>) -> Cursor {
    let shape_serial = state.shape_generation;
    // Keep the shared shape when it did not change, so clients comparing by serial and
    // holding the Arc need no copy.
    let shape = match previous {
        Some(p) if p.shape_serial == shape_serial => p.shape.clone(),
        _ => state.shape.as_ref().and_then(|s| {
            let kind = match s.kind {
                CursorType::Alpha => CursorKind::Alpha,
                CursorType::Mono => CursorKind::Mono,
                _ => return None,
            };
            let shape = CursorShape {
                kind,
                width: s.width,
                height: s.height,
                hot_x: s.hot_spot_x,
                hot_y: s.hot_spot_y,
                data: s
                    .data
                    .get(..kind.data_len(s.width, s.height))
                    .unwrap_or(&[])
                    .to_vec(),
            };
            shape.is_consistent().then(|| Arc::new(shape))
        }),
    };
    Cursor {
        serial: state.generation,
        resets: state.resets,
        x: state.position.x,
        y: state.position.y,
        visible: state.visible,
        trail: state.trail,
        shape_serial,
        shape,
    }
}

impl CursorSource for WorkerCursor {
    fn cursor(&self) -> Option<Cursor> {
        Some(self.convert(&self.watch.latest()))
    }

    fn wait_change(&self, serial: u64, timeout: Duration) -> Option<Cursor> {
        let state = self.watch.wait_until(timeout, |s| s.generation != serial);
        Some(self.convert(&state))
    }
}

/// An input sink that forwards to a QMP connection made after QEMU has started; events that
/// arrive before it are dropped (there is no guest to take them yet).
#[derive(Default)]
pub struct LazyInput {
    inner: std::sync::OnceLock<crate::qmp::QmpInput>,
    absolute: bool,
}

impl LazyInput {
    /// A sink that will say `absolute` about its pointer once connected.
    pub fn new(absolute: bool) -> Arc<Self> {
        Arc::new(LazyInput {
            inner: std::sync::OnceLock::new(),
            absolute,
        })
    }

    /// Connects the sink (once).
    pub fn connect(&self, input: crate::qmp::QmpInput) {
        let _ = self.inner.set(input);
    }
}

impl saffron_server::InputSink for LazyInput {
    fn key(&self, event: saffron_server::KeyEvent) {
        if let Some(i) = self.inner.get() {
            i.key(event);
        }
    }

    fn modifiers(&self, modifiers: u16) {
        if let Some(i) = self.inner.get() {
            i.modifiers(modifiers);
        }
    }

    fn pointer(&self, event: saffron_server::PointerEvent) {
        if let Some(i) = self.inner.get() {
            i.pointer(event);
        }
    }

    fn has_absolute_pointer(&self) -> bool {
        self.absolute
    }

    fn led_modifiers(&self) -> u16 {
        self.inner.get().map_or(0, |i| i.led_modifiers())
    }
}

/// Connects `input` to QEMU's QMP socket at `path` from a background thread, retrying while
/// QEMU starts. Absolute positions are scaled to the worker's primary surface as it is when
/// each event arrives (asked of the worker, not of a display client, which may not exist).
pub fn connect_qmp_later(
    input: Arc<LazyInput>,
    path: PathBuf,
    absolute: bool,
    worker: WorkerControl,
) {
    let spawned = std::thread::Builder::new()
        .name("saffron-qmp".into())
        .spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                match crate::qmp::Qmp::connect(&path) {
                    Ok(qmp) => {
                        if let Err(e) = qmp.refuse_migration() {
                            tracing::warn!("cannot watch for migrations over QMP: {e}");
                        }
                        let w = worker.clone();
                        input.connect(crate::qmp::QmpInput::new(
                            qmp,
                            absolute,
                            Box::new(move || w.primary_size()),
                        ));
                        tracing::info!("client input goes to the guest through QMP");
                        return;
                    }
                    Err(e) if std::time::Instant::now() > deadline => {
                        tracing::warn!("no QMP connection, client input is dropped: {e}");
                        return;
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the QMP thread: {e}");
    }
}

/// Starts the Spice server on the worker's primary surface. `device`: where clients' monitors
/// configs go. `qmp`: where QEMU's QMP socket is (or will be) for client input, and whether
/// the VM has an absolute pointer.
pub fn start_server(
    options: &SpiceOptions,
    addr: SocketAddr,
    worker: &WorkerControl,
    device: Option<SharedDevice>,
    qmp: Option<(PathBuf, bool)>,
) -> Result<Arc<saffron_server::ServerHandle>, String> {
    let display = WorkerDisplay::new(worker.clone(), device);
    let absolute = qmp.as_ref().is_some_and(|(_, a)| *a);
    let input = LazyInput::new(absolute);
    if let Some((path, absolute)) = qmp {
        connect_qmp_later(Arc::clone(&input), path, absolute, worker.clone());
    }
    let cfg = options.config(addr, "saffron")?;
    let cursor = WorkerCursor::new(worker.clone());
    let handle = saffron_server::start_with_cursor(cfg, display, input, cursor)
        .map_err(|e| e.to_string())?;
    tracing::info!(
        "Spice server listening on {}{}",
        handle.local_addr(),
        handle
            .tls_local_addr()
            .map(|a| format!(" and {a} (TLS)"))
            .unwrap_or_default()
    );
    Ok(Arc::new(handle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use saffron_worker::CursorShape as GuestShape;

    fn guest_shape(kind: CursorType, w: u16, h: u16, len: usize) -> GuestShape {
        GuestShape {
            unique: 9,
            kind,
            width: w,
            height: h,
            hot_spot_x: 2,
            hot_spot_y: 3,
            data: (0..len).map(|i| i as u8).collect(),
        }
    }

    #[test]
    fn worker_cursor_becomes_a_server_cursor() {
        let mut state = CursorState::new();
        state.position.x = 40;
        state.position.y = -1;
        state.visible = true;
        state.generation = 7;
        state.resets = 2;
        state.shape_generation = 3;
        // Linux pads nothing, but a driver may declare more bytes than the shape needs.
        state.shape = Some(Arc::new(guest_shape(CursorType::Alpha, 2, 2, 20)));
        let c = cursor_from_worker(&state, None);
        assert_eq!(
            (c.serial, c.resets, c.x, c.y, c.visible, c.shape_serial),
            (7, 2, 40, -1, true, 3)
        );
        let shape = c.shape.clone().expect("an alpha shape");
        assert_eq!(
            (
                shape.kind,
                shape.width,
                shape.hot_x,
                shape.hot_y,
                shape.data.len()
            ),
            (CursorKind::Alpha, 2, 2, 3, 16)
        );
        // Same shape generation: the shared pixels are reused, not copied again.
        state.generation = 8;
        let again = cursor_from_worker(&state, Some(&c));
        assert!(Arc::ptr_eq(again.shape.as_ref().unwrap(), &shape));

        state.shape_generation = 4;
        state.shape = Some(Arc::new(guest_shape(CursorType::Mono, 9, 2, 8)));
        let mono = cursor_from_worker(&state, Some(&again)).shape.unwrap();
        assert_eq!((mono.kind, mono.data.len()), (CursorKind::Mono, 8));

        state.shape_generation = 5;
        state.shape = Some(Arc::new(guest_shape(CursorType::Color32, 1, 1, 8)));
        assert!(cursor_from_worker(&state, None).shape.is_none());
        state.shape = Some(Arc::new(guest_shape(CursorType::Alpha, 2, 2, 15)));
        assert!(
            cursor_from_worker(&state, None).shape.is_none(),
            "short data is no cursor"
        );
    }
}
