//! [`SiteStream`]: the reconnecting Site Streams client as a pure state machine (its rules
//! are on the type).

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::backoff::{Backoff, FailureKind};
use crate::config::Config;
use crate::framer::Frame;
use crate::message::{stream_signal, DisconnectCode, StreamSignal};
use crate::pipeline::{ReadError, ResponseReader};
use crate::request::{make_nonce, stream_request};
use crate::response::bounded_text;
use crate::response::StatusClass;
#[cfg(feature = "tls")]
use crate::tls::{TlsContext, TlsSession};

/// What the driver should do next. Returned by [`SiteStream::poll_action`].
///
/// The contract between the core and a driver: exhaustive, so a new action is a compile
/// error in every driver rather than a silently ignored one.
///
/// `Debug` shows only the length of a [`Transmit`](Action::Transmit): those bytes are the
/// signed request (its OAuth signature included) or TLS records.
#[derive(Clone, PartialEq)]
#[must_use]
pub enum Action {
    /// Open a TCP connection to `host:port`; then call `handle_connected` or
    /// `handle_connect_failed`. With `tls`, the core does the handshake itself: the driver
    /// only moves bytes.
    Connect {
        /// Host name or IP literal (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
        /// Whether the bytes on this connection are TLS (the core handles it).
        tls: bool,
    },
    /// Write these bytes to the connection, all of them, in order.
    Transmit(Bytes),
    /// Something for the user.
    Event(StreamEvent),
    /// Close the connection (or abandon the connection attempt).
    Close,
    /// Nothing to do until this instant, new input, or a command.
    Wait(Instant),
    /// The stream is over; nothing more will happen.
    Finished(Outcome),
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Connect { host, port, tls } => f
                .debug_struct("Connect")
                .field("host", host)
                .field("port", port)
                .field("tls", tls)
                .finish(),
            Action::Transmit(bytes) => f
                .debug_tuple("Transmit")
                .field(&format_args!("<{} bytes>", bytes.len()))
                .finish(),
            Action::Event(event) => f.debug_tuple("Event").field(event).finish(),
            Action::Close => f.write_str("Close"),
            Action::Wait(deadline) => f.debug_tuple("Wait").field(deadline).finish(),
            Action::Finished(outcome) => f.debug_tuple("Finished").field(outcome).finish(),
        }
    }
}

/// Something that happened on the stream.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// A response head arrived (any status; `200` establishes the stream).
    Connected {
        /// HTTP status code.
        status: u16,
        /// Reason phrase as sent, cut to [`MAX_SERVER_TEXT_CHARS`](crate::MAX_SERVER_TEXT_CHARS) characters.
        reason: String,
    },
    /// One complete message: its exact payload bytes, without the `\r\n` (zero-copy).
    Message(Bytes),
    /// A blank keep-alive line.
    KeepAlive,
    /// The connection (or attempt) failed; the next attempt starts after `retry_in`.
    Disconnected {
        /// Why.
        error: StreamError,
        /// The backoff wait before reconnecting.
        retry_in: Duration,
    },
}

impl Clone for Stats {
    fn clone(&self) -> Self {
        let mut copy = Stats::default();
        copy.clone_from(self);
        copy
    }

    fn clone_from(&mut self, source: &Self) {
        let Stats {
            messages,
            keep_alives,
            bytes,
            attempts,
            reconnects,
            last_error,
            last_byte_at,
        } = source;
        self.messages = *messages;
        self.keep_alives = *keep_alives;
        self.bytes = *bytes;
        self.attempts = *attempts;
        self.reconnects = *reconnects;
        if self.last_error != *last_error {
            self.last_error.clone_from(last_error);
        }
        self.last_byte_at = *last_byte_at;
    }
}

/// Why a connection attempt or an established connection failed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StreamError {
    /// The TCP connection could not be made.
    ConnectFailed(io::ErrorKind),
    /// No connection within the connect timeout.
    ConnectTimeout(Duration),
    /// The TLS handshake or record layer failed (an untrusted certificate included); the
    /// error text, cut to [`MAX_SERVER_TEXT_CHARS`](crate::MAX_SERVER_TEXT_CHARS) characters.
    Tls(String),
    /// The server sent something unreadable.
    Read(ReadError),
    /// The server closed the connection (between messages).
    Closed,
    /// The server closed the connection in the middle of a message; the part received is
    /// dropped.
    ClosedMidMessage {
        /// Bytes of the unfinished message (or its length prefix) that were dropped.
        partial_bytes: usize,
    },
    /// No byte (keep-alives count) for this long.
    Stall(Duration),
    /// A non-200 status.
    Status {
        /// HTTP status code.
        status: u16,
        /// Reason phrase as sent, cut to [`MAX_SERVER_TEXT_CHARS`](crate::MAX_SERVER_TEXT_CHARS) characters.
        reason: String,
    },
    /// A `disconnect` message from the server.
    DisconnectMessage {
        /// The disconnect code (1–12).
        code: u32,
        /// The reason given, cut to [`MAX_SERVER_TEXT_CHARS`](crate::MAX_SERVER_TEXT_CHARS) characters.
        reason: String,
    },
    /// X API v2's disconnect message: an `errors` message holding an
    /// `operational-disconnect` problem. A network error: reconnect after a step.
    OperationalDisconnect {
        /// The problem's `disconnect_type`, e.g. `UpstreamOperationalDisconnect` (empty when
        /// missing).
        disconnect_type: String,
        /// The problem's `detail` (empty when missing).
        detail: String,
    },
}

