//! The Linux evdev interface on raw reads and ioctls: enough to name each `/dev/input/event*`
//! device, learn its absolute axis ranges and read its `struct input_event`s.
//!
//! The structures mirror `<linux/input.h>` for x86_64 and the ioctl numbers use the kernel's
//! `_IOC` encoding; tests pin both to what the C compiler gives for the header. No libevdev:
//! the probe must stay a small static binary.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `EV_SYN`: separates packets of events.
pub const EV_SYN: u16 = 0;
/// `EV_ABS`: absolute axes.
pub const EV_ABS: u16 = 3;
/// `EV_KEY`: keys and buttons.
pub const EV_KEY: u16 = 1;
/// `SYN_REPORT`: the end of one packet (not worth a console line).
pub const SYN_REPORT: u16 = 0;
/// `ABS_X`.
pub const ABS_X: u16 = 0;
/// `ABS_Y`.
pub const ABS_Y: u16 = 1;

const IOC_READ: u64 = 2;
const EVDEV_IOCTL_BASE: u64 = b'E' as u64;

/// The kernel's `_IOC(_IOC_READ, 'E', nr, size)`.
const fn evdev_ior(nr: u64, size: usize) -> u64 {
    (IOC_READ << 30) | ((size as u64) << 16) | (EVDEV_IOCTL_BASE << 8) | nr
}

/// Bytes asked for with `EVIOCGNAME`.
const NAME_LEN: usize = 256;
/// `EVIOCGNAME(256)`.
pub const EVIOCGNAME: u64 = evdev_ior(0x06, NAME_LEN);
/// `EVIOCGBIT(0, 4)`: the event types the device reports, as a bit mask (`EV_MAX` is 0x1f).
pub const EVIOCGBIT_TYPES: u64 = evdev_ior(0x20, 4);

/// `EVIOCGABS(axis)`.
pub const fn eviocgabs(axis: u16) -> u64 {
    evdev_ior(0x40 + axis as u64, std::mem::size_of::<InputAbsinfo>())
}

/// `struct input_event` on x86_64 (a 64-bit `struct timeval` first).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InputEvent {
    /// Seconds of the event's timestamp.
    pub sec: i64,
    /// Microseconds of the event's timestamp.
    pub usec: i64,
    /// `EV_*`.
    pub type_: u16,
    /// `KEY_*`, `BTN_*`, `REL_*`, `ABS_*`, ... depending on the type.
    pub code: u16,
    /// 1/0/2 for keys (press, release, repeat), a delta or a position for axes.
    pub value: i32,
}

/// Size of one event as `read` returns them.
pub const EVENT_SIZE: usize = std::mem::size_of::<InputEvent>();

impl InputEvent {
    /// Decodes one event from exactly [`EVENT_SIZE`] native-endian bytes.
    pub fn from_bytes(b: &[u8; EVENT_SIZE]) -> InputEvent {
        let i64_at = |o: usize| {
            i64::from_ne_bytes([
                b[o],
                b[o + 1],
                b[o + 2],
                b[o + 3],
                b[o + 4],
                b[o + 5],
                b[o + 6],
                b[o + 7],
            ])
        };
        InputEvent {
            sec: i64_at(0),
            usec: i64_at(8),
            type_: u16::from_ne_bytes([b[16], b[17]]),
            code: u16::from_ne_bytes([b[18], b[19]]),
            value: i32::from_ne_bytes([b[20], b[21], b[22], b[23]]),
        }
    }
}

/// `struct input_absinfo`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InputAbsinfo {
    /// Current value.
    pub value: i32,
    /// Smallest value.
    pub minimum: i32,
    /// Largest value.
    pub maximum: i32,
    /// Noise filter.
    pub fuzz: i32,
    /// Dead zone.
    pub flat: i32,
    /// Units per millimetre.
    pub resolution: i32,
}

/// One open event device.
pub struct EventDevice {
    file: File,
    path: PathBuf,
}

