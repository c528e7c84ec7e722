//! Server configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The TLS port: where it listens and the server's certificate.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// Where to accept TLS connections (port 0 picks a free port; see
    /// `ServerHandle::tls_local_addr`).
    pub addr: SocketAddr,
    /// PEM file: the server certificate, then any intermediate certificates.
    pub cert_chain: PathBuf,
    /// PEM file: the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsConfig {
    /// QEMU's layout of `-spice x509-dir=DIR`: `DIR/server-cert.pem` and `DIR/server-key.pem`.
    pub fn from_x509_dir(addr: SocketAddr, dir: &Path) -> TlsConfig {
        TlsConfig {
            addr,
            cert_chain: dir.join("server-cert.pem"),
            key: dir.join("server-key.pem"),
        }
    }
}

/// Default [`ServerConfig::write_timeout`]: generous for a client on a slow link or busy
/// machine, yet a stalled client's socket and threads do not live for ever.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default [`ServerConfig::display_pipe_limit`]: four full 1920 × 1080 frames.
pub const DEFAULT_PIPE_LIMIT: usize = 32 << 20;

/// How the Spice server listens and authenticates.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to listen for plain connections (port 0 picks a free port; see
    /// `ServerHandle::local_addr`).
    pub addr: SocketAddr,
    /// A second, TLS, port; the server refuses to start if its certificate or key cannot be
    /// loaded.
    pub tls: Option<TlsConfig>,
    /// Channel types (`wire::channel::*`) that must use TLS: a plain link for one of them is
    /// answered with NEED_SECURED, as spice-server does, and the client retries on the TLS port.
    pub secure_channels: Vec<u8>,
    /// The ticket password. With ticketing on and no password every link is refused, as in
    /// spice-server, so that forgetting the password fails closed.
    pub password: Option<String>,
    /// How long the password stays valid (`None` = forever).
    pub password_lifetime: Option<Duration>,
    /// Accept any ticket. Only allowed on a loopback address unless `insecure` is set.
    pub disable_ticketing: bool,
    /// Allow `disable_ticketing` on a non-loopback address.
    pub insecure: bool,
    /// VM name sent to clients with the NAME_AND_UUID cap.
    pub name: Option<String>,
    /// VM UUID sent with the name.
    pub uuid: [u8; 16],
    /// Byte bound of each client's send queue (raised to two full frames when needed).
    pub queue_limit: usize,
    /// Byte bound of each display client's pipe of display items (what the worker pushed and
    /// the client's encoder has not taken yet); past it the pipe merges its drawings.
    pub display_pipe_limit: usize,
    /// How images are compressed for display clients (QEMU's `image-compression`).
    pub image_compression: crate::image::Compression,
    /// When GLZ images are wrapped in zlib (QEMU's `zlib-glz-wan-compression`).
    pub zlib_glz_wan_compression: crate::image::WanCompression,
    /// When photographic images go as lossy JPEG (QEMU's `jpeg-wan-compression`): `auto`
    /// when the client's link estimate says it is slow (see `link_estimate`), `always`, or
    /// `never`. Lossy areas are sent again losslessly once the link allows or they go still.
    pub jpeg_wan_compression: crate::image::WanCompression,
    /// Which regions redrawn like video go as streams (QEMU's `streaming-video`).
    pub streaming_video: crate::stream::StreamingVideo,
    /// The codecs streams may use (QEMU's `-spice video-codec=`: spice-server's video-codecs
    /// list; MJPEG and VP8 are built).
    pub video_codecs: crate::stream::VideoCodecs,
    /// A linked client that accepts no bytes for this long is dropped (its writer gives up,
    /// which ends the connection). Only that client's own threads ever wait on it.
    pub write_timeout: Duration,
    /// Copy every byte each client sends into a file per connection in this directory
    /// (fuzz seeds from real clients; see `record.rs` for the format).
    pub record_dir: Option<PathBuf>,
    /// What the guest agent channel lets through (QEMU's `disable-copy-paste` and
    /// `disable-agent-file-xfer`).
    pub agent: crate::vdi::AgentPolicy,
    /// Offer the playback and record channels: the VMM has a sound device whose playback it
    /// writes into `ServerHandle::playback` and whose capture it reads from
    /// `ServerHandle::capture`.
    pub sound: bool,
    /// Send playback as Opus to clients that decode it (QEMU's `playback-compression`; on by
    /// default): about 15 KB/s instead of 192 KB/s of raw PCM.
    pub playback_compression: bool,
    /// Where the files of the web client (spice-html5) are: a browser's plain GET on either
    /// Spice port is answered from here, read-only (`None`: no files, WebSocket only).
    pub web_root: Option<PathBuf>,
    /// The client mouse mode goes through the guest agent when one is connected (QEMU's
    /// `agent-mouse`; on by default, as in QEMU).
    pub agent_mouse: bool,
}

impl ServerConfig {
    /// Ticketing on, no password yet, default limits.
    pub fn new(addr: SocketAddr) -> ServerConfig {
        ServerConfig {
            addr,
            tls: None,
            secure_channels: Vec::new(),
            password: None,
            password_lifetime: None,
            disable_ticketing: false,
            insecure: false,
            name: None,
            uuid: [0; 16],
            queue_limit: crate::conn::DEFAULT_QUEUE_LIMIT,
            display_pipe_limit: DEFAULT_PIPE_LIMIT,
            image_compression: crate::image::Compression::default(),
            zlib_glz_wan_compression: crate::image::WanCompression::default(),
            jpeg_wan_compression: crate::image::WanCompression::default(),
            streaming_video: crate::stream::StreamingVideo::default(),
            video_codecs: crate::stream::VideoCodecs::default(),
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            record_dir: None,
            agent: crate::vdi::AgentPolicy::default(),
            sound: false,
            playback_compression: true,
            web_root: None,
            agent_mouse: true,
        }
    }
}