impl StreamError {
    /// How backoff treats this error, or `None` when retrying cannot help.
    pub fn failure_kind(&self) -> Option<FailureKind> {
        match self {
            StreamError::Status { status, .. } => match crate::response::classify(*status) {
                StatusClass::RateLimited => Some(FailureKind::RateLimited),
                StatusClass::Fatal => None,
                StatusClass::HttpError | StatusClass::Success => Some(FailureKind::Http),
            },
            StreamError::DisconnectMessage { code, .. }
                if DisconnectCode::from_code(*code).is_final() =>
            {
                None
            }
            _ => Some(FailureKind::Network),
        }
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::ConnectFailed(kind) => write!(f, "connection failed: {kind}"),
            StreamError::ConnectTimeout(d) => write!(f, "no connection within {d:?}"),
            StreamError::Tls(e) => write!(f, "{e}"),
            StreamError::Read(e) => write!(f, "{e}"),
            StreamError::Closed => f.write_str("connection closed by the server"),
            StreamError::ClosedMidMessage { partial_bytes } => write!(
                f,
                "connection closed by the server mid-message ({partial_bytes} bytes of an \
                 unfinished message dropped)"
            ),
            StreamError::Stall(d) => write!(f, "stall detected: no data for {d:?}"),
            StreamError::Status { status, reason } => write!(f, "HTTP {status} {reason}"),
            StreamError::DisconnectMessage { code, reason } => {
                write!(f, "disconnect message code {code}: {reason}")
            }
            StreamError::OperationalDisconnect {
                disconnect_type,
                detail,
            } => write!(
                f,
                "operational-disconnect message ({disconnect_type}): {detail}"
            ),
        }
    }
}

impl std::error::Error for StreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StreamError::Read(e) => Some(e),
            _ => None,
        }
    }
}

/// How a stream ended.
///
/// It is also an [`Error`](std::error::Error) (for `?` and error reports); a
/// [`Stopped`](Outcome::Stopped) stream ended as asked ([`is_failure`](Outcome::is_failure)
/// is `false`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Outcome {
    /// [`SiteStream::disconnect`] was called.
    Stopped,
    /// A status that retrying cannot fix (401, 403, 404, 406, 413, 416).
    Fatal {
        /// HTTP status code.
        status: u16,
        /// Reason phrase as sent, cut to [`MAX_SERVER_TEXT_CHARS`](crate::MAX_SERVER_TEXT_CHARS) characters.
        reason: String,
    },
    /// A `disconnect` message with code 6 (token revoked) or 7 (admin logout).
    Revoked {
        /// The disconnect code.
        code: u32,
        /// The reason given, cut to [`MAX_SERVER_TEXT_CHARS`](crate::MAX_SERVER_TEXT_CHARS) characters.
        reason: String,
    },
    /// `retry_limit` consecutive attempts failed.
    GaveUp {
        /// How many consecutive attempts failed.
        attempts: u32,
        /// The last failure.
        last_error: StreamError,
    },
    /// The configuration cannot be used (e.g. `https://` without the `tls` feature), or the
    /// stream was run where its driver cannot work (a tokio future outside a runtime).
    InvalidConfig(String),
    /// The driver's own I/O failed (creating a poller, its event loop, starting a runtime):
    /// the stream was stopped. Not the server's fault, nor the network's.
    DriverIo {
        /// What the driver was doing.
        context: String,
        /// The error (shared, so the outcome can be cloned).
        error: Arc<io::Error>,
    },
    /// The driver (or the thread running the stream) panicked, or ended the run without an
    /// outcome.
    DriverPanicked {
        /// What is known: the panic's message, or how the run ended.
        detail: String,
    },
}

impl PartialEq for Outcome {
    /// Field by field; two [`DriverIo`](Outcome::DriverIo) errors are equal when their kind
    /// and text are.
    fn eq(&self, other: &Self) -> bool {
        use Outcome::*;
        match (self, other) {
            (Stopped, Stopped) => true,
            (
                Fatal { status, reason },
                Fatal {
                    status: s,
                    reason: r,
                },
            ) => (status, reason) == (s, r),
            (Revoked { code, reason }, Revoked { code: c, reason: r }) => (code, reason) == (c, r),
            (
                GaveUp {
                    attempts,
                    last_error,
                },
                GaveUp {
                    attempts: a,
                    last_error: l,
                },
            ) => (attempts, last_error) == (a, l),
            (InvalidConfig(why), InvalidConfig(w)) => why == w,
            (
                DriverIo { context, error },
                DriverIo {
                    context: c,
                    error: e,
                },
            ) => context == c && error.kind() == e.kind() && error.to_string() == e.to_string(),
            (DriverPanicked { detail }, DriverPanicked { detail: d }) => detail == d,
            _ => false,
        }
    }
}

impl Outcome {
    /// A [`DriverIo`](Outcome::DriverIo) outcome: `error` while the driver was doing
    /// `context`.
    pub fn driver_io(context: impl Into<String>, error: io::Error) -> Self {
        Outcome::DriverIo {
            context: context.into(),
            error: Arc::new(error),
        }
    }
}

