//! [`StreamItem`]: what every message source yields, and [`MessagesOnly`] for users who want
//! the messages alone.
//!
//! The std iterator, the smol `Stream` and the tokio `Stream` all yield the same item: each
//! message, each connection event in order with the messages, and the run's [`Outcome`] last.
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use sitebucket_thread::{MessagesOnly, StreamItem};
//! use sitebucket_proto::{Outcome, StreamError};
//!
//! let items = vec![
//!     StreamItem::Connected { status: 200, reason: "OK".into() },
//!     StreamItem::Message(Bytes::from_static(br#"{"limit":{"track":3}}"#)),
//!     StreamItem::Reconnecting { error: StreamError::Closed, retry_in: Duration::ZERO },
//!     StreamItem::Message(Bytes::from_static(br#"{"warning":{"code":"FALLING_BEHIND"}}"#)),
//!     StreamItem::Finished(Outcome::Stopped),
//! ];
//! // Typed parsing straight from the item.
//! let kinds: Vec<_> = items
//!     .iter()
//!     .filter_map(StreamItem::parse)
//!     .map(|message| message.map(|message| message.kind()))
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(kinds, ["limit", "warning"]);
//!
//! // Messages only, and the outcome kept for afterwards.
//! let mut messages = MessagesOnly::new(items.into_iter());
//! assert_eq!(messages.by_ref().count(), 2);
//! assert_eq!(messages.outcome(), Some(&Outcome::Stopped));
//! # Ok::<(), sitebucket_proto::ParseError>(())
//! ```

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use sitebucket_proto::message::{Message, ParseError};
use sitebucket_proto::Parser;
use sitebucket_proto::{Outcome, StreamError, StreamEvent};

use crate::run_state::{Observer, RunState};

/// What a message source (the std iterator, the smol and tokio `Stream`s) yields.
///
/// Each connection event comes in order with the messages; [`Finished`](Self::Finished) is
/// always the last item, after which the source ends. Keep-alives yield nothing.
///
/// `Debug` shows the message bytes and the errors as they are; neither carries a credential
/// (requests, where credentials live, are never part of an item).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StreamItem {
    /// One complete message: its exact payload bytes (zero-copy).
    Message(Bytes),
    /// A response head arrived (any status).
    Connected {
        /// HTTP status code.
        status: u16,
        /// Reason phrase as sent.
        reason: String,
    },
    /// The connection or attempt failed (drop, stall, disconnect message, HTTP error, …);
    /// the next attempt starts after `retry_in`. (A `disconnect` message has also arrived
    /// as a [`Message`](Self::Message) just before.)
    Reconnecting {
        /// Why.
        error: StreamError,
        /// The backoff wait before the next attempt.
        retry_in: Duration,
    },
    /// The run is over; always the last item.
    Finished(Outcome),
}

impl StreamItem {
    /// The item for one of the core's events: `None` for a keep-alive (and for any event
    /// kind a newer core adds that has no item yet).
    pub fn from_event(event: StreamEvent) -> Option<Self> {
        Self::try_from(event).ok()
    }

    /// The message's bytes, if this item is one.
    pub fn as_message(&self) -> Option<&Bytes> {
        match self {
            StreamItem::Message(message) => Some(message),
            _ => None,
        }
    }

    /// The message's bytes, if this item is one.
    pub fn into_message(self) -> Option<Bytes> {
        match self {
            StreamItem::Message(message) => Some(message),
            _ => None,
        }
    }

    /// The run's outcome, if this is the last item.
    pub fn outcome(&self) -> Option<&Outcome> {
        match self {
            StreamItem::Finished(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// Whether this is the last item ([`Finished`](Self::Finished)).
    pub fn is_finished(&self) -> bool {
        matches!(self, StreamItem::Finished(_))
    }

    /// The message decoded into a typed [`Message`] borrowing from the item (as
    /// [`DefaultParser`](sitebucket_proto::DefaultParser) does for each message), or `None`
    /// if this item is not a message. A message that is not JSON is `Some(Err(_))`.
    pub fn parse(&self) -> Option<Result<Message<'_>, ParseError>> {
        self.as_message().map(|bytes| Message::from_slice(bytes))
    }
}

/// The same conversion as [`StreamItem::from_event`], giving back an event with no item (a
/// keep-alive).
impl TryFrom<StreamEvent> for StreamItem {
    type Error = StreamEvent;

    fn try_from(event: StreamEvent) -> Result<Self, StreamEvent> {
        match event {
            StreamEvent::Message(message) => Ok(StreamItem::Message(message)),
            StreamEvent::Connected { status, reason } => {
                Ok(StreamItem::Connected { status, reason })
            }
            StreamEvent::Disconnected { error, retry_in } => {
                Ok(StreamItem::Reconnecting { error, retry_in })
            }
            other => Err(other),
        }
    }
}

impl From<Outcome> for StreamItem {
    fn from(outcome: Outcome) -> Self {
        StreamItem::Finished(outcome)
    }
}

/// Where a driver's run sends its items: the [`Parser`] half of [`ItemSink::install`].
///
/// A message source built on a [`Driver`](crate::Driver) (or a driver's own loop) runs the
/// stream with this parser; messages reach the sink through it and every other event
/// through [`RunState::observe`], in the order the core reported them (both are called on
/// the driver's thread). An [`Observer`] set on the same control still sees every event.
/// The source adds [`StreamItem::Finished`] itself when the run returns its outcome.
pub struct ItemSink {
    sink: Arc<dyn Fn(StreamItem) + Send + Sync>,
}

impl std::fmt::Debug for ItemSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemSink").finish_non_exhaustive()
    }
}

