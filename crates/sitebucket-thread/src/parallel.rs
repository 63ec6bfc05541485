//! [`ParallelParser`]: parse messages on several threads at once, and hand the results to
//! one handler strictly in stream order.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};

use bytes::Bytes;
use sitebucket_proto::message::{Message, ParseError};
use sitebucket_proto::Parser;

use crate::sync::lock;
use crate::threaded::{charge, detach_small, DEFAULT_MAX_QUEUED_BYTES};

/// The most messages a worker takes at once (see [`ParallelParser`]).
const MAX_RUN: usize = 16;

/// How many times a worker checks for its turn, with a spin-loop hint between checks,
/// before it sleeps until the turn comes.
const TURN_SPINS: u32 = 64;

/// A worker waiting for no turn.
const NO_TURN: u64 = u64::MAX;

/// A [`Parser`] that parses on several worker threads and hands every result to one handler,
/// strictly in the order the messages came off the stream.
///
/// Messages of a stream are independent, so their parsing can use every core; only the
/// handler has to see them one at a time, in order. An idle worker takes the oldest waiting
/// messages, parses them (`serde_json` into the typed [`Message`] for
/// [`typed`](ParallelParserBuilder::typed)), waits until every earlier message has been
/// handled, then calls the handler with its results. The handler is called by one worker at a
/// time, never concurrently, and sees the messages in stream order. A parsed [`Message`]
/// borrows from its message's bytes, as under [`DefaultParser`](sitebucket_proto::DefaultParser):
/// nothing is copied to carry it to the handler.
///
/// Put it where you would put any parser: a driver, a [`ListenThread`](crate::ListenThread)
/// or a [`Monitor`](crate::Monitor) of any driver takes it. The driver's thread only reads,
/// frames and queues.
///
/// - **No batching: runs only of messages already waiting.** A worker takes what is queued
///   when it comes for work, never waiting for more: a lone message on a quiet stream is
///   taken alone, parsed, and reaches the handler after that one parse. Only when several
///   messages are already waiting (the stream is ahead of the workers) does a worker take a
///   *run* of consecutive ones: its share of the queue (the queue's length divided by the
///   number of workers, rounded up), at most 16. What is batched is only the
///   synchronisation: the run costs one hand-over from the queue, one wait for the turn and
///   one release of its bytes, instead of one of each per message. No message waits for a
///   run to fill (every message of a run was already waiting for a worker when the run was
///   taken), and results are not held back for the rest of the run: once the run's turn has
///   come, each message is handed to the handler as soon as it is parsed. A result parsed
///   before the turn came is handed over when the worker next looks, before its next parse
///   (or at once, if it has parsed the whole run and waits): at most one parse after the
///   turn came.
/// - **Bounded memory, with backpressure.** Messages are counted from the moment they are
///   queued until the handler has returned for every message of their run (a run's bytes
///   are held, and counted, until its last message is handled), by the memory they keep
///   alive, under the same rule as [`ThreadedParser`](crate::ThreadedParser): a message
///   shorter than [`QUEUE_COPY_BELOW_BYTES`](crate::QUEUE_COPY_BELOW_BYTES) is copied out of
///   its read block and counts its length; a longer one counts a whole
///   [`QUEUE_BLOCK_BYTES`](crate::QUEUE_BLOCK_BYTES) read block (or its length, if longer);
///   each also counts [`QUEUED_MESSAGE_OVERHEAD`](crate::QUEUED_MESSAGE_OVERHEAD). While the
///   count is at `max_queued_bytes`, [`parse`](Parser::parse) blocks, so a handler slower
///   than the stream slows reading down instead of growing memory (on an async driver the
///   wait blocks the executor thread running the stream, as a slow inline parser would).
///   Once blocked, it waits until its message fits with a quarter of the bound to spare (or
///   nothing is held), so that it wakes once per many messages handled, not once per run. One
///   message larger than the whole bound is still taken, alone. A typed result adds no more
///   than its message to what is held: the [`Message`] borrows from the message's bytes, and
///   a string it had to unescape is never longer than its escaped form. (A
///   [`staged`](ParallelParserBuilder::staged) result is the caller's own type and is not
///   counted beyond its message.)
/// - **Panics surface in order.** If parsing message *k* or handling it panics, every earlier
///   message is still handled (those of its own run too), no later one is, and the panic is
///   resumed, with its own payload, in the driver's thread at its next call to `parse` (or
///   when the parser is dropped), as an inline parser's panic would be.
/// - **Drop drains.** Dropping it waits until every queued message has been handled, then
///   ends the workers.
///
/// ```
/// use bytes::Bytes;
/// use sitebucket_proto::Parser;
/// use sitebucket_thread::ParallelParser;
///
/// let (tx, rx) = std::sync::mpsc::channel();
/// let mut parser = ParallelParser::builder()
///     .threads(4)
///     .typed(move |message: Result<sitebucket_proto::Message<'_>, _>| {
///         tx.send(message.map(|m| m.for_user()).ok().flatten()).unwrap();
///     })
///     .unwrap();
/// for user in 0..100u64 {
///     parser.parse(Bytes::from(format!(r#"{{"for_user":{user},"message":{{"friends":[]}}}}"#)));
/// }
/// drop(parser); // Waits for every message to be handled.
/// let users: Vec<u64> = rx.iter().map(Option::unwrap).collect();
/// assert_eq!(users, (0..100).collect::<Vec<_>>());
/// ```
pub struct ParallelParser {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// A panic was already resumed in the caller: later calls panic with a plain message.
    surfaced: bool,
}

