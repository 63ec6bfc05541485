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
    /// A whole body ([`ResponseReader::whole_body`]) is longer than its limit, before or
    /// after content decoding.
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body ended (its last chunk, `Content-Length` bytes, or the connection's close)
    /// before the gzip or deflate data in it did.
    CompressedCutShort,
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
            ReadError::BodyTooLarge { limit } => {
                write!(f, "response body over {limit} bytes; not read further")
            }
            ReadError::CompressedCutShort => {
                f.write_str("the response body ended inside its compressed data")
            }
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Head(e) => Some(e),
            ReadError::Chunked(e) => Some(e),
            ReadError::Decode(e) => Some(e),
            ReadError::Frame(e) => Some(e),
            ReadError::AfterBody { .. }
            | ReadError::BodyTooLarge { .. }
            | ReadError::CompressedCutShort => None,
        }
    }
}

/// Where transfer- and content-decoded body bytes go.
#[derive(Debug)]
enum Sink {
    /// Split into messages and keep-alives, handed out by [`ResponseReader::poll_frame`].
    Frames(Framer),
    /// Kept whole, up to `limit` bytes, handed out by [`ResponseReader::poll_body`].
    Whole {
        body: BytesMut,
        limit: usize,
        /// Body bytes before content decoding (bounded by `limit` as well).
        raw_len: usize,
        /// The limit was passed.
        over: bool,
    },
}

impl Sink {
    fn push(&mut self, data: Bytes) {
        match self {
            Sink::Frames(framer) => framer.push_bytes(data),
            Sink::Whole {
                body, limit, over, ..
            } => {
                if body.len().saturating_add(data.len()) > *limit {
                    *over = true;
                } else if !*over {
                    body.extend_from_slice(&data);
                }
            }
        }
    }

    fn buffered(&self) -> usize {
        match self {
            Sink::Frames(framer) => framer.buffered(),
            Sink::Whole { body, .. } => body.len(),
        }
    }
}

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

/// Reads one HTTP response: head, then a stream of frames ([`new`](Self::new)) or one whole
/// body ([`whole_body`](Self::whole_body)).
///
/// Either way the head, the transfer decoding (chunked, `Content-Length`, until close) and
/// the content decoding (gzip, deflate) are the same code.
#[derive(Debug)]
pub struct ResponseReader {
    stage: Stage,
    sink: Sink,
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
        Self::with_sink(Sink::Frames(Framer::new(framing, max_message_bytes)))
    }

    /// A reader that keeps the body whole, for a response read at once (a control call's):
    /// [`poll_body`](Self::poll_body) hands it out once complete. A body longer than `limit`
    /// bytes, before or after content decoding, is [`ReadError::BodyTooLarge`]; bytes after
    /// the end of the body are ignored.
    pub fn whole_body(limit: usize) -> Self {
        Self::with_sink(Sink::Whole {
            body: BytesMut::new(),
            limit,
            raw_len: 0,
            over: false,
        })
    }

    fn with_sink(sink: Sink) -> Self {
        Self {
            stage: Stage::Head(Vec::new()),
            sink,
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
        match &self.sink {
            Sink::Frames(framer) => framer.buffered(),
            Sink::Whole { .. } => 0,
        }
    }

    /// Bytes held in the reader's buffers (head, body input not decoded yet, framer or
    /// whole body, compressed input).
    pub fn buffered(&self) -> usize {
        let staged = match &self.stage {
            Stage::Head(buf) => buf.len(),
            Stage::Body { content, .. } => content.as_ref().map_or(0, |c| c.buffered_input()),
        };
        staged + self.raw.iter().map(Bytes::len).sum::<usize>() + self.sink.buffered()
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
    ///
    /// A [`whole_body`](Self::whole_body) reader has no frames: use
    /// [`poll_body`](Self::poll_body).
    pub fn poll_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            let Sink::Frames(framer) = &mut self.sink else {
                return Ok(None);
            };
            if let Some(frame) = framer.next_frame().map_err(ReadError::Frame)? {
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

    /// The whole body of a [`whole_body`](Self::whole_body) reader, content decoding undone,
    /// once it is complete (and again on every later call); `Ok(None)` while more input is
    /// needed. A body that runs until the connection closes is complete after
    /// [`end_of_input`](Self::end_of_input). Errors are sticky.
    ///
    /// A [`new`](Self::new) (framing) reader never has a whole body: `Ok(None)`.
    pub fn poll_body(&mut self) -> Result<Option<Bytes>, ReadError> {
        loop {
            let Sink::Whole {
                body, limit, over, ..
            } = &mut self.sink
            else {
                return Ok(None);
            };
            if *over {
                self.raw.clear();
                return Err(ReadError::BodyTooLarge { limit: *limit });
            }
            if let Some(e) = self.decode_failed.as_ref().or(self.failed.as_ref()) {
                return Err(e.clone());
            }
            let content = match &self.stage {
                Stage::Head(_) => return Ok(None),
                Stage::Body { content, .. } => content.as_ref(),
            };
            let decoded = content.is_none_or(|c| c.is_finished());
            if self.body_done && decoded {
                // Bytes after the body are not read: the answer is complete.
                self.raw.clear();
                return Ok(Some(Bytes::copy_from_slice(body)));
            }
            if self.decode_step() {
                continue;
            }
            if self.body_done {
                // Everything the body held was decoded, and the compressed data goes on.
                self.failed = Some(ReadError::CompressedCutShort);
                continue;
            }
            match self.transfer_step() {
                Ok(true) => continue,
                Ok(false) => return Ok(None),
                Err(e) => {
                    self.failed = Some(e);
                    self.raw.clear();
                }
            }
        }
    }

    /// The connection closed: a body that runs until the close is complete now. (Other
    /// bodies are cut short; what that means is the caller's call.)
    pub fn end_of_input(&mut self) {
        if let Stage::Body {
            transfer: Transfer::UntilEof,
            ..
        } = &self.stage
        {
            self.body_done = true;
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
            self.sink.push(self.window.split().freeze());
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
                Some(decoder) => {
                    if let Sink::Whole {
                        raw_len,
                        limit,
                        over,
                        ..
                    } = &mut self.sink
                    {
                        *raw_len = raw_len.saturating_add(data.len());
                        *over |= *raw_len > *limit;
                    }
                    decoder.push(&data);
                }
                None => self.sink.push(data),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
