//! A Rust "driver" that performs the Linux qxl driver's bring-up sequence on the device, with
//! no VMM and no guest: BAR programming as a BIOS does, the ROM checks, RESET, the interrupt
//! mask, both memslots, the primary surface, the monitors config, each async port completing
//! with exactly one IO_CMD. Then every guest-bug path the device itself detects.

use std::mem::offset_of;
use std::sync::{Arc, Mutex};

use saffron_device::memory::MemoryBar;
use saffron_device::qxl::{Mode, bar};
use saffron_device::{DeviceMemory, IrqLine, QxlConfig, QxlDevice};
use saffron_ring::abi::*;
use saffron_ring::memslot::make_phys;
use saffron_seam::{Completion, QxlInterface, QxlWorker, WorkerRequest};
use vm_memory::ByteValued;

const CFG: QxlConfig = QxlConfig {
    ram_size: 4 << 20,
    vram_size: 1 << 20,
    vram64_size: 0,
    preferred_resolution: None,
    max_heads: 1,
};
const BAR0_ADDR: u32 = 0xf400_0000;
const BAR1_ADDR: u32 = 0xf800_0000;
const IO_ADDR: u32 = 0xc040;
/// Where firmware puts BAR4 (when the device has one): above 4 GiB, as a 64-bit BAR may be.
const BAR4_ADDR: u64 = 0x8_0000_0000;

#[derive(Clone, Default)]
struct Line(Arc<Mutex<bool>>);

impl IrqLine for Line {
    fn set_level(&self, asserted: bool) {
        *self.0.lock().unwrap() = asserted;
    }
}

struct Driver {
    dev: QxlDevice,
    line: Line,
    ram_header: u64,
}

impl Driver {
    /// Programs the BARs and enables decoding, as firmware does before the driver loads.
    fn new() -> Self {
        Self::with_config(CFG)
    }

    fn with_config(cfg: QxlConfig) -> Self {
        let line = Line::default();
        let mem = DeviceMemory::anonymous(cfg.ram_size, cfg.vram_size, cfg.vram64_size).unwrap();
        let mut dev = QxlDevice::new(cfg, mem, Box::new(line.clone())).unwrap();
        dev.config_write(0x10, &BAR0_ADDR.to_le_bytes());
        dev.config_write(0x14, &BAR1_ADDR.to_le_bytes());
        dev.config_write(0x1c, &IO_ADDR.to_le_bytes());
        dev.config_write(0x20, &BAR4_ADDR.to_le_bytes());
        dev.config_write(0x04, &0x0007u16.to_le_bytes());
        let mut rom = QXLRom::default();
        dev.bar_read(bar::ROM, 0, rom.as_mut_slice());
        assert_eq!({ rom.magic }, QXL_ROM_MAGIC);
        assert!({ rom.n_surfaces } >= 2);
        assert_eq!(rom.slots_start, 1);
        let ram_header = u64::from(rom.ram_header_offset);
        assert_eq!(ram_header, cfg.ram_size - 8192);
        Driver {
            dev,
            line,
            ram_header,
        }
    }

    fn out(&mut self, port: u8, val: u8) {
        self.dev.bar_write(bar::IO, u64::from(port), &[val]);
    }

    fn put<T: ByteValued>(&mut self, field: usize, v: T) {
        self.dev
            .bar_write(bar::RAM, self.ram_header + field as u64, v.as_slice());
    }

    fn get_u32(&mut self, field: usize) -> u32 {
        let mut b = [0u8; 4];
        self.dev
            .bar_read(bar::RAM, self.ram_header + field as u64, &mut b);
        u32::from_le_bytes(b)
    }

    /// The guest's interrupt handler: takes int_pending, acks with UPDATE_IRQ.
    fn isr(&mut self) -> u32 {
        if !*self.line.0.lock().unwrap() {
            return 0;
        }
        let pending = self.get_u32(offset_of!(QXLRam, int_pending));
        self.put(offset_of!(QXLRam, int_pending), 0u32);
        self.out(QXL_IO_UPDATE_IRQ, 0);
        pending
    }