/// How a [`ParallelParser`] is made: its number of worker threads and its bound.
#[derive(Clone, Debug)]
pub struct ParallelParserBuilder {
    threads: usize,
    max_queued_bytes: usize,
}

/// What the workers do with a run of messages: parse each, and deliver each in its turn.
trait Stage: Send + Sync {
    /// Parses and delivers the messages of `run` in order, through `turn` (see
    /// [`Turn::process`]); the payload of a panic, if one ended the run.
    fn run(&self, run: &mut Vec<Bytes>, turn: &mut Turn<'_>) -> Option<Box<dyn Any + Send>>;
}

struct Shared {
    jobs: Mutex<Jobs>,
    /// Idle workers wait here for messages.
    ready: Condvar,
    /// `parse` waits here for room.
    room: Condvar,
    turns: Turns,
    max_bytes: usize,
    stage: Box<dyn Stage>,
}

#[derive(Default)]
struct Jobs {
    /// Messages no worker has taken yet.
    queue: VecDeque<Bytes>,
    /// How many messages workers have taken: the sequence number of the first one in
    /// `queue`.
    taken: u64,
    /// What the bound counts for every message not handled yet: waiting, being parsed, or
    /// parsed and waiting for its turn (or for the rest of its run).
    bytes: usize,
    /// No more messages will come: workers drain the queue and end.
    closed: bool,
    /// Workers waiting on `ready`.
    idle: usize,
    /// Of those, how many were notified and have not woken yet: `parse` notifies only when
    /// a worker sleeps that no notification is on its way to.
    woken: usize,
    /// What the message `parse` waits on `room` to push counts (0: it does not wait).
    wants: usize,
    /// The payload of the first panic, until it is resumed in the caller.
    panic: Option<Box<dyn Any + Send>>,
    /// A panic happened (its payload may already be taken).
    panicked: bool,
    /// The length of every run taken, in order (for the tests).
    #[cfg(test)]
    runs: Vec<usize>,
}

impl Jobs {
    /// Whether `parse`, waiting for room, should be woken: once the count has come down to
    /// where its message fits with a quarter of the bound to spare (or to nothing), so that it
    /// pushes several messages per wake-up rather than one per run handled.
    fn room_for_waiter(&self, max_bytes: usize) -> bool {
        self.wants > 0
            && (self.bytes == 0
                || self.bytes.saturating_add(self.wants) <= max_bytes - max_bytes / 4)
    }
}

/// Whose turn it is to deliver: lock-free, so that a worker whose turn has already come
/// neither locks nor sleeps.
struct Turns {
    /// The sequence number of the first message not delivered (or skipped) yet.
    next: AtomicU64,
    /// A message before `next` panicked: nothing more is delivered.
    stopped: AtomicBool,
    /// For each worker, the first sequence number of the run it sleeps waiting to deliver,
    /// or [`NO_TURN`].
    waiting: Vec<AtomicU64>,
    /// Each worker's thread, to wake it (set by the worker before it first waits).
    threads: Vec<OnceLock<Thread>>,
}

/// A worker's hold on one run's turn: the messages `first .. first + len`.
struct Turn<'a> {
    turns: &'a Turns,
    worker: usize,
    first: u64,
    len: u64,
    /// The turn has come: every message before the run has been delivered or skipped.
    held: bool,
    /// The turn has come and no earlier message panicked: results may be delivered.
    open: bool,
}

impl Turn<'_> {
    /// Whether the turn has come (taking it if so), without waiting.
    fn try_take(&mut self) -> bool {
        if !self.held && self.turns.next.load(Ordering::Acquire) == self.first {
            self.take();
        }
        self.held
    }

    fn take(&mut self) {
        self.held = true;
        self.open = !self.turns.stopped.load(Ordering::Acquire);
    }

    /// Waits until every message before the run has been delivered (or skipped): briefly
    /// spinning, as the turn is often moments away, then asleep.
    fn wait(&mut self) {
        if self.held {
            return;
        }
        for _ in 0..TURN_SPINS {
            if self.try_take() {
                return;
            }
            std::hint::spin_loop();
        }
        let turns = self.turns;
        // Announce the wait, then look again: `pass` stores `next`, then looks for a waiter
        // (both sequentially consistent), so one of the two sees the other.
        turns.waiting[self.worker].store(self.first, Ordering::SeqCst);
        while turns.next.load(Ordering::SeqCst) != self.first {
            std::thread::park();
        }
        turns.waiting[self.worker].store(NO_TURN, Ordering::Relaxed);
        self.take();
    }

    /// Hands the turn to the message after the run (after a panic in the run, if
    /// `panicked`): wakes the worker waiting for it, if it sleeps.
    fn pass(mut self, panicked: bool) {
        self.wait();
        let turns = self.turns;
        if panicked {
            turns.stopped.store(true, Ordering::Release);
        }
        let next = self.first + self.len;
        turns.next.store(next, Ordering::SeqCst);
        for (worker, waiting) in turns.waiting.iter().enumerate() {
            if waiting.load(Ordering::SeqCst) == next {
                if let Some(thread) = turns.threads[worker].get() {
                    thread.unpark();
                }
                break;
            }
        }
    }

    /// Parses each of `items` with `parse` and calls `deliver` with each result, in order,
    /// in the run's turn: a result parsed before the turn came waits for it; once it has
    /// come, each is delivered as soon as it is parsed. A panic in `parse` or `deliver`
    /// stops the run there (every earlier result of the run is still delivered); its
    /// payload is returned. Nothing is delivered, or parsed, once an earlier message
    /// panicked.
    fn process<I, T>(
        &mut self,
        items: I,
        parse: impl Fn(I::Item) -> T,
        mut deliver: impl FnMut(T),
    ) -> Option<Box<dyn Any + Send>>
    where
        I: IntoIterator,
    {
        let mut deliver = |result: T| panic::catch_unwind(AssertUnwindSafe(|| deliver(result)));
        // Results parsed before the turn came.
        let mut pending: Vec<T> = Vec::new();
        let mut failure = None;
        for item in items {
            if !self.held && self.try_take() {
                for result in pending.drain(..) {
                    if !self.open {
                        break;
                    }
                    if let Err(payload) = deliver(result) {
                        return Some(payload);
                    }
                }
            }
            if self.turns.stopped.load(Ordering::Relaxed) {
                // An earlier message panicked: the rest is never delivered.
                break;
            }
            match panic::catch_unwind(AssertUnwindSafe(|| parse(item))) {
                Ok(result) if self.held => {
                    if !self.open {
                        break;
                    }
                    if let Err(payload) = deliver(result) {
                        return Some(payload);
                    }
                }
                Ok(result) => pending.push(result),
                Err(payload) => {
                    failure = Some(payload);
                    break;
                }
            }
        }
        self.wait();
        for result in pending.drain(..) {
            if !self.open {
                break;
            }
            if let Err(payload) = deliver(result) {
                return Some(payload);
            }
        }
        failure
    }
}

