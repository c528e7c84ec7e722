//! Browsers on the Spice ports: the WebSocket handshake (and its refusals), the Spice link over
//! WebSocket with the ticket and `secure_channels` exactly as over TCP (plain and TLS), frames
//! cut any way, pings, the web client's files, and hostile clients (bad handshakes, unmasked,
//! oversize and 2^63-byte frames, a slowloris request) that each lose only their own
//! connection while a TCP client and a WebSocket client carry on.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use saffron_server::ws::{self, opcode};
use saffron_server::{NullInput, ServerConfig};

const PW: &str = "web-pw";
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A minimal WebSocket client over any stream: masked binary frames out (one per write, or cut
/// in `fragment`-byte pieces), frames in with pings answered.
struct WsClient<S: Read + Write> {
    s: S,
    /// Payload bytes of the current frame not read yet.
    left: usize,
    /// Split each write into continuation frames of this many bytes (0: one frame).
    fragment: usize,
    /// The CLOSE the server sent, if any.
    closed: Option<Vec<u8>>,
}

fn client_frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = ws::frame(op, payload);
    if !fin {
        f[0] &= 0x7f;
    }
    f[1] |= 0x80;
    let at = ws::header_len(f[1]) - 4;
    f.splice(at..at, mask);
    ws::unmask(&mut f[at + 4..], mask, 0);
    f
}

fn upgrade_request(extra: &str) -> String {
    format!(
        "GET /websockify HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: binary\r\n{extra}\r\n"
    )
}

/// Reads an HTTP response head (up to the blank line).
fn response_head(s: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

impl<S: Read + Write> WsClient<S> {
    fn open(mut s: S) -> WsClient<S> {
        s.write_all(upgrade_request("").as_bytes()).unwrap();
        let head = response_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(
            head.contains(&format!(
                "Sec-WebSocket-Accept: {}\r\n",
                ws::accept_key(KEY)
            )),
            "{head}"
        );
        assert!(
            head.contains("Sec-WebSocket-Protocol: binary\r\n"),
            "{head}"
        );
        WsClient {
            s,
            left: 0,
            fragment: 0,
            closed: None,
        }
    }
}

impl<S: Read + Write> Read for WsClient<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.left > 0 {
                let want = self.left.min(buf.len());
                let n = self.s.read(&mut buf[..want])?;
                self.left -= n;
                return Ok(n);
            }
            if self.closed.is_some() {
                return Ok(0);
            }
            let mut h = [0u8; 10];
            self.s.read_exact(&mut h[..2])?;
            assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
            let len = match h[1] & 0x7f {
                126 => {
                    self.s.read_exact(&mut h[2..4])?;
                    usize::from(u16::from_be_bytes([h[2], h[3]]))
                }
                127 => {
                    self.s.read_exact(&mut h[2..10])?;
                    u64::from_be_bytes(h[2..10].try_into().unwrap()) as usize
                }
                n => usize::from(n),
            };
            match h[0] & 0x0f {
                opcode::BINARY | opcode::CONTINUATION => self.left = len,
                op => {
                    let mut p = vec![0u8; len];
                    self.s.read_exact(&mut p)?;
                    match op {
                        opcode::CLOSE => self.closed = Some(p),
                        opcode::PONG => {}
                        other => panic!("server sent opcode {other}"),
                    }
                }
            }
        }
    }
}

impl<S: Read + Write> Write for WsClient<S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.fragment == 0 || data.len() <= self.fragment {
            self.s
                .write_all(&client_frame(true, opcode::BINARY, data))?;
        } else {
            let pieces: Vec<&[u8]> = data.chunks(self.fragment).collect();
            for (i, p) in pieces.iter().enumerate() {
                let op = if i == 0 {
                    opcode::BINARY
                } else {
                    opcode::CONTINUATION
                };
                self.s
                    .write_all(&client_frame(i + 1 == pieces.len(), op, p))?;
                // A ping between fragments: allowed, and answered.
                self.s.write_all(&client_frame(true, opcode::PING, b"x"))?;
            }
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.s.flush()
    }
}

fn ws_connect(addr: SocketAddr) -> WsClient<TcpStream> {
    WsClient::open(connect(addr))
}

/// A main channel over WebSocket: linked with the ticket, MAIN_INIT read.
fn ws_main(addr: SocketAddr, password: &str) -> (WsClient<TcpStream>, u32) {
    let mut c = ws_connect(addr);
    assert_eq!(link_over(&mut c, 0, 1, password), 0);
    let (ty, body) = msg_of(&mut c);
    assert_eq!(ty, 103, "MAIN_INIT");
    (c, u32_at(&body, 0))
}

