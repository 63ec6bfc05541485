//! The shard lease state machine of one worker: sans-IO.
//!
//! [`Leases`] decides which shards a worker takes, renews and gives up; it performs no I/O and
//! reads no clock. Its inputs are the outcomes of the key-value operations it asked for, what the
//! worker saw in the leases and heartbeats buckets, and `now`; its outputs are [`Action`]s:
//! key-value operations to perform, shards to start and stop streaming, and the next deadline.
//!
//! # The rules
//! - **A lease is a key with a revision.** Take = create (fails if the key exists); renew =
//!   update with the revision last written, every [`LeaseConfig::renew_every`]; release = delete
//!   with that revision. The leases bucket's `max_age` is the TTL, so a lease that is not renewed
//!   disappears and another worker's create succeeds.
//! - **Stop before the lease can expire, by the worker's own clock.** A shard is streamed only
//!   until `sent + ttl − margin`, where `sent` is when the last *confirmed* create or renewal was
//!   sent (the write happened after that, so the key lives at least until `sent + ttl` by the
//!   engine's clock). A renewal that fails, or whose answer has not come by then, stops the shard
//!   at once. The engine's clock decides when a lease expires, and nothing else matters to
//!   exclusivity (not latency, not how long the engine stays unreachable): two workers never
//!   stream a shard at the same time while the holder's clock runs slow against the engine's by
//!   less than `margin / ttl` (a quarter with the default margin); beyond that the overlap is at
//!   most `(ttl − margin) / (1 − drift) − ttl` ([`LeaseConfig::overlap_bound`]).
//! - **A target per worker that sums to the shard count.** Live workers are this one plus every
//!   worker whose heartbeat was seen within [`LeaseConfig::heartbeat_ttl`]. Sorted by name, the
//!   first `shards mod live` workers aim for `ceil(shards / live)` shards and the others for
//!   `floor(shards / live)`. (A bare `ceil` for everyone, as first sketched in the design, lets
//!   64 shards over 3 workers settle at 22/22/20; these targets add up to exactly the shard count,
//!   so the fleet settles with counts that differ by at most one.)
//! - **Take free shards with jitter; give up surplus, most recently taken first.** Under its
//!   target, a worker tries to create leases on shards it believes free, at seeded random moments,
//!   in a seeded random order. Above it, it stops and releases the shards it took last.
//!
//! # Driving it
//! Call a `handle_*` method for every input, then drain [`Leases::poll_action`] until it returns
//! [`Action::Wait`] (call `handle_timeout` at that instant, or earlier: spurious calls are
//! no-ops) or [`Action::Finished`]. Perform every [`KvOp`] in the order given and report each
//! outcome with [`Leases::handle_kv_result`], by its [`OpId`]. An operation whose answer never
//! comes is treated as failed after [`LeaseConfig::op_timeout`]; a late answer is still welcome.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A shard number, `0..shards`.
pub type Shard = u32;

/// The default number of shards of a fleet.
pub const DEFAULT_SHARDS: u32 = 64;

/// The shard of a user: the SplitMix64 finalizer of the user id, modulo the shard count.
///
/// This is stable across versions, platforms and processes: every worker of a fleet must agree
/// on it, so it never changes. A shard count of 0 is treated as 1.
///
/// ```
/// use sitebucket_fleet::shard_of;
/// assert_eq!(shard_of(12, 64), shard_of(12, 64));
/// assert!(shard_of(783214, 64) < 64);
/// ```
pub fn shard_of(user_id: u64, shards: u32) -> Shard {
    let mut z = user_id.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % u64::from(shards.max(1))) as Shard
}

