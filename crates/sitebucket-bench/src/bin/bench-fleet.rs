//! The fleet figures (issue 17): real processes on loopback, a real `nats-server -js`.
//!
//! ```text
//! bench-fleet [--quick]
//! ```
//!
//! - **Into JetStream beside stdout.** `bench-server firehose --gate` serves the bench stream
//!   (one segment, no repeats: the stream's duplicate window would drop a repeated message).
//!   Round by round, the same stream goes to `sitebucket listen --driver tokio` writing to a
//!   pipe this process counts lines from, then through one `sitebucket fleet` worker (the
//!   same tokio driver, its Monitor, lease gate and publisher) into a fresh nats-server's
//!   JetStream stream, counted from the server's own stream state (`/jsz`). Each connection
//!   waits at the server's gate after the response head: the client's CPU is read from
//!   `/proc/<pid>/task/*/schedstat` once its start-up is over, the gate is opened, and read
//!   again when the last message is counted. CPU per message and messages per second, the
//!   median of the rounds; nats-server's CPU per message beside, for information.
//! - **Failover after `kill -9`.** Two workers with a 3 s lease TTL share 2,000 users on the
//!   test server (control streams); one is killed with SIGKILL and the time until every user
//!   is on exactly one live connection again is measured (as the black-box test measures it),
//!   with when the survivor took the last of the dead worker's shards (from its log).
//!
//! `nats-server` must be on the PATH and `sitebucket` next to this binary (`cargo xtask bench`
//! builds it); without either, one `# fleet: not measured: ...` line says why.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sitebucket_bench::args::Args;
use sitebucket_bench::figure::{Figure, Op, Target};
use sitebucket_bench::os::{cpu_between, thread_cpu_ns};
use sitebucket_e2e::nats::{free_port, users, NatsServer};
use sitebucket_testserver::{
    AttemptPlan, Credentials, End, Scenario, ServerOptions, Step, TestServer,
};

/// The bench stream's seed (the other loopback figures').
const SEED: u64 = 20_240_601;
/// The output stream the workers create.
const STREAM: &str = "SITEBUCKET";
/// The one user the throughput rounds follow (the bench server ignores who is followed).
const USER: &str = "783214";
/// Shards of the fleet (the default).
const SHARDS: u64 = 64;
/// The failover runs' lease TTL: the black-box tests'.
const FAILOVER_TTL: Duration = Duration::from_secs(3);
/// Users of the failover runs: the black-box test's.
const FAILOVER_USERS: usize = 2_000;
/// The paced rounds' rate, messages per second: what the worker sustains with room to spare
/// on a loaded 2-core machine (it reaches about 30,000 there), a tenth of what stdout can.
const PACED_RATE: u64 = 10_000;
/// How long a client may take for the whole stream before the round gives up.
const ROUND_LIMIT: Duration = Duration::from_secs(180);
/// How long a client gets to start up before the gate opens.
const SETTLE: Duration = Duration::from_millis(500);

struct Plan {
    bytes: u64,
    rounds: usize,
    failovers: usize,
}

fn main() {
    let args = Args::from_env();
    let plan = if args.has("--quick") {
        Plan {
            bytes: 48 << 20,
            rounds: 3,
            failovers: 1,
        }
    } else {
        Plan {
            bytes: 192 << 20,
            rounds: 5,
            failovers: 3,
        }
    };
    if !Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        println!("# fleet: not measured: nats-server not found (apt-get install -y nats-server)");
        return;
    }
    let bin = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| fail("cannot find the bench binaries"));
    let sitebucket = bin.join("sitebucket");
    if !sitebucket.exists() {
        println!(
            "# fleet: not measured: {} not found (cargo build --profile profiling -p sitebucket-cli)",
            sitebucket.display()
        );
        return;
    }
    throughput(&bin, &sitebucket, &plan, None);
    throughput(&bin, &sitebucket, &plan, Some(PACED_RATE));
    failover(&sitebucket, &plan);
}

