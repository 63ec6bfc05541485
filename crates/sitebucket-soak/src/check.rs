//! The end-of-run check: the server's log of every attempt against the client's log of
//! what it received, and each reconnect's timing against the reconnect policy.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use crate::plan::{Fault, Timing};

/// One connection attempt as the server saw it. Times are seconds since the server started.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerAttempt {
    /// 0 plain, 1 TLS.
    pub server: u8,
    /// Index in that server's accept order.
    pub index: u64,
    /// The stream: the smallest id of the request's `follow` list (`None`: no request).
    pub stream: Option<u64>,
    /// The status sent, if a head was sent.
    pub status: Option<u16>,
    /// The fault planned (see [`Fault::name`](crate::plan::Fault::name)).
    pub fault: String,
    /// Framed messages in the plan.
    pub planned: u64,
    /// Framed messages wholly written to the connection.
    pub sent: u64,
    /// Accepted.
    pub at: f64,
    /// The whole request had arrived.
    pub request_at: Option<f64>,
    /// The last successful write began.
    pub last_sent_at: Option<f64>,
    /// The connection ended (`None`: still open when the log was taken).
    pub ended_at: Option<f64>,
    /// The longest pause between two successive writes (seconds), and the messages written
    /// in full before it.
    pub longest_gap: (f64, u64),
}

/// What the client received of one attempt (one line per attempt and stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAttempt {
    /// The receiving stream's tracker (one per monitored stream).
    pub tracker: u64,
    /// 0 plain, 1 TLS.
    pub server: u8,
    /// The attempt index the messages named.
    pub attempt: u64,
    /// Intact soak messages received, each the next in order.
    pub soak: u64,
    /// `disconnect` messages received after them.
    pub disconnects: u64,
    /// Messages whose hash did not match.
    pub altered: u64,
    /// Messages out of order (not the next number), or a repeated number.
    pub reordered: u64,
    /// How the client saw the connection end.
    pub end: String,
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn parse_opt<T: std::str::FromStr>(s: &str) -> Result<Option<T>, String> {
    if s == "-" {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| format!("bad field {s:?}"))
}

fn field<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("bad field {s:?}"))
}

impl ServerAttempt {
    /// One tab-separated line.
    pub fn to_line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{:.6}\t{}\t{}\t{}\t{:.6}\t{}",
            self.server,
            self.index,
            opt(&self.stream),
            opt(&self.status),
            self.fault,
            self.planned,
            self.sent,
            self.at,
            opt(&self.request_at.map(|t| format!("{t:.6}"))),
            opt(&self.last_sent_at.map(|t| format!("{t:.6}"))),
            opt(&self.ended_at.map(|t| format!("{t:.6}"))),
            self.longest_gap.0,
            self.longest_gap.1,
        )
    }

    /// Reads [`to_line`](Self::to_line)'s output.
    pub fn from_line(line: &str) -> Result<Self, String> {
        let f: Vec<&str> = line.split('\t').collect();
        let [server, index, stream, status, fault, planned, sent, at, request_at, last_sent_at, ended_at, gap, before_gap] =
            f[..]
        else {
            return Err(format!("server log line with {} fields: {line:?}", f.len()));
        };
        Ok(ServerAttempt {
            server: field(server)?,
            index: field(index)?,
            stream: parse_opt(stream)?,
            status: parse_opt(status)?,
            fault: fault.to_string(),
            planned: field(planned)?,
            sent: field(sent)?,
            at: field(at)?,
            request_at: parse_opt(request_at)?,
            last_sent_at: parse_opt(last_sent_at)?,
            ended_at: parse_opt(ended_at)?,
            longest_gap: (field(gap)?, field(before_gap)?),
        })
    }
}

impl ClientAttempt {
    /// One tab-separated line.
    pub fn to_line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.tracker,
            self.server,
            self.attempt,
            self.soak,
            self.disconnects,
            self.altered,
            self.reordered,
            self.end.replace(['\t', '\n'], " ")
        )
    }

    /// Reads [`to_line`](Self::to_line)'s output.
    pub fn from_line(line: &str) -> Result<Self, String> {
        let f: Vec<&str> = line.split('\t').collect();
        let [tracker, server, attempt, soak, disconnects, altered, reordered, end] = f[..] else {
            return Err(format!("client log line with {} fields: {line:?}", f.len()));
        };
        Ok(ClientAttempt {
            tracker: field(tracker)?,
            server: field(server)?,
            attempt: field(attempt)?,
            soak: field(soak)?,
            disconnects: field(disconnects)?,
            altered: field(altered)?,
            reordered: field(reordered)?,
            end: end.to_string(),
        })
    }
}

/// The smallest waits the reconnect policy allows, as a model that shares no code with the
/// core: linear after network errors, doubling after HTTP errors and after 420/429, trust
/// resetting the first two, a long healthy connection the third. Where the logs cannot
/// tell whether the client earned trust or forgot the 420 sequence, the model assumes it
/// did: the smaller wait, so the check never blames a client that may be right.
#[derive(Debug, Clone, Default)]
pub struct PolicyModel {
    network_errors: u32,
    http_next: Option<Duration>,
    rate_next: Option<Duration>,
}

/// How an attempt failed, for backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Before a head, a drop, a stall, a disconnect message, a clean close.
    Network,
    /// Another non-200 status.
    Http,
    /// 420 or 429.
    RateLimited,
}

