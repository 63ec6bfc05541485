//! The monitor over a fake driver (no sockets).

use std::io;

use bytes::Bytes;

use super::*;

use sitebucket_proto::control::{ControlCall, ControlKind, ControlResponse};
use sitebucket_proto::Credentials;
use sitebucket_proto::{Action, Outcome};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Logs `start <first>-<last user>` when a run is spawned and `stop <first>-<last>` when
/// it ends on a stop (before `join` returns); its first `refuse` runs fail (the core is
/// told each connect was refused, until it gives up: the test template allows one
/// attempt), skipping backoff waits in virtual time and recording in `refused_connects`
/// the virtual instant of each connect.
///
/// With `announce`, each run gets a `200` and a control message with the stream id
/// `s<first user>x<run number>` (runs numbered from 0 in spawn order); control calls
/// are logged as `<kind> <stream id> <first>-<last user>` and succeed, except the one
/// `fail_in` counts down to (logged with a `failed ` prefix, answered with a 503).
/// Control calls first pass its [`Gate`].
///
/// A run whose first user has an entry in `answers` takes it (once) as its server's
/// answer: after the connect, the stream is fed that text (a head and body), and the run
/// ends if the stream finishes.
#[derive(Clone, Default)]
struct FakeDriver {
    log: Arc<Mutex<Vec<String>>>,
    refuse: Arc<AtomicUsize>,
    answers: Arc<Mutex<std::collections::BTreeMap<u64, String>>>,
    announce: bool,
    runs: Arc<AtomicUsize>,
    fail_in: Arc<Mutex<Option<usize>>>,
    gate: Arc<Gate>,
    /// When each refused run connected, in virtual time (see `serve`).
    refused_connects: Arc<Mutex<Vec<Instant>>>,
}

/// Holds control calls: open by default; once closed, each call waits for a permit
/// (or, so a broken test still ends, for 10 s).
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    /// `None`: open. `Some(n)`: `n` more calls may pass.
    permits: Option<usize>,
    /// Calls waiting now.
    waiting: usize,
}

impl Gate {
    fn close(&self) {
        lock(&self.state).permits = Some(0);
    }

    fn open(&self) {
        lock(&self.state).permits = None;
        self.changed.notify_all();
    }

    /// Lets one more waiting (or later) call through.
    fn admit_one(&self) {
        if let Some(n) = &mut lock(&self.state).permits {
            *n += 1;
        }
        self.changed.notify_all();
    }

    fn waiting(&self) -> usize {
        lock(&self.state).waiting
    }

    fn pass(&self) {
        let mut state = lock(&self.state);
        state.waiting += 1;
        let (mut state, _) = self
            .changed
            .wait_timeout_while(state, Duration::from_secs(10), |s| s.permits == Some(0))
            .unwrap_or_else(|p| p.into_inner());
        state.waiting -= 1;
        if let Some(n) = &mut state.permits {
            *n = n.saturating_sub(1);
        }
    }
}

impl FakeDriver {
    fn announcing() -> Self {
        FakeDriver {
            announce: true,
            ..FakeDriver::default()
        }
    }

    fn log(&self) -> Vec<String> {
        lock(&self.log).clone()
    }

    /// The control calls logged so far.
    fn calls(&self) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|e| !e.starts_with("start ") && !e.starts_with("stop "))
            .collect()
    }

    /// Makes the `n`th control call from now (1-based) fail.
    fn fail_call(&self, n: usize) {
        *lock(&self.fail_in) = Some(n);
    }
}

/// Feeds `stream` a connect, a `200` and a control message announcing `id`.
fn announce(stream: &mut SiteStream, id: &str) {
    let now = Instant::now();
    let settle = |stream: &mut SiteStream| loop {
        if matches!(
            stream.poll_action(now),
            Action::Wait(_) | Action::Finished(_)
        ) {
            break;
        }
    };
    settle(stream);
    stream.handle_connected(now, 1);
    settle(stream);
    let message = format!("{{\"control\":{{\"control_uri\":\"/1.1/site/c/{id}\"}}}}\r\n");
    let input = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{message}\r\n",
        message.len()
    );
    stream.handle_input(now, input.as_bytes());
    settle(stream);
}

impl Driver for FakeDriver {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn spawn(
        &self,
        mut stream: SiteStream,
        parser: Box<dyn Parser>,
        control: Arc<RunState>,
    ) -> io::Result<crate::RunHandle> {
        // Logged here, not in the run's thread, so the log follows the monitor's order.
        lock(&self.log).push(format!("start {}", span(&stream)));
        let run = self.runs.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = std::sync::mpsc::channel();
        let driver = self.clone();
        let thread = std::thread::spawn(move || {
            let outcome = driver.serve(run, &mut stream, &control);
            control.publish(&stream);
            let _ = tx.send(crate::Finished {
                stream,
                parser,
                outcome,
            });
        });
        Ok(crate::RunHandle::new(rx, Some(thread)))
    }

