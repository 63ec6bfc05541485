//! Durable output: every message published to a JetStream stream, at least once, deduplicated
//! by the engine.
//!
//! - **Subjects**: `<prefix>.msg.<for_user>` for a message with a `for_user` (a Site Streams
//!   envelope), `<prefix>.stream.<kind>` for the others (`control`, `disconnect`, `limit`,
//!   `warning`, …: the message's first key).
//! - **Payload**: the message's raw bytes, as the server sent them.
//! - **Headers**: `Nats-Msg-Id` ([`message_id`]), `Sitebucket-Worker` (who published it) and
//!   `Sitebucket-Shard` (the user's shard, when it has a user).
//! - **Message id**: the SHA-1 of the user id and the raw bytes ([`message_id`]). Not the
//!   tweet or event id: a Site Streams message may carry none (events, friends lists,
//!   deletes carry other ids), and one tweet delivered to two users is two messages; the same
//!   bytes for the same user, on the other hand, are exactly what a re-publish after a retry
//!   or two workers overlapping in a hand-over produce, so the stream's duplicate window
//!   drops them. The id needs no parsing beyond the envelope's `for_user`, and it is the same
//!   in every worker and every version.
//! - **Backpressure, bounded memory**: at most [`OutputConfig::max_in_flight`] publishes await
//!   their acknowledgement; messages held (queued or in flight) are bounded by
//!   [`OutputConfig::max_held_bytes`] and [`OutputConfig::max_held_messages`]. Handing a
//!   message over ([`PublishSender::send`]) never blocks: once the bound is reached the
//!   publisher pauses its [`ReadGate`] ([`PublishSender::read_gate`]), and the streams that
//!   honour it (the smol and tokio drivers' loop) stop reading from their sockets while their
//!   timers, control requests and every other task run on. When NATS is slow or down, reading
//!   pauses instead of memory growing; a stream that stays paused for its stall timeout is
//!   reconnected by the core, with the core's backoff, like any stalled stream. Reading
//!   resumes once what is held falls to three quarters of the bound. What was read is never
//!   dropped: the bound can be passed by what a reader read just before the pause (one read,
//!   at most 64 KiB, plus the end of a message the core had buffered, per thread reading at
//!   the same moment). A publish that fails or is not acknowledged in time is sent again
//!   (same id) until it is.
//! - **The log** says when reading paused and how much was held, every few seconds while it
//!   stays paused (for how long, how much held, how many streams reconnected because of it),
//!   and when it resumes and after how long; each stream reconnected during the pause says
//!   so in its own line (see [`FleetWorker`](crate::FleetWorker)).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use sha1::{Digest, Sha1};
use sitebucket_thread::sync::lock;
use sitebucket_thread::ReadGate;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::lease::Shard;
use crate::metrics::Metrics;
use crate::nats::FleetError;

/// Where and how messages are published.
#[derive(Clone, Debug)]
pub struct OutputConfig {
    /// The JetStream stream (created if missing, with subjects `<subject_prefix>.>`).
    pub stream: String,
    /// The first token of every subject.
    pub subject_prefix: String,
    /// Replicas of the stream when it is created (3 on a three-node cluster).
    pub replicas: usize,
    /// The stream's duplicate window (when it is created): re-publishes within it are dropped.
    pub duplicate_window: Duration,
    /// The most publishes awaiting their acknowledgement at once.
    pub max_in_flight: usize,
    /// The most bytes held (queued or in flight): reading pauses once they are reached (see
    /// the [module docs](self) for by how much a pause can pass it).
    pub max_held_bytes: usize,
    /// The most messages held (queued or in flight): reading pauses once they are reached.
    pub max_held_messages: usize,
    /// How long a publish may wait for its acknowledgement before it is sent again.
    pub ack_timeout: Duration,
    /// The publisher's name, in the `Sitebucket-Worker` header.
    pub worker: String,
}

