//! What a stream is: who it follows, how it signs in, where it connects and its limits.
//!
//! [`Config`] is built with [`Config::builder`], which checks every value and returns a
//! [`ConfigError`] naming the value and the rule it broke. A built `Config` is always valid:
//! the follow list holds 1 to [`FOLLOW_LIMIT`] distinct, sorted ids, no credential is empty,
//! the URL parsed into an [`Endpoint`], and every limit is in range.
//!
//! ```
//! use sitebucket_proto::{Config, Credentials, With};
//!
//! let credentials = Credentials::new("ck", "cs", "t", "ts");
//! let config = Config::builder([3, 1, 2, 1], credentials)
//!     .with(With::Followings)
//!     .stall_warnings(true)
//!     .build()
//!     .unwrap();
//! assert_eq!(config.follow(), &[1, 2, 3]);
//! assert_eq!(config.url(), "https://sitestream.twitter.com/1.1/site.json");
//! ```
//!
//! Secrets stay out of sight: the `Debug` output of [`Credentials`], [`Config`] and
//! [`ConfigBuilder`] shows the consumer key and the token but never either secret, and a
//! [`BearerToken`] never shows at all.
//!
//! The same core serves X API v2's filtered and sample streams: pick the [`Api`] and sign in
//! with a Bearer token ([`Auth::Bearer`]). A v2 stream follows no ids; it takes the v2 query
//! parameters ([`V2Param`]) instead, sent as given.
//!
//! ```
//! use sitebucket_proto::{Api, BearerToken, Config, V2Param};
//!
//! let config = Config::v2_builder(Api::V2Filtered, BearerToken::new("AAAA-secret"))
//!     .v2_param(V2Param::TweetFields, "created_at,author_id")
//!     .v2_param(V2Param::Expansions, "author_id")
//!     .build()
//!     .unwrap();
//! assert!(config.follow().is_empty());
//! assert_eq!(config.url(), "https://api.x.com/2/tweets/search/stream");
//! assert!(!format!("{config:?}").contains("AAAA-secret"));
//! ```

use core::fmt;
use core::net::Ipv6Addr;
use core::str::FromStr;
use core::time::Duration;

use crate::backoff::{BackoffPolicy, Jitter};
use crate::Framing;

/// Most user ids one stream may follow when it connects.
pub const FOLLOW_LIMIT: usize = 100;

/// The Site Streams endpoint used when no URL is given.
pub const DEFAULT_URL: &str = "https://sitestream.twitter.com/1.1/site.json";

/// X API v2's filtered stream, used when a [`Api::V2Filtered`] config gives no URL.
pub const V2_FILTERED_URL: &str = "https://api.x.com/2/tweets/search/stream";

/// X API v2's sample stream, used when a [`Api::V2Sample`] config gives no URL.
pub const V2_SAMPLE_URL: &str = "https://api.x.com/2/tweets/sample/stream";

/// Consecutive failed attempts after which the squared policy gives up, unless a retry limit
/// was set explicitly.
pub const RETRY_LIMIT: u32 = 10;

/// Longest message payload accepted by default: 8 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// The largest `max_message_bytes` a config accepts: 1 GiB.
pub const MAX_MESSAGE_BYTES_LIMIT: usize = 1024 * 1024 * 1024;

/// No byte for this long means the stream stalled: three keep-alive periods.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a connection attempt may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(40);

/// How long a connection must stay up after its `200` head, by default, to earn trust
/// (unless a real message earns it sooner): one keep-alive period.
pub const DEFAULT_TRUST_AFTER: Duration = Duration::from_secs(30);

/// How long a connection must stay up after its `200` head, by default, before the 420/429
/// backoff sequence is forgotten: ten minutes.
pub const DEFAULT_RATE_LIMIT_RESET_AFTER: Duration = Duration::from_secs(10 * 60);

/// The longest duration a config accepts anywhere (timeouts, trust periods, backoff waits):
/// 30 days. Longer ones are refused, so adding one to an `Instant` cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The `with` query parameter: whose messages the stream carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum With {
    /// Only events about the followed users themselves (`with=user`, the default).
    #[default]
    User,
    /// Also messages from the accounts the followed users follow (`with=followings`).
    Followings,
}

impl With {
    /// The query value: `"user"` or `"followings"`.
    pub fn as_str(self) -> &'static str {
        match self {
            With::User => "user",
            With::Followings => "followings",
        }
    }
}

impl fmt::Display for With {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for With {
    type Err = ConfigError;

    /// Parses `"user"` or `"followings"` exactly (the query values are lower case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(With::User),
            "followings" => Ok(With::Followings),
            other => Err(ConfigError::InvalidWith {
                value: other.to_owned(),
            }),
        }
    }
}

/// The four OAuth 1.0a strings that sign every request.
///
/// `Debug` shows the consumer key and the token and redacts both secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    consumer_key: String,
    consumer_secret: String,
    token: String,
    token_secret: String,
}

impl Credentials {
    /// Bundles the consumer (application) key pair and the access token pair.
    pub fn new(
        consumer_key: impl Into<String>,
        consumer_secret: impl Into<String>,
        token: impl Into<String>,
        token_secret: impl Into<String>,
    ) -> Self {
        Self {
            consumer_key: consumer_key.into(),
            consumer_secret: consumer_secret.into(),
            token: token.into(),
            token_secret: token_secret.into(),
        }
    }

    /// The environment variables [`Credentials::from_env`] reads, in the order
    /// [`Credentials::new`] takes them.
    pub const ENV_VARS: [&'static str; 4] = [
        "SITEBUCKET_CONSUMER_KEY",
        "SITEBUCKET_CONSUMER_SECRET",
        "SITEBUCKET_TOKEN",
        "SITEBUCKET_TOKEN_SECRET",
    ];

