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
//! Decoding is a single pass over the bytes with a validating JSON scanner of this crate's
//! own: it checks exactly what serde_json checks when it skips a value into [`IgnoredAny`],
//! but scans strings eight bytes at a time and builds nothing. Keys are matched as they come,
//! the few values a kind needs (ids, `created_at`, …) are read from their bytes, values it
//! does not need are only checked, and nothing is built into a [`serde_json::Value`]; a rarer
//! value (a notice, an event's users) is read by serde code on that value's bytes. Invalid
//! input is handed to a decoder made of serde_json visitors alone, which gives the error with
//! serde_json's wording and position (the two decoders give the same answer for every input;
//! the tests compare them). Strings are [`Cow`]s that borrow from the input unless they contain
//! escapes, which must be decoded (`"caf\u00e9"`, `"\r\n"`). Sub-objects kept whole (an
//! event's `target_object`) are borrowed [`RawValue`]s.
//!
//! A tweet's text, its author ([`Tweet::user_id`], [`Tweet::user_screen_name`]) and the
//! original of a retweet ([`Tweet::retweeted_status_id`]) are kept as [`RawJson`] and read
//! only when asked ([`Tweet::text`] decodes the text). The two objects hold more than half of
//! a v1.1 tweet's object keys, and skipping an object costs a fraction of reading its keys;
//! the text is where a tweet's escapes are. Each accessor reads its value again on every
//! call. Their syntax is checked with the message, but not their UTF-8 (as with
//! [`IgnoredAny`]) nor their escapes' code points: the text decodes lossily (U+FFFD), and an
//! accessor that meets a field it cannot decode (a lone surrogate escape such as
//! `"\ud800"`, bytes that are not UTF-8) answers `None` (such a string used to fail the
//! whole message).
//!
//! A [`Tweet`] has no raw copy of itself (for a message that went through the serde decoder it
//! would cost a second pass over every tweet, the commonest and largest message). Keep the
//! message bytes instead (a [`Parser`](crate::parser::Parser) receives them as [`bytes::Bytes`]) and use
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
//!         assert_eq!(tweet.text(), "café");
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok::<(), sitebucket_proto::message::ParseError>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeStruct};
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
/// double), else from `id`. The text, the author (`user`) and the original of a retweet
/// (`retweeted_status`) are kept as raw JSON ([`RawJson`]) and read when asked
/// ([`Tweet::text`], [`Tweet::user_id`], [`Tweet::user_screen_name`],
/// [`Tweet::retweeted_status_id`]): together they hold most of a tweet's keys and escapes,
/// and most consumers never ask for all of them. Everything else stays in the message bytes:
/// see the [module docs](crate::message) for why there is no raw copy of the whole tweet.
///
/// Equality compares the texts decoded, and the raw `user` and `retweeted_status` by their
/// exact bytes.
#[derive(Clone, Debug)]
pub struct Tweet<'a> {
    /// The tweet id.
    pub id: u64,
    /// `text` as sent: a JSON string literal, quotes and escapes included (`full_text`'s when
    /// a tweet has no `text`). Decoded by [`Tweet::text`].
    pub raw_text: RawJson<'a>,
    /// The untruncated text as sent (`extended_tweet.full_text`, or a top-level
    /// `full_text`), a JSON string literal. Decoded by [`Tweet::full_text`].
    pub raw_full_text: Option<RawJson<'a>>,
    /// The author: the `user` object as sent (`None` when absent or `null`). Its syntax was
    /// checked with the message; its fields are read by [`Tweet::user_id`] and
    /// [`Tweet::user_screen_name`].
    pub user: Option<RawJson<'a>>,
    /// `created_at`, as sent (`"Wed Apr 06 19:13:37 +0000 2011"`).
    pub created_at: Option<Cow<'a, str>>,
    /// The tweet this one replies to.
    pub in_reply_to_status_id: Option<u64>,
    /// For a retweet, the original tweet (`retweeted_status`) as sent (`None` when absent or
    /// `null`); its id is [`Tweet::retweeted_status_id`].
    pub retweeted_status: Option<RawJson<'a>>,
    /// For a quote tweet, the id of the quoted tweet.
    pub quoted_status_id: Option<u64>,
    /// `timestamp_ms` (sent by streams since 2014).
    pub timestamp_ms: Option<u64>,
}

/// One JSON value as it appeared in a message, not decoded.
///
/// The decoder checks the syntax of a value it keeps this way, as it does every value's, but
/// like [`IgnoredAny`] it neither decodes its string escapes nor checks its UTF-8: that is
/// left to whoever reads it ([`RawJson::decode_str`], [`Tweet::text`], [`Tweet::user_id`],
/// …), which is what makes keeping it cheap. [`RawJson::to_str`] checks the UTF-8 of the
/// whole value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RawJson<'a>(Cow<'a, [u8]>);

