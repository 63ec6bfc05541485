//! [`FleetWorker`]: one whole worker of a fleet — leases, streams and durable output — for
//! the `sitebucket fleet` command or a tokio service of your own.
//!
//! - The lease [`Worker`] takes, renews and gives up shards; what it decides arrives here as
//!   [`Assignment`]s.
//! - A **lease gate** (one flag per shard) is opened when a shard starts and closed the moment
//!   it stops, on the lease task itself: from then on no message of that shard's users is
//!   published, even before their connections are changed.
//! - A [`Monitor`] on the tokio driver streams the users of the held shards. A thread of its
//!   own applies the assignments (the Monitor's calls block on control requests): users of a
//!   new shard or newly followed go onto announced streams through control requests (new
//!   connections only when those are full), users of a lost shard or unfollowed leave through
//!   control requests; streams that carry none of the changed users are not touched. The
//!   thread batches what arrived together and runs the Monitor's health check every second.
//! - Every message goes through the gate to the [`Publisher`] (see [`output`](crate::output)).
//!   Handing a message over never blocks; when NATS falls behind and the publisher holds its
//!   bound, it pauses a [`ReadGate`](sitebucket_thread::ReadGate) that every stream honours:
//!   the streams stop reading from their sockets, while the runtime they share goes on
//!   running their timers and control requests. A stream paused for its stall timeout is
//!   reconnected by the core (its own backoff), and its log line says it was because of the
//!   pause. Leases, heartbeats, publishing and metrics run on the caller's runtime, which
//!   the pause never touches.
//! - [`FleetWorker::shutdown`] stops reading, drains what is held to NATS, then releases the
//!   leases: the order a SIGTERM asks for.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sitebucket_proto::{Config, Parser, StreamError, StreamEvent};
use sitebucket_thread::{Monitor, Observer};
use sitebucket_tokio::TokioDriver;
use tokio::task::JoinHandle;

use crate::lease::{shard_of, Shard, StopReason};
use crate::metrics::{serve_metrics, Metrics};
use crate::nats::{Assignment, FleetConfig, FleetError, Worker};
use crate::output::{for_user, Outgoing, OutputConfig, PublishSender, Publisher};

/// Everything a [`FleetWorker`] needs.
#[derive(Clone, Debug)]
pub struct FleetWorkerConfig {
    /// The buckets, the lease timings, the shard count and the worker's name.
    pub fleet: FleetConfig,
    /// The output stream.
    pub output: OutputConfig,
    /// Every stream's configuration (endpoint, credentials, timeouts); its follow list is
    /// replaced by each stream's share.
    pub template: Config,
    /// How often the Monitor's health check runs (restarts streams that gave up, re-applies
    /// control changes lost in a reconnect).
    pub check_every: Duration,
    /// Where to serve the Prometheus metrics, if anywhere (port 0: any free port, see
    /// [`FleetWorker::metrics_addr`]).
    pub metrics_addr: Option<SocketAddr>,
}

impl FleetWorkerConfig {
    /// A worker named `worker` with lease TTL `ttl` (see [`FleetConfig::new`]), the default
    /// output ([`OutputConfig::new`]), a check every second and no metrics server.
    pub fn new(worker: &str, ttl: Duration, template: Config) -> Self {
        FleetWorkerConfig {
            fleet: FleetConfig::new(worker, ttl),
            output: OutputConfig::new(worker),
            template,
            check_every: Duration::from_secs(1),
            metrics_addr: None,
        }
    }
}

/// One flag per shard: whether its messages may be published.
#[derive(Debug)]
struct Gate(Vec<AtomicBool>);

impl Gate {
    fn is_open(&self, shard: Shard) -> bool {
        self.0
            .get(shard as usize)
            .is_some_and(|open| open.load(Ordering::Acquire))
    }

    fn set(&self, shard: Shard, open: bool) {
        if let Some(flag) = self.0.get(shard as usize) {
            flag.store(open, Ordering::Release);
        }
    }
}

/// What the streams thread is told.
enum Command {
    Assign(Assignment),
    /// Close every stream, then answer.
    Stop(mpsc::Sender<()>),
}

