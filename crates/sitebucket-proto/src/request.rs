//! The HTTP/1.1 request heads sitebucket sends, signed with OAuth 1.0a HMAC-SHA1 (RFC 5849)
//! or carrying a Bearer token ([`bearer_request`], for X API v2).
//!
//! Everything here is a pure function of its arguments: the wall-clock seconds and the nonce
//! are passed in, so the same inputs always give the same bytes. [`make_nonce`] draws a nonce
//! from the caller's (seeded) RNG.
//!
//! Parameters are percent-encoded once, with the RFC 3986 unreserved set (`A-Z a-z 0-9 - . _ ~`
//! stay, everything else becomes `%XX` of its UTF-8 bytes, a space `%20`), and that same
//! encoding is used in the request line, in the form body and in the signature base string.
//! No `oauth_*` parameter ever goes in the query: they travel in the `Authorization` header.
//!
//! ```
//! use sitebucket_proto::{Config, Credentials};
//! use sitebucket_proto::_benchable::stream_request;
//!
//! let config = Config::builder([12, 13], Credentials::new("ck", "cs", "t", "ts"))
//!     .build()
//!     .unwrap();
//! let head = stream_request(&config, 1_700_000_000, "abc");
//! assert!(head.starts_with(b"GET /1.1/site.json?follow=12%2C13&with=user HTTP/1.1\r\n"));
//! assert!(head.ends_with(b"\r\n\r\n"));
//! ```

use core::fmt::Write as _;
use core::net::Ipv6Addr;
use core::num::NonZeroU64;

use oauth::serializer::Serializer;
use oauth::signature_method::SignatureMethod;
use oauth1_request as oauth;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::config::{
    bracketed, is_path_byte, is_percent_escape, Auth, BearerToken, Config, Credentials, Endpoint,
};
use crate::Framing;

/// The `User-Agent` header value: `sitebucket/<crate version>`.
pub const USER_AGENT: &str = concat!("sitebucket/", env!("CARGO_PKG_VERSION"));

/// Length of a nonce from [`make_nonce`].
pub const NONCE_LEN: usize = 32;

/// Every byte but the RFC 3986 unreserved characters is percent-encoded (RFC 5849 §3.6).
const ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The HTTP method of a signed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`: the stream itself and read-only control requests (`info.json`).
    Get,
    /// `POST`: control requests that change a stream (`add_user.json`, `remove_user.json`).
    Post,
}

impl Method {
    /// `"GET"` or `"POST"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// The query parameters of the stream request, in the order they are sent.
///
/// Site Streams: `follow` (the ids comma-joined) and `with` always, then `replies=all`,
/// `stringify_friend_ids=true`, `delimited=length` and `stall_warnings=true`, each only when
/// the config asks for it. X API v2: the [`V2Param`](crate::config::V2Param)s set, as given,
/// and nothing else.
///
/// Values are not percent-encoded yet; [`signed_request`] does that.
pub fn query_pairs(config: &Config) -> Vec<(&'static str, String)> {
    if config.api().is_v2() {
        return config
            .v2_params()
            .iter()
            .map(|(param, value)| (param.name(), value.clone()))
            .collect();
    }
    // One string written in place: a stream signs this request at every reconnect, and a
    // `String` per id (then a join) made a hundred short-lived allocations per attempt.
    let mut follow = String::with_capacity(config.follow().len() * 21);
    for (i, id) in config.follow().iter().enumerate() {
        if i > 0 {
            follow.push(',');
        }
        // Writing to a `String` cannot fail.
        let _ = write!(follow, "{id}");
    }
    let mut pairs = vec![("follow", follow), ("with", config.with().to_string())];
    if config.replies_all() {
        pairs.push(("replies", "all".to_owned()));
    }
    if config.stringify_friend_ids() {
        pairs.push(("stringify_friend_ids", "true".to_owned()));
    }
    if config.framing() == Framing::Length {
        pairs.push(("delimited", "length".to_owned()));
    }
    if config.stall_warnings() {
        pairs.push(("stall_warnings", "true".to_owned()));
    }
    pairs
}

