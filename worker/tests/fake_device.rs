//! The red worker against a fake device (the other side of the seam): commands come from a
//! queue instead of a ring, releases, completions and guest bugs are recorded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use saffron_display::{DisplayItem, DrawContent, Head, Monitors, Pipe, Popped, SurfaceInfo};
use saffron_ring::abi::{
    QXL_CMD_CURSOR, QXL_CMD_DRAW, QXL_CMD_MESSAGE, QXL_CMD_SURFACE, QXL_CURSOR_HIDE,
    QXL_CURSOR_SET, QXL_SURF_FLAG_KEEP_DATA, QXL_SURF_TYPE_PRIMARY, QXL_SURFACE_CMD_CREATE,
    QXL_SURFACE_CMD_DESTROY, QXLCommand, QXLCursor, QXLCursorCmd, QXLCursorHeader, QXLCursorSet,
    QXLDataChunk, QXLHead, QXLMemSlot, QXLMessage, QXLMonitorsConfig, QXLPoint16, QXLReleaseInfo,
    QXLSurface, QXLSurfaceCmd, QXLSurfaceCreate, SPICE_SURFACE_FMT_32_xRGB,
};
use saffron_ring::memslot::{BarRange, MemSlotTable, make_phys};
use saffron_ring::parse::TraceEntry;
use saffron_ring::parse::{Context, parse_primary};
use saffron_seam::{Completion, QxlInterface, QxlWorker, RingFault, WorkerRequest};
use saffron_worker::record::{Record as Rec, Recorder, Ring, read_recording};
use saffron_worker::red::{spawn, spawn_recording};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

const MEM: u64 = 1 << 20;

#[derive(Default)]
struct Record {
    commands: VecDeque<QXLCommand>,
    cursor_commands: VecDeque<QXLCommand>,
    releases: Vec<(GuestAddress, u64)>,
    flushes: u32,
    completions: Vec<u64>,
    bugs: Vec<String>,
}

#[derive(Clone)]
struct FakeDevice {
    mem: GuestMemoryMmap,
    rec: Arc<Mutex<Record>>,
    /// The device's head count (`QxlConfig::max_heads`).
    heads: u32,
}

impl QxlInterface for FakeDevice {
    fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }
    fn n_surfaces(&self) -> u32 {
        16
    }
    fn max_heads(&self) -> u32 {
        self.heads
    }
    fn get_command(&self) -> Result<Option<QXLCommand>, RingFault> {
        Ok(self.rec.lock().unwrap().commands.pop_front())
    }
    fn get_cursor_command(&self) -> Result<Option<QXLCommand>, RingFault> {
        Ok(self.rec.lock().unwrap().cursor_commands.pop_front())
    }
    fn req_cmd_notification(&self) -> Result<bool, RingFault> {
        Ok(!self.rec.lock().unwrap().commands.is_empty())
    }
    fn req_cursor_notification(&self) -> Result<bool, RingFault> {
        Ok(!self.rec.lock().unwrap().cursor_commands.is_empty())
    }
    fn release_resource(&self, info: GuestAddress, id: u64) {
        self.rec.lock().unwrap().releases.push((info, id));
    }
    fn flush_resources(&self) {
        self.rec.lock().unwrap().flushes += 1;
    }
    fn async_complete(&self, cookie: u64) {
        self.rec.lock().unwrap().completions.push(cookie);
    }
    fn guest_bug(&self, what: &str) {
        self.rec.lock().unwrap().bugs.push(what.to_string());
    }
}

