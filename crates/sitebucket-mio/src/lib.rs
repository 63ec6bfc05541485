//! # sitebucket-mio — many Site Streams on one mio event loop
//!
//! [`MioDriver`] runs every stream spawned on it on ONE event-loop thread, so thousands of
//! streams cost one thread, one read buffer (64 KiB blocks, whose reads the core frames in
//! place: a message keeps its read's block alive while it lives, and the block is read into
//! again once its messages are dropped) and, per stream, the core's state plus a socket. Hand it to [`ListenThread`](sitebucket_thread::ListenThread) like any other
//! [`Driver`]:
//!
//! ```no_run
//! use sitebucket_mio::MioDriver;
//! use sitebucket_proto::{Config, Credentials, SiteStream};
//! use sitebucket_thread::ListenThread;
//!
//! let credentials = Credentials::new("consumer key", "consumer secret", "token", "token secret");
//! let driver = MioDriver::new();
//! let mut streams = Vec::new();
//! for shard in [[1u64, 2, 3], [4, 5, 6]] {
//!     let config = Config::builder(shard, credentials.clone()).build()?;
//!     let parser = |message: bytes::Bytes| println!("{}", String::from_utf8_lossy(&message));
//!     streams.push(ListenThread::spawn(driver.clone(), SiteStream::new(config), parser)?);
//! }
//! assert_eq!(driver.streams(), 2); // both on the same loop thread
//! for stream in &streams {
//!     stream.close(); // takes effect within milliseconds, whatever the stream is doing
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The driver only moves bytes and waits for the core's deadlines: connecting (non-blocking,
//! per mio's "writable, then `take_error()` / `peer_addr()`"), reading until `WouldBlock`,
//! buffering what a socket does not take until it is writable, and sleeping in
//! `Poll::poll` until the nearest deadline of any stream. Every protocol decision (retries,
//! backoff, timeouts, TLS) is the core's. A stream's `close()` reaches the loop through its
//! `mio::Waker`.
//!
//! Host names are resolved off the loop: each lookup runs on the [`Resolver`]'s small pool of
//! lookup threads (named `sitebucket-resolve`; one lookup per name in flight, shared by every
//! stream that waits for it) and hands its answer back through the loop's `Waker`, while
//! the loop's other streams go on; IP literals need no lookup. The [`Resolver`] is the
//! system's unless [`MioDriver::with_resolver`] says otherwise.

mod conn;
mod control;
mod event_loop;
mod socket;

use std::io;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sitebucket_proto::control::{ControlCall, ControlError, ControlResponse};
use sitebucket_proto::Outcome;
use sitebucket_proto::{Parser, SiteStream};
use sitebucket_thread::sync::lock;
use sitebucket_thread::{Driver, RunHandle, RunState};

pub use crate::control::{run_control, run_control_with};
use crate::event_loop::Shared;
pub use sitebucket_thread::Resolver;

/// A driver running all its spawned streams on one mio event-loop thread.
///
/// Clones share the loop. The thread starts with the first [`spawn`](Driver::spawn) and
/// exits once every clone is dropped and no stream is left on it; dropping the last clone
/// while no stream runs waits for the thread to end, so none is left behind.
/// [`run`](Driver::run) uses a private loop in the calling thread instead.
#[derive(Clone, Default)]
pub struct MioDriver {
    handle: Arc<Handle>,
}

/// The lazily started loop, shared by every clone of a driver.
#[derive(Default)]
struct Handle {
    started: Mutex<Option<(Arc<Shared>, JoinHandle<()>)>>,
    resolver: Resolver,
}

impl MioDriver {
    /// A driver; its loop thread starts with the first spawned stream. Host names go to
    /// the system resolver.
    pub fn new() -> Self {
        Self::default()
    }

    /// A driver looking host names up with `resolver` (your own DNS, a fixed map), for its
    /// streams and control calls alike. Lookups run off the loop either way.
    pub fn with_resolver(resolver: Resolver) -> Self {
        Self {
            handle: Arc::new(Handle {
                started: Mutex::default(),
                resolver,
            }),
        }
    }

    /// The resolver the driver looks host names up with.
    pub fn resolver(&self) -> &Resolver {
        &self.handle.resolver
    }

    /// How many streams are on the loop: spawned and not yet finished.
    pub fn streams(&self) -> usize {
        match &*lock(&self.handle.started) {
            Some((shared, _)) => shared.live(),
            None => 0,
        }
    }

    fn shared(&self) -> io::Result<Arc<Shared>> {
        let mut started = lock(&self.handle.started);
        if let Some((shared, _)) = &*started {
            return Ok(shared.clone());
        }
        let (shared, thread) = Shared::start(self.handle.resolver.clone())?;
        *started = Some((shared.clone(), thread));
        Ok(shared)
    }
}

impl std::fmt::Debug for MioDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MioDriver")
            .field("streams", &self.streams())
            .field("resolver", &self.handle.resolver)
            .finish()
    }
}

impl Driver for MioDriver {
    fn name(&self) -> &'static str {
        "mio"
    }

    /// Runs the stream on a private mio loop in the current thread.
    fn run(
        &self,
        stream: &mut SiteStream,
        parser: &mut dyn Parser,
        control: &Arc<RunState>,
    ) -> Outcome {
        event_loop::run_here(stream, parser, control, &self.handle.resolver)
    }

    /// Hands the stream to the shared loop thread (starting it if needed).
    fn spawn(
        &self,
        stream: SiteStream,
        parser: Box<dyn Parser>,
        control: Arc<RunState>,
    ) -> io::Result<RunHandle> {
        self.shared()?.spawn(stream, parser, control)
    }

    /// Runs the call on a socket of its own, polled by a private mio `Poll` in the calling
    /// thread ([`run_control_with`], with this driver's resolver): never on the shared
    /// loop, whose streams it neither delays nor shares.
    fn control(&self, call: ControlCall) -> Result<ControlResponse, ControlError> {
        run_control_with(call, &self.handle.resolver)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let Some((shared, thread)) = lock(&self.started).take() else {
            return;
        };
        shared.close();
        // With no stream left the loop exits at once: wait for it. Otherwise it exits
        // when its last stream finishes (never join from the loop thread itself, which can
        // happen if a parser held the last clone).
        if shared.live() == 0 && thread.thread().id() != std::thread::current().id() {
            let _ = thread.join();
        }
    }
}
