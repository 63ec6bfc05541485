//! Runs the `sitebucket` binary as a user would, against a `TestServer` on loopback.
//!
//! Every run is bounded in time: a process still alive at its deadline is killed and the test
//! fails. Every finished run's stderr is checked for secrets: both test secrets, any secret
//! the test set, and the `oauth_signature` of every request the server saw.

#![allow(dead_code)] // Each test binary uses its own part of the harness.

use std::io::Read;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sitebucket_testserver::{AttemptPlan, Credentials, Scenario, ServerOptions, TestServer};

/// The four names `--driver` takes; every behaviour is checked on each.
pub(crate) const DRIVERS: [&str; 4] = ["thread", "mio", "smol", "tokio"];

/// The longest any single run may take before the test fails.
pub(crate) const RUN_BOUND: Duration = Duration::from_secs(30);

/// The follow list every test uses unless it says otherwise.
pub(crate) const FOLLOW: &str = "1,2,3";

/// A server playing `plans` in order (the last one repeats), plain TCP, test credentials.
pub(crate) fn server(plans: Vec<AttemptPlan>) -> TestServer {
    TestServer::start(Scenario::new(plans), ServerOptions::plain()).expect("test server starts")
}

/// `sitebucket listen --url <server> --follow 1,2,3 --driver <driver> <extra...>` with the
/// test credentials in the environment (and no other `SITEBUCKET_*` variable).
pub(crate) fn listen(url: &str, driver: &str, extra: &[&str]) -> Command {
    let mut command = sitebucket();
    command
        .args([
            "listen", "--url", url, "--follow", FOLLOW, "--driver", driver,
        ])
        .args(extra);
    let credentials = Credentials::test_default();
    command
        .env("SITEBUCKET_CONSUMER_KEY", &credentials.consumer_key)
        .env("SITEBUCKET_CONSUMER_SECRET", &credentials.consumer_secret)
        .env("SITEBUCKET_TOKEN", &credentials.token)
        .env("SITEBUCKET_TOKEN_SECRET", &credentials.token_secret);
    command
}

/// The binary with a clean environment for its own variables.
pub(crate) fn sitebucket() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sitebucket"));
    for name in [
        "SITEBUCKET_CONSUMER_KEY",
        "SITEBUCKET_CONSUMER_SECRET",
        "SITEBUCKET_TOKEN",
        "SITEBUCKET_TOKEN_SECRET",
        "SITEBUCKET_BEARER_TOKEN",
    ] {
        command.env_remove(name);
    }
    command.env_remove("RUST_LOG");
    command
}

/// Bytes a reader thread collects, with a condition variable to wait on.
#[derive(Default)]
pub(crate) struct Collected {
    bytes: Mutex<Vec<u8>>,
    grew: Condvar,
}

impl Collected {
    fn read_from(self: Arc<Self>, mut from: impl Read + Send + 'static) -> JoinHandle<()> {
        std::thread::spawn(move || {
            let mut buf = [0u8; 64 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        self.bytes.lock().unwrap().extend_from_slice(&buf[..n]);
                        self.grew.notify_all();
                    }
                }
            }
        })
    }

    /// A copy of everything so far.
    pub(crate) fn snapshot(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the bytes so far, or `timeout`; returns whether it did.
    pub(crate) fn wait_for(&self, timeout: Duration, done: impl Fn(&[u8]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut bytes = self.bytes.lock().unwrap();
        loop {
            if done(&bytes) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            bytes = self.grew.wait_timeout(bytes, deadline - now).unwrap().0;
        }
    }
}

/// A running `sitebucket` process with its output collected.
pub(crate) struct Running {
    child: Child,
    pub stdout: Arc<Collected>,
    pub stderr: Arc<Collected>,
    readers: Vec<JoinHandle<()>>,
    /// What this run is, for failure messages.
    pub label: String,
    /// Whether the run may end through the CLI's stop watchdog (else that fails the test).
    watchdog_expected: bool,
}

/// A finished run.
#[derive(Debug)]
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// From the signal (or the start, if none was sent) to the exit.
    pub elapsed: Duration,
}

