//! Link-stage tests against a real listener: tickets, malformed links, connection ids.

mod common;

use std::io::Write;

use common::*;

#[test]
fn correct_and_wrong_password() {
    let (h, _src) = start(Some("s3cret"));
    let (r, _main) = link(h.local_addr(), 0, 1, "s3cret", &[]);
    assert_eq!(r, 0);
    let (r, mut s) = link(h.local_addr(), 0, 1, "wrong", &[]);
    assert_eq!(r, 7, "PERMISSION_DENIED");
    assert!(is_closed(&mut s));
    let (r, mut s) = link(h.local_addr(), 0, 1, "", &[]);
    assert_eq!(r, 7);
    assert!(is_closed(&mut s));
}

#[test]
fn ticketing_without_password_refuses_everyone() {
    let (h, _src) = start(None);
    let (r, _s) = link(h.local_addr(), 0, 1, "", &[]);
    assert_eq!(r, 7);
}

#[test]
fn expired_password_is_refused() {
    let (h, _src) = start(None);
    h.set_ticket("pw", Some(std::time::Duration::ZERO)).unwrap();
    let (r, _s) = link(h.local_addr(), 0, 1, "pw", &[]);
    assert_eq!(r, 7);
    h.set_ticket("pw", None).unwrap();
    let (r, _s) = link(h.local_addr(), 0, 1, "pw", &[]);
    assert_eq!(r, 0);
}

fn raw_link_error(addr: std::net::SocketAddr, bytes: &[u8]) -> u32 {
    let mut s = connect(addr);
    s.write_all(bytes).unwrap();
    let (err, _) = read_reply(&mut s);
    assert!(
        is_closed(&mut s),
        "connection must close after a link error"
    );
    err
}

#[test]
fn malformed_links_get_the_right_error_while_others_keep_working() {
    let (h, _src) = start(Some("pw"));
    let addr = h.local_addr();
    let (mut main, _id) = main_session(addr, "pw");

    let good = link_bytes(0, 1, &[0x9], &[]);
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert_eq!(raw_link_error(addr, &bad_magic), 2, "INVALID_MAGIC");

    let mut bad_version = good.clone();
    bad_version[4] = 1;
    assert_eq!(raw_link_error(addr, &bad_version), 4, "VERSION_MISMATCH");

    let mut huge = good.clone();
    huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(raw_link_error(addr, &huge), 3, "INVALID_DATA");

    let mut tiny = good.clone();
    tiny[12..16].copy_from_slice(&17u32.to_le_bytes());
    assert_eq!(raw_link_error(addr, &tiny), 3);

    // 1025 common caps (over the per-set bound).
    let mut caps = good.clone();
    caps[16 + 6..16 + 10].copy_from_slice(&1025u32.to_le_bytes());
    assert_eq!(raw_link_error(addr, &caps), 3);

    // Cap counts that overflow u32 when multiplied by 4 or summed.
    let mut wrap = good.clone();
    wrap[16 + 6..16 + 10].copy_from_slice(&0x4000_0000u32.to_le_bytes());
    wrap[16 + 10..16 + 14].copy_from_slice(&0xC000_0000u32.to_le_bytes());
    assert_eq!(raw_link_error(addr, &wrap), 3);

    // Caps that claim more words than the message holds.
    let mut past_end = good.clone();
    past_end[16 + 10..16 + 14].copy_from_slice(&1u32.to_le_bytes());
    assert_eq!(raw_link_error(addr, &past_end), 3);

    // The first client is unaffected.
    send_msg(&mut main, 104, &[]);
    loop {
        let (ty, body) = read_msg(&mut main);
        if ty == 104 {
            assert_eq!(u32_at(&body, 0), 3);
            assert_eq!(&body[4..10], &[2, 0, 4, 0, 3, 0]);
            break;
        }
    }
}

#[test]
fn secondary_channels_need_a_live_session() {
    let (h, _src) = start(Some("pw"));
    let addr = h.local_addr();
    let (r, mut s) = link(addr, 0x1234_5678, 2, "pw", &[]);
    assert_eq!(r, 8, "BAD_CONNECTION_ID");
    assert!(is_closed(&mut s));
    let (main, id) = main_session(addr, "pw");
    let (r, _s) = link(addr, id, 5, "pw", &[]);
    assert_eq!(r, 9, "CHANNEL_NOT_AVAILABLE");
    let (r, _display) = link(addr, id, 2, "pw", &[]);
    assert_eq!(r, 0);
    // A wrong password still wins over a right id.
    let (r, _s) = link(addr, id, 2, "nope", &[]);
    assert_eq!(r, 7);
    drop(main);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (r, _s) = link(addr, id, 2, "pw", &[]);
    assert_eq!(r, 8, "session ended with its main channel");
}

#[test]
fn insecure_listen_is_refused() {
    let mut cfg = saffron_server::ServerConfig::new("0.0.0.0:0".parse().unwrap());
    cfg.disable_ticketing = true;
    let src = std::sync::Arc::new(TestSource::default());
    let r = saffron_server::start(
        cfg.clone(),
        src.clone(),
        std::sync::Arc::new(saffron_server::NullInput),
    );
    assert!(matches!(
        r,
        Err(saffron_server::ServerError::InsecureListen(_))
    ));
    cfg.insecure = true;
    cfg.addr = "127.0.0.1:0".parse().unwrap();
    assert!(
        saffron_server::start(cfg, src, std::sync::Arc::new(saffron_server::NullInput)).is_ok()
    );
}

/// `record_dir` keeps, per connection, exactly the bytes the client sent (the fuzz seeds of
/// `ci/record-seeds` come from it): link message, auth mechanism, ticket, data messages.
#[test]
fn record_dir_keeps_exactly_what_each_client_sent() {
    let dir = std::env::temp_dir().join(format!("saffron-spice-rec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = saffron_server::ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.password = Some("pw".into());
    cfg.record_dir = Some(dir.clone());
    let h = saffron_server::start(
        cfg,
        std::sync::Arc::new(TestSource::default()),
        std::sync::Arc::new(saffron_server::NullInput),
    )
    .unwrap();
    let (mut main, _id) = main_session(h.local_addr(), "pw");
    send_msg(&mut main, 104, &[]);
    while read_msg(&mut main).0 != 104 {}
    drop(main);
    drop(h);
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one file per connection: {files:?}");
    let bytes = std::fs::read(&files[0]).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    // The library client offers AUTH_SELECTION, AUTH_SPICE and MINI_HEADER.
    let link = link_bytes(0, 1, &[0xb], &[]);
    let mut tail = 104u16.to_le_bytes().to_vec();
    tail.extend(0u32.to_le_bytes());
    assert_eq!(bytes.len(), link.len() + 4 + 128 + tail.len());
    assert_eq!(&bytes[..link.len()], &link[..]);
    assert_eq!(&bytes[link.len()..link.len() + 4], &1u32.to_le_bytes());
    assert_eq!(&bytes[bytes.len() - tail.len()..], &tail[..]);
}
