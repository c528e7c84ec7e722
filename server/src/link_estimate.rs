//! A display client's link, estimated continuously from what the server already sees: its
//! answers to our pings, its ACKs of the display channel's message windows, and the bytes
//! waiting to go to it (our send queue and the socket's unsent/unacknowledged bytes).
//!
//! # How
//! - **Latency** is the smallest ping round trip among the last [`RTT_SAMPLES`] (a windowed
//!   minimum: what the path costs with nothing queued on it). The latest round trip is kept
//!   too.
//! - **Bandwidth** samples are delivery rates: a ping that had `B` bytes ahead of it (queued
//!   and in the socket when it was queued, plus its own padding) and came back `d` later
//!   than the path's latency says those `B` bytes crossed the link in `d`; an ACK says the
//!   client read a window of messages of known size since the previous ACK. Each is at most
//!   the link's rate (a link partly idle delivers less than it could), so the estimate is the
//!   *largest* sample of the last [`BANDWIDTH_WINDOW`], as TCP BBR's max filter: a slower
//!   link shows once its faster samples age out, a faster one at its first sample.
//! - **Probes:** a link carrying little (JPEG keeps it so) gives no sample worth the name,
//!   so the first ping after the latency is known, and, while the link is slow, a ping after
//!   [`PROBE_INTERVAL`] without a sample, carries [`PROBE_BYTES`] of padding, as
//!   spice-server's connect-time network test does. A fast link is not probed again. A round
//!   trip under half the path's latency so far means the path changed (a VPN dropped, a
//!   congested hop cleared): its rate may have too, so the next ping probes at once.
//!
//! Everything is a plain value fed with samples and times, so it is tested without sockets;
//! memory is a few fixed-size rings whatever a client does.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Below this a link is slow: images that tolerate it go as JPEG. spice-server calls a client
/// "low bandwidth" under 10 Mbit/s (its network test's threshold), and it is where a
/// lossless full-HD update (about 1–2 MB as GLZ or QUIC for photographic content) starts to
/// take more than a second to arrive.
pub const SLOW_BITS_PER_SEC: u64 = 10_000_000;
/// A slow link is fast again above this: a quarter above the threshold, so an estimate that
/// wavers around 10 Mbit/s does not flip the encoding on every sample.
pub const FAST_AGAIN_BITS_PER_SEC: u64 = 12_500_000;
/// Round trips kept for the latency's windowed minimum (with one ping a second, 16 s).
pub const RTT_SAMPLES: usize = 16;
/// Bandwidth samples kept; those older than [`BANDWIDTH_WINDOW`] no longer count.
pub const BANDWIDTH_SAMPLES: usize = 32;
/// How long a bandwidth sample counts.
pub const BANDWIDTH_WINDOW: Duration = Duration::from_secs(8);
/// Pings awaiting their PONG; older ones are forgotten (a client that never answers costs
/// nothing).
pub const MAX_PINGS_IN_FLIGHT: usize = 8;
/// Fewer bytes ahead of a ping than this make no bandwidth sample: their transfer time
/// drowns in the round trip's jitter.
pub const MIN_SAMPLE_BYTES: u64 = 16 * 1024;
/// Padding of a probe ping: 64 KiB take 52 ms at the 10 Mbit/s threshold, well above a
/// loaded machine's jitter, and cost about 6 % of a 2 Mbit/s link at one probe each
/// [`PROBE_INTERVAL`].
pub const PROBE_BYTES: usize = 64 * 1024;
/// A probe goes when no bandwidth sample came for this long.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(3);
/// Queuing delays below this count as this: a sample cannot claim a rate above
/// `bytes / 1 ms` from a difference of round trips finer than timer noise.
const MIN_TRANSFER_TIME: Duration = Duration::from_millis(1);
/// Round trips above this are taken as this (a client that answers a minute late is as slow
/// as it gets; bounded so arithmetic on it stays small).
pub const MAX_RTT: Duration = Duration::from_secs(60);
/// Bounds of a bandwidth sample: 1 kbit/s and 100 Gbit/s.
pub const MIN_BITS_PER_SEC: u64 = 1_000;
pub const MAX_BITS_PER_SEC: u64 = 100_000_000_000;

/// What the estimate says now, for `client_info` and the encoder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkInfo {
    /// The latest ping round trip.
    pub rtt: Option<Duration>,
    /// The path's latency: the smallest recent round trip.
    pub min_rtt: Option<Duration>,
    /// The estimated bandwidth, bits per second (`None` before the first sample).
    pub bits_per_sec: Option<u64>,
    /// Bytes waiting for the client at the last look: our queue plus the socket's.
    pub backlog_bytes: u64,
    /// Whether the link counts as slow (see [`SLOW_BITS_PER_SEC`]).
    pub slow: bool,
    /// Round-trip and bandwidth samples taken.
    pub rtt_samples: u64,
    pub bandwidth_samples: u64,
}