fn wait(mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

type Setup = (
    FakeDevice,
    saffron_worker::red::Dispatcher,
    saffron_worker::red::WorkerControl,
    MemSlotTable,
);

fn setup() -> Setup {
    setup_with(None)
}

fn setup_with(recorder: Option<Recorder>) -> Setup {
    setup_device(recorder, 1)
}

fn setup_device(recorder: Option<Recorder>, heads: u32) -> Setup {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap();
    let dev = FakeDevice {
        mem,
        rec: Arc::default(),
        heads,
    };
    let (dispatcher, control) = match recorder {
        None => spawn(dev.clone()).unwrap(),
        Some(r) => spawn_recording(dev.clone(), Some(r)).unwrap(),
    };
    let mut slots = MemSlotTable::new();
    slots
        .add(
            1,
            QXLMemSlot {
                mem_start: 0,
                mem_end: MEM,
            },
            &[BarRange {
                base: GuestAddress(0),
                len: MEM,
            }],
        )
        .unwrap();
    dispatcher.submit(
        WorkerRequest::Memslots(Box::new(slots.clone())),
        Completion::None,
    );
    (dev, dispatcher, control, slots)
}

#[test]
fn commands_are_released_and_async_ops_complete() {
    let (dev, worker, _control, _slots) = setup();
    let id = 0x42;
    dev.mem
        .write_obj(
            QXLMessage {
                release_info: QXLReleaseInfo { id },
            },
            GuestAddress(0x1000),
        )
        .unwrap();
    dev.rec.lock().unwrap().commands.push_back(QXLCommand {
        data: make_phys(1, 0, 0x1000).unwrap(),
        type_: QXL_CMD_MESSAGE,
        ..Default::default()
    });
    worker.submit(WorkerRequest::Wakeup, Completion::None);
    worker.submit(WorkerRequest::FlushSurfaces, Completion::Async(7));
    assert!(wait(|| dev.rec.lock().unwrap().completions == [7]));
    let rec = dev.rec.lock().unwrap();
    assert_eq!(rec.releases, [(GuestAddress(0x1000), id)]);
    assert!(rec.flushes >= 1, "the release batch was pushed");
    assert!(rec.bugs.is_empty());
}

#[test]
fn primary_frames_follow_the_surface_memory() {
    let (dev, worker, control, slots) = setup();
    let (w, h) = (32u32, 16u32);
    let create = QXLSurfaceCreate {
        width: w,
        height: h,
        stride: (w * 4) as i32,
        format: SPICE_SURFACE_FMT_32_xRGB,
        position: 0,
        mouse_mode: 0,
        flags: QXL_SURF_FLAG_KEEP_DATA,
        type_: QXL_SURF_TYPE_PRIMARY,
        mem: make_phys(1, 0, 0x8000).unwrap(),
    };
    let primary = parse_primary(&Context::new(&dev.mem, &slots, 16), &create).unwrap();
    // The guest's pixels: one red pixel at (1, 0).
    dev.mem
        .write_obj(0x00ff_0000u32, GuestAddress(0x8000 + 4))
        .unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    worker.submit(WorkerRequest::CreatePrimary(primary), Completion::Sync(tx));
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // A display client subscribes: it gets the surface, its monitor, all of its pixels.
    let pipe = Arc::new(Pipe::new(1 << 20));
    assert!(control.subscribe(pipe.clone()));
    let items = drain(&pipe);
    assert_eq!(
        items.first(),
        Some(&DisplayItem::SurfaceCreate(SurfaceInfo {
            width: w,
            height: h
        }))
    );
    let Some(DisplayItem::Draw(d)) = items.get(2) else {
        panic!("the pixels: {items:?}")
    };
    let DrawContent::Image(px) = &d.content else {
        panic!("an image")
    };
    assert_eq!((px.width, px.height), (w, h));
    assert_eq!(
        &px.bgrx[4..8],
        &[0x00, 0x00, 0xff, 0x00],
        "B,G,R,X of the red pixel"
    );
    assert_eq!(
        items.get(1),
        Some(&DisplayItem::Monitors(Monitors::whole(w, h))),
        "no monitors config: the whole primary is shown"
    );
    // Nothing drawn: nothing more.
    sync(&worker, WorkerRequest::Wakeup);
    assert!(drain(&pipe).is_empty(), "quiet when nothing is drawn");
    let (sw, sh, rgb) = control.screendump().unwrap();
    assert_eq!((sw, sh, &rgb[3..6]), (w, h, &[0xff, 0, 0][..]));
    assert!(dev.rec.lock().unwrap().bugs.is_empty());
}

#[test]
fn a_command_outside_the_memslots_is_reported_as_a_guest_bug() {
    let (dev, worker, _control, _slots) = setup();
    dev.rec.lock().unwrap().commands.push_back(QXLCommand {
        data: make_phys(3, 0, 0).unwrap(),
        type_: QXL_CMD_DRAW,
        ..Default::default()
    });
    worker.submit(WorkerRequest::Wakeup, Completion::None);
    assert!(wait(|| !dev.rec.lock().unwrap().bugs.is_empty()));
    // Nothing could be read, so nothing is released.
    assert!(dev.rec.lock().unwrap().releases.is_empty());
}

/// Queues a cursor command whose union bytes are `u`, at `at` in guest memory.
fn push_cursor(dev: &FakeDevice, at: u64, type_: u8, u: &[u8]) {
    let mut cmd = QXLCursorCmd {
        release_info: QXLReleaseInfo { id: at },
        type_,
        ..Default::default()
    };
    cmd.u[..u.len()].copy_from_slice(u);
    dev.mem.write_obj(cmd, GuestAddress(at)).unwrap();
    dev.rec
        .lock()
        .unwrap()
        .cursor_commands
        .push_back(QXLCommand {
            data: make_phys(1, 0, at).unwrap(),
            type_: QXL_CMD_CURSOR,
            ..Default::default()
        });
}

#[test]
fn cursor_state_is_published_by_generation_and_forgotten_with_the_primary() {
    let (dev, worker, control, _slots) = setup();
    let before = control.cursor(u64::MAX).expect("a first state");
    assert_eq!((before.shape.is_none(), before.resets), (true, 0));
    assert_eq!(control.cursor(before.generation), None);
    // A waiter on the published state wakes when the SET below lands, with no query.
    let watch = control.cursor_watch();
    let since = before.generation;
    let waiter = std::thread::spawn(move || {
        watch.wait_until(Duration::from_secs(20), |c| c.generation != since)
    });

    // A 2x2 ALPHA shape with hot spot (1, 0) set at (40, 30), as Linux does.
    let shape = QXLCursor {
        header: QXLCursorHeader {
            unique: 0,
            type_: 0,
            width: 2,
            height: 2,
            hot_spot_x: 1,
            hot_spot_y: 0,
        },
        data_size: 16,
        chunk: QXLDataChunk {
            data_size: 16,
            prev_chunk: 0,
            next_chunk: 0,
        },
    };
    dev.mem.write_obj(shape, GuestAddress(0x3000)).unwrap();
    let pixels: Vec<u8> = (0..16).collect();
    dev.mem
        .write_slice(
            &pixels,
            GuestAddress(0x3000 + std::mem::size_of::<QXLCursor>() as u64),
        )
        .unwrap();
    let set = QXLCursorSet {
        position: QXLPoint16 { x: 40, y: 30 },
        visible: 1,
        shape: make_phys(1, 0, 0x3000).unwrap(),
    };
    push_cursor(&dev, 0x2000, QXL_CURSOR_SET, set.as_slice());
    worker.submit(WorkerRequest::Wakeup, Completion::None);
    let woken = waiter.join().unwrap();
    assert_ne!(woken.generation, before.generation, "the waiter timed out");
    let state = control.cursor(before.generation).expect("the SET's state");
    assert_eq!(state, woken);
    let s = state.shape.as_ref().expect("the shape");
    assert_eq!(
        (s.width, s.height, s.hot_spot_x, &s.data[..]),
        (2, 2, 1, &pixels[..])
    );
    assert_eq!(
        (state.position.x, state.position.y, state.visible),
        (40, 30, true)
    );
    assert_eq!(control.stats().unwrap().cursor, state.summary());

    push_cursor(&dev, 0x2100, QXL_CURSOR_HIDE, &[]);
    worker.submit(WorkerRequest::Wakeup, Completion::None);
    assert!(wait(|| control
        .cursor(state.generation)
        .is_some_and(|c| !c.visible)));

    let (tx, rx) = crossbeam_channel::bounded(1);
    worker.submit(WorkerRequest::DestroyPrimary, Completion::Sync(tx));
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let after = control.cursor(state.generation).expect("the reset state");
    assert_eq!((after.shape.is_none(), after.resets), (true, 1));
    let rec = dev.rec.lock().unwrap();
    assert!(rec.releases.contains(&(GuestAddress(0x2000), 0x2000)));
    assert!(rec.bugs.is_empty(), "{:?}", rec.bugs);
}

/// Puts a surface command (release id `id`) at `at` and queues it on the command ring.
fn queue_surface_cmd(dev: &FakeDevice, at: u64, id: u64, surface_id: u32, create: bool) {
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
            width: 16,
            height: 16,
            stride: 64,
            data: make_phys(1, 0, 0x4_0000 + u64::from(surface_id) * 0x1000).unwrap(),
        },
    };
    dev.mem.write_obj(cmd, GuestAddress(at)).unwrap();
    dev.rec.lock().unwrap().commands.push_back(QXLCommand {
        data: make_phys(1, 0, at).unwrap(),
        type_: QXL_CMD_SURFACE,
        ..Default::default()
    });
}

