//! A shared read-write `mmap` of part of a file, for `/dev/fb0` and DRM dumb buffers.
//!
//! Accesses go through the volatile copies of [`crate::mmio`]: the other side of these mappings
//! is a driver or a device that reads the memory behind our back, so no store may be elided or
//! merged away.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{Ordering, fence};

use crate::error::{Error, Result};
use crate::mmio::{copy_from_volatile, copy_to_volatile};

/// `len` bytes of a file mapped `MAP_SHARED`, `PROT_READ | PROT_WRITE`.
#[derive(Debug)]
pub struct SharedMapping {
    ptr: NonNull<u8>,
    len: usize,
    path: PathBuf,
}

impl SharedMapping {
    /// Maps `len` bytes of `fd` at file offset `offset`; `path` names the file in errors.
    ///
    /// The mapping does not keep the file open (an mmap holds its own reference), so it may
    /// outlive the descriptor.
    pub fn new(fd: &impl AsRawFd, offset: u64, len: usize, path: &Path) -> Result<Self> {
        let bad = |what: &str| Error::io("mmap", path, std::io::Error::other(what.to_string()));
        if len == 0 {
            return Err(bad("zero length"));
        }
        let off = libc::off_t::try_from(offset).map_err(|_| bad("offset out of range"))?;
        // SAFETY: a fresh mapping at an address of the kernel's choosing, of a descriptor that is
        // open for the duration of the call; the result is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                off,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::io("mmap", path, std::io::Error::last_os_error()));
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| bad("mapped at address 0"))?;
        Ok(SharedMapping {
            ptr,
            len,
            path: path.to_path_buf(),
        })
    }

    fn check(&self, offset: u64, len: usize) -> Result<usize> {
        let bad = || Error::OutOfRange {
            what: "shared mapping",
            offset,
            len: len as u64,
            size: self.len as u64,
        };
        let start = usize::try_from(offset).map_err(|_| bad())?;
        match start.checked_add(len) {
            Some(end) if end <= self.len => Ok(start),
            _ => Err(bad()),
        }
    }

    /// Copies `data` into the mapping at `offset`.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        let start = self.check(offset, data.len())?;
        // SAFETY: `check` proved [start, start + len) lies inside our live mapping; `data` is
        // ordinary memory and cannot overlap it (we never hand out references into it).
        unsafe { copy_to_volatile(self.ptr.as_ptr().add(start), data) };
        Ok(())
    }

    /// Copies `buf.len()` bytes out of the mapping at `offset`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = self.check(offset, buf.len())?;
        // SAFETY: as in `write_at`, with the roles of source and destination swapped.
        unsafe { copy_from_volatile(buf, self.ptr.as_ptr().add(start)) };
        Ok(())
    }

    /// Orders earlier stores and `msync`s the whole mapping; for fbdev deferred I/O this is an
    /// `fsync` of the device, which schedules the damage flush at once.
    pub fn sync(&self) -> Result<()> {
        fence(Ordering::SeqCst);
        // SAFETY: the range is exactly our own live mapping.
        let rc = unsafe { libc::msync(self.ptr.as_ptr().cast(), self.len, libc::MS_SYNC) };
        if rc != 0 {
            return Err(Error::io(
                "msync",
                &self.path,
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` created; nothing refers to it past `drop`.
        // A failure cannot be handled here and leaves only a leaked mapping.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_a_file_window_and_checks_bounds() {
        let path = std::env::temp_dir().join(format!("saffron-guest-map-{}", std::process::id()));
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let map = SharedMapping::new(&file, 4096, 4096, &path).unwrap();
        map.write_at(10, b"hello").unwrap();
        map.sync().unwrap();
        let mut back = [0u8; 5];
        map.read_at(10, &mut back).unwrap();
        assert_eq!(&back, b"hello");
        assert!(map.write_at(4092, b"hello").is_err());
        assert!(map.read_at(u64::MAX, &mut back).is_err());
        drop(map);
        let content = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(&content[4096 + 10..4096 + 15], b"hello");
        assert!(SharedMapping::new(&file, 0, 0, &path).is_err());
    }
}
