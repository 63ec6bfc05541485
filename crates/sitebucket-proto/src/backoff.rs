//! Reconnect backoff policies: how long to wait before the next connection attempt.
//!
//! Two policies, chosen in [`Config`](crate::Config):
//! - [`TwitterBackoff`] (the default) follows Twitter's "Connecting to a streaming endpoint":
//!   linear after network errors, exponential after HTTP errors, and a slower exponential
//!   after `420`/`429`. Each kind keeps its own sequence.
//! - [`SquaredBackoff`] is the original sitebucket's: wait `retry_time`, then square it —
//!   here with a ceiling, which the original lacked.
//!
//! [`Backoff`] holds the state. It is pure: jitter, when asked for, comes from a seeded RNG,
//! and it never shortens a wait below the first wait of its kind's sequence (the policy's
//! minimum for that kind).
//!
//! ## When a sequence starts over
//! A sequence is not forgotten because a connection got a `200` head: a server or proxy that
//! answers `200` and drops at once would otherwise be retried four times a second. The
//! [`SiteStream`](crate::SiteStream) calls [`Backoff::trusted`] when a connection earns trust
//! (it delivered a real message, or stayed up for the config's `trust_after`): that starts
//! the network and HTTP sequences (and the squared one) over. The 420/429 sequence survives
//! trust; [`Backoff::forget_rate_limit`] starts it over only once a connection has stayed up
//! for the config's `rate_limit_reset_after` (ten minutes by default).
//! [`Backoff::reset`] (the stream's `reset_throttles`) forgets everything. Giving up forgets
//! nothing: the stream's `retry_after_giving_up` goes on with the sequences as they were.

use core::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Why a connection attempt (or an established stream) failed, as far as backoff cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Anything before a response head (refused, reset, timeout, TLS), a drop mid-stream,
    /// a stall, an oversized frame, or a `disconnect` message.
    Network,
    /// A non-200 status other than 420/429 that retrying can fix.
    Http,
    /// `420 Enhance Your Calm` or `429 Too Many Requests`.
    RateLimited,
}

/// Twitter's documented reconnect rules. Every number is configurable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TwitterBackoff {
    /// Linear step after network errors: the k-th wait is `min(k * step, network_max)`.
    pub network_step: Duration,
    /// Ceiling of the linear network backoff.
    pub network_max: Duration,
    /// First wait after an HTTP error; doubles each time.
    pub http_start: Duration,
    /// Ceiling of the HTTP backoff.
    pub http_max: Duration,
    /// First wait after a 420/429; doubles each time.
    pub rate_limit_start: Duration,
    /// Ceiling of the rate-limit backoff.
    pub rate_limit_max: Duration,
}

impl Default for TwitterBackoff {
    fn default() -> Self {
        Self {
            network_step: Duration::from_millis(250),
            network_max: Duration::from_secs(16),
            http_start: Duration::from_secs(5),
            http_max: Duration::from_secs(320),
            rate_limit_start: Duration::from_secs(60),
            rate_limit_max: Duration::from_secs(16 * 60),
        }
    }
}

/// The original sitebucket policy: sleep `retry_time`, then square it (in seconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SquaredBackoff {
    /// The first wait (2 s).
    pub start: Duration,
    /// The longest wait: the squares stop growing here.
    pub max: Duration,
}

impl Default for SquaredBackoff {
    fn default() -> Self {
        Self {
            start: Duration::from_secs(2),
            max: Duration::from_secs(320),
        }
    }
}

/// Which reconnect policy a stream uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackoffPolicy {
    /// Twitter's rules (the default).
    Twitter(TwitterBackoff),
    /// The original sitebucket's squaring policy, capped.
    Squared(SquaredBackoff),
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy::Twitter(TwitterBackoff::default())
    }
}

impl BackoffPolicy {
    /// The range every wait for `kind` must fall in (before jitter), whatever came before.
    pub fn bounds(&self, kind: FailureKind) -> (Duration, Duration) {
        match self {
            BackoffPolicy::Twitter(t) => match kind {
                FailureKind::Network => (t.network_step.min(t.network_max), t.network_max),
                FailureKind::Http => (t.http_start.min(t.http_max), t.http_max),
                FailureKind::RateLimited => {
                    (t.rate_limit_start.min(t.rate_limit_max), t.rate_limit_max)
                }
            },
            BackoffPolicy::Squared(s) => (s.start.min(s.max), s.max),
        }
    }
}

/// Optional seeded jitter: each wait is scaled by a factor drawn from `[1 - fraction, 1]`,
/// then raised to the policy's minimum for its kind if that took it below (see
/// [`BackoffPolicy::bounds`]): jitter never brings a wait under the first wait of its
/// sequence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Jitter {
    /// How much of each wait may be taken off, from 0.0 (none) to 1.0 (all of it).
    pub fraction: f64,
    /// Seed of the jitter RNG, so runs are reproducible.
    pub seed: u64,
}