impl OutputConfig {
    /// Stream `SITEBUCKET`, subjects `sitebucket.>`, one replica, a two-minute duplicate
    /// window, 256 publishes in flight, 16 MiB or 10,000 messages held, 5 s for an ack.
    pub fn new(worker: impl Into<String>) -> Self {
        OutputConfig {
            stream: "SITEBUCKET".into(),
            subject_prefix: "sitebucket".into(),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            max_in_flight: 256,
            max_held_bytes: 16 << 20,
            max_held_messages: 10_000,
            ack_timeout: Duration::from_secs(5),
            worker: worker.into(),
        }
    }
}

/// The `for_user` of a Site Streams envelope (`{"for_user":123,…}` or `{"for_user":"123",…}`),
/// looked for in the message's first bytes only.
pub fn for_user(message: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"for_user\"";
    let head = &message[..message.len().min(64)];
    let at = head.windows(KEY.len()).position(|w| w == KEY)?;
    let mut rest = message[at + KEY.len()..].iter().copied().peekable();
    let skip = |rest: &mut std::iter::Peekable<_>, what: &[u8]| {
        while rest.peek().is_some_and(|b: &u8| what.contains(b)) {
            rest.next();
        }
    };
    skip(&mut rest, b" \t\r\n");
    if rest.next()? != b':' {
        return None;
    }
    skip(&mut rest, b" \t\r\n\"");
    let mut value: u64 = 0;
    let mut digits = 0;
    while let Some(b) = rest.peek().copied().filter(u8::is_ascii_digit) {
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        digits += 1;
        rest.next();
    }
    (digits > 0).then_some(value)
}

/// The kind of a message without a user: its first key (`control`, `disconnect`, …), letters,
/// digits and `_` only, at most 32 of them; `other` if there is none.
pub fn kind_of(message: &[u8]) -> &str {
    let start = message.iter().position(|b| !b" \t\r\n".contains(b));
    let key = start
        .filter(|&i| message[i] == b'{')
        .and_then(|i| {
            let after = &message[i + 1..];
            let q = after.iter().position(|b| !b" \t\r\n".contains(b))?;
            let after = after.get(q..)?.strip_prefix(b"\"")?;
            let end = after.iter().position(|b| *b == b'"')?;
            Some(&after[..end])
        })
        .filter(|k| {
            !k.is_empty()
                && k.len() <= 32
                && k.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        });
    key.and_then(|k| std::str::from_utf8(k).ok())
        .unwrap_or("other")
}

/// The `Nats-Msg-Id` of a message: 32 hex digits of the SHA-1 of the user id in decimal (`-`
/// without one), a newline, and the raw bytes. See the [module docs](self) for why.
pub fn message_id(for_user: Option<u64>, message: &[u8]) -> String {
    let mut hash = Sha1::new();
    match for_user {
        Some(user) => {
            // The decimal digits without an allocation (this runs for every message).
            let mut digits = [0u8; 20];
            let mut at = digits.len();
            let mut rest = user;
            loop {
                at -= 1;
                digits[at] = b'0' + (rest % 10) as u8;
                rest /= 10;
                if rest == 0 {
                    break;
                }
            }
            hash.update(&digits[at..]);
        }
        None => hash.update(b"-"),
    }
    hash.update(b"\n");
    hash.update(message);
    let digest = hash.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(32);
    for byte in &digest[..16] {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    id
}

/// One message to publish.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// Its subject.
    pub subject: String,
    /// Its `Nats-Msg-Id`.
    pub id: String,
    /// Its user's shard, if it has a user.
    pub shard: Option<Shard>,
    /// The raw bytes.
    pub payload: Bytes,
}

impl Outgoing {
    /// The message as published: subject, id and shard from its bytes (see the
    /// [module docs](self)).
    pub fn new(prefix: &str, payload: Bytes, shards: u32) -> Self {
        let user = for_user(&payload);
        let subject = match user {
            Some(user) => format!("{prefix}.msg.{user}"),
            None => format!("{prefix}.stream.{}", kind_of(&payload)),
        };
        Outgoing {
            subject,
            id: message_id(user, &payload),
            shard: user.map(|u| crate::lease::shard_of(u, shards)),
            payload,
        }
    }
}

