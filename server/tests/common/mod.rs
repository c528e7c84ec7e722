//! A small Spice test client and a synthetic display source.

#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use saffron_server::client;
use saffron_server::{DisplaySource, Frame, NullInput, ServerConfig, ServerHandle};

pub const MAGIC: u32 = 0x5144_4552;

/// A display source whose frame the test replaces.
#[derive(Default)]
pub struct TestSource(pub Mutex<Option<Frame>>);

impl DisplaySource for TestSource {
    fn frame(&self) -> Option<Frame> {
        self.0.lock().unwrap().clone()
    }
}

impl TestSource {
    pub fn set(&self, f: Frame) {
        *self.0.lock().unwrap() = Some(f);
    }
}

pub fn gradient(w: u32, h: u32, serial: u64, salt: u32) -> Frame {
    let px: Vec<u32> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| (((x * 255 / w) ^ salt) << 16) | ((y * 255 / h) << 8) | ((x + y) & 0xff))
        .collect();
    Frame::from_xrgb(w, h, serial, &px)
}

pub fn start(password: Option<&str>) -> (ServerHandle, Arc<TestSource>) {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.password = password.map(str::to_owned);
    let source = Arc::new(TestSource::default());
    let h = saffron_server::start(cfg, source.clone(), Arc::new(NullInput)).unwrap();
    (h, source)
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

pub fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

#[allow(unused_imports)]
pub use saffron_server::client::{Screen, link_bytes};

/// Reads the server's link header + reply; returns (error, reply bytes).
pub fn read_reply(s: &mut TcpStream) -> (u32, Vec<u8>) {
    client::read_link_reply(s).unwrap()
}

/// Full link with the SPICE ticket; returns the link result and the stream.
pub fn link(
    addr: SocketAddr,
    conn_id: u32,
    ch_type: u8,
    password: &str,
    chan_caps: &[u32],
) -> (u32, TcpStream) {
    let mut s = connect(addr);
    let r = client::link_stream(&mut s, conn_id, ch_type, password, chan_caps).unwrap();
    (r, s)
}

/// Reads one mini-header message.
pub fn read_msg(s: &mut TcpStream) -> (u16, Vec<u8>) {
    client::read_msg(s).unwrap()
}

pub fn send_msg(s: &mut TcpStream, ty: u16, body: &[u8]) {
    client::send_msg(s, ty, body).unwrap()
}

/// Whether the peer closed the connection (EOF or reset) within the read timeout.
pub fn is_closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

/// Links a main channel and returns (stream, session id).
pub fn main_session(addr: SocketAddr, password: &str) -> (TcpStream, u32) {
    let (r, mut s) = link(addr, 0, 1, password, &[]);
    assert_eq!(r, 0);
    let (ty, body) = read_msg(&mut s);
    assert_eq!(ty, 103, "MAIN_INIT first");
    assert_eq!(body.len(), 32);
    let id = u32_at(&body, 0);
    assert_ne!(id, 0);
    (s, id)
}
