//! Replays every committed fuzz seed (`fuzz/seeds/<target>/`) through the same entry points
//! the cargo-fuzz targets call, on stable: CI checks the seeds without nightly. Also checks that
//! the seeds cover the hostile cases they are there for, and that the harness's own pieces
//! (the reference splitter, the input encoding) are right.

#[path = "support/fuzz_logic.rs"]
#[allow(clippy::disallowed_methods)] // Instant::now() is only the base of virtual time there
mod fuzz_logic;

use std::path::{Path, PathBuf};

use bytes::BytesMut;
use fuzz_logic::{pieces, reference_frames, Chunk, FramerOutcome, Op, Setup, StreamInput, TARGETS};
use sitebucket_proto::{_benchable::Frame, FrameError};
use sitebucket_proto::{
    _benchable::{ContentDecoder, ContentEncoding},
    ChunkedError, DecodeError, Framing, HeadError, Outcome,
};

fn seed_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target)
}

/// Every seed of `target`, by file name, sorted.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = seed_dir(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("readable directory").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("readable seed"))
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// Runs `check` on every seed of `target`, naming the seed that fails.
fn replay<T>(target: &str, mut check: impl FnMut(&[u8]) -> T) -> Vec<(String, T)> {
    seeds(target)
        .into_iter()
        .map(|(name, data)| {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data)));
            match result {
                Ok(value) => (name, value),
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    panic!("fuzz/seeds/{target}/{name} fails: {what}");
                }
            }
        })
        .collect()
}

fn find<'a, T>(results: &'a [(String, T)], prefix: &str) -> Vec<&'a T> {
    let found: Vec<&T> = results
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(_, value)| value)
        .collect();
    assert!(!found.is_empty(), "no seed named {prefix}*");
    found
}

