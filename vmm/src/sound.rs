//! Wiring the virtio-sound backend: the guest's playback goes to the Spice server's playback
//! hub and its capture comes from the record hub (or nowhere and silence without a Spice
//! server), and QEMU gets the arguments of a `vhost-user-snd-pci` device on our socket.

use std::path::Path;
use std::sync::Arc;

use saffron_audio::{NullSink, PcmSink, PcmSource, Silence, SoundServer, SoundServerError};
use saffron_server::{Capture, Playback};

/// The Spice playback hub as the sound device's sink.
pub struct SpicePlayback(pub Arc<Playback>);

impl PcmSink for SpicePlayback {
    fn start(&self) {
        self.0.start();
    }

    fn stop(&self) {
        self.0.stop();
    }

    fn play(&self, pcm: &[u8], started: std::time::Instant) {
        self.0.write_at(pcm, started);
    }
}

/// The Spice record hub as the sound device's capture source.
pub struct SpiceCapture(pub Arc<Capture>);

impl PcmSource for SpiceCapture {
    fn start(&self) {
        self.0.start();
    }

    fn stop(&self) {
        self.0.stop();
    }

    fn fill(&self, buf: &mut [u8]) {
        self.0.fill(buf);
    }
}

/// Starts the sound backend on `socket`, playing into `spice`'s playback hub and capturing
/// from its record hub when there is a Spice server; `once` serves a single front end (QEMU
/// started by `saffron run`).
pub fn start(
    socket: &Path,
    spice: Option<&saffron_server::ServerHandle>,
    once: bool,
) -> Result<SoundServer, SoundServerError> {
    let (sink, source): (Arc<dyn PcmSink>, Arc<dyn PcmSource>) = match spice {
        Some(h) => (
            Arc::new(SpicePlayback(h.playback())),
            Arc::new(SpiceCapture(h.capture())),
        ),
        None => (Arc::new(NullSink), Arc::new(Silence)),
    };
    SoundServer::start(socket, sink, source, once)
}

/// QEMU's arguments for a vhost-user sound device served on `socket` (guest RAM must be a
/// shared memory backend, which `saffron run`'s always is).
pub fn qemu_args(socket: &Path) -> Vec<String> {
    vec![
        "-chardev".into(),
        format!("socket,id=saffron-snd,path={}", socket.display()),
        "-device".into(),
        "vhost-user-snd-pci,chardev=saffron-snd".into(),
    ]
}
