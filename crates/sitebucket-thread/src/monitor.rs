//! [`Monitor`]: the seed's `ListenThreadMonitor`, over any [`Driver`]. The planning (which
//! users go where) is a set of pure functions at the end of this file, tested on their own.

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
/// healthy. Every method takes `&self`, so a monitor can be shared between threads; dropping
/// it disconnects every stream.
///
/// It covers a follow list of any size with streams built from one [`Config`] template, each
/// run by its own [`ListenThread`]. It restarts streams that failed ([`check`](Monitor::check),
/// by hand or every [`CHECK_INTERVAL`] in the background), adds and removes users, merges
/// non-full streams ([`consolidate`](Monitor::consolidate)) and closes everything on
/// [`disconnect`](Monitor::disconnect).
///
/// Whenever a stream's follow list changes, the replacement stream is started **before** the
/// old one is closed, so no user is left uncovered; each user is in exactly one list.
///
/// ```no_run
/// use std::time::Duration;
/// use sitebucket_proto::{Config, Credentials};
/// use sitebucket_thread::{Driver, Monitor, SharedParser, CHECK_INTERVAL};
///
/// fn watch<D: Driver>(driver: D) -> Result<(), Box<dyn std::error::Error>> {
///     let credentials = Credentials::new("key", "secret", "token", "token secret");
///     // The template's own follow list is replaced by each stream's share.
///     let template = Config::builder([1], credentials).build()?;
///     let users: Vec<u64> = (1..=250).collect();
///     // One parser shared by every stream (or build one per stream in the closure).
///     let parser = SharedParser::new(|message: bytes::Bytes| println!("{} bytes", message.len()));
///     let monitor = Monitor::spawn(driver, template, &users, move || Box::new(parser.clone()))?;
///     assert_eq!(monitor.streams().len(), 3);
///     monitor.run_every(CHECK_INTERVAL);
///     monitor.add_follows(&[251, 252])?;
///     std::thread::sleep(Duration::from_secs(60));
///     monitor.disconnect();
///     Ok(())
/// }
/// ```
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

    /// Stops covering `users`. Each stream that followed some of them is replaced by a
    /// stream with the shorter list (started before the old one closes), or closed if
    /// none of its users is left. Returns how many streams were closed for good; see
    /// [`consolidate`](Self::consolidate) to merge the shrunk streams.
    pub fn remove_follows(&self, users: &[u64]) -> Result<usize, MonitorError> {
        let mut inner = lock(&self.inner);
        let plan = plan_remove(&inner.follow_lists(), users);
        for (index, follow) in plan.shrink {
            let listener = inner.start(&follow)?;
            let old = std::mem::replace(&mut inner.shards[index], Shard { follow, listener });
            close_all(vec![old.listener]);
        }
        let mut old = Vec::with_capacity(plan.close.len());
        // Highest index first, so the lower indices stay valid.
        for &index in plan.close.iter().rev() {
            old.push(inner.shards.remove(index).listener);
        }
        let closed = old.len();
        close_all(old);
        Ok(closed)
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

/// Which streams lose users.
#[derive(Debug, Default, PartialEq)]
struct RemovePlan {
    /// Streams (by index) to replace with these shorter, non-empty lists.
    shrink: Vec<(usize, Vec<u64>)>,
    /// Indices (ascending) of streams left with no user.
    close: Vec<usize>,
}

fn plan_remove(current: &[&[u64]], users: &[u64]) -> RemovePlan {
    let gone: BTreeSet<u64> = users.iter().copied().collect();
    let mut plan = RemovePlan::default();
    for (index, follow) in current.iter().enumerate() {
        if !follow.iter().any(|u| gone.contains(u)) {
            continue;
        }
        let kept: Vec<u64> = follow
            .iter()
            .copied()
            .filter(|u| !gone.contains(u))
            .collect();
        if kept.is_empty() {
            plan.close.push(index);
        } else {
            plan.shrink.push((index, kept));
        }
    }
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

    fn apply_remove(current: &[Vec<u64>], plan: RemovePlan) -> Vec<Vec<u64>> {
        let mut after: Vec<Option<Vec<u64>>> = current.iter().cloned().map(Some).collect();
        for (i, list) in plan.shrink {
            after[i] = Some(list);
        }
        for i in plan.close {
            after[i] = None;
        }
        after.into_iter().flatten().collect()
    }

    #[test]
    fn remove_shrinks_streams_and_closes_emptied_ones() {
        let current = vec![vec![1, 2, 3], vec![4, 5], vec![6]];
        let plan = plan_remove(&refs(&current), &[2, 4, 5, 99]);
        assert_eq!(plan.shrink, vec![(0, vec![1, 3])]);
        assert_eq!(plan.close, vec![1]);
        assert_eq!(plan_remove(&refs(&current), &[7]), RemovePlan::default());
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

            let removed: Vec<u64> = (0..lcg(&mut seed) % 30)
                .map(|_| lcg(&mut seed) % (next_id + 30))
                .collect();
            let after = apply_remove(&after, plan_remove(&refs(&after), &removed));
            let mut left: Vec<u64> = covered(&current);
            left.extend(users.iter().copied());
            left.sort_unstable();
            left.dedup();
            left.retain(|u| !removed.contains(u));
            assert_eq!(
                covered(&after),
                left,
                "round {round}: remove drops only those"
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

    // ----- the monitor itself, over a fake driver (no sockets) -----

    use crate::control::Control;
    use sitebucket_proto::stream::{Action, Outcome};
    use sitebucket_proto::Credentials;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    /// Logs `start <first>-<last user>` when a run is spawned and `stop <first>-<last>` when
    /// it ends on a stop (before `join` returns); its first `refuse` runs fail at once
    /// (the core is told the connect was refused, and the template allows one attempt).
    #[derive(Clone, Default)]
    struct FakeDriver {
        log: Arc<Mutex<Vec<String>>>,
        refuse: Arc<AtomicUsize>,
    }

    impl FakeDriver {
        fn log(&self) -> Vec<String> {
            lock(&self.log).clone()
        }
    }

    impl Driver for FakeDriver {
        fn name(&self) -> &'static str {
            "fake"
        }

        fn spawn(
            &self,
            mut stream: SiteStream,
            mut parser: Box<dyn Parser>,
            control: Arc<Control>,
        ) -> io::Result<crate::RunHandle> {
            // Logged here, not in the run's thread, so the log follows the monitor's order.
            lock(&self.log).push(format!("start {}", span(&stream)));
            let (tx, rx) = std::sync::mpsc::channel();
            let driver = self.clone();
            let thread = std::thread::spawn(move || {
                let outcome = driver.run(&mut stream, parser.as_mut(), &control);
                control.publish(&stream);
                let _ = tx.send(crate::Finished {
                    stream,
                    parser,
                    outcome,
                });
            });
            Ok(crate::RunHandle::new(rx, Some(thread)))
        }

        fn run(
            &self,
            stream: &mut SiteStream,
            _parser: &mut dyn Parser,
            control: &Arc<Control>,
        ) -> Outcome {
            let refuse = self
                .refuse
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if refuse {
                loop {
                    match stream.poll_action(Instant::now()) {
                        Action::Connect { .. } => stream.handle_connect_failed(
                            Instant::now(),
                            io::ErrorKind::ConnectionRefused,
                        ),
                        Action::Finished(outcome) => {
                            control.publish(stream);
                            return outcome;
                        }
                        _ => {}
                    }
                }
            }
            let woken = Arc::new((Mutex::new(()), Condvar::new()));
            let hook = woken.clone();
            control.set_waker(Arc::new(move || {
                let _guard = lock(&hook.0);
                hook.1.notify_all();
            }));
            let mut guard = lock(&woken.0);
            while !control.stop_requested() {
                guard = woken.1.wait(guard).unwrap_or_else(|p| p.into_inner());
            }
            drop(guard);
            control.clear_waker();
            stream.disconnect();
            lock(&self.log).push(format!("stop {}", span(stream)));
            Outcome::Stopped
        }
    }

    fn span(stream: &SiteStream) -> String {
        let follow = stream.config().follow();
        format!("{}-{}", follow[0], follow[follow.len() - 1])
    }

    fn fake_monitor(
        driver: &FakeDriver,
        users: impl IntoIterator<Item = u64>,
    ) -> Monitor<FakeDriver> {
        let credentials = Credentials::new("key", "secret", "token", "token secret");
        let template = Config::builder([1], credentials)
            .retry_limit(Some(1))
            .build()
            .expect("valid config");
        let users: Vec<u64> = users.into_iter().collect();
        Monitor::spawn(driver.clone(), template, &users, || {
            Box::new(|_message: Bytes| {})
        })
        .expect("spawn")
    }

    fn lists(monitor: &Monitor<FakeDriver>) -> Vec<Vec<u64>> {
        monitor.streams().into_iter().map(|s| s.follow).collect()
    }

    #[test]
    fn monitor_starts_replacements_before_closing_the_streams_they_replace() {
        let driver = FakeDriver::default();
        let monitor = fake_monitor(&driver, 1..=150);
        assert_eq!(
            lists(&monitor),
            vec![(1..=100).collect::<Vec<u64>>(), (101..=150).collect()]
        );

        // Remove users from both streams, then merge the two half streams.
        assert_eq!(
            monitor
                .remove_follows(&(1..=70).chain(121..=150).collect::<Vec<u64>>())
                .expect("remove"),
            0
        );
        assert_eq!(
            lists(&monitor),
            vec![(71..=100).collect::<Vec<u64>>(), (101..=120).collect()]
        );
        assert_eq!(monitor.consolidate().expect("consolidate"), 2);
        assert_eq!(lists(&monitor), vec![(71..=120).collect::<Vec<u64>>()]);
        assert_eq!(monitor.follows(), (71..=120).collect::<Vec<u64>>());

        // Growing the merged stream replaces it too.
        monitor.add_follows(&[500, 71]).expect("add");
        let mut grown: Vec<u64> = (71..=120).collect();
        grown.push(500);
        assert_eq!(lists(&monitor), vec![grown]);

        monitor.disconnect();
        assert!(monitor.streams().is_empty());
        let mut log = driver.log();
        // The merge closes its two streams together: their stops may come in either order.
        log[7..9].sort();
        assert_eq!(
            log,
            [
                "start 1-100",
                "start 101-150",
                // remove: each shrunk stream starts before the one it replaces stops
                "start 71-100",
                "stop 1-100",
                "start 101-120",
                "stop 101-150",
                // consolidate: the merged stream starts before both halves stop
                "start 71-120",
                "stop 101-120",
                "stop 71-100",
                // add: the grown stream, then the one it replaces stops
                "start 71-500",
                "stop 71-120",
                // disconnect
                "stop 71-500",
            ]
        );
    }

    #[test]
    fn check_restarts_failed_streams_and_the_background_check_stops_promptly() {
        let driver = FakeDriver {
            refuse: Arc::new(AtomicUsize::new(1)),
            ..FakeDriver::default()
        };
        let monitor = fake_monitor(&driver, 1..=150);
        let deadline = Instant::now() + Duration::from_secs(10);
        while monitor.streams().iter().all(|s| s.status.healthy) {
            assert!(Instant::now() < deadline, "the refused stream never failed");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(monitor.check().expect("check"), 1);
        assert!(monitor.streams().iter().all(|s| s.status.healthy));
        assert_eq!(monitor.check().expect("check"), 0);

        // Background checks: a second failure is repaired without a call to check().
        driver.refuse.store(1, Ordering::SeqCst);
        monitor
            .remove_follows(&[150])
            .expect("shrink, so a new run starts and fails");
        monitor.run_every(Duration::from_millis(5));
        let deadline = Instant::now() + Duration::from_secs(10);
        while driver.refuse.load(Ordering::SeqCst) > 0
            || !monitor
                .streams()
                .iter()
                .all(|s| s.status.healthy && s.status.running)
        {
            assert!(
                Instant::now() < deadline,
                "the background check never repaired it"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        monitor.run_every(Duration::from_secs(3600));
        let started = Instant::now();
        monitor.stop_checking();
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "stop_checking waited"
        );
        monitor.disconnect();
    }
}
