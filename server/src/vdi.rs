//! The guest agent's byte stream (spec §11): VDIChunkHeader framing, both ways.
//!
//! On the virtio-serial port `com.redhat.spice.0` the guest agent (spice-vdagentd) and the
//! server exchange chunks: `{port u32, size u32}` then `size` bytes. Port 1
//! ([`VDP_CLIENT_PORT`]) carries VDAgentMessages to and from the client; port 2
//! ([`VDP_SERVER_PORT`]) carries messages between the agent and the server itself (we send
//! VD_AGENT_CLIENT_DISCONNECTED there, and drop what the agent sends there, as spice-server
//! does). Messages may span chunks and chunks may hold several messages, per port.
//!
//! [`GuestReader`] turns what the guest writes into what clients are sent: AGENT_DATA pieces of
//! at most [`VD_AGENT_MAX_DATA_SIZE`] bytes that never cross a message boundary (the first
//! piece of a message starts with its header), with the copy-paste and file-transfer policy
//! applied as spice-server applies it (the agent's ANNOUNCE_CAPABILITIES loses the clipboard
//! caps and gains FILE_XFER_DISABLED; clipboard and file-transfer messages are dropped). It
//! keeps at most one piece and one capabilities message in memory whatever the guest claims,
//! so a hostile agent's 4 GiB sizes, floods and half messages cost nothing; anything that is
//! not a well-formed stream is a [`VdiError`], on which the caller resets the agent link.
//!
//! [`frame_chunks`] is the other way: bytes for the agent framed as chunks of at most
//! [`VD_AGENT_MAX_DATA_SIZE`] bytes, the most spice-vdagentd accepts in one chunk.

use thiserror::Error;

use crate::agent::{AGENT_HEADER_SIZE, VD_AGENT_MAX_DATA_SIZE, VD_AGENT_PROTOCOL};

/// VDIChunkHeader: port u32, size u32.
pub const VDI_CHUNK_HEADER_SIZE: usize = 8;
/// Chunks to and from the client.
pub const VDP_CLIENT_PORT: u32 = 1;
/// Chunks between the agent and the server.
pub const VDP_SERVER_PORT: u32 = 2;
/// The largest agent message we pass on, either way: spice-gtk's default `max-clipboard`
/// (100 MiB), which it also announces to the agent as VD_AGENT_MAX_CLIPBOARD. Nothing of that
/// size is ever held in memory; the bound only makes a claimed 4 GiB message a protocol error.
pub const MAX_AGENT_MESSAGE_SIZE: u32 = 100 << 20;
/// The largest chunk: one whole message of the largest size with its header.
pub const MAX_CHUNK_SIZE: u32 = MAX_AGENT_MESSAGE_SIZE + AGENT_HEADER_SIZE as u32;
/// The largest ANNOUNCE_CAPABILITIES we rewrite (request u32 + capability words; agents send 1).
pub const MAX_CAPS_MESSAGE_SIZE: u32 = 1024;

/// Agent message types (VD_AGENT_*) the policy looks at.
pub mod msg_type {
    pub const MOUSE_STATE: u32 = 1;
    pub const MONITORS_CONFIG: u32 = 2;
    pub const CLIPBOARD: u32 = 4;
    pub const ANNOUNCE_CAPABILITIES: u32 = 6;
    pub const CLIPBOARD_GRAB: u32 = 7;
    pub const CLIPBOARD_REQUEST: u32 = 8;
    pub const CLIPBOARD_RELEASE: u32 = 9;
    pub const FILE_XFER_START: u32 = 10;
    pub const FILE_XFER_STATUS: u32 = 11;
    pub const FILE_XFER_DATA: u32 = 12;
    pub const CLIENT_DISCONNECTED: u32 = 13;
    pub const MAX_CLIPBOARD: u32 = 14;
}

/// Agent capability bits (VD_AGENT_CAP_*) the policy edits.
pub mod cap {
    pub const CLIPBOARD: u32 = 3;
    pub const CLIPBOARD_BY_DEMAND: u32 = 5;
    pub const CLIPBOARD_SELECTION: u32 = 6;
    pub const FILE_XFER_DISABLED: u32 = 13;
}

