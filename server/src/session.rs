//! Sessions: one main channel plus the secondary channels that joined with its id, and the
//! snapshot of them the control socket's `client_info` shows.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rsa::rand_core::{OsRng, RngCore};

use crate::conn::{SendQueue, Traffic};
use crate::wire::msg;

/// Mouse mode bits (SpiceMouseMode).
pub const MOUSE_MODE_SERVER: u16 = 1;
pub const MOUSE_MODE_CLIENT: u16 = 2;

/// A linked channel of a session: what it is, and its byte counters.
#[derive(Debug)]
pub struct LinkedChannel {
    /// `wire::channel::*`.
    pub channel_type: u8,
    pub channel_id: u8,
    pub tls: bool,
    /// The client speaks WebSocket (a browser).
    pub websocket: bool,
    pub peer: Option<SocketAddr>,
    pub traffic: Arc<Traffic>,
    /// A display channel's pipe of display items, for its counters.
    pub pipe: Mutex<Option<Arc<saffron_display::Pipe>>>,
    /// A display channel's images by format.
    pub images: Arc<crate::image::ImageTotals>,
    /// A display channel's video streams.
    pub streams: Arc<crate::stream::StreamTotals>,
    /// The client was recognised as spice-html5 (see `LinkRequest::is_html5`).
    pub html5: bool,
    /// A display channel's link estimate.
    pub link: Mutex<Option<Arc<crate::link_estimate::LinkMonitor>>>,
    /// A display channel's heads, as its client was last told of them.
    pub heads: Arc<Mutex<Vec<saffron_display::Head>>>,
}

/// One channel as `client_info` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelInfo {
    /// `wire::channel::*` (1 main, 2 display, 3 inputs, 4 cursor).
    pub channel_type: u8,
    pub channel_id: u8,
    pub tls: bool,
    /// The client speaks WebSocket (a browser).
    pub websocket: bool,
    /// The client was recognised as spice-html5 and is sent only what it draws.
    pub html5: bool,
    /// The client's address on this connection.
    pub peer: Option<SocketAddr>,
    /// Data-stage bytes, headers included.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// A display channel's pipe counters: drawings dropped as covered, merged on overflow,
    /// resyncs.
    pub display: Option<saffron_display::PipeStats>,
    /// A display channel's images by format (None for other channels).
    pub images: Option<crate::image::EncodeStats>,
    /// A display channel's video streams: frames sent and skipped, quality steps (None for
    /// other channels).
    pub streams: Option<crate::stream::StreamStats>,
    /// A display channel's link estimate: latency, bandwidth, backlog, slow or not.
    pub link: Option<crate::link_estimate::LinkInfo>,
    /// A display channel's heads (monitors), as its client was last told of them (None for
    /// other channels; empty before the first primary surface).
    pub heads: Option<Vec<saffron_display::Head>>,
}

/// One client (session) as `client_info` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    pub session_id: u32,
    /// The address of the main channel's connection.
    pub peer: Option<SocketAddr>,
    /// `MOUSE_MODE_SERVER` or `MOUSE_MODE_CLIENT`.
    pub mouse_mode: u16,
    /// The last main-channel ping round trip (`None` until the first PONG).
    pub rtt: Option<Duration>,
    /// How far behind the server's multimedia clock the client's runs, ms (grows when its
    /// stream reports say frames came late).
    pub mm_latency: u32,
    /// The linked channels, main first, in link order.
    pub channels: Vec<ChannelInfo>,
}

/// How a channel's client reached us.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelLink {
    pub tls: bool,
    pub websocket: bool,
    pub html5: bool,
}

/// How far behind the server's multimedia clock a client's starts (the INIT's time is now
/// minus this): the slack stream frames have to reach the client before their time to be
/// shown (spice-server's `MM_TIME_DELTA`).
pub const MM_TIME_DELTA: u32 = 400;
/// The most a client's multimedia latency grows to (spice-server bounds the client's playback
/// delay at 5 s too): frames later than that are late, whatever a client reports.
pub const MAX_MM_LATENCY: u32 = 5000;

