//! The backend driven through real split virtqueues in guest memory (virtio-queue's mock
//! driver), as a hostile driver would drive it: chains in the wrong order, too short, read-only
//! where the device must write, outside guest memory, unknown codes, I/O before the stream is
//! set up, floods. Each gets an error status (or an empty used entry when there is nowhere to
//! write one); nothing panics; and a well-formed stream still plays at real-time pace.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use saffron_audio::PcmSink;
use saffron_audio::abi::{self, code, status};
use saffron_audio::backend::SoundBackend;
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;

const QUEUE_SIZE: u16 = 64;
/// Where request buffers go (the queues' rings sit below).
const DATA: u64 = 0x10_0000;

#[derive(Default)]
struct Recorder {
    pcm: Mutex<Vec<u8>>,
    starts: Mutex<u32>,
}

impl PcmSink for Recorder {
    fn start(&self) {
        *self.starts.lock().unwrap() += 1;
    }
    fn play(&self, pcm: &[u8], _started: Instant) {
        self.pcm.lock().unwrap().extend_from_slice(pcm);
    }
}

struct Rig {
    mem: GuestMemoryAtomic<GuestMemoryMmap>,
    vrings: Vec<VringRwLock>,
    /// Per queue: (descriptor table, avail ring, used ring) addresses, next free descriptor.
    queues: Vec<(GuestAddress, GuestAddress, GuestAddress, u16)>,
    backend: SoundBackend,
    _pacing: saffron_audio::backend::PacingThread,
    sink: Arc<Recorder>,
    next_buf: u64,
}

impl Rig {
    fn new() -> Rig {
        let mem = GuestMemoryAtomic::new(
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap(),
        );
        let sink = Arc::new(Recorder::default());
        let (backend, pacing) =
            SoundBackend::new(sink.clone(), Arc::new(saffron_audio::Silence)).unwrap();
        backend.update_memory(mem.clone()).unwrap();
        let mut vrings = Vec::new();
        let mut queues = Vec::new();
        for q in 0..abi::queue::COUNT as u64 {
            let guard = mem.memory();
            let mock = MockSplitQueue::create(&*guard, GuestAddress(q * 0x4000), QUEUE_SIZE);
            let (d, a, u) = (mock.desc_table_addr(), mock.avail_addr(), mock.used_addr());
            let vring = VringRwLock::new(mem.clone(), QUEUE_SIZE).unwrap();
            vring.set_queue_size(QUEUE_SIZE);
            vring.set_queue_info(d.0, a.0, u.0).unwrap();
            vring.set_queue_ready(true);
            vring.set_enabled(true);
            vrings.push(vring);
            queues.push((d, a, u, 0));
        }
        Rig {
            mem,
            vrings,
            queues,
            backend,
            _pacing: pacing,
            sink,
            next_buf: DATA,
        }
    }

    /// A guest buffer holding `bytes`.
    fn buf(&mut self, bytes: &[u8], len: u32) -> u64 {
        let addr = self.next_buf;
        self.mem
            .memory()
            .write_slice(bytes, GuestAddress(addr))
            .unwrap();
        self.next_buf += u64::from(len.max(1)).next_multiple_of(64);
        addr
    }

