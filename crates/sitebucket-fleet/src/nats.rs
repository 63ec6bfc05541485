//! The NATS driver: a [`Worker`] runs the lease machine against real JetStream key-value
//! buckets on tokio, watches the follow set, and tells a [`Sink`] which users to stream.
//!
//! Three buckets (names in [`FleetConfig`]):
//! - the **follow set**, key = user id in decimal, value free (a note);
//! - the **leases**, key = shard number in decimal, value = the holder's name, `max_age` = the
//!   lease TTL, history 1;
//! - the **heartbeats**, key = worker name, value = what the worker holds (for `fleet status`),
//!   `max_age` = the heartbeat TTL.
//!
//! The driver makes no lease decision: every `if` on lease state lives in [`Leases`]. It reads
//! the clock, performs the operations (each under the operation timeout), and feeds back their
//! outcomes and what the watches see.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, Operation, Store};
use async_nats::jetstream::{self, stream::StorageType};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::lease::{
    shard_of, Action, ConfigError, KvOp, KvOutcome, LeaseConfig, Leases, OpId, Shard, StopReason,
};

/// The pause before a renewal or heartbeat that met a transient error is sent again (within
/// the operation's timeout).
const RETRY_TRANSIENT: Duration = Duration::from_millis(100);

/// How a [`Worker`] reaches its buckets, and how it holds leases.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// The lease timings, the shard count and this worker's name.
    pub lease: LeaseConfig,
    /// The follow set bucket.
    pub follows_bucket: String,
    /// The leases bucket (its `max_age` is the lease TTL).
    pub leases_bucket: String,
    /// The heartbeats bucket (its `max_age` is the heartbeat TTL).
    pub heartbeats_bucket: String,
    /// Replicas of each bucket when this worker creates it (1 on a single server, 3 on a
    /// three-node cluster).
    pub replicas: usize,
}

impl FleetConfig {
    /// The default buckets (`sitebucket-follows`, `sitebucket-leases`, `sitebucket-workers`),
    /// one replica, and [`LeaseConfig::new`]'s timings for this TTL.
    pub fn new(worker: impl Into<String>, ttl: Duration) -> Self {
        FleetConfig {
            lease: LeaseConfig::new(worker, ttl),
            follows_bucket: "sitebucket-follows".into(),
            leases_bucket: "sitebucket-leases".into(),
            heartbeats_bucket: "sitebucket-workers".into(),
            replicas: 1,
        }
    }
}

/// A change in which users a worker streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assignment {
    /// The worker now holds `shard`: start streaming these users (the shard's part of the
    /// follow set as known now; later changes come as `Follow` and `Unfollow`).
    Start {
        /// The shard.
        shard: Shard,
        /// Its users, sorted.
        users: Vec<u64>,
    },
    /// Stop streaming every user of `shard` now.
    Stop {
        /// The shard.
        shard: Shard,
        /// Why.
        reason: StopReason,
    },
    /// A user of a held shard joined the follow set: start streaming it.
    Follow {
        /// The user's shard.
        shard: Shard,
        /// The user id.
        user: u64,
    },
    /// A user of a held shard left the follow set: stop streaming it.
    Unfollow {
        /// The user's shard.
        shard: Shard,
        /// The user id.
        user: u64,
    },
}

/// Where a [`Worker`] sends its [`Assignment`]s. Called from the worker's task: it must not
/// block (hand the assignment to a channel, or apply it to a `Monitor` that does not block).
pub trait Sink: Send + 'static {
    /// Applies one change, in order.
    fn assign(&mut self, assignment: Assignment);
}

impl<F: FnMut(Assignment) + Send + 'static> Sink for F {
    fn assign(&mut self, assignment: Assignment) {
        self(assignment)
    }
}