    fn run(
        &self,
        stream: &mut SiteStream,
        _parser: &mut dyn Parser,
        control: &Arc<RunState>,
    ) -> Outcome {
        let run = self.runs.fetch_add(1, Ordering::SeqCst);
        self.serve(run, stream, control)
    }

    fn control(&self, call: ControlCall) -> Result<ControlResponse, ControlError> {
        self.gate.pass();
        let request = call.request();
        let kind = match request.kind() {
            ControlKind::AddUsers => "add",
            ControlKind::RemoveUsers => "remove",
            ControlKind::Info => "info",
            ControlKind::FriendsIds => "friends",
            ControlKind::RulesList | ControlKind::RulesAdd | ControlKind::RulesDelete => "rules",
        };
        let id = call.stream_id().unwrap_or("-");
        let mut entry = format!("{kind} {id}");
        if let (Some(first), Some(last)) = (request.users().first(), request.users().last()) {
            entry.push_str(&format!(" {first}-{last}"));
        }
        let fail = {
            let mut fail_in = lock(&self.fail_in);
            let due = *fail_in == Some(1);
            *fail_in = fail_in.and_then(|n| n.checked_sub(1)).filter(|n| *n > 0);
            due
        };
        if fail {
            lock(&self.log).push(format!("failed {entry}"));
            return Err(ControlError::Http {
                status: 503,
                reason: "Service Unavailable".into(),
                detail: String::new(),
            });
        }
        lock(&self.log).push(entry);
        Ok(match request.kind() {
            ControlKind::Info => ControlResponse::Info(Default::default()),
            ControlKind::FriendsIds => ControlResponse::Friends(Default::default()),
            _ => ControlResponse::Done,
        })
    }
}

impl FakeDriver {
    fn serve(&self, run: usize, stream: &mut SiteStream, control: &Arc<RunState>) -> Outcome {
        let refuse = self
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refuse {
            // Virtual time from the run's start: each wait is skipped, not slept, and
            // each connect is recorded at the instant the stream asked for it.
            let mut now = Instant::now();
            loop {
                match stream.poll_action(now) {
                    Action::Connect { .. } => {
                        lock(&self.refused_connects).push(now);
                        stream.handle_connect_failed(now, io::ErrorKind::ConnectionRefused);
                    }
                    Action::Wait(deadline) => now = deadline,
                    Action::Finished(outcome) => {
                        control.publish(stream);
                        return outcome;
                    }
                    _ => {}
                }
            }
        }
        let answer = lock(&self.answers).remove(&stream.config().follow()[0]);
        if let Some(answer) = answer {
            let now = Instant::now();
            let settle = |stream: &mut SiteStream| loop {
                if let Action::Wait(_) | Action::Finished(_) = stream.poll_action(now) {
                    break;
                }
            };
            settle(stream);
            stream.handle_connected(now, 1);
            settle(stream);
            stream.handle_input(now, answer.as_bytes());
            settle(stream);
            control.publish(stream);
            if let Some(outcome) = stream.outcome() {
                return outcome.clone();
            }
        }
        if self.announce {
            let id = format!("s{}x{run}", stream.config().follow()[0]);
            announce(stream, &id);
            control.publish(stream);
        }
        let woken = Arc::new((Mutex::new(()), Condvar::new()));
        let hook = woken.clone();
        control.set_waker(Arc::new(move || {
            let _guard = lock(&hook.0);
            hook.1.notify_all();
        }));
        let mut guard = lock(&woken.0);
        while !control.stop_requested() {
            guard = woken.1.wait(guard).unwrap_or_else(|p| p.into_inner());
        }
        drop(guard);
        control.clear_waker();
        stream.disconnect();
        lock(&self.log).push(format!("stop {}", span(stream)));
        Outcome::Stopped
    }
}

fn span(stream: &SiteStream) -> String {
    let follow = stream.config().follow();
    format!("{}-{}", follow[0], follow[follow.len() - 1])
}

fn fake_monitor(driver: &FakeDriver, users: impl IntoIterator<Item = u64>) -> Monitor<FakeDriver> {
    fake_monitor_with_limit(driver, users, 1)
}

/// [`fake_monitor`] whose streams give up after `retry_limit` failed attempts.
fn fake_monitor_with_limit(
    driver: &FakeDriver,
    users: impl IntoIterator<Item = u64>,
    retry_limit: u32,
) -> Monitor<FakeDriver> {
    let credentials = Credentials::new("key", "secret", "token", "token secret");
    let template = Config::builder([1], credentials)
        .url("http://127.0.0.1:1/1.1/site.json")
        .retry_limit(Some(retry_limit))
        .build()
        .expect("valid config");
    let users: Vec<u64> = users.into_iter().collect();
    Monitor::spawn(driver.clone(), template, &users, || {
        Box::new(|_message: Bytes| {})
    })
    .expect("spawn")
}

fn lists(monitor: &Monitor<FakeDriver>) -> Vec<Vec<u64>> {
    monitor.streams().into_iter().map(|s| s.follow).collect()
}

