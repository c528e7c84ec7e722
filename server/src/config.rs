//! Server configuration.

use std::net::SocketAddr;
use std::time::Duration;

/// How the Spice server listens and authenticates.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to listen (port 0 picks a free port; see `ServerHandle::local_addr`).
    pub addr: SocketAddr,
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
    /// How often display clients poll the display source.
    pub poll_interval: Duration,
}

impl ServerConfig {
    /// Ticketing on, no password yet, default limits.
    pub fn new(addr: SocketAddr) -> ServerConfig {
        ServerConfig {
            addr,
            password: None,
            password_lifetime: None,
            disable_ticketing: false,
            insecure: false,
            name: None,
            uuid: [0; 16],
            queue_limit: crate::conn::DEFAULT_QUEUE_LIMIT,
            poll_interval: Duration::from_millis(33),
        }
    }
}
