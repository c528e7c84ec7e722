//! QXL's modes with a legacy VGA (qxl-vga), driven through the bus traits an in-process VMM
//! uses, with the real worker behind the device: the device starts in VGA mode and the
//! worker's screendump is the VGA text; CREATE_PRIMARY switches to native and the screendump
//! is the guest's surface; RESET returns to VGA and its picture. QXL ports other than those
//! that set the device up are ignored in VGA mode, as QEMU ignores them.

use std::mem::offset_of;

use saffron_device::bus::{MmioAddress, MutDeviceMmio, MutDevicePio, PioAddress};
use saffron_device::irq::NoIrq;
use saffron_device::qxl::{Mode, bar};
use saffron_device::{DeviceMemory, QxlConfig, QxlDevice};
use saffron_ring::abi::*;
use saffron_ring::memslot::make_phys;
use saffron_vga::RenderOptions;
use saffron_worker::red::WorkerControl;
use vm_memory::ByteValued;

const CFG: QxlConfig = QxlConfig {
    ram_size: 4 << 20,
    vram_size: 1 << 20,
    vram64_size: 0,
    preferred_resolution: None,
    max_heads: 1,
};
const BAR0: u32 = 0xf400_0000;
const BAR1: u32 = 0xf800_0000;
const IO: u16 = 0xc040;

struct Guest {
    dev: QxlDevice,
    worker: WorkerControl,
    ram_header: u64,
}

impl Guest {
    fn new() -> Self {
        let mem = DeviceMemory::anonymous(CFG.ram_size, CFG.vram_size, 0).unwrap();
        let mut dev = QxlDevice::new(CFG, mem, Box::new(NoIrq)).unwrap();
        assert_eq!(dev.mode(), Mode::Undefined, "a QXL without VGA (qxl)");
        dev.enable_vga().unwrap();
        assert_eq!(dev.mode(), Mode::Vga, "qxl-vga starts in VGA mode");
        let (dispatcher, worker) = saffron_worker::red::spawn(dev.interface()).unwrap();
        dev.attach_worker(Box::new(dispatcher));
        dev.config_write(0x10, &BAR0.to_le_bytes());
        dev.config_write(0x14, &BAR1.to_le_bytes());
        dev.config_write(0x1c, &u32::from(IO).to_le_bytes());
        dev.config_write(0x04, &0x0003u16.to_le_bytes());
        Guest {
            dev,
            worker,
            ram_header: CFG.ram_size - 8192,
        }
    }

    fn outb(&mut self, port: u16, val: u8) {
        self.dev.pio_write(PioAddress(port), 0, &[val]);
    }

    fn inb(&mut self, port: u16) -> u8 {
        let mut b = [0];
        self.dev.pio_read(PioAddress(port), 0, &mut b);
        b[0]
    }

    fn mem_write(&mut self, addr: u64, data: &[u8]) {
        self.dev.mmio_write(MmioAddress(addr), 0, data);
    }

    fn qxl_out(&mut self, port: u8, val: u8) {
        self.outb(IO + u16::from(port), val);
    }

    fn put<T: ByteValued>(&mut self, field: usize, v: T) {
        let addr = u64::from(BAR0) + self.ram_header + field as u64;
        self.mem_write(addr, v.as_slice());
    }

    fn pending(&mut self) -> u32 {
        let mut b = [0u8; 4];
        let addr = u64::from(BAR0) + self.ram_header + offset_of!(QXLRam, int_pending) as u64;
        self.dev.mmio_read(MmioAddress(addr), 0, &mut b);
        u32::from_le_bytes(b)
    }

