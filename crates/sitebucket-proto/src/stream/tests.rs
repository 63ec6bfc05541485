#![allow(clippy::disallowed_methods)] // `Instant::now()` is only the base of virtual time here
use super::*;
use crate::config::Credentials;
use crate::response::MAX_SERVER_TEXT_CHARS;
use crate::{BackoffPolicy, Config, Framing};

fn config() -> crate::ConfigBuilder {
    Config::builder([3, 1, 2], Credentials::new("ck", "cs", "tk", "ts"))
        .url("http://127.0.0.1:8080/1.1/site.json")
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

const OK_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

/// Drains until Wait/Finished, returning everything it saw.
fn drain(stream: &mut SiteStream, now: Instant) -> Vec<Action> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let action = stream.poll_action(now);
        let last = matches!(action, Action::Wait(_) | Action::Finished(_));
        if let Action::Wait(deadline) = action {
            assert!(deadline > now, "Wait must lie in the future");
        }
        out.push(action);
        if last {
            return out;
        }
    }
    panic!("poll_action never settled");
}

/// Connects a fresh stream and returns the request it transmitted.
fn connect(stream: &mut SiteStream, now: Instant) -> Bytes {
    let actions = drain(stream, now);
    assert!(
        matches!(actions[0], Action::Connect { ref host, port: 8080, tls: false } if host == "127.0.0.1"),
        "{actions:?}"
    );
    stream.handle_connected(now, 1_700_000_000);
    match drain(stream, now).as_slice() {
        [Action::Transmit(request), Action::Wait(_)] => request.clone(),
        other => panic!("{other:?}"),
    }
}

fn messages(actions: &[Action]) -> Vec<&[u8]> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(StreamEvent::Message(m)) => Some(&m[..]),
            _ => None,
        })
        .collect()
}

#[test]
fn happy_path_signs_the_request_and_hands_out_messages() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(config().build().unwrap());
    let request = connect(&mut stream, t0);
    let text = std::str::from_utf8(&request).unwrap();
    assert!(text.starts_with("GET /1.1/site.json?follow=1%2C2%2C3&with=user HTTP/1.1\r\n"));
    assert!(text.contains("Authorization: OAuth "), "{text}");
    assert_eq!(stream.last_request(), Some(&request));

    let mut input = OK_HEAD.to_vec();
    input.extend(chunk(
        b"{\"control\":{\"control_uri\":\"/1.1/site/c/1_1_abc\"}}\r\n\r\n{\"a\":",
    ));
    input.extend(chunk(b"1}\r\n"));
    stream.handle_input(t0, &input);
    let actions = drain(&mut stream, t0);
    assert_eq!(
        actions[0],
        Action::Event(StreamEvent::Connected {
            status: 200,
            reason: "OK".into()
        })
    );
    assert_eq!(
        messages(&actions),
        [
            &b"{\"control\":{\"control_uri\":\"/1.1/site/c/1_1_abc\"}}"[..],
            b"{\"a\":1}"
        ]
    );
    assert!(actions.contains(&Action::Event(StreamEvent::KeepAlive)));
    assert_eq!(stream.stream_id(), Some("1_1_abc"));
    assert!(stream.is_established());
    assert_eq!(stream.stats().messages, 2);
    assert_eq!(stream.stats().keep_alives, 1);
    assert_eq!(
        actions.last(),
        Some(&Action::Wait(t0 + Duration::from_secs(90)))
    );
}

#[test]
fn owned_input_is_framed_in_place_and_like_borrowed_input() {
    let t0 = Instant::now();
    let mut wire = OK_HEAD.to_vec();
    wire.extend(chunk(b"{\"a\":1}\r\n\r\n{\"b\":"));
    wire.extend(chunk(b"2}\r\n{\"c\":3}\r\n"));
    let wire = Bytes::from(wire);
    // Whole, and byte by byte, each both ways: the same actions.
    let run = |pieces: &[Bytes], owned: bool| {
        let mut stream = SiteStream::new(config().build().unwrap());
        connect(&mut stream, t0);
        let mut actions = Vec::new();
        for piece in pieces {
            if owned {
                stream.handle_input_bytes(t0, piece.clone());
            } else {
                stream.handle_input(t0, piece);
            }
            actions.extend(drain(&mut stream, t0));
        }
        (actions, stream.stats().bytes)
    };
    let whole = run(std::slice::from_ref(&wire), false);
    assert_eq!(
        messages(&whole.0),
        [&b"{\"a\":1}"[..], b"{\"b\":2}", b"{\"c\":3}"]
    );
    assert_eq!(whole.1, wire.len() as u64);
    let bytes: Vec<Bytes> = (0..wire.len()).map(|i| wire.slice(i..i + 1)).collect();
    assert_eq!(run(std::slice::from_ref(&wire), true), whole);
    assert_eq!(run(&bytes, true), run(&bytes, false));
    assert_eq!(messages(&run(&bytes, true).0), messages(&whole.0));

    // Owned input: a message inside one chunk is a slice of it; b straddles two chunks.
    let mut stream = SiteStream::new(config().build().unwrap());
    connect(&mut stream, t0);
    stream.handle_input_bytes(t0, wire.clone());
    let actions = drain(&mut stream, t0);
    let inside = |m: &[u8]| {
        let (p, w) = (m.as_ptr() as usize, wire.as_ptr() as usize);
        p >= w && p + m.len() <= w + wire.len()
    };
    let found = messages(&actions);
    assert_eq!(found.len(), 3);
    assert!(inside(found[0]) && !inside(found[1]) && inside(found[2]));
}

#[test]
fn the_control_stream_id_is_forgotten_when_the_connection_drops() {
    let control =
        |uri: &str| chunk(format!("{{\"control\":{{\"control_uri\":\"{uri}\"}}}}\r\n").as_bytes());
    let t0 = Instant::now();
    let mut stream = SiteStream::new(config().build().unwrap());
    connect(&mut stream, t0);
    let mut input = OK_HEAD.to_vec();
    // An id that could not go in a control path is not kept.
    input.extend(control("/1.1/site/c/a b"));
    stream.handle_input(t0, &input);
    let _ = drain(&mut stream, t0);
    assert_eq!(stream.stream_id(), None);
    stream.handle_input(t0, &control("/1.1/site/c/"));
    let _ = drain(&mut stream, t0);
    assert_eq!(stream.stream_id(), None);
    stream.handle_input(t0, &control("/1.1/site/c/9_9_ok/info.json"));
    let _ = drain(&mut stream, t0);
    assert_eq!(stream.stream_id(), Some("9_9_ok"));

    // The drop forgets it at once, before any reconnect.
    stream.handle_eof(t0);
    let _ = drain(&mut stream, t0);
    assert_eq!(stream.stream_id(), None);
    let t1 = t0 + Duration::from_millis(250);
    connect(&mut stream, t1);
    let mut input = OK_HEAD.to_vec();
    input.extend(control("/1.1/site/c/10_10_new"));
    stream.handle_input(t1, &input);
    let _ = drain(&mut stream, t1);
    assert_eq!(stream.stream_id(), Some("10_10_new"));
    stream.disconnect();
    assert_eq!(stream.stream_id(), None, "and on disconnect()");
}