impl std::error::Error for Outcome {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Outcome::GaveUp { last_error, .. } => Some(last_error),
            Outcome::DriverIo { error, .. } => Some(&**error),
            Outcome::Stopped
            | Outcome::Fatal { .. }
            | Outcome::Revoked { .. }
            | Outcome::InvalidConfig(_)
            | Outcome::DriverPanicked { .. } => None,
        }
    }
}

impl Outcome {
    /// Whether the stream ended because of a failure rather than a request.
    pub fn is_failure(&self) -> bool {
        !matches!(self, Outcome::Stopped)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Stopped => f.write_str("stopped on request"),
            Outcome::Fatal { status, reason } => {
                write!(f, "HTTP {status} {reason}: retrying cannot fix this status")
            }
            Outcome::Revoked { code, reason } => {
                write!(
                    f,
                    "disconnect message code {code} ({reason}): not reconnecting"
                )
            }
            Outcome::GaveUp {
                attempts,
                last_error,
            } => write!(
                f,
                "gave up after {attempts} consecutive failed attempts; last: {last_error}"
            ),
            Outcome::InvalidConfig(why) => write!(f, "invalid configuration: {why}"),
            Outcome::DriverIo { context, error } => {
                write!(f, "the driver failed {context}: {error}")
            }
            Outcome::DriverPanicked { detail } => write!(f, "the driver panicked: {detail}"),
        }
    }
}

/// Live counters of one stream.
///
/// `clone_from` keeps the copy's `last_error` when it is unchanged: a driver publishes the
/// stats after every drain, and cloning the error (text, in most variants) each time was a
/// heap allocation per read.
#[derive(Debug, Default, PartialEq)]
pub struct Stats {
    /// Messages handed out.
    pub messages: u64,
    /// Keep-alive lines seen.
    pub keep_alives: u64,
    /// Bytes received from the connection (before TLS and decoding).
    pub bytes: u64,
    /// Connection attempts started.
    pub attempts: u64,
    /// Reconnects scheduled after a failure.
    pub reconnects: u64,
    /// The last failure, if any.
    pub last_error: Option<StreamError>,
    /// When the last byte arrived.
    pub last_byte_at: Option<Instant>,
}

/// Bytes handed to [`SiteStream::handle_input`] (borrowed) or
/// [`SiteStream::handle_input_bytes`] (owned).
enum Input<'a> {
    Borrowed(&'a [u8]),
    Owned(Bytes),
}

#[derive(Debug)]
struct Connection {
    stall_deadline: Instant,
    reader: ResponseReader,
    #[cfg(feature = "tls")]
    tls: Option<TlsSession>,
    /// A `200` head arrived.
    established: bool,
    /// The connection earned trust (a real message, or `trust_after` up).
    trusted: bool,
    /// When the connection earns trust by staying up, until it has.
    trust_at: Option<Instant>,
    /// When the 420/429 sequence is forgotten by staying up, until it has been.
    rate_limit_reset_at: Option<Instant>,
    /// A disconnect message (v1.1 `disconnect` or v2 `operational-disconnect`) was handed
    /// out: the connection ends with this error once the frames that arrived with it are out.
    pending_disconnect: Option<StreamError>,
    eof: bool,
    /// When the transport came up, and the wall-clock seconds the driver gave then: the
    /// core's only notion of wall-clock time, for `x-rate-limit-reset`.
    connected_at: Instant,
    connected_unix_secs: u64,
}

impl Connection {
    /// The earliest of the connection's timers.
    fn deadline(&self) -> Instant {
        [self.trust_at, self.rate_limit_reset_at]
            .into_iter()
            .flatten()
            .fold(self.stall_deadline, Instant::min)
    }
}

#[derive(Debug)]
enum State {
    Idle,
    Connecting { deadline: Instant },
    Open(Box<Connection>),
    Backoff { until: Instant },
    Finished(Outcome),
}

