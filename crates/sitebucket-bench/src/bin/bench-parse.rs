//! The typed parser against `serde_json`'s validation, in memory, for profiling and for
//! quick A/B timing on a noisy machine.
//!
//! ```text
//! bench-parse [typed|typed-serde|validate|ignored|value|ab|adapters] [--mib N] [--rounds R] [--threads T]
//! ```
//!
//! Builds the bench stream's first `N` MiB of messages (default 8, the same seed as
//! `cargo xtask bench`) and runs one parser over them `R` times (default 1): `typed`
//! (`DefaultParser` into the typed `Message`), `typed-serde` (the same `Message` through the
//! serde decoder it used before its own scanner, `Message::from_slice_serde`), `validate`
//! (that scanner's check alone, `RawJson::new`), `ignored` (`serde_json` into `IgnoredAny`) or
//! `value` (`serde_json::Value`). One parser per process is what a profiler wants:
//!
//! ```text
//! valgrind --tool=callgrind target/profiling/bench-parse typed --mib 8
//! ```
//!
//! `ab` instead alternates `typed` and `ignored` round by round (default 20 rounds) and prints
//! the ratio of each pair of rounds (`ignored` time ÷ `typed` time, the
//! `default_parser_vs_ignored_any` figure): median, min and max, timed by the process's CPU
//! time (`getrusage`, so time spent waiting for a core on a loaded machine is not counted) and
//! by the wall clock. It times `typed-serde` and `validate` in the same rounds and prints
//! their ratios to `ignored` too.
//!
//! `adapters` measures what handing messages to other threads costs: round by round (default
//! 10 rounds) it runs the typed parser inline, in a `ThreadedParser` and in a `ParallelParser`
//! of `--threads` workers (default 2), this thread pushing the messages as a driver would, and
//! prints for each the median messages per CPU-second of the whole process (the figure
//! `typed_e2e_parallel_per_cpu_second` compares end to end), the median messages per second
//! of wall time, and each adapter's CPU per message over the inline parser's (median of the
//! per-round ratios).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sitebucket_bench::args::Args;
use sitebucket_bench::stream::BenchStream;
use sitebucket_bench::{inproc, os};
use sitebucket_proto::message::{Message, ParseError};
use sitebucket_proto::{DefaultParser, Parser};
use sitebucket_thread::{ParallelParser, ThreadedParser};

/// The stream's seed, shared with the other figures.
const SEED: u64 = 20_240_601;

fn main() {
    let args = Args::from_env();
    let mib: usize = args.get("--mib", 8);
    let stream = BenchStream::generate(SEED, mib << 20);
    let messages: Vec<Bytes> = stream
        .messages
        .iter()
        .map(|m| Bytes::from(m.clone()))
        .collect();
    let payload = stream.payload_bytes();
    let mode = args.mode().unwrap_or("typed");
    let parse: fn(&[Bytes]) -> usize = match mode {
        "typed" => inproc::parse_typed,
        "typed-serde" => inproc::parse_typed_serde,
        "validate" => inproc::parse_validated,
        "ignored" => inproc::parse_ignored,
        "value" => inproc::parse_value,
        "ab" => return ab(&messages, payload, args.get("--rounds", 20)),
        "adapters" => {
            return adapters(
                &messages,
                args.get("--rounds", 10),
                args.get("--threads", 2),
            )
        }
        other => {
            eprintln!(
                "unknown mode {other:?}: typed, typed-serde, validate, ignored, value, ab or adapters"
            );
            std::process::exit(2)
        }
    };
    let rounds: usize = args.get("--rounds", 1);
    for _ in 0..rounds {
        let began = Instant::now();
        let ok = parse(&messages);
        let secs = began.elapsed().as_secs_f64();
        println!(
            "{mode}: {ok} of {} messages, {:.1} MB/s",
            messages.len(),
            payload as f64 / secs / 1e6
        );
    }
}