/// What went wrong starting or stopping a [`Worker`], or managing the follow set.
#[derive(Debug)]
pub enum FleetError {
    /// The lease timings cannot keep a lease.
    Config(ConfigError),
    /// A bucket could not be opened or created.
    Bucket {
        /// The bucket's name.
        bucket: String,
        /// What the engine said.
        error: async_nats::Error,
    },
    /// A watch could not be opened.
    Watch {
        /// The bucket's name.
        bucket: String,
        /// What the engine said.
        error: async_nats::Error,
    },
    /// A follow-set operation failed.
    Follows(async_nats::Error),
    /// Reading a bucket failed.
    Read(async_nats::Error),
    /// The worker's task ended abnormally (it panicked or was killed).
    Task(String),
    /// The output stream could not be opened or created.
    Output(async_nats::Error),
    /// The streams could not be started (a thread, a socket).
    Streams(String),
    /// A bucket does not exist (no worker has created it yet).
    Missing(String),
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetError::Config(error) => write!(f, "{error}"),
            FleetError::Bucket { bucket, error } => {
                write!(
                    f,
                    "cannot open or create the key-value bucket {bucket:?}: {error}"
                )
            }
            FleetError::Watch { bucket, error } => {
                write!(f, "cannot watch the key-value bucket {bucket:?}: {error}")
            }
            FleetError::Follows(error) => write!(f, "follow set: {error}"),
            FleetError::Read(error) => write!(f, "cannot read the fleet's buckets: {error}"),
            FleetError::Task(what) => write!(f, "the worker's task ended abnormally: {what}"),
            FleetError::Output(error) => {
                write!(f, "cannot open or create the output stream: {error}")
            }
            FleetError::Streams(what) => write!(f, "cannot run the streams: {what}"),
            FleetError::Missing(bucket) => write!(
                f,
                "the key-value bucket {bucket:?} does not exist: no worker (or `follow add`) has \
                 created it yet"
            ),
        }
    }
}

impl std::error::Error for FleetError {}

/// The three buckets of a fleet.
#[derive(Clone, Debug)]
pub struct Buckets {
    /// The follow set.
    pub follows: Store,
    /// The shard leases.
    pub leases: Store,
    /// The worker heartbeats.
    pub heartbeats: Store,
}

impl Buckets {
    /// Opens the fleet's buckets, creating any that is missing with the configured `max_age`s.
    pub async fn open(js: &jetstream::Context, config: &FleetConfig) -> Result<Self, FleetError> {
        let lease = &config.lease;
        Ok(Buckets {
            follows: open_bucket(js, &config.follows_bucket, Duration::ZERO, config.replicas)
                .await?,
            leases: open_bucket(js, &config.leases_bucket, lease.ttl, config.replicas).await?,
            heartbeats: open_bucket(
                js,
                &config.heartbeats_bucket,
                lease.heartbeat_ttl,
                config.replicas,
            )
            .await?,
        })
    }
}

impl Buckets {
    /// Opens the fleet's buckets without creating any: for readers such as `fleet status`.
    /// A missing bucket is [`FleetError::Missing`].
    pub async fn open_existing(
        js: &jetstream::Context,
        config: &FleetConfig,
    ) -> Result<Self, FleetError> {
        let get = |bucket: String| async move {
            match js.get_stream(format!("KV_{bucket}")).await {
                Err(e)
                    if matches!(
                        e.kind(),
                        jetstream::context::GetStreamErrorKind::JetStream(ref js_error)
                            if js_error.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                    ) =>
                {
                    Err(FleetError::Missing(bucket))
                }
                Err(error) => Err(FleetError::Bucket {
                    bucket,
                    error: error.into(),
                }),
                Ok(_) => js
                    .get_key_value(&bucket)
                    .await
                    .map_err(|error| FleetError::Bucket {
                        bucket,
                        error: error.into(),
                    }),
            }
        };
        Ok(Buckets {
            follows: get(config.follows_bucket.clone()).await?,
            leases: get(config.leases_bucket.clone()).await?,
            heartbeats: get(config.heartbeats_bucket.clone()).await?,
        })
    }
}

/// Opens the follow set bucket, creating it if missing (for `follow add|remove|list`).
pub async fn open_follows(
    js: &jetstream::Context,
    bucket: &str,
    replicas: usize,
) -> Result<Store, FleetError> {
    open_bucket(js, bucket, Duration::ZERO, replicas).await
}