impl PolicyModel {
    /// The connection earned trust.
    pub fn trusted(&mut self) {
        self.network_errors = 0;
        self.http_next = None;
    }

    /// The connection stayed up long enough to forget the 420/429 sequence.
    pub fn forget_rate_limit(&mut self) {
        self.rate_next = None;
    }

    /// The wait after a failure of `kind`.
    pub fn next(&mut self, kind: Kind, t: &Timing) -> Duration {
        let doubling = |next: &mut Option<Duration>, start: Duration, max: Duration| {
            let current = next.unwrap_or(start).min(max);
            *next = Some(current.saturating_mul(2).min(max));
            current
        };
        match kind {
            Kind::Network => {
                self.network_errors += 1;
                t.network_step
                    .saturating_mul(self.network_errors)
                    .min(t.network_max)
            }
            Kind::Http => doubling(&mut self.http_next, t.http_start, t.http_max),
            Kind::RateLimited => {
                doubling(&mut self.rate_next, t.rate_limit_start, t.rate_limit_max)
            }
        }
    }
}

/// What the check found.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Each problem, in words, with the stream, the server, the attempt and the time.
    pub failures: Vec<String>,
    /// Attempts in the server's log.
    pub attempts: u64,
    /// Attempts that ended before the log was taken (the ones checked for loss).
    pub ended: u64,
    /// Soak messages the server wrote in full on ended attempts.
    pub sent: u64,
    /// Soak messages the client received on those attempts.
    pub received: u64,
    /// Messages the server wrote in full and the client never got.
    pub lost: u64,
    /// Attempts whose messages reached the client twice.
    pub duplicated: u64,
    /// Messages that arrived altered.
    pub altered: u64,
    /// Messages out of order.
    pub reordered: u64,
    /// Reconnect gaps checked against the policy.
    pub gaps: u64,
    /// Gaps shorter than the policy allows by the server's clock and the server's view of
    /// each connection's life. Not a failure by itself: a client that read a close late saw
    /// the connection up longer than the server did (see [`check_announced`], which judges
    /// the client by its own view).
    pub early: u64,
    /// The first of those, in words.
    pub early_examples: Vec<String>,
    /// The smallest margin over the policy's wait seen, in seconds.
    pub tightest: Option<f64>,
    /// Each tracker's stream, from the soak messages it received.
    pub tracker_stream: HashMap<u64, u64>,
    /// Attempts the client gave up as stalled because the server paused longer than the
    /// stall timeout between two writes (a starved server, not a client fault).
    pub server_pauses: u64,
    /// Messages the server wrote after such a pause, to a client that had given up.
    pub cut_by_pauses: u64,
    /// Attempts by fault.
    pub faults: BTreeMap<String, u64>,
}

/// How much earlier than the policy's wait a reconnect may come before it counts: timer
/// rounding, not scheduling (waits are measured from the server's last write, which the
/// client can only have seen later).
pub const TOLERANCE: Duration = Duration::from_millis(2);