/// The reconnecting Site Streams client, without I/O.
///
/// The stream owns no socket and reads no clock. Its methods fall into four families, as in
/// quinn-proto's `Connection`:
///
/// - **getters** (`&self`): [`running`](Self::running),
///   [`retry_ok`](Self::retry_ok), [`stats`](Self::stats), …
/// - **`handle_*`** — what happened: the transport connected or failed, bytes arrived, the
///   peer closed, a deadline passed. Each takes the current `now`.
/// - **commands**: [`disconnect`](Self::disconnect),
///   [`reset_throttles`](Self::reset_throttles) and
///   [`retry_after_giving_up`](Self::retry_after_giving_up).
/// - **[`poll_action`](Self::poll_action)** — what to do next.
///
/// ## The drain contract
/// After creating the stream and after **every** `handle_*` call or command, call
/// `poll_action(now)` until it returns [`Action::Wait`] or [`Action::Finished`]; carry out
/// each action in order. Then wait until the deadline, new bytes, or a command — whichever
/// comes first — and hand that in. A driver loop is therefore:
///
/// ```text
/// loop {
///     match stream.poll_action(now) {
///         Action::Connect { host, port, tls: _ } => start connecting (then handle_connected
///                                                   or handle_connect_failed)
///         Action::Transmit(bytes)  => write all of it to the socket
///         Action::Event(event)     => hand it to the user (Message → the Parser)
///         Action::Close            => drop the socket
///         Action::Wait(deadline)   => wait for bytes (handle_input / handle_eof), the deadline
///                                     (handle_timeout) or a command (disconnect)
///         Action::Finished(outcome) => stop
///     }
/// }
/// ```
/// `poll_action` fires any deadline that is already due, so `Wait(deadline)` always lies in
/// the future of the `now` it was given, and a spurious `handle_timeout` is a no-op.
///
/// ## Reconnect rules
/// Network errors (refused, reset, timeout, TLS, a drop, a stall, a bad frame, bytes after
/// the end of the body, a `disconnect` message or X API v2's `operational-disconnect`
/// message) back off linearly, HTTP errors exponentially, `420`/`429` from a minute,
/// doubling (see [`BackoffPolicy`](crate::BackoffPolicy)) — and, when the head carries
/// `x-rate-limit-reset` (unix seconds), at least until then, reckoned from the `unix_secs`
/// given to [`handle_connected`](Self::handle_connected) (at most
/// [`MAX_RATE_LIMIT_RESET_WAIT`]).
/// Statuses that retrying cannot fix (401, 403, 404, 406, 413, 416) and `disconnect` codes 6
/// and 7 finish the stream at once.
///
/// A `200` head alone earns nothing. A connection **earns trust** when it delivers a complete
/// message that is neither a keep-alive nor a `disconnect` message, or when it has stayed up
/// for the config's [`trust_after`](crate::Config::trust_after) (30 s by default; keep-alives
/// keep it up) since its `200` head. Earning trust resets the failure count
/// ([`error_count`](Self::error_count)) and the network and HTTP backoff sequences. An
/// attempt that ends before earning trust — a `200` that drops at once, sends only a
/// `disconnect` message, or an oversized frame — is a failed attempt of its kind: it backs
/// off along its sequence and counts toward `retry_limit`. So a server that answers `200`
/// and hangs up gets the growing linear backoff, not four reconnects a second.
///
/// The 420/429 sequence survives trust: it starts over only once a connection has stayed up
/// for [`rate_limit_reset_after`](crate::Config::rate_limit_reset_after) (10 minutes by
/// default), so `420, 200-then-drop, 420` waits a minute, then two. Both periods are timers
/// of the open connection: [`deadline`](Self::deadline) includes them, so
/// `error_count()` is exact while a connection is healthy.
/// [`reset_throttles`](Self::reset_throttles) forgets everything.
///
/// A stream that reached its `retry_limit` finishes [`Outcome::GaveUp`]. Two ways lead out:
/// [`reset_throttles`](Self::reset_throttles) forgets the backoff and connects at once
/// (for a user who asks), while
/// [`retry_after_giving_up`](Self::retry_after_giving_up) starts the failure count over
/// but keeps the backoff, so the first attempt waits the next delay the stream had earned
/// (for a supervisor such as a monitor, which must not turn giving up into a reconnect storm).
///
/// ## Nothing dropped in silence
/// Frames that arrived in the same input as a `disconnect` message are handed out before the
/// disconnect takes effect. Bytes after the end of a response body are a
/// [`ReadError::AfterBody`] error (and a reconnect). A close in the middle of a message is
/// reported as [`StreamError::ClosedMidMessage`] with the byte count dropped. Every piece of
/// server text the stream keeps (a reason phrase, a disconnect reason, a TLS error) is cut to
/// [`MAX_SERVER_TEXT_CHARS`](crate::MAX_SERVER_TEXT_CHARS) characters when it is taken in.
///
///
/// `Debug` shows no secret: the config redacts the credentials, the last request and queued
/// transmissions (which carry the OAuth signature) show only their length, and the nonce
/// generator is left out.
pub struct SiteStream {
    config: Config,
    backoff: Backoff,
    rng: ChaCha8Rng,
    #[cfg(feature = "tls")]
    tls: Option<TlsContext>,
    state: State,
    queue: VecDeque<Action>,
    error_count: u32,
    disconnect_issued: bool,
    stream_id: Option<String>,
    last_request: Option<Bytes>,
    stats: Stats,
}

/// How `Debug` shows a signed request: its length only.
struct SignedRequest(usize);

impl fmt::Debug for SignedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes, signed: redacted>", self.0)
    }
}

impl fmt::Debug for SiteStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("SiteStream");
        s.field("config", &self.config)
            .field("backoff", &self.backoff)
            .field("state", &self.state)
            .field("queue", &self.queue)
            .field("error_count", &self.error_count)
            .field("disconnect_issued", &self.disconnect_issued)
            .field("stream_id", &self.stream_id)
            .field(
                "last_request",
                &self.last_request.as_ref().map(|r| SignedRequest(r.len())),
            )
            .field("stats", &self.stats);
        #[cfg(feature = "tls")]
        s.field("tls", &self.tls.as_ref().map(|_| "<TLS context>"));
        s.finish_non_exhaustive()
    }
}

impl SiteStream {
    /// A stream that will connect on the first [`poll_action`](Self::poll_action).
    ///
    /// The OAuth nonces come from the config's [`rng_seed`](Config::rng_seed); without one,
    /// the seed is drawn from the operating system (as quinn-proto does), so two streams —
    /// in one process or two — never sign with the same nonces.
    pub fn new(config: Config) -> Self {
        let backoff = Backoff::new(config.backoff().clone(), config.jitter());
        let seed = config.rng_seed().unwrap_or_else(os_seed);
        let rng = ChaCha8Rng::seed_from_u64(seed);
        Self {
            config,
            backoff,
            rng,
            #[cfg(feature = "tls")]
            tls: None,
            state: State::Idle,
            queue: VecDeque::new(),
            error_count: 0,
            disconnect_issued: false,
            stream_id: None,
            last_request: None,
            stats: Stats::default(),
        }
    }

