//! The Bochs VBE ("DISPI") interface on ports 0x1ce (index) and 0x1cf (data): the mode
//! registers, their clamping (QEMU's `vbe_fixup_regs`), the VGA registers a VBE mode forces
//! (`vbe_update_vgaregs`), the 64 KiB bank of the legacy window and the 8-bit DAC switch.

use crate::Vga;
use crate::regs::*;

impl Vga {
    fn vbe_reg(&self, index: u16) -> u16 {
        self.vbe_regs[usize::from(index)]
    }

    fn set_vbe_reg(&mut self, index: u16, val: u16) {
        if let Some(r) = self.vbe_regs.get_mut(usize::from(index)) {
            *r = val;
        }
    }

    /// A 16-bit read of the DISPI index (0x1ce) or data (0x1cf) port; other ports read 0.
    pub fn vbe_io_read(&mut self, port: u16) -> u16 {
        match port {
            VBE_DISPI_IOPORT_INDEX => self.vbe_index,
            VBE_DISPI_IOPORT_DATA => self.vbe_read_data(),
            _ => 0,
        }
    }

    /// A 16-bit write of the DISPI index (0x1ce) or data (0x1cf) port.
    pub fn vbe_io_write(&mut self, port: u16, val: u16) {
        match port {
            VBE_DISPI_IOPORT_INDEX => self.vbe_index = val,
            VBE_DISPI_IOPORT_DATA => self.vbe_write_data(val),
            _ => {}
        }
    }

    fn vbe_read_data(&self) -> u16 {
        let index = self.vbe_index;
        if index < VBE_DISPI_INDEX_NB {
            if self.vbe_reg(VBE_DISPI_INDEX_ENABLE) & VBE_DISPI_GETCAPS != 0 {
                match index {
                    VBE_DISPI_INDEX_XRES => return VBE_DISPI_MAX_XRES,
                    VBE_DISPI_INDEX_YRES => return VBE_DISPI_MAX_YRES,
                    VBE_DISPI_INDEX_BPP => return VBE_DISPI_MAX_BPP,
                    _ => {}
                }
            }
            self.vbe_reg(index)
        } else if index == VBE_DISPI_INDEX_VIDEO_MEMORY_64K {
            u16::try_from(self.vram.len() >> 16).unwrap_or(u16::MAX)
        } else {
            0
        }
    }

    fn vbe_write_data(&mut self, val: u16) {
        let index = self.vbe_index;
        match index {
            VBE_DISPI_INDEX_ID if (VBE_DISPI_ID0..=VBE_DISPI_ID5).contains(&val) => {
                self.set_vbe_reg(index, val);
            }
            VBE_DISPI_INDEX_XRES
            | VBE_DISPI_INDEX_YRES
            | VBE_DISPI_INDEX_BPP
            | VBE_DISPI_INDEX_VIRT_WIDTH
            | VBE_DISPI_INDEX_X_OFFSET
            | VBE_DISPI_INDEX_Y_OFFSET => {
                self.set_vbe_reg(index, val);
                self.vbe_fixup_regs();
                self.vbe_update_vga_regs();
            }
            VBE_DISPI_INDEX_BANK => {
                let bank = u32::from(val) & self.vbe_bank_mask;
                self.set_vbe_reg(index, bank as u16);
                self.bank_offset = bank << 16;
            }
            VBE_DISPI_INDEX_ENABLE => {
                if val & VBE_DISPI_ENABLED != 0 && !self.vbe_enabled() {
                    self.set_vbe_reg(VBE_DISPI_INDEX_VIRT_WIDTH, 0);
                    self.set_vbe_reg(VBE_DISPI_INDEX_X_OFFSET, 0);
                    self.set_vbe_reg(VBE_DISPI_INDEX_Y_OFFSET, 0);
                    let enable = self.vbe_reg(VBE_DISPI_INDEX_ENABLE) | VBE_DISPI_ENABLED;
                    self.set_vbe_reg(VBE_DISPI_INDEX_ENABLE, enable);
                    self.vbe_fixup_regs();
                    self.vbe_update_vga_regs();
                    if val & VBE_DISPI_NOCLEARMEM == 0 {
                        let len = (u32::from(self.vbe_reg(VBE_DISPI_INDEX_YRES)) as usize)
                            .saturating_mul(self.vbe_line_offset as usize)
                            .min(self.vram.len());
                        self.vram[..len].fill(0);
                    }
                } else {
                    self.bank_offset = 0;
                }
                self.dac_8bit = val & VBE_DISPI_8BIT_DAC != 0;
                self.set_vbe_reg(index, val);
            }
            _ => {}
        }
    }

