//! The main channel (spec §3): session INIT, the channel list, mouse modes, keep-alive pings
//! whose round trip is kept per session, and the client's side of the guest agent (spec §11):
//! INIT says whether an agent is connected, AGENT_START / AGENT_TOKEN / AGENT_DATA go to the
//! agent link (`agent_link`) after the inbox (`agent`) has checked them. Without an agent,
//! as spice-server without a vdagent, INIT says agent_connected 0 and what a client sends for
//! the agent anyway is checked and dropped.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::agent::{AgentInbox, AgentMessage};
use crate::channel::{Channel, Event};
use crate::conn::{ConnError, SendQueue, Traffic};
use crate::link::LinkRequest;
use crate::server::Shared;
use crate::session::Session;
use crate::tls::Stream;
use crate::wire::{Reader, Writer, channel, has_cap, msg};

/// Largest client message on the main channel: AGENT_DATA, the largest one, is at most
/// 2048 bytes (`agent::VD_AGENT_MAX_DATA_SIZE`, checked per message); unknown types are read
/// and ignored up to this.
pub(crate) const MAX_MAIN_MESSAGE: u32 = 8192;
/// The client-side channel cap NAME_AND_UUID.
const CAP_NAME_AND_UUID: u32 = 1;
/// Agent tokens granted in INIT (REDS_AGENT_WINDOW_SIZE): the most AGENT_DATA messages a
/// client may have on their way to the guest. With no agent none is returned, so a client
/// gets at most this many.
pub(crate) const AGENT_TOKENS: u32 = crate::agent_link::AGENT_TOKENS;
/// The client-side main channel cap AGENT_CONNECTED_TOKENS.
const CAP_AGENT_CONNECTED_TOKENS: u32 = 2;
/// How often the server pings the client.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// Pings remembered for their round trip; older ones are forgotten, so a client that never
/// answers costs nothing.
const MAX_PINGS_IN_FLIGHT: usize = 8;

/// Pings in flight: (id, when sent). Bounded so a client that never answers costs nothing.
type Pending = Arc<Mutex<VecDeque<(u32, Instant)>>>;

pub(crate) fn run(
    stream: Stream,
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    req: &LinkRequest,
    mini: bool,
    traffic: Arc<Traffic>,
) -> Result<(), ConnError> {
    let mut ch = Channel::open(
        stream,
        mini,
        traffic,
        shared.config.queue_limit,
        MAX_MAIN_MESSAGE,
        None,
    )?;
    let queue = ch.queue().clone();
    session.set_main_queue(queue.clone());

    let supported = shared.supported_mouse_modes();
    let mut agent = AgentInbox::with_policy(AGENT_TOKENS, shared.config.agent);
    shared.agent.add_main(
        session.id,
        queue.clone(),
        has_cap(&req.channel_caps, CAP_AGENT_CONNECTED_TOKENS),
        agent.token_return(),
        |agent_connected| {
            let mut w = Writer::default();
            w.u32(session.id)
                .u32(1)
                .u32(u32::from(supported))
                .u32(u32::from(session.mouse_mode.load(Ordering::Acquire)))
                .u32(u32::from(agent_connected))
                .u32(AGENT_TOKENS)
                // mm-time: the session's latency (spec §6.4) behind ours, the slack
                // stream frames have before their time.
                .u32(shared.mm_time().wrapping_sub(session.mm_latency()))
                .u32(0);
            let _ = queue.push(msg::MAIN_INIT, w.buf, false);
        },
    );

    if has_cap(&req.channel_caps, CAP_NAME_AND_UUID) {
        if let Some(name) = &shared.config.name {
            let mut w = Writer::default();
            let bytes = name.as_bytes();
            w.u32(bytes.len() as u32 + 1).bytes(bytes).u8(0);
            let _ = queue.push(msg::MAIN_NAME, w.buf, false);
        }
        let _ = queue.push(msg::MAIN_UUID, shared.config.uuid.to_vec(), false);
    }

    let pending: Pending = Arc::new(Mutex::new(VecDeque::new()));
    {
        let (queue, pending, started) = (queue.clone(), pending.clone(), shared.started);
        ch.spawn("spice-ping", move || ping_loop(&queue, &pending, started))?;
    }
    let result = ch.serve(session, |queue, event| match event {
        Event::Pong(id) => {
            on_pong(session, &pending, id);
            Ok(())
        }
        Event::Message(ty, body) => handle(shared, session, queue, &mut agent, ty, body),
    });
    shared.agent.remove_main(session.id);
    ch.close();
    result
}

