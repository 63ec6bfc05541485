//! `soak`: the client (`soak run ...`, sampled) and, as its child process, the fault
//! injecting server (`soak serve ...`). Run it through `cargo xtask soak`; see the crate
//! docs and `--help`.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sitebucket_proto::{
    BackoffPolicy, Config, Credentials, Framing, SiteStream, StreamError, StreamEvent,
    TwitterBackoff,
};
use sitebucket_soak::check::{self, ClientAttempt, ServerAttempt};
use sitebucket_soak::plan::{Planner, Timing};
use sitebucket_soak::sample::{self, Sample};
use sitebucket_soak::wire::{self, Received};
use sitebucket_testserver::{Scenario, ServerOptions, TestServer};
use sitebucket_thread::sync::lock;
use sitebucket_thread::{Driver, Monitor, Observer, Parser};

const USAGE: &str = "usage: soak [run] --minutes N --streams K --driver thread|mio|smol|tokio [--seed S] [--out DIR] [--sample-every SECS] [--sabotage early|lose|alter|driver]
       soak serve --seed S --log PATH";

/// Runs shorter than this (seconds) report memory, fds and threads without judging them:
/// a process a few seconds old is still growing into its steady state.
const JUDGE_RESOURCES_AFTER: f64 = 120.0;

/// Counts the bytes the process holds live, then defers to [`INNER`]: each sample reports
/// the live heap beside RSS, telling a leak (both grow) from an allocator keeping freed pages
/// (RSS grows, the heap does not).
struct Counting;

/// The allocator under the count: jemalloc, as the `sitebucket` binary ships (the default
/// `jemalloc` feature), or the system's (`cargo xtask soak --allocator system`).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
const INNER: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(not(all(feature = "jemalloc", not(target_env = "msvc"))))]
const INNER: std::alloc::System = std::alloc::System;
/// Whether [`INNER`] is jemalloc, for the line that says what the memory figures describe.
const JEMALLOC: bool = cfg!(all(feature = "jemalloc", not(target_env = "msvc")));

static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);

#[allow(unsafe_code)]
// SAFETY: every method forwards to `INNER` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is `INNER`'s; the counter has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = INNER.alloc(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = INNER.alloc_zeroed(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = INNER.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        INNER.dealloc(ptr, layout);
        LIVE_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Users per stream: the monitor's `follow` limit, so K streams follow 100·K users.
const USERS_PER_STREAM: u64 = 100;
/// Stream `i` follows `FIRST_USER + 100·i + 1 ..= FIRST_USER + 100·(i+1)`.
const FIRST_USER: u64 = 1_000_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]).map(|()| true),
        Some("run") => run(&args[1..]),
        _ => run(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::from(2)
        }
    }
}

/// The monotonic clock and the wall clock read together: the pair of readings read closest
/// together of a few tries (a thread preempted between two readings would shift every time
/// converted with them by the preemption).
fn clock_pair() -> (Instant, f64) {
    let mut best: Option<(f64, Instant, f64)> = None;
    for _ in 0..5 {
        let before = unix_now();
        let now = Instant::now();
        let after = unix_now();
        let spread = after - before;
        if best.is_none_or(|(s, _, _)| spread < s) {
            best = Some((spread, now, (before + after) / 2.0));
        }
        if spread < 20e-6 {
            break;
        }
    }
    best.map_or_else(
        || (Instant::now(), unix_now()),
        |(_, now, unix)| (now, unix),
    )
}

/// Seconds since the Unix epoch, to the microsecond.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

// ---------------------------------------------------------------- the server process