/// What the server lets through the agent channel (QEMU's `disable-copy-paste` and
/// `disable-agent-file-xfer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentPolicy {
    /// Clipboard messages pass (both ways).
    pub copy_paste: bool,
    /// File-transfer messages pass (both ways).
    pub file_xfer: bool,
}

impl Default for AgentPolicy {
    fn default() -> Self {
        AgentPolicy {
            copy_paste: true,
            file_xfer: true,
        }
    }
}

impl AgentPolicy {
    /// Whether a message of `type_` may pass under this policy.
    pub fn allows(&self, type_: u32) -> bool {
        use msg_type::*;
        match type_ {
            CLIPBOARD | CLIPBOARD_GRAB | CLIPBOARD_REQUEST | CLIPBOARD_RELEASE => self.copy_paste,
            FILE_XFER_START | FILE_XFER_STATUS | FILE_XFER_DATA => self.file_xfer,
            _ => true,
        }
    }

    /// Edits the first capability word of an agent's ANNOUNCE_CAPABILITIES as spice-server
    /// does: without copy-paste the clipboard caps go, without file transfer the agent is said
    /// to have it disabled.
    pub fn adjust_caps(&self, word0: u32) -> u32 {
        let mut w = word0;
        if !self.copy_paste {
            w &= !((1 << cap::CLIPBOARD) | (1 << cap::CLIPBOARD_BY_DEMAND))
                & !(1 << cap::CLIPBOARD_SELECTION);
        }
        if !self.file_xfer {
            w |= 1 << cap::FILE_XFER_DISABLED;
        }
        w
    }
}

/// What was wrong with the guest agent's stream; the agent link is reset.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum VdiError {
    #[error("chunk for port {port}: only 1 (client) and 2 (server) exist")]
    BadPort { port: u32 },
    #[error("chunk of {size} bytes exceeds {MAX_CHUNK_SIZE}")]
    ChunkTooLarge { size: u32 },
    #[error("agent message protocol {protocol}, expected {VD_AGENT_PROTOCOL}")]
    Protocol { protocol: u32 },
    #[error("agent message type {type_} of {size} bytes exceeds {MAX_AGENT_MESSAGE_SIZE}")]
    MessageTooLarge { type_: u32, size: u32 },
    #[error(
        "capabilities message of {size} bytes (4 + 4 × words, at most {MAX_CAPS_MESSAGE_SIZE})"
    )]
    BadCaps { size: u32 },
}

/// What the guest's stream produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestOutput {
    /// An AGENT_DATA body for the client: at most [`VD_AGENT_MAX_DATA_SIZE`] bytes of one
    /// message; `first` when it starts the message (with its header).
    ToClient { first: bool, data: Vec<u8> },
    /// A whole message the agent sent the server (port 2), by type; nothing to do with it.
    ForServer { type_: u32, size: u32 },
}

/// What happens to the message being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Passed on in pieces.
    Forward,
    /// Skipped (policy, or a server-port message).
    Drop,
    /// Kept whole, then rewritten (ANNOUNCE_CAPABILITIES).
    Caps,
}

/// One port's message reassembly.
#[derive(Clone, Debug)]
struct MessageState {
    header: [u8; AGENT_HEADER_SIZE],
    have: usize,
    type_: u32,
    size: u32,
    left: u32,
    fate: Fate,
    /// The piece being filled (Forward) or the whole message (Caps).
    buf: Vec<u8>,
    /// Whether `buf` holds the message's first bytes.
    first: bool,
}

impl MessageState {
    fn new() -> Self {
        MessageState {
            header: [0; AGENT_HEADER_SIZE],
            have: 0,
            type_: 0,
            size: 0,
            left: 0,
            fate: Fate::Drop,
            buf: Vec::new(),
            first: false,
        }
    }

    fn in_body(&self) -> bool {
        self.have == AGENT_HEADER_SIZE
    }
}

/// Reads the guest agent's chunk stream (see the module docs).
#[derive(Clone, Debug)]
pub struct GuestReader {
    policy: AgentPolicy,
    chunk_header: [u8; VDI_CHUNK_HEADER_SIZE],
    chunk_have: usize,
    chunk_port: u32,
    chunk_left: u32,
    /// Per port: client (index 0) and server (index 1).
    ports: [MessageState; 2],
}

