//! One connection's pure state machine: request bytes and time in, response bytes out.
//!
//! A [`Session`] does no I/O and never reads a clock: every method that depends on time takes
//! `now`. It runs the same under the simulator's virtual time and in the real
//! [`TestServer`](crate::server::TestServer).
//!
//! # The drain contract
//! After [`Session::new`] and after every `handle_*` call, call [`Session::poll_output`] until it
//! returns [`Output::Wait`], [`Output::Idle`] or [`Output::Close`]:
//! - `Transmit(bytes)`: write these bytes to the client, then poll again.
//! - `Wait(deadline)`: nothing until `deadline` (or more input); then poll again.
//! - `Idle`: nothing until more input arrives — or ever.
//! - `Close`: close the connection; the session is over.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sitebucket_testserver::{AttemptPlan, Credentials, Output, Session, Step};
//!
//! let start = Instant::now();
//! let plan = AttemptPlan::ok(vec![Step::Message(b"{}".to_vec())]);
//! let mut session = Session::new(plan, &Credentials::test_default(), 0, start);
//! session.handle_input(start, b"GET /1.1/site.json HTTP/1.1\r\nHost: x\r\n\r\n");
//! // No Authorization header: the server answers 401 and closes.
//! let Output::Transmit(bytes) = session.poll_output(start) else { panic!() };
//! assert!(bytes.starts_with(b"HTTP/1.1 401 Unauthorized\r\n"));
//! assert_eq!(session.poll_output(start), Output::Close);
//! assert!(!session.record().signature_ok);
//! ```

use std::fmt;
use std::time::Instant;

use crate::body::{Advance, Follows, Player, ResolvedEncoding, ResolvedFraming};
use crate::control::{Answer, ControlStreams};
use crate::corpus;
use crate::oauth::{self, Credentials, SignedRequest};
use crate::scenario::{AttemptPlan, BodyEncoding, Framing, Head, Step, Transfer};
use crate::v2::{Route, V2Service};

/// The longest request head accepted (start line, headers and the blank line); a longer one
/// gets `400 Bad Request`.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// The longest request body accepted (a form body, for POST); a longer one gets
/// `413 Payload Too Large`.
pub const MAX_REQUEST_BODY: usize = 16 * 1024;

/// The most bytes one [`Output::Transmit`] carries.
const BATCH: usize = 64 * 1024;

/// What the session wants done next. See the [module docs](self) for the drain contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes to the client.
    Transmit(Vec<u8>),
    /// Nothing to do before this instant (unless input arrives).
    Wait(Instant),
    /// Close the connection. Returned again on every later poll.
    Close,
    /// Nothing to do until more input arrives, or ever.
    Idle,
}

/// What the server saw of one connection attempt, and what it answered.
#[derive(Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// The attempt's index, 0-based, in accept order.
    pub index: usize,
    /// When the connection was accepted.
    pub at: Instant,
    /// When the whole request (head and body) had arrived; `None` if it never did.
    pub request_at: Option<Instant>,
    /// Whether the connection was TLS.
    pub tls: bool,
    /// The request method (`GET`); empty until the request line arrived.
    pub method: String,
    /// The request path without the query (`/1.1/site.json`).
    pub path: String,
    /// The query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    /// The parameters of an `application/x-www-form-urlencoded` body, decoded, in order.
    pub form: Vec<(String, String)>,
    /// The request headers in order, values as (lossy) UTF-8. `Debug` hides the
    /// `Authorization` value.
    pub headers: Vec<(String, String)>,
    /// The `oauth_*` parameters of the `Authorization` header, decoded, without
    /// `oauth_signature` (filled when the header parses).
    pub oauth_params: Vec<(String, String)>,
    /// Whether the OAuth signature checked out (with the right consumer key and token).
    pub signature_ok: bool,
    /// Why the request was rejected (401, 400 or 413), in words with no secret in them.
    pub rejection: Option<String>,
    /// The status code of the head sent, if a standard head was sent.
    pub status: Option<u16>,
    /// The control stream id this connection announced ([`Step::Control`]), if any.
    pub announced: Option<String>,
    /// When the connection ended, as the server saw it (set by the
    /// [`TestServer`](crate::TestServer); a bare session leaves it `None`).
    pub ended_at: Option<Instant>,
    /// Framed messages (disconnect and control messages included) whose every byte was
    /// written to the connection, as told by [`Session::handle_sent`].
    pub messages_sent: u64,
    /// When the last write that succeeded began (see [`Session::handle_sent`]): the client
    /// cannot have seen the response fail or end before it.
    pub last_sent_at: Option<Instant>,
    /// The longest time between the starts of two successive successful writes, and how
    /// many messages were written in full before it: a server starved of CPU for longer
    /// than a client's stall timeout shows here.
    pub longest_send_gap: (std::time::Duration, u64),
    /// `(user, tick, message index)` of each [`Step::PerUser`](crate::Step::PerUser) message
    /// put on this connection, in order: the message index counts every framed message of
    /// the response from 0, so the message was written in full when it is below
    /// [`messages_sent`](Self::messages_sent).
    pub per_user: Vec<(u64, u64, u64)>,
}

