//! Runs the real binary against a fake `/sys/bus/pci/devices` made of plain files.
//!
//! A regular file behaves like a sysfs BAR for `mmap`, `pread` and `pwrite`, so this checks on
//! the host everything except the device's reactions: device lookup, config parsing, BAR bounds,
//! the bytes `bar-rw`/`log`/`bench-memcpy` put into BAR0, the output formats and exit codes.
//! It also carries the host-side reference implementation of the `bar-rw` pattern.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const SLOT: &str = "0000:00:03.0";
const BAR0_SIZE: u64 = 64 << 20;
const RAM_HEADER: u64 = BAR0_SIZE - 8192;

/// The host's copy of the pattern: xorshift32 13/17/5, LE words, seed 0 → 0x9E3779B9.
fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut s = if seed == 0 { 0x9E37_79B9 } else { seed };
    let mut out = Vec::with_capacity(len + 4);
    while out.len() < len {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A fake sysfs tree with a decoy function and the QXL device, removed on drop.
struct FakeSysfs {
    root: PathBuf,
}

impl FakeSysfs {
    fn new(name: &str, command: u16, status: u16) -> Self {
        let root =
            std::env::temp_dir().join(format!("saffron-guest-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let decoy = root.join("0000:00:02.0");
        fs::create_dir_all(&decoy).unwrap();
        fs::write(decoy.join("vendor"), "0x8086\n").unwrap();
        fs::write(decoy.join("device"), "0x1237\n").unwrap();

        let dev = root.join(SLOT);
        fs::create_dir_all(&dev).unwrap();
        fs::write(dev.join("vendor"), "0x1b36\n").unwrap();
        fs::write(dev.join("device"), "0x0100\n").unwrap();
        fs::write(dev.join("irq"), "11\n").unwrap();
        fs::write(dev.join("enable"), "0\n").unwrap();
        let mut config = vec![0u8; 256];
        config[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        config[2..4].copy_from_slice(&0x0100u16.to_le_bytes());
        config[4..6].copy_from_slice(&command.to_le_bytes());
        config[6..8].copy_from_slice(&status.to_le_bytes());
        config[8] = 5; // revision
        config[9..12].copy_from_slice(&[0x00, 0x00, 0x03]); // prog-if, subclass, class
        config[0x2c..0x2e].copy_from_slice(&0x1af4u16.to_le_bytes());
        config[0x2e..0x30].copy_from_slice(&0x1100u16.to_le_bytes());
        config[0x3d] = 1;
        fs::write(dev.join("config"), config).unwrap();
        let zero = "0x0000000000000000 0x0000000000000000 0x0000000000000000\n";
        let resource = [
            "0x00000000f4000000 0x00000000f7ffffff 0x0000000000040200\n",
            "0x00000000f8000000 0x00000000fbffffff 0x0000000000040200\n",
            "0x00000000fc000000 0x00000000fc001fff 0x0000000000040200\n",
            "0x000000000000c000 0x000000000000c01f 0x0000000000040101\n",
            zero,
            zero,
            "0x00000000fc010000 0x00000000fc01ffff 0x0000000000046200\n",
        ]
        .concat();
        fs::write(dev.join("resource"), resource).unwrap();
        let bar0 = fs::File::create(dev.join("resource0")).unwrap();
        bar0.set_len(BAR0_SIZE).unwrap();
        fs::write(dev.join("resource3"), [0xEEu8; 32]).unwrap();
        FakeSysfs { root }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.root.join(SLOT).join(name)
    }

    fn bar0(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        fs::File::open(self.file("resource0"))
            .unwrap()
            .read_exact_at(&mut buf, offset)
            .unwrap();
        buf
    }

    /// Runs the binary; returns (exit code, stdout).
    fn run(&self, args: &[&str]) -> (i32, String) {
        run_in(&self.root, args)
    }
}

impl Drop for FakeSysfs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn run_in(root: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_saffron-guest"))
        .args(args)
        .env("SAFFRON_GUEST_SYSFS_PCI", root)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// The value of `key=` in a `SAFFRON-` line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(' ')
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

#[test]
fn find_prints_pci_and_bar_lines() {
    let fake = FakeSysfs::new("find", 0x0003, 0x0000);
    let (code, out) = fake.run(&["find"]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "SAFFRON-PCI slot=0000:00:03.0 vendor=0x1b36 device=0x0100 class=0x030000 \
             revision=0x05 subsys_vendor=0x1af4 subsys_device=0x1100 irq=11 pin=1 \
             command=0x0003 status=0x0000 driver=none",
            "SAFFRON-BAR index=0 kind=mem32 size=67108864 prefetch=0 start=0xf4000000",
            "SAFFRON-BAR index=1 kind=mem32 size=67108864 prefetch=0 start=0xf8000000",
            "SAFFRON-BAR index=2 kind=mem32 size=8192 prefetch=0 start=0xfc000000",
            "SAFFRON-BAR index=3 kind=io size=32 prefetch=0 start=0xc000",
            "SAFFRON-BAR index=6 kind=rom size=65536 prefetch=1 start=0xfc010000",
        ]
    );
    // A bound driver is named after the symlink's target, as in sysfs.
    std::os::unix::fs::symlink("../../drivers/uio_pci_generic", fake.file("driver")).unwrap();
    let (_, out) = fake.run(&["find"]);
    assert!(
        out.lines()
            .next()
            .unwrap()
            .ends_with(" driver=uio_pci_generic"),
        "{out}"
    );
    // An explicit slot works; the decoy is refused.
    assert_eq!(fake.run(&["find", "--slot", SLOT]).0, 0);
    let (code, out) = fake.run(&["find", "--slot", "0000:00:02.0"]);
    assert_eq!(code, 1);
    assert!(out.starts_with("SAFFRON-ERROR cmd=find msg=slot 0000:00:02.0 is 8086:1237"));
}

#[test]
fn bar_rw_hashes_reads_and_writes_the_pattern() {
    let fake = FakeSysfs::new("barrw", 0x0003, 0x0000);
    let prefill: Vec<u8> = (0..0x1000u32).map(|i| (i * 7) as u8).collect();
    fs::OpenOptions::new()
        .write(true)
        .open(fake.file("resource0"))
        .unwrap()
        .write_all_at(&prefill, 0x10_0001)
        .unwrap();
    let (code, out) = fake.run(&[
        "bar-rw",
        "--read-off",
        "0x100001",
        "--read-len",
        "4096",
        "--write-off",
        "0x200003",
        "--write-len",
        "0x1003",
        "--seed",
        "0x5AFF0001",
    ]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        lines[0],
        format!(
            "SAFFRON-BAR-RW read_off=0x100001 read_len=0x1000 read_sha256={}",
            sha256_hex(&prefill)
        )
    );
    let expected = pattern(0x5AFF_0001, 0x1003);
    assert_eq!(fake.bar0(0x20_0003, 0x1003), expected);
    assert_eq!(
        lines[1],
        format!(
            "SAFFRON-BAR-RW write_off=0x200003 write_len=0x1003 seed=0x5aff0001 \
             write_sha256={} readback=ok",
            sha256_hex(&expected)
        )
    );
    // Past the end of BAR0 is refused before anything is written.
    let (code, out) = fake.run(&[
        "bar-rw",
        "--read-off",
        "0",
        "--read-len",
        "0",
        "--write-off",
        "0x3ffffff",
        "--write-len",
        "2",
        "--seed",
        "1",
    ]);
    assert_eq!(code, 1);
    assert!(out.starts_with("SAFFRON-ERROR cmd=bar-rw msg="), "{out}");
}

#[test]
fn log_writes_nul_terminated_text_into_the_ram_header() {
    let fake = FakeSysfs::new("log", 0x0003, 0x0000);
    let (code, out) = fake.run(&["log", "--text", "hello from the guest", "--count", "3"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "SAFFRON-LOG count=3 len=20\n");
    assert_eq!(fake.bar0(RAM_HEADER + 12, 21), b"hello from the guest\0");
    // Port 7 was written with 0, the other ports untouched.
    let ports = fs::read(fake.file("resource3")).unwrap();
    assert_eq!(ports[7], 0);
    assert!(ports.iter().enumerate().all(|(i, &b)| i == 7 || b == 0xEE));

    let long = "x".repeat(4096);
    let (code, out) = fake.run(&["log", "--text", &long]);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("SAFFRON-ERROR cmd=log msg=log_buf"),
        "{out}"
    );
}

#[test]
fn benches_print_figures_and_leave_bar0_as_it_was() {
    let fake = FakeSysfs::new("bench", 0x0003, 0x0000);
    let before = pattern(0x1234_5678, 16 << 20);
    fs::OpenOptions::new()
        .write(true)
        .open(fake.file("resource0"))
        .unwrap()
        .write_all_at(&before, 0)
        .unwrap();
    let (code, out) = fake.run(&["bench-memcpy", "--mib", "8"]);
    assert_eq!(code, 0, "{out}");
    let line = out.trim_end();
    assert!(
        line.starts_with("SAFFRON-BENCH memcpy_bar0_mibs="),
        "{line}"
    );
    assert!(field(line, "memcpy_bar0_mibs").parse::<f64>().unwrap() > 0.0);
    assert!(field(line, "memcpy_ram_mibs").parse::<f64>().unwrap() > 0.0);
    assert_eq!(field(line, "mib"), "8");
    assert_eq!(field(line, "seed"), "0x5aff0002");
    // The copies went to BAR0 [0, 8 MiB) but the window was restored afterwards.
    assert!(fake.bar0(0, 16 << 20) == before);
    let (code, out) = fake.run(&["bench-memcpy", "--mib", "6"]);
    assert_eq!(code, 2, "{out}");

    let (code, out) = fake.run(&["bench-ioport", "--count", "50"]);
    assert_eq!(code, 0, "{out}");
    let line = out.trim_end();
    assert!(field(line, "ioport_writes_per_s").parse::<f64>().unwrap() > 0.0);
    assert_eq!(field(line, "count"), "50");
    assert_eq!(fake.bar0(RAM_HEADER + 12, 1), [0]);
}

#[test]
fn irq_never_hangs_and_reports_a_line_that_stays_low() {
    // A regular file as /dev/uio0 is always "readable", and the fake status register never
    // shows the line asserted, so every round is delivered but none asserted.
    let fake = FakeSysfs::new("irq", 0x0003, 0x0000);
    let uio = fake.root.join("uio0");
    fs::write(&uio, vec![0u8; 4096]).unwrap();
    let uio = uio.to_str().unwrap();
    let (code, out) = fake.run(&["irq", "--count", "2", "--uio", uio, "--timeout-ms", "20"]);
    assert_eq!(code, 1, "{out}");
    let mut lines = out.lines();
    let line = lines.next().unwrap();
    assert!(line.starts_with("SAFFRON-IRQ requested=2 delivered=2 asserted=0 lowered=2 "));
    assert!(field(line, "median_us").parse::<u64>().is_ok());
    assert!(field(line, "max_us").parse::<u64>().is_ok());
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("SAFFRON-ERROR cmd=irq msg=")
    );
    assert_eq!(fake.bar0(RAM_HEADER + 4, 8), [0u8; 8]);
}

#[test]
fn errors_are_one_line_with_distinct_exit_codes() {
    let fake = FakeSysfs::new("errors", 0x0000, 0x0000);
    // Option mistakes are reported as such (exit 2), before looking for the device.
    let (code, out) = fake.run(&["find", "--bogus", "1"]);
    assert_eq!(
        (code, out.as_str()),
        (
            2,
            "SAFFRON-ERROR cmd=find msg=usage: unknown option --bogus\n"
        )
    );
    let (code, out) = fake.run(&[]);
    assert_eq!(code, 2);
    assert!(out.starts_with("SAFFRON-ERROR cmd=none msg=usage: "));
    // Decoding stays off although `enable` was written: refused, not silently read as 0xff.
    let (code, out) = fake.run(&["log", "--text", "x"]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "SAFFRON-ERROR cmd=log msg=slot 0000:00:03.0: memory decoding is off (command=0x0000)\n"
    );
    assert_eq!(fs::read_to_string(fake.file("enable")).unwrap(), "1");
    // No device at all.
    let empty = fake.root.join("empty");
    fs::create_dir_all(&empty).unwrap();
    let (code, out) = run_in(&empty, &["find"]);
    assert_eq!(code, 1);
    assert!(out.starts_with("SAFFRON-ERROR cmd=find msg=no PCI device 1b36:0100 under "));
}
