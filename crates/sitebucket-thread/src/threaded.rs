//! [`ThreadedParser`]: parse on a thread of its own, so the connection is read while the
//! handler works (the queue between reader and consumers of Twitter's Hosebird client).

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;
use sitebucket_proto::Parser;

/// How many message bytes [`ThreadedParser::spawn`] lets wait for the parser thread.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 8 << 20;

/// A [`Parser`] that hands every message to another parser running on its own thread.
///
/// Put it in place of the parser you would give a [`ListenThread`](crate::ListenThread) or
/// driver: the driver's thread then only reads and frames, and a slow handler no longer holds
/// up reading the socket (on a machine with a core to spare, it also raises throughput, as the
/// two halves run at once). Messages reach the inner parser in order, each as soon as the
/// parser thread is free: nothing waits for a batch to fill.
///
/// The queue between the two is bounded by bytes (`max_queued_bytes`). When it is full,
/// [`parse`](Parser::parse) blocks until the parser thread catches up, so a handler that is
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
    /// The parser thread is waiting on `ready`.
    idle: bool,
    /// The inner parser panicked; the parser thread is gone.
    panicked: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Only the queue's bookkeeping runs under the lock, never user code: it cannot be
        // poisoned half-way through an update.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Messages waiting for the parser thread right now, and the bytes of every message not
    /// yet handled (waiting, or taken by the parser thread and not parsed yet).
    pub fn queued(&self) -> (usize, usize) {
        let queue = self.shared.lock();
        (queue.messages.len(), queue.bytes)
    }

    fn parser_panicked() -> ! {
        panic!("the sitebucket parser thread panicked (see its panic message above)")
    }
}

/// The parser thread: take everything queued, parse it outside the lock, give its bytes back,
/// repeat; after a close, finish the queue and end.
fn work(shared: &Shared, parser: &mut dyn Parser) {
    let mut batch = VecDeque::new();
    let mut done_bytes = 0;
    loop {
        {
            let mut queue = shared.lock();
            queue.bytes -= done_bytes;
            if done_bytes > 0 {
                shared.room.notify_all();
            }
            while queue.messages.is_empty() && !queue.closed {
                queue.idle = true;
                queue = shared.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
            }
            queue.idle = false;
            if queue.messages.is_empty() {
                return; // Closed and drained.
            }
            std::mem::swap(&mut batch, &mut queue.messages);
        }
        done_bytes = 0;
        for message in batch.drain(..) {
            done_bytes += message.len();
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

impl Parser for ThreadedParser {
    fn parse(&mut self, message: Bytes) {
        let shared = &*self.shared;
        let mut queue = shared.lock();
        while queue.bytes > 0
            && queue.bytes.saturating_add(message.len()) > shared.max_bytes
            && !queue.panicked
        {
            queue = shared.room.wait(queue).unwrap_or_else(|p| p.into_inner());
        }
        if queue.panicked {
            drop(queue);
            Self::parser_panicked();
        }
        queue.bytes += message.len();
        queue.messages.push_back(message);
        let wake = queue.idle;
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
        let max = 3 * message(0).len();
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
