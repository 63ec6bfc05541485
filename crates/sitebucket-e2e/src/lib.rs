//! # sitebucket-e2e — one end-to-end suite for every driver
//!
//! Each check is a `pub fn` generic over [`Driver`]: it starts a
//! [`sitebucket_testserver::TestServer`] on loopback with a scripted scenario, runs real
//! streams with the driver under the shared [`ListenThread`] handle (or the [`Monitor`]), and
//! panics with a message saying what went wrong. Every check is bounded in time: waits have
//! deadlines, and a stream that overstays is closed before the check fails.
//!
//! A driver crate runs the whole suite with one line in a test file:
//!
//! ```text
//! // crates/sitebucket-mio/tests/e2e.rs
//! sitebucket_e2e::suite!(sitebucket_mio::MioDriver::new());
//! ```
//!
//! [`suite!`] expands to one `#[test]` per check (plain and TLS where it matters), so every
//! driver passes the very same checks. The checks can also be called one by one.

pub mod nats;
pub mod resolve;
pub mod storm;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sitebucket_proto::control::{ControlCall, ControlError, ControlRequest, FIRST_CURSOR};
use sitebucket_proto::{
    BackoffPolicy, Config, ConfigBuilder, Credentials, Parser, TwitterBackoff, With,
};
use sitebucket_proto::{Outcome, StreamError};
use sitebucket_testserver::{
    AttemptPlan, ChunkPlan, End, Scenario, ServerOptions, Step, TestServer,
};
use sitebucket_thread::sync::lock;
use sitebucket_thread::{Driver, ListenThread, Monitor, SiteStream};

/// The contract every driver keeps: a stop takes effect within this long, in every state.
pub const CLOSE_WITHIN: Duration = Duration::from_millis(100);

/// The longest any single wait in a check lasts before the check fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Plain TCP or TLS (the core does TLS; the driver only moves bytes either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `http://`.
    Plain,
    /// `https://`, with the test server's CA passed as an extra root.
    Tls,
}

// ----- building blocks -----

/// A parser that keeps every message, shared with the test that reads them.
#[derive(Debug, Clone, Default)]
pub struct Collected(Arc<Mutex<Vec<Bytes>>>);

impl Collected {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Bytes>> {
        lock(&self.0)
    }

    /// Every message so far, in order.
    pub fn messages(&self) -> Vec<Bytes> {
        self.lock().clone()
    }

    /// How many messages so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no message arrived yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Parser for Collected {
    fn parse(&mut self, message: Bytes) {
        self.lock().push(message);
    }
}

/// Starts a test server for `scenario` over `transport` (default test credentials).
pub fn server(scenario: Scenario, transport: Transport) -> TestServer {
    let options = match transport {
        Transport::Plain => ServerOptions::plain(),
        Transport::Tls => ServerOptions::tls(),
    };
    TestServer::start(scenario, options).expect("start the test server")
}

/// A config builder aimed at `server`, signed with its credentials, trusting its CA, with
/// test-sized timings: 20 ms network backoff steps, 50 ms HTTP backoff, 2 s connect timeout
/// and a 5 s stall timeout (which also bounds a check whose driver misses a stop).
pub fn config_for(server: &TestServer, follow: impl IntoIterator<Item = u64>) -> ConfigBuilder {
    let c = server.credentials();
    let credentials = Credentials::new(
        c.consumer_key.clone(),
        c.consumer_secret.clone(),
        c.token.clone(),
        c.token_secret.clone(),
    );
    let mut builder = Config::builder(follow, credentials)
        .url(server.url())
        .connect_timeout(Duration::from_secs(2))
        .stall_timeout(Duration::from_secs(5))
        .backoff(fast_backoff());
    if let Some(pem) = server.ca_pem() {
        builder = builder.extra_root_certs_pem(pem.into_bytes());
    }
    builder
}

/// Twitter's policy scaled down for tests: 20 ms network steps (up to 200 ms), 50 ms HTTP
/// and rate-limit starts.
pub fn fast_backoff() -> BackoffPolicy {
    BackoffPolicy::Twitter(TwitterBackoff {
        network_step: Duration::from_millis(20),
        network_max: Duration::from_millis(200),
        http_start: Duration::from_millis(50),
        http_max: Duration::from_millis(400),
        rate_limit_start: Duration::from_millis(50),
        rate_limit_max: Duration::from_millis(400),
    })
}

