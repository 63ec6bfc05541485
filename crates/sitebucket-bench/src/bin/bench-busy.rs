//! Many busy streams on ONE thread — a mio event loop, or a tokio current-thread runtime —
//! against `bench-server firehose` in another process; measures the CPU the whole client
//! process spends per message.
//!
//! ```text
//! bench-busy --addr HOST:PORT --streams N --expect-messages M --expect-hash H [--driver mio|tokio]
//! ```
//!
//! Each stream is a `SiteStream` spawned on one shared `MioDriver` (the default) or one
//! `TokioDriver::new()` (its own current-thread runtime, one task per stream) through a
//! `ListenThread` handle; the server streams every connection its seeded firehose as fast as
//! it is read and ends it with a final `disconnect` (code 7). All N streams are active at
//! once, so together they carry what one stream alone would at the client's full speed. Each
//! stream's parser counts and hashes its messages ([`MessageHash`]); a stream is *exact* when
//! it got `M` messages whose hash is `H`, the server's own count and hash of what it sent.
//!
//! CPU (user plus system, and user alone) comes from `getrusage` of the whole process, over
//! two spans:
//! - the *window* from the first message received (checked every few milliseconds) to the
//!   last stream's end, with the messages received in between: the server holds each
//!   response after its head until all N requests are in (`bench-server firehose
//!   --together N`), so the window leaves out the N connects (about 0.1 ms of CPU each
//!   here, which a long-lived stream pays once but a run this short would spread over a
//!   few hundred messages per stream); the N ends are in it;
//! - the whole run, from the first spawn to the last stream's end.
//!
//! Prints `result streams=.. exact=.. messages=.. bytes=.. cpu_ns=.. user_ns=.. wall_ns=..
//! window_messages=.. window_cpu_ns=.. window_user_ns=.. window_wall_ns=..`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sitebucket_bench::args::Args;
use sitebucket_bench::os;
use sitebucket_bench::stream::MessageHash;
use sitebucket_mio::MioDriver;
use sitebucket_proto::{Config, SiteStream};
use sitebucket_thread::{Driver, ListenThread};
use sitebucket_tokio::TokioDriver;

/// What one stream's parser saw.
#[derive(Default)]
struct Tally {
    messages: AtomicU64,
    hash: AtomicU64,
}

/// How often the main thread looks at the tallies to open and close the window.
const CHECK_EVERY: Duration = Duration::from_millis(5);

/// CPU (user plus system, user alone), wall time and messages over one span.
#[derive(Default, Clone, Copy)]
struct Span {
    cpu: Duration,
    user: Duration,
    wall: Duration,
    messages: u64,
}

/// One reading of the process's clocks and the tallies' messages.
#[derive(Clone, Copy)]
struct Mark {
    user: Duration,
    system: Duration,
    at: Instant,
    messages: u64,
}

impl Mark {
    fn now(tallies: &[Arc<Tally>]) -> Self {
        let (user, system) = os::cpu_times();
        Mark {
            user,
            system,
            at: Instant::now(),
            messages: received(tallies),
        }
    }

    /// The span from `self` to `end`.
    fn to(self, end: Mark) -> Span {
        let user = end.user.saturating_sub(self.user);
        Span {
            cpu: user + end.system.saturating_sub(self.system),
            user,
            wall: end.at.duration_since(self.at),
            messages: end.messages.saturating_sub(self.messages),
        }
    }
}

fn received(tallies: &[Arc<Tally>]) -> u64 {
    tallies
        .iter()
        .map(|t| t.messages.load(Ordering::Relaxed))
        .sum()
}

fn main() {
    let args = Args::from_env();
    let addr = args.value("--addr").unwrap_or("127.0.0.1:8080").to_owned();
    let streams: usize = args.get("--streams", 1_000);
    let expect_messages: u64 = args.get("--expect-messages", 0);
    let expect_hash: u64 = args.get("--expect-hash", 0);
    let limit = os::raise_fd_limit(streams as u64 + 256);
    if limit < streams as u64 + 64 {
        fail(&format!(
            "the open-file limit is {limit}: too low for {streams} streams"
        ));
    }
    let config = sitebucket_bench::client_config(format!("http://{addr}/1.1/site.json"))
        .retry_limit(Some(1))
        .connect_timeout(Duration::from_secs(120))
        .build()
        .unwrap_or_else(|e| fail(&e));
    let tallies: Vec<Arc<Tally>> = (0..streams).map(|_| Arc::default()).collect();
    let (whole, window, bytes) = match args.value("--driver").unwrap_or("mio") {
        "mio" => run(MioDriver::new(), &config, &tallies),
        "tokio" => run(TokioDriver::new(), &config, &tallies),
        other => fail(&format!("unknown --driver {other}")),
    };
    let exact = tallies
        .iter()
        .filter(|t| {
            t.messages.load(Ordering::Relaxed) == expect_messages
                && t.hash.load(Ordering::Relaxed) == expect_hash
        })
        .count();
    println!(
        "result streams={streams} exact={exact} messages={} bytes={bytes} cpu_ns={} user_ns={} wall_ns={} window_messages={} window_cpu_ns={} window_user_ns={} window_wall_ns={}",
        whole.messages,
        whole.cpu.as_nanos(),
        whole.user.as_nanos(),
        whole.wall.as_nanos(),
        window.messages,
        window.cpu.as_nanos(),
        window.user.as_nanos(),
        window.wall.as_nanos(),
    );
    // Exit without closing a thousand streams one by one: the OS closes the sockets.
    std::process::exit(0);
}

/// Spawns one stream per tally on `driver`, all at once, and waits for every one to end:
/// the whole run's span, the window's (see the [module docs](self); empty if the window
/// never opened), and the bytes the streams read.
fn run<D: Driver>(driver: D, config: &Config, tallies: &[Arc<Tally>]) -> (Span, Span, u64) {
    let start = Mark::now(tallies);
    let mut handles: Vec<ListenThread<D>> = tallies
        .iter()
        .map(|tally| {
            let tally = tally.clone();
            let mut hash = MessageHash::default();
            let parser = move |message: Bytes| {
                hash.add(&message);
                tally.hash.store(hash.0, Ordering::Relaxed);
                tally.messages.fetch_add(1, Ordering::Relaxed);
            };
            ListenThread::spawn(driver.clone(), SiteStream::new(config.clone()), parser)
                .unwrap_or_else(|e| fail(&e))
        })
        .collect();
    // The window opens with the first message: the server holds every response after its
    // head until all the streams' requests are in (`bench-server firehose --together N`), so
    // by then every stream has connected and sent its request.
    let mut checks = 0u32;
    let mut open = None;
    while open.is_none() {
        if received(tallies) > 0 {
            open = Some(Mark::now(tallies));
        } else {
            checks += 1;
            // A stream that failed never gets a message: stop waiting for it. Its status
            // is looked at less often than the tallies (it takes a lock).
            if checks.is_multiple_of(100) && handles.iter().any(|h| !h.is_running()) {
                break;
            }
            std::thread::sleep(CHECK_EVERY);
        }
    }
    for handle in &mut handles {
        handle.join();
    }
    let end = Mark::now(tallies);
    let whole = start.to(end);
    let window = open.map_or_else(Span::default, |open| open.to(end));
    let bytes = handles
        .iter()
        .filter_map(|h| h.stream().map(|s| s.stats().bytes))
        .sum();
    // Exit without closing the streams one by one: the OS closes the sockets.
    std::mem::forget(handles);
    (whole, window, bytes)
}

fn fail(e: &dyn std::fmt::Display) -> ! {
    eprintln!("bench-busy: {e}");
    std::process::exit(1)
}
