//! Runs the real binary's `sync` command with a pipe as its console, as the host test drives it
//! over the serial port: the exact lines, the exit codes, and the timeout.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn guest() -> Command {
    Command::new(env!("CARGO_BIN_EXE_saffron-guest"))
}

/// Runs `saffron-guest ARGS` with `input` on stdin (closed afterwards).
fn run(args: &[&str], input: &[u8]) -> (i32, String) {
    let mut child = guest()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn go_releases_the_sync() {
    let (code, out) = run(
        &["sync", "--id", "3", "--label", "solid:ff0000"],
        b"noise\r\ngo\r\n",
    );
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "SAFFRON-SYNC id=3 label=solid:ff0000");
    assert!(lines[1].starts_with("SAFFRON-GO id=3 waited_ms="), "{out}");
    assert_eq!(lines.len(), 2);
}

#[test]
fn closed_console_and_timeout_fail() {
    let (code, out) = run(&["sync", "--id", "1"], b"");
    assert_eq!(code, 1);
    assert_eq!(out.lines().next(), Some("SAFFRON-SYNC id=1"));
    assert!(
        out.contains("SAFFRON-ERROR cmd=sync msg=sync id=1: stdin closed"),
        "{out}"
    );

    // Keep stdin open without answering: the timeout must end the wait (timed from before
    // the spawn: the child's clock starts before spawn() returns).
    let t0 = Instant::now();
    let mut child = guest()
        .args(["sync", "--id", "2", "--timeout-ms", "300"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "SAFFRON-SYNC id=2\nSAFFRON-ERROR cmd=sync msg=sync id=2: no \"go\" line on stdin \
         within 300 ms\n"
    );
}

#[test]
fn usage_errors_exit_2_before_touching_devices() {
    for args in [
        &["sync"][..],
        &["sync", "--id", "a b"],
        &["fbfill"],
        &["fbfill", "--pattern", "solid:red"],
        &["fbhash", "--format", "bgr"],
        &["kms", "--width", "800"],
        &["kms", "--phase", "a b"],
        &["fbbench", "--frames", "0"],
        &["fbcon-off", "--kd", "vga"],
        &["settle"],
    ] {
        let (code, out) = run(args, b"");
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(out.starts_with("SAFFRON-ERROR cmd="), "{args:?}: {out}");
        assert_eq!(out.lines().count(), 1, "{args:?}: {out}");
    }
    let (code, out) = run(&["fbhash", "--fb", "/nonexistent/fb9"], b"");
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "SAFFRON-ERROR cmd=fbhash msg=open /nonexistent/fb9: No such file or directory (os \
         error 2)\n"
    );
}
