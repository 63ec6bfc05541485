use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::corpus::{self, Corpus};
use crate::scenario::{ChunkPlan, End, Repeat, Scenario, Step};
use crate::testutil::{self, decode, sign, site_request, split_crlf, split_length, Item};

const HOST: &str = "127.0.0.1:8080";

fn creds() -> Credentials {
    Credentials::test_default()
}

/// What a session did when run in virtual time.
#[derive(Debug, Default)]
struct Played {
    bytes: Vec<u8>,
    /// Each wait, with how many bytes had been sent before it.
    waits: Vec<(usize, Instant)>,
    /// How the run ended: "close", "idle" or "limit".
    ended: &'static str,
    /// The largest single Transmit.
    largest: usize,
}

/// Drains the session, jumping virtual time to each deadline, until it closes, goes idle or
/// has sent `limit` bytes.
fn play(session: &mut Session, mut now: Instant, limit: usize) -> Played {
    let mut played = Played::default();
    for _ in 0..10_000_000 {
        match session.poll_output(now) {
            Output::Transmit(bytes) => {
                assert!(!bytes.is_empty(), "no empty transmits");
                played.largest = played.largest.max(bytes.len());
                played.bytes.extend_from_slice(&bytes);
                if played.bytes.len() >= limit {
                    played.ended = "limit";
                    return played;
                }
            }
            Output::Wait(deadline) => {
                assert!(deadline > now, "a wait is always in the future");
                played.waits.push((played.bytes.len(), deadline));
                now = deadline;
            }
            Output::Idle => {
                played.ended = "idle";
                return played;
            }
            Output::Close => {
                played.ended = "close";
                return played;
            }
        }
    }
    panic!("session never settled");
}

/// Runs `plan` against a correctly signed site request with these query params and headers.
fn run(
    plan: AttemptPlan,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
    limit: usize,
) -> (Played, Session) {
    let start = Instant::now();
    let mut session = Session::new(plan, &creds(), 0, start);
    session.handle_input(start, &site_request(&creds(), false, HOST, query, headers));
    let played = play(&mut session, start, limit);
    (played, session)
}

fn messages(items: &[Item]) -> Vec<Vec<u8>> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Message(m) => Some(m.clone()),
            Item::KeepAlive => None,
        })
        .collect()
}

// ---- OAuth ----