/// Sends `request` and waits until the worker has handled it (and everything before it).
fn sync(worker: &saffron_worker::red::Dispatcher, request: WorkerRequest) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    worker.submit(request, Completion::Sync(tx));
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
}

fn released_ids(dev: &FakeDevice) -> Vec<u64> {
    dev.rec
        .lock()
        .unwrap()
        .releases
        .iter()
        .map(|(_, id)| *id)
        .collect()
}

#[test]
fn surface_create_is_released_with_its_destroy() {
    let (dev, worker, control, _slots) = setup();
    queue_surface_cmd(&dev, 0x1000, 0x21, 1, true);
    queue_surface_cmd(&dev, 0x1100, 0x22, 2, true);
    sync(&worker, WorkerRequest::Wakeup);
    let stats = control.stats().unwrap();
    assert_eq!(
        (stats.surface_ids.as_slice(), stats.held_surface_creates),
        (&[1, 2][..], 2)
    );
    assert!(released_ids(&dev).is_empty(), "CREATEs are held");
    // An off-screen surface can be dumped: its pixels are the guest's memory (surface 1 at
    // 0x41000, 64 bytes per row; a green pixel at (2, 1)).
    dev.mem
        .write_obj(0x0000_ff00u32, GuestAddress(0x4_1000 + 64 + 8))
        .unwrap();
    let (w, h, rgb) = control.surface_rgb(1).unwrap();
    assert_eq!((w, h), (16, 16));
    assert_eq!(&rgb[(16 + 2) * 3..(16 + 3) * 3], &[0, 0xff, 0]);
    assert!(control.surface_rgb(7).is_err(), "no surface 7");
    let info = control.surface(1).unwrap();
    assert_eq!(
        (info.memory.addr, info.width, info.stride),
        (GuestAddress(0x4_1000), 16, 64)
    );
    assert!(control.surface(7).is_none());
    // DESTROY_SURFACE_WAIT only waits: the surface and its CREATE stay.
    sync(&worker, WorkerRequest::DestroySurfaceWait(1));
    assert_eq!(control.stats().unwrap().surface_ids, [1, 2]);
    assert!(released_ids(&dev).is_empty());
    // The DESTROY of surface 1 hands back its CREATE, then the DESTROY itself.
    queue_surface_cmd(&dev, 0x1040, 0x23, 1, false);
    sync(&worker, WorkerRequest::Wakeup);
    let rec = dev.rec.lock().unwrap();
    assert_eq!(
        rec.releases,
        [(GuestAddress(0x1000), 0x21), (GuestAddress(0x1040), 0x23)]
    );
    assert!(rec.bugs.is_empty(), "{:?}", rec.bugs);
    drop(rec);
    let stats = control.stats().unwrap();
    assert_eq!(
        (stats.surface_ids.as_slice(), stats.held_surface_creates),
        (&[2][..], 1)
    );
    // A DESTROY of a surface that does not exist is simply released.
    queue_surface_cmd(&dev, 0x1200, 0x24, 5, false);
    sync(&worker, WorkerRequest::Wakeup);
    assert_eq!(released_ids(&dev), [0x21, 0x23, 0x24]);
    assert_eq!(control.stats().unwrap().held_surface_creates, 1);
    assert!(dev.rec.lock().unwrap().bugs.is_empty());
}

