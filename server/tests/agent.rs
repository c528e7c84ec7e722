//! The guest agent link, with a scripted guest agent on one end of a socket pair (what the
//! VMM's virtio-serial port gives the server) and a scripted Spice client on the other:
//! framing both ways, tokens, connect/disconnect messages, the copy-paste policy, and a
//! hostile agent that only gets its own link reset.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use saffron_server::vdi::{VDP_CLIENT_PORT, VDP_SERVER_PORT, agent_message, cap, msg_type};
use saffron_server::{AgentPolicy, NullInput, ServerConfig, ServerHandle};

const PW: &str = "pw";
/// Main channel cap AGENT_CONNECTED_TOKENS.
const CAPS_TOKENS: u32 = 1 << 2;

fn start_with(policy: AgentPolicy) -> (ServerHandle, Arc<TestSource>) {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.password = Some(PW.into());
    cfg.agent = policy;
    let source = Arc::new(TestSource::default());
    let h = saffron_server::start(cfg, source.clone(), Arc::new(NullInput)).unwrap();
    (h, source)
}

/// The guest's end of the port.
struct Guest(UnixStream);

impl Guest {
    fn attach(h: &ServerHandle) -> Guest {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        h.attach_agent(theirs).unwrap();
        let mut g = Guest(ours);
        // Each stream starts with the server asking for the agent's capabilities.
        let (port, probe) = g.chunk();
        assert_eq!(port, VDP_CLIENT_PORT);
        assert_eq!(
            probe,
            agent_message(msg_type::ANNOUNCE_CAPABILITIES, &[1, 0, 0, 0, 0, 0, 0, 0])
        );
        g
    }

    fn send(&mut self, port: u32, payload: &[u8]) {
        let mut c = port.to_le_bytes().to_vec();
        c.extend((payload.len() as u32).to_le_bytes());
        c.extend(payload);
        self.0.write_all(&c).unwrap();
    }

    fn announce(&mut self, caps: u32) {
        let mut body = 1u32.to_le_bytes().to_vec();
        body.extend(caps.to_le_bytes());
        self.send(
            VDP_CLIENT_PORT,
            &agent_message(msg_type::ANNOUNCE_CAPABILITIES, &body),
        );
    }

    /// Reads one chunk: (port, payload).
    fn chunk(&mut self) -> (u32, Vec<u8>) {
        let mut h = [0u8; 8];
        self.0.read_exact(&mut h).unwrap();
        let size = u32_at(&h, 4) as usize;
        assert!(size <= 2048, "chunks to the guest are at most 2048 bytes");
        let mut p = vec![0; size];
        self.0.read_exact(&mut p).unwrap();
        (u32_at(&h, 0), p)
    }

    /// Reads chunks until `len` bytes for port 1 came (each chunk within one message).
    fn client_bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < len {
            let (port, p) = self.chunk();
            assert_eq!(port, VDP_CLIENT_PORT);
            out.extend(p);
        }
        out
    }

    fn closed(&mut self) -> bool {
        let mut b = [0u8; 64];
        loop {
            match self.0.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// Reads main messages until one of type `ty` (skipping pings and the like).
fn wait_for(s: &mut TcpStream, ty: u16) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no message {ty}");
        let (t, body) = read_msg(s);
        if t == ty {
            return body;
        }
        assert!(
            ![108].contains(&t) || ty == 108,
            "unexpected AGENT_DISCONNECTED"
        );
    }
}

/// Agent messages the client receives until `n` complete ones came.
fn client_messages(s: &mut TcpStream, n: usize) -> Vec<Vec<u8>> {
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    let mut want = 0usize;
    while msgs.len() < n || msgs.last().is_some_and(|m| m.len() < want) {
        let body = wait_for(s, 109);
        assert!(body.len() <= 2048);
        if msgs.last().is_none_or(|m| m.len() >= want) {
            want = 20 + u32_at(&body, 16) as usize;
            msgs.push(body);
        } else {
            msgs.last_mut().unwrap().extend(body);
        }
    }
    msgs
}

/// AGENT_START, and a round trip that makes sure the server handled it (messages on one
/// channel are handled in order) before the test's guest speaks.
fn agent_start(s: &mut TcpStream) {
    send_msg(s, 106, &u32::MAX.to_le_bytes());
    send_msg(s, 104, &[]);
    wait_for(s, 104);
}

fn main_with_tokens_cap(h: &ServerHandle) -> (TcpStream, Vec<u8>) {
    let (r, mut s) = link(h.local_addr(), 0, 1, PW, &[CAPS_TOKENS]);
    assert_eq!(r, 0);
    let (ty, init) = read_msg(&mut s);
    assert_eq!(ty, 103);
    (s, init)
}