/// The complete request head that opens the stream of `config`.
///
/// `GET <path>?<query> HTTP/1.1`, then `Host`, `User-Agent`, `Accept-Encoding: deflate, gzip`
/// (only when [`Config::gzip`] is on) and `Authorization`, each line ending in CRLF, and a
/// blank line. With OAuth 1.0a credentials, `Authorization: OAuth ...` is signed: `unix_secs`
/// is the wall-clock time in seconds since the Unix epoch and `nonce` a fresh random string
/// (see [`make_nonce`]); both go into the signature. With a Bearer token it is
/// `Authorization: Bearer <token>`, and `unix_secs` and `nonce` are not used.
///
/// ```
/// use sitebucket_proto::{Api, BearerToken, Config, V2Param};
/// use sitebucket_proto::_benchable::stream_request;
///
/// let config = Config::v2_builder(Api::V2Sample, BearerToken::new("T0KEN"))
///     .v2_param(V2Param::BackfillMinutes, "2")
///     .build()
///     .unwrap();
/// let head = stream_request(&config, 1_700_000_000, "unused");
/// assert!(head.starts_with(b"GET /2/tweets/sample/stream?backfill_minutes=2 HTTP/1.1\r\n"));
/// assert!(head.ends_with(b"\r\nAuthorization: Bearer T0KEN\r\n\r\n"));
/// ```
pub fn stream_request(config: &Config, unix_secs: u64, nonce: &str) -> Vec<u8> {
    let query = query_pairs(config);
    let gzip: &[(&str, &str)] = if config.gzip() {
        &[("Accept-Encoding", "deflate, gzip")]
    } else {
        &[]
    };
    let endpoint = config.endpoint();
    authorized_request(
        Method::Get,
        endpoint,
        &endpoint.path,
        &query,
        Body::None,
        config.auth(),
        unix_secs,
        nonce,
        gzip,
    )
}

/// The body of a request built by [`authorized_request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// No body (a `POST` still carries `Content-Length: 0`).
    None,
    /// A form, `application/x-www-form-urlencoded`: unencoded names and values (signed with
    /// OAuth 1.0a, as RFC 5849 asks).
    Form(&'a [(&'a str, String)]),
    /// A JSON document, `application/json`, sent as is (never part of an OAuth signature).
    Json(&'a str),
}

/// A request for `endpoint`'s host and port, for any path, signed in with `auth`: the one
/// builder behind [`stream_request`], the control calls and the v2 rules calls.
///
/// With [`Auth::OAuth1`] it is [`signed_request`] (a JSON body is appended after signing the
/// query alone); with [`Auth::Bearer`] it is [`bearer_request`].
#[allow(clippy::too_many_arguments)] // Every argument is a distinct input, as in `signed_request`.
pub fn authorized_request(
    method: Method,
    endpoint: &Endpoint,
    path: &str,
    query: &[(&str, String)],
    body: Body<'_>,
    auth: &Auth,
    unix_secs: u64,
    nonce: &str,
    extra_headers: &[(&str, &str)],
) -> Vec<u8> {
    match auth {
        Auth::OAuth1(credentials) => {
            let (form, json): (&[(&str, String)], _) = match body {
                Body::None => (&[], None),
                Body::Form(form) => (form, None),
                Body::Json(json) => (&[], Some(json)),
            };
            let params = SortedParams::new(query.iter().chain(form));
            let target = Target::new(method, endpoint, path, query);
            let authorization = authorization_header(
                oauth::HMAC_SHA1,
                method.as_str(),
                &target.base_uri,
                &params,
                credentials,
                unix_secs,
                nonce,
                true,
            );
            let body = match json {
                Some(json) => Payload::Json(json),
                None => Payload::Form(urlencode(form)),
            };
            target.finish(&authorization, extra_headers, body)
        }
        Auth::Bearer(token) => {
            bearer_request(method, endpoint, path, query, body, token, extra_headers)
        }
    }
}

/// A request carrying `Authorization: Bearer <token>` (X API v2's app-only authentication).
///
/// The bytes are laid out as [`signed_request`]'s: the request line, `Host`, `User-Agent`, the
/// `extra_headers`, `Authorization`, then `Content-Type` and `Content-Length` for a body
/// (`Content-Length: 0` for a bodiless `POST`), a blank line and the body. The token is sent
/// as given (CR, LF and NUL would become spaces, keeping the head well formed).
pub fn bearer_request(
    method: Method,
    endpoint: &Endpoint,
    path: &str,
    query: &[(&str, String)],
    body: Body<'_>,
    token: &BearerToken,
    extra_headers: &[(&str, &str)],
) -> Vec<u8> {
    let target = Target::new(method, endpoint, path, query);
    let authorization = format!("Bearer {}", token.secret());
    let body = match body {
        Body::None => Payload::Form(String::new()),
        Body::Form(form) => Payload::Form(urlencode(form)),
        Body::Json(json) => Payload::Json(json),
    };
    target.finish(&authorization, extra_headers, body)
}

/// A request's line and `Host`, before its authorization is known.
struct Target {
    method: Method,
    /// `scheme://authority/path`, the base string URI of an OAuth signature.
    base_uri: String,
    authority: String,
    /// `path?query`, encoded.
    request_target: String,
}

/// A body, encoded.
enum Payload<'a> {
    /// A form, encoded (empty for none).
    Form(String),
    /// JSON, as is.
    Json(&'a str),
}

