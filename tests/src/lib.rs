//! # sitebucket-sim — the core against the scripted server, in virtual time
//!
//! A deterministic simulator in the style of quinn's test `Pair` and str0m's `progress`: the
//! sans-IO [`SiteStream`] on one side, the test server's pure [`Session`] (one per connection
//! attempt) on the other, and a seeded network in between that splits every write at random
//! points, delays segments (in order, as TCP does) and injects [`Fault`]s: a refused connect,
//! a connect that never completes, a reset, a truncated response, a black hole.
//!
//! Time is virtual: a base `Instant` plus an offset. [`Sim::step`] jumps straight to the next
//! deadline of the core, the server or the network, so hours of backoff and stalls take
//! microseconds. Nothing sleeps. Everything random comes from the seed, and connections are
//! plain (no TLS), so a seed replays bit for bit.
//!
//! While it runs, the simulator checks the core against independent models and records every
//! broken rule in [`Trace::violations`]:
//! - every `Wait` deadline lies in the future;
//! - every reconnect wait is the one the policy's numbers give (within the jitter range when
//!   jitter is on), and the next `Connect` comes exactly when it said;
//! - the frames the user got on each connection are exactly the complete frames in the bytes
//!   that reached the client, in order — nothing lost, nothing duplicated, no partial message
//!   (decoded by a reference reader that shares no code with the core);
//! - a stall fires exactly `stall_timeout` after the last byte (or the connection coming up),
//!   never while bytes keep coming; a connect timeout exactly `connect_timeout` after `Connect`;
//! - one connection at a time; no `Connect` after `Finished` or after `disconnect()`;
//!   statuses retrying cannot fix and disconnect codes 6 and 7 finish at once; the retry
//!   limit is honoured exactly;
//! - trust, as the model has it: a `200` head alone earns nothing; a connection earns trust
//!   by handing out a message that is not a `disconnect` message (nor after one), or by
//!   staying up for `trust_after` after its head — and then the failure count and the
//!   network and HTTP sequences start over; the 420/429 sequence starts over only after
//!   `rate_limit_reset_after` up (so every wait above is checked against these rules);
//! - the core never buffers more than `max_message_bytes` + 64 KiB.
//!
//! ```
//! use std::time::Duration;
//! use sitebucket_sim::{config_builder, NetworkFaults, Sim};
//! use sitebucket_testserver::{AttemptPlan, End, Scenario, Step};
//!
//! let scenario = Scenario::new(vec![
//!     AttemptPlan::status(503, "Service Unavailable"),
//!     AttemptPlan::ok(vec![Step::Message(b"{\"a\":1}".to_vec())])
//!         .with_end(End::HoldWithKeepAlives(Duration::from_secs(30))),
//! ]);
//! let config = config_builder([1]).build().unwrap();
//! let mut sim = Sim::new(config, scenario, NetworkFaults::none(), 7);
//! sim.run_for(Duration::from_secs(60));
//! let trace = sim.trace();
//! trace.assert_clean();
//! assert_eq!(trace.connect_times(), [Duration::ZERO, Duration::from_secs(5)]);
//! assert_eq!(trace.connections[1].messages, [&b"{\"a\":1}"[..]]);
//! ```

mod network;
mod oracle;
pub mod random;
mod trace;

use std::io;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sitebucket_proto::{
    Action, Config, ConfigBuilder, Credentials, Outcome, SiteStream, StreamError, StreamEvent,
};
use sitebucket_testserver::{Credentials as ServerCredentials, Output, Scenario, Session};

pub use network::{Fault, NetworkFaults};
pub use trace::{ConnectionLog, Entry, Recorded, Recording, Trace};

use network::Pipe;
use oracle::{BackoffModel, Expected, ReferenceReader, Retry, FATAL_STATUSES};

/// The host every simulated stream connects to.
pub const HOST: &str = "127.0.0.1";
/// The port every simulated stream connects to.
pub const PORT: u16 = 8080;
/// The wall-clock seconds (Unix time) at virtual time zero, used to sign requests.
pub const UNIX_START: u64 = 1_700_000_000;
/// How far above `max_message_bytes` the core's buffers may grow.
pub const MEMORY_SLACK: usize = 64 * 1024;

