//! Text modes: characters and attributes in planes 0 and 1 (one cell per dword), the font
//! in plane 2, drawn the way QEMU's `vga_draw_text` and `vga_draw_glyph*` draw them.

use super::{RenderError, RenderOptions, sized};
use crate::Vga;
use crate::regs::*;
use crate::surface::Surface;

/// QEMU's `CH_ATTR_SIZE`: it draws no text mode with more cells than this.
const MAX_CELLS: u32 = 160 * 100;

/// Cell geometry of the current text mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TextGeometry {
    pub columns: u32,
    pub rows: u32,
    /// Pixels per cell across: 8, 9, or 16 (double clock; QEMU draws no 18).
    pub cell_width: u32,
    pub cell_height: u32,
}

impl Vga {
    pub(crate) fn text_geometry(&self) -> TextGeometry {
        let cell_height = u32::from(self.cr[CRTC_MAX_SCAN] & 0x1f) + 1;
        let clock = self.sr_eff(SEQ_CLOCK_MODE);
        let cell_width = if clock & SR01_DOUBLE_CLOCK != 0 {
            16
        } else if clock & SR01_CHAR_CLK_8DOTS != 0 {
            8
        } else {
            9
        };
        let columns = u32::from(self.cr[CRTC_H_DISP]) + 1;
        // QEMU's special case for the CGA 160x100x16 trick (CR6 = 100).
        let rows = if self.cr[CRTC_V_TOTAL] == 100 {
            100
        } else {
            self.vdisp_lines() / cell_height
        };
        TextGeometry {
            columns,
            rows,
            cell_width,
            cell_height,
        }
    }

    /// Plane-2 byte offsets of the two fonts character map select (SR3) chooses; attribute
    /// bit 3 picks between them.
    fn font_offsets(&self) -> [u32; 2] {
        let v = u32::from(self.sr_eff(SEQ_CHARACTER_MAP));
        let a = ((v >> 4) & 1) | ((v << 1) & 6);
        let b = ((v >> 5) & 1) | ((v >> 1) & 6);
        [a * 8192 * 4 + 2, b * 8192 * 4 + 2]
    }

    pub(super) fn render_text(
        &self,
        surface: &mut Surface,
        opts: RenderOptions,
    ) -> Result<(), RenderError> {
        let g = self.text_geometry();
        let cells = g.columns * g.rows; // <= 256 * 1024
        if cells <= 1 || cells > MAX_CELLS {
            return Ok(());
        }
        sized(surface, g.columns * g.cell_width, g.rows * g.cell_height)?;
        let params = self.display_params();
        let palette = self.palette16();
        let fonts = self.font_offsets();
        let line_graphics = self.ar[ATC_MODE] & 0x04 != 0;
        let cursor_addr = (u32::from(self.cr[CRTC_CURSOR_HI]) << 8
            | u32::from(self.cr[CRTC_CURSOR_LO]))
        .wrapping_mul(4);
        let cursor_on = self.cr[CRTC_CURSOR_START] & 0x20 == 0 && opts.cursor_visible;
        let cursor_start = u32::from(self.cr[CRTC_CURSOR_START] & 0x1f);
        let cursor_last = u32::from(self.cr[CRTC_CURSOR_END] & 0x1f).min(g.cell_height - 1);

        let mut offset = params.start_addr.wrapping_mul(4);
        let mut line = 0u32;
        for cy in 0..g.rows {
            let mut src = offset;
            for cx in 0..g.columns {
                let ch = self.vram_byte(src);
                let attr = self.vram_byte(src.wrapping_add(1));
                let font = fonts[usize::from((attr >> 3) & 1)] + 128 * u32::from(ch);
                let cell = Cell {
                    x: cx * g.cell_width,
                    y: cy * g.cell_height,
                    width: g.cell_width,
                    fg: palette[usize::from(attr & 0x0f)],
                    bg: palette[usize::from(attr >> 4)],
                    // QEMU extends the 8th column into the 9th for 0xb0-0xdf (the real
                    // VGA does it for 0xc0-0xdf only) when AR10 enables line graphics.
                    dup9: line_graphics && (0xb0..=0xdf).contains(&ch),
                };
                for row in 0..g.cell_height {
                    let bits = self.vram_byte(font.wrapping_add(row * 4));
                    cell.draw_row(surface, row, bits);
                }
                if src == cursor_addr && cursor_on && cursor_start <= cursor_last {
                    // QEMU's cursor is a solid block of the cell's foreground colour
                    // (all 9 columns in 9-dot modes).
                    let block = Cell { dup9: true, ..cell };
                    for row in cursor_start..=cursor_last {
                        block.draw_row(surface, row, 0xff);
                    }
                }
                src = src.wrapping_add(4);
            }
            offset = offset.wrapping_add(params.line_offset);
            let next_line = line + g.cell_height;
            if line < params.line_compare && next_line >= params.line_compare {
                offset = 0;
            }
            line = next_line;
        }
        Ok(())
    }
}

