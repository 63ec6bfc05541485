//! [`StreamTask`]: a stream running as a tokio task of its own, stopped when dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use sitebucket_proto::{Parser, SiteStream};
use sitebucket_thread::{Finished, Resolver, RunState, Status};

use crate::drive_with;

/// Spawns a task on the current tokio runtime that runs `stream` ([`drive`](crate::drive)),
/// handing each message to `parser`, and returns its handle. OS entropy is mixed into the
/// stream's nonce seed, so no two processes sign with the same nonces. Host names go to the
/// system resolver: see [`spawn_with`].
///
/// # Panics
///
/// Outside a tokio runtime, as [`tokio::spawn`] does.
/// [`TokioDriver::spawn_stream`](crate::TokioDriver::spawn_stream) takes the runtime from
/// the driver instead.
pub fn spawn(stream: SiteStream, parser: impl Parser + 'static) -> StreamTask {
    spawn_with(stream, parser, Resolver::system())
}

/// [`spawn`], looking host names up with `resolver` on a lookup thread whose answer the
/// task awaits (see [`drive_with`]).
///
/// # Panics
///
/// Outside a tokio runtime, as [`tokio::spawn`] does.
pub fn spawn_with(
    stream: SiteStream,
    parser: impl Parser + 'static,
    resolver: Resolver,
) -> StreamTask {
    StreamTask::start(&Handle::current(), stream, Box::new(parser), resolver, None)
}

/// A stream running as a task of its own: [`close`](Self::close) it, read its live
/// [`status`](Self::status), and await it for its end ([`Finished`]: the stream, the
/// parser and the outcome; `None` if the task panicked or its runtime shut down first).
///
/// Dropping the handle stops the stream: a stop is requested and the task aborted, which
/// drops its future at its next wake-up (at once, whatever it waits on, or after the read
/// in hand), closing the socket and abandoning a lookup in progress. To let a stream run
/// on, keep its handle.
pub struct StreamTask {
    control: Arc<RunState>,
    task: JoinHandle<Finished>,
}

impl std::fmt::Debug for StreamTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTask")
            .field("finished", &self.task.is_finished())
            .field("status", &self.control.status())
            .finish()
    }
}

/// Keeps something alive for as long as a task runs (the runtime a driver owns).
pub(crate) type KeepAlive = Box<dyn std::any::Any + Send>;

impl StreamTask {
    /// Spawns the run on `runtime`, holding `keep` until it ends.
    pub(crate) fn start(
        runtime: &Handle,
        stream: SiteStream,
        parser: Box<dyn Parser>,
        resolver: Resolver,
        keep: Option<KeepAlive>,
    ) -> Self {
        let control = RunState::new();
        control.publish(&stream);
        let task = runtime.spawn(run(stream, parser, control.clone(), resolver, keep));
        Self { control, task }
    }

    /// Asks the stream to stop: it closes the connection and the task ends with
    /// [`Outcome::Stopped`](sitebucket_proto::Outcome::Stopped) promptly, whatever
    /// it was waiting on.
    pub fn close(&self) {
        self.control.request_stop();
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// The live status (counters, health) published after each drain of the core.
    pub fn status(&self) -> Status {
        self.control.status()
    }

    /// The run's shared state: [`RunState::request_stop`] from anywhere, an observer, an
    /// announce hook.
    pub fn run_state(&self) -> &Arc<RunState> {
        &self.control
    }
}

/// The task's body: the whole run, then what it hands back.
pub(crate) async fn run(
    mut stream: SiteStream,
    mut parser: Box<dyn Parser>,
    control: Arc<RunState>,
    resolver: Resolver,
    keep: Option<KeepAlive>,
) -> Finished {
    let outcome = drive_with(&mut stream, parser.as_mut(), &control, &resolver).await;
    drop(keep);
    Finished {
        stream,
        parser,
        outcome,
    }
}

impl Future for StreamTask {
    type Output = Option<Finished>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().task).poll(cx).map(Result::ok)
    }
}

impl Drop for StreamTask {
    fn drop(&mut self) {
        // Both no-ops once the task has ended. The stop ends a loop busy with a flood at its
        // next turn (it checks the flag after every read); the abort drops a waiting one.
        self.control.request_stop();
        self.task.abort();
    }
}
