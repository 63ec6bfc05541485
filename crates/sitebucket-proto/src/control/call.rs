//! [`ControlCall`]: one control request as a sans-IO state machine.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{Auth, Config, Credentials, Endpoint};
use crate::pipeline::{ReadError, ResponseReader};
use crate::request::make_nonce;
use crate::response::ResponseHead;
#[cfg(feature = "tls")]
use crate::tls::{TlsContext, TlsSession};

use super::request::{ControlKind, ControlRequest};
use super::response::{decode_friends_ids, decode_info, error_detail, ControlResponse};
use super::rules::decode_rules;
use super::{is_valid_stream_id, ControlError, DEFAULT_CONTROL_TIMEOUT, MAX_CONTROL_BODY};

/// What the driver should do next for a [`ControlCall`]; the same shape as the stream's
/// [`Action`](crate::stream::Action), without events.
///
/// `Debug` shows a `Transmit` by its length only: the request carries the OAuth signature.
#[derive(Clone, PartialEq)]
#[must_use]
pub enum ControlAction {
    /// Open a TCP connection to `host:port`; then call `handle_connected` or
    /// `handle_connect_failed`. With `tls`, the call does the handshake itself.
    Connect {
        /// Host name or IP literal (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
        /// Whether the bytes on this connection are TLS (the call handles it).
        tls: bool,
    },
    /// Write these bytes to the connection, all of them, in order.
    Transmit(Bytes),
    /// Close the connection (or abandon the attempt).
    Close,
    /// Nothing to do until this instant or new input.
    Wait(Instant),
    /// The call is over: the typed answer, or what went wrong. Returned again on every later
    /// poll.
    Finished(Result<ControlResponse, ControlError>),
}

impl std::fmt::Debug for ControlAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlAction::Connect { host, port, tls } => f
                .debug_struct("Connect")
                .field("host", host)
                .field("port", port)
                .field("tls", tls)
                .finish(),
            ControlAction::Transmit(bytes) => f
                .debug_tuple("Transmit")
                .field(&format_args!("<{} bytes>", bytes.len()))
                .finish(),
            ControlAction::Close => f.write_str("Close"),
            ControlAction::Wait(deadline) => f.debug_tuple("Wait").field(deadline).finish(),
            ControlAction::Finished(result) => f.debug_tuple("Finished").field(result).finish(),
        }
    }
}

#[derive(Debug)]
enum State {
    /// Not started: the first poll checks the inputs and asks to connect.
    New,
    Connecting {
        deadline: Instant,
    },
    Open {
        deadline: Instant,
        conn: Box<Conn>,
    },
    Done(Result<ControlResponse, ControlError>),
}

#[derive(Debug)]
struct Conn {
    body: OneResponse,
    #[cfg(feature = "tls")]
    tls: Option<TlsSession>,
}

/// One control request over its own connection, without I/O.
///
/// The drain contract is the stream's: after creating the call and after every `handle_*`
/// call, call [`poll_action`](Self::poll_action) until it returns [`ControlAction::Wait`] or
/// [`ControlAction::Finished`], carrying out each action in order; then wait for input, the
/// deadline or the peer's close and hand it in. The call connects, sends one signed request,
/// reads one response (head, then a chunked, `Content-Length` or until-close body, gzip or
/// deflate undone), closes, and finishes with the typed answer:
///
/// - `200` → [`ControlResponse::Done`] (add, remove), [`ControlResponse::Info`],
///   [`ControlResponse::Friends`];
/// - `404` → [`ControlError::UnknownStream`];
/// - any other status → [`ControlError::Http`] with the server's message.
///
/// Without a stream id it finishes at once with [`ControlError::NotAnnounced`], sending
/// nothing. A deadline ([`DEFAULT_CONTROL_TIMEOUT`] unless set) bounds the whole call,
/// counted from the first poll.
///
/// `Debug` shows neither secret nor the signed request (it carries the signature).
pub struct ControlCall {
    request: ControlRequest,
    endpoint: Endpoint,
    auth: Auth,
    extra_roots: Vec<u8>,
    stream_id: Option<String>,
    timeout: Duration,
    nonce_seed: u64,
    state: State,
    queue: VecDeque<ControlAction>,
}

