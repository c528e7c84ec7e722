//! QXL's VGA personality, as QEMU's `qxl-vga` has it: a legacy VGA (ports 0x3b0-0x3df, the
//! Bochs VBE ports 0x1ce/0x1cf, the 0xa0000-0xbffff window) whose picture is what the display
//! shows while the device is in VGA mode, i.e. from reset until the guest's QXL driver creates
//! a primary surface. The BIOS, the boot loader and the text console draw through it.
//!
//! QEMU's qxl-vga keeps VGA memory at the start of BAR0, so the VBE linear framebuffer is
//! BAR0 itself. Our VGA model owns its video memory, so the device keeps two views coherent
//! the way the guest can reach them: window accesses that QEMU maps as plain RAM (the chain-4
//! alias of VBE modes) go to BAR0, and a VBE render first loads the scanned-out bytes of BAR0
//! into the model. Planar accesses stay in the model (the LFB is never planar).

use std::sync::Arc;

use saffron_seam::{VgaFrame, WorkerRequest};
use saffron_vga::regs::{VBE_DISPI_IOPORT_DATA, VBE_DISPI_IOPORT_INDEX};
use saffron_vga::{RenderOptions, Surface, Vga};
use tracing::{debug, warn};

use super::{Done, Mode, QxlDevice};
use crate::memory::MemoryBar;

/// Legacy VGA ports (QEMU's VGA decodes 0x3b0-0x3df).
pub const VGA_PORTS: std::ops::Range<u16> = 0x3b0..0x3e0;
/// The Bochs VBE index and data ports.
pub const VBE_PORTS: std::ops::Range<u16> = 0x1ce..0x1d0;
/// The legacy memory window.
pub const VGA_WINDOW: std::ops::Range<u64> = 0xa_0000..0xc_0000;
/// QEMU's qxl-vga gives its VGA at most 16 MiB (`vgamem_mb`).
const MAX_VGA_MEMORY: u64 = 16 << 20;

/// The ports qxl-vga decodes among 0x3b0-0x3df (QEMU's `qxl_vga_portio_list`): the CRTC
/// pairs, input status 1 of both decodes and the 0x3c0 block. Others float.
fn decoded(port: u16) -> bool {
    matches!(
        port,
        0x3b4 | 0x3b5 | 0x3ba | 0x3c0..=0x3cf | 0x3d4 | 0x3d5 | 0x3da
    )
}

/// Counters of the VGA side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VgaStats {
    /// Port accesses (VGA and VBE), reads and writes.
    pub port_accesses: u64,
    /// Window accesses, bytes.
    pub window_accesses: u64,
    /// Frames rendered by [`QxlDevice::vga_refresh`].
    pub renders: u64,
    /// Refreshes that rendered nothing: no write could have changed the picture since the
    /// last render.
    pub unchanged: u64,
    /// Of them, frames that differed from the last one and went to the worker.
    pub frames_sent: u64,
    /// Renders that failed (a hostile mode too large to draw).
    pub render_errors: u64,
}

/// The VGA model and what the display last showed of it.
pub(super) struct VgaState {
    pub(super) vga: Vga,
    /// The last frame handed to the worker; `None` forces the next refresh to send one.
    last: Option<Arc<VgaFrame>>,
    scratch: Surface,
    pub(super) stats: VgaStats,
    /// A port or window write since the last render: the picture may have changed. (Reads
    /// change no pixel; BAR0 writes of a VBE mode are told by the front end.)
    written: bool,
    /// The cursor blink phase of the last render.
    blink: Option<bool>,
}

impl VgaState {
    /// A VGA over `ram_size` bytes of BAR0 (its memory is the first part of it), or `None`
    /// when BAR0 is too small for the 256 KiB of the four planes.
    pub(super) fn new(ram_size: u64) -> Option<Self> {
        let size = ram_size.min(MAX_VGA_MEMORY) / 4;
        let size = if size.is_power_of_two() {
            size
        } else {
            size.checked_next_power_of_two()? / 2
        };
        let vga = Vga::new(usize::try_from(size).ok()?).ok()?;
        Some(VgaState {
            vga,
            last: None,
            scratch: Surface::default(),
            stats: VgaStats::default(),
            written: true,
            blink: None,
        })
    }

