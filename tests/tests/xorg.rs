//! X.org on our device: the X guest (`ci/build-guest --xorg`) runs Xorg with the stock qxl
//! driver (xf86-video-qxl over the kernel's qxl DRM driver), x11perf and a few X clients; at
//! the guest's pause the picture X believes it shows (`xwd -root`, hashed in the guest as packed
//! RGB) is compared with our worker's screendump and with what `spicy-screenshot` receives
//! under every image compression mode.

use std::collections::BTreeMap;

use saffron_tests::{
    GuestOptions, GuestVariant, ModeShot, Record, boot_guest_with_sync,
    screenshots_per_compression, serial_guard, sha256_hex, spicy_screenshot, with_tag,
};
use saffron_vmm::spice::SpiceOptions;
use saffron_vmm::vfio_user::lock;

const PASSWORD: &str = "saffron-xorg-ticket";

/// Rows per band of the guest's `SAFFRON-XWDBAND` records.
const BAND: usize = 64;

/// A picture taken on the host at the guest's pause: width, height, packed RGB.
type Picture = (u32, u32, Vec<u8>);

/// The bands (first row) where `rgb` differs from the guest's band hashes.
fn differing_bands(bands: &[&Record], width: u32, rgb: &[u8]) -> Vec<u64> {
    let row = width as usize * 3;
    bands
        .iter()
        .zip(rgb.chunks(row * BAND))
        .filter(|(b, chunk)| sha256_hex(chunk) != b.get("sha256"))
        .map(|(b, _)| b.num("y"))
        .collect()
}

/// One boot of the X guest: Xorg starts on the qxl device, its drawing reaches our worker as
/// QXL draw commands, and what X shows (its own `xwd -root`) is, pixel for pixel, our worker's
/// screendump and the picture a Spice client gets, whatever the image compression.
#[test]
fn xorg_on_qxl_is_rendered_pixel_exact() {
    let _g = serial_guard();
    let dir = std::env::temp_dir().join(format!("saffron-xorg-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let mut opts = GuestOptions::new("xorg");
    opts.variant = GuestVariant::Xorg;
    opts.spice = SpiceOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        password_file: Some(password_file),
        ..SpiceOptions::default()
    };
    let out = dir.join("shot.ppm");
    let mut dump: Option<Picture> = None;
    let mut shot: Option<Picture> = None;
    let mut per_mode: Vec<ModeShot> = Vec::new();
    let mut at_sync = None;
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |sync, vm| {
            assert_eq!(sync.get("label"), "xorg");
            let worker = vm.server().worker();
            dump = Some(worker.screendump().expect("screendump at the sync"));
            let port = vm.spice().expect("spice server").local_addr().port();
            shot = Some(spicy_screenshot(port, PASSWORD, &out).expect("spicy-screenshot"));
            at_sync = worker.stats();
            per_mode = screenshots_per_compression(vm.spice().unwrap(), PASSWORD, &out);
        },
    );
    let _ = std::fs::remove_dir_all(&dir);
    run.assert_workload_ok("xorg");
    let recs = run.records();
    let serial = &run.serial;

    // X started on the qxl driver, in KMS mode over the kernel driver.
    let xorg = with_tag(&recs, "XORG");
    assert_eq!(xorg.len(), 1, "Xorg answered; serial:\n{serial}");
    assert_eq!(
        (xorg[0].get("driver"), xorg[0].get("kms")),
        ("qxl", "1"),
        "xf86-video-qxl drives the kernel's qxl driver; serial:\n{serial}"
    );

    // Its drawing reached the worker as draw commands, all of them understood.
    let device = lock(run.vm.device()).stats();
    assert_eq!(
        device.guest_bugs, 0,
        "no guest bug: {}",
        device.last_guest_bug
    );
    let stats = at_sync.expect("worker stats at the sync");
    let kinds: BTreeMap<&str, _> = stats.render.iter().map(|(k, c)| (k.as_str(), c)).collect();
    println!(
        "xorg: run {:?}, X start {} ms, mode {}; worker at the sync: {} draws ({} dropped), \
         {} surface commands, per kind {kinds:?}",
        run.elapsed,
        xorg[0].get("start_ms"),
        xorg[0].get("mode"),
        stats.draws,
        stats.dropped_draws,
        stats.surface_commands,
    );
    assert_eq!(stats.bad_commands, 0, "every command parsed");
    assert!(
        stats.draws > 1000,
        "x11perf and the clients drew through the device"
    );
    for kind in ["Fill", "Copy", "CopyBits"] {
        assert!(
            kinds.get(kind).is_some_and(|c| c.rendered > 0),
            "X sent {kind} draws: {kinds:?}"
        );
    }
    for (kind, c) in &kinds {
        assert_eq!(
            (c.approximated, c.unsupported),
            (0, 0),
            "{kind}: every draw rendered exactly"
        );
    }

    // What X shows, our screendump and the Spice client's picture are the same pixels.
    let xwd = with_tag(&recs, "XWD");
    assert_eq!(xwd.len(), 1, "serial:\n{serial}");
    let bands = with_tag(&recs, "XWDBAND");
    let (w, h) = (xwd[0].num("width"), xwd[0].num("height"));
    for (what, picture) in [("screendump", &dump), ("spicy-screenshot", &shot)] {
        let (pw, ph, rgb) = picture.as_ref().expect("taken at the sync");
        assert_eq!((u64::from(*pw), u64::from(*ph)), (w, h), "{what} size");
        assert_eq!(
            sha256_hex(rgb),
            xwd[0].get("sha256"),
            "{what} differs from X's own xwd -root in the bands starting at rows {:?}",
            differing_bands(&bands, *pw, rgb)
        );
    }
    assert_eq!(per_mode.len(), saffron_server::Compression::NAMES.len());
    for (mode, pw, ph, digest, used) in &per_mode {
        assert_eq!((u64::from(*pw), u64::from(*ph)), (w, h), "{mode}: size");
        assert_eq!(
            digest,
            xwd[0].get("sha256"),
            "spicy-screenshot with {mode} (codec used: {used}) differs from X's xwd -root"
        );
    }
    let used: Vec<&str> = per_mode
        .iter()
        .filter(|shot| shot.4)
        .map(|shot| shot.0.as_str())
        .collect();
    assert_eq!(
        used,
        ["quic", "glz", "lz", "lz4"],
        "each forced codec reached spice-gtk"
    );
}
