//! Workers on a real `nats-server` (Debian's package; `.ci/run` installs it when missing),
//! started here on 127.0.0.1 with JetStream and a temporary store on a free port, and killed at
//! the end.
//!
//! Three workers and 2,000 users: once settled, every user's shard is streamed by exactly one
//! worker and the shard counts differ by at most one. Then one worker is killed without giving
//! anything back (as `kill -9`): its shards are streamed again by the survivors within the lease
//! TTL plus one renewal period (plus one second for the engine's expiry sweep and the round
//! trips), measured and printed. The survivors then shut down cleanly and give their leases back.
//! A fourth worker then joins the two survivors and gets its fair share; each hand-over's dark time (old owner's
//! stop to new owner's start) is measured and printed. A foreign key in the follow set and in the leases bucket is skipped throughout, and the fleet
//! status read from the buckets agrees with what the workers were told to stream.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sitebucket_e2e::nats::NatsServer;
use sitebucket_fleet::{
    shard_of, Assignment, Buckets, FleetConfig, FleetStatus, FollowSet, Shard, Worker,
    DEFAULT_SHARDS,
};

/// What each worker streams, as its sink was told.
#[derive(Default)]
struct Streams {
    by_worker: BTreeMap<String, BTreeMap<Shard, BTreeSet<u64>>>,
    /// When each shard was last stopped, and by whom.
    stopped: BTreeMap<Shard, (Instant, String)>,
    /// Hand-overs: the time from one worker's stop to another's start of the same shard.
    gaps: Vec<Duration>,
}

impl Streams {
    fn apply(&mut self, worker: &str, assignment: Assignment) {
        let shards = self.by_worker.entry(worker.to_owned()).or_default();
        match assignment {
            Assignment::Start { shard, users } => {
                shards.insert(shard, users.into_iter().collect());
                if let Some((at, by)) = self.stopped.remove(&shard) {
                    if by != worker {
                        self.gaps.push(at.elapsed());
                    }
                }
            }
            Assignment::Stop { shard, .. } => {
                shards.remove(&shard);
                self.stopped
                    .insert(shard, (Instant::now(), worker.to_owned()));
            }
            Assignment::Follow { shard, user } => {
                shards.entry(shard).or_default().insert(user);
            }
            Assignment::Unfollow { shard, user } => {
                shards.entry(shard).or_default().remove(&user);
            }
        }
    }

    /// Shards streamed by more than one worker.
    fn doubled(&self) -> Vec<Shard> {
        let mut count = BTreeMap::new();
        for shards in self.by_worker.values() {
            for shard in shards.keys() {
                *count.entry(*shard).or_insert(0) += 1;
            }
        }
        count
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(s, _)| s)
            .collect()
    }

    /// Settled: every shard streamed by exactly one of `workers`, counts within one, and every
    /// user streamed by exactly one worker.
    fn settled(&self, workers: &[&str], users: &BTreeSet<u64>) -> bool {
        let counts: Vec<usize> = workers
            .iter()
            .map(|w| self.by_worker.get(*w).map_or(0, |s| s.len()))
            .collect();
        let total: usize = counts.iter().sum();
        let (min, max) = (
            counts.iter().min().copied().unwrap_or(0),
            counts.iter().max().copied().unwrap_or(0),
        );
        if total != DEFAULT_SHARDS as usize || max - min > 1 || !self.doubled().is_empty() {
            return false;
        }
        let mut streamed = BTreeSet::new();
        for w in workers {
            for shard_users in self.by_worker.get(*w).into_iter().flat_map(|s| s.values()) {
                for user in shard_users {
                    if !streamed.insert(*user) {
                        return false;
                    }
                }
            }
        }
        &streamed == users
    }
}

async fn start_worker(url: &str, name: &str, streams: &Arc<Mutex<Streams>>, seed: u64) -> Worker {
    let client = async_nats::connect(url)
        .await
        .expect("connect to nats-server");
    let mut config = FleetConfig::new(name, TTL);
    config.lease.seed = seed;
    let streams = Arc::clone(streams);
    let worker = name.to_owned();
    Worker::start(client, config, move |a: Assignment| {
        streams.lock().expect("not poisoned").apply(&worker, a)
    })
    .await
    .expect("worker starts")
}

