//! TLS for the Spice server: loading the certificate and key, the handshake on the TLS port, and
//! [`Stream`], a connection that is either plain TCP or TLS.
//!
//! Every linked channel has a reader (the channel thread) and a writer thread (see
//! [`crate::conn::spawn_writer`]), so a TLS connection must be shared by two threads. rustls'
//! `StreamOwned` cannot be split, so [`TlsStream`] keeps the `ServerConnection` behind a mutex
//! that is never held while blocking on the socket: the reader reads ciphertext with the lock
//! released and feeds it in; the writer encrypts under the lock and writes the records out in
//! order under a second, write-ordering lock (taken before the first is released).

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::ServerConnection;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// Why the TLS configuration could not be built.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read TLS file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("no PEM certificate in {0}")]
    NoCertificate(PathBuf),
    #[error("bad PEM certificate in {path}: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("no usable PEM private key (PKCS#8, PKCS#1 or SEC1) in {path}: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("TLS certificate {cert} / key {key} rejected: {source}")]
    Rustls {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// Builds the rustls server configuration (TLS 1.3 and 1.2, ring provider, no client
/// certificates) from PEM files: `cert_chain` holds the server certificate first, then any
/// intermediates; `key` holds its private key.
pub fn server_config(cert_chain: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let read = |path: &Path| {
        fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(cert_chain)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert_chain.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert_chain.to_owned()));
    }
    let key_pem = read(key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadKey {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let rejected = |source| TlsError::Rustls {
        cert: cert_chain.to_owned(),
        key: key.to_owned(),
        source,
    };
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(rejected)?
    .with_no_client_auth()
    // Checks that the key matches the certificate.
    .with_single_cert(certs, private)
    .map_err(rejected)?;
    Ok(Arc::new(config))
}

/// Runs the server side of the TLS handshake on `sock` (whose timeouts bound it).
pub(crate) fn accept(sock: TcpStream, config: Arc<rustls::ServerConfig>) -> io::Result<Stream> {
    let mut conn = ServerConnection::new(config).map_err(io::Error::other)?;
    let mut s = &sock;
    while conn.is_handshaking() {
        conn.complete_io(&mut s)?;
    }
    while conn.wants_write() {
        conn.write_tls(&mut s)?;
    }
    Ok(Stream::Tls(TlsStream {
        sock,
        state: Arc::new(Mutex::new(TlsState {
            conn,
            pending: Vec::new(),
        })),
        write_order: Arc::new(Mutex::new(())),
    }))
}

/// A connection's socket: plain TCP or TLS. Clones share the connection (one reader thread,
/// one writer thread).
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(TlsStream),
    /// Either of the above, with what the client sends copied to a recording.
    Recorded(Box<Stream>, crate::record::ClientLog),
    /// A WebSocket connection (a browser client) over a plain or TLS one.
    WebSocket(Box<crate::ws::WsStream>),
}

impl Stream {
    /// The TCP socket underneath (timeouts, shutdown, session registration).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
            Stream::Recorded(s, _) => s.tcp(),
            Stream::WebSocket(w) => w.inner().tcp(),
        }
    }

    pub fn is_tls(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(_) => true,
            Stream::Recorded(s, _) => s.is_tls(),
            Stream::WebSocket(w) => w.inner().is_tls(),
        }
    }

    /// Whether the client speaks WebSocket (a browser).
    pub fn is_websocket(&self) -> bool {
        match self {
            Stream::Plain(_) | Stream::Tls(_) => false,
            Stream::Recorded(s, _) => s.is_websocket(),
            Stream::WebSocket(_) => true,
        }
    }

    /// Another handle on the same connection.
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Plain(s) => Stream::Plain(s.try_clone()?),
            Stream::Tls(t) => Stream::Tls(TlsStream {
                sock: t.sock.try_clone()?,
                state: t.state.clone(),
                write_order: t.write_order.clone(),
            }),
            Stream::Recorded(s, log) => Stream::Recorded(Box::new(s.try_clone()?), log.clone()),
            Stream::WebSocket(w) => Stream::WebSocket(Box::new(w.try_clone()?)),
        })
    }

    /// Shuts the socket down both ways (ends the other thread's blocking read or write).
    pub fn shutdown(&self) -> io::Result<()> {
        self.tcp().shutdown(Shutdown::Both)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
            Stream::Recorded(s, log) => {
                let n = s.read(buf)?;
                log.append(buf.get(..n).unwrap_or_default());
                Ok(n)
            }
            Stream::WebSocket(w) => w.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
            Stream::Recorded(s, _) => s.write(buf),
            Stream::WebSocket(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(_) => Ok(()), // every write sends its records
            Stream::Recorded(s, _) => s.flush(),
            Stream::WebSocket(_) => Ok(()), // every write sends its frame
        }
    }
}

struct TlsState {
    conn: ServerConnection,
    /// Ciphertext read from the socket, not yet taken by rustls.
    pending: Vec<u8>,
}

/// One handle on a TLS connection; see the module documentation.
pub(crate) struct TlsStream {
    sock: TcpStream,
    state: Arc<Mutex<TlsState>>,
    write_order: Arc<Mutex<()>>,
}

/// Ciphertext read from the socket per system call.
const READ_CHUNK: usize = 16 * 1024;

impl TlsStream {
    fn lock(&self) -> MutexGuard<'_, TlsState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends whatever rustls has queued, releasing the state lock before blocking on the
    /// socket. Records leave in the order they were sealed: the write-ordering lock is taken
    /// while the state lock is still held (lock order: state, then write_order).
    fn send_queued(&self, mut g: MutexGuard<'_, TlsState>) -> io::Result<()> {
        let mut out = Vec::new();
        while g.conn.wants_write() {
            g.conn.write_tls(&mut out)?;
        }
        if out.is_empty() {
            return Ok(());
        }
        let _order = self.write_order.lock().unwrap_or_else(|e| e.into_inner());
        drop(g);
        (&self.sock).write_all(&out)
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut raw = vec![0u8; READ_CHUNK];
        loop {
            let mut g = self.lock();
            // Ok(0) after the peer's close_notify; UnexpectedEof after a bare TCP close.
            match g.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if !g.pending.is_empty() {
                let st = &mut *g;
                let n = st.conn.read_tls(&mut &st.pending[..])?;
                st.pending.drain(..n);
                let processed = st.conn.process_new_packets();
                // Alerts, key-update replies.
                self.send_queued(g)?;
                processed.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                continue;
            }
            drop(g);
            let n = (&self.sock).read(&mut raw)?;
            let mut g = self.lock();
            if n == 0 {
                // Records end-of-stream; the next reader().read reports it.
                g.conn.read_tls(&mut io::empty())?;
                let processed = g.conn.process_new_packets();
                drop(g);
                processed.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            } else {
                g.pending
                    .extend_from_slice(raw.get(..n).unwrap_or_default());
            }
        }
    }

    fn write(&self, data: &[u8]) -> io::Result<usize> {
        let mut g = self.lock();
        let n = g.conn.writer().write(data)?;
        self.send_queued(g)?;
        Ok(n)
    }
}
