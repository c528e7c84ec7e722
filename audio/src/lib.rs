//! A virtio-sound device served over vhost-user: QEMU's `vhost-user-snd-pci` (or any
//! vhost-user front end) gives us the guest's four sound virtqueues, and the guest runs its
//! stock `virtio_snd` driver.
//!
//! The card has one playback and one capture stream, both S16_LE, 48 kHz, stereo; no jacks,
//! no channel maps, no controls. Layers, one concern each:
//! - [`abi`]: virtio-snd codes, sizes and the configuration space (§5.14);
//! - [`request`]: parsing control requests and I/O headers from bytes;
//! - [`control`]: the card's stream state machine, requests to responses;
//! - [`pace`]: completing I/O messages at real-time pace;
//! - [`chain`]: descriptor chains to readable/writable guest memory segments;
//! - [`backend`]: the vhost-user backend (virtqueues, the pacing thread);
//! - [`server`]: the socket and the vhost-user daemon.
//!
//! Played audio leaves through a [`PcmSink`] (the Spice playback channel, in saffron); capture
//! comes from a [`PcmSource`] (the Spice record channel, or [`Silence`]).

pub mod abi;
pub mod backend;
pub mod chain;
pub mod control;
pub mod pace;
pub mod request;
pub mod server;

pub use server::{SoundServer, SoundServerError};

/// Where the guest's playback goes: S16_LE, 48 kHz, interleaved stereo, at real-time pace.
/// Called from the backend's pacing thread: implementations must not block for long.
pub trait PcmSink: Send + Sync {
    /// The guest started its playback stream.
    fn start(&self) {}
    /// The guest stopped (or released) its playback stream.
    fn stop(&self) {}
    /// One I/O message's worth of audio, as it finishes playing; `started` is when its first
    /// frame started playing on the stream's clock (for time stamps).
    fn play(&self, pcm: &[u8], started: std::time::Instant);
}

/// Plays into nothing.
#[derive(Debug, Default)]
pub struct NullSink;

impl PcmSink for NullSink {
    fn play(&self, _pcm: &[u8], _started: std::time::Instant) {}
}

/// Where the guest's capture comes from: S16_LE, 48 kHz, interleaved stereo. Called from the
/// backend's pacing thread as each capture buffer's time is over: implementations must not
/// block for long.
pub trait PcmSource: Send + Sync {
    /// The guest started its capture stream.
    fn start(&self) {}
    /// The guest stopped (or released) its capture stream.
    fn stop(&self) {}
    /// Fills `buf` (whole frames) with the audio captured during its time; silence where
    /// there is none.
    fn fill(&self, buf: &mut [u8]);
}

/// Captures silence.
#[derive(Debug, Default)]
pub struct Silence;

impl PcmSource for Silence {
    fn fill(&self, buf: &mut [u8]) {
        buf.fill(0);
    }
}
