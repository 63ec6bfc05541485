//! Every message of the real payloads in `tests/fixtures/real/` (what Twitter sent, as kept by
//! other clients' test suites; provenance in its README) decodes to the right kind, with the
//! right ids and text where a file is known for a quirk.

use std::borrow::Cow;
use std::path::Path;

use bytes::Bytes;
use sitebucket_proto::message::{
    DeleteTarget, DisconnectCode, EventKind, Message, UserMessage, WarningCode,
};
use sitebucket_proto::{DefaultParser, Parser};

/// How a fixture file is split into messages.
#[derive(Clone, Copy, Debug)]
enum Split {
    /// One JSON document per line (LF or CRLF); blank lines are skipped.
    Lines,
    /// Messages each ended by `\r\n`, with blank `\r\n` keep-alives (the wire framing).
    Crlf,
    /// A raw HTTP response capture: skip the head, then split like [`Split::Crlf`].
    Http,
    /// One (pretty-printed) document.
    Whole,
    /// Documents back to back, separated only by whitespace.
    Concatenated,
}

fn read(path: &str) -> Vec<u8> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/real")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()))
}

fn is_blank(chunk: &[u8]) -> bool {
    chunk.iter().all(u8::is_ascii_whitespace)
}

fn split_crlf(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'\r' && bytes[i + 1] == b'\n' {
            out.push(&bytes[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    out.push(&bytes[start..]);
    out.retain(|chunk| !is_blank(chunk));
    out
}

fn split(bytes: &[u8], how: Split) -> Vec<&[u8]> {
    match how {
        Split::Lines => bytes
            .split(|b| *b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .filter(|line| !is_blank(line))
            .collect(),
        Split::Crlf => split_crlf(bytes),
        Split::Http => {
            let head_end = bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("an HTTP head");
            assert!(bytes.starts_with(b"HTTP/1.1 200 OK\r\n"));
            split_crlf(&bytes[head_end + 4..])
        }
        Split::Whole => vec![bytes],
        Split::Concatenated => {
            let mut out = Vec::new();
            let mut stream =
                serde_json::Deserializer::from_slice(bytes).into_iter::<serde::de::IgnoredAny>();
            let mut start = 0;
            while let Some(next) = stream.next() {
                next.expect("a JSON document");
                let end = stream.byte_offset();
                out.push(&bytes[start..end]);
                start = end;
            }
            out
        }
    }
}

fn repeat(kind: &'static str, n: usize) -> Vec<&'static str> {
    vec![kind; n]
}

/// Every fixture file: how to split it and the kind of each message in it, in order.
fn cases() -> Vec<(&'static str, Split, Vec<&'static str>)> {
    use Split::*;
    vec![
        (
            "DanielaSfregola__twitter4s/control_messages.json",
            Lines,
            vec!["control"],
        ),
        (
            "DanielaSfregola__twitter4s/disconnect_messages.json",
            Lines,
            repeat("disconnect", 2),
        ),
        (
            "DanielaSfregola__twitter4s/events.json",
            Lines,
            repeat("event", 2),
        ),
        (
            "DanielaSfregola__twitter4s/limit_notices.json",
            Lines,
            repeat("limit", 2),
        ),
        (
            "DanielaSfregola__twitter4s/status_deletion_notices.json",
            Lines,
            repeat("delete", 2),
        ),
        (
            "DanielaSfregola__twitter4s/status_withheld_notices.json",
            Lines,
            repeat("status_withheld", 2),
        ),
        (
            "DanielaSfregola__twitter4s/user_envelop_direct_message.json",
            Lines,
            vec!["for_user/direct_message"],
        ),
        (
            "DanielaSfregola__twitter4s/user_envelop_simple_event.json",
            Lines,
            vec!["for_user/event"],
        ),
        (
            "DanielaSfregola__twitter4s/user_envelop_tweet_event.json",
            Lines,
            vec!["for_user/event"],
        ),
        (
            "DanielaSfregola__twitter4s/user_envelop_tweet_stringified.json",
            Lines,
            vec!["for_user/tweet"],
        ),
        (
            "DanielaSfregola__twitter4s/user_envelop_twitter_list_event.json",
            Lines,
            vec!["for_user/event"],
        ),
        (
            "DanielaSfregola__twitter4s/user_envelop_warning_message.json",
            Lines,
            vec!["for_user/warning"],
        ),
        (
            "DanielaSfregola__twitter4s/user_envelops_friends_list.json",
            Lines,
            vec!["for_user/friends"],
        ),
        (
            "DanielaSfregola__twitter4s/user_withheld_notices.json",
            Lines,
            repeat("user_withheld", 2),
        ),
        (
            "Twitter4J__Twitter4J/sitestream-testcase.json",
            Lines,
            repeat("for_user/friends", 4),
        ),
        (
            "Twitter4J__Twitter4J/stallwarning.json",
            Whole,
            vec!["warning"],
        ),
        (
            "Twitter4J__Twitter4J/streamingapi-event-testcase.json",
            Lines,
            vec!["event", "delete", "event", "event", "event"],
        ),
        (
            "Twitter4J__Twitter4J/streamingapi-testcase.json",
            Lines,
            vec!["delete", "tweet", "tweet", "limit", "tweet", "scrub_geo"],
        ),
        (
            "bear__python-twitter/lines.json",
            Lines,
            repeat("tweet", 72),
        ),
        (
            "bear__python-twitter/streaming_extended_tweet.json",
            Whole,
            vec!["tweet"],
        ),
        ("himura__twitter-types/delete.json", Lines, vec!["delete"]),
        (
            "himura__twitter-types/direct_message_thimura.json",
            Whole,
            vec!["direct_message"],
        ),
        (
            "himura__twitter-types/event_favorite_thimura.json",
            Lines,
            vec!["event"],
        ),
        (
            "himura__twitter-types/event_unfavorite_thimura.json",
            Lines,
            vec!["event"],
        ),
        (
            "himura__twitter-types/status_quoted.json",
            Whole,
            vec!["tweet"],
        ),
        (
            "linvi__tweetinvi/FilteredStreamEvent.json",
            Whole,
            vec!["tweet"],
        ),
        ("parroty__extwitter/limit.json", Crlf, vec!["limit"]),
        // Control API responses, not stream messages: they must pass through as unknown.
        (
            "sferik__twitter/site_stream_friends_ids.json",
            Whole,
            vec!["unknown"],
        ),
        (
            "sferik__twitter/site_stream_friends_ids2.json",
            Whole,
            vec!["unknown"],
        ),
        (
            "sferik__twitter/site_stream_info.json",
            Whole,
            vec!["unknown"],
        ),
        (
            "sferik__twitter/track_streaming.json",
            Crlf,
            repeat("tweet", 2),
        ),
        (
            "sferik__twitter/track_streaming_user.json",
            Crlf,
            vec![
                "friends",
                "tweet",
                "direct_message",
                "event",
                "delete",
                "warning",
            ],
        ),
        (
            "spring-projects__spring-social-twitter/filter-stream-track.json",
            Lines,
            vec![
                "tweet", "tweet", "delete", "warning", "delete", "tweet", "limit", "warning",
                "tweet", "warning",
            ],
        ),
        (
            "tweetstream__tweetstream/direct_messages.json",
            Lines,
            vec!["direct_message"],
        ),
        (
            "tweetstream__tweetstream/favorite.json",
            Whole,
            vec!["event"],
        ),
        ("tweetstream__tweetstream/ids.json", Whole, vec!["unknown"]),
        ("tweetstream__tweetstream/info.json", Whole, vec!["unknown"]),
        (
            "tweetstream__tweetstream/statuses.json",
            Lines,
            repeat("tweet", 20),
        ),
        (
            "tweetstream__tweetstream/statuses-2009.json",
            Concatenated,
            repeat("tweet", 4),
        ),
        ("twitter__hbc/control-message.json", Whole, vec!["control"]),
        (
            "twitter__hbc/direct-message-delete.json",
            Whole,
            vec!["delete"],
        ),
        (
            "twitter__hbc/direct-message.json",
            Whole,
            vec!["direct_message"],
        ),
        (
            "twitter__hbc/disconnect-message.json",
            Whole,
            vec!["disconnect"],
        ),
        (
            "twitter__hbc/follows-over-limit.json",
            Whole,
            vec!["warning"],
        ),
        (
            "twitter__hbc/sitestream-friends-list.json",
            Whole,
            vec!["for_user/friends"],
        ),
        (
            "twitterdev__tweet-updates/compatibilityplus_classic_hidden_13797.json",
            Whole,
            vec!["tweet"],
        ),
        (
            "twitterdev__tweet-updates/retweet_w_replies+attachment.json",
            Whole,
            vec!["tweet"],
        ),
        (
            "voloko__twitter-stream/basic_http.txt",
            Http,
            repeat("tweet", 4),
        ),
        (
            "voloko__twitter-stream/tweets.txt",
            Lines,
            repeat("tweet", 4),
        ),
    ]
}

/// Decodes message `index` of a fixture file (split as in [`cases`]).
fn with_message<R>(path: &str, index: usize, check: impl FnOnce(Message<'_>) -> R) -> R {
    let (_, how, _) = cases()
        .into_iter()
        .find(|(p, _, _)| *p == path)
        .expect("a listed fixture");
    let bytes = read(path);
    let messages = split(&bytes, how);
    let message = Message::from_slice(messages[index])
        .unwrap_or_else(|e| panic!("{path} message {index}: {e}"));
    check(message)
}

#[test]
fn every_fixture_message_decodes_to_its_kind() {
    let mut total = 0;
    for (path, how, expected) in cases() {
        let bytes = read(path);
        let messages = split(&bytes, how);
        let kinds: Vec<&str> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| match Message::from_slice(m) {
                Ok(message) => message.kind(),
                Err(e) => panic!("{path} message {i}: {e}"),
            })
            .collect();
        assert_eq!(kinds, expected, "{path}");
        total += kinds.len();
    }
    assert_eq!(total, 181, "messages across all fixtures");
}

#[test]
fn every_fixture_file_is_listed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real");
    let mut on_disk = Vec::new();
    for dir in std::fs::read_dir(&root).expect("fixture dir") {
        let dir = dir.expect("entry").path();
        if dir.is_dir() {
            for file in std::fs::read_dir(&dir).expect("fixture subdir") {
                let file = file.expect("entry").path();
                let relative = file.strip_prefix(&root).expect("under root");
                on_disk.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    on_disk.sort();
    let mut listed: Vec<String> = cases().iter().map(|(p, _, _)| p.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    assert_eq!(listed.len(), 49);
}

#[test]
fn sitestream_envelopes_take_for_user_as_number_string_and_beyond_2_pow_32() {
    let path = "Twitter4J__Twitter4J/sitestream-testcase.json";
    let expected = [
        (6358482, 4),
        (6358481, 4),
        (4933401, 197),
        (6358482000000, 4),
    ];
    for (index, (for_user, friends)) in expected.into_iter().enumerate() {
        with_message(path, index, |message| match message {
            Message::ForUser {
                for_user: id,
                message: UserMessage::Friends(list),
            } => {
                assert_eq!((id, list.len()), (for_user, friends));
                if index == 0 {
                    assert_eq!(list, [6377362, 4933401, 96154916, 42419133]);
                }
            }
            other => panic!("{other:?}"),
        });
    }
    with_message("twitter__hbc/sitestream-friends-list.json", 0, |message| {
        assert_eq!(message.for_user(), Some(1888));
        assert_eq!(
            message.user_message(),
            Some(&UserMessage::Friends(vec![1, 2, 3, 4]))
        );
    });
    with_message(
        "DanielaSfregola__twitter4s/user_envelops_friends_list.json",
        0,
        |message| {
            assert_eq!(message.for_user(), Some(1888));
            assert_eq!(
                message.user_message(),
                Some(&UserMessage::Friends(vec![0, 1, 2, 3, 4]))
            );
        },
    );
}

#[test]
fn control_messages_give_the_stream_id() {
    for path in [
        "DanielaSfregola__twitter4s/control_messages.json",
        "twitter__hbc/control-message.json",
    ] {
        with_message(path, 0, |message| match message {
            Message::Control(control) => {
                assert_eq!(
                    control.control_uri,
                    "/1.1/site/c/01_225167_334389048B872A533002B34D73F8C29FD09EFC50"
                );
                assert_eq!(
                    control.stream_id(),
                    Some("01_225167_334389048B872A533002B34D73F8C29FD09EFC50")
                );
            }
            other => panic!("{other:?}"),
        });
    }
}

#[test]
fn disconnects_name_their_codes() {
    let expect = |path, index, code: DisconnectCode, name: &str, reason: &str| {
        with_message(path, index, |message| match message {
            Message::Disconnect(d) => {
                assert_eq!((d.code, &*d.stream_name, &*d.reason), (code, name, reason));
                assert!(!d.code.is_final());
            }
            other => panic!("{other:?}"),
        })
    };
    let twitter4s = "DanielaSfregola__twitter4s/disconnect_messages.json";
    expect(
        twitter4s,
        0,
        DisconnectCode::Stall,
        "my-stream-name",
        "something-went-wrong",
    );
    expect(twitter4s, 1, DisconnectCode::DuplicateStream, "", "");
    expect(
        "twitter__hbc/disconnect-message.json",
        0,
        DisconnectCode::Normal,
        "somestreamname123",
        "reason for disconnection",
    );
}

#[test]
fn warnings_of_both_kinds() {
    with_message(
        "Twitter4J__Twitter4J/stallwarning.json",
        0,
        |message| match message {
            Message::Unwrapped(UserMessage::Warning(w)) => {
                assert_eq!(w.code, WarningCode::FallingBehind);
                assert_eq!(w.percent_full, Some(60));
                assert!(w.message.starts_with("Your connection is falling behind"));
            }
            other => panic!("{other:?}"),
        },
    );
    let spring = "spring-projects__spring-social-twitter/filter-stream-track.json";
    for (index, percent) in [(3, 60), (7, 70), (9, 80)] {
        with_message(spring, index, |message| match message.user_message() {
            Some(UserMessage::Warning(w)) => assert_eq!(w.percent_full, Some(percent)),
            other => panic!("{other:?}"),
        });
    }
    with_message(
        "twitter__hbc/follows-over-limit.json",
        0,
        |message| match message {
            Message::Unwrapped(UserMessage::Warning(w)) => {
                assert_eq!(w.code, WarningCode::FollowsOverLimit);
                assert_eq!(
                    (w.user_id, w.timestamp_ms, w.percent_full),
                    (Some(777925), Some(1439407322431), None)
                );
            }
            other => panic!("{other:?}"),
        },
    );
    with_message(
        "DanielaSfregola__twitter4s/user_envelop_warning_message.json",
        0,
        |message| {
            assert_eq!(message.for_user(), Some(42));
            match message.user_message() {
                Some(UserMessage::Warning(w)) => {
                    assert_eq!(
                        (&w.code, w.percent_full),
                        (&WarningCode::FallingBehind, Some(60))
                    )
                }
                other => panic!("{other:?}"),
            }
        },
    );
}

#[test]
fn limits_deletes_scrub_geo_and_withheld_notices() {
    let limit = |path, index| {
        with_message(path, index, |m| match m.user_message() {
            Some(UserMessage::Limit(l)) => (l.track, l.timestamp_ms),
            other => panic!("{other:?}"),
        })
    };
    assert_eq!(
        limit("DanielaSfregola__twitter4s/limit_notices.json", 0),
        (1234, None)
    );
    assert_eq!(
        limit("DanielaSfregola__twitter4s/limit_notices.json", 1),
        (5678, None)
    );
    assert_eq!(
        limit("Twitter4J__Twitter4J/streamingapi-testcase.json", 3),
        (121564, None)
    );
    assert_eq!(
        limit("parroty__extwitter/limit.json", 0),
        (542, Some(1415022747749))
    );

    let delete = |path, index| {
        with_message(path, index, |m| match m.user_message() {
            Some(UserMessage::Delete(d)) => (d.target, d.id, d.user_id),
            other => panic!("{other:?}"),
        })
    };
    use DeleteTarget::{DirectMessage, Status};
    let twitter4s = "DanielaSfregola__twitter4s/status_deletion_notices.json";
    assert_eq!(
        delete(twitter4s, 0),
        (Status, 303747490128207873, Some(74558989))
    );
    assert_eq!(
        delete(twitter4s, 1),
        (Status, 303747490128207874, Some(74558990))
    );
    assert_eq!(
        delete("himura__twitter-types/delete.json", 0),
        (Status, 495607981833064448, Some(2566877347))
    );
    assert_eq!(
        delete("twitter__hbc/direct-message-delete.json", 0),
        (DirectMessage, 11111111111111111, Some(123123123))
    );
    assert_eq!(
        delete("Twitter4J__Twitter4J/streamingapi-event-testcase.json", 1),
        (DirectMessage, 1, Some(234))
    );
    assert_eq!(
        delete("Twitter4J__Twitter4J/streamingapi-testcase.json", 0),
        (Status, 6832057002, Some(18378841))
    );

    with_message(
        "Twitter4J__Twitter4J/streamingapi-testcase.json",
        5,
        |m| match m.user_message() {
            Some(UserMessage::ScrubGeo(s)) => {
                assert_eq!((s.user_id, s.up_to_status_id), (14090452, 23260136625))
            }
            other => panic!("{other:?}"),
        },
    );
    with_message(
        "DanielaSfregola__twitter4s/status_withheld_notices.json",
        0,
        |m| match m.user_message() {
            Some(UserMessage::StatusWithheld(w)) => {
                assert_eq!((w.id, w.user_id), (1234567890, 123456));
                assert_eq!(w.withheld_in_countries, ["DE", "AR"]);
            }
            other => panic!("{other:?}"),
        },
    );
    with_message(
        "DanielaSfregola__twitter4s/user_withheld_notices.json",
        1,
        |m| match m.user_message() {
            Some(UserMessage::UserWithheld(w)) => {
                assert_eq!(w.id, 123457);
                assert_eq!(w.withheld_in_countries, ["IT"]);
            }
            other => panic!("{other:?}"),
        },
    );
}

#[test]
fn events_give_kind_and_user_ids() {
    let event = |path, index| {
        with_message(path, index, |m| match m.user_message() {
            Some(UserMessage::Event(e)) => (
                e.kind.as_str().to_owned(),
                e.source_id,
                e.target_id,
                e.target_object.as_deref().map(|raw| raw.get().to_owned()),
            ),
            other => panic!("{other:?}"),
        })
    };
    let (kind, source, target, object) = event("tweetstream__tweetstream/favorite.json", 0);
    assert_eq!(
        (kind.as_str(), source, target),
        ("favorite", Some(459909498), Some(598914668))
    );
    assert!(object.expect("a tweet").contains("228029422597443584"));

    let twitter4s = "DanielaSfregola__twitter4s/events.json";
    let (kind, source, target, _) = event(twitter4s, 0);
    assert_eq!(
        (kind.as_str(), source, target),
        ("favorited_retweet", Some(2911461333), Some(786491))
    );
    let (kind, source, target, _) = event(twitter4s, 1);
    assert_eq!(
        (kind.as_str(), source, target),
        ("unfavorite", Some(2911461333), Some(13458372))
    );

    // Twitter4J puts the user objects before "event"; the synthetic ones use bare numbers.
    let twitter4j = "Twitter4J__Twitter4J/streamingapi-event-testcase.json";
    let (kind, source, target, _) = event(twitter4j, 0);
    assert_eq!(
        (kind.as_str(), source, target),
        ("follow", Some(23456789), Some(12345678))
    );
    assert_eq!(event(twitter4j, 2).0, "UNKNOWN_EVENT");
    let (kind, source, target, object) = event(twitter4j, 3);
    assert_eq!(
        (kind.as_str(), source, target),
        ("user_delete", Some(1234567890), Some(1234567890))
    );
    assert_eq!(object.as_deref(), Some(r#""client_application""#));
    assert_eq!(event(twitter4j, 4).0, "user_suspend");

    for (path, kind) in [
        (
            "himura__twitter-types/event_favorite_thimura.json",
            "favorite",
        ),
        (
            "himura__twitter-types/event_unfavorite_thimura.json",
            "unfavorite",
        ),
    ] {
        let (got, source, target, object) = event(path, 0);
        assert_eq!((got.as_str(), source), (kind, Some(2566877347)));
        assert!(target.is_some() && object.is_some());
    }

    with_message(
        "DanielaSfregola__twitter4s/user_envelop_simple_event.json",
        0,
        |m| {
            assert_eq!(m.for_user(), Some(42));
            match m.user_message() {
                Some(UserMessage::Event(e)) => {
                    assert_eq!(e.kind, EventKind::UserUpdate);
                    assert_eq!(
                        (e.source_id, e.target_id),
                        (Some(2911461333), Some(2911461333))
                    );
                    assert!(e.target_object.is_none());
                    assert_eq!(
                        e.created_at.as_deref(),
                        Some("Sun Oct 25 10:13:30 +0000 2015")
                    );
                }
                other => panic!("{other:?}"),
            }
        },
    );
    with_message(
        "DanielaSfregola__twitter4s/user_envelop_tweet_event.json",
        0,
        |m| {
            assert!(
                matches!(m.user_message(), Some(UserMessage::Event(e)) if e.kind == EventKind::Favorite)
            );
        },
    );
    with_message(
        "DanielaSfregola__twitter4s/user_envelop_twitter_list_event.json",
        0,
        |m| {
            assert_eq!(m.for_user(), Some(1000));
            assert!(matches!(m.user_message(), Some(UserMessage::Event(e))
            if e.kind == EventKind::ListCreated && e.target_object.is_some()));
        },
    );
    let sferik = "sferik__twitter/track_streaming_user.json";
    let (kind, source, target, _) = event(sferik, 3);
    assert_eq!(
        (kind.as_str(), source, target),
        ("follow", Some(10083602), Some(1292911088))
    );
}

#[test]
fn direct_messages_wrapped_and_bare() {
    let dm = |path, index| {
        with_message(path, index, |m| match m.user_message() {
            Some(UserMessage::DirectMessage(d)) => {
                let raw: serde_json::Value =
                    serde_json::from_str(d.raw.get()).expect("raw is JSON");
                assert_eq!(
                    raw["text"].as_str(),
                    Some(&*d.text),
                    "raw is the DM object itself"
                );
                (d.id, d.text.to_string(), d.sender_id, d.recipient_id)
            }
            other => panic!("{other:?}"),
        })
    };
    assert_eq!(
        dm("twitter__hbc/direct-message.json", 0),
        (
            1270520569,
            "sure thing. Meet you at the mall around 7?".into(),
            Some(777925),
            Some(19345946)
        )
    );
    assert_eq!(
        dm("tweetstream__tweetstream/direct_messages.json", 0),
        (
            4227325281,
            "waddup gain".into(),
            Some(11458102),
            Some(379145826)
        )
    );
    assert_eq!(
        dm("sferik__twitter/track_streaming_user.json", 2),
        (
            389327745617891328,
            "hello bot".into(),
            Some(10083602),
            Some(1292911088)
        )
    );
    // Bare DM objects: raw UTF-8 Japanese text, borrowed straight from the input.
    let (id, text, sender, recipient) = dm("himura__twitter-types/direct_message_thimura.json", 0);
    assert_eq!(
        (id, sender, recipient),
        (495602442466123776, Some(2566877347), Some(69179963))
    );
    assert_eq!(
        text,
        "おまえの明日が、今日よりもずっと、楽しい事で溢れているようにと、祈っているよ"
    );
    let (id, _, sender, recipient) = dm(
        "DanielaSfregola__twitter4s/user_envelop_direct_message.json",
        0,
    );
    assert_eq!(
        (id, sender, recipient),
        (542081720715980800, Some(535354329), Some(2911461333))
    );
}

fn tweet<R>(
    path: &str,
    index: usize,
    check: impl FnOnce(&sitebucket_proto::message::Tweet<'_>) -> R,
) -> R {
    with_message(path, index, |m| match m.user_message() {
        Some(UserMessage::Tweet(t)) => check(t),
        other => panic!("{other:?}"),
    })
}

#[test]
fn tweets_prefer_id_str_and_keep_text_exact() {
    // id 641660763770372100 went through a double; id_str is right.
    tweet("himura__twitter-types/status_quoted.json", 0, |t| {
        assert_eq!(t.id, 641660763770372097);
        assert_eq!(t.quoted_status_id, Some(641653574284537856));
        assert_eq!(t.user_id(), Some(15232432));
        assert_eq!(t.user_screen_name().as_deref(), Some("deanwampler"));
        assert_eq!(t.text(), "Wow! Congrats! https://t.co/EPMMldEcci");
    });
    tweet("linvi__tweetinvi/FilteredStreamEvent.json", 0, |t| {
        assert_eq!(t.id, 1217181769885200385);
        assert_eq!(t.quoted_status_id, Some(1216867520923172871));
        assert_eq!(t.user_screen_name().as_deref(), Some("nneleaa"));
        assert_eq!(t.text(), "Il a raison de \u{c0} \u{e0} Z i see no lie");
        assert!(matches!(t.text(), Cow::Owned(_)), "escaped text is decoded");
    });
    tweet(
        "twitterdev__tweet-updates/retweet_w_replies+attachment.json",
        0,
        |t| {
            assert_eq!(
                (t.id, t.retweeted_status_id()),
                (763459917910945792, Some(758839565989720065))
            );
            assert!(t.text().starts_with("RT @ygritteygritte: "));
        },
    );
    tweet(
        "twitterdev__tweet-updates/compatibilityplus_classic_hidden_13797.json",
        0,
        |t| {
            assert_eq!(t.id, 714461850188926976);
            let full = t.full_text().expect("extended_tweet.full_text");
            assert!(full.starts_with("@jeremycloud It's neat to have owls and raccoons around"));
            assert!(full.chars().count() > t.text().chars().count() - 30);
            assert_eq!(t.best_text(), full);
        },
    );
    tweet(
        "bear__python-twitter/streaming_extended_tweet.json",
        0,
        |t| {
            assert_eq!(t.id, 971726741583605760);
            assert!(t
                .text()
                .ends_with("Big/Small/\u{2026} https://t.co/ZPJrpMvcZG"));
            assert!(t.full_text().expect("full text").contains("Multiverse"));
        },
    );
    tweet("sferik__twitter/track_streaming.json", 1, |t| {
        assert_eq!(t.id, 55709764298092545);
        assert_eq!(t.user_screen_name().as_deref(), Some("sferik"));
        assert_eq!(
            t.created_at.as_deref(),
            Some("Wed Apr 06 19:13:37 +0000 2011")
        );
    });
    // 2009: no id_str at all.
    tweet("Twitter4J__Twitter4J/streamingapi-testcase.json", 1, |t| {
        assert_eq!(t.id, 6832063504)
    });
    tweet(
        "DanielaSfregola__twitter4s/user_envelop_tweet_stringified.json",
        0,
        |t| {
            assert_eq!(t.id, 651470141381865473);
            assert_eq!(
                (t.user_id(), t.user_screen_name().as_deref()),
                (None, None),
                "this tweet has no user"
            );
        },
    );
}

#[test]
fn all_python_twitter_lines_are_extended_tweets_with_matching_ids() {
    let bytes = read("bear__python-twitter/lines.json");
    for (index, line) in split(&bytes, Split::Lines).into_iter().enumerate() {
        let value: serde_json::Value = serde_json::from_slice(line).expect("JSON");
        let id: u64 = value["id_str"]
            .as_str()
            .expect("id_str")
            .parse()
            .expect("digits");
        let message = Message::from_slice(line).expect("decodes");
        match message {
            Message::Unwrapped(UserMessage::Tweet(t)) => {
                assert_eq!(t.id, id, "line {index}");
                assert_eq!(
                    t.text(),
                    value["text"].as_str().expect("text"),
                    "line {index}"
                );
                assert_eq!(
                    t.full_text().as_deref(),
                    value["extended_tweet"]["full_text"].as_str(),
                    "line {index}"
                );
                assert_eq!(
                    t.user_id(),
                    value["user"]["id_str"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                );
                assert_eq!(
                    t.timestamp_ms,
                    value["timestamp_ms"].as_str().and_then(|s| s.parse().ok())
                );
                assert_eq!(
                    t.quoted_status_id,
                    value["quoted_status_id_str"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                );
            }
            other => panic!("line {index}: {other:?}"),
        }
    }
}

#[test]
fn text_with_escaped_newlines_decodes() {
    // spring's fixture has "\n" escapes inside text; compare with serde_json's own decoding.
    let path = "spring-projects__spring-social-twitter/filter-stream-track.json";
    let bytes = read(path);
    for line in split(&bytes, Split::Lines) {
        let value: serde_json::Value = serde_json::from_slice(line).expect("JSON");
        if let Some(text) = value["text"].as_str() {
            let message = Message::from_slice(line).expect("decodes");
            match message.user_message() {
                Some(UserMessage::Tweet(t)) => assert_eq!(t.text(), text),
                other => panic!("{other:?}"),
            }
        }
    }
}

#[test]
fn default_parser_reports_a_bad_message_and_goes_on() {
    let bytes = read("sferik__twitter/track_streaming_user.json");
    let mut messages: Vec<Bytes> = split(&bytes, Split::Crlf)
        .into_iter()
        .map(Bytes::copy_from_slice)
        .collect();
    messages.insert(3, Bytes::from_static(b"{\"event\":\"follow\",\"source\":{"));
    let mut seen = Vec::new();
    let mut parser = DefaultParser::new(|result: Result<Message<'_>, _>| {
        seen.push(match result {
            Ok(message) => message.kind().to_owned(),
            Err(error) => format!("error: {error}"),
        })
    });
    for message in messages {
        parser.parse(message);
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(&seen[..3], ["friends", "tweet", "direct_message"]);
    assert!(
        seen[3].starts_with("error: message is truncated JSON"),
        "{}",
        seen[3]
    );
    assert_eq!(&seen[4..], ["event", "delete", "warning"]);
}

/// Every fixture message survives `into_owned` unchanged, after its bytes are gone (and is
/// `Send + 'static`), and serializes to the same JSON owned or borrowed: `{"<kind>":…}` for a
/// known payload, the envelope's `for_user` and `message`, and an unknown payload's raw JSON
/// byte for byte.
#[test]
fn every_fixture_message_owned_and_serialized() {
    let mut owned = Vec::new();
    for (path, how, _) in cases() {
        let bytes = read(path);
        for (i, piece) in split(&bytes, how).into_iter().enumerate() {
            let message = Message::from_slice(piece).expect("fixtures decode");
            let json = serde_json::to_string(&message).expect("serializable");
            let kept = message.clone().into_owned();
            assert_eq!(kept, message, "{path} message {i}");
            assert_eq!(serde_json::to_string(&kept).unwrap(), json);

            let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
            let (payload, kind) = match &message {
                Message::ForUser { for_user, message } => {
                    assert_eq!(value["for_user"], serde_json::json!(for_user));
                    (&value["message"], message.kind())
                }
                Message::Unwrapped(message) => (&value, message.kind()),
                other => (&value, other.kind()),
            };
            match message.user_message() {
                Some(UserMessage::Unknown(raw)) => match message.for_user() {
                    Some(_) => assert!(json.ends_with(&format!(r#""message":{}}}"#, raw.get()))),
                    None => assert_eq!(json, raw.get()),
                },
                _ => {
                    let object = payload.as_object().expect("an object");
                    assert_eq!(object.keys().collect::<Vec<_>>(), [kind], "{path} {i}");
                }
            }
            owned.push((json, kept));
        }
        drop(bytes);
    }
    assert_eq!(owned.len(), 181);
    // The messages outlived every fixture's bytes, and could go to another thread.
    fn sendable<T: Send + 'static>(value: T) -> T {
        value
    }
    for (json, message) in sendable(owned) {
        assert_eq!(serde_json::to_string(&message).unwrap(), json);
    }
}

/// A seeded source of mutations (SplitMix64).
struct Mutator(u64);

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A byte that means something to JSON, or any byte.
    fn byte(&mut self) -> u8 {
        const MEANINGFUL: &[u8] = b"{}[]:,\"\\ \t\n0123456789-+.eEtrufalsn/u\x00\x1f\xc3\xff";
        if self.below(4) == 0 {
            self.next() as u8
        } else {
            MEANINGFUL[self.below(MEANINGFUL.len())]
        }
    }

    /// `message` with one to three bytes set, inserted or removed, or cut short.
    fn mutate(&mut self, message: &[u8]) -> Vec<u8> {
        let mut bytes = message.to_vec();
        for _ in 0..1 + self.below(3) {
            let len = bytes.len();
            match self.below(4) {
                0 if len > 0 => {
                    let at = self.below(len);
                    bytes[at] = self.byte();
                }
                1 => bytes.truncate(self.below(len + 1)),
                2 => {
                    let at = self.below(len + 1);
                    let byte = self.byte();
                    bytes.insert(at, byte);
                }
                _ if len > 0 => {
                    bytes.remove(self.below(len));
                }
                _ => {}
            }
        }
        bytes
    }
}

/// `from_slice` (the crate's own scanner) and `from_slice_serde` (serde_json's visitors, the
/// reference) give the same answer, errors included, and `RawJson::new` accepts what
/// `serde_json` accepts into `IgnoredAny`.
fn assert_same_as_serde(bytes: &[u8], what: &dyn std::fmt::Display) {
    assert_eq!(
        Message::from_slice(bytes),
        Message::from_slice_serde(bytes),
        "{what}: {:?}",
        String::from_utf8_lossy(bytes)
    );
    assert_eq!(
        sitebucket_proto::message::RawJson::new(bytes).is_ok(),
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok(),
        "{what}: {:?}",
        String::from_utf8_lossy(bytes)
    );
}

#[test]
fn every_fixture_message_and_its_mutations_decode_as_the_serde_decoder_does() {
    let mut mutator = Mutator(20_261_207);
    let (mut valid, mut rejected) = (0, 0);
    for (path, how, _) in cases() {
        let bytes = read(path);
        for (index, message) in split(&bytes, how).into_iter().enumerate() {
            assert_same_as_serde(message, &format_args!("{path} message {index}"));
            for round in 0..100 {
                let mutated = mutator.mutate(message);
                assert_same_as_serde(
                    &mutated,
                    &format_args!("{path} message {index} mutation {round}"),
                );
                match Message::from_slice(&mutated) {
                    Ok(_) => valid += 1,
                    Err(_) => rejected += 1,
                }
            }
        }
    }
    // Both sides are exercised: mutations that keep the JSON valid and ones that break it.
    assert!(
        valid > 1_000 && rejected > 1_000,
        "{valid} valid, {rejected} rejected"
    );
}
