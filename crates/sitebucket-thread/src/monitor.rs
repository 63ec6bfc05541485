//! [`Monitor`]: the seed's `ListenThreadMonitor`, over any [`Driver`]. The planning (which
//! users go where) is a set of pure functions at the end of this file, tested on their own.
//!
//! The monitor restarts a stream that gave up with [`ListenThread::resume`], never with
//! [`ListenThread::restart`]: the restarted stream keeps its backoff history, so a server
//! that keeps failing is not retried faster because the stream reached its retry limit.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sitebucket_proto::control::{ControlError, MAX_USERS_PER_STREAM};
use sitebucket_proto::Outcome;
use sitebucket_proto::FOLLOW_LIMIT;
use sitebucket_proto::{Config, ConfigError, Parser, SiteStream};

use crate::control::{Control, Observer, Status};
use crate::follows::SharedPacer;
use crate::listen::{Driver, ListenThread};

/// The seed's interval between two health checks: 10 seconds.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Makes the parser of each new stream.
type ParserFactory = Arc<dyn Fn() -> Box<dyn Parser> + Send + Sync>;

/// Makes the observer of each new stream, given its number (see [`Monitor::set_observers`]).
type ObserverFactory = Arc<dyn Fn(u64) -> Arc<dyn Observer> + Send + Sync>;

/// Why the monitor could not do what it was asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum MonitorError {
    /// The template with a stream's follow list is not a valid config.
    Config(ConfigError),
    /// The driver could not start the stream.
    Spawn(io::Error),
    /// A control request failed and no other way was left (the users stay where they were).
    Control(ControlError),
}

impl fmt::Display for MonitorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MonitorError::Config(e) => write!(f, "cannot configure a monitored stream: {e}"),
            MonitorError::Spawn(e) => write!(f, "cannot start a monitored stream: {e}"),
            MonitorError::Control(e) => write!(f, "cannot change a monitored stream: {e}"),
        }
    }
}

impl std::error::Error for MonitorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MonitorError::Config(e) => Some(e),
            MonitorError::Spawn(e) => Some(e),
            MonitorError::Control(e) => Some(e),
        }
    }
}

/// A monitored stream that ended in a way retrying cannot fix, as [`Monitor::failed`] shows
/// it: the monitor no longer runs it, and its users are no longer covered.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FailedStream {
    /// The users it followed (sorted): its `follow` list and the users moved onto it through
    /// its control stream.
    pub follows: Vec<u64>,
    /// How it ended: [`Outcome::Fatal`] (a status such as 401 or 403) or
    /// [`Outcome::Revoked`] (a `disconnect` message with code 6 or 7).
    pub outcome: Outcome,
}

impl FailedStream {
    /// Whether a stream that ended with `outcome` is set aside rather than restarted:
    /// [`Outcome::Fatal`] and [`Outcome::Revoked`], which no retry can fix.
    pub fn is_final(outcome: &Outcome) -> bool {
        matches!(outcome, Outcome::Fatal { .. } | Outcome::Revoked { .. })
    }
}

/// Called once with each stream the monitor sets aside (see [`Monitor::set_failed_hook`]).
pub type FailedStreamHook = Arc<dyn Fn(&FailedStream) + Send + Sync>;

/// One monitored stream, as [`Monitor::streams`] shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    /// The users it follows (sorted): its `follow` list and the users moved onto it through
    /// its control stream.
    pub follow: Vec<u64>,
    /// Its live status (its control stream id included).
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

/// The seed's `ListenThreadMonitor`: many streams kept healthy, covering a follow list of
/// any size. Every method takes `&self`, so a monitor can be shared between threads;
/// dropping it disconnects every stream.
///
/// Streams are built from one [`Config`] template, each run by its own [`ListenThread`],
/// and start with at most [`FOLLOW_LIMIT`] users in their `follow` list. Once a stream has
/// announced its control stream, the monitor grows it through control requests instead of
/// opening connections: up to [`MAX_USERS_PER_STREAM`] users each, paced under Twitter's
/// rate by one pacer shared by all its streams.
///
/// - [`add_follows`](Monitor::add_follows) fills announced streams through control first,
///   then grows streams not yet announced by replacing them, then opens new streams.
/// - [`remove_follows`](Monitor::remove_follows) removes through control, or replaces.
/// - [`consolidate`](Monitor::consolidate) empties the least-full streams into announced
///   ones with room (added to the target first, the source closed after), then merges
///   what is left by replacement.
/// - [`check`](Monitor::check) (by hand, or every [`CHECK_INTERVAL`] in the background with
///   [`run_every`](Monitor::run_every)) restarts failed streams and re-applies control
///   changes to connections that lost them in a reconnect. A stream that gave up (its
///   `retry_limit` reached) is restarted with [`ListenThread::resume`], keeping its backoff
///   history: its failure count starts over, but its first attempt waits the next delay it
///   had earned, so the monitor never turns giving up into a burst of reconnects. With `run_every`, a stream that
///   announces a new control stream wakes the checker at once for that.
/// - A stream that ended in a way no retry can fix — a status such as 401, 403 or 404
///   ([`Outcome::Fatal`]), or a `disconnect` message with code 6 or 7
///   ([`Outcome::Revoked`]) — is never restarted, nor replaced by a change: it is set
///   aside, with its users and the reason, in [`failed`](Monitor::failed) (and handed to
///   the [`set_failed_hook`](Monitor::set_failed_hook) hook) at once with `run_every`, or
///   else by the next `check` or change.
///
/// No user is ever left uncovered by a change: a replacement starts **before** the stream it
/// replaces closes, and a move adds users to their new stream before the old one lets them
/// go. Each user is in exactly one stream's list (a failed move may briefly leave a user on
/// two; [`follows`](Monitor::follows) lists each user once).
///
/// Changes are serialized: each plans on the current streams, so one waits for another (and
/// for the background checker). [`follows`](Monitor::follows) and
/// [`streams`](Monitor::streams) never wait for them: they read a view the monitor
/// republishes after every completed step — each control request, each stream started,
/// replaced or closed — so during a change they show the state as of its last completed
/// step (never more than one control request behind). Each stream's status in
/// [`streams`](Monitor::streams) is still read live, at call time.
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
///     std::thread::sleep(Duration::from_secs(5));
///     // Announced streams take new users through control, without reconnecting…
///     monitor.add_follows(&[251, 252])?;
///     // …and the three streams fit in one connection.
///     monitor.consolidate()?;
///     std::thread::sleep(Duration::from_secs(60));
///     monitor.disconnect();
///     Ok(())
/// }
/// ```
pub struct Monitor<D: Driver> {
    /// The streams; held by every change for its whole length (changes are serialized).
    inner: Arc<Mutex<Inner<D>>>,
    /// The streams set aside for good, oldest first; shared with [`Inner`].
    failed: Arc<Mutex<Vec<FailedStream>>>,
    /// What readers see; held only to copy it in or out, never across a request.
    view: Arc<View>,
    signal: Arc<Signal>,
    checker: Mutex<Option<JoinHandle<()>>>,
}

/// The streams as of the last completed step of a change, republished by [`Inner`] (under
/// its lock) and read by [`Monitor::follows`] and [`Monitor::streams`] without it.
#[derive(Default)]
struct View(Mutex<Vec<ShardView>>);

/// One stream in the [`View`]: its follow list, and its run's [`Control`] to read the live
/// status from.
struct ShardView {
    follow: Vec<u64>,
    control: Arc<Control>,
}

impl View {
    /// Replaces the follow list of stream `index` (after a control request on it).
    fn set_follow(&self, index: usize, follow: Vec<u64>) {
        if let Some(shard) = lock(&self.0).get_mut(index) {
            shard.follow = follow;
        }
    }
}

struct Inner<D: Driver> {
    driver: D,
    template: Config,
    parsers: ParserFactory,
    observers: Option<ObserverFactory>,
    shards: Vec<ListenThread<D>>,
    /// Streams started so far: salts each stream's nonce seed so no two share nonces.
    started: u64,
    /// One pacer for every stream's control requests.
    pacer: SharedPacer,
    signal: Arc<Signal>,
    /// Republished after every change to `shards` or to a stream's follow list.
    view: Arc<View>,
    /// The streams set aside for good (see [`FailedStream`]).
    failed: Arc<Mutex<Vec<FailedStream>>>,
    /// Told of each stream set aside.
    failed_hook: Option<FailedStreamHook>,
}

/// Wakes the background checker: to stop, or because a stream announced a new control
/// stream.
#[derive(Default)]
struct Signal {
    state: Mutex<SignalState>,
    wake: Condvar,
}

#[derive(Default)]
struct SignalState {
    stopped: bool,
    announced: bool,
    /// A run finished: the checker sets it aside at once if it cannot be retried.
    finished: bool,
}

