//! The stock Linux qxl DRM driver against our device, in a real guest.

use saffron_device::QxlConfig;
use saffron_device::qxl::Mode;
use saffron_tests::{
    GuestKernel, GuestOptions, boot_guest, boot_guest_with_sync, serial_guard, sha256_hex, with_tag,
};
use saffron_vmm::vfio_user::lock;

fn qxl_driver_binds(kernel: GuestKernel) {
    let _g = serial_guard();
    let mut opts = GuestOptions::new("qxl-load");
    opts.kernel = kernel;
    let run = boot_guest(&opts, |_| {});
    run.assert_workload_ok("qxl-load");
    for needle in [
        "Initialized qxl",
        "fbcon: qxldrmfb (fb0) is primary device",
        "slot 0 (main): base",
        "slot 1 (surfaces): base",
    ] {
        assert!(
            run.serial.contains(needle),
            "kernel log lacks {needle:?}; serial:\n{}",
            run.serial
        );
    }
    let dev = lock(run.vm.device());
    let stats = dev.stats();
    assert_eq!(
        stats.guest_bugs, 0,
        "no guest bug: {}",
        stats.last_guest_bug
    );
    // Two memslots and the primary surface at least, each async with one IO_CMD.
    assert!(stats.async_completions >= 3, "{stats:?}");
    // fbcon's mode; Linux ≥ 6.7 destroys it again at power-off (drm_atomic_helper_shutdown).
    assert!(stats.primary_creates >= 1, "{stats:?}");
    assert_eq!(stats.last_primary_size, Some((1024, 768)));
    if kernel == GuestKernel::Bookworm {
        assert_eq!(dev.mode(), Mode::Native);
    }
    // Whatever the worker dropped (as spice-server would) is the driver's start-up COPY onto
    // its 64x64 placeholder primary: counted as that, not as a fault.
    let worker = run.vm.server().worker().stats().expect("worker stats");
    assert_eq!(
        worker.dropped_draws, worker.dropped_outside_surface,
        "{worker:?}"
    );
    println!(
        "{kernel:?}: qxl driver bound in {:?}: {stats:?}",
        run.elapsed
    );
}

#[test]
fn stock_qxl_driver_binds_and_creates_its_primary_surface() {
    qxl_driver_binds(GuestKernel::Bookworm);
}

#[test]
fn stock_qxl_driver_of_linux_6_12_binds_too() {
    qxl_driver_binds(GuestKernel::Trixie);
}

/// What the host saw at each hand-over of the `qxl-surface` workload.
#[derive(Debug, Default)]
struct SurfaceSeen {
    /// At sync 1: the off-screen surface's id and the sha256 of its pixels as we see them.
    created: Option<(u32, u32, u32, String)>,
    /// At sync 1: where its pixels are, as an offset into the surface memory, and how many.
    memory: Option<(u64, u64)>,
    /// At sync 1: CREATE commands held back from the release ring.
    held_after_create: u64,
    /// At sync 2: the surfaces left and held CREATEs, once the DESTROY was handled.
    after_close: Option<(Vec<u32>, u64)>,
}

fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    cond()
}

/// Boots the `qxl-surface` workload: the stock driver creates an off-screen surface for a bo
/// the guest filled, then destroys it when the bo is closed. Returns the run, what the host saw
/// and the guest's surface record.
fn off_screen_surface(opts: &GuestOptions) -> (saffron_tests::GuestRun, SurfaceSeen) {
    let mut seen = SurfaceSeen::default();
    let run = boot_guest_with_sync(
        opts,
        |_| {},
        |sync, vm| {
            let worker = vm.server().worker();
            match sync.num("id") {
                1 => {
                    let stats = worker.stats().expect("worker stats");
                    let id = *stats
                        .surface_ids
                        .iter()
                        .find(|&&id| id != 0)
                        .unwrap_or_else(|| panic!("no off-screen surface: {stats:?}"));
                    let (w, h, rgb) = worker
                        .surface_rgb(id)
                        .unwrap_or_else(|e| panic!("surface {id}: {e}"));
                    seen.created = Some((id, w, h, sha256_hex(&rgb)));
                    let info = worker.surface(id).expect("the surface's memory");
                    let offset = info.memory.addr.0 - saffron_device::memory::VRAM_BASE.0;
                    seen.memory = Some((offset, info.memory.len));
                    seen.held_after_create = stats.held_surface_creates;
                }
                2 => {
                    // The DESTROY was pushed when the guest closed the bo; the worker takes it
                    // from the ring on its own time.
                    wait_until(|| {
                        worker
                            .stats()
                            .is_some_and(|s| s.held_surface_creates == 0 && s.surface_commands == 2)
                    });
                    let stats = worker.stats().expect("worker stats");
                    seen.after_close = Some((stats.surface_ids, stats.held_surface_creates));
                    // Every command the guest pushed came back, the CREATE included.
                    let device = vm.device();
                    assert!(
                        wait_until(|| {
                            let s = lock(device).stats();
                            s.releases == s.commands + s.cursor_commands
                        }),
                        "releases: {:?}",
                        lock(device).stats()
                    );
                }
                other => panic!("unexpected sync {other}"),
            }
        },
    );
    run.assert_workload_ok(&opts.workload);
    (run, seen)
}

