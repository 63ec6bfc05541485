use super::*;
use crate::chunked::ChunkedError;

const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

/// Statuses of the heads seen, the frames, and the error reading stopped on.
type Outcome = (Vec<u16>, Vec<Frame>, Option<ReadError>);

/// How pieces are handed to the reader.
#[derive(Clone, Copy, Debug)]
enum Feed {
    /// `push(&[u8])`.
    Copy,
    /// `push_bytes`, each piece a slice of one `Bytes` holding the whole input.
    Slices,
    /// `push_bytes` and `push` in turn.
    Mixed,
}

/// Pushes `pieces` the `feed` way into a reader with `max` as message limit, draining
/// frames after each.
fn run_fed(pieces: &[&[u8]], feed: Feed, framing: Framing, max: usize) -> Outcome {
    let whole = Bytes::from(pieces.concat());
    let mut reader = ResponseReader::new(framing, max);
    let (mut heads, mut frames) = (Vec::new(), Vec::new());
    let mut at = 0;
    for (i, piece) in pieces.iter().enumerate() {
        let pushed = match feed {
            Feed::Slices => reader.push_bytes(whole.slice(at..at + piece.len())),
            Feed::Mixed if i % 2 == 0 => reader.push_bytes(whole.slice(at..at + piece.len())),
            Feed::Copy | Feed::Mixed => reader.push(piece),
        };
        at += piece.len();
        match pushed {
            Ok(Some(head)) => heads.push(head.status),
            Ok(None) => {}
            Err(e) => return (heads, frames, Some(e)),
        }
        loop {
            match reader.poll_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(reader.poll_frame(), Err(e.clone()), "sticky");
                    return (heads, frames, Some(e));
                }
            }
        }
    }
    (heads, frames, None)
}

/// Pushes `pieces` every way (copied, as slices of one `Bytes`, both in turn), asserts the
/// ways agree, and returns the outcome.
fn run_with(pieces: &[&[u8]], framing: Framing, max: usize) -> Outcome {
    let copied = run_fed(pieces, Feed::Copy, framing, max);
    for feed in [Feed::Slices, Feed::Mixed] {
        assert_eq!(run_fed(pieces, feed, framing, max), copied, "{feed:?}");
    }
    copied
}

/// [`run_with`] for CRLF framing and a limit of 100 bytes.
fn run(pieces: &[&[u8]]) -> Outcome {
    run_with(pieces, Framing::Crlf, 100)
}

#[test]
fn a_body_error_in_the_head_push_keeps_the_head_and_earlier_frames() {
    // Found by the response_head fuzz target (seed step-rawwire): the head and a chunk
    // whose data overruns its size arrived in one push, and push() returned only the
    // chunked error, so the 200 and the message before the error were lost.
    let mut wire = HEAD.to_vec();
    wire.extend_from_slice(b"9\r\n{\"a\":1}\r\n\r\n5\r\n{}\r\n\r\n");
    let expected = (
        vec![200],
        vec![
            Frame::Message(b"{\"a\":1}".to_vec().into()),
            // The bad chunk's 5 data bytes, `{}\r\n\r`, were delivered before the `\n`
            // where its line end belongs: they complete one more message.
            Frame::Message(b"{}".to_vec().into()),
        ],
        Some(ReadError::Chunked(ChunkedError::MissingCrlfAfterData(
            b'\n',
        ))),
    );
    assert_eq!(run(&[&wire]), expected, "one push");
    let bytes: Vec<&[u8]> = wire.chunks(1).collect();
    assert_eq!(run(&bytes), expected, "byte by byte");
    let (head, body) = wire.split_at(HEAD.len());
    assert_eq!(run(&[head, body]), expected, "head, then body");
}

