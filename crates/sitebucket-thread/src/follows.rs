//! What a [`ListenThread`](crate::ListenThread) follows through control streams, and the
//! shared pacing of control requests.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sitebucket_proto::control::{
    ControlCall, ControlError, ControlPacer, ControlRequest, ControlResponse,
    DEFAULT_CONTROL_TIMEOUT, MAX_USERS_PER_STREAM,
};
use sitebucket_proto::Config;

use crate::driver::Driver;
use crate::seed::splitmix;
use crate::sync::lock;

/// A [`ControlPacer`] shared by every handle that clones it: Twitter's limit on control
/// requests is per application, so one pacer should serve every stream (a
/// [`Monitor`](crate::Monitor) gives all its streams one). Each handle starts with its own.
#[derive(Clone, Debug, Default)]
pub struct SharedPacer(Arc<Mutex<ControlPacer>>);

impl SharedPacer {
    /// Shares `pacer`.
    pub fn new(pacer: ControlPacer) -> Self {
        SharedPacer(Arc::new(Mutex::new(pacer)))
    }

    /// Reserves the next slot and sleeps until it comes (at once when under the rate).
    pub fn wait_turn(&self) {
        let at = lock(&self.0).reserve(Instant::now());
        let left = at.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            std::thread::sleep(left);
        }
    }
}

/// The users a handle wants its stream to follow: the connect-time `follow` list, plus users
/// added and minus users removed through control requests, and the stream id those changes
/// were last applied to (a new connection only knows its `follow` list).
#[derive(Debug)]
pub(crate) struct FollowState {
    config: Config,
    base: BTreeSet<u64>,
    /// Users added through control, none of them in `base`.
    added: BTreeSet<u64>,
    /// Users of `base` removed through control.
    removed: BTreeSet<u64>,
    /// The stream id every change in `added` and `removed` is known to be applied to.
    synced_to: Option<String>,
    pub(crate) pacer: SharedPacer,
    pub(crate) timeout: Duration,
    calls: AtomicU64,
}

impl FollowState {
    pub(crate) fn new(config: &Config) -> Self {
        FollowState {
            base: config.follow().iter().copied().collect(),
            config: config.clone(),
            added: BTreeSet::new(),
            removed: BTreeSet::new(),
            synced_to: None,
            pacer: SharedPacer::default(),
            timeout: DEFAULT_CONTROL_TIMEOUT,
            calls: AtomicU64::new(0),
        }
    }

    /// Every user wanted, sorted.
    pub(crate) fn desired(&self) -> Vec<u64> {
        self.base
            .iter()
            .filter(|u| !self.removed.contains(u))
            .chain(&self.added)
            .copied()
            .collect::<BTreeSet<u64>>()
            .into_iter()
            .collect()
    }

    fn wants(&self, user: u64) -> bool {
        self.added.contains(&user) || (self.base.contains(&user) && !self.removed.contains(&user))
    }

    fn count(&self) -> usize {
        self.base.len() - self.removed.len() + self.added.len()
    }

    /// Adds `users` to the live stream `live`, after re-applying earlier changes if `live`
    /// is a connection that has not seen them.
    pub(crate) fn add<D: Driver>(
        &mut self,
        driver: &D,
        live: Option<String>,
        users: &[u64],
    ) -> Result<(), ControlError> {
        let fresh = distinct(users.iter().copied().filter(|u| !self.wants(*u)));
        if fresh.is_empty() {
            return Ok(());
        }
        let would_follow = self.count() + fresh.len();
        if would_follow > MAX_USERS_PER_STREAM {
            return Err(ControlError::OverStreamLimit { would_follow });
        }
        let id = live.ok_or(ControlError::NotAnnounced)?;
        self.sync(driver, Some(id.clone()))?;
        for batch in ControlRequest::add_users_batched(&fresh)? {
            let users = batch.users().to_vec();
            self.call(driver, &id, batch)?;
            for user in users {
                if !self.removed.remove(&user) {
                    self.added.insert(user);
                }
            }
        }
        self.synced_to = Some(id);
        Ok(())
    }

    /// Removes `users` from the live stream `live`, like [`add`](Self::add).
    pub(crate) fn remove<D: Driver>(
        &mut self,
        driver: &D,
        live: Option<String>,
        users: &[u64],
    ) -> Result<(), ControlError> {
        let gone = distinct(users.iter().copied().filter(|u| self.wants(*u)));
        if gone.is_empty() {
            return Ok(());
        }
        let id = live.ok_or(ControlError::NotAnnounced)?;
        self.sync(driver, Some(id.clone()))?;
        for batch in ControlRequest::remove_users_batched(&gone)? {
            let users = batch.users().to_vec();
            self.call(driver, &id, batch)?;
            for user in users {
                if !self.added.remove(&user) {
                    self.removed.insert(user);
                }
            }
        }
        self.synced_to = Some(id);
        Ok(())
    }

    /// Records `users` as wanted without a request: the next [`sync`](Self::sync) adds them.
    pub(crate) fn add_later(&mut self, users: &[u64]) {
        for &user in users {
            if !self.wants(user) && !self.removed.remove(&user) {
                self.added.insert(user);
            }
        }
        self.synced_to = None;
    }

    /// Re-applies every change to `live` if it has not seen them (a new connection):
    /// additions first, then removals. Returns whether it sent anything.
    pub(crate) fn sync<D: Driver>(
        &mut self,
        driver: &D,
        live: Option<String>,
    ) -> Result<bool, ControlError> {
        if self.added.is_empty() && self.removed.is_empty() {
            self.synced_to = live;
            return Ok(false);
        }
        let id = live.ok_or(ControlError::NotAnnounced)?;
        if self.synced_to.as_deref() == Some(id.as_str()) {
            return Ok(false);
        }
        let added: Vec<u64> = self.added.iter().copied().collect();
        let removed: Vec<u64> = self.removed.iter().copied().collect();
        let mut batches = Vec::new();
        if !added.is_empty() {
            batches.extend(ControlRequest::add_users_batched(&added)?);
        }
        if !removed.is_empty() {
            batches.extend(ControlRequest::remove_users_batched(&removed)?);
        }
        for batch in batches {
            self.call(driver, &id, batch)?;
        }
        self.synced_to = Some(id);
        Ok(true)
    }

    /// One paced control call on the stream `id`, carried out by `driver`.
    pub(crate) fn call<D: Driver>(
        &self,
        driver: &D,
        id: &str,
        request: ControlRequest,
    ) -> Result<ControlResponse, ControlError> {
        self.pacer.wait_turn();
        let mut call =
            ControlCall::for_stream(&self.config, Some(id), request).with_timeout(self.timeout);
        if let Some(seed) = self.nonce_seed() {
            call = call.with_nonce_seed(seed);
        }
        driver.control(call)
    }

    /// With an explicit `rng_seed` in the config, a seed derived from it that no other call
    /// of this handle uses (runs stay reproducible); without one, `None`: the call then draws
    /// its own seed from the OS, so no two requests share a nonce.
    fn nonce_seed(&self) -> Option<u64> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let seed = self.config.rng_seed()?;
        Some(splitmix(seed ^ splitmix(n.wrapping_add(1))))
    }
}

/// `users` without repeats, in their first order.
pub(crate) fn distinct(users: impl Iterator<Item = u64>) -> Vec<u64> {
    let mut seen = BTreeSet::new();
    users.filter(|u| seen.insert(*u)).collect()
}