/// `bench-server firehose --gate`: its stdin (a `go` line opens the gate), and its `waiting`
/// lines.
struct GatedServer {
    child: Child,
    stdin: ChildStdin,
    waiting: Receiver<()>,
    addr: String,
    messages: u64,
}

impl GatedServer {
    fn start(bin: &Path, bytes: u64, rate: Option<u64>) -> Self {
        let bytes = bytes.to_string();
        let mut command = Command::new(bin.join("bench-server"));
        command
            .args(["firehose", "--seed", &SEED.to_string()])
            .args(["--segment-bytes", &bytes, "--bytes", &bytes, "--gate"]);
        if let Some(rate) = rate {
            command.args(["--rate", &rate.to_string()]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("starting bench-server: {e}")));
        let stdin = child.stdin.take().expect("piped stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = match lines.next() {
            Some(Ok(line)) if line.starts_with("listening ") => line,
            other => fail(&format!("bench-server said {other:?}")),
        };
        let (tx, waiting) = mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line == "waiting" && tx.send(()).is_err() {
                    break;
                }
            }
        });
        let field = |key: &str| {
            first
                .split_whitespace()
                .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        GatedServer {
            addr: first
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned(),
            messages: field("messages"),
            child,
            stdin,
            waiting,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/1.1/site.json", self.addr)
    }

    /// Forgets connections that waited before now (a client that reconnected after the
    /// stream's final `disconnect`, before it was stopped).
    fn forget_waiting(&self) {
        std::thread::sleep(Duration::from_millis(200));
        while self.waiting.try_recv().is_ok() {}
    }

    /// Waits for a connection at the gate.
    fn wait_for_connection(&self, what: &str) {
        if self.waiting.recv_timeout(Duration::from_secs(60)).is_err() {
            fail(&format!("{what} did not connect to bench-server in 60 s"));
        }
    }

    fn go(&mut self) {
        if writeln!(self.stdin, "go")
            .and_then(|()| self.stdin.flush())
            .is_err()
        {
            fail("bench-server is gone");
        }
    }
}

