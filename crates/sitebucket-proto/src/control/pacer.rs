//! [`ControlPacer`]: keeps control requests under Twitter's rate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::CONTROL_REQUESTS_PER_SECOND;

/// A rolling-window pacing rule: at most `per_window` control requests start within any
/// window of `window` (by default 24 per second, under Twitter's 25). It reads no clock:
/// [`reserve`](Self::reserve) takes `now` and returns the instant the request may go.
///
/// Requests go in the order they reserved: each instant returned is no earlier than the one
/// before. Share one pacer among every stream of an application (the limit is per
/// application, not per connection).
///
/// ```
/// use std::time::{Duration, Instant};
/// use sitebucket_proto::control::ControlPacer;
///
/// let mut pacer = ControlPacer::new(2, Duration::from_secs(1));
/// let now = Instant::now();
/// assert_eq!(pacer.reserve(now), now);
/// assert_eq!(pacer.reserve(now), now);
/// assert_eq!(pacer.reserve(now), now + Duration::from_secs(1)); // the third waits
/// ```
#[derive(Clone, Debug)]
pub struct ControlPacer {
    per_window: usize,
    window: Duration,
    /// Start instants of the requests that may still count, oldest first, never decreasing.
    starts: VecDeque<Instant>,
}

impl Default for ControlPacer {
    /// One request fewer per second than Twitter's limit of
    /// [`CONTROL_REQUESTS_PER_SECOND`], so the limit is never reached.
    fn default() -> Self {
        let below = CONTROL_REQUESTS_PER_SECOND.saturating_sub(1).max(1);
        ControlPacer::new(below as usize, Duration::from_secs(1))
    }
}

impl ControlPacer {
    /// At most `per_window` requests (at least 1) within any `window`.
    pub fn new(per_window: usize, window: Duration) -> Self {
        ControlPacer {
            per_window: per_window.max(1),
            window,
            starts: VecDeque::new(),
        }
    }

    /// How many requests may start within one window.
    pub fn per_window(&self) -> usize {
        self.per_window
    }

    /// The length of the window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The instant a request asked for at `now` could start, without reserving it.
    pub fn ready_at(&self, now: Instant) -> Instant {
        let mut at = now;
        if let Some(&last) = self.starts.back() {
            at = at.max(last);
        }
        if self.starts.len() >= self.per_window {
            // In range: len >= per_window >= 1.
            let oldest_that_counts = self.starts[self.starts.len() - self.per_window];
            let free = oldest_that_counts
                .checked_add(self.window)
                .unwrap_or(oldest_that_counts);
            at = at.max(free);
        }
        at
    }

    /// Reserves the next start for a request asked for at `now`: returns the instant it may
    /// go (`now` when it may go at once). The caller waits until then, then sends.
    pub fn reserve(&mut self, now: Instant) -> Instant {
        self.forget_before(now);
        let at = self.ready_at(now);
        self.starts.push_back(at);
        // Only the last `per_window` starts can hold a later request back.
        while self.starts.len() > self.per_window {
            self.starts.pop_front();
        }
        at
    }

    /// Drops starts that can no longer count for a request at or after `now`.
    fn forget_before(&mut self, now: Instant) {
        while let Some(&first) = self.starts.front() {
            let expires = first.checked_add(self.window).unwrap_or(first);
            if expires <= now {
                self.starts.pop_front();
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // `Instant::now()` is only the base of virtual time here
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_default_stays_under_twenty_five_per_second() {
        let mut pacer = ControlPacer::default();
        assert_eq!(pacer.per_window(), 24);
        assert_eq!(pacer.window(), Duration::from_secs(1));
        let start = Instant::now();
        let times: Vec<Instant> = (0..100).map(|_| pacer.reserve(start)).collect();
        for (i, t) in times.iter().enumerate() {
            let in_window = times[..=i]
                .iter()
                .filter(|s| t.duration_since(**s) < Duration::from_secs(1))
                .count();
            assert!(in_window <= 24, "request {i}: {in_window} in one second");
        }
        // Bursts of 24, one second apart: 100 requests take just over four seconds.
        assert_eq!(times[23], start);
        assert_eq!(times[24], start + Duration::from_secs(1));
        assert_eq!(times[99], start + Duration::from_secs(4));
    }

    #[test]
    fn spaced_requests_go_at_once_and_ready_at_does_not_reserve() {
        let mut pacer = ControlPacer::new(3, 100 * MS);
        let t0 = Instant::now();
        for k in 0..10 {
            let now = t0 + 50 * MS * k;
            assert_eq!(pacer.ready_at(now), now);
            assert_eq!(pacer.reserve(now), now, "request {k}");
        }
        let now = t0 + 500 * MS;
        assert_eq!(pacer.ready_at(now), now);
        assert_eq!(pacer.ready_at(now), now, "asking twice changes nothing");
    }

    #[test]
    fn a_zero_limit_is_one() {
        let mut pacer = ControlPacer::new(0, 10 * MS);
        assert_eq!(pacer.per_window(), 1);
        let t0 = Instant::now();
        assert_eq!(pacer.reserve(t0), t0);
        assert_eq!(pacer.reserve(t0), t0 + 10 * MS);
    }

    proptest! {
        /// Whatever the arrival times, no window holds more than the limit, every start is
        /// at or after its request, starts never go backwards, and no request waits longer
        /// than it must (it starts at its arrival or when the window frees a slot).
        #[test]
        fn no_window_ever_holds_more_than_the_limit(
            limit in 1usize..6,
            window_ms in 1u64..200,
            gaps in proptest::collection::vec(0u64..80, 1..80),
        ) {
            let window = Duration::from_millis(window_ms);
            let mut pacer = ControlPacer::new(limit, window);
            let t0 = Instant::now();
            let mut now = t0;
            let mut starts: Vec<Instant> = Vec::new();
            for gap in gaps {
                now += Duration::from_millis(gap);
                let at = pacer.reserve(now);
                prop_assert!(at >= now);
                if let Some(&last) = starts.last() {
                    prop_assert!(at >= last);
                }
                starts.push(at);
                let in_window = starts
                    .iter()
                    .filter(|s| at.duration_since(**s) < window)
                    .count();
                prop_assert!(in_window <= limit, "{} starts within {:?}", in_window, window);
                if at > now {
                    let prev = starts[starts.len() - 2];
                    let freed = starts.len() > limit
                        && at == starts[starts.len() - 1 - limit] + window;
                    prop_assert!(at == prev || freed, "a request waited without cause");
                }
            }
        }
    }
}
