//! The sound card as the driver sees it through the control queue: two PCM streams (0 output,
//! 1 input), each S16 48 kHz stereo only, and the state machine of §5.14.6.6 (set parameters →
//! prepare → start ⇄ stop → release). A request becomes a response (status, plus the info
//! items for a query) and, for the PCM commands, an [`Effect`] the I/O side must apply.

use tracing::debug;

use crate::abi::{self, code, status};
use crate::request::{ControlRequest, InfoQuery, PcmParams, RequestError, parse_control};

/// The playback stream's id.
pub const OUTPUT_STREAM: u32 = 0;
/// The capture stream's id.
pub const INPUT_STREAM: u32 = 1;
/// Streams on the card.
pub const STREAMS: usize = 2;
/// Channels of both streams.
pub const CHANNELS: u8 = 2;
/// Frames per second of both streams.
pub const RATE: u32 = 48_000;
/// Bytes per frame: two S16 samples.
pub const FRAME_BYTES: u32 = 4;
/// Largest ring buffer a driver may set (Linux asks for at most ~1 s: 192 000 bytes here).
pub const MAX_BUFFER_BYTES: u32 = 4 << 20;

/// Where a stream is in its life (§5.14.6.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamState {
    /// No parameters yet (or released and never set again).
    #[default]
    Idle,
    /// Parameters set.
    ParamsSet,
    /// Prepared: I/O messages may be queued.
    Prepared,
    /// Running: I/O messages complete at real-time pace.
    Running,
    /// Stopped (paused): queued I/O messages wait.
    Stopped,
}

/// What the I/O side must do after a control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing.
    None,
    /// The stream runs from now on.
    Start(u32),
    /// The stream pauses; its queued messages stay.
    Stop(u32),
    /// The stream is released: every queued message is completed at once.
    Release(u32),
}

/// The card's control state.
#[derive(Debug, Default)]
pub struct Card {
    streams: [(StreamState, Option<PcmParams>); STREAMS],
}

/// One control request's outcome: the bytes to write into the chain's writable part, and
/// the effect on I/O.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// Status header, then any info items.
    pub bytes: Vec<u8>,
    pub effect: Effect,
}

impl Response {
    fn status(status: u32) -> Response {
        Response {
            bytes: status.to_le_bytes().to_vec(),
            effect: Effect::None,
        }
    }

    /// The status word of the response.
    pub fn status_code(&self) -> u32 {
        self.bytes
            .get(..4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
            .unwrap_or(0)
    }
}

/// `struct virtio_snd_pcm_info` of stream `id`.
fn pcm_info(id: u32) -> [u8; abi::PCM_INFO_SIZE] {
    let mut b = [0u8; abi::PCM_INFO_SIZE];
    // hda_fn_nid 0, features 0.
    b[8..16].copy_from_slice(&(1u64 << abi::PCM_FMT_S16).to_le_bytes());
    b[16..24].copy_from_slice(&(1u64 << abi::PCM_RATE_48000).to_le_bytes());
    b[24] = if id == OUTPUT_STREAM {
        abi::DIRECTION_OUTPUT
    } else {
        abi::DIRECTION_INPUT
    };
    b[25] = CHANNELS;
    b[26] = CHANNELS;
    b
}

impl Card {
    /// A card with both streams idle.
    pub fn new() -> Card {
        Card::default()
    }

    /// A stream's state (`None` for an id that does not exist).
    pub fn state(&self, stream_id: u32) -> Option<StreamState> {
        self.streams.get(stream_id as usize).map(|s| s.0)
    }

    /// A stream's parameters, once set.
    pub fn params(&self, stream_id: u32) -> Option<PcmParams> {
        self.streams.get(stream_id as usize).and_then(|s| s.1)
    }

    /// Back to power-on (device reset).
    pub fn reset(&mut self) {
        *self = Card::default();
    }

