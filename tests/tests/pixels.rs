//! Pixel-exact oracle: what the guest believes is on its screen (its own `/dev/fb0` or KMS
//! dumb buffer, hashed inside the guest as packed RGB) equals what our worker rendered into
//! the primary surface (a screendump taken while the guest holds still).

use std::collections::BTreeMap;

use saffron_device::QxlConfig;
use saffron_tests::{
    GuestOptions, Record, boot_guest_with_sync, serial_guard, sha256_hex, with_tag,
};
use saffron_vmm::vfio_user::lock;

/// Screendumps by sync id: width, height, sha256 of the RGB bytes, and the size of the primary
/// surface they were taken from.
type Dumps = BTreeMap<u64, (u32, u32, String, Option<(u32, u32)>)>;

/// Boots `workload`, takes a screendump at every `SAFFRON-SYNC`, and returns the guest's
/// records, the screendumps and the serial log.
fn run_with_screendumps(opts: &GuestOptions) -> (Vec<Record>, Dumps, String) {
    let mut dumps = BTreeMap::new();
    let run = boot_guest_with_sync(
        opts,
        |_| {},
        |sync, vm| {
            let id = sync.num("id");
            let primary = lock(vm.device())
                .primary()
                .map(|p| (p.create.width, p.create.height));
            match vm.server().worker().screendump() {
                Ok((w, h, rgb)) => {
                    dumps.insert(id, (w, h, sha256_hex(&rgb), primary));
                }
                Err(e) => panic!("screendump at sync {id} failed: {e}"),
            }
        },
    );
    run.assert_workload_ok(&opts.workload);
    let stats = lock(run.vm.device()).stats();
    assert_eq!(
        stats.guest_bugs, 0,
        "no guest bug: {}",
        stats.last_guest_bug
    );
    let worker = run.vm.server().worker().stats();
    println!(
        "{}: {:?}, device {stats:?}, worker {worker:?}",
        opts.workload, run.elapsed
    );
    (run.records(), dumps, run.serial)
}

#[test]
fn fbdev_images_are_rendered_pixel_exact() {
    let _g = serial_guard();
    let (recs, dumps, serial) = run_with_screendumps(&GuestOptions::new("qxl-fb"));
    let fbs = with_tag(&recs, "FB");
    let syncs = with_tag(&recs, "SYNC");
    assert_eq!(syncs.len(), 5, "five patterns; serial:\n{serial}");
    assert_eq!(fbs.len(), syncs.len(), "serial:\n{serial}");
    for (fb, sync) in fbs.iter().zip(&syncs) {
        let (w, h, digest, _) = &dumps[&sync.num("id")];
        assert_eq!(
            (u64::from(*w), u64::from(*h)),
            (fb.num("width"), fb.num("height"))
        );
        assert_eq!(
            digest,
            fb.get("sha256"),
            "pattern {}: the screendump differs from the guest's /dev/fb0",
            sync.get("label")
        );
    }
}

#[test]
fn fbcon_text_is_rendered_pixel_exact() {
    let _g = serial_guard();
    let (recs, dumps, serial) = run_with_screendumps(&GuestOptions::new("qxl-fbcon"));
    let fb = with_tag(&recs, "FB");
    let sync = with_tag(&recs, "SYNC");
    assert_eq!((fb.len(), sync.len()), (1, 1), "serial:\n{serial}");
    assert_eq!(dumps[&sync[0].num("id")].2, fb[0].get("sha256"));
}

/// A framebuffer larger than the mode, shown from an offset: the screen is a window of it.
#[derive(Clone, Copy)]
struct Window {
    fb: (u32, u32),
    origin: (u32, u32),
}

fn kms(
    width: u32,
    height: u32,
    resolution: Option<(u32, u32)>,
    window: Option<Window>,
    qxl: QxlConfig,
) -> String {
    let _g = serial_guard();
    let mut opts = GuestOptions::new("qxl-kms");
    opts.qxl = qxl;
    opts.args = vec![width.to_string(), height.to_string(), "30".into()];
    if let Some(w) = window {
        opts.args.extend(
            [w.fb.0, w.fb.1, w.origin.0, w.origin.1]
                .iter()
                .map(u32::to_string),
        );
    }
    opts.qxl.preferred_resolution = resolution;
    let (recs, dumps, serial) = run_with_screendumps(&opts);
    let result = with_tag(&recs, "KMS")
        .into_iter()
        .find(|r| r.fields.contains_key("sha256"))
        .unwrap_or_else(|| panic!("no KMS result; serial:\n{serial}"));
    assert_eq!(
        (result.num("width"), result.num("height")),
        (u64::from(width), u64::from(height))
    );
    assert!(
        result.num("partial") > 0,
        "partial-rectangle updates were made"
    );
    // The primary surface is the framebuffer's size (the driver's dumb shadow), the screen
    // (monitors config head 0) the mode's.
    let fb = window.map_or((width, height), |w| w.fb);
    assert_eq!(
        (result.num("fb_width"), result.num("fb_height")),
        (u64::from(fb.0), u64::from(fb.1))
    );
    let sync = with_tag(&recs, "SYNC");
    assert_eq!(sync.len(), 1, "serial:\n{serial}");
    let (w, h, digest, primary) = &dumps[&sync[0].num("id")];
    assert_eq!(*primary, Some(fb), "the primary surface at the screendump");
    assert_eq!((*w, *h), (width, height));
    assert_eq!(
        digest,
        result.get("sha256"),
        "the screendump differs from what the dumb buffer shows"
    );
    println!("KMS {width}x{height}: {result:?}");
    serial
}

#[test]
fn kms_dumb_buffer_at_1024x768_is_rendered_pixel_exact() {
    kms(1024, 768, None, None, QxlConfig::default());
}

#[test]
fn kms_dumb_buffer_at_the_resolution_mode_is_rendered_pixel_exact() {
    kms(1280, 800, Some((1280, 800)), None, QxlConfig::default());
}

/// An 800x600 mode showing a 1024x768 framebuffer from (96, 40): the primary surface is
/// 1024x768, the guest's monitors config says head 0 is 800x600 at (96, 40), and the
/// screendump is that window.
#[test]
fn kms_window_of_a_larger_framebuffer_is_what_the_screendump_shows() {
    kms(
        800,
        600,
        None,
        Some(Window {
            fb: (1024, 768),
            origin: (96, 40),
        }),
        QxlConfig::default(),
    );
}

/// With `--qxl-vram64-mb 128` the device has a 128 MiB 64-bit BAR4 next to its 64 MiB BAR1:
/// the stock driver takes BAR4 as its surface memory (it says so), puts its surfaces memslot
/// and so the primary surface there, and the screen is still rendered pixel-exact.
#[test]
fn kms_with_the_64_bit_vram_bar_is_rendered_pixel_exact() {
    let qxl = QxlConfig::from_mb(64, 64, 128).expect("the --qxl-vram64-mb 128 configuration");
    let serial = kms(1024, 768, None, None, qxl);
    assert!(
        serial.contains("qxl: 128M of Surface memory size"),
        "the driver uses BAR4's 128 MiB for surfaces; serial:\n{serial}"
    );
    let slot = serial
        .lines()
        .find(|l| l.contains("(surfaces): base"))
        .unwrap_or_else(|| panic!("no surfaces memslot line; serial:\n{serial}"));
    assert!(
        slot.contains("size 0x08000000"),
        "the surfaces memslot covers BAR4: {slot}"
    );
}
