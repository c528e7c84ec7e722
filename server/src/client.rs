//! A minimal Spice client: link with the SPICE ticket, read and send mini-header messages, keep
//! a copy of the primary surface from display messages, and decode cursor messages.
//!
//! Why it lives in the library rather than in a test folder: the server's own tests, the
//! real-guest tests (inputs, live display, cursor) and the Spice benchmark all need to script
//! things an external client cannot (send chosen input events, count wire bytes, stop reading),
//! and one checked implementation is better than three copies. It speaks only what our server
//! sends (mini header, raw `32BIT` bitmaps); it is not a general Spice client.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use rsa::pkcs8::DecodePublicKey;
use rsa::rand_core::OsRng;
use rsa::{Oaep, RsaPublicKey};
use thiserror::Error;

use crate::wire::{
    AUTH_MECHANISM_SPICE, LINK_HEADER_SIZE, LINK_MAGIC, LINK_MESS_SIZE, LINK_REPLY_SIZE,
    MAX_LINK_SIZE, MINI_HEADER_SIZE, PUBKEY_BYTES, VERSION_MAJOR, VERSION_MINOR, channel,
    common_cap, msg,
};

/// Largest message the client accepts: a full-screen raw 32-bit bitmap of the largest surface
/// our server sends (8192 x 8192) plus headers. Bounds what a broken server can make us
/// allocate.
pub const MAX_CLIENT_MESSAGE: usize = 8192 * 8192 * 4 + 4096;

/// What went wrong on the client side.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("server refused the link with error {0}")]
    Refused(u32),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("bad server public key: {0}")]
    Key(String),
}

fn proto<T>(what: impl Into<String>) -> Result<T, ClientError> {
    Err(ClientError::Protocol(what.into()))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, ClientError> {
    match b.get(off..off + 4) {
        Some(s) => Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]])),
        None => proto(format!("message too short for a u32 at {off}")),
    }
}

fn u16_at(b: &[u8], off: usize) -> Result<u16, ClientError> {
    match b.get(off..off + 2) {
        Some(s) => Ok(u16::from_le_bytes([s[0], s[1]])),
        None => proto(format!("message too short for a u16 at {off}")),
    }
}

/// The bytes of a SpiceLinkHeader + SpiceLinkMess with the given capability words.
pub fn link_bytes(conn_id: u32, channel_type: u8, common: &[u32], chan: &[u32]) -> Vec<u8> {
    let mut mess = Vec::with_capacity(LINK_MESS_SIZE + 4 * (common.len() + chan.len()));
    mess.extend(conn_id.to_le_bytes());
    mess.push(channel_type);
    mess.push(0); // channel id
    mess.extend((common.len() as u32).to_le_bytes());
    mess.extend((chan.len() as u32).to_le_bytes());
    mess.extend((LINK_MESS_SIZE as u32).to_le_bytes());
    for c in common.iter().chain(chan) {
        mess.extend(c.to_le_bytes());
    }
    let mut out = Vec::with_capacity(LINK_HEADER_SIZE + mess.len());
    for v in [LINK_MAGIC, VERSION_MAJOR, VERSION_MINOR, mess.len() as u32] {
        out.extend(v.to_le_bytes());
    }
    out.extend(mess);
    out
}

/// Reads the server's link header and reply; returns (link error code, reply bytes).
pub fn read_link_reply(s: &mut impl Read) -> Result<(u32, Vec<u8>), ClientError> {
    let mut hdr = [0u8; LINK_HEADER_SIZE];
    s.read_exact(&mut hdr)?;
    if u32_at(&hdr, 0)? != LINK_MAGIC {
        return proto("bad magic in the link reply");
    }
    let size = u32_at(&hdr, 12)? as usize;
    if !(LINK_REPLY_SIZE..MAX_LINK_SIZE as usize).contains(&size) {
        return proto(format!("link reply of {size} bytes"));
    }
    let mut reply = vec![0u8; size];
    s.read_exact(&mut reply)?;
    Ok((u32_at(&reply, 0)?, reply))
}

/// Reads one mini-header message: (type, body).
pub fn read_msg(s: &mut impl Read) -> Result<(u16, Vec<u8>), ClientError> {
    let mut hdr = [0u8; MINI_HEADER_SIZE];
    s.read_exact(&mut hdr)?;
    let ty = u16_at(&hdr, 0)?;
    let size = u32_at(&hdr, 2)? as usize;
    if size > MAX_CLIENT_MESSAGE {
        return proto(format!("message type {ty} of {size} bytes"));
    }
    let mut body = vec![0u8; size];
    s.read_exact(&mut body)?;
    Ok((ty, body))
}

/// Sends one mini-header message.
pub fn send_msg(s: &mut impl Write, ty: u16, body: &[u8]) -> Result<(), ClientError> {
    let mut m = Vec::with_capacity(MINI_HEADER_SIZE + body.len());
    m.extend(ty.to_le_bytes());
    m.extend((body.len() as u32).to_le_bytes());
    m.extend(body);
    s.write_all(&m)?;
    Ok(())
}

