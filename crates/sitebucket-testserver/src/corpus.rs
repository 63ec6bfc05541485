//! Seeded generators of realistic Site Streams messages.
//!
//! Everything here is a pure function of its seed: the same [`Corpus::new`] seed gives the same
//! bytes on every machine, so tests, the demo and the benchmarks can share one stream.
//!
//! Messages follow Twitter's v1.1 JSON style as the streaming API really sent it: tweets of
//! 2–7 KB with a full `user` object, `\/` in every URL, `\uXXXX` escapes (surrogate pairs
//! included) beside raw UTF-8, `&amp;`-style entities, ids above 2^53 with their `_str` twins,
//! and `for_user` envelopes whose id is sometimes a number and sometimes a string.
//!
//! ```
//! use sitebucket_testserver::corpus::{self, Corpus};
//!
//! let mut corpus = Corpus::new(42);
//! let tweet = corpus.tweet();
//! assert!((2_000..=7_500).contains(&tweet.len()));
//! let wrapped = corpus::for_user(corpus::USER_IDS[0], &tweet);
//! assert!(wrapped.starts_with(b"{\"for_user\":"));
//! ```

use crate::rng::SplitMix64;

/// The users the built-in scenarios stream for (`follow` these to look realistic). The last
/// one is above 2^53, where a JSON double loses precision.
pub const USER_IDS: [u64; 5] = [
    783_214,
    6_253_282,
    2_244_994_945,
    1_097_180_431_462_461_440,
    9_007_199_254_740_993,
];

/// The stream id in the control message of the built-in scenarios.
pub const STREAM_ID: &str = "1_1_54e345d655ee3e8df359ac4a4b8a8c9f";

/// Escapes `s` as a JSON string body (without the quotes) the way Twitter did: `/` as `\/`,
/// control characters as `\uXXXX`, everything else (non-ASCII included) raw.
pub fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `{"for_user":ID,"message":MESSAGE}` with a numeric id.
pub fn for_user(user_id: u64, message: &[u8]) -> Vec<u8> {
    let mut out = format!("{{\"for_user\":{user_id},\"message\":").into_bytes();
    out.extend_from_slice(message);
    out.push(b'}');
    out
}

/// `{"for_user":"ID","message":MESSAGE}` with the id as a string, as some streams sent it.
pub fn for_user_str(user_id: u64, message: &[u8]) -> Vec<u8> {
    let mut out = format!("{{\"for_user\":\"{user_id}\",\"message\":").into_bytes();
    out.extend_from_slice(message);
    out.push(b'}');
    out
}

/// The control message that names the stream's control URI.
pub fn control(stream_id: &str) -> Vec<u8> {
    format!(
        "{{\"control\":{{\"control_uri\":\"\\/1.1\\/site\\/c\\/{}\"}}}}",
        json_escape(stream_id)
    )
    .into_bytes()
}

/// A `friends` preamble with numeric ids.
pub fn friends(ids: &[u64]) -> Vec<u8> {
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    format!("{{\"friends\":[{}]}}", list.join(",")).into_bytes()
}

/// A `friends_str` preamble (sent with `stringify_friend_ids=true`).
pub fn friends_str(ids: &[u64]) -> Vec<u8> {
    let list: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
    format!("{{\"friends_str\":[{}]}}", list.join(",")).into_bytes()
}

/// A `disconnect` message with its code, a stream name and `reason`.
pub fn disconnect(code: u32, reason: &str) -> Vec<u8> {
    format!(
        "{{\"disconnect\":{{\"code\":{code},\"stream_name\":\"sitebucket-testserver\",\"reason\":\"{}\"}}}}",
        json_escape(reason)
    )
    .into_bytes()
}

