//! Helpers shared by the mio driver's integration tests.

#![allow(dead_code)]

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sitebucket_proto::{BackoffPolicy, Config, ConfigBuilder, Credentials, Parser, TwitterBackoff};
use sitebucket_testserver::TestServer;

/// The longest any wait in these tests lasts before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The stop contract: `close()` takes effect within this long.
pub const CLOSE_WITHIN: Duration = Duration::from_millis(100);

/// A parser keeping every message, shared with the test.
#[derive(Clone, Default)]
pub struct Collected(Arc<Mutex<Vec<Bytes>>>);

impl Collected {
    fn lock(&self) -> MutexGuard<'_, Vec<Bytes>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every message so far.
    pub fn messages(&self) -> Vec<Bytes> {
        self.lock().clone()
    }

    /// How many messages so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

impl Parser for Collected {
    fn parse(&mut self, message: Bytes) {
        self.lock().push(message);
    }
}

/// A config aimed at `server`, signed with its credentials, trusting its CA, with fast
/// backoff (20 ms network steps, 50 ms HTTP and rate-limit starts).
pub fn config_for(server: &TestServer) -> ConfigBuilder {
    let c = server.credentials();
    let credentials = Credentials::new(
        c.consumer_key.clone(),
        c.consumer_secret.clone(),
        c.token.clone(),
        c.token_secret.clone(),
    );
    let mut builder = Config::builder([1, 2, 3], credentials)
        .url(server.url())
        .connect_timeout(Duration::from_secs(5))
        .backoff(fast_backoff());
    if let Some(pem) = server.ca_pem() {
        builder = builder.extra_root_certs_pem(pem.into_bytes());
    }
    builder
}

/// Twitter's policy scaled down for tests.
pub fn fast_backoff() -> BackoffPolicy {
    BackoffPolicy::Twitter(TwitterBackoff {
        network_step: Duration::from_millis(20),
        network_max: Duration::from_millis(200),
        http_start: Duration::from_millis(50),
        http_max: Duration::from_millis(400),
        rate_limit_start: Duration::from_millis(50),
        rate_limit_max: Duration::from_millis(400),
    })
}

/// Polls `done` until it holds; panics naming `what` after [`PATIENCE`].
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `n` distinct messages, every third with a bare `\n` inside (allowed by the protocol).
pub fn numbered(tag: &str, n: usize) -> Vec<Vec<u8>> {
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
pub fn threads_named(name: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}