/// The most actions one drain may take before the core counts as stuck.
const DRAIN_LIMIT: usize = 1_000_000;
/// The most violations kept; later ones are counted.
const MAX_VIOLATIONS: usize = 50;

/// A config builder for the simulated server: `http://127.0.0.1:8080/1.1/site.json`, signed
/// with the credentials the test server checks by default, with a fixed nonce seed (0) so
/// every run signs the same requests.
pub fn config_builder(follow: impl IntoIterator<Item = u64>) -> ConfigBuilder {
    let c = ServerCredentials::test_default();
    Config::builder(
        follow,
        Credentials::new(c.consumer_key, c.consumer_secret, c.token, c.token_secret),
    )
    .url(format!("http://{HOST}:{PORT}/1.1/site.json"))
    .rng_seed(0)
}

/// Why a `run_*` call returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The condition given to [`Sim::run_until`] held.
    Condition,
    /// The virtual time limit was reached.
    TimeLimit,
    /// The core finished and nothing is left to happen.
    Finished,
}

/// A connect in flight: it completes (or is refused) at `at`.
#[derive(Debug, Clone, Copy)]
struct PendingConnect {
    index: usize,
    at: Duration,
    refuse: bool,
}

/// One accepted connection: the server's session and the two directions of the network.
struct Conn {
    index: usize,
    attempt: usize,
    session: Session,
    /// Whether the session is still driven (not closed, truncated or black-holed).
    server_live: bool,
    server_wait: Option<Duration>,
    to_client: Pipe,
    to_server: Pipe,
    fault: Option<Fault>,
    reset_at: Option<Duration>,
    /// Response bytes the server wrote so far.
    response_bytes: u64,
    /// The reference decoding of what reached the client.
    reader: ReferenceReader,
}

impl Conn {
    /// The server wrote `bytes`: apply the connection's cut, if any, and send the rest.
    fn send_response(
        &mut self,
        net: &NetworkFaults,
        rng: &mut ChaCha8Rng,
        now: Duration,
        bytes: &[u8],
    ) {
        let start = self.response_bytes;
        self.response_bytes += bytes.len() as u64;
        let cut = match self.fault {
            Some(Fault::Truncate { after_bytes }) | Some(Fault::BlackHole { after_bytes }) => {
                Some(after_bytes)
            }
            _ => None,
        };
        let Some(cut) = cut else {
            self.to_client.send(net, rng, now, bytes);
            return;
        };
        let keep = usize::try_from(cut.saturating_sub(start))
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        self.to_client.send(net, rng, now, &bytes[..keep]);
        if keep < bytes.len() {
            // From here the server's writes go nowhere: stop driving it.
            self.server_live = false;
            self.server_wait = None;
            if matches!(self.fault, Some(Fault::Truncate { .. })) {
                self.to_client.close(net, rng, now);
            }
        }
    }
}

/// What the checks remember between actions.
struct Checks {
    backoff: BackoffModel,
    retry_limit: Option<u32>,
    max_buffered: usize,
    /// Failed attempts since the last connection that earned trust.
    consecutive_failures: u32,
    /// When the current connection got its `200` head, if it did.
    established_at: Option<Duration>,
    /// Whether the current connection earned trust.
    trusted: bool,
    /// Whether the current connection stayed up long enough to forget the 420/429 sequence.
    rate_limit_forgotten: bool,
    trust_after: Duration,
    rate_limit_reset_after: Duration,
    last_status: Option<u16>,
    /// The code of the first `disconnect` message the current connection handed out: the
    /// connection ends with it, once the frames that came with it are out.
    disconnect_code: Option<u32>,
    /// When the next `Connect` must come, after a `Disconnected`.
    reconnect_due: Option<Duration>,
    /// When the current connection came up or last received a byte: the stall timer's start.
    last_activity: Option<Duration>,
    stall_timeout: Duration,
    connect_timeout: Duration,
    disconnect_called: bool,
}

