//! Writes the fuzz seeds under `fuzz/seeds/<target>/`.
//!
//! Realistic seeds come from the test server: every builtin scenario, and a plan for each
//! [`Step`] kind and each hostile case, is played by a pure [`Session`] against a real
//! [`SiteStream`] in virtual time. What the stream was fed becomes a `stream` seed (the exact
//! sequence of inputs, encoded for `arbitrary`), and the bytes each connection carried are cut
//! into `response_head`, `chunked`, `framer` and `gzip_body` seeds. Hand-made hostile inputs
//! are added for every target. Every seed is run through its target's checks before it is
//! written.
//!
//! Run from the repository root: `cargo run --release --manifest-path fuzz/Cargo.toml -p
//! sitebucket-seedgen`. Files whose names start with `scenario-`, `step-`, `hostile-` or
//! `commands-` are generated (and replaced); any other seed (a fuzzer finding) is kept.

#[path = "../../../crates/sitebucket-proto/tests/support/fuzz_logic.rs"]
mod fuzz_logic;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
use flate2::{Compression, GzBuilder};
use fuzz_logic::{Chunk, Op, Setup, StreamInput, UNIX_START};
use sitebucket_proto::{Action, SiteStream, _benchable::{parse_head, BodyKind, ChunkedDecoder, ContentEncoding}};
use sitebucket_testserver::corpus::{self, Corpus};
use sitebucket_testserver::{
    AttemptPlan, BodyEncoding, ChunkPlan, Credentials, End, Framing, Output, Repeat, Scenario,
    Session, Step, Transfer, BUILTIN_SCENARIOS,
};

/// Generated file-name prefixes (replaced on every run).
const GENERATED: [&str; 4] = ["scenario-", "step-", "hostile-", "commands-"];
/// The most bytes of a connection cut into one byte-level seed.
const BYTE_SEED_CAP: usize = 32 * 1024;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../seeds");
    let mut seeds = Seeds::default();
    scenario_seeds(&mut seeds);
    step_seeds(&mut seeds);
    hostile_stream_seeds(&mut seeds);
    command_seeds(&mut seeds);
    hostile_byte_seeds(&mut seeds);
    seeds.write(&root);
}

/// Seeds by target, name and bytes.
#[derive(Default)]
struct Seeds {
    files: Vec<(&'static str, String, Vec<u8>)>,
}

impl Seeds {
    fn add(&mut self, target: &'static str, name: impl Into<String>, data: Vec<u8>) {
        let name = name.into();
        assert!(GENERATED.iter().any(|p| name.starts_with(p)), "{name}");
        // Byte-level seeds that differ only in their header bytes (or, for heads, only in the
        // body after the head) add nothing: keep the first.
        let key = |data: &[u8]| -> Vec<u8> {
            let skip = match target {
                "framer" => 4,
                "gzip_body" => 3,
                "chunked" | "response_head" => 1,
                _ => 0,
            };
            let rest = &data[skip.min(data.len())..];
            match (target, parse_head(rest)) {
                ("response_head", Ok(Some((_, n)))) => rest[..n].to_vec(),
                _ => rest.to_vec(),
            }
        };
        let new_key = key(&data);
        if self
            .files
            .iter()
            .any(|(t, n, d)| *t == target && (*n == name || key(d) == new_key))
        {
            return;
        }
        self.files.push((target, name, data));
    }

    fn stream(&mut self, name: impl Into<String>, input: &StreamInput) {
        self.add("stream", name, input.to_bytes());
    }

    fn write(&self, root: &Path) {
        for target in fuzz_logic::TARGETS {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if GENERATED.iter().any(|p| name.starts_with(p)) {
                    std::fs::remove_file(&path).unwrap();
                }
            }
        }
        let mut total = 0;
        for (target, name, data) in &self.files {
            let started = Instant::now();
            assert!(fuzz_logic::run_target(target, data));
            let took = started.elapsed();
            std::fs::write(root.join(target).join(name), data).unwrap();
            total += data.len();
            println!(
                "{target:>13}/{name:<50} {:>8} bytes {:>6} ms",
                data.len(),
                took.as_millis()
            );
        }
        println!("{} seeds, {total} bytes", self.files.len());
    }
}

// ----- playing a scenario against a SiteStream -----

