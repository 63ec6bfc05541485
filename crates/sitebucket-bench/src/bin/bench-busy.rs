//! Many busy streams on ONE mio event-loop thread, against `bench-server firehose` in another
//! process; measures the CPU the whole client process spends per message.
//!
//! ```text
//! bench-busy --addr HOST:PORT --streams N --expect-messages M --expect-hash H
//! ```
//!
//! Each stream is a `SiteStream` spawned on one shared `MioDriver` through a `ListenThread`
//! handle; the server streams every connection its seeded firehose as fast as it is read and
//! ends it with a final `disconnect` (code 7). All N streams are active at once, so together
//! they carry what one stream alone would at the client's full speed. Each stream's parser
//! counts and hashes its messages ([`MessageHash`]); a stream is *exact* when it got `M`
//! messages whose hash is `H`, the server's own count and hash of what it sent. Prints
//! `result streams=.. exact=.. messages=.. bytes=.. cpu_ns=.. user_ns=.. wall_ns=..`, CPU
//! (user plus system, and user alone) from `getrusage` of the process from the first spawn to
//! the last stream's end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sitebucket_bench::args::Args;
use sitebucket_bench::os;
use sitebucket_bench::stream::MessageHash;
use sitebucket_mio::MioDriver;
use sitebucket_proto::SiteStream;
use sitebucket_thread::ListenThread;

/// What one stream's parser saw.
#[derive(Default)]
struct Tally {
    messages: AtomicU64,
    hash: AtomicU64,
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
    let driver = MioDriver::new();
    let tallies: Vec<Arc<Tally>> = (0..streams).map(|_| Arc::default()).collect();

    let (cpu0, wall0) = (os::cpu_times(), Instant::now());
    let mut handles: Vec<ListenThread<MioDriver>> = tallies
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
    for handle in &mut handles {
        handle.join();
    }
    let (cpu1, wall) = (os::cpu_times(), wall0.elapsed());
    let user = cpu1.0 - cpu0.0;
    let cpu = user + (cpu1.1 - cpu0.1);

    let bytes: u64 = handles
        .iter()
        .filter_map(|h| h.stream().map(|s| s.stats().bytes))
        .sum();
    let messages: u64 = tallies
        .iter()
        .map(|t| t.messages.load(Ordering::Relaxed))
        .sum();
    let exact = tallies
        .iter()
        .filter(|t| {
            t.messages.load(Ordering::Relaxed) == expect_messages
                && t.hash.load(Ordering::Relaxed) == expect_hash
        })
        .count();
    println!(
        "result streams={streams} exact={exact} messages={messages} bytes={bytes} cpu_ns={} user_ns={} wall_ns={}",
        cpu.as_nanos(),
        user.as_nanos(),
        wall.as_nanos()
    );
    // Exit without closing a thousand streams one by one: the OS closes the sockets.
    std::process::exit(0);
}

fn fail(e: &dyn std::fmt::Display) -> ! {
    eprintln!("bench-busy: {e}");
    std::process::exit(1)
}
