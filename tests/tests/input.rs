//! Client input reaches the guest exactly: a Spice client (the library client) sends keys,
//! lock-key state, relative motion, buttons and the wheel in the SERVER mouse mode, then
//! absolute positions and buttons in the CLIENT mouse mode; the guest prints what its input
//! drivers report on `/dev/input/event*` (QEMU's PS/2 keyboard and mouse and its virtio tablet,
//! driven by the VMM over QMP), and every device's events must be exactly those the input
//! means: set-1 scancode → Linux keycode, REL deltas, ABS coordinates scaled to the tablet's
//! range, BTN_LEFT/RIGHT/MIDDLE, REL_WHEEL — nothing lost, nothing extra.
//!
//! The client goes in lock step with the guest: after each step it waits until the guest has
//! printed that step's events (PS/2 queues hold a few bytes; a burst would be merged or
//! dropped by QEMU before the guest ever saw it). The check itself is made on the whole serial
//! log at the end.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use saffron_server::client::{Channel, Screen, Session};
use saffron_server::wire::{channel as chan, msg};
use saffron_tests::{GuestOptions, Record, boot_guest_with_sync, records, serial_guard, with_tag};
use saffron_vmm::spice::SpiceOptions;

const PASSWORD: &str = "saffron-input-ticket";

/// Linux input event types and codes (`<linux/input-event-codes.h>`).
const EV_SYN: u16 = 0;
const EV_KEY: u16 = 1;
const EV_REL: u16 = 2;
const EV_ABS: u16 = 3;
const EV_MSC: u16 = 4;
const EV_LED: u16 = 17;
const SYN_DROPPED: u16 = 3;
const REL_X: u16 = 0;
const REL_Y: u16 = 1;
const REL_WHEEL: u16 = 8;
const ABS_X: u16 = 0;
const ABS_Y: u16 = 1;
const BTN_LEFT: u16 = 0x110;
const BTN_RIGHT: u16 = 0x111;
const BTN_MIDDLE: u16 = 0x112;
const KEY_LEFTCTRL: u16 = 29;
const KEY_A: u16 = 30;
const KEY_LEFTSHIFT: u16 = 42;
const KEY_LEFTALT: u16 = 56;
const KEY_CAPSLOCK: u16 = 58;
const KEY_F12: u16 = 88;
const KEY_KPENTER: u16 = 96;
const KEY_RIGHTCTRL: u16 = 97;
const KEY_RIGHTALT: u16 = 100;
const KEY_UP: u16 = 103;
const KEY_DELETE: u16 = 111;
const KEY_LEFTMETA: u16 = 125;
const LED_CAPSL: u16 = 1;

/// Where button and wheel events arrive, in both mouse modes. QEMU gives each kind of input
/// event to the most recently activated device that takes it; the virtio tablet activates when
/// its driver binds, so from then on buttons and the wheel reach the guest through the tablet,
/// relative motion through the PS/2 mouse (the one relative device) and keys through the PS/2
/// keyboard. A guest merges its pointer devices into one pointer, so this is invisible to its
/// users; the test pins it so that a change in the routing is noticed.
const BUTTONS: Dev = Dev::Tablet;

/// Spice mouse modes and button masks.
const MOUSE_MODE_SERVER: u16 = 1;
const MOUSE_MODE_CLIENT: u16 = 2;
const MASK_LEFT: u16 = 1;
const MASK_MIDDLE: u16 = 2;
const MASK_RIGHT: u16 = 4;
const CAPS_LOCK: u16 = 4;

/// The guest's input devices, by the names their drivers give them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Dev {
    /// QEMU's PS/2 keyboard behind the i8042 (atkbd).
    Keyboard,
    /// QEMU's PS/2 mouse (psmouse, IntelliMouse Explorer protocol).
    Mouse,
    /// QEMU's virtio tablet (virtio_input), the absolute pointer of the client mouse mode.
    Tablet,
}

