//! Runs the real binary's `scroll` command with a plain file as its tty: the text it writes,
//! the phase markers around the writes and the figures line the benchmark parses.

use std::process::Command;

/// A file path in the temporary directory, unique to this test process and `name`.
fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("saffron-scroll-{}-{name}", std::process::id()))
}

#[test]
fn writes_numbered_lines_between_the_markers() {
    let tty = temp_path("tty");
    std::fs::write(&tty, b"").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_saffron-guest"))
        .args(["scroll", "--lines", "25", "--phase", "fbcon", "--tty"])
        .arg(&tty)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&tty).unwrap();
    std::fs::remove_file(&tty).unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");

    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0], "SAFFRON-PHASE name=fbcon begin");
    assert_eq!(lines[1], "SAFFRON-PHASE name=fbcon end");
    let fields: Vec<&str> = lines[2].split(' ').collect();
    assert_eq!(fields[0], "SAFFRON-SCROLL");
    assert_eq!(fields[1], "lines=25");
    assert!(fields[2].starts_with("lines_per_s="), "{}", lines[2]);
    assert!(fields[3].starts_with("elapsed_ms="), "{}", lines[2]);
    assert_eq!(fields[5], format!("tty={}", tty.display()));

    // The cursor goes to the bottom row first, then the lines follow.
    let text = text
        .strip_prefix("\x1b[999;1H")
        .unwrap_or_else(|| panic!("{text:?}"));
    assert_eq!(fields[4], format!("bytes={}", text.len()));
    let written: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(written.len(), 25);
    assert_eq!(written[0], "line 1: quick brown fox jumps 1");
    assert_eq!(written[16], "line 17: dog the quick brown fox jumps 289");
    assert!(written[24].starts_with("line 25: ") && written[24].ends_with(" 625"));
}

#[test]
fn a_missing_tty_fails_without_markers() {
    let out = Command::new(env!("CARGO_BIN_EXE_saffron-guest"))
        .args(["scroll", "--lines", "3", "--phase", "fbcon"])
        .args(["--tty", "/nonexistent/tty9"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.starts_with("SAFFRON-ERROR cmd=scroll msg="),
        "{stdout}"
    );
    assert!(!stdout.contains("SAFFRON-PHASE"), "{stdout}");
}