    /// Clamps the mode registers to what video memory can hold, as QEMU does (the DISPI
    /// interface has no way to report an error), and derives the scan-out line length and
    /// start address.
    fn vbe_fixup_regs(&mut self) {
        if !self.vbe_enabled() {
            return;
        }
        let r = &mut self.vbe_regs;
        let bits: u32 = match r[VBE_DISPI_INDEX_BPP as usize] {
            b @ (4 | 8 | 16 | 24 | 32) => u32::from(b),
            15 => 16,
            _ => {
                r[VBE_DISPI_INDEX_BPP as usize] = 8;
                8
            }
        };
        let xres = &mut r[VBE_DISPI_INDEX_XRES as usize];
        *xres &= !7;
        if *xres == 0 {
            *xres = 8;
        }
        *xres = (*xres).min(VBE_DISPI_MAX_XRES);
        let xres = *xres;
        let vw = &mut r[VBE_DISPI_INDEX_VIRT_WIDTH as usize];
        *vw &= !7;
        *vw = (*vw).clamp(xres, VBE_DISPI_MAX_XRES.max(xres));
        let linelength = u32::from(*vw) * bits / 8; // >= 4: xres >= 8, bits >= 4
        let vbe_size = u32::try_from(self.vram.len()).unwrap_or(u32::MAX);
        let maxy = vbe_size / linelength.max(1);
        let yres = &mut r[VBE_DISPI_INDEX_YRES as usize];
        if *yres == 0 {
            *yres = 1;
        }
        *yres = (*yres).min(VBE_DISPI_MAX_YRES);
        if u32::from(*yres) > maxy {
            *yres = maxy as u16; // maxy < yres <= 12000
        }
        let yres = u32::from(*yres);
        let xoff = &mut r[VBE_DISPI_INDEX_X_OFFSET as usize];
        *xoff = (*xoff).min(VBE_DISPI_MAX_XRES);
        let yoff = &mut r[VBE_DISPI_INDEX_Y_OFFSET as usize];
        *yoff = (*yoff).min(VBE_DISPI_MAX_YRES);
        let visible = u64::from(yres) * u64::from(linelength);
        let mut offset = u64::from(r[VBE_DISPI_INDEX_X_OFFSET as usize]) * u64::from(bits) / 8
            + u64::from(r[VBE_DISPI_INDEX_Y_OFFSET as usize]) * u64::from(linelength);
        if offset + visible > u64::from(vbe_size) {
            r[VBE_DISPI_INDEX_Y_OFFSET as usize] = 0;
            offset = u64::from(r[VBE_DISPI_INDEX_X_OFFSET as usize]) * u64::from(bits) / 8;
            if offset + visible > u64::from(vbe_size) {
                r[VBE_DISPI_INDEX_X_OFFSET as usize] = 0;
                offset = 0;
            }
        }
        // QEMU stores maxy in a 16-bit register: truncation is its behaviour too.
        r[VBE_DISPI_INDEX_VIRT_HEIGHT as usize] = maxy as u16;
        self.vbe_line_offset = linelength;
        self.vbe_start_addr = (offset / 4) as u32; // offset + visible <= vbe_size
    }

    /// The bytes of video memory a VBE mode scans out (start address plus its visible
    /// lines), 0 without one: what a display must see of a linear framebuffer the guest
    /// writes behind the model's back. Never more than video memory.
    pub fn vbe_scanout_len(&self) -> usize {
        if !self.vbe_enabled() {
            return 0;
        }
        let visible =
            u64::from(self.vbe_reg(VBE_DISPI_INDEX_YRES)) * u64::from(self.vbe_line_offset);
        let end = u64::from(self.vbe_start_addr) * 4 + visible;
        usize::try_from(end)
            .unwrap_or(usize::MAX)
            .min(self.vram.len())
    }

