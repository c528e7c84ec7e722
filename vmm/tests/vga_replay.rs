//! `saffron vga-replay` end to end: the binary replays a committed QEMU recording and its
//! PNG has QEMU's screendump's pixels.

use std::path::{Path, PathBuf};
use std::process::Command;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../vga/tests/data")
        .join(name)
}

fn rgb(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(path).expect("png"),
    ));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("png size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn vga_replay_writes_qemus_picture() {
    let out = std::env::temp_dir().join(format!("saffron-vga-replay-{}.png", std::process::id()));
    let mut matched = false;
    for cursor in [&[][..], &["--cursor-hidden"][..]] {
        let status = Command::new(env!("CARGO_BIN_EXE_saffron"))
            .arg("vga-replay")
            .arg("--qemu-trace")
            .arg(data("vgacon.trace.gz"))
            .arg("--out")
            .arg(&out)
            .args(cursor)
            .status()
            .expect("runs saffron");
        assert!(status.success());
        matched |= rgb(&out) == rgb(&data("vgacon.png"));
    }
    std::fs::remove_file(&out).unwrap();
    assert!(matched, "neither cursor phase gives QEMU's screendump");
}

#[test]
fn vga_replay_fails_on_a_bad_trace() {
    let trace = std::env::temp_dir().join(format!("saffron-bad-{}.log", std::process::id()));
    std::fs::write(&trace, "vga_std_write_io addr 0x3c4, val oops\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_saffron"))
        .args(["vga-replay", "--out", "/dev/null", "--qemu-trace"])
        .arg(&trace)
        .output()
        .expect("runs saffron");
    std::fs::remove_file(&trace).unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("trace line 1"), "{err}");
}
