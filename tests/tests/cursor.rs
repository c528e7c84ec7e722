//! The guest's hardware cursor reaches Spice clients: the Linux qxl driver turns KMS cursor
//! ioctls (a 64x64 ARGB image with a hot spot, two moves, a hide) into cursor-ring commands,
//! our worker keeps the cursor state, and a client on the cursor channel receives exactly that
//! shape, the positions and the hide. The control socket shows the same cursor in `stats`, and
//! the connected client in `client_info`.

use std::path::Path;

use saffron_server::client::{Channel, CursorChannel, CursorMessage, Screen, Session};
use saffron_server::wire::msg;
use saffron_tests::{
    GuestKernel, GuestOptions, Record, boot_guest_with_sync, control_request, serial_guard,
    sha256_hex, with_tag,
};
use saffron_vmm::run::Vm;
use saffron_vmm::spice::SpiceOptions;
use serde_json::json;

const PASSWORD: &str = "saffron-cursor-ticket";

/// What the host saw at each hand-over.
#[derive(Default)]
struct Seen {
    /// The client linked at `cursor-ready`: its session, cursor and display channels.
    client: Option<(Session, CursorChannel, Channel)>,
    /// Cursor messages, by hand-over id.
    messages: Vec<(String, CursorMessage)>,
    /// The INIT a second client got after the shape was set.
    late_init: Option<CursorMessage>,
    /// The worker's cursor in `stats` at `cursor-move2`.
    stats_cursor: Option<serde_json::Value>,
    /// `client_info` at `cursor-move2`.
    client_info: Option<serde_json::Value>,
}

fn on_sync(seen: &mut Seen, rec: &Record, vm: &Vm, api: &Path) {
    let id = rec.get("id").to_string();
    let addr = vm.spice().expect("spice server").local_addr();
    match id.as_str() {
        "cursor-ready" => {
            let mut session = Session::connect(addr, PASSWORD).expect("main channel");
            // Server mouse mode: the guest's moves are sent (in client mode they are not).
            assert_eq!(session.request_mouse_mode(1).expect("mouse mode"), 1);
            // A pong, so that client_info has a round trip to show.
            session.answer_ping().expect("ping");
            let mut cursor = session.cursor().expect("cursor channel");
            let init = cursor.read().expect("cursor INIT");
            seen.messages.push((id, init));
            // The display too, read up to its first MARK, so client_info has it to list.
            let mut display = session.display().expect("display channel");
            let mut screen = Screen::new();
            while screen.step(&mut display).expect("display message") != msg::DISPLAY_MARK {}
            seen.client = Some((session, cursor, display));
        }
        _ => {
            let (_, cursor, _) = seen.client.as_mut().expect("linked at cursor-ready");
            let m = cursor
                .read()
                .unwrap_or_else(|e| panic!("no cursor message at {id}: {e}"));
            seen.messages.push((id.clone(), m));
            if id == "cursor-set" {
                let late = Session::connect(addr, PASSWORD).expect("second client");
                let mut cursor = late.cursor().expect("second cursor channel");
                seen.late_init = Some(cursor.read().expect("second INIT"));
            }
            if id == "cursor-move2" {
                let stats = control_request(api, &json!({"cmd": "stats"}));
                seen.stats_cursor = Some(stats["worker"]["cursor"].clone());
                seen.client_info = Some(control_request(api, &json!({"cmd": "client_info"})));
            }
        }
    }
}

#[test]
fn the_guest_cursor_reaches_a_spice_client() {
    guest_cursor_reaches_a_client(GuestKernel::Bookworm);
}

/// Linux 6.8 moved the cursor hot spot from the framebuffer into the plane state: the 6.12
/// driver must still send it.
#[test]
fn the_guest_cursor_of_linux_6_12_reaches_a_spice_client() {
    guest_cursor_reaches_a_client(GuestKernel::Trixie);
}

