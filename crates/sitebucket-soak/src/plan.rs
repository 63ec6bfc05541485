//! What the soak server does on each connection attempt: a seeded, pure function of the
//! seed, the server and the attempt's index, so a run's faults can be told again.
//!
//! Every attempt draws one [`Fault`] and, for a `200`, a body of soak messages (see
//! [`wire`](crate::wire)) at random intervals, compressed or not (gzip, deflate), with
//! chunk boundaries anywhere, then the fault.

use std::sync::Arc;
use std::time::Duration;

use sitebucket_testserver::corpus::Corpus;
use sitebucket_testserver::{AttemptPlan, BodyEncoding, ChunkPlan, End, Step};

use crate::wire;

/// SplitMix64: a tiny seeded generator (deterministic, no dependency).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for this seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// How an attempt goes wrong (or right).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Messages, then half a message, then the connection drops.
    DropMidMessage,
    /// Many messages with keep-alives (long enough to earn trust by time), then a drop.
    LongThenDrop,
    /// Messages, then silence with the connection open: the client must see the stall.
    Stall,
    /// Messages, then a `disconnect` message (a code the client retries), then keep-alives.
    Disconnect,
    /// Messages, then a properly finished body and a close.
    CleanClose,
    /// `503 Service Unavailable`.
    Status503,
    /// `420 Enhance Your Calm` or `429 Too Many Requests`.
    RateLimited,
    /// Reads the request, never answers.
    NeverAnswers,
    /// Half a response head, then close.
    HalfHead,
    /// `200` and an empty body, then close at once: no trust earned.
    OkThenClose,
    /// `200`, a `disconnect` message alone (no trust earned), then keep-alives.
    OnlyDisconnect,
}

impl Fault {
    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Fault::DropMidMessage => "drop-mid-message",
            Fault::LongThenDrop => "long-then-drop",
            Fault::Stall => "stall",
            Fault::Disconnect => "disconnect",
            Fault::CleanClose => "clean-close",
            Fault::Status503 => "503",
            Fault::RateLimited => "420/429",
            Fault::NeverAnswers => "never-answers",
            Fault::HalfHead => "half-head",
            Fault::OkThenClose => "200-then-close",
            Fault::OnlyDisconnect => "200-disconnect-only",
        }
    }

    /// Every fault, with its weight (out of 100).
    pub const WEIGHTS: [(Fault, u64); 11] = [
        (Fault::DropMidMessage, 22),
        (Fault::LongThenDrop, 14),
        (Fault::Stall, 9),
        (Fault::Disconnect, 10),
        (Fault::CleanClose, 10),
        (Fault::Status503, 9),
        (Fault::RateLimited, 6),
        (Fault::NeverAnswers, 4),
        (Fault::HalfHead, 6),
        (Fault::OkThenClose, 6),
        (Fault::OnlyDisconnect, 4),
    ];
}

/// Twitter's reconnect timings scaled down so a minute holds many reconnects, as
/// `cargo xtask demo` does. One set, used by the client's config and by the check.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Linear step after network errors (Twitter: 250 ms).
    pub network_step: Duration,
    /// Its ceiling (Twitter: 16 s).
    pub network_max: Duration,
    /// First wait after an HTTP error (Twitter: 5 s).
    pub http_start: Duration,
    /// Its ceiling (Twitter: 320 s).
    pub http_max: Duration,
    /// First wait after a 420/429 (Twitter: 60 s).
    pub rate_limit_start: Duration,
    /// Its ceiling (Twitter: 16 min).
    pub rate_limit_max: Duration,
    /// No byte for this long: a stall (Twitter: 90 s).
    pub stall_timeout: Duration,
    /// A connection up this long earns trust (Twitter: 30 s).
    pub trust_after: Duration,
    /// A connection up this long forgets the 420/429 sequence (at least 10 min on Twitter).
    pub rate_limit_reset_after: Duration,
    /// The longest pause between two messages of a body (well under `stall_timeout`, so
    /// only a planned stall is one).
    pub max_interval: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            network_step: Duration::from_millis(100),
            network_max: Duration::from_secs(2),
            http_start: Duration::from_millis(300),
            http_max: Duration::from_secs(3),
            rate_limit_start: Duration::from_millis(800),
            rate_limit_max: Duration::from_secs(8),
            stall_timeout: Duration::from_secs(3),
            trust_after: Duration::from_secs(2),
            rate_limit_reset_after: Duration::from_secs(20),
            max_interval: Duration::from_millis(400),
        }
    }
}

/// One attempt's plan and what the check needs to know of it.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The plan the server plays.
    pub plan: AttemptPlan,
    /// The fault drawn.
    pub fault: Fault,
    /// Framed messages in the body (soak and disconnect messages).
    pub messages: u64,
}

/// Makes attempts' plans for one server.
#[derive(Clone)]
pub struct Planner {
    seed: u64,
    server: u8,
    timing: Timing,
    /// Realistic message bodies, shared.
    pool: Arc<Vec<Vec<u8>>>,
}