/// Runs the link stage on a connected stream: link message, reply, SPICE ticket for
/// `password`. Returns the server's link error code (from the reply when it is not OK, else
/// the link result after the ticket); 0 means linked.
pub fn link_stream(
    s: &mut (impl Read + Write),
    conn_id: u32,
    channel_type: u8,
    password: &str,
    chan_caps: &[u32],
) -> Result<u32, ClientError> {
    let common = (1 << common_cap::AUTH_SELECTION)
        | (1 << common_cap::AUTH_SPICE)
        | (1 << common_cap::MINI_HEADER);
    s.write_all(&link_bytes(conn_id, channel_type, &[common], chan_caps))?;
    let (err, reply) = read_link_reply(s)?;
    if err != 0 {
        return Ok(err);
    }
    let der = reply
        .get(4..4 + PUBKEY_BYTES)
        .ok_or_else(|| ClientError::Key("reply too short".into()))?;
    let key =
        RsaPublicKey::from_public_key_der(der).map_err(|e| ClientError::Key(e.to_string()))?;
    let mut pw = password.as_bytes().to_vec();
    pw.push(0);
    let ticket = key
        .encrypt(&mut OsRng, Oaep::new::<sha1::Sha1>(), &pw)
        .map_err(|e| ClientError::Key(e.to_string()))?;
    s.write_all(&AUTH_MECHANISM_SPICE.to_le_bytes())?;
    s.write_all(&ticket)?;
    let mut result = [0u8; 4];
    s.read_exact(&mut result)?;
    Ok(u32::from_le_bytes(result))
}

/// One linked channel over plain TCP.
pub struct Channel {
    pub stream: TcpStream,
    /// Bytes read from the server on this channel since the link (headers included).
    pub bytes_read: u64,
    /// PINGs answered with a PONG so far.
    pub pings_answered: u64,
}

impl Channel {
    /// Connects, links a channel of `channel_type` (mini header, SPICE auth) and sends the
    /// ticket for `password` (an empty one when ticketing is off). Fails with
    /// [`ClientError::Refused`] when the server's link reply or link result is not OK.
    pub fn link(
        addr: SocketAddr,
        conn_id: u32,
        channel_type: u8,
        password: &str,
        chan_caps: &[u32],
    ) -> Result<Channel, ClientError> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        match link_stream(&mut stream, conn_id, channel_type, password, chan_caps)? {
            0 => Ok(Channel {
                stream,
                bytes_read: 0,
                pings_answered: 0,
            }),
            code => Err(ClientError::Refused(code)),
        }
    }

    /// Reads the next message, answering PING with PONG on the way (the server measures
    /// round trips with them; an unanswered ping is harmless, an answered one is realistic).
    pub fn read(&mut self) -> Result<(u16, Vec<u8>), ClientError> {
        let (ty, body) = read_msg(self)?;
        if ty == msg::PING {
            let pong = body.get(..12).unwrap_or(&body).to_vec();
            self.send(msg::MSGC_PONG, &pong)?;
            self.pings_answered += 1;
        }
        Ok((ty, body))
    }

    /// Sends one message.
    pub fn send(&mut self, ty: u16, body: &[u8]) -> Result<(), ClientError> {
        send_msg(&mut self.stream, ty, body)
    }

    /// Sets how long [`Channel::read`] waits.
    pub fn set_timeout(&self, t: Duration) -> Result<(), ClientError> {
        self.stream.set_read_timeout(Some(t))?;
        Ok(())
    }
}

/// Reading through the channel counts the bytes (for wire-cost figures).
impl Read for Channel {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.bytes_read += n as u64;
        Ok(n)
    }
}

impl Write for Channel {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// A session: the main channel, the session id from MAIN_INIT, and what is needed to link
/// the session's other channels.
pub struct Session {
    pub addr: SocketAddr,
    pub password: String,
    pub main: Channel,
    pub id: u32,
    /// The mouse mode MAIN_INIT announced (1 server, 2 client).
    pub mouse_mode: u32,
    /// The mouse modes the server supports (bit mask).
    pub mouse_modes: u32,
}

impl Session {
    /// Links the main channel and reads MAIN_INIT.
    pub fn connect(addr: SocketAddr, password: &str) -> Result<Session, ClientError> {
        let mut main = Channel::link(addr, 0, channel::MAIN, password, &[])?;
        let (ty, body) = main.read()?;
        if ty != msg::MAIN_INIT {
            return proto(format!("expected MAIN_INIT, got message {ty}"));
        }
        let id = u32_at(&body, 0)?;
        if id == 0 {
            return proto("MAIN_INIT with session id 0");
        }
        Ok(Session {
            addr,
            password: password.to_owned(),
            id,
            mouse_modes: u32_at(&body, 8)?,
            mouse_mode: u32_at(&body, 12)?,
            main,
        })
    }

