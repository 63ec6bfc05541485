//! The simulated network: seeded latency, write splitting and per-connection faults.

use std::collections::VecDeque;
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Something that goes wrong with one connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The connect fails at once with `ConnectionRefused`; the server never sees it.
    Refuse,
    /// The connect never completes (the client's connect timeout has to fire); the server
    /// never sees it.
    ConnectBlackHole,
    /// This long after the server accepted, the connection is reset: bytes still in flight
    /// either way are lost, and both sides see it end.
    Reset {
        /// Time from acceptance to the reset.
        after: Duration,
    },
    /// The server's byte stream is cut after this many bytes and then closed (FIN): the rest
    /// of what the server writes never arrives.
    Truncate {
        /// Bytes of the response that still arrive.
        after_bytes: u64,
    },
    /// After this many bytes of the response, nothing more ever arrives and the connection
    /// is never closed: only the client's stall timer can end it.
    BlackHole {
        /// Bytes of the response that still arrive.
        after_bytes: u64,
    },
}

/// How the network behaves: latency, how writes are split, and how often each [`Fault`]
/// strikes. Every random choice is drawn from the simulator's seed.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkFaults {
    /// One-way delay of each segment, drawn from `min..=max`. Segments of one direction
    /// never overtake each other (TCP delivers in order).
    pub latency: (Duration, Duration),
    /// Time from `Connect` to the connection being up (or refused), from `min..=max`.
    pub connect_latency: (Duration, Duration),
    /// The largest segment one write is split into (at least 1).
    pub max_segment: usize,
    /// Probability that a segment is tiny (1 to 8 bytes), to hit awkward split points.
    pub tiny_segments: f64,
    /// Probability that a connect is refused.
    pub refuse: f64,
    /// Probability that a connect never completes.
    pub connect_black_hole: f64,
    /// Probability that an accepted connection is reset within `reset_within`.
    pub reset: f64,
    /// The latest a random reset strikes after acceptance.
    pub reset_within: Duration,
    /// Probability that the response is truncated within its first `cut_within` bytes.
    pub truncate: f64,
    /// Probability that the response is black-holed within its first `cut_within` bytes.
    pub black_hole: f64,
    /// The latest byte offset at which a random truncation or black hole strikes.
    pub cut_within: u64,
    /// If set, a connection no other fault struck is reset after a lifetime drawn from
    /// `min..=max`: over hours, connections keep dropping.
    pub lifetime: Option<(Duration, Duration)>,
    /// Faults forced on given connects, by the client's 0-based `Connect` ordinal; they
    /// replace the random draw for that connect.
    pub scripted: Vec<(usize, Fault)>,
}

impl NetworkFaults {
    /// A perfect network with no delay: writes are still split at seeded random points (which
    /// must not change anything the client does), but nothing is delayed or lost, so stories
    /// keep exact timings.
    pub fn none() -> Self {
        NetworkFaults {
            latency: (Duration::ZERO, Duration::ZERO),
            connect_latency: (Duration::ZERO, Duration::ZERO),
            max_segment: 1500,
            tiny_segments: 0.05,
            refuse: 0.0,
            connect_black_hole: 0.0,
            reset: 0.0,
            reset_within: Duration::ZERO,
            truncate: 0.0,
            black_hole: 0.0,
            cut_within: 0,
            lifetime: None,
            scripted: Vec::new(),
        }
    }

    /// A troubled network: 1–80 ms latency; every connect has about a one in three chance
    /// of some fault (refused, never connecting, reset within ten minutes, truncated or
    /// black-holed within the first 64 KiB), and no connection lives longer than 1 to 30
    /// minutes.
    pub fn flaky() -> Self {
        NetworkFaults {
            latency: (Duration::from_millis(1), Duration::from_millis(80)),
            connect_latency: (Duration::from_millis(1), Duration::from_millis(50)),
            max_segment: 4096,
            tiny_segments: 0.02,
            refuse: 0.08,
            connect_black_hole: 0.03,
            reset: 0.12,
            reset_within: Duration::from_secs(600),
            truncate: 0.06,
            black_hole: 0.03,
            cut_within: 64 * 1024,
            lifetime: Some((Duration::from_secs(60), Duration::from_secs(30 * 60))),
            scripted: Vec::new(),
        }
    }

    /// The same network with `fault` forced on the `connect`-th connect (0-based).
    pub fn with_fault(mut self, connect: usize, fault: Fault) -> Self {
        self.scripted.push((connect, fault));
        self
    }

    /// The same network with this one-way segment latency range.
    pub fn with_latency(mut self, min: Duration, max: Duration) -> Self {
        self.latency = (min, max.max(min));
        self
    }