    /// The next refresh sends its frame whatever the last one was (after a reset the worker
    /// has forgotten it).
    pub(super) fn forget_frame(&mut self) {
        self.last = None;
        self.written = true;
    }
}

impl QxlDevice {
    /// Gives the device its legacy VGA (QEMU's `qxl-vga` instead of `qxl`): the device starts
    /// in VGA mode and returns to it at every reset. Only a front end that forwards the VGA
    /// ranges ([`crate::bus`]) should do this; without them, as over vfio-user, the device is
    /// QEMU's secondary `qxl`, whose mode starts undefined.
    pub fn enable_vga(&mut self) -> Result<(), super::QxlError> {
        let state =
            VgaState::new(self.cfg.ram_size).ok_or(super::QxlError::NoVga(self.cfg.ram_size))?;
        debug!(vram = state.vga.vram_size(), "legacy VGA enabled (qxl-vga)");
        self.vga = Some(Box::new(state));
        if self.mode == Mode::Undefined && self.primary.is_none() {
            self.enter_vga_mode();
        }
        Ok(())
    }

    /// Whether the device has a legacy VGA.
    pub fn has_vga(&self) -> bool {
        self.vga.is_some()
    }

    /// The VGA model (e.g. for a test to look at its registers).
    pub fn vga(&self) -> Option<&Vga> {
        self.vga.as_ref().map(|v| &v.vga)
    }

    /// Counters of the VGA side (zeros without one).
    pub fn vga_stats(&self) -> VgaStats {
        self.vga.as_ref().map(|v| v.stats).unwrap_or_default()
    }

    /// QEMU's `qxl_enter_vga_mode`: the display shows the VGA again (the worker forgot the
    /// guest's surfaces at the reset that brings us here).
    pub(super) fn enter_vga_mode(&mut self) {
        if let Some(v) = self.vga.as_mut() {
            v.forget_frame();
            self.mode = Mode::Vga;
            debug!("VGA mode");
        }
    }

    /// A read of a legacy VGA or VBE port. Multi-byte VGA accesses are split into byte
    /// accesses of consecutive ports, as QEMU's port I/O does; the VBE ports are 16 bits wide
    /// and other widths read as floating. Ports the device does not decode read 0xff.
    pub fn vga_port_read(&mut self, port: u16, data: &mut [u8]) {
        data.fill(0xff);
        let Some(v) = self.vga.as_mut() else {
            return;
        };
        v.stats.port_accesses += 1;
        if VBE_PORTS.contains(&port) {
            if let [lo, hi] = data {
                [*lo, *hi] = v.vga.vbe_io_read(port).to_le_bytes();
            }
            return;
        }
        for (i, b) in data.iter_mut().enumerate() {
            let Some(p) = u16::try_from(i).ok().and_then(|i| port.checked_add(i)) else {
                break;
            };
            if VGA_PORTS.contains(&p) && decoded(p) {
                *b = v.vga.io_read(p);
            }
        }
    }

    /// A write of a legacy VGA or VBE port (widths as for [`QxlDevice::vga_port_read`]).
    /// With revision 5, as in QEMU, VGA writes do not take the device out of native mode.
    pub fn vga_port_write(&mut self, port: u16, data: &[u8]) {
        let Some(v) = self.vga.as_mut() else {
            return;
        };
        v.stats.port_accesses += 1;
        v.written = true;
        if VBE_PORTS.contains(&port) {
            match data {
                [lo, hi] if port == VBE_DISPI_IOPORT_INDEX || port == VBE_DISPI_IOPORT_DATA => {
                    v.vga.vbe_io_write(port, u16::from_le_bytes([*lo, *hi]))
                }
                _ => debug!(port, len = data.len(), "VBE port write of the wrong width"),
            }
            return;
        }
        for (i, b) in data.iter().enumerate() {
            let Some(p) = u16::try_from(i).ok().and_then(|i| port.checked_add(i)) else {
                break;
            };
            if VGA_PORTS.contains(&p) && decoded(p) {
                v.vga.io_write(p, *b);
            }
        }
    }

