//! Many streams on one mio loop thread, against one loopback test server.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{config_for, numbered, wait_for};
use sitebucket_e2e::{Collected, CLOSE_WITHIN};
use sitebucket_mio::MioDriver;
use sitebucket_proto::{Credentials, SiteStream};
use sitebucket_proto::{Outcome, StreamError};
use sitebucket_testserver::{
    AttemptPlan, ChunkPlan, End, Scenario, ServerOptions, Step, TestServer,
};
use sitebucket_thread::{Driver, ListenThread};

fn steps(messages: &[Vec<u8>]) -> Vec<Step> {
    messages.iter().cloned().map(Step::Message).collect()
}

fn as_bytes(messages: &[Vec<u8>]) -> Vec<Bytes> {
    messages.iter().cloned().map(Bytes::from).collect()
}

/// Closes and joins every stream, asserting each stop took effect within the contract.
fn close_each(streams: &mut [(ListenThread<MioDriver>, Collected)], state: &str) {
    for (stream, _) in streams.iter_mut() {
        let started = Instant::now();
        stream.close();
        let outcome = stream.join();
        let took = started.elapsed();
        assert!(
            took < CLOSE_WITHIN,
            "close() while {state} took {took:?} with many streams on the loop"
        );
        assert_eq!(outcome, Some(Outcome::Stopped), "close() while {state}");
    }
}

#[test]
fn a_hundred_streams_on_one_loop_each_get_every_message_byte_exact() {
    let sent = numbered("hundred", 20);
    let plan = AttemptPlan::ok(steps(&sent))
        .with_chunks(ChunkPlan::Random {
            seed: 11,
            min: 1,
            max: 90,
        })
        .with_end(End::Stall);
    let server = TestServer::start(Scenario::single(plan), ServerOptions::plain()).unwrap();
    let driver = MioDriver::new();
    let mut streams = Vec::new();
    for _ in 0..100 {
        let collected = Collected::default();
        let config = config_for(&server).build().unwrap();
        let stream =
            ListenThread::spawn(driver.clone(), SiteStream::new(config), collected.clone())
                .unwrap();
        streams.push((stream, collected));
    }
    assert_eq!(driver.streams(), 100);
    wait_for("every stream to get all 20 messages", || {
        streams.iter().all(|(_, c)| c.len() >= sent.len())
    });
    let expected = as_bytes(&sent);
    for (stream, collected) in &streams {
        assert_eq!(collected.messages(), expected);
        let status = stream.status();
        assert_eq!(status.stats.messages, 20);
        assert_eq!(status.stats.attempts, 1, "no stream reconnected");
        assert!(status.healthy && status.running);
    }
    assert_eq!(server.attempts().len(), 100);
    assert!(server.attempts().iter().all(|a| a.signature_ok));
    close_each(&mut streams, "streaming");
    assert_eq!(driver.streams(), 0);
    assert!(
        server.wait_for_open_connections(0, Duration::from_secs(5)),
        "every socket was closed"
    );
}

#[test]
fn stops_are_prompt_with_many_streams_silent_or_backing_off() {
    let silent = TestServer::start(
        Scenario::single(AttemptPlan::never_answers()),
        ServerOptions::plain(),
    )
    .unwrap();
    let limited = TestServer::start(
        Scenario::single(AttemptPlan::status(420, "Enhance Your Calm")),
        ServerOptions::plain(),
    )
    .unwrap();
    let driver = MioDriver::new();
    let mut quiet = Vec::new();
    let mut waiting = Vec::new();
    for _ in 0..60 {
        let collected = Collected::default();
        let config = config_for(&silent).build().unwrap();
        quiet.push((
            ListenThread::spawn(driver.clone(), SiteStream::new(config), collected.clone())
                .unwrap(),
            collected,
        ));
        // A rate-limit backoff of ten minutes: only a stop can end it.
        let backoff = sitebucket_proto::BackoffPolicy::Twitter(sitebucket_proto::TwitterBackoff {
            rate_limit_start: Duration::from_secs(600),
            ..sitebucket_proto::TwitterBackoff::default()
        });
        let config = config_for(&limited).backoff(backoff).build().unwrap();
        let collected = Collected::default();
        waiting.push((
            ListenThread::spawn(driver.clone(), SiteStream::new(config), collected.clone())
                .unwrap(),
            collected,
        ));
    }
    assert_eq!(driver.streams(), 120);
    assert!(silent.wait_for_attempts(60, Duration::from_secs(10)));
    wait_for("every limited stream to back off", || {
        waiting
            .iter()
            .all(|(s, _)| s.status().stats.reconnects == 1)
    });
    close_each(&mut quiet, "silent");
    close_each(&mut waiting, "backing off");
    assert_eq!(driver.streams(), 0);
    assert_eq!(
        limited.attempts().len(),
        60,
        "nobody retried during the backoff"
    );
}

