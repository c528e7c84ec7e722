//! Real Spice clients against the running guest: `spicy-screenshot` (Debian's
//! spice-client-gtk) sees exactly what the guest believes is on its screen.

use saffron_tests::{
    GuestOptions, ModeShot, boot_guest_with_sync, screenshots_per_compression, serial_guard,
    sha256_hex, spicy_screenshot, with_tag,
};
use saffron_vmm::spice::SpiceOptions;

const PASSWORD: &str = "saffron-test-ticket";

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

/// Every image compression (`--spice-image-compression`, switched between screenshots as
/// the control socket's `set_image_compression` does) gives spicy-screenshot, that is
/// spice-gtk's own decoders, exactly what the guest shows: fbdev patterns (a solid, a
/// gradient, random noise), the text console after fbcon scrolled it 120 lines, and the last
/// of 40 KMS frames drawn with full and partial DIRTYFB updates.
#[test]
fn every_image_compression_shows_spicy_screenshot_the_guest_screen() {
    let _g = serial_guard();
    let dir = std::env::temp_dir().join(format!("saffron-codecs-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let mut opts = GuestOptions::new("spice-codecs");
    opts.spice = SpiceOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        password_file: Some(password_file),
        ..SpiceOptions::default()
    };
    // Per sync: its label and a shot per mode.
    let mut shots: Vec<(String, Vec<ModeShot>)> = Vec::new();
    let out = dir.join("shot.ppm");
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |sync, vm| {
            let spice = vm.spice().expect("spice server");
            let per_mode = screenshots_per_compression(spice, PASSWORD, &out);
            shots.push((sync.get("label").to_string(), per_mode));
        },
    );
    run.assert_workload_ok("spice-codecs");
    let codecs_used: std::collections::BTreeSet<&str> = shots
        .iter()
        .flat_map(|(_, per_mode)| per_mode.iter())
        .filter(|shot| shot.4)
        .map(|shot| shot.0.as_str())
        .collect();
    assert_eq!(
        codecs_used.into_iter().collect::<Vec<_>>(),
        ["glz", "lz", "lz4", "quic"],
        "each forced codec reached spice-gtk"
    );
    let recs = run.records();
    // What the guest showed at each sync: /dev/fb0's hash for the patterns and the console,
    // the last KMS frame's for the KMS updates.
    let mut fbs = with_tag(&recs, "FB");
    assert_eq!(fbs.len(), 4, "serial:\n{}", run.serial);
    fbs.extend(
        with_tag(&recs, "KMS")
            .into_iter()
            .filter(|r| r.fields.contains_key("sha256")),
    );
    assert_eq!(fbs.len(), 5, "serial:\n{}", run.serial);
    assert_eq!(shots.len(), 5);
    for (fb, (label, per_mode)) in fbs.iter().zip(&shots) {
        for (mode, w, h, digest, _) in per_mode {
            assert_eq!(
                (u64::from(*w), u64::from(*h)),
                (fb.num("width"), fb.num("height")),
                "{label} with {mode}"
            );
            assert_eq!(
                digest,
                fb.get("sha256"),
                "{label} with {mode}: spicy-screenshot's picture differs from /dev/fb0"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A KMS mode smaller than its framebuffer (800x600 showing a 1024x768 framebuffer from
/// (96, 40)): the guest's monitors config reaches Spice clients as the display's
/// MONITORS_CONFIG, and that window of what the client holds is exactly what the guest shows.
#[test]
fn spice_clients_are_told_which_part_of_the_surface_the_guest_shows() {
    use saffron_server::client::{Screen, Session};

    let _g = serial_guard();
    let dir = std::env::temp_dir().join(format!("saffron-spice-head-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let mut opts = GuestOptions::new("qxl-kms");
    opts.args = ["800", "600", "30", "1024", "768", "96", "40"]
        .map(String::from)
        .to_vec();
    opts.spice = SpiceOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        password_file: Some(password_file),
        ..SpiceOptions::default()
    };
    let mut seen = None;
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |_, vm| {
            let addr = vm.spice().expect("spice server").local_addr();
            let session = Session::connect(addr, PASSWORD).expect("main channel");
            // Display caps: MONITORS_CONFIG (bit 1).
            let mut d = session.open(2, &[1 << 1]).expect("display channel");
            d.send(101, &[1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
                .expect("display INIT");
            let mut screen = Screen::new();
            let mut head = None;
            loop {
                let (ty, body) = d.read().expect("display message");
                screen.handle(&mut d, ty, &body).expect("display message");
                if ty == 317 {
                    let at = |o: usize| u32::from_le_bytes(body[o..o + 4].try_into().unwrap());
                    assert_eq!(u16::from_le_bytes([body[0], body[1]]), 1, "one head");
                    head = Some((at(20), at(24), at(12), at(16)));
                }
                if ty == 102 {
                    break;
                }
            }
            let (x, y, w, h) = head.expect("a MONITORS_CONFIG before the MARK");
            let mut rgb = Vec::with_capacity((w * h * 3) as usize);
            for row in y..y + h {
                let start = ((row * screen.width + x) * 4) as usize;
                for px in screen.pixels[start..start + (w * 4) as usize].chunks_exact(4) {
                    rgb.extend_from_slice(&[px[2], px[1], px[0]]);
                }
            }
            seen = Some((
                (screen.width, screen.height),
                (x, y, w, h),
                sha256_hex(&rgb),
            ));
        },
    );
    run.assert_workload_ok("qxl-kms");
    let recs = run.records();
    let kms = with_tag(&recs, "KMS")
        .into_iter()
        .find(|r| r.fields.contains_key("sha256"))
        .unwrap_or_else(|| panic!("no KMS result; serial:\n{}", run.serial));
    let (surface, head, digest) = seen.expect("the client ran at the guest's pause");
    assert_eq!(surface, (1024, 768), "the surface is the framebuffer");
    assert_eq!(head, (96, 40, 800, 600), "head 0 is the mode's window");
    assert_eq!(
        digest,
        kms.get("sha256"),
        "the client's window differs from what the guest shows"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