impl Target {
    fn new(method: Method, endpoint: &Endpoint, path: &str, query: &[(&str, String)]) -> Self {
        let path = safe_path(path);
        let host = safe_host(&endpoint.host);
        let mut authority = bracketed(&host);
        if !endpoint.is_default_port() {
            let _ = write!(authority, ":{}", endpoint.port);
        }
        let base_uri = format!("{}://{}{}", endpoint.scheme(), authority, path);
        let mut request_target = path;
        if !query.is_empty() {
            request_target.push('?');
            request_target.push_str(&urlencode(query));
        }
        Target {
            method,
            base_uri,
            authority,
            request_target,
        }
    }

    fn finish(
        self,
        authorization: &str,
        extra_headers: &[(&str, &str)],
        body: Payload<'_>,
    ) -> Vec<u8> {
        let mut head = String::with_capacity(512);
        head.push_str(self.method.as_str());
        head.push(' ');
        head.push_str(&self.request_target);
        head.push_str(" HTTP/1.1\r\n");
        push_header(&mut head, "Host", &self.authority);
        push_header(&mut head, "User-Agent", USER_AGENT);
        for (name, value) in extra_headers {
            push_header(&mut head, name, value);
        }
        push_header(&mut head, "Authorization", authorization);
        let (content_type, body) = match body {
            Payload::Form(form) if form.is_empty() => (None, String::new()),
            Payload::Form(form) => (Some("application/x-www-form-urlencoded"), form),
            Payload::Json(json) => (Some("application/json"), json.to_owned()),
        };
        if let Some(content_type) = content_type {
            push_header(&mut head, "Content-Type", content_type);
        }
        if content_type.is_some() || self.method == Method::Post {
            push_header(&mut head, "Content-Length", &body.len().to_string());
        }
        head.push_str("\r\n");
        head.push_str(&body);
        head.into_bytes()
    }
}

/// A signed HTTP/1.1 request for `endpoint`'s host and port, for any path (the stream and its
/// control requests alike).
///
/// The bytes are the request line `METHOD <path>?<query> HTTP/1.1` (no `?` when `query` is
/// empty), then `Host`, `User-Agent`, the `extra_headers` in order, `Authorization: OAuth ...`,
/// and, when there is a body, `Content-Type: application/x-www-form-urlencoded` and
/// `Content-Length`; a blank line; then the body. A `POST` always carries `Content-Length`
/// (0 without `form`). `endpoint.path` is not used: `path` is.
///
/// `query` and `form` hold unencoded names and values. Both are signed, per RFC 5849 §3.4.1.3,
/// with the `oauth_*` parameters (including `oauth_version="1.0"`) and HMAC-SHA1 keyed by both
/// secrets. `unix_secs` becomes `oauth_timestamp`; 0 is not a valid timestamp (RFC 5849 §3.3)
/// and is sent as 1.
///
/// The head is always well formed, whatever the inputs: bytes that a path may not hold
/// (`?`, `#`, spaces, controls, non-ASCII, a `%` that starts no escape) are percent-encoded,
/// as are bytes outside a host's alphabet; CR, LF and NUL in a header value become spaces
/// (RFC 9110 §5.5) and bytes that are not token characters in a header name become `-`.
/// Inputs from a checked [`Config`] and ordinary names are never changed by this.
#[allow(clippy::too_many_arguments)] // The agreed signature; every argument is a distinct input.
pub fn signed_request(
    method: Method,
    endpoint: &Endpoint,
    path: &str,
    query: &[(&str, String)],
    form: &[(&str, String)],
    credentials: &Credentials,
    unix_secs: u64,
    nonce: &str,
    extra_headers: &[(&str, &str)],
) -> Vec<u8> {
    authorized_request(
        method,
        endpoint,
        path,
        query,
        Body::Form(form),
        &Auth::OAuth1(credentials.clone()),
        unix_secs,
        nonce,
        extra_headers,
    )
}

/// A nonce of [`NONCE_LEN`] ASCII letters and digits drawn from `rng`.
///
/// Seed `rng` (e.g. from [`Config::rng_seed`]) and the nonces are reproducible.
pub fn make_nonce(rng: &mut impl rand::RngCore) -> String {
    (0..NONCE_LEN)
        .map(|_| char::from(rng.sample(Alphanumeric)))
        .collect()
}

/// Percent-encodes `s` with the RFC 3986 unreserved set (RFC 5849 §3.6).
pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE_SET).to_string()
}

/// `name=value` pairs, each side percent-encoded, joined by `&`, in the order given.
fn urlencode(pairs: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&percent_encode(name));
        out.push('=');
        out.push_str(&percent_encode(value));
    }
    out
}

