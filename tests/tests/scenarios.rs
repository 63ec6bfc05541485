//! One story per test: the core against the scripted server in virtual time, each asserting
//! the exact sequence of actions with their times.
//!
//! Every story runs over several seeds — the network splits every write at different points
//! each time — and must come out identical. The simulator also checks on every run that each
//! connection handed out exactly the complete messages that reached the client, in order:
//! nothing lost, nothing duplicated, no partial message (see `Trace::assert_clean`).

use std::time::Duration;

use sitebucket_proto::Framing;
use sitebucket_sim::{config_builder, Fault, NetworkFaults, Sim, Stop, Trace};
use sitebucket_testserver::corpus::{self, STREAM_ID};
use sitebucket_testserver::{
    AttemptPlan, ChunkPlan, Credentials as ServerCredentials, End, Scenario, Step,
};

const SEEDS: [u64; 3] = [1, 2, 3];

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn msg(i: u32) -> Vec<u8> {
    format!("{{\"for_user\":783214,\"message\":{{\"id\":{i},\"text\":\"message number {i}\"}}}}")
        .into_bytes()
}

fn control() -> Vec<u8> {
    corpus::control(STREAM_ID)
}

fn hold(plan: AttemptPlan) -> AttemptPlan {
    plan.with_end(End::HoldWithKeepAlives(secs(30)))
}

/// Runs the same story once per seed; each run must be clean and all must agree.
fn story(
    config: sitebucket_proto::ConfigBuilder,
    scenario: Scenario,
    faults: NetworkFaults,
    drive: impl Fn(&mut Sim),
) -> (Trace, Sim) {
    story_with_server(
        config,
        scenario,
        faults,
        ServerCredentials::test_default(),
        drive,
    )
}

/// [`story`] against a server that checks requests against `server` credentials.
fn story_with_server(
    config: sitebucket_proto::ConfigBuilder,
    scenario: Scenario,
    faults: NetworkFaults,
    server: ServerCredentials,
    drive: impl Fn(&mut Sim),
) -> (Trace, Sim) {
    let config = config.build().unwrap();
    let mut first: Option<(Trace, Sim)> = None;
    for seed in SEEDS {
        let mut sim = Sim::new(config.clone(), scenario.clone(), faults.clone(), seed)
            .with_server_credentials(server.clone());
        drive(&mut sim);
        let trace = sim.trace().clone();
        trace.assert_clean();
        match &first {
            None => first = Some((trace, sim)),
            Some((want, _)) => {
                assert_eq!(
                    trace.story(),
                    want.story(),
                    "seed {seed} tells another story"
                );
                let messages = |t: &Trace| -> Vec<_> {
                    t.connections.iter().map(|c| c.messages.clone()).collect()
                };
                assert_eq!(messages(&trace), messages(want), "seed {seed}");
            }
        }
    }
    first.unwrap()
}

