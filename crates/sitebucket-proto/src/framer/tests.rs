use super::*;
use proptest::prelude::*;

/// Frames seen, then the error that stopped framing, if any.
type Outcome = (Vec<Frame>, Option<FrameError>);

/// How pieces are handed to the framer.
#[derive(Clone, Copy, Debug)]
enum Feed {
    /// `push(&[u8])`.
    Copy,
    /// `push_bytes`, each piece a slice of one `Bytes` holding the whole input, as a
    /// driver reading into one block produces.
    Slices,
    /// Alternately `push_bytes` and `push`, starting with either.
    Mixed(bool),
}

const FEEDS: [Feed; 4] = [
    Feed::Copy,
    Feed::Slices,
    Feed::Mixed(false),
    Feed::Mixed(true),
];

/// Feeds `input` cut at `points` (sorted offsets) the `feed` way, draining frames after
/// each piece like a driver would.
fn frame_at(framing: Framing, max: usize, input: &[u8], points: &[usize], feed: Feed) -> Outcome {
    let whole = Bytes::copy_from_slice(input);
    let mut framer = Framer::new(framing, max);
    let mut frames = Vec::new();
    let ends = points.iter().copied().chain([input.len()]);
    let mut start = 0;
    for (i, end) in ends.enumerate() {
        let use_bytes = match feed {
            Feed::Copy => false,
            Feed::Slices => true,
            Feed::Mixed(first) => (i % 2 == 0) == first,
        };
        if use_bytes {
            framer.push_bytes(whole.slice(start..end));
        } else {
            framer.push(&input[start..end]);
        }
        start = end;
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    // Errors are sticky and the buffers are dropped.
                    assert_eq!(framer.next_frame(), Err(e.clone()));
                    framer.push_bytes(Bytes::from_static(b"1\r\nx\r\n"));
                    framer.push(b"1\r\nx\r\n");
                    assert_eq!(framer.buffered(), 0);
                    return (frames, Some(e));
                }
            }
        }
    }
    (frames, None)
}

/// `cuts` (any values) as sorted cut points of an input of `len` bytes.
fn points(len: usize, cuts: &[usize]) -> Vec<usize> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
    points.sort_unstable();
    points
}

/// Frames `input` whole, byte by byte and cut at `cuts`, fed every way; asserts all agree
/// and returns the outcome.
fn frame_all(framing: Framing, max: usize, input: &[u8], cuts: &[usize]) -> Outcome {
    let whole = frame_at(framing, max, input, &[], Feed::Copy);
    let bytes: Vec<usize> = (1..input.len()).collect();
    for feed in FEEDS {
        for at in [&[][..], &bytes, &points(input.len(), cuts)] {
            assert_eq!(
                frame_at(framing, max, input, at, feed),
                whole,
                "{feed:?} cut at {at:?}"
            );
        }
    }
    whole
}

/// Frames whole and byte by byte, every way; asserts they agree, returns the outcome.
fn frame_both(framing: Framing, max: usize, input: &[u8]) -> Outcome {
    frame_all(framing, max, input, &[])
}

fn msg(s: &str) -> Frame {
    Frame::Message(Bytes::copy_from_slice(s.as_bytes()))
}

/// Whether `part` lies inside `whole`'s memory.
fn inside(part: &Bytes, whole: &Bytes) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

