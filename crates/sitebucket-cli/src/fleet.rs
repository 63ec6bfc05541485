//! `sitebucket follow add|remove|list`, `sitebucket fleet status` and `sitebucket fleet
//! --worker NAME`: a fleet on NATS JetStream, through the `sitebucket-fleet` library.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use sitebucket_fleet::{
    open_follows, Buckets, FleetConfig, FleetStatus, FleetWorker, FleetWorkerConfig, FollowSet,
};
use sitebucket_proto::Config;

use crate::args::{
    FleetArgs, FleetCommand, FleetWorkerArgs, FollowArgs, FollowCommand, FollowUsersArgs, NatsArgs,
};
use crate::ids;

/// The longest wait between two attempts to reconnect to NATS.
const RECONNECT_MAX: Duration = Duration::from_millis(250);

/// How long connecting to one NATS server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The lease TTL `fleet status` reads the buckets with (it creates nothing).
const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// `sitebucket follow ...`.
pub(crate) fn follow(args: FollowArgs) -> ExitCode {
    let (target, add) = match args.command {
        FollowCommand::List(nats) => return list(&nats),
        FollowCommand::Add(target) => (target, true),
        FollowCommand::Remove(target) => (target, false),
    };
    let users = match users_of(&target) {
        Ok(users) => users,
        Err(why) => {
            eprintln!("sitebucket: {why}");
            return ExitCode::from(2);
        }
    };
    run(&target.nats, move |js, config| async move {
        let follows =
            FollowSet::new(open_follows(&js, &config.follows_bucket, config.replicas).await?);
        for user in &users {
            if add {
                follows.add(*user).await?;
            } else {
                follows.remove(*user).await?;
            }
        }
        let verb = if add { "added" } else { "removed" };
        eprintln!("sitebucket: {verb} {} users", users.len());
        Ok(())
    })
}

/// `sitebucket follow list`: one id per line, sorted.
fn list(nats: &NatsArgs) -> ExitCode {
    run(nats, |js, config| async move {
        let follows = open_follows(&js, &config.follows_bucket, config.replicas).await?;
        let users = FollowSet::new(follows).list().await?;
        let mut out = String::with_capacity(users.len() * 20);
        for user in users {
            out.push_str(&user.to_string());
            out.push('\n');
        }
        print!("{out}");
        Ok(())
    })
}

/// `sitebucket fleet ...`.
pub(crate) fn fleet(args: FleetArgs) -> ExitCode {
    match args.command {
        Some(FleetCommand::Status(status)) => {
            let shards = status.shards;
            if shards == 0 {
                eprintln!("sitebucket: --shards must be at least 1");
                return ExitCode::from(2);
            }
            run(&status.nats, move |js, config| async move {
                // Reading creates nothing: a missing bucket is an error saying so.
                let buckets = Buckets::open_existing(&js, &config).await?;
                print!("{}", FleetStatus::read(&buckets, shards).await?);
                Ok(())
            })
        }
        None => worker(args.worker),
    }
}

/// `sitebucket fleet --worker NAME`: one worker until SIGINT or SIGTERM.
fn worker(args: FleetWorkerArgs) -> ExitCode {
    let config = match worker_config(&args) {
        Ok(config) => config,
        Err(why) => {
            eprintln!("sitebucket: {why}");
            return ExitCode::from(2);
        }
    };
    let signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("sitebucket: cannot install the SIGINT/SIGTERM handlers: {e}");
            return ExitCode::from(1);
        }
    };
    // One worker thread: leases, heartbeats, metrics, the publisher and the NATS client's
    // connection task (the streams have a runtime of their own). A second worker only
    // bounced the publisher's hand-overs to the connection task between threads (more
    // wake-ups and context switches per message, ~1.5 µs of CPU per message in the fleet
    // bench) and had nothing else to run.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sitebucket-fleet")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sitebucket: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let stop = Arc::new(tokio::sync::Notify::new());
    {
        let stop = stop.clone();
        let mut signals = signals;
        let _ = std::thread::Builder::new()
            .name("sitebucket-signals".into())
            .spawn(move || {
                let mut stopping = false;
                for signal in signals.forever() {
                    let name = if signal == SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    };
                    if stopping {
                        tracing::warn!("received {name} again: exiting now, leases left to expire");
                        std::process::exit(1);
                    }
                    stopping = true;
                    tracing::info!(
                        "received {name}: stopping reading, draining what is held to NATS, \
                         releasing the leases"
                    );
                    stop.notify_one();
                }
            });
    }
    let drain_timeout = args.drain_timeout;
    let servers = match servers_of(&args.nats) {
        Ok(servers) => servers,
        Err(why) => {
            eprintln!("sitebucket: {why}");
            return ExitCode::from(2);
        }
    };
    let connection_name = format!("sitebucket fleet worker {}", config.fleet.lease.worker);
    runtime.block_on(async move {
        // Reconnect attempts at most 250 ms apart (the client's default backs off to 4 s):
        // leases and publishes resume as soon as NATS, or another node of its cluster, is back.
        let options = async_nats::ConnectOptions::new()
            .name(connection_name)
            .connection_timeout(CONNECT_TIMEOUT)
            // Losing the server and reconnecting (to it or another node) is logged.
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("NATS: connected"),
                    other => tracing::warn!("NATS: {other}"),
                }
            })
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(2u64.saturating_pow(attempts.min(16) as u32))
                    .min(RECONNECT_MAX)
            });
        let client = match options.connect(servers.as_slice()).await {
            Ok(client) => client,
            Err(error) => {
                eprintln!(
                    "sitebucket: cannot connect to NATS at {}: {error}",
                    addresses(&servers)
                );
                return ExitCode::from(1);
            }
        };
        let info = client.server_info();
        tracing::info!(
            "connected to NATS server {} at {}:{}",
            info.server_name,
            info.host,
            info.port
        );
        let worker = match FleetWorker::start(client, config).await {
            Ok(worker) => worker,
            Err(error) => {
                eprintln!("sitebucket: {error}");
                return ExitCode::from(1);
            }
        };
        if let Some(addr) = worker.metrics_addr() {
            tracing::info!("serving metrics on http://{addr}/metrics");
        }
        stop.notified().await;
        match worker.shutdown(drain_timeout).await {
            Ok(0) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Ok(left) => {
                tracing::error!(
                    "stopped with {left} message(s) read but not acknowledged by NATS within \
                     --drain-timeout"
                );
                ExitCode::from(1)
            }
            Err(error) => {
                eprintln!("sitebucket: {error}");
                ExitCode::from(1)
            }
        }
    })
}

