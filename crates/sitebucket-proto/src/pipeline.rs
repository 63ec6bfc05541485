//! The whole byte pipeline of one response: head, transfer decoding, content decoding and
//! framing, glued together.
//!
//! [`ResponseReader::push_bytes`] (or [`push`](ResponseReader::push) for a borrowed slice)
//! takes plaintext bytes as they arrive (any split) and returns the response head once it is
//! complete; [`ResponseReader::poll_frame`] then hands out one frame at a time. Content
//! decoding (gzip, deflate) is lazy and bounded: compressed bytes wait in their own buffer and
//! are inflated [`DECODE_STEP`] bytes at a time, only when the framer has no complete frame
//! left to give. So a decompression bomb never holds more than `max_message_bytes` plus one
//! step of decoded data, and the memory of the whole reader is bounded by the head cap,
//! `max_message_bytes`, and what the caller pushed since it last drained the reader.
//!
//! ## Zero-copy
//!
//! Given [`Bytes`], the reader copies no body byte of an uncompressed body: the data of each
//! chunk (or the `Content-Length` or until-EOF body) is handed to the [`Framer`] as a slice of
//! the input, and a message that lies inside one such slice comes out as a slice of it too.
//! Only a message split across chunks or pushes is copied (see [`framer`](crate::framer)).
//! Decompressed bytes are written into a window owned by the reader, one [`DECODE_STEP`] at a
//! time, and each step is handed to the framer the same way. A message handed out keeps the
//! input block (or window step) it was sliced from alive until it is dropped.
//!
//! Errors in the body (bad chunked framing, corrupt compression, an oversized frame) come out
//! of [`poll_frame`](ResponseReader::poll_frame) in stream order: every frame completed by the
//! bytes before the bad one is handed out first. So how the bytes were split into pushes does
//! not change what comes out — a head and a broken chunk in the same push still report the
//! head. (One exception the inflater imposes: how much of the output before corrupt deflate
//! data it hands out before reporting the error depends on its buffer sizes.)

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use crate::chunked::{ChunkedDecoder, ChunkedError};
use crate::content::{ContentDecoder, DecodeError};
use crate::framer::{Frame, FrameError, Framer};
use crate::response::{parse_head, BodyKind, ContentEncoding, HeadError, ResponseHead};
use crate::Framing;

/// How many decoded bytes one content-decoding step produces at most.
pub const DECODE_STEP: usize = 64 * 1024;

/// Why a response could not be read. Every variant is the server's fault (or the network's).
#[derive(Clone, Debug, PartialEq)]
pub enum ReadError {
    /// The response head was malformed or too large.
    Head(HeadError),
    /// The chunked transfer encoding was malformed.
    Chunked(ChunkedError),
    /// The gzip or deflate body was malformed.
    Decode(DecodeError),
    /// A message could not be framed (too long, bad length prefix).
    Frame(FrameError),
    /// Bytes came after the end of the body (its last chunk, or `Content-Length` bytes):
    /// the server broke the framing, and what they mean cannot be known.
    AfterBody {
        /// The first byte after the end (the same however the input was split).
        first_byte: u8,
    },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Head(e) => write!(f, "bad response head: {e}"),
            ReadError::Chunked(e) => write!(f, "bad chunked body: {e}"),
            ReadError::Decode(e) => write!(f, "bad compressed body: {e}"),
            ReadError::Frame(e) => write!(f, "bad message framing: {e}"),
            ReadError::AfterBody { first_byte } => write!(
                f,
                "data after the end of the response body (its last chunk or Content-Length), \
                 starting with byte {:?}",
                char::from(*first_byte)
            ),
        }
    }
}

impl std::error::Error for ReadError {}

#[derive(Debug)]
enum Transfer {
    Chunked(ChunkedDecoder),
    Remaining(u64),
    UntilEof,
}

#[derive(Debug)]
enum Stage {
    Head(Vec<u8>),
    Body {
        transfer: Transfer,
        content: Option<ContentDecoder>,
    },
}

