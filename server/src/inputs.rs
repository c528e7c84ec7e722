//! The inputs channel (spec §9.2): keyboard and mouse messages go to the [`InputSink`];
//! a MOUSE_MOTION_ACK every four motion/position messages keeps the client sending.
//! Pointer motion counts only in the session's mouse mode: relative MOTION in SERVER mode,
//! absolute POSITION in CLIENT mode (a client that has not caught up with a mode switch yet
//! must not move the guest's pointer with the wrong kind of event); both are acked anyway.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tracing::debug;

use crate::channel::{Channel, Event};
use crate::conn::{ConnError, Traffic};
use crate::server::Shared;
use crate::session::{MOUSE_MODE_CLIENT, MOUSE_MODE_SERVER, Session};
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
        INPUTS_QUEUE_LIMIT,
        MAX_INPUTS_MESSAGE,
        None,
    )?;
    let mut w = Writer::default();
    w.u16(shared.input.led_modifiers());
    let _ = ch.queue().push(msg::INPUTS_INIT, w.buf, false);
    let mut motions: u32 = 0;
    let last = Arc::new(Mutex::new((0u32, 0u32, 0u8)));
    let result = ch.serve(session, |queue, event| {
        let Event::Message(ty, body) = event else {
            return Ok(());
        };
        let mode = session.mouse_mode.load(Ordering::Acquire);
        let translated;
        let body = if html5 {
            translated = html5_key(ty, body);
            translated.as_deref().unwrap_or(body)
        } else {
            body
        };
        let sink = AgentPointer {
            agent: shared.agent.clone(),
            sink: shared.input.clone(),
            client_mode: mode == MOUSE_MODE_CLIENT && shared.config.agent_mouse,
            last: last.clone(),
        };
        if handle(&sink, mode, ty, body)? {
            motions = motions.wrapping_add(1);
            if motions.is_multiple_of(MOTION_ACK_BUNCH) {
                let _ = queue.push(msg::INPUTS_MOUSE_MOTION_ACK, Vec::new(), false);
            }
        }
        Ok(())
    });
    ch.close();
    result
}

/// spice-html5's scancodes for Print Screen and Pause: it sends X.org's "XSpice" codes (its
/// own comment says so) where PC keyboards send E0-prefixed ones.
const HTML5_PRINT: u32 = 99;
const HTML5_BREAK: u32 = 101;

/// The standard set-1 code for a KEY_DOWN/KEY_UP body of spice-html5's that differs from it
/// (Print Screen and Pause/Break); `None` for every other message and key. Everything else it
/// sends is standard: single-byte codes, E0-prefixed grey keys as `0xE0 | code << 8`, releases
/// with the break bit.
pub fn html5_key(ty: u16, body: &[u8]) -> Option<Vec<u8>> {
    if !matches!(ty, msg::MSGC_INPUTS_KEY_DOWN | msg::MSGC_INPUTS_KEY_UP) {
        return None;
    }
    let code = Reader::new(body).u32().ok()?;
    let release = code & 0x80;
    let standard = match code & !0x80 {
        HTML5_PRINT => 0x37,
        HTML5_BREAK => 0x46,
        _ => return None,
    };
    Some((0xe0 | ((standard | release) << 8)).to_le_bytes().to_vec())
}

/// Spice button mask bits (left 1, middle 2, right 4, wheel up 8, wheel down 16) as the
/// agent's VD_AGENT_*BUTTON_MASK bits, which are the same buttons one bit higher.
fn agent_buttons(buttons: u16) -> u32 {
    u32::from(buttons & 0x1f) << 1
}

/// Client pointer events in the client mouse mode go to the guest agent when one is connected,
/// as spice-server's agent mouse (QEMU's default `agent-mouse=on`): the agent moves its own
/// absolute pointer in the guest, knowing the display the client's pointer is on. Without an
/// agent, and in the server mode, events go to the VMM's input devices. Buttons are sent
/// with the last position, which is why it is kept.
struct AgentPointer {
    agent: Arc<crate::agent_link::AgentHub>,
    sink: Arc<dyn InputSink>,
    client_mode: bool,
    last: Arc<Mutex<(u32, u32, u8)>>,
}

impl InputSink for AgentPointer {
    fn key(&self, event: KeyEvent) {
        self.sink.key(event);
    }

    fn modifiers(&self, modifiers: u16) {
        self.sink.modifiers(modifiers);
    }

