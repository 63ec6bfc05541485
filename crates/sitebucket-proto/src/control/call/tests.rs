#![allow(clippy::disallowed_methods)] // tests use Instant::now() only as a base for virtual time
use std::io::Write as _;

use proptest::prelude::*;

use super::*;
use crate::control::{decode_info, FriendsPage, StreamInfo, MAX_CONTROL_BODY};

const SFERIK_INFO: &[u8] =
    include_bytes!("../../../tests/fixtures/real/sferik__twitter/site_stream_info.json");
const SFERIK_PAGE_1: &[u8] =
    include_bytes!("../../../tests/fixtures/real/sferik__twitter/site_stream_friends_ids.json");

fn endpoint() -> Endpoint {
    Endpoint::parse("http://127.0.0.1:8080/1.1/site.json").expect("valid URL")
}

fn credentials() -> Credentials {
    Credentials::new("ck", "consumer-secret", "tk", "token-secret")
}

fn call(request: ControlRequest) -> ControlCall {
    ControlCall::new(&endpoint(), &credentials(), Some("7_1_sb"), request)
}

fn chunked(body: &[u8], piece: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in body.chunks(piece.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn ok_chunked(body: &[u8]) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    out.extend(chunked(body, 40));
    out
}

fn ok_sized(body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body).expect("in memory");
    encoder.finish().expect("in memory")
}

/// Starts `call`: the connect, then the request bytes. Returns the request and the deadline.
fn start(call: &mut ControlCall, now: Instant) -> (Bytes, Instant) {
    assert_eq!(
        call.poll_action(now),
        ControlAction::Connect {
            host: "127.0.0.1".into(),
            port: 8080,
            tls: false
        }
    );
    let deadline = match call.poll_action(now) {
        ControlAction::Wait(deadline) => deadline,
        other => panic!("expected a wait for the connect, got {other:?}"),
    };
    assert_eq!(deadline, now + DEFAULT_CONTROL_TIMEOUT);
    call.handle_connected(now, 1_700_000_000);
    let ControlAction::Transmit(request) = call.poll_action(now) else {
        panic!("the request goes out first")
    };
    assert_eq!(call.poll_action(now), ControlAction::Wait(deadline));
    (request, deadline)
}

/// Feeds `response` in the pieces given, then EOF if `eof`; drains and returns the result,
/// checking that the connection is closed exactly once, before the result.
fn respond(
    mut call: ControlCall,
    pieces: &[&[u8]],
    eof: bool,
) -> Result<ControlResponse, ControlError> {
    let now = Instant::now();
    start(&mut call, now);
    let mut closed = 0;
    let mut drain = |call: &mut ControlCall| loop {
        match call.poll_action(now) {
            ControlAction::Close => closed += 1,
            ControlAction::Wait(deadline) => {
                assert!(deadline > now);
                return None;
            }
            ControlAction::Finished(result) => return Some(result),
            other => panic!("unexpected {other:?}"),
        }
    };
    for piece in pieces {
        call.handle_input(now, piece);
        if let Some(result) = drain(&mut call) {
            assert_eq!(closed, 1, "closed once before finishing");
            assert_eq!(
                call.poll_action(now),
                ControlAction::Finished(result.clone())
            );
            return result;
        }
    }
    if eof {
        call.handle_eof(now);
    }
    let result = drain(&mut call).expect("finished after the whole response");
    assert_eq!(closed, 1, "closed once before finishing");
    result
}

fn whole(call: ControlCall, response: &[u8]) -> Result<ControlResponse, ControlError> {
    respond(call, &[response], false)
}

fn info_of(result: Result<ControlResponse, ControlError>) -> StreamInfo {
    match result {
        Ok(ControlResponse::Info(info)) => info,
        other => panic!("expected info, got {other:?}"),
    }
}