/// Request parameters, percent-encoded and sorted as RFC 5849 §3.4.1.3.2 asks: by encoded
/// name, then by encoded value.
struct SortedParams {
    /// `(encode(encode(name)), encode(value))`: the signer writes names into the base string
    /// as given but encodes values once more, and the base string holds both encoded twice.
    /// Encoding `%` as `%25` keeps the byte order, so these are sorted as the RFC asks.
    pairs: Vec<(String, String)>,
}

impl SortedParams {
    fn new<'a>(pairs: impl IntoIterator<Item = &'a (&'a str, String)>) -> Self {
        let mut encoded: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(name, value)| (percent_encode(name), percent_encode(value)))
            .collect();
        encoded.sort_unstable();
        let pairs = encoded
            .into_iter()
            .map(|(name, value)| (percent_encode(&name), value))
            .collect();
        Self { pairs }
    }
}

impl oauth::Request for SortedParams {
    fn serialize<S: Serializer>(&self, mut serializer: S) -> S::Output {
        // The protocol parameters go in between, in byte order, like the crate's own
        // `AssertSorted` does; each call is a no-op for a parameter that is not set.
        type Emit<S> = fn(&mut S);
        let oauth_params: [(&str, Emit<S>); 8] = [
            ("oauth_callback", |s| s.serialize_oauth_callback()),
            ("oauth_consumer_key", |s| s.serialize_oauth_consumer_key()),
            ("oauth_nonce", |s| s.serialize_oauth_nonce()),
            ("oauth_signature_method", |s| {
                s.serialize_oauth_signature_method()
            }),
            ("oauth_timestamp", |s| s.serialize_oauth_timestamp()),
            ("oauth_token", |s| s.serialize_oauth_token()),
            ("oauth_verifier", |s| s.serialize_oauth_verifier()),
            ("oauth_version", |s| s.serialize_oauth_version()),
        ];
        let mut pending = oauth_params.iter().peekable();
        for (name, value) in &self.pairs {
            while let Some((_, emit)) =
                pending.next_if(|(oauth_name, _)| *oauth_name < name.as_str())
            {
                emit(&mut serializer);
            }
            serializer.serialize_parameter_encoded(name, value);
        }
        for (_, emit) in pending {
            emit(&mut serializer);
        }
        serializer.end()
    }
}

/// The `Authorization` header value for `params`, signed with `signature_method`.
/// `base_uri` must hold no `?` (the signer asserts that in debug builds).
#[allow(clippy::too_many_arguments)] // Private; mirrors `signed_request` plus two test knobs.
fn authorization_header<SM: SignatureMethod + Clone>(
    signature_method: SM,
    method: &str,
    base_uri: &str,
    params: &SortedParams,
    credentials: &Credentials,
    unix_secs: u64,
    nonce: &str,
    version: bool,
) -> String {
    let client = oauth::Credentials::new(credentials.consumer_key(), credentials.consumer_secret());
    let token = oauth::Credentials::new(credentials.token(), credentials.token_secret());
    let mut builder = oauth::Builder::<_, &str, &str>::new(client, signature_method);
    builder
        .token(token)
        .nonce(nonce)
        // Always `Some`: with `None` the signer would read the system clock.
        .timestamp(NonZeroU64::new(unix_secs.max(1)))
        .version(version);
    builder.authorize(method, base_uri, params)
}

/// `path` made safe for a request line and a base string URI: a leading `/` added if
/// missing; bytes that are neither path characters nor part of a `%XX` escape encoded.
fn safe_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(bytes.len() + 1);
    if !path.starts_with('/') {
        out.push('/');
    }
    for (at, &b) in bytes.iter().enumerate() {
        if is_path_byte(b) || is_percent_escape(bytes, at) {
            out.push(char::from(b));
        } else {
            push_escape(&mut out, b);
        }
    }
    out
}

/// `host` lower-cased, with bytes outside a host name's alphabet encoded; the colons of an
/// IPv6 address are kept (and only those, so only an IPv6 host gets brackets).
fn safe_host(host: &str) -> String {
    let ipv6 = host.parse::<Ipv6Addr>().is_ok();
    let mut out = String::with_capacity(host.len());
    for b in host.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (ipv6 && b == b':')
        {
            out.push(char::from(b.to_ascii_lowercase()));
        } else {
            push_escape(&mut out, b);
        }
    }
    out
}

fn push_escape(out: &mut String, b: u8) {
    let _ = write!(out, "%{b:02X}");
}

/// Appends `name: value\r\n`, keeping the head well formed whatever the strings hold.
fn push_header(head: &mut String, name: &str, value: &str) {
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() {
        head.push('-');
    }
    head.extend(name.chars().map(|c| if is_tchar(c) { c } else { '-' }));
    head.push_str(": ");
    head.extend(value.chars().map(|c| {
        if matches!(c, '\r' | '\n' | '\0') {
            ' '
        } else {
            c
        }
    }));
    head.push_str("\r\n");
}

#[cfg(test)]
mod tests;
