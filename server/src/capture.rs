//! The record channel (spec §10): a client's microphone, as raw S16 48 kHz stereo, becomes
//! the guest's capture stream.
//!
//! [`Capture`] is the hub the VMM's sound device reads from ([`Capture::start`] and
//! [`Capture::stop`] when the guest starts and stops capturing, [`Capture::fill`] as each
//! capture buffer's time is over). Clients get START (channels, S16, 48 kHz) while the guest
//! captures and STOP after; their DATA goes into one bounded buffer: at most
//! [`MAX_CAPTURE_BYTES`] wait (the oldest are dropped past it), and the device takes audio
//! only once [`PREFILL_BYTES`] have gathered, so that a client sending at real time never
//! leaves the guest short between two messages. Where there is no audio, the guest captures
//! silence. A client sends raw PCM or, as the server offers the record OPUS cap, Opus
//! packets (decoded with libopus, one decoder per client); data in any other mode, or Opus
//! libopus refuses, is dropped.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::debug;

use crate::channel::{Channel, Event};
use crate::conn::{ConnError, SendQueue, Traffic};
use crate::link::LinkRequest;
use crate::server::Shared;
use crate::session::Session;
use crate::tls::Stream;
use crate::wire::{Reader, Writer, has_cap, msg};

/// SPICE_RECORD_CAP_VOLUME.
pub const CAP_VOLUME: u32 = 1;
/// SPICE_AUDIO_DATA_MODE_RAW.
const MODE_RAW: u16 = 1;
/// SPICE_AUDIO_DATA_MODE_OPUS.
const MODE_OPUS: u16 = 3;
/// Audio waiting for the guest: one second.
pub const MAX_CAPTURE_BYTES: usize = 192_000;
/// Audio gathered before the guest gets any: 40 ms (a client sends every 10-20 ms).
pub const PREFILL_BYTES: usize = 7_680;
/// Largest client message: a DATA of 64 KiB is 340 ms of raw audio, far more than a client
/// sends at once (spice-gtk sends 10-20 ms); larger ones end the connection.
pub(crate) const MAX_RECORD_MESSAGE: u32 = 64 << 10;
/// Byte bound of a record client's queue: it only sends START, STOP, VOLUME and MUTE.
const RECORD_QUEUE_LIMIT: usize = 64 << 10;

#[derive(Default)]
struct HubState {
    capturing: bool,
    /// Gathered enough to start handing audio over.
    primed: bool,
    clients: Vec<Arc<SendQueue>>,
    audio: VecDeque<u8>,
    /// Client bytes dropped: partial frames, overflow, data outside a capture.
    dropped: u64,
}

/// The capture hub between the record clients and the sound device.
#[derive(Default)]
pub struct Capture {
    state: Mutex<HubState>,
}

fn start_message() -> Vec<u8> {
    let mut w = Writer::default();
    w.u32(2).u16(1).u32(48_000);
    w.buf
}

impl Capture {
    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The guest started capturing: every record client gets START.
    pub fn start(&self) {
        let mut s = self.lock();
        if s.capturing {
            return;
        }
        s.capturing = true;
        s.primed = false;
        s.audio.clear();
        s.clients.retain(|q| !q.is_closed());
        for q in &s.clients {
            let _ = q.push(msg::RECORD_START, start_message(), false);
        }
        debug!(clients = s.clients.len(), "record start");
    }

    /// The guest stopped capturing: STOP to every client, the waiting audio is dropped.
    pub fn stop(&self) {
        let mut s = self.lock();
        if !s.capturing {
            return;
        }
        s.capturing = false;
        s.audio.clear();
        for q in &s.clients {
            let _ = q.push(msg::RECORD_STOP, Vec::new(), false);
        }
        debug!("record stop");
    }

    /// Fills `buf` with captured audio, silence where there is none yet. Returns how many
    /// bytes were client audio.
    pub fn fill(&self, buf: &mut [u8]) -> usize {
        let mut s = self.lock();
        if !s.primed && s.audio.len() >= PREFILL_BYTES {
            s.primed = true;
        }
        let n = if s.primed {
            buf.len().min(s.audio.len())
        } else {
            0
        };
        for (dst, src) in buf.iter_mut().zip(s.audio.drain(..n)) {
            *dst = src;
        }
        buf.get_mut(n..).unwrap_or(&mut []).fill(0);
        if s.primed && n < buf.len() {
            // Ran dry: gather again before handing more over.
            s.primed = false;
        }
        n
    }