#[test]
fn every_attempt_is_signed_afresh() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(config().build().unwrap());
    let first = connect(&mut stream, t0);
    stream.handle_eof(t0);
    let actions = drain(&mut stream, t0);
    assert!(actions.contains(&Action::Close));
    let t1 = t0 + Duration::from_millis(250);
    let second = connect(&mut stream, t1);
    assert_ne!(first, second, "a fresh nonce each attempt");
}

#[test]
fn rate_limited_backs_off_a_minute_then_doubles() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(config().build().unwrap());
    let mut now = t0;
    for expected in [60, 120, 240] {
        connect(&mut stream, now);
        stream.handle_input(
            now,
            b"HTTP/1.1 420 Enhance Your Calm\r\nContent-Length: 0\r\n\r\n",
        );
        let actions = drain(&mut stream, now);
        let wait = Duration::from_secs(expected);
        assert_eq!(
            actions[1..],
            [
                Action::Close,
                Action::Event(StreamEvent::Disconnected {
                    error: StreamError::Status {
                        status: 420,
                        reason: "Enhance Your Calm".into()
                    },
                    retry_in: wait
                }),
                Action::Wait(now + wait)
            ]
        );
        // A spurious timeout changes nothing.
        stream.handle_timeout(now + wait / 2);
        assert_eq!(stream.poll_action(now + wait / 2), Action::Wait(now + wait));
        now += wait;
    }
    assert_eq!(stream.error_count(), 3);
}

fn v2_config() -> crate::ConfigBuilder {
    Config::v2_builder(
        crate::config::Api::V2Filtered,
        crate::config::BearerToken::new("BEARER-SECRET"),
    )
    .url("http://127.0.0.1:8080/2/tweets/search/stream")
}

#[test]
fn a_v2_stream_sends_its_bearer_token_and_its_own_parameters() {
    let t0 = Instant::now();
    let config = v2_config()
        .v2_param(crate::config::V2Param::TweetFields, "created_at,lang")
        .v2_param(crate::config::V2Param::Expansions, "author_id")
        .build()
        .unwrap();
    let mut stream = SiteStream::new(config);
    let request = connect(&mut stream, t0);
    assert_eq!(
        &request[..],
        format!(
            "GET /2/tweets/search/stream?expansions=author_id&tweet.fields=created_at%2Clang HTTP/1.1\r\n\
             Host: 127.0.0.1:8080\r\n\
             User-Agent: {}\r\n\
             Authorization: Bearer BEARER-SECRET\r\n\r\n",
            crate::request::USER_AGENT
        )
        .as_bytes()
    );
    // The secret shows in no Debug output.
    for debug in [format!("{stream:?}"), format!("{:?}", stream.config())] {
        assert!(!debug.contains("BEARER-SECRET"), "{debug}");
    }
}

#[test]
fn the_v2_operational_disconnect_reconnects_like_a_disconnect_message() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(v2_config().build().unwrap());
    connect(&mut stream, t0);
    // Pretty-printed, as go-twitter's test holds it (see tests/fixtures/v2/).
    let disconnect = "{\n\t\"errors\": [{\n\t\t\"title\": \"operational-disconnect\",\n\t\t\"disconnect_type\": \"UpstreamOperationalDisconnect\",\n\t\t\"detail\": \"This stream has been disconnected upstream for operational reasons.\",\n\t\t\"type\": \"https://api.twitter.com/2/problems/operational-disconnect\"\n\t}]\n}";
    let mut input = OK_HEAD.to_vec();
    input.extend(chunk(format!("{disconnect}\r\n").as_bytes()));
    stream.handle_input(t0, &input);
    let actions = drain(&mut stream, t0);
    assert_eq!(messages(&actions), [disconnect.as_bytes()]);
    let error = StreamError::OperationalDisconnect {
        disconnect_type: "UpstreamOperationalDisconnect".into(),
        detail: "This stream has been disconnected upstream for operational reasons.".into(),
    };
    let step = Duration::from_millis(250);
    assert_eq!(
        actions[actions.len() - 3..],
        [
            Action::Close,
            Action::Event(StreamEvent::Disconnected {
                error: error.clone(),
                retry_in: step
            }),
            Action::Wait(t0 + step)
        ]
    );
    assert_eq!(error.failure_kind(), Some(FailureKind::Network));
    assert_eq!(stream.error_count(), 1, "a disconnect earns no trust");
    // Other problems are messages like any other.
    let now = t0 + step;
    connect(&mut stream, now);
    let mut input = OK_HEAD.to_vec();
    input.extend(chunk(b"{\"errors\":[{\"title\":\"Not Found Error\"}]}\r\n"));
    stream.handle_input(now, &input);
    let actions = drain(&mut stream, now);
    assert_eq!(messages(&actions).len(), 1);
    assert!(matches!(actions.last(), Some(Action::Wait(_))));
    assert_eq!(stream.error_count(), 0, "a real message earns trust");
}

#[test]
fn a_429_waits_until_its_rate_limit_reset() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(v2_config().build().unwrap());
    // Connected at unix 1_700_000_000 (see `connect`); the head comes 2.5 s later and
    // says the window resets at 1_700_000_300: wait 297.5 s, more than the 60 s backoff.
    connect(&mut stream, t0);
    let now = t0 + Duration::from_millis(2500);
    stream.handle_input(
        now,
        b"HTTP/1.1 429 Too Many Requests\r\nx-rate-limit-reset: 1700000300\r\nContent-Length: 0\r\n\r\n",
    );
    let actions = drain(&mut stream, now);
    let wait = Duration::from_millis(297_500);
    assert_eq!(
        actions[1..],
        [
            Action::Close,
            Action::Event(StreamEvent::Disconnected {
                error: StreamError::Status {
                    status: 429,
                    reason: "Too Many Requests".into()
                },
                retry_in: wait
            }),
            Action::Wait(now + wait)
        ]
    );
    // A reset already past, sooner than the backoff, unreadable, or absurdly far: the
    // backoff (doubling on) or the one-hour cap.
    let mut now = now + wait;
    for (header, expected) in [
        (
            "x-rate-limit-reset: 1600000000\r\n",
            Duration::from_secs(120),
        ),
        (
            "x-rate-limit-reset: 1700000001\r\n",
            Duration::from_secs(240),
        ),
        ("x-rate-limit-reset: soon\r\n", Duration::from_secs(480)),
        ("", Duration::from_secs(960)),
        (
            "x-rate-limit-reset: 99999999999\r\n",
            MAX_RATE_LIMIT_RESET_WAIT,
        ),
    ] {
        connect(&mut stream, now);
        let head = format!("HTTP/1.1 429 Too Many Requests\r\n{header}Content-Length: 0\r\n\r\n");
        stream.handle_input(now, head.as_bytes());
        let actions = drain(&mut stream, now);
        assert_eq!(
            actions.last(),
            Some(&Action::Wait(now + expected)),
            "{header}"
        );
        now += expected;
    }
    // Any other status ignores the header.
    let mut stream = SiteStream::new(v2_config().build().unwrap());
    connect(&mut stream, t0);
    stream.handle_input(
        t0,
        b"HTTP/1.1 503 Service Unavailable\r\nx-rate-limit-reset: 1700000300\r\nContent-Length: 0\r\n\r\n",
    );
    let actions = drain(&mut stream, t0);
    assert_eq!(
        actions.last(),
        Some(&Action::Wait(t0 + Duration::from_secs(5)))
    );
}

