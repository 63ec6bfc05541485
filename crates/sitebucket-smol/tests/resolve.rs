//! Host-name resolution off the executor (see `sitebucket_e2e::resolve`): the suite for
//! `SmolDriver::with_resolver`, and below the async ways in (`Messages::with_resolver`,
//! `run_control_with`), which must not block the executor while a lookup hangs.
sitebucket_e2e::resolution_suite!(sitebucket_smol::SmolDriver::with_resolver);

use std::future::Future;
use std::time::{Duration, Instant};

use futures_lite::future::{or, zip};
use futures_lite::StreamExt;
use sitebucket_e2e::resolve::{TestResolver, FAST_NAME, SLOW_NAME};
use sitebucket_e2e::{
    config_for, numbered_messages, server, wait_for, Transport, CLOSE_WITHIN, PATIENCE,
};
use sitebucket_proto::control::{ControlCall, ControlError, ControlRequest};
use sitebucket_proto::Outcome;
use sitebucket_smol::{run_control_with, StreamItem};
use sitebucket_testserver::{AttemptPlan, End, Scenario, Step, TestServer};
use sitebucket_thread::{SiteStream, RESOLVE_THREAD_NAME};
use smol::Timer;

/// `body` under `smol::block_on`, failing the test after [`PATIENCE`].
fn bounded<T>(body: impl Future<Output = T>) -> T {
    smol::block_on(or(body, async {
        Timer::after(PATIENCE).await;
        panic!("the test did not finish within {PATIENCE:?}");
    }))
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
        sitebucket_smol::messages_with(stream_to(&server, FAST_NAME), names.resolver())
            .messages_only();
    let got = bounded(async {
        let mut got = Vec::new();
        while got.len() < sent.len() {
            let message = messages.next().await.expect("a message");
            got.push(message.to_vec());
        }
        messages.get_ref().stop();
        assert_eq!(messages.next().await, None, "the stop ends the stream");
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
        sitebucket_smol::messages_with(stream_to(&server, SLOW_NAME), names.resolver());
    let control = messages.run_state().clone();
    let ticks = bounded(async {
        // The stream waits for its lookup while a timer task on the same thread keeps
        // running; the stop comes from that task.
        let waiting = async {
            let mut ticks = 0;
            while names.lookups_of(SLOW_NAME) == 0 {
                Timer::after(Duration::from_millis(1)).await;
            }
            for _ in 0..20 {
                Timer::after(Duration::from_millis(5)).await;
                ticks += 1;
            }
            let started = Instant::now();
            control.request_stop();
            (ticks, started)
        };
        let (next, (ticks, stop_started)) = zip(messages.next(), waiting).await;
        let took = stop_started.elapsed();
        assert_eq!(
            next,
            Some(StreamItem::Finished(Outcome::Stopped)),
            "nothing but the end while resolving"
        );
        assert!(took < CLOSE_WITHIN, "a stop while resolving took {took:?}");
        ticks
    });
    assert_eq!(ticks, 20, "the executor kept running during the lookup");
    assert_eq!(messages.outcome(), Some(&Outcome::Stopped));
    assert_eq!(names.lookups_of(SLOW_NAME), 1);
    names.release();
    wait_for("the abandoned lookup to end", || names.ended() == 1);
    std::thread::sleep(Duration::from_millis(100));
    assert!(server.attempts().is_empty(), "the dropped answer was used");
}

#[test]
fn control_with_waits_for_a_lookup_without_blocking_the_executor() {
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
    let (result, timer_done) = bounded(zip(run_control_with(call, &resolver), async {
        Timer::after(Duration::from_millis(30)).await;
        started.elapsed()
    }));
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