    // ----- getters -----

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The endpoint URL, without the query.
    pub fn url(&self) -> String {
        self.config.url()
    }

    /// Whether the stream has not finished (connecting, streaming or backing off).
    pub fn running(&self) -> bool {
        !matches!(self.state, State::Finished(_))
    }

    /// Whether [`disconnect`](Self::disconnect) was called (and not reset since).
    pub fn disconnect_issued(&self) -> bool {
        self.disconnect_issued
    }

    /// Consecutive failed attempts since the last connection that earned trust: attempts
    /// that got no `200` head, and `200` connections that ended before delivering a real
    /// message or staying up for [`trust_after`](Config::trust_after). Back to 0 the moment
    /// a connection earns trust (see the [type docs](SiteStream)).
    pub fn error_count(&self) -> u32 {
        self.error_count
    }

    /// The retry limit, if any.
    pub fn retry_limit(&self) -> Option<u32> {
        self.config.retry_limit()
    }

    /// Whether another attempt is allowed by the retry limit.
    pub fn retry_ok(&self) -> bool {
        self.config
            .retry_limit()
            .is_none_or(|limit| self.error_count < limit)
    }

    /// The next HTTP-error wait (for the squared policy, the current retry time).
    pub fn retry_time(&self) -> Duration {
        self.backoff.retry_time()
    }

    /// The connect timeout.
    pub fn timeout(&self) -> Duration {
        self.config.connect_timeout()
    }

    /// The control stream id announced by the current connection, if any.
    pub fn stream_id(&self) -> Option<&str> {
        self.stream_id.as_deref()
    }

    /// The last signed request sent. It carries the
    /// OAuth signature: do not log it.
    pub fn last_request(&self) -> Option<&Bytes> {
        self.last_request.as_ref()
    }

    /// Live counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// How the stream ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.state {
            State::Finished(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// Whether the current connection got a `200` head.
    pub fn is_established(&self) -> bool {
        matches!(&self.state, State::Open(c) if c.established)
    }

    /// Whether the current connection earned trust: it delivered a real message or stayed
    /// up for [`trust_after`](Config::trust_after) after its `200` head.
    pub fn is_trusted(&self) -> bool {
        matches!(&self.state, State::Open(c) if c.trusted)
    }

    /// Whether the connection is healthy: true while the stream is starting,
    /// streaming, reconnecting or was stopped on request; false once it finished because of
    /// a failure (gave up, fatal status, revoked).
    pub fn connection_healthy(&self) -> bool {
        !matches!(&self.state, State::Finished(o) if o.is_failure())
    }

    /// Bytes buffered by the current connection's reader.
    pub fn buffered(&self) -> usize {
        match &self.state {
            State::Open(c) => c.reader.buffered(),
            _ => 0,
        }
    }

    // ----- commands -----

    /// Stops the stream: closes any connection and finishes with [`Outcome::Stopped`].
    pub fn disconnect(&mut self) {
        self.disconnect_issued = true;
        if matches!(self.state, State::Finished(_)) {
            return;
        }
        self.queue.clear();
        if matches!(self.state, State::Open(_) | State::Connecting { .. }) {
            self.queue.push_back(Action::Close);
        }
        self.stream_id = None;
        self.state = State::Finished(Outcome::Stopped);
    }

    /// Clears the failure count, every backoff and the
    /// `disconnect_issued` flag. A finished or backing-off stream connects again at the next
    /// `poll_action`; an open connection is left alone (its buffers hold data in flight).
    /// To try again after giving up without forgetting the backoff, use
    /// [`retry_after_giving_up`](Self::retry_after_giving_up).
    pub fn reset_throttles(&mut self) {
        self.error_count = 0;
        self.backoff.reset();
        self.disconnect_issued = false;
        if matches!(self.state, State::Finished(_) | State::Backoff { .. }) {
            self.state = State::Idle;
        }
    }

    /// A stream that gave up tries again: the failure count starts over, the backoff
    /// sequences are kept, and the first attempt waits the next delay of its last failure's
    /// kind, from `now` — the wait it had earned, as if the retry limit had not been reached.
    /// The wait is announced as an [`StreamEvent::Disconnected`] with that last failure (giving up
    /// announced none) and counted in [`Stats::reconnects`]. A `disconnect` that came after
    /// the stream had given up is forgotten, as [`reset_throttles`](Self::reset_throttles)
    /// forgets it.
    ///
    /// Returns false (and changes nothing) unless the outcome is [`Outcome::GaveUp`]: a
    /// stream that finished [`Fatal`](Outcome::Fatal), [`Revoked`](Outcome::Revoked),
    /// [`Stopped`](Outcome::Stopped) or with an invalid config stays as it is, and so does
    /// one that has not finished.
    pub fn retry_after_giving_up(&mut self, now: Instant) -> bool {
        let State::Finished(Outcome::GaveUp { last_error, .. }) = &self.state else {
            return false;
        };
        // Giving up needs a failure that backoff knows (see `fail`).
        let Some(kind) = last_error.failure_kind() else {
            return false;
        };
        let error = last_error.clone();
        self.error_count = 0;
        self.disconnect_issued = false;
        let retry_in = self.backoff.next_delay(kind);
        self.stats.reconnects += 1;
        self.queue
            .push_back(Action::Event(StreamEvent::Disconnected { error, retry_in }));
        self.state = State::Backoff {
            until: later(now, retry_in),
        };
        true
    }

    // ----- inputs -----

    /// The transport is up: the request is signed (fresh nonce, `unix_secs` as timestamp)
    /// and queued for transmission. Ignored unless a `Connect` is outstanding.
    pub fn handle_connected(&mut self, now: Instant, unix_secs: u64) {
        if !matches!(self.state, State::Connecting { .. }) {
            return;
        }
        let nonce = make_nonce(&mut self.rng);
        let request = Bytes::from(stream_request(&self.config, unix_secs, &nonce));
        self.last_request = Some(request.clone());
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut conn = Box::new(Connection {
            stall_deadline: later(now, self.config.stall_timeout()),
            reader: ResponseReader::new(self.config.framing(), self.config.max_message_bytes()),
            #[cfg(feature = "tls")]
            tls: None,
            established: false,
            trusted: false,
            trust_at: None,
            rate_limit_reset_at: None,
            pending_disconnect: None,
            eof: false,
            connected_at: now,
            connected_unix_secs: unix_secs,
        });
        if self.config.endpoint().tls {
            #[cfg(feature = "tls")]
            {
                let session = match &self.tls {
                    Some(ctx) => ctx.connect(&self.config.endpoint().host, unix_secs),
                    None => Err("TLS context missing".into()),
                };
                match session {
                    Ok(mut session) => {
                        session.write_plaintext(&request);
                        let hello = session.take_transmit();
                        conn.tls = Some(session);
                        self.state = State::Open(conn);
                        self.queue.push_back(Action::Transmit(Bytes::from(hello)));
                    }
                    Err(e) => {
                        self.state = State::Open(conn);
                        self.fail(now, StreamError::Tls(bounded_text(&e)));
                    }
                }
                return;
            }
        }
        self.state = State::Open(conn);
        self.queue.push_back(Action::Transmit(request));
    }

    /// The connection attempt failed before the transport was up.
    pub fn handle_connect_failed(&mut self, now: Instant, error: io::ErrorKind) {
        if matches!(self.state, State::Connecting { .. }) {
            self.fail(now, StreamError::ConnectFailed(error));
        }
    }

    /// Bytes arrived on the connection. Ignored unless a connection is open.
    ///
    /// The plaintext is copied once; [`handle_input_bytes`](Self::handle_input_bytes) takes
    /// owned [`Bytes`] instead and hands messages out as slices of them.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        self.input(now, Input::Borrowed(bytes));
    }