/// A whole fleet worker (see the [module docs](self)), running on the current tokio runtime
/// (leases, publishing, metrics) with its streams on a runtime of their own (the tokio
/// driver's) and one thread applying assignments to them.
///
/// That runtime needs no more than one worker thread: `sitebucket fleet` gives it one. On a
/// multi-thread runtime, the publisher's hand-overs to the NATS client's connection task
/// can bounce between its threads, which costs wake-ups and context switches per message.
///
/// ```no_run
/// use std::time::Duration;
/// use sitebucket_fleet::{FleetWorker, FleetWorkerConfig};
/// use sitebucket_proto::{Config, Credentials};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let credentials = Credentials::new("key", "secret", "token", "token secret");
/// // The follow list is replaced by each stream's share of the held shards.
/// let template = Config::builder([1], credentials).build()?;
/// let client = async_nats::connect("nats://127.0.0.1:4222").await?;
/// let config = FleetWorkerConfig::new("worker-1", Duration::from_secs(10), template);
/// let worker = FleetWorker::start(client, config).await?;
/// // … until your service stops …
/// tokio::time::sleep(Duration::from_secs(3600)).await;
/// // Stop reading, drain what is held to NATS, release the leases.
/// let left = worker.shutdown(Duration::from_secs(30)).await?;
/// assert_eq!(left, 0, "every message read is in the stream");
/// # Ok(())
/// # }
/// ```
pub struct FleetWorker {
    name: String,
    leases: Option<Worker>,
    publisher: Option<Publisher>,
    commands: mpsc::Sender<Command>,
    streams: Option<std::thread::JoinHandle<()>>,
    metrics: Arc<Metrics>,
    metrics_server: Option<(SocketAddr, JoinHandle<()>)>,
}

impl fmt::Debug for FleetWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetWorker")
            .field("name", &self.name)
            .field("metrics_addr", &self.metrics_addr())
            .finish_non_exhaustive()
    }
}

impl FleetWorker {
    /// Opens the buckets and the output stream (creating what is missing), starts the
    /// metrics server if asked, and starts the worker: heartbeats, leases, streams.
    pub async fn start(
        client: async_nats::Client,
        config: FleetWorkerConfig,
    ) -> Result<Self, FleetError> {
        config.fleet.lease.validate().map_err(FleetError::Config)?;
        let name = config.fleet.lease.worker.clone();
        let shards = config.fleet.lease.shards;
        let metrics = Arc::new(Metrics::default());
        let metrics_server = match config.metrics_addr {
            Some(addr) => Some(
                serve_metrics(addr, metrics.clone(), name.clone())
                    .await
                    .map_err(|e| {
                        FleetError::Streams(format!("cannot serve metrics on {addr}: {e}"))
                    })?,
            ),
            None => None,
        };
        let publisher =
            Publisher::start(client.clone(), config.output.clone(), metrics.clone()).await?;
        let gate = Arc::new(Gate((0..shards).map(|_| AtomicBool::new(false)).collect()));

        let monitor = {
            let (gate, sender, metrics) = (gate.clone(), publisher.sender(), metrics.clone());
            let read_gate = publisher.read_gate();
            let prefix: Arc<str> = config.output.subject_prefix.clone().into();
            let monitor = Monitor::new(TokioDriver::new(), config.template.clone(), move || {
                Box::new(GatedPublisher {
                    gate: gate.clone(),
                    sender: sender.clone(),
                    metrics: metrics.clone(),
                    prefix: prefix.clone(),
                    shards,
                })
            });
            monitor.set_read_gate(read_gate);
            monitor
        };
        {
            let metrics = metrics.clone();
            let sender = publisher.sender();
            monitor.set_observers(move |number| {
                Arc::new(StreamLog {
                    number,
                    metrics: metrics.clone(),
                    sender: sender.clone(),
                })
            });
        }
        let (commands, received) = mpsc::channel();
        let streams = {
            let metrics = metrics.clone();
            let check_every = config.check_every;
            std::thread::Builder::new()
                .name("sitebucket-fleet-streams".into())
                .spawn(move || run_streams(monitor, received, check_every, &metrics))
                .map_err(|e| FleetError::Streams(format!("cannot start a thread: {e}")))?
        };
        let sink = {
            let (gate, metrics, commands) = (gate, metrics.clone(), commands.clone());
            move |assignment: Assignment| {
                note_assignment(&gate, &metrics, &assignment);
                let _ = commands.send(Command::Assign(assignment));
            }
        };
        let leases = Worker::start(client, config.fleet, sink).await?;
        tracing::info!("worker {name} started: {shards} shards in the fleet");
        Ok(FleetWorker {
            name,
            leases: Some(leases),
            publisher: Some(publisher),
            commands,
            streams: Some(streams),
            metrics,
            metrics_server,
        })
    }

