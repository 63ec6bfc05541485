//! [`ThreadedParser`]: parse on a thread of its own, so the connection is read while the
//! handler works (the queue between reader and consumers of Twitter's Hosebird client).

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;
use sitebucket_proto::Parser;

/// How many bytes of queued messages [`ThreadedParser::spawn`] lets wait for the parser
/// thread, counted as [`ThreadedParser`] says.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 8 << 20;

/// The largest read block a driver frames messages from (every sitebucket driver reads into
/// blocks of 64 KiB). A message sliced from a read keeps that read's whole block alive.
pub const QUEUE_BLOCK_BYTES: usize = 64 * 1024;

/// Messages shorter than this (a quarter of a [`QUEUE_BLOCK_BYTES`] block) are copied into
/// an allocation of their own when queued, so they keep no read block alive.
pub const QUEUE_COPY_BELOW_BYTES: usize = QUEUE_BLOCK_BYTES / 4;

/// What the queue counts for each message besides its bytes: its slot in the queue (with
/// room for the queue's growth) and the allocator's rounding of a small copy.
pub const QUEUED_MESSAGE_OVERHEAD: usize = 128;

/// A [`Parser`] that hands every message to another parser running on its own thread.
///
/// Put it in place of the parser you would give a [`ListenThread`](crate::ListenThread) or
/// driver: the driver's thread then only reads and frames, and a slow handler no longer holds
/// up reading the socket (on a machine with a core to spare, it also raises throughput, as the
/// two halves run at once). Messages reach the inner parser in order, each as soon as the
/// parser thread is free: nothing waits for a batch to fill.
///
/// The queue between the two is bounded by the memory its messages keep alive
/// (`max_queued_bytes`), counted per message as:
/// - a message shorter than [`QUEUE_COPY_BELOW_BYTES`] is copied out of its read block when queued
///   (a 2-byte `{}` would otherwise keep a whole 64 KiB block alive), and counts its length
///   plus [`QUEUED_MESSAGE_OVERHEAD`];
/// - a longer message is queued as it is, without a copy, and counts as a whole
///   [`QUEUE_BLOCK_BYTES`] block (or its length, if longer) plus the overhead, since it may be
///   the one thing keeping its read's block alive.
///
/// So what the queue holds stays within the bound for drivers that read in blocks of at most
/// [`QUEUE_BLOCK_BYTES`], as every sitebucket driver does. When the queue is full,
/// [`parse`](Parser::parse) blocks until the parser thread catches up (until its message fits
/// with a quarter of the bound to spare, or the queue is empty), so a handler that is
/// slower than the stream slows reading down (and the server eventually warns with
/// `FALLING_BEHIND`, as it would without the queue) instead of growing memory. One message
/// larger than the whole bound is still queued, alone.
///
/// Dropping it waits for the parser thread to finish every queued message. If the inner parser
/// panics, the next call to `parse` (or the drop) panics too, in the driver's thread, as an
/// inline parser's panic would.
pub struct ThreadedParser {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// The parser thread waits here for messages.
    ready: Condvar,
    /// `parse` waits here for room.
    room: Condvar,
    max_bytes: usize,
}

#[derive(Default)]
struct Queue {
    /// Messages the parser thread has not taken yet.
    messages: VecDeque<Bytes>,
    /// Bytes of the messages not handled yet: waiting, or taken by the parser thread and not
    /// all parsed. This is what the bound limits.
    bytes: usize,
    /// No more messages will come: the parser thread drains the queue and ends.
    closed: bool,
    /// The parser thread is waiting on `ready` and nobody has woken it yet: `parse` wakes it
    /// once, not once per message pushed while it wakes up.
    idle: bool,
    /// What the message `parse` waits on `room` to push counts (0: it does not wait).
    wants: usize,
    /// The inner parser panicked; the parser thread is gone.
    panicked: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Only the queue's bookkeeping runs under the lock, never user code: it cannot be
        // poisoned half-way through an update.
        crate::sync::lock(&self.queue)
    }
}