    /// Bytes arrived on the connection, as [`Bytes`] the stream may keep: on a plain
    /// connection, each [`StreamEvent::Message`] that lies inside them (and inside one chunk) is a
    /// slice of them, not a copy — and keeps their memory alive while it lives. (A driver
    /// reads into a `BytesMut` block and hands over `block.split_to(n).freeze()`.) Over TLS,
    /// the ciphertext is only read, and messages are sliced from the decrypted plaintext.
    /// Ignored unless a connection is open.
    pub fn handle_input_bytes(&mut self, now: Instant, bytes: Bytes) {
        self.input(now, Input::Owned(bytes));
    }

    fn input(&mut self, now: Instant, input: Input<'_>) {
        let State::Open(conn) = &mut self.state else {
            return;
        };
        if conn.pending_disconnect.is_some() {
            // The connection is over; only the frames already in hand still go out.
            return;
        }
        let bytes: &[u8] = match &input {
            Input::Borrowed(bytes) => bytes,
            Input::Owned(bytes) => bytes,
        };
        self.stats.bytes += bytes.len() as u64;
        self.stats.last_byte_at = Some(now);
        conn.stall_deadline = later(now, self.config.stall_timeout());
        let mut head = None;
        let mut error = None;
        let conn = &mut **conn;
        let reader = &mut conn.reader;
        let mut push = |plain: Input<'_>| -> bool {
            let pushed = match plain {
                Input::Borrowed(plain) => reader.push(plain),
                Input::Owned(plain) => reader.push_bytes(plain),
            };
            match pushed {
                Ok(Some(h)) => {
                    let ok = h.status == 200;
                    head = Some(h);
                    ok
                }
                Ok(None) => true,
                Err(e) => {
                    error = Some(StreamError::Read(e));
                    false
                }
            }
        };
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut conn.tls {
            let mut push_plain = |plain: Bytes| push(Input::Owned(plain));
            if let Err(e) = tls.read_ciphertext_bytes(bytes, &mut push_plain) {
                error = error.or(Some(StreamError::Tls(bounded_text(&e))));
            }
            let out = tls.take_transmit();
            if !out.is_empty() {
                self.queue.push_back(Action::Transmit(Bytes::from(out)));
            }
        } else {
            push(input);
        }
        #[cfg(not(feature = "tls"))]
        push(input);

