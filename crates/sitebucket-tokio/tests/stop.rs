//! Every way of stopping a stream is prompt in every state, on both runtime flavours, and
//! leaves no task and no socket behind: `StreamTask::close`, dropping the `StreamTask`,
//! aborting a `tokio::spawn`ed `drive`, dropping a `Messages`; while connecting,
//! resolving, waiting on a silent server, backing off and streaming a flood.
//!
//! One test in this binary, so the process's open file descriptors (`/proc/self/fd`) are
//! this test's alone.

use std::future::Future;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use sitebucket_e2e::resolve::{TestResolver, SLOW_NAME};
use sitebucket_e2e::{config_for, numbered_messages, server, BlackHole, Transport, CLOSE_WITHIN};
use sitebucket_proto::Outcome;
use sitebucket_proto::{BackoffPolicy, Config, Credentials, SiteStream};
use sitebucket_testserver::{AttemptPlan, Repeat, Scenario, Step, TestServer};
use sitebucket_thread::{RunState, Status};
use sitebucket_tokio::{drive_with, Resolver, TokioDriver};
use tokio::runtime::{Builder, Runtime};

/// The longest any wait lasts before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy)]
enum State {
    Connecting,
    Resolving,
    Silent,
    BackingOff,
    Streaming,
}

#[derive(Debug, Clone, Copy)]
enum How {
    /// `StreamTask::close`, then await the task.
    Close,
    /// Drop the `StreamTask`.
    DropTask,
    /// `abort()` a `tokio::spawn(drive_with(..))`'s `JoinHandle`.
    AbortJoinHandle,
    /// Drop a `Messages` polled by the test itself.
    DropMessages,
}

/// The servers every state is aimed at, shared by all the runs.
struct Servers {
    silent: TestServer,
    rate_limited: TestServer,
    flood: TestServer,
    hole: BlackHole,
}

impl Servers {
    fn start() -> Self {
        let flood = AttemptPlan::ok(vec![Step::Repeat(Repeat::endless(numbered_messages(
            0..20,
        )))]);
        Self {
            silent: server(
                Scenario::single(AttemptPlan::never_answers()),
                Transport::Plain,
            ),
            rate_limited: server(
                Scenario::single(AttemptPlan::status(420, "Enhance Your Calm")),
                Transport::Plain,
            ),
            flood: server(Scenario::single(flood), Transport::Plain),
            hole: BlackHole::new(),
        }
    }

    fn stream(&self, state: State) -> SiteStream {
        let config = match state {
            State::Connecting => {
                let credentials = Credentials::new("key", "secret", "token", "token secret");
                Config::builder([12], credentials)
                    .url(self.hole.url())
                    .connect_timeout(Duration::from_secs(10))
                    .build()
            }
            State::Resolving => config_for(&self.silent, [12])
                .url(format!(
                    "http://{SLOW_NAME}:{}/1.1/site.json",
                    self.silent.port()
                ))
                .connect_timeout(Duration::from_secs(10))
                .build(),
            State::Silent => config_for(&self.silent, [12]).build(),
            // A minute's wait after the 420.
            State::BackingOff => config_for(&self.rate_limited, [12])
                .backoff(BackoffPolicy::default())
                .build(),
            State::Streaming => config_for(&self.flood, [12]).build(),
        };
        SiteStream::new(config.expect("valid config"))
    }

    fn open_connections_gone(&self) -> bool {
        let wait = PATIENCE / 4;
        self.silent.wait_for_open_connections(0, wait)
            && self.rate_limited.wait_for_open_connections(0, wait)
            && self.flood.wait_for_open_connections(0, wait)
    }
}

/// Whether a run with this status (and these lookups) is in `state`; `requests_before` is
/// how many requests the silent server had seen before the run.
fn reached(
    state: State,
    status: &Status,
    names: &TestResolver,
    servers: &Servers,
    requests_before: usize,
) -> bool {
    match state {
        State::Connecting => status.stats.attempts >= 1,
        State::Resolving => names.lookups_of(SLOW_NAME) >= 1,
        State::Silent => servers.silent.attempts().len() > requests_before,
        State::BackingOff => status.stats.reconnects >= 1,
        State::Streaming => status.stats.messages >= 200,
    }
}

/// How many file descriptors the process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Polls `done` every millisecond on the runtime until it holds; panics after [`PATIENCE`].
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The stream's state reached: then a little more time, so it is inside its wait.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(30)).await;
}