/// Reads one HTTP response: head, then a stream of frames.
#[derive(Debug)]
pub struct ResponseReader {
    stage: Stage,
    framer: Framer,
    /// Body bytes pushed and not transfer-decoded yet, oldest first.
    raw: VecDeque<Bytes>,
    body_done: bool,
    /// The first transfer-decoding (chunked) error, returned once the frames before it are out.
    failed: Option<ReadError>,
    /// A content-decoding error. The decoder only ever got bytes from before any transfer
    /// error, so this one comes first.
    decode_failed: Option<ReadError>,
    /// Where content decoding writes, one [`DECODE_STEP`] at a time; each step is frozen and
    /// handed to the framer (empty and unallocated for an uncompressed body).
    window: BytesMut,
    /// The last content-decoding step filled its [`DECODE_STEP`]: the decoder may have more
    /// output ready even without new input.
    decode_more: bool,
}

impl ResponseReader {
    /// A reader for a fresh connection.
    pub fn new(framing: Framing, max_message_bytes: usize) -> Self {
        Self {
            stage: Stage::Head(Vec::new()),
            framer: Framer::new(framing, max_message_bytes),
            raw: VecDeque::new(),
            body_done: false,
            failed: None,
            decode_failed: None,
            window: BytesMut::new(),
            decode_more: false,
        }
    }

    /// Whether the whole body has been read (the last chunk, or `Content-Length` bytes).
    ///
    /// The body is decoded as frames are polled, so this turns `true` once
    /// [`poll_frame`](Self::poll_frame) got to the body's end.
    pub fn body_done(&self) -> bool {
        self.body_done
    }

    /// Bytes of an unfinished message held by the framer (with its length prefix, if any):
    /// what a close now would drop. 0 between messages.
    pub fn partial_message_bytes(&self) -> usize {
        self.framer.buffered()
    }

    /// Bytes held in the reader's buffers (head, body input not decoded yet, framer,
    /// compressed input).
    pub fn buffered(&self) -> usize {
        let staged = match &self.stage {
            Stage::Head(buf) => buf.len(),
            Stage::Body { content, .. } => content.as_ref().map_or(0, |c| c.buffered_input()),
        };
        staged + self.raw.iter().map(Bytes::len).sum::<usize>() + self.framer.buffered()
    }

    /// Feeds plaintext from the connection. Returns the head when this call completed it;
    /// body bytes that followed the head in `input` are taken in as well.
    ///
    /// `input` is copied once into a [`Bytes`]; [`push_bytes`](Self::push_bytes) takes an
    /// owned one without copying.
    ///
    /// Only a bad head is an error here. The body is decoded as frames are polled: a body
    /// error is returned by [`poll_frame`](Self::poll_frame) after the frames before it, and
    /// bytes pushed after that are ignored. Bytes after the end of the body are an error
    /// ([`ReadError::AfterBody`]), returned once the body's frames are out.
    pub fn push(&mut self, input: &[u8]) -> Result<Option<ResponseHead>, ReadError> {
        self.push_bytes(Bytes::copy_from_slice(input))
    }

    /// Feeds plaintext from the connection without copying it: messages of an uncompressed
    /// body that lie inside `input` (and inside one chunk) are handed out as slices of it.
    /// Otherwise the same as [`push`](Self::push).
    pub fn push_bytes(&mut self, input: Bytes) -> Result<Option<ResponseHead>, ReadError> {
        let mut head_out = None;
        let mut body = input;
        if let Stage::Head(buf) = &mut self.stage {
            let before = buf.len();
            buf.extend_from_slice(&body);
            match parse_head(buf).map_err(ReadError::Head)? {
                None => return Ok(None),
                Some((head, consumed)) => {
                    // `consumed` covers only bytes in `buf`, of which the first `before`
                    // came from earlier pushes and were not a complete head.
                    let from_input = consumed.saturating_sub(before).min(body.len());
                    body = body.slice(from_input..); // In bounds: from_input <= len.
                    let transfer = match head.body {
                        BodyKind::Chunked => Transfer::Chunked(ChunkedDecoder::new()),
                        BodyKind::ContentLength(n) => Transfer::Remaining(n),
                        BodyKind::UntilEof => Transfer::UntilEof,
                    };
                    let content = match head.encoding {
                        ContentEncoding::Identity => None,
                        other => Some(ContentDecoder::new(other)),
                    };
                    self.body_done = matches!(transfer, Transfer::Remaining(0));
                    self.stage = Stage::Body { transfer, content };
                    head_out = Some(head);
                }
            }
        }
        let failed = self.failed.is_some() || self.decode_failed.is_some();
        if !failed && !body.is_empty() {
            // After the body's end too: `transfer_step` reports such bytes.
            self.raw.push_back(body);
        }
        Ok(head_out)
    }

