//! The loop thread's lifetime: started lazily, one for many streams, gone after the last
//! driver clone and the last stream. One test in this binary, so no other test's loop
//! thread is counted.

mod common;

use std::time::Duration;

use common::{config_for, threads_named, wait_for};
use sitebucket_e2e::Collected;
use sitebucket_mio::MioDriver;
use sitebucket_proto::Outcome;
use sitebucket_proto::SiteStream;
use sitebucket_testserver::{AttemptPlan, End, Scenario, ServerOptions, Step, TestServer};
use sitebucket_thread::{Driver, ListenThread, RunState};

const LOOP_THREAD: &str = "sitebucket-mio";

#[cfg(target_os = "linux")]
#[test]
fn one_loop_thread_for_many_streams_and_none_left_after_drop() {
    let plan = AttemptPlan::ok(vec![Step::Message(b"{\"n\":1}".to_vec())]).with_end(End::Stall);
    let server = TestServer::start(Scenario::single(plan), ServerOptions::plain()).unwrap();

    // Lazily started: a new driver has no thread.
    let driver = MioDriver::new();
    assert_eq!(threads_named(LOOP_THREAD), 0);

    let mut streams = Vec::new();
    for _ in 0..50 {
        let collected = Collected::default();
        let config = config_for(&server).build().unwrap();
        streams.push((
            ListenThread::spawn(driver.clone(), SiteStream::new(config), collected.clone())
                .unwrap(),
            collected,
        ));
    }
    wait_for("every stream's message", || {
        streams.iter().all(|(_, c)| c.len() == 1)
    });
    assert_eq!(threads_named(LOOP_THREAD), 1, "fifty streams, one thread");
    assert_eq!(driver.streams(), 50);

    // Dropping the handles closes and joins the streams; dropping the last driver clone
    // with no stream left joins the loop thread at once.
    drop(streams);
    assert_eq!(driver.streams(), 0);
    assert_eq!(threads_named(LOOP_THREAD), 1, "the driver still lives");
    drop(driver);
    assert_eq!(
        threads_named(LOOP_THREAD),
        0,
        "no thread left after the drop"
    );
    assert!(server.wait_for_open_connections(0, Duration::from_secs(5)));

    // Dropped while a stream still runs: the loop outlives the driver until the stream ends.
    let driver = MioDriver::new();
    let control = RunState::new();
    let config = config_for(&server).build().unwrap();
    let handle = driver
        .spawn(
            SiteStream::new(config),
            Box::new(Collected::default()),
            control.clone(),
        )
        .unwrap();
    drop(driver);
    wait_for("the stream to be connected", || {
        control.status().stats.messages == 1
    });
    assert_eq!(threads_named(LOOP_THREAD), 1, "the stream keeps its loop");
    control.request_stop();
    let finished = handle.join().expect("the loop answers");
    assert_eq!(finished.outcome, Outcome::Stopped);
    wait_for("the loop thread to exit", || {
        threads_named(LOOP_THREAD) == 0
    });
    assert!(server.wait_for_open_connections(0, Duration::from_secs(5)));
}
