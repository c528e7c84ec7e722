//! Harness for real-guest tests: boots the test guest (built by `ci/build-guest`) under the
//! QEMU that `ci/qemu` provides, with our device attached over vfio-user in this process, and
//! reads back what the guest printed on its serial console.
//!
//! The guest reports through lines of the form `SAFFRON-<TAG> key=value ...`, printed by the
//! `saffron-guest` tool and the guest's `/init`.
//!
//! With `SAFFRON_RECORD_DIR=DIR` in the environment every guest run records its ring commands
//! (`--record-commands`) and its Spice clients' bytes (`--record-spice`) into DIR; that is how
//! `ci/record-seeds` turns real-guest runs into fuzz seeds. Nothing is recorded otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use saffron_device::QxlConfig;
use saffron_vmm::intx::IrqMode;
use saffron_vmm::qemu::{Accel, Serial};
use saffron_vmm::run::{RunOptions, Vm};
use saffron_vmm::spice::SpiceOptions;
use saffron_vmm::vfio_user::DeviceServer;
use sha2::{Digest, Sha256};

pub mod webdriver;
pub mod xhost;

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Which Debian kernel the test guest runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestKernel {
    /// Debian 12's 6.1 (the default guest, `ci/build-guest`).
    Bookworm,
    /// Debian 13's 6.12 (`ci/build-guest --kernel trixie`).
    Trixie,
}

/// What the guest's initramfs holds besides busybox, the modules and the guest tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestVariant {
    /// Nothing more (`ci/build-guest`).
    Busybox,
    /// X.org with its qxl driver, xterm and x11-apps (`ci/build-guest --xorg`; bookworm only).
    Xorg,
}

/// The guest kernel and initrd. Panics with the command to run when they are missing: a
/// real-guest test never skips.
pub fn guest_image(kernel: GuestKernel) -> (PathBuf, PathBuf) {
    guest_image_of(kernel, GuestVariant::Busybox)
}

/// Like [`guest_image`], for a variant of the guest.
pub fn guest_image_of(kernel: GuestKernel, variant: GuestVariant) -> (PathBuf, PathBuf) {
    let (default_dir, build) = match (kernel, variant) {
        (GuestKernel::Bookworm, GuestVariant::Busybox) => ("target/guest", "ci/build-guest"),
        (GuestKernel::Trixie, GuestVariant::Busybox) => {
            ("target/guest-trixie", "ci/build-guest --kernel trixie")
        }
        (GuestKernel::Bookworm, GuestVariant::Xorg) => {
            ("target/guest-xorg", "ci/build-guest --xorg")
        }
        (GuestKernel::Trixie, GuestVariant::Xorg) => {
            panic!("the X.org guest is bookworm only")
        }
    };
    let dir = repo_root().join(default_dir);
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initrd.img");
    assert!(
        kernel.is_file() && initrd.is_file(),
        "test guest missing in {}: run {build} first",
        dir.display()
    );
    (kernel, initrd)
}

/// The QEMU that ci/qemu installs (or `$SAFFRON_QEMU`).
pub fn qemu_binary() -> PathBuf {
    if let Some(q) = std::env::var_os("SAFFRON_QEMU") {
        return PathBuf::from(q);
    }
    let q = repo_root().join("target/qemu/bin/qemu-system-x86_64");
    assert!(
        q.is_file(),
        "QEMU missing at {}: run ci/qemu first",
        q.display()
    );
    q
}

/// Guests share two cores: boot one at a time so each gets predictable time.
pub fn serial_guard() -> MutexGuard<'static, ()> {
    static GUARD: Mutex<()> = Mutex::new(());
    GUARD.lock().unwrap_or_else(|e| e.into_inner())
}