impl Drop for GatedServer {
    fn drop(&mut self) {
        // Its stdin closes with it: it exits.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The credentials every `sitebucket` process here signs with (the servers do not check).
fn with_credentials(command: &mut Command) -> &mut Command {
    let credentials = Credentials::test_default();
    command
        .env("SITEBUCKET_CONSUMER_KEY", &credentials.consumer_key)
        .env("SITEBUCKET_CONSUMER_SECRET", &credentials.consumer_secret)
        .env("SITEBUCKET_TOKEN", &credentials.token)
        .env("SITEBUCKET_TOKEN_SECRET", &credentials.token_secret)
}

/// A child's stderr, line by line with when each line arrived, kept for reading.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(Instant, String)>>>);

impl Log {
    fn of(child: &mut Child) -> Self {
        let log = Log::default();
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = log.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((Instant::now(), line));
            }
        });
        log
    }

    fn lines(&self) -> Vec<(Instant, String)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn text(&self) -> String {
        let lines = self.lines();
        let from = lines.len().saturating_sub(30);
        lines[from..]
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The address of the worker's metrics, once it has logged it.
    fn metrics_addr(&self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            for (_, line) in self.lines() {
                if let Some(at) = line.find("serving metrics on http://") {
                    let rest = &line[at + "serving metrics on http://".len()..];
                    return Some(rest.split('/').next().unwrap_or_default().to_owned());
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// An HTTP GET on loopback; the body.
fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut socket = TcpStream::connect(addr).ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(socket, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    socket.read_to_string(&mut response).ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    Some(body.to_owned())
}

/// One unlabelled-by-kind value of a worker's Prometheus text (`name{worker="…"} value`).
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Messages in the JetStream stream `name`, from the server's monitoring endpoint.
fn stream_messages(monitor: &str, name: &str) -> Option<u64> {
    let body = http_get(monitor, "/jsz?streams=true")?;
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    fn find(value: &serde_json::Value, name: &str) -> Option<u64> {
        match value {
            serde_json::Value::Object(map) => {
                if map.get("name").and_then(|n| n.as_str()) == Some(name) {
                    if let Some(n) = map
                        .get("state")
                        .and_then(|s| s.get("messages"))
                        .and_then(|m| m.as_u64())
                    {
                        return Some(n);
                    }
                }
                map.values().find_map(|v| find(v, name))
            }
            serde_json::Value::Array(items) => items.iter().find_map(|v| find(v, name)),
            _ => None,
        }
    }
    // No stream yet: nothing stored.
    Some(find(&json, name).unwrap_or(0))
}

fn cpu_sample(pid: u32, what: &str) -> HashMap<u32, u64> {
    thread_cpu_ns(pid).unwrap_or_else(|| fail(&format!("{what} (pid {pid}) is gone")))
}

/// What one client run measured.
struct Run {
    messages: u64,
    cpu: Duration,
    wall: Duration,
    nats_cpu: Option<Duration>,
}

/// `sitebucket listen --driver tokio` into a pipe whose lines this process counts.
fn stdout_round(sitebucket: &Path, server: &mut GatedServer) -> Run {
    server.forget_waiting();
    let expected = server.messages;
    let mut child = with_credentials(&mut Command::new(sitebucket))
        .args(["listen", "--driver", "tokio", "--follow", USER, "--url"])
        .arg(server.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("starting sitebucket listen: {e}")));
    let log = Log::of(&mut child);
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("piped stdout");
    // Counts lines; at the last expected one, reads the client's CPU at once.
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut lines = 0u64;
        let mut reported = false;
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
            if lines >= expected && !reported {
                reported = true;
                let _ = done_tx.send((Instant::now(), thread_cpu_ns(pid), lines));
            }
        }
        if !reported {
            let _ = done_tx.send((Instant::now(), None, lines));
        }
    });
    server.wait_for_connection("sitebucket listen");
    std::thread::sleep(SETTLE);
    let before = cpu_sample(pid, "sitebucket listen");
    let started = Instant::now();
    server.go();
    let (ended, after, lines) = done.recv_timeout(ROUND_LIMIT).unwrap_or_else(|_| {
        fail(&format!(
            "listen: not done in {ROUND_LIMIT:?}: {}",
            log.text()
        ))
    });
    let _ = child.kill();
    let _ = child.wait();
    let Some(after) = after else {
        fail(&format!(
            "listen printed {lines} of {expected} lines: {}",
            log.text()
        ))
    };
    Run {
        messages: lines,
        cpu: cpu_between(&before, &after),
        wall: ended - started,
        nats_cpu: None,
    }
}

