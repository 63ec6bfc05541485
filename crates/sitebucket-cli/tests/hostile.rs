//! Hostile servers, on every driver, through the binary.
//!
//! Each case plays a scripted `TestServer` that misbehaves in one way, runs
//! `sitebucket listen --retry-limit 2` against it in a process of its own, and checks:
//!
//! - the log names the problem (an exact phrase of the error line);
//! - the policy is followed: a failure before the connection earned trust (no head, or a
//!   `200` that delivered no message) counts against `--retry-limit`, so those cases see two
//!   attempts and give up; a failure after a message was printed reconnects (the server then
//!   answers half a head twice, which gives up) — every case ends by itself with exit status
//!   1 and a "giving up" line, within seconds;
//! - stdout holds exactly the messages framed before the fault, byte for byte;
//! - the process's peak RSS stays within `baseline + max_message_bytes + OVERHEAD`, where
//!   `baseline` is the peak of a healthy run on the same driver, measured first.
//!
//! Peak RSS comes from `getrusage(RUSAGE_CHILDREN)`, which reports the largest peak among a
//! process's waited-for children. To get the figure of exactly one run, every run goes through
//! a wrapper: this test binary started again (the same test, `--exact`, with
//! [`WRAP_ARGS`] in its environment), which spawns `sitebucket`, waits for it, and prints its
//! peak. Linux hands a child, at `exec`, the peak of the memory it ran in before (for a
//! `vfork`-style spawn, the parent's), so the figure is at least the wrapper's own peak when it
//! spawned; a wrapper is small, and each case checks that its figure lies above the wrapper's
//! (`VmHWM` just before the spawn), so the figure is `sitebucket`'s own. (Through the big test
//! process itself, every child would show that process's peak.) Linux only: elsewhere
//! `ru_maxrss` has other units and there is no `/proc`.
//!
//! The "trickle one byte every second forever" server is scaled down (a byte every 50 ms,
//! `--stall-timeout 300ms`). The right behaviour: the stall timer measures silence, so a
//! connection that keeps sending bytes is alive, however slow — nothing ends it until the
//! bytes of one unterminated message pass `--max-message-bytes`, which drops the connection
//! ("frame too large") and reconnects. Complete messages trickled in are printed as they end.

#![cfg(target_os = "linux")]

mod common;

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Crc, FlushCompress};
use nix::sys::resource::{getrusage, UsageWho};
use sitebucket_testserver::{AttemptPlan, BodyEncoding, End, Framing, Step, Transfer};

use common::{assert_no_secrets, lines, listen, server, spawn, RUN_BOUND};

/// In a wrapper run: the `sitebucket` arguments, separated by [`ARG_SEPARATOR`].
const WRAP_ARGS: &str = "SITEBUCKET_HOSTILE_WRAP_ARGS";
/// In a wrapper run: the file `sitebucket`'s stdout goes to.
const WRAP_STDOUT: &str = "SITEBUCKET_HOSTILE_WRAP_STDOUT";
const ARG_SEPARATOR: char = '\u{1f}';

/// What a run may use beyond the healthy baseline and `max_message_bytes`: read buffers,
/// the decoder's window and state, the allocator's slack.
const OVERHEAD: u64 = 8 * 1024 * 1024;

/// `--max-message-bytes` of most cases: small, so a buffered flood shows.
const MMB: usize = 1024 * 1024;

/// What the bomb inflates to: 1 GiB of zeros.
const BOMB_BYTES: usize = 1 << 30;

const GAVE_UP: &str = "giving up: gave up after 2 consecutive failed attempts";

#[test]
fn hostile_servers_on_the_thread_driver() {
    run_driver("thread", "hostile_servers_on_the_thread_driver");
}

#[test]
fn hostile_servers_on_the_mio_driver() {
    run_driver("mio", "hostile_servers_on_the_mio_driver");
}

#[test]
fn hostile_servers_on_the_smol_driver() {
    run_driver("smol", "hostile_servers_on_the_smol_driver");
}