    /// Reads the credentials from `SITEBUCKET_CONSUMER_KEY`, `SITEBUCKET_CONSUMER_SECRET`,
    /// `SITEBUCKET_TOKEN` and `SITEBUCKET_TOKEN_SECRET` (the variables `sitebucket listen`
    /// and the lines `sitebucket serve` prints use). The error names the first variable that
    /// is missing, empty or not Unicode; no value is ever part of it.
    ///
    /// ```no_run
    /// let credentials = sitebucket_proto::Credentials::from_env()?;
    /// # Ok::<(), sitebucket_proto::CredentialsEnvError>(())
    /// ```
    pub fn from_env() -> Result<Self, CredentialsEnvError> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// [`Credentials::from_env`] with another source of variables (a map in tests, a
    /// configuration file's section): `lookup` is asked for each name of
    /// [`Credentials::ENV_VARS`].
    ///
    /// ```
    /// use sitebucket_proto::Credentials;
    ///
    /// let credentials = Credentials::from_lookup(|name| Some(format!("{name}-value").into()))?;
    /// assert_eq!(credentials.token(), "SITEBUCKET_TOKEN-value");
    /// let missing = Credentials::from_lookup(|name| {
    ///     (name != "SITEBUCKET_TOKEN_SECRET").then(|| "x".into())
    /// });
    /// assert_eq!(missing.unwrap_err().to_string(), "SITEBUCKET_TOKEN_SECRET is not set");
    /// # Ok::<(), sitebucket_proto::CredentialsEnvError>(())
    /// ```
    pub fn from_lookup(
        mut lookup: impl FnMut(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Self, CredentialsEnvError> {
        let [key, secret, token, token_secret] = Self::ENV_VARS.map(|variable| {
            match lookup(variable).map(std::ffi::OsString::into_string) {
                None => Err(CredentialsEnvError::Missing { variable }),
                Some(Err(_)) => Err(CredentialsEnvError::NotUnicode { variable }),
                Some(Ok(value)) if value.is_empty() => Err(CredentialsEnvError::Empty { variable }),
                Some(Ok(value)) => Ok(value),
            }
        });
        Ok(Self::new(key?, secret?, token?, token_secret?))
    }

    /// The consumer (application) key, sent as `oauth_consumer_key`.
    pub fn consumer_key(&self) -> &str {
        &self.consumer_key
    }

    /// The consumer secret: part of the signing key, never sent.
    pub fn consumer_secret(&self) -> &str {
        &self.consumer_secret
    }

    /// The access token, sent as `oauth_token`.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The access token secret: part of the signing key, never sent.
    pub fn token_secret(&self) -> &str {
        &self.token_secret
    }

    /// The first empty credential, by name, if any.
    fn first_empty(&self) -> Option<&'static str> {
        [
            ("consumer_key", &self.consumer_key),
            ("consumer_secret", &self.consumer_secret),
            ("token", &self.token),
            ("token_secret", &self.token_secret),
        ]
        .into_iter()
        .find(|(_, value)| value.is_empty())
        .map(|(name, _)| name)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("consumer_key", &self.consumer_key)
            .field("consumer_secret", &"<redacted>")
            .field("token", &self.token)
            .field("token_secret", &"<redacted>")
            .finish()
    }
}

/// Which streaming API a config speaks: the request it sends and the messages it expects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Api {
    /// Site Streams (v1.1): `follow` and `with` in the query, OAuth 1.0a (the default).
    #[default]
    SiteStreams,
    /// X API v2's filtered stream (`GET /2/tweets/search/stream`): the tweets matching the
    /// app's rules, managed through the rules endpoint beside it.
    V2Filtered,
    /// X API v2's sample stream (`GET /2/tweets/sample/stream`): a sample of all tweets.
    V2Sample,
}

impl Api {
    /// The URL used when the config gives none.
    pub fn default_url(self) -> &'static str {
        match self {
            Api::SiteStreams => DEFAULT_URL,
            Api::V2Filtered => V2_FILTERED_URL,
            Api::V2Sample => V2_SAMPLE_URL,
        }
    }

    /// Whether this is one of the X API v2 streams.
    pub fn is_v2(self) -> bool {
        !matches!(self, Api::SiteStreams)
    }

    /// The name used on the command line: `site`, `v2-filtered` or `v2-sample`.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::SiteStreams => "site",
            Api::V2Filtered => "v2-filtered",
            Api::V2Sample => "v2-sample",
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth 2.0 Bearer token (app-only authentication), sent as `Authorization: Bearer …`.
///
/// It never shows: `Debug` prints `BearerToken(<redacted>)`, and no log of this crate
/// prints it.
///
/// ```
/// use sitebucket_proto::BearerToken;
///
/// let token = BearerToken::new("AAAA%2Fsecret");
/// assert_eq!(format!("{token:?}"), "BearerToken(<redacted>)");
/// assert_eq!(token.secret(), "AAAA%2Fsecret");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Wraps the token as issued (it is sent exactly as given).
    pub fn new(token: impl Into<String>) -> Self {
        BearerToken(token.into())
    }

    /// The token itself, to put in a request header. Never log it.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// How requests sign in: OAuth 1.0a user credentials (Site Streams) or a Bearer token
/// (X API v2 streams and their rules). `Debug` shows no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// OAuth 1.0a, HMAC-SHA1 (RFC 5849): a fresh signature on every request.
    OAuth1(Credentials),
    /// `Authorization: Bearer <token>`.
    Bearer(BearerToken),
}

impl Auth {
    /// The OAuth 1.0a credentials, if that is how requests sign in.
    pub fn credentials(&self) -> Option<&Credentials> {
        match self {
            Auth::OAuth1(credentials) => Some(credentials),
            Auth::Bearer(_) => None,
        }
    }

    /// The first empty secret, by name, if any.
    fn first_empty(&self) -> Option<&'static str> {
        match self {
            Auth::OAuth1(credentials) => credentials.first_empty(),
            Auth::Bearer(token) if token.0.is_empty() => Some("bearer_token"),
            Auth::Bearer(_) => None,
        }
    }
}

impl From<Credentials> for Auth {
    fn from(credentials: Credentials) -> Self {
        Auth::OAuth1(credentials)
    }
}

impl From<BearerToken> for Auth {
    fn from(token: BearerToken) -> Self {
        Auth::Bearer(token)
    }
}