        if let Some(head) = head {
            self.queue.push_back(Action::Event(StreamEvent::Connected {
                status: head.status,
                reason: head.reason.clone(),
            }));
            if head.status == 200 {
                // A `200` head alone earns nothing: the connection earns trust by a real
                // message or by staying up (see the module docs).
                conn.established = true;
                conn.trust_at = Some(later(now, self.config.trust_after()));
                conn.rate_limit_reset_at = Some(later(now, self.config.rate_limit_reset_after()));
            } else {
                let floor = rate_limit_reset_wait(&head, now, conn);
                self.fail_at_least(
                    now,
                    StreamError::Status {
                        status: head.status,
                        reason: head.reason,
                    },
                    floor,
                );
                return;
            }
        }
        if let Some(error) = error {
            self.fail(now, error);
        }
    }

    /// The peer closed the connection. Frames already received are still handed out; then
    /// the drop is handled as a network error.
    pub fn handle_eof(&mut self, _now: Instant) {
        if let State::Open(conn) = &mut self.state {
            conn.eof = true;
        }
    }

    /// A deadline may have passed. Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::Connecting { deadline } if *deadline <= now => {
                self.queue.push_back(Action::Close);
                let timeout = self.config.connect_timeout();
                self.fail(now, StreamError::ConnectTimeout(timeout));
            }
            State::Open(conn) if conn.stall_deadline <= now => {
                let stall = self.config.stall_timeout();
                self.fail(now, StreamError::Stall(stall));
            }
            State::Open(conn) => {
                if conn.rate_limit_reset_at.is_some_and(|at| at <= now) {
                    conn.rate_limit_reset_at = None;
                    self.backoff.forget_rate_limit();
                }
                if conn.trust_at.is_some_and(|at| at <= now) {
                    self.earn_trust();
                }
            }
            State::Backoff { until } if *until <= now => self.state = State::Idle,
            _ => {}
        }
    }

    // ----- output -----

    /// The next thing to do. See the drain contract in the [type docs](SiteStream).
    pub fn poll_action(&mut self, now: Instant) -> Action {
        loop {
            if let Some(action) = self.queue.pop_front() {
                return action;
            }
            // Frames already in hand go out before any deadline is looked at.
            if let State::Open(conn) = &mut self.state {
                match conn.reader.poll_frame() {
                    Ok(Some(Frame::Message(message))) => {
                        self.stats.messages += 1;
                        self.inspect(&message);
                        return Action::Event(StreamEvent::Message(message));
                    }
                    Ok(Some(Frame::KeepAlive)) => {
                        self.stats.keep_alives += 1;
                        return Action::Event(StreamEvent::KeepAlive);
                    }
                    // Every frame that came with the disconnect message is out (or the body
                    // broke after it): now the disconnect takes effect.
                    Ok(None) | Err(_) if conn.pending_disconnect.is_some() => {
                        let error = conn
                            .pending_disconnect
                            .take()
                            .unwrap_or(StreamError::Closed);
                        self.fail(now, error);
                        continue;
                    }
                    Ok(None) if conn.eof => {
                        let error = match conn.reader.partial_message_bytes() {
                            0 => StreamError::Closed,
                            partial_bytes => StreamError::ClosedMidMessage { partial_bytes },
                        };
                        self.fail(now, error);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.fail(now, StreamError::Read(e));
                        continue;
                    }
                }
            }
            if self.deadline().is_some_and(|d| d <= now) {
                // A due deadline always moves the state on (to backoff, a new attempt or
                // the end) or clears its timer (trust, the rate-limit reset), so this loop
                // makes progress.
                self.handle_timeout(now);
                continue;
            }
            return match &self.state {
                State::Idle => self.start_attempt(now),
                State::Connecting { deadline } => Action::Wait(*deadline),
                State::Open(conn) => Action::Wait(conn.deadline()),
                State::Backoff { until } => Action::Wait(*until),
                State::Finished(outcome) => Action::Finished(outcome.clone()),
            };
        }
    }

    /// The next deadline, if the state has one: the connect timeout, the open connection's
    /// stall timer or trust timers, or the end of a backoff.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Connecting { deadline } => Some(*deadline),
            State::Open(conn) => Some(conn.deadline()),
            State::Backoff { until } => Some(*until),
            State::Idle | State::Finished(_) => None,
        }
    }

    fn start_attempt(&mut self, now: Instant) -> Action {
        let endpoint = self.config.endpoint();
        if endpoint.tls {
            #[cfg(feature = "tls")]
            if self.tls.is_none() {
                match TlsContext::new(self.config.extra_root_certs_pem()) {
                    Ok(ctx) => self.tls = Some(ctx),
                    Err(e) => {
                        self.state = State::Finished(Outcome::InvalidConfig(e.to_string()));
                        return self.poll_action(now);
                    }
                }
            }
            #[cfg(not(feature = "tls"))]
            {
                self.state = State::Finished(Outcome::InvalidConfig(
                    "https:// needs sitebucket-proto's `tls` feature".into(),
                ));
                return self.poll_action(now);
            }
        }
        let endpoint = self.config.endpoint();
        let action = Action::Connect {
            host: endpoint
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: endpoint.port,
            tls: endpoint.tls,
        };
        self.stats.attempts += 1;
        self.state = State::Connecting {
            deadline: later(now, self.config.connect_timeout()),
        };
        action
    }

    /// Looks at a message for what the core must act on: control, disconnect, and trust.
    /// Messages that came after a `disconnect` message change nothing.
    fn inspect(&mut self, message: &[u8]) {
        let State::Open(conn) = &mut self.state else {
            return;
        };
        if conn.pending_disconnect.is_some() {
            return;
        }
        match stream_signal(message) {
            Some(StreamSignal::Disconnect(d)) => {
                conn.pending_disconnect = Some(StreamError::DisconnectMessage {
                    code: d.code.code(),
                    reason: bounded_text(&d.reason),
                });
            }
            Some(StreamSignal::OperationalDisconnect(problem)) => {
                conn.pending_disconnect = Some(StreamError::OperationalDisconnect {
                    disconnect_type: bounded_text(problem.disconnect_type.as_deref().unwrap_or("")),
                    detail: bounded_text(problem.detail.as_deref().unwrap_or("")),
                });
            }
            Some(StreamSignal::Control(control)) => {
                // An id that could not go in a control path is not kept.
                self.stream_id = control.stream_id().map(str::to_owned);
                self.earn_trust();
            }
            None => self.earn_trust(),
        }
    }

    /// The open connection earned trust: the failure count and the network and HTTP
    /// sequences start over (the 420/429 one is kept).
    fn earn_trust(&mut self) {
        let State::Open(conn) = &mut self.state else {
            return;
        };
        if !conn.established || conn.trusted {
            return;
        }
        conn.trusted = true;
        conn.trust_at = None;
        self.error_count = 0;
        self.backoff.trusted();
    }

    /// The current attempt or connection failed: close it, then finish or back off.
    fn fail(&mut self, now: Instant, error: StreamError) {
        self.fail_at_least(now, error, Duration::ZERO);
    }

    /// As [`fail`](Self::fail), but a backoff waits at least `floor` (a rate limit's reset
    /// time).
    fn fail_at_least(&mut self, now: Instant, error: StreamError, floor: Duration) {
        let trusted = match &self.state {
            State::Open(conn) => {
                self.queue.push_back(Action::Close);
                conn.trusted
            }
            _ => false,
        };
        self.stream_id = None;
        self.stats.last_error = Some(error.clone());
        let Some(kind) = error.failure_kind() else {
            let outcome = match error {
                StreamError::Status { status, reason } => Outcome::Fatal { status, reason },
                StreamError::DisconnectMessage { code, reason } => {
                    Outcome::Revoked { code, reason }
                }
                other => Outcome::InvalidConfig(other.to_string()),
            };
            self.state = State::Finished(outcome);
            return;
        };
        if !trusted {
            self.error_count = self.error_count.saturating_add(1);
        }
        if !self.retry_ok() {
            self.state = State::Finished(Outcome::GaveUp {
                attempts: self.error_count,
                last_error: error,
            });
            return;
        }
        let retry_in = self.backoff.next_delay(kind).max(floor);
        self.stats.reconnects += 1;
        self.queue
            .push_back(Action::Event(StreamEvent::Disconnected { error, retry_in }));
        self.state = State::Backoff {
            until: later(now, retry_in),
        };
    }
}

