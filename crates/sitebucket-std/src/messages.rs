//! [`Messages`]: a stream as a blocking iterator of [`StreamItem`]s, for
//! `for item in messages { .. }`.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use sitebucket_proto::Outcome;
use sitebucket_proto::SiteStream;
use sitebucket_thread::sync::lock;
use sitebucket_thread::{Driver, ItemSink, MessagesOnly, RunState, Status, StreamItem};

use crate::StdDriver;

/// How many items wait for the consumer before the stream's thread waits in turn.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Runs `stream` on a [`StdDriver`](crate::StdDriver) thread and returns its items (messages
/// and connection events) as a blocking iterator (see [`Messages`]).
pub fn messages(stream: SiteStream) -> io::Result<Messages> {
    Messages::spawn(StdDriver::new(), stream, DEFAULT_CAPACITY)
}

/// A running stream as a blocking iterator of [`StreamItem`]s: each message and each
/// connection event (a response head, a failure and the wait before the next attempt), in
/// order, then [`StreamItem::Finished`] with the run's outcome, then `None`.
///
/// `next()` waits for the next item. The stream runs on its own thread; at most `capacity`
/// items wait for the consumer, after which the stream's thread waits (backpressure, no
/// unbounded memory). [`messages_only`](Messages::messages_only) keeps just the messages'
/// bytes; [`StreamItem::parse`] decodes a message into a typed
/// [`Message`](sitebucket_proto::Message).
///
/// ```no_run
/// use sitebucket_proto::{Config, Credentials, SiteStream};
/// use sitebucket_thread::StreamItem;
///
/// let config = Config::builder([12], Credentials::new("ck", "cs", "tk", "ts")).build()?;
/// for item in sitebucket_std::messages(SiteStream::new(config))? {
///     match item {
///         StreamItem::Message(bytes) => println!("{}", String::from_utf8_lossy(&bytes)),
///         StreamItem::Connected { status, .. } => eprintln!("connected: {status}"),
///         StreamItem::Reconnecting { error, retry_in } => {
///             eprintln!("{error}; again in {retry_in:?}")
///         }
///         StreamItem::Finished(outcome) => eprintln!("ended: {outcome:?}"),
///         _ => {}
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Stop it with [`close`](Messages::close), or from another thread with a [`Closer`]; read
/// how it ended with [`outcome`](Messages::outcome). Dropping it closes the stream and
/// joins its thread.
pub struct Messages {
    queue: Arc<Queue>,
    control: Arc<RunState>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Messages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.queue.lock();
        f.debug_struct("Messages")
            .field("buffered", &state.items.len())
            .field("outcome", &state.outcome)
            .finish_non_exhaustive()
    }
}

impl Messages {
    /// Runs `stream` with `driver` on a new thread; at most `capacity` (at least 1)
    /// items are buffered for the consumer.
    pub fn spawn<D: Driver>(
        driver: D,
        mut stream: SiteStream,
        capacity: usize,
    ) -> io::Result<Self> {
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                closed: false,
                outcome: None,
                done: false,
            }),
            cond: Condvar::new(),
            capacity: capacity.max(1),
        });
        let control = RunState::new();
        control.publish(&stream);
        let thread = {
            let queue = queue.clone();
            let control = control.clone();
            std::thread::Builder::new()
                .name(format!("sitebucket-{}", driver.name()))
                .spawn(move || {
                    // Ends the iteration even if the driver panics (then with that outcome).
                    let _last = FinishOnDrop(queue.clone());
                    let sink = queue.clone();
                    let mut parser = ItemSink::install(&control, move |item| sink.push(item));
                    let outcome = driver.run(&mut stream, &mut parser, &control);
                    control.publish(&stream);
                    queue.finish(outcome);
                })?
        };
        Ok(Self {
            queue,
            control,
            thread: Some(thread),
        })
    }

    /// Stops the stream promptly. Items already buffered are still handed out, then
    /// [`StreamItem::Finished`], then the iterator ends.
    pub fn close(&self) {
        self.closer().close();
    }

    /// A handle that stops this stream from another thread.
    pub fn closer(&self) -> Closer {
        Closer {
            queue: self.queue.clone(),
            control: self.control.clone(),
        }
    }

    /// How the stream ended, once it has (`None` while it runs; set when the run ends, so
    /// possibly before the [`StreamItem::Finished`] item is reached).
    pub fn outcome(&self) -> Option<Outcome> {
        self.queue.lock().outcome.clone()
    }

    /// Closes the stream, waits for its thread and returns how it ended.
    pub fn finish(mut self) -> Outcome {
        self.close();
        self.join();
        self.outcome().unwrap_or_else(|| Outcome::DriverPanicked {
            detail: "the stream's thread ended without an outcome".into(),
        })
    }

    /// Only the messages' bytes: connection events are skipped, and the outcome is kept
    /// for [`MessagesOnly::outcome`] (or [`Messages::outcome`] through
    /// [`get_ref`](MessagesOnly::get_ref)).
    pub fn messages_only(self) -> MessagesOnly<Self> {
        MessagesOnly::new(self)
    }

    /// The live status of the stream (counters, health).
    pub fn status(&self) -> Status {
        self.control.status()
    }

    fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            // A panic has already been reported as the outcome (`FinishOnDrop`).
            let _ = thread.join();
        }
    }
}

