//! Durable output: every message published to a JetStream stream, at least once, deduplicated
//! by the engine.
//!
//! - **Subjects**: `<prefix>.msg.<for_user>` for a message with a `for_user` (a Site Streams
//!   envelope), `<prefix>.stream.<kind>` for the others (`control`, `disconnect`, `limit`,
//!   `warning`, …: the message's first key).
//! - **Payload**: the message's raw bytes, as the server sent them.
//! - **Headers**: `Nats-Msg-Id` ([`message_id`]), `Sitebucket-Worker` (who published it) and
//!   `Sitebucket-Shard` (the user's shard, when it has a user).
//! - **Message id**: 32 hex digits of the keyed HighwayHash-128 of the user id and the raw
//!   bytes ([`message_id`]), under a secret key of the stream's ([`IdKey`]). Not the tweet or
//!   event id: a Site Streams message may carry none (events, friends lists, deletes carry
//!   other ids), and one tweet delivered to two users is two messages; the same bytes for the
//!   same user, on the other hand, are exactly what a re-publish after a retry or two workers
//!   overlapping in a hand-over produce, so the stream's duplicate window drops them. The id
//!   needs no parsing beyond the envelope's `for_user`, and every publisher into one stream
//!   (every worker of a fleet, and `listen --sink` publishing into the fleet's stream) makes
//!   the same id for the same message, across restarts and versions that keep the scheme.
//! - **Why a keyed hash, and this one**: whoever writes a tweet chooses most of a message's
//!   bytes. If they could make a message whose id equals another message's within the
//!   duplicate window, the stream would drop the real one as a duplicate. A hash everyone can
//!   compute must then be collision-resistant (SHA-1, the ids before, no longer is: chosen-prefix
//!   collisions have been public since 2020); a keyed one only needs to be unpredictable to
//!   whoever lacks the key. HighwayHash is designed as a keyed pseudorandom function with a
//!   256-bit key (its authors' analysis, no practical attack published), SIMD-fast: ≈ 0.5 µs
//!   for a 4.6 KB message on this project's machine against SHA-1's ≈ 2.9 µs with SHA-NI.
//!   Without the key a 128-bit id collides by chance only (about n²/2¹²⁹ for n messages in the
//!   window), and ids seen do not reveal the key to someone who gets to read the stream. A
//!   non-cryptographic hash with a seed (XXH3, for instance) was not taken: it is not meant to
//!   be a PRF, and seed-independent collisions are known for such designs. The key is as
//!   secret as the NATS account's data: whoever can read the bucket can also publish into the
//!   stream.
//! - **The key**: 32 random bytes made by the first publisher into a stream and stored in the
//!   key-value bucket [`OutputConfig::id_key_bucket`] (default `sitebucket-ids`, no expiry),
//!   under the stream's name, with create-if-absent: every later publisher, and the same one
//!   after a restart, reads that value, so they all agree. A value there that is not a key
//!   this crate writes is a clear error, never replaced. Deleting it changes every id from
//!   then on (a re-publish of an earlier message within the window is then stored again).
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
//! - **Acknowledgements** come back on one wildcard inbox subscription of the publisher's
//!   own: each publish carries the reply subject `<inbox>.<n>`, numbered in sending order, and
//!   its JetStream ack (or error, or "no responders") is matched to it by `n`. One timer
//!   watches the oldest publish's deadline. Readers wake the publisher only when they find
//!   its queue empty, it takes the whole queue per wake-up, and what one wake-up
//!   acknowledged is released under one lock.
//! - **The log** says when reading paused and how much was held, every few seconds while it
//!   stays paused (for how long, how much held, how many streams reconnected because of it),
//!   and when it resumes and after how long; each stream reconnected during the pause says
//!   so in its own line (see [`FleetWorker`](crate::FleetWorker)).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream;
use async_nats::{HeaderMap, HeaderName, HeaderValue, Subject};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use highway::{HighwayHash, HighwayHasher, Key};
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
    /// The most publishes awaiting their acknowledgement at once: the span of numbers from
    /// the oldest publish still waiting to the newest sent (an acknowledgement that does not
    /// come holds the window until its publish times out and is sent again).
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
    /// The key-value bucket (no expiry; created if missing) holding each stream's
    /// message-id key, under the stream's name (see [`IdKey`]).
    pub id_key_bucket: String,
}

impl OutputConfig {
    /// Stream `SITEBUCKET`, subjects `sitebucket.>`, one replica, a two-minute duplicate
    /// window, 256 publishes in flight, 16 MiB or 10,000 messages held, 5 s for an ack, the
    /// message-id keys in bucket `sitebucket-ids`.
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
            id_key_bucket: "sitebucket-ids".into(),
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

/// The secret key of a stream's message ids: 256 bits for HighwayHash (see the
/// [module docs](self) for why a keyed hash). Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct IdKey([u64; 4]);

impl fmt::Debug for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdKey(..)")
    }
}

impl IdKey {
    /// How a key is stored in the bucket: this, then 64 lowercase hex digits.
    const VALUE_PREFIX: &'static str = "sitebucket message-id key v1 highwayhash-128 ";

    /// A key from its 32 bytes (four little-endian words).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut words = [0u64; 4];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut eight = [0; 8];
            eight.copy_from_slice(chunk);
            *word = u64::from_le_bytes(eight);
        }
        IdKey(words)
    }

    /// A new key from the operating system's random source.
    pub fn random() -> Result<Self, String> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes)
            .map_err(|error| format!("no random bytes for a message-id key: {error}"))?;
        Ok(Self::from_bytes(bytes))
    }

    /// The key as stored in the bucket (see [`parse`](Self::parse)).
    pub fn to_value(&self) -> String {
        let mut value = String::with_capacity(Self::VALUE_PREFIX.len() + 64);
        value.push_str(Self::VALUE_PREFIX);
        for word in self.0 {
            push_hex(&mut value, &word.to_le_bytes());
        }
        value
    }

    /// Reads a stored key; anything but what [`to_value`](Self::to_value) writes is an
    /// error that says what was expected (and does not repeat the value: it may be a key).
    pub fn parse(value: &[u8]) -> Result<Self, String> {
        let expected = format!(
            "expected {:?} and 64 lowercase hex digits, as this version of sitebucket writes",
            Self::VALUE_PREFIX
        );
        let hex = value
            .strip_prefix(Self::VALUE_PREFIX.as_bytes())
            .ok_or_else(|| format!("a foreign value of {} bytes; {expected}", value.len()))?;
        let digit = |b: u8| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        };
        if hex.len() != 64 {
            return Err(format!("{} hex digits, not 64; {expected}", hex.len()));
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            match (digit(pair[0]), digit(pair[1])) {
                (Some(high), Some(low)) => *byte = high << 4 | low,
                _ => return Err(format!("not hex digits; {expected}")),
            }
        }
        Ok(Self::from_bytes(bytes))
    }
}

/// `bytes` in lowercase hex, appended to `out`.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
}

