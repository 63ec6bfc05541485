//! Turns a plan's steps into wire bytes: framing, then compression, then chunking.
//!
//! [`Player::advance`] does one small unit of work per call and appends what it produced to
//! the caller's buffer, so endless and huge bodies are produced piece by piece.

use std::io::Write as _;
use std::time::{Duration, Instant};

use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;

use crate::control::ControlStreams;
use crate::corpus;
use crate::rng::SplitMix64;
use crate::scenario::{ChunkPlan, End, PerUser, Repeat, Step, Transfer};

/// Whom a connection follows, for [`Step::PerUser`].
#[derive(Debug, Clone)]
pub(crate) enum Follows {
    /// Its `follow` parameter, fixed.
    Fixed(Vec<u64>),
    /// Its control stream's users, as they are now (none once it is gone).
    Live(ControlStreams, String),
}

impl Follows {
    fn now(&self) -> Vec<u64> {
        match self {
            Follows::Fixed(users) => users.clone(),
            Follows::Live(streams, id) => streams.get(id).map(|s| s.follow).unwrap_or_default(),
        }
    }
}

/// The largest piece of an [`Step::Oversized`] payload produced per call.
const PIECE: usize = 64 * 1024;

/// The framing in force, once `Auto` is resolved against the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResolvedFraming {
    Crlf,
    Length,
}

/// The compression in force, once `Auto` is resolved against the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResolvedEncoding {
    Identity,
    Gzip,
    Deflate,
}

impl ResolvedEncoding {
    pub(crate) fn header_value(self) -> Option<&'static str> {
        match self {
            ResolvedEncoding::Identity => None,
            ResolvedEncoding::Gzip => Some("gzip"),
            ResolvedEncoding::Deflate => Some("deflate"),
        }
    }
}

/// An incremental compressor whose output is taken after every call.
enum Compressor {
    Identity,
    Gzip(GzEncoder<Vec<u8>>),
    Deflate(ZlibEncoder<Vec<u8>>),
    Finished,
}

impl Compressor {
    fn new(encoding: ResolvedEncoding) -> Self {
        match encoding {
            ResolvedEncoding::Identity => Compressor::Identity,
            ResolvedEncoding::Gzip => {
                Compressor::Gzip(GzEncoder::new(Vec::new(), Compression::default()))
            }
            ResolvedEncoding::Deflate => {
                Compressor::Deflate(ZlibEncoder::new(Vec::new(), Compression::default()))
            }
        }
    }

    /// Writing into a `Vec` never fails, so the compressors' `io::Result`s are always `Ok`.
    fn write(&mut self, data: &[u8], chunker: &mut Chunker, out: &mut Vec<u8>) {
        match self {
            Compressor::Identity | Compressor::Finished => chunker.push(data, out),
            Compressor::Gzip(enc) => {
                let _ = enc.write_all(data);
                chunker.push(enc.get_ref(), out);
                enc.get_mut().clear();
            }
            Compressor::Deflate(enc) => {
                let _ = enc.write_all(data);
                chunker.push(enc.get_ref(), out);
                enc.get_mut().clear();
            }
        }
    }

    /// A sync flush: everything written so far becomes decodable by the client.
    fn sync_flush(&mut self, chunker: &mut Chunker, out: &mut Vec<u8>) {
        match self {
            Compressor::Identity | Compressor::Finished => {}
            Compressor::Gzip(enc) => {
                let _ = enc.flush();
                chunker.push(enc.get_ref(), out);
                enc.get_mut().clear();
            }
            Compressor::Deflate(enc) => {
                let _ = enc.flush();
                chunker.push(enc.get_ref(), out);
                enc.get_mut().clear();
            }
        }
    }

    /// Ends the compressed stream (gzip trailer, zlib checksum).
    fn finish(&mut self, chunker: &mut Chunker, out: &mut Vec<u8>) {
        match std::mem::replace(self, Compressor::Finished) {
            Compressor::Identity | Compressor::Finished => {}
            Compressor::Gzip(enc) => {
                if let Ok(rest) = enc.finish() {
                    chunker.push(&rest, out);
                }
            }
            Compressor::Deflate(enc) => {
                if let Ok(rest) = enc.finish() {
                    chunker.push(&rest, out);
                }
            }
        }
    }
}

