//! Project tasks: `cargo xtask <task>`. Std only.

use std::process::{exit, Command};

fn main() {
    let task = std::env::args().nth(1);
    let result = match task.as_deref() {
        Some("ci") => ci(),
        Some("bench") => bench(&std::env::args().skip(2).collect::<Vec<_>>()),
        Some("demo") => demo(),
        Some("sim") => sim(&std::env::args().skip(2).collect::<Vec<_>>()),
        _ => {
            eprintln!("usage: cargo xtask <ci | demo | sim --seeds N [--start S] [--hours H]>");
            exit(2);
        }
    };
    if let Err(message) = result {
        eprintln!("xtask: {message}");
        exit(1);
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(mut command: Command) -> Result<(), String> {
    let status = command.status().map_err(|e| format!("{command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed: {status}"))
    }
}

/// `cargo xtask demo`: the whole stack against a scripted loopback server, on every driver.
fn demo() -> Result<(), String> {
    let mut demo = cargo();
    demo.args(["run", "--quiet", "--package", "sitebucket-demo"]);
    run(demo)
}

/// Format check, clippy, and the workspace tests: what `.ci/run` calls.
fn ci() -> Result<(), String> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;
    let mut test = cargo();
    test.args(["test", "--workspace"]);
    run(test)
}

/// `sim --seeds N [--start S] [--hours H]`: the deterministic simulation's seed sweep over
/// seeds `S..S+N` (default 0, 1000) and `H` virtual hours (default 24; 0 skips it) of the
/// `flaky` scenario over a flaky network, in release mode. Both print the virtual hours
/// simulated per wall-clock second; a failing seed prints the command that replays it.
fn sim(args: &[String]) -> Result<(), String> {
    const USAGE: &str = "usage: cargo xtask sim --seeds N [--start S] [--hours H]";
    let (mut seeds, mut start, mut hours) = ("1000", "0", "24");
    for pair in args.chunks(2) {
        let [flag, value] = pair else {
            return Err(format!("{} needs a value; {USAGE}", pair[0]));
        };
        match flag.as_str() {
            "--seeds" => seeds = value,
            "--start" => start = value,
            "--hours" => hours = value,
            other => return Err(format!("unknown option {other}; {USAGE}")),
        }
    }
    for (flag, value) in [("--seeds", seeds), ("--start", start)] {
        value
            .parse::<u64>()
            .map_err(|_| format!("{flag} {value}: not a whole number; {USAGE}"))?;
    }
    match hours.parse::<f64>() {
        Ok(h) if h >= 0.0 && h.is_finite() => {}
        _ => return Err(format!("--hours {hours}: not a number of hours; {USAGE}")),
    }
    let mut test = cargo();
    test.args([
        "test",
        "--release",
        "--package",
        "sitebucket-sim",
        "--test",
        "sweep",
    ])
    .args(["--", "--nocapture", "--test-threads=1"])
    .env("SITEBUCKET_SIM_SEEDS", seeds)
    .env("SITEBUCKET_SIM_START", start)
    .env("SITEBUCKET_SIM_HOURS", hours);
    run(test)
}

/// `cargo xtask bench [--quick]`: every benchmark figure, one `figure ...` line each (see
/// `crates/sitebucket-bench`). Builds first, then runs the criterion bench of the in-process
/// figures (its report goes to `target/bench/inproc.log`; only `figure` and `#` lines are
/// shown) and `bench-figures` for the loopback, memory, tweepy and simulator figures.
/// `--quick` shortens every measurement (under ten minutes on two cores).
fn bench(args: &[String]) -> Result<(), String> {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let quick = match args {
        [] => false,
        [flag] if flag == "--quick" => true,
        _ => return Err("usage: cargo xtask bench [--quick]".into()),
    };
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--package",
        "sitebucket-bench",
        "--bins",
    ]);
    build.args(["--bench", "inproc"]);
    run(build)?;

    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        std::path::PathBuf::from,
    );
    let log_path = target.join("bench").join("inproc.log");
    std::fs::create_dir_all(target.join("bench")).map_err(|e| e.to_string())?;
    let mut log = std::fs::File::create(&log_path).map_err(|e| format!("{log_path:?}: {e}"))?;
    let mut inproc = cargo();
    inproc.args([
        "bench",
        "--package",
        "sitebucket-bench",
        "--bench",
        "inproc",
    ]);
    if quick {
        inproc.env("SITEBUCKET_BENCH_QUICK", "1");
    }
    inproc.stdout(Stdio::piped());
    let mut child = inproc.spawn().map_err(|e| format!("{inproc:?}: {e}"))?;
    let stdout = child.stdout.take().ok_or("the bench has no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        let _ = writeln!(log, "{line}");
        if line.starts_with("figure ") || line.starts_with("# ") {
            println!("{line}");
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!(
            "the in-process bench failed ({status}); see {log_path:?}"
        ));
    }

    let mut figures = cargo();
    figures.args([
        "run",
        "--quiet",
        "--release",
        "--package",
        "sitebucket-bench",
        "--bin",
        "bench-figures",
        "--",
    ]);
    if quick {
        figures.arg("--quick");
    }
    run(figures)
}