/// Checks the logs. `frozen_at` is when the server stopped every connection and took its
/// log (server seconds): reconnects after it are not checked. `name` names a stream for
/// messages. The verdict's failures are empty when every target is met.
pub fn check(
    server: &[ServerAttempt],
    client: &[ClientAttempt],
    timing: &Timing,
    frozen_at: f64,
    name: &dyn Fn(u64) -> String,
) -> Verdict {
    let mut v = Verdict {
        attempts: server.len() as u64,
        ..Verdict::default()
    };
    let fail = |v: &mut Verdict, s: String| {
        if v.failures.len() < 10_000 {
            v.failures.push(s);
        }
    };
    let mut seen: HashMap<(u8, u64), Vec<&ClientAttempt>> = HashMap::new();
    for c in client {
        seen.entry((c.server, c.attempt)).or_default().push(c);
    }
    let by_index: HashMap<(u8, u64), &ServerAttempt> =
        server.iter().map(|s| ((s.server, s.index), s)).collect();
    let at = |s: &ServerAttempt| {
        format!(
            "{} attempt {} on the {} server, accepted at {:.3} s ({})",
            s.stream.map_or_else(|| "no stream".to_string(), name),
            s.index,
            if s.server == 0 { "plain" } else { "TLS" },
            s.at,
            s.fault
        )
    };
    // Client side: every received attempt is one the server made, on one stream, seen by
    // one tracker once, in increasing order, intact.
    let mut tracker_stream: HashMap<u64, u64> = HashMap::new();
    let mut tracker_last: HashMap<(u64, u8), u64> = HashMap::new();
    // Attempts accepted after the server took its log are not judged.
    let mut logged_up_to: HashMap<u8, u64> = HashMap::new();
    for s in server {
        let top = logged_up_to.entry(s.server).or_insert(0);
        *top = (*top).max(s.index);
    }
    for c in client {
        if logged_up_to
            .get(&c.server)
            .is_some_and(|&top| c.attempt > top)
        {
            continue;
        }
        let Some(s) = by_index.get(&(c.server, c.attempt)) else {
            fail(
                &mut v,
                format!(
                    "tracker {} received messages of attempt {} on server {}, which the server never logged",
                    c.tracker, c.attempt, c.server
                ),
            );
            continue;
        };
        if let Some(stream) = s.stream {
            let first = *tracker_stream.entry(c.tracker).or_insert(stream);
            if first != stream {
                fail(
                    &mut v,
                    format!(
                        "{}: its messages reached the stream of {} (crossed streams)",
                        at(s),
                        name(first)
                    ),
                );
            }
        }
        if let Some(last) = tracker_last.insert((c.tracker, c.server), c.attempt) {
            if c.attempt <= last {
                v.reordered += 1;
                fail(
                    &mut v,
                    format!("{}: received after attempt {last} (reordered)", at(s)),
                );
            }
        }
        if c.altered > 0 {
            v.altered += c.altered;
            fail(
                &mut v,
                format!("{}: {} messages arrived altered", at(s), c.altered),
            );
        }
        if c.reordered > 0 {
            v.reordered += c.reordered;
            fail(
                &mut v,
                format!(
                    "{}: {} messages out of order or repeated",
                    at(s),
                    c.reordered
                ),
            );
        }
    }
    for (key, list) in &seen {
        if list.len() > 1 {
            v.duplicated += 1;
            if let Some(s) = by_index.get(key) {
                fail(
                    &mut v,
                    format!("{}: received {} times (duplicated)", at(s), list.len()),
                );
            }
        }
    }
    // Server side: every message written in full on an ended attempt was received.
    for s in server {
        *v.faults.entry(s.fault.clone()).or_default() += 1;
        if s.ended_at.is_none() {
            continue;
        }
        v.ended += 1;
        // A disconnect message names no attempt, so soak messages are counted apart: the
        // disconnect message, last in its body, is written in full when everything is.
        let with_disconnect =
            s.fault == Fault::Disconnect.name() || s.fault == Fault::OnlyDisconnect.name();
        let disconnect_sent = with_disconnect && s.planned > 0 && s.sent == s.planned;
        let soak_sent = s.sent - u64::from(disconnect_sent);
        let lines = seen.get(&(s.server, s.index));
        let received: u64 = lines.map_or(0, |l| l.iter().map(|c| c.soak).sum());
        // A server that paused longer than the stall timeout (starved of CPU) was rightly
        // given up by the client: what it wrote after the pause is not counted as lost,
        // but the pause is reported.
        let client_stalled = lines.is_some_and(|l| l.iter().any(|c| c.end.starts_with("stall")));
        let server_paused = s.longest_gap.0 >= timing.stall_timeout.as_secs_f64() - 0.05;
        let soak_sent = if client_stalled && server_paused && soak_sent > s.longest_gap.1 {
            v.server_pauses += 1;
            v.cut_by_pauses += soak_sent - s.longest_gap.1;
            s.longest_gap.1
        } else {
            soak_sent
        };
        v.sent += soak_sent;
        v.received += received;
        if disconnect_sent && s.fault == Fault::Disconnect.name() {
            let got = lines.is_some_and(|l| l.iter().any(|c| c.disconnects > 0));
            if !got {
                v.lost += 1;
                fail(
                    &mut v,
                    format!(
                        "{}: the server wrote its disconnect message in full, the client did not get it after the attempt's messages",
                        at(s)
                    ),
                );
            }
        }
        if received < soak_sent {
            let sent = soak_sent;
            v.lost += sent - received;
            let end = seen
                .get(&(s.server, s.index))
                .and_then(|l| l.first())
                .map_or("never seen by the client".to_string(), |c| {
                    format!("client saw the end as: {}", c.end)
                });
            fail(
                &mut v,
                format!(
                    "{}: the server wrote {} messages in full, the client received {} of them in order ({} missing; {end})",
                    at(s),
                    sent,
                    received,
                    sent - received
                ),
            );
        }
    }
    // Timing: per stream, each attempt's gap from the last thing the client can have seen
    // of the one before.
    let mut streams: BTreeMap<u64, Vec<&ServerAttempt>> = BTreeMap::new();
    for s in server {
        if let Some(stream) = s.stream {
            streams.entry(stream).or_default().push(s);
        }
    }
    let tol = TOLERANCE.as_secs_f64();
    for list in streams.values_mut() {
        list.sort_by(|a, b| a.at.total_cmp(&b.at));
        let mut model = PolicyModel::default();
        for pair in list.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            let Some(request_at) = prev.request_at else {
                continue;
            };
            let lifetime = prev.ended_at.map(|e| e - request_at);
            let kind = match prev.status {
                Some(420 | 429) => Kind::RateLimited,
                Some(200) | None => Kind::Network,
                Some(_) => Kind::Http,
            };
            if prev.status == Some(200) {
                let messages = seen
                    .get(&(prev.server, prev.index))
                    .is_some_and(|l| l.iter().any(|c| c.soak > 0));
                let up_long =
                    |period: Duration| lifetime.is_none_or(|l| l >= period.as_secs_f64() - tol);
                if messages || up_long(timing.trust_after) {
                    model.trusted();
                }
                if up_long(timing.rate_limit_reset_after) {
                    model.forget_rate_limit();
                }
            }
            let wait = model.next(kind, timing).as_secs_f64();
            if next.at > frozen_at || prev.ended_at.is_none_or(|e| e > frozen_at) {
                continue;
            }
            // The client cannot have decided before the server's last write when the server
            // ended the connection (a drop, a close, a status); when the client ended it (a
            // stall, a disconnect message, a server that never answers) the server may have
            // written on after the client gave up, so only the request's arrival bounds it.
            let server_closed = [
                Fault::DropMidMessage,
                Fault::LongThenDrop,
                Fault::CleanClose,
                Fault::Status503,
                Fault::RateLimited,
                Fault::HalfHead,
                Fault::OkThenClose,
            ]
            .iter()
            .any(|f| f.name() == prev.fault)
                && !seen
                    .get(&(prev.server, prev.index))
                    .is_some_and(|l| l.iter().any(|c| c.end.starts_with("stall")));
            let seen_from = match prev.last_sent_at {
                Some(last) if server_closed => last.max(request_at),
                _ => request_at,
            };
            let gap = next.at - seen_from;
            v.gaps += 1;
            let margin = gap - wait;
            v.tightest = Some(v.tightest.map_or(margin, |t: f64| t.min(margin)));
            if margin < -tol {
                v.early += 1;
                let mut why = String::new();
                let _ = write!(
                    why,
                    "{}: reconnected {:.3} s after the previous attempt's last write; the policy's wait after it ({}, {:?} failure) is {:.3} s",
                    at(next),
                    gap,
                    prev.fault,
                    kind,
                    wait
                );
                if v.early_examples.len() < 20 {
                    v.early_examples.push(why);
                }
            }
        }
    }
    v.tracker_stream = tracker_stream;
    v
}

