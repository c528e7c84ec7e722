//! Client input into a QEMU guest through QMP `input-send-event`: the Spice inputs channel's
//! keys and pointer events become events on QEMU's own PS/2 keyboard and mouse and, when the
//! VM has one, an absolute pointer (virtio-tablet).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use saffron_server::source::{InputSink, KeyEvent, PointerEvent};
use serde_json::{Value, json};
use tracing::{debug, warn};

/// Largest absolute coordinate QEMU's input layer takes (INPUT_EVENT_ABS_MAX).
const ABS_MAX: u64 = 0x7fff;

/// A QMP connection, used one command at a time.
pub struct Qmp {
    conn: Mutex<BufReader<UnixStream>>,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Qmp")
    }
}

impl Qmp {
    /// Connects to QEMU's QMP socket and leaves capabilities negotiation mode.
    pub fn connect(path: &Path) -> io::Result<Qmp> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut conn = BufReader::new(stream);
        let mut greeting = String::new();
        conn.read_line(&mut greeting)?;
        if !greeting.contains("QMP") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a QMP greeting",
            ));
        }
        let qmp = Qmp {
            conn: Mutex::new(conn),
        };
        qmp.execute(&json!({"execute": "qmp_capabilities"}))?;
        Ok(qmp)
    }

    /// Sends one command and waits for its answer (asynchronous events are skipped).
    pub fn execute(&self, command: &Value) -> io::Result<Value> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut line = command.to_string();
        line.push('\n');
        conn.get_mut().write_all(line.as_bytes())?;
        loop {
            let mut reply = String::new();
            if conn.read_line(&mut reply)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "QMP closed"));
            }
            let v: Value = serde_json::from_str(&reply)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if v.get("event").is_some() {
                continue;
            }
            if let Some(err) = v.get("error") {
                return Err(io::Error::other(format!("QMP error: {err}")));
            }
            return Ok(v);
        }
    }
}

/// The QEMU "number" key code for Spice's packed set-1 scancode bytes: the code with the
/// break bit cleared, plus 0x80 for E0-prefixed keys.
pub fn qemu_key_number(event: &KeyEvent) -> Option<u32> {
    let mut extended = false;
    for b in event.bytes() {
        if b == 0xe0 {
            extended = true;
            continue;
        }
        return Some(u32::from(b & 0x7f) | if extended { 0x80 } else { 0 });
    }
    None
}

fn button_name(button: u8) -> Option<&'static str> {
    Some(match button {
        1 => "left",
        2 => "middle",
        3 => "right",
        4 => "wheel-up",
        5 => "wheel-down",
        6 => "side",
        7 => "extra",
        _ => return None,
    })
}

/// The Spice button mask bit of each button number 1..=7.
fn mask_buttons(mask: u16) -> impl Iterator<Item = (u8, bool)> {
    (1u8..=7).map(move |b| (b, mask & (1 << (b - 1)) != 0))
}

/// An [`InputSink`] that drives a QEMU guest's input devices over QMP.
pub struct QmpInput {
    qmp: Qmp,
    absolute: bool,
    screen: Box<dyn Fn() -> Option<(u32, u32)> + Send + Sync>,
    buttons: Mutex<u16>,
}

impl QmpInput {
    /// `absolute`: whether the VM has an absolute pointer; `screen` gives the guest's current
    /// screen size, to scale client positions into QEMU's absolute range.
    pub fn new(
        qmp: Qmp,
        absolute: bool,
        screen: Box<dyn Fn() -> Option<(u32, u32)> + Send + Sync>,
    ) -> Self {
        QmpInput {
            qmp,
            absolute,
            screen,
            buttons: Mutex::new(0),
        }
    }

    fn send(&self, events: Vec<Value>) {
        if events.is_empty() {
            return;
        }
        let cmd = json!({"execute": "input-send-event", "arguments": {"events": events}});
        if let Err(e) = self.qmp.execute(&cmd) {
            warn!("input-send-event failed: {e}");
        }
    }

