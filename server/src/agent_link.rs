//! The link to the guest agent: one byte stream (the VMM's virtio-serial port
//! `com.redhat.spice.0`, handed to us as a connected socket) and the one client the agent
//! talks to.
//!
//! How it behaves, after spice-server's `reds.cpp` agent device:
//! - the agent counts as connected once it has sent a well-formed message on the current
//!   stream (spice-vdagentd announces its capabilities as soon as it opens its port; a socket
//!   chardev does not tell us when the guest opens or closes the port). So that an agent that
//!   is already running answers on a new stream (QEMU reconnected), every stream starts with
//!   an ANNOUNCE_CAPABILITIES from us with `request` set and no capabilities, as a client
//!   without any would send: the agent replies with its own (the client's real ones follow
//!   its AGENT_START). Every main channel is then told AGENT_CONNECTED, or
//!   AGENT_CONNECTED_TOKENS with its tokens when it has that cap;
//! - the client that sends AGENT_START is the one the agent talks to (a later AGENT_START from
//!   another session takes it over, and the guest is told VD_AGENT_CLIENT_DISCONNECTED first,
//!   which resets its half-read message and clipboard state). Agent data for it waits for the
//!   tokens it granted; agent data while no client listens is dropped, as spice-server's filter
//!   does;
//! - a client's agent data goes to the guest as chunks of at most 2048 bytes; its token comes
//!   back (AGENT_TOKEN) once the writer has written it to the guest, so what waits for the
//!   guest is bounded by the tokens granted (10 per client) plus a few server messages;
//! - when the client's main channel ends the guest gets VD_AGENT_CLIENT_DISCONNECTED;
//! - anything malformed from the guest (see `vdi::VdiError`) resets the link: the stream is
//!   shut down (QEMU reconnects its chardev socket), clients are told AGENT_DISCONNECTED, and
//!   the display and the sessions go on. A new stream (QEMU reconnecting, or
//!   `saffron device`'s user's QEMU restarting) replaces the old one the same way.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;

use tracing::{debug, info, warn};

use crate::agent::ClientData;
use crate::conn::SendQueue;
use crate::vdi::{
    AgentPolicy, GuestOutput, GuestReader, VDP_CLIENT_PORT, VDP_SERVER_PORT, agent_message,
    frame_chunks, msg_type,
};
use crate::wire::{Writer, msg};

/// Tokens granted to each client for agent data (REDS_AGENT_WINDOW_SIZE).
pub const AGENT_TOKENS: u32 = 10;

/// Bytes the server itself may queue for the guest beyond the clients' token-bounded data
/// (CLIENT_DISCONNECTED messages, 28 bytes each); past it they are dropped.
const SERVER_QUEUE_LIMIT: usize = 64 << 10;

/// Read size from the guest.
const READ_SIZE: usize = 64 << 10;

/// One main channel as the agent link knows it.
struct MainEntry {
    session: u32,
    queue: Arc<SendQueue>,
    /// The client has the AGENT_CONNECTED_TOKENS cap.
    tokens_cap: bool,
    /// Where its inbox gets its tokens back.
    token_return: Arc<AtomicU32>,
    /// When it sent AGENT_START on the current link (a sequence number), and the tokens it
    /// granted last: when the agent's client leaves, the latest other one takes over.
    started: Option<(u64, u32)>,
}

/// Whose token an outgoing piece returns once written.
struct Credit {
    queue: Arc<SendQueue>,
    token_return: Arc<AtomicU32>,
}

struct Outgoing {
    bytes: Vec<u8>,
    credit: Option<Credit>,
    /// Server-made (counted against `SERVER_QUEUE_LIMIT`).
    server: bool,
    /// A VD_AGENT_MOUSE_STATE: replaced by a newer one while it waits.
    mouse: bool,
}

/// Counters for `client_info`-style reporting and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentStats {
    /// Guest streams attached so far.
    pub links: u64,
    /// Links reset because the guest sent something malformed.
    pub resets: u64,
    /// Agent messages pieces sent to clients.
    pub pieces_to_client: u64,
    /// Pieces dropped: no client listening.
    pub pieces_dropped: u64,
    /// Bytes written to the guest.
    pub bytes_to_guest: u64,
    /// Client pointer states sent to the agent (VD_AGENT_MOUSE_STATE, the client mouse mode
    /// through the agent); ones replaced by a newer state before they were written are not
    /// counted twice.
    pub mouse_states: u64,
}

