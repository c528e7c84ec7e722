//! SIGINT and SIGTERM as a flag: `saffron` then stops its QEMU and ends as on a power-off,
//! so that its runtime directory (the vfio-user, agent and QMP sockets) and the sockets the
//! user named are removed. Without this a Ctrl-C killed the process and left them behind.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    REQUESTED.store(true, Ordering::Release);
}

/// Installs the handler for SIGINT and SIGTERM (once per process is enough; again is harmless).
pub fn install() -> io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: an all-zero sigaction is a valid value of the plain C struct (empty mask, no
        // flags), filled in below before use.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // Interrupted system calls restart: the other threads' blocking reads and accepts are
        // not disturbed; the main thread polls `requested`.
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: `action` is initialised, the handler only stores to an atomic, and a null
        // old-action pointer is allowed.
        let rc = unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM arrived since [`install`].
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_sets_the_flag_instead_of_ending_the_process() {
        install().unwrap();
        assert!(!requested());
        // SAFETY: raising a signal whose handler was just installed; it only sets the flag.
        assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
        assert!(requested());
    }
}
