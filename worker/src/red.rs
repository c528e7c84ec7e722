//! The red worker thread and its dispatcher.
//!
//! The dispatcher ([`Dispatcher`], the device's [`QxlWorker`]) turns each request into a
//! message; the thread answers it, then drains both rings: every command is copied out of
//! guest memory once and validated (`saffron_ring::parse`), applied (surfaces, renderer,
//! cursor), and handed back through the release ring. Rendering is eager, so an UPDATE_AREA
//! only has to drain the rings before it answers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Receiver, Sender, unbounded};
use saffron_ring::memslot::MemSlotTable;
use saffron_ring::parse::{
    Command, Context, MonitorsConfig, ReadTrace, ReleaseInfo, SurfaceCmdKind, parse_command,
    parse_monitors_config,
};
use tracing::{debug, info, warn};

use saffron_display::{DisplayItem, Head, Monitors, Pipe, Watch};

use crate::cursor::{CursorState, CursorSummary};
use crate::heads;
use crate::publish::{self, PublishStats, Publisher};
use crate::record::{Event, Recorder, Ring};
use crate::render::{DrawKind, RenderError, Renderer};
use crate::screendump::{self, Area};
use crate::surface::{Surface, SurfaceError, SurfaceTable};
use crate::vga_screen::VgaScreen;
use saffron_ring::abi::QXLCommand;
use saffron_seam::{Completion, QxlInterface, QxlWorker, RingFault, WorkerRequest};

/// Commands handled per ring before the release batch is pushed, so a guest waiting on
/// releases is not starved by a long stream of drawing.
const RELEASE_BATCH: u32 = 32;

/// A screendump: (width, height, packed RGB), or why there is none.
pub type Screendump = Result<(u32, u32, Vec<u8>), String>;

/// What the host side can ask the worker (the control socket).
pub enum Query {
    /// What the guest shows: the primary surface as packed RGB, cropped to the first head
    /// shown of the guest's monitors config when it set one.
    Screendump(Sender<Screendump>),
    /// What head `id` of the guest's monitors config shows, as packed RGB; an error when no
    /// shown head has that id.
    HeadScreendump {
        /// The head's id.
        id: u32,
        /// Where the answer goes.
        reply: Sender<Screendump>,
    },
    /// A surface's geometry and memory, if it exists.
    SurfaceInfo {
        /// The surface id.
        id: u32,
        /// Where the answer goes.
        reply: Sender<Option<Surface>>,
    },
    /// Any surface (e.g. an off-screen one) as packed RGB.
    Surface {
        /// The surface id.
        id: u32,
        /// Where the answer goes.
        reply: Sender<Screendump>,
    },
    /// Counters.
    Stats(Sender<WorkerStats>),
    /// The primary surface's width and height, without its pixels.
    PrimarySize(Sender<Option<(u32, u32)>>),
}

enum Msg {
    Request(WorkerRequest, Completion),
    Query(Query),
    /// A display client's pipe: push the current state, then every change.
    Subscribe(Arc<Pipe>),
    /// A display client's pipe overflowed and was drained: push the area it lost.
    Resync(Arc<Pipe>),
    Stop,
}

/// Counters of the worker.
#[derive(Clone, Debug, Default)]
pub struct WorkerStats {
    /// Draw commands received.
    pub draws: u64,
    /// Draw commands the renderer refused (no such surface, bbox outside it): dropped and
    /// released, as spice-server does.
    pub dropped_draws: u64,
    /// Of them, drawings whose box lies outside their surface. Not a fault: Linux's qxl
    /// driver sends one at start, a full-screen COPY onto the 64x64 placeholder primary it
    /// creates before the real one.
    pub dropped_outside_surface: u64,
    /// Of them, drawings onto a surface that does not exist.
    pub dropped_no_surface: u64,
    /// Surface commands (create, destroy).
    pub surface_commands: u64,
    /// Cursor commands.
    pub cursor_commands: u64,
    /// Update and message commands.
    pub other_commands: u64,
    /// Commands that failed to parse (each is a guest bug).
    pub bad_commands: u64,
    /// Ids of the surfaces that exist now (0 is the primary).
    pub surface_ids: Vec<u32>,
    /// Surface CREATE commands held back from the release ring until their surface is
    /// destroyed.
    pub held_surface_creates: u64,
    /// Per draw kind: rendered, approximated, unsupported (logged once), failed.
    pub render: Vec<(String, crate::render::DrawCounts)>,
    /// The guest's cursor.
    pub cursor: CursorSummary,
    /// What was published to display clients.
    pub publish: PublishStats,
    /// Display clients subscribed now.
    pub display_subscribers: usize,
    /// The heads shown now (what display clients were last told), empty without a primary.
    pub heads: Vec<Head>,
    /// How many heads the device honours.
    pub max_heads: u32,
}

