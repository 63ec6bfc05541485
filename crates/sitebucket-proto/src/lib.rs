//! # sitebucket-proto — the sans-IO Site Streams core
//!
//! This crate is fully deterministic: it contains no networking code, reads no clock and
//! draws no unseeded randomness. Bytes, the current [`Instant`](std::time::Instant), the
//! wall-clock seconds used to sign a request and the seed of every random choice are all
//! passed in by the caller. Drivers (std threads, mio, smol, or your own event loop) only
//! move bytes and wait for deadlines.

pub mod backoff;

pub use backoff::{Backoff, BackoffPolicy, FailureKind, Jitter, SquaredBackoff, TwitterBackoff};