#[test]
fn hostile_servers_on_the_tokio_driver() {
    run_driver("tokio", "hostile_servers_on_the_tokio_driver");
}

/// Checks that the bomb is what it claims: built the same way, a small one inflates to
/// exactly its zeros with a valid gzip trailer (CRC and size checked by the decoder).
#[test]
fn the_bomb_builder_makes_valid_gzip() {
    let small = gzip_zeros(4 << 20);
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(&small[..])
        .read_to_end(&mut inflated)
        .expect("valid gzip");
    assert_eq!(inflated.len(), 4 << 20);
    assert!(inflated.iter().all(|b| *b == 0));
    assert!(small.len() < (4 << 20) / 500, "{} bytes", small.len());
}

/// One case: a scripted server, the options, and what must come out.
struct Case {
    name: &'static str,
    plans: Vec<AttemptPlan>,
    /// Options besides the common ones (no `--max-message-bytes` or `--stall-timeout`).
    extra: Vec<&'static str>,
    max_message_bytes: usize,
    stall_timeout: &'static str,
    /// Exact stdout.
    stdout: Vec<u8>,
    /// Phrases stderr must contain.
    stderr: Vec<String>,
    /// Phrases stderr must not contain.
    not_stderr: Vec<&'static str>,
    /// Connection attempts the server must see.
    attempts: usize,
    /// The run cannot have ended sooner (a timer that must not fire early).
    at_least: Duration,
}

impl Case {
    fn new(name: &'static str, plans: Vec<AttemptPlan>, attempts: usize) -> Self {
        Case {
            name,
            plans,
            extra: Vec::new(),
            max_message_bytes: MMB,
            stall_timeout: "3s",
            stdout: Vec::new(),
            stderr: Vec::new(),
            not_stderr: Vec::new(),
            attempts,
            at_least: Duration::ZERO,
        }
    }

    fn expect(mut self, phrase: impl Into<String>) -> Self {
        self.stderr.push(phrase.into());
        self
    }
}

/// What one wrapped run produced.
struct Measured {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
    peak_kib: u64,
    /// The wrapper's own peak when it spawned `sitebucket`.
    wrapper_kib: u64,
    elapsed: Duration,
}

fn run_driver(driver: &str, test_name: &str) {
    if let Some(args) = std::env::var_os(WRAP_ARGS) {
        return wrapper(args.to_str().expect("ASCII arguments"));
    }
    let bomb = gzip_zeros(BOMB_BYTES);
    assert!(bomb.len() < 1_100_000, "a {} byte bomb", bomb.len());
    let baseline = healthy_baseline(driver, test_name);
    let mut report = vec![format!(
        "{driver}: healthy baseline {baseline} KiB; the bomb is {} bytes",
        bomb.len()
    )];
    for case in cases(&bomb) {
        let name = case.name;
        let (measured, bound) = check(driver, test_name, case, baseline);
        report.push(format!(
            "{driver}: {name}: peak {} KiB (bound {} KiB; wrapper {} KiB), {:?}",
            measured.peak_kib, bound, measured.wrapper_kib, measured.elapsed
        ));
    }
    // Visible with --nocapture: the figures the issue note quotes.
    println!("{}", report.join("\n"));
}

/// A healthy short run: messages, a clean close, then half heads until it gives up.
fn healthy_baseline(driver: &str, test_name: &str) -> u64 {
    let messages: Vec<Vec<u8>> = (0..50)
        .map(|i| format!("{{\"id\":{i},\"text\":\"fine\"}}").into_bytes())
        .collect();
    let mut case = Case::new(
        "healthy",
        vec![
            AttemptPlan::ok(messages.iter().cloned().map(Step::Message).collect()),
            AttemptPlan::half_head(),
        ],
        3,
    )
    .expect("connection closed by the server; backing off");
    case.stdout = lines(&messages);
    let measured = run_case(driver, test_name, &case).0;
    assert_eq!(measured.code, 1, "{driver}: {}", measured.stderr);
    assert_eq!(measured.stdout, case.stdout, "{driver}");
    measured.peak_kib
}

