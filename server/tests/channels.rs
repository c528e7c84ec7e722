//! Main, cursor and inputs channels with the Rust test client.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use saffron_server::{InputSink, KeyEvent, PointerEvent, ServerConfig};

#[derive(Default)]
struct Recorder {
    keys: Mutex<Vec<KeyEvent>>,
    pointer: Mutex<Vec<PointerEvent>>,
}

impl InputSink for Recorder {
    fn key(&self, e: KeyEvent) {
        self.keys.lock().unwrap().push(e);
    }
    fn pointer(&self, e: PointerEvent) {
        self.pointer.lock().unwrap().push(e);
    }
    fn has_absolute_pointer(&self) -> bool {
        true
    }
}

#[test]
fn main_mouse_modes_ping_and_name() {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.password = Some("pw".into());
    cfg.name = Some("vm1".into());
    let rec = Arc::new(Recorder::default());
    let h = saffron_server::start(cfg, Arc::new(TestSource::default()), rec.clone()).unwrap();
    let (r, mut main) = link(h.local_addr(), 0, 1, "pw", &[1 << 1]);
    assert_eq!(r, 0);
    let (ty, init) = read_msg(&mut main);
    assert_eq!(ty, 103);
    assert_eq!(
        u32_at(&init, 8),
        3,
        "SERVER|CLIENT with an absolute pointer"
    );
    assert_eq!(u32_at(&init, 12), 2, "CLIENT current");
    let (ty, name) = read_msg(&mut main);
    assert_eq!(
        (ty, &name[..]),
        (113, &[4, 0, 0, 0, b'v', b'm', b'1', 0][..])
    );
    assert_eq!(read_msg(&mut main).0, 114);
    let (ty, ping) = read_msg(&mut main);
    assert_eq!(ty, 4);
    send_msg(&mut main, 3, &ping[..12]);
    send_msg(&mut main, 105, &1u16.to_le_bytes());
    let (ty, mode) = read_msg(&mut main);
    assert_eq!((ty, &mode[..]), (105, &[3, 0, 1, 0][..]));
    // Too-short MOUSE_MODE_REQUEST: the channel closes.
    send_msg(&mut main, 105, &[1]);
    assert!(is_closed(&mut main));
}

#[test]
fn inputs_reach_the_sink_and_motion_is_acked() {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.password = Some("pw".into());
    let rec = Arc::new(Recorder::default());
    let h = saffron_server::start(cfg, Arc::new(TestSource::default()), rec.clone()).unwrap();
    let (_main, id) = main_session(h.local_addr(), "pw");
    let (r, mut cursor) = link(h.local_addr(), id, 4, "pw", &[]);
    assert_eq!(r, 0);
    assert_eq!(read_msg(&mut cursor).0, 3, "SET_ACK first, as spice-server");
    let (ty, body) = read_msg(&mut cursor);
    assert_eq!(
        (ty, &body[..]),
        (101, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0][..])
    );
    let (r, mut inputs) = link(h.local_addr(), id, 3, "pw", &[]);
    assert_eq!(r, 0);
    assert_eq!(read_msg(&mut inputs), (101, vec![0, 0]));
    send_msg(&mut inputs, 101, &0x1eu32.to_le_bytes());
    send_msg(&mut inputs, 102, &0x9eu32.to_le_bytes());
    for i in 0..8u32 {
        let mut b = (i * 10).to_le_bytes().to_vec();
        b.extend(5u32.to_le_bytes());
        b.extend(0u16.to_le_bytes());
        b.push(0);
        send_msg(&mut inputs, 112, &b);
    }
    send_msg(&mut inputs, 113, &[1, 1, 0]);
    assert_eq!(read_msg(&mut inputs), (111, vec![]));
    assert_eq!(read_msg(&mut inputs), (111, vec![]));
    // Oversized message: closed without reading it.
    let mut m = 101u16.to_le_bytes().to_vec();
    m.extend(u32::MAX.to_le_bytes());
    std::io::Write::write_all(&mut inputs, &m).unwrap();
    assert!(is_closed(&mut inputs));
    let keys = rec.keys.lock().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys[0],
        KeyEvent {
            scancode: 0x1e,
            pressed: true
        }
    );
    let p = rec.pointer.lock().unwrap();
    assert_eq!(p.len(), 9);
    assert_eq!(
        p[8],
        PointerEvent::Press {
            button: 1,
            buttons: 1
        }
    );
}

/// Without a guest agent, as spice-server: MAIN_INIT says agent_connected 0 (with the usual 10
/// tokens), no AGENT_CONNECTED/AGENT_DISCONNECTED follows, and agent messages a client sends
/// anyway (AGENT_START, AGENT_TOKEN, AGENT_DATA) are dropped without ending the session.
#[test]
fn no_agent_is_announced_and_agent_messages_are_dropped() {
    let (h, _src) = start(Some("pw"));
    let (r, mut s) = link(h.local_addr(), 0, 1, "pw", &[]);
    assert_eq!(r, 0);
    let (ty, init) = read_msg(&mut s);
    assert_eq!(ty, 103);
    assert_eq!(u32_at(&init, 16), 0, "agent_connected");
    assert_eq!(
        u32_at(&init, 20),
        10,
        "agent tokens (REDS_AGENT_WINDOW_SIZE)"
    );
    assert_eq!(read_msg(&mut s).0, 4, "a PING, no agent message");
    send_msg(&mut s, 106, &u32::MAX.to_le_bytes());
    send_msg(&mut s, 108, &5u32.to_le_bytes());
    send_msg(&mut s, 107, &[1, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0]);
    // The session is still served: ATTACH_CHANNELS is answered.
    send_msg(&mut s, 104, &[]);
    loop {
        let (ty, body) = read_msg(&mut s);
        assert!(![107, 108].contains(&ty), "no agent message comes back");
        if ty == 104 {
            assert_eq!(u32_at(&body, 0), 3, "display, cursor, inputs");
            break;
        }
    }
}

/// Shutting the server down (a guest power-off) ends every client's connections before it
/// returns, so that each session's end is logged while the process still runs.
#[test]
fn shutdown_waits_for_the_connections_it_closes() {
    let (mut h, src) = start(Some("pw"));
    src.set(gradient(64, 32, 1, 0));
    let (mut main, id) = main_session(h.local_addr(), "pw");
    let (r, _display) = link(h.local_addr(), id, 2, "pw", &[]);
    assert_eq!(r, 0);
    send_msg(&mut main, 104, &[]);
    while read_msg(&mut main).0 != 104 {}
    assert_eq!(h.connections(), 2);
    h.shutdown();
    assert_eq!(h.connections(), 0, "every connection thread ended");
    assert!(is_closed(&mut main));
}
