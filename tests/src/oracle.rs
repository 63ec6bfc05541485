//! Independent reference models the simulator checks the core against.
//!
//! They share no code with `sitebucket-proto`: [`ReferenceReader`] decodes what the client was
//! handed (head, chunked transfer, gzip/deflate, CRLF or `delimited=length` framing) the plain
//! way, and [`BackoffModel`] recomputes every reconnect wait from the policy's numbers.

use std::collections::VecDeque;
use std::io::Write as _;
use std::time::Duration;

use flate2::write::{GzDecoder, ZlibDecoder};
use sitebucket_proto::{BackoffPolicy, Framing, StreamError, TwitterBackoff};

/// A frame the client must hand out, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expected {
    Message(Vec<u8>),
    KeepAlive,
}

/// Why the reference reader stopped taking bytes: from here on the client must not hand out
/// anything for this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// A head with a status other than 200.
    Status(u16),
    /// A message longer than `max_message_bytes`.
    Oversized,
    /// A `disconnect` message (delivered with the frames that came in the same read, then
    /// nothing after them).
    Disconnect(u32),
    /// The body ended (last chunk or `Content-Length` reached).
    BodyEnd,
}

enum Transfer {
    /// Reading a chunk-size line.
    ChunkSize(Vec<u8>),
    /// Inside a chunk: bytes left.
    ChunkData(u64),
    /// After a chunk's data: how many of its `\r\n` bytes were seen.
    ChunkEnd(u8),
    Length(u64),
    UntilEof,
}

enum Content {
    Identity,
    Gzip(Box<GzDecoder<Vec<u8>>>),
    Deflate(Box<ZlibDecoder<Vec<u8>>>),
}

/// Decodes the bytes one connection delivered to the client into the frames the client must
/// hand out.
pub(crate) struct ReferenceReader {
    framing: Framing,
    max_message_bytes: usize,
    head: Vec<u8>,
    body: Option<(Transfer, Content)>,
    framed: Vec<u8>,
    /// CRLF framing: bytes of `framed` already searched for a line end.
    scanned: usize,
    /// `delimited=length`: the frame length being waited for.
    frame_len: Option<usize>,
    pub(crate) expected: VecDeque<Expected>,
    pub(crate) stop: Option<Stop>,
    /// A `disconnect` message was framed in the current read: the read is framed to its end,
    /// then reading stops.
    disconnect: Option<u32>,
    pub(crate) status: Option<u16>,
}

impl ReferenceReader {
    pub(crate) fn new(framing: Framing, max_message_bytes: usize) -> Self {
        ReferenceReader {
            framing,
            max_message_bytes,
            head: Vec::new(),
            body: None,
            framed: Vec::new(),
            scanned: 0,
            frame_len: None,
            expected: VecDeque::new(),
            stop: None,
            disconnect: None,
            status: None,
        }
    }

