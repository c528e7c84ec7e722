//! The cursor channel (spec §9.1): the guest's pointer — shape, position, visibility — as the
//! [`CursorSource`] publishes it, sent the way spice-server sends it.
//!
//! A new client gets SET_ACK, then INIT with the current cursor. After that, each time the
//! source says the cursor changed, the client gets what changed since it last looked:
//! * a new shape: SET (then HIDE if the shape arrived hidden: spice-gtk ignores SET's `visible`
//!   and would show it);
//! * the pointer shown again: MOVE (QXL's MOVE is also "show"), hidden: HIDE;
//! * a move: MOVE, but only in server mouse mode — in client mode the client's own pointer is
//!   the cursor and guest moves would fight it (spice-server drops them too);
//! * a new trail: TRAIL;
//! * a reset of the guest's cursor: INVAL_ALL, RESET and a fresh INIT (spice-gtk ignores
//!   everything after RESET until the next INIT).
//!
//! spice-html5 (recognised from its link, see [`crate::link::LinkRequest::is_html5`]) gets
//! only what it draws: it ignores INIT's shape, MOVE and TRAIL, and draws only ALPHA shapes.
//! So it gets INIT without a shape followed by SET (or HIDE), a SET again where others get the
//! MOVE that shows the pointer, no MOVE or TRAIL at all, and shapes as [`html5_shape`] makes
//! them for the PNG it builds from them.
//!
//! Shapes are never cached: they go out with cursor flags 0 (no CACHE_ME), so no client ever
//! holds a shape the server would have to invalidate; "no cursor" is flags NONE.
//! Changes coalesce: what changed while the channel's thread was busy goes out as one update,
//! and a client that has fallen behind (more than [`BEHIND_BYTES`] queued) gets nothing new
//! until it catches up, then only the latest state — so a slow client costs a bounded queue,
//! never a stall.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::channel::Channel;
use crate::conn::{ConnError, Traffic};
use crate::server::Shared;
use crate::session::{MOUSE_MODE_SERVER, Session};
use crate::source::{Cursor, CursorKind, CursorShape};
use crate::tls::Stream;
use crate::wire::{Writer, msg};

/// Cursor flag NONE: no shape follows.
const CURSOR_FLAGS_NONE: u16 = 1;
/// Cursor flags of a shape sent whole and not cached.
const CURSOR_FLAGS_UNCACHED: u16 = 0;
/// ACK window announced with SET_ACK (spice-server's value for the cursor channel too).
const ACK_WINDOW: u32 = 20;
/// Queued bytes above which a client counts as behind and its updates wait.
pub const BEHIND_BYTES: usize = 64 << 10;
/// Largest client message on the cursor channel (only the common messages are expected).
pub(crate) const MAX_CURSOR_MESSAGE: u32 = 1024;

/// A Spice `Point16` coordinate: QXL positions are 16-bit already, so clamping only guards
/// against a source that sends something wider.
fn point16(v: i32) -> u16 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16 as u16
}

/// Appends a Spice `Cursor`: flags, and unless NONE the header and the pixels.
fn put_shape(w: &mut Writer, shape: Option<&CursorShape>) {
    match shape.filter(|s| s.is_consistent()) {
        None => {
            w.u16(CURSOR_FLAGS_NONE);
        }
        Some(s) => {
            w.u16(CURSOR_FLAGS_UNCACHED)
                .u64(0) // unique: nothing is cached, nothing refers to it
                .u8(s.kind.spice_type())
                .u16(s.width)
                .u16(s.height)
                .u16(s.hot_x)
                .u16(s.hot_y)
                .bytes(&s.data);
        }
    }
}

/// An INIT body: position, trail, visibility and the shape.
pub fn init_body(c: &Cursor) -> Vec<u8> {
    init_body_with(c, c.shape.as_deref())
}

fn init_body_with(c: &Cursor, shape: Option<&CursorShape>) -> Vec<u8> {
    let mut w = Writer::default();
    w.u16(point16(c.x))
        .u16(point16(c.y))
        .u16(c.trail.0)
        .u16(c.trail.1)
        .u8(u8::from(c.visible));
    put_shape(&mut w, shape);
    w.buf
}