/// What the readers and the publishing task share.
struct Shared {
    held: Mutex<Held>,
    /// Paused while the bound is reached (see [`Held::admit`]).
    gate: ReadGate,
    /// [`PublishSender::send_blocking`] waits here for room.
    room: Condvar,
    /// The publishing task waits here for work.
    work: Notify,
    /// Told when nothing is held any more.
    empty: Notify,
    config: OutputConfig,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Held {
    queue: VecDeque<Outgoing>,
    /// Bytes and messages held: queued and in flight.
    bytes: usize,
    messages: usize,
    /// Since when reading is paused, if it is.
    paused: Option<Pause>,
    /// When a pause was last logged at warning level (at most one such line per
    /// [`PAUSE_LOG_EVERY`], so routine backpressure does not flood the log).
    pause_warned: Option<Instant>,
}

/// One pause of reading.
#[derive(Clone, Copy, Debug)]
struct Pause {
    since: Instant,
    /// The worker's reconnects-while-paused counter when the pause began.
    reconnects_before: u64,
}

/// What a change to what is held means for reading.
#[derive(Debug, PartialEq, Eq)]
enum Turn {
    /// Nothing changes.
    Same,
    /// The bound is reached: pause reading.
    Pause,
    /// Room again after a pause that began at `since`: resume reading.
    Resume {
        since: Instant,
        reconnects_before: u64,
    },
}

impl Held {
    /// Whether the bound is reached: reading pauses.
    fn full(&self, max_bytes: usize, max_messages: usize) -> bool {
        self.bytes >= max_bytes || self.messages >= max_messages.max(1)
    }

    /// Whether there is room enough to resume after a pause: three quarters of the bound.
    fn roomy(&self, max_bytes: usize, max_messages: usize) -> bool {
        self.bytes <= max_bytes / 4 * 3 && self.messages <= max_messages / 4 * 3
    }

    /// Takes `message` (always: what was read is never dropped). Pauses reading when the
    /// bound is reached.
    fn admit(
        &mut self,
        message: Outgoing,
        max: (usize, usize),
        now: Instant,
        reconnects: u64,
    ) -> Turn {
        self.bytes += message.payload.len();
        self.messages += 1;
        self.queue.push_back(message);
        if self.paused.is_none() && self.full(max.0, max.1) {
            self.paused = Some(Pause {
                since: now,
                reconnects_before: reconnects,
            });
            return Turn::Pause;
        }
        Turn::Same
    }

    /// One message of `len` bytes acknowledged. Resumes reading after a pause once what is
    /// held is down to three quarters of the bound.
    fn release(&mut self, len: usize, max: (usize, usize)) -> Turn {
        self.bytes = self.bytes.saturating_sub(len);
        self.messages = self.messages.saturating_sub(1);
        match self.paused {
            Some(pause) if self.roomy(max.0, max.1) => {
                self.paused = None;
                Turn::Resume {
                    since: pause.since,
                    reconnects_before: pause.reconnects_before,
                }
            }
            _ => Turn::Same,
        }
    }
}

/// The publishing side of a worker: a task on the tokio runtime that publishes what readers
/// hand it with [`Publisher::sender`].
pub struct Publisher {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = lock(&self.shared.held);
        f.debug_struct("Publisher")
            .field("stream", &self.shared.config.stream)
            .field("held_messages", &held.messages)
            .field("held_bytes", &held.bytes)
            .finish()
    }
}

/// Hands messages to a [`Publisher`] from any thread; cheap to clone.
#[derive(Clone)]
pub struct PublishSender {
    shared: Arc<Shared>,
}

impl fmt::Debug for PublishSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishSender").finish_non_exhaustive()
    }
}

/// How often the log says, while reading stays paused, how long it has been and how much is
/// held.
const PAUSE_LOG_EVERY: Duration = Duration::from_secs(5);
/// The first wait before a failed publish is sent again; doubled up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

