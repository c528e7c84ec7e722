//! Access to the device's BARs from user space: memory BARs through `mmap` of the sysfs
//! `resourceN` files, I/O BARs through `pread`/`pwrite` on them.
//!
//! Every access to mapped device memory is volatile: the compiler must neither drop, merge nor
//! reorder the stores the device is meant to observe, and on a trapped (non-mmappable) region
//! each access becomes a vfio-user message, so its width should be predictable (bytes at
//! unaligned edges, 8-byte words in between).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{Ordering, fence};

use crate::error::{Error, Result};

/// A whole memory BAR mapped shared and uncached (sysfs maps non-prefetchable BARs UC).
#[derive(Debug)]
pub struct BarMapping {
    ptr: NonNull<u8>,
    len: usize,
    path: PathBuf,
    // Kept open only so that error messages and the mapping's lifetime stay tied to the file.
    _file: File,
}

impl BarMapping {
    /// Maps the whole BAR behind `path` (the sysfs file's size is the BAR size).
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_SYNC)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io("stat", path, e))?
            .len();
        let len = usize::try_from(size).map_err(|_| Error::Sysfs {
            path: path.to_path_buf(),
            content: format!("size {size:#x}"),
        })?;
        if len == 0 {
            return Err(Error::Sysfs {
                path: path.to_path_buf(),
                content: "size 0".to_string(),
            });
        }
        // SAFETY: we ask for a fresh mapping (no fixed address) of a file we hold open; the
        // kernel validates length and offset against the BAR and we check the result below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::io("mmap", path, std::io::Error::last_os_error()));
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| Error::io("mmap", path, std::io::Error::other("mapped at address 0")))?;
        Ok(BarMapping {
            ptr,
            len,
            path: path.to_path_buf(),
            _file: file,
        })
    }

    /// Size of the mapping, which is the BAR size.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Checks that `[offset, offset + len)` lies inside the BAR and returns `offset` as usize.
    fn check(&self, offset: u64, len: usize) -> Result<usize> {
        let bad = || Error::OutOfRange {
            what: "BAR mapping",
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

    /// Raw pointer to `offset`, for benchmarks that drive [`copy_to_volatile`] themselves.
    pub fn ptr_at(&self, offset: u64, len: usize) -> Result<*mut u8> {
        let start = self.check(offset, len)?;
        // SAFETY: `check` proved start + len <= self.len, so the result stays in the mapping.
        Ok(unsafe { self.ptr.as_ptr().add(start) })
    }

    /// Writes an aligned little-endian u32 with one 32-bit access.
    pub fn write_u32(&self, offset: u64, value: u32) -> Result<()> {
        let p = self.aligned_u32(offset)?;
        // SAFETY: `aligned_u32` returns an in-bounds, 4-aligned pointer into our live mapping.
        unsafe { p.write_volatile(value.to_le()) };
        Ok(())
    }

    fn aligned_u32(&self, offset: u64) -> Result<*mut u32> {
        if !offset.is_multiple_of(4) {
            return Err(Error::Check(format!("unaligned u32 access at {offset:#x}")));
        }
        Ok(self.ptr_at(offset, 4)?.cast::<u32>())
    }

    /// Copies `buf.len()` bytes out of the BAR starting at `offset`.
    pub fn read_bytes(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let src = self.ptr_at(offset, buf.len())?;
        // SAFETY: `ptr_at` checked that the whole source range is inside our live mapping; `buf`
        // is ordinary memory that cannot overlap a device mapping.
        unsafe { copy_from_volatile(buf, src) };
        Ok(())
    }

    /// Copies `data` into the BAR starting at `offset`.
    pub fn write_bytes(&self, offset: u64, data: &[u8]) -> Result<()> {
        let dst = self.ptr_at(offset, data.len())?;
        // SAFETY: `ptr_at` checked that the whole destination range is inside our live mapping;
        // `data` is ordinary memory that cannot overlap a device mapping.
        unsafe { copy_to_volatile(dst, data) };
        Ok(())
    }

    /// Orders all earlier stores and asks the kernel to sync the mapping.
    ///
    /// For an uncached device mapping the stores are already visible; `msync` is kept because
    /// a write-combining or emulated mapping might not be, and the host test compares contents.
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

impl Drop for BarMapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `open` created; nothing refers to it past `drop`.
        // A failure cannot be handled here and leaves only a leaked mapping.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Copies `src` to `dst` with volatile stores: single bytes until `dst` is 8-aligned, then
/// 8-byte words, then the tail bytes.
///
/// # Safety
///
/// `dst` must be valid for writes of `src.len()` bytes and must not overlap `src`.
pub unsafe fn copy_to_volatile(dst: *mut u8, src: &[u8]) {
    let head = dst.align_offset(8).min(src.len());
    let words = (src.len() - head) / 8;
    let mut i = 0;
    while i < head {
        // SAFETY: i < src.len(), and the caller guarantees dst is valid for src.len() bytes.
        unsafe { dst.add(i).write_volatile(src[i]) };
        i += 1;
    }
    for _ in 0..words {
        // SAFETY: i + 8 <= src.len() (head + words * 8 <= len); dst + i is 8-aligned because
        // dst + head is; the source read is unaligned-tolerant and in bounds.
        unsafe {
            let w = src.as_ptr().add(i).cast::<u64>().read_unaligned();
            dst.add(i).cast::<u64>().write_volatile(w);
        }
        i += 8;
    }
    while i < src.len() {
        // SAFETY: i < src.len(), and the caller guarantees dst is valid for src.len() bytes.
        unsafe { dst.add(i).write_volatile(src[i]) };
        i += 1;
    }
}

/// Copies `dst.len()` bytes from `src` with volatile loads, in the same access pattern as
/// [`copy_to_volatile`].
///
/// # Safety
///
/// `src` must be valid for reads of `dst.len()` bytes and must not overlap `dst`.
pub unsafe fn copy_from_volatile(dst: &mut [u8], src: *const u8) {
    let len = dst.len();
    let head = src.align_offset(8).min(len);
    let words = (len - head) / 8;
    let mut i = 0;
    while i < head {
        // SAFETY: i < len, and the caller guarantees src is valid for len bytes.
        dst[i] = unsafe { src.add(i).read_volatile() };
        i += 1;
    }
    for _ in 0..words {
        // SAFETY: i + 8 <= len; src + i is 8-aligned because src + head is.
        let w = unsafe { src.add(i).cast::<u64>().read_volatile() };
        dst[i..i + 8].copy_from_slice(&w.to_ne_bytes());
        i += 8;
    }
    while i < len {
        // SAFETY: i < len, and the caller guarantees src is valid for len bytes.
        dst[i] = unsafe { src.add(i).read_volatile() };
        i += 1;
    }
}

/// An I/O BAR reached through its sysfs `resourceN` file: file offset N is port N.
///
/// The kernel turns a 1-byte `pwrite` into one `outb` (and `pread` into `inb`), which is
/// exactly how the QXL driver kicks the device.
#[derive(Debug)]
pub struct IoPorts {
    file: File,
    path: PathBuf,
}

impl IoPorts {
    /// Opens the I/O BAR's resource file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        Ok(IoPorts {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Writes one byte to `port` (an offset inside the BAR).
    pub fn write_u8(&self, port: u16, value: u8) -> Result<()> {
        let done = self
            .file
            .write_at(&[value], u64::from(port))
            .map_err(|e| Error::io("write", &self.path, e))?;
        if done != 1 {
            return Err(Error::ShortIo {
                op: "write",
                path: self.path.clone(),
                offset: u64::from(port),
                done,
                wanted: 1,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The copy helpers must be exact for every alignment and length, since the host test
    /// hashes what they move.
    #[test]
    fn volatile_copies_are_exact_at_any_alignment() {
        let src: Vec<u8> = (0..64u8).collect();
        for dst_off in 0..9 {
            for len in [0usize, 1, 7, 8, 9, 15, 16, 17, 40] {
                let mut dst = vec![0xAAu8; 64];
                // SAFETY: dst_off + len <= 9 + 40 < 64, and dst and src are distinct vectors.
                unsafe { copy_to_volatile(dst.as_mut_ptr().add(dst_off), &src[..len]) };
                assert_eq!(&dst[dst_off..dst_off + len], &src[..len]);
                assert!(dst[..dst_off].iter().all(|&b| b == 0xAA));
                assert!(dst[dst_off + len..].iter().all(|&b| b == 0xAA));

                let mut back = vec![0u8; len];
                // SAFETY: the source range lies inside `dst`, which is distinct from `back`.
                unsafe { copy_from_volatile(&mut back, dst.as_ptr().add(dst_off)) };
                assert_eq!(back, &src[..len]);
            }
        }
    }
}
