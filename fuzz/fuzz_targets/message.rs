//! `message`: see `sitebucket_fuzz::message` (crates/sitebucket-proto/tests/support/fuzz_logic.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sitebucket_fuzz::message(data);
});