impl PublishSender {
    /// Queues `message` for publishing. Never blocks and never drops it: once the publisher
    /// holds its bound of bytes or messages, it pauses its [`read_gate`](Self::read_gate),
    /// which is how reading pauses. Readers that cannot honour the gate (a thread or mio
    /// driver) use [`send_blocking`](Self::send_blocking) instead.
    pub fn send(&self, message: Outgoing) {
        let shared = &self.shared;
        let turn = {
            let mut held = lock(&shared.held);
            let turn = held.admit(
                message,
                shared.max(),
                Instant::now(),
                shared
                    .metrics
                    .reconnects_while_paused
                    .load(Ordering::Relaxed),
            );
            shared.gauges(&held);
            if turn == Turn::Pause {
                // Under the lock, so a release cannot resume before this pause.
                shared.gate.pause();
                let now = Instant::now();
                let line = format!(
                    "NATS is behind: reading paused, {} message(s) and {} bytes held \
                     unacknowledged (bound {} messages, {} bytes); a stream paused for its \
                     stall timeout reconnects",
                    held.messages,
                    held.bytes,
                    shared.config.max_held_messages,
                    shared.config.max_held_bytes
                );
                if held
                    .pause_warned
                    .is_none_or(|at| now.duration_since(at) >= PAUSE_LOG_EVERY)
                {
                    held.pause_warned = Some(now);
                    tracing::warn!("{line}");
                } else {
                    tracing::debug!("{line}");
                }
            }
            turn
        };
        if turn == Turn::Pause {
            shared.metrics.paused.fetch_add(1, Ordering::Relaxed);
            shared.metrics.reading_paused.store(1, Ordering::Relaxed);
        }
        shared.work.notify_one();
    }

    /// [`send`](Self::send) for a reader that cannot honour the [`read_gate`](Self::read_gate):
    /// blocks the calling thread while the bound is reached (a message larger than the whole
    /// byte bound is taken when nothing else is held). Never call it on an async runtime's
    /// thread: it would stop every task there, timers included.
    pub fn send_blocking(&self, message: Outgoing) {
        let shared = &self.shared;
        let (max_bytes, max_messages) = shared.max();
        let len = message.payload.len();
        let mut held = lock(&shared.held);
        let full = |h: &Held| {
            h.messages > 0 && (h.bytes + len > max_bytes || h.messages >= max_messages.max(1))
        };
        let since = Instant::now();
        let mut logged = since;
        while full(&held) {
            let (next, _) = shared
                .room
                .wait_timeout(held, PAUSE_LOG_EVERY)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            held = next;
            if full(&held) && logged.elapsed() >= PAUSE_LOG_EVERY {
                logged = Instant::now();
                tracing::warn!(
                    "publishing to NATS is behind: {} message(s), {} bytes held \
                     unacknowledged; this reader has waited {:.0?} for room",
                    held.messages,
                    held.bytes,
                    since.elapsed()
                );
            }
        }
        drop(held);
        self.send(message);
    }

    /// Messages and bytes held now (queued or in flight).
    pub fn held(&self) -> (usize, usize) {
        let held = lock(&self.shared.held);
        (held.messages, held.bytes)
    }

    /// The gate the publisher pauses while it holds its bound: give it to the streams
    /// ([`Monitor::set_read_gate`](sitebucket_thread::Monitor::set_read_gate),
    /// [`RunState::set_read_gate`](sitebucket_thread::RunState::set_read_gate)).
    pub fn read_gate(&self) -> ReadGate {
        self.shared.gate.clone()
    }

    /// Whether reading is paused now, and since how long.
    pub fn paused_for(&self) -> Option<Duration> {
        lock(&self.shared.held).paused.map(|p| p.since.elapsed())
    }
}

