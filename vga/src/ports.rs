//! The legacy VGA I/O ports (0x3b0-0x3df): index/data pairs, the attribute controller's
//! flip-flop, the DAC's index rules and input status 1.

use crate::Vga;
use crate::regs::*;

impl Vga {
    /// Ports of the other decode (mono 0x3bx while the misc output selects colour, and the
    /// reverse) are not decoded: reads float to 0xff, writes are dropped.
    fn port_invalid(&self, port: u16) -> bool {
        if self.msr & MIS_COLOR != 0 {
            (0x3b0..=0x3bf).contains(&port)
        } else {
            (0x3d0..=0x3df).contains(&port)
        }
    }

    /// An 8-bit read of a VGA port. Reads have side effects: input status 1 resets the
    /// attribute flip-flop, DAC data reads advance the read index.
    pub fn io_read(&mut self, port: u16) -> u8 {
        if self.port_invalid(port) {
            return 0xff;
        }
        match port {
            ATT_W => {
                if self.ar_flip_flop {
                    0
                } else {
                    self.ar_index
                }
            }
            ATT_R => self
                .ar
                .get(usize::from(self.ar_index & 0x1f))
                .copied()
                .unwrap_or(0),
            MIS_W => self.st00,
            SEQ_I => self.sr_index,
            SEQ_D => self.sr[usize::from(self.sr_index & 7)],
            PEL_IR => self.dac_state,
            PEL_IW => self.dac_write_index,
            PEL_D => {
                let i = usize::from(self.dac_read_index) * 3 + usize::from(self.dac_sub_index);
                let val = self.palette.get(i).copied().unwrap_or(0);
                self.dac_sub_index += 1;
                if self.dac_sub_index >= 3 {
                    self.dac_sub_index = 0;
                    self.dac_read_index = self.dac_read_index.wrapping_add(1);
                }
                val
            }
            FTC_R => self.fcr,
            MIS_R => self.msr,
            GFX_I => self.gr_index,
            GFX_D => self.gr[usize::from(self.gr_index & 0x0f)],
            CRT_IM | CRT_IC => self.cr_index,
            CRT_DM | CRT_DC => self.cr[usize::from(self.cr_index)],
            IS1_RM | IS1_RC => {
                // QEMU's "dumb retrace": toggle retrace and display-enable on every read so
                // that polling loops make progress, deterministically.
                self.st01 ^= ST01_V_RETRACE | ST01_DISP_ENABLE;
                self.ar_flip_flop = false;
                self.st01
            }
            _ => 0,
        }
    }

    /// An 8-bit write to a VGA port.
    pub fn io_write(&mut self, port: u16, val: u8) {
        if self.port_invalid(port) {
            return;
        }
        match port {
            ATT_W => self.attribute_write(val),
            MIS_W => self.msr = val & !0x10,
            SEQ_I => self.sr_index = val & 7,
            SEQ_D => {
                let i = usize::from(self.sr_index & 7);
                self.sr[i] = val & SR_MASK[i];
            }
            PEL_IR => {
                self.dac_read_index = val;
                self.dac_sub_index = 0;
                self.dac_state = 3;
            }
            PEL_IW => {
                self.dac_write_index = val;
                self.dac_sub_index = 0;
                self.dac_state = 0;
            }
            PEL_D => {
                let sub = usize::from(self.dac_sub_index.min(2));
                self.dac_cache[sub] = val;
                self.dac_sub_index += 1;
                if self.dac_sub_index >= 3 {
                    let i = usize::from(self.dac_write_index) * 3;
                    if let Some(entry) = self.palette.get_mut(i..i + 3) {
                        entry.copy_from_slice(&self.dac_cache);
                    }
                    self.dac_sub_index = 0;
                    self.dac_write_index = self.dac_write_index.wrapping_add(1);
                }
            }
            GFX_I => self.gr_index = val & 0x0f,
            GFX_D => {
                let i = usize::from(self.gr_index & 0x0f);
                self.gr[i] = val & GR_MASK[i];
                self.vbe_update_vga_regs();
            }
            CRT_IM | CRT_IC => self.cr_index = val,
            CRT_DM | CRT_DC => self.crtc_write(val),
            IS1_RM | IS1_RC => self.fcr = val & 0x10,
            _ => {}
        }
    }

