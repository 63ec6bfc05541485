//! The simulator's speed: virtual hours per wall-clock second.
//!
//! ```text
//! bench-sim [--hours H]
//! ```
//!
//! Runs `sitebucket-sim` on the test server's `flaky` scenario (a 503, a drop, a 420, a
//! stall, a disconnect, a connect that never answers, then a steady stream of ten messages a
//! second) over its flaky network (split writes, latency, resets, truncations), every
//! invariant checked as it goes, for `H` virtual hours; prints one figure line against real
//! time (one virtual hour per 3,600 wall seconds).

use std::time::{Duration, Instant};

use sitebucket_bench::args::Args;
use sitebucket_bench::figure::{Figure, Op, Target};
use sitebucket_sim::{config_builder, NetworkFaults, Recording, Sim};
use sitebucket_testserver::Scenario;

fn main() {
    let args = Args::from_env();
    let hours: f64 = args.get("--hours", 1.0);
    let config = config_builder(sitebucket_testserver::corpus::USER_IDS)
        .build()
        .unwrap_or_else(|e| {
            eprintln!("bench-sim: {e}");
            std::process::exit(1)
        });
    let mut sim = Sim::new(config, Scenario::flaky(2), NetworkFaults::flaky(), 2)
        .with_recording(Recording::Lifecycle);
    let began = Instant::now();
    sim.run_for(Duration::from_secs_f64(hours * 3600.0));
    let wall = began.elapsed().as_secs_f64().max(1e-9);
    let trace = sim.into_trace();
    if !trace.violations.is_empty() {
        eprintln!(
            "bench-sim: the simulation broke invariants: {:?}",
            trace.violations
        );
        std::process::exit(1);
    }
    println!(
        "# simulator: {hours} virtual hours of `flaky` in {wall:.2} s: {} connects, {} messages, {} keep-alives",
        trace.connects(),
        trace.messages,
        trace.keep_alives
    );
    println!(
        "{}",
        Figure::new(
            "simulator_speed",
            hours / wall,
            "virtual_h/s",
            "real_time",
            1.0 / 3600.0,
            Target::Ratio(Op::AtLeast, 1.0),
        )
    );
}
