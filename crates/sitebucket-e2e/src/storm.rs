//! Servers that would make a naive client storm them with reconnects: each answers every
//! request with `200` and then fails at once, before the connection has delivered anything
//! worth trusting. A `200` head alone earns nothing (see the CLI contract, "Reconnecting"),
//! so each of these attempts is a failed one: the client backs off along the growing linear
//! sequence (`step`, `2·step`, `3·step`, …) and the attempts count toward `retry_limit`.
//!
//! Counted over real loopback sockets for every driver (the [`suite!`](crate::suite) runs
//! them); `sitebucket-cli`'s `tests/storm.rs` plays the same servers to the command line.

use std::time::{Duration, Instant};

use sitebucket_proto::{BackoffPolicy, ConfigBuilder, TwitterBackoff};
use sitebucket_proto::{Outcome, StreamError};
use sitebucket_testserver::{AttemptPlan, End, Scenario, Step, TestServer};
use sitebucket_thread::{Driver, ListenThread, SiteStream};

use crate::{close_promptly, config_for, join_finished, server, Collected, Transport};

/// The network backoff step of these checks (the default is 250 ms; shorter keeps the
/// checks short, the shape of the sequence is the same).
pub const STORM_STEP: Duration = Duration::from_millis(100);

/// How long the attempts are counted.
pub const STORM_WINDOW: Duration = Duration::from_secs(3);

/// The most attempts allowed in [`STORM_WINDOW`]. The growing sequence gives 8 (at 0, 0.1,
/// 0.3, 0.6, 1.0, 1.5, 2.1 and 2.8 s); a client that forgets its failures on every `200`
/// waits one step each time and makes about 30.
pub const STORM_MAX_ATTEMPTS: usize = 12;

/// The longest message the checks' client accepts; [`Storm::OversizedFrame`] sends longer.
pub const STORM_MAX_MESSAGE_BYTES: usize = 1024;

/// One kind of storm server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storm {
    /// `200` and a chunked head, then the connection closes at once.
    CloseAfterHead,
    /// `200`, a `disconnect` message with code 2 (duplicate stream), then close.
    DisconnectCode2,
    /// `200`, then a frame longer than the client accepts.
    OversizedFrame,
}

impl Storm {
    /// Every kind.
    pub const ALL: [Storm; 3] = [
        Storm::CloseAfterHead,
        Storm::DisconnectCode2,
        Storm::OversizedFrame,
    ];

    /// The test server's answer to every attempt.
    pub fn plan(self) -> AttemptPlan {
        match self {
            Storm::CloseAfterHead => AttemptPlan::ok(vec![Step::CloseNow]),
            Storm::DisconnectCode2 => AttemptPlan::ok(vec![Step::Disconnect {
                code: 2,
                reason: "duplicate stream".into(),
            }])
            .with_end(End::Close),
            Storm::OversizedFrame => {
                AttemptPlan::ok(vec![Step::Oversized(16 * STORM_MAX_MESSAGE_BYTES)])
                    .with_end(End::Stall)
            }
        }
    }

    /// Whether `error` is the failure this server causes.
    pub fn caused(self, error: &StreamError) -> bool {
        match self {
            // Between messages or in the middle of one, by the server.
            Storm::CloseAfterHead => error.to_string().contains("closed by the server"),
            Storm::DisconnectCode2 => {
                matches!(error, StreamError::DisconnectMessage { code: 2, .. })
            }
            Storm::OversizedFrame => matches!(error, StreamError::Read(_)),
        }
    }
}

/// The backoff of these checks: [`STORM_STEP`] up to 16 s for network errors (HTTP and
/// rate-limit waits as Twitter's, never reached here).
pub fn storm_backoff() -> BackoffPolicy {
    BackoffPolicy::Twitter(TwitterBackoff {
        network_step: STORM_STEP,
        network_max: Duration::from_secs(16),
        http_start: Duration::from_secs(5),
        http_max: Duration::from_secs(320),
        rate_limit_start: Duration::from_secs(60),
        rate_limit_max: Duration::from_secs(960),
    })
}

fn storm_config(server: &TestServer) -> ConfigBuilder {
    config_for(server, [12])
        .backoff(storm_backoff())
        .max_message_bytes(STORM_MAX_MESSAGE_BYTES)
}

/// Against `storm`, the driver's stream backs off along the growing linear sequence: at
/// most [`STORM_MAX_ATTEMPTS`] attempts in [`STORM_WINDOW`], each wait at least one step
/// longer than the one before; and with a retry limit of 3 it gives up after 3 attempts.
pub fn storm_backs_off<D: Driver>(driver: D, storm: Storm) {
    let server = server_for(storm);
    let config = storm_config(&server).build().expect("valid config");
    let mut listener =
        ListenThread::spawn(driver.clone(), SiteStream::new(config), Collected::new())
            .expect("spawn the stream");
    std::thread::sleep(STORM_WINDOW);
    let stats = listener.status().stats;
    close_promptly(&mut listener, "backing off from a storm server");
    let attempts = server.attempts();
    let at: Vec<Instant> = attempts.iter().map(|a| a.at).collect();
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!(
        "{storm:?}: {} attempts in {STORM_WINDOW:?}, gaps {gaps:?}",
        attempts.len()
    );
    assert!(
        attempts.len() <= STORM_MAX_ATTEMPTS,
        "{storm:?}: {} attempts in {STORM_WINDOW:?} (at most {STORM_MAX_ATTEMPTS}); gaps {gaps:?}",
        attempts.len()
    );
    assert!(attempts.len() >= 4, "{storm:?}: it stopped reconnecting");
    assert!(
        attempts.iter().all(|a| a.status == Some(200)),
        "{storm:?}: every attempt got its 200"
    );
    let last = stats.last_error.expect("a failure");
    assert!(
        storm.caused(&last),
        "{storm:?}: the last failure was {last}"
    );
    // The k-th wait is k steps (the server sees the wait plus the time to reconnect; 5 ms
    // allows for the granularity of the clocks).
    for (k, gap) in gaps.iter().enumerate() {
        let wait = STORM_STEP * (k as u32 + 1);
        assert!(
            *gap + Duration::from_millis(5) >= wait,
            "{storm:?}: wait {} was {gap:?}, less than {wait:?}; gaps {gaps:?}",
            k + 1
        );
    }

    // Each attempt counts toward the retry limit.
    let server = server_for(storm);
    let config = storm_config(&server)
        .retry_limit(Some(3))
        .build()
        .expect("valid config");
    let mut listener = ListenThread::spawn(driver, SiteStream::new(config), Collected::new())
        .expect("spawn the stream");
    let outcome = join_finished(&mut listener);
    match &outcome {
        Outcome::GaveUp {
            attempts: 3,
            last_error,
        } if storm.caused(last_error) => {}
        other => panic!("{storm:?}: with a retry limit of 3 the stream ended {other:?}"),
    }
    assert_eq!(server.attempts().len(), 3);
}

fn server_for(storm: Storm) -> TestServer {
    server(Scenario::single(storm.plan()), Transport::Plain)
}