const TTL: Duration = Duration::from_secs(3);
/// How long three fresh workers may take to settle: five TTLs.
const SETTLE: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_two_thousand_users_and_survive_a_kill() {
    let server = NatsServer::start();
    let client = async_nats::connect(&server.url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let buckets = Buckets::open(&js, &FleetConfig::new("setup", TTL))
        .await
        .expect("buckets");
    let follows = FollowSet::new(buckets.follows.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let users: BTreeSet<u64> = (0..2_000).map(|_| rng.gen_range(1..1u64 << 60)).collect();
    for user in &users {
        follows.add(*user).await.expect("add a user");
    }
    // Bad input the workers must skip without disturbing anything: a follow-set key that is
    // not a user id, and a lease key that is not a shard.
    buckets
        .follows
        .put("not-a-user", "x".into())
        .await
        .expect("put a foreign key");
    buckets
        .leases
        .put("banana", "x".into())
        .await
        .expect("put a foreign lease key");
    assert_eq!(
        follows.list().await.expect("list"),
        users.iter().copied().collect::<Vec<_>>()
    );

    let streams = Arc::new(Mutex::new(Streams::default()));
    let names = ["w0", "w1", "w2"];
    let started = Instant::now();
    let mut workers = Vec::new();
    for (i, name) in names.iter().enumerate() {
        workers.push(Some(
            start_worker(&server.url, name, &streams, i as u64).await,
        ));
    }

    // Settle.
    loop {
        {
            let s = streams.lock().expect("not poisoned");
            assert!(
                s.doubled().is_empty(),
                "a shard streamed twice: {:?}",
                s.doubled()
            );
            if s.settled(&names, &users) {
                break;
            }
        }
        assert!(
            started.elapsed() < SETTLE,
            "not settled in {SETTLE:?}: {:?}",
            streams
                .lock()
                .expect("not poisoned")
                .by_worker
                .iter()
                .map(|(w, s)| (w.clone(), s.len()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settled_in = started.elapsed();
    let counts: Vec<usize> = {
        let s = streams.lock().expect("not poisoned");
        names.iter().map(|w| s.by_worker[*w].len()).collect()
    };
    println!("3 workers, 2000 users: settled in {settled_in:.2?}, shards per worker {counts:?}");

    // The buckets say the same as the workers' sinks.
    let status = FleetStatus::read(&buckets, DEFAULT_SHARDS)
        .await
        .expect("status");
    print!("{status}");
    {
        let s = streams.lock().expect("not poisoned");
        for name in names {
            let streamed: Vec<Shard> = s.by_worker[name].keys().copied().collect();
            assert_eq!(status.shards_of(name), streamed, "{name}'s leases");
            let users_streamed: usize = s.by_worker[name].values().map(BTreeSet::len).sum();
            assert_eq!(status.users_of(name), users_streamed, "{name}'s users");
        }
    }
    assert!(status.free().is_empty());
    assert_eq!(status.workers.len(), 3);
    assert!(
        status.foreign_keys >= 1,
        "the foreign follow-set key is counted"
    );

    // A follow-set change reaches the owner of the user's shard, and only it.
    let newcomer = 42;
    follows.add(newcomer).await.expect("add");
    let shard = shard_of(newcomer, DEFAULT_SHARDS);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let holders: Vec<String> = {
            let s = streams.lock().expect("not poisoned");
            s.by_worker
                .iter()
                .filter(|(_, shards)| shards.get(&shard).is_some_and(|u| u.contains(&newcomer)))
                .map(|(w, _)| w.clone())
                .collect()
        };
        if holders.len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "user {newcomer} streamed by {holders:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    follows.remove(newcomer).await.expect("remove");

    // Kill the worker with the most shards, as kill -9 would: no release.
    let victim = (0..3).max_by_key(|&i| counts[i]).expect("three workers");
    let orphans: Vec<Shard> = {
        let mut s = streams.lock().expect("not poisoned");
        let shards = s.by_worker.remove(names[victim]).unwrap_or_default();
        shards.into_keys().collect()
    };
    let killed = Instant::now();
    workers[victim].take().expect("alive").kill();
    let survivors: Vec<&str> = (0..3).filter(|&i| i != victim).map(|i| names[i]).collect();
    let renew = TTL / 3;
    let bound = TTL + renew + Duration::from_secs(1);
    let taken_over = loop {
        {
            let s = streams.lock().expect("not poisoned");
            assert!(
                s.doubled().is_empty(),
                "a shard streamed twice: {:?}",
                s.doubled()
            );
            let all = orphans
                .iter()
                .all(|o| survivors.iter().any(|w| s.by_worker[*w].contains_key(o)));
            if all {
                break killed.elapsed();
            }
        }
        assert!(
            killed.elapsed() < bound * 2,
            "the dead worker's shards were not taken over in {:?}",
            bound * 2
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!(
        "killed {} holding {} shards: all streamed again after {taken_over:.2?} \
         (TTL {TTL:?} + renew period {renew:?} = {:?})",
        names[victim],
        orphans.len(),
        TTL + renew
    );
    assert!(
        taken_over <= bound,
        "takeover took {taken_over:?}, more than TTL + one renew period + 1 s = {bound:?}"
    );
    let deadline = Instant::now() + SETTLE;
    while !streams
        .lock()
        .expect("not poisoned")
        .settled(&survivors, &users)
    {
        assert!(Instant::now() < deadline, "survivors did not settle");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A fourth worker is started (three live again): the survivors release their surplus and
    // it takes its fair share.
    // Each hand-over leaves the shard dark from the old owner's stop to the new owner's start:
    // measured and printed.
    streams.lock().expect("not poisoned").gaps.clear();
    let joined = Instant::now();
    workers.push(Some(start_worker(&server.url, "w3", &streams, 3).await));
    let mut four: Vec<&str> = survivors.clone();
    four.push("w3");
    loop {
        {
            let s = streams.lock().expect("not poisoned");
            assert!(
                s.doubled().is_empty(),
                "a shard streamed twice: {:?}",
                s.doubled()
            );
            if s.settled(&four, &users) {
                break;
            }
        }
        assert!(
            joined.elapsed() < SETTLE,
            "a joining worker did not get its share"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let s = streams.lock().expect("not poisoned");
        let counts: Vec<usize> = four.iter().map(|w| s.by_worker[*w].len()).collect();
        let worst = s.gaps.iter().max().copied().unwrap_or_default();
        let mean = s.gaps.iter().sum::<Duration>() / (s.gaps.len().max(1) as u32);
        println!(
            "w3 joined: settled in {:.2?} at {counts:?}; {} hand-overs, dark for {mean:.2?} on \
             average, {worst:.2?} at worst",
            joined.elapsed(),
            s.gaps.len()
        );
        assert_eq!(
            s.by_worker["w3"].len(),
            21,
            "the newcomer's fair share of 64 over 3 (w1, w2, w3 by name: 22, 21, 21)"
        );
        assert!(worst < TTL, "a hand-over left a shard dark for {worst:?}");
    }

    // The survivors shut down cleanly and give every lease back.
    for worker in workers.into_iter().flatten() {
        worker.shutdown().await.expect("clean shutdown");
    }
    let mut keys = buckets.leases.keys().await.expect("keys");
    let mut left = Vec::new();
    while let Some(key) = keys.next().await {
        left.push(key.expect("a key"));
    }
    // Only the dead worker's leases may remain (none: the survivors took them over and gave
    // them back on shutdown).
    assert!(left.is_empty(), "leases left after shutdown: {left:?}");
}

#[tokio::test]
async fn the_follow_set_adds_removes_and_lists_skipping_foreign_keys() {
    let server = NatsServer::start();
    let client = async_nats::connect(&server.url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let buckets = Buckets::open(&js, &FleetConfig::new("setup", TTL))
        .await
        .expect("buckets");
    let follows = FollowSet::new(buckets.follows.clone());
    assert_eq!(follows.list().await.expect("list"), Vec::<u64>::new());
    for user in [3, 1, 2] {
        follows.add(user).await.expect("add");
    }
    buckets
        .follows
        .put("zz", "x".into())
        .await
        .expect("a foreign key");
    follows.add(u64::MAX).await.expect("add the largest id");
    follows.remove(1).await.expect("remove");
    follows
        .remove(99)
        .await
        .expect("removing an absent user is a no-op");
    assert_eq!(follows.list().await.expect("list"), vec![2, 3, u64::MAX]);
    let status = FleetStatus::read(&buckets, DEFAULT_SHARDS)
        .await
        .expect("status");
    assert_eq!(status.foreign_keys, 1);
    assert_eq!(status.users.values().sum::<usize>(), 3);
    assert_eq!(status.free().len(), DEFAULT_SHARDS as usize);
}