/// A connection event of one stream as the client saw it: its `200` (or other status) head,
/// or its end with the wait the client announced. Times are server seconds (the client
/// converts its wall clock with the server's announced epoch; both processes read the same
/// system clock).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientEvent {
    /// The stream's tracker (one per monitored stream).
    pub tracker: u64,
    /// When the client's observer saw it (at or just after the core's `now` for it).
    pub at: f64,
    /// What happened.
    pub what: ClientEventKind,
}

/// See [`ClientEvent`].
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEventKind {
    /// A response head arrived.
    Connected {
        /// Its status.
        status: u16,
    },
    /// The attempt or connection failed; the client announced `retry_in`.
    Disconnected {
        /// How backoff treats the failure.
        kind: Kind,
        /// The announced wait, seconds.
        retry_in: f64,
        /// Messages other than `disconnect` messages received since the last `200` head.
        messages: u64,
        /// The error, in words.
        error: String,
    },
    /// The end of the backoff after the failure before, as the core scheduled it (the
    /// event's `at`). Missing when the backoff had already ended when the driver reported.
    BackoffUntil,
    /// When the core took in the `200` head before (its last byte's arrival as the driver
    /// handed it in; the event's `at`): the connection's start on the core's clock, which a
    /// driver that yields before draining reports late.
    HeadAt,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Network => "network",
            Kind::Http => "http",
            Kind::RateLimited => "rate-limited",
        }
    }

    fn from_name(s: &str) -> Result<Self, String> {
        match s {
            "network" => Ok(Kind::Network),
            "http" => Ok(Kind::Http),
            "rate-limited" => Ok(Kind::RateLimited),
            _ => Err(format!("bad failure kind {s:?}")),
        }
    }

    /// How the policy treats a failure with this HTTP status (`None`: not a status), as
    /// Twitter documents it: 420 and 429 are rate limits, other statuses HTTP errors.
    pub fn of_status(status: Option<u16>) -> Kind {
        match status {
            Some(420 | 429) => Kind::RateLimited,
            Some(_) => Kind::Http,
            None => Kind::Network,
        }
    }
}

impl ClientEvent {
    /// One tab-separated line.
    pub fn to_line(&self) -> String {
        match &self.what {
            ClientEventKind::Connected { status } => {
                format!("{}\t{:.6}\tC\t{status}", self.tracker, self.at)
            }
            ClientEventKind::BackoffUntil => format!("{}\t{:.6}\tU", self.tracker, self.at),
            ClientEventKind::HeadAt => format!("{}\t{:.6}\tH", self.tracker, self.at),
            ClientEventKind::Disconnected {
                kind,
                retry_in,
                messages,
                error,
            } => format!(
                "{}\t{:.6}\tD\t{}\t{retry_in:.6}\t{messages}\t{}",
                self.tracker,
                self.at,
                kind.name(),
                error.replace(['\t', '\n'], " ")
            ),
        }
    }

    /// Reads [`to_line`](Self::to_line)'s output.
    pub fn from_line(line: &str) -> Result<Self, String> {
        let f: Vec<&str> = line.split('\t').collect();
        let what = match f[..] {
            [_, _, "C", status] => ClientEventKind::Connected {
                status: field(status)?,
            },
            [_, _, "U"] => ClientEventKind::BackoffUntil,
            [_, _, "H"] => ClientEventKind::HeadAt,
            [_, _, "D", kind, retry_in, messages, error] => ClientEventKind::Disconnected {
                kind: Kind::from_name(kind)?,
                retry_in: field(retry_in)?,
                messages: field(messages)?,
                error: error.to_string(),
            },
            _ => return Err(format!("bad client event line {line:?}")),
        };
        Ok(ClientEvent {
            tracker: field(f[0])?,
            at: field(f[1])?,
            what,
        })
    }
}

/// How long after the failure's record the core's end of the backoff may lie beyond the
/// announced wait: the two clock readings that convert it to server time, not scheduling
/// (the core's `now` comes before the observer's record, never after).
pub const UNTIL_TOLERANCE: Duration = Duration::from_millis(2);

/// How close to `trust_after` or `rate_limit_reset_after` a lifetime seen by the client
/// must come for the model to take it as reached (the client's `now` at the head and at the
/// failure are known only to within the observer's delay).
pub const LIFETIME_BAND: Duration = Duration::from_millis(20);