/// Each attempt's fault and framed messages, noted as its plan is made.
type PlanBook = Arc<Mutex<HashMap<usize, (&'static str, u64)>>>;

/// Runs the plain and the TLS server until stdin closes. Prints `plain URL`, `tls URL`,
/// `ca PATH` and `ready`; on `freeze PATH` drops every connection, writes the log of every
/// attempt to PATH and prints `frozen SECONDS`. Attempts are logged as they end (to
/// PATH's temporary file), so the server's memory does not grow with the run.
fn serve(args: &[String]) -> Result<(), String> {
    let (seed, log_path) = match args {
        [flag, seed, log_flag, log] if flag == "--seed" && log_flag == "--log" => (
            seed.parse::<u64>().map_err(|_| USAGE.to_string())?,
            PathBuf::from(log),
        ),
        _ => return Err(USAGE.into()),
    };
    let epoch = Instant::now();
    // The same moment on the wall clock, so the client can place its own events on the
    // server's time line (both processes read this machine's clock).
    let epoch_unix = unix_now();
    let log = Arc::new(Mutex::new(BufWriter::new(
        File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?,
    )));
    let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut servers = Vec::new();
    let mut books: Vec<PlanBook> = Vec::new();
    for (server, options) in [(0u8, ServerOptions::plain()), (1, ServerOptions::tls())] {
        let planner = Planner::new(seed, server, Timing::default());
        let book: PlanBook = Arc::default();
        let noted = book.clone();
        let scenario = Scenario::generated(move |index| {
            let p = planner.plan(index);
            lock(&noted).insert(index, (p.fault.name(), p.messages));
            p.plan
        });
        let s = TestServer::start(scenario, options).map_err(|e| format!("server: {e}"))?;
        let (book_, log_, frozen_) = (book.clone(), log.clone(), frozen.clone());
        s.set_ended_hook(move |r| {
            if frozen_.load(Ordering::SeqCst) {
                return;
            }
            if let Some(line) = attempt_line(server, r, &book_, epoch) {
                let _ = writeln!(lock(&log_), "{line}");
            }
        });
        servers.push(s);
        books.push(book);
    }
    let mut out = std::io::stdout().lock();
    let say = |out: &mut dyn Write, line: String| {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    say(&mut out, format!("plain {}", servers[0].url()));
    say(&mut out, format!("tls {}", servers[1].url()));
    let ca = servers[1].ca_path().map(|p| p.display().to_string());
    say(&mut out, format!("ca {}", ca.unwrap_or_default()));
    say(&mut out, format!("epoch {epoch_unix:.6}"));
    say(&mut out, "ready".into());
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Some(path) = line.strip_prefix("freeze ") else {
            break;
        };
        let frozen_at = epoch.elapsed().as_secs_f64();
        // From here on the log is this snapshot: attempts that ended were logged by the
        // hook; every other attempt (open, or ending from here on) is logged now, as it
        // stands. An attempt's note leaves its book once, so no attempt is logged twice.
        frozen.store(true, Ordering::SeqCst);
        for s in &servers {
            s.kill_connections();
        }
        let mut log = lock(&log);
        for (server, s) in servers.iter().enumerate() {
            for r in s.attempts().iter() {
                let Some(line) = attempt_line(server as u8, r, &books[server], epoch) else {
                    continue;
                };
                writeln!(log, "{line}").map_err(|e| format!("{}: {e}", log_path.display()))?;
            }
        }
        log.flush()
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        drop(log);
        std::fs::rename(&log_path, path)
            .map_err(|e| format!("{} to {path}: {e}", log_path.display()))?;
        say(&mut out, format!("frozen {frozen_at:.6}"));
    }
    Ok(())
}

/// One attempt's line of the server log, taking its plan's note out of the book; `None`
/// when the note is gone (the attempt was logged already).
fn attempt_line(
    server: u8,
    r: &sitebucket_testserver::AttemptRecord,
    book: &PlanBook,
    epoch: Instant,
) -> Option<String> {
    let secs = |t: Instant| t.saturating_duration_since(epoch).as_secs_f64();
    let stream = r
        .query_param("follow")
        .and_then(|f| f.split(',').filter_map(|id| id.parse::<u64>().ok()).min());
    let (fault, messages) = lock(book).remove(&r.index)?;
    Some(
        ServerAttempt {
            server,
            index: r.index as u64,
            stream,
            status: r.status,
            fault: fault.to_string(),
            planned: messages,
            sent: r.messages_sent,
            at: secs(r.at),
            request_at: r.request_at.map(secs),
            last_sent_at: r.last_sent_at.map(secs),
            ended_at: r.ended_at.map(secs),
            longest_gap: (r.longest_send_gap.0.as_secs_f64(), r.longest_send_gap.1),
        }
        .to_line(),
    )
}

// ---------------------------------------------------------------- the client process

struct Args {
    minutes: f64,
    streams: u64,
    driver: String,
    seed: u64,
    out: PathBuf,
    sample_every: f64,
    sabotage: Option<Sabotage>,
}

/// A fault planted in the client, to prove the check catches it (the soak's own tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sabotage {
    /// The client's waits are halved: reconnects come early.
    Early,
    /// The client's log skips one soak message (the first from the 50th message on).
    Lose,
    /// One soak message (the first from the 50th on) has a byte flipped before it is read.
    Alter,
    /// The client's log places the end of each backoff one wait later than the core
    /// scheduled it: reconnects come before it, as from a driver that ignored the deadline.
    Driver,
}