    /// A read of the legacy window at guest-physical `addr` (0xa0000-0xbffff), byte by byte.
    pub fn vga_window_read(&mut self, addr: u64, data: &mut [u8]) {
        data.fill(0xff);
        let Some(v) = self.vga.as_mut() else {
            return;
        };
        for (i, b) in data.iter_mut().enumerate() {
            let Some(a) = addr
                .checked_add(i as u64)
                .filter(|a| VGA_WINDOW.contains(a))
            else {
                continue;
            };
            v.stats.window_accesses += 1;
            match v.vga.window_alias(a).filter(|_| v.vga.vbe_enabled()) {
                // The chain-4 alias of a VBE mode is BAR0 itself, as in qxl-vga.
                Some(off) => {
                    let mut one = [0xff];
                    if self
                        .memory
                        .read(MemoryBar::Ram, off as u64, &mut one)
                        .is_ok()
                    {
                        *b = one[0];
                    }
                }
                None => *b = v.vga.window_read(a),
            }
        }
    }

    /// A write of the legacy window (see [`QxlDevice::vga_window_read`]).
    pub fn vga_window_write(&mut self, addr: u64, data: &[u8]) {
        let Some(v) = self.vga.as_mut() else {
            return;
        };
        v.written = true;
        for (i, b) in data.iter().enumerate() {
            let Some(a) = addr
                .checked_add(i as u64)
                .filter(|a| VGA_WINDOW.contains(a))
            else {
                continue;
            };
            v.stats.window_accesses += 1;
            match v.vga.window_alias(a).filter(|_| v.vga.vbe_enabled()) {
                Some(off) => {
                    if let Err(e) = self.memory.write(MemoryBar::Ram, off as u64, &[*b]) {
                        debug!("VBE window write dropped: {e}");
                    }
                }
                None => v.vga.window_write(a, *b),
            }
        }
    }

    /// In VGA mode: renders the VGA and, when the picture changed, hands it to the worker,
    /// which shows it to screendumps and display clients. The front end calls this on its
    /// display clock (QEMU refreshes every 30 ms) and picks the cursor blink phase. Returns
    /// whether a new frame went out.
    ///
    /// Nothing is rendered when nothing could have changed the picture: no port or window
    /// write reached the device, the blink phase is the last one (outside VBE modes), and, in a VBE mode, the
    /// front end says BAR0 was not written (`bar0_written`; a front end that cannot tell,
    /// having no dirty log of its mapping of BAR0, passes true). An idle console then costs
    /// no render and no copy of the framebuffer per tick.
    pub fn vga_refresh(&mut self, opts: RenderOptions, bar0_written: bool) -> bool {
        if self.mode != Mode::Vga {
            return false;
        }
        let Some(v) = self.vga.as_mut() else {
            return false;
        };
        let lfb = v.vga.vbe_scanout_len();
        // A VBE mode draws no text cursor, so its blink changes nothing.
        let blink_changed = lfb == 0 && v.blink != Some(opts.cursor_visible);
        v.blink = Some(opts.cursor_visible);
        if !(v.written || blink_changed || (lfb > 0 && bar0_written)) {
            v.stats.unchanged += 1;
            return false;
        }
        v.written = false;
        if lfb > 0 {
            let mut bytes = vec![0u8; lfb];
            match self.memory.read(MemoryBar::Ram, 0, &mut bytes) {
                Ok(()) => {
                    if let Err(e) = v.vga.load_vram(0, &bytes) {
                        warn!("cannot load the VBE framebuffer: {e}");
                    }
                }
                Err(e) => warn!("cannot read the VBE framebuffer from BAR0: {e}"),
            }
        }
        v.stats.renders += 1;
        if let Err(e) = v.vga.render(&mut v.scratch, opts) {
            v.stats.render_errors += 1;
            debug!("VGA render: {e}");
            return false;
        }
        let frame = &v.scratch;
        let same = v.last.as_ref().is_some_and(|last| {
            last.width == frame.width()
                && last.height == frame.height()
                && last.pixels == frame.pixels()
        });
        if same || frame.width() == 0 || frame.height() == 0 {
            return false;
        }
        let frame = Arc::new(VgaFrame {
            width: frame.width(),
            height: frame.height(),
            pixels: frame.pixels().to_vec(),
        });
        v.last = Some(Arc::clone(&frame));
        v.stats.frames_sent += 1;
        self.submit(WorkerRequest::VgaFrame(frame), Done::None);
        true
    }
}
