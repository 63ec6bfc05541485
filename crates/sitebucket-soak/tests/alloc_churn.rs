//! Heap churn per reconnect and per read, counted by a global allocator.
//!
//! The churn the hunt for glibc's RSS creep on the thread-per-stream drivers found and cut
//! (README, soak section): a stream signs its request without a string per followed id,
//! short reads and the messages sliced from them allocate nothing, and publishing the stats
//! after every read does not copy the last error again. (That did not stop the creep, which
//! is glibc's per-thread cache; it is less work per read and per reconnect for every driver.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sitebucket_proto::{Action, Config, Credentials, ReadBuffer, SiteStream, StreamEvent};
use sitebucket_proto::{Stats, StreamError};

/// Counts this thread's allocations (reallocations included): all of them, and those of
/// 16 KiB or more (the inflater and the decoding window of each compressed connection).
struct Counting;

thread_local! {
    // A const-initialised `Cell` of plain numbers: no destructor, no lazy initialisation,
    // so reading it from inside the allocator allocates nothing.
    static COUNTS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

const BIG: usize = 16 * 1024;

fn count(size: usize) {
    let _ = COUNTS.try_with(|c| {
        let (all, big) = c.get();
        c.set((all + 1, big + u64::from(size >= BIG)));
    });
}

/// This thread's (all, big) allocation counts so far.
fn counts() -> (u64, u64) {
    COUNTS.with(Cell::get)
}

#[allow(unsafe_code)]
// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is `System`'s; the counter touches no heap memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A `200` with a gzip body of `messages` messages, chunked.
fn gzip_response(messages: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..messages {
        body.extend_from_slice(
            format!("{{\"for_user\":{i},\"message\":{{\"text\":\"hello {i}\"}}}}\r\n").as_bytes(),
        );
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&body).unwrap();
    let gz = encoder.finish().unwrap();
    let mut out =
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    out.extend_from_slice(format!("{:x}\r\n", gz.len()).as_bytes());
    out.extend_from_slice(&gz);
    out.extend_from_slice(b"\r\n");
    out
}

/// Drains `stream` at `now`, dropping its messages; the action it stopped at.
fn drain(stream: &mut SiteStream, now: Instant, messages: &mut usize) -> Action {
    loop {
        match stream.poll_action(now) {
            Action::Event(StreamEvent::Message(m)) => {
                assert!(!m.is_empty());
                *messages += 1;
            }
            Action::Event(_) | Action::Transmit(_) | Action::Close => {}
            other => return other,
        }
    }
}

/// One connection of `stream` (which is about to connect): up, a gzip response of 20
/// messages, dropped by the server. Returns the time after its backoff.
fn one_connection(stream: &mut SiteStream, response: &Bytes, now: Instant) -> Instant {
    let mut messages = 0;
    assert!(matches!(
        drain(stream, now, &mut messages),
        Action::Connect { .. }
    ));
    stream.handle_connected(now, 1_700_000_000);
    assert!(matches!(drain(stream, now, &mut messages), Action::Wait(_)));
    stream.handle_input_bytes(now, response.clone());
    assert!(matches!(drain(stream, now, &mut messages), Action::Wait(_)));
    assert_eq!(messages, 20);
    stream.handle_eof(now);
    match drain(stream, now, &mut messages) {
        Action::Wait(until) => until + Duration::from_millis(1),
        other => panic!("expected a backoff wait, got {other:?}"),
    }
}

#[test]
fn a_reconnecting_stream_signs_its_request_without_a_string_per_followed_id() {
    let config = Config::builder(1..=100, Credentials::new("ck", "cs", "t", "ts"))
        .url("http://127.0.0.1:1/1.1/site.json")
        .gzip(true)
        .rng_seed(7)
        .build()
        .unwrap();
    let mut stream = SiteStream::new(config);
    let response = Bytes::from(gzip_response(20));
    #[allow(clippy::disallowed_methods)] // The base of virtual time only.
    let mut now = Instant::now();
    // Warm up: the first connections allocate what later ones reuse.
    for _ in 0..5 {
        now = one_connection(&mut stream, &response, now);
    }
    const RECONNECTS: u64 = 50;
    let before = counts();
    for _ in 0..RECONNECTS {
        now = one_connection(&mut stream, &response, now);
    }
    let after = counts();
    let (all, big) = (after.0 - before.0, after.1 - before.1);
    let per_reconnect = all / RECONNECTS;
    eprintln!("{all} allocations ({big} of {BIG} bytes or more) in {RECONNECTS} reconnects");
    // Each compressed connection allocates its inflater (about 43 KiB) and its decoding
    // window (64 KiB): reusing them across reconnects did not slow glibc's creep and kept
    // them through every backoff, so they are not.
    assert_eq!(
        big,
        2 * RECONNECTS,
        "large allocations in {RECONNECTS} reconnects"
    );
    // Signing the request for 100 followed ids made a `String` per id (over 100 allocations
    // per reconnect on their own); what is left is the request, the head and the messages.
    assert!(
        per_reconnect < 90,
        "{per_reconnect} allocations per reconnect ({all} in {RECONNECTS})"
    );
}

#[test]
fn short_reads_and_the_messages_sliced_from_them_allocate_nothing_once_warm() {
    let mut buf = ReadBuffer::new(64 * 1024, 8 * 1024);
    let message = [b'x'; 200];
    let read = |buf: &mut ReadBuffer| {
        buf.spare()[..message.len()].copy_from_slice(&message);
        let read = buf.filled(message.len());
        // What the framer does with a message inside one read.
        let sliced = read.slice(10..190);
        assert_eq!(sliced.len(), 180);
    };
    for _ in 0..100 {
        read(&mut buf);
    }
    let before = counts();
    for _ in 0..1_000 {
        read(&mut buf);
    }
    let (all, _) = counts();
    // A copy of its own per read, then a shared header when the framer sliced it: 2,000.
    assert_eq!(all - before.0, 0, "allocations in 1,000 short reads");
}

#[test]
fn publishing_stats_again_does_not_copy_an_unchanged_last_error() {
    let stats = Stats {
        messages: 1,
        last_error: Some(StreamError::Tls("certificate expired".into())),
        ..Stats::default()
    };
    let mut published = stats.clone();
    let mut next = stats.clone();
    next.messages = 2;
    let before = counts();
    for _ in 0..100 {
        published.clone_from(&next);
    }
    assert_eq!(counts().0 - before.0, 0, "allocations in 100 publishes");
    assert_eq!(published, next);
    next.last_error = Some(StreamError::Tls("other".into()));
    published.clone_from(&next);
    assert_eq!(published, next);
}