/// Which message `Lose` and `Alter` spoil.
const SPOILED: u64 = 50;

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        minutes: 1.0,
        streams: 10,
        driver: "mio".into(),
        seed: 1,
        out: PathBuf::from("target/soak"),
        sample_every: 10.0,
        sabotage: None,
    };
    for pair in args.chunks(2) {
        let [flag, value] = pair else {
            return Err(format!("{} needs a value\n{USAGE}", pair[0]));
        };
        let bad = || format!("{flag} {value}: not a valid value\n{USAGE}");
        match flag.as_str() {
            "--minutes" => a.minutes = value.parse().map_err(|_| bad())?,
            "--streams" => a.streams = value.parse().map_err(|_| bad())?,
            "--driver" => a.driver = value.clone(),
            "--seed" => a.seed = value.parse().map_err(|_| bad())?,
            "--out" => a.out = PathBuf::from(value),
            "--sample-every" => a.sample_every = value.parse().map_err(|_| bad())?,
            "--sabotage" => {
                a.sabotage = Some(match value.as_str() {
                    "early" => Sabotage::Early,
                    "lose" => Sabotage::Lose,
                    "alter" => Sabotage::Alter,
                    "driver" => Sabotage::Driver,
                    _ => return Err(bad()),
                })
            }
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if !(a.minutes > 0.0 && a.minutes.is_finite()) || a.streams == 0 || a.sample_every <= 0.0 {
        return Err(format!(
            "--minutes, --streams and --sample-every must be positive\n{USAGE}"
        ));
    }
    Ok(a)
}

fn run(args: &[String]) -> Result<bool, String> {
    let a = parse_args(args)?;
    match a.driver.as_str() {
        "thread" | "std" => run_with(sitebucket_std::StdDriver::new(), &a),
        "mio" => run_with(sitebucket_mio::MioDriver::new(), &a),
        "smol" => run_with(sitebucket_smol::SmolDriver::new(), &a),
        "tokio" => run_with(sitebucket_tokio::TokioDriver::new(), &a),
        other => Err(format!(
            "unknown driver {other:?}: thread, mio, smol or tokio\n{USAGE}"
        )),
    }
}

/// Counts shared by every stream.
#[derive(Default)]
struct Totals {
    messages: AtomicU64,
    reconnects: AtomicU64,
    sabotage: Option<Sabotage>,
    /// The sabotage was done.
    spoiled: std::sync::atomic::AtomicBool,
}

/// One monitored stream's view: what it received of each attempt, checked as it comes.
struct Tracker {
    id: u64,
    totals: Arc<Totals>,
    log: Arc<Mutex<BufWriter<File>>>,
    /// The connection events log (see [`check::ClientEvent`]).
    events: Arc<Mutex<BufWriter<File>>>,
    /// The server's epoch on the wall clock: event times are logged as server seconds.
    epoch_unix: f64,
    state: Mutex<Track>,
}

#[derive(Default)]
struct Track {
    /// A `200` connection is open.
    open: bool,
    /// `Disconnected` events seen.
    disconnects: u64,
    current: Option<ClientAttempt>,
    next_n: u64,
    /// Messages other than `disconnect` messages since the last `200` head.
    since_connected: u64,
    /// A failure was announced and the end of its backoff is not logged yet.
    awaiting_until: bool,
    /// A `200` head was announced and the core's time for it is not logged yet.
    awaiting_head: bool,
    /// The wait announced last (seconds), for the `driver` sabotage.
    last_retry_in: f64,
}

impl Tracker {
    fn flush(&self, track: &mut Track, end: &str) {
        if let Some(mut c) = track.current.take() {
            c.end = end.to_string();
            let _ = writeln!(lock(&self.log), "{}", c.to_line());
        }
    }

    fn begin(&self, track: &mut Track, server: u8, attempt: u64) {
        if track
            .current
            .as_ref()
            .is_some_and(|c| c.server == server && c.attempt == attempt)
        {
            return;
        }
        self.flush(track, "next attempt without a disconnect event");
        track.current = Some(ClientAttempt {
            tracker: self.id,
            server,
            attempt,
            soak: 0,
            disconnects: 0,
            altered: 0,
            reordered: 0,
            end: String::new(),
        });
        track.next_n = 0;
    }

    fn message(&self, m: &[u8]) {
        let count = self.totals.messages.fetch_add(1, Ordering::Relaxed) + 1;
        let mut track = lock(&self.state);
        let mut spoiled;
        let mut m = m;
        if count >= SPOILED
            && self.totals.sabotage.is_some()
            && m.starts_with(b"{\"soak\"")
            && !self.totals.spoiled.swap(true, Ordering::Relaxed)
        {
            match self.totals.sabotage {
                Some(Sabotage::Lose) => return,
                Some(Sabotage::Alter) => {
                    spoiled = m.to_vec();
                    let last = spoiled.len() - 30;
                    spoiled[last] ^= 1;
                    m = &spoiled;
                }
                _ => {}
            }
        }
        let received = wire::read(m);
        if !matches!(received, Received::Disconnect) {
            track.since_connected += 1;
        }
        match received {
            Received::Soak { server, attempt, n } => {
                self.begin(&mut track, server, attempt);
                let expected = track.next_n;
                track.next_n = n + 1;
                if let Some(c) = &mut track.current {
                    if n == expected {
                        c.soak += 1;
                    } else {
                        c.reordered += 1;
                    }
                }
            }
            Received::Altered { server, attempt } => {
                // An attempt that cannot be read is logged under server 255, which the
                // check reports as unknown.
                self.begin(&mut track, server.unwrap_or(255), attempt.unwrap_or(0));
                if let Some(c) = &mut track.current {
                    c.altered += 1;
                }
            }
            Received::Disconnect => {
                if let Some(c) = &mut track.current {
                    c.disconnects += 1;
                }
            }
            Received::Other => {
                self.begin(&mut track, 255, 0);
                if let Some(c) = &mut track.current {
                    c.altered += 1;
                }
            }
        }
    }
}

impl Tracker {
    /// An instant of this process on the server's clock (seconds since its epoch).
    fn server_secs(&self, at: Instant) -> f64 {
        let (now, unix) = clock_pair();
        let unix_at = if at >= now {
            unix + (at - now).as_secs_f64()
        } else {
            unix - (now - at).as_secs_f64()
        };
        unix_at - self.epoch_unix
    }
}

impl Observer for Tracker {
    fn event(&self, event: &StreamEvent) {
        let at = unix_now() - self.epoch_unix;
        let mut track = lock(&self.state);
        let what = match event {
            StreamEvent::Connected { status, .. } => {
                Some(check::ClientEventKind::Connected { status: *status })
            }
            StreamEvent::Disconnected { error, retry_in } => {
                let status = match error {
                    StreamError::Status { status, .. } => Some(*status),
                    _ => None,
                };
                track.last_retry_in = retry_in.as_secs_f64();
                Some(check::ClientEventKind::Disconnected {
                    kind: check::Kind::of_status(status),
                    retry_in: retry_in.as_secs_f64(),
                    messages: track.since_connected,
                    error: error.to_string(),
                })
            }
            _ => None,
        };
        if let Some(what) = what {
            let e = check::ClientEvent {
                tracker: self.id,
                at,
                what,
            };
            let _ = writeln!(lock(&self.events), "{}", e.to_line());
        }
        match event {
            StreamEvent::Connected { status: 200, .. } => {
                track.open = true;
                track.since_connected = 0;
                track.awaiting_head = true;
            }
            StreamEvent::Disconnected { error, .. } => {
                track.awaiting_until = true;
                self.totals.reconnects.fetch_add(1, Ordering::Relaxed);
                track.open = false;
                track.disconnects += 1;
                self.flush(&mut track, &error.to_string());
            }
            _ => {}
        }
    }

    /// After a failure, the core's own end of the backoff (its `deadline()` while it backs
    /// off: then it has scheduled as many reconnects as it started attempts), logged as
    /// server seconds: the exact instant before which a reconnect would be early.
    fn drained(&self, stream: &SiteStream) {
        let mut track = lock(&self.state);
        if std::mem::take(&mut track.awaiting_head) && stream.is_established() {
            // The head's time on the core's clock: the last byte handed in before this
            // drain (a driver that yields between a read and its drain reports it late).
            if let Some(at) = stream.stats().last_byte_at {
                let e = check::ClientEvent {
                    tracker: self.id,
                    at: self.server_secs(at),
                    what: check::ClientEventKind::HeadAt,
                };
                let _ = writeln!(lock(&self.events), "{}", e.to_line());
            }
        }
        if !track.awaiting_until {
            return;
        }
        track.awaiting_until = false;
        let stats = stream.stats();
        let Some(until) = stream
            .deadline()
            .filter(|_| stats.attempts == stats.reconnects)
        else {
            // The backoff had already ended when the driver reported (a short wait and a
            // busy loop): the reconnect is under way and cannot be placed exactly.
            return;
        };
        let mut until = self.server_secs(until);
        if self.totals.sabotage == Some(Sabotage::Driver) {
            until += track.last_retry_in;
        }
        let e = check::ClientEvent {
            tracker: self.id,
            at: until,
            what: check::ClientEventKind::BackoffUntil,
        };
        let _ = writeln!(lock(&self.events), "{}", e.to_line());
    }
}

struct TrackerParser(Arc<Tracker>);

impl Parser for TrackerParser {
    fn parse(&mut self, message: Bytes) {
        self.0.message(&message);
    }
}

/// The server child and its pipes.
struct ServerChild {
    child: Child,
    stdin: ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl ServerChild {
    fn start(seed: u64, log: &Path) -> Result<(Self, HashMap<String, String>), String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(exe)
            .args(["serve", "--seed", &seed.to_string(), "--log"])
            .arg(log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting the server process: {e}"))?;
        let stdin = child.stdin.take().ok_or("no server stdin")?;
        let stdout = child.stdout.take().ok_or("no server stdout")?;
        let mut server = ServerChild {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        };
        let mut said = HashMap::new();
        loop {
            let line = server.line()?;
            if line == "ready" {
                break;
            }
            if let Some((k, v)) = line.split_once(' ') {
                said.insert(k.to_string(), v.to_string());
            }
        }
        Ok((server, said))
    }

    fn line(&mut self) -> Result<String, String> {
        match self.lines.next() {
            Some(Ok(line)) => Ok(line),
            _ => Err("the server process ended early".into()),
        }
    }

    fn freeze(&mut self, log: &Path) -> Result<f64, String> {
        writeln!(self.stdin, "freeze {}", log.display())
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("telling the server to freeze: {e}"))?;
        let line = self.line()?;
        line.strip_prefix("frozen ")
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| format!("the server answered {line:?} to freeze"))
    }

    fn stop(mut self) {
        let _ = writeln!(self.stdin, "exit");
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

fn timing_config(t: &Timing, url: &str, ca: Option<&str>, seed: u64) -> Result<Config, String> {
    let c = sitebucket_testserver::Credentials::test_default();
    let credentials = Credentials::new(
        c.consumer_key.as_str(),
        c.consumer_secret.as_str(),
        c.token.as_str(),
        c.token_secret.as_str(),
    );
    let mut b = Config::builder([1], credentials)
        .url(url)
        .gzip(true)
        .stall_timeout(t.stall_timeout)
        .jitter(None)
        .rng_seed(seed)
        .trust_after(t.trust_after)
        .rate_limit_reset_after(t.rate_limit_reset_after)
        .backoff(BackoffPolicy::Twitter(TwitterBackoff {
            network_step: t.network_step,
            network_max: t.network_max,
            http_start: t.http_start,
            http_max: t.http_max,
            rate_limit_start: t.rate_limit_start,
            rate_limit_max: t.rate_limit_max,
        }));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(|e| format!("{ca}: {e}"))?;
        b = b.extra_root_certs_pem(pem).framing(Framing::Length);
    }
    b.build().map_err(|e| format!("config: {e}"))
}

fn run_with<D: Driver>(driver: D, a: &Args) -> Result<bool, String> {
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let name = format!(
        "{}-{}x{}m-seed{}",
        driver.name(),
        a.streams,
        a.minutes,
        a.seed
    );
    let client_log_path = a.out.join(format!("{name}.client.tsv"));
    let events_path = a.out.join(format!("{name}.events.tsv"));
    let server_log_path = a.out.join(format!("{name}.server.tsv"));
    let timing = Timing::default();
    let (mut server, said) =
        ServerChild::start(a.seed, &a.out.join(format!("{name}.server.tsv.part")))?;
    let plain_url = said.get("plain").ok_or("the server gave no plain URL")?;
    let tls_url = said.get("tls").ok_or("the server gave no TLS URL")?;
    let ca = said.get("ca").ok_or("the server gave no CA")?;
    let epoch_unix: f64 = said
        .get("epoch")
        .and_then(|e| e.parse().ok())
        .ok_or("the server gave no epoch")?;
    let events = Arc::new(Mutex::new(BufWriter::new(
        File::create(&events_path).map_err(|e| format!("{}: {e}", events_path.display()))?,
    )));
    let log = Arc::new(Mutex::new(BufWriter::new(
        File::create(&client_log_path)
            .map_err(|e| format!("{}: {e}", client_log_path.display()))?,
    )));
    let totals = Arc::new(Totals {
        sabotage: a.sabotage,
        ..Totals::default()
    });
    if let Some(sabotage) = a.sabotage {
        println!("soak: sabotaged ({sabotage:?}) to prove the check: this run must FAIL");
    }
    let trackers: Arc<Mutex<Vec<Arc<Tracker>>>> = Arc::default();
    let tls_streams = a.streams / 4;
    let plain_streams = a.streams - tls_streams;
    println!(
        "soak: {} streams on {} ({} plain, {} TLS with delimited=length), {} min, seed {}; gzip, deflate or identity per connection; faults on every connection",
        a.streams,
        driver.name(),
        plain_streams,
        tls_streams,
        a.minutes,
        a.seed
    );
    println!(
        "soak: memory figures are of {}",
        sample::allocator(JEMALLOC, std::env::vars())
    );
    println!(
        "soak: Twitter's waits scaled down: network {:?} steps to {:?}, HTTP {:?} to {:?}, 420/429 {:?} to {:?}, stall {:?}, trust after {:?}, 420 forgotten after {:?}",
        timing.network_step,
        timing.network_max,
        timing.http_start,
        timing.http_max,
        timing.rate_limit_start,
        timing.rate_limit_max,
        timing.stall_timeout,
        timing.trust_after,
        timing.rate_limit_reset_after
    );
    // Each stream holds a socket in the client (and the server child one or two): refuse a
    // run the fd limit cannot hold, rather than fail mid-run with connect errors.
    if let Some(limit) = sample::fd_limit("self") {
        let need = 2 * a.streams + 256;
        if limit < need {
            return Err(format!(
                "the open-file limit is {limit}, and {} streams need about {need}: raise it (ulimit -n {need}) and run again",
                a.streams
            ));
        }
    }
    let load_start = sample::load_average();
    let (_, _, _, cpu0) = sample::read_proc("self")?;
    let mut monitors = Vec::new();
    let mut next_stream = 0u64;
    for (count, url, ca, seed) in [
        (plain_streams, plain_url, None, a.seed),
        (tls_streams, tls_url, Some(ca.as_str()), a.seed ^ 0x5eed),
    ] {
        if count == 0 {
            continue;
        }
        let client_timing = if a.sabotage == Some(Sabotage::Early) {
            Timing {
                network_step: timing.network_step / 2,
                http_start: timing.http_start / 2,
                rate_limit_start: timing.rate_limit_start / 2,
                ..timing.clone()
            }
        } else {
            timing.clone()
        };
        let template = timing_config(&client_timing, url, ca, seed)?;
        let pending: Arc<Mutex<Option<Arc<Tracker>>>> = Arc::default();
        let (t, l, p, r, ev) = (
            totals.clone(),
            log.clone(),
            pending.clone(),
            trackers.clone(),
            events.clone(),
        );
        let parsers = move || -> Box<dyn Parser> {
            let mut all = lock(&r);
            let tracker = Arc::new(Tracker {
                id: all.len() as u64,
                totals: t.clone(),
                log: l.clone(),
                events: ev.clone(),
                epoch_unix,
                state: Mutex::default(),
            });
            all.push(tracker.clone());
            *lock(&p) = Some(tracker.clone());
            Box::new(TrackerParser(tracker))
        };
        let monitor = Monitor::new(driver.clone(), template, parsers);
        // The monitor makes a stream's parser, then its observer: pair them.
        monitor.set_observers(move |_number| -> Arc<dyn Observer> {
            match lock(&pending).take() {
                Some(tracker) => tracker,
                None => Arc::new(NoObserver),
            }
        });
        let users: Vec<u64> = (next_stream * USERS_PER_STREAM + 1
            ..=(next_stream + count) * USERS_PER_STREAM)
            .map(|u| FIRST_USER + u)
            .collect();
        next_stream += count;
        monitor
            .add_follows(&users)
            .map_err(|e| format!("starting the streams: {e}"))?;
        monitor.run_every(sitebucket_thread::CHECK_INTERVAL);
        monitors.push(monitor);
    }
    let started = Instant::now();
    let run_for = Duration::from_secs_f64(a.minutes * 60.0);
    let every = Duration::from_secs_f64(a.sample_every);
    let mut samples = Vec::new();
    let take = |t: f64| -> Result<Sample, String> {
        let (rss_kib, fds, threads, cpu) = sample::read_proc("self")?;
        let up = lock(&trackers)
            .iter()
            .filter(|t| lock(&t.state).open)
            .count() as u64;
        Ok(Sample {
            t,
            rss_kib,
            heap_kib: LIVE_BYTES.load(Ordering::Relaxed) / 1024,
            fds,
            threads,
            up,
            reconnects: totals.reconnects.load(Ordering::Relaxed),
            messages: totals.messages.load(Ordering::Relaxed),
            cpu: cpu - cpu0,
        })
    };
    let mut next = started;
    loop {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        }
        let s = take(started.elapsed().as_secs_f64())?;
        let rate = |now: u64, before: u64, dt: f64| (now - before) as f64 / dt.max(1e-9);
        let (dr, dm) = samples.last().map_or((0.0, 0.0), |p: &Sample| {
            (
                rate(s.reconnects, p.reconnects, s.t - p.t),
                rate(s.messages, p.messages, s.t - p.t),
            )
        });
        println!(
            "soak {:>6.0} s: rss {:>7.1} MiB  heap {:>7.1} MiB  fds {:>5}  threads {:>4}  up {:>5}/{}  reconnects {:>7} ({:>5.0}/s)  messages {:>9} ({:>6.0}/s)  cpu {:>7.1} s",
            s.t,
            s.rss_kib as f64 / 1024.0,
            s.heap_kib as f64 / 1024.0,
            s.fds,
            s.threads,
            s.up,
            a.streams,
            s.reconnects,
            dr,
            s.messages,
            dm,
            s.cpu
        );
        samples.push(s);
        if started.elapsed() >= run_for {
            break;
        }
        next += every;
        if next > started + run_for {
            next = started + run_for;
        }
    }
    // The end: the server drops every connection and writes its log; each stream that was
    // connected drains what was sent before its connection ended; then the client stops.
    let open_before: Vec<(Arc<Tracker>, u64)> = lock(&trackers)
        .iter()
        .filter_map(|t| {
            let s = lock(&t.state);
            s.open.then(|| (t.clone(), s.disconnects))
        })
        .collect();
    let frozen_at = server.freeze(&server_log_path)?;
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    let mut undrained = open_before.len();
    while Instant::now() < drain_deadline {
        undrained = open_before
            .iter()
            .filter(|(t, d)| lock(&t.state).disconnects == *d)
            .count();
        if undrained == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for m in &monitors {
        m.disconnect();
    }
    let failed_streams: usize = monitors.iter().map(|m| m.failed().len()).sum();
    drop(monitors);
    for t in lock(&trackers).iter() {
        t.flush(&mut lock(&t.state), "stopped at the end of the soak");
    }
    lock(&log)
        .flush()
        .map_err(|e| format!("{}: {e}", client_log_path.display()))?;
    lock(&events)
        .flush()
        .map_err(|e| format!("{}: {e}", events_path.display()))?;
    server.stop();

    // The check.
    let read = |path: &Path| -> Result<Vec<String>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(text.lines().map(str::to_string).collect())
    };
    let server_log: Vec<ServerAttempt> = read(&server_log_path)?
        .iter()
        .map(|l| ServerAttempt::from_line(l))
        .collect::<Result<_, _>>()?;
    let client_log: Vec<ClientAttempt> = read(&client_log_path)?
        .iter()
        .map(|l| ClientAttempt::from_line(l))
        .collect::<Result<_, _>>()?;
    let stream_name = |first_user: u64| {
        let i = (first_user - FIRST_USER - 1) / USERS_PER_STREAM;
        format!(
            "stream {} (users {}..={})",
            i + 1,
            first_user,
            first_user + USERS_PER_STREAM - 1
        )
    };
    let verdict = check::check(&server_log, &client_log, &timing, frozen_at, &stream_name);
    let client_events: Vec<check::ClientEvent> = read(&events_path)?
        .iter()
        .map(|l| check::ClientEvent::from_line(l))
        .collect::<Result<_, _>>()?;
    let announced = check::check_announced(
        &client_events,
        &server_log,
        &verdict.tracker_stream,
        &timing,
        frozen_at,
        &stream_name,
    );
    let warmup = (a.minutes * 60.0 * 0.1)
        .max(30.0)
        .min(a.minutes * 60.0 / 2.0);
    let slack = 16 + a.streams / 50;
    let resources = sample::resources(&samples, warmup, slack);

    // The report.
    println!(
        "\n{:>7} {:>9} {:>9} {:>6} {:>7} {:>6} {:>10} {:>11} {:>8}",
        "t (s)", "RSS MiB", "heap MiB", "fds", "threads", "up", "reconnects", "messages", "cpu s"
    );
    for s in &samples {
        println!(
            "{:>7.0} {:>9.1} {:>9.1} {:>6} {:>7} {:>6} {:>10} {:>11} {:>8.1}",
            s.t,
            s.rss_kib as f64 / 1024.0,
            s.heap_kib as f64 / 1024.0,
            s.fds,
            s.threads,
            s.up,
            s.reconnects,
            s.messages,
            s.cpu
        );
    }
    let last = samples.last().copied().ok_or("no sample")?;
    let per_message = last.cpu / (last.messages.max(1) as f64) * 1e6;
    println!();
    println!(
        "attempts by fault: {}",
        verdict
            .faults
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "connection attempts {} ({} ended and checked), reconnects {}, messages received {} ({:.0}/s)",
        verdict.attempts,
        verdict.ended,
        last.reconnects,
        last.messages,
        last.messages as f64 / last.t.max(1e-9)
    );
    println!(
        "messages written in full by the server {}, received {}: lost {}, duplicated attempts {}, altered {}, reordered {}",
        verdict.sent, verdict.received, verdict.lost, verdict.duplicated, verdict.altered, verdict.reordered
    );
    if verdict.server_pauses > 0 {
        println!(
            "server starved: {} attempts paused longer than the stall timeout between two writes; the client rightly gave them up, and the {} messages written after the pauses are not counted as lost",
            verdict.server_pauses, verdict.cut_by_pauses
        );
    }
    println!(
        "reconnect waits the client announced, checked against the policy (the client's view of each connection) {}: shorter {} (420/429 among them {}; longer than the lenient model {}; unplaced {})",
        announced.decisions,
        announced.short,
        announced.rate_limited,
        announced.long,
        announced.unplaced
    );
    println!(
        "reconnects checked against the end of the backoff the core scheduled {}: early {} (tightest margin {:+.3} s, tolerance {:?}); scheduled later than announced {}; not placed (the backoff had ended before the driver reported it) {}",
        announced.gaps,
        announced.early,
        announced.tightest.unwrap_or(0.0),
        check::TOLERANCE,
        announced.misannounced,
        announced.uncaptured
    );
    println!(
        "by the server's clock and its view of each connection alone: {} of {} gaps shorter than the policy's wait (tightest margin {:+.3} s, tolerance {:?}; information: a client that read a close late saw the connection up longer)",
        verdict.early,
        verdict.gaps,
        verdict.tightest.unwrap_or(0.0),
        check::TOLERANCE
    );
    for e in verdict.early_examples.iter().take(5) {
        println!("  {e}");
    }
    let after_warmup = samples.iter().filter(|s| s.t >= warmup);
    let span = |f: fn(&Sample) -> u64| {
        let values: Vec<u64> = after_warmup.clone().map(f).collect();
        (
            values.iter().copied().min().unwrap_or(0),
            values.iter().copied().max().unwrap_or(0),
        )
    };
    let (fds_min, fds_max) = span(|s| s.fds);
    let (threads_min, threads_max) = span(|s| s.threads);
    let first = samples.first().copied().ok_or("no sample")?;
    println!(
        "RSS at start {:.1} MiB, after warm-up {:.1} MiB, at the end {:.1} MiB; open fds after warm-up min {fds_min} max {fds_max}, threads min {threads_min} max {threads_max}",
        first.rss_kib as f64 / 1024.0,
        resources.rss.0 as f64 / 1024.0,
        last.rss_kib as f64 / 1024.0,
    );
    println!(
        "live heap after warm-up {:.1} → {:.1} MiB ({:+.1}%): {}",
        resources.heap.0 as f64 / 1024.0,
        resources.heap.1 as f64 / 1024.0,
        resources.heap_growth,
        if resources.rss_growth >= 5.0 && resources.heap_growth < resources.rss_growth / 2.0 {
            "RSS grew while the heap in use did not keep up: the allocator keeping freed pages, not a leak"
        } else {
            "the heap in use, for telling a leak from the allocator keeping freed pages"
        }
    );
    println!(
        "load average (1 min) at start {}, at the end {} ({} cores)",
        load_start.map_or("?".to_string(), |l| format!("{l:.2}")),
        sample::load_average().map_or("?".to_string(), |l| format!("{l:.2}")),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "RSS after warm-up ({warmup:.0} s) {:.1} → {:.1} MiB ({:+.1}%), fds beyond connected streams {} → max {}, threads {} → max {}",
        resources.rss.0 as f64 / 1024.0,
        resources.rss.1 as f64 / 1024.0,
        resources.rss_growth,
        resources.fds.0,
        resources.fds.1,
        resources.threads.0,
        resources.threads.1
    );
    println!("CPU per message: {per_message:.1} µs (client process, user + system, TLS and gzip included)");
    let svg_path = a.out.join(format!("{name}.svg"));
    let samples_path = a.out.join(format!("{name}.samples.tsv"));
    std::fs::write(
        &svg_path,
        sample::svg(&samples, &format!("sitebucket soak: {name}")),
    )
    .map_err(|e| format!("{}: {e}", svg_path.display()))?;
    let mut tsv =
        String::from("t\trss_kib\theap_kib\tfds\tthreads\tup\treconnects\tmessages\tcpu_s\n");
    for s in &samples {
        tsv.push_str(&format!(
            "{:.1}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{:.2}\n",
            s.t, s.rss_kib, s.heap_kib, s.fds, s.threads, s.up, s.reconnects, s.messages, s.cpu
        ));
    }
    std::fs::write(&samples_path, tsv).map_err(|e| format!("{}: {e}", samples_path.display()))?;
    println!(
        "plot {}, samples {}, logs {} and {}",
        svg_path.display(),
        samples_path.display(),
        server_log_path.display(),
        client_log_path.display()
    );

    let mut failures: Vec<String> = verdict.failures.clone();
    failures.extend(announced.failures.iter().cloned());
    if a.minutes * 60.0 >= JUDGE_RESOURCES_AFTER {
        failures.extend(resources.failures.iter().cloned());
    } else {
        for f in &resources.failures {
            println!("(not judged, the run is shorter than {JUDGE_RESOURCES_AFTER:.0} s: {f})");
        }
    }
    if undrained > 0 {
        failures.push(format!("{undrained} streams never saw their connection end after the server dropped every connection (30 s)"));
    }
    if failed_streams > 0 {
        failures.push(format!(
            "{failed_streams} streams were set aside by the monitor as failed for good"
        ));
    }
    if verdict.gaps == 0 || announced.gaps == 0 || announced.decisions == 0 {
        failures.push("no reconnect was checked against the policy: run longer".into());
    }
    let failures_path = a.out.join(format!("{name}.failures.txt"));
    std::fs::write(&failures_path, failures.join("\n") + "\n")
        .map_err(|e| format!("{}: {e}", failures_path.display()))?;
    if failures.is_empty() {
        println!("soak: PASS ({name})");
        Ok(true)
    } else {
        println!(
            "\nsoak: FAIL ({name}, seed {}): {} problems; replay with --seed {}",
            a.seed,
            failures.len(),
            a.seed
        );
        for f in failures.iter().take(50) {
            println!("  {f}");
        }
        if failures.len() > 50 {
            println!(
                "  … and {} more (all in {})",
                failures.len() - 50,
                failures_path.display()
            );
        }
        Ok(false)
    }
}

/// The observer of a stream whose parser was not made just before it (never expected).
struct NoObserver;

impl Observer for NoObserver {}