/// A ping on its way: when it left and what was ahead of it.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    id: u32,
    sent: Instant,
    bytes_ahead: u64,
}

/// One display client's link estimate.
#[derive(Debug, Default)]
pub struct LinkEstimate {
    pings: VecDeque<InFlight>,
    rtts: VecDeque<Duration>,
    rates: VecDeque<(Instant, u64)>,
    last_rtt: Option<Duration>,
    last_rate_at: Option<Instant>,
    backlog: u64,
    slow: bool,
    /// A round trip showed a faster path than the latency so far; cleared by the next
    /// bandwidth sample.
    path_changed: bool,
    rtt_samples: u64,
    bandwidth_samples: u64,
}

impl LinkEstimate {
    pub fn new() -> LinkEstimate {
        LinkEstimate::default()
    }

    /// Ping `id` was queued at `now` behind `bytes_ahead` bytes (its own included).
    pub fn ping_sent(&mut self, id: u32, now: Instant, bytes_ahead: u64) {
        if self.pings.len() >= MAX_PINGS_IN_FLIGHT {
            self.pings.pop_front();
        }
        self.pings.push_back(InFlight {
            id,
            sent: now,
            bytes_ahead,
        });
    }

    /// The PONG of ping `id` arrived at `now`. False when no such ping is awaited (a stale or
    /// invented id: ignored).
    pub fn pong(&mut self, id: u32, now: Instant) -> bool {
        let Some(pos) = self.pings.iter().position(|p| p.id == id) else {
            return false;
        };
        let Some(p) = self.pings.remove(pos) else {
            return false;
        };
        let rtt = now.saturating_duration_since(p.sent);
        self.rtt(rtt, p.bytes_ahead, now);
        true
    }

    /// A round trip of `rtt` by a message that had `bytes_ahead` bytes to cross first.
    pub fn rtt(&mut self, rtt: Duration, bytes_ahead: u64, now: Instant) {
        let rtt = rtt.min(MAX_RTT);
        if self.min_rtt().is_some_and(|min| rtt < min / 2) {
            self.path_changed = true;
        }
        if self.rtts.len() >= RTT_SAMPLES {
            self.rtts.pop_front();
        }
        self.rtts.push_back(rtt);
        self.last_rtt = Some(rtt);
        self.rtt_samples = self.rtt_samples.saturating_add(1);
        if bytes_ahead >= MIN_SAMPLE_BYTES
            && let Some(min) = self.min_rtt()
        {
            let queued = rtt.saturating_sub(min).max(MIN_TRANSFER_TIME);
            self.rate(bytes_ahead, queued, now);
        }
    }

    /// The client read `bytes` (a window of messages it ACKed) in `interval`.
    pub fn delivered(&mut self, bytes: u64, interval: Duration, now: Instant) {
        if bytes >= MIN_SAMPLE_BYTES {
            self.rate(bytes, interval.max(MIN_TRANSFER_TIME), now);
        }
    }

    /// Bytes waiting for the client now (our queue plus the socket's).
    pub fn backlog(&mut self, bytes: u64) {
        self.backlog = bytes;
    }

    fn rate(&mut self, bytes: u64, time: Duration, now: Instant) {
        let micros = time.as_micros().max(1);
        let bits = u128::from(bytes).saturating_mul(8_000_000) / micros;
        let bits = u64::try_from(bits)
            .unwrap_or(u64::MAX)
            .clamp(MIN_BITS_PER_SEC, MAX_BITS_PER_SEC);
        if self.rates.len() >= BANDWIDTH_SAMPLES {
            self.rates.pop_front();
        }
        self.rates.push_back((now, bits));
        self.last_rate_at = Some(now);
        self.path_changed = false;
        self.bandwidth_samples = self.bandwidth_samples.saturating_add(1);
        self.update_slow(now);
    }

    fn update_slow(&mut self, now: Instant) {
        match self.bits_per_sec(now) {
            Some(b) if b < SLOW_BITS_PER_SEC => self.slow = true,
            Some(b) if b >= FAST_AGAIN_BITS_PER_SEC => self.slow = false,
            // Between the two, or no recent sample: the link has not shown otherwise.
            _ => {}
        }
    }

