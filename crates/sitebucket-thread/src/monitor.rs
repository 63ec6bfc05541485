//! [`Monitor`]: the seed's `ListenThreadMonitor`, over any [`Driver`].
//!
//! A monitor covers a follow list of any size with streams of at most
//! [`FOLLOW_LIMIT`] users each, built from one [`Config`] template, each run by its own
//! [`ListenThread`]. It restarts streams that failed ([`check`](Monitor::check), by hand or
//! every [`CHECK_INTERVAL`] in the background), adds users, merges half-empty streams and
//! closes everything on [`disconnect`](Monitor::disconnect).
//!
//! Whenever a stream's follow list changes, the replacement stream is started **before** the
//! old one is closed, so no user is ever left uncovered; a user is never in two lists at once.
//! The planning (which users go where) is a set of pure functions, tested on their own.
//!
//! ```no_run
//! use std::time::Duration;
//! use sitebucket_proto::{Config, Credentials};
//! use sitebucket_thread::{Driver, Monitor, SharedParser, CHECK_INTERVAL};
//!
//! fn watch<D: Driver>(driver: D) -> Result<(), Box<dyn std::error::Error>> {
//!     let credentials = Credentials::new("key", "secret", "token", "token secret");
//!     // The template's own follow list is replaced by each stream's share.
//!     let template = Config::builder([1], credentials).build()?;
//!     let users: Vec<u64> = (1..=250).collect();
//!     // One parser shared by every stream (or build one per stream in the closure).
//!     let parser = SharedParser::new(|message: bytes::Bytes| println!("{} bytes", message.len()));
//!     let monitor = Monitor::spawn(driver, template, &users, move || Box::new(parser.clone()))?;
//!     assert_eq!(monitor.streams().len(), 3);
//!     monitor.run_every(CHECK_INTERVAL);
//!     monitor.add_follows(&[251, 252])?;
//!     std::thread::sleep(Duration::from_secs(60));
//!     monitor.disconnect();
//!     Ok(())
//! }
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use sitebucket_proto::config::FOLLOW_LIMIT;
use sitebucket_proto::{Config, ConfigError, Parser, SiteStream};

use crate::control::Status;
use crate::listen::{Driver, ListenThread};

/// The seed's interval between two health checks: 10 seconds.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Makes the parser of each new stream.
type ParserFactory = Arc<dyn Fn() -> Box<dyn Parser> + Send + Sync>;

/// Why the monitor could not start a stream.
#[derive(Debug)]
#[non_exhaustive]
pub enum MonitorError {
    /// The template with a stream's follow list is not a valid config.
    Config(ConfigError),
    /// The driver could not start the stream.
    Spawn(io::Error),
}

impl fmt::Display for MonitorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MonitorError::Config(e) => write!(f, "cannot configure a monitored stream: {e}"),
            MonitorError::Spawn(e) => write!(f, "cannot start a monitored stream: {e}"),
        }
    }
}

impl std::error::Error for MonitorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MonitorError::Config(e) => Some(e),
            MonitorError::Spawn(e) => Some(e),
        }
    }
}

/// One monitored stream, as [`Monitor::streams`] shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    /// The users it follows (sorted).
    pub follow: Vec<u64>,
    /// Its live status.
    pub status: Status,
}

/// One parser shared by several streams (behind a mutex): clone it into each stream.
pub struct SharedParser<P>(Arc<Mutex<P>>);

impl<P: Parser> SharedParser<P> {
    /// Shares `parser`.
    pub fn new(parser: P) -> Self {
        Self(Arc::new(Mutex::new(parser)))
    }

    /// The parser, locked (e.g. to read what it gathered).
    pub fn lock(&self) -> MutexGuard<'_, P> {
        // A parser that panicked mid-message is still the user's to inspect.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<P> Clone for SharedParser<P> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<P> fmt::Debug for SharedParser<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedParser").finish_non_exhaustive()
    }
}

impl<P: Parser> Parser for SharedParser<P> {
    fn parse(&mut self, message: Bytes) {
        self.lock().parse(message);
    }
}