/// The longest wait an `x-rate-limit-reset` header can impose: one hour. X's rate-limit
/// windows are 15 minutes; a reset further away is taken as this, so a wrong clock or a
/// hostile server cannot park a stream for days.
pub const MAX_RATE_LIMIT_RESET_WAIT: Duration = Duration::from_secs(3600);

/// How long a `420`/`429` head asks to wait: until its `x-rate-limit-reset` (unix seconds),
/// reckoned from the wall-clock seconds the driver gave at connect plus the time since, at
/// most [`MAX_RATE_LIMIT_RESET_WAIT`]. Zero when the header is missing, unreadable or past.
fn rate_limit_reset_wait(
    head: &crate::response::ResponseHead,
    now: Instant,
    conn: &Connection,
) -> Duration {
    if head.class() != StatusClass::RateLimited {
        return Duration::ZERO;
    }
    let Some(reset) = head
        .header("x-rate-limit-reset")
        .and_then(|v| v.trim().parse::<u64>().ok())
    else {
        return Duration::ZERO;
    };
    let elapsed = now.saturating_duration_since(conn.connected_at);
    // The wall clock now, to the millisecond; the reset is a whole second.
    let now_unix_ms = u128::from(conn.connected_unix_secs) * 1000 + elapsed.as_millis();
    let reset_ms = u128::from(reset) * 1000;
    let wait_ms = reset_ms.saturating_sub(now_unix_ms);
    let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(u64::MAX));
    wait.min(MAX_RATE_LIMIT_RESET_WAIT)
}

/// `now + duration`, without the panic of `Instant + Duration` on overflow: the latest
/// instant the platform can represent on the way there instead. (A built [`Config`] holds no
/// duration over [`MAX_DURATION`](crate::config::MAX_DURATION), so in practice this is a
/// plain addition.)
pub(crate) fn later(now: Instant, duration: Duration) -> Instant {
    let mut step = duration;
    let mut at = now;
    // Add as much as fits, halving what does not: at most ~64 halvings per bit of the
    // duration, and always in the future of `now` unless nothing at all fits.
    while !step.is_zero() {
        match at.checked_add(step) {
            Some(next) => {
                at = next;
                if at.saturating_duration_since(now) >= duration {
                    break;
                }
            }
            None => step /= 2,
        }
    }
    at
}

/// A nonce seed from the operating system: the one place the core draws OS randomness, for
/// streams and control calls built without an explicit `rng_seed`.
pub(crate) fn os_seed() -> u64 {
    let mut bytes = [0u8; 8];
    #[allow(clippy::disallowed_methods)] // The allowed use of OS randomness, in one place.
    match getrandom::getrandom(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        // No OS generator: the standard library's randomly keyed hasher (which falls back
        // on its own sources) still differs between processes.
        Err(_) => {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        }
    }
}

#[cfg(test)]
mod tests;
