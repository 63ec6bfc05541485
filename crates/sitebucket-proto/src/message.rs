//! Typed Site Streams messages, decoded in one pass and borrowing from the input.
//!
//! A stream delivers JSON objects. [`Message::from_slice`] sorts each one into a kind by the
//! keys it has — the same way Twitter's own clients did — and decodes the few fields that
//! matter for that kind:
//!
//! * unwrapped control messages: [`Message::Control`] (`{"control":{"control_uri":…}}`) and
//!   [`Message::Disconnect`];
//! * the Site Streams envelope `{"for_user": id, "message": {…}}` as [`Message::ForUser`]
//!   (`for_user` may be a number or a string; ids are `u64`, never `f64`);
//! * everything else, which may come wrapped or unwrapped (user and filter streams send tweets,
//!   deletes, warnings and limits without an envelope), as a [`UserMessage`] — inside
//!   [`Message::ForUser`] or [`Message::Unwrapped`].
//!
//! An object of a kind this module does not know — or a known key whose value has an
//! unexpected shape — is never an error: it comes back as [`UserMessage::Unknown`] with its raw
//! JSON. Only input that is not JSON at all, or whose top level is not an object, is a
//! [`ParseError`].
//!
//! # Performance and borrowing
//!
//! Decoding is a single pass over the bytes with hand-written serde visitors: keys are
//! matched as they come, values the message kind does not need are skipped with
//! [`IgnoredAny`], and nothing is built into a [`serde_json::Value`]. Strings are
//! [`Cow`]s that borrow from the input unless they contain escapes, which must be decoded
//! (`"caf\u00e9"`, `"\r\n"`). Sub-objects kept whole (an event's `target_object`) are borrowed
//! [`RawValue`]s.
//!
//! A [`Tweet`] has no raw copy of itself: the decoder reads the tweet's fields while it scans
//! it, and serde_json cannot also hand back the span it just scanned, so a raw copy would cost
//! a second pass over every tweet — the commonest and largest message. Keep the message bytes
//! instead (a [`Parser`](crate::parser::Parser) receives them as [`bytes::Bytes`]) and use
//! [`raw_at`] or your own serde type on them for anything else. The rare kinds that do carry
//! their raw JSON ([`UserMessage::Unknown`], [`DirectMessage::raw`]) pay for that with a second
//! scan of the same message.
//!
//! # Keeping a message, and writing it out
//!
//! [`Message::into_owned`] turns a message that borrows from the read buffer into a
//! `Message<'static>` that owns its strings and raw JSON, to send to another thread or keep
//! past the callback. Every type here implements [`serde::Serialize`], in a shape close to the
//! wire format: `{"control":{…}}`, `{"disconnect":{"code":6,…}}`, `{"for_user":12,"message":…}`
//! for the envelope, and a payload as `{"<kind>":{…}}` with its decoded fields (`{"tweet":{"id":…,
//! "text":…}}`, `{"friends":[…]}`, `{"event":{"kind":"favorite",…}}`; the kind names are those of
//! [`UserMessage::kind`]). Fields that are absent are left out; an unknown payload is written
//! as its raw JSON, unchanged. Ids are JSON numbers (exact: they are `u64`).
//!
//! # Example
//!
//! ```
//! use sitebucket_proto::message::{Message, UserMessage};
//!
//! let bytes = br#"{"for_user":"1888","message":{"id":1,"id_str":"1","text":"caf\u00e9"}}"#;
//! let message = Message::from_slice(bytes)?;
//! assert_eq!(message.kind(), "for_user/tweet");
//! match message {
//!     Message::ForUser { for_user, message: UserMessage::Tweet(tweet) } => {
//!         assert_eq!(for_user, 1888);
//!         assert_eq!(tweet.text, "café");
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok::<(), sitebucket_proto::message::ParseError>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// One decoded stream message, borrowing from the bytes it was decoded from.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Message<'a> {
    /// `{"control":{"control_uri":"/1.1/site/c/<stream_id>"}}`: the stream's control URI, for
    /// adding and removing users on the live connection. Invalid after a disconnect.
    Control(Control<'a>),
    /// `{"disconnect":{"code":…,"stream_name":…,"reason":…}}`: the server is about to close
    /// the connection.
    Disconnect(Disconnect<'a>),
    /// The Site Streams envelope `{"for_user": id, "message": {…}}`.
    ForUser {
        /// The followed user this message is for (`for_user`, a number or a string).
        for_user: u64,
        /// The message itself.
        message: UserMessage<'a>,
    },
    /// A message without an envelope: stall warnings and limit notices on Site Streams, and
    /// every message of user or filter streams (tweets, deletes, events, …). Objects of no
    /// known kind come here as [`UserMessage::Unknown`].
    Unwrapped(UserMessage<'a>),
}

/// The payload kinds shared by the `for_user` envelope and unwrapped messages.
///
/// Serialized as `{"<kind>": …}` with the names of [`UserMessage::kind`]; [`Unknown`]
/// as its raw JSON.
///
/// [`Unknown`]: UserMessage::Unknown
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UserMessage<'a> {
    /// `{"friends":[id,…]}`: the ids the user follows, sent first on every connection.
    Friends(Vec<u64>),
    /// `{"friends_str":["id",…]}` (with `stringify_friend_ids=true`), ids parsed to `u64`.
    FriendsStr(Vec<u64>),
    /// A tweet (status): an object with `id`/`id_str` and `text` or `full_text`.
    Tweet(Tweet<'a>),
    /// `{"delete":{"status":{…}}}` or `{"delete":{"direct_message":{…}}}`.
    Delete(Delete),
    /// `{"scrub_geo":{…}}`: remove geo data from the user's tweets up to a status id.
    ScrubGeo(ScrubGeo),
    /// `{"limit":{"track":n}}`: `n` matching tweets were not delivered.
    Limit(Limit),
    /// `{"status_withheld":{…}}`: a tweet is withheld in some countries.
    StatusWithheld(StatusWithheld<'a>),
    /// `{"user_withheld":{…}}`: a user is withheld in some countries.
    UserWithheld(UserWithheld<'a>),
    /// `{"direct_message":{…}}` — or a bare direct message object (with `sender`/`recipient`
    /// fields), as some clients' fixtures hold it.
    DirectMessage(DirectMessage<'a>),
    /// `{"event":"favorite",…}` and the other activity events.
    Event(Event<'a>),
    /// `{"warning":{…}}`: a stall warning or a follows-over-limit notice.
    Warning(Warning<'a>),
    /// An object of no kind known here, or a known kind with fields of unexpected types,
    /// passed through with its raw JSON.
    #[serde(untagged)]
    Unknown(Cow<'a, RawValue>),
}

/// A `control` message: the URI of the stream's control endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Control<'a> {
    /// The `control_uri` as sent, e.g. `/1.1/site/c/01_225167_334389048B872A533002B34D73F8C29FD09EFC50`.
    pub control_uri: Cow<'a, str>,
}

/// A `disconnect` message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Disconnect<'a> {
    /// Why the stream is being closed.
    pub code: DisconnectCode,
    /// The `stream_name` field (empty when absent).
    pub stream_name: Cow<'a, str>,
    /// The human-readable `reason` field (empty when absent).
    pub reason: Cow<'a, str>,
}

/// The documented `disconnect` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectCode {
    /// 1: the server shut the connection down.
    Shutdown,
    /// 2: another connection with the same credentials was opened.
    DuplicateStream,
    /// 3: closed by a control request (e.g. a `remove_user` that emptied the stream).
    ControlRequest,
    /// 4: the client was reading too slowly (stall).
    Stall,
    /// 5: a normal disconnect.
    Normal,
    /// 6: the OAuth token was revoked.
    TokenRevoked,
    /// 7: an administrator logged the user out.
    AdminLogout,
    /// 8: reserved for internal use.
    Reserved,
    /// 9: the stream reached its maximum message limit.
    MaxMessageLimit,
    /// 10: an internal error in the stream.
    StreamException,
    /// 11: an internal error in the message broker.
    BrokerStall,
    /// 12: the server is shedding load.
    ShedLoad,
    /// Any other code.
    Other(u32),
}

/// A `warning` message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning<'a> {
    /// What the warning is about.
    pub code: WarningCode<'a>,
    /// The human-readable `message` (empty when absent).
    pub message: Cow<'a, str>,
    /// How full the server's queue for this stream is, in percent (`FALLING_BEHIND`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent_full: Option<u32>,
    /// The user concerned (`FOLLOWS_OVER_LIMIT`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u64>,
    /// When the warning was issued, in milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<u64>,
}

/// The `code` of a [`Warning`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WarningCode<'a> {
    /// `FALLING_BEHIND`: the client reads too slowly and will be disconnected when the queue is full.
    FallingBehind,
    /// `FOLLOWS_OVER_LIMIT`: the user follows more accounts than the stream delivers.
    FollowsOverLimit,
    /// Any other code, as sent.
    Other(Cow<'a, str>),
}

/// A `limit` notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limit {
    /// How many matching messages were not delivered since the connection opened.
    pub track: u64,
    /// When the notice was issued, in milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<u64>,
}

/// A `delete` notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Delete {
    /// Whether a tweet or a direct message was deleted.
    pub target: DeleteTarget,
    /// The id of the deleted tweet or direct message.
    pub id: u64,
    /// The id of its author.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u64>,
    /// When it was deleted, in milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<u64>,
}

/// What a [`Delete`] removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteTarget {
    /// `delete.status`: a tweet.
    Status,
    /// `delete.direct_message`: a direct message.
    DirectMessage,
}

/// A `scrub_geo` notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ScrubGeo {
    /// The user whose location data must be removed.
    pub user_id: u64,
    /// Remove it from tweets up to and including this id.
    pub up_to_status_id: u64,
    /// When the notice was issued, in milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<u64>,
}

/// A `status_withheld` notice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusWithheld<'a> {
    /// The withheld tweet.
    pub id: u64,
    /// Its author.
    pub user_id: u64,
    /// Two-letter country codes (and `XX`, `XY` for all countries / DMCA).
    pub withheld_in_countries: Vec<Cow<'a, str>>,
    /// When the notice was issued, in milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<u64>,
}

/// A `user_withheld` notice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserWithheld<'a> {
    /// The withheld user.
    pub id: u64,
    /// Two-letter country codes.
    pub withheld_in_countries: Vec<Cow<'a, str>>,
    /// When the notice was issued, in milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<u64>,
}

/// A tweet (status), with the fields a stream consumer most often needs.
///
/// Ids come from `id_str` when it is present (some tools rounded the numeric `id` through a
/// double), else from `id`. Everything else stays in the message bytes: see the
/// [module docs](crate::message) for why there is no raw copy here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tweet<'a> {
    /// The tweet id.
    pub id: u64,
    /// `text` (truncated to 140 characters for extended tweets; `full_text` when a tweet
    /// has no `text`).
    pub text: Cow<'a, str>,
    /// The untruncated text: `extended_tweet.full_text`, or a top-level `full_text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_text: Option<Cow<'a, str>>,
    /// The author's id (`user.id_str` / `user.id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u64>,
    /// The author's `user.screen_name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_screen_name: Option<Cow<'a, str>>,
    /// `created_at`, as sent (`"Wed Apr 06 19:13:37 +0000 2011"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Cow<'a, str>>,
    /// The tweet this one replies to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_reply_to_status_id: Option<u64>,
    /// For a retweet, the id of the original tweet (`retweeted_status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retweeted_status_id: Option<u64>,
    /// For a quote tweet, the id of the quoted tweet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quoted_status_id: Option<u64>,
    /// `timestamp_ms` (sent by streams since 2014).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<u64>,
}

/// A direct message, with a few fields decoded and the whole object kept raw.
#[derive(Clone, Debug, Serialize)]
pub struct DirectMessage<'a> {
    /// The message id.
    pub id: u64,
    /// The message text.
    pub text: Cow<'a, str>,
    /// The sender's user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_id: Option<u64>,
    /// The recipient's user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_id: Option<u64>,
    /// The whole direct message object as sent.
    pub raw: Cow<'a, RawValue>,
}

/// An activity event (`{"event":"favorite","source":{…},"target":{…},…}`).
#[derive(Clone, Debug, Serialize)]
pub struct Event<'a> {
    /// The event name.
    pub kind: EventKind<'a>,
    /// The user who acted (`source.id_str` / `source.id`, or a bare numeric `source`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_id: Option<u64>,
    /// The user acted upon (`target.id_str` / `target.id`, or a bare numeric `target`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_id: Option<u64>,
    /// `created_at`, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Cow<'a, str>>,
    /// The object acted upon (a tweet, a list, …) as raw JSON, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_object: Option<Cow<'a, RawValue>>,
}

