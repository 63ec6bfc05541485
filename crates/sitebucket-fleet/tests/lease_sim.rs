//! The lease machine against a model key-value store, in virtual time, over thousands of seeded
//! schedules with latency, partitions, delayed operations, clock drift, crashes and joins.
//!
//! The model is written from the NATS JetStream key-value semantics, not from the machine: a
//! revision is the bucket's sequence number; `create` succeeds if the key is absent, expired or
//! deleted; `update` and `delete` succeed only if the key's last revision is the one given; a key
//! whose last write is older than the bucket's `max_age` is gone (and its expiry is not seen by
//! watchers). Every key-value write is delivered to every connected worker's watch.
//!
//! Checked on every schedule:
//! - **Exclusive:** when a worker starts a shard, the model's lease key names that worker; and no
//!   two workers stream one shard at the same time beyond [`LeaseConfig::overlap_bound`]: zero
//!   while no clock runs slow by `margin / ttl` (25%) or more; the main sweeps drift clocks by
//!   up to 2% each way and find no overlap at all, and a sweep with clocks up to 40% slow finds
//!   overlaps, all within the bound.
//! - **Taken over:** after a crash with no fault in the way, every shard of the dead worker is
//!   streamed again within [`LeaseConfig::takeover_bound`] (TTL + probe period + jitter + four
//!   one-way latencies, stretched by the drift).
//! - **Fair:** after a quiet period, every shard is streamed by exactly one live worker and the
//!   counts differ by at most one.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sitebucket_fleet::{Action, KvOp, KvOutcome, LeaseConfig, Leases, OpId, Shard};

/// Virtual true time, in nanoseconds since the start of a schedule.
type Nanos = u64;

const MS: Nanos = 1_000_000;
const SEC: Nanos = 1_000 * MS;

// ---- the model key-value store --------------------------------------------------------------

#[derive(Clone, Debug)]
struct Entry {
    value: Option<String>, // None: a delete marker
    revision: u64,
    written: Nanos,
}

/// One bucket with `max_age` semantics.
#[derive(Debug)]
struct Bucket {
    max_age: Nanos,
    entries: BTreeMap<String, Entry>,
}

impl Bucket {
    fn new(max_age: Nanos) -> Self {
        Bucket {
            max_age,
            entries: BTreeMap::new(),
        }
    }

    /// The key's last entry, unless it expired.
    fn last(&self, key: &str, now: Nanos) -> Option<&Entry> {
        self.entries
            .get(key)
            .filter(|e| e.written + self.max_age > now)
    }

    /// The live holder of a lease key.
    fn holder(&self, key: &str, now: Nanos) -> Option<&str> {
        self.last(key, now).and_then(|e| e.value.as_deref())
    }

    fn write(&mut self, seq: &mut u64, key: &str, value: Option<String>, now: Nanos) -> u64 {
        *seq += 1;
        self.entries.insert(
            key.to_owned(),
            Entry {
                value,
                revision: *seq,
                written: now,
            },
        );
        *seq
    }
}

// ---- the world --------------------------------------------------------------------------------

#[derive(Debug)]
enum Event {
    /// A worker's operation reaches the engine.
    Arrive {
        worker: usize,
        op: KvOp,
    },
    /// The answer reaches the worker.
    Answer {
        worker: usize,
        id: OpId,
        outcome: KvOutcome,
    },
    /// A write is seen in a worker's watch.
    Watch {
        worker: usize,
        seen: Seen,
    },
    /// A worker's timer.
    Wake {
        worker: usize,
    },
    Crash,
    Join,
}

#[derive(Clone, Debug)]
enum Seen {
    Lease {
        shard: Shard,
        holder: Option<String>,
        revision: u64,
    },
    Heartbeat {
        name: String,
        gone: bool,
    },
}

struct Worker {
    name: String,
    leases: Leases,
    alive: bool,
    /// Clock: local = offset + t × (1 + ppm / 10⁶).
    offset: Nanos,
    ppm: i64,
    /// Partitions: [from, to) intervals of true time, and whether ops are delayed (applied late)
    /// rather than lost or failed.
    partitions: Vec<(Nanos, Nanos, bool)>,
    next_wake: Option<Nanos>,
}