pub(crate) async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<Store, FleetError> {
    if let Ok(mut stream) = js.get_stream(format!("KV_{bucket}")).await {
        // A bucket whose max_age is not this worker's TTL would let leases live longer (or
        // shorter) than the lease machine assumes: refuse rather than break exclusivity.
        if let Ok(info) = stream.info().await {
            if info.config.max_age != max_age {
                return Err(FleetError::Bucket {
                    bucket: bucket.to_owned(),
                    error: format!(
                        "its max_age is {:?} but this worker expects {max_age:?} (every worker \
                         of a fleet must use the same lease TTL; delete the bucket to change it)",
                        info.config.max_age
                    )
                    .into(),
                });
            }
        }
        if let Ok(store) = js.get_key_value(bucket).await {
            return Ok(store);
        }
    }
    // The stream a key-value bucket is made of, created directly: `create_key_value` first
    // reads the account info, which this client cannot parse from NATS 2.9 servers (it expects
    // the `reserved_memory` and `reserved_storage` fields of later servers). The settings are
    // the key-value conventions: one subject space, the last value per key, rollups allowed,
    // deletes as markers, direct gets.
    let created = js
        .create_stream(jetstream::stream::Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_age,
            storage: StorageType::File,
            num_replicas: replicas,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await;
    // Created now, or by another worker meanwhile.
    js.get_key_value(bucket)
        .await
        .map_err(|get_error| FleetError::Bucket {
            bucket: bucket.to_owned(),
            error: match created {
                Err(error) => error.into(),
                Ok(_) => get_error.into(),
            },
        })
}

/// The user a follow-set key names: its decimal id, written as [`FollowSet::add`] writes it
/// (no sign, no leading zeros, not 0). `"007"` is not user 7: deleting it must not unfollow
/// the user `"7"` names.
pub(crate) fn user_of_key(key: &str) -> Option<u64> {
    key.parse::<u64>()
        .ok()
        .filter(|user| *user != 0 && key == user.to_string())
}

/// What a worker writes as its heartbeat: `shards=N`.
pub(crate) fn heartbeat_value(shards: usize) -> Bytes {
    Bytes::from(format!("shards={shards}"))
}

/// Whether a heartbeat bucket's value is one a worker writes ([`heartbeat_value`]).
pub(crate) fn is_heartbeat(value: &[u8]) -> bool {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.strip_prefix("shards="))
        .is_some_and(|n| n.parse::<u32>().is_ok())
}

/// The follow set: which users the fleet streams.
#[derive(Clone, Debug)]
pub struct FollowSet {
    store: Store,
}

impl FollowSet {
    /// The follow set in this bucket.
    pub fn new(store: Store) -> Self {
        FollowSet { store }
    }

    /// Adds a user (a no-op if present).
    pub async fn add(&self, user: u64) -> Result<(), FleetError> {
        self.store
            .put(user.to_string(), Bytes::new())
            .await
            .map(drop)
            .map_err(|e| FleetError::Follows(e.into()))
    }

    /// Removes a user (a no-op if absent).
    pub async fn remove(&self, user: u64) -> Result<(), FleetError> {
        self.store
            .delete(user.to_string())
            .await
            .map_err(|e| FleetError::Follows(e.into()))
    }

    /// Every user, sorted. Keys that are not user ids are skipped (and logged).
    pub async fn list(&self) -> Result<Vec<u64>, FleetError> {
        Ok(self.list_counting().await?.0)
    }

    /// Every user, sorted, and how many keys were skipped for not being user ids.
    pub(crate) async fn list_counting(&self) -> Result<(Vec<u64>, usize), FleetError> {
        let mut keys = self
            .store
            .keys()
            .await
            .map_err(|e| FleetError::Follows(e.into()))?;
        let mut users = Vec::new();
        let mut foreign = 0;
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| FleetError::Follows(e.into()))?;
            match user_of_key(&key) {
                Some(user) => users.push(user),
                None => {
                    foreign += 1;
                    tracing::warn!("skipping the follow-set key {key:?}: not a user id");
                }
            }
        }
        users.sort_unstable();
        Ok((users, foreign))
    }
}

/// One worker of a fleet, running on the current tokio runtime.
#[derive(Debug)]
pub struct Worker {
    task: JoinHandle<()>,
    watchers: Vec<JoinHandle<()>>,
    shutdown: Option<oneshot::Sender<()>>,
}

