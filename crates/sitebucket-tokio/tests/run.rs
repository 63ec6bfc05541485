//! `Driver::run` (what `ListenThread::run` and the CLI call): the stream runs in the calling
//! thread, on a fresh current-thread runtime for a driver that owns its runtime, or on the
//! runtime of a given handle; a stop from another thread ends it promptly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sitebucket_e2e::{
    config_for, numbered_messages, server, wait_for, Collected, Transport, CLOSE_WITHIN,
};
use sitebucket_proto::Outcome;
use sitebucket_testserver::{AttemptPlan, End, Scenario, Step};
use sitebucket_thread::{Driver, RunState, SiteStream};
use sitebucket_tokio::TokioDriver;

/// Runs a stream of 30 messages with `driver.run` on a thread, stops it once they are all
/// in, and checks the messages, the outcome and the stop's latency.
fn runs_in_the_calling_thread(driver: TokioDriver) {
    let sent = numbered_messages(0..30);
    let plan = AttemptPlan::ok(sent.iter().cloned().map(Step::Message).collect())
        .with_end(End::HoldWithKeepAlives(Duration::from_millis(20)));
    let server = server(Scenario::single(plan), Transport::Tls);
    let config = config_for(&server, [12]).build().expect("valid config");
    let collected = Collected::new();
    let control = RunState::new();
    let run = {
        let (control, mut parser) = (control.clone(), collected.clone());
        std::thread::spawn(move || {
            let caller = std::thread::current().id();
            let mut stream = SiteStream::new(config);
            let outcome = driver.run(&mut stream, &mut parser, &control);
            (outcome, caller, stream.stats().messages)
        })
    };
    wait_for("every message", || collected.len() >= sent.len());
    let started = Instant::now();
    control.request_stop();
    let (outcome, _, messages) = run.join().expect("the run did not panic");
    let took = started.elapsed();
    assert_eq!(outcome, Outcome::Stopped);
    assert!(took < CLOSE_WITHIN * 5, "the stop took {took:?}");
    assert_eq!(messages, sent.len() as u64);
    let got: Vec<Vec<u8>> = collected.messages().iter().map(|m| m.to_vec()).collect();
    assert_eq!(got, sent);
    assert!(server.wait_for_open_connections(0, Duration::from_secs(10)));
}

#[test]
fn an_owning_driver_runs_the_stream_on_a_runtime_of_the_calling_thread() {
    let driver = TokioDriver::new();
    runs_in_the_calling_thread(driver.clone());
    // The run needed no runtime thread of the driver's own.
    assert_eq!(threads_named("sitebucket-rt"), 0);
}

#[test]
fn a_driver_on_a_given_multi_thread_runtime_runs_the_stream_with_its_handle() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    runs_in_the_calling_thread(TokioDriver::with_handle(runtime.handle().clone()));
}

#[test]
fn a_driver_on_a_given_current_thread_runtime_runs_while_that_runtime_is_driven() {
    let runtime = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime"),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let driving = {
        let runtime = runtime.clone();
        std::thread::spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            })
        })
    };
    runs_in_the_calling_thread(TokioDriver::with_handle(runtime.handle().clone()));
    let _ = stop.send(());
    driving.join().expect("the driving thread ended");
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