/// A worker's clock reading at true time `t`: offset + t × (1 + ppm / 10⁶).
fn local_time(base: Instant, offset: Nanos, ppm: i64, t: Nanos) -> Instant {
    let drifted = i128::from(t) + i128::from(t) * i128::from(ppm) / 1_000_000;
    base + Duration::from_nanos(offset + drifted.max(0) as u64)
}

impl Worker {
    fn local(&self, base: Instant, t: Nanos) -> Instant {
        local_time(base, self.offset, self.ppm, t)
    }

    /// The first true time at which the local clock reads `at` or later.
    fn true_time(&self, base: Instant, at: Instant) -> Nanos {
        let local = at.saturating_duration_since(base).as_nanos() as i128 - i128::from(self.offset);
        let mut t =
            (local.max(0) * 1_000_000).div_euclid(1_000_000 + i128::from(self.ppm)) as Nanos;
        while self.local(base, t) < at {
            t += 1;
        }
        t
    }

    fn partitioned(&self, t: Nanos) -> Option<bool> {
        self.partitions
            .iter()
            .find(|(from, to, _)| (*from..*to).contains(&t))
            .map(|(_, _, delayed)| *delayed)
    }
}

/// What one schedule looks like.
#[derive(Clone, Debug)]
struct Plan {
    shards: u32,
    ttl: Duration,
    initial: usize,
    max_latency: Nanos,
    max_ppm: i64,
    /// Clocks drift beyond the safe bound: only the overlap bound is checked.
    extreme: bool,
    /// Faults (partitions, crashes, joins) happen only before this; then it is quiet.
    faults_until: Nanos,
    end: Nanos,
    partitions: bool,
    crashes: usize,
    joins: usize,
}

#[derive(Debug, Default)]
struct Report {
    /// The largest time any two workers streamed one shard together.
    max_overlap: Nanos,
    /// The largest time from a crash to all the dead worker's shards streamed again, over the
    /// crashes with no partition in the way.
    max_takeover: Nanos,
    takeover_bound: Nanos,
    /// When the last start or stop happened.
    last_change: Nanos,
    starts: u64,
    create_conflicts: u64,
}

struct World {
    rng: ChaCha8Rng,
    plan: Plan,
    base: Instant,
    now: Nanos,
    queue: BinaryHeap<Reverse<(Nanos, u64, usize)>>,
    events: Vec<Option<Event>>,
    workers: Vec<Worker>,
    seq: u64,
    leases: Bucket,
    heartbeats: Bucket,
    /// Per shard, the intervals streamed: (worker, from, to or open).
    intervals: Vec<Vec<(usize, Nanos, Option<Nanos>)>>,
    /// Crashes to check: (time, shards the dead worker streamed, clean of partitions).
    crashes: Vec<(Nanos, usize, Vec<Shard>, bool)>,
    /// Lease writes of dead workers that were still on their way when they died: the lease
    /// lives one TTL from there, so the takeover is measured from the later of the two.
    late_writes: BTreeMap<(usize, Shard), Nanos>,
    /// When workers joined or crashed.
    faults: Vec<Nanos>,
    report: Report,
    seed: u64,
    /// Print every event and action (replaying one seed with `SIM_TRACE=seed`).
    trace: bool,
}

impl World {
    fn new(seed: u64, plan: Plan) -> Self {
        let ttl = plan.ttl.as_nanos() as Nanos;
        let mut world = World {
            rng: ChaCha8Rng::seed_from_u64(seed),
            base: Instant::now(),
            now: 0,
            queue: BinaryHeap::new(),
            events: Vec::new(),
            workers: Vec::new(),
            seq: 0,
            leases: Bucket::new(ttl),
            heartbeats: Bucket::new(ttl),
            intervals: vec![Vec::new(); plan.shards as usize],
            crashes: Vec::new(),
            late_writes: BTreeMap::new(),
            faults: Vec::new(),
            report: Report::default(),
            trace: std::env::var("SIM_TRACE").ok() == Some(seed.to_string()),
            seed,
            plan,
        };
        for _ in 0..world.plan.initial {
            let at = world
                .rng
                .gen_range(0..world.plan.ttl.as_nanos() as Nanos / 4);
            world.schedule(at, Event::Join);
        }
        for _ in 0..world.plan.crashes {
            let at = world
                .rng
                .gen_range(world.plan.faults_until / 4..world.plan.faults_until);
            // The victim is chosen when the crash happens.
            world.schedule(at, Event::Crash);
        }
        for _ in 0..world.plan.joins {
            let at = world
                .rng
                .gen_range(world.plan.faults_until / 4..world.plan.faults_until);
            world.schedule(at, Event::Join);
        }
        world
    }

