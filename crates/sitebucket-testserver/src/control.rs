//! Control streams: the live streams a server announced, and its control endpoints.
//!
//! A streaming connection whose plan holds [`Step::Control`](crate::Step::Control) registers
//! a control stream when its `200` response starts: an id (`sb_<attempt index>`) and the
//! users of its `follow` parameter. Its control message announces
//! `{"control":{"control_uri":"/1.1/site/c/<id>"}}`, and while the connection lives, signed
//! requests to that URI change and report whom it follows:
//!
//! | request | answer |
//! |---|---|
//! | `POST …/c/<id>/add_user.json`, `user_id=1,2,…` (1 to 100 ids) | `200`, empty; the users are followed |
//! | `POST …/c/<id>/remove_user.json`, `user_id=…` | `200`, empty; the users are not followed |
//! | `GET …/c/<id>/info.json` | `200`, `{"info":{"users":[…],…,"with":…}}` |
//! | `POST …/c/<id>/friends/ids.json`, `user_id`, `cursor` | `200`, one page of [`friends_of`] the user |
//!
//! An id that is not live (never announced, or its connection ended) gets `404`; a bad
//! parameter, more than [`MAX_IDS_PER_REQUEST`] ids, or a stream past
//! [`MAX_FOLLOWS_PER_STREAM`] users gets `400`; each with a `{"errors":[{"message":…}]}` body
//! saying what was wrong. The registry is plain data behind a mutex: sessions stay pure.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// Most ids one add or remove request may carry.
pub const MAX_IDS_PER_REQUEST: usize = 100;

/// Most users one stream may follow.
pub const MAX_FOLLOWS_PER_STREAM: usize = 1000;

/// How many friends every user has, for `friends/ids.json`.
pub const FRIENDS_PER_USER: u64 = 7;

/// How many ids one `friends/ids.json` page holds.
pub const FRIENDS_PAGE: usize = 3;

/// Cursors are this plus a page number, so they run past 2^53 like Twitter's.
pub const CURSOR_BASE: i64 = 1_305_102_810_874_389_700;

/// The friends of `user` that `friends/ids.json` pages through: `user * 1000 + k` for `k` in
/// `1..=FRIENDS_PER_USER` (wrapping).
pub fn friends_of(user: u64) -> Vec<u64> {
    (1..=FRIENDS_PER_USER)
        .map(|k| user.wrapping_mul(1000).wrapping_add(k))
        .collect()
}

/// One live control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlStream {
    /// Its id, as announced.
    pub stream_id: String,
    /// The attempt (connection) index that announced it.
    pub attempt: usize,
    /// Whom it follows, sorted.
    pub follow: Vec<u64>,
    /// Its `with` parameter (`user` unless the request said otherwise).
    pub with: String,
    /// Its `replies` parameter (`none` unless the request said `all`).
    pub replies: String,
    /// Its `delimited` parameter (`none` unless the request said `length`).
    pub delimited: String,
}

#[derive(Debug)]
struct Entry {
    attempt: usize,
    follow: BTreeSet<u64>,
    with: String,
    replies: String,
    delimited: String,
}

/// The live control streams of one server, shared by its sessions.
#[derive(Debug, Clone, Default)]
pub struct ControlStreams(Arc<Mutex<BTreeMap<String, Entry>>>);

/// A control endpoint's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub status: u16,
    pub reason: &'static str,
    pub body: String,
}

impl ControlStreams {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // Plain data; a panic elsewhere while holding it leaves it usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every live control stream, by id.
    pub fn streams(&self) -> Vec<ControlStream> {
        self.lock()
            .iter()
            .map(|(id, entry)| ControlStream {
                stream_id: id.clone(),
                attempt: entry.attempt,
                follow: entry.follow.iter().copied().collect(),
                with: entry.with.clone(),
                replies: entry.replies.clone(),
                delimited: entry.delimited.clone(),
            })
            .collect()
    }

    /// The live control stream `id`, if any.
    pub fn get(&self, id: &str) -> Option<ControlStream> {
        self.streams().into_iter().find(|s| s.stream_id == id)
    }

