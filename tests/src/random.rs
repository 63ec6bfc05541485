//! Random cases for the seed sweep: a config, a scenario, a network and perhaps a
//! `disconnect()`, all drawn from one seed, so a failing seed replays exactly.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sitebucket_proto::{BackoffPolicy, Config, Framing, Jitter, SquaredBackoff, TwitterBackoff};
use sitebucket_testserver::corpus::{self, Corpus, USER_IDS};
use sitebucket_testserver::{
    AttemptPlan, BodyEncoding, ChunkPlan, Credentials as ServerCredentials, End, Repeat, Scenario,
    Step, Transfer,
};

use crate::{config_builder, NetworkFaults, Recording, Sim, Trace};

/// The environment variable with the number of seeds the sweep runs.
pub const SEEDS_VAR: &str = "SITEBUCKET_SIM_SEEDS";
/// The environment variable with the first seed the sweep runs.
pub const START_VAR: &str = "SITEBUCKET_SIM_START";

/// A case stops early after this many connects: a server that fails at once under a short
/// backoff makes thousands, and a few hundred already cover every path.
pub const MAX_CONNECTS: usize = 400;
/// A case stops early after this many messages.
pub const MAX_MESSAGES: u64 = 4000;

/// The command that replays `seed` alone.
pub fn replay_command(seed: u64) -> String {
    format!(
        "cargo xtask sim --seeds 1 --start {seed} --hours 0   (or, in debug: {SEEDS_VAR}=1 \
         {START_VAR}={seed} cargo test -p sitebucket-sim --test sweep seed_sweep)"
    )
}

/// One random case.
#[derive(Debug, Clone)]
pub struct Case {
    /// The seed everything was drawn from (the network's draws included).
    pub seed: u64,
    /// The stream's config.
    pub config: Config,
    /// What the server does.
    pub scenario: Scenario,
    /// How the network misbehaves.
    pub faults: NetworkFaults,
    /// Whether the server expects other credentials (every attempt then gets a 401).
    pub wrong_credentials: bool,
    /// When the user calls `disconnect()`, if at all.
    pub disconnect_at: Option<Duration>,
    /// How long to run (virtual time), unless [`MAX_CONNECTS`] or [`MAX_MESSAGES`] is
    /// reached first.
    pub duration: Duration,
}

/// What running a case gave.
#[derive(Debug)]
pub struct CaseRun {
    /// The run's trace (lifecycle only: messages are checked and counted, not kept).
    pub trace: Trace,
    /// The virtual time the run covered.
    pub simulated: Duration,
}

