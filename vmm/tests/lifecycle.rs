//! `saffron run` never leaves its QEMU behind: killed with SIGTERM (or anything else), the
//! QEMU it started goes too. Uses a stand-in QEMU (a shell script) so no guest is booted.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `pid` is a live process (a zombie counts as gone: it has exited).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(") ")
            .next()
            .is_some_and(|rest| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn killing_saffron_run_takes_its_qemu_with_it() {
    let dir = std::env::temp_dir().join(format!("saffron-lifecycle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pid_file = dir.join("qemu.pid");
    // Answers the vfio-user probe, then stands in for a running guest.
    let fake = dir.join("qemu-system-x86_64");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ \"$1\" = -device ] && [ \"$2\" = help ]; then\n    \
             echo 'name \"vfio-user-pci\", bus PCI'\n    exit 0\nfi\n\
             echo $$ > {pid}.tmp && mv {pid}.tmp {pid}\nexec sleep 600\n",
            pid = pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let kernel = dir.join("vmlinuz");
    std::fs::write(&kernel, b"not a kernel").unwrap();
    let mut saffron = Command::new(env!("CARGO_BIN_EXE_saffron"))
        .args(["run", "--accel", "tcg", "--irq-mode", "polled", "--kernel"])
        .arg(&kernel)
        .arg("--qemu")
        .arg(&fake)
        .arg("--serial")
        .arg(dir.join("serial.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("saffron binary");
    wait_for(
        "the stand-in QEMU to start",
        Duration::from_secs(30),
        || Path::new(&pid_file).exists(),
    );
    let qemu: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(qemu));
    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    assert_eq!(unsafe { libc::kill(saffron.id() as i32, libc::SIGTERM) }, 0);
    let status = saffron.wait().unwrap();
    assert!(!status.success(), "saffron ended by SIGTERM");
    wait_for("QEMU to end with saffron", Duration::from_secs(10), || {
        !alive(qemu)
    });
    let _ = std::fs::remove_dir_all(&dir);
}