struct State {
    /// Bumped per attached stream; threads of an older one stop.
    generation: u64,
    stream: Option<UnixStream>,
    connected: bool,
    mains: Vec<MainEntry>,
    /// The session the agent talks to, and the tokens its client granted us.
    owner: Option<u32>,
    client_tokens: u32,
    /// Numbers AGENT_STARTs.
    start_seq: u64,
    /// Whether the message the reader is in the middle of goes to the owner (a client that
    /// arrives mid-message must not get its tail).
    forwarding: bool,
    to_guest: VecDeque<Outgoing>,
    server_bytes: usize,
    stats: AgentStats,
}

/// The agent link (one per server).
pub struct AgentHub {
    policy: AgentPolicy,
    state: Mutex<State>,
    /// Signalled on every change a waiting reader or writer may care about.
    wake: Condvar,
}

impl AgentHub {
    pub fn new(policy: AgentPolicy) -> Arc<AgentHub> {
        Arc::new(AgentHub {
            policy,
            state: Mutex::new(State {
                generation: 0,
                stream: None,
                connected: false,
                mains: Vec::new(),
                owner: None,
                client_tokens: 0,
                start_seq: 0,
                forwarding: false,
                to_guest: VecDeque::new(),
                server_bytes: 0,
                stats: AgentStats::default(),
            }),
            wake: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a guest agent is there.
    pub fn connected(&self) -> bool {
        self.lock().connected
    }

    /// The counters.
    pub fn stats(&self) -> AgentStats {
        self.lock().stats
    }

    /// Takes `stream` as the link to the guest agent, replacing (and shutting down) any
    /// previous one. Starts its reader and writer threads.
    pub fn attach(self: &Arc<Self>, stream: UnixStream) -> std::io::Result<()> {
        let reader = stream.try_clone()?;
        let writer = stream.try_clone()?;
        let generation = {
            let mut s = self.lock();
            self.end_link(&mut s, "replaced by a new stream");
            s.generation += 1;
            s.stream = Some(stream);
            s.stats.links += 1;
            // The probe (see the module docs): request = 1, one empty capability word.
            let probe = frame_chunks(
                VDP_CLIENT_PORT,
                &agent_message(msg_type::ANNOUNCE_CAPABILITIES, &[1, 0, 0, 0, 0, 0, 0, 0]),
            );
            s.server_bytes += probe.len();
            s.to_guest.push_back(Outgoing {
                bytes: probe,
                credit: None,
                server: true,
                mouse: false,
            });
            s.generation
        };
        info!(generation, "guest agent stream attached");
        let hub = self.clone();
        thread::Builder::new()
            .name("agent-reader".into())
            .spawn(move || hub.read_loop(generation, reader))?;
        let hub = self.clone();
        thread::Builder::new()
            .name("agent-writer".into())
            .spawn(move || hub.write_loop(generation, writer))?;
        Ok(())
    }

    /// Ends the current stream (if any): shut down, clients told, queue dropped with the
    /// clients' tokens returned.
    fn end_link(&self, s: &mut State, why: &str) {
        if let Some(old) = s.stream.take() {
            let _ = old.shutdown(Shutdown::Both);
            info!(why, "guest agent stream ended");
        }
        s.generation += 1;
        if s.connected {
            s.connected = false;
            for m in &s.mains {
                let mut w = Writer::default();
                w.u32(0);
                let _ = m.queue.push(msg::MAIN_AGENT_DISCONNECTED, w.buf, false);
            }
        }
        s.owner = None;
        s.client_tokens = 0;
        s.forwarding = false;
        for m in &mut s.mains {
            m.started = None;
        }
        s.to_guest.clear();
        s.server_bytes = 0;
        self.wake.notify_all();
    }

    /// A main channel joins. `init` queues its INIT given whether the agent is connected; it
    /// runs under the link's lock, so that no AGENT_CONNECTED or AGENT_DISCONNECTED can come
    /// before the INIT that it changes.
    pub fn add_main(
        &self,
        session: u32,
        queue: Arc<SendQueue>,
        tokens_cap: bool,
        token_return: Arc<AtomicU32>,
        init: impl FnOnce(bool),
    ) {
        let mut s = self.lock();
        init(s.connected);
        s.mains.push(MainEntry {
            session,
            queue,
            tokens_cap,
            token_return,
            started: None,
        });
    }

    /// Drops the current stream (the VMM reconnects, as after a malformed stream).
    pub fn reset(&self) {
        let mut s = self.lock();
        self.end_link(&mut s, "reset on request");
    }

    /// Ends the link for good (server shutdown): its threads return.
    pub fn shutdown(&self) {
        let mut s = self.lock();
        self.end_link(&mut s, "server shutdown");
        s.mains.clear();
    }

    /// A main channel ends; if its client was the agent's, the guest is told.
    pub fn remove_main(&self, session: u32) {
        let mut s = self.lock();
        s.mains.retain(|m| m.session != session);
        if s.owner == Some(session) {
            s.forwarding = false;
            self.client_disconnected(&mut s);
            // The client that started the agent last before it takes over (spice-server has
            // one client at a time; we let several watch, and the agent follows the newest).
            let next = s
                .mains
                .iter()
                .filter_map(|m| m.started.map(|(seq, tokens)| (seq, m.session, tokens)))
                .max();
            s.owner = next.map(|(_, session, _)| session);
            s.client_tokens = next.map_or(0, |(_, _, tokens)| tokens);
            info!(session, next = ?s.owner, "agent client left");
            self.wake.notify_all();
        }
    }

    /// Queues VD_AGENT_CLIENT_DISCONNECTED for the guest (server port).
    fn client_disconnected(&self, s: &mut State) {
        if !s.connected {
            return;
        }
        let bytes = frame_chunks(
            VDP_SERVER_PORT,
            &agent_message(msg_type::CLIENT_DISCONNECTED, &[]),
        );
        if s.server_bytes + bytes.len() > SERVER_QUEUE_LIMIT {
            warn!("guest agent does not read; CLIENT_DISCONNECTED dropped");
            return;
        }
        s.server_bytes += bytes.len();
        s.to_guest.push_back(Outgoing {
            bytes,
            credit: None,
            server: true,
            mouse: false,
        });
        self.wake.notify_all();
    }

    /// AGENT_START from `session`: its client now talks to the agent, which may send it
    /// `tokens` AGENT_DATA messages.
    pub fn client_start(&self, session: u32, tokens: u32) {
        let mut s = self.lock();
        if !s.connected {
            debug!(session, "AGENT_START without an agent: ignored");
            return;
        }
        if let Some(old) = s.owner
            && old != session
        {
            info!(old, session, "agent taken over by another client");
            self.client_disconnected(&mut s);
        }
        s.start_seq += 1;
        let seq = s.start_seq;
        if let Some(m) = s.mains.iter_mut().find(|m| m.session == session) {
            m.started = Some((seq, tokens));
        }
        s.owner = Some(session);
        s.client_tokens = tokens;
        self.wake.notify_all();
    }

    /// AGENT_TOKEN from `session`.
    pub fn client_tokens(&self, session: u32, tokens: u32) {
        let mut s = self.lock();
        if let Some(m) = s.mains.iter_mut().find(|m| m.session == session)
            && let Some((_, t)) = &mut m.started
        {
            *t = t.saturating_add(tokens);
        }
        if s.owner == Some(session) {
            s.client_tokens = s.client_tokens.saturating_add(tokens);
            self.wake.notify_all();
        }
    }

    /// The client's pointer for the agent (spice-server's agent mouse: the client mouse mode
    /// goes through the agent when one is connected): a VD_AGENT_MOUSE_STATE on the server
    /// port, `buttons` in the agent's bits. A state still waiting to be written is replaced,
    /// so a guest that reads slowly gets the newest position, not a backlog. False when no
    /// agent is connected (the caller then uses the VMM's tablet).
    pub fn mouse_state(&self, x: u32, y: u32, buttons: u32, display_id: u8) -> bool {
        let mut s = self.lock();
        if !s.connected {
            return false;
        }
        let mut body = Vec::with_capacity(13);
        body.extend_from_slice(&x.to_le_bytes());
        body.extend_from_slice(&y.to_le_bytes());
        body.extend_from_slice(&buttons.to_le_bytes());
        body.push(display_id);
        let bytes = frame_chunks(
            VDP_SERVER_PORT,
            &agent_message(msg_type::MOUSE_STATE, &body),
        );
        if let Some(waiting) = s.to_guest.iter_mut().find(|o| o.mouse) {
            waiting.bytes = bytes;
            return true;
        }
        if s.server_bytes + bytes.len() > SERVER_QUEUE_LIMIT {
            debug!("guest agent does not read; mouse state dropped");
            return true;
        }
        s.server_bytes += bytes.len();
        s.stats.mouse_states += 1;
        s.to_guest.push_back(Outgoing {
            bytes,
            credit: None,
            server: true,
            mouse: true,
        });
        self.wake.notify_all();
        true
    }

    /// Agent data from `session`'s client, checked by its inbox. Returns false when it was
    /// dropped (no agent, or the client is not the agent's): its token is then not returned,
    /// as spice-server does.
    pub fn from_client(&self, session: u32, data: ClientData) -> bool {
        let mut s = self.lock();
        if !s.connected || s.owner != Some(session) {
            return false;
        }
        let Some(main) = s.mains.iter().find(|m| m.session == session) else {
            return false;
        };
        let credit = Credit {
            queue: main.queue.clone(),
            token_return: main.token_return.clone(),
        };
        if data.forward.is_empty() {
            // Nothing for the guest (dropped by the policy): the token is free at once.
            return_token(&credit);
            return true;
        }
        let last = data.forward.len() - 1;
        let mut credit = Some(credit);
        for (i, segment) in data.forward.into_iter().enumerate() {
            s.to_guest.push_back(Outgoing {
                bytes: frame_chunks(VDP_CLIENT_PORT, &segment),
                credit: if i == last { credit.take() } else { None },
                server: false,
                mouse: false,
            });
        }
        self.wake.notify_all();
        true
    }

    fn read_loop(self: Arc<Self>, generation: u64, mut stream: UnixStream) {
        let mut reader = GuestReader::new(self.policy);
        let mut buf = vec![0u8; READ_SIZE];
        let mut out = Vec::new();
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!(%e, "guest agent read failed");
                    break;
                }
            };
            out.clear();
            let fed = reader.feed(buf.get(..n).unwrap_or(&[]), &mut out);
            for o in out.drain(..) {
                if !self.deliver(generation, o) {
                    return;
                }
            }
            if let Err(e) = fed {
                warn!(%e, "guest agent sent a malformed stream: resetting the agent link");
                let mut s = self.lock();
                if s.generation == generation {
                    s.stats.resets += 1;
                    self.end_link(&mut s, "malformed stream");
                }
                return;
            }
        }
        let mut s = self.lock();
        if s.generation == generation {
            self.end_link(&mut s, "the VMM closed it");
        }
    }

