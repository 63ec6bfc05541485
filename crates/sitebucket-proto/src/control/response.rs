//! Typed answers of the control endpoints, and their decoders.
//!
//! Ids may come as JSON numbers or as digit strings, and cursors run past 2^53: both are read
//! as exact integers, never through a float. Unknown fields are ignored, so a server that adds
//! fields never breaks a decoder.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::config::With;

use super::ControlError;

/// What a finished control call returns.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ControlResponse {
    /// An add or remove was accepted.
    Done,
    /// The answer of `info.json`.
    Info(StreamInfo),
    /// One page of `friends/ids.json`.
    Friends(FriendsPage),
    /// The answer of an X API v2 rules call.
    Rules(super::RulesResponse),
}

/// The answer of `info.json`: who a live stream follows and with which options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct StreamInfo {
    /// The users the stream follows.
    #[serde(default)]
    pub users: Vec<InfoUser>,
    /// With `with=followings`: whom each user follows (as far as the server says).
    #[serde(default)]
    pub follows: Vec<UserFollows>,
    /// The stream's options.
    #[serde(flatten)]
    pub options: StreamOptions,
}

impl StreamInfo {
    /// The ids of [`users`](Self::users), in the server's order.
    pub fn user_ids(&self) -> Vec<u64> {
        self.users.iter().map(|u| u.id).collect()
    }
}

/// One user of a stream (also the subject of a `friends/ids` page).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct InfoUser {
    /// The user id.
    #[serde(deserialize_with = "exact_u64")]
    pub id: u64,
    /// The screen name, if sent.
    #[serde(default)]
    pub name: Option<String>,
    /// Whether direct messages are delivered for this user, if sent.
    #[serde(default)]
    pub dm: Option<bool>,
}

/// One entry of `follows` in `info.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct UserFollows {
    /// The followed user.
    #[serde(deserialize_with = "exact_u64")]
    pub user: u64,
    /// The users they follow.
    #[serde(default, deserialize_with = "exact_u64_list")]
    pub other_users: Vec<u64>,
}

/// The options of a stream as `info.json` reports them. Values are kept as sent, so a value
/// this crate does not know still comes through.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct StreamOptions {
    /// `with`: `"user"` or `"followings"`.
    #[serde(default)]
    pub with: Option<String>,
    /// `replies`: `"none"` or `"all"`.
    #[serde(default)]
    pub replies: Option<String>,
    /// `delimited`: `"none"` or `"length"`.
    #[serde(default)]
    pub delimited: Option<String>,
    /// `include_followings_activity`.
    #[serde(default)]
    pub include_followings_activity: Option<bool>,
    /// `include_user_changes`.
    #[serde(default)]
    pub include_user_changes: Option<bool>,
}

impl StreamOptions {
    /// [`with`](Self::with) as a [`With`], when it is one of the known values.
    pub fn with_mode(&self) -> Option<With> {
        self.with.as_deref().and_then(|w| w.parse().ok())
    }
}

/// One page of `friends/ids.json`: some of the ids a followed user follows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct FriendsPage {
    /// The user whose friends these are.
    pub user: InfoUser,
    /// Ids of users they follow.
    #[serde(default, deserialize_with = "exact_u64_list")]
    pub friends: Vec<u64>,
    /// The cursor of the page before (`0` on the first page; negative on Twitter).
    #[serde(default, deserialize_with = "exact_i64")]
    pub previous_cursor: i64,
    /// The cursor of the page after, `0` on the last page.
    #[serde(default, deserialize_with = "exact_i64")]
    pub next_cursor: i64,
}

impl FriendsPage {
    /// The cursor of the next page, or `None` when this is the last one.
    pub fn next(&self) -> Option<i64> {
        (self.next_cursor != 0).then_some(self.next_cursor)
    }
}

/// Reads an `info.json` body: `{"info":{"users":[…],"follows":[…],"with":…,…}}`.
///
/// ```
/// use sitebucket_proto::control::decode_info;
/// let info = decode_info(br#"{"info":{"users":[{"id":"1","name":"a","dm":false}],"with":"user"}}"#).unwrap();
/// assert_eq!(info.user_ids(), [1]);
/// assert_eq!(info.options.with.as_deref(), Some("user"));
/// ```
pub fn decode_info(body: &[u8]) -> Result<StreamInfo, ControlError> {
    #[derive(Deserialize)]
    struct Wrapper {
        info: StreamInfo,
    }
    serde_json::from_slice::<Wrapper>(body)
        .map(|w| w.info)
        .map_err(|e| ControlError::Decode(format!("info.json: {e}")))
}