/// Sends `raw` on a fresh connection and returns the response head.
fn raw_request(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = connect(addr);
    s.write_all(raw).unwrap();
    response_head(&mut s)
}

#[test]
fn a_websocket_client_links_with_the_ticket_like_a_tcp_one() {
    let (h, source) = start(Some(PW));
    source.set(gradient(64, 32, 1, 3));
    let addr = h.local_addr();
    // A wrong password is refused exactly as over TCP.
    let mut c = ws_connect(addr);
    assert_eq!(link_over(&mut c, 0, 1, "wrong"), 7, "PERMISSION_DENIED");
    // The right one links; a display channel joins the session, its link cut in 5-byte
    // fragments with pings between them.
    let (_main, id) = ws_main(addr, PW);
    let mut d = ws_connect(addr);
    d.fragment = 5;
    assert_eq!(link_over(&mut d, id, 2, PW), 0);
    send_over(&mut d, 101, &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mut screen = Screen::new();
    loop {
        let (ty, body) = msg_of(&mut d);
        screen.handle(&mut d, ty, &body).unwrap();
        if ty == 102 {
            break;
        }
    }
    let want: Vec<u32> = gradient(64, 32, 1, 3)
        .bgrx
        .chunks_exact(4)
        .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0]))
        .collect();
    assert_eq!(screen.xrgb(), want, "pixel-exact");
    let info = h.clients();
    let display = info
        .iter()
        .flat_map(|c| &c.channels)
        .find(|c| c.channel_type == 2)
        .unwrap();
    assert!(display.websocket && !display.tls);
    assert!(!display.html5, "this client announced AUTH_SPICE");
}

#[test]
fn secure_channels_hold_over_websocket_too() {
    let pki = Pki::new("ws");
    let (h, _) = pki.start(&[1]);
    // Plain WebSocket: the main channel needs TLS.
    let mut c = ws_connect(h.local_addr());
    assert_eq!(link_over(&mut c, 0, 1, "pw"), 5, "NEED_SECURED");
    // WebSocket over TLS on the TLS port: linked.
    let tls = tls_connect(h.tls_local_addr().unwrap(), &pki.ca_der, false);
    let mut c = WsClient::open(tls);
    assert_eq!(link_over(&mut c, 0, 1, "pw"), 0);
    let (ty, _) = msg_of(&mut c);
    assert_eq!(ty, 103);
    let main = &h.clients()[0].channels[0];
    assert!(main.websocket && main.tls);
}