impl Planner {
    /// Plans for server `server` (0 plain, 1 TLS) of a run with `seed`.
    pub fn new(seed: u64, server: u8, timing: Timing) -> Self {
        let mut corpus = Corpus::new(seed);
        let pool = (0..512).map(|_| corpus.site_message()).collect();
        Planner {
            seed,
            server,
            timing,
            pool: Arc::new(pool),
        }
    }

    /// The plan of attempt `index`.
    pub fn plan(&self, index: usize) -> Planned {
        let mut rng = Rng::new(
            self.seed
                ^ (u64::from(self.server) << 56)
                ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407),
        );
        let mut pick = rng.range(1, 100);
        let mut fault = Fault::DropMidMessage;
        for (f, w) in Fault::WEIGHTS {
            if pick <= w {
                fault = f;
                break;
            }
            pick -= w;
        }
        let body_messages = match fault {
            Fault::LongThenDrop => rng.range(60, 140),
            Fault::DropMidMessage | Fault::Stall | Fault::Disconnect | Fault::CleanClose => {
                rng.range(1, 40)
            }
            _ => 0,
        };
        let max_ms = self.timing.max_interval.as_millis() as u64;
        let mut steps = Vec::with_capacity(2 * body_messages as usize + 4);
        for n in 0..body_messages {
            let body = &self.pool[(rng.next_u64() % self.pool.len() as u64) as usize];
            steps.push(Step::Message(wire::message(
                self.server,
                index as u64,
                n,
                body,
            )));
            match rng.range(0, 9) {
                0 => steps.push(Step::KeepAlive),
                1..=6 => steps.push(Step::Wait(Duration::from_millis(rng.range(5, max_ms)))),
                _ => {}
            }
        }
        let half = || {
            let m = wire::message(self.server, index as u64, body_messages, &self.pool[0]);
            Step::RawBody(m[..m.len() / 2].to_vec())
        };
        let code = [1, 2, 3, 4, 5, 8, 9, 10, 11, 12][rng.range(0, 9) as usize];
        let keep_alives = End::HoldWithKeepAlives(Duration::from_millis(200));
        let mut messages = body_messages;
        let plan = match fault {
            Fault::DropMidMessage | Fault::LongThenDrop => {
                steps.push(half());
                steps.push(Step::CloseNow);
                AttemptPlan::ok(steps)
            }
            Fault::Stall => AttemptPlan::ok(steps).with_end(End::Stall),
            Fault::Disconnect | Fault::OnlyDisconnect => {
                steps.push(Step::Disconnect {
                    code,
                    reason: format!("soak: disconnect code {code}"),
                });
                messages += 1;
                AttemptPlan::ok(steps).with_end(keep_alives)
            }
            Fault::CleanClose => AttemptPlan::ok(steps),
            Fault::Status503 => AttemptPlan::status(503, "Service Unavailable"),
            Fault::RateLimited if rng.range(0, 1) == 0 => {
                AttemptPlan::status(420, "Enhance Your Calm")
            }
            Fault::RateLimited => AttemptPlan::status(429, "Too Many Requests"),
            Fault::NeverAnswers => AttemptPlan::never_answers(),
            Fault::HalfHead => AttemptPlan::half_head(),
            Fault::OkThenClose => AttemptPlan::ok(Vec::new()),
        };
        let plan = if plan.status == 200 && plan.head == sitebucket_testserver::Head::Standard {
            let max = [1, 7, 64, 512, 4096][rng.range(0, 4) as usize];
            let chunks = if rng.range(0, 4) == 0 {
                ChunkPlan::PerStep
            } else {
                ChunkPlan::Random {
                    seed: rng.next_u64(),
                    min: 1,
                    max,
                }
            };
            let encoding = [
                BodyEncoding::Identity,
                BodyEncoding::Gzip,
                BodyEncoding::Deflate,
            ][rng.range(0, 2) as usize];
            plan.with_chunks(chunks).with_encoding(encoding)
        } else {
            plan
        };
        Planned {
            plan,
            fault,
            messages,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_a_function_of_seed_server_and_index_and_every_fault_occurs() {
        let a = Planner::new(7, 0, Timing::default());
        let b = Planner::new(7, 0, Timing::default());
        let tls = Planner::new(7, 1, Timing::default());
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..2000 {
            let (x, y) = (a.plan(i), b.plan(i));
            assert_eq!(x.plan, y.plan, "attempt {i}");
            assert_eq!(x.messages, y.messages);
            seen.insert(x.fault.name());
        }
        assert_eq!(seen.len(), Fault::WEIGHTS.len(), "{seen:?}");
        assert_eq!(Fault::WEIGHTS.iter().map(|(_, w)| w).sum::<u64>(), 100);
        assert!((0..50).any(|i| a.plan(i).plan != tls.plan(i).plan));
    }
}
