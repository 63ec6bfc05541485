//! The in-process work behind each figure, and its baselines, as plain functions (the
//! criterion bench times them; the tests check they do the whole job).

use std::io::Read;

use bytes::Bytes;
use serde::de::IgnoredAny;
use sitebucket_proto::_benchable::Frame;
use sitebucket_proto::DEFAULT_MAX_MESSAGE_BYTES;
use sitebucket_proto::{_benchable::ResponseReader, Framing};
use sitebucket_proto::{DefaultParser, Parser};

/// Messages and keep-alives seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages.
    pub messages: usize,
    /// Keep-alive lines.
    pub keep_alives: usize,
    /// Message bytes (without line ends).
    pub bytes: usize,
}

/// The full byte pipeline: `wire` (head and chunked body) handed to a [`ResponseReader`] as
/// `read`-byte slices of one [`Bytes`] (what a driver reading into a `BytesMut` block hands
/// over), every frame drained after each push and dropped.
pub fn pipeline_bytes(wire: &Bytes, framing: Framing, read: usize) -> Counts {
    let mut reader = ResponseReader::new(framing, DEFAULT_MAX_MESSAGE_BYTES);
    let mut counts = Counts::default();
    let mut at = 0;
    while at < wire.len() {
        let end = wire.len().min(at + read.max(1));
        if reader.push_bytes(wire.slice(at..end)).is_err() {
            break;
        }
        at = end;
        while let Ok(Some(frame)) = reader.poll_frame() {
            match frame {
                Frame::Message(message) => {
                    counts.messages += 1;
                    counts.bytes += std::hint::black_box(message).len();
                }
                Frame::KeepAlive => counts.keep_alives += 1,
            }
        }
    }
    counts
}

/// [`pipeline_bytes`] on a copy of `wire`.
pub fn pipeline(wire: &[u8], framing: Framing, read: usize) -> Counts {
    pipeline_bytes(&Bytes::copy_from_slice(wire), framing, read)
}

/// `body` copied `read` bytes at a time into one reused buffer of that size: the copy every
/// pipeline that hands out owned messages must make, and nothing else.
pub fn copy_in_reads(body: &[u8], buffer: &mut [u8]) -> usize {
    let mut total = 0;
    for piece in body.chunks(buffer.len().max(1)) {
        buffer[..piece.len()].copy_from_slice(piece);
        total += std::hint::black_box(&buffer[..piece.len()]).len();
    }
    total
}

/// Occurrences of `\r\n` in `body`, by `memchr::memmem`.
pub fn memmem_scan(finder: &memchr::memmem::Finder<'_>, body: &[u8]) -> usize {
    finder.find_iter(body).count()
}

/// A naive but competent client in memory: buffers the input, parses the head with
/// `httparse`, decodes complete chunks into a body buffer, splits the body on `\r\n` with
/// `memmem` and hands out each message as a slice; consumed bytes are drained.
pub fn naive_client(wire: &[u8], read: usize) -> Counts {
    let mut input: Vec<u8> = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    let mut head_done = false;
    let mut counts = Counts::default();
    let crlf = memchr::memmem::Finder::new(b"\r\n");
    for piece in wire.chunks(read) {
        input.extend_from_slice(piece);
        let mut at = 0;
        if !head_done {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&input) {
                Ok(httparse::Status::Complete(n)) => {
                    head_done = true;
                    at = n;
                }
                Ok(httparse::Status::Partial) => continue,
                Err(_) => return counts,
            }
        }
        // Whole chunks only: size line, data, CRLF.
        while let Some(line) = crlf.find(&input[at..]) {
            let digits = &input[at..at + line];
            let Some(size) = std::str::from_utf8(digits)
                .ok()
                .and_then(|d| usize::from_str_radix(d.split(';').next()?.trim(), 16).ok())
            else {
                return counts;
            };
            let data = at + line + 2;
            if size == 0 || input.len() < data + size + 2 {
                break;
            }
            body.extend_from_slice(&input[data..data + size]);
            at = data + size + 2;
        }
        input.drain(..at);
        let mut start = 0;
        for end in crlf.find_iter(&body) {
            let message = &body[start..end];
            if message.is_empty() {
                counts.keep_alives += 1;
            } else {
                counts.messages += 1;
                counts.bytes += std::hint::black_box(message).len();
            }
            start = end + 2;
        }
        body.drain(..start);
    }
    counts
}

