//! One client run against `bench-server firehose`, in its own process, measuring its own CPU.
//!
//! ```text
//! bench-client --driver discard|std|mio|smol|tokio
//!              [--parse raw|typed|threaded|parallel|validate] [--threads N] --addr HOST:PORT
//! ```
//!
//! `discard` is the baseline: a plain socket that sends a request, then reads 64 KiB at a time
//! and throws the bytes away. The drivers run a `SiteStream` (the server's final `disconnect`
//! message, code 7, ends the run) with a parser that drops each message (`raw`), decodes it with
//! `DefaultParser` (`typed`; `threaded`: the same in a `ThreadedParser`, on a thread of its own;
//! `parallel`: the same in a `ParallelParser` on `--threads` workers, default one per core),
//! or only checks that it is valid JSON, keeping nothing (`validate`:
//! `serde_json` into `IgnoredAny`, the floor of any parser that checks its input). It prints one line:
//! `result driver=.. parse=.. bytes=.. messages=.. typed_ok=.. order=.. cpu_ns=.. wall_ns=..`,
//! where `order` is a hash of what the typed handler saw, message after message (kind,
//! `for_user`, tweet id and the raw text's length), equal between runs that saw the same in the same order.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::de::IgnoredAny;
use sitebucket_bench::args::Args;
use sitebucket_bench::os;
use sitebucket_mio::MioDriver;
use sitebucket_proto::message::{Message, ParseError, UserMessage};
use sitebucket_proto::DefaultParser;
use sitebucket_proto::{Config, Parser, SiteStream};
use sitebucket_smol::SmolDriver;
use sitebucket_std::StdDriver;
use sitebucket_thread::{Driver, ListenThread, ParallelParser, ThreadedParser};
use sitebucket_tokio::TokioDriver;

fn main() {
    let args = Args::from_env();
    let addr = args.value("--addr").unwrap_or("127.0.0.1:8080").to_owned();
    let driver = args.value("--driver").unwrap_or("std").to_owned();
    let parse = args.value("--parse").unwrap_or("raw").to_owned();
    let ok = Arc::new(AtomicU64::new(0));
    let order = Arc::new(AtomicU64::new(0));
    let handler = {
        let (ok, order) = (ok.clone(), order.clone());
        let mut hash = OrderHash::default();
        move |message: Result<Message<'_>, ParseError>| {
            hash.add(&message);
            order.store(hash.0, Ordering::Relaxed);
            if let Ok(message) = message {
                std::hint::black_box(&message);
                ok.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    let parser: Box<dyn Parser> = match parse.as_str() {
        "typed" => Box::new(DefaultParser::new(handler)),
        "threaded" => Box::new(
            ThreadedParser::spawn(DefaultParser::new(handler)).unwrap_or_else(|e| fail(&e)),
        ),
        "parallel" => {
            let mut builder = ParallelParser::builder();
            if let Some(threads) = args.value("--threads") {
                builder = builder.threads(threads.parse().unwrap_or_else(|e| fail(&e)));
            }
            Box::new(builder.typed(handler).unwrap_or_else(|e| fail(&e)))
        }
        "validate" => {
            let ok = ok.clone();
            Box::new(move |message: Bytes| {
                if serde_json::from_slice::<IgnoredAny>(&message).is_ok() {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            })
        }
        "raw" => Box::new(|message: Bytes| {
            std::hint::black_box(message);
        }),
        other => fail(&format!("unknown --parse {other}")),
    };
    let config = sitebucket_bench::client_config(format!("http://{addr}/1.1/site.json"))
        .retry_limit(Some(1))
        .build()
        .unwrap_or_else(|e| fail(&e));

    let (cpu0, wall0) = (os::cpu_time(), Instant::now());
    let (bytes, messages) = match driver.as_str() {
        "discard" => (discard(&addr), 0),
        "std" => run(StdDriver::new(), config, parser),
        "mio" => run(MioDriver::new(), config, parser),
        "smol" => run(SmolDriver::new(), config, parser),
        // `ListenThread::run`: a current-thread runtime in this thread, as a tokio user
        // running one stream would have.
        "tokio" => run(TokioDriver::new(), config, parser),
        other => fail(&format!("unknown driver {other}")),
    };
    let (cpu, wall) = (os::cpu_time() - cpu0, wall0.elapsed());
    println!(
        "result driver={driver} parse={parse} bytes={bytes} messages={messages} typed_ok={} order={} cpu_ns={} wall_ns={}",
        ok.load(Ordering::Relaxed),
        order.load(Ordering::Relaxed),
        cpu.as_nanos(),
        wall.as_nanos()
    );
}

/// An FNV-1a hash of what a typed handler saw, message after message.
struct OrderHash(u64);

impl Default for OrderHash {
    fn default() -> Self {
        OrderHash(0xcbf2_9ce4_8422_2325)
    }
}

impl OrderHash {
    fn add(&mut self, message: &Result<Message<'_>, ParseError>) {
        let (kind, user, id, text) = match message {
            Ok(m) => {
                let (id, text) = match m.user_message() {
                    Some(UserMessage::Tweet(t)) => (t.id, t.raw_text.as_bytes().len() as u64),
                    _ => (0, 0),
                };
                (m.kind(), m.for_user().unwrap_or(0), id, text)
            }
            Err(_) => ("error", 0, 0, 0),
        };
        let mix = |hash: &mut u64, bytes: &[u8]| {
            for b in bytes {
                *hash = (*hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
        };
        mix(&mut self.0, kind.as_bytes());
        for n in [user, id, text] {
            mix(&mut self.0, &n.to_le_bytes());
        }
    }
}

/// Runs the stream in this thread until the server's close ends it; (bytes, messages).
fn run<D: Driver>(driver: D, config: Config, parser: Box<dyn Parser>) -> (u64, u64) {
    let mut listen = ListenThread::new(driver, SiteStream::new(config), parser);
    let outcome = listen.run().unwrap_or_else(|e| fail(&e));
    let stats = listen
        .stream()
        .map(|s| s.stats().clone())
        .unwrap_or_default();
    if stats.messages == 0 {
        fail(&format!(
            "no message received; the run ended with {outcome:?}"
        ));
    }
    (stats.bytes, stats.messages)
}

/// The baseline: request, then read and discard until the server closes; bytes read.
fn discard(addr: &str) -> u64 {
    let mut socket = TcpStream::connect(addr).unwrap_or_else(|e| fail(&e));
    socket
        .write_all(b"GET /1.1/site.json?follow=783214 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap_or_else(|e| fail(&e));
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => fail(&e),
        }
    }
}

fn fail(e: &dyn std::fmt::Display) -> ! {
    eprintln!("bench-client: {e}");
    std::process::exit(1)
}