/// The device's [`QxlWorker`]: sends requests to the worker thread.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    tx: Sender<Msg>,
}

impl QxlWorker for Dispatcher {
    fn submit(&self, request: WorkerRequest, done: Completion) {
        if self.tx.send(Msg::Request(request, done)).is_err() {
            warn!("the worker thread is gone; request dropped");
        }
    }
}

/// Host-side access to a running worker.
#[derive(Clone, Debug)]
pub struct WorkerControl {
    tx: Sender<Msg>,
    /// The cursor as the worker last left it, published after every cursor command.
    cursor: Arc<Watch<CursorState>>,
}

impl WorkerControl {
    /// Asks the worker something and waits for the answer.
    pub fn query(&self, q: Query) -> bool {
        self.tx.send(Msg::Query(q)).is_ok()
    }

    /// What the guest shows as RGB: the primary surface, or head 0's part of it when the
    /// guest set a monitors config.
    pub fn screendump(&self) -> Screendump {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if !self.query(Query::Screendump(tx)) {
            return Err("the worker thread is gone".into());
        }
        rx.recv()
            .map_err(|_| "the worker thread is gone".to_string())?
    }

    /// What head `id` shows, as RGB (see [`Query::HeadScreendump`]).
    pub fn head_screendump(&self, id: u32) -> Screendump {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if !self.query(Query::HeadScreendump { id, reply: tx }) {
            return Err("the worker thread is gone".into());
        }
        rx.recv()
            .map_err(|_| "the worker thread is gone".to_string())?
    }

    /// Surface `id` as RGB, whatever its format (alpha-only formats as grey).
    pub fn surface_rgb(&self, id: u32) -> Screendump {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if !self.query(Query::Surface { id, reply: tx }) {
            return Err("the worker thread is gone".into());
        }
        rx.recv()
            .map_err(|_| "the worker thread is gone".to_string())?
    }

    /// Surface `id`: where its pixels are (device address space) and its geometry.
    pub fn surface(&self, id: u32) -> Option<Surface> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if !self.query(Query::SurfaceInfo { id, reply: tx }) {
            return None;
        }
        rx.recv().ok().flatten()
    }

    /// Subscribes a display client's pipe (see [`saffron_display::DisplaySource`]).
    pub fn subscribe(&self, pipe: Arc<Pipe>) -> bool {
        self.tx.send(Msg::Subscribe(pipe)).is_ok()
    }

    /// Asks for the area a display client's pipe lost to an overflow.
    pub fn resync(&self, pipe: Arc<Pipe>) {
        let _ = self.tx.send(Msg::Resync(pipe));
    }

    /// The cursor state if its generation is no longer `since` (`None` when it still is).
    /// Read from the published state: no round trip to the worker thread. Once the worker is
    /// gone its last cursor stays.
    pub fn cursor(&self, since: u64) -> Option<CursorState> {
        let state = self.cursor.latest();
        (state.generation != since).then_some(state)
    }

    /// The published cursor state, to wait on: the worker publishes it after every cursor
    /// command and reset, so a cursor channel needs no polling.
    pub fn cursor_watch(&self) -> Arc<Watch<CursorState>> {
        self.cursor.clone()
    }

    /// The worker's counters.
    pub fn stats(&self) -> Option<WorkerStats> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if !self.query(Query::Stats(tx)) {
            return None;
        }
        rx.recv().ok()
    }

    /// The primary surface's size (`None` while there is none). Cheap: no pixels are copied,
    /// so the input path can ask for every absolute pointer event.
    pub fn primary_size(&self) -> Option<(u32, u32)> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if !self.query(Query::PrimarySize(tx)) {
            return None;
        }
        rx.recv().ok().flatten()
    }

    /// Stops the thread.
    pub fn stop(&self) {
        let _ = self.tx.send(Msg::Stop);
    }
}

/// Starts the worker thread for the device behind `iface`.
pub fn spawn<I: QxlInterface>(iface: I) -> std::io::Result<(Dispatcher, WorkerControl)> {
    spawn_recording(iface, None)
}