impl Dev {
    fn of_name(name: &str) -> Option<Dev> {
        match name {
            "AT_Translated_Set_2_keyboard" => Some(Dev::Keyboard),
            "ImExPS/2_Generic_Explorer_Mouse" => Some(Dev::Mouse),
            "QEMU_Virtio_Tablet" => Some(Dev::Tablet),
            _ => None,
        }
    }
}

/// One evdev event: type, code, value.
type Ev = (u16, u16, i32);

/// The input devices the guest listed: node → device, and the tablet's axes.
struct Devices {
    nodes: BTreeMap<String, Dev>,
    /// (min, max, current value) of ABS_X and ABS_Y.
    abs: [(i64, i64, i64); 2],
}

impl Devices {
    fn from_records(recs: &[Record]) -> Result<Devices, String> {
        let mut nodes = BTreeMap::new();
        let mut abs = None;
        for r in recs.iter().filter(|r| r.tag == "INPUTDEV") {
            let Some(dev) = Dev::of_name(r.get("name")) else {
                continue;
            };
            nodes.insert(r.get("node").to_string(), dev);
            if dev == Dev::Tablet {
                let n = |k: &str| r.get(k).parse::<i64>().map_err(|e| format!("{k}: {e}"));
                abs = Some([
                    (n("abs_x_min")?, n("abs_x_max")?, n("abs_x_value")?),
                    (n("abs_y_min")?, n("abs_y_max")?, n("abs_y_value")?),
                ]);
            }
        }
        let mut have: Vec<Dev> = nodes.values().copied().collect();
        have.sort();
        if have != [Dev::Keyboard, Dev::Mouse, Dev::Tablet] {
            return Err(format!(
                "want one PS/2 keyboard, one PS/2 mouse and one virtio tablet, have {have:?} \
                 from {:?}",
                with_tag(recs, "INPUTDEV")
            ));
        }
        Ok(Devices {
            nodes,
            abs: abs.ok_or("no tablet axes")?,
        })
    }
}

/// What the guest printed, per device, as the check sees it: key repeats (value 2, the guest's
/// own autorepeat under a slow TCG), MSC_SCAN and LED events are set aside; LED events are kept
/// apart, and a SYN_DROPPED is an error (events were lost).
#[derive(Default, Debug)]
struct Seen {
    events: BTreeMap<Dev, Vec<Ev>>,
    leds: Vec<Ev>,
}

impl Seen {
    fn add(&mut self, devices: &Devices, rec: &Record) -> Result<(), String> {
        if rec.tag != "EV" {
            return Ok(());
        }
        let Some(dev) = devices.nodes.get(rec.get("node")).copied() else {
            return Ok(());
        };
        let num = |k: &str| rec.get(k).parse::<i64>().map_err(|e| format!("{k}: {e}"));
        let ev = (
            num("type")? as u16,
            num("code")? as u16,
            num("value")? as i32,
        );
        match ev {
            (EV_SYN, SYN_DROPPED, _) => Err(format!("the guest dropped events on {dev:?}")),
            (EV_KEY, _, 2) | (EV_MSC, _, _) => Ok(()),
            (EV_LED, _, _) => {
                self.leds.push(ev);
                Ok(())
            }
            _ => {
                self.events.entry(dev).or_default().push(ev);
                Ok(())
            }
        }
    }

    fn total(&self) -> usize {
        self.events.values().map(Vec::len).sum()
    }
}

/// Pixel position → tablet axis value: pixel 0 is the axis minimum, the last pixel its maximum,
/// linear in between, rounded down (what the VMM promises; QEMU passes the value through).
fn scale(pixel: u32, size: u32, (min, max, _): (i64, i64, i64)) -> i32 {
    let p = i64::from(pixel.min(size - 1));
    (min + p * (max - min) / i64::from(size - 1)) as i32
}

/// The client side: what it sent, and what each device must therefore report.
struct Driver {
    main: Channel,
    inputs: Channel,
    tap: Receiver<String>,
    devices: Devices,
    seen: Seen,
    expected: BTreeMap<Dev, Vec<Ev>>,
    /// Where the tablet's axes are (the kernel drops an ABS event that does not change them).
    tablet: [i64; 2],
    size: (u32, u32),
}

