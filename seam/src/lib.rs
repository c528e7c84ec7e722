//! The two traits at the device ↔ worker seam, in a crate of their own so that the device
//! depends on the seam and not on the renderer.
//!
//! [`QxlWorker`] is how the device asks the worker for something (a ring was kicked, a
//! primary surface was created, an area must be up to date); the dispatcher behind it turns
//! each call into a message to the worker thread, so an I/O port write never waits for
//! rendering unless the port is synchronous. [`QxlInterface`] is how the worker reaches back
//! into the device: popping ring entries, releasing commands, completing async operations,
//! raising interrupts, reporting a guest bug. Neither side touches the other's state, so each
//! can be tested with a fake of the other.

use saffron_ring::abi::{QXLCommand, QXLPHYSICAL};
use saffron_ring::memslot::MemSlotTable;
use saffron_ring::parse::{PrimarySurface, Rect};
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// What the device asks of the worker.
#[derive(Clone, Debug)]
pub enum WorkerRequest {
    /// The guest pushed onto the command or cursor ring.
    Wakeup,
    /// The guest is short of memory: release whatever can be released now.
    Oom,
    /// The memslot table changed (add, delete, reset); the worker translates with this copy.
    Memslots(Box<MemSlotTable>),
    /// CREATE_PRIMARY with a validated argument.
    CreatePrimary(PrimarySurface),
    /// DESTROY_PRIMARY.
    DestroyPrimary,
    /// DESTROY_SURFACE_WAIT: drawing on this surface must be finished. The surface itself
    /// lives on until its DESTROY command, as in spice-server.
    DestroySurfaceWait(u32),
    /// DESTROY_ALL_SURFACES.
    DestroyAllSurfaces,
    /// UPDATE_AREA: rendering touching `area` of `surface_id` must be in guest memory.
    UpdateArea {
        /// The surface.
        surface_id: u32,
        /// The area, already checked to be well formed.
        area: Rect,
    },
    /// FLUSH_SURFACES_ASYNC: everything pending must be in guest memory.
    FlushSurfaces,
    /// FLUSH_RELEASE: push the release batch being built now.
    FlushRelease,
    /// MONITORS_CONFIG_ASYNC with the guest's QXLMonitorsConfig address.
    MonitorsConfig(QXLPHYSICAL),
    /// Device reset: forget surfaces, cursor and pending releases.
    Reset,
    /// In VGA mode: the screen the legacy VGA shows now (QEMU's host primary of qxl-vga).
    /// The worker shows it until the guest creates a primary surface or resets the device.
    VgaFrame(std::sync::Arc<VgaFrame>),
}

/// One picture of the legacy VGA, as the device renders it in VGA mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VgaFrame {
    pub width: u32,
    pub height: u32,
    /// `width * height` pixels, row after row, each `0x00RRGGBB`.
    pub pixels: Vec<u32>,
}

impl VgaFrame {
    /// The frame as packed RGB (3 bytes a pixel), as screendumps are.
    pub fn to_rgb(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.pixels.len() * 3);
        for p in &self.pixels {
            let [b, g, r, _] = p.to_le_bytes();
            out.extend_from_slice(&[r, g, b]);
        }
        out
    }
}

/// How the device learns that a request is done.
#[derive(Debug)]
pub enum Completion {
    /// Nobody waits.
    None,
    /// The device thread blocks until this is signalled (synchronous ports).
    Sync(crossbeam_channel::Sender<()>),
    /// The worker calls [`QxlInterface::async_complete`] with this cookie when done.
    Async(u64),
}

/// Device → worker.
pub trait QxlWorker: Send {
    /// Queues `request`; `done` says how its completion is reported.
    fn submit(&self, request: WorkerRequest, done: Completion);
}

/// Errors the device reports to the worker when a ring cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RingFault(pub String);

/// Worker → device.
pub trait QxlInterface: Send + 'static {
    /// The device address space (BAR0 at 0, BAR1 above it) that memslots translate into.
    fn memory(&self) -> &GuestMemoryMmap;
    /// The number of surfaces the ROM offers.
    fn n_surfaces(&self) -> u32;
    /// How many heads of the guest's monitors config the device honours (QEMU's qxl
    /// `max_outputs`): the worker shows and announces at most this many. One by default, a
    /// single-monitor card.
    fn max_heads(&self) -> u32 {
        1
    }
    /// Pops the next command-ring entry, raising DISPLAY if the guest waits for room.
    fn get_command(&self) -> Result<Option<QXLCommand>, RingFault>;
    /// Pops the next cursor-ring entry, raising CURSOR if the guest waits for room.
    fn get_cursor_command(&self) -> Result<Option<QXLCommand>, RingFault>;
    /// Going idle on the command ring: asks for a kick on the next push. Returns true when
    /// entries arrived meanwhile (keep going instead of sleeping).
    fn req_cmd_notification(&self) -> Result<bool, RingFault>;
    /// Same for the cursor ring.
    fn req_cursor_notification(&self) -> Result<bool, RingFault>;
    /// Adds a finished command (its `release_info` at `info`, id `id`) to the release batch,
    /// pushing the batch first if it is full of work the guest has not seen.
    fn release_resource(&self, info: GuestAddress, id: u64);
    /// Pushes the release batch being built (end of a processing pass, FLUSH_RELEASE, OOM).
    fn flush_resources(&self);
    /// An async port operation finished: raises IO_CMD.
    fn async_complete(&self, cookie: u64);
    /// The guest broke the protocol: the device enters its error state.
    fn guest_bug(&self, what: &str);
}