/// How a worker holds leases. Build it with [`LeaseConfig::new`], adjust, then [`validate`].
///
/// [`validate`]: LeaseConfig::validate
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// This worker's name: unique in the fleet, written as the value of its leases and the key of
    /// its heartbeat. Letters, digits, `-` and `_` only (a NATS key-value key).
    pub worker: String,
    /// The number of shards of the fleet (fixed for a fleet; every worker must agree).
    pub shards: u32,
    /// The lease time-to-live: the leases bucket's `max_age`.
    pub ttl: Duration,
    /// How long before the lease could expire a worker stops streaming a shard.
    pub margin: Duration,
    /// How often a held lease is renewed.
    pub renew_every: Duration,
    /// How often this worker writes its heartbeat.
    pub heartbeat_every: Duration,
    /// How long a heartbeat counts: the heartbeats bucket's `max_age`.
    pub heartbeat_ttl: Duration,
    /// How often a worker under its target looks for free shards (before jitter).
    pub probe_every: Duration,
    /// The largest random delay added to each look for free shards.
    pub jitter: Duration,
    /// How long an operation may go unanswered before it is treated as failed.
    pub op_timeout: Duration,
    /// The seed of the jitter and of the order in which free shards are tried.
    pub seed: u64,
}

impl LeaseConfig {
    /// A configuration with the given TTL and the defaults derived from it: 64 shards, margin
    /// TTL/4, renewals and heartbeats every TTL/3, heartbeats counting for one TTL, a look for
    /// free shards every TTL/6 plus up to TTL/6 of jitter, operations timing out after TTL/3.
    pub fn new(worker: impl Into<String>, ttl: Duration) -> Self {
        LeaseConfig {
            worker: worker.into(),
            shards: DEFAULT_SHARDS,
            ttl,
            margin: ttl / 4,
            renew_every: ttl / 3,
            heartbeat_every: ttl / 3,
            heartbeat_ttl: ttl,
            probe_every: ttl / 6,
            jitter: ttl / 6,
            op_timeout: ttl / 3,
            seed: 0,
        }
    }

    /// Checks that the timings can keep a lease: a renewal sent on time and answered within the
    /// operation timeout must arrive before the stop deadline.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: &'static str| Err(ConfigError(what));
        if self.worker.is_empty()
            || !self
                .worker
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return bad("the worker name must be non-empty letters, digits, '-' and '_'");
        }
        if self.shards == 0 {
            return bad("the shard count must be at least 1");
        }
        if self.ttl.is_zero() || self.margin >= self.ttl {
            return bad("the margin must be shorter than the (non-zero) lease TTL");
        }
        if self.renew_every.is_zero()
            || self.renew_every + self.op_timeout >= self.ttl - self.margin
        {
            return bad("renew_every + op_timeout must be shorter than ttl - margin");
        }
        if self.heartbeat_every.is_zero() || self.heartbeat_every >= self.heartbeat_ttl {
            return bad("heartbeat_every must be non-zero and shorter than heartbeat_ttl");
        }
        if self.probe_every.is_zero() || self.op_timeout.is_zero() {
            return bad("probe_every and op_timeout must be non-zero");
        }
        Ok(())
    }

    /// The largest slowness of a worker's clock against the engine's (as a fraction: 0.01 is
    /// 1%) under which no other worker can take a shard it still streams: `margin / ttl`.
    pub fn safe_drift(&self) -> f64 {
        self.margin.as_secs_f64() / self.ttl.as_secs_f64()
    }

    /// How long two workers may stream one shard together, at most, when the holder's clock runs
    /// slow against the engine's by `drift` (a fraction below 1): it stops `ttl − margin` after
    /// sending its last confirmed write by its own clock, which is `(ttl − margin) / (1 − drift)`
    /// by the engine's, and the lease can expire (and be taken) `ttl` after that send. Zero up to
    /// [`safe_drift`](Self::safe_drift).
    pub fn overlap_bound(&self, drift: f64) -> Duration {
        let streams = (self.ttl - self.margin).as_secs_f64() / (1.0 - drift).max(f64::EPSILON);
        Duration::from_secs_f64((streams - self.ttl.as_secs_f64()).max(0.0))
    }

    /// How long after a worker dies its shards are all owned again, at most, when the survivors
    /// reach the engine with operations taking at most `latency` each way and their clocks run at
    /// most `drift` (a fraction below 1) slow: the lease expires one TTL after the dead worker's
    /// last write, the survivors see it free one TTL (by their clocks) after they saw that write,
    /// then look within one probe period plus jitter, and create. With the defaults, probe
    /// period plus jitter is one renewal period: the bound is TTL + renew period + 4 latencies.
    pub fn takeover_bound(&self, latency: Duration, drift: f64) -> Duration {
        let stretch = 1.0 / (1.0 - drift).max(f64::EPSILON);
        (self.ttl + self.probe_every + self.jitter).mul_f64(stretch) + latency * 4
    }
}

