//! A scripted Site Streams server for tests, demos and benchmarks — and, with a Bearer token
//! ([`ServerOptions::bearer_token`]), an X API v2 filtered and sample stream server with the
//! rules endpoint (see [`v2`]).
//!
//! It is the independent peer that checks the client: it shares no code with
//! `sitebucket-proto`, verifies each request's OAuth 1.0a HMAC-SHA1 signature with its own
//! implementation, and answers from a [`Scenario`]: per connection attempt, a status, headers,
//! a body of messages, keep-alives, waits and faults, encoded as asked (chunked, gzip or
//! deflate, CRLF or `delimited=length` framing, chunk boundaries anywhere).
//!
//! The scenario logic is pure: a [`Session`] is one connection's state machine, fed request
//! bytes and `now`, drained for response bytes and deadlines — so the simulator can run it in
//! virtual time. [`TestServer`] runs the same sessions on real loopback sockets (plain TCP or
//! TLS with certificates made at start-up), one thread per connection.
//!
//! ```no_run
//! use sitebucket_testserver::{Scenario, ServerOptions, TestServer};
//!
//! let server = TestServer::start(Scenario::builtin("steady").unwrap(), ServerOptions::default())?;
//! println!("stream at {}", server.url());
//! # Ok::<(), std::io::Error>(())
//! ```

mod body;
pub mod control;
pub mod corpus;
mod oauth;
mod rng;
pub mod scenario;
pub mod server;
pub mod session;
pub mod tls;
pub mod v2;

pub use control::{ControlStream, ControlStreams};
pub use oauth::Credentials;
pub use scenario::{
    AfterList, AttemptPlan, BodyEncoding, ChunkPlan, End, Framing, Head, PerUser, PlanGenerator,
    Repeat, Scenario, Step, Transfer, BUILTIN_SCENARIOS, V2_RULE,
};
pub use server::{EndedHook, ServerOptions, TestServer};
pub use session::{AttemptRecord, Output, Session};
pub use v2::{HeldRule, V2Service};

#[cfg(test)]
mod testutil;