/// Starts a stream in `state`, gets it there, stops it `how`, and returns how long the stop
/// took.
async fn stop_once(
    runtime: &tokio::runtime::Handle,
    servers: &Servers,
    state: State,
    how: How,
) -> Duration {
    let names = TestResolver::new();
    let resolver: Resolver = names.resolver();
    let stream = servers.stream(state);
    let before = servers.silent.attempts().len();
    let took = match how {
        How::Close | How::DropTask => {
            let driver = TokioDriver::with_handle(runtime.clone()).resolving_with(resolver);
            let task = driver
                .spawn_stream(stream, |_: bytes::Bytes| {})
                .expect("spawn");
            until("the state", || {
                reached(state, &task.status(), &names, servers, before)
            })
            .await;
            settle().await;
            let started = Instant::now();
            if let How::Close = how {
                task.close();
                let finished = tokio::time::timeout(PATIENCE, task)
                    .await
                    .expect("the task ends")
                    .expect("the task was not cancelled");
                assert_eq!(finished.outcome, Outcome::Stopped, "{state:?} {how:?}");
            } else {
                drop(task);
                until("the task to end", || driver.streams() == 0).await;
            }
            started.elapsed()
        }
        How::AbortJoinHandle => {
            let control = RunState::new();
            let task = tokio::spawn({
                let control = control.clone();
                let mut stream = stream;
                async move {
                    let mut parser = |_: bytes::Bytes| {};
                    drive_with(&mut stream, &mut parser, &control, &resolver).await
                }
            });
            until("the state", || {
                reached(state, &control.status(), &names, servers, before)
            })
            .await;
            settle().await;
            let started = Instant::now();
            task.abort();
            let ended = tokio::time::timeout(PATIENCE, task).await.expect("ends");
            assert!(ended.expect_err("aborted").is_cancelled());
            started.elapsed()
        }
        How::DropMessages => {
            let mut messages = sitebucket_tokio::messages_with(stream, resolver);
            let deadline = Instant::now() + PATIENCE;
            // The stream runs only while polled: poll it until the state is reached.
            while !reached(state, &messages.status(), &names, servers, before) {
                assert!(Instant::now() < deadline, "timed out reaching {state:?}");
                tokio::select! {
                    next = messages.next() => assert!(next.is_some(), "{state:?} ended"),
                    () = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
            }
            let settled = tokio::time::sleep(Duration::from_millis(30));
            tokio::pin!(settled);
            loop {
                tokio::select! {
                    _ = messages.next() => {}
                    () = settled.as_mut() => break,
                }
            }
            let started = Instant::now();
            drop(messages);
            started.elapsed()
        }
    };
    drop(names);
    took
}

fn runtimes() -> [(&'static str, Runtime); 2] {
    [
        (
            "current-thread",
            Builder::new_current_thread().enable_all().build().unwrap(),
        ),
        (
            "multi-thread",
            Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        ),
    ]
}

fn bounded<T>(runtime: &Runtime, body: impl Future<Output = T>) -> T {
    runtime.block_on(async {
        tokio::time::timeout(PATIENCE * 4, body)
            .await
            .expect("the runs finish")
    })
}

#[cfg(target_os = "linux")]
#[test]
fn every_stop_is_prompt_in_every_state_and_leaves_no_task_or_socket() {
    let servers = Servers::start();
    let mut slow = Vec::new();
    for (flavor, runtime) in runtimes() {
        let handle = runtime.handle().clone();
        bounded(&runtime, async {
            for state in [
                State::Connecting,
                State::Resolving,
                State::Silent,
                State::BackingOff,
                State::Streaming,
            ] {
                for how in [
                    How::Close,
                    How::DropTask,
                    How::AbortJoinHandle,
                    How::DropMessages,
                ] {
                    // Settle what an earlier run left closing, then count.
                    assert!(servers.open_connections_gone(), "server connections linger");
                    let before = open_fds();
                    let t = Instant::now();
                    let took = stop_once(&handle, &servers, state, how).await;
                    eprintln!(
                        "{flavor} {state:?} {how:?} stop {took:?} total {:?}",
                        t.elapsed()
                    );
                    if took >= CLOSE_WITHIN {
                        slow.push(format!("{flavor} {state:?} {how:?}: {took:?}"));
                    }
                    until("no task left", || handle.metrics().num_alive_tasks() == 0).await;
                    assert!(
                        servers.open_connections_gone(),
                        "{flavor} {state:?} {how:?}"
                    );
                    until("every socket closed", || open_fds() <= before).await;
                }
            }
        });
    }
    assert!(
        slow.is_empty(),
        "stops slower than {CLOSE_WITHIN:?}: {slow:?}"
    );
}