impl<'a> RawJson<'a> {
    /// Raw JSON from text that holds exactly one JSON value (whitespace around it allowed,
    /// and kept), checked as the decoder checks a value: its syntax, not its UTF-8.
    pub fn new(json: &'a [u8]) -> Result<Self, ParseError> {
        if scan::validate(json).is_ok() {
            return Ok(RawJson(Cow::Borrowed(json)));
        }
        // Let serde_json say what is wrong, and where (or accept nesting too deep for the
        // scanner).
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        IgnoredAny::deserialize(&mut deserializer)
            .and_then(|_| deserializer.end())
            .map_err(|error| ParseError::from_json(&error, json))?;
        Ok(RawJson(Cow::Borrowed(json)))
    }

    /// A value the decoder already checked.
    fn checked(json: &'a [u8]) -> Self {
        RawJson(Cow::Borrowed(json))
    }

    /// The JSON text, as sent.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The JSON text as a `str`, when it is valid UTF-8 (escapes are not decoded).
    pub fn to_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.0)
    }

    /// For a JSON string, its text, decoded: borrowed when it holds no escapes and is valid
    /// UTF-8, else a copy. Never fails on a string: bytes that are not UTF-8 and escapes of
    /// lone surrogates (`"\ud800"`) become U+FFFD, as [`String::from_utf8_lossy`] does.
    /// `None` when the value is not a string.
    pub fn decode_str(&self) -> Option<Cow<'_, str>> {
        string_inside(&self.0).map(decode_json_string)
    }

    /// The same value owning its bytes.
    pub fn into_owned(self) -> RawJson<'static> {
        RawJson(Cow::Owned(self.0.into_owned()))
    }
}

impl fmt::Debug for RawJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawJson({:?})", String::from_utf8_lossy(&self.0))
    }
}

impl Serialize for RawJson<'_> {
    /// The value as it was sent (with serde_json, verbatim); an error if it is not UTF-8.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let text = self.to_str().map_err(S::Error::custom)?;
        let raw: &RawValue = serde_json::from_str(text).map_err(S::Error::custom)?;
        raw.serialize(serializer)
    }
}

/// Decodes the inside of a JSON string literal (between its quotes), lossily: see
/// [`RawJson::decode_str`]. Well-formed input is what the decoder checked; anything else
/// still decodes to something, and never panics.
fn decode_json_string(raw: &[u8]) -> Cow<'_, str> {
    let Some(first) = memchr::memchr(b'\\', raw) else {
        return String::from_utf8_lossy(raw);
    };
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut rest = raw;
    let mut at = first;
    loop {
        out.extend_from_slice(&rest[..at]);
        rest = &rest[at + 1..];
        let (escape, tail) = match rest.split_first() {
            Some((escape, tail)) => (*escape, tail),
            None => {
                out.push(b'\\');
                break;
            }
        };
        rest = tail;
        let simple = match escape {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
        } else if escape == b'u' {
            let (c, tail) = decode_unicode_escape(rest);
            rest = tail;
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        match memchr::memchr(b'\\', rest) {
            Some(next) => at = next,
            None => break,
        }
    }
    out.extend_from_slice(rest);
    match String::from_utf8(out) {
        Ok(text) => Cow::Owned(text),
        Err(error) => Cow::Owned(String::from_utf8_lossy(error.as_bytes()).into_owned()),
    }
}