#[test]
fn bytes_after_the_body_are_an_error_in_any_split() {
    // After the last chunk, and past Content-Length: the frames of the body come out,
    // then the error, whatever the split.
    let mut chunked = HEAD.to_vec();
    chunked.extend_from_slice(b"9\r\n{\"a\":1}\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n");
    let sized = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"a\":1}\r\nxyz".to_vec();
    let empty = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nx".to_vec();
    for (wire, first_byte, frames) in [(chunked, b'H', 1), (sized, b'x', 1), (empty, b'x', 0)] {
        let message = Frame::Message(b"{\"a\":1}".to_vec().into());
        let expected = (
            vec![200],
            vec![message; frames],
            Some(ReadError::AfterBody { first_byte }),
        );
        assert_eq!(run(&[&wire]), expected, "one push");
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(run(&bytes), expected, "byte by byte");
        for cut in 1..wire.len() {
            let (a, b) = wire.split_at(cut);
            assert_eq!(run(&[a, b]), expected, "cut at {cut}");
        }
    }
    // A body that ends exactly at the input's end is no error.
    let mut clean = HEAD.to_vec();
    clean.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(run(&[&clean]), (vec![200], vec![], None));
}

#[test]
fn messages_decoded_in_the_same_step_as_a_gzip_error_are_handed_out() {
    // Found by the gzip_body fuzz target's split check: a member whose CRC-32 is wrong
    // is decoded, trailer included, in one step; the two messages in it were decoded into
    // the framer and then dropped with the error. Byte by byte they came out.
    use flate2::write::GzEncoder;
    use std::io::Write;
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(b"{\"a\":1}\r\n{\"b\":2}\r\n").unwrap();
    let mut gzip = encoder.finish().unwrap();
    let crc_at = gzip.len() - 8;
    gzip[crc_at] ^= 1;
    let mut wire = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n".to_vec();
    wire.extend_from_slice(&gzip);
    let (heads, frames, error) = run(&[&wire]);
    assert_eq!(heads, [200]);
    assert_eq!(
        frames,
        [
            Frame::Message(b"{\"a\":1}".to_vec().into()),
            Frame::Message(b"{\"b\":2}".to_vec().into())
        ]
    );
    assert!(matches!(
        error,
        Some(ReadError::Decode(DecodeError::GzipCrcMismatch { .. }))
    ));
    let bytes: Vec<&[u8]> = wire.chunks(1).collect();
    assert_eq!(run(&bytes), (heads, frames, error), "byte by byte");
    // Found, the error drops what followed it, and what comes later.
    let mut reader = ResponseReader::new(Framing::Crlf, 100);
    wire.extend_from_slice(&gzip);
    reader.push(&wire).unwrap();
    while let Ok(Some(_)) = reader.poll_frame() {}
    assert!(matches!(reader.poll_frame(), Err(ReadError::Decode(_))));
    assert_eq!(reader.buffered(), 0);
    reader.push(&gzip).unwrap();
    assert_eq!(reader.buffered(), 0);
}

#[test]
fn compressed_bytes_before_a_chunked_error_are_still_decoded() {
    // Found by the stream fuzz target: with the chunked error kept for later, the gzip
    // bytes that came before it were no longer decoded, so their messages were lost (fed
    // byte by byte, they came out).
    use flate2::write::GzEncoder;
    use std::io::Write;
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(b"{\"a\":1}\r\n").unwrap();
    encoder.flush().unwrap();
    let gzip = encoder.get_ref().clone();
    let mut wire =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n".to_vec();
    wire.extend_from_slice(format!("{:x}\r\n", gzip.len()).as_bytes());
    wire.extend_from_slice(&gzip);
    wire.extend_from_slice(b"\r\nzz\r\n");
    let expected = (
        vec![200],
        vec![Frame::Message(b"{\"a\":1}".to_vec().into())],
        Some(ReadError::Chunked(ChunkedError::InvalidSizeByte(b'z'))),
    );
    assert_eq!(run(&[&wire]), expected, "one push");
    let bytes: Vec<&[u8]> = wire.chunks(1).collect();
    assert_eq!(run(&bytes), expected, "byte by byte");
}

#[test]
fn bytes_after_a_body_error_are_ignored() {
    let mut reader = ResponseReader::new(Framing::Crlf, 100);
    let mut wire = HEAD.to_vec();
    wire.extend_from_slice(b"zz\r\n");
    assert!(reader.push(&wire).unwrap().is_some());
    // The body is decoded as it is polled: the bytes wait until then.
    assert_eq!(reader.push(b"5\r\nabc\r\n\r\n"), Ok(None));
    assert_eq!(reader.buffered(), 14);
    let error = ReadError::Chunked(ChunkedError::InvalidSizeByte(b'z'));
    assert_eq!(reader.poll_frame(), Err(error.clone()));
    // Found, the error drops what followed it, and what comes later.
    assert_eq!(reader.buffered(), 0);
    assert_eq!(reader.push(b"5\r\nabc\r\n\r\n"), Ok(None));
    assert_eq!(reader.buffered(), 0);
    assert_eq!(reader.poll_frame(), Err(error.clone()));
    assert_eq!(
        error.to_string(),
        "bad chunked body: invalid byte 'z' in chunk size (expected hex digits)"
    );
}

