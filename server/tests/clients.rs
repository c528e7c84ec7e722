//! `ServerHandle::clients` (the control socket's `client_info`): each session with its peer,
//! its linked channels and their byte counts, and the main channel's ping round trip.

mod common;

use std::time::{Duration, Instant};

use common::*;
use saffron_server::ClientInfo;
use saffron_server::client::Session;
use saffron_server::wire::{channel, msg};

/// Polls `clients()` until `done` accepts the snapshot (or 10 s pass, then returns the last).
fn wait_clients(
    h: &saffron_server::ServerHandle,
    done: impl Fn(&[ClientInfo]) -> bool,
) -> Vec<ClientInfo> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = h.clients();
        if done(&c) || Instant::now() > deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sessions_channels_bytes_and_rtt() {
    let (h, src) = start(Some("pw"));
    src.set(gradient(64, 48, 1, 0));
    assert!(h.clients().is_empty());

    let mut session = Session::connect(h.local_addr(), "pw").unwrap();
    // The first PING comes right after INIT; reading it answers it, and the server then
    // knows the round trip.
    loop {
        if session.main.read().unwrap().0 == msg::PING {
            break;
        }
    }
    let mut display = session.display().unwrap();
    let mut screen = Screen::new();
    while screen.step(&mut display).unwrap() != msg::DISPLAY_MARK {}
    let mut cursor = session.cursor().unwrap();
    assert!(matches!(
        cursor.read().unwrap(),
        saffron_server::client::CursorMessage::Init { .. }
    ));

    // The server counts a message once written, which can be just after the client read it.
    let (read, cursor_read) = (display.bytes_read, cursor.channel.bytes_read);
    let clients = wait_clients(&h, |c| {
        c.len() == 1
            && c[0].rtt.is_some()
            && c[0].channels.len() == 3
            && c[0].channels[1].bytes_sent == read
            && c[0].channels[2].bytes_sent == cursor_read
    });
    assert_eq!(clients.len(), 1, "{clients:?}");
    let c = &clients[0];
    assert_eq!(c.session_id, session.id);
    assert_eq!(c.peer, Some(session.main.stream.local_addr().unwrap()));
    assert!(c.rtt.is_some(), "the PONG gave a round trip");
    let kinds: Vec<(u8, u8, bool)> = c
        .channels
        .iter()
        .map(|ch| (ch.channel_type, ch.channel_id, ch.tls))
        .collect();
    assert_eq!(
        kinds,
        [
            (channel::MAIN, 0, false),
            (channel::DISPLAY, 0, false),
            (channel::CURSOR, 0, false)
        ]
    );
    assert_eq!(
        c.channels[1].peer,
        Some(display.stream.local_addr().unwrap())
    );
    // The display channel shows its pipe's counters: the surface, its monitor and its
    // pixels went through it; only display channels have them.
    let pipe = c.channels[1].display.expect("display pipe counters");
    assert!(pipe.pushed >= 3, "{pipe:?}");
    assert_eq!(pipe.overflows, 0, "{pipe:?}");
    assert!(c.channels[0].display.is_none() && c.channels[2].display.is_none());
    // What the server counts sent is what the client counted read (data stage only: the
    // client's count starts after the link too).
    let main_in = c.channels[0].bytes_sent;
    assert!(main_in > 32, "INIT and a PING at least");
    assert!(c.channels[0].bytes_received >= 6 + 12, "the PONG, at least");
    assert_eq!(
        c.channels[1].bytes_sent, display.bytes_read,
        "display bytes: server sent == client read"
    );
    assert!(c.channels[1].bytes_received >= 6 + 14, "DISPLAY_INIT");
    assert_eq!(
        c.channels[2].bytes_sent, cursor_read,
        "cursor bytes: SET_ACK and INIT"
    );

    // A channel that ends leaves the list; a session that ends leaves the snapshot.
    drop(cursor);
    let clients = wait_clients(&h, |c| c.first().is_some_and(|c| c.channels.len() == 2));
    assert_eq!(clients[0].channels.len(), 2);
    drop(display);
    drop(session);
    assert!(wait_clients(&h, |c| c.is_empty()).is_empty());
}