/// The `event` names of activity events.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind<'a> {
    /// `favorite`
    Favorite,
    /// `unfavorite`
    Unfavorite,
    /// `follow`
    Follow,
    /// `unfollow`
    Unfollow,
    /// `block`
    Block,
    /// `unblock`
    Unblock,
    /// `list_created`
    ListCreated,
    /// `list_destroyed`
    ListDestroyed,
    /// `list_updated`
    ListUpdated,
    /// `list_member_added`
    ListMemberAdded,
    /// `list_member_removed`
    ListMemberRemoved,
    /// `list_user_subscribed`
    ListUserSubscribed,
    /// `list_user_unsubscribed`
    ListUserUnsubscribed,
    /// `user_update`
    UserUpdate,
    /// `access_revoked`
    AccessRevoked,
    /// `quoted_tweet`
    QuotedTweet,
    /// `favorited_retweet`
    FavoritedRetweet,
    /// `retweeted_retweet`
    RetweetedRetweet,
    /// `mute`
    Mute,
    /// `unmute`
    Unmute,
    /// Any other event name, as sent.
    Other(Cow<'a, str>),
}

/// A message that could not be decoded: it is not JSON, or its top level is not an object.
///
/// The [`Display`](fmt::Display) form says what was wrong and where; it never repeats the
/// message itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    kind: ParseErrorKind,
    detail: Box<str>,
    line: usize,
    column: usize,
    offset: usize,
}

/// What kind of [`ParseError`] occurred.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The bytes are not valid JSON.
    InvalidJson,
    /// The JSON ends early (an empty message included).
    Truncated,
    /// Valid JSON whose top level is not an object.
    NotAnObject,
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

impl<'a> Message<'a> {
    /// Decodes one complete message (the payload, without its `\r\n`).
    ///
    /// Unknown kinds are not errors (see [`UserMessage::Unknown`]); only invalid JSON or a
    /// top level that is not an object is. Like [`IgnoredAny`], the decoder checks the syntax
    /// of everything but the UTF-8 of only the strings it keeps (every `Cow<str>` here is
    /// valid UTF-8; a skipped string with invalid bytes is not reported). Skipped values may
    /// nest to any depth: serde_json skips them without recursion.
    pub fn from_slice(bytes: &'a [u8]) -> Result<Message<'a>, ParseError> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let top = deserializer
            .deserialize_any(TopVisitor)
            .and_then(|top| deserializer.end().map(|()| top))
            .map_err(|error| ParseError::from_json(&error, bytes))?;
        Ok(match top {
            Top::Control(control) => Message::Control(control),
            Top::Disconnect(disconnect) => Message::Disconnect(disconnect),
            Top::ForUser { for_user, inner } => Message::ForUser {
                for_user,
                message: finish(bytes, &["message"], inner)?,
            },
            Top::Unwrapped(inner) => Message::Unwrapped(finish(bytes, &[], inner)?),
        })
    }

    /// A short static name of the message's kind, for counting and logging: `"control"`,
    /// `"disconnect"`, `"tweet"`, `"warning"`, …, and `"for_user/tweet"`, `"for_user/event"`, …
    /// inside the envelope (see [`UserMessage::kind`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Control(_) => "control",
            Message::Disconnect(_) => "disconnect",
            Message::ForUser { message, .. } => message.for_user_kind(),
            Message::Unwrapped(message) => message.kind(),
        }
    }

    /// The `for_user` id of an envelope, or `None` for an unwrapped message.
    pub fn for_user(&self) -> Option<u64> {
        match self {
            Message::ForUser { for_user, .. } => Some(*for_user),
            _ => None,
        }
    }

    /// The payload, whether it came in an envelope or not (`None` for control and disconnect).
    pub fn user_message(&self) -> Option<&UserMessage<'a>> {
        match self {
            Message::ForUser { message, .. } | Message::Unwrapped(message) => Some(message),
            Message::Control(_) | Message::Disconnect(_) => None,
        }
    }
}

impl UserMessage<'_> {
    /// A short static name of the kind: `"friends"`, `"friends_str"`, `"tweet"`, `"delete"`,
    /// `"scrub_geo"`, `"limit"`, `"status_withheld"`, `"user_withheld"`, `"direct_message"`,
    /// `"event"`, `"warning"` or `"unknown"`.
    pub fn kind(&self) -> &'static str {
        match self {
            UserMessage::Friends(_) => "friends",
            UserMessage::FriendsStr(_) => "friends_str",
            UserMessage::Tweet(_) => "tweet",
            UserMessage::Delete(_) => "delete",
            UserMessage::ScrubGeo(_) => "scrub_geo",
            UserMessage::Limit(_) => "limit",
            UserMessage::StatusWithheld(_) => "status_withheld",
            UserMessage::UserWithheld(_) => "user_withheld",
            UserMessage::DirectMessage(_) => "direct_message",
            UserMessage::Event(_) => "event",
            UserMessage::Warning(_) => "warning",
            UserMessage::Unknown(_) => "unknown",
        }
    }

    fn for_user_kind(&self) -> &'static str {
        match self {
            UserMessage::Friends(_) => "for_user/friends",
            UserMessage::FriendsStr(_) => "for_user/friends_str",
            UserMessage::Tweet(_) => "for_user/tweet",
            UserMessage::Delete(_) => "for_user/delete",
            UserMessage::ScrubGeo(_) => "for_user/scrub_geo",
            UserMessage::Limit(_) => "for_user/limit",
            UserMessage::StatusWithheld(_) => "for_user/status_withheld",
            UserMessage::UserWithheld(_) => "for_user/user_withheld",
            UserMessage::DirectMessage(_) => "for_user/direct_message",
            UserMessage::Event(_) => "for_user/event",
            UserMessage::Warning(_) => "for_user/warning",
            UserMessage::Unknown(_) => "for_user/unknown",
        }
    }
}

impl PartialEq for UserMessage<'_> {
    /// Raw JSON compares by its exact text.
    fn eq(&self, other: &Self) -> bool {
        use UserMessage as M;
        match (self, other) {
            (M::Friends(a), M::Friends(b)) | (M::FriendsStr(a), M::FriendsStr(b)) => a == b,
            (M::Tweet(a), M::Tweet(b)) => a == b,
            (M::Delete(a), M::Delete(b)) => a == b,
            (M::ScrubGeo(a), M::ScrubGeo(b)) => a == b,
            (M::Limit(a), M::Limit(b)) => a == b,
            (M::StatusWithheld(a), M::StatusWithheld(b)) => a == b,
            (M::UserWithheld(a), M::UserWithheld(b)) => a == b,
            (M::DirectMessage(a), M::DirectMessage(b)) => a == b,
            (M::Event(a), M::Event(b)) => a == b,
            (M::Warning(a), M::Warning(b)) => a == b,
            (M::Unknown(a), M::Unknown(b)) => a.get() == b.get(),
            _ => false,
        }
    }
}

impl Control<'_> {
    /// The stream id: the path segment after `/site/c/` in the control URI
    /// (`/1.1/site/c/<stream_id>`, also the older `/2b/site/c/<stream_id>`), or `None` when
    /// the URI has another shape.
    pub fn stream_id(&self) -> Option<&str> {
        const MARKER: &str = "/site/c/";
        let start = self.control_uri.find(MARKER)? + MARKER.len();
        let rest = self.control_uri.get(start..)?;
        let id = rest.split(['/', '?']).next().unwrap_or(rest); // `split` yields at least one item.
        (!id.is_empty()).then_some(id)
    }
}

impl DisconnectCode {
    /// The code for a number (`1..=12` are named, the rest are [`DisconnectCode::Other`]).
    pub fn from_code(code: u32) -> Self {
        match code {
            1 => Self::Shutdown,
            2 => Self::DuplicateStream,
            3 => Self::ControlRequest,
            4 => Self::Stall,
            5 => Self::Normal,
            6 => Self::TokenRevoked,
            7 => Self::AdminLogout,
            8 => Self::Reserved,
            9 => Self::MaxMessageLimit,
            10 => Self::StreamException,
            11 => Self::BrokerStall,
            12 => Self::ShedLoad,
            other => Self::Other(other),
        }
    }

    /// The numeric code as sent.
    pub fn code(self) -> u32 {
        match self {
            Self::Shutdown => 1,
            Self::DuplicateStream => 2,
            Self::ControlRequest => 3,
            Self::Stall => 4,
            Self::Normal => 5,
            Self::TokenRevoked => 6,
            Self::AdminLogout => 7,
            Self::Reserved => 8,
            Self::MaxMessageLimit => 9,
            Self::StreamException => 10,
            Self::BrokerStall => 11,
            Self::ShedLoad => 12,
            Self::Other(code) => code,
        }
    }

    /// Whether reconnecting with the same credentials cannot help: the token was revoked (6)
    /// or an administrator logged the user out (7).
    pub fn is_final(self) -> bool {
        matches!(self, Self::TokenRevoked | Self::AdminLogout)
    }
}

impl WarningCode<'_> {
    /// The code as sent (`"FALLING_BEHIND"`, `"FOLLOWS_OVER_LIMIT"`, …).
    pub fn as_str(&self) -> &str {
        match self {
            WarningCode::FallingBehind => "FALLING_BEHIND",
            WarningCode::FollowsOverLimit => "FOLLOWS_OVER_LIMIT",
            WarningCode::Other(code) => code,
        }
    }
}

impl Tweet<'_> {
    /// The untruncated text when there is one, else `text`.
    pub fn best_text(&self) -> &str {
        self.full_text.as_deref().unwrap_or(&self.text)
    }
}

impl PartialEq for DirectMessage<'_> {
    /// Raw JSON compares by its exact text.
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.text == other.text
            && self.sender_id == other.sender_id
            && self.recipient_id == other.recipient_id
            && self.raw.get() == other.raw.get()
    }
}

impl PartialEq for Event<'_> {
    /// Raw JSON compares by its exact text.
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.source_id == other.source_id
            && self.target_id == other.target_id
            && self.created_at == other.created_at
            && self.target_object.as_deref().map(RawValue::get)
                == other.target_object.as_deref().map(RawValue::get)
    }
}

impl<'a> EventKind<'a> {
    /// The kind for an `event` name.
    pub fn from_name(name: Cow<'a, str>) -> Self {
        match &*name {
            "favorite" => Self::Favorite,
            "unfavorite" => Self::Unfavorite,
            "follow" => Self::Follow,
            "unfollow" => Self::Unfollow,
            "block" => Self::Block,
            "unblock" => Self::Unblock,
            "list_created" => Self::ListCreated,
            "list_destroyed" => Self::ListDestroyed,
            "list_updated" => Self::ListUpdated,
            "list_member_added" => Self::ListMemberAdded,
            "list_member_removed" => Self::ListMemberRemoved,
            "list_user_subscribed" => Self::ListUserSubscribed,
            "list_user_unsubscribed" => Self::ListUserUnsubscribed,
            "user_update" => Self::UserUpdate,
            "access_revoked" => Self::AccessRevoked,
            "quoted_tweet" => Self::QuotedTweet,
            "favorited_retweet" => Self::FavoritedRetweet,
            "retweeted_retweet" => Self::RetweetedRetweet,
            "mute" => Self::Mute,
            "unmute" => Self::Unmute,
            _ => Self::Other(name),
        }
    }

    /// The event name as sent.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Favorite => "favorite",
            Self::Unfavorite => "unfavorite",
            Self::Follow => "follow",
            Self::Unfollow => "unfollow",
            Self::Block => "block",
            Self::Unblock => "unblock",
            Self::ListCreated => "list_created",
            Self::ListDestroyed => "list_destroyed",
            Self::ListUpdated => "list_updated",
            Self::ListMemberAdded => "list_member_added",
            Self::ListMemberRemoved => "list_member_removed",
            Self::ListUserSubscribed => "list_user_subscribed",
            Self::ListUserUnsubscribed => "list_user_unsubscribed",
            Self::UserUpdate => "user_update",
            Self::AccessRevoked => "access_revoked",
            Self::QuotedTweet => "quoted_tweet",
            Self::FavoritedRetweet => "favorited_retweet",
            Self::RetweetedRetweet => "retweeted_retweet",
            Self::Mute => "mute",
            Self::Unmute => "unmute",
            Self::Other(name) => name,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Owned messages
// ---------------------------------------------------------------------------------------------

/// A borrowed string made `'static` (a copy only when it was borrowed).
fn owned_str(text: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(text.into_owned())
}

/// Borrowed raw JSON made `'static`.
fn owned_raw(raw: Cow<'_, RawValue>) -> Cow<'static, RawValue> {
    Cow::Owned(raw.into_owned())
}

impl Message<'_> {
    /// The same message owning all its data, free of the bytes it was decoded from: to keep
    /// it past a [`Parser`](crate::parser::Parser) callback or send it to another thread.
    ///
    /// ```
    /// use sitebucket_proto::message::Message;
    ///
    /// let kept: Message<'static> = {
    ///     let bytes = br#"{"for_user":12,"message":{"id":1,"text":"hi"}}"#.to_vec();
    ///     Message::from_slice(&bytes)?.into_owned()
    /// }; // `bytes` is gone; `kept` lives on.
    /// assert_eq!(kept.kind(), "for_user/tweet");
    /// # Ok::<(), sitebucket_proto::message::ParseError>(())
    /// ```
    pub fn into_owned(self) -> Message<'static> {
        match self {
            Message::Control(control) => Message::Control(control.into_owned()),
            Message::Disconnect(disconnect) => Message::Disconnect(disconnect.into_owned()),
            Message::ForUser { for_user, message } => Message::ForUser {
                for_user,
                message: message.into_owned(),
            },
            Message::Unwrapped(message) => Message::Unwrapped(message.into_owned()),
        }
    }
}

