//! # sitebucket
//!
//! A client for Twitter-style Site Streams, as a sans-IO core ([`proto`]) with thin drivers
//! that share one handle, [`ListenThread`]. This crate only re-exports: the core's names, the
//! shared handle, and each driver behind its feature.
//!
//! | feature | enables | default |
//! |---|---|---|
//! | `std` | `StdDriver` and the blocking iterator `std_driver::messages` | yes |
//! | `tls` | `https://` URLs: rustls inside the core, for every driver | yes |
//! | `mio` | `MioDriver`: many streams on one event-loop thread | no |
//! | `smol` | `SmolDriver` and `smol_driver::MessageStream`, a `futures::Stream` of items | no |
//!
//! Every message source (the std iterator, smol's `MessageStream`) yields a [`StreamItem`]:
//! each message, each connection event in order with them, and the run's [`Outcome`] last;
//! [`MessagesOnly`] keeps just the messages' bytes.
//!
//! ```no_run
//! # #[cfg(feature = "std")] {
//! use sitebucket::{Config, Credentials, ListenThread, SiteStream, StdDriver};
//!
//! let config = Config::builder([12, 13], Credentials::new("ck", "cs", "token", "ts")).build()?;
//! let parser = |message: sitebucket::Bytes| println!("{}", String::from_utf8_lossy(&message));
//! let mut thread = ListenThread::spawn(StdDriver::default(), SiteStream::new(config), parser)?;
//! println!("healthy: {}", thread.connection_healthy());
//! thread.close();
//! println!("ended: {:?}", thread.join());
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

pub use bytes::Bytes;
pub use sitebucket_proto as proto;
pub use sitebucket_proto::{
    Action, BackoffPolicy, Config, ConfigBuilder, ConfigError, Credentials, DefaultParser, Event,
    Message, Outcome, Parser, SiteStream, SquaredBackoff, Stats, StreamError, TwitterBackoff, With,
};
/// X API v2's filtered and sample streams on the same core: `Config::v2_builder` with a
/// Bearer token, and the typed v2 envelope.
pub use sitebucket_proto::{Api, Auth, BearerToken, V2Message, V2Param};
pub use sitebucket_thread::{
    Control, Driver, FailedStream, ItemSink, ListenThread, MessagesOnly, Monitor, Resolver, Status,
    StreamItem, ThreadedParser,
};

#[cfg(feature = "mio")]
#[cfg_attr(docsrs, doc(cfg(feature = "mio")))]
pub use sitebucket_mio::{self as mio_driver, MioDriver};
#[cfg(feature = "smol")]
#[cfg_attr(docsrs, doc(cfg(feature = "smol")))]
pub use sitebucket_smol::{self as smol_driver, SmolDriver};
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
pub use sitebucket_std::{self as std_driver, StdDriver};

/// The README's examples, compiled as doctests so they stay true.
#[cfg(all(doctest, feature = "std", feature = "mio", feature = "smol"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeExamples;