/// A [`SiteStream`] fed by test-server [`Session`]s in virtual time, recording every input
/// as an [`Op`] exactly as the `stream` harness will replay it.
struct Sim {
    scenario: Scenario,
    credentials: Credentials,
    stream: SiteStream,
    start: Instant,
    now: Instant,
    ops: Vec<Op>,
    session: Option<Session>,
    attempts: usize,
    pending_connect: bool,
    stream_deadline: Option<Instant>,
    finished: bool,
    /// What the server sent on each connection.
    connections: Vec<Vec<u8>>,
    input_bytes: usize,
    read_size: usize,
    /// The most bytes the last allowed connection may carry before the run stops.
    conn_cap: usize,
}

impl Sim {
    fn new(scenario: Scenario, setup: &Setup, read_size: usize) -> Sim {
        let now = Instant::now();
        let mut sim = Sim {
            scenario,
            credentials: Credentials::test_default(),
            stream: SiteStream::new(setup.config()),
            start: now,
            now,
            ops: Vec::new(),
            session: None,
            attempts: 0,
            pending_connect: false,
            stream_deadline: None,
            finished: false,
            connections: Vec::new(),
            input_bytes: 0,
            read_size,
            conn_cap: usize::MAX,
        };
        sim.drain();
        sim
    }

    /// Applies `op` as the harness does, records it, and drains the stream.
    fn apply(&mut self, op: Op) {
        let now = self.now;
        match &op {
            Op::Input(Chunk(bytes)) => self.stream.handle_input(now, bytes),
            Op::Eof => self.stream.handle_eof(now),
            Op::Connected => {
                let unix = UNIX_START + now.duration_since(self.start).as_secs();
                self.stream.handle_connected(now, unix);
            }
            Op::ConnectFailed(_) => {
                self.pending_connect = false;
                self.stream
                    .handle_connect_failed(now, std::io::ErrorKind::ConnectionRefused);
            }
            Op::Advance(ms) => self.now += Duration::from_millis(u64::from(*ms)),
            Op::ToDeadline => {
                if let Some(deadline) = self.stream.deadline() {
                    self.now = self.now.max(deadline);
                }
                self.stream.handle_timeout(self.now);
            }
            Op::Timeout => self.stream.handle_timeout(now),
            Op::Disconnect => self.stream.disconnect(),
            Op::ResetThrottles => self.stream.reset_throttles(),
        }
        self.ops.push(op);
        self.drain();
    }

    fn drain(&mut self) {
        loop {
            match self.stream.poll_action(self.now) {
                Action::Connect { .. } => self.pending_connect = true,
                Action::Transmit(bytes) => {
                    if let Some(session) = &mut self.session {
                        session.handle_input(self.now, &bytes);
                    }
                }
                Action::Close => {
                    self.pending_connect = false;
                    if let Some(mut session) = self.session.take() {
                        session.handle_eof(self.now);
                    }
                }
                Action::Wait(deadline) => {
                    self.stream_deadline = Some(deadline);
                    return;
                }
                Action::Finished(_) => {
                    self.finished = true;
                    self.stream_deadline = None;
                    return;
                }
                Action::Event(_) => {}
            }
        }
    }

    /// Answers connects with sessions and moves time on until the stream finishes, `attempts`
    /// connections were made, or `byte_cap` bytes were fed.
    fn run(&mut self, attempts: usize, byte_cap: usize, op_cap: usize) {
        while !self.finished && self.ops.len() < op_cap && self.input_bytes < byte_cap {
            if self.pending_connect {
                self.pending_connect = false;
                if self.attempts == attempts {
                    self.apply(Op::Disconnect);
                    return;
                }
                let plan = self.scenario.plan_for(self.attempts);
                self.session = Some(Session::new(
                    plan,
                    &self.credentials,
                    self.attempts,
                    self.now,
                ));
                self.attempts += 1;
                self.connections.push(Vec::new());
                self.apply(Op::Connected);
                continue;
            }
            let now = self.now;
            let output = self.session.as_mut().map(|s| s.poll_output(now));
            let mut session_deadline = None;
            match output {
                Some(Output::Transmit(bytes)) => {
                    let last = self.attempts == attempts;
                    if last && self.connections.last().map_or(0, Vec::len) >= self.conn_cap {
                        self.apply(Op::Disconnect);
                        return;
                    }
                    for piece in bytes.chunks(self.read_size) {
                        if self.session.is_none() || self.input_bytes >= byte_cap {
                            break;
                        }
                        self.connections
                            .last_mut()
                            .unwrap()
                            .extend_from_slice(piece);
                        self.input_bytes += piece.len();
                        self.apply(Op::Input(Chunk(piece.to_vec())));
                    }
                    continue;
                }
                Some(Output::Close) => {
                    self.session = None;
                    self.apply(Op::Eof);
                    continue;
                }
                Some(Output::Wait(deadline)) => session_deadline = Some(deadline),
                Some(Output::Idle) | None => {}
            }
            match (session_deadline, self.stream_deadline) {
                (Some(s), Some(d)) if s < d => self.advance_to(s),
                (Some(s), None) => self.advance_to(s),
                (_, Some(_)) => self.apply(Op::ToDeadline),
                (None, None) => return,
            }
        }
    }