    fn config(&self, name: &str, seed: u64) -> LeaseConfig {
        let mut config = LeaseConfig::new(name, self.plan.ttl);
        config.shards = self.plan.shards;
        config.seed = seed;
        config
    }

    fn schedule(&mut self, at: Nanos, event: Event) {
        let id = self.events.len();
        self.events.push(Some(event));
        self.queue.push(Reverse((at, id as u64, id)));
    }

    fn latency(&mut self) -> Nanos {
        self.rng.gen_range(MS..=self.plan.max_latency)
    }

    fn join(&mut self) {
        let index = self.workers.len();
        let name = format!("w{index}");
        let seed = self.rng.gen();
        let ppm = if self.plan.max_ppm == 0 {
            0
        } else {
            self.rng.gen_range(-self.plan.max_ppm..=self.plan.max_ppm)
        };
        let offset = self.rng.gen_range(0..3600 * SEC);
        let mut partitions = Vec::new();
        if self.plan.partitions {
            let ttl = self.plan.ttl.as_nanos() as Nanos;
            for _ in 0..self.rng.gen_range(0..3) {
                let from = self
                    .rng
                    .gen_range(self.now..self.plan.faults_until.max(self.now + 1));
                let to = (from + self.rng.gen_range(ttl / 10..3 * ttl)).min(self.plan.faults_until);
                partitions.push((from, to, self.rng.gen_bool(0.3)));
            }
        }
        let local = local_time(self.base, offset, ppm, self.now);
        let leases = Leases::new(self.config(&name, seed), local).expect("valid config");
        self.faults.push(self.now);
        self.workers.push(Worker {
            name,
            leases,
            alive: true,
            offset,
            ppm,
            partitions,
            next_wake: None,
        });
        self.drain(index);
    }

    fn crash(&mut self) {
        let alive: Vec<usize> = (0..self.workers.len())
            .filter(|&w| self.workers[w].alive)
            .collect();
        if alive.len() < 2 {
            return;
        }
        let victim = alive[self.rng.gen_range(0..alive.len())];
        self.workers[victim].alive = false;
        self.faults.push(self.now);
        let held = self.workers[victim].leases.owned();
        for &shard in &held {
            self.end_interval(shard, victim);
        }
        // The takeover bound holds when the survivors can reach the engine throughout.
        let bound = self.takeover_bound();
        // The takeover bound holds when the survivors can reach the engine throughout, and
        // when no operation of the victim is still held up in the network (its delayed writes
        // land after its death and keep a lease alive one TTL from there: the engine cannot
        // cancel them either).
        let ttl = self.plan.ttl.as_nanos() as Nanos;
        let now = self.now;
        let clean = (0..self.workers.len()).all(|w| {
            self.workers[w].partitions.iter().all(|&(from, to, _)| {
                if w == victim {
                    to + 3 * ttl <= now || from > now
                } else {
                    to + ttl <= now || from > now + bound
                }
            })
        });
        self.crashes.push((self.now, victim, held, clean));
    }

    fn takeover_bound(&self) -> Nanos {
        let config = self.config("x", 0);
        config
            .takeover_bound(
                Duration::from_nanos(self.plan.max_latency),
                self.plan.max_ppm as f64 / 1e6,
            )
            .as_nanos() as Nanos
    }

    fn end_interval(&mut self, shard: Shard, worker: usize) {
        let now = self.now;
        for interval in &mut self.intervals[shard as usize] {
            if interval.0 == worker && interval.2.is_none() {
                interval.2 = Some(now);
            }
        }
        self.report.last_change = now;
    }

