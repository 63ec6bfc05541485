//! Checks of host-name resolution, for drivers that take a [`Resolver`]: a lookup runs off
//! the driver's thread, so a slow one holds up neither a stop, nor the connect deadline, nor
//! another stream; a failed one is a failed connect; a name it answers streams normally.
//!
//! Each check takes `make`, which builds the driver around a resolver (for example
//! `sitebucket_std::StdDriver::with_resolver`). No check touches real DNS: the names are
//! answered by a [`TestResolver`].

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use sitebucket_proto::control::{ControlCall, ControlError, ControlRequest};
use sitebucket_proto::StreamError;
use sitebucket_proto::{Config, Credentials};
use sitebucket_testserver::{AttemptPlan, End, Scenario, Step};
use sitebucket_thread::sync::lock;
use sitebucket_thread::{Driver, ListenThread, Resolver, SiteStream, RESOLVE_THREAD_NAME};

use crate::{
    as_bytes, close_promptly, config_for, control_requests, fast_backoff, message_steps,
    numbered_messages, refused_port, server, wait_for, Collected, Transport, PATIENCE,
};

/// A name the [`TestResolver`] answers at once, with 127.0.0.1.
pub const FAST_NAME: &str = "fast.test";
/// A name whose lookup blocks until the [`TestResolver`] is released (then 127.0.0.1).
pub const SLOW_NAME: &str = "slow.test";
/// A name the [`TestResolver`] fails with `NotFound`.
pub const MISSING_NAME: &str = "missing.test";

/// One lookup a [`TestResolver`] was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The host name.
    pub host: String,
    /// The name of the thread it ran on.
    pub thread: Option<String>,
}

/// A resolver for tests: [`FAST_NAME`] resolves at once to 127.0.0.1, [`SLOW_NAME`] blocks
/// until [`release`](TestResolver::release) (or the resolver's drop) and then resolves to
/// 127.0.0.1, any other name fails with `NotFound`. Every lookup is recorded.
#[derive(Debug)]
pub struct TestResolver {
    resolver: Resolver,
    lookups: Arc<Mutex<Vec<Lookup>>>,
    ended: Arc<AtomicUsize>,
    gate: Option<mpsc::Sender<()>>,
}

impl TestResolver {
    /// A resolver whose slow lookups wait.
    pub fn new() -> Self {
        let (gate, wait) = mpsc::channel::<()>();
        let wait = Arc::new(Mutex::new(wait));
        let lookups: Arc<Mutex<Vec<Lookup>>> = Arc::default();
        let ended = Arc::new(AtomicUsize::new(0));
        let (seen, done) = (lookups.clone(), ended.clone());
        let loopback = IpAddr::from([127, 0, 0, 1]);
        let resolver = Resolver::new(move |host, port| {
            lock(&seen).push(Lookup {
                host: host.to_owned(),
                thread: std::thread::current().name().map(str::to_owned),
            });
            let answer = match host {
                FAST_NAME => Ok(vec![SocketAddr::new(loopback, port)]),
                SLOW_NAME => {
                    // Nothing is ever sent: this returns once the sender is dropped.
                    let _ = lock(&wait).recv();
                    Ok(vec![SocketAddr::new(loopback, port)])
                }
                _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such test name")),
            };
            done.fetch_add(1, Ordering::SeqCst);
            answer
        });
        Self {
            resolver,
            lookups,
            ended,
            gate: Some(gate),
        }
    }

    /// The resolver to build a driver with.
    pub fn resolver(&self) -> Resolver {
        self.resolver.clone()
    }

    /// Every lookup so far, in order of start.
    pub fn lookups(&self) -> Vec<Lookup> {
        lock(&self.lookups).clone()
    }

    /// How many lookups of `host` started.
    pub fn lookups_of(&self, host: &str) -> usize {
        self.lookups().iter().filter(|l| l.host == host).count()
    }

    /// How many lookups have returned.
    pub fn ended(&self) -> usize {
        self.ended.load(Ordering::SeqCst)
    }

    /// Lets every slow lookup, blocked or to come, answer.
    pub fn release(&mut self) {
        self.gate = None;
    }
}

impl Default for TestResolver {
    fn default() -> Self {
        Self::new()
    }
}

fn url_for(host: &str, port: u16) -> String {
    format!("http://{host}:{port}/1.1/site.json")
}

/// A config for `host:port` that no server answers (test credentials, fast backoff).
fn unserved_config(host: &str, connect_timeout: Duration) -> Config {
    let credentials = Credentials::new("key", "secret", "token", "token secret");
    Config::builder([12], credentials)
        .url(url_for(host, refused_port()))
        .connect_timeout(connect_timeout)
        .backoff(fast_backoff())
        .build()
        .expect("valid config")
}