impl ThreadedParser {
    /// Starts a parser thread running `parser`, with a queue of at most
    /// [`DEFAULT_MAX_QUEUED_BYTES`].
    pub fn spawn(parser: impl Parser + 'static) -> io::Result<Self> {
        Self::with_max_queued_bytes(parser, DEFAULT_MAX_QUEUED_BYTES)
    }

    /// Starts a parser thread running `parser`; `parse` blocks while `max_queued_bytes` of
    /// messages are waiting.
    pub fn with_max_queued_bytes(
        mut parser: impl Parser + 'static,
        max_queued_bytes: usize,
    ) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            room: Condvar::new(),
            max_bytes: max_queued_bytes,
        });
        let worker = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("sitebucket-parser".into())
                .spawn(move || {
                    let _mark = PanicMark(&shared);
                    work(&shared, &mut parser);
                })?
        };
        Ok(ThreadedParser {
            shared,
            worker: Some(worker),
        })
    }

    /// Messages waiting for the parser thread right now, and the bytes counted for every
    /// message not yet handled (waiting, or taken by the parser thread and not parsed yet),
    /// as the bound counts them (see [`ThreadedParser`]).
    pub fn queued(&self) -> (usize, usize) {
        let queue = self.shared.lock();
        (queue.messages.len(), queue.bytes)
    }

    fn parser_panicked() -> ! {
        panic!("the sitebucket parser thread panicked (see its panic message above)")
    }
}

/// The most messages the parser thread takes from the queue at once: their bytes are given
/// back together, so a larger batch would hold the reader up longer on a full queue.
const BATCH: usize = 64;

/// The parser thread: take what is queued (up to [`BATCH`] messages), parse it outside the
/// lock, give its bytes back, repeat; after a close, finish the queue and end.
fn work(shared: &Shared, parser: &mut dyn Parser) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut done_bytes = 0;
    loop {
        {
            let mut queue = shared.lock();
            queue.bytes -= done_bytes;
            // Wake `parse` once its message fits with a quarter of the bound to spare (or
            // nothing is held), not after every batch: it then pushes many messages per
            // wake-up.
            if queue.wants > 0
                && (queue.bytes == 0
                    || queue.bytes.saturating_add(queue.wants)
                        <= shared.max_bytes - shared.max_bytes / 4)
            {
                queue.wants = 0;
                shared.room.notify_one();
            }
            while queue.messages.is_empty() && !queue.closed {
                queue.idle = true;
                queue = shared.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
            }
            queue.idle = false;
            if queue.messages.is_empty() {
                return; // Closed and drained.
            }
            let take = queue.messages.len().min(BATCH);
            batch.extend(queue.messages.drain(..take));
        }
        done_bytes = 0;
        for message in batch.drain(..) {
            done_bytes += charge(message.len());
            parser.parse(message);
        }
    }
}

/// Marks the queue when the parser thread unwinds, so that nobody waits for it forever.
struct PanicMark<'a>(&'a Shared);

impl Drop for PanicMark<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queue = self.0.lock();
            queue.panicked = true;
            drop(queue);
            self.0.room.notify_all();
        }
    }
}

/// What a queued message of `len` bytes counts against the bound (see [`ThreadedParser`]).
pub(crate) fn charge(len: usize) -> usize {
    let held = if len < QUEUE_COPY_BELOW_BYTES {
        len
    } else {
        len.max(QUEUE_BLOCK_BYTES)
    };
    held.saturating_add(QUEUED_MESSAGE_OVERHEAD)
}

/// A small message copied out of its read block, so the block can go back to the read
/// buffer while the message waits (see [`ThreadedParser`]); a larger one as it is.
pub(crate) fn detach_small(message: Bytes) -> Bytes {
    if message.len() < QUEUE_COPY_BELOW_BYTES {
        Bytes::copy_from_slice(&message)
    } else {
        message
    }
}

impl Parser for ThreadedParser {
    fn parse(&mut self, message: Bytes) {
        let message = detach_small(message);
        let cost = charge(message.len());
        let shared = &*self.shared;
        let mut queue = shared.lock();
        while queue.bytes > 0
            && queue.bytes.saturating_add(cost) > shared.max_bytes
            && !queue.panicked
        {
            queue.wants = cost;
            queue = shared.room.wait(queue).unwrap_or_else(|p| p.into_inner());
        }
        if queue.panicked {
            drop(queue);
            Self::parser_panicked();
        }
        queue.bytes += cost;
        queue.messages.push_back(message);
        let wake = queue.idle;
        queue.idle = false;
        drop(queue);
        if wake {
            shared.ready.notify_one();
        }
    }
}

