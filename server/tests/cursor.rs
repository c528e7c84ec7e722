//! The cursor channel against a synthetic cursor source, with the library client: what INIT,
//! SET, MOVE, HIDE and RESET carry, and when MOVEs are sent (server mouse mode only).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestSource;
use saffron_display::Watch;
use saffron_server::client::{CursorChannel, CursorMessage, ReceivedShape, Session};
use saffron_server::{
    Cursor, CursorKind, CursorShape, CursorSource, InputSink, ServerConfig, ServerHandle,
};

/// A cursor the test changes; every change bumps the serial and is published, as a real
/// source must.
#[derive(Default)]
struct TestCursor(Watch<Cursor>);

impl CursorSource for TestCursor {
    fn cursor(&self) -> Option<Cursor> {
        Some(self.0.latest())
    }

    fn wait_change(&self, serial: u64, timeout: Duration) -> Option<Cursor> {
        Some(self.0.wait_until(timeout, |c| c.serial != serial))
    }
}

impl TestCursor {
    fn change(&self, f: impl FnOnce(&mut Cursor)) {
        let mut c = self.0.latest();
        f(&mut c);
        c.serial += 1;
        self.0.publish(c);
    }

    fn set_shape(&self, shape: CursorShape, x: i32, y: i32) {
        self.change(|c| {
            c.shape = Some(Arc::new(shape));
            c.shape_serial += 1;
            c.x = x;
            c.y = y;
            c.visible = true;
        });
    }
}

/// A sink with an absolute pointer, so that both mouse modes exist (client is the default).
struct Tablet;

impl InputSink for Tablet {
    fn has_absolute_pointer(&self) -> bool {
        true
    }
}

fn start() -> (ServerHandle, Arc<TestCursor>) {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.password = Some("pw".into());
    let cursor = Arc::new(TestCursor::default());
    let h = saffron_server::start_with_cursor(
        cfg,
        Arc::new(TestSource::default()),
        Arc::new(Tablet),
        cursor.clone(),
    )
    .unwrap();
    (h, cursor)
}

/// A 64x64 ARGB arrow-ish picture: every pixel distinct, alpha varying.
fn alpha_shape(hot_x: u16, hot_y: u16) -> CursorShape {
    let data = (0..64u32 * 64)
        .flat_map(|i| (i.wrapping_mul(2_654_435_761) | (i % 255) << 24).to_le_bytes())
        .collect();
    CursorShape {
        kind: CursorKind::Alpha,
        width: 64,
        height: 64,
        hot_x,
        hot_y,
        data,
    }
}

fn received(s: &CursorShape) -> ReceivedShape {
    ReceivedShape {
        flags: 0,
        unique: 0,
        kind: s.kind.spice_type(),
        width: s.width,
        height: s.height,
        hot_x: s.hot_x,
        hot_y: s.hot_y,
        data: s.data.clone(),
    }
}

fn connect(h: &ServerHandle) -> (Session, CursorChannel) {
    let session = Session::connect(h.local_addr(), "pw").unwrap();
    let cursor = session.cursor().unwrap();
    (session, cursor)
}

#[test]
fn init_carries_the_current_cursor_and_set_the_new_one() {
    let (h, src) = start();
    let arrow = alpha_shape(3, 5);
    src.set_shape(arrow.clone(), 100, 200);
    let (_s, mut cur) = connect(&h);
    assert_eq!(
        cur.read().unwrap(),
        CursorMessage::Init {
            x: 100,
            y: 200,
            trail: (0, 0),
            visible: true,
            shape: Some(received(&arrow)),
        }
    );
    // A mono 16x16 shape: AND then XOR planes, 2 bytes a row each.
    let mono = CursorShape {
        kind: CursorKind::Mono,
        width: 16,
        height: 16,
        hot_x: 15,
        hot_y: 0,
        data: (0..64).collect(),
    };
    src.set_shape(mono.clone(), -4, 7);
    assert_eq!(
        cur.read().unwrap(),
        CursorMessage::Set {
            x: -4,
            y: 7,
            visible: true,
            shape: Some(received(&mono)),
        }
    );
    // A shape whose data does not match its size goes out as "no cursor".
    let mut broken = alpha_shape(0, 0);
    broken.data.truncate(100);
    src.set_shape(broken, 1, 1);
    assert_eq!(
        cur.read().unwrap(),
        CursorMessage::Set {
            x: 1,
            y: 1,
            visible: true,
            shape: None,
        }
    );
}