#[test]
fn without_a_stream_id_nothing_is_sent() {
    let mut call = ControlCall::new(
        &endpoint(),
        &credentials(),
        None,
        ControlRequest::add_users(&[1]).unwrap(),
    );
    let now = Instant::now();
    assert_eq!(
        call.poll_action(now),
        ControlAction::Finished(Err(ControlError::NotAnnounced))
    );
    assert_eq!(
        call.poll_action(now),
        ControlAction::Finished(Err(ControlError::NotAnnounced))
    );
    assert_eq!(call.result(), Some(&Err(ControlError::NotAnnounced)));
    // Inputs after the end change nothing.
    call.handle_connected(now, 1);
    call.handle_input(now, b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(
        call.poll_action(now),
        ControlAction::Finished(Err(ControlError::NotAnnounced))
    );

    let mut bad = ControlCall::new(
        &endpoint(),
        &credentials(),
        Some("../x"),
        ControlRequest::info(),
    );
    assert_eq!(
        bad.poll_action(now),
        ControlAction::Finished(Err(ControlError::InvalidStreamId {
            stream_id: "../x".into()
        }))
    );
}

#[test]
fn an_add_sends_the_signed_request_and_finishes_on_200() {
    let request = ControlRequest::add_users(&[14, 15]).unwrap();
    let mut c = call(request.clone()).with_nonce_seed(99);
    let now = Instant::now();
    let (sent, _) = start(&mut c, now);
    let nonce = make_nonce(&mut ChaCha8Rng::seed_from_u64(99));
    let expected = request
        .signed(&endpoint(), "7_1_sb", &credentials(), 1_700_000_000, &nonce)
        .unwrap();
    assert_eq!(sent, expected);
    let text = String::from_utf8_lossy(&sent);
    assert!(!text.contains("secret"), "no secret on the wire");
    c.handle_input(now, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(c.poll_action(now), ControlAction::Close);
    assert_eq!(
        c.poll_action(now),
        ControlAction::Finished(Ok(ControlResponse::Done))
    );
    assert_eq!(c.deadline(), None);
    // A 200 with a body is fine too; the body of an add is not read as anything.
    assert_eq!(
        whole(
            call(ControlRequest::remove_users(&[3]).unwrap()),
            &ok_sized(b"{\"whatever\":1}")
        ),
        Ok(ControlResponse::Done)
    );
}

#[test]
fn nonce_seeds_give_different_nonces() {
    let now = Instant::now();
    let mut a = call(ControlRequest::info()).with_nonce_seed(1);
    let mut b = call(ControlRequest::info()).with_nonce_seed(2);
    assert_ne!(start(&mut a, now).0, start(&mut b, now).0);
    // The same explicit seed signs the same request; without one, each call draws its own
    // from the OS.
    let mut c = call(ControlRequest::info()).with_nonce_seed(1);
    let mut d = call(ControlRequest::info()).with_nonce_seed(1);
    assert_eq!(start(&mut c, now).0, start(&mut d, now).0);
    let mut e = call(ControlRequest::info());
    let mut f = call(ControlRequest::info());
    assert_ne!(start(&mut e, now).0, start(&mut f, now).0);
    // For a stream's config: its seed when it sets one, the OS otherwise.
    let config = |seed: Option<u64>| {
        Config::builder([1], credentials())
            .url("http://127.0.0.1:8080/1.1/site.json")
            .rng_seed(seed)
            .build()
            .unwrap()
    };
    let request = |config: &Config| {
        let mut call = ControlCall::for_stream(config, Some("7_1_sb"), ControlRequest::info());
        start(&mut call, now).0
    };
    assert_eq!(request(&config(Some(3))), request(&config(Some(3))));
    assert_ne!(request(&config(None)), request(&config(None)));
}

#[test]
fn info_decodes_the_real_payload_in_every_body_shape() {
    let expected = decode_info(SFERIK_INFO).unwrap();
    let shapes = [
        ok_chunked(SFERIK_INFO),
        ok_sized(SFERIK_INFO),
        {
            let mut until_eof = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
            until_eof.extend_from_slice(SFERIK_INFO);
            until_eof
        },
        {
            let body = gzip(SFERIK_INFO);
            let mut gz =
                b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
                    .to_vec();
            gz.extend(chunked(&body, 7));
            gz
        },
    ];
    for (i, response) in shapes.iter().enumerate() {
        let until_eof = i == 2;
        let got = respond(call(ControlRequest::info()), &[response], until_eof);
        assert_eq!(info_of(got), expected, "shape {i}");
    }
}

#[test]
fn friends_pages_keep_big_cursors() {
    let got = whole(
        call(ControlRequest::friends_ids(119476949, -1)),
        &ok_chunked(SFERIK_PAGE_1),
    );
    let Ok(ControlResponse::Friends(FriendsPage {
        user,
        friends,
        next_cursor,
        ..
    })) = got
    else {
        panic!("{got:?}")
    };
    assert_eq!(user.id, 119476949);
    assert_eq!(friends, [795649, 819797, 1401881]);
    assert_eq!(next_cursor, 1305102810874389703);
}

#[test]
fn statuses_become_errors_that_say_what_went_wrong() {
    let not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}";
    assert_eq!(
        whole(call(ControlRequest::info()), not_found),
        Err(ControlError::UnknownStream {
            stream_id: "7_1_sb".into()
        })
    );
    let body = br#"{"errors":[{"message":"Over capacity","code":130}]}"#;
    let mut busy = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    busy.extend_from_slice(body);
    assert_eq!(
        whole(call(ControlRequest::add_users(&[1]).unwrap()), &busy),
        Err(ControlError::Http {
            status: 503,
            reason: "Service Unavailable".into(),
            detail: "Over capacity".into()
        })
    );
    // A broken gzip body on an error status still reports the status.
    let broken =
        b"HTTP/1.1 401 Unauthorized\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc";
    assert_eq!(
        whole(call(ControlRequest::info()), broken),
        Err(ControlError::Http {
            status: 401,
            reason: "Unauthorized".into(),
            detail: String::new()
        })
    );
}

#[test]
fn bad_responses_are_read_errors() {
    assert!(matches!(
        whole(
            call(ControlRequest::info()),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        ),
        Err(ControlError::Read(ReadError::Chunked(_)))
    ));
    assert!(matches!(
        whole(call(ControlRequest::info()), b"NOT HTTP\r\n\r\n"),
        Err(ControlError::Read(ReadError::Head(_)))
    ));
    assert!(matches!(
        whole(
            call(ControlRequest::info()),
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc"
        ),
        Err(ControlError::Read(ReadError::Decode(_)))
    ));
    assert!(matches!(
        whole(call(ControlRequest::info()), &ok_sized(b"[1,2]")),
        Err(ControlError::Decode(_))
    ));
    // A gzip body cut short is not a complete answer.
    let body = gzip(SFERIK_INFO);
    let mut cut = format!(
        "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        body.len() - 4
    )
    .into_bytes();
    cut.extend_from_slice(&body[..body.len() - 4]);
    assert_eq!(
        whole(call(ControlRequest::info()), &cut),
        Err(ControlError::Closed)
    );
}

#[test]
fn an_early_close_is_closed_and_bodies_are_bounded() {
    let response = ok_sized(SFERIK_INFO);
    let half = &response[..response.len() / 2];
    assert_eq!(
        respond(call(ControlRequest::info()), &[half], true),
        Err(ControlError::Closed)
    );
    assert_eq!(
        respond(call(ControlRequest::info()), &[], true),
        Err(ControlError::Closed),
        "closed before any byte"
    );
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
        MAX_CONTROL_BODY + 1
    );
    let filler = vec![b' '; 64 * 1024];
    let mut pieces: Vec<&[u8]> = vec![head.as_bytes()];
    pieces.extend(std::iter::repeat_n(filler.as_slice(), 17));
    assert_eq!(
        respond(call(ControlRequest::info()), &pieces, false),
        Err(ControlError::BodyTooLarge)
    );
    // A gzip bomb is stopped after decoding just over the limit.
    let bomb = gzip(&vec![b' '; 4 * MAX_CONTROL_BODY]);
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        bomb.len()
    )
    .into_bytes();
    response.extend_from_slice(&bomb);
    assert_eq!(
        whole(call(ControlRequest::info()), &response),
        Err(ControlError::BodyTooLarge)
    );
}