/// Where the current chunk ends.
enum ChunkMode {
    /// Not chunked: bytes go straight out.
    Passthrough,
    /// One chunk per step (or flush).
    PerStep,
    Fixed(usize),
    Random(SplitMix64, usize, usize),
    Cuts(Vec<usize>, usize),
}

/// The transfer encoding: collects encoded body bytes and writes chunks.
struct Chunker {
    mode: ChunkMode,
    pending: Vec<u8>,
    /// Encoded body bytes already written out in chunks.
    offset: usize,
    /// Size of the chunk being filled, when the mode sets one.
    target: Option<usize>,
    finished: bool,
}

impl Chunker {
    fn new(transfer: Transfer, plan: &ChunkPlan) -> Self {
        let mode = match (transfer, plan) {
            (Transfer::ContentLength | Transfer::UntilEof, _) => ChunkMode::Passthrough,
            (Transfer::Chunked, ChunkPlan::PerStep) => ChunkMode::PerStep,
            (Transfer::Chunked, ChunkPlan::Fixed(n)) => ChunkMode::Fixed((*n).max(1)),
            (Transfer::Chunked, ChunkPlan::Random { seed, min, max }) => {
                let min = (*min).max(1);
                ChunkMode::Random(SplitMix64::new(*seed), min, (*max).max(min))
            }
            (Transfer::Chunked, ChunkPlan::CutPoints(cuts)) => ChunkMode::Cuts(cuts.clone(), 0),
        };
        let mut chunker = Chunker {
            mode,
            pending: Vec::new(),
            offset: 0,
            target: None,
            finished: false,
        };
        chunker.target = chunker.next_target();
        chunker
    }

    fn next_target(&mut self) -> Option<usize> {
        match &mut self.mode {
            ChunkMode::Passthrough | ChunkMode::PerStep => None,
            ChunkMode::Fixed(n) => Some(*n),
            ChunkMode::Random(rng, min, max) => Some(rng.range_usize(*min, *max)),
            ChunkMode::Cuts(cuts, next) => {
                while *next < cuts.len() && cuts[*next] <= self.offset {
                    *next += 1;
                }
                let cut = cuts.get(*next).copied()?;
                *next += 1;
                Some(cut - self.offset)
            }
        }
    }

    fn write_chunk(&mut self, tail: &[u8], out: &mut Vec<u8>) {
        let len = self.pending.len() + tail.len();
        if len == 0 {
            return;
        }
        out.extend_from_slice(format!("{len:x}\r\n").as_bytes());
        out.extend_from_slice(&self.pending);
        out.extend_from_slice(tail);
        out.extend_from_slice(b"\r\n");
        self.pending.clear();
        self.offset += len;
    }

    /// Takes encoded body bytes; writes every chunk they complete.
    fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        if matches!(self.mode, ChunkMode::Passthrough) {
            out.extend_from_slice(data);
            self.offset += data.len();
            return;
        }
        while !data.is_empty() {
            let Some(target) = self.target else {
                self.pending.extend_from_slice(data);
                return;
            };
            let want = target.saturating_sub(self.pending.len());
            if data.len() < want {
                self.pending.extend_from_slice(data);
                return;
            }
            self.write_chunk(&data[..want], out);
            data = &data[want..];
            self.target = self.next_target();
        }
    }

    /// The end of a step: in per-step mode (or past the last cut point), a chunk boundary.
    fn step_end(&mut self, out: &mut Vec<u8>) {
        if self.target.is_none() {
            self.flush(out);
        }
    }

    /// Writes whatever is pending as a (possibly short) chunk.
    fn flush(&mut self, out: &mut Vec<u8>) {
        if self.pending.is_empty() {
            return;
        }
        let flushed = self.pending.len();
        self.write_chunk(&[], out);
        self.target = match (&self.mode, self.target) {
            // The same absolute cut point is still ahead: `push` writes a chunk as soon as
            // `pending` reaches the target, so `flushed < target` here.
            (ChunkMode::Cuts(..), Some(target)) if target > flushed => Some(target - flushed),
            _ => self.next_target(),
        };
    }

    /// Encoded body bytes produced so far: in chunks already written, or pending.
    fn produced(&self) -> usize {
        self.offset + self.pending.len()
    }

    /// Ends the chunked body with its last chunk.
    fn finish(&mut self, out: &mut Vec<u8>) {
        self.flush(out);
        if !matches!(self.mode, ChunkMode::Passthrough) && !self.finished {
            out.extend_from_slice(b"0\r\n\r\n");
            self.finished = true;
        }
    }
}