    /// Links one of this session's secondary channels.
    pub fn open(&self, channel_type: u8, chan_caps: &[u32]) -> Result<Channel, ClientError> {
        Channel::link(self.addr, self.id, channel_type, &self.password, chan_caps)
    }

    /// Links the playback channel with playback caps `caps` (bit 1 VOLUME, 3 OPUS); read it
    /// with [`Channel::read`] into a [`PlaybackCapture`].
    pub fn playback(&self, caps: u32) -> Result<Channel, ClientError> {
        self.open(channel::PLAYBACK, &[caps])
    }

    /// Links the record channel with record caps `caps` (bit 1 VOLUME); send it MODE and
    /// DATA ([`record_data`]).
    pub fn record(&self, caps: u32) -> Result<Channel, ClientError> {
        self.open(channel::RECORD, &[caps])
    }

    /// Links the cursor channel.
    pub fn cursor(&self) -> Result<CursorChannel, ClientError> {
        Ok(CursorChannel {
            channel: self.open(channel::CURSOR, &[])?,
            window: 0,
            received: 0,
        })
    }

    /// Asks for a mouse mode (1 server, 2 client) and reads the main channel until the
    /// server's MOUSE_MODE answer; returns the current mode it announces.
    pub fn request_mouse_mode(&mut self, mode: u16) -> Result<u16, ClientError> {
        self.main
            .send(msg::MSGC_MAIN_MOUSE_MODE_REQUEST, &mode.to_le_bytes())?;
        loop {
            let (ty, body) = self.main.read()?;
            if ty == msg::MAIN_MOUSE_MODE {
                self.mouse_mode = u32::from(u16_at(&body, 2)?);
                return u16_at(&body, 2);
            }
        }
    }

    /// Reads the main channel until at least one PING has been answered, so the server knows
    /// this client's round trip (it pings at once on link, then every few seconds).
    pub fn answer_ping(&mut self) -> Result<(), ClientError> {
        while self.main.pings_answered == 0 {
            self.main.read()?;
        }
        Ok(())
    }

    /// Links the display channel and sends DISPLAY_INIT as spice-gtk does: the LZ4 and
    /// MONITORS_CONFIG caps, a pixmap cache and a GLZ dictionary of spice-gtk's default sizes,
    /// so the server encodes for it as for spice-gtk ([`Screen`] decodes every format).
    pub fn display(&self) -> Result<Channel, ClientError> {
        self.display_with(DISPLAY_CAPS_LIKE_SPICE_GTK, GLZ_WINDOW_LIKE_SPICE_GTK)
    }

    /// Links the display channel with display caps `caps` and a GLZ dictionary of
    /// `glz_window` pixels (0 = none, as spice-html5).
    pub fn display_with(&self, caps: u32, glz_window: u32) -> Result<Channel, ClientError> {
        let mut d = self.open(channel::DISPLAY, &[caps])?;
        let mut init = Vec::with_capacity(14);
        init.push(1u8); // pixmap cache id
        init.extend_from_slice(&PIXMAP_CACHE_LIKE_SPICE_GTK.to_le_bytes());
        init.push(1u8); // GLZ dictionary id
        init.extend_from_slice(&glz_window.to_le_bytes());
        d.send(msg::MSGC_DISPLAY_INIT, &init)?;
        Ok(d)
    }
}

/// What a playback client received: the mode, START/STOP, volume, and the PCM of every DATA
/// in order with its mm-time stamp (Opus packets decoded with libopus).
#[derive(Default)]
pub struct PlaybackCapture {
    /// The data mode of the last MODE message (1 raw).
    pub mode: Option<u16>,
    /// START messages: (channels, format, frequency, mm-time).
    pub starts: Vec<(u32, u16, u32, u32)>,
    /// STOP messages received.
    pub stops: u32,
    /// The last VOLUME (per channel) and MUTE.
    pub volume: Option<Vec<u16>>,
    pub mute: Option<bool>,
    /// The audio of every DATA message, concatenated.
    pub pcm: Vec<u8>,
    /// Per DATA message: its mm-time and its audio length (decoded, for Opus).
    pub stamps: Vec<(u32, usize)>,
    /// Bytes of Opus packets received.
    pub opus_bytes: u64,
    opus: Option<opusic_c::Decoder>,
}

impl std::fmt::Debug for PlaybackCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaybackCapture")
            .field("mode", &self.mode)
            .field("starts", &self.starts)
            .field("stops", &self.stops)
            .field("pcm_bytes", &self.pcm.len())
            .field("messages", &self.stamps.len())
            .finish_non_exhaustive()
    }
}

