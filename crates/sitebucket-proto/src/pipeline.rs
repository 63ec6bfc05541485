//! The whole byte pipeline of one response: head, transfer decoding, content decoding and
//! framing, glued together.
//!
//! [`ResponseReader::push`] takes plaintext bytes as they arrive (any split) and returns the
//! response head once it is complete; [`ResponseReader::poll_frame`] then hands out one frame
//! at a time. Content decoding (gzip, deflate) is lazy and bounded: compressed bytes wait in
//! their own buffer and are inflated [`DECODE_STEP`] bytes at a time, only when the framer
//! has no complete frame left to give. So a decompression bomb never holds more than
//! `max_message_bytes` plus one step of decoded data, and the memory of the whole reader is
//! bounded by the head cap, `max_message_bytes`, and what the caller pushed since it last
//! drained the reader.

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
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Head(e) => write!(f, "bad response head: {e}"),
            ReadError::Chunked(e) => write!(f, "bad chunked body: {e}"),
            ReadError::Decode(e) => write!(f, "bad compressed body: {e}"),
            ReadError::Frame(e) => write!(f, "bad message framing: {e}"),
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
    body_done: bool,
}

impl ResponseReader {
    /// A reader for a fresh connection.
    pub fn new(framing: Framing, max_message_bytes: usize) -> Self {
        Self {
            stage: Stage::Head(Vec::new()),
            framer: Framer::new(framing, max_message_bytes),
            body_done: false,
        }
    }

    /// Whether the whole body has arrived (the last chunk, or `Content-Length` bytes).
    pub fn body_done(&self) -> bool {
        self.body_done
    }

    /// Bytes held in the reader's buffers (head, framer, compressed input).
    pub fn buffered(&self) -> usize {
        let staged = match &self.stage {
            Stage::Head(buf) => buf.len(),
            Stage::Body { content, .. } => content.as_ref().map_or(0, |c| c.buffered_input()),
        };
        staged + self.framer.buffered()
    }

    /// Feeds plaintext from the connection. Returns the head when this call completed it;
    /// body bytes that followed the head in `input` are taken in as well.
    pub fn push(&mut self, input: &[u8]) -> Result<Option<ResponseHead>, ReadError> {
        let mut head_out = None;
        let mut body = input;
        if let Stage::Head(buf) = &mut self.stage {
            let before = buf.len();
            buf.extend_from_slice(input);
            match parse_head(buf).map_err(ReadError::Head)? {
                None => return Ok(None),
                Some((head, consumed)) => {
                    // `consumed` covers only bytes in `buf`, of which the first `before`
                    // came from earlier pushes and were not a complete head.
                    let from_input = consumed.saturating_sub(before).min(input.len());
                    body = &input[from_input..];
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
        self.push_body(body)?;
        Ok(head_out)
    }

    fn push_body(&mut self, mut input: &[u8]) -> Result<(), ReadError> {
        let Stage::Body { transfer, content } = &mut self.stage else {
            return Ok(());
        };
        let framer = &mut self.framer;
        let mut deliver = |data: &[u8]| match content {
            Some(decoder) => decoder.push(data),
            None => framer.push(data),
        };
        while !input.is_empty() && !self.body_done {
            match transfer {
                Transfer::Chunked(decoder) => {
                    let step = decoder.decode(input).map_err(ReadError::Chunked)?;
                    if !step.data.is_empty() {
                        deliver(step.data);
                    }
                    if step.done {
                        self.body_done = true;
                    }
                    if step.consumed == 0 {
                        break;
                    }
                    input = &input[step.consumed.min(input.len())..];
                }
                Transfer::Remaining(left) => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    deliver(&input[..take]);
                    *left -= take as u64;
                    self.body_done = *left == 0;
                    input = &input[take..];
                }
                Transfer::UntilEof => {
                    deliver(input);
                    input = &[];
                }
            }
        }
        Ok(())
    }

    /// The next complete frame, decoding compressed input one bounded step at a time.
    /// `Ok(None)` means more input is needed.
    pub fn poll_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(frame) = self.framer.next_frame().map_err(ReadError::Frame)? {
                return Ok(Some(frame));
            }
            let Stage::Body {
                content: Some(decoder),
                ..
            } = &mut self.stage
            else {
                return Ok(None);
            };
            let produced = decoder
                .decode_into(self.framer.buffer_mut(), DECODE_STEP)
                .map_err(ReadError::Decode)?;
            if produced == 0 {
                return Ok(None);
            }
        }
    }
}
