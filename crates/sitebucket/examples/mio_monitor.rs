//! Many users on one mio thread, sharded into streams by a `Monitor` that keeps them healthy.
//!
//! Run with a server of your own (`sitebucket serve` prints the URL and credentials):
//!
//! ```sh
//! cargo run -p sitebucket-cli -- serve --scenario steady   # in another terminal; paste its exports
//! cargo run -p sitebucket --example mio_monitor -- http://127.0.0.1:PORT/1.1/site.json
//! ```
//!
//! It follows the given users plus 248 more (250 in all: three streams of at most 100 at
//! connect), counts the messages of every stream together, and prints each stream's users and
//! status before it disconnects them all.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sitebucket::{Bytes, MioDriver, Monitor, Parser};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = common::settings()?;
    let mut follow = settings.follow.clone();
    follow.extend(
        (1..)
            .map(|n| 1_000_000 + n)
            .take(250 - follow.len().min(250)),
    );
    let template = common::builder(&settings, &follow[..1])?.build()?;

    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    // One parser per stream; all of them count into the same total.
    let parsers = move || -> Box<dyn Parser> {
        let counter = counter.clone();
        Box::new(move |_message: Bytes| {
            counter.fetch_add(1, Ordering::Relaxed);
        })
    };
    let driver = MioDriver::new();
    let monitor = Monitor::spawn(driver.clone(), template, &follow, parsers)?;
    monitor.run_every(Duration::from_secs(10)); // restart unhealthy streams

    let deadline = Instant::now() + settings.time;
    while count.load(Ordering::Relaxed) < settings.messages && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "{} users, {} streams on one mio thread ({} running), {} messages",
        monitor.follows().len(),
        monitor.streams().len(),
        driver.streams(),
        count.load(Ordering::Relaxed)
    );
    for (i, stream) in monitor.streams().iter().enumerate() {
        println!(
            "stream {i}: {} users, healthy: {}, stats: {:?}",
            stream.follow.len(),
            stream.status.healthy,
            stream.status.stats
        );
    }
    monitor.disconnect();
    Ok(())
}
