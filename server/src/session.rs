//! Sessions: one main channel plus the secondary channels that joined with its id.

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rsa::rand_core::{OsRng, RngCore};

/// Mouse mode bits (SpiceMouseMode).
pub const MOUSE_MODE_SERVER: u16 = 1;
pub const MOUSE_MODE_CLIENT: u16 = 2;

/// One client's session.
pub struct Session {
    pub id: u32,
    closed: AtomicBool,
    /// Current mouse mode (MOUSE_MODE_*).
    pub mouse_mode: AtomicU16,
    /// Sockets of the secondary channels, shut down when the main channel ends.
    sockets: Mutex<Vec<TcpStream>>,
    /// Last measured main-channel round trip.
    pub rtt: Mutex<Option<Duration>>,
}

impl Session {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Registers a secondary channel's socket so it ends with the session.
    pub fn attach(&self, stream: &TcpStream) {
        if let Ok(s) = stream.try_clone() {
            self.sockets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(s);
        }
        if self.is_closed() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Ends the session and every channel in it.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for s in self
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// All live sessions by id.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<u32, Arc<Session>>>,
}

impl Sessions {
    /// Creates a session with a fresh random non-zero id.
    pub fn create(&self, mouse_mode: u16) -> Arc<Session> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let id = loop {
            let id = OsRng.next_u32();
            if id != 0 && !map.contains_key(&id) {
                break id;
            }
        };
        let s = Arc::new(Session {
            id,
            closed: AtomicBool::new(false),
            mouse_mode: AtomicU16::new(mouse_mode),
            sockets: Mutex::new(Vec::new()),
            rtt: Mutex::new(None),
        });
        map.insert(id, s.clone());
        s
    }

    pub fn get(&self, id: u32) -> Option<Arc<Session>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// Closes and forgets a session.
    pub fn remove(&self, id: u32) {
        let s = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(s) = s {
            s.close();
        }
    }

    /// Closes every session (server shutdown).
    pub fn close_all(&self) {
        let all: Vec<_> = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for (_, s) in all {
            s.close();
        }
    }
}