impl AttemptRecord {
    fn new(index: usize, at: Instant, tls: bool) -> Self {
        AttemptRecord {
            index,
            at,
            request_at: None,
            tls,
            method: String::new(),
            path: String::new(),
            query: Vec::new(),
            form: Vec::new(),
            headers: Vec::new(),
            oauth_params: Vec::new(),
            signature_ok: false,
            rejection: None,
            status: None,
            announced: None,
            ended_at: None,
            messages_sent: 0,
            last_sent_at: None,
            longest_send_gap: (std::time::Duration::ZERO, 0),
            per_user: Vec::new(),
        }
    }

    /// The first form parameter with this name.
    pub fn form_param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter with this name.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first `oauth_*` parameter with this name (`oauth_nonce`, `oauth_timestamp`, ...).
    pub fn oauth_param(&self, name: &str) -> Option<&str> {
        self.oauth_params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the whole request arrived.
    pub fn request_complete(&self) -> bool {
        self.request_at.is_some()
    }
}

impl fmt::Debug for AttemptRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                if n.eq_ignore_ascii_case("authorization") {
                    (n.as_str(), "<redacted>")
                } else {
                    (n.as_str(), v.as_str())
                }
            })
            .collect();
        f.debug_struct("AttemptRecord")
            .field("index", &self.index)
            .field("at", &self.at)
            .field("request_at", &self.request_at)
            .field("tls", &self.tls)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("form", &self.form)
            .field("headers", &headers)
            .field("oauth_params", &self.oauth_params)
            .field("signature_ok", &self.signature_ok)
            .field("rejection", &self.rejection)
            .field("status", &self.status)
            .field("announced", &self.announced)
            .field("ended_at", &self.ended_at)
            .field("messages_sent", &self.messages_sent)
            .field("last_sent_at", &self.last_sent_at)
            .field("longest_send_gap", &self.longest_send_gap)
            .field("per_user", &self.per_user.len())
            .finish()
    }
}

enum Phase {
    /// Reading the request (head, then a form body if it has one).
    Request,
    /// Playing the plan.
    Playing(Box<Player>),
    /// The response sends nothing more; the connection stays open.
    Stalled,
    /// Send what is left, then close.
    Closing,
    /// Over.
    Closed,
}

/// One connection's pure state machine. See the [module docs](self).
pub struct Session {
    plan: AttemptPlan,
    credentials: Credentials,
    record: AttemptRecord,
    phase: Phase,
    input: Vec<u8>,
    /// Length of the request head once its end was seen.
    head_len: Option<usize>,
    out: Vec<u8>,
    /// The script's own clock: the request's arrival, then each wait's deadline.
    script_time: Instant,
    wait_until: Option<Instant>,
    clean_close: bool,
    /// The server's control streams, if control requests are answered.
    control: Option<ControlStreams>,
    /// Framed messages wholly in the bytes handed out by `poll_output` so far.
    messages_out: u64,
    /// The server's v2 side: when set, requests carry a Bearer token, not a signature.
    v2: Option<V2Service>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.phase {
            Phase::Request => "request",
            Phase::Playing(_) => "playing",
            Phase::Stalled => "stalled",
            Phase::Closing => "closing",
            Phase::Closed => "closed",
        };
        f.debug_struct("Session")
            .field("phase", &phase)
            .field("record", &self.record)
            .field("wait_until", &self.wait_until)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session for attempt `attempt_index`, accepted at `now`, checking requests against
    /// `credentials`, over plain TCP (see [`Session::with_tls`]).
    pub fn new(
        plan: AttemptPlan,
        credentials: &Credentials,
        attempt_index: usize,
        now: Instant,
    ) -> Self {
        Session {
            plan,
            credentials: credentials.clone(),
            record: AttemptRecord::new(attempt_index, now, false),
            phase: Phase::Request,
            input: Vec::new(),
            head_len: None,
            out: Vec::new(),
            script_time: now,
            wait_until: None,
            clean_close: false,
            control: None,
            messages_out: 0,
            v2: None,
        }
    }

