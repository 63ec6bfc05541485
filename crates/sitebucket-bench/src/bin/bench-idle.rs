//! Many idle streams on ONE thread — a mio event loop, or a tokio current-thread runtime —
//! against `bench-server idle` in another process; measures resident memory per stream from
//! `/proc/self/status`.
//!
//! ```text
//! bench-idle --addr HOST:PORT --streams N [--driver mio|tokio] [--tls --ca PATH] [--bare]
//! ```
//!
//! Each stream is a `SiteStream` spawned on one shared `MioDriver` (the default) or
//! `TokioDriver::new()` (its own current-thread runtime, one task per stream) through a
//! `ListenThread` handle (held here, as a user would). Once every stream has its `control` message, it
//! prints `result streams=.. open=.. threads=.. rss_before_kib=.. rss_after_kib=..`.
//! `--bare` is the baseline: plain non-blocking sockets that send the same request, read the
//! same answer and are held — no core, no driver.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sitebucket_bench::args::Args;
use sitebucket_bench::os;
use sitebucket_bench::server::idle_response;
use sitebucket_mio::MioDriver;
use sitebucket_proto::{Config, SiteStream};
use sitebucket_thread::{Driver, ListenThread};
use sitebucket_tokio::TokioDriver;

fn main() {
    let args = Args::from_env();
    let addr = args.value("--addr").unwrap_or("127.0.0.1:8080").to_owned();
    let streams: usize = args.get("--streams", 10_000);
    let tls = args.has("--tls");
    let limit = os::raise_fd_limit(streams as u64 + 256);
    if limit < streams as u64 + 64 {
        fail(&format!(
            "the open-file limit is {limit}: too low for {streams} streams"
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(args.get("--timeout-secs", 300));
    let driver_name = args.value("--driver").unwrap_or("mio").to_owned();
    let rss_before;
    let open;
    let on_loop;
    let mut held_bare = Vec::new();
    let mut held_streams = false;
    if args.has("--bare") {
        rss_before = rss();
        let expected = idle_response().len();
        for _ in 0..streams {
            let mut socket = std::net::TcpStream::connect(&addr).unwrap_or_else(|e| fail(&e));
            socket
                .write_all(b"GET /1.1/site.json?follow=783214 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .unwrap_or_else(|e| fail(&e));
            let mut answer = vec![0u8; expected];
            socket.read_exact(&mut answer).unwrap_or_else(|e| fail(&e));
            held_bare.push(socket);
        }
        open = held_bare.len();
        on_loop = 0;
    } else {
        let scheme = if tls { "https" } else { "http" };
        let mut builder =
            sitebucket_bench::client_config(format!("{scheme}://{addr}/1.1/site.json"))
                .stall_timeout(Duration::from_secs(3600))
                .connect_timeout(Duration::from_secs(120));
        if tls {
            let path = args.value("--ca").unwrap_or("bench-ca.pem");
            let pem = std::fs::read(path).unwrap_or_else(|e| fail(&e));
            builder = builder.extra_root_certs_pem(pem);
        }
        let config = builder.build().unwrap_or_else(|e| fail(&e));
        held_streams = true;
        (rss_before, open, on_loop) = match driver_name.as_str() {
            "mio" => spawn_streams(MioDriver::new(), &config, streams, deadline, |d| {
                d.streams()
            }),
            "tokio" => spawn_streams(TokioDriver::new(), &config, streams, deadline, |d| {
                d.streams()
            }),
            other => fail(&format!("unknown --driver {other}")),
        };
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = rss();
    let threads = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| os::status_field_kib(&s, "Threads:"))
        .unwrap_or(0);
    // Streams counted after the first (the one spawned before the first reading).
    let measured = if held_streams {
        open.saturating_sub(1)
    } else {
        open
    };
    println!(
        "result streams={streams} open={open} measured={measured} on_loop={on_loop} threads={threads} rss_before_kib={rss_before} rss_after_kib={rss_after}"
    );
    // Exit without closing ten thousand streams one by one: the OS closes the sockets.
    std::process::exit(0);
}

fn rss() -> u64 {
    os::vm_rss_kib().unwrap_or(0)
}

/// Spawns `streams` streams on `driver` (one first, so the loop thread or runtime and its
/// buffers exist before the first reading) and waits for their first message; the RSS before
/// the other streams, how many got their message, and `on_loop(driver)` then. The streams
/// are leaked (the process exits without closing them one by one).
fn spawn_streams<D: Driver>(
    driver: D,
    config: &Config,
    streams: usize,
    deadline: Instant,
    on_loop: impl Fn(&D) -> usize,
) -> (u64, usize, usize) {
    let parser = |message: Bytes| {
        std::hint::black_box(message);
    };
    let spawn = || {
        ListenThread::spawn(driver.clone(), SiteStream::new(config.clone()), parser)
            .unwrap_or_else(|e| fail(&e))
    };
    let mut held = vec![spawn()];
    wait_for_control(&held, deadline);
    let rss_before = rss();
    for _ in 1..streams {
        held.push(spawn());
    }
    let open = wait_for_control(&held, deadline);
    let live = on_loop(&driver);
    // Dropping a handle closes its stream and waits for it: let the exit do it instead.
    std::mem::forget(held);
    (rss_before, open, live)
}

/// Waits until every stream got its first message (or the deadline); how many did.
fn wait_for_control<D: Driver>(streams: &[ListenThread<D>], deadline: Instant) -> usize {
    loop {
        let ready = streams
            .iter()
            .filter(|s| s.status().stats.messages >= 1)
            .count();
        if ready == streams.len() || Instant::now() >= deadline {
            return ready;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn fail(e: &dyn std::fmt::Display) -> ! {
    eprintln!("bench-idle: {e}");
    std::process::exit(1)
}