impl ItemSink {
    /// Sends every item of a run on `control` to `sink`: hooks `control` so the events the
    /// driver reports there reach `sink` (leaving its [`Observer`], if any, in place) and
    /// returns the parser to run the stream with.
    pub fn install(control: &RunState, sink: impl Fn(StreamItem) + Send + Sync + 'static) -> Self {
        let sink: Arc<dyn Fn(StreamItem) + Send + Sync> = Arc::new(sink);
        control.set_item_events(Arc::new(EventForwarder(sink.clone())));
        Self { sink }
    }
}

impl Parser for ItemSink {
    fn parse(&mut self, message: Bytes) {
        (self.sink)(StreamItem::Message(message));
    }
}

struct EventForwarder(Arc<dyn Fn(StreamItem) + Send + Sync>);

impl Observer for EventForwarder {
    fn event(&self, event: &StreamEvent) {
        if !matches!(event, StreamEvent::KeepAlive) {
            if let Ok(item) = StreamItem::try_from(event.clone()) {
                (self.0)(item);
            }
        }
    }
}

/// A source of [`StreamItem`]s reduced to its messages' bytes: an [`Iterator`] over an
/// iterator of items, a [`Stream`] over a stream of items (the smol and tokio ones).
///
/// Connection events are skipped; the [`Finished`](StreamItem::Finished) outcome ends it
/// for good (nothing after it is read) and is kept for [`outcome`](Self::outcome). A
/// `Stream` inside must be [`Unpin`] (`Box::pin` one that is not).
#[derive(Debug, Clone)]
pub struct MessagesOnly<S> {
    inner: S,
    outcome: Option<Outcome>,
}

impl<S> MessagesOnly<S> {
    /// Wraps a source of items.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            outcome: None,
        }
    }

    /// How the run ended, once the [`Finished`](StreamItem::Finished) item has gone by.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// The source inside.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The source inside, mutably (e.g. to stop it).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The source back.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Keeps a message, records an outcome, skips the rest.
    fn take(&mut self, item: StreamItem) -> Option<Bytes> {
        match item {
            StreamItem::Message(message) => Some(message),
            StreamItem::Finished(outcome) => {
                self.outcome = Some(outcome);
                None
            }
            _ => None,
        }
    }
}

impl<I: Iterator<Item = StreamItem>> Iterator for MessagesOnly<I> {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.outcome.is_some() {
            return None;
        }
        loop {
            let item = self.inner.next()?;
            let finished = item.is_finished();
            if let Some(message) = self.take(item) {
                return Some(message);
            }
            if finished {
                return None;
            }
        }
    }
}