impl Case {
    /// The case for `seed`.
    pub fn generate(seed: u64) -> Case {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_CA5E_0000_0001);
        let mut corpus = Corpus::new(seed);
        let config = random_config(&mut rng, seed);
        let plans = (0..rng.gen_range(1..=8))
            .map(|_| random_plan(&mut rng, &mut corpus, config.max_message_bytes()))
            .collect();
        let scenario = if rng.gen_bool(0.5) {
            Scenario::cycle(plans)
        } else {
            Scenario::new(plans)
        };
        let mut faults = random_faults(&mut rng);
        if config.gzip() {
            // Compressing and inflating a few bytes at a time is slow in debug builds; gzip
            // split at tiny points is covered by the core's own split-invariance tests.
            faults.max_segment = faults.max_segment.max(256);
        }
        let duration = Duration::from_secs(rng.gen_range(300..=3600));
        let disconnect_at = rng
            .gen_bool(0.25)
            .then(|| Duration::from_millis(rng.gen_range(0..=duration.as_millis() as u64)));
        Case {
            seed,
            config,
            scenario,
            faults,
            wrong_credentials: rng.gen_bool(0.03),
            disconnect_at,
            duration,
        }
    }

    /// A one-line description of the case, for failure messages.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let plans: Vec<String> = self
            .scenario
            .attempts
            .iter()
            .map(|p| match (p.status, p.steps.len()) {
                (200, n) => format!("200[{n} steps, {:?}]", p.end),
                (status, _) => status.to_string(),
            })
            .collect();
        let f = &self.faults;
        format!(
            "seed {}: {:?} framing, gzip {}, max message {} B, stall {:?}, connect timeout \
             {:?}, {:?}, jitter {:?}, retry limit {:?}, trust after {:?}, rate limit reset \
             after {:?}; plans {} ({:?}); network: latency \
             {:?}, segments <= {} B, refuse {:.2}, no-connect {:.2}, reset {:.2}, truncate \
             {:.2}, black hole {:.2}, lifetime {:?}; wrong credentials {}; disconnect() at \
             {:?}; run {:?}",
            self.seed,
            c.framing(),
            c.gzip(),
            c.max_message_bytes(),
            c.stall_timeout(),
            c.connect_timeout(),
            c.backoff(),
            c.jitter().map(|j| j.fraction),
            c.retry_limit(),
            c.trust_after(),
            c.rate_limit_reset_after(),
            plans.join(" "),
            self.scenario.after,
            f.latency,
            f.max_segment,
            f.refuse,
            f.connect_black_hole,
            f.reset,
            f.truncate,
            f.black_hole,
            f.lifetime,
            self.wrong_credentials,
            self.disconnect_at,
            self.duration,
        )
    }

    /// Runs the case and adds the end-of-run checks to the trace's violations.
    pub fn run(&self) -> CaseRun {
        let mut sim = Sim::new(
            self.config.clone(),
            self.scenario.clone(),
            self.faults.clone(),
            self.seed,
        )
        .with_recording(Recording::Lifecycle);
        if self.wrong_credentials {
            sim = sim.with_server_credentials(ServerCredentials::new(
                "another-consumer-key",
                "another-consumer-secret",
                "another-token",
                "another-token-secret",
            ));
        }
        if let Some(at) = self.disconnect_at {
            sim.disconnect_at(at);
        }
        sim.run_for_or_until(self.duration, |t| {
            t.connects() >= MAX_CONNECTS || t.messages >= MAX_MESSAGES
        });
        let simulated = sim.now();
        let mut trace = sim.into_trace();
        let accepted = trace
            .connections
            .iter()
            .filter(|c| c.attempt.is_some())
            .count();
        if accepted != trace.attempts.len() {
            trace.violations.push(format!(
                "{accepted} connections accepted, the server recorded {}",
                trace.attempts.len()
            ));
        }
        for record in trace.attempts.iter().filter(|r| r.request_complete()) {
            if record.signature_ok == self.wrong_credentials {
                trace.violations.push(format!(
                    "server attempt {}: signature_ok = {} with {} credentials",
                    record.index,
                    record.signature_ok,
                    if self.wrong_credentials {
                        "other"
                    } else {
                        "the right"
                    }
                ));
            }
        }
        if trace.connections.is_empty() && self.disconnect_at != Some(Duration::ZERO) {
            trace.violations.push("the stream never connected".into());
        }
        CaseRun { trace, simulated }
    }
}

