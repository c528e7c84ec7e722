//! The TLS port: a rustls client that trusts a test CA links over TLS 1.3 and 1.2, a plain link
//! to a secure channel gets NEED_SECURED, bad certificates stop the server from starting, and
//! the real client (`spicy-screenshot`) gets the exact frame over TLS.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rcgen::KeyPair;
use saffron_server::{NullInput, ServerConfig, ServerError};

const MAIN: u8 = 1;
const DISPLAY: u8 = 2;
const INPUTS: u8 = 3;
const CURSOR: u8 = 4;
const NEED_SECURED: u32 = 5;

/// A plain link for `ch`: the server answers NEED_SECURED and closes.
fn plain_link_error(addr: SocketAddr, ch: u8) -> u32 {
    let mut s = connect(addr);
    s.write_all(&link_bytes(0, ch, &[0x9], &[])).unwrap();
    let (err, _) = reply_of(&mut s);
    assert!(
        is_closed(&mut s),
        "connection must close after a link error"
    );
    err
}

#[test]
fn tls_link_main_and_display_and_need_secured() {
    let pki = Pki::new("link");
    let (h, src) = pki.start(&[MAIN, DISPLAY, INPUTS, CURSOR]);
    // This hand-written client reads raw bitmaps only.
    h.set_image_compression(saffron_server::Compression::Off);
    let tls_addr = h.tls_local_addr().unwrap();
    let frame = gradient(320, 200, 1, 7);
    src.set(frame.clone());

    // Every secure channel refuses a plain link, before any key is sent.
    for ch in [MAIN, DISPLAY, INPUTS, CURSOR] {
        assert_eq!(plain_link_error(h.local_addr(), ch), NEED_SECURED);
    }
    // A plain byte stream on the TLS port is not a handshake: closed, no link reply.
    let mut s = connect(tls_addr);
    s.write_all(&link_bytes(0, MAIN, &[0x9], &[])).unwrap();
    let mut b = [0u8; 16];
    assert!(
        s.read_exact(&mut b).is_err() || u32_at(&b, 0) != MAGIC,
        "plain link on the TLS port must not get a Spice reply"
    );

    // Wrong password over TLS.
    let mut bad = tls_connect(tls_addr, &pki.ca_der, false);
    assert_eq!(link_over(&mut bad, 0, MAIN, "nope"), 7, "PERMISSION_DENIED");

    // Right password: main channel over TLS 1.3, MAIN_INIT arrives.
    let mut main = tls_connect(tls_addr, &pki.ca_der, false);
    assert_eq!(link_over(&mut main, 0, MAIN, "pw"), 0);
    let (ty, body) = msg_of(&mut main);
    assert_eq!(ty, 103, "MAIN_INIT first");
    let id = u32_at(&body, 0);
    assert_ne!(id, 0);

    // Display over TLS 1.2 with ACK flow control: the whole frame arrives exactly.
    let mut disp = tls_connect(tls_addr, &pki.ca_der, true);
    assert_eq!(link_over(&mut disp, id, DISPLAY, "pw"), 0);
    send_over(&mut disp, 101, &[0; 12]); // DISPLAY_INIT
    let (mut window, mut received) = (0u32, 0u32);
    let (w, hgt) = (frame.width as usize, frame.height as usize);
    let mut screen = vec![0u8; w * hgt * 4];
    let mut covered = 0usize;
    while covered < w * hgt {
        let (ty, b) = msg_of(&mut disp);
        if ty == 3 {
            // SET_ACK → ACK_SYNC(generation)
            window = u32_at(&b, 4);
            send_over(&mut disp, 1, &b[0..4]);
            continue;
        }
        if ty == 304 {
            // DRAW_COPY of a raw top-down 32-bit bitmap (layout as in tests/common).
            let (top, left, bottom, right) =
                (u32_at(&b, 4), u32_at(&b, 8), u32_at(&b, 12), u32_at(&b, 16));
            let img = u32_at(&b, 21) as usize;
            let bm = img + 18;
            let stride = u32_at(&b, bm + 10) as usize;
            let data = &b[bm + 18..];
            let rw = (right - left) as usize * 4;
            for y in 0..(bottom - top) as usize {
                let dst = ((top as usize + y) * w + left as usize) * 4;
                screen[dst..dst + rw].copy_from_slice(&data[y * stride..y * stride + rw]);
            }
            covered += ((right - left) * (bottom - top)) as usize;
        }
        if window > 0 {
            received += 1;
            if received.is_multiple_of(window) {
                send_over(&mut disp, 2, &[]);
            }
        }
    }
    assert!(screen == *frame.bgrx, "frame over TLS differs");

    // Closing the main channel ends the TLS display channel too.
    drop(main);
    disp.sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match disp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

#[test]
fn plain_channels_not_listed_stay_plain() {
    let pki = Pki::new("mixed");
    let (h, _src) = pki.start(&[DISPLAY]);
    // Main is not secure: a plain link works as before; display needs TLS.
    let (s, id) = main_session(h.local_addr(), "pw");
    let _ = s;
    assert_eq!(plain_link_error(h.local_addr(), DISPLAY), NEED_SECURED);
    // The TLS port still serves non-secure channels too (as spice-server does).
    let mut t = tls_connect(h.tls_local_addr().unwrap(), &pki.ca_der, false);
    assert_eq!(link_over(&mut t, id, CURSOR, "pw"), 0);
    // client_info tells the plain main channel from the TLS cursor channel.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let channels = loop {
        let clients = h.clients();
        assert_eq!(clients.len(), 1);
        if clients[0].channels.len() == 2 || std::time::Instant::now() > deadline {
            break clients[0].channels.clone();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let kinds: Vec<(u8, bool)> = channels.iter().map(|c| (c.channel_type, c.tls)).collect();
    assert_eq!(kinds, [(MAIN, false), (CURSOR, true)]);
}

#[test]
fn bad_certificate_or_key_refuses_to_start() {
    let pki = Pki::new("bad");
    let start = |cfg: ServerConfig| {
        saffron_server::start(cfg, Arc::new(TestSource::default()), Arc::new(NullInput))
    };
    let expect_tls_err = |cfg: ServerConfig, needle: &str| {
        let err = match start(cfg) {
            Err(e @ ServerError::Tls(_)) => e.to_string(),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("started with a bad TLS configuration"),
        };
        assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    };

    let mut cfg = pki.config(&[]);
    cfg.tls.as_mut().unwrap().cert_chain = pki.dir.join("missing.pem");
    expect_tls_err(cfg, "missing.pem");

    // A key that does not belong to the certificate.
    let other = pki.dir.join("other-key.pem");
    std::fs::write(&other, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let mut cfg = pki.config(&[]);
    cfg.tls.as_mut().unwrap().key = other;
    expect_tls_err(cfg, "rejected");

    // A certificate file with no certificate in it.
    let mut cfg = pki.config(&[]);
    cfg.tls.as_mut().unwrap().cert_chain = pki.dir.join("server-key.pem");
    expect_tls_err(cfg, "no PEM certificate");

    // A key file with no key in it.
    let mut cfg = pki.config(&[]);
    cfg.tls.as_mut().unwrap().key = pki.dir.join("ca-cert.pem");
    expect_tls_err(cfg, "private key");
}

// ---- The real client ----

const SPICY: &str = "spicy-screenshot";

/// spicy-screenshot has no CA option, and spice-gtk's default CA file
/// (`$HOME/.spicec/spice_truststore.pem`) is only set by clients that use its option group;
/// without one it trusts OpenSSL's default verify paths, which `SSL_CERT_FILE` overrides.
fn run_spicy(ca_file: &Path, plain: u16, tls: u16, out: &Path) -> std::process::Output {
    let mut cmd = Command::new("timeout");
    cmd.env("SSL_CERT_FILE", ca_file)
        .env_remove("SSL_CERT_DIR")
        .args(["60", SPICY, "-h", "127.0.0.1", "-w", "pw"])
        .args(["-p", &plain.to_string(), "-s", &tls.to_string()])
        .arg("-o")
        .arg(out);
    cmd.output().unwrap()
}

#[test]
fn spicy_screenshot_over_tls_saves_the_exact_frame() {
    assert!(
        Command::new(SPICY).arg("--version").output().is_ok(),
        "spicy-screenshot missing: apt-get install spice-client-gtk"
    );
    let pki = Pki::new("spicy");
    // Every channel secure: spice-gtk links main on the plain port, gets NEED_SECURED and
    // switches to the TLS port, as with spice-server.
    let (h, src) = pki.start(&[MAIN, DISPLAY, INPUTS, CURSOR]);
    let frame = gradient(1024, 768, 1, 0);
    src.set(frame.clone());
    let (plain, tls) = (h.local_addr().port(), h.tls_local_addr().unwrap().port());

    let out = pki.dir.join("ok.ppm");

    // Trusting only another CA, the client must refuse our certificate.
    let other = Pki::new("spicy-other");
    let res = run_spicy(&other.dir.join("ca-cert.pem"), plain, tls, &out);
    assert!(!res.status.success(), "an untrusted certificate must fail");
    assert!(
        String::from_utf8_lossy(&res.stderr).contains("certificate verification"),
        "must fail on the certificate: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(!out.exists());

    let res = run_spicy(&pki.dir.join("ca-cert.pem"), plain, tls, &out);
    assert!(
        res.status.success(),
        "spicy-screenshot over TLS failed: {}\n{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    assert_ppm_shows(&out, &frame);
}