/// A query parameter of the X API v2 streams, sent as given when set
/// ([`ConfigBuilder::v2_param`]), in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum V2Param {
    /// `expansions`: which referenced objects come along in `includes`.
    Expansions,
    /// `tweet.fields`.
    TweetFields,
    /// `user.fields`.
    UserFields,
    /// `media.fields`.
    MediaFields,
    /// `place.fields`.
    PlaceFields,
    /// `poll.fields`.
    PollFields,
    /// `backfill_minutes`: recover up to this many minutes missed on a reconnect (a
    /// decimal number).
    BackfillMinutes,
    /// `partition`: which partition of a partitioned stream (a decimal number).
    Partition,
    /// `start_time` (ISO 8601), on streams that take it.
    StartTime,
    /// `end_time` (ISO 8601), on streams that take it.
    EndTime,
}

impl V2Param {
    /// Every parameter, in the order they are sent.
    pub const ALL: [V2Param; 10] = [
        V2Param::Expansions,
        V2Param::TweetFields,
        V2Param::UserFields,
        V2Param::MediaFields,
        V2Param::PlaceFields,
        V2Param::PollFields,
        V2Param::BackfillMinutes,
        V2Param::Partition,
        V2Param::StartTime,
        V2Param::EndTime,
    ];

    /// The query name, e.g. `"tweet.fields"`.
    pub fn name(self) -> &'static str {
        match self {
            V2Param::Expansions => "expansions",
            V2Param::TweetFields => "tweet.fields",
            V2Param::UserFields => "user.fields",
            V2Param::MediaFields => "media.fields",
            V2Param::PlaceFields => "place.fields",
            V2Param::PollFields => "poll.fields",
            V2Param::BackfillMinutes => "backfill_minutes",
            V2Param::Partition => "partition",
            V2Param::StartTime => "start_time",
            V2Param::EndTime => "end_time",
        }
    }

    /// Whether the value must be a decimal number.
    fn is_numeric(self) -> bool {
        matches!(self, V2Param::BackfillMinutes | V2Param::Partition)
    }
}

/// Where a stream connects: scheme, host, port and path of an `http://` or `https://` URL.
///
/// The host is stored lower-cased and, for an IPv6 literal, without its brackets (`::1`), so
/// `(host, port)` can be handed to a resolver as is. [`Endpoint::host_header`] and
/// [`Endpoint::url`] put the brackets back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// `true` for `https://` (TLS), `false` for `http://` (plain TCP).
    pub tls: bool,
    /// Host name or IP address, lower-cased; IPv6 without brackets.
    pub host: String,
    /// TCP port: the URL's, or 443 for `https` and 80 for `http`.
    pub port: u16,
    /// Path, always starting with `/` (`/` when the URL had none).
    pub path: String,
}

impl Endpoint {
    /// Parses an `http://` or `https://` URL (the scheme is case-insensitive).
    ///
    /// Rejected, each with its own [`UrlError`]: any other scheme, user information
    /// (`user:password@`), a query or fragment, an empty or malformed host, a port that is not
    /// a number from 1 to 65535, and a path with bytes that must be percent-encoded.
    pub fn parse(url: &str) -> Result<Endpoint, UrlError> {
        let (scheme, rest) = url.split_once("://").ok_or(UrlError::MissingScheme)?;
        let tls = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(UrlError::UnsupportedScheme {
                scheme: scheme.to_owned(),
            });
        };
        match rest.find(['?', '#']) {
            Some(at) if rest[at..].starts_with('?') => return Err(UrlError::Query),
            Some(_) => return Err(UrlError::Fragment),
            None => {}
        }
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            None => default_port(tls),
            Some(text) => parse_port(text)?,
        };
        let path = if path.is_empty() { "/" } else { path };
        check_path(path)?;
        Ok(Endpoint {
            tls,
            host,
            port,
            path: path.to_owned(),
        })
    }

    /// `"https"` or `"http"`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// Whether the host is this machine: `localhost` (or a name under `.localhost`), an IPv4
    /// address in `127.0.0.0/8`, or `::1`.
    pub fn is_loopback(&self) -> bool {
        let host = self.host.as_str();
        host == "localhost"
            || host.ends_with(".localhost")
            || host
                .parse::<core::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// Whether this is plain `http://` to a host that is not loopback: the signed request
    /// (its `Authorization` header) and every message would travel in clear over the network.
    /// Worth a warning when a stream starts.
    pub fn is_cleartext_remote(&self) -> bool {
        !self.tls && !self.is_loopback()
    }

    /// Whether the port is the scheme's default (443 for `https`, 80 for `http`).
    pub fn is_default_port(&self) -> bool {
        self.port == default_port(self.tls)
    }

    /// The `Host` header value: the host, bracketed if IPv6, with `:port` when the port is
    /// not the scheme's default.
    pub fn host_header(&self) -> String {
        let mut out = bracketed(&self.host);
        if !self.is_default_port() {
            out.push(':');
            out.push_str(&self.port.to_string());
        }
        out
    }

    /// The URL again: `scheme://host_header/path`, with no query.
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme(), self.host_header(), self.path)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

impl FromStr for Endpoint {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Endpoint::parse(s)
    }
}

/// What was wrong with a URL given to [`Endpoint::parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// No `scheme://` at the start.
    MissingScheme,
    /// A scheme other than `http` or `https`.
    UnsupportedScheme {
        /// The scheme as written.
        scheme: String,
    },
    /// `user@` or `user:password@` before the host.
    UserInfo,
    /// A `?query` part.
    Query,
    /// A `#fragment` part.
    Fragment,
    /// Nothing between `://` and the port or path.
    EmptyHost,
    /// A host that is not a name, an IPv4 address or a bracketed IPv6 address.
    InvalidHost {
        /// The host as written.
        host: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// A port that is not a number from 1 to 65535.
    InvalidPort {
        /// The port as written.
        port: String,
    },
    /// A path byte that must be percent-encoded, or a `%` not followed by two hex digits.
    InvalidPath {
        /// The path as written.
        path: String,
    },
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::MissingScheme => {
                f.write_str("it has no scheme; it must start with http:// or https://")
            }
            UrlError::UnsupportedScheme { scheme } => write!(
                f,
                "unsupported scheme {scheme:?}; only http and https are supported"
            ),
            UrlError::UserInfo => f.write_str(
                "user information (user@ or user:password@) is not allowed; \
                 pass credentials through Credentials",
            ),
            UrlError::Query => f.write_str(
                "a query (?...) is not allowed; the query parameters are built from the config",
            ),
            UrlError::Fragment => f.write_str("a fragment (#...) is not allowed"),
            UrlError::EmptyHost => f.write_str("the host is empty"),
            UrlError::InvalidHost { host, reason } => write!(f, "invalid host {host:?}: {reason}"),
            UrlError::InvalidPort { port } => write!(
                f,
                "invalid port {port:?}; it must be a number from 1 to 65535"
            ),
            UrlError::InvalidPath { path } => write!(
                f,
                "invalid path {path:?}; spaces, control characters, non-ASCII and other \
                 unsafe bytes must be percent-encoded (%XX)"
            ),
        }
    }
}