/// The names in a directory of the fuzz crate, with `suffix` cut off, sorted.
fn names_in(dir: &str, suffix: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(dir);
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|name| name.strip_suffix(suffix).map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[test]
fn the_replayed_targets_are_the_fuzz_crates_targets() {
    // `cargo xtask fuzz` runs what fuzz/fuzz_targets holds; this replays TARGETS.
    let mut targets: Vec<String> = TARGETS.iter().map(|t| t.to_string()).collect();
    targets.sort();
    assert_eq!(names_in("fuzz_targets", ".rs"), targets);
}

#[test]
fn every_target_has_a_seed_directory_and_no_stray_directory_exists() {
    let dirs = names_in("seeds", "");
    let mut targets: Vec<String> = TARGETS.iter().map(|t| t.to_string()).collect();
    targets.sort();
    assert_eq!(dirs, targets);
    for target in TARGETS {
        assert!(fuzz_logic::run_target(target, b""));
    }
    assert!(!fuzz_logic::run_target("nope", b""));
}

#[test]
fn message_seeds() {
    let results = replay("message", fuzz_logic::message);
    assert!(
        results.iter().any(|(_, decoded)| *decoded),
        "a seed that decodes"
    );
    assert!(
        results.iter().any(|(_, decoded)| !*decoded),
        "a seed that fails"
    );
}

#[test]
fn framer_seeds() {
    let results = replay("framer", fuzz_logic::framer);
    let realistic = find(&results, "scenario-");
    assert!(realistic
        .iter()
        .any(|o| o.error.is_none() && o.frames.len() >= 10));
    let errors: Vec<&FrameError> = results
        .iter()
        .filter_map(|(_, o)| o.error.as_ref())
        .collect();
    for wanted in ["TooLong", "InvalidCount", "CountTooManyDigits", "ZeroCount"] {
        assert!(
            errors.iter().any(|e| format!("{e:?}").starts_with(wanted)),
            "no framer seed ends in {wanted}"
        );
    }
    // The 99999999999 length prefix is refused as a count, before any of it is buffered.
    for outcome in find(&results, "hostile-length-99999999999") {
        assert_eq!(outcome.error, Some(FrameError::CountTooManyDigits));
    }
}

#[test]
fn chunked_seeds() {
    let results = replay("chunked", fuzz_logic::chunked);
    assert!(find(&results, "step-")
        .iter()
        .any(|o| o.done && o.payload.len() > 1000));
    for outcome in find(&results, "hostile-20-hex-digits") {
        assert_eq!(outcome.error, Some(ChunkedError::SizeTooManyDigits));
    }
    for outcome in find(&results, "hostile-negative-size") {
        assert_eq!(outcome.error, Some(ChunkedError::InvalidSizeByte(b'-')));
    }
    for outcome in find(&results, "hostile-endless-chunk") {
        assert_eq!((outcome.done, &outcome.error), (false, &None));
    }
}

#[test]
fn response_head_seeds() {
    let results = replay("response_head", fuzz_logic::response_head);
    let statuses: Vec<u16> = results
        .iter()
        .filter_map(|(_, o)| o.head.as_ref().map(|(h, _)| h.status))
        .collect();
    for status in [200, 401, 420, 503] {
        assert!(statuses.contains(&status), "no seed head with {status}");
    }
    for outcome in find(&results, "hostile-head-over-16k") {
        assert!(matches!(outcome.error, Some(HeadError::TooLarge { .. })));
    }
}

#[test]
fn gzip_body_seeds() {
    let results = replay("gzip_body", fuzz_logic::gzip_body);
    for outcome in find(&results, "hostile-bomb") {
        assert!(!outcome.capped);
        assert!(outcome.output.len() >= 8 << 20, "the bomb inflates");
        assert_eq!(outcome.reference.as_ref(), Some(&outcome.output));
    }
    assert!(find(&results, "scenario-")
        .iter()
        .any(|o| o.output.len() > 100_000));
    assert!(find(&results, "step-")
        .iter()
        .any(|o| o.finished && o.reference.as_ref() == Some(&o.output) && o.output.len() > 1000));
    for outcome in find(&results, "hostile-long-fname") {
        assert!(matches!(
            outcome.error,
            Some(DecodeError::GzipFieldTooLong { .. })
        ));
    }
}

#[test]
fn stream_seeds() {
    let results = replay("stream", fuzz_logic::stream);
    let total_messages: usize = results.iter().map(|(_, r)| r.messages).sum();
    assert!(total_messages > 100);
    let statuses: Vec<u16> = results
        .iter()
        .flat_map(|(_, r)| r.statuses.clone())
        .collect();
    for status in [200, 401, 420, 503] {
        assert!(statuses.contains(&status), "no stream seed sees {status}");
    }
    for scenario in ["steady", "flaky", "firehose"] {
        for report in find(&results, &format!("scenario-{scenario}")) {
            assert!(report.messages > 0, "{scenario}: {report:?}");
        }
    }
    let flaky = find(&results, "scenario-flaky-crlf-identity");
    let text = flaky[0].disconnects.join("\n");
    for wanted in [
        "HTTP 503",
        "HTTP 420",
        "closed by the server",
        "stall",
        "disconnect message",
    ] {
        assert!(text.contains(wanted), "flaky run lacks {wanted:?}:\n{text}");
    }
    let outcomes: Vec<&Outcome> = results
        .iter()
        .filter_map(|(_, r)| r.outcome.as_ref())
        .collect();
    assert!(outcomes.contains(&&Outcome::Stopped));
    assert!(outcomes.iter().any(|o| matches!(o, Outcome::GaveUp { .. })));
    assert!(outcomes.iter().any(|o| matches!(o, Outcome::Fatal { .. })));
}

#[test]
fn pieces_cover_the_input_in_order() {
    let data: Vec<u8> = (0..=255).collect();
    assert_eq!(pieces(&data, 0), vec![&data[..]]);
    assert_eq!(pieces(&data, 1).len(), data.len());
    for split in 2..=255u8 {
        let cut = pieces(&data, split);
        assert!(cut
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 1 << (split % 12)));
        assert_eq!(cut.concat(), data, "split {split}");
    }
    assert!(pieces(&data, 7).len() > 2, "a real split");
}

fn msg(s: &str) -> Frame {
    Frame::Message(s.as_bytes().to_vec().into())
}