#[test]
fn killed_connections_reconnect_and_nothing_is_lost_or_duplicated() {
    let first = numbered("first", 5);
    let second = numbered("second", 5);
    let scenario = Scenario::new(vec![
        AttemptPlan::ok(steps(&first)).with_end(End::Stall),
        AttemptPlan::ok(steps(&second)).with_end(End::Stall),
    ]);
    let server = TestServer::start(scenario, ServerOptions::plain()).unwrap();
    let driver = MioDriver::new();
    // One stream first, so it alone gets attempt 0; the rest get the second plan.
    let mut streams = Vec::new();
    for i in 0..20 {
        let collected = Collected::default();
        let config = config_for(&server).build().unwrap();
        streams.push((
            ListenThread::spawn(driver.clone(), SiteStream::new(config), collected.clone())
                .unwrap(),
            collected,
        ));
        if i == 0 {
            wait_for("the first stream's messages", || streams[0].1.len() == 5);
        }
    }
    wait_for("every stream's first messages", || {
        streams.iter().all(|(_, c)| c.len() == 5)
    });
    assert_eq!(server.kill_connections(), 20);
    wait_for("every stream to reconnect and get five more", || {
        streams.iter().all(|(_, c)| c.len() == 10)
    });
    let mut expected = as_bytes(&first);
    expected.extend(as_bytes(&second));
    assert_eq!(streams[0].1.messages(), expected);
    let twice: Vec<Bytes> = as_bytes(&second).into_iter().cycle().take(10).collect();
    for (stream, collected) in &streams[1..] {
        assert_eq!(collected.messages(), twice);
        assert_eq!(stream.status().stats.attempts, 2);
        assert_eq!(
            stream.status().stats.last_error,
            Some(StreamError::Closed),
            "the kill was seen as a close"
        );
    }
    assert_eq!(server.attempts().len(), 40);
    close_each(&mut streams, "streaming after a reconnect");
}

#[test]
fn tls_streams_share_the_loop() {
    let sent = numbered("tls", 10);
    let plan = AttemptPlan::ok(steps(&sent)).with_end(End::Stall);
    let server = TestServer::start(Scenario::single(plan), ServerOptions::tls()).unwrap();
    let driver = MioDriver::new();
    let mut streams = Vec::new();
    for _ in 0..10 {
        let collected = Collected::default();
        let config = config_for(&server).build().unwrap();
        streams.push((
            ListenThread::spawn(driver.clone(), SiteStream::new(config), collected.clone())
                .unwrap(),
            collected,
        ));
    }
    wait_for("every TLS stream's messages", || {
        streams.iter().all(|(_, c)| c.len() >= sent.len())
    });
    for (_, collected) in &streams {
        assert_eq!(collected.messages(), as_bytes(&sent));
    }
    assert!(server.attempts().iter().all(|a| a.tls && a.signature_ok));
    close_each(&mut streams, "streaming over TLS");
}

