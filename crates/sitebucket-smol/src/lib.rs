//! # sitebucket-smol — the async driver, on smol
//!
//! Runs a sans-IO [`SiteStream`] over smol's sockets and timers. Four ways in:
//!
//! - [`drive`]: the async loop itself, for your own executor or task.
//! - [`SmolDriver`]: a [`Driver`] for [`ListenThread`] (the handle with `close`, `restart`,
//!   `join` and live stats), running each stream with `smol::block_on` on its own thread.
//! - [`MessageStream`]: the messages as a `futures_core::Stream`, for
//!   `while let Some(message) = messages.next().await`.
//! - [`control`]: one control request (add or remove users, info) on a socket of its own,
//!   as a future; `SmolDriver` runs it for `ListenThread::add_users` and its siblings.
//!
//! ```no_run
//! use sitebucket_proto::{Config, Credentials, SiteStream};
//! use sitebucket_smol::SmolDriver;
//! use sitebucket_thread::ListenThread;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::builder([12, 13], Credentials::new("ck", "cs", "tk", "ts")).build()?;
//! let parser = |message: bytes::Bytes| println!("{}", String::from_utf8_lossy(&message));
//! let mut listen = ListenThread::spawn(SmolDriver, SiteStream::new(config), parser)?;
//! std::thread::sleep(std::time::Duration::from_secs(10));
//! listen.close();
//! println!("ended: {:?}", listen.join());
//! # Ok(())
//! # }
//! ```
//!
//! Architecture invariant: the driver only moves bytes and waits for the core's deadlines;
//! connect and stall timeouts, retries and backoff are all decided by `sitebucket-proto`.

mod control;
mod drive;
mod messages;

use std::sync::Arc;

use sitebucket_proto::control::{ControlCall, ControlError, ControlResponse};
use sitebucket_proto::stream::Outcome;
use sitebucket_proto::{Parser, SiteStream};
use sitebucket_thread::Driver;

pub use control::control;
pub use drive::drive;
pub use messages::MessageStream;
pub use sitebucket_thread::{Control, ListenThread, Observer, Status};

/// The smol [`Driver`]: [`run`](Driver::run) is `smol::block_on(drive(..))` in the calling
/// thread, and [`spawn`](Driver::spawn) (the trait's default) does the same on a new thread
/// named `sitebucket-smol`, which has ended once the run's handle is joined.
///
/// Do not call `run` from inside an async task: it blocks. Await [`drive`] there instead.
///
/// Nothing per stream outlives a run. smol itself keeps process-wide helpers: one `async-io`
/// reactor thread, started on first use, and the `blocking` pool that resolves host names
/// (IP literals skip it); a lookup interrupted by a stop finishes there in the background,
/// and idle pool threads exit after half a second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmolDriver;

impl Driver for SmolDriver {
    fn name(&self) -> &'static str {
        "smol"
    }

    fn run(
        &self,
        stream: &mut SiteStream,
        parser: &mut dyn Parser,
        control: &Arc<Control>,
    ) -> Outcome {
        smol::block_on(drive(stream, parser, control))
    }

    /// `smol::block_on(`[`control`]`(call))` in the calling thread: a socket of its own,
    /// never the stream's. Do not call it from inside an async task (it blocks): await
    /// [`control`] there instead.
    fn control(&self, call: ControlCall) -> Result<ControlResponse, ControlError> {
        smol::block_on(control(call))
    }
}