impl EventDevice {
    /// Opens `path` read-only and non-blocking (the caller polls).
    pub fn open(path: &Path) -> Result<EventDevice> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        Ok(EventDevice {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw descriptor, for `poll`.
    pub fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// The ioctl with `request` on `arg`.
    ///
    /// # Safety
    /// `request` must be a read ioctl whose argument has exactly `T`'s size and layout.
    unsafe fn ioctl<T>(&self, op: &'static str, request: u64, arg: &mut T) -> Result<()> {
        loop {
            // SAFETY: the caller guarantees `arg` has the layout `request` expects; the kernel
            // writes at most size_of::<T>() bytes into it; the fd stays open for the call.
            let rc = unsafe {
                libc::ioctl(self.file.as_raw_fd(), request as _, std::ptr::from_mut(arg))
            };
            if rc >= 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(Error::io(op, &self.path, e));
            }
        }
    }

    /// The device's name (`EVIOCGNAME`), as the driver set it.
    pub fn name(&self) -> Result<String> {
        let mut buf = [0u8; NAME_LEN];
        // SAFETY: EVIOCGNAME(256) writes at most 256 bytes into a 256-byte buffer.
        unsafe { self.ioctl("EVIOCGNAME", EVIOCGNAME, &mut buf)? };
        let end = buf.iter().position(|b| *b == 0).unwrap_or(NAME_LEN);
        Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
    }

    /// The event types the device reports (bit `EV_*` set).
    pub fn types(&self) -> Result<u32> {
        let mut bits = [0u8; 4];
        // SAFETY: EVIOCGBIT(0, 4) writes at most 4 bytes into a 4-byte buffer.
        unsafe { self.ioctl("EVIOCGBIT", EVIOCGBIT_TYPES, &mut bits)? };
        Ok(u32::from_le_bytes(bits))
    }

    /// The range of absolute axis `axis`.
    pub fn abs_info(&self, axis: u16) -> Result<InputAbsinfo> {
        let mut info = InputAbsinfo::default();
        // SAFETY: EVIOCGABS writes one struct input_absinfo, which InputAbsinfo mirrors.
        unsafe { self.ioctl("EVIOCGABS", eviocgabs(axis), &mut info)? };
        Ok(info)
    }

    /// Reads the events that are ready into `out` (none when the device has nothing).
    pub fn read_events(&self, out: &mut Vec<InputEvent>) -> Result<()> {
        let mut buf = [0u8; EVENT_SIZE * 64];
        loop {
            // SAFETY: reads at most buf.len() bytes into our own buffer from an open fd.
            let n =
                unsafe { libc::read(self.file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return Ok(()),
                    _ => return Err(Error::io("read", &self.path, e)),
                }
            }
            let n = n as usize;
            // evdev returns whole events only.
            for chunk in buf[..n].chunks_exact(EVENT_SIZE) {
                let mut one = [0u8; EVENT_SIZE];
                one.copy_from_slice(chunk);
                out.push(InputEvent::from_bytes(&one));
            }
            if n < buf.len() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel_header() {
        assert_eq!(EVENT_SIZE, 24);
        assert_eq!(std::mem::size_of::<InputAbsinfo>(), 24);
    }

    #[test]
    fn ioctl_numbers_match_the_kernel_header() {
        assert_eq!(EVIOCGNAME, 0x8100_4506);
        assert_eq!(EVIOCGBIT_TYPES, 0x8004_4520);
        assert_eq!(eviocgabs(ABS_X), 0x8018_4540);
        assert_eq!(eviocgabs(ABS_Y), 0x8018_4541);
    }

    #[test]
    fn decodes_an_event() {
        let mut b = [0u8; EVENT_SIZE];
        b[0..8].copy_from_slice(&5i64.to_ne_bytes());
        b[8..16].copy_from_slice(&7i64.to_ne_bytes());
        b[16..18].copy_from_slice(&EV_KEY.to_ne_bytes());
        b[18..20].copy_from_slice(&30u16.to_ne_bytes());
        b[20..24].copy_from_slice(&(-2i32).to_ne_bytes());
        assert_eq!(
            InputEvent::from_bytes(&b),
            InputEvent {
                sec: 5,
                usec: 7,
                type_: EV_KEY,
                code: 30,
                value: -2
            }
        );
    }
}