/// The seed's `ListenThreadMonitor`: many streams, at most [`FOLLOW_LIMIT`] users each, kept
/// healthy. See the [module docs](self). Every method takes `&self`, so a monitor can be
/// shared between threads; dropping it disconnects every stream.
pub struct Monitor<D: Driver> {
    inner: Arc<Mutex<Inner<D>>>,
    checker: Mutex<Option<Checker>>,
}

struct Inner<D: Driver> {
    driver: D,
    template: Config,
    parsers: ParserFactory,
    shards: Vec<Shard<D>>,
    /// Streams started so far: salts each stream's nonce seed so no two share nonces.
    started: u64,
}

struct Shard<D: Driver> {
    follow: Vec<u64>,
    listener: ListenThread<D>,
}

struct Checker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The monitor's state stays consistent between statements; keep using it after a panic.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<D: Driver> fmt::Debug for Monitor<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field("streams", &self.streams())
            .field("checking", &lock(&self.checker).is_some())
            .finish_non_exhaustive()
    }
}

impl<D: Driver> Monitor<D> {
    /// A monitor with no stream yet. Each stream it starts is `template` with its own
    /// follow list (and nonce seed), and a parser from `parsers`.
    pub fn new(
        driver: D,
        template: Config,
        parsers: impl Fn() -> Box<dyn Parser> + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                driver,
                template,
                parsers: Arc::new(parsers),
                shards: Vec::new(),
                started: 0,
            })),
            checker: Mutex::new(None),
        }
    }

    /// A monitor covering `follow` (any size, duplicates ignored), started at once.
    pub fn spawn(
        driver: D,
        template: Config,
        follow: &[u64],
        parsers: impl Fn() -> Box<dyn Parser> + Send + Sync + 'static,
    ) -> Result<Self, MonitorError> {
        let monitor = Self::new(driver, template, parsers);
        monitor.add_follows(follow)?;
        Ok(monitor)
    }

    /// Covers more users. Users already covered are skipped; the rest first fill streams
    /// that have room (each is replaced by a stream with the longer list, started before the
    /// old one closes), then go into new streams.
    pub fn add_follows(&self, users: &[u64]) -> Result<(), MonitorError> {
        let mut inner = lock(&self.inner);
        let plan = plan_add(&inner.follow_lists(), users, FOLLOW_LIMIT);
        for (index, follow) in plan.grow {
            let listener = inner.start(&follow)?;
            let old = std::mem::replace(&mut inner.shards[index], Shard { follow, listener });
            close_all(vec![old.listener]);
        }
        for follow in plan.new {
            let listener = inner.start(&follow)?;
            inner.shards.push(Shard { follow, listener });
        }
        Ok(())
    }

    /// Merges streams that are not full into as few streams as their users need, when that
    /// saves a connection. The new streams start before the old ones close. Returns how many
    /// streams were closed.
    pub fn consolidate(&self) -> Result<usize, MonitorError> {
        let mut inner = lock(&self.inner);
        let Some(plan) = plan_consolidation(&inner.follow_lists(), FOLLOW_LIMIT) else {
            return Ok(0);
        };
        let mut started = Vec::with_capacity(plan.with.len());
        for follow in plan.with {
            match inner.start(&follow) {
                Ok(listener) => started.push(Shard { follow, listener }),
                Err(e) => {
                    // Nothing changes: the old streams still cover everyone.
                    close_all(started.into_iter().map(|s| s.listener).collect());
                    return Err(e);
                }
            }
        }
        let mut old = Vec::with_capacity(plan.replace.len());
        // Highest index first, so the lower indices stay valid.
        for &index in plan.replace.iter().rev() {
            old.push(inner.shards.remove(index).listener);
        }
        let closed = old.len();
        close_all(old);
        inner.shards.extend(started);
        Ok(closed)
    }

    /// Restarts every stream that is unhealthy or whose run ended with a failure (the
    /// seed's periodic check, which never fired there). Returns how many were restarted.
    pub fn check(&self) -> Result<usize, MonitorError> {
        lock(&self.inner).check()
    }

    /// Runs [`check`](Self::check) on a background thread every `interval` (the seed's is
    /// [`CHECK_INTERVAL`]), replacing any earlier schedule. Stopped by
    /// [`stop_checking`](Self::stop_checking), [`disconnect`](Self::disconnect) or drop, at
    /// once.
    pub fn run_every(&self, interval: Duration) {
        self.stop_checking();
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let inner = self.inner.clone();
        let thread_stop = stop.clone();
        let thread = std::thread::spawn(move || {
            let (stopped, wake) = &*thread_stop;
            loop {
                let guard = lock(stopped);
                let (guard, _) = wake
                    .wait_timeout_while(guard, interval, |stopped| !*stopped)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if *guard {
                    return;
                }
                drop(guard);
                // A stream that cannot be restarted now is tried again next time.
                let _ = lock(&inner).check();
            }
        });
        *lock(&self.checker) = Some(Checker { stop, thread });
    }

    /// Stops the background checks started by [`run_every`](Self::run_every).
    pub fn stop_checking(&self) {
        let checker = lock(&self.checker).take();
        if let Some(checker) = checker {
            let (stopped, wake) = &*checker.stop;
            *lock(stopped) = true;
            wake.notify_all();
            let _ = checker.thread.join();
        }
    }

    /// Stops the background checks, closes every stream and waits for them to end. The
    /// monitor is then empty; [`add_follows`](Self::add_follows) starts it again.
    pub fn disconnect(&self) {
        self.stop_checking();
        let shards = std::mem::take(&mut lock(&self.inner).shards);
        close_all(shards.into_iter().map(|s| s.listener).collect());
    }

    /// Every user covered, sorted.
    pub fn follows(&self) -> Vec<u64> {
        let inner = lock(&self.inner);
        let mut all: Vec<u64> = inner.shards.iter().flat_map(|s| s.follow.clone()).collect();
        all.sort_unstable();
        all
    }

    /// Each stream's follow list and live status.
    pub fn streams(&self) -> Vec<StreamInfo> {
        lock(&self.inner)
            .shards
            .iter()
            .map(|s| StreamInfo {
                follow: s.follow.clone(),
                status: s.listener.status(),
            })
            .collect()
    }
}