#[test]
fn run_uses_a_private_loop_in_the_current_thread_and_stops_on_401() {
    let sent = numbered("run", 3);
    let scenario = Scenario::new(vec![
        AttemptPlan::ok(steps(&sent)).with_end(End::Close),
        AttemptPlan::status(401, "Unauthorized"),
    ]);
    let server = TestServer::start(scenario, ServerOptions::plain()).unwrap();
    let driver = MioDriver::new();
    let collected = Collected::default();
    let config = config_for(&server).build().unwrap();
    let mut stream = ListenThread::new(driver.clone(), SiteStream::new(config), collected.clone());
    let outcome = stream.run().unwrap();
    assert_eq!(
        outcome,
        Outcome::Fatal {
            status: 401,
            reason: "Unauthorized".into()
        }
    );
    assert_eq!(collected.messages(), as_bytes(&sent));
    assert_eq!(server.attempts().len(), 2);
    assert_eq!(driver.streams(), 0, "run does not use the shared loop");
    assert!(!stream.connection_healthy());
}

#[test]
fn a_wrong_secret_is_fatal_on_the_shared_loop() {
    let server = TestServer::start(
        Scenario::single(AttemptPlan::ok(vec![])),
        ServerOptions::plain(),
    )
    .unwrap();
    let c = server.credentials();
    let wrong = Credentials::new(
        c.consumer_key.clone(),
        "not the consumer secret",
        c.token.clone(),
        c.token_secret.clone(),
    );
    let config = config_for(&server).credentials(wrong).build().unwrap();
    let driver = MioDriver::new();
    let handle = driver
        .spawn(
            SiteStream::new(config),
            Box::new(Collected::default()),
            sitebucket_thread::RunState::new(),
        )
        .unwrap();
    let finished = handle.join().expect("the loop answers");
    assert!(
        matches!(finished.outcome, Outcome::Fatal { status: 401, .. }),
        "{:?}",
        finished.outcome
    );
    assert_eq!(finished.stream.outcome(), Some(&finished.outcome));
    assert_eq!(driver.streams(), 0);
}

#[test]
fn refused_connections_back_off_until_the_retry_limit() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = TestServer::start(
        Scenario::single(AttemptPlan::ok(vec![])),
        ServerOptions::plain(),
    )
    .unwrap();
    let config = config_for(&server)
        .url(format!("http://127.0.0.1:{port}/1.1/site.json"))
        .retry_limit(Some(3))
        .build()
        .unwrap();
    let driver = MioDriver::new();
    let collected = Collected::default();
    let mut stream = ListenThread::spawn(driver, SiteStream::new(config), collected).unwrap();
    let started = Instant::now();
    let outcome = stream.join();
    assert_eq!(
        outcome,
        Some(Outcome::GaveUp {
            attempts: 3,
            last_error: StreamError::ConnectFailed(std::io::ErrorKind::ConnectionRefused),
        })
    );
    // Two backoffs of 20 ms and 40 ms lie between the three attempts.
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert_eq!(stream.status().stats.attempts, 3);
}

#[test]
fn restart_runs_the_same_stream_again_on_the_loop() {
    let sent = numbered("restart", 4);
    let plan = AttemptPlan::ok(steps(&sent)).with_end(End::Stall);
    let server = TestServer::start(Scenario::single(plan), ServerOptions::plain()).unwrap();
    let driver = MioDriver::new();
    let collected = Collected::default();
    let config = config_for(&server).build().unwrap();
    let mut stream =
        ListenThread::spawn(driver.clone(), SiteStream::new(config), collected.clone()).unwrap();
    wait_for("the first run's messages", || collected.len() == 4);
    stream.restart().unwrap();
    wait_for("the second run's messages", || collected.len() == 8);
    assert_eq!(
        collected.messages(),
        as_bytes(&sent)
            .into_iter()
            .cycle()
            .take(8)
            .collect::<Vec<_>>()
    );
    assert_eq!(server.attempts().len(), 2);
    assert_eq!(driver.streams(), 1);
    let started = Instant::now();
    stream.close();
    assert_eq!(stream.join(), Some(Outcome::Stopped));
    assert!(started.elapsed() < CLOSE_WITHIN);
    assert_eq!(driver.streams(), 0);
}

