//! WebSocket (RFC 6455) on the Spice ports: the opening handshake's answer, and [`WsStream`],
//! which turns a WebSocket connection back into the byte stream the Spice link and channel
//! code read and write, so a browser client (spice-html5) links, is ticketed and is held to
//! `--spice-secure-channels` exactly as a TCP client is.
//!
//! Client frames are checked as the RFC asks of a server: each must be masked, carry no
//! reserved bits (no extension is negotiated), and use a known opcode; control frames are
//! unfragmented and at most 125 bytes; a fragmented message runs on in continuation frames
//! with nothing but control frames between them. Only binary messages carry Spice bytes (a
//! text message is refused with 1003). A frame's length is bounded by [`MAX_FRAME_PAYLOAD`]
//! before anything is read or allocated, which also refuses the 64-bit lengths with their top
//! bit set that the RFC forbids. A bad frame gets a CLOSE with the RFC's status code and ends
//! that connection only. PINGs are answered with PONGs, a CLOSE with a CLOSE, and the stream
//! then reads as ended.
//!
//! Messages are not reassembled: their payloads are the stream, whatever the framing (spice-html5
//! sends one Spice message per WebSocket message, but nothing here relies on it). What the
//! server writes goes out as one binary frame per write, unmasked.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::tls::Stream;

/// Largest payload of one client frame. spice-html5 sends one Spice message per frame, and the
/// largest message any channel accepts is 64 KiB (a record channel DATA); a browser splits
/// nothing this small. Checked from the frame header, before the payload is read.
pub const MAX_FRAME_PAYLOAD: u64 = 1 << 20;

/// Largest control frame payload (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The GUID the RFC appends to the client's key (§1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Frame opcodes (§5.2).
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xa;
}

/// CLOSE status codes (§7.4.1).
pub mod status {
    pub const NORMAL: u16 = 1000;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const TOO_BIG: u16 = 1009;
}

/// What was wrong with a client frame.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error("reserved bits {0:#x} set, but no extension was negotiated")]
    Reserved(u8),
    #[error("unknown opcode {0:#x}")]
    Opcode(u8),
    #[error("a client frame without a mask")]
    Unmasked,
    #[error("a 64-bit payload length {0:#x} with its top bit set")]
    BadLength(u64),
    #[error("a payload of {0} bytes (at most {MAX_FRAME_PAYLOAD} per frame)")]
    TooLong(u64),
    #[error("a control frame that is fragmented or longer than {MAX_CONTROL_PAYLOAD} bytes")]
    BadControl,
    #[error("a text message (only binary messages carry Spice)")]
    Text,
    #[error("a continuation frame outside a fragmented message")]
    StrayContinuation,
    #[error("a new message before the fragmented one ended")]
    Interleaved,
}

impl FrameError {
    /// The status code our CLOSE carries for this error.
    pub fn status(&self) -> u16 {
        match self {
            FrameError::TooLong(_) => status::TOO_BIG,
            FrameError::Text => status::UNSUPPORTED_DATA,
            _ => status::PROTOCOL_ERROR,
        }
    }
}

/// A client frame's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: u8,
    pub mask: [u8; 4],
    pub len: u64,
}

/// The length of a frame header from its first two bytes: 2, plus 2 or 8 bytes of extended
/// length, plus 4 of mask when the mask bit is set.
pub fn header_len(b1: u8) -> usize {
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
}

