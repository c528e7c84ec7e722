//! Shared-memory files for the BARs the VMM maps straight into the guest.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};

/// Creates a memfd of `size` bytes, sealed against resizing: the VMM receives a copy of the
/// descriptor, and a peer that could shrink the file would make our own mapping fault (SIGBUS)
/// on the next access.
pub fn create(name: &str, size: u64) -> io::Result<File> {
    let cname = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `cname` is a valid NUL-terminated string that outlives the call; the flags are
    // constants. The call has no memory side effects on our side.
    let fd =
        unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create, is valid and owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size)?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor we own; F_ADD_SEALS takes an int argument.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_and_sealed() {
        let f = create("saffron-test", 1 << 16).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 1 << 16);
        assert!(f.set_len(1 << 12).is_err(), "shrinking is sealed");
        assert!(f.set_len(1 << 20).is_err(), "growing is sealed");
    }
}