impl Drop for ThreadedParser {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
        if let Some(worker) = self.worker.take() {
            // A panic in the inner parser: surface it here, unless this drop is itself part
            // of unwinding (a second panic would abort).
            if worker.join().is_err() && !std::thread::panicking() {
                Self::parser_panicked();
            }
        }
    }
}

impl fmt::Debug for ThreadedParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (messages, bytes) = self.queued();
        f.debug_struct("ThreadedParser")
            .field("queued_messages", &messages)
            .field("queued_bytes", &bytes)
            .field("max_queued_bytes", &self.shared.max_bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_blocks::TrackedBlock;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    fn message(i: usize) -> Bytes {
        Bytes::from(format!("{{\"n\":{i}}}"))
    }

    #[test]
    fn every_message_arrives_in_order_and_drop_drains_the_queue() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut threaded = {
            let seen = seen.clone();
            ThreadedParser::with_max_queued_bytes(move |m: Bytes| seen.lock().unwrap().push(m), 64)
                .unwrap()
        };
        for i in 0..10_000 {
            threaded.parse(message(i));
        }
        drop(threaded);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 10_000);
        assert!(seen.iter().enumerate().all(|(i, m)| *m == message(i)));
    }

    #[test]
    fn a_lone_message_is_handled_without_waiting_for_more() {
        let (tx, rx) = mpsc::channel();
        let mut threaded = ThreadedParser::spawn(move |m: Bytes| tx.send(m).unwrap()).unwrap();
        for i in 0..3 {
            threaded.parse(message(i));
            // No further message comes: this one must still reach the handler.
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(message(i)));
        }
    }

    #[test]
    fn a_full_queue_blocks_the_reader_and_never_exceeds_its_bound() {
        // The handler waits for a go-ahead per message; the reader must stop once the queue
        // holds `max` bytes.
        let (go, gate) = mpsc::channel::<()>();
        let handled = Arc::new(AtomicUsize::new(0));
        let max = 3 * charge(message(0).len());
        let threaded = {
            let handled = handled.clone();
            ThreadedParser::with_max_queued_bytes(
                move |_: Bytes| {
                    gate.recv().unwrap();
                    handled.fetch_add(1, Ordering::SeqCst);
                },
                max,
            )
            .unwrap()
        };
        let shared = threaded.shared.clone();
        let pushed = Arc::new(AtomicUsize::new(0));
        let reader = {
            let pushed = pushed.clone();
            let mut threaded = threaded;
            std::thread::spawn(move || {
                for i in 0..20 {
                    threaded.parse(message(i));
                    pushed.fetch_add(1, Ordering::SeqCst);
                }
                threaded
            })
        };
        // Three messages fill the bound, whether waiting or taken by the parser thread (which
        // holds the first in the handler); the fourth push must block. Once three are in,
        // give the reader ample time to (wrongly) get further.
        let began = std::time::Instant::now();
        while pushed.load(Ordering::SeqCst) < 3 && began.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(pushed.load(Ordering::SeqCst), 3);
        assert_eq!(shared.lock().bytes, max);
        for _ in 0..20 {
            go.send(()).unwrap();
        }
        drop(reader.join().unwrap());
        assert_eq!(handled.load(Ordering::SeqCst), 20);
    }

    #[test]
    fn a_message_larger_than_the_bound_still_goes_through() {
        let (tx, rx) = mpsc::channel();
        let mut threaded =
            ThreadedParser::with_max_queued_bytes(move |m: Bytes| tx.send(m.len()).unwrap(), 4)
                .unwrap();
        threaded.parse(Bytes::from(vec![b'x'; 1000]));
        threaded.parse(Bytes::from(vec![b'y'; 2000]));
        drop(threaded);
        assert_eq!(rx.iter().collect::<Vec<_>>(), [1000, 2000]);
    }

    #[test]
    fn a_stalled_parser_under_small_reads_of_tiny_messages_holds_no_more_than_the_bound() {
        // 8 KiB reads of `{}\r\n`, each in a 64 KiB block as a driver's read buffer hands
        // them out, sliced into messages without a copy as the framer does. The handler
        // stalls on the first message; the reader goes on until the queue is full.
        const READ: usize = 8 * 1024;
        let max = 256 * 1024;
        let live_blocks = Arc::new(AtomicUsize::new(0));
        let (go, gate) = mpsc::channel::<()>();
        let threaded = ThreadedParser::with_max_queued_bytes(
            move |_: Bytes| {
                let _ = gate.recv();
            },
            max,
        )
        .unwrap();
        let pushed = Arc::new(AtomicUsize::new(0));
        let reader = {
            let (pushed, live) = (pushed.clone(), live_blocks.clone());
            let mut threaded = threaded;
            std::thread::spawn(move || {
                for _ in 0..200 {
                    let mut block = vec![0; QUEUE_BLOCK_BYTES];
                    for pair in block[..READ].chunks_mut(4) {
                        pair.copy_from_slice(b"{}\r\n");
                    }
                    live.fetch_add(block.len(), Ordering::SeqCst);
                    let read = Bytes::from_owner(TrackedBlock {
                        block,
                        live: live.clone(),
                    });
                    for at in (0..READ).step_by(4) {
                        threaded.parse(read.slice(at..at + 2));
                        pushed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                threaded
            })
        };
        // Wait until the reader is blocked on a full queue: no progress for 300 ms.
        let began = std::time::Instant::now();
        let mut last = usize::MAX;
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = pushed.load(Ordering::SeqCst);
            if now == last || began.elapsed() > Duration::from_secs(20) {
                break;
            }
            last = now;
        }
        let queued = pushed.load(Ordering::SeqCst);
        assert!(queued > 100, "the queue took only {queued} messages");
        assert!(
            queued < 200 * READ / 4,
            "the reader was never held up: the bound did not bite"
        );
        // Every message not yet handled is held: its `Bytes`, its bytes, and any block it
        // keeps alive. The reader's own read in hand (one block) is not the queue's.
        let per_message = std::mem::size_of::<Bytes>() + 2;
        let held = live_blocks.load(Ordering::SeqCst) + queued * per_message;
        assert!(
            held <= max + QUEUE_BLOCK_BYTES,
            "{queued} queued messages of 2 bytes hold {held} bytes, over the bound of {max}"
        );
        drop(go);
        drop(reader.join().unwrap());
        assert_eq!(live_blocks.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_large_message_is_queued_without_a_copy() {
        let (tx, rx) = mpsc::channel();
        let mut threaded = ThreadedParser::spawn(move |m: Bytes| tx.send(m).unwrap()).unwrap();
        let small = Bytes::from(vec![b's'; QUEUE_COPY_BELOW_BYTES - 1]);
        let large = Bytes::from(vec![b'l'; QUEUE_COPY_BELOW_BYTES]);
        threaded.parse(small.clone());
        threaded.parse(large.clone());
        drop(threaded);
        let got: Vec<Bytes> = rx.iter().collect();
        assert_eq!(got, [small.clone(), large.clone()]);
        assert_ne!(got[0].as_ptr(), small.as_ptr(), "a small message is copied");
        assert_eq!(got[1].as_ptr(), large.as_ptr(), "a large one is not");
    }

    #[test]
    fn a_panicking_parser_panics_the_reader_instead_of_hanging_it() {
        let mut threaded = ThreadedParser::with_max_queued_bytes(
            |m: Bytes| {
                if m.starts_with(b"boom") {
                    panic!("handler failed");
                }
            },
            16,
        )
        .unwrap();
        threaded.parse(Bytes::from_static(b"boom"));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            // The queue bound makes the reader wait for the (dead) parser thread: it must
            // wake up and panic rather than block forever.
            for _ in 0..100 {
                threaded.parse(Bytes::from_static(b"0123456789abcdef"));
            }
            drop(threaded);
        }));
        let payload = outcome.unwrap_err();
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap();
        assert!(text.contains("parser thread panicked"), "{text}");
    }
}