/// What a watch saw, forwarded to the worker's task.
enum Seen {
    Lease(kv::Entry),
    Heartbeat(kv::Entry),
    Follow(kv::Entry),
}

type OpFuture = Pin<Box<dyn Future<Output = (OpId, KvOutcome)> + Send>>;

impl Worker {
    /// Opens the buckets and starts the worker: it writes its heartbeat, watches the three
    /// buckets, takes its share of the shards, and sends `sink` what to stream.
    pub async fn start(
        client: async_nats::Client,
        config: FleetConfig,
        sink: impl Sink,
    ) -> Result<Self, FleetError> {
        config.lease.validate().map_err(FleetError::Config)?;
        let js = jetstream::new(client);
        let buckets = Buckets::open(&js, &config).await?;
        let (seen_tx, seen_rx) = mpsc::channel(1024);
        let watchers = vec![
            spawn_watch(buckets.leases.clone(), seen_tx.clone(), Seen::Lease),
            spawn_watch(buckets.heartbeats.clone(), seen_tx.clone(), Seen::Heartbeat),
            spawn_watch(buckets.follows.clone(), seen_tx, Seen::Follow),
        ];
        let leases =
            Leases::new(config.lease.clone(), Instant::now()).map_err(FleetError::Config)?;
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let state = Driver {
            leases,
            buckets,
            sink,
            follows: BTreeMap::new(),
            shards: config.lease.shards,
            name: Bytes::from(config.lease.worker.clone()),
            op_timeout: config.lease.op_timeout,
        };
        let task = tokio::spawn(state.run(seen_rx, shutdown_rx));
        Ok(Worker {
            task,
            watchers,
            shutdown: Some(shutdown_tx),
        })
    }

    /// Stops every shard, gives every lease back, deletes the heartbeat, and waits for that to
    /// be done (at most about one operation timeout).
    pub async fn shutdown(mut self) -> Result<(), FleetError> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let result = (&mut self.task).await;
        for watcher in &self.watchers {
            watcher.abort();
        }
        result.map_err(|e| FleetError::Task(e.to_string()))
    }

    /// Stops the worker at once without giving anything back, as `kill -9` would: its leases
    /// expire after their TTL and other workers take them. Dropping a `Worker` does the same.
    pub fn kill(self) {
        drop(self);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.task.abort();
        for watcher in &self.watchers {
            watcher.abort();
        }
    }
}

