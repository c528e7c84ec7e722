//! A linked channel connection: the bounded per-client send queue drained by a writer thread,
//! Spice ACK flow control, and bounded reads of client messages.
//!
//! Each client connection has its own writer thread, so a client that reads slowly only ever
//! blocks itself. Its queue is bounded in bytes: when an update would exceed the bound, the
//! queued *droppable* messages (display updates) are thrown away and the producer is told, so
//! it can resend the whole surface later instead of buffering without limit. Messages that
//! cannot be dropped (replies, pings, surface and ack control) are bounded separately: a
//! client that lets more than [`control_limit`] of them pile up has stopped reading while it
//! keeps sending requests, and its connection is closed.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;

use thiserror::Error;

use crate::tls::Stream;
use crate::wire::{FULL_HEADER_SIZE, MINI_HEADER_SIZE, Reader, Writer, frame_message, msg};

/// Connection errors after the link stage.
#[derive(Debug, Error)]
pub enum ConnError {
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    #[error("message type {ty} of {size} bytes exceeds this channel's limit of {max}")]
    TooLarge { ty: u16, size: u32, max: u32 },
    #[error("malformed message type {ty}: {source}")]
    Malformed {
        ty: u16,
        source: crate::wire::WireError,
    },
    #[error("the peer disconnected")]
    Closed,
    #[error("agent data: {0}")]
    Agent(#[from] crate::agent::AgentError),
}

/// The queue would exceed its byte bound; queued droppable messages were discarded.
#[derive(Debug)]
pub struct Overflow;

struct Queued {
    ty: u16,
    body: Vec<u8>,
    droppable: bool,
}

struct QueueState {
    msgs: VecDeque<Queued>,
    bytes: usize,
    /// What the queued non-droppable messages cost (bodies plus per-message overhead).
    control_bytes: usize,
    limit: usize,
    closed: bool,
    /// ACK flow control (spec §2.2); window 0 = off.
    ack_window: u32,
    ack_generation: u32,
    client_generation: u32,
    unacked: u32,
    /// Wire sizes of the messages sent and not yet ACKed (at most two windows and one: the
    /// writer stops there), and when the last ACK came: what each ACK says the client read.
    unacked_sizes: VecDeque<usize>,
    last_ack: Option<std::time::Instant>,
}

/// The outgoing half of a channel connection.
pub struct SendQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
    /// Signalled when the writer takes a message (or the queue closes): producers that wait
    /// for room (the display encoder) wake.
    drained: Condvar,
    /// The connection's socket, shut down when the queue gives up on the client (its writer
    /// may be blocked in a write, its reader in a read).
    socket: Mutex<Option<std::net::TcpStream>>,
    /// Told of each ACK's window (a display channel's link estimate).
    ack_observer: Mutex<Option<Arc<dyn AckObserver>>>,
}

/// Hears what each ACK of the channel's message windows says: `bytes` (headers included)
/// read by the client in `interval` since the previous ACK.
pub trait AckObserver: Send + Sync {
    fn acked(&self, bytes: u64, interval: std::time::Duration, now: std::time::Instant);
}

/// Default byte bound of a client's queue: eight 1024 × 512 32-bpp updates, or two full
/// 1920 × 1080 frames. The display channel raises its own to two full frames of the current
/// primary (at most 2 × 256 MiB for the largest surface, `MAX_SURFACE_BYTES`).
pub const DEFAULT_QUEUE_LIMIT: usize = 16 << 20;

/// The smallest bound on a queue's non-droppable messages. Those are small (acks, pings,
/// replies, surface control: tens of bytes; a cursor shape at most ~1 MiB), so megabytes of
/// them unsent means the client stopped reading while still sending requests that each get
/// a reply; without a bound, such a client grows the queue until the write timeout.
pub const MIN_CONTROL_LIMIT: usize = 4 << 20;

/// Counted per queued message on top of its body (the header, the allocation): a flood of
/// empty replies must reach the bound as surely as a few large ones.
const MESSAGE_OVERHEAD: usize = 64;

/// The bound on a queue's non-droppable bytes for a queue bounded at `limit`.
pub fn control_limit(limit: usize) -> usize {
    limit.max(MIN_CONTROL_LIMIT)
}