    /// Passes one output of the guest's stream on; false once this stream is no longer the
    /// current one.
    fn deliver(&self, generation: u64, o: GuestOutput) -> bool {
        let mut s = self.lock();
        if s.generation != generation {
            return false;
        }
        let (first, data) = match o {
            GuestOutput::ForServer { type_, size } => {
                debug!(type_, size, "agent message for the server dropped");
                return true;
            }
            GuestOutput::ToClient { first, data } => (first, data),
        };
        if !s.connected {
            s.connected = true;
            info!("guest agent connected");
            for m in &s.mains {
                m.token_return.fetch_add(AGENT_TOKENS, Ordering::AcqRel);
                if m.tokens_cap {
                    let mut w = Writer::default();
                    w.u32(AGENT_TOKENS);
                    let _ = m.queue.push(msg::MAIN_AGENT_CONNECTED_TOKENS, w.buf, false);
                } else {
                    let _ = m.queue.push(msg::MAIN_AGENT_CONNECTED, Vec::new(), false);
                }
            }
        }
        if first {
            s.forwarding = s.owner.is_some();
        }
        if !s.forwarding {
            s.stats.pieces_dropped += 1;
            return true;
        }
        // Wait for the client's tokens (it grants ~0 in practice; a client that stops
        // granting stops the agent, not the server).
        loop {
            if s.generation != generation {
                return false;
            }
            if s.owner.is_none() || !s.forwarding {
                s.stats.pieces_dropped += 1;
                return true;
            }
            if s.client_tokens > 0 {
                break;
            }
            s = self.wake.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        let owner = s.owner;
        let Some(main) = s.mains.iter().find(|m| Some(m.session) == owner) else {
            s.stats.pieces_dropped += 1;
            return true;
        };
        let queue = main.queue.clone();
        s.client_tokens -= 1;
        s.stats.pieces_to_client += 1;
        drop(s);
        let _ = queue.push(msg::MAIN_AGENT_DATA, data, false);
        true
    }

    fn write_loop(self: Arc<Self>, generation: u64, mut stream: UnixStream) {
        loop {
            let next = {
                let mut s = self.lock();
                loop {
                    if s.generation != generation {
                        return;
                    }
                    if let Some(o) = s.to_guest.pop_front() {
                        if o.server {
                            s.server_bytes = s.server_bytes.saturating_sub(o.bytes.len());
                        }
                        break o;
                    }
                    s = self.wake.wait(s).unwrap_or_else(|e| e.into_inner());
                }
            };
            if let Err(e) = stream.write_all(&next.bytes) {
                debug!(%e, "guest agent write failed");
                let mut s = self.lock();
                if s.generation == generation {
                    self.end_link(&mut s, "write failed");
                }
                return;
            }
            self.lock().stats.bytes_to_guest += next.bytes.len() as u64;
            if let Some(c) = &next.credit {
                return_token(c);
            }
        }
    }
}

/// Gives a client one agent token back.
fn return_token(c: &Credit) {
    c.token_return.fetch_add(1, Ordering::AcqRel);
    let mut w = Writer::default();
    w.u32(1);
    let _ = c.queue.push(msg::MAIN_AGENT_TOKEN, w.buf, false);
}
