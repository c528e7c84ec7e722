//! The QXL device: PCI identity, BAR layout, the ROM, the RAM header, the I/O ports of
//! revision 5, memslots, the primary surface, async operations and the guest-bug state.
//! Commands on the rings are the worker's; the device hands it requests through
//! [`QxlWorker`] and the worker reaches back through [`DeviceInterface`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use saffron_ring::abi::{
    QXL_CLIENT_MONITORS_MAX, QXL_INTERRUPT_CLIENT_MONITORS_CONFIG, QXL_INTERRUPT_IO_CMD,
    QXL_IO_ATTACH_PRIMARY, QXL_IO_CREATE_PRIMARY, QXL_IO_CREATE_PRIMARY_ASYNC,
    QXL_IO_DESTROY_ALL_SURFACES, QXL_IO_DESTROY_ALL_SURFACES_ASYNC, QXL_IO_DESTROY_PRIMARY,
    QXL_IO_DESTROY_PRIMARY_ASYNC, QXL_IO_DESTROY_SURFACE_ASYNC, QXL_IO_DESTROY_SURFACE_WAIT,
    QXL_IO_DETACH_PRIMARY, QXL_IO_FLUSH_RELEASE, QXL_IO_FLUSH_SURFACES_ASYNC, QXL_IO_LOG,
    QXL_IO_MEMSLOT_ADD, QXL_IO_MEMSLOT_ADD_ASYNC, QXL_IO_MEMSLOT_DEL, QXL_IO_MONITORS_CONFIG_ASYNC,
    QXL_IO_NOTIFY_CMD, QXL_IO_NOTIFY_CURSOR, QXL_IO_NOTIFY_OOM, QXL_IO_RANGE_SIZE, QXL_IO_RESET,
    QXL_IO_SET_MODE, QXL_IO_UPDATE_AREA, QXL_IO_UPDATE_AREA_ASYNC, QXL_IO_UPDATE_IRQ, QXLMemSlot,
    QXLURect,
};
use saffron_ring::memslot::{BarRange, MemSlotTable};
use saffron_ring::parse::{Context, PrimarySurface, Rect, parse_primary};
use saffron_rom::ram::RamHeader;
use saffron_rom::rom::{Rom, RomConfig};
use saffron_seam::{Completion, QxlInterface, QxlWorker, WorkerRequest};
use thiserror::Error;
use tracing::{debug, error, info, warn};
use vm_memory::{Bytes, FileOffset, MmapRegion, VolatileMemory};

use crate::irq::IrqLine;
use crate::memory::{DeviceMemory, MemoryBar, MemoryError, RAM_BASE, VRAM_BASE};
use crate::pci::{BarKind, BarSpec, PciConfig, PciConfigError, PciIdentity};
use crate::shared::{DeviceInterface, Shared};

mod vga;
pub use vga::{VBE_PORTS, VGA_PORTS, VGA_WINDOW, VgaStats};

/// Red Hat, Inc. (QEMU's paravirtual devices).
pub const QXL_VENDOR_ID: u16 = 0x1b36;
/// QXL_DEVICE_ID_STABLE.
pub const QXL_DEVICE_ID: u16 = 0x0100;
/// Revision 5: same ABI as 4, but VGA port writes no longer leave native mode.
pub const QXL_REVISION: u8 = 5;
/// Display controller, VGA-compatible (the "primary" QXL variant).
pub const QXL_CLASS_VGA: u32 = 0x03_00_00;
/// Size of the ROM BAR.
pub const QXL_ROM_SIZE: u64 = 8192;
/// Size of the I/O BAR (revision ≥ 3).
pub const QXL_IO_SIZE: u64 = 32;
/// The RAM header occupies the last 8 KiB of BAR0.
pub const RAM_HEADER_SIZE: u64 = 8192;
/// Surfaces offered to the guest (ids 0..N-1), as QEMU's default.
pub const N_SURFACES: u32 = 1024;
/// Largest BAR4: 16 GiB (surface offsets must stay far below the 48 bits of a QXLPHYSICAL).
pub const MAX_VRAM64_SIZE: u64 = 1 << 34;
/// Largest RAM or VRAM BAR: BAR0 and BAR1 are 32-bit memory BARs (as in QEMU's qxl), and
/// 2 GiB is the largest power of two one can be below 4 GiB.
pub const MAX_BAR_SIZE: u64 = 1 << 31;
/// How long a synchronous port waits for the worker before giving up on it: a worker that
/// hangs must not hang the guest's vCPU (and the VMM's message loop) for ever.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// BAR numbers; Linux's qxl driver hard-codes them.
pub mod bar {
    /// RAM: surface-0 area, driver heap, RAM header at the end.
    pub const RAM: usize = 0;
    /// VRAM: surface memory.
    pub const VRAM: usize = 1;
    /// ROM: QXLRom and the mode table, read-only.
    pub const ROM: usize = 2;
    /// I/O ports.
    pub const IO: usize = 3;
    /// Optional 64-bit prefetchable VRAM: BAR1's memory and more (registers 4 and 5).
    pub const VRAM64: usize = 4;
}

/// Port numbers (offsets in the I/O BAR), re-exported for front ends and tests.
pub mod port {
    pub use saffron_ring::abi::{
        QXL_IO_LOG as LOG, QXL_IO_RESET as RESET, QXL_IO_UPDATE_IRQ as UPDATE_IRQ,
    };
}

/// Sizes of the device's BARs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QxlConfig {
    /// BAR0 size in bytes (power of two, > the RAM header).
    pub ram_size: u64,
    /// BAR1 size in bytes (power of two, ≥ 4 KiB).
    pub vram_size: u64,
    /// BAR4 size in bytes, 0 for no BAR4 (QEMU's `vram64_size_mb`): a power of two larger
    /// than `vram_size`; its first `vram_size` bytes are BAR1's memory, the rest more room for
    /// surfaces. Linux puts its surfaces there when the BAR exists.
    pub vram64_size: u64,
    /// A resolution offered to the guest as its preferred mode (through the ROM's client
    /// monitors config, as QEMU's xres/yres do); `None` leaves the driver's 1024x768.
    pub preferred_resolution: Option<(u32, u32)>,
    /// Heads (monitors) the device honours, 1 to [`MAX_HEADS`] (QEMU's qxl `max_outputs`):
    /// at most this many heads of the guest's monitors config are shown and announced to
    /// clients, and of a client's monitors config offered to the guest through the ROM.
    pub max_heads: u32,
}

/// Most heads a device may have: what the ROM's client monitors config holds
/// (QXL_CLIENT_MONITORS_MAX).
pub const MAX_HEADS: u32 = QXL_CLIENT_MONITORS_MAX as u32;

/// Heads by default: the connectors Linux's drm/qxl makes (its `num_heads` default, 4).
/// QEMU's qxl sets no limit by default (`max_outputs=0`); a limit as large as the guest's
/// own keeps every head a Linux guest can light, and a client that asks for more monitors
/// than the guest has connectors gets no layout the guest cannot follow.
pub const DEFAULT_HEADS: u32 = 4;