/// [`spawn`], writing every ring command and the guest memory it used to `recorder`.
pub fn spawn_recording<I: QxlInterface>(
    iface: I,
    recorder: Option<Recorder>,
) -> std::io::Result<(Dispatcher, WorkerControl)> {
    let (tx, rx) = unbounded();
    let cursor = Arc::new(Watch::new(CursorState::new()));
    let watch = cursor.clone();
    thread::Builder::new()
        .name("saffron-worker".into())
        .spawn(move || {
            let mut worker = RedWorker::new(iface, watch);
            worker.recorder = recorder;
            worker.run(rx)
        })?;
    Ok((Dispatcher { tx: tx.clone() }, WorkerControl { tx, cursor }))
}

struct RedWorker<I> {
    iface: I,
    slots: MemSlotTable,
    surfaces: SurfaceTable,
    /// The release of each surface's CREATE command, by surface id. As in spice-server the
    /// guest gets a CREATE back only when its surface dies: the Linux driver keeps the
    /// surface's state in the CREATE's release (the DESTROY command is written next to it)
    /// and frees it when the release arrives.
    held_creates: BTreeMap<u32, ReleaseInfo>,
    /// The guest's last monitors config (MONITORS_CONFIG_ASYNC), as parsed; what its heads
    /// show of the primary is [`heads::shown`] of it.
    monitors: Option<MonitorsConfig>,
    renderer: Renderer,
    cursor: CursorState,
    /// Where `cursor` is published for the cursor channels.
    cursor_watch: Arc<Watch<CursorState>>,
    stats: WorkerStats,
    broken: bool,
    /// The display clients' pipes.
    publisher: Publisher,
    /// The opt-in command recorder.
    recorder: Option<Recorder>,
    /// The legacy VGA's picture while the device is in VGA mode.
    vga: VgaScreen,
}

impl<I: QxlInterface> RedWorker<I> {
    fn new(iface: I, cursor_watch: Arc<Watch<CursorState>>) -> Self {
        let n = iface.n_surfaces();
        RedWorker {
            iface,
            slots: MemSlotTable::new(),
            surfaces: SurfaceTable::new(n),
            held_creates: BTreeMap::new(),
            monitors: None,
            renderer: Renderer::new(),
            cursor: CursorState::new(),
            cursor_watch,
            stats: WorkerStats::default(),
            broken: false,
            publisher: Publisher::default(),
            recorder: None,
            vga: VgaScreen::default(),
        }
    }

    fn run(mut self, rx: Receiver<Msg>) {
        while let Ok(msg) = rx.recv() {
            match msg {
                Msg::Request(req, done) => {
                    self.handle(req);
                    if let Some(r) = self.recorder.as_mut() {
                        r.flush();
                    }
                    match done {
                        Completion::None => {}
                        Completion::Sync(tx) => {
                            let _ = tx.send(());
                        }
                        Completion::Async(cookie) => self.iface.async_complete(cookie),
                    }
                }
                Msg::Query(q) => self.answer(q),
                Msg::Subscribe(pipe) if self.showing_vga() => {
                    let items = self.vga.initial_items();
                    self.publisher.subscribe_items(pipe, items);
                }
                Msg::Resync(pipe) if self.showing_vga() => {
                    let vga = &self.vga;
                    self.publisher
                        .resync_with(&pipe, |area| vga.area_item(area));
                }
                Msg::Subscribe(pipe) => {
                    let monitors = self.monitors();
                    let mem = self.iface.memory();
                    self.publisher
                        .subscribe(pipe, mem, self.surfaces.primary(), monitors);
                }
                Msg::Resync(pipe) => {
                    let mem = self.iface.memory();
                    self.publisher.resync(&pipe, mem, self.surfaces.primary());
                }
                Msg::Stop => break,
            }
        }
        debug!("worker thread ends");
    }

    /// Publishes the cursor state for the cursor channels (cheap: the shape is shared).
    fn publish_cursor(&self) {
        self.cursor_watch.publish(self.cursor.clone());
    }