impl PlaybackCapture {
    /// Takes one playback message. DATA before START, or in a mode other than raw or Opus,
    /// or an Opus packet libopus refuses, is a protocol error.
    pub fn handle(&mut self, ty: u16, body: &[u8]) -> Result<(), ClientError> {
        match ty {
            msg::PLAYBACK_MODE => self.mode = Some(u16_at(body, 4)?),
            msg::PLAYBACK_START => self.starts.push((
                u32_at(body, 0)?,
                u16_at(body, 4)?,
                u32_at(body, 6)?,
                u32_at(body, 10)?,
            )),
            msg::PLAYBACK_STOP => self.stops += 1,
            msg::PLAYBACK_VOLUME => {
                let n = usize::from(*body.first().unwrap_or(&0));
                self.volume = Some(
                    (0..n)
                        .map(|i| u16_at(body, 1 + 2 * i))
                        .collect::<Result<_, _>>()?,
                );
            }
            msg::PLAYBACK_MUTE => self.mute = Some(body.first().is_some_and(|m| *m != 0)),
            msg::PLAYBACK_DATA => {
                if self.starts.len() as u32 <= self.stops {
                    return proto("playback DATA outside START..STOP");
                }
                let time = u32_at(body, 0)?;
                let data = body.get(4..).unwrap_or(&[]);
                match self.mode {
                    Some(1) => {
                        self.stamps.push((time, data.len()));
                        self.pcm.extend_from_slice(data);
                    }
                    Some(3) => {
                        use opusic_c::{Channels, Decoder, SampleRate};
                        if self.opus.is_none() {
                            self.opus = Some(
                                Decoder::new(Channels::Stereo, SampleRate::Hz48000)
                                    .map_err(|e| ClientError::Protocol(format!("Opus: {e:?}")))?,
                            );
                        }
                        let Some(dec) = self.opus.as_mut() else {
                            return proto("no Opus decoder");
                        };
                        // 120 ms, the longest Opus frame, stereo.
                        let mut buf = [0u16; 5760 * 2];
                        let frames = dec
                            .decode_to_slice(data, &mut buf, false)
                            .map_err(|e| ClientError::Protocol(format!("Opus packet: {e:?}")))?;
                        let samples = buf.get(..frames * 2).unwrap_or(&[]);
                        self.stamps.push((time, samples.len() * 2));
                        self.opus_bytes += data.len() as u64;
                        self.pcm
                            .extend(samples.iter().flat_map(|s| s.to_le_bytes()));
                    }
                    _ => return proto("playback DATA in a mode this client does not decode"),
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The body of a record MODE message for raw PCM (mode 1) at mm-time `time`.
pub fn record_mode_raw(time: u32) -> Vec<u8> {
    let mut b = time.to_le_bytes().to_vec();
    b.extend(1u16.to_le_bytes());
    b
}

/// The body of a record DATA message: mm-time `time`, then raw S16 stereo audio.
pub fn record_data(time: u32, audio: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + audio.len());
    b.extend(time.to_le_bytes());
    b.extend_from_slice(audio);
    b
}

/// Display caps MONITORS_CONFIG (1) and LZ4_COMPRESSION (5).
pub const DISPLAY_CAPS_LIKE_SPICE_GTK: u32 = (1 << 1) | (1 << 5);
/// spice-gtk's default pixmap cache (80 MiB) and GLZ window (12 MiB), in 4-byte pixels.
pub const PIXMAP_CACHE_LIKE_SPICE_GTK: i64 = 80 * 1024 * 1024 / 4;
pub const GLZ_WINDOW_LIKE_SPICE_GTK: u32 = 12 * 1024 * 1024 / 4;

/// A client-side copy of the primary surface, updated from display messages, with ACK flow
/// control answered like spice-gtk (ACK_SYNC on SET_ACK, ACK every `window` messages).
#[derive(Default)]
pub struct Screen {
    pub width: u32,
    pub height: u32,
    /// B, G, R, X per pixel, top-down, stride `width * 4`.
    pub pixels: Vec<u8>,
    pub window: u32,
    pub received: u32,
    /// DRAW_COPY messages applied.
    pub draws: u64,
    /// Images decoded, per SpiceImage type (0 raw, 1 QUIC, 101 LZ, 102 GLZ, 105 JPEG,
    /// 107 zlib-GLZ, 109 LZ4).
    pub images: std::collections::BTreeMap<u8, u64>,
    glz: Option<saffron_codec::glz::Decoder>,
    /// The pixmap cache: images sent with CACHE_ME, as (width, height, B,G,R,X rows), by id.
    pub cache: std::collections::HashMap<u64, (u32, u32, Vec<u8>)>,
    /// Live video streams, by id: their destination (left, top, right, bottom).
    pub streams: std::collections::BTreeMap<u32, [u32; 4]>,
    /// The codec (`SPICE_VIDEO_CODEC_TYPE`) of each stream created, by id (the last one to
    /// have that id).
    pub stream_codecs: std::collections::BTreeMap<u32, u8>,
    /// STREAM_CREATE, STREAM_DATA(_SIZED) and STREAM_DESTROY messages seen.
    pub streams_created: u64,
    pub stream_frames: u64,
    pub streams_destroyed: u64,
    /// The last frame of each stream: its destination, mm-time and bytes (JPEG or VP8).
    /// Frames are not
    /// painted: a real client shows them later, at their mm-time, and the server ends every
    /// stream with its last frame sent losslessly.
    pub last_frames: std::collections::BTreeMap<u32, ([u32; 4], u32, Vec<u8>)>,
}

impl Screen {
    pub fn new() -> Screen {
        Screen::default()
    }

    /// Reads and handles one message; returns its type.
    pub fn step(&mut self, ch: &mut (impl Read + Write)) -> Result<u16, ClientError> {
        let (ty, body) = read_msg(ch)?;
        self.handle(ch, ty, &body)?;
        Ok(ty)
    }

    /// Handles one display message already read.
    pub fn handle(&mut self, ch: &mut impl Write, ty: u16, body: &[u8]) -> Result<(), ClientError> {
        match ty {
            msg::SET_ACK => {
                self.window = u32_at(body, 4)?;
                return send_msg(ch, msg::MSGC_ACK_SYNC, body.get(0..4).unwrap_or(&[]));
            }
            // The display channel's pings measure the link: answered as spice-gtk does (id
            // and time stamp back, any padding not).
            msg::PING => {
                let pong = body
                    .get(..12)
                    .ok_or_else(|| ClientError::Protocol("PING shorter than 12 bytes".into()))?;
                send_msg(ch, msg::MSGC_PONG, pong)?;
            }
            msg::DISPLAY_SURFACE_CREATE => {
                let (w, h) = (u32_at(body, 4)?, u32_at(body, 8)?);
                if u32_at(body, 12)? != 32 {
                    return proto("surface format is not 32-bit xRGB");
                }
                let len = (w as usize)
                    .checked_mul(h as usize)
                    .and_then(|n| n.checked_mul(4))
                    .filter(|n| *n <= MAX_CLIENT_MESSAGE)
                    .ok_or_else(|| ClientError::Protocol(format!("surface {w}x{h}")))?;
                self.width = w;
                self.height = h;
                self.pixels = vec![0; len];
            }
            msg::DISPLAY_DRAW_COPY => {
                self.apply_draw_copy(body)?;
                self.draws += 1;
            }
            msg::DISPLAY_DRAW_FILL => {
                self.apply_draw_fill(body)?;
                self.draws += 1;
            }
            msg::DISPLAY_COPY_BITS => {
                self.apply_copy_bits(body)?;
                self.draws += 1;
            }
            msg::DISPLAY_INVAL_LIST => {
                let n = usize::from(u16_at(body, 0)?);
                for i in 0..n {
                    let at = 2 + i * 9;
                    if body.get(at) != Some(&1) {
                        return proto("INVAL_LIST of something other than pixmaps");
                    }
                    let id = u64::from_le_bytes(
                        body.get(at + 1..at + 9)
                            .and_then(|b| b.try_into().ok())
                            .ok_or_else(|| ClientError::Protocol("short INVAL_LIST".into()))?,
                    );
                    if self.cache.remove(&id).is_none() {
                        return proto(format!("INVAL_LIST of pixmap {id}, which is not cached"));
                    }
                }
            }
            msg::DISPLAY_INVAL_ALL_PIXMAPS => self.cache.clear(),
            msg::DISPLAY_STREAM_CREATE => {
                let id = u32_at(body, 4)?;
                // flags TOP_DOWN, codec MJPEG or VP8, then the stamp and the sizes.
                let codec = match body.get(8..10) {
                    Some(&[1, c @ (1 | 2)]) => c,
                    _ => return proto("stream that is not top-down MJPEG or VP8"),
                };
                let dest = self.stream_rect(body, 34)?;
                if self.streams.insert(id, dest).is_some() {
                    return proto(format!("STREAM_CREATE of live stream {id}"));
                }
                self.stream_codecs.insert(id, codec);
                self.streams_created += 1;
            }
            msg::DISPLAY_STREAM_DATA | msg::DISPLAY_STREAM_DATA_SIZED => {
                let id = u32_at(body, 0)?;
                let Some(&stream_dest) = self.streams.get(&id) else {
                    return proto(format!("frame of unknown stream {id}"));
                };
                let (dest, at) = if ty == msg::DISPLAY_STREAM_DATA {
                    (stream_dest, 8)
                } else {
                    (self.stream_rect(body, 16)?, 32)
                };
                let size = u32_at(body, at)? as usize;
                let jpeg = body
                    .get(at + 4..)
                    .filter(|d| d.len() == size)
                    .ok_or_else(|| ClientError::Protocol("stream frame size".into()))?;
                self.last_frames
                    .insert(id, (dest, u32_at(body, 4)?, jpeg.to_vec()));
                self.stream_frames += 1;
            }
            msg::DISPLAY_STREAM_DESTROY => {
                let id = u32_at(body, 0)?;
                if self.streams.remove(&id).is_none() {
                    return proto(format!("STREAM_DESTROY of unknown stream {id}"));
                }
                self.streams_destroyed += 1;
            }
            _ => {}
        }
        if self.window > 0 {
            self.received += 1;
            if self.received.is_multiple_of(self.window) {
                send_msg(ch, msg::MSGC_ACK, &[])?;
            }
        }
        Ok(())
    }

    /// A SpiceRect (top, left, bottom, right) at `at`, as (left, top, right, bottom), inside
    /// the surface.
    fn stream_rect(&self, b: &[u8], at: usize) -> Result<[u32; 4], ClientError> {
        let (top, left, bottom, right) = (
            u32_at(b, at)?,
            u32_at(b, at + 4)?,
            u32_at(b, at + 8)?,
            u32_at(b, at + 12)?,
        );
        if right <= left || bottom <= top || right > self.width || bottom > self.height {
            return proto(format!(
                "stream rect {left},{top}-{right},{bottom} outside the surface"
            ));
        }
        Ok([left, top, right, bottom])
    }

    /// The box of a draw message onto surface 0 (with clip NONE), checked against the surface.
    fn draw_box(&self, b: &[u8]) -> Result<(usize, usize, usize, usize), ClientError> {
        if u32_at(b, 0)? != 0 {
            return proto("draw onto a surface other than 0");
        }
        let (top, left, bottom, right) =
            (u32_at(b, 4)?, u32_at(b, 8)?, u32_at(b, 12)?, u32_at(b, 16)?);
        if b.get(20) != Some(&0) {
            return proto("clip other than NONE");
        }
        if right < left || bottom < top || right > self.width || bottom > self.height {
            return proto("draw box outside the surface");
        }
        Ok((top as usize, left as usize, bottom as usize, right as usize))
    }

    /// Applies a COPY_BITS within surface 0 (source and destination may overlap).
    fn apply_copy_bits(&mut self, b: &[u8]) -> Result<(), ClientError> {
        let (top, left, bottom, right) = self.draw_box(b)?;
        let (sx, sy) = (u32_at(b, 21)? as usize, u32_at(b, 25)? as usize);
        let (w, h) = (right - left, bottom - top);
        if sx + w > self.width as usize || sy + h > self.height as usize {
            return proto("copy-bits source outside the surface");
        }
        let stride = self.width as usize * 4;
        let rows: Vec<usize> = if sy >= top {
            (0..h).collect()
        } else {
            (0..h).rev().collect()
        };
        for i in rows {
            let src = (sy + i) * stride + sx * 4;
            let dst = (top + i) * stride + left * 4;
            self.pixels.copy_within(src..src + w * 4, dst);
        }
        Ok(())
    }

    /// Applies a DRAW_FILL with a solid brush and rop PUT onto surface 0.
    fn apply_draw_fill(&mut self, b: &[u8]) -> Result<(), ClientError> {
        let (top, left, bottom, right) = self.draw_box(b)?;
        if b.get(21) != Some(&1) || u16_at(b, 26)? != 8 {
            return proto("fill other than a SOLID brush with rop PUT");
        }
        let c = u32_at(b, 22)?.to_le_bytes();
        let px = [c[0], c[1], c[2], 0];
        for y in top..bottom {
            let row = y * self.width as usize * 4;
            for p in self.pixels[row + left * 4..row + right * 4].chunks_exact_mut(4) {
                p.copy_from_slice(&px);
            }
        }
        Ok(())
    }

    /// Applies a DRAW_COPY (rop PUT, whole image) onto surface 0, decoding its image: raw
    /// 32-bit bitmaps and every compressed format the server sends.
    fn apply_draw_copy(&mut self, b: &[u8]) -> Result<(), ClientError> {
        let (top, left, bottom, right) = self.draw_box(b)?;
        let img = u32_at(b, 21)? as usize;
        let ty = *b
            .get(img + 8)
            .ok_or_else(|| ClientError::Protocol("no image".into()))?;
        let (w, h) = (u32_at(b, img + 10)?, u32_at(b, img + 14)?);
        if (w as usize, h as usize) != (right - left, bottom - top) {
            return proto("image size does not match the box");
        }
        let payload = b.get(img + 18..).unwrap_or(&[]);
        let row = w as usize * 4;
        let id = u64::from_le_bytes(
            b.get(img..img + 8)
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| ClientError::Protocol("short image descriptor".into()))?,
        );
        let flags = b.get(img + 9).copied().unwrap_or(0);
        let rows = if ty == 103 {
            // FROM_CACHE: a miss is a server bug (spice-gtk would skip the draw).
            match self.cache.get(&id) {
                Some((cw, ch, rows)) if (*cw, *ch) == (w, h) => rows.clone(),
                Some(_) => return proto(format!("cached pixmap {id} has another size")),
                None => return proto(format!("FROM_CACHE of pixmap {id}, which is not cached")),
            }
        } else {
            self.decode_image(ty, w, h, payload)?
        };
        if flags & 1 != 0 {
            self.cache.insert(id, (w, h, rows.clone()));
        }
        if rows.len() < row * h as usize {
            return proto("image data shorter than its size");
        }
        *self.images.entry(ty).or_insert(0) += 1;
        for y in 0..h as usize {
            let src = &rows[y * row..(y + 1) * row];
            let dst = ((top + y) * self.width as usize + left) * 4;
            self.pixels[dst..dst + row].copy_from_slice(src);
        }
        Ok(())
    }

    /// The pixels of an image of type `ty` as top-down B, G, R, X rows.
    fn decode_image(&mut self, ty: u8, w: u32, h: u32, p: &[u8]) -> Result<Vec<u8>, ClientError> {
        use saffron_codec::{DecodedImage, PixelFormat, lz, lz4, quic, zlib_glz};
        let max = u64::from(w) * u64::from(h);
        let bad =
            |what: &str, e: &dyn std::fmt::Display| ClientError::Protocol(format!("{what}: {e}"));
        let sized = |p: &[u8]| -> Result<Vec<u8>, ClientError> {
            let n = u32_at(p, 0)? as usize;
            p.get(4..4 + n)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| ClientError::Protocol("image payload shorter than its size".into()))
        };
        let decoded: DecodedImage = match ty {
            // BITMAP: only the 32BIT top-down layout the server sends.
            0 => {
                if p.first() != Some(&8) || p.get(1) != Some(&4) {
                    return proto("bitmap other than 32BIT top-down");
                }
                let stride = u32_at(p, 10)? as usize;
                let data = p.get(18..).unwrap_or(&[]);
                let row = w as usize * 4;
                if stride < row || data.len() < stride * h as usize {
                    return proto("bitmap data shorter than stride x height");
                }
                let mut out = Vec::with_capacity(row * h as usize);
                for y in 0..h as usize {
                    out.extend_from_slice(&data[y * stride..y * stride + row]);
                }
                return Ok(out);
            }
            1 => quic::decode(&sized(p)?, max).map_err(|e| bad("QUIC", &e))?,
            101 => lz::decode(&sized(p)?, max).map_err(|e| bad("LZ", &e))?,
            102 => self
                .glz()
                .decode(&sized(p)?, max)
                .map_err(|e| bad("GLZ", &e))?,
            107 => {
                let glz_size = u32_at(p, 0)? as usize;
                let z_size = u32_at(p, 4)? as usize;
                let z = p
                    .get(8..8 + z_size)
                    .ok_or_else(|| ClientError::Protocol("zlib payload short".into()))?;
                let glz_data = zlib_glz::decompress(z, glz_size, MAX_CLIENT_MESSAGE)
                    .map_err(|e| bad("zlib-GLZ", &e))?;
                self.glz()
                    .decode(&glz_data, max)
                    .map_err(|e| bad("GLZ", &e))?
            }
            109 => lz4::decode(&sized(p)?, w, h, max).map_err(|e| bad("LZ4", &e))?,
            105 => {
                let data = sized(p)?;
                let mut d = jpeg_decoder::Decoder::new(&data[..]);
                let rgb = d.decode().map_err(|e| bad("JPEG", &e))?;
                let info = d
                    .info()
                    .ok_or_else(|| ClientError::Protocol("JPEG without a header".into()))?;
                if (u32::from(info.width), u32::from(info.height)) != (w, h)
                    || info.pixel_format != jpeg_decoder::PixelFormat::RGB24
                {
                    return proto("JPEG of another size than its descriptor, or not RGB");
                }
                return Ok(rgb
                    .chunks_exact(3)
                    .flat_map(|p| [p[2], p[1], p[0], 0])
                    .collect());
            }
            other => return proto(format!("image type {other}")),
        };
        if (decoded.width, decoded.height) != (w, h) {
            return proto("decoded image size differs from its descriptor");
        }
        Ok(match decoded.format {
            PixelFormat::Rgb32 | PixelFormat::Rgba => decoded.pixels,
            PixelFormat::Rgb24 => decoded
                .pixels
                .chunks_exact(3)
                .flat_map(|p| [p[0], p[1], p[2], 0])
                .collect(),
            PixelFormat::Rgb16 => return proto("16-bit image on a 32-bit surface"),
        })
    }

    /// The GLZ dictionary (as big as any server may use).
    fn glz(&mut self) -> &mut saffron_codec::glz::Decoder {
        self.glz.get_or_insert_with(|| {
            saffron_codec::glz::Decoder::new(saffron_codec::glz::MAX_WINDOW_PIXELS)
        })
    }

    /// The surface as 0x00RRGGBB pixels.
    pub fn xrgb(&self) -> Vec<u32> {
        self.pixels
            .chunks_exact(4)
            .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0]))
            .collect()
    }
}