    fn attribute_write(&mut self, val: u8) {
        if !self.ar_flip_flop {
            self.ar_index = val & 0x3f;
        } else {
            let index = usize::from(self.ar_index & 0x1f);
            let masked = match index {
                0x00..=0x0f => Some(val & 0x3f),
                ATC_MODE => Some(val & !0x10),
                ATC_OVERSCAN => Some(val),
                ATC_PLANE_ENABLE => Some(val & !0xc0),
                ATC_PEL | ATC_COLOR_PAGE => Some(val & !0xf0),
                _ => None,
            };
            if let (Some(v), Some(reg)) = (masked, self.ar.get_mut(index)) {
                *reg = v;
            }
        }
        self.ar_flip_flop = !self.ar_flip_flop;
    }

    fn crtc_write(&mut self, val: u8) {
        let index = usize::from(self.cr_index);
        // CR11 bit 7 write-protects CR0-CR7, except CR7's line-compare bit 4.
        if self.cr[CRTC_V_SYNC_END] & CR11_LOCK_CR0_CR7 != 0 && index <= CRTC_OVERFLOW {
            if index == CRTC_OVERFLOW {
                self.cr[CRTC_OVERFLOW] = (self.cr[CRTC_OVERFLOW] & !0x10) | (val & 0x10);
                self.vbe_update_vga_regs();
            }
            return;
        }
        self.cr[index] = val;
        self.vbe_update_vga_regs();
    }
}

#[cfg(test)]
mod tests {
    use crate::regs::*;
    use crate::{DEFAULT_VRAM_SIZE, Vga};

    fn vga() -> Vga {
        let mut v = Vga::new(DEFAULT_VRAM_SIZE).unwrap();
        v.io_write(MIS_W, 0x67); // colour decode, as every BIOS sets it
        v
    }

    #[test]
    fn sequencer_index_and_masks() {
        let mut v = vga();
        v.io_write(SEQ_I, 0x0c); // index wraps to 3 bits
        assert_eq!(v.io_read(SEQ_I), 4);
        v.io_write(SEQ_D, 0xff);
        assert_eq!(v.io_read(SEQ_D), 0x0e, "SR4 keeps only its writable bits");
        v.io_write(SEQ_I, 2);
        v.io_write(SEQ_D, 0xff);
        assert_eq!(v.io_read(SEQ_D), 0x0f);
    }

    #[test]
    fn graphics_controller_index_and_masks() {
        let mut v = vga();
        v.io_write(GFX_I, 0x15);
        assert_eq!(v.io_read(GFX_I), 5);
        v.io_write(GFX_D, 0xff);
        assert_eq!(v.io_read(GFX_D), 0x7b);
        v.io_write(GFX_I, 8);
        v.io_write(GFX_D, 0xa5);
        assert_eq!(v.io_read(GFX_D), 0xa5);
    }

    #[test]
    fn crtc_write_protect_keeps_line_compare_bit() {
        let mut v = vga();
        v.io_write(CRT_IC, 0x01);
        v.io_write(CRT_DC, 0x4f);
        v.io_write(CRT_IC, 0x11);
        v.io_write(CRT_DC, 0x80); // lock CR0-7
        v.io_write(CRT_IC, 0x01);
        v.io_write(CRT_DC, 0x27);
        assert_eq!(v.io_read(CRT_DC), 0x4f, "CR1 is locked");
        v.io_write(CRT_IC, 0x07);
        v.io_write(CRT_DC, 0xff);
        assert_eq!(v.io_read(CRT_DC), 0x10, "only CR7 bit 4 passes the lock");
        v.io_write(CRT_IC, 0x0e);
        v.io_write(CRT_DC, 0x12);
        assert_eq!(v.io_read(CRT_DC), 0x12, "CR8+ are not locked");
    }

    #[test]
    fn mono_and_colour_decode() {
        let mut v = Vga::new(DEFAULT_VRAM_SIZE).unwrap();
        // Reset: mono decode, the colour ports float.
        v.io_write(CRT_IC, 0x0e);
        assert_eq!(v.io_read(CRT_IC), 0xff);
        v.io_write(CRT_IM, 0x0e);
        assert_eq!(v.io_read(CRT_IM), 0x0e);
        v.io_write(MIS_W, 0x01);
        assert_eq!(v.io_read(MIS_R), 0x01);
        assert_eq!(v.io_read(CRT_IM), 0xff);
        assert_eq!(v.io_read(CRT_IC), 0x0e, "one CRTC behind both decodes");
    }