    /// Button events for the difference between the last mask and `mask`.
    fn button_changes(&self, mask: u16) -> Vec<Value> {
        let mut last = self.buttons.lock().unwrap_or_else(|e| e.into_inner());
        let old = *last;
        *last = mask;
        mask_buttons(mask)
            .zip(mask_buttons(old))
            .filter(|((_, now), (_, before))| now != before)
            .filter_map(|((b, down), _)| {
                button_name(b).map(|n| json!({"type": "btn", "data": {"down": down, "button": n}}))
            })
            .collect()
    }
}

impl InputSink for QmpInput {
    fn key(&self, event: KeyEvent) {
        let Some(number) = qemu_key_number(&event) else {
            return;
        };
        debug!(number, pressed = event.pressed, "key");
        self.send(vec![json!({"type": "key", "data": {
            "down": event.pressed,
            "key": {"type": "number", "data": number},
        }})]);
    }

    fn pointer(&self, event: PointerEvent) {
        let events = match event {
            PointerEvent::Motion { dx, dy, buttons } => {
                let mut ev = vec![
                    json!({"type": "rel", "data": {"axis": "x", "value": dx}}),
                    json!({"type": "rel", "data": {"axis": "y", "value": dy}}),
                ];
                ev.extend(self.button_changes(buttons));
                ev
            }
            PointerEvent::Position { x, y, buttons, .. } => {
                let Some((w, h)) = (self.screen)().filter(|(w, h)| *w > 1 && *h > 1) else {
                    return;
                };
                let scale = |v: u32, size: u32| {
                    (u64::from(v.min(size - 1)) * ABS_MAX / u64::from(size - 1)) as i64
                };
                let mut ev = vec![
                    json!({"type": "abs", "data": {"axis": "x", "value": scale(x, w)}}),
                    json!({"type": "abs", "data": {"axis": "y", "value": scale(y, h)}}),
                ];
                ev.extend(self.button_changes(buttons));
                ev
            }
            PointerEvent::Press { buttons, .. } | PointerEvent::Release { buttons, .. } => {
                self.button_changes(buttons)
            }
        };
        self.send(events);
    }

    fn has_absolute_pointer(&self) -> bool {
        self.absolute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_numbers() {
        let k = |scancode, pressed| qemu_key_number(&KeyEvent { scancode, pressed });
        assert_eq!(k(0x1e, true), Some(0x1e), "A down");
        assert_eq!(k(0x9e, false), Some(0x1e), "A up");
        assert_eq!(k(0x48e0, true), Some(0xc8), "Up arrow (E0 48)");
        assert_eq!(k(0xc8e0, false), Some(0xc8), "Up arrow release");
        assert_eq!(k(0, true), None);
    }

    #[test]
    fn qmp_over_a_fake_qemu() {
        use std::os::unix::net::UnixListener;
        let dir = std::env::temp_dir().join(format!("saffron-qmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            let mut got = Vec::new();
            for _ in 0..2 {
                let mut l = String::new();
                r.read_line(&mut l).unwrap();
                got.push(l);
                writeln!(w, r#"{{"event": "SOMETHING"}}"#).unwrap();
                writeln!(w, r#"{{"return": {{}}}}"#).unwrap();
            }
            got
        });
        let input = QmpInput::new(
            Qmp::connect(&path).unwrap(),
            true,
            Box::new(|| Some((1024, 768))),
        );
        input.pointer(PointerEvent::Position {
            x: 1023,
            y: 0,
            buttons: 1,
            display: 0,
        });
        let got = server.join().unwrap();
        assert!(got[0].contains("qmp_capabilities"));
        let v: Value = serde_json::from_str(&got[1]).unwrap();
        let ev = &v["arguments"]["events"];
        assert_eq!(ev[0]["data"]["value"], 0x7fff);
        assert_eq!(ev[1]["data"]["value"], 0);
        assert_eq!(ev[2]["data"]["button"], "left");
        assert_eq!(ev[2]["data"]["down"], true);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