/// Parses and checks one client frame header: `Ok(None)` while `buf` holds less than the whole
/// header, else the header and its length in bytes. Every check that needs no state (mask,
/// reserved bits, opcode, control frame rules, the length bound) is made here.
pub fn parse_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, FrameError> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(FrameError::Reserved(b0 & 0x70));
    }
    let op = b0 & 0x0f;
    if !matches!(
        op,
        opcode::CONTINUATION
            | opcode::TEXT
            | opcode::BINARY
            | opcode::CLOSE
            | opcode::PING
            | opcode::PONG
    ) {
        return Err(FrameError::Opcode(op));
    }
    if b1 & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let total = header_len(b1);
    let Some(head) = buf.get(..total) else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let (len, at) = match b1 & 0x7f {
        126 => (u64::from(u16::from_be_bytes([head[2], head[3]])), 4),
        127 => {
            let mut l = [0u8; 8];
            l.copy_from_slice(&head[2..10]);
            let len = u64::from_be_bytes(l);
            if len >> 63 != 0 {
                return Err(FrameError::BadLength(len));
            }
            (len, 10)
        }
        short => (u64::from(short), 2),
    };
    if op >= opcode::CLOSE && (!fin || len > MAX_CONTROL_PAYLOAD as u64) {
        return Err(FrameError::BadControl);
    }
    if len > MAX_FRAME_PAYLOAD {
        return Err(FrameError::TooLong(len));
    }
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&head[at..at + 4]);
    Ok(Some((
        FrameHeader {
            fin,
            opcode: op,
            mask,
            len,
        },
        total,
    )))
}

/// XORs `data` with `mask`, the mask's byte `offset` at `data[0]` (§5.3).
pub fn unmask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[(offset + i) % 4];
    }
}

