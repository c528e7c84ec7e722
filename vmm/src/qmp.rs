//! Client input into a QEMU guest through QMP `input-send-event`: the Spice inputs channel's
//! keys and pointer events become events on QEMU's own PS/2 keyboard and mouse and, when the
//! VM has one, an absolute pointer (virtio-tablet). The same connection refuses migrations
//! ([`Qmp::refuse_migration`]).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use saffron_server::source::{InputSink, KeyEvent, PointerEvent};
use serde_json::{Value, json};
use tracing::{debug, error, warn};

/// Largest absolute coordinate QEMU's input layer takes (INPUT_EVENT_ABS_MAX).
const ABS_MAX: u64 = 0x7fff;

/// A QMP connection, used one command at a time. A reader thread takes every line QEMU sends:
/// replies go to the command waiting for them, events to the event handler (so that an event
/// is seen when it comes, not when the next command happens to be sent).
pub struct Qmp {
    writer: Mutex<UnixStream>,
    /// Replies, taken by one command at a time (the lock also orders the commands).
    replies: Mutex<mpsc::Receiver<Value>>,
    next_id: AtomicU64,
    events: Arc<Mutex<Option<EventHandler>>>,
}

/// What is done with each asynchronous QMP event.
type EventHandler = Box<dyn Fn(&Value, &UnixStream) + Send>;

/// How long a command waits for its reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Qmp")
    }
}

impl Qmp {
    /// Connects to QEMU's QMP socket and leaves capabilities negotiation mode.
    pub fn connect(path: &Path) -> io::Result<Qmp> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        let mut conn = BufReader::new(stream.try_clone()?);
        let mut greeting = String::new();
        conn.read_line(&mut greeting)?;
        if !greeting.contains("QMP") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a QMP greeting",
            ));
        }
        // From here the reader thread waits for lines as long as the connection lives.
        conn.get_ref().set_read_timeout(None)?;
        let (tx, rx) = mpsc::channel();
        let events: Arc<Mutex<Option<EventHandler>>> = Arc::new(Mutex::new(None));
        let (handler, writer) = (Arc::clone(&events), stream.try_clone()?);
        std::thread::Builder::new()
            .name("saffron-qmp-reader".into())
            .spawn(move || read_loop(conn, &tx, &handler, &writer))?;
        let qmp = Qmp {
            writer: Mutex::new(stream),
            replies: Mutex::new(rx),
            next_id: AtomicU64::new(1),
            events,
        };
        qmp.execute(&json!({"execute": "qmp_capabilities"}))?;
        Ok(qmp)
    }

    /// Sends one command and waits for its answer.
    pub fn execute(&self, command: &Value) -> io::Result<Value> {
        let replies = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut command = command.clone();
        if let Some(map) = command.as_object_mut() {
            map.insert("id".into(), json!(id));
        }
        let mut line = command.to_string();
        line.push('\n');
        self.writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(line.as_bytes())?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = replies.recv_timeout(left).map_err(|e| match e {
                mpsc::RecvTimeoutError::Timeout => {
                    io::Error::new(io::ErrorKind::TimedOut, "no QMP reply")
                }
                mpsc::RecvTimeoutError::Disconnected => {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "QMP closed")
                }
            })?;
            // A reply to someone else's command (one the event handler sent without waiting,
            // or one that timed out) is skipped; QEMU echoes the id.
            if v.get("id").is_some_and(|i| i != &json!(id)) {
                continue;
            }
            if let Some(err) = v.get("error") {
                return Err(io::Error::other(format!("QMP error: {err}")));
            }
            return Ok(v);
        }
    }

    /// Refuses live migration: QEMU 11's `vfio-user-pci` migrates none of a device's state and
    /// registers no migration blocker, so a migrated guest would find its display device
    /// reset under it on the destination. QEMU is asked for MIGRATION events, and a migration
    /// that starts is cancelled at once (`migrate_cancel`) with an error in our log.
    pub fn refuse_migration(&self) -> io::Result<()> {
        *self.events.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(|event, writer| {
            if let Some(status) = migration_to_refuse(event) {
                error!(
                    status,
                    "a migration started: saffron's QXL device cannot migrate its state \
                         (vfio-user-pci migrates none), so it is cancelled"
                );
                let mut w = writer;
                let cancel = json!({"execute": "migrate_cancel", "id": "saffron-refuse"});
                if let Err(e) = writeln!(w, "{cancel}") {
                    error!("cannot cancel the migration: {e}");
                }
            }
        }));
        self.execute(&json!({
            "execute": "migrate-set-capabilities",
            "arguments": {"capabilities": [{"capability": "events", "state": true}]},
        }))?;
        Ok(())
    }
}

