//! What the server does on each connection attempt: pure data, no I/O.
//!
//! A [`Scenario`] is a list of [`AttemptPlan`]s, one per connection attempt in order, and a rule
//! for attempts past the end of the list. A plan says which status line and headers to answer
//! with, how to encode the body (transfer, compression, message framing, chunk boundaries), the
//! [`Step`]s of the body, and how the response [`End`]s.
//!
//! ```
//! use std::time::Duration;
//! use sitebucket_testserver::scenario::{AttemptPlan, End, Scenario, Step};
//!
//! let scenario = Scenario::new(vec![
//!     AttemptPlan::status(503, "Service Unavailable"),
//!     AttemptPlan::ok(vec![
//!         Step::Message(br#"{"control":{"control_uri":"/1.1/site/c/1_1_x"}}"#.to_vec()),
//!         Step::KeepAlive,
//!         Step::Wait(Duration::from_millis(50)),
//!         Step::Disconnect { code: 4, reason: "stall".into() },
//!     ])
//!     .with_end(End::Close),
//! ]);
//! assert_eq!(scenario.plan_for(0).status, 503);
//! assert_eq!(scenario.plan_for(7).status, 200); // the last plan repeats
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::corpus::{self, Corpus, USER_IDS};

/// A whole script: what every connection attempt gets.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The plan for attempt 0, 1, 2, ... in accept order.
    pub attempts: Vec<AttemptPlan>,
    /// What attempts past the end of `attempts` get.
    pub after: AfterList,
    /// Makes each attempt's plan from its index instead of `attempts` (see
    /// [`Scenario::generated`]).
    pub generator: Option<PlanGenerator>,
}

/// Makes the plan of attempt `index` on demand: for endless scripts such as a soak, whose
/// every attempt differs and which could not be listed up front.
#[derive(Clone)]
pub struct PlanGenerator(pub Arc<dyn Fn(usize) -> AttemptPlan + Send + Sync>);

impl std::fmt::Debug for PlanGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlanGenerator(..)")
    }
}

/// What attempts past the end of [`Scenario::attempts`] get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterList {
    /// The last plan again, for every later attempt.
    RepeatLast,
    /// Start over from the first plan.
    Cycle,
}

/// The names [`Scenario::builtin`] knows, for `sitebucket serve --scenario`.
pub const BUILTIN_SCENARIOS: &[&str] = &["steady", "flaky", "firehose"];

impl Scenario {
    /// A scenario whose last plan repeats for every attempt past the list.
    pub fn new(attempts: Vec<AttemptPlan>) -> Self {
        Scenario {
            attempts,
            after: AfterList::RepeatLast,
            generator: None,
        }
    }

    /// A scenario whose plan for each attempt is `make(index)`, called once per attempt as
    /// it is accepted (so it may be endless, and every attempt different). `make` should be
    /// a pure function of the index (e.g. seeded by it), so a run can be told again.
    pub fn generated(make: impl Fn(usize) -> AttemptPlan + Send + Sync + 'static) -> Self {
        Scenario {
            attempts: Vec::new(),
            after: AfterList::RepeatLast,
            generator: Some(PlanGenerator(Arc::new(make))),
        }
    }

    /// One plan for every attempt.
    pub fn single(plan: AttemptPlan) -> Self {
        Scenario::new(vec![plan])
    }

    /// A scenario that starts over from its first plan when the list runs out.
    pub fn cycle(attempts: Vec<AttemptPlan>) -> Self {
        Scenario {
            attempts,
            after: AfterList::Cycle,
            generator: None,
        }
    }

    /// The plan for attempt `index` (0-based, in accept order). An empty list answers every
    /// attempt with `AttemptPlan::ok(vec![])` (a 200 with an empty chunked body, then close).
    pub fn plan_for(&self, index: usize) -> AttemptPlan {
        if let Some(PlanGenerator(make)) = &self.generator {
            return make(index);
        }
        let n = self.attempts.len();
        if n == 0 {
            return AttemptPlan::ok(Vec::new());
        }
        let i = if index < n {
            index
        } else {
            match self.after {
                AfterList::RepeatLast => n - 1,
                AfterList::Cycle => index % n,
            }
        };
        self.attempts[i].clone()
    }