/// `compressed` (one gzip member) decoded by `flate2` alone into a 64 KiB buffer; returns
/// the decoded length.
pub fn gzip_decode_alone(compressed: &[u8], out: &mut [u8]) -> usize {
    let mut decoder = flate2::read::GzDecoder::new(compressed);
    let mut total = 0;
    loop {
        match decoder.read(out) {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += std::hint::black_box(n),
        }
    }
}

/// Every message through [`DefaultParser`] into the typed `Message`; returns how many
/// decoded.
pub fn parse_typed(messages: &[Bytes]) -> usize {
    let mut ok = 0usize;
    {
        let mut parser = DefaultParser::new(|message: Result<_, _>| {
            if let Ok(message) = message {
                std::hint::black_box(&message);
                ok += 1;
            }
        });
        for message in messages {
            parser.parse(message.clone());
        }
    }
    ok
}

/// Every message through the serde decoder the typed `Message` had before its own scanner
/// (`Message::from_slice_serde`, kept as the reference); returns how many decoded.
pub fn parse_typed_serde(messages: &[Bytes]) -> usize {
    messages
        .iter()
        .filter(|m| {
            sitebucket_proto::message::Message::from_slice_serde(m)
                .map(|message| std::hint::black_box(message).kind())
                .is_ok()
        })
        .count()
}

/// Every message checked by the crate's own JSON scanner (`RawJson::new`: the same check as
/// [`parse_ignored`], nothing kept); returns how many passed.
pub fn parse_validated(messages: &[Bytes]) -> usize {
    messages
        .iter()
        .filter(|m| sitebucket_proto::message::RawJson::new(m).is_ok())
        .count()
}

/// Every message into a `serde_json::Value`; returns how many decoded.
pub fn parse_value(messages: &[Bytes]) -> usize {
    messages
        .iter()
        .filter(|m| {
            serde_json::from_slice::<serde_json::Value>(m)
                .map(std::hint::black_box)
                .is_ok()
        })
        .count()
}