    fn advance_to(&mut self, t: Instant) {
        while self.now < t {
            let left = t - self.now;
            let ms = left.as_millis() + u128::from(!left.subsec_nanos().is_multiple_of(1_000_000));
            self.apply(Op::Advance(ms.min(u128::from(u16::MAX)) as u16));
        }
    }

    fn input(&self, setup: &Setup) -> StreamInput {
        StreamInput {
            setup: setup.clone(),
            ops: self.ops.clone(),
        }
    }
}

/// Plays `scenario` and adds the stream seed and the byte-level seeds cut from it.
#[allow(clippy::too_many_arguments)]
fn play(
    seeds: &mut Seeds,
    name: &str,
    scenario: Scenario,
    setup: &Setup,
    attempts: usize,
    byte_cap: usize,
    read_size: usize,
    conn_cap: usize,
) -> Sim {
    let mut sim = Sim::new(scenario, setup, read_size);
    sim.conn_cap = conn_cap;
    sim.run(attempts, byte_cap, 4000);
    seeds.stream(name.to_string(), &sim.input(setup));
    for (i, wire) in sim.connections.iter().enumerate() {
        cut_connection(seeds, &format!("{name}-conn{i}"), wire, setup.max_message);
    }
    sim
}

/// Splits what one connection carried into head, chunked, framer and gzip seeds.
fn cut_connection(seeds: &mut Seeds, name: &str, wire: &[u8], max_message: u16) {
    if wire.is_empty() {
        return;
    }
    let split = (name.len() % 200) as u8 + 2;
    let mut head_seed = vec![split];
    head_seed.extend_from_slice(&wire[..wire.len().min(1024)]);
    seeds.add("response_head", name, head_seed);
    let Ok(Some((head, consumed))) = parse_head(wire) else {
        return;
    };
    let body = &wire[consumed..];
    let decoded = match head.body {
        BodyKind::Chunked => {
            let mut seed = vec![split];
            seed.extend_from_slice(&body[..body.len().min(BYTE_SEED_CAP)]);
            seeds.add("chunked", name, seed);
            dechunk(body)
        }
        _ => body.to_vec(),
    };
    if decoded.is_empty() {
        return;
    }
    match head.encoding {
        ContentEncoding::Identity => {
            let framing = u8::from(
                !decoded.is_empty()
                    && decoded.iter().take_while(|b| b.is_ascii_digit()).count() > 0,
            );
            let [lo, hi] = max_message.to_le_bytes();
            let mut seed = vec![framing, lo, hi, split];
            seed.extend_from_slice(&decoded[..decoded.len().min(BYTE_SEED_CAP)]);
            seeds.add("framer", name, seed);
        }
        encoding => {
            let mode = if encoding == ContentEncoding::Gzip {
                0
            } else {
                1
            };
            let mut seed = vec![mode, 255, split];
            seed.extend_from_slice(&decoded[..decoded.len().min(BYTE_SEED_CAP)]);
            seeds.add("gzip_body", name, seed);
        }
    }
}

/// The payload of a chunked body (as far as it is valid).
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut decoder = ChunkedDecoder::new();
    let mut out = Vec::new();
    while let Ok(step) = decoder.decode(body) {
        out.extend_from_slice(step.data);
        body = &body[step.consumed..];
        if step.done || step.consumed == 0 {
            break;
        }
    }
    out
}

