//! The real-guest rig: a Debian kernel under QEMU (TCG) finds our device over vfio-user, sees
//! its memory, reaches its I/O ports, and receives its interrupts in both delivery modes.

use saffron_device::memory::MemoryBar;
use saffron_tests::{GuestOptions, boot_guest, pattern, serial_guard, sha256_hex, with_tag};
use saffron_vmm::intx::IrqMode;
use saffron_vmm::vfio_user::lock;

/// Where the host puts a pattern for the guest to read, and where the guest writes one.
const HOST_PATTERN_OFF: u64 = 0x10_0000;
const HOST_PATTERN_SEED: u32 = 0x5AFF_0002;
const GUEST_PATTERN_OFF: u64 = 0x20_0000;
const GUEST_PATTERN_SEED: u32 = 0x5AFF_0001;
const PATTERN_LEN: usize = 0x10_0000;

#[test]
fn guest_enumerates_the_device() {
    let _g = serial_guard();
    let run = boot_guest(&GuestOptions::new("enumerate"), |_| {});
    run.assert_workload_ok("enumerate");
    let recs = run.records();
    let pci = with_tag(&recs, "PCI");
    assert_eq!(
        pci.len(),
        1,
        "exactly one QXL device; serial:\n{}",
        run.serial
    );
    let pci = pci[0];
    assert_eq!(pci.num("vendor"), 0x1b36);
    assert_eq!(pci.num("device"), 0x0100);
    assert_eq!(pci.num("class"), 0x030000);
    assert_eq!(pci.num("revision"), 5);
    assert_eq!(pci.num("pin"), 1);
    let bars = with_tag(&recs, "BAR");
    let bar = |i: u64| {
        bars.iter()
            .find(|b| b.num("index") == i)
            .unwrap_or_else(|| panic!("BAR{i} missing; serial:\n{}", run.serial))
    };
    for (i, kind, size) in [
        (0, "mem32", 64u64 << 20),
        (1, "mem32", 64 << 20),
        (2, "mem32", 8192),
        (3, "io", 32),
    ] {
        assert_eq!(bar(i).get("kind"), kind, "BAR{i}");
        assert_eq!(bar(i).num("size"), size, "BAR{i}");
        assert_eq!(bar(i).num("prefetch"), 0, "BAR{i}");
    }
    // No BAR beyond 3 and no expansion ROM of ours. Linux shows the boot VGA device's
    // legacy shadow ROM (0xc0000, 128 KiB) as resource 6 of a VGA-class device; that one is
    // the firmware's, not ours, so it is the only index-6 entry allowed.
    for b in &bars {
        let i = b.num("index");
        assert!(
            i < 4 || (i == 6 && b.num("start") == 0xc0000 && b.num("size") == 0x20000),
            "unexpected resource {b:?}"
        );
    }
    println!("boot to powered-off guest: {:?}", run.elapsed);
}

/// Everything the rig workload checks, with `mode` interrupt delivery.
fn rig(mode: IrqMode) {
    let _g = serial_guard();
    let host_pattern = pattern(HOST_PATTERN_SEED, PATTERN_LEN);
    let mut opts = GuestOptions::new("rig");
    opts.irq_mode = mode;
    if mode == IrqMode::Intx {
        // Under TCG the first INTx makes QEMU trap the BARs for good: no closing bulk copy.
        opts.args = vec!["0".into()];
    }
    if mode == IrqMode::Intx {
        // Under TCG the first INTx makes QEMU trap the BARs for good: no closing bulk copy.
        opts.args = vec!["0".into()];
    }
    let run = boot_guest(&opts, |server| {
        lock(server.device())
            .memory()
            .write(MemoryBar::Ram, HOST_PATTERN_OFF, &host_pattern)
            .expect("prefill BAR0");
    });
    run.assert_workload_ok("rig");
    let recs = run.records();
    let rw = with_tag(&recs, "BAR-RW");
    let read = rw
        .iter()
        .find(|r| r.fields.contains_key("read_sha256"))
        .expect("bar-rw read record");
    assert_eq!(read.num("read_off"), HOST_PATTERN_OFF);
    assert_eq!(
        read.get("read_sha256"),
        sha256_hex(&host_pattern),
        "the guest reads exactly what the device holds in BAR0"
    );

    let dev = lock(run.vm.device());
    let mut seen = vec![0u8; PATTERN_LEN];
    dev.memory()
        .read(MemoryBar::Ram, GUEST_PATTERN_OFF, &mut seen)
        .unwrap();
    assert!(
        seen == pattern(GUEST_PATTERN_SEED, PATTERN_LEN),
        "the device holds exactly what the guest wrote into BAR0"
    );

    let stats = dev.stats().clone();
    assert_eq!(
        stats.io_writes[7], 16,
        "each LOG port write reaches the device"
    );
    assert_eq!(stats.last_log, "hello from the guest");

    let irq = with_tag(&recs, "IRQ");
    assert_eq!(irq.len(), 1, "serial:\n{}", run.serial);
    let irq = irq[0];
    assert_eq!(irq.num("delivered"), irq.num("requested"), "{irq:?}");
    assert_eq!(irq.num("lowered"), irq.num("requested"), "{irq:?}");
    assert!(irq.num("requested") >= 20);
    assert!(stats.irq_raised >= irq.num("requested"));

    let signals = run.vm.server().intx().signals();
    let bar0_messages =
        run.vm.server().stats().region_messages[0].load(std::sync::atomic::Ordering::Relaxed);
    match mode {
        IrqMode::Polled => {
            assert_eq!(signals, 0, "polled mode never writes the INTx eventfd");
            assert_eq!(
                bar0_messages, 0,
                "BAR0 stays mapped: not one guest access of it became a message"
            );
        }
        IrqMode::Intx => {
            assert!(
                signals >= irq.num("requested"),
                "every interrupt went through the eventfd ({signals})"
            );
        }
    }
    let bench = with_tag(&recs, "BENCH");
    println!(
        "rig {mode:?}: {:?}, irq {irq:?}, intx signals {signals}, BAR0 messages {bar0_messages}, bench {bench:?}",
        run.elapsed
    );
}

#[test]
fn rig_polled_interrupts() {
    rig(IrqMode::Polled);
}

#[test]
fn rig_intx_eventfd_interrupts() {
    rig(IrqMode::Intx);
}