impl<D: Driver> Drop for Monitor<D> {
    fn drop(&mut self) {
        self.disconnect();
    }
}

impl<D: Driver> Inner<D> {
    fn follow_lists(&self) -> Vec<&[u64]> {
        self.shards.iter().map(|s| s.follow.as_slice()).collect()
    }

    /// Starts a stream following `follow`.
    fn start(&mut self, follow: &[u64]) -> Result<ListenThread<D>, MonitorError> {
        // A distinct, deterministic nonce seed per stream (golden-ratio increments).
        let seed = self
            .template
            .rng_seed()
            .wrapping_add(self.started.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let config = self
            .template
            .to_builder()
            .follow(follow.iter().copied())
            .rng_seed(seed)
            .build()
            .map_err(MonitorError::Config)?;
        self.started += 1;
        let parser = (self.parsers)();
        ListenThread::spawn(self.driver.clone(), SiteStream::new(config), parser)
            .map_err(MonitorError::Spawn)
    }

    fn check(&mut self) -> Result<usize, MonitorError> {
        let mut restarted = 0;
        for index in 0..self.shards.len() {
            let status = self.shards[index].listener.status();
            let failed = status.outcome.as_ref().is_some_and(|o| o.is_failure());
            if status.healthy && !failed {
                continue;
            }
            if self.shards[index].listener.restart().is_err() {
                // The run lost its stream (the driver panicked): start afresh.
                let follow = self.shards[index].follow.clone();
                self.shards[index].listener = self.start(&follow)?;
            }
            restarted += 1;
        }
        Ok(restarted)
    }
}

/// Asks every stream to stop, then waits for each: the closes overlap.
fn close_all<D: Driver>(listeners: Vec<ListenThread<D>>) {
    for listener in &listeners {
        listener.close();
    }
    for mut listener in listeners {
        listener.join();
    }
}

// ----- planning: pure functions of the follow lists -----

/// Sorted, duplicate-free lists of at most `limit` (at least 1) users covering `users`.
fn shard(users: &[u64], limit: usize) -> Vec<Vec<u64>> {
    let users: BTreeSet<u64> = users.iter().copied().collect();
    let users: Vec<u64> = users.into_iter().collect();
    users.chunks(limit.max(1)).map(<[u64]>::to_vec).collect()
}

/// Where new users go.
#[derive(Debug, Default, PartialEq)]
struct AddPlan {
    /// Existing streams (by index) to replace with these longer lists.
    grow: Vec<(usize, Vec<u64>)>,
    /// New streams' lists.
    new: Vec<Vec<u64>>,
}

fn plan_add(current: &[&[u64]], users: &[u64], limit: usize) -> AddPlan {
    let limit = limit.max(1);
    let covered: BTreeSet<u64> = current.iter().flat_map(|s| s.iter().copied()).collect();
    let fresh: BTreeSet<u64> = users
        .iter()
        .copied()
        .filter(|u| !covered.contains(u))
        .collect();
    let mut fresh = fresh.into_iter().peekable();
    let mut plan = AddPlan::default();
    for (index, follow) in current.iter().enumerate() {
        if follow.len() >= limit || fresh.peek().is_none() {
            continue;
        }
        let room = limit - follow.len();
        let mut grown: Vec<u64> = follow.to_vec();
        grown.extend(fresh.by_ref().take(room));
        grown.sort_unstable();
        plan.grow.push((index, grown));
    }
    let rest: Vec<u64> = fresh.collect();
    plan.new = shard(&rest, limit);
    plan
}

/// Which non-full streams to replace, and with what.
#[derive(Debug, PartialEq)]
struct Consolidation {
    /// Indices (ascending) of the streams to close.
    replace: Vec<usize>,
    /// The lists of the streams that take over their users.
    with: Vec<Vec<u64>>,
}

fn plan_consolidation(current: &[&[u64]], limit: usize) -> Option<Consolidation> {
    let limit = limit.max(1);
    let replace: Vec<usize> = (0..current.len())
        .filter(|&i| current[i].len() < limit)
        .collect();
    let users: Vec<u64> = replace
        .iter()
        .flat_map(|&i| current[i].iter().copied())
        .collect();
    let with = shard(&users, limit);
    (with.len() < replace.len()).then_some(Consolidation { replace, with })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covered(lists: &[Vec<u64>]) -> Vec<u64> {
        let mut all: Vec<u64> = lists.iter().flatten().copied().collect();
        all.sort_unstable();
        all
    }

    fn refs(lists: &[Vec<u64>]) -> Vec<&[u64]> {
        lists.iter().map(Vec::as_slice).collect()
    }

    /// Applies a plan the way the monitor does.
    fn apply_add(current: &[Vec<u64>], plan: AddPlan) -> Vec<Vec<u64>> {
        let mut after = current.to_vec();
        for (i, list) in plan.grow {
            after[i] = list;
        }
        after.extend(plan.new);
        after
    }

    fn apply_consolidation(current: &[Vec<u64>], plan: Consolidation) -> Vec<Vec<u64>> {
        let mut after: Vec<Vec<u64>> = current
            .iter()
            .enumerate()
            .filter(|(i, _)| !plan.replace.contains(i))
            .map(|(_, l)| l.clone())
            .collect();
        after.extend(plan.with);
        after
    }

    #[test]
    fn shard_splits_into_sorted_full_lists_and_a_remainder() {
        let users: Vec<u64> = (1..=250).rev().collect();
        let shards = shard(&users, 100);
        assert_eq!(shards.len(), 3);
        assert_eq!(shards[0], (1..=100).collect::<Vec<_>>());
        assert_eq!(shards[1], (101..=200).collect::<Vec<_>>());
        assert_eq!(shards[2], (201..=250).collect::<Vec<_>>());
    }

    #[test]
    fn shard_drops_duplicates_and_handles_empty_and_exact() {
        assert_eq!(shard(&[5, 5, 3, 3, 3], 100), vec![vec![3, 5]]);
        assert!(shard(&[], 100).is_empty());
        assert_eq!(shard(&(0..200).collect::<Vec<_>>(), 100).len(), 2);
    }

    #[test]
    fn add_fills_non_full_streams_first_then_opens_new_ones() {
        let current = vec![(1..=100).collect::<Vec<u64>>(), (101..=150).collect()];
        let users: Vec<u64> = (151..=270).collect();
        let plan = plan_add(&refs(&current), &users, 100);
        assert_eq!(plan.grow, vec![(1, (101..=200).collect::<Vec<u64>>())]);
        assert_eq!(plan.new, vec![(201..=270).collect::<Vec<u64>>()]);
    }

    #[test]
    fn add_skips_users_already_covered_and_duplicates() {
        let current = vec![vec![1, 2, 3]];
        let plan = plan_add(&refs(&current), &[3, 2, 4, 4, 9], 100);
        assert_eq!(plan.grow, vec![(0, vec![1, 2, 3, 4, 9])]);
        assert!(plan.new.is_empty());
        assert_eq!(plan_add(&refs(&current), &[1, 2], 100), AddPlan::default());
    }

    #[test]
    fn add_to_an_empty_monitor_shards_everything() {
        let users: Vec<u64> = (0..1001).collect();
        let plan = plan_add(&[], &users, 100);
        assert!(plan.grow.is_empty());
        assert_eq!(plan.new.len(), 11);
        assert_eq!(covered(&plan.new), users);
    }

    #[test]
    fn consolidation_merges_non_full_streams_and_keeps_full_ones() {
        let current = vec![
            (1..=100).collect::<Vec<u64>>(),
            (101..=160).collect(),
            (161..=200).collect(),
            (201..=230).collect(),
        ];
        let plan = plan_consolidation(&refs(&current), 100).expect("three half streams merge");
        assert_eq!(plan.replace, vec![1, 2, 3]);
        assert_eq!(
            plan.with,
            vec![(101..=200).collect::<Vec<u64>>(), (201..=230).collect()]
        );
    }

    #[test]
    fn consolidation_does_nothing_when_it_saves_no_stream() {
        let full: Vec<u64> = (1..=100).collect();
        assert_eq!(plan_consolidation(&[full.as_slice()], 100), None);
        assert_eq!(plan_consolidation(&refs(&[full, vec![200]]), 100), None);
        let halves = vec![(1..=60).collect::<Vec<u64>>(), (61..=120).collect()];
        assert_eq!(plan_consolidation(&refs(&halves), 100), None);
        assert_eq!(plan_consolidation(&[], 100), None);
    }

    /// A small deterministic generator for the property checks below.
    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *state >> 33
    }

