//! `saffron run`: our device server plus a QEMU that attaches it, as one unit that ends with
//! the guest.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use saffron_device::QxlConfig;
use thiserror::Error;
use tracing::{info, warn};

use crate::agent::AgentSocket;
use crate::api::Api;
use crate::control::ControlSocket;
use crate::intx::IrqMode;
use crate::qemu::{self, Accel, QemuConfig, QemuError, Serial};
use crate::spice::{SpiceOptions, start_server};
use crate::vfio_user::{DeviceServer, DeviceServerConfig, FrontendError, SharedDevice};

/// What `saffron run` was asked to do.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Kernel image.
    pub kernel: PathBuf,
    /// Initial ramdisk.
    pub initrd: Option<PathBuf>,
    /// The user's kernel command line.
    pub cmdline: String,
    /// Guest RAM in bytes.
    pub memory: u64,
    /// vCPUs.
    pub smp: u32,
    /// Serial target.
    pub serial: Serial,
    /// Control socket.
    pub api_socket: Option<PathBuf>,
    /// A QMP monitor for the user (QEMU's `-qmp`), beside the one saffron keeps for itself
    /// (a QMP socket takes one client at a time).
    pub user_qmp: Option<PathBuf>,
    /// QEMU binary (else searched).
    pub qemu: Option<PathBuf>,
    /// Accelerator (else detected).
    pub accel: Option<Accel>,
    /// Interrupt mode (else chosen from the accelerator).
    pub irq_mode: Option<IrqMode>,
    /// BAR sizes.
    pub qxl: QxlConfig,
    /// The Spice server, if any.
    pub spice: SpiceOptions,
    /// Record the rings' commands and the guest memory they use into this directory.
    pub record_commands: Option<PathBuf>,
    /// Give the guest the Spice agent's port (`com.redhat.spice.0`), when Spice is on.
    pub agent: bool,
    /// Give the guest a virtio-sound card served by our vhost-user backend.
    pub sound: bool,
}

/// Why a run could not start or failed.
#[derive(Debug, Error)]
pub enum RunError {
    /// A file the user named is missing.
    #[error("{what} {path}: no such file")]
    Missing {
        /// What it is.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// QEMU problems.
    #[error(transparent)]
    Qemu(#[from] QemuError),
    /// Device server problems.
    #[error(transparent)]
    Frontend(#[from] FrontendError),
    /// I/O (runtime directory, control socket, spawning).
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The Spice server could not start.
    #[error("Spice server: {0}")]
    Spice(String),
    /// The sound backend could not start.
    #[error(transparent)]
    Sound(#[from] saffron_audio::SoundServerError),
}

/// A running guest: QEMU plus our device server.
pub struct Vm {
    server: DeviceServer,
    spice: Option<Arc<saffron_server::ServerHandle>>,
    _sound: Option<saffron_audio::SoundServer>,
    child: Child,
    _control: Option<ControlSocket>,
    _agent: Option<AgentSocket>,
    runtime_dir: PathBuf,
    quit: Arc<AtomicBool>,
    accel: Accel,
    irq_mode: IrqMode,
    started: Instant,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("accel", &self.accel)
            .field("irq_mode", &self.irq_mode)
            .finish_non_exhaustive()
    }
}

/// The `n` of the next [`runtime_dir`].
static RUNTIME_NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A fresh private directory for one run's sockets: `saffron-<pid>-<n>` in the temp dir.
///
/// A name that exists already is skipped, never reused: it is a leftover of an earlier
/// process that had our pid and was killed before it cleaned up, or someone else's (a
/// directory made to catch our sockets), and either way not ours to enter or remove.
fn runtime_dir() -> Result<PathBuf, RunError> {
    use std::os::unix::fs::DirBuilderExt;
    const TRIES: u32 = 64;
    let mut tried = 0;
    loop {
        let n = RUNTIME_NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("saffron-{}-{n}", std::process::id()));
        tried += 1;
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tried < TRIES => {
                warn!(dir = %dir.display(), "a leftover runtime directory is in the way; skipping it");
            }
            Err(e) => return Err(RunError::Io(format!("cannot create {}", dir.display()), e)),
        }
    }
}

impl Vm {
    /// Starts the device server, then QEMU attached to it.
    pub fn launch(opts: &RunOptions) -> Result<Vm, RunError> {
        Self::launch_with(opts, |_| {})
    }