    fn answer(&mut self, q: Query) {
        match q {
            Query::Screendump(tx) => {
                let result = match self.surfaces.primary() {
                    Some(s) => {
                        let head = self.monitors().heads.first().copied();
                        let area = head.map_or(Area::whole(s), area_of);
                        screendump::area_rgb(self.iface.memory(), s, area)
                            .map_err(|e| e.to_string())
                    }
                    None => self
                        .vga
                        .screendump()
                        .unwrap_or_else(|| Err("no primary surface".to_string())),
                };
                let _ = tx.send(result);
            }
            Query::HeadScreendump { id, reply } => {
                let result = match self.surfaces.primary() {
                    Some(s) => match self.monitors().heads.iter().find(|h| h.id == id) {
                        Some(h) => screendump::area_rgb(self.iface.memory(), s, area_of(*h))
                            .map_err(|e| e.to_string()),
                        None => Err(format!("no head {id} is shown")),
                    },
                    None => Err("no primary surface".to_string()),
                };
                let _ = reply.send(result);
            }
            Query::SurfaceInfo { id, reply } => {
                let _ = reply.send(self.surfaces.get(id).ok().copied());
            }
            Query::Surface { id, reply } => {
                let result = self
                    .surfaces
                    .get(id)
                    .map_err(|e| e.to_string())
                    .and_then(|s| {
                        screendump::surface_rgb(self.iface.memory(), s).map_err(|e| e.to_string())
                    });
                let _ = reply.send(result);
            }
            Query::Stats(tx) => {
                let mut s = self.stats.clone();
                s.surface_ids = self.surfaces.iter().map(|(id, _)| id).collect();
                s.held_surface_creates = self.held_creates.len() as u64;
                s.render = self
                    .renderer
                    .stats()
                    .iter()
                    .filter(|(_, c)| *c != crate::render::DrawCounts::default())
                    .map(|(k, c)| (format!("{k:?}"), c))
                    .collect();
                s.cursor = self.cursor.summary();
                s.publish = self.publisher.stats();
                s.display_subscribers = self.publisher.subscribers();
                if self.surfaces.primary().is_some() {
                    s.heads = self.monitors().heads;
                }
                s.max_heads = self.iface.max_heads();
                let _ = tx.send(s);
            }
            Query::PrimarySize(tx) => {
                let size = self.surfaces.primary().map(|s| (s.width, s.height));
                let _ = tx.send(size.or_else(|| self.vga.size()));
            }
        }
    }

    fn handle(&mut self, req: WorkerRequest) {
        match req {
            WorkerRequest::Wakeup => self.process_rings(),
            WorkerRequest::Oom | WorkerRequest::FlushRelease => {
                self.process_rings();
                self.iface.flush_resources();
            }
            WorkerRequest::Memslots(slots) => {
                self.slots = *slots;
                if let Some(r) = self.recorder.as_mut() {
                    r.memslots(&self.slots);
                }
            }
            WorkerRequest::CreatePrimary(p) => {
                // The device left VGA mode: clients drop the VGA picture's surface first.
                if self.vga.end() {
                    self.publisher.push(DisplayItem::SurfaceDestroy);
                }
                let created =
                    Surface::from_create(&p.create).and_then(|s| self.surfaces.create(0, s));
                match created {
                    Ok(()) => {
                        if let Some(r) = self.recorder.as_mut() {
                            r.primary(&p);
                        }
                        self.publish_primary_created();
                    }
                    Err(e) => self.iface.guest_bug(&format!("primary surface: {e}")),
                }
            }
            WorkerRequest::DestroyPrimary => {
                self.process_rings();
                self.record_event(Event::DestroyPrimary);
                // spice-server forgets the cursor with the primary; drivers set it again.
                self.cursor.reset();
                self.publish_cursor();
                self.destroy_surface(0);
                self.iface.flush_resources();
            }
            // Rendering is eager: once the rings are drained nothing is pending on any
            // surface. The surface stays (spice-server only waits here too); its DESTROY
            // command will end it.
            WorkerRequest::DestroySurfaceWait(id) => {
                self.process_rings();
                self.record_event(Event::DestroySurface(id));
            }
            WorkerRequest::DestroyAllSurfaces => {
                self.process_rings();
                self.record_event(Event::DestroyAllSurfaces);
                if self.surfaces.primary().is_some() {
                    self.publisher.push(DisplayItem::SurfaceDestroy);
                }
                self.surfaces.clear();
                // spice-server destroys each surface, which releases its CREATE.
                for (_, create) in std::mem::take(&mut self.held_creates) {
                    self.iface.release_resource(create.addr, create.id);
                }
                self.iface.flush_resources();
            }
            WorkerRequest::UpdateArea { .. } | WorkerRequest::FlushSurfaces => self.process_rings(),
            WorkerRequest::MonitorsConfig(phys) => {
                let ctx = Context::new(self.iface.memory(), &self.slots, self.iface.n_surfaces());
                self.monitors = match parse_monitors_config(&ctx, phys) {
                    Ok(cfg) => {
                        info!("guest monitors config: {cfg:?}");
                        Some(cfg)
                    }
                    Err(e) => {
                        warn!("unreadable monitors config, showing the whole primary: {e}");
                        None
                    }
                };
                // What clients show changed even if no pixel did.
                if self.surfaces.primary().is_some() {
                    let monitors = self.monitors();
                    self.publisher.push(DisplayItem::Monitors(monitors));
                }
            }
            WorkerRequest::VgaFrame(frame) => {
                if self.surfaces.primary().is_some() {
                    debug!("a VGA frame while a primary surface exists: dropped");
                } else {
                    let items = self.vga.show(frame);
                    self.publisher.push_all(items);
                }
            }
            WorkerRequest::Reset => {
                self.record_event(Event::Reset);
                let had_vga = self.vga.end();
                if self.surfaces.primary().is_some() || had_vga {
                    self.publisher.push(DisplayItem::SurfaceDestroy);
                }
                self.publisher.push(DisplayItem::Reset);
                self.surfaces.clear();
                self.monitors = None;
                // The device has re-initialised the release ring already: the guest starts
                // over and expects nothing from before the reset (QEMU's releases of the
                // destroyed surfaces land in a ring its reset then wipes).
                self.held_creates.clear();
                self.cursor.reset();
                self.publish_cursor();
                self.slots = MemSlotTable::new();
                self.broken = false;
            }
        }
    }