fn random_config(rng: &mut ChaCha8Rng, seed: u64) -> Config {
    let follow: Vec<u64> = USER_IDS[..rng.gen_range(1..=USER_IDS.len())].to_vec();
    let mut b = config_builder(follow).rng_seed(seed);
    b = b.framing(if rng.gen_bool(0.5) {
        Framing::Crlf
    } else {
        Framing::Length
    });
    b = b.gzip(rng.gen_bool(0.15));
    if rng.gen_bool(0.4) {
        b = b.max_message_bytes(rng.gen_range(1024..=16 * 1024));
    }
    if rng.gen_bool(0.4) {
        b = b.stall_timeout(Duration::from_secs(rng.gen_range(5..=120)));
    }
    if rng.gen_bool(0.4) {
        b = b.connect_timeout(Duration::from_secs(rng.gen_range(1..=60)));
    }
    let policy = match rng.gen_range(0..10) {
        0..=5 => BackoffPolicy::default(),
        6..=7 => BackoffPolicy::Twitter(TwitterBackoff {
            network_step: Duration::from_millis(rng.gen_range(10..=2000)),
            network_max: Duration::from_secs(rng.gen_range(1..=30)),
            http_start: Duration::from_secs(rng.gen_range(1..=10)),
            http_max: Duration::from_secs(rng.gen_range(10..=600)),
            rate_limit_start: Duration::from_secs(rng.gen_range(10..=120)),
            rate_limit_max: Duration::from_secs(rng.gen_range(60..=1800)),
        }),
        _ => {
            // Sub-second starts and ceilings below the start are edge cases of their own.
            let start = Duration::from_millis(if rng.gen_bool(0.7) {
                rng.gen_range(1000..=3000)
            } else {
                rng.gen_range(100..=999)
            });
            let max = if rng.gen_bool(0.1) {
                Duration::from_millis(rng.gen_range(100..=start.as_millis() as u64))
            } else {
                Duration::from_secs(rng.gen_range(5..=320))
            };
            BackoffPolicy::Squared(SquaredBackoff { start, max })
        }
    };
    b = b.backoff(policy);
    if rng.gen_bool(0.25) {
        b = b.jitter(Some(Jitter {
            fraction: rng.gen_range(0.0..=1.0),
            seed: rng.gen(),
        }));
    }
    if rng.gen_bool(0.5) {
        b = b.retry_limit(Some(rng.gen_range(1..=12)));
    }
    if rng.gen_bool(0.3) {
        // Trust periods shorter and longer than the stall timeout and the plans' streaming.
        let trust = Duration::from_millis(rng.gen_range(500..=120_000));
        let reset = trust + Duration::from_millis(rng.gen_range(0..=900_000));
        b = b.trust_after(trust).rate_limit_reset_after(reset);
    }
    // Every value drawn above is within the builder's rules.
    b.build().expect("random config is valid")
}

fn random_plan(rng: &mut ChaCha8Rng, corpus: &mut Corpus, max_message: usize) -> AttemptPlan {
    match rng.gen_range(0..100) {
        0..=54 => streaming_plan(rng, corpus, max_message),
        55..=69 => {
            let (status, reason) = [
                (500, "Internal Server Error"),
                (502, "Bad Gateway"),
                (503, "Service Unavailable"),
                (504, "Gateway Timeout"),
            ][rng.gen_range(0..4)];
            AttemptPlan::status(status, reason)
        }
        70..=79 => {
            if rng.gen_bool(0.5) {
                AttemptPlan::status(420, "Enhance Your Calm")
            } else {
                AttemptPlan::status(429, "Too Many Requests")
            }
        }
        80..=81 => {
            let (status, reason) = [
                (401, "Unauthorized"),
                (403, "Forbidden"),
                (404, "Not Found"),
                (406, "Not Acceptable"),
                (413, "Payload Too Large"),
                (416, "Range Not Satisfiable"),
            ][rng.gen_range(0..6)];
            AttemptPlan::status(status, reason)
        }
        82..=90 => AttemptPlan::never_answers(),
        _ => AttemptPlan::half_head(),
    }
}

