//! The [`Driver`] contract and what a spawned run hands back ([`RunHandle`], [`Finished`]).

use std::io;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use sitebucket_proto::control::{ControlCall, ControlError, ControlResponse};
use sitebucket_proto::Outcome;
use sitebucket_proto::{Parser, SiteStream};

use crate::run_state::RunState;

/// The size of each read block a driver reads the socket into (64 KiB): every first-party
/// driver uses it, so all read in blocks of the same size.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Reads shorter than this (8 KiB) are copied out of their read block rather than handed over
/// in it, so a small message does not pin a whole block.
pub const READ_COPY_BELOW_BYTES: usize = 8 * 1024;

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
/// [`RunState::observe`], publish status to the [`RunState`] after each drain, register a waker with [`RunState::set_waker`] that interrupts any wait (socket read,
/// connect, backoff sleep) at once, and on a stop request call `stream.disconnect()` and
/// drain, so the run ends with [`Outcome::Stopped`].
pub trait Driver: Clone + Send + Sync + 'static {
    /// A short name, the one the CLI's `--driver` takes: `"thread"` (std), `"mio"`, `"smol"`,
    /// `"tokio"`.
    fn name(&self) -> &'static str;

    /// Runs the stream in the current thread until it finishes or a stop is requested.
    fn run(
        &self,
        stream: &mut SiteStream,
        parser: &mut dyn Parser,
        control: &Arc<RunState>,
    ) -> Outcome;

    /// Starts a run elsewhere and returns at once. The default runs [`run`](Driver::run) on
    /// a new std thread.
    fn spawn(
        &self,
        mut stream: SiteStream,
        mut parser: Box<dyn Parser>,
        control: Arc<RunState>,
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

    /// Carries out one control request ([`ControlCall`]) on a connection of its own — never
    /// the stream's, which it neither blocks nor shares — and returns its answer, blocking
    /// the calling thread until the call finishes (the call's deadline bounds that). The
    /// call's `poll_action` says what to do, as for a stream.
    ///
    /// The default refuses with [`ControlError::Unsupported`], so a driver without control
    /// support still works for everything else.
    fn control(&self, call: ControlCall) -> Result<ControlResponse, ControlError> {
        let _ = call;
        Err(ControlError::Unsupported {
            driver: self.name(),
        })
    }
}