/// A configuration that cannot keep a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError(&'static str);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid lease configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Names one key-value operation, so its outcome can be matched to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// A key-value operation for the driver to perform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// Create the lease key of `shard` with this worker's name as its value; fails if it exists.
    CreateLease {
        /// Names the operation.
        id: OpId,
        /// The shard.
        shard: Shard,
    },
    /// Write the lease key of `shard` again (same value) if its last revision is `revision`.
    UpdateLease {
        /// Names the operation.
        id: OpId,
        /// The shard.
        shard: Shard,
        /// The revision this worker last wrote.
        revision: u64,
    },
    /// Delete the lease key of `shard` if its last revision is `revision`.
    DeleteLease {
        /// Names the operation.
        id: OpId,
        /// The shard.
        shard: Shard,
        /// The revision this worker last wrote.
        revision: u64,
    },
    /// Put this worker's heartbeat key.
    PutHeartbeat {
        /// Names the operation.
        id: OpId,
    },
    /// Delete this worker's heartbeat key (on shutdown).
    DeleteHeartbeat {
        /// Names the operation.
        id: OpId,
    },
}

impl KvOp {
    /// The operation's id.
    pub fn id(&self) -> OpId {
        match *self {
            KvOp::CreateLease { id, .. }
            | KvOp::UpdateLease { id, .. }
            | KvOp::DeleteLease { id, .. }
            | KvOp::PutHeartbeat { id }
            | KvOp::DeleteHeartbeat { id } => id,
        }
    }
}

/// The outcome of a [`KvOp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvOutcome {
    /// The key was written (create, update, put) at this revision.
    Written(u64),
    /// The key was deleted.
    Deleted,
    /// The key exists (create) or its revision is not the expected one (update, delete).
    Conflict,
    /// Anything else: a timeout, a lost connection, an engine error. The operation may or may
    /// not have happened.
    Failed,
}

/// Why a shard is no longer streamed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The worker holds more than its target and gave this shard up.
    Released,
    /// A renewal was refused or failed.
    RenewalFailed,
    /// No renewal was confirmed in time: the lease might expire soon.
    DeadlinePassed,
    /// The lease key was written or deleted by someone else.
    TakenOver,
    /// The worker is shutting down.
    Shutdown,
}

/// One output of [`Leases::poll_action`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Perform this key-value operation and report its outcome.
    Kv(KvOp),
    /// The lease is held: start streaming the shard's users.
    Start(Shard),
    /// Stop streaming the shard's users now.
    Stop {
        /// The shard.
        shard: Shard,
        /// Why.
        reason: StopReason,
    },
    /// Nothing to do until this instant (or until the next input).
    Wait(Instant),
    /// Shut down and every lease given back (or abandoned to expire): nothing more will come.
    Finished,
}

#[derive(Clone, Debug)]
enum ShardState {
    /// Not ours. `probe_after`: when it may be free (a lease seen written is presumed held for
    /// one TTL after it was seen). `revision`: the last revision seen, to ignore stale events.
    Unowned {
        probe_after: Instant,
        holder: Option<String>,
        revision: u64,
    },
    /// A create is in flight.
    Taking { op: OpId },
    /// Ours.
    Owned(Owned),
}

#[derive(Clone, Debug)]
struct Owned {
    revision: u64,
    /// When the last confirmed write was sent: the stop deadline is this plus ttl − margin.
    confirmed_sent: Instant,
    taken_at: Instant,
    next_renew: Instant,
    renewing: Option<OpId>,
}

#[derive(Clone, Copy, Debug)]
enum PendingKind {
    Create(Shard),
    Update(Shard),
    Delete,
    Heartbeat,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    kind: PendingKind,
    sent: Instant,
}

/// Counters of what the lease machine did, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseStats {
    /// Leases created by this worker.
    pub taken: u64,
    /// Leases this worker gave up because it held more than its target.
    pub released: u64,
    /// Renewals refused or failed, and deadlines passed.
    pub lost: u64,
    /// Creates that found the key present.
    pub create_conflicts: u64,
    /// Operations with no answer within the timeout.
    pub timed_out: u64,
}

