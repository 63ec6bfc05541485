//! # sitebucket-thread — one handle for every driver
//!
//! [`ListenThread`] is the handle for one stream, whatever runs the stream underneath: a
//! [`Driver`] (std threads, mio, smol, tokio, or your own). Its name says where a stream
//! runs in the simplest case — its own thread — but the same handle serves every driver. The handle and the driver share a [`RunState`]: the handle asks for a stop and
//! reads live [`Status`]; the driver publishes status after every drain of the core and
//! registers a wake-up so a stop takes effect at once, even while it is blocked on a silent
//! socket, backing off, or connecting.
//!
//! Architecture invariant: this crate knows nothing of sockets and makes no protocol decision.

mod driver;
mod follows;
mod item;
mod listen;
mod monitor;
mod parallel;
mod read_gate;
mod resolve;
mod run_state;
mod seed;
pub mod sync;
#[cfg(test)]
mod test_blocks;
mod threaded;
pub mod time;

pub use driver::{Driver, Finished, RunHandle, READ_BUFFER_BYTES, READ_COPY_BELOW_BYTES};
pub use follows::SharedPacer;
pub use item::{ItemSink, MessagesOnly, StreamItem};
pub use listen::ListenThread;
pub use monitor::{
    FailedStream, FailedStreamHook, Monitor, MonitorError, MonitoredStream, SharedParser,
    CHECK_INTERVAL,
};
pub use parallel::{ParallelParser, ParallelParserBuilder};
pub use read_gate::{GateWaiter, ReadGate};
pub use resolve::{Resolver, MAX_LOOKUP_THREADS, MAX_WAITERS_PER_LOOKUP, RESOLVE_THREAD_NAME};
pub use run_state::{AnnounceHook, FinishHook, Observer, RunState, Status};
pub use sitebucket_proto::{self as proto, Parser, SiteStream};
pub use threaded::{
    ThreadedParser, DEFAULT_MAX_QUEUED_BYTES, QUEUED_MESSAGE_OVERHEAD, QUEUE_BLOCK_BYTES,
    QUEUE_COPY_BELOW_BYTES,
};