#[test]
fn destroy_all_surfaces_releases_the_held_creates() {
    let (dev, worker, control, _slots) = setup();
    queue_surface_cmd(&dev, 0x1000, 0x31, 1, true);
    queue_surface_cmd(&dev, 0x1100, 0x32, 3, true);
    sync(&worker, WorkerRequest::Wakeup);
    assert!(released_ids(&dev).is_empty());
    let flushes = dev.rec.lock().unwrap().flushes;
    sync(&worker, WorkerRequest::DestroyAllSurfaces);
    let mut ids = released_ids(&dev);
    ids.sort_unstable();
    assert_eq!(ids, [0x31, 0x32]);
    assert!(
        dev.rec.lock().unwrap().flushes > flushes,
        "the releases were pushed to the guest"
    );
    let stats = control.stats().unwrap();
    assert_eq!(
        (stats.surface_ids.len(), stats.held_surface_creates),
        (0, 0)
    );
    // The same ids may come again: the surfaces can be created anew.
    queue_surface_cmd(&dev, 0x1000, 0x33, 1, true);
    sync(&worker, WorkerRequest::Wakeup);
    assert_eq!(control.stats().unwrap().held_surface_creates, 1);
    assert!(dev.rec.lock().unwrap().bugs.is_empty());
}

#[test]
fn reset_drops_the_held_creates_without_releasing_them() {
    let (dev, worker, control, slots) = setup();
    queue_surface_cmd(&dev, 0x1000, 0x41, 1, true);
    sync(&worker, WorkerRequest::Wakeup);
    assert_eq!(control.stats().unwrap().held_surface_creates, 1);
    // The device re-initialised the release ring: the guest expects nothing from before.
    sync(&worker, WorkerRequest::Reset);
    let stats = control.stats().unwrap();
    assert_eq!(
        (stats.surface_ids.len(), stats.held_surface_creates),
        (0, 0)
    );
    sync(&worker, WorkerRequest::Memslots(Box::new(slots)));
    sync(&worker, WorkerRequest::DestroyAllSurfaces);
    // Surface 1 can be created again after the reset, and its DESTROY releases only the new
    // CREATE.
    queue_surface_cmd(&dev, 0x1100, 0x42, 1, true);
    queue_surface_cmd(&dev, 0x1140, 0x43, 1, false);
    sync(&worker, WorkerRequest::Wakeup);
    assert_eq!(released_ids(&dev), [0x42, 0x43]);
    assert!(dev.rec.lock().unwrap().bugs.is_empty());
}