/// Polls `done` every millisecond until it holds; panics naming `what` after [`PATIENCE`].
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits for the run to end by itself (bounded), then joins it and returns how it ended.
pub fn join_finished<D: Driver>(listener: &mut ListenThread<D>) -> Outcome {
    let deadline = Instant::now() + PATIENCE;
    while listener.is_running() {
        if Instant::now() >= deadline {
            listener.close();
            listener.join();
            panic!("the stream did not finish by itself within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    listener.join().expect("a started stream has an outcome")
}

/// Closes the stream, joins it, asserts it took less than [`CLOSE_WITHIN`] and ended
/// [`Outcome::Stopped`]. `state` names what the stream was doing, for the message.
pub fn close_promptly<D: Driver>(listener: &mut ListenThread<D>, state: &str) {
    let started = Instant::now();
    listener.close();
    let outcome = listener.join();
    let took = started.elapsed();
    assert!(
        took < CLOSE_WITHIN,
        "close() while {state} took {took:?} (contract: < {CLOSE_WITHIN:?})"
    );
    assert_eq!(outcome, Some(Outcome::Stopped), "close() while {state}");
}

/// Numbered test messages, some with a bare `\n` inside (allowed by the protocol).
pub fn numbered_messages(range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range
        .map(|i| {
            if i % 3 == 0 {
                format!("{{\"n\":{i},\"text\":\"line one\nline two\"}}").into_bytes()
            } else {
                format!(
                    "{{\"n\":{i},\"for_user\":{},\"text\":\"message {i}\"}}",
                    1000 + i
                )
                .into_bytes()
            }
        })
        .collect()
}

fn message_steps(messages: &[Vec<u8>]) -> Vec<Step> {
    messages.iter().cloned().map(Step::Message).collect()
}

fn as_bytes(messages: &[Vec<u8>]) -> Vec<Bytes> {
    messages.iter().cloned().map(Bytes::from).collect()
}

/// A listener whose accept queue is full, so a connect to it hangs in `SYN_SENT` (on Linux):
/// a loopback black hole for testing a stop during a connect.
#[derive(Debug)]
pub struct BlackHole {
    _listener: socket2::Socket,
    _filler: TcpStream,
    addr: SocketAddr,
}

impl BlackHole {
    /// Binds 127.0.0.1 with a backlog of 0 and fills its one accept slot.
    pub fn new() -> Self {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
        listener.bind(&any.into()).expect("bind 127.0.0.1");
        listener.listen(0).expect("listen");
        let addr = listener
            .local_addr()
            .expect("local address")
            .as_socket()
            .expect("an IPv4 address");
        let filler = TcpStream::connect(addr).expect("fill the accept queue");
        Self {
            _listener: listener,
            _filler: filler,
            addr,
        }
    }

    /// `http://127.0.0.1:PORT/1.1/site.json`.
    pub fn url(&self) -> String {
        format!("http://{}/1.1/site.json", self.addr)
    }
}

impl Default for BlackHole {
    fn default() -> Self {
        Self::new()
    }
}

/// A loopback port nobody listens on (bound, then released).
pub fn refused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    listener.local_addr().expect("local address").port()
}

// ----- the checks -----

/// Messages arrive byte-exact, whatever the chunk boundaries; the request was signed right.
pub fn happy_path<D: Driver>(driver: D, transport: Transport) {
    let sent = numbered_messages(0..50);
    let plan = AttemptPlan::ok(message_steps(&sent))
        .with_chunks(ChunkPlan::Random {
            seed: 7,
            min: 1,
            max: 200,
        })
        .with_end(End::HoldWithKeepAlives(Duration::from_millis(50)));
    let server = server(Scenario::single(plan), transport);
    let config = config_for(&server, [12, 13]).build().expect("valid config");
    let collected = Collected::new();
    let mut listener = ListenThread::spawn(driver, SiteStream::new(config), collected.clone())
        .expect("spawn the stream");
    wait_for("every message", || collected.len() >= sent.len());
    wait_for("a keep-alive", || listener.status().stats.keep_alives > 0);
    assert_eq!(collected.messages(), as_bytes(&sent));
    assert!(listener.connection_healthy());
    close_promptly(&mut listener, "streaming");
    let attempts = server.attempts();
    assert_eq!(attempts.len(), 1, "one connection only");
    assert!(
        attempts[0].signature_ok,
        "the server accepted the signature"
    );
    assert_eq!(attempts[0].tls, transport == Transport::Tls);
    assert_eq!(attempts[0].query_param("follow"), Some("12,13"));
    assert!(
        server.wait_for_open_connections(0, PATIENCE),
        "the socket is closed"
    );
}

/// A [`ParallelParser`](sitebucket_thread::ParallelParser) on four workers, each parse held
/// up by a seeded random delay, hands the driver's messages to its handler in stream order:
/// the handler sees exactly what the server sent, message for message.
pub fn parallel_parser_keeps_stream_order<D: Driver>(driver: D) {
    let sent = numbered_messages(0..300);
    let plan = AttemptPlan::ok(message_steps(&sent))
        .with_chunks(ChunkPlan::Random {
            seed: 11,
            min: 1,
            max: 4000,
        })
        .with_end(End::HoldWithKeepAlives(Duration::from_millis(50)));
    let server = server(Scenario::single(plan), Transport::Plain);
    let config = config_for(&server, [12]).build().expect("valid config");
    let collected = Collected::new();
    let parser = {
        let mut collected = collected.clone();
        sitebucket_thread::ParallelParser::builder()
            .threads(4)
            .staged(
                |message: Bytes| {
                    // 0–300 µs, a pure function of the message: the same in every run.
                    let spin = message.iter().fold(0u64, |h, b| {
                        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
                    }) % 300;
                    std::thread::sleep(Duration::from_micros(spin));
                    message
                },
                move |message: Bytes| collected.parse(message),
            )
            .expect("spawn the parse workers")
    };
    let mut listener =
        ListenThread::spawn(driver, SiteStream::new(config), parser).expect("spawn the stream");
    wait_for("every message", || collected.len() >= sent.len());
    close_promptly(&mut listener, "streaming");
    assert_eq!(collected.messages(), as_bytes(&sent));
}

/// A connection the server closes mid-message is replaced; every message the server sent
/// in full arrives exactly once, the half message never.
pub fn reconnect_after_mid_stream_close<D: Driver>(driver: D, transport: Transport) {
    let first = numbered_messages(0..10);
    let second = numbered_messages(10..20);
    let mut steps = message_steps(&first);
    steps.push(Step::RawBody(b"{\"n\":\"half a mess".to_vec()));
    steps.push(Step::CloseNow);
    let scenario = Scenario::new(vec![
        AttemptPlan::ok(steps),
        AttemptPlan::ok(message_steps(&second)).with_end(End::Stall),
    ]);
    let server = server(scenario, transport);
    let config = config_for(&server, [12]).build().expect("valid config");
    let collected = Collected::new();
    let mut listener = ListenThread::spawn(driver, SiteStream::new(config), collected.clone())
        .expect("spawn the stream");
    wait_for("the messages of both connections", || collected.len() >= 20);
    let mut expected = as_bytes(&first);
    expected.extend(as_bytes(&second));
    assert_eq!(collected.messages(), expected);
    let status = listener.status();
    assert_eq!(status.stats.reconnects, 1);
    // The half message is reported with its size (issue 12: nothing dropped in silence).
    assert_eq!(
        status.stats.last_error,
        Some(StreamError::ClosedMidMessage {
            partial_bytes: b"{\"n\":\"half a mess".len()
        })
    );
    close_promptly(&mut listener, "streaming after a reconnect");
    assert_eq!(server.attempts().len(), 2);
}

/// A connection that goes silent is dropped after the stall timeout and replaced.
pub fn stall_reconnects<D: Driver>(driver: D) {
    let stall = Duration::from_millis(300);
    let scenario = Scenario::new(vec![
        AttemptPlan::ok(message_steps(&numbered_messages(0..1))).with_end(End::Stall),
        AttemptPlan::ok(message_steps(&numbered_messages(1..2))).with_end(End::Stall),
    ]);
    let server = server(scenario, Transport::Plain);
    let config = config_for(&server, [12])
        .stall_timeout(stall)
        .build()
        .expect("valid config");
    let collected = Collected::new();
    let mut listener = ListenThread::spawn(driver, SiteStream::new(config), collected.clone())
        .expect("spawn the stream");
    wait_for("a message from the second connection", || {
        collected.len() >= 2
    });
    assert_eq!(collected.messages(), as_bytes(&numbered_messages(0..2)));
    assert_eq!(
        listener.status().stats.last_error,
        Some(StreamError::Stall(stall))
    );
    let attempts = server.attempts();
    let request_at = attempts[0].request_at.expect("the first request arrived");
    let gap = attempts[1].at.duration_since(request_at);
    assert!(
        gap >= stall,
        "reconnected {gap:?} after the request; stall is {stall:?}"
    );
    close_promptly(&mut listener, "streaming after a stall");
}

/// A `420` backs off for at least the rate-limit start before the next attempt.
pub fn rate_limited_420_backs_off<D: Driver>(driver: D) {
    let wait = Duration::from_millis(200);
    let scenario = Scenario::new(vec![
        AttemptPlan::status(420, "Enhance Your Calm"),
        AttemptPlan::ok(message_steps(&numbered_messages(0..1))).with_end(End::Stall),
    ]);
    let server = server(scenario, Transport::Plain);
    let config = config_for(&server, [12])
        .backoff(BackoffPolicy::Twitter(TwitterBackoff {
            rate_limit_start: wait,
            ..TwitterBackoff::default()
        }))
        .build()
        .expect("valid config");
    let collected = Collected::new();
    let mut listener = ListenThread::spawn(driver, SiteStream::new(config), collected.clone())
        .expect("spawn the stream");
    wait_for("the message after the 420", || !collected.is_empty());
    let attempts = server.attempts();
    assert_eq!(attempts[0].status, Some(420));
    let gap = attempts[1].at.duration_since(attempts[0].at);
    assert!(
        gap >= wait,
        "second attempt {gap:?} after the first; 420 wait is {wait:?}"
    );
    assert_eq!(
        listener.status().stats.last_error,
        Some(StreamError::Status {
            status: 420,
            reason: "Enhance Your Calm".into()
        })
    );
    close_promptly(&mut listener, "streaming after a 420");
}

/// A wrong secret gets a `401`: the stream stops at once, unhealthy, without retrying.
pub fn fatal_401_stops<D: Driver>(driver: D, transport: Transport) {
    let server = server(
        Scenario::single(AttemptPlan::ok(Vec::new()).with_end(End::Stall)),
        transport,
    );
    let good = config_for(&server, [12]).build().expect("valid config");
    let c = good.credentials().expect("OAuth 1.0a credentials");
    let wrong = Credentials::new(
        c.consumer_key(),
        "not the secret",
        c.token(),
        c.token_secret(),
    );
    let config = good
        .to_builder()
        .credentials(wrong)
        .build()
        .expect("valid config");
    let mut listener = ListenThread::spawn(driver, SiteStream::new(config), Collected::new())
        .expect("spawn the stream");
    let outcome = join_finished(&mut listener);
    assert!(
        matches!(outcome, Outcome::Fatal { status: 401, .. }),
        "ended {outcome:?}"
    );
    assert!(!listener.connection_healthy());
    assert_eq!(server.attempts().len(), 1, "no retry after a 401");
    assert!(!server.attempts()[0].signature_ok);
}

/// `close()` while a connect hangs (the peer never answers the SYN).
pub fn close_while_connecting<D: Driver>(driver: D) {
    let hole = BlackHole::new();
    let credentials = Credentials::new("key", "secret", "token", "token secret");
    let config = Config::builder([12], credentials)
        .url(hole.url())
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("valid config");
    let mut listener = ListenThread::spawn(driver, SiteStream::new(config), Collected::new())
        .expect("spawn the stream");
    wait_for("the connect to start", || {
        listener.status().stats.attempts >= 1
    });
    // Let the driver get into its wait for the connect.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(listener.status().stats.bytes, 0, "the black hole answered");
    close_promptly(&mut listener, "connecting");
}

/// `close()` while the connection is up and silent (no byte, ever).
pub fn close_while_silent<D: Driver>(driver: D, transport: Transport) {
    let server = server(Scenario::single(AttemptPlan::never_answers()), transport);
    let config = config_for(&server, [12]).build().expect("valid config");
    let mut listener = ListenThread::spawn(driver, SiteStream::new(config), Collected::new())
        .expect("spawn the stream");
    assert!(server.wait_for_attempts(1, PATIENCE), "the request arrived");
    std::thread::sleep(Duration::from_millis(50));
    close_promptly(&mut listener, "waiting on a silent connection");
    assert!(
        server.wait_for_open_connections(0, PATIENCE),
        "the socket is closed"
    );
}

/// `close()` while backing off for a minute after a `420`.
pub fn close_while_backing_off<D: Driver>(driver: D) {
    let server = server(
        Scenario::single(AttemptPlan::status(420, "Enhance Your Calm")),
        Transport::Plain,
    );
    let config = config_for(&server, [12])
        .backoff(BackoffPolicy::default())
        .build()
        .expect("valid config");
    let mut listener = ListenThread::spawn(driver, SiteStream::new(config), Collected::new())
        .expect("spawn the stream");
    wait_for("the backoff", || listener.status().stats.reconnects >= 1);
    std::thread::sleep(Duration::from_millis(50));
    close_promptly(&mut listener, "backing off");
    assert_eq!(server.attempts().len(), 1);
}

/// `close()` while messages pour in as fast as the connection takes them.
pub fn close_mid_stream<D: Driver>(driver: D, transport: Transport) {
    let plan = AttemptPlan::ok(vec![Step::Repeat(sitebucket_testserver::Repeat::endless(
        numbered_messages(0..20),
    ))]);
    let server = server(Scenario::single(plan), transport);
    let config = config_for(&server, [12]).build().expect("valid config");
    let collected = Collected::new();
    let mut listener = ListenThread::spawn(driver, SiteStream::new(config), collected.clone())
        .expect("spawn the stream");
    wait_for("a flood of messages", || collected.len() >= 1000);
    close_promptly(&mut listener, "streaming a flood");
    let got = collected.messages();
    let pool = as_bytes(&numbered_messages(0..20));
    for (i, message) in got.iter().enumerate() {
        assert_eq!(message, &pool[i % pool.len()], "message {i} of the flood");
    }
}

/// `restart()` after a fatal status resets the stream and connects again with it.
pub fn restart_after_fatal<D: Driver>(driver: D) {
    let scenario = Scenario::new(vec![
        AttemptPlan::status(403, "Forbidden"),
        AttemptPlan::ok(message_steps(&numbered_messages(0..3))).with_end(End::Stall),
    ]);
    let server = server(scenario, Transport::Plain);
    let config = config_for(&server, [12]).build().expect("valid config");
    let collected = Collected::new();
    let mut listener = ListenThread::spawn(driver, SiteStream::new(config), collected.clone())
        .expect("spawn the stream");
    let outcome = join_finished(&mut listener);
    assert!(
        matches!(outcome, Outcome::Fatal { status: 403, .. }),
        "ended {outcome:?}"
    );
    assert!(!listener.connection_healthy());
    listener.restart().expect("restart");
    wait_for("the messages after the restart", || collected.len() >= 3);
    assert_eq!(collected.messages(), as_bytes(&numbered_messages(0..3)));
    assert!(listener.connection_healthy());
    assert_eq!(
        listener.status().stats.attempts,
        2,
        "the same stream, counting on"
    );
    close_promptly(&mut listener, "streaming after a restart");
}

/// `restart()` of a running stream closes its connection and opens a new one.
pub fn restart_while_streaming<D: Driver>(driver: D) {
    let plan = AttemptPlan::ok(message_steps(&numbered_messages(0..2))).with_end(End::Stall);
    let server = server(Scenario::single(plan), Transport::Plain);
    let config = config_for(&server, [12]).build().expect("valid config");
    let collected = Collected::new();
    let mut listener = ListenThread::spawn(driver, SiteStream::new(config), collected.clone())
        .expect("spawn the stream");
    wait_for("the first connection's messages", || collected.len() >= 2);
    listener.restart().expect("restart");
    wait_for("the second connection's messages", || collected.len() >= 4);
    assert_eq!(server.attempts().len(), 2);
    assert!(
        server.wait_for_open_connections(1, PATIENCE),
        "the old socket is closed"
    );
    close_promptly(&mut listener, "streaming after a restart");
}

/// Refused connections back off and give up at the retry limit.
pub fn retry_limit_gives_up<D: Driver>(driver: D) {
    let credentials = Credentials::new("key", "secret", "token", "token secret");
    let config = Config::builder([12], credentials)
        .url(format!("http://127.0.0.1:{}/1.1/site.json", refused_port()))
        .backoff(fast_backoff())
        .retry_limit(Some(3))
        .build()
        .expect("valid config");
    let mut listener = ListenThread::spawn(driver, SiteStream::new(config), Collected::new())
        .expect("spawn the stream");
    let outcome = join_finished(&mut listener);
    assert_eq!(
        outcome,
        Outcome::GaveUp {
            attempts: 3,
            last_error: StreamError::ConnectFailed(std::io::ErrorKind::ConnectionRefused),
        }
    );
    let status = listener.status();
    assert_eq!(status.stats.attempts, 3);
    assert_eq!(
        status.stats.reconnects, 2,
        "backed off between the attempts"
    );
    assert!(!listener.connection_healthy());
}

/// The [`Monitor`] shards 150 users into two streams; when the server kills both
/// connections and their reconnects fail for good, `check()` restarts them.
pub fn monitor_restores_killed_streams<D: Driver>(driver: D) {
    // One real message earns each connection trust, so its drop is no failed attempt (a
    // connection with keep-alives only would need 30 s up).
    let hold = AttemptPlan::ok(vec![Step::Message(b"{\"hello\":1}".to_vec())])
        .with_end(End::HoldWithKeepAlives(Duration::from_millis(50)));
    // Attempts 0–1: the two streams; 2–3: their reconnects, refused for good (with a retry
    // limit of 1); 4 on: the restarts.
    let scenario = Scenario::new(vec![
        hold.clone(),
        hold.clone(),
        AttemptPlan::status(503, "Service Unavailable"),
        AttemptPlan::status(503, "Service Unavailable"),
        hold,
    ]);
    let server = server(scenario, Transport::Plain);
    let template = config_for(&server, [1])
        .retry_limit(Some(1))
        .build()
        .expect("valid config");
    let users: Vec<u64> = (1..=150).collect();
    let monitor = Monitor::spawn(driver, template, &users, || Box::new(Collected::new()))
        .expect("start the monitor");
    assert_eq!(monitor.streams().len(), 2);
    assert_eq!(monitor.follows(), users);
    wait_for("both streams to stream", || {
        monitor
            .streams()
            .iter()
            .all(|s| s.status.stats.keep_alives > 0)
    });
    assert_eq!(
        monitor.check().expect("check"),
        0,
        "healthy streams are left alone"
    );

    assert_eq!(server.kill_connections(), 2);
    wait_for("both reconnects to give up", || {
        monitor.streams().iter().all(|s| !s.status.healthy)
    });
    assert_eq!(monitor.check().expect("check"), 2, "both streams restarted");
    wait_for("both restarted streams to get a 200", || {
        let attempts = server.attempts();
        attempts.len() >= 6 && attempts[4..].iter().all(|a| a.status == Some(200))
    });
    assert!(monitor.streams().iter().all(|s| s.status.healthy));
    assert_eq!(server.attempts().len(), 6, "one restart per stream");

    // Every user is covered exactly once by the live connections' requests.
    let mut followed: Vec<u64> = server.attempts()[4..].iter().flat_map(follow_of).collect();
    followed.sort_unstable();
    assert_eq!(followed, users);

    let started = Instant::now();
    monitor.disconnect();
    assert!(
        started.elapsed() < 2 * CLOSE_WITHIN,
        "disconnect took {:?}",
        started.elapsed()
    );
    assert!(monitor.streams().is_empty());
    assert!(
        server.wait_for_open_connections(0, PATIENCE),
        "every socket is closed"
    );
}

/// The monitor never restarts a stream the server refused for good: over real sockets, a
/// stream answered `401` is attempted once, set aside with its users and the status (and its
/// hook told), and not attempted again however often the monitor checks; the monitor's
/// other stream goes on.
pub fn monitor_sets_aside_a_refused_stream<D: Driver>(driver: D) {
    let hold =
        AttemptPlan::ok(Vec::new()).with_end(End::HoldWithKeepAlives(Duration::from_millis(50)));
    // Whichever stream connects first is refused.
    let scenario = Scenario::new(vec![AttemptPlan::status(401, "Unauthorized"), hold]);
    let server = server(scenario, Transport::Plain);
    let template = config_for(&server, [1]).build().expect("valid config");
    let users: Vec<u64> = (1..=150).collect();
    let monitor = Monitor::spawn(driver, template, &users, || Box::new(Collected::new()))
        .expect("start the monitor");
    let heard = Arc::new(Mutex::new(Vec::new()));
    {
        let heard = heard.clone();
        monitor.set_failed_hook(move |failed| lock(&heard).push(failed.clone()));
    }
    monitor.run_every(Duration::from_millis(20));
    wait_for("the refused stream to be set aside", || {
        monitor.failed().len() == 1
    });
    // Dozens of checks.
    std::thread::sleep(Duration::from_millis(600));
    let failed = monitor.failed();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        matches!(failed[0].outcome, Outcome::Fatal { status: 401, .. }),
        "{failed:?}"
    );
    assert_eq!(*lock(&heard), failed, "the hook heard it once");
    let attempts = server.attempts();
    assert_eq!(
        attempts.len(),
        2,
        "one attempt per stream, no retry of the 401"
    );
    assert_eq!(attempts[0].status, Some(401));
    assert_eq!(failed[0].follows, follow_of(&attempts[0]));
    let streams = monitor.streams();
    assert_eq!(streams.len(), 1, "the other stream goes on");
    assert_eq!(streams[0].follow, follow_of(&attempts[1]));
    assert!(streams[0].status.healthy);
    let mut all: Vec<u64> = failed[0].follows.clone();
    all.extend(monitor.follows());
    all.sort_unstable();
    assert_eq!(all, users, "every user is either streamed or reported");
    monitor.disconnect();
}

/// The user ids of an attempt's `follow` parameter.
pub fn follow_of(attempt: &sitebucket_testserver::AttemptRecord) -> Vec<u64> {
    attempt
        .query_param("follow")
        .unwrap_or_default()
        .split(',')
        .filter_map(|id| id.parse().ok())
        .collect()
}

/// The [`Monitor`] grows, shrinks and merges live streams: each change opens a connection
/// with the new follow list, and the replaced connections close.
pub fn monitor_reshapes_streams<D: Driver>(driver: D) {
    let hold =
        AttemptPlan::ok(Vec::new()).with_end(End::HoldWithKeepAlives(Duration::from_millis(50)));
    let server = server(Scenario::single(hold), Transport::Plain);
    let template = config_for(&server, [1]).build().expect("valid config");
    let range = |r: std::ops::RangeInclusive<u64>| r.collect::<Vec<u64>>();
    let monitor = Monitor::spawn(driver, template, &range(1..=150), || {
        Box::new(Collected::new())
    })
    .expect("start the monitor");
    let settle = |attempts: usize, open: usize| {
        assert!(
            server.wait_for_attempts(attempts, PATIENCE),
            "{attempts} attempts"
        );
        assert!(
            server.wait_for_open_connections(open, PATIENCE),
            "{open} connections"
        );
        assert_eq!(server.attempts().len(), attempts);
    };
    settle(2, 2);

    monitor.add_follows(&range(151..=180)).expect("add");
    settle(3, 2);
    assert_eq!(follow_of(&server.attempts()[2]), range(101..=180));

    let gone: Vec<u64> = range(1..=70).into_iter().chain(121..=180).collect();
    assert_eq!(monitor.remove_follows(&gone).expect("remove"), 0);
    settle(5, 2);
    let mut shrunk: Vec<Vec<u64>> = server.attempts()[3..].iter().map(follow_of).collect();
    shrunk.sort();
    assert_eq!(shrunk, [range(71..=100), range(101..=120)]);

    assert_eq!(monitor.consolidate().expect("consolidate"), 2);
    settle(6, 1);
    assert_eq!(follow_of(&server.attempts()[5]), range(71..=120));
    assert_eq!(monitor.follows(), range(71..=120));
    let streams = monitor.streams();
    assert_eq!(streams.len(), 1);
    assert!(streams[0].status.healthy);

    monitor.disconnect();
    assert!(
        server.wait_for_open_connections(0, PATIENCE),
        "every socket is closed"
    );
}

/// Every attempt accepted so far, once each has settled (its request arrived, or its
/// connection ended), so its path says what it was.
fn settled_attempts(server: &TestServer) -> Vec<sitebucket_testserver::AttemptRecord> {
    let accepted = server.attempts().len();
    assert!(
        server.wait_for_attempts(accepted, PATIENCE),
        "every accepted connection sent its request"
    );
    server.attempts()
}

/// The control requests the server saw (attempts whose path is a control path), in order.
pub fn control_requests(server: &TestServer) -> Vec<sitebucket_testserver::AttemptRecord> {
    settled_attempts(server)
        .into_iter()
        .filter(|a| a.path.contains("/c/"))
        .collect()
}

/// The stream connections the server saw (attempts that are not control requests).
pub fn stream_attempts(server: &TestServer) -> Vec<sitebucket_testserver::AttemptRecord> {
    settled_attempts(server)
        .into_iter()
        .filter(|a| !a.path.contains("/c/"))
        .collect()
}

/// The user ids of a control request's `user_id` form parameter.
pub fn user_ids_of(attempt: &sitebucket_testserver::AttemptRecord) -> Vec<u64> {
    attempt
        .form_param("user_id")
        .unwrap_or_default()
        .split(',')
        .filter_map(|id| id.parse().ok())
        .collect()
}

/// Control streams on a live connection, through the handle: a change before the stream
/// announced its control stream is refused without a request; adds (split into requests of
/// at most 100), removes, `info` and `friends/ids` paging go over their own signed
/// connections while the stream keeps streaming; the 1,000-user cap is enforced before
/// anything is sent; a stale or unknown stream id is a clear error; after a reconnect,
/// `sync_follows` puts the changes on the new connection.
pub fn control_streams<D: Driver>(driver: D, transport: Transport) {
    let plan = AttemptPlan::ok(vec![Step::Wait(Duration::from_millis(300)), Step::Control])
        .with_end(End::HoldWithKeepAlives(Duration::from_millis(20)));
    let server = server(Scenario::single(plan), transport);
    let config = config_for(&server, [12, 13]).build().expect("valid config");
    let mut listener =
        ListenThread::spawn(driver, SiteStream::new(config.clone()), Collected::new())
            .expect("spawn the stream");

    // Before the control message, nothing can be sent.
    assert_eq!(listener.add_users(&[14]), Err(ControlError::NotAnnounced));
    assert_eq!(listener.info(), Err(ControlError::NotAnnounced));
    wait_for("the control stream", || listener.stream_id().is_some());
    let id = listener.stream_id().expect("announced");
    assert_eq!(id, "sb_0");
    assert!(
        control_requests(&server).is_empty(),
        "nothing was sent early"
    );

    // 150 users: two signed requests on their own connections, 100 and 50 users.
    let added: Vec<u64> = (1000..1150).collect();
    listener.add_users(&added).expect("add users");
    let requests = control_requests(&server);
    assert_eq!(requests.len(), 2);
    for (request, users) in requests.iter().zip([&added[..100], &added[100..]]) {
        assert!(request.signature_ok, "the server accepted the signature");
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/1.1/site/c/sb_0/add_user.json");
        assert_eq!(request.tls, transport == Transport::Tls);
        assert_eq!(request.status, Some(200));
        assert_eq!(user_ids_of(request), users);
    }
    let mut expected: Vec<u64> = vec![12, 13];
    expected.extend(&added);
    assert_eq!(server.control_stream(&id).expect("live").follow, expected);
    assert_eq!(listener.follows(), expected);

    listener.remove_users(&[12, 1000, 5]).expect("remove users");
    expected.retain(|u| ![12, 1000].contains(u));
    assert_eq!(server.control_stream(&id).expect("live").follow, expected);
    assert_eq!(listener.follows(), expected);

    let info = listener.info().expect("info");
    assert_eq!(info.user_ids(), expected);
    assert_eq!(info.options.with_mode(), Some(With::User));

    let mut cursor = FIRST_CURSOR;
    let mut friends = Vec::new();
    let mut cursors = Vec::new();
    loop {
        let page = listener.friends_ids(13, cursor).expect("friends/ids");
        assert_eq!(page.user.id, 13);
        friends.extend(page.friends.iter().copied());
        match page.next() {
            Some(next) => {
                cursors.push(next);
                cursor = next;
            }
            None => break,
        }
    }
    assert_eq!(friends, sitebucket_testserver::control::friends_of(13));
    assert!(
        cursors.iter().all(|c| *c > 1 << 53),
        "cursors past 2^53: {cursors:?}"
    );

    // The cap: 150 followed now, 851 more would make 1,001. Nothing is sent.
    assert_eq!(listener.follows().len(), 150);
    let sent = server.attempts().len();
    let too_many: Vec<u64> = (5000..5851).collect();
    assert_eq!(
        listener.add_users(&too_many),
        Err(ControlError::OverStreamLimit { would_follow: 1001 })
    );
    assert_eq!(server.attempts().len(), sent, "nothing sent over the cap");

    // An id the server does not know.
    let call = ControlCall::for_stream(&config, Some("sb_999"), ControlRequest::info());
    assert_eq!(
        listener.driver().control(call),
        Err(ControlError::UnknownStream {
            stream_id: "sb_999".into()
        })
    );

    // The stream kept streaming all along, on its own connection.
    let keep_alives = listener.status().stats.keep_alives;
    wait_for("more keep-alives", || {
        listener.status().stats.keep_alives > keep_alives
    });
    assert_eq!(
        stream_attempts(&server).len(),
        1,
        "one stream connection so far"
    );

    // A reconnect: the old id is forgotten at once, the new connection has only the follow
    // list until the changes are synced onto it.
    assert_eq!(server.kill_connections(), 1);
    wait_for("a new control stream", || {
        listener.stream_id().is_some_and(|new| new != id)
    });
    let new_id = listener.stream_id().expect("announced");
    let stale = ControlCall::for_stream(&config, Some(&id), ControlRequest::info());
    assert_eq!(
        listener.driver().control(stale),
        Err(ControlError::UnknownStream { stream_id: id })
    );
    assert_eq!(
        server.control_stream(&new_id).expect("live").follow,
        [12, 13]
    );
    assert_eq!(listener.sync_follows(), Ok(true));
    assert_eq!(
        server.control_stream(&new_id).expect("live").follow,
        expected
    );
    assert_eq!(listener.sync_follows(), Ok(false), "nothing left to sync");

    close_promptly(&mut listener, "streaming after control requests");
    assert!(
        server.wait_for_open_connections(0, PATIENCE),
        "every socket is closed"
    );
    assert!(server.control_streams().is_empty());
}

/// The [`Monitor`] grows announced streams through control instead of opening new
/// connections, empties a stream into another (users added to the target before the source
/// closes, so no gap), re-applies its changes when a stream reconnects, and removes through
/// control.
pub fn monitor_fills_streams_through_control<D: Driver>(driver: D) {
    let plan = AttemptPlan::ok(vec![Step::Control])
        .with_end(End::HoldWithKeepAlives(Duration::from_millis(20)));
    let server = server(Scenario::single(plan), Transport::Plain);
    let template = config_for(&server, [1]).build().expect("valid config");
    let range = |r: std::ops::RangeInclusive<u64>| r.collect::<Vec<u64>>();
    let monitor = Monitor::spawn(driver, template, &range(1..=150), || {
        Box::new(Collected::new())
    })
    .expect("start the monitor");
    assert_eq!(monitor.streams().len(), 2, "100 and 50 at connect time");
    wait_for("both control streams", || {
        monitor
            .streams()
            .iter()
            .all(|s| s.status.stream_id.is_some())
    });
    let ids: Vec<String> = monitor
        .streams()
        .iter()
        .filter_map(|s| s.status.stream_id.clone())
        .collect();

    // 250 more users: all onto the first stream, no new connection.
    monitor.add_follows(&range(151..=400)).expect("add");
    assert_eq!(stream_attempts(&server).len(), 2, "no new connection");
    let mut first = range(1..=100);
    first.extend(151..=400);
    assert_eq!(server.control_stream(&ids[0]).expect("live").follow, first);
    assert_eq!(control_requests(&server).len(), 3, "100 + 100 + 50");

    // Consolidate: the second stream's 50 users move onto the first, then it closes.
    assert_eq!(monitor.consolidate().expect("consolidate"), 1);
    assert!(
        server.wait_for_open_connections(1, PATIENCE),
        "one connection left"
    );
    assert_eq!(
        server.control_stream(&ids[0]).expect("live").follow,
        range(1..=400)
    );
    assert!(
        server.control_stream(&ids[1]).is_none(),
        "the emptied stream is gone"
    );
    assert_eq!(monitor.follows(), range(1..=400));
    let attempts = server.attempts();
    let moved = attempts
        .iter()
        .find(|a| a.path.contains("/c/") && user_ids_of(a) == range(101..=150))
        .expect("the move's add request");
    let source = attempts
        .iter()
        .find(|a| a.announced.as_deref() == Some(ids[1].as_str()))
        .expect("the emptied stream's connection");
    // The server took the users in when the whole add request had arrived; the client
    // closes the old stream only after the answer.
    let added_at = moved.request_at.expect("the add arrived");
    let closed_at = source.ended_at.expect("the source closed");
    assert!(
        added_at < closed_at,
        "the users were added ({added_at:?}) before their old stream closed ({closed_at:?})"
    );

    // A reconnect: the background checker re-adds the 300 users to the new connection as
    // soon as it announces itself.
    monitor.run_every(Duration::from_secs(3600));
    assert_eq!(server.kill_connections(), 1);
    wait_for("the changes on the new connection", || {
        server
            .control_streams()
            .iter()
            .any(|s| s.stream_id != ids[0] && s.follow == range(1..=400))
    });

    // Removals through control: no new connection.
    let connections = stream_attempts(&server).len();
    assert_eq!(monitor.remove_follows(&range(1..=350)).expect("remove"), 0);
    let live = server.control_streams();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].follow, range(351..=400));
    assert_eq!(stream_attempts(&server).len(), connections);
    assert_eq!(monitor.follows(), range(351..=400));

    monitor.disconnect();
    assert!(
        server.wait_for_open_connections(0, PATIENCE),
        "every socket is closed"
    );
}