    /// Drains a worker's actions after an input.
    fn drain(&mut self, worker: usize) {
        loop {
            let action = self.workers[worker].leases.poll_action();
            if self.trace && !matches!(action, Action::Wait(_)) {
                println!("{:>14} w{worker} -> {action:?}", self.now);
            }
            match action {
                Action::Kv(op) => {
                    let partition = self.workers[worker].partitioned(self.now);
                    let there = self.latency();
                    match partition {
                        None => self.schedule(self.now + there, Event::Arrive { worker, op }),
                        Some(true) => {
                            // Delayed, then applied: the worst case for a lease.
                            let late = self.rng.gen_range(0..2 * self.plan.ttl.as_nanos() as Nanos);
                            self.schedule(self.now + there + late, Event::Arrive { worker, op });
                        }
                        Some(false) => {
                            if self.rng.gen_bool(0.5) {
                                // Refused at once (no connection).
                                let id = op.id();
                                self.schedule(
                                    self.now + MS,
                                    Event::Answer {
                                        worker,
                                        id,
                                        outcome: KvOutcome::Failed,
                                    },
                                );
                            } // else lost: never answered.
                        }
                    }
                }
                Action::Start(shard) => {
                    let name = &self.workers[worker].name;
                    let key = shard.to_string();
                    assert_eq!(
                        self.leases.holder(&key, self.now),
                        Some(name.as_str()),
                        "seed {}: {name} started shard {shard} at {} without holding its lease",
                        self.seed,
                        self.now
                    );
                    self.intervals[shard as usize].push((worker, self.now, None));
                    self.report.last_change = self.now;
                    self.report.starts += 1;
                }
                Action::Stop { shard, .. } => self.end_interval(shard, worker),
                Action::Wait(at) => {
                    let at = self.workers[worker].true_time(self.base, at).max(self.now);
                    let w = &mut self.workers[worker];
                    if w.next_wake.is_none_or(|next| at < next || next <= self.now) {
                        w.next_wake = Some(at);
                        self.schedule(at, Event::Wake { worker });
                    }
                    return;
                }
                Action::Finished => return,
            }
        }
    }

    /// Applies an operation at the engine and sends the answer and the watch events back.
    fn arrive(&mut self, worker: usize, op: KvOp) {
        let now = self.now;
        let name = self.workers[worker].name.clone();
        let (outcome, seen) = match op {
            KvOp::CreateLease { shard, .. } => {
                let key = shard.to_string();
                match self.leases.last(&key, now) {
                    Some(Entry { value: Some(_), .. }) => (KvOutcome::Conflict, None),
                    _ => {
                        let rev = self
                            .leases
                            .write(&mut self.seq, &key, Some(name.clone()), now);
                        (
                            KvOutcome::Written(rev),
                            Some(Seen::Lease {
                                shard,
                                holder: Some(name.clone()),
                                revision: rev,
                            }),
                        )
                    }
                }
            }
            KvOp::UpdateLease {
                shard, revision, ..
            } => {
                let key = shard.to_string();
                let last = self.leases.last(&key, now).map_or(0, |e| e.revision);
                if last == revision {
                    let rev = self
                        .leases
                        .write(&mut self.seq, &key, Some(name.clone()), now);
                    (
                        KvOutcome::Written(rev),
                        Some(Seen::Lease {
                            shard,
                            holder: Some(name.clone()),
                            revision: rev,
                        }),
                    )
                } else {
                    (KvOutcome::Conflict, None)
                }
            }
            KvOp::DeleteLease {
                shard, revision, ..
            } => {
                let key = shard.to_string();
                let last = self.leases.last(&key, now).map_or(0, |e| e.revision);
                if last == revision {
                    let rev = self.leases.write(&mut self.seq, &key, None, now);
                    (
                        KvOutcome::Deleted,
                        Some(Seen::Lease {
                            shard,
                            holder: None,
                            revision: rev,
                        }),
                    )
                } else {
                    (KvOutcome::Conflict, None)
                }
            }
            KvOp::PutHeartbeat { .. } => {
                let rev = self
                    .heartbeats
                    .write(&mut self.seq, &name, Some(String::new()), now);
                (
                    KvOutcome::Written(rev),
                    Some(Seen::Heartbeat {
                        name: name.clone(),
                        gone: false,
                    }),
                )
            }
            KvOp::DeleteHeartbeat { .. } => {
                self.heartbeats.write(&mut self.seq, &name, None, now);
                (
                    KvOutcome::Deleted,
                    Some(Seen::Heartbeat {
                        name: name.clone(),
                        gone: true,
                    }),
                )
            }
        };
        if let (
            false,
            KvOp::CreateLease { shard, .. } | KvOp::UpdateLease { shard, .. },
            KvOutcome::Written(_),
        ) = (self.workers[worker].alive, &op, outcome)
        {
            self.late_writes.insert((worker, *shard), now);
        }
        let back = self.latency();
        self.schedule(
            now + back,
            Event::Answer {
                worker,
                id: op.id(),
                outcome,
            },
        );
        if let Some(seen) = seen {
            for other in 0..self.workers.len() {
                let delay = self.latency();
                self.schedule(
                    now + delay,
                    Event::Watch {
                        worker: other,
                        seen: seen.clone(),
                    },
                );
            }
        }
    }

