//! The guest agent's transport: a Unix socket this process listens on. QEMU backs the
//! virtio-serial port `com.redhat.spice.0` (where the guest's spice-vdagentd talks) with a
//! `-chardev socket` that connects to it as a client, with `reconnect-ms`, so the link
//! survives either side restarting: each connection QEMU makes is handed to the Spice server,
//! which replaces the previous one (see `saffron_server::agent_link`).
//!
//! Why we listen rather than QEMU: `saffron device` serves a QEMU that someone else starts,
//! maybe before us, maybe again later; a listener that outlives QEMU and a QEMU that retries
//! cover both orders. (QEMU here has no libspice, hence no `spicevmc` chardev.)

use std::io;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use saffron_server::ServerHandle;
use tracing::{info, warn};

/// The QEMU arguments that put the agent's port on `path`: a virtio-serial controller, the
/// chardev (connecting to us, retrying every second) and the named port.
pub fn qemu_args(path: &Path) -> Vec<String> {
    vec![
        "-device".into(),
        "virtio-serial-pci,id=saffron-vser".into(),
        "-chardev".into(),
        format!(
            "socket,id=saffron-agent,path={},server=off,reconnect-ms=1000",
            path.display()
        ),
        "-device".into(),
        "virtserialport,bus=saffron-vser.0,chardev=saffron-agent,name=com.redhat.spice.0".into(),
    ]
}

/// The listening socket and its accept thread; dropping it stops both and removes the file.
pub struct AgentSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AgentSocket {
    /// Listens on `path` (which must not exist) and hands each connection to `server`.
    pub fn start(path: &Path, server: Arc<ServerHandle>) -> io::Result<AgentSocket> {
        let listener = UnixListener::bind(path)?;
        // Polled, so that stopping needs no wake-up connection.
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = thread::Builder::new()
            .name("agent-accept".into())
            .spawn(move || accept_loop(&listener, &server, &s))?;
        info!(path = %path.display(), "guest agent socket listening");
        Ok(AgentSocket {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn accept_loop(listener: &UnixListener, server: &ServerHandle, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = stream
                    .set_nonblocking(false)
                    .and_then(|()| server.attach_agent(stream))
                {
                    warn!(%e, "cannot take the guest agent connection");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(50))
            }
            Err(e) => {
                warn!(%e, "guest agent socket: accept failed");
                thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

impl Drop for AgentSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_gets_a_named_port_on_a_reconnecting_client_chardev() {
        let a = qemu_args(Path::new("/run/x/agent.sock")).join(" ");
        assert!(a.contains("virtio-serial-pci,id=saffron-vser"));
        assert!(a.contains("path=/run/x/agent.sock,server=off,reconnect-ms=1000"));
        assert!(a.contains("name=com.redhat.spice.0"));
    }
}
