//! The playback channel (spec §10): the guest's sound, as the VMM's sound device plays it,
//! goes to every linked playback client in 10 ms DATA messages, each stamped with the server's
//! mm-time: as Opus packets to a client with the OPUS cap (unless playback compression is
//! off), as raw S16 48 kHz stereo PCM to the others. Each Opus client has its own encoder, so a
//! client that joins mid-stream starts a fresh stream its decoder can follow.
//!
//! [`Playback`] is the hub the VMM writes into ([`Playback::start`], [`Playback::write`],
//! [`Playback::stop`]); it never blocks: a client's DATA messages are droppable, so a client
//! that does not keep up loses audio once its queue holds [`PLAYBACK_QUEUE_LIMIT`] bytes,
//! and with no client the audio goes nowhere. The guest's pace is its own device's
//! business (real time), never the network's.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::debug;

use crate::channel::{Channel, Event};
use crate::conn::{ConnError, SendQueue, Traffic};
use crate::link::LinkRequest;
use crate::server::Shared;
use crate::session::Session;
use crate::tls::Stream;
use crate::wire::{Writer, has_cap, msg};

/// SPICE_PLAYBACK_CAP_VOLUME.
pub const CAP_VOLUME: u32 = 1;
/// SPICE_PLAYBACK_CAP_OPUS.
pub const CAP_OPUS: u32 = 3;
/// SPICE_AUDIO_DATA_MODE_RAW.
pub const MODE_RAW: u16 = 1;
/// SPICE_AUDIO_DATA_MODE_OPUS.
pub const MODE_OPUS: u16 = 3;
/// Largest Opus packet spice-gtk takes (SND_CODEC_MAX_COMPRESSED_BYTES).
pub const MAX_OPUS_PACKET: usize = 480;
/// The Opus bitrate: 128 kbit/s stereo, 160 bytes per 10 ms, well inside the packet bound
/// and transparent for music.
const OPUS_BITRATE: u32 = 128_000;
/// SPICE_AUDIO_FMT_S16.
pub const FORMAT_S16: u16 = 1;
/// Channels, rate and frame size of the stream.
pub const CHANNELS: u32 = 2;
pub const RATE: u32 = 48_000;
/// One DATA message: 480 frames (10 ms), spice-server's frame size (and Opus's).
pub const FRAME_BYTES: usize = 480 * 4;
/// Bytes per second of the stream.
const BYTES_PER_SECOND: u64 = 48_000 * 4;
/// Byte bound of a playback client's queue: about one second of raw audio.
pub const PLAYBACK_QUEUE_LIMIT: usize = 256 << 10;
/// Clients send nothing on this channel but the common messages; anything else up to this
/// size is read and ignored.
pub(crate) const MAX_PLAYBACK_MESSAGE: u32 = 4096;

struct Client {
    queue: Arc<SendQueue>,
    /// The client's Opus encoder, when it gets Opus.
    opus: Option<opusic_c::Encoder>,
}

/// A fresh Opus encoder for 48 kHz stereo (None if libopus refuses, which it does only when
/// out of memory: the client then gets raw PCM).
fn opus_encoder() -> Option<opusic_c::Encoder> {
    use opusic_c::{Application, Bitrate, Channels, Encoder, SampleRate};
    let mut e = Encoder::new(Channels::Stereo, SampleRate::Hz48000, Application::Audio).ok()?;
    e.set_bitrate(Bitrate::Value(OPUS_BITRATE)).ok()?;
    Some(e)
}

#[derive(Default)]
struct HubState {
    playing: bool,
    clients: Vec<Client>,
    /// Audio written but not yet a whole 10 ms frame, and when its first byte plays.
    partial: Vec<u8>,
    partial_start: Option<Instant>,
}

/// Counters of what the hub was given and sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PlaybackStats {
    /// Bytes of PCM written by the VMM.
    pub written: u64,
    /// DATA messages queued to clients (all clients counted).
    pub frames_sent: u64,
    /// DATA messages a full client queue refused.
    pub frames_dropped: u64,
}

