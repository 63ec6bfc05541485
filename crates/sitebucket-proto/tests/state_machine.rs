//! Property tests of the reconnect state machine's invariants (proptest-state-machine):
//! every delay within its policy's bounds, no `Connect` after `disconnect()`, deadlines always
//! in the future of the `now` they were handed, the retry limit honoured (counting every attempt
//! since the last connection that earned trust — a `200` alone earns nothing), fatal statuses
//! never retried, jitter never below a kind's minimum — whatever sequence of inputs, time jumps
//! and commands arrives.

#![allow(clippy::disallowed_methods)] // tests use Instant::now() only as a base for virtual time

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use sitebucket_proto::{
    Action, BackoffPolicy, Config, Credentials, FailureKind, Jitter, Outcome, SiteStream,
    SquaredBackoff, StreamEvent,
};

#[derive(Clone, Debug)]
struct Setup {
    squared: bool,
    retry_limit: Option<u32>,
    jitter: Option<f64>,
}

#[derive(Clone, Debug)]
enum Step {
    Connected,
    ConnectFailed,
    Head(u16),
    Message,
    KeepAlive,
    DisconnectMessage(u32),
    Garbage,
    Eof,
    Advance(u64),
    ToDeadline,
    Disconnect,
    ResetThrottles,
}

struct Model;

impl ReferenceStateMachine for Model {
    type State = Setup;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Setup> {
        (
            any::<bool>(),
            prop::option::of(1u32..6),
            prop::option::of(0.0f64..=1.0),
        )
            .prop_map(|(squared, retry_limit, jitter)| Setup {
                squared,
                retry_limit,
                jitter,
            })
            .boxed()
    }

    fn transitions(_: &Setup) -> BoxedStrategy<Step> {
        prop_oneof![
            4 => Just(Step::Connected),
            2 => Just(Step::ConnectFailed),
            3 => prop::sample::select(vec![200u16, 200, 420, 429, 500, 503, 401, 403, 404, 406, 413, 416, 302])
                .prop_map(Step::Head),
            3 => Just(Step::Message),
            1 => Just(Step::KeepAlive),
            1 => (1u32..=12).prop_map(Step::DisconnectMessage),
            1 => Just(Step::Garbage),
            2 => Just(Step::Eof),
            2 => (0u64..400_000).prop_map(Step::Advance),
            4 => Just(Step::ToDeadline),
            1 => Just(Step::Disconnect),
            1 => Just(Step::ResetThrottles),
        ]
        .boxed()
    }

    fn apply(state: Setup, _: &Step) -> Setup {
        state
    }
}

struct Harness {
    stream: SiteStream,
    setup: Setup,
    policy: BackoffPolicy,
    now: Instant,
    deadline: Option<Instant>,
    /// A `Connect` was emitted and neither answered nor closed.
    connecting: bool,
    /// A transport is up (from `handle_connected` until `Close`).
    open: bool,
    stopped_by_user: bool,
    finished: Option<Outcome>,
    /// Attempts since the last connection that earned trust (the model of `error_count`,
    /// plus the attempt in progress).
    attempts_since_trust: u32,
    /// The open connection's `200` head arrived at this instant.
    head_at: Option<Instant>,
    /// The open connection's last byte (or its coming up): the stall timer's start.
    last_byte_at: Option<Instant>,
    /// The open connection delivered a `disconnect` message: nothing after it earns trust.
    disconnect_seen: bool,
    /// The open connection earned trust (the model's view).
    trusted: bool,
}

/// The default trust period and stall timeout.
const TRUST_AFTER: Duration = Duration::from_secs(30);
const STALL: Duration = Duration::from_secs(90);