/// The `Nats-Msg-Id` of a message: 32 hex digits of the HighwayHash-128, under `key`, of the
/// user id in decimal (`-` without one), a newline, and the raw bytes. See the
/// [module docs](self) for why.
pub fn message_id(key: &IdKey, for_user: Option<u64>, message: &[u8]) -> String {
    let mut hash = HighwayHasher::new(Key(key.0));
    match for_user {
        // The decimal digits without an allocation (this runs for every message).
        Some(user) => hash.append(decimal(user, &mut [0; 20])),
        None => hash.append(b"-"),
    }
    hash.append(b"\n");
    hash.append(message);
    let [low, high] = hash.finalize128();
    let mut id = String::with_capacity(32);
    push_hex(&mut id, &low.to_le_bytes());
    push_hex(&mut id, &high.to_le_bytes());
    id
}

/// `n` in decimal ASCII digits, written at the end of `digits`.
fn decimal(n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    &digits[at..]
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
    /// The message as published: subject, id (under `key`, the publisher's
    /// [`PublishSender::id_key`]) and shard from its bytes (see the [module docs](self)).
    pub fn new(prefix: &str, payload: Bytes, shards: u32, key: &IdKey) -> Self {
        let user = for_user(&payload);
        Self::for_user(prefix, payload, user, shards, key)
    }

    /// [`new`](Self::new) for a message whose [`for_user`] was read already.
    pub(crate) fn for_user(
        prefix: &str,
        payload: Bytes,
        user: Option<u64>,
        shards: u32,
        key: &IdKey,
    ) -> Self {
        let subject = match user {
            Some(user) => format!("{prefix}.msg.{user}"),
            None => format!("{prefix}.stream.{}", kind_of(&payload)),
        };
        Outgoing {
            subject,
            id: message_id(key, user, &payload),
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
    /// The stream's message-id key.
    id_key: IdKey,
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
    /// bound is reached. Also says whether the publisher must be woken: only when the queue
    /// was empty, since the publisher takes the whole queue at each wake-up ([`take`]), so
    /// the other messages of a burst ride along with the first.
    ///
    /// [`take`]: Self::take
    fn admit(
        &mut self,
        message: Outgoing,
        max: (usize, usize),
        now: Instant,
        reconnects: u64,
    ) -> (Turn, bool) {
        let wake = self.queue.is_empty();
        self.bytes += message.payload.len();
        self.messages += 1;
        self.queue.push_back(message);
        if self.paused.is_none() && self.full(max.0, max.1) {
            self.paused = Some(Pause {
                since: now,
                reconnects_before: reconnects,
            });
            return (Turn::Pause, wake);
        }
        (Turn::Same, wake)
    }

    /// Moves every queued message to the end of `into` (still held until acknowledged): one
    /// lock per wake-up of the publisher, not one per message.
    fn take(&mut self, into: &mut VecDeque<Outgoing>) {
        if into.is_empty() {
            // The two buffers trade places: no copy, and their capacities are kept.
            std::mem::swap(into, &mut self.queue);
        } else {
            into.extend(self.queue.drain(..));
        }
    }

    /// `messages` messages of `bytes` bytes in all acknowledged (the publisher releases what
    /// one wake-up acknowledged at once). Resumes reading after a pause once what is held is
    /// down to three quarters of the bound.
    fn release(&mut self, messages: usize, bytes: usize, max: (usize, usize)) -> Turn {
        self.bytes = self.bytes.saturating_sub(bytes);
        self.messages = self.messages.saturating_sub(messages);
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
        let (turn, wake) = {
            let mut held = lock(&shared.held);
            let (turn, wake) = held.admit(
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
            (turn, wake)
        };
        if turn == Turn::Pause {
            shared.metrics.paused.fetch_add(1, Ordering::Relaxed);
            shared.metrics.reading_paused.store(1, Ordering::Relaxed);
        }
        if wake {
            shared.work.notify_one();
        }
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

    /// The key of the stream's message ids: give it to [`Outgoing::new`].
    pub fn id_key(&self) -> &IdKey {
        &self.shared.id_key
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
    fn new(config: OutputConfig, metrics: Arc<Metrics>, id_key: IdKey) -> Self {
        Self {
            id_key,
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
            .build(client.clone());
        let stream = ensure_stream(&js, &config).await?;
        let id_key = stream_id_key(&js, &config, &stream).await?;
        // The acknowledgements come back on one wildcard inbox of the publisher's own, each
        // publish's reply subject ending in its sequence number (see [`Window`]).
        let inbox = format!("{}.", client.new_inbox());
        let acks = client
            .subscribe(format!("{inbox}*"))
            .await
            .map_err(|error| FleetError::Output(error.into()))?;
        let shared = Arc::new(Shared::new(config, metrics, id_key));
        let task = tokio::spawn(publish_loop(client, acks, inbox, shared.clone()));
        Ok(Publisher { shared, task })
    }

    /// The gate paused while the bound is reached (see [`PublishSender::read_gate`]).
    pub fn read_gate(&self) -> ReadGate {
        self.shared.gate.clone()
    }

    /// The key of the stream's message ids (see [`Outgoing::new`]).
    pub fn id_key(&self) -> &IdKey {
        &self.shared.id_key
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
/// Returns the name of the stream that takes the subjects (another stream's, when one
/// already does).
async fn ensure_stream(
    js: &jetstream::Context,
    config: &OutputConfig,
) -> Result<String, FleetError> {
    if js.get_stream(&config.stream).await.is_ok() {
        return Ok(config.stream.clone());
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
        return Ok(name);
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
        (_, Ok(_)) => Ok(config.stream.clone()),
        (Err(error), Err(_)) => Err(FleetError::Output(error.into())),
        (Ok(_), Err(error)) => Err(FleetError::Output(error.into())),
    }
}

/// The key-value key under which `stream`'s message-id key is stored: the stream's name,
/// with any byte a key cannot hold (and `=`) written `=XX` in hex.
fn id_key_name(stream: &str) -> String {
    let mut name = String::with_capacity(stream.len());
    for byte in stream.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_".contains(&byte) {
            name.push(char::from(byte));
        } else {
            name.push('=');
            push_hex(&mut name, &[byte]);
        }
    }
    name
}

/// `stream`'s message-id key from [`OutputConfig::id_key_bucket`]: the one stored there, or
/// a new random one stored if none is (create-if-absent, so concurrent publishers agree on
/// whichever was stored first). A value that is not a key is an error, left as it is.
async fn stream_id_key(
    js: &jetstream::Context,
    config: &OutputConfig,
    stream: &str,
) -> Result<IdKey, FleetError> {
    let bucket = &config.id_key_bucket;
    let mut patience = Patience::new();
    // Several publishers starting at once on a cluster race to create the bucket, and one
    // just created may have no leader yet (a timeout): tried again for ID_KEY_PATIENCE.
    let store = loop {
        match crate::nats::open_bucket(js, bucket, Duration::ZERO, config.replicas).await {
            Ok(store) => break store,
            Err(error) if patience.is_spent() => return Err(error),
            Err(error) => tracing::debug!("{error}; trying again"),
        }
        patience.wait().await;
    };
    let name = id_key_name(stream);
    let failed = |error: async_nats::Error| FleetError::Bucket {
        bucket: bucket.clone(),
        error,
    };
    // Created by another publisher between a read and a create: read again (a key is never
    // updated). An engine error (a bucket just created on a cluster, with no leader yet;
    // another publisher's create racing this one) is tried again for up to ID_KEY_PATIENCE;
    // a value that is not a key is an error at once.
    loop {
        let error: async_nats::Error = match store.get(&name).await {
            Ok(Some(value)) => {
                return IdKey::parse(&value).map_err(|why| {
                    failed(
                        format!(
                            "the key {name:?} should hold the message-id key of the stream \
                             {stream:?} but holds {why}. Delete it only if no publisher uses \
                             it: the message ids of the stream change with it"
                        )
                        .into(),
                    )
                });
            }
            Ok(None) => {
                let key = IdKey::random().map_err(|why| failed(why.into()))?;
                match store.create(&name, key.to_value().into()).await {
                    Ok(_) => {
                        tracing::info!(
                            "made the message-id key of the stream {stream} ({bucket}/{name})"
                        );
                        return Ok(key);
                    }
                    // Stored by another publisher meanwhile: read it.
                    Err(error)
                        if error.kind()
                            == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists =>
                    {
                        continue;
                    }
                    Err(error) => error.into(),
                }
            }
            Err(error) => error.into(),
        };
        if patience.is_spent() {
            return Err(failed(
                format!("cannot read or store the message-id key {name:?}: {error}").into(),
            ));
        }
        tracing::debug!("the message-id key {name:?}: {error}; trying again");
        patience.wait().await;
    }
}

/// How long [`stream_id_key`] keeps trying through engine errors.
const ID_KEY_PATIENCE: Duration = Duration::from_secs(20);

/// [`stream_id_key`]'s tries through engine errors: for [`ID_KEY_PATIENCE`] from the first,
/// 50 ms apart, doubling up to 1 s.
struct Patience {
    started: Instant,
    next_wait: Duration,
}

impl Patience {
    fn new() -> Self {
        Patience {
            started: Instant::now(),
            next_wait: Duration::from_millis(50),
        }
    }

    /// Whether the time for tries is over.
    fn is_spent(&self) -> bool {
        self.started.elapsed() >= ID_KEY_PATIENCE
    }

    /// Sleeps before the next try.
    async fn wait(&mut self) {
        tokio::time::sleep(self.next_wait).await;
        self.next_wait = (self.next_wait * 2).min(Duration::from_secs(1));
    }
}

/// The publishes awaiting their acknowledgement, by sequence number: publish `n` is sent with
/// the reply subject `<inbox>.<n>`, and its acknowledgement arrives on the publisher's one
/// subscription to `<inbox>.*`. Numbers are given in sending order, so the oldest publish
/// still waiting is the first slot and its deadline is the window's. The window spans at
/// most [`OutputConfig::max_in_flight`] numbers, from the oldest still waiting to the
/// newest sent: an acknowledgement that does not come holds the window (the bound of what
/// is in flight) until its publish times out and is sent again, under a new number.
#[derive(Debug)]
struct Window<T> {
    /// The number of `slots[0]`.
    first: u64,
    /// What each publish carried and when it was sent; `None` once answered. The first slot,
    /// when there is one, is never `None`.
    slots: VecDeque<Option<(T, tokio::time::Instant)>>,
}

impl<T> Window<T> {
    fn new() -> Self {
        Window {
            first: 1,
            slots: VecDeque::new(),
        }
    }

    /// Numbers from the oldest publish waiting to the newest sent (what the bound limits).
    fn span(&self) -> usize {
        self.slots.len()
    }

    /// The number the next publish gets.
    fn next(&self) -> u64 {
        self.first + self.slots.len() as u64
    }

    /// Records a publish sent at `sent`; its number is [`next`](Self::next)'s.
    fn push(&mut self, item: T, sent: tokio::time::Instant) -> u64 {
        let n = self.next();
        self.slots.push_back(Some((item, sent)));
        n
    }

    /// The publish answered by the acknowledgement for number `n`: `None` for a number not
    /// waiting (answered already, or timed out and sent again under another number).
    fn answer(&mut self, n: u64) -> Option<(T, tokio::time::Instant)> {
        let at = usize::try_from(n.checked_sub(self.first)?).ok()?;
        let answered = self.slots.get_mut(at)?.take()?;
        self.trim();
        Some(answered)
    }

    /// When the oldest publish waiting was sent.
    fn oldest(&self) -> Option<tokio::time::Instant> {
        self.slots
            .front()
            .and_then(|slot| slot.as_ref().map(|(_, at)| *at))
    }

    /// The oldest publish waiting if it was sent at or before `before` (it is given up on:
    /// an acknowledgement for its number is ignored from now on).
    fn expire(&mut self, before: tokio::time::Instant) -> Option<T> {
        if self.oldest()? > before {
            return None;
        }
        let (item, _) = self.slots.pop_front().flatten()?;
        self.first += 1;
        self.trim();
        Some(item)
    }

    /// Drops the answered slots at the front.
    fn trim(&mut self) {
        while self.slots.front().is_some_and(Option::is_none) {
            self.slots.pop_front();
            self.first += 1;
        }
    }
}

/// What an acknowledgement says: `Ok(duplicate)` when the stream stored the message (or
/// already had its `Nats-Msg-Id` within its duplicate window), `Err(why)` otherwise: a status
/// instead of an answer (503: no stream takes the subject), a JetStream error, or a reply
/// that is not an acknowledgement.
fn ack_outcome(
    status: Option<u16>,
    description: Option<&str>,
    payload: &[u8],
) -> Result<bool, String> {
    #[derive(serde::Deserialize)]
    struct Ack {
        seq: Option<u64>,
        #[serde(default)]
        duplicate: bool,
        error: Option<ApiError>,
    }
    #[derive(serde::Deserialize)]
    struct ApiError {
        #[serde(default)]
        code: u16,
        #[serde(default)]
        err_code: u64,
        #[serde(default)]
        description: String,
    }
    match status {
        None => {
            if let Some(duplicate) = plain_ack(payload) {
                return Ok(duplicate);
            }
        }
        Some(503) => return Err("no stream takes the subject (no responders)".into()),
        Some(code) => {
            return Err(format!(
                "status {code} instead of an acknowledgement{}",
                description.map(|d| format!(" ({d})")).unwrap_or_default()
            ))
        }
    }
    match serde_json::from_slice::<Ack>(payload) {
        Ok(Ack {
            error: Some(error), ..
        }) => Err(format!(
            "JetStream refused the message: {} (code {}, error code {})",
            error.description, error.code, error.err_code
        )),
        Ok(Ack {
            seq: Some(_),
            duplicate,
            ..
        }) => Ok(duplicate),
        Ok(_) | Err(_) => Err(format!(
            "an unreadable acknowledgement: {:?}",
            String::from_utf8_lossy(&payload[..payload.len().min(200)])
        )),
    }
}

/// The acknowledgement as nats-server writes it for a stream without a domain,
/// `{"stream":"NAME","seq":N}` or `{"stream":"NAME","seq":N,"duplicate":true}`, read
/// without a JSON parser (one per message): `Some(duplicate)`; `None` for anything else, which
/// [`ack_outcome`] reads as JSON.
fn plain_ack(payload: &[u8]) -> Option<bool> {
    let rest = payload.strip_prefix(br#"{"stream":""#)?;
    let name = rest.iter().position(|&b| b == b'"')?;
    if rest[..name].iter().any(|&b| b == b'\\' || b < 0x20) {
        return None;
    }
    let rest = rest[name..].strip_prefix(br#"","seq":"#)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    // A sequence number is a u64 (at most 20 digits) without leading zeros.
    if digits == 0 || digits > 20 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    std::str::from_utf8(&rest[..digits])
        .ok()?
        .parse::<u64>()
        .ok()?;
    match &rest[digits..] {
        b"}" => Some(false),
        br#","duplicate":true}"# => Some(true),
        _ => None,
    }
}

/// Acknowledged in one wake-up of the publisher: released at once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Released {
    messages: usize,
    bytes: usize,
}

const WORKER_HEADER: HeaderName = HeaderName::from_static("Sitebucket-Worker");
const SHARD_HEADER: HeaderName = HeaderName::from_static("Sitebucket-Shard");

async fn publish_loop(
    client: async_nats::Client,
    mut acks: async_nats::Subscriber,
    inbox: String,
    shared: Arc<Shared>,
) {
    let metrics = shared.metrics.clone();
    // The headers every publish carries, built once: each publish clones them and adds its
    // own id and shard.
    let mut constant = HeaderMap::new();
    constant.insert(WORKER_HEADER, shared.config.worker.as_str());
    // Each shard's header value, made the first time one of its messages is published.
    let mut shard_values: Vec<Option<HeaderValue>> = Vec::new();
    // The subjects and reply subjects of publishes, carved one after another from shared
    // blocks: no allocation of its own per subject.
    let mut subjects = SubjectArena::default();
    let max_in_flight = shared.config.max_in_flight.max(1);
    let ack_timeout = shared.config.ack_timeout;
    let mut window: Window<Outgoing> = Window::new();
    // What the readers handed over, taken from the shared queue all at once.
    let mut pending: VecDeque<Outgoing> = VecDeque::new();
    // Failed publishes, sent again first.
    let mut retry: VecDeque<Outgoing> = VecDeque::new();
    let mut backoff = RETRY_FIRST;
    let mut resume_at: Option<tokio::time::Instant> = None;
    let mut failing_since: Option<Instant> = None;
    let mut last_error = String::new();
    let mut acks_open = true;
    let mut pause_log = tokio::time::interval(PAUSE_LOG_EVERY);
    pause_log.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One timer for the oldest publish's deadline and the end of a backoff, moved as they
    // change (moving it later does not touch the timer wheel).
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut armed: Option<tokio::time::Instant> = None;
    loop {
        lock(&shared.held).take(&mut pending);
        // Send while the window has room (not while backing off after a failure).
        if resume_at.is_none_or(|at| tokio::time::Instant::now() >= at) {
            resume_at = None;
            while window.span() < max_in_flight {
                let Some(message) = retry.pop_front().or_else(|| pending.pop_front()) else {
                    break;
                };
                let mut headers = constant.clone();
                headers.insert(NATS_MESSAGE_ID, message.id.as_str());
                if let Some(shard) = message.shard {
                    headers.insert(SHARD_HEADER, shard_value(&mut shard_values, shard));
                }
                let subject = subjects.subject(&[message.subject.as_bytes()]);
                let reply =
                    subjects.subject(&[inbox.as_bytes(), decimal(window.next(), &mut [0; 20])]);
                metrics.published.fetch_add(1, Ordering::Relaxed);
                let sent = tokio::time::timeout(
                    ack_timeout,
                    client.publish_with_reply_and_headers(
                        subject,
                        reply,
                        headers,
                        message.payload.clone(),
                    ),
                )
                .await;
                let error = match sent {
                    Ok(Ok(())) => {
                        window.push(message, tokio::time::Instant::now());
                        continue;
                    }
                    Ok(Err(error)) => error.to_string(),
                    Err(_) => format!("the client took no publish for {ack_timeout:?}"),
                };
                metrics.publish_errors.fetch_add(1, Ordering::Relaxed);
                note_failure(&mut failing_since, &error);
                last_error = error;
                retry.push_front(message);
                resume_at = Some(tokio::time::Instant::now() + backoff);
                backoff = (backoff * 2).min(RETRY_MAX);
                break;
            }
        }
        let deadline = match (window.oldest().map(|at| at + ack_timeout), resume_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Moved only when the deadline comes earlier: as acknowledgements arrive the oldest
        // deadline only moves later, and a timer that fires early finds nothing expired and
        // is set again (once per acknowledgement timeout, not once per wake-up).
        if let Some(at) = deadline {
            if armed.is_none_or(|armed| at < armed) {
                timer.as_mut().reset(at);
                armed = Some(at);
            }
        }
        let work = shared.work.notified();
        tokio::select! {
            ack = acks.next(), if acks_open => {
                let mut released = Released::default();
                let mut next = ack;
                loop {
                    match next {
                        Some(ack) => {
                            let outcome = answer(&mut window, &inbox, &ack);
                            if let Some((message, sent, outcome)) = outcome {
                                match outcome {
                                    Ok(duplicate) => {
                                        if let Some(since) = failing_since.take() {
                                            tracing::info!(
                                                "NATS acknowledges publishes again after {:.1?} \
                                                 of failures",
                                                since.elapsed()
                                            );
                                        }
                                        backoff = RETRY_FIRST;
                                        metrics.acked.fetch_add(1, Ordering::Relaxed);
                                        if duplicate {
                                            metrics.duplicates.fetch_add(1, Ordering::Relaxed);
                                        }
                                        metrics.observe_latency(sent.elapsed());
                                        released.messages += 1;
                                        released.bytes += message.payload.len();
                                    }
                                    Err(error) => {
                                        metrics.publish_errors.fetch_add(1, Ordering::Relaxed);
                                        note_failure(&mut failing_since, &error);
                                        last_error = error;
                                        retry.push_back(message);
                                        if resume_at.is_none() {
                                            resume_at =
                                                Some(tokio::time::Instant::now() + backoff);
                                            backoff = (backoff * 2).min(RETRY_MAX);
                                        }
                                    }
                                }
                            }
                        }
                        None => {
                            acks_open = false;
                            tracing::error!(
                                "the NATS client closed the acknowledgements' subscription: \
                                 publishes will time out"
                            );
                            break;
                        }
                    }
                    // Every acknowledgement already there, in this one wake-up.
                    match acks.next().now_or_never() {
                        Some(ack) => next = ack,
                        None => break,
                    }
                }
                if released.messages > 0 {
                    release(&shared, released);
                }
            }
            () = work => {}
            () = &mut timer, if armed.is_some() => {
                armed = None;
                let now = tokio::time::Instant::now();
                let mut expired = 0;
                while let Some(message) = now.checked_sub(ack_timeout).and_then(|before| window.expire(before)) {
                    expired += 1;
                    retry.push_back(message);
                }
                if expired > 0 {
                    metrics.publish_errors.fetch_add(expired, Ordering::Relaxed);
                    let error = format!(
                        "{expired} publish(es) not acknowledged within {ack_timeout:?}"
                    );
                    note_failure(&mut failing_since, &error);
                    last_error = error;
                    if resume_at.is_none() {
                        resume_at = Some(now + backoff);
                        backoff = (backoff * 2).min(RETRY_MAX);
                    }
                }
            }
            _ = pause_log.tick() => log_pause(&shared, &last_error),
        }
    }
}

/// Subjects for the NATS client, carved from shared blocks of [`SubjectArena::BLOCK`] bytes:
/// a `Subject` made from a `&str` or a `String` costs an allocation of its own (two, once the
/// client clones it), one carved here costs a copy of its bytes only. A block is freed once
/// the client has written (and dropped) every subject carved from it.
#[derive(Debug, Default)]
struct SubjectArena {
    block: bytes::BytesMut,
}

impl SubjectArena {
    const BLOCK: usize = 16 * 1024;

    /// A subject of `parts` one after the other.
    fn subject(&mut self, parts: &[&[u8]]) -> Subject {
        let len = parts.iter().map(|p| p.len()).sum();
        if self.block.capacity() - self.block.len() < len {
            self.block = bytes::BytesMut::with_capacity(Self::BLOCK.max(len));
        }
        for part in parts {
            self.block.extend_from_slice(part);
        }
        let bytes = self.block.split().freeze();
        match Subject::try_from(bytes) {
            Ok(subject) => subject,
            // Not reached: every part is a `str` or ASCII digits; the slow way regardless.
            Err(_) => Subject::from(String::from_utf8_lossy(&parts.concat()).into_owned()),
        }
    }
}

/// The `Sitebucket-Shard` header value of `shard`, made once per shard (at most 65,536 of
/// them kept).
fn shard_value(values: &mut Vec<Option<HeaderValue>>, shard: Shard) -> HeaderValue {
    const KEPT: usize = 1 << 16;
    let at = shard as usize;
    if at >= KEPT {
        return HeaderValue::from(shard);
    }
    if values.len() <= at {
        values.resize(at + 1, None);
    }
    values[at]
        .get_or_insert_with(|| HeaderValue::from(shard))
        .clone()
}

/// The publish an acknowledgement answers, when it is one of the window's, with what the
/// acknowledgement says ([`ack_outcome`]).
fn answer(
    window: &mut Window<Outgoing>,
    inbox: &str,
    ack: &async_nats::Message,
) -> Option<(Outgoing, tokio::time::Instant, Result<bool, String>)> {
    let n = ack
        .subject
        .as_str()
        .strip_prefix(inbox)?
        .parse::<u64>()
        .ok()?;
    let (message, sent) = window.answer(n)?;
    let outcome = ack_outcome(
        ack.status.map(|s| s.as_u16()),
        ack.description.as_deref(),
        &ack.payload,
    );
    Some((message, sent, outcome))
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

fn note_failure(failing_since: &mut Option<Instant>, error: &str) {
    if failing_since.is_none() {
        *failing_since = Some(Instant::now());
        tracing::warn!("publishing to NATS failed ({error}); retrying with the same message ids");
    }
}

/// Messages acknowledged (all those of one wake-up of the publisher): frees their room, wakes
/// readers waiting for it, and resumes reading when a pause is over.
fn release(shared: &Shared, released: Released) {
    let mut held = lock(&shared.held);
    let turn = held.release(released.messages, released.bytes, shared.max());
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
        Outgoing::new("sb", Bytes::from(vec![b'x'; len]), 64, &test_key())
    }

    #[test]
    fn reading_pauses_at_the_bound_and_resumes_at_three_quarters() {
        let max = (1000, 100);
        let t0 = Instant::now();
        let mut held = Held::default();
        for _ in 0..9 {
            assert_eq!(held.admit(message(100), max, t0, 0).0, Turn::Same);
        }
        // The tenth message reaches 1,000 bytes: pause, once.
        assert_eq!(held.admit(message(100), max, t0, 7).0, Turn::Pause);
        // What was read is still taken while paused, and pauses nothing again.
        assert_eq!(held.admit(message(100), max, t0, 7).0, Turn::Same);
        assert_eq!(
            (held.messages, held.bytes, held.queue.len()),
            (11, 1100, 11)
        );
        // Down to 800 bytes: still paused (resume at 750).
        for _ in 0..3 {
            assert_eq!(held.release(1, 100, max), Turn::Same);
        }
        assert_eq!(
            held.release(1, 100, max),
            Turn::Resume {
                since: t0,
                reconnects_before: 7
            }
        );
        assert!(held.paused.is_none());
        assert_eq!(held.release(1, 100, max), Turn::Same);
        assert_eq!((held.messages, held.bytes), (6, 600));
    }

    #[test]
    fn the_message_bound_pauses_too_and_one_huge_message_is_taken() {
        let t0 = Instant::now();
        let mut held = Held::default();
        let max = (1 << 20, 4);
        for _ in 0..3 {
            assert_eq!(held.admit(message(1), max, t0, 0).0, Turn::Same);
        }
        assert_eq!(held.admit(message(1), max, t0, 0).0, Turn::Pause);
        assert_eq!(
            held.release(1, 1, max),
            Turn::Resume {
                since: t0,
                reconnects_before: 0
            },
            "3 of 4 messages is three quarters"
        );
        // A message larger than the whole byte bound is taken, and pauses at once.
        let mut held = Held::default();
        assert_eq!(held.admit(message(5000), (1000, 10), t0, 0).0, Turn::Pause);
        assert_eq!(
            held.release(1, 5000, (1000, 10)),
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
        let shared = Arc::new(Shared::new(config, metrics.clone(), test_key()));
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
            release(
                &shared,
                Released {
                    messages: 1,
                    bytes: 100,
                },
            );
        }
        assert_eq!(sender.held(), (3, 300));
        assert!(gate.is_paused(), "300 bytes is still the bound");
        release(
            &shared,
            Released {
                messages: 1,
                bytes: 100,
            },
        );
        assert!(!gate.is_paused());
        assert!(sender.paused_for().is_none());
        assert_eq!(metrics.reading_paused.load(Ordering::Relaxed), 0);
        assert_eq!(metrics.held_bytes.load(Ordering::Relaxed), 200);
    }

    /// The publisher is woken by the message that finds the queue empty only, and takes the
    /// whole queue at once; what it took stays held until released.
    #[test]
    fn only_the_first_message_of_a_burst_wakes_the_publisher_which_takes_them_all() {
        let max = (1 << 20, 1000);
        let t0 = Instant::now();
        let mut held = Held::default();
        let wakes: Vec<bool> = (0..5)
            .map(|_| held.admit(message(10), max, t0, 0).1)
            .collect();
        assert_eq!(wakes, [true, false, false, false, false]);
        let mut pending = VecDeque::new();
        held.take(&mut pending);
        assert_eq!((pending.len(), held.queue.len()), (5, 0));
        assert_eq!((held.messages, held.bytes), (5, 50), "taken is still held");
        // The queue is empty again: the next message wakes it, and a second take appends
        // in order behind what is still pending.
        assert!(held.admit(message(20), max, t0, 0).1);
        assert!(!held.admit(message(30), max, t0, 0).1);
        held.take(&mut pending);
        let lens: Vec<usize> = pending.iter().map(|m| m.payload.len()).collect();
        assert_eq!(lens, [10, 10, 10, 10, 10, 20, 30]);
        assert!(held.admit(message(1), max, t0, 0).1);
    }

    /// Releasing what one wake-up acknowledged at once resumes exactly when releasing the
    /// same messages one by one would have resumed by the end of them.
    #[test]
    fn a_batch_of_acknowledgements_is_released_at_once() {
        let max = (1000, 100);
        let t0 = Instant::now();
        let fill = || {
            let mut held = Held::default();
            for _ in 0..10 {
                held.admit(message(100), max, t0, 3);
            }
            assert!(held.paused.is_some());
            held
        };
        let mut held = fill();
        assert_eq!(
            held.release(2, 200, max),
            Turn::Same,
            "800 bytes: still paused"
        );
        assert_eq!(
            held.release(3, 300, max),
            Turn::Resume {
                since: t0,
                reconnects_before: 3
            }
        );
        assert_eq!((held.messages, held.bytes), (5, 500));
        assert_eq!(held.release(5, 500, max), Turn::Same);
        assert_eq!((held.messages, held.bytes), (0, 0));
        // The whole bound at once, and more than is held: nothing underflows.
        let mut held = fill();
        assert!(matches!(held.release(20, 5000, max), Turn::Resume { .. }));
        assert_eq!((held.messages, held.bytes), (0, 0));
    }

    #[test]
    fn the_window_numbers_publishes_and_matches_acknowledgements_in_any_order() {
        let t0 = tokio::time::Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut window = Window::new();
        assert_eq!((window.span(), window.oldest()), (0, None));
        let first = window.next();
        for (i, c) in ['a', 'b', 'c', 'd'].into_iter().enumerate() {
            assert_eq!(window.push(c, at(i as u64)), first + i as u64);
        }
        assert_eq!(window.span(), 4);
        // Out of order: the span stays until the oldest is answered.
        assert_eq!(window.answer(first + 2), Some(('c', at(2))));
        assert_eq!(window.answer(first + 1), Some(('b', at(1))));
        assert_eq!((window.span(), window.oldest()), (4, Some(at(0))));
        assert_eq!(window.answer(first), Some(('a', at(0))));
        assert_eq!((window.span(), window.oldest()), (1, Some(at(3))));
        // Answered already, never sent, or before the window: ignored.
        for n in [first, first + 2, first + 4, first + 99, 0, u64::MAX] {
            assert_eq!(window.answer(n), None, "{n}");
        }
        assert_eq!(window.next(), first + 4, "numbers are never reused");
        assert_eq!(window.answer(first + 3), Some(('d', at(3))));
        assert_eq!((window.span(), window.oldest()), (0, None));
    }

    #[test]
    fn the_oldest_publishes_expire_in_order_and_their_late_answers_are_ignored() {
        let t0 = tokio::time::Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut window = Window::new();
        let a = window.push('a', at(0));
        let b = window.push('b', at(10));
        let c = window.push('c', at(20));
        assert_eq!(window.answer(b), Some(('b', at(10))));
        assert_eq!(window.expire(at(0) - Duration::from_millis(1)), None);
        assert_eq!(window.expire(at(15)), Some('a'));
        // 'b' was answered: the next oldest is 'c', not yet due.
        assert_eq!(window.expire(at(15)), None);
        assert_eq!(window.oldest(), Some(at(20)));
        assert_eq!(
            window.answer(a),
            None,
            "a late answer to an expired publish"
        );
        assert_eq!(window.expire(at(20)), Some('c'));
        assert_eq!(window.answer(c), None);
        assert_eq!(window.span(), 0);
        // Sent again, it gets a new number.
        assert_eq!(window.push('a', at(30)), c + 1);
    }

    #[test]
    fn acknowledgements_are_read_exactly() {
        let ok = br#"{"stream":"SITEBUCKET","seq":42}"#;
        assert_eq!(ack_outcome(None, None, ok), Ok(false));
        let dup = br#"{"stream":"SITEBUCKET","seq":42,"duplicate":true}"#;
        assert_eq!(ack_outcome(None, None, dup), Ok(true));
        let domain = br#"{"stream":"S","domain":"hub","seq":1,"duplicate":false}"#;
        assert_eq!(ack_outcome(None, None, domain), Ok(false));
        let refused =
            br#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}"#;
        let error = ack_outcome(None, None, refused).expect_err("an error");
        assert!(error.contains("maximum messages exceeded"), "{error}");
        assert!(error.contains("10077"), "{error}");
        let error = ack_outcome(Some(503), None, b"").expect_err("no responders");
        assert!(error.contains("no responders"), "{error}");
        let error = ack_outcome(Some(408), Some("Request Timeout"), b"").expect_err("408");
        assert!(
            error.contains("408") && error.contains("Request Timeout"),
            "{error}"
        );
        for bad in [&b""[..], b"{}", b"{\"stream\":\"S\"}", b"not json", b"[1]"] {
            assert!(ack_outcome(None, None, bad).is_err(), "{bad:?}");
        }
    }

    /// The JSON-free reading of the usual acknowledgement says what the JSON reading says,
    /// and leaves everything else to it.
    #[test]
    fn plain_acknowledgements_are_read_without_json_and_agree_with_it() {
        let plain: [(&[u8], bool); 4] = [
            (br#"{"stream":"SITEBUCKET","seq":42}"#, false),
            (br#"{"stream":"S","seq":0}"#, false),
            (
                br#"{"stream":"S","seq":18446744073709551615,"duplicate":true}"#,
                true,
            ),
            (br#"{"stream":"a-b_c","seq":7,"duplicate":true}"#, true),
        ];
        for (ack, duplicate) in plain {
            assert_eq!(plain_ack(ack), Some(duplicate), "{ack:?}");
            assert_eq!(ack_outcome(None, None, ack), Ok(duplicate), "{ack:?}");
        }
        // Not the plain form: read as JSON, with the same outcome JSON gives.
        let others: [(&[u8], Option<bool>); 10] = [
            (br#"{"stream":"S","seq":1,"duplicate":false}"#, Some(false)),
            (br#"{"stream":"S","domain":"hub","seq":1}"#, Some(false)),
            (br#"{"seq":1,"stream":"S"}"#, Some(false)),
            (br#"{"stream":"S\"x","seq":1}"#, Some(false)),
            (br#"{"stream":"S","seq":01}"#, None),
            (br#"{"stream":"S","seq":18446744073709551616}"#, None),
            (br#"{"stream":"S","seq":}"#, None),
            (br#"{"stream":"S","seq":1} "#, Some(false)),
            (br#"{"stream":"S","seq":1"#, None),
            (
                br#"{"stream":"S","seq":1,"error":{"code":1,"description":"x"}}"#,
                None,
            ),
        ];
        for (ack, outcome) in others {
            assert_eq!(plain_ack(ack), None, "{ack:?}");
            assert_eq!(ack_outcome(None, None, ack).ok(), outcome, "{ack:?}");
        }
        // A status wins over a body that looks like an acknowledgement.
        assert!(ack_outcome(Some(503), None, br#"{"stream":"S","seq":1}"#).is_err());
    }

    /// Subjects carved from the arena are the parts joined, across the end of a block too,
    /// and each keeps its bytes while later ones are carved.
    #[test]
    fn subjects_are_carved_whole_across_blocks() {
        let mut arena = SubjectArena::default();
        let inbox = "_INBOX.abcdef.";
        let mut kept = Vec::new();
        for n in 0..2_000u64 {
            let subject = arena.subject(&[inbox.as_bytes(), decimal(n, &mut [0; 20])]);
            assert_eq!(subject.as_str(), format!("{inbox}{n}"));
            kept.push(subject);
        }
        for (n, subject) in kept.iter().enumerate() {
            assert_eq!(subject.as_str(), format!("{inbox}{n}"));
        }
        let long = "x".repeat(SubjectArena::BLOCK + 5);
        assert_eq!(arena.subject(&[long.as_bytes()]).as_str(), long);
        assert_eq!(arena.subject(&[b"a.", b"b"]).as_str(), "a.b");
        assert_eq!(decimal(0, &mut [0; 20]), b"0");
        assert_eq!(decimal(u64::MAX, &mut [0; 20]), b"18446744073709551615");
        let mut values = Vec::new();
        assert_eq!(shard_value(&mut values, 63).as_str(), "63");
        assert_eq!(shard_value(&mut values, 63).as_str(), "63");
        assert_eq!(shard_value(&mut values, u32::MAX).as_str(), "4294967295");
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

    /// A fixed key for the tests: bytes 0, 1, …, 31.
    fn test_key() -> IdKey {
        IdKey::from_bytes(std::array::from_fn(|i| i as u8))
    }

    #[test]
    fn ids_depend_on_the_key_the_user_and_every_byte() {
        let key = test_key();
        let a = message_id(&key, Some(1), b"{}");
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(a, message_id(&key, Some(1), b"{}"));
        assert_ne!(a, message_id(&key, Some(2), b"{}"));
        assert_ne!(a, message_id(&key, None, b"{}"));
        assert_ne!(a, message_id(&key, Some(1), b"{ }"));
        // User and bytes are kept apart: "1" + "2\n…" is not "12" + "\n…".
        assert_ne!(
            message_id(&key, Some(1), b"2"),
            message_id(&key, Some(12), b"")
        );
        let other = IdKey::from_bytes([7; 32]);
        assert_ne!(
            a,
            message_id(&other, Some(1), b"{}"),
            "another stream's key"
        );
        // Stable across versions (HighwayHash-128 of "1888\n{}", "-\n{}", … under the test
        // key, low word first, each little-endian): a change here changes every id.
        assert_eq!(
            message_id(&key, Some(1888), b"{}"),
            "39e34ced7380cb131b9249007dde109f"
        );
        assert_eq!(
            message_id(&key, None, b"{}"),
            "ff22feddd3e4c65b20b5b04ab775f344"
        );
        assert_eq!(
            message_id(&key, Some(u64::MAX), b"x"),
            "bee5ce4732bb84df10e27f01e6eeeabf"
        );
        let long = vec![b'y'; 4600];
        assert_eq!(
            message_id(&key, Some(0), &long),
            "587aea4e7d3d5309f008a8641eca954d"
        );
        let out = Outgoing::new(
            "sb",
            Bytes::from_static(br#"{"for_user":7,"message":{}}"#),
            64,
            &key,
        );
        assert_eq!(out.subject, "sb.msg.7");
        assert_eq!(out.shard, Some(crate::lease::shard_of(7, 64)));
        assert_eq!(out.id, message_id(&key, Some(7), &out.payload));
        let out = Outgoing::new(
            "sb",
            Bytes::from_static(br#"{"limit":{"track":1}}"#),
            64,
            &key,
        );
        assert_eq!(out.subject, "sb.stream.limit");
        assert_eq!(out.shard, None);
        assert_eq!(out.id, message_id(&key, None, &out.payload));
    }

    #[test]
    fn id_keys_are_stored_as_text_and_anything_else_is_refused() {
        let key = test_key();
        let value = key.to_value();
        assert_eq!(
            value,
            "sitebucket message-id key v1 highwayhash-128 \
             000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        );
        assert_eq!(IdKey::parse(value.as_bytes()), Ok(key.clone()));
        let random = IdKey::random().expect("random bytes");
        assert_eq!(
            IdKey::parse(random.to_value().as_bytes()),
            Ok(random.clone())
        );
        assert_ne!(random, IdKey::random().expect("random bytes"));
        let prefix = IdKey::VALUE_PREFIX;
        let hex = "00".repeat(32);
        for (bad, says) in [
            (String::new(), "foreign value of 0 bytes"),
            ("shards=3".to_owned(), "foreign value of 8 bytes"),
            (format!("v0 {hex}"), "foreign value"),
            (format!("{prefix}{}", &hex[..62]), "62 hex digits, not 64"),
            (format!("{prefix}{hex}0"), "65 hex digits, not 64"),
            (format!("{prefix}{hex}\n"), "65 hex digits, not 64"),
            (format!("{prefix}{}", "0A".repeat(32)), "not hex digits"),
            (format!("{prefix}{}", "zz".repeat(32)), "not hex digits"),
        ] {
            let error = IdKey::parse(bad.as_bytes()).expect_err(&bad);
            assert!(error.contains(says), "{bad:?}: {error}");
            assert!(error.contains("64 lowercase hex digits"), "{error}");
        }
        // Secret: never in a Debug line (nor in an error, which does not repeat the value).
        assert_eq!(format!("{key:?}"), "IdKey(..)");
        let secret = format!("{prefix}{}", "g".repeat(64));
        assert!(!IdKey::parse(secret.as_bytes())
            .expect_err("not hex")
            .contains("gggg"));
    }

    #[test]
    fn id_key_names_are_stream_names_with_odd_bytes_escaped() {
        assert_eq!(id_key_name("SITEBUCKET"), "SITEBUCKET");
        assert_eq!(id_key_name("a-b_c9"), "a-b_c9");
        assert_eq!(id_key_name("a=b$c"), "a=3db=24c");
        assert_eq!(id_key_name("é"), "=c3=a9");
        assert_ne!(id_key_name("a=3d"), id_key_name("a="));
    }
}

/// The publisher against a real `nats-server` (Debian's; `.ci/run` installs it).
#[cfg(test)]
mod nats_tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use sitebucket_e2e::nats::NatsServer;

    use super::{IdKey, Outgoing, OutputConfig, Publisher};
    use crate::metrics::Metrics;

    /// A message for `user`, numbered `n`, with its id under `key`.
    fn envelope_with(key: &IdKey, user: u64, n: usize) -> Outgoing {
        Outgoing::new(
            "sbt",
            Bytes::from(format!(r#"{{"for_user":{user},"message":{{"n":{n}}}}}"#)),
            64,
            key,
        )
    }

    async fn stored(client: &async_nats::Client, stream: &str) -> u64 {
        let js = async_nats::jetstream::new(client.clone());
        let mut stream = js.get_stream(stream).await.expect("the stream");
        stream.info().await.expect("its info").state.messages
    }

    /// A fresh `nats-server`, a client of it (reconnecting every 50 ms once it is lost), and
    /// a publisher on it into stream `SBT` (subjects `sbt.>`) with `max_in_flight`
    /// publishes in flight, a worker named `t`, and `ack_timeout` for an ack (the
    /// default's 5 s when `None`).
    async fn publisher_on_a_fresh_server(
        max_in_flight: usize,
        ack_timeout: Option<Duration>,
    ) -> (NatsServer, async_nats::Client, Publisher, Arc<Metrics>) {
        let server = NatsServer::start();
        let client = async_nats::ConnectOptions::new()
            .reconnect_delay_callback(|_| Duration::from_millis(50))
            .connect(&server.url)
            .await
            .expect("connect");
        let mut config = OutputConfig::new("t");
        config.stream = "SBT".into();
        config.subject_prefix = "sbt".into();
        config.max_in_flight = max_in_flight;
        if let Some(timeout) = ack_timeout {
            config.ack_timeout = timeout;
        }
        let metrics = Arc::new(Metrics::default());
        let publisher = Publisher::start(client.clone(), config, metrics.clone())
            .await
            .expect("publisher");
        (server, client, publisher, metrics)
    }

    async fn connect(url: &str) -> async_nats::Client {
        async_nats::ConnectOptions::new()
            .reconnect_delay_callback(|_| Duration::from_millis(50))
            .connect(url)
            .await
            .expect("connect")
    }

    /// A publisher named `worker` into stream `stream`, subjects `<prefix>.>`.
    async fn publisher_into(
        client: &async_nats::Client,
        worker: &str,
        stream: &str,
        prefix: &str,
    ) -> Result<(Publisher, Arc<Metrics>), crate::nats::FleetError> {
        let mut config = OutputConfig::new(worker);
        config.stream = stream.into();
        config.subject_prefix = prefix.into();
        let metrics = Arc::new(Metrics::default());
        let publisher = Publisher::start(client.clone(), config, metrics.clone()).await?;
        Ok((publisher, metrics))
    }

    /// Every publisher into one stream (the workers of one fleet) uses the stream's one key,
    /// made once by whichever started first and kept across restarts of the publishers and
    /// of the server: the same message gets the same id from each, so one's re-publish of
    /// the other's message is a duplicate. Another stream (another fleet) has another key.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publishers_into_one_stream_share_its_id_key_across_restarts() {
        let mut server = NatsServer::start();
        let client = connect(&server.url).await;
        // Both start at once: they race to create the key and must agree all the same.
        let (a, b) = tokio::join!(
            publisher_into(&client, "a", "SBT", "sbt"),
            publisher_into(&client, "b", "SBT", "sbt")
        );
        let ((a, _), (b, metrics_b)) = (a.expect("a"), b.expect("b"));
        assert_eq!(a.id_key(), b.id_key());
        let key = a.id_key().clone();
        for n in 0..50 {
            a.sender().send(envelope_with(a.id_key(), 5, n));
        }
        assert_eq!(a.drain(Duration::from_secs(30)).await, 0);
        for n in 0..50 {
            b.sender().send(envelope_with(b.id_key(), 5, n));
        }
        assert_eq!(b.drain(Duration::from_secs(30)).await, 0);
        assert_eq!(metrics_b.duplicates.load(Ordering::Relaxed), 50);
        assert_eq!(stored(&client, "SBT").await, 50);

        let (other, _) = publisher_into(&client, "c", "OTHER", "other")
            .await
            .expect("another stream");
        assert_ne!(other.id_key(), &key, "another stream's key");
        assert_ne!(
            envelope_with(other.id_key(), 5, 0).id,
            envelope_with(&key, 5, 0).id
        );
        drop(other);

        drop(client);
        let before = server.pid();
        tokio::task::block_in_place(|| server.restart());
        let before = before.expect("running");
        assert!(
            !std::path::Path::new(&format!("/proc/{before}")).exists(),
            "the nats-server before the restart still runs: the key would not have been reloaded"
        );
        let client = connect(&server.url).await;
        let (again, _) = publisher_into(&client, "a", "SBT", "sbt")
            .await
            .expect("after a restart");
        assert_eq!(again.id_key(), &key, "the key survives restarts");
    }

    /// A value in the id-key bucket that is not a key: the publisher does not start, the
    /// error names the bucket and the key and says what was expected, and the value is left
    /// as it was.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_foreign_value_in_the_id_key_bucket_is_a_clear_error() {
        let server = NatsServer::start();
        let client = connect(&server.url).await;
        let js = async_nats::jetstream::new(client.clone());
        let bucket = OutputConfig::new("t").id_key_bucket;
        let store = crate::nats::open_bucket(&js, &bucket, Duration::ZERO, 1)
            .await
            .expect("the bucket");
        store
            .put("SBT", Bytes::from_static(b"not a key"))
            .await
            .expect("put");
        let error = match publisher_into(&client, "t", "SBT", "sbt").await {
            Ok(_) => panic!("a publisher started on a foreign key"),
            Err(error) => error.to_string(),
        };
        for says in [
            "\"sitebucket-ids\"",
            "\"SBT\"",
            "a foreign value of 9 bytes",
            "64 lowercase hex digits",
        ] {
            assert!(error.contains(says), "{says}: {error}");
        }
        assert!(
            !error.contains("not a key"),
            "the value is not repeated: {error}"
        );
        let value = store.get("SBT").await.expect("get").expect("still there");
        assert_eq!(&value[..], b"not a key");
    }

    /// Every message is acknowledged once stored, a re-publish of the same bytes is a
    /// duplicate the stream drops, and what is held drains to nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_message_is_acknowledged_and_repeats_are_duplicates() {
        let (_server, client, publisher, metrics) = publisher_on_a_fresh_server(16, None).await;
        let sender = publisher.sender();
        for n in 0..2000 {
            sender.send(envelope_with(sender.id_key(), 7 + (n % 5) as u64, n));
        }
        // The first 100 again: same user, same bytes, same ids.
        for n in 0..100 {
            sender.send(envelope_with(sender.id_key(), 7 + (n % 5) as u64, n));
        }
        assert_eq!(publisher.drain(Duration::from_secs(30)).await, 0);
        assert_eq!(metrics.acked.load(Ordering::Relaxed), 2100);
        assert_eq!(metrics.duplicates.load(Ordering::Relaxed), 100);
        assert_eq!(metrics.publish_errors.load(Ordering::Relaxed), 0);
        assert_eq!(metrics.held_messages.load(Ordering::Relaxed), 0);
        assert_eq!(stored(&client, "SBT").await, 2000);
    }

    /// Acknowledgements lost with the server (killed with messages in flight) time out and
    /// the messages are sent again with the same ids once it is back: each stored once, none
    /// lost, none left held.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publishes_whose_answers_are_lost_are_sent_again_until_acknowledged() {
        let (mut server, client, publisher, metrics) =
            publisher_on_a_fresh_server(8, Some(Duration::from_millis(500))).await;
        let sender = publisher.sender();
        for n in 0..200 {
            sender.send(envelope_with(sender.id_key(), 3, n));
        }
        server.kill();
        for n in 200..400 {
            sender.send(envelope_with(sender.id_key(), 3, n));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        tokio::task::block_in_place(|| server.restart());
        assert_eq!(publisher.drain(Duration::from_secs(60)).await, 0);
        assert!(metrics.acked.load(Ordering::Relaxed) >= 400);
        assert_eq!(stored(&client, "SBT").await, 400, "each message once");
    }

    /// A subject no stream takes is answered "no responders": an error, retried, and
    /// delivered once a stream takes it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_responders_is_an_error_retried_until_a_stream_takes_the_subject() {
        let (_server, client, publisher, metrics) =
            publisher_on_a_fresh_server(OutputConfig::new("t").max_in_flight, None).await;
        let js = async_nats::jetstream::new(client.clone());
        js.delete_stream("SBT").await.expect("delete the stream");
        let sender = publisher.sender();
        for n in 0..10 {
            sender.send(envelope_with(sender.id_key(), 9, n));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while metrics.publish_errors.load(Ordering::Relaxed) == 0 {
            assert!(tokio::time::Instant::now() < deadline, "no error counted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(metrics.acked.load(Ordering::Relaxed), 0);
        assert_eq!(sender.held().0, 10, "nothing released before its ack");
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "SBT".into(),
            subjects: vec!["sbt.>".into()],
            ..Default::default()
        })
        .await
        .expect("create the stream");
        assert_eq!(publisher.drain(Duration::from_secs(30)).await, 0);
        assert_eq!(metrics.acked.load(Ordering::Relaxed), 10);
        assert_eq!(stored(&client, "SBT").await, 10);
    }
}