    /// Offers one chain of `(address, length, writable)` descriptors on queue `q` (written
    /// into its descriptor table and avail ring as a driver does) and kicks.
    fn offer(&mut self, q: u16, descs: &[(u64, u32, bool)]) -> u16 {
        let (d, a, u, next) = self.queues[q as usize];
        let head = next;
        {
            let m = self.mem.memory();
            for (i, (addr, len, w)) in descs.iter().enumerate() {
                let idx = (head + i as u16) % QUEUE_SIZE;
                let mut flags = if *w { VRING_DESC_F_WRITE as u16 } else { 0 };
                if i + 1 < descs.len() {
                    flags |= VRING_DESC_F_NEXT as u16;
                }
                let at = d.0 + 16 * u64::from(idx);
                m.write_obj(*addr, GuestAddress(at)).unwrap();
                m.write_obj(*len, GuestAddress(at + 8)).unwrap();
                m.write_obj(flags, GuestAddress(at + 12)).unwrap();
                m.write_obj((idx + 1) % QUEUE_SIZE, GuestAddress(at + 14))
                    .unwrap();
            }
            let avail_idx: u16 = m.read_obj(GuestAddress(a.0 + 2)).unwrap();
            let slot = a.0 + 4 + 2 * u64::from(avail_idx % QUEUE_SIZE);
            m.write_obj(head, GuestAddress(slot)).unwrap();
            m.write_obj(avail_idx.wrapping_add(1), GuestAddress(a.0 + 2))
                .unwrap();
        }
        self.queues[q as usize] = (d, a, u, (next + descs.len() as u16) % QUEUE_SIZE);
        self.backend
            .handle_event(q, EventSet::IN, &self.vrings, 0)
            .unwrap();
        head
    }

    /// The used ring of queue `q`: (descriptor head, length) per entry.
    fn used(&self, q: u16) -> Vec<(u32, u32)> {
        let used = self.queues[q as usize].2;
        let m = self.mem.memory();
        let idx: u16 = m.read_obj(GuestAddress(used.0 + 2)).unwrap();
        (0..u64::from(idx))
            .map(|i| {
                let at = used.0 + 4 + 8 * i;
                (
                    m.read_obj(GuestAddress(at)).unwrap(),
                    m.read_obj(GuestAddress(at + 4)).unwrap(),
                )
            })
            .collect()
    }

    fn u32_at(&self, addr: u64) -> u32 {
        self.mem.memory().read_obj(GuestAddress(addr)).unwrap()
    }

    /// A control request with `resp` writable bytes; returns the response's address.
    fn control(&mut self, req: &[u8], resp: u32) -> u64 {
        let r = self.buf(req, req.len() as u32);
        let w = self.buf(&[0xee; 4], resp);
        self.offer(0, &[(r, req.len() as u32, false), (w, resp, true)]);
        w
    }
}