impl Driver {
    /// Reads the guest's console until every expected event has been seen (or a deadline).
    fn wait_for_guest(&mut self, step: &str) -> Result<(), String> {
        let want: usize = self.expected.values().map(Vec::len).sum();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.seen.total() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.tap.recv_timeout(left).map_err(|_| {
                format!(
                    "step {step}: the guest reported {} of {want} events within 20 s; \
                     expected {:?}, seen {:?}",
                    self.seen.total(),
                    self.expected,
                    self.seen
                )
            })?;
            for rec in records(&line) {
                self.seen.add(&self.devices, &rec)?;
            }
        }
        Ok(())
    }

    fn expect(&mut self, dev: Dev, evs: &[Ev]) {
        self.expected.entry(dev).or_default().extend_from_slice(evs);
    }

    fn send(&mut self, ty: u16, body: &[u8]) -> Result<(), String> {
        self.inputs
            .send(ty, body)
            .map_err(|e| format!("inputs message {ty}: {e}"))
    }

    /// Key presses and releases by set-1 scancode (E0-prefixed keys as `0xNNe0`), and the
    /// keycodes the guest must report.
    fn keys(
        &mut self,
        step: &str,
        keys: &[(u32, bool)],
        codes: &[(u16, i32)],
    ) -> Result<(), String> {
        for &(scancode, down) in keys {
            let ty = if down {
                msg::MSGC_INPUTS_KEY_DOWN
            } else {
                msg::MSGC_INPUTS_KEY_UP
            };
            self.send(ty, &scancode.to_le_bytes())?;
        }
        let evs: Vec<Ev> = codes.iter().map(|&(c, v)| (EV_KEY, c, v)).collect();
        self.expect(Dev::Keyboard, &evs);
        self.wait_for_guest(step)
    }

    fn modifiers(&mut self, step: &str, mods: u16, toggles: &[u16]) -> Result<(), String> {
        self.send(msg::MSGC_INPUTS_KEY_MODIFIERS, &mods.to_le_bytes())?;
        let evs: Vec<Ev> = toggles
            .iter()
            .flat_map(|&c| [(EV_KEY, c, 1), (EV_KEY, c, 0)])
            .collect();
        self.expect(Dev::Keyboard, &evs);
        self.wait_for_guest(step)
    }

    fn motion(&mut self, dx: i32, dy: i32, buttons: u16) -> Result<(), String> {
        let mut b = dx.to_le_bytes().to_vec();
        b.extend(dy.to_le_bytes());
        b.extend(buttons.to_le_bytes());
        self.send(msg::MSGC_INPUTS_MOUSE_MOTION, &b)
    }

    fn position(&mut self, x: u32, y: u32, buttons: u16) -> Result<(), String> {
        let mut b = x.to_le_bytes().to_vec();
        b.extend(y.to_le_bytes());
        b.extend(buttons.to_le_bytes());
        b.push(0);
        self.send(msg::MSGC_INPUTS_MOUSE_POSITION, &b)
    }

    /// The ABS events a move of the tablet to pixel (x, y) produces.
    fn expect_position(&mut self, x: u32, y: u32) {
        let (w, h) = self.size;
        let to = [
            i64::from(scale(x, w, self.devices.abs[0])),
            i64::from(scale(y, h, self.devices.abs[1])),
        ];
        for (axis, code) in [(0, ABS_X), (1, ABS_Y)] {
            if to[axis] != self.tablet[axis] {
                self.expect(Dev::Tablet, &[(EV_ABS, code, to[axis] as i32)]);
                self.tablet[axis] = to[axis];
            }
        }
    }

    fn press(&mut self, button: u8, buttons: u16) -> Result<(), String> {
        let mut b = vec![button];
        b.extend(buttons.to_le_bytes());
        self.send(msg::MSGC_INPUTS_MOUSE_PRESS, &b)
    }

    fn release(&mut self, button: u8, buttons: u16) -> Result<(), String> {
        let mut b = vec![button];
        b.extend(buttons.to_le_bytes());
        self.send(msg::MSGC_INPUTS_MOUSE_RELEASE, &b)
    }

    /// Asks the main channel for `mode` and waits for MAIN_MOUSE_MODE saying it is current.
    fn mouse_mode(&mut self, mode: u16) -> Result<(), String> {
        self.main
            .send(msg::MSGC_MAIN_MOUSE_MODE_REQUEST, &mode.to_le_bytes())
            .map_err(|e| format!("mouse mode request: {e}"))?;
        loop {
            let (ty, body) = self.main.read().map_err(|e| format!("main channel: {e}"))?;
            if ty == msg::MAIN_MOUSE_MODE {
                let current = body.get(2..4).map(|b| u16::from_le_bytes([b[0], b[1]]));
                return match current {
                    Some(m) if m == mode => Ok(()),
                    other => Err(format!(
                        "asked for mouse mode {mode}, server says {other:?}"
                    )),
                };
            }
        }
    }
}

