//! INTx towards a vfio-user client, with the level semantics of the kernel's vfio-pci.
//!
//! The device drives a level. The client hands us a trigger eventfd; an eventfd is an edge, so
//! like vfio-pci we signal once when the unmasked line rises and then consider INTx masked
//! until the client unmasks it (an UNMASK request after the guest's end of interrupt, or a
//! write to the resample eventfd it registered). If the line is still high at unmask, we
//! signal again.
//!
//! [`IrqMode::Polled`] never signals: the device only shows its level in `int_pending` and the
//! PCI status bit. QEMU under TCG turns a vfio device's BAR mappings off for good after the
//! first INTx (it traps accesses to catch the end of interrupt and vfio-user has no timer to
//! turn them back on), which makes every later guest access a socket round trip. A guest booted
//! with `irqpoll` runs its shared handlers on every timer tick and finds the pending state.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use saffron_device::IrqLine;
use tracing::{debug, warn};
use vmm_sys_util::eventfd::EventFd;

/// How the device's interrupt reaches the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqMode {
    /// Signal the client's INTx eventfd.
    Intx,
    /// Never signal; the guest polls (see the module documentation).
    Polled,
}

impl std::str::FromStr for IrqMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "intx" => Ok(IrqMode::Intx),
            "polled" => Ok(IrqMode::Polled),
            other => Err(format!("unknown interrupt mode '{other}' (intx, polled)")),
        }
    }
}

#[derive(Default)]
struct State {
    trigger: Option<File>,
    level: bool,
    masked: bool,
    resample: Option<ResampleWatch>,
}

/// The INTx state shared by the device (which drives the level) and the vfio-user front end
/// (which installs eventfds and handles mask/unmask).
pub struct Intx {
    mode: IrqMode,
    state: Mutex<State>,
    signals: AtomicU64,
}

impl std::fmt::Debug for Intx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intx")
            .field("mode", &self.mode)
            .field("signals", &self.signals)
            .finish_non_exhaustive()
    }
}

impl Intx {
    /// A line in `mode` with no eventfd installed yet.
    pub fn new(mode: IrqMode) -> Arc<Self> {
        Arc::new(Intx {
            mode,
            state: Mutex::new(State::default()),
            signals: AtomicU64::new(0),
        })
    }

    /// The mode chosen at start.
    pub fn mode(&self) -> IrqMode {
        self.mode
    }

    /// How many times the trigger eventfd was written.
    pub fn signals(&self) -> u64 {
        self.signals.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state inconsistent (plain fields),
        // so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn signal_locked(&self, st: &mut State) {
        if self.mode == IrqMode::Polled {
            return;
        }
        if let Some(trigger) = st.trigger.as_mut() {
            match trigger.write_all(&1u64.to_ne_bytes()) {
                Ok(()) => {
                    self.signals.fetch_add(1, Ordering::Relaxed);
                    st.masked = true;
                }
                Err(e) => warn!("cannot signal INTx eventfd: {e}"),
            }
        }
    }

    /// Installs (or with `None` removes) the trigger eventfd. A level already high is
    /// delivered at once.
    pub fn set_trigger(&self, fd: Option<File>) {
        let mut st = self.lock();
        st.trigger = fd;
        if st.level && !st.masked {
            self.signal_locked(&mut st);
        }
    }

    /// Fires the trigger once if one is installed (the client's loopback test).
    pub fn fire(&self) {
        let mut st = self.lock();
        self.signal_locked(&mut st);
    }

    /// Masks INTx: the level is kept but not delivered.
    pub fn mask(&self) {
        self.lock().masked = true;
    }

    /// Unmasks INTx, re-delivering a level that is still high.
    pub fn unmask(&self) {
        let mut st = self.lock();
        st.masked = false;
        if st.level {
            self.signal_locked(&mut st);
        }
    }

    /// Registers an eventfd whose every write means "unmask" (QEMU's KVM resample path).
    pub fn set_resample(self: &Arc<Self>, fd: Option<File>) -> io::Result<()> {
        let watch = fd
            .map(|f| ResampleWatch::start(Arc::clone(self), f))
            .transpose()?;
        let old = std::mem::replace(&mut self.lock().resample, watch);
        drop(old);
        Ok(())
    }

    /// Back to power-on: unmasked, no eventfds.
    pub fn reset(&self) {
        let old = {
            let mut st = self.lock();
            st.masked = false;
            st.trigger = None;
            st.resample.take()
        };
        drop(old);
    }
}

/// The device's side of the line.
#[derive(Debug, Clone)]
pub struct IntxLine(pub Arc<Intx>);