fn check(driver: &str, test_name: &str, case: Case, baseline_kib: u64) -> (Measured, u64) {
    let (m, server) = run_case(driver, test_name, &case);
    let what = format!("{driver}: {}", case.name);
    assert_no_secrets(&m.stderr, Some(&server), &[]);
    // The grep above had every attempt's signature to look for.
    let signed = server
        .attempts()
        .iter()
        .filter(|a| {
            a.header("Authorization")
                .is_some_and(|h| h.contains("oauth_signature=\""))
        })
        .count();
    assert_eq!(signed, case.attempts, "{what}: signed attempts");
    assert_eq!(m.code, 1, "{what}: exit status; stderr:\n{}", m.stderr);
    assert!(m.stderr.contains(GAVE_UP), "{what}:\n{}", m.stderr);
    for phrase in &case.stderr {
        assert!(
            m.stderr.contains(phrase.as_str()),
            "{what}: stderr lacks {phrase:?}:\n{}",
            m.stderr
        );
    }
    for phrase in &case.not_stderr {
        assert!(
            !m.stderr.contains(phrase),
            "{what}: stderr has {phrase:?}:\n{}",
            m.stderr
        );
    }
    assert!(
        m.stdout == case.stdout,
        "{what}: stdout is {:?}, expected {:?}",
        String::from_utf8_lossy(&m.stdout[..m.stdout.len().min(300)]),
        String::from_utf8_lossy(&case.stdout[..case.stdout.len().min(300)]),
    );
    assert_eq!(
        server.attempts().len(),
        case.attempts,
        "{what}: attempts; stderr:\n{}",
        m.stderr
    );
    assert!(
        m.elapsed >= case.at_least,
        "{what}: ended after {:?}, before {:?}:\n{}",
        m.elapsed,
        case.at_least,
        m.stderr
    );
    assert!(
        m.elapsed < case.at_least + Duration::from_secs(15),
        "{what}: took {:?}",
        m.elapsed
    );
    let bound = baseline_kib + (case.max_message_bytes as u64 + OVERHEAD) / 1024;
    assert!(
        m.peak_kib <= bound,
        "{what}: peak RSS {} KiB over the bound {bound} KiB (baseline {baseline_kib} KiB + \
         max_message_bytes {} + {} KiB)",
        m.peak_kib,
        case.max_message_bytes,
        OVERHEAD / 1024
    );
    (m, bound)
}

