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
//!
//! Errors in the body (bad chunked framing, corrupt compression, an oversized frame) come out
//! of [`poll_frame`](ResponseReader::poll_frame) in stream order: every frame completed by the
//! bytes before the bad one is handed out first. So how the bytes were split into pushes does
//! not change what comes out — a head and a broken chunk in the same push still report the
//! head. (One exception the inflater imposes: how much of the output before corrupt deflate
//! data it hands out before reporting the error depends on its buffer sizes.)

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
    /// The first transfer-decoding (chunked) error, returned once the frames before it are out.
    failed: Option<ReadError>,
    /// A content-decoding error. The decoder only ever got bytes from before any transfer
    /// error, so this one comes first.
    decode_failed: Option<ReadError>,
}

impl ResponseReader {
    /// A reader for a fresh connection.
    pub fn new(framing: Framing, max_message_bytes: usize) -> Self {
        Self {
            stage: Stage::Head(Vec::new()),
            framer: Framer::new(framing, max_message_bytes),
            body_done: false,
            failed: None,
            decode_failed: None,
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
    ///
    /// Only a bad head is an error here. A body error is kept and returned by
    /// [`poll_frame`](Self::poll_frame) after the frames before it; bytes pushed after it are
    /// ignored.
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
        if self.failed.is_none() {
            if let Err(e) = self.push_body(body) {
                self.failed = Some(e);
            }
        }
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
    /// `Ok(None)` means more input is needed. Once every frame before a body error is out,
    /// the error is returned (and again on every later call).
    pub fn poll_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(frame) = self.framer.next_frame().map_err(ReadError::Frame)? {
                return Ok(Some(frame));
            }
            // Compressed bytes from before a transfer error are still decoded.
            if let (
                None,
                Stage::Body {
                    content: Some(decoder),
                    ..
                },
            ) = (&self.decode_failed, &mut self.stage)
            {
                match decoder.decode_into(self.framer.buffer_mut(), DECODE_STEP) {
                    Ok(0) => {}
                    Ok(_) => continue,
                    // What was decoded before the error is in the framer: frame it first.
                    Err(e) => {
                        self.decode_failed = Some(ReadError::Decode(e));
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunked::ChunkedError;

    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

    /// Pushes `pieces`, draining frames after each; returns the statuses, frames and error.
    fn run(pieces: &[&[u8]]) -> (Vec<u16>, Vec<Frame>, Option<ReadError>) {
        let mut reader = ResponseReader::new(Framing::Crlf, 100);
        let (mut heads, mut frames) = (Vec::new(), Vec::new());
        for piece in pieces {
            match reader.push(piece) {
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
        assert_eq!(reader.push(b"5\r\nabc\r\n\r\n"), Ok(None));
        assert_eq!(reader.buffered(), 0);
        let error = ReadError::Chunked(ChunkedError::InvalidSizeByte(b'z'));
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
}
