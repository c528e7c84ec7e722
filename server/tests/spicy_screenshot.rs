//! The real client: Debian's `spicy-screenshot` (package spice-client-gtk) against our server.
//! It needs no display. Skipped with a message when the binary is absent.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const SPICY: &str = "spicy-screenshot";

fn have_spicy() -> bool {
    let ok = Command::new(SPICY).arg("--version").output().is_ok();
    if !ok {
        eprintln!("SKIPPED: {SPICY} not installed (apt-get install spice-client-gtk)");
    }
    ok
}

fn run_spicy(port: u16, password: &str, out: &Path) -> std::process::Output {
    let mut cmd = Command::new("timeout");
    cmd.args([
        "60",
        SPICY,
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-w",
        password,
    ])
    .arg("-o")
    .arg(out);
    cmd.output().unwrap()
}

#[test]
fn spicy_screenshot_saves_the_exact_frame() {
    // A real-client test never skips: CI installs spice-client-gtk (ci/test).
    assert!(
        have_spicy(),
        "spicy-screenshot missing: apt-get install spice-client-gtk"
    );
    let (h, src) = start(Some("pw"));
    let frame = gradient(1024, 768, 1, 0);
    src.set(frame.clone());
    let dir = std::env::temp_dir().join(format!("saffron-spicy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("ok.ppm");
    let res = run_spicy(h.local_addr().port(), "pw", &out);
    assert!(
        res.status.success(),
        "spicy-screenshot failed: {}\n{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    assert_ppm_shows(&out, &frame);

    let bad = dir.join("bad.ppm");
    let res = run_spicy(h.local_addr().port(), "wrong", &bad);
    assert!(!res.status.success(), "a wrong password must fail");
    assert!(!bad.exists());
    std::thread::sleep(Duration::from_millis(10));
    let _ = std::fs::remove_dir_all(&dir);
}

/// GLZ wrapped in zlib (`--spice-zlib-glz-wan-compression always`) is decoded by spice-gtk to
/// exactly the frame: the ZLIB_GLZ_RGB layout (inflated size, deflated size, zlib stream)
/// is the one its decoder reads.
#[test]
fn spicy_screenshot_decodes_zlib_wrapped_glz() {
    assert!(
        have_spicy(),
        "spicy-screenshot missing: apt-get install spice-client-gtk"
    );
    let mut cfg = saffron_server::ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.password = Some("pw".into());
    cfg.image_compression = saffron_server::Compression::Glz;
    cfg.zlib_glz_wan_compression = saffron_server::WanCompression::Always;
    let src = std::sync::Arc::new(TestSource::default());
    let h = saffron_server::start(
        cfg,
        src.clone(),
        std::sync::Arc::new(saffron_server::NullInput),
    )
    .unwrap();
    let frame = gradient(640, 480, 1, 0x5a);
    src.set(frame.clone());
    let dir = std::env::temp_dir().join(format!("saffron-spicy-zlib-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("zlib.ppm");
    let res = run_spicy(h.local_addr().port(), "pw", &out);
    assert!(
        res.status.success(),
        "spicy-screenshot failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert_ppm_shows(&out, &frame);
    let sent = h.image_totals();
    assert_eq!(
        sent.zlib_glz, 1,
        "the picture went as ZLIB_GLZ_RGB: {sent:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
