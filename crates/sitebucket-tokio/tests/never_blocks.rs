//! The driver never blocks a runtime thread: on ONE current-thread runtime, a ticker task
//! asking to wake every 10 ms keeps waking on time while streams beside it resolve (one
//! lookup hangs for good, others take a second each), connect to a black hole, back off
//! after 503s, wait on a silent server and read a flood. A lookup, a connect or a sleep on
//! the runtime thread would stop the ticker for a second or more.
//!
//! One test in this binary, so no other test's load lands on its timing.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use sitebucket_e2e::resolve::{TestResolver, SLOW_NAME};
use sitebucket_e2e::{config_for, numbered_messages, server, BlackHole, Transport};
use sitebucket_proto::{Config, Credentials, SiteStream};
use sitebucket_testserver::{AttemptPlan, End, Repeat, Scenario, Step, TestServer};
use sitebucket_tokio::{spawn_with, Resolver};

/// A name the sluggish resolver answers after [`SLUGGISH`].
const SLUGGISH_NAME: &str = "sluggish.test";
const SLUGGISH: Duration = Duration::from_secs(1);
/// How long the ticker runs.
const RUN_FOR: Duration = Duration::from_millis(2500);
/// The ticker's period.
const TICK: Duration = Duration::from_millis(10);
/// The longest gap between two ticks allowed: generous for a loaded machine, and far below
/// what one blocking lookup ([`SLUGGISH`]) would cause.
const MAX_GAP: Duration = Duration::from_millis(250);

fn at(server: &TestServer, host: &str) -> SiteStream {
    let config = config_for(server, [12])
        .url(format!("http://{host}:{}/1.1/site.json", server.port()))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("valid config");
    SiteStream::new(config)
}

#[test]
fn a_current_thread_runtime_keeps_ticking_while_streams_resolve_connect_back_off_and_read() {
    let silent = server(
        Scenario::single(AttemptPlan::never_answers()),
        Transport::Plain,
    );
    let unavailable = server(
        Scenario::single(AttemptPlan::status(503, "Service Unavailable")),
        Transport::Plain,
    );
    let flood = server(
        Scenario::single(AttemptPlan::ok(vec![Step::Repeat(Repeat::endless(
            numbered_messages(0..20),
        ))])),
        Transport::Plain,
    );
    let steady = server(
        Scenario::single(
            AttemptPlan::ok(
                numbered_messages(0..5)
                    .into_iter()
                    .map(Step::Message)
                    .collect(),
            )
            .with_end(End::HoldWithKeepAlives(Duration::from_millis(20))),
        ),
        Transport::Plain,
    );
    let hole = BlackHole::new();
    let mut hanging = TestResolver::new();
    let sluggish = Resolver::new(|host, port| {
        assert_eq!(host, SLUGGISH_NAME);
        // On the lookup thread: this would stop the ticker if it ran on the runtime.
        std::thread::sleep(SLUGGISH);
        Ok(vec![SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port)])
    });

    let credentials = Credentials::new("key", "secret", "token", "token secret");
    let connecting = Config::builder([12], credentials)
        .url(hole.url())
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("valid config");
    let streams = vec![
        (at(&silent, SLOW_NAME), hanging.resolver()),
        (at(&unavailable, SLUGGISH_NAME), sluggish),
        (SiteStream::new(connecting), Resolver::system()),
        (at(&silent, "127.0.0.1"), Resolver::system()),
        (at(&flood, "127.0.0.1"), Resolver::system()),
        (at(&steady, "127.0.0.1"), Resolver::system()),
    ];

    // The runtime runs on a thread of its own, watched from here: a driver that blocked the
    // runtime thread on the hung lookup would never return from `block_on`.
    let (done, outcome) = std::sync::mpsc::channel();
    let watched = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        let result = runtime.block_on(async {
            let tasks: Vec<_> = streams
                .into_iter()
                .map(|(stream, resolver)| spawn_with(stream, |_: bytes::Bytes| {}, resolver))
                .collect();
            let started = Instant::now();
            let mut last = started;
            let mut gaps = Vec::new();
            let mut ticks = 0;
            while started.elapsed() < RUN_FOR {
                tokio::time::sleep(TICK).await;
                let now = Instant::now();
                gaps.push(now - last);
                last = now;
                ticks += 1;
            }
            let stats: Vec<_> = tasks.iter().map(|t| t.status().stats).collect();
            for task in &tasks {
                task.close();
            }
            for task in tasks {
                tokio::time::timeout(Duration::from_secs(10), task)
                    .await
                    .expect("a closed stream ends")
                    .expect("the task was not cancelled");
            }
            (gaps, ticks, stats)
        });
        let _ = done.send(result);
    });
    let result = outcome.recv_timeout(RUN_FOR + Duration::from_secs(20));
    hanging.release();
    let Ok((gaps, ticks, tasks)) = result else {
        panic!("the runtime thread was blocked: the test did not finish");
    };
    watched.join().expect("the runtime thread ended");

    let worst = gaps.iter().max().copied().unwrap_or_default();
    assert!(
        worst < MAX_GAP,
        "the ticker stalled for {worst:?} (ticks: {ticks}, gaps over 50 ms: {:?})",
        gaps.iter()
            .filter(|g| **g > Duration::from_millis(50))
            .collect::<Vec<_>>()
    );
    // Every stream got where it was meant to be meanwhile.
    assert_eq!(hanging.lookups_of(SLOW_NAME), 1, "the hung lookup");
    assert!(
        unavailable.attempts().len() >= 2,
        "503s backed off and were retried after slow lookups: {:?}",
        tasks[1]
    );
    assert!(
        tasks[2].attempts >= 1 && tasks[2].bytes == 0,
        "the black hole"
    );
    assert!(tasks[3].attempts >= 1, "the silent server: {:?}", tasks[3]);
    assert!(tasks[4].messages > 1000, "the flood: {:?}", tasks[4]);
    assert!(
        tasks[5].messages >= 5 && tasks[5].keep_alives >= 5,
        "{:?}",
        tasks[5]
    );
}
