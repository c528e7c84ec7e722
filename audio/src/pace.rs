//! Real-time pacing of one stream's I/O messages. A sound card consumes (or fills) its
//! buffer at the stream's rate, and the Linux driver advances its play position each time an
//! I/O message completes; so a message is completed when its audio would have finished
//! playing, not when it arrives. Messages queue while the stream is prepared or stopped and
//! are timed one after another, back to back, while it runs.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::control::{FRAME_BYTES, RATE};

/// A late wake-up up to this much keeps the timeline continuous (the next message starts
/// where the previous ended); a longer gap (the driver underran) restarts it at "now".
const MAX_CATCH_UP: Duration = Duration::from_millis(50);

/// How long `bytes` of S16 stereo 48 kHz audio play.
pub fn duration_of(bytes: u32) -> Duration {
    let frames = u64::from(bytes / FRAME_BYTES);
    Duration::from_nanos(frames * 1_000_000_000 / u64::from(RATE))
}

/// A queued I/O message: the caller's token and its audio length in bytes.
#[derive(Debug)]
pub struct Queued<T> {
    pub token: T,
    pub bytes: u32,
}

/// A message whose time is over, and when its audio started playing on the stream's clock
/// (back to back with the previous one unless the driver underran): that, not the moment
/// the pacing thread got round to it, is what its audio is stamped with.
#[derive(Debug)]
pub struct Played<T> {
    pub token: T,
    pub bytes: u32,
    pub start: Instant,
}

/// One stream's queue of I/O messages and its clock.
#[derive(Debug)]
pub struct Pacer<T> {
    queue: VecDeque<Queued<T>>,
    running: bool,
    /// When the head message started and finishes, once it is being played.
    head: Option<(Instant, Instant)>,
    /// When the last completed message finished.
    last_end: Option<Instant>,
}

impl<T> Default for Pacer<T> {
    fn default() -> Self {
        Pacer {
            queue: VecDeque::new(),
            running: false,
            head: None,
            last_end: None,
        }
    }
}

impl<T> Pacer<T> {
    /// Queues a message.
    pub fn push(&mut self, token: T, bytes: u32) {
        self.queue.push_back(Queued { token, bytes });
    }

    /// Messages queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether the stream runs.
    pub fn running(&self) -> bool {
        self.running
    }

    /// The stream starts (or resumes): the head message starts playing now.
    pub fn start(&mut self) {
        self.running = true;
        self.head = None;
        self.last_end = None;
    }

    /// The stream pauses; the head message will play again from its start.
    pub fn stop(&mut self) {
        self.running = false;
        self.head = None;
    }

    /// Every queued message, to be completed at once (release, reset).
    pub fn drain(&mut self) -> Vec<Queued<T>> {
        self.head = None;
        self.running = false;
        self.queue.drain(..).collect()
    }

    /// Every queued message, handed back unplayed while the stream keeps its state (the
    /// front end stopped the ring: the messages go back to the guest's ring, and the stream
    /// goes on where it was when the ring starts again). The head message will play from its
    /// start, on a fresh clock.
    pub fn take_back(&mut self) -> Vec<Queued<T>> {
        self.head = None;
        self.last_end = None;
        self.queue.drain(..).collect()
    }

    /// The messages whose time is over at `now`, in order, and when to look again (`None`
    /// when nothing is due later: the stream is not running or its queue is empty).
    pub fn poll(&mut self, now: Instant) -> (Vec<Played<T>>, Option<Instant>) {
        let mut done = Vec::new();
        if !self.running {
            return (done, None);
        }
        while let Some(head) = self.queue.front() {
            let (start, end) = match self.head {
                Some(h) => h,
                None => {
                    let start = match self.last_end {
                        Some(e) if e + MAX_CATCH_UP >= now => e,
                        _ => now,
                    };
                    let h = (start, start + duration_of(head.bytes));
                    self.head = Some(h);
                    h
                }
            };
            if end > now {
                return (done, Some(end));
            }
            self.head = None;
            self.last_end = Some(end);
            if let Some(q) = self.queue.pop_front() {
                done.push(Played {
                    token: q.token,
                    bytes: q.bytes,
                    start,
                });
            }
        }
        (done, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS20: u32 = 48 * 20 * 4;

    #[test]
    fn messages_taken_back_leave_the_stream_running_on_a_fresh_clock() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        p.start();
        p.push(0, MS20);
        p.push(1, MS20);
        assert!(p.poll(t0).0.is_empty(), "the head plays until 20 ms");
        let back = p.take_back();
        assert_eq!(back.iter().map(|q| q.token).collect::<Vec<_>>(), vec![0, 1]);
        assert!(
            p.running(),
            "the stream's state is the card's, not the ring's"
        );
        // The same messages offered again, later: they play from their start then.
        let t1 = t0 + Duration::from_secs(5);
        p.push(0, MS20);
        let (done, next) = p.poll(t1);
        assert!(done.is_empty());
        assert_eq!(next, Some(t1 + Duration::from_millis(20)));
    }

    #[test]
    fn completes_back_to_back_at_real_time() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        for i in 0..3 {
            p.push(i, MS20);
        }
        assert_eq!(p.poll(t0).0.len(), 0, "not running");
        p.start();
        let (done, next) = p.poll(t0);
        assert!(done.is_empty());
        assert_eq!(next, Some(t0 + Duration::from_millis(20)));
        // 45 ms later: two are over (0-20, 20-40), the third ends at 60.
        let (done, next) = p.poll(t0 + Duration::from_millis(45));
        assert_eq!(done.iter().map(|q| q.token).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(
            done[1].start,
            t0 + Duration::from_millis(20),
            "back to back"
        );
        assert_eq!(next, Some(t0 + Duration::from_millis(60)));
        p.stop();
        assert_eq!(p.poll(t0 + Duration::from_secs(1)).0.len(), 0, "paused");
        assert_eq!(p.drain().len(), 1);
        assert!(p.is_empty());
    }

    #[test]
    fn an_underrun_restarts_the_clock() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        p.start();
        p.push(0, MS20);
        p.poll(t0);
        assert_eq!(p.poll(t0 + Duration::from_millis(20)).0.len(), 1);
        // The next message comes 500 ms later: it plays from then, not from 20 ms.
        let late = t0 + Duration::from_millis(520);
        p.push(1, MS20);
        assert_eq!(p.poll(late).1, Some(late + Duration::from_millis(20)));
        assert_eq!(duration_of(192_000), Duration::from_secs(1));
        assert_eq!(duration_of(3), Duration::ZERO);
    }
}
