//! The state shared by a [`ListenThread`](crate::ListenThread) handle and its driver.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::read_gate::ReadGate;
use crate::sync::lock;
use sitebucket_proto::{Outcome, SiteStream, Stats, StreamEvent};

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

/// Called with the new stream id when a run announces a control stream.
pub type AnnounceHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Called with the outcome when a run finishes.
pub type FinishHook = Arc<dyn Fn(&Outcome) + Send + Sync>;

/// Watches a run from inside its driver, on the driver's thread: what the core reports
/// besides messages, and the moment each drain ends. Install one with
/// [`RunState::set_observer`]; both methods default to doing nothing.
///
/// `drained` is the "batch end" signal: the driver has handed out every message in hand
/// and is about to wait, so it is the time to flush buffered output.
pub trait Observer: Send + Sync {
    /// An event of the core other than a message (connected, keep-alive, disconnected),
    /// in order with the messages given to the parser. Drivers forward them with
    /// [`RunState::observe`].
    fn event(&self, event: &StreamEvent) {
        let _ = event;
    }

    /// The driver drained the core (it is about to wait, or the run is over), as reported
    /// by [`RunState::publish`]. The stream is read-only here.
    fn drained(&self, stream: &SiteStream) {
        let _ = stream;
    }
}

/// Stop flag, wake-up hook and published status of one run.
pub struct RunState {
    stop: AtomicBool,
    waker: Mutex<Option<Waker>>,
    status: Mutex<Status>,
    observer: Mutex<Option<Arc<dyn Observer>>>,
    /// The run's item source (see [`ItemSink`](crate::ItemSink)), beside any observer.
    item_events: Mutex<Option<Arc<dyn Observer>>>,
    announce: Mutex<Option<AnnounceHook>>,
    finish: Mutex<Option<FinishHook>>,
    read_gate: Mutex<Option<ReadGate>>,
}

impl std::fmt::Debug for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunState")
            .field("stop", &self.stop_requested())
            .field("status", &*lock(&self.status))
            .finish_non_exhaustive()
    }
}

impl RunState {
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
            observer: Mutex::new(None),
            item_events: Mutex::new(None),
            announce: Mutex::new(None),
            finish: Mutex::new(None),
            read_gate: Mutex::new(None),
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

    /// Copies the stream's counters and health into the shared status, then tells the
    /// observer, if any, that a drain ended ([`Observer::drained`]).
    ///
    /// When the stream id changed to a new one, the announce hook (if any) is called with it
    /// first ([`set_announce_hook`](Self::set_announce_hook)); when the stream has just
    /// finished, the finish hook (if any) is called with its outcome, once
    /// ([`set_finish_hook`](Self::set_finish_hook)).
    pub fn publish(&self, stream: &SiteStream) {
        let (announced, finished) = {
            let mut status = lock(&self.status);
            let finished = match (&status.outcome, stream.outcome()) {
                (None, Some(outcome)) => Some(outcome.clone()),
                _ => None,
            };
            status.stats.clone_from(stream.stats());
            status.healthy = stream.connection_healthy();
            status.running = stream.running();
            status.outcome = stream.outcome().cloned();
            let id = stream.stream_id();
            let changed = status.stream_id.as_deref() != id;
            // Copied only when it changed: this runs after every drain (every read).
            if changed {
                status.stream_id = id.map(str::to_owned);
            }
            (id.filter(|_| changed).map(str::to_owned), finished)
        };
        if let Some(id) = announced {
            let hook = lock(&self.announce).clone();
            if let Some(hook) = hook {
                hook(&id);
            }
        }
        if let Some(outcome) = finished {
            let hook = lock(&self.finish).clone();
            if let Some(hook) = hook {
                hook(&outcome);
            }
        }
        if let Some(observer) = self.observer() {
            observer.drained(stream);
        }
    }

    /// Installs the hook called, on the driver's thread, each time the run publishes a new
    /// control stream id (after a connect or a reconnect). It must return quickly: a
    /// [`Monitor`](crate::Monitor) uses it to wake its checker, which re-applies control
    /// changes to the new connection.
    pub fn set_announce_hook(&self, hook: AnnounceHook) {
        *lock(&self.announce) = Some(hook);
    }

    /// Installs the hook called, on the driver's thread, once when the run finishes (the
    /// first publish with an outcome), with that outcome. It must return quickly: a
    /// [`Monitor`](crate::Monitor) uses it to wake its checker, which sets aside a stream
    /// that retrying cannot fix.
    pub fn set_finish_hook(&self, hook: FinishHook) {
        *lock(&self.finish) = Some(hook);
    }

    /// Makes the run honour `gate` (see [`ReadGate`]): while it is paused, a driver that
    /// honours it reads nothing from the socket but keeps running the core's timers. Set it
    /// before the run starts; drivers read it once, when the run begins.
    pub fn set_read_gate(&self, gate: ReadGate) {
        *lock(&self.read_gate) = Some(gate);
    }

    /// The run's [`ReadGate`], if it has one.
    pub fn read_gate(&self) -> Option<ReadGate> {
        lock(&self.read_gate).clone()
    }