fn next_message(framer: &mut Framer) -> Bytes {
    match framer.next_frame() {
        Ok(Some(Frame::Message(m))) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn crlf_messages_keepalives_and_bare_newlines() {
    let (frames, err) = frame_both(
        Framing::Crlf,
        100,
        b"{\"a\":1}\r\n\r\n\ntext\nwith\nlines\r\n\r\npartial",
    );
    assert_eq!(err, None);
    assert_eq!(
        frames,
        vec![
            msg("{\"a\":1}"),
            Frame::KeepAlive,
            Frame::KeepAlive,
            msg("text\nwith\nlines"),
            Frame::KeepAlive,
        ]
    );
}

#[test]
fn crlf_split_between_cr_and_lf() {
    let mut framer = Framer::new(Framing::Crlf, 100);
    framer.push_bytes(Bytes::from_static(b"abc\r"));
    assert_eq!(framer.next_frame(), Ok(None));
    assert_eq!(framer.buffered(), 4);
    framer.push(b"\n\r");
    assert_eq!(framer.next_frame(), Ok(Some(msg("abc"))));
    assert_eq!(framer.next_frame(), Ok(None));
    framer.push_bytes(Bytes::from_static(b"\n"));
    assert_eq!(framer.next_frame(), Ok(Some(Frame::KeepAlive)));
    assert_eq!(framer.buffered(), 0);
    // A `\r` that is not followed by `\n` belongs to the message.
    framer.push_bytes(Bytes::from_static(b"x\r"));
    assert_eq!(framer.next_frame(), Ok(None));
    framer.push_bytes(Bytes::from_static(b"y\ny\r"));
    assert_eq!(framer.next_frame(), Ok(None));
    framer.push_bytes(Bytes::from_static(b"\nz\r\n"));
    assert_eq!(framer.next_frame(), Ok(Some(msg("x\ry\ny"))));
    assert_eq!(framer.next_frame(), Ok(Some(msg("z"))));
}

#[test]
fn messages_inside_one_segment_are_slices_of_it() {
    for (framing, wire) in [
        (Framing::Crlf, &b"hello\r\nworld\r\n\r\n\nbye\r\n"[..]),
        (
            Framing::Length,
            &b"7\r\nhello\r\n7\r\nworld\r\n\r\n5\r\nbye\r\n"[..],
        ),
    ] {
        let input = Bytes::copy_from_slice(wire);
        let mut framer = Framer::new(framing, 100);
        framer.push_bytes(input.clone());
        let mut messages = Vec::new();
        while let Some(frame) = framer.next_frame().unwrap() {
            if let Frame::Message(m) = frame {
                assert!(inside(&m, &input), "{framing:?}: {m:?} was copied");
                messages.push(m);
            }
        }
        assert_eq!(messages, ["hello", "world", "bye"], "{framing:?}");
        // The first message starts where the input does (after a count line).
        let skip = if framing == Framing::Length { 3 } else { 0 };
        assert_eq!(
            messages[0].as_ptr() as usize,
            input.as_ptr() as usize + skip
        );
    }
}

#[test]
fn only_the_straddling_message_is_copied() {
    for framing in [Framing::Crlf, Framing::Length] {
        let (first, second): (&[u8], &[u8]) = match framing {
            Framing::Crlf => (b"one\r\ntw", b"o\r\nthree\r\nfo"),
            Framing::Length => (b"5\r\none\r\n5\r\ntw", b"o\r\n7\r\nthree\r\n6\r\nfo"),
        };
        let (a, b) = (Bytes::from_static(first), Bytes::from_static(second));
        let mut framer = Framer::new(framing, 100);
        framer.push_bytes(a.clone());
        framer.push_bytes(b.clone());
        let one = next_message(&mut framer);
        let two = next_message(&mut framer);
        let three = next_message(&mut framer);
        assert_eq!(
            (&one[..], &two[..], &three[..]),
            (&b"one"[..], &b"two"[..], &b"three"[..])
        );
        assert!(
            inside(&one, &a),
            "{framing:?}: one is a slice of the first push"
        );
        assert!(
            !inside(&two, &a) && !inside(&two, &b),
            "{framing:?}: two is a copy"
        );
        assert!(
            inside(&three, &b),
            "{framing:?}: back to slices after the copy"
        );
        assert_eq!(framer.next_frame(), Ok(None));
        // Drained, the framer keeps a copy of the unfinished message (`fo`, its count
        // line already read), not the segment.
        assert_eq!(framer.buffered(), 2);
        drop((one, two, three, a));
        let b = Bytes::copy_from_slice(&b); // A uniquely owned segment, for the check.
        let mut framer = Framer::new(framing, 100);
        framer.push_bytes(b.clone());
        while let Ok(Some(_)) = framer.next_frame() {}
        assert!(
            b.is_unique(),
            "{framing:?}: a drained framer pins no input block"
        );
    }
}

#[test]
fn push_buffer_mut_and_push_bytes_keep_their_order() {
    let mut framer = Framer::new(Framing::Crlf, 100);
    framer.push_bytes(Bytes::from_static(b"a"));
    framer.buffer_mut().extend_from_slice(b"b");
    framer.push(b"c");
    framer.push_bytes(Bytes::from_static(b"d\r"));
    framer.push(b"\ne\r\n");
    assert_eq!(framer.buffered(), 9);
    assert_eq!(framer.next_frame(), Ok(Some(msg("abcd"))));
    assert_eq!(framer.next_frame(), Ok(Some(msg("e"))));
    assert_eq!(framer.next_frame(), Ok(None));
    assert_eq!(framer.buffered(), 0);
}

#[test]
fn crlf_limit_is_exact_and_immediate() {
    let limit = 10;
    let ok = format!("{}\r\n", "x".repeat(limit));
    assert_eq!(
        frame_both(Framing::Crlf, limit, ok.as_bytes()),
        (vec![msg(&"x".repeat(limit))], None)
    );
    let too_long = format!("{}\r\n", "x".repeat(limit + 1));
    assert_eq!(
        frame_both(Framing::Crlf, limit, too_long.as_bytes()),
        (vec![], Some(FrameError::TooLong { limit }))
    );
    // Without any terminator: limit bytes plus a `\r` wait, one more byte fails at once,
    // whichever way the bytes came in.
    for feed in FEEDS {
        let mut framer = Framer::new(Framing::Crlf, limit);
        let wire = format!("{}\r", "x".repeat(limit));
        let pieces = [&wire.as_bytes()[..4], &wire.as_bytes()[4..]];
        for (i, piece) in pieces.into_iter().enumerate() {
            if matches!(feed, Feed::Slices) || matches!(feed, Feed::Mixed(f) if f == (i == 0)) {
                framer.push_bytes(Bytes::copy_from_slice(piece));
            } else {
                framer.push(piece);
            }
            assert_eq!(framer.next_frame(), Ok(None), "{feed:?}");
        }
        framer.push_bytes(Bytes::from_static(b"y"));
        let err = framer.next_frame().unwrap_err();
        assert_eq!(err, FrameError::TooLong { limit }, "{feed:?}");
        assert_eq!(
            err.to_string(),
            "message is longer than the limit of 10 bytes"
        );
    }
    let mut framer = Framer::new(Framing::Crlf, limit);
    framer.push_bytes(Bytes::from("x".repeat(limit + 1)));
    assert_eq!(framer.next_frame(), Err(FrameError::TooLong { limit }));
    // A big push is refused at once and dropped; clear() makes the framer usable again.
    framer.push(b"ignored\r\n");
    framer.push_bytes(Bytes::from_static(b"ignored\r\n"));
    framer.buffer_mut().extend_from_slice(b"ignored\r\n");
    assert_eq!(framer.next_frame(), Err(FrameError::TooLong { limit }));
    assert_eq!(framer.buffered(), 0);
    framer.clear();
    framer.push_bytes(Bytes::from_static(b"ok\r\n"));
    assert_eq!(framer.next_frame(), Ok(Some(msg("ok"))));
    // A message over the limit inside one segment is refused before anything is copied.
    let mut framer = Framer::new(Framing::Crlf, limit);
    framer.push_bytes(Bytes::from(format!(
        "ok\r\n{}\r\nok\r\n",
        "z".repeat(limit + 1)
    )));
    assert_eq!(framer.next_frame(), Ok(Some(msg("ok"))));
    assert_eq!(framer.next_frame(), Err(FrameError::TooLong { limit }));
}

#[test]
fn crlf_scanning_is_linear() {
    // 1 MiB fed one byte at a time, next_frame after each: each byte is searched once,
    // whether the bytes are copied in or handed over as segments.
    let body: Vec<u8> = (0..1024 * 1024)
        .map(|i| if i % 1000 == 999 { b'\n' } else { b'a' })
        .collect();
    let whole = Bytes::from(body.clone());
    for feed in FEEDS {
        let mut framer = Framer::new(Framing::Crlf, 2 * 1024 * 1024);
        for i in 0..body.len() {
            let use_bytes = match feed {
                Feed::Copy => false,
                Feed::Slices => true,
                Feed::Mixed(first) => (i % 2 == 0) == first,
            };
            if use_bytes {
                framer.push_bytes(whole.slice(i..i + 1));
            } else {
                framer.push(&body[i..i + 1]);
            }
            assert_eq!(framer.next_frame(), Ok(None));
        }
        framer.push(b"\r\n");
        assert_eq!(&next_message(&mut framer)[..], &body[..]);
        assert!(
            framer.scan_work() <= body.len() + 2,
            "{feed:?}: scanned {} bytes for {}",
            framer.scan_work(),
            body.len()
        );
    }
    // Whole messages in big segments are searched once too.
    let mut framer = Framer::new(Framing::Crlf, 2000);
    let wire = Bytes::from("x\ny".repeat(300) + "\r\n");
    for _ in 0..100 {
        framer.push_bytes(wire.clone());
        assert_eq!(next_message(&mut framer).len(), wire.len() - 2);
    }
    assert_eq!(framer.scan_work(), 100 * wire.len());
}

#[test]
fn length_mode_frames_and_keepalives() {
    let input = b"\r\n\n9\r\n{\"a\":1}\r\n\r\n16\r\nline\nbreak\r\nab\r\n3\nxyz2\r\n\r\n";
    let (frames, err) = frame_both(Framing::Length, 100, input);
    assert_eq!(err, None);
    assert_eq!(
        frames,
        vec![
            Frame::KeepAlive,
            Frame::KeepAlive,
            msg("{\"a\":1}"),
            Frame::KeepAlive,
            msg("line\nbreak\r\nab"),
            msg("xyz"),
            Frame::KeepAlive,
        ]
    );
}

#[test]
fn length_mode_count_errors() {
    let cases: [(&[u8], FrameError); 7] = [
        (b"12a\r\n", FrameError::InvalidCount(b'a')),
        (b"-5\r\n", FrameError::InvalidCount(b'-')),
        (b"5\rx", FrameError::InvalidCount(b'\r')),
        (b"5\r\r\n", FrameError::InvalidCount(b'\r')),
        (b"0\r\n", FrameError::ZeroCount),
        (b"12345678901", FrameError::CountTooManyDigits),
        (b"99999999999\r\n", FrameError::CountTooManyDigits),
    ];
    for (input, expected) in cases {
        assert_eq!(
            frame_both(Framing::Length, 100, input),
            (vec![], Some(expected.clone()))
        );
        assert!(!expected.to_string().is_empty());
    }
    assert!(FrameError::InvalidCount(b'a').to_string().contains("'a'"));
}

#[test]
fn length_mode_limit_is_decided_from_the_count() {
    let limit = 10;
    // Ten digits, huge count: refused from the count line alone, nothing buffered.
    let mut framer = Framer::new(Framing::Length, limit);
    framer.push_bytes(Bytes::from_static(b"99999"));
    assert_eq!(framer.next_frame(), Ok(None));
    framer.push_bytes(Bytes::from_static(b"99999\r"));
    assert_eq!(framer.next_frame(), Ok(None));
    framer.push_bytes(Bytes::from_static(b"\n"));
    assert_eq!(framer.next_frame(), Err(FrameError::TooLong { limit }));
    // Count limit + 3: even without its `\r\n` the payload is too long.
    let mut framer = Framer::new(Framing::Length, limit);
    framer.push(b"13\r\n");
    assert_eq!(framer.next_frame(), Err(FrameError::TooLong { limit }));
    // Count limit + 2 ending in `\r\n`: exactly at the limit, fine.
    let ok = format!("12\r\n{}\r\n", "x".repeat(limit));
    assert_eq!(
        frame_both(Framing::Length, limit, ok.as_bytes()),
        (vec![msg(&"x".repeat(limit))], None)
    );
    // Count limit + 2 not ending in `\r\n`: one byte too long.
    let bad = format!("12\r\n{}", "x".repeat(limit + 2));
    assert_eq!(
        frame_both(Framing::Length, limit, bad.as_bytes()),
        (vec![], Some(FrameError::TooLong { limit }))
    );
    // Count limit without a `\r\n`: the whole frame is the message, at the limit.
    let raw = format!("10\r\n{}", "y".repeat(limit));
    assert_eq!(
        frame_both(Framing::Length, limit, raw.as_bytes()),
        (vec![msg(&"y".repeat(limit))], None)
    );
}

/// A message body: no `\r`, not starting with `\n`, not empty.
fn message_strategy() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(b'{'), Just(b'a'), Just(b'7')],
        proptest::collection::vec(
            prop_oneof![
                Just(b'\n'),
                Just(b'"'),
                Just(b'x'),
                Just(b'1'),
                (0x20u8..0x7f),
                Just(0xc3u8)
            ],
            0..40,
        ),
    )
        .prop_map(|(first, mut rest)| {
            rest.insert(0, first);
            rest
        })
}