#[test]
fn the_observer_sees_every_event_in_order_and_each_drain() {
    use sitebucket_proto::StreamEvent;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Seen {
        events: Mutex<Vec<StreamEvent>>,
        drains: Mutex<usize>,
    }
    impl sitebucket_thread::Observer for Seen {
        fn event(&self, event: &StreamEvent) {
            self.events.lock().unwrap().push(event.clone());
        }
        fn drained(&self, _stream: &SiteStream) {
            *self.drains.lock().unwrap() += 1;
        }
    }

    let sent = numbered("observed", 2);
    let plan = AttemptPlan::ok(vec![
        Step::Message(sent[0].clone()),
        Step::KeepAlive,
        Step::Message(sent[1].clone()),
    ])
    .with_end(End::Stall);
    let server = TestServer::start(Scenario::single(plan), ServerOptions::plain()).unwrap();
    let driver = MioDriver::new();
    let control = sitebucket_thread::RunState::new();
    let seen = Arc::new(Seen::default());
    control.set_observer(seen.clone());
    let collected = Collected::default();
    let config = config_for(&server).build().unwrap();
    let handle = driver
        .spawn(
            SiteStream::new(config),
            Box::new(collected.clone()),
            control.clone(),
        )
        .unwrap();
    wait_for("both messages", || collected.len() == 2);
    control.request_stop();
    assert_eq!(handle.join().unwrap().outcome, Outcome::Stopped);
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
    assert!(
        *seen.drains.lock().unwrap() >= 2,
        "a drain per wake-up, and the last one"
    );
    assert_eq!(collected.messages(), as_bytes(&sent));
}