    /// Like [`Vm::launch`], running `before_vmm` on the device server before QEMU starts (a
    /// test puts known bytes into BAR memory this way).
    pub fn launch_with(
        opts: &RunOptions,
        before_vmm: impl FnOnce(&DeviceServer),
    ) -> Result<Vm, RunError> {
        for (what, path) in [
            ("kernel", Some(&opts.kernel)),
            ("initrd", opts.initrd.as_ref()),
        ] {
            if let Some(p) = path.filter(|p| !p.is_file()) {
                return Err(RunError::Missing {
                    what,
                    path: p.clone(),
                });
            }
        }
        let qemu_bin = qemu::find(opts.qemu.as_deref())?;
        qemu::check_vfio_user(&qemu_bin)?;
        let accel = opts.accel.unwrap_or_else(Accel::detect);
        let irq_mode = opts.irq_mode.unwrap_or(accel.irq_mode());
        let cmdline = qemu::rig_cmdline(&opts.cmdline, irq_mode);
        if irq_mode == IrqMode::Polled {
            info!(
                "accelerator {accel:?}: polled interrupts; added '{}' to the kernel command line",
                qemu::POLLED_IRQ_CMDLINE
            );
        } else {
            info!("accelerator {accel:?}: INTx through the VMM's eventfd");
        }
        let dir = runtime_dir()?;
        let server = DeviceServer::start(&DeviceServerConfig {
            socket: dir.join("qxl.sock"),
            qxl: opts.qxl,
            irq_mode,
            record_commands: opts.record_commands.clone(),
        })?;
        let quit = Arc::new(AtomicBool::new(false));
        let api = Arc::new(Api::new("run", &server, Arc::clone(&quit)));
        let mut qmp_socket = None;
        let spice = match opts.spice.addr {
            None => None,
            Some(addr) => {
                // The guest gets a virtio tablet so the client mouse mode has an absolute
                // pointer; keys and relative motion go to QEMU's PS/2 devices.
                let qmp = dir.join("qmp.sock");
                qmp_socket = Some(qmp.clone());
                let mut spice_opts = opts.spice.clone();
                spice_opts.sound = opts.sound;
                let handle = start_server(
                    &spice_opts,
                    addr,
                    server.worker(),
                    Some(Arc::clone(server.device())),
                    Some((qmp, true)),
                )
                .map_err(RunError::Spice)?;
                api.set_spice(Arc::clone(&handle));
                Some(handle)
            }
        };
        let agent = match &spice {
            Some(handle) if opts.agent => Some(
                AgentSocket::start(&dir.join("agent.sock"), Arc::clone(handle))
                    .map_err(|e| RunError::Io("guest agent socket".into(), e))?,
            ),
            _ => None,
        };
        // Bound before QEMU starts: QEMU connects to it while it creates the device.
        let sound = if opts.sound {
            Some(crate::sound::start(
                &dir.join("snd.sock"),
                spice.as_deref(),
                true,
            )?)
        } else {
            None
        };
        let control = opts
            .api_socket
            .as_ref()
            .map(|p| {
                ControlSocket::start(
                    p,
                    Arc::clone(&api) as Arc<dyn crate::control::ControlHandler>,
                )
                .map_err(|e| RunError::Io(format!("control socket {}", p.display()), e))
            })
            .transpose()?;
        let cfg = QemuConfig {
            qemu: qemu_bin.clone(),
            accel,
            memory: opts.memory,
            smp: opts.smp,
            kernel: opts.kernel.clone(),
            initrd: opts.initrd.clone(),
            cmdline,
            serial: opts.serial.clone(),
            device_socket: server.socket().to_path_buf(),
            tablet: qmp_socket.is_some(),
            qmp_socket,
            user_qmp_socket: opts.user_qmp.clone(),
            agent_socket: agent.as_ref().map(|a| a.path().to_path_buf()),
            sound_socket: sound.as_ref().map(|s| s.socket().to_path_buf()),
        };
        before_vmm(&server);
        let mut cmd = Command::new(&qemu_bin);
        cmd.args(cfg.args());
        if opts.serial != Serial::Stdio {
            cmd.stdin(Stdio::null());
        }
        // QEMU must not outlive us: if this process dies in any way (SIGTERM, SIGKILL, a
        // crash) the kernel sends QEMU SIGTERM, and a QEMU whose parent is already gone does
        // not start. (Drop covers the orderly exits.) The signal is tied to the thread that
        // forks, which is the one that owns this `Vm`.
        let parent = std::process::id();
        // SAFETY: the closure runs in the forked child before exec, where only
        // async-signal-safe calls are allowed: prctl and getppid are system calls that touch
        // no memory of ours, and the error is built from errno without allocating.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        info!(qemu = %qemu_bin.display(), "starting QEMU: {:?}", cfg.args());
        let child = cmd
            .spawn()
            .map_err(|e| RunError::Io(format!("cannot start {}", qemu_bin.display()), e))?;
        api.set_vmm_pid(child.id());
        Ok(Vm {
            server,
            spice,
            _sound: sound,
            child,
            _control: control,
            _agent: agent,
            runtime_dir: dir,
            quit,
            accel,
            irq_mode,
            started: Instant::now(),
        })
    }