    /// While a VBE mode is on, QEMU re-forces the VGA registers it depends on after every
    /// VBE, graphics-controller or CRTC write: graphics mode with the 64 KiB map at 0xa0000,
    /// no CGA addressing, the line length and the size; chain-4 for 8 bpp and up.
    pub(crate) fn vbe_update_vga_regs(&mut self) {
        if !self.vbe_enabled() {
            return;
        }
        self.gr[GFX_MISC] = (self.gr[GFX_MISC] & !0x0c) | 0x04 | GR06_GRAPHICS_MODE;
        self.cr[CRTC_MODE] |= 3;
        self.cr[CRTC_OFFSET] = (self.vbe_line_offset >> 3) as u8;
        self.cr[CRTC_H_DISP] = ((self.vbe_reg(VBE_DISPI_INDEX_XRES) >> 3) as u8).wrapping_sub(1);
        let h = self.vbe_reg(VBE_DISPI_INDEX_YRES).wrapping_sub(1);
        self.cr[CRTC_V_DISP_END] = h as u8;
        self.cr[CRTC_OVERFLOW] =
            (self.cr[CRTC_OVERFLOW] & !0x42) | ((h >> 7) & 0x02) as u8 | ((h >> 3) & 0x40) as u8;
        self.cr[CRTC_LINE_COMPARE] = 0xff;
        self.cr[CRTC_OVERFLOW] |= 0x10;
        self.cr[CRTC_MAX_SCAN] |= 0x40;
        let shift_control = if self.vbe_reg(VBE_DISPI_INDEX_BPP) == 4 {
            self.sr_vbe[SEQ_CLOCK_MODE] &= !SR01_DOUBLE_CLOCK;
            0
        } else {
            self.sr_vbe[SEQ_MEMORY_MODE] |= SR04_CHN_4M;
            self.sr_vbe[SEQ_PLANE_WRITE] |= SR02_ALL_PLANES;
            2
        };
        self.gr[GFX_MODE] = (self.gr[GFX_MODE] & !0x60) | (shift_control << 5);
        self.cr[CRTC_MAX_SCAN] &= !0x9f;
    }
}

#[cfg(test)]
mod tests {
    use crate::regs::*;
    use crate::{DEFAULT_VRAM_SIZE, Vga};

    fn dispi(v: &mut Vga, index: u16, val: u16) {
        v.vbe_io_write(VBE_DISPI_IOPORT_INDEX, index);
        v.vbe_io_write(VBE_DISPI_IOPORT_DATA, val);
    }

    fn read(v: &mut Vga, index: u16) -> u16 {
        v.vbe_io_write(VBE_DISPI_IOPORT_INDEX, index);
        v.vbe_io_read(VBE_DISPI_IOPORT_DATA)
    }

    fn mode(v: &mut Vga, x: u16, y: u16, bpp: u16, enable: u16) {
        dispi(v, VBE_DISPI_INDEX_ENABLE, 0);
        dispi(v, VBE_DISPI_INDEX_XRES, x);
        dispi(v, VBE_DISPI_INDEX_YRES, y);
        dispi(v, VBE_DISPI_INDEX_BPP, bpp);
        dispi(v, VBE_DISPI_INDEX_ENABLE, enable);
    }

    #[test]
    fn id_caps_and_memory_size() {
        let mut v = Vga::new(DEFAULT_VRAM_SIZE).unwrap();
        assert_eq!(read(&mut v, VBE_DISPI_INDEX_ID), 0xb0c5);
        dispi(&mut v, VBE_DISPI_INDEX_ID, 0xb0c0);
        assert_eq!(read(&mut v, VBE_DISPI_INDEX_ID), 0xb0c0);
        dispi(&mut v, VBE_DISPI_INDEX_ID, 0x1234);
        assert_eq!(
            read(&mut v, VBE_DISPI_INDEX_ID),
            0xb0c0,
            "unknown IDs are ignored"
        );
        assert_eq!(read(&mut v, VBE_DISPI_INDEX_VIDEO_MEMORY_64K), 256);
        dispi(&mut v, VBE_DISPI_INDEX_ENABLE, VBE_DISPI_GETCAPS);
        assert_eq!(read(&mut v, VBE_DISPI_INDEX_XRES), 16000);
        assert_eq!(read(&mut v, VBE_DISPI_INDEX_YRES), 12000);
        assert_eq!(read(&mut v, VBE_DISPI_INDEX_BPP), 32);
        assert_eq!(read(&mut v, 0x20), 0);
        assert_eq!(v.vbe_io_read(VBE_DISPI_IOPORT_INDEX), 0x20);
    }

