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

use sitebucket_proto::{Config, ConfigBuilder, Credentials};

/// The config every bench client starts from: one followed user and made-up credentials
/// (the bench servers do not check signatures), streaming from `url`.
pub fn client_config(url: impl Into<String>) -> ConfigBuilder {
    Config::builder(
        [783_214],
        Credentials::new(
            "bench-consumer",
            "bench-secret",
            "bench-token",
            "bench-token-secret",
        ),
    )
    .url(url)
}