    /// The worker's counters and gauges.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Where the metrics are served, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(|(addr, _)| *addr)
    }

    /// Stops reading (every stream closed), waits until what was read is acknowledged by
    /// the output stream (at most `drain_timeout`), then gives every lease back and deletes
    /// the heartbeat. Returns how many messages were still unacknowledged when it gave up
    /// waiting (0: every message read is in the stream).
    pub async fn shutdown(mut self, drain_timeout: Duration) -> Result<usize, FleetError> {
        let started = Instant::now();
        let (closed_tx, closed) = mpsc::channel();
        let _ = self.commands.send(Command::Stop(closed_tx));
        // The streams close promptly (a paused reader does not block); the thread that
        // closes them may still be in a control request: wait on a blocking thread, bounded.
        let waited = tokio::task::spawn_blocking(move || closed.recv_timeout(drain_timeout)).await;
        if !matches!(waited, Ok(Ok(()))) {
            tracing::warn!("the streams did not close within {drain_timeout:?}");
        }
        let left = match self.publisher.take() {
            Some(publisher) => {
                let remaining = drain_timeout.saturating_sub(started.elapsed());
                publisher.drain(remaining).await
            }
            None => 0,
        };
        if left == 0 {
            tracing::info!(
                "drained: every message read was acknowledged ({} in all)",
                self.metrics.acked.load(Ordering::Relaxed)
            );
        } else {
            tracing::error!("{left} message(s) read were not acknowledged by NATS in time");
        }
        if let Some(leases) = self.leases.take() {
            leases.shutdown().await?;
        }
        if let Some(streams) = self.streams.take() {
            // It has answered (or is stuck in a control request): do not wait.
            if streams.is_finished() {
                let _ = streams.join();
            }
        }
        Ok(left)
    }
}

impl Drop for FleetWorker {
    fn drop(&mut self) {
        if let Some((_, server)) = &self.metrics_server {
            server.abort();
        }
        // Without a shutdown: as `kill -9` would, leave the leases to expire.
        let (tx, _) = mpsc::channel();
        let _ = self.commands.send(Command::Stop(tx));
    }
}

/// The lease task's side of an assignment: the gate and the gauges, at once.
fn note_assignment(gate: &Gate, metrics: &Metrics, assignment: &Assignment) {
    match assignment {
        Assignment::Start { shard, users } => {
            gate.set(*shard, true);
            metrics.shards_held.fetch_add(1, Ordering::Relaxed);
            tracing::info!("took shard {shard} ({} users)", users.len());
        }
        Assignment::Stop { shard, reason } => {
            gate.set(*shard, false);
            let _ = metrics
                .shards_held
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
            match reason {
                StopReason::Released | StopReason::Shutdown => {
                    tracing::info!("gave up shard {shard} ({reason:?})")
                }
                StopReason::RenewalFailed | StopReason::DeadlinePassed | StopReason::TakenOver => {
                    metrics
                        .lease_renewals_failed
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("lost shard {shard} ({reason:?}): its users stop now");
                }
            }
        }
        Assignment::Follow { .. } | Assignment::Unfollow { .. } => {}
    }
}