    /// Whether the display shows the VGA picture (VGA mode: no primary, a frame).
    fn showing_vga(&self) -> bool {
        self.surfaces.primary().is_none() && self.vga.is_shown()
    }

    fn record_event(&mut self, event: Event) {
        if let Some(r) = self.recorder.as_mut() {
            r.event(event);
        }
    }

    /// Drains both rings until the guest has nothing more, then pushes the releases.
    fn process_rings(&mut self) {
        if self.broken {
            return;
        }
        let drained = self.drain(Ring::Command, I::get_command, I::req_cmd_notification)
            && self.drain(
                Ring::Cursor,
                I::get_cursor_command,
                I::req_cursor_notification,
            );
        if drained {
            self.iface.flush_resources();
        } else {
            self.stop_processing();
        }
    }

    /// Executes a ring's entries until it is empty and re-armed (`pop`, `arm`: the ring's
    /// QxlInterface calls). False when the guest broke the protocol.
    fn drain(
        &mut self,
        ring: Ring,
        pop: fn(&I) -> Result<Option<QXLCommand>, RingFault>,
        arm: fn(&I) -> Result<bool, RingFault>,
    ) -> bool {
        let mut handled = 0u32;
        loop {
            let cmd = match pop(&self.iface) {
                Ok(Some(cmd)) => cmd,
                Ok(None) => match arm(&self.iface) {
                    Ok(true) => continue,
                    Ok(false) => return true,
                    Err(_) => return false,
                },
                Err(_) => return false,
            };
            if !self.execute(ring, &cmd) {
                return false;
            }
            handled += 1;
            if handled.is_multiple_of(RELEASE_BATCH) {
                self.iface.flush_resources();
            }
        }
    }

    /// What the guest's monitors show of the primary (see [`heads::shown`]); one empty head
    /// while there is no primary.
    fn monitors(&self) -> Monitors {
        let (width, height) = self
            .surfaces
            .primary()
            .map_or((0, 0), |s| (s.width, s.height));
        heads::shown(
            self.monitors.as_ref(),
            self.iface.max_heads(),
            width,
            height,
        )
    }

    /// Tells display clients about the new primary: its size, its pixels, its monitor.
    fn publish_primary_created(&mut self) {
        if self.publisher.is_idle() {
            return;
        }
        let monitors = self.monitors();
        if let Some(s) = self.surfaces.primary() {
            for item in publish::initial_items(self.iface.memory(), s, monitors) {
                self.publisher.push(item);
            }
        }
    }

    /// Destroys surface `id` if it exists and releases the CREATE command that made it.
    fn destroy_surface(&mut self, id: u32) {
        if id == 0 && self.surfaces.primary().is_some() {
            self.publisher.push(DisplayItem::SurfaceDestroy);
        }
        if self.surfaces.destroy(id).is_err() {
            debug!(id, "destroy of a surface that does not exist");
        }
        if let Some(create) = self.held_creates.remove(&id) {
            self.iface.release_resource(create.addr, create.id);
        }
    }