    /// A built-in scenario by name (see [`BUILTIN_SCENARIOS`]), with a fixed seed.
    pub fn builtin(name: &str) -> Option<Scenario> {
        match name {
            "steady" => Some(Scenario::steady(1)),
            "flaky" => Some(Scenario::flaky(2)),
            "firehose" => Some(Scenario::firehose(3)),
            _ => None,
        }
    }

    /// A built-in scenario by name, its pacing and faults around `messages` (e.g. a user's
    /// own recording) instead of the corpus: each streaming connection announces its
    /// control stream, then sends `messages` in order, cycling. `None` for an unknown name
    /// or no message.
    pub fn replaying(name: &str, messages: Vec<Vec<u8>>) -> Option<Scenario> {
        if messages.is_empty() {
            return None;
        }
        let mut source = Source::Replay {
            messages,
            next: 0,
            v2: false,
        };
        match name {
            "steady" => Some(steady_from(&mut source)),
            "flaky" => Some(flaky_from(&mut source)),
            "firehose" => Some(firehose_from(&mut source, 3)),
            _ => None,
        }
    }

    /// A built-in scenario by name (see [`BUILTIN_SCENARIOS`]) for the X API v2 streams, with
    /// a fixed seed: the same pacing and faults with v2 envelopes (tweets in `data`, their
    /// authors in `includes`, the [`V2_RULE`] in `matching_rules`), no control stream, a 429
    /// where Site Streams has a 420, and the v2 `operational-disconnect` message in place of a
    /// `disconnect` message.
    pub fn builtin_v2(name: &str) -> Option<Scenario> {
        let mut source = Source::V2(Corpus::new(11));
        match name {
            "steady" => Some(steady_from(&mut source)),
            "flaky" => Some(flaky_from(&mut source)),
            "firehose" => Some(firehose_from(&mut source, 13)),
            _ => None,
        }
    }

    /// As [`replaying`](Self::replaying), for the v2 streams: no control message first, and
    /// the v2 faults (see [`builtin_v2`](Self::builtin_v2)).
    pub fn replaying_v2(name: &str, messages: Vec<Vec<u8>>) -> Option<Scenario> {
        if messages.is_empty() {
            return None;
        }
        let mut source = Source::Replay {
            messages,
            next: 0,
            v2: true,
        };
        match name {
            "steady" => Some(steady_from(&mut source)),
            "flaky" => Some(flaky_from(&mut source)),
            "firehose" => Some(firehose_from(&mut source, 3)),
            _ => None,
        }
    }

    /// `steady`: a realistic endless stream. Every attempt gets a 200 (encoding and framing as
    /// the request asks), a control message, a friends preamble for each of
    /// [`USER_IDS`], then an endless mix of tweets, events, deletes and
    /// notices, one every 100 ms, with a keep-alive every 3 s — time scaled down from Twitter's
    /// so a human watching sees a steady flow.
    pub fn steady(seed: u64) -> Scenario {
        steady_from(&mut Source::Corpus(Corpus::new(seed)))
    }

    /// `flaky`: a 503, a stream dropped mid-message, a 420, a stream that stalls, a stream
    /// ended by a disconnect message, a server that never answers, then good streams for every
    /// later attempt.
    pub fn flaky(seed: u64) -> Scenario {
        flaky_from(&mut Source::Corpus(Corpus::new(seed)))
    }

    /// `firehose`: as fast as the server can send, endless realistic tweets in `for_user`
    /// envelopes, in chunks of 16 B to 32 KiB that do not line up with messages, and a
    /// keep-alive every 1000 messages.
    pub fn firehose(seed: u64) -> Scenario {
        firehose_from(&mut Source::Corpus(Corpus::new(seed)), seed)
    }
}

/// The rule (id, tag) every v2 message of the built-in scenarios matched.
pub const V2_RULE: (&str, &str) = ("1800000000000000001", "sitebucket-testserver");

/// Where a built-in scenario's messages come from.
enum Source {
    /// Made up from the corpus.
    Corpus(Corpus),
    /// X API v2 envelopes made up from the corpus.
    V2(Corpus),
    /// A recording, in order, cycling; `v2` for a v2 stream.
    Replay {
        messages: Vec<Vec<u8>>,
        next: usize,
        v2: bool,
    },
}

