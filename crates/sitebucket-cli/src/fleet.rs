//! `sitebucket follow add|remove|list` and `sitebucket fleet status`: a fleet's buckets on
//! NATS JetStream, through the `sitebucket-fleet` library, on a one-thread tokio runtime.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Duration;

use sitebucket_fleet::{Buckets, FleetConfig, FleetStatus, FollowSet};

use crate::args::{FleetArgs, FleetCommand, FollowArgs, FollowCommand, FollowUsersArgs, NatsArgs};
use crate::ids;

/// The lease TTL used when `fleet status` has to create a missing leases bucket.
const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// `sitebucket follow ...`.
pub fn follow(args: FollowArgs) -> ExitCode {
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
    run(&target.nats, move |buckets| async move {
        let follows = FollowSet::new(buckets.follows);
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
    run(nats, |buckets| async move {
        let users = FollowSet::new(buckets.follows).list().await?;
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
pub fn fleet(args: FleetArgs) -> ExitCode {
    match args.command {
        FleetCommand::Status(status) => {
            let shards = status.shards;
            if shards == 0 {
                eprintln!("sitebucket: --shards must be at least 1");
                return ExitCode::from(2);
            }
            run(&status.nats, move |buckets| async move {
                print!("{}", FleetStatus::read(&buckets, shards).await?);
                Ok(())
            })
        }
    }
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

/// Connects, opens the buckets and runs `work`; an error is printed and is exit status 1.
fn run<F, Fut>(nats: &NatsArgs, work: F) -> ExitCode
where
    F: FnOnce(Buckets) -> Fut,
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
    runtime.block_on(async {
        let client = match async_nats::connect(&nats.nats).await {
            Ok(client) => client,
            Err(error) => {
                eprintln!(
                    "sitebucket: cannot connect to NATS at {}: {error}",
                    nats.nats
                );
                return ExitCode::from(1);
            }
        };
        let js = async_nats::jetstream::new(client);
        let mut config = FleetConfig::new("sitebucket-cli", DEFAULT_TTL);
        config.follows_bucket = nats.follows_bucket.clone();
        let buckets = match Buckets::open(&js, &config).await {
            Ok(buckets) => buckets,
            Err(error) => {
                eprintln!("sitebucket: {error}");
                return ExitCode::from(1);
            }
        };
        match work(buckets).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("sitebucket: {error}");
                ExitCode::from(1)
            }
        }
    })
}
