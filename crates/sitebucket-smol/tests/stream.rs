//! `Messages` and `SmolDriver` against the scripted test server on loopback.
//!
//! Every test is bounded in time: async bodies race a watchdog timer, and every `close()` is
//! followed by a join whose latency is asserted.

use std::future::Future;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future::or;
use futures_lite::StreamExt;
use sitebucket_proto::{
    BackoffPolicy, Config, ConfigBuilder, Credentials, SiteStream, TwitterBackoff,
};
use sitebucket_proto::{Outcome, StreamError, StreamEvent};
use sitebucket_smol::{ListenThread, Messages, SmolDriver, StreamItem};
use sitebucket_testserver::{
    AttemptPlan, ChunkPlan, End, Scenario, ServerOptions, Step, TestServer,
};
use sitebucket_thread::Observer;
use smol::Timer;

/// The promise every driver makes for `close()`.
const STOP_WITHIN: Duration = Duration::from_millis(100);
/// The watchdog for a whole test body.
const TEST_LIMIT: Duration = Duration::from_secs(20);

fn bounded<T>(body: impl Future<Output = T>) -> T {
    smol::block_on(or(body, async {
        Timer::after(TEST_LIMIT).await;
        panic!("the test did not finish within {TEST_LIMIT:?}");
    }))
}

/// Runs a blocking test body on its own thread and fails the test if it takes too long
/// (the thread is then left to the test harness, which exits regardless).
fn within<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(TEST_LIMIT) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the test did not finish within {TEST_LIMIT:?}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the test body panicked"),
    }
}

fn config(server: &TestServer) -> ConfigBuilder {
    let c = server.credentials();
    let builder = Config::builder(
        [12, 13],
        Credentials::new(
            c.consumer_key.clone(),
            c.consumer_secret.clone(),
            c.token.clone(),
            c.token_secret.clone(),
        ),
    )
    .url(server.url())
    .rng_seed(7);
    match server.ca_pem() {
        Some(pem) => builder.extra_root_certs_pem(pem.into_bytes()),
        None => builder,
    }
}

fn fast_backoff() -> BackoffPolicy {
    BackoffPolicy::Twitter(TwitterBackoff {
        network_step: Duration::from_millis(20),
        network_max: Duration::from_millis(100),
        http_start: Duration::from_millis(20),
        http_max: Duration::from_millis(100),
        ..TwitterBackoff::default()
    })
}

