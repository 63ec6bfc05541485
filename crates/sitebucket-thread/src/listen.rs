//! [`ListenThread`]: the seed's handle, over any [`Driver`].

use std::io;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use sitebucket_proto::stream::Outcome;
use sitebucket_proto::{Parser, SiteStream};

use crate::control::{Control, Status};

/// 64 bits of OS entropy, from the standard library's randomly keyed hasher (no extra
/// dependency). Driver handles mix it into each stream's nonce seed: the core itself draws no
/// unseeded randomness.
pub fn os_entropy() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    RandomState::new().build_hasher().finish()
}

/// What a run hands back when it ends: the same stream (for a restart) and parser.
pub struct Finished {
    /// The stream, as the run left it.
    pub stream: SiteStream,
    /// The parser the run fed.
    pub parser: Box<dyn Parser>,
    /// How the run ended.
    pub outcome: Outcome,
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finished")
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

/// A run started by [`Driver::spawn`]: wait for it with [`join`](RunHandle::join).
#[derive(Debug)]
pub struct RunHandle {
    done: mpsc::Receiver<Finished>,
    thread: Option<JoinHandle<()>>,
}

impl RunHandle {
    /// A handle that receives the run's end on `done`; `thread`, if given, is joined too so no
    /// thread outlives the handle's `join`.
    pub fn new(done: mpsc::Receiver<Finished>, thread: Option<JoinHandle<()>>) -> Self {
        Self { done, thread }
    }

    /// Waits for the run to end. `None` if the driver dropped the run without an answer
    /// (it panicked).
    pub fn join(mut self) -> Option<Finished> {
        let finished = self.done.recv().ok();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        finished
    }
}

/// Runs streams: std threads, a mio event loop, smol tasks, or your own runtime.
///
/// A driver only moves bytes and waits for deadlines: every protocol decision is the core's.
/// It must follow the core's drain contract, hand every event other than a message to
/// [`Control::observe`], publish status to the [`Control`] after each drain, register a waker with [`Control::set_waker`] that interrupts any wait (socket read,
/// connect, backoff sleep) at once, and on a stop request call `stream.disconnect()` and
/// drain, so the run ends with [`Outcome::Stopped`].
pub trait Driver: Clone + Send + Sync + 'static {
    /// A short name: `"thread"`, `"mio"`, `"smol"`.
    fn name(&self) -> &'static str;

    /// Runs the stream in the current thread until it finishes or a stop is requested.
    fn run(
        &self,
        stream: &mut SiteStream,
        parser: &mut dyn Parser,
        control: &Arc<Control>,
    ) -> Outcome;

    /// Starts a run elsewhere and returns at once. The default runs [`run`](Driver::run) on
    /// a new std thread.
    fn spawn(
        &self,
        mut stream: SiteStream,
        mut parser: Box<dyn Parser>,
        control: Arc<Control>,
    ) -> io::Result<RunHandle> {
        let (tx, rx) = mpsc::channel();
        let driver = self.clone();
        let thread = std::thread::Builder::new()
            .name(format!("sitebucket-{}", self.name()))
            .spawn(move || {
                let outcome = driver.run(&mut stream, parser.as_mut(), &control);
                control.publish(&stream);
                let _ = tx.send(Finished {
                    stream,
                    parser,
                    outcome,
                });
            })?;
        Ok(RunHandle::new(rx, Some(thread)))
    }
}

/// The seed's `ListenThread`: runs one stream with a driver; `close`, `restart`, `join`,
/// `connection_healthy` and live status. Dropping it closes the stream and waits for the run
/// to end, so nothing is left behind.
pub struct ListenThread<D: Driver> {
    driver: D,
    control: Arc<Control>,
    idle: Option<(SiteStream, Box<dyn Parser>)>,
    running: Option<RunHandle>,
    outcome: Option<Outcome>,
}

