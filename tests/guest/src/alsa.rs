//! A minimal ALSA PCM client on raw ioctls (busybox has no aplay): open a PCM device node,
//! set hardware parameters, prepare, write or read interleaved frames, drain.
//!
//! The structures mirror `<sound/asound.h>` (uapi) for x86_64; their sizes are asserted, and
//! each ioctl number encodes its argument's size, so a layout mistake fails loudly (EINVAL or
//! ENOTTY) instead of passing garbage.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `SNDRV_PCM_ACCESS_RW_INTERLEAVED`.
pub const ACCESS_RW_INTERLEAVED: u32 = 3;
/// `SNDRV_PCM_FORMAT_S16_LE`.
pub const FORMAT_S16_LE: u32 = 2;
/// `SNDRV_PCM_SUBFORMAT_STD`.
const SUBFORMAT_STD: u32 = 0;

/// `SNDRV_PCM_HW_PARAM_*`: masks 0..=2, intervals 8..=19.
const PARAM_ACCESS: usize = 0;
const PARAM_FORMAT: usize = 1;
const PARAM_SUBFORMAT: usize = 2;
const PARAM_FIRST_INTERVAL: usize = 8;
const PARAM_CHANNELS: usize = 10;
const PARAM_RATE: usize = 11;
const PARAM_PERIOD_SIZE: usize = 13;
const PARAM_PERIODS: usize = 15;
const PARAM_BUFFER_SIZE: usize = 17;
const PARAM_LAST_INTERVAL: usize = 19;

/// `struct snd_interval`: min, max, then the bit fields openmin:1, openmax:1, integer:1,
/// empty:1 in one unsigned int (bit 0 first on x86_64).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct Interval {
    min: u32,
    max: u32,
    flags: u32,
}

/// `snd_interval.integer`.
const INTERVAL_INTEGER: u32 = 1 << 2;

/// `struct snd_pcm_hw_params` (608 bytes on x86_64: 8 masks of 256 bits — 3 used, 5
/// reserved —, 21 intervals — 12 used, 9 reserved —, six unsigned ints, fifo_size, and 64
/// bytes of sync id and reserve).
#[repr(C)]
struct HwParams {
    flags: u32,
    masks: [[u32; 8]; 8],
    intervals: [Interval; 21],
    rmask: u32,
    cmask: u32,
    info: u32,
    msbits: u32,
    rate_num: u32,
    rate_den: u32,
    fifo_size: u64,
    reserved: [u8; 64],
}
const _: () = assert!(std::mem::size_of::<HwParams>() == 608);

/// `struct snd_xferi`: result (frames done), buffer, frames.
#[repr(C)]
struct XferI {
    result: i64,
    buf: *mut libc::c_void,
    frames: u64,
}
const _: () = assert!(std::mem::size_of::<XferI>() == 24);

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((b'A' as u64) << 8) | nr
}
const IOC_NONE: u64 = 0;
const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;
/// `SNDRV_PCM_IOCTL_HW_PARAMS` = _IOWR('A', 0x11, struct snd_pcm_hw_params).
const IOCTL_HW_PARAMS: u64 = ioc(IOC_READ | IOC_WRITE, 0x11, std::mem::size_of::<HwParams>());
const _: () = assert!(IOCTL_HW_PARAMS == 0xc260_4111);
/// `SNDRV_PCM_IOCTL_PREPARE` = _IO('A', 0x40).
const IOCTL_PREPARE: u64 = ioc(IOC_NONE, 0x40, 0);
/// `SNDRV_PCM_IOCTL_DRAIN` = _IO('A', 0x44).
const IOCTL_DRAIN: u64 = ioc(IOC_NONE, 0x44, 0);
/// `SNDRV_PCM_IOCTL_WRITEI_FRAMES` = _IOW('A', 0x50, struct snd_xferi).
const IOCTL_WRITEI: u64 = ioc(IOC_WRITE, 0x50, std::mem::size_of::<XferI>());
/// `SNDRV_PCM_IOCTL_READI_FRAMES` = _IOR('A', 0x51, struct snd_xferi).
const IOCTL_READI: u64 = ioc(IOC_READ, 0x51, std::mem::size_of::<XferI>());
/// `SNDRV_PCM_IOCTL_START` = _IO('A', 0x42): a capture stream starts on request.
const IOCTL_START: u64 = ioc(IOC_NONE, 0x42, 0);

/// Bytes per frame of the only format used here: S16_LE stereo.
pub const FRAME_BYTES: usize = 4;

/// What HW_PARAMS settled on.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub period_frames: u32,
    pub buffer_frames: u32,
}

/// An open PCM device.
pub struct Pcm {
    file: File,
    path: PathBuf,
}

