//! The SIMD JSON crates on the benchmark's messages (feature `json-crates`): do they check JSON
//! faster than `serde_json`? They are the place a faster typed parser would come from.
//!
//! Both do the least work their API allows while still reading every byte: simd-json builds
//! its tape (stage 1 and 2, which validate everything; it needs a mutable copy of each
//! message, as its in-place unescaping writes into it) and sonic-rs deserializes into
//! `IgnoredAny`. Built with the default target CPU, as a user's build would be: sonic-rs uses
//! its SIMD paths only under `-C target-cpu=native`, and `cargo xtask bench` builds without it.

use bytes::Bytes;
use serde::de::IgnoredAny;

/// Every message through simd-json's tape (copied into a reused buffer first); how many were
/// valid.
pub fn simd_json_tape(messages: &[Bytes]) -> usize {
    let mut scratch = Vec::new();
    messages
        .iter()
        .filter(|m| {
            scratch.clear();
            scratch.extend_from_slice(m);
            simd_json::to_tape(&mut scratch).is_ok()
        })
        .count()
}

/// Every message through sonic-rs into `IgnoredAny`; how many were valid.
pub fn sonic_rs_ignored(messages: &[Bytes]) -> usize {
    messages
        .iter()
        .filter(|m| sonic_rs::from_slice::<IgnoredAny>(m).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::BenchStream;

    #[test]
    fn both_crates_accept_every_message_and_reject_a_broken_one() {
        let stream = BenchStream::generate(3, 64 << 10);
        let mut messages: Vec<Bytes> = stream.messages.into_iter().map(Bytes::from).collect();
        let n = messages.len();
        assert_eq!(simd_json_tape(&messages), n);
        assert_eq!(sonic_rs_ignored(&messages), n);
        messages.push(Bytes::from_static(b"{\"a\":[1,}"));
        assert_eq!(simd_json_tape(&messages), n);
        assert_eq!(sonic_rs_ignored(&messages), n);
    }
}
