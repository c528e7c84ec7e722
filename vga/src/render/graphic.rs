//! Graphics modes: 4- and 16-colour planar, 256-colour chain-4, and the VBE direct-colour
//! depths, scanned out line by line as QEMU's `vga_draw_graphic` and `vga_draw_line*` do
//! (CGA/Hercules address interleave, multi-scan, split screen, horizontal panning).

use super::{RenderError, sized};
use crate::Vga;
use crate::regs::*;
use crate::surface::Surface;

/// How one scan line is fetched and expanded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LineKind {
    /// 4 colours, CGA-style interleaved pixel pairs (shift register mode 1).
    Planar2 {
        doubled: bool,
    },
    /// 16 colours, one bit per plane.
    Planar4 {
        doubled: bool,
    },
    /// 256 colours through the VGA's own (non-VBE) path: every pixel doubled.
    Chain4Doubled,
    /// VBE 8 bpp.
    Indexed8,
    Rgb15,
    Rgb16,
    Rgb24,
    Rgb32,
}

/// Pixels an n-bit component widens to, by repeating its top bits (pixman's conversion,
/// which is what QEMU's screendump of a shared 15/16 bpp surface goes through).
fn widen(v: u32, bits: u32) -> u8 {
    let v = v << (8 - bits);
    (v | v >> bits) as u8
}

impl Vga {
    pub(super) fn render_graphic(&self, surface: &mut Surface) -> Result<(), RenderError> {
        let params = self.display_params();
        let (width, height) = if self.vbe_enabled() {
            (
                u32::from(self.vbe_regs[VBE_DISPI_INDEX_XRES as usize]),
                u32::from(self.vbe_regs[VBE_DISPI_INDEX_YRES as usize]),
            )
        } else {
            (
                (u32::from(self.cr[CRTC_H_DISP]) + 1) * 8,
                self.vdisp_lines(),
            )
        };
        let depth = if self.vbe_enabled() {
            self.vbe_regs[VBE_DISPI_INDEX_BPP as usize]
        } else {
            0
        };
        let shift_control = (self.gr[GFX_MODE] >> 5) & 3;
        let double_clock = self.sr_eff(SEQ_CLOCK_MODE) & SR01_DOUBLE_CLOCK != 0;
        let (kind, bits) = match shift_control {
            0 => (
                LineKind::Planar4 {
                    doubled: double_clock,
                },
                4,
            ),
            1 => (
                LineKind::Planar2 {
                    doubled: double_clock,
                },
                4,
            ),
            _ => match depth {
                8 => (LineKind::Indexed8, 8),
                15 => (LineKind::Rgb15, 16),
                16 => (LineKind::Rgb16, 16),
                24 => (LineKind::Rgb24, 24),
                32 => (LineKind::Rgb32, 32),
                _ => (LineKind::Chain4Doubled, 4),
            },
        };
        let disp_width = match kind {
            LineKind::Planar2 { doubled: true } | LineKind::Planar4 { doubled: true } => width * 2,
            _ => width,
        };
        sized(surface, disp_width, height)?;

        let palette: Vec<u32> = match kind {
            LineKind::Planar2 { .. } | LineKind::Planar4 { .. } => self.palette16().to_vec(),
            LineKind::Chain4Doubled | LineKind::Indexed8 => self.palette256().to_vec(),
            _ => Vec::new(),
        };
        let double_scan = u32::from(self.cr[CRTC_MAX_SCAN] >> 7);
        let multi_scan = if self.cr[CRTC_MODE] & 1 != 0 {
            ((u32::from(self.cr[CRTC_MAX_SCAN] & 0x1f) + 1) << double_scan) - 1
        } else {
            // QEMU ignores the maximum scan line in CGA-compatible modes.
            double_scan
        };
        // Horizontal panning bit 3 only matters in text modes.
        let mut hpel = if bits <= 8 { params.hpel & 7 } else { 0 };
        let line_mask = u32::from(self.cr[CRTC_MODE] & 3) ^ 3;

        // One line with room for panning's extra 8 (doubled: 16) pixels.
        let mut buf = vec![0u32; disp_width as usize + 16];
        let mut addr1 = params.start_addr.wrapping_mul(4);
        let mut y1 = 0u32;
        let mut multi_run = multi_scan;
        for (y, row) in (0u32..).zip(surface.rows_mut()) {
            let mut addr = addr1;
            if self.cr[CRTC_MODE] & 1 == 0 {
                // CGA: odd scan lines come from the second bank (bit 13 of a word address).
                let shift = 14 + u32::from((self.cr[CRTC_MODE] >> 6) & 1);
                addr = (addr & !(1 << shift)) | ((y1 & 1) << shift);
            }
            if self.cr[CRTC_MODE] & 2 == 0 {
                // Hercules: four interleaved banks.
                addr = (addr & !0x8000) | ((y1 & 2) << 14);
            }
            let skip = self.draw_line(kind, &palette, &mut buf, addr, width, hpel);
            for (dst, src) in row.iter_mut().zip(buf.iter().skip(skip)) {
                *dst = *src;
            }
            if multi_run == 0 {
                if y1 & line_mask == line_mask {
                    addr1 = addr1.wrapping_add(params.line_offset);
                }
                y1 += 1;
                multi_run = multi_scan;
            } else {
                multi_run -= 1;
            }
            if y == params.line_compare {
                if params.hpel_split {
                    hpel = 0;
                }
                addr1 = 0;
            }
        }
        Ok(())
    }

