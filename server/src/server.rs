//! The listener and the link stage of every connection.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use thiserror::Error;
use tracing::{debug, info, info_span, warn};

use crate::config::ServerConfig;
use crate::link::{self, LinkRequest};
use crate::session::{MOUSE_MODE_CLIENT, MOUSE_MODE_SERVER, Sessions};
use crate::source::{CursorSource, InputSink, NoCursor};
use crate::ticket::{KeyPool, MAX_PASSWORD_LEN, Ticket};
use crate::tls::{self, Stream, TlsError};
use crate::wire::{
    AUTH_MECHANISM_SPICE, LINK_HEADER_SIZE, LinkErr, TICKET_BYTES, channel, common_cap, has_cap,
};
use crate::{capture, cursor, display, inputs, main_channel, playback};
use saffron_display::DisplaySource;

/// Most simultaneous connections (linking or linked); more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// A client must finish the link stage within this time (slowloris).
pub(crate) const LINK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`ServerHandle::shutdown`] waits for the connections it closed to end (their
/// sockets are shut down, so they end at once unless a thread is busy encoding).
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// Errors starting the server.
#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(
        "refusing to listen on non-loopback {0} with ticketing disabled (set `insecure` to override)"
    )]
    InsecureListen(SocketAddr),
    #[error("password longer than {MAX_PASSWORD_LEN} bytes (Spice clients cannot send it)")]
    PasswordTooLong,
    #[error("cannot start a thread: {0}")]
    Spawn(io::Error),
    #[error("TLS port: {0}")]
    Tls(#[from] TlsError),
}

/// What every connection thread shares.
pub(crate) struct Shared {
    pub config: ServerConfig,
    pub source: Arc<dyn DisplaySource>,
    pub input: Arc<dyn InputSink>,
    pub cursor: Arc<dyn CursorSource>,
    pub sessions: Sessions,
    pub keys: KeyPool,
    pub ticket: RwLock<Option<Ticket>>,
    pub connections: AtomicUsize,
    pub stop: AtomicBool,
    pub started: Instant,
    /// The image compression new display channels use (starts as the configured one; the
    /// VMM may change it while running, as spice-server's `set_image_compression`).
    pub image_compression: RwLock<crate::image::Compression>,
    /// Every display client's images, by format.
    pub image_totals: Arc<crate::image::ImageTotals>,
    /// Every display client's streams, summed.
    pub stream_totals: Arc<crate::stream::StreamTotals>,
    /// The link to the guest agent.
    pub agent: Arc<crate::agent_link::AgentHub>,
    /// The playback hub (used only when `config.sound` is set).
    pub playback: Arc<playback::Playback>,
    /// The capture hub (used only when `config.sound` is set).
    pub capture: Arc<capture::Capture>,
}

impl Shared {
    /// Mouse modes we can offer: CLIENT only with an absolute pointer in the guest.
    pub fn supported_mouse_modes(&self) -> u16 {
        // The client mode needs an absolute pointer in the guest: the VMM's tablet, or the
        // guest agent's own (spice-server's agent mouse).
        if self.input.has_absolute_pointer() || (self.config.agent_mouse && self.agent.connected())
        {
            MOUSE_MODE_SERVER | MOUSE_MODE_CLIENT
        } else {
            MOUSE_MODE_SERVER
        }
    }

    /// Milliseconds since start, as the Spice multimedia clock (wraps).
    pub fn mm_time(&self) -> u32 {
        self.started.elapsed().as_millis() as u32
    }
}

/// A running server. Dropping it stops the listener and disconnects every client.
pub struct ServerHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    accept: Vec<thread::JoinHandle<()>>,
}

