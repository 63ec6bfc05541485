//! The seed sweep: hundreds of random configs, scenarios and fault schedules, each checked
//! against every invariant the simulator knows (see the crate docs), plus a long run of the
//! built-in `flaky` scenario over a flaky network.
//!
//! - `SITEBUCKET_SIM_SEEDS` (default 256) seeds from `SITEBUCKET_SIM_START` (default 0);
//! - `SITEBUCKET_SIM_HOURS` (default 0.25; 0 skips it) virtual hours of `flaky`.
//!
//! `cargo xtask sim --seeds N [--start S] [--hours H]` runs this file in release mode. A
//! failure prints each failing seed and the command that replays it exactly.

use std::env;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sitebucket_sim::random::{replay_command, Case, SEEDS_VAR, START_VAR};
use sitebucket_sim::{config_builder, NetworkFaults, Recording, Sim};
use sitebucket_testserver::Scenario;

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    match env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
        Err(_) => default,
    }
}

fn per_second(simulated: Duration, wall: Duration) -> f64 {
    simulated.as_secs_f64() / 3600.0 / wall.as_secs_f64().max(1e-9)
}

#[test]
fn seed_sweep() {
    let seeds: u64 = env_number(SEEDS_VAR, 256);
    let start: u64 = env_number(START_VAR, 0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let next = AtomicU64::new(start);
    let failures = Mutex::new(Vec::new());
    let simulated_ms = AtomicU64::new(0);
    let stats = Mutex::new([0u64; 4]); // connects, messages, finished, disconnect() calls
    let began = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= start + seeds {
                    return;
                }
                let result = catch_unwind(AssertUnwindSafe(|| {
                    let case = Case::generate(seed);
                    (case.run(), case.disconnect_at.is_some(), case.summary())
                }));
                match result {
                    Ok((run, disconnects, summary)) => {
                        simulated_ms.fetch_add(run.simulated.as_millis() as u64, Ordering::Relaxed);
                        let mut s = stats.lock().unwrap();
                        s[0] += run.trace.connects() as u64;
                        s[1] += run.trace.messages;
                        s[2] += u64::from(run.trace.outcome.is_some());
                        s[3] += u64::from(disconnects);
                        drop(s);
                        if !run.trace.violations.is_empty() {
                            failures.lock().unwrap().push((
                                seed,
                                format!(
                                    "{summary}\n    {}\n  replay: {}",
                                    run.trace.violations.join("\n    "),
                                    replay_command(seed)
                                ),
                            ));
                        }
                    }
                    Err(panic) => {
                        let why = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        failures.lock().unwrap().push((
                            seed,
                            format!(
                                "seed {seed}: panicked: {why}\n  replay: {}",
                                replay_command(seed)
                            ),
                        ));
                    }
                }
            });
        }
    });
    let wall = began.elapsed();
    let simulated = Duration::from_millis(simulated_ms.into_inner());
    let [connects, messages, finished, disconnects] = stats.into_inner().unwrap();
    println!(
        "sweep: seeds {start}..{}: {:.1} virtual hours in {wall:.2?} = {:.0} virtual hours per \
         wall-clock second ({connects} connects, {messages} messages, {finished} finished, \
         {disconnects} with disconnect())",
        start + seeds,
        simulated.as_secs_f64() / 3600.0,
        per_second(simulated, wall)
    );
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {seeds} seeds failed:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|(_, f)| f.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    if seeds >= 50 {
        // The sweep must exercise what it claims to: reconnects, messages and every ending.
        assert!(connects > seeds * 3, "only {connects} connects");
        assert!(messages > seeds * 10, "only {messages} messages");
        assert!(finished > 0 && disconnects > 0);
    }
}

#[test]
fn flaky_scenario_over_a_flaky_network() {
    let hours: f64 = env_number("SITEBUCKET_SIM_HOURS", 0.25);
    if hours == 0.0 {
        println!("flaky: skipped (SITEBUCKET_SIM_HOURS=0)");
        return;
    }
    let duration = Duration::from_secs_f64(hours * 3600.0);
    let config = config_builder(sitebucket_testserver::corpus::USER_IDS)
        .build()
        .unwrap();
    let mut sim = Sim::new(config, Scenario::flaky(2), NetworkFaults::flaky(), 2)
        .with_recording(Recording::Lifecycle);
    let began = Instant::now();
    sim.run_for(duration);
    let wall = began.elapsed();
    let trace = sim.into_trace();
    println!(
        "flaky: {hours} virtual hours in {wall:.2?} = {:.1} virtual hours per wall-clock second \
         ({} connects, {} messages, {} keep-alives)",
        per_second(duration, wall),
        trace.connects(),
        trace.messages,
        trace.keep_alives
    );
    trace.assert_clean();
    assert!(
        trace.outcome.is_none(),
        "it never gives up: {:?}",
        trace.outcome
    );
    // The six troubled attempts of `flaky`, then good streams at ten messages a second,
    // interrupted only by the network's faults.
    assert!(trace.connects() >= 7, "{}", trace.connects());
    let streamed_secs = duration.as_secs().saturating_sub(300);
    assert!(
        trace.messages >= streamed_secs * 5,
        "{} messages in {hours} h",
        trace.messages
    );
}

#[test]
fn a_seed_replays_bit_for_bit() {
    for seed in [3, 11, 42] {
        let case = Case::generate(seed);
        let (a, b) = (case.run().trace, Case::generate(seed).run().trace);
        assert!(!a.actions.is_empty());
        assert_eq!(a.actions, b.actions, "seed {seed}");
        assert_eq!(a.connections, b.connections, "seed {seed}");
        // Attempt records carry `Instant`s from each run's own base; compare offsets.
        let offsets = |t: &sitebucket_sim::Trace| -> Vec<_> {
            let base = t.attempts.first().map(|r| r.at);
            t.attempts
                .iter()
                .map(|r| {
                    let since = |i: std::time::Instant| base.map(|b| i - b);
                    (
                        since(r.at),
                        r.request_at.and_then(since),
                        r.oauth_params.clone(),
                    )
                })
                .collect()
        };
        assert_eq!(offsets(&a), offsets(&b), "seed {seed}");
        assert!(a
            .attempts
            .iter()
            .map(|r| r.status)
            .eq(b.attempts.iter().map(|r| r.status)));
        assert_eq!(a.violations, b.violations, "seed {seed}");
    }
    // Another seed is another run.
    assert_ne!(
        Case::generate(3).run().trace.actions,
        Case::generate(4).run().trace.actions
    );
}