fn guest_cursor_reaches_a_client(kernel: GuestKernel) {
    let _g = serial_guard();
    let dir = std::env::temp_dir().join(format!(
        "saffron-cursor-test-{}-{kernel:?}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let api = dir.join("api.sock");
    let mut opts = GuestOptions::new("qxl-cursor");
    opts.kernel = kernel;
    opts.spice = SpiceOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        password_file: Some(password_file),
        ..SpiceOptions::default()
    };
    opts.api_socket = Some(api.clone());
    let mut seen = Seen::default();
    let run = boot_guest_with_sync(&opts, |_| {}, |rec, vm| on_sync(&mut seen, rec, vm, &api));
    run.assert_workload_ok("qxl-cursor");
    let recs = run.records();
    let ops = with_tag(&recs, "CURSOR");
    assert_eq!(
        ops.len(),
        4,
        "set, two moves, hide; serial:\n{}",
        run.serial
    );
    let ids: Vec<&str> = seen.messages.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "cursor-ready",
            "cursor-set",
            "cursor-move1",
            "cursor-move2",
            "cursor-hide"
        ]
    );
    let num = |r: &Record, k: &str| r.num(k) as i64;

    // Before the guest set a cursor: INIT with no shape.
    assert!(
        matches!(seen.messages[0].1, CursorMessage::Init { shape: None, .. }),
        "{:?}",
        seen.messages[0].1
    );

    // The shape: exactly the guest's pixels, size and hot spot, sent whole (flags 0).
    let set = ops[0];
    assert_eq!(set.get("op"), "set");
    let CursorMessage::Set {
        x,
        y,
        visible,
        shape: Some(shape),
    } = &seen.messages[1].1
    else {
        panic!("expected SET, got {:?}", seen.messages[1].1);
    };
    assert_eq!(
        (i64::from(*x), i64::from(*y), *visible),
        (num(set, "pos_x"), num(set, "pos_y"), true)
    );
    assert_eq!((shape.flags, shape.kind), (0, 0), "uncached ALPHA");
    assert_eq!(
        (
            u64::from(shape.width),
            u64::from(shape.height),
            u64::from(shape.hot_x),
            u64::from(shape.hot_y)
        ),
        (
            set.num("width"),
            set.num("height"),
            set.num("hot_x"),
            set.num("hot_y")
        )
    );
    assert_eq!(
        sha256_hex(&shape.data),
        set.get("sha256"),
        "the client's cursor pixels differ from the guest's"
    );
    // A client that links afterwards gets the same cursor in its INIT.
    let Some(CursorMessage::Init {
        x: ix,
        y: iy,
        visible: true,
        shape: Some(init_shape),
        ..
    }) = &seen.late_init
    else {
        panic!("second client's INIT: {:?}", seen.late_init);
    };
    assert_eq!((ix, iy, init_shape), (x, y, shape));

    // The moves, at the hot spot, and the hide.
    for (i, op) in ops[1..3].iter().enumerate() {
        assert_eq!(op.get("op"), "move");
        let want_x = i16::try_from(num(op, "pos_x")).unwrap();
        let want_y = i16::try_from(num(op, "pos_y")).unwrap();
        assert_eq!(
            seen.messages[2 + i].1,
            CursorMessage::Move {
                x: want_x,
                y: want_y
            }
        );
    }
    assert_eq!(ops[3].get("op"), "hide");
    assert_eq!(seen.messages[4].1, CursorMessage::Hide);

    // The control socket's view of the worker's cursor at the second move.
    let move2 = ops[2];
    let c = seen.stats_cursor.expect("stats at cursor-move2");
    assert_eq!(
        (&c["x"], &c["y"], &c["visible"]),
        (
            &json!(num(move2, "pos_x")),
            &json!(num(move2, "pos_y")),
            &json!(true)
        ),
        "{c}"
    );
    assert_eq!(
        c["shape"],
        json!({"type": "alpha", "width": 64, "height": 64,
               "hot_x": set.num("hot_x"), "hot_y": set.num("hot_y")}),
        "{c}"
    );
    assert!(
        c["shape_generation"].as_u64().is_some_and(|g| g >= 1),
        "{c}"
    );

    // client_info while the client was connected: its session with main, cursor and display
    // channels, plain, with bytes both ways, and a ping round trip.
    let info = seen.client_info.expect("client_info at cursor-move2");
    let (session, _, display) = seen.client.as_ref().expect("the client");
    let ours = info["clients"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["session_id"] == json!(session.id)))
        .unwrap_or_else(|| panic!("our session in {info}"));
    assert!(ours["rtt_ms"].as_f64().is_some(), "{ours}");
    let channels = ours["channels"].as_array().expect("channels");
    let kinds: Vec<(&str, bool)> = channels
        .iter()
        .map(|ch| (ch["type"].as_str().unwrap(), ch["tls"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [("main", false), ("cursor", false), ("display", false)]
    );
    for ch in channels {
        assert!(ch["bytes_sent"].as_u64().is_some_and(|b| b > 0), "{ch}");
        assert!(ch["bytes_received"].as_u64().is_some_and(|b| b > 0), "{ch}");
    }
    assert!(
        channels[2]["bytes_sent"].as_u64().unwrap() >= display.bytes_read,
        "the display sent at least what the client had read: {ours}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