/// Twitter's documented example request (its original `/1/` path, which gives the documented
/// signature `tnnArxj06cWHq44gCs1OSKk/jLY=`), with `status` in a form body.
fn twitter_example(status_text: &str) -> (Credentials, Vec<u8>, String) {
    let creds = Credentials::new(
        "xvz1evFS4wEEPTGEFPHBog",
        "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
        "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
        "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
    );
    let (auth, signature) = sign(
        "POST",
        "https://api.twitter.com/1/statuses/update.json",
        &[
            ("include_entities", "true"),
            (
                "status",
                "Hello Ladies + Gentlemen, a signed OAuth request!",
            ),
        ],
        &creds,
        "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
        "1318622958",
    );
    let body = format!("status={}", testutil::pct(status_text));
    let request = format!(
        "POST /1/statuses/update.json?include_entities=true HTTP/1.1\r\nHost: api.twitter.com\r\nAuthorization: {auth}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    (creds, request.into_bytes(), signature)
}

fn answer(creds: &Credentials, tls: bool, request: &[u8], plan: AttemptPlan) -> (Played, Session) {
    let start = Instant::now();
    let mut session = Session::new(plan, creds, 3, start).with_tls(tls);
    session.handle_input(start, request);
    let played = play(&mut session, start, usize::MAX);
    (played, session)
}

fn tiny_plan() -> AttemptPlan {
    AttemptPlan::ok(vec![Step::Message(b"{}".to_vec())])
        .with_transfer(Transfer::UntilEof)
        .with_end(End::Close)
}

#[test]
fn accepts_twitters_documented_signed_request() {
    let (creds, request, signature) =
        twitter_example("Hello Ladies + Gentlemen, a signed OAuth request!");
    assert_eq!(
        signature, "tnnArxj06cWHq44gCs1OSKk/jLY=",
        "the test signer is right"
    );
    let (played, session) = answer(&creds, true, &request, tiny_plan());
    let record = session.record();
    assert!(record.signature_ok, "{:?}", record.rejection);
    assert_eq!(record.status, Some(200));
    assert_eq!(record.index, 3);
    assert_eq!(record.method, "POST");
    assert_eq!(record.path, "/1/statuses/update.json");
    assert_eq!(record.query_param("include_entities"), Some("true"));
    assert_eq!(
        record.oauth_param("oauth_nonce"),
        Some("kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg")
    );
    assert_eq!(record.oauth_param("oauth_signature"), None);
    assert_eq!(
        played.bytes,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{}\r\n"
    );
    assert_eq!(played.ended, "close");
}

#[test]
fn rejects_tampered_or_mismatched_requests_with_401() {
    let (creds, good, _) = twitter_example("Hello Ladies + Gentlemen, a signed OAuth request!");
    let (_, tampered, _) = twitter_example("Hello Ladies + Gentlemen, a signed OAuth request?");
    let mut wrong_secret = creds.clone();
    wrong_secret.token_secret.push('x');
    let mut wrong_key = creds.clone();
    wrong_key.consumer_key.push('x');
    let no_auth =
        b"POST /1.1/statuses/update.json HTTP/1.1\r\nHost: api.twitter.com\r\n\r\n".to_vec();
    let query_oauth = String::from_utf8(good.clone())
        .unwrap()
        .replace(
            "?include_entities=true",
            "?include_entities=true&oauth_token=x",
        )
        .into_bytes();
    let cases: Vec<(&str, &Credentials, bool, Vec<u8>, &str)> = vec![
        ("tampered body", &creds, true, tampered, "signature"),
        (
            "wrong token secret",
            &wrong_secret,
            true,
            good.clone(),
            "signature",
        ),
        (
            "wrong consumer key",
            &wrong_key,
            true,
            good.clone(),
            "consumer_key",
        ),
        (
            "signed for https, sent over http",
            &creds,
            false,
            good.clone(),
            "signature",
        ),
        ("no Authorization", &creds, true, no_auth, "Authorization"),
        ("oauth_* in the query", &creds, true, query_oauth, "query"),
    ];
    for (what, server_creds, tls, request, why) in cases {
        let (played, session) = answer(server_creds, tls, &request, tiny_plan());
        let record = session.record();
        assert!(!record.signature_ok, "{what}");
        assert_eq!(record.status, Some(401), "{what}");
        let rejection = record.rejection.clone().unwrap();
        assert!(rejection.contains(why), "{what}: {rejection}");
        let decoded = decode(&played.bytes);
        assert_eq!(decoded.status, 401, "{what}");
        let body = String::from_utf8(decoded.body).unwrap();
        assert!(body.starts_with("401 Unauthorized: "), "{what}: {body}");
        assert!(
            !body.contains("tnnArx") && !body.contains("LswwdoUa"),
            "{what}"
        );
        assert_eq!(played.ended, "close", "{what}");
        assert!(session.closed_cleanly());
        assert!(
            !format!("{session:?}").contains("tnnArx"),
            "Debug hides the signature"
        );
    }
}

#[test]
fn the_query_form_of_the_example_verifies_too() {
    // The same parameters in the query instead of a form body give the same signature.
    let (creds, _, _) = twitter_example("");
    let (auth, _) = sign(
        "POST",
        "https://api.twitter.com/1.1/statuses/update.json",
        &[
            ("include_entities", "true"),
            (
                "status",
                "Hello Ladies + Gentlemen, a signed OAuth request!",
            ),
        ],
        &creds,
        "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
        "1318622958",
    );
    let request = format!(
        "POST /1.1/statuses/update.json?include_entities=true&status=Hello%20Ladies%20%2B%20Gentlemen%2C%20a%20signed%20OAuth%20request%21 HTTP/1.1\r\nHost: API.Twitter.com:443\r\nAuthorization: {auth}\r\n\r\n"
    );
    let (_, session) = answer(&creds, true, request.as_bytes(), tiny_plan());
    assert!(
        session.record().signature_ok,
        "{:?}",
        session.record().rejection
    );
}

#[test]
fn request_split_byte_by_byte_gives_the_same_answer() {
    let request = site_request(
        &creds(),
        false,
        HOST,
        &[("follow", "1,2"), ("with", "user")],
        &[],
    );
    let plan = AttemptPlan::ok(vec![Step::Message(b"{\"a\":1}".to_vec()), Step::KeepAlive]);
    let start = Instant::now();
    let mut whole = Session::new(plan.clone(), &creds(), 0, start);
    whole.handle_input(start, &request);
    let expected = play(&mut whole, start, usize::MAX);
    let mut split = Session::new(plan, &creds(), 0, start);
    for (i, byte) in request.iter().enumerate() {
        assert_eq!(
            split.poll_output(start),
            Output::Idle,
            "nothing before the whole head ({i})"
        );
        split.handle_input(start, std::slice::from_ref(byte));
    }
    let got = play(&mut split, start, usize::MAX);
    assert_eq!(got.bytes, expected.bytes);
    assert_eq!(split.record(), whole.record());
    assert!(split.record().signature_ok);
    assert_eq!(split.record().query_param("follow"), Some("1,2"));
}

proptest! {
    #[test]
    fn request_split_anywhere_gives_the_same_answer(cuts in proptest::collection::vec(0usize..400, 0..6)) {
        let request = site_request(&creds(), true, HOST, &[("follow", "12,34"), ("delimited", "length")], &[("Accept-Encoding", "gzip")]);
        let plan = AttemptPlan::ok(vec![Step::Message(b"{}".to_vec())]);
        let start = Instant::now();
        let mut whole = Session::new(plan.clone(), &creds(), 0, start).with_tls(true);
        whole.handle_input(start, &request);
        let expected = play(&mut whole, start, usize::MAX);
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(request.len())).collect();
        points.sort();
        let mut split = Session::new(plan, &creds(), 0, start).with_tls(true);
        let mut from = 0;
        for p in points.into_iter().chain([request.len()]) {
            split.handle_input(start, &request[from..p]);
            from = p;
        }
        let got = play(&mut split, start, usize::MAX);
        prop_assert_eq!(got.bytes, expected.bytes);
        prop_assert!(split.record().signature_ok);
    }
}

/// A signed request padded with an `X-Pad` header to exactly `total` bytes.
fn padded_request(total: usize) -> Vec<u8> {
    let base = site_request(&creds(), false, HOST, &[("follow", "1")], &[("X-Pad", "")]);
    let pad = total - base.len();
    let text = String::from_utf8(base)
        .unwrap()
        .replace("X-Pad: ", &format!("X-Pad: {}", "p".repeat(pad)));
    assert_eq!(text.len(), total);
    text.into_bytes()
}

