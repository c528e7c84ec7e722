//! Starting QEMU as the VMM for `saffron run`: where to find it, which accelerator, and the
//! command line that attaches our device over vfio-user.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thiserror::Error;

use crate::intx::IrqMode;

/// Kernel parameters that make a guest find a polled interrupt: every shared handler runs on
/// each PIT tick (`irqpoll`; the LAPIC timer would bypass it, hence `nolapic_timer`), and the
/// tick keeps running when idle (`nohz=off`, else an idle guest waits up to half a second).
pub const POLLED_IRQ_CMDLINE: &str = "irqpoll nolapic_timer nohz=off";

/// Problems finding or starting QEMU.
#[derive(Debug, Error)]
pub enum QemuError {
    /// No QEMU binary was found.
    #[error(
        "no QEMU found: pass --qemu PATH or run ci/qemu (looked for {0}); QEMU ≥ 10.1 with vfio-user-pci is needed"
    )]
    NotFound(String),
    /// The binary does not run.
    #[error("cannot run {path}: {source}")]
    Exec {
        /// The binary.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The binary lacks the vfio-user client.
    #[error("{0} has no vfio-user-pci device (QEMU ≥ 10.1 is needed; ci/qemu provides one)")]
    NoVfioUser(PathBuf),
}

/// The accelerator QEMU runs the guest with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl Accel {
    /// KVM when `/dev/kvm` opens and the CPU advertises hardware virtualization (vmx/svm).
    /// A paravirtual KVM without them runs a stock kernel far too slowly to be useful.
    pub fn detect() -> Accel {
        let kvm_opens = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        let hw = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
            c.lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
        });
        if kvm_opens && hw {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    }

    /// The interrupt mode that works with this accelerator (see [`crate::intx`]).
    pub fn irq_mode(self) -> IrqMode {
        match self {
            Accel::Kvm => IrqMode::Intx,
            Accel::Tcg => IrqMode::Polled,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl std::str::FromStr for Accel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => Err(format!("unknown accelerator '{other}' (kvm, tcg)")),
        }
    }
}

/// Where the guest's serial port goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Serial {
    /// Our own stdin/stdout.
    Stdio,
    /// Appended to a file.
    File(PathBuf),
    /// A Unix socket QEMU listens on (`unix:PATH`); QEMU waits for one client before it
    /// starts the guest, so nothing the guest prints is lost. For programs that talk to the
    /// guest's console (tests).
    Socket(PathBuf),
}

impl std::str::FromStr for Serial {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" => Err("empty serial target".into()),
            "stdio" => Ok(Serial::Stdio),
            s if s.starts_with("unix:") => Ok(Serial::Socket(PathBuf::from(&s[5..]))),
            path => Ok(Serial::File(PathBuf::from(path))),
        }
    }
}

/// Parses a memory size such as `512M`, `1G`, `1048576K` or a plain byte count.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, shift) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 10),
        Some((i, 'M' | 'm')) => (&s[..i], 20),
        Some((i, 'G' | 'g')) => (&s[..i], 30),
        _ => (s, 0),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad size '{s}' (e.g. 512M, 2G)"))?;
    n.checked_mul(1 << shift)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("size '{s}' out of range"))
}

/// Finds QEMU: the explicit path, `$SAFFRON_QEMU`, the copy `ci/qemu` installs under the
/// build's `target/`, then `qemu-system-x86_64` on `$PATH`.
pub fn find(explicit: Option<&Path>) -> Result<PathBuf, QemuError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let mut tried = Vec::new();
    if let Some(p) = std::env::var_os("SAFFRON_QEMU") {
        return Ok(PathBuf::from(p));
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/saffron → target/qemu/bin/qemu-system-x86_64
        for anc in exe.ancestors().skip(1).take(3) {
            candidates.push(anc.join("qemu/bin/qemu-system-x86_64"));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            candidates.push(dir.join("qemu-system-x86_64"));
        }
    }
    for c in candidates {
        if c.is_file() {
            return Ok(c);
        }
        tried.push(c.display().to_string());
    }
    Err(QemuError::NotFound(tried.join(", ")))
}

