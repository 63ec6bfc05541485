//! # sitebucket-proto — the sans-IO Site Streams core
//!
//! This crate contains no networking code and reads no clock. Bytes, the current
//! [`Instant`](std::time::Instant) and the wall-clock seconds used to sign a request are all
//! passed in by the caller. Drivers (std threads, mio, smol, or your own event loop) only
//! move bytes and wait for deadlines.
//!
//! It is fully deterministic once seeded: the one thing it takes from the operating system is
//! the seed of the OAuth nonces, and only when the [`Config`] sets no
//! [`rng_seed`](ConfigBuilder::rng_seed) — so two processes never sign with the same nonces
//! by default (as quinn-proto draws its `rng_seed`). Set a seed, and the same inputs give the
//! same outputs, bit for bit (the simulator and the tests do).

#![cfg_attr(docsrs, feature(doc_cfg))]

// The modules are private: the API is the curated list below. `control`, `message` and `v2`
// stay public as namespaces of the many types a control answer or a decoded message is made
// of.
mod backoff;
mod chunked;
mod config;
mod content;
pub mod control;
mod finality;
mod framer;
pub mod message;
mod parser;
mod pipeline;
mod read_buffer;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod test_cuts;
#[cfg(feature = "tls")]
mod tls;
pub mod v2;

pub use backoff::{Backoff, BackoffPolicy, FailureKind, Jitter, SquaredBackoff, TwitterBackoff};
pub use chunked::ChunkedError;
pub use config::{
    Api, Auth, BearerToken, Config, ConfigBuilder, ConfigError, Credentials, CredentialsEnvError,
    Endpoint, UrlError, V2Param, With, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_RATE_LIMIT_RESET_AFTER, DEFAULT_STALL_TIMEOUT, DEFAULT_TRUST_AFTER, DEFAULT_URL,
    FOLLOW_LIMIT, MAX_DURATION, MAX_MESSAGE_BYTES_LIMIT, RETRY_LIMIT, V2_FILTERED_URL,
    V2_SAMPLE_URL,
};
pub use content::DecodeError;
pub use control::{
    ControlAction, ControlCall, ControlError, ControlPacer, ControlRequest, ControlResponse,
};
pub use framer::FrameError;
pub use message::{Message, ParseError, UserMessage};
pub use parser::{Collect, DefaultParser, Parser};
pub use pipeline::ReadError;
pub use read_buffer::ReadBuffer;
pub use response::{HeadError, MAX_SERVER_TEXT_CHARS};
pub use stream::{
    Action, Outcome, SiteStream, Stats, StreamError, StreamEvent, MAX_RATE_LIMIT_RESET_WAIT,
};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use tls::{parse_pem_roots, TlsConfigError};
pub use v2::{V2Message, V2Parser};

/// The layers under [`SiteStream`] — head parsing, chunked and content decoding, framing,
/// request signing — for the fuzz targets, the benchmarks and the integration tests. Not part
/// of the API: these names may change in any release.
#[doc(hidden)]
pub mod _benchable {
    pub use crate::chunked::{
        ChunkStep, ChunkedDecoder, MAX_SIZE_DIGITS, MAX_SIZE_LINE_BYTES, MAX_TRAILER_BYTES,
        MAX_TRAILER_LINE_BYTES,
    };
    pub use crate::content::{ContentDecoder, MAX_GZIP_TEXT_FIELD};
    pub use crate::framer::{Frame, Framer, MAX_COUNT_DIGITS};
    pub use crate::pipeline::{ResponseReader, DECODE_STEP};
    pub use crate::request::{
        authorized_request, bearer_request, make_nonce, percent_encode, query_pairs,
        signed_request, stream_request, Body, Method, NONCE_LEN, USER_AGENT,
    };
    pub use crate::response::{
        bounded_text, classify, parse_head, BodyKind, ContentEncoding, ResponseHead, StatusClass,
        MAX_HEADERS, MAX_HEAD_BYTES,
    };
}

/// How the response body is split into messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Framing {
    /// Each message ends in `\r\n`; a blank `\r\n` line is a keep-alive (the default).
    #[default]
    Crlf,
    /// `delimited=length`: a decimal byte count (which counts the message and its trailing
    /// `\r\n`), `\r\n`, then exactly that many bytes; blank keep-alive lines may precede a count.
    Length,
}