impl Harness {
    fn drain(&mut self) {
        for _ in 0..100_000 {
            match self.stream.poll_action(self.now) {
                Action::Connect { .. } => {
                    assert!(!self.stopped_by_user, "Connect after disconnect()");
                    assert!(self.finished.is_none(), "Connect after Finished");
                    self.attempts_since_trust += 1;
                    if let Some(limit) = self.setup.retry_limit {
                        assert!(
                            self.attempts_since_trust <= limit,
                            "attempt {} exceeds the retry limit {limit}",
                            self.attempts_since_trust
                        );
                    }
                    self.connecting = true;
                }
                Action::Transmit(bytes) => assert!(self.open && !bytes.is_empty()),
                Action::Close => {
                    self.connecting = false;
                    self.open = false;
                    self.head_at = None;
                    self.last_byte_at = None;
                    self.disconnect_seen = false;
                    self.trusted = false;
                }
                Action::Event(StreamEvent::Connected { status: 200, .. }) => {
                    // A `200` head alone earns nothing.
                    self.head_at = Some(self.now);
                }
                Action::Event(StreamEvent::Message(message)) => {
                    if message.starts_with(b"{\"disconnect\"") {
                        self.disconnect_seen = true;
                    } else if self.head_at.is_some() && !self.disconnect_seen {
                        self.earn_trust();
                    }
                }
                Action::Event(StreamEvent::Disconnected { error, retry_in }) => {
                    let kind = error.failure_kind().expect("a retried error has a kind");
                    let kind = if self.setup.squared {
                        FailureKind::Network
                    } else {
                        kind
                    };
                    // Jitter never takes a wait below its kind's minimum.
                    let (lo, hi) = self.policy.bounds(kind);
                    assert!(
                        retry_in <= hi && retry_in >= lo,
                        "{retry_in:?} outside [{lo:?}, {hi:?}] for {error}"
                    );
                }
                Action::Event(_) => {}
                Action::Wait(deadline) => {
                    assert!(deadline > self.now, "Wait({deadline:?}) not after now");
                    self.deadline = Some(deadline);
                    return;
                }
                Action::Finished(outcome) => {
                    if let Some(previous) = &self.finished {
                        assert_eq!(previous, &outcome, "the outcome never changes");
                    }
                    if self.stopped_by_user {
                        assert_eq!(outcome, Outcome::Stopped);
                    }
                    if let (Outcome::GaveUp { attempts, .. }, Some(limit)) =
                        (&outcome, self.setup.retry_limit)
                    {
                        assert_eq!(*attempts, limit);
                    }
                    assert!(
                        !self.connecting && !self.open,
                        "finished with a socket open"
                    );
                    self.finished = Some(outcome);
                    self.deadline = None;
                    return;
                }
            }
        }
        panic!("poll_action never settled");
    }

    fn earn_trust(&mut self) {
        if !self.trusted {
            self.trusted = true;
            // The trusted connection itself is not a failed attempt: only the attempts after
            // it count toward the retry limit.
            self.attempts_since_trust = 0;
        }
    }

    /// Time moved to `self.now` and the stream was told: an open `200` connection that stayed
    /// up for the trust period earns trust, unless its stall timer ran out first.
    fn time_passed(&mut self) {
        if let (Some(head), Some(byte)) = (self.head_at, self.last_byte_at) {
            if self.now >= head + TRUST_AFTER && self.now < byte + STALL && !self.disconnect_seen {
                self.earn_trust();
            }
        }
    }

    /// Bytes arrived now: the stall timer starts over.
    fn bytes_arrived(&mut self) {
        if self.open {
            self.last_byte_at = Some(self.now);
        }
    }

    fn chunk(data: &[u8]) -> Vec<u8> {
        let mut out = format!("{:x}\r\n", data.len()).into_bytes();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        out
    }
}

struct StreamTest;

impl StateMachineTest for StreamTest {
    type SystemUnderTest = Harness;
    type Reference = Model;