fn lines(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

/// A golden trace built step by step: [`answered`](Story::answered) stands for the three lines
/// of every attempt that reaches the server (`connect`, `transmit`, `connected STATUS`), so a
/// story lists only what differs from one attempt to the next.
struct Story(Vec<String>);

impl Story {
    fn new() -> Self {
        Story(Vec::new())
    }

    /// An attempt at `at` (seconds, as the trace prints them) that the server answers with
    /// `status` (e.g. `"200 OK"`).
    fn answered(mut self, at: &str, status: &str) -> Self {
        self.0.extend([
            format!("{at} connect 127.0.0.1:8080"),
            format!("{at} transmit"),
            format!("{at} connected {status}"),
        ]);
        self
    }

    /// Lines as they are.
    fn then(mut self, lines: &[&str]) -> Self {
        self.0.extend(lines.iter().map(|s| s.to_string()));
        self
    }

    fn build(self) -> Vec<String> {
        self.0
    }
}

#[test]
fn happy_path() {
    let plan = AttemptPlan::ok(vec![
        Step::Message(control()),
        Step::Message(msg(1)),
        Step::Message(msg(2)),
        Step::Wait(secs(1)),
        Step::Message(msg(3)),
    ])
    // Chunk boundaries inside messages.
    .with_chunks(ChunkPlan::Fixed(37));
    let (trace, sim) = story(
        config_builder([783214]),
        Scenario::single(hold(plan)),
        NetworkFaults::none(),
        |sim| assert_eq!(sim.run_for(secs(45)), Stop::TimeLimit),
    );
    assert_eq!(
        trace.story(),
        Story::new()
            .answered("0.000", "200 OK")
            .then(&[
                "0.000 message",
                "0.000 message",
                "0.000 message",
                "1.000 message",
                "31.000 keep-alive",
            ])
            .build()
    );
    assert_eq!(
        trace.connections[0].messages,
        [control(), msg(1), msg(2), msg(3)]
    );
    assert_eq!(sim.stream().stream_id(), Some(STREAM_ID));
    let attempt = &trace.attempts[0];
    assert!(attempt.signature_ok, "{attempt:?}");
    assert_eq!(attempt.method, "GET");
    assert_eq!(attempt.path, "/1.1/site.json");
    assert_eq!(attempt.query_param("follow"), Some("783214"));
    assert_eq!(attempt.request_at, Some(attempt.at));
    assert_eq!(
        Some(&sitebucket_sim::Recorded::Transmit(
            trace.connections[0].bytes_sent as usize
        )),
        trace.actions.get(1).map(|e| &e.what),
        "the whole request in one Transmit"
    );
}

#[test]
fn keep_alives_hold_off_the_stall_until_they_stop() {
    let scenario = Scenario::new(vec![
        AttemptPlan::ok(vec![
            Step::Message(msg(1)),
            Step::Wait(secs(89)),
            Step::KeepAlive,
            Step::Wait(secs(89)),
            Step::KeepAlive,
        ])
        .with_end(End::Stall),
        hold(AttemptPlan::ok(vec![Step::Message(msg(2))])),
    ]);
    for framing in [Framing::Crlf, Framing::Length] {
        let (trace, _) = story(
            config_builder([1]).framing(framing),
            scenario.clone(),
            NetworkFaults::none(),
            |sim| {
                sim.run_for(secs(330));
            },
        );
        assert_eq!(
            trace.story(),
            Story::new()
                .answered("0.000", "200 OK")
                .then(&[
                    "0.000 message",
                    "89.000 keep-alive",
                    "178.000 keep-alive",
                    "268.000 close",
                    "268.000 disconnected (stall detected: no data for 90s), retry in 250ms",
                ])
                .answered("268.250", "200 OK")
                .then(&[
                    "268.250 message",
                    "298.250 keep-alive",
                    "328.250 keep-alive",
                ])
                .build(),
            "{framing:?}"
        );
        assert_eq!(trace.attempts[1].query_param("delimited"), {
            if framing == Framing::Length {
                Some("length")
            } else {
                None
            }
        });
    }
}

#[test]
fn rate_limited_420_then_200_waits_a_minute() {
    let (trace, _) = story(
        config_builder([1]),
        Scenario::new(vec![
            AttemptPlan::status(420, "Enhance Your Calm"),
            hold(AttemptPlan::ok(vec![Step::Message(msg(1))])),
        ]),
        NetworkFaults::none(),
        |sim| {
            sim.run_for(secs(61));
        },
    );
    assert_eq!(
        trace.story(),
        Story::new()
            .answered("0.000", "420 Enhance Your Calm")
            .then(&[
                "0.000 close",
                "0.000 disconnected (HTTP 420 Enhance Your Calm), retry in 60s",
            ])
            .answered("60.000", "200 OK")
            .then(&["60.000 message"])
            .build()
    );
    assert_eq!(trace.attempts.len(), 2);
    assert_eq!(trace.attempts[1].at - trace.attempts[0].at, secs(60));
}

#[test]
fn three_503s_then_200_back_off_5_10_20_seconds() {
    let busy = AttemptPlan::status(503, "Service Unavailable");
    let (trace, sim) = story(
        config_builder([1]),
        Scenario::new(vec![
            busy.clone(),
            busy.clone(),
            busy,
            hold(AttemptPlan::ok(vec![Step::Message(msg(1))])),
        ]),
        NetworkFaults::none(),
        |sim| {
            sim.run_for(secs(40));
        },
    );
    let mut want = Vec::new();
    for (at, wait) in [("0.000", "5s"), ("5.000", "10s"), ("15.000", "20s")] {
        want.extend([
            format!("{at} connect 127.0.0.1:8080"),
            format!("{at} transmit"),
            format!("{at} connected 503 Service Unavailable"),
            format!("{at} close"),
            format!("{at} disconnected (HTTP 503 Service Unavailable), retry in {wait}"),
        ]);
    }
    want.extend(
        Story::new()
            .answered("35.000", "200 OK")
            .then(&["35.000 message"])
            .build(),
    );
    assert_eq!(trace.story(), want);
    assert_eq!(
        sim.stream().error_count(),
        0,
        "the 200's first message earned trust and reset the count"
    );
}

#[test]
fn unauthorized_401_finishes_after_one_attempt() {
    // The server knows other credentials: the signature does not check out.
    let (trace, sim) = story_with_server(
        config_builder([1]),
        Scenario::single(AttemptPlan::ok(vec![Step::Message(msg(1))])),
        NetworkFaults::none(),
        ServerCredentials::new("ck", "cs", "tk", "ts"),
        |sim| assert_eq!(sim.run_for(secs(3600)), Stop::Finished),
    );
    assert_eq!(
        trace.story(),
        Story::new()
            .answered("0.000", "401 Unauthorized")
            .then(&[
                "0.000 close",
                "0.000 finished: HTTP 401 Unauthorized: retrying cannot fix this status",
            ])
            .build()
    );
    assert_eq!(trace.attempts.len(), 1);
    assert!(!trace.attempts[0].signature_ok);
    assert!(trace.attempts[0].rejection.is_some());
    assert!(!sim.stream().connection_healthy());
    assert!(!sim.stream().running());
}

#[test]
fn stall_before_and_after_the_head_reconnects_after_250ms() {
    let (trace, _) = story(
        config_builder([1]),
        Scenario::new(vec![
            AttemptPlan::ok(vec![Step::Message(msg(1))]).with_end(End::Stall),
            AttemptPlan::never_answers(),
            hold(AttemptPlan::ok(vec![Step::Message(msg(2))])),
        ]),
        NetworkFaults::none(),
        |sim| {
            sim.run_for(secs(181));
        },
    );
    assert_eq!(
        trace.story(),
        Story::new()
            .answered("0.000", "200 OK")
            .then(&[
                "0.000 message",
                "90.000 close",
                "90.000 disconnected (stall detected: no data for 90s), retry in 250ms",
            ])
            // No head at all: the stall timer runs from the moment the connection is up.
            .then(&[
                "90.250 connect 127.0.0.1:8080",
                "90.250 transmit",
                "180.250 close",
                "180.250 disconnected (stall detected: no data for 90s), retry in 500ms",
            ])
            .answered("180.750", "200 OK")
            .then(&["180.750 message",])
            .build()
    );
    assert!(trace.attempts[1].request_complete());
    assert_eq!(trace.attempts[1].status, None, "never answered");
}

#[test]
fn server_close_mid_message_then_resume() {
    let m3 = msg(3);
    let (trace, _) = story(
        config_builder([1]),
        Scenario::new(vec![
            AttemptPlan::ok(vec![
                Step::Message(control()),
                Step::Message(msg(1)),
                Step::Message(msg(2)),
                Step::RawBody(m3[..m3.len() / 2].to_vec()),
                Step::CloseNow,
            ])
            .with_chunks(ChunkPlan::CutPoints(vec![10, 70, 100, 150])),
            hold(AttemptPlan::ok(vec![
                Step::Message(m3.clone()),
                Step::Message(msg(4)),
            ])),
        ]),
        NetworkFaults::none(),
        |sim| {
            sim.run_for(secs(1));
        },
    );
    assert_eq!(
        trace.story(),
        Story::new()
            .answered("0.000", "200 OK")
            .then(&[
                "0.000 message",
                "0.000 message",
                "0.000 message",
                "0.000 close",
            ])
            // The half message is reported with its size, not dropped in silence.
            .then(&[
                "0.000 disconnected (connection closed by the server mid-message (32 bytes of an \
                 unfinished message dropped)), retry in 250ms",
            ])
            .answered("0.250", "200 OK")
            .then(&["0.250 message", "0.250 message",])
            .build()
    );
    assert_eq!(
        trace.connections[0].messages,
        [control(), msg(1), msg(2)],
        "the half message is not handed out"
    );
    assert_eq!(trace.connections[1].messages, [m3, msg(4)]);
}

#[test]
fn network_truncation_mid_message_then_resume() {
    let plan = hold(AttemptPlan::ok(vec![
        Step::Message(msg(1)),
        Step::Message(msg(2)),
        Step::Wait(secs(1)),
        Step::Message(msg(3)),
        Step::Wait(secs(1)),
        Step::Message(msg(4)),
    ]));
    // Measure where messages 2 and 3 end on the wire, then cut the first connection halfway
    // through message 3.
    let config = config_builder([1]).build().unwrap();
    let mut probe = Sim::new(
        config.clone(),
        Scenario::single(plan.clone()),
        NetworkFaults::none(),
        0,
    );
    probe.run_for(Duration::from_millis(500));
    let to_m2 = probe.trace().connections[0].bytes_received;
    probe.run_for(secs(1));
    let to_m3 = probe.trace().connections[0].bytes_received;
    let cut = (to_m2 + to_m3) / 2;
    let (trace, _) = story(
        config_builder([1]),
        Scenario::single(plan),
        NetworkFaults::none().with_fault(0, Fault::Truncate { after_bytes: cut }),
        |sim| {
            sim.run_for(secs(3));
        },
    );
    assert_eq!(
        trace.story(),
        Story::new()
            .answered("0.000", "200 OK")
            .then(&[
                "0.000 message",
                "0.000 message",
                "1.000 close",
                "1.000 disconnected (connection closed by the server mid-message (32 bytes of an \
                 unfinished message dropped)), retry in 250ms",
            ])
            .answered("1.250", "200 OK")
            .then(&["1.250 message", "1.250 message", "2.250 message",])
            .build()
    );
    assert_eq!(trace.connections[0].messages, [msg(1), msg(2)]);
    assert_eq!(trace.connections[0].bytes_received, cut);
    assert_eq!(trace.connections[1].messages, [msg(1), msg(2), msg(3)]);
}

#[test]
fn network_refusal_and_reset_then_resume() {
    let plan = hold(AttemptPlan::ok(vec![
        Step::Message(msg(1)),
        Step::Wait(secs(2)),
        Step::Message(msg(2)),
    ]));
    let faults = NetworkFaults::none()
        .with_fault(0, Fault::Refuse)
        .with_fault(1, Fault::Reset { after: secs(1) })
        .with_connect_latency(Duration::from_millis(100), Duration::from_millis(100));
    let (trace, _) = story(config_builder([1]), Scenario::single(plan), faults, |sim| {
        sim.run_for(secs(4));
    });
    assert_eq!(
        trace.story(),
        lines(&[
            "0.000 connect 127.0.0.1:8080",
            "0.100 disconnected (connection failed: connection refused), retry in 250ms",
            "0.350 connect 127.0.0.1:8080",
            "0.450 transmit",
            "0.450 connected 200 OK",
            "0.450 message",
            "1.450 close",
            "1.450 disconnected (connection closed by the server), retry in 250ms",
            "1.700 connect 127.0.0.1:8080",
            "1.800 transmit",
            "1.800 connected 200 OK",
            "1.800 message",
            "3.800 message",
        ])
    );
    assert_eq!(
        trace.attempts.len(),
        2,
        "the refused connect never reached the server"
    );
}

fn disconnect_message_story(code: u32, reason: &str) -> (Trace, Sim) {
    story(
        config_builder([1]),
        Scenario::new(vec![
            AttemptPlan::ok(vec![
                Step::Message(control()),
                Step::Message(msg(1)),
                Step::Wait(secs(1)),
                Step::Disconnect {
                    code,
                    reason: reason.into(),
                },
                Step::Message(msg(2)),
            ])
            .with_end(End::HoldWithKeepAlives(secs(30))),
            hold(AttemptPlan::ok(vec![Step::Message(msg(3))])),
        ]),
        NetworkFaults::none(),
        |sim| {
            assert_eq!(sim.run_until(|t| t.messages == 2), Stop::Condition);
            assert_eq!(sim.stream().stream_id(), Some(STREAM_ID));
            sim.run_for(secs(3600));
        },
    )
}

#[test]
fn disconnect_code_1_reconnects() {
    let (trace, sim) = disconnect_message_story(1, "shutdown");
    let story = trace.story();
    assert_eq!(
        story[..13],
        Story::new()
            .answered("0.000", "200 OK")
            .then(&["0.000 message", "0.000 message", "1.000 message",])
            // msg(2) came in the same read as the disconnect: handed out before it takes
            // effect.
            .then(&[
                "1.000 message",
                "1.000 close",
                "1.000 disconnected (disconnect message code 1: shutdown), retry in 250ms",
            ])
            .answered("1.250", "200 OK")
            .then(&["1.250 message",])
            .build()
    );
    assert!(
        story[13..].iter().all(|l| l.ends_with("keep-alive")),
        "{story:?}"
    );
    assert_eq!(
        trace.connections[0].messages,
        [control(), msg(1), corpus::disconnect(1, "shutdown"), msg(2)],
        "printed like any message; the frame of the same read after it, then nothing"
    );
    assert_eq!(trace.connections[1].messages, [msg(3)]);
    assert_eq!(sim.stream().stream_id(), None, "forgotten on disconnect");
}

#[test]
fn disconnect_codes_6_and_7_finish() {
    for (code, reason) in [(6, "token revoked"), (7, "admin logout")] {
        let (trace, _) = disconnect_message_story(code, reason);
        assert_eq!(
            trace.story(),
            Story::new()
                .answered("0.000", "200 OK")
                .then(&[
                    "0.000 message",
                    "0.000 message",
                    "1.000 message",
                    "1.000 message",
                    "1.000 close",
                    &format!(
                        "1.000 finished: disconnect message code {code} ({reason}): not reconnecting"
                    ),
                ])
                .build()
        );
        assert_eq!(trace.attempts.len(), 1);
        assert_eq!(
            trace.connections[0].messages[2..],
            [corpus::disconnect(code, reason), msg(2)]
        );
    }
}

#[test]
fn oversized_frame_drops_the_connection_with_bounded_memory() {
    for framing in [Framing::Crlf, Framing::Length] {
        let (trace, _) = story(
            config_builder([1]).max_message_bytes(1024).framing(framing),
            Scenario::new(vec![
                AttemptPlan::ok(vec![
                    Step::Message(msg(1)),
                    Step::Oversized(512 * 1024),
                    Step::Message(msg(2)),
                ]),
                hold(AttemptPlan::ok(vec![Step::Message(msg(3))])),
            ]),
            NetworkFaults::none(),
            |sim| {
                sim.run_for(secs(1));
            },
        );
        assert_eq!(
            trace.story(),
            Story::new()
                .answered("0.000", "200 OK")
                .then(&[
                    "0.000 message",
                    "0.000 close",
                    "0.000 disconnected (bad message framing: message is longer than the limit of \
                     1024 bytes), retry in 250ms",
                ])
                .answered("0.250", "200 OK")
                .then(&["0.250 message",])
                .build(),
            "{framing:?}"
        );
        assert_eq!(trace.connections[0].messages, [msg(1)]);
        assert!(
            trace.connections[0].bytes_received < 64 * 1024,
            "dropped early: {} bytes read",
            trace.connections[0].bytes_received
        );
    }
}

#[test]
fn retry_limit_reached_after_exactly_n_attempts() {
    // Refused every time, linear network backoff.
    let refuse_all = (0..10).fold(NetworkFaults::none(), |n, i| n.with_fault(i, Fault::Refuse));
    let (trace, _) = story(
        config_builder([1]).retry_limit(Some(4)),
        Scenario::single(AttemptPlan::ok(vec![])),
        refuse_all.clone(),
        |sim| assert_eq!(sim.run_for(secs(3600)), Stop::Finished),
    );
    assert_eq!(
        trace.story(),
        lines(&[
            "0.000 connect 127.0.0.1:8080",
            "0.000 disconnected (connection failed: connection refused), retry in 250ms",
            "0.250 connect 127.0.0.1:8080",
            "0.250 disconnected (connection failed: connection refused), retry in 500ms",
            "0.750 connect 127.0.0.1:8080",
            "0.750 disconnected (connection failed: connection refused), retry in 750ms",
            "1.500 connect 127.0.0.1:8080",
            "1.500 finished: gave up after 4 consecutive failed attempts; last: connection \
             failed: connection refused",
        ])
    );
    assert!(trace.attempts.is_empty());

    // HTTP errors: exponential, and every attempt reached the server.
    let (trace, _) = story(
        config_builder([1]).retry_limit(Some(3)),
        Scenario::single(AttemptPlan::status(503, "Service Unavailable")),
        NetworkFaults::none(),
        |sim| assert_eq!(sim.run_for(secs(3600)), Stop::Finished),
    );
    assert_eq!(trace.connect_times(), [secs(0), secs(5), secs(15)]);
    assert_eq!(trace.attempts.len(), 3);
    assert_eq!(
        trace.story().last().map(String::as_str),
        Some(
            "15.000 finished: gave up after 3 consecutive failed attempts; last: HTTP 503 \
             Service Unavailable"
        )
    );

    // The seed's squared policy: retry limit 10, waits squared up to the ceiling.
    let (trace, _) = story(
        config_builder([1]).backoff(sitebucket_proto::BackoffPolicy::Squared(Default::default())),
        Scenario::single(AttemptPlan::ok(vec![])),
        refuse_all,
        |sim| assert_eq!(sim.run_for(secs(7200)), Stop::Finished),
    );
    assert_eq!(
        trace.retry_waits(),
        [2, 4, 16, 256, 320, 320, 320, 320, 320].map(secs)
    );
    assert_eq!(trace.connects(), 10);
}

#[test]
fn disconnect_while_connecting() {
    let plan = hold(AttemptPlan::ok(vec![Step::Message(msg(1))]));
    // The connect never completes.
    let (trace, _) = story(
        config_builder([1]),
        Scenario::single(plan.clone()),
        NetworkFaults::none().with_fault(0, Fault::ConnectBlackHole),
        |sim| {
            sim.disconnect_at(secs(10));
            assert_eq!(sim.run_for(secs(3600)), Stop::Finished);
        },
    );
    assert_eq!(
        trace.story(),
        lines(&[
            "0.000 connect 127.0.0.1:8080",
            "10.000 close",
            "10.000 finished: stopped on request",
        ])
    );
    // The connect is still in flight: the server never accepts it.
    let (trace, sim) = story(
        config_builder([1]),
        Scenario::single(plan),
        NetworkFaults::none()
            .with_connect_latency(Duration::from_millis(100), Duration::from_millis(100)),
        |sim| {
            sim.disconnect_at(Duration::from_millis(50));
            assert_eq!(sim.run_for(secs(3600)), Stop::Finished);
        },
    );
    assert_eq!(
        trace.story(),
        lines(&[
            "0.000 connect 127.0.0.1:8080",
            "0.050 close",
            "0.050 finished: stopped on request",
        ])
    );
    assert!(trace.attempts.is_empty());
    assert!(sim.stream().disconnect_issued() && sim.stream().connection_healthy());
}

#[test]
fn disconnect_while_backing_off() {
    let (trace, _) = story(
        config_builder([1]),
        Scenario::single(AttemptPlan::status(420, "Enhance Your Calm")),
        NetworkFaults::none(),
        |sim| {
            sim.disconnect_at(secs(30));
            assert_eq!(sim.run_for(secs(3600)), Stop::Finished);
        },
    );
    assert_eq!(
        trace.story(),
        Story::new()
            .answered("0.000", "420 Enhance Your Calm")
            .then(&[
                "0.000 close",
                "0.000 disconnected (HTTP 420 Enhance Your Calm), retry in 60s",
                "30.000 finished: stopped on request",
            ])
            .build()
    );
}

#[test]
fn disconnect_while_streaming() {
    let (trace, _) = story(
        config_builder([1]),
        Scenario::single(hold(AttemptPlan::ok(vec![Step::Message(msg(1))]))),
        NetworkFaults::none(),
        |sim| {
            sim.disconnect_at(secs(45));
            assert_eq!(sim.run_for(secs(3600)), Stop::Finished);
        },
    );
    assert_eq!(
        trace.story(),
        Story::new()
            .answered("0.000", "200 OK")
            .then(&[
                "0.000 message",
                "30.000 keep-alive",
                "45.000 close",
                "45.000 finished: stopped on request",
            ])
            .build()
    );
    assert_eq!(trace.connections[0].messages, [msg(1)]);
    assert_eq!(trace.connections[0].closed_at, Some(secs(45)));
}

// ----- Reconnects that cannot storm: a connection earns trust (issue 12) -----

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The linear network sequence: 250 ms, 500 ms, … up to 16 s, `n` waits of it.
fn linear(n: usize) -> Vec<Duration> {
    (1..=n as u64).map(|k| ms(250 * k).min(secs(16))).collect()
}

/// How many `Connect`s came in the first `window` of the story.
fn connects_within(trace: &Trace, window: Duration) -> usize {
    trace
        .connect_times()
        .iter()
        .filter(|t| **t < window)
        .count()
}

#[test]
fn a_200_that_closes_at_once_forever_backs_off_linearly_and_gives_up() {
    // The server answers every attempt `200` with an empty chunked body and closes: before
    // connections earned trust, this was 4 attempts a second forever (48 in 12 s).
    let (trace, sim) = story(
        config_builder([1]).retry_limit(Some(70)),
        Scenario::single(AttemptPlan::ok(vec![])),
        NetworkFaults::none(),
        |sim| assert_eq!(sim.run_for(secs(3600)), Stop::Finished),
    );
    assert_eq!(trace.retry_waits(), linear(69));
    assert_eq!(
        trace.retry_waits()[63],
        secs(16),
        "the 64th wait reaches the ceiling"
    );
    // 250 ms · (1 + … + 64) + 5 · 16 s = 600 s to the 70th attempt, which gives up.
    assert_eq!(trace.connects(), 70);
    assert_eq!(trace.connect_times()[69], secs(600));
    assert_eq!(connects_within(&trace, secs(12)), 10);
    assert_eq!(
        trace.story()[..9],
        Story::new()
            .answered("0.000", "200 OK")
            .then(&[
                "0.000 close",
                "0.000 disconnected (connection closed by the server), retry in 250ms",
            ])
            .answered("0.250", "200 OK")
            .then(&["0.250 close"])
            .build()
    );
    assert_eq!(
        trace.story().last().map(String::as_str),
        Some(
            "600.000 finished: gave up after 70 consecutive failed attempts; last: connection \
             closed by the server"
        )
    );
    assert!(!sim.stream().connection_healthy());

    // Without a retry limit it goes on forever, at one attempt per 16 s once at the ceiling.
    let (trace, sim) = story(
        config_builder([1]),
        Scenario::single(AttemptPlan::ok(vec![])),
        NetworkFaults::none(),
        |sim| assert_eq!(sim.run_for(secs(3600)), Stop::TimeLimit),
    );
    let waits = trace.retry_waits();
    assert_eq!(waits[..64], linear(64));
    assert!(waits[64..].iter().all(|w| *w == secs(16)));
    // 65 attempts by 520 s (the 65th after 64 waits), then one every 16 s: 257 in the hour.
    assert_eq!(trace.connects(), 65 + (3600 - 520) / 16);
    assert_eq!(trace.connects(), 257);
    assert_eq!(
        sim.stream().error_count() as usize,
        trace.connects(),
        "every attempt failed"
    );
}

#[test]
fn a_200_with_only_disconnect_code_2_forever_backs_off_linearly() {
    // Two clients with the same credentials knock each other off: every connection is a
    // `200` whose only message is "duplicate stream". The client closes it itself.
    let plan = AttemptPlan::ok(vec![Step::Disconnect {
        code: 2,
        reason: "duplicate stream".into(),
    }])
    .with_end(End::Stall);
    let (trace, sim) = story(
        config_builder([1]),
        Scenario::single(plan),
        NetworkFaults::none(),
        |sim| assert_eq!(sim.run_for(secs(60)), Stop::TimeLimit),
    );
    assert_eq!(
        trace.story()[..11],
        Story::new()
            .answered("0.000", "200 OK")
            .then(&[
                "0.000 message",
                "0.000 close",
                "0.000 disconnected (disconnect message code 2: duplicate stream), retry in 250ms",
            ])
            .answered("0.250", "200 OK")
            .then(&["0.250 message", "0.250 close",])
            .build()
    );
    // 250 ms · (1 + … + 21) = 57.75 s: 22 attempts in the minute (240 before).
    assert_eq!(trace.retry_waits(), linear(22));
    assert_eq!(trace.connects(), 22);
    assert_eq!(connects_within(&trace, secs(12)), 10);
    assert_eq!(sim.stream().error_count(), 22);
}

#[test]
fn a_200_with_an_oversized_frame_forever_backs_off_linearly() {
    for framing in [Framing::Crlf, Framing::Length] {
        let (trace, sim) = story(
            config_builder([1]).max_message_bytes(1024).framing(framing),
            Scenario::single(AttemptPlan::ok(vec![Step::Oversized(4096)])),
            NetworkFaults::none(),
            |sim| assert_eq!(sim.run_for(secs(60)), Stop::TimeLimit),
        );
        assert_eq!(
            trace.story()[..4],
            Story::new()
                .answered("0.000", "200 OK")
                .then(&["0.000 close"])
                .build(),
            "{framing:?}"
        );
        assert_eq!(trace.retry_waits(), linear(22), "{framing:?}");
        assert_eq!(sim.stream().error_count(), 22, "{framing:?}");
    }
}

#[test]
fn rate_limit_420_then_200_drop_then_420_waits_60_then_120_seconds() {
    let (trace, sim) = story(
        config_builder([1]),
        Scenario::new(vec![
            AttemptPlan::status(420, "Enhance Your Calm"),
            AttemptPlan::ok(vec![]),
            AttemptPlan::status(420, "Enhance Your Calm"),
            hold(AttemptPlan::ok(vec![Step::Message(msg(1))])),
        ]),
        NetworkFaults::none(),
        |sim| assert_eq!(sim.run_for(secs(200)), Stop::TimeLimit),
    );
    assert_eq!(
        trace.story(),
        Story::new()
            .answered("0.000", "420 Enhance Your Calm")
            .then(&[
                "0.000 close",
                "0.000 disconnected (HTTP 420 Enhance Your Calm), retry in 60s",
            ])
            .answered("60.000", "200 OK")
            .then(&[
                "60.000 close",
                "60.000 disconnected (connection closed by the server), retry in 250ms",
            ])
            .answered("60.250", "420 Enhance Your Calm")
            .then(&[
                "60.250 close",
                "60.250 disconnected (HTTP 420 Enhance Your Calm), retry in 120s",
            ])
            .answered("180.250", "200 OK")
            .then(&["180.250 message"])
            .build()
    );
    assert_eq!(sim.stream().error_count(), 0, "the message earned trust");
}

#[test]
fn the_rate_limit_sequence_is_forgotten_after_ten_minutes_up() {
    // 420, a trusted connection up for 9 minutes, 420: 120 s. Then one up for 10 minutes,
    // 420: back to 60 s.
    let up_for = |minutes: u64| {
        AttemptPlan::ok(vec![
            Step::Message(msg(1)),
            Step::KeepAlive,
            Step::Wait(secs(minutes * 60)),
        ])
    };
    let calm = AttemptPlan::status(420, "Enhance Your Calm");
    let (trace, _) = story(
        config_builder([1]),
        Scenario::new(vec![
            calm.clone(),
            up_for(9),
            calm.clone(),
            up_for(10),
            calm,
            hold(AttemptPlan::ok(vec![Step::Message(msg(2))])),
        ])
        .clone(),
        NetworkFaults::none(),
        |sim| {
            sim.run_for(secs(3000));
        },
    );
    // Keep-alive gaps over the 90 s stall would fail the connection: the plans send one
    // keep-alive and then wait, so the stall ends each one after 90 s of silence instead.
    assert_eq!(
        trace.retry_waits(),
        [secs(60), ms(250), secs(120), ms(250), secs(240)],
        "a stalled connection is up 90 s, not 10 minutes: the 420 sequence goes on"
    );
    // Now with keep-alives holding each connection up.
    let held = |minutes: u64| {
        let mut steps = vec![Step::Message(msg(1))];
        for _ in 0..minutes * 2 {
            steps.push(Step::Wait(secs(30)));
            steps.push(Step::KeepAlive);
        }
        AttemptPlan::ok(steps)
    };
    let calm = AttemptPlan::status(420, "Enhance Your Calm");
    let (trace, _) = story(
        config_builder([1]),
        Scenario::new(vec![
            calm.clone(),
            held(9),
            calm.clone(),
            held(10),
            calm,
            hold(AttemptPlan::ok(vec![Step::Message(msg(2))])),
        ]),
        NetworkFaults::none(),
        |sim| {
            sim.run_for(secs(3000));
        },
    );
    assert_eq!(
        trace.retry_waits(),
        [secs(60), ms(250), secs(120), ms(250), secs(60)]
    );
    let times = trace.connect_times();
    assert_eq!(times[..3], [secs(0), secs(60), ms(600_250)]);
}

#[test]
fn keep_alives_for_31_seconds_earn_trust_and_29_do_not() {
    // Two 200-then-close attempts (250 ms, 500 ms), then a 200 that streams keep-alives for
    // `up` seconds and closes.
    let run = |up: u64| {
        let mut steps = Vec::new();
        for _ in 0..up / 10 {
            steps.push(Step::KeepAlive);
            steps.push(Step::Wait(secs(10)));
        }
        steps.push(Step::KeepAlive);
        steps.push(Step::Wait(secs(up % 10)));
        let (trace, sim) = story(
            config_builder([1]),
            Scenario::new(vec![
                AttemptPlan::ok(vec![]),
                AttemptPlan::ok(vec![]),
                AttemptPlan::ok(steps),
                hold(AttemptPlan::ok(vec![Step::Message(msg(1))])),
            ]),
            NetworkFaults::none(),
            |sim| {
                sim.run_for(secs(up + 5));
            },
        );
        (trace, sim.stream().error_count())
    };
    let (trace, count) = run(31);
    assert_eq!(trace.retry_waits(), [ms(250), ms(500), ms(250)]);
    assert_eq!(
        trace.story()[trace.story().len() - 7..],
        Story::new()
            .then(&[
                "30.750 keep-alive",
                "31.750 close",
                "31.750 disconnected (connection closed by the server), retry in 250ms",
            ])
            .answered("32.000", "200 OK")
            .then(&["32.000 message"])
            .build()
    );
    assert_eq!(count, 0);
    let (trace, count) = run(29);
    assert_eq!(
        trace.retry_waits(),
        [ms(250), ms(500), ms(750)],
        "29 s up is not enough: the sequence goes on"
    );
    assert_eq!(trace.connect_times()[3], ms(750) + secs(29) + ms(750));
    assert_eq!(count, 0, "the fourth connection's message earned trust");
}

#[test]
fn one_real_message_earns_trust_and_the_next_wait_is_the_first_again() {
    let (trace, _) = story(
        config_builder([1]),
        Scenario::new(vec![
            AttemptPlan::ok(vec![]),
            AttemptPlan::ok(vec![]),
            AttemptPlan::ok(vec![]),
            AttemptPlan::ok(vec![Step::Message(msg(1))]),
            AttemptPlan::ok(vec![]),
            hold(AttemptPlan::ok(vec![Step::Message(msg(2))])),
        ]),
        NetworkFaults::none(),
        |sim| {
            sim.run_for(secs(5));
        },
    );
    assert_eq!(
        trace.story()[15..],
        Story::new()
            .answered("1.500", "200 OK")
            .then(&[
                "1.500 message",
                "1.500 close",
                "1.500 disconnected (connection closed by the server), retry in 250ms",
            ])
            .answered("1.750", "200 OK")
            .then(&[
                "1.750 close",
                "1.750 disconnected (connection closed by the server), retry in 500ms",
            ])
            .answered("2.250", "200 OK")
            .then(&["2.250 message"])
            .build()
    );
    assert_eq!(
        trace.retry_waits(),
        [ms(250), ms(500), ms(750), ms(250), ms(500)]
    );
}