    #[test]
    fn every_plan_covers_each_user_exactly_once_within_the_limit() {
        let mut seed = 42;
        for round in 0..500 {
            let limit = 1 + (lcg(&mut seed) % 12) as usize;
            // A random current state: disjoint lists of 1..=limit users.
            let mut next_id = 0u64;
            let mut current = Vec::new();
            for _ in 0..lcg(&mut seed) % 6 {
                let len = 1 + lcg(&mut seed) % limit as u64;
                current.push((next_id..next_id + len).collect::<Vec<u64>>());
                next_id += len + lcg(&mut seed) % 3;
            }
            let users: Vec<u64> = (0..lcg(&mut seed) % 40)
                .map(|_| lcg(&mut seed) % (next_id + 30))
                .collect();

            let before = covered(&current);
            let plan = plan_add(&refs(&current), &users, limit);
            if !plan.new.is_empty() {
                for (i, list) in current.iter().enumerate().filter(|(_, l)| l.len() < limit) {
                    let grown = plan.grow.iter().find(|(g, _)| *g == i);
                    assert!(
                        grown.is_some_and(|(_, l)| l.len() == limit),
                        "round {round}: stream {i} ({list:?}) is filled before a new one opens"
                    );
                }
            }
            let after = apply_add(&current, plan);
            let mut expected: BTreeSet<u64> = before.iter().copied().collect();
            expected.extend(users.iter().copied());
            assert_eq!(
                covered(&after),
                expected.into_iter().collect::<Vec<_>>(),
                "round {round}: add covers old and new users once each"
            );
            assert!(after.iter().all(|l| !l.is_empty() && l.len() <= limit));

            if let Some(plan) = plan_consolidation(&refs(&after), limit) {
                let merged = apply_consolidation(&after, plan);
                assert_eq!(covered(&merged), covered(&after), "round {round}: no loss");
                assert!(merged.len() < after.len(), "round {round}: saves a stream");
                assert!(merged.iter().all(|l| !l.is_empty() && l.len() <= limit));
                assert!(
                    merged.iter().filter(|l| l.len() < limit).count() <= 1,
                    "round {round}: at most one non-full stream is left"
                );
            }
        }
    }
}