/// The header of a server frame (FIN set, unmasked) of `len` payload bytes, with the
/// shortest length encoding (§5.2).
pub fn frame_header(op: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    out.push(0x80 | op);
    match len {
        n if n <= 125 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out
}

/// A whole server frame carrying `payload`.
pub fn frame(op: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = frame_header(op, payload.len());
    out.extend_from_slice(payload);
    out
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key` (§4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(ACCEPT_GUID.as_bytes());
    base64(&h.finalize())
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Whether `key` is a valid `Sec-WebSocket-Key`: base64 of 16 bytes (§4.1), 24 characters
/// ending in `==`.
pub fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && key.ends_with("==")
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        // The last character before the padding holds 2 bits of data and 4 of zeros.
        && b"AQgw".contains(&b[21])
}

/// The reading state of one WebSocket connection: where in the current frame we are and
/// whether a fragmented message is open.
#[derive(Debug, Default)]
pub struct Deframer {
    /// Payload bytes of the current data frame not read yet.
    left: u64,
    mask: [u8; 4],
    /// Payload bytes of the current data frame read so far (the mask's phase).
    done: usize,
    /// A data message whose last frame has not come yet.
    in_message: bool,
    /// The client's CLOSE was answered: the stream has ended.
    closed: bool,
    /// Control frames answered (pings, pongs, closes), for the tests.
    pub controls: u64,
}

/// Where the deframer's answers (PONG, CLOSE) go.
pub trait FrameSink {
    fn send(&mut self, op: u8, payload: &[u8]) -> io::Result<()>;
}

impl<F: FnMut(u8, &[u8]) -> io::Result<()>> FrameSink for F {
    fn send(&mut self, op: u8, payload: &[u8]) -> io::Result<()> {
        self(op, payload)
    }
}

impl Deframer {
    pub fn new() -> Deframer {
        Deframer::default()
    }

    /// Reads client payload bytes from `r` into `buf`, as [`Read::read`]: control frames are
    /// answered through `sink` on the way; `Ok(0)` once the client has closed. A bad frame is
    /// answered with a CLOSE and returned as `InvalidData` wrapping a [`FrameError`].
    pub fn read(
        &mut self,
        r: &mut impl Read,
        buf: &mut [u8],
        sink: &mut impl FrameSink,
    ) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.closed {
                return Ok(0);
            }
            if self.left > 0 {
                let want = usize::try_from(self.left)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let out = &mut buf[..want];
                let n = r.read(out)?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                unmask(&mut out[..n], self.mask, self.done);
                self.done = self.done.wrapping_add(n);
                self.left -= n as u64;
                return Ok(n);
            }
            let mut head = [0u8; 14];
            r.read_exact(&mut head[..2])?;
            let total = header_len(head[1]);
            r.read_exact(&mut head[2..total])?;
            let header = match parse_header(&head[..total]) {
                Ok(Some((h, _))) => h,
                // A whole header was read, so None cannot happen; treat it as malformed.
                Ok(None) => return Err(self.refuse(sink, FrameError::BadControl)),
                Err(e) => return Err(self.refuse(sink, e)),
            };
            match header.opcode {
                opcode::BINARY | opcode::CONTINUATION => {
                    if header.opcode == opcode::BINARY && self.in_message {
                        return Err(self.refuse(sink, FrameError::Interleaved));
                    }
                    if header.opcode == opcode::CONTINUATION && !self.in_message {
                        return Err(self.refuse(sink, FrameError::StrayContinuation));
                    }
                    self.in_message = !header.fin;
                    self.left = header.len;
                    self.mask = header.mask;
                    self.done = 0;
                }
                opcode::TEXT => return Err(self.refuse(sink, FrameError::Text)),
                op => {
                    // A control frame: ≤ 125 bytes, checked by parse_header.
                    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
                    let payload = &mut payload[..header.len as usize];
                    r.read_exact(payload)?;
                    unmask(payload, header.mask, 0);
                    self.controls += 1;
                    match op {
                        opcode::PING => sink.send(opcode::PONG, payload)?,
                        opcode::CLOSE => {
                            // Echo the client's status code (§5.5.1), or none.
                            let code = payload.get(..2).unwrap_or_default();
                            let _ = sink.send(opcode::CLOSE, code);
                            self.closed = true;
                            tracing::debug!(?code, "the WebSocket client closed");
                        }
                        _ => {} // PONG: unsolicited, ignored
                    }
                }
            }
        }
    }

    /// Sends a CLOSE for `e` (best effort) and returns the error that ends the connection.
    fn refuse(&mut self, sink: &mut impl FrameSink, e: FrameError) -> io::Error {
        tracing::warn!(error = %e, "bad WebSocket frame; closing the connection");
        let _ = sink.send(opcode::CLOSE, &e.status().to_be_bytes());
        self.closed = true;
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// What the reading side of a connection keeps: the deframer, and bytes the client sent right
/// after its upgrade request that were read together with it.
struct ReadState {
    deframer: Deframer,
    early: Vec<u8>,
}

/// Reads `early` first, then `inner`.
struct Prefixed<'a> {
    early: &'a mut Vec<u8>,
    inner: &'a mut Stream,
}

impl Read for Prefixed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.early.is_empty() {
            return self.inner.read(buf);
        }
        let n = self.early.len().min(buf.len());
        buf[..n].copy_from_slice(&self.early[..n]);
        self.early.drain(..n);
        Ok(n)
    }
}

/// One handle on a WebSocket connection: the Spice bytes of the client's binary messages in,
/// binary frames out. Clones share the connection (the channel's reader and its writer thread),
/// as [`Stream`]'s do: frames are written whole under one lock, so a PONG the reader sends
/// never cuts into a frame the writer is sending.
pub(crate) struct WsStream {
    /// This handle's own reading end.
    reader: Stream,
    state: Arc<Mutex<ReadState>>,
    writer: Arc<Mutex<Stream>>,
}

/// Server frames up to this size go out in one write with their header (one TCP segment or
/// TLS record for small messages); larger ones as the header, then the payload, without a copy.
const COPY_FRAME_BYTES: usize = 64 << 10;

impl WsStream {
    /// Wraps a connection whose upgrade was just answered with 101. `early` holds bytes the
    /// client sent after its request that were read with it (frames it did not wait to send).
    pub fn new(stream: Stream, early: Vec<u8>) -> io::Result<WsStream> {
        Ok(WsStream {
            writer: Arc::new(Mutex::new(stream.try_clone()?)),
            reader: stream,
            state: Arc::new(Mutex::new(ReadState {
                deframer: Deframer::new(),
                early,
            })),
        })
    }

    /// The connection underneath (plain or TLS).
    pub fn inner(&self) -> &Stream {
        &self.reader
    }

    pub fn try_clone(&self) -> io::Result<WsStream> {
        Ok(WsStream {
            reader: self.reader.try_clone()?,
            state: self.state.clone(),
            writer: self.writer.clone(),
        })
    }

    fn lock_writer(writer: &Mutex<Stream>) -> MutexGuard<'_, Stream> {
        writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let ReadState { deframer, early } = &mut *state;
        let writer = &self.writer;
        let mut sink =
            |op: u8, payload: &[u8]| WsStream::lock_writer(writer).write_all(&frame(op, payload));
        let mut r = Prefixed {
            early,
            inner: &mut self.reader,
        };
        deframer.read(&mut r, buf, &mut sink)
    }

    pub fn write(&self, data: &[u8]) -> io::Result<usize> {
        let mut w = WsStream::lock_writer(&self.writer);
        if data.len() <= COPY_FRAME_BYTES {
            w.write_all(&frame(opcode::BINARY, data))?;
        } else {
            w.write_all(&frame_header(opcode::BINARY, data.len()))?;
            w.write_all(data)?;
        }
        Ok(data.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client_frame(fin: bool, op: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = frame(op, payload);
        if !fin {
            f[0] &= 0x7f;
        }
        f[1] |= 0x80;
        let at = header_len(f[1]) - 4;
        f.splice(at..at, mask);
        let body_at = at + 4;
        unmask(&mut f[body_at..], mask, 0);
        f
    }

    /// Control frames the deframer answered: opcode and payload.
    type Answers = Vec<(u8, Vec<u8>)>;

    /// Everything `input` yields, and what was answered, until the end or an error.
    fn run(input: &[u8]) -> (Vec<u8>, Answers, Option<io::Error>) {
        let mut d = Deframer::new();
        let mut r = input;
        let mut out = Vec::new();
        let mut sent = Vec::new();
        let mut sink = |op: u8, p: &[u8]| {
            sent.push((op, p.to_vec()));
            Ok(())
        };
        let mut buf = [0u8; 7];
        let err = loop {
            match d.read(&mut r, &mut buf, &mut sink) {
                Ok(0) => break None,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => break Some(e),
            }
        };
        (out, sent, err)
    }

    #[test]
    fn the_rfc_example_key() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!valid_key("dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!valid_key("dGhlIHNhbXBsZSBub25jZR=="));
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
    }

    #[test]
    fn fragments_pings_and_close_make_one_stream() {
        let m = [1, 2, 3, 4];
        let mut input = client_frame(false, opcode::BINARY, b"REDQ", m);
        input.extend(client_frame(true, opcode::PING, b"hi", [9, 8, 7, 6]));
        input.extend(client_frame(false, opcode::CONTINUATION, b"", m));
        input.extend(client_frame(true, opcode::CONTINUATION, b" spice bytes", m));
        input.extend(client_frame(true, opcode::PONG, b"", m));
        input.extend(client_frame(true, opcode::BINARY, &[0u8; 300], [0xff; 4]));
        input.extend(client_frame(true, opcode::CLOSE, &1000u16.to_be_bytes(), m));
        input.extend(client_frame(true, opcode::BINARY, b"after close", m));
        let (out, sent, err) = run(&input);
        assert!(err.is_none(), "{err:?}");
        let mut want = b"REDQ spice bytes".to_vec();
        want.extend([0u8; 300]);
        assert_eq!(out, want);
        assert_eq!(
            sent,
            [
                (opcode::PONG, b"hi".to_vec()),
                (opcode::CLOSE, vec![0x03, 0xe8])
            ]
        );
    }

    #[test]
    fn bad_frames_are_refused_with_their_status() {
        let m = [5, 6, 7, 8];
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (frame(opcode::BINARY, b"x"), FrameError::Unmasked),
            (client_frame(true, opcode::TEXT, b"x", m), FrameError::Text),
            (
                client_frame(true, opcode::CONTINUATION, b"x", m),
                FrameError::StrayContinuation,
            ),
            (
                [
                    client_frame(false, opcode::BINARY, b"x", m),
                    client_frame(true, opcode::BINARY, b"y", m),
                ]
                .concat(),
                FrameError::Interleaved,
            ),
            (
                client_frame(false, opcode::PING, b"", m),
                FrameError::BadControl,
            ),
            (
                client_frame(true, opcode::PING, &[0; 126], m),
                FrameError::BadControl,
            ),
            (vec![0xc2, 0x80, 0, 0, 0, 0], FrameError::Reserved(0x40)),
            (vec![0x83, 0x80, 0, 0, 0, 0], FrameError::Opcode(3)),
            (
                [
                    vec![0x82, 0xff],
                    (1u64 << 63).to_be_bytes().to_vec(),
                    vec![0; 4],
                ]
                .concat(),
                FrameError::BadLength(1 << 63),
            ),
            (
                [
                    vec![0x82, 0xff],
                    (MAX_FRAME_PAYLOAD + 1).to_be_bytes().to_vec(),
                    vec![0; 4],
                ]
                .concat(),
                FrameError::TooLong(MAX_FRAME_PAYLOAD + 1),
            ),
        ];
        for (input, want) in cases {
            let (_, sent, err) = run(&input);
            let err = err.unwrap_or_else(|| panic!("{want} accepted"));
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            let got = err
                .get_ref()
                .and_then(|e| e.downcast_ref::<FrameError>())
                .cloned();
            assert_eq!(got, Some(want.clone()));
            assert_eq!(
                sent.last(),
                Some(&(opcode::CLOSE, want.status().to_be_bytes().to_vec())),
                "{want}"
            );
        }
        // A truncated frame is the end of the stream, not a protocol error.
        let mut input = client_frame(true, opcode::BINARY, b"abcdef", m);
        input.truncate(input.len() - 2);
        let (out, _, err) = run(&input);
        assert_eq!(out, b"abcd");
        assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::UnexpectedEof));
    }

    #[test]
    fn server_frames_use_the_shortest_length() {
        assert_eq!(&frame(opcode::BINARY, &[7; 125])[..2], &[0x82, 125]);
        assert_eq!(&frame(opcode::BINARY, &[7; 126])[..4], &[0x82, 126, 0, 126]);
        assert_eq!(
            &frame(opcode::BINARY, &[7; 70000])[..10],
            &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]
        );
    }

    proptest::proptest! {
        /// Whatever the framing (any split into fragments, pings between them, any masks),
        /// the stream is the payloads in order.
        #[test]
        fn any_framing_yields_the_payload(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(0usize..2000, 0..8),
            pings in proptest::collection::vec(proptest::prelude::any::<bool>(), 9),
            mask in proptest::prelude::any::<[u8; 4]>(),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort_unstable();
            let pieces: Vec<&[u8]> = cuts.windows(2).map(|w| &data[w[0]..w[1]]).collect();
            let mut input = Vec::new();
            for (i, p) in pieces.iter().enumerate() {
                let op = if i == 0 { opcode::BINARY } else { opcode::CONTINUATION };
                input.extend(client_frame(i + 1 == pieces.len(), op, p, mask));
                if pings[i % pings.len()] {
                    input.extend(client_frame(true, opcode::PING, b"p", mask));
                }
            }
            let (out, _, err) = run(&input);
            proptest::prop_assert!(err.is_some_and(|e| e.kind() == io::ErrorKind::UnexpectedEof));
            proptest::prop_assert_eq!(out, data);
        }
    }
}