/// Runs one case in a wrapper process; returns what it produced and the server (for its
/// records).
fn run_case(
    driver: &str,
    test_name: &str,
    case: &Case,
) -> (Measured, sitebucket_testserver::TestServer) {
    let server = server(case.plans.clone());
    let mmb = case.max_message_bytes.to_string();
    let mut args = vec![
        "--retry-limit",
        "2",
        "--network-backoff-step",
        "10ms",
        "--http-backoff-start",
        "10ms",
        "--max-message-bytes",
        &mmb,
        "--stall-timeout",
        case.stall_timeout,
    ];
    args.extend(case.extra.iter().copied());
    let listen = listen(&server.url(), driver, &args);

    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let stdout_path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "hostile-{}-{driver}-{}-{}.out",
        std::process::id(),
        case.name,
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let mut wrapper = Command::new(std::env::current_exe().expect("test binary path"));
    wrapper.args([
        test_name,
        "--exact",
        "--nocapture",
        "--test-threads",
        "1",
        "--quiet",
    ]);
    for (name, value) in listen.get_envs() {
        match value {
            Some(value) => wrapper.env(name, value),
            None => wrapper.env_remove(name),
        };
    }
    let joined: Vec<&str> = listen
        .get_args()
        .map(|a| a.to_str().expect("ASCII argument"))
        .collect();
    wrapper
        .env(WRAP_ARGS, joined.join(&ARG_SEPARATOR.to_string()))
        .env(WRAP_STDOUT, &stdout_path);

    let label = format!("{driver}: {}", case.name);
    let started = Instant::now();
    let done = spawn(wrapper, label.clone()).wait(RUN_BOUND + Duration::from_secs(10));
    let elapsed = started.elapsed();
    let report = done.stdout_text();
    assert_eq!(
        done.code(),
        0,
        "{label}: the wrapper failed:\n{report}\n{}",
        done.stderr
    );
    let field = |key: &str| -> String {
        report
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{label}: no {key} in the wrapper's report:\n{report}"))
            .to_owned()
    };
    let code: i32 = field("HOSTILE_STATUS=")
        .parse()
        .unwrap_or_else(|_| panic!("{label}: killed by a signal:\n{report}\n{}", done.stderr));
    let wrapper_kib: u64 = field("HOSTILE_WRAPPER_KIB=").parse().expect("a number");
    let peak_kib: u64 = field("HOSTILE_PEAK_KIB=").parse().expect("a number");
    assert!(
        peak_kib > wrapper_kib,
        "{label}: the peak {peak_kib} KiB may be the wrapper's ({wrapper_kib} KiB)"
    );
    let mut stdout = Vec::new();
    File::open(&stdout_path)
        .and_then(|mut f| f.read_to_end(&mut stdout))
        .expect("the stdout file");
    let _ = std::fs::remove_file(&stdout_path);
    (
        Measured {
            code,
            stdout,
            stderr: done.stderr,
            peak_kib,
            wrapper_kib,
            elapsed,
        },
        server,
    )
}

/// The wrapper: runs `sitebucket` with `args` (stderr inherited, stdout to the file named by
/// [`WRAP_STDOUT`]), waits for it, and prints its exit status and peak RSS on stdout.
fn wrapper(args: &str) {
    let stdout_path = std::env::var_os(WRAP_STDOUT).expect("stdout path");
    let stdout = File::create(&stdout_path).expect("stdout file");
    let wrapper_kib = own_peak_kib();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sitebucket"))
        .args(args.split(ARG_SEPARATOR).map(OsStr::new))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("sitebucket starts");
    let deadline = Instant::now() + RUN_BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sitebucket still running after {RUN_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let children = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\nHOSTILE_STATUS={}",
        status
            .code()
            .map_or_else(|| format!("{status:?}"), |c| c.to_string())
    )
    .and_then(|()| writeln!(out, "HOSTILE_PEAK_KIB={}", children.max_rss()))
    .and_then(|()| writeln!(out, "HOSTILE_WRAPPER_KIB={wrapper_kib}"))
    .and_then(|()| out.flush())
    .expect("report");
}

/// This process's own peak RSS (`VmHWM`), in KiB.
fn own_peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmHWM line")
}

/// A plan whose head and body are written by hand: the steps go to the wire as they are
/// (no chunking, compression or framing by the server), starting with `head`.
fn raw(head: &[u8], steps: Vec<Step>) -> AttemptPlan {
    let mut all = vec![Step::RawWire(head.to_vec())];
    all.extend(steps);
    AttemptPlan::ok(all)
        .without_head()
        .with_transfer(Transfer::UntilEof)
        .with_encoding(BodyEncoding::Identity)
        .with_framing(Framing::Crlf)
        .with_end(End::Stall)
}

const CHUNKED_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";