/// What [`Player::advance`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Advance {
    /// Produced some bytes (maybe none); call again.
    Continue,
    /// Everything produced so far is in the buffer; wait this long before calling again.
    Wait(Duration),
    /// The response is over: close the connection (`clean`: the body was finished properly).
    Closed { clean: bool },
    /// The response sends nothing more, ever.
    Stalled,
}

/// Progress inside the current step.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// Bytes (Oversized payload, Trickle) or messages (Repeat) done.
    done: u64,
    /// Whether the wait before the next unit was already taken.
    waited: bool,
    /// Whether a keep-alive is owed (Repeat).
    keep_alive_owed: bool,
    /// Whether the frame prefix was written (Oversized).
    started: bool,
}

/// Plays a plan's steps and end through the body pipeline.
pub(crate) struct Player {
    steps: Vec<Step>,
    index: usize,
    progress: Progress,
    end: End,
    framing: ResolvedFraming,
    compressor: Compressor,
    chunker: Chunker,
    /// Endless parts are cut short (one round of a Repeat, no keep-alives after the steps).
    finite: bool,
    /// Bytes written with `RawWire` (not part of the body).
    wire_bytes: u64,
    done: Option<Advance>,
    /// Where each framed message not yet counted out ends in the encoded body.
    message_ends: std::collections::VecDeque<usize>,
    /// Framed messages whose every byte is in the caller's buffer.
    messages_out: u64,
    /// Framed messages produced so far.
    framed: u64,
    /// The script's time, as the session last set it (for [`Step::PerUser`]).
    clock: Option<Instant>,
    /// Whom the connection follows (for [`Step::PerUser`]).
    follows: Follows,
    /// `(user, tick, message index)` of each [`Step::PerUser`] message, not yet taken.
    per_user_log: Vec<(u64, u64, u64)>,
}

impl Player {
    pub(crate) fn new(
        steps: Vec<Step>,
        end: End,
        transfer: Transfer,
        chunks: &ChunkPlan,
        encoding: ResolvedEncoding,
        framing: ResolvedFraming,
    ) -> Self {
        Player {
            steps,
            index: 0,
            progress: Progress::default(),
            end,
            framing,
            compressor: Compressor::new(encoding),
            chunker: Chunker::new(transfer, chunks),
            finite: transfer == Transfer::ContentLength,
            wire_bytes: 0,
            done: None,
            message_ends: std::collections::VecDeque::new(),
            messages_out: 0,
            framed: 0,
            clock: None,
            follows: Follows::Fixed(Vec::new()),
            per_user_log: Vec::new(),
        }
    }

    /// Sets whom the connection follows, for [`Step::PerUser`].
    pub(crate) fn with_follows(mut self, follows: Follows) -> Self {
        self.follows = follows;
        self
    }

    /// Tells the player the script's time before an [`advance`](Self::advance).
    pub(crate) fn set_clock(&mut self, now: Instant) {
        self.clock = Some(now);
    }

    /// The `(user, tick, message index)` of the [`Step::PerUser`] messages produced since
    /// the last call.
    pub(crate) fn take_per_user_log(&mut self) -> Vec<(u64, u64, u64)> {
        std::mem::take(&mut self.per_user_log)
    }

    /// How many framed messages (messages, disconnect and control messages, oversized
    /// frames) are wholly in the bytes handed out so far: their last byte left the
    /// compressor and the chunker, not merely entered them.
    pub(crate) fn messages_out(&mut self) -> u64 {
        while let Some(&end) = self.message_ends.front() {
            if end > self.chunker.offset {
                break;
            }
            self.message_ends.pop_front();
            self.messages_out += 1;
        }
        self.messages_out
    }

    /// Counts the body bytes this player will produce (everything except `RawWire` bytes),
    /// by running a copy of it to its end. Only for finite players.
    pub(crate) fn body_len(mut self) -> u64 {
        let mut total = 0u64;
        let mut buf = Vec::new();
        loop {
            let result = self.advance(&mut buf);
            total += buf.len() as u64;
            buf.clear();
            match result {
                Advance::Continue | Advance::Wait(_) => {}
                Advance::Closed { .. } | Advance::Stalled => break,
            }
        }
        total.saturating_sub(self.wire_bytes)
    }

