//! Host-name resolution off the loop (see `sitebucket_e2e::resolve`): on the shared loop
//! (`spawn`) by the suite, and on a private loop (`Driver::run`) below.
sitebucket_e2e::resolution_suite!(sitebucket_mio::MioDriver::with_resolver);

use std::sync::Arc;
use std::time::{Duration, Instant};

use sitebucket_e2e::resolve::{TestResolver, FAST_NAME, SLOW_NAME};
use sitebucket_e2e::CLOSE_WITHIN;
use sitebucket_e2e::{config_for, numbered_messages, server, wait_for, Collected, Transport};
use sitebucket_mio::MioDriver;
use sitebucket_proto::Outcome;
use sitebucket_testserver::{AttemptPlan, End, Scenario, Step};
use sitebucket_thread::{Driver, RunState, SiteStream};

/// Runs `host`'s stream on a private loop (`Driver::run`) in a thread; returns its control
/// and the thread, which returns the outcome.
fn run_privately(
    names: &TestResolver,
    server: &sitebucket_testserver::TestServer,
    host: &str,
    parser: Collected,
) -> (Arc<RunState>, std::thread::JoinHandle<Outcome>) {
    let config = config_for(server, [12])
        .url(format!("http://{host}:{}/1.1/site.json", server.port()))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("valid config");
    let driver = MioDriver::with_resolver(names.resolver());
    let control = RunState::new();
    let theirs = control.clone();
    let run = std::thread::spawn(move || {
        let mut parser = parser;
        driver.run(&mut SiteStream::new(config), &mut parser, &theirs)
    });
    (control, run)
}

fn stop_promptly(control: &RunState, run: std::thread::JoinHandle<Outcome>, state: &str) {
    let started = Instant::now();
    control.request_stop();
    let outcome = run.join().expect("the run did not panic");
    let took = started.elapsed();
    assert!(took < CLOSE_WITHIN, "a stop while {state} took {took:?}");
    assert_eq!(outcome, Outcome::Stopped);
}

#[test]
fn a_private_loop_stops_promptly_while_resolving() {
    let server = server(
        Scenario::single(AttemptPlan::never_answers()),
        Transport::Plain,
    );
    let mut names = TestResolver::new();
    let (control, run) = run_privately(&names, &server, SLOW_NAME, Collected::new());
    wait_for("the lookup to start", || names.lookups_of(SLOW_NAME) == 1);
    std::thread::sleep(Duration::from_millis(50));
    stop_promptly(&control, run, "resolving on a private loop");
    names.release();
    wait_for("the abandoned lookup to end", || names.ended() == 1);
    std::thread::sleep(Duration::from_millis(100));
    assert!(server.attempts().is_empty(), "the dropped answer was used");
}

#[test]
fn a_private_loop_streams_from_a_resolved_name() {
    let sent = numbered_messages(0..20);
    let steps = sent.iter().cloned().map(Step::Message).collect();
    let plan = AttemptPlan::ok(steps).with_end(End::HoldWithKeepAlives(Duration::from_millis(20)));
    let server = server(Scenario::single(plan), Transport::Plain);
    let names = TestResolver::new();
    let collected = Collected::new();
    let (control, run) = run_privately(&names, &server, FAST_NAME, collected.clone());
    wait_for("every message", || collected.len() >= sent.len());
    let got: Vec<Vec<u8>> = collected.messages().iter().map(|m| m.to_vec()).collect();
    assert_eq!(got, sent);
    stop_promptly(&control, run, "streaming on a private loop");
    assert_eq!(names.lookups_of(FAST_NAME), 1);
    assert_eq!(server.attempts().len(), 1);
}