/// A SET body: position, visibility and the shape.
pub fn set_body(c: &Cursor) -> Vec<u8> {
    set_body_with(c, c.shape.as_deref())
}

fn set_body_with(c: &Cursor, shape: Option<&CursorShape>) -> Vec<u8> {
    let mut w = Writer::default();
    w.u16(point16(c.x))
        .u16(point16(c.y))
        .u8(u8::from(c.visible));
    put_shape(&mut w, shape);
    w.buf
}

/// The side of every cursor spice-html5 is sent.
pub const HTML5_CURSOR_SIDE: u16 = 64;

/// `shape` as spice-html5 turns it into a correct picture. It copies the pixel bytes into an
/// uncompressed PNG as R, G, B, A (Spice's ALPHA pixels are B, G, R, A), and writes the deflate
/// block's length big-endian where deflate reads it little-endian: only a length whose two
/// bytes are equal survives, and `64 × (64 × 4 + 1)` = 0x4040 is one. So the shape goes as ALPHA
/// (see [`as_alpha`]) with red and blue swapped, on a transparent 64 × 64 canvas (cropped if
/// larger; Linux and X cursors are 64 × 64 at most), the hot spot kept inside it.
pub fn html5_shape(shape: &CursorShape) -> CursorShape {
    let alpha = as_alpha(shape);
    let side = usize::from(HTML5_CURSOR_SIDE);
    let (w, h) = (usize::from(alpha.width), usize::from(alpha.height));
    let mut data = vec![0u8; side * side * 4];
    for y in 0..h.min(side) {
        for x in 0..w.min(side) {
            let from = (y * w + x) * 4;
            let to = (y * side + x) * 4;
            if let (Some(src), Some(dst)) =
                (alpha.data.get(from..from + 4), data.get_mut(to..to + 4))
            {
                dst.copy_from_slice(&[src[2], src[1], src[0], src[3]]);
            }
        }
    }
    CursorShape {
        kind: CursorKind::Alpha,
        width: HTML5_CURSOR_SIDE,
        height: HTML5_CURSOR_SIDE,
        hot_x: alpha.hot_x.min(HTML5_CURSOR_SIDE - 1),
        hot_y: alpha.hot_y.min(HTML5_CURSOR_SIDE - 1),
        data,
    }
}

/// `shape` as an ALPHA cursor (spice-html5 draws no other type): a MONO shape's pixels become
/// opaque black (AND 0, XOR 0), opaque white (AND 0, XOR 1), transparent (AND 1, XOR 0), or,
/// for the "invert the screen" pixels (AND 1, XOR 1) a browser cannot draw, opaque black.
pub fn as_alpha(shape: &CursorShape) -> CursorShape {
    match shape.kind {
        CursorKind::Alpha => shape.clone(),
        CursorKind::Mono => {
            let (w, h) = (usize::from(shape.width), usize::from(shape.height));
            let row = w.div_ceil(8);
            let bit = |plane: usize, x: usize, y: usize| {
                shape
                    .data
                    .get(plane * row * h + y * row + x / 8)
                    .is_some_and(|b| b & (0x80 >> (x % 8)) != 0)
            };
            let mut data = Vec::with_capacity(w * h * 4);
            for y in 0..h {
                for x in 0..w {
                    let px: [u8; 4] = match (bit(0, x, y), bit(1, x, y)) {
                        (false, false) | (true, true) => [0, 0, 0, 0xff],
                        (false, true) => [0xff, 0xff, 0xff, 0xff],
                        (true, false) => [0, 0, 0, 0],
                    };
                    data.extend_from_slice(&px);
                }
            }
            CursorShape {
                kind: CursorKind::Alpha,
                data,
                ..shape.clone()
            }
        }
    }
}

fn move_body(c: &Cursor) -> Vec<u8> {
    let mut w = Writer::default();
    w.u16(point16(c.x)).u16(point16(c.y));
    w.buf
}

