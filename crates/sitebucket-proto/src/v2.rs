//! Typed X API v2 stream messages, borrowing from the input.
//!
//! Every message of the v2 filtered and sample streams is one JSON object, the v2 envelope:
//!
//! * `data` — the tweet ([`V2Tweet`]);
//! * `includes` — the objects the `expansions` asked for ([`Includes`]: users, tweets, media,
//!   places, polls);
//! * `matching_rules` — on the filtered stream, the rules the tweet matched
//!   ([`MatchingRule`]);
//! * `errors` — problems ([`Problem`]). A message of `errors` with an
//!   `operational-disconnect` problem is the v2 **disconnect message**: the server is about to
//!   close the stream. [`SiteStream`](crate::SiteStream) recognises it by itself and treats it
//!   as a v1.1 `disconnect` (a network error: reconnect after a step).
//!
//! [`V2Message::from_slice`] decodes the envelope in one pass over the top level, keeping each
//! member's value as a borrowed [`RawValue`]; the members it types are then decoded from those
//! spans. Strings borrow from the input unless they hold escapes. Members it does not know —
//! at the top level, in `includes`, or inside a tweet — are never an error: unknown top-level
//! and `includes` members are passed through in `other`, and every typed object keeps its raw
//! JSON. Ids are strings in v2, but early payloads sent `matching_rules` ids as numbers (above
//! 2^53): both read exactly, as text.
//!
//! ```
//! use sitebucket_proto::v2::V2Message;
//!
//! let bytes = br#"{"data":{"id":"1377650090978992134","text":"Fury","author_id":"4602771083"},
//!     "matching_rules":[{"id":1377649934414049282,"tag":null}],"__twarc":{"k":1}}"#;
//! let message = V2Message::from_slice(bytes)?;
//! let tweet = message.tweet().unwrap();
//! assert_eq!(tweet.id.as_deref(), Some("1377650090978992134"));
//! assert_eq!(tweet.text.as_deref(), Some("Fury"));
//! assert_eq!(message.matching_rules[0].id, "1377649934414049282");
//! assert_eq!(message.other[0].0, "__twarc");
//! assert!(!message.is_operational_disconnect());
//! # Ok::<(), sitebucket_proto::message::ParseError>(())
//! ```

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::message::ParseError;

/// One v2 stream message: the envelope, decoded, borrowing from its bytes.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct V2Message<'a> {
    /// `data`: the tweet, if the message carries one.
    pub data: Option<V2Data<'a>>,
    /// `includes`: the expanded objects, if any.
    pub includes: Option<Includes<'a>>,
    /// `matching_rules`: the filtered stream's rules this tweet matched (empty when absent).
    pub matching_rules: Vec<MatchingRule<'a>>,
    /// `errors`: problems (empty when absent).
    pub errors: Vec<Problem<'a>>,
    /// Every other top-level member, in order, with its raw JSON.
    pub other: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// The `data` member.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum V2Data<'a> {
    /// A tweet object (the stream's `data` is always one).
    Tweet(V2Tweet<'a>),
    /// A `data` that is not an object (an array, say), passed through.
    Other(&'a RawValue),
}

/// A v2 tweet: the fields most consumers read, and the whole object raw.
///
/// Which fields are present depends on the `tweet.fields` asked for; `id` and `text` always
/// are. A field of an unexpected type reads as `None` rather than failing the message.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct V2Tweet<'a> {
    /// `id`.
    pub id: Option<Cow<'a, str>>,
    /// `text`.
    pub text: Option<Cow<'a, str>>,
    /// `author_id`.
    pub author_id: Option<Cow<'a, str>>,
    /// `conversation_id`.
    pub conversation_id: Option<Cow<'a, str>>,
    /// `created_at` (ISO 8601).
    pub created_at: Option<Cow<'a, str>>,
    /// `lang`.
    pub lang: Option<Cow<'a, str>>,
    /// `in_reply_to_user_id`.
    pub in_reply_to_user_id: Option<Cow<'a, str>>,
    /// The whole tweet object, as received.
    pub raw: &'a RawValue,
}

/// A v2 user (from `includes.users`): its names, and the whole object raw.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct V2User<'a> {
    /// `id`.
    pub id: Option<Cow<'a, str>>,
    /// `name`: the display name.
    pub name: Option<Cow<'a, str>>,
    /// `username`: the handle, without `@`.
    pub username: Option<Cow<'a, str>>,
    /// The whole user object, as received.
    pub raw: &'a RawValue,
}