    /// Bytes the client was handed (one read).
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.push_read(bytes);
        if let Some(code) = self.disconnect.take() {
            self.stop.get_or_insert(Stop::Disconnect(code));
        }
    }

    fn push_read(&mut self, bytes: &[u8]) {
        if self.stop.is_some() {
            return;
        }
        if self.body.is_none() {
            self.head.extend_from_slice(bytes);
            let Some(end) = find(&self.head, b"\r\n\r\n") else {
                return;
            };
            let head = std::mem::take(&mut self.head);
            let (head, rest) = head.split_at(end + 4);
            let text = String::from_utf8_lossy(head);
            let status = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse::<u16>().ok())
                .unwrap_or(0);
            self.status = Some(status);
            if status != 200 {
                self.stop = Some(Stop::Status(status));
                return;
            }
            let header = |name: &str| {
                text.split("\r\n").skip(1).find_map(|line| {
                    let (n, v) = line.split_once(':')?;
                    n.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_ascii_lowercase())
                })
            };
            let transfer = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
                Transfer::ChunkSize(Vec::new())
            } else if let Some(n) = header("content-length").and_then(|v| v.parse().ok()) {
                Transfer::Length(n)
            } else {
                Transfer::UntilEof
            };
            let content = match header("content-encoding").as_deref() {
                Some("gzip") => Content::Gzip(Box::new(GzDecoder::new(Vec::new()))),
                Some("deflate") => Content::Deflate(Box::new(ZlibDecoder::new(Vec::new()))),
                _ => Content::Identity,
            };
            self.body = Some((transfer, content));
            let rest = rest.to_vec();
            return self.push_body(&rest);
        }
        self.push_body(bytes);
    }

    fn push_body(&mut self, mut input: &[u8]) {
        let mut decoded = Vec::new();
        let mut ended = false;
        let Some((transfer, content)) = &mut self.body else {
            return;
        };
        while !input.is_empty() && !ended {
            match transfer {
                Transfer::ChunkSize(line) => {
                    let b = input[0];
                    input = &input[1..];
                    line.push(b);
                    if line.ends_with(b"\r\n") {
                        let text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
                        let digits = text.split(';').next().unwrap_or("").trim();
                        let size = u64::from_str_radix(digits, 16).unwrap_or(0);
                        if size == 0 {
                            ended = true;
                        } else {
                            *transfer = Transfer::ChunkData(size);
                        }
                    }
                }
                Transfer::ChunkData(left) => {
                    let take = (*left).min(input.len() as u64) as usize;
                    decoded.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    *left -= take as u64;
                    if *left == 0 {
                        *transfer = Transfer::ChunkEnd(0);
                    }
                }
                Transfer::ChunkEnd(seen) => {
                    input = &input[1..];
                    *seen += 1;
                    if *seen == 2 {
                        *transfer = Transfer::ChunkSize(Vec::new());
                    }
                }
                Transfer::Length(left) => {
                    let take = (*left).min(input.len() as u64) as usize;
                    decoded.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    *left -= take as u64;
                    ended = *left == 0;
                }
                Transfer::UntilEof => {
                    decoded.extend_from_slice(input);
                    input = &[];
                }
            }
        }
        if let Transfer::Length(0) = transfer {
            ended = true;
        }
        let plain = match content {
            Content::Identity => decoded,
            Content::Gzip(d) => {
                let _ = d.write_all(&decoded);
                let _ = d.flush();
                std::mem::take(d.get_mut())
            }
            Content::Deflate(d) => {
                let _ = d.write_all(&decoded);
                let _ = d.flush();
                std::mem::take(d.get_mut())
            }
        };
        self.framed.extend_from_slice(&plain);
        self.frame();
        if ended && self.stop.is_none() {
            self.stop = Some(Stop::BodyEnd);
        }
    }

    fn frame(&mut self) {
        let mut at = 0;
        while self.stop.is_none() {
            let rest = &self.framed[at..];
            match self.framing {
                Framing::Crlf => {
                    // Resume the search where the last one gave up: every byte is scanned once.
                    let from = self.scanned.saturating_sub(at + 1);
                    let Some(end) = find_crlf(rest, from) else {
                        self.scanned = self.framed.len();
                        break;
                    };
                    let line = rest[..end].to_vec();
                    at += end + 2;
                    self.scanned = at;
                    self.frame_done(line);
                }
                _ => {
                    if let Some(len) = self.frame_len {
                        if rest.len() < len {
                            break;
                        }
                        let mut frame = rest[..len].to_vec();
                        at += len;
                        self.frame_len = None;
                        if frame.ends_with(b"\r\n") {
                            frame.truncate(len - 2);
                        }
                        self.frame_done(frame);
                        continue;
                    }
                    let Some(end) = find(rest, b"\n") else { break };
                    let line = String::from_utf8_lossy(&rest[..end]).trim().to_owned();
                    at += end + 1;
                    if line.is_empty() {
                        self.expected.push_back(Expected::KeepAlive);
                        continue;
                    }
                    let count: usize = line.parse().unwrap_or(usize::MAX);
                    if count.saturating_sub(2) > self.max_message_bytes {
                        self.stop = Some(Stop::Oversized);
                    } else {
                        self.frame_len = Some(count);
                    }
                }
            }
        }
        let consumed = at.min(self.framed.len());
        self.framed.drain(..consumed);
        self.scanned = self.scanned.saturating_sub(consumed);
    }

    fn frame_done(&mut self, payload: Vec<u8>) {
        if payload.is_empty() {
            self.expected.push_back(Expected::KeepAlive);
            return;
        }
        if payload.len() > self.max_message_bytes {
            self.stop = Some(Stop::Oversized);
            return;
        }
        let code = disconnect_code(&payload);
        self.expected.push_back(Expected::Message(payload));
        if let Some(code) = code {
            self.disconnect.get_or_insert(code);
        }
    }
}

