//! # sitebucket-std — the blocking driver
//!
//! [`StdDriver`] runs a [`SiteStream`] on blocking std sockets, one thread per stream, under
//! the shared [`ListenThread`] handle (or the [`Monitor`]). [`messages`] turns a stream into a
//! blocking iterator of [`StreamItem`]s (messages and connection events) for the simplest
//! programs.
//!
//! ```no_run
//! use sitebucket_proto::{Config, Credentials, SiteStream};
//! use sitebucket_std::StdDriver;
//! use sitebucket_thread::ListenThread;
//!
//! let credentials = Credentials::new("consumer key", "consumer secret", "token", "token secret");
//! let config = Config::builder([12, 13], credentials).build()?;
//!
//! // A ListenThread: run the stream on its own thread, close it from here.
//! let parser = |message: bytes::Bytes| println!("{}", String::from_utf8_lossy(&message));
//! let mut listener = ListenThread::spawn(StdDriver::new(), SiteStream::new(config.clone()), parser)?;
//! listener.close();
//! println!("ended: {:?}", listener.join());
//!
//! // Or iterate over the messages (`messages_only` skips the connection events).
//! let mut messages = sitebucket_std::messages(SiteStream::new(config))?.messages_only();
//! for message in &mut messages {
//!     println!("{}", String::from_utf8_lossy(&message));
//! }
//! println!("ended: {:?}", messages.outcome());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Host names are looked up on a short-lived thread of their own (`sitebucket-resolve`)
//! while the stream's thread waits for the answer, a stop and the connect deadline at once;
//! [`StdDriver::with_resolver`] takes your own [`Resolver`] (a fixed map, your DNS client).
//!
//! Architecture invariant: the driver makes no protocol decision. It connects where the core
//! says, writes what it transmits, feeds it what arrives and waits until its deadline.
//!
//! [`ListenThread`]: sitebucket_thread::ListenThread
//! [`Monitor`]: sitebucket_thread::Monitor

mod control;
mod driver;
mod messages;

pub use control::{run_control, run_control_with};
pub use driver::StdDriver;
pub use messages::{messages, Closer, Messages, DEFAULT_CAPACITY};
pub use sitebucket_proto::SiteStream;
pub use sitebucket_thread::{MessagesOnly, Resolver, StreamItem};
