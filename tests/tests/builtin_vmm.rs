//! `saffron run --vmm builtin` on this machine's KVM, with the freestanding test guest of
//! tests/kvm-guest (built here with gcc and ld): the VGA text it writes is what a screendump
//! and spicy-screenshot show (720x400); after it brings QXL up and draws through the command
//! ring, the screendump is its picture; after it resets the device, the VGA text again. A
//! hostile build of the guest throws random values at every register and window and the VMM
//! stays up and powers off cleanly.
//!
//! KVM is required: without /dev/kvm these tests fail and say so (they never pass silently).

use std::mem::offset_of;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use saffron_ring::abi::*;
use saffron_tests::{control_request, repo_root, spicy_screenshot};
use serde_json::json;

/// Where the guest images and the run's files go.
fn work_dir(name: &str) -> PathBuf {
    let dir = repo_root().join("target/kvm-guest").join(name);
    std::fs::create_dir_all(&dir).expect("work directory");
    dir
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Which build of the test guest.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// Waits for the QXL interrupt by watching its pending bit (runs on PVM).
    Polled,
    /// Takes the QXL interrupt through its IDT, LAPIC and IOAPIC (hardware KVM).
    RealIrq,
    /// Random values at every register and window.
    Hostile,
}

/// Builds the test guest as a flat binary.
fn build_guest(variant: Variant) -> PathBuf {
    let src = repo_root().join("tests/kvm-guest");
    let (name, define) = match variant {
        Variant::Polled => ("guest", None),
        Variant::RealIrq => ("guest-irq", Some("-DREAL_IRQ")),
        Variant::Hostile => ("hostile", Some("-DHOSTILE")),
    };
    let dir = work_dir("build");
    let (obj, elf, bin) = (
        dir.join(format!("{name}.o")),
        dir.join(format!("{name}.elf")),
        dir.join(format!("{name}.bin")),
    );
    let mut cc = Command::new("gcc");
    cc.args([
        "-O2",
        "-ffreestanding",
        "-fno-pic",
        "-fno-pie",
        "-nostdlib",
        "-mno-red-zone",
        "-mgeneral-regs-only",
        "-fno-stack-protector",
        "-fno-asynchronous-unwind-tables",
        "-fno-builtin",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-Wno-unused-function",
        "-c",
    ]);
    cc.args(define);
    run(cc.arg(src.join("guest.c")).arg("-o").arg(&obj));
    run(Command::new("ld")
        .args([
            "-nostdlib",
            "-static",
            "-no-pie",
            "--no-warn-rwx-segments",
            "-T",
        ])
        .arg(src.join("guest.ld"))
        .arg("-o")
        .arg(&elf)
        .arg(&obj));
    run(Command::new("objcopy")
        .args(["-O", "binary"])
        .arg(&elf)
        .arg(&bin));
    bin
}

/// The `saffron` binary of this build (built now if needed).
fn saffron_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo).current_dir(repo_root()).args([
        "build",
        "--quiet",
        "-p",
        "saffron-vmm",
        "--bin",
        "saffron",
    ]));
    // This test runs from target/<profile>/deps.
    let exe = std::env::current_exe().expect("test binary path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    profile.join("saffron")
}