/// Reads a `friends/ids.json` body:
/// `{"follow":{"user":{…},"friends":[…],"previous_cursor":…,"next_cursor":…}}`.
pub fn decode_friends_ids(body: &[u8]) -> Result<FriendsPage, ControlError> {
    #[derive(Deserialize)]
    struct Wrapper {
        follow: FriendsPage,
    }
    serde_json::from_slice::<Wrapper>(body)
        .map(|w| w.follow)
        .map_err(|e| ControlError::Decode(format!("friends/ids.json: {e}")))
}

/// The message of a Twitter error body (`{"errors":[{"message":…}]}` or `{"error":…}`), or
/// the start of the body as text: at most 200 characters, control characters as spaces.
pub(crate) fn error_detail(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<ErrorEntry>,
        #[serde(default)]
        error: Option<String>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        message: String,
    }
    let text = match serde_json::from_slice::<Errors>(body) {
        Ok(parsed) => {
            let messages: Vec<String> = parsed
                .errors
                .into_iter()
                .map(|e| e.message)
                .filter(|m| !m.is_empty())
                .chain(parsed.error)
                .collect();
            if messages.is_empty() {
                String::from_utf8_lossy(body).into_owned()
            } else {
                messages.join("; ")
            }
        }
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    text.trim()
        .chars()
        .take(crate::response::MAX_SERVER_TEXT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// An unsigned id from a JSON number or a string of digits, exactly.
fn exact_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(IntVisitor::<u64>(std::marker::PhantomData))
}

/// A signed cursor from a JSON number or a string of digits, exactly.
fn exact_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(IntVisitor::<i64>(std::marker::PhantomData))
}

fn exact_u64_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    struct Id(#[serde(deserialize_with = "exact_u64")] u64);
    Ok(Vec::<Id>::deserialize(d)?
        .into_iter()
        .map(|id| id.0)
        .collect())
}

struct IntVisitor<T>(std::marker::PhantomData<T>);

