//! The runtime a `TokioDriver::new()` owns: started with the first stream, one thread for
//! many streams, gone after the last driver clone and the last stream. One test in this
//! binary, so no other test's runtime thread is counted.

use std::time::Duration;

use sitebucket_e2e::{config_for, server, wait_for, Collected, Transport};
use sitebucket_proto::Outcome;
use sitebucket_testserver::{AttemptPlan, End, Scenario, Step};
use sitebucket_thread::{Driver, ListenThread, RunState, SiteStream};
use sitebucket_tokio::TokioDriver;

const RUNTIME_THREAD: &str = "sitebucket-rt";

#[cfg(target_os = "linux")]
#[test]
fn one_runtime_thread_for_many_streams_and_none_left_after_drop() {
    let plan = AttemptPlan::ok(vec![Step::Message(b"{\"n\":1}".to_vec())]).with_end(End::Stall);
    let server = server(Scenario::single(plan), Transport::Plain);

    // Lazily started: a new driver has no thread.
    let driver = TokioDriver::new();
    assert_eq!(threads_named(RUNTIME_THREAD), 0);

    let mut streams = Vec::new();
    for _ in 0..50 {
        let collected = Collected::new();
        let config = config_for(&server, [1, 2, 3]).build().unwrap();
        streams.push((
            ListenThread::spawn(driver.clone(), SiteStream::new(config), collected.clone())
                .unwrap(),
            collected,
        ));
    }
    wait_for("every stream's message", || {
        streams.iter().all(|(_, c)| c.len() == 1)
    });
    assert_eq!(
        threads_named(RUNTIME_THREAD),
        1,
        "fifty streams, one thread"
    );
    assert_eq!(driver.streams(), 50);

    // Dropping the handles closes and joins the streams; dropping the last driver clone
    // with no stream left ends the runtime thread at once.
    drop(streams);
    assert_eq!(driver.streams(), 0);
    assert_eq!(threads_named(RUNTIME_THREAD), 1, "the driver still lives");
    drop(driver);
    assert_eq!(
        threads_named(RUNTIME_THREAD),
        0,
        "no thread left after the drop"
    );
    assert!(server.wait_for_open_connections(0, Duration::from_secs(5)));

    // Dropped while a stream still runs: the runtime outlives the driver until the stream
    // ends.
    let driver = TokioDriver::new();
    let control = RunState::new();
    let config = config_for(&server, [1, 2, 3]).build().unwrap();
    let handle = driver
        .spawn(
            SiteStream::new(config),
            Box::new(Collected::new()),
            control.clone(),
        )
        .unwrap();
    drop(driver);
    wait_for("the stream's message", || {
        control.status().stats.messages == 1
    });
    assert_eq!(
        threads_named(RUNTIME_THREAD),
        1,
        "the stream keeps its runtime"
    );
    control.request_stop();
    let finished = handle.join().expect("the runtime answers");
    assert_eq!(finished.outcome, Outcome::Stopped);
    wait_for("the runtime thread to end", || {
        threads_named(RUNTIME_THREAD) == 0
    });
    assert!(server.wait_for_open_connections(0, Duration::from_secs(5)));
}

/// How many threads of this process carry `name` (Linux: `/proc/self/task/*/comm`).
fn threads_named(name: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}