/// The `includes` member: objects referenced by the tweet, as `expansions` asked.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Includes<'a> {
    /// `users`.
    pub users: Vec<V2User<'a>>,
    /// `tweets`: referenced tweets (quoted, replied to, retweeted).
    pub tweets: Vec<V2Tweet<'a>>,
    /// `media`, raw.
    pub media: Vec<&'a RawValue>,
    /// `places`, raw.
    pub places: Vec<&'a RawValue>,
    /// `polls`, raw.
    pub polls: Vec<&'a RawValue>,
    /// Every other member of `includes` (or a known one of an unexpected shape), raw.
    pub other: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// One rule a tweet matched on the filtered stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MatchingRule<'a> {
    /// The rule's id (a string in v2; a number in early payloads, read exactly as text).
    pub id: Cow<'a, str>,
    /// The rule's tag, if it has one.
    pub tag: Option<Cow<'a, str>>,
}

/// A v2 problem (an element of `errors`), RFC 7807-like.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Problem<'a> {
    /// `title`, e.g. `operational-disconnect` or `ConnectionException`.
    pub title: Option<Cow<'a, str>>,
    /// `detail`: what happened, for people.
    pub detail: Option<Cow<'a, str>>,
    /// `type`: a URI naming the problem, e.g.
    /// `https://api.twitter.com/2/problems/operational-disconnect`.
    pub problem_type: Option<Cow<'a, str>>,
    /// `disconnect_type`, on an operational disconnect (e.g. `UpstreamOperationalDisconnect`).
    pub disconnect_type: Option<Cow<'a, str>>,
    /// `connection_issue`, on a connection problem (e.g. `TooManyConnections`).
    pub connection_issue: Option<Cow<'a, str>>,
    /// The whole problem object, as received.
    pub raw: &'a RawValue,
}

impl<'a> V2Message<'a> {
    /// Decodes one v2 message. Fails only when the bytes are not JSON or the top level is
    /// not an object; anything unexpected inside is passed through (see the module docs).
    pub fn from_slice(bytes: &'a [u8]) -> Result<V2Message<'a>, ParseError> {
        let members: Members<'a> =
            serde_json::from_slice(bytes).map_err(|error| ParseError::from_json(&error, bytes))?;
        let mut message = V2Message::default();
        for (key, raw) in members.0 {
            match key.as_ref() {
                "data" => message.data = Some(decode_data(raw)),
                "includes" => match decode_includes(raw) {
                    Some(includes) => message.includes = Some(includes),
                    None => message.other.push((key, raw)),
                },
                "matching_rules" => match decode_list::<RuleFields<'a>>(raw) {
                    Some(rules) => {
                        message.matching_rules = rules
                            .into_iter()
                            .map(|(rule, _)| MatchingRule {
                                id: rule.id.map(|t| t.0).unwrap_or_default(),
                                tag: rule.tag.map(|t| t.0),
                            })
                            .collect()
                    }
                    None => message.other.push((key, raw)),
                },
                "errors" => match decode_list::<ProblemFields<'a>>(raw) {
                    Some(problems) => {
                        message.errors = problems
                            .into_iter()
                            .map(|(p, raw)| p.into_problem(raw))
                            .collect()
                    }
                    None => message.other.push((key, raw)),
                },
                _ => message.other.push((key, raw)),
            }
        }
        Ok(message)
    }

    /// The tweet in `data`, if there is one.
    pub fn tweet(&self) -> Option<&V2Tweet<'a>> {
        match &self.data {
            Some(V2Data::Tweet(tweet)) => Some(tweet),
            _ => None,
        }
    }

    /// Whether this is the v2 disconnect message: an `operational-disconnect` problem in
    /// `errors`.
    pub fn is_operational_disconnect(&self) -> bool {
        self.errors.iter().any(Problem::is_operational_disconnect)
    }

    /// A short name for the message's kind: `"tweet"` (a `data`), `"disconnect"` (an
    /// operational disconnect), `"errors"` (problems and no data), or `"unknown"`.
    pub fn kind(&self) -> &'static str {
        if self.is_operational_disconnect() {
            "disconnect"
        } else if self.data.is_some() {
            "tweet"
        } else if !self.errors.is_empty() {
            "errors"
        } else {
            "unknown"
        }
    }
}

