//! Splits a decoded body into messages, zero-copy.
//!
//! Two framings ([`Framing`]):
//!
//! - [`Framing::Crlf`]: each message ends in `\r\n`; a bare `\n` inside a message is kept. An
//!   empty line (`\r\n`, or a lone `\n` where a message would start) is a keep-alive. Every
//!   byte is searched once however the input is split.
//! - [`Framing::Length`] (`delimited=length`): a decimal byte count and a line end, then
//!   exactly that many bytes, which include the message's trailing `\r\n`. Blank lines before
//!   a count are keep-alives. A count too big for the limit is refused before any of its frame
//!   is buffered.
//!
//! ## Zero-copy
//!
//! Input arrives as segments. [`Framer::push_bytes`] queues a [`Bytes`] as it is; a message
//! that lies inside one segment is handed out as a slice of it (`Bytes::split_to`), without
//! copying a byte. Only a message that straddles two segments is copied, and only that
//! message: its start waits in a small pending buffer, the rest of it is appended from the
//! next segment, and framing goes back to slicing right after it. [`Framer::push`] copies a
//! `&[u8]` into the framer first (it is then framed the same way).
//!
//! A handed-out message shares the memory of the segment it was sliced from, so it keeps that
//! whole segment's allocation alive (a driver's read block, say) until it is dropped — as with
//! `hyper` and `bytes` generally. Copy a message (`Bytes::copy_from_slice`) to keep it long
//! without pinning its block.
//!
//! ```
//! use bytes::Bytes;
//! use sitebucket_proto::_benchable::{Frame, Framer};
//! use sitebucket_proto::Framing;
//!
//! let mut framer = Framer::new(Framing::Crlf, 1024);
//! let read = Bytes::from_static(b"{\"a\":1}\r\n\r\n{\"b\"");
//! framer.push_bytes(read.clone());
//! let Some(Frame::Message(a)) = framer.next_frame().unwrap() else { panic!() };
//! assert_eq!(a, "{\"a\":1}");
//! assert_eq!(a.as_ptr(), read.as_ptr()); // a slice of the input, not a copy
//! assert_eq!(framer.next_frame().unwrap(), Some(Frame::KeepAlive));
//! assert_eq!(framer.next_frame().unwrap(), None);
//! framer.push(b":2}\r\n"); // `{"b"` straddles two pushes: it alone is copied
//! assert_eq!(framer.next_frame().unwrap(), Some(Frame::Message("{\"b\":2}".into())));
//! ```

use std::collections::VecDeque;
use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use crate::Framing;

/// The most decimal digits a `delimited=length` count may have.
pub const MAX_COUNT_DIGITS: usize = 10;