fn le32(b: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    for (d, s) in w.iter_mut().zip(b) {
        *d = *s;
    }
    u32::from_le_bytes(w)
}

impl GuestReader {
    pub fn new(policy: AgentPolicy) -> Self {
        GuestReader {
            policy,
            chunk_header: [0; VDI_CHUNK_HEADER_SIZE],
            chunk_have: 0,
            chunk_port: 0,
            chunk_left: 0,
            ports: [MessageState::new(), MessageState::new()],
        }
    }

    /// Whether the stream stands between messages on every port (nothing half read).
    pub fn at_boundary(&self) -> bool {
        self.chunk_have == 0
            && self.chunk_left == 0
            && self.ports.iter().all(|p| p.have == 0 && p.left == 0)
    }

    /// Feeds bytes the guest wrote; appends what they complete to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<GuestOutput>) -> Result<(), VdiError> {
        while !bytes.is_empty() {
            if self.chunk_left == 0 {
                let n = (VDI_CHUNK_HEADER_SIZE - self.chunk_have).min(bytes.len());
                let (take, rest) = bytes.split_at(n);
                self.chunk_header[self.chunk_have..self.chunk_have + n].copy_from_slice(take);
                self.chunk_have += n;
                bytes = rest;
                if self.chunk_have == VDI_CHUNK_HEADER_SIZE {
                    self.chunk_have = 0;
                    let port = le32(&self.chunk_header[..4]);
                    let size = le32(&self.chunk_header[4..]);
                    if port != VDP_CLIENT_PORT && port != VDP_SERVER_PORT {
                        return Err(VdiError::BadPort { port });
                    }
                    if size > MAX_CHUNK_SIZE {
                        return Err(VdiError::ChunkTooLarge { size });
                    }
                    self.chunk_port = port;
                    self.chunk_left = size;
                }
                continue;
            }
            let n = (self.chunk_left as usize).min(bytes.len());
            let (take, rest) = bytes.split_at(n);
            // n ≤ chunk_left, a u32.
            self.chunk_left -= n as u32;
            bytes = rest;
            self.feed_port(take, out)?;
        }
        Ok(())
    }

    /// Bytes of the current chunk, for its port's message stream.
    fn feed_port(&mut self, mut bytes: &[u8], out: &mut Vec<GuestOutput>) -> Result<(), VdiError> {
        let server = self.chunk_port == VDP_SERVER_PORT;
        let policy = self.policy;
        let st = &mut self.ports[usize::from(server)];
        while !bytes.is_empty() {
            if !st.in_body() {
                let n = (AGENT_HEADER_SIZE - st.have).min(bytes.len());
                let (take, rest) = bytes.split_at(n);
                st.header[st.have..st.have + n].copy_from_slice(take);
                st.have += n;
                bytes = rest;
                if st.in_body() {
                    start_message(st, server, policy)?;
                    finish_if_done(st, server, policy, out);
                }
                continue;
            }
            let n = (st.left as usize).min(bytes.len());
            let (take, rest) = bytes.split_at(n);
            st.left -= n as u32;
            bytes = rest;
            match st.fate {
                Fate::Drop => {}
                Fate::Caps => st.buf.extend_from_slice(take),
                Fate::Forward => {
                    let mut take = take;
                    while !take.is_empty() {
                        let room = VD_AGENT_MAX_DATA_SIZE - st.buf.len();
                        let m = room.min(take.len());
                        st.buf.extend_from_slice(&take[..m]);
                        take = &take[m..];
                        if st.buf.len() == VD_AGENT_MAX_DATA_SIZE
                            && (st.left > 0 || !take.is_empty())
                        {
                            out.push(GuestOutput::ToClient {
                                first: st.first,
                                data: std::mem::take(&mut st.buf),
                            });
                            st.first = false;
                        }
                    }
                }
            }
            finish_if_done(st, server, policy, out);
        }
        Ok(())
    }
}