#[test]
fn request_heads_up_to_16_kib_pass_and_longer_ones_get_400() {
    let (played, session) = answer(
        &creds(),
        false,
        &padded_request(MAX_REQUEST_HEAD),
        tiny_plan(),
    );
    assert_eq!(session.record().status, Some(200));
    assert!(played.bytes.starts_with(b"HTTP/1.1 200 OK"));

    let (played, session) = answer(
        &creds(),
        false,
        &padded_request(MAX_REQUEST_HEAD + 1),
        tiny_plan(),
    );
    assert_eq!(session.record().status, Some(400));
    assert_eq!(session.record().path, "/1.1/site.json");
    assert_eq!(decode(&played.bytes).status, 400);
    assert_eq!(played.ended, "close");

    // An endless header line with no end in sight is cut off at the limit too.
    let start = Instant::now();
    let mut session = Session::new(tiny_plan(), &creds(), 0, start);
    session.handle_input(start, b"GET / HTTP/1.1\r\nX-Endless: ");
    for _ in 0..20 {
        session.handle_input(start, &[b'x'; 1024]);
    }
    let played = play(&mut session, start, usize::MAX);
    assert_eq!(decode(&played.bytes).status, 400);
    assert_eq!(played.ended, "close");
}

#[test]
fn garbage_request_gets_400() {
    let (played, session) = answer(&creds(), false, b"\x00\x01 nonsense\r\n\r\n", tiny_plan());
    assert_eq!(decode(&played.bytes).status, 400);
    assert_eq!(
        session.record().rejection.as_deref(),
        Some("malformed request head")
    );
}

#[test]
fn record_debug_hides_the_authorization_value() {
    let (_, session) = run(tiny_plan(), &[("follow", "1")], &[], usize::MAX);
    let record = session.record();
    let auth = record.header("authorization").unwrap();
    assert!(auth.contains("oauth_signature="));
    let shown = format!("{record:?}");
    assert!(shown.contains("<redacted>"));
    assert!(!shown.contains("oauth_signature="));
}

// ---- body encoding round trips ----

fn sample_steps(corpus: &mut Corpus) -> (Vec<Step>, Vec<Vec<u8>>) {
    let m1 = corpus::control(corpus::STREAM_ID);
    let m2 = corpus.tweet();
    let m3 = corpus.site_message();
    let disconnect = corpus::disconnect(4, "stall");
    let steps = vec![
        Step::Message(m1.clone()),
        Step::KeepAlive,
        Step::Message(m2.clone()),
        Step::Wait(Duration::from_millis(5)),
        Step::Repeat(
            Repeat::once(vec![m3.clone(), b"{\"x\":\"\\n\"}".to_vec()]).with_keep_alive_every(1),
        ),
        Step::Oversized(100),
        Step::Disconnect {
            code: 4,
            reason: "stall".into(),
        },
    ];
    let mut oversized = b"{\"p\":\"".to_vec();
    oversized.extend_from_slice(&[b'a'; 92]);
    oversized.extend_from_slice(b"\"}");
    let expected = vec![
        m1,
        m2,
        m3,
        b"{\"x\":\"\\n\"}".to_vec(),
        oversized,
        disconnect,
    ];
    (steps, expected)
}

fn all_chunk_plans() -> Vec<ChunkPlan> {
    vec![
        ChunkPlan::PerStep,
        ChunkPlan::Fixed(1),
        ChunkPlan::Fixed(7),
        ChunkPlan::Fixed(4096),
        ChunkPlan::Random {
            seed: 9,
            min: 1,
            max: 300,
        },
        ChunkPlan::CutPoints(vec![1, 2, 3, 50, 51, 2000, 2001]),
    ]
}