impl Iterator for Messages {
    type Item = StreamItem;

    fn next(&mut self) -> Option<StreamItem> {
        let item = self.queue.pop();
        if item.is_none() {
            self.join();
        }
        item
    }
}

impl Drop for Messages {
    fn drop(&mut self) {
        self.close();
        self.join();
    }
}

/// Stops a [`Messages`] stream from any thread.
#[derive(Clone)]
pub struct Closer {
    queue: Arc<Queue>,
    control: Arc<RunState>,
}

impl std::fmt::Debug for Closer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Closer").finish_non_exhaustive()
    }
}

impl Closer {
    /// Stops the stream promptly, whatever it is waiting on.
    pub fn close(&self) {
        {
            let mut state = self.queue.lock();
            state.closed = true;
        }
        // Frees a stream thread waiting for room in the queue.
        self.queue.cond.notify_all();
        self.control.request_stop();
    }
}

struct Queue {
    state: Mutex<QueueState>,
    cond: Condvar,
    capacity: usize,
}

struct QueueState {
    items: VecDeque<StreamItem>,
    /// The consumer closed: the stream thread no longer waits for room.
    closed: bool,
    /// Set when the stream's run has ended (its `Finished` item is queued then).
    outcome: Option<Outcome>,
    /// The `Finished` item has been handed out: nothing more will come.
    done: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Plain data: still consistent after a panic elsewhere.
        lock(&self.state)
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, QueueState>) -> MutexGuard<'a, QueueState> {
        self.cond
            .wait(guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, item: StreamItem) {
        let mut state = self.lock();
        while state.items.len() >= self.capacity {
            if state.closed {
                // Nobody will wait for this one: the consumer asked the stream to stop.
                return;
            }
            state = self.wait(state);
        }
        state.items.push_back(item);
        drop(state);
        self.cond.notify_all();
    }

    /// The next item, waiting for one; `None` once `Finished` has been handed out.
    fn pop(&self) -> Option<StreamItem> {
        let mut state = self.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                state.done |= item.is_finished();
                drop(state);
                self.cond.notify_all();
                return Some(item);
            }
            if state.done || state.outcome.is_some() {
                return None;
            }
            state = self.wait(state);
        }
    }

    /// Records the outcome and queues the `Finished` item, past the capacity: the run is
    /// over, so this is the last item and nobody waits for room for it.
    fn finish(&self, outcome: Outcome) {
        let mut state = self.lock();
        if state.outcome.is_none() {
            state.outcome = Some(outcome.clone());
            state.items.push_back(StreamItem::Finished(outcome));
        }
        drop(state);
        self.cond.notify_all();
    }
}

/// Queues `Finished` when the stream's thread ends, if the run did not: a driver that
/// panicked still ends the iteration, with an outcome that says so.
struct FinishOnDrop(Arc<Queue>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.0.finish(Outcome::DriverPanicked {
            detail: "the stream's thread panicked".into(),
        });
    }
}