/// The character of a `\uXXXX` escape (after the `\u`), joining a surrogate pair; a lone
/// surrogate or bad hex is U+FFFD. Returns the rest of the input.
fn decode_unicode_escape(rest: &[u8]) -> (char, &[u8]) {
    fn hex4(bytes: &[u8]) -> Option<u32> {
        let digits = std::str::from_utf8(bytes.get(..4)?).ok()?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(digits, 16).ok()
    }
    let Some(unit) = hex4(rest) else {
        return (char::REPLACEMENT_CHARACTER, rest);
    };
    let rest = &rest[4..];
    if (0xD800..0xDC00).contains(&unit) {
        if let Some(low) = rest.strip_prefix(b"\\u").and_then(hex4) {
            if (0xDC00..0xE000).contains(&low) {
                let c = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                return (
                    char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER),
                    &rest[6..],
                );
            }
        }
    }
    (
        char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER),
        rest,
    )
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
    /// of everything but the UTF-8 of only what it decodes: the strings it decodes and the
    /// values it keeps as [`RawValue`] (an event's `target_object`, …), whose invalid bytes
    /// are an [`InvalidJson`](ParseErrorKind::InvalidJson) error. Every `Cow<str>` here is
    /// valid UTF-8; a skipped string with invalid bytes is not reported, nor is one inside a
    /// value kept as [`RawJson`] (a tweet's text, `user` and `retweeted_status`), whose
    /// accessors deal with it. Skipped values may nest to any depth: serde_json skips them
    /// without recursion.
    pub fn from_slice(bytes: &'a [u8]) -> Result<Message<'a>, ParseError> {
        match scan::message(bytes) {
            Some(message) => Ok(message),
            None => Self::from_slice_serde(bytes),
        }
    }

    /// The reference decoder: [`Message::from_slice`] through serde_json's visitors alone.
    ///
    /// `from_slice` scans the message with a JSON scanner of its own and falls back to this
    /// decoder for anything it does not decide itself (every error included, so that errors
    /// keep serde_json's wording and position). Both give the same answer for every input —
    /// the tests compare them on generated and mutated messages — and this one is slower;
    /// it is public for those tests and for benchmarks, not for use.
    #[doc(hidden)]
    pub fn from_slice_serde(bytes: &'a [u8]) -> Result<Message<'a>, ParseError> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let top = deserializer
            .deserialize_any(TopVisitor { input: bytes })
            .and_then(|top| deserializer.end().map(|()| top))
            .map_err(|error| ParseError::from_json(&error, bytes))?;
        assemble(bytes, top)
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
    /// the URI has another shape or the id could not go in a control path (see
    /// [`stream_id_from_uri`](crate::control::stream_id_from_uri), which this is).
    pub fn stream_id(&self) -> Option<&str> {
        crate::control::stream_id_from_uri(&self.control_uri)
    }
}

/// What a stream's state machine must act on in a message: the kinds [`Message::from_slice`]
/// decides are [`Message::Control`] and [`Message::Disconnect`], and a v2 operational
/// disconnect ([`V2Message::is_operational_disconnect`](crate::v2::V2Message)).
///
/// This is the one classifier of those messages: the state machine calls
/// [`stream_signal`], and [`stream_signal`] asks [`Message::from_slice`] (keys in any order).
#[derive(Debug)]
pub(crate) enum StreamSignal<'a> {
    /// `{"control":{"control_uri":…}}`.
    Control(Control<'a>),
    /// `{"disconnect":{"code":…,…}}`.
    Disconnect(Disconnect<'a>),
    /// `{"errors":[…]}` with an `operational-disconnect` problem.
    OperationalDisconnect(crate::v2::Problem<'a>),
}

/// The [`StreamSignal`] of one message, if it is one.
///
/// Most messages are looked at for a few nanoseconds: a message that starts as a Site Streams
/// envelope (`{"for_user":<id>,"message":`) is a user's message whatever follows, and one that
/// does not contain a `"control"`, `"disconnect"` or `"errors"` key is no signal. Every other
/// message is decoded by [`Message::from_slice`] (and, for `errors`, as a v2 message), so a
/// signal's keys may come in any order. (A key spelled with escapes, `"\u0063ontrol"`, is not
/// looked for.)
pub(crate) fn stream_signal(bytes: &[u8]) -> Option<StreamSignal<'_>> {
    use memchr::memmem::find;
    if starts_as_envelope(bytes) {
        return None;
    }
    if find(bytes, b"\"control\"").is_some() || find(bytes, b"\"disconnect\"").is_some() {
        match Message::from_slice(bytes) {
            Ok(Message::Control(control)) => return Some(StreamSignal::Control(control)),
            Ok(Message::Disconnect(d)) => return Some(StreamSignal::Disconnect(d)),
            Ok(_) | Err(_) => {}
        }
    }
    if find(bytes, b"\"errors\"").is_some() {
        return crate::v2::operational_disconnect(bytes).map(StreamSignal::OperationalDisconnect);
    }
    None
}

/// Whether `bytes` starts `{"for_user":<id>,"message":` (whitespace allowed, the id a number
/// or a string of digits that fits a `u64`): [`Message::from_slice`] makes such a message a
/// [`Message::ForUser`] (or an error, if the rest is not JSON), never a signal.
fn starts_as_envelope(bytes: &[u8]) -> bool {
    fn token<'b>(rest: &'b [u8], token: &[u8]) -> Option<&'b [u8]> {
        rest.trim_ascii_start().strip_prefix(token)
    }
    let Some(rest) = token(bytes, b"{").and_then(|r| token(r, b"\"for_user\"")) else {
        return false;
    };
    let Some(rest) = token(rest, b":").map(<[u8]>::trim_ascii_start) else {
        return false;
    };
    let (quoted, rest) = match rest.strip_prefix(b"\"") {
        Some(inner) => (true, inner),
        None => (false, rest),
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let id = std::str::from_utf8(rest.get(..digits).unwrap_or_default()).unwrap_or_default();
    if id.parse::<u64>().is_err() {
        return false;
    }
    let mut rest = rest.get(digits..).unwrap_or_default();
    if quoted {
        match rest.strip_prefix(b"\"") {
            Some(after) => rest = after,
            None => return false,
        }
    }
    token(rest, b",")
        .and_then(|r| token(r, b"\"message\""))
        .and_then(|r| token(r, b":"))
        .is_some()
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
    /// The tweet's `text`, decoded from [`raw_text`](Tweet::raw_text) on each call: borrowed
    /// from the message when it holds no escapes, else a copy. Never fails: bytes that are
    /// not UTF-8 and escapes of lone surrogates (`"\ud800"`) become U+FFFD (such a text made
    /// the whole message a [`ParseError`] before the text was decoded lazily).
    pub fn text(&self) -> Cow<'_, str> {
        self.raw_text.decode_str().unwrap_or_default()
    }

    /// The untruncated text (`extended_tweet.full_text`, or a top-level `full_text`),
    /// decoded as [`Tweet::text`] is; `None` when the tweet has none.
    pub fn full_text(&self) -> Option<Cow<'_, str>> {
        self.raw_full_text
            .as_ref()
            .map(|text| text.decode_str().unwrap_or_default())
    }

    /// The untruncated text when there is one, else [`Tweet::text`].
    pub fn best_text(&self) -> Cow<'_, str> {
        self.full_text().unwrap_or_else(|| self.text())
    }

    /// The author's id: `user.id_str`, else `user.id` (or a bare numeric `user`).
    ///
    /// Read from the raw [`user`](Tweet::user) on each call (one pass over that object, about
    /// 1.6 KB in a v1.1 tweet). `None` when there is no `user`, it has no id of the right
    /// shape, or one of the fields read (`id`, `id_str`, `screen_name`) holds a string that
    /// cannot be decoded: a lone surrogate escape such as `"\ud800"`, or bytes that are not
    /// UTF-8 (the syntax was checked with the message, so nothing else can fail here). Such a
    /// string made the whole message a [`ParseError`] before the author was read lazily.
    pub fn user_id(&self) -> Option<u64> {
        self.user
            .as_ref()
            .and_then(|user| user_from_raw(user.as_bytes()))?
            .id()
    }

    /// The author's `user.screen_name`, borrowed from the message unless it holds escapes.
    ///
    /// Read from the raw [`user`](Tweet::user) on each call, like [`Tweet::user_id`]; `None`
    /// when there is no `user`, its `screen_name` is not a string, or that string or the
    /// user's `id`/`id_str` cannot be decoded (a lone surrogate escape).
    pub fn user_screen_name(&self) -> Option<Cow<'_, str>> {
        let user = self
            .user
            .as_ref()
            .and_then(|user| user_from_raw(user.as_bytes()))?;
        let name = user.screen_name?;
        serde_json::from_str::<Lenient<Cow<'_, str>>>(name.get())
            .ok()
            .and_then(|name| name.0)
    }

    /// For a retweet, the id of the original tweet: `retweeted_status.id_str`, else
    /// `retweeted_status.id`.
    ///
    /// Read from the raw [`retweeted_status`](Tweet::retweeted_status) on each call (one pass
    /// over it); `None` when there is none, it has no id of the right shape, or its `id_str`
    /// holds a lone surrogate escape or bytes that are not UTF-8 (which made the whole message
    /// a [`ParseError`] before).
    pub fn retweeted_status_id(&self) -> Option<u64> {
        self.retweeted_status
            .as_ref()
            .and_then(|raw| id_from_raw(raw.as_bytes()))
    }
}