    /// Handles the readable bytes of one control request; `writable` is how many bytes the
    /// driver left for the response (an info answer must fit in it).
    pub fn handle(&mut self, request: &[u8], writable: usize) -> Response {
        let req = match parse_control(request) {
            Ok(r) => r,
            Err(e) => {
                debug!("control request refused: {e}");
                return Response::status(e.status());
            }
        };
        match req {
            ControlRequest::Info { code, query } => info(code, query, writable),
            ControlRequest::SetParams { stream_id, params } => self.set_params(stream_id, params),
            ControlRequest::Pcm { code, stream_id } => self.pcm(code, stream_id),
        }
    }

    fn set_params(&mut self, id: u32, p: PcmParams) -> Response {
        let Some(stream) = self.streams.get_mut(id as usize) else {
            return Response::status(status::BAD_MSG);
        };
        if matches!(stream.0, StreamState::Running) {
            return Response::status(status::BAD_MSG);
        }
        if p.channels != CHANNELS
            || p.format != abi::PCM_FMT_S16
            || p.rate != abi::PCM_RATE_48000
            || p.features != 0
        {
            debug!(?p, "unsupported stream parameters");
            return Response::status(status::NOT_SUPP);
        }
        if p.period_bytes == 0
            || p.buffer_bytes < p.period_bytes
            || p.buffer_bytes > MAX_BUFFER_BYTES
            || !p.period_bytes.is_multiple_of(FRAME_BYTES)
            || !p.buffer_bytes.is_multiple_of(FRAME_BYTES)
        {
            debug!(?p, "inconsistent stream parameters");
            return Response::status(status::BAD_MSG);
        }
        *stream = (StreamState::ParamsSet, Some(p));
        Response::status(status::OK)
    }