/// How long the channel's thread sleeps at most while nothing happens, before it looks again
/// at what the cursor source does not announce: the connection closing and the session's mouse
/// mode (a switch to server mode starts the guest's MOVEs). Cursor changes wake it at once.
const LIVENESS: Duration = Duration::from_millis(200);

/// What one client was last sent, and the diff that brings it up to date.
#[derive(Debug, Default)]
pub struct CursorClient {
    inited: bool,
    serial: u64,
    resets: u64,
    server_mode: bool,
    shape_serial: u64,
    position: (i32, i32),
    visible: bool,
    trail: (u16, u16),
    /// A spice-html5 client (see the module documentation).
    html5: bool,
}

impl CursorClient {
    /// A client that has been sent nothing yet: its first update is INIT.
    pub fn new() -> CursorClient {
        CursorClient::default()
    }

    /// A spice-html5 client: only SET, HIDE, INIT without a shape, and ALPHA shapes.
    pub fn html5() -> CursorClient {
        CursorClient {
            html5: true,
            ..CursorClient::default()
        }
    }

    /// A SET of `cur`'s shape as this client draws it.
    fn set(&self, cur: &Cursor) -> (u16, Vec<u8>) {
        let body = match (&cur.shape, self.html5) {
            (Some(shape), true) if shape.is_consistent() => {
                set_body_with(cur, Some(&html5_shape(shape)))
            }
            _ => set_body(cur),
        };
        (msg::CURSOR_SET, body)
    }

    /// What shows `cur` to a spice-html5 client after an INIT or a HIDE: its shape, or HIDE.
    fn html5_show(&self, cur: &Cursor, out: &mut Vec<(u16, Vec<u8>)>) {
        if cur.visible && cur.shape.as_ref().is_some_and(|s| s.is_consistent()) {
            out.push(self.set(cur));
        } else {
            out.push((msg::CURSOR_HIDE, Vec::new()));
        }
    }

    /// Whether the client was sent an INIT and is in `server_mode` already: then only a new
    /// cursor serial can give it anything to send.
    fn is_current(&self, server_mode: bool) -> bool {
        self.inited && server_mode == self.server_mode
    }

    /// The messages (type, body) that bring this client from what it has to `cur`, given the
    /// session's mouse mode; records them as sent.
    pub fn updates(&mut self, cur: &Cursor, server_mode: bool) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        if self.inited && cur.serial == self.serial && server_mode == self.server_mode {
            return out;
        }
        let position = (cur.x, cur.y);
        if !self.inited || cur.resets != self.resets {
            if self.inited {
                // spice-server's cursor reset: the cache (empty here) and the cursor go.
                out.push((msg::CURSOR_INVAL_ALL, Vec::new()));
                out.push((msg::CURSOR_RESET, Vec::new()));
            }
            if self.html5 {
                // It takes nothing from INIT but the position.
                out.push((msg::CURSOR_INIT, init_body_with(cur, None)));
                self.html5_show(cur, &mut out);
            } else {
                out.push((msg::CURSOR_INIT, init_body(cur)));
            }
            self.shape_serial = cur.shape_serial;
            self.position = position;
            self.visible = cur.visible;
            self.trail = cur.trail;
        } else {
            if cur.shape_serial != self.shape_serial {
                out.push(self.set(cur));
                if !cur.visible {
                    out.push((msg::CURSOR_HIDE, Vec::new()));
                }
                self.shape_serial = cur.shape_serial;
                self.position = position;
                self.visible = cur.visible;
            } else if cur.visible != self.visible {
                if self.html5 {
                    self.html5_show(cur, &mut out);
                } else if cur.visible {
                    out.push((msg::CURSOR_MOVE, move_body(cur)));
                    self.position = position;
                } else {
                    out.push((msg::CURSOR_HIDE, Vec::new()));
                }
                self.visible = cur.visible;
            } else if cur.visible && position != self.position && server_mode && !self.html5 {
                out.push((msg::CURSOR_MOVE, move_body(cur)));
                self.position = position;
            }
            if cur.trail != self.trail && !self.html5 {
                let mut w = Writer::default();
                w.u16(cur.trail.0).u16(cur.trail.1);
                out.push((msg::CURSOR_TRAIL, w.buf));
                self.trail = cur.trail;
            }
        }
        self.inited = true;
        self.serial = cur.serial;
        self.resets = cur.resets;
        self.server_mode = server_mode;
        out
    }
}

