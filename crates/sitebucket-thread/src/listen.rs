//! [`ListenThread`]: the handle for one stream, over any [`Driver`].
//!
//! Two ways start a finished stream again. [`ListenThread::restart`] is for a user who
//! asks: it resets the stream's throttles, so the stream connects at once with its
//! backoff forgotten. [`ListenThread::resume`] is for a supervisor (the
//! [`Monitor`](crate::Monitor) uses it): it starts a stream that gave up again with its
//! backoff history kept, so its first attempt waits the delay it had earned.

use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sitebucket_proto::control::{
    ControlError, ControlRequest, ControlResponse, FriendsPage, StreamInfo, MAX_USERS_PER_REQUEST,
    MAX_USERS_PER_STREAM,
};
use sitebucket_proto::Outcome;
use sitebucket_proto::{Parser, SiteStream};

use crate::driver::{Driver, RunHandle};
use crate::follows::{distinct, FollowState, SharedPacer};
use crate::read_gate::ReadGate;
use crate::run_state::{AnnounceHook, FinishHook, Observer, RunState, Status};

/// The handle for one stream, whatever [`Driver`] runs it (std threads, a mio loop, smol or
/// tokio tasks, your own): `start`/`run`, `close`, `restart`, `join`, `connection_healthy`
/// and live [`Status`] — and `resume`, which starts a stream that gave up again without
/// forgetting its backoff (`restart` forgets it) — plus the control-stream calls that change
/// who a live connection follows. The name is kept from the simplest case, one stream on a
/// thread of its own. Dropping it closes the stream and waits for the run to end, so nothing
/// is left behind.
pub struct ListenThread<D: Driver> {
    driver: D,
    control: Arc<RunState>,
    idle: Option<(SiteStream, Box<dyn Parser>)>,
    running: Option<RunHandle>,
    outcome: Option<Outcome>,
    follows: FollowState,
    announce: Option<AnnounceHook>,
    finish: Option<FinishHook>,
    observer: Option<Arc<dyn Observer>>,
    read_gate: Option<ReadGate>,
}