/// Writes a monitors config with `heads` at `at` (slot 1) and hands it to the worker.
fn monitors_config(
    dev: &FakeDevice,
    worker: &saffron_worker::red::Dispatcher,
    at: u64,
    heads: &[QXLHead],
) {
    dev.mem
        .write_obj(
            QXLMonitorsConfig {
                count: heads.len() as u16,
                max_allowed: 4,
            },
            GuestAddress(at),
        )
        .unwrap();
    for (i, h) in heads.iter().enumerate() {
        dev.mem
            .write_obj(*h, GuestAddress(at + 4 + i as u64 * 28))
            .unwrap();
    }
    sync(
        worker,
        WorkerRequest::MonitorsConfig(make_phys(1, 0, at).unwrap()),
    );
}

#[test]
fn screendump_shows_head_0_of_the_monitors_config() {
    let (dev, worker, control, slots) = setup();
    let (w, h) = (32u32, 16u32);
    let create = QXLSurfaceCreate {
        width: w,
        height: h,
        stride: (w * 4) as i32,
        format: SPICE_SURFACE_FMT_32_xRGB,
        position: 0,
        mouse_mode: 0,
        flags: QXL_SURF_FLAG_KEEP_DATA,
        type_: QXL_SURF_TYPE_PRIMARY,
        mem: make_phys(1, 0, 0x8000).unwrap(),
    };
    // Every pixel holds its own coordinates: R = x, G = y.
    for y in 0..h {
        for x in 0..w {
            let px = (x << 16) | (y << 8);
            dev.mem
                .write_obj(px, GuestAddress(0x8000 + u64::from(y * w + x) * 4))
                .unwrap();
        }
    }
    let primary = parse_primary(&Context::new(&dev.mem, &slots, 16), &create).unwrap();
    sync(&worker, WorkerRequest::CreatePrimary(primary));
    let dims = |c: &saffron_worker::red::WorkerControl| {
        let (w, h, rgb) = c.screendump().unwrap();
        (w, h, (rgb[0], rgb[1]))
    };
    assert_eq!(
        dims(&control),
        (w, h, (0, 0)),
        "no config: the whole primary"
    );
    let head = |x, y, width, height| QXLHead {
        id: 0,
        surface_id: 0,
        width,
        height,
        x,
        y,
        flags: 0,
    };
    // Head 0 at (5, 3), 20x10: the dump is that part, its first pixel (5, 3).
    monitors_config(
        &dev,
        &worker,
        0x2000,
        &[head(5, 3, 20, 10), head(25, 0, 7, 16)],
    );
    let (dw, dh, rgb) = control.screendump().unwrap();
    assert_eq!((dw, dh), (20, 10));
    assert_eq!(&rgb[..3], &[5, 3, 0]);
    let last = rgb.len() - 3;
    assert_eq!(&rgb[last..], &[24, 12, 0], "its last pixel is (24, 12)");
    // Spice clients still get the whole primary, with head 0 as what it shows.
    let pipe = Arc::new(Pipe::new(1 << 20));
    assert!(control.subscribe(pipe.clone()));
    let items = drain(&pipe);
    assert!(matches!(
        items.first(),
        Some(DisplayItem::SurfaceCreate(SurfaceInfo { width, .. })) if *width == w
    ));
    assert_eq!(
        items.get(1),
        Some(&DisplayItem::Monitors(Monitors {
            max_allowed: 1,
            heads: vec![Head {
                id: 0,
                x: 5,
                y: 3,
                width: 20,
                height: 10
            }]
        }))
    );
    // A new config reaches the subscribed client as it is set.
    monitors_config(&dev, &worker, 0x2000, &[head(1, 2, 3, 4)]);
    assert_eq!(
        drain(&pipe),
        [DisplayItem::Monitors(Monitors {
            max_allowed: 1,
            heads: vec![Head {
                id: 0,
                x: 1,
                y: 2,
                width: 3,
                height: 4
            }]
        })]
    );
    // A head reaching past the primary is clipped to it.
    monitors_config(&dev, &worker, 0x2000, &[head(30, 14, 1024, 768)]);
    assert_eq!(dims(&control), (2, 2, (30, 14)));
    // An empty head 0 (a disabled output) or one outside the primary: the whole primary.
    monitors_config(&dev, &worker, 0x2000, &[head(0, 0, 0, 0)]);
    assert_eq!(dims(&control), (w, h, (0, 0)));
    monitors_config(&dev, &worker, 0x2000, &[head(32, 0, 8, 8)]);
    assert_eq!(dims(&control), (w, h, (0, 0)));
    // The config outlives a new primary; a reset forgets it.
    monitors_config(&dev, &worker, 0x2000, &[head(0, 0, 16, 8)]);
    sync(&worker, WorkerRequest::DestroyPrimary);
    sync(&worker, WorkerRequest::CreatePrimary(primary));
    assert_eq!(dims(&control), (16, 8, (0, 0)));
    sync(&worker, WorkerRequest::Reset);
    sync(&worker, WorkerRequest::Memslots(Box::new(slots.clone())));
    sync(&worker, WorkerRequest::CreatePrimary(primary));
    assert_eq!(dims(&control), (w, h, (0, 0)));
    assert!(dev.rec.lock().unwrap().bugs.is_empty());
}