impl SendQueue {
    pub fn new(limit: usize) -> Arc<SendQueue> {
        Arc::new(SendQueue {
            state: Mutex::new(QueueState {
                msgs: VecDeque::new(),
                bytes: 0,
                control_bytes: 0,
                limit,
                closed: false,
                ack_window: 0,
                ack_generation: 0,
                client_generation: 0,
                unacked: 0,
                unacked_sizes: VecDeque::new(),
                last_ack: None,
            }),
            ready: Condvar::new(),
            drained: Condvar::new(),
            socket: Mutex::new(None),
            ack_observer: Mutex::new(None),
        })
    }

    /// Tells `observer` what each ACK says from now on.
    pub fn observe_acks(&self, observer: Arc<dyn AckObserver>) {
        *self.ack_observer.lock().unwrap_or_else(|e| e.into_inner()) = Some(observer);
    }

    /// Bytes written to the socket and not yet acknowledged by the peer's TCP (Linux
    /// `SIOCOUTQ`): the part of the backlog our queue no longer sees. `None` without a socket
    /// or where the kernel will not say.
    pub fn socket_backlog(&self) -> Option<u64> {
        use std::os::fd::AsRawFd;
        let guard = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        let fd = guard.as_ref()?.as_raw_fd();
        let mut queued: libc::c_int = 0;
        // SAFETY: `fd` is the open socket `guard` holds (it cannot close while we hold the
        // lock), and TIOCOUTQ (= SIOCOUTQ on Linux) writes one c_int to the pointer, which
        // points at `queued`, alive for the call.
        let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued as *mut libc::c_int) };
        (r == 0).then(|| u64::try_from(queued).unwrap_or(0))
    }

    /// Ends the connection at the socket: a writer blocked on a client that does not read
    /// and the channel's reader both return at once.
    fn drop_client(&self) {
        let socket = self.socket.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(s) = socket {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A poisoned lock means a panic elsewhere; the state is still plain data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Raises the byte bound (a full frame must always fit twice).
    pub fn set_limit(&self, limit: usize) {
        self.lock().limit = limit;
    }

    /// The byte bound.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// Waits up to `timeout` until fewer than `bytes` bytes are queued. True when they are
    /// (false on timeout or once closed): a producer that would rather wait than have its
    /// messages dropped calls this first.
    pub fn wait_below(&self, bytes: usize, timeout: std::time::Duration) -> bool {
        let mut s = self.lock();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if s.closed {
                return false;
            }
            if s.bytes < bytes {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self
                .drained
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Queues a message. A droppable one that would push the queue past its bound empties
    /// the queue of droppable messages and fails. A non-droppable one is queued unless the
    /// non-droppable messages already waiting exceed [`control_limit`]: then the client is not
    /// reading, the queue closes (which ends the connection) and the push fails.
    pub fn push(&self, ty: u16, body: Vec<u8>, droppable: bool) -> Result<(), Overflow> {
        let mut s = self.lock();
        if s.closed {
            return Ok(());
        }
        if !droppable {
            let cost = body.len().saturating_add(MESSAGE_OVERHEAD);
            let control = s.control_bytes.saturating_add(cost);
            if control > control_limit(s.limit) {
                tracing::info!(
                    queued = s.control_bytes,
                    "client leaves its replies unread; closing the connection"
                );
                s.closed = true;
                s.msgs.clear();
                s.bytes = 0;
                s.control_bytes = 0;
                self.ready.notify_all();
                drop(s);
                self.drop_client();
                return Err(Overflow);
            }
            s.control_bytes = control;
        }
        if droppable
            && s.bytes.saturating_add(body.len()) > s.limit
            && s.msgs.iter().any(|m| m.droppable)
        {
            s.msgs.retain(|m| !m.droppable);
            s.bytes = s.msgs.iter().map(|m| m.body.len()).sum();
            return Err(Overflow);
        }
        s.bytes = s.bytes.saturating_add(body.len());
        s.msgs.push_back(Queued {
            ty,
            body,
            droppable,
        });
        self.ready.notify_all();
        Ok(())
    }

    /// The queued messages, taken out of the queue (for unit tests that replay them).
    #[cfg(test)]
    pub(crate) fn take_all(&self) -> Vec<(u16, Vec<u8>)> {
        let mut s = self.lock();
        s.bytes = 0;
        s.msgs.drain(..).map(|m| (m.ty, m.body)).collect()
    }

    /// Bytes waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Whether the connection is finished.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Stops the writer; queued messages are dropped.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.msgs.clear();
        s.bytes = 0;
        s.control_bytes = 0;
        self.ready.notify_all();
        self.drained.notify_all();
    }

    /// Starts ACK flow control: queues SET_ACK and resets the unacked count.
    pub fn set_ack(&self, window: u32) {
        let generation = {
            let mut s = self.lock();
            s.ack_generation = s.ack_generation.wrapping_add(1);
            s.ack_window = window;
            s.unacked = 0;
            s.unacked_sizes.clear();
            s.last_ack = None;
            s.ack_generation
        };
        let mut w = Writer::default();
        w.u32(generation).u32(window);
        let _ = self.push(msg::SET_ACK, w.buf, false);
    }

    fn on_ack_sync(&self, generation: u32) {
        self.lock().client_generation = generation;
    }

    fn on_ack(&self) {
        let now = std::time::Instant::now();
        let mut s = self.lock();
        if s.client_generation == s.ack_generation {
            s.unacked = s.unacked.saturating_sub(s.ack_window);
            let n = (s.ack_window as usize).min(s.unacked_sizes.len());
            let bytes: usize = s.unacked_sizes.drain(..n).sum();
            let since = s.last_ack.replace(now);
            // Still waiting for the client: sent and not ACKed, or queued. Under
            // MIN_SAMPLE_BYTES the link was idle part of the window, and the window's rate is
            // what we sent, not what the link can carry (a fast link under a small video would
            // look slow).
            let waiting = s
                .unacked_sizes
                .iter()
                .sum::<usize>()
                .saturating_add(s.bytes);
            let busy = waiting as u64 >= crate::link_estimate::MIN_SAMPLE_BYTES;
            self.ready.notify_all();
            drop(s);
            // The first ACK has no previous one to time against.
            if let Some(since) = since
                && busy
            {
                let observer = self
                    .ack_observer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                if let Some(o) = observer {
                    o.acked(bytes as u64, now.saturating_duration_since(since), now);
                }
            }
        }
    }

    /// Blocks until a message may be sent; `None` once closed.
    fn next(&self) -> Option<Queued> {
        let mut s = self.lock();
        loop {
            if s.closed {
                return None;
            }
            let blocked = s.ack_window > 0 && s.unacked > s.ack_window.saturating_mul(2);
            if !blocked && let Some(m) = s.msgs.pop_front() {
                s.bytes = s.bytes.saturating_sub(m.body.len());
                if !m.droppable {
                    s.control_bytes = s
                        .control_bytes
                        .saturating_sub(m.body.len().saturating_add(MESSAGE_OVERHEAD));
                }
                if s.ack_window > 0 {
                    s.unacked = s.unacked.saturating_add(1);
                    // Bounded: the writer sends at most two windows and one unACKed.
                    let cap = (s.ack_window as usize).saturating_mul(2).saturating_add(1);
                    if s.unacked_sizes.len() >= cap {
                        s.unacked_sizes.pop_front();
                    }
                    s.unacked_sizes
                        .push_back(m.body.len().saturating_add(FULL_HEADER_SIZE));
                }
                self.drained.notify_all();
                return Some(m);
            }
            s = self.ready.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Bytes a channel connection moved in the data stage, headers included (the link stage is not
/// counted): what the control socket's `client_info` reports.
#[derive(Debug, Default)]
pub struct Traffic {
    sent: AtomicU64,
    received: AtomicU64,
}

impl Traffic {
    /// Bytes written to the client.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Bytes read from the client.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// [`read_message`], counting what was read into `traffic`.
pub(crate) fn read_counted(
    stream: &mut impl Read,
    mini: bool,
    max_body: u32,
    traffic: &Traffic,
) -> Result<(u16, Vec<u8>), ConnError> {
    let (ty, body) = read_message(stream, mini, max_body)?;
    let header = if mini {
        MINI_HEADER_SIZE
    } else {
        FULL_HEADER_SIZE
    };
    traffic
        .received
        .fetch_add((header + body.len()) as u64, Ordering::Relaxed);
    Ok((ty, body))
}

/// Starts the writer thread of a connection. It ends (and shuts the socket down, which also
/// ends the reader) when the queue is closed or a write fails.
pub(crate) fn spawn_writer(
    stream: Stream,
    queue: Arc<SendQueue>,
    mini: bool,
    span: tracing::Span,
    traffic: Arc<Traffic>,
) -> io::Result<thread::JoinHandle<()>> {
    if let Ok(s) = stream.tcp().try_clone() {
        *queue.socket.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
    }
    thread::Builder::new()
        .name("spice-writer".into())
        .spawn(move || {
            let _e = span.enter();
            let mut stream = stream;
            let mut serial: u64 = 0;
            while let Some(m) = queue.next() {
                serial = serial.wrapping_add(1);
                let bytes = frame_message(mini, serial, m.ty, &m.body);
                if let Err(e) = stream.write_all(&bytes) {
                    tracing::debug!(%e, "write failed; closing");
                    break;
                }
                traffic
                    .sent
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
            queue.close();
            let _ = stream.shutdown();
        })
}

/// Reads one client message, refusing bodies larger than `max_body` before allocating.
pub fn read_message(
    stream: &mut impl Read,
    mini: bool,
    max_body: u32,
) -> Result<(u16, Vec<u8>), ConnError> {
    let mut hdr = [0u8; FULL_HEADER_SIZE];
    let hdr_len = if mini {
        MINI_HEADER_SIZE
    } else {
        FULL_HEADER_SIZE
    };
    let hdr = hdr.get_mut(..hdr_len).ok_or(ConnError::Closed)?;
    stream.read_exact(hdr).map_err(eof_is_closed)?;
    let mut r = Reader::new(hdr);
    let malformed = |source| ConnError::Malformed { ty: 0, source };
    if !mini {
        r.u64().map_err(malformed)?;
    }
    let ty = r.u16().map_err(malformed)?;
    let size = r.u32().map_err(malformed)?;
    if size > max_body {
        return Err(ConnError::TooLarge {
            ty,
            size,
            max: max_body,
        });
    }
    let mut body = vec![0u8; size as usize];
    stream.read_exact(&mut body).map_err(eof_is_closed)?;
    Ok((ty, body))
}

fn eof_is_closed(e: io::Error) -> ConnError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        ConnError::Closed
    } else {
        ConnError::Io(e)
    }
}

/// What a common (all-channel) client message meant to the caller.
pub enum Common {
    /// Handled here.
    Handled,
    /// A PONG: the ping id and timestamp it echoes.
    Pong { id: u32, timestamp: u64 },
    /// The client says it is leaving.
    Disconnecting,
    /// Not a common message; the channel handles it.
    NotCommon,
}

/// Handles messages 1..=6 shared by all channels.
pub fn handle_common(queue: &SendQueue, ty: u16, body: &[u8]) -> Result<Common, ConnError> {
    let malformed = |source| ConnError::Malformed { ty, source };
    let mut r = Reader::new(body);
    Ok(match ty {
        msg::MSGC_ACK_SYNC => {
            queue.on_ack_sync(r.u32().map_err(malformed)?);
            Common::Handled
        }
        msg::MSGC_ACK => {
            queue.on_ack();
            Common::Handled
        }
        msg::MSGC_PONG => Common::Pong {
            id: r.u32().map_err(malformed)?,
            timestamp: r.u64().map_err(malformed)?,
        },
        msg::MSGC_DISCONNECTING => Common::Disconnecting,
        4 | 5 => Common::Handled, // migration: not supported, ignored
        _ => Common::NotCommon,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_drops_only_droppable() {
        let q = SendQueue::new(10);
        q.push(1, vec![0; 4], false).unwrap();
        q.push(2, vec![0; 4], true).unwrap();
        assert!(q.push(3, vec![0; 4], true).is_err());
        assert_eq!(q.queued_bytes(), 4);
        // An update into a queue holding nothing droppable still goes in.
        q.push(4, vec![0; 40], true).unwrap();
    }

    #[test]
    fn unread_replies_beyond_the_control_limit_close_the_queue() {
        let q = SendQueue::new(0);
        // Empty replies count their overhead: the bound is reached by count too.
        let fit = MIN_CONTROL_LIMIT / MESSAGE_OVERHEAD;
        for _ in 0..fit {
            q.push(9, Vec::new(), false).unwrap();
        }
        assert!(!q.is_closed());
        assert!(q.push(9, Vec::new(), false).is_err());
        assert!(q.is_closed(), "the connection ends");
        assert_eq!(q.queued_bytes(), 0, "and its queue is freed");
        // What the writer sent no longer counts.
        let q = SendQueue::new(0);
        for _ in 0..fit {
            q.push(9, Vec::new(), false).unwrap();
        }
        assert!(q.next().is_some());
        q.push(9, Vec::new(), false).unwrap();
        assert!(!q.is_closed());
        // Droppable updates do not count against it.
        let q = SendQueue::new(0);
        q.push(1, vec![0; MIN_CONTROL_LIMIT * 2], true).unwrap();
        q.push(9, vec![0; 1024], false).unwrap();
        assert!(!q.is_closed());
    }

    #[test]
    fn ack_window_blocks_and_releases() {
        let q = SendQueue::new(1 << 20);
        q.set_ack(1);
        for _ in 0..5 {
            q.push(9, vec![], true).unwrap();
        }
        // SET_ACK + 2 more go out (unacked reaches 3 > 2), then the writer must wait.
        assert!(q.next().is_some());
        assert!(q.next().is_some());
        assert!(q.next().is_some());
        assert!(q.lock().unacked > 2);
        q.on_ack_sync(1);
        q.on_ack();
        assert!(q.next().is_some());
    }

    /// Each ACK tells the observer the wire bytes of the window it acknowledges and the time
    /// since the previous ACK (none for the first: nothing to time it against), while at
    /// least `MIN_SAMPLE_BYTES` still wait for the client (else the link idled and the rate
    /// is only what we sent).
    #[test]
    fn acks_report_the_bytes_of_their_window() {
        #[derive(Default)]
        struct Seen(Mutex<Vec<u64>>);
        impl AckObserver for Seen {
            fn acked(&self, bytes: u64, _: std::time::Duration, _: std::time::Instant) {
                self.0.lock().unwrap().push(bytes);
            }
        }
        let q = SendQueue::new(1 << 20);
        let seen = Arc::new(Seen::default());
        q.observe_acks(seen.clone());
        q.set_ack(2);
        q.on_ack_sync(1);
        for n in [100usize, 200, 300, 20_000, 400] {
            q.push(9, vec![0; n], true).unwrap();
        }
        // SET_ACK (8 bytes) and the 100: the first window.
        let h = FULL_HEADER_SIZE;
        for _ in 0..2 {
            q.next().unwrap();
        }
        q.on_ack();
        assert!(seen.0.lock().unwrap().is_empty());
        // 200 and 300, with 20 kB still queued behind them: the link was busy.
        for _ in 0..2 {
            q.next().unwrap();
        }
        q.on_ack();
        assert_eq!(*seen.0.lock().unwrap(), [(200 + h + 300 + h) as u64]);
        // 20 kB and 400 with nothing behind: not a sample of the link.
        for _ in 0..2 {
            q.next().unwrap();
        }
        q.on_ack();
        assert_eq!(seen.0.lock().unwrap().len(), 1);
        // An ACK of a stale generation says nothing.
        q.push(9, vec![0; 30_000], true).unwrap();
        q.push(9, vec![0; 30_000], true).unwrap();
        q.on_ack_sync(0);
        q.next().unwrap();
        q.on_ack();
        assert_eq!(seen.0.lock().unwrap().len(), 1);
    }

    /// The socket's backlog: what the peer has not acknowledged, once its receive buffer is
    /// full because it does not read.
    #[test]
    fn socket_backlog_counts_what_the_peer_has_not_taken() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_theirs, _) = listener.accept().unwrap();
        let q = SendQueue::new(1 << 20);
        assert_eq!(q.socket_backlog(), None, "no socket yet");
        *q.socket.lock().unwrap() = Some(ours.try_clone().unwrap());
        assert_eq!(q.socket_backlog(), Some(0));
        ours.set_nonblocking(true).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        let mut written = 0usize;
        while let Ok(n) = ours.write(&chunk) {
            written += n;
            assert!(written < 1 << 30, "the peer's buffers never fill");
        }
        let backlog = q.socket_backlog().unwrap();
        assert!(
            backlog > 0 && backlog <= written as u64,
            "{backlog} of {written}"
        );
    }

    #[test]
    fn read_limits() {
        let mut w = Writer::default();
        w.u16(101).u32(1000);
        assert!(matches!(
            read_message(&mut &w.buf[..], true, 100),
            Err(ConnError::TooLarge { .. })
        ));
        let mut w = Writer::default();
        w.u16(101).u32(2).u8(7);
        assert!(matches!(
            read_message(&mut &w.buf[..], true, 100),
            Err(ConnError::Closed)
        ));
    }
}