fn streaming_plan(rng: &mut ChaCha8Rng, corpus: &mut Corpus, max_message: usize) -> AttemptPlan {
    let mut steps = vec![Step::Message(corpus::control(corpus::STREAM_ID))];
    let mut end = match rng.gen_range(0..10) {
        0..=3 => End::Close,
        4..=5 => End::Stall,
        _ => End::HoldWithKeepAlives(Duration::from_secs(rng.gen_range(5..=60))),
    };
    for _ in 0..rng.gen_range(0..=30) {
        match rng.gen_range(0..100) {
            0..=49 => steps.push(Step::Message(corpus.site_message())),
            50..=59 => steps.push(Step::KeepAlive),
            60..=74 => {
                let secs = if rng.gen_bool(0.8) {
                    rng.gen_range(0..=5_000)
                } else {
                    rng.gen_range(5_000..=150_000)
                };
                steps.push(Step::Wait(Duration::from_millis(secs)));
            }
            75..=77 => steps.push(Step::Disconnect {
                code: rng.gen_range(1..=12),
                reason: "sweep".into(),
            }),
            78..=80 => {
                // Around the limit (both sides of it), far over it, or (with the default
                // 8 MiB limit) just a big message.
                let n = if max_message > 64 * 1024 {
                    rng.gen_range(1024..=64 * 1024)
                } else if rng.gen_bool(0.5) {
                    max_message - 8 + rng.gen_range(0..=24)
                } else {
                    max_message * rng.gen_range(2..=8)
                };
                steps.push(Step::Oversized(n));
            }
            81..=84 => {
                let pool: Vec<Vec<u8>> = (0..rng.gen_range(1..=8))
                    .map(|_| corpus.site_message())
                    .collect();
                let mut repeat = Repeat::endless(pool)
                    .with_interval(Duration::from_millis(rng.gen_range(1_000..=30_000)));
                if rng.gen_bool(0.5) {
                    repeat = repeat.with_count(rng.gen_range(1..=200));
                }
                if rng.gen_bool(0.5) {
                    repeat = repeat.with_keep_alive_every(rng.gen_range(1..=20));
                }
                steps.push(Step::Repeat(repeat));
            }
            85..=86 => {
                let mut bytes = corpus.site_message();
                bytes.truncate(rng.gen_range(1..=40).min(bytes.len()));
                bytes.extend_from_slice(b"\r\n");
                steps.push(Step::Trickle {
                    bytes,
                    every: Duration::from_millis(rng.gen_range(1..=500)),
                });
            }
            _ => {
                let message = corpus.site_message();
                let cut = rng.gen_range(1..message.len());
                steps.push(Step::RawBody(message[..cut].to_vec()));
                steps.push(Step::CloseNow);
                end = End::Close;
                break;
            }
        }
    }
    let chunks = match rng.gen_range(0..10) {
        0..=3 => ChunkPlan::PerStep,
        4..=5 => ChunkPlan::Fixed(rng.gen_range(1..=256)),
        6..=8 => ChunkPlan::Random {
            seed: rng.gen(),
            min: 1,
            max: rng.gen_range(1..=8192),
        },
        _ => {
            let mut cuts: Vec<usize> = (0..rng.gen_range(1..=6))
                .map(|_| rng.gen_range(1..=4096))
                .collect();
            cuts.sort_unstable();
            ChunkPlan::CutPoints(cuts)
        }
    };
    let mut plan = AttemptPlan::ok(steps).with_chunks(chunks).with_end(end);
    if rng.gen_bool(0.15) {
        plan = plan.with_transfer(Transfer::UntilEof);
    }
    if rng.gen_bool(0.1) {
        plan = plan.with_encoding(BodyEncoding::Identity);
    }
    plan
}

fn random_faults(rng: &mut ChaCha8Rng) -> NetworkFaults {
    let mut net = NetworkFaults::none();
    let min = Duration::from_micros(rng.gen_range(0..=50_000));
    let spread = Duration::from_micros(rng.gen_range(0..=100_000));
    net = net.with_latency(min, min + spread);
    let min = Duration::from_micros(rng.gen_range(0..=50_000));
    net = net.with_connect_latency(min, min + Duration::from_micros(rng.gen_range(0..=50_000)));
    // Segments of 1 to 8 bytes come from `tiny_segments`; whole runs of them are slow.
    net.max_segment = if rng.gen_bool(0.1) {
        rng.gen_range(128..=1024)
    } else {
        rng.gen_range(64..=16 * 1024)
    };
    net.tiny_segments = rng.gen_range(0.0..=0.1);
    if rng.gen_bool(0.8) {
        net.refuse = rng.gen_range(0.0..=0.2);
        net.connect_black_hole = rng.gen_range(0.0..=0.05);
        net.reset = rng.gen_range(0.0..=0.2);
        net.reset_within = Duration::from_secs(rng.gen_range(1..=600));
        net.truncate = rng.gen_range(0.0..=0.15);
        net.black_hole = rng.gen_range(0.0..=0.05);
        net.cut_within = rng.gen_range(0..=32 * 1024);
        if rng.gen_bool(0.5) {
            let min = Duration::from_secs(rng.gen_range(1..=300));
            net.lifetime = Some((min, min * rng.gen_range(1..=10)));
        }
    }
    net
}