/// The simulator. See the [crate docs](crate).
pub struct Sim {
    stream: SiteStream,
    scenario: Scenario,
    server_credentials: ServerCredentials,
    faults: NetworkFaults,
    rng: ChaCha8Rng,
    recording: Recording,
    base: Instant,
    now: Duration,
    started: bool,
    client_deadline: Option<Duration>,
    finished: bool,
    /// The client's current connection (from `Connect` to `Close` or failure).
    current: Option<usize>,
    pending: Option<PendingConnect>,
    conn: Option<Conn>,
    accepted: usize,
    /// Virtual times at which `disconnect()` is called, ascending.
    commands: Vec<Duration>,
    checks: Checks,
    trace: Trace,
    dropped_violations: usize,
}

impl Sim {
    /// A simulation of a stream with `config` against a server playing `scenario`, over a
    /// network behaving as `faults`, every random choice drawn from `seed`. Nothing happens
    /// until a `run_*` or [`step`](Self::step) call.
    pub fn new(config: Config, scenario: Scenario, faults: NetworkFaults, seed: u64) -> Self {
        let jitter = config.jitter().map_or(0.0, |j| j.fraction.clamp(0.0, 1.0));
        let checks = Checks {
            backoff: BackoffModel::new(config.backoff().clone(), jitter),
            retry_limit: config.retry_limit(),
            max_buffered: config.max_message_bytes().saturating_add(MEMORY_SLACK),
            consecutive_failures: 0,
            established_at: None,
            trusted: false,
            rate_limit_forgotten: false,
            trust_after: config.trust_after(),
            rate_limit_reset_after: config.rate_limit_reset_after(),
            last_status: None,
            disconnect_code: None,
            reconnect_due: None,
            last_activity: None,
            stall_timeout: config.stall_timeout(),
            connect_timeout: config.connect_timeout(),
            disconnect_called: false,
        };
        Sim {
            stream: SiteStream::new(config),
            scenario,
            server_credentials: ServerCredentials::test_default(),
            faults,
            rng: ChaCha8Rng::seed_from_u64(seed),
            recording: Recording::Everything,
            base: Instant::now(),
            now: Duration::ZERO,
            started: false,
            client_deadline: None,
            finished: false,
            current: None,
            pending: None,
            conn: None,
            accepted: 0,
            commands: Vec::new(),
            checks,
            trace: Trace::default(),
            dropped_violations: 0,
        }
    }

    /// The server checks requests against these credentials instead of the default ones.
    pub fn with_server_credentials(mut self, credentials: ServerCredentials) -> Self {
        self.server_credentials = credentials;
        self
    }

    /// How much the trace keeps (default [`Recording::Everything`]).
    pub fn with_recording(mut self, recording: Recording) -> Self {
        self.recording = recording;
        self
    }

    /// Calls `disconnect()` on the core at virtual time `at` (now, if `at` has passed).
    pub fn disconnect_at(&mut self, at: Duration) {
        let at = at.max(self.now);
        let i = self.commands.partition_point(|t| *t <= at);
        self.commands.insert(i, at);
    }

    /// Calls `disconnect()` on the core now, and drains it.
    pub fn disconnect(&mut self) {
        self.start();
        self.checks.disconnect_called = true;
        self.stream.disconnect();
        self.drain_client();
    }

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The core under test.
    pub fn stream(&self) -> &SiteStream {
        &self.stream
    }

    /// What happened so far. Server attempt records are brought up to date when a
    /// connection closes and when a `run_*` call returns.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The trace, consuming the simulator.
    pub fn into_trace(mut self) -> Trace {
        self.sync_attempts();
        self.trace
    }

    /// Runs for `duration` of virtual time (less if the core finishes and all is quiet).
    pub fn run_for(&mut self, duration: Duration) -> Stop {
        let until = self.now.saturating_add(duration);
        self.run(until, |_| false)
    }