impl Drop for Qmp {
    /// Ends the reader thread with the connection.
    fn drop(&mut self) {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writer.shutdown(std::net::Shutdown::Both);
    }
}

/// The status of a MIGRATION event that means a migration is under way and must be refused.
pub fn migration_to_refuse(event: &Value) -> Option<&str> {
    if event.get("event")?.as_str()? != "MIGRATION" {
        return None;
    }
    let status = event.get("data")?.get("status")?.as_str()?;
    matches!(
        status,
        "setup" | "active" | "pre-switchover" | "device" | "postcopy-active"
    )
    .then_some(status)
}

/// Reads QEMU's lines until the connection ends: replies to `replies`, events to the handler.
fn read_loop(
    mut conn: BufReader<UnixStream>,
    replies: &mpsc::Sender<Value>,
    events: &Mutex<Option<EventHandler>>,
    writer: &UnixStream,
) {
    loop {
        let mut line = String::new();
        match conn.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let v: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                warn!("QMP sent a line that is not JSON: {e}");
                continue;
            }
        };
        if v.get("event").is_some() {
            debug!(event = %v, "QMP event");
            if let Some(handle) = events.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                handle(&v, writer);
            }
            continue;
        }
        if replies.send(v).is_err() {
            return;
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

/// Spice buttons 4 and 5: the wheel, one notch up or down per PRESS.
const WHEEL_UP: u8 = 4;
const WHEEL_DOWN: u8 = 5;
/// Their bits in a button mask. Clients do not keep them in `buttons_state` (spice-gtk sends
/// a wheel notch as PRESS + RELEASE of button 4 or 5 with a mask that lacks both bits), so the
/// wheel is driven by PRESS messages alone and these bits are ignored in masks.
const WHEEL_MASK: u16 = (1 << (WHEEL_UP - 1)) | (1 << (WHEEL_DOWN - 1));

/// The mask bit of button number `button` (1..=7), 0 for anything else.
fn button_bit(button: u8) -> u16 {
    match button {
        1..=7 => 1 << (button - 1),
        _ => 0,
    }
}

/// Lock keys: (Spice keyboard-modifier flag, set-1 scancode of the key that toggles it).
const LOCK_KEYS: [(u16, u32); 3] = [
    (1, 0x46), // SCROLL_LOCK
    (2, 0x45), // NUM_LOCK
    (4, 0x3a), // CAPS_LOCK
];

/// An [`InputSink`] that drives a QEMU guest's input devices over QMP.
///
/// Lock keys: QMP does not tell us the guest's keyboard LEDs, so the state of Caps, Num and
/// Scroll Lock is *believed*: off at start, toggled by every lock-key press we forward. A
/// client's KEY_MODIFIERS is met by pressing the lock keys whose believed state differs, as
/// spice-server does with the real LEDs. A guest that changes its locks by itself (`setleds`)
/// is not seen.
pub struct QmpInput {
    qmp: Qmp,
    absolute: bool,
    screen: Box<dyn Fn() -> Option<(u32, u32)> + Send + Sync>,
    buttons: Mutex<u16>,
    locks: Mutex<u16>,
    /// Which QEMU key numbers (0..=255) are down in the guest, as far as we sent them.
    keys: Mutex<[u64; 4]>,
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
            locks: Mutex::new(0),
            keys: Mutex::new([0; 4]),
        }
    }

    /// The believed Caps/Num/Scroll Lock state (Spice keyboard-modifier flags).
    pub fn led_modifiers(&self) -> u16 {
        *self.locks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A key event for QEMU key `number`.
    fn key_event(number: u32, down: bool) -> Value {
        json!({"type": "key", "data": {
            "down": down,
            "key": {"type": "number", "data": number},
        }})
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

    /// Button events for the difference between the last mask and `mask` (wheel bits aside).
    fn button_changes(&self, mask: u16) -> Vec<Value> {
        let mask = mask & !WHEEL_MASK;
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

impl QmpInput {
    /// The QMP events for a key; a forwarded lock-key press flips its believed state.
    ///
    /// The release of a key that is not down is dropped, as QEMU's own front ends do (its
    /// keyboard state filter, which its libspice glue goes through too). Clients send such
    /// releases: spice-html5 "resyncs" Shift with a release before every shifted key that
    /// WebDriver and some browsers report without the shift flag. On a PS/2 keyboard behind a
    /// translating i8042 a Left Shift release is the byte 0xAA, which Linux's atkbd takes for
    /// the keyboard's self-test result when it saw no Shift press first: it resets the
    /// keyboard, and the keys typed meanwhile are lost. Repeated presses still go through:
    /// they are the client's auto-repeat.
    fn key_events(&self, event: KeyEvent) -> Vec<Value> {
        let Some(number) = qemu_key_number(&event) else {
            return Vec::new();
        };
        let (word, bit) = ((number / 64) as usize % 4, 1u64 << (number % 64));
        {
            let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            if event.pressed {
                keys[word] |= bit;
            } else if keys[word] & bit == 0 {
                debug!(number, "release of a key that is not down dropped");
                return Vec::new();
            } else {
                keys[word] &= !bit;
            }
        }
        debug!(number, pressed = event.pressed, "key");
        if event.pressed
            && let Some((flag, _)) = LOCK_KEYS.iter().find(|(_, code)| *code == number)
        {
            *self.locks.lock().unwrap_or_else(|e| e.into_inner()) ^= flag;
        }
        vec![Self::key_event(number, event.pressed)]
    }

    /// The QMP events that bring the guest's lock keys to `modifiers`: a press and release of
    /// each lock key whose believed state differs.
    fn modifier_events(&self, modifiers: u16) -> Vec<Value> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        let mut events = Vec::new();
        for (flag, code) in LOCK_KEYS {
            if (modifiers ^ *locks) & flag != 0 {
                events.push(Self::key_event(code, true));
                events.push(Self::key_event(code, false));
                *locks ^= flag;
            }
        }
        debug!(modifiers, toggled = events.len() / 2, "lock keys");
        events
    }

    /// The QMP events for a pointer event.
    fn pointer_events(&self, event: PointerEvent) -> Vec<Value> {
        match event {
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
                    debug!("absolute position without a primary surface dropped");
                    return Vec::new();
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
            PointerEvent::Press { button, buttons } => match button {
                WHEEL_UP | WHEEL_DOWN => {
                    let mut ev = self.button_changes(buttons);
                    if let Some(name) = button_name(button) {
                        for down in [true, false] {
                            ev.push(json!({"type": "btn", "data": {"down": down, "button": name}}));
                        }
                    }
                    ev
                }
                // The pressed button is down whatever the client's mask says.
                _ => self.button_changes(buttons | button_bit(button)),
            },
            PointerEvent::Release { button, buttons } => match button {
                WHEEL_UP | WHEEL_DOWN => self.button_changes(buttons),
                _ => self.button_changes(buttons & !button_bit(button)),
            },
        }
    }
}

impl InputSink for QmpInput {
    fn key(&self, event: KeyEvent) {
        self.send(self.key_events(event));
    }

    fn modifiers(&self, modifiers: u16) {
        self.send(self.modifier_events(modifiers));
    }

    fn pointer(&self, event: PointerEvent) {
        self.send(self.pointer_events(event));
    }

    fn has_absolute_pointer(&self) -> bool {
        self.absolute
    }

    fn led_modifiers(&self) -> u16 {
        QmpInput::led_modifiers(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn key_numbers() {
        let k = |scancode, pressed| qemu_key_number(&KeyEvent { scancode, pressed });
        assert_eq!(k(0x1e, true), Some(0x1e), "A down");
        assert_eq!(k(0x9e, false), Some(0x1e), "A up");
        assert_eq!(k(0x48e0, true), Some(0xc8), "Up arrow (E0 48)");
        assert_eq!(k(0xc8e0, false), Some(0xc8), "Up arrow release");
        assert_eq!(k(0, true), None);
    }

    /// A fake QEMU on a fresh socket: greets, then answers `qmp_capabilities` and `commands`
    /// more commands (with an event before each answer, which the client must skip) and
    /// returns what it got.
    fn fake_qemu(tag: &str, commands: usize) -> (QmpInput, std::thread::JoinHandle<Vec<String>>) {
        let dir = std::env::temp_dir().join(format!("saffron-qmp-{tag}-{}", std::process::id()));
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
            for _ in 0..=commands {
                let mut l = String::new();
                r.read_line(&mut l).unwrap();
                got.push(l);
                writeln!(w, r#"{{"event": "SOMETHING"}}"#).unwrap();
                writeln!(w, r#"{{"return": {{}}}}"#).unwrap();
            }
            let _ = std::fs::remove_dir_all(&dir);
            got
        });
        let input = QmpInput::new(
            Qmp::connect(&path).unwrap(),
            true,
            Box::new(|| Some((1024, 768))),
        );
        (input, server)
    }

    /// (kind, button or key number, down) of each event, for compact assertions.
    fn summary(events: &[Value]) -> Vec<(String, String, bool)> {
        events
            .iter()
            .map(|e| {
                let d = &e["data"];
                let what = match e["type"].as_str().unwrap() {
                    "btn" => d["button"].as_str().unwrap().to_string(),
                    "key" => d["key"]["data"].to_string(),
                    _ => d["axis"].as_str().unwrap().to_string(),
                };
                (
                    e["type"].as_str().unwrap().to_string(),
                    what,
                    d["down"] == true,
                )
            })
            .collect()
    }

    #[test]
    fn migration_events_to_refuse() {
        let ev = |status: &str| json!({"event": "MIGRATION", "data": {"status": status}});
        assert_eq!(migration_to_refuse(&ev("setup")), Some("setup"));
        assert_eq!(migration_to_refuse(&ev("active")), Some("active"));
        assert_eq!(migration_to_refuse(&ev("cancelled")), None);
        assert_eq!(migration_to_refuse(&ev("completed")), None);
        assert_eq!(migration_to_refuse(&json!({"event": "STOP"})), None);
        assert_eq!(migration_to_refuse(&json!({"event": "MIGRATION"})), None);
    }

    /// A QEMU that starts a migration once events are on: the connection answers with
    /// migrate_cancel, without waiting for anyone to send a command.
    #[test]
    fn a_migration_is_cancelled_as_it_starts() {
        let dir = std::env::temp_dir().join(format!("saffron-qmp-mig-{}", std::process::id()));
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
                let v: Value = serde_json::from_str(&l).unwrap();
                writeln!(w, "{}", json!({"return": {}, "id": v["id"]})).unwrap();
                got.push(v);
            }
            writeln!(
                w,
                r#"{{"event": "MIGRATION", "data": {{"status": "setup"}}}}"#
            )
            .unwrap();
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            got.push(serde_json::from_str(&l).unwrap());
            got
        });
        let qmp = Qmp::connect(&path).unwrap();
        qmp.refuse_migration().unwrap();
        let got = server.join().unwrap();
        assert_eq!(got[1]["execute"], "migrate-set-capabilities");
        assert_eq!(
            got[1]["arguments"]["capabilities"][0]["capability"],
            "events"
        );
        assert_eq!(got[2]["execute"], "migrate_cancel");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn qmp_over_a_fake_qemu() {
        let (input, server) = fake_qemu("pos", 1);
        input.pointer(PointerEvent::Position {
            x: 1023,
            y: 0,
            buttons: 1,
            display: 0,
        });
        drop(input);
        let got = server.join().unwrap();
        assert!(got[0].contains("qmp_capabilities"));
        let v: Value = serde_json::from_str(&got[1]).unwrap();
        let ev = &v["arguments"]["events"];
        assert_eq!(ev[0]["data"]["value"], 0x7fff);
        assert_eq!(ev[1]["data"]["value"], 0);
        assert_eq!(ev[2]["data"]["button"], "left");
        assert_eq!(ev[2]["data"]["down"], true);
    }

    #[test]
    fn wheel_notches_come_from_press_alone() {
        let (input, server) = fake_qemu("wheel", 0);
        let btn = |b: &str, down| ("btn".to_string(), b.to_string(), down);
        // spice-gtk: PRESS + RELEASE of button 4 with a mask that lacks the wheel bits.
        let up = input.pointer_events(PointerEvent::Press {
            button: 4,
            buttons: 0,
        });
        assert_eq!(
            summary(&up),
            [btn("wheel-up", true), btn("wheel-up", false)]
        );
        assert!(
            input
                .pointer_events(PointerEvent::Release {
                    button: 4,
                    buttons: 0
                })
                .is_empty()
        );
        // A client that does put the wheel bit in its mask gets no second notch.
        let down = input.pointer_events(PointerEvent::Press {
            button: 5,
            buttons: 16,
        });
        assert_eq!(
            summary(&down),
            [btn("wheel-down", true), btn("wheel-down", false)]
        );
        assert!(
            input
                .pointer_events(PointerEvent::Motion {
                    dx: 1,
                    dy: 1,
                    buttons: 16
                })
                .iter()
                .all(|e| e["type"] == "rel")
        );
        drop(input);
        server.join().unwrap();
    }

    #[test]
    fn pressed_buttons_follow_press_and_release() {
        let (input, server) = fake_qemu("buttons", 0);
        let btn = |b: &str, down| ("btn".to_string(), b.to_string(), down);
        // A mask that forgets the pressed button still presses it.
        let press = input.pointer_events(PointerEvent::Press {
            button: 3,
            buttons: 0,
        });
        assert_eq!(summary(&press), [btn("right", true)]);
        // Motion with the button held changes nothing; the release lets it go.
        let drag = input.pointer_events(PointerEvent::Motion {
            dx: 2,
            dy: 0,
            buttons: 4,
        });
        assert_eq!(drag.len(), 2);
        let release = input.pointer_events(PointerEvent::Release {
            button: 3,
            buttons: 4,
        });
        assert_eq!(summary(&release), [btn("right", false)]);
        drop(input);
        server.join().unwrap();
    }

    #[test]
    fn lock_keys_meet_the_client_state_once() {
        let (input, server) = fake_qemu("locks", 0);
        let key = |n: u32, down| ("key".to_string(), n.to_string(), down);
        assert_eq!(input.led_modifiers(), 0);
        // Caps Lock on: one press and release of Caps Lock (0x3a).
        let on = input.modifier_events(4);
        assert_eq!(summary(&on), [key(0x3a, true), key(0x3a, false)]);
        assert_eq!(input.led_modifiers(), 4);
        assert!(input.modifier_events(4).is_empty(), "already on");
        // Num Lock on and Caps Lock off: both keys, Scroll Lock untouched.
        let both = input.modifier_events(2);
        assert_eq!(
            summary(&both),
            [
                key(0x45, true),
                key(0x45, false),
                key(0x3a, true),
                key(0x3a, false)
            ]
        );
        // The user pressing Num Lock on the client toggles the believed state too.
        let typed = input.key_events(KeyEvent {
            scancode: 0x45,
            pressed: true,
        });
        assert_eq!(summary(&typed), [key(0x45, true)]);
        assert_eq!(input.led_modifiers(), 0);
        drop(input);
        server.join().unwrap();
    }

    /// spice-html5 typing "S": Shift up (a "resync" while Shift is up), Shift down twice, S
    /// down and up, Shift up. The first release never reaches the guest (its PS/2 byte 0xAA
    /// would reset Linux's keyboard); the repeated press does (auto-repeat).
    #[test]
    fn releases_of_keys_not_down_are_dropped() {
        let (input, server) = fake_qemu("keys", 0);
        let key = |n: u32, down| ("key".to_string(), n.to_string(), down);
        let ev = |scancode, pressed| summary(&input.key_events(KeyEvent { scancode, pressed }));
        assert!(ev(0xaa, false).is_empty(), "Shift up while up");
        assert_eq!(ev(0x2a, true), [key(0x2a, true)]);
        assert_eq!(ev(0x2a, true), [key(0x2a, true)], "auto-repeat");
        assert_eq!(ev(0x1f, true), [key(0x1f, true)]);
        assert_eq!(ev(0x9f, false), [key(0x1f, false)]);
        assert_eq!(ev(0xaa, false), [key(0x2a, false)]);
        assert!(ev(0xaa, false).is_empty(), "released once only");
        // E0-prefixed keys are tracked apart from their plain twins (Right Ctrl, E0 1D).
        assert_eq!(ev(0x1d, true), [key(0x1d, true)]);
        assert!(ev(0x9de0, false).is_empty(), "Right Ctrl was not down");
        assert_eq!(ev(0x9d, false), [key(0x1d, false)]);
        drop(input);
        server.join().unwrap();
    }
}