    /// The next complete frame, decoding the body one bounded step at a time: a chunk's data
    /// (or a push of a `Content-Length` or until-EOF body), then at most [`DECODE_STEP`]
    /// decompressed bytes. `Ok(None)` means more input is needed. Once every frame before a
    /// body error is out, the error is returned (and again on every later call).
    pub fn poll_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(frame) = self.framer.next_frame().map_err(ReadError::Frame)? {
                return Ok(Some(frame));
            }
            // Compressed bytes from before a transfer error are still decoded.
            if self.decode_step() {
                continue;
            }
            if self.failed.is_none() && self.decode_failed.is_none() {
                match self.transfer_step() {
                    Ok(true) => continue,
                    Ok(false) => {}
                    // The data before the error went on already: frame (and decode) it first.
                    Err(e) => {
                        self.failed = Some(e);
                        self.raw.clear();
                        continue;
                    }
                }
            }
            return match self.decode_failed.as_ref().or(self.failed.as_ref()) {
                Some(e) => Err(e.clone()),
                None => Ok(None),
            };
        }
    }

    /// Decompresses at most one [`DECODE_STEP`] into the window and hands it to the framer;
    /// whether anything was decoded (or an error found).
    fn decode_step(&mut self) -> bool {
        let (
            None,
            Stage::Body {
                content: Some(decoder),
                ..
            },
        ) = (&self.decode_failed, &mut self.stage)
        else {
            return false;
        };
        if decoder.buffered_input() == 0 && !self.decode_more {
            return false;
        }
        // One step's room at the window's end: the previous steps' memory stays with the
        // frames sliced from it, and is reused once they are all dropped.
        self.window.reserve(DECODE_STEP);
        let decoded = decoder.decode_into(&mut self.window, DECODE_STEP);
        // What was decoded, even before an error, goes to the framer: frame it first.
        if !self.window.is_empty() {
            self.framer.push_bytes(self.window.split().freeze());
        }
        match decoded {
            Ok(n) => {
                self.decode_more = n == DECODE_STEP;
                n > 0
            }
            Err(e) => {
                // Nothing after corrupt compressed data can be decoded.
                self.decode_failed = Some(ReadError::Decode(e));
                self.raw.clear();
                true
            }
        }
    }

    /// Transfer-decodes the oldest body input until one piece of body data went on (to the
    /// content decoder or the framer) or that input is used up; whether anything was done.
    fn transfer_step(&mut self) -> Result<bool, ReadError> {
        let Stage::Body { transfer, content } = &mut self.stage else {
            return Ok(false);
        };
        if self.body_done {
            // Bytes after the end of the body are not part of it: the server broke the
            // framing. (Nothing more is read from this response.)
            let first = self.raw.iter().find_map(|input| input.first().copied());
            self.raw.clear();
            return match first {
                None => Ok(false),
                Some(first_byte) => Err(ReadError::AfterBody { first_byte }),
            };
        }
        let Some(input) = self.raw.front_mut() else {
            return Ok(false);
        };
        let data = match transfer {
            Transfer::Chunked(decoder) => {
                let step = decoder.decode(input).map_err(ReadError::Chunked)?;
                // The chunk's data as a slice of the input, not a copy. (The range is always
                // within the input; the copy only guards the slice.)
                let range = step.data_range();
                let data = if step.data.is_empty() {
                    Bytes::new()
                } else if range.end <= input.len() {
                    input.slice(range)
                } else {
                    Bytes::copy_from_slice(step.data)
                };
                self.body_done = step.done;
                // Every call on non-empty input before the end consumes something; should one
                // not, drop the input rather than loop.
                let used = if step.consumed == 0 && !step.done {
                    input.len()
                } else {
                    step.consumed
                };
                input.advance(used.min(input.len()));
                data
            }
            Transfer::Remaining(left) => {
                let take = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                *left -= take as u64;
                self.body_done = *left == 0;
                input.split_to(take) // In bounds: take <= input.len().
            }
            Transfer::UntilEof => std::mem::take(input),
        };
        if input.is_empty() {
            self.raw.pop_front();
        }
        if !data.is_empty() {
            match content {
                Some(decoder) => decoder.push(&data),
                None => self.framer.push_bytes(data),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
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
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
                .to_vec();
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
}