/// What the client thread hands back: the events each device must have reported.
struct Outcome {
    expected: BTreeMap<Dev, Vec<Ev>>,
    size: (u32, u32),
}

/// The client: connects, and walks through every step in lock step with the guest.
fn drive(addr: SocketAddr, tap: Receiver<String>, before: Vec<String>) -> Result<Outcome, String> {
    let recs: Vec<Record> = before.iter().flat_map(|l| records(l)).collect();
    let devices = Devices::from_records(&recs)?;
    let err =
        |what: &'static str| move |e: saffron_server::client::ClientError| format!("{what}: {e}");
    let session = Session::connect(addr, PASSWORD).map_err(err("main channel"))?;
    if session.mouse_modes != u32::from(MOUSE_MODE_SERVER | MOUSE_MODE_CLIENT) {
        return Err(format!(
            "the server offers mouse modes {:#x}, want both (the VM has a tablet)",
            session.mouse_modes
        ));
    }
    // The surface size the absolute positions are relative to, from the display channel.
    let mut display = session.display().map_err(err("display channel"))?;
    let mut screen = Screen::new();
    while screen.width == 0 {
        screen.step(&mut display).map_err(err("display channel"))?;
    }
    let size = (screen.width, screen.height);
    // Input must not need a display client: close it before sending anything.
    drop(display);
    let mut inputs = session
        .open(chan::INPUTS, &[])
        .map_err(err("inputs channel"))?;
    let (ty, init) = inputs.read().map_err(err("inputs channel"))?;
    if (ty, init.as_slice()) != (msg::INPUTS_INIT, &[0u8, 0][..]) {
        return Err(format!(
            "expected INPUTS_INIT with no lock keys, got {ty} {init:?}"
        ));
    }
    let tablet = [devices.abs[0].2, devices.abs[1].2];
    let mut d = Driver {
        main: session.main,
        inputs,
        tap,
        devices,
        seen: Seen::default(),
        expected: BTreeMap::new(),
        tablet,
        size,
    };
    if let Err(e) = script(&mut d) {
        // End the guest now rather than at its own timeout (best effort: the channel may be
        // what broke).
        let _ = d.send(msg::MSGC_INPUTS_KEY_DOWN, &0x58u32.to_le_bytes());
        let _ = d.send(msg::MSGC_INPUTS_KEY_UP, &0xd8u32.to_le_bytes());
        return Err(e);
    }
    Ok(Outcome {
        expected: d.expected,
        size,
    })
}

