//! Clients that come and go: each disconnect (clean or abrupt) frees everything the server
//! held for it, so a client can reconnect again and again, past the connection limit, and
//! always gets the whole picture.

mod common;

use std::time::{Duration, Instant};

use common::*;
use saffron_server::MAX_CONNECTIONS;
use saffron_server::client::{Screen, Session};

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn clients_reconnect_cleanly_past_the_connection_limit() {
    let (h, src) = start(Some("pw"));
    let frame = gradient(320, 200, 1, 3);
    src.set(frame.clone());
    // Two or three connections per round (main, display, and a cursor link in the abrupt
    // rounds): together more than MAX_CONNECTIONS, which only works if each is given back.
    let rounds = MAX_CONNECTIONS / 2 + 2;
    for round in 0..rounds {
        let session = Session::connect(h.local_addr(), "pw").expect("main channel");
        let mut d = session.display().expect("display channel");
        let mut screen = Screen::new();
        while screen.step(&mut d).expect("display message") != 102 {}
        assert_eq!(
            screen.pixels, *frame.bgrx,
            "round {round}: the whole picture"
        );
        // Every session starts with an empty pixmap cache: the picture is sent (and cached),
        // never referenced from a cache the new client does not have (the library client
        // would refuse a FROM_CACHE it cannot resolve).
        assert_eq!(screen.images.get(&103), None, "round {round}");
        assert_eq!(
            screen.cache.len(),
            1,
            "round {round}: the picture was cached"
        );
        if round % 2 == 0 {
            // Clean: the client says goodbye on each channel (DISCONNECTING).
            let bye = [0u8; 12];
            d.send(6, &bye).expect("disconnecting");
            let mut main = session.main;
            main.send(6, &bye).expect("disconnecting");
        } else {
            // Abrupt: a cursor link too, then every socket just closes.
            let _cursor = session.cursor().expect("cursor channel");
            drop(d);
            drop(session);
        }
        wait_until("the server to forget the client", || {
            h.clients().is_empty() && h.connections() == 0
        });
    }
}
