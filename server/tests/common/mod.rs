//! A small Spice test client and a synthetic display source.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use saffron_server::client;
use saffron_server::{
    DisplaySource, Frame, FrameSource, NullInput, ServerConfig, ServerHandle, TlsConfig,
};

pub const MAGIC: u32 = 0x5144_4552;

/// A display source whose frame the test replaces: each new frame reaches the subscribed
/// clients as the band of rows that changed.
#[derive(Default)]
pub struct TestSource(pub FrameSource);

impl DisplaySource for TestSource {
    fn subscribe(&self, pipe: Arc<saffron_display::Pipe>) -> bool {
        self.0.subscribe(pipe)
    }
    fn resync(&self, pipe: &Arc<saffron_display::Pipe>) {
        self.0.resync(pipe)
    }
}

impl TestSource {
    pub fn set(&self, f: Frame) {
        self.0.set_frame(f);
    }
}

/// A picture that differs with `salt` (`_serial` is kept from when sources were polled).
pub fn gradient(w: u32, h: u32, _serial: u64, salt: u32) -> Frame {
    let px: Vec<u32> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| (((x * 255 / w) ^ salt) << 16) | ((y * 255 / h) << 8) | ((x + y) & 0xff))
        .collect();
    Frame::from_xrgb(w, h, &px)
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

/// A test CA and a server certificate it issued for 127.0.0.1, as PEM files in `dir` laid out
/// like QEMU's x509-dir (ca-cert.pem, server-cert.pem, server-key.pem).
pub struct Pki {
    pub dir: PathBuf,
    pub ca_der: CertificateDer<'static>,
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("saffron-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca.distinguished_name
            .push(DnType::CommonName, "Saffron test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join("ca-cert.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.join("server-cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("server-key.pem"), key.serialize_pem()).unwrap();
        Pki {
            dir,
            ca_der: ca_cert.der().clone(),
        }
    }

    pub fn config(&self, secure: &[u8]) -> ServerConfig {
        let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
        cfg.password = Some("pw".into());
        cfg.tls = Some(TlsConfig::from_x509_dir(
            "127.0.0.1:0".parse().unwrap(),
            &self.dir,
        ));
        cfg.secure_channels = secure.to_vec();
        cfg
    }

    pub fn start(&self, secure: &[u8]) -> (ServerHandle, Arc<TestSource>) {
        let source = Arc::new(TestSource::default());
        let h = saffron_server::start(self.config(secure), source.clone(), Arc::new(NullInput))
            .unwrap();
        (h, source)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub type Tls = StreamOwned<ClientConnection, TcpStream>;

pub fn tls_connect(addr: SocketAddr, ca: &CertificateDer<'static>, tls12_only: bool) -> Tls {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut s = StreamOwned::new(conn, connect(addr));
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap();
    }
    let want = if tls12_only {
        rustls::ProtocolVersion::TLSv1_2
    } else {
        rustls::ProtocolVersion::TLSv1_3
    };
    assert_eq!(s.conn.protocol_version(), Some(want));
    s
}

/// Reads the link header + reply over any stream; returns (error, reply bytes).
pub fn reply_of(s: &mut impl Read) -> (u32, Vec<u8>) {
    client::read_link_reply(s).unwrap()
}

/// The full link (SPICE ticket) over any stream; returns the link result.
pub fn link_over(s: &mut (impl Read + Write), conn_id: u32, ch: u8, password: &str) -> u32 {
    client::link_stream(s, conn_id, ch, password, &[]).unwrap()
}

/// Reads one mini-header message from any stream.
pub fn msg_of(s: &mut impl Read) -> (u16, Vec<u8>) {
    client::read_msg(s).unwrap()
}

/// Sends one mini-header message over any stream.
pub fn send_over(s: &mut impl Write, ty: u16, body: &[u8]) {
    client::send_msg(s, ty, body).unwrap()
}

/// Parses a binary PPM (P6, maxval 255) into (width, height, RGB bytes).
/// Asserts that the PPM at `path` shows exactly `frame` (size and every pixel).
pub fn assert_ppm_shows(path: &std::path::Path, frame: &Frame) {
    let (w, h, rgb) = read_ppm(path);
    assert_eq!((w, h), (frame.width, frame.height), "PPM size");
    let expected: Vec<u8> = frame
        .bgrx
        .chunks_exact(4)
        .flat_map(|p| [p[2], p[1], p[0]])
        .collect();
    assert!(rgb == expected, "PPM pixels differ from the source frame");
}

pub fn read_ppm(path: &std::path::Path) -> (u32, u32, Vec<u8>) {
    let data = std::fs::read(path).unwrap();
    let mut fields = Vec::new();
    let mut pos = 0;
    while fields.len() < 4 {
        while data[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if data[pos] == b'#' {
            while data[pos] != b'\n' {
                pos += 1;
            }
            continue;
        }
        let start = pos;
        while !data[pos].is_ascii_whitespace() {
            pos += 1;
        }
        fields.push(String::from_utf8(data[start..pos].to_vec()).unwrap());
    }
    assert_eq!(fields[0], "P6");
    assert_eq!(fields[3], "255");
    let (w, h) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    (w, h, data[pos + 1..].to_vec())
}