/// The code of a `{"disconnect":{"code":N,...}}` message.
pub(crate) fn disconnect_code(message: &[u8]) -> Option<u32> {
    let rest = message.trim_ascii_start().strip_prefix(b"{")?;
    if !rest.trim_ascii_start().starts_with(b"\"disconnect\"") {
        return None;
    }
    let text = std::str::from_utf8(message).ok()?;
    let rest = text.trim_start().strip_prefix('{')?.trim_start();
    let rest = rest.strip_prefix("\"disconnect\"")?;
    let at = rest.find("\"code\":")? + "\"code\":".len();
    let digits: String = rest[at..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The position of the first `\r\n` whose `\n` lies at or after `from`.
fn find_crlf(haystack: &[u8], from: usize) -> Option<usize> {
    let mut i = from.max(1);
    while i < haystack.len() {
        let newline = i + memchr::memchr(b'\n', &haystack[i..])?;
        if haystack[newline - 1] == b'\r' {
            return Some(newline - 1);
        }
        i = newline + 1;
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// How a failure is retried, by Twitter's rules, worked out here from the error alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    Network,
    Http,
    RateLimited,
    /// Retrying cannot help: the stream must finish.
    Never,
}

/// Statuses that retrying cannot fix.
pub(crate) const FATAL_STATUSES: [u16; 6] = [401, 403, 404, 406, 413, 416];

pub(crate) fn classify(error: &StreamError) -> Retry {
    match error {
        StreamError::Status { status, .. } if FATAL_STATUSES.contains(status) => Retry::Never,
        StreamError::Status {
            status: 420 | 429, ..
        } => Retry::RateLimited,
        StreamError::Status { .. } => Retry::Http,
        StreamError::DisconnectMessage { code: 6 | 7, .. } => Retry::Never,
        _ => Retry::Network,
    }
}

/// Recomputes every wait from the policy's numbers: the exact wait without jitter, the range
/// `[wait * (1 - fraction), wait]` with it.
#[derive(Debug, Clone)]
pub(crate) struct BackoffModel {
    policy: BackoffPolicy,
    jitter: f64,
    network_errors: u32,
    http_next: Option<Duration>,
    rate_next: Option<Duration>,
    squared_next: Option<Duration>,
}

impl BackoffModel {
    pub(crate) fn new(policy: BackoffPolicy, jitter: f64) -> Self {
        BackoffModel {
            policy,
            jitter,
            network_errors: 0,
            http_next: None,
            rate_next: None,
            squared_next: None,
        }
    }

    /// A connection earned trust: the network and HTTP sequences (and the squared one) start
    /// over; the 420/429 one does not.
    pub(crate) fn trusted(&mut self) {
        self.network_errors = 0;
        self.http_next = None;
        self.squared_next = None;
    }

    /// A connection stayed up for `rate_limit_reset_after`: the 420/429 sequence starts over.
    pub(crate) fn forget_rate_limit(&mut self) {
        self.rate_next = None;
    }

    /// Checks one wait; `Err` says what was expected.
    pub(crate) fn check(&mut self, retry: Retry, wait: Duration) -> Result<(), String> {
        let (base, (lo, hi)) = match &self.policy {
            BackoffPolicy::Twitter(t) => twitter(
                t,
                retry,
                &mut self.network_errors,
                &mut self.http_next,
                &mut self.rate_next,
            ),
            BackoffPolicy::Squared(s) => {
                // The seed's rule: wait, then square the (uncapped) wait in seconds; the
                // sequence never shrinks (a sub-second start stays put), each wait capped.
                let current = self.squared_next.unwrap_or(s.start);
                let secs = current.as_secs_f64();
                let squared = Duration::try_from_secs_f64(secs * secs).unwrap_or(Duration::MAX);
                self.squared_next = Some(squared.max(current));
                (current.min(s.max), (s.start.min(s.max), s.max))
            }
            // `BackoffPolicy` is exhaustive today; a new policy would need its own model.
            #[allow(unreachable_patterns)]
            _ => return Ok(()),
        };
        // Jitter takes up to `jitter` of a wait off, but never below the kind's minimum.
        let slack = Duration::from_micros(1);
        let floor = |d: Duration| d.mul_f64(1.0 - self.jitter).saturating_sub(slack).max(lo);
        if wait > hi || wait < lo {
            return Err(format!(
                "wait {wait:?} outside the policy bounds {lo:?}..={hi:?}"
            ));
        }
        if self.jitter == 0.0 && wait != base {
            return Err(format!("wait {wait:?}, the policy says {base:?}"));
        }
        if wait > base || wait < floor(base) {
            return Err(format!(
                "wait {wait:?} outside {:?}..={base:?} (jitter {})",
                floor(base),
                self.jitter
            ));
        }
        Ok(())
    }
}

type Bounds = (Duration, Duration);

fn twitter(
    t: &TwitterBackoff,
    retry: Retry,
    network_errors: &mut u32,
    http_next: &mut Option<Duration>,
    rate_next: &mut Option<Duration>,
) -> (Duration, Bounds) {
    let doubling = |next: &mut Option<Duration>, start: Duration, max: Duration| {
        let current = next.unwrap_or(start).min(max);
        *next = Some((current * 2).min(max));
        (current, (start.min(max), max))
    };
    match retry {
        Retry::Http => doubling(http_next, t.http_start, t.http_max),
        Retry::RateLimited => doubling(rate_next, t.rate_limit_start, t.rate_limit_max),
        Retry::Network | Retry::Never => {
            *network_errors += 1;
            let wait = (t.network_step * *network_errors).min(t.network_max);
            (wait, (t.network_step.min(t.network_max), t.network_max))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(data: &[u8]) -> Vec<u8> {
        let mut out = format!("{:x}\r\n", data.len()).into_bytes();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        out
    }

    #[test]
    fn reference_reader_frames_a_chunked_crlf_body_in_any_split() {
        let mut wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        wire.extend(chunk(b"{\"a\":1}\r\n\r\n{\"b\""));
        wire.extend(chunk(
            b":2}\r\n{\"disconnect\":{\"code\":7}}\r\n{\"c\":3}\r\n",
        ));
        let want = [
            Expected::Message(b"{\"a\":1}".to_vec()),
            Expected::KeepAlive,
            Expected::Message(b"{\"b\":2}".to_vec()),
            Expected::Message(b"{\"disconnect\":{\"code\":7}}".to_vec()),
            Expected::Message(b"{\"c\":3}".to_vec()),
        ];
        // The frame after the disconnect came in the same read: it is handed out too.
        for cut in 0..wire.len() - 11 {
            let mut r = ReferenceReader::new(Framing::Crlf, 100);
            r.push(&wire[..cut]);
            r.push(&wire[cut..]);
            assert_eq!(r.expected, want, "cut at {cut}");
            assert_eq!(r.stop, Some(Stop::Disconnect(7)));
        }
        // In a later read, it is not.
        let at = wire.len() - 11;
        let mut r = ReferenceReader::new(Framing::Crlf, 100);
        r.push(&wire[..at]);
        assert_eq!(r.stop, Some(Stop::Disconnect(7)));
        r.push(&wire[at..]);
        assert_eq!(r.expected, &want[..4]);
    }

    #[test]
    fn reference_reader_stops_at_an_oversized_length_frame_and_error_status() {
        let mut r = ReferenceReader::new(Framing::Length, 4);
        r.push(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n\r\n5\r\nabc\r\n9\r\nabcdefg\r\n");
        assert_eq!(
            r.expected,
            [Expected::KeepAlive, Expected::Message(b"abc".to_vec())]
        );
        assert_eq!(r.stop, Some(Stop::Oversized));
        let mut r = ReferenceReader::new(Framing::Crlf, 4);
        r.push(b"HTTP/1.1 503 Busy\r\nContent-Length: 5\r\n\r\nab\r\n\r\n");
        assert!(r.expected.is_empty());
        assert_eq!(r.stop, Some(Stop::Status(503)));
    }

    #[test]
    fn backoff_model_follows_twitter_and_squared_numbers() {
        let mut m = BackoffModel::new(BackoffPolicy::default(), 0.0);
        assert!(m.check(Retry::Http, Duration::from_secs(5)).is_ok());
        assert!(m.check(Retry::Http, Duration::from_secs(10)).is_ok());
        assert!(m.check(Retry::Http, Duration::from_secs(10)).is_err());
        assert!(m.check(Retry::Network, Duration::from_millis(250)).is_ok());
        assert!(m.check(Retry::RateLimited, Duration::from_secs(60)).is_ok());
        m.trusted();
        assert!(m.check(Retry::Http, Duration::from_secs(5)).is_ok());
        assert!(m.check(Retry::Network, Duration::from_millis(250)).is_ok());
        assert!(
            m.check(Retry::RateLimited, Duration::from_secs(120))
                .is_ok(),
            "the 420 sequence survives trust"
        );
        m.forget_rate_limit();
        assert!(m.check(Retry::RateLimited, Duration::from_secs(60)).is_ok());
        let mut s = BackoffModel::new(BackoffPolicy::Squared(Default::default()), 0.0);
        for secs in [2, 4, 16, 256, 320, 320] {
            assert!(s.check(Retry::Network, Duration::from_secs(secs)).is_ok());
        }
        let half = Duration::from_millis(500);
        let mut s = BackoffModel::new(
            BackoffPolicy::Squared(sitebucket_proto::SquaredBackoff {
                start: half,
                max: Duration::from_secs(10),
            }),
            0.0,
        );
        for _ in 0..3 {
            assert!(
                s.check(Retry::Http, half).is_ok(),
                "a sub-second start never shrinks"
            );
        }
        let mut j = BackoffModel::new(BackoffPolicy::default(), 0.5);
        assert!(
            j.check(Retry::Http, Duration::from_millis(2600)).is_err(),
            "jitter never goes below the first wait"
        );
        assert!(j.check(Retry::Http, Duration::from_secs(6)).is_ok());
        assert!(j.check(Retry::Http, Duration::from_secs(4)).is_err());
    }
}