impl Source {
    /// The next message of a stream.
    fn message(&mut self) -> Vec<u8> {
        match self {
            Source::Corpus(corpus) => corpus.site_message(),
            Source::V2(corpus) => corpus.v2_message(Some(V2_RULE)),
            Source::Replay { messages, next, .. } => {
                let message = messages[*next % messages.len()].clone();
                *next += 1;
                message
            }
        }
    }

    /// The pool an endless stream cycles through.
    fn pool(&mut self, firehose: bool) -> Vec<Vec<u8>> {
        match self {
            Source::Corpus(corpus) if firehose => {
                (0..256).map(|_| corpus.firehose_message()).collect()
            }
            Source::Corpus(corpus) => (0..200).map(|_| corpus.site_message()).collect(),
            Source::V2(corpus) => (0..200).map(|_| corpus.v2_message(Some(V2_RULE))).collect(),
            Source::Replay { messages, .. } => messages.clone(),
        }
    }

    /// The control message (each connection announces a live control stream of its own)
    /// and, from the corpus, a friends preamble for each streamed user.
    fn preamble(&mut self) -> Vec<Step> {
        if self.is_v2() {
            return Vec::new();
        }
        let mut steps = vec![Step::Control];
        if let Source::Corpus(corpus) = self {
            for (i, user) in USER_IDS.iter().enumerate() {
                steps.push(Step::Message(corpus.friends_preamble(*user, i % 2 == 1)));
            }
        }
        steps
    }
}

impl Source {
    fn is_v2(&self) -> bool {
        matches!(self, Source::V2(_) | Source::Replay { v2: true, .. })
    }

    /// The step that ends a stream with the API's disconnect message.
    fn disconnect(&self, code: u32, reason: &str) -> Step {
        if self.is_v2() {
            Step::Message(corpus::v2_operational_disconnect(reason))
        } else {
            Step::Disconnect {
                code,
                reason: reason.into(),
            }
        }
    }

    /// The API's rate-limit status.
    fn rate_limited(&self) -> AttemptPlan {
        if self.is_v2() {
            AttemptPlan::status(429, "Too Many Requests")
        } else {
            AttemptPlan::status(420, "Enhance Your Calm")
        }
    }
}

fn steady_from(source: &mut Source) -> Scenario {
    Scenario::single(steady_plan(source, Duration::from_millis(100), 30))
}

fn flaky_from(source: &mut Source) -> Scenario {
    let mut dropped = source.preamble();
    for _ in 0..5 {
        dropped.push(Step::Message(source.message()));
        dropped.push(Step::Wait(Duration::from_millis(100)));
    }
    let half = source.message();
    dropped.push(Step::RawBody(half[..half.len() / 2].to_vec()));
    dropped.push(Step::CloseNow);
    let mut stalled = source.preamble();
    for _ in 0..5 {
        stalled.push(Step::Message(source.message()));
        stalled.push(Step::Wait(Duration::from_millis(100)));
    }
    let mut disconnected = source.preamble();
    for _ in 0..5 {
        disconnected.push(Step::Message(source.message()));
        disconnected.push(Step::Wait(Duration::from_millis(100)));
    }
    disconnected.push(source.disconnect(10, "stream exception: the server is flaky on purpose"));
    Scenario::new(vec![
        AttemptPlan::status(503, "Service Unavailable"),
        AttemptPlan::ok(dropped),
        source.rate_limited(),
        AttemptPlan::ok(stalled).with_end(End::Stall),
        AttemptPlan::ok(disconnected).with_end(End::HoldWithKeepAlives(Duration::from_secs(3))),
        AttemptPlan::never_answers(),
        steady_plan(source, Duration::from_millis(100), 30),
    ])
}

fn firehose_from(source: &mut Source, seed: u64) -> Scenario {
    let mut steps = if source.is_v2() {
        Vec::new()
    } else {
        vec![Step::Control]
    };
    steps.push(Step::Repeat(
        Repeat::endless(source.pool(true)).with_keep_alive_every(1000),
    ));
    Scenario::single(AttemptPlan::ok(steps).with_chunks(ChunkPlan::Random {
        seed,
        min: 16,
        max: 32 * 1024,
    }))
}

