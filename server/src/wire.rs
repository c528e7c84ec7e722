//! Byte-level Spice encoding: little-endian packed fields, the link structures, the data-stage
//! headers and the message numbers we use. Everything here is pure (no I/O) so it can be
//! unit-tested and fuzzed.

use thiserror::Error;

/// `R E D Q` read as a little-endian u32.
pub const LINK_MAGIC: u32 = 0x5144_4552;
/// Protocol major version; clients with another major are refused.
pub const VERSION_MAJOR: u32 = 2;
/// Protocol minor version (ignored on receive, as spice-server does).
pub const VERSION_MINOR: u32 = 2;
/// SpiceLinkHeader size.
pub const LINK_HEADER_SIZE: usize = 16;
/// Fixed part of SpiceLinkMess.
pub const LINK_MESS_SIZE: usize = 18;
/// Fixed part of SpiceLinkReply.
pub const LINK_REPLY_SIZE: usize = 178;
/// Largest SpiceLinkMess (with caps) we accept: bounds the pre-auth allocation (CVE-2016-9578).
pub const MAX_LINK_SIZE: u32 = 4096;
/// Most capability words per set a client may send (CVE-2016-9578).
pub const MAX_CAPS: u32 = 1024;
/// DER SubjectPublicKeyInfo of an RSA-1024 key with e = 65537.
pub const PUBKEY_BYTES: usize = 162;
/// RSA-1024 ciphertext size.
pub const TICKET_BYTES: usize = 128;
/// Mini data header: type u16, size u32.
pub const MINI_HEADER_SIZE: usize = 6;
/// Full data header: serial u64, type u16, size u32, sub_list u32.
pub const FULL_HEADER_SIZE: usize = 18;

/// SpiceLinkErr values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum LinkErr {
    Ok = 0,
    Error = 1,
    InvalidMagic = 2,
    InvalidData = 3,
    VersionMismatch = 4,
    NeedSecured = 5,
    NeedUnsecured = 6,
    PermissionDenied = 7,
    BadConnectionId = 8,
    ChannelNotAvailable = 9,
}

/// Channel type numbers.
pub mod channel {
    pub const MAIN: u8 = 1;
    pub const DISPLAY: u8 = 2;
    pub const INPUTS: u8 = 3;
    pub const CURSOR: u8 = 4;
    pub const PLAYBACK: u8 = 5;
    pub const RECORD: u8 = 6;
}

/// Common capability bits.
pub mod common_cap {
    pub const AUTH_SELECTION: u32 = 0;
    pub const AUTH_SPICE: u32 = 1;
    pub const MINI_HEADER: u32 = 3;
}

/// Auth mechanism word sent after the link reply when auth selection is in use.
pub const AUTH_MECHANISM_SPICE: u32 = 1;

/// Message numbers (server → client unless marked MSGC).
pub mod msg {
    pub const SET_ACK: u16 = 3;
    pub const PING: u16 = 4;
    pub const MSGC_ACK_SYNC: u16 = 1;
    pub const MSGC_ACK: u16 = 2;
    pub const MSGC_PONG: u16 = 3;
    pub const MSGC_DISCONNECTING: u16 = 6;

    pub const PLAYBACK_DATA: u16 = 101;
    pub const PLAYBACK_MODE: u16 = 102;
    pub const PLAYBACK_START: u16 = 103;
    pub const PLAYBACK_STOP: u16 = 104;
    pub const PLAYBACK_VOLUME: u16 = 105;
    pub const PLAYBACK_MUTE: u16 = 106;
    pub const PLAYBACK_LATENCY: u16 = 107;

    pub const RECORD_START: u16 = 101;
    pub const RECORD_STOP: u16 = 102;
    pub const RECORD_VOLUME: u16 = 103;
    pub const RECORD_MUTE: u16 = 104;
    pub const MSGC_RECORD_DATA: u16 = 101;
    pub const MSGC_RECORD_MODE: u16 = 102;
    pub const MSGC_RECORD_START_MARK: u16 = 103;

    pub const MAIN_INIT: u16 = 103;
    pub const MAIN_CHANNELS_LIST: u16 = 104;
    pub const MAIN_MOUSE_MODE: u16 = 105;
    pub const MAIN_MULTI_MEDIA_TIME: u16 = 106;
    pub const MAIN_NAME: u16 = 113;
    pub const MAIN_UUID: u16 = 114;
    pub const MAIN_AGENT_CONNECTED: u16 = 107;
    pub const MAIN_AGENT_DISCONNECTED: u16 = 108;
    pub const MAIN_AGENT_DATA: u16 = 109;
    pub const MAIN_AGENT_TOKEN: u16 = 110;
    pub const MAIN_AGENT_CONNECTED_TOKENS: u16 = 115;
    pub const MSGC_MAIN_ATTACH_CHANNELS: u16 = 104;
    pub const MSGC_MAIN_MOUSE_MODE_REQUEST: u16 = 105;
    pub const MSGC_MAIN_AGENT_START: u16 = 106;
    pub const MSGC_MAIN_AGENT_DATA: u16 = 107;
    pub const MSGC_MAIN_AGENT_TOKEN: u16 = 108;