#[test]
fn every_encoding_round_trips_through_a_reference_decoder() {
    let mut corpus = Corpus::new(11);
    let (steps, expected) = sample_steps(&mut corpus);
    for transfer in [
        Transfer::Chunked,
        Transfer::ContentLength,
        Transfer::UntilEof,
    ] {
        for encoding in [
            BodyEncoding::Identity,
            BodyEncoding::Gzip,
            BodyEncoding::Deflate,
        ] {
            for framing in [Framing::Crlf, Framing::Length] {
                for chunks in all_chunk_plans() {
                    let what = format!("{transfer:?} {encoding:?} {framing:?} {chunks:?}");
                    let plan = AttemptPlan::ok(steps.clone())
                        .with_transfer(transfer)
                        .with_encoding(encoding)
                        .with_framing(framing)
                        .with_chunks(chunks.clone());
                    let (played, session) = run(plan, &[("follow", "1")], &[], usize::MAX);
                    assert_eq!(played.ended, "close", "{what}");
                    assert!(session.closed_cleanly(), "{what}");
                    let decoded = decode(&played.bytes);
                    assert_eq!(decoded.status, 200, "{what}");
                    assert!(decoded.complete, "{what}");
                    let (items, rest) = match framing {
                        Framing::Length => split_length(&decoded.body),
                        _ => split_crlf(&decoded.body),
                    };
                    assert!(rest.is_empty(), "{what}: leftover {rest:?}");
                    assert_eq!(messages(&items), expected, "{what}");
                    let keep_alives = items.iter().filter(|i| **i == Item::KeepAlive).count();
                    assert_eq!(keep_alives, 3, "{what}");
                    if transfer == Transfer::Chunked {
                        match &chunks {
                            ChunkPlan::Fixed(n) => {
                                let sizes = &decoded.chunk_sizes;
                                assert!(sizes.iter().all(|s| s <= n), "{what}");
                                if *n == 1 {
                                    assert!(sizes.iter().all(|s| *s == 1), "{what}");
                                }
                            }
                            ChunkPlan::Random { max, .. } => {
                                assert!(decoded.chunk_sizes.iter().all(|s| s <= max), "{what}");
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn per_step_chunks_hold_one_step_each_and_cut_points_cut_where_told() {
    let plan = AttemptPlan::ok(vec![
        Step::Message(b"{\"a\":1}".to_vec()),
        Step::KeepAlive,
        Step::Message(b"{\"b\":22}".to_vec()),
    ])
    .with_encoding(BodyEncoding::Identity)
    .with_framing(Framing::Crlf);
    let (played, _) = run(plan.clone(), &[], &[], usize::MAX);
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let expected =
        format!("{head}9\r\n{{\"a\":1}}\r\n\r\n2\r\n\r\n\r\na\r\n{{\"b\":22}}\r\n\r\n0\r\n\r\n");
    assert_eq!(String::from_utf8(played.bytes).unwrap(), expected);

    let plan = plan.with_chunks(ChunkPlan::CutPoints(vec![3, 10, 12]));
    let (played, _) = run(plan, &[], &[], usize::MAX);
    let decoded = decode(&played.bytes);
    // Body: 9 bytes of message, 2 of keep-alive, 10 of message. Cuts at 3, 10 and 12, then one
    // chunk per step: the last 9 bytes of the last message.
    assert_eq!(decoded.chunk_sizes, vec![3, 7, 2, 9]);
}

#[test]
fn fixed_chunks_split_across_messages_and_flush_before_waits() {
    let plan = AttemptPlan::ok(vec![
        Step::Message(b"0123456789".to_vec()),
        Step::Wait(Duration::from_secs(1)),
        Step::Message(b"abc".to_vec()),
    ])
    .with_encoding(BodyEncoding::Identity)
    .with_framing(Framing::Crlf)
    .with_chunks(ChunkPlan::Fixed(5));
    let (played, _) = run(plan, &[], &[], usize::MAX);
    let decoded = decode(&played.bytes);
    // 12 bytes before the wait: 5 + 5 + a short 2 flushed before it; then 5 (abc\r\n) at the end.
    assert_eq!(decoded.chunk_sizes, vec![5, 5, 2, 5]);
    let head_len = played
        .bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap()
        + 4;
    assert_eq!(played.waits.len(), 1);
    let before_wait = &played.bytes[head_len..played.waits[0].0];
    assert_eq!(before_wait, b"5\r\n01234\r\n5\r\n56789\r\n2\r\n\r\n\r\n");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5173_b0c4),
        ..ProptestConfig::default()
    })]
    #[test]
    fn any_chunk_plan_round_trips(
        msgs in proptest::collection::vec(proptest::collection::vec(0x20u8..0x7f, 0..300), 1..12),
        plan_kind in 0u8..3,
        size in 1usize..200,
        seed in any::<u64>(),
        mut cuts in proptest::collection::vec(0usize..3000, 0..20),
        gzip in any::<bool>(),
        length in any::<bool>(),
    ) {
        cuts.sort();
        let chunks = match plan_kind {
            0 => ChunkPlan::Fixed(size),
            1 => ChunkPlan::Random { seed, min: 1, max: size },
            _ => ChunkPlan::CutPoints(cuts),
        };
        // Blank payloads would read back as keep-alives in CRLF framing.
        let msgs: Vec<Vec<u8>> = msgs.into_iter().map(|mut m| { m.insert(0, b'{'); m }).collect();
        let mut steps: Vec<Step> = msgs.iter().cloned().map(Step::Message).collect();
        steps.insert(1, Step::Wait(Duration::from_millis(1)));
        let plan = AttemptPlan::ok(steps)
            .with_chunks(chunks)
            .with_encoding(if gzip { BodyEncoding::Gzip } else { BodyEncoding::Identity })
            .with_framing(if length { Framing::Length } else { Framing::Crlf });
        let (played, _) = run(plan, &[], &[], usize::MAX);
        let decoded = decode(&played.bytes);
        prop_assert!(decoded.complete);
        let (items, rest) = if length { split_length(&decoded.body) } else { split_crlf(&decoded.body) };
        prop_assert!(rest.is_empty());
        prop_assert_eq!(messages(&items), msgs);
    }
}

#[test]
fn gzip_is_flushed_per_step_so_messages_arrive_before_a_wait() {
    let plan = AttemptPlan::ok(vec![
        Step::Message(b"{\"first\":true}".to_vec()),
        Step::Wait(Duration::from_secs(30)),
        Step::Message(b"{\"second\":true}".to_vec()),
    ])
    .with_encoding(BodyEncoding::Gzip)
    .with_framing(Framing::Crlf);
    let (played, _) = run(plan, &[], &[], usize::MAX);
    let (sent_before_wait, _) = played.waits[0];
    let partial = decode(&played.bytes[..sent_before_wait]);
    assert_eq!(partial.header("content-encoding"), Some("gzip"));
    assert!(!partial.complete, "the stream is not over before the wait");
    assert_eq!(
        partial.body, b"{\"first\":true}\r\n",
        "the first message decodes in full"
    );
    let whole = decode(&played.bytes);
    assert_eq!(whole.body, b"{\"first\":true}\r\n{\"second\":true}\r\n");
}

#[test]
fn auto_encoding_and_framing_follow_the_request() {
    let plan = AttemptPlan::ok(vec![Step::Message(b"{\"k\":1}".to_vec())]);
    type Params<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Params, Params, Option<&str>, bool); 5] = [
        (&[], &[], None, false),
        (
            &[],
            &[("Accept-Encoding", "deflate, gzip")],
            Some("gzip"),
            false,
        ),
        (
            &[],
            &[("Accept-Encoding", "deflate")],
            Some("deflate"),
            false,
        ),
        (&[], &[("Accept-Encoding", "identity, gzipx")], None, false),
        (
            &[("delimited", "length")],
            &[("Accept-Encoding", "GZIP;q=1")],
            Some("gzip"),
            true,
        ),
    ];
    for (query, headers, encoding, length) in cases {
        let (played, _) = run(plan.clone(), query, headers, usize::MAX);
        let decoded = decode(&played.bytes);
        assert_eq!(decoded.header("content-encoding"), encoding, "{headers:?}");
        let expected: &[u8] = if length {
            b"9\r\n{\"k\":1}\r\n"
        } else {
            b"{\"k\":1}\r\n"
        };
        assert_eq!(decoded.body, expected, "{query:?}");
    }
}

#[test]
fn content_length_counts_the_body_and_plays_one_round_of_an_endless_repeat() {
    let pool = vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()];
    for encoding in [BodyEncoding::Identity, BodyEncoding::Gzip] {
        let plan = AttemptPlan::ok(vec![Step::Repeat(Repeat::endless(pool.clone()))])
            .with_transfer(Transfer::ContentLength)
            .with_encoding(encoding)
            .with_framing(Framing::Crlf)
            .with_end(End::HoldWithKeepAlives(Duration::from_secs(1)));
        let (played, _) = run(plan, &[], &[], usize::MAX);
        assert_eq!(
            played.ended, "idle",
            "a held ContentLength body is complete, then silent"
        );
        let decoded = decode(&played.bytes); // asserts Content-Length == body length
        assert_eq!(decoded.body, b"{\"a\":1}\r\n{\"b\":2}\r\n", "{encoding:?}");
    }
}

#[test]
fn status_plans_answer_with_a_short_body() {
    let (played, session) = run(
        AttemptPlan::status(420, "Enhance Your Calm"),
        &[],
        &[],
        usize::MAX,
    );
    assert_eq!(
        played.bytes,
        b"HTTP/1.1 420 Enhance Your Calm\r\nContent-Length: 22\r\nContent-Type: text/plain\r\n\r\n420 Enhance Your Calm\n"
    );
    assert_eq!(session.record().status, Some(420));
    assert!(session.record().signature_ok);
    assert_eq!(played.ended, "close");
}

#[test]
fn extra_headers_follow_the_server_headers() {
    let plan = AttemptPlan::ok(vec![])
        .with_header("X-Rate-Limit", "5")
        .with_encoding(BodyEncoding::Identity);
    let (played, _) = run(plan, &[], &[], usize::MAX);
    assert!(played
        .bytes
        .starts_with(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nX-Rate-Limit: 5\r\n\r\n0\r\n\r\n"));
}

// ---- each step kind ----

fn body_of(plan: AttemptPlan) -> (Played, Vec<u8>) {
    let (played, _) = run(
        plan.with_encoding(BodyEncoding::Identity)
            .with_framing(Framing::Crlf)
            .with_transfer(Transfer::UntilEof),
        &[],
        &[],
        usize::MAX,
    );
    let head_len = played
        .bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap()
        + 4;
    let body = played.bytes[head_len..].to_vec();
    (played, body)
}

#[test]
fn waits_follow_the_scripts_own_clock() {
    let start = Instant::now();
    let plan = AttemptPlan::ok(vec![
        Step::Message(b"1".to_vec()),
        Step::Wait(Duration::from_secs(2)),
        Step::Message(b"2".to_vec()),
        Step::Wait(Duration::from_secs(3)),
        Step::Message(b"3".to_vec()),
    ])
    .with_encoding(BodyEncoding::Identity)
    .with_framing(Framing::Crlf)
    .with_transfer(Transfer::UntilEof);
    let mut session = Session::new(plan, &creds(), 0, start);
    let t0 = start + Duration::from_millis(10);
    session.handle_input(t0, &site_request(&creds(), false, HOST, &[], &[]));
    let Output::Transmit(first) = session.poll_output(t0) else {
        panic!()
    };
    assert!(first.ends_with(b"\r\n\r\n1\r\n"));
    assert_eq!(
        session.poll_output(t0),
        Output::Wait(t0 + Duration::from_secs(2))
    );
    // Early polls change nothing.
    assert_eq!(
        session.poll_output(t0 + Duration::from_secs(1)),
        Output::Wait(t0 + Duration::from_secs(2))
    );
    // A late poll does not push the schedule back: the next deadline counts from the last one.
    let late = t0 + Duration::from_millis(2500);
    assert_eq!(
        session.poll_output(late),
        Output::Transmit(b"2\r\n".to_vec())
    );
    assert_eq!(
        session.poll_output(late),
        Output::Wait(t0 + Duration::from_secs(5))
    );
    let at = t0 + Duration::from_secs(5);
    assert_eq!(session.poll_output(at), Output::Transmit(b"3\r\n".to_vec()));
    assert_eq!(session.poll_output(at), Output::Close);
    assert_eq!(session.poll_output(at), Output::Close, "Close stays Close");
    assert_eq!(session.record().request_at, Some(t0));
    assert_eq!(session.record().at, start);
}

#[test]
fn keep_alive_and_message_framing_are_exact() {
    let (_, body) = body_of(AttemptPlan::ok(vec![
        Step::KeepAlive,
        Step::Message(b"{\"m\":1}".to_vec()),
    ]));
    assert_eq!(body, b"\r\n{\"m\":1}\r\n");
    let (played, _) = run(
        AttemptPlan::ok(vec![Step::KeepAlive, Step::Message(b"{\"m\":1}".to_vec())])
            .with_framing(Framing::Length)
            .with_transfer(Transfer::UntilEof)
            .with_encoding(BodyEncoding::Identity),
        &[],
        &[],
        usize::MAX,
    );
    assert!(played.bytes.ends_with(b"\r\n\r\n9\r\n{\"m\":1}\r\n"));
}

#[test]
fn disconnect_step_is_a_framed_disconnect_message() {
    let (_, body) = body_of(AttemptPlan::ok(vec![Step::Disconnect {
        code: 7,
        reason: "admin logout".into(),
    }]));
    assert!(body.ends_with(b"\r\n"));
    let value: serde_json::Value = serde_json::from_slice(&body[..body.len() - 2]).unwrap();
    assert_eq!(value["disconnect"]["code"], 7);
    assert_eq!(value["disconnect"]["reason"], "admin logout");
}

#[test]
fn oversized_frames_have_exactly_the_asked_payload() {
    for n in [0usize, 1, 7, 8, 9, 1000] {
        let (_, body) = body_of(AttemptPlan::ok(vec![Step::Oversized(n)]));
        assert_eq!(body.len(), n + 2, "payload {n} plus CRLF");
        assert!(body.ends_with(b"\r\n"));
        if n >= 8 {
            let value: serde_json::Value = serde_json::from_slice(&body[..n]).unwrap();
            assert_eq!(value["p"].as_str().unwrap().len(), n - 8);
        }
    }
    // A big one under gzip and length framing is produced piece by piece.
    let n = 3 * 1024 * 1024 + 5;
    let (played, _) = run(
        AttemptPlan::ok(vec![Step::Oversized(n)])
            .with_encoding(BodyEncoding::Gzip)
            .with_framing(Framing::Length),
        &[],
        &[],
        usize::MAX,
    );
    assert!(
        played.largest <= 128 * 1024,
        "transmits stay small: {}",
        played.largest
    );
    let decoded = decode(&played.bytes);
    assert!(played.bytes.len() < n / 50, "'a's compress well");
    assert!(decoded
        .body
        .starts_with(format!("{}\r\n{{\"p\":\"aaa", n + 2).as_bytes()));
    let (items, rest) = split_length(&decoded.body);
    assert!(rest.is_empty());
    assert_eq!(messages(&items)[0].len(), n);
}

#[test]
fn raw_body_goes_in_the_chunks_and_raw_wire_goes_around_them() {
    let plan = AttemptPlan::ok(vec![
        Step::RawBody(b"99999999999\r\n".to_vec()),
        Step::RawWire(b"FFFFFFFFFFFFFFFFFFFF\r\n".to_vec()),
    ])
    .with_encoding(BodyEncoding::Identity)
    .with_end(End::Stall);
    let (played, _) = run(plan, &[], &[], usize::MAX);
    assert!(played
        .bytes
        .ends_with(b"\r\n\r\nd\r\n99999999999\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n"));
    assert_eq!(played.ended, "idle");
}

#[test]
fn trickle_sends_one_byte_per_interval() {
    let start = Instant::now();
    let plan = AttemptPlan::ok(vec![Step::Trickle {
        bytes: b"ab".to_vec(),
        every: Duration::from_secs(1),
    }])
    .with_encoding(BodyEncoding::Identity);
    let mut session = Session::new(plan, &creds(), 0, start);
    session.handle_input(start, &site_request(&creds(), false, HOST, &[], &[]));
    assert!(
        matches!(session.poll_output(start), Output::Transmit(h) if h.starts_with(b"HTTP/1.1 200"))
    );
    let s1 = start + Duration::from_secs(1);
    let s2 = start + Duration::from_secs(2);
    assert_eq!(session.poll_output(start), Output::Wait(s1));
    assert_eq!(
        session.poll_output(s1),
        Output::Transmit(b"1\r\na\r\n".to_vec())
    );
    assert_eq!(session.poll_output(s1), Output::Wait(s2));
    assert_eq!(
        session.poll_output(s2),
        Output::Transmit(b"1\r\nb\r\n0\r\n\r\n".to_vec())
    );
    assert_eq!(session.poll_output(s2), Output::Close);
}

#[test]
fn close_now_cuts_mid_message_without_finishing_the_body() {
    let half = br#"{"for_user":12,"message":{"te"#;
    let plan = AttemptPlan::ok(vec![
        Step::Message(b"{}".to_vec()),
        Step::RawBody(half.to_vec()),
        Step::CloseNow,
        Step::Message(b"never".to_vec()),
    ])
    .with_encoding(BodyEncoding::Identity)
    .with_framing(Framing::Crlf);
    let (played, session) = run(plan, &[], &[], usize::MAX);
    assert_eq!(played.ended, "close");
    assert!(!session.closed_cleanly());
    let mut expected = format!("{:x}\r\n", half.len()).into_bytes();
    expected.extend_from_slice(half);
    expected.extend_from_slice(b"\r\n");
    assert!(
        played.bytes.ends_with(&expected),
        "the half message is the last chunk"
    );
    let decoded = decode(&played.bytes);
    assert!(!decoded.complete, "no last chunk");
    let (items, rest) = split_crlf(&decoded.body);
    assert_eq!(messages(&items), vec![b"{}".to_vec()]);
    assert_eq!(rest, half);
}

#[test]
fn stall_end_goes_silent_and_hold_end_sends_keep_alives() {
    let (played, session) = run(
        AttemptPlan::ok(vec![Step::Message(b"{}".to_vec())])
            .with_encoding(BodyEncoding::Gzip)
            .with_end(End::Stall),
        &[],
        &[],
        usize::MAX,
    );
    assert_eq!(played.ended, "idle");
    assert!(!session.is_closed());
    let decoded = decode(&played.bytes);
    assert!(!decoded.complete);
    assert_eq!(
        decoded.body, b"{}\r\n",
        "everything sent is decodable before the stall"
    );

    let start = Instant::now();
    let plan = AttemptPlan::ok(vec![])
        .with_encoding(BodyEncoding::Identity)
        .with_end(End::HoldWithKeepAlives(Duration::from_secs(5)));
    let mut session = Session::new(plan, &creds(), 0, start);
    session.handle_input(start, &site_request(&creds(), false, HOST, &[], &[]));
    assert!(matches!(session.poll_output(start), Output::Transmit(_)));
    let mut now = start;
    for k in 1..=4u32 {
        let deadline = start + Duration::from_secs(5) * k;
        assert_eq!(session.poll_output(now), Output::Wait(deadline));
        now = deadline;
        assert_eq!(
            session.poll_output(now),
            Output::Transmit(b"2\r\n\r\n\r\n".to_vec())
        );
    }
}

#[test]
fn repeat_paces_messages_and_inserts_keep_alives() {
    let plan = AttemptPlan::ok(vec![Step::Repeat(
        Repeat::endless(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])
            .with_count(7)
            .with_interval(Duration::from_millis(100))
            .with_keep_alive_every(3),
    )]);
    let (played, body) = body_of(plan);
    assert_eq!(body, b"a\r\nb\r\nc\r\n\r\na\r\nb\r\nc\r\n\r\na\r\n");
    assert_eq!(played.waits.len(), 6, "a wait between two messages");
    let gaps: Vec<Duration> = played.waits.windows(2).map(|w| w[1].1 - w[0].1).collect();
    assert!(gaps.iter().all(|g| *g == Duration::from_millis(100)));
}

#[test]
fn never_answering_and_half_head_plans() {
    let (played, session) = run(AttemptPlan::never_answers(), &[], &[], usize::MAX);
    assert!(played.bytes.is_empty());
    assert_eq!(played.ended, "idle");
    assert!(session.record().signature_ok && session.record().request_complete());
    assert_eq!(session.record().status, None);

    let (played, session) = run(AttemptPlan::half_head(), &[], &[], usize::MAX);
    let full: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(played.bytes, &full[..full.len() / 2]);
    assert_eq!(played.ended, "close");
    assert!(!session.closed_cleanly());
}

#[test]
fn eof_from_the_client_ends_the_session() {
    let start = Instant::now();
    let mut session = Session::new(AttemptPlan::never_answers(), &creds(), 0, start);
    session.handle_input(start, b"GET / HT");
    assert_eq!(session.poll_output(start), Output::Idle);
    session.handle_eof(start);
    assert_eq!(session.poll_output(start), Output::Close);
    assert!(!session.record().request_complete());
    assert!(!session.closed_cleanly());
}

// ---- built-in scenarios ----

#[test]
fn steady_streams_realistic_messages_with_keep_alives() {
    let plan = Scenario::builtin("steady").unwrap().plan_for(0);
    let (played, _) = run(plan, &[("follow", "783214")], &[], 600_000);
    assert_eq!(played.ended, "limit", "steady never ends by itself");
    let decoded = decode(&played.bytes);
    let (items, _) = split_crlf(&decoded.body);
    let msgs = messages(&items);
    assert!(msgs.len() > 100);
    assert!(msgs[0].starts_with(b"{\"control\":"));
    assert!(msgs[1].starts_with(b"{\"for_user\":783214,\"message\":{\"friends\":["));
    for m in &msgs {
        serde_json::from_slice::<serde_json::Value>(m).expect("valid JSON");
    }
    assert!(items.contains(&Item::KeepAlive));
    // A message every 100 ms of script time.
    let gaps: Vec<Duration> = played.waits.windows(2).map(|w| w[1].1 - w[0].1).collect();
    assert!(gaps.iter().all(|g| *g == Duration::from_millis(100)));
}

#[test]
fn firehose_sends_without_waits_in_unaligned_chunks() {
    let plan = Scenario::builtin("firehose").unwrap().plan_for(0);
    let (played, _) = run(plan, &[("delimited", "length")], &[], 4_000_000);
    assert!(played.waits.is_empty());
    assert_eq!(played.ended, "limit");
    let decoded = decode(&played.bytes);
    assert!(decoded
        .chunk_sizes
        .iter()
        .all(|s| (16..=32 * 1024).contains(s)));
    let (items, _) = split_length(&decoded.body);
    let msgs = messages(&items);
    assert!(msgs.len() > 400, "{}", msgs.len());
    for m in &msgs[1..] {
        assert!(m.starts_with(b"{\"for_user\":"));
        assert!((2_000..=7_600).contains(&m.len()));
    }
}

#[test]
fn flaky_plays_each_failure_in_turn() {
    let scenario = Scenario::builtin("flaky").unwrap();
    let statuses: Vec<Option<u16>> = (0..7)
        .map(|i| {
            let (played, session) = run(scenario.plan_for(i), &[], &[], 2_000_000);
            if i == 1 {
                assert!(
                    !session.closed_cleanly(),
                    "attempt 1 is dropped mid-message"
                );
                assert!(!decode(&played.bytes).complete);
            }
            if i == 4 {
                let (items, _) = split_crlf(&decode(&played.bytes).body);
                let last = messages(&items).pop().unwrap();
                assert!(last.starts_with(b"{\"disconnect\":"));
            }
            session.record().status
        })
        .collect();
    assert_eq!(
        statuses,
        [
            Some(503),
            Some(200),
            Some(420),
            Some(200),
            Some(200),
            None,
            Some(200)
        ]
    );
}

// ----- control streams -----

/// A signed control request from an independent signer.
fn control_request(method: &str, path: &str, form: &[(&str, &str)]) -> Vec<u8> {
    let url = format!("http://{HOST}{path}");
    let (auth, _) = sign(method, &url, form, &creds(), "nonce-control", "1318622958");
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| format!("{}={}", testutil::pct(k), testutil::pct(v)))
        .collect();
    let body = body.join("&");
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: {auth}\r\n");
    if method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    request.into_bytes()
}

/// Runs one control request through a fresh session; returns the status and body.
fn control_call(
    streams: &ControlStreams,
    index: usize,
    request: &[u8],
) -> (u16, String, AttemptRecord) {
    let t0 = Instant::now();
    let mut session = Session::new(AttemptPlan::ok(vec![Step::KeepAlive]), &creds(), index, t0)
        .with_control(streams.clone());
    session.handle_input(t0, request);
    let played = play(&mut session, t0, usize::MAX);
    assert_eq!(
        played.ended, "close",
        "a control answer closes the connection"
    );
    let decoded = decode(&played.bytes);
    (
        decoded.status,
        String::from_utf8(decoded.body).expect("UTF-8 body"),
        session.record().clone(),
    )
}

#[test]
fn a_stream_announces_its_own_control_stream_and_requests_change_it() {
    let streams = ControlStreams::new();
    let t0 = Instant::now();
    let plan = AttemptPlan::ok(vec![Step::Control, Step::KeepAlive]).with_end(End::Stall);
    let mut stream = Session::new(plan, &creds(), 4, t0).with_control(streams.clone());
    stream.handle_input(
        t0,
        &site_request(
            &creds(),
            false,
            HOST,
            &[("follow", "12,13"), ("with", "user")],
            &[],
        ),
    );
    let played = play(&mut stream, t0, usize::MAX);
    assert_eq!(played.ended, "idle");
    let (items, _) = split_crlf(&decode(&played.bytes).body);
    // As Twitter wrote it: `{"control":{"control_uri":"\/1.1\/site\/c\/sb_4"}}`.
    assert_eq!(
        items[0],
        Item::Message(br#"{"control":{"control_uri":"\/1.1\/site\/c\/sb_4"}}"#.to_vec())
    );
    assert_eq!(stream.record().announced.as_deref(), Some("sb_4"));
    assert_eq!(streams.get("sb_4").map(|s| s.follow), Some(vec![12, 13]));

    let add = control_request(
        "POST",
        "/1.1/site/c/sb_4/add_user.json",
        &[("user_id", "14,15")],
    );
    let (status, body, record) = control_call(&streams, 5, &add);
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(
        record.signature_ok,
        "the form body is part of the signature"
    );
    assert_eq!(record.form_param("user_id"), Some("14,15"));
    assert_eq!(record.status, Some(200));
    assert_eq!(
        streams.get("sb_4").map(|s| s.follow),
        Some(vec![12, 13, 14, 15])
    );

    let info = control_request("GET", "/1.1/site/c/sb_4/info.json", &[]);
    let (status, body, _) = control_call(&streams, 6, &info);
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["info"]["users"].as_array().map(Vec::len), Some(4));

    // A forged signature is refused before the registry is touched.
    let mut forged = add.clone();
    let at = forged.len() - 1;
    forged[at] = b'9';
    let (status, _, record) = control_call(&streams, 7, &forged);
    assert_eq!(status, 401);
    assert!(!record.signature_ok);
    assert_eq!(streams.get("sb_4").map(|s| s.follow.len()), Some(4));

    // Once the stream's connection ends, its id is unknown.
    stream.handle_eof(t0);
    assert!(streams.get("sb_4").is_none());
    let (status, body, _) = control_call(&streams, 8, &info);
    assert_eq!(status, 404);
    assert!(body.contains("unknown stream"), "{body}");
}

#[test]
fn a_dropped_or_failed_stream_leaves_no_control_stream() {
    let streams = ControlStreams::new();
    let t0 = Instant::now();
    let request = site_request(&creds(), false, HOST, &[("follow", "1")], &[]);
    {
        let plan = AttemptPlan::ok(vec![Step::Control]).with_end(End::Stall);
        let mut session = Session::new(plan, &creds(), 0, t0).with_control(streams.clone());
        session.handle_input(t0, &request);
        let _ = play(&mut session, t0, usize::MAX);
        assert_eq!(streams.streams().len(), 1);
    }
    assert!(
        streams.streams().is_empty(),
        "dropping the session retires it"
    );

    // A plan that closes by itself retires it too; an error status never registers one.
    let plan = AttemptPlan::ok(vec![Step::Control]);
    let mut session = Session::new(plan, &creds(), 1, t0).with_control(streams.clone());
    session.handle_input(t0, &request);
    assert_eq!(play(&mut session, t0, usize::MAX).ended, "close");
    assert!(streams.streams().is_empty());
    let plan = AttemptPlan::status(503, "Service Unavailable").with_steps(vec![Step::Control]);
    let mut session = Session::new(plan, &creds(), 2, t0).with_control(streams.clone());
    session.handle_input(t0, &request);
    let _ = play(&mut session, t0, usize::MAX);
    assert_eq!(session.record().announced, None);
    assert!(streams.streams().is_empty());
}

#[test]
fn without_a_registry_control_paths_play_the_plan() {
    let t0 = Instant::now();
    let plan = AttemptPlan::ok(vec![Step::Control, Step::Message(b"{}".to_vec())]);
    let mut session = Session::new(plan, &creds(), 9, t0);
    session.handle_input(
        t0,
        &control_request(
            "POST",
            "/1.1/site/c/sb_4/add_user.json",
            &[("user_id", "1")],
        ),
    );
    let played = play(&mut session, t0, usize::MAX);
    let (items, _) = split_crlf(&decode(&played.bytes).body);
    assert_eq!(
        items,
        [
            Item::Message(corpus::control("sb_9")),
            Item::Message(b"{}".to_vec())
        ]
    );
}
