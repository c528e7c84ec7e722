//! Parsing what the driver puts in virtqueues: control requests (the readable part of a
//! control-queue chain) and the header of I/O messages. Every function takes the bytes the
//! backend copied out of guest memory once, and checks every length before reading.

use thiserror::Error;

use crate::abi::{self, code};
use crate::control::{FRAME_BYTES, StreamState};

/// Why a request was refused (answered with `VIRTIO_SND_S_BAD_MSG` or `NOT_SUPP`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    /// Fewer readable bytes than the request's structure needs.
    #[error("request {code:#x}: {got} readable bytes, needs {need}")]
    Short {
        /// The request code (0 when even the header is missing).
        code: u32,
        /// Bytes the structure needs.
        need: usize,
        /// Bytes the driver gave.
        got: usize,
    },
    /// A request code this device does not implement (controls, jack remapping, unknown).
    #[error("request code {0:#x} not supported")]
    Unsupported(u32),
    /// An info query whose element size is smaller than the structure we would write.
    #[error("info query with element size {size}, needs at least {need}")]
    InfoSize {
        /// What the driver asked for.
        size: u32,
        /// Our structure's size.
        need: usize,
    },
}

impl RequestError {
    /// The virtio status this error is answered with.
    pub fn status(&self) -> u32 {
        match self {
            RequestError::Unsupported(_) => abi::status::NOT_SUPP,
            _ => abi::status::BAD_MSG,
        }
    }
}

/// `struct virtio_snd_query_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfoQuery {
    /// First item asked for.
    pub start_id: u32,
    /// How many.
    pub count: u32,
    /// Bytes per item the driver expects (at least our structure's size).
    pub size: u32,
}

/// `struct virtio_snd_pcm_set_params` without its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcmParams {
    /// Bytes of the driver's ring buffer.
    pub buffer_bytes: u32,
    /// Bytes per period (per I/O message, for Linux).
    pub period_bytes: u32,
    /// `VIRTIO_SND_PCM_F_*` bits asked for.
    pub features: u32,
    pub channels: u8,
    /// `VIRTIO_SND_PCM_FMT_*`.
    pub format: u8,
    /// `VIRTIO_SND_PCM_RATE_*`.
    pub rate: u8,
}

/// A control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRequest {
    /// JACK_INFO, PCM_INFO or CHMAP_INFO (by `code`).
    Info {
        /// Which info.
        code: u32,
        /// The query.
        query: InfoQuery,
    },
    /// PCM_SET_PARAMS.
    SetParams { stream_id: u32, params: PcmParams },
    /// PCM_PREPARE, PCM_RELEASE, PCM_START or PCM_STOP (by `code`).
    Pcm {
        /// Which command.
        code: u32,
        stream_id: u32,
    },
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn need(b: &[u8], code: u32, need: usize) -> Result<(), RequestError> {
    if b.len() < need {
        return Err(RequestError::Short {
            code,
            need,
            got: b.len(),
        });
    }
    Ok(())
}

/// Parses a control request from the readable bytes of its chain. Extra bytes after the
/// structure are ignored (a driver may pad); too few are an error.
pub fn parse_control(b: &[u8]) -> Result<ControlRequest, RequestError> {
    let code = u32_at(b, 0).ok_or(RequestError::Short {
        code: 0,
        need: abi::HDR_SIZE,
        got: b.len(),
    })?;
    match code {
        code::JACK_INFO | code::PCM_INFO | code::CHMAP_INFO => {
            need(b, code, abi::QUERY_INFO_SIZE)?;
            let field = |at| u32_at(b, at).unwrap_or(0);
            Ok(ControlRequest::Info {
                code,
                query: InfoQuery {
                    start_id: field(4),
                    count: field(8),
                    size: field(12),
                },
            })
        }
        code::PCM_SET_PARAMS => {
            need(b, code, abi::PCM_SET_PARAMS_SIZE)?;
            let field = |at| u32_at(b, at).unwrap_or(0);
            let byte = |at: usize| b.get(at).copied().unwrap_or(0);
            Ok(ControlRequest::SetParams {
                stream_id: field(4),
                params: PcmParams {
                    buffer_bytes: field(8),
                    period_bytes: field(12),
                    features: field(16),
                    channels: byte(20),
                    format: byte(21),
                    rate: byte(22),
                },
            })
        }
        code::PCM_PREPARE | code::PCM_RELEASE | code::PCM_START | code::PCM_STOP => {
            need(b, code, abi::PCM_HDR_SIZE)?;
            Ok(ControlRequest::Pcm {
                code,
                stream_id: u32_at(b, 4).unwrap_or(0),
            })
        }
        other => Err(RequestError::Unsupported(other)),
    }
}

/// The stream id of an I/O message (`struct virtio_snd_pcm_xfer`, its first readable bytes).
pub fn parse_xfer(b: &[u8]) -> Result<u32, RequestError> {
    u32_at(b, 0).ok_or(RequestError::Short {
        code: 0,
        need: abi::PCM_XFER_SIZE,
        got: b.len(),
    })
}