#[test]
fn files_of_the_web_client_are_served_and_nothing_else() {
    let dir = std::env::temp_dir().join(format!("saffron-web-{}", std::process::id()));
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("spice_auto.html"), "<html>auto</html>").unwrap();
    std::fs::write(root.join("main.js"), "export {};").unwrap();
    std::fs::write(dir.join("secret"), "no").unwrap();
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.password = Some(PW.into());
    cfg.web_root = Some(root.clone());
    let h =
        saffron_server::start(cfg, Arc::new(TestSource::default()), Arc::new(NullInput)).unwrap();
    let addr = h.local_addr();
    let port = addr.port();
    let get = |target: &str| {
        raw_request(
            addr,
            format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes(),
        )
    };
    let head = get("/?password=x");
    assert!(head.starts_with("HTTP/1.1 302 "), "{head}");
    assert!(
        head.contains(&format!(
            "Location: /spice_auto.html?host=127.0.0.1&port={port}&password=x\r\n"
        )),
        "{head}"
    );
    let mut s = connect(addr);
    s.write_all(b"GET /main.js HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
    assert!(all.contains("Content-Type: text/javascript"), "{all}");
    assert!(all.ends_with("\r\n\r\nexport {};"), "{all}");
    assert!(get("/../secret").starts_with("HTTP/1.1 403 "));
    assert!(get("/%2e%2e/secret").starts_with("HTTP/1.1 403 "));
    assert!(get("/nothing.js").starts_with("HTTP/1.1 404 "));
    let head = raw_request(addr, b"HEAD /main.js HTTP/1.1\r\n\r\n");
    assert!(head.contains("Content-Length: 10\r\n"), "{head}");
    let _ = std::fs::remove_dir_all(&dir);
    // Without a web root: files are refused, WebSocket still works.
    let (h, _) = start(Some(PW));
    let head = raw_request(h.local_addr(), b"GET / HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    ws_main(h.local_addr(), PW);
}

#[test]
fn with_ticketing_off_only_our_own_page_may_open_a_websocket() {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.disable_ticketing = true;
    let h =
        saffron_server::start(cfg, Arc::new(TestSource::default()), Arc::new(NullInput)).unwrap();
    let addr = h.local_addr();
    let evil = raw_request(
        addr,
        upgrade_request("Origin: http://evil.example\r\n").as_bytes(),
    );
    assert!(evil.starts_with("HTTP/1.1 403 "), "{evil}");
    let own = raw_request(
        addr,
        upgrade_request("Origin: http://127.0.0.1\r\n").as_bytes(),
    );
    assert!(own.starts_with("HTTP/1.1 101 "), "{own}");
}

#[test]
fn hostile_browsers_lose_only_their_own_connection() {
    let (h, _) = start(Some(PW));
    let addr = h.local_addr();
    // Two clients that must carry on: one over TCP, one over WebSocket.
    let (mut tcp_main, _) = main_session(addr, PW);
    let (mut ws_main_ch, _) = ws_main(addr, PW);

    // Handshakes that are refused with their status.
    let cases: [(&[u8], &str); 5] = [
        (
            upgrade_request("")
                .replace("Version: 13", "Version: 8")
                .leak()
                .as_bytes(),
            "426",
        ),
        (
            upgrade_request("").replace(KEY, "short").leak().as_bytes(),
            "400",
        ),
        (
            upgrade_request("")
                .replace("Connection: Upgrade", "Connection: close")
                .leak()
                .as_bytes(),
            "400",
        ),
        (b"GET / HTTP/1.1\r\nBroken header\r\n\r\n", "400"),
        (
            format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000))
                .leak()
                .as_bytes(),
            "431",
        ),
    ];
    for (raw, status) in cases {
        let head = raw_request(addr, raw);
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{status}: {head}"
        );
    }

    // Frames that end the connection with a CLOSE carrying the RFC's status.
    let bad_frames: [(Vec<u8>, u16); 4] = [
        (
            ws::frame(opcode::BINARY, b"REDQ"),
            ws::status::PROTOCOL_ERROR,
        ),
        (
            [
                vec![0x82, 0xff],
                (1u64 << 63).to_be_bytes().to_vec(),
                vec![0; 4],
            ]
            .concat(),
            ws::status::PROTOCOL_ERROR,
        ),
        (
            [
                vec![0x82, 0xff],
                (ws::MAX_FRAME_PAYLOAD + 1).to_be_bytes().to_vec(),
                vec![0; 4],
            ]
            .concat(),
            ws::status::TOO_BIG,
        ),
        (
            client_frame(true, opcode::TEXT, b"REDQ"),
            ws::status::UNSUPPORTED_DATA,
        ),
    ];
    for (frame, status) in bad_frames {
        let mut c = ws_connect(addr);
        c.s.write_all(&frame).unwrap();
        let mut b = [0u8; 1];
        let r = c.read(&mut b);
        assert!(matches!(r, Ok(0)), "{r:?}");
        assert_eq!(c.closed, Some(status.to_be_bytes().to_vec()));
        assert!(is_closed(&mut c.s), "the connection ends");
    }

    // A slowloris request: one byte a second never completes its head in time.
    let mut slow = connect(addr);
    let started = Instant::now();
    let mut dropped = false;
    for b in b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        if slow.write_all(&[*b]).is_err() {
            dropped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        if started.elapsed() > Duration::from_secs(12) {
            break;
        }
    }
    let head = response_head(&mut slow);
    assert!(
        dropped || head.starts_with("HTTP/1.1 408 "),
        "slowloris answered {head:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(14));

    // The two clients go on: a ping on each is answered.
    for main in [
        &mut tcp_main as &mut dyn ReadWrite,
        &mut ws_main_ch as &mut dyn ReadWrite,
    ] {
        channels_list_round_trip(main);
    }
    assert_eq!(h.clients().len(), 2);
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Asks for the main channel's channel list and reads until the answer: the client is alive.
fn channels_list_round_trip(s: &mut dyn ReadWrite) {
    // ATTACH_CHANNELS (104) is answered with CHANNELS_LIST (104).
    let mut s = s;
    saffron_server::client::send_msg(&mut s, 104, &[]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no CHANNELS_LIST");
        let (ty, _) = saffron_server::client::read_msg(&mut s).unwrap();
        if ty == 104 {
            return;
        }
    }
}
