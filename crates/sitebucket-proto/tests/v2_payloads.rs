//! Real X API v2 stream payloads (`tests/fixtures/v2/`, provenance in its README) decode to
//! typed v2 envelopes, and go through a v2 `SiteStream` as a server would send them: the
//! operational disconnect makes it reconnect, everything else is a message.

use std::path::Path;
use std::time::{Duration, Instant};

use sitebucket_proto::v2::{V2Data, V2Message};
use sitebucket_proto::{Action, SiteStream, StreamError, StreamEvent};
use sitebucket_proto::{Api, BearerToken, Config};

fn read(name: &str) -> Vec<u8> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v2")
        .join(name);
    std::fs::read(&full).unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()))
}

fn twarc_lines() -> Vec<Vec<u8>> {
    read("twarc_csv_streaming_output_with_error.jsonl")
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn twarc_stream_output_decodes_to_typed_envelopes() {
    let lines = twarc_lines();
    assert_eq!(lines.len(), 8);
    let (complete, cut) = lines.split_at(7);
    for line in complete {
        let message = V2Message::from_slice(line).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(message.kind(), "tweet");
        let tweet = message.tweet().unwrap();
        assert!(tweet
            .id
            .as_deref()
            .is_some_and(|id| id.parse::<u64>().is_ok()));
        assert!(tweet.text.is_some() && tweet.author_id.is_some());
        // The rule id was a JSON number above 2^53: read exactly.
        assert_eq!(message.matching_rules.len(), 1);
        assert_eq!(message.matching_rules[0].id, "1377649934414049282");
        assert_eq!(message.matching_rules[0].tag, None);
        // twarc's own member is passed through, raw.
        assert_eq!(message.other.len(), 1);
        assert_eq!(message.other[0].0, "__twarc");
        assert!(message.other[0].1.get().contains("retrieved_at"));
        // The author is among the included users.
        let includes = message.includes.as_ref().unwrap();
        assert!(includes
            .users
            .iter()
            .any(|u| u.id.as_deref() == tweet.author_id.as_deref()));
        assert!(message.errors.is_empty());
    }
    // The first tweet quotes another: it comes in includes.tweets, with media and a place.
    let first = V2Message::from_slice(&lines[0]).unwrap();
    let includes = first.includes.as_ref().unwrap();
    assert_eq!(
        includes.tweets[0].id.as_deref(),
        Some("1377640162566496258")
    );
    assert_eq!(includes.media.len(), 1);
    assert_eq!(includes.places.len(), 1);
    assert_eq!(includes.users[1].username.as_deref(), Some("Manie_DS"));
    // Surrogate-pair escapes decode to the emoji.
    let second = V2Message::from_slice(&lines[1]).unwrap();
    let text = second.tweet().unwrap().text.as_deref().unwrap();
    assert!(text.ends_with("\u{1F60A}\u{1F499}\u{1F44D}\u{1F44F}\u{1F44F}\u{1F44F}\u{1F44F}\u{1F44F}\u{1F44F}\u{1F44F}\u{1F44F}"), "{text}");
    // The cut-off last line is not JSON.
    assert!(V2Message::from_slice(&cut[0]).is_err());
    assert!(matches!(first.data, Some(V2Data::Tweet(_))));
}

#[test]
fn the_problems_decode_and_only_the_disconnect_is_one() {
    let disconnect = read("go_twitter_operational_disconnect.json");
    let message = V2Message::from_slice(&disconnect).unwrap();
    assert!(message.is_operational_disconnect());
    assert_eq!(
        message.errors[0].detail.as_deref(),
        Some("This stream has been disconnected upstream for operational reasons.")
    );
    let exception = read("go_twitter_connection_exception.json");
    let message = V2Message::from_slice(&exception).unwrap();
    assert!(!message.is_operational_disconnect());
    assert_eq!(message.kind(), "unknown");
    let names: Vec<&str> = message.other.iter().map(|(k, _)| k.as_ref()).collect();
    assert_eq!(names, ["title", "detail", "connection_issue", "type"]);
}

fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in body.chunks(chunk.max(1)) {
        out.extend(format!("{:x}\r\n", piece.len()).into_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Runs one connection of a v2 stream over `input`, fed `cut` bytes at a time; returns the
/// messages handed out and the error it ended with, if any.
fn run(input: &[u8], cut: usize) -> (Vec<Vec<u8>>, Option<StreamError>) {
    let config = Config::v2_builder(Api::V2Filtered, BearerToken::new("t"))
        .url("http://127.0.0.1:1/2/tweets/search/stream")
        .rng_seed(1)
        .build()
        .unwrap();
    let mut stream = SiteStream::new(config);
    #[allow(clippy::disallowed_methods)] // The base of virtual time only.
    let now = Instant::now();
    let mut messages = Vec::new();
    let mut error = None;
    let mut drain = |stream: &mut SiteStream| loop {
        match stream.poll_action(now) {
            Action::Event(StreamEvent::Message(m)) => messages.push(m.to_vec()),
            Action::Event(StreamEvent::Disconnected { error: e, retry_in }) => {
                assert_eq!(retry_in, Duration::from_millis(250));
                error = Some(e);
            }
            Action::Wait(_) | Action::Finished(_) => break,
            _ => {}
        }
    };
    drain(&mut stream);
    stream.handle_connected(now, 1_700_000_000);
    drain(&mut stream);
    for piece in input.chunks(cut.max(1)) {
        stream.handle_input(now, piece);
        drain(&mut stream);
    }
    (messages, error)
}

#[test]
fn a_v2_stream_carries_the_real_payloads_and_reconnects_on_the_disconnect() {
    let mut body = Vec::new();
    let lines = twarc_lines();
    for line in &lines[..7] {
        body.extend_from_slice(line);
        body.extend_from_slice(b"\r\n\r\n"); // each message, then a keep-alive
    }
    let disconnect = read("go_twitter_operational_disconnect.json");
    body.extend_from_slice(&disconnect);
    body.extend_from_slice(b"\r\n");
    for (chunk, cut) in [(usize::MAX, usize::MAX), (4096, 1000), (7, 1)] {
        let input = chunked(&body, chunk);
        let (messages, error) = run(&input, cut);
        assert_eq!(messages.len(), 8, "chunk {chunk}, cut {cut}");
        assert_eq!(messages[..7], lines[..7]);
        assert_eq!(messages[7], disconnect);
        assert_eq!(
            error,
            Some(StreamError::OperationalDisconnect {
                disconnect_type: "UpstreamOperationalDisconnect".into(),
                detail: "This stream has been disconnected upstream for operational reasons."
                    .into()
            })
        );
    }
}