/// The streams thread: applies assignments to the Monitor, batched, and checks it.
fn run_streams(
    monitor: Monitor<TokioDriver>,
    commands: mpsc::Receiver<Command>,
    check_every: Duration,
    metrics: &Metrics,
) {
    let mut by_shard: BTreeMap<Shard, BTreeSet<u64>> = BTreeMap::new();
    let mut applied: BTreeSet<u64> = BTreeSet::new();
    let mut next_check = Instant::now() + check_every;
    let mut stop: Option<mpsc::Sender<()>> = None;
    loop {
        let wait = next_check.saturating_duration_since(Instant::now());
        match commands.recv_timeout(wait) {
            Ok(command) => {
                let mut next = Some(command);
                while let Some(command) = next {
                    match command {
                        Command::Assign(assignment) => apply(&mut by_shard, assignment),
                        Command::Stop(reply) => {
                            stop = Some(reply);
                            break;
                        }
                    }
                    next = commands.try_recv().ok();
                }
                if stop.is_some() {
                    break;
                }
                sync(&monitor, &by_shard, &mut applied, metrics);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                next_check = Instant::now() + check_every;
                if let Err(e) = monitor.check() {
                    tracing::warn!("{e}");
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    monitor.disconnect();
    metrics.users_held.store(0, Ordering::Relaxed);
    if let Some(reply) = stop {
        let _ = reply.send(());
    }
}

fn apply(by_shard: &mut BTreeMap<Shard, BTreeSet<u64>>, assignment: Assignment) {
    match assignment {
        Assignment::Start { shard, users } => {
            by_shard.insert(shard, users.into_iter().collect());
        }
        Assignment::Stop { shard, .. } => {
            by_shard.remove(&shard);
        }
        Assignment::Follow { shard, user } => {
            by_shard.entry(shard).or_default().insert(user);
        }
        Assignment::Unfollow { shard, user } => {
            if let Some(users) = by_shard.get_mut(&shard) {
                users.remove(&user);
            }
        }
    }
}

/// Removes the users no longer wanted, then adds the new ones: only streams carrying a
/// changed user are touched.
fn sync(
    monitor: &Monitor<TokioDriver>,
    by_shard: &BTreeMap<Shard, BTreeSet<u64>>,
    applied: &mut BTreeSet<u64>,
    metrics: &Metrics,
) {
    let desired: BTreeSet<u64> = by_shard.values().flatten().copied().collect();
    let removed: Vec<u64> = applied.difference(&desired).copied().collect();
    let added: Vec<u64> = desired.difference(applied).copied().collect();
    if removed.is_empty() && added.is_empty() {
        return;
    }
    if !removed.is_empty() {
        if let Err(e) = monitor.remove_follows(&removed) {
            tracing::warn!("removing {} user(s): {e}", removed.len());
        }
    }
    if !added.is_empty() {
        if let Err(e) = monitor.add_follows(&added) {
            tracing::warn!("adding {} user(s): {e}", added.len());
        }
    }
    *applied = desired;
    metrics
        .users_held
        .store(applied.len() as u64, Ordering::Relaxed);
    tracing::info!(
        "streaming {} user(s) of {} shard(s) on {} stream(s) (+{} -{})",
        applied.len(),
        by_shard.len(),
        monitor.streams().len(),
        added.len(),
        removed.len()
    );
}

/// Each stream's parser: the lease gate, then the publisher.
struct GatedPublisher {
    gate: Arc<Gate>,
    sender: PublishSender,
    metrics: Arc<Metrics>,
    prefix: Arc<str>,
    shards: u32,
}

impl Parser for GatedPublisher {
    fn parse(&mut self, message: Bytes) {
        self.metrics.messages_in.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .bytes_in
            .fetch_add(message.len() as u64, Ordering::Relaxed);
        // The gate first: a message of a shard not held is dropped before its id is made.
        let user = for_user(&message);
        if let Some(user) = user {
            if !self.gate.is_open(shard_of(user, self.shards)) {
                self.metrics
                    .dropped_not_held
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let outgoing = Outgoing::for_user(
            &self.prefix,
            message,
            user,
            self.shards,
            self.sender.id_key(),
        );
        // Never blocks: a full publisher pauses the streams' read gate instead.
        self.sender.send(outgoing);
    }
}

/// Each stream's observer: reconnects counted by kind and logged, with those a pause of
/// reading caused counted and said apart.
struct StreamLog {
    number: u64,
    metrics: Arc<Metrics>,
    sender: PublishSender,
}

impl Observer for StreamLog {
    fn event(&self, event: &StreamEvent) {
        let n = self.number;
        match event {
            StreamEvent::Connected { status: 200, .. } => {
                tracing::debug!("stream {n}: connected, streaming")
            }
            StreamEvent::Disconnected { error, retry_in } => {
                let kind = reconnect_kind(error);
                self.metrics.reconnect(kind);
                match self.sender.paused_for() {
                    // Silent because it was not reading: the pause outlasted its stall timeout.
                    Some(paused) if kind == "stall" => {
                        self.metrics
                            .reconnects_while_paused
                            .fetch_add(1, Ordering::Relaxed);
                        let (messages, bytes) = self.sender.held();
                        tracing::warn!(
                            "stream {n}: {error} because reading has been paused for \
                             {paused:.1?} (NATS behind, {messages} message(s), {bytes} bytes \
                             held); reconnecting in {retry_in:.1?} (stall)"
                        );
                    }
                    _ => tracing::warn!(
                        "stream {n}: {error}; reconnecting in {retry_in:.1?} ({kind})"
                    ),
                }
            }
            _ => {}
        }
    }
}

/// The `kind` label of a reconnect.
pub fn reconnect_kind(error: &StreamError) -> &'static str {
    match error {
        StreamError::Stall(_) => "stall",
        StreamError::Closed | StreamError::ClosedMidMessage { .. } => "closed",
        StreamError::ConnectFailed(_) | StreamError::ConnectTimeout(_) | StreamError::Tls(_) => {
            "connect"
        }
        StreamError::Status {
            status: 420 | 429, ..
        } => "rate_limit",
        StreamError::Status { .. } => "http",
        StreamError::DisconnectMessage { .. } | StreamError::OperationalDisconnect { .. } => {
            "disconnect_message"
        }
        StreamError::Read(_) => "read",
        _ => "other",
    }
}