impl Pcm {
    /// Opens `path` (e.g. `/dev/snd/pcmC0D0p`), blocking mode.
    pub fn open(path: &Path) -> Result<Pcm> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        Ok(Pcm {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Runs an ioctl that takes no argument.
    fn ioctl_none(&self, op: &'static str, request: u64) -> Result<()> {
        // SAFETY: the request takes no argument (its size field is 0); the fd is open.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), request as _, 0) };
        if rc < 0 {
            return Err(Error::io(op, &self.path, std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// HW_PARAMS for interleaved S16_LE, `channels`, `rate`, with `period_frames` and
    /// `periods` fixed (the kernel refines and chooses the rest, as alsa-lib's
    /// `snd_pcm_hw_params` does), then PREPARE.
    pub fn setup(
        &self,
        channels: u32,
        rate: u32,
        period_frames: u32,
        periods: u32,
    ) -> Result<Setup> {
        let mut p = HwParams {
            flags: 0,
            masks: [[0; 8]; 8],
            intervals: [Interval::default(); 21],
            rmask: !0,
            cmask: 0,
            info: !0,
            msbits: 0,
            rate_num: 0,
            rate_den: 0,
            fifo_size: 0,
            reserved: [0; 64],
        };
        // "Any": every value allowed (snd_pcm_hw_params_any).
        for m in &mut p.masks[..=PARAM_SUBFORMAT] {
            *m = [!0; 8];
        }
        for i in &mut p.intervals[..=PARAM_LAST_INTERVAL - PARAM_FIRST_INTERVAL] {
            *i = Interval {
                min: 0,
                max: !0,
                flags: 0,
            };
        }
        let only = |bit: u32| {
            let mut m = [0u32; 8];
            m[(bit / 32) as usize] = 1 << (bit % 32);
            m
        };
        p.masks[PARAM_ACCESS] = only(ACCESS_RW_INTERLEAVED);
        p.masks[PARAM_FORMAT] = only(FORMAT_S16_LE);
        p.masks[PARAM_SUBFORMAT] = only(SUBFORMAT_STD);
        for (param, v) in [
            (PARAM_CHANNELS, channels),
            (PARAM_RATE, rate),
            (PARAM_PERIOD_SIZE, period_frames),
            (PARAM_PERIODS, periods),
        ] {
            p.intervals[param - PARAM_FIRST_INTERVAL] = Interval {
                min: v,
                max: v,
                flags: INTERVAL_INTEGER,
            };
        }
        // SAFETY: HW_PARAMS takes a `struct snd_pcm_hw_params`, which `HwParams` mirrors (size
        // asserted, and encoded in the request number); it holds no pointers.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                IOCTL_HW_PARAMS as _,
                std::ptr::from_mut(&mut p),
            )
        };
        if rc < 0 {
            return Err(Error::io(
                "SNDRV_PCM_IOCTL_HW_PARAMS",
                &self.path,
                std::io::Error::last_os_error(),
            ));
        }
        let setup = Setup {
            period_frames: p.intervals[PARAM_PERIOD_SIZE - PARAM_FIRST_INTERVAL].min,
            buffer_frames: p.intervals[PARAM_BUFFER_SIZE - PARAM_FIRST_INTERVAL].min,
        };
        self.ioctl_none("SNDRV_PCM_IOCTL_PREPARE", IOCTL_PREPARE)?;
        Ok(setup)
    }

    /// Transfers `buf` (whole frames) with WRITEI_FRAMES or READI_FRAMES, blocking until all
    /// of it is done. An underrun or overrun (EPIPE) is an error: the caller wants every
    /// frame.
    fn transfer(&self, request: u64, op: &'static str, buf: *mut u8, len: usize) -> Result<()> {
        let frames = len / FRAME_BYTES;
        let mut done = 0usize;
        while done < frames {
            let mut x = XferI {
                result: 0,
                // done < frames, so this stays inside the caller's buffer.
                buf: buf.wrapping_add(done * FRAME_BYTES).cast(),
                frames: (frames - done) as u64,
            };
            // SAFETY: the request takes a `struct snd_xferi` (mirrored, size asserted); its
            // buffer points at `frames - done` whole frames inside the caller's live buffer,
            // which the kernel reads (WRITEI) or writes (READI, on a `&mut` buffer) for at
            // most that many frames.
            let rc = unsafe {
                libc::ioctl(
                    self.file.as_raw_fd(),
                    request as _,
                    std::ptr::from_mut(&mut x),
                )
            };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(Error::Check(format!(
                    "{op} {}: {e} after {done} of {frames} frames",
                    self.path.display()
                )));
            }
            let n = usize::try_from(x.result).unwrap_or(0);
            if n == 0 {
                return Err(Error::Check(format!("{op}: no frames transferred")));
            }
            done += n.min(frames - done);
        }
        Ok(())
    }

    /// Plays `pcm` (interleaved S16_LE frames).
    pub fn write_all(&self, pcm: &[u8]) -> Result<()> {
        // WRITEI only reads through the pointer; the cast to *mut is the ABI's.
        self.transfer(
            IOCTL_WRITEI,
            "SNDRV_PCM_IOCTL_WRITEI_FRAMES",
            pcm.as_ptr().cast_mut(),
            pcm.len(),
        )
    }

    /// Starts a capture stream, then reads `buf` (whole frames) full.
    pub fn capture(&self, buf: &mut [u8]) -> Result<()> {
        self.ioctl_none("SNDRV_PCM_IOCTL_START", IOCTL_START)?;
        self.transfer(
            IOCTL_READI,
            "SNDRV_PCM_IOCTL_READI_FRAMES",
            buf.as_mut_ptr(),
            buf.len(),
        )
    }

    /// Waits until everything written has played, then stops the stream.
    pub fn drain(&self) -> Result<()> {
        self.ioctl_none("SNDRV_PCM_IOCTL_DRAIN", IOCTL_DRAIN)
    }
}