    /// The same network with this connect latency range.
    pub fn with_connect_latency(mut self, min: Duration, max: Duration) -> Self {
        self.connect_latency = (min, max.max(min));
        self
    }

    /// The fault for the `connect`-th connect: the scripted one, else a seeded draw.
    pub(crate) fn choose(&self, connect: usize, rng: &mut ChaCha8Rng) -> Option<Fault> {
        if let Some((_, fault)) = self.scripted.iter().rev().find(|(i, _)| *i == connect) {
            return Some(*fault);
        }
        let roll: f64 = rng.gen();
        let mut edge = 0.0;
        let mut hit = |p: f64| {
            edge += p.max(0.0);
            roll < edge
        };
        if hit(self.refuse) {
            Some(Fault::Refuse)
        } else if hit(self.connect_black_hole) {
            Some(Fault::ConnectBlackHole)
        } else if hit(self.reset) {
            Some(Fault::Reset {
                after: draw(rng, Duration::ZERO, self.reset_within),
            })
        } else if hit(self.truncate) {
            Some(Fault::Truncate {
                after_bytes: rng.gen_range(0..=self.cut_within),
            })
        } else if hit(self.black_hole) {
            Some(Fault::BlackHole {
                after_bytes: rng.gen_range(0..=self.cut_within),
            })
        } else {
            self.lifetime.map(|(min, max)| Fault::Reset {
                after: draw(rng, min, max),
            })
        }
    }

    /// A one-way delay.
    pub(crate) fn delay(&self, rng: &mut ChaCha8Rng) -> Duration {
        draw(rng, self.latency.0, self.latency.1)
    }

    /// A connect delay.
    pub(crate) fn connect_delay(&self, rng: &mut ChaCha8Rng) -> Duration {
        draw(rng, self.connect_latency.0, self.connect_latency.1)
    }

    /// The next segment length for `remaining` bytes.
    fn segment_len(&self, rng: &mut ChaCha8Rng, remaining: usize) -> usize {
        let max = if self.tiny_segments > 0.0 && rng.gen_bool(self.tiny_segments.min(1.0)) {
            8
        } else {
            self.max_segment.max(1)
        };
        rng.gen_range(1..=max).min(remaining)
    }
}

/// A duration drawn uniformly from `min..=max` (nanosecond resolution).
fn draw(rng: &mut ChaCha8Rng, min: Duration, max: Duration) -> Duration {
    if max <= min {
        return min;
    }
    let span = (max - min).as_nanos().min(u128::from(u64::MAX)) as u64;
    min + Duration::from_nanos(rng.gen_range(0..=span))
}

/// One direction of a connection: segments in flight, in delivery order.
#[derive(Debug, Default)]
pub(crate) struct Pipe {
    segments: VecDeque<(Duration, Vec<u8>)>,
    /// Delivery time of the last segment queued, so later ones never overtake it.
    last: Duration,
    /// When the sender's FIN arrives, once it sent one.
    fin: Option<Duration>,
}

impl Pipe {
    /// Splits `bytes` into segments and queues them, sent at `now`.
    pub(crate) fn send(
        &mut self,
        net: &NetworkFaults,
        rng: &mut ChaCha8Rng,
        now: Duration,
        bytes: &[u8],
    ) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let len = net.segment_len(rng, rest.len());
            let (head, tail) = rest.split_at(len);
            let at = (now + net.delay(rng)).max(self.last);
            self.last = at;
            self.segments.push_back((at, head.to_vec()));
            rest = tail;
        }
    }

    /// Queues the sender's FIN after everything already queued.
    pub(crate) fn close(&mut self, net: &NetworkFaults, rng: &mut ChaCha8Rng, now: Duration) {
        if self.fin.is_none() {
            let at = (now + net.delay(rng)).max(self.last);
            self.last = at;
            self.fin = Some(at);
        }
    }

    /// Loses everything in flight (a reset).
    pub(crate) fn drop_in_flight(&mut self) {
        self.segments.clear();
        self.fin = None;
    }

    /// The next delivery time: a segment, else the FIN.
    pub(crate) fn next_at(&self) -> Option<Duration> {
        match self.segments.front() {
            Some((at, _)) => Some(*at),
            None => self.fin,
        }
    }

    /// The next segment, if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Duration) -> Option<Vec<u8>> {
        match self.segments.front() {
            Some((at, _)) if *at <= now => self.segments.pop_front().map(|(_, b)| b),
            _ => None,
        }
    }

    /// Whether the FIN is due at `now` (every segment before it is delivered).
    pub(crate) fn take_fin_due(&mut self, now: Duration) -> bool {
        if self.segments.is_empty() && self.fin.is_some_and(|at| at <= now) {
            self.fin = None;
            true
        } else {
            false
        }
    }
}