/// Alternates the typed parser and `IgnoredAny` (and the reference decoder and the scanner's
/// check alone), and prints the ratio of each round's `IgnoredAny` time to each.
fn ab(messages: &[Bytes], payload: usize, rounds: usize) {
    let time = |parse: fn(&[Bytes]) -> usize| {
        let (wall, cpu) = (Instant::now(), os::cpu_time());
        let ok = parse(messages);
        assert_eq!(ok, messages.len(), "every message parses");
        (
            wall.elapsed().as_secs_f64(),
            (os::cpu_time() - cpu).as_secs_f64(),
        )
    };
    let (mut wall_ratios, mut cpu_ratios) = (Vec::new(), Vec::new());
    let (mut serde_ratios, mut validate_ratios) = (Vec::new(), Vec::new());
    let mut best = [f64::MAX; 4];
    for _ in 0..rounds.max(1) {
        let typed = time(inproc::parse_typed);
        let ignored = time(inproc::parse_ignored);
        let serde = time(inproc::parse_typed_serde);
        let validate = time(inproc::parse_validated);
        best = [
            best[0].min(typed.1),
            best[1].min(ignored.1),
            best[2].min(serde.1),
            best[3].min(validate.1),
        ];
        wall_ratios.push(ignored.0 / typed.0);
        cpu_ratios.push(ignored.1 / typed.1);
        serde_ratios.push(ignored.1 / serde.1);
        validate_ratios.push(ignored.1 / validate.1);
    }
    let summary = |ratios: &mut Vec<f64>| {
        ratios.sort_by(f64::total_cmp);
        format!(
            "median {:.3} (min {:.3}, max {:.3})",
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        )
    };
    let rate = |secs: f64| payload as f64 / secs / 1e6;
    println!(
        "ab: {} rounds of {} messages; ignored/typed by CPU time {}, by wall time {}; fastest CPU rounds: typed {:.0} MB/s, ignored {:.0} MB/s",
        cpu_ratios.len(),
        messages.len(),
        summary(&mut cpu_ratios),
        summary(&mut wall_ratios),
        rate(best[0]),
        rate(best[1]),
    );
    println!(
        "ab: ignored/typed-serde by CPU time {}; ignored/validate {}; fastest CPU rounds: typed-serde {:.0} MB/s, validate {:.0} MB/s",
        summary(&mut serde_ratios),
        summary(&mut validate_ratios),
        rate(best[2]),
        rate(best[3]),
    );
}

/// The typed parser inline, in a `ThreadedParser` and in a `ParallelParser`, round by round:
/// messages per CPU-second and per wall second of each.
fn adapters(messages: &[Bytes], rounds: usize, threads: usize) {
    const NAMES: [&str; 3] = ["inline", "threaded", "parallel"];
    let run = |which: usize| {
        let ok = Arc::new(AtomicUsize::new(0));
        let handler = {
            let ok = ok.clone();
            move |message: Result<Message<'_>, ParseError>| {
                if let Ok(message) = message {
                    std::hint::black_box(&message);
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        };
        let (wall, cpu) = (Instant::now(), os::cpu_time());
        {
            let mut parser: Box<dyn Parser> = match which {
                0 => Box::new(DefaultParser::new(handler)),
                1 => Box::new(ThreadedParser::spawn(DefaultParser::new(handler)).unwrap()),
                _ => Box::new(
                    ParallelParser::builder()
                        .threads(threads)
                        .typed(handler)
                        .unwrap(),
                ),
            };
            for message in messages {
                parser.parse(message.clone());
            }
            // Dropping it waits for every message to be handled.
        }
        let (wall, cpu) = (
            wall.elapsed().as_secs_f64(),
            (os::cpu_time() - cpu).as_secs_f64(),
        );
        assert_eq!(
            ok.load(Ordering::Relaxed),
            messages.len(),
            "every message parses"
        );
        (messages.len() as f64 / cpu, messages.len() as f64 / wall)
    };
    let mut per_cpu: [Vec<f64>; 3] = Default::default();
    let mut per_wall: [Vec<f64>; 3] = Default::default();
    let mut cpu_ratio: [Vec<f64>; 3] = Default::default();
    for _ in 0..rounds.max(1) {
        let mut this = [0.0; 3];
        for which in 0..3 {
            let (cpu, wall) = run(which);
            this[which] = cpu;
            per_cpu[which].push(cpu);
            per_wall[which].push(wall);
        }
        for which in 0..3 {
            cpu_ratio[which].push(this[0] / this[which]);
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!(
        "adapters: {} rounds of {} messages, parallel on {threads} threads",
        per_cpu[0].len(),
        messages.len()
    );
    for which in 0..3 {
        println!(
            "adapters: {:<8} {:>8.0} msgs/cpu-s {:>8.0} msgs/s wall, CPU per message {:.3}x inline",
            NAMES[which],
            median(&mut per_cpu[which]),
            median(&mut per_wall[which]),
            median(&mut cpu_ratio[which]),
        );
    }
}
