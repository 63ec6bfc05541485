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
        lines(&[
            "0.000 connect 127.0.0.1:8080",
            "0.000 transmit",
            "0.000 connected 200 OK",
            "0.000 message",
            "0.000 message",
            "0.000 message",
            "1.000 message",
            "31.000 keep-alive",
        ])
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
            lines(&[
                "0.000 connect 127.0.0.1:8080",
                "0.000 transmit",
                "0.000 connected 200 OK",
                "0.000 message",
                "89.000 keep-alive",
                "178.000 keep-alive",
                "268.000 close",
                "268.000 disconnected (stall detected: no data for 90s), retry in 250ms",
                "268.250 connect 127.0.0.1:8080",
                "268.250 transmit",
                "268.250 connected 200 OK",
                "268.250 message",
                "298.250 keep-alive",
                "328.250 keep-alive",
            ]),
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
        lines(&[
            "0.000 connect 127.0.0.1:8080",
            "0.000 transmit",
            "0.000 connected 420 Enhance Your Calm",
            "0.000 close",
            "0.000 disconnected (HTTP 420 Enhance Your Calm), retry in 60s",
            "60.000 connect 127.0.0.1:8080",
            "60.000 transmit",
            "60.000 connected 200 OK",
            "60.000 message",
        ])
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
    want.extend(lines(&[
        "35.000 connect 127.0.0.1:8080",
        "35.000 transmit",
        "35.000 connected 200 OK",
        "35.000 message",
    ]));
    assert_eq!(trace.story(), want);
    assert_eq!(sim.stream().error_count(), 0, "a 200 head resets the count");
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
        lines(&[
            "0.000 connect 127.0.0.1:8080",
            "0.000 transmit",
            "0.000 connected 401 Unauthorized",
            "0.000 close",
            "0.000 finished: HTTP 401 Unauthorized: retrying cannot fix this status",
        ])
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
        lines(&[
            "0.000 connect 127.0.0.1:8080",
            "0.000 transmit",
            "0.000 connected 200 OK",
            "0.000 message",
            "90.000 close",
            "90.000 disconnected (stall detected: no data for 90s), retry in 250ms",
            // No head at all: the stall timer runs from the moment the connection is up.
            "90.250 connect 127.0.0.1:8080",
            "90.250 transmit",
            "180.250 close",
            "180.250 disconnected (stall detected: no data for 90s), retry in 500ms",
            "180.750 connect 127.0.0.1:8080",
            "180.750 transmit",
            "180.750 connected 200 OK",
            "180.750 message",
        ])
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
        lines(&[
            "0.000 connect 127.0.0.1:8080",
            "0.000 transmit",
            "0.000 connected 200 OK",
            "0.000 message",
            "0.000 message",
            "0.000 message",
            "0.000 close",
            "0.000 disconnected (connection closed by the server), retry in 250ms",
            "0.250 connect 127.0.0.1:8080",
            "0.250 transmit",
            "0.250 connected 200 OK",
            "0.250 message",
            "0.250 message",
        ])
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
        lines(&[
            "0.000 connect 127.0.0.1:8080",
            "0.000 transmit",
            "0.000 connected 200 OK",
            "0.000 message",
            "0.000 message",
            "1.000 close",
            "1.000 disconnected (connection closed by the server), retry in 250ms",
            "1.250 connect 127.0.0.1:8080",
            "1.250 transmit",
            "1.250 connected 200 OK",
            "1.250 message",
            "1.250 message",
            "2.250 message",
        ])
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
        story[..12],
        lines(&[
            "0.000 connect 127.0.0.1:8080",
            "0.000 transmit",
            "0.000 connected 200 OK",
            "0.000 message",
            "0.000 message",
            "1.000 message",
            "1.000 close",
            "1.000 disconnected (disconnect message code 1: shutdown), retry in 250ms",
            "1.250 connect 127.0.0.1:8080",
            "1.250 transmit",
            "1.250 connected 200 OK",
            "1.250 message",
        ])
    );
    assert!(
        story[12..].iter().all(|l| l.ends_with("keep-alive")),
        "{story:?}"
    );
    assert_eq!(
        trace.connections[0].messages,
        [control(), msg(1), corpus::disconnect(1, "shutdown")],
        "printed like any message; nothing after it"
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
            lines(&[
                "0.000 connect 127.0.0.1:8080",
                "0.000 transmit",
                "0.000 connected 200 OK",
                "0.000 message",
                "0.000 message",
                "1.000 message",
                "1.000 close",
                &format!(
                    "1.000 finished: disconnect message code {code} ({reason}): not reconnecting"
                ),
            ])
        );
        assert_eq!(trace.attempts.len(), 1);
        assert_eq!(
            trace.connections[0].messages.last().map(|m| m.to_vec()),
            Some(corpus::disconnect(code, reason))
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
            lines(&[
                "0.000 connect 127.0.0.1:8080",
                "0.000 transmit",
                "0.000 connected 200 OK",
                "0.000 message",
                "0.000 close",
                "0.000 disconnected (bad message framing: message is longer than the limit of \
                 1024 bytes), retry in 250ms",
                "0.250 connect 127.0.0.1:8080",
                "0.250 transmit",
                "0.250 connected 200 OK",
                "0.250 message",
            ]),
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
        lines(&[
            "0.000 connect 127.0.0.1:8080",
            "0.000 transmit",
            "0.000 connected 420 Enhance Your Calm",
            "0.000 close",
            "0.000 disconnected (HTTP 420 Enhance Your Calm), retry in 60s",
            "30.000 finished: stopped on request",
        ])
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
        lines(&[
            "0.000 connect 127.0.0.1:8080",
            "0.000 transmit",
            "0.000 connected 200 OK",
            "0.000 message",
            "30.000 keep-alive",
            "45.000 close",
            "45.000 finished: stopped on request",
        ])
    );
    assert_eq!(trace.connections[0].messages, [msg(1)]);
    assert_eq!(trace.connections[0].closed_at, Some(secs(45)));
}