#[test]
fn bytes_after_the_response_are_ignored() {
    let mut response = ok_sized(SFERIK_INFO);
    response.extend_from_slice(b"HTTP/1.1 500 Oops\r\n\r\n");
    let info = info_of(whole(call(ControlRequest::info()), &response));
    assert_eq!(info.user_ids(), [1, 3]);
}

#[test]
fn the_deadline_bounds_the_whole_call() {
    let now = Instant::now();
    let timeout = Duration::from_millis(300);
    let mut c = call(ControlRequest::info()).with_timeout(timeout);
    assert_eq!(c.timeout(), timeout);
    assert!(matches!(c.poll_action(now), ControlAction::Connect { .. }));
    assert_eq!(c.poll_action(now), ControlAction::Wait(now + timeout));
    // Early or spurious timeouts change nothing.
    c.handle_timeout(now + timeout / 2);
    assert_eq!(c.poll_action(now), ControlAction::Wait(now + timeout));
    c.handle_connected(now, 1);
    assert!(matches!(c.poll_action(now), ControlAction::Transmit(_)));
    c.handle_input(now, b"HTTP/1.1 200 OK\r\n");
    let late = now + timeout;
    assert_eq!(c.poll_action(late), ControlAction::Close);
    assert_eq!(
        c.poll_action(late),
        ControlAction::Finished(Err(ControlError::Timeout(timeout)))
    );
}

