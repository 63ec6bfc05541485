//! `sitebucket fleet --worker NAME`, black box: worker processes (this crate's binary) against
//! a real `nats-server -js` (the shared helper in `sitebucket-e2e`) and the test server with
//! control streams, on loopback. Lease TTL 3 s throughout, so every wait is a few seconds.
//!
//! - Three workers and 2,000 users settle (every user on exactly one live connection, each
//!   connection's users all in shards of one worker, shard counts within one), within a stated
//!   bound; `kill -9` of one: its users stream again on the survivors within the lease TTL plus
//!   a renewal period plus one reconnect, measured and printed; a fourth worker joining gets its
//!   fair share; SIGTERM ends every worker with status 0.
//! - Every message the server wrote on a connection that stayed up is in the JetStream stream,
//!   counted by (user, tick); messages written on connections the workers closed, and
//!   duplicates, are counted and printed; the metrics endpoint is scraped.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use nix::sys::signal::Signal;
use sitebucket_e2e::nats::{users, NatsServer};
use sitebucket_fleet::{shard_of, Buckets, FleetConfig, FleetStatus, Shard, DEFAULT_SHARDS};
use sitebucket_testserver::{AttemptPlan, End, PerUser, Scenario, ServerOptions, Step, TestServer};

/// The lease TTL of every worker here.
const TTL: Duration = Duration::from_secs(3);

/// `sitebucket fleet --worker NAME` against `nats` and `server`, metrics on a free port.
fn worker(nats: &NatsServer, server: &TestServer, name: &str) -> Running {
    worker_at(&nats.url, server, name, &["--lease-ttl", "3s"])
}

/// `sitebucket fleet --worker NAME --nats URLS` with `extra` options, metrics on a free port.
fn worker_at(urls: &str, server: &TestServer, name: &str, extra: &[&str]) -> Running {
    let mut command = sitebucket();
    command.args([
        "fleet",
        "--nats",
        urls,
        "--worker",
        name,
        "--url",
        &server.url(),
        "--metrics-addr",
        "127.0.0.1:0",
        "--drain-timeout",
        "10s",
    ]);
    command.args(extra);
    with_credentials(&mut command);
    spawn(command, format!("worker {name}"))
}

fn cli(args: &[&str]) -> Finished {
    let mut command = sitebucket();
    command.args(args);
    run(command, args.join(" "))
}

fn follow(nats: &NatsServer, verb: &str, users: &BTreeSet<u64>, label: &str) {
    follow_at(&nats.url, verb, users, label, &[]);
}