fn steady_plan(source: &mut Source, every: Duration, keep_alive_every: u64) -> AttemptPlan {
    let mut steps = source.preamble();
    steps.push(Step::Repeat(
        Repeat::endless(source.pool(false))
            .with_interval(every)
            .with_keep_alive_every(keep_alive_every),
    ));
    AttemptPlan::ok(steps)
}

/// Whether the response starts with a proper head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// `HTTP/1.1 <status> <reason>`, the transfer and encoding headers, then the plan's headers.
    Standard,
    /// No head at all: the steps write everything (use [`Step::RawWire`] for a hand-made head).
    Omit,
}

/// How the body's length is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// `Transfer-Encoding: chunked`, chunk boundaries from the [`ChunkPlan`].
    Chunked,
    /// `Content-Length` of the whole body. The session renders the body once up front to count
    /// it, so an endless [`Repeat`] plays one round of its messages and
    /// [`End::HoldWithKeepAlives`] holds silently (as [`End::Stall`]).
    ContentLength,
    /// No length at all (`Connection: close`): the body runs until the server closes.
    UntilEof,
}

/// The body's `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    /// No compression.
    Identity,
    /// A gzip stream, compressed as it goes and sync-flushed after every step.
    Gzip,
    /// A zlib (`deflate`) stream, compressed as it goes and sync-flushed after every step.
    Deflate,
    /// `Gzip` when the request's `Accept-Encoding` names gzip, else `Deflate` when it names
    /// deflate, else `Identity`.
    Auto,
}

/// How messages are delimited in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Each message followed by `\r\n`.
    Crlf,
    /// `delimited=length`: the decimal length of the message plus its trailing `\r\n`, then
    /// `\r\n`, then the message and `\r\n`.
    Length,
    /// `Length` when the request's query has `delimited=length`, else `Crlf`.
    Auto,
}

/// Where chunk boundaries fall with [`Transfer::Chunked`] (ignored otherwise).
///
/// Whatever the plan, everything pending is sent as a (possibly shorter) chunk before a wait
/// ([`Step::Wait`], each [`Step::Trickle`] byte, a [`Repeat`] interval), before
/// [`Step::RawWire`] and [`Step::CloseNow`], and at the end, so the client always has every
/// byte the script produced before it goes quiet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkPlan {
    /// One chunk per step (each message of a [`Repeat`] is a step).
    PerStep,
    /// Chunks of this many bytes (of the encoded body).
    Fixed(usize),
    /// Chunks of seeded random sizes in `min..=max`, with no regard to message boundaries.
    Random {
        /// Seed of the size sequence.
        seed: u64,
        /// Smallest chunk (at least 1).
        min: usize,
        /// Largest chunk.
        max: usize,
    },
    /// Chunk boundaries at these offsets of the encoded body (ascending; offsets that a forced
    /// boundary already passed are skipped); after the last one, one chunk per step.
    CutPoints(Vec<usize>),
}

/// How the response ends once its steps are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Finish the body properly (gzip trailer, last chunk) and close the connection.
    Close,
    /// Send nothing more, ever, and keep the connection open (until the client or the server
    /// closes it).
    Stall,
    /// Keep the connection open and send a keep-alive blank line at this interval, forever.
    HoldWithKeepAlives(Duration),
}

/// One piece of a response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A message, framed (`\r\n` appended, or length-prefixed).
    Message(Vec<u8>),
    /// A keep-alive: a blank `\r\n` line.
    KeepAlive,
    /// Send everything pending, then nothing for this long.
    Wait(Duration),
    /// A framed `{"disconnect":{"code":..,"stream_name":..,"reason":..}}` message.
    Disconnect {
        /// The disconnect code (1–12 on Twitter).
        code: u32,
        /// The human-readable reason.
        reason: String,
    },
    /// A framed message whose payload is exactly this many bytes (a JSON object when there is
    /// room for one, padded with `a`). Produced piece by piece, so it may be huge.
    Oversized(usize),
    /// Bytes into the body after framing, before compression and chunking: for hand-made,
    /// hostile framing (a half message, a length prefix of `99999999999`, ...).
    RawBody(Vec<u8>),
    /// Bytes straight onto the wire, outside any chunking or compression: a hand-made head,
    /// a chunk size line with 20 hex digits, garbage.
    RawWire(Vec<u8>),
    /// These bytes into the body like [`Step::RawBody`], one byte per interval (each byte after
    /// waiting `every`), each sent on its own.
    Trickle {
        /// The bytes to trickle.
        bytes: Vec<u8>,
        /// The interval before each byte.
        every: Duration,
    },
    /// Close the connection now, without finishing the body: mid-chunk or mid-message when the
    /// previous steps ended there. The plan's [`End`] is skipped.
    CloseNow,
    /// Many messages from a shared pool, possibly forever: see [`Repeat`].
    Repeat(Repeat),
    /// A framed control message announcing this connection's control stream:
    /// `{"control":{"control_uri":"/1.1/site/c/<id>"}}`. The server gives the connection
    /// its own id (`sb_<attempt index>`) and answers control requests for it while the
    /// connection lives (see [`control`](crate::control)); played outside a server's session
    /// (no id assigned), the id is [`corpus::STREAM_ID`].
    Control,
    /// One message for every user the connection follows, at each tick of a clock shared by
    /// every connection: see [`PerUser`].
    PerUser(PerUser),
}