    /// Client bytes dropped so far.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// One client's DATA audio.
    fn push(&self, audio: &[u8]) {
        let mut s = self.lock();
        if !s.capturing || !audio.len().is_multiple_of(4) {
            s.dropped += audio.len() as u64;
            return;
        }
        s.audio.extend(audio);
        let over = s.audio.len().saturating_sub(MAX_CAPTURE_BYTES);
        if over > 0 {
            // Whole frames: `over` is a multiple of 4 as both lengths are.
            s.audio.drain(..over);
            s.dropped += over as u64;
        }
    }

    fn attach(&self, queue: Arc<SendQueue>, volume_cap: bool) {
        let mut s = self.lock();
        if volume_cap {
            let mut v = Writer::default();
            v.u8(2).u16(u16::MAX).u16(u16::MAX);
            let _ = queue.push(msg::RECORD_VOLUME, v.buf, false);
            let _ = queue.push(msg::RECORD_MUTE, vec![0], false);
        }
        if s.capturing {
            let _ = queue.push(msg::RECORD_START, start_message(), false);
        }
        s.clients.push(queue);
    }

    fn detach(&self, queue: &Arc<SendQueue>) {
        self.lock().clients.retain(|q| !Arc::ptr_eq(q, queue));
    }
}

/// A record client's data mode.
pub(crate) enum RecordMode {
    Raw,
    Opus(Box<opusic_c::Decoder>),
    /// A mode we do not decode: its data is dropped.
    Other(u16),
}

impl RecordMode {
    fn from_wire(mode: u16) -> RecordMode {
        use opusic_c::{Channels, Decoder, SampleRate};
        match mode {
            MODE_RAW => RecordMode::Raw,
            MODE_OPUS => match Decoder::new(Channels::Stereo, SampleRate::Hz48000) {
                Ok(d) => RecordMode::Opus(Box::new(d)),
                Err(e) => {
                    debug!("no Opus decoder: {e:?}");
                    RecordMode::Other(mode)
                }
            },
            other => RecordMode::Other(other),
        }
    }
}