    fn run(mut self) -> Report {
        while let Some(Reverse((at, _, id))) = self.queue.pop() {
            if at > self.plan.end {
                break;
            }
            self.now = at;
            let Some(event) = self.events[id].take() else {
                continue;
            };
            if self.trace && !matches!(event, Event::Wake { .. }) {
                println!("{at:>14} {event:?}");
            }
            match event {
                Event::Join => self.join(),
                Event::Crash => self.crash(),
                Event::Arrive { worker, op } => self.arrive(worker, op),
                Event::Answer {
                    worker,
                    id,
                    outcome,
                } => {
                    let w = &self.workers[worker];
                    // Answers are lost while the worker is cut off.
                    if w.alive && w.partitioned(at).is_none() {
                        let local = w.local(self.base, at);
                        self.workers[worker]
                            .leases
                            .handle_kv_result(local, id, outcome);
                        self.drain(worker);
                    }
                }
                Event::Watch { worker, seen } => {
                    let w = &self.workers[worker];
                    if w.alive && w.partitioned(at).is_none() {
                        let local = w.local(self.base, at);
                        let leases = &mut self.workers[worker].leases;
                        match &seen {
                            Seen::Lease {
                                shard,
                                holder,
                                revision,
                            } => leases.handle_lease_seen(
                                local,
                                *shard,
                                holder.as_deref(),
                                *revision,
                            ),
                            Seen::Heartbeat { name, gone: false } => {
                                leases.handle_heartbeat_seen(local, name)
                            }
                            Seen::Heartbeat { name, gone: true } => {
                                leases.handle_heartbeat_gone(local, name)
                            }
                        }
                        self.drain(worker);
                    }
                }
                Event::Wake { worker } => {
                    let w = &mut self.workers[worker];
                    if w.alive && w.next_wake == Some(at) {
                        w.next_wake = None;
                        let local = w.local(self.base, at);
                        w.leases.handle_timeout(local);
                        self.drain(worker);
                    }
                }
            }
        }
        self.now = self.plan.end;
        self.check()
    }

    fn check(mut self) -> Report {
        let seed = self.seed;
        // Exclusive: pairwise overlap of different workers' intervals on each shard.
        for intervals in &self.intervals {
            for (i, a) in intervals.iter().enumerate() {
                for b in &intervals[i + 1..] {
                    if a.0 == b.0 {
                        continue;
                    }
                    let end = a.2.unwrap_or(self.now).min(b.2.unwrap_or(self.now));
                    let start = a.1.max(b.1);
                    if end > start {
                        self.report.max_overlap = self.report.max_overlap.max(end - start);
                    }
                }
            }
        }
        self.report.create_conflicts = self
            .workers
            .iter()
            .map(|w| w.leases.stats().create_conflicts)
            .sum();
        if self.plan.extreme {
            return self.report;
        }
        // Taken over in time.
        let bound = self.takeover_bound();
        self.report.takeover_bound = bound;
        for (at, victim, held, clean) in &self.crashes {
            // Another join or crash while the shards are taken over changes the targets.
            let disturbed = self.faults.iter().any(|f| f > at && *f <= at + bound);
            if !clean || disturbed {
                continue;
            }
            for &shard in held {
                let at = &(*at).max(
                    self.late_writes
                        .get(&(*victim, shard))
                        .copied()
                        .unwrap_or(0),
                );
                let again = self.intervals[shard as usize]
                    .iter()
                    .filter(|(_, from, _)| from >= at)
                    .map(|(_, from, _)| *from)
                    .min();
                let Some(again) = again else {
                    panic!("seed {seed}: shard {shard} of a worker dead at {at} never taken again");
                };
                let took = again - at;
                assert!(
                    took <= bound,
                    "seed {seed}: shard {shard} taken {took} ns after the crash, bound {bound}"
                );
                self.report.max_takeover = self.report.max_takeover.max(took);
            }
        }
        // Fair and complete once quiet.
        let mut counts = BTreeMap::new();
        for (shard, intervals) in self.intervals.iter().enumerate() {
            let open: Vec<usize> = intervals
                .iter()
                .filter(|(_, _, to)| to.is_none())
                .map(|(w, _, _)| *w)
                .collect();
            assert_eq!(
                open.len(),
                1,
                "seed {seed}: shard {shard} streamed by {open:?} at the end"
            );
            *counts.entry(open[0]).or_insert(0u32) += 1;
        }
        let alive = self.workers.iter().filter(|w| w.alive).count();
        assert_eq!(
            counts.len(),
            alive,
            "seed {seed}: a live worker holds nothing: {counts:?}"
        );
        let (min, max) = (
            counts.values().min().copied().unwrap_or(0),
            counts.values().max().copied().unwrap_or(0),
        );
        assert!(max - min <= 1, "seed {seed}: unfair shares {counts:?}");
        self.report
    }
}

