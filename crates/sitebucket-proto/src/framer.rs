//! Splits a decoded body into messages, zero-copy.
//!
//! Two framings ([`Framing`]):
//!
//! - [`Framing::Crlf`]: each message ends in `\r\n`; a bare `\n` inside a message is kept. An
//!   empty line (`\r\n`, or a lone `\n` where a message would start) is a keep-alive. The
//!   framer remembers how far it has searched, so every byte is scanned once however the input
//!   is split.
//! - [`Framing::Length`] (`delimited=length`): a decimal byte count and a line end, then
//!   exactly that many bytes, which include the message's trailing `\r\n`. Blank lines before
//!   a count are keep-alives. A count too big for the limit is refused before any of its frame
//!   is buffered.
//!
//! Messages are handed out as [`Bytes`] split off the internal buffer: no copy.
//!
//! ```
//! use sitebucket_proto::framer::{Frame, Framer};
//! use sitebucket_proto::Framing;
//!
//! let mut framer = Framer::new(Framing::Crlf, 1024);
//! framer.push(b"{\"a\":1}\r\n\r\n{\"b\"");
//! assert_eq!(framer.next_frame().unwrap(), Some(Frame::Message("{\"a\":1}".into())));
//! assert_eq!(framer.next_frame().unwrap(), Some(Frame::KeepAlive));
//! assert_eq!(framer.next_frame().unwrap(), None);
//! framer.push(b":2}\r\n");
//! assert_eq!(framer.next_frame().unwrap(), Some(Frame::Message("{\"b\":2}".into())));
//! ```

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use crate::Framing;

/// The most decimal digits a `delimited=length` count may have.
pub const MAX_COUNT_DIGITS: usize = 10;

/// One unit of a message stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete message, without its trailing `\r\n`.
    Message(Bytes),
    /// A blank keep-alive line.
    KeepAlive,
}