impl std::error::Error for UrlError {}

/// Why [`Credentials::from_env`] found no credentials. Names the variable, never its value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialsEnvError {
    /// The variable is not set.
    Missing {
        /// Its name, e.g. `SITEBUCKET_TOKEN`.
        variable: &'static str,
    },
    /// The variable is set to the empty string.
    Empty {
        /// Its name.
        variable: &'static str,
    },
    /// The variable's value is not valid Unicode.
    NotUnicode {
        /// Its name.
        variable: &'static str,
    },
}

impl CredentialsEnvError {
    /// The name of the variable at fault.
    pub fn variable(&self) -> &'static str {
        match self {
            Self::Missing { variable }
            | Self::Empty { variable }
            | Self::NotUnicode { variable } => variable,
        }
    }
}

impl fmt::Display for CredentialsEnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { variable } => write!(f, "{variable} is not set"),
            Self::Empty { variable } => write!(f, "{variable} is empty"),
            Self::NotUnicode { variable } => write!(f, "{variable} is not valid Unicode"),
        }
    }
}

impl std::error::Error for CredentialsEnvError {}

/// Why [`ConfigBuilder::build`] (or parsing a [`With`]) refused a value.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The follow list has no ids.
    EmptyFollow,
    /// More than [`FOLLOW_LIMIT`] distinct ids.
    TooManyFollows {
        /// How many distinct ids were given.
        count: usize,
    },
    /// User id 0, which no user has.
    ZeroFollowId,
    /// One of the four credentials, or the Bearer token, is the empty string.
    EmptyCredential {
        /// `"consumer_key"`, `"consumer_secret"`, `"token"`, `"token_secret"` or
        /// `"bearer_token"`.
        which: &'static str,
    },
    /// An option the chosen [`Api`] does not take: `follow`, `with`, `replies`,
    /// `stringify_friend_ids`, `delimited` or `stall_warnings` on a v2 stream, or a
    /// [`V2Param`] on Site Streams.
    NotForApi {
        /// The option's query name.
        option: &'static str,
        /// The API chosen.
        api: Api,
    },
    /// A v2 parameter's value is empty, or not a decimal number where one is needed.
    InvalidV2Param {
        /// The parameter.
        param: V2Param,
        /// The value given.
        value: String,
    },
    /// A `with` value other than `user` or `followings`.
    InvalidWith {
        /// The value as given.
        value: String,
    },
    /// The stream URL did not parse.
    InvalidUrl {
        /// The URL as given, with any user information replaced by `***`.
        url: String,
        /// What was wrong with it.
        error: UrlError,
    },
    /// `max_message_bytes` of 0 or above [`MAX_MESSAGE_BYTES_LIMIT`].
    MaxMessageBytesOutOfRange {
        /// The value given.
        value: usize,
    },
    /// A stall timeout of zero.
    ZeroStallTimeout,
    /// A connect timeout of zero.
    ZeroConnectTimeout,
    /// A jitter fraction outside `0.0..=1.0` (or not a number).
    InvalidJitterFraction {
        /// The fraction given.
        fraction: f64,
    },
    /// `retry_limit(Some(0))`: no attempt would ever be allowed.
    ZeroRetryLimit,
    /// A duration that must be greater than zero is zero: a trust period, or a backoff
    /// step, start or ceiling (a zero wait would reconnect in a hot loop).
    ZeroDuration {
        /// The value's name, e.g. `"network_step"` or `"trust_after"`.
        which: &'static str,
    },
    /// A duration above [`MAX_DURATION`].
    DurationTooLong {
        /// The value's name, e.g. `"stall_timeout"` or `"http_max"`.
        which: &'static str,
        /// The value given.
        value: Duration,
    },
    /// `rate_limit_reset_after` shorter than `trust_after`.
    RateLimitResetBeforeTrust {
        /// The `rate_limit_reset_after` given.
        rate_limit_reset_after: Duration,
        /// The `trust_after` given.
        trust_after: Duration,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::EmptyFollow => write!(
                f,
                "follow list is empty; give 1 to {FOLLOW_LIMIT} user ids"
            ),
            ConfigError::TooManyFollows { count } => write!(
                f,
                "follow list has {count} ids; at most {FOLLOW_LIMIT} are allowed"
            ),
            ConfigError::ZeroFollowId => {
                f.write_str("follow list contains user id 0; user ids start at 1")
            }
            ConfigError::EmptyCredential { which } if *which == "bearer_token" => {
                f.write_str("the bearer token is empty")
            }
            ConfigError::EmptyCredential { which } => {
                write!(f, "credential {which} is empty; all four are required")
            }
            ConfigError::NotForApi { option, api } => {
                write!(f, "{option} is not a parameter of the {api} stream")
            }
            ConfigError::InvalidV2Param { param, value } => {
                let name = param.name();
                if param.is_numeric() {
                    write!(f, "{name} is {value:?}; it must be a decimal number")
                } else {
                    write!(f, "{name} is empty; leave it out instead")
                }
            }
            ConfigError::InvalidWith { value } => write!(
                f,
                "with value {value:?} is invalid; it must be \"user\" or \"followings\""
            ),
            ConfigError::InvalidUrl { url, error } => write!(f, "invalid URL {url:?}: {error}"),
            ConfigError::MaxMessageBytesOutOfRange { value } => write!(
                f,
                "max_message_bytes is {value}; it must be from 1 to {MAX_MESSAGE_BYTES_LIMIT} (1 GiB)"
            ),
            ConfigError::ZeroStallTimeout => {
                f.write_str("stall_timeout is 0s; it must be greater than zero")
            }
            ConfigError::ZeroConnectTimeout => {
                f.write_str("connect_timeout is 0s; it must be greater than zero")
            }
            ConfigError::InvalidJitterFraction { fraction } => write!(
                f,
                "jitter fraction is {fraction}; it must be a number from 0.0 to 1.0"
            ),
            ConfigError::ZeroRetryLimit => f.write_str(
                "retry_limit is 0, which allows no attempt; use None for unlimited or at least 1",
            ),
            ConfigError::ZeroDuration { which } => write!(
                f,
                "{which} is 0s; it must be greater than zero (a zero wait would reconnect in a \
                 hot loop)"
            ),
            ConfigError::DurationTooLong { which, value } => write!(
                f,
                "{which} is {value:?}; it must be at most {MAX_DURATION:?} (30 days)"
            ),
            ConfigError::RateLimitResetBeforeTrust {
                rate_limit_reset_after,
                trust_after,
            } => write!(
                f,
                "rate_limit_reset_after is {rate_limit_reset_after:?}; it must be at least \
                 trust_after ({trust_after:?})"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A checked stream configuration. Build one with [`Config::builder`].
#[derive(Clone)]
pub struct Config {
    api: Api,
    follow: Vec<u64>,
    auth: Auth,
    v2_params: Vec<(V2Param, String)>,
    with: With,
    replies_all: bool,
    stringify_friend_ids: bool,
    framing: Framing,
    stall_warnings: bool,
    gzip: bool,
    endpoint: Endpoint,
    max_message_bytes: usize,
    stall_timeout: Duration,
    connect_timeout: Duration,
    backoff: BackoffPolicy,
    jitter: Option<Jitter>,
    retry_limit: Option<u32>,
    extra_root_certs_pem: Vec<u8>,
    rng_seed: Option<u64>,
    trust_after: Duration,
    rate_limit_reset_after: Duration,
}

impl Config {
    /// Starts a config for the users `follow`, signed with `credentials`; every other value
    /// has its default until a [`ConfigBuilder`] setter changes it.
    pub fn builder(
        follow: impl IntoIterator<Item = u64>,
        credentials: Credentials,
    ) -> ConfigBuilder {
        ConfigBuilder {
            api: Api::SiteStreams,
            follow: follow.into_iter().collect(),
            auth: Auth::OAuth1(credentials),
            v2_params: Vec::new(),
            with: With::default(),
            replies_all: false,
            stringify_friend_ids: false,
            framing: Framing::default(),
            stall_warnings: false,
            gzip: false,
            url: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            backoff: BackoffPolicy::default(),
            jitter: None,
            retry_limit: None,
            extra_root_certs_pem: Vec::new(),
            rng_seed: None,
            trust_after: DEFAULT_TRUST_AFTER,
            rate_limit_reset_after: DEFAULT_RATE_LIMIT_RESET_AFTER,
        }
    }

    /// Starts a config for an X API v2 stream (`api` is [`Api::V2Filtered`] or
    /// [`Api::V2Sample`]) signed in with a Bearer token: no follow list, the API's default
    /// URL, and every other value at its default until a setter changes it.
    pub fn v2_builder(api: Api, token: BearerToken) -> ConfigBuilder {
        let mut builder = Config::builder([], Credentials::new("", "", "", ""));
        builder.api = api;
        builder.auth = Auth::Bearer(token);
        builder
    }

    /// A builder holding every value of this config, e.g. to make a stream with another
    /// follow list. Its retry limit counts as set explicitly.
    pub fn to_builder(&self) -> ConfigBuilder {
        ConfigBuilder {
            api: self.api,
            follow: self.follow.clone(),
            auth: self.auth.clone(),
            v2_params: self.v2_params.clone(),
            with: self.with,
            replies_all: self.replies_all,
            stringify_friend_ids: self.stringify_friend_ids,
            framing: self.framing,
            stall_warnings: self.stall_warnings,
            gzip: self.gzip,
            url: Some(self.endpoint.url()),
            max_message_bytes: self.max_message_bytes,
            stall_timeout: self.stall_timeout,
            connect_timeout: self.connect_timeout,
            backoff: self.backoff.clone(),
            jitter: self.jitter,
            retry_limit: Some(self.retry_limit),
            extra_root_certs_pem: self.extra_root_certs_pem.clone(),
            rng_seed: self.rng_seed,
            trust_after: self.trust_after,
            rate_limit_reset_after: self.rate_limit_reset_after,
        }
    }

    /// Which streaming API the config speaks.
    pub fn api(&self) -> Api {
        self.api
    }

    /// The followed user ids: sorted, without duplicates, 1 to [`FOLLOW_LIMIT`] of them on
    /// Site Streams; none on a v2 stream.
    pub fn follow(&self) -> &[u64] {
        &self.follow
    }

    /// How requests sign in.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The OAuth 1.0a credentials, when requests sign in with them (`None` with a Bearer
    /// token).
    pub fn credentials(&self) -> Option<&Credentials> {
        self.auth.credentials()
    }

    /// The v2 query parameters set, in the order they are sent (none on Site Streams).
    pub fn v2_params(&self) -> &[(V2Param, String)] {
        &self.v2_params
    }

    /// The `with` parameter.
    pub fn with(&self) -> With {
        self.with
    }

    /// Whether `replies=all` is sent.
    pub fn replies_all(&self) -> bool {
        self.replies_all
    }

    /// Whether `stringify_friend_ids=true` is sent.
    pub fn stringify_friend_ids(&self) -> bool {
        self.stringify_friend_ids
    }

    /// How the body is split into messages; [`Framing::Length`] sends `delimited=length`.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Whether `stall_warnings=true` is sent.
    pub fn stall_warnings(&self) -> bool {
        self.stall_warnings
    }

    /// Whether `Accept-Encoding: deflate, gzip` is sent and the body decoded.
    pub fn gzip(&self) -> bool {
        self.gzip
    }

    /// Where the stream connects.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The stream URL without its query.
    pub fn url(&self) -> String {
        self.endpoint.url()
    }

    /// Longest message payload accepted, without its trailing CRLF.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// No byte for this long, before or after the response head, means a stall.
    pub fn stall_timeout(&self) -> Duration {
        self.stall_timeout
    }

    /// How long a connection attempt may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The reconnect policy.
    pub fn backoff(&self) -> &BackoffPolicy {
        &self.backoff
    }

    /// Seeded jitter applied to each wait, if any.
    pub fn jitter(&self) -> Option<Jitter> {
        self.jitter
    }

    /// Consecutive failed attempts after which the stream gives up; `None` is unlimited.
    pub fn retry_limit(&self) -> Option<u32> {
        self.retry_limit
    }

    /// Extra trusted root certificates, PEM, as given (parsed by the TLS layer).
    pub fn extra_root_certs_pem(&self) -> &[u8] {
        &self.extra_root_certs_pem
    }

    /// Seed of the RNG that draws OAuth nonces, if one was set. Without one, each
    /// [`SiteStream`](crate::SiteStream) and [`ControlCall`](crate::ControlCall) draws its
    /// seed from the operating system, so no two sign with the same nonces.
    pub fn rng_seed(&self) -> Option<u64> {
        self.rng_seed
    }

    /// How long a connection must stay up after its `200` head to earn trust, if no real
    /// message earned it sooner. Earning trust resets the failure count and the network and
    /// HTTP backoff sequences.
    pub fn trust_after(&self) -> Duration {
        self.trust_after
    }

    /// How long a connection must stay up after its `200` head before the 420/429 backoff
    /// sequence is forgotten (at least [`trust_after`](Self::trust_after)).
    pub fn rate_limit_reset_after(&self) -> Duration {
        self.rate_limit_reset_after
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured, so a new field cannot be left out (secrets are redacted below).
        let Self {
            api,
            follow,
            auth,
            v2_params,
            with,
            replies_all,
            stringify_friend_ids,
            framing,
            stall_warnings,
            gzip,
            endpoint,
            max_message_bytes,
            stall_timeout,
            connect_timeout,
            backoff,
            jitter,
            retry_limit,
            extra_root_certs_pem,
            rng_seed,
            trust_after,
            rate_limit_reset_after,
        } = self;
        f.debug_struct("Config")
            .field("api", api)
            .field("follow", follow)
            .field("auth", auth)
            .field("v2_params", v2_params)
            .field("with", with)
            .field("replies_all", replies_all)
            .field("stringify_friend_ids", stringify_friend_ids)
            .field("framing", framing)
            .field("stall_warnings", stall_warnings)
            .field("gzip", gzip)
            .field("endpoint", endpoint)
            .field("max_message_bytes", max_message_bytes)
            .field("stall_timeout", stall_timeout)
            .field("connect_timeout", connect_timeout)
            .field("backoff", backoff)
            .field("jitter", jitter)
            .field("retry_limit", retry_limit)
            .field(
                "extra_root_certs_pem",
                &format_args!("<{} bytes>", extra_root_certs_pem.len()),
            )
            .field("rng_seed", rng_seed)
            .field("trust_after", trust_after)
            .field("rate_limit_reset_after", rate_limit_reset_after)
            .finish()
    }
}

/// Collects a [`Config`]'s values; [`ConfigBuilder::build`] checks them.
///
/// Every setter takes and returns the builder, so calls chain.
#[derive(Clone)]
pub struct ConfigBuilder {
    api: Api,
    follow: Vec<u64>,
    auth: Auth,
    /// Sorted by parameter, one value each.
    v2_params: Vec<(V2Param, String)>,
    with: With,
    replies_all: bool,
    stringify_friend_ids: bool,
    framing: Framing,
    stall_warnings: bool,
    gzip: bool,
    /// `None`: the API's default URL.
    url: Option<String>,
    max_message_bytes: usize,
    stall_timeout: Duration,
    connect_timeout: Duration,
    backoff: BackoffPolicy,
    jitter: Option<Jitter>,
    /// `None`: not set, so the policy's default applies.
    retry_limit: Option<Option<u32>>,
    extra_root_certs_pem: Vec<u8>,
    rng_seed: Option<u64>,
    trust_after: Duration,
    rate_limit_reset_after: Duration,
}

impl ConfigBuilder {
    /// Replaces the follow list.
    pub fn follow(mut self, follow: impl IntoIterator<Item = u64>) -> Self {
        self.follow = follow.into_iter().collect();
        self
    }

    /// Signs in with these OAuth 1.0a credentials (replacing any Bearer token).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.auth = Auth::OAuth1(credentials);
        self
    }

    /// Signs in with a Bearer token (replacing any OAuth 1.0a credentials).
    pub fn bearer_token(mut self, token: BearerToken) -> Self {
        self.auth = Auth::Bearer(token);
        self
    }

    /// How requests sign in.
    pub fn auth(mut self, auth: impl Into<Auth>) -> Self {
        self.auth = auth.into();
        self
    }

    /// Which streaming API the config speaks (default [`Api::SiteStreams`]). Without an
    /// explicit [`url`](Self::url), the API's [default URL](Api::default_url) is used.
    pub fn api(mut self, api: Api) -> Self {
        self.api = api;
        self
    }

    /// Sets a v2 query parameter to `value`, sent as given (replacing an earlier value).
    /// Only v2 streams take them.
    pub fn v2_param(mut self, param: V2Param, value: impl Into<String>) -> Self {
        let value = value.into();
        match self.v2_params.binary_search_by_key(&param, |(p, _)| *p) {
            Ok(at) => self.v2_params[at].1 = value,
            Err(at) => self.v2_params.insert(at, (param, value)),
        }
        self
    }

    /// The `with` parameter (default [`With::User`]).
    pub fn with(mut self, with: With) -> Self {
        self.with = with;
        self
    }

    /// Send `replies=all` (default off).
    pub fn replies_all(mut self, on: bool) -> Self {
        self.replies_all = on;
        self
    }

    /// Send `stringify_friend_ids=true` (default off).
    pub fn stringify_friend_ids(mut self, on: bool) -> Self {
        self.stringify_friend_ids = on;
        self
    }

    /// The body framing (default [`Framing::Crlf`]); [`Framing::Length`] sends
    /// `delimited=length`.
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Send `stall_warnings=true` (default off).
    pub fn stall_warnings(mut self, on: bool) -> Self {
        self.stall_warnings = on;
        self
    }

    /// Ask for a compressed body with `Accept-Encoding: deflate, gzip` (default off).
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }

    /// The stream URL, `http://` or `https://` (default: the API's, [`DEFAULT_URL`] for
    /// Site Streams).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Longest message payload accepted, from 1 to [`MAX_MESSAGE_BYTES_LIMIT`]
    /// (default [`DEFAULT_MAX_MESSAGE_BYTES`]).
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// No byte for this long means a stall; non-zero (default [`DEFAULT_STALL_TIMEOUT`]).
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// How long a connection attempt may take; non-zero
    /// (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The reconnect policy (default [`BackoffPolicy::Twitter`]).
    pub fn backoff(mut self, policy: BackoffPolicy) -> Self {
        self.backoff = policy;
        self
    }

    /// Seeded jitter on each wait; the fraction must be within `0.0..=1.0` (default none).
    pub fn jitter(mut self, jitter: Option<Jitter>) -> Self {
        self.jitter = jitter;
        self
    }

    /// Give up after this many consecutive failed attempts; `None` is unlimited.
    ///
    /// When never called, the limit is `None` for the Twitter policy and
    /// `Some(`[`RETRY_LIMIT`]`)` for the squared one. `Some(0)` is an error.
    pub fn retry_limit(mut self, limit: Option<u32>) -> Self {
        self.retry_limit = Some(limit);
        self
    }

    /// Extra trusted root certificates, PEM (default none). Stored as given; the TLS layer
    /// parses them.
    pub fn extra_root_certs_pem(mut self, pem: Vec<u8>) -> Self {
        self.extra_root_certs_pem = pem;
        self
    }

    /// Seed of the RNG that draws OAuth nonces, for reproducible requests (tests, the
    /// simulator). Default `None`: each stream and control call draws its seed from the
    /// operating system, so no two processes (or streams) sign with the same nonces.
    pub fn rng_seed(mut self, seed: impl Into<Option<u64>>) -> Self {
        self.rng_seed = seed.into();
        self
    }

    /// How long a connection must stay up after its `200` head to earn trust when no real
    /// message earned it sooner; from more than zero to [`MAX_DURATION`]
    /// (default [`DEFAULT_TRUST_AFTER`]). Until a connection earns trust, its end counts as
    /// a failed attempt: it backs off along its sequence and counts toward the retry limit.
    pub fn trust_after(mut self, period: Duration) -> Self {
        self.trust_after = period;
        self
    }

    /// How long a connection must stay up after its `200` head before the 420/429 backoff
    /// sequence is forgotten; at least [`trust_after`](Self::trust_after) and at most
    /// [`MAX_DURATION`] (default [`DEFAULT_RATE_LIMIT_RESET_AFTER`]).
    pub fn rate_limit_reset_after(mut self, period: Duration) -> Self {
        self.rate_limit_reset_after = period;
        self
    }

    /// Checks every value and returns the config, or the first rule broken.
    ///
    /// The follow list is sorted and stripped of duplicates before it is counted.
    pub fn build(self) -> Result<Config, ConfigError> {
        let mut follow = self.follow;
        follow.sort_unstable();
        follow.dedup();
        if self.api.is_v2() {
            let site_only = [
                ("follow", !follow.is_empty()),
                ("with", self.with != With::User),
                ("replies", self.replies_all),
                ("stringify_friend_ids", self.stringify_friend_ids),
                ("delimited", self.framing != Framing::Crlf),
                ("stall_warnings", self.stall_warnings),
            ];
            if let Some((option, _)) = site_only.into_iter().find(|(_, set)| *set) {
                return Err(ConfigError::NotForApi {
                    option,
                    api: self.api,
                });
            }
            for (param, value) in &self.v2_params {
                let numeric_ok = !param.is_numeric() || value.bytes().all(|b| b.is_ascii_digit());
                if value.is_empty() || !numeric_ok {
                    return Err(ConfigError::InvalidV2Param {
                        param: *param,
                        value: value.clone(),
                    });
                }
            }
        } else {
            if let Some((param, _)) = self.v2_params.first() {
                return Err(ConfigError::NotForApi {
                    option: param.name(),
                    api: self.api,
                });
            }
            if follow.is_empty() {
                return Err(ConfigError::EmptyFollow);
            }
            if follow.len() > FOLLOW_LIMIT {
                return Err(ConfigError::TooManyFollows {
                    count: follow.len(),
                });
            }
            if follow.first() == Some(&0) {
                return Err(ConfigError::ZeroFollowId);
            }
        }
        if let Some(which) = self.auth.first_empty() {
            return Err(ConfigError::EmptyCredential { which });
        }
        let url = self.url.as_deref().unwrap_or(self.api.default_url());
        let endpoint = Endpoint::parse(url).map_err(|error| ConfigError::InvalidUrl {
            url: redact_userinfo(url),
            error,
        })?;
        if self.max_message_bytes == 0 || self.max_message_bytes > MAX_MESSAGE_BYTES_LIMIT {
            return Err(ConfigError::MaxMessageBytesOutOfRange {
                value: self.max_message_bytes,
            });
        }
        if self.stall_timeout.is_zero() {
            return Err(ConfigError::ZeroStallTimeout);
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::ZeroConnectTimeout);
        }
        check_durations(
            &self.backoff,
            &[
                ("stall_timeout", self.stall_timeout),
                ("connect_timeout", self.connect_timeout),
                ("trust_after", self.trust_after),
                ("rate_limit_reset_after", self.rate_limit_reset_after),
            ],
        )?;
        if self.rate_limit_reset_after < self.trust_after {
            return Err(ConfigError::RateLimitResetBeforeTrust {
                rate_limit_reset_after: self.rate_limit_reset_after,
                trust_after: self.trust_after,
            });
        }
        if let Some(jitter) = self.jitter {
            // `contains` is false for NaN, so this also rejects NaN and the infinities.
            if !(0.0..=1.0).contains(&jitter.fraction) {
                return Err(ConfigError::InvalidJitterFraction {
                    fraction: jitter.fraction,
                });
            }
        }
        let retry_limit = match self.retry_limit {
            Some(Some(0)) => return Err(ConfigError::ZeroRetryLimit),
            Some(explicit) => explicit,
            None => match self.backoff {
                BackoffPolicy::Squared(_) => Some(RETRY_LIMIT),
                BackoffPolicy::Twitter(_) => None,
            },
        };
        Ok(Config {
            api: self.api,
            follow,
            auth: self.auth,
            v2_params: self.v2_params,
            with: self.with,
            replies_all: self.replies_all,
            stringify_friend_ids: self.stringify_friend_ids,
            framing: self.framing,
            stall_warnings: self.stall_warnings,
            gzip: self.gzip,
            endpoint,
            max_message_bytes: self.max_message_bytes,
            stall_timeout: self.stall_timeout,
            connect_timeout: self.connect_timeout,
            backoff: self.backoff,
            jitter: self.jitter,
            retry_limit,
            extra_root_certs_pem: self.extra_root_certs_pem,
            rng_seed: self.rng_seed,
            trust_after: self.trust_after,
            rate_limit_reset_after: self.rate_limit_reset_after,
        })
    }
}