pub(crate) fn handle(
    shared: &Shared,
    session: &Session,
    queue: &SendQueue,
    agent: &mut AgentInbox,
    ty: u16,
    body: &[u8],
) -> Result<(), ConnError> {
    match ty {
        msg::MSGC_MAIN_ATTACH_CHANNELS => {
            let mut list = vec![
                (channel::DISPLAY, 0u8),
                (channel::CURSOR, 0),
                (channel::INPUTS, 0),
            ];
            if shared.config.sound {
                list.push((channel::PLAYBACK, 0));
                list.push((channel::RECORD, 0));
            }
            let mut w = Writer::default();
            w.u32(list.len() as u32);
            for (t, id) in list {
                w.u8(t).u8(id);
            }
            let _ = queue.push(msg::MAIN_CHANNELS_LIST, w.buf, false);
        }
        msg::MSGC_MAIN_MOUSE_MODE_REQUEST => {
            let mode = Reader::new(body)
                .u16()
                .map_err(|source| ConnError::Malformed { ty, source })?;
            let supported = shared.supported_mouse_modes();
            if mode.is_power_of_two() && supported & mode != 0 {
                session.mouse_mode.store(mode, Ordering::Release);
                info!(mode, "mouse mode changed");
            } else {
                debug!(mode, supported, "unsupported mouse mode requested");
            }
            let mut w = Writer::default();
            w.u16(supported)
                .u16(session.mouse_mode.load(Ordering::Acquire));
            let _ = queue.push(msg::MAIN_MOUSE_MODE, w.buf, false);
        }
        msg::MSGC_MAIN_AGENT_START => {
            let tokens = agent.on_tokens(body)?;
            debug!(tokens, "AGENT_START");
            shared.agent.client_start(session.id, tokens);
        }
        msg::MSGC_MAIN_AGENT_TOKEN => {
            let tokens = agent.on_tokens(body)?;
            shared.agent.client_tokens(session.id, tokens);
        }
        msg::MSGC_MAIN_AGENT_DATA => {
            let data = agent.on_data(body)?;
            for m in &data.messages {
                match m {
                    AgentMessage::MonitorsConfig { monitors, .. } => {
                        info!(heads = monitors.len(), ?monitors, "client monitors config");
                        match client_heads(monitors) {
                            Ok(heads) => shared.source.client_monitors_config(&heads),
                            Err(e) => warn!("client monitors config not offered to the guest: {e}"),
                        }
                    }
                    AgentMessage::Other { type_, size } => debug!(type_, size, "agent message"),
                }
            }
            if !shared.agent.from_client(session.id, data) {
                debug!("agent data dropped: no guest agent for this client");
            }
        }
        other => debug!(ty = other, "ignored main message"),
    }
    Ok(())
}

/// Why a client's monitors config cannot become the device's client monitors config.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ClientHeadsError {
    #[error("head {index} starts at a negative position ({x}, {y})")]
    NegativePosition { index: usize, x: i32, y: i32 },
    #[error("head {index} at ({x}, {y}) of {width}x{height} ends past 2^32")]
    Overflow {
        index: usize,
        x: i32,
        y: i32,
        width: u32,
        height: u32,
    },
}

/// The heads of a client's VDAgentMonitorsConfig as rectangles for the device. spice-gtk aligns
/// its heads to start at (0, 0) before sending, so a negative position is refused rather than
/// wrapped (QEMU casts it to an unsigned offset); a head that would end past `u32` too. The
/// agent parser has already bounded the count to 64. Disabled heads of a sparse config stay
/// as they are (0x0): the guest's driver shows them as disconnected.
pub(crate) fn client_heads(
    monitors: &[crate::agent::AgentMonitor],
) -> Result<Vec<saffron_display::Head>, ClientHeadsError> {
    monitors
        .iter()
        .enumerate()
        .map(|(index, m)| {
            let (Ok(x), Ok(y)) = (u32::try_from(m.x), u32::try_from(m.y)) else {
                return Err(ClientHeadsError::NegativePosition {
                    index,
                    x: m.x,
                    y: m.y,
                });
            };
            if x.checked_add(m.width).is_none() || y.checked_add(m.height).is_none() {
                return Err(ClientHeadsError::Overflow {
                    index,
                    x: m.x,
                    y: m.y,
                    width: m.width,
                    height: m.height,
                });
            }
            Ok(saffron_display::Head {
                // The client's own order is its monitor numbering (at most 64 heads).
                id: u32::try_from(index).unwrap_or(u32::MAX),
                x,
                y,
                width: m.width,
                height: m.height,
            })
        })
        .collect()
}

fn ping_loop(queue: &SendQueue, pending: &Pending, started: Instant) {
    let mut id: u32 = 0;
    loop {
        id = id.wrapping_add(1);
        let now = Instant::now();
        {
            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
            if p.len() >= MAX_PINGS_IN_FLIGHT {
                p.pop_front();
            }
            p.push_back((id, now));
        }
        let mut w = Writer::default();
        w.u32(id).u64(now.duration_since(started).as_nanos() as u64);
        let _ = queue.push(msg::PING, w.buf, false);
        // Sleep in short steps so the thread ends promptly with the connection.
        let until = now + PING_INTERVAL;
        while Instant::now() < until {
            if queue.is_closed() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

fn on_pong(session: &Session, pending: &Pending, id: u32) {
    let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pos) = p.iter().position(|(i, _)| *i == id)
        && let Some((_, sent)) = p.remove(pos)
    {
        let rtt = sent.elapsed();
        debug!(?rtt, "pong");
        *session.rtt.lock().unwrap_or_else(|e| e.into_inner()) = Some(rtt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentMonitor;

    fn monitor(x: i32, y: i32, width: u32, height: u32) -> AgentMonitor {
        AgentMonitor {
            width,
            height,
            depth: 32,
            x,
            y,
        }
    }

    #[test]
    fn client_heads_become_rectangles_or_are_refused() {
        let heads = client_heads(&[monitor(0, 0, 1024, 768), monitor(1024, 0, 800, 600)]).unwrap();
        assert_eq!(
            heads[1],
            saffron_display::Head {
                id: 1,
                x: 1024,
                y: 0,
                width: 800,
                height: 600
            }
        );
        assert_eq!(
            client_heads(&[monitor(0, 0, 1, 1), monitor(-1, 0, 1, 1)]),
            Err(ClientHeadsError::NegativePosition {
                index: 1,
                x: -1,
                y: 0
            })
        );
        assert!(matches!(
            client_heads(&[monitor(i32::MAX, 0, u32::MAX, 1)]),
            Err(ClientHeadsError::Overflow { index: 0, .. })
        ));
        assert!(client_heads(&[]).unwrap().is_empty());
    }
}
