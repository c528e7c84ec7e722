//! The vhost-user backend: the front end (QEMU) hands us the guest's memory and the four
//! virtqueues; kicks arrive in `handle_event` on the daemon's worker thread. Control requests
//! are answered at once; I/O messages are queued on their stream's [`Pacer`] and completed by
//! the pacing thread when their audio would have finished playing — playback data goes to the
//! [`PcmSink`] then, capture buffers are filled with silence. When no stream runs, the pacing
//! thread sleeps on a condition variable: an idle card costs nothing.
//!
//! A hostile or buggy driver breaks at most its own queue: an avail index that claims more
//! buffers than the ring holds puts that queue in an error state (its kicks are ignored)
//! until the front end stops it, while the other queues go on. When the front end stops the
//! rings (the VM pauses, or the guest resets the device), messages not yet played go back to
//! the guest's ring rather than being completed later into a ring that may be a new one; and
//! a control ring that starts again elsewhere than where it stopped means a reset, which
//! resets the card.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use tracing::{debug, warn};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    EventConsumer, EventFlag, EventNotifier, new_event_consumer_and_notifier,
};

use crate::abi::{self, queue, status};
use crate::chain::Segments;
use crate::control::{Card, Effect, INPUT_STREAM, OUTPUT_STREAM};
use crate::pace::Pacer;
use crate::request::check_io;
use crate::{PcmSink, PcmSource};

/// Guest memory as the daemon gives it to us.
pub type Mem = GuestMemoryAtomic<GuestMemoryMmap>;

/// Largest readable or writable part of a control request's chain: PCM_INFO for both streams
/// is 68 bytes; anything much larger is not a request we know.
const MAX_CONTROL_BYTES: usize = 4096;
/// Largest I/O message: 256 KiB is 1.4 s of audio, far more than a Linux period. Up to a
/// queue's 64 messages are held, so at most 16 MiB per direction is ever copied out.
pub const MAX_IO_BYTES: usize = 256 << 10;
/// Queue size we accept (QEMU's vhost-user-snd uses 64).
const MAX_QUEUE_SIZE: usize = 1024;

/// A queued I/O message: its chain, and for playback the audio copied out of it.
#[derive(Debug)]
struct IoMessage {
    head: u16,
    /// Its place in the queue's avail ring (what the ring's next-avail index was when it
    /// was taken), to hand it back when the ring stops.
    pos: u16,
    segs: Segments,
    /// Playback: the PCM bytes. Capture: empty (the buffer is `segs.writable_len - 8`).
    pcm: Vec<u8>,
}

/// Counters, for tests and logs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Playback bytes completed and handed to the sink.
    pub played_bytes: AtomicU64,
    /// Capture bytes delivered to the guest.
    pub captured_bytes: AtomicU64,
    /// Requests and messages refused with an error status (or dropped as unanswerable).
    pub refused: AtomicU64,
}

struct State {
    card: Card,
    tx: Pacer<IoMessage>,
    rx: Pacer<IoMessage>,
    vrings: Vec<VringRwLock>,
    mem: Option<Mem>,
    quit: bool,
    /// Per queue: its avail ring was found lying (an index ahead by more than the ring
    /// holds); kicks are ignored until the front end stops it.
    broken: [bool; queue::COUNT],
    /// Per queue: the next-avail index it had when the front end last stopped it, until the
    /// first kick after it starts again.
    stopped_at: [Option<u16>; queue::COUNT],
    /// The pacing thread is completing messages outside the lock; stopping a ring waits for
    /// it, so that nothing is completed into a stopped ring.
    completing: bool,
}