/// Refuses a zero trust period or backoff value (a zero wait is a hot loop) and any duration
/// above [`MAX_DURATION`]. The timeouts were checked for zero already, with their own errors.
fn check_durations(
    backoff: &BackoffPolicy,
    timing: &[(&'static str, Duration)],
) -> Result<(), ConfigError> {
    let policy: Vec<(&'static str, Duration)> = match backoff {
        BackoffPolicy::Twitter(t) => vec![
            ("network_step", t.network_step),
            ("network_max", t.network_max),
            ("http_start", t.http_start),
            ("http_max", t.http_max),
            ("rate_limit_start", t.rate_limit_start),
            ("rate_limit_max", t.rate_limit_max),
        ],
        BackoffPolicy::Squared(s) => vec![("squared_start", s.start), ("squared_max", s.max)],
    };
    for &(which, value) in timing.iter().chain(&policy) {
        if value.is_zero() {
            return Err(ConfigError::ZeroDuration { which });
        }
        if value > MAX_DURATION {
            return Err(ConfigError::DurationTooLong { which, value });
        }
    }
    Ok(())
}

impl fmt::Debug for ConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured, so a new field cannot be left out (secrets are redacted below).
        let Self {
            api,
            follow,
            auth,
            v2_params,
            with,
            replies_all,
            stringify_friend_ids,
            framing,
            stall_warnings,
            gzip,
            url,
            max_message_bytes,
            stall_timeout,
            connect_timeout,
            backoff,
            jitter,
            retry_limit,
            extra_root_certs_pem,
            rng_seed,
            trust_after,
            rate_limit_reset_after,
        } = self;
        f.debug_struct("ConfigBuilder")
            .field("api", api)
            .field("follow", follow)
            .field("auth", auth)
            .field("v2_params", v2_params)
            .field("with", with)
            .field("replies_all", replies_all)
            .field("stringify_friend_ids", stringify_friend_ids)
            .field("framing", framing)
            .field("stall_warnings", stall_warnings)
            .field("gzip", gzip)
            .field("url", &url.as_deref().map(redact_userinfo))
            .field("max_message_bytes", max_message_bytes)
            .field("stall_timeout", stall_timeout)
            .field("connect_timeout", connect_timeout)
            .field("backoff", backoff)
            .field("jitter", jitter)
            .field("retry_limit", retry_limit)
            .field(
                "extra_root_certs_pem",
                &format_args!("<{} bytes>", extra_root_certs_pem.len()),
            )
            .field("rng_seed", rng_seed)
            .field("trust_after", trust_after)
            .field("rate_limit_reset_after", rate_limit_reset_after)
            .finish()
    }
}

