//! # sitebucket-async — the async loop of the smol and tokio drivers, written once
//!
//! Runs a sans-IO [`SiteStream`](sitebucket_proto::SiteStream) over any async runtime that
//! implements the small [`Runtime`] trait: connect a TCP socket, read and write it without
//! blocking, a timer set to an [`Instant`](std::time::Instant), a yield, and the task's
//! cooperative budget where there is one. On top of it, once for every runtime:
//!
//! - [`drive_with`]: the loop that carries out the core's actions and waits for whichever
//!   comes first of a stop, the socket and the core's deadline;
//! - [`run_control_with`]: one control request (add or remove users, info) on a socket of
//!   its own;
//! - [`Messages`]: the messages and connection events as a `futures_core::Stream`.
//!
//! Most users want a driver crate instead: `sitebucket-smol` and `sitebucket-tokio`
//! implement [`Runtime`] for their runtime and name these for it (`drive`, `run_control`,
//! `messages()`, with one macro so every driver has the same names, and a `Driver` for
//! `ListenThread`). A new async runtime needs only an
//! implementation of [`Runtime`]; this crate depends on none.
//!
//! Host names are looked up by a [`Resolver`](sitebucket_thread::Resolver) on its lookup
//! threads, whose answer the future awaits without blocking the executor.
//!
//! Architecture invariant: the loops only move bytes and wait for the core's deadlines;
//! connect and stall timeouts, retries and backoff are all decided by `sitebucket-proto`.

mod api;
mod connect;
mod control;
mod drive;
#[cfg(test)]
mod fake;
mod messages;
mod runtime;
mod signal;

#[doc(hidden)]
pub use api::__private;
pub use control::run_control_with;
pub use drive::drive_with;
pub use messages::Messages;
pub use runtime::Runtime;