/// A device with several heads: the worker keeps each head of the guest's config (up to the
/// device's count), announces them all to display clients in one MONITORS item, dumps each
/// one's rectangle, and lists them in its stats.
#[test]
fn every_head_up_to_the_device_count_is_kept_and_announced() {
    let (dev, worker, control, slots) = setup_device(None, 2);
    let (w, h) = (48u32, 16u32);
    let create = QXLSurfaceCreate {
        width: w,
        height: h,
        stride: (w * 4) as i32,
        format: SPICE_SURFACE_FMT_32_xRGB,
        position: 0,
        mouse_mode: 0,
        flags: QXL_SURF_FLAG_KEEP_DATA,
        type_: QXL_SURF_TYPE_PRIMARY,
        mem: make_phys(1, 0, 0x8000).unwrap(),
    };
    for y in 0..h {
        for x in 0..w {
            let px = (x << 16) | (y << 8);
            dev.mem
                .write_obj(px, GuestAddress(0x8000 + u64::from(y * w + x) * 4))
                .unwrap();
        }
    }
    let primary = parse_primary(&Context::new(&dev.mem, &slots, 16), &create).unwrap();
    sync(&worker, WorkerRequest::CreatePrimary(primary));
    let pipe = Arc::new(Pipe::new(1 << 20));
    assert!(control.subscribe(pipe.clone()));
    drain(&pipe);
    let head = |id, x, y, width, height| QXLHead {
        id,
        surface_id: 0,
        width,
        height,
        x,
        y,
        flags: 0,
    };
    // Linux's layout: heads side by side, a third beyond the device's two, a disabled one.
    monitors_config(
        &dev,
        &worker,
        0x2000,
        &[
            head(0, 0, 0, 32, 16),
            head(1, 32, 4, 16, 12),
            head(2, 0, 0, 8, 8),
        ],
    );
    let want = |id, x, y, width, height| Head {
        id,
        x,
        y,
        width,
        height,
    };
    assert_eq!(
        drain(&pipe),
        [DisplayItem::Monitors(Monitors {
            max_allowed: 2,
            heads: vec![want(0, 0, 0, 32, 16), want(1, 32, 4, 16, 12)],
        })]
    );
    // Each head's dump is its rectangle: head 1's first pixel is (32, 4), its last (47, 15).
    let (hw, hh, rgb) = control.head_screendump(1).unwrap();
    assert_eq!((hw, hh), (16, 12));
    assert_eq!(&rgb[..3], &[32, 4, 0]);
    assert_eq!(&rgb[rgb.len() - 3..], &[47, 15, 0]);
    assert_eq!(control.head_screendump(0).unwrap().0, 32);
    assert!(control.head_screendump(2).is_err(), "beyond the device's 2");
    // The plain screendump stays the first head's.
    assert_eq!(control.screendump().unwrap().0, 32);
    let stats = control.stats().unwrap();
    assert_eq!(stats.max_heads, 2);
    assert_eq!(stats.heads, [want(0, 0, 0, 32, 16), want(1, 32, 4, 16, 12)]);
    // A new client hears of both heads before the pixels.
    let late = Arc::new(Pipe::new(1 << 20));
    assert!(control.subscribe(late.clone()));
    let items = drain(&late);
    assert!(matches!(
        items.get(1),
        Some(DisplayItem::Monitors(m)) if m.heads.len() == 2
    ));
    // Head 1 disabled (zero-sized, as drm/qxl leaves an unlit CRTC): no longer announced.
    monitors_config(
        &dev,
        &worker,
        0x2000,
        &[head(0, 0, 0, 32, 16), head(1, 0, 0, 0, 0)],
    );
    assert_eq!(
        drain(&pipe),
        [DisplayItem::Monitors(Monitors {
            max_allowed: 2,
            heads: vec![want(0, 0, 0, 32, 16)],
        })]
    );
    assert!(dev.rec.lock().unwrap().bugs.is_empty());
}