    fn body(&mut self, data: &[u8], out: &mut Vec<u8>) {
        self.compressor.write(data, &mut self.chunker, out);
    }

    fn step_end(&mut self, out: &mut Vec<u8>) {
        self.compressor.sync_flush(&mut self.chunker, out);
        self.chunker.step_end(out);
    }

    /// A whole framed message as one step.
    fn message(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        if self.framing == ResolvedFraming::Length {
            let prefix = format!("{}\r\n", payload.len() + 2);
            self.body(prefix.as_bytes(), out);
        }
        self.body(payload, out);
        self.body(b"\r\n", out);
        self.step_end(out);
        self.message_ends.push_back(self.chunker.produced());
        self.framed += 1;
    }

    fn keep_alive(&mut self, out: &mut Vec<u8>) {
        self.body(b"\r\n", out);
        self.step_end(out);
    }

    /// Sends everything pending, then asks for a wait.
    fn wait(&mut self, d: Duration, out: &mut Vec<u8>) -> Advance {
        self.chunker.flush(out);
        Advance::Wait(d)
    }

    fn next_step(&mut self) {
        self.index += 1;
        self.progress = Progress::default();
    }

    /// Does one unit of work, appending wire bytes to `out`.
    pub(crate) fn advance(&mut self, out: &mut Vec<u8>) -> Advance {
        if let Some(done) = self.done {
            return done;
        }
        let Some(step) = self.steps.get(self.index) else {
            return self.advance_end(out);
        };
        // Steps are cloned only where the borrow of `self.steps` would overlap `&mut self`;
        // big payloads are handled in place through `std::mem::take`.
        match step {
            Step::Message(_) | Step::RawBody(_) => {
                let payload = match &mut self.steps[self.index] {
                    Step::Message(m) | Step::RawBody(m) => std::mem::take(m),
                    _ => Vec::new(),
                };
                if matches!(self.steps[self.index], Step::Message(_)) {
                    self.message(&payload, out);
                } else {
                    self.body(&payload, out);
                    self.step_end(out);
                }
                self.next_step();
                Advance::Continue
            }
            Step::KeepAlive => {
                self.keep_alive(out);
                self.next_step();
                Advance::Continue
            }
            Step::Wait(d) => {
                let d = *d;
                self.next_step();
                self.wait(d, out)
            }
            Step::Disconnect { code, reason } => {
                let payload = corpus::disconnect(*code, reason);
                self.message(&payload, out);
                self.next_step();
                Advance::Continue
            }
            Step::Oversized(n) => {
                let n = *n;
                self.oversized(n, out);
                Advance::Continue
            }
            Step::RawWire(_) => {
                let bytes = match &mut self.steps[self.index] {
                    Step::RawWire(b) => std::mem::take(b),
                    _ => Vec::new(),
                };
                self.chunker.flush(out);
                out.extend_from_slice(&bytes);
                self.wire_bytes += bytes.len() as u64;
                self.next_step();
                Advance::Continue
            }
            Step::Trickle { bytes, every } => {
                let every = *every;
                // `done` counts bytes sent, so it is below `bytes.len()` when indexing.
                let next = usize::try_from(self.progress.done)
                    .ok()
                    .and_then(|i| bytes.get(i).copied());
                let Some(byte) = next else {
                    self.next_step();
                    return Advance::Continue;
                };
                if !self.progress.waited {
                    self.progress.waited = true;
                    return self.wait(every, out);
                }
                self.body(&[byte], out);
                self.step_end(out);
                self.chunker.flush(out);
                self.progress.done += 1;
                self.progress.waited = false;
                Advance::Continue
            }
            Step::CloseNow => {
                self.chunker.flush(out);
                self.done = Some(Advance::Closed { clean: false });
                Advance::Closed { clean: false }
            }
            Step::Repeat(repeat) => {
                let repeat = repeat.clone();
                self.repeat(&repeat, out)
            }
            Step::PerUser(per_user) => {
                let per_user = per_user.clone();
                self.per_user(&per_user, out)
            }
            Step::Control => {
                // A session puts the connection's own id in place of this step; a bare
                // player announces the corpus id.
                self.message(&corpus::control(corpus::STREAM_ID), out);
                self.next_step();
                Advance::Continue
            }
        }
    }

