//! Control streams: changing who a live Site Stream follows, without reconnecting.
//!
//! A Site Streams connection announces its control stream with
//! `{"control":{"control_uri":"/1.1/site/c/<stream_id>"}}`. Signed requests to that URI then
//! add users to the live connection (up to [`MAX_USERS_PER_STREAM`] in all, at most
//! [`MAX_USERS_PER_REQUEST`] per request), remove them, report what it follows, and page
//! through a followed user's friends:
//!
//! | request | method and path |
//! |---|---|
//! | [`ControlRequest::add_users`] | `POST /1.1/site/c/:stream_id/add_user.json` with `user_id=1,2,3` |
//! | [`ControlRequest::remove_users`] | `POST /1.1/site/c/:stream_id/remove_user.json` with `user_id=1,2,3` |
//! | [`ControlRequest::info`] | `GET /1.1/site/c/:stream_id/info.json` |
//! | [`ControlRequest::friends_ids`] | `POST /1.1/site/c/:stream_id/friends/ids.json` with `user_id` and `cursor` |
//! | [`ControlRequest::rules_list`] (X API v2) | `GET /2/tweets/search/stream/rules` |
//! | [`ControlRequest::rules_add`] / [`rules_delete`](ControlRequest::rules_delete) (X API v2) | `POST /2/tweets/search/stream/rules` with JSON, `?dry_run=true` to only check |
//!
//! The v2 rules calls are one-shot calls of the same kind (a Bearer token signs them in, and
//! they need no control stream id), so every driver that runs control calls runs them too.
//!
//! Everything here is sans-IO, like the rest of the crate:
//!
//! - [`ControlRequest`] builds and signs the request bytes; [`decode_info`] and
//!   [`decode_friends_ids`] read the answers into typed values.
//! - [`ControlCall`] is one request as a state machine with the same shape as
//!   [`SiteStream`](crate::SiteStream): `poll_action` says connect, transmit, close or wait,
//!   `handle_*` take what happened, and the call ends with
//!   [`ControlAction::Finished`] holding the typed answer or a [`ControlError`] saying what
//!   went wrong. TLS is done inside, as for the stream; time is passed in; a deadline bounds
//!   the whole call. Each call has its own connection, never the stream's.
//! - [`ControlPacer`] keeps control requests under Twitter's 25 per second.
//!
//! The stream id comes from the live stream ([`SiteStream::stream_id`](crate::SiteStream::stream_id)),
//! which forgets it the moment its connection drops: a call made without one fails with
//! [`ControlError::NotAnnounced`] instead of going to a stale id.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sitebucket_proto::control::{ControlAction, ControlCall, ControlRequest};
//! use sitebucket_proto::{Config, Credentials};
//!
//! let config = Config::builder([12], Credentials::new("ck", "cs", "t", "ts"))
//!     .url("http://127.0.0.1:8080/1.1/site.json")
//!     .build()
//!     .unwrap();
//! let request = ControlRequest::add_users(&[14, 15]).unwrap();
//! let mut call = ControlCall::for_stream(&config, Some("1_23_abc"), request);
//! let now = Instant::now();
//! assert!(matches!(call.poll_action(now), ControlAction::Connect { port: 8080, .. }));
//! call.handle_connected(now, 1_700_000_000);
//! let ControlAction::Transmit(bytes) = call.poll_action(now) else { panic!() };
//! assert!(bytes.starts_with(b"POST /1.1/site/c/1_23_abc/add_user.json HTTP/1.1\r\n"));
//! assert!(bytes.ends_with(b"\r\n\r\nuser_id=14%2C15"));
//! call.handle_input(now, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
//! assert_eq!(call.poll_action(now), ControlAction::Close);
//! assert!(matches!(call.poll_action(now), ControlAction::Finished(Ok(_))));
//! ```

mod call;
mod pacer;
mod request;
mod response;
mod rules;

use std::fmt;
use std::io;
use std::time::Duration;