#[test]
fn fatal_status_finishes_without_retry() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(config().build().unwrap());
    connect(&mut stream, t0);
    stream.handle_input(t0, b"HTTP/1.1 401 Unauthorized\r\n\r\n");
    let actions = drain(&mut stream, t0);
    let outcome = Outcome::Fatal {
        status: 401,
        reason: "Unauthorized".into(),
    };
    assert_eq!(
        actions[1..],
        [Action::Close, Action::Finished(outcome.clone())]
    );
    assert!(!stream.connection_healthy());
    assert!(!stream.running());
    assert_eq!(
        stream.poll_action(t0 + Duration::from_secs(3600)),
        Action::Finished(outcome)
    );
}

#[test]
fn stall_before_and_after_the_head_reconnects() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(config().build().unwrap());
    connect(&mut stream, t0);
    // Silent server: no head at all.
    let t1 = t0 + Duration::from_secs(90);
    let actions = drain(&mut stream, t1);
    assert_eq!(actions[0], Action::Close);
    assert!(matches!(
        actions[1],
        Action::Event(StreamEvent::Disconnected { error: StreamError::Stall(_), retry_in }) if retry_in == Duration::from_millis(250)
    ));
    // After a head, keep-alives hold the stall off.
    let t2 = t1 + Duration::from_millis(250);
    connect(&mut stream, t2);
    let mut input = OK_HEAD.to_vec();
    input.extend(chunk(b"\r\n"));
    stream.handle_input(t2, &input);
    drain(&mut stream, t2);
    let t3 = t2 + Duration::from_secs(89);
    stream.handle_input(t3, &chunk(b"\r\n"));
    let actions = drain(&mut stream, t3);
    assert_eq!(
        actions,
        [
            Action::Event(StreamEvent::KeepAlive),
            Action::Wait(t3 + Duration::from_secs(90))
        ]
    );
    let actions = drain(&mut stream, t3 + Duration::from_secs(90));
    assert_eq!(actions[0], Action::Close);
    assert_eq!(
        stream.error_count(),
        0,
        "an established stream's drop is no failed attempt"
    );
}

#[test]
fn eof_mid_stream_keeps_framed_messages_and_reconnects_after_one_step() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(config().build().unwrap());
    connect(&mut stream, t0);
    let mut input = OK_HEAD.to_vec();
    input.extend(chunk(b"{\"a\":1}\r\n{\"b\":"));
    stream.handle_input(t0, &input);
    stream.handle_eof(t0);
    let actions = drain(&mut stream, t0);
    assert_eq!(messages(&actions), [&b"{\"a\":1}"[..]]);
    // The half message is reported with its size, not dropped in silence.
    let error = StreamError::ClosedMidMessage { partial_bytes: 5 };
    assert_eq!(
        error.to_string(),
        "connection closed by the server mid-message (5 bytes of an unfinished message \
         dropped)"
    );
    assert!(actions.contains(&Action::Event(StreamEvent::Disconnected {
        error,
        retry_in: Duration::from_millis(250)
    })));
    // Between messages, a close is a plain one.
    let t1 = t0 + Duration::from_millis(250);
    connect(&mut stream, t1);
    let mut input = OK_HEAD.to_vec();
    input.extend(chunk(b"{\"a\":1}\r\n"));
    stream.handle_input(t1, &input);
    stream.handle_eof(t1);
    let actions = drain(&mut stream, t1);
    assert!(actions.contains(&Action::Event(StreamEvent::Disconnected {
        error: StreamError::Closed,
        retry_in: Duration::from_millis(250)
    })));
}