    fn init_test(setup: &Setup) -> Harness {
        let policy = if setup.squared {
            BackoffPolicy::Squared(SquaredBackoff::default())
        } else {
            BackoffPolicy::default()
        };
        let config = Config::builder([1, 2, 3], Credentials::new("ck", "cs", "t", "ts"))
            .url("http://127.0.0.1:1/1.1/site.json")
            .backoff(policy.clone())
            .retry_limit(setup.retry_limit)
            .jitter(setup.jitter.map(|fraction| Jitter { fraction, seed: 9 }))
            .build()
            .expect("valid config");
        let mut harness = Harness {
            stream: SiteStream::new(config),
            setup: setup.clone(),
            policy,
            now: Instant::now(),
            deadline: None,
            connecting: false,
            open: false,
            stopped_by_user: false,
            finished: None,
            attempts_since_trust: 0,
            head_at: None,
            last_byte_at: None,
            disconnect_seen: false,
            trusted: false,
        };
        harness.drain();
        harness
    }

    fn apply(mut h: Harness, _: &Setup, step: Step) -> Harness {
        let now = h.now;
        match step {
            Step::Connected if h.connecting => {
                h.connecting = false;
                h.open = true;
                h.last_byte_at = Some(now);
                h.stream.handle_connected(now, 1_700_000_000);
            }
            Step::ConnectFailed if h.connecting => {
                h.connecting = false;
                h.stream
                    .handle_connect_failed(now, std::io::ErrorKind::ConnectionRefused);
            }
            Step::Head(status) if h.open => {
                let head = format!("HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n");
                h.bytes_arrived();
                h.stream.handle_input(now, head.as_bytes());
            }
            Step::Message if h.open => {
                h.bytes_arrived();
                h.stream
                    .handle_input(now, &Harness::chunk(b"{\"a\":1}\r\n"))
            }
            Step::KeepAlive if h.open => {
                h.bytes_arrived();
                h.stream.handle_input(now, &Harness::chunk(b"\r\n"))
            }
            Step::DisconnectMessage(code) if h.open => {
                let m = format!("{{\"disconnect\":{{\"code\":{code},\"reason\":\"r\"}}}}\r\n");
                h.bytes_arrived();
                h.stream.handle_input(now, &Harness::chunk(m.as_bytes()));
            }
            Step::Garbage if h.open => {
                h.bytes_arrived();
                h.stream.handle_input(now, b"zz\r\n")
            }
            Step::Eof if h.open => h.stream.handle_eof(now),
            Step::Advance(ms) => {
                h.now += Duration::from_millis(ms);
                h.time_passed();
                h.stream.handle_timeout(h.now);
            }
            Step::ToDeadline => {
                if let Some(deadline) = h.deadline {
                    h.now = deadline;
                    h.time_passed();
                    h.stream.handle_timeout(h.now);
                }
            }
            Step::Disconnect => {
                h.stream.disconnect();
                // A stream that already finished keeps its outcome.
                h.stopped_by_user = h.finished.is_none();
                assert!(h.stream.disconnect_issued());
            }
            Step::ResetThrottles => {
                h.stream.reset_throttles();
                h.stopped_by_user = false;
                // The attempt in progress (an open connection) still counts.
                h.attempts_since_trust = u32::from((h.open && !h.trusted) || h.connecting);
                if h.finished.take().is_some() {
                    assert!(
                        h.stream.running(),
                        "reset_throttles revives a finished stream"
                    );
                }
            }
            // Inputs that no real transport could deliver in this state are skipped.
            _ => return h,
        }
        h.drain();
        h
    }

    fn check_invariants(h: &Harness, _: &Setup) {
        assert_eq!(h.stream.running(), h.finished.is_none());
        if h.open {
            assert_eq!(
                h.stream.is_trusted(),
                h.trusted,
                "trust as the model has it"
            );
        }
        if let Some(Outcome::Fatal { status, .. }) = &h.finished {
            assert!(matches!(status, 401 | 403 | 404 | 406 | 413 | 416));
        }
        assert!(h.stream.buffered() <= 64 * 1024, "buffers stay small");
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5173_b0c4),
        ..ProptestConfig::default()
    })]
    #[test]
    fn reconnect_invariants_hold(sequential 1..80 => StreamTest);
}