impl Shared {
    fn new(config: OutputConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            held: Mutex::new(Held::default()),
            gate: ReadGate::new(),
            room: Condvar::new(),
            work: Notify::new(),
            empty: Notify::new(),
            config,
            metrics,
        }
    }

    fn max(&self) -> (usize, usize) {
        (self.config.max_held_bytes, self.config.max_held_messages)
    }

    fn gauges(&self, held: &Held) {
        self.metrics
            .held_messages
            .store(held.messages as u64, Ordering::Relaxed);
        self.metrics
            .held_bytes
            .store(held.bytes as u64, Ordering::Relaxed);
    }
}

type InFlight = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = (
                    Outgoing,
                    Instant,
                    Result<jetstream::publish::PublishAck, String>,
                ),
            > + Send,
    >,
>;

impl Publisher {
    /// Makes sure the stream exists (creating it with `config`'s settings if missing) and
    /// starts publishing on the current tokio runtime.
    pub async fn start(
        client: async_nats::Client,
        config: OutputConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, FleetError> {
        let js = jetstream::ContextBuilder::new()
            .timeout(config.ack_timeout)
            .max_ack_inflight(config.max_in_flight.max(1))
            .build(client);
        ensure_stream(&js, &config).await?;
        let shared = Arc::new(Shared::new(config, metrics));
        let task = tokio::spawn(publish_loop(js, shared.clone()));
        Ok(Publisher { shared, task })
    }

    /// The gate paused while the bound is reached (see [`PublishSender::read_gate`]).
    pub fn read_gate(&self) -> ReadGate {
        self.shared.gate.clone()
    }

    /// A handle for readers.
    pub fn sender(&self) -> PublishSender {
        PublishSender {
            shared: self.shared.clone(),
        }
    }

    /// Waits until every message handed over so far is acknowledged, at most `timeout`;
    /// then stops publishing. Returns how many messages were still held (0: all of them are
    /// in the stream).
    pub async fn drain(self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let empty = self.shared.empty.notified();
            if lock(&self.shared.held).messages == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, empty).await.is_err() {
                break;
            }
        }
        self.task.abort();
        lock(&self.shared.held).messages
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The stream, created if missing: subjects `<prefix>.>`, file storage, the duplicate window.
async fn ensure_stream(js: &jetstream::Context, config: &OutputConfig) -> Result<(), FleetError> {
    if js.get_stream(&config.stream).await.is_ok() {
        return Ok(());
    }
    // Another stream may already take these subjects (a fleet's, when `listen --sink`
    // publishes under the same prefix): publish into it.
    if let Ok(name) = js
        .stream_by_subject(format!("{}.stream.control", config.subject_prefix))
        .await
    {
        tracing::info!(
            "publishing into the existing stream {name}, which takes {}.>",
            config.subject_prefix
        );
        return Ok(());
    }
    let created = js
        .create_stream(jetstream::stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{}.>", config.subject_prefix)],
            storage: jetstream::stream::StorageType::File,
            num_replicas: config.replicas,
            duplicate_window: config.duplicate_window,
            ..Default::default()
        })
        .await;
    match (created, js.get_stream(&config.stream).await) {
        (_, Ok(_)) => Ok(()),
        (Err(error), Err(_)) => Err(FleetError::Output(error.into())),
        (Ok(_), Err(error)) => Err(FleetError::Output(error.into())),
    }
}