/// `n` bytes as one chunk.
fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// Every case. Each `attempts` is the hostile attempt(s) plus the half heads that make the
/// stream give up: two after a connection that earned trust (printed a message), one after a
/// `200` that delivered nothing (itself a failed attempt).
fn cases(bomb: &[u8]) -> Vec<Case> {
    let first = b"{\"first\":1}".to_vec();
    let after_head = |plan: AttemptPlan| vec![plan, AttemptPlan::half_head()];
    let backing_off = "; backing off 10ms before reconnecting";
    let mut cases = Vec::new();

    // A head of 40 KiB: 40 complete header lines of 1 KiB, then the blank line.
    let mut big_head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n".to_vec();
    for i in 0..40 {
        big_head.extend_from_slice(format!("X-Pad-{i:02}: {}\r\n", "p".repeat(1014)).as_bytes());
    }
    big_head.extend_from_slice(b"\r\n");
    let head_too_large =
        "bad response head: response head is larger than 16384 bytes (no blank line ending the headers)";
    cases.push(
        Case::new(
            "head over 16 KiB",
            vec![raw(&big_head, vec![Step::Message(first.clone())])],
            2,
        )
        .expect(format!("{head_too_large}{backing_off}"))
        .expect(format!("{GAVE_UP}; last: {head_too_large}")),
    );

    // One header line that never ends: 64 MiB without a line end, then silence.
    cases.push(
        Case::new(
            "endless header line",
            vec![raw(
                b"HTTP/1.1 200 OK\r\nX-Endless: ",
                vec![Step::Oversized(64 << 20)],
            )],
            2,
        )
        .expect(format!("{head_too_large}{backing_off}"))
        .expect(format!("{GAVE_UP}; last: {head_too_large}")),
    );

    // Chunk sizes: 20 hex digits, negative, not hex — after a good chunk, which is printed.
    for (name, line, error) in [
        (
            "chunk size with 20 hex digits",
            &b"FFFFFFFFFFFFFFFFFFFF\r\n"[..],
            "bad chunked body: chunk size has more than 16 hex digits",
        ),
        (
            "chunk size with 20 hex digits, leading zeros",
            b"00000000000000000001\r\nx\r\n",
            "bad chunked body: chunk size has more than 16 hex digits",
        ),
        (
            "negative chunk size",
            b"-5\r\nhello\r\n",
            "bad chunked body: invalid byte '-' in chunk size (expected hex digits)",
        ),
        (
            "non-hex chunk size",
            b"zz\r\n",
            "bad chunked body: invalid byte 'z' in chunk size (expected hex digits)",
        ),
        (
            "0x-prefixed chunk size",
            b"0x10\r\n",
            "bad chunked body: invalid byte 'x' in chunk size (expected hex digits)",
        ),
    ] {
        let mut wire = CHUNKED_HEAD.to_vec();
        wire.extend(chunk(b"{\"first\":1}\r\n"));
        wire.extend_from_slice(line);
        let mut case = Case::new(name, after_head(raw(&wire, vec![])), 3)
            .expect(format!("{error}{backing_off}"));
        case.stdout = lines(std::slice::from_ref(&first));
        cases.push(case);
    }

    // A chunk of 2^63 - 1 bytes that never ends: one message inside it, then a message that
    // never ends trickled a byte every 100 ms for 1.2 s (longer than the 500 ms stall timeout,
    // so the timer must not fire while bytes come), then silence: a stall.
    {
        let mut wire = CHUNKED_HEAD.to_vec();
        wire.extend_from_slice(b"7fffffffffffffff\r\n{\"first\":1}\r\n");
        let mut case = Case::new(
            "a chunk that never ends, trickled",
            after_head(raw(
                &wire,
                vec![Step::Trickle {
                    bytes: b"{\"never\":\"end".to_vec(),
                    every: Duration::from_millis(100),
                }],
            )),
            3,
        )
        .expect(format!("stall detected: no data for 500ms{backing_off}"));
        case.stall_timeout = "500ms";
        case.stdout = lines(std::slice::from_ref(&first));
        case.at_least = Duration::from_millis(1300 + 500);
        cases.push(case);
    }

    // The same chunk, filled fast: 64 MiB of one unterminated message. The frame limit ends it.
    {
        let mut wire = CHUNKED_HEAD.to_vec();
        wire.extend_from_slice(b"7fffffffffffffff\r\n{\"first\":1}\r\n");
        let mut case = Case::new(
            "a chunk that never ends, flooded",
            after_head(raw(&wire, vec![Step::Oversized(64 << 20)])),
            3,
        )
        .expect(format!(
            "frame too large: a message is longer than --max-message-bytes {MMB}; dropped the connection{backing_off}"
        ));
        case.stdout = lines(std::slice::from_ref(&first));
        cases.push(case);
    }

    // A gzip bomb: 1 GiB of zeros (one endless line) in about 1 MB, with a correct head.
    {
        let mut wire = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            bomb.len()
        )
        .into_bytes();
        wire.extend_from_slice(bomb);
        // No message before the bomb: the `200` earned no trust, so it is the first of the
        // two failed attempts.
        let mut case = Case::new("gzip bomb (1 GiB)", after_head(raw(&wire, vec![])), 2).expect(
            format!(
                "frame too large: a message is longer than --max-message-bytes {MMB}; dropped the connection{backing_off}"
            ),
        );
        case.extra = vec!["--gzip"];
        cases.push(case);
    }

    // A message of exactly the limit (printed), then one a byte over it (dropped, with the
    // connection), then one that is lost with the connection.
    {
        let exact = {
            let mut m = b"{\"p\":\"".to_vec();
            m.resize(MMB - 2, b'e');
            m.extend_from_slice(b"\"}");
            m
        };
        let mut case = Case::new(
            "a frame one byte over --max-message-bytes",
            after_head(
                AttemptPlan::ok(vec![
                    Step::Message(exact.clone()),
                    Step::Oversized(MMB + 1),
                    Step::Message(b"{\"lost\":1}".to_vec()),
                ])
                .with_end(End::Stall),
            ),
            3,
        )
        .expect(format!(
            "frame too large: a message is longer than --max-message-bytes {MMB}; dropped the connection{backing_off}"
        ));
        case.stdout = lines(&[exact]);
        cases.push(case);
    }

    // delimited=length prefixes: 11 digits (refused for its length), and 10 digits (refused
    // as over the limit before any of the frame is read). Neither may reserve memory for it.
    for (name, prefix, error) in [
        (
            "length prefix 99999999999",
            &b"99999999999\r\n"[..],
            "bad message framing: delimited=length count has more than 10 digits".to_string(),
        ),
        (
            "length prefix 9999999999",
            b"9999999999\r\n",
            format!(
                "frame too large: a message is longer than --max-message-bytes {MMB}; dropped the connection"
            ),
        ),
    ] {
        let mut case = Case::new(
            name,
            after_head(
                AttemptPlan::ok(vec![
                    Step::Message(first.clone()),
                    Step::RawBody(prefix.to_vec()),
                    Step::RawBody(vec![b'x'; 64 * 1024]),
                ])
                .with_end(End::Stall),
            ),
            3,
        )
        .expect(format!("{error}{backing_off}"));
        case.extra = vec!["--delimited"];
        case.stdout = lines(std::slice::from_ref(&first));
        cases.push(case);
    }

    // Invalid UTF-8 and invalid JSON: printed as received, the stream goes on.
    {
        let messages: Vec<Vec<u8>> = vec![
            b"\xff\xfe\x80 not UTF-8 \xc3\x28".to_vec(),
            b"{not json".to_vec(),
            b"{\"disconnect\":{\"code\":\"six\",\"reason\":7}}".to_vec(),
            b"{\"disconnect\":".to_vec(),
            b"{\"control\":{\"control_uri\":\xff}}".to_vec(),
            b"[1,2,".to_vec(),
            b"{\"fine\":true}".to_vec(),
        ];
        let mut case = Case::new(
            "invalid UTF-8 and invalid JSON",
            after_head(
                AttemptPlan::ok(messages.iter().cloned().map(Step::Message).collect())
                    .with_end(End::Close),
            ),
            3,
        )
        .expect(format!("connection closed by the server{backing_off}"));
        case.not_stderr = vec!["disconnect message"];
        case.stdout = lines(&messages);
        cases.push(case);
    }

    // One byte every 50 ms, forever (scaled from "every second"); the stall timeout (300 ms)
    // never fires. Two complete messages are printed as they end; the third never ends and
    // is dropped when it passes --max-message-bytes 16.
    {
        let mut bytes = b"{\"t\":1}\r\n{\"t\":2}\r\n".to_vec();
        bytes.extend_from_slice(&[b'a'; 200]);
        let mut case = Case::new(
            "a byte every 50 ms forever",
            after_head(
                AttemptPlan::ok(vec![Step::Trickle {
                    bytes,
                    every: Duration::from_millis(50),
                }])
                .with_end(End::Stall),
            ),
            3,
        )
        .expect(format!(
            "frame too large: a message is longer than --max-message-bytes 16; dropped the connection{backing_off}"
        ));
        case.max_message_bytes = 16;
        case.stall_timeout = "300ms";
        case.not_stderr = vec!["stall detected"];
        case.stdout = lines(&[b"{\"t\":1}".to_vec(), b"{\"t\":2}".to_vec()]);
        // 18 bytes of messages and 17 of the endless one, 50 ms apart.
        case.at_least = Duration::from_millis(34 * 50);
        cases.push(case);
    }

    // Accepts, reads the request, never answers: a stall each time, then giving up.
    {
        let mut case = Case::new("never answers", vec![AttemptPlan::never_answers()], 2)
            .expect(format!("stall detected: no data for 300ms{backing_off}"))
            .expect(format!(
                "{GAVE_UP}; last: stall detected: no data for 300ms"
            ));
        case.stall_timeout = "300ms";
        case.at_least = Duration::from_millis(600);
        cases.push(case);
    }

    // Half a head, then close: a network error each time, then giving up.
    cases.push(
        Case::new("half a head", vec![AttemptPlan::half_head()], 2)
            .expect(format!("connection closed by the server{backing_off}"))
            .expect(format!("{GAVE_UP}; last: connection closed by the server")),
    );

    cases
}

