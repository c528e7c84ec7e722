//! Scan-out: what QEMU's `vga_update_display` shows, drawn into a [`Surface`].
//!
//! The picture is a function of the registers and video memory only (QEMU's dirty tracking
//! and caches change when it redraws, not what it draws), plus the text cursor's blink
//! phase, which is wall-clock driven on QEMU and so a caller's choice here.

mod graphic;
mod text;

use crate::Vga;
use crate::regs::*;
use crate::surface::Surface;

/// Largest picture we draw (pixels): 4096 x 4096. The largest VGA mode QEMU can show is
/// 4096 x 1024 (a doubled 256-character line); VBE modes are clamped to video memory, so
/// only a hostile mode on a large memory goes past this, and gets an error, not an
/// allocation of hundreds of MiB.
pub const MAX_PIXELS: u64 = 4096 * 4096;

/// Why a render drew nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("display of {width}x{height} is larger than the {MAX_PIXELS} pixels we draw")]
    TooLarge { width: u32, height: u32 },
}

/// Choices QEMU makes from its clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// The text cursor's blink phase: QEMU flips it every 266 ms of virtual time.
    pub cursor_visible: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            cursor_visible: true,
        }
    }
}

/// Scan-out parameters (QEMU's `VGADisplayParams`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct DisplayParams {
    /// Bytes from one character row / scan line to the next.
    pub line_offset: u32,
    /// Start address in dwords.
    pub start_addr: u32,
    /// Scan line after which scan-out restarts at address 0 (split screen).
    pub line_compare: u32,
    /// Horizontal pel panning (AR13); 8 means no shift.
    pub hpel: u8,
    /// AR10 bit 5: the split screen's lines are not panned.
    pub hpel_split: bool,
}

/// VBE modes are never panned by AR13.
const HPEL_NEUTRAL: u8 = 8;

impl Vga {
    pub(crate) fn display_params(&self) -> DisplayParams {
        if self.vbe_enabled() {
            DisplayParams {
                line_offset: self.vbe_line_offset,
                start_addr: self.vbe_start_addr,
                line_compare: 65535,
                hpel: HPEL_NEUTRAL,
                hpel_split: false,
            }
        } else {
            DisplayParams {
                line_offset: u32::from(self.cr[CRTC_OFFSET]) << 3,
                start_addr: u32::from(self.cr[CRTC_START_LO])
                    | u32::from(self.cr[CRTC_START_HI]) << 8,
                line_compare: u32::from(self.cr[CRTC_LINE_COMPARE])
                    | u32::from(self.cr[CRTC_OVERFLOW] & 0x10) << 4
                    | u32::from(self.cr[CRTC_MAX_SCAN] & 0x40) << 3,
                hpel: self.ar[ATC_PEL],
                hpel_split: self.ar[ATC_MODE] & 0x20 != 0,
            }
        }
    }

    /// Vertical display end + 1 (CR12 with its overflow bits 8 and 9 in CR7).
    pub(crate) fn vdisp_lines(&self) -> u32 {
        (u32::from(self.cr[CRTC_V_DISP_END])
            | u32::from(self.cr[CRTC_OVERFLOW] & 0x02) << 7
            | u32::from(self.cr[CRTC_OVERFLOW] & 0x40) << 3)
            + 1
    }

    /// Draws the screen into `surface`, resizing it to the mode's size. While the display
    /// is blanked (attribute index bit 5 clear, e.g. during a mode set) the surface keeps
    /// its size and turns black, as QEMU's does. A text mode QEMU refuses to draw (a single
    /// cell, or more than 16000) leaves the surface as it was.
    pub fn render(&self, surface: &mut Surface, opts: RenderOptions) -> Result<(), RenderError> {
        if self.ar_index & AR_INDEX_PAS == 0 {
            surface.clear();
            Ok(())
        } else if self.gr[GFX_MISC] & GR06_GRAPHICS_MODE == 0 {
            self.render_text(surface, opts)
        } else {
            self.render_graphic(surface)
        }
    }

    /// A fresh surface with the screen drawn.
    pub fn screenshot(&self, opts: RenderOptions) -> Result<Surface, RenderError> {
        let mut s = Surface::default();
        self.render(&mut s, opts)?;
        Ok(s)
    }
}

/// Resizes `surface` after checking the size against [`MAX_PIXELS`].
pub(crate) fn sized(surface: &mut Surface, width: u32, height: u32) -> Result<(), RenderError> {
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(RenderError::TooLarge { width, height });
    }
    surface.resize(width, height);
    Ok(())
}