fn default_port(tls: bool) -> u16 {
    if tls {
        443
    } else {
        80
    }
}

/// `host`, in brackets when it is an IPv6 address (the only hosts containing `:`).
pub(crate) fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Splits an authority (without user information) into a lower-cased host and the port text.
fn split_host_port(authority: &str) -> Result<(String, Option<&str>), UrlError> {
    if authority.is_empty() {
        return Err(UrlError::EmptyHost);
    }
    if let Some(inner_and_rest) = authority.strip_prefix('[') {
        let invalid = |reason| UrlError::InvalidHost {
            host: authority.to_owned(),
            reason,
        };
        let (inner, after) = inner_and_rest
            .split_once(']')
            .ok_or_else(|| invalid("the IPv6 address has no closing bracket"))?;
        if inner.parse::<Ipv6Addr>().is_err() {
            return Err(invalid("not a valid IPv6 address"));
        }
        let port = if after.is_empty() {
            None
        } else {
            Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| invalid("only :port may follow the closing bracket"))?,
            )
        };
        return Ok((inner.to_ascii_lowercase(), port));
    }
    if authority.bytes().filter(|&b| b == b':').count() > 1 {
        return Err(UrlError::InvalidHost {
            host: authority.to_owned(),
            reason: "an IPv6 address must be written in brackets, like [::1]",
        });
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(UrlError::EmptyHost);
    }
    let name_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if !host.bytes().all(name_byte) {
        return Err(UrlError::InvalidHost {
            host: host.to_owned(),
            reason: "a host name may only hold ASCII letters, digits, '-', '.', '_' and '~'",
        });
    }
    Ok((host.to_ascii_lowercase(), port))
}

fn parse_port(text: &str) -> Result<u16, UrlError> {
    let invalid = || UrlError::InvalidPort {
        port: text.to_owned(),
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(invalid()),
        Ok(port) => Ok(port),
    }
}

/// Whether `b` may appear unescaped in a URL path (RFC 3986 `pchar` or `/`), `%` aside.
pub(crate) fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
        )
}

/// Whether `bytes[at]` is a `%` followed by two hex digits.
pub(crate) fn is_percent_escape(bytes: &[u8], at: usize) -> bool {
    matches!(
        bytes.get(at..at.saturating_add(3)),
        Some([b'%', hi, lo]) if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit()
    )
}

fn check_path(path: &str) -> Result<(), UrlError> {
    let bytes = path.as_bytes();
    let ok = bytes
        .iter()
        .enumerate()
        .all(|(at, &b)| is_path_byte(b) || is_percent_escape(bytes, at));
    if ok {
        Ok(())
    } else {
        Err(UrlError::InvalidPath {
            path: path.to_owned(),
        })
    }
}

/// `url` with anything between `://` and an `@` in the authority replaced by `***`, so a
/// password written into a URL never reaches an error message or `Debug` output.
fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    // `authority_end` is a char boundary: `find` returned the start of an ASCII char.
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;