/// `close()` while the stream's lookup hangs: prompt, on a lookup thread of its own; the
/// answer that comes later is dropped (no connection is made with it).
pub fn close_while_resolving<D: Driver>(make: impl Fn(Resolver) -> D) {
    let plan = AttemptPlan::ok(message_steps(&numbered_messages(0..3)));
    let server = server(Scenario::single(plan), Transport::Plain);
    let mut names = TestResolver::new();
    let config = config_for(&server, [12])
        .url(url_for(SLOW_NAME, server.port()))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("valid config");
    let mut listener = ListenThread::spawn(
        make(names.resolver()),
        SiteStream::new(config),
        Collected::new(),
    )
    .expect("spawn the stream");
    wait_for("the lookup to start", || names.lookups_of(SLOW_NAME) == 1);
    assert_eq!(
        names.lookups()[0].thread.as_deref(),
        Some(RESOLVE_THREAD_NAME),
        "the lookup runs on a thread of its own"
    );
    // Let the driver get into its wait for the answer.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(listener.status().stats.attempts, 1);
    close_promptly(&mut listener, "resolving");

    names.release();
    wait_for("the abandoned lookup to end", || names.ended() == 1);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        server.attempts().is_empty(),
        "the abandoned answer was used to connect"
    );
}

/// A lookup that hangs past the connect timeout: the core's deadline ends the attempt
/// (`ConnectTimeout`) and the next attempt starts after the backoff. It waits for the same
/// lookup, still in flight, rather than start another: a hung resolver holds one lookup per
/// name, however often the stream retries.
pub fn resolving_is_bounded_by_the_connect_timeout<D: Driver>(make: impl Fn(Resolver) -> D) {
    let names = TestResolver::new();
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let mut listener = ListenThread::spawn(
        make(names.resolver()),
        SiteStream::new(unserved_config(SLOW_NAME, timeout)),
        Collected::new(),
    )
    .expect("spawn the stream");
    wait_for("a third attempt", || listener.status().stats.attempts >= 3);
    let took = started.elapsed();
    assert!(took >= 2 * timeout, "two attempts ended after {took:?}");
    let stats = listener.status().stats;
    assert_eq!(stats.last_error, Some(StreamError::ConnectTimeout(timeout)));
    assert!(stats.reconnects >= 2, "{stats:?}");
    assert_eq!(
        names.lookups_of(SLOW_NAME),
        1,
        "every attempt waits for the one lookup in flight"
    );
    assert_eq!(names.ended(), 0, "the lookup still hangs");
    close_promptly(&mut listener, "resolving again");
}

/// A lookup that fails is a failed connect with its error kind: backoff and retry as for
/// any failed connect.
pub fn failed_lookup_backs_off_and_retries<D: Driver>(make: impl Fn(Resolver) -> D) {
    let names = TestResolver::new();
    let mut listener = ListenThread::spawn(
        make(names.resolver()),
        SiteStream::new(unserved_config(MISSING_NAME, Duration::from_secs(5))),
        Collected::new(),
    )
    .expect("spawn the stream");
    wait_for("three failed attempts", || {
        let stats = listener.status().stats;
        stats.attempts >= 3 && stats.reconnects >= 3
    });
    let stats = listener.status().stats;
    assert_eq!(
        stats.last_error,
        Some(StreamError::ConnectFailed(io::ErrorKind::NotFound))
    );
    assert_eq!(stats.bytes, 0);
    assert!(
        names.lookups_of(MISSING_NAME) >= 3,
        "one lookup per attempt"
    );
    close_promptly(&mut listener, "retrying a failed lookup");
}

/// A name the resolver answers with the test server streams normally; control calls go
/// through the same resolver.
pub fn resolved_name_streams<D: Driver>(make: impl Fn(Resolver) -> D) {
    let sent = numbered_messages(0..30);
    let mut steps = message_steps(&sent);
    steps.push(Step::Control);
    let plan = AttemptPlan::ok(steps).with_end(End::HoldWithKeepAlives(Duration::from_millis(20)));
    let server = server(Scenario::single(plan), Transport::Plain);
    let names = TestResolver::new();
    let config = config_for(&server, [12])
        .url(url_for(FAST_NAME, server.port()))
        .build()
        .expect("valid config");
    let collected = Collected::new();
    let mut listener = ListenThread::spawn(
        make(names.resolver()),
        SiteStream::new(config),
        collected.clone(),
    )
    .expect("spawn the stream");
    wait_for("every message", || collected.len() >= sent.len());
    // The control stream's announcement follows them (the parser gets it too).
    assert_eq!(collected.messages()[..sent.len()], as_bytes(&sent)[..]);
    wait_for("the control stream", || listener.stream_id().is_some());
    listener.add_users(&[14]).expect("add a user");
    let host = format!("{FAST_NAME}:{}", server.port());
    let attempts = server.attempts();
    assert_eq!(crate::stream_attempts(&server).len(), 1, "one connection");
    assert!(attempts.iter().all(|a| a.signature_ok));
    assert!(
        attempts
            .iter()
            .all(|a| a.header("host") == Some(host.as_str())),
        "every request was for {host}"
    );
    assert_eq!(control_requests(&server).len(), 1);
    assert_eq!(
        names.lookups_of(FAST_NAME),
        2,
        "the stream and the control call"
    );
    close_promptly(&mut listener, "streaming");
}

