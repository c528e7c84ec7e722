//! A pure VGA model: the legacy VGA registers (sequencer, CRTC, graphics and attribute
//! controllers, DAC, misc output, input status with the attribute flip-flop), the planar,
//! odd/even and chain-4 views of video memory through the 0xa0000-0xbffff window with its
//! latches and write modes, and the Bochs VBE (DISPI) registers with a banked window and a
//! linear framebuffer.
//!
//! [`Vga::render`] draws the screen into a 32-bit BGRX [`Surface`] the way QEMU's own VGA
//! (`hw/display/vga.c`) does, pixel for pixel: that is what a guest's BIOS, boot loader and
//! text console look like under QEMU today, and [`replay`] checks it against QEMU itself by
//! replaying QEMU's log traces ([`trace`]) of real guests.
//!
//! No I/O and no threads: the state is a plain struct, every guest-controlled value is
//! bounds-checked (a hostile guest can make the picture wrong, never make us panic or touch
//! memory outside the model's video RAM).

mod memory;
mod palette;
mod ports;
pub mod regs;
mod render;
pub mod replay;
mod surface;
pub mod trace;
mod vbe;

pub use render::{RenderError, RenderOptions};
pub use surface::Surface;

use regs::*;

/// Errors building a [`Vga`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VgaError {
    /// QEMU sizes VGA memory in whole MiB, a power of two; we need at least the 256 KiB of
    /// the four planes, and a DISPI bank number is 16 bits of 64 KiB.
    #[error("video memory size {0:#x} is not a power of two between 256 KiB and 256 MiB")]
    BadVramSize(usize),
    /// A snapshot that does not fit the video memory.
    #[error("{len} bytes at offset {offset:#x} do not fit in {vram_size:#x} bytes of video memory")]
    VramRange {
        offset: usize,
        len: usize,
        vram_size: usize,
    },
}

/// Video memory size of QEMU's `-device VGA` (its default `vgamem_mb=16`).
pub const DEFAULT_VRAM_SIZE: usize = 16 << 20;

/// The whole VGA state, as QEMU's `VGACommonState` keeps it (minus the display-side caches).
#[derive(Clone)]
pub struct Vga {
    /// Video memory: the four planes interleaved byte by byte (plane `p` of dword `a` is at
    /// `4 * a + p`), which is also the linear framebuffer of VBE modes.
    pub(crate) vram: Vec<u8>,
    /// The four 8-bit latches (plane `p` in byte `p`), loaded by every planar read.
    pub(crate) latch: u32,
    pub(crate) sr_index: u8,
    pub(crate) sr: [u8; 8],
    /// The sequencer as VBE modes see it: QEMU keeps a second copy so that the guest's own
    /// sequencer writes cannot break a VBE mode (`sr_vbe`).
    pub(crate) sr_vbe: [u8; 8],
    pub(crate) gr_index: u8,
    pub(crate) gr: [u8; 16],
    pub(crate) ar_index: u8,
    pub(crate) ar: [u8; ATT_C],
    /// The attribute controller's index/data flip-flop: false = next 0x3c0 write is an index.
    pub(crate) ar_flip_flop: bool,
    pub(crate) cr_index: u8,
    pub(crate) cr: [u8; 256],
    pub(crate) msr: u8,
    pub(crate) fcr: u8,
    pub(crate) st00: u8,
    pub(crate) st01: u8,
    pub(crate) dac_state: u8,
    pub(crate) dac_sub_index: u8,
    pub(crate) dac_read_index: u8,
    pub(crate) dac_write_index: u8,
    pub(crate) dac_cache: [u8; 3],
    pub(crate) dac_8bit: bool,
    /// 256 DAC entries of red, green, blue (6 significant bits unless the VBE 8-bit DAC is on).
    pub(crate) palette: [u8; 768],
    pub(crate) bank_offset: u32,
    pub(crate) vbe_index: u16,
    pub(crate) vbe_regs: [u16; VBE_DISPI_INDEX_NB as usize],
    pub(crate) vbe_start_addr: u32,
    pub(crate) vbe_line_offset: u32,
    pub(crate) vbe_bank_mask: u32,
}

impl std::fmt::Debug for Vga {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vga")
            .field("vram_size", &self.vram.len())
            .field("sr", &self.sr)
            .field("gr", &self.gr)
            .field("ar", &self.ar)
            .field("msr", &self.msr)
            .field("vbe_regs", &self.vbe_regs)
            .finish_non_exhaustive()
    }
}

impl Vga {
    /// A VGA with `vram_size` bytes of video memory, in QEMU's reset state.
    pub fn new(vram_size: usize) -> Result<Self, VgaError> {
        if !vram_size.is_power_of_two() || !(256 << 10..=256 << 20).contains(&vram_size) {
            return Err(VgaError::BadVramSize(vram_size));
        }
        Ok(Self::at_reset(vec![0; vram_size], 0))
    }