    /// Mode 3 as a BIOS sets it, a two-glyph font in plane 2, and `text` in row 1 in white
    /// on blue, with the cursor after it.
    fn vga_text(&mut self, text: &[u8]) {
        self.outb(0x3c2, 0x67);
        for (i, v) in [0x03u8, 0x00, 0x03, 0x00, 0x02].into_iter().enumerate() {
            self.outb(0x3c4, i as u8);
            self.outb(0x3c5, v);
        }
        let crtc = [
            0x5f, 0x4f, 0x50, 0x82, 0x55, 0x81, 0xbf, 0x1f, 0x00, 0x4f, 0x0d, 0x0e, 0x00, 0x00,
            0x00, 0x00, 0x9c, 0x8e, 0x8f, 0x28, 0x1f, 0x96, 0xb9, 0xa3, 0xff,
        ];
        for (i, v) in crtc.into_iter().enumerate() {
            self.outb(0x3d4, i as u8);
            self.outb(0x3d5, v);
        }
        // Planes 2 only, sequential addressing: load the font.
        for (i, v) in [(2u8, 0x04u8), (4, 0x06)] {
            self.outb(0x3c4, i);
            self.outb(0x3c5, v);
        }
        for (i, v) in [(4u8, 0x02u8), (5, 0x00), (6, 0x04), (8, 0xff)] {
            self.outb(0x3ce, i);
            self.outb(0x3cf, v);
        }
        for &ch in text {
            // A glyph per character: its code in binary on each of 16 lines.
            let glyph = [ch; 16];
            self.mem_write(0xa0000 + u64::from(ch) * 32, &glyph);
        }
        for (i, v) in [(2u8, 0x03u8), (4, 0x02)] {
            self.outb(0x3c4, i);
            self.outb(0x3c5, v);
        }
        let gc = [0x00u8, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0e, 0x0f, 0xff];
        for (i, v) in gc.into_iter().enumerate() {
            self.outb(0x3ce, i as u8);
            self.outb(0x3cf, v);
        }
        self.inb(0x3da);
        let ac = [
            0x00u8, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d,
            0x3e, 0x3f, 0x0c, 0x00, 0x0f, 0x08, 0x00,
        ];
        for (i, v) in ac.into_iter().enumerate() {
            self.outb(0x3c0, i as u8);
            self.outb(0x3c0, v);
        }
        self.outb(0x3c0, 0x20);
        self.outb(0x3c8, 0);
        for i in 0..64u8 {
            let c = |lo: u8, hi: u8| ((i >> lo) & 1) * 0x2a + ((i >> hi) & 1) * 0x15;
            for v in [c(2, 5), c(1, 4), c(0, 3)] {
                self.outb(0x3c9, v);
            }
        }
        for (col, &ch) in text.iter().enumerate() {
            self.mem_write(0xb8000 + 160 + 2 * col as u64, &[ch, 0x1f]);
        }
        let cursor = 80 + text.len() as u16;
        // The cursor takes its cell's foreground colour: grey.
        self.mem_write(0xb8000 + 2 * u64::from(cursor), &[b' ', 0x07]);
        self.outb(0x3d4, 0x0e);
        self.outb(0x3d5, (cursor >> 8) as u8);
        self.outb(0x3d4, 0x0f);
        self.outb(0x3d5, cursor as u8);
    }

    fn screendump(&self) -> (u32, u32, Vec<u8>) {
        self.worker.screendump().unwrap()
    }
}

/// The RGB of pixel (x, y).
fn px(dump: &(u32, u32, Vec<u8>), x: u32, y: u32) -> [u8; 3] {
    let i = (y * dump.0 + x) as usize * 3;
    [dump.2[i], dump.2[i + 1], dump.2[i + 2]]
}

const WHITE: [u8; 3] = [0xff, 0xff, 0xff];
const BLUE: [u8; 3] = [0, 0, 0xa8];
const BLACK: [u8; 3] = [0, 0, 0];

/// Row 1 of the text screen shows `text` in its binary glyphs, as QEMU draws 9-dot cells.
fn assert_text(dump: &(u32, u32, Vec<u8>), text: &[u8]) {
    assert_eq!((dump.0, dump.1), (720, 400), "80x25 text of 9x16 cells");
    for (col, &ch) in text.iter().enumerate() {
        for bit in 0..8u32 {
            let want = if ch & (0x80 >> bit) != 0 { WHITE } else { BLUE };
            let (x, y) = (col as u32 * 9 + bit, 16 + 3);
            assert_eq!(px(dump, x, y), want, "char {col} dot {bit}");
        }
        assert_eq!(px(dump, col as u32 * 9 + 8, 19), BLUE, "9th column");
    }
    assert_eq!(px(dump, 0, 0), BLACK, "row 0 is blank");
}