    /// Registers the stream of attempt `attempt`, asked for with `query`; returns its id.
    pub(crate) fn register(&self, attempt: usize, query: &[(String, String)]) -> String {
        let param = |name: &str| {
            query
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let follow = param("follow")
            .unwrap_or("")
            .split(',')
            .filter_map(|id| id.trim().parse::<u64>().ok())
            .collect();
        let id = format!("sb_{attempt}");
        self.lock().insert(
            id.clone(),
            Entry {
                attempt,
                follow,
                with: param("with").unwrap_or("user").to_owned(),
                replies: param("replies").unwrap_or("none").to_owned(),
                delimited: param("delimited").unwrap_or("none").to_owned(),
            },
        );
        id
    }

    /// Forgets the stream `id` (its connection ended).
    pub(crate) fn unregister(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The answer to a control request, or `None` when `path` is not a control path
    /// (`…/c/<id>/<endpoint>`). `params` are the query and form parameters.
    pub(crate) fn answer(
        &self,
        method: &str,
        path: &str,
        params: &[(String, String)],
    ) -> Option<Answer> {
        let (_, rest) = path.split_once("/c/")?;
        let (id, endpoint) = rest.split_once('/')?;
        let mut streams = self.lock();
        let Some(entry) = streams.get_mut(id) else {
            return Some(error(404, "Not Found", &format!("unknown stream {id:?}")));
        };
        let param = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let expected = if endpoint == "info.json" {
            "GET"
        } else {
            "POST"
        };
        if !matches!(
            endpoint,
            "add_user.json" | "remove_user.json" | "info.json" | "friends/ids.json"
        ) {
            return Some(error(
                404,
                "Not Found",
                &format!("no control endpoint {endpoint:?}"),
            ));
        }
        if method != expected {
            return Some(error(
                405,
                "Method Not Allowed",
                &format!("{endpoint} takes {expected}"),
            ));
        }
        Some(match endpoint {
            "add_user.json" | "remove_user.json" => {
                let ids = match parse_ids(param("user_id")) {
                    Ok(ids) => ids,
                    Err(why) => return Some(error(400, "Bad Request", &why)),
                };
                if endpoint == "add_user.json" {
                    let after: BTreeSet<u64> = entry.follow.union(&ids).copied().collect();
                    if after.len() > MAX_FOLLOWS_PER_STREAM {
                        return Some(error(
                            400,
                            "Bad Request",
                            &format!(
                                "the stream would follow {} users; at most {MAX_FOLLOWS_PER_STREAM}",
                                after.len()
                            ),
                        ));
                    }
                    entry.follow = after;
                } else {
                    entry.follow.retain(|u| !ids.contains(u));
                }
                Answer {
                    status: 200,
                    reason: "OK",
                    body: String::new(),
                }
            }
            "info.json" => Answer {
                status: 200,
                reason: "OK",
                body: info_json(entry),
            },
            _ => friends_page(entry, param("user_id"), param("cursor")),
        })
    }
}

fn error(status: u16, reason: &'static str, message: &str) -> Answer {
    let escaped: String = message
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if c.is_control() => vec![' '],
            c => vec![c],
        })
        .collect();
    Answer {
        status,
        reason,
        body: format!("{{\"errors\":[{{\"message\":\"{escaped}\",\"code\":{status}}}]}}"),
    }
}

/// `user_id=1,2,3`: 1 to [`MAX_IDS_PER_REQUEST`] decimal ids.
fn parse_ids(value: Option<&str>) -> Result<BTreeSet<u64>, String> {
    let value = value.ok_or("user_id is missing")?;
    let mut ids = Vec::new();
    for part in value.split(',') {
        let id = part
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("user_id {part:?} is not a numeric id"))?;
        ids.push(id);
    }
    if ids.len() > MAX_IDS_PER_REQUEST {
        return Err(format!(
            "{} user ids; at most {MAX_IDS_PER_REQUEST} per request",
            ids.len()
        ));
    }
    Ok(ids.into_iter().collect())
}

fn info_json(entry: &Entry) -> String {
    let users: Vec<String> = entry
        .follow
        .iter()
        .map(|id| format!("{{\"id\":{id},\"name\":\"user{id}\",\"dm\":false}}"))
        .collect();
    let mut info = format!("{{\"users\":[{}]", users.join(","));
    if entry.with == "followings" {
        let follows: Vec<String> = entry
            .follow
            .iter()
            .map(|id| {
                let friends: Vec<String> = friends_of(*id).iter().map(u64::to_string).collect();
                format!("{{\"user\":{id},\"other_users\":[{}]}}", friends.join(","))
            })
            .collect();
        info.push_str(&format!(",\"follows\":[{}]", follows.join(",")));
    }
    info.push_str(&format!(
        ",\"delimited\":\"{}\",\"include_followings_activity\":false,\"include_user_changes\":false,\"replies\":\"{}\",\"with\":\"{}\"}}",
        entry.delimited, entry.replies, entry.with
    ));
    format!("{{\"info\":{info}}}")
}