/// A message header was read: checks it and decides the message's fate.
fn start_message(st: &mut MessageState, server: bool, policy: AgentPolicy) -> Result<(), VdiError> {
    let protocol = le32(&st.header[0..4]);
    let type_ = le32(&st.header[4..8]);
    let size = le32(&st.header[16..20]);
    if protocol != VD_AGENT_PROTOCOL {
        return Err(VdiError::Protocol { protocol });
    }
    if size > MAX_AGENT_MESSAGE_SIZE {
        return Err(VdiError::MessageTooLarge { type_, size });
    }
    st.type_ = type_;
    st.size = size;
    st.left = size;
    st.buf.clear();
    st.first = true;
    st.fate = if server || !policy.allows(type_) {
        Fate::Drop
    } else if type_ == msg_type::ANNOUNCE_CAPABILITIES {
        if !(8..=MAX_CAPS_MESSAGE_SIZE).contains(&size) || !size.is_multiple_of(4) {
            return Err(VdiError::BadCaps { size });
        }
        Fate::Caps
    } else {
        Fate::Forward
    };
    if st.fate != Fate::Drop {
        st.buf.extend_from_slice(&st.header);
    }
    Ok(())
}

/// Emits what is left of a message whose bytes have all been read, and resets the port.
fn finish_if_done(
    st: &mut MessageState,
    server: bool,
    policy: AgentPolicy,
    out: &mut Vec<GuestOutput>,
) {
    if !st.in_body() || st.left != 0 {
        return;
    }
    match st.fate {
        Fate::Drop if server => out.push(GuestOutput::ForServer {
            type_: st.type_,
            size: st.size,
        }),
        Fate::Drop => {}
        Fate::Caps => {
            // The first capability word follows the header and `request`: bytes 24..28, there
            // since size ≥ 8 was checked.
            let at = AGENT_HEADER_SIZE + 4;
            if let Some(word) = st.buf.get_mut(at..at + 4) {
                let w = policy.adjust_caps(le32(word));
                word.copy_from_slice(&w.to_le_bytes());
            }
            // ≤ 20 + 1024 bytes: one piece.
            out.push(GuestOutput::ToClient {
                first: true,
                data: std::mem::take(&mut st.buf),
            });
        }
        Fate::Forward => out.push(GuestOutput::ToClient {
            first: st.first,
            data: std::mem::take(&mut st.buf),
        }),
    }
    st.have = 0;
    st.first = false;
    st.buf = Vec::new();
}

/// `payload` for the agent's `port`, framed as chunks of at most [`VD_AGENT_MAX_DATA_SIZE`]
/// bytes each (spice-vdagentd refuses larger ones); empty payloads give no chunk.
pub fn frame_chunks(port: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        payload.len() + VDI_CHUNK_HEADER_SIZE * payload.len().div_ceil(VD_AGENT_MAX_DATA_SIZE),
    );
    for piece in payload.chunks(VD_AGENT_MAX_DATA_SIZE) {
        out.extend_from_slice(&port.to_le_bytes());
        // A piece is at most 2048 bytes.
        out.extend_from_slice(&(piece.len() as u32).to_le_bytes());
        out.extend_from_slice(piece);
    }
    out
}

