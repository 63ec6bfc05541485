//! The soak behind `cargo xtask soak`: many streams through the `Monitor` for a long time
//! against a loopback server that injects seeded faults on every connection, watching the
//! client's memory, file descriptors and threads, and checking at the end that nothing was
//! lost, duplicated, altered or reordered and that no reconnect came earlier than the
//! reconnect policy allows.
//!
//! The `soak` binary runs in two processes: the client (`soak run`, the default), whose
//! `/proc` entries are sampled, and the server (`soak serve`), which it starts as a child
//! so the client's samples hold none of the server's threads or sockets.

pub mod check;
pub mod plan;
pub mod sample;
pub mod wire;
