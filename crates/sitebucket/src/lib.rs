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
//! | `smol` | `SmolDriver` and `smol_driver::messages()`, a `futures::Stream` of items | no |
//! | `tokio` | `TokioDriver`, `tokio_driver::spawn` (a task per stream) and `tokio_driver::messages()`, a `futures::Stream` of items | no |
//!
//! Every message source (the std iterator, smol's and tokio's `Messages` stream) yields a [`StreamItem`]:
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
/// Control streams: [`ControlError`] and what the requests answer
/// ([`control::StreamInfo`], [`control::FriendsPage`]).
pub use sitebucket_proto::control;
pub use sitebucket_proto::control::ControlError;
/// Typed messages: [`Message`] and [`UserMessage`], and the kinds inside them
/// ([`message::Tweet`], [`message::Event`], [`message::Warning`], …).
pub use sitebucket_proto::message;
pub use sitebucket_proto::{
    Action, Backoff, BackoffPolicy, Config, ConfigBuilder, ConfigError, Credentials,
    CredentialsEnvError, DefaultParser, Endpoint, FailureKind, Framing, Jitter, Message, Outcome,
    ParseError, Parser, SiteStream, SquaredBackoff, Stats, StreamError, StreamEvent,
    TwitterBackoff, UrlError, UserMessage, With,
};
/// X API v2's filtered and sample streams on the same core: `Config::v2_builder` with a
/// Bearer token, and the typed v2 envelope.
pub use sitebucket_proto::{Api, Auth, BearerToken, V2Message, V2Param, V2Parser};
pub use sitebucket_thread::{
    AnnounceHook, Driver, FailedStream, Finished, ItemSink, ListenThread, MessagesOnly, Monitor,
    MonitorError, MonitoredStream, Observer, ParallelParser, ParallelParserBuilder, Resolver,
    RunHandle, RunState, SharedPacer, SharedParser, Status, StreamItem, ThreadedParser,
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
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use sitebucket_tokio::{self as tokio_driver, TokioDriver};

/// The README's examples, compiled as doctests so they stay true.
#[cfg(all(
    doctest,
    feature = "std",
    feature = "mio",
    feature = "smol",
    feature = "tokio"
))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeExamples;

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler written with the facade's names alone: the typed message, its parse error,
    /// and an owned copy kept past the callback.
    #[test]
    fn a_handler_needs_only_the_facade_names() {
        let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Message<'static>>::new()));
        let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::<ParseError>::new()));
        let (k, e) = (kept.clone(), errors.clone());
        let mut parser =
            DefaultParser::new(
                move |message: Result<Message<'_>, ParseError>| match message {
                    Ok(message) => k.lock().unwrap().push(message.into_owned()),
                    Err(error) => e.lock().unwrap().push(error),
                },
            );
        parser.parse(Bytes::from_static(
            br#"{"for_user":1,"message":{"id":2,"text":"t"}}"#,
        ));
        parser.parse(Bytes::from_static(b"not json"));
        let kept = kept.lock().unwrap();
        match &kept[..] {
            [Message::ForUser {
                for_user: 1,
                message: UserMessage::Tweet(message::Tweet { id: 2, .. }),
            }] => {}
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(errors.lock().unwrap().len(), 1);
    }
}