impl IrqLine for IntxLine {
    fn set_level(&self, asserted: bool) {
        let intx = &self.0;
        let mut st = intx.lock();
        let rising = asserted && !st.level;
        st.level = asserted;
        if rising && !st.masked {
            intx.signal_locked(&mut st);
        }
    }
}

/// A thread that turns writes to a resample eventfd into unmasks; stopped on drop.
struct ResampleWatch {
    stop: EventFd,
    stopped: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ResampleWatch {
    fn start(intx: Arc<Intx>, mut fd: File) -> io::Result<Self> {
        let stop = EventFd::new(libc::EFD_CLOEXEC)?;
        let stop_fd = stop.try_clone()?;
        let stopped = Arc::new(AtomicBool::new(false));
        let stopped2 = Arc::clone(&stopped);
        let thread = thread::Builder::new()
            .name("saffron-intx-resample".into())
            .spawn(move || {
                let mut fds = [
                    libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: stop_fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                while !stopped2.load(Ordering::Acquire) {
                    // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
                    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
                    if n < 0 {
                        if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                            continue;
                        }
                        break;
                    }
                    if fds[1].revents != 0 {
                        break;
                    }
                    if fds[0].revents & libc::POLLIN != 0 {
                        let mut buf = [0u8; 8];
                        if fd.read_exact(&mut buf).is_err() {
                            break;
                        }
                        debug!("INTx resample");
                        intx.unmask();
                    } else if fds[0].revents != 0 {
                        break;
                    }
                }
            })?;
        Ok(ResampleWatch {
            stop,
            stopped,
            thread: Some(thread),
        })
    }
}

impl Drop for ResampleWatch {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Release);
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eventfd_pair() -> (File, EventFd) {
        let efd = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        // SAFETY: dup of a valid descriptor; the new descriptor is owned by the File.
        let file = unsafe {
            use std::os::fd::FromRawFd;
            File::from_raw_fd(libc::dup(efd.as_raw_fd()))
        };
        (file, efd)
    }

    fn count(efd: &EventFd) -> u64 {
        efd.read().unwrap_or(0)
    }

    #[test]
    fn level_is_signalled_once_until_unmask() {
        let intx = Intx::new(IrqMode::Intx);
        let line = IntxLine(Arc::clone(&intx));
        let (file, efd) = eventfd_pair();
        intx.set_trigger(Some(file));
        line.set_level(true);
        line.set_level(true);
        assert_eq!(count(&efd), 1);
        intx.unmask();
        assert_eq!(count(&efd), 1, "still high at unmask: delivered again");
        line.set_level(false);
        intx.unmask();
        assert_eq!(count(&efd), 0);
        line.set_level(true);
        assert_eq!(count(&efd), 1);
        assert_eq!(intx.signals(), 3);
    }

    #[test]
    fn masked_line_is_held_back() {
        let intx = Intx::new(IrqMode::Intx);
        let line = IntxLine(Arc::clone(&intx));
        let (file, efd) = eventfd_pair();
        intx.set_trigger(Some(file));
        intx.mask();
        line.set_level(true);
        assert_eq!(count(&efd), 0);
        intx.unmask();
        assert_eq!(count(&efd), 1);
    }

    #[test]
    fn level_high_before_trigger_is_delivered_on_install() {
        let intx = Intx::new(IrqMode::Intx);
        IntxLine(Arc::clone(&intx)).set_level(true);
        let (file, efd) = eventfd_pair();
        intx.set_trigger(Some(file));
        assert_eq!(count(&efd), 1);
    }

    #[test]
    fn polled_mode_never_signals() {
        let intx = Intx::new(IrqMode::Polled);
        let line = IntxLine(Arc::clone(&intx));
        let (file, efd) = eventfd_pair();
        intx.set_trigger(Some(file));
        line.set_level(true);
        intx.unmask();
        intx.fire();
        assert_eq!(count(&efd), 0);
        assert_eq!(intx.signals(), 0);
    }

    #[test]
    fn resample_eventfd_unmasks() {
        let intx = Intx::new(IrqMode::Intx);
        let line = IntxLine(Arc::clone(&intx));
        let (file, efd) = eventfd_pair();
        intx.set_trigger(Some(file));
        let (rfile, refd) = eventfd_pair();
        intx.set_resample(Some(rfile)).unwrap();
        line.set_level(true);
        assert_eq!(count(&efd), 1);
        refd.write(1).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while intx.signals() < 2 && std::time::Instant::now() < deadline {
            thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(intx.signals(), 2);
        intx.reset();
    }
}