    #[test]
    fn enable_sets_up_a_linear_mode() {
        let mut v = Vga::new(DEFAULT_VRAM_SIZE).unwrap();
        v.vram[0] = 0xaa;
        mode(&mut v, 1024, 768, 32, VBE_DISPI_ENABLED | 0x40);
        assert!(v.vbe_enabled());
        assert_eq!(v.vram[0], 0, "enable clears the screen");
        assert_eq!(v.vbe_line_offset, 4096);
        assert_eq!(read(&mut v, VBE_DISPI_INDEX_VIRT_WIDTH), 1024);
        assert_eq!(read(&mut v, VBE_DISPI_INDEX_VIRT_HEIGHT), 4096);
        assert_eq!(v.gr[GFX_MISC] & 0x0d, 0x05, "graphics, 64K map at 0xa0000");
        assert_eq!(v.sr_eff(SEQ_MEMORY_MODE) & SR04_CHN_4M, SR04_CHN_4M);
        assert_eq!(
            v.sr[SEQ_MEMORY_MODE], 0,
            "the guest's own SR4 is left alone"
        );
        // The guest cannot undo the forced registers while VBE is on.
        v.io_write(GFX_I, 6);
        v.io_write(GFX_D, 0x0e);
        assert_eq!(v.gr[GFX_MISC] & 0x0d, 0x05);
        // Panning moves the start address.
        dispi(&mut v, VBE_DISPI_INDEX_Y_OFFSET, 10);
        assert_eq!(v.vbe_start_addr, 10 * 4096 / 4);
        // Disable keeps memory; NOCLEARMEM keeps it on enable too.
        v.vram[0] = 0x55;
        dispi(&mut v, VBE_DISPI_INDEX_ENABLE, 0);
        dispi(
            &mut v,
            VBE_DISPI_INDEX_ENABLE,
            VBE_DISPI_ENABLED | VBE_DISPI_NOCLEARMEM,
        );
        assert_eq!(v.vram[0], 0x55);
    }

    #[test]
    fn fixup_clamps_to_memory() {
        let mut v = Vga::new(1 << 20).unwrap();
        mode(&mut v, 1027, 0, 7, VBE_DISPI_ENABLED);
        assert_eq!(
            read(&mut v, VBE_DISPI_INDEX_XRES),
            1024,
            "width rounded to 8"
        );
        assert_eq!(read(&mut v, VBE_DISPI_INDEX_BPP), 8, "bad depth becomes 8");
        assert_eq!(read(&mut v, VBE_DISPI_INDEX_YRES), 1);
        dispi(&mut v, VBE_DISPI_INDEX_YRES, 4000);
        assert_eq!(
            read(&mut v, VBE_DISPI_INDEX_YRES),
            1024,
            "1 MiB / 1024 bytes a line"
        );
        dispi(&mut v, VBE_DISPI_INDEX_Y_OFFSET, 5);
        assert_eq!(read(&mut v, VBE_DISPI_INDEX_Y_OFFSET), 0, "no room to pan");
        dispi(&mut v, VBE_DISPI_INDEX_VIRT_WIDTH, 65535);
        assert_eq!(read(&mut v, VBE_DISPI_INDEX_VIRT_WIDTH), 16000);
        assert!(read(&mut v, VBE_DISPI_INDEX_YRES) <= 65);
    }

    #[test]
    fn bank_selects_64k_of_the_window() {
        let mut v = Vga::new(DEFAULT_VRAM_SIZE).unwrap();
        mode(&mut v, 640, 480, 8, VBE_DISPI_ENABLED);
        dispi(&mut v, VBE_DISPI_INDEX_BANK, 3);
        v.window_write(0xa0010, 0x77);
        assert_eq!(v.vram[3 * 65536 + 0x10], 0x77);
        assert_eq!(v.window_read(0xa0010), 0x77);
        assert_eq!(
            v.window_read(0xb0000),
            0xff,
            "only 64K of the window is mapped"
        );
        dispi(&mut v, VBE_DISPI_INDEX_BANK, 0xffff);
        assert_eq!(
            read(&mut v, VBE_DISPI_INDEX_BANK),
            255,
            "bank masked to memory"
        );
        v.window_write(0xaffff, 1);
        assert_eq!(v.vram[(16 << 20) - 1], 1);
    }

    #[test]
    fn eight_bit_dac_follows_enable() {
        let mut v = Vga::new(DEFAULT_VRAM_SIZE).unwrap();
        dispi(
            &mut v,
            VBE_DISPI_INDEX_ENABLE,
            VBE_DISPI_ENABLED | VBE_DISPI_8BIT_DAC,
        );
        assert!(v.dac_8bit);
        dispi(&mut v, VBE_DISPI_INDEX_ENABLE, VBE_DISPI_ENABLED);
        assert!(!v.dac_8bit);
    }
}