impl<T> Visitor<'_> for IntVisitor<T>
where
    T: TryFrom<u64> + TryFrom<i64> + std::str::FromStr,
{
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an integer in range, as a number or a string of digits")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.trim()
            .parse()
            .map_err(|_| E::custom(format!("{v:?} is not an integer in range")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SFERIK_INFO: &[u8] =
        include_bytes!("../../tests/fixtures/real/sferik__twitter/site_stream_info.json");
    const SFERIK_PAGE_1: &[u8] =
        include_bytes!("../../tests/fixtures/real/sferik__twitter/site_stream_friends_ids.json");
    const SFERIK_PAGE_2: &[u8] =
        include_bytes!("../../tests/fixtures/real/sferik__twitter/site_stream_friends_ids2.json");
    const TWEETSTREAM_INFO: &[u8] =
        include_bytes!("../../tests/fixtures/real/tweetstream__tweetstream/info.json");
    const TWEETSTREAM_IDS: &[u8] =
        include_bytes!("../../tests/fixtures/real/tweetstream__tweetstream/ids.json");

    #[test]
    fn real_info_with_follows_and_followings() {
        let info = decode_info(SFERIK_INFO).unwrap();
        assert_eq!(
            info.users,
            vec![
                InfoUser {
                    id: 1,
                    name: Some("raffi".into()),
                    dm: Some(false)
                },
                InfoUser {
                    id: 3,
                    name: Some("fiaz".into()),
                    dm: Some(true)
                },
            ]
        );
        assert_eq!(
            info.follows,
            vec![
                UserFollows {
                    user: 1,
                    other_users: vec![2, 3]
                },
                UserFollows {
                    user: 3,
                    other_users: vec![1, 2, 99]
                },
            ]
        );
        assert_eq!(
            info.options,
            StreamOptions {
                with: Some("followings".into()),
                replies: Some("none".into()),
                delimited: Some("none".into()),
                include_followings_activity: Some(false),
                include_user_changes: Some(false),
            }
        );
        assert_eq!(info.options.with_mode(), Some(With::Followings));
        assert_eq!(info.user_ids(), [1, 3]);
    }

    #[test]
    fn real_info_of_one_user() {
        let info = decode_info(TWEETSTREAM_INFO).unwrap();
        assert_eq!(info.user_ids(), [119476949]);
        assert_eq!(info.users[0].name.as_deref(), Some("oauth_dancer"));
        assert!(info.follows.is_empty());
        assert_eq!(info.options.with_mode(), Some(With::User));
    }

    #[test]
    fn real_friends_pages_keep_cursors_past_2_pow_53_exactly() {
        let first = decode_friends_ids(SFERIK_PAGE_1).unwrap();
        assert_eq!(first.user.id, 119476949);
        assert_eq!(first.friends, [795649, 819797, 1401881]);
        assert_eq!(first.previous_cursor, 0);
        assert_eq!(first.next_cursor, 1305102810874389703);
        assert!(first.next_cursor > 1 << 53);
        assert_eq!(first.next(), Some(1305102810874389703));

        let second = decode_friends_ids(SFERIK_PAGE_2).unwrap();
        assert_eq!(second.friends, [3191321, 6253282, 8285392]);
        assert_eq!(second.previous_cursor, -1305102810874389703);
        assert_eq!(second.next(), None);

        let all = decode_friends_ids(TWEETSTREAM_IDS).unwrap();
        assert_eq!(all.friends.len(), 14);
        assert_eq!(all.friends.last(), Some(&289788076));
        assert_eq!((all.previous_cursor, all.next_cursor), (0, 0));
    }

    #[test]
    fn ids_as_strings_and_extreme_values_decode_exactly() {
        let page = decode_friends_ids(
            br#"{"follow":{"user":{"id":"18446744073709551615"},"friends":["9007199254740993",2],
                "previous_cursor":"-9223372036854775808","next_cursor":9223372036854775807,"extra":[1]}}"#,
        )
        .unwrap();
        assert_eq!(page.user.id, u64::MAX);
        assert_eq!(page.user.name, None);
        assert_eq!(page.friends, [9007199254740993, 2]);
        assert_eq!(page.previous_cursor, i64::MIN);
        assert_eq!(page.next_cursor, i64::MAX);
        let info = decode_info(br#"{"info":{}}"#).unwrap();
        assert_eq!(info, StreamInfo::default());
        assert_eq!(info.options.with_mode(), None);
        let odd = decode_info(br#"{"info":{"with":"everyone"}}"#).unwrap();
        assert_eq!(odd.options.with.as_deref(), Some("everyone"));
        assert_eq!(odd.options.with_mode(), None);
    }

    #[test]
    fn malformed_bodies_are_decode_errors_that_say_where() {
        let cases: [(&[u8], &str); 7] = [
            (b"", "info.json"),
            (b"{}", "missing field `info`"),
            (br#"{"info":{"users":[{"id":-1}]}}"#, "-1 is out of range"),
            (br#"{"info":{"users":[{"id":1.5}]}}"#, "info.json"),
            (
                br#"{"info":{"users":[{"id":"x"}]}}"#,
                "\"x\" is not an integer",
            ),
            (
                br#"{"info":{"users":[{"id":"18446744073709551616"}]}}"#,
                "not an integer in range",
            ),
            (br#"{"info":[]}"#, "info.json"),
        ];
        for (body, expected) in cases {
            match decode_info(body) {
                Err(ControlError::Decode(why)) => {
                    assert!(why.contains(expected), "{why:?} lacks {expected:?}")
                }
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
        match decode_friends_ids(
            br#"{"follow":{"user":{"id":1},"next_cursor":9223372036854775808}}"#,
        ) {
            Err(ControlError::Decode(why)) => assert!(why.contains("out of range"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(
            decode_friends_ids(br#"{"follow":{}}"#).is_err(),
            "user is required"
        );
    }

    #[test]
    fn error_details_prefer_the_servers_message() {
        assert_eq!(
            error_detail(br#"{"errors":[{"message":"Unknown stream","code":34},{"message":"b"}]}"#),
            "Unknown stream; b"
        );
        assert_eq!(
            error_detail(br#"{"error":"Not authorized"}"#),
            "Not authorized"
        );
        assert_eq!(
            error_detail(b"  503 Service Unavailable\r\n"),
            "503 Service Unavailable"
        );
        assert_eq!(error_detail(b"a\x00b"), "a b");
        assert_eq!(error_detail(&[b'x'; 500]).len(), 200);
        assert_eq!(error_detail(b"{}"), "{}");
        assert_eq!(error_detail(b""), "");
    }
}