impl<D: Driver> std::fmt::Debug for ListenThread<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenThread")
            .field("driver", &self.driver.name())
            .field("running", &self.running.is_some())
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl<D: Driver> ListenThread<D> {
    /// A handle for `stream`, not yet started. OS entropy is mixed into the stream's nonce
    /// seed (see [`os_entropy`]), so no two processes sign with the same nonces.
    pub fn new(driver: D, mut stream: SiteStream, parser: impl Parser + 'static) -> Self {
        stream.seed_nonces(os_entropy());
        Self {
            driver,
            control: Control::new(),
            idle: Some((stream, Box::new(parser))),
            running: None,
            outcome: None,
        }
    }

    /// Creates the handle and starts the stream at once.
    pub fn spawn(driver: D, stream: SiteStream, parser: impl Parser + 'static) -> io::Result<Self> {
        let mut this = Self::new(driver, stream, parser);
        this.start()?;
        Ok(this)
    }

    /// Starts the stream with the driver (on a thread, an event loop or a task).
    /// An error if it is already running.
    pub fn start(&mut self) -> io::Result<()> {
        let Some((stream, parser)) = self.idle.take() else {
            return Err(io::Error::other("the stream is already running"));
        };
        self.control = Control::new();
        self.control.publish(&stream);
        self.outcome = None;
        match self.driver.spawn(stream, parser, self.control.clone()) {
            Ok(handle) => {
                self.running = Some(handle);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Runs the stream in the current thread until it ends (the seed's `run`).
    pub fn run(&mut self) -> io::Result<Outcome> {
        let Some((mut stream, mut parser)) = self.idle.take() else {
            return Err(io::Error::other("the stream is already running"));
        };
        self.control = Control::new();
        let outcome = self.driver.run(&mut stream, parser.as_mut(), &self.control);
        self.control.publish(&stream);
        self.idle = Some((stream, parser));
        self.outcome = Some(outcome.clone());
        Ok(outcome)
    }

    /// Asks the stream to stop; it does so promptly, whatever it is waiting on.
    pub fn close(&self) {
        self.control.request_stop();
    }

    /// Waits for the run to end and returns how it ended (`None` if it was never started).
    pub fn join(&mut self) -> Option<Outcome> {
        if let Some(handle) = self.running.take() {
            match handle.join() {
                Some(finished) => {
                    self.idle = Some((finished.stream, finished.parser));
                    self.outcome = Some(finished.outcome);
                }
                None => {
                    self.outcome = Some(Outcome::InvalidConfig(
                        "the driver ended the run without an outcome".into(),
                    ))
                }
            }
        }
        self.outcome.clone()
    }

    /// The seed's `restart`: stops the run if it is still going, resets the stream's
    /// throttles and starts it again with the same stream and parser.
    pub fn restart(&mut self) -> io::Result<()> {
        self.close();
        self.join();
        let Some((stream, _)) = &mut self.idle else {
            return Err(io::Error::other("the stream was lost by its driver"));
        };
        stream.reset_throttles();
        self.start()
    }

    /// The seed's `connection_healthy`: true unless the stream gave up or hit a fatal error.
    pub fn connection_healthy(&self) -> bool {
        self.control.status().healthy
    }

    /// Whether a run is in progress (started and not yet ended).
    pub fn is_running(&self) -> bool {
        self.running.is_some() && self.control.status().running
    }

    /// The live status published by the driver.
    pub fn status(&self) -> Status {
        self.control.status()
    }

    /// The shared control (stop flag, status) of the current run.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// The stream, when no run holds it.
    pub fn stream(&self) -> Option<&SiteStream> {
        self.idle.as_ref().map(|(s, _)| s)
    }

    /// The stream mutably, when no run holds it (e.g. to change its follow list).
    pub fn stream_mut(&mut self) -> Option<&mut SiteStream> {
        self.idle.as_mut().map(|(s, _)| s)
    }

    /// The driver.
    pub fn driver(&self) -> &D {
        &self.driver
    }
}

impl<D: Driver> Drop for ListenThread<D> {
    fn drop(&mut self) {
        self.close();
        self.join();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use sitebucket_proto::{Action, Config, Credentials};

    use super::*;

    #[derive(Clone)]
    struct NeverRuns;

    impl Driver for NeverRuns {
        fn name(&self) -> &'static str {
            "never"
        }
        fn run(&self, _: &mut SiteStream, _: &mut dyn Parser, _: &Arc<Control>) -> Outcome {
            Outcome::Stopped
        }
    }

    fn first_request(thread: &mut ListenThread<NeverRuns>) -> Bytes {
        let stream = thread.stream_mut().expect("not started");
        let now = Instant::now();
        assert!(matches!(stream.poll_action(now), Action::Connect { .. }));
        stream.handle_connected(now, 1_700_000_000);
        match stream.poll_action(now) {
            Action::Transmit(request) => request,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn handles_never_share_nonces_across_identical_configs() {
        let config = Config::builder([1], Credentials::new("ck", "cs", "t", "ts"))
            .url("http://127.0.0.1:1/1.1/site.json")
            .build()
            .unwrap();
        let mut a = ListenThread::new(NeverRuns, SiteStream::new(config.clone()), |_: Bytes| {});
        let mut b = ListenThread::new(NeverRuns, SiteStream::new(config.clone()), |_: Bytes| {});
        assert_ne!(first_request(&mut a), first_request(&mut b));
        // The bare core stays reproducible: same config, same time, same bytes.
        let mut c = SiteStream::new(config.clone());
        let mut d = SiteStream::new(config);
        let now = Instant::now();
        for s in [&mut c, &mut d] {
            let _ = s.poll_action(now);
            s.handle_connected(now, 1_700_000_000);
        }
        assert_eq!(c.poll_action(now), d.poll_action(now));
    }
}
