//! Host-name resolution off the runtime (see `sitebucket_e2e::resolve`): the suite for
//! `TokioDriver::with_resolver` (owned runtime) and for a passed multi-thread runtime, and
//! below the async ways in (`Messages::with_resolver`, `run_control_with`), which must
//! not hold up a current-thread runtime while a lookup hangs.
sitebucket_e2e::resolution_suite!(sitebucket_tokio::TokioDriver::with_resolver);

/// The same suite with the streams on a multi-thread runtime the test passes.
mod given_multi_thread {
    fn driver(resolver: sitebucket_tokio::Resolver) -> sitebucket_tokio::TokioDriver {
        static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
        let handle = RUNTIME
            .get_or_init(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a multi-thread runtime")
            })
            .handle()
            .clone();
        sitebucket_tokio::TokioDriver::with_handle(handle).resolving_with(resolver)
    }
    sitebucket_e2e::resolution_suite!(driver);
}

use std::future::Future;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use sitebucket_e2e::resolve::{TestResolver, FAST_NAME, SLOW_NAME};
use sitebucket_e2e::{
    config_for, numbered_messages, server, wait_for, Transport, CLOSE_WITHIN, PATIENCE,
};
use sitebucket_proto::control::{ControlCall, ControlError, ControlRequest};
use sitebucket_proto::Outcome;
use sitebucket_testserver::{AttemptPlan, End, Scenario, Step, TestServer};
use sitebucket_thread::{SiteStream, RESOLVE_THREAD_NAME};
use sitebucket_tokio::{run_control_with, StreamItem};

/// `body` on a fresh current-thread runtime, failing the test after [`PATIENCE`].
fn bounded<T>(body: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
        .block_on(async {
            tokio::time::timeout(PATIENCE, body)
                .await
                .unwrap_or_else(|_| panic!("the test did not finish within {PATIENCE:?}"))
        })
}

/// A stream aimed at `host` on the server's port.
fn stream_to(server: &TestServer, host: &str) -> SiteStream {
    let config = config_for(server, [12])
        .url(format!("http://{host}:{}/1.1/site.json", server.port()))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("valid config");
    SiteStream::new(config)
}

#[test]
fn a_message_stream_streams_from_a_resolved_name() {
    let sent = numbered_messages(0..25);
    let steps = sent.iter().cloned().map(Step::Message).collect();
    let plan = AttemptPlan::ok(steps).with_end(End::HoldWithKeepAlives(Duration::from_millis(20)));
    let server = server(Scenario::single(plan), Transport::Plain);
    let names = TestResolver::new();
    let mut messages =
        sitebucket_tokio::messages_with(stream_to(&server, FAST_NAME), names.resolver());
    let got = bounded(async {
        let mut got = Vec::new();
        while got.len() < sent.len() {
            match messages.next().await.expect("an item") {
                StreamItem::Message(message) => got.push(message.to_vec()),
                StreamItem::Connected { status, .. } => assert_eq!(status, 200),
                other => panic!("unexpected {other:?}"),
            }
        }
        messages.stop();
        assert_eq!(
            messages.next().await,
            Some(StreamItem::Finished(Outcome::Stopped)),
            "the stop ends the stream"
        );
        assert_eq!(messages.next().await, None);
        got
    });
    assert_eq!(got, sent);
    assert_eq!(messages.outcome(), Some(&Outcome::Stopped));
    let lookups = names.lookups();
    assert_eq!(lookups.len(), 1, "{lookups:?}");
    assert_eq!(lookups[0].host, FAST_NAME);
    assert_eq!(lookups[0].thread.as_deref(), Some(RESOLVE_THREAD_NAME));
    assert_eq!(server.attempts().len(), 1);
}

#[test]
fn a_message_stream_stops_promptly_while_resolving() {
    let server = server(
        Scenario::single(AttemptPlan::never_answers()),
        Transport::Plain,
    );
    let mut names = TestResolver::new();
    let mut messages =
        sitebucket_tokio::messages_with(stream_to(&server, SLOW_NAME), names.resolver());
    let control = messages.run_state().clone();
    let ticks = bounded(async {
        // The stream waits for its lookup while a timer task on the same thread keeps
        // running; the stop comes from that task.
        let waiting = async {
            let mut ticks = 0;
            while names.lookups_of(SLOW_NAME) == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                ticks += 1;
            }
            let started = Instant::now();
            control.request_stop();
            (ticks, started)
        };
        let (next, (ticks, stop_started)) = tokio::join!(messages.next(), waiting);
        let took = stop_started.elapsed();
        assert_eq!(
            next,
            Some(StreamItem::Finished(Outcome::Stopped)),
            "no message while resolving"
        );
        assert!(took < CLOSE_WITHIN, "a stop while resolving took {took:?}");
        ticks
    });
    assert_eq!(ticks, 20, "the runtime kept running during the lookup");
    assert_eq!(messages.outcome(), Some(&Outcome::Stopped));
    assert_eq!(names.lookups_of(SLOW_NAME), 1);
    names.release();
    wait_for("the abandoned lookup to end", || names.ended() == 1);
    std::thread::sleep(Duration::from_millis(100));
    assert!(server.attempts().is_empty(), "the dropped answer was used");
}

#[test]
fn run_control_with_waits_for_a_lookup_without_blocking_the_runtime() {
    let server = server(
        Scenario::single(AttemptPlan::never_answers()),
        Transport::Plain,
    );
    let names = TestResolver::new();
    let config = config_for(&server, [12])
        .url(format!(
            "http://{SLOW_NAME}:{}/1.1/site.json",
            server.port()
        ))
        .build()
        .expect("valid config");
    let timeout = Duration::from_millis(300);
    let call = ControlCall::for_stream(&config, Some("sb_0"), ControlRequest::info())
        .with_timeout(timeout);
    let resolver = names.resolver();
    let started = Instant::now();
    let (result, timer_done) = bounded(async {
        tokio::join!(run_control_with(call, &resolver), async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            started.elapsed()
        })
    });
    let took = started.elapsed();
    assert_eq!(result.map(drop), Err(ControlError::Timeout(timeout)));
    assert!(
        timer_done < timeout,
        "a timer beside the hung lookup fired only after {timer_done:?}"
    );
    assert!(
        took >= timeout && took < timeout + PATIENCE / 10,
        "{took:?}"
    );
    assert_eq!(names.lookups_of(SLOW_NAME), 1);
    assert!(server.attempts().is_empty());
}