#[test]
fn monitor_starts_replacements_before_closing_the_streams_they_replace() {
    let driver = FakeDriver::default();
    let monitor = fake_monitor(&driver, 1..=150);
    assert_eq!(
        lists(&monitor),
        vec![(1..=100).collect::<Vec<u64>>(), (101..=150).collect()]
    );

    // Remove users from both streams, then merge the two half streams.
    assert_eq!(
        monitor
            .remove_follows(&(1..=70).chain(121..=150).collect::<Vec<u64>>())
            .expect("remove"),
        0
    );
    assert_eq!(
        lists(&monitor),
        vec![(71..=100).collect::<Vec<u64>>(), (101..=120).collect()]
    );
    assert_eq!(monitor.consolidate().expect("consolidate"), 2);
    assert_eq!(lists(&monitor), vec![(71..=120).collect::<Vec<u64>>()]);
    assert_eq!(monitor.follows(), (71..=120).collect::<Vec<u64>>());

    // Growing the merged stream replaces it too.
    monitor.add_follows(&[500, 71]).expect("add");
    let mut grown: Vec<u64> = (71..=120).collect();
    grown.push(500);
    assert_eq!(lists(&monitor), vec![grown]);

    monitor.disconnect();
    assert!(monitor.streams().is_empty());
    let mut log = driver.log();
    // The merge closes its two streams together: their stops may come in either order.
    log[7..9].sort();
    assert_eq!(
        log,
        [
            "start 1-100",
            "start 101-150",
            // remove: each shrunk stream starts before the one it replaces stops
            "start 71-100",
            "stop 1-100",
            "start 101-120",
            "stop 101-150",
            // consolidate: the merged stream starts before both halves stop
            "start 71-120",
            "stop 101-120",
            "stop 71-100",
            // add: the grown stream, then the one it replaces stops
            "start 71-500",
            "stop 71-120",
            // disconnect
            "stop 71-500",
        ]
    );
}