/// X API v2's disconnect message: an `errors` message with an `operational-disconnect`
/// problem, as X documents it.
pub fn v2_operational_disconnect(detail: &str) -> Vec<u8> {
    format!(
        "{{\"errors\":[{{\"title\":\"operational-disconnect\",\"disconnect_type\":\"UpstreamOperationalDisconnect\",\"detail\":\"{}\",\"type\":\"https://api.twitter.com/2/problems/operational-disconnect\"}}]}}",
        json_escape(detail)
    )
    .into_bytes()
}

/// A `FALLING_BEHIND` stall warning.
pub fn falling_behind(percent_full: u8) -> Vec<u8> {
    format!(
        "{{\"warning\":{{\"code\":\"FALLING_BEHIND\",\"message\":\"Your connection is falling behind and messages are being queued for delivery to you. Your queue is now over {percent_full}% full. You will be disconnected when the queue is full.\",\"percent_full\":{percent_full}}}}}"
    )
    .into_bytes()
}

/// A `FOLLOWS_OVER_LIMIT` warning for `user_id`.
pub fn follows_over_limit(user_id: u64) -> Vec<u8> {
    format!(
        "{{\"warning\":{{\"code\":\"FOLLOWS_OVER_LIMIT\",\"message\":\"User {user_id} follows more than 10,000 users, only 10,000 will be used.\",\"user_id\":{user_id}}}}}"
    )
    .into_bytes()
}

/// Text fragments for tweets, already JSON-escaped: raw UTF-8, `\uXXXX` escapes (surrogate pairs
/// too), `\/`, `\n`, quotes and HTML entities, as the v1.1 API sent them.
const WORDS: &[&str] = &[
    "the",
    "stream",
    "is",
    "up",
    "again",
    "and",
    "we",
    "are",
    "shipping",
    "today",
    "caf\\u00e9",
    "na\\u00efve",
    "\\u2014",
    "\\u201cquoted\\u201d",
    "\\ud83d\\ude80",
    "\\ud83c\\udf89",
    "日本語",
    "のテキスト",
    "Ünïcödé",
    "straße",
    "🎉",
    "👍🏽",
    "Привет",
    "مرحبا",
    "&amp;",
    "&lt;3",
    "\\\"really\\\"",
    "\\n",
    "https:\\/\\/t.co\\/xK2n0dQe1P",
    "#rustlang",
    "@TwitterAPI",
    "deploy",
    "latency",
    "p99",
    "coffee",
    "\\u2019s",
    "it\\u2019s",
    "über",
    "naïve",
    "résumé",
    "sitebucket",
    "keep-alive",
    "chunked",
    "reconnect",
    "backoff",
];

const NAMES: &[(&str, &str)] = &[
    ("Twitter API", "TwitterAPI"),
    ("Ren\\u00e9e \\u2615", "renee_codes"),
    ("山田太郎", "yamada_taro"),
    ("Jürgen Müller", "jmueller"),
    ("Ana María", "anamaria"),
    ("Streaming Bot \\ud83e\\udd16", "streambot"),
];

const SOURCES: &[&str] = &[
    "<a href=\\\"http:\\/\\/twitter.com\\/download\\/iphone\\\" rel=\\\"nofollow\\\">Twitter for iPhone<\\/a>",
    "<a href=\\\"http:\\/\\/twitter.com\\/download\\/android\\\" rel=\\\"nofollow\\\">Twitter for Android<\\/a>",
    "<a href=\\\"https:\\/\\/mobile.twitter.com\\\" rel=\\\"nofollow\\\">Twitter Web App<\\/a>",
    "web",
];

