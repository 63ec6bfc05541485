//! `cargo xtask demo` — the project's main job on an embedded default.
//!
//! Starts the scripted test server on loopback (TLS, gzip, chunks cut anywhere) with a
//! realistic Site Streams session — control messages, friends lists, tweets with non-ASCII
//! text, events, deletes, keep-alives — and the trouble a long-lived stream meets: a dropped
//! connection, a 420, a stall, a 503 and a `disconnect` message. It runs the same stream on
//! each driver in turn and prints what happened: messages by kind, reconnects and why, the
//! backoff waits, the typed parse of a few messages, and a verdict per driver. It exits
//! non-zero if any driver missed, reordered or altered a message.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sitebucket_proto::message::Message;
use sitebucket_proto::{
    BackoffPolicy, Config, Credentials, Outcome, SiteStream, StreamEvent, TwitterBackoff,
};
use sitebucket_testserver::corpus::{self, Corpus, USER_IDS};
use sitebucket_testserver::{
    AttemptPlan, BodyEncoding, ChunkPlan, End, Scenario, ServerOptions, Step, TestServer,
};
use sitebucket_thread::{Driver, ListenThread, Observer};

/// How long one driver may take before the demo calls it a failure.
const PATIENCE: Duration = Duration::from_secs(20);

/// The scripted session, and every message a client must receive, in order.
fn scenario(seed: u64) -> (Scenario, Vec<Vec<u8>>) {
    let mut corpus = Corpus::new(seed);
    let mut expected = Vec::new();
    let chunks = ChunkPlan::Random {
        seed,
        min: 16,
        max: 4096,
    };
    let messages = |n: usize, corpus: &mut Corpus, expected: &mut Vec<Vec<u8>>| {
        let mut steps = vec![Step::Message(corpus::control(corpus::STREAM_ID))];
        expected.push(corpus::control(corpus::STREAM_ID));
        for i in 0..n {
            let m = corpus.site_message();
            expected.push(m.clone());
            steps.push(Step::Message(m));
            if i % 25 == 24 {
                steps.push(Step::KeepAlive);
            }
        }
        steps
    };
    // 1: the friends preamble, a stream of messages, then the connection drops.
    let mut first = vec![];
    for (i, user) in USER_IDS.iter().enumerate() {
        let preamble = corpus.friends_preamble(*user, i % 2 == 1);
        expected.push(preamble.clone());
        first.push(Step::Message(preamble));
    }
    first.extend(messages(80, &mut corpus, &mut expected));
    first.push(Step::CloseNow);
    // 3: messages, then silence: the client must notice the stall.
    let third = messages(60, &mut corpus, &mut expected);
    // 5: messages, then a disconnect message (code 10, stream exception).
    let mut fifth = messages(60, &mut corpus, &mut expected);
    let disconnect = corpus::disconnect(10, "stream exception");
    expected.push(disconnect);
    fifth.push(Step::Disconnect {
        code: 10,
        reason: "stream exception".into(),
    });
    // 6: the rest, then keep-alives until the client is done.
    let sixth = messages(100, &mut corpus, &mut expected);
    let ok = |steps| {
        AttemptPlan::ok(steps)
            .with_encoding(BodyEncoding::Auto)
            .with_chunks(chunks.clone())
    };
    let attempts = vec![
        ok(first),
        AttemptPlan::status(420, "Enhance Your Calm"),
        ok(third).with_end(End::Stall),
        AttemptPlan::status(503, "Service Unavailable"),
        ok(fifth).with_end(End::Stall),
        ok(sixth).with_end(End::HoldWithKeepAlives(Duration::from_millis(200))),
    ];
    (Scenario::new(attempts), expected)
}

/// The demo's timings: Twitter's rules, scaled down so the whole session takes seconds.
fn config(server: &TestServer) -> Config {
    let c = server.credentials();
    let credentials = Credentials::new(
        c.consumer_key.as_str(),
        c.consumer_secret.as_str(),
        c.token.as_str(),
        c.token_secret.as_str(),
    );
    Config::builder(USER_IDS, credentials)
        .url(server.url())
        .extra_root_certs_pem(server.ca_pem().unwrap_or_default().into_bytes())
        .gzip(true)
        .stall_timeout(Duration::from_millis(800))
        .backoff(BackoffPolicy::Twitter(TwitterBackoff {
            network_step: Duration::from_millis(250),
            network_max: Duration::from_secs(2),
            http_start: Duration::from_millis(300),
            http_max: Duration::from_secs(2),
            rate_limit_start: Duration::from_millis(600),
            rate_limit_max: Duration::from_secs(4),
        }))
        .build()
        .expect("the demo's configuration is valid")
}

/// Keeps every message, and a log line for every other event.
#[derive(Default)]
struct Recorder {
    messages: Mutex<Vec<Bytes>>,
    log: Mutex<Vec<String>>,
    reconnects: Mutex<u32>,
}