impl Default for QxlConfig {
    fn default() -> Self {
        QxlConfig {
            ram_size: 64 << 20,
            vram_size: 64 << 20,
            vram64_size: 0,
            preferred_resolution: None,
            max_heads: DEFAULT_HEADS,
        }
    }
}

impl QxlConfig {
    /// Sizes from megabyte counts as given on a command line (`vram64_mb` 0: no BAR4).
    pub fn from_mb(ram_mb: u64, vram_mb: u64, vram64_mb: u64) -> Result<Self, QxlError> {
        let cfg = QxlConfig {
            ram_size: ram_mb.saturating_mul(1 << 20),
            vram_size: vram_mb.saturating_mul(1 << 20),
            vram64_size: vram64_mb.saturating_mul(1 << 20),
            preferred_resolution: None,
            max_heads: DEFAULT_HEADS,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the sizes and the head count (also done by [`QxlDevice::new`]).
    pub fn validate(&self) -> Result<(), QxlError> {
        let ok = |s: u64, min: u64, max: u64| s.is_power_of_two() && s >= min && s <= max;
        if !ok(self.ram_size, 2 * RAM_HEADER_SIZE, MAX_BAR_SIZE) {
            return Err(QxlError::BarSize("RAM (BAR0)", self.ram_size));
        }
        if !ok(self.vram_size, 4096, MAX_BAR_SIZE) {
            return Err(QxlError::BarSize("VRAM (BAR1)", self.vram_size));
        }
        // QEMU only adds BAR4 when it is larger than BAR1; asking for a BAR4 that would not
        // exist is refused rather than silently ignored.
        if self.vram64_size != 0 && !ok(self.vram64_size, 2 * self.vram_size, MAX_VRAM64_SIZE) {
            return Err(QxlError::BarSize(
                "64-bit VRAM (BAR4, larger than BAR1)",
                self.vram64_size,
            ));
        }
        if !(1..=MAX_HEADS).contains(&self.max_heads) {
            return Err(QxlError::Heads(self.max_heads));
        }
        Ok(())
    }

    /// The surface-0 area: QEMU's default vgamem (16 MiB), at most a quarter of BAR0 so the
    /// driver's heap keeps room.
    fn surface0_area_size(&self) -> u32 {
        let quarter = self.ram_size / 4;
        u32::try_from(quarter.min(16 << 20)).unwrap_or(16 << 20)
    }
}

/// Errors building or driving the device.
#[derive(Debug, Error)]
pub enum QxlError {
    /// A BAR size the device cannot expose.
    #[error("{0} size {1:#x} must be a power of two within the supported range")]
    BarSize(&'static str, u64),
    /// The memory handed in does not match the configured sizes.
    #[error("device memory is {got:#x?} bytes (BAR0, BAR1, BAR4), configured {want:#x?}")]
    MemorySize {
        /// Configured BAR0, BAR1 and BAR4 sizes.
        want: [u64; 3],
        /// Given BAR0, BAR1 and BAR4 sizes.
        got: [u64; 3],
    },
    /// The configuration space rejected the layout.
    #[error("PCI configuration: {0}")]
    Pci(#[from] PciConfigError),
    /// A BAR access outside memory.
    #[error("device memory: {0}")]
    Memory(#[from] MemoryError),
    /// The ROM could not be built.
    #[error("ROM: {0}")]
    Rom(#[from] saffron_rom::rom::RomError),
    /// The RAM header could not be placed.
    #[error("RAM header: {0}")]
    Ram(#[from] saffron_rom::ram::RamError),
    /// The file shared as the ROM BAR could not be mapped.
    #[error("cannot map the shared ROM: {0}")]
    RomMap(#[from] vm_memory::mmap::MmapRegionError),
    /// BAR0 cannot hold the 256 KiB of VGA memory a legacy VGA needs.
    #[error("BAR0 of {0:#x} bytes is too small for a legacy VGA")]
    NoVga(u64),
    /// A head count the ROM cannot describe.
    #[error("{0} heads: a device has 1 to {MAX_HEADS}")]
    Heads(u32),
}

/// Counters a front end or the control socket can report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QxlStats {
    /// 1-byte writes per I/O port.
    pub io_writes: [u64; QXL_IO_SIZE as usize],
    /// I/O BAR accesses that were not 1-byte writes (dropped, as QEMU does).
    pub io_ignored: u64,
    /// Port writes ignored because the device was in its error state.
    pub io_while_broken: u64,
    /// QXL port writes dropped because the device was in VGA mode (as QEMU drops them).
    pub io_in_vga_mode: u64,
    /// Trapped accesses per BAR (for BAR0/1/4 these are only the ones the VMM did not map).
    pub bar_accesses: [u64; 5],
    /// Times the interrupt level went from low to high.
    pub irq_raised: u64,
    /// Device resets (PCI reset or the RESET port).
    pub resets: u64,
    /// Commands popped from the command ring.
    pub commands: u64,
    /// Commands popped from the cursor ring.
    pub cursor_commands: u64,
    /// Commands handed back through the release ring.
    pub releases: u64,
    /// Async operations completed.
    pub async_completions: u64,
    /// Guest bugs detected.
    pub guest_bugs: u64,
    /// What the last guest bug was.
    pub last_guest_bug: String,
    /// Primary surfaces created.
    pub primary_creates: u64,
    /// Width and height of the last primary surface created.
    pub last_primary_size: Option<(u32, u32)>,
    /// The last text the guest logged through the LOG port.
    pub last_log: String,
    /// Client monitors configs offered to the guest with QXL_INTERRUPT_CLIENT_MONITORS_CONFIG.
    pub client_monitors_configs: u64,
}

/// What [`QxlDevice::set_client_monitors_config`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientMonitorsOutcome {
    /// Written into the ROM and the guest interrupted: its driver acts on it.
    Raised,
    /// Written into the ROM only: the guest's driver does not take the interrupt (yet).
    Stored,
}

/// How the guest drives the display (QEMU's qxl modes, less the qxl-1 compat mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No primary surface.
    Undefined,
    /// The legacy VGA is the display (from reset until the driver creates a primary; only a
    /// device with [`QxlDevice::enable_vga`]). Most QXL ports are ignored meanwhile.
    Vga,
    /// A primary surface exists.
    Native,
}

/// The QXL PCI function.
pub struct QxlDevice {
    cfg: QxlConfig,
    pci: PciConfig,
    memory: DeviceMemory,
    rom: Rom,
    rom_bytes: Vec<u8>,
    /// The ROM BAR's pages when a front end maps them into the guest (see
    /// [`QxlDevice::share_rom`]): rewritten whole on every ROM change.
    rom_shared: Option<MmapRegion>,
    slots: MemSlotTable,
    mode: Mode,
    primary: Option<PrimarySurface>,
    /// The legacy VGA of qxl-vga, when the front end forwards its ranges.
    vga: Option<Box<vga::VgaState>>,
    shared: Arc<Shared>,
    worker: Option<Box<dyn QxlWorker>>,
    next_cookie: u64,
    stats: QxlStats,
}

impl std::fmt::Debug for QxlDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QxlDevice")
            .field("cfg", &self.cfg)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// How a request's completion is awaited.
enum Done {
    None,
    Sync,
    Async(u64),
}

impl QxlDevice {
    /// Builds the device over `memory` (which must have the configured BAR sizes), driving
    /// `irq`. Until a worker is attached, requests complete at once.
    pub fn new(
        cfg: QxlConfig,
        memory: DeviceMemory,
        irq: Box<dyn IrqLine>,
    ) -> Result<Self, QxlError> {
        cfg.validate()?;
        let want = [cfg.ram_size, cfg.vram_size, cfg.vram64_size];
        let got = [memory.ram_size(), memory.vram_size(), memory.vram64_size()];
        if want != got {
            return Err(QxlError::MemorySize { want, got });
        }
        let mut pci = PciConfig::new(PciIdentity {
            vendor_id: QXL_VENDOR_ID,
            device_id: QXL_DEVICE_ID,
            revision: QXL_REVISION,
            class_code: QXL_CLASS_VGA,
            subsystem_vendor_id: 0x1af4,
            subsystem_id: 0x1100,
        });
        let mem32 = BarKind::Memory32 {
            prefetchable: false,
        };
        for (index, size, kind) in [
            (bar::RAM, cfg.ram_size, mem32),
            (bar::VRAM, cfg.vram_size, mem32),
            (bar::ROM, QXL_ROM_SIZE, mem32),
            (bar::IO, QXL_IO_SIZE, BarKind::Io),
        ] {
            pci.add_bar(BarSpec { index, size, kind })?;
        }
        if cfg.vram64_size != 0 {
            pci.add_bar(BarSpec {
                index: bar::VRAM64,
                size: cfg.vram64_size,
                kind: BarKind::Memory64 { prefetchable: true },
            })?;
        }
        let rom = Rom::new(&RomConfig {
            bar0_size: cfg.ram_size,
            surface0_area_size: cfg.surface0_area_size(),
            n_surfaces: N_SURFACES,
            ..RomConfig::default()
        })?;
        let mut rom = rom;
        if let Some((w, h)) = cfg.preferred_resolution {
            rom.set_preferred_resolution(w, h)?;
        }
        let ram = RamHeader::new(memory.address(
            MemoryBar::Ram,
            cfg.ram_size - RAM_HEADER_SIZE,
            RAM_HEADER_SIZE as usize,
        )?)?;
        let shared = Arc::new(Shared::new(
            memory.guest_memory().clone(),
            ram,
            N_SURFACES,
            cfg.max_heads,
            irq,
        )?);
        let mut dev = QxlDevice {
            cfg,
            pci,
            memory,
            rom_bytes: rom.to_bytes(),
            rom_shared: None,
            rom,
            slots: MemSlotTable::new(),
            mode: Mode::Undefined,
            primary: None,
            vga: None,
            shared,
            worker: None,
            next_cookie: 1,
            stats: QxlStats::default(),
        };
        dev.reset_qxl();
        dev.stats.resets = 0;
        Ok(dev)
    }

    /// The worker's handle on this device.
    pub fn interface(&self) -> DeviceInterface {
        DeviceInterface(Arc::clone(&self.shared))
    }

    /// Connects the worker that consumes the rings.
    pub fn attach_worker(&mut self, worker: Box<dyn QxlWorker>) {
        worker.submit(
            WorkerRequest::Memslots(Box::new(self.slots.clone())),
            Completion::None,
        );
        self.worker = Some(worker);
    }

    /// The configured sizes.
    pub fn config(&self) -> QxlConfig {
        self.cfg
    }

    /// The PCI configuration space (read-only view, e.g. for BAR addresses).
    pub fn pci(&self) -> &PciConfig {
        &self.pci
    }

    /// BAR0/BAR1 memory.
    pub fn memory(&self) -> &DeviceMemory {
        &self.memory
    }

    /// The ROM (e.g. to offer a preferred resolution).
    pub fn rom_mut(&mut self) -> &mut Rom {
        &mut self.rom
    }

    /// Re-reads the ROM image after a change through [`QxlDevice::rom_mut`].
    pub fn rom_changed(&mut self) {
        self.rom_bytes = self.rom.to_bytes();
        if let Some(shared) = &self.rom_shared {
            // The mapping is at least as large as the image (checked in share_rom).
            if let Err(e) = shared.as_volatile_slice().write_slice(&self.rom_bytes, 0) {
                warn!("cannot update the shared ROM: {e}");
            }
        }
    }

    /// Backs the ROM BAR with `file` (at least [`QxlDevice::bar_size`] of the ROM BAR bytes)
    /// that the front end hands to the VMM to map into the guest. The Linux driver reads the
    /// ROM's `mm_clock` for every drawing it sends; trapped, that is a round trip to this
    /// process per frame, while QEMU's own qxl serves it from memory.
    ///
    /// The guest may write to the mapping (a VMM maps it like RAM): that only changes what the
    /// guest itself reads back until the next ROM change or reset rewrites it. The device keeps
    /// its own copy and never reads the shared pages.
    pub fn share_rom(&mut self, file: FileOffset) -> Result<(), QxlError> {
        let size = self.bar_size(bar::ROM);
        let size = usize::try_from(size).map_err(|_| QxlError::BarSize("ROM", size))?;
        if size < self.rom_bytes.len() {
            return Err(QxlError::BarSize("ROM", size as u64));
        }
        self.rom_shared = Some(MmapRegion::from_file(file, size)?);
        self.rom_changed();
        Ok(())
    }

    /// The current display mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The primary surface, if the guest created one.
    pub fn primary(&self) -> Option<&PrimarySurface> {
        self.primary.as_ref()
    }

    /// Whether the device is in its error state (until reset).
    pub fn in_guest_bug(&self) -> bool {
        self.shared.in_guest_bug()
    }

    /// Counters since start.
    pub fn stats(&self) -> QxlStats {
        let s = &self.shared.stats;
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        QxlStats {
            irq_raised: get(&s.irq_raised),
            commands: get(&s.commands),
            cursor_commands: get(&s.cursor_commands),
            releases: get(&s.releases),
            async_completions: get(&s.async_completions),
            guest_bugs: get(&s.guest_bugs),
            last_guest_bug: self
                .shared
                .last_bug
                .lock()
                .map(|b| b.clone())
                .unwrap_or_default(),
            ..self.stats.clone()
        }
    }

    /// The current interrupt level (int_pending & int_mask != 0 at the last evaluation).
    pub fn irq_level(&self) -> bool {
        self.shared.level()
    }

    /// Size of `bar` as exposed in config space (0 if the device has no such BAR).
    pub fn bar_size(&self, bar: usize) -> u64 {
        self.pci.bar(bar).map_or(0, |b| b.size)
    }

    /// A configuration space read; status bit 3 shows the current interrupt level.
    pub fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        self.pci.set_interrupt_status(self.shared.level());
        self.pci.read(offset, data);
    }

    /// A configuration space write. The INTx disable bit gates the line.
    pub fn config_write(&mut self, offset: u64, data: &[u8]) {
        self.pci.write(offset, data);
        self.shared.set_intx_disabled(self.pci.intx_disabled());
    }

    /// A trapped BAR read. Reads outside a BAR or of a BAR the device lacks return 0xff, like
    /// an unclaimed bus cycle: the guest gets no fault and learns nothing.
    pub fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if let Some(n) = self.stats.bar_accesses.get_mut(bar) {
            *n += 1;
        }
        let ok = match bar {
            bar::RAM => self.memory.read(MemoryBar::Ram, offset, data).is_ok(),
            bar::VRAM => self.memory.read(MemoryBar::Vram, offset, data).is_ok(),
            bar::VRAM64 => self.memory.read(MemoryBar::Vram64, offset, data).is_ok(),
            bar::ROM => usize::try_from(offset)
                .ok()
                .and_then(|o| self.rom_bytes.get(o..o.checked_add(data.len())?))
                .map(|src| data.copy_from_slice(src))
                .is_some(),
            _ => false,
        };
        if !ok {
            data.fill(0xff);
        }
    }

    /// A trapped BAR write. Writes outside a BAR, into the ROM, or of the wrong width to an
    /// I/O port are dropped.
    pub fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if let Some(n) = self.stats.bar_accesses.get_mut(bar) {
            *n += 1;
        }
        let result = match bar {
            bar::RAM => self.memory.write(MemoryBar::Ram, offset, data),
            bar::VRAM => self.memory.write(MemoryBar::Vram, offset, data),
            bar::VRAM64 => self.memory.write(MemoryBar::Vram64, offset, data),
            bar::IO => {
                match (u8::try_from(offset), data) {
                    (Ok(port), [val]) if u64::from(port) < QXL_IO_SIZE => self.io_write(port, *val),
                    _ => self.stats.io_ignored += 1,
                }
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            debug!("dropped BAR{bar} write: {e}");
        }
    }

    /// PCI function reset: config space back to power-on values and a QXL hard reset.
    pub fn reset(&mut self) {
        if let Some(v) = self.vga.as_mut() {
            v.vga.reset();
        }
        self.pci.reset();
        self.shared.set_intx_disabled(false);
        self.reset_qxl();
    }

    /// Raises interrupt bits (e.g. CLIENT_MONITORS_CONFIG from the host side).
    pub fn raise(&mut self, bits: u32) {
        self.shared.raise(bits);
    }

    /// Offers the guest a client's monitor layout (one `{top, left, bottom, right}` per head,
    /// in the client's space): written into the ROM's client monitors config with its CRC, then
    /// QXL_INTERRUPT_CLIENT_MONITORS_CONFIG is raised, which makes the Linux qxl driver re-read
    /// it (`qxl_display_read_client_monitors_config`) and report a hotplug with the heads as
    /// its connectors' preferred modes. This is QEMU's `interface_client_monitors_config`.
    ///
    /// The ROM is written even when the guest's driver does not take the interrupt yet (not
    /// loaded, or an old driver whose `int_mask` is 0 or all ones, which QEMU reads as "no
    /// support"): a driver loading later reads the ROM at its start, as it reads
    /// `--resolution`'s. Heads beyond the device's [`QxlConfig::max_heads`] are dropped, as
    /// QEMU caps them at its `max_outputs`: the guest's driver sees a connector per head it is
    /// offered, and this card shows no more than that many.
    pub fn set_client_monitors_config(
        &mut self,
        heads: &[QXLURect],
    ) -> Result<ClientMonitorsOutcome, QxlError> {
        let max = usize::try_from(self.shared.max_heads)
            .unwrap_or(QXL_CLIENT_MONITORS_MAX)
            .min(QXL_CLIENT_MONITORS_MAX);
        let heads = heads.get(..max).unwrap_or(heads);
        let changed = self.rom.set_client_monitors_config(heads)?;
        if changed {
            self.rom_changed();
        }
        let mask = self
            .shared
            .ram
            .int_mask(&self.shared.mem)
            .unwrap_or_default();
        let takes_interrupt =
            mask != 0 && mask != u32::MAX && mask & QXL_INTERRUPT_CLIENT_MONITORS_CONFIG != 0;
        if !takes_interrupt {
            debug!(
                mask,
                heads = heads.len(),
                "client monitors config kept in the ROM: the guest does not take its interrupt"
            );
            return Ok(ClientMonitorsOutcome::Stored);
        }
        info!(
            heads = heads.len(),
            changed, "client monitors config offered to the guest"
        );
        self.stats.client_monitors_configs += 1;
        self.shared.raise(QXL_INTERRUPT_CLIENT_MONITORS_CONFIG);
        Ok(ClientMonitorsOutcome::Raised)
    }

    fn guest_bug(&mut self, what: &str) {
        self.shared.set_guest_bug(what);
        // The rejected operation will never complete; a later RESET clears the slot anyway.
        if let Ok(mut op) = self.shared.async_op.lock() {
            *op = None;
        }
    }

    fn submit(&mut self, request: WorkerRequest, done: Done) {
        let Some(worker) = &self.worker else {
            if let Done::Async(cookie) = done {
                self.interface().async_complete(cookie);
            }
            return;
        };
        match done {
            Done::None => worker.submit(request, Completion::None),
            Done::Async(cookie) => worker.submit(request, Completion::Async(cookie)),
            Done::Sync => {
                let (tx, rx) = crossbeam_channel::bounded(1);
                worker.submit(request, Completion::Sync(tx));
                if rx.recv_timeout(SYNC_TIMEOUT).is_err() {
                    error!("the worker did not finish a synchronous request in {SYNC_TIMEOUT:?}");
                }
            }
        }
    }

    /// Claims the async slot for `port`; a second async operation before the first completed
    /// is a guest bug.
    fn begin_async(&mut self, port: u8) -> Option<Done> {
        let busy = {
            let mut op = self
                .shared
                .async_op
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match *op {
                Some(pending) => Some(pending),
                None => {
                    *op = Some(port);
                    None
                }
            }
        };
        if let Some(pending) = busy {
            self.guest_bug(&format!(
                "async port {port} while async port {pending} is still pending"
            ));
            return None;
        }
        let cookie = self.next_cookie;
        self.next_cookie = self.next_cookie.wrapping_add(1);
        Some(Done::Async(cookie))
    }

    /// Completion mode for a port that has a sync and an async variant.
    fn done_for(&mut self, port: u8, is_async: bool) -> Option<Done> {
        if is_async {
            self.begin_async(port)
        } else {
            Some(Done::Sync)
        }
    }

    fn io_write(&mut self, port: u8, val: u8) {
        if let Some(n) = self.stats.io_writes.get_mut(usize::from(port)) {
            *n += 1;
        }
        if self.shared.in_guest_bug() && port != QXL_IO_RESET {
            self.stats.io_while_broken += 1;
            return;
        }
        if self.mode == Mode::Vga && !Self::allowed_in_vga_mode(port) {
            // QEMU drops these in VGA mode; an async one still gets its IO_CMD, for drivers
            // that would otherwise wait for ever.
            self.stats.io_in_vga_mode += 1;
            if (QXL_IO_UPDATE_AREA_ASYNC..QXL_IO_RANGE_SIZE).contains(&port) {
                self.shared.raise(QXL_INTERRUPT_IO_CMD);
            }
            return;
        }
        match port {
            QXL_IO_NOTIFY_CMD | QXL_IO_NOTIFY_CURSOR => {
                self.submit(WorkerRequest::Wakeup, Done::None)
            }
            QXL_IO_UPDATE_AREA | QXL_IO_UPDATE_AREA_ASYNC => {
                self.update_area(port, port == QXL_IO_UPDATE_AREA_ASYNC)
            }
            QXL_IO_UPDATE_IRQ => self.shared.update_irq(),
            QXL_IO_NOTIFY_OOM => self.submit(WorkerRequest::Oom, Done::Sync),
            QXL_IO_RESET => self.reset_qxl(),
            QXL_IO_SET_MODE => {
                self.guest_bug("SET_MODE: the qxl-1 compat mode is not supported by this device")
            }
            QXL_IO_LOG => self.log_guest_text(),
            QXL_IO_MEMSLOT_ADD | QXL_IO_MEMSLOT_ADD_ASYNC => {
                self.memslot_add(port, val, port == QXL_IO_MEMSLOT_ADD_ASYNC)
            }
            QXL_IO_MEMSLOT_DEL => self.memslot_del(val),
            QXL_IO_DETACH_PRIMARY | QXL_IO_ATTACH_PRIMARY => self.guest_bug(&format!(
                "port {port} (detach/attach primary) does not exist"
            )),
            QXL_IO_CREATE_PRIMARY | QXL_IO_CREATE_PRIMARY_ASYNC => {
                self.create_primary(port, val, port == QXL_IO_CREATE_PRIMARY_ASYNC)
            }
            QXL_IO_DESTROY_PRIMARY | QXL_IO_DESTROY_PRIMARY_ASYNC => {
                self.destroy_primary(port, val, port == QXL_IO_DESTROY_PRIMARY_ASYNC)
            }
            QXL_IO_DESTROY_SURFACE_WAIT | QXL_IO_DESTROY_SURFACE_ASYNC => {
                self.destroy_surface(port, val, port == QXL_IO_DESTROY_SURFACE_ASYNC)
            }
            QXL_IO_DESTROY_ALL_SURFACES | QXL_IO_DESTROY_ALL_SURFACES_ASYNC => {
                if let Some(done) = self.done_for(port, port == QXL_IO_DESTROY_ALL_SURFACES_ASYNC) {
                    self.primary = None;
                    self.mode = Mode::Undefined;
                    self.submit(WorkerRequest::DestroyAllSurfaces, done);
                }
            }
            QXL_IO_FLUSH_SURFACES_ASYNC => {
                if let Some(done) = self.begin_async(port) {
                    self.submit(WorkerRequest::FlushSurfaces, done);
                }
            }
            QXL_IO_FLUSH_RELEASE => self.submit(WorkerRequest::FlushRelease, Done::Sync),
            QXL_IO_MONITORS_CONFIG_ASYNC => {
                if let Some(done) = self.begin_async(port) {
                    let phys = self
                        .shared
                        .ram
                        .monitors_config(&self.shared.mem)
                        .unwrap_or(0);
                    self.submit(WorkerRequest::MonitorsConfig(phys), done);
                }
            }
            _ => self.guest_bug(&format!("write to unknown I/O port {port}")),
        }
    }

    /// The ports QEMU's qxl serves in VGA mode: those that set the device up.
    fn allowed_in_vga_mode(port: u8) -> bool {
        matches!(
            port,
            QXL_IO_RESET
                | QXL_IO_SET_MODE
                | QXL_IO_MEMSLOT_ADD
                | QXL_IO_MEMSLOT_DEL
                | QXL_IO_CREATE_PRIMARY
                | QXL_IO_UPDATE_IRQ
                | QXL_IO_LOG
                | QXL_IO_MEMSLOT_ADD_ASYNC
                | QXL_IO_CREATE_PRIMARY_ASYNC
        )
    }

    fn update_area(&mut self, port: u8, is_async: bool) {
        let mem = &self.shared.mem;
        let (Ok(surface_id), Ok(area)) = (
            self.shared.ram.update_surface(mem),
            self.shared.ram.update_area(mem),
        ) else {
            return;
        };
        let area = Rect::from(area);
        if surface_id >= N_SURFACES {
            return self.guest_bug(&format!(
                "UPDATE_AREA of surface {surface_id} (max {})",
                N_SURFACES - 1
            ));
        }
        if area.left < 0 || area.top < 0 || area.left > area.right || area.top > area.bottom {
            return self.guest_bug(&format!("UPDATE_AREA with a bad rectangle {area:?}"));
        }
        let Some(done) = self.done_for(port, is_async) else {
            return;
        };
        if area.left == area.right || area.top == area.bottom {
            // An empty area is tolerated: nothing to do, but an async caller waits for IO_CMD.
            if let Done::Async(cookie) = done {
                self.interface().async_complete(cookie);
            }
            return;
        }
        self.submit(WorkerRequest::UpdateArea { surface_id, area }, done);
    }

    /// Device-address ranges of the memory, which memslots translate into: BAR0, and the
    /// surface memory that BAR1 and BAR4 both show.
    fn device_bars(&self) -> [BarRange; 2] {
        [
            BarRange {
                base: RAM_BASE,
                len: self.cfg.ram_size,
            },
            BarRange {
                base: VRAM_BASE,
                len: self.memory.surface_memory_size(),
            },
        ]
    }

    fn memslot_add(&mut self, port: u8, id: u8, is_async: bool) {
        let slot = match self.shared.ram.mem_slot(&self.shared.mem) {
            Ok(s) => s,
            Err(e) => return self.guest_bug(&format!("MEMSLOT_ADD: {e}")),
        };
        let (start, end) = (slot.mem_start, slot.mem_end);
        // The guest names guest-physical addresses inside a memory BAR; the worker only sees
        // device addresses, so the slot is rebased onto the BAR it lies in, now. BAR1 and
        // BAR4 both start at the surface memory's first byte.
        let rebased = [
            (bar::RAM, RAM_BASE),
            (bar::VRAM, VRAM_BASE),
            (bar::VRAM64, VRAM_BASE),
        ]
        .into_iter()
        .find_map(|(index, dev_base)| {
            let base = self.pci.bar_address(index)?;
            let size = self.bar_size(index);
            let within = start >= base && start <= end && end <= base.checked_add(size)?;
            within.then(|| dev_base.0 + (start - base))
        });
        let Some(dev_start) = rebased else {
            return self.guest_bug(&format!(
                "MEMSLOT_ADD {id}: [{start:#x}, {end:#x}) is not inside a memory BAR"
            ));
        };
        let dev_slot = QXLMemSlot {
            mem_start: dev_start,
            mem_end: dev_start + (end - start),
        };
        if let Err(e) = self.slots.add(u32::from(id), dev_slot, &self.device_bars()) {
            return self.guest_bug(&format!("MEMSLOT_ADD {id}: {e}"));
        }
        self.rom.set_slot_generation(self.slots.generation());
        self.rom_changed();
        debug!(id, start, end, "memslot added");
        if let Some(done) = self.done_for(port, is_async) {
            self.submit(WorkerRequest::Memslots(Box::new(self.slots.clone())), done);
        }
    }

    fn memslot_del(&mut self, id: u8) {
        if let Err(e) = self.slots.del(u32::from(id)) {
            return self.guest_bug(&format!("MEMSLOT_DEL {id}: {e}"));
        }
        self.submit(
            WorkerRequest::Memslots(Box::new(self.slots.clone())),
            Done::Sync,
        );
    }

    fn create_primary(&mut self, port: u8, val: u8, is_async: bool) {
        if val != 0 {
            return self.guest_bug(&format!("CREATE_PRIMARY with surface id {val}"));
        }
        if self.mode == Mode::Native {
            return self.guest_bug("CREATE_PRIMARY while a primary surface exists");
        }
        let create = match self.shared.ram.create_surface(&self.shared.mem) {
            Ok(c) => c,
            Err(e) => return self.guest_bug(&format!("CREATE_PRIMARY: {e}")),
        };
        let (stride, height) = (create.stride, create.height);
        let bytes = u64::from(stride.unsigned_abs()) * u64::from(height);
        if stride % 4 != 0 || bytes > u64::from(self.rom.header().surface0_area_size) {
            return self.guest_bug(&format!(
                "CREATE_PRIMARY: stride {stride} × height {height} does not fit the surface 0 area"
            ));
        }
        let ctx = Context::new(&self.shared.mem, &self.slots, N_SURFACES);
        let primary = match parse_primary(&ctx, &create) {
            Ok(p) => p,
            Err(e) => return self.guest_bug(&format!("CREATE_PRIMARY: {e}")),
        };
        let Some(done) = self.done_for(port, is_async) else {
            return;
        };
        if self.mode == Mode::Vga {
            // QEMU's qxl_exit_vga_mode: the worker drops the VGA picture when the primary
            // arrives.
            debug!("leaving VGA mode");
            self.mode = Mode::Undefined;
        }
        info!(
            width = primary.create.width,
            height = primary.create.height,
            stride = primary.create.stride,
            "primary surface created"
        );
        self.primary = Some(primary);
        self.mode = Mode::Native;
        self.stats.primary_creates += 1;
        self.stats.last_primary_size = Some((primary.create.width, primary.create.height));
        self.submit(WorkerRequest::CreatePrimary(primary), done);
    }

    fn destroy_primary(&mut self, port: u8, val: u8, is_async: bool) {
        if val != 0 {
            return self.guest_bug(&format!("DESTROY_PRIMARY with surface id {val}"));
        }
        let Some(done) = self.done_for(port, is_async) else {
            return;
        };
        if self.mode == Mode::Undefined {
            // Nothing to destroy; QEMU ignores it, and an async caller still gets IO_CMD.
            if let Done::Async(cookie) = done {
                self.interface().async_complete(cookie);
            }
            return;
        }
        self.primary = None;
        self.mode = Mode::Undefined;
        self.submit(WorkerRequest::DestroyPrimary, done);
    }

    fn destroy_surface(&mut self, port: u8, val: u8, is_async: bool) {
        let id = u32::from(val);
        if id >= N_SURFACES {
            return self.guest_bug(&format!("DESTROY_SURFACE of surface {id}"));
        }
        if let Some(done) = self.done_for(port, is_async) {
            self.submit(WorkerRequest::DestroySurfaceWait(id), done);
        }
    }

    /// Hard reset: ROM, memslots, surfaces, RAM header, interrupt, error state.
    fn reset_qxl(&mut self) {
        self.stats.resets += 1;
        self.rom.reset();
        self.rom_changed();
        self.slots.reset();
        self.primary = None;
        self.mode = Mode::Undefined;
        if let Err(e) = self.shared.ram.reset(&self.shared.mem) {
            warn!("cannot reset the RAM header: {e}");
        }
        self.shared.guest_bug.store(false, Ordering::Release);
        if let Ok(mut op) = self.shared.async_op.lock() {
            *op = None;
        }
        self.submit(WorkerRequest::Reset, Done::Sync);
        self.submit(
            WorkerRequest::Memslots(Box::new(self.slots.clone())),
            Done::None,
        );
        self.shared.update_irq();
        // A hard reset of qxl-vga returns to VGA mode (QEMU's qxl_hard_reset).
        self.enter_vga_mode();
    }

    fn log_guest_text(&mut self) {
        let Ok(bytes) = self.shared.ram.log_message(&self.shared.mem) else {
            return;
        };
        let text = String::from_utf8_lossy(&bytes).trim_end().to_string();
        info!(target: "saffron::guest", "{text}");
        self.stats.last_log = text;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    // RAM header offsets (QXLRam), spelled out so the tests check the layout independently.
    const RAM_MAGIC: u32 = 0x4152_5851;
    const RAM_OFF_MAGIC: u64 = 0;
    const RAM_OFF_INT_PENDING: u64 = 4;
    const RAM_OFF_INT_MASK: u64 = 8;
    const RAM_OFF_LOG_BUF: u64 = 12;
    const LOG_BUF_SIZE: usize = 4096;

    /// Records every level the device drives.
    #[derive(Clone, Default)]
    struct FakeLine(Arc<Mutex<Vec<bool>>>);

    impl IrqLine for FakeLine {
        fn set_level(&self, asserted: bool) {
            self.0.lock().unwrap().push(asserted);
        }
    }

    impl FakeLine {
        fn last(&self) -> bool {
            *self.0.lock().unwrap().last().unwrap()
        }
    }

    const SMALL: QxlConfig = QxlConfig {
        ram_size: 1 << 20,
        vram_size: 1 << 16,
        vram64_size: 0,
        preferred_resolution: None,
        max_heads: 1,
    };

    fn device() -> (QxlDevice, FakeLine) {
        device_with_heads(1)
    }

    fn device_with_heads(max_heads: u32) -> (QxlDevice, FakeLine) {
        let line = FakeLine::default();
        let mem = DeviceMemory::anonymous(SMALL.ram_size, SMALL.vram_size, 0).unwrap();
        let cfg = QxlConfig { max_heads, ..SMALL };
        let dev = QxlDevice::new(cfg, mem, Box::new(line.clone())).unwrap();
        (dev, line)
    }

    fn status_bit(dev: &mut QxlDevice) -> bool {
        let mut s = [0u8; 2];
        dev.config_read(6, &mut s);
        u16::from_le_bytes(s) & crate::pci::STATUS_INTERRUPT != 0
    }

    fn put_header(dev: &mut QxlDevice, field: u64, val: u32) {
        let off = SMALL.ram_size - RAM_HEADER_SIZE + field;
        dev.bar_write(bar::RAM, off, &val.to_le_bytes());
    }

    fn get_header(dev: &mut QxlDevice, field: u64) -> u32 {
        let off = SMALL.ram_size - RAM_HEADER_SIZE + field;
        let mut b = [0; 4];
        dev.bar_read(bar::RAM, off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn identity_and_bars() {
        let (mut dev, _) = device();
        let mut id = [0; 12];
        dev.config_read(0, &mut id);
        assert_eq!(&id[..4], &[0x36, 0x1b, 0x00, 0x01]);
        assert_eq!(id[8], QXL_REVISION);
        assert_eq!(&id[9..12], &[0x00, 0x00, 0x03]);
        assert_eq!(dev.bar_size(bar::RAM), SMALL.ram_size);
        assert_eq!(dev.bar_size(bar::VRAM), SMALL.vram_size);
        assert_eq!(dev.bar_size(bar::ROM), QXL_ROM_SIZE);
        assert_eq!(dev.bar_size(bar::IO), QXL_IO_SIZE);
        assert_eq!(dev.bar_size(4), 0);
    }

    #[test]
    fn reset_writes_ram_header() {
        let (mut dev, line) = device();
        assert_eq!(get_header(&mut dev, RAM_OFF_MAGIC), RAM_MAGIC);
        assert_eq!(get_header(&mut dev, RAM_OFF_INT_MASK), 0);
        assert!(!line.last());
    }

    #[test]
    fn update_irq_drives_pending_and_mask() {
        let (mut dev, line) = device();
        put_header(&mut dev, RAM_OFF_INT_PENDING, 1);
        dev.bar_write(bar::IO, port::UPDATE_IRQ.into(), &[0]);
        assert!(!line.last(), "masked");
        put_header(&mut dev, RAM_OFF_INT_MASK, 1);
        dev.bar_write(bar::IO, port::UPDATE_IRQ.into(), &[0]);
        assert!(line.last());
        assert!(status_bit(&mut dev));
        put_header(&mut dev, RAM_OFF_INT_PENDING, 0);
        dev.bar_write(bar::IO, port::UPDATE_IRQ.into(), &[0]);
        assert!(!line.last());
        assert!(!status_bit(&mut dev));
        assert_eq!(dev.stats().irq_raised, 1);
        assert_eq!(dev.stats().io_writes[usize::from(port::UPDATE_IRQ)], 3);
    }

    #[test]
    fn intx_disable_gates_the_line_but_not_the_status() {
        let (mut dev, line) = device();
        put_header(&mut dev, RAM_OFF_INT_MASK, 0x27);
        dev.config_write(5, &[0x04]);
        dev.raise(1);
        assert!(!line.last());
        assert!(status_bit(&mut dev));
        dev.config_write(5, &[0x00]);
        assert!(line.last(), "re-enabling INTx re-asserts a pending level");
    }

    #[test]
    fn raise_ors_bits() {
        let (mut dev, line) = device();
        put_header(&mut dev, RAM_OFF_INT_MASK, 0x04);
        dev.raise(0x01);
        assert!(!line.last());
        dev.raise(0x04);
        assert!(line.last());
        assert_eq!(get_header(&mut dev, RAM_OFF_INT_PENDING), 0x05);
    }

    #[test]
    fn client_monitors_config_goes_to_the_rom_and_interrupts_a_ready_guest() {
        let (mut dev, line) = device_with_heads(4);
        let head = |w: u32, h: u32, x: u32| QXLURect {
            top: 0,
            left: x,
            bottom: h,
            right: x + w,
        };
        let rom_u32 = |dev: &mut QxlDevice, off: u64| {
            let mut b = [0u8; 4];
            dev.bar_read(bar::ROM, off, &mut b);
            u32::from_le_bytes(b)
        };
        // No driver yet (int_mask 0): kept in the ROM, no interrupt.
        let out = dev
            .set_client_monitors_config(&[head(800, 600, 0)])
            .unwrap();
        assert_eq!(out, ClientMonitorsOutcome::Stored);
        assert_eq!(rom_u32(&mut dev, 0x84) & 0xffff, 1, "count");
        assert_eq!(rom_u32(&mut dev, 0x88 + 12), 800, "head 0 right");
        let mut config = [0u8; 1028];
        dev.bar_read(bar::ROM, 0x84, &mut config);
        assert_eq!(
            rom_u32(&mut dev, 0x80),
            saffron_rom::monitors::crc32_le(0, &config),
            "the CRC the guest checks"
        );
        assert_eq!(get_header(&mut dev, RAM_OFF_INT_PENDING), 0);
        // An old driver that masks with all ones does not take it either (QEMU's rule).
        put_header(&mut dev, RAM_OFF_INT_MASK, u32::MAX);
        let out = dev
            .set_client_monitors_config(&[head(640, 480, 0)])
            .unwrap();
        assert_eq!(out, ClientMonitorsOutcome::Stored);
        // Linux's mask (DISPLAY, CURSOR, IO_CMD, CLIENT_MONITORS_CONFIG): raised.
        put_header(&mut dev, RAM_OFF_INT_MASK, 0x27);
        let two = [head(1024, 768, 0), head(640, 480, 1024)];
        let out = dev.set_client_monitors_config(&two).unwrap();
        assert_eq!(out, ClientMonitorsOutcome::Raised);
        assert_eq!(get_header(&mut dev, RAM_OFF_INT_PENDING), 0x20);
        assert!(line.last());
        assert_eq!(rom_u32(&mut dev, 0x84) & 0xffff, 2);
        assert_eq!(rom_u32(&mut dev, 0x98 + 4), 1024, "head 1 left");
        assert_eq!(dev.stats().client_monitors_configs, 1);
        // A guest reset keeps the client's layout (it lives in the shadow ROM too).
        dev.bar_write(bar::IO, port::RESET.into(), &[0]);
        assert_eq!(rom_u32(&mut dev, 0x84) & 0xffff, 2);
        // Hostile sizes: more heads than the device has are capped, inverted ones refused.
        put_header(&mut dev, RAM_OFF_INT_MASK, 0x27);
        let many = vec![head(1, 1, 0); 300];
        assert!(dev.set_client_monitors_config(&many).is_ok());
        assert_eq!(rom_u32(&mut dev, 0x84) & 0xffff, 4);
        let inverted = QXLURect {
            top: 5,
            left: 0,
            bottom: 1,
            right: 1,
        };
        assert!(dev.set_client_monitors_config(&[inverted]).is_err());
    }

    /// Every head of a client's layout, up to the device's count, reaches the ROM (in order,
    /// each where the client put it) with one interrupt; a one-head card offers head 0 only,
    /// as QEMU's qxl with `max_outputs=1`.
    #[test]
    fn all_heads_up_to_the_device_count_reach_the_rom() {
        let rect = |w: u32, h: u32, x: u32| QXLURect {
            top: 0,
            left: x,
            bottom: h,
            right: x + w,
        };
        let layout = [
            rect(1024, 768, 0),
            rect(800, 600, 1024),
            rect(640, 480, 1824),
            rect(320, 200, 2464),
            rect(100, 100, 2784),
        ];
        for (max_heads, offered) in [(1u32, 1u32), (2, 2), (4, 4), (64, 5)] {
            let (mut dev, line) = device_with_heads(max_heads);
            put_header(&mut dev, RAM_OFF_INT_MASK, 0x27);
            let out = dev.set_client_monitors_config(&layout).unwrap();
            assert_eq!(out, ClientMonitorsOutcome::Raised);
            assert!(line.last(), "{max_heads} heads: interrupt raised");
            assert_eq!(get_header(&mut dev, RAM_OFF_INT_PENDING), 0x20);
            let mut config = [0u8; 1028];
            dev.bar_read(bar::ROM, 0x84, &mut config);
            let word = |at: usize| u32::from_le_bytes(config[at..at + 4].try_into().unwrap());
            assert_eq!(word(0) & 0xffff, offered, "{max_heads} heads: count");
            for (i, r) in layout.iter().take(offered as usize).enumerate() {
                // QXLURect: top, left, bottom, right.
                let at = 4 + i * 16;
                assert_eq!(
                    [word(at), word(at + 4), word(at + 8), word(at + 12)],
                    [r.top, r.left, r.bottom, r.right],
                    "{max_heads} heads: head {i}"
                );
            }
            // Nothing past the offered heads: a driver that reads all 64 sees no ghost.
            assert!(config[4 + offered as usize * 16..].iter().all(|&b| b == 0));
            let mut crc = [0u8; 4];
            dev.bar_read(bar::ROM, 0x80, &mut crc);
            assert_eq!(
                u32::from_le_bytes(crc),
                saffron_rom::monitors::crc32_le(0, &config)
            );
        }
        // A head count the ROM cannot describe is refused at creation.
        for bad in [0, 65, u32::MAX] {
            let mem = DeviceMemory::anonymous(SMALL.ram_size, SMALL.vram_size, 0).unwrap();
            let cfg = QxlConfig {
                max_heads: bad,
                ..SMALL
            };
            assert!(matches!(
                QxlDevice::new(cfg, mem, Box::new(FakeLine::default())),
                Err(QxlError::Heads(n)) if n == bad
            ));
        }
    }

    #[test]
    fn reset_port_drops_the_line() {
        let (mut dev, line) = device();
        put_header(&mut dev, RAM_OFF_INT_MASK, 1);
        dev.raise(1);
        assert!(line.last());
        dev.bar_write(bar::IO, port::RESET.into(), &[0]);
        assert!(!line.last());
        assert_eq!(get_header(&mut dev, RAM_OFF_INT_MASK), 0);
    }

    #[test]
    fn log_port_reads_a_bounded_buffer() {
        let (mut dev, _) = device();
        let off = SMALL.ram_size - RAM_HEADER_SIZE + RAM_OFF_LOG_BUF;
        dev.bar_write(bar::RAM, off, b"hello\0junk");
        dev.bar_write(bar::IO, port::LOG.into(), &[0]);
        assert_eq!(dev.stats().last_log, "hello");
        dev.bar_write(bar::RAM, off, &[b'x'; LOG_BUF_SIZE]);
        dev.bar_write(bar::IO, port::LOG.into(), &[0]);
        assert_eq!(dev.stats().last_log.len(), LOG_BUF_SIZE);
    }

    #[test]
    fn odd_accesses_are_dropped_not_fatal() {
        let (mut dev, _) = device();
        dev.bar_write(bar::IO, 3, &[0, 0]);
        dev.bar_write(bar::IO, 200, &[0]);
        dev.bar_write(bar::IO, u64::MAX, &[0]);
        assert_eq!(dev.stats().io_ignored, 3);
        let mut b = [0u8; 4];
        dev.bar_read(bar::IO, 0, &mut b);
        assert_eq!(b, [0xff; 4]);
        dev.bar_read(bar::RAM, SMALL.ram_size - 2, &mut b);
        assert_eq!(b, [0xff; 4]);
        dev.bar_read(bar::ROM, QXL_ROM_SIZE - 2, &mut b);
        assert_eq!(b, [0xff; 4]);
        dev.bar_read(9, 0, &mut b);
        dev.bar_write(bar::ROM, 0, &[1, 2, 3, 4]);
        dev.bar_read(bar::ROM, 0, &mut b);
        assert_eq!(&b, b"QXRO", "ROM is read-only");
        dev.bar_write(bar::VRAM, u64::MAX - 1, &[1, 2, 3]);
    }

    #[test]
    fn sizes_are_validated() {
        assert!(QxlConfig::from_mb(64, 64, 0).is_ok());
        assert!(QxlConfig::from_mb(48, 64, 0).is_err());
        assert!(QxlConfig::from_mb(64, 0, 0).is_err());
        assert!(QxlConfig::from_mb(u64::MAX, 64, 0).is_err());
        assert_eq!(
            QxlConfig::from_mb(64, 64, 128).unwrap().vram64_size,
            128 << 20
        );
        assert!(
            QxlConfig::from_mb(64, 64, 4096).is_ok(),
            "BAR4 may pass 4 GiB"
        );
        // BAR4 must be larger than BAR1 (QEMU would not add it otherwise), a power of two,
        // and bounded.
        assert!(QxlConfig::from_mb(64, 64, 64).is_err());
        assert!(QxlConfig::from_mb(64, 64, 32).is_err());
        assert!(QxlConfig::from_mb(64, 64, 96).is_err());
        assert!(QxlConfig::from_mb(64, 64, 1 << 20).is_err());
        let mem = DeviceMemory::anonymous(1 << 20, 1 << 20, 0).unwrap();
        assert!(QxlDevice::new(SMALL, mem, Box::new(crate::irq::NoIrq)).is_err());
        let mem = DeviceMemory::anonymous(SMALL.ram_size, SMALL.vram_size, 1 << 20).unwrap();
        assert!(
            QxlDevice::new(SMALL, mem, Box::new(crate::irq::NoIrq)).is_err(),
            "memory with a BAR4 the configuration lacks"
        );
    }

    #[test]
    fn bar4_is_a_64_bit_prefetchable_window_on_bar1s_memory() {
        let cfg = QxlConfig {
            vram64_size: 1 << 18,
            ..SMALL
        };
        let mem = DeviceMemory::anonymous(cfg.ram_size, cfg.vram_size, cfg.vram64_size).unwrap();
        let mut dev = QxlDevice::new(cfg, mem, Box::new(crate::irq::NoIrq)).unwrap();
        assert_eq!(dev.bar_size(bar::VRAM64), 1 << 18);
        let mut reg = [0u8; 8];
        dev.config_read(0x20, &mut reg);
        assert_eq!(reg, [0x0c, 0, 0, 0, 0, 0, 0, 0], "64-bit, prefetchable");
        // Sizing: all ones read back as the size mask over both registers.
        dev.config_write(0x20, &[0xff; 8]);
        dev.config_read(0x20, &mut reg);
        assert_eq!(u64::from_le_bytes(reg), !((1u64 << 18) - 1) | 0x0c);
        // Programmed above 4 GiB, it decodes there.
        dev.config_write(0x20, &0x8_0000_0000u64.to_le_bytes());
        dev.config_write(0x04, &0x0002u16.to_le_bytes());
        assert_eq!(dev.pci().bar_address(bar::VRAM64), Some(0x8_0000_0000));
        // The same bytes through BAR1 and BAR4; past BAR1 only BAR4.
        dev.bar_write(bar::VRAM, 0x40, &[5, 6]);
        let mut b = [0u8; 2];
        dev.bar_read(bar::VRAM64, 0x40, &mut b);
        assert_eq!(b, [5, 6]);
        dev.bar_write(bar::VRAM64, 1 << 17, &[9]);
        dev.bar_read(bar::VRAM64, 1 << 17, &mut b[..1]);
        assert_eq!(b[0], 9);
        dev.bar_read(bar::VRAM, 1 << 17, &mut b[..1]);
        assert_eq!(b[0], 0xff, "outside BAR1");
    }
}
