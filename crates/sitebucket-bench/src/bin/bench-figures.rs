//! The out-of-process figures: every loopback client in its own process against
//! `bench-server` in another, plus the allocation count, the busy and the idle streams, tweepy
//! the simulator and the fleet on NATS JetStream. Prints one `figure ...` line per figure (and
//! `# ...` context lines).
//!
//! ```text
//! bench-figures [--quick] [--only raw|typed|busy|idle|sim|fleet]
//! ```
//!
//! The sibling binaries (`bench-server`, `bench-client`, `bench-busy`, `bench-idle`,
//! `bench-alloc`, `bench-sim`, `bench-fleet`, and the CLI's `sitebucket`) are found next to
//! this one. tweepy 4.13 is installed with pip into a venv
//! under `<target>/bench/venv` when `python3` is there; without Python (or without network
//! access to PyPI) that figure is skipped with a note.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use std::time::Instant;

use bytes::Bytes;
use sitebucket_bench::args::Args;
use sitebucket_bench::figure::{Figure, Op, Target};
use sitebucket_bench::inproc;
use sitebucket_bench::stream::BenchStream;

/// The seed of the stream every loopback figure streams (the in-process one's too).
const SEED: u64 = 20_240_601;
const TWEEPY_SCRIPT: &str = include_str!("../../python/tweepy_stream.py");

/// How much each section does.
struct Plan {
    raw_bytes: u64,
    rounds: usize,
    typed_bytes: u64,
    busy_bytes: u64,
    idle_streams: usize,
    idle_tls_streams: usize,
    sim_hours: f64,
}

fn main() {
    let args = Args::from_env();
    let quick = args.has("--quick");
    let plan = if quick {
        Plan {
            raw_bytes: 512 << 20,
            rounds: 5,
            typed_bytes: 128 << 20,
            busy_bytes: 2 << 30,
            idle_streams: 10_000,
            idle_tls_streams: 10_000,
            sim_hours: 10.0,
        }
    } else {
        Plan {
            raw_bytes: 2 << 30,
            rounds: 9,
            typed_bytes: 512 << 20,
            busy_bytes: 4 << 30,
            idle_streams: 10_000,
            idle_tls_streams: 10_000,
            sim_hours: 100.0,
        }
    };
    let bin = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| fail("cannot find the bench binaries"));
    let target = bin.parent().map_or_else(|| bin.clone(), Path::to_path_buf);
    let only = args.value("--only").map(str::to_owned);
    let run = |section: &str| only.as_deref().is_none_or(|o| o == section);

    if run("raw") {
        raw_end_to_end(&bin, &plan);
    }
    if run("typed") {
        typed_vs_tweepy(&bin, &target, &plan);
    }
    if run("busy") {
        busy(&bin, &plan);
    }
    if run("idle") {
        idle(&bin, &target, &plan);
    }
    if run("sim") {
        let out = output(
            Command::new(bin.join("bench-sim")).args(["--hours", &plan.sim_hours.to_string()]),
        );
        print!("{out}");
    }
    if run("fleet") {
        fleet(&bin, quick);
    }
}

/// The fleet figures (`bench-fleet`): they need `nats-server`, and say so when it is missing.
/// A failed run is reported, not fatal: the other figures stand on their own.
fn fleet(bin: &Path, quick: bool) {
    let mut command = Command::new(bin.join("bench-fleet"));
    if quick {
        command.arg("--quick");
    }
    match command.stderr(Stdio::inherit()).output() {
        Ok(out) => {
            print!("{}", String::from_utf8_lossy(&out.stdout));
            if !out.status.success() {
                println!(
                    "# fleet: bench-fleet failed ({}); see its message above",
                    out.status
                );
            }
        }
        Err(e) => println!("# fleet: not measured: cannot run bench-fleet: {e}"),
    }
}

/// A `bench-server` child; it exits when its stdin (held here) closes.
struct Server {
    child: Child,
    line: String,
}