    /// The smallest recent round trip.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.rtts.iter().min().copied()
    }

    /// The largest delivery rate of the last [`BANDWIDTH_WINDOW`], in bits per second.
    pub fn bits_per_sec(&self, now: Instant) -> Option<u64> {
        self.rates
            .iter()
            .filter(|(t, _)| now.saturating_duration_since(*t) <= BANDWIDTH_WINDOW)
            .map(|(_, b)| *b)
            .max()
    }

    /// Whether the link counts as slow at `now`.
    pub fn is_slow(&mut self, now: Instant) -> bool {
        self.update_slow(now);
        self.slow
    }

    /// Padding for the next ping, once the path's latency is known (a probe needs a plain
    /// round trip to be measured against): [`PROBE_BYTES`] for the first rate of a link (as
    /// spice-server's connect-time test), when the path just got faster, and, while the link
    /// counts as slow, when no sample came for [`PROBE_INTERVAL`] (JPEG keeps a slow link
    /// quiet, and only a probe can tell it recovered); else none. A fast link is not probed
    /// again: an idle desktop then costs no padding at all, and a fast link that degrades
    /// shows in the samples of the updates that queue on it.
    pub fn probe_bytes(&self, now: Instant) -> usize {
        if self.min_rtt().is_none() {
            return 0;
        }
        let stale = self
            .last_rate_at
            .is_none_or(|t| now.saturating_duration_since(t) >= PROBE_INTERVAL);
        let first = self.last_rate_at.is_none();
        if first || self.path_changed || (self.slow && stale) {
            PROBE_BYTES
        } else {
            0
        }
    }

    /// The estimate now.
    pub fn info(&mut self, now: Instant) -> LinkInfo {
        LinkInfo {
            rtt: self.last_rtt,
            min_rtt: self.min_rtt(),
            bits_per_sec: self.bits_per_sec(now),
            backlog_bytes: self.backlog,
            slow: self.is_slow(now),
            rtt_samples: self.rtt_samples,
            bandwidth_samples: self.bandwidth_samples,
        }
    }
}

/// A display channel's estimate, shared by its pinger, its reader (PONGs, ACKs), its encoder
/// and `client_info`.
#[derive(Debug, Default)]
pub struct LinkMonitor(std::sync::Mutex<LinkEstimate>);