/// Validates an I/O message of stream `stream_id` (a playback one when `playback`), given
/// the stream's state, the chain's readable bytes and the size of its writable part. Returns
/// the PCM to play (empty for capture) and the audio length in bytes, or the status to fail
/// the message with: BAD_MSG for a malformed one (wrong stream, no room for the status,
/// partial frames, capture data in a read-only buffer), IO_ERR for a stream that is not
/// prepared.
pub fn check_io(
    state: Option<StreamState>,
    stream_id: u32,
    playback: bool,
    readable: &[u8],
    writable_len: usize,
) -> Result<(Vec<u8>, u32), u32> {
    use crate::abi::status;
    let id = parse_xfer(readable).map_err(|e| e.status())?;
    let capacity = writable_len
        .checked_sub(abi::PCM_STATUS_SIZE)
        .ok_or(status::BAD_MSG)?;
    if id != stream_id {
        return Err(status::BAD_MSG);
    }
    if !matches!(
        state,
        Some(StreamState::Prepared | StreamState::Running | StreamState::Stopped)
    ) {
        return Err(status::IO_ERR);
    }
    let (pcm, bytes) = if playback {
        // The device writes only the status into a playback message.
        if capacity != 0 {
            return Err(status::BAD_MSG);
        }
        let pcm = readable.get(abi::PCM_XFER_SIZE..).unwrap_or(&[]).to_vec();
        let n = pcm.len();
        (pcm, n)
    } else {
        if readable.len() != abi::PCM_XFER_SIZE {
            return Err(status::BAD_MSG);
        }
        (Vec::new(), capacity)
    };
    let bytes = u32::try_from(bytes).map_err(|_| status::BAD_MSG)?;
    if bytes == 0 || !bytes.is_multiple_of(FRAME_BYTES) {
        return Err(status::BAD_MSG);
    }
    Ok((pcm, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[u32]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn parses_each_kind() {
        assert_eq!(
            parse_control(&words(&[code::PCM_INFO, 0, 2, 32])),
            Ok(ControlRequest::Info {
                code: code::PCM_INFO,
                query: InfoQuery {
                    start_id: 0,
                    count: 2,
                    size: 32
                }
            })
        );
        let mut sp = words(&[code::PCM_SET_PARAMS, 1, 19200, 1920, 0]);
        sp.extend([2, abi::PCM_FMT_S16, abi::PCM_RATE_48000, 0]);
        let ControlRequest::SetParams { stream_id, params } = parse_control(&sp).unwrap() else {
            panic!("not set-params");
        };
        assert_eq!(
            (stream_id, params.buffer_bytes, params.channels),
            (1, 19200, 2)
        );
        assert_eq!(
            parse_control(&words(&[code::PCM_START, 0])),
            Ok(ControlRequest::Pcm {
                code: code::PCM_START,
                stream_id: 0
            })
        );
    }

    #[test]
    fn short_and_unknown_are_errors() {
        assert!(matches!(
            parse_control(&[1, 0]),
            Err(RequestError::Short { code: 0, .. })
        ));
        assert!(matches!(
            parse_control(&words(&[code::PCM_SET_PARAMS, 0, 0])),
            Err(RequestError::Short {
                need: 24,
                got: 12,
                ..
            })
        ));
        let e = parse_control(&words(&[0x0300])).unwrap_err();
        assert_eq!(e, RequestError::Unsupported(0x300));
        assert_eq!(e.status(), abi::status::NOT_SUPP);
        assert_eq!(
            parse_xfer(&[0; 3]).unwrap_err().status(),
            abi::status::BAD_MSG
        );
        assert_eq!(parse_xfer(&words(&[1, 99])), Ok(1));
    }

    #[test]
    fn io_messages() {
        use crate::abi::status::{BAD_MSG, IO_ERR};
        let running = Some(StreamState::Running);
        let mut tx = words(&[0]);
        tx.extend([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            check_io(running, 0, true, &tx, 8),
            Ok((tx[4..].to_vec(), 8))
        );
        assert_eq!(
            check_io(running, 1, false, &words(&[1]), 8 + 16),
            Ok((vec![], 16))
        );
        for (state, id, playback, readable, writable, want) in [
            (running, 0, true, tx.clone(), 7, BAD_MSG), // no room for the status
            (running, 0, true, tx.clone(), 16, BAD_MSG), // writable data in a tx message
            (running, 0, true, tx[..7].to_vec(), 8, BAD_MSG), // a partial frame
            (running, 0, true, words(&[0]), 8, BAD_MSG), // no audio
            (running, 1, true, tx.clone(), 8, BAD_MSG), // another stream's id
            (Some(StreamState::ParamsSet), 0, true, tx.clone(), 8, IO_ERR),
            (None, 0, true, tx.clone(), 8, IO_ERR),
            (running, 1, false, words(&[1, 0]), 24, BAD_MSG), // data in an rx header
            (running, 1, false, words(&[1]), 8 + 3, BAD_MSG), // a partial frame
            (running, 1, false, vec![1], 24, BAD_MSG),        // a short header
        ] {
            assert_eq!(
                check_io(state, id, playback, &readable, writable).err(),
                Some(want),
                "{state:?} {id} {playback} {readable:?} {writable}"
            );
        }
    }
}
