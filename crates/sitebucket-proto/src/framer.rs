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
mod tests;