#[test]
fn check_restarts_failed_streams_and_the_background_check_stops_promptly() {
    let driver = FakeDriver {
        refuse: Arc::new(AtomicUsize::new(1)),
        ..FakeDriver::default()
    };
    let monitor = fake_monitor(&driver, 1..=150);
    let deadline = Instant::now() + Duration::from_secs(10);
    while monitor.streams().iter().all(|s| s.status.healthy) {
        assert!(Instant::now() < deadline, "the refused stream never failed");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(monitor.check().expect("check"), 1);
    assert!(monitor.streams().iter().all(|s| s.status.healthy));
    assert_eq!(monitor.check().expect("check"), 0);

    // Background checks: a second failure is repaired without a call to check().
    driver.refuse.store(1, Ordering::SeqCst);
    monitor
        .remove_follows(&[150])
        .expect("shrink, so a new run starts and fails");
    monitor.run_every(Duration::from_millis(5));
    let deadline = Instant::now() + Duration::from_secs(10);
    while driver.refuse.load(Ordering::SeqCst) > 0
        || !monitor
            .streams()
            .iter()
            .all(|s| s.status.healthy && s.status.running)
    {
        assert!(
            Instant::now() < deadline,
            "the background check never repaired it"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    monitor.run_every(Duration::from_secs(3600));
    let started = Instant::now();
    monitor.stop_checking();
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "stop_checking waited"
    );
    monitor.disconnect();
}

#[test]
fn check_restarts_a_stream_that_gave_up_with_the_backoff_it_had_earned() {
    let ms = Duration::from_millis;
    // Two runs refused: the first, then the check's restart of it.
    let driver = FakeDriver {
        refuse: Arc::new(AtomicUsize::new(2)),
        ..FakeDriver::default()
    };
    let monitor = fake_monitor_with_limit(&driver, 1..=50, 3);
    let connects = || lock(&driver.refused_connects).clone();
    let gave_up = || {
        matches!(
            monitor.streams()[0].status.outcome,
            Some(Outcome::GaveUp { attempts: 3, .. })
        )
    };
    wait_until("the stream to give up", gave_up);
    // Three attempts, 250 ms then 500 ms apart (the linear network steps), then it gave
    // up: the next wait it had earned is 750 ms.
    let first = connects();
    assert_eq!(first.len(), 3);
    assert_eq!(
        [first[1] - first[0], first[2] - first[1]],
        [ms(250), ms(500)]
    );

    let checked_at = Instant::now();
    assert_eq!(monitor.check().expect("check"), 1);
    wait_until("the restarted stream to give up again", || {
        connects().len() == 6 && gave_up()
    });
    let again = &connects()[3..];
    // Not at once (a restart that reset the throttles would connect straight away): no
    // earlier than the earned 750 ms after the check, and the sequence goes on.
    assert!(
        again[0] >= checked_at + ms(750),
        "the first new attempt came {:?} after the check",
        again[0].saturating_duration_since(checked_at)
    );
    assert_eq!(
        [again[1] - again[0], again[2] - again[1]],
        [ms(1000), ms(1250)]
    );
    let status = &monitor.streams()[0].status;
    assert_eq!(status.stats.attempts, 6);
    assert_eq!(status.stats.reconnects, 5, "2 + the restart's + 2");
    assert_eq!(starts(&driver), ["start 1-50", "start 1-50"]);
    assert!(
        monitor.failed().is_empty(),
        "a stream that gave up is not set aside"
    );
    monitor.disconnect();
}

/// A `200` carrying one `disconnect` message with `code`.
fn disconnected_with(code: u32) -> String {
    let message = format!("{{\"disconnect\":{{\"code\":{code},\"reason\":\"gone\"}}}}\r\n");
    format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{message}\r\n",
        message.len()
    )
}

fn starts(driver: &FakeDriver) -> Vec<String> {
    driver
        .log()
        .into_iter()
        .filter(|e| e.starts_with("start "))
        .collect()
}

#[test]
fn a_change_never_restarts_a_stream_refused_for_good_by_replacing_it() {
    let driver = FakeDriver::default();
    lock(&driver.answers).insert(1, "HTTP/1.1 403 Forbidden\r\n\r\n".into());
    let monitor = fake_monitor(&driver, 1..=50);
    wait_until("the stream to be refused", || {
        monitor.streams()[0].status.outcome.is_some()
    });
    // Without a check in between: the refused stream has room, but is not grown.
    monitor.add_follows(&[51]).expect("add");
    assert_eq!(starts(&driver), ["start 1-50", "start 51-51"]);
    assert_eq!(monitor.failed()[0].follows, range(1..=50));
    assert_eq!(lists(&monitor), [vec![51]]);
    monitor.disconnect();
}

#[test]
fn removing_the_users_of_a_refused_stream_closes_it_without_a_report() {
    let driver = FakeDriver::default();
    for first in [1, 101, 201] {
        lock(&driver.answers).insert(first, "HTTP/1.1 401 Unauthorized\r\n\r\n".into());
    }
    let monitor = fake_monitor(&driver, 1..=250);
    let heard = Arc::new(Mutex::new(Vec::new()));
    {
        let heard = heard.clone();
        monitor.set_failed_hook(move |failed| lock(&heard).push(failed.follows.clone()));
    }
    wait_until("every stream to be refused", || {
        monitor.streams().iter().all(|s| s.status.outcome.is_some())
    });
    // All of the first stream's users leave: it is closed, as a removal, not reported.
    // Some of the second's leave: it is set aside with the others, not shrunk (which
    // would restart it). The third is not touched: the next check sets it aside.
    assert_eq!(monitor.remove_follows(&range(1..=120)).expect("remove"), 0);
    assert_eq!(*lock(&heard), [range(121..=200)]);
    assert_eq!(lists(&monitor), [range(201..=250)]);
    assert_eq!(monitor.check().expect("check"), 0);
    assert_eq!(*lock(&heard), [range(121..=200), range(201..=250)]);
    let failed: Vec<Vec<u64>> = monitor.failed().into_iter().map(|f| f.follows).collect();
    assert_eq!(failed, [range(121..=200), range(201..=250)]);
    assert!(monitor.streams().is_empty());
    assert_eq!(
        starts(&driver),
        ["start 1-100", "start 101-200", "start 201-250"]
    );
    monitor.disconnect();
}

#[test]
fn check_sets_aside_a_stream_refused_for_good_and_never_restarts_it() {
    let driver = FakeDriver::default();
    lock(&driver.answers).insert(1, "HTTP/1.1 401 Unauthorized\r\n\r\n".into());
    let monitor = fake_monitor(&driver, 1..=150);
    let heard = Arc::new(Mutex::new(Vec::new()));
    {
        let heard = heard.clone();
        monitor.set_failed_hook(move |failed| lock(&heard).push(failed.clone()));
    }
    wait_until("the first stream to be refused", || {
        monitor.streams()[0].status.outcome.is_some()
    });
    for _ in 0..5 {
        assert_eq!(monitor.check().expect("check"), 0, "nothing restarted");
    }
    let refused = FailedStream {
        follows: range(1..=100),
        outcome: Outcome::Fatal {
            status: 401,
            reason: "Unauthorized".into(),
        },
    };
    assert_eq!(monitor.failed(), std::slice::from_ref(&refused));
    assert_eq!(*lock(&heard), [refused], "told once");
    assert_eq!(lists(&monitor), [range(101..=150)], "the others go on");
    assert_eq!(monitor.follows(), range(101..=150));
    assert_eq!(
        starts(&driver),
        ["start 1-100", "start 101-150"],
        "one attempt"
    );

    // Removing the users takes them off the list; adding them back is a retry.
    assert_eq!(monitor.remove_follows(&range(1..=50)).expect("remove"), 0);
    assert_eq!(monitor.failed()[0].follows, range(51..=100));
    assert_eq!(starts(&driver).len(), 2, "a removal starts nothing");
    monitor.add_follows(&range(51..=60)).expect("add");
    assert_eq!(monitor.failed()[0].follows, range(61..=100));
    monitor.add_follows(&range(61..=100)).expect("add");
    assert!(monitor.failed().is_empty());
    assert_eq!(monitor.follows(), range(51..=150));
    // Refused for good again: a record, kept after a disconnect.
    lock(&driver.answers).insert(1, "HTTP/1.1 403 Forbidden\r\n\r\n".into());
    monitor.add_follows(&[1]).expect("add");
    wait_until("the stream of user 1 to be refused", || {
        monitor.streams().iter().any(|s| s.status.outcome.is_some())
    });
    assert_eq!(monitor.check().expect("check"), 0);
    monitor.disconnect();
    let failed = monitor.failed();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(matches!(
        failed[0].outcome,
        Outcome::Fatal { status: 403, .. }
    ));
}

#[test]
fn the_background_checker_sets_aside_revoked_streams_at_once_and_restarts_the_others() {
    let driver = FakeDriver {
        refuse: Arc::new(AtomicUsize::new(0)),
        ..FakeDriver::default()
    };
    lock(&driver.answers).extend([(1, disconnected_with(6)), (101, disconnected_with(7))]);
    let monitor = fake_monitor(&driver, 1..=250);
    let heard = Arc::new(Mutex::new(Vec::new()));
    {
        let heard = heard.clone();
        monitor.set_failed_hook(move |failed| lock(&heard).push(failed.outcome.clone()));
    }
    // Checks an hour apart: only the finish of a run can wake the checker this soon.
    monitor.run_every(Duration::from_secs(3600));
    wait_until("both revoked streams to be set aside", || {
        monitor.failed().len() == 2
    });
    let mut failed = monitor.failed();
    failed.sort_by_key(|f| f.follows[0]);
    assert_eq!(failed[0].follows, range(1..=100));
    assert_eq!(failed[1].follows, range(101..=200));
    assert!(matches!(
        failed[0].outcome,
        Outcome::Revoked { code: 6, .. }
    ));
    assert!(matches!(
        failed[1].outcome,
        Outcome::Revoked { code: 7, .. }
    ));
    assert_eq!(lock(&heard).len(), 2);
    assert_eq!(lists(&monitor), [range(201..=250)]);

    // A stream that gave up (not for good) is still restarted by a check.
    driver.refuse.store(1, Ordering::SeqCst);
    monitor
        .add_follows(&[251])
        .expect("grow, so a new run starts and fails");
    wait_until("the new run to give up", || {
        monitor.streams()[0].status.outcome.is_some()
    });
    assert!(matches!(
        monitor.streams()[0].status.outcome,
        Some(Outcome::GaveUp { .. })
    ));
    assert_eq!(monitor.check().expect("check"), 1);
    assert_eq!(
        monitor.failed().len(),
        2,
        "a stream that gave up is not set aside"
    );
    monitor.disconnect();
    assert_eq!(
        starts(&driver),
        [
            "start 1-100",
            "start 101-200",
            "start 201-250",
            "start 201-251",
            // The check's restart of the stream that gave up.
            "start 201-251",
        ],
        "one attempt each for the revoked streams"
    );
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn all_announced(monitor: &Monitor<FakeDriver>) -> bool {
    monitor
        .streams()
        .iter()
        .all(|s| s.status.stream_id.is_some())
}

fn range(r: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    r.collect()
}

#[test]
fn announced_streams_grow_through_control_and_take_in_the_streams_they_replace() {
    let driver = FakeDriver::announcing();
    let monitor = fake_monitor(&driver, 1..=150);
    wait_until("both streams to announce", || all_announced(&monitor));

    // 250 new users all go onto the first stream, through control, in requests of 100.
    monitor.add_follows(&range(151..=400)).expect("add");
    let mut first: Vec<u64> = range(1..=100);
    first.extend(151..=400);
    assert_eq!(lists(&monitor), vec![first, range(101..=150)]);

    // The second stream's 50 users move onto the first; then it closes.
    assert_eq!(monitor.consolidate().expect("consolidate"), 1);
    assert_eq!(lists(&monitor), vec![range(1..=400)]);
    assert_eq!(
        monitor.consolidate().expect("consolidate"),
        0,
        "nothing left to merge"
    );

    // Removals through control too.
    assert_eq!(monitor.remove_follows(&range(1..=300)).expect("remove"), 0);
    assert_eq!(lists(&monitor), vec![range(301..=400)]);

    // Past 1,000 users per stream, the rest open new streams of 100.
    monitor.add_follows(&range(401..=1500)).expect("add");
    assert_eq!(
        lists(&monitor),
        vec![range(301..=1300), range(1301..=1400), range(1401..=1500)]
    );
    assert_eq!(monitor.follows(), range(301..=1500));
    monitor.disconnect();
    let mut log = driver.log();
    let adds_to_first: Vec<String> = (0..9)
        .map(|k| format!("add s1x0 {}-{}", 401 + 100 * k, 500 + 100 * k))
        .collect();
    let mut expected: Vec<String> = [
        "start 1-100",
        "start 101-150",
        "add s1x0 151-250",
        "add s1x0 251-350",
        "add s1x0 351-400",
        // The move: added to its new stream, then the old one closes.
        "add s1x0 101-150",
        "stop 101-150",
        "remove s1x0 1-100",
        "remove s1x0 101-200",
        "remove s1x0 201-300",
    ]
    .map(String::from)
    .to_vec();
    expected.extend(adds_to_first);
    expected.extend(["start 1301-1400", "start 1401-1500"].map(String::from));
    // The three streams stop together at the end, in any order.
    let stops = log.split_off(expected.len());
    assert_eq!(log, expected);
    let mut stops = stops;
    stops.sort();
    assert_eq!(stops, ["stop 1-100", "stop 1301-1400", "stop 1401-1500"]);
}

#[test]
fn readers_never_wait_for_a_change_held_up_in_a_control_request() {
    let driver = FakeDriver::announcing();
    let monitor = fake_monitor(&driver, 1..=50);
    wait_until("the stream to announce", || all_announced(&monitor));
    let prompt = Duration::from_millis(200);
    // Reads both getters, each well under `prompt`, while a change is held.
    let read = || {
        let started = Instant::now();
        let streams = monitor.streams();
        let follows = monitor.follows();
        let debug = format!("{monitor:?}");
        let took = started.elapsed();
        assert!(took < prompt, "the readers waited {took:?} for the change");
        assert!(debug.contains("s1x0"), "{debug}");
        (streams, follows)
    };

    driver.gate.close();
    std::thread::scope(|scope| {
        // Two requests: 51-150, then 151-250.
        let adding = scope.spawn(|| monitor.add_follows(&range(51..=250)));
        wait_until("the first request to be held", || {
            driver.gate.waiting() == 1
        });
        let (streams, follows) = read();
        assert_eq!(streams.len(), 1);
        assert_eq!(
            streams[0].follow,
            range(1..=50),
            "the state before the call"
        );
        assert_eq!(streams[0].status.stream_id.as_deref(), Some("s1x0"));
        assert!(streams[0].status.running, "the status is live");
        assert_eq!(follows, range(1..=50));

        // The first request completes; the second is held: the view has the first.
        driver.gate.admit_one();
        wait_until("the second request to be held", || {
            driver.gate.waiting() == 1 && driver.calls().len() == 1
        });
        let (streams, follows) = read();
        assert_eq!(
            streams[0].follow,
            range(1..=150),
            "one request behind at most"
        );
        assert_eq!(follows, range(1..=150));

        driver.gate.open();
        adding.join().expect("no panic").expect("add");
    });
    assert_eq!(lists(&monitor), vec![range(1..=250)]);
    assert_eq!(monitor.follows(), range(1..=250));
    assert_eq!(driver.calls(), ["add s1x0 51-150", "add s1x0 151-250"]);

    // Streams started and closed by a change are published too.
    driver.gate.close();
    std::thread::scope(|scope| {
        // Over 1,000 on the announced stream: 750 through control, then a new stream.
        let adding = scope.spawn(|| monitor.add_follows(&range(251..=1100)));
        wait_until("the first request to be held", || {
            driver.gate.waiting() == 1
        });
        let (streams, _) = read();
        assert_eq!(streams.len(), 1);
        driver.gate.open();
        adding.join().expect("no panic").expect("add");
    });
    assert_eq!(lists(&monitor), vec![range(1..=1000), range(1001..=1100)]);
    driver.gate.close();
    std::thread::scope(|scope| {
        let removing = scope.spawn(|| monitor.remove_follows(&range(1..=999)));
        wait_until("the removal to be held", || driver.gate.waiting() == 1);
        let (streams, follows) = read();
        assert_eq!(streams[0].follow, range(1..=1000), "nothing removed yet");
        assert_eq!(follows, range(1..=1100));
        driver.gate.open();
        assert_eq!(removing.join().expect("no panic").expect("remove"), 0);
    });
    assert_eq!(lists(&monitor), vec![vec![1000], range(1001..=1100)]);
    // The move of user 1000 is held: both streams are still shown until it is done.
    driver.gate.close();
    std::thread::scope(|scope| {
        let merging = scope.spawn(|| monitor.consolidate());
        wait_until("the move to be held", || driver.gate.waiting() == 1);
        let (streams, follows) = read();
        assert_eq!(streams.len(), 2);
        assert_eq!(follows, range(1000..=1100));
        driver.gate.open();
        assert_eq!(merging.join().expect("no panic").expect("consolidate"), 1);
    });
    assert_eq!(lists(&monitor), vec![range(1000..=1100)]);
    assert_eq!(monitor.follows(), range(1000..=1100));
    monitor.disconnect();
    assert!(monitor.streams().is_empty());
    assert!(monitor.follows().is_empty());
}

#[test]
fn a_failed_control_request_falls_back_to_replacement() {
    let driver = FakeDriver::announcing();
    let monitor = fake_monitor(&driver, 1..=50);
    wait_until("the stream to announce", || all_announced(&monitor));
    driver.fail_call(1);
    monitor.add_follows(&range(51..=60)).expect("add");
    assert_eq!(lists(&monitor), vec![range(1..=60)]);
    wait_until("the replacement to announce", || {
        monitor.streams()[0].status.stream_id.as_deref() == Some("s1x1")
    });
    // Removing through control fails too: the shorter list fits a follow list.
    driver.fail_call(1);
    assert_eq!(monitor.remove_follows(&[60]).expect("remove"), 0);
    assert_eq!(lists(&monitor), vec![range(1..=59)]);
    monitor.disconnect();
    assert_eq!(
        driver.log(),
        [
            "start 1-50",
            "failed add s1x0 51-60",
            "start 1-60",
            "stop 1-50",
            "failed remove s1x1 60-60",
            "start 1-59",
            "stop 1-60",
            "stop 1-59",
        ]
    );
}

#[test]
fn a_move_that_fails_part_way_is_undone() {
    let driver = FakeDriver::announcing();
    let monitor = fake_monitor(&driver, 1..=205);
    wait_until("the streams to announce", || all_announced(&monitor));
    // Streams of 997, 997 and 5 users.
    monitor.add_follows(&range(1001..=1897)).expect("add");
    monitor.add_follows(&range(2001..=2897)).expect("add");
    monitor.add_follows(&range(3001..=3003)).expect("add");
    assert_eq!(monitor.remove_follows(&range(1..=3)).expect("remove"), 0);
    let sizes: Vec<usize> = lists(&monitor).iter().map(Vec::len).collect();
    assert_eq!(sizes, [997, 997, 5]);
    let before = lists(&monitor);
    let calls_before = driver.calls().len();

    // The five users would go 3 + 2; the second add fails.
    driver.fail_call(2);
    let error = monitor.consolidate().expect_err("the move fails");
    assert!(
        error.to_string().contains("HTTP 503"),
        "the error says what failed: {error}"
    );
    assert_eq!(lists(&monitor), before, "every user where it was");
    assert_eq!(
        driver.calls()[calls_before..],
        [
            "add s1x0 201-203",
            "failed add s101x1 204-205",
            "remove s1x0 201-203",
        ]
    );
    // Once the server works again, the move goes through.
    assert_eq!(monitor.consolidate().expect("consolidate"), 1);
    assert_eq!(lists(&monitor).len(), 2);
    assert_eq!(monitor.follows().len(), 997 + 997 + 5);
    monitor.disconnect();
}

#[test]
fn check_reapplies_control_changes_after_a_restart() {
    let driver = FakeDriver::announcing();
    let monitor = fake_monitor(&driver, 1..=10);
    wait_until("the stream to announce", || all_announced(&monitor));
    monitor.add_follows(&[11, 12]).expect("add");
    assert_eq!(monitor.remove_follows(&[1]).expect("remove"), 0);
    assert_eq!(monitor.check().expect("check"), 0);
    {
        // A new run of the same stream (as after a reconnect) announces a new id.
        let mut inner = lock(&monitor.inner);
        inner.shards[0].restart().expect("restart");
        inner.publish();
    }
    wait_until("the new run to announce", || {
        monitor.streams()[0].status.stream_id.as_deref() == Some("s1x1")
    });
    assert_eq!(monitor.check().expect("check"), 0);
    assert_eq!(monitor.check().expect("check"), 0);
    monitor.disconnect();
    assert_eq!(
        driver.calls(),
        [
            "add s1x0 11-12",
            "remove s1x0 1-1",
            // The restarted run follows 1..=10 again: 11 and 12 back on, 1 off.
            "add s1x1 11-12",
            "remove s1x1 1-1",
        ]
    );
}

/// Each stream gets the observer made for its number, kept across a restart; a stream
/// started later gets the next number.
#[test]
fn every_stream_gets_an_observer_made_for_its_number() {
    /// Each drain seen: the observer's number and the stream's `follow` list.
    type Drains = Arc<Mutex<Vec<(u64, Vec<u64>)>>>;
    struct Numbered(u64, Drains);
    impl Observer for Numbered {
        fn drained(&self, stream: &SiteStream) {
            lock(&self.1).push((self.0, stream.config().follow().to_vec()));
        }
    }
    let driver = FakeDriver::announcing();
    let template = Config::builder([1], Credentials::new("k", "s", "t", "ts"))
        .url("http://127.0.0.1:1/1.1/site.json")
        .build()
        .expect("valid config");
    let monitor = Monitor::new(driver, template, || Box::new(|_: Bytes| {}));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let made = Arc::new(Mutex::new(Vec::new()));
    {
        let (seen, made) = (seen.clone(), made.clone());
        monitor.set_observers(move |number| {
            lock(&made).push(number);
            Arc::new(Numbered(number, seen.clone()))
        });
    }
    let users: Vec<u64> = (1..=150).collect();
    monitor.add_follows(&users).expect("add");
    wait_until("both streams to drain", || {
        let seen = lock(&seen);
        [1, 2].iter().all(|n| seen.iter().any(|(m, _)| m == n))
    });
    for (number, follow) in lock(&seen).iter() {
        let first = if *number == 1 { 1 } else { 101 };
        assert_eq!(follow.first(), Some(&first), "stream {number}");
    }
    {
        let mut inner = lock(&monitor.inner);
        inner.shards[0].restart().expect("restart");
        inner.publish();
    }
    assert_eq!(*lock(&made), [1, 2], "a restart keeps the observer");
    wait_until("the streams to announce", || all_announced(&monitor));
    monitor.add_follows(&[1000]).expect("add");
    assert_eq!(*lock(&made), [1, 2], "added through control, no new stream");
    monitor.disconnect();
}

#[test]
fn the_background_checker_reapplies_changes_as_soon_as_a_stream_reannounces() {
    let driver = FakeDriver::announcing();
    let monitor = fake_monitor(&driver, 1..=10);
    wait_until("the stream to announce", || all_announced(&monitor));
    monitor.add_follows(&[11]).expect("add");
    monitor.run_every(Duration::from_secs(3600));
    {
        let mut inner = lock(&monitor.inner);
        inner.shards[0].restart().expect("restart");
        inner.publish();
    }
    wait_until("the change on the new run", || {
        driver.calls().iter().any(|c| c == "add s1x1 11-11")
    });
    monitor.disconnect();
}

#[test]
fn a_handle_tracks_what_it_follows_through_control() {
    let driver = FakeDriver::announcing();
    let config = Config::builder([1, 2], Credentials::new("k", "s", "t", "ts"))
        .url("http://127.0.0.1:1/1.1/site.json")
        .build()
        .expect("valid config");
    let mut handle = ListenThread::new(driver.clone(), SiteStream::new(config), |_: Bytes| {});
    assert_eq!(handle.add_users(&[3]), Err(ControlError::NotAnnounced));
    assert_eq!(handle.info(), Err(ControlError::NotAnnounced));
    handle.start().expect("start");
    wait_until("the announcement", || handle.stream_id().is_some());
    assert_eq!(handle.stream_id().as_deref(), Some("s1x0"));

    let too_many: Vec<u64> = (2..=1001).collect();
    assert_eq!(
        handle.add_users(&too_many),
        Err(ControlError::OverStreamLimit { would_follow: 1001 }),
        "1 and 2 plus 999 new users"
    );
    assert!(driver.calls().is_empty(), "nothing sent over the limit");
    handle.add_users(&[2, 3, 3, 4]).expect("add");
    handle.remove_users(&[1, 99]).expect("remove");
    assert_eq!(handle.follows(), [2, 3, 4]);
    handle.info().expect("info");
    handle.friends_ids(2, -1).expect("friends");
    assert_eq!(
        handle.sync_follows(),
        Ok(false),
        "this connection has every change"
    );

    handle.restart().expect("restart");
    wait_until("the new announcement", || {
        handle.stream_id().as_deref() == Some("s1x1")
    });
    assert_eq!(handle.sync_follows(), Ok(true));
    assert_eq!(handle.sync_follows(), Ok(false));
    assert_eq!(handle.follows(), [2, 3, 4]);
    // Adding back a removed user of the follow list undoes the removal.
    handle.add_users(&[1]).expect("add");
    assert_eq!(handle.follows(), [1, 2, 3, 4]);
    handle.close();
    handle.join();
    assert_eq!(handle.add_users(&[5]), Err(ControlError::NotAnnounced));
    assert_eq!(
        driver.calls(),
        [
            "add s1x0 3-4",
            "remove s1x0 1-1",
            "info s1x0",
            "friends s1x0 2-2",
            "add s1x1 3-4",
            "remove s1x1 1-1",
            "add s1x1 1-1",
        ]
    );
}

#[test]
fn a_driver_without_control_support_says_so() {
    #[derive(Clone)]
    struct Bare;
    impl Driver for Bare {
        fn name(&self) -> &'static str {
            "bare"
        }
        fn run(&self, _: &mut SiteStream, _: &mut dyn Parser, _: &Arc<RunState>) -> Outcome {
            Outcome::Stopped
        }
    }
    let config = Config::builder([1], Credentials::new("k", "s", "t", "ts"))
        .build()
        .expect("valid config");
    let call =
        ControlCall::for_stream(&config, Some("x"), sitebucket_proto::ControlRequest::info());
    let error = Bare.control(call).expect_err("unsupported");
    assert_eq!(error, ControlError::Unsupported { driver: "bare" });
    assert_eq!(
        error.to_string(),
        "the bare driver does not carry out control requests"
    );
}