#[test]
fn a_failed_connect_has_nothing_to_close() {
    let now = Instant::now();
    let mut c = call(ControlRequest::info());
    assert!(matches!(c.poll_action(now), ControlAction::Connect { .. }));
    c.handle_connect_failed(now, io::ErrorKind::ConnectionRefused);
    assert_eq!(
        c.poll_action(now),
        ControlAction::Finished(Err(ControlError::Connect(io::ErrorKind::ConnectionRefused)))
    );
}

#[test]
fn cancel_closes_and_finishes() {
    let now = Instant::now();
    let mut c = call(ControlRequest::info());
    start(&mut c, now);
    c.cancel();
    assert_eq!(c.poll_action(now), ControlAction::Close);
    assert_eq!(
        c.poll_action(now),
        ControlAction::Finished(Err(ControlError::Cancelled))
    );
    c.cancel();
    assert_eq!(
        c.poll_action(now),
        ControlAction::Finished(Err(ControlError::Cancelled)),
        "a second cancel changes nothing"
    );
}

#[test]
fn for_stream_takes_the_configs_endpoint_and_secrets_stay_hidden() {
    let config = Config::builder([1], credentials())
        .url("http://example.com:81/2b/site.json")
        .rng_seed(5)
        .build()
        .unwrap();
    let mut c = ControlCall::for_stream(&config, Some("s"), ControlRequest::info());
    assert_eq!(c.stream_id(), Some("s"));
    assert_eq!(c.request(), &ControlRequest::info());
    let now = Instant::now();
    let hidden = |c: &ControlCall| {
        let debug = format!("{c:?}");
        assert!(!debug.contains("consumer-secret"), "{debug}");
        assert!(!debug.contains("token-secret"), "{debug}");
        assert!(!debug.contains("oauth_signature"), "{debug}");
    };
    hidden(&c);
    assert_eq!(
        c.poll_action(now),
        ControlAction::Connect {
            host: "example.com".into(),
            port: 81,
            tls: false
        }
    );
    c.handle_connected(now, 5);
    hidden(&c);
    let action = c.poll_action(now);
    let shown = format!("{action:?}");
    assert!(
        shown.starts_with("Transmit(<") && !shown.contains("OAuth"),
        "{shown}"
    );
    let ControlAction::Transmit(sent) = action else {
        panic!()
    };
    assert!(sent.starts_with(b"GET /2b/site/c/s/info.json HTTP/1.1\r\nHost: example.com:81\r\n"));
}