impl Finished {
    /// The exit code; a death by signal fails the test.
    pub(crate) fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {self:?}"))
    }

    /// stdout as text.
    pub(crate) fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Starts `command` with stdout and stderr collected.
pub(crate) fn spawn(mut command: Command, label: impl Into<String>) -> Running {
    let label = label.into();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stdout = Arc::new(Collected::default());
    let stderr = Arc::new(Collected::default());
    let readers = vec![
        stdout
            .clone()
            .read_from(child.stdout.take().expect("piped stdout")),
        stderr
            .clone()
            .read_from(child.stderr.take().expect("piped stderr")),
    ];
    Running {
        child,
        stdout,
        stderr,
        readers,
        label,
        watchdog_expected: false,
    }
}

/// Starts `command` with stdout handed to the caller (stderr collected).
pub(crate) fn spawn_with_stdout(
    mut command: Command,
    label: impl Into<String>,
) -> (Running, ChildStdout) {
    let label = label.into();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let out = child.stdout.take().expect("piped stdout");
    let stderr = Arc::new(Collected::default());
    let readers = vec![stderr
        .clone()
        .read_from(child.stderr.take().expect("piped stderr"))];
    let running = Running {
        child,
        stdout: Arc::new(Collected::default()),
        stderr,
        readers,
        label,
        watchdog_expected: false,
    };
    (running, out)
}

/// Runs `command` to its end (bounded by [`RUN_BOUND`]).
pub(crate) fn run(command: Command, label: impl Into<String>) -> Finished {
    spawn(command, label).wait(RUN_BOUND)
}

impl Running {
    /// Lets this run end through the stop watchdog (a stdout nobody reads blocks the run).
    pub(crate) fn expecting_watchdog(mut self) -> Self {
        self.watchdog_expected = true;
        self
    }

    /// Waits until stdout holds at least `lines` newline characters.
    pub(crate) fn wait_stdout_lines(&self, lines: usize, timeout: Duration) -> bool {
        self.stdout.wait_for(timeout, |b| {
            b.iter().filter(|c| **c == b'\n').count() >= lines
        })
    }

    /// Waits until stderr contains `needle`.
    pub(crate) fn wait_stderr(&self, needle: &str, timeout: Duration) -> bool {
        self.stderr
            .wait_for(timeout, |b| String::from_utf8_lossy(b).contains(needle))
    }

    /// Sends `signal` and leaves the process running.
    pub(crate) fn signal(&mut self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"));
        kill(pid, signal).expect("kill");
    }

