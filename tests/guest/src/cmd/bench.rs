//! `bench-memcpy` and `bench-ioport`: rough throughput figures for the two guest→device paths
//! the QXL driver uses, to track regressions in the vfio-user mapping and port forwarding.

use std::time::Instant;

use crate::args::Options;
use crate::error::{Error, Result};
use crate::mmio::copy_to_volatile;
use crate::pattern;
use crate::qxl::{Qxl, port};

/// Size of one copy.
const CHUNK: usize = 4 << 20;
/// Destinations rotate through BAR0 [0, WINDOW): inside the default 16 MiB surface0 area, far
/// from the RAM header at the end of the BAR. The window is saved before and restored after, so
/// the benchmark does not destroy what earlier steps left there (rig.sh's `bar-rw` pattern at
/// 2 MiB, which the host checks after the guest has powered off).
const WINDOW: usize = 16 << 20;
/// Upper bound on `--mib` (a 64 GiB copy would take the TCG guest days).
const MAX_MIB: u64 = 65536;
/// Upper bound on `--count` for the port benchmark.
const MAX_PORT_WRITES: u64 = 100_000_000;
/// Seed of the source buffer.
const DEFAULT_SEED: u64 = 0x5AFF_0002;

/// Copies `mib` MiB from `src` into `dst` (a `WINDOW`-byte region) chunk by chunk, round-robin,
/// and returns MiB/s.
///
/// # Safety
///
/// `dst` must be valid for writes of `WINDOW` bytes and must not overlap `src`.
unsafe fn timed_copy(dst: *mut u8, src: &[u8], mib: u64) -> f64 {
    let chunks = mib * (1 << 20) / CHUNK as u64;
    let slots = WINDOW / CHUNK;
    let start = Instant::now();
    for i in 0..chunks {
        let off = (i as usize % slots) * CHUNK;
        // SAFETY: off + CHUNK <= WINDOW, which the caller guarantees is valid and disjoint.
        unsafe { copy_to_volatile(dst.add(off), src) };
    }
    mib_per_s(mib, start)
}

fn mib_per_s(mib: u64, start: Instant) -> f64 {
    let secs = start.elapsed().as_secs_f64();
    if secs > 0.0 { mib as f64 / secs } else { 0.0 }
}

/// Prints `SAFFRON-BENCH memcpy_bar0_mibs= memcpy_ram_mibs= mib= seed=`; BAR0 content is
/// unchanged afterwards.
///
/// Both directions use the same volatile 8-byte copy, so the ratio isolates the cost of the BAR
/// mapping rather than comparing two different memcpy implementations.
pub fn memcpy(mut opts: Options) -> Result<()> {
    let slot = opts.take("slot");
    let mib = opts.u64_or("mib", 32, MAX_MIB)?;
    let seed = opts.u64_or("seed", DEFAULT_SEED, u64::from(u32::MAX))?;
    opts.finish()?;
    if mib == 0 || !mib.is_multiple_of(4) {
        return Err(Error::Usage(format!(
            "--mib {mib} must be a positive multiple of 4 (the chunk size)"
        )));
    }
    let dev = super::find_device(slot)?;
    let qxl = Qxl::open(&dev)?;
    if qxl.header_offset() < WINDOW as u64 {
        return Err(Error::OutOfRange {
            what: "memcpy window below the RAM header",
            offset: 0,
            len: WINDOW as u64,
            size: qxl.header_offset(),
        });
    }
    // `seed` was bounded to u32 above.
    let src = pattern::pattern(seed as u32, CHUNK);
    let mut saved = vec![0u8; WINDOW];
    qxl.ram.read_bytes(0, &mut saved)?;
    let bar = qxl.ram.ptr_at(0, WINDOW)?;
    // SAFETY: `ptr_at` checked that BAR0 [0, WINDOW) is inside the live mapping, which is
    // device memory and so disjoint from `src`.
    let bar0_mibs = unsafe { timed_copy(bar, &src, mib) };
    qxl.ram.write_bytes(0, &saved)?;
    qxl.ram.sync()?;
    drop(saved);

    let mut ram = vec![0u8; WINDOW];
    // Fault the pages in first so the timing measures copying, not the kernel zeroing pages.
    ram.fill(0xff);
    // SAFETY: `ram` is a live WINDOW-byte buffer distinct from `src`.
    let ram_mibs = unsafe { timed_copy(ram.as_mut_ptr(), &src, mib) };
    std::hint::black_box(&ram);

    println!(
        "SAFFRON-BENCH memcpy_bar0_mibs={bar0_mibs:.2} memcpy_ram_mibs={ram_mibs:.2} mib={mib} \
         seed={seed:#x}"
    );
    Ok(())
}

/// Prints `SAFFRON-BENCH ioport_writes_per_s= count=` for `count` writes to the LOG port.
pub fn ioport(mut opts: Options) -> Result<()> {
    let slot = opts.take("slot");
    let count = opts.u64_or("count", 2000, MAX_PORT_WRITES)?;
    opts.finish()?;
    let dev = super::find_device(slot)?;
    let qxl = Qxl::open(&dev)?;
    // An empty string, so the device has nothing to print and we time the port path alone.
    qxl.set_log_text(b"")?;
    let start = Instant::now();
    for _ in 0..count {
        qxl.out(port::LOG, 0)?;
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = if secs > 0.0 { count as f64 / secs } else { 0.0 };
    println!("SAFFRON-BENCH ioport_writes_per_s={rate:.1} count={count}");
    Ok(())
}
