//! The state shared by a [`ListenThread`](crate::ListenThread) handle and its driver.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sitebucket_proto::stream::{Outcome, SiteStream, Stats};

/// A snapshot of a running stream, published by its driver.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// The core's counters.
    pub stats: Stats,
    /// The core's `connection_healthy()`.
    pub healthy: bool,
    /// Whether the stream is still running (not finished).
    pub running: bool,
    /// How it ended, once it has.
    pub outcome: Option<Outcome>,
    /// The control stream id announced by the current connection.
    pub stream_id: Option<String>,
}

type Waker = Arc<dyn Fn() + Send + Sync>;

/// Stop flag, wake-up hook and published status of one run.
pub struct Control {
    stop: AtomicBool,
    waker: Mutex<Option<Waker>>,
    status: Mutex<Status>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("stop", &self.stop_requested())
            .field("status", &*lock(&self.status))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data behind; keep using it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Control {
    /// A fresh control for a stream that has not started.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            stop: AtomicBool::new(false),
            waker: Mutex::new(None),
            status: Mutex::new(Status {
                healthy: true,
                running: true,
                ..Status::default()
            }),
        })
    }

    /// Asks the driver to stop: sets the flag and wakes the driver's wait.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let waker = lock(&self.waker).clone();
        if let Some(wake) = waker {
            wake();
        }
    }

    /// Whether a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Registers how to interrupt the driver's current wait (a socket shutdown, a mio
    /// `Waker`, a channel send). If a stop was already requested, it is called at once, so a
    /// stop racing the registration is never lost.
    pub fn set_waker(&self, wake: Arc<dyn Fn() + Send + Sync>) {
        *lock(&self.waker) = Some(wake.clone());
        if self.stop_requested() {
            wake();
        }
    }

    /// Removes the wake-up hook.
    pub fn clear_waker(&self) {
        *lock(&self.waker) = None;
    }

    /// Copies the stream's counters and health into the shared status.
    pub fn publish(&self, stream: &SiteStream) {
        let mut status = lock(&self.status);
        status.stats.clone_from(stream.stats());
        status.healthy = stream.connection_healthy();
        status.running = stream.running();
        status.outcome = stream.outcome().cloned();
        status.stream_id = stream.stream_id().map(str::to_owned);
    }

    /// The last published status.
    pub fn status(&self) -> Status {
        lock(&self.status).clone()
    }
}