    /// One piece of an oversized frame whose payload is `n` bytes.
    fn oversized(&mut self, n: usize, out: &mut Vec<u8>) {
        if !self.progress.started {
            self.progress.started = true;
            if self.framing == ResolvedFraming::Length {
                let prefix = format!("{}\r\n", n as u64 + 2);
                self.body(prefix.as_bytes(), out);
            }
        }
        let done = usize::try_from(self.progress.done).unwrap_or(usize::MAX);
        if done < n {
            let end = n.min(done.saturating_add(PIECE));
            let piece: Vec<u8> = (done..end).map(|i| oversized_byte(i, n)).collect();
            self.body(&piece, out);
            self.progress.done = end as u64;
            return;
        }
        self.body(b"\r\n", out);
        self.step_end(out);
        self.message_ends.push_back(self.chunker.produced());
        self.next_step();
    }

    fn repeat(&mut self, repeat: &Repeat, out: &mut Vec<u8>) -> Advance {
        let pool = repeat.messages.len() as u64;
        let limit = match repeat.count {
            Some(count) => count,
            None if self.finite => pool,
            None => u64::MAX,
        };
        if self.progress.keep_alive_owed {
            self.progress.keep_alive_owed = false;
            self.keep_alive(out);
            return Advance::Continue;
        }
        if pool == 0 || self.progress.done >= limit {
            self.next_step();
            return Advance::Continue;
        }
        if self.progress.done > 0 && !repeat.every.is_zero() && !self.progress.waited {
            self.progress.waited = true;
            return self.wait(repeat.every, out);
        }
        // `done % pool` is below `pool`, which is the slice's length.
        let i = (self.progress.done % pool) as usize;
        self.message(&repeat.messages[i], out);
        self.progress.done += 1;
        self.progress.waited = false;
        if repeat.keep_alive_every > 0 && self.progress.done.is_multiple_of(repeat.keep_alive_every)
        {
            self.progress.keep_alive_owed = true;
        }
        Advance::Continue
    }

    /// The next tick of a [`Step::PerUser`]: wait for it, then one message per user.
    fn per_user(&mut self, step: &PerUser, out: &mut Vec<u8>) -> Advance {
        let now = self.clock.unwrap_or(step.epoch);
        let every = step.every.max(Duration::from_millis(1));
        if !self.progress.started {
            self.progress.started = true;
            let since = now.saturating_duration_since(step.epoch);
            let ticks = since.as_nanos().div_ceil(every.as_nanos());
            self.progress.done = u64::try_from(ticks).unwrap_or(u64::MAX);
        }
        let tick = self.progress.done;
        if tick >= step.ticks || self.finite {
            self.next_step();
            return Advance::Continue;
        }
        let at = step.epoch + every * u32::try_from(tick).unwrap_or(u32::MAX);
        if now < at {
            return self.wait(at - now, out);
        }
        for user in self.follows.now() {
            self.message(&PerUser::message(user, tick), out);
            self.per_user_log.push((user, tick, self.framed - 1));
        }
        self.progress.done += 1;
        Advance::Continue
    }

    fn advance_end(&mut self, out: &mut Vec<u8>) -> Advance {
        match self.end {
            End::Close => {
                self.compressor.finish(&mut self.chunker, out);
                self.chunker.finish(out);
                self.done = Some(Advance::Closed { clean: true });
                Advance::Closed { clean: true }
            }
            End::HoldWithKeepAlives(every) if !self.finite => {
                if !self.progress.waited {
                    self.progress.waited = true;
                    return self.wait(every, out);
                }
                self.progress.waited = false;
                self.keep_alive(out);
                Advance::Continue
            }
            End::Stall | End::HoldWithKeepAlives(_) => {
                if self.finite {
                    // A Content-Length body is complete by definition: end the compressed
                    // stream, then hold the connection silently.
                    self.compressor.finish(&mut self.chunker, out);
                }
                self.chunker.flush(out);
                self.done = Some(Advance::Stalled);
                Advance::Stalled
            }
        }
    }
}

/// Byte `i` of an oversized payload of `n` bytes: `{"p":"aaa…"}` when `n >= 8`, else `aaa…`.
fn oversized_byte(i: usize, n: usize) -> u8 {
    const OPEN: &[u8] = b"{\"p\":\"";
    if n < 8 {
        return b'a';
    }
    if i < OPEN.len() {
        OPEN[i]
    } else if i == n - 2 {
        b'"'
    } else if i == n - 1 {
        b'}'
    } else {
        b'a'
    }
}
