//! The stock Linux qxl DRM driver against our device, in a real guest.

use saffron_device::qxl::Mode;
use saffron_tests::{GuestOptions, boot_guest, serial_guard};
use saffron_vmm::vfio_user::lock;

#[test]
fn stock_qxl_driver_binds_and_creates_its_primary_surface() {
    let _g = serial_guard();
    let run = boot_guest(&GuestOptions::new("qxl-load"), |_| {});
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
    assert_eq!(dev.mode(), Mode::Native);
    let primary = dev.primary().expect("a primary surface");
    assert_eq!((primary.create.width, primary.create.height), (1024, 768));
    println!("qxl driver bound in {:?}: {stats:?}", run.elapsed);
}
