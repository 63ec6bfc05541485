//! `sitebucket listen` for many users, black-box, on every driver, against the test server:
//! README "Many users" — connections of at most 100 ids at connect, filled to 1,000 users
//! each through control streams when the server announces them; SIGHUP re-reading the
//! follow file; one dropped connection reconnecting alone; stdout lines whole while several
//! streams print at once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use sitebucket_testserver::{AttemptPlan, Repeat, Step, TestServer};

/// How long a many-user run may take to reach a state the test waits for.
const SETTLE: Duration = Duration::from_secs(20);

/// A signal must end the run within this long (the contract says 1 s; the machine is busy).
const STOP_BOUND: Duration = Duration::from_secs(5);

/// A small pool of messages.
fn pool() -> Vec<Vec<u8>> {
    (0..20)
        .map(|i| format!("{{\"for_user\":{i},\"message\":{{\"n\":{i}}}}}").into_bytes())
        .collect()
}

/// A 200 stream: a control message of its own when `control`, then messages every 20 ms
/// forever, with keep-alives.
fn streaming(control: bool) -> AttemptPlan {
    let mut steps = Vec::new();
    if control {
        steps.push(Step::Control);
    }
    steps.push(Step::Repeat(
        Repeat::endless(pool())
            .with_interval(Duration::from_millis(20))
            .with_keep_alive_every(10),
    ));
    AttemptPlan::ok(steps)
}

/// The `follow` ids of each stream connection the server saw (control requests are
/// connections too; they are left out).
fn follows_by_attempt(server: &TestServer) -> Vec<Vec<u64>> {
    server
        .attempts()
        .iter()
        .filter(|a| a.path == "/1.1/site.json")
        .map(|a| {
            a.query_param("follow")
                .unwrap_or("")
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().expect("numeric id"))
                .collect()
        })
        .collect()
}

/// Every user the server's live control streams follow, and how many each follows.
fn control_follows(server: &TestServer) -> (BTreeSet<u64>, Vec<usize>) {
    let streams = server.control_streams();
    let all = streams
        .iter()
        .flat_map(|s| s.follow.iter().copied())
        .collect();
    (all, streams.iter().map(|s| s.follow.len()).collect())
}

/// README "Many users": 2,500 ids take 3 connections when the server announces control
/// streams: 100 ids each at connect, the other 2,200 added through control.
#[test]
fn many_users_fill_three_connections_through_control_streams() {
    for driver in DRIVERS {
        let server = server(vec![streaming(true)]);
        let ids = id_file(&format!("control-{driver}"), 1..=2500);
        let running = spawn(
            listen_args(
                &server.url(),
                driver,
                &["--follow-file", ids.to_str().unwrap()],
            ),
            driver,
        );
        assert!(
            running.wait_stderr("added 2200 user(s)", SETTLE),
            "{driver}: {}",
            running.stderr_text()
        );
        let (all, sizes) = control_follows(&server);
        assert_eq!(all, (1..=2500).collect(), "{driver}");
        assert_eq!(sizes.len(), 3, "{driver}: {sizes:?}");
        assert!(sizes.iter().all(|n| *n <= 1000), "{driver}: {sizes:?}");
        let at_connect = follows_by_attempt(&server);
        assert_eq!(
            at_connect.len(),
            3,
            "{driver}: three connections only: {}",
            running.stderr_text()
        );
        assert!(at_connect.iter().all(|f| f.len() == 100), "{driver}");
        assert!(
            running.wait_stdout_lines(10, SETTLE),
            "{driver}: messages flow"
        );
        let done = running.signal_and_wait(Signal::SIGTERM, STOP_BOUND);
        assert_no_secrets(&done.stderr, Some(&server), &[]);
        assert_eq!(done.code(), 0, "{driver}: {}", done.stderr);
        // README "Exit status" 0: within a second of the signal, every stream closed.
        assert!(
            done.elapsed < Duration::from_secs(1),
            "{driver}: {:?}",
            done.elapsed
        );
        for line in done.stderr.lines().filter(|l| l.contains("HTTP 200")) {
            assert!(line.contains("stream "), "{driver}: unnamed: {line}");
        }
        let _ = std::fs::remove_file(ids);
    }
}

/// README "Many users": without control streams, 2,500 ids take 25 connections of 100.
#[test]
fn without_control_streams_many_users_take_connections_of_100() {
    for driver in DRIVERS {
        let server = server(vec![streaming(false)]);
        let ids = id_file(&format!("plain-{driver}"), 1..=2500);
        let running = spawn(
            listen_args(
                &server.url(),
                driver,
                &["--follow-file", ids.to_str().unwrap()],
            ),
            driver,
        );
        assert!(
            running.wait_stderr("added 2200 user(s)", SETTLE),
            "{driver}: {}",
            running.stderr_text()
        );
        assert!(
            server.wait_for_attempts(25, SETTLE),
            "{driver}: {}",
            running.stderr_text()
        );
        let at_connect = follows_by_attempt(&server);
        assert_eq!(at_connect.len(), 25, "{driver}");
        assert!(at_connect.iter().all(|f| f.len() == 100), "{driver}");
        let all: BTreeSet<u64> = at_connect.into_iter().flatten().collect();
        assert_eq!(all, (1..=2500).collect(), "{driver}");
        let done = running.signal_and_wait(Signal::SIGTERM, STOP_BOUND);
        assert_eq!(done.code(), 0, "{driver}: {}", done.stderr);
        let _ = std::fs::remove_file(ids);
    }
}

