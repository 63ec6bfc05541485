//! # sitebucket-bench — the numbers behind `cargo xtask bench`
//!
//! A seeded benchmark stream ([`stream`]), the one-line figure format ([`figure`]), process
//! measurements ([`os`]), and the loopback servers the client binaries run against
//! ([`server`]).

pub mod args;
pub mod figure;
pub mod inproc;
#[cfg(feature = "json-crates")]
pub mod json_crates;
pub mod os;
pub mod server;
pub mod stream;

pub use figure::{Figure, Op, Target};