/// A [`Step`] that sends, at each tick `epoch + k × every` for `k` in `0..ticks` (the first
/// tick at or after the response starts, then each later one), one message to every user the
/// connection follows at that moment: its `follow` parameter, or, when it announced a control
/// stream, whatever add and remove requests made of it since. The clock is shared by every
/// connection built from the same step, so two connections that follow one user at one tick
/// send it the same bytes, as Twitter delivers one tweet to every stream that follows its
/// user ([`PerUser::message`]). After the last tick the step ends (the plan's [`End`] follows).
/// Each message sent is logged in the connection's record
/// ([`AttemptRecord::per_user`](crate::AttemptRecord::per_user)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerUser {
    /// Tick 0.
    pub epoch: Instant,
    /// The time between two ticks (not zero).
    pub every: Duration,
    /// How many ticks in all.
    pub ticks: u64,
}

impl PerUser {
    /// The message for `user` at tick `tick`:
    /// `{"for_user":U,"message":{"id":I,"id_str":"I","text":"tick T for U","sitebucket_tick":T,"user":{"id":U,"id_str":"U"}}}`,
    /// where `I` is `T × 2^32 + (U mod 2^32)`.
    pub fn message(user: u64, tick: u64) -> Vec<u8> {
        let id = tick.wrapping_shl(32).wrapping_add(user & 0xffff_ffff);
        format!(
            r#"{{"for_user":{user},"message":{{"id":{id},"id_str":"{id}","text":"tick {tick} for {user}","sitebucket_tick":{tick},"user":{{"id":{user},"id_str":"{user}"}}}}}}"#
        )
        .into_bytes()
    }
}

/// A [`Step`] that sends messages from a shared pool in turn, with an optional interval and
/// keep-alives, for a count or forever. The pool is behind an `Arc`, so every connection shares
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeat {
    /// The messages, sent in order and cycled.
    pub messages: Arc<[Vec<u8>]>,
    /// How many messages to send in all; `None` = forever.
    pub count: Option<u64>,
    /// The wait between two messages (zero: as fast as the connection takes them).
    pub every: Duration,
    /// A keep-alive after every this many messages (0: none).
    pub keep_alive_every: u64,
}

impl Repeat {
    /// Every message of `messages` once, back to back.
    pub fn once(messages: Vec<Vec<u8>>) -> Self {
        let count = messages.len() as u64;
        Repeat {
            messages: messages.into(),
            count: Some(count),
            every: Duration::ZERO,
            keep_alive_every: 0,
        }
    }

    /// `messages` cycled forever, back to back.
    pub fn endless(messages: Vec<Vec<u8>>) -> Self {
        Repeat {
            messages: messages.into(),
            count: None,
            every: Duration::ZERO,
            keep_alive_every: 0,
        }
    }