fn check_off_screen_surface(run: &saffron_tests::GuestRun, seen: &SurfaceSeen) {
    let recs = run.records();
    let guest = with_tag(&recs, "QXLSURF")
        .into_iter()
        .find(|r| r.fields.contains_key("sha256"))
        .unwrap_or_else(|| panic!("no QXLSURF record; serial:\n{}", run.serial));
    let (id, w, h, digest) = seen.created.clone().expect("sync 1 was seen");
    assert!(id > 0);
    assert_eq!(
        (u64::from(w), u64::from(h)),
        (guest.num("width"), guest.num("height"))
    );
    assert_eq!(
        digest,
        guest.get("sha256"),
        "surface {id} as the worker sees it differs from the guest's bo"
    );
    assert_eq!(
        seen.held_after_create, 1,
        "the CREATE stays with its surface"
    );
    assert_eq!(
        seen.after_close,
        Some((vec![0], 0)),
        "the DESTROY ended the surface and released its CREATE"
    );
    let dev = lock(run.vm.device());
    let stats = dev.stats();
    assert_eq!(
        stats.guest_bugs, 0,
        "no guest bug: {}",
        stats.last_guest_bug
    );
    let worker = run.vm.server().worker().stats().expect("worker stats");
    assert_eq!(worker.surface_commands, 2, "{worker:?}");
    println!(
        "qxl-surface: surface {id} {w}x{h} at (offset, len) {:#x?} in {:?}; device {stats:?}; \
         worker {worker:?}",
        seen.memory, run.elapsed
    );
}

#[test]
fn off_screen_surface_lives_from_its_create_to_its_destroy() {
    let _g = serial_guard();
    let (run, seen) = off_screen_surface(&GuestOptions::new("qxl-surface"));
    check_off_screen_surface(&run, &seen);
}

#[test]
fn off_screen_surface_on_linux_6_12_too() {
    let _g = serial_guard();
    let mut opts = GuestOptions::new("qxl-surface");
    opts.kernel = GuestKernel::Trixie;
    let (run, seen) = off_screen_surface(&opts);
    check_off_screen_surface(&run, &seen);
}

/// With `--qxl-vram64-mb 128`: the driver says it has 128 MiB of surface memory (BAR4), and a
/// surface bo of one page, which it places at the top of that heap, lies past BAR1's 64 MiB.
/// The guest wrote its pixels through its BAR4 mapping; the worker reads the same pixels.
#[test]
fn off_screen_surface_past_bar1_through_the_64_bit_bar() {
    let _g = serial_guard();
    let mut opts = GuestOptions::new("qxl-surface");
    opts.qxl = QxlConfig::from_mb(64, 64, 128).expect("the --qxl-vram64-mb 128 configuration");
    opts.args = vec!["16".into(), "16".into()];
    let (run, seen) = off_screen_surface(&opts);
    assert!(
        run.serial.contains("qxl: 128M of Surface memory size"),
        "the driver uses BAR4's 128 MiB for surfaces; serial:\n{}",
        run.serial
    );
    let slot = run
        .serial
        .lines()
        .find(|l| l.contains("(surfaces): base"))
        .unwrap_or_else(|| panic!("no surfaces memslot line; serial:\n{}", run.serial));
    assert!(
        slot.contains("size 0x08000000"),
        "the surfaces memslot covers BAR4: {slot}"
    );
    check_off_screen_surface(&run, &seen);
    let (offset, len) = seen.memory.expect("sync 1 was seen");
    println!("{slot}; surface at {offset:#x}+{len:#x}");
    assert!(
        offset >= opts.qxl.vram_size && offset + len <= opts.qxl.vram64_size,
        "surface at {offset:#x}+{len:#x} is past BAR1 and inside BAR4"
    );
}
