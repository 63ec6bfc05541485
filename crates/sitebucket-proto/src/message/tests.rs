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

fn tweet_bytes(json: &[u8]) -> Tweet<'_> {
    match Message::from_slice(json).map(|m| m.user_message().cloned()) {
        Ok(Some(UserMessage::Tweet(tweet))) => tweet,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(json)),
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
        let json =
            format!(r#"{{"disconnect":{{"code":{code},"stream_name":"s-{code}","reason":"r"}}}}"#);
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
    assert_eq!(raw.text(), "日本語 café 😀");
    assert_eq!(raw.raw_text.as_bytes(), "\"日本語 café 😀\"".as_bytes());
    assert!(
        matches!(raw.text(), Cow::Borrowed(_)),
        "unescaped text borrows from the input"
    );
    let escaped = tweet(r#"{"id":1,"text":"\u65e5\u672c\u8a9e caf\u00e9 \ud83d\ude00"}"#);
    assert_eq!(escaped.text(), "日本語 café 😀");
    assert!(matches!(escaped.text(), Cow::Owned(_)));
    assert_eq!(
        escaped.raw_text.as_bytes(),
        br#""\u65e5\u672c\u8a9e caf\u00e9 \ud83d\ude00""#
    );
    // The text is decoded when asked, lossily: a lone surrogate or bytes that are not UTF-8
    // become U+FFFD, and the message decodes (both made it an error before).
    let lone = tweet(r#"{"id":1,"text":"a\ud83d b \udc00\u0041"}"#);
    assert_eq!(lone.text(), "a\u{fffd} b \u{fffd}A");
    let bad = Message::from_slice(b"{\"id\":1,\"text\":\"caf\xc3 \xff\"}").unwrap();
    match bad.user_message() {
        Some(UserMessage::Tweet(t)) => assert_eq!(t.text(), "caf\u{fffd} \u{fffd}"),
        other => panic!("{other:?}"),
    }
    // Bad syntax inside the text is still an error: a bad escape, a raw control character.
    for input in [
        &br#"{"id":1,"text":"\x"}"#[..],
        &br#"{"id":1,"text":"\u12"}"#[..],
        &b"{\"id\":1,\"text\":\"a\nb\"}"[..],
    ] {
        assert_eq!(error(input).kind(), ParseErrorKind::InvalidJson);
    }
}

#[test]
fn kept_values_are_found_whatever_the_keys_around_them() {
    // Whitespace everywhere, the text last (no next key to end it), and keys with escapes
    // next to it and on it: every way `Fields::read` finds a value's bytes.
    let cases: [&[u8]; 6] = [
        br#"{"id":1,"text":"a \"b\" c"}"#,
        b"{ \"id\" : 1 ,\n \"text\"\t:\r\n \"a \\\"b\\\" c\" \n , \"x\" : [ ] }",
        br#"{"text":"a \"b\" c","i\u0064":1}"#,
        br#"{"id":1,"t\u0065xt":"a \"b\" c"}"#,
        br#"{"text":"first","id":1,"text":"a \"b\" c"}"#,
        br#"{"id":1,"text":"a \"b\" c","text":"a \"b\" c","z":{"text":"no"}}"#,
    ];
    for input in cases {
        let message = Message::from_slice(input).unwrap();
        match message.user_message() {
            Some(UserMessage::Tweet(t)) => {
                assert_eq!(t.text(), "a \"b\" c", "{}", String::from_utf8_lossy(input));
                assert_eq!(t.raw_text.as_bytes(), br#""a \"b\" c""#);
            }
            other => panic!("{other:?}"),
        }
    }
    // The author and the retweet last, before escaped keys, around whitespace, or `null`.
    let t = tweet(
        r#"{"id":1,"text":"t","retweeted_status" : {"id":2,"s":"}]\"{"} , "user":{"id":[3],"id_str":"4"}}"#,
    );
    assert_eq!(
        t.user.as_ref().unwrap().as_bytes(),
        br#"{"id":[3],"id_str":"4"}"#
    );
    assert_eq!((t.user_id(), t.retweeted_status_id()), (Some(4), Some(2)));
    assert_eq!(
        t.retweeted_status.as_ref().unwrap().as_bytes(),
        br#"{"id":2,"s":"}]\"{"}"#
    );
    let t = tweet(r#"{"user":7,"\u0069d":1,"text":"t","retweeted_status":null}"#);
    assert_eq!((t.user_id(), t.retweeted_status.is_none()), (Some(7), true));
    let t = tweet(r#"{"id":1,"text":"t","user":{"id":5},"user":null}"#);
    assert!(t.user.is_none(), "the last duplicate counts");
    // A text that is not a string is no text (and then no tweet), as before.
    assert_eq!(decode(r#"{"id":1,"text":5}"#).kind(), "unknown");
    assert_eq!(decode(r#"{"id":1,"text":null,"x":1}"#).kind(), "unknown");
    // Inside the envelope, with the message key last at the top.
    let message = decode(r#"{"for_user":9, "message" :{"id":1,"user":{"id":2},"text":"\u00e9"} }"#);
    match message {
        Message::ForUser {
            for_user: 9,
            message: UserMessage::Tweet(t),
        } => assert_eq!((t.text().as_ref(), t.user_id()), ("é", Some(2))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn field_keys_are_matched_exactly() {
    for (key, field) in [
        (&b"id"[..], Field::Id),
        (b"text", Field::Text),
        (b"user", Field::User),
        (b"source", Field::Source),
        (b"sender", Field::DmParty),
        (b"retweeted_status", Field::RetweetedStatus),
        (b"recipient_id_str", Field::DmParty),
        (b"in_reply_to_status_id_str", Field::InReplyToStatusIdStr),
        (b"ie", Field::Other),
        (b"texts", Field::Other),
        (b"", Field::Other),
        (b"retweeted_statuz", Field::Other),
        (b"lang", Field::Other),
    ] {
        assert_eq!(Field::of(key), field, "{}", String::from_utf8_lossy(key));
    }
}

#[test]
fn raw_json_decodes_strings_lossily_and_checks_syntax() {
    let decode_str = |json: &str| {
        RawJson::new(json.as_bytes())
            .unwrap()
            .decode_str()
            .map(Cow::into_owned)
    };
    assert_eq!(decode_str(r#""plain""#).as_deref(), Some("plain"));
    assert_eq!(
        decode_str(r#"" \" \\ \/ \b \f \n \r \t \u00e9 \ud83d\ude00 ""#).as_deref(),
        Some(" \" \\ / \u{8} \u{c} \n \r \t é 😀 ")
    );
    assert_eq!(
        decode_str(r#""\udc00\ud800""#).as_deref(),
        Some("\u{fffd}\u{fffd}")
    );
    assert_eq!(
        decode_str(r#""\ud800\u0041""#).as_deref(),
        Some("\u{fffd}A")
    );
    assert_eq!(decode_str("{}"), None);
    assert_eq!(decode_str("7"), None);
    assert!(RawJson::new(b"{").is_err() && RawJson::new(b"1 2").is_err());
    assert_eq!(RawJson::new(b"\"\xff\"").unwrap().to_str().ok(), None);
    // Bytes the decoder never hands over still decode to something, without a panic.
    for odd in [
        &b"\\"[..],
        b"\\u",
        b"\\u12",
        b"\\uzzzz",
        b"\\ud800\\u",
        b"\\q",
    ] {
        let _ = decode_json_string(odd);
    }
    assert_eq!(decode_json_string(b"a\\"), "a\\");
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
    assert_eq!(t.text(), "a\r\nb \"quoted\" \\ /");
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
    let raw = |json: &'static str| Some(RawJson::new(json.as_bytes()).unwrap());
    assert_eq!(
        t,
        Tweet {
            id: 3,
            raw_text: RawJson::new(br#""short\u2026""#).unwrap(),
            raw_full_text: raw(r#""the whole text""#),
            user: raw(
                r#"{"id":7,"id_str":"7","screen_name":"alice","entities":{"url":{"urls":[{"id":99}]}}}"#
            ),
            created_at: Some(Cow::Borrowed("Thu Mar 08 12:38:03 +0000 2018")),
            in_reply_to_status_id: Some(1),
            retweeted_status: raw(r#"{"id":2,"id_str":"2","user":{"id":8},"text":"orig"}"#),
            quoted_status_id: Some(4),
            timestamp_ms: Some(1520690595660),
        }
    );
    assert_eq!(
        (
            t.user_id(),
            t.user_screen_name().as_deref(),
            t.retweeted_status_id()
        ),
        (Some(7), Some("alice"), Some(2))
    );
    assert!(
        matches!(t.user_screen_name(), Some(Cow::Borrowed(_))),
        "an unescaped name borrows from the message"
    );
    assert_eq!(t.best_text(), "the whole text");
    // Only full_text (REST extended mode), and a quoted_status without the id fields.
    let t = tweet(r#"{"id":1,"full_text":"long","quoted_status":{"id_str":"5"},"user":null}"#);
    assert_eq!(
        (
            &*t.text(),
            t.full_text().as_deref(),
            t.quoted_status_id,
            t.user_id(),
            t.user.is_none()
        ),
        ("long", Some("long"), Some(5), None, true)
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
        decode(r#"{"for_user":1,"message":{"control":{"control_uri":"/1.1/site/c/x"}}}"#).kind(),
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

    // One parser with one validation: the message's id is the one a control call accepts.
    for (uri, id) in [
        ("/1.1/site/c/..", None),
        ("/1.1/site/c/.", None),
        ("/1.1/site/c/a b", None),
        ("/1.1/site/c/a%2Fb", None),
        ("/1.1/site/c/ok#frag", Some("ok")),
        ("/1.1/site/c/ok?x=1", Some("ok")),
        ("/1.1/site/c/1.2_~-x", Some("1.2_~-x")),
    ] {
        let json = format!(r#"{{"control":{{"control_uri":"{uri}"}}}}"#);
        let Message::Control(c) = Message::from_slice(json.as_bytes()).unwrap() else {
            panic!("{json}");
        };
        assert_eq!(c.stream_id(), id, "{uri}");
        assert_eq!(crate::control::stream_id_from_uri(uri), id, "{uri}");
        assert_eq!(
            id.is_some(),
            c.stream_id()
                .is_some_and(crate::control::is_valid_stream_id),
            "{uri}"
        );
    }
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
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|entries| {
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                )
            }),
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
    fn kept_values_are_the_values_serde_json_sees(
        value in json_value(),
        text in any::<String>(),
        pretty in any::<bool>(),
        wrapped in any::<bool>(),
    ) {
        use serde_json::Value;
        // A tweet with random other entries (keys sort, so `user` often comes last), printed
        // compact or with whitespace everywhere, unwrapped or in the envelope.
        let mut object = match value {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        object.insert("id".into(), Value::from(1));
        object.entry("text").or_insert(Value::String(text));
        let payload = Value::Object(object);
        let top = if wrapped {
            serde_json::json!({"for_user": 5, "message": payload.clone()})
        } else {
            payload.clone()
        };
        let bytes = if pretty { serde_json::to_vec_pretty(&top) } else { serde_json::to_vec(&top) }
            .expect("serializable");
        let message = Message::from_slice(&bytes).expect("an object decodes");
        // What serde_json reads back from the same bytes, not the generated `payload`: without
        // its `float_roundtrip` feature a float printed and read again can move by one ulp.
        let seen: Value = serde_json::from_slice(&bytes).expect("serde_json reads its own output");
        let seen = if wrapped { &seen["message"] } else { &seen };
        if let Some(UserMessage::Tweet(t)) = message.user_message() {
            let raw = |raw: Option<&RawJson<'_>>| {
                raw.map(|raw| serde_json::from_slice::<Value>(raw.as_bytes()).expect("a whole value"))
            };
            let not_null = |key: &str| seen.get(key).filter(|v| !v.is_null()).cloned();
            prop_assert_eq!(raw(t.user.as_ref()), not_null("user"));
            prop_assert_eq!(raw(t.retweeted_status.as_ref()), not_null("retweeted_status"));
            let text = seen["text"].as_str().or(seen["full_text"].as_str());
            prop_assert_eq!(Some(&*t.text()), text);
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
                prop_assert_eq!(&*t.text(), &*text);
                prop_assert_eq!(t.user_id(), Some(user_id));
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

#[test]
fn the_author_and_the_retweet_are_read_when_asked() {
    // Escapes in the name: decoded (owned) on access.
    let t = tweet(
        r#"{"id":1,"text":"t","user":{"name":"n","id":5,"screen_name":"caf\u00e9","id_str":"6"},"retweeted_status":{"text":"x","id_str":"9","user":{"id":3}}}"#,
    );
    assert_eq!((t.user_id(), t.retweeted_status_id()), (Some(6), Some(9)));
    assert!(matches!(t.user_screen_name(), Some(Cow::Owned(name)) if name == "café"));
    // Duplicate keys: the last one counts, as everywhere else.
    let t =
        tweet(r#"{"id":1,"text":"t","user":{"id":1,"id":2,"screen_name":"a","screen_name":7}}"#);
    assert_eq!((t.user_id(), t.user_screen_name()), (Some(2), None));
    // A bare numeric user (hand-written fixtures); odd shapes give None, never an error.
    let t = tweet(r#"{"id":1,"text":"t","user":12,"retweeted_status":"x"}"#);
    assert_eq!(
        (t.user_id(), t.user_screen_name(), t.retweeted_status_id()),
        (Some(12), None, None)
    );
    let t = tweet(r#"{"id":1,"text":"t","user":[1],"retweeted_status":null}"#);
    assert_eq!((t.user_id(), t.retweeted_status.is_none()), (None, true));
    // A lone surrogate in a field read lazily: the message decodes, and only what cannot be
    // decoded is `None` (the whole message used to be an error).
    let t = tweet(
        r#"{"id":1,"text":"t","user":{"id":4,"screen_name":"\ud800"},"retweeted_status":{"id_str":"\ud800"}}"#,
    );
    assert_eq!(
        (t.user_id(), t.user_screen_name(), t.retweeted_status_id()),
        (Some(4), None, None)
    );
    // An id that cannot be decoded fails the read of the whole `user`, name included.
    let t = tweet(r#"{"id":1,"text":"t","user":{"id_str":"\udfff","screen_name":"s"}}"#);
    assert_eq!((t.user_id(), t.user_screen_name()), (None, None));
    // Invalid UTF-8 in a value kept raw is not looked at with the message (as in a skipped
    // value): only a field read from it that holds such bytes is `None`.
    let t = tweet_bytes(
        b"{\"id\":1,\"text\":\"t\",\"user\":{\"description\":\"\xff\",\"id\":3},\"retweeted_status\":{\"text\":\"\xc3\",\"id\":4},\"source\":\"\xff\"}",
    );
    assert_eq!((t.user_id(), t.retweeted_status_id()), (Some(3), Some(4)));
    assert!(t.user.as_ref().unwrap().to_str().is_err());
    let t = tweet_bytes(b"{\"id\":1,\"text\":\"t\",\"user\":{\"screen_name\":\"\xff\",\"id\":3}}");
    assert_eq!((t.user_id(), t.user_screen_name()), (None, None));
    // ... while invalid UTF-8 in a skipped value is still not looked at.
    assert_eq!(
        Message::from_slice(b"{\"id\":1,\"text\":\"t\",\"entities\":{\"x\":\"\xff\"}}")
            .unwrap()
            .kind(),
        "tweet"
    );
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
        r#"{"for_user":4,"message":{"id":1,"text":"t","user":{"id_str":"7","screen_name":"a\u00e9"},"retweeted_status":{"id":2}}}"#,
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

// ---------------------------------------------------------------------------------------------
// The scanner against serde_json (differential tests)
// ---------------------------------------------------------------------------------------------

/// serde_json's verdict on `bytes` as one value skipped into `IgnoredAny`.
fn serde_accepts(bytes: &[u8]) -> bool {
    serde_json::from_slice::<IgnoredAny>(bytes).is_ok()
}

/// The scanner and the decoder against serde_json on `bytes`: the scanner accepts exactly
/// what serde_json accepts (unless the nesting is too deep for it), the decoder's answer is
/// the serde decoder's, errors included, and the scanner decides every message the serde
/// decoder accepts. Returns whether the scanner's decoder decided it.
fn check_against_serde(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let shown = String::from_utf8_lossy(bytes);
    let scanned = scan::validate(bytes);
    if scanned != Err(scan::Reject::TooDeep) {
        prop_assert_eq!(
            scanned.is_ok(),
            serde_accepts(bytes),
            "validate {:?}",
            shown
        );
    }
    prop_assert_eq!(
        RawJson::new(bytes).is_ok(),
        serde_accepts(bytes),
        "RawJson::new {:?}",
        shown
    );
    let reference = Message::from_slice_serde(bytes);
    prop_assert_eq!(&Message::from_slice(bytes), &reference, "{:?}", shown);
    let fast = scan::message(bytes);
    if let Some(fast) = &fast {
        prop_assert_eq!(Ok(fast), reference.as_ref(), "{:?}", shown);
    } else if reference.is_ok() {
        // Only input outside `IgnoredAny`'s grammar goes to the serde decoder and decodes
        // there: nesting too deep for the scanner, or a control byte in a key that serde_json
        // reads as bytes (the keys of a notice's object, which `IgnoredAny` would refuse).
        prop_assert!(
            scanned == Err(scan::Reject::TooDeep) || !serde_accepts(bytes),
            "not decided: {:?}",
            shown
        );
    }
    Ok(fast.is_some())
}

#[test]
fn the_scanner_agrees_with_serde_json_on_edge_cases() {
    let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let inputs: Vec<Vec<u8>> = [
        // Numbers.
        "0",
        "-0",
        "1",
        "-1",
        "01",
        "-01",
        "00",
        "1.",
        "1.5",
        "1.e5",
        ".5",
        "-",
        "+1",
        "1e",
        "1e+",
        "1e-5",
        "1E5",
        "1e5.5",
        "1.5e",
        "0.0e00",
        "-a",
        "1x",
        "2]",
        "18446744073709551616",
        "1e400",
        "-1e400",
        "[01]",
        "[1.]",
        "[-]",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":-}",
        // Literals.
        "true",
        "false",
        "null",
        "tru",
        "nul",
        "fals",
        "nulll",
        "True",
        "[true,false,null]",
        "[nul]",
        "[t]",
        // Strings and escapes.
        "\"\"",
        "\"a\"",
        "\"\\\"\"",
        "\"\\\\\"",
        "\"\\/\"",
        "\"\\b\\f\\n\\r\\t\"",
        "\"\\u0041\"",
        "\"\\u00e9\"",
        "\"\\uD800\"",
        "\"\\udc00\\ud800\"",
        "\"\\u12G4\"",
        "\"\\u12\"",
        "\"\\u\"",
        "\"\\x\"",
        "\"\\'\"",
        "\"\\",
        "\"abc",
        "\"abcdefghijklmnop",
        "\"a\tb\"",
        "\"a\nb\"",
        "\"a\u{7f}b\"",
        "\"a\u{1f}b\"",
        "\"0123456\u{0}\"",
        "\"01234567\\\"89abcdef\"",
        "\"01234567890123456789\\u0041x\"",
        // Structure.
        "",
        " ",
        "{",
        "}",
        "[",
        "]",
        "{}",
        "[]",
        " {} ",
        "{} x",
        "{}{}",
        "[1,]",
        "[,1]",
        "[1 2]",
        "{\"a\":1,}",
        "{,}",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\" 1}",
        "{\"a\":1 \"b\":2}",
        "{1:2}",
        "{a:1}",
        "{'a':1}",
        "[1]]",
        "[[1]",
        "{\"a\":[}",
        "{\"a\":{]}",
        "[{]}",
        "\t\r\n{}\n",
        "{\"a\" : 1 , \"b\" : [ 1 , 2 ] }",
        "\u{feff}{}",
        "{\"a\":1}\u{0}",
        "/*c*/{}",
        // Messages.
        r#"{"for_user":1,"message":{"id":1,"text":"t"}}"#,
        r#"{"for_user":1,"message":{"id":1,"text":"t"},}"#,
        r#"{"for_user":1,"message":{"id":1,"text":"t"}"#,
        r#"{"for_user":"1","message":{"id":"01","text":"t","id_str":"+5"}}"#,
        r#"{"for_user":1,"message":[{"id":1,"text":"t"}]}"#,
        r#"{"for_user":1,"message":1e400}"#,
        r#"{"id":1e400,"text":"t"}"#,
        r#"{"id":123456789012345678901,"text":"t"}"#,
        r#"{"id":-5,"text":"t","created_at":"\u00e9"}"#,
        r#"{"id":1,"text":"t","created_at":"\ud800"}"#,
        r#"{"t\u0065xt":"t","\u0069d":7}"#,
        r#"{"te\u0078t":"a\"b","id":1,"us\u0065r":{"id":2}}"#,
        r#"{"friends":[1,2,3]}"#,
        r#"{"friends_str":["1","2"]}"#,
        r#"{"event":"favorite","source":{"id":1},"target":{"id_str":"2"},"target_object":{}}"#,
        r#"{"delete":{"status":{"id":1,"user_id":2}}}"#,
        r#"{"limit":{"track":5}}"#,
        r#"{"warning":{"code":"FALLING_BEHIND","percent_full":60}}"#,
        r#"{"direct_message":{"id":1,"text":"hi","sender_id":2}}"#,
        r#"{"id":1,"text":"hi","sender":{"id":2},"recipient_id":3}"#,
        r#"{"control":{"control_uri":"/1.1/site/c/abc"}}"#,
        r#"{"disconnect":{"code":6,"stream_name":"s","reason":"r"}}"#,
        r#"{"id":1,"text":"t","quoted_status":{"id_str":"9"},"extended_tweet":{"full_text":"ft"}}"#,
        r#"{"id":1,"text":"t","for_user":2,"message":3}"#,
        r#"{"id":1,"text":"t","text":"u","id":2}"#,
        r#"[{"id":1,"text":"t"}]"#,
        r#""{\"id\":1}""#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .chain([
        // Bytes that are not UTF-8, in skipped and in decoded strings and in keys.
        b"\"\xff\"".to_vec(),
        b"{\"id\":1,\"text\":\"\xff\",\"x\":\"\xc3\"}".to_vec(),
        b"{\"id\":1,\"text\":\"t\",\"created_at\":\"\xff\"}".to_vec(),
        b"{\"id\":1,\"text\":\"t\",\"\xff\":1}".to_vec(),
        b"{\"event\":\"\xff\"}".to_vec(),
        b"{\"event\":\"e\",\"target_object\":\"\xff\"}".to_vec(),
        b"\xef\xbb\xbf{}".to_vec(),
        // Control bytes in keys: refused in skipped objects, let through in the keys of the
        // objects decoded (as serde_json reads them, as bytes).
        b"{\"id\":1,\"te\nxt\":\"t\",\"text\":\"u\"}".to_vec(),
        b"{\"warning\":{\"co\nde\":\"X\",\"message\":\"m\"}}".to_vec(),
        b"{\"id\":1,\"text\":\"t\",\"user\":{\"i\td\":1}}".to_vec(),
        // Nesting around the scanner's limit, and far beyond it.
        deep(scan::MAX_DEPTH as usize).into_bytes(),
        deep(scan::MAX_DEPTH as usize + 1).into_bytes(),
        deep(10_000).into_bytes(),
        format!(
            "{{\"id\":1,\"text\":\"t\",\"e\":{}}}",
            deep(scan::MAX_DEPTH as usize + 5)
        )
        .into_bytes(),
        format!(
            "{{\"id\":1,\"text\":\"t\",\"e\":{}]}}",
            deep(scan::MAX_DEPTH as usize + 5)
        )
        .into_bytes(),
        format!("[{}", deep(200)).into_bytes(),
    ])
    .collect();
    for input in &inputs {
        check_against_serde(input).unwrap_or_else(|error| panic!("{error}"));
    }
    // The scanner decides the valid messages itself.
    let message = br#"{"for_user":1,"message":{"id":1,"text":"t"}}"#;
    assert_eq!(
        check_against_serde(message).map_err(|e| e.to_string()),
        Ok(true)
    );
}

/// One of the ways [`mutated`] changes a message.
#[derive(Clone, Debug)]
enum Mutation {
    /// The byte at this position (modulo the length) becomes this one.
    Set(usize, u8),
    /// The message ends before this position.
    Truncate(usize),
    /// This byte goes in at this position.
    Insert(usize, u8),
    /// The byte at this position goes.
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Mostly bytes that mean something to JSON, else any byte.
    let byte = prop_oneof![
        3 => prop::sample::select(b"{}[]:,\"\\ \t\n0123456789-+.eEtrufalsn/bu\x00\x1f\x7f\xc3\xff".to_vec()),
        1 => any::<u8>(),
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), byte).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn mutated(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let len = bytes.len();
        match *mutation {
            Mutation::Set(at, byte) if len > 0 => bytes[at % len] = byte,
            Mutation::Truncate(at) => bytes.truncate(at % (len + 1)),
            Mutation::Insert(at, byte) => bytes.insert(at % (len + 1), byte),
            Mutation::Remove(at) if len > 0 => {
                bytes.remove(at % len);
            }
            _ => {}
        }
    }
    bytes
}

proptest! {
    // Cheap cases (about 0.1 ms each in a debug build): many of them.
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn the_scanner_agrees_with_serde_json_on_generated_json(
        value in json_value(),
        pretty in any::<bool>(),
        wrapped in any::<bool>(),
        mutations in prop::collection::vec(mutation(), 0..4),
    ) {
        let value = if wrapped { serde_json::json!({"for_user": 7, "message": value}) } else { value };
        let bytes = if pretty { serde_json::to_vec_pretty(&value) } else { serde_json::to_vec(&value) }
            .expect("serializable");
        let decided = check_against_serde(&mutated(bytes, &mutations))?;
        if mutations.is_empty() && value.is_object() {
            prop_assert!(decided, "the scanner decides every valid object");
        }
    }

    #[test]
    fn the_scanner_agrees_with_serde_json_on_mutated_tweets(
        id in any::<u64>(),
        text in any::<String>(),
        user in json_value(),
        wrapped in any::<bool>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let tweet = serde_json::json!({
            "created_at": "Wed Apr 06 19:13:37 +0000 2011",
            "id": id,
            "id_str": id.to_string(),
            "text": text,
            "source": "<a href=\"http://x\" rel=\"nofollow\">x</a>",
            "in_reply_to_status_id": null,
            "user": user,
            "entities": {"hashtags": [], "urls": [{"indices": [0, 23], "url": "https://t.co/x"}]},
            "timestamp_ms": "1302117217000",
        });
        let top = if wrapped { serde_json::json!({"for_user": "12", "message": tweet}) } else { tweet };
        let bytes = serde_json::to_vec(&top).expect("serializable");
        prop_assert!(check_against_serde(&bytes)?, "the scanner decides the tweet itself");
        check_against_serde(&mutated(bytes, &mutations))?;
    }
}