    /// Sends `count` messages in all (cycling the pool).
    pub fn with_count(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    /// Waits `every` between two messages.
    pub fn with_interval(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// Sends a keep-alive after every `n` messages.
    pub fn with_keep_alive_every(mut self, n: u64) -> Self {
        self.keep_alive_every = n;
        self
    }
}

/// What one connection attempt gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptPlan {
    /// Whether a standard head is sent.
    pub head: Head,
    /// The status code of the head.
    pub status: u16,
    /// The reason phrase of the head.
    pub reason: String,
    /// Extra headers, after the ones the server writes itself.
    pub headers: Vec<(String, String)>,
    /// How the body's length is told.
    pub transfer: Transfer,
    /// Compression of the body.
    pub encoding: BodyEncoding,
    /// Message framing.
    pub framing: Framing,
    /// Chunk boundaries (chunked transfer only).
    pub chunks: ChunkPlan,
    /// The body, in order.
    pub steps: Vec<Step>,
    /// What happens after the steps.
    pub end: End,
}

impl AttemptPlan {
    /// `200 OK`, chunked, encoding and framing as the request asks ([`BodyEncoding::Auto`],
    /// [`Framing::Auto`]), one chunk per step, these steps, then a clean close.
    pub fn ok(steps: Vec<Step>) -> Self {
        AttemptPlan {
            head: Head::Standard,
            status: 200,
            reason: "OK".into(),
            headers: Vec::new(),
            transfer: Transfer::Chunked,
            encoding: BodyEncoding::Auto,
            framing: Framing::Auto,
            chunks: ChunkPlan::PerStep,
            steps,
            end: End::Close,
        }
    }

    /// An error status with a short plain-text body (`<status> <reason>`), `Content-Length`,
    /// then close — as Twitter answered a 401, 420 or 503.
    pub fn status(status: u16, reason: &str) -> Self {
        AttemptPlan {
            head: Head::Standard,
            status,
            reason: reason.into(),
            headers: vec![("Content-Type".into(), "text/plain".into())],
            transfer: Transfer::ContentLength,
            encoding: BodyEncoding::Identity,
            framing: Framing::Crlf,
            chunks: ChunkPlan::PerStep,
            steps: vec![Step::RawBody(format!("{status} {reason}\n").into_bytes())],
            end: End::Close,
        }
    }

    /// Reads the request and never answers: no byte, the connection held open.
    pub fn never_answers() -> Self {
        AttemptPlan {
            head: Head::Omit,
            steps: Vec::new(),
            end: End::Stall,
            ..AttemptPlan::ok(Vec::new())
        }
    }

    /// Reads the request, sends the first half of a `200 OK` chunked head, then closes.
    pub fn half_head() -> Self {
        let head: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        AttemptPlan {
            head: Head::Omit,
            steps: vec![
                Step::RawWire(head[..head.len() / 2].to_vec()),
                Step::CloseNow,
            ],
            ..AttemptPlan::ok(Vec::new())
        }
    }

    /// The same plan with another status line.
    pub fn with_status(mut self, status: u16, reason: &str) -> Self {
        self.status = status;
        self.reason = reason.into();
        self
    }

    /// The same plan with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The same plan with another transfer.
    pub fn with_transfer(mut self, transfer: Transfer) -> Self {
        self.transfer = transfer;
        self
    }