/// Why the byte stream could not be framed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A message is longer than the framer's `max_message_bytes`.
    TooLong {
        /// The limit, `max_message_bytes`.
        limit: usize,
    },
    /// A byte other than a decimal digit or a line end in a `delimited=length` count.
    InvalidCount(u8),
    /// A `delimited=length` count with more than [`MAX_COUNT_DIGITS`] digits.
    CountTooManyDigits,
    /// A `delimited=length` count of zero.
    ZeroCount,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLong { limit } => {
                write!(f, "message is longer than the limit of {limit} bytes")
            }
            FrameError::InvalidCount(b) => write!(
                f,
                "invalid byte {:?} in a delimited=length count (expected decimal digits)",
                char::from(*b)
            ),
            FrameError::CountTooManyDigits => write!(
                f,
                "delimited=length count has more than {MAX_COUNT_DIGITS} digits"
            ),
            FrameError::ZeroCount => f.write_str("delimited=length count is zero"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Splits a byte stream into [`Frame`]s.
///
/// Feed bytes with [`push`](Self::push) (or write them into [`buffer_mut`](Self::buffer_mut)),
/// then call [`next_frame`](Self::next_frame) until it returns `Ok(None)`. The buffer holds at
/// most `max_message_bytes` plus a few bytes of framing, plus whatever one push added. After
/// an error the framer drops its buffer, ignores pushes and returns the same error until
/// [`clear`](Self::clear).
#[derive(Debug)]
pub struct Framer {
    framing: Framing,
    max_message_bytes: usize,
    buf: BytesMut,
    /// Crlf: bytes of `buf` already searched for `\n` without finding a message end.
    scanned: usize,
    /// Length: the size of the frame being waited for, once its count line was read.
    frame_len: Option<usize>,
    failed: Option<FrameError>,
    /// How many bytes `memchr` has been run over, to prove scanning stays linear.
    #[cfg(test)]
    scan_work: usize,
}

impl Framer {
    /// A framer for `framing` refusing messages longer than `max_message_bytes`.
    pub fn new(framing: Framing, max_message_bytes: usize) -> Self {
        Framer {
            framing,
            max_message_bytes,
            buf: BytesMut::new(),
            scanned: 0,
            frame_len: None,
            failed: None,
            #[cfg(test)]
            scan_work: 0,
        }
    }

    /// The framing in use.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Appends bytes to the buffer.
    pub fn push(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// The buffer, for a decoder to append decoded bytes straight into it.
    ///
    /// Only append: bytes already in the buffer must not be changed or removed.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// How many bytes are buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Drops all buffered bytes and any error, as after a reconnect.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.scanned = 0;
        self.frame_len = None;
        self.failed = None;
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = match self.framing {
            Framing::Crlf => self.next_crlf(),
            Framing::Length => self.next_length(),
        };
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.buf = BytesMut::new();
            self.scanned = 0;
            self.frame_len = None;
        }
        result
    }

    fn next_crlf(&mut self) -> Result<Option<Frame>, FrameError> {
        // `scanned <= buf.len()`: it is only set from positions within the buffer, the buffer
        // only grows between calls, and it is reset whenever bytes are split off. Should a
        // caller shrink the buffer through `buffer_mut` anyway, scan it again from the start.
        if self.scanned > self.buf.len() {
            self.scanned = 0;
        }
        while let Some(offset) = memchr::memchr(b'\n', &self.buf[self.scanned..]) {
            #[cfg(test)]
            {
                self.scan_work += offset + 1;
            }
            let newline = self.scanned + offset;
            if newline == 0 {
                // A lone `\n` where a message would start: a keep-alive.
                self.buf.advance(1);
                return Ok(Some(Frame::KeepAlive));
            }
            if self.buf[newline - 1] != b'\r' {
                // A bare `\n` inside a message is part of it. (In bounds: 0 < newline.)
                self.scanned = newline + 1;
                continue;
            }
            let len = newline - 1;
            self.scanned = 0;
            if len > self.max_message_bytes {
                return Err(FrameError::TooLong {
                    limit: self.max_message_bytes,
                });
            }
            if len == 0 {
                self.buf.advance(2);
                return Ok(Some(Frame::KeepAlive));
            }
            let message = self.buf.split_to(len).freeze();
            self.buf.advance(2);
            return Ok(Some(Frame::Message(message)));
        }
        #[cfg(test)]
        {
            self.scan_work += self.buf.len() - self.scanned;
        }
        self.scanned = self.buf.len();
        // No terminator yet. The pending message is the whole buffer, less a final `\r` that
        // may start its `\r\n`; refuse it now rather than buffer more.
        let pending = match self.buf.last() {
            Some(b'\r') => self.buf.len() - 1,
            _ => self.buf.len(),
        };
        if pending > self.max_message_bytes {
            return Err(FrameError::TooLong {
                limit: self.max_message_bytes,
            });
        }
        Ok(None)
    }

    fn next_length(&mut self) -> Result<Option<Frame>, FrameError> {
        let frame_len = match self.frame_len {
            Some(n) => n,
            None => match self.read_count()? {
                CountLine::NeedMore => return Ok(None),
                CountLine::KeepAlive => return Ok(Some(Frame::KeepAlive)),
                CountLine::Count(n) => {
                    self.frame_len = Some(n);
                    n
                }
            },
        };
        if self.buf.len() < frame_len {
            return Ok(None);
        }
        self.frame_len = None;
        let mut frame = self.buf.split_to(frame_len);
        if frame.ends_with(b"\r\n") {
            frame.truncate(frame_len - 2);
        }
        if frame.len() > self.max_message_bytes {
            return Err(FrameError::TooLong {
                limit: self.max_message_bytes,
            });
        }
        if frame.is_empty() {
            // A count of 2 framing a bare `\r\n` carries no message.
            return Ok(Some(Frame::KeepAlive));
        }
        Ok(Some(Frame::Message(frame.freeze())))
    }

    /// Reads a blank line or a count line from the start of the buffer, consuming it.
    fn read_count(&mut self) -> Result<CountLine, FrameError> {
        let mut value: u64 = 0;
        let mut digits = 0;
        for (i, &byte) in self.buf.iter().enumerate() {
            let line_end = match byte {
                b'0'..=b'9' => {
                    digits += 1;
                    if digits > MAX_COUNT_DIGITS {
                        return Err(FrameError::CountTooManyDigits);
                    }
                    // At most 10 digits: far below u64::MAX, but checked all the same.
                    value = value
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(byte - b'0')))
                        .ok_or(FrameError::CountTooManyDigits)?;
                    continue;
                }
                b'\n' => i + 1,
                b'\r' => match self.buf.get(i + 1) {
                    None => return Ok(CountLine::NeedMore),
                    Some(b'\n') => i + 2,
                    Some(_) => return Err(FrameError::InvalidCount(b'\r')),
                },
                other => return Err(FrameError::InvalidCount(other)),
            };
            self.buf.advance(line_end); // In bounds: line_end <= i + 2 <= buf.len().
            if digits == 0 {
                return Ok(CountLine::KeepAlive);
            }
            if value == 0 {
                return Err(FrameError::ZeroCount);
            }
            // The count includes the trailing `\r\n`, so the message is at least `value - 2`
            // bytes: refuse now if even that is too long (or the frame cannot be addressed).
            let too_long = FrameError::TooLong {
                limit: self.max_message_bytes,
            };
            let frame_len = usize::try_from(value).map_err(|_| too_long.clone())?;
            if frame_len.saturating_sub(2) > self.max_message_bytes {
                return Err(too_long);
            }
            return Ok(CountLine::Count(frame_len));
        }
        Ok(CountLine::NeedMore)
    }

    /// Bytes `memchr` has searched so far (tests only).
    #[cfg(test)]
    fn scan_work(&self) -> usize {
        self.scan_work
    }
}