pub use call::{ControlAction, ControlCall};
pub use pacer::ControlPacer;
pub use request::{ControlKind, ControlRequest};
pub use response::{
    decode_friends_ids, decode_info, ControlResponse, FriendsPage, InfoUser, StreamInfo,
    StreamOptions, UserFollows,
};
pub use rules::{decode_rules, NewRule, Rule, RulesResponse, RulesSummary};

use crate::pipeline::ReadError;

/// Most user ids one `add_user.json` or `remove_user.json` request may carry.
pub const MAX_USERS_PER_REQUEST: usize = 100;

/// Most users one Site Streams connection may follow, control additions included.
pub const MAX_USERS_PER_STREAM: usize = 1000;

/// Twitter's limit on control requests per second; [`ControlPacer`] stays under it.
pub const CONTROL_REQUESTS_PER_SECOND: u32 = 25;

/// How long a control call may take, connect to last byte, unless told otherwise.
pub const DEFAULT_CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest control response body accepted (after decompression): 1 MiB.
pub const MAX_CONTROL_BODY: usize = 1024 * 1024;

/// The `cursor` of the first page of `friends/ids.json`.
pub const FIRST_CURSOR: i64 = -1;

/// Longest stream id accepted from a control URI.
pub const MAX_STREAM_ID_BYTES: usize = 256;

/// The stream id in a control URI: the path segment after `/site/c/` (`/1.1/site/c/<id>`,
/// also the older `/2b/site/c/<id>`), or `None` when the URI has another shape or the id is
/// not usable (see [`is_valid_stream_id`]).
///
/// ```
/// use sitebucket_proto::control::stream_id_from_uri;
/// assert_eq!(stream_id_from_uri("/1.1/site/c/01_225167_334389048B"), Some("01_225167_334389048B"));
/// assert_eq!(stream_id_from_uri("/2b/site/c/abc/info.json"), Some("abc"));
/// assert_eq!(stream_id_from_uri("/1.1/site/c/"), None);
/// assert_eq!(stream_id_from_uri("/elsewhere"), None);
/// ```
pub fn stream_id_from_uri(uri: &str) -> Option<&str> {
    const MARKER: &str = "/site/c/";
    let start = uri.find(MARKER)?.checked_add(MARKER.len())?;
    let rest = uri.get(start..)?;
    let id = rest.split(['/', '?', '#']).next()?;
    is_valid_stream_id(id).then_some(id)
}

/// Whether `id` can be put in a control path as it is: 1 to [`MAX_STREAM_ID_BYTES`] bytes of
/// ASCII letters, digits, `_`, `-`, `.` and `~`, and not `.` or `..` (which would climb the
/// path).
pub fn is_valid_stream_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_STREAM_ID_BYTES
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'~'))
}

/// The path of a control endpoint beside the stream at `stream_path`:
/// `/1.1/site.json` → `/1.1/site/c/<stream_id>/<leaf>` (and `/2b/site.json` →
/// `/2b/site/c/…`). A stream path without `.json` gets `/c/…` appended.
pub fn control_path(stream_path: &str, stream_id: &str, leaf: &str) -> String {
    let base = stream_path.trim_end_matches('/');
    let base = base.strip_suffix(".json").unwrap_or(base);
    format!("{base}/c/{stream_id}/{leaf}")
}

