//! Ctrl-C (SIGINT) or SIGTERM on `saffron run` stops the guest and removes the run's
//! directory of sockets, as a power-off does.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn an_interrupted_run_leaves_no_sockets_behind() {
    let guest = repo().join("target/guest");
    let (kernel, initrd) = (guest.join("vmlinuz"), guest.join("initrd.img"));
    assert!(kernel.is_file(), "no test guest: run ci/build-guest");
    let qemu = std::env::var_os("SAFFRON_QEMU")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/qemu/bin/qemu-system-x86_64"));
    assert!(qemu.is_file(), "no QEMU: run ci/qemu");
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let serial = std::env::temp_dir().join(format!("saffron-int-{}.log", std::process::id()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_saffron"))
            .args([
                "run",
                "--accel",
                "tcg",
                "--spice",
                "127.0.0.1:0",
                "--disable-ticketing",
            ])
            .arg("--kernel")
            .arg(&kernel)
            .arg("--initrd")
            .arg(&initrd)
            .arg("--qemu")
            .arg(&qemu)
            .arg("--serial")
            .arg(&serial)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("saffron run");
        let dir = std::env::temp_dir().join(format!("saffron-{}-0", child.id()));
        let t0 = Instant::now();
        while !(dir.join("qxl.sock").exists() && dir.join("agent.sock").exists()) {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "no sockets in {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Let QEMU start and connect.
        std::thread::sleep(Duration::from_secs(2));
        // SAFETY: signalling our own child process.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "saffron did not end"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(status.code(), Some(130), "signal {signal}");
        assert!(!dir.exists(), "{} is left behind", dir.display());
        let _ = std::fs::remove_file(&serial);
    }
}
