//! Migration is refused: QEMU 11's `vfio-user-pci` migrates none of the device's state and
//! registers no migration blocker, so a migrated guest would lose its display device. saffron
//! asks its QMP connection for MIGRATION events and cancels a migration as it starts.
//!
//! A real guest (the default busybox guest, drawing through qxl's fbdev) runs under
//! `saffron run --qmp`; at its sync the test asks QEMU, on that second QMP monitor, to migrate
//! (to `exec:cat > /dev/null`). The migration must end `cancelled`, never `completed`, the VM
//! must go on running, and the device still shows the guest's picture.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use saffron_tests::{GuestOptions, boot_guest_with_sync, serial_guard};
use serde_json::{Value, json};

/// A bare QMP client: one command, its reply (events skipped).
struct Monitor {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Monitor {
    fn connect(path: &Path) -> Monitor {
        let t0 = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if t0.elapsed() > Duration::from_secs(10) => panic!("QMP {path:?}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut m = Monitor {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        let mut greeting = String::new();
        m.reader.read_line(&mut greeting).unwrap();
        assert!(greeting.contains("QMP"), "{greeting}");
        m.execute(json!({"execute": "qmp_capabilities"}));
        m
    }

    fn execute(&mut self, cmd: Value) -> Value {
        writeln!(self.writer, "{cmd}").unwrap();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let v: Value = serde_json::from_str(&line).unwrap();
            if v.get("event").is_none() {
                return v;
            }
        }
    }
}

#[test]
fn a_migration_is_cancelled_and_the_guest_goes_on() {
    let _g = serial_guard();
    let dir = std::env::temp_dir().join(format!("saffron-migration-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let qmp = dir.join("user-qmp.sock");
    let mut opts = GuestOptions::new("qxl-fb");
    opts.args = vec!["random:5".into()];
    opts.qmp = Some(qmp.clone());
    // The input connection (which watches for migrations) needs a Spice server.
    opts.spice.addr = Some("127.0.0.1:0".parse().unwrap());
    opts.spice.disable_ticketing = true;
    // A migration that completes stops the VM for good: fail in minutes, not ten.
    opts.timeout = Duration::from_secs(180);
    let mut outcome: Option<(Vec<String>, Value, bool, Duration)> = None;
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |_, vm| {
            let before = vm.server().worker().screendump().expect("screendump");
            let mut mon = Monitor::connect(&qmp);
            let t0 = Instant::now();
            let started = mon.execute(json!({
                "execute": "migrate",
                "arguments": {"uri": "exec:cat > /dev/null"},
            }));
            assert!(started.get("return").is_some(), "migrate: {started}");
            let mut seen = Vec::new();
            while t0.elapsed() < Duration::from_secs(20) {
                let q = mon.execute(json!({"execute": "query-migrate"}));
                let status = q["return"]["status"].as_str().unwrap_or("").to_string();
                if seen.last() != Some(&status) {
                    seen.push(status.clone());
                }
                if matches!(status.as_str(), "cancelled" | "completed" | "failed") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let took = t0.elapsed();
            let state = mon.execute(json!({"execute": "query-status"}));
            let after = vm.server().worker().screendump().expect("screendump");
            outcome = Some((seen, state, before == after, took));
        },
    );
    run.assert_workload_ok("qxl-fb");
    let (seen, state, same_picture, took) = outcome.expect("the guest's sync");
    println!(
        "migration: statuses {seen:?} in {took:?}; VM {}",
        state["return"]
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some("cancelled"),
        "statuses {seen:?}"
    );
    assert!(!seen.iter().any(|s| s == "completed"), "{seen:?}");
    assert_eq!(state["return"]["status"], "running", "{state}");
    assert!(same_picture, "the device shows the same picture after");
    let _ = std::fs::remove_dir_all(&dir);
}