#[test]
fn a_bad_head_is_still_an_error_from_push() {
    let mut reader = ResponseReader::new(Framing::Crlf, 100);
    assert!(matches!(
        reader.push(b"SSH-2.0-OpenSSH\r\n\r\n"),
        Err(ReadError::Head(_))
    ));
}

/// `data` as chunks of the given sizes (cycled), then the last chunk.
fn chunked(data: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = sizes
            .next()
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
        rest = tail;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn message(frame: &Option<Frame>) -> &Bytes {
    match frame {
        Some(Frame::Message(m)) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Whether `part` lies inside `whole`'s memory.
fn inside(part: &Bytes, whole: &Bytes) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

#[test]
fn identity_messages_are_slices_of_the_input() {
    // Chunked: a and b lie inside the first chunk, c straddles two chunks (so it alone is
    // copied), d lies inside the third.
    let mut wire = HEAD.to_vec();
    wire.extend_from_slice(b"12\r\n{\"a\":1}\r\n{\"b\":2}\r\n\r\n5\r\n{\"c\":\r\n");
    wire.extend_from_slice(b"d\r\n3}\r\n{\"d\":4}\r\n\r\n0\r\n\r\n");
    let input = Bytes::from(wire);
    let mut reader = ResponseReader::new(Framing::Crlf, 100);
    assert_eq!(
        reader.push_bytes(input.clone()).unwrap().map(|h| h.status),
        Some(200)
    );
    let frames: Vec<_> = std::iter::from_fn(|| reader.poll_frame().unwrap()).collect();
    let messages: Vec<&Bytes> = frames
        .iter()
        .map(|f| match f {
            Frame::Message(m) => m,
            Frame::KeepAlive => panic!("no keep-alive was sent"),
        })
        .collect();
    assert_eq!(
        messages,
        ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}", "{\"d\":4}"]
    );
    assert!(inside(messages[0], &input) && inside(messages[1], &input));
    assert!(
        !inside(messages[2], &input),
        "c straddles two chunks: a copy"
    );
    assert!(inside(messages[3], &input));
    assert!(reader.body_done());
    assert_eq!(reader.buffered(), 0);

    // Content-Length and until-EOF bodies, split over two pushes.
    for head in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
    ] {
        let first = Bytes::from([head, b"{\"a\":1}\r\n{\"b\""].concat());
        let second = Bytes::from_static(b":2}\r\n");
        let mut reader = ResponseReader::new(Framing::Crlf, 100);
        assert!(reader.push_bytes(first.clone()).unwrap().is_some());
        let a = reader.poll_frame().unwrap();
        assert_eq!(reader.poll_frame(), Ok(None));
        assert!(reader.push_bytes(second.clone()).unwrap().is_none());
        let b = reader.poll_frame().unwrap();
        assert_eq!(
            (&message(&a)[..], &message(&b)[..]),
            (&b"{\"a\":1}"[..], &b"{\"b\":2}"[..])
        );
        assert!(inside(message(&a), &first), "a lies inside the first push");
        assert!(!inside(message(&b), &first) && !inside(message(&b), &second));
    }
}

#[test]
fn decoded_bytes_reach_the_framer_one_step_at_a_time() {
    // 4 MiB of keep-alives in a few KiB of gzip: the reader never holds more than a step.
    use flate2::write::GzEncoder;
    use std::io::Write;
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..(2 << 20) {
        encoder.write_all(b"\r\n").unwrap();
    }
    encoder.write_all(b"{\"end\":1}\r\n").unwrap();
    let gzip = encoder.finish().unwrap();
    let mut wire = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n".to_vec();
    wire.extend_from_slice(&gzip);
    let mut reader = ResponseReader::new(Framing::Crlf, 100);
    reader.push_bytes(Bytes::from(wire)).unwrap();
    let (mut keep_alives, mut last) = (0, None);
    while let Some(frame) = reader.poll_frame().unwrap() {
        assert!(reader.buffered() <= gzip.len() + DECODE_STEP);
        match frame {
            Frame::KeepAlive => keep_alives += 1,
            Frame::Message(m) => last = Some(m),
        }
    }
    assert_eq!(keep_alives, 2 << 20);
    assert_eq!(last.as_deref(), Some(&b"{\"end\":1}"[..]));
}

mod split_invariance {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    /// A message: no `\r`, not starting with `\n`, maybe with bare `\n`s inside.
    fn message_strategy() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'x'), Just(b'"'), 0x20u8..0x7f],
            0..60,
        )
        .prop_map(|mut m| {
            m.insert(0, b'{');
            m
        })
    }

    fn body(items: &[Option<Vec<u8>>], framing: Framing) -> Vec<u8> {
        let mut out = Vec::new();
        for item in items {
            match (item, framing) {
                (None, _) => out.extend_from_slice(b"\r\n"),
                (Some(m), Framing::Crlf) => {
                    out.extend_from_slice(m);
                    out.extend_from_slice(b"\r\n");
                }
                (Some(m), Framing::Length) => {
                    out.extend_from_slice(format!("{}\r\n", m.len() + 2).as_bytes());
                    out.extend_from_slice(m);
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        out
    }

    /// `body` compressed like a streaming server: a sync flush every `flush_every` bytes.
    fn encode(body: &[u8], encoding: ContentEncoding, flush_every: usize) -> Vec<u8> {
        fn stream(mut w: impl Write, body: &[u8], every: usize) {
            for piece in body.chunks(every.max(1)) {
                w.write_all(piece).unwrap();
                w.flush().unwrap();
            }
        }
        let level = flate2::Compression::default();
        match encoding {
            ContentEncoding::Identity => body.to_vec(),
            ContentEncoding::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
                stream(&mut e, body, flush_every);
                e.finish().unwrap()
            }
            ContentEncoding::Deflate => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
                stream(&mut e, body, flush_every);
                e.finish().unwrap()
            }
        }
    }

    proptest! {
            #![proptest_config(ProptestConfig {
        cases: 64,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5173_b0c4),
        ..ProptestConfig::default()
    })]

            #[test]
            fn chunked_compressed_and_framed_the_same_however_fed(
                items in proptest::collection::vec(
                    proptest::option::weighted(0.85, message_strategy()), 0..24),
                chunk_sizes in proptest::collection::vec(1usize..200, 1..8),
                cuts in proptest::collection::vec(any::<usize>(), 0..12),
                encoding in prop_oneof![
                    Just(ContentEncoding::Identity),
                    Just(ContentEncoding::Gzip),
                    Just(ContentEncoding::Deflate),
                ],
                length in any::<bool>(),
                flush_every in 1usize..300,
            ) {
                let framing = if length { Framing::Length } else { Framing::Crlf };
                let encoded = encode(&body(&items, framing), encoding, flush_every);
                let mut wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n".to_vec();
                match encoding {
                    ContentEncoding::Identity => {}
                    ContentEncoding::Gzip => wire.extend_from_slice(b"Content-Encoding: gzip\r\n"),
                    ContentEncoding::Deflate => {
                        wire.extend_from_slice(b"Content-Encoding: deflate\r\n")
                    }
                }
                wire.extend_from_slice(b"\r\n");
                wire.extend_from_slice(&chunked(&encoded, &chunk_sizes));
                let expected: Outcome = (
                    vec![200],
                    items
                        .iter()
                        .map(|item| match item {
                            Some(m) => Frame::Message(Bytes::copy_from_slice(m)),
                            None => Frame::KeepAlive,
                        })
                        .collect(),
                    None,
                );
                // run_with checks push, push_bytes and both in turn agree.
                prop_assert_eq!(&run_with(&[&wire], framing, 100), &expected);
                prop_assert_eq!(&run_with(&crate::test_cuts::cut_at(&wire, &cuts), framing, 100), &expected);
                let bytes: Vec<&[u8]> = wire.chunks(1).collect();
                prop_assert_eq!(&run_with(&bytes, framing, 100), &expected);
            }
        }
}