/// Why a control request failed. The `Display` text says what was wrong and, where it
/// helps, what to do.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ControlError {
    /// The stream has not announced a control stream id yet, or its connection dropped and
    /// the id was forgotten: there is no live stream to send the request to.
    NotAnnounced,
    /// The server does not know this stream id (`404`): the connection it named is gone.
    UnknownStream {
        /// The stream id the request went to.
        stream_id: String,
    },
    /// A stream id that cannot be used in a path.
    InvalidStreamId {
        /// The id as given.
        stream_id: String,
    },
    /// An add or remove request with no user id.
    NoUsers,
    /// A rules add or delete with no rule or id.
    NoRules,
    /// More user ids in one request than [`MAX_USERS_PER_REQUEST`].
    TooManyUsersPerRequest {
        /// How many distinct ids were given.
        given: usize,
    },
    /// The stream would follow more than [`MAX_USERS_PER_STREAM`] users.
    OverStreamLimit {
        /// How many users it would follow.
        would_follow: usize,
    },
    /// The server answered with a status other than `200` (and not `404`).
    Http {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
        /// The server's error message (from `{"errors":[{"message":…}]}`) or the start of
        /// the body, if any.
        detail: String,
    },
    /// The TCP connection could not be made.
    Connect(io::ErrorKind),
    /// The whole call (connect, request, response) took longer than this.
    Timeout(Duration),
    /// The TLS handshake or record layer failed.
    Tls(String),
    /// The response could not be read (bad head, bad chunked or compressed body).
    Read(ReadError),
    /// The server closed the connection before the whole response arrived.
    Closed,
    /// The response body is larger than [`MAX_CONTROL_BODY`].
    BodyTooLarge,
    /// A `200` answer whose body is not what the request returns.
    Decode(String),
    /// The settings cannot be used (e.g. `https://` without the `tls` feature, bad extra
    /// root certificates).
    InvalidConfig(String),
    /// The driver running the stream cannot carry out control requests.
    Unsupported {
        /// The driver's name.
        driver: &'static str,
    },
    /// The call was cancelled before it finished.
    Cancelled,
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::NotAnnounced => f.write_str(
                "the stream has not announced a control stream id (not connected yet, or its \
                 connection dropped): wait until it is streaming and try again",
            ),
            ControlError::UnknownStream { stream_id } => write!(
                f,
                "the server does not know control stream {stream_id:?} (404): its connection \
                 is gone; use the id the stream announces now"
            ),
            ControlError::InvalidStreamId { stream_id } => write!(
                f,
                "invalid control stream id {stream_id:?}: it must be 1 to \
                 {MAX_STREAM_ID_BYTES} letters, digits, '_', '-', '.' or '~'"
            ),
            ControlError::NoUsers => f.write_str("no user id given: name at least one user"),
            ControlError::NoRules => f.write_str("no rule given: name at least one rule or id"),
            ControlError::TooManyUsersPerRequest { given } => write!(
                f,
                "{given} user ids in one control request; at most {MAX_USERS_PER_REQUEST} \
                 are allowed per request"
            ),
            ControlError::OverStreamLimit { would_follow } => write!(
                f,
                "the stream would follow {would_follow} users; a Site Streams connection \
                 follows at most {MAX_USERS_PER_STREAM}"
            ),
            ControlError::Http {
                status,
                reason,
                detail,
            } => {
                write!(f, "control request failed: HTTP {status} {reason}")?;
                if !detail.is_empty() {
                    write!(f, ": {detail}")?;
                }
                Ok(())
            }
            ControlError::Connect(kind) => write!(f, "control connection failed: {kind}"),
            ControlError::Timeout(d) => write!(f, "control request got no answer within {d:?}"),
            ControlError::Tls(e) => write!(f, "control connection: {e}"),
            ControlError::Read(e) => write!(f, "control response: {e}"),
            ControlError::Closed => {
                f.write_str("the server closed the control connection before the whole answer")
            }
            ControlError::BodyTooLarge => write!(
                f,
                "control response body over {MAX_CONTROL_BODY} bytes; not read further"
            ),
            ControlError::Decode(why) => write!(f, "unexpected control response: {why}"),
            ControlError::InvalidConfig(why) => {
                write!(f, "cannot make control requests: {why}")
            }
            ControlError::Unsupported { driver } => {
                write!(f, "the {driver} driver does not carry out control requests")
            }
            ControlError::Cancelled => f.write_str("the control request was cancelled"),
        }
    }
}

impl std::error::Error for ControlError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ControlError::Read(e) => Some(e),
            _ => None,
        }
    }
}

