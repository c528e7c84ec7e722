//! The display channel seen by a Rust client: the decoded screen equals the source.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn screenshot_and_updates_match_the_source() {
    let (h, src) = start(Some("pw"));
    let frame = gradient(1024, 768, 1, 0);
    src.set(frame.clone());
    let addr = h.local_addr();
    let (_main, id) = main_session(addr, "pw");
    let (r, mut d) = link(addr, id, 2, "pw", &[1 << 1]);
    assert_eq!(r, 0);
    send_msg(&mut d, 101, &[1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
    let mut screen = Screen::new();
    let mut seen = Vec::new();
    loop {
        let ty = screen.step(&mut d).unwrap();
        seen.push(ty);
        if ty == 102 {
            break;
        }
    }
    assert_eq!(seen.first(), Some(&3), "SET_ACK first");
    assert!(
        seen.contains(&317),
        "MONITORS_CONFIG for a client with the cap"
    );
    assert_eq!(screen.pixels, *frame.bgrx);

    // A small solid change arrives as a DRAW_FILL, a small patterned one as a DRAW_COPY.
    let mut changed = frame.clone();
    for (serial, solid, want) in [(2u64, true, 302u16), (3, false, 304)] {
        let mut px = (*changed.bgrx).clone();
        for y in 100..110usize {
            for x in 200..220usize {
                let v = if solid { 3 } else { (x * 7 + y) as u8 };
                px[(y * 1024 + x) * 4..][..4].copy_from_slice(&[1, 2, v, 0]);
            }
        }
        let _ = serial;
        changed = saffron_server::Frame {
            bgrx: std::sync::Arc::new(px),
            ..frame.clone()
        };
        src.set(changed.clone());
        let deadline = Instant::now() + Duration::from_secs(10);
        while screen.pixels != *changed.bgrx {
            assert!(Instant::now() < deadline, "update not received");
            assert_eq!(screen.step(&mut d).unwrap(), want);
        }
    }

    // A resolution change recreates the surface.
    let deadline = Instant::now() + Duration::from_secs(10);
    let small = gradient(320, 200, 3, 0x55);
    src.set(small.clone());
    while screen.width != 320 || screen.pixels != *small.bgrx {
        assert!(Instant::now() < deadline, "resize not received");
        screen.step(&mut d).unwrap();
    }
}

#[test]
fn a_client_that_never_reads_does_not_stall_another() {
    let (h, src) = start(Some("pw"));
    src.set(gradient(1024, 768, 1, 0));
    let addr = h.local_addr();
    let (_m1, id1) = main_session(addr, "pw");
    let (_r, _stuck) = link(addr, id1, 2, "pw", &[]);
    let (_m2, id2) = main_session(addr, "pw");
    let (_r, mut d) = link(addr, id2, 2, "pw", &[]);
    let mut screen = Screen::new();
    for serial in 2..40u64 {
        src.set(gradient(1024, 768, serial, serial as u32));
        std::thread::sleep(Duration::from_millis(20));
    }
    let last = gradient(1024, 768, 40, 40);
    src.set(last.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    while screen.pixels != *last.bgrx {
        assert!(Instant::now() < deadline);
        screen.step(&mut d).unwrap();
    }
}

/// The library client (used by the real-guest tests and the benchmark) sees what the source
/// shows, and counts the wire bytes it read: fewer than the raw picture, since it links as
/// spice-gtk does and the default compression (auto_glz) applies.
#[test]
fn library_client_session_sees_the_source() {
    use saffron_server::client::Session;
    let (h, src) = start(Some("pw"));
    let frame = gradient(640, 480, 1, 7);
    src.set(frame.clone());
    let session = Session::connect(h.local_addr(), "pw").unwrap();
    let mut d = session.display().unwrap();
    let mut screen = Screen::new();
    while screen.step(&mut d).unwrap() != 102 {}
    assert_eq!(screen.pixels, *frame.bgrx);
    assert!(
        d.bytes_read > 0 && d.bytes_read < 640 * 480 * 4,
        "{} bytes counted",
        d.bytes_read
    );
    assert!(
        screen.images.keys().all(|t| *t != 0),
        "compressed images: {:?}",
        screen.images
    );
    match Session::connect(h.local_addr(), "wrong") {
        Err(saffron_server::client::ClientError::Refused(7)) => {}
        Err(e) => panic!("wrong password: {e}"),
        Ok(_) => panic!("wrong password accepted"),
    }
}

/// A console-like scroll from a frame source reaches the client, whose copy ends exactly equal
/// to the source. (A frame source only knows pixels: scrolls the guest makes with COPY_BITS
/// reach clients as COPY_BITS, see the worker's and the display channel's tests.)
#[test]
fn a_scroll_from_a_frame_source_reaches_the_client_exactly() {
    use saffron_server::client::Session;
    let (h, src) = start(Some("pw"));
    let text = |first: u32, serial: u64| {
        let px: Vec<u32> = (0..480u32)
            .flat_map(|y| (0..640u32).map(move |x| (x, y)))
            .map(|(x, y)| {
                let line = first + y / 16;
                if y % 16 < 12 && x < 100 + (line * 37) % 500 {
                    line.wrapping_mul(2654435761)
                        .wrapping_add(x * 40503 + (y % 16) * 7919)
                        & 0x00ff_ffff
                } else {
                    0
                }
            })
            .collect();
        {
            let _ = serial;
            saffron_server::Frame::from_xrgb(640, 480, &px)
        }
    };
    src.set(text(0, 1));
    let session = Session::connect(h.local_addr(), "pw").unwrap();
    let mut d = session.display().unwrap();
    let mut screen = Screen::new();
    while screen.step(&mut d).unwrap() != 102 {}
    for (i, first) in [3u32, 4, 10].into_iter().enumerate() {
        let f = text(first, 2 + i as u64);
        src.set(f.clone());
        let deadline = Instant::now() + Duration::from_secs(10);
        while screen.pixels != *f.bgrx {
            assert!(
                Instant::now() < deadline,
                "scroll to line {first} not received"
            );
            screen.step(&mut d).unwrap();
        }
    }
}