/// README "Many users": SIGHUP re-reads `--follow-file` and applies the difference live
/// through the control stream (no new connection), logging what changed; a file that no
/// longer reads keeps the users as they were.
#[test]
fn sighup_adds_and_removes_users_live() {
    for driver in DRIVERS {
        let server = server(vec![streaming(true)]);
        let ids = id_file(&format!("hup-{driver}"), 1..=150);
        let mut running = spawn(
            listen_args(
                &server.url(),
                driver,
                &["--follow-file", ids.to_str().unwrap()],
            ),
            driver,
        );
        assert!(
            running.wait_stderr("added 50 user(s)", SETTLE),
            "{driver}: {}",
            running.stderr_text()
        );
        let expected: BTreeSet<u64> = (11..=150).chain(1001..=1020).collect();
        write_ids(&ids, expected.iter().copied());
        running.signal(Signal::SIGHUP);
        assert!(
            running.wait_stderr("following 160 user(s) on 1 stream(s)", SETTLE),
            "{driver}: {}",
            running.stderr_text()
        );
        assert!(
            running.wait_stderr("20 user(s) to add", SETTLE)
                && running.wait_stderr("10 to remove (1,2,3,4,5,6,7,8,9,10)", SETTLE),
            "{driver}: {}",
            running.stderr_text()
        );
        assert_eq!(control_follows(&server).0, expected, "{driver}");
        assert_eq!(
            follows_by_attempt(&server).len(),
            1,
            "{driver}: changed live: {}",
            running.stderr_text()
        );

        std::fs::write(&ids, "12\nnot-an-id\n").unwrap();
        running.signal(Signal::SIGHUP);
        assert!(
            running.wait_stderr("line 2: user id \"not-an-id\"", SETTLE),
            "{driver}: {}",
            running.stderr_text()
        );
        assert!(running
            .stderr_text()
            .contains("still following the same users"));
        assert_eq!(control_follows(&server).0, expected, "{driver}");

        let done = running.signal_and_wait(Signal::SIGTERM, STOP_BOUND);
        assert_eq!(done.code(), 0, "{driver}: {}", done.stderr);
        let _ = std::fs::remove_file(ids);
    }
}

/// README "Many users": the server drops one of two connections; only that stream
/// reconnects, and its users added through control are added again on the new connection.
#[test]
fn one_dropped_connection_reconnects_alone() {
    for driver in DRIVERS {
        let dropped = AttemptPlan::ok(vec![
            Step::Control,
            Step::Repeat(
                Repeat::once(pool())
                    .with_count(100)
                    .with_interval(Duration::from_millis(30)),
            ),
            Step::CloseNow,
        ]);
        let server = server(vec![streaming(true), dropped, streaming(true)]);
        let ids = id_file(&format!("drop-{driver}"), 1..=1500);
        let running = spawn(
            listen_args(
                &server.url(),
                driver,
                &["--follow-file", ids.to_str().unwrap()],
            ),
            driver,
        );
        assert!(
            running.wait_stderr("added 1300 user(s)", SETTLE),
            "{driver}: {}",
            running.stderr_text()
        );
        let before: BTreeMap<usize, Vec<u64>> = server
            .control_streams()
            .into_iter()
            .map(|s| (s.attempt, s.follow))
            .collect();
        assert_eq!(before.keys().copied().collect::<Vec<_>>(), [0, 1]);
        assert!(
            eventually(SETTLE, || follows_by_attempt(&server).len() == 3),
            "{driver}: {}",
            running.stderr_text()
        );
        let resynced = eventually(SETTLE, || {
            server
                .control_streams()
                .iter()
                .any(|s| s.attempt > 1 && s.follow == before[&1])
        });
        assert!(resynced, "{driver}: {:?}", server.control_streams());
        // The other stream never reconnected.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(follows_by_attempt(&server).len(), 3, "{driver}");
        let follows = follows_by_attempt(&server);
        assert_eq!(
            follows[2], follows[1],
            "{driver}: the same stream came back"
        );
        let done = running.signal_and_wait(Signal::SIGTERM, STOP_BOUND);
        assert_eq!(done.code(), 0, "{driver}: {}", done.stderr);
        let backoffs: Vec<&str> = done
            .stderr
            .lines()
            .filter(|l| l.contains("before reconnecting"))
            .collect();
        assert_eq!(backoffs.len(), 1, "{driver}: {}", done.stderr);
        assert!(backoffs[0].contains("stream "), "{driver}: {}", backoffs[0]);
        let _ = std::fs::remove_file(ids);
    }
}

