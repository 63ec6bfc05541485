//! Parsers: what happens to each complete message.
//!
//! The framer hands every complete message — its payload bytes without the trailing `\r\n`,
//! keep-alives already dropped — to a [`Parser`]. Three are provided:
//!
//! * any closure `FnMut(Bytes) + Send`, for raw bytes;
//! * [`DefaultParser`], which decodes each message into a typed [`Message`] and hands the
//!   result to a closure — a message that is not JSON arrives as `Err` and the stream goes on;
//! * [`Collect`], which keeps every message (handy in tests).
//!
//! ```
//! use bytes::Bytes;
//! use sitebucket_proto::{DefaultParser, Parser};
//!
//! let mut kinds = Vec::new();
//! let mut parser = DefaultParser::new(|message: Result<_, _>| match message {
//!     Ok(message) => kinds.push(sitebucket_proto::Message::kind(&message)),
//!     Err(_) => kinds.push("error"),
//! });
//! parser.parse(Bytes::from_static(br#"{"control":{"control_uri":"/1.1/site/c/x"}}"#));
//! parser.parse(Bytes::from_static(b"{not json"));
//! parser.parse(Bytes::from_static(br#"{"limit":{"track":3}}"#));
//! assert_eq!(kinds, ["control", "error", "limit"]);
//! ```

use std::fmt;

use bytes::Bytes;

use crate::message::{Message, ParseError};

/// Receives each complete message of a stream, in order.
pub trait Parser: Send {
    /// Handles one complete message: its payload bytes, without the trailing `\r\n`.
    fn parse(&mut self, message: Bytes);
}

impl<F: FnMut(Bytes) + Send> Parser for F {
    fn parse(&mut self, message: Bytes) {
        self(message)
    }
}

impl Parser for Box<dyn Parser> {
    fn parse(&mut self, message: Bytes) {
        (**self).parse(message)
    }
}

/// Decodes each message into a typed [`Message`] and passes the result to a closure.
///
/// The message borrows from the bytes for the duration of the call only; keep what you need
/// (or write your own [`Parser`] closure over the [`Bytes`] to keep them).
pub struct DefaultParser<F> {
    handler: F,
}

impl<F> DefaultParser<F>
where
    F: FnMut(Result<Message<'_>, ParseError>) + Send,
{
    /// A parser calling `handler` with every decoded message or decoding error.
    pub fn new(handler: F) -> Self {
        DefaultParser { handler }
    }

    /// The handler, back.
    pub fn into_inner(self) -> F {
        self.handler
    }
}

impl<F> Parser for DefaultParser<F>
where
    F: FnMut(Result<Message<'_>, ParseError>) + Send,
{
    fn parse(&mut self, message: Bytes) {
        (self.handler)(Message::from_slice(&message))
    }
}

impl<F> fmt::Debug for DefaultParser<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultParser").finish_non_exhaustive()
    }
}

/// Keeps every message it is given, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collect {
    messages: Vec<Bytes>,
}

impl Collect {
    /// An empty collector.
    pub fn new() -> Self {
        Collect::default()
    }

    /// The messages so far.
    pub fn messages(&self) -> &[Bytes] {
        &self.messages
    }

    /// Takes the messages so far, leaving the collector empty.
    pub fn take(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.messages)
    }

    /// The messages, consuming the collector.
    pub fn into_messages(self) -> Vec<Bytes> {
        self.messages
    }
}

impl Parser for Collect {
    fn parse(&mut self, message: Bytes) {
        self.messages.push(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ParseErrorKind, UserMessage};

    fn feed(parser: &mut dyn Parser, messages: &[&'static [u8]]) {
        for message in messages {
            parser.parse(Bytes::from_static(message));
        }
    }

    #[test]
    fn closures_are_parsers() {
        let mut seen = Vec::new();
        let mut parser = |message: Bytes| seen.push(message);
        feed(&mut parser, &[b"one", b"", b"three"]);
        assert_eq!(seen, [&b"one"[..], b"", b"three"]);
    }

    #[test]
    fn collect_keeps_messages_in_order() {
        let mut collect = Collect::new();
        feed(&mut collect, &[b"{\"a\":1}", b"not json"]);
        assert_eq!(collect.messages(), [&b"{\"a\":1}"[..], b"not json"]);
        assert_eq!(collect.take().len(), 2);
        assert!(collect.messages().is_empty());
        collect.parse(Bytes::from_static(b"x"));
        assert_eq!(collect.into_messages(), [Bytes::from_static(b"x")]);
    }

    #[test]
    fn default_parser_decodes_and_goes_on_after_an_error() {
        let mut seen: Vec<Result<(Option<u64>, &'static str), ParseErrorKind>> = Vec::new();
        let mut parser = DefaultParser::new(|result: Result<Message<'_>, ParseError>| {
            seen.push(
                result
                    .map(|m| (m.for_user(), m.kind()))
                    .map_err(|e| e.kind()),
            )
        });
        feed(
            &mut parser,
            &[
                br#"{"for_user":"42","message":{"friends":[1,2]}}"#,
                b"{\"for_user\":42,\"message\":",
                b"[1,2]",
                b"\xff\xfe",
                br#"{"for_user":42,"message":{"id_str":"7","text":"caf\u00e9\r\n"}}"#,
                br#"{"disconnect":{"code":6,"stream_name":"s","reason":"token revoked"}}"#,
            ],
        );
        assert_eq!(format!("{parser:?}"), "DefaultParser { .. }");
        assert_eq!(
            seen,
            [
                Ok((Some(42), "for_user/friends")),
                Err(ParseErrorKind::Truncated),
                Err(ParseErrorKind::NotAnObject),
                Err(ParseErrorKind::InvalidJson),
                Ok((Some(42), "for_user/tweet")),
                Ok((None, "disconnect")),
            ]
        );
    }

    #[test]
    fn default_parser_hands_over_borrowed_fields() {
        let mut texts = Vec::new();
        let mut parser = DefaultParser::new(|result: Result<Message<'_>, ParseError>| {
            if let Ok(Message::Unwrapped(UserMessage::Tweet(tweet))) = result {
                texts.push(tweet.text().into_owned());
            }
        });
        parser.parse(Bytes::from_static(br#"{"id":1,"text":"\ud83d\ude00 ok"}"#));
        parser.parse(Bytes::from_static(br#"{"id":2,"text":"plain"}"#));
        let _handler = parser.into_inner();
        assert_eq!(texts, ["😀 ok", "plain"]);
    }

    #[test]
    fn boxed_parsers_are_parsers_and_send() {
        fn takes_parser<P: Parser>(mut parser: P, message: &'static [u8]) {
            parser.parse(Bytes::from_static(message));
        }
        fn is_send<T: Send>(_: &T) {}
        let (sender, receiver) = std::sync::mpsc::channel();
        let boxed: Box<dyn Parser> =
            Box::new(move |message: Bytes| sender.send(message).expect("open"));
        is_send(&boxed);
        takes_parser(boxed, b"hello");
        assert_eq!(
            receiver.recv().expect("one message"),
            Bytes::from_static(b"hello")
        );
    }
}