/// One `sitebucket fleet` worker into a fresh nats-server, counted in the stream's state.
fn fleet_round(sitebucket: &Path, server: &mut GatedServer) -> Run {
    server.forget_waiting();
    let expected = server.messages;
    let monitor_port = free_port();
    let nats = NatsServer::start_with(free_port(), vec!["-m".into(), monitor_port.to_string()]);
    let monitor = format!("127.0.0.1:{monitor_port}");
    let added = Command::new(sitebucket)
        .args(["follow", "add", "--nats", &nats.url, "--follow", USER])
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| fail(&format!("sitebucket follow add: {e}")));
    if !added.success() {
        fail(&format!("sitebucket follow add failed: {added}"));
    }
    let mut child = with_credentials(&mut Command::new(sitebucket))
        .args(["fleet", "--nats", &nats.url, "--worker", "bench", "--url"])
        .arg(server.url())
        .args(["--metrics-addr", "127.0.0.1:0", "--drain-timeout", "10s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("starting sitebucket fleet: {e}")));
    let log = Log::of(&mut child);
    let pid = child.id();
    let metrics = log
        .metrics_addr(Duration::from_secs(30))
        .unwrap_or_else(|| {
            fail(&format!(
                "the worker logged no metrics address: {}",
                log.text()
            ))
        });
    server.wait_for_connection("the fleet worker");
    // Every shard held (so no message is dropped at the lease gate), then start-up settles.
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(&metrics, "/metrics")
        .and_then(|m| metric(&m, "sitebucket_shards_held"))
        .is_none_or(|held| held < SHARDS)
    {
        if Instant::now() > deadline {
            fail(&format!(
                "the worker took no {SHARDS} shards in 30 s: {}",
                log.text()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(SETTLE);
    let nats_pid = nats
        .pid()
        .unwrap_or_else(|| fail("nats-server is not running"));
    let before = cpu_sample(pid, "the fleet worker");
    let nats_before = cpu_sample(nats_pid, "nats-server");
    let started = Instant::now();
    server.go();
    let mut stored = 0;
    while stored < expected && started.elapsed() < ROUND_LIMIT {
        std::thread::sleep(Duration::from_millis(20));
        stored = stream_messages(&monitor, STREAM).unwrap_or(stored);
    }
    let ended = Instant::now();
    let after = cpu_sample(pid, "the fleet worker");
    let nats_after = cpu_sample(nats_pid, "nats-server");
    let text = http_get(&metrics, "/metrics").unwrap_or_default();
    let count = |name: &str| metric(&text, name).unwrap_or(0);
    println!(
        "# fleet worker round: {stored} of {expected} messages stored; the worker read {}, acked {}, duplicates {}, dropped at the gate {}, publish errors {}, reading paused {} times",
        count("sitebucket_messages_in_total"),
        count("sitebucket_acked_total"),
        count("sitebucket_duplicates_total"),
        count("sitebucket_dropped_not_held_total"),
        count("sitebucket_publish_errors_total"),
        count("sitebucket_reading_paused_total"),
    );
    let _ = child.kill();
    let _ = child.wait();
    drop(nats);
    Run {
        messages: stored,
        cpu: cpu_between(&before, &after),
        wall: ended - started,
        nats_cpu: Some(cpu_between(&nats_before, &nats_after)),
    }
}

fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn listed(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// CPU per message and messages per second, stdout against one worker into JetStream, round
/// by round on the same server: as fast as each goes (`rate` `None`), or both paced to
/// `rate` messages per second (figures named `..._paced`), so that both read the same stream
/// at the same rate in reads of the same size.
fn throughput(bin: &Path, sitebucket: &Path, plan: &Plan, rate: Option<u64>) {
    let mut server = GatedServer::start(bin, plan.bytes, rate);
    let (how, suffix) = match rate {
        None => ("as fast as each goes".to_owned(), ""),
        Some(rate) => (format!("both paced to {rate} msgs/s"), "_paced"),
    };
    let name = |base: &str| format!("{base}{suffix}");
    let expected = server.messages;
    println!(
        "# fleet{suffix}: {expected} messages of the bench stream (one segment, every message once), {how}, one `sitebucket listen --driver tokio` to a counted pipe vs one `sitebucket fleet` worker into a fresh nats-server -js (file store); CPU of the client process from the first message to the last (per-thread schedstat), median of {} rounds",
        plan.rounds
    );
    let (mut stdout_ns, mut fleet_ns, mut nats_ns) = (Vec::new(), Vec::new(), Vec::new());
    let (mut stdout_rate, mut fleet_rate) = (Vec::new(), Vec::new());
    let mut stored_min = u64::MAX;
    for _ in 0..plan.rounds {
        let out = stdout_round(sitebucket, &mut server);
        stdout_ns.push(out.cpu.as_nanos() as f64 / out.messages.max(1) as f64);
        stdout_rate.push(out.messages as f64 / out.wall.as_secs_f64());
        let out = fleet_round(sitebucket, &mut server);
        stored_min = stored_min.min(out.messages);
        if out.messages >= expected {
            fleet_ns.push(out.cpu.as_nanos() as f64 / out.messages as f64);
            fleet_rate.push(out.messages as f64 / out.wall.as_secs_f64());
            if let Some(nats) = out.nats_cpu {
                nats_ns.push(nats.as_nanos() as f64 / out.messages as f64);
            }
        }
    }
    println!(
        "# fleet{suffix} stdout ns/msg by round: {}",
        listed(&stdout_ns)
    );
    println!(
        "# fleet{suffix} jetstream ns/msg by round: {}",
        listed(&fleet_ns)
    );
    println!(
        "# fleet{suffix} nats-server ns/msg by round: {}",
        listed(&nats_ns)
    );
    println!(
        "# fleet{suffix} msgs/s by round, stdout: {}; jetstream: {}",
        listed(&stdout_rate),
        listed(&fleet_rate)
    );
    println!(
        "{}",
        Figure::new(
            &name("fleet_jetstream_messages_stored"),
            stored_min as f64,
            "msgs",
            "messages_sent",
            expected as f64,
            Target::Ratio(Op::AtLeast, 1.0),
        )
    );
    if fleet_ns.is_empty() {
        println!("# fleet{suffix}: CPU per message not measured: no round stored every message");
        return;
    }
    let stdout_cpu = median(&stdout_ns);
    println!(
        "{}",
        Figure::new(
            &name("fleet_jetstream_cpu_per_message"),
            median(&fleet_ns),
            "ns/msg",
            &name("listen_stdout_tokio_cpu_per_message"),
            stdout_cpu,
            Target::Ratio(Op::AtMost, 2.0),
        )
    );
    println!(
        "{}",
        Figure::new(
            &name("fleet_jetstream_msgs_per_s"),
            median(&fleet_rate),
            "msgs/s",
            &name("listen_stdout_tokio_msgs_per_s"),
            median(&stdout_rate),
            Target::Reported,
        )
    );
    println!(
        "{}",
        Figure::new(
            &name("fleet_nats_server_cpu_per_message"),
            median(&nats_ns),
            "ns/msg",
            &name("listen_stdout_tokio_cpu_per_message"),
            stdout_cpu,
            Target::Reported,
        )
    );
}

/// Whether every user is on exactly one live connection of the test server.
fn covered(server: &TestServer, users: &BTreeSet<u64>) -> bool {
    let mut seen = BTreeSet::new();
    for stream in server.control_streams() {
        for user in stream.follow {
            if !users.contains(&user) || !seen.insert(user) {
                return false;
            }
        }
    }
    seen.len() == users.len()
}

/// A fleet worker for the failover runs.
struct FailoverWorker {
    child: Child,
    log: Log,
    metrics: String,
}

impl FailoverWorker {
    fn start(sitebucket: &Path, nats: &NatsServer, server: &TestServer, name: &str) -> Self {
        let ttl = format!("{}s", FAILOVER_TTL.as_secs());
        let mut child = with_credentials(&mut Command::new(sitebucket))
            .args([
                "fleet",
                "--nats",
                &nats.url,
                "--worker",
                name,
                "--lease-ttl",
                &ttl,
            ])
            .args(["--url", &server.url(), "--metrics-addr", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("starting worker {name}: {e}")));
        let log = Log::of(&mut child);
        let metrics = log
            .metrics_addr(Duration::from_secs(30))
            .unwrap_or_else(|| {
                fail(&format!(
                    "worker {name} logged no metrics address: {}",
                    log.text()
                ))
            });
        FailoverWorker {
            child,
            log,
            metrics,
        }
    }

    fn shards(&self) -> u64 {
        http_get(&self.metrics, "/metrics")
            .and_then(|m| metric(&m, "sitebucket_shards_held"))
            .unwrap_or(0)
    }
}

impl Drop for FailoverWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one failover run measured.
struct Failover {
    /// From the kill until every user streamed again.
    total: Duration,
    /// From the kill until the survivor took the last of the dead worker's shards.
    taken: Duration,
    /// From the kill until the server saw the dead worker's connections close.
    dark: Duration,
}

fn failover_run(sitebucket: &Path, users: &BTreeSet<u64>) -> Failover {
    let nats = NatsServer::start();
    let plan = AttemptPlan::ok(vec![Step::Control])
        .with_end(End::HoldWithKeepAlives(Duration::from_millis(500)));
    let server = TestServer::start(Scenario::single(plan), ServerOptions::plain())
        .unwrap_or_else(|e| fail(&format!("the test server: {e}")));
    let file: PathBuf =
        std::env::temp_dir().join(format!("bench-fleet-users-{}.txt", std::process::id()));
    let ids: String = users.iter().map(|u| format!("{u}\n")).collect();
    std::fs::write(&file, ids).unwrap_or_else(|e| fail(&format!("{file:?}: {e}")));
    let added = Command::new(sitebucket)
        .args(["follow", "add", "--nats", &nats.url, "--follow-file"])
        .arg(&file)
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| fail(&format!("sitebucket follow add: {e}")));
    let _ = std::fs::remove_file(&file);
    if !added.success() {
        fail(&format!("sitebucket follow add failed: {added}"));
    }
    let survivor = FailoverWorker::start(sitebucket, &nats, &server, "w0");
    let mut victim = FailoverWorker::start(sitebucket, &nats, &server, "w1");
    // Settled: the shards shared (within one) and every user on exactly one connection.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (a, b) = (survivor.shards(), victim.shards());
        if a + b == SHARDS && a.abs_diff(b) <= 1 && covered(&server, users) {
            break;
        }
        if Instant::now() > deadline {
            fail(&format!(
                "two workers did not settle in 30 s (shards {a} and {b}): {}",
                survivor.log.text()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let victim_shards = victim.shards();
    let _ = victim.child.kill();
    let killed = Instant::now();
    let mut dark = None;
    let limit = FAILOVER_TTL * 5;
    let total = loop {
        let all = covered(&server, users);
        if !all && dark.is_none() {
            dark = Some(killed.elapsed());
        }
        if all && dark.is_some() {
            break killed.elapsed();
        }
        if killed.elapsed() > limit {
            fail(&format!(
                "the users of a killed worker were not streamed again within {limit:?}: {}",
                survivor.log.text()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // When the survivor took the last of the victim's shards, from its log.
    let taken = survivor
        .log
        .lines()
        .iter()
        .filter(|(at, line)| *at >= killed && line.contains("took shard"))
        .map(|(at, _)| *at - killed)
        .max()
        .unwrap_or(total);
    let held = survivor.shards();
    if held != SHARDS {
        println!(
            "# fleet failover: the survivor holds {held} of {SHARDS} shards after the takeover"
        );
    }
    println!(
        "# fleet failover run: kill -9 of a worker holding {victim_shards} shards; its connections closed after {:.2?}; the survivor took the last of them after {taken:.2?}; every user streamed again after {total:.2?}",
        dark.unwrap_or_default()
    );
    Failover {
        total,
        taken,
        dark: dark.unwrap_or_default(),
    }
}

fn failover(sitebucket: &Path, plan: &Plan) {
    let users = users(17, FAILOVER_USERS);
    println!(
        "# fleet failover: 2 workers, lease TTL {FAILOVER_TTL:?}, {FAILOVER_USERS} users on the test server (control streams), kill -9 of one, until every user is on exactly one live connection again; median of {} runs",
        plan.failovers
    );
    let runs: Vec<Failover> = (0..plan.failovers)
        .map(|_| failover_run(sitebucket, &users))
        .collect();
    let secs = |f: fn(&Failover) -> Duration| {
        median(&runs.iter().map(|r| f(r).as_secs_f64()).collect::<Vec<_>>())
    };
    let (total, taken, dark) = (secs(|r| r.total), secs(|r| r.taken), secs(|r| r.dark));
    println!(
        "# fleet failover composition (medians): connections of the killed worker closed {dark:.2} s; its shards taken by the survivor {taken:.2} s (lease TTL {} s: expiry after the last renewal, plus the survivor's next look); users onto streams (control requests, new connections) {:.2} s",
        FAILOVER_TTL.as_secs(),
        total - taken
    );
    println!(
        "{}",
        Figure::new(
            "fleet_failover_after_kill9",
            total,
            "s",
            "lease_ttl",
            FAILOVER_TTL.as_secs_f64(),
            Target::Reported,
        )
    );
}

fn fail(why: &str) -> ! {
    eprintln!("bench-fleet: {why}");
    std::process::exit(1)
}