impl Default for ParallelParserBuilder {
    fn default() -> Self {
        ParallelParserBuilder {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
        }
    }
}

impl ParallelParserBuilder {
    /// Parses on `threads` worker threads (at least one); the default is the number of cores
    /// (`std::thread::available_parallelism`).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Blocks [`parse`](Parser::parse) while messages counted at `max_queued_bytes` are not
    /// handled yet (see [`ParallelParser`]); the default is
    /// [`DEFAULT_MAX_QUEUED_BYTES`](crate::DEFAULT_MAX_QUEUED_BYTES).
    pub fn max_queued_bytes(mut self, max_queued_bytes: usize) -> Self {
        self.max_queued_bytes = max_queued_bytes;
        self
    }

    /// Decodes each message into a typed [`Message`] on the workers and calls `handler` with
    /// every result in stream order: the parallel form of
    /// [`DefaultParser::new(handler)`](sitebucket_proto::DefaultParser::new).
    pub fn typed<F>(self, handler: F) -> io::Result<ParallelParser>
    where
        F: FnMut(Result<Message<'_>, ParseError>) + Send + 'static,
    {
        self.spawn(Box::new(Typed {
            handler: Mutex::new(handler),
        }))
    }

    /// Runs `parse` on each message on the workers, and calls `deliver` with every result in
    /// stream order. `parse` runs on several threads at once; `deliver` on one at a time.
    pub fn staged<T, P, D>(self, parse: P, deliver: D) -> io::Result<ParallelParser>
    where
        P: Fn(Bytes) -> T + Send + Sync + 'static,
        D: FnMut(T) + Send + 'static,
        T: 'static,
    {
        self.spawn(Box::new(Staged {
            parse,
            deliver: Mutex::new(deliver),
            _result: PhantomData,
        }))
    }

    fn spawn(self, stage: Box<dyn Stage>) -> io::Result<ParallelParser> {
        let shared = Arc::new(Shared {
            jobs: Mutex::new(Jobs::default()),
            ready: Condvar::new(),
            room: Condvar::new(),
            turns: Turns {
                next: AtomicU64::new(0),
                stopped: AtomicBool::new(false),
                waiting: (0..self.threads).map(|_| AtomicU64::new(NO_TURN)).collect(),
                threads: (0..self.threads).map(|_| OnceLock::new()).collect(),
            },
            max_bytes: self.max_queued_bytes,
            stage,
        });
        let mut parser = ParallelParser {
            shared: shared.clone(),
            workers: Vec::with_capacity(self.threads),
            surfaced: false,
        };
        for worker in 0..self.threads {
            let shared = shared.clone();
            // On an error, dropping `parser` ends the workers spawned so far.
            parser.workers.push(
                std::thread::Builder::new()
                    .name(format!("sitebucket-parse-{worker}"))
                    .spawn(move || work(&shared, worker))?,
            );
        }
        Ok(parser)
    }
}

/// How many of `queued` waiting messages a worker takes at once, with `workers` workers:
/// its share, rounded up, at most [`MAX_RUN`] (and at least one, if any wait).
fn run_length(queued: usize, workers: usize) -> usize {
    queued.div_ceil(workers.max(1)).min(MAX_RUN)
}

/// A worker: take a run of the oldest messages, parse them and deliver them in their turn,
/// give their bytes back; after a close, finish the queue and end.
fn work(shared: &Shared, worker: usize) {
    let turns = &shared.turns;
    let _ = turns.threads[worker].set(std::thread::current());
    let workers = turns.waiting.len();
    let mut run: Vec<Bytes> = Vec::with_capacity(MAX_RUN);
    let mut done_bytes = 0;
    loop {
        let first = {
            let mut jobs = lock(&shared.jobs);
            jobs.bytes -= done_bytes;
            if jobs.room_for_waiter(shared.max_bytes) {
                jobs.wants = 0;
                shared.room.notify_one();
            }
            while jobs.queue.is_empty() && !jobs.closed {
                jobs.idle += 1;
                jobs = shared.ready.wait(jobs).unwrap_or_else(|p| p.into_inner());
                jobs.idle -= 1;
                jobs.woken = jobs.woken.saturating_sub(1);
            }
            let take = run_length(jobs.queue.len(), workers);
            if take == 0 {
                return; // Closed and drained.
            }
            run.extend(jobs.queue.drain(..take));
            #[cfg(test)]
            jobs.runs.push(take);
            let first = jobs.taken;
            jobs.taken += take as u64;
            // Whatever is left is another worker's: wake one if all are asleep unwarned (a
            // push warns one, but a spurious wake-up may have taken its notification).
            let wake = !jobs.queue.is_empty() && jobs.idle > jobs.woken;
            if wake {
                jobs.woken += 1;
                shared.ready.notify_one();
            }
            first
        };
        done_bytes = run.iter().map(|m| charge(m.len())).sum();
        let mut turn = Turn {
            turns,
            worker,
            first,
            len: run.len() as u64,
            held: false,
            open: false,
        };
        let failure = shared.stage.run(&mut run, &mut turn);
        // The run's bytes are gone before they stop being counted.
        run.clear();
        let panicked = failure.is_some();
        if let Some(payload) = failure {
            // Every message before this one has been delivered: the run holds its turn.
            let mut jobs = lock(&shared.jobs);
            // Only the first panic counts: nothing after it is delivered.
            if !jobs.panicked {
                jobs.panicked = true;
                jobs.panic = Some(payload);
            }
            // `parse` must wake to resume it.
            jobs.wants = 0;
            shared.room.notify_one();
        }
        turn.pass(panicked);
    }
}

/// The typed stage: [`Message::from_slice`], borrowed from the message, to a handler.
struct Typed<F> {
    handler: Mutex<F>,
}

impl<F> Stage for Typed<F>
where
    F: FnMut(Result<Message<'_>, ParseError>) + Send,
{
    fn run(&self, run: &mut Vec<Bytes>, turn: &mut Turn<'_>) -> Option<Box<dyn Any + Send>> {
        turn.process(
            run.iter(),
            |message| Message::from_slice(message),
            // Turns are exclusive: the lock is never contended.
            |parsed| (lock(&self.handler))(parsed),
        )
    }
}

/// A user's two stages: `parse` anywhere, `deliver` in order.
struct Staged<P, D, T> {
    parse: P,
    deliver: Mutex<D>,
    _result: PhantomData<fn() -> T>,
}

impl<P, D, T> Stage for Staged<P, D, T>
where
    P: Fn(Bytes) -> T + Send + Sync,
    D: FnMut(T) + Send,
{
    fn run(&self, run: &mut Vec<Bytes>, turn: &mut Turn<'_>) -> Option<Box<dyn Any + Send>> {
        turn.process(run.drain(..), &self.parse, |parsed| {
            (lock(&self.deliver))(parsed)
        })
    }
}

impl ParallelParser {
    /// A typed parallel parser with the defaults (one worker per core, a bound of
    /// [`DEFAULT_MAX_QUEUED_BYTES`](crate::DEFAULT_MAX_QUEUED_BYTES)); see
    /// [`ParallelParserBuilder::typed`].
    pub fn typed<F>(handler: F) -> io::Result<Self>
    where
        F: FnMut(Result<Message<'_>, ParseError>) + Send + 'static,
    {
        Self::builder().typed(handler)
    }

    /// Options: the number of threads and the bound.
    pub fn builder() -> ParallelParserBuilder {
        ParallelParserBuilder::default()
    }

    /// The number of worker threads.
    pub fn threads(&self) -> usize {
        self.shared.turns.waiting.len()
    }

    /// Messages no worker has taken yet, and the bytes counted for every message not handled
    /// yet, as the bound counts them (see [`ParallelParser`]).
    pub fn queued(&self) -> (usize, usize) {
        let jobs = lock(&self.shared.jobs);
        (jobs.queue.len(), jobs.bytes)
    }

    /// Resumes a worker's panic here, in the caller's thread.
    fn surface(&mut self, payload: Option<Box<dyn Any + Send>>) -> ! {
        match payload {
            Some(payload) if !self.surfaced => {
                self.surfaced = true;
                panic::resume_unwind(payload)
            }
            _ => panic!("a sitebucket parse worker panicked earlier; this parser is finished"),
        }
    }
}

impl Parser for ParallelParser {
    fn parse(&mut self, message: Bytes) {
        let message = detach_small(message);
        let cost = charge(message.len());
        let shared = &*self.shared;
        let mut jobs = lock(&shared.jobs);
        while jobs.bytes > 0 && jobs.bytes.saturating_add(cost) > shared.max_bytes && !jobs.panicked
        {
            jobs.wants = cost;
            jobs = shared.room.wait(jobs).unwrap_or_else(|p| p.into_inner());
        }
        if jobs.panicked {
            let payload = jobs.panic.take();
            drop(jobs);
            self.surface(payload);
        }
        jobs.bytes += cost;
        jobs.queue.push_back(message);
        // Wake a sleeping worker, unless every sleeping one is already being woken.
        let wake = jobs.idle > jobs.woken;
        if wake {
            jobs.woken += 1;
        }
        drop(jobs);
        if wake {
            shared.ready.notify_one();
        }
    }
}

impl Drop for ParallelParser {
    fn drop(&mut self) {
        lock(&self.shared.jobs).closed = true;
        self.shared.ready.notify_all();
        for worker in self.workers.drain(..) {
            // Workers catch every panic of the stages; their own code does not panic.
            let _ = worker.join();
        }
        let payload = lock(&self.shared.jobs).panic.take();
        // Surface a panic not surfaced yet, unless this drop is itself part of unwinding (a
        // second panic would abort).
        if payload.is_some() && !std::thread::panicking() {
            self.surface(payload);
        }
    }
}

impl fmt::Debug for ParallelParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (messages, bytes) = self.queued();
        f.debug_struct("ParallelParser")
            .field("threads", &self.threads())
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
    use crate::threaded::{QUEUE_BLOCK_BYTES, QUEUE_COPY_BELOW_BYTES};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn message(i: usize) -> Bytes {
        Bytes::from(format!("{{\"n\":{i}}}"))
    }

    fn number(message: &[u8]) -> usize {
        std::str::from_utf8(&message[5..message.len() - 1])
            .unwrap()
            .parse()
            .unwrap()
    }

    /// A delay of 0–200 µs for message `i`, from `seed`: the same for every run.
    fn delay(seed: u64, i: usize) -> Duration {
        let mut x = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        Duration::from_micros(x % 200)
    }

    #[test]
    fn results_arrive_in_stream_order_under_random_parse_delays() {
        for seed in [1, 2, 3] {
            let (tx, rx) = mpsc::channel();
            let mut parser = ParallelParser::builder()
                .threads(4)
                .max_queued_bytes(4096)
                .staged(
                    move |m: Bytes| {
                        let n = number(&m);
                        std::thread::sleep(delay(seed, n));
                        n
                    },
                    move |n: usize| tx.send(n).unwrap(),
                )
                .unwrap();
            let shared = parser.shared.clone();
            for i in 0..2_000 {
                parser.parse(message(i));
            }
            drop(parser);
            // Dropping it handled every message (`shared` keeps the handler, and `tx`, alive).
            let got: Vec<usize> = rx.try_iter().collect();
            assert_eq!(got, (0..2_000).collect::<Vec<_>>(), "seed {seed}");
            // The reader runs far ahead of parses of up to 200 µs: workers took runs.
            let runs = &lock(&shared.jobs).runs;
            assert_eq!(runs.iter().sum::<usize>(), 2_000);
            assert!(runs.iter().any(|&r| r > 1), "seed {seed}: no run was taken");
            assert!(runs.iter().all(|&r| r <= MAX_RUN));
        }
    }

    #[test]
    fn typed_results_arrive_in_order_and_equal_the_single_thread_parse() {
        let messages: Vec<Bytes> = (0..3_000u64)
            .map(|i| match i % 4 {
                0 => Bytes::from(format!(
                    r#"{{"for_user":{i},"message":{{"id":{i},"text":"t\u00e9 {i}"}}}}"#
                )),
                1 => Bytes::from(format!(r#"{{"limit":{{"track":{i}}}}}"#)),
                2 => Bytes::from_static(b"{not json"),
                _ => Bytes::from(format!(
                    r#"{{"for_user":"{i}","message":{{"friends":[1]}}}}"#
                )),
            })
            .collect();
        let describe = |m: Result<Message<'_>, ParseError>| format!("{m:?}");
        let mut inline = Vec::new();
        let mut one = sitebucket_proto::DefaultParser::new(|m: Result<Message<'_>, ParseError>| {
            inline.push(describe(m))
        });
        for m in &messages {
            one.parse(m.clone());
        }
        let _ = one.into_inner();
        let (tx, rx) = mpsc::channel();
        let mut parallel = ParallelParser::builder()
            .threads(3)
            .typed(move |m: Result<Message<'_>, ParseError>| tx.send(describe(m)).unwrap())
            .unwrap();
        for m in &messages {
            parallel.parse(m.clone());
        }
        drop(parallel);
        assert_eq!(rx.iter().collect::<Vec<_>>(), inline);
    }

    #[test]
    fn a_lone_message_is_handled_without_waiting_for_more() {
        let (tx, rx) = mpsc::channel();
        let mut parser = ParallelParser::builder()
            .threads(4)
            .typed(move |m: Result<Message<'_>, ParseError>| {
                tx.send(m.map(|m| m.kind()).unwrap_or("error")).unwrap()
            })
            .unwrap();
        for _ in 0..3 {
            parser.parse(Bytes::from_static(br#"{"limit":{"track":1}}"#));
            // No further message comes: this one must still reach the handler.
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok("limit"));
        }
    }

    /// Waits until `count` reaches `at_least` (or 20 s pass), then until it stops moving for
    /// 300 ms (or 20 s more pass); its value then. A correct bound stops the count; the
    /// waits only give a broken one time to show itself.
    fn settled(count: &AtomicUsize, at_least: usize) -> usize {
        let began = Instant::now();
        while count.load(Ordering::SeqCst) < at_least && began.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let began = Instant::now();
        let mut last = usize::MAX;
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = count.load(Ordering::SeqCst);
            if now == last || began.elapsed() > Duration::from_secs(20) {
                return now;
            }
            last = now;
        }
    }

    #[test]
    fn a_blocked_handler_holds_up_the_reader_at_the_bound() {
        let (go, gate) = mpsc::channel::<()>();
        let handled = Arc::new(AtomicUsize::new(0));
        let max = 5 * charge(message(0).len());
        let parser = {
            let handled = handled.clone();
            ParallelParser::builder()
                .threads(3)
                .max_queued_bytes(max)
                .staged(
                    |m: Bytes| m,
                    move |_: Bytes| {
                        gate.recv().unwrap();
                        handled.fetch_add(1, Ordering::SeqCst);
                    },
                )
                .unwrap()
        };
        let shared = parser.shared.clone();
        let pushed = Arc::new(AtomicUsize::new(0));
        let reader = {
            let pushed = pushed.clone();
            let mut parser = parser;
            std::thread::spawn(move || {
                for i in 0..40 {
                    parser.parse(message(i));
                    pushed.fetch_add(1, Ordering::SeqCst);
                }
                parser
            })
        };
        // Five messages fill the bound: one in the handler, two parsed and waiting for their
        // turn, two waiting for a worker. The sixth push must block.
        assert_eq!(settled(&pushed, 5), 5);
        assert_eq!(lock(&shared.jobs).bytes, max);
        assert_eq!(handled.load(Ordering::SeqCst), 0);
        for _ in 0..40 {
            go.send(()).unwrap();
        }
        drop(reader.join().unwrap());
        assert_eq!(handled.load(Ordering::SeqCst), 40);
        assert_eq!(lock(&shared.jobs).bytes, 0);
    }

    #[test]
    fn a_blocked_handler_keeps_no_more_memory_alive_than_the_bound() {
        // Reads of 8 KiB in 64 KiB blocks, as a driver's read buffer hands them out, sliced
        // into messages without a copy as the framer does: tiny `{}` ones, and large ones of
        // a whole block. The handler blocks on the first message.
        const READ: usize = 8 * 1024;
        let max = 512 * 1024;
        let live_blocks = Arc::new(AtomicUsize::new(0));
        let (go, gate) = mpsc::channel::<()>();
        let parser = ParallelParser::builder()
            .threads(2)
            .max_queued_bytes(max)
            .staged(
                |m: Bytes| m,
                move |_: Bytes| {
                    let _ = gate.recv();
                },
            )
            .unwrap();
        let pushed = Arc::new(AtomicUsize::new(0));
        let pushed_len = Arc::new(AtomicUsize::new(0));
        let reader = {
            let (pushed, pushed_len, live) =
                (pushed.clone(), pushed_len.clone(), live_blocks.clone());
            let mut parser = parser;
            std::thread::spawn(move || {
                for read in 0..400 {
                    let mut block = vec![0; QUEUE_BLOCK_BYTES];
                    for pair in block[..READ].chunks_mut(4) {
                        pair.copy_from_slice(b"{}\r\n");
                    }
                    live.fetch_add(block.len(), Ordering::SeqCst);
                    let block = Bytes::from_owner(TrackedBlock {
                        block,
                        live: live.clone(),
                    });
                    let messages: Vec<Bytes> = if read % 2 == 0 {
                        (0..READ)
                            .step_by(4)
                            .map(|at| block.slice(at..at + 2))
                            .collect()
                    } else {
                        vec![block.slice(..QUEUE_COPY_BELOW_BYTES)]
                    };
                    drop(block);
                    for m in messages {
                        pushed_len.fetch_add(m.len(), Ordering::SeqCst);
                        parser.parse(m);
                        pushed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                parser
            })
        };
        let queued = settled(&pushed, 101);
        assert!(queued > 100, "the queue took only {queued} messages");
        assert!(queued < 200 * (READ / 4 + 1), "the bound never bit");
        // Held: every live block, each small message's own copy (the large ones' lengths are
        // counted too, which only overstates), and each queue slot. The reader's read in hand
        // (one block) is not the parser's.
        let small_bytes = pushed_len.load(Ordering::SeqCst);
        let held = live_blocks.load(Ordering::SeqCst)
            + small_bytes
            + queued * std::mem::size_of::<Bytes>();
        assert!(
            held <= max + QUEUE_BLOCK_BYTES,
            "{queued} queued messages hold {held} bytes, over the bound of {max}"
        );
        drop(go);
        drop(reader.join().unwrap());
        assert_eq!(live_blocks.load(Ordering::SeqCst), 0);
    }

    fn panic_text(payload: Box<dyn Any + Send>) -> String {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default()
    }

    #[test]
    fn a_panic_surfaces_in_order_with_its_own_payload() {
        // Message 50 panics in the handler (on odd runs) or in the parse (on even ones);
        // 0..50 are handled, nothing after, and the caller sees the panic's own message.
        for in_parse in [false, true] {
            let (tx, rx) = mpsc::channel();
            let mut parser = ParallelParser::builder()
                .threads(4)
                .staged(
                    move |m: Bytes| {
                        let n = number(&m);
                        std::thread::sleep(delay(7, n));
                        if in_parse && n == 50 {
                            panic!("parse failed at {n}");
                        }
                        n
                    },
                    move |n: usize| {
                        if n == 50 {
                            panic!("handler failed at {n}");
                        }
                        tx.send(n).unwrap();
                    },
                )
                .unwrap();
            let outcome = panic::catch_unwind(AssertUnwindSafe(move || {
                for i in 0..1_000 {
                    parser.parse(message(i));
                }
                drop(parser);
            }));
            let text = panic_text(outcome.unwrap_err());
            let expected = if in_parse { "parse" } else { "handler" };
            assert_eq!(text, format!("{expected} failed at 50"));
            assert_eq!(rx.iter().collect::<Vec<_>>(), (0..50).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_panic_of_the_last_message_surfaces_on_drop() {
        let parser = ParallelParser::builder()
            .threads(2)
            .staged(|m: Bytes| m, |_: Bytes| panic!("last one failed"))
            .unwrap();
        let outcome = panic::catch_unwind(AssertUnwindSafe(move || {
            let mut parser = parser;
            parser.parse(message(0));
            drop(parser);
        }));
        assert_eq!(panic_text(outcome.unwrap_err()), "last one failed");
    }

    #[test]
    fn drop_handles_every_queued_message() {
        let handled = Arc::new(AtomicUsize::new(0));
        let mut parser = {
            let handled = handled.clone();
            ParallelParser::builder()
                .threads(3)
                .staged(
                    |m: Bytes| {
                        std::thread::sleep(Duration::from_micros(20));
                        m
                    },
                    move |_: Bytes| {
                        handled.fetch_add(1, Ordering::SeqCst);
                    },
                )
                .unwrap()
        };
        for i in 0..5_000 {
            parser.parse(message(i));
        }
        assert_eq!(parser.threads(), 3);
        assert!(format!("{parser:?}").starts_with("ParallelParser { threads: 3"));
        drop(parser);
        assert_eq!(handled.load(Ordering::SeqCst), 5_000);
    }

    #[test]
    fn zero_threads_means_one() {
        let (tx, rx) = mpsc::channel();
        let mut parser = ParallelParser::builder()
            .threads(0)
            .staged(|m: Bytes| m.len(), move |n| tx.send(n).unwrap())
            .unwrap();
        assert_eq!(parser.threads(), 1);
        parser.parse(message(1));
        drop(parser);
        assert_eq!(rx.iter().collect::<Vec<_>>(), [7]);
    }

    #[test]
    fn run_lengths_are_a_share_of_what_waits() {
        assert_eq!(run_length(0, 4), 0);
        assert_eq!(run_length(1, 4), 1, "a lone message is a run of one");
        assert_eq!(run_length(5, 4), 2);
        assert_eq!(run_length(14, 2), 7);
        assert_eq!(run_length(1_000, 2), MAX_RUN);
        assert_eq!(run_length(3, 1), 3);
    }

    /// A staged parser on `threads` workers whose handler reports each message it enters on
    /// `entered`, waits for a `go`, panics if the message is `fails`, and reports it on
    /// `handled`; it parses with `parse`.
    fn gated(
        threads: usize,
        parse: impl Fn(Bytes) -> usize + Send + Sync + 'static,
        fails: Option<usize>,
        handled: mpsc::Sender<usize>,
        max_queued_bytes: usize,
    ) -> (ParallelParser, mpsc::Receiver<usize>, mpsc::Sender<()>) {
        let (entered_tx, entered) = mpsc::channel();
        let (go, gate) = mpsc::channel::<()>();
        let parser = ParallelParser::builder()
            .threads(threads)
            .max_queued_bytes(max_queued_bytes)
            .staged(parse, move |n: usize| {
                entered_tx.send(n).unwrap();
                gate.recv().unwrap();
                if Some(n) == fails {
                    panic!("handler failed at {n}");
                }
                handled.send(n).unwrap();
            })
            .unwrap();
        (parser, entered, go)
    }

    /// A parse that panics at message `fails`, if given.
    fn parse_failing_at(fails: Option<usize>) -> impl Fn(Bytes) -> usize + Send + Sync {
        move |m: Bytes| {
            let n = number(&m);
            if Some(n) == fails {
                panic!("parse failed at {n}");
            }
            n
        }
    }

    const WAIT: Duration = Duration::from_secs(20);

    #[test]
    fn a_panic_inside_a_run_surfaces_after_the_messages_before_it_in_the_run() {
        // Message 100 holds the only worker in the handler while 101..=110 queue up; the
        // worker then takes them as one run. Message 106 panics (in the parse, or in the
        // handler): 101..=105 of the same run are still handled, 107.. are not.
        for in_parse in [true, false] {
            let (tx, handled) = mpsc::channel();
            let (parse_fails, handler_fails) = if in_parse {
                (Some(106), None)
            } else {
                (None, Some(106))
            };
            let (parser, entered, go) =
                gated(1, parse_failing_at(parse_fails), handler_fails, tx, 1 << 20);
            let shared = parser.shared.clone();
            let mut parser = parser;
            parser.parse(message(100));
            assert_eq!(entered.recv_timeout(WAIT), Ok(100));
            for i in 101..=110 {
                parser.parse(message(i));
            }
            for _ in 0..20 {
                let _ = go.send(());
            }
            let outcome = panic::catch_unwind(AssertUnwindSafe(move || drop(parser)));
            let expected = if in_parse { "parse" } else { "handler" };
            assert_eq!(
                panic_text(outcome.unwrap_err()),
                format!("{expected} failed at 106")
            );
            let handled: Vec<usize> = handled.try_iter().collect();
            assert_eq!(handled, (100..=105).collect::<Vec<_>>());
            assert_eq!(lock(&shared.jobs).runs, [1, 10], "101..=110 were one run");
        }
    }

    #[test]
    fn a_panic_in_a_run_parsed_before_its_turn_surfaces_after_the_messages_before_it() {
        // Two workers. One holds the turn in the handler of message 0; 1..=10 are queued at
        // once, so the other takes its share, 1..=5, as one run and parses it before its
        // turn. Message 4 panics (in the parse, or in the handler when its turn comes):
        // 1..=3 of that run are still handled once 0 is, nothing after.
        for in_parse in [true, false] {
            let (tx, handled) = mpsc::channel();
            let (parse_fails, handler_fails) = if in_parse {
                (Some(4), None)
            } else {
                (None, Some(4))
            };
            let (mut parser, entered, go) =
                gated(2, parse_failing_at(parse_fails), handler_fails, tx, 1 << 20);
            let shared = parser.shared.clone();
            parser.parse(message(0));
            assert_eq!(entered.recv_timeout(WAIT), Ok(0));
            {
                // As ten calls to `parse` would, but all at once.
                let mut jobs = lock(&shared.jobs);
                for i in 1..=10 {
                    jobs.bytes += charge(message(i).len());
                    jobs.queue.push_back(detach_small(message(i)));
                }
            }
            shared.ready.notify_all();
            // The second worker has parsed its run (up to the panic) and sleeps for its turn.
            let began = Instant::now();
            while !shared
                .turns
                .waiting
                .iter()
                .any(|w| w.load(Ordering::SeqCst) == 1)
                && began.elapsed() < WAIT
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(lock(&shared.jobs).runs[..2], [1, 5]);
            for _ in 0..20 {
                let _ = go.send(());
            }
            let outcome = panic::catch_unwind(AssertUnwindSafe(move || drop(parser)));
            let expected = if in_parse { "parse" } else { "handler" };
            assert_eq!(
                panic_text(outcome.unwrap_err()),
                format!("{expected} failed at 4")
            );
            let handled: Vec<usize> = handled.try_iter().collect();
            assert_eq!(handled, [0, 1, 2, 3]);
        }
    }

    #[test]
    fn a_run_stays_counted_until_its_last_message_is_handled() {
        // One worker, a bound of 20 messages. Message 200 holds the worker in the handler
        // while 201..=210 queue up; they become one run, counted until 210 is handled.
        let c = charge(message(200).len());
        let (tx, handled) = mpsc::channel();
        let (parser, entered, go) = gated(1, parse_failing_at(None), None, tx, 20 * c);
        let shared = parser.shared.clone();
        let mut parser = parser;
        parser.parse(message(200));
        assert_eq!(entered.recv_timeout(WAIT), Ok(200));
        for i in 201..=210 {
            parser.parse(message(i));
        }
        go.send(()).unwrap();
        assert_eq!(entered.recv_timeout(WAIT), Ok(201));
        assert_eq!(lock(&shared.jobs).runs, [1, 10]);
        assert_eq!(
            parser.queued(),
            (0, 10 * c),
            "the run is counted, not queued"
        );
        // Ten more fill the bound; the eleventh blocks the reader.
        for i in 211..=220 {
            parser.parse(message(i));
        }
        assert_eq!(parser.queued(), (10, 20 * c));
        let pushed = Arc::new(AtomicUsize::new(0));
        let reader = {
            let pushed = pushed.clone();
            std::thread::spawn(move || {
                parser.parse(message(221));
                pushed.store(1, Ordering::SeqCst);
                parser
            })
        };
        let began = Instant::now();
        while lock(&shared.jobs).wants == 0 && began.elapsed() < WAIT {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(lock(&shared.jobs).wants, c, "the reader waits for room");
        // Handling 201..=209 frees nothing: the run holds their bytes until its end.
        for n in 202..=210 {
            go.send(()).unwrap();
            assert_eq!(entered.recv_timeout(WAIT), Ok(n));
        }
        assert_eq!(lock(&shared.jobs).bytes, 20 * c);
        assert_eq!(pushed.load(Ordering::SeqCst), 0, "the reader is still held");
        // Handling 210 gives the run's bytes back: the reader goes on.
        go.send(()).unwrap();
        let parser = reader.join().unwrap();
        assert_eq!(pushed.load(Ordering::SeqCst), 1);
        for _ in 211..=221 {
            go.send(()).unwrap();
        }
        drop(parser);
        let handled: Vec<usize> = handled.try_iter().collect();
        assert_eq!(handled, (200..=221).collect::<Vec<_>>());
        assert_eq!(lock(&shared.jobs).bytes, 0);
    }

    #[test]
    fn every_message_of_a_burst_is_handled_without_more_coming_and_so_is_a_lone_one_after() {
        // Bursts that leave runs of every length behind, each followed by silence: every
        // message must reach the handler while the parser lives and nothing more comes, the
        // last of a burst and a lone message after it alike.
        let (tx, rx) = mpsc::channel();
        let mut parser = ParallelParser::builder()
            .threads(3)
            .staged(
                |m: Bytes| {
                    let n = number(&m);
                    std::thread::sleep(delay(11, n) / 4);
                    n
                },
                move |n: usize| tx.send(n).unwrap(),
            )
            .unwrap();
        let mut next = 0;
        for burst in [1, 2, 3, 17, 50, 333] {
            for _ in 0..burst {
                parser.parse(message(next));
                next += 1;
            }
            for expected in next - burst..next {
                assert_eq!(rx.recv_timeout(WAIT), Ok(expected), "burst of {burst}");
            }
            parser.parse(message(next));
            assert_eq!(
                rx.recv_timeout(WAIT),
                Ok(next),
                "the lone one after {burst}"
            );
            next += 1;
        }
        let runs = lock(&parser.shared.jobs).runs.clone();
        assert!(runs.iter().any(|&r| r > 1), "no run was taken: {runs:?}");
    }
}