impl UserMessage<'_> {
    /// The same payload owning all its data (see [`Message::into_owned`]).
    pub fn into_owned(self) -> UserMessage<'static> {
        match self {
            UserMessage::Friends(ids) => UserMessage::Friends(ids),
            UserMessage::FriendsStr(ids) => UserMessage::FriendsStr(ids),
            UserMessage::Tweet(tweet) => UserMessage::Tweet(tweet.into_owned()),
            UserMessage::Delete(delete) => UserMessage::Delete(delete),
            UserMessage::ScrubGeo(scrub) => UserMessage::ScrubGeo(scrub),
            UserMessage::Limit(limit) => UserMessage::Limit(limit),
            UserMessage::StatusWithheld(w) => UserMessage::StatusWithheld(w.into_owned()),
            UserMessage::UserWithheld(w) => UserMessage::UserWithheld(w.into_owned()),
            UserMessage::DirectMessage(dm) => UserMessage::DirectMessage(dm.into_owned()),
            UserMessage::Event(event) => UserMessage::Event(event.into_owned()),
            UserMessage::Warning(warning) => UserMessage::Warning(warning.into_owned()),
            UserMessage::Unknown(raw) => UserMessage::Unknown(owned_raw(raw)),
        }
    }
}

impl Control<'_> {
    /// The same control message owning its URI.
    pub fn into_owned(self) -> Control<'static> {
        Control {
            control_uri: owned_str(self.control_uri),
        }
    }
}

impl Disconnect<'_> {
    /// The same disconnect message owning its strings.
    pub fn into_owned(self) -> Disconnect<'static> {
        Disconnect {
            code: self.code,
            stream_name: owned_str(self.stream_name),
            reason: owned_str(self.reason),
        }
    }
}

impl Warning<'_> {
    /// The same warning owning its strings.
    pub fn into_owned(self) -> Warning<'static> {
        let Warning {
            code,
            message,
            percent_full,
            user_id,
            timestamp_ms,
        } = self;
        Warning {
            code: code.into_owned(),
            message: owned_str(message),
            percent_full,
            user_id,
            timestamp_ms,
        }
    }
}

impl WarningCode<'_> {
    /// The same code owning its text.
    pub fn into_owned(self) -> WarningCode<'static> {
        match self {
            WarningCode::FallingBehind => WarningCode::FallingBehind,
            WarningCode::FollowsOverLimit => WarningCode::FollowsOverLimit,
            WarningCode::Other(code) => WarningCode::Other(owned_str(code)),
        }
    }
}

impl StatusWithheld<'_> {
    /// The same notice owning its country codes.
    pub fn into_owned(self) -> StatusWithheld<'static> {
        StatusWithheld {
            id: self.id,
            user_id: self.user_id,
            withheld_in_countries: self
                .withheld_in_countries
                .into_iter()
                .map(owned_str)
                .collect(),
            timestamp_ms: self.timestamp_ms,
        }
    }
}

impl UserWithheld<'_> {
    /// The same notice owning its country codes.
    pub fn into_owned(self) -> UserWithheld<'static> {
        UserWithheld {
            id: self.id,
            withheld_in_countries: self
                .withheld_in_countries
                .into_iter()
                .map(owned_str)
                .collect(),
            timestamp_ms: self.timestamp_ms,
        }
    }
}

impl Tweet<'_> {
    /// The same tweet owning its strings.
    pub fn into_owned(self) -> Tweet<'static> {
        let Tweet {
            id,
            text,
            full_text,
            user_id,
            user_screen_name,
            created_at,
            in_reply_to_status_id,
            retweeted_status_id,
            quoted_status_id,
            timestamp_ms,
        } = self;
        Tweet {
            id,
            text: owned_str(text),
            full_text: full_text.map(owned_str),
            user_id,
            user_screen_name: user_screen_name.map(owned_str),
            created_at: created_at.map(owned_str),
            in_reply_to_status_id,
            retweeted_status_id,
            quoted_status_id,
            timestamp_ms,
        }
    }
}

impl DirectMessage<'_> {
    /// The same direct message owning its text and raw JSON.
    pub fn into_owned(self) -> DirectMessage<'static> {
        DirectMessage {
            id: self.id,
            text: owned_str(self.text),
            sender_id: self.sender_id,
            recipient_id: self.recipient_id,
            raw: owned_raw(self.raw),
        }
    }
}

impl Event<'_> {
    /// The same event owning its strings and raw JSON.
    pub fn into_owned(self) -> Event<'static> {
        Event {
            kind: self.kind.into_owned(),
            source_id: self.source_id,
            target_id: self.target_id,
            created_at: self.created_at.map(owned_str),
            target_object: self.target_object.map(owned_raw),
        }
    }
}

impl EventKind<'_> {
    /// The same kind owning its name.
    pub fn into_owned(self) -> EventKind<'static> {
        match self {
            EventKind::Other(name) => EventKind::Other(owned_str(name)),
            // A named kind holds no data: decoding its name again gives the same variant.
            named => EventKind::from_name(Cow::Owned(named.as_str().to_owned())),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Serialization
// ---------------------------------------------------------------------------------------------

impl Serialize for Message<'_> {
    /// `{"control":{…}}`, `{"disconnect":{…}}`, `{"for_user":id,"message":…}`, or the payload
    /// of an unwrapped message as it is.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Message::Control(control) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("control", control)?;
                map.end()
            }
            Message::Disconnect(disconnect) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("disconnect", disconnect)?;
                map.end()
            }
            Message::ForUser { for_user, message } => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("for_user", for_user)?;
                map.serialize_entry("message", message)?;
                map.end()
            }
            Message::Unwrapped(message) => message.serialize(serializer),
        }
    }
}

impl Serialize for DisconnectCode {
    /// The number as sent.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.code())
    }
}

impl Serialize for WarningCode<'_> {
    /// The code as sent (`"FALLING_BEHIND"`, …).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Serialize for EventKind<'_> {
    /// The event name as sent (`"favorite"`, …).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl ParseError {
    /// What kind of error this is.
    pub fn kind(&self) -> ParseErrorKind {
        self.kind
    }

    /// One-based line of the error in the message.
    pub fn line(&self) -> usize {
        self.line
    }

    /// One-based column (in bytes) of the error in its line.
    pub fn column(&self) -> usize {
        self.column
    }

    /// Zero-based byte offset of the error in the message.
    pub fn offset(&self) -> usize {
        self.offset
    }

    pub(crate) fn from_json(error: &serde_json::Error, bytes: &[u8]) -> Self {
        let kind = match error.classify() {
            serde_json::error::Category::Eof => ParseErrorKind::Truncated,
            // The only data error the visitors raise is a top level that is not an object.
            serde_json::error::Category::Data => ParseErrorKind::NotAnObject,
            serde_json::error::Category::Syntax | serde_json::error::Category::Io => {
                ParseErrorKind::InvalidJson
            }
        };
        let (line, column) = (error.line(), error.column());
        // serde_json's Display is "<what> at line L column C"; keep only <what>.
        let text = error.to_string();
        let suffix = format!(" at line {line} column {column}");
        let detail = text.strip_suffix(&suffix).unwrap_or(&text);
        ParseError {
            kind,
            detail: detail.into(),
            line,
            column,
            offset: byte_offset(bytes, line, column),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ParseErrorKind::InvalidJson => "message is not valid JSON",
            ParseErrorKind::Truncated => "message is truncated JSON",
            ParseErrorKind::NotAnObject => "message is not a JSON object",
        };
        write!(
            f,
            "{what}: {} at byte {} (line {}, column {})",
            self.detail, self.offset, self.line, self.column
        )
    }
}

impl std::error::Error for ParseError {}

/// The raw JSON value at `path` (a list of object keys) inside one message, or `None` when
/// some key on the path is missing or its parent is not an object. With duplicate keys the
/// last one counts, as in [`Message::from_slice`].
///
/// Use it on the bytes you kept to reach what the typed [`Message`] leaves out, e.g.
/// `raw_at(bytes, &["message"])` for the tweet inside a `for_user` envelope.
pub fn raw_at<'a>(bytes: &'a [u8], path: &[&str]) -> Result<Option<&'a RawValue>, ParseError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    RawAt { path }
        .deserialize(&mut deserializer)
        .and_then(|raw| deserializer.end().map(|()| raw))
        .map_err(|error| ParseError::from_json(&error, bytes))
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Converts serde_json's one-based line and column into a zero-based byte offset.
fn byte_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let mut line_start = 0;
    let mut newlines = line.saturating_sub(1);
    for (index, byte) in bytes.iter().enumerate() {
        if newlines == 0 {
            break;
        }
        if *byte == b'\n' {
            newlines -= 1;
            line_start = index + 1;
        }
    }
    line_start
        .saturating_add(column.saturating_sub(1))
        .min(bytes.len())
}

/// What the first pass found at the top level.
enum Top<'a> {
    Control(Control<'a>),
    Disconnect(Disconnect<'a>),
    ForUser { for_user: u64, inner: Inner<'a> },
    Unwrapped(Inner<'a>),
}

/// A payload after the first pass: complete, or waiting for its raw JSON.
enum Inner<'a> {
    Known(UserMessage<'a>),
    Unknown,
    DirectMessage { fields: DmFields<'a>, wrapped: bool },
}

/// The decoded fields of a direct message, before its raw JSON is attached.
struct DmFields<'a> {
    id: u64,
    text: Cow<'a, str>,
    sender_id: Option<u64>,
    recipient_id: Option<u64>,
}

/// Turns a first-pass result into a [`UserMessage`], scanning the bytes again for the raw
/// JSON that unknown objects and direct messages carry. `prefix` is the path of the payload
/// (`[]` unwrapped, `["message"]` in an envelope).
fn finish<'a>(
    bytes: &'a [u8],
    prefix: &[&str],
    inner: Inner<'a>,
) -> Result<UserMessage<'a>, ParseError> {
    match inner {
        Inner::Known(message) => Ok(message),
        Inner::Unknown => Ok(UserMessage::Unknown(Cow::Borrowed(raw_or_whole(
            bytes, prefix,
        )?))),
        Inner::DirectMessage { fields, wrapped } => {
            let mut path = prefix.to_vec();
            if wrapped {
                path.push("direct_message");
            }
            Ok(UserMessage::DirectMessage(DirectMessage {
                id: fields.id,
                text: fields.text,
                sender_id: fields.sender_id,
                recipient_id: fields.recipient_id,
                raw: Cow::Borrowed(raw_or_whole(bytes, &path)?),
            }))
        }
    }
}

/// The raw JSON at `path`, falling back to the whole message. The first pass already found a
/// value at `path` in the same bytes, so the fallback and the error are not expected; they
/// exist so that no input can make this panic.
fn raw_or_whole<'a>(bytes: &'a [u8], path: &[&str]) -> Result<&'a RawValue, ParseError> {
    if let Some(raw) = raw_at(bytes, path)? {
        return Ok(raw);
    }
    raw_at(bytes, &[])?.ok_or_else(|| ParseError {
        kind: ParseErrorKind::InvalidJson,
        detail: "no JSON value found".into(),
        line: 1,
        column: 1,
        offset: 0,
    })
}

/// The top-level visitor: an object is decoded, anything else is a [`ParseError`].
struct TopVisitor;

impl TopVisitor {
    fn not_an_object<E: de::Error>(found: &str) -> E {
        E::custom(format_args!("the top level is {found}, expected an object"))
    }
}

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields::default();
        fields.read(map, true)?;
        Ok(fields.resolve_top())
    }

    // Explicit errors for the other shapes: serde's defaults would quote the value.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(Self::not_an_object("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(Self::not_an_object("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(Self::not_an_object("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(Self::not_an_object("a number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(Self::not_an_object("a string"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(Self::not_an_object("null"))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(Self::not_an_object("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(Self::not_an_object("an array"))
    }
}