/// Watches a whole bucket (current values first, then changes) and forwards what it sees;
/// reopens the watch if it ends or fails.
fn spawn_watch(
    store: Store,
    tx: mpsc::Sender<Seen>,
    wrap: fn(kv::Entry) -> Seen,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match store.watch_with_history(">").await {
                Ok(mut watch) => {
                    while let Some(entry) = watch.next().await {
                        match entry {
                            Ok(entry) => {
                                if tx.send(wrap(entry)).await.is_err() {
                                    return;
                                }
                            }
                            Err(error) => {
                                tracing::warn!(bucket = store.name, %error, "watch failed");
                                break;
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(bucket = store.name, %error, "cannot open watch"),
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

struct Driver<S> {
    leases: Leases,
    buckets: Buckets,
    sink: S,
    /// The follow set by shard.
    follows: BTreeMap<Shard, BTreeSet<u64>>,
    shards: u32,
    name: Bytes,
    op_timeout: Duration,
}

impl<S: Sink> Driver<S> {
    async fn run(mut self, mut seen: mpsc::Receiver<Seen>, shutdown: oneshot::Receiver<()>) {
        let mut ops: FuturesUnordered<OpFuture> = FuturesUnordered::new();
        let mut shutdown = shutdown;
        let mut asked = false;
        loop {
            let deadline = loop {
                match self.leases.poll_action() {
                    Action::Kv(op) => ops.push(self.perform(op)),
                    Action::Start(shard) => {
                        let users = self
                            .follows
                            .get(&shard)
                            .map(|u| u.iter().copied().collect())
                            .unwrap_or_default();
                        self.sink.assign(Assignment::Start { shard, users });
                    }
                    Action::Stop { shard, reason } => {
                        self.sink.assign(Assignment::Stop { shard, reason })
                    }
                    Action::Wait(at) => break at,
                    Action::Finished => return,
                }
            };
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
            tokio::select! {
                () = sleep => self.leases.handle_timeout(Instant::now()),
                Some((id, outcome)) = ops.next(), if !ops.is_empty() => {
                    self.leases.handle_kv_result(Instant::now(), id, outcome);
                }
                Some(seen) = seen.recv() => self.seen(seen),
                asked_now = &mut shutdown, if !asked => {
                    asked = true;
                    if asked_now.is_ok() {
                        self.leases.shutdown(Instant::now());
                    }
                }
            }
        }
    }

    fn seen(&mut self, seen: Seen) {
        let now = Instant::now();
        match seen {
            Seen::Lease(entry) => {
                let shard = match entry.key.parse::<Shard>() {
                    Ok(shard) if shard < self.shards && entry.key == shard.to_string() => shard,
                    _ => {
                        tracing::warn!(
                            "ignoring the key {:?} of the leases bucket {:?}: not a shard                              number of this fleet (0 to {})",
                            entry.key,
                            entry.bucket,
                            self.shards - 1
                        );
                        return;
                    }
                };
                let holder = match entry.operation {
                    Operation::Put => Some(match std::str::from_utf8(&entry.value) {
                        Ok(holder) => holder.to_owned(),
                        // Not a worker's name: still a lease someone wrote, which holds the
                        // shard until it expires.
                        Err(_) => {
                            tracing::warn!(
                                "the lease of shard {shard} (key {:?} of the bucket {:?}) holds                                  {} bytes that are not a worker name (not UTF-8): the shard                                  counts as held by someone else until that value expires",
                                entry.key,
                                entry.bucket,
                                entry.value.len()
                            );
                            String::from_utf8_lossy(&entry.value).into_owned()
                        }
                    }),
                    Operation::Delete | Operation::Purge => None,
                };
                self.leases
                    .handle_lease_seen(now, shard, holder.as_deref(), entry.revision);
            }
            Seen::Heartbeat(entry) => match entry.operation {
                Operation::Put if is_heartbeat(&entry.value) => {
                    self.leases.handle_heartbeat_seen(now, &entry.key)
                }
                // A value no worker writes: counting it as a live worker would shrink every
                // worker's fair share and make them give up shards for nobody.
                Operation::Put => tracing::warn!(
                    "ignoring the key {:?} of the heartbeats bucket {:?}: its value ({}                      bytes, {:?}…) is not a worker's heartbeat (shards=N)",
                    entry.key,
                    entry.bucket,
                    entry.value.len(),
                    String::from_utf8_lossy(&entry.value[..entry.value.len().min(32)])
                ),
                Operation::Delete | Operation::Purge => {
                    self.leases.handle_heartbeat_gone(now, &entry.key)
                }
            },
            Seen::Follow(entry) => {
                let Some(user) = user_of_key(&entry.key) else {
                    tracing::warn!(
                        "ignoring the key {:?} of the follow-set bucket {:?}: not a user id (a                          decimal number from 1 to 2^64-1, without sign or leading zeros)",
                        entry.key,
                        entry.bucket
                    );
                    return;
                };
                let shard = shard_of(user, self.shards);
                let users = self.follows.entry(shard).or_default();
                let changed = match entry.operation {
                    Operation::Put => users.insert(user),
                    Operation::Delete | Operation::Purge => users.remove(&user),
                };
                if changed && self.leases.owns(shard) {
                    self.sink.assign(match entry.operation {
                        Operation::Put => Assignment::Follow { shard, user },
                        Operation::Delete | Operation::Purge => {
                            Assignment::Unfollow { shard, user }
                        }
                    });
                }
            }
        }
    }

    /// The future performing one operation, under the operation timeout.
    fn perform(&self, op: KvOp) -> OpFuture {
        let leases = self.buckets.leases.clone();
        let heartbeats = self.buckets.heartbeats.clone();
        let name = self.name.clone();
        let held = heartbeat_value(self.leases.owned().len());
        let timeout = self.op_timeout;
        Box::pin(async move {
            let id = op.id();
            let work = async {
                match op {
                    KvOp::CreateLease { shard, .. } => {
                        match leases.create(shard.to_string(), name.clone()).await {
                            Ok(revision) => KvOutcome::Written(revision),
                            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                                KvOutcome::Conflict
                            }
                            // The create may have been applied with its answer lost: then
                            // the lease is ours, and left alone it would keep the shard
                            // dark until it expired.
                            Err(_) => match written_by(&leases, &shard.to_string(), &name).await {
                                Some(revision) => KvOutcome::Written(revision),
                                None => KvOutcome::Failed,
                            },
                        }
                    }
                    // A renewal that meets a transient error (NATS reconnecting, JetStream
                    // not ready yet after a restart) is sent again until the operation's
                    // timeout: the machine hears one outcome, in time. A try whose answer
                    // was lost may still have been applied (the client sends what it held
                    // once it reconnects), so a conflict after such a try is checked: if
                    // the lease now holds this worker's name, that write was ours and the
                    // renewal succeeded; otherwise it is a conflict and the shard stops.
                    KvOp::UpdateLease {
                        shard, revision, ..
                    } => {
                        let key = shard.to_string();
                        let mut unanswered = false;
                        loop {
                            match leases.update(key.clone(), name.clone(), revision).await {
                                Ok(revision) => break KvOutcome::Written(revision),
                                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                                    break match unanswered {
                                        true => written_by(&leases, &key, &name)
                                            .await
                                            .map_or(KvOutcome::Conflict, KvOutcome::Written),
                                        false => KvOutcome::Conflict,
                                    };
                                }
                                Err(_) => {
                                    unanswered = true;
                                    tokio::time::sleep(RETRY_TRANSIENT).await;
                                }
                            }
                        }
                    }
                    KvOp::DeleteLease {
                        shard, revision, ..
                    } => match leases
                        .delete_expect_revision(shard.to_string(), Some(revision))
                        .await
                    {
                        Ok(()) => KvOutcome::Deleted,
                        Err(_) => KvOutcome::Failed,
                    },
                    KvOp::PutHeartbeat { .. } => {
                        let key = String::from_utf8_lossy(&name).into_owned();
                        loop {
                            match heartbeats.put(key.clone(), held.clone()).await {
                                Ok(revision) => break KvOutcome::Written(revision),
                                Err(_) => tokio::time::sleep(RETRY_TRANSIENT).await,
                            }
                        }
                    }
                    KvOp::DeleteHeartbeat { .. } => {
                        let key = String::from_utf8_lossy(&name).into_owned();
                        match heartbeats.delete(key).await {
                            Ok(()) => KvOutcome::Deleted,
                            Err(_) => KvOutcome::Failed,
                        }
                    }
                }
            };
            let outcome = tokio::time::timeout(timeout, work)
                .await
                .unwrap_or(KvOutcome::Failed);
            (id, outcome)
        })
    }
}

/// The revision of `key` when its current value is `name`: the last write to a lease was this
/// worker's own (no other worker writes its name), as when a write whose answer was lost had
/// been applied. `None` when another holds it, it is gone, or it cannot be read in time (the
/// caller's operation timeout bounds the retries).
pub(crate) async fn written_by(store: &Store, key: &str, name: &Bytes) -> Option<u64> {
    loop {
        match store.entry(key).await {
            Ok(Some(entry)) => {
                return (entry.operation == Operation::Put && entry.value == *name)
                    .then_some(entry.revision)
            }
            Ok(None) => return None,
            Err(_) => tokio::time::sleep(RETRY_TRANSIENT).await,
        }
    }
}

/// Parses a list of NATS servers, comma-separated (`nats://10.0.0.1:4222,nats://10.0.0.2:4222`),
/// as the client takes them: it connects to one (picked at random) and, when that one fails,
/// reconnects to another of the list (or one the cluster announced since). Each item is a
/// `nats://` (or `tls://`) URL or a bare `HOST:PORT`; spaces around commas are ignored. An
/// empty list, an empty item or an item that is not a URL is an error naming it.
pub fn parse_servers(list: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    let mut servers = Vec::new();
    for item in list.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(format!(
                "{list:?} has an empty server: give URLs separated by commas, like \
                 nats://127.0.0.1:4222,nats://127.0.0.1:4223"
            ));
        }
        let server = item
            .parse::<async_nats::ServerAddr>()
            .map_err(|e| format!("{item:?} is not a NATS server URL: {e}"))?;
        servers.push(server);
    }
    Ok(servers)
}

#[cfg(test)]
mod input_tests {
    use super::{heartbeat_value, is_heartbeat, parse_servers, user_of_key};

    #[test]
    fn follow_keys_are_canonical_user_ids() {
        assert_eq!(user_of_key("7"), Some(7));
        assert_eq!(user_of_key("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "0",
            "007",
            "+7",
            "-7",
            "7 ",
            "1.5",
            "abc",
            "18446744073709551616",
        ] {
            assert_eq!(user_of_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn heartbeats_are_what_workers_write() {
        assert!(is_heartbeat(&heartbeat_value(0)));
        assert!(is_heartbeat(&heartbeat_value(64)));
        for bad in [
            &b""[..],
            b"shards=",
            b"shards=x",
            b"{\"shards\":3}",
            b"\xff\xfe",
            b"garbage",
        ] {
            assert!(!is_heartbeat(bad), "{bad:?}");
        }
    }

    #[test]
    fn one_or_several_servers_parse_and_bad_ones_are_named() {
        let one = parse_servers("nats://127.0.0.1:4222").expect("one");
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].host(), one[0].port()), ("127.0.0.1", 4222));
        let three =
            parse_servers("nats://127.0.0.1:1, nats://127.0.0.1:2,127.0.0.1:3").expect("three");
        let ports: Vec<u16> = three.iter().map(|s| s.port()).collect();
        assert_eq!(ports, [1, 2, 3]);
        for (bad, says) in [
            ("", "empty server"),
            ("nats://a:1,", "empty server"),
            ("nats://a:1,,nats://b:2", "empty server"),
            ("http://a:1", "\"http://a:1\" is not a NATS server URL"),
            ("nats://a:notaport", "is not a NATS server URL"),
        ] {
            let error = parse_servers(bad).expect_err(bad);
            assert!(error.contains(says), "{bad:?}: {error}");
        }
    }
}

/// A lease write whose answer was lost, on a real `nats-server` (Debian's; `.ci/run` installs
/// it): the retry that conflicts with it must find that the write was this worker's own.
#[cfg(test)]
mod lost_answer_tests {
    use std::time::Duration;

    use bytes::Bytes;
    use sitebucket_e2e::nats::NatsServer;

    use super::{open_bucket, written_by};

    #[tokio::test]
    async fn a_conflict_with_our_own_applied_write_is_no_conflict() {
        let server = NatsServer::start();
        let client = async_nats::connect(&server.url).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        let leases = open_bucket(&js, "lost_answer", Duration::from_secs(30), 1)
            .await
            .expect("bucket");
        let (ours, theirs) = (Bytes::from("w1"), Bytes::from("w2"));
        let first = leases.create("3", ours.clone()).await.expect("create");
        // The renewal sent before NATS went away, applied though its answer never came.
        let applied = leases
            .update("3", ours.clone(), first)
            .await
            .expect("update");
        // Its retry (same expected revision) conflicts ...
        let retry = leases.update("3", ours.clone(), first).await;
        assert!(retry.is_err(), "the retry applied too: {retry:?}");
        // ... and the lease shows the applied write was ours, at its revision.
        assert_eq!(written_by(&leases, "3", &ours).await, Some(applied));
        assert_eq!(written_by(&leases, "3", &theirs).await, None);
        // Another worker's write, or no lease at all, is a conflict.
        leases.put("3", theirs.clone()).await.expect("put");
        assert_eq!(written_by(&leases, "3", &ours).await, None);
        leases.delete("3").await.expect("delete");
        assert_eq!(written_by(&leases, "3", &ours).await, None);
        assert_eq!(written_by(&leases, "4", &ours).await, None);
    }
}