fn setup(length: bool, gzip: bool) -> Setup {
    Setup {
        length_framing: length,
        gzip,
        ..Setup::realistic()
    }
}

fn variant_name(length: bool, gzip: bool) -> String {
    format!(
        "{}-{}",
        if length { "length" } else { "crlf" },
        if gzip { "gzip" } else { "identity" }
    )
}

// ----- the seeds -----

/// Every builtin scenario, in every framing and encoding.
fn scenario_seeds(seeds: &mut Seeds) {
    for name in BUILTIN_SCENARIOS {
        for (length, gzip) in [(false, false), (true, false), (false, true), (true, true)] {
            let scenario = Scenario::builtin(name).unwrap();
            // flaky: its seven plans, the last (a steady stream) for 8 KiB.
            let (attempts, cap, read, conn_cap) = match *name {
                "flaky" => (7, 160 * 1024, 4096, 8 * 1024),
                "firehose" => (1, 48 * 1024, 16 * 1024, usize::MAX),
                _ => (1, 40 * 1024, 1460, usize::MAX),
            };
            play(
                seeds,
                &format!("scenario-{name}-{}", variant_name(length, gzip)),
                scenario,
                &setup(length, gzip),
                attempts,
                cap,
                read,
                conn_cap,
            );
        }
    }
}

/// A plan for each kind of [`Step`], transfer, chunk plan and end.
fn step_seeds(seeds: &mut Seeds) {
    let mut corpus = Corpus::new(11);
    let control = Step::Message(corpus::control(corpus::STREAM_ID));
    let mut msg = || Step::Message(corpus.site_message());
    let cases: Vec<(&str, AttemptPlan)> = vec![
        (
            "message",
            AttemptPlan::ok(vec![control.clone(), msg(), msg()]),
        ),
        (
            "keepalive",
            AttemptPlan::ok(vec![
                Step::KeepAlive,
                msg(),
                Step::KeepAlive,
                Step::KeepAlive,
            ]),
        ),
        (
            "wait",
            AttemptPlan::ok(vec![msg(), Step::Wait(Duration::from_secs(5)), msg()]),
        ),
        (
            "disconnect",
            AttemptPlan::ok(vec![
                msg(),
                Step::Disconnect {
                    code: 4,
                    reason: "stall".into(),
                },
                msg(),
            ]),
        ),
        (
            "oversized",
            AttemptPlan::ok(vec![msg(), Step::Oversized(70_000)]),
        ),
        (
            "rawbody",
            AttemptPlan::ok(vec![msg(), Step::RawBody(b"{\"half\":".to_vec()), msg()]),
        ),
        (
            "rawwire",
            AttemptPlan::ok(vec![Step::RawWire(b"5\r\n{}\r\n\r\n".to_vec()), msg()]),
        ),
        (
            "trickle",
            AttemptPlan::ok(vec![Step::Trickle {
                bytes: b"{\"text\":\"slow\"}\r\n".to_vec(),
                every: Duration::from_millis(300),
            }]),
        ),
        ("closenow", AttemptPlan::ok(vec![msg(), Step::CloseNow])),
        (
            "repeat",
            AttemptPlan::ok(vec![Step::Repeat(
                Repeat::once(vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()])
                    .with_count(9)
                    .with_interval(Duration::from_millis(20))
                    .with_keep_alive_every(4),
            )]),
        ),
        (
            "content-length",
            AttemptPlan::ok(vec![msg(), msg()]).with_transfer(Transfer::ContentLength),
        ),
        (
            "until-eof",
            AttemptPlan::ok(vec![msg(), msg()]).with_transfer(Transfer::UntilEof),
        ),
        (
            "chunks-fixed",
            AttemptPlan::ok(vec![msg(), Step::KeepAlive, msg()]).with_chunks(ChunkPlan::Fixed(7)),
        ),
        (
            "chunks-random",
            AttemptPlan::ok(vec![msg(), msg(), msg()]).with_chunks(ChunkPlan::Random {
                seed: 5,
                min: 1,
                max: 300,
            }),
        ),
        (
            "chunks-cutpoints",
            AttemptPlan::ok(vec![msg(), msg()])
                .with_chunks(ChunkPlan::CutPoints(vec![1, 2, 3, 50])),
        ),
        (
            "end-stall",
            AttemptPlan::ok(vec![msg()]).with_end(End::Stall),
        ),
        (
            "end-keepalives",
            AttemptPlan::ok(vec![msg()]).with_end(End::HoldWithKeepAlives(Duration::from_secs(30))),
        ),
        (
            "deflate",
            AttemptPlan::ok(vec![msg(), Step::KeepAlive, msg()])
                .with_encoding(BodyEncoding::Deflate),
        ),
        (
            "gzip-length",
            AttemptPlan::ok(vec![msg(), Step::KeepAlive, msg()])
                .with_encoding(BodyEncoding::Gzip)
                .with_framing(Framing::Length),
        ),
    ];
    for (name, plan) in cases {
        play(
            seeds,
            &format!("step-{name}"),
            Scenario::single(plan),
            &Setup::realistic(),
            2,
            64 * 1024,
            2048,
            usize::MAX,
        );
    }
}