/// Every field any message kind needs, gathered in one pass over an object's keys (the key
/// that names the kind may come last, so nothing can be decided before the object ends).
#[derive(Default)]
struct Fields<'a> {
    // Top level only.
    for_user: Option<u64>,
    message: Option<Inner<'a>>,
    control: Option<Control<'a>>,
    disconnect: Option<Disconnect<'a>>,
    // Notices.
    warning: Option<Warning<'a>>,
    limit: Option<Limit>,
    delete: Option<Delete>,
    scrub_geo: Option<ScrubGeo>,
    status_withheld: Option<StatusWithheld<'a>>,
    user_withheld: Option<UserWithheld<'a>>,
    direct_message: Option<DmFields<'a>>,
    friends: Option<Vec<u64>>,
    friends_str: Option<Vec<u64>>,
    // Events.
    event: Option<Cow<'a, str>>,
    source: Option<UserRef<'a>>,
    target: Option<UserRef<'a>>,
    target_object: Option<&'a RawValue>,
    // Tweets (and bare direct messages).
    created_at: Option<Cow<'a, str>>,
    id: Option<u64>,
    id_str: Option<u64>,
    text: Option<Cow<'a, str>>,
    full_text: Option<Cow<'a, str>>,
    extended_full_text: Option<Cow<'a, str>>,
    user: Option<UserRef<'a>>,
    in_reply_to_status_id: Option<u64>,
    in_reply_to_status_id_str: Option<u64>,
    retweeted_status_id: Option<u64>,
    quoted_status_id: Option<u64>,
    quoted_status_id_str: Option<u64>,
    quoted_status: Option<u64>,
    timestamp_ms: Option<u64>,
    // Bare direct messages.
    has_sender_or_recipient: bool,
    dm_parties: DmParties<'a>,
}

impl<'a> Fields<'a> {
    /// Reads every entry of an object. `top` enables the keys only valid at the top level.
    fn read<A: MapAccess<'a>>(&mut self, mut map: A, top: bool) -> Result<(), A::Error> {
        let f = self;
        while let Some(Key(key)) = map.next_key::<Key<'a>>()? {
            match &*key {
                b"for_user" if top => f.for_user = lenient(&mut map)?,
                b"message" if top => {
                    let inner: Option<InnerMessage<'a>> = lenient(&mut map)?;
                    f.message = Some(inner.map_or(Inner::Unknown, |m| m.0));
                }
                b"control" if top => f.control = lenient(&mut map)?,
                b"disconnect" if top => f.disconnect = lenient(&mut map)?,
                b"warning" => f.warning = lenient(&mut map)?,
                b"limit" => f.limit = lenient(&mut map)?,
                b"delete" => f.delete = lenient(&mut map)?,
                b"scrub_geo" => f.scrub_geo = lenient(&mut map)?,
                b"status_withheld" => f.status_withheld = lenient(&mut map)?,
                b"user_withheld" => f.user_withheld = lenient(&mut map)?,
                b"direct_message" => f.direct_message = lenient(&mut map)?,
                b"friends" => f.friends = id_list(map.next_value::<&'a RawValue>()?),
                b"friends_str" => f.friends_str = id_list(map.next_value::<&'a RawValue>()?),
                b"event" => f.event = lenient(&mut map)?,
                b"source" => f.source = user_from_raw(map.next_value::<&'a RawValue>()?),
                b"target" => f.target = lenient(&mut map)?,
                b"target_object" => f.target_object = Some(map.next_value::<&'a RawValue>()?),
                b"created_at" => f.created_at = lenient(&mut map)?,
                b"id" => f.id = lenient(&mut map)?,
                b"id_str" => f.id_str = lenient(&mut map)?,
                b"text" => f.text = lenient(&mut map)?,
                b"full_text" => f.full_text = lenient(&mut map)?,
                b"extended_tweet" => {
                    let extended: Option<ExtendedTweet<'a>> = lenient(&mut map)?;
                    f.extended_full_text = extended.and_then(|e| e.full_text);
                }
                b"user" => f.user = lenient(&mut map)?,
                b"in_reply_to_status_id" => f.in_reply_to_status_id = lenient(&mut map)?,
                b"in_reply_to_status_id_str" => f.in_reply_to_status_id_str = lenient(&mut map)?,
                b"retweeted_status" => {
                    let original: Option<IdRef> = lenient(&mut map)?;
                    f.retweeted_status_id = original.and_then(IdRef::id);
                }
                b"quoted_status_id" => f.quoted_status_id = lenient(&mut map)?,
                b"quoted_status_id_str" => f.quoted_status_id_str = lenient(&mut map)?,
                b"quoted_status" => {
                    let quoted: Option<IdRef> = lenient(&mut map)?;
                    f.quoted_status = quoted.and_then(IdRef::id);
                }
                b"timestamp_ms" => f.timestamp_ms = lenient(&mut map)?,
                b"sender_id" | b"sender_id_str" | b"sender" | b"recipient_id"
                | b"recipient_id_str" | b"recipient" => {
                    f.dm_parties.accept(&key, &mut map)?;
                    f.has_sender_or_recipient = true;
                }
                _ => skip_value(&mut map)?,
            }
        }
        Ok(())
    }

    fn resolve_top(&mut self) -> Top<'a> {
        if let (Some(for_user), Some(inner)) = (self.for_user, self.message.take()) {
            return Top::ForUser { for_user, inner };
        }
        if let Some(control) = self.control.take() {
            return Top::Control(control);
        }
        if let Some(disconnect) = self.disconnect.take() {
            return Top::Disconnect(disconnect);
        }
        Top::Unwrapped(self.resolve_inner())
    }

    /// Decides the kind, in the order Twitter's own clients tested the keys. It takes the
    /// fields out rather than consuming `self`: `Fields` is large, and moving it costs more
    /// than decoding a small message.
    fn resolve_inner(&mut self) -> Inner<'a> {
        let known = |message| Inner::Known(message);
        if let Some(warning) = self.warning.take() {
            return known(UserMessage::Warning(warning));
        }
        if let Some(limit) = self.limit {
            return known(UserMessage::Limit(limit));
        }
        if let Some(delete) = self.delete {
            return known(UserMessage::Delete(delete));
        }
        if let Some(scrub_geo) = self.scrub_geo {
            return known(UserMessage::ScrubGeo(scrub_geo));
        }
        if let Some(withheld) = self.status_withheld.take() {
            return known(UserMessage::StatusWithheld(withheld));
        }
        if let Some(withheld) = self.user_withheld.take() {
            return known(UserMessage::UserWithheld(withheld));
        }
        if let Some(friends) = self.friends.take() {
            return known(UserMessage::Friends(friends));
        }
        if let Some(friends) = self.friends_str.take() {
            return known(UserMessage::FriendsStr(friends));
        }
        if let Some(fields) = self.direct_message.take() {
            return Inner::DirectMessage {
                fields,
                wrapped: true,
            };
        }
        if let Some(name) = self.event.take() {
            return known(UserMessage::Event(Event {
                kind: EventKind::from_name(name),
                source_id: self.source.as_ref().and_then(UserRef::id),
                target_id: self.target.as_ref().and_then(UserRef::id),
                created_at: self.created_at.take(),
                target_object: self.target_object.map(Cow::Borrowed),
            }));
        }
        let id = self.id_str.or(self.id);
        if self.has_sender_or_recipient {
            if let (Some(id), Some(text)) = (id, self.text.take()) {
                return Inner::DirectMessage {
                    fields: DmFields {
                        id,
                        text,
                        sender_id: self.dm_parties.sender_id(),
                        recipient_id: self.dm_parties.recipient_id(),
                    },
                    wrapped: false,
                };
            }
        }
        let full_text = self.extended_full_text.take().or(self.full_text.take());
        let (Some(id), Some((text, full_text))) = (id, tweet_texts(self.text.take(), full_text))
        else {
            return Inner::Unknown;
        };
        let user = self.user.take();
        known(UserMessage::Tweet(Tweet {
            id,
            text,
            full_text,
            user_id: user.as_ref().and_then(UserRef::id),
            user_screen_name: user.and_then(|user| user.screen_name),
            created_at: self.created_at.take(),
            in_reply_to_status_id: self
                .in_reply_to_status_id_str
                .or(self.in_reply_to_status_id),
            retweeted_status_id: self.retweeted_status_id,
            quoted_status_id: self
                .quoted_status_id_str
                .or(self.quoted_status_id)
                .or(self.quoted_status),
            timestamp_ms: self.timestamp_ms,
        }))
    }
}

/// A tweet's `text` and `full_text`; a tweet with only `full_text` uses it for both.
fn tweet_texts<'a>(
    text: Option<Cow<'a, str>>,
    full_text: Option<Cow<'a, str>>,
) -> Option<(Cow<'a, str>, Option<Cow<'a, str>>)> {
    match (text, full_text) {
        (Some(text), full_text) => Some((text, full_text)),
        (None, Some(full_text)) => Some((full_text.clone(), Some(full_text))),
        (None, None) => None,
    }
}

/// A `friends` or `friends_str` list: an array of ids as numbers or as digit strings.
///
/// Lists run to thousands of ids, and going through serde element by element costs several
/// times what skipping them does. So the list is captured raw (a skip) and read by
/// [`fast_id_list`]; anything that is not a plain list of digits takes the general, lenient
/// path, which gives the same answer for every list the fast path accepts.
fn id_list(raw: &RawValue) -> Option<Vec<u64>> {
    fast_id_list(raw.get().as_bytes()).or_else(|| {
        serde_json::from_str::<Lenient<Vec<u64>>>(raw.get())
            .ok()
            .and_then(|list| list.0)
    })
}

/// Reads `[1, 2, "3"]`-style lists of unsigned integers (bare or in quotes without escapes);
/// `None` for anything else, including overflow.
fn fast_id_list(bytes: &[u8]) -> Option<Vec<u64>> {
    fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
        while bytes
            .get(i)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            i += 1;
        }
        i
    }
    let at_end = |i: usize| skip_ws(bytes, i) == bytes.len();
    let mut i = skip_ws(bytes, 0);
    if bytes.get(i) != Some(&b'[') {
        return None;
    }
    i = skip_ws(bytes, i + 1);
    let mut ids = Vec::new();
    if bytes.get(i) == Some(&b']') {
        return at_end(i + 1).then_some(ids);
    }
    loop {
        let quoted = bytes.get(i) == Some(&b'"');
        i += usize::from(quoted);
        let start = i;
        let mut id: u64 = 0;
        for &byte in bytes.get(i..)? {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            id = id.wrapping_mul(10).wrapping_add(u64::from(digit));
            i += 1;
        }
        match i - start {
            0 => return None,
            // Up to 19 digits always fit in a u64; longer runs are read again, checked.
            1..=19 => {}
            // `start..i` holds only ASCII digits, so `digit - b'0'` cannot underflow.
            _ => {
                id = bytes.get(start..i)?.iter().try_fold(0u64, |id, digit| {
                    id.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
                })?
            }
        }
        if quoted && bytes.get(i) != Some(&b'"') {
            return None;
        }
        i = skip_ws(bytes, i + usize::from(quoted));
        ids.push(id);
        match bytes.get(i) {
            Some(b',') => i = skip_ws(bytes, i + 1),
            Some(b']') => return at_end(i + 1).then_some(ids),
            _ => return None,
        }
    }
}

/// A tweet's `source` is a (usually escaped) string of HTML, an event's a user object: it is
/// captured raw, which skips decoding the string, and only an event's user is decoded — in a
/// second, short pass over just that object.
fn user_from_raw(raw: &RawValue) -> Option<UserRef<'_>> {
    match raw.get().as_bytes().first() {
        Some(b'{' | b'0'..=b'9') => serde_json::from_str::<Lenient<UserRef<'_>>>(raw.get())
            .ok()
            .and_then(|user| user.0),
        _ => None,
    }
}

/// Reads the next map value leniently: `None` when it has an unexpected shape.
fn lenient<'de, A: MapAccess<'de>, T: FromJson<'de>>(map: &mut A) -> Result<Option<T>, A::Error> {
    map.next_value::<Lenient<T>>().map(|value| value.0)
}

/// The sender and recipient fields of a direct message.
#[derive(Default)]
struct DmParties<'a> {
    sender_id: Option<u64>,
    sender_id_str: Option<u64>,
    sender: Option<UserRef<'a>>,
    recipient_id: Option<u64>,
    recipient_id_str: Option<u64>,
    recipient: Option<UserRef<'a>>,
}

impl<'a> DmParties<'a> {
    /// Reads the value of `key` if it is a sender/recipient field; `false` leaves it unread.
    fn accept<A: MapAccess<'a>>(&mut self, key: &[u8], map: &mut A) -> Result<bool, A::Error> {
        match key {
            b"sender_id" => self.sender_id = lenient(map)?,
            b"sender_id_str" => self.sender_id_str = lenient(map)?,
            b"sender" => self.sender = lenient(map)?,
            b"recipient_id" => self.recipient_id = lenient(map)?,
            b"recipient_id_str" => self.recipient_id_str = lenient(map)?,
            b"recipient" => self.recipient = lenient(map)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn sender_id(&self) -> Option<u64> {
        self.sender_id_str
            .or(self.sender_id)
            .or_else(|| self.sender.as_ref().and_then(UserRef::id))
    }

    fn recipient_id(&self) -> Option<u64> {
        self.recipient_id_str
            .or(self.recipient_id)
            .or_else(|| self.recipient.as_ref().and_then(UserRef::id))
    }
}

/// An object key as raw bytes, borrowed unless it contains escapes.
///
/// Keys are compared as bytes: this skips serde_json's UTF-8 check of every key, which the
/// keys the decoder looks for (all ASCII) do not need.
struct Key<'de>(Cow<'de, [u8]>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v.as_bytes())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.as_bytes().to_owned())))
            }
        }
        deserializer.deserialize_bytes(KeyVisitor)
    }
}