#[test]
fn clipboard_messages_cross_both_ways_with_tokens() {
    let (h, _src) = start_with(AgentPolicy::default());
    let (mut main, init) = main_with_tokens_cap(&h);
    assert_eq!(u32_at(&init, 16), 0, "no agent yet");
    assert!(!h.agent_connected());

    // The guest agent opens its port and announces itself: the client is told, with tokens.
    let mut guest = Guest::attach(&h);
    guest.announce((1 << cap::CLIPBOARD_BY_DEMAND) | (1 << cap::CLIPBOARD_SELECTION));
    assert_eq!(u32_at(&wait_for(&mut main, 115), 0), 10);
    assert!(h.agent_connected());
    // A client linking now sees the agent in INIT.
    let (_late, late_init) = main_with_tokens_cap(&h);
    assert_eq!(u32_at(&late_init, 16), 1, "agent_connected in INIT");

    // AGENT_START, then a 5000-byte clipboard message split as spice-gtk splits it.
    agent_start(&mut main);
    let clip: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    let m = agent_message(msg_type::CLIPBOARD, &clip);
    for piece in m.chunks(2048) {
        send_msg(&mut main, 107, piece);
    }
    assert_eq!(
        guest.client_bytes(m.len()),
        m,
        "the guest gets the message as sent"
    );
    for _ in 0..3 {
        assert_eq!(
            u32_at(&wait_for(&mut main, 110), 0),
            1,
            "AGENT_TOKEN per message"
        );
    }

    // The guest answers with 1 MiB in one chunk (as spice-vdagentd writes it): the client
    // gets it in pieces of at most 2048 bytes, the first starting with the header.
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    let reply = agent_message(msg_type::CLIPBOARD, &big);
    let grab = agent_message(msg_type::CLIPBOARD_GRAB, &[0, 0, 0, 0, 1, 0, 0, 0]);
    let mut both = Vec::new();
    for msg in [&reply, &grab] {
        both.extend(VDP_CLIENT_PORT.to_le_bytes());
        both.extend((msg.len() as u32).to_le_bytes());
        both.extend(msg.iter());
    }
    guest.0.write_all(&both).unwrap();
    let got = client_messages(&mut main, 2);
    // The first message the client sees is the agent's announce (it had no owner then, so it
    // was dropped): what comes is exactly the reply and the grab.
    assert_eq!(got, vec![reply, grab]);

    // The client leaves: the guest is told on the server port.
    drop(main);
    let (port, p) = guest.chunk();
    assert_eq!(port, VDP_SERVER_PORT);
    assert_eq!(u32_at(&p, 4), msg_type::CLIENT_DISCONNECTED);
    let stats = h.agent_stats();
    assert!(
        stats.pieces_to_client > 512 && stats.resets == 0,
        "{stats:?}"
    );
}

#[test]
fn copy_paste_off_strips_caps_and_drops_clipboard_both_ways() {
    let (h, _src) = start_with(AgentPolicy {
        copy_paste: false,
        file_xfer: false,
    });
    let (mut main, _) = main_with_tokens_cap(&h);
    let mut guest = Guest::attach(&h);
    guest.announce(0); // connects
    wait_for(&mut main, 115);
    agent_start(&mut main);
    // Caps asked again (as spice-gtk's request): clipboard caps go, FILE_XFER_DISABLED comes.
    guest.announce((1 << cap::CLIPBOARD_BY_DEMAND) | (1 << cap::CLIPBOARD_SELECTION) | 1);
    guest.send(
        VDP_CLIENT_PORT,
        &agent_message(msg_type::CLIPBOARD_GRAB, &[1, 0, 0, 0]),
    );
    guest.send(
        VDP_CLIENT_PORT,
        &agent_message(msg_type::MAX_CLIPBOARD, &[0; 4]),
    );
    let got = client_messages(&mut main, 2);
    assert_eq!(u32_at(&got[0], 4), msg_type::ANNOUNCE_CAPABILITIES);
    assert_eq!(u32_at(&got[0], 24), 1 | (1 << cap::FILE_XFER_DISABLED));
    assert_eq!(
        u32_at(&got[1], 4),
        msg_type::MAX_CLIPBOARD,
        "the grab was dropped"
    );
    // The client's clipboard is dropped too; its token comes back all the same.
    send_msg(
        &mut main,
        107,
        &agent_message(msg_type::CLIPBOARD, b"secret"),
    );
    assert_eq!(u32_at(&wait_for(&mut main, 110), 0), 1);
    let ok = agent_message(msg_type::MAX_CLIPBOARD, &[0; 4]);
    send_msg(&mut main, 107, &ok);
    assert_eq!(
        guest.client_bytes(ok.len()),
        ok,
        "only the allowed message arrives"
    );
}

