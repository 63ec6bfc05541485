//! # sitebucket-smol — the async driver, on smol
//!
//! Runs a sans-IO [`SiteStream`] over smol's sockets and timers, with the async loop shared
//! with the tokio driver (`sitebucket-async`, here on [`Smol`]). Four ways in:
//!
//! - [`drive`]: the async loop itself, for your own executor or task.
//! - [`SmolDriver`]: a [`Driver`] for [`ListenThread`] (the handle with `close`, `restart`,
//!   `join` and live stats), running each stream with `smol::block_on` on its own thread.
//! - [`messages`]: the messages and connection events as a `futures_core::Stream` of
//!   [`StreamItem`]s ([`Messages`]), for `while let Some(item) = items.next().await`.
//! - [`run_control`]: one control request (add or remove users, info) on a socket of its
//!   own, as a future; `SmolDriver` runs it for `ListenThread::add_users` and its siblings.
//!
//! Host names are looked up by a [`Resolver`] (the system's by default;
//! [`SmolDriver::with_resolver`], [`drive_with`], [`messages_with`] and
//! [`run_control_with`] take your own) on its small pool of lookup threads, whose answer the
//! future awaits: a slow lookup holds up neither a stop, nor the core's connect deadline,
//! nor the executor. IP literals need no lookup.
//!
//! ```no_run
//! use sitebucket_proto::{Config, Credentials, SiteStream};
//! use sitebucket_smol::SmolDriver;
//! use sitebucket_thread::ListenThread;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::builder([12, 13], Credentials::new("ck", "cs", "tk", "ts")).build()?;
//! let parser = |message: bytes::Bytes| println!("{}", String::from_utf8_lossy(&message));
//! let mut listen = ListenThread::spawn(SmolDriver::new(), SiteStream::new(config), parser)?;
//! std::thread::sleep(std::time::Duration::from_secs(10));
//! listen.close();
//! println!("ended: {:?}", listen.join());
//! # Ok(())
//! # }
//! ```
//!
//! The messages as a `Stream`:
//!
//! ```no_run
//! use futures_lite::StreamExt;
//! use sitebucket_proto::{Config, Credentials, SiteStream};
//! use sitebucket_smol::StreamItem;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::builder([12, 13], Credentials::new("ck", "cs", "tk", "ts")).build()?;
//! smol::block_on(async {
//!     let mut items = sitebucket_smol::messages(SiteStream::new(config));
//!     while let Some(item) = items.next().await {
//!         match item {
//!             StreamItem::Message(bytes) => println!("{}", String::from_utf8_lossy(&bytes)),
//!             StreamItem::Reconnecting { error, retry_in } => {
//!                 eprintln!("{error}; again in {retry_in:?}")
//!             }
//!             StreamItem::Finished(outcome) => eprintln!("ended: {outcome:?}"),
//!             _ => {}
//!         }
//!     }
//! });
//! # Ok(())
//! # }
//! ```
//!
//! Architecture invariant: the driver only moves bytes and waits for the core's deadlines;
//! connect and stall timeouts, retries and backoff are all decided by `sitebucket-proto`.

mod runtime;

use std::sync::Arc;

use sitebucket_proto::control::{ControlCall, ControlError, ControlResponse};
use sitebucket_proto::Outcome;
use sitebucket_proto::{Parser, SiteStream};
use sitebucket_thread::Driver;

pub use runtime::Smol;
pub use sitebucket_thread::{
    ListenThread, MessagesOnly, Observer, Resolver, RunState, Status, StreamItem,
};

sitebucket_async::driver_api!(
    Smol,
    "Any executor that lets smol's reactor run can poll it (`smol::block_on`, a `smol::Executor` task, `async_io::block_on`)."
);

/// The smol [`Driver`]: [`run`](Driver::run) is `smol::block_on(drive_with(..))` in the
/// calling thread, and [`spawn`](Driver::spawn) (the trait's default) does the same on a new
/// thread named `sitebucket-smol`, which has ended once the run's handle is joined.
///
/// Do not call `run` from inside an async task: it blocks. Await [`drive_with`] there
/// instead.
///
/// Host names are resolved by the driver's [`Resolver`] (the system's unless
/// [`with_resolver`](SmolDriver::with_resolver) says otherwise), for streams and control
/// calls alike, on the resolver's bounded pool of lookup threads; the answer is raced
/// against a stop and the core's deadline: a lookup interrupted by either finishes in the
/// background and its answer is dropped. IP literals need no lookup.
///
/// Nothing per stream outlives a run but such a lookup. smol itself keeps one process-wide
/// helper: the `async-io` reactor thread, started on first use.
#[derive(Debug, Clone, Default)]
pub struct SmolDriver {
    resolver: Resolver,
}

impl SmolDriver {
    /// The driver with the system resolver.
    pub fn new() -> Self {
        Self::default()
    }

    /// The driver resolving host names with `resolver` (your own DNS, a fixed map), for
    /// streams and control calls alike.
    pub fn with_resolver(resolver: Resolver) -> Self {
        Self { resolver }
    }

    /// The resolver the driver looks host names up with.
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }
}

impl Driver for SmolDriver {
    fn name(&self) -> &'static str {
        "smol"
    }

    fn run(
        &self,
        stream: &mut SiteStream,
        parser: &mut dyn Parser,
        control: &Arc<RunState>,
    ) -> Outcome {
        async_io::block_on(drive_with(stream, parser, control, &self.resolver))
    }

    /// `smol::block_on(`[`run_control_with`]`(call, resolver))` in the calling thread: a socket
    /// of its own, never the stream's. Do not call it from inside an async task (it blocks):
    /// await [`run_control_with`] there instead.
    fn control(&self, call: ControlCall) -> Result<ControlResponse, ControlError> {
        async_io::block_on(run_control_with(call, &self.resolver))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn the_driver_keeps_its_resolver() {
        assert!(SmolDriver::new().resolver().is_system());
        assert!(SmolDriver::default().resolver().is_system());
        let fixed = Resolver::fixed([("stream.test", IpAddr::from([127, 0, 0, 9]))]);
        let driver = SmolDriver::with_resolver(fixed);
        assert!(!driver.resolver().is_system());
        assert_eq!(
            driver.clone().resolver().resolve("stream.test", 7).unwrap(),
            vec![std::net::SocketAddr::from(([127, 0, 0, 9], 7))],
            "a clone shares the resolver"
        );
        assert_eq!(driver.name(), "smol");
    }
}