/// A whole agent message (header + data) of `type_`.
pub fn agent_message(type_: u32, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(AGENT_HEADER_SIZE + data.len());
    m.extend_from_slice(&VD_AGENT_PROTOCOL.to_le_bytes());
    m.extend_from_slice(&type_.to_le_bytes());
    m.extend_from_slice(&0u64.to_le_bytes());
    // Callers pass small server-made messages.
    m.extend_from_slice(&(data.len() as u32).to_le_bytes());
    m.extend_from_slice(data);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(port: u32, payload: &[u8]) -> Vec<u8> {
        let mut c = port.to_le_bytes().to_vec();
        c.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        c.extend_from_slice(payload);
        c
    }

    fn feed_all(
        r: &mut GuestReader,
        bytes: &[u8],
        step: usize,
    ) -> Result<Vec<GuestOutput>, VdiError> {
        let mut out = Vec::new();
        for piece in bytes.chunks(step.max(1)) {
            r.feed(piece, &mut out)?;
        }
        Ok(out)
    }

    /// The messages the client would reassemble from the pieces.
    fn reassemble(out: &[GuestOutput]) -> Vec<Vec<u8>> {
        let mut msgs: Vec<Vec<u8>> = Vec::new();
        for o in out {
            if let GuestOutput::ToClient { first, data } = o {
                assert!(data.len() <= VD_AGENT_MAX_DATA_SIZE);
                if *first {
                    assert!(
                        data.len() >= AGENT_HEADER_SIZE,
                        "a first piece holds the header"
                    );
                    msgs.push(data.clone());
                } else {
                    msgs.last_mut()
                        .expect("a continuation follows a first piece")
                        .extend(data);
                }
            }
        }
        msgs
    }

    #[test]
    fn one_big_chunk_becomes_pieces_aligned_to_messages() {
        // spice-vdagentd writes each message as one chunk, however large (a 1 MiB clipboard).
        let big: Vec<u8> = (0..(1 << 20) + 7).map(|i| i as u8).collect();
        let a = agent_message(msg_type::CLIPBOARD, &big);
        let b = agent_message(msg_type::CLIPBOARD_RELEASE, &[0; 4]);
        let mut stream = chunk(VDP_CLIENT_PORT, &a);
        stream.extend(chunk(VDP_CLIENT_PORT, &b));
        for step in [1, 7, 2048, 65536, stream.len()] {
            let mut r = GuestReader::new(AgentPolicy::default());
            let out = feed_all(&mut r, &stream, step).unwrap();
            assert_eq!(reassemble(&out), vec![a.clone(), b.clone()], "step {step}");
            assert!(r.at_boundary());
        }
    }

    #[test]
    fn messages_may_span_chunks_and_ports_interleave() {
        let a = agent_message(msg_type::CLIPBOARD_GRAB, &[1, 0, 0, 0]);
        let s = agent_message(99, &[5; 30]);
        let mut stream = chunk(VDP_CLIENT_PORT, &a[..9]);
        stream.extend(chunk(VDP_SERVER_PORT, &s[..25]));
        stream.extend(chunk(VDP_CLIENT_PORT, &a[9..]));
        stream.extend(chunk(VDP_SERVER_PORT, &s[25..]));
        let mut r = GuestReader::new(AgentPolicy::default());
        let out = feed_all(&mut r, &stream, 3).unwrap();
        assert_eq!(reassemble(&out), vec![a]);
        assert!(out.contains(&GuestOutput::ForServer {
            type_: 99,
            size: 30
        }));
    }

    #[test]
    fn policy_strips_caps_and_drops_clipboard_and_file_transfer() {
        let caps_word: u32 = (1 << cap::CLIPBOARD)
            | (1 << cap::CLIPBOARD_BY_DEMAND)
            | (1 << cap::CLIPBOARD_SELECTION)
            | 1; // MOUSE_STATE stays
        let mut caps = 1u32.to_le_bytes().to_vec();
        caps.extend(caps_word.to_le_bytes());
        let mut stream = chunk(
            VDP_CLIENT_PORT,
            &agent_message(msg_type::ANNOUNCE_CAPABILITIES, &caps),
        );
        stream.extend(chunk(
            VDP_CLIENT_PORT,
            &agent_message(msg_type::CLIPBOARD, &[7; 5000]),
        ));
        stream.extend(chunk(
            VDP_CLIENT_PORT,
            &agent_message(msg_type::FILE_XFER_STATUS, &[0; 12]),
        ));
        stream.extend(chunk(
            VDP_CLIENT_PORT,
            &agent_message(msg_type::MONITORS_CONFIG, &[0; 8]),
        ));
        let policy = AgentPolicy {
            copy_paste: false,
            file_xfer: false,
        };
        let mut r = GuestReader::new(policy);
        let msgs = reassemble(&feed_all(&mut r, &stream, 5).unwrap());
        assert_eq!(msgs.len(), 2, "clipboard and file transfer dropped");
        let word = le32(&msgs[0][24..28]);
        assert_eq!(word, 1 | (1 << cap::FILE_XFER_DISABLED));
        assert_eq!(le32(&msgs[1][4..8]), msg_type::MONITORS_CONFIG);
        // With everything allowed the caps pass unchanged and all four messages pass.
        let mut r = GuestReader::new(AgentPolicy::default());
        let msgs = reassemble(&feed_all(&mut r, &stream, 4096).unwrap());
        assert_eq!(msgs.len(), 4);
        assert_eq!(le32(&msgs[0][24..28]), caps_word);
    }

    #[test]
    fn hostile_streams_are_errors_without_allocation() {
        let mut r = GuestReader::new(AgentPolicy::default());
        let mut out = Vec::new();
        assert_eq!(
            r.feed(&chunk(7, &[]), &mut out),
            Err(VdiError::BadPort { port: 7 })
        );
        let mut r = GuestReader::new(AgentPolicy::default());
        let mut huge = VDP_CLIENT_PORT.to_le_bytes().to_vec();
        huge.extend(u32::MAX.to_le_bytes());
        assert_eq!(
            r.feed(&huge, &mut out),
            Err(VdiError::ChunkTooLarge { size: u32::MAX })
        );
        // A message that claims 4 GiB inside a plausible chunk.
        let mut m = agent_message(msg_type::CLIPBOARD, &[]);
        m[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut r = GuestReader::new(AgentPolicy::default());
        assert_eq!(
            r.feed(&chunk(VDP_CLIENT_PORT, &m), &mut out),
            Err(VdiError::MessageTooLarge {
                type_: msg_type::CLIPBOARD,
                size: u32::MAX
            })
        );
        let mut bad = agent_message(1, &[]);
        bad[0] = 9;
        let mut r = GuestReader::new(AgentPolicy::default());
        assert_eq!(
            r.feed(&chunk(VDP_CLIENT_PORT, &bad), &mut out),
            Err(VdiError::Protocol { protocol: 9 })
        );
        let mut r = GuestReader::new(AgentPolicy::default());
        assert_eq!(
            r.feed(
                &chunk(
                    VDP_CLIENT_PORT,
                    &agent_message(msg_type::ANNOUNCE_CAPABILITIES, &[0; 4096])
                ),
                &mut out
            ),
            Err(VdiError::BadCaps { size: 4096 })
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_flood_and_a_half_message_stay_bounded() {
        // 64 MiB of one message, fed in 64 KiB reads: never more than one piece buffered.
        let mut r = GuestReader::new(AgentPolicy::default());
        let mut header = agent_message(msg_type::CLIPBOARD, &[]);
        header[16..20].copy_from_slice(&(64u32 << 20).to_le_bytes());
        let mut c = VDP_CLIENT_PORT.to_le_bytes().to_vec();
        c.extend(((64u32 << 20) + 20).to_le_bytes());
        c.extend(header);
        let mut out = Vec::new();
        r.feed(&c, &mut out).unwrap();
        let block = vec![0x55u8; 65536];
        let mut pieces = 0usize;
        for _ in 0..1024 {
            out.clear();
            r.feed(&block, &mut out).unwrap();
            pieces += out.len();
            assert!(r.ports[0].buf.capacity() <= 2 * VD_AGENT_MAX_DATA_SIZE);
        }
        // 32768 full pieces of header + data, then the last 20 bytes.
        assert_eq!(pieces, (64usize << 20) / VD_AGENT_MAX_DATA_SIZE + 1);
        // Half a message: nothing comes out, and the reader says so.
        let mut r = GuestReader::new(AgentPolicy::default());
        let m = agent_message(msg_type::CLIPBOARD, &[1; 100]);
        out.clear();
        r.feed(&chunk(VDP_CLIENT_PORT, &m)[..60], &mut out).unwrap();
        assert!(out.is_empty() && !r.at_boundary());
    }

    #[test]
    fn frames_are_at_most_2048_bytes() {
        let payload = vec![3u8; 5000];
        let framed = frame_chunks(VDP_CLIENT_PORT, &payload);
        assert_eq!(framed.len(), 5000 + 3 * VDI_CHUNK_HEADER_SIZE);
        assert_eq!(le32(&framed[4..8]), 2048);
        assert!(frame_chunks(VDP_CLIENT_PORT, &[]).is_empty());
        // The reader reads what the writer framed.
        let m = agent_message(msg_type::CLIPBOARD, &payload);
        let mut r = GuestReader::new(AgentPolicy::default());
        let out = feed_all(&mut r, &frame_chunks(VDP_CLIENT_PORT, &m), 100).unwrap();
        assert_eq!(reassemble(&out), vec![m]);
    }
}