    /// QEMU's `-device VGA`: 16 MiB of video memory, at reset.
    pub fn qemu_default() -> Self {
        Self::at_reset(vec![0; DEFAULT_VRAM_SIZE], 0)
    }

    /// QEMU's `vga_common_reset`: every register to zero, the VBE ID to the newest
    /// interface version. Video memory and the latches keep their contents, as on QEMU.
    pub fn reset(&mut self) {
        let vram = std::mem::take(&mut self.vram);
        *self = Self::at_reset(vram, self.latch);
    }

    /// The reset state over `vram` (a power of two of at least 256 KiB, checked by the
    /// public constructors).
    fn at_reset(vram: Vec<u8>, latch: u32) -> Self {
        let mut vbe_regs = [0; VBE_DISPI_INDEX_NB as usize];
        vbe_regs[VBE_DISPI_INDEX_ID as usize] = VBE_DISPI_ID5;
        // One bank is 64 KiB; memory is a power of two of at least 256 KiB.
        let vbe_bank_mask = ((vram.len() >> 16) as u32).saturating_sub(1);
        Vga {
            vram,
            latch,
            sr_index: 0,
            sr: [0; 8],
            sr_vbe: [0; 8],
            gr_index: 0,
            gr: [0; 16],
            ar_index: 0,
            ar: [0; ATT_C],
            ar_flip_flop: false,
            cr_index: 0,
            cr: [0; 256],
            msr: 0,
            fcr: 0,
            st00: 0,
            st01: 0,
            dac_state: 0,
            dac_sub_index: 0,
            dac_read_index: 0,
            dac_write_index: 0,
            dac_cache: [0; 3],
            dac_8bit: false,
            palette: [0; 768],
            bank_offset: 0,
            vbe_index: 0,
            vbe_regs,
            vbe_start_addr: 0,
            vbe_line_offset: 0,
            vbe_bank_mask,
        }
    }

    /// Video memory size in bytes.
    pub fn vram_size(&self) -> usize {
        self.vram.len()
    }

    /// Video memory, e.g. to snapshot it or to hand the VBE framebuffer to a display.
    pub fn vram(&self) -> &[u8] {
        &self.vram
    }

    /// Overwrites video memory at `offset` with `data`: to restore a snapshot, or to load
    /// what a guest wrote through a path that bypasses the model (QEMU maps the linear
    /// framebuffer and its chain-4 window as plain RAM, so those writes are not in its
    /// traces).
    pub fn load_vram(&mut self, offset: usize, data: &[u8]) -> Result<(), VgaError> {
        let vram_size = self.vram.len();
        let range = offset
            .checked_add(data.len())
            .filter(|end| *end <= vram_size)
            .map(|end| offset..end)
            .ok_or(VgaError::VramRange {
                offset,
                len: data.len(),
                vram_size,
            })?;
        self.vram[range].copy_from_slice(data);
        Ok(())
    }

    /// True while a Bochs VBE mode is enabled.
    pub fn vbe_enabled(&self) -> bool {
        self.vbe_regs[VBE_DISPI_INDEX_ENABLE as usize] & VBE_DISPI_ENABLED != 0
    }

    /// A sequencer register as the display and memory paths see it (QEMU's `sr()`): the VBE
    /// copy while a VBE mode is on.
    pub(crate) fn sr_eff(&self, index: usize) -> u8 {
        let regs = if self.vbe_enabled() {
            &self.sr_vbe
        } else {
            &self.sr
        };
        regs[index & 7]
    }

    /// One byte of video memory, 0 outside it (scan-out of hostile start addresses).
    pub(crate) fn vram_byte(&self, offset: u32) -> u8 {
        self.vram.get(offset as usize).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vram_size_is_checked() {
        assert_eq!(Vga::new(1000).unwrap_err(), VgaError::BadVramSize(1000));
        assert_eq!(
            Vga::new(128 << 10).unwrap_err(),
            VgaError::BadVramSize(128 << 10)
        );
        assert!(Vga::new(256 << 10).is_ok());
        assert!(Vga::new(512 << 20).is_err());
    }

    #[test]
    fn reset_state_matches_qemu() {
        let mut vga = Vga::new(DEFAULT_VRAM_SIZE).unwrap();
        assert_eq!(vga.vbe_regs[0], VBE_DISPI_ID5);
        assert_eq!(vga.vbe_bank_mask, 255);
        vga.io_write(MIS_W, 0x67);
        vga.vram[5] = 9;
        vga.reset();
        assert_eq!(vga.msr, 0);
        assert_eq!(vga.vram[5], 9, "reset keeps video memory");
    }

    #[test]
    fn load_vram_is_bounded() {
        let mut vga = Vga::new(256 << 10).unwrap();
        vga.load_vram(10, &[1, 2]).unwrap();
        assert_eq!(&vga.vram()[10..12], &[1, 2]);
        assert!(vga.load_vram((256 << 10) - 1, &[1, 2]).is_err());
        assert!(vga.load_vram(usize::MAX, &[1]).is_err());
        vga.load_vram(256 << 10, &[]).unwrap();
    }
}