/// What the start of the buffer holds in length mode.
enum CountLine {
    NeedMore,
    KeepAlive,
    Count(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Frames seen, then the error that stopped framing, if any.
    type Outcome = (Vec<Frame>, Option<FrameError>);

    /// Pushes `pieces` one at a time, draining frames after each, like a driver would.
    fn frame_pieces<'a>(
        framing: Framing,
        max: usize,
        pieces: impl IntoIterator<Item = &'a [u8]>,
    ) -> Outcome {
        let mut framer = Framer::new(framing, max);
        let mut frames = Vec::new();
        for piece in pieces {
            framer.push(piece);
            loop {
                match framer.next_frame() {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(e) => {
                        // Errors are sticky and the buffer is dropped.
                        assert_eq!(framer.next_frame(), Err(e.clone()));
                        assert_eq!(framer.buffered(), 0);
                        return (frames, Some(e));
                    }
                }
            }
        }
        (frames, None)
    }

    fn cut(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut last = 0;
        for p in points {
            pieces.push(input[last..p].to_vec());
            last = p;
        }
        pieces.push(input[last..].to_vec());
        pieces
    }

    /// Frames whole and byte by byte, asserts they agree, returns the outcome.
    fn frame_both(framing: Framing, max: usize, input: &[u8]) -> Outcome {
        let whole = frame_pieces(framing, max, [input]);
        assert_eq!(
            whole,
            frame_pieces(framing, max, input.chunks(1)),
            "byte by byte"
        );
        whole
    }

