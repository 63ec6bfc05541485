//! Allocations per message on the raw path, counted by a counting global allocator.
//!
//! ```text
//! bench-alloc [--bytes N] [--addr HOST:PORT]
//! ```
//!
//! Prints one figure line for the core's raw path in memory (a `SiteStream` fed the seeded
//! firehose 64 KiB at a time, as slices of one `Bytes` through `handle_input_bytes` — what a
//! driver's read blocks hand over — every message handed to a parser that drops it) against the
//! common way of splitting lines (`BufRead::split`, one `Vec` per line), and, with `--addr`
//! of a `bench-server firehose`, one for the whole std driver over loopback.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use sitebucket_bench::args::Args;
use sitebucket_bench::figure::{Figure, Op, Target};
use sitebucket_bench::stream::{self, BenchStream, HEAD, READ_BYTES};
use sitebucket_proto::{Action, Config, SiteStream, StreamEvent};
use sitebucket_std::StdDriver;
use sitebucket_thread::ListenThread;

/// Counts every allocation and reallocation, then defers to the system allocator.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

#[allow(unsafe_code)]
// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is `System`'s; the counter has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

fn config(url: String) -> Config {
    sitebucket_bench::client_config(url)
        .retry_limit(Some(1))
        .build()
        .unwrap_or_else(|e| fail(&e))
}

fn main() {
    let args = Args::from_env();
    let seed = args.get("--seed", 20_240_601u64);
    let stream = BenchStream::generate(seed, args.get("--bytes", 64usize << 20));
    let body = stream.crlf();
    let wire = Bytes::from(stream::response(
        HEAD,
        &stream::chunked(&body.bytes, &body.line_ends, seed).wire,
    ));

    // The core's raw path, in memory.
    let now = Instant::now();
    let mut core = SiteStream::new(config("http://127.0.0.1:9/1.1/site.json".into()));
    let mut parser = |message: Bytes| {
        std::hint::black_box(message);
    };
    drain(&mut core, now, &mut parser);
    core.handle_connected(now, 1_700_000_000);
    drain(&mut core, now, &mut parser);
    let before = allocations();
    let mut at = 0;
    while at < wire.len() {
        let end = wire.len().min(at + READ_BYTES);
        core.handle_input_bytes(now, wire.slice(at..end));
        at = end;
        drain(&mut core, now, &mut parser);
    }
    let core_allocations = allocations() - before;
    let messages = core.stats().messages;
    if messages != body.messages as u64 {
        fail(&format!(
            "the core handed out {messages} of {} messages",
            body.messages
        ));
    }

    // The baseline: `BufRead::split` on the decoded body, a `Vec` per line.
    let before = allocations();
    let mut lines = 0u64;
    for line in std::io::Cursor::new(&body.bytes).split(b'\n') {
        std::hint::black_box(line.unwrap_or_default());
        lines += 1;
    }
    let split_allocations = allocations() - before;
    let per_line = split_allocations as f64 / lines as f64;
    println!(
        "{}",
        Figure::new(
            "allocs_per_message_core",
            core_allocations as f64 / messages as f64,
            "allocs/msg",
            "bufread_split",
            per_line,
            Target::Value(Op::AtMost, 1.0),
        )
    );

    if let Some(addr) = args.value("--addr") {
        let before = allocations();
        let mut listen = ListenThread::new(
            StdDriver::new(),
            SiteStream::new(config(format!("http://{addr}/1.1/site.json"))),
            parser,
        );
        let outcome = listen.run().unwrap_or_else(|e| fail(&e));
        let run_allocations = allocations() - before;
        let messages = listen.stream().map_or(0, |s| s.stats().messages);
        if messages == 0 {
            fail(&format!(
                "no message over loopback; the run ended with {outcome:?}"
            ));
        }
        println!(
            "{}",
            Figure::new(
                "allocs_per_message_std_driver",
                run_allocations as f64 / messages as f64,
                "allocs/msg",
                "bufread_split",
                per_line,
                Target::Value(Op::AtMost, 1.0),
            )
        );
    }
}

/// Drains the core until it waits, dropping every message.
fn drain(core: &mut SiteStream, now: Instant, parser: &mut impl FnMut(Bytes)) {
    loop {
        match core.poll_action(now) {
            Action::Event(StreamEvent::Message(message)) => parser(message),
            Action::Wait(_) | Action::Finished(_) => return,
            Action::Event(_) | Action::Connect { .. } | Action::Transmit(_) | Action::Close => {}
        }
    }
}

fn fail(e: &dyn std::fmt::Display) -> ! {
    eprintln!("bench-alloc: {e}");
    std::process::exit(1)
}