/// Every step, in order; the last one is the guest's end marker.
fn script(d: &mut Driver) -> Result<(), String> {
    let (w, h) = d.size;

    // --- SERVER mouse mode: keys, lock keys, relative motion, buttons, wheel ---
    d.mouse_mode(MOUSE_MODE_SERVER)?;
    d.keys(
        "a",
        &[(0x1e, true), (0x9e, false)],
        &[(KEY_A, 1), (KEY_A, 0)],
    )?;
    d.keys(
        "shift-a",
        &[(0x2a, true), (0x1e, true), (0x9e, false), (0xaa, false)],
        &[
            (KEY_LEFTSHIFT, 1),
            (KEY_A, 1),
            (KEY_A, 0),
            (KEY_LEFTSHIFT, 0),
        ],
    )?;
    d.keys(
        "ctrl",
        &[(0x1d, true), (0x9d, false)],
        &[(KEY_LEFTCTRL, 1), (KEY_LEFTCTRL, 0)],
    )?;
    d.keys(
        "alt",
        &[(0x38, true), (0xb8, false)],
        &[(KEY_LEFTALT, 1), (KEY_LEFTALT, 0)],
    )?;
    for (name, make, code) in [
        ("up", 0x48e0u32, KEY_UP),
        ("right-ctrl", 0x1de0, KEY_RIGHTCTRL),
        ("right-alt", 0x38e0, KEY_RIGHTALT),
        ("kp-enter", 0x1ce0, KEY_KPENTER),
        ("delete", 0x53e0, KEY_DELETE),
        ("left-meta", 0x5be0, KEY_LEFTMETA),
    ] {
        d.keys(
            name,
            &[(make, true), (make | 0x8000, false)],
            &[(code, 1), (code, 0)],
        )?;
    }
    // Lock keys: the client's state is met by pressing Caps Lock when it differs, not again.
    d.modifiers("caps-on", CAPS_LOCK, &[KEY_CAPSLOCK])?;
    d.modifiers("caps-still-on", CAPS_LOCK, &[])?;
    d.modifiers("caps-off", 0, &[KEY_CAPSLOCK])?;

    d.motion(10, -5, 0)?;
    d.expect(Dev::Mouse, &[(EV_REL, REL_X, 10), (EV_REL, REL_Y, -5)]);
    d.wait_for_guest("motion-1")?;
    // An absolute position is not a SERVER-mode event: dropped (the final check sees no ABS).
    d.position(w / 2, h / 2, 0)?;
    d.motion(-7, 3, 0)?;
    d.expect(Dev::Mouse, &[(EV_REL, REL_X, -7), (EV_REL, REL_Y, 3)]);
    d.wait_for_guest("motion-2")?;
    for (name, button, mask, code) in [
        ("left", 1u8, MASK_LEFT, BTN_LEFT),
        ("middle", 2, MASK_MIDDLE, BTN_MIDDLE),
        ("right", 3, MASK_RIGHT, BTN_RIGHT),
    ] {
        d.press(button, mask)?;
        d.release(button, 0)?;
        d.expect(BUTTONS, &[(EV_KEY, code, 1), (EV_KEY, code, 0)]);
        d.wait_for_guest(name)?;
    }
    // A drag: press, move with the button held, release.
    d.press(1, MASK_LEFT)?;
    d.expect(BUTTONS, &[(EV_KEY, BTN_LEFT, 1)]);
    d.wait_for_guest("drag-press")?;
    d.motion(5, 6, MASK_LEFT)?;
    d.expect(Dev::Mouse, &[(EV_REL, REL_X, 5), (EV_REL, REL_Y, 6)]);
    d.wait_for_guest("drag-move")?;
    d.release(1, 0)?;
    d.expect(BUTTONS, &[(EV_KEY, BTN_LEFT, 0)]);
    d.wait_for_guest("drag-release")?;
    // The wheel as spice-gtk sends it: PRESS + RELEASE of button 4 (up) or 5 (down), with a
    // button mask that does not mention the wheel.
    for (name, button, notch) in [("wheel-up", 4u8, 1), ("wheel-down", 5, -1)] {
        d.press(button, 0)?;
        d.release(button, 0)?;
        d.expect(BUTTONS, &[(EV_REL, REL_WHEEL, notch)]);
        d.wait_for_guest(name)?;
    }

    // --- CLIENT mouse mode: absolute positions and buttons ---
    d.mouse_mode(MOUSE_MODE_CLIENT)?;
    // Relative motion is not a CLIENT-mode event: dropped (the final check sees no REL).
    d.motion(9, 9, 0)?;
    for (name, x, y) in [
        ("abs-middle", w / 2, h / 3),
        ("abs-origin", 0, 0),
        ("abs-corner", w - 1, h - 1),
        ("abs-quarter", w / 4, h - 1),
    ] {
        d.position(x, y, 0)?;
        d.expect_position(x, y);
        d.wait_for_guest(name)?;
    }
    // A click where the pointer is, then a drag with the right button to another place.
    d.press(1, MASK_LEFT)?;
    d.release(1, 0)?;
    d.expect(BUTTONS, &[(EV_KEY, BTN_LEFT, 1), (EV_KEY, BTN_LEFT, 0)]);
    d.wait_for_guest("abs-click")?;
    d.press(3, MASK_RIGHT)?;
    d.expect(BUTTONS, &[(EV_KEY, BTN_RIGHT, 1)]);
    d.wait_for_guest("abs-drag-press")?;
    d.position(w * 3 / 4, h / 5, MASK_RIGHT)?;
    d.expect_position(w * 3 / 4, h / 5);
    d.wait_for_guest("abs-drag-move")?;
    d.release(3, 0)?;
    d.expect(BUTTONS, &[(EV_KEY, BTN_RIGHT, 0)]);
    d.wait_for_guest("abs-drag-release")?;
    d.press(5, 0)?;
    d.release(5, 0)?;
    d.expect(BUTTONS, &[(EV_REL, REL_WHEEL, -1)]);
    d.wait_for_guest("abs-wheel")?;

    // The end marker the guest waits for.
    d.keys(
        "end",
        &[(0x58, true), (0xd8, false)],
        &[(KEY_F12, 1), (KEY_F12, 0)],
    )
}