/// A cursor shape as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedShape {
    /// Cursor flags (0 for a shape sent whole and not cached).
    pub flags: u16,
    pub unique: u64,
    /// Spice cursor type (0 ALPHA, 1 MONO, ...).
    pub kind: u8,
    pub width: u16,
    pub height: u16,
    pub hot_x: u16,
    pub hot_y: u16,
    /// The rest of the message: the pixels.
    pub data: Vec<u8>,
}

/// A cursor-channel message, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CursorMessage {
    /// INIT: position, trail (length, frequency), visibility, shape (`None` = flags NONE).
    Init {
        x: i16,
        y: i16,
        trail: (u16, u16),
        visible: bool,
        shape: Option<ReceivedShape>,
    },
    Reset,
    /// SET: position, visibility, shape.
    Set {
        x: i16,
        y: i16,
        visible: bool,
        shape: Option<ReceivedShape>,
    },
    Move {
        x: i16,
        y: i16,
    },
    Hide,
    Trail {
        length: u16,
        frequency: u16,
    },
    InvalAll,
    /// Anything else (SET_ACK, PING, ...), by type.
    Other(u16),
}

/// Decodes a Spice `Cursor` (flags, header unless NONE, pixels to the end).
fn parse_shape(b: &[u8]) -> Result<Option<ReceivedShape>, ClientError> {
    let flags = u16_at(b, 0)?;
    if flags & 1 != 0 {
        return Ok(None);
    }
    let Some(head) = b.get(2..19) else {
        return proto("cursor header truncated");
    };
    Ok(Some(ReceivedShape {
        flags,
        unique: u64::from(u32_at(head, 0)?) | (u64::from(u32_at(head, 4)?) << 32),
        kind: head[8],
        width: u16_at(head, 9)?,
        height: u16_at(head, 11)?,
        hot_x: u16_at(head, 13)?,
        hot_y: u16_at(head, 15)?,
        data: b.get(19..).unwrap_or(&[]).to_vec(),
    }))
}