/// The least capacity the pending buffer of a straddling message is given when it has to
/// grow, so that a few straddling messages in a row share one allocation.
const PENDING_RESERVE: usize = 8 * 1024;

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
/// Feed bytes with [`push_bytes`](Self::push_bytes) (zero-copy) or [`push`](Self::push) (or
/// write them into [`buffer_mut`](Self::buffer_mut)), in any mix, then call
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)`. Once drained, the framer
/// holds only the start of a message that has not ended yet, copied: at most
/// `max_message_bytes` plus a few bytes of framing. Between drains it also holds whatever was
/// pushed. After an error the framer drops its buffers, ignores pushes and returns the same
/// error until [`clear`](Self::clear).
///
/// The module docs (`framer.rs`) say when a message is a slice of the input and when a copy.
#[derive(Debug)]
pub struct Framer {
    framing: Framing,
    max_message_bytes: usize,
    /// Input not framed yet, oldest first. The front segment begins where `pending` ends.
    segments: VecDeque<Bytes>,
    /// Bytes appended by `push` or through `buffer_mut`: they follow every segment, and move
    /// to the back of `segments` before the next push_bytes or frame.
    tail: BytesMut,
    /// The beginning of a message (Crlf) or frame (Length) that did not end in the segment it
    /// started in, copied. Crlf: every byte of it has been searched for `\n`, and none ends the
    /// message (a final `\r` may still be the start of its `\r\n`).
    pending: BytesMut,
    /// Length: the count line read so far.
    count: Count,
    /// Length: the size of the frame being waited for, once its count line was read.
    frame_len: Option<usize>,
    failed: Option<FrameError>,
    /// How many bytes `memchr` has been run over, to prove scanning stays linear.
    #[cfg(test)]
    scan_work: usize,
}

/// The part of a `delimited=length` count line read so far.
#[derive(Clone, Copy, Debug, Default)]
struct Count {
    value: u64,
    digits: usize,
    /// The last byte was a `\r`: a `\n` must follow.
    cr: bool,
}

/// What a count line turned out to be.
enum CountLine {
    KeepAlive,
    Count(usize),
}

impl Framer {
    /// A framer for `framing` refusing messages longer than `max_message_bytes`.
    pub fn new(framing: Framing, max_message_bytes: usize) -> Self {
        Framer {
            framing,
            max_message_bytes,
            segments: VecDeque::new(),
            tail: BytesMut::new(),
            pending: BytesMut::new(),
            count: Count::default(),
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

    /// Appends bytes, copying them into the framer.
    pub fn push(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.tail.extend_from_slice(data);
        }
    }

    /// Appends a segment without copying it: messages that lie inside it are handed out as
    /// slices of it (which keep its memory alive).
    pub fn push_bytes(&mut self, data: Bytes) {
        if self.failed.is_none() && !data.is_empty() {
            self.seal_tail();
            self.segments.push_back(data);
        }
    }

    /// The buffer [`push`](Self::push) appends to, for a decoder to write decoded bytes
    /// straight into it. Its bytes come after everything pushed before.
    ///
    /// Only append: bytes already in the buffer must not be changed or removed.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.tail
    }

    /// How many bytes are buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.pending.len() + self.segments.iter().map(Bytes::len).sum::<usize>() + self.tail.len()
    }

    /// Drops all buffered bytes and any error, as after a reconnect.
    pub fn clear(&mut self) {
        self.drop_input();
        self.failed = None;
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            // Bytes written through `buffer_mut` after the error are dropped too.
            self.tail.clear();
            return Err(e.clone());
        }
        self.seal_tail();
        let result = match self.framing {
            Framing::Crlf => self.next_crlf(),
            Framing::Length => self.next_length(),
        };
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.drop_input();
        }
        result
    }

    /// Moves the bytes of `push` calls to the back of the segment queue.
    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            self.segments.push_back(self.tail.split().freeze());
        }
    }

    /// Forgets every buffered byte and the framing state (not the error).
    fn drop_input(&mut self) {
        self.segments = VecDeque::new();
        self.tail = BytesMut::new();
        self.pending = BytesMut::new();
        self.count = Count::default();
        self.frame_len = None;
    }

    fn too_long(&self) -> FrameError {
        FrameError::TooLong {
            limit: self.max_message_bytes,
        }
    }

    fn next_crlf(&mut self) -> Result<Option<Frame>, FrameError> {
        let max = self.max_message_bytes;
        while let Some(segment) = self.segments.front_mut() {
            // Where to search from in `segment`: bytes before it are part of the message.
            let mut from = 0;
            while let Some(offset) = memchr::memchr(b'\n', segment.get(from..).unwrap_or(&[])) {
                #[cfg(test)]
                {
                    self.scan_work += offset + 1;
                }
                let newline = from + offset;
                // The byte before the `\n`: in this segment, else the last pending one.
                let before = match newline.checked_sub(1) {
                    Some(i) => segment.get(i).copied(),
                    None => self.pending.last().copied(),
                };
                let frame = match before {
                    None => {
                        // A lone `\n` where a message would start: a keep-alive.
                        segment.advance(1);
                        Frame::KeepAlive
                    }
                    Some(b'\r') => end_crlf_message(&mut self.pending, segment, newline, max)?,
                    // A bare `\n` inside a message is part of it.
                    Some(_) => {
                        from = newline + 1;
                        continue;
                    }
                };
                if segment.is_empty() {
                    self.segments.pop_front();
                }
                return Ok(Some(frame));
            }
            #[cfg(test)]
            {
                self.scan_work += segment.len().saturating_sub(from);
            }
            // No terminator in the rest of the segment: the whole segment belongs to the
            // pending message, less a final `\r` that may start its `\r\n`. Refuse it now
            // rather than buffer more.
            let cr = usize::from(segment.last() == Some(&b'\r'));
            if self.pending.len() + segment.len() - cr > max {
                return Err(self.too_long());
            }
            keep_pending(&mut self.pending, segment);
            self.segments.pop_front();
        }
        Ok(None)
    }

    fn next_length(&mut self) -> Result<Option<Frame>, FrameError> {
        let frame_len = match self.frame_len {
            Some(n) => n,
            None => match self.read_count()? {
                None => return Ok(None),
                Some(CountLine::KeepAlive) => return Ok(Some(Frame::KeepAlive)),
                Some(CountLine::Count(n)) => {
                    self.frame_len = Some(n);
                    n
                }
            },
        };
        let mut frame = loop {
            let Some(segment) = self.segments.front_mut() else {
                return Ok(None);
            };
            if self.pending.is_empty() && segment.len() >= frame_len {
                // The whole frame lies inside this segment: a slice of it.
                let frame = segment.split_to(frame_len);
                if segment.is_empty() {
                    self.segments.pop_front();
                }
                break frame;
            }
            // `pending.len() < frame_len`: it only holds parts of an unfinished frame.
            let take = (frame_len - self.pending.len()).min(segment.len());
            keep_pending(&mut self.pending, segment.get(..take).unwrap_or(&[]));
            segment.advance(take);
            if segment.is_empty() {
                self.segments.pop_front();
            }
            if self.pending.len() == frame_len {
                break self.pending.split().freeze();
            }
        };
        self.frame_len = None;
        if frame.ends_with(b"\r\n") {
            frame.truncate(frame_len - 2);
        }
        if frame.len() > self.max_message_bytes {
            return Err(self.too_long());
        }
        if frame.is_empty() {
            // A count of 2 framing a bare `\r\n` carries no message.
            return Ok(Some(Frame::KeepAlive));
        }
        Ok(Some(Frame::Message(frame)))
    }

    /// Reads a blank line or a count line from the queued segments, consuming it; `None` if
    /// it has not ended yet (what was read of it is kept in `count`).
    fn read_count(&mut self) -> Result<Option<CountLine>, FrameError> {
        while let Some(segment) = self.segments.front_mut() {
            let mut line_end = None;
            for (i, &byte) in segment.iter().enumerate() {
                if self.count.cr {
                    if byte != b'\n' {
                        return Err(FrameError::InvalidCount(b'\r'));
                    }
                    line_end = Some(i + 1);
                    break;
                }
                match byte {
                    b'0'..=b'9' => {
                        let count = &mut self.count;
                        count.digits += 1;
                        if count.digits > MAX_COUNT_DIGITS {
                            return Err(FrameError::CountTooManyDigits);
                        }
                        // At most 10 digits: far below u64::MAX, but checked all the same.
                        count.value = count
                            .value
                            .checked_mul(10)
                            .and_then(|v| v.checked_add(u64::from(byte - b'0')))
                            .ok_or(FrameError::CountTooManyDigits)?;
                    }
                    b'\n' => {
                        line_end = Some(i + 1);
                        break;
                    }
                    b'\r' => self.count.cr = true,
                    other => return Err(FrameError::InvalidCount(other)),
                }
            }
            let Some(line_end) = line_end else {
                // The whole segment was part of the line.
                self.segments.pop_front();
                continue;
            };
            segment.advance(line_end); // In bounds: line_end <= i + 1 <= segment.len().
            if segment.is_empty() {
                self.segments.pop_front();
            }
            let count = std::mem::take(&mut self.count);
            if count.digits == 0 {
                return Ok(Some(CountLine::KeepAlive));
            }
            if count.value == 0 {
                return Err(FrameError::ZeroCount);
            }
            // The count includes the trailing `\r\n`, so the message is at least `value - 2`
            // bytes: refuse now if even that is too long (or the frame cannot be addressed).
            let frame_len = usize::try_from(count.value).map_err(|_| self.too_long())?;
            if frame_len.saturating_sub(2) > self.max_message_bytes {
                return Err(self.too_long());
            }
            return Ok(Some(CountLine::Count(frame_len)));
        }
        Ok(None)
    }

    /// Bytes `memchr` has searched so far (tests only).
    #[cfg(test)]
    fn scan_work(&self) -> usize {
        self.scan_work
    }
}

/// Copies `data` to the end of the pending buffer `pending`.
fn keep_pending(pending: &mut BytesMut, data: &[u8]) {
    if pending.capacity() - pending.len() < data.len() {
        pending.reserve(data.len().max(PENDING_RESERVE));
    }
    pending.extend_from_slice(data);
}

/// The message (or keep-alive) ending with the `\r\n` whose `\n` is at `newline` in
/// `segment` (the `\r` just before it, or last in `pending`); consumes it from both.
fn end_crlf_message(
    pending: &mut BytesMut,
    segment: &mut Bytes,
    newline: usize,
    max: usize,
) -> Result<Frame, FrameError> {
    // `newline > 0` or `pending` ends in the `\r`, so this does not underflow.
    let len = (pending.len() + newline).saturating_sub(1);
    if len > max {
        return Err(FrameError::TooLong { limit: max });
    }
    if pending.is_empty() {
        // The message lies inside this segment: hand out a slice of it.
        // In bounds: len + 2 = newline + 1 <= segment.len().
        let message = segment.split_to(len);
        segment.advance(2);
        return Ok(if message.is_empty() {
            Frame::KeepAlive
        } else {
            Frame::Message(message)
        });
    }
    match newline.checked_sub(1) {
        // The `\r` is in this segment: copy the message's last part (in bounds: the `\r` at
        // `newline - 1` is in the segment).
        Some(cr) => keep_pending(pending, segment.get(..cr).unwrap_or(&[])),
        // The `\r` is the last pending byte (`pending` is not empty).
        None => pending.truncate(pending.len().saturating_sub(1)),
    }
    segment.advance(newline + 1);
    Ok(if pending.is_empty() {
        Frame::KeepAlive
    } else {
        Frame::Message(pending.split().freeze())
    })
}

#[cfg(test)]
mod tests {
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
    fn frame_at(
        framing: Framing,
        max: usize,
        input: &[u8],
        points: &[usize],
        feed: Feed,
    ) -> Outcome {
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
}