    fn pcm(&mut self, code: u32, id: u32) -> Response {
        let Some(stream) = self.streams.get_mut(id as usize) else {
            return Response::status(status::BAD_MSG);
        };
        use StreamState::*;
        let (next, effect) = match (code, stream.0) {
            (code::PCM_PREPARE, ParamsSet | Prepared | Stopped) => (Prepared, Effect::None),
            (code::PCM_START, Prepared | Stopped) => (Running, Effect::Start(id)),
            (code::PCM_STOP, Running) => (Stopped, Effect::Stop(id)),
            // Releasing keeps the parameters: the driver may prepare again without setting them.
            (code::PCM_RELEASE, Prepared | Stopped | ParamsSet) => (ParamsSet, Effect::Release(id)),
            (_, state) => {
                debug!(
                    code,
                    ?state,
                    stream = id,
                    "PCM command not valid in this state"
                );
                return Response::status(status::BAD_MSG);
            }
        };
        stream.0 = next;
        Response {
            bytes: status::OK.to_le_bytes().to_vec(),
            effect,
        }
    }
}

/// Answers an info query: PCM_INFO for our two streams; JACK_INFO and CHMAP_INFO have no
/// items (the configuration says 0 of each), so any such query is out of range.
fn info(code: u32, q: InfoQuery, writable: usize) -> Response {
    if code != code::PCM_INFO {
        return Response::status(status::BAD_MSG);
    }
    let end = q.start_id.checked_add(q.count);
    if q.count == 0 || end.is_none_or(|e| e as usize > STREAMS) {
        return Response::status(status::BAD_MSG);
    }
    if (q.size as usize) < abi::PCM_INFO_SIZE {
        let e = RequestError::InfoSize {
            size: q.size,
            need: abi::PCM_INFO_SIZE,
        };
        debug!("{e}");
        return Response::status(e.status());
    }
    // count ≤ 2 here; the size is the driver's, but the answer must fit in what it gave.
    let total = (q.size as usize)
        .checked_mul(q.count as usize)
        .and_then(|n| n.checked_add(abi::HDR_SIZE));
    if total.is_none_or(|t| t > writable) {
        return Response::status(status::BAD_MSG);
    }
    let mut bytes = status::OK.to_le_bytes().to_vec();
    for id in q.start_id..q.start_id + q.count {
        let mut item = pcm_info(id).to_vec();
        item.resize(q.size as usize, 0);
        bytes.extend(item);
    }
    Response {
        bytes,
        effect: Effect::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[u32]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn set_params(id: u32, buffer: u32, period: u32, fmt: u8) -> Vec<u8> {
        let mut b = words(&[code::PCM_SET_PARAMS, id, buffer, period, 0]);
        b.extend([2, fmt, abi::PCM_RATE_48000, 0]);
        b
    }

    #[test]
    fn pcm_info_for_both_streams() {
        let mut card = Card::new();
        let r = card.handle(&words(&[code::PCM_INFO, 0, 2, 32]), 4 + 64);
        assert_eq!(r.status_code(), status::OK);
        assert_eq!(r.bytes.len(), 68);
        assert_eq!(r.bytes[4 + 24], abi::DIRECTION_OUTPUT);
        assert_eq!(r.bytes[4 + 32 + 24], abi::DIRECTION_INPUT);
        assert_eq!(r.bytes[4 + 8], 1 << 5, "S16 format bit");
        // Out of range, too small a writable area, too small an item size.
        for (req, writable) in [
            (words(&[code::PCM_INFO, 1, 2, 32]), 68),
            (words(&[code::PCM_INFO, u32::MAX, 2, 32]), 68),
            (words(&[code::PCM_INFO, 0, 2, 32]), 67),
            (words(&[code::PCM_INFO, 0, 1, 16]), 68),
            (words(&[code::JACK_INFO, 0, 1, 24]), 68),
            (words(&[code::PCM_INFO, 0, 2, u32::MAX]), 68),
        ] {
            assert_eq!(card.handle(&req, writable).status_code(), status::BAD_MSG);
        }
    }

    #[test]
    fn stream_life() {
        let mut card = Card::new();
        let cmd = |c| words(&[c, OUTPUT_STREAM]);
        // Nothing before parameters.
        assert_eq!(
            card.handle(&cmd(code::PCM_PREPARE), 4).status_code(),
            status::BAD_MSG
        );
        assert_eq!(
            card.handle(&set_params(0, 19200, 1920, 3), 4).status_code(),
            status::NOT_SUPP
        );
        assert_eq!(
            card.handle(&set_params(0, 1920, 19200, abi::PCM_FMT_S16), 4)
                .status_code(),
            status::BAD_MSG
        );
        assert_eq!(
            card.handle(&set_params(0, 19200, 1920, abi::PCM_FMT_S16), 4)
                .status_code(),
            status::OK
        );
        assert_eq!(
            card.handle(&cmd(code::PCM_START), 4).status_code(),
            status::BAD_MSG
        );
        assert_eq!(card.handle(&cmd(code::PCM_PREPARE), 4).effect, Effect::None);
        assert_eq!(
            card.handle(&cmd(code::PCM_START), 4).effect,
            Effect::Start(0)
        );
        assert_eq!(card.state(0), Some(StreamState::Running));
        assert_eq!(
            card.handle(&set_params(0, 19200, 1920, abi::PCM_FMT_S16), 4)
                .status_code(),
            status::BAD_MSG,
            "no new parameters while running"
        );
        assert_eq!(
            card.handle(&cmd(code::PCM_RELEASE), 4).status_code(),
            status::BAD_MSG
        );
        assert_eq!(card.handle(&cmd(code::PCM_STOP), 4).effect, Effect::Stop(0));
        assert_eq!(
            card.handle(&cmd(code::PCM_RELEASE), 4).effect,
            Effect::Release(0)
        );
        assert_eq!(
            card.handle(&words(&[code::PCM_START, 7]), 4).status_code(),
            status::BAD_MSG
        );
        assert_eq!(
            card.handle(&words(&[0xdead]), 4).status_code(),
            status::NOT_SUPP
        );
        assert_eq!(card.handle(&[], 4).status_code(), status::BAD_MSG);
    }
}