/// The hostile server cases of issue 6, each against a stream.
fn hostile_stream_seeds(seeds: &mut Seeds) {
    let ok_head: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    let raw = |bytes: Vec<u8>| AttemptPlan::ok(vec![Step::RawWire(bytes)]).without_head();
    // Under the 64-header limit, over the 16 KiB one.
    let mut big_head = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..40 {
        big_head.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "v".repeat(450)).as_bytes());
    }
    big_head.extend_from_slice(b"\r\n");
    let mut endless_line = b"HTTP/1.1 200 OK\r\nX-Endless: ".to_vec();
    endless_line.extend(std::iter::repeat_n(b'z', 17 * 1024));
    let with_head = |rest: &[u8]| {
        let mut v = ok_head.to_vec();
        v.extend_from_slice(rest);
        raw(v)
    };
    let mut endless_chunk = b"ffffffff\r\n".to_vec();
    endless_chunk.extend(std::iter::repeat_n(b'a', 20 * 1024));
    let real = Setup::realistic();
    let small = Setup {
        max_message: 64,
        ..Setup::realistic()
    };
    let length = Setup {
        length_framing: true,
        ..Setup::realistic()
    };
    let gzip = Setup {
        gzip: true,
        ..Setup::realistic()
    };
    let cases: Vec<(&str, AttemptPlan, &Setup)> = vec![
        ("big-head", raw(big_head), &real),
        ("endless-header-line", raw(endless_line), &real),
        (
            "chunk-size-20-hex-digits",
            with_head(b"ffffffffffffffffffff\r\n"),
            &real,
        ),
        ("chunk-size-negative", with_head(b"-5\r\nhello\r\n"), &real),
        ("chunk-size-not-hex", with_head(b"zz\r\nhello\r\n"), &real),
        ("chunk-never-ends", with_head(&endless_chunk), &real),
        (
            "gzip-bomb",
            AttemptPlan::ok(vec![Step::Oversized(8 << 20)]).with_encoding(BodyEncoding::Gzip),
            &gzip,
        ),
        (
            "gzip-keepalive-bomb",
            AttemptPlan::ok(vec![
                Step::RawBody(b"\r\n".repeat(100_000)),
                Step::Message(b"{}".to_vec()),
            ])
            .with_encoding(BodyEncoding::Gzip),
            &gzip,
        ),
        (
            "frame-just-over-max",
            AttemptPlan::ok(vec![Step::Message(vec![b'x'; 64]), Step::Oversized(65)]),
            &small,
        ),
        (
            "length-99999999999",
            AttemptPlan::ok(vec![
                Step::Message(b"{}".to_vec()),
                Step::RawBody(b"99999999999\r\n".to_vec()),
            ]),
            &length,
        ),
        (
            "invalid-utf8-and-json",
            AttemptPlan::ok(vec![
                Step::Message(vec![b'{', 0xff, 0xfe, b'}']),
                Step::Message(b"{not json".to_vec()),
                Step::Message(b"{\"disconnect\":{\"code\":\"x\"}}".to_vec()),
                Step::Message(b"{\"control\":7}".to_vec()),
            ]),
            &real,
        ),
        (
            "trickle-forever",
            AttemptPlan::ok(vec![Step::Trickle {
                bytes: vec![b' '; 300],
                every: Duration::from_secs(1),
            }]),
            &real,
        ),
        ("never-answers", AttemptPlan::never_answers(), &real),
        ("half-head", AttemptPlan::half_head(), &real),
        ("fatal-401", AttemptPlan::status(401, "Unauthorized"), &real),
        (
            "revoked",
            AttemptPlan::ok(vec![Step::Disconnect {
                code: 6,
                reason: "token revoked".into(),
            }]),
            &real,
        ),
    ];
    for (name, plan, setup) in cases {
        play(
            seeds,
            &format!("hostile-{name}"),
            Scenario::single(plan),
            setup,
            3,
            64 * 1024,
            4096,
            usize::MAX,
        );
    }
    // Retry limit: 503 until the stream gives up.
    let limited = Setup {
        retry_limit: 3,
        squared: true,
        jitter: 128,
        ..Setup::realistic()
    };
    play(
        seeds,
        "hostile-503-until-gave-up",
        Scenario::single(AttemptPlan::status(503, "Service Unavailable")),
        &limited,
        10,
        64 * 1024,
        4096,
        usize::MAX,
    );
}

