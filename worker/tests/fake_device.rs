//! The red worker against a fake device (the other side of the seam): commands come from a
//! queue instead of a ring, releases, completions and guest bugs are recorded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use saffron_ring::abi::{
    QXL_CMD_DRAW, QXL_CMD_MESSAGE, QXL_SURF_FLAG_KEEP_DATA, QXL_SURF_TYPE_PRIMARY, QXLCommand,
    QXLMemSlot, QXLMessage, QXLReleaseInfo, QXLSurfaceCreate, SPICE_SURFACE_FMT_32_xRGB,
};
use saffron_ring::memslot::{BarRange, MemSlotTable, make_phys};
use saffron_ring::parse::TraceEntry;
use saffron_ring::parse::{Context, parse_primary};
use saffron_worker::record::{Record as Rec, Recorder, Ring, read_recording};
use saffron_worker::red::{FrameReply, spawn, spawn_recording};
use saffron_worker::seam::{Completion, QxlInterface, QxlWorker, RingFault, WorkerRequest};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM: u64 = 1 << 20;

#[derive(Default)]
struct Record {
    commands: VecDeque<QXLCommand>,
    releases: Vec<(GuestAddress, u64)>,
    flushes: u32,
    completions: Vec<u64>,
    bugs: Vec<String>,
}

#[derive(Clone)]
struct FakeDevice {
    mem: GuestMemoryMmap,
    rec: Arc<Mutex<Record>>,
}

impl QxlInterface for FakeDevice {
    fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }
    fn n_surfaces(&self) -> u32 {
        16
    }
    fn get_command(&self) -> Result<Option<QXLCommand>, RingFault> {
        Ok(self.rec.lock().unwrap().commands.pop_front())
    }
    fn get_cursor_command(&self) -> Result<Option<QXLCommand>, RingFault> {
        Ok(None)
    }
    fn req_cmd_notification(&self) -> Result<bool, RingFault> {
        Ok(!self.rec.lock().unwrap().commands.is_empty())
    }
    fn req_cursor_notification(&self) -> Result<bool, RingFault> {
        Ok(false)
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
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap();
    let dev = FakeDevice {
        mem,
        rec: Arc::default(),
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
    let Some(FrameReply::Frame {
        width,
        height,
        generation,
        bgrx,
    }) = control.frame(0)
    else {
        panic!("a frame")
    };
    assert_eq!((width, height), (w, h));
    assert_eq!(
        &bgrx[4..8],
        &[0x00, 0x00, 0xff, 0x00],
        "B,G,R,X of the red pixel"
    );
    assert!(matches!(
        control.frame(generation),
        Some(FrameReply::Unchanged)
    ));
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