impl<S: Stream<Item = StreamItem> + Unpin> Stream for MessagesOnly<S> {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        if this.outcome.is_some() {
            return Poll::Ready(None);
        }
        loop {
            let Some(item) = std::task::ready!(Pin::new(&mut this.inner).poll_next(cx)) else {
                return Poll::Ready(None);
            };
            let finished = item.is_finished();
            if let Some(message) = this.take(item) {
                return Poll::Ready(Some(message));
            }
            if finished {
                return Poll::Ready(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &'static str) -> StreamItem {
        StreamItem::Message(Bytes::from_static(text.as_bytes()))
    }

    fn items() -> Vec<StreamItem> {
        vec![
            StreamItem::Connected {
                status: 503,
                reason: "Service Unavailable".into(),
            },
            StreamItem::Reconnecting {
                error: StreamError::Status {
                    status: 503,
                    reason: "Service Unavailable".into(),
                },
                retry_in: Duration::from_secs(5),
            },
            StreamItem::Connected {
                status: 200,
                reason: "OK".into(),
            },
            message("one"),
            message("two"),
            StreamItem::Finished(Outcome::Stopped),
        ]
    }

    #[test]
    fn events_become_items_and_keep_alives_nothing() {
        let bytes = Bytes::from_static(b"{}");
        assert_eq!(
            StreamItem::from_event(StreamEvent::Message(bytes.clone())),
            Some(StreamItem::Message(bytes))
        );
        assert_eq!(StreamItem::from_event(StreamEvent::KeepAlive), None);
        assert_eq!(
            StreamItem::try_from(StreamEvent::KeepAlive),
            Err(StreamEvent::KeepAlive)
        );
        assert_eq!(
            StreamItem::try_from(StreamEvent::Message(Bytes::from_static(b"x"))),
            Ok(message("x"))
        );
        assert_eq!(
            StreamItem::from_event(StreamEvent::Connected {
                status: 420,
                reason: "Enhance Your Calm".into()
            }),
            Some(StreamItem::Connected {
                status: 420,
                reason: "Enhance Your Calm".into()
            })
        );
        assert_eq!(
            StreamItem::from_event(StreamEvent::Disconnected {
                error: StreamError::Stall(Duration::from_secs(90)),
                retry_in: Duration::from_millis(250),
            }),
            Some(StreamItem::Reconnecting {
                error: StreamError::Stall(Duration::from_secs(90)),
                retry_in: Duration::from_millis(250),
            })
        );
    }

    #[test]
    fn the_helpers_pick_out_messages_and_the_outcome() {
        let items = items();
        let messages: Vec<_> = items.iter().filter_map(StreamItem::as_message).collect();
        assert_eq!(
            messages,
            [&Bytes::from_static(b"one"), &Bytes::from_static(b"two")]
        );
        assert_eq!(items[0].clone().into_message(), None);
        assert_eq!(
            items[3].clone().into_message(),
            Some(Bytes::from_static(b"one"))
        );
        assert!(items[5].is_finished() && !items[3].is_finished());
        assert_eq!(items[5].outcome(), Some(&Outcome::Stopped));
        assert_eq!(items[1].outcome(), None);
        assert_eq!(StreamItem::from(Outcome::Stopped), items[5]);
    }

    #[test]
    fn parse_decodes_messages_and_reports_bad_json() {
        let control = message(r#"{"control":{"control_uri":"/1.1/site/c/x"}}"#);
        assert_eq!(control.parse().unwrap().unwrap().kind(), "control");
        assert!(message("{not json").parse().unwrap().is_err());
        assert!(StreamItem::Finished(Outcome::Stopped).parse().is_none());
    }

    #[test]
    fn an_item_sink_sends_messages_and_events_in_order() {
        use std::sync::Mutex;

        let control = RunState::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let mut parser = ItemSink::install(&control, move |item| log.lock().unwrap().push(item));
        // A user's observer, set afterwards, sees the events too without taking them away.
        struct Count(Mutex<usize>);
        impl Observer for Count {
            fn event(&self, _: &StreamEvent) {
                *self.0.lock().unwrap() += 1;
            }
        }
        let count = Arc::new(Count(Mutex::new(0)));
        control.set_observer(count.clone());
        control.observe(&StreamEvent::Connected {
            status: 200,
            reason: "OK".into(),
        });
        control.observe(&StreamEvent::KeepAlive);
        parser.parse(Bytes::from_static(b"one"));
        control.observe(&StreamEvent::Disconnected {
            error: StreamError::Closed,
            retry_in: Duration::ZERO,
        });
        assert_eq!(
            *seen.lock().unwrap(),
            [
                StreamItem::Connected {
                    status: 200,
                    reason: "OK".into()
                },
                message("one"),
                StreamItem::Reconnecting {
                    error: StreamError::Closed,
                    retry_in: Duration::ZERO
                },
            ]
        );
        assert_eq!(*count.0.lock().unwrap(), 3);
    }

    #[test]
    fn messages_only_iterates_the_messages_and_keeps_the_outcome() {
        let mut only = MessagesOnly::new(items().into_iter());
        assert_eq!(only.outcome(), None);
        let got: Vec<_> = only.by_ref().collect();
        assert_eq!(
            got,
            [Bytes::from_static(b"one"), Bytes::from_static(b"two")]
        );
        assert_eq!(only.outcome(), Some(&Outcome::Stopped));
        // Nothing after the outcome, even if the source had more.
        let mut more = items();
        more.push(message("late"));
        let mut only = MessagesOnly::new(more.into_iter());
        assert_eq!(only.by_ref().count(), 2);
        assert_eq!(only.next(), None);
        assert_eq!(only.into_inner().next(), Some(message("late")));
    }

    /// A `Stream` over a vector, returning `Pending` (and waking itself) before each item.
    struct Stuttering {
        items: std::vec::IntoIter<StreamItem>,
        ready: bool,
    }

    impl Stream for Stuttering {
        type Item = StreamItem;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<StreamItem>> {
            let ready = self.ready;
            self.ready = !ready;
            if !ready {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(self.items.next())
        }
    }

    #[test]
    fn messages_only_streams_the_messages_and_keeps_the_outcome() {
        use std::task::Wake;

        struct Noop;
        impl Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        let waker = std::task::Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut only = MessagesOnly::new(Stuttering {
            items: items().into_iter(),
            ready: false,
        });
        let mut got = Vec::new();
        let mut pendings = 0;
        for _ in 0..100 {
            match Pin::new(&mut only).poll_next(&mut cx) {
                Poll::Ready(Some(message)) => got.push(message),
                Poll::Ready(None) => break,
                Poll::Pending => pendings += 1,
            }
        }
        assert_eq!(
            got,
            [Bytes::from_static(b"one"), Bytes::from_static(b"two")]
        );
        assert!(pendings > 0);
        assert_eq!(only.outcome(), Some(&Outcome::Stopped));
    }
}
