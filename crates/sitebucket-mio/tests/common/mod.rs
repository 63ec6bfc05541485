//! Helpers shared by the mio driver's integration tests.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use sitebucket_proto::ConfigBuilder;
use sitebucket_proto::DEFAULT_STALL_TIMEOUT;
use sitebucket_testserver::TestServer;

/// The longest any wait in these tests lasts before the test fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// The cross-driver suite's config for `server` (its credentials, its CA, fast backoff),
/// following users 1, 2 and 3, with these tests' longer connect timeout and the default
/// stall timeout.
pub(crate) fn config_for(server: &TestServer) -> ConfigBuilder {
    sitebucket_e2e::config_for(server, [1, 2, 3])
        .connect_timeout(Duration::from_secs(5))
        .stall_timeout(DEFAULT_STALL_TIMEOUT)
}

/// Polls `done` until it holds; panics naming `what` after [`PATIENCE`].
pub(crate) fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `n` distinct messages, every third with a bare `\n` inside (allowed by the protocol).
pub(crate) fn numbered(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            if i % 3 == 0 {
                format!("{{\"tag\":\"{tag}\",\"n\":{i},\"text\":\"one\ntwo\"}}").into_bytes()
            } else {
                format!("{{\"tag\":\"{tag}\",\"n\":{i},\"for_user\":{}}}", 1000 + i).into_bytes()
            }
        })
        .collect()
}

/// How many threads of this process carry `name` (Linux: `/proc/self/task/*/comm`).
pub(crate) fn threads_named(name: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}