    fn pointer(&self, event: PointerEvent) {
        if self.client_mode {
            let state = match event {
                PointerEvent::Position {
                    x,
                    y,
                    buttons,
                    display,
                } => {
                    *self.last.lock().unwrap_or_else(|e| e.into_inner()) = (x, y, display);
                    Some((x, y, buttons, display))
                }
                PointerEvent::Press { buttons, .. } | PointerEvent::Release { buttons, .. } => {
                    let (x, y, display) = *self.last.lock().unwrap_or_else(|e| e.into_inner());
                    Some((x, y, buttons, display))
                }
                PointerEvent::Motion { .. } => None,
            };
            if let Some((x, y, buttons, display)) = state
                && self
                    .agent
                    .mouse_state(x, y, agent_buttons(buttons), display)
            {
                return;
            }
        }
        self.sink.pointer(event);
    }

    fn has_absolute_pointer(&self) -> bool {
        self.sink.has_absolute_pointer()
    }

    fn led_modifiers(&self) -> u16 {
        self.sink.led_modifiers()
    }
}

/// Decodes one inputs message and feeds the sink; `mouse_mode` is the session's current
/// mode (MOTION is dropped unless it is SERVER, POSITION unless it is CLIENT). Returns whether
/// it was a motion/position message (those are acked in bunches, dropped or not).
pub fn handle(
    sink: &dyn InputSink,
    mouse_mode: u16,
    ty: u16,
    body: &[u8],
) -> Result<bool, ConnError> {
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
            if mouse_mode == MOUSE_MODE_SERVER {
                sink.pointer(PointerEvent::Motion { dx, dy, buttons });
            } else {
                debug!(
                    mouse_mode,
                    "relative motion outside the server mouse mode dropped"
                );
            }
            return Ok(true);
        }
        msg::MSGC_INPUTS_MOUSE_POSITION => {
            let x = r.u32().map_err(malformed)?;
            let y = r.u32().map_err(malformed)?;
            let buttons = r.u16().map_err(malformed)?;
            let display = r.u8().map_err(malformed)?;
            if mouse_mode == MOUSE_MODE_CLIENT {
                sink.pointer(PointerEvent::Position {
                    x,
                    y,
                    buttons,
                    display,
                });
            } else {
                debug!(
                    mouse_mode,
                    "absolute position outside the client mouse mode dropped"
                );
            }
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
        let server = MOUSE_MODE_SERVER;
        assert!(!handle(&rec, server, 101, &0x1eu32.to_le_bytes()).unwrap());
        let mut w = Writer::default();
        w.i32(-3).i32(4).u16(1);
        assert!(handle(&rec, server, 111, &w.buf).unwrap());
        assert!(handle(&rec, server, 113, &[1]).is_err());
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

    #[test]
    fn motion_counts_only_in_its_mouse_mode() {
        let rec = Rec::default();
        let mut motion = Writer::default();
        motion.i32(5).i32(-5).u16(0);
        let mut position = Writer::default();
        position.u32(10).u32(20).u16(0).u8(0);
        // Dropped ones are still motion messages for the ack count.
        assert!(handle(&rec, MOUSE_MODE_CLIENT, 111, &motion.buf).unwrap());
        assert!(handle(&rec, MOUSE_MODE_SERVER, 112, &position.buf).unwrap());
        assert!(rec.0.lock().unwrap().is_empty());
        assert!(handle(&rec, MOUSE_MODE_SERVER, 111, &motion.buf).unwrap());
        assert!(handle(&rec, MOUSE_MODE_CLIENT, 112, &position.buf).unwrap());
        let got = rec.0.lock().unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with("Motion"), "{got:?}");
        assert!(got[1].starts_with("Position"), "{got:?}");
    }

    #[test]
    fn html5_print_and_break_become_pc_codes() {
        let key = |ty, code: u32| html5_key(ty, &code.to_le_bytes());
        assert_eq!(key(101, 99), Some(0x37e0u32.to_le_bytes().to_vec()));
        assert_eq!(key(102, 99 | 0x80), Some(0xb7e0u32.to_le_bytes().to_vec()));
        assert_eq!(key(101, 101), Some(0x46e0u32.to_le_bytes().to_vec()));
        assert_eq!(key(101, 0x1e), None, "everything else is standard");
        assert_eq!(key(101, 0x48e0), None);
        assert_eq!(html5_key(111, &[0; 10]), None);
        assert_eq!(html5_key(101, &[1]), None, "short: left to the decoder");
    }
}