impl Server {
    fn start(bin: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(bin.join("bench-server"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("starting bench-server: {e}")));
        let mut line = String::new();
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| fail("bench-server has no stdout"));
        BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap_or_else(|e| fail(&format!("reading bench-server: {e}")));
        if !line.starts_with("listening ") {
            fail(&format!("bench-server said {line:?}"));
        }
        Server { child, line }
    }

    fn addr(&self) -> String {
        self.line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    }

    /// A `key=value` of the server's announcement.
    fn value(&self, key: &str) -> u64 {
        fields(&self.line).get(key).copied().unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The numeric `key=value` fields of a line.
fn fields(line: &str) -> HashMap<String, u64> {
    line.split_whitespace()
        .filter_map(|f| {
            let (k, v) = f.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// Runs a command to completion; its stdout. Exits if it fails.
fn output(command: &mut Command) -> String {
    let out = command
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| fail(&format!("{command:?}: {e}")));
    if !out.status.success() {
        fail(&format!("{command:?} failed: {}", out.status));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `result ...` line of a client run, as fields.
fn client(bin: &Path, driver: &str, parse: &str, addr: &str) -> HashMap<String, u64> {
    let out = output(
        Command::new(bin.join("bench-client"))
            .args(["--driver", driver, "--parse", parse, "--addr", addr]),
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("result "))
        .unwrap_or_else(|| fail(&format!("bench-client {driver} printed no result")));
    fields(line)
}

const DRIVERS: [&str; 4] = ["std", "mio", "smol", "tokio"];

fn raw_end_to_end(bin: &Path, plan: &Plan) {
    let server = Server::start(
        bin,
        &[
            "firehose",
            "--seed",
            &SEED.to_string(),
            "--bytes",
            &plan.raw_bytes.to_string(),
        ],
    );
    let (addr, expected, wire) = (
        server.addr(),
        server.value("messages"),
        server.value("wire"),
    );
    println!(
        "# loopback raw: {} bytes per run ({expected} messages), median of {} rounds, CPU from getrusage of the client process",
        wire, plan.rounds
    );
    // Every round runs the baseline and each driver back to back. The median, not the best:
    // the kernel's copy is most of every figure here, and on a shared machine a single lucky
    // run of one client (a quiet moment, a warm cache) would decide a best-of ratio.
    let clients = ["discard", "std", "mio", "smol", "tokio"];
    let mut runs: HashMap<&str, Vec<f64>> = HashMap::new();
    for _ in 0..plan.rounds {
        for driver in clients {
            let r = client(bin, driver, "raw", &addr);
            if r["bytes"] != wire || (driver != "discard" && r["messages"] != expected) {
                fail(&format!(
                    "{driver}: got {r:?}, expected {wire} bytes, {expected} messages"
                ));
            }
            let ns_per_byte = r["cpu_ns"] as f64 / r["bytes"] as f64;
            runs.entry(driver).or_default().push(ns_per_byte);
        }
    }
    for driver in clients {
        let listed: Vec<String> = runs[driver].iter().map(|x| format!("{x:.3}")).collect();
        println!("# {driver} ns/B by round: {}", listed.join(" "));
    }
    let median = |driver: &str| {
        let mut values = runs[driver].clone();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    for driver in DRIVERS {
        println!(
            "{}",
            Figure::new(
                &format!("e2e_raw_cpu_per_byte_{driver}"),
                median(driver),
                "ns/B",
                "read_and_discard",
                median("discard"),
                Target::Ratio(Op::AtMost, 1.5),
            )
        );
    }
    print!(
        "{}",
        output(Command::new(bin.join("bench-alloc")).args(["--addr", &addr]))
    );
}

fn typed_vs_tweepy(bin: &Path, target: &Path, plan: &Plan) {
    let server = Server::start(
        bin,
        &[
            "firehose",
            "--seed",
            &SEED.to_string(),
            "--bytes",
            &plan.typed_bytes.to_string(),
        ],
    );
    let (addr, expected) = (server.addr(), server.value("messages"));
    // Each driver parsing inline, std with the parser on a thread of its own, and std and mio
    // with a `ParallelParser` (one worker per core).
    let runs: Vec<(&'static str, &'static str, &'static str)> = DRIVERS
        .iter()
        .map(|d| (*d, *d, "typed"))
        .chain([
            ("std_parser_thread", "std", "threaded"),
            ("std_parallel", "std", "parallel"),
            ("mio_parallel", "mio", "parallel"),
        ])
        .collect();
    let mut rates: Vec<(&'static str, f64)> = runs.iter().map(|r| (r.0, 0.0)).collect();
    let mut cpu_rates = rates.clone();
    // What the typed handler saw, in order (`order=`): every run must equal the first
    // single-thread run's.
    let mut reference_order: Option<u64> = None;
    let (mut parallel_runs, mut parallel_in_order) = (0u64, 0u64);
    // The std driver with a parser that only validates each message: the ceiling of any
    // checking parser end to end (std reads with the least CPU per byte).
    let mut validate_rate = 0.0f64;
    // tweepy's best (wall, CPU), or why it could not run.
    let mut tweepy_best: Result<(f64, f64), String> = Ok((0.0, 0.0));
    // Round by round, every driver then tweepy, so all see the same moments of the machine.
    for _ in 0..plan.rounds {
        for (i, (name, driver, parse)) in runs.iter().enumerate() {
            let r = client(bin, driver, parse, &addr);
            if r["messages"] != expected || r["typed_ok"] != expected {
                fail(&format!(
                    "typed {name}: got {r:?}, expected {expected} messages"
                ));
            }
            let order = *reference_order.get_or_insert(r["order"]);
            if *parse == "parallel" {
                parallel_runs += 1;
                parallel_in_order += u64::from(r["order"] == order);
            } else if r["order"] != order {
                fail(&format!(
                    "typed {name}: the handler saw another sequence than {} did",
                    runs[0].0
                ));
            }
            let messages = r["messages"] as f64 * 1e9;
            rates[i].1 = rates[i].1.max(messages / r["wall_ns"] as f64);
            cpu_rates[i].1 = cpu_rates[i].1.max(messages / r["cpu_ns"].max(1) as f64);
        }
        let r = client(bin, "std", "validate", &addr);
        if r["messages"] != expected || r["typed_ok"] != expected {
            fail(&format!(
                "validate std: got {r:?}, expected {expected} messages"
            ));
        }
        validate_rate = validate_rate.max(r["messages"] as f64 * 1e9 / r["wall_ns"] as f64);
        if let Ok((best, best_cpu)) = tweepy_best {
            tweepy_best = tweepy(target, &addr).map(|r| {
                if r["messages"] != expected {
                    fail(&format!("tweepy: got {r:?}, expected {expected} messages"));
                }
                let messages = r["messages"] as f64 * 1e9;
                (
                    best.max(messages / r["wall_ns"] as f64),
                    best_cpu.max(messages / r["cpu_ns"].max(1) as f64),
                )
            });
        }
    }
    let fastest = |rates: &[(&'static str, f64)]| {
        rates
            .iter()
            .copied()
            .fold(("none", 0.0), |a, b| if b.1 > a.1 { b } else { a })
    };
    let is_parallel = |name: &str| name.ends_with("_parallel");
    let single: Vec<_> = rates
        .iter()
        .copied()
        .filter(|r| !is_parallel(r.0))
        .collect();
    let single_cpu: Vec<_> = cpu_rates
        .iter()
        .copied()
        .filter(|r| !is_parallel(r.0))
        .collect();
    let parallel: Vec<_> = rates.iter().copied().filter(|r| is_parallel(r.0)).collect();
    let parallel_cpu: Vec<_> = cpu_rates
        .iter()
        .copied()
        .filter(|r| is_parallel(r.0))
        .collect();
    let (best_driver, best) = fastest(&single);
    let (best_cpu_driver, best_cpu) = fastest(&single_cpu);
    let (best_parallel_driver, best_parallel) = fastest(&parallel);
    let (best_parallel_cpu_driver, best_parallel_cpu) = fastest(&parallel_cpu);
    // Per CPU-second, the fastest run with one parsing thread (inline: no hand-over at all).
    let (inline_cpu_driver, inline_cpu) = fastest(
        &cpu_rates
            .iter()
            .copied()
            .filter(|r| DRIVERS.contains(&r.0))
            .collect::<Vec<_>>(),
    );
    let listed_cpu: Vec<String> = cpu_rates
        .iter()
        .map(|(d, r)| format!("{d} {r:.0}"))
        .collect();
    println!(
        "# typed end to end per CPU-second of the client process, best of {} runs: {}",
        plan.rounds,
        listed_cpu.join(", ")
    );
    println!(
        "{}",
        Figure::new(
            "order_check_parallel_runs_equal_single_thread",
            parallel_in_order as f64,
            "runs",
            "parallel_runs",
            parallel_runs as f64,
            Target::Ratio(Op::AtLeast, 1.0),
        )
    );
    println!(
        "{}",
        Figure::new(
            &format!("typed_e2e_parallel_per_cpu_second_{best_parallel_cpu_driver}"),
            best_parallel_cpu,
            "msgs/cpu-s",
            &format!("typed_e2e_single_thread_per_cpu_second_{inline_cpu_driver}"),
            inline_cpu,
            Target::Reported,
        )
    );
    let listed: Vec<String> = rates.iter().map(|(d, r)| format!("{d} {r:.0}")).collect();
    println!(
        "# typed end to end ({expected} messages of the same stream, DefaultParser, msgs/s of wall time, best of {} runs; tweepy too): {}",
        plan.rounds,
        listed.join(", ")
    );
    match tweepy_best {
        Ok((tweepy_rate, tweepy_cpu_rate)) => {
            println!(
                "{}",
                Figure::new(
                    &format!("typed_e2e_best_driver_{best_driver}"),
                    best,
                    "msgs/s",
                    "tweepy_4.13_stream",
                    tweepy_rate,
                    Target::Ratio(Op::AtLeast, 20.0),
                )
            );
            println!(
                "{}",
                Figure::new(
                    &format!("typed_e2e_parallel_best_driver_{best_parallel_driver}"),
                    best_parallel,
                    "msgs/s",
                    "tweepy_4.13_stream",
                    tweepy_rate,
                    Target::Ratio(Op::AtLeast, 20.0),
                )
            );
            // The same per CPU-second of each client process: less at the mercy of whatever
            // else the machine runs than wall time.
            println!(
                "{}",
                Figure::new(
                    &format!("typed_e2e_per_cpu_second_best_driver_{best_cpu_driver}"),
                    best_cpu,
                    "msgs/cpu-s",
                    "tweepy_4.13_stream",
                    tweepy_cpu_rate,
                    Target::Ratio(Op::AtLeast, 20.0),
                )
            );
            // What no end-to-end run can beat: parsing alone, in memory, on one core; and the
            // same stream end to end with a parser that only validates.
            let mut ceilings = parse_ceiling(plan.rounds);
            ceilings.push(("typed_e2e_validate_only_std", validate_rate));
            for (name, rate) in ceilings {
                println!(
                    "{}",
                    Figure::new(
                        &format!("{name}_vs_tweepy"),
                        rate,
                        "msgs/s",
                        "tweepy_4.13_stream",
                        tweepy_rate,
                        Target::Reported,
                    )
                );
            }
        }
        Err(why) => println!("# tweepy figure skipped: {why}"),
    }
}

/// Parses every message one way; how many were valid.
type ParseAll = fn(&[Bytes]) -> usize;

/// Messages per second of `DefaultParser` and of `serde_json` into `IgnoredAny` over the
/// messages of the same stream, in memory, best of `rounds` passes; with the `json-crates`
/// feature, also of the SIMD JSON crates (simd-json, sonic-rs) doing no more than validating.
fn parse_ceiling(rounds: usize) -> Vec<(&'static str, f64)> {
    let stream = BenchStream::generate(SEED, 16 << 20);
    let messages: Vec<Bytes> = stream
        .messages
        .iter()
        .map(|m| Bytes::from(m.clone()))
        .collect();
    let rate = |parse: fn(&[Bytes]) -> usize| {
        let began = Instant::now();
        let n = parse(&messages);
        n as f64 / began.elapsed().as_secs_f64()
    };
    #[cfg_attr(not(feature = "json-crates"), allow(unused_mut))]
    let mut parsers: Vec<(&'static str, ParseAll)> = vec![
        ("default_parser_in_memory", inproc::parse_typed),
        ("ignored_any_in_memory", inproc::parse_ignored),
    ];
    #[cfg(feature = "json-crates")]
    parsers.extend([
        (
            "simd_json_tape_in_memory",
            sitebucket_bench::json_crates::simd_json_tape as ParseAll,
        ),
        (
            "sonic_rs_ignored_any_in_memory",
            sitebucket_bench::json_crates::sonic_rs_ignored,
        ),
    ]);
    let mut best = vec![0.0f64; parsers.len()];
    // Round by round, so all see the same moments of the machine.
    for _ in 0..rounds.max(1) {
        for ((_, parse), best) in parsers.iter().zip(&mut best) {
            *best = best.max(rate(*parse));
        }
    }
    parsers.iter().map(|(name, _)| *name).zip(best).collect()
}

/// Installs tweepy 4.13 into `<target>/bench/venv` if needed and runs the script against
/// `addr`; the result fields.
fn tweepy(target: &Path, addr: &str) -> Result<HashMap<String, u64>, String> {
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let venv = dir.join("venv");
    let python = venv.join("bin").join("python");
    let installed = Command::new(&python)
        .args([
            "-c",
            "import tweepy, sys; sys.exit(tweepy.__version__ != '4.13.0')",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .map_err(|e| format!("python3 is not available ({e})"))?;
        if !made.success() {
            return Err("python3 -m venv failed".into());
        }
        let pip = Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "tweepy==4.13.0"])
            .status()
            .map_err(|e| e.to_string())?;
        if !pip.success() {
            return Err("pip install tweepy==4.13.0 failed".into());
        }
    }
    let script = dir.join("tweepy_stream.py");
    std::fs::File::create(&script)
        .and_then(|mut f| f.write_all(TWEEPY_SCRIPT.as_bytes()))
        .map_err(|e| e.to_string())?;
    let out = Command::new(&python)
        .arg(&script)
        .arg(format!("http://{addr}/1.1/site.json"))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("result "))
        .ok_or_else(|| format!("the tweepy script printed no result ({})", out.status))?;
    Ok(fields(line))
}

/// Streams of the many-busy-streams figure.
const BUSY_STREAMS: u64 = 1_000;

/// The drivers of the busy figures: `bench-busy --driver` name, and the names its figures use.
struct BusyDriver {
    /// `--driver` of `bench-busy`.
    name: &'static str,
    /// The figure of 1,000 streams on one thread.
    figure: &'static str,
    /// Its baseline: one stream on the same driver.
    baseline: &'static str,
    /// User-space CPU alone.
    user_figure: &'static str,
    /// Its baseline: one stream's user-space CPU on the same driver.
    user_baseline: &'static str,
    /// Streams whose messages were all received byte-exact.
    exact_figure: &'static str,
}

const BUSY_DRIVERS: [BusyDriver; 2] = [
    BusyDriver {
        name: "mio",
        figure: "busy_streams_1000_one_mio_thread_cpu_per_message",
        baseline: "one_stream_one_mio_thread",
        user_figure: "busy_streams_1000_user_cpu_per_message",
        user_baseline: "one_stream_user_cpu_per_message",
        exact_figure: "busy_streams_byte_exact",
    },
    BusyDriver {
        name: "tokio",
        figure: "busy_streams_1000_one_tokio_current_thread_cpu_per_message",
        baseline: "one_stream_one_tokio_current_thread",
        user_figure: "busy_streams_1000_tokio_user_cpu_per_message",
        user_baseline: "one_stream_tokio_user_cpu_per_message",
        exact_figure: "busy_streams_byte_exact_tokio",
    },
];

/// `TCP_NOTSENT_LOWAT` of the busy figures' servers (both of them). On loopback, the ACK a
/// client's read sends is processed in the client's own context, and it pushes whatever the
/// server has queued beyond the window: without a limit, a server thread blocked on a full
/// send buffer has its whole queue transmitted (and received) on the client's CPU, which no
/// remote server does. That happens most with 1,000 streams, whose 1,000 server threads
/// cannot all run, and it made the figure measure the server's TCP work. 16 KiB is what
/// servers streaming to many clients commonly set; the client is unchanged.
const BUSY_NOTSENT_LOWAT: &str = "16384";

/// What the rounds of one driver measured (ns per message, exact streams, rates).
#[derive(Default)]
struct BusyRounds {
    single: Vec<f64>,
    busy: Vec<f64>,
    single_user: Vec<f64>,
    busy_user: Vec<f64>,
    /// Whole runs, the connects included.
    single_whole: Vec<f64>,
    busy_whole: Vec<f64>,
    exact: Vec<u64>,
    rates: Vec<String>,
}

/// 1,000 busy streams on one thread against one stream carrying the same bytes, both
/// `bench-busy` against `bench-server firehose` with the same segment of the seeded stream,
/// on one `MioDriver` and on one `TokioDriver` (a current-thread runtime): CPU per message,
/// and every stream's messages checked by count and hash.
fn busy(bin: &Path, plan: &Plan) {
    let segment = (128u64 << 10).to_string();
    let seed = SEED.to_string();
    let per_stream = (plan.busy_bytes / BUSY_STREAMS).to_string();
    let total = plan.busy_bytes.to_string();
    let one = Server::start(
        bin,
        &[
            "firehose",
            "--seed",
            &seed,
            "--segment-bytes",
            &segment,
            "--bytes",
            &total,
            "--notsent-lowat",
            BUSY_NOTSENT_LOWAT,
        ],
    );
    let many = Server::start(
        bin,
        &[
            "firehose",
            "--seed",
            &seed,
            "--segment-bytes",
            &segment,
            "--bytes",
            &per_stream,
            "--notsent-lowat",
            BUSY_NOTSENT_LOWAT,
            "--together",
            &BUSY_STREAMS.to_string(),
        ],
    );
    let run_busy = |server: &Server, streams: u64, driver: &str| {
        let out = output(Command::new(bin.join("bench-busy")).args([
            "--addr",
            &server.addr(),
            "--streams",
            &streams.to_string(),
            "--expect-messages",
            &server.value("messages").to_string(),
            "--expect-hash",
            &server.value("hash").to_string(),
            "--driver",
            driver,
        ]));
        let line = out
            .lines()
            .find(|l| l.starts_with("result "))
            .unwrap_or_else(|| fail("bench-busy printed no result"))
            .to_owned();
        fields(&line)
    };
    println!(
        "# busy: {BUSY_STREAMS} streams of {} messages each on one MioDriver, then on one TokioDriver (a current-thread runtime), vs one stream of {} messages on the same driver, the same 128 KiB segment of the stream; CPU of the client process from the first message to the end (the connects left out), median of {} rounds",
        many.value("messages"),
        one.value("messages"),
        plan.rounds
    );
    let mut rounds: Vec<BusyRounds> = BUSY_DRIVERS.iter().map(|_| BusyRounds::default()).collect();
    for _ in 0..plan.rounds {
        for (driver, r) in BUSY_DRIVERS.iter().zip(rounds.iter_mut()) {
            for (server, streams) in [(&one, 1), (&many, BUSY_STREAMS)] {
                let out = run_busy(server, streams, driver.name);
                if streams == 1 && out["exact"] != 1 {
                    fail(&format!(
                        "busy ({}): the single stream was not exact: {out:?}",
                        driver.name
                    ));
                }
                if out["window_messages"] == 0 {
                    fail(&format!(
                        "busy ({}): no message came after the connects: {out:?}",
                        driver.name
                    ));
                }
                // The window from the first message to the end (the connects left out; see
                // bench-busy), and the whole run beside it.
                let per_message = out["window_cpu_ns"] as f64 / out["window_messages"] as f64;
                // User-space CPU alone: what sitebucket's own code (and the hash) costs per
                // message, apart from the kernel's TCP work.
                let user_per_message = out["window_user_ns"] as f64 / out["window_messages"] as f64;
                let whole_per_message = out["cpu_ns"] as f64 / out["messages"].max(1) as f64;
                let rate = out["bytes"] as f64 / out["wall_ns"].max(1) as f64 * 1e3;
                if streams == 1 {
                    r.single.push(per_message);
                    r.single_user.push(user_per_message);
                    r.single_whole.push(whole_per_message);
                } else {
                    r.busy.push(per_message);
                    r.busy_user.push(user_per_message);
                    r.busy_whole.push(whole_per_message);
                    r.exact.push(out["exact"]);
                }
                r.rates.push(format!("{streams}: {rate:.0} MB/s"));
            }
        }
    }
    let listed = |values: &[f64]| {
        values
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    for (driver, mut r) in BUSY_DRIVERS.iter().zip(rounds) {
        let name = driver.name;
        println!(
            "# busy {name} ns/msg by round, one stream: {}",
            listed(&r.single)
        );
        println!(
            "# busy {name} ns/msg by round, {BUSY_STREAMS} streams: {}",
            listed(&r.busy)
        );
        println!(
            "# busy {name} user-space ns/msg by round, one stream: {}; {BUSY_STREAMS} streams: {}",
            listed(&r.single_user),
            listed(&r.busy_user)
        );
        println!(
            "# busy {name} whole-run ns/msg by round (the {BUSY_STREAMS} connects included), one stream: {}; {BUSY_STREAMS} streams: {}",
            listed(&r.single_whole),
            listed(&r.busy_whole)
        );
        println!(
            "# busy {name} aggregate wall rate by run (streams: rate): {}",
            r.rates.join(", ")
        );
        println!(
            "{}",
            Figure::new(
                driver.figure,
                median(&mut r.busy),
                "ns/msg",
                driver.baseline,
                median(&mut r.single),
                Target::Ratio(Op::AtMost, 1.2),
            )
        );
        println!(
            "{}",
            Figure::new(
                driver.user_figure,
                median(&mut r.busy_user),
                "ns/msg",
                driver.user_baseline,
                median(&mut r.single_user),
                Target::Reported,
            )
        );
        println!(
            "{}",
            Figure::new(
                driver.exact_figure,
                r.exact.iter().copied().min().unwrap_or(0) as f64,
                "streams",
                "streams_run",
                BUSY_STREAMS as f64,
                Target::Ratio(Op::AtLeast, 1.0),
            )
        );
    }
}

fn idle(bin: &Path, target: &Path, plan: &Plan) {
    let run_idle = |server: &Server, extra: &[&str], streams: usize| {
        let mut args = vec![
            "--addr".to_owned(),
            server.addr(),
            "--streams".into(),
            streams.to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = output(Command::new(bin.join("bench-idle")).args(&args));
        let line = out
            .lines()
            .find(|l| l.starts_with("result "))
            .unwrap_or_else(|| fail("bench-idle printed no result"))
            .to_owned();
        fields(&line)
    };
    let per_stream = |r: &HashMap<String, u64>| {
        (r["rss_after_kib"].saturating_sub(r["rss_before_kib"])) as f64
            / r["measured"].max(1) as f64
    };
    let plain = Server::start(bin, &["idle"]);
    let bare = run_idle(&plain, &["--bare"], plan.idle_streams);
    let ours = run_idle(&plain, &[], plan.idle_streams);
    let tokio = run_idle(&plain, &["--driver", "tokio"], plan.idle_streams);
    drop(plain);
    println!(
        "# idle: {} streams spawned on one MioDriver; the client process had {} threads (main + the loop)",
        ours["streams"], ours["threads"]
    );
    println!(
        "{}",
        Figure::new(
            "idle_streams_one_mio_thread",
            ours["open"] as f64,
            "streams",
            "streams_requested",
            plan.idle_streams as f64,
            Target::Ratio(Op::AtLeast, 1.0),
        )
    );
    let plain_kib = per_stream(&ours);
    println!(
        "{}",
        Figure::new(
            "idle_rss_per_stream_plain",
            plain_kib,
            "KiB",
            "bare_socket",
            per_stream(&bare),
            Target::Value(Op::AtMost, 64.0),
        )
    );
    println!(
        "# idle tokio: {} streams spawned on one TokioDriver (a current-thread runtime of its own); the client process had {} threads (main + the runtime)",
        tokio["streams"], tokio["threads"]
    );
    println!(
        "{}",
        Figure::new(
            "idle_streams_one_tokio_current_thread",
            tokio["open"] as f64,
            "streams",
            "streams_requested",
            plan.idle_streams as f64,
            Target::Ratio(Op::AtLeast, 1.0),
        )
    );
    println!(
        "{}",
        Figure::new(
            "idle_rss_per_stream_plain_tokio",
            per_stream(&tokio),
            "KiB",
            "idle_rss_per_stream_plain",
            plain_kib,
            Target::Reported,
        )
    );
    let ca: PathBuf = target.join("bench").join("idle-ca.pem");
    let _ = std::fs::create_dir_all(target.join("bench"));
    let ca_arg = ca.to_string_lossy().into_owned();
    let tls_server = Server::start(bin, &["idle", "--tls", "--ca-out", &ca_arg]);
    let tls = run_idle(
        &tls_server,
        &["--tls", "--ca", &ca_arg],
        plan.idle_tls_streams,
    );
    drop(tls_server);
    if tls["open"] != plan.idle_tls_streams as u64 {
        println!(
            "# idle TLS: only {} of {} streams came up",
            tls["open"], plan.idle_tls_streams
        );
    }
    println!(
        "{}",
        Figure::new(
            "idle_rss_per_stream_tls",
            per_stream(&tls),
            "KiB",
            "idle_rss_per_stream_plain",
            plain_kib,
            Target::Reported,
        )
    );
}

fn fail(why: &str) -> ! {
    eprintln!("bench-figures: {why}");
    std::process::exit(1)
}