impl std::fmt::Debug for ControlCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::New => "new",
            State::Connecting { .. } => "connecting",
            State::Open { .. } => "open",
            State::Done(Ok(_)) => "done",
            State::Done(Err(_)) => "failed",
        };
        f.debug_struct("ControlCall")
            .field("request", &self.request)
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .field("stream_id", &self.stream_id)
            .field("timeout", &self.timeout)
            .field("state", &state)
            .field("queued_actions", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl ControlCall {
    /// A call of `request` on the stream `stream_id` (as the stream announced it; `None` when
    /// it has not) at `endpoint`, signed with `credentials`. Its nonce seed is drawn from the
    /// operating system unless [`with_nonce_seed`](Self::with_nonce_seed) sets one.
    pub fn new(
        endpoint: &Endpoint,
        credentials: &Credentials,
        stream_id: Option<&str>,
        request: ControlRequest,
    ) -> Self {
        Self::with_auth(
            endpoint,
            &Auth::OAuth1(credentials.clone()),
            stream_id,
            request,
        )
    }

    /// As [`new`](Self::new), signed in with `auth` (a Bearer token for the v2 rules calls,
    /// which need no stream id: pass `None`).
    pub fn with_auth(
        endpoint: &Endpoint,
        auth: &Auth,
        stream_id: Option<&str>,
        request: ControlRequest,
    ) -> Self {
        ControlCall {
            request,
            endpoint: endpoint.clone(),
            auth: auth.clone(),
            extra_roots: Vec::new(),
            stream_id: stream_id.map(str::to_owned),
            timeout: DEFAULT_CONTROL_TIMEOUT,
            nonce_seed: crate::stream::os_seed(),
            state: State::New,
            queue: VecDeque::new(),
        }
    }

    /// A call for the stream built from `config`: its endpoint, credentials, extra root
    /// certificates and nonce seed (drawn from the operating system when the config sets
    /// none).
    pub fn for_stream(config: &Config, stream_id: Option<&str>, request: ControlRequest) -> Self {
        let call = Self::with_auth(config.endpoint(), config.auth(), stream_id, request)
            .with_extra_roots(config.extra_root_certs_pem().to_vec());
        match config.rng_seed() {
            Some(seed) => call.with_nonce_seed(seed),
            None => call,
        }
    }

    /// Extra trusted root certificates (PEM) for TLS, as [`Config`] takes them.
    pub fn with_extra_roots(mut self, pem: Vec<u8>) -> Self {
        self.extra_roots = pem;
        self
    }

    /// The deadline of the whole call, from its first poll.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The seed of the request's OAuth nonce. Give every call a different seed (reusing one
    /// repeats the nonce, which a server may refuse as a replay).
    pub fn with_nonce_seed(mut self, seed: u64) -> Self {
        self.nonce_seed = seed;
        self
    }

    /// The request.
    pub fn request(&self) -> &ControlRequest {
        &self.request
    }

    /// The stream id the request goes to, if any.
    pub fn stream_id(&self) -> Option<&str> {
        self.stream_id.as_deref()
    }

    /// The deadline of the whole call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The instant the call gives up, once started.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Connecting { deadline } | State::Open { deadline, .. } => Some(*deadline),
            State::New | State::Done(_) => None,
        }
    }

    /// How the call ended, once it has.
    pub fn result(&self) -> Option<&Result<ControlResponse, ControlError>> {
        match &self.state {
            State::Done(result) => Some(result),
            _ => None,
        }
    }

    // ----- inputs -----

    /// The transport is up: the request is signed (`unix_secs` as timestamp) and queued.
    /// Ignored unless a `Connect` is outstanding.
    pub fn handle_connected(&mut self, _now: Instant, unix_secs: u64) {
        let State::Connecting { deadline } = self.state else {
            return;
        };
        let stream_id = self.stream_id.as_deref().unwrap_or_default();
        let nonce = make_nonce(&mut ChaCha8Rng::seed_from_u64(self.nonce_seed));
        let request =
            match self
                .request
                .authorized(&self.endpoint, stream_id, &self.auth, unix_secs, &nonce)
            {
                Ok(request) => request,
                Err(e) => return self.finish(Err(e), true),
            };
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))] // Set up for TLS only with it.
        let mut conn = Box::new(Conn {
            body: OneResponse::new(),
            #[cfg(feature = "tls")]
            tls: None,
        });
        #[cfg(feature = "tls")]
        if self.endpoint.tls {
            let session = TlsContext::new(&self.extra_roots)
                .map_err(|e| ControlError::InvalidConfig(e.to_string()))
                .and_then(|ctx| {
                    ctx.connect(&self.endpoint.host, unix_secs)
                        .map_err(|e| ControlError::Tls(crate::response::bounded_text(&e)))
                });
            match session {
                Ok(mut session) => {
                    session.write_plaintext(&request);
                    let hello = session.take_transmit();
                    conn.tls = Some(session);
                    self.queue
                        .push_back(ControlAction::Transmit(Bytes::from(hello)));
                }
                Err(e) => return self.finish(Err(e), true),
            }
            self.state = State::Open { deadline, conn };
            return;
        }
        self.queue
            .push_back(ControlAction::Transmit(Bytes::from(request)));
        self.state = State::Open { deadline, conn };
    }

    /// The connection attempt failed.
    pub fn handle_connect_failed(&mut self, _now: Instant, error: io::ErrorKind) {
        if matches!(self.state, State::Connecting { .. }) {
            self.finish(Err(ControlError::Connect(error)), false);
        }
    }

    /// Bytes arrived on the connection. Ignored unless it is open.
    pub fn handle_input(&mut self, _now: Instant, bytes: &[u8]) {
        let State::Open { conn, .. } = &mut self.state else {
            return;
        };
        let conn = &mut **conn;
        let body = &mut conn.body;
        let mut failed = None;
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut conn.tls {
            let mut sink = |plain: &[u8]| match body.push(plain) {
                Ok(()) => !body.complete(),
                Err(e) => {
                    failed = Some(e);
                    false
                }
            };
            if let Err(e) = tls.read_ciphertext(bytes, &mut sink) {
                failed = failed.or(Some(ControlError::Tls(crate::response::bounded_text(&e))));
            }
            let out = tls.take_transmit();
            if !out.is_empty() {
                self.queue
                    .push_back(ControlAction::Transmit(Bytes::from(out)));
            }
        } else if let Err(e) = body.push(bytes) {
            failed = Some(e);
        }
        #[cfg(not(feature = "tls"))]
        if let Err(e) = body.push(bytes) {
            failed = Some(e);
        }
        if let Some(e) = failed {
            return self.finish(Err(e), true);
        }
        if body.complete() {
            let result = self.answer();
            self.finish(result, true);
        }
    }

    /// The peer closed the connection: a body that runs until the close is complete now;
    /// anything else is cut short.
    pub fn handle_eof(&mut self, _now: Instant) {
        let State::Open { conn, .. } = &mut self.state else {
            return;
        };
        if conn.body.handle_eof() {
            let result = self.answer();
            self.finish(result, true);
        } else {
            self.finish(Err(ControlError::Closed), true);
        }
    }

    /// The deadline may have passed. Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline().is_some_and(|d| d <= now) {
            self.finish(Err(ControlError::Timeout(self.timeout)), true);
        }
    }

    /// Gives up: closes any connection and finishes with [`ControlError::Cancelled`].
    pub fn cancel(&mut self) {
        if !matches!(self.state, State::Done(_)) {
            self.finish(Err(ControlError::Cancelled), true);
        }
    }

    // ----- output -----

    /// The next thing to do. See the drain contract in the [type docs](Self).
    pub fn poll_action(&mut self, now: Instant) -> ControlAction {
        loop {
            if let Some(action) = self.queue.pop_front() {
                return action;
            }
            if self.deadline().is_some_and(|d| d <= now) {
                self.handle_timeout(now);
                continue;
            }
            return match &self.state {
                State::New => self.start(now),
                State::Connecting { deadline } | State::Open { deadline, .. } => {
                    ControlAction::Wait(*deadline)
                }
                State::Done(result) => ControlAction::Finished(result.clone()),
            };
        }
    }

    fn start(&mut self, now: Instant) -> ControlAction {
        let rules = self.request.kind().is_rules();
        let checked = match self.stream_id.as_deref() {
            _ if rules && self.endpoint.tls && !cfg!(feature = "tls") => {
                Err(ControlError::InvalidConfig(
                    "https:// needs sitebucket-proto's `tls` feature".into(),
                ))
            }
            _ if rules => Ok(()),
            None => Err(ControlError::NotAnnounced),
            Some(id) if !is_valid_stream_id(id) => Err(ControlError::InvalidStreamId {
                stream_id: id.to_owned(),
            }),
            Some(_) if self.endpoint.tls && !cfg!(feature = "tls") => {
                Err(ControlError::InvalidConfig(
                    "https:// needs sitebucket-proto's `tls` feature".into(),
                ))
            }
            Some(_) => Ok(()),
        };
        if let Err(e) = checked {
            self.state = State::Done(Err(e));
            return self.poll_action(now);
        }
        let Some(deadline) = now.checked_add(self.timeout) else {
            self.state = State::Done(Err(ControlError::InvalidConfig(format!(
                "timeout {:?} is too long",
                self.timeout
            ))));
            return self.poll_action(now);
        };
        self.state = State::Connecting { deadline };
        ControlAction::Connect {
            host: self.endpoint.host.clone(),
            port: self.endpoint.port,
            tls: self.endpoint.tls,
        }
    }

    /// The typed answer of a complete response.
    fn answer(&self) -> Result<ControlResponse, ControlError> {
        let State::Open { conn, .. } = &self.state else {
            return Err(ControlError::Closed);
        };
        let Some(head) = conn.body.head() else {
            return Err(ControlError::Closed);
        };
        let rules = self.request.kind().is_rules();
        // A rules change answers `201 Created`.
        let ok = head.status == 200 || (rules && (200..300).contains(&head.status));
        if !ok {
            // The body only adds detail: one whose compressed data is unreadable leaves it
            // out; broken transfer framing is still reported.
            let body = match conn.body.decoded() {
                Err(ControlError::Read(e @ (ReadError::Chunked(_) | ReadError::Head(_)))) => {
                    return Err(ControlError::Read(e))
                }
                other => other.unwrap_or_default(),
            };
            return Err(match head.status {
                404 if !rules => ControlError::UnknownStream {
                    stream_id: self.stream_id.clone().unwrap_or_default(),
                },
                status => ControlError::Http {
                    status,
                    reason: head.reason.clone(),
                    detail: error_detail(&body),
                },
            });
        }
        let body = conn.body.decoded()?;
        match self.request.kind() {
            ControlKind::AddUsers | ControlKind::RemoveUsers => Ok(ControlResponse::Done),
            ControlKind::Info => decode_info(&body).map(ControlResponse::Info),
            ControlKind::FriendsIds => decode_friends_ids(&body).map(ControlResponse::Friends),
            ControlKind::RulesList | ControlKind::RulesAdd | ControlKind::RulesDelete => {
                decode_rules(&body).map(ControlResponse::Rules)
            }
        }
    }

    fn finish(&mut self, result: Result<ControlResponse, ControlError>, close: bool) {
        if close && matches!(self.state, State::Connecting { .. } | State::Open { .. }) {
            self.queue.clear();
            self.queue.push_back(ControlAction::Close);
        }
        self.state = State::Done(result);
    }
}