impl PartialEq for Tweet<'_> {
    /// Texts compare decoded; raw JSON compares by its exact bytes.
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.text() == other.text()
            && self.full_text() == other.full_text()
            && self.user == other.user
            && self.created_at == other.created_at
            && self.in_reply_to_status_id == other.in_reply_to_status_id
            && self.retweeted_status == other.retweeted_status
            && self.quoted_status_id == other.quoted_status_id
            && self.timestamp_ms == other.timestamp_ms
    }
}

impl Eq for Tweet<'_> {}

impl Serialize for Tweet<'_> {
    /// `{"id":…,"text":…,"full_text":…,"user_id":…,"user_screen_name":…,"created_at":…,
    /// "in_reply_to_status_id":…,"retweeted_status_id":…,"quoted_status_id":…,
    /// "timestamp_ms":…}`, the absent ones left out; the author and the retweet's id are read
    /// from the raw objects (see [`Tweet::user_id`]).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = (
            self.full_text(),
            self.user_id(),
            self.user_screen_name(),
            self.created_at.as_ref(),
            self.in_reply_to_status_id,
            self.retweeted_status_id(),
            self.quoted_status_id,
            self.timestamp_ms,
        );
        let present = [
            fields.0.is_some(),
            fields.1.is_some(),
            fields.2.is_some(),
            fields.3.is_some(),
            fields.4.is_some(),
            fields.5.is_some(),
            fields.6.is_some(),
            fields.7.is_some(),
        ];
        let count = 2 + present.iter().filter(|p| **p).count();
        let mut out = serializer.serialize_struct("Tweet", count)?;
        out.serialize_field("id", &self.id)?;
        out.serialize_field("text", &self.text())?;
        optional_field(&mut out, "full_text", fields.0)?;
        optional_field(&mut out, "user_id", fields.1)?;
        optional_field(&mut out, "user_screen_name", fields.2)?;
        optional_field(&mut out, "created_at", fields.3)?;
        optional_field(&mut out, "in_reply_to_status_id", fields.4)?;
        optional_field(&mut out, "retweeted_status_id", fields.5)?;
        optional_field(&mut out, "quoted_status_id", fields.6)?;
        optional_field(&mut out, "timestamp_ms", fields.7)?;
        out.end()
    }
}