/// Two streams on one driver (one loop, for an event-loop driver): while one's lookup
/// hangs, the other connects and streams; closing the hung one is prompt.
pub fn hung_lookup_holds_up_no_other_stream<D: Driver>(make: impl Fn(Resolver) -> D) {
    let sent = numbered_messages(0..40);
    let plan = AttemptPlan::ok(message_steps(&sent))
        .with_end(End::HoldWithKeepAlives(Duration::from_millis(20)));
    let server = server(Scenario::single(plan), Transport::Plain);
    let mut names = TestResolver::new();
    let driver = make(names.resolver());
    let stream_to = |host: &str| {
        let config = config_for(&server, [12])
            .url(url_for(host, server.port()))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("valid config");
        SiteStream::new(config)
    };
    let mut hung = ListenThread::spawn(driver.clone(), stream_to(SLOW_NAME), Collected::new())
        .expect("spawn the hung stream");
    wait_for("the hung lookup", || names.lookups_of(SLOW_NAME) == 1);
    let collected = Collected::new();
    let mut live = ListenThread::spawn(driver, stream_to(FAST_NAME), collected.clone())
        .expect("spawn the live stream");
    wait_for("every message of the live stream", || {
        collected.len() >= sent.len()
    });
    assert_eq!(collected.messages(), as_bytes(&sent));
    wait_for("keep-alives", || live.status().stats.keep_alives >= 2);
    assert_eq!(hung.status().stats.bytes, 0, "the hung stream got nothing");
    close_promptly(&mut hung, "resolving beside a live stream");
    let keep_alives = live.status().stats.keep_alives;
    wait_for("more keep-alives after the close", || {
        live.status().stats.keep_alives > keep_alives
    });
    close_promptly(&mut live, "streaming");
    names.release();
    wait_for("the abandoned lookup to end", || names.ended() == 2);
    assert_eq!(server.attempts().len(), 1, "only the live stream connected");
}

/// A control call whose lookup hangs ends with `Timeout` at its deadline.
pub fn control_lookup_is_bounded_by_the_call_timeout<D: Driver>(make: impl Fn(Resolver) -> D) {
    let names = TestResolver::new();
    let driver = make(names.resolver());
    let config = unserved_config(SLOW_NAME, Duration::from_secs(5));
    let timeout = Duration::from_millis(300);
    let call = ControlCall::for_stream(&config, Some("sb_0"), ControlRequest::info())
        .with_timeout(timeout);
    let started = Instant::now();
    let result = driver.control(call);
    let took = started.elapsed();
    assert_eq!(result.map(drop), Err(ControlError::Timeout(timeout)));
    assert!(
        took >= timeout && took < timeout + PATIENCE / 10,
        "the call took {took:?}"
    );
    assert_eq!(names.lookups_of(SLOW_NAME), 1);
}

/// Expands to one `#[test]` per resolution check, for the driver `$make` builds around a
/// resolver (an expression of type `impl Fn(Resolver) -> D`, evaluated once per test):
///
/// ```text
/// sitebucket_e2e::resolution_suite!(sitebucket_std::StdDriver::with_resolver);
/// ```
#[macro_export]
macro_rules! resolution_suite {
    ($make:expr) => {
        #[test]
        fn close_while_resolving() {
            $crate::resolve::close_while_resolving($make);
        }
        #[test]
        fn resolving_is_bounded_by_the_connect_timeout() {
            $crate::resolve::resolving_is_bounded_by_the_connect_timeout($make);
        }
        #[test]
        fn failed_lookup_backs_off_and_retries() {
            $crate::resolve::failed_lookup_backs_off_and_retries($make);
        }
        #[test]
        fn resolved_name_streams() {
            $crate::resolve::resolved_name_streams($make);
        }
        #[test]
        fn hung_lookup_holds_up_no_other_stream() {
            $crate::resolve::hung_lookup_holds_up_no_other_stream($make);
        }
        #[test]
        fn control_lookup_is_bounded_by_the_call_timeout() {
            $crate::resolve::control_lookup_is_bounded_by_the_call_timeout($make);
        }
    };
}