impl Problem<'_> {
    /// Whether this problem is an operational disconnect: its `title` is
    /// `operational-disconnect`, or its `type` URI ends in `/operational-disconnect` (or
    /// `#operational-disconnect`, as X's newer documentation links spell it).
    pub fn is_operational_disconnect(&self) -> bool {
        const NAME: &str = "operational-disconnect";
        self.title.as_deref() == Some(NAME)
            || self.problem_type.as_deref().is_some_and(|t| {
                t.strip_suffix(NAME)
                    .is_some_and(|rest| rest.ends_with('/') || rest.ends_with('#'))
            })
    }
}

impl fmt::Display for Problem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let title = self.title.as_deref().unwrap_or("problem");
        match self.detail.as_deref() {
            Some(detail) => write!(f, "{title}: {detail}"),
            None => f.write_str(title),
        }
    }
}

/// Decodes each message of a v2 stream into a typed [`V2Message`] and passes the result to
/// a closure: the v2 counterpart of [`DefaultParser`](crate::parser::DefaultParser). A
/// message that is not JSON arrives as `Err` and the stream goes on.
///
/// ```
/// use bytes::Bytes;
/// use sitebucket_proto::Parser;
/// use sitebucket_proto::v2::V2Parser;
///
/// let mut kinds = Vec::new();
/// let mut parser = V2Parser::new(|message: Result<_, _>| match message {
///     Ok(message) => kinds.push(sitebucket_proto::V2Message::kind(&message)),
///     Err(_) => kinds.push("error"),
/// });
/// parser.parse(Bytes::from_static(br#"{"data":{"id":"1","text":"hi"}}"#));
/// parser.parse(Bytes::from_static(b"{cut"));
/// assert_eq!(kinds, ["tweet", "error"]);
/// ```
pub struct V2Parser<F> {
    handler: F,
}

impl<F> V2Parser<F>
where
    F: FnMut(Result<V2Message<'_>, ParseError>) + Send,
{
    /// A parser calling `handler` with every decoded message or decoding error.
    pub fn new(handler: F) -> Self {
        V2Parser { handler }
    }

    /// The handler, back.
    pub fn into_inner(self) -> F {
        self.handler
    }
}

impl<F> crate::parser::Parser for V2Parser<F>
where
    F: FnMut(Result<V2Message<'_>, ParseError>) + Send,
{
    fn parse(&mut self, message: bytes::Bytes) {
        (self.handler)(V2Message::from_slice(&message))
    }
}

impl<F> fmt::Debug for V2Parser<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V2Parser").finish_non_exhaustive()
    }
}

/// The first operational-disconnect problem of a message, if it has one: what the stream
/// looks for in a message whose first key is `errors`.
pub(crate) fn operational_disconnect(bytes: &[u8]) -> Option<Problem<'_>> {
    V2Message::from_slice(bytes)
        .ok()?
        .errors
        .into_iter()
        .find(Problem::is_operational_disconnect)
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

fn decode_data(raw: &RawValue) -> V2Data<'_> {
    match decode_object::<TweetFields<'_>>(raw) {
        Some(fields) => V2Data::Tweet(fields.into_tweet(raw)),
        None => V2Data::Other(raw),
    }
}

/// `raw` decoded as `T` if it is a JSON object (a derived `T` would also read an array,
/// field by field).
fn decode_object<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Option<T> {
    if !raw.get().starts_with('{') {
        return None;
    }
    serde_json::from_str(raw.get()).ok()
}

fn decode_includes(raw: &RawValue) -> Option<Includes<'_>> {
    let members: Members<'_> = serde_json::from_str(raw.get()).ok()?;
    let mut includes = Includes::default();
    for (key, value) in members.0 {
        let known = match key.as_ref() {
            "users" => decode_list::<UserFields<'_>>(value)
                .map(|users| {
                    includes.users = users
                        .into_iter()
                        .map(|(u, raw)| V2User {
                            id: u.id.map(|t| t.0),
                            name: u.name.map(|t| t.0),
                            username: u.username.map(|t| t.0),
                            raw,
                        })
                        .collect()
                })
                .is_some(),
            "tweets" => decode_list::<TweetFields<'_>>(value)
                .map(|tweets| {
                    includes.tweets = tweets
                        .into_iter()
                        .map(|(t, raw)| t.into_tweet(raw))
                        .collect()
                })
                .is_some(),
            "media" => raw_list(value).map(|v| includes.media = v).is_some(),
            "places" => raw_list(value).map(|v| includes.places = v).is_some(),
            "polls" => raw_list(value).map(|v| includes.polls = v).is_some(),
            _ => false,
        };
        if !known {
            includes.other.push((key, value));
        }
    }
    Some(includes)
}