/// `None` is a keep-alive, `Some` a message.
fn stream_strategy() -> impl Strategy<Value = Vec<Option<Vec<u8>>>> {
    proptest::collection::vec(proptest::option::weighted(0.8, message_strategy()), 0..20)
}

fn expected_frames(items: &[Option<Vec<u8>>]) -> Vec<Frame> {
    items
        .iter()
        .map(|item| match item {
            Some(m) => Frame::Message(Bytes::copy_from_slice(m)),
            None => Frame::KeepAlive,
        })
        .collect()
}

fn encode_crlf(items: &[Option<Vec<u8>>], lone_lf_keepalives: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        match item {
            Some(m) => {
                out.extend_from_slice(m);
                out.extend_from_slice(b"\r\n");
            }
            None if lone_lf_keepalives => out.push(b'\n'),
            None => out.extend_from_slice(b"\r\n"),
        }
    }
    out
}

fn encode_length(items: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        match item {
            Some(m) => {
                out.extend_from_slice(format!("{}\r\n", m.len() + 2).as_bytes());
                out.extend_from_slice(m);
                out.extend_from_slice(b"\r\n");
            }
            None => out.extend_from_slice(b"\r\n"),
        }
    }
    out
}

proptest! {
    #[test]
    fn split_invariance_on_valid_streams(
        items in stream_strategy(),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
        lone_lf in any::<bool>(),
    ) {
        let expected = (expected_frames(&items), None);
        for (framing, input) in [
            (Framing::Crlf, encode_crlf(&items, lone_lf)),
            (Framing::Length, encode_length(&items)),
        ] {
            prop_assert_eq!(frame_all(framing, 64, &input, &cuts), expected.clone());
        }
    }

    #[test]
    fn split_invariance_on_arbitrary_bytes(
        input in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'1'), Just(b'5'), Just(b'x'), any::<u8>()],
            0..200,
        ),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
        max in 0usize..12,
    ) {
        for framing in [Framing::Crlf, Framing::Length] {
            // frame_all asserts every feed and split gives the same outcome.
            frame_all(framing, max, &input, &cuts);
        }
    }

    #[test]
    fn buffered_memory_stays_bounded(
        input in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'a')], 0..400),
        piece in 1usize..20,
    ) {
        let max = 16;
        let whole = Bytes::from(input.clone());
        for (framing, bound) in [(Framing::Crlf, max + 1), (Framing::Length, max + 2)] {
            let mut framer = Framer::new(framing, max);
            for (i, chunk) in input.chunks(piece).enumerate() {
                if i % 3 == 0 {
                    framer.push(chunk);
                } else {
                    let start = i * piece;
                    framer.push_bytes(whole.slice(start..start + chunk.len()));
                }
                while let Ok(Some(_)) = framer.next_frame() {}
                prop_assert!(framer.buffered() <= bound);
            }
        }
    }
}