fn words(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn set_params(period: u32) -> Vec<u8> {
    let mut b = words(&[code::PCM_SET_PARAMS, 0, period * 4, period, 0]);
    b.extend([2, abi::PCM_FMT_S16, abi::PCM_RATE_48000, 0]);
    b
}

#[test]
fn hostile_control_chains_get_error_statuses() {
    let mut rig = Rig::new();
    // Unknown code: NOT_SUPP.
    let w = rig.control(&words(&[0x0300]), 4);
    assert_eq!(rig.u32_at(w), status::NOT_SUPP);
    // Too short for its structure: BAD_MSG.
    let w = rig.control(&words(&[code::PCM_SET_PARAMS, 0]), 4);
    assert_eq!(rig.u32_at(w), status::BAD_MSG);
    // An info answer that does not fit: BAD_MSG, nothing past the status written.
    let w = rig.control(&words(&[code::PCM_INFO, 0, 2, 32]), 40);
    assert_eq!(rig.u32_at(w), status::BAD_MSG);
    // Read-only where the device must write: used with length 0.
    let r = rig.buf(&words(&[code::PCM_INFO, 0, 2, 32]), 16);
    let head = rig.offer(0, &[(r, 16, false)]);
    assert_eq!(rig.used(0).last(), Some(&(u32::from(head), 0)));
    // Writable before readable: refused without a response.
    let w = rig.buf(&[0xee; 4], 4);
    let head = rig.offer(0, &[(w, 4, true), (r, 16, false)]);
    assert_eq!(rig.used(0).last(), Some(&(u32::from(head), 0)));
    assert_eq!(rig.u32_at(w), 0xeeee_eeee);
    // A buffer outside guest memory, and a length that overflows: no panic, no response.
    let head = rig.offer(0, &[(u64::MAX - 8, 16, false), (w, 4, true)]);
    assert_eq!(rig.used(0).last(), Some(&(u32::from(head), 0)));
    let head = rig.offer(0, &[(r, u32::MAX, false), (w, 4, true)]);
    assert_eq!(rig.used(0).last(), Some(&(u32::from(head), 0)));
    // And a good one still works: PCM_INFO for both streams.
    let w = rig.control(&words(&[code::PCM_INFO, 0, 2, 32]), 68);
    assert_eq!(rig.u32_at(w), status::OK);
    assert_eq!(rig.used(0).last().map(|u| u.1), Some(68));
    assert_eq!(rig.used(0).len(), 8, "every chain was returned");
    assert!(
        rig.backend
            .stats()
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 7
    );
}

#[test]
fn io_before_setup_and_malformed_io_fail_at_once() {
    let mut rig = Rig::new();
    // Playback before SET_PARAMS/PREPARE: IO_ERR in the status, completed at once.
    let mut msg = words(&[0]);
    msg.extend([1; 64]);
    let r = rig.buf(&msg, msg.len() as u32);
    let st = rig.buf(&[0; 8], 8);
    rig.offer(
        abi::queue::TX,
        &[(r, msg.len() as u32, false), (st, 8, true)],
    );
    assert_eq!(rig.u32_at(st), status::IO_ERR);
    assert_eq!(rig.used(abi::queue::TX).len(), 1);
    // Set up and prepared, but the message names the capture stream: BAD_MSG.
    rig.control(&set_params(480), 4);
    rig.control(&words(&[code::PCM_PREPARE, 0]), 4);
    let bad = rig.buf(&words(&[1, 0]), 8);
    let st = rig.buf(&[0; 8], 8);
    rig.offer(abi::queue::TX, &[(bad, 8, false), (st, 8, true)]);
    assert_eq!(rig.u32_at(st), status::BAD_MSG);
    // No room for the status: returned empty.
    let head = rig.offer(abi::queue::TX, &[(r, msg.len() as u32, false)]);
    assert_eq!(rig.used(abi::queue::TX).last(), Some(&(u32::from(head), 0)));
    assert_eq!(rig.used(abi::queue::TX).len(), 3);
    assert!(rig.sink.pcm.lock().unwrap().is_empty(), "nothing played");
}

#[test]
fn a_flood_of_playback_completes_at_real_time_pace() {
    let mut rig = Rig::new();
    // A full queue (32 two-descriptor chains) of 2 ms periods (96 frames): 64 ms of audio.
    rig.control(&set_params(96 * 4), 4);
    rig.control(&words(&[code::PCM_PREPARE, 0]), 4);
    let mut expected = Vec::new();
    for i in 0..32u8 {
        let mut msg = words(&[0]);
        let pcm = vec![i; 96 * 4];
        expected.extend_from_slice(&pcm);
        msg.extend(&pcm);
        let r = rig.buf(&msg, msg.len() as u32);
        let st = rig.buf(&[0; 8], 8);
        rig.offer(
            abi::queue::TX,
            &[(r, msg.len() as u32, false), (st, 8, true)],
        );
    }
    assert!(rig.used(abi::queue::TX).is_empty(), "held until START");
    let t0 = Instant::now();
    rig.control(&words(&[code::PCM_START, 0]), 4);
    assert_eq!(*rig.sink.starts.lock().unwrap(), 1);
    while rig.used(abi::queue::TX).len() < 32 {
        assert!(t0.elapsed() < Duration::from_secs(5), "playback stalled");
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(63),
        "faster than real time: {took:?}"
    );
    assert_eq!(
        *rig.sink.pcm.lock().unwrap(),
        expected,
        "in order, every byte"
    );
    assert!(
        rig.used(abi::queue::TX).iter().all(|u| u.1 == 8),
        "status only"
    );
    // STOP then RELEASE with messages queued: RELEASE completes them without playing.
    rig.control(&words(&[code::PCM_STOP, 0]), 4);
    let mut msg = words(&[0]);
    msg.extend([9; 96 * 4]);
    let r = rig.buf(&msg, msg.len() as u32);
    let st = rig.buf(&[0; 8], 8);
    rig.offer(
        abi::queue::TX,
        &[(r, msg.len() as u32, false), (st, 8, true)],
    );
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(rig.used(abi::queue::TX).len(), 32, "paused");
    rig.control(&words(&[code::PCM_RELEASE, 0]), 4);
    assert_eq!(rig.used(abi::queue::TX).len(), 33);
    assert_eq!(rig.u32_at(st), status::OK);
    assert_eq!(
        rig.sink.pcm.lock().unwrap().len(),
        expected.len(),
        "released, not played"
    );
}

#[test]
fn capture_is_fed_silence_at_real_time_pace() {
    let mut rig = Rig::new();
    let mut params = set_params(96 * 4);
    params[4..8].copy_from_slice(&1u32.to_le_bytes());
    rig.control(&params, 4);
    rig.control(&words(&[code::PCM_PREPARE, 1]), 4);
    let mut bufs = Vec::new();
    for _ in 0..4 {
        let hdr = rig.buf(&words(&[1]), 4);
        let data = rig.buf(&[0xaa; 96 * 4 + 8], 96 * 4 + 8);
        rig.offer(abi::queue::RX, &[(hdr, 4, false), (data, 96 * 4 + 8, true)]);
        bufs.push(data);
    }
    let t0 = Instant::now();
    rig.control(&words(&[code::PCM_START, 1]), 4);
    while rig.used(abi::queue::RX).len() < 4 {
        assert!(t0.elapsed() < Duration::from_secs(5), "capture stalled");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(t0.elapsed() >= Duration::from_millis(7), "4 × 2 ms");
    assert!(rig.used(abi::queue::RX).iter().all(|u| u.1 == 96 * 4 + 8));
    for b in bufs {
        let mut got = vec![0u8; 96 * 4];
        rig.mem
            .memory()
            .read_slice(&mut got, GuestAddress(b))
            .unwrap();
        assert!(got.iter().all(|x| *x == 0), "silence");
        assert_eq!(rig.u32_at(b + 96 * 4), status::OK);
    }
    assert!(
        rig.sink.pcm.lock().unwrap().is_empty(),
        "capture is not playback"
    );
}

impl Rig {
    /// A playback message of `pcm`, offered on TX; returns its status buffer's address.
    fn play(&mut self, pcm: &[u8]) -> u64 {
        let mut msg = words(&[0]);
        msg.extend(pcm);
        let r = self.buf(&msg, msg.len() as u32);
        let st = self.buf(&[0; 8], 8);
        self.offer(
            abi::queue::TX,
            &[(r, msg.len() as u32, false), (st, 8, true)],
        );
        st
    }

    /// Kicks queue `q` with nothing new offered.
    fn kick(&self, q: u16) {
        self.backend
            .handle_event(q, EventSet::IN, &self.vrings, 0)
            .unwrap();
    }

    fn refused(&self) -> u64 {
        self.backend
            .stats()
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[test]
fn a_lying_avail_index_breaks_only_its_own_queue() {
    let mut rig = Rig::new();
    rig.control(&set_params(96 * 4), 4);
    rig.control(&words(&[code::PCM_PREPARE, 0]), 4);
    // The TX ring claims 200 buffers more than it holds: the kick is not an error of the
    // daemon (which would stop every queue), only of this queue.
    let avail = rig.queues[abi::queue::TX as usize].1;
    rig.mem
        .memory()
        .write_obj(200u16, GuestAddress(avail.0 + 2))
        .unwrap();
    let before = rig.refused();
    rig.kick(abi::queue::TX);
    rig.kick(abi::queue::TX);
    assert_eq!(
        rig.refused(),
        before + 1,
        "one error, then the queue is ignored"
    );
    assert!(rig.used(abi::queue::TX).is_empty());
    // The control queue still answers.
    let w = rig.control(&words(&[code::PCM_INFO, 0, 2, 32]), 68);
    assert_eq!(rig.u32_at(w), status::OK);
    // Once the front end stops the ring (the guest resets the device), it works again.
    rig.backend.stop_vring(u32::from(abi::queue::TX)).unwrap();
    rig.mem
        .memory()
        .write_obj(0u16, GuestAddress(avail.0 + 2))
        .unwrap();
    rig.vrings[abi::queue::TX as usize].set_queue_next_avail(0);
    rig.control(&words(&[code::PCM_START, 0]), 4);
    let st = rig.play(&[5; 96 * 4]);
    let t0 = Instant::now();
    while rig.used(abi::queue::TX).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(5), "TX still broken");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(rig.u32_at(st), status::OK);
}

#[test]
fn messages_held_when_the_ring_stops_go_back_to_the_guest() {
    let mut rig = Rig::new();
    // 100 ms periods, three of them queued and started.
    rig.control(&set_params(4800 * 4), 4);
    rig.control(&words(&[code::PCM_PREPARE, 0]), 4);
    let mut expected = Vec::new();
    for i in 0..3u8 {
        let pcm = vec![i + 1; 4800 * 4];
        expected.extend_from_slice(&pcm);
        rig.play(&pcm);
    }
    rig.control(&words(&[code::PCM_START, 0]), 4);
    std::thread::sleep(Duration::from_millis(30));
    // The VM pauses: the front end stops the rings. None of the three has finished, so all
    // go back (the ring's next-avail index moves back over them) and none is completed
    // into the stopped ring, however long the pause.
    for q in 0..abi::queue::COUNT as u32 {
        rig.backend.stop_vring(q).unwrap();
    }
    assert_eq!(rig.vrings[abi::queue::TX as usize].queue_next_avail(), 0);
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        rig.used(abi::queue::TX).is_empty(),
        "completed into a stopped ring"
    );
    assert!(rig.sink.pcm.lock().unwrap().is_empty());
    // The VM resumes on the same rings: the front end kicks, the same messages are taken
    // again and play in order, and the card kept its running stream.
    rig.kick(abi::queue::CONTROL);
    rig.kick(abi::queue::TX);
    let t0 = Instant::now();
    while rig.used(abi::queue::TX).len() < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "playback stalled after resume"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        *rig.sink.pcm.lock().unwrap(),
        expected,
        "each once, in order"
    );
    let w = rig.control(&words(&[code::PCM_STOP, 0]), 4);
    assert_eq!(rig.u32_at(w), status::OK, "the stream was still running");
}

#[test]
fn a_control_ring_that_restarts_elsewhere_resets_the_card() {
    let mut rig = Rig::new();
    rig.control(&set_params(96 * 4), 4);
    rig.control(&words(&[code::PCM_PREPARE, 0]), 4);
    rig.control(&words(&[code::PCM_START, 0]), 4);
    rig.play(&[3; 96 * 4]);
    // The guest resets the device: the rings stop, and start again from zero.
    for q in 0..abi::queue::COUNT as u32 {
        rig.backend.stop_vring(q).unwrap();
    }
    for q in [abi::queue::CONTROL, abi::queue::TX] {
        let (d, a, u, _) = rig.queues[q as usize];
        let m = rig.mem.memory();
        m.write_obj(0u16, GuestAddress(a.0 + 2)).unwrap();
        m.write_obj(0u16, GuestAddress(u.0 + 2)).unwrap();
        rig.vrings[q as usize].set_queue_next_avail(0);
        rig.vrings[q as usize].set_queue_next_used(0);
        rig.queues[q as usize] = (d, a, u, 0);
    }
    // The new driver's first request finds a card as new: no stream to start.
    let w = rig.control(&words(&[code::PCM_START, 0]), 4);
    assert_eq!(
        rig.u32_at(w),
        status::BAD_MSG,
        "the old stream survived the reset"
    );
    // And it sets the stream up again from the start.
    let w = rig.control(&set_params(96 * 4), 4);
    assert_eq!(rig.u32_at(w), status::OK);
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        rig.used(abi::queue::TX).is_empty(),
        "the old ring's message completed into the new one"
    );
}