/// The elements of a JSON array, raw.
fn raw_list(raw: &RawValue) -> Option<Vec<&RawValue>> {
    serde_json::from_str(raw.get()).ok()
}

/// Every element of a JSON array decoded as `T`, each beside its raw JSON; `None` if it is
/// not an array of objects `T` reads.
fn decode_list<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Option<Vec<(T, &'a RawValue)>> {
    raw_list(raw)?
        .into_iter()
        .map(|item| decode_object::<T>(item).map(|t| (t, item)))
        .collect()
}

/// A JSON string, borrowed where it can be; a number (an id) reads as its decimal text.
/// Other JSON types are refused (and read as `None` through [`lenient`]).
#[derive(Clone, Debug)]
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// A [`Text`], or `None` for `null` or a value of any other type (skipped).
fn lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Text<'de>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Text<'de>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Text(Cow::Borrowed(v))))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Text(Cow::Owned(v.to_owned()))))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Text(Cow::Owned(v.to_string()))))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(Text(Cow::Owned(v.to_string()))))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// The members of a JSON object in order, each value raw; keys borrowed unless escaped.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
struct TweetFields<'a> {
    #[serde(default, borrow, deserialize_with = "lenient")]
    id: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient")]
    text: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient")]
    author_id: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient")]
    conversation_id: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient")]
    created_at: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient")]
    lang: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient")]
    in_reply_to_user_id: Option<Text<'a>>,
}

impl<'a> TweetFields<'a> {
    fn into_tweet(self, raw: &'a RawValue) -> V2Tweet<'a> {
        V2Tweet {
            id: self.id.map(|t| t.0),
            text: self.text.map(|t| t.0),
            author_id: self.author_id.map(|t| t.0),
            conversation_id: self.conversation_id.map(|t| t.0),
            created_at: self.created_at.map(|t| t.0),
            lang: self.lang.map(|t| t.0),
            in_reply_to_user_id: self.in_reply_to_user_id.map(|t| t.0),
            raw,
        }
    }
}

#[derive(Deserialize)]
struct UserFields<'a> {
    #[serde(default, borrow, deserialize_with = "lenient")]
    id: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient")]
    name: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient")]
    username: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct RuleFields<'a> {
    #[serde(default, borrow, deserialize_with = "lenient")]
    id: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient")]
    tag: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct ProblemFields<'a> {
    #[serde(default, borrow, deserialize_with = "lenient")]
    title: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient")]
    detail: Option<Text<'a>>,
    #[serde(default, borrow, rename = "type", deserialize_with = "lenient")]
    problem_type: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient")]
    disconnect_type: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "lenient")]
    connection_issue: Option<Text<'a>>,
}