#[test]
fn client_keys_and_mouse_reach_the_guest_in_both_mouse_modes() {
    let _g = serial_guard();
    let dir = std::env::temp_dir().join(format!("saffron-input-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let (tx, rx) = channel::<String>();
    let mut opts = GuestOptions::new("input");
    opts.timeout = Duration::from_secs(240);
    opts.serial_tap = Some(tx);
    opts.spice = SpiceOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        password_file: Some(password_file),
        ..SpiceOptions::default()
    };
    let mut tap = Some(rx);
    let mut client = None;
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |sync, vm| {
            assert_eq!(
                sync.get("label"),
                "ready",
                "one sync, when the guest reads its devices"
            );
            let addr = vm.spice().expect("spice server").local_addr();
            let tap = tap.take().expect("one sync");
            // Everything the guest printed so far (its device list) is already in the tap.
            let before: Vec<String> = tap.try_iter().collect();
            client = Some(std::thread::spawn(move || drive(addr, tap, before)));
        },
    );
    let outcome = client
        .expect("the guest never got ready")
        .join()
        .expect("client thread panicked")
        .unwrap_or_else(|e| panic!("{e}\nserial:\n{}", run.serial));
    run.assert_workload_ok("input");

    // The check, on the whole log: every device reported exactly what the input means.
    let recs = run.records();
    let devices = Devices::from_records(&recs).unwrap();
    let mut seen = Seen::default();
    for r in &recs {
        seen.add(&devices, r)
            .unwrap_or_else(|e| panic!("{e}\nserial:\n{}", run.serial));
    }
    for dev in [Dev::Keyboard, Dev::Mouse, Dev::Tablet] {
        assert_eq!(
            seen.events.get(&dev).cloned().unwrap_or_default(),
            outcome.expected.get(&dev).cloned().unwrap_or_default(),
            "{dev:?}: the events the guest read differ from what the client sent \
             (surface {:?}); serial:\n{}",
            outcome.size,
            run.serial
        );
    }
    // The guest's own keyboard handler lit Caps Lock's LED and put it out again.
    let caps: Vec<i32> = seen
        .leds
        .iter()
        .filter(|(_, code, _)| *code == LED_CAPSL)
        .map(|(_, _, v)| *v)
        .collect();
    assert_eq!(caps, [1, 0], "Caps Lock LED; serial:\n{}", run.serial);
    let end = with_tag(&recs, "INPUT");
    assert_eq!(end.len(), 1, "serial:\n{}", run.serial);
    println!(
        "input: {:?}, surface {:?}, {} guest events",
        run.elapsed,
        outcome.size,
        end[0].get("events")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
