//! CPU access to video memory: the 0xa0000-0xbffff window (memory map select, VBE bank,
//! chain-4, odd/even and planar addressing, the latches, read modes 0-1 and write modes
//! 0-3) and the VBE linear framebuffer.
//!
//! Addressing follows QEMU (since 9.0): word and double-word modes shift the CPU address
//! rather than the scan-out address, so text lives at one character per dword (character in
//! plane 0, attribute in plane 1, font in plane 2) and mode 13h is linear.

use crate::Vga;
use crate::regs::*;

/// Each of the low four bits of `m` widened to a byte lane of a dword (QEMU's `mask16`):
/// how a per-plane bit (plane enables, set/reset, compare) applies to all four latches.
pub(crate) fn mask16(m: u8) -> u32 {
    (0..4).fold(0, |acc, plane| {
        if m >> plane & 1 != 0 {
            acc | 0xff << (8 * plane)
        } else {
            acc
        }
    })
}

impl Vga {
    /// Where QEMU maps its chain-4 shortcut: with chain-4 on and all planes writable the
    /// window is plain RAM over video memory (no latches, no plane logic). Returns the video
    /// memory offset for a window offset inside the shortcut.
    fn chain4_alias(&self, window: u32) -> Option<usize> {
        if self.sr_eff(SEQ_PLANE_WRITE) & SR02_ALL_PLANES != SR02_ALL_PLANES
            || self.sr_eff(SEQ_MEMORY_MODE) & SR04_CHN_4M == 0
        {
            return None;
        }
        let (base, size, offset) = match (self.gr[GFX_MISC] >> 2) & 3 {
            0 => (0, 0x20000, 0),
            1 => (0, 0x10000, self.bank_offset),
            2 => (0x10000, 0x8000, 0),
            _ => (0x18000, 0x8000, 0),
        };
        let rel = window.checked_sub(base).filter(|r| *r < size)?;
        Some(offset as usize + rel as usize)
    }

    /// The memory map select of GR6 (and the VBE bank): the address inside video memory's
    /// CPU view, or None where the window does not decode.
    fn window_decode(&self, window: u32) -> Option<u32> {
        match (self.gr[GFX_MISC] >> 2) & 3 {
            0 => Some(window),
            1 => (window < 0x10000).then(|| window.wrapping_add(self.bank_offset)),
            2 => window.checked_sub(0x10000).filter(|a| *a < 0x8000),
            _ => window.checked_sub(0x18000).filter(|a| *a < 0x8000),
        }
    }