impl LinkMonitor {
    /// Runs `f` on the estimate.
    pub fn with<R>(&self, f: impl FnOnce(&mut LinkEstimate) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The estimate now.
    pub fn info(&self) -> LinkInfo {
        self.with(|e| e.info(Instant::now()))
    }
}

impl crate::conn::AckObserver for LinkMonitor {
    fn acked(&self, bytes: u64, interval: Duration, now: Instant) {
        self.with(|e| e.delivered(bytes, interval, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Pings every second over a link of `bits` bit/s and `latency` round trip, each behind
    /// `ahead` bytes; returns the time after the last.
    fn feed(
        e: &mut LinkEstimate,
        t0: Instant,
        first_id: u32,
        n: u32,
        bits: u64,
        latency: Duration,
        ahead: u64,
    ) -> Instant {
        let mut t = t0;
        for i in 0..n {
            let id = first_id + i;
            t = t0 + Duration::from_secs(u64::from(i));
            e.ping_sent(id, t, ahead);
            let transfer = Duration::from_micros(ahead * 8_000_000 / bits);
            assert!(e.pong(id, t + latency + transfer));
        }
        t + Duration::from_secs(1)
    }

    #[test]
    fn a_two_megabit_link_is_slow_and_its_rate_is_measured() {
        let mut e = LinkEstimate::new();
        let t0 = Instant::now();
        // Plain pings first: the latency.
        let t = feed(&mut e, t0, 1, 3, 2_000_000, 50 * MS, 0);
        assert_eq!(e.min_rtt(), Some(50 * MS));
        assert_eq!(
            e.bits_per_sec(t),
            None,
            "small pings say nothing of the rate"
        );
        assert!(!e.is_slow(t), "unknown is not slow");
        assert_eq!(e.probe_bytes(t), PROBE_BYTES, "so the next ping probes");
        let t = feed(&mut e, t, 10, 3, 2_000_000, 50 * MS, PROBE_BYTES as u64);
        let bw = e.bits_per_sec(t).unwrap();
        assert!((1_900_000..=2_100_000).contains(&bw), "{bw}");
        assert!(e.is_slow(t));
        assert_eq!(e.probe_bytes(t), 0, "a fresh sample: no probe");
        let info = e.info(t);
        assert_eq!(info.min_rtt, Some(50 * MS));
        assert!(info.slow);
        assert_eq!((info.rtt_samples, info.bandwidth_samples), (6, 3));
    }

    #[test]
    fn a_fast_link_is_not_slow_and_a_link_that_speeds_up_is_fast_at_once() {
        let mut e = LinkEstimate::new();
        let t0 = Instant::now();
        let t = feed(&mut e, t0, 1, 2, 100_000_000, 2 * MS, 0);
        let t = feed(&mut e, t, 10, 3, 100_000_000, 2 * MS, 1 << 20);
        assert!(!e.is_slow(t));
        assert!(e.bits_per_sec(t).unwrap() >= 90_000_000);
        // Slow now: slow once the fast samples are older than the window.
        let t = feed(&mut e, t, 20, 3, 1_000_000, 2 * MS, 200_000);
        assert!(!e.is_slow(t), "the fast samples still count");
        let t = feed(&mut e, t, 30, 8, 1_000_000, 2 * MS, 200_000);
        assert!(e.is_slow(t));
        // Fast again: the first fast sample says so.
        let t = feed(&mut e, t, 40, 1, 50_000_000, 2 * MS, 200_000);
        assert!(!e.is_slow(t));
        // An idle fast link is never probed again; a slow one is, once its samples are stale.
        let later = t + PROBE_INTERVAL * 10;
        assert_eq!(e.probe_bytes(later), 0, "idle and fast: no padding");
        let t = feed(&mut e, t, 50, 8, 1_000_000, 2 * MS, 200_000);
        assert!(e.is_slow(t));
        assert_eq!(e.probe_bytes(t), 0, "fresh samples");
        assert_eq!(
            e.probe_bytes(t + 2 * PROBE_INTERVAL),
            PROBE_BYTES,
            "slow and stale"
        );
    }

    /// A plain round trip far below the latency so far asks for a probe at once, even with
    /// a fresh bandwidth sample; the probe's sample ends the request.
    #[test]
    fn a_faster_path_is_probed_at_once() {
        let mut e = LinkEstimate::new();
        let t0 = Instant::now();
        let t = feed(&mut e, t0, 1, 2, 2_000_000, 50 * MS, 0);
        let t = feed(&mut e, t, 10, 1, 2_000_000, 50 * MS, PROBE_BYTES as u64);
        assert!(e.is_slow(t));
        assert_eq!(e.probe_bytes(t), 0);
        // 30 ms: not half of 50.
        let t = feed(&mut e, t, 20, 1, 2_000_000, 30 * MS, 0);
        assert_eq!(e.probe_bytes(t), 0);
        let t = feed(&mut e, t, 30, 1, 2_000_000, MS, 0);
        assert_eq!(e.probe_bytes(t), PROBE_BYTES, "the path changed");
        let t = feed(&mut e, t, 40, 1, 500_000_000, MS, PROBE_BYTES as u64);
        assert!(!e.is_slow(t));
        assert_eq!(e.probe_bytes(t), 0);
    }

    #[test]
    fn acks_give_delivery_rates_and_hysteresis_holds_the_decision() {
        let mut e = LinkEstimate::new();
        let t = Instant::now();
        e.delivered(100_000, 100 * MS, t); // 8 Mbit/s
        assert!(e.is_slow(t));
        e.delivered(1_400_000, Duration::from_secs(1), t); // 11.2 Mbit/s: between
        assert!(e.is_slow(t), "not yet fast again");
        e.delivered(1_700_000, Duration::from_secs(1), t); // 13.6 Mbit/s
        assert!(!e.is_slow(t));
        e.delivered(100, Duration::from_secs(10), t);
        assert_eq!(e.info(t).bandwidth_samples, 3, "a tiny window is no sample");
    }

    #[test]
    fn absurd_values_are_bounded_and_memory_stays_fixed() {
        let mut e = LinkEstimate::new();
        let t0 = Instant::now();
        // A flood of pings never answered, and PONGs of ids never sent.
        for id in 0..10_000u32 {
            e.ping_sent(id, t0, u64::MAX);
        }
        assert_eq!(e.pings.len(), MAX_PINGS_IN_FLIGHT);
        assert!(!e.pong(5, t0), "forgotten");
        assert!(!e.pong(u32::MAX, t0));
        // The last ones are still answered: an enormous backlog, an hour late.
        assert!(e.pong(9_999, t0 + Duration::from_secs(3600)));
        assert_eq!(e.info(t0).rtt, Some(MAX_RTT));
        for i in 0..1000u64 {
            e.rtt(Duration::from_secs(i), u64::MAX, t0);
            e.delivered(u64::MAX, Duration::ZERO, t0);
        }
        assert_eq!(e.rtts.len(), RTT_SAMPLES);
        assert_eq!(e.rates.len(), BANDWIDTH_SAMPLES);
        assert_eq!(e.bits_per_sec(t0), Some(MAX_BITS_PER_SEC));
        // A pong "before" its ping (a clock that went backwards) is a zero round trip.
        e.ping_sent(1, t0 + Duration::from_secs(5), 0);
        assert!(e.pong(1, t0));
        assert_eq!(e.min_rtt(), Some(Duration::ZERO));
        // The slowest a sample may claim.
        let mut e = LinkEstimate::new();
        e.delivered(MIN_SAMPLE_BYTES, Duration::from_secs(1_000_000), t0);
        assert_eq!(e.bits_per_sec(t0), Some(MIN_BITS_PER_SEC));
        assert!(e.is_slow(t0));
    }
}
