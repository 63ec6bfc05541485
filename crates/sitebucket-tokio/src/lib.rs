//! # sitebucket-tokio — the async driver, on tokio
//!
//! Runs a sans-IO [`SiteStream`] over tokio's sockets and timers, never blocking a runtime
//! thread, with the async loop shared with the smol driver (`sitebucket-async`, here on
//! [`Tokio`]). Five ways in:
//!
//! - [`drive`]: the async loop itself, to await inside your own task.
//! - [`spawn`] / [`TokioDriver::spawn_stream`]: a task of its own, as a [`StreamTask`] that
//!   stops the stream when dropped and can be awaited for its end.
//! - [`messages`]: a `futures_core::Stream` of [`StreamItem`]s ([`Messages`]: each
//!   message, each connection event, the outcome last), for
//!   `while let Some(item) = items.next().await`; `messages_only()` for the messages' bytes
//!   alone.
//! - [`TokioDriver`]: a [`Driver`] for [`ListenThread`] and [`Monitor`], running each
//!   stream as a task on a runtime you pass ([`TokioDriver::with_handle`]) or on one it owns.
//! - [`run_control`]: one control request (add or remove users, info) on a socket of its
//!   own, as a future; `TokioDriver` runs it for `ListenThread::add_users` and its siblings.
//!
//! Host names are looked up by a [`Resolver`] (the system's by default) on a short-lived
//! thread of its own, whose answer a oneshot channel hands to the awaiting future: a slow
//! lookup holds up neither a stop, nor the core's connect deadline, nor the runtime. IP
//! literals need no lookup.
//!
//! Every future here is `Send` and stops at once when dropped (cancellation by drop): the
//! socket is closed and a lookup in progress abandoned. No runtime is started behind your
//! back: the futures run on the runtime that polls them, and only [`TokioDriver::new`]
//! owns one (a current-thread runtime on a thread of its own, started on first use).
//!
//! ```no_run
//! use sitebucket_proto::{Config, Credentials, SiteStream};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::builder([12, 13], Credentials::new("ck", "cs", "tk", "ts")).build()?;
//! let parser = |message: bytes::Bytes| println!("{}", String::from_utf8_lossy(&message));
//! let task = sitebucket_tokio::spawn(SiteStream::new(config), parser);
//! tokio::time::sleep(std::time::Duration::from_secs(10)).await;
//! task.close();
//! println!("ended: {:?}", task.await.map(|finished| finished.outcome));
//! # Ok(())
//! # }
//! ```
//!
//! The messages as a `Stream`, driven by the task that polls it:
//!
//! ```no_run
//! use futures_lite::StreamExt;
//! use sitebucket_proto::{Config, Credentials, SiteStream};
//! use sitebucket_tokio::StreamItem;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::builder([12, 13], Credentials::new("ck", "cs", "tk", "ts")).build()?;
//! let mut items = sitebucket_tokio::messages(SiteStream::new(config));
//! while let Some(item) = items.next().await {
//!     match item {
//!         StreamItem::Message(bytes) => println!("{}", String::from_utf8_lossy(&bytes)),
//!         StreamItem::Reconnecting { error, retry_in } => {
//!             eprintln!("{error}; again in {retry_in:?}")
//!         }
//!         StreamItem::Finished(outcome) => eprintln!("ended: {outcome:?}"),
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Architecture invariant: the driver only moves bytes and waits for the core's deadlines;
//! connect and stall timeouts, retries and backoff are all decided by `sitebucket-proto`.
//!
//! [`Monitor`]: sitebucket_thread::Monitor
//! [`SiteStream`]: sitebucket_proto::SiteStream
//! [`Driver`]: sitebucket_thread::Driver

mod driver;
mod runtime;
mod task;

pub use driver::TokioDriver;
pub use runtime::Tokio;
pub use sitebucket_thread::{
    Finished, ListenThread, MessagesOnly, Observer, Resolver, RunState, Status, StreamItem,
};
pub use task::{spawn, spawn_with, StreamTask};

sitebucket_async::driver_api!(
    Tokio,
    "It must be polled inside a tokio runtime with I/O and time enabled (`enable_all`), of either flavour; a run polled outside any runtime ends at once with `Outcome::InvalidConfig` saying so."
);

#[cfg(test)]
mod tests {
    use super::*;
    use sitebucket_proto::control::ControlCall;
    use sitebucket_proto::{Parser, SiteStream};

    fn send<T: Send>(_: &T) {}
    fn send_unpin<T: Send + Unpin>() {}

    /// The futures and handles can move between a multi-thread runtime's workers (checked
    /// at compile time; nothing here runs them).
    #[test]
    fn every_future_and_handle_is_send() {
        send_unpin::<Messages>();
        send_unpin::<StreamTask>();
        send_unpin::<TokioDriver>();
        let config = sitebucket_proto::Config::builder(
            [1],
            sitebucket_proto::Credentials::new("ck", "cs", "t", "ts"),
        )
        .url("http://127.0.0.1:1/1.1/site.json")
        .build()
        .expect("valid config");
        let (mut stream, control) = (SiteStream::new(config.clone()), RunState::new());
        let mut parser = |_: bytes::Bytes| {};
        let parser: &mut dyn Parser = &mut parser;
        let resolver = Resolver::system();
        send(&drive(&mut stream, parser, &control));
        send(&drive_with(&mut stream, parser, &control, &resolver));
        let call = || {
            ControlCall::for_stream(
                &config,
                Some("sb_0"),
                sitebucket_proto::control::ControlRequest::info(),
            )
        };
        send(&run_control_with(call(), &resolver));
        send(&run_control(call()));
    }
}
