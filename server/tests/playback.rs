//! The playback channel with the library client: listed only when enabled, linked, and the
//! hub's audio arrives byte for byte in 10 ms DATA messages stamped on the device's clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use saffron_server::client::{PlaybackCapture, Session};
use saffron_server::wire::msg;
use saffron_server::{NullInput, ServerConfig};

fn server(playback: bool) -> saffron_server::ServerHandle {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.password = Some("pw".into());
    cfg.sound = playback;
    saffron_server::start(cfg, Arc::new(TestSource::default()), Arc::new(NullInput)).unwrap()
}

fn channels_list(s: &mut Session) -> Vec<u8> {
    s.main.send(msg::MSGC_MAIN_ATTACH_CHANNELS, &[]).unwrap();
    loop {
        let (ty, body) = s.main.read().unwrap();
        if ty == msg::MAIN_CHANNELS_LIST {
            return body[4..].chunks(2).map(|c| c[0]).collect();
        }
    }
}

#[test]
fn playback_only_when_enabled() {
    let h = server(false);
    let mut s = Session::connect(h.local_addr(), "pw").unwrap();
    assert_eq!(channels_list(&mut s), vec![2, 4, 3]);
    assert!(s.playback(0).is_err(), "not available");
}

#[test]
fn pcm_arrives_in_order_with_stamps() {
    let h = server(true);
    let mut s = Session::connect(h.local_addr(), "pw").unwrap();
    assert_eq!(channels_list(&mut s), vec![2, 4, 3, 5, 6]);
    let mut ch = s.playback(1 << 1).unwrap();
    let hub = h.playback();
    // Wait for the channel to be attached (its MODE is queued on attach).
    let mut cap = PlaybackCapture::default();
    let (ty, body) = ch.read().unwrap();
    cap.handle(ty, &body).unwrap();
    assert_eq!(cap.mode, Some(1));
    let pcm: Vec<u8> = (0..48_000u32 * 4 / 10).map(|i| (i * 7) as u8).collect();
    hub.start();
    // Parts that do not line up with 10 ms frames, each stamped with when it plays on the
    // device's clock (192 000 bytes a second from t0).
    let t0 = std::time::Instant::now();
    for (i, part) in pcm.chunks(3840 + 4).enumerate() {
        let offset = (i * (3840 + 4)) as u64;
        hub.write_at(
            part,
            t0 + Duration::from_micros(offset * 1_000_000 / 192_000),
        );
    }
    hub.stop();
    while cap.stops == 0 {
        let (ty, body) = ch.read().unwrap();
        cap.handle(ty, &body).unwrap();
    }
    assert_eq!(cap.volume, Some(vec![u16::MAX, u16::MAX]));
    assert_eq!(cap.mute, Some(false));
    assert_eq!(cap.starts.len(), 1);
    let (channels, format, rate, _) = cap.starts[0];
    assert_eq!((channels, format, rate), (2, 1, 48_000));
    assert_eq!(cap.pcm, pcm, "byte for byte");
    assert_eq!(cap.stamps.len(), 10, "10 ms messages");
    assert!(
        cap.stamps.windows(2).all(|w| w[1].0 >= w[0].0),
        "stamps never go back"
    );
}