/// Checks that `qemu` runs and has the vfio-user client device.
pub fn check_vfio_user(qemu: &Path) -> Result<(), QemuError> {
    let out = Command::new(qemu)
        .args(["-device", "help"])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| QemuError::Exec {
            path: qemu.to_path_buf(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("\"vfio-user-pci\"") || text.contains("vfio-user-pci") {
        Ok(())
    } else {
        Err(QemuError::NoVfioUser(qemu.to_path_buf()))
    }
}

/// Everything QEMU's command line is made from.
#[derive(Clone, Debug)]
pub struct QemuConfig {
    /// The binary.
    pub qemu: PathBuf,
    /// The accelerator.
    pub accel: Accel,
    /// Guest RAM in bytes.
    pub memory: u64,
    /// vCPUs.
    pub smp: u32,
    /// Kernel image.
    pub kernel: PathBuf,
    /// Initial ramdisk.
    pub initrd: Option<PathBuf>,
    /// Full kernel command line (rig parameters already added).
    pub cmdline: String,
    /// Serial port target.
    pub serial: Serial,
    /// Our device server's socket.
    pub device_socket: PathBuf,
    /// QMP socket, if any.
    pub qmp_socket: Option<PathBuf>,
    /// A second QMP socket, for the user.
    pub user_qmp_socket: Option<PathBuf>,
    /// Add an absolute pointer (virtio tablet) for the Spice client mouse mode.
    pub tablet: bool,
    /// The guest agent's socket (we listen): adds the virtio-serial port `com.redhat.spice.0`.
    pub agent_socket: Option<PathBuf>,
    /// The vhost-user sound backend's socket, if the guest gets a sound card.
    pub sound_socket: Option<PathBuf>,
}

impl QemuConfig {
    /// The arguments after the binary name.
    pub fn args(&self) -> Vec<String> {
        let mib = self.memory >> 20;
        let device = serde_json::json!({
            "driver": "vfio-user-pci",
            "socket": {"type": "unix", "path": self.device_socket.display().to_string()},
        });
        let mut a: Vec<String> = vec![
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-machine".into(),
            format!("q35,accel={},memory-backend=saffron-ram", self.accel.name()),
            // vfio-user needs guest RAM the device process could map: a shared memfd.
            "-object".into(),
            format!("memory-backend-memfd,id=saffron-ram,size={mib}M,share=on"),
            "-m".into(),
            format!("{mib}M"),
            "-smp".into(),
            self.smp.to_string(),
            "-display".into(),
            "none".into(),
            "-vga".into(),
            "none".into(),
            // A guest reboot ends the run like a power-off.
            "-no-reboot".into(),
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-append".into(),
            self.cmdline.clone(),
            "-serial".into(),
            match &self.serial {
                Serial::Stdio => "stdio".into(),
                Serial::File(p) => format!("file:{}", p.display()),
                Serial::Socket(_) => "chardev:saffron-serial".into(),
            },
            "-device".into(),
            device.to_string(),
        ];
        if let Serial::Socket(path) = &self.serial {
            a.push("-chardev".into());
            a.push(format!(
                "socket,id=saffron-serial,path={},server=on,wait=on",
                path.display()
            ));
        }
        if let Some(initrd) = &self.initrd {
            a.push("-initrd".into());
            a.push(initrd.display().to_string());
        }
        if self.tablet {
            a.push("-device".into());
            a.push("virtio-tablet-pci".into());
        }
        if let Some(qmp) = &self.qmp_socket {
            a.push("-qmp".into());
            a.push(format!("unix:{},server=on,wait=off", qmp.display()));
        }
        if let Some(qmp) = &self.user_qmp_socket {
            a.push("-qmp".into());
            a.push(format!("unix:{},server=on,wait=off", qmp.display()));
        }
        if let Some(agent) = &self.agent_socket {
            a.extend(crate::agent::qemu_args(agent));
        }
        if let Some(sound) = &self.sound_socket {
            a.extend(crate::sound::qemu_args(sound));
        }
        a
    }
}

/// Adds what the rig needs to the user's kernel command line: a serial console unless the
/// user chose one, and the polling parameters in polled interrupt mode.
pub fn rig_cmdline(user: &str, irq_mode: IrqMode) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !user.split_whitespace().any(|w| w.starts_with("console=")) {
        parts.push("console=ttyS0".into());
    }
    if !user.trim().is_empty() {
        parts.push(user.trim().to_string());
    }
    if irq_mode == IrqMode::Polled {
        for p in POLLED_IRQ_CMDLINE.split_whitespace() {
            if !user.split_whitespace().any(|w| w == p) {
                parts.push(p.to_string());
            }
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn cmdline_additions() {
        assert_eq!(
            rig_cmdline("quiet", IrqMode::Polled),
            "console=ttyS0 quiet irqpoll nolapic_timer nohz=off"
        );
        assert_eq!(rig_cmdline("console=hvc0", IrqMode::Intx), "console=hvc0");
        assert_eq!(
            rig_cmdline("irqpoll", IrqMode::Polled),
            "console=ttyS0 irqpoll nolapic_timer nohz=off"
        );
    }

    #[test]
    fn device_is_given_in_json() {
        let cfg = QemuConfig {
            qemu: "q".into(),
            accel: Accel::Tcg,
            memory: 512 << 20,
            smp: 1,
            kernel: "/k".into(),
            initrd: Some("/i".into()),
            cmdline: "console=ttyS0".into(),
            serial: Serial::Stdio,
            device_socket: "/tmp/s.sock".into(),
            qmp_socket: None,
            user_qmp_socket: None,
            tablet: false,
            agent_socket: None,
            sound_socket: None,
        };
        let args = cfg.args();
        let dev = args.iter().position(|a| a == "-device").unwrap();
        let v: serde_json::Value = serde_json::from_str(&args[dev + 1]).unwrap();
        assert_eq!(v["driver"], "vfio-user-pci");
        assert_eq!(v["socket"]["path"], "/tmp/s.sock");
        assert!(args.iter().any(|a| a.contains("share=on")));
        assert!(
            !args.iter().any(|a| a.contains("snd")),
            "no sound unless asked"
        );
        let with_sound = QemuConfig {
            sound_socket: Some("/tmp/snd.sock".into()),
            ..cfg
        }
        .args();
        let tail = &with_sound[with_sound.len() - 4..];
        assert_eq!(
            tail,
            [
                "-chardev",
                "socket,id=saffron-snd,path=/tmp/snd.sock",
                "-device",
                "vhost-user-snd-pci,chardev=saffron-snd"
            ]
        );
    }
}