/// The commands and connect failures: disconnect mid-stream, reset, refused connects.
fn command_seeds(seeds: &mut Seeds) {
    let mut corpus = Corpus::new(12);
    let steps: Vec<Step> = (0..3)
        .map(|_| Step::Message(corpus.site_message()))
        .collect();
    let mut sim = Sim::new(
        Scenario::single(AttemptPlan::ok(steps).with_end(End::Stall)),
        &Setup::realistic(),
        1024,
    );
    sim.run(1, 1 << 20, 400);
    // `run` ended with a Disconnect when the second attempt came; revive and go again.
    sim.apply(Op::ResetThrottles);
    sim.run(2, 1 << 20, 800);
    sim.apply(Op::Timeout);
    sim.apply(Op::Disconnect);
    sim.apply(Op::Advance(1000));
    sim.apply(Op::ResetThrottles);
    for _ in 0..4 {
        sim.apply(Op::ConnectFailed(0));
        sim.apply(Op::ToDeadline);
    }
    sim.apply(Op::Connected);
    sim.apply(Op::Disconnect);
    seeds.stream(
        "commands-disconnect-reset-refused",
        &sim.input(&Setup::realistic()),
    );

    // Connect timeouts with a short connect timeout and jitter, until the limit.
    let setup = Setup {
        connect_tenths: 9,
        retry_limit: 4,
        jitter: 255,
        ..Setup::realistic()
    };
    let ops = [Op::ToDeadline, Op::Timeout, Op::ToDeadline, Op::ToDeadline]
        .into_iter()
        .cycle()
        .take(12)
        .collect();
    seeds.stream("commands-connect-timeouts", &StreamInput { setup, ops });
}