    pub const DISPLAY_MARK: u16 = 102;
    pub const DISPLAY_RESET: u16 = 103;
    pub const DISPLAY_COPY_BITS: u16 = 104;
    pub const DISPLAY_INVAL_LIST: u16 = 105;
    pub const DISPLAY_INVAL_ALL_PIXMAPS: u16 = 106;
    pub const DISPLAY_INVAL_ALL_PALETTES: u16 = 108;
    pub const DISPLAY_STREAM_CREATE: u16 = 122;
    pub const DISPLAY_STREAM_DATA: u16 = 123;
    pub const DISPLAY_STREAM_CLIP: u16 = 124;
    pub const DISPLAY_STREAM_DESTROY: u16 = 125;
    pub const DISPLAY_STREAM_DATA_SIZED: u16 = 316;
    pub const DISPLAY_STREAM_ACTIVATE_REPORT: u16 = 319;
    pub const MSGC_DISPLAY_STREAM_REPORT: u16 = 102;
    pub const MSGC_DISPLAY_PREFERRED_VIDEO_CODEC_TYPE: u16 = 105;
    pub const DISPLAY_DRAW_FILL: u16 = 302;
    pub const DISPLAY_DRAW_COPY: u16 = 304;
    pub const DISPLAY_SURFACE_CREATE: u16 = 314;
    pub const DISPLAY_SURFACE_DESTROY: u16 = 315;
    pub const DISPLAY_MONITORS_CONFIG: u16 = 317;
    pub const MSGC_DISPLAY_INIT: u16 = 101;

    pub const CURSOR_INIT: u16 = 101;
    pub const CURSOR_RESET: u16 = 102;
    pub const CURSOR_SET: u16 = 103;
    pub const CURSOR_MOVE: u16 = 104;
    pub const CURSOR_HIDE: u16 = 105;
    pub const CURSOR_TRAIL: u16 = 106;
    pub const CURSOR_INVAL_ALL: u16 = 108;

    pub const INPUTS_INIT: u16 = 101;
    pub const INPUTS_MOUSE_MOTION_ACK: u16 = 111;
    pub const MSGC_INPUTS_KEY_DOWN: u16 = 101;
    pub const MSGC_INPUTS_KEY_UP: u16 = 102;
    pub const MSGC_INPUTS_KEY_MODIFIERS: u16 = 103;
    pub const MSGC_INPUTS_MOUSE_MOTION: u16 = 111;
    pub const MSGC_INPUTS_MOUSE_POSITION: u16 = 112;
    pub const MSGC_INPUTS_MOUSE_PRESS: u16 = 113;
    pub const MSGC_INPUTS_MOUSE_RELEASE: u16 = 114;
}

/// Errors decoding client bytes.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("message truncated: needed {needed} bytes at offset {offset}, have {len}")]
    Truncated {
        offset: usize,
        needed: usize,
        len: usize,
    },
}

/// A bounds-checked little-endian reader over a client-supplied buffer.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Takes the next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let err = WireError::Truncated {
            offset: self.pos,
            needed: n,
            len: self.buf.len(),
        };
        let end = self.pos.checked_add(n).ok_or_else(|| err.clone())?;
        let out = self.buf.get(self.pos..end).ok_or(err)?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn i32(&mut self) -> Result<i32, WireError> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

/// A little-endian writer for server messages.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
}

/// Whether capability `bit` is set in a capability word array.
pub fn has_cap(words: &[u32], bit: u32) -> bool {
    words
        .get((bit / 32) as usize)
        .is_some_and(|w| w & (1 << (bit % 32)) != 0)
}

/// Frames `body` as one data-stage message with the header the peer negotiated.
///
/// With the full header `serial` is written explicitly; with the mini header it is implicit.
pub fn frame_message(mini: bool, serial: u64, ty: u16, body: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(body.len() + FULL_HEADER_SIZE);
    // Bodies are built by the server and bounded by MAX_SEND_BODY, far below u32::MAX.
    let size = u32::try_from(body.len()).unwrap_or(u32::MAX);
    if !mini {
        w.u64(serial);
    }
    w.u16(ty).u32(size);
    if !mini {
        w.u32(0);
    }
    w.bytes(body);
    w.buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_is_bounded() {
        let mut r = Reader::new(&[1, 0, 0, 0, 2]);
        assert_eq!(r.u32(), Ok(1));
        assert!(r.u32().is_err());
        assert_eq!(r.u8(), Ok(2));
        assert!(r.bytes(usize::MAX).is_err());
    }

    #[test]
    fn caps() {
        assert!(has_cap(&[0x0b], common_cap::MINI_HEADER));
        assert!(!has_cap(&[0x0b], 2));
        assert!(!has_cap(&[], 0));
        assert!(has_cap(&[0, 1], 32));
    }

    #[test]
    fn mini_and_full_framing() {
        assert_eq!(
            frame_message(true, 7, 103, &[9]),
            vec![103, 0, 1, 0, 0, 0, 9]
        );
        let full = frame_message(false, 7, 103, &[9]);
        assert_eq!(full.len(), FULL_HEADER_SIZE + 1);
        assert_eq!(&full[..8], &7u64.to_le_bytes());
    }
}
