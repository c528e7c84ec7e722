//! The client-message recorder: an opt-in copy of every byte each client sends (after TLS
//! decryption), one file per connection, so a real client's session can become fuzz seeds
//! for the link stage and the channels (`fuzz/examples/from_recording.rs`,
//! `ci/record-seeds`). Turned on with `ServerConfig::record_dir`
//! (`saffron run|device --record-spice DIR`).
//!
//! Format: `DIR/spice-<pid>-<n>.bin` holds exactly the client's byte stream, from its
//! SpiceLinkHeader on: link message, auth mechanism, ticket, then the data-stage messages.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Where one connection's received bytes go.
#[derive(Clone)]
pub(crate) struct ClientLog(Arc<Mutex<Option<File>>>);

impl ClientLog {
    /// A fresh file in `dir` (created if needed).
    pub fn create(dir: &Path) -> io::Result<ClientLog> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        std::fs::create_dir_all(dir)?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("spice-{}-{n}.bin", std::process::id()));
        let file = File::create(&path)?;
        tracing::debug!(path = %path.display(), "recording client messages");
        Ok(ClientLog(Arc::new(Mutex::new(Some(file)))))
    }

    /// Appends what the client sent; a write error ends the recording, not the connection.
    pub fn append(&self, bytes: &[u8]) {
        let mut file = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = file.as_mut()
            && let Err(e) = f.write_all(bytes)
        {
            tracing::warn!("client message recording stopped: {e}");
            *file = None;
        }
    }
}