#[test]
fn disconnect_messages_reconnect_except_codes_6_and_7() {
    for (code, finishes) in [(1, false), (4, false), (6, true), (7, true), (12, false)] {
        let t0 = Instant::now();
        let mut stream = SiteStream::new(config().build().unwrap());
        connect(&mut stream, t0);
        let message = format!(
            "{{\"disconnect\":{{\"code\":{code},\"stream_name\":\"x\",\"reason\":\"why\"}}}}\r\n{{\"after\":1}}\r\n"
        );
        let mut input = OK_HEAD.to_vec();
        input.extend(chunk(message.as_bytes()));
        stream.handle_input(t0, &input);
        let actions = drain(&mut stream, t0);
        // The frame that came in the same read is handed out before the disconnect takes
        // effect; then the connection closes.
        assert_eq!(
            messages(&actions),
            [message.lines().next().unwrap().as_bytes(), b"{\"after\":1}"],
            "code {code}"
        );
        let close = actions.iter().position(|a| *a == Action::Close).unwrap();
        assert!(matches!(
            actions[close - 1],
            Action::Event(StreamEvent::Message(ref m)) if &m[..] == b"{\"after\":1}"
        ));
        assert_eq!(stream.error_count(), u32::from(!finishes));
        match actions.last() {
            Some(Action::Finished(Outcome::Revoked { code: c, .. })) => {
                assert!(finishes);
                assert_eq!(*c, code);
            }
            Some(Action::Wait(_)) => assert!(!finishes, "code {code} must finish"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn retry_limit_gives_up_and_reset_throttles_revives() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(config().retry_limit(Some(3)).build().unwrap());
    let mut now = t0;
    let mut connects = 0;
    loop {
        match stream.poll_action(now) {
            Action::Connect { .. } => {
                connects += 1;
                stream.handle_connect_failed(now, io::ErrorKind::ConnectionRefused);
            }
            Action::Wait(deadline) => now = deadline,
            Action::Finished(outcome) => {
                assert_eq!(
                    outcome,
                    Outcome::GaveUp {
                        attempts: 3,
                        last_error: StreamError::ConnectFailed(io::ErrorKind::ConnectionRefused)
                    }
                );
                break;
            }
            _ => {}
        }
    }
    assert_eq!(connects, 3);
    assert!(!stream.retry_ok());
    assert!(!stream.connection_healthy());
    stream.reset_throttles();
    assert!(stream.retry_ok() && stream.running());
    assert!(matches!(stream.poll_action(now), Action::Connect { .. }));
}

/// Refuses every connection until the stream finishes, jumping to each deadline; returns
/// the waits it announced and where virtual time stands.
fn refuse_until_finished(stream: &mut SiteStream, mut now: Instant) -> (Vec<Duration>, Instant) {
    let mut waits = Vec::new();
    loop {
        for action in drain(stream, now) {
            match action {
                Action::Connect { .. } => {
                    stream.handle_connect_failed(now, io::ErrorKind::ConnectionRefused)
                }
                Action::Event(StreamEvent::Disconnected { retry_in, .. }) => waits.push(retry_in),
                Action::Wait(deadline) => now = deadline,
                Action::Finished(_) => return (waits, now),
                _ => {}
            }
        }
    }
}

#[test]
fn retrying_after_giving_up_waits_the_next_network_delay() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(config().retry_limit(Some(4)).build().unwrap());
    let (waits, now) = refuse_until_finished(&mut stream, t0);
    assert_eq!(waits, [ms(250), ms(500), ms(750)]);
    let refused = StreamError::ConnectFailed(io::ErrorKind::ConnectionRefused);
    assert_eq!(
        stream.outcome(),
        Some(&Outcome::GaveUp {
            attempts: 4,
            last_error: refused.clone()
        })
    );
    let reconnects = stream.stats().reconnects;

    // Later, a supervisor tries again: the next delay of the sequence (1 s), not the
    // first (250 ms), counted from the retry.
    let later = now + Duration::from_secs(7);
    assert!(stream.retry_after_giving_up(later));
    assert!(stream.running() && stream.connection_healthy() && stream.retry_ok());
    assert_eq!(stream.error_count(), 0, "the failure count starts over");
    assert_eq!(stream.stats().reconnects, reconnects + 1);
    assert_eq!(
        drain(&mut stream, later),
        [
            Action::Event(StreamEvent::Disconnected {
                error: refused,
                retry_in: Duration::from_secs(1),
            }),
            Action::Wait(later + Duration::from_secs(1)),
        ]
    );
    assert_eq!(stream.deadline(), Some(later + Duration::from_secs(1)));
    assert_eq!(
        stream.poll_action(later + ms(999)),
        Action::Wait(later + Duration::from_secs(1)),
        "no attempt before the earned wait"
    );
    // Four attempts again before giving up again; the sequence goes on from there.
    let (waits, _) = refuse_until_finished(&mut stream, later);
    assert_eq!(waits, [ms(1250), ms(1500), ms(1750)]);
    assert!(matches!(
        stream.outcome(),
        Some(Outcome::GaveUp { attempts: 4, .. })
    ));
    assert_eq!(stream.stats().attempts, 8);
}

#[test]
fn retrying_after_giving_up_on_420s_waits_the_doubled_rate_limit_wait() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(config().retry_limit(Some(2)).build().unwrap());
    assert_eq!(rate_limited(&mut stream, t0), Duration::from_secs(60));
    let now = t0 + Duration::from_secs(60);
    connect(&mut stream, now);
    stream.handle_input(
        now,
        b"HTTP/1.1 420 Enhance Your Calm

",
    );
    let calm = StreamError::Status {
        status: 420,
        reason: "Enhance Your Calm".into(),
    };
    assert_eq!(
        drain(&mut stream, now).last(),
        Some(&Action::Finished(Outcome::GaveUp {
            attempts: 2,
            last_error: calm.clone(),
        }))
    );
    assert!(stream.retry_after_giving_up(now));
    assert_eq!(
        drain(&mut stream, now),
        [
            Action::Event(StreamEvent::Disconnected {
                error: calm,
                retry_in: Duration::from_secs(120),
            }),
            Action::Wait(now + Duration::from_secs(120)),
        ]
    );
    // The sequence goes on doubling.
    let now = now + Duration::from_secs(120);
    assert_eq!(rate_limited(&mut stream, now), Duration::from_secs(240));
}

#[test]
fn only_a_stream_that_gave_up_can_retry_after_giving_up() {
    let t0 = Instant::now();
    let unchanged = |stream: &mut SiteStream, outcome: Outcome| {
        let before = format!("{stream:?}");
        let stats = stream.stats().clone();
        assert!(!stream.retry_after_giving_up(t0 + Duration::from_secs(60)));
        assert_eq!(format!("{stream:?}"), before);
        assert_eq!(stream.stats(), &stats);
        assert_eq!(
            stream.poll_action(t0 + Duration::from_secs(3600)),
            Action::Finished(outcome)
        );
    };
    // Fatal.
    let mut stream = SiteStream::new(config().build().unwrap());
    connect(&mut stream, t0);
    stream.handle_input(
        t0,
        b"HTTP/1.1 401 Unauthorized

",
    );
    drain(&mut stream, t0);
    let fatal = Outcome::Fatal {
        status: 401,
        reason: "Unauthorized".into(),
    };
    unchanged(&mut stream, fatal);
    // Revoked.
    let mut stream = SiteStream::new(config().build().unwrap());
    connect(&mut stream, t0);
    let mut input = OK_HEAD.to_vec();
    input.extend(chunk(
        b"{\"disconnect\":{\"code\":6,\"reason\":\"revoked\"}}\r\n",
    ));
    stream.handle_input(t0, &input);
    drain(&mut stream, t0);
    let revoked = Outcome::Revoked {
        code: 6,
        reason: "revoked".into(),
    };
    unchanged(&mut stream, revoked);
    // Stopped, after failures that earned a backoff.
    let mut stream = SiteStream::new(config().build().unwrap());
    connect(&mut stream, t0);
    stream.handle_eof(t0);
    drain(&mut stream, t0);
    stream.disconnect();
    drain(&mut stream, t0);
    unchanged(&mut stream, Outcome::Stopped);
    // Not finished at all: backing off.
    let mut stream = SiteStream::new(config().build().unwrap());
    connect(&mut stream, t0);
    stream.handle_eof(t0);
    drain(&mut stream, t0);
    let before = format!("{stream:?}");
    assert!(!stream.retry_after_giving_up(t0));
    assert_eq!(format!("{stream:?}"), before);
}

#[test]
fn disconnect_stops_in_every_state_and_never_connects_again() {
    let t0 = Instant::now();
    // While connecting.
    let mut stream = SiteStream::new(config().build().unwrap());
    assert!(matches!(stream.poll_action(t0), Action::Connect { .. }));
    stream.disconnect();
    assert_eq!(
        drain(&mut stream, t0),
        [Action::Close, Action::Finished(Outcome::Stopped)]
    );
    stream.handle_connected(t0, 1);
    assert_eq!(drain(&mut stream, t0), [Action::Finished(Outcome::Stopped)]);
    // While backing off.
    let mut stream = SiteStream::new(config().build().unwrap());
    let _ = stream.poll_action(t0);
    stream.handle_connect_failed(t0, io::ErrorKind::TimedOut);
    drain(&mut stream, t0);
    stream.disconnect();
    assert!(stream.disconnect_issued());
    let later = t0 + Duration::from_secs(60);
    assert_eq!(
        drain(&mut stream, later),
        [Action::Finished(Outcome::Stopped)]
    );
    // While streaming.
    let mut stream = SiteStream::new(config().build().unwrap());
    connect(&mut stream, t0);
    stream.handle_input(t0, OK_HEAD);
    drain(&mut stream, t0);
    stream.disconnect();
    assert_eq!(
        drain(&mut stream, t0),
        [Action::Close, Action::Finished(Outcome::Stopped)]
    );
    assert!(
        stream.connection_healthy(),
        "a requested stop is not a failure"
    );
}

#[test]
fn connect_timeout_is_a_network_error() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(
        config()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    );
    assert!(matches!(stream.poll_action(t0), Action::Connect { .. }));
    assert_eq!(
        stream.poll_action(t0),
        Action::Wait(t0 + Duration::from_secs(5))
    );
    let actions = drain(&mut stream, t0 + Duration::from_secs(5));
    assert_eq!(actions[0], Action::Close);
    assert!(matches!(
        actions[1],
        Action::Event(StreamEvent::Disconnected {
            error: StreamError::ConnectTimeout(_),
            ..
        })
    ));
}