#[test]
fn a_hostile_agent_only_gets_its_link_reset() {
    let (h, src) = start_with(AgentPolicy::default());
    src.set(gradient(64, 32, 1, 0));
    let (mut main, init) = main_with_tokens_cap(&h);
    let id = u32_at(&init, 0);
    let (r, mut display) = link(h.local_addr(), id, 2, PW, &[]);
    assert_eq!(r, 0);
    let mut screen = Screen::new();
    while screen.pixels != *gradient(64, 32, 1, 0).bgrx {
        screen.step(&mut display).unwrap();
    }

    let hostile: [(&str, Vec<u8>); 4] = [
        ("garbage", vec![0xa5; 4096]),
        ("a 4 GiB chunk", {
            let mut c = 1u32.to_le_bytes().to_vec();
            c.extend(u32::MAX.to_le_bytes());
            c
        }),
        ("a 4 GiB message", {
            let mut m = agent_message(msg_type::CLIPBOARD, &[]);
            m[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
            let mut c = 1u32.to_le_bytes().to_vec();
            c.extend((m.len() as u32).to_le_bytes());
            c.extend(m);
            c
        }),
        ("a bad protocol after a good message", {
            let good = agent_message(msg_type::CLIPBOARD_RELEASE, &[]);
            let mut bad = agent_message(msg_type::CLIPBOARD_RELEASE, &[]);
            bad[0] = 3;
            let mut c = Vec::new();
            for m in [good, bad] {
                c.extend(1u32.to_le_bytes());
                c.extend((m.len() as u32).to_le_bytes());
                c.extend(m);
            }
            c
        }),
    ];
    let mut resets = 0;
    for (what, bytes) in hostile {
        let mut guest = Guest::attach(&h);
        guest.announce(0);
        wait_for(&mut main, 115);
        guest.0.write_all(&bytes).unwrap();
        assert_eq!(
            u32_at(&wait_for(&mut main, 108), 0),
            0,
            "{what}: AGENT_DISCONNECTED"
        );
        assert!(guest.closed(), "{what}: the stream was shut down");
        resets += 1;
        assert_eq!(h.agent_stats().resets, resets, "{what}");
        assert!(!h.agent_connected());
    }

    // A flood while no client listens, and half a message: dropped, bounded, nothing breaks.
    let mut guest = Guest::attach(&h);
    guest.announce(0);
    wait_for(&mut main, 115);
    let m = agent_message(msg_type::CLIPBOARD, &vec![1u8; 60000]);
    let mut c = 1u32.to_le_bytes().to_vec();
    c.extend((m.len() as u32).to_le_bytes());
    c.extend(&m);
    for _ in 0..300 {
        guest.0.write_all(&c).unwrap();
    }
    guest.0.write_all(&c[..c.len() / 2]).unwrap();
    // Then QEMU reconnects (a new stream): the half message is forgotten.
    let mut guest = Guest::attach(&h);
    assert_eq!(u32_at(&wait_for(&mut main, 108), 0), 0);
    guest.announce(0);
    wait_for(&mut main, 115);
    agent_start(&mut main);
    let release = agent_message(msg_type::CLIPBOARD_RELEASE, &[]);
    guest.send(VDP_CLIENT_PORT, &release);
    assert_eq!(client_messages(&mut main, 1), vec![release]);

    // The session, its main channel and its display go on.
    send_msg(&mut main, 104, &[]);
    wait_for(&mut main, 104);
    let next = gradient(64, 32, 2, 0x33);
    src.set(next.clone());
    while screen.pixels != *next.bgrx {
        screen.step(&mut display).unwrap();
    }
}

/// Two clients: the agent talks to the one that started it last; when that one leaves the
/// guest is told, and the other takes over. A reset link (as QEMU reconnecting) comes back
/// once the agent answers the server's capability request.
#[test]
fn the_agent_follows_the_newest_client_and_survives_a_reset() {
    let (h, _src) = start_with(AgentPolicy::default());
    let (mut a, _) = main_with_tokens_cap(&h);
    let (mut b, _) = main_with_tokens_cap(&h);
    let mut guest = Guest::attach(&h);
    guest.announce(0);
    wait_for(&mut a, 115);
    wait_for(&mut b, 115);
    agent_start(&mut a);
    agent_start(&mut b);
    // B took the agent over from A: the guest was told A's state is gone.
    let (port, p) = guest.chunk();
    assert_eq!(
        (port, u32_at(&p, 4)),
        (VDP_SERVER_PORT, msg_type::CLIENT_DISCONNECTED)
    );
    let grab = agent_message(msg_type::CLIPBOARD_GRAB, &[1, 0, 0, 0]);
    guest.send(VDP_CLIENT_PORT, &grab);
    assert_eq!(client_messages(&mut b, 1), vec![grab.clone()]);
    drop(b);
    let (port, p) = guest.chunk();
    assert_eq!(
        (port, u32_at(&p, 4)),
        (VDP_SERVER_PORT, msg_type::CLIENT_DISCONNECTED)
    );
    guest.send(VDP_CLIENT_PORT, &grab);
    assert_eq!(
        client_messages(&mut a, 1),
        vec![grab.clone()],
        "A took over"
    );

    // The VMM's link goes away and comes back: clients are told both, and A starts again.
    h.reset_agent_link();
    assert_eq!(u32_at(&wait_for(&mut a, 108), 0), 0);
    assert!(guest.closed());
    let mut guest = Guest::attach(&h);
    // The agent answers the probe with its capabilities: connected again.
    guest.announce(0);
    assert_eq!(u32_at(&wait_for(&mut a, 115), 0), 10);
    agent_start(&mut a);
    guest.send(VDP_CLIENT_PORT, &grab);
    assert_eq!(client_messages(&mut a, 1), vec![grab]);
}

/// The client mouse mode through the agent (spice-server's agent mouse): with no absolute
/// pointer in the VMM, only the server mode is offered until an agent connects; then the client
/// mode is, and a client's positions and buttons reach the agent as VD_AGENT_MOUSE_STATE on
/// the server port (buttons in the agent's bits, with the display id).
#[test]
fn client_mouse_mode_goes_through_the_agent() {
    let (h, _) = start_with(AgentPolicy::default());
    let (before, init) = main_with_tokens_cap(&h);
    assert_eq!(u32_at(&init, 8), 1, "server mode only without an agent");
    let _ = before.shutdown(std::net::Shutdown::Both);
    let mut g = Guest::attach(&h);
    g.announce(1 << 1);
    let t0 = Instant::now();
    while !h.agent_connected() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "agent never connected"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (mut main, init) = main_with_tokens_cap(&h);
    let session = u32_at(&init, 0);
    assert_eq!(u32_at(&init, 8), 3, "server and client modes with an agent");
    send_msg(&mut main, 105, &2u16.to_le_bytes());
    let mode = wait_for(&mut main, 105);
    assert_eq!(&mode[2..4], &2u16.to_le_bytes(), "client mode on");
    let (r, mut inputs) = link(h.local_addr(), session, 3, PW, &[]);
    assert_eq!(r, 0);
    let mut position = Vec::new();
    for v in [100u32, 50] {
        position.extend(v.to_le_bytes());
    }
    position.extend(1u16.to_le_bytes());
    position.push(1);
    send_msg(&mut inputs, 112, &position);
    // PRESS of the right button: the last position, both buttons.
    send_msg(&mut inputs, 113, &[3, 5, 0]);
    // Coalescing may fold the position's state into the press's: read until the press's.
    let last = loop {
        let (port, payload) = g.chunk();
        if port != VDP_SERVER_PORT {
            continue;
        }
        assert_eq!(u32_at(&payload, 4), msg_type::MOUSE_STATE);
        let state = payload[20..].to_vec();
        if state.len() >= 12 && u32_at(&state, 8) != 1 << 1 {
            break state;
        }
        assert_eq!((u32_at(&state, 0), u32_at(&state, 4)), (100, 50));
    };
    let last = &last;
    assert_eq!(last.len(), 13);
    assert_eq!(
        (u32_at(last, 0), u32_at(last, 4), u32_at(last, 8), last[12]),
        (100, 50, (1 | 4) << 1, 1)
    );
    assert!(h.agent_stats().mouse_states >= 1);
}

/// `agent-mouse=off` (QEMU's name): an agent alone does not make the client mode available.
#[test]
fn agent_mouse_off_keeps_the_server_mode() {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.password = Some(PW.into());
    cfg.agent_mouse = false;
    let h =
        saffron_server::start(cfg, Arc::new(TestSource::default()), Arc::new(NullInput)).unwrap();
    let mut g = Guest::attach(&h);
    g.announce(1 << 1);
    let t0 = Instant::now();
    while !h.agent_connected() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "agent never connected"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (_main, init) = main_with_tokens_cap(&h);
    assert_eq!(u32_at(&init, 8), 1, "server mode only");
}
