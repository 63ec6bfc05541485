//! Many sitebucket workers sharing one follow set on NATS JetStream.
//!
//! Users fall into a fixed number of shards ([`shard_of`]); a worker streams the users of the
//! shards whose lease it holds. The leases live in a JetStream key-value bucket, whose
//! compare-and-set on revision makes ownership exclusive: the engine owns consensus, the fleet
//! only takes, renews and gives up leases.
//!
//! The lease logic, [`Leases`], is sans-IO like the sitebucket core: fully deterministic, it
//! contains no networking code and reads no clock. Key-value outcomes, what the worker saw and
//! `now` go in; key-value operations and start/stop-shard commands come out. The crate's tests
//! run it against a model key-value store with expiry, partitions, clock drift, crashes and
//! joins over thousands of seeded schedules.
//!
//! [`FleetWorker`] is a whole worker: the lease driver ([`Worker`]), a `Monitor` on the tokio
//! driver streaming the held shards' users, and durable output to a JetStream stream
//! ([`output`], [`Publisher`]) with Prometheus metrics ([`Metrics`]).

mod lease;
mod metrics;
mod nats;
pub mod output;
mod status;
mod worker;

pub use lease::{
    shard_of, Action, ConfigError, KvOp, KvOutcome, LeaseConfig, LeaseStats, Leases, OpId, Shard,
    StopReason, DEFAULT_SHARDS,
};
pub use metrics::{serve_metrics, Metrics, LATENCY_BUCKETS, RECONNECT_KINDS};
pub use nats::{
    open_follows, parse_servers, Assignment, Buckets, FleetConfig, FleetError, FollowSet, Sink,
    Worker,
};
pub use output::{IdKey, Outgoing, OutputConfig, PublishSender, Publisher};
pub use status::FleetStatus;
pub use worker::{reconnect_kind, FleetWorker, FleetWorkerConfig};