    /// stderr so far, as text.
    pub(crate) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.snapshot()).into_owned()
    }

    /// Whether the process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends `signal`, then waits for the exit (bounded by `timeout`); `elapsed` counts from
    /// the signal.
    pub(crate) fn signal_and_wait(mut self, signal: Signal, timeout: Duration) -> Finished {
        assert!(
            self.is_running(),
            "{}: exited before the signal",
            self.label
        );
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"));
        let sent = Instant::now();
        kill(pid, signal).expect("kill");
        self.wait_from(sent, timeout)
    }

    /// Waits for the exit, at most `timeout`; kills the process and fails the test past it.
    pub(crate) fn wait(self, timeout: Duration) -> Finished {
        self.wait_from(Instant::now(), timeout)
    }

    fn wait_from(mut self, from: Instant, timeout: Duration) -> Finished {
        let deadline = from + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{}: still running after {timeout:?}; stderr:\n{}",
                    self.label,
                    String::from_utf8_lossy(&self.stderr.snapshot())
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let elapsed = from.elapsed();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let stderr = String::from_utf8_lossy(&self.stderr.snapshot()).into_owned();
        assert!(
            self.watchdog_expected || !stderr.contains("did not stop within"),
            "{}: the run ignored the stop; the watchdog ended it:\n{stderr}",
            self.label
        );
        // Every run's log, whatever its test also checks: no test secret may show in it.
        assert_no_secrets(&stderr, None, &[]);
        Finished {
            status,
            stdout: self.stdout.snapshot(),
            stderr,
            elapsed,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that failed half-way leaves no process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails if `stderr` shows a secret: the test secrets, `extra` secrets, or the
/// `oauth_signature` of any request `server` received (raw and percent-decoded).
pub(crate) fn assert_no_secrets(stderr: &str, server: Option<&TestServer>, extra: &[&str]) {
    let credentials = Credentials::test_default();
    let mut secrets: Vec<String> = vec![
        credentials.consumer_secret.clone(),
        credentials.token_secret.clone(),
        "oauth_signature".into(),
    ];
    secrets.extend(extra.iter().map(|s| s.to_string()));
    if let Some(server) = server {
        for attempt in server.attempts() {
            if let Some(signature) = attempt
                .header("Authorization")
                .and_then(|h| h.split("oauth_signature=\"").nth(1))
                .and_then(|rest| rest.split('"').next())
            {
                secrets.push(signature.to_owned());
                secrets.push(percent_decode(signature));
            }
        }
    }
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        assert!(
            !stderr.contains(secret.as_str()),
            "stderr shows a secret ({secret:?}):\n{stderr}"
        );
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(byte) = u8::from_str_radix(hex, 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What stdout must be for these messages: each payload, with every raw CR or LF byte as
/// a space, and a `\n` (README "Output": one message, one line).
pub(crate) fn lines(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for message in messages {
        out.extend(one_line(message));
        out.push(b'\n');
    }
    out
}

/// The payload as `listen` prints it: each raw CR or LF byte a space.
pub(crate) fn one_line(message: &[u8]) -> Vec<u8> {
    message
        .iter()
        .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
        .collect()
}

/// `listen` with every credential set and these arguments only (no `--follow`).
pub(crate) fn listen_args(url: &str, driver: &str, extra: &[&str]) -> Command {
    let mut command = sitebucket();
    command
        .args(["listen", "--url", url, "--driver", driver])
        .args(extra);
    with_credentials(&mut command);
    command
}

/// Sets the test credentials in the command's environment.
pub(crate) fn with_credentials(command: &mut Command) {
    let credentials = Credentials::test_default();
    command
        .env("SITEBUCKET_CONSUMER_KEY", &credentials.consumer_key)
        .env("SITEBUCKET_CONSUMER_SECRET", &credentials.consumer_secret)
        .env("SITEBUCKET_TOKEN", &credentials.token)
        .env("SITEBUCKET_TOKEN_SECRET", &credentials.token_secret);
}

/// A file of ids, one per line, in a fresh temporary path named after `label`.
pub(crate) fn id_file(label: &str, ids: impl IntoIterator<Item = u64>) -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("sitebucket-cli-{label}-{}.txt", std::process::id()));
    write_ids(&path, ids);
    path
}

/// Writes `ids` to `path`, one per line.
pub(crate) fn write_ids(path: &std::path::Path, ids: impl IntoIterator<Item = u64>) {
    let text: String = ids.into_iter().map(|id| format!("{id}\n")).collect();
    std::fs::write(path, text).expect("the id file is written");
}

/// Polls `done` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub(crate) fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The query of an attempt as a sorted list, for exact comparison.
pub(crate) fn sorted_query(query: &[(String, String)]) -> Vec<(String, String)> {
    let mut query = query.to_vec();
    query.sort();
    query
}

/// Owned `(name, value)` pairs, sorted.
pub(crate) fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = items
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    out.sort();
    out
}

/// The gaps between consecutive attempts' accept times.
pub(crate) fn gaps(server: &TestServer) -> Vec<Duration> {
    let attempts = server.attempts();
    attempts
        .windows(2)
        .map(|w| w[1].at.saturating_duration_since(w[0].at))
        .collect()
}