fn need_kvm() {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        panic!("the built-in VMM needs /dev/kvm, which this machine does not give us: {e}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A `saffron run --vmm builtin` process, killed on drop.
struct BuiltinRun {
    child: Child,
    serial: PathBuf,
    api: PathBuf,
    log: PathBuf,
    spice_port: u16,
    password: String,
}

impl BuiltinRun {
    fn start(name: &str, program: &Path) -> Self {
        need_kvm();
        let dir = work_dir(name);
        let serial = dir.join("serial.txt");
        let api = dir.join("api.sock");
        let log = dir.join("saffron.log");
        let pw = dir.join("password");
        let password = "kvm-guest".to_string();
        std::fs::write(&pw, &password).expect("password file");
        let _ = std::fs::remove_file(&serial);
        let spice_port = free_port();
        let child = Command::new(saffron_binary())
            .args(["run", "--vmm", "builtin", "--memory", "64M", "--kernel"])
            .arg(program)
            .arg("--serial")
            .arg(&serial)
            .arg("--api-socket")
            .arg(&api)
            .arg("--spice")
            .arg(format!("127.0.0.1:{spice_port}"))
            .arg("--spice-password-file")
            .arg(&pw)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("saffron");
        BuiltinRun {
            child,
            serial,
            api,
            log,
            spice_port,
            password,
        }
    }

    fn serial(&self) -> String {
        std::fs::read_to_string(&self.serial).unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `SAFFRON-GUEST <what>` on the serial console.
    fn wait_marker(&mut self, what: &str, timeout: Duration) {
        let line = format!("SAFFRON-GUEST {what}\n");
        let deadline = Instant::now() + timeout;
        loop {
            let serial = self.serial();
            if serial.contains(&line) {
                return;
            }
            assert!(
                !serial.contains("SAFFRON-GUEST FAIL"),
                "the guest failed:\n{serial}"
            );
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "saffron exited ({st}) before '{what}':\n{serial}\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no '{what}' within {timeout:?}:\n{serial}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The control socket's screendump, decoded.
    fn screendump(&self) -> (u32, u32, Vec<u8>) {
        self.try_screendump()
            .unwrap_or_else(|e| panic!("screendump: {e}"))
    }

    /// The screendump, or the control socket's error (e.g. nothing on screen yet).
    fn try_screendump(&self) -> Result<(u32, u32, Vec<u8>), String> {
        let path = self.api.with_extension("png");
        let _ = std::fs::remove_file(&path);
        let reply = control_request(
            &self.api,
            &json!({"cmd": "screendump", "path": path.to_str().expect("utf-8 path")}),
        );
        if reply["ok"] != json!(true) {
            return Err(reply.to_string());
        }
        let file = std::fs::File::open(&path).map_err(|e| format!("{reply}: {e}"))?;
        let mut reader = png::Decoder::new(std::io::BufReader::new(file))
            .read_info()
            .expect("a PNG");
        let mut buf = vec![0; reader.output_buffer_size().expect("PNG size")];
        let info = reader.next_frame(&mut buf).expect("PNG frame");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        Ok((info.width, info.height, buf))
    }
}

impl Drop for BuiltinRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// What the guest draws (tests/kvm-guest/guest.c).
const TEXT: &[u8] = b"SAFFRON BUILTIN VMM: VGA TEXT";
const TEXT_ROW: u32 = 2;
const TEXT_ATTR: u8 = 0x1e;

fn glyph_row(c: u8, r: u32) -> u8 {
    ((u32::from(c) * 7 + r * 29) as u8) ^ if r & 1 != 0 { 0x81 } else { 0x18 }
}

/// The EGA palette entry the guest loads at DAC index `i`, expanded to 8 bits as QEMU does.
fn dac(i: u8) -> [u8; 3] {
    let c = |lo: u8, hi: u8| ((i >> lo) & 1) * 0x2a + ((i >> hi) & 1) * 0x15;
    let x = |v: u8| (v << 2) | ((v & 1) << 1) | (v & 1);
    [x(c(2, 5)), x(c(1, 4)), x(c(0, 3))]
}

/// The attribute controller's palette the guest sets (colour index -> DAC index).
const AR: [u8; 16] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f,
];

/// The 720x400 text screen, with the cursor (lines 13-14 of its cell) drawn or not.
fn expected_vga(cursor: bool) -> Vec<u8> {
    let (w, h) = (720u32, 400u32);
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    let fg = dac(AR[usize::from(TEXT_ATTR & 0x0f)]);
    let bg = dac(AR[usize::from(TEXT_ATTR >> 4)]);
    let mut put = |x: u32, y: u32, c: [u8; 3]| {
        let i = ((y * w + x) * 3) as usize;
        rgb[i..i + 3].copy_from_slice(&c);
    };
    let mut cells: Vec<u8> = TEXT.to_vec();
    cells.push(b' ');
    for (col, &ch) in cells.iter().enumerate() {
        for r in 0..16 {
            let bits = glyph_row(ch, r);
            for dot in 0..9u32 {
                let on = dot < 8 && bits & (0x80 >> dot) != 0;
                let on = on || (cursor && col == TEXT.len() && (13..=14).contains(&r));
                put(
                    col as u32 * 9 + dot,
                    TEXT_ROW * 16 + r,
                    if on { fg } else { bg },
                );
            }
        }
    }
    rgb
}

/// The guest's second VBE picture (tests/kvm-guest's vbe_pixel), as RGB.
fn expected_vbe() -> Vec<u8> {
    let mut rgb = Vec::with_capacity(64 * 48 * 3);
    for y in 0..48u32 {
        for x in 0..64u32 {
            rgb.extend_from_slice(&[(x * 4) as u8, (y * 5) as u8, 0x40]);
        }
    }
    rgb
}

/// The guest's QXL picture: four quadrants and a yellow square.
fn expected_picture() -> Vec<u8> {
    let (w, h) = (640u32, 480u32);
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let c = if (270..370).contains(&x) && (190..290).contains(&y) {
                [0xff, 0xff, 0]
            } else {
                match (x < w / 2, y < h / 2) {
                    (true, true) => [0xff, 0, 0],
                    (false, true) => [0, 0xff, 0],
                    (true, false) => [0, 0, 0xff],
                    (false, false) => [0xff, 0xff, 0xff],
                }
            };
            rgb.extend_from_slice(&c);
        }
    }
    rgb
}

fn assert_vga(what: &str, shot: &(u32, u32, Vec<u8>)) {
    assert_eq!(
        (shot.0, shot.1),
        (720, 400),
        "{what}: 80x25 text of 9x16 cells"
    );
    let matches = [true, false].map(|c| shot.2 == expected_vga(c));
    assert!(
        matches.contains(&true),
        "{what}: not the guest's VGA text in either cursor phase ({} pixels differ from the visible-cursor picture)",
        shot.2
            .chunks(3)
            .zip(expected_vga(true).chunks(3))
            .filter(|(a, b)| a != b)
            .count()
    );
}

/// This machine's /dev/kvm is PVM (the kvm_pvm module): it runs small 64-bit programs but
/// cannot deliver interrupts to a guest that is not PVM-aware.
fn is_pvm_host() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

#[test]
fn vga_text_then_qxl_picture_then_vga_after_reset() {
    modes_test(Variant::Polled, "qxl-interrupt-pending");
}

#[test]
#[ignore = "needs hardware KVM: on a PVM host (kvm_pvm, as this CI's) interrupts cannot reach the IDT of a guest that is not PVM-aware and the guest triple-faults; run with --ignored on a machine with VT-x/AMD-V"]
fn real_intx_through_the_irqchip_on_hardware_kvm() {
    assert!(
        !is_pvm_host(),
        "this host's KVM is PVM (/sys/module/kvm_pvm): it cannot deliver the QXL interrupt to the test guest"
    );
    modes_test(Variant::RealIrq, "qxl-interrupt");
}

fn modes_test(variant: Variant, interrupt_marker: &str) {
    let guest = build_guest(variant);
    let mut vm = BuiltinRun::start("modes", &guest);
    vm.wait_marker("vga-text", Duration::from_secs(30));
    // The VGA refresh runs every 30 ms; the guest holds its text for seconds.
    std::thread::sleep(Duration::from_millis(200));
    assert_vga("VGA mode", &vm.screendump());

    // The VBE mode: its second picture is plain memory writes to BAR0, seen through KVM's
    // dirty log only (the guest holds it for seconds; the refresh runs every 30 ms).
    vm.wait_marker("vbe-second", Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(1);
    let want = expected_vbe();
    loop {
        let shot = vm.try_screendump();
        if shot
            .as_ref()
            .is_ok_and(|s| (s.0, s.1) == (64, 48) && s.2 == want)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the VBE framebuffer's second picture never showed: {:?}",
            shot.map(|s| (s.0, s.1, s.2.get(..6).map(<[u8]>::to_vec)))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    vm.wait_marker("vbe-off", Duration::from_secs(30));

    vm.wait_marker(interrupt_marker, Duration::from_secs(60));
    vm.wait_marker("qxl-picture", Duration::from_secs(5));
    let shot = vm.screendump();
    assert_eq!((shot.0, shot.1), (640, 480));
    assert!(
        shot.2 == expected_picture(),
        "native mode: not the guest's picture"
    );

    vm.wait_marker("done", Duration::from_secs(60));
    // Right after the reset nothing is on screen until the next VGA refresh (30 ms).
    let deadline = Instant::now() + Duration::from_secs(5);
    let shot = loop {
        match vm.try_screendump() {
            Ok(shot) if (shot.0, shot.1) == (720, 400) => break shot,
            other => assert!(
                Instant::now() < deadline,
                "no VGA picture after the reset: {:?}",
                other.map(|s| (s.0, s.1))
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_vga("after reset", &shot);
    let spicy = spicy_screenshot(
        vm.spice_port,
        &vm.password,
        &work_dir("modes").join("spicy.ppm"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_vga("spicy-screenshot", &spicy);

    let reply = control_request(&vm.api, &json!({"cmd": "quit"}));
    assert_eq!(reply["ok"], json!(true), "{reply}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = vm.child.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "saffron did not quit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}: {}", vm.log());
}

#[test]
fn hostile_guest_cannot_crash_the_builtin_vmm() {
    let guest = build_guest(Variant::Hostile);
    let mut vm = BuiltinRun::start("hostile", &guest);
    vm.wait_marker("hostile-done", Duration::from_secs(120));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = vm.child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "no power-off after the hostile run"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = vm.log();
    assert!(status.success(), "saffron ended with {status}:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// tests/kvm-guest/qxl_abi.h against saffron-ring's ABI declarations.
#[test]
fn guest_abi_header_matches() {
    let header =
        std::fs::read_to_string(repo_root().join("tests/kvm-guest/qxl_abi.h")).expect("qxl_abi.h");
    let want: Vec<(&str, u64)> = vec![
        (
            "ROM_DRAW_AREA_OFFSET",
            offset_of!(QXLRom, draw_area_offset) as u64,
        ),
        (
            "ROM_RAM_HEADER_OFFSET",
            offset_of!(QXLRom, ram_header_offset) as u64,
        ),
        ("ROM_SLOTS_START", offset_of!(QXLRom, slots_start) as u64),
        (
            "ROM_SLOT_GENERATION",
            offset_of!(QXLRom, slot_generation) as u64,
        ),
        ("RAM_INT_PENDING", offset_of!(QXLRam, int_pending) as u64),
        ("RAM_INT_MASK", offset_of!(QXLRam, int_mask) as u64),
        ("RAM_CMD_RING", offset_of!(QXLRam, cmd_ring) as u64),
        ("RAM_UPDATE_AREA", offset_of!(QXLRam, update_area) as u64),
        (
            "RAM_UPDATE_SURFACE",
            offset_of!(QXLRam, update_surface) as u64,
        ),
        ("RAM_MEM_SLOT", offset_of!(QXLRam, mem_slot) as u64),
        (
            "RAM_CREATE_SURFACE",
            offset_of!(QXLRam, create_surface) as u64,
        ),
        ("RING_PROD", offset_of!(QXLRingHeader, prod) as u64),
        (
            "RING_NOTIFY_ON_PROD",
            offset_of!(QXLRingHeader, notify_on_prod) as u64,
        ),
        ("RING_CONS", offset_of!(QXLRingHeader, cons) as u64),
        ("RING_ITEMS", offset_of!(QXLCommandRing, items) as u64),
        ("CMD_RING_SIZE", u64::from(QXL_COMMAND_RING_SIZE)),
        ("CMD_SIZE", size_of::<QXLCommand>() as u64),
        ("SC_WIDTH", offset_of!(QXLSurfaceCreate, width) as u64),
        ("SC_HEIGHT", offset_of!(QXLSurfaceCreate, height) as u64),
        ("SC_STRIDE", offset_of!(QXLSurfaceCreate, stride) as u64),
        ("SC_FORMAT", offset_of!(QXLSurfaceCreate, format) as u64),
        ("SC_MEM", offset_of!(QXLSurfaceCreate, mem) as u64),
        (
            "DRAWABLE_SURFACE_ID",
            offset_of!(QXLDrawable, surface_id) as u64,
        ),
        ("DRAWABLE_EFFECT", offset_of!(QXLDrawable, effect) as u64),
        ("DRAWABLE_TYPE", offset_of!(QXLDrawable, type_) as u64),
        ("DRAWABLE_BBOX", offset_of!(QXLDrawable, bbox) as u64),
        ("DRAWABLE_CLIP", offset_of!(QXLDrawable, clip) as u64),
        (
            "DRAWABLE_SURFACES_DEST",
            offset_of!(QXLDrawable, surfaces_dest) as u64,
        ),
        ("DRAWABLE_U", offset_of!(QXLDrawable, u) as u64),
        ("DRAWABLE_SIZE", size_of::<QXLDrawable>() as u64),
        ("FILL_ROP", offset_of!(QXLFill, rop_descriptor) as u64),
        ("BRUSH_COLOR", offset_of!(QXLBrush, u) as u64),
        ("QXL_DRAW_FILL", u64::from(QXL_DRAW_FILL)),
        ("QXL_EFFECT_OPAQUE", u64::from(QXL_EFFECT_OPAQUE)),
        ("BRUSH_TYPE_SOLID", u64::from(SPICE_BRUSH_TYPE_SOLID)),
        ("QXL_CMD_DRAW", u64::from(QXL_CMD_DRAW)),
        ("ROPD_OP_PUT", u64::from(SPICE_ROPD_OP_PUT)),
        ("SURFACE_FMT_32_XRGB", u64::from(SPICE_SURFACE_FMT_32_xRGB)),
        ("INTERRUPT_DISPLAY", u64::from(QXL_INTERRUPT_DISPLAY)),
        ("INTERRUPT_IO_CMD", u64::from(QXL_INTERRUPT_IO_CMD)),
        ("IO_NOTIFY_CMD", u64::from(QXL_IO_NOTIFY_CMD)),
        ("IO_UPDATE_IRQ", u64::from(QXL_IO_UPDATE_IRQ)),
        ("IO_RESET", u64::from(QXL_IO_RESET)),
        ("IO_MEMSLOT_ADD", u64::from(QXL_IO_MEMSLOT_ADD)),
        ("IO_CREATE_PRIMARY", u64::from(QXL_IO_CREATE_PRIMARY)),
        ("IO_UPDATE_AREA_ASYNC", u64::from(QXL_IO_UPDATE_AREA_ASYNC)),
    ];
    let defined: Vec<(String, u64)> = header
        .lines()
        .filter_map(|l| l.strip_prefix("#define "))
        .map(|l| {
            let (name, value) = l.split_once(' ').expect("#define NAME VALUE");
            (name.to_string(), value.trim().parse().expect("a number"))
        })
        .collect();
    assert_eq!(defined.len(), want.len(), "every define is checked");
    for (name, value) in want {
        let got = defined.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        assert_eq!(got, Some(value), "{name}");
    }
}