    /// Speaks X API v2 (see [`v2`](crate::v2)): requests must carry `service`'s Bearer token
    /// (else `401`), the stream paths play the plan, the rules endpoint answers from
    /// `service`'s rules. Call it before any input.
    pub fn with_v2(mut self, service: V2Service) -> Self {
        self.v2 = Some(service);
        self
    }

    /// Answers control requests (`…/c/<id>/add_user.json` and the others, see
    /// [`control`](crate::control)) from `streams`, and registers this connection's control
    /// stream there when its plan announces one ([`Step::Control`]). Call it before any
    /// input. Without it, every request plays the plan.
    pub fn with_control(mut self, streams: ControlStreams) -> Self {
        self.control = Some(streams);
        self
    }

    /// Says whether the connection is TLS: the signed URL's scheme is then `https`. Call it
    /// before any input.
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.record.tls = tls;
        self
    }

    /// What was seen of the request so far, and what was answered.
    pub fn record(&self) -> &AttemptRecord {
        &self.record
    }

    /// Whether the session is over (it returned, or will return, [`Output::Close`]).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closing | Phase::Closed)
    }

    /// Whether the session ended with a finished response (`End::Close`, or a 400/401/413
    /// answer) rather than `Step::CloseNow` or the client's EOF. A TLS server sends
    /// `close_notify` only then.
    pub fn closed_cleanly(&self) -> bool {
        self.clean_close
    }

    /// Framed messages (disconnect and control messages included) wholly in the bytes
    /// [`poll_output`](Self::poll_output) has handed out so far. Read it when a `Transmit`
    /// is returned, and pass it to [`handle_sent`](Self::handle_sent) once those bytes are
    /// written.
    pub fn messages_out(&self) -> u64 {
        self.messages_out
    }

    /// Tells the record that bytes were written in an operation that began `at`, completing
    /// `messages` framed messages (a
    /// [`messages_out`](Self::messages_out) value read when those bytes were handed out).
    pub fn handle_sent(&mut self, at: Instant, messages: u64) {
        if let Some(previous) = self.record.last_sent_at {
            let gap = at.saturating_duration_since(previous);
            if gap > self.record.longest_send_gap.0 {
                self.record.longest_send_gap = (gap, self.record.messages_sent);
            }
        }
        self.record.last_sent_at = Some(at);
        self.record.messages_sent = self.record.messages_sent.max(messages);
    }

    /// Request bytes from the client, in any split. Bytes after the request are ignored.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if !matches!(self.phase, Phase::Request) {
            return;
        }
        let searched_from = self.input.len().saturating_sub(3);
        self.input.extend_from_slice(bytes);
        if self.head_len.is_none() {
            let found = memfind(&self.input[searched_from..], b"\r\n\r\n");
            match found {
                Some(at) if searched_from + at + 4 <= MAX_REQUEST_HEAD => {
                    self.head_len = Some(searched_from + at + 4);
                }
                Some(_) => return self.reject_oversized_head(now),
                None if self.input.len() > MAX_REQUEST_HEAD => {
                    return self.reject_oversized_head(now)
                }
                None => return,
            }
        }
        self.try_finish_request(now);
    }

    /// The client closed its side: the session is over.
    pub fn handle_eof(&mut self, _now: Instant) {
        if !matches!(self.phase, Phase::Closed) {
            self.phase = Phase::Closed;
            self.out.clear();
        }
        self.retire();
    }

    /// The connection is over: its control stream, if any, is no longer live.
    fn retire(&mut self) {
        if let (Some(streams), Some(id)) = (&self.control, &self.record.announced) {
            streams.unregister(id);
        }
    }

    /// The next thing to do. See the [module docs](self) for the drain contract.
    #[must_use]
    pub fn poll_output(&mut self, now: Instant) -> Output {
        loop {
            match &mut self.phase {
                Phase::Request | Phase::Stalled => return self.take_or(Output::Idle),
                Phase::Closing => {
                    if !self.out.is_empty() {
                        return Output::Transmit(std::mem::take(&mut self.out));
                    }
                    self.phase = Phase::Closed;
                    self.retire();
                    return Output::Close;
                }
                Phase::Closed => return Output::Close,
                Phase::Playing(player) => {
                    if let Some(deadline) = self.wait_until {
                        if now < deadline {
                            return self.take_or(Output::Wait(deadline));
                        }
                        self.script_time = deadline;
                        self.wait_until = None;
                    }
                    if self.out.len() >= BATCH {
                        return Output::Transmit(std::mem::take(&mut self.out));
                    }
                    player.set_clock(self.script_time);
                    let advance = player.advance(&mut self.out);
                    self.record.per_user.extend(player.take_per_user_log());
                    self.messages_out = player.messages_out();
                    match advance {
                        Advance::Continue => {}
                        Advance::Wait(d) => self.wait_until = Some(self.script_time + d),
                        Advance::Closed { clean } => {
                            self.clean_close = clean;
                            self.phase = Phase::Closing;
                        }
                        Advance::Stalled => self.phase = Phase::Stalled,
                    }
                }
            }
        }
    }

    fn take_or(&mut self, otherwise: Output) -> Output {
        if self.out.is_empty() {
            otherwise
        } else {
            Output::Transmit(std::mem::take(&mut self.out))
        }
    }

    fn reject_oversized_head(&mut self, now: Instant) {
        // Keep what the request line says, for the record.
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        let _ = request.parse(&self.input);
        self.record.method = request.method.unwrap_or_default().to_string();
        if let Some(target) = request.path {
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            self.record.path = path.to_string();
            self.record.query = oauth::parse_form(query);
        }
        self.reject(
            now,
            400,
            "Bad Request",
            "request head over 16 KiB".to_string(),
        );
    }

    /// Answers with a short plain-text error and closes.
    fn reject(&mut self, _now: Instant, status: u16, reason: &str, why: String) {
        let body = format!("{status} {reason}: {why}\n");
        self.out.extend_from_slice(
            format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        self.record.status = Some(status);
        self.record.rejection = Some(why);
        self.clean_close = true;
        self.phase = Phase::Closing;
        self.input = Vec::new();
    }

    /// Parses the head (complete by now); once any body has arrived, checks the request and
    /// starts the response.
    fn try_finish_request(&mut self, now: Instant) {
        let Some(head_len) = self.head_len else {
            return;
        };
        let mut header_buf = [httparse::EMPTY_HEADER; 100];
        let mut request = httparse::Request::new(&mut header_buf);
        match request.parse(&self.input[..head_len]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) | Err(_) => {
                return self.reject(
                    now,
                    400,
                    "Bad Request",
                    "malformed request head".to_string(),
                );
            }
        }
        let method = request.method.unwrap_or_default().to_string();
        let target = request.path.unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        self.record.method = method;
        self.record.path = path.to_string();
        self.record.query = oauth::parse_form(query);
        self.record.headers = headers;

        let content_length = self
            .record
            .header("content-length")
            .map(|v| v.trim().parse::<usize>());
        let body_len = match content_length {
            None => 0,
            Some(Ok(n)) if n <= MAX_REQUEST_BODY => n,
            Some(Ok(_)) => {
                return self.reject(
                    now,
                    413,
                    "Payload Too Large",
                    "request body over 16 KiB".to_string(),
                )
            }
            Some(Err(_)) => {
                return self.reject(
                    now,
                    400,
                    "Bad Request",
                    "malformed Content-Length".to_string(),
                )
            }
        };
        if self.input.len() < head_len + body_len {
            return;
        }
        self.record.request_at = Some(now);
        let body = &self.input[head_len..head_len + body_len];
        if let Some(service) = self.v2.clone() {
            let body = body.to_vec();
            self.input = Vec::new();
            if !service.authorized(self.record.header("authorization")) {
                self.record.rejection = Some("no valid Bearer token".to_owned());
                return self.answer_control(V2Service::unauthorized());
            }
            self.record.signature_ok = true;
            return match service.route(
                &self.record.method,
                &self.record.path,
                &self.record.query,
                &body,
            ) {
                Route::Stream => self.start_response(now),
                Route::Answer(answer) => self.answer_control(answer),
            };
        }
        let is_form = self.record.header("content-type").is_some_and(|ct| {
            ct.trim()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
        let mut params = self.record.query.clone();
        if is_form {
            self.record.form = oauth::parse_form(&String::from_utf8_lossy(body));
            params.extend(self.record.form.iter().cloned());
        }
        if let Some(header) = self.record.header("authorization") {
            if let Ok(all) = oauth::parse_authorization(header) {
                self.record.oauth_params = all
                    .into_iter()
                    .filter(|(n, _)| n != "oauth_signature")
                    .collect();
            }
        }
        let verdict = oauth::verify(
            &SignedRequest {
                method: &self.record.method,
                tls: self.record.tls,
                host: self.record.header("host"),
                path: &self.record.path,
                params: &params,
                authorization: self.record.header("authorization"),
            },
            &self.credentials,
        );
        self.input = Vec::new();
        match verdict {
            Ok(_) => {
                self.record.signature_ok = true;
                let answer = self.control.as_ref().and_then(|streams| {
                    streams.answer(&self.record.method, &self.record.path, &params)
                });
                match answer {
                    Some(answer) => self.answer_control(answer),
                    None => self.start_response(now),
                }
            }
            Err(error) => self.reject(now, 401, "Unauthorized", error.to_string()),
        }
    }

    /// Sends a control endpoint's answer and closes.
    fn answer_control(&mut self, answer: Answer) {
        let Answer {
            status,
            reason,
            body,
        } = answer;
        self.out.extend_from_slice(
            format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        self.record.status = Some(status);
        self.clean_close = true;
        self.phase = Phase::Closing;
    }

    /// Gives a `200` stream whose plan announces a control stream its id (registered when
    /// the server answers control requests), and puts the control message in place of
    /// [`Step::Control`].
    fn announce_control(&mut self) {
        let announces = self.plan.steps.iter().any(|s| matches!(s, Step::Control));
        if !announces || self.plan.status != 200 || self.plan.head != Head::Standard {
            return;
        }
        let id = match &self.control {
            Some(streams) => streams.register(self.record.index, &self.record.query),
            None => format!("sb_{}", self.record.index),
        };
        let message = corpus::control(&id);
        for step in &mut self.plan.steps {
            if matches!(step, Step::Control) {
                *step = Step::Message(message.clone());
            }
        }
        self.record.announced = Some(id);
    }

    fn start_response(&mut self, now: Instant) {
        self.announce_control();
        let encoding = match self.plan.encoding {
            BodyEncoding::Identity => ResolvedEncoding::Identity,
            BodyEncoding::Gzip => ResolvedEncoding::Gzip,
            BodyEncoding::Deflate => ResolvedEncoding::Deflate,
            BodyEncoding::Auto => {
                let accepted = self.record.header("accept-encoding").unwrap_or("");
                let names = |name: &str| {
                    accepted.split(',').any(|token| {
                        let token = token.split(';').next().unwrap_or("").trim();
                        token.eq_ignore_ascii_case(name)
                    })
                };
                if names("gzip") {
                    ResolvedEncoding::Gzip
                } else if names("deflate") {
                    ResolvedEncoding::Deflate
                } else {
                    ResolvedEncoding::Identity
                }
            }
        };
        let framing = match self.plan.framing {
            Framing::Crlf => ResolvedFraming::Crlf,
            Framing::Length => ResolvedFraming::Length,
            Framing::Auto => {
                if self.record.query_param("delimited") == Some("length") {
                    ResolvedFraming::Length
                } else {
                    ResolvedFraming::Crlf
                }
            }
        };
        let steps = std::mem::take(&mut self.plan.steps);
        let make = |steps: Vec<_>| {
            Player::new(
                steps,
                self.plan.end,
                self.plan.transfer,
                &self.plan.chunks,
                encoding,
                framing,
            )
        };
        let content_length =
            (self.plan.transfer == Transfer::ContentLength).then(|| make(steps.clone()).body_len());
        let follows = match (&self.control, &self.record.announced) {
            (Some(streams), Some(id)) => Follows::Live(streams.clone(), id.clone()),
            _ => Follows::Fixed(
                self.record
                    .query_param("follow")
                    .unwrap_or("")
                    .split(',')
                    .filter_map(|id| id.trim().parse().ok())
                    .collect(),
            ),
        };
        let player = make(steps).with_follows(follows);
        if self.plan.head == Head::Standard {
            let mut head = format!("HTTP/1.1 {} {}\r\n", self.plan.status, self.plan.reason);
            let has = |name: &str| {
                self.plan
                    .headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case(name))
            };
            if !has("content-type") {
                head.push_str("Content-Type: application/json\r\n");
            }
            match (self.plan.transfer, content_length) {
                (Transfer::ContentLength, Some(n)) => {
                    head.push_str(&format!("Content-Length: {n}\r\n"))
                }
                (Transfer::UntilEof, _) => head.push_str("Connection: close\r\n"),
                _ => head.push_str("Transfer-Encoding: chunked\r\n"),
            }
            if let Some(name) = encoding.header_value() {
                head.push_str(&format!("Content-Encoding: {name}\r\n"));
            }
            for (name, value) in &self.plan.headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            self.out.extend_from_slice(head.as_bytes());
            self.record.status = Some(self.plan.status);
        }
        self.script_time = now;
        self.phase = Phase::Playing(Box::new(player));
    }
}

/// The first position of `needle` in `haystack`.
fn memfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Drop for Session {
    fn drop(&mut self) {
        self.retire();
    }
}

#[cfg(test)]
mod tests;