struct Inner {
    state: Mutex<State>,
    wake: Condvar,
    /// Signalled when the pacing thread has finished completing messages.
    idle: Condvar,
    sink: Arc<dyn PcmSink>,
    source: Arc<dyn PcmSource>,
    stats: Stats,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The virtio-sound backend. Clones share one card.
#[derive(Clone)]
pub struct SoundBackend {
    inner: Arc<Inner>,
}

/// The pacing thread, stopped and joined when dropped.
pub struct PacingThread {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for PacingThread {
    fn drop(&mut self) {
        self.inner.lock().quit = true;
        self.inner.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How one message ends: its status word and how many bytes of its writable part count as
/// written (the used length).
fn finish(mem: &GuestMemoryMmap, vring: &VringRwLock, head: u16, segs: &Segments, st: u32) {
    // The status is the last 8 bytes of the writable part (§5.14.6.8).
    let used = match segs.writable_len.checked_sub(abi::PCM_STATUS_SIZE) {
        Some(at) => {
            let mut status_bytes = [0u8; abi::PCM_STATUS_SIZE];
            status_bytes[..4].copy_from_slice(&st.to_le_bytes());
            match segs.write_at(mem, at, &status_bytes) {
                Ok(()) => segs.writable_len,
                Err(e) => {
                    debug!("cannot write an I/O status: {e}");
                    0
                }
            }
        }
        None => 0,
    };
    if let Err(e) = vring.add_used(head, used as u32) {
        warn!("add_used: {e}");
    }
}

impl SoundBackend {
    /// A backend whose playback goes to `sink` and whose capture comes from `source`, and
    /// its pacing thread.
    pub fn new(
        sink: Arc<dyn PcmSink>,
        source: Arc<dyn PcmSource>,
    ) -> io::Result<(SoundBackend, PacingThread)> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                card: Card::new(),
                tx: Pacer::default(),
                rx: Pacer::default(),
                vrings: Vec::new(),
                mem: None,
                quit: false,
                broken: [false; queue::COUNT],
                stopped_at: [None; queue::COUNT],
                completing: false,
            }),
            wake: Condvar::new(),
            idle: Condvar::new(),
            sink,
            source,
            stats: Stats::default(),
        });
        let worker = inner.clone();
        let thread = thread::Builder::new()
            .name("saffron-snd-pace".into())
            .spawn(move || pace_loop(&worker))?;
        Ok((
            SoundBackend {
                inner: inner.clone(),
            },
            PacingThread {
                inner,
                thread: Some(thread),
            },
        ))
    }

    /// The device is reset: the card's streams and every held message go (the rings they
    /// came from are gone).
    fn reset(&self, st: &mut State) {
        st.card.reset();
        st.tx.drain();
        st.rx.drain();
        self.inner.sink.stop();
        self.inner.source.stop();
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    fn refused(&self) {
        self.inner.stats.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Answers the control queue's requests.
    fn control(&self, st: &mut State, mem: &GuestMemoryMmap, vring: &VringRwLock, chains: Chains) {
        for (head, _, descs) in chains {
            let segs = match Segments::from_descriptors(descs, MAX_CONTROL_BYTES) {
                Ok(s) => s,
                Err(e) => {
                    debug!("control chain refused: {e}");
                    self.refused();
                    let _ = vring.add_used(head, 0);
                    continue;
                }
            };
            let used = match segs.read_all(mem) {
                Ok(req) => {
                    let resp = st.card.handle(&req, segs.writable_len);
                    if resp.status_code() != status::OK {
                        self.refused();
                    }
                    self.apply(st, resp.effect, mem);
                    match segs.write_at(mem, 0, &resp.bytes) {
                        Ok(()) => resp.bytes.len(),
                        Err(e) => {
                            debug!("control response not written: {e}");
                            0
                        }
                    }
                }
                Err(e) => {
                    debug!("control request unreadable: {e}");
                    self.refused();
                    0
                }
            };
            if let Err(e) = vring.add_used(head, used as u32) {
                warn!("add_used: {e}");
            }
        }
    }

    /// What a PCM command means for the queued I/O.
    fn apply(&self, st: &mut State, effect: Effect, mem: &GuestMemoryMmap) {
        match effect {
            Effect::None => {}
            Effect::Start(id) => {
                debug!(stream = id, "start");
                if id == OUTPUT_STREAM {
                    st.tx.start();
                    self.inner.sink.start();
                } else {
                    st.rx.start();
                    self.inner.source.start();
                }
            }
            Effect::Stop(id) => {
                debug!(stream = id, "stop");
                if id == OUTPUT_STREAM {
                    st.tx.stop();
                    self.inner.sink.stop();
                } else {
                    st.rx.stop();
                    self.inner.source.stop();
                }
            }
            Effect::Release(id) => {
                debug!(stream = id, "release");
                // §5.14.6.6.5: the device completes every pending I/O message of the stream.
                let (pacer, q) = if id == OUTPUT_STREAM {
                    (&mut st.tx, queue::TX)
                } else {
                    (&mut st.rx, queue::RX)
                };
                let drained = pacer.drain();
                if id == INPUT_STREAM {
                    self.inner.source.stop();
                }
                if let Some(vring) = st.vrings.get(usize::from(q)) {
                    for m in drained {
                        finish(mem, vring, m.token.head, &m.token.segs, status::OK);
                    }
                    let _ = vring.signal_used_queue();
                }
            }
        }
    }

    /// Queues the I/O messages of `q` (TX or RX); the ones that cannot be played are
    /// completed at once with an error status.
    fn io(
        &self,
        st: &mut State,
        q: u16,
        mem: &GuestMemoryMmap,
        vring: &VringRwLock,
        chains: Chains,
    ) {
        let (stream_id, playback) = if q == queue::TX {
            (OUTPUT_STREAM, true)
        } else {
            (INPUT_STREAM, false)
        };
        for (head, pos, descs) in chains {
            let segs = match Segments::from_descriptors(descs, MAX_IO_BYTES) {
                Ok(s) => s,
                Err(e) => {
                    debug!(queue = q, "I/O chain refused: {e}");
                    self.refused();
                    let _ = vring.add_used(head, 0);
                    continue;
                }
            };
            let checked = segs
                .read_all(mem)
                .map_err(|_| status::BAD_MSG)
                .and_then(|readable| {
                    check_io(
                        st.card.state(stream_id),
                        stream_id,
                        playback,
                        &readable,
                        segs.writable_len,
                    )
                });
            match checked {
                Ok((pcm, bytes)) => {
                    tracing::trace!(queue = q, head, bytes, "I/O message queued");
                    let pacer = if playback { &mut st.tx } else { &mut st.rx };
                    pacer.push(
                        IoMessage {
                            head,
                            pos,
                            segs,
                            pcm,
                        },
                        bytes,
                    );
                }
                Err(code) => {
                    self.refused();
                    finish(mem, vring, head, &segs, code);
                }
            }
        }
    }
}

/// A kick's chains: head index, place in the avail ring, and `(address, length,
/// write-only)` per descriptor.
type Chains = Vec<(u16, u16, Vec<(vm_memory::GuestAddress, u32, bool)>)>;

fn take_chains(vring: &VringRwLock, mem: &Mem) -> Result<Chains, virtio_queue::Error> {
    let guard = mem.memory();
    let mut state = vring.get_mut();
    let queue = state.get_queue_mut();
    let first = queue.next_avail();
    let iter = queue.iter(guard)?;
    Ok(iter
        .enumerate()
        .map(|(i, chain)| {
            let head = chain.head_index();
            let descs = chain
                .clone()
                .map(|d| (d.addr(), d.len(), d.is_write_only()))
                .collect();
            (head, first.wrapping_add(i as u16), descs)
        })
        .collect())
}

fn pace_loop(inner: &Inner) {
    let mut st = inner.lock();
    loop {
        if st.quit {
            return;
        }
        let now = Instant::now();
        let (played, tx_next) = st.tx.poll(now);
        let (captured, rx_next) = st.rx.poll(now);
        if played.is_empty() && captured.is_empty() {
            st = match [tx_next, rx_next].into_iter().flatten().min() {
                Some(at) => {
                    let wait = at.saturating_duration_since(now);
                    inner
                        .wake
                        .wait_timeout(st, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => inner.wake.wait(st).unwrap_or_else(|e| e.into_inner()),
            };
            continue;
        }
        let (vrings, mem) = (st.vrings.clone(), st.mem.clone());
        st.completing = true;
        drop(st);
        if let Some(mem) = mem {
            let guard = mem.memory();
            if let Some(vring) = vrings.get(usize::from(queue::TX)) {
                for m in &played {
                    tracing::trace!(head = m.token.head, bytes = m.bytes, "played");
                    inner.sink.play(&m.token.pcm, m.start);
                    inner
                        .stats
                        .played_bytes
                        .fetch_add(m.token.pcm.len() as u64, Ordering::Relaxed);
                    finish(&guard, vring, m.token.head, &m.token.segs, status::OK);
                }
                if !played.is_empty() {
                    let _ = vring.signal_used_queue();
                }
            }
            if let Some(vring) = vrings.get(usize::from(queue::RX)) {
                for m in &captured {
                    // What the source captured (or silence) over the whole buffer, then the
                    // status.
                    let n = u64::from(m.bytes);
                    let mut audio = vec![0u8; m.bytes as usize];
                    inner.source.fill(&mut audio);
                    if let Err(e) = m.token.segs.write_at(&*guard, 0, &audio) {
                        debug!("capture buffer not written: {e}");
                    }
                    inner.stats.captured_bytes.fetch_add(n, Ordering::Relaxed);
                    finish(&guard, vring, m.token.head, &m.token.segs, status::OK);
                }
                if !captured.is_empty() {
                    let _ = vring.signal_used_queue();
                }
            }
        }
        st = inner.lock();
        st.completing = false;
        inner.idle.notify_all();
    }
}

impl VhostUserBackend for SoundBackend {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        queue::COUNT
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        (1 << VIRTIO_F_VERSION_1) | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
    }

    fn set_event_idx(&self, _enabled: bool) {}

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let config = abi::config_bytes();
        let start = (offset as usize).min(config.len());
        let end = start.saturating_add(size as usize).min(config.len());
        config.get(start..end).unwrap_or(&[]).to_vec()
    }

    fn update_memory(&self, mem: Mem) -> io::Result<()> {
        self.inner.lock().mem = Some(mem);
        Ok(())
    }

    fn reset_device(&self) {
        let mut st = self.inner.lock();
        self.reset(&mut st);
    }

    /// The front end stops ring `index` (GET_VRING_BASE: the VM pauses, or the device is
    /// reset or stopped). Messages still waiting to be played or filled go back to the
    /// guest: the ring's next-avail index is moved back over them, so that the front end
    /// offers them again if the same ring resumes; a reset ring forgets them, as the guest
    /// does. Nothing is completed into a stopped ring.
    fn stop_vring(&self, index: u32) -> io::Result<()> {
        let mut st = self.inner.lock();
        while st.completing {
            st = self.inner.idle.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        let Ok(q) = u16::try_from(index) else {
            return Ok(());
        };
        let Some(vring) = st.vrings.get(usize::from(q)).cloned() else {
            return Ok(());
        };
        let held = match q {
            queue::TX => st.tx.take_back(),
            queue::RX => st.rx.take_back(),
            _ => Vec::new(),
        };
        let next = vring.queue_next_avail();
        let back = u16::try_from(held.len()).unwrap_or(u16::MAX);
        let first = next.wrapping_sub(back);
        let contiguous = held
            .iter()
            .enumerate()
            .all(|(i, m)| m.token.pos == first.wrapping_add(i as u16));
        if contiguous {
            vring.set_queue_next_avail(first);
        } else {
            // Only a driver that had messages refused between the held ones gets here: the
            // refused ones are already used, so the held ones cannot be offered again alone.
            warn!(
                queue = q,
                held = held.len(),
                "held I/O messages dropped with the stopped ring"
            );
        }
        if !held.is_empty() {
            debug!(
                queue = q,
                held = held.len(),
                "ring stopped: messages handed back"
            );
        }
        let q = usize::from(q);
        if let Some(b) = st.broken.get_mut(q) {
            *b = false;
        }
        // Where it stopped first since its last kick: a ring reset twice before any request
        // is still seen as reset.
        if let Some(s) = st.stopped_at.get_mut(q)
            && s.is_none()
        {
            *s = Some(if contiguous { first } else { next });
        }
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK).ok()
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringRwLock],
        _thread_id: usize,
    ) -> io::Result<()> {
        if evset != EventSet::IN {
            return Err(io::Error::other("unexpected event set"));
        }
        let mut st = self.inner.lock();
        if st.vrings.is_empty() {
            st.vrings = vrings.to_vec();
        }
        let Some(mem) = st.mem.clone() else {
            return Err(io::Error::other("kick before the guest memory table"));
        };
        let Some(vring) = vrings.get(usize::from(device_event)) else {
            return Err(io::Error::other(format!("event for queue {device_event}")));
        };
        // The event queue's buffers are for device notifications, which this card never
        // sends: they stay with the device.
        if device_event == queue::EVENT {
            return Ok(());
        }
        let q = usize::from(device_event);
        if let Some(stopped) = st.stopped_at.get_mut(q).and_then(Option::take)
            && device_event == queue::CONTROL
            && vring.queue_next_avail() != stopped
        {
            // The control ring starts again elsewhere than where it stopped: the guest
            // reset the device and set up new rings. Its streams went with it.
            debug!(stopped, "the control ring restarted: the card is reset");
            self.reset(&mut st);
        }
        if st.broken.get(q).copied().unwrap_or(true) {
            return Ok(());
        }
        // An error here ends this queue, never the daemon's loop (an error returned from
        // here stops every queue): the queue's kicks are ignored until the front end stops
        // it, as a device in need of reset would.
        let chains = match take_chains(vring, &mem) {
            Ok(c) => c,
            Err(virtio_queue::Error::QueueNotReady) => return Ok(()),
            Err(e) => {
                warn!(
                    queue = device_event,
                    "virtqueue broken, ignored until reset: {e}"
                );
                self.refused();
                if let Some(b) = st.broken.get_mut(q) {
                    *b = true;
                }
                return Ok(());
            }
        };
        let guard = mem.memory();
        match device_event {
            queue::CONTROL => self.control(&mut st, &guard, vring, chains),
            q => self.io(&mut st, q, &guard, vring, chains),
        }
        drop(st);
        self.inner.wake.notify_all();
        vring.signal_used_queue()
    }
}