/// The reference pattern the guest tool writes: xorshift32 words, little endian.
pub fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut state = if seed == 0 { 0x9E37_79B9 } else { seed };
    let mut out = Vec::with_capacity(len + 4);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The chirp `saffron-guest sound-play` plays (a copy of tests/guest/src/chirp.rs, integer
/// arithmetic only so both sides make the same bytes): `frames` frames of S16_LE stereo at
/// 48 kHz, 100 Hz rising linearly to 10 kHz, left the wave and right its negation.
pub fn chirp(frames: u32) -> Vec<u8> {
    const RATE_MHZ: u64 = 48_000 * 1000;
    const F0_MHZ: u64 = 100_000;
    const F1_MHZ: u64 = 10_000_000;
    let mut out = Vec::with_capacity(frames as usize * 4);
    let mut phase: u32 = 0;
    let n_max = u64::from(frames.max(1));
    for n in 0..u64::from(frames) {
        let f = F0_MHZ + (F1_MHZ - F0_MHZ) * n / n_max;
        let step = ((f << 32) / RATE_MHZ) as u32;
        phase = phase.wrapping_add(step);
        let x = i64::from((phase as i32) >> 16);
        let y = (x * (32768 - x.abs())) >> 14;
        let s = y as i16;
        out.extend_from_slice(&s.to_le_bytes());
        out.extend_from_slice(&s.wrapping_neg().to_le_bytes());
    }
    out
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One `SAFFRON-<TAG> k=v ...` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The part after `SAFFRON-`, e.g. `PCI`.
    pub tag: String,
    /// The fields.
    pub fields: BTreeMap<String, String>,
}

impl Record {
    /// A field, panicking with the record when missing (tests want a clear failure).
    pub fn get(&self, key: &str) -> &str {
        self.fields
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("field {key} missing in {self:?}"))
    }

    /// A numeric field (decimal or 0x-hex).
    pub fn num(&self, key: &str) -> u64 {
        let v = self.get(key);
        let parsed = match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => v.parse(),
        };
        parsed.unwrap_or_else(|_| panic!("field {key}={v} is not a number"))
    }
}

/// Every `SAFFRON-` record in the serial output.
pub fn records(serial: &str) -> Vec<Record> {
    serial
        .lines()
        .filter_map(|l| {
            let start = l.find("SAFFRON-")?;
            let mut words = l[start + "SAFFRON-".len()..].split_whitespace();
            let tag = words.next()?.trim_end_matches(':').to_string();
            let fields = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Some(Record { tag, fields })
        })
        .collect()
}

/// The records with `tag`.
pub fn with_tag<'a>(recs: &'a [Record], tag: &str) -> Vec<&'a Record> {
    recs.iter().filter(|r| r.tag == tag).collect()
}

/// How to boot a test guest.
#[derive(Clone, Debug)]
pub struct GuestOptions {
    /// `saffron.workload=` value.
    pub workload: String,
    /// Interrupt mode.
    pub irq_mode: IrqMode,
    /// Arguments for the workload (`saffron.args=`).
    pub args: Vec<String>,
    /// Extra kernel parameters.
    pub extra_cmdline: String,
    /// BAR sizes.
    pub qxl: QxlConfig,
    /// Give up after this long.
    pub timeout: Duration,
    /// The guest kernel.
    pub kernel: GuestKernel,
    /// The guest's initramfs.
    pub variant: GuestVariant,
    /// The Spice server, if the test wants one.
    pub spice: SpiceOptions,
    /// The control socket, if the test talks to it.
    pub api_socket: Option<PathBuf>,
    /// Give the guest the Spice agent's port (as `saffron run` does with Spice on); only
    /// matters with a Spice server.
    pub agent: bool,
    /// Gets every line of the serial console as it arrives (without `\r`, with its `\n`),
    /// for a test thread that must follow the guest while the guest runs (the boot functions
    /// only hand over the whole log at the end).
    pub serial_tap: Option<std::sync::mpsc::Sender<String>>,
    /// Give the guest the virtio-sound card (only the trixie kernel has its driver). Off by
    /// default, so that the other tests' QEMU command lines stay as they were.
    pub sound: bool,
    /// A QMP socket of QEMU's for the test itself (`saffron run --qmp`).
    pub qmp: Option<PathBuf>,
}

impl GuestOptions {
    /// Defaults for `workload`: polled interrupts (the TCG rig), default BARs, 10 minutes.
    pub fn new(workload: &str) -> Self {
        GuestOptions {
            workload: workload.into(),
            irq_mode: IrqMode::Polled,
            args: Vec::new(),
            extra_cmdline: String::new(),
            qxl: QxlConfig::default(),
            timeout: Duration::from_secs(600),
            kernel: GuestKernel::Bookworm,
            variant: GuestVariant::Busybox,
            spice: SpiceOptions::default(),
            api_socket: None,
            agent: true,
            serial_tap: None,
            sound: false,
            qmp: None,
        }
    }
}

/// A finished guest run.
pub struct GuestRun {
    /// Everything the guest printed on its serial port.
    pub serial: String,
    /// The VM, ended, with its device still inspectable.
    pub vm: Vm,
    /// Wall time from launch to the end of the guest.
    pub elapsed: Duration,
}

impl GuestRun {
    /// The guest's `SAFFRON-` records.
    pub fn records(&self) -> Vec<Record> {
        records(&self.serial)
    }

    /// Panics unless the workload ran and exited 0, showing the serial log.
    pub fn assert_workload_ok(&self, workload: &str) {
        let recs = self.records();
        let end = recs
            .iter()
            .find(|r| r.tag == "GUEST" && r.fields.contains_key("status"));
        match end {
            Some(r) if r.get("status") == "0" => {}
            _ => panic!(
                "workload {workload} did not finish with status 0; serial:\n{}",
                self.serial
            ),
        }
    }
}

