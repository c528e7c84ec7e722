//! The Spice server: listener, link stage and ticket, and the main, display, cursor and inputs
//! channels, fed by a [`DisplaySource`] and a [`CursorSource`] and feeding an [`InputSink`].
//!
//! Start it with [`start_with_cursor`] (or [`start`], without a pointer); the returned
//! [`ServerHandle`] stops it when dropped.

pub mod agent;
pub mod agent_link;
pub mod cache;
pub mod capture;
mod channel;
pub mod client;
pub mod config;
pub mod conn;
pub mod cursor;
pub mod display;
pub mod http;
pub mod image;
pub mod inputs;
pub mod link;
pub mod link_estimate;
mod lossy;
pub mod main_channel;
pub mod playback;
mod record;
pub mod server;
pub mod session;
pub mod source;
pub mod stream;
pub mod ticket;
pub mod tls;
pub mod vdi;
pub mod vp8;
pub mod web;
pub mod wire;
pub mod ws;

pub use agent_link::AgentStats;
pub use capture::Capture;
pub use config::{DEFAULT_PIPE_LIMIT, DEFAULT_WRITE_TIMEOUT, ServerConfig, TlsConfig};
pub use image::{Compression, WanCompression};
pub use playback::{Playback, PlaybackStats};
pub use saffron_display::{DisplaySource, Frame, FrameSource, Head};
pub use server::{MAX_CONNECTIONS, ServerError, ServerHandle, start, start_with_cursor};
pub use session::{ChannelInfo, ClientInfo};
pub use source::{
    Cursor, CursorKind, CursorShape, CursorSource, InputSink, KeyEvent, NoCursor, NullInput,
    PointerEvent,
};
pub use stream::{StreamStats, StreamingVideo, VideoCodecs};
pub use tls::TlsError;
pub use vdi::AgentPolicy;