/// The playback hub between the sound device and the playback clients.
pub struct Playback {
    started: Instant,
    /// Offer Opus to clients that decode it.
    compression: bool,
    state: Mutex<HubState>,
    stats: Mutex<PlaybackStats>,
}

impl Playback {
    /// A hub whose mm-time counts from `started` (the server's clock), sending Opus to the
    /// clients that decode it when `compression` is on.
    pub(crate) fn new(started: Instant, compression: bool) -> Playback {
        Playback {
            started,
            compression,
            state: Mutex::new(HubState::default()),
            stats: Mutex::new(PlaybackStats::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mm_time(&self) -> u32 {
        self.started.elapsed().as_millis() as u32
    }

    /// What went through so far.
    pub fn stats(&self) -> PlaybackStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the guest's stream is playing.
    pub fn playing(&self) -> bool {
        self.lock().playing
    }

    fn start_message(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u32(CHANNELS)
            .u16(FORMAT_S16)
            .u32(RATE)
            .u32(self.mm_time());
        w.buf
    }

    /// The guest started playing: every client gets START.
    pub fn start(&self) {
        let mut s = self.lock();
        if s.playing {
            return;
        }
        s.playing = true;
        s.partial.clear();
        let body = self.start_message();
        s.clients.retain(|c| !c.queue.is_closed());
        for c in &mut s.clients {
            // Each stream starts the encoder afresh, as spice-server does.
            if let Some(e) = c.opus.as_mut() {
                let _ = e.reset();
            }
            let _ = c.queue.push(msg::PLAYBACK_START, body.clone(), false);
        }
        debug!(clients = s.clients.len(), "playback start");
    }

    /// The guest stopped: what is left of a frame is sent, then STOP.
    pub fn stop(&self) {
        let mut s = self.lock();
        if !s.playing {
            return;
        }
        let rest = std::mem::take(&mut s.partial);
        if !rest.is_empty() {
            let at = s.partial_start.take().unwrap_or_else(Instant::now);
            self.send_frame(&mut s, &rest, at);
        }
        s.playing = false;
        for c in &s.clients {
            let _ = c.queue.push(msg::PLAYBACK_STOP, Vec::new(), false);
        }
        debug!("playback stop");
    }

    /// Audio the guest played (S16_LE, 48 kHz, stereo), cut into 10 ms DATA messages, each
    /// stamped with the mm-time its first frame plays at. Audio written while not started is
    /// dropped (a device only plays between start and stop).
    pub fn write(&self, pcm: &[u8]) {
        self.write_at(pcm, Instant::now());
    }

    /// Like [`Playback::write`], for audio whose first frame started playing at `started`
    /// (the sound device's clock, which is steadier than the moment it hands the audio over).
    pub fn write_at(&self, pcm: &[u8], started: Instant) {
        let mut s = self.lock();
        if !s.playing {
            return;
        }
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).written += pcm.len() as u64;
        let at = |offset: usize| {
            started + Duration::from_nanos(offset as u64 * 1_000_000_000 / BYTES_PER_SECOND)
        };
        let mut rest = pcm;
        let mut offset = 0;
        if !s.partial.is_empty() {
            let need = FRAME_BYTES - s.partial.len();
            let (head, tail) = rest.split_at(need.min(rest.len()));
            s.partial.extend_from_slice(head);
            rest = tail;
            offset = head.len();
            if s.partial.len() < FRAME_BYTES {
                return;
            }
            let frame = std::mem::take(&mut s.partial);
            let frame_start = s.partial_start.take().unwrap_or(started);
            self.send_frame(&mut s, &frame, frame_start);
        }
        let mut frames = rest.chunks_exact(FRAME_BYTES);
        for f in frames.by_ref() {
            self.send_frame(&mut s, f, at(offset));
            offset += FRAME_BYTES;
        }
        let remainder = frames.remainder();
        if !remainder.is_empty() {
            s.partial.extend_from_slice(remainder);
            s.partial_start = Some(at(offset));
        }
    }

    /// Sends one frame (10 ms, or the shorter rest at a stop) to every client: raw, or as an
    /// Opus packet (the rest padded with silence to the 10 ms Opus needs).
    fn send_frame(&self, s: &mut HubState, frame: &[u8], at: Instant) {
        let mm_time = at.saturating_duration_since(self.started).as_millis() as u32;
        let mut raw = Writer::with_capacity(4 + frame.len());
        raw.u32(mm_time).bytes(frame);
        let (mut sent, mut dropped) = (0, 0);
        for c in &mut s.clients {
            let body = match c.opus.as_mut() {
                None => raw.buf.clone(),
                Some(enc) => {
                    let mut samples = [0u16; FRAME_BYTES / 2];
                    for (dst, b) in samples.iter_mut().zip(frame.chunks_exact(2)) {
                        *dst = u16::from_le_bytes([b[0], b[1]]);
                    }
                    let mut packet = [0u8; MAX_OPUS_PACKET];
                    match enc.encode_to_slice(&samples, &mut packet) {
                        Ok(n) => {
                            let mut w = Writer::with_capacity(4 + n);
                            w.u32(mm_time).bytes(packet.get(..n).unwrap_or(&[]));
                            w.buf
                        }
                        Err(e) => {
                            debug!("Opus encoding failed: {e:?}");
                            dropped += 1;
                            continue;
                        }
                    }
                }
            };
            match c.queue.push(msg::PLAYBACK_DATA, body, true) {
                Ok(()) => sent += 1,
                Err(_) => dropped += 1,
            }
        }
        let mut st = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        st.frames_sent += sent;
        st.frames_dropped += dropped;
    }

    /// A client linked: MODE (Opus if it has the OPUS cap and compression is on, else raw),
    /// VOLUME and MUTE when it has the VOLUME cap (the guest card has no volume control: full
    /// volume, not muted), and START if the guest plays.
    fn attach(&self, queue: Arc<SendQueue>, volume_cap: bool, opus_cap: bool) {
        let mut s = self.lock();
        let opus = if opus_cap && self.compression {
            opus_encoder()
        } else {
            None
        };
        let mut mode = Writer::default();
        mode.u32(self.mm_time())
            .u16(if opus.is_some() { MODE_OPUS } else { MODE_RAW });
        let _ = queue.push(msg::PLAYBACK_MODE, mode.buf, false);
        if volume_cap {
            let mut v = Writer::default();
            v.u8(CHANNELS as u8).u16(u16::MAX).u16(u16::MAX);
            let _ = queue.push(msg::PLAYBACK_VOLUME, v.buf, false);
            let _ = queue.push(msg::PLAYBACK_MUTE, vec![0], false);
        }
        if s.playing {
            let _ = queue.push(msg::PLAYBACK_START, self.start_message(), false);
        }
        s.clients.push(Client { queue, opus });
    }

    fn detach(&self, queue: &Arc<SendQueue>) {
        self.lock()
            .clients
            .retain(|c| !Arc::ptr_eq(&c.queue, queue));
    }
}

pub(crate) fn run(
    stream: Stream,
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    req: &LinkRequest,
    mini: bool,
    traffic: Arc<Traffic>,
) -> Result<(), ConnError> {
    let mut ch = Channel::open(
        stream,
        mini,
        traffic,
        PLAYBACK_QUEUE_LIMIT,
        MAX_PLAYBACK_MESSAGE,
        None,
    )?;
    let queue = ch.queue().clone();
    shared.playback.attach(
        queue.clone(),
        has_cap(&req.channel_caps, CAP_VOLUME),
        has_cap(&req.channel_caps, CAP_OPUS),
    );
    let result = ch.serve(session, |_, event| {
        if let Event::Message(ty, _) = event {
            debug!(ty, "ignored playback message");
        }
        Ok(())
    });
    shared.playback.detach(&queue);
    ch.close();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(q: &SendQueue) -> Vec<(u16, Vec<u8>)> {
        q.take_all()
    }

    #[test]
    fn frames_in_order_and_bounded() {
        let hub = Playback::new(Instant::now(), true);
        let q = SendQueue::new(PLAYBACK_QUEUE_LIMIT);
        hub.attach(q.clone(), true, false);
        let types: Vec<u16> = bodies(&q).iter().map(|m| m.0).collect();
        assert_eq!(
            types,
            vec![msg::PLAYBACK_MODE, msg::PLAYBACK_VOLUME, msg::PLAYBACK_MUTE]
        );
        hub.write(&[1; 100]);
        assert!(bodies(&q).is_empty(), "nothing before start");
        hub.start();
        let pcm: Vec<u8> = (0..FRAME_BYTES * 2 + 100).map(|i| i as u8).collect();
        hub.write(&pcm[..1000]);
        hub.write(&pcm[1000..]);
        hub.stop();
        let got = bodies(&q);
        let types: Vec<u16> = got.iter().map(|m| m.0).collect();
        assert_eq!(
            types,
            vec![
                msg::PLAYBACK_START,
                msg::PLAYBACK_DATA,
                msg::PLAYBACK_DATA,
                msg::PLAYBACK_DATA,
                msg::PLAYBACK_STOP
            ]
        );
        let data: Vec<u8> = got
            .iter()
            .filter(|m| m.0 == msg::PLAYBACK_DATA)
            .flat_map(|m| m.1[4..].to_vec())
            .collect();
        assert_eq!(data, pcm, "every byte, in order");
        assert_eq!(got[1].1.len(), 4 + FRAME_BYTES);

        // A client that reads nothing: its queue stays bounded.
        hub.start();
        for _ in 0..1000 {
            hub.write(&[0; FRAME_BYTES]);
        }
        assert!(q.queued_bytes() <= PLAYBACK_QUEUE_LIMIT);
        assert!(hub.stats().frames_dropped > 0);
    }

    /// A 1 kHz sine through an Opus client's encoder and libopus's decoder: the lag is the
    /// codec's delay, and after it the waveform is close (SNR well above 20 dB).
    #[test]
    fn opus_clients_get_decodable_packets() {
        let hub = Playback::new(Instant::now(), true);
        let q = SendQueue::new(PLAYBACK_QUEUE_LIMIT);
        hub.attach(q.clone(), false, true);
        let raw_q = SendQueue::new(PLAYBACK_QUEUE_LIMIT);
        let off = Playback::new(Instant::now(), false);
        off.attach(raw_q.clone(), false, true);
        assert_eq!(
            &raw_q.take_all()[0].1[4..],
            &MODE_RAW.to_le_bytes(),
            "compression off"
        );
        let msgs = q.take_all();
        assert_eq!(&msgs[0].1[4..], &MODE_OPUS.to_le_bytes());
        hub.start();
        let pcm: Vec<u8> = (0..48_000)
            .flat_map(|n| {
                let s = (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * n as f64 / 48_000.0).sin())
                    as i16;
                [s.to_le_bytes(), s.to_le_bytes()].concat()
            })
            .collect();
        hub.write(&pcm);
        hub.stop();
        let mut dec =
            opusic_c::Decoder::new(opusic_c::Channels::Stereo, opusic_c::SampleRate::Hz48000)
                .unwrap();
        let mut out: Vec<i16> = Vec::new();
        for (ty, body) in q.take_all() {
            if ty != msg::PLAYBACK_DATA {
                continue;
            }
            assert!(body.len() - 4 <= MAX_OPUS_PACKET);
            let mut buf = [0u16; 5760 * 2];
            let n = dec.decode_to_slice(&body[4..], &mut buf, false).unwrap();
            out.extend(buf[..n * 2].iter().map(|s| *s as i16));
        }
        let want: Vec<i16> = pcm
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(out.len(), want.len());
        let snr = |lag: usize| {
            let (mut sig, mut noise) = (0f64, 0f64);
            for i in 4800..want.len() - 4800 {
                let d = f64::from(want[i]) - f64::from(out[i + lag * 2]);
                sig += f64::from(want[i]).powi(2);
                noise += d * d;
            }
            10.0 * (sig / noise.max(1.0)).log10()
        };
        let (lag, best) = (0..1000)
            .map(|l| (l, snr(l)))
            .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
        assert!(best > 20.0, "SNR {best:.1} dB at lag {lag}");
    }
}