    fn msg(s: &str) -> Frame {
        Frame::Message(Bytes::copy_from_slice(s.as_bytes()))
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
        framer.push(b"abc\r");
        assert_eq!(framer.next_frame(), Ok(None));
        assert_eq!(framer.buffered(), 4);
        framer.push(b"\n\r");
        assert_eq!(framer.next_frame(), Ok(Some(msg("abc"))));
        assert_eq!(framer.next_frame(), Ok(None));
        framer.push(b"\n");
        assert_eq!(framer.next_frame(), Ok(Some(Frame::KeepAlive)));
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn crlf_messages_are_zero_copy_splits() {
        let mut framer = Framer::new(Framing::Crlf, 100);
        framer.push(b"hello\r\nworld\r\n");
        let base = framer.buffer_mut().as_ptr() as usize;
        let Ok(Some(Frame::Message(first))) = framer.next_frame() else {
            panic!("expected a message");
        };
        let Ok(Some(Frame::Message(second))) = framer.next_frame() else {
            panic!("expected a message");
        };
        assert_eq!(first.as_ptr() as usize, base);
        assert_eq!(second.as_ptr() as usize, base + 7);
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
        // Without any terminator: limit bytes plus a `\r` wait, one more byte fails at once.
        let mut framer = Framer::new(Framing::Crlf, limit);
        framer.push("x".repeat(limit).as_bytes());
        framer.push(b"\r");
        assert_eq!(framer.next_frame(), Ok(None));
        framer.push(b"y");
        let err = framer.next_frame().unwrap_err();
        assert_eq!(err, FrameError::TooLong { limit });
        assert_eq!(
            err.to_string(),
            "message is longer than the limit of 10 bytes"
        );
        let mut framer = Framer::new(Framing::Crlf, limit);
        framer.push("x".repeat(limit + 1).as_bytes());
        assert_eq!(framer.next_frame(), Err(FrameError::TooLong { limit }));
        // A big push is refused at once and dropped; clear() makes the framer usable again.
        framer.push(b"ignored\r\n");
        assert_eq!(framer.buffered(), 0);
        framer.clear();
        framer.push(b"ok\r\n");
        assert_eq!(framer.next_frame(), Ok(Some(msg("ok"))));
    }

    #[test]
    fn crlf_scanning_is_linear() {
        // 1 MiB pushed one byte at a time, next_frame after each: each byte is searched once.
        let mut framer = Framer::new(Framing::Crlf, 2 * 1024 * 1024);
        let body: Vec<u8> = (0..1024 * 1024)
            .map(|i| if i % 1000 == 999 { b'\n' } else { b'a' })
            .collect();
        for &b in &body {
            framer.push(&[b]);
            assert_eq!(framer.next_frame(), Ok(None));
        }
        framer.push(b"\r\n");
        let Ok(Some(Frame::Message(m))) = framer.next_frame() else {
            panic!("expected the message");
        };
        assert_eq!(&m[..], &body[..]);
        assert!(
            framer.scan_work() <= body.len() + 2,
            "scanned {} bytes for {}",
            framer.scan_work(),
            body.len()
        );
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
    fn length_mode_zero_copy() {
        let mut framer = Framer::new(Framing::Length, 100);
        framer.push(b"7\r\nhello\r\n");
        let base = framer.buffer_mut().as_ptr() as usize;
        let Ok(Some(Frame::Message(m))) = framer.next_frame() else {
            panic!("expected a message");
        };
        assert_eq!(&m[..], b"hello");
        assert_eq!(m.as_ptr() as usize, base + 3);
    }

    #[test]
    fn length_mode_count_errors() {
        let cases: [(&[u8], FrameError); 6] = [
            (b"12a\r\n", FrameError::InvalidCount(b'a')),
            (b"-5\r\n", FrameError::InvalidCount(b'-')),
            (b"5\rx", FrameError::InvalidCount(b'\r')),
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
        framer.push(b"9999999999\r\n");
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
                prop_assert_eq!(frame_pieces(framing, 64, [&input[..]]), expected.clone());
                prop_assert_eq!(frame_pieces(framing, 64, input.chunks(1)), expected.clone());
                let pieces = cut(&input, &cuts);
                prop_assert_eq!(
                    frame_pieces(framing, 64, pieces.iter().map(|p| &p[..])),
                    expected.clone()
                );
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
                let whole = frame_pieces(framing, max, [&input[..]]);
                prop_assert_eq!(frame_pieces(framing, max, input.chunks(1)), whole.clone());
                let pieces = cut(&input, &cuts);
                prop_assert_eq!(frame_pieces(framing, max, pieces.iter().map(|p| &p[..])), whole);
            }
        }

        #[test]
        fn buffered_memory_stays_bounded(
            input in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'a')], 0..400),
            piece in 1usize..20,
        ) {
            let max = 16;
            let mut framer = Framer::new(Framing::Crlf, max);
            for chunk in input.chunks(piece) {
                framer.push(chunk);
                while let Ok(Some(_)) = framer.next_frame() {}
                prop_assert!(framer.buffered() <= max + 1);
            }
        }
    }
}