#[test]
fn the_recorder_keeps_each_command_with_the_guest_memory_it_read() {
    let dir = std::env::temp_dir().join(format!("saffron-worker-rec-{}", std::process::id()));
    let recorder = Recorder::create(&dir).unwrap();
    let path = recorder.path().to_owned();
    let (dev, worker, _control, _slots) = setup_with(Some(recorder));
    let text = b"hi\0";
    dev.mem
        .write_obj(QXLReleaseInfo { id: 9 }, GuestAddress(0x2000))
        .unwrap();
    dev.mem.write_slice(text, GuestAddress(0x2000 + 8)).unwrap();
    let good = QXLCommand {
        data: make_phys(1, 0, 0x2000).unwrap(),
        type_: QXL_CMD_MESSAGE,
        ..Default::default()
    };
    // Then a command whose pointer names no slot: recorded as a guest bug, nothing read.
    let bad = QXLCommand {
        data: make_phys(3, 0, 0).unwrap(),
        type_: QXL_CMD_DRAW,
        ..Default::default()
    };
    dev.rec.lock().unwrap().commands.extend([good, bad]);
    worker.submit(WorkerRequest::Wakeup, Completion::None);
    worker.submit(WorkerRequest::FlushSurfaces, Completion::Async(1));
    assert!(wait(|| dev.rec.lock().unwrap().completions == [1]));
    let records = read_recording(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let Some(Rec::Memslots(slots)) = records.first() else {
        panic!("memslots first: {records:?}")
    };
    assert_eq!((slots.len(), slots[0].id, slots[0].size), (1, 1, MEM));
    let commands: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Rec::Command(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(commands.len(), 2, "{records:?}");
    assert_eq!(
        (commands[0].ring, commands[0].command, commands[0].parsed),
        (Ring::Command, good, true)
    );
    // The release info, then the text up to the end of the slot (the parser scans it for
    // the NUL; at most MAX_MESSAGE_BYTES).
    let TraceEntry::Copied { phys, bytes } = &commands[0].memory[0] else {
        panic!("a copy")
    };
    assert_eq!(
        (*phys, bytes.as_slice()),
        (good.data, &9u64.to_le_bytes()[..])
    );
    let TraceEntry::Copied { phys, bytes } = &commands[0].memory[1] else {
        panic!("a copy")
    };
    assert_eq!(*phys, good.data + 8);
    assert_eq!(&bytes[..3], text);
    assert_eq!(commands[0].memory.len(), 2);
    assert_eq!((commands[1].command, commands[1].parsed), (bad, false));
    assert!(commands[1].memory.is_empty());
}

/// Every item waiting in `pipe` (after a round trip to the worker, so what it pushed for
/// earlier requests is there).
fn drain(pipe: &Pipe) -> Vec<DisplayItem> {
    let mut out = Vec::new();
    while let Popped::Item(i) = pipe.pop(Duration::from_millis(200)) {
        out.push(i);
    }
    out
}

/// Writes a drawable of `type_` on the primary with `bbox` (top, left, bottom, right) and
/// the union bytes `body` at `addr`, and queues it on the command ring.
fn queue_draw(dev: &FakeDevice, addr: u64, type_: u8, bbox: (i32, i32, i32, i32), body: &[u8]) {
    use saffron_ring::abi::{QXLDrawable, QXLRect};
    let mut d = QXLDrawable {
        release_info: QXLReleaseInfo { id: addr },
        type_,
        bbox: QXLRect {
            top: bbox.0,
            left: bbox.1,
            bottom: bbox.2,
            right: bbox.3,
        },
        surfaces_dest: [-1; 3],
        ..Default::default()
    };
    d.u[..body.len()].copy_from_slice(body);
    dev.mem.write_obj(d, GuestAddress(addr)).unwrap();
    dev.rec.lock().unwrap().commands.push_back(QXLCommand {
        data: make_phys(1, 0, addr).unwrap(),
        type_: QXL_CMD_DRAW,
        ..Default::default()
    });
}

/// The union bytes of a FILL with a solid brush.
fn fill_body(color: u32, rop: u16) -> Vec<u8> {
    use saffron_ring::abi::{QXLBrush, QXLFill, SPICE_BRUSH_TYPE_SOLID};
    let mut brush = QXLBrush {
        type_: SPICE_BRUSH_TYPE_SOLID,
        u: [0; 16],
    };
    brush.u[..4].copy_from_slice(&color.to_le_bytes());
    QXLFill {
        brush,
        rop_descriptor: rop,
        mask: Default::default(),
    }
    .as_slice()
    .to_vec()
}

/// What the guest draws on the primary reaches a subscribed display client as it was drawn:
/// a solid PUT fill as a fill, a COPY_BITS as a copy of pixels the client has, anything else
/// as the rendered pixels of its box, in order; commands that draw nothing send nothing.
#[test]
fn draws_on_the_primary_reach_subscribers_as_drawn() {
    use saffron_display::{Draw, Rect};
    use saffron_ring::abi::{
        QXL_COPY_BITS, QXL_DRAW_FILL, QXLCopyBits, QXLPoint, SPICE_ROPD_OP_INVERS,
        SPICE_ROPD_OP_PUT,
    };
    let (dev, worker, control, slots) = setup();
    let (w, h) = (32u32, 16u32);
    let create = QXLSurfaceCreate {
        width: w,
        height: h,
        stride: (w * 4) as i32,
        format: SPICE_SURFACE_FMT_32_xRGB,
        position: 0,
        mouse_mode: 0,
        flags: QXL_SURF_FLAG_KEEP_DATA,
        type_: QXL_SURF_TYPE_PRIMARY,
        mem: make_phys(1, 0, 0x8000).unwrap(),
    };
    let primary = parse_primary(&Context::new(&dev.mem, &slots, 16), &create).unwrap();
    sync(&worker, WorkerRequest::CreatePrimary(primary));
    let pipe = Arc::new(Pipe::new(1 << 20));
    assert!(control.subscribe(pipe.clone()));
    assert_eq!(drain(&pipe).len(), 3, "surface, monitor, pixels");

    queue_draw(
        &dev,
        0x1000,
        QXL_DRAW_FILL,
        (0, 0, 8, 32),
        &fill_body(0x00ff_0000, SPICE_ROPD_OP_PUT),
    );
    let copy = QXLCopyBits {
        src_pos: QXLPoint { x: 0, y: 0 },
    };
    queue_draw(&dev, 0x1400, QXL_COPY_BITS, (8, 0, 16, 32), copy.as_slice());
    queue_draw(
        &dev,
        0x1800,
        QXL_DRAW_FILL,
        (2, 4, 4, 8),
        &fill_body(0, SPICE_ROPD_OP_INVERS),
    );
    sync(&worker, WorkerRequest::Wakeup);
    let items = drain(&pipe);
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(
        items[0],
        DisplayItem::Draw(Draw {
            area: Rect::new(0, 0, 32, 8).unwrap(),
            content: DrawContent::Fill(0x00ff_0000)
        })
    );
    assert_eq!(
        items[1],
        DisplayItem::CopyBits {
            area: Rect::new(0, 8, 32, 16).unwrap(),
            src_x: 0,
            src_y: 0
        }
    );
    let DisplayItem::Draw(Draw {
        area,
        content: DrawContent::Image(px),
    }) = &items[2]
    else {
        panic!(
            "an inverting fill goes as its rendered pixels: {:?}",
            items[2]
        );
    };
    assert_eq!(*area, Rect::new(4, 2, 8, 4).unwrap());
    assert!(
        px.bgrx
            .chunks_exact(4)
            .all(|p| p == [0xff, 0xff, 0x00, 0x00]),
        "red inverted is cyan"
    );
    // A command that draws nothing on the primary: nothing published.
    dev.mem
        .write_obj(
            QXLMessage {
                release_info: QXLReleaseInfo { id: 9 },
            },
            GuestAddress(0x2000),
        )
        .unwrap();
    dev.rec.lock().unwrap().commands.push_back(QXLCommand {
        data: make_phys(1, 0, 0x2000).unwrap(),
        type_: QXL_CMD_MESSAGE,
        ..Default::default()
    });
    sync(&worker, WorkerRequest::Wakeup);
    assert!(drain(&pipe).is_empty());
    // The primary goes: the client is told.
    sync(&worker, WorkerRequest::DestroyPrimary);
    assert_eq!(drain(&pipe), [DisplayItem::SurfaceDestroy]);
    assert!(dev.rec.lock().unwrap().bugs.is_empty());
}
