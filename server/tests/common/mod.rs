//! A small Spice test client and a synthetic display source.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use rsa::pkcs8::DecodePublicKey;
use rsa::rand_core::OsRng;
use rsa::{Oaep, RsaPublicKey};
use saffron_server::{DisplaySource, Frame, NullInput, ServerConfig, ServerHandle, TlsConfig};

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

pub fn link_bytes(conn_id: u32, ch_type: u8, common: &[u32], chan: &[u32]) -> Vec<u8> {
    let mut mess = Vec::new();
    mess.extend(conn_id.to_le_bytes());
    mess.push(ch_type);
    mess.push(0);
    mess.extend((common.len() as u32).to_le_bytes());
    mess.extend((chan.len() as u32).to_le_bytes());
    mess.extend(18u32.to_le_bytes());
    for c in common.iter().chain(chan) {
        mess.extend(c.to_le_bytes());
    }
    let mut out = Vec::new();
    for v in [MAGIC, 2, 2, mess.len() as u32] {
        out.extend(v.to_le_bytes());
    }
    out.extend(mess);
    out
}

/// Reads the server's link header + reply; returns (error, reply bytes).
pub fn read_reply(s: &mut TcpStream) -> (u32, Vec<u8>) {
    let mut hdr = [0u8; 16];
    s.read_exact(&mut hdr).unwrap();
    assert_eq!(u32_at(&hdr, 0), MAGIC);
    let size = u32_at(&hdr, 12) as usize;
    assert!((178..4096).contains(&size));
    let mut reply = vec![0u8; size];
    s.read_exact(&mut reply).unwrap();
    (u32_at(&reply, 0), reply)
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
    s.write_all(&link_bytes(conn_id, ch_type, &[0x9], chan_caps))
        .unwrap();
    let (err, reply) = read_reply(&mut s);
    assert_eq!(err, 0);
    let der = &reply[4..166];
    let key = RsaPublicKey::from_public_key_der(der).unwrap();
    let mut pw = password.as_bytes().to_vec();
    pw.push(0);
    let ticket = key
        .encrypt(&mut OsRng, Oaep::new::<sha1::Sha1>(), &pw)
        .unwrap();
    assert_eq!(ticket.len(), 128);
    s.write_all(&1u32.to_le_bytes()).unwrap();
    s.write_all(&ticket).unwrap();
    let mut result = [0u8; 4];
    s.read_exact(&mut result).unwrap();
    (u32::from_le_bytes(result), s)
}

/// Reads one mini-header message.
pub fn read_msg(s: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut hdr = [0u8; 6];
    s.read_exact(&mut hdr).unwrap();
    let ty = u16::from_le_bytes([hdr[0], hdr[1]]);
    let size = u32_at(&hdr, 2) as usize;
    let mut body = vec![0u8; size];
    s.read_exact(&mut body).unwrap();
    (ty, body)
}