    fn stop_processing(&mut self) {
        self.broken = true;
        self.iface.flush_resources();
    }

    /// Applies one ring entry; false when it was a guest bug (processing stops).
    fn execute(&mut self, ring: Ring, cmd: &QXLCommand) -> bool {
        let mem = self.iface.memory();
        let trace = ReadTrace::default();
        let ctx = Context::new(mem, &self.slots, self.iface.n_surfaces());
        let ctx = if self.recorder.is_some() {
            ctx.with_trace(&trace)
        } else {
            ctx
        };
        let result = parse_command(&ctx, cmd);
        if let Some(r) = self.recorder.as_mut() {
            r.command(ring, cmd, result.is_ok(), &trace.borrow());
        }
        let mut parsed = match result {
            Ok(c) => c,
            Err(e) => {
                self.stats.bad_commands += 1;
                if let Some(rel) = e.release {
                    self.iface.release_resource(rel.addr, rel.id);
                }
                self.iface.guest_bug(&format!("{e}: {}", e.error));
                return false;
            }
        };
        let release = parsed.release();
        let ok = match &mut parsed {
            Command::Draw(d) => {
                self.stats.draws += 1;
                // A scroll is found by comparing with the primary as it is before the draw.
                let scrolled = match self.surfaces.primary() {
                    Some(primary) if d.surface_id == 0 => self.publisher.scrolled(mem, primary, d),
                    _ => None,
                };
                match self.renderer.draw(mem, &self.surfaces, d) {
                    Ok(()) => {
                        if d.surface_id == 0
                            && let Some(primary) = self.surfaces.primary()
                        {
                            match scrolled {
                                Some(items) => self.publisher.push_all(items),
                                None => self.publisher.drawn(mem, primary, d),
                            }
                        }
                    }
                    Err(e) => {
                        // Like spice-server: a drawable on a missing surface or outside it is
                        // dropped (and counted per kind), the guest keeps going.
                        self.stats.dropped_draws += 1;
                        let kind = DrawKind::of(&d.body);
                        match e {
                            RenderError::BboxOutside { .. } => {
                                self.stats.dropped_outside_surface += 1;
                                if self.stats.dropped_outside_surface == 1 {
                                    info!(
                                        "{kind:?} drawable dropped, as spice-server drops it: {e} \
                                         (Linux's qxl driver sends one such at start)"
                                    );
                                } else {
                                    debug!("{kind:?} drawable dropped: {e}");
                                }
                            }
                            RenderError::Surface(SurfaceError::Missing { .. }) => {
                                self.stats.dropped_no_surface += 1;
                                debug!("{kind:?} drawable dropped: {e}");
                            }
                            _ => debug!("{kind:?} drawable dropped: {e}"),
                        }
                    }
                }
                true
            }
            Command::Surface(s) => {
                self.stats.surface_commands += 1;
                match &s.kind {
                    SurfaceCmdKind::Create(c) => {
                        match Surface::from_create(c)
                            .and_then(|surface| self.surfaces.create(s.surface_id, surface))
                        {
                            Ok(()) => {
                                // Released when the surface is destroyed, not now.
                                self.held_creates.insert(s.surface_id, s.release);
                                if s.surface_id == 0 {
                                    self.publish_primary_created();
                                }
                                return true;
                            }
                            Err(e) => {
                                self.iface.guest_bug(&format!("surface create: {e}"));
                                false
                            }
                        }
                    }
                    SurfaceCmdKind::Destroy => {
                        // The CREATE goes back first, then this DESTROY (below). A DESTROY of
                        // a surface that does not exist is only released, as spice-server does.
                        self.destroy_surface(s.surface_id);
                        true
                    }
                }
            }
            Command::Cursor(c) => {
                self.stats.cursor_commands += 1;
                let _ = self.cursor.apply(c);
                self.publish_cursor();
                true
            }
            Command::Update(_) | Command::Message(_) => {
                self.stats.other_commands += 1;
                true
            }
        };
        self.iface.release_resource(release.addr, release.id);
        ok
    }
}

/// The surface area a (shown, hence clipped) head covers.
fn area_of(h: Head) -> Area {
    Area {
        x: h.x,
        y: h.y,
        width: h.width,
        height: h.height,
    }
}