/// One client's session.
pub struct Session {
    pub id: u32,
    /// The main channel's peer.
    pub peer: Option<SocketAddr>,
    closed: AtomicBool,
    /// Current mouse mode (MOUSE_MODE_*).
    pub mouse_mode: AtomicU16,
    /// Sockets of the secondary channels, shut down when the main channel ends.
    sockets: Mutex<Vec<TcpStream>>,
    /// Last measured main-channel round trip.
    pub rtt: Mutex<Option<Duration>>,
    /// The channels linked now (each removes itself when it ends).
    channels: Mutex<Vec<Arc<LinkedChannel>>>,
    /// How far behind the server's multimedia clock the client's runs, ms: starts at
    /// [`MM_TIME_DELTA`] and only grows, as the client's stream reports say frames came late.
    mm_latency: AtomicU32,
    /// The main channel's queue, where MULTI_MEDIA_TIME goes.
    main_queue: Mutex<Option<Arc<SendQueue>>>,
}

/// A channel's place in its session's list; dropping it (when the channel ends) takes the
/// channel off the list.
pub struct ChannelRegistration {
    session: Arc<Session>,
    channel: Arc<LinkedChannel>,
}

impl ChannelRegistration {
    /// The channel's byte counters.
    pub fn traffic(&self) -> &Arc<Traffic> {
        &self.channel.traffic
    }

    /// The channel as the session lists it (a display channel hangs its pipe there).
    pub fn channel(&self) -> &Arc<LinkedChannel> {
        &self.channel
    }
}

impl Drop for ChannelRegistration {
    fn drop(&mut self) {
        self.session
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| !Arc::ptr_eq(c, &self.channel));
    }
}

impl Session {
    /// The client's multimedia latency now, ms (see [`MM_TIME_DELTA`]).
    pub fn mm_latency(&self) -> u32 {
        self.mm_latency.load(Ordering::Acquire)
    }

    /// The main channel's queue (MULTI_MEDIA_TIME goes there).
    pub(crate) fn set_main_queue(&self, queue: Arc<SendQueue>) {
        *self.main_queue.lock().unwrap_or_else(|e| e.into_inner()) = Some(queue);
    }

    /// The client needs `latency` ms between a frame's time stamp and its showing (a stream
    /// report said frames came late): a latency above the current one (bounded by
    /// [`MAX_MM_LATENCY`]) becomes the session's, and the client's clock is set back to the
    /// server's multimedia time `now_mm` minus it with MULTI_MEDIA_TIME, as spice-server
    /// does; a lower one changes nothing (the latency only grows). While `audio_playing`, the
    /// playback channel's time stamps drive the client's clock (spice-gtk sets it from each
    /// audio packet), so no MULTI_MEDIA_TIME is sent. Returns the time sent, if any.
    pub(crate) fn raise_mm_latency(
        &self,
        latency: u32,
        now_mm: u32,
        audio_playing: bool,
    ) -> Option<u32> {
        let latency = latency.min(MAX_MM_LATENCY);
        let before = self.mm_latency.fetch_max(latency, Ordering::AcqRel);
        if latency <= before || audio_playing {
            return None;
        }
        let time = now_mm.wrapping_sub(latency);
        let queue = self.main_queue.lock().unwrap_or_else(|e| e.into_inner());
        let queue = queue.as_ref()?;
        tracing::debug!(
            session = self.id,
            from = before,
            to = latency,
            "multimedia latency raised"
        );
        queue
            .push(
                msg::MAIN_MULTI_MEDIA_TIME,
                time.to_le_bytes().to_vec(),
                false,
            )
            .ok()?;
        Some(time)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Registers a secondary channel's socket so it ends with the session.
    pub fn attach(&self, stream: &TcpStream) {
        if let Ok(s) = stream.try_clone() {
            self.sockets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(s);
        }
        if self.is_closed() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Adds a linked channel to the session's list, for as long as the registration lives.
    pub fn register_channel(
        self: &Arc<Self>,
        channel_type: u8,
        channel_id: u8,
        link: ChannelLink,
        peer: Option<SocketAddr>,
    ) -> ChannelRegistration {
        let channel = Arc::new(LinkedChannel {
            channel_type,
            channel_id,
            tls: link.tls,
            websocket: link.websocket,
            peer,
            traffic: Arc::default(),
            pipe: Mutex::new(None),
            images: Arc::default(),
            streams: Arc::default(),
            html5: link.html5,
            link: Mutex::new(None),
            heads: Arc::default(),
        });
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(channel.clone());
        ChannelRegistration {
            session: self.clone(),
            channel,
        }
    }

    /// The session as `client_info` shows it.
    pub fn info(&self) -> ClientInfo {
        let channels = self
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|c| ChannelInfo {
                channel_type: c.channel_type,
                channel_id: c.channel_id,
                tls: c.tls,
                websocket: c.websocket,
                html5: c.html5,
                peer: c.peer,
                bytes_sent: c.traffic.sent(),
                bytes_received: c.traffic.received(),
                display: c
                    .pipe
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(|p| p.stats()),
                images: (c.channel_type == crate::wire::channel::DISPLAY)
                    .then(|| c.images.snapshot()),
                streams: (c.channel_type == crate::wire::channel::DISPLAY)
                    .then(|| c.streams.snapshot()),
                link: c
                    .link
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(|l| l.info()),
                heads: (c.channel_type == crate::wire::channel::DISPLAY)
                    .then(|| c.heads.lock().unwrap_or_else(|e| e.into_inner()).clone()),
            })
            .collect();
        ClientInfo {
            session_id: self.id,
            peer: self.peer,
            mouse_mode: self.mouse_mode.load(Ordering::Acquire),
            rtt: *self.rtt.lock().unwrap_or_else(|e| e.into_inner()),
            mm_latency: self.mm_latency(),
            channels,
        }
    }

    /// Ends the session and every channel in it.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for s in self
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// All live sessions by id.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<u32, Arc<Session>>>,
}

impl Sessions {
    /// Creates a session with a fresh random non-zero id for a client at `peer`.
    pub fn create(&self, mouse_mode: u16, peer: Option<SocketAddr>) -> Arc<Session> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let id = loop {
            let id = OsRng.next_u32();
            if id != 0 && !map.contains_key(&id) {
                break id;
            }
        };
        let s = Arc::new(Session {
            id,
            peer,
            closed: AtomicBool::new(false),
            mouse_mode: AtomicU16::new(mouse_mode),
            sockets: Mutex::new(Vec::new()),
            rtt: Mutex::new(None),
            channels: Mutex::new(Vec::new()),
            mm_latency: AtomicU32::new(MM_TIME_DELTA),
            main_queue: Mutex::new(None),
        });
        map.insert(id, s.clone());
        s
    }

