//! Name lookups are bounded: a thousand streams on one loop that reconnect again and again
//! against a resolver that never answers hold at most `MAX_LOOKUP_THREADS` lookup threads.
//! One test in this binary, so no other test's lookup threads are counted.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::threads_named;
use sitebucket_e2e::Collected;
use sitebucket_mio::MioDriver;
use sitebucket_proto::{BackoffPolicy, TwitterBackoff};
use sitebucket_proto::{Config, Credentials, SiteStream};
use sitebucket_proto::{Outcome, StreamError};
use sitebucket_thread::{Driver, Resolver, RunState, MAX_LOOKUP_THREADS, RESOLVE_THREAD_NAME};

const STREAMS: usize = 1_000;
/// More names than lookup threads, so lookups also queue for a thread.
const NAMES: usize = 8;
/// How long the streams reconnect. With a 50 ms connect timeout and at most 50 ms of
/// backoff, each stream makes an attempt about every 100 ms: far more attempts than two
/// minutes of reconnects with the default timeout and backoff would make.
const RECONNECTING: Duration = Duration::from_secs(12);

#[cfg(target_os = "linux")]
#[test]
fn a_thousand_reconnecting_streams_against_a_hung_resolver_hold_at_most_the_lookup_pool() {
    // The kernel keeps the first 15 bytes of a thread's name.
    let comm = &RESOLVE_THREAD_NAME[..RESOLVE_THREAD_NAME.len().min(15)];
    assert_eq!(threads_named(comm), 0);

    let (release, hang) = mpsc::channel::<()>();
    let hang = Arc::new(Mutex::new(hang));
    let asked = Arc::new(Mutex::new(Vec::new()));
    let resolver = {
        let asked = asked.clone();
        Resolver::new(move |host, _port| {
            asked.lock().unwrap().push(host.to_owned());
            // Never answers until the test ends: nothing is sent, the sender is dropped.
            let _ = hang.lock().unwrap_or_else(|p| p.into_inner()).recv();
            Err(std::io::Error::other("released at the end of the test"))
        })
    };
    let driver = MioDriver::with_resolver(resolver);
    let backoff = BackoffPolicy::Twitter(TwitterBackoff {
        network_step: Duration::from_millis(10),
        network_max: Duration::from_millis(50),
        http_start: Duration::from_millis(50),
        http_max: Duration::from_millis(400),
        rate_limit_start: Duration::from_millis(50),
        rate_limit_max: Duration::from_millis(400),
    });
    let credentials = Credentials::new("key", "secret", "token", "token secret");
    let mut runs = Vec::with_capacity(STREAMS);
    for i in 0..STREAMS {
        let config = Config::builder([i as u64 + 1], credentials.clone())
            .url(format!("http://host{}.test:8080/1.1/site.json", i % NAMES))
            .connect_timeout(Duration::from_millis(50))
            .backoff(backoff.clone())
            .build()
            .expect("valid config");
        let control = RunState::new();
        let handle = driver
            .spawn(
                SiteStream::new(config),
                Box::new(Collected::default()),
                control.clone(),
            )
            .expect("spawn a stream");
        runs.push((control, handle));
    }

    let began = Instant::now();
    let most = AtomicUsize::new(0);
    while began.elapsed() < RECONNECTING {
        let now = threads_named(comm);
        most.fetch_max(now, Ordering::SeqCst);
        assert!(
            now <= MAX_LOOKUP_THREADS,
            "{now} lookup threads after {:?} of reconnects",
            began.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let attempts: u64 = runs.iter().map(|(c, _)| c.status().stats.attempts).sum();
    let most = most.load(Ordering::SeqCst);
    eprintln!(
        "{attempts} attempts by {STREAMS} streams in {RECONNECTING:?}; at most {most} lookup threads"
    );
    assert!(
        attempts >= 10 * STREAMS as u64,
        "only {attempts} attempts: the streams did not reconnect"
    );
    assert_eq!(most, MAX_LOOKUP_THREADS, "the pool was busy");
    for (control, _) in &runs {
        let stats = control.status().stats;
        assert_eq!(
            stats.last_error,
            Some(StreamError::ConnectTimeout(Duration::from_millis(50)))
        );
    }
    // One lookup per name for the whole run, on as many threads as the pool has; the other
    // names still wait for a thread.
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), MAX_LOOKUP_THREADS, "{asked:?}");
    assert_eq!(asked.iter().collect::<BTreeSet<_>>().len(), asked.len());

    let stopping = Instant::now();
    for (control, _) in &runs {
        control.request_stop();
    }
    for (_, handle) in runs {
        assert_eq!(
            handle.join().expect("the run ends").outcome,
            Outcome::Stopped
        );
    }
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");

    // Released, the hung lookups end, the queued names are looked up (and answered at once,
    // as the sender is gone), and every lookup thread ends.
    drop(release);
    let deadline = Instant::now() + Duration::from_secs(20);
    while threads_named(comm) > 0 {
        assert!(Instant::now() < deadline, "lookup threads left behind");
        std::thread::sleep(Duration::from_millis(10));
    }
}