/// The lease state machine of one worker. See the [module docs](self) for the rules and the
/// calling contract.
#[derive(Debug)]
pub struct Leases {
    config: LeaseConfig,
    rng: ChaCha8Rng,
    now: Instant,
    shards: Vec<ShardState>,
    /// Other workers' heartbeats: when each was last seen.
    seen: BTreeMap<String, Instant>,
    pending: BTreeMap<OpId, Pending>,
    /// Lease operations given up on (timed out): a late success is undone with a delete.
    abandoned: BTreeMap<OpId, (Shard, Instant)>,
    next_op: u64,
    next_heartbeat: Instant,
    next_probe: Instant,
    shutting_down: bool,
    out: VecDeque<Action>,
    stats: LeaseStats,
}

impl Leases {
    /// A worker holding nothing, starting at `now`. It writes its heartbeat at once and first
    /// looks for free shards one heartbeat period (plus jitter) later, once it has seen the
    /// other workers' heartbeats.
    pub fn new(config: LeaseConfig, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let first_probe = now + config.heartbeat_every + random_upto(&mut rng, config.jitter);
        let shards = (0..config.shards)
            .map(|_| ShardState::Unowned {
                probe_after: now,
                holder: None,
                revision: 0,
            })
            .collect();
        let mut leases = Leases {
            config,
            rng,
            now,
            shards,
            seen: BTreeMap::new(),
            pending: BTreeMap::new(),
            abandoned: BTreeMap::new(),
            next_op: 0,
            next_heartbeat: now,
            next_probe: first_probe,
            shutting_down: false,
            out: VecDeque::new(),
            stats: LeaseStats::default(),
        };
        leases.drive(now);
        Ok(leases)
    }

