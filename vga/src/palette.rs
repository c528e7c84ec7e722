//! Colours: the DAC's 6-bit components widened to 8 bits the way QEMU does, and the 16-entry
//! palette that the attribute controller builds on top of the DAC for text and planar modes.

use crate::Vga;
use crate::regs::*;

/// A 6-bit DAC component widened to 8 bits as QEMU's `c6_to_8` does: shift left by two and
/// fill the two new bits with copies of the lowest bit (so 0x3f -> 0xff, 0x20 -> 0x80,
/// 0x15 -> 0x57). Not the "replicate the top bits" rule some hardware uses.
pub(crate) fn c6_to_8(v: u8) -> u8 {
    let v = v & 0x3f;
    let b = v & 1;
    (v << 2) | (b << 1) | b
}

/// 0x00RRGGBB: a BGRX pixel in little-endian memory.
pub(crate) fn rgb(r: u8, g: u8, b: u8) -> u32 {
    u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b)
}

impl Vga {
    fn dac_colour(&self, entry: usize, eight_bit: bool) -> u32 {
        let i = (entry & 0xff) * 3;
        let c = |k: usize| {
            let v = self.palette[i + k];
            if eight_bit { v } else { c6_to_8(v) }
        };
        rgb(c(0), c(1), c(2))
    }

    /// The 16 colours of text and planar modes: each attribute palette register picks a DAC
    /// entry, with the colour select register supplying the high bits (bits 7-6 always,
    /// bits 5-4 too when AR10 bit 7 asks). Always 6-bit, as on QEMU.
    pub(crate) fn palette16(&self) -> [u32; 16] {
        let mut out = [0; 16];
        for (i, o) in out.iter_mut().enumerate() {
            let v = self.ar[i];
            let entry = if self.ar[ATC_MODE] & 0x80 != 0 {
                ((self.ar[ATC_COLOR_PAGE] & 0x0f) << 4) | (v & 0x0f)
            } else {
                ((self.ar[ATC_COLOR_PAGE] & 0x0c) << 4) | (v & 0x3f)
            };
            *o = self.dac_colour(usize::from(entry), false);
        }
        out
    }

    /// The 256 DAC colours of 256-colour modes, 8-bit if VBE switched the DAC to 8 bits.
    pub(crate) fn palette256(&self) -> [u32; 256] {
        let mut out = [0; 256];
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.dac_colour(i, self.dac_8bit);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_VRAM_SIZE;

    #[test]
    fn six_to_eight_bit_expansion_is_qemus() {
        assert_eq!(c6_to_8(0), 0);
        assert_eq!(c6_to_8(0x3f), 0xff);
        assert_eq!(
            c6_to_8(0x2a),
            0xa8,
            "EGA 'light' level 0xaa on real DACs, 0xa8 on QEMU"
        );
        assert_eq!(c6_to_8(0x15), 0x57);
        assert_eq!(c6_to_8(0xff), 0xff, "the high two bits are ignored");
    }

    #[test]
    fn attribute_palette_and_colour_select() {
        let mut v = Vga::new(DEFAULT_VRAM_SIZE).unwrap();
        v.palette[0x3a * 3..0x3a * 3 + 3].copy_from_slice(&[0x3f, 0, 0x15]);
        v.palette[0x9a * 3..0x9a * 3 + 3].copy_from_slice(&[0, 0x3f, 0]);
        v.ar[1] = 0x3a;
        assert_eq!(v.palette16()[1], 0xff0057);
        // Colour select bits 3-2 become DAC bits 7-6.
        v.ar[ATC_COLOR_PAGE] = 0x08;
        v.ar[1] = 0x1a;
        assert_eq!(v.palette16()[1], 0x00ff00);
        // AR10 bit 7: colour select bits 3-0 become DAC bits 7-4.
        v.ar[ATC_MODE] = 0x80;
        v.ar[ATC_COLOR_PAGE] = 0x09;
        v.ar[1] = 0x0a;
        assert_eq!(v.palette16()[1], 0x00ff00);
    }

    #[test]
    fn dac_8bit_only_for_256_colours() {
        let mut v = Vga::new(DEFAULT_VRAM_SIZE).unwrap();
        v.palette[3..6].copy_from_slice(&[0x80, 0x40, 0x3f]);
        assert_eq!(v.palette256()[1], rgb(c6_to_8(0x80), c6_to_8(0x40), 0xff));
        v.dac_8bit = true;
        assert_eq!(v.palette256()[1], 0x80403f);
        v.ar[0] = 1;
        assert_eq!(v.palette16()[0], rgb(c6_to_8(0x80), c6_to_8(0x40), 0xff));
    }
}