/// Writes a field when it is present, skips it otherwise (as `skip_serializing_if` does).
fn optional_field<S: SerializeStruct, T: Serialize>(
    out: &mut S,
    key: &'static str,
    value: Option<T>,
) -> Result<(), S::Error> {
    match value {
        Some(value) => out.serialize_field(key, &value),
        None => out.skip_field(key),
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
            raw_text,
            raw_full_text,
            user,
            created_at,
            in_reply_to_status_id,
            retweeted_status,
            quoted_status_id,
            timestamp_ms,
        } = self;
        Tweet {
            id,
            raw_text: raw_text.into_owned(),
            raw_full_text: raw_full_text.map(RawJson::into_owned),
            user: user.map(RawJson::into_owned),
            created_at: created_at.map(owned_str),
            in_reply_to_status_id,
            retweeted_status: retweeted_status.map(RawJson::into_owned),
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

/// The message from what the first pass found at the top level.
fn assemble<'a>(bytes: &'a [u8], top: Top<'a>) -> Result<Message<'a>, ParseError> {
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
struct TopVisitor<'a> {
    /// The whole message, which the keys borrowed from point into.
    input: &'a [u8],
}

impl TopVisitor<'_> {
    fn not_an_object<E: de::Error>(found: &str) -> E {
        E::custom(format_args!("the top level is {found}, expected an object"))
    }
}

impl<'de> Visitor<'de> for TopVisitor<'de> {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields::default();
        fields.read(map, true, self.input)?;
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
    text: Option<RawJson<'a>>,
    full_text: Option<RawJson<'a>>,
    extended_full_text: Option<RawJson<'a>>,
    user: Option<RawJson<'a>>,
    in_reply_to_status_id: Option<u64>,
    in_reply_to_status_id_str: Option<u64>,
    retweeted_status: Option<RawJson<'a>>,
    quoted_status_id: Option<u64>,
    quoted_status_id_str: Option<u64>,
    quoted_status: Option<&'a RawValue>,
    timestamp_ms: Option<u64>,
    // Bare direct messages.
    has_sender_or_recipient: bool,
    dm_parties: DmParties<'a>,
}