/// What [`check_announced`] found.
#[derive(Debug, Clone, Default)]
pub struct Announced {
    /// Each problem, in words, with the stream, the time and the seed's attempt.
    pub failures: Vec<String>,
    /// Announced waits checked against the policy (the client's view of each connection).
    pub decisions: u64,
    /// Announced waits shorter than the policy allows.
    pub short: u64,
    /// Announced waits longer than the model's (where the model took the lenient reading
    /// of an ambiguous lifetime, or a bug that waits too long).
    pub long: u64,
    /// 420/429 failures the client announced.
    pub rate_limited: u64,
    /// Reconnects checked against the end of the backoff the core scheduled.
    pub gaps: u64,
    /// Reconnects that reached the server before it.
    pub early: u64,
    /// Backoffs whose scheduled end lies beyond the failure plus the announced wait.
    pub misannounced: u64,
    /// The smallest margin of a reconnect over the scheduled end of its backoff, seconds.
    pub tightest: Option<f64>,
    /// Failures whose backoff had already ended when the driver reported it (not placed).
    pub uncaptured: u64,
    /// Failures whose stream no soak message named (the check cannot place them).
    pub unplaced: u64,
}

/// A failure waiting for the end of its backoff.
struct Pending<'a> {
    at: f64,
    kind: Kind,
    retry_in: f64,
    messages: u64,
    error: &'a str,
}

