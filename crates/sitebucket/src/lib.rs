//! # sitebucket
//!
//! A client for Twitter-style Site Streams, as a sans-IO core ([`proto`]) with thin drivers
//! that share one handle, [`ListenThread`]. This crate only re-exports: the names a user of
//! the original Python library expects, and each driver behind its feature (`std`, `mio`,
//! `smol` by default; `tokio` on request).
//!
//! ```no_run
//! use sitebucket::{Config, Credentials, ListenThread, SiteStream, StdDriver};
//!
//! let config = Config::builder([12, 13], Credentials::new("ck", "cs", "token", "ts")).build()?;
//! let parser = |message: sitebucket::Bytes| println!("{}", String::from_utf8_lossy(&message));
//! let mut thread = ListenThread::spawn(StdDriver::default(), SiteStream::new(config), parser)?;
//! println!("healthy: {}", thread.connection_healthy());
//! thread.close();
//! println!("ended: {:?}", thread.join());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use bytes::Bytes;
pub use sitebucket_proto as proto;
pub use sitebucket_proto::{
    Action, BackoffPolicy, Config, ConfigBuilder, ConfigError, Credentials, DefaultParser, Event,
    Message, Outcome, Parser, SiteStream, SquaredBackoff, Stats, StreamError, TwitterBackoff, With,
};
pub use sitebucket_thread::{
    Control, Driver, ListenThread, Monitor, Resolver, Status, ThreadedParser,
};

#[cfg(feature = "mio")]
pub use sitebucket_mio::{self as mio_driver, MioDriver};
#[cfg(feature = "smol")]
pub use sitebucket_smol::{self as smol_driver, SmolDriver};
#[cfg(feature = "std")]
pub use sitebucket_std::{self as std_driver, StdDriver};
#[cfg(feature = "tokio")]
pub use sitebucket_tokio::{self as tokio_driver, TokioDriver};

/// The README's examples, compiled as doctests so they stay true.
#[cfg(all(doctest, feature = "std", feature = "mio", feature = "smol"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeExamples;