impl<'a> Fields<'a> {
    /// Reads every entry of an object. `top` enables the keys only valid at the top level;
    /// `input` is the whole message, which the keys borrowed from point into.
    ///
    /// Keys are matched by [`Field::of`]. The values kept raw ([`Span`]: a tweet's `text`,
    /// `user`, …) are skipped like [`IgnoredAny`] skips them, and their bytes are found from
    /// where the keys around them lie in the message: a value starts after its key's `":`
    /// and ends before the `,"` of the next key. That avoids serde_json's [`RawValue`], which
    /// checks the UTF-8 of all it captures. When there is no next key to end a value (it is
    /// the object's last, or the next key has escapes and so is not borrowed), its end is
    /// found by scanning it again ([`value_end`]); a key with escapes is captured through
    /// [`RawValue`].
    fn read<A: MapAccess<'a>>(
        &mut self,
        mut map: A,
        top: bool,
        input: &'a [u8],
    ) -> Result<(), A::Error> {
        let f = self;
        let mut pending: Option<(Span, usize)> = None;
        while let Some(key) = map.next_key::<Key<'a>>()? {
            let at = key_offset(input, &key);
            let Key(key) = key;
            if let Some((span, start)) = pending.take() {
                let end = at
                    .and_then(|at| end_before_key(input, at))
                    .or_else(|| value_end(input, start));
                f.put_span(span, end.and_then(|end| input.get(start..end)));
            }
            let field = Field::of(&key);
            if let Some(span) = field.span() {
                match at.and_then(|at| value_start(input, at + key.len())) {
                    Some(start) => {
                        skip_value(&mut map)?;
                        pending = Some((span, start));
                    }
                    None => {
                        let raw = map.next_value::<&'a RawValue>()?;
                        f.put_span(span, Some(raw.get().as_bytes()));
                    }
                }
                continue;
            }
            f.value(field, &key, top, &mut map, input)?;
        }
        if let Some((span, start)) = pending {
            f.put_span(
                span,
                value_end(input, start).and_then(|end| input.get(start..end)),
            );
        }
        Ok(())
    }

    /// Reads the value of one entry that is not kept by its span (see [`Field::span`]):
    /// `key` is the entry's key, decoded, and `map` is positioned before its value.
    fn value<A: MapAccess<'a>>(
        &mut self,
        field: Field,
        key: &[u8],
        top: bool,
        map: &mut A,
        input: &'a [u8],
    ) -> Result<(), A::Error> {
        let f = self;
        match field {
            Field::ForUser if top => f.for_user = lenient(map)?,
            Field::Message if top => f.message = Some(map.next_value_seed(InnerSeed(input))?),
            Field::Control if top => f.control = lenient(map)?,
            Field::Disconnect if top => f.disconnect = lenient(map)?,
            Field::Warning => f.warning = lenient(map)?,
            Field::Limit => f.limit = lenient(map)?,
            Field::Delete => f.delete = lenient(map)?,
            Field::ScrubGeo => f.scrub_geo = lenient(map)?,
            Field::StatusWithheld => f.status_withheld = lenient(map)?,
            Field::UserWithheld => f.user_withheld = lenient(map)?,
            Field::DirectMessage => f.direct_message = lenient(map)?,
            Field::Friends => f.friends = id_list(map.next_value::<&'a RawValue>()?),
            Field::FriendsStr => f.friends_str = id_list(map.next_value::<&'a RawValue>()?),
            Field::Event => f.event = lenient(map)?,
            Field::Target => f.target = lenient(map)?,
            Field::TargetObject => f.target_object = Some(map.next_value::<&'a RawValue>()?),
            Field::CreatedAt => f.created_at = lenient(map)?,
            Field::Id => f.id = lenient(map)?,
            Field::IdStr => f.id_str = lenient(map)?,
            Field::ExtendedTweet => {
                let extended: Option<ExtendedTweet<'a>> = lenient(map)?;
                f.extended_full_text = extended.and_then(|e| e.full_text);
            }
            Field::InReplyToStatusId => f.in_reply_to_status_id = lenient(map)?,
            Field::InReplyToStatusIdStr => f.in_reply_to_status_id_str = lenient(map)?,
            Field::QuotedStatusId => f.quoted_status_id = lenient(map)?,
            Field::QuotedStatusIdStr => f.quoted_status_id_str = lenient(map)?,
            // Read only when the tweet has no `quoted_status_id[_str]` (see resolve).
            Field::QuotedStatus => f.quoted_status = Some(map.next_value::<&'a RawValue>()?),
            Field::TimestampMs => f.timestamp_ms = lenient(map)?,
            Field::DmParty => {
                f.dm_parties.accept(key, map)?;
                f.has_sender_or_recipient = true;
            }
            _ => skip_value(map)?,
        }
        Ok(())
    }

    /// Keeps the bytes of a value read by its [`Span`] (`None`: its end could not be found,
    /// which a message serde_json accepted cannot cause).
    fn put_span(&mut self, span: Span, value: Option<&'a [u8]>) {
        let Some(value) = value else { return };
        match span {
            Span::Text => self.text = string_value(value),
            Span::FullText => self.full_text = string_value(value),
            Span::User => self.user = not_null(value),
            Span::RetweetedStatus => self.retweeted_status = not_null(value),
            Span::Source => self.source = user_from_raw(value),
        }
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
                        text: decoded(text),
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
        known(UserMessage::Tweet(Tweet {
            id,
            raw_text: text,
            raw_full_text: full_text,
            user: self.user.take(),
            created_at: self.created_at.take(),
            in_reply_to_status_id: self
                .in_reply_to_status_id_str
                .or(self.in_reply_to_status_id),
            retweeted_status: self.retweeted_status.take(),
            quoted_status_id: self
                .quoted_status_id_str
                .or(self.quoted_status_id)
                .or_else(|| {
                    self.quoted_status
                        .and_then(|raw| id_from_raw(raw.get().as_bytes()))
                }),
            timestamp_ms: self.timestamp_ms,
        }))
    }
}

/// A tweet's `text` and `full_text`; a tweet with only `full_text` uses it for both.
fn tweet_texts<'a>(
    text: Option<RawJson<'a>>,
    full_text: Option<RawJson<'a>>,
) -> Option<(RawJson<'a>, Option<RawJson<'a>>)> {
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
/// second, short pass over just that object. A tweet's raw `user` is read the same way, when
/// asked ([`Tweet::user_id`]).
fn user_from_raw(raw: &[u8]) -> Option<UserRef<'_>> {
    match raw.first() {
        Some(b'{' | b'0'..=b'9') => serde_json::from_slice::<Lenient<UserRef<'_>>>(raw)
            .ok()
            .and_then(|user| user.0),
        _ => None,
    }
}

/// A raw value the decoder checked, or `None` for `null`.
fn not_null(raw: &[u8]) -> Option<RawJson<'_>> {
    (raw != b"null").then(|| RawJson::checked(raw))
}

/// A raw value the decoder checked when it is a string, else `None`.
fn string_value(raw: &[u8]) -> Option<RawJson<'_>> {
    (raw.first() == Some(&b'"')).then(|| RawJson::checked(raw))
}