/// A type that can be read from any JSON value, yielding `None` for shapes it does not accept.
///
/// Every value is consumed whatever its shape, so a surprising field never fails the
/// message: it only makes that field (and maybe the kind) unknown.
trait FromJson<'de>: Sized {
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_i64(value: i64) -> Option<Self> {
        u64::try_from(value).ok().and_then(Self::from_u64)
    }
    fn from_str(_: &str) -> Option<Self> {
        None
    }
    fn from_borrowed_str(value: &'de str) -> Option<Self> {
        Self::from_str(value)
    }
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
        skip_map(map).map(|()| None)
    }
    fn from_seq<A: SeqAccess<'de>>(seq: A) -> Result<Option<Self>, A::Error> {
        skip_seq(seq).map(|()| None)
    }
}

fn skip_value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<IgnoredAny>().map(|_| ())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<Key<'de>, IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Deserializes any JSON value into `Some(T)` when `T` accepts its shape, else `None`.
struct Lenient<T>(Option<T>);

impl<'de, T: FromJson<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(LenientVisitor(PhantomData))
            .map(Lenient)
    }
}

struct LenientVisitor<T>(PhantomData<T>);

impl<'de, T: FromJson<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(T::from_i64(value))
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(T::from_u64(value))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        // Ids are integers; a float (or an integer beyond u64) is never a valid one.
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(T::from_str(value))
    }
    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(T::from_borrowed_str(value))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::from_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        T::from_seq(seq)
    }
}

impl FromJson<'_> for u64 {
    fn from_u64(value: u64) -> Option<Self> {
        Some(value)
    }
    /// Ids and timestamps are often strings (`id_str`, `"for_user":"42"`, `timestamp_ms`).
    fn from_str(value: &str) -> Option<Self> {
        value.parse().ok()
    }
}

impl FromJson<'_> for u32 {
    fn from_u64(value: u64) -> Option<Self> {
        u32::try_from(value).ok()
    }
    fn from_str(value: &str) -> Option<Self> {
        value.parse().ok()
    }
}

impl<'de> FromJson<'de> for Cow<'de, str> {
    fn from_str(value: &str) -> Option<Self> {
        Some(Cow::Owned(value.to_owned()))
    }
    fn from_borrowed_str(value: &'de str) -> Option<Self> {
        Some(Cow::Borrowed(value))
    }
}

/// An array whose every element `T` accepts; one odd element makes the whole array `None`.
impl<'de, T: FromJson<'de>> FromJson<'de> for Vec<T> {
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        let mut items = Some(Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096)));
        while let Some(Lenient(item)) = seq.next_element::<Lenient<T>>()? {
            match (item, items.as_mut()) {
                (Some(item), Some(items)) => items.push(item),
                _ => items = None,
            }
        }
        Ok(items)
    }
}

/// Loops over an object's keys (as `Cow<str>`); the body must read or skip each value.
macro_rules! for_each_key {
    ($map:ident, |$key:ident| $body:expr) => {
        while let Some(Key($key)) = $map.next_key::<Key<'de>>()? {
            $body
        }
    };
}

/// The payload of a `for_user` envelope.
struct InnerMessage<'de>(Inner<'de>);

impl<'de> FromJson<'de> for InnerMessage<'de> {
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
        let mut fields = Fields::default();
        fields.read(map, false)?;
        Ok(Some(InnerMessage(fields.resolve_inner())))
    }
}

impl<'de> FromJson<'de> for Control<'de> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let mut control_uri = None;
        for_each_key!(map, |key| match &*key {
            b"control_uri" => control_uri = lenient(&mut map)?,
            _ => skip_value(&mut map)?,
        });
        Ok(control_uri.map(|control_uri| Control { control_uri }))
    }
}

impl<'de> FromJson<'de> for Disconnect<'de> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let (mut code, mut stream_name, mut reason) = (None, None, None);
        for_each_key!(map, |key| match &*key {
            b"code" => code = lenient::<_, u32>(&mut map)?,
            b"stream_name" => stream_name = lenient(&mut map)?,
            b"reason" => reason = lenient(&mut map)?,
            _ => skip_value(&mut map)?,
        });
        Ok(code.map(|code| Disconnect {
            code: DisconnectCode::from_code(code),
            stream_name: stream_name.unwrap_or_default(),
            reason: reason.unwrap_or_default(),
        }))
    }
}

impl<'de> FromJson<'de> for Warning<'de> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let (mut code, mut message, mut percent_full, mut user_id, mut timestamp_ms) =
            (None::<Cow<'de, str>>, None, None, None, None);
        for_each_key!(map, |key| match &*key {
            b"code" => code = lenient(&mut map)?,
            b"message" => message = lenient(&mut map)?,
            b"percent_full" => percent_full = lenient(&mut map)?,
            b"user_id" => user_id = lenient(&mut map)?,
            b"timestamp_ms" => timestamp_ms = lenient(&mut map)?,
            _ => skip_value(&mut map)?,
        });
        Ok(code.map(|code| Warning {
            code: match &*code {
                "FALLING_BEHIND" => WarningCode::FallingBehind,
                "FOLLOWS_OVER_LIMIT" => WarningCode::FollowsOverLimit,
                _ => WarningCode::Other(code),
            },
            message: message.unwrap_or_default(),
            percent_full,
            user_id,
            timestamp_ms,
        }))
    }
}

impl<'de> FromJson<'de> for Limit {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let (mut track, mut timestamp_ms) = (None, None);
        for_each_key!(map, |key| match &*key {
            b"track" => track = lenient(&mut map)?,
            b"timestamp_ms" => timestamp_ms = lenient(&mut map)?,
            _ => skip_value(&mut map)?,
        });
        Ok(track.map(|track| Limit {
            track,
            timestamp_ms,
        }))
    }
}

/// `{"id":…,"id_str":…,"user_id":…,"user_id_str":…}` inside a `delete`.
#[derive(Default)]
struct DeletedItem {
    id: Option<u64>,
    id_str: Option<u64>,
    user_id: Option<u64>,
    user_id_str: Option<u64>,
}

impl<'de> FromJson<'de> for DeletedItem {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let mut item = DeletedItem::default();
        for_each_key!(map, |key| match &*key {
            b"id" => item.id = lenient(&mut map)?,
            b"id_str" => item.id_str = lenient(&mut map)?,
            b"user_id" => item.user_id = lenient(&mut map)?,
            b"user_id_str" => item.user_id_str = lenient(&mut map)?,
            _ => skip_value(&mut map)?,
        });
        Ok(Some(item))
    }
}

impl<'de> FromJson<'de> for Delete {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let (mut item, mut timestamp_ms) = (None, None);
        for_each_key!(map, |key| match &*key {
            b"status" => {
                item = lenient::<_, DeletedItem>(&mut map)?.map(|i| (DeleteTarget::Status, i))
            }
            b"direct_message" => {
                item =
                    lenient::<_, DeletedItem>(&mut map)?.map(|i| (DeleteTarget::DirectMessage, i))
            }
            b"timestamp_ms" => timestamp_ms = lenient(&mut map)?,
            _ => skip_value(&mut map)?,
        });
        Ok(item.and_then(|(target, item)| {
            Some(Delete {
                target,
                id: item.id_str.or(item.id)?,
                user_id: item.user_id_str.or(item.user_id),
                timestamp_ms,
            })
        }))
    }
}

impl<'de> FromJson<'de> for ScrubGeo {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let [mut user_id, mut user_id_str, mut up_to, mut up_to_str, mut timestamp_ms] = [None; 5];
        for_each_key!(map, |key| match &*key {
            b"user_id" => user_id = lenient(&mut map)?,
            b"user_id_str" => user_id_str = lenient(&mut map)?,
            b"up_to_status_id" => up_to = lenient(&mut map)?,
            b"up_to_status_id_str" => up_to_str = lenient(&mut map)?,
            b"timestamp_ms" => timestamp_ms = lenient(&mut map)?,
            _ => skip_value(&mut map)?,
        });
        Ok(user_id_str
            .or(user_id)
            .zip(up_to_str.or(up_to))
            .map(|(user_id, up_to_status_id)| ScrubGeo {
                user_id,
                up_to_status_id,
                timestamp_ms,
            }))
    }
}

/// The fields shared by `status_withheld` and `user_withheld`.
#[derive(Default)]
struct Withheld<'de> {
    id: Option<u64>,
    user_id: Option<u64>,
    countries: Option<Vec<Cow<'de, str>>>,
    timestamp_ms: Option<u64>,
}

impl<'de> FromJson<'de> for Withheld<'de> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let mut w = Withheld::default();
        let (mut id_str, mut user_id_str) = (None, None);
        for_each_key!(map, |key| match &*key {
            b"id" => w.id = lenient(&mut map)?,
            b"id_str" => id_str = lenient(&mut map)?,
            b"user_id" => w.user_id = lenient(&mut map)?,
            b"user_id_str" => user_id_str = lenient(&mut map)?,
            b"withheld_in_countries" => w.countries = lenient(&mut map)?,
            b"timestamp_ms" => w.timestamp_ms = lenient(&mut map)?,
            _ => skip_value(&mut map)?,
        });
        w.id = id_str.or(w.id);
        w.user_id = user_id_str.or(w.user_id);
        Ok(Some(w))
    }
}

impl<'de> FromJson<'de> for StatusWithheld<'de> {
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
        Ok(Withheld::from_map(map)?.and_then(|w| {
            Some(StatusWithheld {
                id: w.id?,
                user_id: w.user_id?,
                withheld_in_countries: w.countries?,
                timestamp_ms: w.timestamp_ms,
            })
        }))
    }
}

impl<'de> FromJson<'de> for UserWithheld<'de> {
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
        Ok(Withheld::from_map(map)?.and_then(|w| {
            Some(UserWithheld {
                id: w.id?,
                withheld_in_countries: w.countries?,
                timestamp_ms: w.timestamp_ms,
            })
        }))
    }
}

impl<'de> FromJson<'de> for DmFields<'de> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let (mut id, mut id_str, mut text) = (None, None, None);
        let mut parties = DmParties::default();
        for_each_key!(map, |key| match &*key {
            b"id" => id = lenient(&mut map)?,
            b"id_str" => id_str = lenient(&mut map)?,
            b"text" => text = lenient(&mut map)?,
            other => {
                if !parties.accept(other, &mut map)? {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        });
        Ok(match (id_str.or(id), text) {
            (Some(id), Some(text)) => Some(DmFields {
                id,
                text,
                sender_id: parties.sender_id(),
                recipient_id: parties.recipient_id(),
            }),
            _ => None,
        })
    }
}

/// A user object (or a bare numeric user id, as in hand-written events).
#[derive(Default)]
struct UserRef<'de> {
    id: Option<u64>,
    id_str: Option<u64>,
    screen_name: Option<Cow<'de, str>>,
}

impl UserRef<'_> {
    fn id(&self) -> Option<u64> {
        self.id_str.or(self.id)
    }
}

impl<'de> FromJson<'de> for UserRef<'de> {
    fn from_u64(id: u64) -> Option<Self> {
        Some(UserRef {
            id: Some(id),
            ..UserRef::default()
        })
    }
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let mut user = UserRef::default();
        for_each_key!(map, |key| match &*key {
            b"id" => user.id = lenient(&mut map)?,
            b"id_str" => user.id_str = lenient(&mut map)?,
            b"screen_name" => user.screen_name = lenient(&mut map)?,
            _ => skip_value(&mut map)?,
        });
        Ok(Some(user))
    }
}

/// Only the id of a nested tweet (`retweeted_status`, `quoted_status`).
#[derive(Default)]
struct IdRef {
    id: Option<u64>,
    id_str: Option<u64>,
}

impl IdRef {
    fn id(self) -> Option<u64> {
        self.id_str.or(self.id)
    }
}

impl<'de> FromJson<'de> for IdRef {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let mut id = IdRef::default();
        for_each_key!(map, |key| match &*key {
            b"id" => id.id = lenient(&mut map)?,
            b"id_str" => id.id_str = lenient(&mut map)?,
            _ => skip_value(&mut map)?,
        });
        Ok(Some(id))
    }
}

/// `extended_tweet`, of which only `full_text` is needed.
struct ExtendedTweet<'de> {
    full_text: Option<Cow<'de, str>>,
}

impl<'de> FromJson<'de> for ExtendedTweet<'de> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let mut full_text = None;
        for_each_key!(map, |key| match &*key {
            b"full_text" => full_text = lenient(&mut map)?,
            _ => skip_value(&mut map)?,
        });
        Ok(Some(ExtendedTweet { full_text }))
    }
}

/// Finds the raw value at a path of keys (see [`raw_at`]).
struct RawAt<'p> {
    path: &'p [&'p str],
}

impl<'de> DeserializeSeed<'de> for RawAt<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        match self.path.split_first() {
            None => <&'de RawValue>::deserialize(deserializer).map(Some),
            Some((first, rest)) => deserializer.deserialize_any(RawAtVisitor { first, rest }),
        }
    }
}