#[test]
fn vga_text_then_native_then_vga_again() {
    let mut g = Guest::new();
    assert!(
        g.worker.screendump().is_err(),
        "nothing shown before the first refresh"
    );
    g.vga_text(b"QXL");
    assert!(g.dev.vga_refresh(RenderOptions::default(), true));
    assert!(
        !g.dev.vga_refresh(RenderOptions::default(), true),
        "an unchanged picture is not sent again"
    );
    let dump = g.screendump();
    assert_text(&dump, b"QXL");
    // The cursor (lines 13-14 of its cell, after the text) in the foreground colour, then
    // hidden in the other blink phase.
    let cursor_x = 3 * 9;
    assert_eq!(px(&dump, cursor_x, 16 + 13), [0xa8, 0xa8, 0xa8]);
    g.dev.vga_refresh(
        RenderOptions {
            cursor_visible: false,
        },
        true,
    );
    assert_eq!(px(&g.screendump(), cursor_x, 16 + 13), BLACK);

    // QXL ports that are not set-up ports are ignored in VGA mode; an async one still
    // completes with IO_CMD, as QEMU does for buggy drivers.
    g.put(offset_of!(QXLRam, int_mask), 0x27u32);
    g.qxl_out(QXL_IO_NOTIFY_CMD, 0);
    g.qxl_out(QXL_IO_FLUSH_SURFACES_ASYNC, 0);
    assert_eq!(g.dev.stats().io_in_vga_mode, 2);
    assert_ne!(g.pending() & QXL_INTERRUPT_IO_CMD, 0);
    assert_eq!(g.dev.mode(), Mode::Vga);

    // The driver's bring-up: memslots (still VGA), then the primary: native.
    g.put(
        offset_of!(QXLRam, mem_slot),
        QXLMemSlot {
            mem_start: u64::from(BAR1),
            mem_end: u64::from(BAR1) + CFG.vram_size,
        },
    );
    g.qxl_out(QXL_IO_MEMSLOT_ADD, 1);
    assert_eq!(g.dev.mode(), Mode::Vga, "memslots do not leave VGA mode");
    assert!(!g.dev.in_guest_bug());
    g.put(
        offset_of!(QXLRam, create_surface),
        QXLSurfaceCreate {
            width: 64,
            height: 32,
            stride: 64 * 4,
            format: SPICE_SURFACE_FMT_32_xRGB,
            position: 0,
            mouse_mode: 0,
            flags: 0,
            type_: QXL_SURF_TYPE_PRIMARY,
            mem: make_phys(1, 0, 0).unwrap(),
        },
    );
    // The guest's surface: a known colour.
    let pixels: Vec<u8> = [0x11u8, 0x22, 0x33, 0].repeat(64 * 32);
    g.mem_write(u64::from(BAR1), &pixels);
    g.qxl_out(QXL_IO_CREATE_PRIMARY, 0);
    assert_eq!(g.dev.mode(), Mode::Native);
    assert!(
        !g.dev.vga_refresh(RenderOptions::default(), true),
        "no VGA in native mode"
    );
    let dump = g.screendump();
    assert_eq!((dump.0, dump.1), (64, 32));
    assert_eq!(px(&dump, 10, 10), [0x33, 0x22, 0x11]);
    // Revision 5: VGA port writes do not leave native mode.
    g.outb(0x3c4, 1);
    assert_eq!(g.dev.mode(), Mode::Native);

    // RESET: back to VGA, whose registers and memory kept the text.
    g.qxl_out(QXL_IO_RESET, 0);
    assert_eq!(g.dev.mode(), Mode::Vga);
    assert!(g.dev.vga_refresh(RenderOptions::default(), true));
    assert_text(&g.screendump(), b"QXL");
}

#[test]
fn vbe_linear_framebuffer_is_bar0() {
    let mut g = Guest::new();
    let vbe = |g: &mut Guest, index: u16, val: u16| {
        g.dev.pio_write(PioAddress(0x1ce), 0, &index.to_le_bytes());
        g.dev.pio_write(PioAddress(0x1ce), 1, &val.to_le_bytes());
    };
    vbe(&mut g, 1, 64); // xres
    vbe(&mut g, 2, 48); // yres
    vbe(&mut g, 3, 32); // bpp
    vbe(&mut g, 4, 0x41); // enabled, LFB
    // Palette access off: the display is on (as the BIOS leaves it).
    g.inb(0x3da);
    g.outb(0x3c0, 0x20);
    // The LFB is BAR0: the guest writes pixels there (the VMM maps it as memory).
    let row: Vec<u8> = [0x40u8, 0x80, 0xc0, 0].repeat(64);
    g.mem_write(u64::from(BAR0) + 64 * 4 * 5, &row);
    // The banked window is the same memory (chain-4 alias): pixel (1, 0).
    g.mem_write(0xa0004, &[0x01, 0x02, 0x03, 0]);
    let mut b = [0u8; 4];
    g.dev.bar_read(bar::RAM, 4, &mut b);
    assert_eq!(b, [1, 2, 3, 0], "window writes land in BAR0");
    assert!(g.dev.vga_refresh(RenderOptions::default(), true));
    let dump = g.screendump();
    assert_eq!((dump.0, dump.1), (64, 48));
    assert_eq!(px(&dump, 7, 5), [0xc0, 0x80, 0x40]);
    assert_eq!(px(&dump, 1, 0), [3, 2, 1]);
    assert_eq!(px(&dump, 7, 6), BLACK);
}

