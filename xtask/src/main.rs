//! Project tasks: `cargo xtask <task>`. Std only.

use std::process::{exit, Command};

mod json;
mod msrv;

fn main() {
    let task = std::env::args().nth(1);
    let result = match task.as_deref() {
        Some("ci") => ci(),
        Some("bench") => bench(&std::env::args().skip(2).collect::<Vec<_>>()),
        Some("demo") => demo(),
        Some("fuzz") => fuzz(std::env::args().skip(2).collect()),
        Some("sim") => sim(&std::env::args().skip(2).collect::<Vec<_>>()),
        Some("msrv-check") => msrv_check(),
        Some("soak") => soak(&std::env::args().skip(2).collect::<Vec<_>>()),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | demo | msrv-check | bench [--quick] [--only SECTION] | fuzz [--secs N] [--target T]... | sim --seeds N [--start S] [--hours H] | soak --minutes N --streams K --driver D [--seed S] [--allocator jemalloc|system]>"
            );
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

/// `cargo xtask msrv-check`: fails when a workspace member's `rust-version` is below the
/// highest `rust-version` of any dependency the workspace builds, with any features, on any
/// target, dev-dependencies included (see `msrv.rs`).
fn msrv_check() -> Result<(), String> {
    let mut metadata = cargo();
    metadata.args([
        "metadata",
        "--format-version",
        "1",
        "--locked",
        "--all-features",
    ]);
    let output = metadata
        .output()
        .map_err(|e| format!("{metadata:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{metadata:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let text = String::from_utf8(output.stdout).map_err(|e| e.to_string())?;
    let mut tree = cargo();
    tree.args([
        "tree",
        "--locked",
        "--workspace",
        "--all-features",
        "--target",
        "all",
        "--edges",
        "normal,build,dev",
        "--prefix",
        "none",
        "--format",
        "{p}",
    ]);
    let tree_output = tree.output().map_err(|e| format!("{tree:?}: {e}"))?;
    if !tree_output.status.success() {
        return Err(format!(
            "{tree:?} failed: {}",
            String::from_utf8_lossy(&tree_output.stderr)
        ));
    }
    let built = msrv::tree_packages(&String::from_utf8_lossy(&tree_output.stdout));
    let (lines, ok) = msrv::check(&msrv::packages(&text, &built)?);
    for line in &lines {
        println!("msrv-check: {line}");
    }
    if ok {
        println!("msrv-check: ok");
        Ok(())
    } else {
        Err(
            "raise rust-version in [workspace.package] (Cargo.toml) and say so in CHANGELOG.md"
                .into(),
        )
    }
}

/// Format check, clippy, the facade's feature sets, the rust-version check and the workspace tests: the core of what
/// `.ci/run` runs (which also lints feature variants, packages the crates and lints a copy on
/// freshly updated dependencies).
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
    // The facade's features: none, the std driver without TLS, all.
    for features in [
        &["--no-default-features"][..],
        &["--no-default-features", "--features", "std"],
        &["--all-features"],
    ] {
        let mut check = cargo();
        check
            .args(["check", "--package", "sitebucket"])
            .args(features);
        run(check)?;
    }
    msrv_check()?;
    let mut test = cargo();
    test.args(["test", "--workspace"]);
    run(test)
}

/// `cargo xtask fuzz [--secs N] [--target T]...`: runs every fuzz target (or the named ones)
/// for N seconds each (default 60) with `cargo +nightly fuzz run`, starting from the committed
/// seeds, and prints each target's executions and coverage (`cov`/`ft`) from libFuzzer's last
/// stats line. Installs the nightly toolchain and cargo-fuzz when they are missing. Corpora
/// grow in `fuzz/corpus/<target>/`, full logs go to `fuzz/logs/<target>.log`, crashes to
/// `fuzz/artifacts/<target>/`.
fn fuzz(args: Vec<String>) -> Result<(), String> {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("xtask has no parent directory")?
        .to_path_buf();
    // The targets are the files of fuzz/fuzz_targets (the proto crate's `fuzz_seeds` test
    // checks that its replay list names the same ones).
    let target_dir = root.join("fuzz/fuzz_targets");
    let mut known: Vec<String> = std::fs::read_dir(&target_dir)
        .map_err(|e| format!("reading {}: {e}", target_dir.display()))?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    known.sort();
    let mut secs: u64 = 60;
    let mut targets: Vec<String> = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--secs" => {
                let value = args.next().ok_or("--secs needs a number")?;
                secs = value
                    .parse()
                    .map_err(|_| format!("--secs {value:?}: not a number"))?;
            }
            "--target" => {
                let value = args.next().ok_or("--target needs a name")?;
                if !known.contains(&value) {
                    return Err(format!("unknown target {value:?}; targets: {known:?}"));
                }
                targets.push(value);
            }
            other => return Err(format!("fuzz: unknown argument {other:?}")),
        }
    }
    if targets.is_empty() {
        targets = known;
    }
    // `+nightly` is understood by rustup's `cargo` proxy, so call `cargo` from PATH, without
    // the variables this (stable) cargo set for us; the fuzz build lives in fuzz/target.
    let rustup_cargo = || {
        let mut command = Command::new("cargo");
        command.current_dir(&root);
        for var in [
            "CARGO",
            "CARGO_TARGET_DIR",
            "RUSTC",
            "RUSTDOC",
            "RUSTUP_TOOLCHAIN",
        ] {
            command.env_remove(var);
        }
        command
    };
    let quiet = |mut command: Command| {
        command.stdout(Stdio::null()).stderr(Stdio::null());
        command.status().is_ok_and(|s| s.success())
    };
    let mut probe = rustup_cargo();
    probe.args(["+nightly", "--version"]);
    if !quiet(probe) {
        let mut install = Command::new("rustup");
        install.args(["toolchain", "install", "nightly", "--profile", "minimal"]);
        run(install)?;
    }
    let mut probe = rustup_cargo();
    probe.args(["fuzz", "--version"]);
    if !quiet(probe) {
        let mut install = rustup_cargo();
        install.args(["install", "cargo-fuzz", "--locked"]);
        run(install)?;
    }
    std::fs::create_dir_all(root.join("fuzz/logs")).map_err(|e| format!("fuzz/logs: {e}"))?;
    let mut summary = Vec::new();
    let mut failed = Vec::new();
    for target in &targets {
        let seeds = root.join("fuzz/seeds").join(target);
        let corpus = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
        let entries = std::fs::read_dir(&seeds).map_err(|e| format!("{}: {e}", seeds.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if let Some(name) = path.file_name() {
                std::fs::copy(&path, corpus.join(name)).map_err(|e| format!("{path:?}: {e}"))?;
            }
        }
        println!("fuzzing {target} for {secs} s ...");
        let mut command = rustup_cargo();
        command
            .args(["+nightly", "fuzz", "run", target])
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={secs}"))
            .args(["-timeout=60", "-print_final_stats=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| format!("cargo fuzz: {e}"))?;
        // libFuzzer reports on stderr; keep cargo's stdout too, in the same log.
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let forward = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        let log_path = root.join("fuzz/logs").join(format!("{target}.log"));
        let mut log = std::fs::File::create(&log_path).map_err(|e| format!("{log_path:?}: {e}"))?;
        let (mut execs, mut cov, mut ft) =
            (String::from("?"), String::from("?"), String::from("?"));
        let stderr = child.stderr.take().ok_or("no stderr")?;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(log, "{line}");
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |key: &str| {
                let at = words.iter().position(|w| *w == key)?;
                words.get(at + 1).map(|v| v.to_string())
            };
            if line.starts_with('#') && line.contains("cov:") {
                if let Some(n) = words.first() {
                    execs = n.trim_start_matches('#').to_string();
                }
                cov = after("cov:").unwrap_or(cov);
                ft = after("ft:").unwrap_or(ft);
            }
            if let Some(n) = line.strip_prefix("stat::number_of_executed_units: ") {
                execs = n.trim().to_string();
            }
            if line.contains("ERROR: libFuzzer") || line.contains("panicked at") {
                eprintln!("{target}: {line}");
            }
        }
        for line in forward.join().unwrap_or_default() {
            let _ = writeln!(log, "{line}");
        }
        let status = child.wait().map_err(|e| e.to_string())?;
        let verdict = if status.success() { "ok" } else { "FAILED" };
        if !status.success() {
            failed.push(format!("{target} (see {})", log_path.display()));
        }
        println!("{target}: execs {execs}, cov {cov}, ft {ft}: {verdict}");
        summary.push(format!(
            "{target:<14} {execs:>12} {cov:>8} {ft:>8}  {verdict}"
        ));
    }
    println!(
        "\n{:<14} {:>12} {:>8} {:>8}",
        "target", "execs", "cov", "ft"
    );
    for line in &summary {
        println!("{line}");
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzz targets failed: {}", failed.join(", ")))
    }
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
/// `crates/sitebucket-bench`), with the `json-crates` comparison turned on, built with the
/// `profiling` profile (release optimizations plus line tables for `perf`). Builds first,
/// then runs the criterion bench of the in-process figures (its report goes to
/// `target/bench/inproc.log`; only `figure` and `#` lines are shown) and `bench-figures` for the loopback, memory, tweepy and simulator figures.
/// `--quick` shortens every measurement (under ten minutes on two cores). `--only SECTION`
/// runs one section of `bench-figures` (`raw`, `typed`, `busy`, `idle`, `sim`, `fleet`) and
/// skips the in-process bench. The fleet figures also build the CLI's `sitebucket` binary
/// and need `nats-server` (without it they say so and the rest runs).
fn bench(args: &[String]) -> Result<(), String> {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    const USAGE: &str = "usage: cargo xtask bench [--quick] [--only raw|typed|busy|idle|sim|fleet]";
    let mut quick = false;
    let mut only: Option<String> = None;
    let mut given = args.iter();
    while let Some(arg) = given.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--only" => only = Some(given.next().ok_or(USAGE)?.clone()),
            _ => return Err(USAGE.into()),
        }
    }
    let mut build = cargo();
    build.args([
        "build",
        "--profile",
        "profiling",
        "--package",
        "sitebucket-bench",
        "--features",
        "json-crates",
        "--bins",
    ]);
    if only.is_none() {
        build.args(["--bench", "inproc"]);
    }
    run(build)?;
    // The fleet figures run the CLI's worker: built on its own, with its own features, as a
    // user builds it.
    let mut cli = cargo();
    cli.args([
        "build",
        "--profile",
        "profiling",
        "--package",
        "sitebucket-cli",
        "--bin",
        "sitebucket",
    ]);
    run(cli)?;
    let run_figures = |only: Option<&str>| {
        let mut figures = cargo();
        figures.args([
            "run",
            "--quiet",
            "--profile",
            "profiling",
            "--package",
            "sitebucket-bench",
            "--features",
            "json-crates",
            "--bin",
            "bench-figures",
            "--",
        ]);
        if quick {
            figures.arg("--quick");
        }
        if let Some(section) = only {
            figures.args(["--only", section]);
        }
        run(figures)
    };
    if let Some(section) = only.as_deref() {
        return run_figures(Some(section));
    }

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
        "--profile",
        "profiling",
        "--package",
        "sitebucket-bench",
        "--features",
        "json-crates",
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

    run_figures(None)
}