    /// Runs until `done(trace)` holds (checked after every step), the core finishes and all
    /// is quiet, or 30 virtual days pass.
    pub fn run_until(&mut self, done: impl FnMut(&Trace) -> bool) -> Stop {
        let until = self.now.saturating_add(Duration::from_secs(30 * 24 * 3600));
        self.run(until, done)
    }

    /// Runs until `done(trace)` holds, `duration` of virtual time passes, or the core
    /// finishes and all is quiet — whichever comes first.
    pub fn run_for_or_until(
        &mut self,
        duration: Duration,
        done: impl FnMut(&Trace) -> bool,
    ) -> Stop {
        let until = self.now.saturating_add(duration);
        self.run(until, done)
    }

    fn run(&mut self, until: Duration, mut done: impl FnMut(&Trace) -> bool) -> Stop {
        let stop = loop {
            if done(&self.trace) {
                break Stop::Condition;
            }
            match self.next_event() {
                _ if !self.started => {}
                None => break Stop::Finished,
                Some(next) if next > until => {
                    self.now = until;
                    break Stop::TimeLimit;
                }
                Some(_) => {}
            }
            self.step();
        };
        self.sync_attempts();
        stop
    }

    /// Advances to the next event (a deadline of the core, the server or the network, a
    /// segment arriving, a scheduled command) and handles everything due then. Returns
    /// `false` when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        if !self.started {
            self.start();
            return true;
        }
        let Some(next) = self.next_event() else {
            return false;
        };
        self.now = self.now.max(next);
        let now = self.now;
        let at = self.instant();

        while self.commands.first().is_some_and(|t| *t <= now) {
            self.commands.remove(0);
            self.disconnect();
        }
        if let Some(p) = self.pending.filter(|p| p.at <= now) {
            self.pending = None;
            if p.refuse {
                self.stream
                    .handle_connect_failed(at, io::ErrorKind::ConnectionRefused);
                self.drain_client();
            } else {
                self.accept(p.index);
            }
        }
        if let Some(conn) = self
            .conn
            .as_mut()
            .filter(|c| c.reset_at.is_some_and(|r| r <= now))
        {
            conn.reset_at = None;
            conn.to_client.drop_in_flight();
            conn.to_server.drop_in_flight();
            if conn.server_live {
                conn.session.handle_eof(at);
                conn.server_live = false;
                conn.server_wait = None;
            }
            self.stream.handle_eof(at);
            self.drain_client();
        }
        while let Some(segment) = self.conn.as_mut().and_then(|c| c.to_client.pop_due(now)) {
            self.deliver_to_client(&segment);
        }
        if self
            .conn
            .as_mut()
            .is_some_and(|c| c.to_client.take_fin_due(now))
        {
            self.stream.handle_eof(at);
            self.drain_client();
        }
        if let Some(conn) = &mut self.conn {
            let mut fed = false;
            while let Some(segment) = conn.to_server.pop_due(now) {
                if conn.server_live {
                    conn.session.handle_input(at, &segment);
                    fed = true;
                }
            }
            if fed || conn.server_wait.is_some_and(|w| w <= now) {
                self.drain_session();
            }
        }
        if self.client_deadline.is_some_and(|d| d <= now) {
            self.client_deadline = None;
            self.stream.handle_timeout(at);
            self.drain_client();
        }
        true
    }

    fn start(&mut self) {
        if !self.started {
            self.started = true;
            self.drain_client();
        }
    }

    fn instant(&self) -> Instant {
        self.base + self.now
    }

    fn next_event(&self) -> Option<Duration> {
        let conn = self.conn.as_ref();
        [
            self.commands.first().copied(),
            self.pending.map(|p| p.at),
            self.client_deadline,
            conn.and_then(|c| c.reset_at),
            conn.and_then(|c| c.to_client.next_at()),
            conn.and_then(|c| c.to_server.next_at()),
            conn.and_then(|c| c.server_wait.filter(|_| c.server_live)),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn violation(&mut self, what: String) {
        if self.trace.violations.len() < MAX_VIOLATIONS {
            let at = self.now;
            let conn = self.current.map_or(String::new(), |c| format!(" conn {c}"));
            self.trace
                .violations
                .push(format!("at {at:?}{conn}: {what}"));
        } else {
            self.dropped_violations += 1;
        }
    }

    fn record(&mut self, what: Recorded) {
        let keep = match (&what, self.recording) {
            (_, Recording::Everything) => true,
            (Recorded::Message(_) | Recorded::KeepAlive, Recording::Lifecycle) => false,
            (_, Recording::Lifecycle) => true,
        };
        if keep {
            self.trace.actions.push(Entry {
                at: self.now,
                connection: self.current,
                what,
            });
        }
    }

    fn log(&mut self) -> Option<&mut ConnectionLog> {
        let i = self.current?;
        self.trace.connections.get_mut(i)
    }

    fn check_memory(&mut self, when: &str) {
        let buffered = self.stream.buffered();
        if buffered > self.checks.max_buffered {
            self.violation(format!(
                "{buffered} bytes buffered {when}, over the bound of {}",
                self.checks.max_buffered
            ));
        }
    }

    fn deliver_to_client(&mut self, segment: &[u8]) {
        let at = self.instant();
        if let Some(since) = self.checks.last_activity {
            let silent = self.now - since;
            if silent > self.checks.stall_timeout {
                self.violation(format!(
                    "bytes arrive after {silent:?} of silence, but the stall timer ({:?}) never \
                     fired",
                    self.checks.stall_timeout
                ));
            }
            self.checks.last_activity = Some(self.now);
        }
        if let Some(conn) = &mut self.conn {
            conn.reader.push(segment);
        }
        if let Some(log) = self.log() {
            log.bytes_received += segment.len() as u64;
        }
        self.stream.handle_input(at, segment);
        self.check_memory("after handle_input");
        self.drain_client();
    }

    /// The server accepts connection `index`.
    fn accept(&mut self, index: usize) {
        let at = self.instant();
        let attempt = self.accepted;
        self.accepted += 1;
        let session = Session::new(
            self.scenario.plan_for(attempt),
            &self.server_credentials,
            attempt,
            at,
        );
        self.trace.attempts.push(session.record().clone());
        let fault = self.trace.connections.get(index).and_then(|c| c.fault);
        if let Some(log) = self.trace.connections.get_mut(index) {
            log.attempt = Some(attempt);
        }
        let config = self.stream.config();
        self.conn = Some(Conn {
            index,
            attempt,
            session,
            server_live: true,
            server_wait: None,
            to_client: Pipe::default(),
            to_server: Pipe::default(),
            fault,
            reset_at: match fault {
                Some(Fault::Reset { after }) => Some(self.now + after),
                _ => None,
            },
            response_bytes: 0,
            reader: ReferenceReader::new(config.framing(), config.max_message_bytes()),
        });
        self.drain_session();
        self.checks.last_activity = Some(self.now);
        self.stream
            .handle_connected(at, UNIX_START + self.now.as_secs());
        self.drain_client();
    }

    fn drain_session(&mut self) {
        let at = self.instant();
        let now = self.now;
        let base = self.base;
        let Sim {
            conn, faults, rng, ..
        } = self;
        let Some(conn) = conn else {
            return;
        };
        while conn.server_live {
            match conn.session.poll_output(at) {
                Output::Transmit(bytes) => conn.send_response(faults, rng, now, &bytes),
                Output::Wait(deadline) => {
                    conn.server_wait = Some(deadline.saturating_duration_since(base));
                    return;
                }
                Output::Idle => {
                    conn.server_wait = None;
                    return;
                }
                Output::Close => {
                    conn.server_wait = None;
                    conn.server_live = false;
                    conn.to_client.close(faults, rng, now);
                    return;
                }
            }
        }
    }

    /// Closes the current connection (or abandons the connect in flight).
    fn close_connection(&mut self) {
        self.pending = None;
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if conn.server_live {
            conn.session.handle_eof(self.instant());
        }
        if let Some(slot) = self.trace.attempts.get_mut(conn.attempt) {
            *slot = conn.session.record().clone();
        }
        if !conn.reader.expected.is_empty() {
            let n = conn.reader.expected.len();
            self.violation(format!(
                "connection {} closed with {n} complete frame(s) never handed out, first {:?}",
                conn.index,
                conn.reader.expected.front().map(short)
            ));
        }
    }

    fn sync_attempts(&mut self) {
        if self.dropped_violations > 0 {
            let n = self.dropped_violations;
            self.trace.violations.push(format!("... and {n} more"));
            self.dropped_violations = 0;
        }
        if let Some(conn) = &self.conn {
            if let Some(slot) = self.trace.attempts.get_mut(conn.attempt) {
                *slot = conn.session.record().clone();
            }
        }
    }

    /// Drains the core until `Wait` or `Finished`, carrying out and checking each action.
    fn drain_client(&mut self) {
        let at = self.instant();
        for _ in 0..DRAIN_LIMIT {
            match self.stream.poll_action(at) {
                Action::Wait(deadline) => {
                    if deadline <= at {
                        self.violation(format!(
                            "Wait({:?}) is not in the future",
                            deadline.saturating_duration_since(self.base)
                        ));
                    }
                    if self.finished {
                        self.violation("Wait after Finished".into());
                    }
                    self.client_deadline = Some(deadline.saturating_duration_since(self.base));
                    self.check_memory("after draining");
                    self.timers_passed();
                    return;
                }
                Action::Finished(outcome) => {
                    self.on_finished(outcome);
                    return;
                }
                other => self.on_action(other),
            }
        }
        self.violation(format!(
            "poll_action never settled in {DRAIN_LIMIT} actions"
        ));
    }

    fn on_action(&mut self, action: Action) {
        match action {
            Action::Connect { host, port, tls } => self.on_connect(host, port, tls),
            Action::Transmit(bytes) => {
                self.record(Recorded::Transmit(bytes.len()));
                if let Some(log) = self.log() {
                    log.bytes_sent += bytes.len() as u64;
                }
                let Sim {
                    conn, faults, rng, ..
                } = self;
                match conn {
                    Some(conn) => conn.to_server.send(faults, rng, self.now, &bytes),
                    None => self.violation("Transmit with no connection up".into()),
                }
            }
            Action::Event(event) => self.on_event(event),
            Action::Close => {
                self.record(Recorded::Close);
                if self.current.is_none() {
                    self.violation("Close with no connection".into());
                }
                self.close_connection();
                self.end_current();
            }
            other => self.violation(format!("unexpected action {other:?}")),
        }
    }

    fn on_connect(&mut self, host: String, port: u16, tls: bool) {
        if self.finished {
            self.violation("Connect after Finished".into());
        }
        if self.checks.disconnect_called {
            self.violation("Connect after disconnect()".into());
        }
        if let Some(open) = self.current {
            self.violation(format!("Connect while connection {open} is still open"));
            self.close_connection();
        }
        if let Some(due) = self.checks.reconnect_due.take() {
            if due != self.now {
                self.violation(format!(
                    "reconnected at {:?}, the wait said {due:?}",
                    self.now
                ));
            }
        }
        let index = self.trace.connections.len();
        let fault = self.faults.choose(index, &mut self.rng);
        self.trace.connections.push(ConnectionLog {
            index,
            connect_at: self.now,
            fault,
            ..ConnectionLog::default()
        });
        self.current = Some(index);
        self.checks.established_at = None;
        self.checks.trusted = false;
        self.checks.rate_limit_forgotten = false;
        self.checks.disconnect_code = None;
        self.checks.last_activity = None;
        self.record(Recorded::Connect { host, port, tls });
        let at = self.now + self.faults.connect_delay(&mut self.rng);
        self.pending = match fault {
            Some(Fault::ConnectBlackHole) => None,
            Some(Fault::Refuse) => Some(PendingConnect {
                index,
                at,
                refuse: true,
            }),
            _ => Some(PendingConnect {
                index,
                at,
                refuse: false,
            }),
        };
    }

    /// The current connection is over (closed, refused or timed out).
    fn end_current(&mut self) {
        let now = self.now;
        if let Some(log) = self.log() {
            log.closed_at.get_or_insert(now);
        }
    }

    fn on_event(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Connected { status, reason } => {
                self.record(Recorded::Connected {
                    status,
                    reason: reason.clone(),
                });
                let seen = self.log().and_then(|l| l.status);
                if let Some(first) = seen {
                    self.violation(format!("a second head ({status}) after {first}"));
                }
                if let Some(log) = self.log() {
                    log.status = Some(status);
                }
                let reference = self.conn.as_ref().and_then(|c| c.reader.status);
                if reference != Some(status) {
                    self.violation(format!(
                        "head {status} {reason}, the bytes received say {reference:?}"
                    ));
                }
                self.checks.last_status = Some(status);
                if status == 200 {
                    // A `200` head alone earns nothing.
                    self.checks.established_at = Some(self.now);
                }
            }
            StreamEvent::Message(message) => {
                self.trace.messages += 1;
                self.record(Recorded::Message(message.len()));
                if self.checks.disconnect_code.is_none() {
                    match oracle::disconnect_code(&message) {
                        Some(code) => self.checks.disconnect_code = Some(code),
                        // A real message earns trust the moment it is handed out.
                        None if self.checks.established_at.is_some() => self.earn_trust(),
                        None => {}
                    }
                }
                self.expect_frame(Expected::Message(message.to_vec()));
                let keep = self.recording == Recording::Everything;
                if let Some(log) = self.log() {
                    log.message_count += 1;
                    if keep {
                        log.messages.push(message);
                    }
                }
            }
            StreamEvent::KeepAlive => {
                self.trace.keep_alives += 1;
                self.record(Recorded::KeepAlive);
                self.expect_frame(Expected::KeepAlive);
                if let Some(log) = self.log() {
                    log.keep_alives += 1;
                }
            }
            StreamEvent::Disconnected { error, retry_in } => {
                self.record(Recorded::Disconnected {
                    error: error.clone(),
                    retry_in,
                });
                self.on_disconnected(&error, retry_in);
            }
            other => self.violation(format!("unexpected event {other:?}")),
        }
    }

    /// The user got `got`: it must be the next complete frame the reference decoded.
    fn expect_frame(&mut self, got: Expected) {
        let next = self
            .conn
            .as_mut()
            .and_then(|c| c.reader.expected.pop_front());
        match next {
            Some(want) if want == got => {}
            Some(want) => self.violation(format!(
                "handed out {}, the next complete frame received is {}",
                short(&got),
                short(&want)
            )),
            None => self.violation(format!(
                "handed out {} that no complete frame received accounts for (duplicate or \
                 partial)",
                short(&got)
            )),
        }
    }

    fn on_disconnected(&mut self, error: &StreamError, retry_in: Duration) {
        if self.conn.is_some() {
            self.violation("Disconnected while the connection is still open".into());
        }
        let retry = oracle::classify(error);
        if retry == Retry::Never {
            self.violation(format!(
                "retrying an error that retrying cannot fix: {error}"
            ));
        }
        if let StreamError::DisconnectMessage { code, .. } = error {
            if self.checks.disconnect_code != Some(*code) {
                self.violation(format!(
                    "disconnect code {code}, but the connection handed out no such \
                     disconnect message first"
                ));
            }
        }
        self.check_timer(error);
        if !self.checks.trusted {
            // Ended before earning trust: a failed attempt of its kind.
            self.checks.consecutive_failures += 1;
        }
        if let Some(limit) = self.checks.retry_limit {
            if self.checks.consecutive_failures >= limit {
                self.violation(format!(
                    "{} consecutive failures reached the retry limit {limit}, yet it retries",
                    self.checks.consecutive_failures
                ));
            }
        }
        if let Err(why) = self.checks.backoff.check(retry, retry_in) {
            self.violation(format!("after {error}: {why}"));
        }
        self.checks.reconnect_due = Some(self.now + retry_in);
        self.end_current();
        self.current = None;
        self.checks.established_at = None;
        self.checks.trusted = false;
    }

    /// The current connection earned trust: the failure count and the network and HTTP
    /// sequences start over.
    fn earn_trust(&mut self) {
        if !self.checks.trusted {
            self.checks.trusted = true;
            self.checks.consecutive_failures = 0;
            self.checks.backoff.trusted();
        }
    }

    /// The core settled (`Wait`) at `now`: every timer due by now has fired. An open `200`
    /// connection up for `trust_after` earned trust, and one up for `rate_limit_reset_after`
    /// made the 420/429 sequence start over. (Had the stall timer run out first, or a
    /// `disconnect` message or a failure come at the same instant, the connection would be
    /// over already.)
    fn timers_passed(&mut self) {
        if self.current.is_none() {
            return;
        }
        let Some(head_at) = self.checks.established_at else {
            return;
        };
        if self.now >= head_at + self.checks.trust_after {
            self.earn_trust();
        }
        if !self.checks.rate_limit_forgotten
            && self.now >= head_at + self.checks.rate_limit_reset_after
        {
            self.checks.rate_limit_forgotten = true;
            self.checks.backoff.forget_rate_limit();
        }
    }

    /// A stall or connect timeout must fire exactly when its timer runs out.
    fn check_timer(&mut self, error: &StreamError) {
        let (started, timeout) = match error {
            StreamError::Stall(d) => (self.checks.last_activity, (*d, self.checks.stall_timeout)),
            StreamError::ConnectTimeout(d) => (
                self.log().map(|l| l.connect_at),
                (*d, self.checks.connect_timeout),
            ),
            _ => return,
        };
        let (said, configured) = timeout;
        match started {
            Some(start) if said == configured && self.now == start + configured => {}
            _ => self.violation(format!(
                "{error} at {:?}; the timer ({configured:?}) started at {started:?}",
                self.now
            )),
        }
    }

    fn on_finished(&mut self, outcome: Outcome) {
        self.client_deadline = None;
        if self.finished {
            if self.trace.outcome.as_ref() != Some(&outcome) {
                self.violation(format!("finished again, differently: {outcome}"));
            }
            return;
        }
        self.finished = true;
        self.record(Recorded::Finished(outcome.clone()));
        if self.conn.is_some() {
            self.violation("Finished with the connection still open".into());
            self.close_connection();
        }
        match &outcome {
            Outcome::Stopped => {
                if !self.checks.disconnect_called {
                    self.violation("Stopped without disconnect()".into());
                }
            }
            Outcome::Fatal { status, .. } => {
                if self.checks.last_status != Some(*status) || !FATAL_STATUSES.contains(status) {
                    self.violation(format!(
                        "Fatal({status}) after head {:?}",
                        self.checks.last_status
                    ));
                }
            }
            Outcome::Revoked { code, .. } => {
                if !matches!(code, 6 | 7) || self.checks.disconnect_code != Some(*code) {
                    self.violation(format!(
                        "Revoked({code}) after disconnect code {:?}",
                        self.checks.disconnect_code
                    ));
                }
            }
            Outcome::GaveUp {
                attempts,
                last_error,
            } => {
                let failures = self.checks.consecutive_failures + 1;
                if self.checks.retry_limit != Some(failures) || *attempts != failures {
                    self.violation(format!(
                        "gave up after {attempts} attempts; {failures} consecutive failures, \
                         limit {:?}",
                        self.checks.retry_limit
                    ));
                }
                if oracle::classify(last_error) == Retry::Never {
                    self.violation(format!("gave up on {last_error}, which is fatal"));
                }
            }
            other => self.violation(format!("unexpected outcome {other}")),
        }
        self.end_current();
        self.current = None;
        self.pending = None;
        self.trace.outcome = Some(outcome);
    }
}

/// A frame, shortened for a message.
fn short(frame: &Expected) -> String {
    match frame {
        Expected::KeepAlive => "a keep-alive".into(),
        Expected::Message(m) => {
            let text = String::from_utf8_lossy(&m[..m.len().min(60)]);
            format!("message of {} bytes {text:?}…", m.len())
        }
    }
}