struct RawAtVisitor<'p> {
    first: &'p str,
    rest: &'p [&'p str],
}

impl<'de> Visitor<'de> for RawAtVisitor<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        for_each_key!(map, |key| if *key == *self.first.as_bytes() {
            found = map.next_value_seed(RawAt { path: self.rest })?;
        } else {
            map.next_value::<IgnoredAny>()?;
        });
        Ok(found)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq).map(|()| None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(json: &str) -> Message<'_> {
        Message::from_slice(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn unwrapped(json: &str) -> UserMessage<'_> {
        match decode(json) {
            Message::Unwrapped(message) => message,
            other => panic!("{json}: {other:?}"),
        }
    }

    fn event(json: &str) -> Event<'_> {
        match decode(json).user_message() {
            Some(UserMessage::Event(event)) => event.clone(),
            other => panic!("{json}: {other:?}"),
        }
    }

    fn tweet(json: &str) -> Tweet<'_> {
        match decode(json).user_message() {
            Some(UserMessage::Tweet(tweet)) => tweet.clone(),
            other => panic!("{json}: {other:?}"),
        }
    }

    fn error(json: &[u8]) -> ParseError {
        match Message::from_slice(json) {
            Err(error) => error,
            Ok(message) => panic!("{json:?} decoded as {message:?}"),
        }
    }

    #[test]
    fn friends_str_parses_ids_up_to_u64_max() {
        let json = r#"{"for_user":"12","message":{"friends_str":["1","9007199254740993","18446744073709551615"]}}"#;
        assert_eq!(
            decode(json),
            Message::ForUser {
                for_user: 12,
                message: UserMessage::FriendsStr(vec![1, 9007199254740993, u64::MAX]),
            }
        );
        assert_eq!(decode(json).kind(), "for_user/friends_str");
        assert_eq!(
            unwrapped(r#"{"friends_str":[]}"#),
            UserMessage::FriendsStr(vec![])
        );
    }

    #[test]
    fn id_lists_with_odd_elements_are_unknown_not_errors() {
        for json in [
            r#"{"friends":[1,"x"]}"#,
            r#"{"friends":[1,null]}"#,
            r#"{"friends":[1,-2]}"#,
            r#"{"friends":[1,2.5]}"#,
            r#"{"friends":[18446744073709551616]}"#,
            r#"{"friends_str":["18446744073709551616"]}"#,
            r#"{"friends":{"a":1}}"#,
            r#"{"friends":[[1]]}"#,
        ] {
            assert_eq!(decode(json).kind(), "unknown", "{json}");
        }
        // The lenient path accepts what the fast path leaves to it.
        assert_eq!(
            unwrapped(r#"{"friends":["+7", 8 ]}"#),
            UserMessage::Friends(vec![7, 8])
        );
        assert_eq!(
            unwrapped("{\"friends\":[\n 1 ,\t2\r\n]}"),
            UserMessage::Friends(vec![1, 2])
        );
        assert_eq!(
            unwrapped(r#"{"friends":["1\u0032"]}"#),
            UserMessage::Friends(vec![12])
        );
    }

    #[test]
    fn fast_id_list_reads_plain_lists_only() {
        assert_eq!(fast_id_list(b"[]"), Some(vec![]));
        assert_eq!(fast_id_list(b" [ ] "), Some(vec![]));
        assert_eq!(fast_id_list(b"[0,\"1\", 22 ]"), Some(vec![0, 1, 22]));
        assert_eq!(
            fast_id_list(b"[18446744073709551615]"),
            Some(vec![u64::MAX])
        );
        assert_eq!(
            fast_id_list(b"[9999999999999999999]"),
            Some(vec![9_999_999_999_999_999_999])
        );
        // Leading zeros only occur in strings, where `str::parse` accepts them too.
        assert_eq!(fast_id_list(b"[\"000000000000000000001\"]"), Some(vec![1]));
        assert_eq!("000000000000000000001".parse::<u64>(), Ok(1));
        for odd in [
            &b"[18446744073709551616]"[..],
            b"[99999999999999999999]",
            b"[1,]",
            b"[,1]",
            b"[1 2]",
            b"[\"1]",
            b"[\"\"]",
            b"[-1]",
            b"[1.0]",
            b"[1e3]",
            b"[1",
            b"[1]x",
            b"{}",
            b"",
        ] {
            assert_eq!(fast_id_list(odd), None, "{}", String::from_utf8_lossy(odd));
        }
    }

    #[test]
    fn all_event_kinds_are_named() {
        let names = [
            ("favorite", EventKind::Favorite),
            ("unfavorite", EventKind::Unfavorite),
            ("follow", EventKind::Follow),
            ("unfollow", EventKind::Unfollow),
            ("block", EventKind::Block),
            ("unblock", EventKind::Unblock),
            ("list_created", EventKind::ListCreated),
            ("list_destroyed", EventKind::ListDestroyed),
            ("list_updated", EventKind::ListUpdated),
            ("list_member_added", EventKind::ListMemberAdded),
            ("list_member_removed", EventKind::ListMemberRemoved),
            ("list_user_subscribed", EventKind::ListUserSubscribed),
            ("list_user_unsubscribed", EventKind::ListUserUnsubscribed),
            ("user_update", EventKind::UserUpdate),
            ("access_revoked", EventKind::AccessRevoked),
            ("quoted_tweet", EventKind::QuotedTweet),
            ("favorited_retweet", EventKind::FavoritedRetweet),
            ("retweeted_retweet", EventKind::RetweetedRetweet),
            ("mute", EventKind::Mute),
            ("unmute", EventKind::Unmute),
        ];
        for (name, kind) in names {
            let json = format!(
                r#"{{"for_user":7,"message":{{"event":"{name}","created_at":"Mon Mar 14 09:47:02 +0000 2014","source":{{"id":1,"id_str":"1"}},"target":{{"id":2}}}}}}"#
            );
            let e = event(&json);
            assert_eq!((&e.kind, e.kind.as_str()), (&kind, name));
            assert_eq!((e.source_id, e.target_id), (Some(1), Some(2)));
            assert_eq!(
                e.created_at.as_deref(),
                Some("Mon Mar 14 09:47:02 +0000 2014")
            );
            assert_eq!(EventKind::from_name(Cow::Borrowed(name)), kind);
        }
        let e = event(r#"{"event":"something_new","source":3}"#);
        assert_eq!(e.kind, EventKind::Other(Cow::Borrowed("something_new")));
        assert_eq!(e.kind.as_str(), "something_new");
    }

    #[test]
    fn hand_written_events_of_kinds_no_fixture_has() {
        // Shapes from Twitter's streaming message types documentation.
        let unfollow = event(
            r#"{"event":"unfollow","created_at":"Sat Sep 24 18:59:38 +0000 2011","source":{"id":119476949,"id_str":"119476949","screen_name":"oauth_dancer"},"target":{"id":9160152,"id_str":"9160152"}}"#,
        );
        assert_eq!(
            (unfollow.kind, unfollow.source_id, unfollow.target_id),
            (EventKind::Unfollow, Some(119476949), Some(9160152))
        );
        let block = event(r#"{"event":"block","source":{"id_str":"10"},"target":{"id_str":"20"}}"#);
        assert_eq!(
            (block.kind, block.source_id, block.target_id),
            (EventKind::Block, Some(10), Some(20))
        );
        let unblock = event(r#"{"target":{"id":20},"source":{"id":10},"event":"unblock"}"#);
        assert_eq!(
            (unblock.kind, unblock.source_id, unblock.target_id),
            (EventKind::Unblock, Some(10), Some(20))
        );
        let added = event(
            r#"{"for_user":10,"message":{"event":"list_member_added","source":{"id":10},"target":{"id":20},"target_object":{"id":574,"slug":"friends","mode":"public"}}}"#,
        );
        assert_eq!(added.kind, EventKind::ListMemberAdded);
        assert_eq!(
            added.target_object.as_deref().map(RawValue::get),
            Some(r#"{"id":574,"slug":"friends","mode":"public"}"#)
        );
        let quoted = event(
            r#"{"event":"quoted_tweet","source":{"id":30},"target":{"id":10},"target_object":{"id":1,"id_str":"1","text":"q\u00fcote","quoted_status":{"id":2,"text":"x"}}}"#,
        );
        assert_eq!(quoted.kind, EventKind::QuotedTweet);
        assert!(quoted
            .target_object
            .as_deref()
            .map(RawValue::get)
            .is_some_and(|raw| raw.contains(r#""quoted_status""#)));
        let revoked = event(
            r#"{"event":"access_revoked","created_at":"Wed May 23 18:33:30 +0000 2012","source":{"id":10},"target":{"id":11},"target_object":{"token":"abc","client_application":{"id":99,"name":"app"}}}"#,
        );
        assert_eq!(
            (revoked.kind, revoked.source_id),
            (EventKind::AccessRevoked, Some(10))
        );
        let update = event(r#"{"event":"user_update","source":{"id":10},"target":{"id":10}}"#);
        assert_eq!(update.kind, EventKind::UserUpdate);
        assert!(update.target_object.is_none());
        // A tweet's "source" is a string: as an event's source it gives no id.
        let odd = event(r#"{"event":"favorite","source":"web","target":null}"#);
        assert_eq!((odd.source_id, odd.target_id), (None, None));
    }

    #[test]
    fn all_disconnect_codes() {
        for code in 1..=13u32 {
            let json = format!(
                r#"{{"disconnect":{{"code":{code},"stream_name":"s-{code}","reason":"r"}}}}"#
            );
            let Message::Disconnect(d) = decode(&json) else {
                panic!("{json}")
            };
            assert_eq!(d.code.code(), code);
            assert_eq!(d.code, DisconnectCode::from_code(code));
            assert_eq!(d.stream_name, format!("s-{code}"));
            assert_eq!(d.code.is_final(), code == 6 || code == 7, "code {code}");
        }
        let named = [
            DisconnectCode::Shutdown,
            DisconnectCode::DuplicateStream,
            DisconnectCode::ControlRequest,
            DisconnectCode::Stall,
            DisconnectCode::Normal,
            DisconnectCode::TokenRevoked,
            DisconnectCode::AdminLogout,
            DisconnectCode::Reserved,
            DisconnectCode::MaxMessageLimit,
            DisconnectCode::StreamException,
            DisconnectCode::BrokerStall,
            DisconnectCode::ShedLoad,
        ];
        for (index, code) in named.into_iter().enumerate() {
            assert_eq!(DisconnectCode::from_code(index as u32 + 1), code);
        }
        assert_eq!(DisconnectCode::from_code(13), DisconnectCode::Other(13));
        assert_eq!(DisconnectCode::from_code(0), DisconnectCode::Other(0));
        // Missing name and reason are empty; a code as a string is read too.
        let Message::Disconnect(d) = decode(r#"{"disconnect":{"code":"7"}}"#) else {
            panic!()
        };
        assert_eq!(
            (d.code, &*d.stream_name, &*d.reason),
            (DisconnectCode::AdminLogout, "", "")
        );
        assert_eq!(
            decode(r#"{"disconnect":{"reason":"no code"}}"#).kind(),
            "unknown"
        );
        assert_eq!(decode(r#"{"disconnect":{"code":-1}}"#).kind(), "unknown");
    }

    #[test]
    fn warnings() {
        let UserMessage::Warning(w) = unwrapped(
            r#"{"warning":{"code":"FOLLOWS_OVER_LIMIT","message":"The requested user follows more accounts than the maximum supported by this streaming endpoint.","user_id":18446744073709551615,"timestamp_ms":1439407322431}}"#,
        ) else {
            panic!()
        };
        assert_eq!(
            (w.code.as_str(), w.user_id, w.timestamp_ms),
            ("FOLLOWS_OVER_LIMIT", Some(u64::MAX), Some(1439407322431))
        );
        let UserMessage::Warning(w) =
            unwrapped(r#"{"warning":{"code":"FALLING_BEHIND","percent_full":"95"}}"#)
        else {
            panic!()
        };
        assert_eq!(
            (w.code, w.percent_full, &*w.message),
            (WarningCode::FallingBehind, Some(95), "")
        );
        let UserMessage::Warning(w) =
            unwrapped(r#"{"warning":{"code":"NEW_THING","percent_full":1.5}}"#)
        else {
            panic!()
        };
        assert_eq!((w.code.as_str(), w.percent_full), ("NEW_THING", None));
        assert_eq!(
            decode(r#"{"warning":{"message":"no code"}}"#).kind(),
            "unknown"
        );
    }

    #[test]
    fn notices_of_kinds_no_fixture_has() {
        assert_eq!(
            unwrapped(
                r#"{"scrub_geo":{"user_id":14090452,"user_id_str":"14090452","up_to_status_id":23260136625,"up_to_status_id_str":"23260136625","timestamp_ms":"1415022747749"}}"#
            ),
            UserMessage::ScrubGeo(ScrubGeo {
                user_id: 14090452,
                up_to_status_id: 23260136625,
                timestamp_ms: Some(1415022747749)
            })
        );
        match decode(
            r#"{"for_user":9,"message":{"status_withheld":{"id":1234567890,"user_id":123456,"withheld_in_countries":["DE","AR"],"timestamp_ms":"1"}}}"#,
        ) {
            Message::ForUser {
                for_user: 9,
                message: UserMessage::StatusWithheld(w),
            } => {
                assert_eq!(
                    (w.id, w.user_id, w.timestamp_ms),
                    (1234567890, 123456, Some(1))
                );
                assert_eq!(w.withheld_in_countries, ["DE", "AR"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            unwrapped(r#"{"user_withheld":{"id":123456,"withheld_in_countries":["XX"]}}"#),
            UserMessage::UserWithheld(UserWithheld {
                id: 123456,
                withheld_in_countries: vec![Cow::Borrowed("XX")],
                timestamp_ms: None,
            })
        );
        assert_eq!(
            unwrapped(
                r#"{"delete":{"status":{"id":1,"id_str":"9007199254740993","user_id":3},"timestamp_ms":"1415022747749"}}"#
            ),
            UserMessage::Delete(Delete {
                target: DeleteTarget::Status,
                id: 9007199254740993,
                user_id: Some(3),
                timestamp_ms: Some(1415022747749)
            })
        );
        assert_eq!(
            unwrapped(r#"{"limit":{"track":"542","timestamp_ms":"1415022747749"}}"#),
            UserMessage::Limit(Limit {
                track: 542,
                timestamp_ms: Some(1415022747749)
            })
        );
        for odd in [
            r#"{"scrub_geo":{"user_id":1}}"#,
            r#"{"status_withheld":{"id":1,"withheld_in_countries":["DE"]}}"#,
            r#"{"user_withheld":{"id":1,"withheld_in_countries":["DE",7]}}"#,
            r#"{"delete":{"status":{"user_id":1}}}"#,
            r#"{"delete":{"tweet":{"id":1}}}"#,
            r#"{"limit":{"track":"lots"}}"#,
            r#"{"limit":[]}"#,
        ] {
            assert_eq!(decode(odd).kind(), "unknown", "{odd}");
        }
    }

    #[test]
    fn non_ascii_text_raw_and_escaped() {
        let raw = tweet(r#"{"id":1,"text":"日本語 café 😀"}"#);
        assert_eq!(raw.text, "日本語 café 😀");
        assert!(
            matches!(raw.text, Cow::Borrowed(_)),
            "unescaped text borrows from the input"
        );
        let escaped = tweet(r#"{"id":1,"text":"\u65e5\u672c\u8a9e caf\u00e9 \ud83d\ude00"}"#);
        assert_eq!(escaped.text, "日本語 café 😀");
        assert!(matches!(escaped.text, Cow::Owned(_)));
        // A lone surrogate is not valid JSON text for serde_json.
        let lone = error(br#"{"id":1,"text":"\ud83d"}"#);
        assert_eq!(lone.kind(), ParseErrorKind::InvalidJson);
        // Invalid UTF-8 in a kept string is an error.
        assert_eq!(
            error(b"{\"id\":1,\"text\":\"\xff\"}").kind(),
            ParseErrorKind::InvalidJson
        );
    }

    #[test]
    fn escaped_crlf_inside_strings() {
        let json = r#"{"direct_message":{"id":5,"text":"line one\r\nline two\n","sender_id":1,"recipient_id":2}}"#;
        assert!(!json.as_bytes().contains(&b'\r'), "the wire form has no CR");
        match unwrapped(json) {
            UserMessage::DirectMessage(dm) => {
                assert_eq!(dm.text, "line one\r\nline two\n");
                assert_eq!(
                    (dm.id, dm.sender_id, dm.recipient_id),
                    (5, Some(1), Some(2))
                );
                assert_eq!(
                    dm.raw.get(),
                    r#"{"id":5,"text":"line one\r\nline two\n","sender_id":1,"recipient_id":2}"#
                );
            }
            other => panic!("{other:?}"),
        }
        let t = tweet(r#"{"id":2,"text":"a\r\nb \"quoted\" \\ \/"}"#);
        assert_eq!(t.text, "a\r\nb \"quoted\" \\ /");
    }

    #[test]
    fn ids_beyond_2_pow_53_as_numbers_and_strings() {
        let big = 9007199254740993u64; // 2^53 + 1: not representable as f64.
        for json in [
            format!(r#"{{"for_user":{big},"message":{{"id":{big},"text":"t"}}}}"#),
            format!(r#"{{"for_user":"{big}","message":{{"id_str":"{big}","text":"t"}}}}"#),
        ] {
            match decode(&json) {
                Message::ForUser {
                    for_user,
                    message: UserMessage::Tweet(t),
                } => {
                    assert_eq!((for_user, t.id), (big, big), "{json}");
                }
                other => panic!("{other:?}"),
            }
        }
        // id_str wins over a numeric id damaged by a double.
        let t = tweet(r#"{"id":641660763770372100,"id_str":"641660763770372097","text":"x"}"#);
        assert_eq!(t.id, 641660763770372097);
        let t = tweet(r#"{"id_str":"641660763770372097","id":641660763770372100,"text":"x"}"#);
        assert_eq!(t.id, 641660763770372097);
        // for_user above u64 or negative: not an envelope, passed through.
        assert_eq!(
            decode(r#"{"for_user":"18446744073709551616","message":{"friends":[]}}"#).kind(),
            "unknown"
        );
        assert_eq!(
            decode(r#"{"for_user":-1,"message":{"friends":[]}}"#).kind(),
            "unknown"
        );
        assert_eq!(
            decode(r#"{"for_user":1.0,"message":{"friends":[]}}"#).kind(),
            "unknown"
        );
        assert_eq!(
            decode(r#"{"message":{"friends":[]},"for_user":"18446744073709551615"}"#).for_user(),
            Some(u64::MAX)
        );
    }

    #[test]
    fn tweet_fields() {
        let t = tweet(
            r#"{"created_at":"Thu Mar 08 12:38:03 +0000 2018","id":3,"id_str":"3","text":"short\u2026","source":"\u003ca href=\"x\"\u003eweb\u003c\/a\u003e","truncated":true,"in_reply_to_status_id":1,"in_reply_to_status_id_str":"1","user":{"id":7,"id_str":"7","screen_name":"alice","entities":{"url":{"urls":[{"id":99}]}}},"retweeted_status":{"id":2,"id_str":"2","user":{"id":8},"text":"orig"},"quoted_status_id":4,"quoted_status_id_str":"4","quoted_status":{"id":5},"extended_tweet":{"full_text":"the whole text","display_text_range":[0,14]},"timestamp_ms":"1520690595660"}"#,
        );
        assert_eq!(
            t,
            Tweet {
                id: 3,
                text: Cow::Borrowed("short…"),
                full_text: Some(Cow::Borrowed("the whole text")),
                user_id: Some(7),
                user_screen_name: Some(Cow::Borrowed("alice")),
                created_at: Some(Cow::Borrowed("Thu Mar 08 12:38:03 +0000 2018")),
                in_reply_to_status_id: Some(1),
                retweeted_status_id: Some(2),
                quoted_status_id: Some(4),
                timestamp_ms: Some(1520690595660),
            }
        );
        assert_eq!(t.best_text(), "the whole text");
        // Only full_text (REST extended mode), and a quoted_status without the id fields.
        let t = tweet(r#"{"id":1,"full_text":"long","quoted_status":{"id_str":"5"},"user":null}"#);
        assert_eq!(
            (
                &*t.text,
                t.full_text.as_deref(),
                t.quoted_status_id,
                t.user_id
            ),
            ("long", Some("long"), Some(5), None)
        );
        assert_eq!(t.best_text(), "long");
        // No text at all, or no id: not a tweet.
        assert_eq!(decode(r#"{"id":1,"created_at":"x"}"#).kind(), "unknown");
        assert_eq!(decode(r#"{"text":"x","user":{"id":1}}"#).kind(), "unknown");
        assert_eq!(decode(r#"{"id":"abc","text":"x"}"#).kind(), "unknown");
    }

    #[test]
    fn direct_messages_wrapped_bare_and_in_envelopes() {
        let json = r#"{"for_user":2,"message":{"direct_message":{"id_str":"11","text":"hi","sender":{"id":1,"screen_name":"a"},"recipient":{"id_str":"2"}}}}"#;
        match decode(json) {
            Message::ForUser {
                for_user: 2,
                message: UserMessage::DirectMessage(dm),
            } => {
                assert_eq!(
                    (dm.id, dm.sender_id, dm.recipient_id),
                    (11, Some(1), Some(2))
                );
                assert_eq!(
                    dm.raw.get(),
                    r#"{"id_str":"11","text":"hi","sender":{"id":1,"screen_name":"a"},"recipient":{"id_str":"2"}}"#
                );
            }
            other => panic!("{other:?}"),
        }
        let bare = r#"{ "id": 12, "text": "yo", "sender_id_str": "1", "recipient_id": 3 }"#;
        match unwrapped(bare) {
            UserMessage::DirectMessage(dm) => {
                assert_eq!(
                    (dm.id, dm.sender_id, dm.recipient_id),
                    (12, Some(1), Some(3))
                );
                assert_eq!(dm.raw.get(), bare.trim());
            }
            other => panic!("{other:?}"),
        }
        let in_envelope = format!(r#"{{"for_user":3,"message":{bare}}}"#);
        match decode(&in_envelope) {
            Message::ForUser {
                message: UserMessage::DirectMessage(dm),
                ..
            } => assert_eq!(dm.raw.get(), bare.trim()),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decode(r#"{"direct_message":{"text":"no id"}}"#).kind(),
            "unknown"
        );
        // A bare object with a sender but no text is no DM (and no tweet).
        assert_eq!(decode(r#"{"id":1,"sender_id":2}"#).kind(), "unknown");
    }

    #[test]
    fn unknown_kinds_pass_through_with_their_raw_json() {
        let json = r#"  {"something_new":{"a":[1,2,{"b":null}]},"x":"\u00e9"} "#;
        match decode(json) {
            Message::Unwrapped(UserMessage::Unknown(raw)) => assert_eq!(raw.get(), json.trim()),
            other => panic!("{other:?}"),
        }
        assert_eq!(decode("{}").kind(), "unknown");
        let inner = r#"{"for_user":1,"message":{"something_new":{}} ,"other":1}"#;
        match decode(inner) {
            Message::ForUser {
                for_user: 1,
                message: UserMessage::Unknown(raw),
            } => {
                assert_eq!(raw.get(), r#"{"something_new":{}}"#)
            }
            other => panic!("{other:?}"),
        }
        match decode(r#"{"for_user":1,"message":"hi"}"#) {
            Message::ForUser {
                message: UserMessage::Unknown(raw),
                ..
            } => assert_eq!(raw.get(), r#""hi""#),
            other => panic!("{other:?}"),
        }
        // Duplicate keys: the last one counts, for the kind and for the raw JSON.
        match decode(r#"{"for_user":1,"message":{"limit":{"track":1}},"message":{"new":1}}"#) {
            Message::ForUser {
                message: UserMessage::Unknown(raw),
                ..
            } => assert_eq!(raw.get(), r#"{"new":1}"#),
            other => panic!("{other:?}"),
        }
        // Control and disconnect are top-level kinds only; an envelope does not nest.
        assert_eq!(
            decode(r#"{"for_user":1,"message":{"control":{"control_uri":"/1.1/site/c/x"}}}"#)
                .kind(),
            "for_user/unknown"
        );
        assert_eq!(
            decode(r#"{"for_user":1,"message":{"for_user":2,"message":{"friends":[]}}}"#).kind(),
            "for_user/unknown"
        );
        assert_eq!(decode(r#"{"control":5}"#).kind(), "unknown");
        assert_eq!(decode(r#"{"control":{"control_uri":7}}"#).kind(), "unknown");
    }

    #[test]
    fn control_stream_ids() {
        let control = |json: &'static str| match decode(json) {
            Message::Control(control) => control,
            other => panic!("{other:?}"),
        };
        let c = control(
            r#"{"control":{"control_uri":"\/1.1\/site\/c\/01_225167_334389048B872A533002B34D73F8C29FD09EFC50"}}"#,
        );
        assert_eq!(
            c.control_uri,
            "/1.1/site/c/01_225167_334389048B872A533002B34D73F8C29FD09EFC50"
        );
        assert_eq!(
            c.stream_id(),
            Some("01_225167_334389048B872A533002B34D73F8C29FD09EFC50")
        );
        assert_eq!(
            control(r#"{"control":{"control_uri":"/2b/site/c/abc/info.json"}}"#).stream_id(),
            Some("abc")
        );
        assert_eq!(
            control(r#"{"control":{"control_uri":"/1.1/site/c/"}}"#).stream_id(),
            None
        );
        assert_eq!(
            control(r#"{"control":{"control_uri":"/elsewhere"}}"#).stream_id(),
            None
        );
        assert_eq!(
            decode(r#"{"control":{"control_uri":"/1.1/site/c/x"}}"#).kind(),
            "control"
        );
        assert_eq!(
            decode(r#"{"control":{"control_uri":"/1.1/site/c/x"}}"#).user_message(),
            None
        );
    }

    #[test]
    fn kinds_inside_and_outside_the_envelope() {
        let payloads = [
            (r#"{"friends":[1]}"#, "friends"),
            (r#"{"friends_str":["1"]}"#, "friends_str"),
            (r#"{"id":1,"text":"t"}"#, "tweet"),
            (r#"{"delete":{"direct_message":{"id":1}}}"#, "delete"),
            (
                r#"{"scrub_geo":{"user_id":1,"up_to_status_id":2}}"#,
                "scrub_geo",
            ),
            (r#"{"limit":{"track":1}}"#, "limit"),
            (
                r#"{"status_withheld":{"id":1,"user_id":2,"withheld_in_countries":[]}}"#,
                "status_withheld",
            ),
            (
                r#"{"user_withheld":{"id":1,"withheld_in_countries":[]}}"#,
                "user_withheld",
            ),
            (
                r#"{"direct_message":{"id":1,"text":"t"}}"#,
                "direct_message",
            ),
            (r#"{"event":"follow"}"#, "event"),
            (r#"{"warning":{"code":"FALLING_BEHIND"}}"#, "warning"),
            (r#"{"new":1}"#, "unknown"),
        ];
        for (payload, kind) in payloads {
            let message = decode(payload);
            assert_eq!(message.kind(), kind);
            assert_eq!(message.user_message().map(UserMessage::kind), Some(kind));
            assert_eq!(message.for_user(), None);
            let wrapped = format!(r#"{{"for_user":5,"message":{payload}}}"#);
            let message = decode(&wrapped);
            assert_eq!(message.kind(), format!("for_user/{kind}"));
            assert_eq!(message.for_user(), Some(5));
        }
    }

    #[test]
    fn invalid_json_is_an_error_that_says_where() {
        let e = error(br#"{"a":x}"#);
        assert_eq!(
            (e.kind(), e.line(), e.column(), e.offset()),
            (ParseErrorKind::InvalidJson, 1, 6, 5)
        );
        assert_eq!(
            e.to_string(),
            "message is not valid JSON: expected value at byte 5 (line 1, column 6)"
        );

        let e = error(b"{\n  \"a\": 1,\n  oops\n}");
        assert_eq!((e.line(), e.column()), (3, 3));
        assert_eq!(e.offset(), 14, "the o of oops");

        let e = error(br#"{"text":"secret stuff"#);
        assert_eq!(e.kind(), ParseErrorKind::Truncated);
        assert!(!e.to_string().contains("secret"), "{e}");
        assert_eq!(error(b"").kind(), ParseErrorKind::Truncated);
        assert_eq!(error(b"  \n ").kind(), ParseErrorKind::Truncated);
        assert_eq!(
            error(br#"{"a":1} {"b":2}"#).kind(),
            ParseErrorKind::InvalidJson
        );
        assert_eq!(error(br#"{"a":1,}"#).kind(), ParseErrorKind::InvalidJson);
        assert_eq!(error(br#"{"a":[1,2}"#).kind(), ParseErrorKind::InvalidJson);
        // Errors inside values the decoder skips are still errors.
        assert_eq!(
            error(br#"{"id":1,"text":"t","entities":{"a":[1,,2]}}"#).kind(),
            ParseErrorKind::InvalidJson
        );
        assert_eq!(
            error(br#"{"for_user":1,"message":{"x":tru}}"#).kind(),
            ParseErrorKind::InvalidJson
        );
    }

    #[test]
    fn a_top_level_that_is_not_an_object_is_an_error() {
        for (json, found) in [
            (&br#"[{"id":1,"text":"t"}]"#[..], "an array"),
            (br#""a very secret string""#, "a string"),
            (b"42", "a number"),
            (b"-1.5", "a number"),
            (b"true", "a boolean"),
            (b"null", "null"),
        ] {
            let e = error(json);
            assert_eq!(e.kind(), ParseErrorKind::NotAnObject);
            let text = e.to_string();
            assert!(
                text.starts_with("message is not a JSON object: the top level is "),
                "{text}"
            );
            assert!(text.contains(found), "{text}");
            assert!(!text.contains("secret"), "{text}");
        }
    }

    #[test]
    fn deep_nesting_in_skipped_values_is_fine() {
        let depth = 100_000;
        let mut json = String::from(r#"{"id":1,"text":"t","entities":"#);
        json.push_str(&"[".repeat(depth));
        json.push_str(&"]".repeat(depth));
        json.push('}');
        assert_eq!(decode(&json).kind(), "tweet");
        let mut json = String::from(r#"{"for_user":1,"message":{"new":"#);
        json.push_str(&"{\"a\":".repeat(depth));
        json.push('1');
        json.push_str(&"}".repeat(depth));
        json.push_str("}}");
        assert_eq!(decode(&json).kind(), "for_user/unknown");
        let mut json = String::from(r#"{"for_user":1,"message":{"retweeted_status":"#);
        json.push_str(&"[".repeat(depth));
        json.push_str(&"]".repeat(depth));
        json.push_str(r#","id":1,"text":"t"}}"#);
        assert_eq!(decode(&json).kind(), "for_user/tweet");
    }

    #[test]
    fn raw_at_finds_values_by_path() {
        let bytes = br#"{"for_user":1,"message":{"id":1,"text":"t","user":{"name":"n"}}}"#;
        assert_eq!(
            raw_at(bytes, &["message", "user"])
                .expect("valid")
                .map(RawValue::get),
            Some(r#"{"name":"n"}"#)
        );
        assert_eq!(
            raw_at(bytes, &["message", "nope"])
                .expect("valid")
                .map(RawValue::get),
            None
        );
        assert_eq!(
            raw_at(bytes, &["for_user", "x"])
                .expect("valid")
                .map(RawValue::get),
            None
        );
        assert_eq!(
            raw_at(b"[1]", &["a"]).expect("valid").map(RawValue::get),
            None
        );
        assert_eq!(
            raw_at(b"[1", &[]).map(|_| ()).unwrap_err().kind(),
            ParseErrorKind::Truncated
        );
    }

    /// Any JSON value, with keys drawn mostly from the ones the decoder looks for.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        const KEYS: &[&str] = &[
            "for_user",
            "message",
            "control",
            "control_uri",
            "disconnect",
            "code",
            "warning",
            "limit",
            "track",
            "delete",
            "status",
            "direct_message",
            "scrub_geo",
            "user_id",
            "up_to_status_id",
            "status_withheld",
            "user_withheld",
            "withheld_in_countries",
            "friends",
            "friends_str",
            "event",
            "source",
            "target",
            "target_object",
            "id",
            "id_str",
            "text",
            "full_text",
            "extended_tweet",
            "user",
            "screen_name",
            "retweeted_status",
            "quoted_status",
            "quoted_status_id_str",
            "timestamp_ms",
            "sender",
            "sender_id",
            "recipient_id_str",
            "percent_full",
            "other",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[0-9]{1,21}".prop_map(Value::String),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(
                    |entries| {
                        Value::Object(
                            entries
                                .into_iter()
                                .map(|(k, v)| (k.to_owned(), v))
                                .collect(),
                        )
                    }
                ),
            ]
        })
    }

    proptest! {
        #[test]
        fn every_json_object_decodes_and_nothing_else_does(value in json_value()) {
            let bytes = serde_json::to_vec(&value).expect("serializable");
            let result = Message::from_slice(&bytes);
            if value.is_object() {
                let message = result.expect("an object never fails");
                prop_assert!(!message.kind().is_empty());
            } else {
                prop_assert_eq!(result.expect_err("not an object").kind(), ParseErrorKind::NotAnObject);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Message::from_slice(&bytes).map(|m| m.kind());
        }

        #[test]
        fn tweets_round_trip(
            id in any::<u64>(),
            for_user in any::<u64>(),
            user_id in any::<u64>(),
            text in any::<String>(),
            id_as_string in any::<bool>(),
            for_user_as_string in any::<bool>(),
        ) {
            let id_value = if id_as_string { serde_json::json!(id.to_string()) } else { serde_json::json!(id) };
            let for_user_value = if for_user_as_string { serde_json::json!(for_user.to_string()) } else { serde_json::json!(for_user) };
            let key = if id_as_string { "id_str" } else { "id" };
            let json = serde_json::json!({
                "for_user": for_user_value,
                "message": { key: id_value, "text": text, "user": { "id_str": user_id.to_string() } },
            });
            let bytes = serde_json::to_vec(&json).expect("serializable");
            match Message::from_slice(&bytes).expect("valid") {
                Message::ForUser { for_user: got, message: UserMessage::Tweet(t) } => {
                    prop_assert_eq!(got, for_user);
                    prop_assert_eq!(t.id, id);
                    prop_assert_eq!(&*t.text, &*text);
                    prop_assert_eq!(t.user_id, Some(user_id));
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn id_lists_match_the_lenient_path(
            ids in prop::collection::vec((any::<u64>(), any::<bool>(), " {0,2}", " {0,2}"), 0..20),
        ) {
            let items: Vec<String> = ids
                .iter()
                .map(|(id, quoted, before, after)| {
                    if *quoted { format!("{before}\"{id}\"{after}") } else { format!("{before}{id}{after}") }
                })
                .collect();
            let list = format!("[{}]", items.join(","));
            let expected: Vec<u64> = ids.iter().map(|(id, ..)| *id).collect();
            prop_assert_eq!(fast_id_list(list.as_bytes()), Some(expected.clone()));
            let lenient = serde_json::from_str::<Lenient<Vec<u64>>>(&list).expect("valid").0;
            prop_assert_eq!(lenient, Some(expected));
        }
    }

    fn serialized(json: &str) -> String {
        serde_json::to_string(&decode(json)).unwrap()
    }

    #[test]
    fn serialized_fields_keep_what_was_decoded_and_leave_out_what_was_absent() {
        assert_eq!(
            serialized(
                r#"{"for_user":"18446744073709551615","message":{"id":5,"id_str":"9007199254740993","text":"caf\u00e9","user":{"id":7,"screen_name":"x"},"timestamp_ms":"1"}}"#
            ),
            r#"{"for_user":18446744073709551615,"message":{"tweet":{"id":9007199254740993,"text":"café","user_id":7,"user_screen_name":"x","timestamp_ms":1}}}"#
        );
        assert_eq!(
            serialized(r#"{"disconnect":{"code":6,"stream_name":"s","reason":"revoked"}}"#),
            r#"{"disconnect":{"code":6,"stream_name":"s","reason":"revoked"}}"#
        );
        assert_eq!(
            serialized(r#"{"warning":{"code":"FALLING_BEHIND","message":"m","percent_full":60}}"#),
            r#"{"warning":{"code":"FALLING_BEHIND","message":"m","percent_full":60}}"#
        );
        assert_eq!(
            serialized(r#"{"for_user":1,"message":{"friends":[2,3]}}"#),
            r#"{"for_user":1,"message":{"friends":[2,3]}}"#
        );
        assert_eq!(
            serialized(r#"{"delete":{"status":{"id":4,"user_id":5}}}"#),
            r#"{"delete":{"target":"status","id":4,"user_id":5}}"#
        );
        assert_eq!(
            serialized(
                r#"{"event":"custom_thing","source":{"id":1},"target":{"id":2},"target_object":{"b": 1,"a":[ ]}}"#
            ),
            r#"{"event":{"kind":"custom_thing","source_id":1,"target_id":2,"target_object":{"b": 1,"a":[ ]}}}"#
        );
        // Unknown payloads are written back exactly as they came, whitespace included.
        assert_eq!(
            serialized(r#"{"for_user":1,"message":{"zz": [1, 2]}}"#),
            r#"{"for_user":1,"message":{"zz": [1, 2]}}"#
        );
    }

    #[test]
    fn owned_messages_equal_the_borrowed_ones_and_outlive_their_bytes() {
        let inputs = [
            r#"{"control":{"control_uri":"/1.1/site/c/1_2"}}"#,
            r#"{"for_user":3,"message":{"event":"favorite","source":{"id":1},"target":{"id":2},"created_at":"now","target_object":{"id":9}}}"#,
            r#"{"direct_message":{"id":1,"text":"a\nb","sender_id":2,"recipient_id":3}}"#,
            r#"{"status_withheld":{"id":1,"user_id":2,"withheld_in_countries":["DE","FR"]}}"#,
            r#"{"user_withheld":{"id":1,"withheld_in_countries":["X\u0059"]}}"#,
            r#"{"warning":{"code":"SOMETHING_NEW","message":"m"}}"#,
        ];
        for input in inputs {
            let bytes = input.as_bytes().to_vec();
            let borrowed = Message::from_slice(&bytes).unwrap();
            let owned: Message<'static> = borrowed.clone().into_owned();
            assert_eq!(owned, borrowed, "{input}");
            let json = serde_json::to_string(&borrowed).unwrap();
            drop(borrowed);
            drop(bytes);
            assert_eq!(serde_json::to_string(&owned).unwrap(), json);
        }
    }
}