    /// The same plan with another body encoding.
    pub fn with_encoding(mut self, encoding: BodyEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// The same plan with another framing.
    pub fn with_framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// The same plan with another chunk plan.
    pub fn with_chunks(mut self, chunks: ChunkPlan) -> Self {
        self.chunks = chunks;
        self
    }

    /// The same plan with another end.
    pub fn with_end(mut self, end: End) -> Self {
        self.end = end;
        self
    }

    /// The same plan with these steps.
    pub fn with_steps(mut self, steps: Vec<Step>) -> Self {
        self.steps = steps;
        self
    }

    /// The same plan with the head left out (see [`Head::Omit`]).
    pub fn without_head(mut self) -> Self {
        self.head = Head::Omit;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_for_repeats_the_last_or_cycles() {
        let plans = vec![
            AttemptPlan::status(503, "Service Unavailable"),
            AttemptPlan::status(420, "Enhance Your Calm"),
            AttemptPlan::ok(vec![]),
        ];
        let repeat = Scenario::new(plans.clone());
        let statuses: Vec<u16> = (0..6).map(|i| repeat.plan_for(i).status).collect();
        assert_eq!(statuses, [503, 420, 200, 200, 200, 200]);
        let cycle = Scenario::cycle(plans);
        let statuses: Vec<u16> = (0..6).map(|i| cycle.plan_for(i).status).collect();
        assert_eq!(statuses, [503, 420, 200, 503, 420, 200]);
        let empty = Scenario::new(vec![]);
        assert_eq!(empty.plan_for(3), AttemptPlan::ok(vec![]));
        let generated = Scenario::generated(|i| AttemptPlan::status(500 + i as u16, "x"));
        let statuses: Vec<u16> = (0..3).map(|i| generated.plan_for(i).status).collect();
        assert_eq!(statuses, [500, 501, 502]);
    }

    /// Every streaming attempt of a built-in scenario announces the connection's own live
    /// control stream (`Step::Control`), never a fixed id copied into a message.
    #[test]
    fn every_builtin_stream_announces_its_own_control_stream() {
        for name in BUILTIN_SCENARIOS {
            let scenario = Scenario::builtin(name).unwrap();
            for i in 0..8 {
                let plan = scenario.plan_for(i);
                if plan.status != 200 || plan.head != Head::Standard {
                    continue;
                }
                assert_eq!(plan.steps.first(), Some(&Step::Control), "{name} #{i}");
                assert!(
                    !plan.steps.iter().any(|s| matches!(
                        s,
                        Step::Message(m) if m.starts_with(b"{\"control\":")
                    )),
                    "{name} #{i} announces a fixed id"
                );
            }
        }
    }

    /// `replaying` keeps a scenario's shape and faults, with the recording's messages in
    /// order where the corpus's were.
    #[test]
    fn replaying_puts_the_recording_in_place_of_the_corpus() {
        let recording: Vec<Vec<u8>> = (0..3)
            .map(|i| format!("{{\"r\":{i}}}").into_bytes())
            .collect();
        let steady = Scenario::replaying("steady", recording.clone()).unwrap();
        let plan = steady.plan_for(0);
        assert_eq!(plan.steps[0], Step::Control);
        let Step::Repeat(repeat) = &plan.steps[1] else {
            panic!("{:?}", plan.steps)
        };
        assert_eq!(&repeat.messages[..], &recording[..]);
        assert_eq!(repeat.every, Duration::from_millis(100));
        let flaky = Scenario::replaying("flaky", recording.clone()).unwrap();
        assert_eq!(flaky.plan_for(0).status, 503);
        let dropped = flaky.plan_for(1).steps;
        assert_eq!(dropped[1], Step::Message(recording[0].clone()));
        assert_eq!(dropped[3], Step::Message(recording[1].clone()));
        let firehose = Scenario::replaying("firehose", recording.clone()).unwrap();
        assert!(matches!(
            firehose.plan_for(0).chunks,
            ChunkPlan::Random { .. }
        ));
        assert!(Scenario::replaying("nope", recording).is_none());
        assert!(Scenario::replaying("steady", Vec::new()).is_none());
    }

    #[test]
    fn builtins_exist_by_name_and_unknown_names_do_not() {
        for name in BUILTIN_SCENARIOS {
            assert!(Scenario::builtin(name).is_some(), "{name}");
        }
        assert!(Scenario::builtin("nope").is_none());
        let flaky = Scenario::builtin("flaky").unwrap();
        let statuses: Vec<(Head, u16)> = (0..8)
            .map(|i| {
                let p = flaky.plan_for(i);
                (p.head, p.status)
            })
            .collect();
        assert_eq!(statuses[0], (Head::Standard, 503));
        assert_eq!(statuses[2], (Head::Standard, 420));
        assert_eq!(statuses[5].0, Head::Omit, "one attempt never answers");
        assert_eq!(
            statuses[7],
            (Head::Standard, 200),
            "good streams at the end"
        );
        assert!(matches!(
            flaky.plan_for(1).steps.last(),
            Some(Step::CloseNow)
        ));
        assert_eq!(flaky.plan_for(3).end, End::Stall);
    }

    #[test]
    fn repeat_builders_set_their_fields() {
        let r = Repeat::endless(vec![b"a".to_vec()])
            .with_count(5)
            .with_interval(Duration::from_millis(3))
            .with_keep_alive_every(2);
        assert_eq!(r.count, Some(5));
        assert_eq!(r.every, Duration::from_millis(3));
        assert_eq!(r.keep_alive_every, 2);
        assert_eq!(Repeat::once(vec![vec![], vec![]]).count, Some(2));
    }
}