#[test]
fn reference_splitter_follows_the_framing_rules() {
    let crlf = reference_frames(Framing::Crlf, 10, b"{\"a\":1}\r\n\r\n\nx\ny\r\nrest\r");
    assert_eq!(
        crlf,
        FramerOutcome {
            frames: vec![
                msg("{\"a\":1}"),
                Frame::KeepAlive,
                Frame::KeepAlive,
                msg("x\ny")
            ],
            error: None,
        }
    );
    assert_eq!(
        reference_frames(Framing::Crlf, 3, b"ab\r\nabcd").error,
        Some(FrameError::TooLong { limit: 3 })
    );
    assert_eq!(
        reference_frames(Framing::Crlf, 3, b"abc\r").error,
        None,
        "a final \\r may start the line end"
    );
    let length = reference_frames(
        Framing::Length,
        10,
        b"\r\n9\r\n{\"a\":1}\r\n3\nxyz2\r\n\r\n",
    );
    assert_eq!(
        length.frames,
        vec![
            Frame::KeepAlive,
            msg("{\"a\":1}"),
            msg("xyz"),
            Frame::KeepAlive
        ]
    );
    let cases: [(&[u8], FrameError); 5] = [
        (b"12a", FrameError::InvalidCount(b'a')),
        (b"5\rx", FrameError::InvalidCount(b'\r')),
        (b"0\r\n", FrameError::ZeroCount),
        (b"99999999999", FrameError::CountTooManyDigits),
        (b"13\r\n", FrameError::TooLong { limit: 10 }),
    ];
    for (input, error) in cases {
        assert_eq!(
            reference_frames(Framing::Length, 10, input).error,
            Some(error)
        );
    }
}

#[test]
fn stream_inputs_round_trip_through_arbitrary() {
    let input = StreamInput {
        setup: Setup {
            length_framing: true,
            gzip: true,
            max_message: 300,
            squared: true,
            jitter: 9,
            retry_limit: 3,
            stall_tenths: 7,
            connect_tenths: 65535,
        },
        ops: vec![
            Op::Connected,
            Op::Input(Chunk(b"HTTP/1.1 200 OK\r\n\r\n".to_vec())),
            Op::Input(Chunk(vec![])),
            Op::Eof,
            Op::ConnectFailed(250),
            Op::Advance(65535),
            Op::ToDeadline,
            Op::Timeout,
            Op::Disconnect,
            Op::ResetThrottles,
            Op::Input(Chunk(vec![7; 70])),
        ],
    };
    assert_eq!(StreamInput::from_bytes(&input.to_bytes()), input);
    // Short input: the setup reads zeros, the op list is empty.
    let empty = StreamInput::from_bytes(b"");
    assert!(empty.ops.is_empty());
    assert_eq!(empty.setup.max_message_bytes(), 1);
}

#[test]
fn the_stream_harness_sees_a_realistic_exchange() {
    let body = b"{\"control\":{\"control_uri\":\"/1.1/site/c/1_1_x\"}}\r\n\r\n{\"a\":1}\r\n";
    let mut wire = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        body.len()
    )
    .into_bytes();
    wire.extend_from_slice(body);
    wire.extend_from_slice(b"\r\n0\r\n\r\n");
    let input = StreamInput {
        setup: Setup::realistic(),
        ops: vec![
            Op::Connected,
            Op::Input(Chunk(wire)),
            Op::Eof,
            Op::ToDeadline,
            Op::Connected,
            Op::Disconnect,
        ],
    };
    let report = fuzz_logic::run_stream(&input);
    assert_eq!(report.connects, 2);
    assert_eq!(report.statuses, [200]);
    assert_eq!((report.messages, report.keep_alives), (2, 1));
    assert_eq!(report.disconnects, ["connection closed by the server"]);
    assert_eq!(report.outcome, Some(Outcome::Stopped));
}

#[test]
fn inflater_output_before_corrupt_data_depends_on_buffer_sizes() {
    // Why the harnesses compare only what both runs decoded when deflate data is corrupt
    // (found by the stream target): miniz_oxide hands out more or less of the output before
    // the error depending on the output window. The bytes themselves agree.
    let seed = std::fs::read(seed_dir("gzip_body").join("found-corrupt-output-varies")).unwrap();
    let decode = |window: usize| {
        let mut decoder = ContentDecoder::new(ContentEncoding::Gzip);
        decoder.push(&seed[3..]);
        let mut out = BytesMut::new();
        loop {
            match decoder.decode_into(&mut out, window) {
                Ok(0) => return (out, None),
                Ok(_) => {}
                Err(e) => return (out, Some(e)),
            }
        }
    };
    let (big, big_error) = decode(1 << 16);
    let (small, small_error) = decode(1000);
    for error in [&big_error, &small_error] {
        assert!(
            matches!(error, Some(DecodeError::Corrupt { .. })),
            "{error:?}"
        );
    }
    assert_ne!(big.len(), small.len());
    let n = big.len().min(small.len());
    assert_eq!(big[..n], small[..n]);
}