#[cfg(feature = "tls")]
#[test]
fn https_runs_tls_inside_the_call() {
    let config = Config::builder([1], credentials()).build().unwrap();
    let mut c = ControlCall::for_stream(&config, Some("s"), ControlRequest::info());
    let now = Instant::now();
    assert_eq!(
        c.poll_action(now),
        ControlAction::Connect {
            host: "sitestream.twitter.com".into(),
            port: 443,
            tls: true
        }
    );
    c.handle_connected(now, 1_700_000_000);
    let ControlAction::Transmit(hello) = c.poll_action(now) else {
        panic!()
    };
    assert_eq!(hello.first(), Some(&22), "a TLS handshake record");
    assert!(!hello.windows(4).any(|w| w == b"GET "), "no plaintext");
    c.handle_input(now, b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(c.poll_action(now), ControlAction::Close);
    assert!(matches!(
        c.poll_action(now),
        ControlAction::Finished(Err(ControlError::Tls(_)))
    ));

    let bad_roots = config
        .to_builder()
        .extra_root_certs_pem(b"not pem".to_vec())
        .build();
    if let Ok(bad_roots) = bad_roots {
        let mut c = ControlCall::for_stream(&bad_roots, Some("s"), ControlRequest::info());
        assert!(matches!(c.poll_action(now), ControlAction::Connect { .. }));
        c.handle_connected(now, 1);
        assert_eq!(c.poll_action(now), ControlAction::Close);
        assert!(matches!(
            c.poll_action(now),
            ControlAction::Finished(Err(ControlError::InvalidConfig(_)))
        ));
    }
}

/// Every response shape, fed whole, byte by byte and at proptest-chosen cuts, gives the same
/// result.
fn responses() -> Vec<(ControlRequest, Vec<u8>, bool)> {
    let mut until_eof = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    until_eof.extend_from_slice(SFERIK_INFO);
    let gz = {
        let body = gzip(SFERIK_PAGE_1);
        let mut r =
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        r.extend(chunked(&body, 5));
        r
    };
    vec![
        (ControlRequest::info(), ok_chunked(SFERIK_INFO), false),
        (ControlRequest::info(), ok_sized(SFERIK_INFO), false),
        (ControlRequest::info(), until_eof, true),
        (ControlRequest::friends_ids(1, -1), gz, false),
        (
            ControlRequest::add_users(&[1]).unwrap(),
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
                .to_vec(),
            false,
        ),
        (
            ControlRequest::info(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"inf\r\nX".to_vec(),
            false,
        ),
    ]
}

fn split_at(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for cut in cuts {
        pieces.push(bytes[from..cut].to_vec());
        from = cut;
    }
    pieces.push(bytes[from..].to_vec());
    pieces
}

#[test]
fn responses_byte_by_byte_match_whole() {
    for (i, (request, response, eof)) in responses().into_iter().enumerate() {
        let expected = respond(call(request.clone()), &[&response], eof);
        let bytes: Vec<&[u8]> = response.chunks(1).collect();
        assert_eq!(
            respond(call(request), &bytes, eof),
            expected,
            "response {i}"
        );
    }
}

proptest! {
    #[test]
    fn responses_split_anywhere_match_whole(
        which in 0usize..6,
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let (request, response, eof) = responses().swap_remove(which);
        let expected = respond(call(request.clone()), &[&response], eof);
        let pieces = split_at(&response, &cuts);
        let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        prop_assert_eq!(respond(call(request), &refs, eof), expected);
    }

    /// Arbitrary bytes never panic, and the call always finishes once the peer closes.
    #[test]
    fn arbitrary_responses_always_finish(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let pieces = split_at(&bytes, &cuts);
        let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        let _ = respond(call(ControlRequest::info()), &refs, true);
    }
}

/// A rules call: no stream id, the Bearer token, JSON to `<stream path>/rules`; a `201`
/// answer decodes to the rules created, a `401` is an HTTP error.
#[test]
fn rules_calls_carry_the_bearer_token_and_json() {
    use crate::config::{Api, BearerToken, Config};
    use crate::control::NewRule;

    let config = Config::v2_builder(Api::V2Filtered, BearerToken::new("BEARER-SECRET"))
        .url("http://127.0.0.1:8080/2/tweets/search/stream")
        .build()
        .expect("valid config");
    let now = Instant::now();
    let request =
        ControlRequest::rules_add(&[NewRule::new("cat").tagged("c")], true).expect("one rule");
    let mut call = ControlCall::for_stream(&config, None, request);
    assert!(!format!("{call:?}").contains("BEARER-SECRET"));
    assert!(matches!(
        call.poll_action(now),
        ControlAction::Connect { port: 8080, .. }
    ));
    call.handle_connected(now, 1_700_000_000);
    let ControlAction::Transmit(bytes) = call.poll_action(now) else {
        panic!("the request is sent")
    };
    let json = r#"{"add":[{"tag":"c","value":"cat"}]}"#;
    assert_eq!(
        std::str::from_utf8(&bytes).expect("UTF-8"),
        format!(
            "POST /2/tweets/search/stream/rules?dry_run=true HTTP/1.1\r\n\
             Host: 127.0.0.1:8080\r\n\
             User-Agent: {}\r\n\
             Connection: close\r\n\
             Authorization: Bearer BEARER-SECRET\r\n\
             Content-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{json}",
            crate::request::USER_AGENT,
            json.len()
        )
    );
    let body = r#"{"data":[{"id":"9","value":"cat","tag":"c"}],"meta":{"summary":{"created":1}}}"#;
    call.handle_input(
        now,
        format!(
            "HTTP/1.1 201 Created\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(call.poll_action(now), ControlAction::Close);
    let ControlAction::Finished(Ok(ControlResponse::Rules(answer))) = call.poll_action(now) else {
        panic!("the rules answer")
    };
    assert_eq!(answer.rules[0].id, "9");
    assert_eq!(answer.summary.created, 1);
    assert_eq!(answer.body, body);

    // A wrong token: 401 is an HTTP error, not an unknown stream; a list needs no stream id.
    let mut call = ControlCall::for_stream(&config, None, ControlRequest::rules_list());
    let _ = call.poll_action(now);
    call.handle_connected(now, 1);
    let ControlAction::Transmit(bytes) = call.poll_action(now) else {
        panic!("the request is sent")
    };
    assert!(bytes.starts_with(b"GET /2/tweets/search/stream/rules HTTP/1.1\r\n"));
    call.handle_input(
        now,
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}",
    );
    assert_eq!(call.poll_action(now), ControlAction::Close);
    assert!(matches!(
        call.poll_action(now),
        ControlAction::Finished(Err(ControlError::Http { status: 404, .. }))
    ));
    assert_eq!(
        ControlRequest::rules_add(&[], false),
        Err(ControlError::NoRules)
    );
    assert_eq!(
        ControlRequest::rules_delete(&[], false),
        Err(ControlError::NoRules)
    );
}