impl Observer for Recorder {
    fn event(&self, event: &StreamEvent) {
        let line = match event {
            StreamEvent::Connected {
                status: 200,
                reason,
            } => format!("HTTP 200 {reason}: streaming"),
            // A failed status is told by the Disconnected event that follows.
            StreamEvent::Connected { .. } => return,
            StreamEvent::Disconnected { error, retry_in } => {
                *self.reconnects.lock().unwrap() += 1;
                format!("{error} — reconnecting in {retry_in:?}")
            }
            _ => return,
        };
        self.log.lock().unwrap().push(line);
    }
}

struct Verdict {
    ok: bool,
}

fn run_driver<D: Driver>(driver: D, typed: bool) -> Verdict {
    let (scenario, expected) = scenario(42);
    let server = match TestServer::start(scenario, ServerOptions::tls()) {
        Ok(server) => server,
        Err(e) => {
            println!("  could not start the test server: {e}");
            return Verdict { ok: false };
        }
    };
    let recorder = Arc::new(Recorder::default());
    let sink = recorder.clone();
    let parser = move |message: Bytes| sink.messages.lock().unwrap().push(message);
    let started = Instant::now();
    let mut thread = ListenThread::new(driver.clone(), SiteStream::new(config(&server)), parser);
    thread.set_observer(recorder.clone());
    if let Err(e) = thread.start() {
        println!("  could not start the stream: {e}");
        return Verdict { ok: false };
    }
    while recorder.messages.lock().unwrap().len() < expected.len() && started.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(20));
    }
    thread.close();
    let outcome = thread.join();
    let elapsed = started.elapsed();
    let received = recorder.messages.lock().unwrap().clone();

    println!("  server attempts: {}", server.attempts().len());
    for line in recorder.log.lock().unwrap().iter() {
        println!("  {line}");
    }
    let mut kinds = BTreeMap::<&'static str, usize>::new();
    for m in &received {
        let kind = Message::from_slice(m).map_or("invalid json", |m| m.kind());
        *kinds.entry(kind).or_default() += 1;
    }
    let by_kind: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("  messages by kind: {}", by_kind.join(", "));
    if typed {
        print_typed(&received);
    }
    let exact = received.len() == expected.len()
        && received.iter().zip(&expected).all(|(r, e)| r[..] == e[..]);
    let stopped = outcome == Some(Outcome::Stopped);
    let ok = exact && stopped;
    println!(
        "  verdict: {} {} — {}/{} messages{}, {} reconnects, {:.1} s, ended: {}",
        driver.name(),
        if ok { "OK" } else { "FAILED" },
        received.len(),
        expected.len(),
        if exact {
            " byte-exact and in order"
        } else {
            " (missing, reordered or altered)"
        },
        recorder.reconnects.lock().unwrap(),
        elapsed.as_secs_f64(),
        outcome.map_or("no outcome".into(), |o| o.to_string()),
    );
    Verdict { ok }
}

/// The typed parse of one message of each interesting kind.
fn print_typed(received: &[Bytes]) {
    println!("  typed parse of a few messages:");
    let mut seen = Vec::new();
    for m in received {
        let Ok(message) = Message::from_slice(m) else {
            continue;
        };
        let kind = message.kind();
        let wanted = [
            "control",
            "for_user/friends",
            "for_user/tweet",
            "for_user/event",
            "for_user/delete",
            "disconnect",
        ];
        if wanted.contains(&kind) && !seen.contains(&kind) {
            seen.push(kind);
            let mut text = format!("{message:?}");
            if text.len() > 300 {
                let cut = (0..=300)
                    .rev()
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap_or(0);
                text.truncate(cut);
                text.push('…');
            }
            println!("    {kind}: {text}");
        }
    }
}

fn main() -> ExitCode {
    println!("sitebucket demo: one scripted Site Streams session (TLS, gzip, chunks cut anywhere)");
    println!("with a dropped connection, a 420, a stall, a 503 and a disconnect message,");
    println!("on each driver in turn. Twitter's waits (250 ms / 5 s / 60 s, 90 s stall) are");
    println!("scaled down here (250 ms / 300 ms / 600 ms, 800 ms stall) so it takes seconds.\n");
    let mut all_ok = true;
    println!("== driver: std (one blocking thread per stream)");
    all_ok &= run_driver(sitebucket_std::StdDriver::new(), true).ok;
    println!("\n== driver: mio (one event loop for many streams)");
    all_ok &= run_driver(sitebucket_mio::MioDriver::new(), false).ok;
    println!("\n== driver: smol (async)");
    all_ok &= run_driver(sitebucket_smol::SmolDriver::new(), false).ok;
    println!("\n== driver: tokio (async, a runtime of the driver's own)");
    all_ok &= run_driver(sitebucket_tokio::TokioDriver::new(), false).ok;
    if all_ok {
        println!("\nall drivers received every message, byte-exact and in order.");
        ExitCode::SUCCESS
    } else {
        println!("\nat least one driver missed a message: see above.");
        ExitCode::FAILURE
    }
}