impl<D: Driver> std::fmt::Debug for ListenThread<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenThread")
            .field("driver", &self.driver.name())
            .field("running", &self.running.is_some())
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl<D: Driver> ListenThread<D> {
    /// A handle for `stream`, not yet started. (A stream built without an explicit
    /// `rng_seed` draws its nonce seed from the OS, so no two processes sign with the same
    /// nonces.)
    pub fn new(driver: D, stream: SiteStream, parser: impl Parser + 'static) -> Self {
        Self {
            driver,
            control: RunState::new(),
            follows: FollowState::new(stream.config()),
            idle: Some((stream, Box::new(parser))),
            running: None,
            outcome: None,
            announce: None,
            finish: None,
            observer: None,
            read_gate: None,
        }
    }

    /// Creates the handle and starts the stream at once.
    pub fn spawn(driver: D, stream: SiteStream, parser: impl Parser + 'static) -> io::Result<Self> {
        let mut this = Self::new(driver, stream, parser);
        this.start()?;
        Ok(this)
    }

    /// Starts the stream with the driver (on a thread, an event loop or a task).
    /// An error if it is already running.
    pub fn start(&mut self) -> io::Result<()> {
        let Some((stream, parser)) = self.idle.take() else {
            return Err(io::Error::other("the stream is already running"));
        };
        self.control = self.new_control();
        self.control.publish(&stream);
        self.outcome = None;
        match self.driver.spawn(stream, parser, self.control.clone()) {
            Ok(handle) => {
                self.running = Some(handle);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Runs the stream in the current thread until it ends, and returns how it ended.
    pub fn run(&mut self) -> io::Result<Outcome> {
        let Some((mut stream, mut parser)) = self.idle.take() else {
            return Err(io::Error::other("the stream is already running"));
        };
        self.control = self.new_control();
        let outcome = self.driver.run(&mut stream, parser.as_mut(), &self.control);
        self.control.publish(&stream);
        self.idle = Some((stream, parser));
        self.outcome = Some(outcome.clone());
        Ok(outcome)
    }

    /// Asks the stream to stop; it does so promptly, whatever it is waiting on.
    pub fn close(&self) {
        self.control.request_stop();
    }

    /// Waits for the run to end and returns how it ended (`None` if it was never started).
    pub fn join(&mut self) -> Option<Outcome> {
        if let Some(handle) = self.running.take() {
            match handle.join() {
                Some(finished) => {
                    self.idle = Some((finished.stream, finished.parser));
                    self.outcome = Some(finished.outcome);
                }
                None => {
                    self.outcome = Some(Outcome::DriverPanicked {
                        detail: "the driver ended the run without an outcome".into(),
                    })
                }
            }
        }
        self.outcome.clone()
    }

    /// A restart a user asks for: stops the run if it is still
    /// going, resets the stream's throttles and starts it again with the same stream and
    /// parser. It **forgets the backoff**: the stream connects at once, with no failure
    /// counted. To start a stream that gave up again without forgetting what it earned (as a
    /// supervisor must, so giving up cannot become a reconnect storm), use
    /// [`resume`](Self::resume).
    pub fn restart(&mut self) -> io::Result<()> {
        self.close();
        self.join();
        let Some((stream, _)) = &mut self.idle else {
            return Err(io::Error::other("the stream was lost by its driver"));
        };
        stream.reset_throttles();
        self.start()
    }

    /// Starts a stream whose run gave up ([`Outcome::GaveUp`]) again with the same stream and
    /// parser, **keeping its backoff history**: the failure count starts over, but the first
    /// attempt waits the next delay of its last failure's kind, counted from now (see
    /// [`SiteStream::retry_after_giving_up`]); the wait is announced like any reconnect.
    /// This is how a [`Monitor`](crate::Monitor) restarts a stream that gave up.
    ///
    /// Returns `Ok(false)` and changes nothing unless the run gave up: a run still going, one
    /// that was never started, or one that ended any other way is left as it is (use
    /// [`restart`](Self::restart) for those). An error if the driver lost the stream or
    /// cannot start it again.
    pub fn resume(&mut self) -> io::Result<bool> {
        // A run publishes its end before it returns, so a run that gave up is over (or about
        // to be): collecting it does not wait. A run still going is not touched.
        if !matches!(self.status().outcome, Some(Outcome::GaveUp { .. })) {
            return Ok(false);
        }
        self.close();
        self.join();
        let Some((stream, _)) = &mut self.idle else {
            return Err(io::Error::other("the stream was lost by its driver"));
        };
        if !stream.retry_after_giving_up(Instant::now()) {
            return Ok(false);
        }
        self.start()?;
        Ok(true)
    }

    /// Whether the connection is healthy: true unless the stream gave up or hit a fatal error.
    pub fn connection_healthy(&self) -> bool {
        self.control.status().healthy
    }

    /// Whether a run is in progress (started and not yet ended).
    pub fn is_running(&self) -> bool {
        self.running.is_some() && self.control.status().running
    }

    /// The live status published by the driver.
    pub fn status(&self) -> Status {
        self.control.status()
    }

    /// The state the current run shares with its driver (stop flag, status, hooks).
    pub fn run_state(&self) -> &Arc<RunState> {
        &self.control
    }

    /// The stream, when no run holds it.
    pub fn stream(&self) -> Option<&SiteStream> {
        self.idle.as_ref().map(|(s, _)| s)
    }

    /// The stream mutably, when no run holds it (e.g. to change its follow list).
    pub fn stream_mut(&mut self) -> Option<&mut SiteStream> {
        self.idle.as_mut().map(|(s, _)| s)
    }

    /// The driver.
    pub fn driver(&self) -> &D {
        &self.driver
    }

    fn new_control(&self) -> Arc<RunState> {
        let control = RunState::new();
        if let Some(hook) = &self.announce {
            control.set_announce_hook(hook.clone());
        }
        if let Some(hook) = &self.finish {
            control.set_finish_hook(hook.clone());
        }
        if let Some(observer) = &self.observer {
            control.set_observer(observer.clone());
        }
        if let Some(gate) = &self.read_gate {
            control.set_read_gate(gate.clone());
        }
        control
    }

    // ----- control streams -----

    /// The control stream id the live connection announced, if any (`None` before the
    /// stream announced one and from the moment its connection drops).
    pub fn stream_id(&self) -> Option<String> {
        self.control.status().stream_id
    }

    /// Adds `users` to the live connection through its control stream, without
    /// reconnecting, in requests of at most 100 users, paced.
    ///
    /// Users already followed are skipped. Fails, sending nothing, with
    /// [`ControlError::OverStreamLimit`] when the stream would follow more than 1,000 users
    /// (the follow list plus users added), and with [`ControlError::NotAnnounced`] while the
    /// stream has no control stream id. Changes made earlier on another connection of this
    /// stream are re-applied first (see [`sync_follows`](Self::sync_follows)). On an error
    /// part way, the requests that succeeded stay recorded.
    pub fn add_users(&mut self, users: &[u64]) -> Result<(), ControlError> {
        self.add_users_each(users, |_| {})
    }

    /// [`add_users`](Self::add_users), calling `after_each` with the handle after each
    /// request that succeeded, so [`follows`](Self::follows) can be read (e.g. republished)
    /// between requests.
    pub(crate) fn add_users_each(
        &mut self,
        users: &[u64],
        mut after_each: impl FnMut(&Self),
    ) -> Result<(), ControlError> {
        let wanted: BTreeSet<u64> = self.follows().into_iter().collect();
        let fresh = distinct(users.iter().copied().filter(|u| !wanted.contains(u)));
        let would_follow = wanted.len() + fresh.len();
        if would_follow > MAX_USERS_PER_STREAM {
            // Checked for the whole list here, so nothing is sent over the limit.
            return Err(ControlError::OverStreamLimit { would_follow });
        }
        // One request per batch (the batches `FollowState::add` would make itself).
        for batch in fresh.chunks(MAX_USERS_PER_REQUEST) {
            let live = self.stream_id();
            self.follows.add(&self.driver, live, batch)?;
            after_each(self);
        }
        Ok(())
    }

    /// Removes `users` from the live connection through its control stream, like
    /// [`add_users`](Self::add_users). Users not followed are skipped.
    pub fn remove_users(&mut self, users: &[u64]) -> Result<(), ControlError> {
        self.remove_users_each(users, |_| {})
    }

    /// [`remove_users`](Self::remove_users), calling `after_each` with the handle after each
    /// request that succeeded, like [`add_users_each`](Self::add_users_each).
    pub(crate) fn remove_users_each(
        &mut self,
        users: &[u64],
        mut after_each: impl FnMut(&Self),
    ) -> Result<(), ControlError> {
        let wanted: BTreeSet<u64> = self.follows().into_iter().collect();
        let gone = distinct(users.iter().copied().filter(|u| wanted.contains(u)));
        for batch in gone.chunks(MAX_USERS_PER_REQUEST) {
            let live = self.stream_id();
            self.follows.remove(&self.driver, live, batch)?;
            after_each(self);
        }
        Ok(())
    }

    /// Re-applies the users added and removed through control to the live connection, if
    /// it has not seen them: after a reconnect, a connection follows only the stream's
    /// `follow` list. Returns whether it sent anything. A [`Monitor`](crate::Monitor) does
    /// this by itself; a lone handle calls it after its stream reconnects (the announce hook,
    /// [`set_announce_hook`](Self::set_announce_hook), says when).
    pub fn sync_follows(&mut self) -> Result<bool, ControlError> {
        let live = self.stream_id();
        self.follows.sync(&self.driver, live)
    }

    /// Records `users` to add through control once the stream has announced a control
    /// stream, at the next [`sync_follows`](Self::sync_follows); sends nothing now.
    pub(crate) fn follow_later(&mut self, users: &[u64]) {
        self.follows.add_later(users);
    }

    /// Every user this handle wants followed, sorted: the `follow` list, plus users added and
    /// minus users removed through control.
    pub fn follows(&self) -> Vec<u64> {
        self.follows.desired()
    }

    /// Asks the live connection who it follows and with which options (`info.json`).
    pub fn info(&self) -> Result<StreamInfo, ControlError> {
        let id = self.stream_id().ok_or(ControlError::NotAnnounced)?;
        match self
            .follows
            .call(&self.driver, &id, ControlRequest::info())?
        {
            ControlResponse::Info(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// One page of the ids `user` follows, from the live connection (`friends/ids.json`):
    /// start with [`FIRST_CURSOR`](sitebucket_proto::control::FIRST_CURSOR), then pass each
    /// page's `next_cursor` until it is `0`.
    pub fn friends_ids(&self, user: u64, cursor: i64) -> Result<FriendsPage, ControlError> {
        let id = self.stream_id().ok_or(ControlError::NotAnnounced)?;
        let request = ControlRequest::friends_ids(user, cursor);
        match self.follows.call(&self.driver, &id, request)? {
            ControlResponse::Friends(page) => Ok(page),
            other => Err(unexpected(other)),
        }
    }

    /// Shares `pacer` with this handle's control requests (by default each handle has its
    /// own).
    pub fn set_control_pacer(&mut self, pacer: SharedPacer) {
        self.follows.pacer = pacer;
    }

    /// The deadline of each control request (connect to last byte); 10 s by default.
    pub fn set_control_timeout(&mut self, timeout: Duration) {
        self.follows.timeout = timeout;
    }

    /// Installs `observer` (events besides messages, and the end of each drain) for this run
    /// and every later one: each `start`, `run` and `restart` makes a fresh [`RunState`], and
    /// the observer is carried over to it.
    pub fn set_observer(&mut self, observer: Arc<dyn Observer>) {
        self.control.set_observer(observer.clone());
        self.observer = Some(observer);
    }

    /// Makes every later run (each `start`, `run` and `restart`) honour `gate`: while it is
    /// paused, a driver that honours it (smol, tokio) reads nothing from the socket but keeps
    /// running the core's timers, so a stream silent for its stall timeout reconnects as
    /// usual. See [`ReadGate`].
    pub fn set_read_gate(&mut self, gate: ReadGate) {
        self.read_gate = Some(gate);
    }

    /// Calls `hook`, on the driver's thread, with each new control stream id the stream
    /// announces, for this run and every later one. It must return quickly.
    pub fn set_announce_hook(&mut self, hook: AnnounceHook) {
        self.control.set_announce_hook(hook.clone());
        self.announce = Some(hook);
    }

    /// Calls `hook`, on the driver's thread, with the outcome of this run and of every later
    /// one, once each as it finishes. It must return quickly.
    pub fn set_finish_hook(&mut self, hook: FinishHook) {
        self.control.set_finish_hook(hook.clone());
        self.finish = Some(hook);
    }
}

fn unexpected(response: ControlResponse) -> ControlError {
    ControlError::Decode(format!(
        "the driver returned {response:?} for another request"
    ))
}

impl<D: Driver> Drop for ListenThread<D> {
    fn drop(&mut self) {
        self.close();
        self.join();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use sitebucket_proto::{Action, Config, Credentials};

    use super::*;

    #[derive(Clone)]
    struct NeverRuns;

    impl Driver for NeverRuns {
        fn name(&self) -> &'static str {
            "never"
        }
        fn run(&self, _: &mut SiteStream, _: &mut dyn Parser, _: &Arc<RunState>) -> Outcome {
            Outcome::Stopped
        }
    }

    /// Refuses every connect, skipping backoff waits in virtual time from the run's start,
    /// and records the virtual instant of each connect.
    #[derive(Clone, Default)]
    struct Refuses(Arc<std::sync::Mutex<Vec<Instant>>>);

    impl Driver for Refuses {
        fn name(&self) -> &'static str {
            "refuses"
        }
        fn run(
            &self,
            stream: &mut SiteStream,
            _: &mut dyn Parser,
            control: &Arc<RunState>,
        ) -> Outcome {
            let mut now = Instant::now();
            loop {
                match stream.poll_action(now) {
                    Action::Connect { .. } => {
                        self.0.lock().unwrap().push(now);
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
    }

    #[test]
    fn resume_keeps_the_backoff_and_only_resumes_a_stream_that_gave_up() {
        let ms = Duration::from_millis;
        let config = Config::builder([1], Credentials::new("ck", "cs", "t", "ts"))
            .url("http://127.0.0.1:1/1.1/site.json")
            .retry_limit(Some(2))
            .build()
            .unwrap();
        // Nothing to resume before a run gave up: the handle is left as it is.
        let driver = Refuses::default();
        let mut thread = ListenThread::new(driver.clone(), SiteStream::new(config), |_: Bytes| {});
        assert!(!thread.resume().expect("resume"));
        assert!(thread.stream().is_some(), "not started");
        assert!(matches!(
            thread.run(),
            Ok(Outcome::GaveUp { attempts: 2, .. })
        ));
        let connects = || driver.0.lock().unwrap().clone();
        assert_eq!(connects()[1] - connects()[0], ms(250));

        let resumed_at = Instant::now();
        assert!(thread.resume().expect("resume"));
        assert!(matches!(
            thread.join(),
            Some(Outcome::GaveUp { attempts: 2, .. })
        ));
        let all = connects();
        assert_eq!(all.len(), 4);
        assert!(
            all[2] >= resumed_at + ms(500),
            "the first attempt after resume came {:?} after it, before the earned 500 ms",
            all[2].saturating_duration_since(resumed_at)
        );
        assert_eq!(all[3] - all[2], ms(750), "the sequence goes on");

        // `restart` forgets the backoff: the sequence starts over.
        thread.restart().expect("restart");
        thread.join();
        let all = connects();
        assert_eq!(all.len(), 6);
        assert_eq!(all[5] - all[4], ms(250), "the sequence starts over");
    }

    fn first_request(thread: &mut ListenThread<NeverRuns>) -> Bytes {
        let stream = thread.stream_mut().expect("not started");
        let now = Instant::now();
        assert!(matches!(stream.poll_action(now), Action::Connect { .. }));
        stream.handle_connected(now, 1_700_000_000);
        match stream.poll_action(now) {
            Action::Transmit(request) => request,
            other => panic!("{other:?}"),
        }
    }

    #[derive(Default)]
    struct Drains(std::sync::Mutex<u32>);

    impl Observer for Drains {
        fn drained(&self, _: &SiteStream) {
            *self.0.lock().unwrap() += 1;
        }
    }

    #[test]
    fn the_observer_is_carried_over_to_every_run() {
        let config = Config::builder([1], Credentials::new("ck", "cs", "t", "ts"))
            .url("http://127.0.0.1:1/1.1/site.json")
            .build()
            .unwrap();
        let mut thread = ListenThread::new(NeverRuns, SiteStream::new(config), |_: Bytes| {});
        let drains = Arc::new(Drains::default());
        thread.set_observer(drains.clone());
        // Each run publishes through a fresh RunState; the observer must hear every one.
        let count = || *drains.0.lock().unwrap();
        let mut seen = count();
        for step in 0..3 {
            if step < 2 {
                thread.run().unwrap();
            } else {
                thread.start().unwrap();
                thread.join();
            }
            assert!(count() > seen, "run {step} was not observed");
            seen = count();
        }
    }

    #[test]
    fn handles_never_share_nonces_across_identical_configs() {
        let config = Config::builder([1], Credentials::new("ck", "cs", "t", "ts"))
            .url("http://127.0.0.1:1/1.1/site.json")
            .build()
            .unwrap();
        let mut a = ListenThread::new(NeverRuns, SiteStream::new(config.clone()), |_: Bytes| {});
        let mut b = ListenThread::new(NeverRuns, SiteStream::new(config.clone()), |_: Bytes| {});
        assert_ne!(first_request(&mut a), first_request(&mut b));
        // The bare core stays reproducible with an explicit seed: same config, same time,
        // same bytes.
        let seeded = config.to_builder().rng_seed(7).build().unwrap();
        let mut c = SiteStream::new(seeded.clone());
        let mut d = SiteStream::new(seeded);
        let now = Instant::now();
        for s in [&mut c, &mut d] {
            let _ = s.poll_action(now);
            s.handle_connected(now, 1_700_000_000);
        }
        assert_eq!(c.poll_action(now), d.poll_action(now));
    }
}