/// README "Output" and "Many users": three streams printing as fast as they can never mix
/// two messages in a line, and `--max-messages` counts across streams.
#[test]
fn stdout_lines_stay_whole_under_concurrent_streams() {
    let messages: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            let pad = "x".repeat(i * 997 % 8_000);
            if i % 5 == 0 {
                format!("{{\n  \"n\": {i},\n  \"pad\": \"{pad}\"\n}}").into_bytes()
            } else {
                format!("{{\"n\":{i},\"pad\":\"{pad}\"}}").into_bytes()
            }
        })
        .collect();
    let printed: BTreeSet<Vec<u8>> = messages.iter().map(|m| one_line(m)).collect();
    for driver in DRIVERS {
        let plan = AttemptPlan::ok(vec![
            Step::Control,
            Step::Repeat(Repeat::endless(messages.clone()).with_interval(Duration::from_millis(1))),
        ]);
        let server = server(vec![plan]);
        let ids = id_file(&format!("lines-{driver}"), 1..=2500);
        let done = run(
            listen_args(
                &server.url(),
                driver,
                &[
                    "--follow-file",
                    ids.to_str().unwrap(),
                    "--max-messages",
                    "3000",
                ],
            ),
            driver,
        );
        assert_eq!(done.code(), 0, "{driver}: {}", done.stderr);
        let lines: Vec<&[u8]> = done.stdout.split(|b| *b == b'\n').collect();
        assert_eq!(lines.len(), 3001, "{driver}: 3000 lines and the end");
        assert!(lines[3000].is_empty());
        for line in &lines[..3000] {
            assert!(
                printed.contains(*line) || line.starts_with(b"{\"control\":"),
                "{driver}: a mixed line: {}",
                String::from_utf8_lossy(&line[..line.len().min(200)])
            );
        }
        let streams: BTreeSet<&[u8]> = lines
            .iter()
            .filter(|l| l.starts_with(b"{\"control\":"))
            .copied()
            .collect();
        assert_eq!(streams.len(), 3, "{driver}: every stream printed");
        let _ = std::fs::remove_file(ids);
    }
}

/// README "Many users": a stream refused for good (401) is logged with its users and the
/// others go on; the run exits 1 only when every stream has given up.
#[test]
fn a_refused_stream_is_logged_with_its_users_and_the_rest_go_on() {
    for driver in DRIVERS {
        let refused = AttemptPlan::status(401, "Unauthorized");
        let server = server(vec![streaming(true), refused, streaming(true)]);
        let ids = id_file(&format!("refused-{driver}"), 1..=1500);
        let running = spawn(
            listen_args(
                &server.url(),
                driver,
                &["--follow-file", ids.to_str().unwrap()],
            ),
            driver,
        );
        assert!(
            running.wait_stderr("no longer following its 100 user(s)", SETTLE),
            "{driver}: {}",
            running.stderr_text()
        );
        assert!(
            running.wait_stdout_lines(20, SETTLE),
            "{driver}: the other stream goes on: {}",
            running.stderr_text()
        );
        let done = running.signal_and_wait(Signal::SIGTERM, STOP_BOUND);
        assert_eq!(done.code(), 0, "{driver}: {}", done.stderr);
        let line = done
            .stderr
            .lines()
            .find(|l| l.contains("giving up"))
            .expect("a giving-up line");
        assert!(
            line.contains("stream ") && line.contains("HTTP 401 Unauthorized"),
            "{driver}: {line}"
        );
        let refused_follow: Vec<String> = follows_by_attempt(&server)[1]
            .iter()
            .map(u64::to_string)
            .collect();
        assert!(
            line.ends_with(&refused_follow.join(",")),
            "{driver}: {line}"
        );
        let _ = std::fs::remove_file(ids);
    }
}

/// README "Exit status" 1 with many users: when every stream has given up.
#[test]
fn the_run_gives_up_when_every_stream_has() {
    for driver in DRIVERS {
        let server = server(vec![AttemptPlan::status(401, "Unauthorized")]);
        let ids = id_file(&format!("all-refused-{driver}"), 1..=2500);
        let done = run(
            listen_args(
                &server.url(),
                driver,
                &["--follow-file", ids.to_str().unwrap()],
            ),
            driver,
        );
        assert_eq!(done.code(), 1, "{driver}: {}", done.stderr);
        assert_eq!(
            done.stderr
                .matches("no longer following its 100 user(s)")
                .count(),
            3,
            "{driver}: {}",
            done.stderr
        );
        assert!(
            done.stderr.contains("every stream has given up"),
            "{driver}: {}",
            done.stderr
        );
        let _ = std::fs::remove_file(ids);
    }
}