/// A parser that holds the loop thread for `hold` on every message, as a slow user parser
/// on a starved CPU would, and counts the messages it finished.
struct SlowParser {
    hold: Duration,
    done: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl sitebucket_proto::Parser for SlowParser {
    fn parse(&mut self, _message: Bytes) {
        std::thread::sleep(self.hold);
        self.done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_busy_loop_reads_a_due_stream_before_declaring_it_stalled() {
    // Both servers write a keep-alive every 50 ms, far inside the 500 ms stall timeout, and
    // a message now and then. One stream's parser holds the shared loop for 1.2 s on each
    // message; meanwhile the other stream's keep-alives wait in its socket, reported by no
    // event of the batch being handled. When the batch ends, that stream's stall deadline
    // is past: the loop must read what its socket holds before the core judges it.
    let stall = Duration::from_millis(500);
    let keepalives = |for_: Duration| {
        let n = for_.as_millis() / 50;
        (0..n).flat_map(|_| [Step::KeepAlive, Step::Wait(Duration::from_millis(50))])
    };
    let sent = numbered("busy", 3);
    let mut plan_steps = Vec::new();
    for message in &sent {
        plan_steps.push(Step::Message(message.clone()));
        plan_steps.extend(keepalives(Duration::from_millis(1500)));
    }
    // Room to look at both streams before the server falls silent.
    plan_steps.extend(keepalives(Duration::from_secs(10)));
    let plan = AttemptPlan::ok(plan_steps).with_end(End::Stall);
    let server = TestServer::start(Scenario::single(plan), ServerOptions::plain()).unwrap();
    let driver = MioDriver::new();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let slow = SlowParser {
        hold: Duration::from_millis(1200),
        done: done.clone(),
    };
    let config = || config_for(&server).stall_timeout(stall).build().unwrap();
    let mut busy = ListenThread::spawn(driver.clone(), SiteStream::new(config()), slow).unwrap();
    let collected = Collected::default();
    let mut other =
        ListenThread::spawn(driver.clone(), SiteStream::new(config()), collected.clone()).unwrap();
    assert_eq!(driver.streams(), 2, "both streams share the one loop");
    wait_for("the slow parser to finish all 3 messages", || {
        done.load(std::sync::atomic::Ordering::SeqCst) >= sent.len()
    });
    wait_for("the other stream to get all 3 messages", || {
        collected.len() >= sent.len()
    });
    for (name, status) in [("busy", busy.status()), ("other", other.status())] {
        assert_eq!(
            (status.stats.attempts, status.stats.last_error),
            (1, None),
            "the {name} stream was not failed while its server kept writing"
        );
    }
    assert_eq!(collected.messages(), as_bytes(&sent));
    assert_eq!(server.attempts().len(), 2, "no stream reconnected");
    for stream in [&mut busy, &mut other] {
        stream.close();
        assert_eq!(stream.join(), Some(Outcome::Stopped));
    }
}

#[test]
fn a_420_that_arrived_while_the_loop_was_busy_counts_as_a_420_not_a_stall() {
    // The soak's early reconnects after 420: a 420 head waiting unread in the socket when
    // the stall deadline came was failed as a stall (a network error), so the client's
    // 420 sequence fell a step behind. Here the busy stream's message (at ~200 ms) holds the
    // loop for 1.2 s; the other server answers 420 at ~450 ms, inside the 500 ms stall
    // timeout, while the loop is busy.
    use sitebucket_proto::{BackoffPolicy, TwitterBackoff};
    let stall = Duration::from_millis(500);
    let keepalives =
        (0..200).flat_map(|_| [Step::KeepAlive, Step::Wait(Duration::from_millis(50))]);
    let mut busy_steps = vec![
        Step::Wait(Duration::from_millis(200)),
        Step::Message(b"{\"slow\":1}".to_vec()),
    ];
    busy_steps.extend(keepalives);
    let busy_server = TestServer::start(
        Scenario::single(AttemptPlan::ok(busy_steps).with_end(End::Stall)),
        ServerOptions::plain(),
    )
    .unwrap();
    let rate_plan = AttemptPlan::never_answers().with_steps(vec![
        Step::Wait(Duration::from_millis(450)),
        Step::RawWire(b"HTTP/1.1 420 Enhance Your Calm\r\nContent-Length: 0\r\n\r\n".to_vec()),
    ]);
    let rate_server =
        TestServer::start(Scenario::single(rate_plan), ServerOptions::plain()).unwrap();
    let driver = MioDriver::new();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let slow = SlowParser {
        hold: Duration::from_millis(1200),
        done: done.clone(),
    };
    let busy_config = config_for(&busy_server)
        .stall_timeout(stall)
        .build()
        .unwrap();
    let mut busy = ListenThread::spawn(driver.clone(), SiteStream::new(busy_config), slow).unwrap();
    // A seen 420 waits a minute (no second attempt in this test); a stall, 20 ms.
    let rate_config = config_for(&rate_server)
        .stall_timeout(stall)
        .backoff(BackoffPolicy::Twitter(TwitterBackoff {
            network_step: Duration::from_millis(20),
            network_max: Duration::from_millis(200),
            http_start: Duration::from_millis(50),
            http_max: Duration::from_millis(400),
            rate_limit_start: Duration::from_secs(60),
            rate_limit_max: Duration::from_secs(60),
        }))
        .build()
        .unwrap();
    let mut rate = ListenThread::spawn(
        driver.clone(),
        SiteStream::new(rate_config),
        Collected::default(),
    )
    .unwrap();
    wait_for("the slow parser to finish", || {
        done.load(std::sync::atomic::Ordering::SeqCst) >= 1
    });
    wait_for("the 420 stream to fail its attempt", || {
        rate.status().stats.last_error.is_some()
    });
    // Room for a wrong (network-error) reconnect to show.
    std::thread::sleep(Duration::from_millis(300));
    let stats = rate.status().stats;
    assert!(
        matches!(
            stats.last_error,
            Some(StreamError::Status { status: 420, .. })
        ) && stats.attempts == 1
            && rate_server.attempts().len() == 1,
        "the 420 counted as a 420 (one attempt, then the rate-limit wait): {stats:?}, {} attempts on the server",
        rate_server.attempts().len()
    );
    for stream in [&mut busy, &mut rate] {
        stream.close();
        assert_eq!(stream.join(), Some(Outcome::Stopped));
    }
}