impl<'a> ProblemFields<'a> {
    fn into_problem(self, raw: &'a RawValue) -> Problem<'a> {
        Problem {
            title: self.title.map(|t| t.0),
            detail: self.detail.map(|t| t.0),
            problem_type: self.problem_type.map(|t| t.0),
            disconnect_type: self.disconnect_type.map(|t| t.0),
            connection_issue: self.connection_issue.map(|t| t.0),
            raw,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operational-disconnect message as go-twitter's tests hold it: pretty-printed, with
    /// raw newlines and tabs (see tests/fixtures/v2/README.md).
    const DISCONNECT: &str = "{\n\t\"errors\": [{\n\t\t\"title\": \"operational-disconnect\",\n\t\t\"disconnect_type\": \"UpstreamOperationalDisconnect\",\n\t\t\"detail\": \"This stream has been disconnected upstream for operational reasons.\",\n\t\t\"type\": \"https://api.twitter.com/2/problems/operational-disconnect\"\n\t}]\n}";

    fn is_borrowed(cow: &Option<Cow<'_, str>>) -> bool {
        matches!(cow, Some(Cow::Borrowed(_)))
    }

    #[test]
    fn a_tweet_with_includes_and_rules_borrows_its_strings() {
        let bytes = br#"{"data":{"id":"20","text":"just setting up my twttr","author_id":"12","edit_history_tweet_ids":["20"]},"includes":{"users":[{"id":"12","name":"jack","username":"jack"}],"media":[{"media_key":"3_1"}],"topics":[1]},"matching_rules":[{"id":"1","tag":"t"}]}"#;
        let m = V2Message::from_slice(bytes).unwrap();
        let tweet = m.tweet().unwrap();
        assert_eq!(tweet.text.as_deref(), Some("just setting up my twttr"));
        assert!(is_borrowed(&tweet.text) && is_borrowed(&tweet.id));
        // Zero-copy: the text points into the input.
        let text = tweet.text.as_deref().unwrap();
        let range = bytes.as_ptr_range();
        assert!(range.contains(&text.as_ptr()));
        assert!(tweet.raw.get().contains("edit_history_tweet_ids"));
        let includes = m.includes.as_ref().unwrap();
        assert_eq!(includes.users[0].username.as_deref(), Some("jack"));
        assert_eq!(includes.media.len(), 1);
        assert_eq!(includes.other[0].0, "topics");
        assert_eq!(
            m.matching_rules,
            [MatchingRule {
                id: "1".into(),
                tag: Some("t".into())
            }]
        );
        assert_eq!(m.kind(), "tweet");
    }

    #[test]
    fn the_operational_disconnect_is_recognised() {
        let m = V2Message::from_slice(DISCONNECT.as_bytes()).unwrap();
        assert!(m.is_operational_disconnect());
        assert_eq!(m.kind(), "disconnect");
        let p = &m.errors[0];
        assert_eq!(
            p.disconnect_type.as_deref(),
            Some("UpstreamOperationalDisconnect")
        );
        assert!(operational_disconnect(DISCONNECT.as_bytes()).is_some());
        // By its type alone, and with the newer documentation anchor.
        for problem in [
            r#"{"errors":[{"type":"https://api.twitter.com/2/problems/operational-disconnect"}]}"#,
            r#"{"errors":[{"type":"https://developer.x.com/en/support/x-api/error-troubleshooting#operational-disconnect"}]}"#,
        ] {
            assert!(V2Message::from_slice(problem.as_bytes())
                .unwrap()
                .is_operational_disconnect());
        }
    }

    #[test]
    fn other_errors_are_not_a_disconnect() {
        for other in [
            r#"{"errors":[{"title":"ConnectionException","detail":"This stream is currently at the maximum allowed connection limit.","connection_issue":"TooManyConnections","type":"https://api.twitter.com/2/problems/streaming-connection"}]}"#,
            r#"{"data":{"id":"1","text":"x"},"errors":[{"title":"Not Found Error","type":"https://api.twitter.com/2/problems/resource-not-found"}]}"#,
            r#"{"errors":[{"type":"https://example.com/not-operational-disconnect"}]}"#,
            r#"{"errors":"operational-disconnect"}"#,
        ] {
            let m = V2Message::from_slice(other.as_bytes()).unwrap();
            assert!(!m.is_operational_disconnect(), "{other}");
            assert!(operational_disconnect(other.as_bytes()).is_none());
        }
    }

    #[test]
    fn unexpected_shapes_pass_through() {
        let m = V2Message::from_slice(
            br#"{"data":[1,2],"includes":7,"matching_rules":{"id":1},"errors":null,"x":{}}"#,
        )
        .unwrap();
        assert!(matches!(m.data, Some(V2Data::Other(_))));
        assert!(m.includes.is_none() && m.matching_rules.is_empty() && m.errors.is_empty());
        let names: Vec<&str> = m.other.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(names, ["includes", "matching_rules", "errors", "x"]);
        // Fields of the wrong type read as None; the tweet is still a tweet.
        let m =
            V2Message::from_slice(br#"{"data":{"id":"1","text":{"no":1},"lang":true}}"#).unwrap();
        let tweet = m.tweet().unwrap();
        assert_eq!(tweet.id.as_deref(), Some("1"));
        assert!(tweet.text.is_none() && tweet.lang.is_none());
        assert_eq!(m.kind(), "tweet");
    }

    #[test]
    fn not_an_object_is_an_error() {
        for bad in [&b"[1]"[..], b"\"s\"", b"{", b""] {
            assert!(V2Message::from_slice(bad).is_err());
        }
        assert_eq!(V2Message::from_slice(b"{}").unwrap().kind(), "unknown");
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let m = V2Message::from_slice(br#"{"data":{"id":"1","text":"caf\u00e9 \ud83d\ude0a"}}"#)
            .unwrap();
        assert_eq!(m.tweet().unwrap().text.as_deref(), Some("café 😊"));
    }
}