fn friends_page(entry: &Entry, user: Option<&str>, cursor: Option<&str>) -> Answer {
    let Some(Ok(user)) = user.map(|u| u.trim().parse::<u64>()) else {
        return error(400, "Bad Request", "user_id must be one numeric id");
    };
    if !entry.follow.contains(&user) {
        return error(
            400,
            "Bad Request",
            &format!("user {user} is not followed by this stream"),
        );
    }
    let friends = friends_of(user);
    let pages = friends.len().div_ceil(FRIENDS_PAGE);
    let cursor = cursor.unwrap_or("-1").trim().parse::<i64>();
    let page = match cursor {
        Ok(-1) => Some(0),
        Ok(c) if c > CURSOR_BASE => usize::try_from(c - CURSOR_BASE).ok(),
        Ok(c) if c < -CURSOR_BASE => usize::try_from(-(c + CURSOR_BASE) - 1).ok(),
        _ => None,
    };
    let Some(page) = page.filter(|p| *p < pages) else {
        return error(400, "Bad Request", "cursor is not one this stream gave out");
    };
    let ids: Vec<String> = friends
        .iter()
        .skip(page * FRIENDS_PAGE)
        .take(FRIENDS_PAGE)
        .map(u64::to_string)
        .collect();
    // `page` is below `pages`, a handful: these fit in an i64.
    let page_cursor = |p: usize| CURSOR_BASE + p as i64;
    let next = if page + 1 < pages {
        page_cursor(page + 1)
    } else {
        0
    };
    let previous = if page == 0 { 0 } else { -page_cursor(page) };
    Answer {
        status: 200,
        reason: "OK",
        body: format!(
            "{{\"follow\":{{\"user\":{{\"id\":{user},\"name\":\"user{user}\",\"dm\":false}},\"friends\":[{}],\"previous_cursor\":{previous},\"next_cursor\":{next}}}}}",
            ids.join(",")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn registry() -> (ControlStreams, String) {
        let streams = ControlStreams::new();
        let id = streams.register(3, &params(&[("follow", "12,13"), ("with", "followings")]));
        (streams, id)
    }

    #[test]
    fn add_and_remove_change_the_follow_set_and_info_reports_it() {
        let (streams, id) = registry();
        assert_eq!(id, "sb_3");
        let path = |leaf: &str| format!("/1.1/site/c/{id}/{leaf}");
        let ok = Answer {
            status: 200,
            reason: "OK",
            body: String::new(),
        };
        assert_eq!(
            streams.answer(
                "POST",
                &path("add_user.json"),
                &params(&[("user_id", "14,15,12")])
            ),
            Some(ok.clone())
        );
        assert_eq!(
            streams.answer(
                "POST",
                &path("remove_user.json"),
                &params(&[("user_id", "12,99")])
            ),
            Some(ok)
        );
        let stream = streams.get(&id).expect("live");
        assert_eq!(stream.follow, [13, 14, 15]);
        assert_eq!((stream.attempt, stream.with.as_str()), (3, "followings"));
        let info = streams
            .answer("GET", &path("info.json"), &[])
            .expect("control path");
        let json: serde_json::Value = serde_json::from_str(&info.body).expect("JSON");
        assert_eq!(json["info"]["users"][0]["id"], 13);
        assert_eq!(json["info"]["users"].as_array().map(Vec::len), Some(3));
        assert_eq!(json["info"]["with"], "followings");
        assert_eq!(json["info"]["follows"][2]["user"], 15);
        assert_eq!(json["info"]["follows"][2]["other_users"][0], 15001);
        assert_eq!(json["info"]["replies"], "none");

        streams.unregister(&id);
        let gone = streams
            .answer("GET", &path("info.json"), &[])
            .expect("control path");
        assert_eq!(gone.status, 404);
        assert!(
            gone.body.contains("unknown stream \\\"sb_3\\\""),
            "{}",
            gone.body
        );
        assert!(streams.streams().is_empty());
    }

    #[test]
    fn bad_requests_say_what_was_wrong() {
        let (streams, id) = registry();
        let add = format!("/1.1/site/c/{id}/add_user.json");
        // Method, path, parameters, status, and a piece of the message.
        type Case<'a> = (&'a str, &'a str, Vec<(String, String)>, u16, &'a str);
        let cases: Vec<Case> = vec![
            ("POST", add.as_str(), vec![], 400, "user_id is missing"),
            (
                "POST",
                add.as_str(),
                params(&[("user_id", "1,x")]),
                400,
                "\\\"x\\\" is not a numeric id",
            ),
            (
                "POST",
                add.as_str(),
                params(&[("user_id", "")]),
                400,
                "not a numeric id",
            ),
            (
                "GET",
                add.as_str(),
                params(&[("user_id", "1")]),
                405,
                "add_user.json takes POST",
            ),
        ];
        for (method, path, p, status, message) in cases {
            let answer = streams.answer(method, path, &p).expect("control path");
            assert_eq!(answer.status, status, "{method} {path} {p:?}");
            assert!(answer.body.contains(message), "{}", answer.body);
            let json: serde_json::Value = serde_json::from_str(&answer.body).expect("valid JSON");
            assert_eq!(json["errors"][0]["code"], status);
        }
        let many: Vec<String> = (1..=101).map(|i| i.to_string()).collect();
        let answer = streams
            .answer("POST", &add, &params(&[("user_id", &many.join(","))]))
            .expect("control path");
        assert_eq!(answer.status, 400);
        assert!(answer.body.contains("101 user ids; at most 100"));
        for batch in 0..10u64 {
            let ids: Vec<String> = (0..100)
                .map(|i| (1000 + batch * 100 + i).to_string())
                .collect();
            let answer = streams
                .answer("POST", &add, &params(&[("user_id", &ids.join(","))]))
                .expect("control path");
            let expect = if batch < 9 { 200 } else { 400 };
            assert_eq!(answer.status, expect, "batch {batch}: {}", answer.body);
        }
        assert_eq!(streams.get(&id).map(|s| s.follow.len()), Some(902));
        let nowhere = format!("/1.1/site/c/{id}/nothing.json");
        assert_eq!(
            streams.answer("GET", &nowhere, &[]).map(|a| a.status),
            Some(404)
        );
        assert_eq!(streams.answer("GET", "/1.1/site.json", &[]), None);
        assert_eq!(streams.answer("GET", "/1.1/site/c/sb_3", &[]), None);
    }

    #[test]
    fn friends_pages_chain_through_big_cursors() {
        let (streams, id) = registry();
        let path = format!("/1.1/site/c/{id}/friends/ids.json");
        let mut cursor = "-1".to_string();
        let mut seen = Vec::new();
        let mut previous = Vec::new();
        for _ in 0..10 {
            let answer = streams
                .answer(
                    "POST",
                    &path,
                    &params(&[("user_id", "13"), ("cursor", &cursor)]),
                )
                .expect("control path");
            assert_eq!(answer.status, 200, "{}", answer.body);
            let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
            let page = &json["follow"];
            assert_eq!(page["user"]["id"], 13);
            seen.extend(
                page["friends"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap()),
            );
            previous.push(page["previous_cursor"].as_i64().unwrap());
            let next = page["next_cursor"].as_i64().unwrap();
            if next == 0 {
                break;
            }
            assert!(next > 1 << 53);
            cursor = next.to_string();
        }
        assert_eq!(seen, friends_of(13));
        assert_eq!(previous[0], 0);
        assert!(previous[1] < -(1 << 53));
        // A previous cursor leads back one page.
        let back = streams
            .answer(
                "POST",
                &path,
                &params(&[("user_id", "13"), ("cursor", &previous[2].to_string())]),
            )
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(&back.body).unwrap();
        assert_eq!(json["follow"]["friends"][0], 13004);

        for (user, cursor, message) in [
            ("99", "-1", "user 99 is not followed"),
            ("x", "-1", "user_id must be one numeric id"),
            ("13", "5", "cursor is not one"),
            ("13", &(CURSOR_BASE + 3).to_string(), "cursor is not one"),
        ] {
            let answer = streams
                .answer(
                    "POST",
                    &path,
                    &params(&[("user_id", user), ("cursor", cursor)]),
                )
                .unwrap();
            assert_eq!(answer.status, 400);
            assert!(answer.body.contains(message), "{}", answer.body);
        }
    }
}