/// Checks what the client announced against the policy and what it did against what it
/// announced:
///
/// 1. **Policy.** Per stream, a model that shares no code with the core walks the client's
///    own events (its `200` heads and failures, with the messages between) and computes
///    the wait the policy allows after each failure: linear after network errors, doubling
///    after HTTP errors and after 420/429, trust (a message, or `trust_after` up) resetting
///    the first two, `rate_limit_reset_after` up resetting the third. The announced
///    `retry_in` must not be shorter. Lifetimes within [`LIFETIME_BAND`] of a threshold
///    are taken as reaching it (the smaller wait).
/// 2. **Timing.** The end of the backoff the core scheduled must be no later than the
///    failure's record plus the announced wait (within [`UNTIL_TOLERANCE`]), and the
///    stream's next attempt must reach the server no earlier than that end (within
///    [`TOLERANCE`]).
///
/// `tracker_stream` maps each tracker to its stream (from the soak messages it received);
/// `name` names a stream. Failures after `frozen_at` (the end of the run) are not checked.
pub fn check_announced(
    events: &[ClientEvent],
    server: &[ServerAttempt],
    tracker_stream: &HashMap<u64, u64>,
    timing: &Timing,
    frozen_at: f64,
    name: &dyn Fn(u64) -> String,
) -> Announced {
    let mut a = Announced::default();
    let fail = |a: &mut Announced, s: String| {
        if a.failures.len() < 10_000 {
            a.failures.push(s);
        }
    };
    let mut attempts: HashMap<u64, Vec<&ServerAttempt>> = HashMap::new();
    for s in server {
        if let Some(stream) = s.stream {
            attempts.entry(stream).or_default().push(s);
        }
    }
    for list in attempts.values_mut() {
        list.sort_by(|x, y| x.at.total_cmp(&y.at));
    }
    let mut by_tracker: BTreeMap<u64, Vec<&ClientEvent>> = BTreeMap::new();
    for e in events {
        by_tracker.entry(e.tracker).or_default().push(e);
    }
    let band = LIFETIME_BAND.as_secs_f64();
    let (tol, until_tol) = (TOLERANCE.as_secs_f64(), UNTIL_TOLERANCE.as_secs_f64());
    for (tracker, list) in &by_tracker {
        let stream = tracker_stream.get(tracker).copied();
        let who = stream.map_or_else(|| format!("tracker {tracker}"), name);
        let mut model = PolicyModel::default();
        let mut up_since: Option<f64> = None;
        let mut pending: Option<Pending<'_>> = None;
        // A failure waits for the end of its backoff (on the core's clock, `until −
        // retry_in` is when the core decided) before the policy judges it.
        let decide = |a: &mut Announced,
                      model: &mut PolicyModel,
                      up_since: &mut Option<f64>,
                      p: &Pending<'_>,
                      decided_at: f64| {
            if let Some(since) = up_since.take() {
                let lifetime = decided_at - since;
                if p.messages > 0 || lifetime >= timing.trust_after.as_secs_f64() - band {
                    model.trusted();
                }
                if lifetime >= timing.rate_limit_reset_after.as_secs_f64() - band {
                    model.forget_rate_limit();
                }
            }
            let wait = model.next(p.kind, timing).as_secs_f64();
            if p.at > frozen_at {
                return;
            }
            a.decisions += 1;
            if p.kind == Kind::RateLimited {
                a.rate_limited += 1;
            }
            if p.retry_in < wait - 1e-6 {
                a.short += 1;
                fail(
                    a,
                    format!(
                        "{who}: after its {} failure at {:.3} s ({}) the client announced a wait of {:.3} s, shorter than the policy's {wait:.3} s",
                        p.kind.name(),
                        p.at,
                        p.error,
                        p.retry_in
                    ),
                );
            } else if p.retry_in > wait + 1e-6 {
                a.long += 1;
            }
        };
        for e in list {
            let (kind, retry_in, messages, error) = match &e.what {
                ClientEventKind::Connected { status } => {
                    if let Some(p) = pending.take() {
                        a.uncaptured += 1;
                        decide(&mut a, &mut model, &mut up_since, &p, p.at);
                    }
                    if *status == 200 {
                        up_since = Some(e.at);
                    }
                    continue;
                }
                ClientEventKind::HeadAt => {
                    if up_since.is_some() {
                        up_since = Some(e.at);
                    }
                    continue;
                }
                ClientEventKind::BackoffUntil => {
                    let Some(p) = pending.take() else { continue };
                    let until = e.at;
                    decide(&mut a, &mut model, &mut up_since, &p, until - p.retry_in);
                    if p.at > frozen_at || stream.is_none() {
                        continue;
                    }
                    if until > p.at + p.retry_in + until_tol {
                        a.misannounced += 1;
                        fail(
                            &mut a,
                            format!(
                                "{who}: after its {} failure at {:.3} s ({}) the client announced {:.3} s but scheduled its reconnect for {until:.3} s",
                                p.kind.name(),
                                p.at,
                                p.error,
                                p.retry_in
                            ),
                        );
                    }
                    let Some(next) = stream
                        .and_then(|s| attempts.get(&s))
                        .and_then(|l| l.iter().find(|s| s.at > p.at))
                    else {
                        continue;
                    };
                    if next.at > frozen_at {
                        continue;
                    }
                    a.gaps += 1;
                    let margin = next.at - until;
                    a.tightest = Some(a.tightest.map_or(margin, |t: f64| t.min(margin)));
                    if margin < -tol {
                        a.early += 1;
                        fail(
                            &mut a,
                            format!(
                                "{who}: attempt {} on the {} server reconnected at {:.3} s, {:.3} s after the client's {} failure at {:.3} s ({}); its backoff ran to {until:.3} s (announced {:.3} s)",
                                next.index,
                                if next.server == 0 { "plain" } else { "TLS" },
                                next.at,
                                next.at - p.at,
                                p.kind.name(),
                                p.at,
                                p.error,
                                p.retry_in
                            ),
                        );
                    }
                    continue;
                }
                ClientEventKind::Disconnected {
                    kind,
                    retry_in,
                    messages,
                    error,
                } => (*kind, *retry_in, *messages, error.as_str()),
            };
            if let Some(p) = pending.take() {
                a.uncaptured += 1;
                decide(&mut a, &mut model, &mut up_since, &p, p.at);
            }
            if stream.is_none() && e.at <= frozen_at {
                a.unplaced += 1;
            }
            pending = Some(Pending {
                at: e.at,
                kind,
                retry_in,
                messages,
                error,
            });
        }
        if let Some(p) = pending.take() {
            a.uncaptured += 1;
            decide(&mut a, &mut model, &mut up_since, &p, p.at);
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(index: u64, status: Option<u16>, at: f64, sent: u64) -> ServerAttempt {
        ServerAttempt {
            server: 0,
            index,
            stream: Some(100),
            status,
            fault: match status {
                Some(503) => Fault::Status503.name().into(),
                Some(420) => Fault::RateLimited.name().into(),
                _ => Fault::DropMidMessage.name().into(),
            },
            planned: sent,
            sent,
            at,
            request_at: Some(at + 0.001),
            last_sent_at: Some(at + 0.002),
            ended_at: Some(at + 0.01),
            longest_gap: (0.0, 0),
        }
    }

    fn got(attempt: u64, soak: u64) -> ClientAttempt {
        ClientAttempt {
            tracker: 1,
            server: 0,
            attempt,
            soak,
            disconnects: 0,
            altered: 0,
            reordered: 0,
            end: "closed".into(),
        }
    }

    fn name(id: u64) -> String {
        format!("stream {id}")
    }

    #[test]
    fn lines_round_trip() {
        let s = attempt(3, Some(503), 1.5, 0);
        assert_eq!(ServerAttempt::from_line(&s.to_line()), Ok(s));
        let mut s = attempt(4, None, 2.0, 0);
        s.request_at = None;
        s.ended_at = None;
        assert_eq!(ServerAttempt::from_line(&s.to_line()), Ok(s));
        let c = got(9, 4);
        assert_eq!(ClientAttempt::from_line(&c.to_line()), Ok(c));
    }

    /// A clean run passes; a lost, altered, duplicated or reordered message fails, naming
    /// the stream and the attempt.
    #[test]
    fn loss_alteration_duplication_and_order_are_caught() {
        let t = Timing::default();
        let server = vec![attempt(0, Some(200), 0.0, 5), attempt(1, Some(200), 1.0, 3)];
        let client = vec![got(0, 5), got(1, 3)];
        let ok = check(&server, &client, &t, 100.0, &name);
        assert!(ok.failures.is_empty(), "{:?}", ok.failures);
        assert_eq!((ok.sent, ok.received, ok.gaps), (8, 8, 1));

        let lost = check(&server, &[got(0, 5), got(1, 2)], &t, 100.0, &name);
        assert_eq!(lost.lost, 1);
        assert!(
            lost.failures[0].contains("stream 100 attempt 1"),
            "{:?}",
            lost.failures
        );

        let mut altered = client.clone();
        altered[0].altered = 1;
        assert_eq!(check(&server, &altered, &t, 100.0, &name).altered, 1);

        let twice = vec![got(0, 5), got(1, 3), got(1, 3)];
        assert_eq!(check(&server, &twice, &t, 100.0, &name).duplicated, 1);

        let backwards = vec![got(1, 3), got(0, 5)];
        assert!(check(&server, &backwards, &t, 100.0, &name).reordered > 0);
    }

    /// A reconnect earlier than the policy's wait for its kind of failure fails; at the
    /// wait, it passes. Two 503s in a row need the doubled wait.
    #[test]
    fn early_reconnects_are_caught_per_kind() {
        let t = Timing::default();
        let step = t.network_step.as_secs_f64();
        let http = t.http_start.as_secs_f64();
        // A 200 that delivered nothing, then a network failure: at least one step.
        let ok = [
            attempt(0, Some(200), 0.0, 0),
            attempt(1, Some(200), 0.002 + step, 0),
        ];
        assert_eq!(check(&ok, &[], &t, 100.0, &name).early, 0);
        let early = [
            attempt(0, Some(200), 0.0, 0),
            attempt(1, Some(200), 0.002 + step - 0.01, 0),
        ];
        assert_eq!(check(&early, &[], &t, 100.0, &name).early, 1);
        // The second 200 without trust: two steps.
        let storm = [
            attempt(0, Some(200), 0.0, 0),
            attempt(1, Some(200), 0.002 + step, 0),
            attempt(2, Some(200), 0.004 + 3.0 * step - 0.02, 0),
        ];
        assert_eq!(check(&storm, &[], &t, 100.0, &name).early, 1);
        // Messages earn trust: back to one step.
        let trusted = [
            attempt(0, Some(200), 0.0, 1),
            attempt(1, Some(200), 0.002 + step, 1),
            attempt(2, Some(200), 0.004 + 3.0 * step - 0.02, 0),
        ];
        let client = [got(0, 1), got(1, 1)];
        assert_eq!(check(&trusted, &client, &t, 100.0, &name).early, 0);
        // 503, 503: start, then twice start.
        let http_pair = [
            attempt(0, Some(503), 0.0, 0),
            attempt(1, Some(503), 0.002 + http, 0),
            attempt(2, Some(200), 0.002 + http + 0.002 + 2.0 * http - 0.05, 0),
        ];
        let v = check(&http_pair, &[], &t, 100.0, &name);
        assert_eq!(v.early, 1, "{:?}", v.failures);
        // Reconnects after the freeze are not checked.
        assert_eq!(check(&early, &[], &t, 0.005, &name).gaps, 0);
    }

    /// A client that gave up a connection as stalled while the server was paused longer
    /// than the stall timeout loses nothing by it; one that gave up without such a pause
    /// lost what the server wrote. The client's own stall also moves the reconnect's
    /// reference point back to the request: the server may have written after the client
    /// had given up.
    #[test]
    fn a_starved_server_is_told_apart_from_a_client_that_gave_up() {
        let t = Timing::default();
        let mut paused = attempt(0, Some(200), 0.0, 10);
        paused.longest_gap = (3.5, 4);
        let mut stalled = got(0, 4);
        stalled.end = "stall detected: no data for 3s".into();
        let v = check(&[paused.clone()], &[stalled.clone()], &t, 100.0, &name);
        assert!(v.failures.is_empty(), "{:?}", v.failures);
        assert_eq!((v.server_pauses, v.cut_by_pauses), (1, 6));
        let mut fewer = stalled.clone();
        fewer.soak = 3;
        assert_eq!(check(&[paused.clone()], &[fewer], &t, 100.0, &name).lost, 1);
        let mut unpaused = paused.clone();
        unpaused.longest_gap = (0.4, 9);
        assert_eq!(
            check(&[unpaused], &[stalled.clone()], &t, 100.0, &name).lost,
            6
        );
        // The server wrote on until 9 s; the client gave up and came back at 5 s.
        paused.last_sent_at = Some(9.0);
        paused.ended_at = Some(9.1);
        let next = attempt(1, Some(200), 5.0, 0);
        let v = check(&[paused, next], &[stalled], &t, 100.0, &name);
        assert_eq!((v.gaps, v.early), (1, 0), "{:?}", v.failures);
    }
    fn connected(at: f64, status: u16) -> ClientEvent {
        ClientEvent {
            tracker: 1,
            at,
            what: ClientEventKind::Connected { status },
        }
    }

    fn failed(at: f64, kind: Kind, retry_in: f64, messages: u64) -> ClientEvent {
        ClientEvent {
            tracker: 1,
            at,
            what: ClientEventKind::Disconnected {
                kind,
                retry_in,
                messages,
                error: "test".into(),
            },
        }
    }

    #[test]
    fn event_lines_round_trip() {
        for e in [
            connected(1.25, 429),
            failed(2.5, Kind::RateLimited, 0.8, 0),
            failed(3.0, Kind::Network, 0.1, 7),
            ClientEvent {
                tracker: 2,
                at: 3.1,
                what: ClientEventKind::BackoffUntil,
            },
        ] {
            assert_eq!(ClientEvent::from_line(&e.to_line()), Ok(e));
        }
        assert!(ClientEvent::from_line("1\t2.0\tX").is_err());
    }

    /// The announced waits are judged by the client's own view of each connection: two
    /// 429s in a row need the doubled wait; a 200 up the reset period in between (as the
    /// client saw it) starts the sequence over, one up a little less does not.
    #[test]
    fn announced_waits_shorter_than_the_policy_are_caught() {
        let t = Timing::default();
        let start = t.rate_limit_start.as_secs_f64();
        let reset = t.rate_limit_reset_after.as_secs_f64();
        let trackers = HashMap::from([(1, 100)]);
        let run = |events: &[ClientEvent]| check_announced(events, &[], &trackers, &t, 1e9, &name);
        let doubled = [
            connected(0.0, 429),
            failed(0.0, Kind::RateLimited, start, 0),
            connected(1.0, 429),
            failed(1.0, Kind::RateLimited, 2.0 * start, 0),
        ];
        let v = run(&doubled);
        assert_eq!(
            (v.decisions, v.short, v.rate_limited),
            (2, 0, 2),
            "{:?}",
            v.failures
        );
        let mut too_soon = doubled.clone();
        too_soon[3] = failed(1.0, Kind::RateLimited, start, 0);
        let v = run(&too_soon);
        assert_eq!(v.short, 1);
        assert!(
            v.failures[0].contains("stream 100")
                && v.failures[0].contains("shorter than the policy")
        );
        // A 200 up the reset period (by the client's clock) between them: start over.
        let forgotten = [
            connected(0.0, 429),
            failed(0.0, Kind::RateLimited, start, 5),
            connected(1.0, 200),
            failed(1.0 + reset, Kind::Network, t.network_step.as_secs_f64(), 5),
            connected(2.0 + reset, 429),
            failed(2.0 + reset, Kind::RateLimited, start, 0),
        ];
        assert_eq!(run(&forgotten).short, 0);
        let mut not_quite = forgotten.clone();
        not_quite[3] = failed(1.0 + reset - 0.1, Kind::Network, 0.1, 5);
        assert_eq!(run(&not_quite).short, 1);
        // Without messages, the second network failure needs two steps; a message resets.
        let step = t.network_step.as_secs_f64();
        let storm = [
            connected(0.0, 200),
            failed(0.1, Kind::Network, step, 0),
            connected(1.0, 200),
            failed(1.1, Kind::Network, step, 0),
        ];
        assert_eq!(run(&storm).short, 1);
        let mut trusted = storm.clone();
        trusted[3] = failed(1.1, Kind::Network, step, 1);
        assert_eq!(run(&trusted).short, 0);
        // The core's own times win over the observer's: a head the core took in at 1.0 s
        // but reported late (1.5 s), and a failure decided at 3.05 s (its backoff ran to
        // 3.15 s), make a connection up 2.05 s: trusted, so one step is right.
        let at = |at: f64, what: ClientEventKind| ClientEvent {
            tracker: 1,
            at,
            what,
        };
        let late = [
            connected(0.0, 200),
            failed(0.1, Kind::Network, step, 0),
            at(0.2, ClientEventKind::BackoffUntil),
            connected(1.5, 200),
            at(1.0, ClientEventKind::HeadAt),
            failed(3.1, Kind::Network, step, 0),
            at(3.05 + step, ClientEventKind::BackoffUntil),
        ];
        let v = run(&late);
        assert_eq!((v.decisions, v.short), (2, 0), "{:?}", v.failures);
        let mut observed = late.to_vec();
        observed.remove(4);
        assert_eq!(
            run(&observed).short,
            1,
            "by the observer's times alone: 1.55 s up"
        );
    }

    /// A reconnect that reaches the server before the end of the backoff the core scheduled
    /// fails, naming the stream and the attempt; one at it passes. A scheduled end beyond
    /// the failure plus the announced wait fails too.
    #[test]
    fn reconnects_before_the_scheduled_end_of_their_backoff_are_caught() {
        let t = Timing::default();
        let trackers = HashMap::from([(1, 100)]);
        let until = |at: f64| ClientEvent {
            tracker: 1,
            at,
            what: ClientEventKind::BackoffUntil,
        };
        let events = [
            connected(0.5, 503),
            failed(0.5, Kind::Http, 0.3, 0),
            until(0.799),
        ];
        let check_at = |events: &[ClientEvent], next_at: f64| {
            let server = [
                attempt(0, Some(503), 0.49, 0),
                attempt(1, Some(200), next_at, 0),
            ];
            check_announced(events, &server, &trackers, &t, 1e9, &name)
        };
        let ok = check_at(&events, 0.8);
        assert_eq!(
            (ok.gaps, ok.early, ok.uncaptured),
            (1, 0, 0),
            "{:?}",
            ok.failures
        );
        let early = check_at(&events, 0.7);
        assert_eq!(early.early, 1);
        assert!(
            early.failures[0].contains("stream 100: attempt 1")
                && early.failures[0].contains("backoff ran to 0.799 s"),
            "{:?}",
            early.failures
        );
        let mut late = events.clone();
        late[2] = until(0.9);
        let v = check_at(&late, 0.95);
        assert_eq!((v.misannounced, v.early), (1, 0), "{:?}", v.failures);
        assert!(v.failures[0].contains("scheduled its reconnect for 0.900 s"));
        // Without the end of the backoff, the reconnect is counted, not placed.
        let v = check_at(&events[..2], 0.7);
        assert_eq!((v.gaps, v.uncaptured), (0, 1));
        // A failure after the freeze is not judged; an unplaced tracker is counted.
        let frozen = check_announced(&events, &[], &trackers, &t, 0.1, &name);
        assert_eq!(frozen.decisions, 0);
        let unplaced = check_announced(&events, &[], &HashMap::new(), &t, 1e9, &name);
        assert_eq!(unplaced.unplaced, 1);
    }
}