/// The worker's configuration from its options; a usage error says what is wrong.
fn worker_config(args: &FleetWorkerArgs) -> Result<FleetWorkerConfig, String> {
    let Some(name) = args.worker.clone() else {
        return Err(
            "give --worker NAME to run a worker (or `fleet status` to look at the fleet)"
                .to_owned(),
        );
    };
    let credentials = crate::listen::credentials(&args.credentials)?;
    let mut builder = Config::builder([1], credentials).stall_timeout(args.stall_timeout);
    if let Some(url) = &args.url {
        builder = builder.url(url.clone());
    }
    if let Some(path) = &args.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read --ca-file {}: {e}", path.display()))?;
        builder = builder.extra_root_certs_pem(pem);
    }
    let template = builder.build().map_err(|e| e.to_string())?;
    if template.endpoint().is_cleartext_remote() {
        tracing::warn!(
            "{} is plain http:// to a host that is not loopback: credentials and messages travel \
             in clear; use https://",
            template.url()
        );
    }
    let mut config = FleetWorkerConfig::new(&name, args.lease_ttl, template);
    config.fleet.lease.shards = args.shards;
    // A renewal may wait up to 0.4 TTL for its answer (the most the lease rules allow with
    // renewals every TTL/3 and the margin TTL/4): a NATS outage of a few seconds, plus the
    // client's reconnect, then costs no lease.
    config.fleet.lease.op_timeout = args.lease_ttl * 2 / 5 - Duration::from_millis(1);
    config.fleet.lease.seed = seed_of(&name);
    config.fleet.follows_bucket = args.nats.follows_bucket.clone();
    config.fleet.replicas = args.nats.replicas;
    config.output.stream = args.stream.clone();
    config.output.replicas = args.nats.replicas;
    config.output.max_in_flight = args.max_in_flight.max(1);
    config.output.max_held_bytes = args.max_held_bytes;
    config.metrics_addr = args.metrics_addr;
    config
        .fleet
        .lease
        .validate()
        .map_err(|e| format!("{e} (from --worker, --shards and --lease-ttl)"))?;
    Ok(config)
}

/// A jitter seed of the worker's own: workers of one fleet must not probe in step.
fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) ^ u64::from(std::process::id())
}

/// The users of `--follow` and `--follow-file`, sorted and each once.
fn users_of(args: &FollowUsersArgs) -> Result<Vec<u64>, String> {
    let mut all: BTreeSet<u64> = args.follow.iter().copied().collect();
    if let Some(path) = &args.follow_file {
        all.extend(ids::read_file(path)?);
    }
    if all.is_empty() {
        return Err("no user id given: give --follow or a --follow-file with ids".to_owned());
    }
    Ok(all.into_iter().collect())
}

/// Connects and runs `work` with JetStream and the buckets' names; an error is printed and
/// is exit status 1.
fn run<F, Fut>(nats: &NatsArgs, work: F) -> ExitCode
where
    F: FnOnce(async_nats::jetstream::Context, FleetConfig) -> Fut,
    Fut: std::future::Future<Output = Result<(), sitebucket_fleet::FleetError>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sitebucket: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let servers = match servers_of(nats) {
        Ok(servers) => servers,
        Err(why) => {
            eprintln!("sitebucket: {why}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        let options = async_nats::ConnectOptions::new().connection_timeout(CONNECT_TIMEOUT);
        let client = match options.connect(servers.as_slice()).await {
            Ok(client) => client,
            Err(error) => {
                eprintln!(
                    "sitebucket: cannot connect to NATS at {}: {error}",
                    addresses(&servers)
                );
                return ExitCode::from(1);
            }
        };
        let js = async_nats::jetstream::new(client);
        let mut config = FleetConfig::new("sitebucket-cli", DEFAULT_TTL);
        config.follows_bucket = nats.follows_bucket.clone();
        config.replicas = nats.replicas;
        match work(js, config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("sitebucket: {error}");
                ExitCode::from(1)
            }
        }
    })
}

/// The servers of `--nats` (several of one cluster, comma-separated); a usage error says
/// which one is wrong.
fn servers_of(nats: &NatsArgs) -> Result<Vec<async_nats::ServerAddr>, String> {
    if nats.replicas == 0 {
        return Err("--replicas must be at least 1".to_owned());
    }
    sitebucket_fleet::parse_servers(&nats.nats).map_err(|why| format!("--nats: {why}"))
}

/// `HOST:PORT` of each server, comma-separated: for messages (a URL's user and password, if
/// any, are left out).
fn addresses(servers: &[async_nats::ServerAddr]) -> String {
    servers
        .iter()
        .map(|s| format!("{}:{}", s.host(), s.port()))
        .collect::<Vec<_>>()
        .join(",")
}