impl ControlError {
    /// A control call's reading of a body error of its (whole-body) [`ResponseReader`].
    ///
    /// [`ResponseReader`]: crate::pipeline::ResponseReader
    fn from_body_error(e: &ReadError) -> Self {
        match e {
            ReadError::BodyTooLarge { .. } => ControlError::BodyTooLarge,
            ReadError::CompressedCutShort => ControlError::Closed,
            other => ControlError::Read(other.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_come_from_the_uri_after_site_c() {
        let id = "01_225167_334389048B872A533002B34D73F8C29FD09EFC50";
        assert_eq!(stream_id_from_uri(&format!("/1.1/site/c/{id}")), Some(id));
        assert_eq!(stream_id_from_uri("/2b/site/c/abc/info.json"), Some("abc"));
        assert_eq!(stream_id_from_uri("/1.1/site/c/abc?x=1"), Some("abc"));
        assert_eq!(stream_id_from_uri("/1.1/site/c/"), None);
        assert_eq!(stream_id_from_uri("/1.1/site/c/.."), None);
        assert_eq!(stream_id_from_uri("/1.1/site/c/a b"), None);
        assert_eq!(stream_id_from_uri("/1.1/site/c/é"), None);
        assert_eq!(stream_id_from_uri("/elsewhere/abc"), None);
        assert_eq!(stream_id_from_uri(""), None);
        let long = "a".repeat(MAX_STREAM_ID_BYTES + 1);
        assert_eq!(stream_id_from_uri(&format!("/1.1/site/c/{long}")), None);
        assert!(is_valid_stream_id(&long[1..]));
    }

    #[test]
    fn control_paths_sit_beside_the_stream_path() {
        assert_eq!(
            control_path("/1.1/site.json", "x1", "add_user.json"),
            "/1.1/site/c/x1/add_user.json"
        );
        assert_eq!(
            control_path("/2b/site.json", "x1", "friends/ids.json"),
            "/2b/site/c/x1/friends/ids.json"
        );
        assert_eq!(
            control_path("/stream/", "x1", "info.json"),
            "/stream/c/x1/info.json"
        );
        assert_eq!(control_path("/", "x1", "info.json"), "/c/x1/info.json");
    }

    #[test]
    fn every_error_says_what_was_wrong() {
        let cases: Vec<(ControlError, &str)> = vec![
            (ControlError::NotAnnounced, "not announced"),
            (
                ControlError::UnknownStream {
                    stream_id: "s1".into(),
                },
                "does not know control stream \"s1\" (404)",
            ),
            (
                ControlError::InvalidStreamId {
                    stream_id: "a/b".into(),
                },
                "invalid control stream id \"a/b\"",
            ),
            (ControlError::NoUsers, "no user id"),
            (
                ControlError::TooManyUsersPerRequest { given: 101 },
                "101 user ids in one control request; at most 100",
            ),
            (
                ControlError::OverStreamLimit { would_follow: 1001 },
                "would follow 1001 users; a Site Streams connection follows at most 1000",
            ),
            (
                ControlError::Http {
                    status: 500,
                    reason: "Internal Server Error".into(),
                    detail: "oops".into(),
                },
                "HTTP 500 Internal Server Error: oops",
            ),
            (
                ControlError::Connect(io::ErrorKind::ConnectionRefused),
                "control connection failed: connection refused",
            ),
            (
                ControlError::Timeout(Duration::from_secs(10)),
                "no answer within 10s",
            ),
            (ControlError::Closed, "closed the control connection"),
            (ControlError::BodyTooLarge, "over 1048576 bytes"),
            (
                ControlError::Decode("x".into()),
                "unexpected control response: x",
            ),
            (
                ControlError::Unsupported { driver: "fake" },
                "the fake driver does not carry out control requests",
            ),
            (ControlError::Cancelled, "cancelled"),
        ];
        for (error, expected) in cases {
            let text = error.to_string();
            assert!(text.contains(expected), "{text:?} lacks {expected:?}");
        }
        let bare = ControlError::Http {
            status: 503,
            reason: "Service Unavailable".into(),
            detail: String::new(),
        };
        assert_eq!(
            bare.to_string(),
            "control request failed: HTTP 503 Service Unavailable"
        );
    }
}