fn plan(rng: &mut ChaCha8Rng, shards: u32) -> Plan {
    let ttl = Duration::from_secs(10);
    let faults_until = rng.gen_range(60..240) * SEC;
    Plan {
        shards,
        ttl,
        initial: rng.gen_range(1..=5),
        max_latency: rng.gen_range(2..=200) * MS,
        max_ppm: if rng.gen_bool(0.5) { 20_000 } else { 1_000 },
        extreme: false,
        faults_until,
        // The quiet period to settle in: six TTLs.
        end: faults_until + 60 * SEC,
        partitions: rng.gen_bool(0.5),
        crashes: rng.gen_range(0..3),
        joins: rng.gen_range(0..3),
    }
}

fn sweep(first_seed: u64, schedules: u64, shards: u32) {
    sweep_with(first_seed, schedules, shards, |_| {});
}

/// Runs `schedules` seeded schedules (adjusted by `adjust`) and checks them; returns the
/// largest overlap seen.
fn sweep_with(first_seed: u64, schedules: u64, shards: u32, adjust: fn(&mut Plan)) -> Nanos {
    let mut max_overlap = 0;
    let mut max_takeover = 0;
    let mut max_settle = 0;
    let mut starts = 0;
    let mut conflicts = 0;
    let mut bound = 0;
    for seed in first_seed..first_seed + schedules {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut plan = plan(&mut rng, shards);
        adjust(&mut plan);
        let faults_until = plan.faults_until;
        let allowed = LeaseConfig::new("x", plan.ttl)
            .overlap_bound(plan.max_ppm as f64 / 1e6)
            .as_nanos() as Nanos;
        let report = World::new(seed, plan).run();
        assert!(
            report.max_overlap <= allowed,
            "seed {seed}: two workers streamed one shard together for {} ns, bound {allowed} ns",
            report.max_overlap
        );
        max_overlap = max_overlap.max(report.max_overlap);
        max_takeover = max_takeover.max(report.max_takeover);
        max_settle = max_settle.max(report.last_change.saturating_sub(faults_until));
        starts += report.starts;
        conflicts += report.create_conflicts;
        bound = bound.max(report.takeover_bound);
    }
    println!(
        "{schedules} schedules, {shards} shards: overlap {max_overlap} ns; slowest takeover {:.2} s \
         (bound {:.2} s); last change {:.2} s after the last fault; {starts} starts, {conflicts} \
         create conflicts",
        max_takeover as f64 / 1e9,
        bound as f64 / 1e9,
        max_settle as f64 / 1e9,
    );
    max_overlap
}

#[test]
fn two_thousand_schedules_of_sixteen_shards() {
    sweep(0, 2_000, 16);
}

#[test]
fn two_hundred_schedules_of_sixty_four_shards() {
    sweep(1_000_000, 200, 64);
}

#[test]
fn clocks_forty_percent_slow_overlap_within_the_stated_bound() {
    // Beyond the safe drift (25% slow) overlaps happen; the simulator must see them, and
    // every one must stay within (ttl − margin) / (1 − drift) − ttl: 2.5 s here.
    let worst = sweep_with(2_000_000, 300, 16, |plan| {
        plan.max_ppm = 400_000;
        plan.extreme = true;
    });
    assert!(
        worst > 0,
        "no overlap at 40% drift: the overlap check sees nothing"
    );
}