    fn dword_at(&self, index: u32) -> Option<u32> {
        let start = (index as usize).checked_mul(4)?;
        let bytes = self.vram.get(start..start.checked_add(4)?)?;
        Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// A byte read from the legacy window. `addr` is the guest-physical address
    /// (0xa0000-0xbffff); only its low 17 bits are decoded, as by the hardware.
    /// Planar reads load the four latches.
    pub fn window_read(&mut self, addr: u64) -> u8 {
        let window = (addr & 0x1ffff) as u32;
        if let Some(i) = self.chain4_alias(window) {
            return self.vram.get(i).copied().unwrap_or(0xff);
        }
        let Some(mut a) = self.window_decode(window) else {
            return 0xff;
        };
        let plane;
        if self.sr_eff(SEQ_MEMORY_MODE) & SR04_CHN_4M != 0 {
            plane = a & 3;
            a &= !3;
        } else if self.gr[GFX_MODE] & GR05_HOST_ODD_EVEN != 0 {
            plane = u32::from(self.gr[GFX_PLANE_READ] & 2) | (a & 1);
        } else {
            plane = u32::from(self.gr[GFX_PLANE_READ] & 3);
        }
        if self.gr[GFX_MISC] & GR06_CHAIN_ODD_EVEN != 0 {
            a &= !1;
        }
        if self.cr[CRTC_UNDERLINE] & CR14_DW != 0 {
            a >>= 2;
        } else if self.gr[GFX_MODE] & GR05_HOST_ODD_EVEN != 0
            && self.cr[CRTC_MODE] & CR17_WORD_BYTE == 0
        {
            a >>= 1;
        }
        let Some(dword) = self.dword_at(a) else {
            return 0xff;
        };
        // QEMU tests the guest's own SR4 here (not the VBE copy): its chain-4 read skips the
        // latches.
        if self.sr[SEQ_MEMORY_MODE] & SR04_CHN_4M != 0 {
            return (dword >> (8 * plane)) as u8;
        }
        self.latch = dword;
        if self.gr[GFX_MODE] & GR05_READ_MODE1 == 0 {
            (dword >> (8 * plane)) as u8
        } else {
            // Read mode 1: a 1 for each pixel whose colour matches the compare value on
            // every plane the compare mask selects.
            let mut r =
                (dword ^ mask16(self.gr[GFX_COMPARE_VALUE])) & mask16(self.gr[GFX_COMPARE_MASK]);
            r |= r >> 16;
            r |= r >> 8;
            !(r as u8)
        }
    }

    /// A byte write to the legacy window (see [`Vga::window_read`] for `addr`).
    pub fn window_write(&mut self, addr: u64, val: u8) {
        let window = (addr & 0x1ffff) as u32;
        if let Some(i) = self.chain4_alias(window) {
            if let Some(b) = self.vram.get_mut(i) {
                *b = val;
            }
            return;
        }
        let Some(mut a) = self.window_decode(window) else {
            return;
        };
        let memory_mode = self.sr_eff(SEQ_MEMORY_MODE);
        let mut mask = self.sr_eff(SEQ_PLANE_WRITE) & 0x0f;
        let mut plane = 0;
        if memory_mode & SR04_CHN_4M != 0 {
            plane = a & 3;
            mask &= 1 << plane;
            a &= !3;
        } else if memory_mode & SR04_SEQ_MODE == 0 {
            // Odd/even: even addresses reach planes 0 and 2, odd ones planes 1 and 3.
            mask &= if a & 1 != 0 { 0x0a } else { 0x05 };
        }
        if self.gr[GFX_MISC] & GR06_CHAIN_ODD_EVEN != 0 {
            a &= !1;
        }
        if self.cr[CRTC_UNDERLINE] & CR14_DW != 0 {
            a >>= 2;
        } else if memory_mode & SR04_SEQ_MODE == 0 && self.cr[CRTC_MODE] & CR17_WORD_BYTE == 0 {
            a >>= 1;
        }
        let Some(old) = self.dword_at(a) else {
            return;
        };
        let base = a as usize * 4; // dword_at checked base..base + 4
        if memory_mode & SR04_CHN_4M != 0 {
            if mask != 0 {
                self.vram[base + plane as usize] = val;
            }
            return;
        }
        let value = self.write_mode_value(val);
        let write_mask = mask16(mask);
        let new = (old & !write_mask) | (value & write_mask);
        self.vram[base..base + 4].copy_from_slice(&new.to_le_bytes());
    }

    /// The four plane bytes a planar write produces (write modes 0-3, the ALU function and
    /// the bit mask), before the plane write enable picks which planes take them.
    fn write_mode_value(&self, val: u8) -> u32 {
        let rotate = u32::from(self.gr[GFX_DATA_ROTATE] & 7);
        let (value, bit_mask) = match self.gr[GFX_MODE] & 3 {
            0 => {
                let v = u32::from(val.rotate_right(rotate)) * 0x0101_0101;
                let set_mask = mask16(self.gr[GFX_SR_ENABLE]);
                let v = (v & !set_mask) | (mask16(self.gr[GFX_SR_VALUE]) & set_mask);
                (v, self.gr[GFX_BIT_MASK])
            }
            // Write mode 1: the latches as they are (a VRAM-to-VRAM copy).
            1 => return self.latch,
            2 => (mask16(val & 0x0f), self.gr[GFX_BIT_MASK]),
            _ => (
                mask16(self.gr[GFX_SR_VALUE]),
                self.gr[GFX_BIT_MASK] & val.rotate_right(rotate),
            ),
        };
        let value = match self.gr[GFX_DATA_ROTATE] >> 3 {
            1 => value & self.latch,
            2 => value | self.latch,
            3 => value ^ self.latch,
            _ => value,
        };
        let bit_mask = u32::from(bit_mask) * 0x0101_0101;
        (value & bit_mask) | (self.latch & !bit_mask)
    }

    /// The video memory offset a legacy-window access at `addr` reaches when the window is
    /// plain RAM (QEMU's chain-4 alias), `None` when it goes through the plane logic. A
    /// device whose video memory is also a BAR (qxl-vga) serves these accesses from the BAR.
    pub fn window_alias(&self, addr: u64) -> Option<usize> {
        self.chain4_alias((addr & 0x1ffff) as u32)
            .filter(|i| *i < self.vram.len())
    }

    /// A byte read from the VBE linear framebuffer (offset into video memory); 0xff past
    /// its end.
    pub fn lfb_read(&self, offset: u64) -> u8 {
        usize::try_from(offset)
            .ok()
            .and_then(|o| self.vram.get(o).copied())
            .unwrap_or(0xff)
    }

    /// A byte write to the VBE linear framebuffer; dropped past its end.
    pub fn lfb_write(&mut self, offset: u64, val: u8) {
        if let Some(b) = usize::try_from(offset)
            .ok()
            .and_then(|o| self.vram.get_mut(o))
        {
            *b = val;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::mask16;
    use crate::regs::*;
    use crate::{DEFAULT_VRAM_SIZE, Vga};

    fn vga() -> Vga {
        let mut v = Vga::new(DEFAULT_VRAM_SIZE).unwrap();
        v.io_write(MIS_W, 0x67);
        v
    }

    fn seq(v: &mut Vga, i: u8, val: u8) {
        v.io_write(SEQ_I, i);
        v.io_write(SEQ_D, val);
    }

    fn gfx(v: &mut Vga, i: u8, val: u8) {
        v.io_write(GFX_I, i);
        v.io_write(GFX_D, val);
    }

    fn crtc(v: &mut Vga, i: u8, val: u8) {
        v.io_write(CRT_IC, i);
        v.io_write(CRT_DC, val);
    }

    /// Mode 12h-like planar setup: sequential addressing, all planes, map 0xa0000 64K.
    fn planar() -> Vga {
        let mut v = vga();
        seq(&mut v, 2, 0x0f);
        seq(&mut v, 4, 0x06);
        gfx(&mut v, 5, 0x00);
        gfx(&mut v, 6, 0x05);
        gfx(&mut v, 8, 0xff);
        crtc(&mut v, 0x17, 0xe3);
        v
    }

    fn dword(v: &Vga, index: usize) -> [u8; 4] {
        v.vram[index * 4..index * 4 + 4].try_into().unwrap()
    }

    #[test]
    fn mask16_widens_bits() {
        assert_eq!(mask16(0), 0);
        assert_eq!(mask16(0b0101), 0x00ff_00ff);
        assert_eq!(mask16(0xff), 0xffff_ffff);
    }

    #[test]
    fn text_mode_odd_even_addressing() {
        // Mode 3 as SeaBIOS programs it: odd/even, map 0xb8000, word mode.
        let mut v = vga();
        seq(&mut v, 2, 0x03);
        seq(&mut v, 4, 0x02);
        gfx(&mut v, 5, 0x10);
        gfx(&mut v, 6, 0x0e);
        gfx(&mut v, 8, 0xff);
        crtc(&mut v, 0x17, 0xa3);
        v.window_write(0xb8000, b'A');
        v.window_write(0xb8001, 0x1e);
        v.window_write(0xb8002, b'B');
        assert_eq!(
            dword(&v, 0),
            [b'A', 0x1e, 0, 0],
            "char in plane 0, attribute in plane 1"
        );
        assert_eq!(dword(&v, 1), [b'B', 0, 0, 0], "one character per dword");
        assert_eq!(v.window_read(0xb8001), 0x1e);
        assert_eq!(v.window_read(0xb8002), b'B');
        // Outside the 32K of map 3.
        assert_eq!(v.window_read(0xa0000), 0xff);
        v.window_write(0xb0000, 1);
        assert_eq!(v.vram.iter().filter(|b| **b != 0).count(), 3);
    }

    #[test]
    fn font_load_reaches_plane_2_sequentially() {
        // What a BIOS does to load a font: plane 2 only, sequential, map 0xa0000.
        let mut v = vga();
        seq(&mut v, 2, 0x04);
        seq(&mut v, 4, 0x07);
        gfx(&mut v, 4, 0x02);
        gfx(&mut v, 5, 0x00);
        gfx(&mut v, 6, 0x04);
        gfx(&mut v, 8, 0xff);
        crtc(&mut v, 0x17, 0xa3);
        v.window_write(0xa0000 + 32 * 0x41 + 3, 0x7e);
        assert_eq!(v.vram[(32 * 0x41 + 3) * 4 + 2], 0x7e);
        assert_eq!(
            v.window_read(0xa0000 + 32 * 0x41 + 3),
            0x7e,
            "read map select 2"
        );
    }

    #[test]
    fn chain4_addressing_and_alias() {
        // Mode 13h: chain-4, double-word mode.
        let mut v = vga();
        seq(&mut v, 2, 0x0f);
        seq(&mut v, 4, 0x0e);
        gfx(&mut v, 5, 0x40);
        gfx(&mut v, 6, 0x05);
        crtc(&mut v, 0x14, 0x40);
        for i in 0..8u8 {
            v.window_write(0xa0000 + u64::from(i), i + 1);
        }
        assert_eq!(
            &v.vram[0..8],
            &[1, 2, 3, 4, 5, 6, 7, 8],
            "linear, QEMU's RAM alias"
        );
        assert_eq!(v.window_read(0xa0005), 6);
        // With a plane disabled QEMU goes through its MMIO path: plane = addr & 3.
        seq(&mut v, 2, 0x0b);
        v.window_write(0xa0009, 0x55); // plane 1: enabled
        v.window_write(0xa000a, 0x66); // plane 2: disabled
        assert_eq!(v.vram[9], 0x55);
        assert_eq!(v.vram[10], 0);
        assert_eq!(v.window_read(0xa0009), 0x55);
    }

    #[test]
    fn chain4_without_dword_mode_spreads_like_qemu() {
        let mut v = vga();
        seq(&mut v, 2, 0x0e); // not all planes: the MMIO path
        seq(&mut v, 4, 0x0e);
        gfx(&mut v, 6, 0x05);
        crtc(&mut v, 0x17, 0xe3); // byte mode, no DW: the address is not shifted
        v.window_write(0xa0005, 0x77); // plane 1, dword 4
        assert_eq!(v.vram[4 * 4 + 1], 0x77);
    }

    #[test]
    fn read_mode_0_loads_latches() {
        let mut v = planar();
        v.vram[40..44].copy_from_slice(&[0x11, 0x22, 0x33, 0x44]);
        gfx(&mut v, 4, 2);
        assert_eq!(v.window_read(0xa000a), 0x33);
        assert_eq!(v.latch, 0x4433_2211);
    }

    #[test]
    fn read_mode_1_compares_colours() {
        let mut v = planar();
        // Pixel bits: plane0 = 0b1100_0000, plane1 = 0b1010_0000, planes 2,3 = 0.
        v.vram[0..4].copy_from_slice(&[0xc0, 0xa0, 0x00, 0x00]);
        gfx(&mut v, 5, 0x08);
        gfx(&mut v, 2, 0x03); // colour 3
        gfx(&mut v, 7, 0x0f);
        assert_eq!(v.window_read(0xa0000), 0x80, "only pixel 0 has colour 3");
        gfx(&mut v, 7, 0x01); // compare plane 0 only
        assert_eq!(v.window_read(0xa0000), 0xc0);
        gfx(&mut v, 7, 0x00); // nothing compared: every pixel matches
        assert_eq!(v.window_read(0xa0000), 0xff);
    }

    #[test]
    fn write_mode_0_rotate_set_reset_function_bitmask() {
        let mut v = planar();
        v.window_write(0xa0000, 0x81);
        assert_eq!(dword(&v, 0), [0x81; 4]);
        // Rotate right by 1 with XOR against latches.
        v.window_read(0xa0000); // latch = 0x81 x4
        gfx(&mut v, 3, (3 << 3) | 1);
        v.window_write(0xa0000, 0x03); // rotated: 0x81; xor latch 0x81 -> 0
        assert_eq!(dword(&v, 0), [0; 4]);
        gfx(&mut v, 3, 0);
        // Set/reset on planes 0 and 2 with value 0b0001: plane 0 = ff, plane 2 = 00.
        gfx(&mut v, 0, 0x01);
        gfx(&mut v, 1, 0x05);
        v.window_read(0xa0001);
        v.window_write(0xa0001, 0x3c);
        assert_eq!(dword(&v, 1), [0xff, 0x3c, 0x00, 0x3c]);
        // Bit mask keeps the latched bits outside the mask.
        gfx(&mut v, 1, 0);
        gfx(&mut v, 8, 0x0f);
        v.window_read(0xa0001); // latch = ff 3c 00 3c
        v.window_write(0xa0001, 0x00);
        assert_eq!(dword(&v, 1), [0xf0, 0x30, 0x00, 0x30]);
        // AND and OR.
        gfx(&mut v, 8, 0xff);
        gfx(&mut v, 3, 1 << 3);
        v.window_read(0xa0001);
        v.window_write(0xa0001, 0x10);
        assert_eq!(dword(&v, 1), [0x10, 0x10, 0x00, 0x10]);
        gfx(&mut v, 3, 2 << 3);
        v.window_read(0xa0001);
        v.window_write(0xa0001, 0x01);
        assert_eq!(dword(&v, 1), [0x11, 0x11, 0x01, 0x11]);
    }

    #[test]
    fn write_mode_1_copies_latches() {
        let mut v = planar();
        v.vram[0..4].copy_from_slice(&[1, 2, 3, 4]);
        gfx(&mut v, 5, 0x01);
        gfx(&mut v, 8, 0x00); // ignored by mode 1
        v.window_read(0xa0000);
        v.window_write(0xa0007, 0xee);
        assert_eq!(dword(&v, 7), [1, 2, 3, 4]);
    }

    #[test]
    fn write_mode_2_colour_fill() {
        let mut v = planar();
        gfx(&mut v, 5, 0x02);
        gfx(&mut v, 8, 0x3c);
        v.window_read(0xa0002);
        v.window_write(0xa0002, 0x0a); // colour 0b1010
        assert_eq!(dword(&v, 2), [0x00, 0x3c, 0x00, 0x3c]);
    }

    #[test]
    fn write_mode_3_masks_with_rotated_data() {
        let mut v = planar();
        gfx(&mut v, 5, 0x03);
        gfx(&mut v, 0, 0x06); // set/reset colour 0b0110
        gfx(&mut v, 8, 0xf0);
        gfx(&mut v, 3, 4); // rotate by 4
        v.window_read(0xa0003);
        v.window_write(0xa0003, 0x3c); // rotated 0xc3, & 0xf0 = 0xc0
        assert_eq!(dword(&v, 3), [0x00, 0xc0, 0xc0, 0x00]);
    }

    #[test]
    fn plane_write_enable_masks_planes() {
        let mut v = planar();
        seq(&mut v, 2, 0x09);
        v.window_write(0xa0000, 0xff);
        assert_eq!(dword(&v, 0), [0xff, 0, 0, 0xff]);
    }

    #[test]
    fn memory_maps_decode_their_ranges() {
        let mut v = planar();
        gfx(&mut v, 6, 0x01); // map 0: 128K at 0xa0000
        v.window_write(0xbfffc, 0x5a);
        assert_eq!(v.vram[0x1fffc * 4], 0x5a);
        gfx(&mut v, 6, 0x09); // map 2: 32K at 0xb0000
        assert_eq!(v.window_read(0xa0000), 0xff);
        v.window_write(0xb0001, 0x42);
        assert_eq!(v.vram[4], 0x42);
        assert_eq!(v.window_read(0xb8000), 0xff);
    }

    #[test]
    fn lfb_is_bounded() {
        let mut v = vga();
        v.lfb_write(0x10, 7);
        assert_eq!(v.lfb_read(0x10), 7);
        v.lfb_write(u64::MAX, 1);
        assert_eq!(v.lfb_read(DEFAULT_VRAM_SIZE as u64), 0xff);
    }
}