/// Hand-made hostile inputs for the byte-level targets.
fn hostile_byte_seeds(seeds: &mut Seeds) {
    // framer: [mode, max_lo, max_hi, split, body]
    let framer = |mode: u8, max: u16, split: u8, body: &[u8]| {
        let [lo, hi] = max.to_le_bytes();
        let mut v = vec![mode, lo, hi, split];
        v.extend_from_slice(body);
        v
    };
    let f: Vec<(&str, Vec<u8>)> = vec![
        (
            "hostile-length-99999999999",
            framer(1, 1000, 3, b"5\r\nabc\r\n99999999999\r\n"),
        ),
        ("hostile-length-zero", framer(1, 1000, 3, b"\r\n0\r\n")),
        (
            "hostile-length-negative",
            framer(1, 1000, 3, b"-5\r\nabc\r\n"),
        ),
        ("hostile-length-bare-cr", framer(1, 1000, 1, b"5\rabc\r\n")),
        (
            "hostile-length-over-max",
            framer(1, 10, 5, b"12\r\n0123456789\r\n13\r\n"),
        ),
        (
            "hostile-length-no-crlf",
            framer(1, 10, 6, b"10\r\n0123456789\n\n3\r\nab\r\n"),
        ),
        (
            "hostile-crlf-over-max",
            framer(0, 8, 4, b"12345678\r\n123456789"),
        ),
        (
            "hostile-crlf-bare-lf-cr",
            framer(0, 50, 9, b"\n\n\r\r\n a\nb\rc\r\n\r\n\r\r\r\n"),
        ),
        ("hostile-crlf-max-zero", framer(0, 0, 2, b"\r\n\n\r\nx\r\n")),
    ];
    for (name, data) in f {
        seeds.add("framer", name, data);
    }

    let chunked = |split: u8, body: &[u8]| {
        let mut v = vec![split];
        v.extend_from_slice(body);
        v
    };
    let mut long_ext = b"5;".to_vec();
    long_ext.extend(std::iter::repeat_n(b'e', 5000));
    long_ext.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
    let mut big_trailers = b"3\r\nabc\r\n0\r\n".to_vec();
    for i in 0..400 {
        big_trailers.extend_from_slice(format!("X-T{i}: {}\r\n", "t".repeat(40)).as_bytes());
    }
    big_trailers.extend_from_slice(b"\r\n");
    let mut endless = b"ffffffff\r\n".to_vec();
    endless.extend(std::iter::repeat_n(b'q', 8192));
    let c: Vec<(&str, Vec<u8>)> = vec![
        (
            "hostile-20-hex-digits",
            chunked(7, b"3\r\nabc\r\nffffffffffffffffffff\r\n"),
        ),
        ("hostile-negative-size", chunked(3, b"-5\r\nhello\r\n")),
        ("hostile-non-hex-size", chunked(3, b"zz\r\nhello\r\n")),
        ("hostile-endless-chunk", chunked(9, &endless)),
        ("hostile-long-extension", chunked(10, &long_ext)),
        ("hostile-big-trailers", chunked(11, &big_trailers)),
        ("hostile-bare-cr", chunked(1, b"5\r\nhello\r\n3\rabc")),
        ("hostile-missing-crlf", chunked(1, b"5\r\nhelloXX3\r\nabc\r\n")),
        (
            "hostile-valid-with-extensions-and-trailers",
            chunked(
                4,
                b"5 ;name=value\r\nhello\r\n6\t; a ; b=\"c\"\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nafter",
            ),
        ),
    ];
    for (name, data) in c {
        seeds.add("chunked", name, data);
    }

    let head = |split: u8, bytes: &[u8]| {
        let mut v = vec![split];
        v.extend_from_slice(bytes);
        v
    };
    let mut over = b"HTTP/1.1 200 OK\r\n".to_vec();
    while over.len() <= 16 * 1024 {
        over.extend_from_slice(format!("X-Filler: {}\r\n", "0".repeat(500)).as_bytes());
    }
    over.extend_from_slice(b"\r\n");
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..70 {
        many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let mut endless_line = b"HTTP/1.1 200 OK\r\nX-Endless: ".to_vec();
    endless_line.extend(std::iter::repeat_n(b'z', 16 * 1024));
    let h: Vec<(&str, Vec<u8>)> = vec![
        ("hostile-head-over-16k", head(40, &over)),
        ("hostile-endless-header-line", head(41, &endless_line)),
        ("hostile-too-many-headers", head(3, &many)),
        (
            "hostile-bad-content-length",
            head(2, b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
        ),
        (
            "hostile-conflicting-content-length",
            head(
                2,
                b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\nContent-Length: 5\r\n\r\n",
            ),
        ),
        (
            "hostile-transfer-encoding-gzip",
            head(
                2,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            ),
        ),
        (
            "hostile-content-encoding-br",
            head(2, b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\n"),
        ),
        (
            "hostile-stacked-encodings",
            head(
                2,
                b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip, deflate\r\n\r\n",
            ),
        ),
        (
            "hostile-status-204-with-length",
            head(
                5,
                b"HTTP/1.0 204 No Content\r\nContent-Length: 10\r\n\r\n0123456789",
            ),
        ),
        (
            "hostile-status-1xx",
            head(5, b"HTTP/1.1 101 Switching\r\n\r\n"),
        ),
        (
            "hostile-half-head",
            head(1, b"HTTP/1.1 200 OK\r\nTransfer-Enc"),
        ),
        ("hostile-not-http", head(1, b"SSH-2.0-OpenSSH\r\n\r\n")),
        ("hostile-bad-status", head(1, b"HTTP/1.1 2000 OK\r\n\r\n")),
        (
            "hostile-head-then-bad-chunk",
            head(
                0,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            ),
        ),
        (
            "hostile-lf-only-and-x-gzip",
            head(
                6,
                b"HTTP/1.1 200 OK\nContent-Encoding: x-gzip\nContent-Length: 3\n\nabc",
            ),
        ),
    ];
    for (name, data) in h {
        seeds.add("response_head", name, data);
    }

    // gzip_body: [mode (0 gzip, 1 deflate, 2 identity), window, split, body]
    let gz = |mode: u8, window: u8, split: u8, body: &[u8]| {
        let mut v = vec![mode, window, split];
        v.extend_from_slice(body);
        v
    };
    let text = b"{\"text\":\"hello\"}\r\n".repeat(50);
    let gzip_of = |data: &[u8]| {
        let mut e = GzEncoder::new(Vec::new(), Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let bomb = gzip_of(&vec![b'\n'; 8 << 20]);
    let mut two_members = gzip_of(b"{\"a\":1}\r\n");
    two_members.extend(gzip_of(b"{\"b\":2}\r\n"));
    let mut trailing = gzip_of(b"{\"a\":1}\r\n");
    trailing.extend_from_slice(b"garbage");
    let mut bad_crc = gzip_of(&text);
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 1;
    let mut bad_size = gzip_of(&text);
    bad_size[n - 1] ^= 1;
    let full_header = {
        let mut e = GzBuilder::new()
            .filename("stream.json")
            .comment("a comment")
            .extra(vec![1, 2, 3, 4])
            .operating_system(3)
            .write(Vec::new(), Compression::fast());
        e.write_all(&text).unwrap();
        e.finish().unwrap()
    };
    let long_fname = {
        let mut e = GzBuilder::new()
            .filename(vec![b'n'; 2000])
            .write(Vec::new(), Compression::fast());
        e.write_all(&text).unwrap();
        e.finish().unwrap()
    };
    let mut fhcrc = gzip_of(&text);
    fhcrc[3] |= 0x02; // FHCRC: insert a correct header CRC-16 after the 10-byte header.
    let crc16 = {
        let mut crc = flate2::Crc::new();
        crc.update(&fhcrc[..10]);
        (crc.sum() & 0xFFFF) as u16
    };
    fhcrc.splice(10..10, crc16.to_le_bytes());
    let mut reserved = gzip_of(&text);
    reserved[3] |= 0x20;
    let mut method = gzip_of(&text);
    method[2] = 7;
    let zlib = {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(&text).unwrap();
        e.finish().unwrap()
    };
    let raw_deflate = {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
        e.write_all(&text).unwrap();
        e.finish().unwrap()
    };
    let mut zlib_trailing = zlib.clone();
    zlib_trailing.extend_from_slice(b"xx");
    let truncated = gzip_of(&text);
    let g: Vec<(&str, Vec<u8>)> = vec![
        ("hostile-bomb-8mib", gz(0, 255, 0, &bomb)),
        ("hostile-two-members", gz(0, 3, 2, &two_members)),
        ("hostile-trailing-garbage", gz(0, 40, 5, &trailing)),
        ("hostile-bad-crc", gz(0, 40, 5, &bad_crc)),
        ("hostile-bad-isize", gz(0, 40, 5, &bad_size)),
        ("hostile-full-header", gz(0, 7, 1, &full_header)),
        ("hostile-long-fname", gz(0, 40, 5, &long_fname)),
        ("hostile-fhcrc", gz(0, 40, 3, &fhcrc)),
        ("hostile-reserved-flags", gz(0, 40, 5, &reserved)),
        ("hostile-method-7", gz(0, 40, 5, &method)),
        ("hostile-zlib", gz(1, 2, 6, &zlib)),
        ("hostile-raw-deflate", gz(1, 2, 6, &raw_deflate)),
        ("hostile-zlib-trailing", gz(1, 9, 6, &zlib_trailing)),
        (
            "hostile-truncated",
            gz(0, 9, 6, &truncated[..truncated.len() / 2]),
        ),
        ("hostile-identity", gz(2, 4, 6, &text)),
    ];
    for (name, data) in g {
        seeds.add("gzip_body", name, data);
    }
}