pub fn send_msg(s: &mut TcpStream, ty: u16, body: &[u8]) {
    let mut m = ty.to_le_bytes().to_vec();
    m.extend((body.len() as u32).to_le_bytes());
    m.extend(body);
    s.write_all(&m).unwrap();
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

/// A client-side copy of the primary surface, updated from display messages
/// (with ACK flow control answered like spice-gtk).
pub struct Screen {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
    pub window: u32,
    pub received: u32,
}

impl Screen {
    pub fn new() -> Screen {
        Screen {
            width: 0,
            height: 0,
            pixels: Vec::new(),
            window: 0,
            received: 0,
        }
    }

    /// Handles one message; returns its type.
    pub fn step(&mut self, s: &mut TcpStream) -> u16 {
        let (ty, body) = read_msg(s);
        match ty {
            3 => {
                // SET_ACK: answer ACK_SYNC(generation).
                self.window = u32_at(&body, 4);
                send_msg(s, 1, &body[0..4]);
                return ty;
            }
            314 => {
                self.width = u32_at(&body, 4);
                self.height = u32_at(&body, 8);
                assert_eq!(u32_at(&body, 12), 32);
                assert_eq!(u32_at(&body, 16), 1);
                self.pixels = vec![0; (self.width * self.height * 4) as usize];
            }
            304 => self.apply_draw_copy(&body),
            _ => {}
        }
        if self.window > 0 {
            self.received += 1;
            if self.received.is_multiple_of(self.window) {
                send_msg(s, 2, &[]);
            }
        }
        ty
    }

    fn apply_draw_copy(&mut self, b: &[u8]) {
        assert_eq!(u32_at(b, 0), 0);
        let (top, left, bottom, right) = (u32_at(b, 4), u32_at(b, 8), u32_at(b, 12), u32_at(b, 16));
        assert_eq!(b[20], 0, "clip none");
        let img = u32_at(b, 21) as usize;
        assert_eq!(u16::from_le_bytes([b[41], b[42]]), 8);
        assert_eq!(b[img + 8], 0, "BITMAP");
        let (w, h) = (u32_at(b, img + 10), u32_at(b, img + 14));
        assert_eq!((w, h), (right - left, bottom - top));
        let bm = img + 18;
        assert_eq!(b[bm], 8, "32BIT");
        assert_eq!(b[bm + 1], 4, "TOP_DOWN");
        let stride = u32_at(b, bm + 10) as usize;
        let data = &b[bm + 18..];
        assert_eq!(data.len(), stride * h as usize);
        for y in 0..h as usize {
            let src = &data[y * stride..y * stride + w as usize * 4];
            let dst = ((top as usize + y) * self.width as usize + left as usize) * 4;
            self.pixels[dst..dst + w as usize * 4].copy_from_slice(src);
        }
    }
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

/// Reads the link header + reply; returns (error, reply bytes).
pub fn reply_of(s: &mut impl Read) -> (u32, Vec<u8>) {
    let mut hdr = [0u8; 16];
    s.read_exact(&mut hdr).unwrap();
    assert_eq!(u32_at(&hdr, 0), MAGIC);
    let mut reply = vec![0u8; u32_at(&hdr, 12) as usize];
    s.read_exact(&mut reply).unwrap();
    (u32_at(&reply, 0), reply)
}

/// The full link (SPICE ticket) over any stream; returns the link result.
pub fn link_over(s: &mut (impl Read + Write), conn_id: u32, ch: u8, password: &str) -> u32 {
    s.write_all(&link_bytes(conn_id, ch, &[0x9], &[])).unwrap();
    let (err, reply) = reply_of(s);
    assert_eq!(err, 0);
    let key = RsaPublicKey::from_public_key_der(&reply[4..166]).unwrap();
    let mut pw = password.as_bytes().to_vec();
    pw.push(0);
    let ticket = key
        .encrypt(&mut OsRng, Oaep::new::<sha1::Sha1>(), &pw)
        .unwrap();
    s.write_all(&1u32.to_le_bytes()).unwrap();
    s.write_all(&ticket).unwrap();
    let mut result = [0u8; 4];
    s.read_exact(&mut result).unwrap();
    u32::from_le_bytes(result)
}

/// Reads one mini-header message from any stream.
pub fn msg_of(s: &mut impl Read) -> (u16, Vec<u8>) {
    let mut hdr = [0u8; 6];
    s.read_exact(&mut hdr).unwrap();
    let mut body = vec![0u8; u32_at(&hdr, 2) as usize];
    s.read_exact(&mut body).unwrap();
    (u16::from_le_bytes([hdr[0], hdr[1]]), body)
}

/// Sends one mini-header message over any stream.
pub fn send_over(s: &mut impl Write, ty: u16, body: &[u8]) {
    let mut m = ty.to_le_bytes().to_vec();
    m.extend((body.len() as u32).to_le_bytes());
    m.extend(body);
    s.write_all(&m).unwrap();
}