#[test]
fn moves_in_server_mode_hide_and_reset() {
    let (h, src) = start();
    let (mut session, mut cur) = connect(&h);
    assert_eq!(
        session.mouse_mode, 2,
        "client mode by default with a tablet"
    );
    assert!(matches!(
        cur.read().unwrap(),
        CursorMessage::Init {
            visible: false,
            shape: None,
            ..
        }
    ));
    let arrow = alpha_shape(0, 0);
    src.set_shape(arrow.clone(), 10, 10);
    assert!(matches!(
        cur.read().unwrap(),
        CursorMessage::Set { x: 10, .. }
    ));

    // Client mode: the guest's moves are not sent (the client's own pointer leads). The
    // next message after a move and a hide is the HIDE.
    src.change(|c| c.x = 20);
    std::thread::sleep(Duration::from_millis(200));
    src.change(|c| c.visible = false);
    assert_eq!(cur.read().unwrap(), CursorMessage::Hide);
    // Showing it again is a MOVE even in client mode.
    src.change(|c| {
        c.visible = true;
        c.x = 30;
    });
    assert_eq!(cur.read().unwrap(), CursorMessage::Move { x: 30, y: 10 });

    // Server mode: every move the poll sees.
    assert_eq!(session.request_mouse_mode(1).unwrap(), 1);
    for (x, y) in [(31i16, 12i16), (640, 480), (0, 0)] {
        src.change(|c| {
            c.x = x.into();
            c.y = y.into();
        });
        assert_eq!(cur.read().unwrap(), CursorMessage::Move { x, y });
    }

    // A reset (device reset, primary destroyed): INVAL_ALL, RESET, then a fresh INIT.
    src.change(|c| {
        *c = Cursor {
            serial: c.serial,
            resets: c.resets + 1,
            ..Cursor::default()
        }
    });
    assert_eq!(cur.read().unwrap(), CursorMessage::InvalAll);
    assert_eq!(cur.read().unwrap(), CursorMessage::Reset);
    assert!(matches!(
        cur.read().unwrap(),
        CursorMessage::Init { shape: None, .. }
    ));
}

#[test]
fn many_changes_with_acks_keep_flowing() {
    // More than two ACK windows of messages: the client's ACKs must keep the channel open.
    let (h, src) = start();
    let (mut session, mut cur) = connect(&h);
    session.request_mouse_mode(1).unwrap();
    assert!(matches!(cur.read().unwrap(), CursorMessage::Init { .. }));
    src.set_shape(alpha_shape(1, 1), 0, 0);
    assert!(matches!(cur.read().unwrap(), CursorMessage::Set { .. }));
    for i in 1..=100i16 {
        src.change(|c| c.x = i.into());
        assert_eq!(cur.read().unwrap(), CursorMessage::Move { x: i, y: 0 });
    }
}

#[test]
fn a_server_without_a_pointer_says_no_cursor() {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.password = Some("pw".into());
    let h = saffron_server::start(
        cfg,
        Arc::new(TestSource::default()),
        Arc::new(saffron_server::NullInput),
    )
    .unwrap();
    let (_s, mut cur) = connect(&h);
    assert_eq!(
        cur.read().unwrap(),
        CursorMessage::Init {
            x: 0,
            y: 0,
            trail: (0, 0),
            visible: false,
            shape: None,
        }
    );
}