/// A JSON string literal the decoder kept raw, decoded (lossily: see [`RawJson::decode_str`]).
fn decoded(raw: RawJson<'_>) -> Cow<'_, str> {
    match raw.0 {
        Cow::Borrowed(bytes) => string_inside(bytes).map_or_else(Cow::default, decode_json_string),
        Cow::Owned(bytes) => Cow::Owned(
            string_inside(&bytes)
                .map(decode_json_string)
                .unwrap_or_default()
                .into_owned(),
        ),
    }
}

/// The inside of a JSON string literal (between its quotes), or `None` for another value.
fn string_inside(json: &[u8]) -> Option<&[u8]> {
    json.trim_ascii().strip_prefix(b"\"")?.strip_suffix(b"\"")
}

/// The id of a raw tweet object (`id_str`, else `id`); `None` for any other shape, and when
/// the object cannot be decoded (it was checked with the message, so only a lone surrogate
/// escape in a string read here can fail).
fn id_from_raw(raw: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Lenient<IdRef>>(raw)
        .ok()
        .and_then(|id| id.0)
        .and_then(IdRef::id)
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

/// Reads the payload of a `for_user` envelope: [`Inner::Unknown`] when it is not an object.
/// It carries the whole message, as [`Fields::read`] needs.
struct InnerSeed<'de>(&'de [u8]);

impl<'de> DeserializeSeed<'de> for InnerSeed<'de> {
    type Value = Inner<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for InnerSeed<'de> {
    type Value = Inner<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields::default();
        fields.read(map, false, self.0)?;
        Ok(fields.resolve_inner())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq).map(|()| Inner::Unknown)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Inner::Unknown)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Inner::Unknown)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Inner::Unknown)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Inner::Unknown)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Inner::Unknown)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Inner::Unknown)
    }
}

/// The keys [`Fields::read`] looks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Field {
    ForUser,
    Message,
    Control,
    Disconnect,
    Warning,
    Limit,
    Delete,
    ScrubGeo,
    StatusWithheld,
    UserWithheld,
    DirectMessage,
    Friends,
    FriendsStr,
    Event,
    Source,
    Target,
    TargetObject,
    CreatedAt,
    Id,
    IdStr,
    Text,
    FullText,
    ExtendedTweet,
    User,
    InReplyToStatusId,
    InReplyToStatusIdStr,
    RetweetedStatus,
    QuotedStatusId,
    QuotedStatusIdStr,
    QuotedStatus,
    TimestampMs,
    /// `sender`, `sender_id`, `sender_id_str` and the same for `recipient`.
    DmParty,
    /// Any other key: its value is skipped.
    Other,
}

impl Field {
    /// The field a key names: by its length first, then among the few names of that length
    /// (a `match` over byte-string literals compares them one after the other).
    fn of(key: &[u8]) -> Field {
        use Field as F;
        let candidates: &[(&[u8], Field)] = match key.len() {
            2 => &[(b"id", F::Id)],
            4 => &[(b"text", F::Text), (b"user", F::User)],
            5 => &[(b"limit", F::Limit), (b"event", F::Event)],
            6 => &[
                (b"id_str", F::IdStr),
                (b"source", F::Source),
                (b"delete", F::Delete),
                (b"target", F::Target),
                (b"sender", F::DmParty),
            ],
            7 => &[
                (b"message", F::Message),
                (b"control", F::Control),
                (b"warning", F::Warning),
                (b"friends", F::Friends),
            ],
            8 => &[(b"for_user", F::ForUser)],
            9 => &[
                (b"full_text", F::FullText),
                (b"scrub_geo", F::ScrubGeo),
                (b"sender_id", F::DmParty),
                (b"recipient", F::DmParty),
            ],
            10 => &[
                (b"created_at", F::CreatedAt),
                (b"disconnect", F::Disconnect),
            ],
            11 => &[(b"friends_str", F::FriendsStr)],
            12 => &[
                (b"timestamp_ms", F::TimestampMs),
                (b"recipient_id", F::DmParty),
            ],
            13 => &[
                (b"quoted_status", F::QuotedStatus),
                (b"target_object", F::TargetObject),
                (b"user_withheld", F::UserWithheld),
                (b"sender_id_str", F::DmParty),
            ],
            14 => &[
                (b"extended_tweet", F::ExtendedTweet),
                (b"direct_message", F::DirectMessage),
            ],
            15 => &[(b"status_withheld", F::StatusWithheld)],
            16 => &[
                (b"retweeted_status", F::RetweetedStatus),
                (b"quoted_status_id", F::QuotedStatusId),
                (b"recipient_id_str", F::DmParty),
            ],
            20 => &[(b"quoted_status_id_str", F::QuotedStatusIdStr)],
            21 => &[(b"in_reply_to_status_id", F::InReplyToStatusId)],
            25 => &[(b"in_reply_to_status_id_str", F::InReplyToStatusIdStr)],
            _ => &[],
        };
        // The names are short and of the key's length: compare them byte by byte inline,
        // not through a `memcmp` call each.
        candidates
            .iter()
            .find(|(name, _)| name.iter().zip(key).all(|(a, b)| a == b))
            .map_or(F::Other, |(_, field)| *field)
    }