/// Decodes one cursor-channel message.
pub fn parse_cursor_message(ty: u16, b: &[u8]) -> Result<CursorMessage, ClientError> {
    let i16_at = |off| u16_at(b, off).map(|v| v as i16);
    Ok(match ty {
        msg::CURSOR_INIT => CursorMessage::Init {
            x: i16_at(0)?,
            y: i16_at(2)?,
            trail: (u16_at(b, 4)?, u16_at(b, 6)?),
            visible: b.get(8).is_some_and(|v| *v != 0),
            shape: parse_shape(b.get(9..).unwrap_or(&[]))?,
        },
        msg::CURSOR_RESET => CursorMessage::Reset,
        msg::CURSOR_SET => CursorMessage::Set {
            x: i16_at(0)?,
            y: i16_at(2)?,
            visible: b.get(4).is_some_and(|v| *v != 0),
            shape: parse_shape(b.get(5..).unwrap_or(&[]))?,
        },
        msg::CURSOR_MOVE => CursorMessage::Move {
            x: i16_at(0)?,
            y: i16_at(2)?,
        },
        msg::CURSOR_HIDE => CursorMessage::Hide,
        msg::CURSOR_TRAIL => CursorMessage::Trail {
            length: u16_at(b, 0)?,
            frequency: u16_at(b, 2)?,
        },
        msg::CURSOR_INVAL_ALL => CursorMessage::InvalAll,
        other => CursorMessage::Other(other),
    })
}

