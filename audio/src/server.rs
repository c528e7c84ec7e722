//! Serving the backend on a Unix socket: we listen, the front end (QEMU's
//! `-chardev socket,path=...` for `vhost-user-snd-pci`) connects; one connection at a time,
//! each with a fresh card. The listener is bound before this returns, so a QEMU started right
//! after finds the socket.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

use thiserror::Error;
use tracing::{info, warn};
use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

use crate::backend::SoundBackend;
use crate::{PcmSink, PcmSource};

/// Why the sound server could not start.
#[derive(Debug, Error)]
pub enum SoundServerError {
    /// The socket could not be bound.
    #[error("vhost-user socket {path}: {source}")]
    Listen {
        path: PathBuf,
        source: vhost::vhost_user::Error,
    },
    /// No thread.
    #[error("cannot start the sound thread: {0}")]
    Spawn(std::io::Error),
}

/// A running sound backend. Dropping it stops serving (after the current connection).
pub struct SoundServer {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SoundServer {
    /// Listens on `socket` (replacing a stale file) and serves front ends one after another
    /// (`once`: only the first, as `saffron run`'s QEMU connects once), playing into `sink`
    /// and capturing from `source`.
    pub fn start(
        socket: &Path,
        sink: Arc<dyn PcmSink>,
        source: Arc<dyn PcmSource>,
        once: bool,
    ) -> Result<SoundServer, SoundServerError> {
        let mut listener =
            Listener::new(socket, true).map_err(|source| SoundServerError::Listen {
                path: socket.to_path_buf(),
                source,
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = thread::Builder::new()
            .name("saffron-snd".into())
            .spawn(move || {
                loop {
                    if let Err(e) = serve_one(&mut listener, &sink, &source) {
                        warn!("sound: {e}");
                    }
                    if once || stop2.load(Ordering::Acquire) {
                        return;
                    }
                }
            })
            .map_err(SoundServerError::Spawn)?;
        info!(socket = %socket.display(), "virtio-sound backend listening");
        Ok(SoundServer {
            socket: socket.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for SoundServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            if !t.is_finished() {
                // Wake an accept that no front end will ever answer; a connection being
                // served ends when its front end goes.
                let _ = UnixStream::connect(&self.socket);
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Accepts one front end and serves it until it disconnects.
fn serve_one(
    listener: &mut Listener,
    sink: &Arc<dyn PcmSink>,
    source: &Arc<dyn PcmSource>,
) -> Result<(), String> {
    let (backend, _pacing) =
        SoundBackend::new(sink.clone(), source.clone()).map_err(|e| e.to_string())?;
    let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
    let mut daemon =
        VhostUserDaemon::new("saffron-snd-vu".into(), backend, mem).map_err(|e| e.to_string())?;
    daemon.start(listener).map_err(|e| e.to_string())?;
    info!("virtio-sound front end connected");
    let result = daemon.wait();
    for h in daemon.get_epoll_handlers() {
        h.send_exit_event();
    }
    info!("virtio-sound front end gone");
    result.map_err(|e| e.to_string())
}