/// Boots the test guest with `opts`, with `prepare` run on the device before QEMU starts
/// (e.g. to put a pattern into BAR memory), and waits for it to power off.
pub fn boot_guest(opts: &GuestOptions, prepare: impl FnOnce(&DeviceServer)) -> GuestRun {
    boot_guest_with_sync(opts, prepare, |_, _| {})
}

/// Like [`boot_guest`], talking to the guest's console: when the guest prints
/// `SAFFRON-SYNC ...` and waits, `on_sync` runs (typically a screendump while the guest holds
/// still) and then the guest is told to go on with a line `go`.
pub fn boot_guest_with_sync(
    opts: &GuestOptions,
    prepare: impl FnOnce(&DeviceServer),
    mut on_sync: impl FnMut(&Record, &Vm),
) -> GuestRun {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;

    let (kernel, initrd) = guest_image_of(opts.kernel, opts.variant);
    let dir = std::env::temp_dir().join(format!(
        "saffron-test-{}-{}-{}",
        std::process::id(),
        opts.workload,
        NEXT_RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test run directory");
    let console = dir.join("console.sock");
    let record = std::env::var_os("SAFFRON_RECORD_DIR").map(PathBuf::from);
    let mut spice = opts.spice.clone();
    if spice.record_dir.is_none() {
        spice.record_dir = record.clone();
    }
    let run = RunOptions {
        kernel,
        initrd: Some(initrd),
        cmdline: format!(
            "quiet panic=-1 saffron.workload={} saffron.args={} {}",
            opts.workload,
            opts.args.join(","),
            opts.extra_cmdline
        ),
        memory: 512 << 20,
        smp: 1,
        serial: Serial::Socket(console.clone()),
        api_socket: opts.api_socket.clone(),
        user_qmp: opts.qmp.clone(),
        qemu: Some(qemu_binary()),
        accel: Some(Accel::Tcg),
        irq_mode: Some(opts.irq_mode),
        qxl: opts.qxl,
        spice,
        record_commands: record,
        agent: opts.agent,
        sound: opts.sound,
    };
    let started = Instant::now();
    let deadline = started + opts.timeout;
    let mut vm =
        Vm::launch_with(&run, prepare).unwrap_or_else(|e| panic!("cannot launch the guest: {e}"));
    // QEMU creates the socket early and waits for us before it starts the guest.
    let stream = loop {
        match UnixStream::connect(&console) {
            Ok(s) => break s,
            Err(_) if Instant::now() < started + Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!(
                "cannot connect to the guest console {}: {e}",
                console.display()
            ),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("socket timeout");
    let mut writer = stream.try_clone().expect("console writer");
    let mut reader = BufReader::new(stream);
    let mut serial = String::new();
    let mut line = Vec::new();
    loop {
        if Instant::now() > deadline {
            vm.kill();
            panic!(
                "guest still running after {:?}; serial:\n{serial}",
                opts.timeout
            );
        }
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) if line.ends_with(b"\n") => {
                let text = String::from_utf8_lossy(&line).replace('\r', "");
                serial.push_str(&text);
                if let Some(tap) = &opts.serial_tap {
                    // A test thread that has finished no longer listens: that is fine.
                    let _ = tap.send(text.clone());
                }
                if let Some(rec) = records(&text).into_iter().find(|r| r.tag == "SYNC") {
                    on_sync(&rec, &vm);
                    let _ = writer.write_all(b"go\n");
                }
                line.clear();
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if matches!(vm.wait_timeout(Some(Duration::ZERO)), Ok(Some(_))) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    serial.push_str(&String::from_utf8_lossy(&line));
    let left = deadline.saturating_duration_since(Instant::now());
    let status = vm.wait_timeout(Some(left)).expect("waiting for QEMU");
    let _ = std::fs::remove_dir_all(&dir);
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("QEMU exited with {s}; serial:\n{serial}"),
        None => {
            vm.kill();
            panic!(
                "guest still running after {:?}; serial:\n{serial}",
                opts.timeout
            );
        }
    }
    GuestRun {
        serial,
        vm,
        elapsed: started.elapsed(),
    }
}

/// Sends one request to a control socket and returns its reply.
pub fn control_request(path: &Path, request: &serde_json::Value) -> serde_json::Value {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path)
        .unwrap_or_else(|e| panic!("control socket {}: {e}", path.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("socket timeout");
    writeln!(stream, "{request}").expect("control request");
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("control reply");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("control reply {line:?}: {e}"))
}

/// One spicy-screenshot per image compression mode: the mode, the picture's width, height and
/// sha256, and whether the forced codec was used (false also for the auto and off modes).
pub type ModeShot = (String, u32, u32, String, bool);

/// Takes a spicy-screenshot of `spice` under each of its image compression modes in turn
/// (switched as the control socket's `set_image_compression` does; each screenshot is a new
/// client, so it gets the whole screen in that mode). A forced codec must be what the client
/// got, or a raw bitmap where it would not have been smaller (noise): anything else panics.
/// The server's mode is left at the default.
pub fn screenshots_per_compression(
    spice: &saffron_server::ServerHandle,
    password: &str,
    out: &Path,
) -> Vec<ModeShot> {
    use saffron_server::Compression;
    let port = spice.local_addr().port();
    let mut shots = Vec::new();
    for mode in Compression::NAMES {
        spice.set_image_compression(mode.parse().expect("a mode name"));
        let before = spice.image_totals();
        let (w, h, rgb) =
            spicy_screenshot(port, password, out).unwrap_or_else(|e| panic!("with {mode}: {e}"));
        let after = spice.image_totals();
        let used = match *mode {
            "quic" => after.quic > before.quic,
            "lz" => after.lz > before.lz,
            "glz" => after.glz + after.zlib_glz > before.glz + before.zlib_glz,
            "lz4" => after.lz4 > before.lz4,
            _ => false,
        };
        let raw = after.raw > before.raw;
        assert!(
            used || raw || !mode.starts_with(['q', 'l', 'g']),
            "{mode} was not used: {before:?} -> {after:?}"
        );
        shots.push((mode.to_string(), w, h, sha256_hex(&rgb), used));
    }
    spice.set_image_compression(Compression::default());
    shots
}

/// Runs spicy-screenshot against `port` and returns the RGB bytes of the PPM it saved.
pub fn spicy_screenshot(
    port: u16,
    password: &str,
    out: &Path,
) -> Result<(u32, u32, Vec<u8>), String> {
    let _ = std::fs::remove_file(out);
    let status = Command::new("spicy-screenshot")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-w",
            password,
            "-o",
        ])
        .arg(out)
        .output()
        .map_err(|e| {
            format!("cannot run spicy-screenshot (apt-get install spice-client-gtk): {e}")
        })?;
    if !status.status.success() {
        return Err(format!(
            "spicy-screenshot failed: {}",
            String::from_utf8_lossy(&status.stderr)
        ));
    }
    let data = std::fs::read(out).map_err(|e| format!("no screenshot: {e}"))?;
    parse_ppm(&data)
}

/// A binary PPM (P6, maxval 255): width, height, RGB bytes.
pub fn parse_ppm(data: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while i < data.len() && data[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < data.len() && data[i] == b'#' {
            while i < data.len() && data[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        while i < data.len() && !data[i].is_ascii_whitespace() {
            i += 1;
        }
        if start == i {
            return Err("truncated PPM header".into());
        }
        fields.push(String::from_utf8_lossy(&data[start..i]).to_string());
    }
    if fields[0] != "P6" || fields[3] != "255" {
        return Err(format!("unexpected PPM header {fields:?}"));
    }
    let w: u32 = fields[1].parse().map_err(|_| "bad width")?;
    let h: u32 = fields[2].parse().map_err(|_| "bad height")?;
    let pixels = data.get(i + 1..).ok_or("no pixels")?.to_vec();
    if pixels.len() != (w * h * 3) as usize {
        return Err(format!("{} pixel bytes for {w}x{h}", pixels.len()));
    }
    Ok((w, h, pixels))
}

static NEXT_RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse() {
        let r = records(
            "junk\n[  1.0] SAFFRON-PCI slot=0000:00:03.0 vendor=0x1b36\nSAFFRON-GUEST: workload x end status=0\n",
        );
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].tag, "PCI");
        assert_eq!(r[0].num("vendor"), 0x1b36);
        assert_eq!(r[1].tag, "GUEST");
        assert_eq!(r[1].get("status"), "0");
    }

    #[test]
    fn chirp_matches_the_guest_tool() {
        // tests/guest/src/chirp.rs checks the same first frame.
        assert_eq!(&chirp(48_000)[..4], &[14, 1, 242, 254]);
        assert_eq!(chirp(10).len(), 40);
    }

    #[test]
    fn pattern_is_xorshift32() {
        let p = pattern(1, 8);
        assert_eq!(&p[..4], &270_369u32.to_le_bytes());
        assert_eq!(pattern(0, 4), pattern(0x9E37_79B9, 4));
        assert_eq!(pattern(7, 6).len(), 6);
    }
}