/// Messages that exercise the framing: unicode, escapes, and one larger than the 64 KiB read
/// buffer, so it spans reads.
fn corpus() -> Vec<Vec<u8>> {
    let mut messages = vec![
        br#"{"control":{"control_uri":"/1.1/site/c/1_1_54e345d655ee3e8df359ac2b2c69b54d"}}"#
            .to_vec(),
        r#"{"for_user":12,"message":{"text":"caf\u00e9 \u2603 — ünïcödé ☃ 🐦"}}"#
            .as_bytes()
            .to_vec(),
        br#"{"for_user":13,"message":{"text":"quote \" backslash \\ slash \/"}}"#.to_vec(),
    ];
    let big = format!(
        r#"{{"for_user":12,"message":{{"text":"{}"}}}}"#,
        "x".repeat(150_000)
    );
    messages.push(big.into_bytes());
    for i in 0..50 {
        messages.push(format!(r#"{{"for_user":13,"message":{{"id":{i}}}}}"#).into_bytes());
    }
    messages
}

fn steps(messages: &[Vec<u8>]) -> Vec<Step> {
    messages.iter().cloned().map(Step::Message).collect()
}

/// The next message, skipping connection events; `None` if the stream finishes first.
async fn next_message(stream: &mut Messages) -> Option<Bytes> {
    loop {
        match stream.next().await? {
            StreamItem::Message(message) => return Some(message),
            StreamItem::Finished(_) => return None,
            _ => {}
        }
    }
}

/// Reads `expected.len()` messages (skipping connection events) and checks each byte for
/// byte.
async fn expect_messages(stream: &mut Messages, expected: &[Vec<u8>]) {
    for (i, want) in expected.iter().enumerate() {
        let got = next_message(stream).await;
        assert_eq!(
            got.as_deref(),
            Some(&want[..]),
            "message {i} differs (outcome so far: {:?})",
            stream.outcome()
        );
    }
}

/// After a stop: the `Finished(Stopped)` item, then the end.
async fn expect_stopped(stream: &mut Messages) {
    assert_eq!(
        stream.next().await,
        Some(StreamItem::Finished(Outcome::Stopped))
    );
    assert_eq!(stream.next().await, None, "nothing after Finished");
}

#[test]
fn stream_yields_byte_exact_messages_over_plain_tcp() {
    let messages = corpus();
    let plan = AttemptPlan::ok(steps(&messages)).with_end(End::Stall);
    let server = TestServer::start(Scenario::single(plan), ServerOptions::plain()).unwrap();
    let mut stream = sitebucket_smol::messages(SiteStream::new(config(&server).build().unwrap()));
    bounded(async {
        expect_messages(&mut stream, &messages).await;
        stream.stop();
        expect_stopped(&mut stream).await;
    });
    assert_eq!(stream.outcome(), Some(&Outcome::Stopped));
    let status = stream.status();
    assert_eq!(status.stats.messages, messages.len() as u64);
    assert_eq!(status.stats.attempts, 1);
    assert!(!status.running);
    assert!(server.attempts()[0].signature_ok);
}

#[test]
fn stream_yields_byte_exact_messages_over_tls_with_gzip_and_random_chunks() {
    let messages = corpus();
    let plan = AttemptPlan::ok(steps(&messages))
        .with_chunks(ChunkPlan::Random {
            seed: 11,
            min: 1,
            max: 9000,
        })
        .with_end(End::Stall);
    let server = TestServer::start(Scenario::single(plan), ServerOptions::tls()).unwrap();
    let config = config(&server).gzip(true).build().unwrap();
    let mut stream = sitebucket_smol::messages(SiteStream::new(config));
    bounded(async {
        expect_messages(&mut stream, &messages).await;
        stream.stop();
        expect_stopped(&mut stream).await;
    });
    assert_eq!(stream.outcome(), Some(&Outcome::Stopped));
    let attempt = &server.attempts()[0];
    assert!(attempt.tls && attempt.signature_ok);
}

#[test]
fn two_streams_run_side_by_side_on_one_thread() {
    let a: Vec<Vec<u8>> = (0..20)
        .map(|i| format!(r#"{{"a":{i}}}"#).into_bytes())
        .collect();
    let b: Vec<Vec<u8>> = (0..20)
        .map(|i| format!(r#"{{"b":{i}}}"#).into_bytes())
        .collect();
    let plan = |m: &[Vec<u8>]| {
        let mut s = Vec::new();
        for message in m {
            s.push(Step::Message(message.clone()));
            s.push(Step::Wait(Duration::from_millis(5)));
        }
        Scenario::single(AttemptPlan::ok(s).with_end(End::Stall))
    };
    let server_a = TestServer::start(plan(&a), ServerOptions::plain()).unwrap();
    let server_b = TestServer::start(plan(&b), ServerOptions::tls()).unwrap();
    let mut sa = sitebucket_smol::messages(SiteStream::new(config(&server_a).build().unwrap()));
    let mut sb = sitebucket_smol::messages(SiteStream::new(config(&server_b).build().unwrap()));
    bounded(futures_lite::future::zip(
        expect_messages(&mut sa, &a),
        expect_messages(&mut sb, &b),
    ));
}

#[test]
fn stop_from_another_thread_ends_a_silent_stream_promptly() {
    let server = TestServer::start(
        Scenario::single(AttemptPlan::never_answers()),
        ServerOptions::plain(),
    )
    .unwrap();
    let mut stream = sitebucket_smol::messages(SiteStream::new(config(&server).build().unwrap()));
    let control = stream.run_state().clone();
    let reader = std::thread::spawn(move || {
        let next = bounded(stream.next());
        (next, Instant::now(), stream)
    });
    // Nothing came before the stop: no head, so no `Connected` either.
    assert!(server.wait_for_attempts(1, Duration::from_secs(5)));
    // The request has arrived, so the stream is now waiting on a silent socket.
    let asked = Instant::now();
    control.request_stop();
    let (next, ended, stream) = reader.join().unwrap();
    assert_eq!(next, Some(StreamItem::Finished(Outcome::Stopped)));
    let latency = ended - asked;
    assert!(latency < STOP_WITHIN, "stop took {latency:?}");
    assert_eq!(stream.outcome(), Some(&Outcome::Stopped));
    assert!(server.wait_for_open_connections(0, Duration::from_secs(2)));
}

#[test]
fn dropping_the_stream_closes_the_connection() {
    let messages = corpus();
    let plan = AttemptPlan::ok(steps(&messages))
        .with_end(End::HoldWithKeepAlives(Duration::from_millis(50)));
    let server = TestServer::start(Scenario::single(plan), ServerOptions::plain()).unwrap();
    let mut stream = sitebucket_smol::messages(SiteStream::new(config(&server).build().unwrap()));
    bounded(expect_messages(&mut stream, &messages[..1]));
    assert_eq!(server.open_connections(), 1);
    drop(stream);
    assert!(
        server.wait_for_open_connections(0, Duration::from_secs(2)),
        "the server still sees the connection open"
    );
    assert_eq!(server.attempts().len(), 1, "no reconnect after the drop");
}

#[test]
fn a_rejected_signature_ends_the_stream_with_fatal_401() {
    let server = TestServer::start(
        Scenario::single(AttemptPlan::ok(vec![])),
        ServerOptions::plain(),
    )
    .unwrap();
    let c = server.credentials();
    let wrong = Credentials::new(c.consumer_key.clone(), "wrong", c.token.clone(), "wrong");
    let config = config(&server).credentials(wrong).build().unwrap();
    let mut stream = sitebucket_smol::messages(SiteStream::new(config));
    let items: Vec<StreamItem> = bounded((&mut stream).collect());
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(
        matches!(&items[0], StreamItem::Connected { status: 401, .. }),
        "{items:?}"
    );
    assert_eq!(items[1].outcome(), stream.outcome());
    assert!(
        matches!(stream.outcome(), Some(Outcome::Fatal { status: 401, .. })),
        "{:?}",
        stream.outcome()
    );
    assert!(!stream.status().healthy);
    assert_eq!(server.attempts().len(), 1, "a 401 is never retried");
}

#[test]
fn a_refused_port_backs_off_and_gives_up_at_the_retry_limit() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = Config::builder([12], Credentials::new("ck", "cs", "tk", "ts"))
        .url(format!("http://127.0.0.1:{port}/1.1/site.json"))
        .backoff(fast_backoff())
        .retry_limit(Some(3))
        .build()
        .unwrap();
    let mut stream = sitebucket_smol::messages(SiteStream::new(config));
    let started = Instant::now();
    let items: Vec<StreamItem> = bounded((&mut stream).collect());
    // Waits of 20 ms and 40 ms (linear network steps) came between the three attempts.
    assert!(started.elapsed() >= Duration::from_millis(60));
    let refused = || StreamError::ConnectFailed(std::io::ErrorKind::ConnectionRefused);
    assert_eq!(
        items,
        [
            StreamItem::Reconnecting {
                error: refused(),
                retry_in: Duration::from_millis(20)
            },
            StreamItem::Reconnecting {
                error: refused(),
                retry_in: Duration::from_millis(40)
            },
            StreamItem::Finished(Outcome::GaveUp {
                attempts: 3,
                last_error: refused(),
            }),
        ]
    );
    assert_eq!(
        stream.outcome(),
        Some(&Outcome::GaveUp {
            attempts: 3,
            last_error: StreamError::ConnectFailed(std::io::ErrorKind::ConnectionRefused),
        })
    );
    assert_eq!(stream.status().stats.attempts, 3);
}

#[test]
fn a_finished_stream_comes_back_for_a_restart() {
    let messages: Vec<Vec<u8>> = vec![br#"{"n":1}"#.to_vec(), br#"{"n":2}"#.to_vec()];
    let plan = AttemptPlan::ok(steps(&messages)).with_end(End::Stall);
    let server = TestServer::start(Scenario::single(plan), ServerOptions::plain()).unwrap();
    let mut stream = sitebucket_smol::messages(SiteStream::new(config(&server).build().unwrap()));
    bounded(async {
        expect_messages(&mut stream, &messages).await;
        stream.stop();
        expect_stopped(&mut stream).await;
    });
    let mut site = stream
        .into_stream()
        .expect("the stream ended, so it is handed back");
    assert!(site.disconnect_issued());
    site.reset_throttles();
    let mut again = sitebucket_smol::messages(site);
    bounded(expect_messages(&mut again, &messages));
    assert_eq!(server.attempts().len(), 2);
    assert_eq!(again.status().stats.attempts, 2, "the counters carry over");
}

#[derive(Default)]
struct Seen {
    events: Mutex<Vec<StreamEvent>>,
    drains: Mutex<u32>,
}

impl Observer for Seen {
    fn event(&self, event: &StreamEvent) {
        self.events.lock().unwrap().push(event.clone());
    }
    fn drained(&self, _stream: &SiteStream) {
        *self.drains.lock().unwrap() += 1;
    }
}

#[test]
fn the_observer_sees_every_event_but_messages_and_each_drain() {
    let plan = AttemptPlan::ok(vec![
        Step::Message(br#"{"n":1}"#.to_vec()),
        Step::KeepAlive,
        Step::Wait(Duration::from_millis(10)),
        Step::Message(br#"{"n":2}"#.to_vec()),
    ])
    .with_end(End::Stall);
    let server = TestServer::start(Scenario::single(plan), ServerOptions::plain()).unwrap();
    let mut stream = sitebucket_smol::messages(SiteStream::new(config(&server).build().unwrap()));
    let seen = Arc::new(Seen::default());
    stream.run_state().set_observer(seen.clone());
    bounded(async {
        assert_eq!(
            next_message(&mut stream).await.as_deref(),
            Some(&br#"{"n":1}"#[..])
        );
        assert_eq!(
            next_message(&mut stream).await.as_deref(),
            Some(&br#"{"n":2}"#[..])
        );
        stream.stop();
        expect_stopped(&mut stream).await;
    });
    assert_eq!(
        *seen.events.lock().unwrap(),
        [
            StreamEvent::Connected {
                status: 200,
                reason: "OK".into()
            },
            StreamEvent::KeepAlive
        ]
    );
    // At least: before the connect, after it, after the head, after each message, the end.
    assert!(*seen.drains.lock().unwrap() >= 4);
}

#[test]
fn into_stream_is_none_while_running() {
    let server = TestServer::start(
        Scenario::single(AttemptPlan::never_answers()),
        ServerOptions::plain(),
    )
    .unwrap();
    let stream = sitebucket_smol::messages(SiteStream::new(config(&server).build().unwrap()));
    assert!(stream.outcome().is_none());
    assert!(stream.into_stream().is_none());
}

// ----- SmolDriver under ListenThread -----

type Inbox = Arc<Mutex<Vec<Bytes>>>;

fn collecting() -> (Inbox, impl FnMut(Bytes) + Send + 'static) {
    let inbox = Inbox::default();
    let sink = inbox.clone();
    (inbox, move |m: Bytes| sink.lock().unwrap().push(m))
}

/// Closes `listen` and checks it ended with `Stopped` within the promised time.
fn close_promptly(listen: ListenThread<SmolDriver>) -> ListenThread<SmolDriver> {
    let asked = Instant::now();
    listen.close();
    let (outcome, latency, listen) = within(move || {
        let mut listen = listen;
        let outcome = listen.join();
        (outcome, asked.elapsed(), listen)
    });
    assert_eq!(outcome, Some(Outcome::Stopped));
    assert!(latency < STOP_WITHIN, "close took {latency:?}");
    listen
}

#[test]
fn listen_thread_delivers_messages_and_closes_mid_stream() {
    let messages = corpus();
    let mut s = steps(&messages);
    s.push(Step::Repeat(
        sitebucket_testserver::Repeat::endless(vec![br#"{"more":1}"#.to_vec()])
            .with_interval(Duration::from_millis(2)),
    ));
    let server =
        TestServer::start(Scenario::single(AttemptPlan::ok(s)), ServerOptions::tls()).unwrap();
    let (inbox, parser) = collecting();
    let stream = SiteStream::new(config(&server).build().unwrap());
    let listen = ListenThread::spawn(SmolDriver::new(), stream, parser).unwrap();
    let deadline = Instant::now() + TEST_LIMIT;
    while inbox.lock().unwrap().len() < messages.len() + 5 {
        assert!(Instant::now() < deadline, "messages did not arrive");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(listen.is_running());
    let listen = close_promptly(listen);
    let got = inbox.lock().unwrap().clone();
    for (i, want) in messages.iter().enumerate() {
        assert_eq!(&got[i][..], &want[..], "message {i}");
    }
    assert!(got[messages.len()..]
        .iter()
        .all(|m| &m[..] == br#"{"more":1}"#));
    assert_eq!(listen.status().stats.messages, got.len() as u64);
    assert!(server.wait_for_open_connections(0, Duration::from_secs(2)));
}

#[test]
fn listen_thread_closes_promptly_on_a_silent_connection() {
    for options in [ServerOptions::plain(), ServerOptions::tls()] {
        let scenario = Scenario::single(AttemptPlan::never_answers());
        let server = TestServer::start(scenario, options).unwrap();
        let stream = SiteStream::new(config(&server).build().unwrap());
        let listen = ListenThread::spawn(SmolDriver::new(), stream, |_: Bytes| {}).unwrap();
        assert!(server.wait_for_attempts(1, Duration::from_secs(5)));
        close_promptly(listen);
        assert!(server.wait_for_open_connections(0, Duration::from_secs(2)));
    }
}

#[test]
fn listen_thread_closes_promptly_while_backing_off() {
    // A 420 with the default one-minute rate-limit backoff: the stream sleeps for a minute.
    let server = TestServer::start(
        Scenario::single(AttemptPlan::status(420, "Enhance Your Calm")),
        ServerOptions::plain(),
    )
    .unwrap();
    let stream = SiteStream::new(config(&server).build().unwrap());
    let listen = ListenThread::spawn(SmolDriver::new(), stream, |_: Bytes| {}).unwrap();
    let deadline = Instant::now() + TEST_LIMIT;
    while listen.status().stats.reconnects == 0 {
        assert!(Instant::now() < deadline, "the 420 was not seen");
        std::thread::sleep(Duration::from_millis(5));
    }
    close_promptly(listen);
    assert_eq!(server.attempts().len(), 1);
}

#[test]
fn run_in_the_current_thread_reports_a_fatal_status() {
    let server = TestServer::start(
        Scenario::single(AttemptPlan::ok(vec![])),
        ServerOptions::tls(),
    )
    .unwrap();
    let c = server.credentials();
    let wrong = Credentials::new(c.consumer_key.clone(), "nope", c.token.clone(), "nope");
    let stream = SiteStream::new(config(&server).credentials(wrong).build().unwrap());
    let (outcome, listen) = within(move || {
        let mut listen = ListenThread::new(SmolDriver::new(), stream, |_: Bytes| {});
        (listen.run().unwrap(), listen)
    });
    assert!(
        matches!(outcome, Outcome::Fatal { status: 401, .. }),
        "{outcome:?}"
    );
    assert!(!listen.connection_healthy());
}

#[test]
fn a_stream_dropped_mid_message_reconnects_without_losing_or_repeating_messages() {
    let first: Vec<Vec<u8>> = (0..5)
        .map(|i| format!(r#"{{"first":{i}}}"#).into_bytes())
        .collect();
    let second: Vec<Vec<u8>> = (0..5)
        .map(|i| format!(r#"{{"second":{i}}}"#).into_bytes())
        .collect();
    let mut dropped = steps(&first);
    dropped.push(Step::RawBody(br#"{"half":"#.to_vec()));
    dropped.push(Step::CloseNow);
    let server = TestServer::start(
        Scenario::new(vec![
            AttemptPlan::ok(dropped),
            AttemptPlan::ok(steps(&second)).with_end(End::Stall),
        ]),
        ServerOptions::plain(),
    )
    .unwrap();
    let config = config(&server).backoff(fast_backoff()).build().unwrap();
    let mut stream = sitebucket_smol::messages(SiteStream::new(config));
    let all: Vec<Vec<u8>> = first.iter().chain(&second).cloned().collect();
    bounded(expect_messages(&mut stream, &all));
    assert_eq!(server.attempts().len(), 2);
    // The half message is reported with its size (issue 12: nothing dropped in silence).
    assert!(matches!(
        stream.status().stats.last_error,
        Some(StreamError::ClosedMidMessage { partial_bytes: 8 })
    ));
}

// ----- the items of a Messages -----

fn message_items(messages: &[Vec<u8>]) -> Vec<StreamItem> {
    messages
        .iter()
        .map(|m| StreamItem::Message(Bytes::from(m.clone())))
        .collect()
}

#[test]
fn connection_events_arrive_in_order_with_the_messages() {
    let first: Vec<Vec<u8>> = (0..3)
        .map(|i| format!(r#"{{"first":{i}}}"#).into_bytes())
        .collect();
    let second: Vec<Vec<u8>> = (0..3)
        .map(|i| format!(r#"{{"second":{i}}}"#).into_bytes())
        .collect();
    let mut dropped = steps(&first);
    dropped.push(Step::CloseNow);
    let server = TestServer::start(
        Scenario::new(vec![
            AttemptPlan::status(503, "Service Unavailable"),
            AttemptPlan::ok(dropped),
            AttemptPlan::ok(steps(&second)).with_end(End::Stall),
        ]),
        ServerOptions::plain(),
    )
    .unwrap();
    let config = config(&server).backoff(fast_backoff()).build().unwrap();
    let ok = || StreamItem::Connected {
        status: 200,
        reason: "OK".into(),
    };
    let mut expected = vec![
        StreamItem::Connected {
            status: 503,
            reason: "Service Unavailable".into(),
        },
        // HTTP errors back off from `http_start` (20 ms in `fast_backoff`).
        StreamItem::Reconnecting {
            error: StreamError::Status {
                status: 503,
                reason: "Service Unavailable".into(),
            },
            retry_in: Duration::from_millis(20),
        },
        ok(),
    ];
    expected.extend(message_items(&first));
    // A drop after real messages: the first network step.
    expected.push(StreamItem::Reconnecting {
        error: StreamError::Closed,
        retry_in: Duration::from_millis(20),
    });
    expected.push(ok());
    expected.extend(message_items(&second));
    expected.push(StreamItem::Finished(Outcome::Stopped));

    let mut stream = sitebucket_smol::messages(SiteStream::new(config));
    let got = bounded(async {
        // Everything up to the last message, then a stop on the silent third connection.
        let mut got: Vec<StreamItem> = (&mut stream).take(expected.len() - 1).collect().await;
        stream.stop();
        got.extend((&mut stream).collect::<Vec<_>>().await);
        got
    });
    assert_eq!(got, expected);
    assert_eq!(stream.outcome(), Some(&Outcome::Stopped));
    assert_eq!(server.attempts().len(), 3);
}

#[test]
fn messages_only_yields_exactly_the_messages_and_keeps_the_outcome() {
    let messages: Vec<Vec<u8>> = (0..6)
        .map(|i| format!(r#"{{"n":{i}}}"#).into_bytes())
        .collect();
    let mut s = steps(&messages);
    s.insert(3, Step::KeepAlive);
    let server = TestServer::start(
        Scenario::new(vec![
            AttemptPlan::status(500, "Internal Server Error"),
            AttemptPlan::ok(s),
            AttemptPlan::status(401, "Unauthorized"),
        ]),
        ServerOptions::plain(),
    )
    .unwrap();
    let config = config(&server).backoff(fast_backoff()).build().unwrap();
    let mut only = sitebucket_smol::messages(SiteStream::new(config)).messages_only();
    let got: Vec<Bytes> = bounded((&mut only).collect());
    assert_eq!(
        got,
        message_items(&messages)
            .into_iter()
            .filter_map(StreamItem::into_message)
            .collect::<Vec<_>>()
    );
    assert!(
        matches!(only.outcome(), Some(Outcome::Fatal { status: 401, .. })),
        "{:?}",
        only.outcome()
    );
    assert_eq!(only.outcome(), only.get_ref().outcome());
    assert_eq!(bounded(only.next()), None);
}