/// Every message into `IgnoredAny` (a full syntax check, nothing kept); returns how many.
pub fn parse_ignored(messages: &[Bytes]) -> usize {
    messages
        .iter()
        .filter(|m| serde_json::from_slice::<IgnoredAny>(m).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{self, BenchStream, HEAD, HEAD_GZIP, READ_BYTES};

    #[test]
    fn every_path_sees_every_message_of_the_stream() {
        let stream = BenchStream::generate(11, 2 << 20);
        let body = stream.crlf();
        let chunks = stream::chunked(&body.bytes, &body.line_ends, 11);
        let wire = stream::response(HEAD, &chunks.wire);
        let expected = Counts {
            messages: body.messages,
            keep_alives: body.keep_alives,
            bytes: stream.payload_bytes(),
        };
        for read in [READ_BYTES, 999] {
            assert_eq!(
                pipeline(&wire, Framing::Crlf, read),
                expected,
                "pipeline {read}"
            );
            assert_eq!(
                pipeline_bytes(&Bytes::from(wire.clone()), Framing::Crlf, read),
                expected,
                "pipeline_bytes {read}"
            );
            assert_eq!(naive_client(&wire, read), expected, "naive {read}");
        }
        let finder = memchr::memmem::Finder::new(b"\r\n");
        assert_eq!(
            memmem_scan(&finder, &body.bytes),
            body.messages + body.keep_alives
        );
        let mut buffer = vec![0u8; READ_BYTES];
        assert_eq!(copy_in_reads(&body.bytes, &mut buffer), body.bytes.len());
        let last = body.bytes.chunks(READ_BYTES).last().unwrap();
        assert_eq!(
            &buffer[..last.len()],
            last,
            "the last read is in the buffer"
        );

        let length = stream.length();
        let chunks = stream::chunked(&length.bytes, &length.line_ends, 11);
        let wire = stream::response(HEAD, &chunks.wire);
        assert_eq!(
            pipeline(&wire, Framing::Length, READ_BYTES),
            Counts {
                keep_alives: length.keep_alives,
                ..expected
            }
        );

        let compressed = stream::gzip(&body.bytes, &body.line_ends);
        let mut out = vec![0; READ_BYTES];
        assert_eq!(gzip_decode_alone(&compressed, &mut out), body.bytes.len());
        let chunks = stream::chunked(&compressed, &[], 11);
        let wire = stream::response(HEAD_GZIP, &chunks.wire);
        assert_eq!(pipeline(&wire, Framing::Crlf, READ_BYTES), expected);
    }

    #[test]
    fn every_parser_decodes_every_message() {
        let stream = BenchStream::generate(12, 1 << 20);
        let messages: Vec<Bytes> = stream
            .messages
            .iter()
            .map(|m| Bytes::from(m.clone()))
            .collect();
        assert_eq!(parse_typed(&messages), messages.len());
        assert_eq!(parse_value(&messages), messages.len());
        assert_eq!(parse_ignored(&messages), messages.len());
        assert_eq!(parse_validated(&messages), messages.len());
        assert_eq!(parse_typed_serde(&messages), messages.len());
        let broken = [Bytes::from_static(b"{\"for_user\":1,")];
        assert_eq!(parse_typed(&broken), 0);
        assert_eq!(parse_value(&broken), 0);
        assert_eq!(parse_ignored(&broken), 0);
        assert_eq!(parse_validated(&broken), 0);
        assert_eq!(parse_typed_serde(&broken), 0);
    }

    /// The typed decoder's own scanner against its serde reference, on the bench stream's
    /// messages (and the test server's other kinds) and on seeded mutations of them: the same
    /// `Message` or the same error, and `RawJson::new` accepts what `IgnoredAny` accepts.
    #[test]
    fn the_scanner_decodes_the_stream_and_its_mutations_as_serde_does() {
        use sitebucket_proto::message::{Message, RawJson};
        use sitebucket_testserver::corpus::Corpus;

        let mut corpus = Corpus::new(13);
        let mut messages = BenchStream::generate(13, 1 << 20).messages;
        for _ in 0..8 {
            messages.push(corpus.delete());
            messages.push(corpus.scrub_geo());
            messages.push(corpus.limit());
            messages.push(corpus.direct_message());
            messages.push(corpus.event());
            messages.push(corpus.friends_preamble(1, false));
            messages.push(corpus.friends_preamble(2, true));
        }
        let same = |bytes: &[u8], what: &str| {
            assert_eq!(
                Message::from_slice(bytes),
                Message::from_slice_serde(bytes),
                "{what}: {:?}",
                String::from_utf8_lossy(bytes)
            );
            assert_eq!(
                RawJson::new(bytes).is_ok(),
                serde_json::from_slice::<IgnoredAny>(bytes).is_ok(),
                "{what}: {:?}",
                String::from_utf8_lossy(bytes)
            );
        };
        const MEANINGFUL: &[u8] = b"{}[]:,\"\\ \t\n0123456789-+.eEtrufalsn/u\x00\x1f\xc3\xff";
        let mut rng = stream::SplitMix64::new(20_261_207);
        let mut below = |n: usize| rng.below(n.max(1) as u64) as usize;
        let (mut valid, mut rejected) = (0, 0);
        for (index, message) in messages.iter().enumerate() {
            same(message, &format!("message {index}"));
            for round in 0..20 {
                let mut bytes = message.clone();
                for _ in 0..1 + below(3) {
                    let len = bytes.len();
                    let byte = if below(4) == 0 {
                        below(256) as u8
                    } else {
                        MEANINGFUL[below(MEANINGFUL.len())]
                    };
                    match below(4) {
                        0 if len > 0 => bytes[below(len)] = byte,
                        1 => bytes.truncate(below(len + 1)),
                        2 => bytes.insert(below(len + 1), byte),
                        _ if len > 0 => {
                            bytes.remove(below(len));
                        }
                        _ => {}
                    }
                }
                same(&bytes, &format!("message {index} mutation {round}"));
                match Message::from_slice(&bytes) {
                    Ok(_) => valid += 1,
                    Err(_) => rejected += 1,
                }
            }
        }
        assert!(
            valid > 500 && rejected > 500,
            "{valid} valid, {rejected} rejected"
        );
    }
}
