//! `sitebucket listen` against servers that would make a naive client storm them, on every
//! driver, black-box (CLI.md, "Reconnecting": "A `200` head is not enough to forget past
//! failures … must not be able to make the client reconnect 4 times a second").
//!
//! Each server answers every request with `200` and then fails at once: it closes, sends a
//! `disconnect` message with code 2, or sends a frame over `--max-message-bytes`. None of
//! these connections earns trust, so each is a failed attempt: the waits grow by one
//! `--network-backoff-step` each time, and `--retry-limit` trips (exit 1).

mod common;

use std::time::{Duration, Instant};

use common::{assert_no_secrets, listen, server, spawn, DRIVERS, RUN_BOUND};
use nix::sys::signal::Signal;
use sitebucket_testserver::{AttemptPlan, End, Step};

/// The network backoff step (the default is 250 ms; shorter keeps the runs short).
const STEP: Duration = Duration::from_millis(100);

/// How long attempts are counted.
const WINDOW: Duration = Duration::from_secs(3);

/// The most attempts allowed in [`WINDOW`]: the growing sequence gives 8 (at 0, 0.1, 0.3,
/// 0.6, 1.0, 1.5, 2.1 and 2.8 s); a client that forgets its failures on every `200` makes
/// about 30.
const MAX_ATTEMPTS: usize = 12;

/// `--max-message-bytes` of the runs; the oversized frame is 16 times longer.
const MAX_MESSAGE_BYTES: usize = 1024;

/// The storm servers: a name, and the answer to every attempt.
fn storms() -> [(&'static str, AttemptPlan); 3] {
    [
        ("200 then close", AttemptPlan::ok(vec![Step::CloseNow])),
        (
            "200 and a disconnect message with code 2",
            AttemptPlan::ok(vec![Step::Disconnect {
                code: 2,
                reason: "duplicate stream".into(),
            }])
            .with_end(End::Close),
        ),
        (
            "200 and an oversized frame",
            AttemptPlan::ok(vec![Step::Oversized(16 * MAX_MESSAGE_BYTES)]).with_end(End::Stall),
        ),
    ]
}

fn args(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--network-backoff-step".into(),
        format!("{}ms", STEP.as_millis()),
        "--max-message-bytes".into(),
        MAX_MESSAGE_BYTES.to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// One storm on one driver: attempts counted over [`WINDOW`] (then SIGINT: exit 0), and a
/// second run with `--retry-limit 3` that gives up after three attempts (exit 1).
fn storm_on(driver: &str, name: &str, plan: AttemptPlan) {
    let label = format!("{driver}: {name}");
    let server = server(vec![plan.clone()]);
    let args = args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let running = spawn(listen(&server.url(), driver, &args), label.clone());
    std::thread::sleep(WINDOW);
    let finished = running.signal_and_wait(Signal::SIGINT, Duration::from_secs(5));
    assert_eq!(finished.code(), 0, "{label}: {}", finished.stderr);
    assert_no_secrets(&finished.stderr, Some(&server), &[]);
    let at: Vec<Instant> = server.attempts().iter().map(|a| a.at).collect();
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    println!(
        "{label}: {} attempts in {WINDOW:?}, gaps {gaps:?}",
        at.len()
    );
    assert!(
        at.len() <= MAX_ATTEMPTS,
        "{label}: {} attempts in {WINDOW:?} (at most {MAX_ATTEMPTS}); gaps {gaps:?}; stderr:\n{}",
        at.len(),
        finished.stderr
    );
    assert!(at.len() >= 4, "{label}: it stopped reconnecting");
    for (k, gap) in gaps.iter().enumerate() {
        let wait = STEP * (k as u32 + 1);
        assert!(
            *gap + Duration::from_millis(5) >= wait,
            "{label}: wait {} was {gap:?}, less than {wait:?}; gaps {gaps:?}",
            k + 1
        );
    }

    let server = common::server(vec![plan]);
    let args = self::args(&["--retry-limit", "3"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let done = spawn(listen(&server.url(), driver, &args), label.clone()).wait(RUN_BOUND);
    assert_eq!(
        done.code(),
        1,
        "{label}: --retry-limit 3 must trip; stderr:\n{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains("giving up: gave up after 3 consecutive failed attempts"),
        "{label}:\n{}",
        done.stderr
    );
    assert_eq!(server.attempts().len(), 3, "{label}:\n{}", done.stderr);
}

/// Every storm on `driver`, at the same time.
fn storms_on(driver: &'static str) {
    assert!(DRIVERS.contains(&driver));
    std::thread::scope(|scope| {
        for (name, plan) in storms() {
            scope.spawn(move || storm_on(driver, name, plan));
        }
    });
}

#[test]
fn storm_servers_get_a_growing_backoff_on_the_thread_driver() {
    storms_on("thread");
}

#[test]
fn storm_servers_get_a_growing_backoff_on_the_mio_driver() {
    storms_on("mio");
}

#[test]
fn storm_servers_get_a_growing_backoff_on_the_smol_driver() {
    storms_on("smol");
}