impl Signal {
    fn notify(&self, change: impl FnOnce(&mut SignalState)) {
        change(&mut lock(&self.state));
        self.wake.notify_all();
    }
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
        let signal = Arc::new(Signal::default());
        let view = Arc::new(View::default());
        let failed = Arc::new(Mutex::new(Vec::new()));
        Self {
            inner: Arc::new(Mutex::new(Inner {
                driver,
                template,
                parsers: Arc::new(parsers),
                observers: None,
                shards: Vec::new(),
                started: 0,
                pacer: SharedPacer::default(),
                signal: signal.clone(),
                view: view.clone(),
                failed: failed.clone(),
                failed_hook: None,
            })),
            failed,
            view,
            signal,
            checker: Mutex::new(None),
        }
    }

    /// Gives every stream started from now on an observer of its own (events and drains,
    /// see [`Observer`]), made by `observers` from the stream's number: 1 for the first
    /// stream this monitor started, 2 for the next, and so on. A stream keeps its number
    /// (and observer) across restarts; a stream that replaces another gets a new one. Use it
    /// to tell the streams apart in logs (`stream 3: …`).
    pub fn set_observers(
        &self,
        observers: impl Fn(u64) -> Arc<dyn Observer> + Send + Sync + 'static,
    ) {
        lock(&self.inner).observers = Some(Arc::new(observers));
    }

    /// Calls `hook` once with each stream the monitor sets aside for good (see
    /// [`failed`](Self::failed)), on the thread that does it: the background checker, or the
    /// caller of [`check`](Self::check). Use it to log the users who are no longer streamed
    /// and why. It must not call back into the monitor.
    pub fn set_failed_hook(&self, hook: impl Fn(&FailedStream) + Send + Sync + 'static) {
        lock(&self.inner).failed_hook = Some(Arc::new(hook));
    }

    /// The streams set aside because retrying cannot fix how they ended (a status such as
    /// 401 or 403, or a `disconnect` message with code 6 or 7), oldest first, with their
    /// users and the reason. Their users are not in [`follows`](Self::follows) any more.
    /// [`add_follows`](Self::add_follows) with them is a deliberate retry: they leave this
    /// list and go onto a stream again; [`remove_follows`](Self::remove_follows) takes them
    /// off this list too.
    ///
    /// Never waits for a change in progress.
    pub fn failed(&self) -> Vec<FailedStream> {
        lock(&self.failed).clone()
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

    /// Covers more users. Users already covered are skipped. The rest go, in order: to
    /// streams that announced a control stream and have room (up to
    /// [`MAX_USERS_PER_STREAM`]), through control requests, without reconnecting; then to
    /// streams not announced yet with fewer than [`FOLLOW_LIMIT`] users, each replaced by a
    /// stream with the longer list (started before the old one closes); then to new streams.
    /// A control request that fails only sends its users down that list.
    pub fn add_follows(&self, users: &[u64]) -> Result<(), MonitorError> {
        let mut inner = lock(&self.inner);
        // A stream refused for good must not be grown (restarted) by a replacement.
        inner.set_aside_final();
        let covered: BTreeSet<u64> = inner.shards.iter().flat_map(|s| s.follows()).collect();
        let mut fresh: Vec<u64> = users
            .iter()
            .copied()
            .filter(|u| !covered.contains(u))
            .collect::<BTreeSet<u64>>()
            .into_iter()
            .collect();
        // Users of a stream set aside for good are tried again: they leave that list.
        forget_failed(&self.failed, &fresh.iter().copied().collect());
        for index in 0..inner.shards.len() {
            if fresh.is_empty() {
                break;
            }
            let shard = &inner.shards[index];
            let room = MAX_USERS_PER_STREAM.saturating_sub(shard.follows().len());
            if room == 0 || shard.stream_id().is_none() {
                continue;
            }
            let take = room.min(fresh.len());
            // On failure the users not added try the next stream, then the other ways.
            if inner.add_users(index, &fresh[..take]).is_ok() {
                fresh.drain(..take);
            } else {
                let now: BTreeSet<u64> = inner.shards[index].follows().into_iter().collect();
                fresh.retain(|u| !now.contains(u));
            }
        }
        let plan = plan_add(&slices(&inner.follow_lists()), &fresh, FOLLOW_LIMIT);
        for (index, follow) in plan.grow {
            let listener = inner.start(&follow)?;
            let old = std::mem::replace(&mut inner.shards[index], listener);
            inner.publish();
            close_all(vec![old]);
        }
        for follow in plan.new {
            let listener = inner.start(&follow)?;
            inner.shards.push(listener);
            inner.publish();
        }
        Ok(())
    }

    /// Stops covering `users`. A stream left with none of its users is closed. Otherwise an
    /// announced stream lets them go through control requests; a stream that cannot (not
    /// announced, or the request failed) is replaced by a stream with the shorter list,
    /// started before the old one closes, when that list fits in a `follow` list. Returns
    /// how many streams were closed for good, or the first control error for a stream that
    /// could do neither (the other streams are changed all the same); see
    /// [`consolidate`](Self::consolidate) to merge the shrunk streams.
    pub fn remove_follows(&self, users: &[u64]) -> Result<usize, MonitorError> {
        let mut inner = lock(&self.inner);
        let gone: BTreeSet<u64> = users.iter().copied().collect();
        // A refused stream that loses users must not be shrunk (restarted) by a
        // replacement: it is set aside with the users that stay, or closed if none stays.
        // (Other refused streams are left to the next check: a caller retiring them one by
        // one hears of each once.)
        inner.set_aside_final_in(|follows| follows.iter().any(|u| gone.contains(u)), &gone);
        let plan = plan_remove(&slices(&inner.follow_lists()), users);
        forget_failed(&self.failed, &gone);
        let mut failed = None;
        for (index, follow) in plan.shrink {
            let shard = &inner.shards[index];
            let leaving: Vec<u64> = shard
                .follows()
                .into_iter()
                .filter(|u| gone.contains(u))
                .collect();
            let by_control = match shard.stream_id() {
                Some(_) => inner.remove_users(index, &leaving),
                None => Err(ControlError::NotAnnounced),
            };
            match by_control {
                Ok(()) => {}
                Err(_) if follow.len() <= FOLLOW_LIMIT => {
                    let listener = inner.start(&follow)?;
                    let old = std::mem::replace(&mut inner.shards[index], listener);
                    inner.publish();
                    close_all(vec![old]);
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        let mut old = Vec::with_capacity(plan.close.len());
        // Highest index first, so the lower indices stay valid.
        for &index in plan.close.iter().rev() {
            old.push(inner.shards.remove(index));
        }
        inner.publish();
        let closed = old.len();
        close_all(old);
        match failed {
            Some(e) => Err(MonitorError::Control(e)),
            None => Ok(closed),
        }
    }

    /// Saves connections. First, through control, the least-full streams are emptied into
    /// announced streams with room (up to [`MAX_USERS_PER_STREAM`] each): every user is
    /// added to its new stream before the old stream closes. Then streams not announced
    /// with fewer than [`FOLLOW_LIMIT`] users are merged by replacement (the new streams
    /// start before the old ones close). Returns how many streams were closed.
    ///
    /// If a move fails part way, the users already added to other streams are taken off
    /// them again, the stream they came from stays open, and the error is returned.
    pub fn consolidate(&self) -> Result<usize, MonitorError> {
        let mut inner = lock(&self.inner);
        // A stream refused for good must not be merged (restarted) by a replacement.
        inner.set_aside_final();
        let mut closed = 0;

        let lists = inner.follow_lists();
        let announced: Vec<bool> = inner
            .shards
            .iter()
            .map(|s| s.stream_id().is_some())
            .collect();
        let moves = plan_moves(&lists, &announced, MAX_USERS_PER_STREAM);
        let mut emptied = Vec::new();
        let mut failed = None;
        for step in moves {
            let mut done: Vec<(usize, &[u64])> = Vec::new();
            for (target, users) in &step.to {
                match inner.add_users(*target, users) {
                    Ok(()) => done.push((*target, users)),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if failed.is_none() {
                emptied.push(step.from);
                continue;
            }
            // Undo, so each user stays on one stream: the source still has them all.
            for (target, users) in done {
                let _ = inner.remove_users(target, users);
            }
            break;
        }
        emptied.sort_unstable();
        let mut old = Vec::with_capacity(emptied.len());
        for &index in emptied.iter().rev() {
            old.push(inner.shards.remove(index));
        }
        inner.publish();
        closed += old.len();
        close_all(old);
        if let Some(e) = failed {
            return Err(MonitorError::Control(e));
        }

        // What is left, among streams without a control stream: merge by replacement.
        let candidates: Vec<usize> = (0..inner.shards.len())
            .filter(|&i| inner.shards[i].stream_id().is_none())
            .collect();
        let lists = inner.follow_lists();
        let candidate_lists: Vec<&[u64]> =
            candidates.iter().map(|&i| lists[i].as_slice()).collect();
        let Some(plan) = plan_consolidation(&candidate_lists, FOLLOW_LIMIT) else {
            return Ok(closed);
        };
        let mut started = Vec::with_capacity(plan.with.len());
        for follow in plan.with {
            match inner.start(&follow) {
                Ok(listener) => started.push(listener),
                Err(e) => {
                    // Nothing changes: the old streams still cover everyone.
                    close_all(started);
                    return Err(e);
                }
            }
        }
        let mut replaced: Vec<usize> = plan.replace.iter().map(|&i| candidates[i]).collect();
        replaced.sort_unstable();
        let mut old = Vec::with_capacity(replaced.len());
        // Highest index first, so the lower indices stay valid.
        for &index in replaced.iter().rev() {
            old.push(inner.shards.remove(index));
        }
        // The new streams are in the view before the old ones close, as they started first.
        inner.shards.extend(started);
        inner.publish();
        closed += old.len();
        close_all(old);
        Ok(closed)
    }

    /// Sets aside every stream that ended in a way retrying cannot fix (see
    /// [`failed`](Self::failed)), restarts every other stream that is unhealthy or whose run
    /// ended with a failure (the seed's periodic check, which never fired there), and
    /// re-applies control changes to connections that lost them in a reconnect. Returns how
    /// many streams were restarted.
    ///
    /// A stream that gave up is restarted with [`ListenThread::resume`]: it keeps its backoff
    /// history, and its first new attempt comes no earlier than the next delay of its last
    /// failure's kind (not at once, as [`ListenThread::restart`] would).
    pub fn check(&self) -> Result<usize, MonitorError> {
        let mut inner = lock(&self.inner);
        let restarted = inner.check()?;
        inner.sync_all();
        Ok(restarted)
    }

    /// Runs [`check`](Self::check) on a background thread every `interval` (the seed's is
    /// [`CHECK_INTERVAL`]), replacing any earlier schedule; in between, re-applies control
    /// changes as soon as a stream announces a new control stream. Stopped by
    /// [`stop_checking`](Self::stop_checking), [`disconnect`](Self::disconnect) or drop, at
    /// once.
    pub fn run_every(&self, interval: Duration) {
        self.stop_checking();
        self.signal.notify(|s| s.stopped = false);
        let inner = self.inner.clone();
        let signal = self.signal.clone();
        let thread = std::thread::spawn(move || {
            let mut next_check = Instant::now() + interval;
            loop {
                let guard = lock(&signal.state);
                let wait = next_check.saturating_duration_since(Instant::now());
                let (mut guard, _) = signal
                    .wake
                    .wait_timeout_while(guard, wait, |s| !s.stopped && !s.announced && !s.finished)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if guard.stopped {
                    return;
                }
                let announced = std::mem::take(&mut guard.announced);
                let finished = std::mem::take(&mut guard.finished);
                drop(guard);
                if finished {
                    // Set aside at once, not at the next check: their users are reported
                    // promptly, and nothing restarts them in between.
                    lock(&inner).set_aside_final();
                }
                if Instant::now() >= next_check {
                    next_check = Instant::now() + interval;
                    // A stream that cannot be restarted now is tried again next time.
                    let mut inner = lock(&inner);
                    let _ = inner.check();
                    inner.sync_all();
                } else if announced {
                    lock(&inner).sync_all();
                }
            }
        });
        *lock(&self.checker) = Some(thread);
    }

    /// Stops the background checks started by [`run_every`](Self::run_every).
    pub fn stop_checking(&self) {
        let checker = lock(&self.checker).take();
        if let Some(thread) = checker {
            self.signal.notify(|s| s.stopped = true);
            let _ = thread.join();
        }
    }

    /// Stops the background checks, closes every stream and waits for them to end. The
    /// monitor is then empty; [`add_follows`](Self::add_follows) starts it again.
    pub fn disconnect(&self) {
        self.stop_checking();
        let shards = {
            let mut inner = lock(&self.inner);
            let shards = std::mem::take(&mut inner.shards);
            inner.publish();
            shards
        };
        close_all(shards);
    }

    /// Every user covered, sorted, each once.
    ///
    /// Never waits for a change in progress: during one, the users covered as of its last
    /// completed step (see [`Monitor`]).
    pub fn follows(&self) -> Vec<u64> {
        let all: BTreeSet<u64> = lock(&self.view.0)
            .iter()
            .flat_map(|s| s.follow.iter().copied())
            .collect();
        all.into_iter().collect()
    }

    /// Each stream's follow list and live status.
    ///
    /// Never waits for a change in progress: the streams and follow lists are those as of
    /// its last completed step (see [`Monitor`]); each status is read now.
    pub fn streams(&self) -> Vec<StreamInfo> {
        let shards: Vec<(Vec<u64>, Arc<Control>)> = lock(&self.view.0)
            .iter()
            .map(|s| (s.follow.clone(), s.control.clone()))
            .collect();
        // Statuses are read after the view's lock is released.
        shards
            .into_iter()
            .map(|(follow, control)| StreamInfo {
                follow,
                status: control.status(),
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
    fn follow_lists(&self) -> Vec<Vec<u64>> {
        self.shards.iter().map(ListenThread::follows).collect()
    }

    /// Republishes the whole view: after a stream is started, replaced, restarted or closed.
    fn publish(&self) {
        let view: Vec<ShardView> = self
            .shards
            .iter()
            .map(|s| ShardView {
                follow: s.follows(),
                control: s.control().clone(),
            })
            .collect();
        *lock(&self.view.0) = view;
    }

    /// Adds `users` to stream `index` through control, republishing its follow list after
    /// each request.
    fn add_users(&mut self, index: usize, users: &[u64]) -> Result<(), ControlError> {
        let view = &self.view;
        self.shards[index].add_users_each(users, |s| view.set_follow(index, s.follows()))
    }

    /// Removes `users` from stream `index` through control, like [`add_users`](Self::add_users).
    fn remove_users(&mut self, index: usize, users: &[u64]) -> Result<(), ControlError> {
        let view = &self.view;
        self.shards[index].remove_users_each(users, |s| view.set_follow(index, s.follows()))
    }

    /// Starts a stream following `follow` (at most [`FOLLOW_LIMIT`] users: its `follow`
    /// list), with the shared pacer and the announce hook that wakes the checker.
    fn start(&mut self, follow: &[u64]) -> Result<ListenThread<D>, MonitorError> {
        // A distinct, deterministic nonce seed per stream (golden-ratio increments) when the
        // template sets one; without one, each stream draws its own from the OS.
        let seed = self
            .template
            .rng_seed()
            .map(|seed| seed.wrapping_add(self.started.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        let config = self
            .template
            .to_builder()
            .follow(follow.iter().copied())
            .rng_seed(seed)
            .build()
            .map_err(MonitorError::Config)?;
        self.started += 1;
        let parser = (self.parsers)();
        let mut listener = ListenThread::new(self.driver.clone(), SiteStream::new(config), parser);
        if let Some(observers) = &self.observers {
            listener.set_observer(observers(self.started));
        }
        listener.set_control_pacer(self.pacer.clone());
        let signal = self.signal.clone();
        listener.set_announce_hook(Arc::new(move |_id: &str| {
            signal.notify(|s| s.announced = true);
        }));
        let signal = self.signal.clone();
        listener.set_finish_hook(Arc::new(move |outcome: &Outcome| {
            if FailedStream::is_final(outcome) {
                signal.notify(|s| s.finished = true);
            }
        }));
        listener.start().map_err(MonitorError::Spawn)?;
        Ok(listener)
    }

    /// Takes every stream that ended in a way retrying cannot fix out of `shards` and into
    /// `failed`, telling the hook of each.
    fn set_aside_final(&mut self) {
        self.set_aside_final_in(|_| true, &BTreeSet::new());
    }

    /// [`set_aside_final`](Self::set_aside_final) for the streams whose users `pick`s, and
    /// leaving `leaving` out: a stream none of whose users stays is only closed (they are
    /// being removed), not reported.
    fn set_aside_final_in(&mut self, pick: impl Fn(&[u64]) -> bool, leaving: &BTreeSet<u64>) {
        let mut index = 0;
        let mut set_aside = Vec::new();
        while index < self.shards.len() {
            let outcome = self.shards[index].status().outcome;
            match outcome {
                Some(outcome)
                    if FailedStream::is_final(&outcome) && pick(&self.shards[index].follows()) =>
                {
                    let shard = self.shards.remove(index);
                    set_aside.push((
                        shard,
                        FailedStream {
                            follows: Vec::new(),
                            outcome,
                        },
                    ));
                }
                _ => index += 1,
            }
        }
        if set_aside.is_empty() {
            return;
        }
        self.publish();
        for (mut shard, mut failed) in set_aside {
            // The run is over: this only collects it.
            shard.join();
            failed.follows = shard.follows();
            failed.follows.retain(|u| !leaving.contains(u));
            if failed.follows.is_empty() {
                continue;
            }
            lock(&self.failed).push(failed.clone());
            if let Some(hook) = &self.failed_hook {
                hook(&failed);
            }
        }
    }

    fn check(&mut self) -> Result<usize, MonitorError> {
        self.set_aside_final();
        let mut restarted = 0;
        for index in 0..self.shards.len() {
            let status = self.shards[index].status();
            let failed = status.outcome.as_ref().is_some_and(|o| o.is_failure());
            if status.healthy && !failed {
                continue;
            }
            // A stream that gave up keeps its backoff: its first attempt waits what it had
            // earned, so giving up and being restarted is no way around the backoff. Any
            // other failure (an unusable config) is restarted afresh.
            let result = match self.shards[index].resume() {
                Ok(true) => Ok(()),
                Ok(false) => self.shards[index].restart(),
                Err(e) => Err(e),
            };
            // A restarted run has a new Control: the view must read its status.
            self.publish();
            if result.is_err() {
                // The run lost its stream (the driver panicked): start afresh, with the
                // users beyond a `follow` list added through control once it announces.
                let follow = self.shards[index].follows();
                let (first, rest) = follow.split_at(follow.len().min(FOLLOW_LIMIT));
                let mut listener = self.start(first)?;
                listener.follow_later(rest);
                self.shards[index] = listener;
                self.publish();
            }
            restarted += 1;
        }
        Ok(restarted)
    }

    /// Re-applies control changes to every stream whose connection has not seen them.
    /// A stream that cannot take them now is tried again at the next check or announcement.
    fn sync_all(&mut self) {
        for shard in &mut self.shards {
            let _ = shard.sync_follows();
        }
    }
}

/// Takes `users` off the streams set aside for good, dropping those left with none.
fn forget_failed(failed: &Mutex<Vec<FailedStream>>, users: &BTreeSet<u64>) {
    lock(failed).retain_mut(|failed| {
        failed.follows.retain(|u| !users.contains(u));
        !failed.follows.is_empty()
    });
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

/// The lists as slices, for the planners.
fn slices(lists: &[Vec<u64>]) -> Vec<&[u64]> {
    lists.iter().map(Vec::as_slice).collect()
}

/// Emptying one stream into others through control: `to` lists each target and the users
/// it takes; together they are all of the source's users.
#[derive(Debug, PartialEq)]
struct Move {
    from: usize,
    to: Vec<(usize, Vec<u64>)>,
}

/// Which streams to empty into which, through control, to save connections.
///
/// The least-full streams are emptied first, each only if the announced streams (the only
/// ones that take users through control) have room for all its users together, up to
/// `limit` each; the fullest targets are filled first, so few streams are left part full.
/// A stream that takes users is never emptied later, and an emptied one never takes any.
fn plan_moves(current: &[Vec<u64>], announced: &[bool], limit: usize) -> Vec<Move> {
    #[derive(Clone, Copy, PartialEq)]
    enum Role {
        Free,
        Target,
        Emptied,
    }
    let n = current.len().min(announced.len());
    let mut size: Vec<usize> = current.iter().take(n).map(Vec::len).collect();
    let mut role = vec![Role::Free; n];
    let mut sources: Vec<usize> = (0..n).collect();
    sources.sort_by_key(|&i| (size[i], i));
    let mut moves = Vec::new();
    for source in sources {
        if role[source] != Role::Free || size[source] == 0 {
            continue;
        }
        let mut targets: Vec<usize> = (0..n)
            .filter(|&t| t != source && announced[t] && role[t] != Role::Emptied && size[t] < limit)
            .collect();
        targets.sort_by_key(|&t| (std::cmp::Reverse(size[t]), t));
        let room: usize = targets.iter().map(|&t| limit - size[t]).sum();
        if room < size[source] {
            continue;
        }
        let mut users = current[source].as_slice();
        let mut to = Vec::new();
        for target in targets {
            if users.is_empty() {
                break;
            }
            let take = (limit - size[target]).min(users.len());
            let (taken, rest) = users.split_at(take);
            to.push((target, taken.to_vec()));
            size[target] += take;
            role[target] = Role::Target;
            users = rest;
        }
        size[source] = 0;
        role[source] = Role::Emptied;
        moves.push(Move { from: source, to });
    }
    moves
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

    fn apply_moves(current: &[Vec<u64>], moves: &[Move]) -> Vec<Vec<u64>> {
        let mut after: Vec<Option<Vec<u64>>> = current.iter().cloned().map(Some).collect();
        for step in moves {
            for (target, users) in &step.to {
                let list = after[*target].as_mut().expect("a target is never emptied");
                list.extend(users);
                list.sort_unstable();
            }
            after[step.from] = None;
        }
        after.into_iter().flatten().collect()
    }

    #[test]
    fn moves_empty_the_smallest_streams_into_the_fullest_announced_ones() {
        let current = vec![
            (1..=995).collect::<Vec<u64>>(),
            (2001..=2990).collect(),
            (3001..=3008).collect(),
            (4001..=4050).collect(),
        ];
        let moves = plan_moves(&current, &[true, true, false, false], 1000);
        assert_eq!(
            moves,
            vec![
                // The 8 users fill the fullest target first, then the next.
                Move {
                    from: 2,
                    to: vec![(0, (3001..=3005).collect()), (1, (3006..=3008).collect())]
                },
                // 50 more do not fit in the 7 places left.
            ]
        );
        // Unannounced streams never take users; announced ones can be emptied.
        let small = vec![vec![1, 2], vec![3], vec![4, 5, 6]];
        let moves = plan_moves(&small, &[false, true, false], 1000);
        assert_eq!(
            moves,
            vec![
                Move {
                    from: 0,
                    to: vec![(1, vec![1, 2])]
                },
                Move {
                    from: 2,
                    to: vec![(1, vec![4, 5, 6])]
                }
            ]
        );
        assert!(plan_moves(&small, &[false, false, false], 1000).is_empty());
        assert!(
            plan_moves(&[vec![1]], &[true], 1000).is_empty(),
            "nowhere to go"
        );
        assert!(plan_moves(&[], &[], 1000).is_empty());
    }

    #[test]
    fn every_move_plan_keeps_coverage_and_limits_and_saves_streams() {
        let mut seed = 7;
        for round in 0..500 {
            let limit = 1 + (lcg(&mut seed) % 20) as usize;
            let mut next_id = 0u64;
            let mut current = Vec::new();
            let mut announced = Vec::new();
            for _ in 0..lcg(&mut seed) % 8 {
                let len = 1 + lcg(&mut seed) % limit as u64;
                current.push((next_id..next_id + len).collect::<Vec<u64>>());
                announced.push(!lcg(&mut seed).is_multiple_of(3));
                next_id += len;
            }
            let moves = plan_moves(&current, &announced, limit);
            let after = apply_moves(&current, &moves);
            assert_eq!(covered(&after), covered(&current), "round {round}: no loss");
            assert_eq!(after.len(), current.len() - moves.len(), "round {round}");
            assert!(after.iter().all(|l| !l.is_empty() && l.len() <= limit));
            let mut sources = BTreeSet::new();
            for step in &moves {
                assert!(sources.insert(step.from), "round {round}: emptied once");
                let mut moved: Vec<u64> = step.to.iter().flat_map(|(_, u)| u.clone()).collect();
                moved.sort_unstable();
                assert_eq!(
                    moved, current[step.from],
                    "round {round}: all its users move"
                );
                for (target, _) in &step.to {
                    assert!(
                        announced[*target],
                        "round {round}: only announced streams take users"
                    );
                    assert!(
                        !sources.contains(target),
                        "round {round}: an emptied stream takes none"
                    );
                }
            }
            // Nothing more could be moved: no stream fits into the others' room.
            let moved: BTreeSet<usize> = moves.iter().map(|m| m.from).collect();
            let targets: BTreeSet<usize> = moves
                .iter()
                .flat_map(|m| m.to.iter().map(|t| t.0))
                .collect();
            let left: Vec<usize> = (0..current.len()).filter(|i| !moved.contains(i)).collect();
            let size_after = |i: usize| {
                current[i].len()
                    + moves
                        .iter()
                        .flat_map(|m| &m.to)
                        .filter(|(t, _)| *t == i)
                        .map(|(_, u)| u.len())
                        .sum::<usize>()
            };
            for &source in left.iter().filter(|i| !targets.contains(i)) {
                let room: usize = left
                    .iter()
                    .filter(|&&t| t != source && announced[t])
                    .map(|&t| limit - size_after(t))
                    .sum();
                assert!(
                    room < current[source].len(),
                    "round {round}: stream {source} could still have been emptied"
                );
            }
        }
    }

    // ----- the monitor itself, over a fake driver (no sockets) -----

    use sitebucket_proto::control::{ControlCall, ControlKind, ControlResponse};
    use sitebucket_proto::Credentials;
    use sitebucket_proto::{Action, Outcome};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    /// Logs `start <first>-<last user>` when a run is spawned and `stop <first>-<last>` when
    /// it ends on a stop (before `join` returns); its first `refuse` runs fail (the core is
    /// told each connect was refused, until it gives up: the test template allows one
    /// attempt), skipping backoff waits in virtual time and recording in `refused_connects`
    /// the virtual instant of each connect.
    ///
    /// With `announce`, each run gets a `200` and a control message with the stream id
    /// `s<first user>x<run number>` (runs numbered from 0 in spawn order); control calls
    /// are logged as `<kind> <stream id> <first>-<last user>` and succeed, except the one
    /// `fail_in` counts down to (logged with a `failed ` prefix, answered with a 503).
    /// Control calls first pass its [`Gate`].
    ///
    /// A run whose first user has an entry in `answers` takes it (once) as its server's
    /// answer: after the connect, the stream is fed that text (a head and body), and the run
    /// ends if the stream finishes.
    #[derive(Clone, Default)]
    struct FakeDriver {
        log: Arc<Mutex<Vec<String>>>,
        refuse: Arc<AtomicUsize>,
        answers: Arc<Mutex<std::collections::BTreeMap<u64, String>>>,
        announce: bool,
        runs: Arc<AtomicUsize>,
        fail_in: Arc<Mutex<Option<usize>>>,
        gate: Arc<Gate>,
        /// When each refused run connected, in virtual time (see `serve`).
        refused_connects: Arc<Mutex<Vec<Instant>>>,
    }

    /// Holds control calls: open by default; once closed, each call waits for a permit
    /// (or, so a broken test still ends, for 10 s).
    #[derive(Default)]
    struct Gate {
        state: Mutex<GateState>,
        changed: Condvar,
    }

    #[derive(Default)]
    struct GateState {
        /// `None`: open. `Some(n)`: `n` more calls may pass.
        permits: Option<usize>,
        /// Calls waiting now.
        waiting: usize,
    }

    impl Gate {
        fn close(&self) {
            lock(&self.state).permits = Some(0);
        }

        fn open(&self) {
            lock(&self.state).permits = None;
            self.changed.notify_all();
        }

        /// Lets one more waiting (or later) call through.
        fn admit_one(&self) {
            if let Some(n) = &mut lock(&self.state).permits {
                *n += 1;
            }
            self.changed.notify_all();
        }

        fn waiting(&self) -> usize {
            lock(&self.state).waiting
        }

        fn pass(&self) {
            let mut state = lock(&self.state);
            state.waiting += 1;
            let (mut state, _) = self
                .changed
                .wait_timeout_while(state, Duration::from_secs(10), |s| s.permits == Some(0))
                .unwrap_or_else(|p| p.into_inner());
            state.waiting -= 1;
            if let Some(n) = &mut state.permits {
                *n = n.saturating_sub(1);
            }
        }
    }

    impl FakeDriver {
        fn announcing() -> Self {
            FakeDriver {
                announce: true,
                ..FakeDriver::default()
            }
        }

        fn log(&self) -> Vec<String> {
            lock(&self.log).clone()
        }

        /// The control calls logged so far.
        fn calls(&self) -> Vec<String> {
            self.log()
                .into_iter()
                .filter(|e| !e.starts_with("start ") && !e.starts_with("stop "))
                .collect()
        }

        /// Makes the `n`th control call from now (1-based) fail.
        fn fail_call(&self, n: usize) {
            *lock(&self.fail_in) = Some(n);
        }
    }

    /// Feeds `stream` a connect, a `200` and a control message announcing `id`.
    fn announce(stream: &mut SiteStream, id: &str) {
        let now = Instant::now();
        let settle = |stream: &mut SiteStream| loop {
            if matches!(
                stream.poll_action(now),
                Action::Wait(_) | Action::Finished(_)
            ) {
                break;
            }
        };
        settle(stream);
        stream.handle_connected(now, 1);
        settle(stream);
        let message = format!("{{\"control\":{{\"control_uri\":\"/1.1/site/c/{id}\"}}}}\r\n");
        let input = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{message}\r\n",
            message.len()
        );
        stream.handle_input(now, input.as_bytes());
        settle(stream);
    }

    impl Driver for FakeDriver {
        fn name(&self) -> &'static str {
            "fake"
        }

        fn spawn(
            &self,
            mut stream: SiteStream,
            parser: Box<dyn Parser>,
            control: Arc<Control>,
        ) -> io::Result<crate::RunHandle> {
            // Logged here, not in the run's thread, so the log follows the monitor's order.
            lock(&self.log).push(format!("start {}", span(&stream)));
            let run = self.runs.fetch_add(1, Ordering::SeqCst);
            let (tx, rx) = std::sync::mpsc::channel();
            let driver = self.clone();
            let thread = std::thread::spawn(move || {
                let outcome = driver.serve(run, &mut stream, &control);
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
            let run = self.runs.fetch_add(1, Ordering::SeqCst);
            self.serve(run, stream, control)
        }

        fn control(&self, call: ControlCall) -> Result<ControlResponse, ControlError> {
            self.gate.pass();
            let request = call.request();
            let kind = match request.kind() {
                ControlKind::AddUsers => "add",
                ControlKind::RemoveUsers => "remove",
                ControlKind::Info => "info",
                ControlKind::FriendsIds => "friends",
                ControlKind::RulesList | ControlKind::RulesAdd | ControlKind::RulesDelete => {
                    "rules"
                }
            };
            let id = call.stream_id().unwrap_or("-");
            let mut entry = format!("{kind} {id}");
            if let (Some(first), Some(last)) = (request.users().first(), request.users().last()) {
                entry.push_str(&format!(" {first}-{last}"));
            }
            let fail = {
                let mut fail_in = lock(&self.fail_in);
                let due = *fail_in == Some(1);
                *fail_in = fail_in.and_then(|n| n.checked_sub(1)).filter(|n| *n > 0);
                due
            };
            if fail {
                lock(&self.log).push(format!("failed {entry}"));
                return Err(ControlError::Http {
                    status: 503,
                    reason: "Service Unavailable".into(),
                    detail: String::new(),
                });
            }
            lock(&self.log).push(entry);
            Ok(match request.kind() {
                ControlKind::Info => ControlResponse::Info(Default::default()),
                ControlKind::FriendsIds => ControlResponse::Friends(Default::default()),
                _ => ControlResponse::Done,
            })
        }
    }

    impl FakeDriver {
        fn serve(&self, run: usize, stream: &mut SiteStream, control: &Arc<Control>) -> Outcome {
            let refuse = self
                .refuse
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if refuse {
                // Virtual time from the run's start: each wait is skipped, not slept, and
                // each connect is recorded at the instant the stream asked for it.
                let mut now = Instant::now();
                loop {
                    match stream.poll_action(now) {
                        Action::Connect { .. } => {
                            lock(&self.refused_connects).push(now);
                            stream.handle_connect_failed(now, io::ErrorKind::ConnectionRefused);
                        }
                        Action::Wait(deadline) => now = deadline,
                        Action::Finished(outcome) => {
                            control.publish(stream);
                            return outcome;
                        }
                        _ => {}
                    }
                }
            }
            let answer = lock(&self.answers).remove(&stream.config().follow()[0]);
            if let Some(answer) = answer {
                let now = Instant::now();
                let settle = |stream: &mut SiteStream| loop {
                    if let Action::Wait(_) | Action::Finished(_) = stream.poll_action(now) {
                        break;
                    }
                };
                settle(stream);
                stream.handle_connected(now, 1);
                settle(stream);
                stream.handle_input(now, answer.as_bytes());
                settle(stream);
                control.publish(stream);
                if let Some(outcome) = stream.outcome() {
                    return outcome.clone();
                }
            }
            if self.announce {
                let id = format!("s{}x{run}", stream.config().follow()[0]);
                announce(stream, &id);
                control.publish(stream);
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
        fake_monitor_with_limit(driver, users, 1)
    }

    /// [`fake_monitor`] whose streams give up after `retry_limit` failed attempts.
    fn fake_monitor_with_limit(
        driver: &FakeDriver,
        users: impl IntoIterator<Item = u64>,
        retry_limit: u32,
    ) -> Monitor<FakeDriver> {
        let credentials = Credentials::new("key", "secret", "token", "token secret");
        let template = Config::builder([1], credentials)
            .url("http://127.0.0.1:1/1.1/site.json")
            .retry_limit(Some(retry_limit))
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

    #[test]
    fn check_restarts_a_stream_that_gave_up_with_the_backoff_it_had_earned() {
        let ms = Duration::from_millis;
        // Two runs refused: the first, then the check's restart of it.
        let driver = FakeDriver {
            refuse: Arc::new(AtomicUsize::new(2)),
            ..FakeDriver::default()
        };
        let monitor = fake_monitor_with_limit(&driver, 1..=50, 3);
        let connects = || lock(&driver.refused_connects).clone();
        let gave_up = || {
            matches!(
                monitor.streams()[0].status.outcome,
                Some(Outcome::GaveUp { attempts: 3, .. })
            )
        };
        wait_until("the stream to give up", gave_up);
        // Three attempts, 250 ms then 500 ms apart (the linear network steps), then it gave
        // up: the next wait it had earned is 750 ms.
        let first = connects();
        assert_eq!(first.len(), 3);
        assert_eq!(
            [first[1] - first[0], first[2] - first[1]],
            [ms(250), ms(500)]
        );

        let checked_at = Instant::now();
        assert_eq!(monitor.check().expect("check"), 1);
        wait_until("the restarted stream to give up again", || {
            connects().len() == 6 && gave_up()
        });
        let again = &connects()[3..];
        // Not at once (a restart that reset the throttles would connect straight away): no
        // earlier than the earned 750 ms after the check, and the sequence goes on.
        assert!(
            again[0] >= checked_at + ms(750),
            "the first new attempt came {:?} after the check",
            again[0].saturating_duration_since(checked_at)
        );
        assert_eq!(
            [again[1] - again[0], again[2] - again[1]],
            [ms(1000), ms(1250)]
        );
        let status = &monitor.streams()[0].status;
        assert_eq!(status.stats.attempts, 6);
        assert_eq!(status.stats.reconnects, 5, "2 + the restart's + 2");
        assert_eq!(starts(&driver), ["start 1-50", "start 1-50"]);
        assert!(
            monitor.failed().is_empty(),
            "a stream that gave up is not set aside"
        );
        monitor.disconnect();
    }

    /// A `200` carrying one `disconnect` message with `code`.
    fn disconnected_with(code: u32) -> String {
        let message = format!("{{\"disconnect\":{{\"code\":{code},\"reason\":\"gone\"}}}}\r\n");
        format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{message}\r\n",
            message.len()
        )
    }

    fn starts(driver: &FakeDriver) -> Vec<String> {
        driver
            .log()
            .into_iter()
            .filter(|e| e.starts_with("start "))
            .collect()
    }

    #[test]
    fn a_change_never_restarts_a_stream_refused_for_good_by_replacing_it() {
        let driver = FakeDriver::default();
        lock(&driver.answers).insert(1, "HTTP/1.1 403 Forbidden\r\n\r\n".into());
        let monitor = fake_monitor(&driver, 1..=50);
        wait_until("the stream to be refused", || {
            monitor.streams()[0].status.outcome.is_some()
        });
        // Without a check in between: the refused stream has room, but is not grown.
        monitor.add_follows(&[51]).expect("add");
        assert_eq!(starts(&driver), ["start 1-50", "start 51-51"]);
        assert_eq!(monitor.failed()[0].follows, range(1..=50));
        assert_eq!(lists(&monitor), [vec![51]]);
        monitor.disconnect();
    }

    #[test]
    fn removing_the_users_of_a_refused_stream_closes_it_without_a_report() {
        let driver = FakeDriver::default();
        for first in [1, 101, 201] {
            lock(&driver.answers).insert(first, "HTTP/1.1 401 Unauthorized\r\n\r\n".into());
        }
        let monitor = fake_monitor(&driver, 1..=250);
        let heard = Arc::new(Mutex::new(Vec::new()));
        {
            let heard = heard.clone();
            monitor.set_failed_hook(move |failed| lock(&heard).push(failed.follows.clone()));
        }
        wait_until("every stream to be refused", || {
            monitor.streams().iter().all(|s| s.status.outcome.is_some())
        });
        // All of the first stream's users leave: it is closed, as a removal, not reported.
        // Some of the second's leave: it is set aside with the others, not shrunk (which
        // would restart it). The third is not touched: the next check sets it aside.
        assert_eq!(monitor.remove_follows(&range(1..=120)).expect("remove"), 0);
        assert_eq!(*lock(&heard), [range(121..=200)]);
        assert_eq!(lists(&monitor), [range(201..=250)]);
        assert_eq!(monitor.check().expect("check"), 0);
        assert_eq!(*lock(&heard), [range(121..=200), range(201..=250)]);
        let failed: Vec<Vec<u64>> = monitor.failed().into_iter().map(|f| f.follows).collect();
        assert_eq!(failed, [range(121..=200), range(201..=250)]);
        assert!(monitor.streams().is_empty());
        assert_eq!(
            starts(&driver),
            ["start 1-100", "start 101-200", "start 201-250"]
        );
        monitor.disconnect();
    }

    #[test]
    fn check_sets_aside_a_stream_refused_for_good_and_never_restarts_it() {
        let driver = FakeDriver::default();
        lock(&driver.answers).insert(1, "HTTP/1.1 401 Unauthorized\r\n\r\n".into());
        let monitor = fake_monitor(&driver, 1..=150);
        let heard = Arc::new(Mutex::new(Vec::new()));
        {
            let heard = heard.clone();
            monitor.set_failed_hook(move |failed| lock(&heard).push(failed.clone()));
        }
        wait_until("the first stream to be refused", || {
            monitor.streams()[0].status.outcome.is_some()
        });
        for _ in 0..5 {
            assert_eq!(monitor.check().expect("check"), 0, "nothing restarted");
        }
        let refused = FailedStream {
            follows: range(1..=100),
            outcome: Outcome::Fatal {
                status: 401,
                reason: "Unauthorized".into(),
            },
        };
        assert_eq!(monitor.failed(), std::slice::from_ref(&refused));
        assert_eq!(*lock(&heard), [refused], "told once");
        assert_eq!(lists(&monitor), [range(101..=150)], "the others go on");
        assert_eq!(monitor.follows(), range(101..=150));
        assert_eq!(
            starts(&driver),
            ["start 1-100", "start 101-150"],
            "one attempt"
        );

        // Removing the users takes them off the list; adding them back is a retry.
        assert_eq!(monitor.remove_follows(&range(1..=50)).expect("remove"), 0);
        assert_eq!(monitor.failed()[0].follows, range(51..=100));
        assert_eq!(starts(&driver).len(), 2, "a removal starts nothing");
        monitor.add_follows(&range(51..=60)).expect("add");
        assert_eq!(monitor.failed()[0].follows, range(61..=100));
        monitor.add_follows(&range(61..=100)).expect("add");
        assert!(monitor.failed().is_empty());
        assert_eq!(monitor.follows(), range(51..=150));
        // Refused for good again: a record, kept after a disconnect.
        lock(&driver.answers).insert(1, "HTTP/1.1 403 Forbidden\r\n\r\n".into());
        monitor.add_follows(&[1]).expect("add");
        wait_until("the stream of user 1 to be refused", || {
            monitor.streams().iter().any(|s| s.status.outcome.is_some())
        });
        assert_eq!(monitor.check().expect("check"), 0);
        monitor.disconnect();
        let failed = monitor.failed();
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(matches!(
            failed[0].outcome,
            Outcome::Fatal { status: 403, .. }
        ));
    }

    #[test]
    fn the_background_checker_sets_aside_revoked_streams_at_once_and_restarts_the_others() {
        let driver = FakeDriver {
            refuse: Arc::new(AtomicUsize::new(0)),
            ..FakeDriver::default()
        };
        lock(&driver.answers).extend([(1, disconnected_with(6)), (101, disconnected_with(7))]);
        let monitor = fake_monitor(&driver, 1..=250);
        let heard = Arc::new(Mutex::new(Vec::new()));
        {
            let heard = heard.clone();
            monitor.set_failed_hook(move |failed| lock(&heard).push(failed.outcome.clone()));
        }
        // Checks an hour apart: only the finish of a run can wake the checker this soon.
        monitor.run_every(Duration::from_secs(3600));
        wait_until("both revoked streams to be set aside", || {
            monitor.failed().len() == 2
        });
        let mut failed = monitor.failed();
        failed.sort_by_key(|f| f.follows[0]);
        assert_eq!(failed[0].follows, range(1..=100));
        assert_eq!(failed[1].follows, range(101..=200));
        assert!(matches!(
            failed[0].outcome,
            Outcome::Revoked { code: 6, .. }
        ));
        assert!(matches!(
            failed[1].outcome,
            Outcome::Revoked { code: 7, .. }
        ));
        assert_eq!(lock(&heard).len(), 2);
        assert_eq!(lists(&monitor), [range(201..=250)]);

        // A stream that gave up (not for good) is still restarted by a check.
        driver.refuse.store(1, Ordering::SeqCst);
        monitor
            .add_follows(&[251])
            .expect("grow, so a new run starts and fails");
        wait_until("the new run to give up", || {
            monitor.streams()[0].status.outcome.is_some()
        });
        assert!(matches!(
            monitor.streams()[0].status.outcome,
            Some(Outcome::GaveUp { .. })
        ));
        assert_eq!(monitor.check().expect("check"), 1);
        assert_eq!(
            monitor.failed().len(),
            2,
            "a stream that gave up is not set aside"
        );
        monitor.disconnect();
        assert_eq!(
            starts(&driver),
            [
                "start 1-100",
                "start 101-200",
                "start 201-250",
                "start 201-251",
                // The check's restart of the stream that gave up.
                "start 201-251",
            ],
            "one attempt each for the revoked streams"
        );
    }

    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn all_announced(monitor: &Monitor<FakeDriver>) -> bool {
        monitor
            .streams()
            .iter()
            .all(|s| s.status.stream_id.is_some())
    }

    fn range(r: std::ops::RangeInclusive<u64>) -> Vec<u64> {
        r.collect()
    }

    #[test]
    fn announced_streams_grow_through_control_and_take_in_the_streams_they_replace() {
        let driver = FakeDriver::announcing();
        let monitor = fake_monitor(&driver, 1..=150);
        wait_until("both streams to announce", || all_announced(&monitor));

        // 250 new users all go onto the first stream, through control, in requests of 100.
        monitor.add_follows(&range(151..=400)).expect("add");
        let mut first: Vec<u64> = range(1..=100);
        first.extend(151..=400);
        assert_eq!(lists(&monitor), vec![first, range(101..=150)]);

        // The second stream's 50 users move onto the first; then it closes.
        assert_eq!(monitor.consolidate().expect("consolidate"), 1);
        assert_eq!(lists(&monitor), vec![range(1..=400)]);
        assert_eq!(
            monitor.consolidate().expect("consolidate"),
            0,
            "nothing left to merge"
        );

        // Removals through control too.
        assert_eq!(monitor.remove_follows(&range(1..=300)).expect("remove"), 0);
        assert_eq!(lists(&monitor), vec![range(301..=400)]);

        // Past 1,000 users per stream, the rest open new streams of 100.
        monitor.add_follows(&range(401..=1500)).expect("add");
        assert_eq!(
            lists(&monitor),
            vec![range(301..=1300), range(1301..=1400), range(1401..=1500)]
        );
        assert_eq!(monitor.follows(), range(301..=1500));
        monitor.disconnect();
        let mut log = driver.log();
        let adds_to_first: Vec<String> = (0..9)
            .map(|k| format!("add s1x0 {}-{}", 401 + 100 * k, 500 + 100 * k))
            .collect();
        let mut expected: Vec<String> = [
            "start 1-100",
            "start 101-150",
            "add s1x0 151-250",
            "add s1x0 251-350",
            "add s1x0 351-400",
            // The move: added to its new stream, then the old one closes.
            "add s1x0 101-150",
            "stop 101-150",
            "remove s1x0 1-100",
            "remove s1x0 101-200",
            "remove s1x0 201-300",
        ]
        .map(String::from)
        .to_vec();
        expected.extend(adds_to_first);
        expected.extend(["start 1301-1400", "start 1401-1500"].map(String::from));
        // The three streams stop together at the end, in any order.
        let stops = log.split_off(expected.len());
        assert_eq!(log, expected);
        let mut stops = stops;
        stops.sort();
        assert_eq!(stops, ["stop 1-100", "stop 1301-1400", "stop 1401-1500"]);
    }

    #[test]
    fn readers_never_wait_for_a_change_held_up_in_a_control_request() {
        let driver = FakeDriver::announcing();
        let monitor = fake_monitor(&driver, 1..=50);
        wait_until("the stream to announce", || all_announced(&monitor));
        let prompt = Duration::from_millis(200);
        // Reads both getters, each well under `prompt`, while a change is held.
        let read = || {
            let started = Instant::now();
            let streams = monitor.streams();
            let follows = monitor.follows();
            let debug = format!("{monitor:?}");
            let took = started.elapsed();
            assert!(took < prompt, "the readers waited {took:?} for the change");
            assert!(debug.contains("s1x0"), "{debug}");
            (streams, follows)
        };

        driver.gate.close();
        std::thread::scope(|scope| {
            // Two requests: 51-150, then 151-250.
            let adding = scope.spawn(|| monitor.add_follows(&range(51..=250)));
            wait_until("the first request to be held", || {
                driver.gate.waiting() == 1
            });
            let (streams, follows) = read();
            assert_eq!(streams.len(), 1);
            assert_eq!(
                streams[0].follow,
                range(1..=50),
                "the state before the call"
            );
            assert_eq!(streams[0].status.stream_id.as_deref(), Some("s1x0"));
            assert!(streams[0].status.running, "the status is live");
            assert_eq!(follows, range(1..=50));

            // The first request completes; the second is held: the view has the first.
            driver.gate.admit_one();
            wait_until("the second request to be held", || {
                driver.gate.waiting() == 1 && driver.calls().len() == 1
            });
            let (streams, follows) = read();
            assert_eq!(
                streams[0].follow,
                range(1..=150),
                "one request behind at most"
            );
            assert_eq!(follows, range(1..=150));

            driver.gate.open();
            adding.join().expect("no panic").expect("add");
        });
        assert_eq!(lists(&monitor), vec![range(1..=250)]);
        assert_eq!(monitor.follows(), range(1..=250));
        assert_eq!(driver.calls(), ["add s1x0 51-150", "add s1x0 151-250"]);

        // Streams started and closed by a change are published too.
        driver.gate.close();
        std::thread::scope(|scope| {
            // Over 1,000 on the announced stream: 750 through control, then a new stream.
            let adding = scope.spawn(|| monitor.add_follows(&range(251..=1100)));
            wait_until("the first request to be held", || {
                driver.gate.waiting() == 1
            });
            let (streams, _) = read();
            assert_eq!(streams.len(), 1);
            driver.gate.open();
            adding.join().expect("no panic").expect("add");
        });
        assert_eq!(lists(&monitor), vec![range(1..=1000), range(1001..=1100)]);
        driver.gate.close();
        std::thread::scope(|scope| {
            let removing = scope.spawn(|| monitor.remove_follows(&range(1..=999)));
            wait_until("the removal to be held", || driver.gate.waiting() == 1);
            let (streams, follows) = read();
            assert_eq!(streams[0].follow, range(1..=1000), "nothing removed yet");
            assert_eq!(follows, range(1..=1100));
            driver.gate.open();
            assert_eq!(removing.join().expect("no panic").expect("remove"), 0);
        });
        assert_eq!(lists(&monitor), vec![vec![1000], range(1001..=1100)]);
        // The move of user 1000 is held: both streams are still shown until it is done.
        driver.gate.close();
        std::thread::scope(|scope| {
            let merging = scope.spawn(|| monitor.consolidate());
            wait_until("the move to be held", || driver.gate.waiting() == 1);
            let (streams, follows) = read();
            assert_eq!(streams.len(), 2);
            assert_eq!(follows, range(1000..=1100));
            driver.gate.open();
            assert_eq!(merging.join().expect("no panic").expect("consolidate"), 1);
        });
        assert_eq!(lists(&monitor), vec![range(1000..=1100)]);
        assert_eq!(monitor.follows(), range(1000..=1100));
        monitor.disconnect();
        assert!(monitor.streams().is_empty());
        assert!(monitor.follows().is_empty());
    }

    #[test]
    fn a_failed_control_request_falls_back_to_replacement() {
        let driver = FakeDriver::announcing();
        let monitor = fake_monitor(&driver, 1..=50);
        wait_until("the stream to announce", || all_announced(&monitor));
        driver.fail_call(1);
        monitor.add_follows(&range(51..=60)).expect("add");
        assert_eq!(lists(&monitor), vec![range(1..=60)]);
        wait_until("the replacement to announce", || {
            monitor.streams()[0].status.stream_id.as_deref() == Some("s1x1")
        });
        // Removing through control fails too: the shorter list fits a follow list.
        driver.fail_call(1);
        assert_eq!(monitor.remove_follows(&[60]).expect("remove"), 0);
        assert_eq!(lists(&monitor), vec![range(1..=59)]);
        monitor.disconnect();
        assert_eq!(
            driver.log(),
            [
                "start 1-50",
                "failed add s1x0 51-60",
                "start 1-60",
                "stop 1-50",
                "failed remove s1x1 60-60",
                "start 1-59",
                "stop 1-60",
                "stop 1-59",
            ]
        );
    }

    #[test]
    fn a_move_that_fails_part_way_is_undone() {
        let driver = FakeDriver::announcing();
        let monitor = fake_monitor(&driver, 1..=205);
        wait_until("the streams to announce", || all_announced(&monitor));
        // Streams of 997, 997 and 5 users.
        monitor.add_follows(&range(1001..=1897)).expect("add");
        monitor.add_follows(&range(2001..=2897)).expect("add");
        monitor.add_follows(&range(3001..=3003)).expect("add");
        assert_eq!(monitor.remove_follows(&range(1..=3)).expect("remove"), 0);
        let sizes: Vec<usize> = lists(&monitor).iter().map(Vec::len).collect();
        assert_eq!(sizes, [997, 997, 5]);
        let before = lists(&monitor);
        let calls_before = driver.calls().len();

        // The five users would go 3 + 2; the second add fails.
        driver.fail_call(2);
        let error = monitor.consolidate().expect_err("the move fails");
        assert!(
            error.to_string().contains("HTTP 503"),
            "the error says what failed: {error}"
        );
        assert_eq!(lists(&monitor), before, "every user where it was");
        assert_eq!(
            driver.calls()[calls_before..],
            [
                "add s1x0 201-203",
                "failed add s101x1 204-205",
                "remove s1x0 201-203",
            ]
        );
        // Once the server works again, the move goes through.
        assert_eq!(monitor.consolidate().expect("consolidate"), 1);
        assert_eq!(lists(&monitor).len(), 2);
        assert_eq!(monitor.follows().len(), 997 + 997 + 5);
        monitor.disconnect();
    }

    #[test]
    fn check_reapplies_control_changes_after_a_restart() {
        let driver = FakeDriver::announcing();
        let monitor = fake_monitor(&driver, 1..=10);
        wait_until("the stream to announce", || all_announced(&monitor));
        monitor.add_follows(&[11, 12]).expect("add");
        assert_eq!(monitor.remove_follows(&[1]).expect("remove"), 0);
        assert_eq!(monitor.check().expect("check"), 0);
        {
            // A new run of the same stream (as after a reconnect) announces a new id.
            let mut inner = lock(&monitor.inner);
            inner.shards[0].restart().expect("restart");
            inner.publish();
        }
        wait_until("the new run to announce", || {
            monitor.streams()[0].status.stream_id.as_deref() == Some("s1x1")
        });
        assert_eq!(monitor.check().expect("check"), 0);
        assert_eq!(monitor.check().expect("check"), 0);
        monitor.disconnect();
        assert_eq!(
            driver.calls(),
            [
                "add s1x0 11-12",
                "remove s1x0 1-1",
                // The restarted run follows 1..=10 again: 11 and 12 back on, 1 off.
                "add s1x1 11-12",
                "remove s1x1 1-1",
            ]
        );
    }

    /// Each stream gets the observer made for its number, kept across a restart; a stream
    /// started later gets the next number.
    #[test]
    fn every_stream_gets_an_observer_made_for_its_number() {
        /// Each drain seen: the observer's number and the stream's `follow` list.
        type Drains = Arc<Mutex<Vec<(u64, Vec<u64>)>>>;
        struct Numbered(u64, Drains);
        impl Observer for Numbered {
            fn drained(&self, stream: &SiteStream) {
                lock(&self.1).push((self.0, stream.config().follow().to_vec()));
            }
        }
        let driver = FakeDriver::announcing();
        let template = Config::builder([1], Credentials::new("k", "s", "t", "ts"))
            .url("http://127.0.0.1:1/1.1/site.json")
            .build()
            .expect("valid config");
        let monitor = Monitor::new(driver, template, || Box::new(|_: Bytes| {}));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let made = Arc::new(Mutex::new(Vec::new()));
        {
            let (seen, made) = (seen.clone(), made.clone());
            monitor.set_observers(move |number| {
                lock(&made).push(number);
                Arc::new(Numbered(number, seen.clone()))
            });
        }
        let users: Vec<u64> = (1..=150).collect();
        monitor.add_follows(&users).expect("add");
        wait_until("both streams to drain", || {
            let seen = lock(&seen);
            [1, 2].iter().all(|n| seen.iter().any(|(m, _)| m == n))
        });
        for (number, follow) in lock(&seen).iter() {
            let first = if *number == 1 { 1 } else { 101 };
            assert_eq!(follow.first(), Some(&first), "stream {number}");
        }
        {
            let mut inner = lock(&monitor.inner);
            inner.shards[0].restart().expect("restart");
            inner.publish();
        }
        assert_eq!(*lock(&made), [1, 2], "a restart keeps the observer");
        wait_until("the streams to announce", || all_announced(&monitor));
        monitor.add_follows(&[1000]).expect("add");
        assert_eq!(*lock(&made), [1, 2], "added through control, no new stream");
        monitor.disconnect();
    }

    #[test]
    fn the_background_checker_reapplies_changes_as_soon_as_a_stream_reannounces() {
        let driver = FakeDriver::announcing();
        let monitor = fake_monitor(&driver, 1..=10);
        wait_until("the stream to announce", || all_announced(&monitor));
        monitor.add_follows(&[11]).expect("add");
        monitor.run_every(Duration::from_secs(3600));
        {
            let mut inner = lock(&monitor.inner);
            inner.shards[0].restart().expect("restart");
            inner.publish();
        }
        wait_until("the change on the new run", || {
            driver.calls().iter().any(|c| c == "add s1x1 11-11")
        });
        monitor.disconnect();
    }

    #[test]
    fn a_handle_tracks_what_it_follows_through_control() {
        let driver = FakeDriver::announcing();
        let config = Config::builder([1, 2], Credentials::new("k", "s", "t", "ts"))
            .url("http://127.0.0.1:1/1.1/site.json")
            .build()
            .expect("valid config");
        let mut handle = ListenThread::new(driver.clone(), SiteStream::new(config), |_: Bytes| {});
        assert_eq!(handle.add_users(&[3]), Err(ControlError::NotAnnounced));
        assert_eq!(handle.info(), Err(ControlError::NotAnnounced));
        handle.start().expect("start");
        wait_until("the announcement", || handle.stream_id().is_some());
        assert_eq!(handle.stream_id().as_deref(), Some("s1x0"));

        let too_many: Vec<u64> = (2..=1001).collect();
        assert_eq!(
            handle.add_users(&too_many),
            Err(ControlError::OverStreamLimit { would_follow: 1001 }),
            "1 and 2 plus 999 new users"
        );
        assert!(driver.calls().is_empty(), "nothing sent over the limit");
        handle.add_users(&[2, 3, 3, 4]).expect("add");
        handle.remove_users(&[1, 99]).expect("remove");
        assert_eq!(handle.follows(), [2, 3, 4]);
        handle.info().expect("info");
        handle.friends_ids(2, -1).expect("friends");
        assert_eq!(
            handle.sync_follows(),
            Ok(false),
            "this connection has every change"
        );

        handle.restart().expect("restart");
        wait_until("the new announcement", || {
            handle.stream_id().as_deref() == Some("s1x1")
        });
        assert_eq!(handle.sync_follows(), Ok(true));
        assert_eq!(handle.sync_follows(), Ok(false));
        assert_eq!(handle.follows(), [2, 3, 4]);
        // Adding back a removed user of the follow list undoes the removal.
        handle.add_users(&[1]).expect("add");
        assert_eq!(handle.follows(), [1, 2, 3, 4]);
        handle.close();
        handle.join();
        assert_eq!(handle.add_users(&[5]), Err(ControlError::NotAnnounced));
        assert_eq!(
            driver.calls(),
            [
                "add s1x0 3-4",
                "remove s1x0 1-1",
                "info s1x0",
                "friends s1x0 2-2",
                "add s1x1 3-4",
                "remove s1x1 1-1",
                "add s1x1 1-1",
            ]
        );
    }

    #[test]
    fn a_driver_without_control_support_says_so() {
        #[derive(Clone)]
        struct Bare;
        impl Driver for Bare {
            fn name(&self) -> &'static str {
                "bare"
            }
            fn run(&self, _: &mut SiteStream, _: &mut dyn Parser, _: &Arc<Control>) -> Outcome {
                Outcome::Stopped
            }
        }
        let config = Config::builder([1], Credentials::new("k", "s", "t", "ts"))
            .build()
            .expect("valid config");
        let call =
            ControlCall::for_stream(&config, Some("x"), sitebucket_proto::ControlRequest::info());
        let error = Bare.control(call).expect_err("unsupported");
        assert_eq!(error, ControlError::Unsupported { driver: "bare" });
        assert_eq!(
            error.to_string(),
            "the bare driver does not carry out control requests"
        );
    }
}