    pub fn get(&self, id: u32) -> Option<Arc<Session>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// Every session, by id.
    pub fn snapshot(&self) -> Vec<ClientInfo> {
        let sessions: Vec<Arc<Session>> = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut out: Vec<ClientInfo> = sessions.iter().map(|s| s.info()).collect();
        out.sort_by_key(|c| c.session_id);
        out
    }

    /// Closes and forgets a session.
    pub fn remove(&self, id: u32) {
        let s = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(s) = s {
            s.close();
        }
    }

    /// Closes every session (server shutdown).
    pub fn close_all(&self) {
        let all: Vec<_> = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for (_, s) in all {
            s.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The latency only grows, up to its bound; each rise sets the client's clock back with
    /// MULTI_MEDIA_TIME (now minus the new latency), except while audio drives that clock.
    #[test]
    fn mm_latency_only_grows_and_each_rise_tells_the_client() {
        let sessions = Sessions::default();
        let s = sessions.create(1, None);
        assert_eq!(s.mm_latency(), MM_TIME_DELTA);
        // No main channel yet: raised, but nothing to tell.
        assert_eq!(s.raise_mm_latency(450, 10_000, false), None);
        assert_eq!(s.mm_latency(), 450);
        let q = SendQueue::new(1 << 16);
        s.set_main_queue(q.clone());
        assert_eq!(s.raise_mm_latency(700, 10_000, false), Some(9_300));
        assert_eq!(
            q.take_all(),
            [(msg::MAIN_MULTI_MEDIA_TIME, 9_300u32.to_le_bytes().to_vec())]
        );
        // Lower or equal: nothing.
        assert_eq!(s.raise_mm_latency(600, 11_000, false), None);
        assert_eq!(s.raise_mm_latency(700, 11_000, false), None);
        // Absurd: bounded. Wraps with the clock.
        assert_eq!(
            s.raise_mm_latency(u32::MAX, 100, false),
            Some(100u32.wrapping_sub(MAX_MM_LATENCY))
        );
        assert_eq!(s.mm_latency(), MAX_MM_LATENCY);
        q.take_all();
        // While audio plays, the playback channel owns the client's clock.
        let s = sessions.create(1, None);
        s.set_main_queue(q.clone());
        assert_eq!(s.raise_mm_latency(900, 10_000, true), None);
        assert_eq!(s.mm_latency(), 900);
        assert!(q.take_all().is_empty());
    }
}
