//! [`Messages`]: a stream as a blocking iterator, for `for message in messages { .. }`.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;
use sitebucket_proto::stream::Outcome;
use sitebucket_proto::{Parser, SiteStream};
use sitebucket_thread::{Control, Driver, Status};

use crate::StdDriver;

/// How many messages wait for the consumer before the stream's thread waits in turn.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Runs `stream` on a [`StdDriver`](crate::StdDriver) thread and returns its messages as a blocking iterator
/// (see [`Messages`]).
pub fn messages(stream: SiteStream) -> io::Result<Messages> {
    Messages::spawn(StdDriver::new(), stream, DEFAULT_CAPACITY)
}

/// The messages of a running stream, in order, as a blocking iterator.
///
/// `next()` waits for the next message and returns `None` once the stream has ended and
/// every message it received has been handed out. The stream runs on its own thread; at
/// most `capacity` messages wait for the consumer, after which the stream's thread waits
/// (backpressure, no unbounded memory).
///
/// Stop it with [`close`](Messages::close), or from another thread with a [`Closer`]; read
/// how it ended with [`outcome`](Messages::outcome). Dropping it closes the stream and
/// joins its thread.
pub struct Messages {
    queue: Arc<Queue>,
    control: Arc<Control>,
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
    /// messages are buffered for the consumer.
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
            }),
            cond: Condvar::new(),
            capacity: capacity.max(1),
        });
        let control = Control::new();
        control.publish(&stream);
        let thread = {
            let queue = queue.clone();
            let control = control.clone();
            std::thread::Builder::new()
                .name(format!("sitebucket-{}", driver.name()))
                .spawn(move || {
                    let mut parser = QueueParser(queue.clone());
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

    /// Stops the stream promptly. Messages already buffered are still handed out, then
    /// the iterator ends.
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

    /// How the stream ended, once it has (`None` while it runs).
    pub fn outcome(&self) -> Option<Outcome> {
        self.queue.lock().outcome.clone()
    }

    /// Closes the stream, waits for its thread and returns how it ended.
    pub fn finish(mut self) -> Outcome {
        self.close();
        self.join();
        self.outcome().unwrap_or_else(|| {
            Outcome::InvalidConfig("the stream's thread ended without an outcome".into())
        })
    }

    /// The live status of the stream (counters, health).
    pub fn status(&self) -> Status {
        self.control.status()
    }

    fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                // The driver panicked: end the iteration rather than wait forever.
                self.queue.finish(Outcome::InvalidConfig(
                    "the stream's thread panicked".into(),
                ));
            }
        }
    }
}

impl Iterator for Messages {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let message = self.queue.pop();
        if message.is_none() {
            self.join();
        }
        message
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
    control: Arc<Control>,
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
    items: VecDeque<Bytes>,
    /// The consumer closed: the stream thread no longer waits for room.
    closed: bool,
    /// Set when the stream's run has ended.
    outcome: Option<Outcome>,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Plain data: still consistent after a panic elsewhere.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, QueueState>) -> MutexGuard<'a, QueueState> {
        self.cond
            .wait(guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, message: Bytes) {
        let mut state = self.lock();
        while state.items.len() >= self.capacity {
            if state.closed {
                // Nobody will wait for this one: the consumer asked the stream to stop.
                return;
            }
            state = self.wait(state);
        }
        state.items.push_back(message);
        drop(state);
        self.cond.notify_all();
    }

    fn pop(&self) -> Option<Bytes> {
        let mut state = self.lock();
        loop {
            if let Some(message) = state.items.pop_front() {
                drop(state);
                self.cond.notify_all();
                return Some(message);
            }
            if state.outcome.is_some() {
                return None;
            }
            state = self.wait(state);
        }
    }

    fn finish(&self, outcome: Outcome) {
        let mut state = self.lock();
        if state.outcome.is_none() {
            state.outcome = Some(outcome);
        }
        drop(state);
        self.cond.notify_all();
    }
}

struct QueueParser(Arc<Queue>);

impl Parser for QueueParser {
    fn parse(&mut self, message: Bytes) {
        self.0.push(message);
    }
}