    // ---- getters -------------------------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// The shards this worker streams now, in order.
    pub fn owned(&self) -> Vec<Shard> {
        self.shards
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, ShardState::Owned(_)))
            .map(|(i, _)| i as Shard)
            .collect()
    }

    /// Whether this worker streams `shard` now.
    pub fn owns(&self, shard: Shard) -> bool {
        matches!(self.shards.get(shard as usize), Some(ShardState::Owned(_)))
    }

    /// The live workers as this worker sees them (itself included), sorted by name.
    pub fn live_workers(&self) -> Vec<&str> {
        let mut live: Vec<&str> = self
            .seen
            .iter()
            .filter(|(_, at)| **at + self.config.heartbeat_ttl > self.now)
            .map(|(name, _)| name.as_str())
            .collect();
        live.push(&self.config.worker);
        live.sort_unstable();
        live.dedup();
        live
    }

    /// How many shards this worker aims to hold, given the live workers it sees.
    pub fn target(&self) -> u32 {
        if self.shutting_down {
            return 0;
        }
        let live = self.live_workers();
        let n = live.len() as u32;
        let rank = live
            .iter()
            .position(|w| *w == self.config.worker)
            .unwrap_or(0) as u32; // Always present: live_workers pushes this worker.
        self.config.shards / n + u32::from(rank < self.config.shards % n)
    }

    /// Counters of what happened so far.
    pub fn stats(&self) -> LeaseStats {
        self.stats
    }

    // ---- inputs --------------------------------------------------------------------------

    /// Time passed. Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.drive(now);
    }

    /// The outcome of the operation `id`.
    pub fn handle_kv_result(&mut self, now: Instant, id: OpId, outcome: KvOutcome) {
        self.advance(now);
        match self.pending.remove(&id) {
            Some(pending) => self.settle(pending, id, outcome),
            None => {
                // A late answer to an operation given up on: a lease written then is undone, so
                // it does not block the shard until it expires.
                if let (Some((shard, _)), KvOutcome::Written(revision)) =
                    (self.abandoned.remove(&id), outcome)
                {
                    if !self.owns(shard) {
                        self.delete_lease(shard, revision);
                    }
                }
            }
        }
        self.drive(now);
    }

    /// The lease key of `shard` was seen (in a watch of the leases bucket) written by `holder`
    /// at `revision`, or deleted or purged (`holder` is `None`). Keys that expire are not seen:
    /// that is why a lease seen written is presumed held for one TTL.
    pub fn handle_lease_seen(
        &mut self,
        now: Instant,
        shard: Shard,
        holder: Option<&str>,
        revision: u64,
    ) {
        self.advance(now);
        let ttl = self.config.ttl;
        let me = self.config.worker.as_str();
        let Some(state) = self.shards.get_mut(shard as usize) else {
            return;
        };
        match state {
            ShardState::Owned(owned) => {
                let ours = holder == Some(me);
                if revision > owned.revision && !ours {
                    // Someone wrote or deleted our lease after we did: it is not ours any more.
                    *state = ShardState::Unowned {
                        probe_after: now + ttl,
                        holder: holder.map(str::to_owned),
                        revision,
                    };
                    self.stats.lost += 1;
                    self.out.push_back(Action::Stop {
                        shard,
                        reason: StopReason::TakenOver,
                    });
                }
            }
            ShardState::Unowned {
                probe_after,
                holder: seen_holder,
                revision: seen_revision,
            } => {
                if revision >= *seen_revision {
                    *seen_revision = revision;
                    *seen_holder = holder.map(str::to_owned);
                    *probe_after = match holder {
                        Some(_) => now + ttl,
                        None => now,
                    };
                }
            }
            // The create's outcome will tell.
            ShardState::Taking { .. } => {}
        }
        self.drive(now);
    }

    /// Another worker's heartbeat was seen. (This worker's own is ignored: it always counts
    /// itself.)
    pub fn handle_heartbeat_seen(&mut self, now: Instant, worker: &str) {
        self.advance(now);
        if worker != self.config.worker {
            self.seen.insert(worker.to_owned(), now);
        }
        self.drive(now);
    }

    /// Another worker's heartbeat was deleted: it left.
    pub fn handle_heartbeat_gone(&mut self, now: Instant, worker: &str) {
        self.advance(now);
        self.seen.remove(worker);
        self.drive(now);
    }

    // ---- commands ------------------------------------------------------------------------

    /// Stops every shard at once and gives every lease back; [`Action::Finished`] comes once the
    /// deletes are answered (or timed out).
    pub fn shutdown(&mut self, now: Instant) {
        self.advance(now);
        if !self.shutting_down {
            self.shutting_down = true;
            for shard in 0..self.config.shards {
                self.stop_and_release(shard, StopReason::Shutdown);
            }
            let id = self.op_id();
            self.track(id, PendingKind::Heartbeat);
            self.out.push_back(Action::Kv(KvOp::DeleteHeartbeat { id }));
        }
        self.drive(now);
    }

    // ---- output --------------------------------------------------------------------------

    /// The next thing to do. Drain until [`Action::Wait`] or [`Action::Finished`].
    pub fn poll_action(&mut self) -> Action {
        if let Some(action) = self.out.pop_front() {
            return action;
        }
        if self.shutting_down && self.pending.is_empty() {
            return Action::Finished;
        }
        Action::Wait(self.next_deadline())
    }

    // ---- internals -----------------------------------------------------------------------

    fn advance(&mut self, now: Instant) {
        // Time never goes back, even if the caller's does.
        self.now = self.now.max(now);
    }

    fn op_id(&mut self) -> OpId {
        self.next_op += 1;
        OpId(self.next_op)
    }

    fn track(&mut self, id: OpId, kind: PendingKind) {
        self.pending.insert(
            id,
            Pending {
                kind,
                sent: self.now,
            },
        );
    }

    fn delete_lease(&mut self, shard: Shard, revision: u64) {
        let id = self.op_id();
        self.track(id, PendingKind::Delete);
        self.out.push_back(Action::Kv(KvOp::DeleteLease {
            id,
            shard,
            revision,
        }));
    }

    /// Stops `shard` if owned and deletes its lease.
    fn stop_and_release(&mut self, shard: Shard, reason: StopReason) {
        let probe_after = self.now + self.config.ttl;
        let Some(state) = self.shards.get_mut(shard as usize) else {
            return;
        };
        if let ShardState::Owned(owned) = state {
            let revision = owned.revision;
            *state = ShardState::Unowned {
                probe_after,
                holder: None,
                revision,
            };
            self.out.push_back(Action::Stop { shard, reason });
            self.delete_lease(shard, revision);
        }
    }

    fn lose(&mut self, shard: Shard, reason: StopReason) {
        let probe_after = self.now + self.config.probe_every;
        let Some(state) = self.shards.get_mut(shard as usize) else {
            return;
        };
        if let ShardState::Owned(owned) = state {
            let revision = owned.revision;
            *state = ShardState::Unowned {
                probe_after,
                holder: None,
                revision,
            };
            self.stats.lost += 1;
            self.out.push_back(Action::Stop { shard, reason });
        }
    }

    fn settle(&mut self, pending: Pending, id: OpId, outcome: KvOutcome) {
        let now = self.now;
        let (ttl, margin) = (self.config.ttl, self.config.margin);
        let (renew_every, probe_every) = (self.config.renew_every, self.config.probe_every);
        match pending.kind {
            PendingKind::Create(shard) => {
                let state = &mut self.shards[shard as usize];
                if !matches!(state, ShardState::Taking { op } if *op == id) {
                    return;
                }
                match outcome {
                    KvOutcome::Written(revision)
                        if !self.shutting_down && now < pending.sent + ttl - margin =>
                    {
                        *state = ShardState::Owned(Owned {
                            revision,
                            confirmed_sent: pending.sent,
                            taken_at: now,
                            next_renew: pending.sent + renew_every,
                            renewing: None,
                        });
                        self.stats.taken += 1;
                        self.out.push_back(Action::Start(shard));
                    }
                    KvOutcome::Written(revision) => {
                        // Too late to stream (or shutting down): give it straight back.
                        *state = ShardState::Unowned {
                            probe_after: now + probe_every,
                            holder: None,
                            revision,
                        };
                        self.delete_lease(shard, revision);
                    }
                    KvOutcome::Conflict | KvOutcome::Deleted | KvOutcome::Failed => {
                        if outcome == KvOutcome::Conflict {
                            // Someone else took it, most likely in the same round: look again
                            // at once, for another free shard, instead of a whole period later.
                            self.stats.create_conflicts += 1;
                            self.next_probe = self.next_probe.min(now);
                        }
                        *state = ShardState::Unowned {
                            probe_after: now + probe_every,
                            holder: None,
                            revision: 0,
                        };
                    }
                }
            }
            PendingKind::Update(shard) => {
                let ShardState::Owned(owned) = &mut self.shards[shard as usize] else {
                    return;
                };
                if owned.renewing != Some(id) {
                    return;
                }
                owned.renewing = None;
                match outcome {
                    KvOutcome::Written(revision) => {
                        owned.revision = revision;
                        owned.confirmed_sent = owned.confirmed_sent.max(pending.sent);
                    }
                    KvOutcome::Conflict | KvOutcome::Deleted | KvOutcome::Failed => {
                        self.lose(shard, StopReason::RenewalFailed);
                    }
                }
            }
            PendingKind::Delete | PendingKind::Heartbeat => {}
        }
    }

    /// Runs every timer that is due, then plans: renewals, heartbeats, rebalancing.
    fn drive(&mut self, now: Instant) {
        self.advance(now);
        let now = self.now;
        let cfg = self.config.clone();

        // Operations unanswered for too long count as failed.
        let expired: Vec<(OpId, Pending)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.sent + cfg.op_timeout <= now)
            .map(|(id, p)| (*id, *p))
            .collect();
        for (id, pending) in expired {
            self.pending.remove(&id);
            self.stats.timed_out += 1;
            if let PendingKind::Create(shard) | PendingKind::Update(shard) = pending.kind {
                self.abandoned.insert(id, (shard, now));
            }
            self.settle(pending, id, KvOutcome::Failed);
        }
        self.abandoned.retain(|_, (_, at)| *at + cfg.ttl > now);

        // Deadlines first, then renewals.
        for shard in 0..cfg.shards {
            let ShardState::Owned(owned) = &self.shards[shard as usize] else {
                continue;
            };
            if now >= owned.confirmed_sent + cfg.ttl - cfg.margin {
                self.lose(shard, StopReason::DeadlinePassed);
                continue;
            }
            if owned.renewing.is_none() && now >= owned.next_renew && !self.shutting_down {
                let revision = owned.revision;
                let id = self.op_id();
                self.track(id, PendingKind::Update(shard));
                if let ShardState::Owned(owned) = &mut self.shards[shard as usize] {
                    owned.renewing = Some(id);
                    owned.next_renew = now + cfg.renew_every;
                }
                self.out.push_back(Action::Kv(KvOp::UpdateLease {
                    id,
                    shard,
                    revision,
                }));
            }
        }
        if self.shutting_down {
            return;
        }

        if now >= self.next_heartbeat {
            let id = self.op_id();
            self.track(id, PendingKind::Heartbeat);
            self.out.push_back(Action::Kv(KvOp::PutHeartbeat { id }));
            self.next_heartbeat = now + cfg.heartbeat_every;
        }

        // Rebalance: give up surplus at once, most recently taken first.
        let target = self.target() as usize;
        let mut owned: Vec<(Instant, Shard)> = self
            .shards
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                ShardState::Owned(o) => Some((o.taken_at, i as Shard)),
                _ => None,
            })
            .collect();
        let taking = self
            .shards
            .iter()
            .filter(|s| matches!(s, ShardState::Taking { .. }))
            .count();
        if owned.len() > target {
            owned.sort_unstable_by(|a, b| b.cmp(a));
            let surplus = owned.len() - target;
            for &(_, shard) in owned.iter().take(surplus) {
                self.stats.released += 1;
                self.stop_and_release(shard, StopReason::Released);
            }
            return;
        }

        // Take free shards up to the target, at jittered moments, in a random order.
        let deficit = target.saturating_sub(owned.len() + taking);
        if deficit == 0 || now < self.next_probe {
            return;
        }
        self.next_probe = now + cfg.probe_every + random_upto(&mut self.rng, cfg.jitter);
        let mut free: Vec<Shard> = self
            .shards
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, ShardState::Unowned { probe_after, .. } if *probe_after <= now))
            .map(|(i, _)| i as Shard)
            .collect();
        // A partial Fisher-Yates shuffle: the first `deficit` places get random free shards.
        let take = deficit.min(free.len());
        for i in 0..take {
            let j = self.rng.gen_range(i..free.len());
            free.swap(i, j);
        }
        for &shard in &free[..take] {
            let id = self.op_id();
            self.track(id, PendingKind::Create(shard));
            self.shards[shard as usize] = ShardState::Taking { op: id };
            self.out
                .push_back(Action::Kv(KvOp::CreateLease { id, shard }));
        }
    }

    fn next_deadline(&self) -> Instant {
        let cfg = &self.config;
        let now = self.now;
        // Everything due has been handled by `drive`: only future instants count.
        let mut next = self
            .next_heartbeat
            .max(now + cfg.heartbeat_every.min(cfg.probe_every));
        let mut consider = |at: Instant| {
            if at > now {
                next = next.min(at);
            }
        };
        consider(self.next_heartbeat);
        for pending in self.pending.values() {
            consider(pending.sent + cfg.op_timeout);
        }
        let under_target = (self.target() as usize) > self.owned().len();
        for state in &self.shards {
            match state {
                ShardState::Owned(owned) => {
                    consider(owned.confirmed_sent + cfg.ttl - cfg.margin);
                    if owned.renewing.is_none() {
                        consider(owned.next_renew);
                    }
                }
                ShardState::Unowned { probe_after, .. } if under_target => {
                    consider((*probe_after).max(self.next_probe));
                }
                _ => {}
            }
        }
        for at in self.seen.values() {
            consider(*at + cfg.heartbeat_ttl);
        }
        next
    }
}

fn random_upto(rng: &mut ChaCha8Rng, max: Duration) -> Duration {
    if max.is_zero() {
        Duration::ZERO
    } else {
        Duration::from_nanos(rng.gen_range(0..max.as_nanos().min(u128::from(u64::MAX)) as u64))
    }
}