pub(crate) fn run(
    stream: Stream,
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    mini: bool,
    traffic: Arc<Traffic>,
    html5: bool,
) -> Result<(), ConnError> {
    let mut ch = Channel::open(
        stream,
        mini,
        traffic,
        shared.config.queue_limit,
        MAX_CURSOR_MESSAGE,
        Some(ACK_WINDOW),
    )?;
    {
        let (queue, shared, session) = (ch.queue().clone(), shared.clone(), session.clone());
        ch.spawn("spice-cursor", move || {
            let mut client = if html5 {
                CursorClient::html5()
            } else {
                CursorClient::new()
            };
            while !queue.is_closed() && !session.is_closed() {
                // A client that is behind gets nothing new until it drains.
                if !queue.wait_below(BEHIND_BYTES, LIVENESS) {
                    continue;
                }
                let server_mode = session.mouse_mode.load(Ordering::Acquire) == MOUSE_MODE_SERVER;
                let cur = if client.is_current(server_mode) {
                    shared.cursor.wait_change(client.serial, LIVENESS)
                } else {
                    shared.cursor.cursor()
                };
                let server_mode = session.mouse_mode.load(Ordering::Acquire) == MOUSE_MODE_SERVER;
                for (ty, body) in client.updates(&cur.unwrap_or_default(), server_mode) {
                    let _ = queue.push(ty, body, false);
                }
            }
        })?;
    }
    // The client only sends common messages here.
    let result = ch.serve(session, |_, _| Ok(()));
    ch.close();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::CursorKind;

    fn arrow() -> Arc<CursorShape> {
        Arc::new(CursorShape {
            kind: CursorKind::Alpha,
            width: 2,
            height: 1,
            hot_x: 1,
            hot_y: 0,
            data: vec![1, 2, 3, 4, 5, 6, 7, 8],
        })
    }

    fn types(u: &[(u16, Vec<u8>)]) -> Vec<u16> {
        u.iter().map(|(t, _)| *t).collect()
    }

    #[test]
    fn init_layout() {
        let c = Cursor {
            serial: 1,
            x: 10,
            y: -2,
            visible: true,
            trail: (3, 4),
            shape_serial: 1,
            shape: Some(arrow()),
            ..Cursor::default()
        };
        let body = init_body(&c);
        let mut want = vec![10, 0, 0xfe, 0xff, 3, 0, 4, 0, 1, 0, 0];
        want.extend([0; 8]);
        want.extend([0, 2, 0, 1, 0, 1, 0, 0, 0]);
        want.extend(1..=8);
        assert_eq!(body, want);
        // No shape, and a shape whose data is short: both "no cursor".
        let none = Cursor::default();
        assert_eq!(init_body(&none), vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        let mut bad = (*arrow()).clone();
        bad.data.pop();
        let c = Cursor {
            shape: Some(Arc::new(bad)),
            ..Cursor::default()
        };
        assert_eq!(&set_body(&c)[5..], &[1, 0]);
        assert_eq!(point16(70_000), 0x7fff);
    }

    #[test]
    fn diffs_follow_spice_server() {
        let mut cl = CursorClient::new();
        let mut c = Cursor::default();
        assert_eq!(types(&cl.updates(&c, true)), [msg::CURSOR_INIT]);
        assert!(cl.updates(&c, true).is_empty(), "nothing changed");
        c.serial = 2;
        c.shape_serial = 1;
        c.shape = Some(arrow());
        c.visible = true;
        assert_eq!(types(&cl.updates(&c, true)), [msg::CURSOR_SET]);
        // Moves go out in server mode only...
        c.serial = 3;
        c.x = 5;
        let u = cl.updates(&c, true);
        assert_eq!(u, [(msg::CURSOR_MOVE, vec![5, 0, 0, 0])]);
        c.serial = 4;
        c.x = 6;
        assert!(cl.updates(&c, false).is_empty(), "client mode: no move");
        // ...and are caught up when the mode goes back to server.
        assert_eq!(cl.updates(&c, true), [(msg::CURSOR_MOVE, vec![6, 0, 0, 0])]);
        c.serial = 5;
        c.visible = false;
        assert_eq!(types(&cl.updates(&c, false)), [msg::CURSOR_HIDE]);
        // Showing again is a MOVE even in client mode (spice-server's cursor_show).
        c.serial = 6;
        c.visible = true;
        assert_eq!(types(&cl.updates(&c, false)), [msg::CURSOR_MOVE]);
        // A shape set hidden: SET then HIDE; a trail: TRAIL.
        c.serial = 7;
        c.shape_serial = 2;
        c.visible = false;
        c.trail = (1, 2);
        assert_eq!(
            types(&cl.updates(&c, true)),
            [msg::CURSOR_SET, msg::CURSOR_HIDE, msg::CURSOR_TRAIL]
        );
        // A reset: INVAL_ALL, RESET, INIT.
        let reset = Cursor {
            serial: 8,
            resets: 1,
            ..Cursor::default()
        };
        assert_eq!(
            types(&cl.updates(&reset, true)),
            [msg::CURSOR_INVAL_ALL, msg::CURSOR_RESET, msg::CURSOR_INIT]
        );
    }

    /// spice-html5 ignores INIT's shape, MOVE and TRAIL and draws only ALPHA shapes, as R,G,B,A
    /// bytes of a 64x64 PNG: it gets INIT without a shape then SET, SET where others get the
    /// MOVE that shows the pointer, nothing for moves and trails, and shapes made for its PNG.
    #[test]
    fn html5_gets_only_what_it_draws() {
        let mut cl = CursorClient::html5();
        let mut c = Cursor {
            serial: 1,
            shape_serial: 1,
            shape: Some(arrow()),
            visible: true,
            ..Cursor::default()
        };
        let u = cl.updates(&c, true);
        assert_eq!(types(&u), [msg::CURSOR_INIT, msg::CURSOR_SET]);
        assert_eq!(&u[0].1[9..], &[1, 0], "INIT without a shape");
        let set = &u[1].1;
        // Position, visible, flags 0, unique, type ALPHA, 64x64, the hot spot.
        assert_eq!(&set[5..7], &[0, 0]);
        assert_eq!(set[15], 0);
        assert_eq!(&set[16..24], &[64, 0, 64, 0, 1, 0, 0, 0]);
        let px = &set[24..];
        assert_eq!(px.len(), 64 * 64 * 4);
        assert_eq!(&px[..8], &[3, 2, 1, 4, 7, 6, 5, 8], "R and B swapped");
        assert!(px[8..].iter().all(|b| *b == 0), "transparent around it");
        c.serial = 2;
        c.x = 40;
        c.trail = (1, 1);
        assert!(cl.updates(&c, true).is_empty(), "no MOVE, no TRAIL");
        c.serial = 3;
        c.visible = false;
        assert_eq!(types(&cl.updates(&c, true)), [msg::CURSOR_HIDE]);
        c.serial = 4;
        c.visible = true;
        assert_eq!(types(&cl.updates(&c, true)), [msg::CURSOR_SET]);
        // No shape: HIDE after INIT.
        let mut cl = CursorClient::html5();
        let u = cl.updates(&Cursor::default(), true);
        assert_eq!(types(&u), [msg::CURSOR_INIT, msg::CURSOR_HIDE]);
        // A MONO shape: white, black, transparent, and black for "invert".
        let mono = CursorShape {
            kind: CursorKind::Mono,
            width: 4,
            height: 1,
            hot_x: 9,
            hot_y: 0,
            data: vec![0b0011_0000, 0b0101_0000],
        };
        let a = as_alpha(&mono);
        assert_eq!(a.kind, CursorKind::Alpha);
        assert_eq!(
            a.data,
            [
                [0, 0, 0, 255],
                [255, 255, 255, 255],
                [0, 0, 0, 0],
                [0, 0, 0, 255]
            ]
            .concat()
        );
        assert_eq!(html5_shape(&mono).hot_x, 9);
    }
}
