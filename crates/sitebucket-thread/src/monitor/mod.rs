//! [`Monitor`]: many streams kept healthy over any [`Driver`], covering a follow list of any
//! size.
//!
//! - `mod.rs`: the [`Monitor`] and its background checker (it runs the plans);
//! - [`plan`]: which users go to which stream — pure functions of the follow lists, tested on
//!   their own;
//! - `stream.rs`: what the monitor shows of its streams ([`MonitoredStream`], [`FailedStream`]);
//! - `error.rs`: [`MonitorError`]; `shared_parser.rs`: [`SharedParser`];
//! - `tests.rs`: the monitor over a fake driver (no sockets).
//!
//! The monitor restarts a stream that gave up with [`ListenThread::resume`], never with
//! [`ListenThread::restart`]: the restarted stream keeps its backoff history, so a server
//! that keeps failing is not retried faster because the stream reached its retry limit.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sitebucket_proto::control::{ControlError, MAX_USERS_PER_STREAM};
use sitebucket_proto::Outcome;
use sitebucket_proto::FOLLOW_LIMIT;
use sitebucket_proto::{Config, Parser, SiteStream};

use crate::driver::Driver;
use crate::follows::SharedPacer;
use crate::listen::ListenThread;
use crate::read_gate::ReadGate;
use crate::run_state::{Observer, RunState};
use crate::sync::lock;

/// The usual interval between two health checks of a [`Monitor`]: 10 seconds.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Makes the parser of each new stream.
type ParserFactory = Arc<dyn Fn() -> Box<dyn Parser> + Send + Sync>;

/// Makes the observer of each new stream, given its number (see [`Monitor::set_observers`]).
type ObserverFactory = Arc<dyn Fn(u64) -> Arc<dyn Observer> + Send + Sync>;

mod error;
mod plan;
mod shared_parser;
mod stream;

pub use error::MonitorError;
use plan::{plan_add, plan_consolidation, plan_moves, plan_remove, slices};
pub use shared_parser::SharedParser;
pub use stream::{FailedStream, FailedStreamHook, MonitoredStream};

/// Many streams kept healthy, covering a follow list of
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

/// One stream in the [`View`]: its follow list, and its run's [`RunState`] to read the live
/// status from.
struct ShardView {
    follow: Vec<u64>,
    control: Arc<RunState>,
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
    /// Honoured by every stream started from now on.
    read_gate: Option<ReadGate>,
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
                read_gate: None,
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

    /// Makes every stream started from now on honour `gate` (see [`ReadGate`]): while it is
    /// paused, their driver (smol, tokio) reads nothing from their sockets but keeps running
    /// the core's timers, so a stream silent for its stall timeout reconnects as usual and
    /// control requests still run. Set it before the first stream starts.
    pub fn set_read_gate(&self, gate: ReadGate) {
        lock(&self.inner).read_gate = Some(gate);
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
    /// ended with a failure, and
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

    /// Runs [`check`](Self::check) on a background thread every `interval` (usually
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
    pub fn streams(&self) -> Vec<MonitoredStream> {
        let shards: Vec<(Vec<u64>, Arc<RunState>)> = lock(&self.view.0)
            .iter()
            .map(|s| (s.follow.clone(), s.control.clone()))
            .collect();
        // Statuses are read after the view's lock is released.
        shards
            .into_iter()
            .map(|(follow, control)| MonitoredStream {
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
                control: s.run_state().clone(),
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
        if let Some(gate) = &self.read_gate {
            listener.set_read_gate(gate.clone());
        }
        listener.set_control_pacer(self.pacer.clone());
        let signal = self.signal.clone();
        listener.set_announce_hook(Arc::new(move |_id: &str| {
            signal.notify(|s| s.announced = true);
        }));
        let signal = self.signal.clone();
        listener.set_finish_hook(Arc::new(move |outcome: &Outcome| {
            if outcome.is_final() {
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
                Some(outcome) if outcome.is_final() && pick(&self.shards[index].follows()) => {
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
            // A restarted run has a new RunState: the view must read its status.
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

#[cfg(test)]
mod tests;
