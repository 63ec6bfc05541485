//! Many idle streams on ONE mio event-loop thread, against `bench-server idle` in another
//! process; measures resident memory per stream from `/proc/self/status`.
//!
//! ```text
//! bench-idle --addr HOST:PORT --streams N [--tls --ca PATH] [--bare]
//! ```
//!
//! Each stream is a `SiteStream` spawned on one shared `MioDriver` through a `ListenThread`
//! handle (held here, as a user would). Once every stream has its `control` message, it
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
use sitebucket_proto::SiteStream;
use sitebucket_thread::ListenThread;

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
    // Warm up what every run pays once (the allocator's arenas, the loop thread) before the
    // first reading.
    let driver = MioDriver::new();
    let rss_before;
    let open;
    let mut held_bare = Vec::new();
    let mut held_streams = Vec::new();
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
        let parser = |message: Bytes| {
            std::hint::black_box(message);
        };
        // One stream first, so the loop thread and its buffers exist before the reading.
        held_streams.push(
            ListenThread::spawn(driver.clone(), SiteStream::new(config.clone()), parser)
                .unwrap_or_else(|e| fail(&e)),
        );
        wait_for_control(&held_streams, deadline);
        rss_before = rss();
        for _ in 1..streams {
            held_streams.push(
                ListenThread::spawn(driver.clone(), SiteStream::new(config.clone()), parser)
                    .unwrap_or_else(|e| fail(&e)),
            );
        }
        open = wait_for_control(&held_streams, deadline);
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = rss();
    let threads = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| os::status_field_kib(&s, "Threads:"))
        .unwrap_or(0);
    // Streams counted after the first (the one spawned before the first reading).
    let measured = if held_streams.is_empty() {
        open
    } else {
        open.saturating_sub(1)
    };
    println!(
        "result streams={streams} open={open} measured={measured} on_loop={} threads={threads} rss_before_kib={rss_before} rss_after_kib={rss_after}",
        driver.streams()
    );
    // Exit without closing ten thousand streams one by one: the OS closes the sockets.
    std::process::exit(0);
}

fn rss() -> u64 {
    os::vm_rss_kib().unwrap_or(0)
}

/// Waits until every stream got its first message (or the deadline); how many did.
fn wait_for_control(streams: &[ListenThread<MioDriver>], deadline: Instant) -> usize {
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
