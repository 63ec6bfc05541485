//! The fuzz targets' checks: the same file `cargo test` replays the seeds through on stable.

#[path = "../../crates/sitebucket-proto/tests/support/fuzz_logic.rs"]
mod fuzz_logic;

pub use fuzz_logic::*;
