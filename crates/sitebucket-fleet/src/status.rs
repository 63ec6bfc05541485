//! Who holds which shards, and how many users each streams: read from the buckets, for
//! `sitebucket fleet status` and for tests.

use std::collections::BTreeMap;
use std::fmt;

use futures_util::StreamExt;

use crate::lease::{shard_of, Shard};
use crate::nats::{is_heartbeat, Buckets, FleetError, FollowSet};

/// A snapshot of a fleet, read from its buckets (not from the workers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetStatus {
    /// The shard count the snapshot was read with.
    pub shards: u32,
    /// The holder of each held shard (shards missing here are free).
    pub holders: BTreeMap<Shard, String>,
    /// The live workers (a heartbeat not expired) and what their heartbeat says.
    pub workers: BTreeMap<String, String>,
    /// The users of each shard in the follow set.
    pub users: BTreeMap<Shard, usize>,
    /// Keys found that do not belong (a lease key that is not a shard, a follow-set key that is
    /// not a user id, a heartbeat whose value no worker writes): skipped, and counted here.
    pub foreign_keys: usize,
}

impl FleetStatus {
    /// Reads the three buckets.
    pub async fn read(buckets: &Buckets, shards: u32) -> Result<Self, FleetError> {
        let mut status = FleetStatus {
            shards,
            ..FleetStatus::default()
        };
        let follow_err = FleetError::Read;
        let mut keys = buckets
            .leases
            .keys()
            .await
            .map_err(|e| follow_err(e.into()))?;
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| follow_err(e.into()))?;
            let value = buckets
                .leases
                .get(key.as_str())
                .await
                .map_err(|e| follow_err(e.into()))?;
            let shard = key
                .parse::<Shard>()
                .ok()
                .filter(|shard| key == shard.to_string());
            match (shard, value) {
                (Some(shard), Some(holder)) if shard < shards => {
                    let holder = String::from_utf8_lossy(&holder).into_owned();
                    status.holders.insert(shard, holder);
                }
                // Deleted or expired between the listing and the read.
                (Some(shard), None) if shard < shards => {}
                _ => status.foreign_keys += 1,
            }
        }
        let mut keys = buckets
            .heartbeats
            .keys()
            .await
            .map_err(|e| follow_err(e.into()))?;
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| follow_err(e.into()))?;
            if let Some(value) = buckets
                .heartbeats
                .get(key.as_str())
                .await
                .map_err(|e| follow_err(e.into()))?
            {
                if is_heartbeat(&value) {
                    let value = String::from_utf8_lossy(&value).into_owned();
                    status.workers.insert(key, value);
                } else {
                    status.foreign_keys += 1;
                }
            }
        }
        let (users, foreign) = FollowSet::new(buckets.follows.clone())
            .list_counting()
            .await?;
        status.foreign_keys += foreign;
        for user in users {
            *status.users.entry(shard_of(user, shards)).or_insert(0) += 1;
        }
        Ok(status)
    }

    /// The shards `worker` holds, in order.
    pub fn shards_of(&self, worker: &str) -> Vec<Shard> {
        self.holders
            .iter()
            .filter(|(_, holder)| holder.as_str() == worker)
            .map(|(shard, _)| *shard)
            .collect()
    }

    /// How many users `worker` streams: the users of the shards it holds.
    pub fn users_of(&self, worker: &str) -> usize {
        self.shards_of(worker)
            .iter()
            .map(|shard| self.users.get(shard).copied().unwrap_or(0))
            .sum()
    }

    /// The shards nobody holds.
    pub fn free(&self) -> Vec<Shard> {
        (0..self.shards)
            .filter(|shard| !self.holders.contains_key(shard))
            .collect()
    }
}

/// One line per worker (name, shards, users, the shard list), then the free shards.
impl fmt::Display for FleetStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.workers.keys().map(String::as_str).collect();
        for holder in self.holders.values() {
            if !names.contains(&holder.as_str()) {
                names.push(holder); // Holds leases but its heartbeat expired.
            }
        }
        names.sort_unstable();
        for name in names {
            let shards = self.shards_of(name);
            let alive = if self.workers.contains_key(name) {
                ""
            } else {
                " (no heartbeat)"
            };
            writeln!(
                f,
                "{name}{alive}: {} shards, {} users, shards {shards:?}",
                shards.len(),
                self.users_of(name)
            )?;
        }
        let free = self.free();
        let users: usize = free
            .iter()
            .map(|shard| self.users.get(shard).copied().unwrap_or(0))
            .sum();
        writeln!(
            f,
            "free: {} shards, {users} users, shards {free:?}",
            free.len()
        )?;
        if self.foreign_keys > 0 {
            writeln!(f, "foreign keys skipped: {}", self.foreign_keys)?;
        }
        Ok(())
    }
}