/// The backoff state of one stream.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    network_errors: u32,
    http_next: Option<Duration>,
    rate_limit_next: Option<Duration>,
    squared_next: Option<Duration>,
    jitter: Option<(f64, ChaCha8Rng)>,
}

impl Backoff {
    /// A fresh backoff for `policy`, optionally jittered.
    pub fn new(policy: BackoffPolicy, jitter: Option<Jitter>) -> Self {
        Self {
            policy,
            network_errors: 0,
            http_next: None,
            rate_limit_next: None,
            squared_next: None,
            jitter: jitter.map(|j| {
                let fraction = if j.fraction.is_finite() {
                    j.fraction.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                (fraction, ChaCha8Rng::seed_from_u64(j.seed))
            }),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Forgets every failure: the next wait of each kind is its first again.
    /// Called by the stream's `reset_throttles`.
    pub fn reset(&mut self) {
        self.trusted();
        self.forget_rate_limit();
    }

    /// A connection earned trust: the network and HTTP sequences (and the squared policy's
    /// single sequence) start over. The 420/429 sequence is kept.
    pub fn trusted(&mut self) {
        self.network_errors = 0;
        self.http_next = None;
        self.squared_next = None;
    }

    /// A connection stayed up long enough to forget past rate limiting: the 420/429 sequence
    /// starts over.
    pub fn forget_rate_limit(&mut self) {
        self.rate_limit_next = None;
    }

    /// The wait the squared policy would use next; for the Twitter
    /// policy, the next HTTP-error wait.
    pub fn retry_time(&self) -> Duration {
        match &self.policy {
            BackoffPolicy::Twitter(t) => self.http_next.unwrap_or(t.http_start).min(t.http_max),
            BackoffPolicy::Squared(s) => self.squared_next.unwrap_or(s.start).min(s.max),
        }
    }

    /// Records a failure of `kind` and returns how long to wait before the next attempt.
    pub fn next_delay(&mut self, kind: FailureKind) -> Duration {
        let base = match &self.policy {
            BackoffPolicy::Twitter(t) => match kind {
                FailureKind::Network => {
                    self.network_errors = self.network_errors.saturating_add(1);
                    t.network_step
                        .saturating_mul(self.network_errors)
                        .min(t.network_max)
                }
                FailureKind::Http => doubling(&mut self.http_next, t.http_start, t.http_max),
                FailureKind::RateLimited => doubling(
                    &mut self.rate_limit_next,
                    t.rate_limit_start,
                    t.rate_limit_max,
                ),
            },
            BackoffPolicy::Squared(s) => {
                // The sequence squares the uncapped wait (in seconds) and never shrinks, so a
                // ceiling below one second holds the wait at the ceiling instead of shrinking it.
                let current = self.squared_next.unwrap_or(s.start);
                let secs = current.as_secs_f64();
                let squared = Duration::try_from_secs_f64(secs * secs).unwrap_or(Duration::MAX);
                self.squared_next = Some(squared.max(current));
                current.min(s.max)
            }
        };
        match &mut self.jitter {
            Some((fraction, rng)) if *fraction > 0.0 => {
                let factor = 1.0 - rng.gen_range(0.0..=*fraction);
                let (minimum, _) = self.policy.bounds(kind);
                base.mul_f64(factor).max(minimum)
            }
            _ => base,
        }
    }
}

fn doubling(next: &mut Option<Duration>, start: Duration, max: Duration) -> Duration {
    let current = next.unwrap_or(start).min(max);
    *next = Some(current.saturating_mul(2).min(max));
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn twitter_network_is_linear_and_capped() {
        let mut b = Backoff::new(BackoffPolicy::default(), None);
        let waits: Vec<_> = (0..70)
            .map(|_| b.next_delay(FailureKind::Network))
            .collect();
        assert_eq!(waits[0], Duration::from_millis(250));
        assert_eq!(waits[1], Duration::from_millis(500));
        assert_eq!(waits[63], secs(16));
        assert_eq!(waits[69], secs(16));
    }

    #[test]
    fn twitter_kinds_keep_their_own_sequences() {
        let mut b = Backoff::new(BackoffPolicy::default(), None);
        assert_eq!(b.next_delay(FailureKind::Http), secs(5));
        assert_eq!(b.next_delay(FailureKind::RateLimited), secs(60));
        assert_eq!(b.next_delay(FailureKind::Http), secs(10));
        assert_eq!(
            b.next_delay(FailureKind::Network),
            Duration::from_millis(250)
        );
        assert_eq!(b.next_delay(FailureKind::RateLimited), secs(120));
        for _ in 0..10 {
            b.next_delay(FailureKind::Http);
        }
        assert_eq!(b.next_delay(FailureKind::Http), secs(320));
        b.reset();
        assert_eq!(b.next_delay(FailureKind::Http), secs(5));
        assert_eq!(
            b.next_delay(FailureKind::Network),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn squared_squares_and_caps() {
        let mut b = Backoff::new(BackoffPolicy::Squared(SquaredBackoff::default()), None);
        let waits: Vec<_> = (0..6).map(|_| b.next_delay(FailureKind::Network)).collect();
        assert_eq!(
            waits,
            [secs(2), secs(4), secs(16), secs(256), secs(320), secs(320)]
        );
    }

    #[test]
    fn squared_with_a_ceiling_below_a_second_stays_at_the_ceiling() {
        let policy = SquaredBackoff {
            start: secs(2),
            max: Duration::from_millis(150),
        };
        let mut b = Backoff::new(BackoffPolicy::Squared(policy), None);
        for _ in 0..5 {
            assert_eq!(b.next_delay(FailureKind::Http), Duration::from_millis(150));
        }
        let mut b = Backoff::new(
            BackoffPolicy::Squared(SquaredBackoff {
                start: Duration::from_millis(500),
                max: secs(10),
            }),
            None,
        );
        let waits: Vec<_> = (0..3).map(|_| b.next_delay(FailureKind::Http)).collect();
        assert_eq!(
            waits,
            [Duration::from_millis(500); 3],
            "a sub-second start never shrinks"
        );
    }

    #[test]
    fn jitter_stays_in_bounds_and_is_reproducible() {
        let jitter = Some(Jitter {
            fraction: 0.5,
            seed: 7,
        });
        let mut a = Backoff::new(BackoffPolicy::default(), jitter);
        let mut b = Backoff::new(BackoffPolicy::default(), jitter);
        for _ in 0..100 {
            let wa = a.next_delay(FailureKind::Http);
            assert_eq!(wa, b.next_delay(FailureKind::Http));
            assert!(wa <= secs(320) && wa >= secs(5), "{wa:?}");
        }
    }

    #[test]
    fn jitter_never_shortens_a_wait_below_its_kinds_minimum() {
        // A fraction of 1.0 could take a wait down to nothing; every kind's wait stays at or
        // above its first wait (250 ms, 5 s, 60 s; 2 s for the squared policy).
        for seed in 0..20 {
            let jitter = Some(Jitter {
                fraction: 1.0,
                seed,
            });
            let mut b = Backoff::new(BackoffPolicy::default(), jitter);
            for _ in 0..50 {
                assert!(b.next_delay(FailureKind::Network) >= Duration::from_millis(250));
                assert!(b.next_delay(FailureKind::Http) >= secs(5));
                assert!(b.next_delay(FailureKind::RateLimited) >= secs(60));
            }
            let mut b = Backoff::new(BackoffPolicy::Squared(SquaredBackoff::default()), jitter);
            for _ in 0..10 {
                assert!(b.next_delay(FailureKind::Http) >= secs(2));
            }
        }
        // The first wait of each sequence is its minimum: jitter cannot shorten it at all.
        let mut b = Backoff::new(
            BackoffPolicy::default(),
            Some(Jitter {
                fraction: 0.9,
                seed: 3,
            }),
        );
        assert_eq!(b.next_delay(FailureKind::Http), secs(5));
        assert_eq!(b.next_delay(FailureKind::RateLimited), secs(60));
        assert_eq!(
            b.next_delay(FailureKind::Network),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn trust_starts_network_and_http_over_but_keeps_the_rate_limit() {
        let mut b = Backoff::new(BackoffPolicy::default(), None);
        b.next_delay(FailureKind::Network);
        b.next_delay(FailureKind::Http);
        assert_eq!(b.next_delay(FailureKind::RateLimited), secs(60));
        b.trusted();
        assert_eq!(
            b.next_delay(FailureKind::Network),
            Duration::from_millis(250)
        );
        assert_eq!(b.next_delay(FailureKind::Http), secs(5));
        assert_eq!(b.next_delay(FailureKind::RateLimited), secs(120));
        b.forget_rate_limit();
        assert_eq!(b.next_delay(FailureKind::RateLimited), secs(60));
        assert_eq!(b.next_delay(FailureKind::Http), secs(10), "kept");

        let mut s = Backoff::new(BackoffPolicy::Squared(SquaredBackoff::default()), None);
        assert_eq!(s.next_delay(FailureKind::Network), secs(2));
        assert_eq!(s.next_delay(FailureKind::Network), secs(4));
        s.trusted();
        assert_eq!(s.next_delay(FailureKind::RateLimited), secs(2));
    }
}