/// Handles one record client message; `mode` is the client's data mode (raw until its MODE).
pub(crate) fn handle(
    capture: &Capture,
    mode: &mut RecordMode,
    ty: u16,
    body: &[u8],
) -> Result<(), ConnError> {
    let malformed = |source| ConnError::Malformed { ty, source };
    let mut r = Reader::new(body);
    match ty {
        msg::MSGC_RECORD_DATA => {
            let _time = r.u32().map_err(malformed)?;
            let data = body.get(4..).unwrap_or(&[]);
            match mode {
                RecordMode::Raw => capture.push(data),
                RecordMode::Opus(dec) => {
                    // 120 ms, the longest Opus frame, stereo.
                    let mut pcm = [0u16; 5760 * 2];
                    match dec.decode_to_slice(data, &mut pcm, false) {
                        Ok(frames) => {
                            let samples = pcm.get(..frames * 2).unwrap_or(&[]);
                            let bytes: Vec<u8> =
                                samples.iter().flat_map(|s| s.to_le_bytes()).collect();
                            capture.push(&bytes);
                        }
                        Err(e) => {
                            debug!("record Opus packet refused: {e:?}");
                            capture.lock().dropped += data.len() as u64;
                        }
                    }
                }
                RecordMode::Other(_) => capture.lock().dropped += data.len() as u64,
            }
        }
        msg::MSGC_RECORD_MODE => {
            let _time = r.u32().map_err(malformed)?;
            let m = r.u16().map_err(malformed)?;
            *mode = RecordMode::from_wire(m);
            if let RecordMode::Other(m) = mode {
                debug!(
                    mode = *m,
                    "record mode we do not decode: its data is dropped"
                );
            }
        }
        msg::MSGC_RECORD_START_MARK => {
            let _time = r.u32().map_err(malformed)?;
        }
        other => debug!(ty = other, "ignored record message"),
    }
    Ok(())
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
        RECORD_QUEUE_LIMIT,
        MAX_RECORD_MESSAGE,
        None,
    )?;
    let queue = ch.queue().clone();
    shared
        .capture
        .attach(queue.clone(), has_cap(&req.channel_caps, CAP_VOLUME));
    // Raw until the client says otherwise (spice-gtk sends MODE first).
    let mut mode = RecordMode::Raw;
    let result = ch.serve(session, |_, event| match event {
        Event::Message(ty, body) => handle(&shared.capture, &mut mode, ty, body),
        Event::Pong(_) => Ok(()),
    });
    shared.capture.detach(&queue);
    ch.close();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(audio: &[u8]) -> Vec<u8> {
        let mut w = Writer::default();
        w.u32(0).bytes(audio);
        w.buf
    }

    #[test]
    fn client_audio_reaches_the_guest_bounded() {
        let c = Capture::default();
        let mut raw = RecordMode::Raw;
        let q = SendQueue::new(RECORD_QUEUE_LIMIT);
        c.attach(q.clone(), false);
        handle(&c, &mut raw, msg::MSGC_RECORD_DATA, &data(&[1; 400])).unwrap();
        assert_eq!(c.dropped(), 400, "nothing kept before the guest captures");
        c.start();
        assert_eq!(q.take_all()[0].0, msg::RECORD_START);
        let mut buf = [9u8; 16];
        assert_eq!(c.fill(&mut buf), 0);
        assert_eq!(buf, [0; 16], "silence until primed");
        for i in 0..20u8 {
            handle(&c, &mut raw, msg::MSGC_RECORD_DATA, &data(&[i; 480])).unwrap();
        }
        let mut buf = vec![0u8; 960];
        assert_eq!(c.fill(&mut buf), 960);
        assert!(buf[..480].iter().all(|b| *b == 0) && buf[480..].iter().all(|b| *b == 1));
        // A partial frame is dropped; absurd amounts stay bounded.
        handle(&c, &mut raw, msg::MSGC_RECORD_DATA, &data(&[7; 3])).unwrap();
        for _ in 0..1000 {
            handle(&c, &mut raw, msg::MSGC_RECORD_DATA, &data(&[5; 4000])).unwrap();
        }
        assert!(c.lock().audio.len() <= MAX_CAPTURE_BYTES);
        // Another mode: ignored. Short messages: malformed.
        let mut mode = Writer::default();
        mode.u32(0).u16(9);
        handle(&c, &mut raw, msg::MSGC_RECORD_MODE, &mode.buf).unwrap();
        assert!(matches!(raw, RecordMode::Other(9)));
        let before = c.dropped();
        handle(&c, &mut raw, msg::MSGC_RECORD_DATA, &data(&[1; 8])).unwrap();
        assert_eq!(c.dropped(), before + 8, "unknown mode: dropped");
        assert!(handle(&c, &mut raw, msg::MSGC_RECORD_DATA, &[1, 2]).is_err());
        c.stop();
        assert_eq!(q.take_all().last().map(|m| m.0), Some(msg::RECORD_STOP));
    }

    #[test]
    fn opus_record_data_is_decoded() {
        use opusic_c::{Application, Channels, Encoder, SampleRate};
        let c = Capture::default();
        c.start();
        let mut mode = RecordMode::Raw;
        let mut m = Writer::default();
        m.u32(0).u16(MODE_OPUS);
        handle(&c, &mut mode, msg::MSGC_RECORD_MODE, &m.buf).unwrap();
        assert!(matches!(mode, RecordMode::Opus(_)));
        let mut enc =
            Encoder::new(Channels::Stereo, SampleRate::Hz48000, Application::Audio).unwrap();
        let mut packet = [0u8; 480];
        for _ in 0..5 {
            let n = enc.encode_to_slice(&[0u16; 960], &mut packet).unwrap();
            handle(&c, &mut mode, msg::MSGC_RECORD_DATA, &data(&packet[..n])).unwrap();
        }
        assert_eq!(c.lock().audio.len(), 5 * 1920, "five 10 ms frames decoded");
        let before = c.dropped();
        handle(&c, &mut mode, msg::MSGC_RECORD_DATA, &data(&[0xff; 3])).unwrap();
        assert!(c.dropped() > before, "a broken packet is dropped");
    }
}