async fn publish_loop(js: jetstream::Context, shared: Arc<Shared>) {
    let metrics = shared.metrics.clone();
    let worker = shared.config.worker.clone();
    let max_in_flight = shared.config.max_in_flight.max(1);
    let mut in_flight: FuturesUnordered<InFlight> = FuturesUnordered::new();
    // Failed publishes, sent again first.
    let mut retry: VecDeque<Outgoing> = VecDeque::new();
    let mut backoff = RETRY_FIRST;
    let mut resume_at: Option<tokio::time::Instant> = None;
    let mut failing_since: Option<Instant> = None;
    let mut last_error = String::new();
    let mut pause_log = tokio::time::interval(PAUSE_LOG_EVERY);
    pause_log.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Send while there is room in flight (not while backing off after a failure).
        while in_flight.len() < max_in_flight
            && resume_at.is_none_or(|at| tokio::time::Instant::now() >= at)
        {
            resume_at = None;
            let next = retry
                .pop_front()
                .or_else(|| lock(&shared.held).queue.pop_front());
            let Some(message) = next else { break };
            let mut publish = PublishMessage::build()
                .payload(message.payload.clone())
                .message_id(&message.id)
                .header("Sitebucket-Worker", worker.as_str());
            if let Some(shard) = message.shard {
                publish = publish.header("Sitebucket-Shard", shard.to_string().as_str());
            }
            metrics.published.fetch_add(1, Ordering::Relaxed);
            let sent = Instant::now();
            match js.send_publish(message.subject.clone(), publish).await {
                Ok(ack) => in_flight.push(Box::pin(await_ack(message, sent, ack))),
                Err(error) => {
                    metrics.publish_errors.fetch_add(1, Ordering::Relaxed);
                    last_error = error.to_string();
                    note_failure(&mut failing_since, &last_error);
                    retry.push_front(message);
                    resume_at = Some(tokio::time::Instant::now() + backoff);
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
        }
        let work = shared.work.notified();
        tokio::select! {
            Some((message, sent, result)) = in_flight.next(), if !in_flight.is_empty() => {
                match result {
                    Ok(ack) => {
                        if let Some(since) = failing_since.take() {
                            tracing::info!(
                                "NATS acknowledges publishes again after {:.1?} of failures",
                                since.elapsed()
                            );
                        }
                        backoff = RETRY_FIRST;
                        metrics.acked.fetch_add(1, Ordering::Relaxed);
                        if ack.duplicate {
                            metrics.duplicates.fetch_add(1, Ordering::Relaxed);
                        }
                        metrics.observe_latency(sent.elapsed());
                        release(&shared, message.payload.len());
                    }
                    Err(error) => {
                        metrics.publish_errors.fetch_add(1, Ordering::Relaxed);
                        note_failure(&mut failing_since, &error);
                        last_error = error;
                        retry.push_back(message);
                        if resume_at.is_none() {
                            resume_at = Some(tokio::time::Instant::now() + backoff);
                            backoff = (backoff * 2).min(RETRY_MAX);
                        }
                    }
                }
            }
            () = work => {}
            () = sleep_until(resume_at) => {}
            _ = pause_log.tick() => log_pause(&shared, &last_error),
        }
    }
}

/// While reading is paused: for how long, how much is held, how many streams reconnected
/// because of it, and why NATS is behind.
fn log_pause(shared: &Shared, last_error: &str) {
    let held = lock(&shared.held);
    let Some(pause) = held.paused else { return };
    let paused_for = pause.since.elapsed();
    if paused_for < PAUSE_LOG_EVERY {
        return;
    }
    let reconnected = shared
        .metrics
        .reconnects_while_paused
        .load(Ordering::Relaxed)
        .saturating_sub(pause.reconnects_before);
    let why = if last_error.is_empty() {
        String::new()
    } else {
        format!("; last publish error: {last_error}")
    };
    tracing::warn!(
        "reading has been paused for {:.1?}: {} message(s), {} bytes held unacknowledged \
         (bound {} bytes); {reconnected} stream reconnect(s) after a stall because of the \
         pause{why}",
        paused_for,
        held.messages,
        held.bytes,
        shared.config.max_held_bytes,
    );
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn await_ack(
    message: Outgoing,
    sent: Instant,
    ack: PublishAckFuture,
) -> (
    Outgoing,
    Instant,
    Result<jetstream::publish::PublishAck, String>,
) {
    let result = ack.await.map_err(|e| e.to_string());
    (message, sent, result)
}

fn note_failure(failing_since: &mut Option<Instant>, error: &str) {
    if failing_since.is_none() {
        *failing_since = Some(Instant::now());
        tracing::warn!("publishing to NATS failed ({error}); retrying with the same message ids");
    }
}

/// One message acknowledged: frees its room, wakes readers waiting for it, and resumes
/// reading when a pause is over.
fn release(shared: &Shared, len: usize) {
    let mut held = lock(&shared.held);
    let turn = held.release(len, shared.max());
    shared.gauges(&held);
    let empty = held.messages == 0;
    if let Turn::Resume {
        since,
        reconnects_before,
    } = turn
    {
        // Under the lock, so a send cannot pause again before this resume.
        shared.gate.resume();
        shared.metrics.reading_paused.store(0, Ordering::Relaxed);
        let reconnected = shared
            .metrics
            .reconnects_while_paused
            .load(Ordering::Relaxed)
            .saturating_sub(reconnects_before);
        let paused_for = since.elapsed();
        // A short pause is routine backpressure; a long one is an event worth a line.
        if paused_for >= Duration::from_secs(1) || reconnected > 0 {
            tracing::info!(
                "NATS caught up: reading resumes after a pause of {paused_for:.1?} \
                 ({reconnected} stream reconnect(s) after a stall because of it; {} \
                 message(s), {} bytes still held)",
                held.messages,
                held.bytes
            );
        }
    }
    drop(held);
    shared.room.notify_all();
    if empty {
        shared.empty.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> Outgoing {
        Outgoing::new("sb", Bytes::from(vec![b'x'; len]), 64)
    }

    #[test]
    fn reading_pauses_at_the_bound_and_resumes_at_three_quarters() {
        let max = (1000, 100);
        let t0 = Instant::now();
        let mut held = Held::default();
        for _ in 0..9 {
            assert_eq!(held.admit(message(100), max, t0, 0), Turn::Same);
        }
        // The tenth message reaches 1,000 bytes: pause, once.
        assert_eq!(held.admit(message(100), max, t0, 7), Turn::Pause);
        // What was read is still taken while paused, and pauses nothing again.
        assert_eq!(held.admit(message(100), max, t0, 7), Turn::Same);
        assert_eq!(
            (held.messages, held.bytes, held.queue.len()),
            (11, 1100, 11)
        );
        // Down to 800 bytes: still paused (resume at 750).
        for _ in 0..3 {
            assert_eq!(held.release(100, max), Turn::Same);
        }
        assert_eq!(
            held.release(100, max),
            Turn::Resume {
                since: t0,
                reconnects_before: 7
            }
        );
        assert!(held.paused.is_none());
        assert_eq!(held.release(100, max), Turn::Same);
        assert_eq!((held.messages, held.bytes), (6, 600));
    }

    #[test]
    fn the_message_bound_pauses_too_and_one_huge_message_is_taken() {
        let t0 = Instant::now();
        let mut held = Held::default();
        let max = (1 << 20, 4);
        for _ in 0..3 {
            assert_eq!(held.admit(message(1), max, t0, 0), Turn::Same);
        }
        assert_eq!(held.admit(message(1), max, t0, 0), Turn::Pause);
        assert_eq!(
            held.release(1, max),
            Turn::Resume {
                since: t0,
                reconnects_before: 0
            },
            "3 of 4 messages is three quarters"
        );
        // A message larger than the whole byte bound is taken, and pauses at once.
        let mut held = Held::default();
        assert_eq!(held.admit(message(5000), (1000, 10), t0, 0), Turn::Pause);
        assert_eq!(
            held.release(5000, (1000, 10)),
            Turn::Resume {
                since: t0,
                reconnects_before: 0
            }
        );
        assert_eq!((held.messages, held.bytes), (0, 0));
    }

    /// The whole hand-over without NATS: `send` never blocks, pauses the gate at the bound,
    /// `release` resumes it, and the metrics follow.
    #[test]
    fn send_never_blocks_and_drives_the_read_gate() {
        let mut config = OutputConfig::new("w");
        config.max_held_bytes = 300;
        config.max_held_messages = 1000;
        let metrics = Arc::new(Metrics::default());
        let shared = Arc::new(Shared::new(config, metrics.clone()));
        let sender = PublishSender {
            shared: shared.clone(),
        };
        let gate = sender.read_gate();
        let started = Instant::now();
        for _ in 0..10 {
            sender.send(message(100));
        }
        assert!(started.elapsed() < Duration::from_secs(5), "send blocked");
        assert_eq!(sender.held(), (10, 1000), "nothing dropped");
        assert!(gate.is_paused());
        assert!(sender.paused_for().is_some());
        assert_eq!(metrics.paused.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.reading_paused.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.held_bytes.load(Ordering::Relaxed), 1000);
        // Resumes once 225 bytes or fewer are held.
        for _ in 0..7 {
            assert!(gate.is_paused());
            release(&shared, 100);
        }
        assert_eq!(sender.held(), (3, 300));
        assert!(gate.is_paused(), "300 bytes is still the bound");
        release(&shared, 100);
        assert!(!gate.is_paused());
        assert!(sender.paused_for().is_none());
        assert_eq!(metrics.reading_paused.load(Ordering::Relaxed), 0);
        assert_eq!(metrics.held_bytes.load(Ordering::Relaxed), 200);
    }

    #[test]
    fn the_user_comes_from_the_envelope() {
        assert_eq!(for_user(br#"{"for_user":1888,"message":{}}"#), Some(1888));
        assert_eq!(
            for_user(br#"{ "for_user" : "1888" ,"message":{}}"#),
            Some(1888)
        );
        assert_eq!(
            for_user(br#"{"for_user":18446744073709551615}"#),
            Some(u64::MAX)
        );
        assert_eq!(for_user(br#"{"for_user":18446744073709551616}"#), None);
        assert_eq!(for_user(br#"{"for_user":"x"}"#), None);
        assert_eq!(
            for_user(br#"{"control":{"control_uri":"/1.1/site/c/1"}}"#),
            None
        );
        assert_eq!(for_user(b""), None);
    }

    #[test]
    fn kinds_are_the_first_key_or_other() {
        assert_eq!(kind_of(br#"{"control":{}}"#), "control");
        assert_eq!(kind_of(br#" { "disconnect":{"code":4}}"#), "disconnect");
        assert_eq!(kind_of(br#"{"a.b":1}"#), "other");
        assert_eq!(kind_of(b"[1]"), "other");
        assert_eq!(kind_of(b""), "other");
    }

    /// The reference: the first 16 bytes of the SHA-1 of `input`, formatted one by one.
    fn sha1_hex_prefix(input: &[u8]) -> String {
        Sha1::digest(input)[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn ids_depend_on_the_user_and_every_byte() {
        let a = message_id(Some(1), b"{}");
        assert_eq!(a.len(), 32);
        assert_eq!(a, message_id(Some(1), b"{}"));
        assert_ne!(a, message_id(Some(2), b"{}"));
        assert_ne!(a, message_id(None, b"{}"));
        assert_ne!(a, message_id(Some(1), b"{ }"));
        // Stable across versions: SHA-1 of "1888\n{}" and of "-\n{}", first 16 bytes in hex.
        assert_eq!(message_id(Some(1888), b"{}"), sha1_hex_prefix(b"1888\n{}"));
        assert_eq!(message_id(None, b"{}"), sha1_hex_prefix(b"-\n{}"));
        assert_eq!(
            message_id(Some(u64::MAX), b"x"),
            sha1_hex_prefix(b"18446744073709551615\nx")
        );
        assert_eq!(message_id(Some(0), b"x"), sha1_hex_prefix(b"0\nx"));
        let out = Outgoing::new(
            "sb",
            Bytes::from_static(br#"{"for_user":7,"message":{}}"#),
            64,
        );
        assert_eq!(out.subject, "sb.msg.7");
        assert_eq!(out.shard, Some(crate::lease::shard_of(7, 64)));
        let out = Outgoing::new("sb", Bytes::from_static(br#"{"limit":{"track":1}}"#), 64);
        assert_eq!(out.subject, "sb.stream.limit");
        assert_eq!(out.shard, None);
    }
}