const LANGS: &[&str] = &["en", "ja", "de", "es", "fr", "und"];

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Wed Oct 10 20:19:24 +0000 2018` for a Unix time in seconds.
fn twitter_date(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Howard Hinnant's civil-from-days, for days since 1970-01-01 (always >= 0 here).
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} +0000 {}",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        year
    )
}

/// A seeded source of realistic messages. See the module docs.
#[derive(Debug, Clone)]
pub struct Corpus {
    rng: SplitMix64,
    next_id: u64,
    unix: u64,
}

impl Corpus {
    /// A corpus whose every output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let next_id = 1_050_118_621_198_921_728 + rng.range(0, 1 << 40);
        Corpus {
            rng,
            next_id,
            unix: 1_539_202_764 + seed % 10_000_000,
        }
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += self.rng.range(1 << 20, 1 << 24);
        self.unix += self.rng.range(0, 2);
        self.next_id
    }

    /// A user id from [`USER_IDS`] or a random other one.
    fn user_id(&mut self) -> u64 {
        if self.rng.chance(50) {
            *self.rng.pick(&USER_IDS)
        } else {
            self.rng.range(10_000, 3_000_000_000)
        }
    }

    fn text(&mut self, max_chars: usize) -> String {
        let mut text = String::new();
        let mut chars = 0;
        let words = self.rng.range_usize(6, 40);
        for _ in 0..words {
            let word = *self.rng.pick(WORDS);
            if chars + word.chars().count() + 1 > max_chars {
                break;
            }
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(word);
            chars += word.chars().count() + 1;
        }
        text
    }

    /// An X API v2 stream message: `data` (a tweet with `author_id`, `created_at`, `lang`
    /// and `edit_history_tweet_ids`), `includes.users` (its author) and, when `rule` is given,
    /// `matching_rules` with that rule's id and tag.
    pub fn v2_message(&mut self, rule: Option<(&str, &str)>) -> Vec<u8> {
        let id = self.fresh_id();
        let author = self.user_id();
        let text = json_escape(&self.text(280));
        let username = format!("user_{author}");
        let created_at = iso8601(self.unix);
        let mut message = format!(
            "{{\"data\":{{\"author_id\":\"{author}\",\"created_at\":\"{created_at}\",\"edit_history_tweet_ids\":[\"{id}\"],\"id\":\"{id}\",\"lang\":\"en\",\"text\":\"{text}\"}},\"includes\":{{\"users\":[{{\"id\":\"{author}\",\"name\":\"User {author}\",\"username\":\"{username}\"}}]}}"
        );
        if let Some((rule_id, tag)) = rule {
            message.push_str(&format!(
                ",\"matching_rules\":[{{\"id\":\"{rule_id}\",\"tag\":\"{}\"}}]",
                json_escape(tag)
            ));
        }
        message.push('}');
        message.into_bytes()
    }

    /// A v1.1 `user` object, about 1.6 KB.
    pub fn user(&mut self, id: u64) -> String {
        let (name, screen) = *self.rng.pick(NAMES);
        let image = self
            .rng
            .range(100_000_000_000_000_000, 999_999_999_999_999_999);
        let description = self.text(160);
        let followers = self.rng.range(0, 10_000_000);
        let created = twitter_date(self.rng.range(1_170_000_000, 1_500_000_000));
        let lang = *self.rng.pick(LANGS);
        format!(
            concat!(
                "{{\"id\":{id},\"id_str\":\"{id}\",\"name\":\"{name}\",\"screen_name\":\"{screen}\",",
                "\"location\":\"San Francisco, CA\",\"url\":\"https:\\/\\/developer.twitter.com\\/{screen}\",",
                "\"description\":\"{description}\",\"translator_type\":\"none\",\"protected\":false,",
                "\"verified\":{verified},\"followers_count\":{followers},\"friends_count\":{friends},",
                "\"listed_count\":{listed},\"favourites_count\":{favs},\"statuses_count\":{statuses},",
                "\"created_at\":\"{created}\",\"utc_offset\":null,\"time_zone\":null,\"geo_enabled\":false,",
                "\"lang\":\"{lang}\",\"contributors_enabled\":false,\"is_translator\":false,",
                "\"profile_background_color\":\"C0DEED\",",
                "\"profile_background_image_url\":\"http:\\/\\/abs.twimg.com\\/images\\/themes\\/theme1\\/bg.png\",",
                "\"profile_background_image_url_https\":\"https:\\/\\/abs.twimg.com\\/images\\/themes\\/theme1\\/bg.png\",",
                "\"profile_background_tile\":false,\"profile_link_color\":\"1DA1F2\",",
                "\"profile_sidebar_border_color\":\"C0DEED\",\"profile_sidebar_fill_color\":\"DDEEF6\",",
                "\"profile_text_color\":\"333333\",\"profile_use_background_image\":true,",
                "\"profile_image_url\":\"http:\\/\\/pbs.twimg.com\\/profile_images\\/{image}\\/BbazLO9L_normal.jpg\",",
                "\"profile_image_url_https\":\"https:\\/\\/pbs.twimg.com\\/profile_images\\/{image}\\/BbazLO9L_normal.jpg\",",
                "\"profile_banner_url\":\"https:\\/\\/pbs.twimg.com\\/profile_banners\\/{id}\\/1497491515\",",
                "\"default_profile\":false,\"default_profile_image\":false,\"following\":null,",
                "\"follow_request_sent\":null,\"notifications\":null}}"
            ),
            id = id,
            name = name,
            screen = screen,
            description = description,
            verified = self.rng.chance(10),
            followers = followers,
            friends = self.rng.range(0, 5_000),
            listed = self.rng.range(0, 20_000),
            favs = self.rng.range(0, 50_000),
            statuses = self.rng.range(1, 100_000),
            created = created,
            lang = lang,
            image = image,
        )
    }

    fn hashtag(&mut self, at: usize) -> String {
        let tag = *self
            .rng
            .pick(&["rustlang", "streaming", "日本", "café", "api", "sitebucket"]);
        format!(
            "{{\"text\":\"{tag}\",\"indices\":[{at},{}]}}",
            at + tag.chars().count() + 1
        )
    }

    fn url_entity(&mut self, at: usize) -> String {
        let code = self.rng.range(100_000_000, 999_999_999);
        format!(
            "{{\"url\":\"https:\\/\\/t.co\\/{code:x}\",\"expanded_url\":\"https:\\/\\/example.com\\/posts\\/{code}?ref=stream&amp;lang=en\",\"display_url\":\"example.com\\/posts\\/{code}\\u2026\",\"indices\":[{at},{}]}}",
            at + 23
        )
    }

    fn mention(&mut self, at: usize) -> String {
        let id = self.user_id();
        let (name, screen) = *self.rng.pick(NAMES);
        format!(
            "{{\"screen_name\":\"{screen}\",\"name\":\"{name}\",\"id\":{id},\"id_str\":\"{id}\",\"indices\":[{at},{}]}}",
            at + screen.len() + 1
        )
    }

    /// A tweet of `target` bytes or a little more, with `user_id` as its author.
    fn tweet_sized(&mut self, user_id: u64, target: usize, allow_nested: bool) -> String {
        let id = self.fresh_id();
        let text = self.text(280);
        let source = *self.rng.pick(SOURCES);
        let user = self.user(user_id);
        let lang = *self.rng.pick(LANGS);
        let created = twitter_date(self.unix);
        let reply = if self.rng.chance(20) {
            let to = self.next_id - self.rng.range(1 << 30, 1 << 40);
            let to_user = self.user_id();
            format!(
                "\"in_reply_to_status_id\":{to},\"in_reply_to_status_id_str\":\"{to}\",\"in_reply_to_user_id\":{to_user},\"in_reply_to_user_id_str\":\"{to_user}\",\"in_reply_to_screen_name\":\"streambot\","
            )
        } else {
            "\"in_reply_to_status_id\":null,\"in_reply_to_status_id_str\":null,\"in_reply_to_user_id\":null,\"in_reply_to_user_id_str\":null,\"in_reply_to_screen_name\":null,".to_string()
        };
        let head = format!(
            "{{\"created_at\":\"{created}\",\"id\":{id},\"id_str\":\"{id}\",\"text\":\"{text}\",\"source\":\"{source}\",\"truncated\":false,{reply}\"user\":{user},\"geo\":null,\"coordinates\":null,\"place\":null,\"contributors\":null,"
        );
        let nested = if allow_nested && target > head.len() + 3_300 {
            let inner_user = self.user_id();
            let inner = self.tweet_sized(inner_user, 2_000, false);
            format!("\"retweeted_status\":{inner},")
        } else {
            String::new()
        };
        let tail = format!(
            "\"is_quote_status\":false,\"retweet_count\":{},\"favorite_count\":{},\"favorited\":false,\"retweeted\":false,\"filter_level\":\"low\",\"lang\":\"{lang}\",\"timestamp_ms\":\"{}000\"}}",
            self.rng.range(0, 5_000),
            self.rng.range(0, 20_000),
            self.unix
        );
        let mut hashtags = Vec::new();
        let mut urls = Vec::new();
        let mut mentions = Vec::new();
        let fixed = head.len() + nested.len() + tail.len() + 80;
        let mut size = fixed;
        let mut at = 0;
        loop {
            let entry = match self.rng.range(0, 2) {
                0 => {
                    let e = self.hashtag(at);
                    hashtags.push(e);
                    hashtags.last()
                }
                1 => {
                    let e = self.url_entity(at);
                    urls.push(e);
                    urls.last()
                }
                _ => {
                    let e = self.mention(at);
                    mentions.push(e);
                    mentions.last()
                }
            };
            size += entry.map_or(0, |e| e.len() + 1);
            at += 12;
            if size >= target {
                break;
            }
        }
        format!(
            "{head}{nested}\"entities\":{{\"hashtags\":[{}],\"urls\":[{}],\"user_mentions\":[{}],\"symbols\":[]}},{tail}",
            hashtags.join(","),
            urls.join(","),
            mentions.join(",")
        )
    }

    /// A tweet (2–7 KB) by a random author.
    pub fn tweet(&mut self) -> Vec<u8> {
        let author = self.user_id();
        let target = self.rng.range_usize(2_100, 7_000);
        self.tweet_sized(author, target, true).into_bytes()
    }

    /// A tweet (2–7 KB) by `user_id`.
    pub fn tweet_by(&mut self, user_id: u64) -> Vec<u8> {
        let target = self.rng.range_usize(2_100, 7_000);
        self.tweet_sized(user_id, target, true).into_bytes()
    }

    /// A `delete` notice for a recent tweet.
    pub fn delete(&mut self) -> Vec<u8> {
        let id = self.next_id - self.rng.range(1 << 20, 1 << 36);
        let user = self.user_id();
        format!(
            "{{\"delete\":{{\"status\":{{\"id\":{id},\"id_str\":\"{id}\",\"user_id\":{user},\"user_id_str\":\"{user}\"}},\"timestamp_ms\":\"{}000\"}}}}",
            self.unix
        )
        .into_bytes()
    }

    /// A `scrub_geo` notice.
    pub fn scrub_geo(&mut self) -> Vec<u8> {
        let user = self.user_id();
        let up_to = self.next_id - self.rng.range(1 << 20, 1 << 36);
        format!(
            "{{\"scrub_geo\":{{\"user_id\":{user},\"user_id_str\":\"{user}\",\"up_to_status_id\":{up_to},\"up_to_status_id_str\":\"{up_to}\"}}}}"
        )
        .into_bytes()
    }

    /// A `limit` notice.
    pub fn limit(&mut self) -> Vec<u8> {
        format!(
            "{{\"limit\":{{\"track\":{},\"timestamp_ms\":\"{}000\"}}}}",
            self.rng.range(1, 100_000),
            self.unix
        )
        .into_bytes()
    }

    /// A `status_withheld` notice.
    pub fn status_withheld(&mut self) -> Vec<u8> {
        let id = self.next_id - self.rng.range(1 << 20, 1 << 36);
        let user = self.user_id();
        format!(
            "{{\"status_withheld\":{{\"id\":{id},\"user_id\":{user},\"withheld_in_countries\":[\"DE\",\"AR\"]}}}}"
        )
        .into_bytes()
    }

    /// A `user_withheld` notice.
    pub fn user_withheld(&mut self) -> Vec<u8> {
        let user = self.user_id();
        format!("{{\"user_withheld\":{{\"id\":{user},\"withheld_in_countries\":[\"DE\"]}}}}")
            .into_bytes()
    }

    /// A `direct_message` with both users' objects.
    pub fn direct_message(&mut self) -> Vec<u8> {
        let id = self.fresh_id();
        let sender_id = self.user_id();
        let recipient_id = self.user_id();
        let sender = self.user(sender_id);
        let recipient = self.user(recipient_id);
        let text = self.text(200);
        format!(
            "{{\"direct_message\":{{\"id\":{id},\"id_str\":\"{id}\",\"text\":\"{text}\",\"sender\":{sender},\"sender_id\":{sender_id},\"sender_id_str\":\"{sender_id}\",\"sender_screen_name\":\"streambot\",\"recipient\":{recipient},\"recipient_id\":{recipient_id},\"recipient_id_str\":\"{recipient_id}\",\"recipient_screen_name\":\"TwitterAPI\",\"created_at\":\"{}\",\"entities\":{{\"hashtags\":[],\"urls\":[],\"user_mentions\":[],\"symbols\":[]}}}}}}",
            twitter_date(self.unix)
        )
        .into_bytes()
    }

    /// An `event` of a random kind (favorite, unfavorite, follow, unfollow, block, unblock,
    /// list_member_added, user_update, quoted_tweet).
    pub fn event(&mut self) -> Vec<u8> {
        let kind = *self.rng.pick(&[
            "favorite",
            "unfavorite",
            "follow",
            "unfollow",
            "block",
            "unblock",
            "list_member_added",
            "user_update",
            "quoted_tweet",
        ]);
        self.event_of(kind)
    }

    /// An `event` of the given kind.
    pub fn event_of(&mut self, kind: &str) -> Vec<u8> {
        let source_id = self.user_id();
        let target_id = if kind == "user_update" {
            source_id
        } else {
            self.user_id()
        };
        let source = self.user(source_id);
        let target = self.user(target_id);
        let target_object = match kind {
            "favorite" | "unfavorite" | "quoted_tweet" => {
                let t = self.tweet_sized(target_id, 2_000, false);
                format!(",\"target_object\":{t}")
            }
            "list_member_added" | "list_member_removed" | "list_created" => {
                let list_id = self.fresh_id();
                format!(
                    ",\"target_object\":{{\"id\":{list_id},\"id_str\":\"{list_id}\",\"name\":\"streaming friends\",\"uri\":\"\\/streambot\\/lists\\/streaming-friends\",\"member_count\":{},\"mode\":\"public\"}}",
                    self.rng.range(1, 500)
                )
            }
            _ => String::new(),
        };
        format!(
            "{{\"event\":\"{}\",\"created_at\":\"{}\",\"source\":{source},\"target\":{target}{target_object}}}",
            json_escape(kind),
            twitter_date(self.unix)
        )
        .into_bytes()
    }

    /// One message of a realistic Site Streams mix, in a `for_user` envelope (numeric or
    /// string id): mostly tweets, then events, deletes, direct messages and the rarer notices;
    /// now and then an unwrapped `limit` or stall warning.
    pub fn site_message(&mut self) -> Vec<u8> {
        let roll = self.rng.range(0, 99);
        let inner = match roll {
            0..=59 => self.tweet(),
            60..=74 => self.event(),
            75..=84 => self.delete(),
            85..=89 => self.direct_message(),
            90..=92 => self.scrub_geo(),
            93..=94 => self.status_withheld(),
            95 => self.user_withheld(),
            96..=97 => return self.limit(),
            _ => return falling_behind(self.rng.range(60, 95) as u8),
        };
        let user = *self.rng.pick(&USER_IDS);
        if self.rng.chance(20) {
            for_user_str(user, &inner)
        } else {
            for_user(user, &inner)
        }
    }

    /// A tweet in a numeric `for_user` envelope: the firehose's message.
    pub fn firehose_message(&mut self) -> Vec<u8> {
        let user = *self.rng.pick(&USER_IDS);
        let tweet = self.tweet();
        for_user(user, &tweet)
    }

    /// A friends preamble for `user_id`, wrapped in its envelope (`friends_str` when `strings`).
    pub fn friends_preamble(&mut self, user_id: u64, strings: bool) -> Vec<u8> {
        let count = self.rng.range_usize(3, 40);
        let ids: Vec<u64> = (0..count).map(|_| self.user_id()).collect();
        let list = if strings {
            friends_str(&ids)
        } else {
            friends(&ids)
        };
        for_user(user_id, &list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap_or_else(|e| {
            panic!(
                "invalid JSON ({e}): {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(400)])
            )
        })
    }

    #[test]
    fn same_seed_same_messages_and_other_seed_differs() {
        let mut a = Corpus::new(1);
        let mut b = Corpus::new(1);
        let mut c = Corpus::new(2);
        for _ in 0..20 {
            let x = a.site_message();
            assert_eq!(x, b.site_message());
            assert_ne!(x, c.site_message());
        }
    }

    #[test]
    fn tweets_are_valid_realistic_and_2_to_7_kb() {
        let mut corpus = Corpus::new(99);
        let mut escapes_seen = 0;
        let mut nested = 0;
        for _ in 0..300 {
            let tweet = corpus.tweet();
            assert!(
                (2_000..=7_500).contains(&tweet.len()),
                "tweet of {} bytes",
                tweet.len()
            );
            assert!(!tweet.contains(&b'\r') && !tweet.contains(&b'\n'));
            let text = std::str::from_utf8(&tweet).expect("UTF-8");
            assert!(text.contains("\\/"), "URLs escape '/' as \\/");
            assert!(text.bytes().any(|b| b >= 0x80), "raw non-ASCII appears");
            if text.contains("\\u") {
                escapes_seen += 1;
            }
            let value = parse(&tweet);
            assert_eq!(value["id_str"], value["id"].to_string().as_str());
            assert!(value["user"]["screen_name"].is_string());
            assert!(value["entities"]["hashtags"].is_array());
            if value.get("retweeted_status").is_some() {
                nested += 1;
            }
        }
        assert!(escapes_seen > 250, "\\uXXXX escapes in most tweets");
        assert!(nested > 20, "some tweets carry a retweeted_status");
    }

    #[test]
    fn every_generator_gives_valid_json_of_its_kind() {
        let mut corpus = Corpus::new(5);
        for kind in [
            "favorite",
            "follow",
            "list_member_added",
            "user_update",
            "quoted_tweet",
        ] {
            let event = parse(&corpus.event_of(kind));
            assert_eq!(event["event"], kind);
            assert!(event["source"]["id"].is_u64());
        }
        assert!(parse(&corpus.delete())["delete"]["status"]["id"].is_u64());
        assert!(parse(&corpus.scrub_geo())["scrub_geo"]["user_id"].is_u64());
        assert!(parse(&corpus.limit())["limit"]["track"].is_u64());
        assert!(parse(&corpus.status_withheld())["status_withheld"].is_object());
        assert!(parse(&corpus.user_withheld())["user_withheld"].is_object());
        assert!(parse(&corpus.direct_message())["direct_message"]["sender"].is_object());
        assert_eq!(
            parse(&control(STREAM_ID))["control"]["control_uri"],
            format!("/1.1/site/c/{STREAM_ID}")
        );
        assert_eq!(parse(&friends(&[1, 2]))["friends"][1], 2);
        assert_eq!(parse(&friends_str(&[1, 2]))["friends_str"][0], "1");
        let d = parse(&disconnect(4, "stall \"slow\" / reader"));
        assert_eq!(d["disconnect"]["code"], 4);
        assert_eq!(d["disconnect"]["reason"], "stall \"slow\" / reader");
        assert_eq!(parse(&falling_behind(60))["warning"]["percent_full"], 60);
        assert_eq!(parse(&follows_over_limit(13))["warning"]["user_id"], 13);
        let big = USER_IDS[4];
        let wrapped = for_user_str(big, b"{}");
        assert_eq!(parse(&wrapped)["for_user"], big.to_string().as_str());
        let text = String::from_utf8(for_user(big, b"{}")).unwrap();
        assert!(
            text.contains(&big.to_string()),
            "ids above 2^53 are written exactly"
        );
        let preamble = parse(&corpus.friends_preamble(12, true));
        assert!(preamble["message"]["friends_str"].is_array());
    }

    #[test]
    fn site_mix_covers_the_kinds_and_is_valid() {
        let mut corpus = Corpus::new(3);
        let mut kinds = std::collections::BTreeSet::new();
        for _ in 0..400 {
            let msg = corpus.site_message();
            assert!(!msg.contains(&b'\r'));
            let value = parse(&msg);
            let inner = value.get("message").unwrap_or(&value);
            let kind = inner
                .as_object()
                .and_then(|o| {
                    [
                        "event",
                        "delete",
                        "direct_message",
                        "scrub_geo",
                        "limit",
                        "warning",
                    ]
                    .iter()
                    .find(|k| o.contains_key(**k))
                    .copied()
                })
                .unwrap_or("tweet");
            kinds.insert(kind);
        }
        assert_eq!(kinds.len(), 7, "{kinds:?}");
    }

    #[test]
    fn twitter_dates_are_formatted_like_the_api() {
        assert_eq!(
            twitter_date(1_539_202_764),
            "Wed Oct 10 20:19:24 +0000 2018"
        );
        assert_eq!(twitter_date(0), "Thu Jan 01 00:00:00 +0000 1970");
        assert_eq!(twitter_date(951_782_400), "Tue Feb 29 00:00:00 +0000 2000");
    }

    #[test]
    fn json_escape_escapes_like_twitter() {
        assert_eq!(
            json_escape("a/b\"c\\d\n\u{1}é"),
            "a\\/b\\\"c\\\\d\\n\\u0001é"
        );
    }
}

/// `unix` seconds as `YYYY-MM-DDTHH:MM:SS.000Z` (UTC), the form of v2's `created_at`.
pub fn iso8601(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod v2_tests {
    use super::*;

    #[test]
    fn v2_messages_are_json_envelopes() {
        let mut corpus = Corpus::new(7);
        let message = corpus.v2_message(Some(("42", "cats")));
        let value: serde_json::Value = serde_json::from_slice(&message).unwrap();
        assert!(value["data"]["id"].is_string() && value["data"]["text"].is_string());
        assert_eq!(
            value["data"]["author_id"],
            value["includes"]["users"][0]["id"]
        );
        assert_eq!(value["matching_rules"][0]["id"], "42");
        let plain: serde_json::Value = serde_json::from_slice(&corpus.v2_message(None)).unwrap();
        assert!(plain.get("matching_rules").is_none());
        let disconnect: serde_json::Value =
            serde_json::from_slice(&v2_operational_disconnect("bye \"now\"")).unwrap();
        assert_eq!(disconnect["errors"][0]["title"], "operational-disconnect");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_617_292_351), "2021-04-01T15:52:31.000Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00.000Z");
    }
}
