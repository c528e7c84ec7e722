//! A hostile guest: with no driver bound it writes pseudo-random garbage into the RAM header,
//! the rings and BAR0 and pokes random I/O ports (`saffron-guest hostile`). The VMM must keep
//! running, the device must report the guest bug, and after a reset the stock qxl driver must
//! get a screen that is pixel-exact again.
//!
//! `SAFFRON_HOSTILE_SEEDS=1,2,3` and `SAFFRON_HOSTILE_ROUNDS=N` choose other runs;
//! `SAFFRON_HOSTILE_SERIAL=1` prints each run's serial log.

use saffron_tests::{GuestOptions, boot_guest_with_sync, serial_guard, sha256_hex, with_tag};
use saffron_vmm::vfio_user::lock;

/// Seeds and rounds when the environment does not say.
const DEFAULT_SEEDS: &str = "0x5aff0010";
const DEFAULT_ROUNDS: u64 = 20_000;

/// What the host saw at the guest's SYNC after the driver drew.
struct AtSync {
    width: u32,
    height: u32,
    sha256: String,
    in_guest_bug: bool,
}

fn hostile_run(seed: &str, rounds: u64) {
    let mut opts = GuestOptions::new("hostile");
    opts.args = vec![seed.to_string(), rounds.to_string()];
    let mut at_sync: Option<AtSync> = None;
    let run = boot_guest_with_sync(
        &opts,
        |_| {},
        |sync, vm| {
            let (width, height, rgb) =
                vm.server().worker().screendump().unwrap_or_else(|e| {
                    panic!("screendump at sync {} failed: {e}", sync.get("id"))
                });
            at_sync = Some(AtSync {
                width,
                height,
                sha256: sha256_hex(&rgb),
                in_guest_bug: lock(vm.device()).in_guest_bug(),
            });
        },
    );
    // boot_guest_with_sync already panicked if QEMU did not exit 0 (the VMM side crashed or
    // the guest hung); the workload itself must have passed every step.
    run.assert_workload_ok("hostile");
    let serial = &run.serial;
    let recs = run.records();
    if std::env::var_os("SAFFRON_HOSTILE_SERIAL").is_some() {
        println!("serial of seed {seed}:\n{serial}");
    }

    let hostile = with_tag(&recs, "HOSTILE");
    assert_eq!(
        hostile.len(),
        1,
        "one SAFFRON-HOSTILE line; serial:\n{serial}"
    );
    assert_eq!(hostile[0].num("rounds"), rounds);
    assert!(hostile[0].num("writes") >= rounds, "{:?}", hostile[0]);
    assert_eq!(
        with_tag(&recs, "HOSTILE-RESET").len(),
        1,
        "the RESET port was written; serial:\n{serial}"
    );

    let stats = lock(run.vm.device()).stats();
    let worker = run.vm.server().worker().stats();
    println!(
        "hostile seed={seed} rounds={rounds}: {:?}, {:?}\n  device {stats:?}\n  worker {worker:?}",
        run.elapsed,
        with_tag(&recs, "HOSTILE-PCIRESET")
            .first()
            .map(|r| r.get("status").to_string()),
    );
    assert!(
        stats.guest_bugs >= 1,
        "the garbage was reported as a guest bug: {stats:?}"
    );
    assert!(
        !stats.last_guest_bug.is_empty(),
        "the last guest bug is described: {stats:?}"
    );
    assert!(stats.resets >= 1, "{stats:?}");
    assert!(
        stats.primary_creates >= 1,
        "the driver made its primary: {stats:?}"
    );

    let fb = with_tag(&recs, "FB");
    let syncs = with_tag(&recs, "SYNC");
    assert_eq!((fb.len(), syncs.len()), (1, 1), "serial:\n{serial}");
    let at_sync = at_sync.expect("the host saw the guest's SYNC");
    assert!(
        !at_sync.in_guest_bug,
        "the device is out of its error state once the driver drew; {stats:?}\nserial:\n{serial}"
    );
    assert_eq!(
        (u64::from(at_sync.width), u64::from(at_sync.height)),
        (fb[0].num("width"), fb[0].num("height")),
        "screendump size vs /dev/fb0; serial:\n{serial}"
    );
    assert_eq!(
        at_sync.sha256,
        fb[0].get("sha256"),
        "after the reset and the driver load the screendump differs from the guest's \
         /dev/fb0; serial:\n{serial}"
    );
}

#[test]
fn hostile_guest_garbage_is_survived_and_a_reset_brings_the_screen_back() {
    let _g = serial_guard();
    let seeds = std::env::var("SAFFRON_HOSTILE_SEEDS").unwrap_or_else(|_| DEFAULT_SEEDS.into());
    let rounds = std::env::var("SAFFRON_HOSTILE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    for seed in seeds.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        hostile_run(seed, rounds);
    }
}