#[test]
fn oversized_frame_drops_the_connection() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(config().max_message_bytes(8).build().unwrap());
    connect(&mut stream, t0);
    let mut input = OK_HEAD.to_vec();
    input.extend(chunk(b"12345678\r\n123456789"));
    stream.handle_input(t0, &input);
    let actions = drain(&mut stream, t0);
    assert_eq!(messages(&actions), [&b"12345678"[..]]);
    assert!(matches!(
        actions[actions.len() - 2],
        Action::Event(StreamEvent::Disconnected {
            error: StreamError::Read(ReadError::Frame(_)),
            ..
        })
    ));
}

#[test]
fn squared_policy_waits_retry_time_then_squares_it() {
    let t0 = Instant::now();
    let policy = BackoffPolicy::Squared(Default::default());
    let mut stream = SiteStream::new(
        config()
            .backoff(policy)
            .framing(Framing::Length)
            .build()
            .unwrap(),
    );
    assert_eq!(stream.retry_limit(), Some(10));
    let mut now = t0;
    let mut waits = Vec::new();
    while waits.len() < 4 {
        match stream.poll_action(now) {
            Action::Connect { .. } => {
                stream.handle_connect_failed(now, io::ErrorKind::ConnectionReset)
            }
            Action::Event(StreamEvent::Disconnected { retry_in, .. }) => {
                waits.push(retry_in.as_secs())
            }
            Action::Wait(deadline) => now = deadline,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(waits, [2, 4, 16, 256]);
}

/// Connects, answers `200` with `body` (chunked), closes, and returns the wait the stream
/// chose (and the error it reported).
fn ok_then_close(stream: &mut SiteStream, now: Instant, body: &[u8]) -> (StreamError, Duration) {
    connect(stream, now);
    let mut input = OK_HEAD.to_vec();
    if !body.is_empty() {
        input.extend(chunk(body));
    }
    stream.handle_input(now, &input);
    stream.handle_eof(now);
    let actions = drain(stream, now);
    match actions.iter().find_map(|a| match a {
        Action::Event(StreamEvent::Disconnected { error, retry_in }) => {
            Some((error.clone(), *retry_in))
        }
        _ => None,
    }) {
        Some(found) => found,
        None => panic!("no Disconnected in {actions:?}"),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_200_that_drops_at_once_is_a_failed_network_attempt() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(config().retry_limit(Some(5)).build().unwrap());
    let mut now = t0;
    for k in 1..=4u32 {
        let (error, wait) = ok_then_close(&mut stream, now, b"");
        assert_eq!(error, StreamError::Closed);
        assert_eq!(wait, ms(250) * k, "the linear sequence goes on");
        assert_eq!(stream.error_count(), k, "it counts toward the retry limit");
        now += wait;
    }
    // The fifth one reaches the limit.
    connect(&mut stream, now);
    stream.handle_input(now, OK_HEAD);
    stream.handle_eof(now);
    let actions = drain(&mut stream, now);
    assert_eq!(
        actions.last(),
        Some(&Action::Finished(Outcome::GaveUp {
            attempts: 5,
            last_error: StreamError::Closed
        }))
    );
}

#[test]
fn keep_alives_control_free_disconnects_and_stream_errors_earn_no_trust() {
    let t0 = Instant::now();
    let disconnect = b"{\"disconnect\":{\"code\":2,\"stream_name\":\"s\",\"reason\":\"dup\"}}\r\n";
    let mut stream = SiteStream::new(config().max_message_bytes(16).build().unwrap());
    let mut now = t0;
    let mut waits = Vec::new();
    for body in [
        &b"\r\n\r\n"[..],
        disconnect,
        b"0123456789abcdefXYZ\r\n", // over the 16-byte limit
        b"\r\n",
    ] {
        let (_, wait) = ok_then_close(&mut stream, now, body);
        waits.push(wait);
        now += wait;
    }
    assert_eq!(waits, [ms(250), ms(500), ms(750), ms(1000)]);
    assert_eq!(stream.error_count(), 4);
}

#[test]
fn a_real_message_earns_trust_at_once() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(config().build().unwrap());
    let mut now = t0;
    for _ in 0..3 {
        now += ok_then_close(&mut stream, now, b"").1;
    }
    assert_eq!(stream.error_count(), 3);
    connect(&mut stream, now);
    let mut input = OK_HEAD.to_vec();
    input.extend(chunk(b"\r\n"));
    stream.handle_input(now, &input);
    drain(&mut stream, now);
    assert!(!stream.is_trusted(), "a keep-alive is not enough");
    assert_eq!(stream.error_count(), 3);
    stream.handle_input(now, &chunk(b"{\"a\":1}\r\n"));
    drain(&mut stream, now);
    assert!(stream.is_trusted());
    assert_eq!(
        stream.error_count(),
        0,
        "reset the moment the message is out"
    );
    stream.handle_eof(now);
    let actions = drain(&mut stream, now);
    assert!(actions.contains(&Action::Event(StreamEvent::Disconnected {
        error: StreamError::Closed,
        retry_in: ms(250)
    })));
    assert_eq!(
        stream.error_count(),
        0,
        "a trusted connection's end is no failed attempt"
    );
}

#[test]
fn staying_up_for_trust_after_earns_trust_exactly_then() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(config().build().unwrap());
    let mut now = t0;
    for _ in 0..2 {
        now += ok_then_close(&mut stream, now, b"").1;
    }
    connect(&mut stream, now);
    stream.handle_input(now, OK_HEAD);
    let trust_at = now + Duration::from_secs(30);
    assert_eq!(
        drain(&mut stream, now).last(),
        Some(&Action::Wait(trust_at))
    );
    assert_eq!(stream.deadline(), Some(trust_at));
    // Keep-alives keep it up; just before the period, it is not trusted yet.
    let before = trust_at - ms(1);
    stream.handle_input(before, &chunk(b"\r\n"));
    assert_eq!(
        drain(&mut stream, before).last(),
        Some(&Action::Wait(trust_at))
    );
    stream.handle_timeout(before);
    assert_eq!((stream.is_trusted(), stream.error_count()), (false, 2));
    // At the deadline: trusted, the count is 0, and the next deadline is the stall.
    assert_eq!(
        drain(&mut stream, trust_at),
        [Action::Wait(before + Duration::from_secs(90))]
    );
    assert_eq!((stream.is_trusted(), stream.error_count()), (true, 0));
    let later = trust_at + Duration::from_secs(1);
    stream.handle_eof(later);
    let actions = drain(&mut stream, later);
    assert!(actions.contains(&Action::Event(StreamEvent::Disconnected {
        error: StreamError::Closed,
        retry_in: ms(250)
    })));
}

#[test]
fn the_trust_period_is_configurable() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(
        config()
            .trust_after(Duration::from_secs(5))
            .rate_limit_reset_after(Duration::from_secs(5))
            .build()
            .unwrap(),
    );
    let t1 = t0 + ok_then_close(&mut stream, t0, b"").1;
    connect(&mut stream, t1);
    stream.handle_input(t1, OK_HEAD);
    assert_eq!(
        drain(&mut stream, t1).last(),
        Some(&Action::Wait(t1 + Duration::from_secs(5)))
    );
    drain(&mut stream, t1 + Duration::from_secs(5));
    assert!(stream.is_trusted());
}