/// One response read whole through the stream's [`ResponseReader`] (head, transfer and
/// content decoding), bounded by [`MAX_CONTROL_BODY`] before and after content decoding.
#[derive(Debug)]
struct OneResponse {
    reader: ResponseReader,
    head: Option<ResponseHead>,
    /// The outcome, once the body is complete or unreadable.
    body: Option<Result<Bytes, ReadError>>,
}

impl OneResponse {
    fn new() -> Self {
        OneResponse {
            reader: ResponseReader::whole_body(MAX_CONTROL_BODY),
            head: None,
            body: None,
        }
    }

    fn complete(&self) -> bool {
        self.body.is_some()
    }

    /// Takes response bytes in any split; bytes after the end of the body are ignored. Only a
    /// bad head is an error here (a body error is kept for [`answer`](ControlCall::answer),
    /// which reports the status first).
    fn push(&mut self, input: &[u8]) -> Result<(), ControlError> {
        if self.complete() {
            return Ok(());
        }
        if let Some(head) = self.reader.push(input).map_err(ControlError::Read)? {
            self.head = Some(head);
        }
        self.poll();
        Ok(())
    }

    fn poll(&mut self) {
        match self.reader.poll_body() {
            Ok(None) => {}
            Ok(Some(body)) => self.body = Some(Ok(body)),
            Err(e) => self.body = Some(Err(e)),
        }
    }

    /// The peer closed: returns whether the response is complete.
    fn handle_eof(&mut self) -> bool {
        if !self.complete() {
            self.reader.end_of_input();
            self.poll();
        }
        self.complete()
    }

    /// The response head, once complete.
    fn head(&self) -> Option<&ResponseHead> {
        self.head.as_ref()
    }

    /// The body of a complete response, content decoding undone.
    fn decoded(&self) -> Result<Bytes, ControlError> {
        match &self.body {
            None => Err(ControlError::Closed),
            Some(Ok(body)) => Ok(body.clone()),
            Some(Err(e)) => Err(ControlError::from_body_error(e)),
        }
    }
}

#[cfg(test)]
mod tests;