impl ServerHandle {
    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections open now (linking or linked, every channel counts).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Acquire)
    }

    /// The TLS port's address actually bound, when `ServerConfig::tls` is set.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Replaces the password (`lifetime` None = no expiry); existing sessions stay.
    pub fn set_ticket(
        &self,
        password: &str,
        lifetime: Option<Duration>,
    ) -> Result<(), ServerError> {
        if password.len() > MAX_PASSWORD_LEN {
            return Err(ServerError::PasswordTooLong);
        }
        *self
            .shared
            .ticket
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(Ticket::new(password, lifetime));
        Ok(())
    }

    /// The connected clients: per session its channels, their byte counts and the main
    /// channel's last ping round trip (the control socket's `client_info`).
    pub fn clients(&self) -> Vec<crate::session::ClientInfo> {
        self.shared.sessions.snapshot()
    }

    /// Sets the image compression of display channels linked from now on (those already
    /// linked keep theirs: a client's GLZ dictionary must not change codec mid-stream).
    pub fn set_image_compression(&self, compression: crate::image::Compression) {
        *self
            .shared
            .image_compression
            .write()
            .unwrap_or_else(|e| e.into_inner()) = compression;
        info!(%compression, "image compression for new display channels");
    }

    /// The playback hub: the VMM's sound device writes the guest's playback into it.
    pub fn playback(&self) -> Arc<playback::Playback> {
        self.shared.playback.clone()
    }

    /// The capture hub: the VMM's sound device reads the guest's capture from it.
    pub fn capture(&self) -> Arc<capture::Capture> {
        self.shared.capture.clone()
    }

    /// The images every display client was sent so far, by format.
    pub fn image_totals(&self) -> crate::image::EncodeStats {
        self.shared.image_totals.snapshot()
    }

    /// What every display client's video streams sent so far.
    pub fn stream_totals(&self) -> crate::stream::StreamStats {
        self.shared.stream_totals.snapshot()
    }

    /// Takes `stream` (the VMM's virtio-serial port `com.redhat.spice.0`, connected) as the
    /// link to the guest agent, replacing any previous one (QEMU reconnecting its chardev).
    pub fn attach_agent(&self, stream: std::os::unix::net::UnixStream) -> io::Result<()> {
        self.shared.agent.attach(stream)
    }

    /// Drops the guest agent's stream, as after a malformed one: clients are told
    /// AGENT_DISCONNECTED and QEMU's reconnecting chardev makes a new one.
    pub fn reset_agent_link(&self) {
        self.shared.agent.reset();
    }

    /// Whether a guest agent is connected (it has spoken on the current link).
    pub fn agent_connected(&self) -> bool {
        self.shared.agent.connected()
    }

    /// The agent link's counters.
    pub fn agent_stats(&self) -> crate::agent_link::AgentStats {
        self.shared.agent.stats()
    }

    /// The image compression new display channels get.
    pub fn image_compression(&self) -> crate::image::Compression {
        *self
            .shared
            .image_compression
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Stops accepting and disconnects all clients, waiting a little (at most
    /// [`SHUTDOWN_WAIT`]) for their connections to end, so that each session's "session ended"
    /// line is logged before a power-off ends the process.
    pub fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.sessions.close_all();
        self.shared.agent.shutdown();
        for t in self.accept.drain(..) {
            let _ = t.join();
        }
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        while self.shared.connections.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds a non-blocking listener (accept is polled, so shutdown needs no wake-up connection).
fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServerError> {
    let bind_err = |source| ServerError::Bind { addr, source };
    let listener = TcpListener::bind(addr).map_err(bind_err)?;
    let bound = listener.local_addr().map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    Ok((listener, bound))
}

/// Starts the Spice server for a display without a pointer (cursor clients see "no cursor"):
/// [`start_with_cursor`] with [`NoCursor`].
pub fn start(
    config: ServerConfig,
    source: Arc<dyn DisplaySource>,
    input: Arc<dyn InputSink>,
) -> Result<ServerHandle, ServerError> {
    start_with_cursor(config, source, input, Arc::new(NoCursor))
}

/// Starts the Spice server: binds the plain port and, when configured, the TLS port (after
/// loading its certificate and key), then accepts on background threads.
pub fn start_with_cursor(
    config: ServerConfig,
    source: Arc<dyn DisplaySource>,
    input: Arc<dyn InputSink>,
    cursor: Arc<dyn CursorSource>,
) -> Result<ServerHandle, ServerError> {
    if config.disable_ticketing && !config.addr.ip().is_loopback() && !config.insecure {
        return Err(ServerError::InsecureListen(config.addr));
    }
    if config
        .password
        .as_ref()
        .is_some_and(|p| p.len() > MAX_PASSWORD_LEN)
    {
        return Err(ServerError::PasswordTooLong);
    }
    let tls = match &config.tls {
        Some(t) => {
            let server_config = tls::server_config(&t.cert_chain, &t.key)?;
            let (listener, bound) = bind(t.addr)?;
            Some((listener, bound, server_config))
        }
        None => None,
    };
    let (listener, addr) = bind(config.addr)?;
    let ticket = config
        .password
        .as_deref()
        .map(|p| Ticket::new(p, config.password_lifetime));
    let image_compression = config.image_compression;
    let agent_policy = config.agent;
    let playback_compression = config.playback_compression;
    let started = Instant::now();
    let shared = Arc::new(Shared {
        config,
        source,
        input,
        cursor,
        sessions: Sessions::default(),
        keys: KeyPool::start(),
        ticket: RwLock::new(ticket),
        connections: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        started,
        image_compression: RwLock::new(image_compression),
        image_totals: Arc::default(),
        stream_totals: Arc::default(),
        agent: crate::agent_link::AgentHub::new(agent_policy),
        playback: Arc::new(playback::Playback::new(started, playback_compression)),
        capture: Arc::default(),
    });
    // Built first so that an error below stops the threads already started.
    let mut handle = ServerHandle {
        shared: shared.clone(),
        addr,
        tls_addr: tls.as_ref().map(|t| t.1),
        accept: Vec::new(),
    };
    let s = shared.clone();
    handle.accept.push(
        thread::Builder::new()
            .name("spice-accept".into())
            .spawn(move || accept_loop(listener, None, s))
            .map_err(ServerError::Spawn)?,
    );
    info!(%addr, "Spice server listening");
    if let Some((listener, tls_addr, server_config)) = tls {
        handle.accept.push(
            thread::Builder::new()
                .name("spice-accept-tls".into())
                .spawn(move || accept_loop(listener, Some(server_config), shared))
                .map_err(ServerError::Spawn)?,
        );
        info!(%tls_addr, "Spice server listening for TLS");
    }
    Ok(handle)
}

/// Accepts plain connections, or TLS ones when `tls` is set; each runs on its own thread.
fn accept_loop(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if shared.connections.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    shared.connections.fetch_sub(1, Ordering::AcqRel);
                    warn!(%peer, "too many connections; closing");
                    continue;
                }
                let s = shared.clone();
                let tls = tls.clone();
                let spawned = thread::Builder::new()
                    .name("spice-conn".into())
                    .spawn(move || {
                        let span = info_span!("spice", %peer, tls = tls.is_some());
                        let _e = span.enter();
                        if let Err(e) = handle_connection(stream, tls, &s) {
                            debug!(%e, "connection ended");
                        }
                        s.connections.fetch_sub(1, Ordering::AcqRel);
                    });
                if let Err(e) = spawned {
                    shared.connections.fetch_sub(1, Ordering::AcqRel);
                    warn!(%e, "cannot start a connection thread");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(100))
            }
            Err(e) => {
                warn!(%e, "accept failed");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Why a connection ended during the link stage.
#[derive(Debug, Error)]
pub(crate) enum LinkError {
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    #[error("link refused: {0:?}")]
    Refused(LinkErr),
    #[error("ticket key: {0}")]
    Key(#[from] crate::ticket::TicketError),
    #[error("channel: {0}")]
    Channel(#[from] crate::conn::ConnError),
}

/// Capability words we advertise per channel type.
fn our_channel_caps(channel_type: u8) -> Vec<u32> {
    match channel_type {
        // MONITORS_CONFIG (1): we send MONITORS_CONFIG to clients that have the cap too.
        channel::DISPLAY => vec![1 << 1],
        // VOLUME (1) and OPUS (3): as spice-server with Opus built in.
        channel::PLAYBACK => vec![(1 << 1) | (1 << 3)],
        // VOLUME (1) and OPUS (2): spice-gtk records in Opus when the server has the cap.
        channel::RECORD => vec![(1 << 1) | (1 << 2)],
        _ => vec![],
    }
}

fn send_result(stream: &mut Stream, err: LinkErr) -> io::Result<()> {
    stream.write_all(&(err as u32).to_le_bytes())
}

fn handle_connection(
    tcp: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: &Arc<Shared>,
) -> Result<(), LinkError> {
    tcp.set_nonblocking(false)?;
    tcp.set_nodelay(true)?;
    // The TLS handshake and the link stage share the link deadline per read/write.
    tcp.set_read_timeout(Some(LINK_TIMEOUT))?;
    tcp.set_write_timeout(Some(LINK_TIMEOUT))?;
    let mut stream = match tls {
        Some(config) => tls::accept(tcp, config)?,
        None => Stream::Plain(tcp),
    };

    // The first bytes tell a Spice client (`REDQ`) from a browser (an HTTP request: a file of
    // the web client, or a WebSocket the Spice link then runs over).
    let mut header = [0u8; LINK_HEADER_SIZE];
    stream.read_exact(&mut header[..4])?;
    if crate::http::is_request_start(&header[..4]) {
        match crate::web::serve(stream, &header[..4], shared)? {
            crate::web::Outcome::Upgraded(ws) => stream = ws,
            crate::web::Outcome::Served => return Ok(()),
        }
        stream.read_exact(&mut header[..4])?;
    }
    if let Some(dir) = &shared.config.record_dir {
        match crate::record::ClientLog::create(dir) {
            Ok(log) => {
                log.append(&header[..4]);
                stream = Stream::Recorded(Box::new(stream), log);
            }
            Err(e) => warn!(dir = %dir.display(), "cannot record client messages: {e}"),
        }
    }
    stream.read_exact(&mut header[4..])?;
    let size = match link::parse_header(&header) {
        Ok(size) => size,
        Err(e) => {
            stream.write_all(&link::error_reply(e))?;
            return Err(LinkError::Refused(e));
        }
    };
    // `size` ≤ MAX_LINK_SIZE (4 KiB) here.
    let mut mess = vec![0u8; size as usize];
    stream.read_exact(&mut mess)?;
    let req = match link::parse_mess(&mess) {
        Ok(req) => req,
        Err(e) => {
            stream.write_all(&link::error_reply(e))?;
            return Err(LinkError::Refused(e));
        }
    };
    debug!(
        channel_type = req.channel_type,
        channel_id = req.channel_id,
        "link request"
    );
    if !stream.is_tls() && shared.config.secure_channels.contains(&req.channel_type) {
        // As spice-server: the client retries this channel on the TLS port.
        stream.write_all(&link::error_reply(LinkErr::NeedSecured))?;
        return Err(LinkError::Refused(LinkErr::NeedSecured));
    }

    let key = shared.keys.take()?;
    let common = (1 << common_cap::AUTH_SELECTION)
        | (1 << common_cap::AUTH_SPICE)
        | (1 << common_cap::MINI_HEADER);
    stream.write_all(&link::reply(
        LinkErr::Ok,
        key.public_der(),
        &[common],
        &our_channel_caps(req.channel_type),
    ))?;

    if has_cap(&req.common_caps, common_cap::AUTH_SELECTION) {
        let mut mech = [0u8; 4];
        stream.read_exact(&mut mech)?;
        if u32::from_le_bytes(mech) != AUTH_MECHANISM_SPICE {
            send_result(&mut stream, LinkErr::InvalidData)?;
            return Err(LinkError::Refused(LinkErr::InvalidData));
        }
    }
    let mut encrypted = [0u8; TICKET_BYTES];
    stream.read_exact(&mut encrypted)?;
    // A ticket that does not decrypt is refused even with ticketing off (as spice-server).
    let authorised = match key.decrypt(&encrypted) {
        Err(_) => false,
        Ok(_) if shared.config.disable_ticketing => true,
        Ok(password) => shared
            .ticket
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|t| t.accepts(&password, Instant::now())),
    };
    if !authorised {
        warn!("ticket refused");
        send_result(&mut stream, LinkErr::PermissionDenied)?;
        return Err(LinkError::Refused(LinkErr::PermissionDenied));
    }
    dispatch(stream, shared, req)
}

fn dispatch(mut stream: Stream, shared: &Arc<Shared>, req: LinkRequest) -> Result<(), LinkError> {
    let mini = has_cap(&req.common_caps, common_cap::MINI_HEADER);
    if req.channel_type == channel::MAIN {
        if req.connection_id != 0 {
            // A migration target link; we do not support migration.
            send_result(&mut stream, LinkErr::BadConnectionId)?;
            return Err(LinkError::Refused(LinkErr::BadConnectionId));
        }
        let default_mode = if shared.supported_mouse_modes() & MOUSE_MODE_CLIENT != 0 {
            MOUSE_MODE_CLIENT
        } else {
            MOUSE_MODE_SERVER
        };
        let peer = stream.tcp().peer_addr().ok();
        let session = shared.sessions.create(default_mode, peer);
        session.attach(stream.tcp());
        let registration = session.register_channel(
            channel::MAIN,
            req.channel_id,
            channel_link(&stream, &req),
            peer,
        );
        let traffic = registration.traffic().clone();
        let result = (|| {
            send_result(&mut stream, LinkErr::Ok)?;
            after_link(&stream, shared.config.write_timeout)?;
            let span = info_span!("main", session = session.id);
            let _e = span.enter();
            info!("client connected");
            main_channel::run(stream, shared, &session, &req, mini, traffic)
                .map_err(LinkError::from)
        })();
        drop(registration);
        shared.sessions.remove(session.id);
        info!(session = session.id, "session ended");
        return result;
    }
    let Some(session) = shared.sessions.get(req.connection_id) else {
        send_result(&mut stream, LinkErr::BadConnectionId)?;
        return Err(LinkError::Refused(LinkErr::BadConnectionId));
    };
    let known = (matches!(
        req.channel_type,
        channel::DISPLAY | channel::CURSOR | channel::INPUTS
    ) || (matches!(req.channel_type, channel::PLAYBACK | channel::RECORD)
        && shared.config.sound))
        && req.channel_id == 0;
    if !known {
        send_result(&mut stream, LinkErr::ChannelNotAvailable)?;
        return Err(LinkError::Refused(LinkErr::ChannelNotAvailable));
    }
    session.attach(stream.tcp());
    send_result(&mut stream, LinkErr::Ok)?;
    after_link(&stream, shared.config.write_timeout)?;
    let registration = session.register_channel(
        req.channel_type,
        req.channel_id,
        channel_link(&stream, &req),
        stream.tcp().peer_addr().ok(),
    );
    let traffic = registration.traffic().clone();
    let result = match req.channel_type {
        channel::DISPLAY => {
            let span = info_span!("display", session = session.id);
            let _e = span.enter();
            display::run(
                stream,
                shared,
                &session,
                &req,
                mini,
                traffic,
                registration.channel(),
            )
        }
        channel::CURSOR => {
            let span = info_span!("cursor", session = session.id);
            let _e = span.enter();
            cursor::run(stream, shared, &session, mini, traffic, req.is_html5())
        }
        channel::PLAYBACK => {
            let span = info_span!("playback", session = session.id);
            let _e = span.enter();
            playback::run(stream, shared, &session, &req, mini, traffic)
        }
        channel::RECORD => {
            let span = info_span!("record", session = session.id);
            let _e = span.enter();
            capture::run(stream, shared, &session, &req, mini, traffic)
        }
        _ => {
            let span = info_span!("inputs", session = session.id);
            let _e = span.enter();
            inputs::run(stream, shared, &session, mini, traffic, req.is_html5())
        }
    };
    drop(registration);
    result.map_err(LinkError::from)
}

/// How a channel's client reached us, for `client_info`.
fn channel_link(stream: &Stream, req: &LinkRequest) -> crate::session::ChannelLink {
    let link = crate::session::ChannelLink {
        tls: stream.is_tls(),
        websocket: stream.is_websocket(),
        html5: req.is_html5(),
    };
    if link.html5 {
        info!(
            channel_type = req.channel_type,
            "spice-html5 client (by its caps): sent only what it draws"
        );
    }
    link
}

/// Switches a linked socket to data-stage timeouts: no read timeout (idle clients are fine),
/// `write_timeout` so that a client that stopped reading is dropped.
fn after_link(stream: &Stream, write_timeout: Duration) -> io::Result<()> {
    let stream = stream.tcp();
    stream.set_read_timeout(None)?;
    // A zero timeout means "none" to the socket API: keep at least a millisecond.
    stream.set_write_timeout(Some(write_timeout.max(Duration::from_millis(1))))
}

/// Fuzzing entry point, not API: runs the data-stage dispatch of one channel (`channel_type`
/// 1 main, 2 display, 3 inputs, 4 cursor, 5 playback, 6 record) over `input` as a client's byte stream, without a
/// socket: the same `read_message` limit, `handle_common` and channel handler as the
/// channel's `run` loop. Returns how many messages were handled before the stream ended.
/// The first call starts one loopback server (port 0) whose shared state every call reuses.
#[doc(hidden)]
pub fn fuzz_client_messages(
    channel_type: u8,
    mini: bool,
    input: &[u8],
) -> Result<usize, crate::conn::ConnError> {
    use crate::conn::{Common, ConnError, SendQueue, handle_common, read_message};
    static SERVER: std::sync::OnceLock<Option<ServerHandle>> = std::sync::OnceLock::new();
    let Some(server) = SERVER.get_or_init(|| {
        let config = ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
        start(
            config,
            saffron_display::FrameSource::new(),
            Arc::new(crate::source::NullInput),
        )
        .ok()
    }) else {
        return Err(ConnError::Closed);
    };
    let shared = &server.shared;
    let session = shared.sessions.create(MOUSE_MODE_SERVER, None);
    let queue = SendQueue::new(shared.config.queue_limit);
    let mut agent =
        crate::agent::AgentInbox::with_policy(main_channel::AGENT_TOKENS, shared.config.agent);
    let max = match channel_type {
        channel::MAIN => main_channel::MAX_MAIN_MESSAGE,
        channel::DISPLAY => display::MAX_DISPLAY_MESSAGE,
        channel::INPUTS => inputs::MAX_INPUTS_MESSAGE,
        channel::PLAYBACK => playback::MAX_PLAYBACK_MESSAGE,
        channel::RECORD => capture::MAX_RECORD_MESSAGE,
        _ => cursor::MAX_CURSOR_MESSAGE,
    };
    // A capturing hub of its own, so record DATA reaches the bounded buffer.
    let record = capture::Capture::default();
    record.start();
    let mut record_mode = capture::RecordMode::Raw;
    let mut stream = input;
    let mut handled = 0;
    let result = loop {
        let (ty, body) = match read_message(&mut stream, mini, max) {
            Ok(m) => m,
            Err(ConnError::Closed) => break Ok(handled),
            Err(e) => break Err(e),
        };
        handled += 1;
        match handle_common(&queue, ty, &body) {
            Ok(Common::NotCommon) => {}
            Ok(Common::Disconnecting) => break Ok(handled),
            Ok(_) => continue,
            Err(e) => break Err(e),
        }
        let r = match channel_type {
            channel::MAIN => main_channel::handle(shared, &session, &queue, &mut agent, ty, &body),
            channel::INPUTS => {
                let mode = session
                    .mouse_mode
                    .load(std::sync::atomic::Ordering::Acquire);
                inputs::handle(shared.input.as_ref(), mode, ty, &body).map(|_| ())
            }
            channel::RECORD => capture::handle(&record, &mut record_mode, ty, &body),
            // Display, cursor and playback parse nothing beyond the common messages.
            _ => Ok(()),
        };
        if let Err(e) = r {
            break Err(e);
        }
    };
    queue.close();
    shared.sessions.remove(session.id);
    result
}