    /// An async port and the one IO_CMD that must follow it. Other interrupts (DISPLAY for
    /// releases) may come before it; they are taken as the guest's handler would.
    fn async_op(&mut self, port: u8, val: u8) {
        self.out(port, val);
        // With a worker thread the completion comes later; Linux waits for it (5 s).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut pending = 0;
        while pending & QXL_INTERRUPT_IO_CMD == 0 && std::time::Instant::now() < deadline {
            pending |= self.isr();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(
            pending & QXL_INTERRUPT_IO_CMD,
            QXL_INTERRUPT_IO_CMD,
            "port {port}"
        );
        assert_eq!(
            self.isr() & QXL_INTERRUPT_IO_CMD,
            0,
            "exactly one IO_CMD for port {port}"
        );
    }

    fn memslot(&mut self, id: u8, start: u64, end: u64) {
        self.put(
            offset_of!(QXLRam, mem_slot),
            QXLMemSlot {
                mem_start: start,
                mem_end: end,
            },
        );
        self.async_op(QXL_IO_MEMSLOT_ADD_ASYNC, id);
    }

    /// RESET, interrupt mask, both memslots: what qxl_device_init does.
    fn bring_up(&mut self) {
        self.out(QXL_IO_RESET, 0);
        self.put(offset_of!(QXLRam, int_mask), 0x27u32);
        self.memslot(
            1,
            u64::from(BAR0_ADDR),
            u64::from(BAR0_ADDR) + self.ram_header,
        );
        self.memslot(
            2,
            u64::from(BAR1_ADDR),
            u64::from(BAR1_ADDR) + CFG.vram_size,
        );
    }

    fn primary(&mut self, width: u32, height: u32, stride: i32) {
        let mem = make_phys(2, 0, 0).unwrap();
        self.put(
            offset_of!(QXLRam, create_surface),
            QXLSurfaceCreate {
                width,
                height,
                stride,
                format: SPICE_SURFACE_FMT_32_xRGB,
                position: 0,
                mouse_mode: 0,
                flags: QXL_SURF_FLAG_KEEP_DATA,
                type_: QXL_SURF_TYPE_PRIMARY,
                mem,
            },
        );
    }

    fn assert_guest_bug(&mut self, what: &str) {
        assert!(
            self.dev.in_guest_bug(),
            "{what}: device should be in its error state"
        );
        let pending = self.get_u32(offset_of!(QXLRam, int_pending));
        assert_ne!(pending & QXL_INTERRUPT_ERROR, 0, "{what}: ERROR pending");
        assert_eq!(self.dev.stats().guest_bugs, 1, "{what}");
        // Everything but RESET is ignored now.
        let before = self.dev.stats().io_while_broken;
        self.out(QXL_IO_MEMSLOT_ADD_ASYNC, 1);
        assert_eq!(self.dev.stats().io_while_broken, before + 1, "{what}");
        // RESET clears it.
        self.out(QXL_IO_RESET, 0);
        assert!(
            !self.dev.in_guest_bug(),
            "{what}: RESET clears the error state"
        );
    }
}

#[test]
fn linux_bring_up_sequence() {
    let mut d = Driver::new();
    d.bring_up();
    d.primary(256, 256, 256 * 4);
    d.async_op(QXL_IO_CREATE_PRIMARY_ASYNC, 0);
    assert_eq!(d.dev.mode(), Mode::Native);
    d.put(offset_of!(QXLRam, monitors_config), 0u64);
    d.async_op(QXL_IO_MONITORS_CONFIG_ASYNC, 0);
    d.async_op(QXL_IO_DESTROY_PRIMARY_ASYNC, 0);
    assert_eq!(d.dev.mode(), Mode::Undefined);
    // A second destroy in undefined mode is ignored but still completes.
    d.async_op(QXL_IO_DESTROY_PRIMARY_ASYNC, 0);
    d.put(offset_of!(QXLRam, update_surface), 0u32);
    d.put(
        offset_of!(QXLRam, update_area),
        QXLRect {
            top: 0,
            left: 0,
            bottom: 0,
            right: 0,
        },
    );
    d.async_op(QXL_IO_UPDATE_AREA_ASYNC, 0);
    d.async_op(QXL_IO_FLUSH_SURFACES_ASYNC, 0);
    let stats = d.dev.stats();
    assert_eq!(stats.guest_bugs, 0, "{}", stats.last_guest_bug);
    assert_eq!(stats.async_completions, 8);
    // The ROM tells the guest which generation its addresses must carry.
    let mut rom = QXLRom::default();
    d.dev.bar_read(bar::ROM, 0, rom.as_mut_slice());
    assert_eq!(rom.slot_generation, 0);
}

#[test]
fn memslot_outside_the_bars_is_a_guest_bug() {
    let mut d = Driver::new();
    d.bring_up();
    d.put(
        offset_of!(QXLRam, mem_slot),
        QXLMemSlot {
            mem_start: 0x1000,
            mem_end: 0x10_0000,
        },
    );
    d.out(QXL_IO_MEMSLOT_ADD, 3);
    d.assert_guest_bug("memslot over guest RAM");
}

#[test]
fn memslot_id_out_of_range_is_a_guest_bug() {
    let mut d = Driver::new();
    d.bring_up();
    d.put(
        offset_of!(QXLRam, mem_slot),
        QXLMemSlot {
            mem_start: u64::from(BAR0_ADDR),
            mem_end: u64::from(BAR0_ADDR) + 4096,
        },
    );
    d.out(QXL_IO_MEMSLOT_ADD, 200);
    d.assert_guest_bug("memslot id 200");
}

/// A worker that never finishes anything: async operations stay pending.
struct StuckWorker(Mutex<Vec<Completion>>);

impl QxlWorker for StuckWorker {
    fn submit(&self, _request: WorkerRequest, done: Completion) {
        if let Completion::Sync(tx) = done {
            let _ = tx.send(());
        } else {
            self.0.lock().unwrap().push(done);
        }
    }
}

#[test]
fn async_while_one_is_pending_is_a_guest_bug() {
    let mut d = Driver::new();
    d.bring_up();
    d.dev
        .attach_worker(Box::new(StuckWorker(Mutex::new(Vec::new()))));
    d.out(QXL_IO_FLUSH_SURFACES_ASYNC, 0);
    assert_eq!(d.isr(), 0, "not completed yet");
    assert!(!d.dev.in_guest_bug());
    d.out(QXL_IO_FLUSH_SURFACES_ASYNC, 0);
    d.assert_guest_bug("second async op while the first is pending");
}

#[test]
fn primary_larger_than_its_memory_is_a_guest_bug() {
    let mut d = Driver::new();
    d.bring_up();
    // 1024x768x4 = 3 MiB does not fit the 1 MiB surface slot.
    d.primary(1024, 768, 1024 * 4);
    d.out(QXL_IO_CREATE_PRIMARY, 0);
    d.assert_guest_bug("primary larger than its memory");
}

#[test]
fn primary_with_a_bad_stride_is_a_guest_bug() {
    let mut d = Driver::new();
    d.bring_up();
    d.primary(64, 64, 255);
    d.out(QXL_IO_CREATE_PRIMARY, 0);
    d.assert_guest_bug("stride not a multiple of 4");
}

#[test]
fn primary_with_an_unknown_memslot_is_a_guest_bug() {
    let mut d = Driver::new();
    d.bring_up();
    d.primary(64, 64, 256);
    let bad = make_phys(5, 0, 0).unwrap();
    d.put(
        offset_of!(QXLRam, create_surface) + offset_of!(QXLSurfaceCreate, mem),
        bad,
    );
    d.out(QXL_IO_CREATE_PRIMARY, 0);
    d.assert_guest_bug("unknown memslot");
}

#[test]
fn primary_with_a_stale_generation_is_a_guest_bug() {
    let mut d = Driver::new();
    d.bring_up();
    d.primary(64, 64, 256);
    let stale = make_phys(2, 7, 0).unwrap();
    d.put(
        offset_of!(QXLRam, create_surface) + offset_of!(QXLSurfaceCreate, mem),
        stale,
    );
    d.out(QXL_IO_CREATE_PRIMARY, 0);
    d.assert_guest_bug("stale generation");
}

#[test]
fn second_primary_is_a_guest_bug() {
    let mut d = Driver::new();
    d.bring_up();
    d.primary(64, 64, 256);
    d.out(QXL_IO_CREATE_PRIMARY, 0);
    d.out(QXL_IO_CREATE_PRIMARY, 0);
    d.assert_guest_bug("create primary twice");
}

#[test]
fn bad_surface_id_is_a_guest_bug() {
    let mut d = Driver::new();
    d.bring_up();
    d.put(offset_of!(QXLRam, update_surface), 5000u32);
    d.out(QXL_IO_UPDATE_AREA, 0);
    d.assert_guest_bug("update area of surface 5000");
}

#[test]
fn inverted_update_area_is_a_guest_bug() {
    let mut d = Driver::new();
    d.bring_up();
    d.put(
        offset_of!(QXLRam, update_area),
        QXLRect {
            top: 10,
            left: 10,
            bottom: 5,
            right: 20,
        },
    );
    d.out(QXL_IO_UPDATE_AREA, 0);
    d.assert_guest_bug("inverted update area");
}

#[test]
fn unknown_and_unimplemented_ports_are_guest_bugs() {
    for port in [
        QXL_IO_DETACH_PRIMARY,
        QXL_IO_ATTACH_PRIMARY,
        QXL_IO_SET_MODE,
        25,
        31,
    ] {
        let mut d = Driver::new();
        d.bring_up();
        d.out(port, 0);
        d.assert_guest_bug(&format!("port {port}"));
    }
}

#[test]
fn ring_index_out_of_range_is_a_guest_bug() {
    let mut d = Driver::new();
    d.bring_up();
    let iface = d.dev.interface();
    // The guest claims 1000 commands on a 32-entry ring.
    let prod = offset_of!(QXLRam, cmd_ring) + offset_of!(QXLRingHeader, prod);
    d.put(prod, 1000u32);
    assert!(iface.get_command().is_err());
    d.assert_guest_bug("producer far ahead of the consumer");
}

#[test]
fn guest_memory_is_never_reached_outside_the_bars() {
    // The device memory holds only the BARs; a slot can only be added inside them, so every
    // translated address is inside the device's own mappings.
    let mut d = Driver::new();
    d.bring_up();
    let mut b = [0u8; 4];
    d.dev
        .memory()
        .read(MemoryBar::Vram, CFG.vram_size - 4, &mut b)
        .unwrap();
    assert!(
        d.dev
            .memory()
            .read(MemoryBar::Vram, CFG.vram_size - 3, &mut b)
            .is_err()
    );
}

/// The driver with the real red worker thread attached.
fn with_worker() -> Driver {
    let mut d = Driver::new();
    let (dispatcher, _control) = saffron_worker::red::spawn(d.dev.interface()).unwrap();
    d.dev.attach_worker(Box::new(dispatcher));
    d.bring_up();
    d
}

/// Pushes `cmd` on the command ring as Linux does, and kicks the device if it asked for it.
fn push_command(d: &mut Driver, cmd: QXLCommand) {
    let ring = offset_of!(QXLRam, cmd_ring);
    let prod = d.get_u32(ring + offset_of!(QXLRingHeader, prod));
    let slot = (prod % QXL_COMMAND_RING_SIZE) as usize;
    let item = ring + offset_of!(QXLCommandRing, items) + slot * std::mem::size_of::<QXLCommand>();
    d.put(item, cmd);
    d.put(ring + offset_of!(QXLRingHeader, prod), prod + 1);
    if prod + 1 == d.get_u32(ring + offset_of!(QXLRingHeader, notify_on_prod)) {
        d.out(QXL_IO_NOTIFY_CMD, 0);
    }
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    false
}

#[test]
fn worker_consumes_the_ring_and_releases_commands() {
    let mut d = with_worker();
    // Three MESSAGE commands in BAR0 (slot 1 = BAR0 from offset 0), release ids 0x10..0x12.
    for (i, id) in [0x10u64, 0x11, 0x12].into_iter().enumerate() {
        let off = 0x1000 + i as u64 * 0x100;
        d.dev.bar_write(
            bar::RAM,
            off,
            QXLMessage {
                release_info: QXLReleaseInfo { id },
            }
            .as_slice(),
        );
        // Linux asks for a DISPLAY interrupt when releases arrive.
        let rel = offset_of!(QXLRam, release_ring) + offset_of!(QXLRingHeader, notify_on_prod);
        d.put(rel, 1u32);
        push_command(
            &mut d,
            QXLCommand {
                data: make_phys(1, 0, off).unwrap(),
                type_: QXL_CMD_MESSAGE,
                ..Default::default()
            },
        );
    }
    let release_prod = offset_of!(QXLRam, release_ring) + offset_of!(QXLRingHeader, prod);
    let items = d.ram_header
        + (offset_of!(QXLRam, release_ring) + offset_of!(QXLReleaseRing, items)) as u64;
    fn read_u64(d: &mut Driver, off: u64) -> u64 {
        let mut b = [0u8; 8];
        d.dev.bar_read(bar::RAM, off, &mut b);
        u64::from_le_bytes(b)
    }
    // The worker may take the commands in one pass or several (each pass ends with a push):
    // wait until all three were released and the open batch is empty again.
    assert!(
        wait_for(|| {
            let prod = d.get_u32(release_prod);
            let open = items + u64::from(prod % QXL_RELEASE_RING_SIZE) * 8;
            d.dev.stats().releases == 3 && prod >= 1 && read_u64(&mut d, open) == 0
        }),
        "all releases pushed: {:?}",
        d.dev.stats()
    );
    let stats = d.dev.stats();
    assert_eq!(stats.guest_bugs, 0, "{}", stats.last_guest_bug);
    assert_eq!(stats.commands, 3);
    // Each pushed batch chains its ids through the commands' own release_info.
    let mut seen = Vec::new();
    for batch in 0..d.get_u32(release_prod) {
        let mut id = read_u64(&mut d, items + u64::from(batch % QXL_RELEASE_RING_SIZE) * 8);
        while id != 0 && seen.len() < 8 {
            seen.push(id);
            id = read_u64(&mut d, 0x1000 + (id - 0x10) * 0x100);
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, [0x10, 0x11, 0x12]);
    assert_ne!(
        d.isr() & QXL_INTERRUPT_DISPLAY,
        0,
        "DISPLAY raised for the release"
    );
}

#[test]
fn command_in_an_unknown_memslot_is_a_guest_bug() {
    let mut d = with_worker();
    push_command(
        &mut d,
        QXLCommand {
            data: make_phys(6, 0, 0x1000).unwrap(),
            type_: QXL_CMD_DRAW,
            ..Default::default()
        },
    );
    assert!(
        wait_for(|| d.dev.in_guest_bug()),
        "the worker reported a guest bug"
    );
    let pending = d.get_u32(offset_of!(QXLRam, int_pending));
    assert_ne!(pending & QXL_INTERRUPT_ERROR, 0);
    // RESET brings the device back; the worker processes again.
    d.out(QXL_IO_RESET, 0);
    assert!(!d.dev.in_guest_bug());
}

#[test]
fn unknown_command_type_is_a_guest_bug() {
    let mut d = with_worker();
    push_command(
        &mut d,
        QXLCommand {
            data: make_phys(1, 0, 0x1000).unwrap(),
            type_: 77,
            ..Default::default()
        },
    );
    assert!(wait_for(|| d.dev.in_guest_bug()));
}

fn read_u64(d: &mut Driver, off: u64) -> u64 {
    let mut b = [0u8; 8];
    d.dev.bar_read(bar::RAM, off, &mut b);
    u64::from_le_bytes(b)
}

/// Every id the device has handed back so far, pushed or still in the open batch: the
/// guest's garbage collector walks each chain through the commands' own `release_info`
/// (`at(id)` is where the command with that id lives in BAR0).
fn released(d: &mut Driver, at: impl Fn(u64) -> u64) -> Vec<u64> {
    let ring = offset_of!(QXLRam, release_ring);
    let items = d.ram_header + (ring + offset_of!(QXLReleaseRing, items)) as u64;
    let prod = d.get_u32(ring + offset_of!(QXLRingHeader, prod));
    let mut seen = Vec::new();
    for batch in 0..=prod {
        let mut id = read_u64(d, items + u64::from(batch % QXL_RELEASE_RING_SIZE) * 8);
        while id != 0 && seen.len() < 16 {
            seen.push(id);
            id = read_u64(d, at(id));
        }
    }
    seen.sort_unstable();
    seen
}

/// A Linux-style surface command: CREATE in a release slot, DESTROY 64 bytes after it.
fn surface_cmd(d: &mut Driver, off: u64, id: u64, surface_id: u32, create: bool) {
    let cmd = QXLSurfaceCmd {
        release_info: QXLReleaseInfo { id },
        surface_id,
        type_: if create {
            QXL_SURFACE_CMD_CREATE
        } else {
            QXL_SURFACE_CMD_DESTROY
        },
        flags: QXL_SURF_FLAG_KEEP_DATA,
        surface_create: QXLSurface {
            format: SPICE_SURFACE_FMT_32_xRGB,
            width: 64,
            height: 64,
            stride: 256,
            // Surface pixels in the surfaces slot (BAR1).
            data: make_phys(2, 0, u64::from(surface_id) * 0x1_0000).unwrap(),
        },
    };
    d.dev.bar_write(bar::RAM, off, cmd.as_slice());
    push_command(
        d,
        QXLCommand {
            data: make_phys(1, 0, off).unwrap(),
            type_: QXL_CMD_SURFACE,
            ..Default::default()
        },
    );
}

#[test]
fn surface_creates_come_back_only_with_their_destroy() {
    let mut d = with_worker();
    // Release ids 0x70.. live at 0x3000 + (id - 0x70) * 64.
    let at = |id: u64| 0x3000 + (id - 0x70) * 64;
    surface_cmd(&mut d, at(0x70), 0x70, 1, true);
    surface_cmd(&mut d, at(0x72), 0x72, 2, true);
    // FLUSH_SURFACES completes after the ring was drained.
    d.async_op(QXL_IO_FLUSH_SURFACES_ASYNC, 0);
    d.out(QXL_IO_FLUSH_RELEASE, 0);
    assert_eq!(d.dev.stats().commands, 2);
    assert_eq!(d.dev.stats().releases, 0, "CREATEs are held");
    assert!(released(&mut d, at).is_empty());
    // Nor does the guest's NOTIFY_OOM get them back.
    d.out(QXL_IO_NOTIFY_OOM, 0);
    assert!(released(&mut d, at).is_empty());
    // DESTROY of surface 1 (64 bytes after its CREATE, as Linux places it).
    surface_cmd(&mut d, at(0x71), 0x71, 1, false);
    assert!(wait_for(|| d.dev.stats().releases == 2));
    assert_eq!(released(&mut d, at), [0x70, 0x71]);
    // DESTROY_ALL_SURFACES gives back surface 2's CREATE.
    d.async_op(QXL_IO_DESTROY_ALL_SURFACES_ASYNC, 0);
    assert!(wait_for(|| d.dev.stats().releases == 3));
    assert_eq!(released(&mut d, at), [0x70, 0x71, 0x72]);
    // A CREATE held across a RESET is dropped: the ring starts over empty and stays so.
    surface_cmd(&mut d, at(0x73), 0x73, 1, true);
    d.async_op(QXL_IO_FLUSH_SURFACES_ASYNC, 0);
    assert_eq!(d.dev.stats().commands, 4);
    d.bring_up();
    d.out(QXL_IO_FLUSH_RELEASE, 0);
    assert!(released(&mut d, at).is_empty());
    assert_eq!(d.dev.stats().releases, 3);
    // Surface 1 is free again after the reset.
    surface_cmd(&mut d, at(0x74), 0x74, 1, true);
    surface_cmd(&mut d, at(0x75), 0x75, 1, false);
    assert!(wait_for(|| d.dev.stats().releases == 5));
    assert_eq!(released(&mut d, at), [0x74, 0x75]);
    let stats = d.dev.stats();
    assert_eq!(stats.guest_bugs, 0, "{}", stats.last_guest_bug);
}

/// With a BAR4, Linux puts its surfaces memslot over BAR4 (all of it) instead of BAR1; a
/// primary beyond BAR1's size is then surface memory only BAR4 reaches, and what the guest
/// writes there through BAR4 is what the worker shows.
#[test]
fn surfaces_memslot_over_bar4_reaches_past_bar1() {
    let cfg = QxlConfig {
        vram64_size: 4 * CFG.vram_size,
        ..CFG
    };
    let mut d = Driver::with_config(cfg);
    let (dispatcher, control) = saffron_worker::red::spawn(d.dev.interface()).unwrap();
    d.dev.attach_worker(Box::new(dispatcher));
    assert_eq!(d.dev.pci().bar_address(bar::VRAM64), Some(BAR4_ADDR));
    d.out(QXL_IO_RESET, 0);
    d.put(offset_of!(QXLRam, int_mask), 0x27u32);
    d.memslot(1, u64::from(BAR0_ADDR), u64::from(BAR0_ADDR) + d.ram_header);
    d.memslot(2, BAR4_ADDR, BAR4_ADDR + cfg.vram64_size);
    // A 256x256 primary at 2 MiB into the slot: past BAR1's 1 MiB.
    let offset = 2 << 20;
    d.put(
        offset_of!(QXLRam, create_surface),
        QXLSurfaceCreate {
            width: 256,
            height: 256,
            stride: 1024,
            format: SPICE_SURFACE_FMT_32_xRGB,
            position: 0,
            mouse_mode: 0,
            flags: QXL_SURF_FLAG_KEEP_DATA,
            type_: QXL_SURF_TYPE_PRIMARY,
            mem: make_phys(2, 0, offset).unwrap(),
        },
    );
    d.async_op(QXL_IO_CREATE_PRIMARY_ASYNC, 0);
    assert_eq!(d.dev.mode(), Mode::Native);
    // The guest writes a red pixel at (1, 0) through its BAR4 mapping.
    d.dev
        .bar_write(bar::VRAM64, offset + 4, &0x00ff_0000u32.to_le_bytes());
    let (w, h, rgb) = control.screendump().unwrap();
    assert_eq!((w, h), (256, 256));
    assert_eq!(&rgb[3..6], &[0xff, 0, 0]);
    // BAR1's first bytes are BAR4's first bytes.
    d.dev.bar_write(bar::VRAM, 0x10, &[0xab]);
    let mut b = [0u8];
    d.dev.bar_read(bar::VRAM64, 0x10, &mut b);
    assert_eq!(b, [0xab]);
    let stats = d.dev.stats();
    assert_eq!(stats.guest_bugs, 0, "{}", stats.last_guest_bug);
    control.stop();
}

#[test]
fn memslot_larger_than_bar1_is_a_guest_bug_even_with_bar4() {
    let mut d = Driver::with_config(QxlConfig {
        vram64_size: 4 * CFG.vram_size,
        ..CFG
    });
    d.bring_up();
    // BAR4-sized, but placed at BAR1's address: it runs past BAR1.
    d.put(
        offset_of!(QXLRam, mem_slot),
        QXLMemSlot {
            mem_start: u64::from(BAR1_ADDR),
            mem_end: u64::from(BAR1_ADDR) + 4 * CFG.vram_size,
        },
    );
    d.out(QXL_IO_MEMSLOT_ADD, 3);
    d.assert_guest_bug("memslot past BAR1");
}