fn rate_limited(stream: &mut SiteStream, now: Instant) -> Duration {
    connect(stream, now);
    stream.handle_input(
        now,
        b"HTTP/1.1 420 Enhance Your Calm\r\nContent-Length: 0\r\n\r\n",
    );
    match drain(stream, now).as_slice() {
        [.., Action::Event(StreamEvent::Disconnected { retry_in, .. }), Action::Wait(_)] => {
            *retry_in
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_rate_limit_sequence_survives_a_200_and_trust() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(config().build().unwrap());
    let mut now = t0;
    assert_eq!(rate_limited(&mut stream, now), Duration::from_secs(60));
    now += Duration::from_secs(60);
    // 200, then a drop: a network failure; the 420 sequence goes on.
    let (_, wait) = ok_then_close(&mut stream, now, b"");
    assert_eq!(wait, ms(250));
    now += wait;
    assert_eq!(rate_limited(&mut stream, now), Duration::from_secs(120));
    now += Duration::from_secs(120);
    // Even a trusted connection (a real message, then 5 minutes up) keeps it.
    connect(&mut stream, now);
    let mut input = OK_HEAD.to_vec();
    input.extend(chunk(b"{\"a\":1}\r\n"));
    stream.handle_input(now, &input);
    for _ in 0..10 {
        drain(&mut stream, now);
        now += Duration::from_secs(30);
        stream.handle_input(now, &chunk(b"\r\n"));
    }
    assert!(stream.is_trusted());
    assert_eq!(stream.error_count(), 0);
    stream.handle_eof(now);
    let wait = ok_after_eof(&mut stream, now);
    now += wait;
    assert_eq!(rate_limited(&mut stream, now), Duration::from_secs(240));
}

fn ok_after_eof(stream: &mut SiteStream, now: Instant) -> Duration {
    match drain(stream, now).as_slice() {
        [.., Action::Event(StreamEvent::Disconnected { retry_in, .. }), Action::Wait(_)] => {
            *retry_in
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ten_minutes_up_forget_the_rate_limit() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(config().build().unwrap());
    let mut now = t0;
    assert_eq!(rate_limited(&mut stream, now), Duration::from_secs(60));
    now += Duration::from_secs(60);
    assert_eq!(rate_limited(&mut stream, now), Duration::from_secs(120));
    now += Duration::from_secs(120);
    connect(&mut stream, now);
    stream.handle_input(now, OK_HEAD);
    let head_at = now;
    let forget_at = head_at + Duration::from_secs(600);
    // Keep-alives every 30 s; the timers fire on the way: trust at 30 s, the rate limit
    // forgotten at exactly 10 minutes.
    let mut deadlines = Vec::new();
    while now < forget_at + Duration::from_secs(30) {
        if let Some(Action::Wait(d)) = drain(&mut stream, now).last() {
            if d.duration_since(head_at) != Duration::from_secs(90) + now.duration_since(head_at) {
                deadlines.push(d.duration_since(head_at));
            }
        }
        now += Duration::from_secs(30);
        stream.handle_input(now, &chunk(b"\r\n"));
    }
    deadlines.dedup();
    assert_eq!(
        deadlines,
        [Duration::from_secs(30), Duration::from_secs(600)]
    );
    stream.handle_eof(now);
    now += ok_after_eof(&mut stream, now);
    assert_eq!(rate_limited(&mut stream, now), Duration::from_secs(60));
    // reset_throttles still clears everything at once.
    now += Duration::from_secs(60);
    assert_eq!(rate_limited(&mut stream, now), Duration::from_secs(120));
    stream.reset_throttles();
    assert_eq!(stream.error_count(), 0);
    assert_eq!(rate_limited(&mut stream, now), Duration::from_secs(60));
}

#[test]
fn frames_after_a_disconnect_in_the_same_read_are_delivered_but_earn_nothing() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(config().build().unwrap());
    let t1 = t0 + ok_then_close(&mut stream, t0, b"").1;
    connect(&mut stream, t1);
    let mut input = OK_HEAD.to_vec();
    input.extend(chunk(
        b"{\"disconnect\":{\"code\":12,\"reason\":\"shed\"}}\r\n\
          {\"control\":{\"control_uri\":\"/1.1/site/c/1_2_x\"}}\r\n{\"a\":1}\r\n\r\n",
    ));
    stream.handle_input(t1, &input);
    let actions = drain(&mut stream, t1);
    assert_eq!(messages(&actions).len(), 3, "{actions:?}");
    assert!(actions.contains(&Action::Event(StreamEvent::KeepAlive)));
    assert_eq!(
        stream.stream_id(),
        None,
        "a control URI after a disconnect is not kept"
    );
    assert!(actions.contains(&Action::Event(StreamEvent::Disconnected {
        error: StreamError::DisconnectMessage {
            code: 12,
            reason: "shed".into()
        },
        retry_in: ms(500)
    })));
    assert_eq!(
        stream.error_count(),
        2,
        "no trust from frames after the disconnect"
    );
    // Nothing more is read from that connection.
    stream.handle_input(t1, &chunk(b"{\"b\":2}\r\n"));
    assert!(messages(&drain(&mut stream, t1)).is_empty());
}

#[test]
fn bytes_after_the_end_of_the_body_are_a_stream_error() {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(config().build().unwrap());
    connect(&mut stream, t0);
    let mut input = OK_HEAD.to_vec();
    input.extend(chunk(b"{\"a\":1}\r\n"));
    input.extend_from_slice(b"0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n");
    stream.handle_input(t0, &input);
    let actions = drain(&mut stream, t0);
    assert_eq!(messages(&actions), [&b"{\"a\":1}"[..]]);
    let error = StreamError::Read(ReadError::AfterBody { first_byte: b'H' });
    assert_eq!(
        error.to_string(),
        "data after the end of the response body (its last chunk or Content-Length), \
         starting with byte 'H'"
    );
    assert!(actions.contains(&Action::Event(StreamEvent::Disconnected {
        error,
        retry_in: ms(250)
    })));
    // Past Content-Length, in a later read.
    let t1 = t0 + ms(250);
    connect(&mut stream, t1);
    stream.handle_input(
        t1,
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"a\":1}\r\n",
    );
    drain(&mut stream, t1);
    stream.handle_input(t1, b"x");
    let actions = drain(&mut stream, t1);
    assert!(
        matches!(
            actions[1],
            Action::Event(StreamEvent::Disconnected {
                error: StreamError::Read(ReadError::AfterBody { first_byte: b'x' }),
                ..
            })
        ),
        "{actions:?}"
    );
}

#[test]
fn server_text_is_cut_where_it_is_taken_in() {
    let t0 = Instant::now();
    let long = "why ".repeat(1000);
    let mut stream = SiteStream::new(config().build().unwrap());
    connect(&mut stream, t0);
    let mut input = OK_HEAD.to_vec();
    input.extend(chunk(
        format!("{{\"disconnect\":{{\"code\":6,\"reason\":\"{long}\"}}}}\r\n").as_bytes(),
    ));
    stream.handle_input(t0, &input);
    let actions = drain(&mut stream, t0);
    let Some(Action::Finished(Outcome::Revoked { reason, .. })) = actions.last() else {
        panic!("{actions:?}")
    };
    assert_eq!(reason.chars().count(), MAX_SERVER_TEXT_CHARS);
    let Some(StreamError::DisconnectMessage { reason, .. }) = &stream.stats().last_error else {
        panic!()
    };
    assert_eq!(reason.chars().count(), MAX_SERVER_TEXT_CHARS);

    let mut stream = SiteStream::new(config().build().unwrap());
    connect(&mut stream, t0);
    stream.handle_input(t0, format!("HTTP/1.1 503 {long}\r\n\r\n").as_bytes());
    let actions = drain(&mut stream, t0);
    let Action::Event(StreamEvent::Connected { reason, .. }) = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(reason.chars().count(), MAX_SERVER_TEXT_CHARS);
    assert!(matches!(
        &stream.stats().last_error,
        Some(StreamError::Status { reason, .. }) if reason.chars().count() == MAX_SERVER_TEXT_CHARS
    ));
}

#[test]
fn streams_without_a_seed_sign_with_different_nonces() {
    let nonce = |config: Config| {
        let mut stream = SiteStream::new(config);
        let request = connect(&mut stream, Instant::now());
        let text = String::from_utf8(request.to_vec()).unwrap();
        text.split("oauth_nonce=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned()
    };
    let default = config().build().unwrap();
    assert_eq!(default.rng_seed(), None);
    assert_ne!(nonce(default.clone()), nonce(default));
    // An explicit seed keeps requests reproducible.
    let seeded = config().rng_seed(42).build().unwrap();
    assert_eq!(nonce(seeded.clone()), nonce(seeded));
}

#[test]
fn later_never_overflows() {
    let t0 = Instant::now();
    assert_eq!(
        later(t0, Duration::from_secs(5)),
        t0 + Duration::from_secs(5)
    );
    assert_eq!(later(t0, Duration::ZERO), t0);
    // No panic, and as far in the future as the platform allows.
    let far = later(t0, Duration::MAX);
    assert!(far > t0 + Duration::from_secs(1_000_000_000));
    assert_eq!(
        later(far, Duration::MAX),
        far.checked_add(Duration::ZERO).unwrap()
    );
}

/// The `oauth_signature` of a request, as sent (percent-encoded) and decoded.
fn signature_of(request: &[u8]) -> [String; 2] {
    let text = std::str::from_utf8(request).unwrap();
    let sent = text
        .split("oauth_signature=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    let decoded = sent
        .replace("%2B", "+")
        .replace("%2F", "/")
        .replace("%3D", "=");
    [sent.to_owned(), decoded]
}

fn assert_hidden(debug: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!debug.contains(secret), "{secret:?} shows in:\n{debug}");
    }
}

#[test]
fn debug_shows_no_secret_and_no_signature_in_any_state() {
    const CONSUMER_SECRET: &str = "debug-consumer-secret-Xq7";
    const TOKEN_SECRET: &str = "debug-token-secret-Zr4";
    let credentials = Credentials::new("debug-ck", CONSUMER_SECRET, "debug-tk", TOKEN_SECRET);
    let build = |url: &str| {
        Config::builder([3, 1, 2], credentials.clone())
            .url(url)
            .build()
            .unwrap()
    };
    let t0 = Instant::now();

    // Plain HTTP: the request, with its signature, is queued, then kept as last_request.
    let mut stream = SiteStream::new(build("http://127.0.0.1:8080/1.1/site.json"));
    assert!(matches!(stream.poll_action(t0), Action::Connect { .. }));
    stream.handle_connected(t0, 1_700_000_000);
    let queued = format!("{stream:?}{stream:#?}");
    let action = stream.poll_action(t0);
    let Action::Transmit(request) = &action else {
        panic!("{action:?}")
    };
    let [sent, decoded] = signature_of(request);
    let secrets = [
        CONSUMER_SECRET,
        TOKEN_SECRET,
        &sent,
        &decoded,
        "oauth_signature",
    ];
    assert_hidden(&queued, &secrets);
    assert!(
        queued.contains(&format!("Transmit(<{} bytes>)", request.len())),
        "{queued}"
    );
    assert_hidden(&format!("{action:?}{action:#?}"), &secrets);
    assert_eq!(
        format!("{action:?}"),
        format!("Transmit(<{} bytes>)", request.len())
    );
    let after = format!("{stream:?}{stream:#?}");
    assert_hidden(&after, &secrets);
    assert!(after.contains("signed: redacted"), "{after}");
    assert_hidden(
        &format!("{:?}{:#?}", stream.config(), stream.config()),
        &secrets,
    );
    assert_hidden(&format!("{credentials:?}"), &secrets);

    // Streaming, then failed and backing off: the last request stays hidden.
    let mut input = OK_HEAD.to_vec();
    input.extend(chunk(b"{\"a\":1}\r\n"));
    stream.handle_input(t0, &input);
    let actions = drain(&mut stream, t0);
    assert_hidden(&format!("{actions:?}{stream:?}"), &secrets);
    stream.handle_eof(t0);
    let actions = drain(&mut stream, t0);
    assert_hidden(&format!("{actions:?}{stream:?}"), &secrets);

    // The other actions print as before.
    assert_eq!(format!("{:?}", Action::Close), "Close");
    assert_eq!(
        format!("{:?}", Action::Event(StreamEvent::KeepAlive)),
        "Event(KeepAlive)"
    );

    // TLS: the plaintext request waits inside the TLS session.
    #[cfg(feature = "tls")]
    {
        let mut stream = SiteStream::new(build("https://127.0.0.1:8443/1.1/site.json"));
        assert!(matches!(stream.poll_action(t0), Action::Connect { .. }));
        stream.handle_connected(t0, 1_700_000_000);
        let request = stream.last_request().unwrap().clone();
        let [sent, decoded] = signature_of(&request);
        let debug = format!("{stream:?}{stream:#?}");
        assert_hidden(
            &debug,
            &[
                CONSUMER_SECRET,
                TOKEN_SECRET,
                &sent,
                &decoded,
                "oauth_signature",
            ],
        );
    }
}

/// What the state machine did with one message on a fresh connection: the control stream id
/// it kept, and whether it then reconnects (a disconnect message) — and what
/// [`Message::from_slice`](crate::message::Message::from_slice) calls the message.
fn both_paths(message: &str) -> ((Option<String>, bool), Option<&'static str>) {
    let t0 = Instant::now();
    let mut stream = SiteStream::new(config().build().unwrap());
    connect(&mut stream, t0);
    let mut input = OK_HEAD.to_vec();
    input.extend(chunk(format!("{message}\r\n").as_bytes()));
    stream.handle_input(t0, &input);
    let actions = drain(&mut stream, t0);
    let reconnects = actions.iter().any(|a| matches!(a, Action::Close));
    let kind = crate::message::Message::from_slice(message.as_bytes())
        .ok()
        .map(|m| m.kind());
    ((stream.stream_id().map(str::to_owned), reconnects), kind)
}

/// Every order of `members` (JSON `"key":value` strings) as an object.
fn objects_in_every_order(members: &[&str]) -> Vec<String> {
    if members.len() <= 1 {
        return vec![format!("{{{}}}", members.join(","))];
    }
    let mut out = Vec::new();
    for (i, first) in members.iter().enumerate() {
        let mut rest = members.to_vec();
        rest.remove(i);
        for tail in objects_in_every_order(&rest) {
            let inner = tail
                .strip_prefix('{')
                .and_then(|t| t.strip_suffix('}'))
                .unwrap();
            out.push(format!("{{{first},{inner}}}"));
        }
    }
    out
}

#[test]
fn the_state_machine_and_message_from_slice_classify_alike_in_any_key_order() {
    let control = r#""control":{"control_uri":"/1.1/site/c/1_2_abc"}"#;
    let disconnect = r#""disconnect":{"code":4,"stream_name":"s","reason":"slow"}"#;
    let cases: [(&[&str], Option<&str>, bool, &str); 6] = [
        (
            &[control, r#""x":1"#, r#""y":[1]"#],
            Some("1_2_abc"),
            false,
            "control",
        ),
        (
            &[disconnect, r#""x":{"control":1}"#],
            None,
            true,
            "disconnect",
        ),
        // An envelope wins over control and disconnect keys beside it.
        (
            &[r#""for_user":12"#, r#""message":{"text":"hi"}"#, control],
            None,
            false,
            "for_user/unknown",
        ),
        (
            &[r#""for_user":"12""#, r#""message":{"id":1}"#, disconnect],
            None,
            false,
            "for_user/unknown",
        ),
        // A control stream id that could not go in a control path is not kept.
        (
            &[
                r#""control":{"control_uri":"/1.1/site/c/.."}"#,
                r#""z":null"#,
            ],
            None,
            false,
            "control",
        ),
        // Keys that only look like signals, nested or in strings.
        (
            &[
                r#""text":"\"control\" \"disconnect\"""#,
                r#""user":{"disconnect":{"code":6}}"#,
            ],
            None,
            false,
            "unknown",
        ),
    ];
    for (members, stream_id, reconnects, kind) in cases {
        for message in objects_in_every_order(members) {
            let ((id, closed), seen_kind) = both_paths(&message);
            let seen_kind = seen_kind.expect("valid JSON");
            assert_eq!(
                (id.as_deref(), closed, seen_kind.split('/').next()),
                (stream_id, reconnects, kind.split('/').next()),
                "{message}"
            );
            // The one classifier agrees with the typed message whatever the key order.
            let typed = crate::message::Message::from_slice(message.as_bytes()).unwrap();
            let signal = crate::message::stream_signal(message.as_bytes());
            assert_eq!(
                match signal {
                    Some(crate::message::StreamSignal::Control(c)) =>
                        Some(("control", c.stream_id().map(str::to_owned))),
                    Some(crate::message::StreamSignal::Disconnect(_)) => Some(("disconnect", None)),
                    _ => None,
                },
                match typed {
                    crate::message::Message::Control(c) =>
                        Some(("control", c.stream_id().map(str::to_owned))),
                    crate::message::Message::Disconnect(_) => Some(("disconnect", None)),
                    _ => None,
                },
                "{message}"
            );
        }
    }
    // The v2 operational disconnect, with `errors` anywhere.
    let errors = r#""errors":[{"title":"operational-disconnect","disconnect_type":"UpstreamOperationalDisconnect"}]"#;
    for message in objects_in_every_order(&[r#""data":{"id":"1"}"#, errors]) {
        assert_eq!(both_paths(&message).0, (None, true), "{message}");
    }
}

#[test]
fn outcomes_are_errors_with_their_causes_as_source() {
    use std::error::Error as _;
    let io = Outcome::driver_io(
        "creating a poller",
        io::Error::new(io::ErrorKind::OutOfMemory, "no fds"),
    );
    assert_eq!(
        io.to_string(),
        "the driver failed creating a poller: no fds"
    );
    assert_eq!(
        io.source().map(|e| e.to_string()).as_deref(),
        Some("no fds")
    );
    assert_eq!(io.clone(), io, "clones compare equal");
    assert_ne!(
        io,
        Outcome::driver_io("creating a poller", io::Error::other("no fds"))
    );
    let panicked = Outcome::DriverPanicked {
        detail: "boom".into(),
    };
    assert_eq!(panicked.to_string(), "the driver panicked: boom");
    assert!(panicked.source().is_none() && panicked.is_failure());
    let read = StreamError::Read(ReadError::AfterBody { first_byte: b'x' });
    let gave_up = Outcome::GaveUp {
        attempts: 3,
        last_error: read.clone(),
    };
    let source = gave_up.source().expect("the last error");
    assert_eq!(source.to_string(), read.to_string());
    assert!(
        source.source().is_some(),
        "the read error under the stream error"
    );
    assert!(Outcome::Stopped.source().is_none() && !Outcome::Stopped.is_failure());
}