fn follow_at(urls: &str, verb: &str, users: &BTreeSet<u64>, label: &str, extra: &[&str]) {
    let file = id_file(label, users.iter().copied());
    let mut args = vec![
        "follow",
        verb,
        "--nats",
        urls,
        "--follow-file",
        file.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let done = cli(&args);
    let _ = std::fs::remove_file(&file);
    assert_eq!(done.code(), 0, "{done:?}");
}

/// Reads the fleet's buckets from the test (the workers are the processes under test).
struct Reader {
    runtime: tokio::runtime::Runtime,
    js: async_nats::jetstream::Context,
}

impl Reader {
    /// Connected to `urls` (several comma-separated: one of them, failing over to the others).
    fn new(urls: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let js = runtime.block_on(async {
            let servers: Vec<&str> = urls.split(',').collect();
            let client = async_nats::connect(servers)
                .await
                .expect("connect to nats-server");
            async_nats::jetstream::new(client)
        });
        Reader { runtime, js }
    }

    /// The fleet's status, if its buckets exist yet.
    fn status(&self) -> Option<FleetStatus> {
        self.runtime.block_on(async {
            let buckets = Buckets::open_existing(&self.js, &FleetConfig::new("test", TTL))
                .await
                .ok()?;
            FleetStatus::read(&buckets, DEFAULT_SHARDS).await.ok()
        })
    }

    /// Puts `value` under `key` in `bucket`, as any NATS client could.
    fn put(&self, bucket: &str, key: &str, value: &[u8]) {
        self.runtime.block_on(async {
            let store = self.js.get_key_value(bucket).await.expect("the bucket");
            store
                .put(key, value.to_vec().into())
                .await
                .unwrap_or_else(|e| panic!("put {key:?} into {bucket}: {e}"));
        })
    }

    /// The stream's replica count and the name of the node leading it.
    fn replicas_and_leader(&self, stream: &str) -> (usize, Option<String>) {
        self.runtime.block_on(async {
            let mut stream = self.js.get_stream(stream).await.expect("the stream");
            let info = stream.info().await.expect("stream info");
            let leader = info.cluster.as_ref().and_then(|c| c.leader.clone());
            (info.config.num_replicas, leader)
        })
    }

    /// Asks the stream's leader to step down (another replica is elected); waits at most 10 s
    /// for a leader again and returns it.
    fn step_down(&self, stream: &str) -> Option<String> {
        self.runtime.block_on(async {
            let subject = format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}");
            let _ = self.js.client().request(subject, bytes::Bytes::new()).await;
        });
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(200));
            if let (_, Some(leader)) = self.replicas_and_leader(stream) {
                return Some(leader);
            }
        }
        None
    }

    /// Every message of the stream: (subject, payload).
    fn messages(&self, stream: &str) -> Vec<(String, Vec<u8>)> {
        self.runtime.block_on(async {
            let mut stream = self.js.get_stream(stream).await.expect("the output stream");
            let total = stream.info().await.expect("stream info").state.messages;
            // On a cluster that just lost a node, creating a consumer may time out while the
            // cluster reassigns: a few tries, each bounded by the client's request timeout.
            let mut tries = 0;
            let consumer = loop {
                tries += 1;
                match stream
                    .create_consumer(async_nats::jetstream::consumer::pull::Config {
                        deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
                        ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
                        num_replicas: 1,
                        ..Default::default()
                    })
                    .await
                {
                    Ok(consumer) => break consumer,
                    Err(error) if tries < 5 => {
                        println!("creating a consumer, try {tries}: {error}; trying again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(error) => panic!("no consumer after {tries} tries: {error}"),
                }
            };
            let mut all = Vec::new();
            while (all.len() as u64) < total {
                let mut batch = consumer
                    .fetch()
                    .max_messages(1000)
                    .expires(Duration::from_secs(2))
                    .messages()
                    .await
                    .expect("fetch");
                let before = all.len();
                while let Some(message) = batch.next().await {
                    let message = message.expect("a message");
                    all.push((message.subject.to_string(), message.payload.to_vec()));
                }
                assert!(all.len() > before, "the stream stopped giving messages");
            }
            all
        })
    }
}

/// How many live connections follow each user.
fn coverage(server: &TestServer) -> BTreeMap<u64, usize> {
    let mut count = BTreeMap::new();
    for stream in server.control_streams() {
        for user in stream.follow {
            *count.entry(user).or_insert(0) += 1;
        }
    }
    count
}

/// Settled: the buckets say `workers` hold all shards with counts within one, and the server
/// says every user is on exactly one live connection whose users all belong to one worker.
fn settled(
    reader: &Reader,
    server: &TestServer,
    workers: &[&str],
    users: &BTreeSet<u64>,
) -> Option<Vec<usize>> {
    let status = reader.status()?;
    let counts: Vec<usize> = workers.iter().map(|w| status.shards_of(w).len()).collect();
    let held: usize = counts.iter().sum();
    let (min, max) = (counts.iter().min()?, counts.iter().max()?);
    if held != DEFAULT_SHARDS as usize || max - min > 1 {
        return None;
    }
    let cover = coverage(server);
    if cover.len() != users.len()
        || cover.values().any(|n| *n != 1)
        || cover.keys().any(|u| !users.contains(u))
    {
        return None;
    }
    let owner: BTreeMap<Shard, &String> = status.holders.iter().map(|(s, w)| (*s, w)).collect();
    for stream in server.control_streams() {
        let owners: BTreeSet<Option<&&String>> = stream
            .follow
            .iter()
            .map(|u| owner.get(&shard_of(*u, DEFAULT_SHARDS)))
            .collect();
        if owners.len() > 1 || owners.contains(&None) {
            return None;
        }
    }
    Some(counts)
}

fn wait_settled(
    reader: &Reader,
    server: &TestServer,
    workers: &[&str],
    users: &BTreeSet<u64>,
    bound: Duration,
) -> (Duration, Vec<usize>) {
    let started = Instant::now();
    loop {
        if let Some(counts) = settled(reader, server, workers, users) {
            return (started.elapsed(), counts);
        }
        assert!(
            started.elapsed() < bound,
            "{workers:?} not settled within {bound:?}: status\n{}\nusers covered {} of {}",
            reader.status().map(|s| s.to_string()).unwrap_or_default(),
            coverage(server).len(),
            users.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(worker: Running, name: &str) {
    let finished = worker.signal_and_wait(Signal::SIGTERM, Duration::from_secs(15));
    assert_eq!(finished.code(), 0, "{name}: {}", finished.stderr);
    assert!(
        finished
            .stderr
            .contains("drained: every message read was acknowledged"),
        "{name}: {}",
        finished.stderr
    );
}

/// The settle bound: five TTLs (the first worker takes everything, then gives up surplus as
/// the others appear).
const SETTLE: Duration = Duration::from_secs(15);

#[test]
fn three_workers_settle_survive_a_kill_and_share_with_a_fourth() {
    let nats = NatsServer::start();
    // Connections that announce a control stream and then only keep alive.
    let plan = AttemptPlan::ok(vec![Step::Control])
        .with_end(End::HoldWithKeepAlives(Duration::from_millis(500)));
    let server =
        TestServer::start(Scenario::single(plan), ServerOptions::plain()).expect("test server");
    let users = users(17, 2_000);
    follow(&nats, "add", &users, "fleet-2000");
    let reader = Reader::new(&nats.url);

    let mut workers: BTreeMap<&str, Running> = BTreeMap::new();
    for name in ["w0", "w1", "w2"] {
        workers.insert(name, worker(&nats, &server, name));
    }
    let (settle, counts) = wait_settled(&reader, &server, &["w0", "w1", "w2"], &users, SETTLE);
    println!(
        "3 workers, 2000 users: settled in {settle:.2?} (bound {SETTLE:?}), shards {counts:?}, \
         {} connections",
        server.control_streams().len()
    );

    // kill -9 one worker: its users are dark until the survivors take its shards.
    let mut killed = workers.remove("w1").expect("w1");
    killed.signal(Signal::SIGKILL);
    let killed_at = Instant::now();
    // The kernel closes its connections: its users leave the server's live streams.
    let dark = eventually(Duration::from_secs(5), || {
        coverage(&server).len() < users.len()
    });
    assert!(dark, "w1's users never left the server");
    let takeover_bound = TTL + TTL / 3 + Duration::from_secs(2);
    let takeover = loop {
        let cover = coverage(&server);
        if cover.len() == users.len() && cover.values().all(|n| *n == 1) {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < takeover_bound,
            "w1's users not streamed again within {takeover_bound:?}: {} of {} covered",
            cover.len(),
            users.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let (settle2, counts) = wait_settled(
        &reader,
        &server,
        &["w0", "w2"],
        &users,
        Duration::from_secs(10),
    );
    println!(
        "kill -9 w1: every user streamed again after {takeover:.2?} (bound: TTL {TTL:?} + a \
         renewal period + 2 s for expiry and reconnect = {takeover_bound:?}); survivors settled \
         after {:.2?} at {counts:?}",
        takeover.max(settle2)
    );
    drop(killed);

    // A fourth worker joins the two survivors and gets its share.
    workers.insert("w3", worker(&nats, &server, "w3"));
    let (joined, counts) = wait_settled(&reader, &server, &["w0", "w2", "w3"], &users, SETTLE);
    println!("w3 joined: settled in {joined:.2?} at {counts:?}");
    assert!(counts.iter().all(|c| *c >= 21), "{counts:?}");

    for (name, running) in workers {
        stop(running, name);
    }
    // Every lease given back.
    let status = reader.status().expect("status");
    assert!(status.holders.is_empty(), "{status}");
}

/// Scrapes a worker's metrics endpoint (its address from the log).
fn scrape(running: &Running) -> String {
    assert!(
        running.wait_stderr("serving metrics on http://", Duration::from_secs(10)),
        "no metrics address: {}",
        running.stderr_text()
    );
    let log = running.stderr_text();
    let at = log.find("serving metrics on http://").expect("the line") + 26;
    let addr: String = log[at..]
        .chars()
        .take_while(|c| *c != '/' && !c.is_whitespace())
        .collect();
    let mut socket = TcpStream::connect(&addr).expect("connect to the metrics");
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut answer = String::new();
    socket.read_to_string(&mut answer).expect("the answer");
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    answer
}

/// The value of `name{worker="…"}` in a scrape.
fn metric(scrape: &str, name: &str) -> u64 {
    scrape
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{scrape}"))
}

#[test]
fn every_message_sent_while_a_stream_was_up_is_in_jetstream() {
    let nats = NatsServer::start();
    // Ticks start once the fleet has settled (it takes about 2 s), so no shard moves while
    // messages flow: 40 ticks, one every 100 ms, one message per followed user each.
    let ticks = 40;
    let every = Duration::from_millis(100);
    let epoch = Instant::now() + Duration::from_secs(6);
    let plan = AttemptPlan::ok(vec![
        Step::Control,
        Step::PerUser(PerUser {
            epoch,
            every,
            ticks,
        }),
    ])
    .with_end(End::HoldWithKeepAlives(Duration::from_millis(500)));
    let server =
        TestServer::start(Scenario::single(plan), ServerOptions::plain()).expect("test server");
    let all = users(29, 240);
    // One user in twelve joins mid-run; the others are followed from the start.
    let later: BTreeSet<u64> = all.iter().step_by(12).copied().collect();
    let first: BTreeSet<u64> = all.difference(&later).copied().collect();
    follow(&nats, "add", &first, "fleet-first");
    let reader = Reader::new(&nats.url);
    let a = worker(&nats, &server, "a");
    let b = worker(&nats, &server, "b");
    let (settle, counts) = wait_settled(&reader, &server, &["a", "b"], &first, SETTLE);
    println!(
        "2 workers, {} users: settled in {settle:.2?} at {counts:?}",
        first.len()
    );
    assert!(
        Instant::now() < epoch,
        "settled after the first tick: the test's timing is off"
    );

    // Mid-run, the follow set changes: users join (through control streams) and leave.
    std::thread::sleep(epoch.saturating_duration_since(Instant::now()) + every * 10);
    follow(&nats, "add", &later, "fleet-later");
    let leaving: BTreeSet<u64> = first.iter().step_by(10).copied().collect();
    follow(&nats, "remove", &leaving, "fleet-leaving");
    let ticks_end = epoch + every * ticks as u32;
    std::thread::sleep(
        ticks_end.saturating_duration_since(Instant::now()) + Duration::from_secs(1),
    );

    // Everything read is acknowledged: nothing held.
    let drained = eventually(Duration::from_secs(10), || {
        [&a, &b]
            .iter()
            .all(|w| metric(&scrape(w), "sitebucket_held_messages") == 0)
    });
    assert!(drained, "messages still held");
    let scrapes = [scrape(&a), scrape(&b)];
    let acked: u64 = scrapes
        .iter()
        .map(|s| metric(s, "sitebucket_acked_total"))
        .sum();
    let republished: u64 = scrapes
        .iter()
        .map(|s| metric(s, "sitebucket_duplicates_total"))
        .sum();
    let read: u64 = scrapes
        .iter()
        .map(|s| metric(s, "sitebucket_messages_in_total"))
        .sum();
    for s in &scrapes {
        assert!(
            s.contains("# TYPE sitebucket_publish_latency_seconds histogram"),
            "{s}"
        );
        assert!(metric(s, "sitebucket_shards_held") >= 31, "{s}");
    }
    stop(a, "a");
    stop(b, "b");

    // What the server wrote in full, and on which connections.
    let mut on_live: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut on_closed: BTreeSet<(u64, u64)> = BTreeSet::new();
    for attempt in server.attempts() {
        let outlived = attempt
            .ended_at
            .is_none_or(|end| end > ticks_end + Duration::from_millis(500));
        for &(user, tick, index) in &attempt.per_user {
            if index < attempt.messages_sent {
                if outlived {
                    on_live.insert((user, tick));
                } else {
                    on_closed.insert((user, tick));
                }
            }
        }
    }
    // What the stream holds.
    let (stored, other) = ticks_stored(&reader.messages("SITEBUCKET"));
    let missing: Vec<&(u64, u64)> = on_live.iter().filter(|m| !stored.contains_key(m)).collect();
    let closed_missing = on_closed
        .iter()
        .filter(|m| !on_live.contains(m) && !stored.contains_key(m))
        .count();
    let duplicates: usize = stored.values().map(|n| n - 1).sum();
    let invented = stored
        .keys()
        .filter(|m| !on_live.contains(m) && !on_closed.contains(m))
        .count();
    println!(
        "{} (user, tick) messages written on connections that stayed up: {} in the stream, {} \
         missing; {} written only on connections the workers closed, {closed_missing} of them \
         missing; {} stored in all ({other} control messages besides), {duplicates} duplicates \
         in the stream; the workers read {read}, had {acked} acknowledged, and {republished} \
         re-publishes were dropped by the duplicate window",
        on_live.len(),
        on_live.len() - missing.len(),
        missing.len(),
        on_closed.difference(&on_live).count(),
        stored.len(),
    );
    assert!(on_live.len() >= 8_000, "too few messages to say anything");
    assert!(
        missing.is_empty(),
        "lost: {:?}",
        &missing[..missing.len().min(10)]
    );
    assert_eq!(invented, 0, "messages the server never wrote");
    assert_eq!(
        duplicates, 0,
        "the duplicate window let a re-publish through"
    );
}

/// `listen --sink`: every message in the stream under the subject asked for; the same
/// messages again (a second run) are dropped by the duplicate window through their
/// `Nats-Msg-Id`; an unreachable NATS is exit status 1 with a clear message.
#[test]
fn listen_sink_publishes_each_message_once() {
    let nats = NatsServer::start();
    let mut steps: Vec<Step> = (0..50u64)
        .map(|k| {
            Step::Message(
                format!(r#"{{"for_user":{},"message":{{"id":{k}}}}}"#, 1 + k % 3).into_bytes(),
            )
        })
        .collect();
    steps.insert(0, Step::Message(br#"{"limit":{"track":7}}"#.to_vec()));
    let plan = AttemptPlan::ok(steps).with_end(End::HoldWithKeepAlives(Duration::from_millis(500)));
    let server =
        TestServer::start(Scenario::single(plan), ServerOptions::plain()).expect("test server");
    let sink = format!("{}/sb.test", nats.url);
    for round in 0..2 {
        let listened = run(
            listen(
                &server.url(),
                "tokio",
                &["--sink", &sink, "--max-messages", "51"],
            ),
            format!("listen --sink, round {round}"),
        );
        assert_eq!(listened.code(), 0, "{}", listened.stderr);
        assert!(listened.stdout.is_empty(), "nothing printed");
        assert!(
            listened
                .stderr
                .contains("published to NATS: 51 message(s), every one acknowledged"),
            "{}",
            listened.stderr
        );
    }
    let stored = Reader::new(&nats.url).messages("SB_TEST");
    assert_eq!(
        stored.len(),
        51,
        "each message once, the second round deduplicated"
    );
    assert_eq!(stored[0].0, "sb.test.stream.limit");
    assert_eq!(stored[1].0, "sb.test.msg.1");
    assert_eq!(stored[2].0, "sb.test.msg.2");

    let unreachable = format!("nats://127.0.0.1:{}/sb", sitebucket_e2e::nats::free_port());
    let refused = run(
        listen(&server.url(), "tokio", &["--sink", &unreachable]),
        "listen --sink unreachable",
    );
    assert_eq!(refused.code(), 1, "{refused:?}");
    assert!(
        refused.stderr.contains("--sink: cannot connect to NATS at"),
        "{}",
        refused.stderr
    );
    let bad = run(
        listen(&server.url(), "tokio", &["--sink", "nats://x:1/a..b"]),
        "listen --sink bad",
    );
    assert_eq!(bad.code(), 2, "{bad:?}");
}

/// The maximum the NATS-outage tests let their worker hold (`--max-held-bytes`).
const OUTAGE_BOUND: u64 = 64 * 1024;

/// The set-up of the NATS-outage tests, once every user is streamed and before the first tick.
struct Outage {
    nats: NatsServer,
    server: TestServer,
    solo: Running,
    /// When the test server writes the first per-user tick.
    epoch: Instant,
    /// When it has written the last.
    ticks_end: Instant,
}

/// One worker, `solo`, holding at most [`OUTAGE_BOUND`] bytes, with `extra` options, streaming
/// 100 users (ids from `seed`, follow file named after `label`) of a test server that writes
/// each user a tick every 100 ms, `ticks` of them, from `lead` after now. Returns once every
/// user is streamed (within `settle_within`), before the first tick.
fn solo_before_an_outage(
    seed: u64,
    label: &str,
    ticks: u32,
    lead: Duration,
    settle_within: Duration,
    extra: &[&str],
) -> Outage {
    let nats = NatsServer::start();
    let every = Duration::from_millis(100);
    let epoch = Instant::now() + lead;
    let plan = AttemptPlan::ok(vec![
        Step::Control,
        Step::PerUser(PerUser {
            epoch,
            every,
            ticks: u64::from(ticks),
        }),
    ])
    .with_end(End::HoldWithKeepAlives(Duration::from_millis(500)));
    let server =
        TestServer::start(Scenario::single(plan), ServerOptions::plain()).expect("test server");
    let users = users(seed, 100);
    follow(&nats, "add", &users, label);
    let bound = OUTAGE_BOUND.to_string();
    let mut options = vec!["--max-held-bytes", bound.as_str()];
    options.extend_from_slice(extra);
    let solo = worker_at(&nats.url, &server, "solo", &options);
    let covered = eventually(settle_within, || coverage(&server).len() == users.len());
    assert!(covered, "the worker never streamed every user");
    assert!(Instant::now() < epoch, "settled after the first tick");
    Outage {
        nats,
        server,
        solo,
        epoch,
        ticks_end: epoch + every * ticks,
    }
}

/// The per-user tick messages among a stream's `messages` (subject, payload), counted by
/// (user, tick), and how many other messages there were. A tick is on its user's subject;
/// anything else on a `sitebucket.stream.` subject.
fn ticks_stored(messages: &[(String, Vec<u8>)]) -> (BTreeMap<(u64, u64), usize>, usize) {
    let mut stored: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    let mut other = 0;
    for (subject, payload) in messages {
        let json: serde_json::Value = serde_json::from_slice(payload).expect("JSON payload");
        match (
            json["for_user"].as_u64(),
            json["message"]["sitebucket_tick"].as_u64(),
        ) {
            (Some(user), Some(tick)) => {
                assert_eq!(*subject, format!("sitebucket.msg.{user}"));
                *stored.entry((user, tick)).or_insert(0) += 1;
            }
            _ => {
                assert!(subject.starts_with("sitebucket.stream."), "{subject}");
                other += 1;
            }
        }
    }
    (stored, other)
}

/// All of NATS stops for 5 s mid-run (SIGKILL, then a restart on the same store): the
/// worker's readers pause once it holds its bound (64 KiB here), the held bytes stay within the
/// bound plus the one read in hand when reading paused (at most 64 KiB), and once NATS is back everything written on the live connections reaches the stream;
/// the leases (TTL 20 s: a renewal waits up to 8 s for its answer) survive the outage.
#[test]
fn nats_down_for_five_seconds_pauses_and_loses_nothing() {
    // A worker with a 20 s TTL first looks for shards 6.7 to 10 s after it starts.
    let Outage {
        mut nats,
        server,
        solo,
        epoch,
        ticks_end,
    } = solo_before_an_outage(
        41,
        "fleet-down",
        100,
        Duration::from_secs(12),
        Duration::from_secs(10),
        &["--lease-ttl", "20s"],
    );
    let bound = OUTAGE_BOUND;

    // NATS goes away for 5 s, two seconds into the ticks.
    std::thread::sleep(epoch.saturating_duration_since(Instant::now()) + Duration::from_secs(2));
    nats.kill();
    let down_at = Instant::now();
    let mut most_held = 0;
    while down_at.elapsed() < Duration::from_secs(5) {
        most_held = most_held.max(metric(&scrape(&solo), "sitebucket_held_bytes"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let during = scrape(&solo);
    nats.restart();
    std::thread::sleep(
        ticks_end.saturating_duration_since(Instant::now()) + Duration::from_secs(1),
    );
    let drained = eventually(Duration::from_secs(30), || {
        metric(&scrape(&solo), "sitebucket_held_messages") == 0
    });
    assert!(drained, "messages still held: {}", scrape(&solo));
    let after = scrape(&solo);
    let log = solo.stderr_text();
    let lost: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("lost shard"))
        .take(3)
        .collect();
    stop(solo, "solo");

    let mut written: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut ended_early = 0;
    for attempt in server.attempts() {
        if attempt.status != Some(200) {
            continue;
        }
        if attempt.ended_at.is_some_and(|end| end <= ticks_end) {
            ended_early += 1;
        }
        for &(user, tick, index) in &attempt.per_user {
            if index < attempt.messages_sent {
                written.insert((user, tick));
            }
        }
    }
    let (stored, _) = ticks_stored(&Reader::new(&nats.url).messages("SITEBUCKET"));
    let missing = written.iter().filter(|m| !stored.contains_key(m)).count();
    let duplicates: usize = stored.values().map(|n| n - 1).sum();
    println!(
        "NATS down 5 s: at most {most_held} bytes held (bound {bound}), readers paused {} \
         time(s) during the outage, {} publish error(s) retried, {} lease(s) lost, \
         {ended_early} connection(s) ended during the run; {} messages written, {} in the \
         stream, {missing} missing, {duplicates} duplicates",
        metric(&during, "sitebucket_reading_paused_total"),
        metric(&after, "sitebucket_publish_errors_total"),
        metric(&after, "sitebucket_lease_renewals_failed_total"),
        written.len(),
        stored.len(),
    );
    assert!(
        written.len() >= 9_000,
        "too few messages: {} (shards lost: {lost:?})",
        written.len()
    );
    // Reading pauses at the bound; the read in hand when it does (at most 64 KiB) is kept.
    assert!(
        most_held <= bound + 64 * 1024 + 1024,
        "held {most_held} bytes"
    );
    assert!(
        metric(&during, "sitebucket_reading_paused_total") > 0,
        "{during}"
    );
    assert_eq!(
        metric(&after, "sitebucket_lease_renewals_failed_total"),
        0,
        "{lost:?}"
    );
    assert_eq!(missing, 0);
    assert_eq!(duplicates, 0);
}

/// `fleet --nats` with no server listening: exit status 1 and a message naming the servers,
/// in bounded time (connection refused is immediate; each server's connect is bounded by
/// 5 s). A malformed `--nats` is a usage error (2) naming what is wrong, for the worker and
/// for `follow`.
#[test]
fn a_worker_given_an_unreachable_or_malformed_nats_url_exits_with_a_clear_error() {
    let ports = sitebucket_e2e::nats::free_ports(2);
    let one = format!("nats://127.0.0.1:{}", ports[0]);
    let both = format!("{one},nats://127.0.0.1:{}", ports[1]);
    for urls in [&one, &both] {
        let mut command = sitebucket();
        command.args([
            "fleet",
            "--nats",
            urls,
            "--worker",
            "w",
            "--url",
            "http://127.0.0.1:9/",
        ]);
        with_credentials(&mut command);
        let started = Instant::now();
        let done = run(command, format!("fleet --nats {urls}"));
        let took = started.elapsed();
        println!(
            "fleet --nats {urls} (nothing listening): exit {} after {took:.2?}",
            done.code()
        );
        assert_eq!(done.code(), 1, "{done:?}");
        let named = urls.replace("nats://", "");
        assert!(
            done.stderr
                .contains(&format!("sitebucket: cannot connect to NATS at {named}: ")),
            "{}",
            done.stderr
        );
        assert!(took < Duration::from_secs(15), "took {took:?}");
    }
    for (bad, says) in [
        ("http://127.0.0.1:4222", "is not a NATS server URL"),
        (
            "nats://127.0.0.1:4222,,nats://127.0.0.1:4223",
            "has an empty server",
        ),
        ("nats://127.0.0.1:notaport", "is not a NATS server URL"),
    ] {
        let mut command = sitebucket();
        command.args(["fleet", "--nats", bad, "--worker", "w"]);
        with_credentials(&mut command);
        let done = run(command, format!("fleet --nats {bad}"));
        assert_eq!(done.code(), 2, "{done:?}");
        assert!(
            done.stderr.contains("sitebucket: --nats: "),
            "{}",
            done.stderr
        );
        assert!(done.stderr.contains(says), "{bad}: {}", done.stderr);
        let listed = cli(&["follow", "list", "--nats", bad]);
        assert_eq!(listed.code(), 2, "{listed:?}");
        assert!(listed.stderr.contains(says), "{bad}: {}", listed.stderr);
    }
}

/// A running worker meets keys and values in its three buckets that no sitebucket wrote:
/// malformed user ids in the follow set, garbage values under followed users (the value is
/// free: nothing changes), lease keys that are not shards of the fleet, heartbeats whose value
/// no worker writes (garbage bytes, foreign JSON). Each is logged with its key and what is
/// wrong with it; the worker keeps running, keeps every valid user on exactly one connection
/// (no connection opened or closed), holds every shard (no lease lost, no share given up for
/// a phantom worker), and still applies a valid follow added afterwards.
#[test]
fn a_worker_logs_and_ignores_foreign_keys_and_values_in_its_buckets() {
    let nats = NatsServer::start();
    let plan = AttemptPlan::ok(vec![Step::Control])
        .with_end(End::HoldWithKeepAlives(Duration::from_millis(500)));
    let server =
        TestServer::start(Scenario::single(plan), ServerOptions::plain()).expect("test server");
    let users = users(53, 300);
    follow(&nats, "add", &users, "fleet-foreign");
    let reader = Reader::new(&nats.url);
    let solo = worker(&nats, &server, "solo");
    let (settle, counts) = wait_settled(&reader, &server, &["solo"], &users, SETTLE);
    println!(
        "1 worker, {} users: settled in {settle:.2?} at {counts:?}",
        users.len()
    );
    let attempts_before = server.attempts().len();

    let mut garbage = vec![0xff, 0xfe, 0x00, b'{'];
    garbage.extend_from_slice(&[0x80; 60]);
    let first = *users.first().expect("a user");
    let last = *users.last().expect("a user");
    let follows = "sitebucket-follows";
    let bad_follow_keys = ["abc", "007", "0", "-5", "1.5", "18446744073709551616"];
    for key in bad_follow_keys {
        reader.put(follows, key, &garbage);
    }
    reader.put(follows, &first.to_string(), &garbage);
    reader.put(follows, &last.to_string(), br#"{"not":"a note"#);
    let bad_lease_keys = ["shard-x", "64", "1000", "007"];
    for key in bad_lease_keys {
        reader.put("sitebucket-leases", key, &garbage);
    }
    let bad_heartbeats = [
        ("intruder", &garbage[..]),
        ("json", &br#"{"worker":"json","shards":3}"#[..]),
        ("empty", &b""[..]),
    ];
    for (key, value) in bad_heartbeats {
        reader.put("sitebucket-workers", key, value);
    }
    // Long enough for a phantom worker to cost shards: the worker looks at its share at every
    // renewal (TTL/3) and gives up extras at once.
    std::thread::sleep(TTL * 2 + Duration::from_secs(1));

    let mut solo = solo;
    assert!(solo.is_running(), "the worker died: {}", solo.stderr_text());
    let log = solo.stderr_text();
    for key in bad_follow_keys {
        let line = format!("ignoring the key {key:?} of the follow-set bucket");
        assert!(log.contains(&line), "no warning for {key:?}:\n{log}");
    }
    assert!(log.contains("not a user id"), "{log}");
    for key in bad_lease_keys {
        let line = format!("ignoring the key {key:?} of the leases bucket");
        assert!(log.contains(&line), "no warning for {key:?}:\n{log}");
    }
    for (key, _) in bad_heartbeats {
        let line = format!("ignoring the key {key:?} of the heartbeats bucket");
        assert!(log.contains(&line), "no warning for {key:?}:\n{log}");
    }
    assert!(
        log.contains("is not a worker's heartbeat (shards=N)"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    let status = reader.status().expect("status");
    assert_eq!(
        status.shards_of("solo").len(),
        DEFAULT_SHARDS as usize,
        "shards given up or lost:\n{status}"
    );
    let cover = coverage(&server);
    assert_eq!(cover.len(), users.len(), "users dropped");
    assert!(cover.values().all(|n| *n == 1), "a user on two connections");
    assert!(
        cover.keys().all(|u| users.contains(u)),
        "a foreign key streamed"
    );
    let attempts_after = server.attempts().len();
    assert_eq!(
        attempts_after, attempts_before,
        "connections were opened: the foreign keys disturbed the streams"
    );
    let scraped = scrape(&solo);
    assert_eq!(
        metric(&scraped, "sitebucket_lease_renewals_failed_total"),
        0
    );
    assert!(!log.contains("lost shard"), "{log}");
    println!(
        "foreign keys: {} follow-set keys, 2 foreign values under followed users, {} lease \
         keys, {} heartbeats: each logged, {} of {} users still streamed once, {} shards \
         held, {attempts_after} connection attempts before and after, {} foreign keys in \
         `fleet status`",
        bad_follow_keys.len(),
        bad_lease_keys.len(),
        bad_heartbeats.len(),
        cover.len(),
        users.len(),
        status.shards_of("solo").len(),
        status.foreign_keys
    );

    // The watch still works: a valid user added afterwards is streamed.
    let newcomer: BTreeSet<u64> = [(1 << 51) + 17].into_iter().collect();
    follow(&nats, "add", &newcomer, "fleet-foreign-new");
    let all: BTreeSet<u64> = users.union(&newcomer).copied().collect();
    let joined = eventually(Duration::from_secs(10), || {
        let cover = coverage(&server);
        cover.len() == all.len() && cover.values().all(|n| *n == 1)
    });
    assert!(
        joined,
        "the user added after the foreign keys was not streamed"
    );
    stop(solo, "solo");
}

/// Three `nats-server` nodes in one JetStream cluster; three workers given all three URLs
/// create the buckets and the stream with 3 replicas (checked). Once the fleet has settled and
/// messages flow, one node is killed with SIGKILL: one a worker is connected to, made the
/// leader of the leases bucket and of the output stream first (leader step-downs). Publishing
/// carries on (how long acknowledgements stopped and when the backlog cleared are printed), no
/// lease is lost, every user stays on exactly one connection throughout, and every message the
/// server wrote is in the stream (counted by (user, tick); duplicates counted, none allowed).
#[test]
fn a_nats_node_killed_mid_run_loses_no_lease_and_no_message() {
    let mut cluster = sitebucket_e2e::nats::NatsCluster::start();
    let urls = cluster.urls();
    let every = Duration::from_millis(200);
    let ticks = 100;
    // Workers with a 30 s TTL first look for shards 10 to 15 s after they start; three of
    // them settle a few seconds later.
    let epoch = Instant::now() + Duration::from_secs(50);
    let plan = AttemptPlan::ok(vec![
        Step::Control,
        Step::PerUser(PerUser {
            epoch,
            every,
            ticks,
        }),
    ])
    .with_end(End::HoldWithKeepAlives(Duration::from_millis(500)));
    let server =
        TestServer::start(Scenario::single(plan), ServerOptions::plain()).expect("test server");
    let users = users(61, 240);
    follow_at(&urls, "add", &users, "fleet-cluster", &["--replicas", "3"]);
    let names = ["a", "b", "c"];
    // Lease TTL 30 s: a renewal may wait 0.4 TTL = 12 s for its answer, which covers NATS 2.9
    // electing a new leader for a stream whose leader died (a raft election timeout is 4 to 9 s
    // after the last heartbeat heard; acknowledgements stopped for 5 to 9.2 s here) with room
    // for a loaded machine. With 20 s (8 s) a renewal could fail.
    let options = ["--lease-ttl", "30s", "--replicas", "3"];
    let mut workers: Vec<Running> = names
        .iter()
        .map(|name| worker_at(&urls, &server, name, &options))
        .collect();
    let reader = Reader::new(&urls);
    let started = Instant::now();
    let (settle, counts) = loop {
        if let Some(counts) = settled(&reader, &server, &names, &users) {
            break (started.elapsed(), counts);
        }
        if started.elapsed() > Duration::from_secs(48) {
            let logs: Vec<String> = workers.iter().map(Running::stderr_text).collect();
            panic!(
                "not settled within 48 s: status\n{}\nusers covered {} of {}; logs:\n{}",
                reader.status().map(|s| s.to_string()).unwrap_or_default(),
                coverage(&server).len(),
                users.len(),
                logs.join("\n----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    println!(
        "3 workers on a 3-node cluster, {} users: settled in {settle:.2?} at {counts:?}",
        users.len()
    );
    assert!(Instant::now() < epoch, "settled after the first tick");

    let leases_stream = "KV_sitebucket-leases";
    let mut leaders = BTreeMap::new();
    for stream in [
        "KV_sitebucket-follows",
        leases_stream,
        "KV_sitebucket-workers",
        "SITEBUCKET",
    ] {
        let (replicas, leader) = reader.replicas_and_leader(stream);
        assert_eq!(replicas, 3, "{stream} has {replicas} replica(s)");
        leaders.insert(stream, leader.unwrap_or_default());
    }
    // Which node each worker is connected to.
    let mut connected: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (index, node) in cluster.nodes.iter().enumerate() {
        let connz = node.monitor("/connz").expect("the node's /connz");
        for connection in connz["connections"].as_array().into_iter().flatten() {
            if let Some(name) = connection["name"].as_str() {
                if let Some(worker) = name.strip_prefix("sitebucket fleet worker ") {
                    connected.entry(index).or_default().push(worker.to_owned());
                }
            }
        }
    }
    let workers_seen: usize = connected.values().map(Vec::len).sum();
    assert_eq!(workers_seen, 3, "workers' connections: {connected:?}");
    let score = |index: usize| {
        let name = &cluster.nodes[index].name;
        2 * usize::from(leaders[leases_stream] == *name)
            + usize::from(leaders["SITEBUCKET"] == *name)
    };
    let victim = *connected
        .keys()
        .max_by_key(|index| (score(**index), std::cmp::Reverse(**index)))
        .expect("a node with a worker");
    let victim_name = cluster.nodes[victim].name.clone();
    // The leaders of the leases bucket and of the output stream are the hardest nodes to
    // lose: each one's leadership is moved (a step-down elects one of the two other replicas
    // at random) onto the node that will be killed, a few tries at most, so that every run
    // loses a worker's connection and both leaders at once.
    for stream in [leases_stream, "SITEBUCKET"] {
        for _ in 0..8 {
            if leaders[stream] == victim_name {
                break;
            }
            if let Some(leader) = reader.step_down(stream) {
                leaders.insert(stream, leader);
            }
        }
    }
    let led: Vec<&str> = leaders
        .iter()
        .filter(|(_, leader)| **leader == victim_name)
        .map(|(stream, _)| *stream)
        .collect();

    // Two seconds into the ticks, kill -9 that node.
    std::thread::sleep(epoch.saturating_duration_since(Instant::now()) + Duration::from_secs(2));
    cluster.kill(victim);
    let killed_at = Instant::now();
    println!(
        "killed node {victim_name} (SIGKILL): workers {:?} were connected to it; it led {led:?}",
        connected[&victim]
    );

    // Until the ticks end, a look every 100 ms: every user on exactly one connection at each;
    // how long acknowledgements stopped, and when the backlog (more than two ticks' worth of
    // messages held) was cleared for good.
    let ticks_end = epoch + every * ticks as u32;
    let backlog = 2 * users.len() as u64;
    let (mut last_backlog, mut most_held, mut looks) = (None, 0, 0);
    let (mut acked_before, mut acked_since, mut longest_stall) = (0, killed_at, Duration::ZERO);
    while Instant::now() < ticks_end {
        let scrapes: Vec<String> = workers.iter().map(scrape).collect();
        let now = Instant::now();
        let held: u64 = scrapes
            .iter()
            .map(|s| metric(s, "sitebucket_held_messages"))
            .sum();
        let acked: u64 = scrapes
            .iter()
            .map(|s| metric(s, "sitebucket_acked_total"))
            .sum();
        most_held = most_held.max(held);
        if held > backlog {
            last_backlog = Some(now.duration_since(killed_at));
        }
        if acked > acked_before {
            acked_before = acked;
            acked_since = now;
        } else {
            longest_stall = longest_stall.max(now.duration_since(acked_since));
        }
        let cover = coverage(&server);
        assert!(
            cover.len() == users.len() && cover.values().all(|n| *n == 1),
            "{:.2?} after the kill: {} of {} users covered, {} on two connections",
            killed_at.elapsed(),
            cover.len(),
            users.len(),
            cover.values().filter(|n| **n > 1).count()
        );
        looks += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let recovered = last_backlog.map_or(Duration::ZERO, |t| t + Duration::from_millis(100));
    assert!(
        recovered + Duration::from_secs(2) < ticks_end.duration_since(killed_at),
        "the backlog was not cleared well before the end of the ticks: {recovered:.2?} after \
         the kill"
    );
    let (_, new_leader) = reader.replicas_and_leader(leases_stream);
    println!(
        "publishing: acknowledgements stopped for at most {longest_stall:.2?}; the backlog \
         (over {backlog} messages held) cleared {recovered:.2?} after the kill; at most \
         {most_held} messages held; {looks} looks, every user on exactly one connection at \
         each; the leases bucket is led by {new_leader:?} now"
    );

    let drained = eventually(Duration::from_secs(30), || {
        workers
            .iter()
            .all(|w| metric(&scrape(w), "sitebucket_held_messages") == 0)
    });
    assert!(drained, "messages still held");
    let scrapes: Vec<String> = workers.iter().map(scrape).collect();
    let sum = |name: &str| scrapes.iter().map(|s| metric(s, name)).sum::<u64>();
    let (errors, failed, republished) = (
        sum("sitebucket_publish_errors_total"),
        sum("sitebucket_lease_renewals_failed_total"),
        sum("sitebucket_duplicates_total"),
    );
    let logs: Vec<String> = workers.iter().map(Running::stderr_text).collect();
    let lost: Vec<&str> = logs
        .iter()
        .flat_map(|log| log.lines())
        .filter(|l| l.contains("lost shard"))
        .take(3)
        .collect();
    for (name, running) in names.iter().zip(workers.drain(..)) {
        stop(running, name);
    }

    let mut written: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut ended_early = 0;
    for attempt in server.attempts() {
        if attempt.status != Some(200) {
            continue;
        }
        // Connections the settling closed ended before the first tick.
        if attempt
            .ended_at
            .is_some_and(|end| end > epoch && end <= ticks_end)
        {
            ended_early += 1;
        }
        for &(user, tick, index) in &attempt.per_user {
            if index < attempt.messages_sent {
                written.insert((user, tick));
            }
        }
    }
    let (stored, _) = ticks_stored(&reader.messages("SITEBUCKET"));
    let missing = written.iter().filter(|m| !stored.contains_key(m)).count();
    let duplicates: usize = stored.values().map(|n| n - 1).sum();
    let invented = stored.keys().filter(|m| !written.contains(m)).count();
    println!(
        "node {victim_name} killed: {} messages written, {} in the stream, {missing} missing, \
         {duplicates} duplicates stored, {invented} never written; {errors} publish error(s) \
         retried, {republished} re-publish(es) dropped by the duplicate window, {failed} lease \
         renewal(s) failed, {ended_early} connection(s) ended during the run",
        written.len(),
        stored.len(),
    );
    assert!(
        written.len() >= 20_000,
        "too few messages: {}",
        written.len()
    );
    assert_eq!(failed, 0, "leases lost: {lost:?}");
    assert!(lost.is_empty(), "{lost:?}");
    assert_eq!(ended_early, 0, "connections closed during the run");
    assert_eq!(missing, 0, "messages lost");
    assert_eq!(invented, 0, "messages the server never wrote");
    assert_eq!(
        duplicates, 0,
        "the duplicate window let a re-publish through"
    );
}

/// The value of `sitebucket_reconnects_total{…,kind="KIND"}` in a scrape.
fn reconnects(scrape: &str, kind: &str) -> u64 {
    let label = format!("kind=\"{kind}\"}}");
    scrape
        .lines()
        .find(|l| l.starts_with("sitebucket_reconnects_total{") && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no reconnects of kind {kind} in\n{scrape}"))
}

/// All of NATS stops for 8 s, much longer than the streams' 2 s stall timeout: reading pauses
/// once the worker holds its bound (64 KiB), without blocking the runtime its streams run on,
/// so their stall timers fire during the outage and the core reconnects them (its own
/// backoff), the metrics endpoint keeps answering, the leases (TTL 30 s) survive, and what is
/// held stays within the bound plus one read. Once NATS is back every message the worker read
/// is in the stream, exactly once, and the log tells the story: paused, how long and how much
/// held, which streams reconnected because of it, resumed after how long.
#[test]
fn nats_down_longer_than_the_stall_timeout_reconnects_streams_and_loses_nothing() {
    // A worker with a 30 s TTL first looks for shards 10 to 15 s after it starts.
    let Outage {
        mut nats,
        server: _server,
        solo,
        epoch,
        ticks_end,
    } = solo_before_an_outage(
        43,
        "fleet-long-outage",
        160,
        Duration::from_secs(19),
        Duration::from_secs(17),
        &["--lease-ttl", "30s", "--stall-timeout", "2s"],
    );
    let bound = OUTAGE_BOUND;

    // NATS goes away for 8 s, two seconds into the ticks; the metrics are scraped throughout.
    std::thread::sleep(epoch.saturating_duration_since(Instant::now()) + Duration::from_secs(2));
    let before = scrape(&solo);
    nats.kill();
    let down_at = Instant::now();
    let outage = Duration::from_secs(8);
    let (mut most_held, mut slowest_scrape, mut scrapes) = (0, Duration::ZERO, 0);
    let mut paused_seen = false;
    while down_at.elapsed() < outage {
        let asked = Instant::now();
        let now = scrape(&solo);
        slowest_scrape = slowest_scrape.max(asked.elapsed());
        scrapes += 1;
        most_held = most_held.max(metric(&now, "sitebucket_held_bytes"));
        paused_seen |= metric(&now, "sitebucket_reading_paused") == 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let during = scrape(&solo);
    nats.restart();
    let back_at = Instant::now();
    let resumed = eventually(Duration::from_secs(30), || {
        metric(&scrape(&solo), "sitebucket_reading_paused") == 0
    });
    let resumed_after = back_at.elapsed();
    assert!(resumed, "reading never resumed: {}", scrape(&solo));
    std::thread::sleep(
        ticks_end.saturating_duration_since(Instant::now()) + Duration::from_secs(1),
    );
    let drained = eventually(Duration::from_secs(30), || {
        metric(&scrape(&solo), "sitebucket_held_messages") == 0
    });
    assert!(drained, "messages still held: {}", scrape(&solo));
    let after = scrape(&solo);
    let status = Reader::new(&nats.url).status().expect("status");
    let log = solo.stderr_text();
    stop(solo, "solo");

    let stalls_during = reconnects(&during, "stall") - reconnects(&before, "stall");
    let paused_reconnects = metric(&during, "sitebucket_reconnects_while_paused_total");
    // Every message read (and not dropped for a lost lease) is in the stream, once.
    let read = metric(&after, "sitebucket_messages_in_total")
        - metric(&after, "sitebucket_dropped_not_held_total");
    let deduplicated = metric(&after, "sitebucket_duplicates_total");
    let all = Reader::new(&nats.url).messages("SITEBUCKET");
    let (stored, _) = ticks_stored(&all);
    let duplicates: usize = stored.values().map(|n| n - 1).sum();
    let line = |needle: &str| log.lines().find(|l| l.contains(needle)).map(str::to_owned);
    println!(
        "NATS down {outage:?}, stall timeout 2 s: {stalls_during} stall reconnect(s) during the \
         outage ({paused_reconnects} counted as caused by the pause); at most {most_held} bytes \
         held (bound {bound}); {scrapes} scrapes, slowest {slowest_scrape:.2?}; reading resumed \
         {resumed_after:.2?} after NATS was back; {} lease(s) lost; {read} messages read, {} in \
         the stream ({deduplicated} re-publishes deduplicated), {duplicates} duplicates; {} \
         ticks stored\n  {:?}\n  {:?}\n  {:?}\n  {:?}",
        metric(&after, "sitebucket_lease_renewals_failed_total"),
        all.len(),
        stored.len(),
        line("reading paused"),
        line("reading has been paused for"),
        line("because reading has been paused"),
        line("reading resumes after a pause of"),
    );
    assert!(paused_seen, "reading never paused");
    assert!(
        stalls_during >= 1 && paused_reconnects >= 1,
        "no stream reconnected during the outage:\n{during}\n{log}"
    );
    assert!(
        most_held <= bound + 64 * 1024 + 1024,
        "held {most_held} bytes"
    );
    assert!(
        slowest_scrape < Duration::from_secs(2),
        "{slowest_scrape:?}"
    );
    assert_eq!(
        metric(&after, "sitebucket_lease_renewals_failed_total"),
        0,
        "{log}"
    );
    assert_eq!(
        status.shards_of("solo").len(),
        DEFAULT_SHARDS as usize,
        "{status}"
    );
    assert!(read >= 5_000, "too few messages read: {read}");
    // A re-publish after a lost ack is acknowledged as a duplicate: the stream holds each
    // message read once, and no more than were read.
    let in_stream = all.len() as u64;
    assert!(
        in_stream <= read && in_stream + deduplicated >= read,
        "{in_stream} in the stream, {read} read, {deduplicated} deduplicated"
    );
    assert_eq!(duplicates, 0);
    for needle in [
        "NATS is behind: reading paused",
        "reading has been paused for",
        "because reading has been paused",
        "reading resumes after a pause of",
    ] {
        assert!(log.contains(needle), "no {needle:?} in\n{log}");
    }
}
