//! [`MessageStream`]: a [`SiteStream`] as a `futures_core::Stream` of messages.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;

use sitebucket_proto::stream::Outcome;
use sitebucket_proto::SiteStream;
use sitebucket_thread::{Control, Resolver, Status};

use crate::drive::drive_yielding;

type Inbox = Arc<Mutex<VecDeque<Bytes>>>;
type Run = Pin<Box<dyn Future<Output = (SiteStream, Outcome)> + Send>>;

fn lock(inbox: &Mutex<VecDeque<Bytes>>) -> MutexGuard<'_, VecDeque<Bytes>> {
    // A panic elsewhere while holding the lock leaves plain data behind; keep using it.
    inbox
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The messages of a [`SiteStream`] as a [`Stream`] of their exact payload bytes.
///
/// The stream is driven by whoever polls it (`smol::block_on`, a smol task, any executor
/// that lets smol's reactor run): connecting, reconnecting and backoff happen inside
/// [`next`](futures_lite::StreamExt::next). It ends (`None`) when the core finishes; then
/// [`outcome`](Self::outcome) tells how. [`stop`](Self::stop) (or
/// [`Control::request_stop`] from another thread) ends it promptly with
/// [`Outcome::Stopped`]; dropping it closes the connection at once.
///
/// ```no_run
/// use futures_lite::StreamExt;
/// use sitebucket_proto::{Config, Credentials, SiteStream};
/// use sitebucket_smol::MessageStream;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::builder([12, 13], Credentials::new("ck", "cs", "tk", "ts")).build()?;
/// smol::block_on(async {
///     let mut messages = MessageStream::new(SiteStream::new(config));
///     while let Some(message) = messages.next().await {
///         println!("{}", String::from_utf8_lossy(&message));
///     }
///     println!("ended: {:?}", messages.outcome());
/// });
/// # Ok(())
/// # }
/// ```
pub struct MessageStream {
    inbox: Inbox,
    control: Arc<Control>,
    run: Option<Run>,
    finished: Option<(SiteStream, Outcome)>,
}

impl std::fmt::Debug for MessageStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStream")
            .field("queued", &lock(&self.inbox).len())
            .field("running", &self.run.is_some())
            .field("outcome", &self.outcome())
            .finish_non_exhaustive()
    }
}

impl MessageStream {
    /// Wraps `stream`; nothing happens until the first poll. Host names go to the system
    /// resolver: see [`with_resolver`](Self::with_resolver).
    pub fn new(stream: SiteStream) -> Self {
        Self::with_resolver(stream, Resolver::system())
    }

    /// Wraps `stream`, looking host names up with `resolver` on a lookup thread whose
    /// answer the stream awaits (see [`drive_with`](crate::drive_with)); nothing happens
    /// until the first poll.
    pub fn with_resolver(stream: SiteStream, resolver: Resolver) -> Self {
        let inbox = Inbox::default();
        let control = Control::new();
        control.publish(&stream);
        let run: Run = {
            let inbox = inbox.clone();
            let control = control.clone();
            let mut stream = stream;
            Box::pin(async move {
                let mut parser = move |message: Bytes| lock(&inbox).push_back(message);
                // A yield after every read bounds the inbox (see `poll_next`).
                let outcome =
                    drive_yielding(&mut stream, &mut parser, &control, &resolver, 1).await;
                (stream, outcome)
            })
        };
        Self {
            inbox,
            control,
            run: Some(run),
            finished: None,
        }
    }

    /// Asks the stream to stop: it closes the connection and ends with
    /// [`Outcome::Stopped`] at the next poll, after handing out the messages already
    /// received.
    pub fn stop(&self) {
        self.control.request_stop();
    }

    /// How the stream ended, once [`next`](futures_lite::StreamExt::next) has returned `None`.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.finished.as_ref().map(|(_, outcome)| outcome)
    }

    /// The live status (counters, health) published after each drain of the core.
    pub fn status(&self) -> Status {
        self.control.status()
    }

    /// The shared control: call [`Control::request_stop`] on it to stop the stream from
    /// another thread or task.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// The stream back (e.g. to restart it after
    /// [`reset_throttles`](SiteStream::reset_throttles)), once it has ended; `None` before.
    pub fn into_stream(self) -> Option<SiteStream> {
        self.finished.map(|(stream, _)| stream)
    }
}

impl Stream for MessageStream {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        if let Some(message) = lock(&this.inbox).pop_front() {
            return Poll::Ready(Some(message));
        }
        let Some(run) = &mut this.run else {
            return Poll::Ready(None);
        };
        // The loop yields after each read it hands to the core, so one poll adds at most one
        // read's worth of messages to the inbox.
        let polled = run.as_mut().poll(cx);
        let next = lock(&this.inbox).pop_front();
        match (polled, next) {
            (Poll::Ready(done), next) => {
                this.run = None;
                this.finished = Some(done);
                Poll::Ready(next)
            }
            (Poll::Pending, Some(message)) => Poll::Ready(Some(message)),
            (Poll::Pending, None) => Poll::Pending,
        }
    }
}