/// One character cell being drawn.
#[derive(Clone, Copy)]
struct Cell {
    x: u32,
    y: u32,
    width: u32,
    fg: u32,
    bg: u32,
    dup9: bool,
}

impl Cell {
    /// One scan line of the cell from its 8 font bits (bit 7 = leftmost pixel).
    fn draw_row(&self, surface: &mut Surface, row: u32, bits: u8) {
        let Some(line) = surface.row_mut(self.y + row) else {
            return;
        };
        let start = self.x as usize;
        let Some(dst) = line.get_mut(start..start + self.width as usize) else {
            return;
        };
        let colour = |bit: u32| {
            if bits >> (7 - bit) & 1 != 0 {
                self.fg
            } else {
                self.bg
            }
        };
        match self.width {
            16 => {
                for (i, px) in dst.iter_mut().enumerate() {
                    *px = colour(i as u32 / 2);
                }
            }
            8 => {
                for (i, px) in dst.iter_mut().enumerate() {
                    *px = colour(i as u32);
                }
            }
            _ => {
                for (i, px) in dst.iter_mut().take(8).enumerate() {
                    *px = colour(i as u32);
                }
                if let Some(ninth) = dst.get_mut(8) {
                    *ninth = if self.dup9 { colour(7) } else { self.bg };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::regs::*;
    use crate::{DEFAULT_VRAM_SIZE, RenderOptions, Surface, Vga};

    /// 80x25 text with 16-line cells, 9 dots, colour palette 0-15 = DAC 0-15 (grey ramp).
    fn text_mode() -> Vga {
        let mut v = Vga::new(DEFAULT_VRAM_SIZE).unwrap();
        v.msr = 0x67;
        v.sr[1] = 0x00;
        v.cr[CRTC_H_DISP] = 79;
        v.cr[CRTC_MAX_SCAN] = 0x4f;
        v.cr[CRTC_V_DISP_END] = 0x8f;
        v.cr[CRTC_OVERFLOW] = 0x1f;
        v.cr[CRTC_OFFSET] = 40;
        v.cr[CRTC_LINE_COMPARE] = 0xff;
        v.cr[CRTC_CURSOR_START] = 0x0d;
        v.cr[CRTC_CURSOR_END] = 0x0e;
        v.ar_index = 0x20;
        v.ar[ATC_MODE] = 0x0c;
        for i in 0..16u8 {
            v.ar[usize::from(i)] = i;
            v.palette[usize::from(i) * 3..usize::from(i) * 3 + 3].fill(i * 4);
        }
        v
    }

    fn put(v: &mut Vga, cell: u32, ch: u8, attr: u8) {
        v.vram[cell as usize * 4] = ch;
        v.vram[cell as usize * 4 + 1] = attr;
    }

    fn glyph(v: &mut Vga, ch: u8, rows: &[u8]) {
        for (r, bits) in rows.iter().enumerate() {
            v.vram[2 + 128 * usize::from(ch) + 4 * r] = *bits;
        }
    }

    fn grey(i: u8) -> u32 {
        let c = u32::from(crate::palette::c6_to_8(i * 4));
        c << 16 | c << 8 | c
    }

    #[test]
    fn geometry_and_size() {
        let v = text_mode();
        let s = v.screenshot(RenderOptions::default()).unwrap();
        assert_eq!((s.width(), s.height()), (720, 400));
    }

    #[test]
    fn glyph_colours_and_ninth_column() {
        let mut v = text_mode();
        glyph(&mut v, b'A', &[0x81, 0xff]);
        glyph(&mut v, 0xc4, &[0x01]);
        glyph(&mut v, 0xaf, &[0x01]);
        put(&mut v, 0, b'A', 0x1f);
        put(&mut v, 1, 0xc4, 0x07);
        put(&mut v, 2, 0xaf, 0x07);
        v.cr[CRTC_CURSOR_START] = 0x20; // cursor off
        let s = v.screenshot(RenderOptions::default()).unwrap();
        assert_eq!(s.pixel(0, 0), Some(grey(15)));
        assert_eq!(s.pixel(1, 0), Some(grey(1)));
        assert_eq!(s.pixel(7, 0), Some(grey(15)));
        assert_eq!(s.pixel(8, 0), Some(grey(1)), "9th column is background");
        assert_eq!(s.pixel(8, 1), Some(grey(1)));
        // 0xc4 with AR10 bit 2: the 8th column repeats into the 9th.
        assert_eq!(s.pixel(9 + 7, 0), Some(grey(7)));
        assert_eq!(s.pixel(9 + 8, 0), Some(grey(7)));
        // 0xaf is outside 0xb0-0xdf: no repeat.
        assert_eq!(s.pixel(18 + 8, 0), Some(grey(0)));
        // Line graphics off: no repeat for 0xc4 either.
        v.ar[ATC_MODE] = 0x08;
        let s = v.screenshot(RenderOptions::default()).unwrap();
        assert_eq!(s.pixel(9 + 8, 0), Some(grey(0)));
    }

    #[test]
    fn eight_and_sixteen_dot_cells() {
        let mut v = text_mode();
        glyph(&mut v, b'x', &[0x80]);
        put(&mut v, 1, b'x', 0x0f);
        v.sr[1] = SR01_CHAR_CLK_8DOTS;
        let s = v.screenshot(RenderOptions::default()).unwrap();
        assert_eq!(s.width(), 640);
        assert_eq!(s.pixel(8, 0), Some(grey(15)));
        v.sr[1] = SR01_DOUBLE_CLOCK;
        let s = v.screenshot(RenderOptions::default()).unwrap();
        assert_eq!(s.width(), 1280);
        assert_eq!(
            (s.pixel(16, 0), s.pixel(17, 0)),
            (Some(grey(15)), Some(grey(15)))
        );
        assert_eq!(s.pixel(18, 0), Some(0));
    }

    #[test]
    fn second_font_by_attribute_bit_3() {
        let mut v = text_mode();
        v.sr[SEQ_CHARACTER_MAP] = 0x04; // SR3 bit 2: font B is map 2, font A map 0
        let font_b = 2 * 8192 * 4 + 2;
        v.vram[font_b + 128 * usize::from(b'Z')] = 0xff;
        put(&mut v, 0, b'Z', 0x0f);
        put(&mut v, 1, b'Z', 0x07);
        v.cr[CRTC_CURSOR_START] = 0x20;
        let s = v.screenshot(RenderOptions::default()).unwrap();
        assert_eq!(s.pixel(0, 0), Some(grey(15)), "attr bit 3 set: font B");
        assert_eq!(
            s.pixel(9, 0),
            Some(grey(0)),
            "attr bit 3 clear: font A (empty)"
        );
    }

    #[test]
    fn cursor_shape_position_and_blink() {
        let mut v = text_mode();
        put(&mut v, 81, b' ', 0x0a);
        v.cr[CRTC_CURSOR_LO] = 81;
        let on = v
            .screenshot(RenderOptions {
                cursor_visible: true,
            })
            .unwrap();
        let off = v
            .screenshot(RenderOptions {
                cursor_visible: false,
            })
            .unwrap();
        for y in 16..32 {
            for x in 9..18 {
                let want = if (16 + 13..=16 + 14).contains(&y) {
                    grey(10)
                } else {
                    0
                };
                assert_eq!(on.pixel(x, y), Some(want), "({x},{y})");
                assert_eq!(off.pixel(x, y), Some(0));
            }
        }
        // Cursor end past the cell height is clamped; start > end draws nothing.
        v.cr[CRTC_CURSOR_END] = 0x1f;
        let s = v.screenshot(RenderOptions::default()).unwrap();
        assert_eq!(s.pixel(9, 31), Some(grey(10)));
        v.cr[CRTC_CURSOR_START] = 0x0f;
        v.cr[CRTC_CURSOR_END] = 0x02;
        let s = v.screenshot(RenderOptions::default()).unwrap();
        assert_eq!(s, off);
        // The cursor follows the start address (it is a memory address, not a cell).
        v.cr[CRTC_CURSOR_START] = 0x00;
        v.cr[CRTC_CURSOR_END] = 0x0f;
        v.cr[CRTC_START_LO] = 1;
        let s = v.screenshot(RenderOptions::default()).unwrap();
        assert_eq!(
            s.pixel(0, 16),
            Some(grey(10)),
            "cell 81 is now row 1, column 0"
        );
    }

    #[test]
    fn start_address_and_line_compare() {
        let mut v = text_mode();
        glyph(&mut v, b'#', &[0xff; 16]);
        put(&mut v, 0, b'#', 0x01);
        put(&mut v, 80, b'#', 0x02);
        v.cr[CRTC_CURSOR_START] = 0x20;
        v.cr[CRTC_START_LO] = 80; // scroll by one row
        let s = v.screenshot(RenderOptions::default()).unwrap();
        assert_eq!(s.pixel(0, 0), Some(grey(2)));
        // Split screen after the first character row: row 1 shows address 0 again.
        v.cr[CRTC_LINE_COMPARE] = 15;
        v.cr[CRTC_OVERFLOW] &= !0x10;
        v.cr[CRTC_MAX_SCAN] &= !0x40;
        let s = v.screenshot(RenderOptions::default()).unwrap();
        assert_eq!(s.pixel(0, 0), Some(grey(2)));
        assert_eq!(s.pixel(0, 16), Some(grey(1)));
    }

    #[test]
    fn blank_keeps_size_and_degenerate_modes_draw_nothing() {
        let mut v = text_mode();
        put(&mut v, 0, 0xdb, 0x0f);
        glyph(&mut v, 0xdb, &[0xff]);
        let mut s = Surface::default();
        v.render(&mut s, RenderOptions::default()).unwrap();
        assert_ne!(s.pixel(0, 0), Some(0));
        v.ar_index = 0;
        v.render(&mut s, RenderOptions::default()).unwrap();
        assert_eq!((s.width(), s.height()), (720, 400));
        assert!(s.pixels().iter().all(|p| *p == 0));
        v.ar_index = 0x20;
        v.render(&mut s, RenderOptions::default()).unwrap();
        let before = s.clone();
        v.cr[CRTC_H_DISP] = 0;
        v.cr[CRTC_MAX_SCAN] = 0x1f;
        v.cr[CRTC_V_DISP_END] = 0x1f;
        v.cr[CRTC_OVERFLOW] = 0;
        v.render(&mut s, RenderOptions::default()).unwrap();
        assert_eq!(s, before, "a 1x1 text mode is not drawn");
    }
}
