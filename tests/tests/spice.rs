//! Real Spice clients against the running guest: `spicy-screenshot` (Debian's
//! spice-client-gtk) sees exactly what the guest believes is on its screen.

use std::path::Path;
use std::process::Command;

use saffron_tests::{GuestOptions, boot_guest_with_sync, serial_guard, sha256_hex, with_tag};
use saffron_vmm::spice::SpiceOptions;

const PASSWORD: &str = "saffron-test-ticket";

/// Runs spicy-screenshot against `port` and returns the RGB bytes of the PPM it saved.
fn spicy_screenshot(port: u16, password: &str, out: &Path) -> Result<(u32, u32, Vec<u8>), String> {
    let _ = std::fs::remove_file(out);
    let status = Command::new("spicy-screenshot")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-w",
            password,
            "-o",
        ])
        .arg(out)
        .output()
        .map_err(|e| {
            format!("cannot run spicy-screenshot (apt-get install spice-client-gtk): {e}")
        })?;
    if !status.status.success() {
        return Err(format!(
            "spicy-screenshot failed: {}",
            String::from_utf8_lossy(&status.stderr)
        ));
    }
    let data = std::fs::read(out).map_err(|e| format!("no screenshot: {e}"))?;
    parse_ppm(&data)
}

/// A binary PPM (P6, maxval 255): width, height, RGB bytes.
fn parse_ppm(data: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while i < data.len() && data[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < data.len() && data[i] == b'#' {
            while i < data.len() && data[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        while i < data.len() && !data[i].is_ascii_whitespace() {
            i += 1;
        }
        if start == i {
            return Err("truncated PPM header".into());
        }
        fields.push(String::from_utf8_lossy(&data[start..i]).to_string());
    }
    if fields[0] != "P6" || fields[3] != "255" {
        return Err(format!("unexpected PPM header {fields:?}"));
    }
    let w: u32 = fields[1].parse().map_err(|_| "bad width")?;
    let h: u32 = fields[2].parse().map_err(|_| "bad height")?;
    let pixels = data.get(i + 1..).ok_or("no pixels")?.to_vec();
    if pixels.len() != (w * h * 3) as usize {
        return Err(format!("{} pixel bytes for {w}x{h}", pixels.len()));
    }
    Ok((w, h, pixels))
}

#[test]
fn spicy_screenshot_sees_exactly_the_guest_framebuffer() {
    let _g = serial_guard();
    let dir = std::env::temp_dir().join(format!("saffron-spice-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let mut opts = GuestOptions::new("qxl-fb");
    opts.args = vec!["hgrad".into(), "random:7".into()];
    opts.spice = SpiceOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        password_file: Some(password_file),
        ..SpiceOptions::default()
    };
    let mut shots = Vec::new();
    let mut refused = Vec::new();
    let out = dir.join("shot.ppm");
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |sync, vm| {
            let port = vm.spice().expect("spice server").local_addr().port();
            let shot = spicy_screenshot(port, PASSWORD, &out)
                .unwrap_or_else(|e| panic!("sync {}: {e}", sync.get("id")));
            shots.push((shot.0, shot.1, sha256_hex(&shot.2)));
            refused.push(spicy_screenshot(port, "wrong password", &out).is_err());
        },
    );
    run.assert_workload_ok("qxl-fb");
    let recs = run.records();
    let fbs = with_tag(&recs, "FB");
    assert_eq!(fbs.len(), 2, "serial:\n{}", run.serial);
    assert_eq!(shots.len(), 2);
    for (fb, (w, h, digest)) in fbs.iter().zip(&shots) {
        assert_eq!(
            (u64::from(*w), u64::from(*h)),
            (fb.num("width"), fb.num("height"))
        );
        assert_eq!(
            digest,
            fb.get("sha256"),
            "the client's picture differs from /dev/fb0"
        );
    }
    assert!(refused.iter().all(|r| *r), "a wrong password is refused");
    let _ = std::fs::remove_dir_all(&dir);
}