/// Expands to one `#[test]` per check of the suite, for the driver `$driver` (an expression
/// evaluated once per test).
#[macro_export]
macro_rules! suite {
    ($driver:expr) => {
        #[test]
        fn happy_path_plain() {
            $crate::happy_path($driver, $crate::Transport::Plain);
        }
        #[test]
        fn happy_path_tls() {
            $crate::happy_path($driver, $crate::Transport::Tls);
        }
        #[test]
        fn reconnect_after_mid_stream_close_plain() {
            $crate::reconnect_after_mid_stream_close($driver, $crate::Transport::Plain);
        }
        #[test]
        fn reconnect_after_mid_stream_close_tls() {
            $crate::reconnect_after_mid_stream_close($driver, $crate::Transport::Tls);
        }
        #[test]
        fn parallel_parser_keeps_stream_order() {
            $crate::parallel_parser_keeps_stream_order($driver);
        }
        #[test]
        fn stall_reconnects() {
            $crate::stall_reconnects($driver);
        }
        #[test]
        fn rate_limited_420_backs_off() {
            $crate::rate_limited_420_backs_off($driver);
        }
        #[test]
        fn fatal_401_stops_plain() {
            $crate::fatal_401_stops($driver, $crate::Transport::Plain);
        }
        #[test]
        fn fatal_401_stops_tls() {
            $crate::fatal_401_stops($driver, $crate::Transport::Tls);
        }
        #[test]
        fn close_while_connecting() {
            $crate::close_while_connecting($driver);
        }
        #[test]
        fn close_while_silent_plain() {
            $crate::close_while_silent($driver, $crate::Transport::Plain);
        }
        #[test]
        fn close_while_silent_tls() {
            $crate::close_while_silent($driver, $crate::Transport::Tls);
        }
        #[test]
        fn close_while_backing_off() {
            $crate::close_while_backing_off($driver);
        }
        #[test]
        fn close_mid_stream_plain() {
            $crate::close_mid_stream($driver, $crate::Transport::Plain);
        }
        #[test]
        fn close_mid_stream_tls() {
            $crate::close_mid_stream($driver, $crate::Transport::Tls);
        }
        #[test]
        fn restart_after_fatal() {
            $crate::restart_after_fatal($driver);
        }
        #[test]
        fn restart_while_streaming() {
            $crate::restart_while_streaming($driver);
        }
        #[test]
        fn retry_limit_gives_up() {
            $crate::retry_limit_gives_up($driver);
        }
        #[test]
        fn monitor_restores_killed_streams() {
            $crate::monitor_restores_killed_streams($driver);
        }
        #[test]
        fn storm_close_after_head_backs_off() {
            $crate::storm::storm_backs_off($driver, $crate::storm::Storm::CloseAfterHead);
        }
        #[test]
        fn storm_disconnect_code_2_backs_off() {
            $crate::storm::storm_backs_off($driver, $crate::storm::Storm::DisconnectCode2);
        }
        #[test]
        fn storm_oversized_frame_backs_off() {
            $crate::storm::storm_backs_off($driver, $crate::storm::Storm::OversizedFrame);
        }
        #[test]
        fn monitor_sets_aside_a_refused_stream() {
            $crate::monitor_sets_aside_a_refused_stream($driver);
        }
        #[test]
        fn monitor_reshapes_streams() {
            $crate::monitor_reshapes_streams($driver);
        }
        #[test]
        fn control_streams_plain() {
            $crate::control_streams($driver, $crate::Transport::Plain);
        }
        #[test]
        fn control_streams_tls() {
            $crate::control_streams($driver, $crate::Transport::Tls);
        }
        #[test]
        fn monitor_fills_streams_through_control() {
            $crate::monitor_fills_streams_through_control($driver);
        }
    };
}