    /// A dword of the four planes at a planar scan-out address (QEMU wraps these in the
    /// 256 KiB of the VGA proper).
    fn planes_at(&self, addr: u32) -> [u8; 4] {
        let a = addr & (VGA_VRAM_SIZE - 1) & !3;
        [
            self.vram_byte(a),
            self.vram_byte(a + 1),
            self.vram_byte(a + 2),
            self.vram_byte(a + 3),
        ]
    }

    /// A byte of the VBE framebuffer, wrapping in video memory like QEMU's `vga_read_byte`.
    fn fb_byte(&self, addr: u32) -> u8 {
        let mask = (self.vram.len() as u32).wrapping_sub(1);
        self.vram_byte(addr & mask)
    }

    /// Draws one scan line into `buf` and returns where its visible part starts (past the
    /// pixels horizontal panning shifts out).
    fn draw_line(
        &self,
        kind: LineKind,
        palette: &[u32],
        buf: &mut [u32],
        mut addr: u32,
        width: u32,
        hpel: u8,
    ) -> usize {
        let pal = |i: u32| palette.get(i as usize).copied().unwrap_or(0);
        let mut out = buf.iter_mut();
        let mut put = |px: u32, times: usize| {
            for _ in 0..times {
                if let Some(d) = out.next() {
                    *d = px;
                }
            }
        };
        match kind {
            LineKind::Planar4 { doubled } | LineKind::Planar2 { doubled } => {
                let hpel = u32::from(hpel & 7);
                let groups = (width + if hpel != 0 { 8 } else { 0 }) >> 3;
                let times = if doubled { 2 } else { 1 };
                let plane_enable = self.ar[ATC_PLANE_ENABLE] & 0x0f;
                for _ in 0..groups {
                    let mut p = self.planes_at(addr);
                    for (i, b) in p.iter_mut().enumerate() {
                        if plane_enable >> i & 1 == 0 {
                            *b = 0;
                        }
                    }
                    for x in 0..8u32 {
                        let c = if matches!(kind, LineKind::Planar4 { .. }) {
                            (0..4).fold(0, |c, plane| {
                                c | u32::from(p[plane] >> (7 - x) & 1) << plane
                            })
                        } else {
                            // Pixels 0-3 from planes 0 and 2, 4-7 from planes 1 and 3,
                            // two bits each.
                            let (lo, hi) = if x < 4 { (p[0], p[2]) } else { (p[1], p[3]) };
                            let sh = 6 - 2 * (x & 3);
                            u32::from(lo >> sh & 3) | u32::from(hi >> sh & 3) << 2
                        };
                        put(pal(c), times);
                    }
                    addr = addr.wrapping_add(4);
                }
                hpel as usize * times
            }
            LineKind::Chain4Doubled => {
                let mut hpel = u32::from((hpel >> 1) & 3);
                // QEMU moves the start address when the line does not wrap, and only pans
                // through its buffer when it does.
                if addr.wrapping_add((width >> 3) * 4) < VGA_VRAM_SIZE {
                    addr = addr.wrapping_add(hpel * 4);
                    hpel = 0;
                }
                let groups = (width + if hpel != 0 { 8 } else { 0 }) >> 3;
                for _ in 0..groups {
                    addr &= VGA_VRAM_SIZE - 1;
                    for k in 0..4 {
                        put(pal(u32::from(self.fb_byte(addr + k))), 2);
                    }
                    addr = addr.wrapping_add(4);
                }
                2 * hpel as usize
            }
            LineKind::Indexed8 => {
                let hpel = u32::from((hpel >> 1) & 3);
                let groups = (width + if hpel != 0 { 8 } else { 0 }) >> 3;
                for _ in 0..groups * 8 {
                    put(pal(u32::from(self.fb_byte(addr))), 1);
                    addr = addr.wrapping_add(1);
                }
                hpel as usize
            }
            LineKind::Rgb15 | LineKind::Rgb16 => {
                for _ in 0..width {
                    let v = u32::from(self.fb_byte(addr))
                        | u32::from(self.fb_byte(addr.wrapping_add(1))) << 8;
                    let (r, g, b) = if kind == LineKind::Rgb15 {
                        (
                            widen(v >> 10 & 0x1f, 5),
                            widen(v >> 5 & 0x1f, 5),
                            widen(v & 0x1f, 5),
                        )
                    } else {
                        (
                            widen(v >> 11 & 0x1f, 5),
                            widen(v >> 5 & 0x3f, 6),
                            widen(v & 0x1f, 5),
                        )
                    };
                    put(crate::palette::rgb(r, g, b), 1);
                    addr = addr.wrapping_add(2);
                }
                0
            }
            LineKind::Rgb24 | LineKind::Rgb32 => {
                let step = if kind == LineKind::Rgb24 { 3 } else { 4 };
                for _ in 0..width {
                    let b = self.fb_byte(addr);
                    let g = self.fb_byte(addr.wrapping_add(1));
                    let r = self.fb_byte(addr.wrapping_add(2));
                    put(crate::palette::rgb(r, g, b), 1);
                    addr = addr.wrapping_add(step);
                }
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::widen;
    use crate::regs::*;
    use crate::{DEFAULT_VRAM_SIZE, RenderOptions, Vga};

    fn base() -> Vga {
        let mut v = Vga::new(DEFAULT_VRAM_SIZE).unwrap();
        v.msr = 0x63;
        v.ar_index = 0x20;
        v.gr[GFX_MISC] = 0x05;
        v.cr[CRTC_MODE] = 0xe3;
        v.cr[CRTC_LINE_COMPARE] = 0xff;
        v.cr[CRTC_OVERFLOW] = 0x10;
        v.cr[CRTC_MAX_SCAN] = 0x40;
        v
    }

    #[test]
    fn widen_repeats_top_bits() {
        assert_eq!(widen(0x1f, 5), 0xff);
        assert_eq!(widen(0x10, 5), 0x84);
        assert_eq!(widen(0x3f, 6), 0xff);
        assert_eq!(widen(0x20, 6), 0x82);
    }

    #[test]
    fn mode_12h_planar_16_colours() {
        let mut v = base();
        v.cr[CRTC_H_DISP] = 79;
        v.cr[CRTC_V_DISP_END] = 0xdf;
        v.cr[CRTC_OVERFLOW] |= 0x02; // 480 lines
        v.cr[CRTC_OFFSET] = 40;
        v.ar[ATC_PLANE_ENABLE] = 0x0f;
        for i in 0..16u8 {
            v.ar[usize::from(i)] = i;
        }
        v.palette[5 * 3..5 * 3 + 3].copy_from_slice(&[0x3f, 0, 0x3f]);
        v.palette[2 * 3..2 * 3 + 3].copy_from_slice(&[0, 0x3f, 0]);
        // Pixel 0 = colour 5 (planes 0 and 2), pixel 1 = colour 2 (plane 1).
        v.vram[0..4].copy_from_slice(&[0x80, 0x40, 0x80, 0x00]);
        // Second scan line: address line_offset = 80 planar bytes = 320 vram bytes.
        v.vram[320..324].copy_from_slice(&[0x80, 0, 0, 0]);
        let s = v.screenshot(RenderOptions::default()).unwrap();
        assert_eq!((s.width(), s.height()), (640, 480));
        assert_eq!(s.pixel(0, 0), Some(0xff00ff));
        assert_eq!(s.pixel(1, 0), Some(0x00ff00));
        assert_eq!(s.pixel(2, 0), Some(0));
        assert_eq!(s.pixel(0, 1), Some(0), "colour 1 is black in this DAC");
        v.palette[3..6].copy_from_slice(&[0x3f, 0x3f, 0x3f]);
        let s = v.screenshot(RenderOptions::default()).unwrap();
        assert_eq!(s.pixel(0, 1), Some(0xffffff));
        // Colour plane enable masks planes out.
        v.ar[ATC_PLANE_ENABLE] = 0x0b;
        let s = v.screenshot(RenderOptions::default()).unwrap();
        assert_eq!(
            s.pixel(0, 0),
            Some(0xffffff),
            "plane 2 off: colour 5 becomes 1"
        );
    }

    #[test]
    fn horizontal_panning_shifts_planar_lines() {
        let mut v = base();
        v.cr[CRTC_H_DISP] = 1; // 16 pixels
        v.cr[CRTC_V_DISP_END] = 0;
        v.cr[CRTC_OVERFLOW] = 0x10;
        v.ar[ATC_PLANE_ENABLE] = 0x0f;
        v.ar[1] = 1;
        v.palette[3..6].copy_from_slice(&[0x3f, 0x3f, 0x3f]);
        v.vram[4] = 0x80; // pixel 8 is colour 1
        v.ar[ATC_PEL] = 3;
        let s = v.screenshot(RenderOptions::default()).unwrap();
        assert_eq!(s.pixel(5, 0), Some(0xffffff));
        assert_eq!(s.pixel(8, 0), Some(0));
    }

    #[test]
    fn mode_13h_chain4_doubled() {
        let mut v = base();
        v.gr[GFX_MODE] = 0x40;
        v.cr[CRTC_H_DISP] = 79;
        v.cr[CRTC_MAX_SCAN] = 0x41; // two scan lines per row
        v.cr[CRTC_V_DISP_END] = 0x8f;
        v.cr[CRTC_OVERFLOW] = 0x1f;
        v.cr[CRTC_OFFSET] = 40;
        v.cr[CRTC_UNDERLINE] = 0x40;
        v.cr[CRTC_MODE] = 0xa3;
        v.palette[7 * 3..7 * 3 + 3].copy_from_slice(&[0x3f, 0x20, 0]);
        v.vram[1] = 7;
        v.vram[320] = 7;
        let s = v.screenshot(RenderOptions::default()).unwrap();
        assert_eq!((s.width(), s.height()), (640, 400));
        let c = 0xff8000; // c6_to_8(0x20) = 0x80
        assert_eq!((s.pixel(2, 0), s.pixel(3, 0)), (Some(c), Some(c)));
        assert_eq!(s.pixel(2, 1), Some(c), "line doubled");
        assert_eq!(s.pixel(0, 2), Some(c), "next row at line offset 320");
        assert_eq!(s.pixel(0, 0), Some(0));
    }

    #[test]
    fn cga_interleave_for_mode_4() {
        let mut v = base();
        v.gr[GFX_MODE] = 0x30; // shift register mode 1 (4 colours)
        v.cr[CRTC_H_DISP] = 39;
        v.cr[CRTC_V_DISP_END] = 3;
        v.cr[CRTC_OVERFLOW] = 0x10;
        v.cr[CRTC_MODE] = 0xa2; // CGA addressing: odd lines from bit 13 (bit 14 here)
        v.cr[CRTC_OFFSET] = 20;
        v.ar[ATC_PLANE_ENABLE] = 0x03;
        v.ar[3] = 3;
        v.palette[9..12].copy_from_slice(&[0x3f, 0x3f, 0x3f]);
        v.vram[0x4000] = 0xc0; // odd line bank: pixel 0 = colour 3 (plane 0 bits 7-6)
        let s = v.screenshot(RenderOptions::default()).unwrap();
        assert_eq!(s.width(), 320);
        assert_eq!(s.pixel(0, 0), Some(0));
        assert_eq!(s.pixel(0, 1), Some(0xffffff));
    }

    #[test]
    fn vbe_direct_colour_depths() {
        let mut v = Vga::new(DEFAULT_VRAM_SIZE).unwrap();
        v.ar_index = 0x20;
        for (bpp, bytes, want) in [
            (32u16, &[0x11u8, 0x22, 0x33, 0x00][..], 0x332211),
            (24, &[0x11, 0x22, 0x33][..], 0x332211),
            (16, &[0x1f, 0xf8][..], 0xff00ff),
            (15, &[0x00, 0x7c][..], 0xff0000),
        ] {
            v.vbe_io_write(VBE_DISPI_IOPORT_INDEX, VBE_DISPI_INDEX_ENABLE);
            v.vbe_io_write(VBE_DISPI_IOPORT_DATA, 0);
            for (i, val) in [(1, 64), (2, 8), (3, bpp), (4, 1)] {
                v.vbe_io_write(VBE_DISPI_IOPORT_INDEX, i);
                v.vbe_io_write(VBE_DISPI_IOPORT_DATA, val);
            }
            let stride = 64 * usize::from(bpp.div_ceil(8));
            v.vram[stride..stride + bytes.len()].copy_from_slice(bytes);
            let s = v.screenshot(RenderOptions::default()).unwrap();
            assert_eq!((s.width(), s.height()), (64, 8), "{bpp}");
            assert_eq!(s.pixel(0, 1), Some(want), "{bpp} bpp");
            assert_eq!(s.pixel(0, 0), Some(0));
        }
    }

    #[test]
    fn vbe_8bpp_palette_and_panning() {
        let mut v = Vga::new(DEFAULT_VRAM_SIZE).unwrap();
        v.ar_index = 0x20;
        for (i, val) in [(1, 64), (2, 8), (3, 8), (4, 0x21)] {
            v.vbe_io_write(VBE_DISPI_IOPORT_INDEX, i);
            v.vbe_io_write(VBE_DISPI_IOPORT_DATA, val);
        }
        v.palette[9..12].copy_from_slice(&[0x80, 0x40, 0x20]);
        v.vram[64 * 2 + 5] = 3;
        let s = v.screenshot(RenderOptions::default()).unwrap();
        assert_eq!(s.pixel(5, 2), Some(0x804020), "8-bit DAC");
        v.vbe_io_write(VBE_DISPI_IOPORT_INDEX, VBE_DISPI_INDEX_Y_OFFSET);
        v.vbe_io_write(VBE_DISPI_IOPORT_DATA, 1);
        let s = v.screenshot(RenderOptions::default()).unwrap();
        assert_eq!(s.pixel(5, 1), Some(0x804020));
    }
}