/// `cargo xtask soak --minutes N --streams K --driver thread|mio|smol|tokio [--seed S]
/// [--allocator jemalloc|system]`: the soak (see `crates/sitebucket-soak`), built in release
/// mode. One client process runs K streams through the `Monitor` for N minutes against a child
/// server process that injects seeded faults on every connection; it prints a progress line
/// every 10 s, then a table, the check of every message and every reconnect, and writes a plot
/// and logs under `target/soak/`. Exits non-zero when a target is missed. The client runs on
/// jemalloc, as the `sitebucket` binary does, unless `--allocator system` asks for the system's.
fn soak(args: &[String]) -> Result<(), String> {
    const USAGE: &str = "usage: cargo xtask soak --minutes N --streams K --driver thread|mio|smol|tokio [--seed S] [--allocator jemalloc|system]";
    let mut given = Vec::new();
    let mut passed = Vec::new();
    let mut system_allocator = false;
    for pair in args.chunks(2) {
        let [flag, value] = pair else {
            return Err(format!("{} needs a value; {USAGE}", pair[0]));
        };
        if flag == "--allocator" {
            system_allocator = match value.as_str() {
                "jemalloc" => false,
                "system" => true,
                other => {
                    return Err(format!(
                        "--allocator is jemalloc or system, not {other:?}; {USAGE}"
                    ));
                }
            };
            continue;
        }
        if !["--minutes", "--streams", "--driver", "--seed"].contains(&flag.as_str()) {
            return Err(format!("unknown option {flag}; {USAGE}"));
        }
        given.push(flag.as_str());
        passed.extend([flag.clone(), value.clone()]);
    }
    for required in ["--minutes", "--streams", "--driver"] {
        if !given.contains(&required) {
            return Err(format!("{required} is required; {USAGE}"));
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("xtask has no parent directory")?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from);
    let mut soak = cargo();
    soak.args([
        "run",
        "--quiet",
        "--release",
        "--package",
        "sitebucket-soak",
        "--bin",
        "soak",
    ]);
    if system_allocator {
        soak.arg("--no-default-features");
    }
    soak.arg("--")
        .arg("run")
        .args(passed)
        .arg("--out")
        .arg(target.join("soak"));
    run(soak)
}