    /// Installs the observer of this run (replacing any earlier one).
    pub fn set_observer(&self, observer: Arc<dyn Observer>) {
        *lock(&self.observer) = Some(observer);
    }

    /// Hands an event other than a message to the observer, if any (and to the run's
    /// [`ItemSink`](crate::ItemSink), if it has one). Drivers call it for each
    /// `Action::Event` that is not a `Message` (messages go to the parser).
    pub fn observe(&self, event: &StreamEvent) {
        let items = lock(&self.item_events).clone();
        if let Some(items) = items {
            items.event(event);
        }
        if let Some(observer) = self.observer() {
            observer.event(event);
        }
    }

    /// Installs where the run's connection events go as items; kept apart from
    /// [`set_observer`](Self::set_observer), so a user's observer does not replace it.
    pub(crate) fn set_item_events(&self, forwarder: Arc<dyn Observer>) {
        *lock(&self.item_events) = Some(forwarder);
    }

    fn observer(&self) -> Option<Arc<dyn Observer>> {
        lock(&self.observer).clone()
    }

    /// The last published status.
    pub fn status(&self) -> Status {
        lock(&self.status).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sitebucket_proto::{Config, Credentials};
    use std::time::Duration;

    #[derive(Default)]
    struct Seen {
        events: Mutex<Vec<StreamEvent>>,
        drained: Mutex<Vec<u64>>,
    }

    impl Observer for Seen {
        fn event(&self, event: &StreamEvent) {
            lock(&self.events).push(event.clone());
        }
        fn drained(&self, stream: &SiteStream) {
            lock(&self.drained).push(stream.stats().attempts);
        }
    }

    #[test]
    fn the_announce_hook_hears_each_new_stream_id_once() {
        use sitebucket_proto::Action;
        use std::time::Instant;

        let control = RunState::new();
        let heard = Arc::new(Mutex::new(Vec::<String>::new()));
        let log = heard.clone();
        control.set_announce_hook(Arc::new(move |id: &str| lock(&log).push(id.to_owned())));
        let mut stream = SiteStream::new(
            Config::builder([1], Credentials::new("ck", "cs", "t", "ts"))
                .url("http://127.0.0.1:1/1.1/site.json")
                .build()
                .unwrap(),
        );
        let now = Instant::now();
        let drain = |stream: &mut SiteStream| loop {
            if matches!(
                stream.poll_action(now),
                Action::Wait(_) | Action::Finished(_)
            ) {
                break;
            }
        };
        drain(&mut stream);
        stream.handle_connected(now, 1);
        drain(&mut stream);
        control.publish(&stream);
        let body = |uri: &str| {
            let message = format!("{{\"control\":{{\"control_uri\":\"{uri}\"}}}}\r\n");
            format!("{:x}\r\n{message}\r\n", message.len())
        };
        let mut input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        input.extend(body("/1.1/site/c/a1").bytes());
        stream.handle_input(now, &input);
        drain(&mut stream);
        control.publish(&stream);
        control.publish(&stream);
        assert_eq!(control.status().stream_id.as_deref(), Some("a1"));
        stream.handle_input(now, body("/1.1/site/c/b2").as_bytes());
        drain(&mut stream);
        control.publish(&stream);
        stream.disconnect();
        control.publish(&stream);
        assert_eq!(control.status().stream_id, None);
        assert_eq!(*lock(&heard), ["a1", "b2"]);
    }

    #[test]
    fn the_finish_hook_hears_the_outcome_once() {
        let control = RunState::new();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        control.set_finish_hook(Arc::new(move |outcome: &Outcome| {
            lock(&log).push(outcome.clone())
        }));
        let mut stream = SiteStream::new(
            Config::builder([1], Credentials::new("ck", "cs", "t", "ts"))
                .build()
                .unwrap(),
        );
        control.publish(&stream);
        assert!(lock(&heard).is_empty(), "still running");
        stream.disconnect();
        // A driver publishes at the end of its run, and `Driver::spawn` once more.
        control.publish(&stream);
        control.publish(&stream);
        assert_eq!(*lock(&heard), [Outcome::Stopped]);
    }

    #[test]
    fn the_observer_sees_forwarded_events_and_every_publish() {
        let control = RunState::new();
        let stream = SiteStream::new(
            Config::builder([1], Credentials::new("ck", "cs", "t", "ts"))
                .build()
                .unwrap(),
        );
        // Without an observer, both calls do nothing.
        control.observe(&StreamEvent::KeepAlive);
        control.publish(&stream);

        let seen = Arc::new(Seen::default());
        control.set_observer(seen.clone());
        let disconnected = StreamEvent::Disconnected {
            error: sitebucket_proto::StreamError::Closed,
            retry_in: Duration::from_millis(250),
        };
        control.observe(&StreamEvent::KeepAlive);
        control.observe(&disconnected);
        control.publish(&stream);
        control.publish(&stream);
        assert_eq!(*lock(&seen.events), [StreamEvent::KeepAlive, disconnected]);
        assert_eq!(*lock(&seen.drained), [0, 0]);
        assert!(control.status().running);
    }
}
