//! The inputs channel (spec §9.2): keyboard and mouse messages go to the [`InputSink`];
//! a MOUSE_MOTION_ACK every four motion/position messages keeps the client sending.

use std::sync::Arc;

use tracing::debug;

use crate::conn::{Common, ConnError, SendQueue, handle_common, read_message, spawn_writer};
use crate::server::Shared;
use crate::session::Session;
use crate::source::{InputSink, KeyEvent, PointerEvent};
use crate::tls::Stream;
use crate::wire::{Reader, Writer, msg};

/// SPICE_INPUT_MOTION_ACK_BUNCH.
const MOTION_ACK_BUNCH: u32 = 4;
/// Largest client message on the inputs channel: the largest inputs message is 14 bytes
/// (MOUSE_POSITION); unknown ones are read and ignored up to this.
pub(crate) const MAX_INPUTS_MESSAGE: u32 = 256;
/// Byte bound of the inputs channel's queue: it only sends INIT and motion acks.
const INPUTS_QUEUE_LIMIT: usize = 1 << 20;

pub(crate) fn run(
    mut stream: Stream,
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    mini: bool,
) -> Result<(), ConnError> {
    let queue = SendQueue::new(INPUTS_QUEUE_LIMIT);
    let writer = spawn_writer(
        stream.try_clone()?,
        queue.clone(),
        mini,
        tracing::Span::current(),
    )?;
    let mut w = Writer::default();
    w.u16(shared.input.led_modifiers());
    let _ = queue.push(msg::INPUTS_INIT, w.buf, false);
    let mut motions: u32 = 0;
    let result = loop {
        if session.is_closed() {
            break Ok(());
        }
        let (ty, body) = match read_message(&mut stream, mini, MAX_INPUTS_MESSAGE) {
            Ok(m) => m,
            Err(ConnError::Closed) => break Ok(()),
            Err(e) => break Err(e),
        };
        match handle_common(&queue, ty, &body) {
            Ok(Common::NotCommon) => {}
            Ok(Common::Disconnecting) => break Ok(()),
            Ok(_) => continue,
            Err(e) => break Err(e),
        }
        match handle(shared.input.as_ref(), ty, &body) {
            Ok(true) => {
                motions = motions.wrapping_add(1);
                if motions.is_multiple_of(MOTION_ACK_BUNCH) {
                    let _ = queue.push(msg::INPUTS_MOUSE_MOTION_ACK, Vec::new(), false);
                }
            }
            Ok(false) => {}
            Err(e) => break Err(e),
        }
    };
    queue.close();
    let _ = writer.join();
    result
}

/// Decodes one inputs message and feeds the sink. Returns whether it was a motion/position
/// message (those are acked in bunches).
pub fn handle(sink: &dyn InputSink, ty: u16, body: &[u8]) -> Result<bool, ConnError> {
    let malformed = |source| ConnError::Malformed { ty, source };
    let mut r = Reader::new(body);
    match ty {
        msg::MSGC_INPUTS_KEY_DOWN | msg::MSGC_INPUTS_KEY_UP => {
            let scancode = r.u32().map_err(malformed)?;
            sink.key(KeyEvent {
                scancode,
                pressed: ty == msg::MSGC_INPUTS_KEY_DOWN,
            });
        }
        msg::MSGC_INPUTS_KEY_MODIFIERS => sink.modifiers(r.u16().map_err(malformed)?),
        msg::MSGC_INPUTS_MOUSE_MOTION => {
            let dx = r.i32().map_err(malformed)?;
            let dy = r.i32().map_err(malformed)?;
            let buttons = r.u16().map_err(malformed)?;
            sink.pointer(PointerEvent::Motion { dx, dy, buttons });
            return Ok(true);
        }
        msg::MSGC_INPUTS_MOUSE_POSITION => {
            let x = r.u32().map_err(malformed)?;
            let y = r.u32().map_err(malformed)?;
            let buttons = r.u16().map_err(malformed)?;
            let display = r.u8().map_err(malformed)?;
            sink.pointer(PointerEvent::Position {
                x,
                y,
                buttons,
                display,
            });
            return Ok(true);
        }
        msg::MSGC_INPUTS_MOUSE_PRESS | msg::MSGC_INPUTS_MOUSE_RELEASE => {
            let button = r.u8().map_err(malformed)?;
            let buttons = r.u16().map_err(malformed)?;
            sink.pointer(if ty == msg::MSGC_INPUTS_MOUSE_PRESS {
                PointerEvent::Press { button, buttons }
            } else {
                PointerEvent::Release { button, buttons }
            });
        }
        other => debug!(ty = other, "ignored inputs message"),
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Rec(Mutex<Vec<String>>);
    impl InputSink for Rec {
        fn key(&self, e: KeyEvent) {
            self.0.lock().unwrap().push(format!("{e:?}"));
        }
        fn pointer(&self, e: PointerEvent) {
            self.0.lock().unwrap().push(format!("{e:?}"));
        }
    }

    #[test]
    fn decodes_and_rejects_short() {
        let rec = Rec::default();
        assert!(!handle(&rec, 101, &0x1eu32.to_le_bytes()).unwrap());
        let mut w = Writer::default();
        w.i32(-3).i32(4).u16(1);
        assert!(handle(&rec, 111, &w.buf).unwrap());
        assert!(handle(&rec, 113, &[1]).is_err());
        let got = rec.0.lock().unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].contains("scancode: 30, pressed: true"));
        assert!(got[1].contains("dx: -3"));
        assert_eq!(
            KeyEvent {
                scancode: 0x48e0,
                pressed: true
            }
            .bytes()
            .collect::<Vec<_>>(),
            vec![0xe0, 0x48]
        );
    }
}