/// A gzip member of `total` zero bytes (a multiple of 1 MiB), compressed at the deflate
/// limit of about 1030:1. Compressing 1 GiB byte by byte would take minutes in a debug
/// build, so one 1 MiB block is compressed and its bytes repeated: after a full flush the
/// compressor starts afresh, so every block after the first compresses to the same bytes
/// (checked), and the blocks join into one valid deflate stream. The trailer's CRC is
/// combined from the block's.
fn gzip_zeros(total: usize) -> Vec<u8> {
    const BLOCK: usize = 1 << 20;
    assert!(total.is_multiple_of(BLOCK) && total >= 3 * BLOCK);
    let zeros = vec![0u8; BLOCK];
    let mut compress = Compress::new(Compression::best(), false);
    let first = deflate(&mut compress, &zeros, FlushCompress::Full);
    let second = deflate(&mut compress, &zeros, FlushCompress::Full);
    let third = deflate(&mut compress, &zeros, FlushCompress::Full);
    assert_eq!(
        second, third,
        "a fully flushed block compresses alike every time"
    );
    let end = deflate(&mut compress, &[], FlushCompress::Finish);

    let blocks = total / BLOCK;
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend_from_slice(&first);
    for _ in 1..blocks {
        out.extend_from_slice(&second);
    }
    out.extend_from_slice(&end);
    let mut block_crc = Crc::new();
    block_crc.update(&zeros);
    let mut crc = Crc::new();
    for _ in 0..blocks {
        crc.combine(&block_crc);
    }
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out
}

/// Compresses all of `input` with `flush`, returning the bytes it produced.
fn deflate(compress: &mut Compress, input: &[u8], flush: FlushCompress) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 * 1024);
    let start = compress.total_in();
    loop {
        let done = (compress.total_in() - start) as usize;
        if out.len() == out.capacity() {
            out.reserve(64 * 1024);
        }
        compress
            .compress_vec(&input[done..], &mut out, flush)
            .expect("compression");
        let all_in = (compress.total_in() - start) as usize == input.len();
        // Room left in `out` means the flush completed.
        if all_in && out.len() < out.capacity() {
            return out;
        }
    }
}
