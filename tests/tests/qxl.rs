//! The stock Linux qxl DRM driver against our device, in a real guest.

use saffron_device::qxl::Mode;
use saffron_tests::{GuestKernel, GuestOptions, boot_guest, serial_guard};
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