    #[test]
    fn attribute_flip_flop_and_input_status_reset() {
        let mut v = vga();
        v.io_write(ATT_W, 0x01); // index
        v.io_write(ATT_W, 0x3f); // data for AR1
        assert_eq!(
            v.io_read(ATT_W),
            0x01,
            "reads the index while the flip-flop is at index"
        );
        v.io_write(ATT_W, 0x21); // index again, PAS set
        assert_eq!(
            v.io_read(ATT_W),
            0,
            "reads 0 while the flip-flop is at data"
        );
        assert_eq!(v.io_read(ATT_R), 0x3f);
        v.io_write(ATT_W, 0x00); // data: AR1 = 0
        assert_eq!(v.ar[1], 0);
        v.io_write(ATT_W, 0x10); // index; the flip-flop now expects data
        // Reading input status 1 puts the flip-flop back to index.
        let s1 = v.io_read(IS1_RC);
        let s2 = v.io_read(IS1_RC);
        assert_eq!(
            s1 ^ s2,
            ST01_V_RETRACE | ST01_DISP_ENABLE,
            "retrace toggles"
        );
        v.io_write(ATT_W, 0x32);
        assert_eq!(v.ar_index, 0x32, "taken as an index, not as AR10 data");
        assert_eq!(v.ar[0x10], 0);
        v.io_write(ATT_W, 0xff);
        assert_eq!(v.ar[0x12], 0x3f, "plane enable keeps its low 6 bits");
        v.io_write(ATT_W, 0x10);
        v.io_write(ATT_W, 0xff);
        assert_eq!(v.ar[0x10], 0xef, "mode control drops bit 4");
        v.io_write(ATT_W, 0x1f); // no register 0x1f: write ignored, flip-flop still turns
        v.io_write(ATT_W, 0x55);
        assert_eq!(v.io_read(ATT_W), 0x1f);
        assert_eq!(v.io_read(ATT_R), 0);
    }

    #[test]
    fn dac_write_then_read_index_rules() {
        let mut v = vga();
        v.io_write(PEL_IW, 0xff);
        for c in [1, 2, 3, 4, 5, 6] {
            v.io_write(PEL_D, c);
        }
        // Entry 255 then entry 0 (the write index wraps).
        assert_eq!(&v.palette[765..768], &[1, 2, 3]);
        assert_eq!(&v.palette[0..3], &[4, 5, 6]);
        assert_eq!(v.io_read(PEL_IW), 1);
        assert_eq!(v.io_read(PEL_IR), 0, "DAC state: write mode");
        // A partial triple is not committed until its third byte.
        v.io_write(PEL_IW, 7);
        v.io_write(PEL_D, 9);
        v.io_write(PEL_D, 9);
        assert_eq!(&v.palette[21..24], &[0, 0, 0]);
        // Setting the read index restarts the sub-index and switches the state.
        v.io_write(PEL_IR, 255);
        assert_eq!(v.io_read(PEL_IR), 3);
        let got: Vec<u8> = (0..6).map(|_| v.io_read(PEL_D)).collect();
        assert_eq!(got, [1, 2, 3, 4, 5, 6]);
        // Writing the write index resets the sub-index of the pending triple.
        v.io_write(PEL_IW, 7);
        for c in [10, 11, 12] {
            v.io_write(PEL_D, c);
        }
        assert_eq!(&v.palette[21..24], &[10, 11, 12]);
    }

    #[test]
    fn feature_control_and_misc() {
        let mut v = vga();
        v.io_write(IS1_RC, 0xff);
        assert_eq!(v.io_read(FTC_R), 0x10);
        v.io_write(MIS_W, 0xff);
        assert_eq!(v.io_read(MIS_R), 0xef);
        assert_eq!(v.io_read(MIS_W), 0, "input status 0");
        assert_eq!(v.io_read(0x3c6), 0, "PEL mask is not modelled, as on QEMU");
    }
}