    /// For a value kept by its bytes in the message, which slot it fills.
    fn span(self) -> Option<Span> {
        match self {
            Field::Text => Some(Span::Text),
            Field::FullText => Some(Span::FullText),
            Field::User => Some(Span::User),
            Field::RetweetedStatus => Some(Span::RetweetedStatus),
            Field::Source => Some(Span::Source),
            _ => None,
        }
    }
}

/// The values [`Fields::read`] keeps as their bytes in the message, unchecked UTF-8.
#[derive(Clone, Copy, Debug)]
enum Span {
    Text,
    FullText,
    User,
    RetweetedStatus,
    /// A tweet's `source` (a string, dropped) or an event's (a user, whose id is read).
    Source,
}

/// Where a key borrowed from the message starts in it (`None` for a key with escapes,
/// which serde_json hands over as a decoded copy).
fn key_offset(input: &[u8], key: &Key<'_>) -> Option<usize> {
    let Key(Cow::Borrowed(key)) = key else {
        return None;
    };
    let offset = (key.as_ptr() as usize).checked_sub(input.as_ptr() as usize)?;
    (offset.checked_add(key.len())? <= input.len()).then_some(offset)
}

fn is_json_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// Where the value of a key starts, given where the key's text ends: past its closing
/// quote, the colon and whitespace. `None` if the bytes are not shaped so.
fn value_start(input: &[u8], key_end: usize) -> Option<usize> {
    let skip = |mut at: usize| {
        while input.get(at).copied().is_some_and(is_json_space) {
            at += 1;
        }
        at
    };
    (input.get(key_end) == Some(&b'"')).then_some(())?;
    let colon = skip(key_end + 1);
    (input.get(colon) == Some(&b':')).then_some(())?;
    Some(skip(colon + 1))
}

/// Where the value before a key ends, given where the key's text starts: before its
/// opening quote, the comma and whitespace. `None` if the bytes are not shaped so.
fn end_before_key(input: &[u8], key_start: usize) -> Option<usize> {
    let back = |mut at: usize| {
        while at > 0 && input.get(at - 1).copied().is_some_and(is_json_space) {
            at -= 1;
        }
        at
    };
    let quote = key_start.checked_sub(1)?;
    (input.get(quote) == Some(&b'"')).then_some(())?;
    let comma = back(quote).checked_sub(1)?;
    (input.get(comma) == Some(&b',')).then_some(())?;
    Some(back(comma))
}

/// The end of the JSON value starting at `start`, in a message serde_json has checked: a
/// string to its closing quote, an object or array to its closing bracket (skipping the
/// strings inside), anything else to the next delimiter. `None` if the input ends first.
fn value_end(input: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = start;
    loop {
        match *input.get(at)? {
            b'"' => {
                at += 1;
                loop {
                    at += memchr::memchr2(b'"', b'\\', input.get(at..)?)?;
                    if input.get(at) == Some(&b'"') {
                        break;
                    }
                    at += 2;
                }
                if depth == 0 {
                    return Some(at + 1);
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' | b',' if depth == 0 => return Some(at),
            byte if depth == 0 && is_json_space(byte) => return Some(at),
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(at + 1);
                }
            }
            _ => {}
        }
        at += 1;
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
    /// Raw, decoded only by [`Tweet::user_screen_name`]: events and direct messages never
    /// need it, and a name that cannot be decoded must not cost the id.
    screen_name: Option<&'de RawValue>,
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
            b"screen_name" => user.screen_name = Some(map.next_value::<&'de RawValue>()?),
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

/// `extended_tweet`, of which only `full_text` is needed (kept raw, as a tweet's `text` is).
struct ExtendedTweet<'de> {
    full_text: Option<RawJson<'de>>,
}

impl<'de> FromJson<'de> for ExtendedTweet<'de> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let mut full_text = None;
        for_each_key!(map, |key| match &*key {
            b"full_text" => {
                full_text = string_value(map.next_value::<&'de RawValue>()?.get().as_bytes())
            }
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

mod scan;

#[cfg(test)]
mod tests;