/// A refresh renders only when something could have changed the picture: a port or window
/// write, another blink phase, or (in a VBE mode) BAR0 written as the front end tells.
#[test]
fn refreshes_render_only_after_writes() {
    let mut g = Guest::new();
    let on = RenderOptions::default();
    let renders = |g: &Guest| g.dev.vga_stats().renders;
    g.vga_text(b"A");
    assert!(g.dev.vga_refresh(on, false));
    let n = renders(&g);
    for _ in 0..5 {
        assert!(!g.dev.vga_refresh(on, true), "text mode ignores BAR0");
    }
    assert_eq!(renders(&g), n, "an idle console renders nothing");
    assert_eq!(g.dev.vga_stats().unchanged, 5);
    // A read changes no pixel.
    g.inb(0x3da);
    assert!(!g.dev.vga_refresh(on, false));
    assert_eq!(renders(&g), n);
    // The other blink phase: one render (the cursor goes away).
    let off = RenderOptions {
        cursor_visible: false,
    };
    assert!(g.dev.vga_refresh(off, false));
    assert!(!g.dev.vga_refresh(off, false));
    assert_eq!(renders(&g), n + 1);
    // A window write (a second character): rendered and sent.
    g.vga_text(b"AB");
    assert!(g.dev.vga_refresh(off, false));
    assert_text(&g.screendump(), b"AB");
    // A port write that changes nothing on screen: rendered, not sent.
    g.outb(0x3c4, 1);
    assert!(!g.dev.vga_refresh(off, false));
    assert_eq!(renders(&g), n + 3);

    // A VBE mode: BAR0 is the picture, and only the front end sees it written.
    let vbe = |g: &mut Guest, index: u16, val: u16| {
        g.dev.pio_write(PioAddress(0x1ce), 0, &index.to_le_bytes());
        g.dev.pio_write(PioAddress(0x1ce), 1, &val.to_le_bytes());
    };
    vbe(&mut g, 1, 64);
    vbe(&mut g, 2, 48);
    vbe(&mut g, 3, 32);
    vbe(&mut g, 4, 0x41);
    g.inb(0x3da);
    g.outb(0x3c0, 0x20);
    assert!(g.dev.vga_refresh(off, false), "the mode switch");
    g.mem_write(u64::from(BAR0), &[0x10, 0x20, 0x30, 0]);
    assert!(
        !g.dev.vga_refresh(off, false),
        "BAR0 written but not told: not looked at"
    );
    assert!(
        !g.dev.vga_refresh(on, false),
        "no text cursor blinks in VBE"
    );
    assert!(g.dev.vga_refresh(off, true));
    assert_eq!(px(&g.screendump(), 0, 0), [0x30, 0x20, 0x10]);
}

#[test]
fn hostile_accesses_stay_inside() {
    let mut g = Guest::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..200_000 {
        let r = next();
        let len = [1usize, 2, 4, 8][(r & 3) as usize];
        let data = (r >> 8).to_le_bytes();
        match (r >> 2) & 3 {
            0 => g
                .dev
                .pio_write(PioAddress(0x3b0 + (r >> 16) as u16 % 0x30), 0, &data[..len]),
            1 => g
                .dev
                .pio_write(PioAddress(0x1ce + (r >> 16) as u16 % 2), 0, &data[..len]),
            2 => g.mem_write(0xa0000 + (r >> 24) % 0x20000, &data[..len]),
            _ => {
                let mut out = [0u8; 8];
                g.dev.mmio_read(
                    MmioAddress(0xa0000 + (r >> 24) % 0x20000),
                    0,
                    &mut out[..len],
                );
                g.dev.pio_read(
                    PioAddress(0x3b0 + (r >> 16) as u16 % 0x30),
                    0,
                    &mut out[..len],
                );
            }
        }
        if r % 5000 == 0 {
            g.dev.vga_refresh(RenderOptions::default(), true);
        }
    }
    // Accesses past the end of the address spaces are dropped, not wrapped.
    g.dev.pio_write(PioAddress(u16::MAX), 1, &[0]);
    g.dev.mmio_write(MmioAddress(u64::MAX), 1, &[0]);
    g.dev.vga_refresh(RenderOptions::default(), true);
    assert_eq!(g.dev.mode(), Mode::Vga);
}
