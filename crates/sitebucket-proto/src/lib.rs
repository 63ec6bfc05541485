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

pub mod backoff;
pub mod chunked;
pub mod config;
pub mod content;
pub mod control;
mod finality;
pub mod framer;
pub mod message;
pub mod parser;
pub mod pipeline;
pub mod request;
pub mod response;
pub mod stream;
#[cfg(test)]
mod test_cuts;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
pub mod v2;

pub use backoff::{Backoff, BackoffPolicy, FailureKind, Jitter, SquaredBackoff, TwitterBackoff};
pub use chunked::{ChunkStep, ChunkedDecoder, ChunkedError};
pub use config::{
    Api, Auth, BearerToken, Config, ConfigBuilder, ConfigError, Credentials, CredentialsEnvError,
    Endpoint, UrlError, V2Param, With,
};
pub use content::{ContentDecoder, DecodeError};
pub use control::{
    ControlAction, ControlCall, ControlError, ControlPacer, ControlRequest, ControlResponse,
};
pub use framer::{Frame, FrameError, Framer};
pub use message::{Message, ParseError, UserMessage};
pub use parser::{Collect, DefaultParser, Parser};
pub use pipeline::{ReadError, ResponseReader};
pub use request::{bearer_request, make_nonce, signed_request, stream_request, Method};
pub use response::{
    classify, parse_head, BodyKind, ContentEncoding, HeadError, ResponseHead, StatusClass,
};
pub use stream::{Action, Event, Outcome, SiteStream, Stats, StreamError};
pub use v2::{V2Message, V2Parser};

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
