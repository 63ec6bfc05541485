//! [`Messages`]: a [`SiteStream`] as a `futures_core::Stream` of [`StreamItem`]s.

use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_core::Stream;

use sitebucket_proto::Outcome;
use sitebucket_proto::SiteStream;
use sitebucket_thread::sync::lock;
use sitebucket_thread::{ItemSink, MessagesOnly, Resolver, RunState, Status, StreamItem};

use crate::drive::drive_yielding;
use crate::runtime::Runtime;

type Inbox = Arc<Mutex<VecDeque<StreamItem>>>;
type Run = Pin<Box<dyn Future<Output = (SiteStream, Outcome)> + Send>>;

/// A [`SiteStream`] as a [`Stream`] of [`StreamItem`]s, run over the runtime `R`: each
/// message (its exact payload bytes) and each connection event (a response head, a failure
/// and the wait before the next attempt), in order, then [`StreamItem::Finished`] with the
/// run's outcome, then `None`.
///
/// The stream is driven by whoever polls it, in a context where `R`'s sockets and timers
/// work: connecting, reconnecting and backoff happen inside `next()` (from
/// `futures::StreamExt`, `futures_lite::StreamExt` or `tokio_stream::StreamExt`); nothing
/// runs in the background. Once it has finished, [`outcome`](Self::outcome) tells how too.
/// [`stop`](Self::stop) (or [`RunState::request_stop`] from another thread or task) ends it
/// promptly with [`Outcome::Stopped`]. [`messages_only`](Self::messages_only) keeps just the
/// messages' bytes; [`StreamItem::parse`] decodes a message into a typed
/// [`Message`](sitebucket_proto::Message).
///
/// The type is `Send` and `Unpin`. Dropping it drops the run: the socket is closed and a
/// lookup in progress abandoned at once. Each item spends a unit of the polling task's
/// cooperative budget where `R` has one ([`Runtime::poll_budget`]), so a loop over a flood
/// yields to the runtime now and then, as it would over the runtime's own channels.
///
/// The driver crates name it for their runtime (`sitebucket_smol::Messages`,
/// `sitebucket_tokio::Messages`) and make it with their `messages()`.
pub struct Messages<R> {
    inbox: Inbox,
    control: Arc<RunState>,
    run: Option<Run>,
    finished: Option<(SiteStream, Outcome)>,
    runtime: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Messages<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messages")
            .field("queued", &lock(&self.inbox).len())
            .field("running", &self.run.is_some())
            .field("outcome", &self.outcome())
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Messages<R> {
    /// Wraps `stream`; nothing happens until the first poll. Host names go to the system
    /// resolver: see [`with_resolver`](Self::with_resolver).
    pub fn new(stream: SiteStream) -> Self {
        Self::with_resolver(stream, Resolver::system())
    }

    /// Wraps `stream`, looking host names up with `resolver` on a lookup thread whose answer
    /// the stream awaits (see [`drive_with`](crate::drive_with)); nothing happens until the
    /// first poll.
    pub fn with_resolver(stream: SiteStream, resolver: Resolver) -> Self {
        let inbox = Inbox::default();
        let control = RunState::new();
        control.publish(&stream);
        let run: Run = {
            let inbox = inbox.clone();
            let control = control.clone();
            let mut stream = stream;
            Box::pin(async move {
                let mut parser = ItemSink::install(&control, move |item| {
                    lock(&inbox).push_back(item);
                });
                // A yield after every read bounds the inbox (see `poll_next`).
                let outcome =
                    drive_yielding::<R>(&mut stream, &mut parser, &control, &resolver, 1).await;
                (stream, outcome)
            })
        };
        Self {
            inbox,
            control,
            run: Some(run),
            finished: None,
            runtime: PhantomData,
        }
    }
}

impl<R> Messages<R> {
    /// Asks the stream to stop: it closes the connection and ends with
    /// [`Outcome::Stopped`] at the next poll, after handing out the items already
    /// received.
    pub fn stop(&self) {
        self.control.request_stop();
    }

    /// How the stream ended, once its run has (at the latest when `next()` yields
    /// [`StreamItem::Finished`]).
    pub fn outcome(&self) -> Option<&Outcome> {
        self.finished.as_ref().map(|(_, outcome)| outcome)
    }

    /// Only the messages' bytes: connection events are skipped, and the outcome is kept
    /// for [`MessagesOnly::outcome`].
    pub fn messages_only(self) -> MessagesOnly<Self> {
        MessagesOnly::new(self)
    }

    /// The live status (counters, health) published after each drain of the core.
    pub fn status(&self) -> Status {
        self.control.status()
    }

    /// The run's shared state: call [`RunState::request_stop`] on it to stop the stream
    /// from another thread or task.
    pub fn run_state(&self) -> &Arc<RunState> {
        &self.control
    }

    /// The stream back (e.g. to restart it after
    /// [`reset_throttles`](SiteStream::reset_throttles)), once it has ended; `None` before.
    pub fn into_stream(self) -> Option<SiteStream> {
        self.finished.map(|(stream, _)| stream)
    }
}

impl<R: Runtime> Stream for Messages<R> {
    type Item = StreamItem;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<StreamItem>> {
        let this = self.get_mut();
        let budget = std::task::ready!(R::poll_budget(cx));
        if let Some(item) = lock(&this.inbox).pop_front() {
            R::made_progress(budget);
            return Poll::Ready(Some(item));
        }
        let Some(run) = &mut this.run else {
            return Poll::Ready(None);
        };
        // The loop yields after each read it hands to the core, so one poll adds at most one
        // read's worth of items to the inbox.
        if let Poll::Ready((stream, outcome)) = run.as_mut().poll(cx) {
            this.run = None;
            // The last item, after everything the run queued.
            lock(&this.inbox).push_back(StreamItem::Finished(outcome.clone()));
            this.finished = Some((stream, outcome));
        }
        match lock(&this.inbox).pop_front() {
            Some(item) => {
                R::made_progress(budget);
                Poll::Ready(Some(item))
            }
            None => Poll::Pending,
        }
    }
}