    /// The device, for inspection.
    pub fn device(&self) -> &SharedDevice {
        self.server.device()
    }

    /// The device server.
    pub fn server(&self) -> &DeviceServer {
        &self.server
    }

    /// The Spice server, if one was asked for.
    pub fn spice(&self) -> Option<&Arc<saffron_server::ServerHandle>> {
        self.spice.as_ref()
    }

    /// The accelerator in use.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// The interrupt mode in use.
    pub fn irq_mode(&self) -> IrqMode {
        self.irq_mode
    }

    /// Time since QEMU was started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits for the guest to end (or a `quit` request, which stops QEMU), up to `timeout`.
    /// Returns `None` on timeout, with the guest still running.
    pub fn wait_timeout(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<ExitStatus>, RunError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(st) = self
                .child
                .try_wait()
                .map_err(|e| RunError::Io("waiting for QEMU".into(), e))?
            {
                return Ok(Some(st));
            }
            if self.quit.load(Ordering::Acquire) {
                info!("quit requested: stopping the guest");
                self.kill();
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops QEMU now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether `quit` was requested.
    pub fn quit_requested(&self) -> bool {
        self.quit.load(Ordering::Acquire)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
        let _ = std::fs::remove_dir_all(&self.runtime_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory left at the next name (a killed process that had our pid) is skipped,
    /// not entered and not removed.
    #[test]
    fn a_leftover_runtime_directory_is_skipped() {
        let n = RUNTIME_NEXT.load(Ordering::Relaxed);
        let leftover = std::env::temp_dir().join(format!("saffron-{}-{n}", std::process::id()));
        std::fs::create_dir(&leftover).unwrap();
        let marker = leftover.join("theirs");
        std::fs::write(&marker, b"x").unwrap();
        let dir = runtime_dir().unwrap();
        assert_ne!(dir, leftover);
        assert!(marker.exists(), "the leftover is left alone");
        std::fs::remove_dir_all(&leftover).unwrap();
        std::fs::remove_dir(&dir).unwrap();
    }
}