/// A linked cursor channel that answers ACK flow control like spice-gtk (ACK_SYNC on SET_ACK,
/// an ACK every `window` messages after it) and pings.
pub struct CursorChannel {
    pub channel: Channel,
    window: u32,
    received: u32,
}

impl CursorChannel {
    /// The next cursor message (SET_ACK and PING are answered and skipped).
    pub fn read(&mut self) -> Result<CursorMessage, ClientError> {
        loop {
            let (ty, body) = self.channel.read()?;
            if ty == msg::SET_ACK {
                self.window = u32_at(&body, 4)?;
                self.received = 0;
                self.channel
                    .send(msg::MSGC_ACK_SYNC, body.get(0..4).unwrap_or(&[]))?;
                continue;
            }
            if self.window > 0 {
                self.received += 1;
                if self.received.is_multiple_of(self.window) {
                    self.channel.send(msg::MSGC_ACK, &[])?;
                }
            }
            if ty != msg::PING {
                return parse_cursor_message(ty, &body);
            }
        }
    }

    /// Reads messages until `want` accepts one, which it returns; fails at the read timeout.
    pub fn wait_for(
        &mut self,
        mut want: impl FnMut(&CursorMessage) -> bool,
    ) -> Result<CursorMessage, ClientError> {
        loop {
            let m = self.read()?;
            if want(&m) {
                return Ok(m);
            }
        }
    }
}
