//! The checks behind every fuzz target, as plain functions.
//!
//! Each `pub fn <target>(data: &[u8])` decodes its input, drives one part of the protocol core
//! and panics when an invariant breaks; it returns a small summary so tests can see what an
//! input exercised. The cargo-fuzz targets in `fuzz/fuzz_targets/` call these functions, and
//! `tests/fuzz_seeds.rs` replays every committed seed under `fuzz/seeds/<target>/` through
//! them on stable, so CI checks the seeds without nightly.
//!
//! Input layouts (missing header bytes read as zero):
//! - `framer`: `[mode, max_lo, max_hi, split, body...]`; `mode & 1` picks
//!   `delimited=length`, `max_message_bytes = u16::from_le_bytes([max_lo, max_hi])`.
//! - `chunked`: `[split, body...]`.
//! - `response_head`: `[split, bytes...]`.
//! - `gzip_body`: `[mode, window, split, body...]`; `mode % 3` picks gzip, deflate or identity,
//!   each `decode_into` call may write at most `1 + window²` bytes.
//! - `stream`: a [`StreamInput`] decoded with `arbitrary` (see [`StreamInput::to_bytes`]).
//!
//! `split` chooses how the body is cut into pushes (see [`pieces`]); every target also runs the
//! whole input and the input byte by byte and demands the same result.

// The fuzz crate re-exports these functions (`fuzz/src/lib.rs`: `pub use fuzz_logic::*`), so
// they stay `pub` although the test binary that also includes this file cannot reach them.
#![allow(unreachable_pub)]
#![allow(dead_code)] // Each includer uses a subset.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use sitebucket_proto::_benchable::MAX_HEAD_BYTES;
use sitebucket_proto::{
    _benchable::{
        parse_head, ChunkedDecoder, ContentDecoder, ContentEncoding, ResponseHead, ResponseReader,
    },
    Action, ChunkedError, Config, Credentials, DecodeError, Framing, HeadError, Outcome, ReadError,
    SiteStream, StreamError, StreamEvent,
};
use sitebucket_proto::{
    _benchable::{Frame, Framer},
    FrameError,
};
use sitebucket_proto::{BackoffPolicy, FailureKind, Jitter, SquaredBackoff};

/// The names of the fuzz targets, which are also the seed directories.
pub const TARGETS: [&str; 6] = [
    "framer",
    "chunked",
    "response_head",
    "gzip_body",
    "stream",
    "message",
];

/// Runs the target called `name` on `data`; `false` if there is no such target.
pub fn run_target(name: &str, data: &[u8]) -> bool {
    match name {
        "framer" => {
            framer(data);
        }
        "chunked" => {
            chunked(data);
        }
        "response_head" => {
            response_head(data);
        }
        "gzip_body" => {
            gzip_body(data);
        }
        "stream" => {
            stream(data);
        }
        "message" => {
            message(data);
        }
        _ => return false,
    }
    true
}

/// Splits `data` into its first `N` bytes (zero-padded) and the rest.
fn header<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut head = [0u8; N];
    let n = N.min(data.len());
    head[..n].copy_from_slice(&data[..n]);
    (head, &data[n..])
}

/// Inputs longer than this are not also run byte by byte (it is slow under the sanitizers;
/// the `split`-chosen pieces still cut them anywhere).
pub const BYTEWISE_LIMIT: usize = 8 * 1024;

/// Asserts `actual == expected` item by item, printing only the first difference.
fn same_items<T: PartialEq + std::fmt::Debug>(expected: &[T], actual: &[T], what: &str) {
    if expected != actual {
        let at = expected
            .iter()
            .zip(actual)
            .position(|(a, b)| a != b)
            .unwrap_or(expected.len().min(actual.len()));
        let show = |items: &[T]| {
            let text = format!("{:?}", items.get(at));
            text.chars().take(300).collect::<String>()
        };
        panic!(
            "{what}: {} items expected, {} got; at {at}: expected {}, got {}",
            expected.len(),
            actual.len(),
            show(expected),
            show(actual)
        );
    }
}

/// Cuts `data` into pushes: `0` whole, `1` byte by byte, otherwise pieces of pseudo-random
/// sizes from 1 to `2^(split % 12)` drawn from a generator seeded with `split`.
pub fn pieces(data: &[u8], split: u8) -> Vec<&[u8]> {
    match split {
        0 => vec![data],
        1 => data.chunks(1).collect(),
        _ => {
            let max = 1usize << (split % 12);
            let mut state = u32::from(split).wrapping_mul(0x9E37_79B9) | 1;
            let mut out = Vec::new();
            let mut rest = data;
            while !rest.is_empty() {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let n = (1 + state as usize % max).min(rest.len());
                let (piece, tail) = rest.split_at(n);
                out.push(piece);
                rest = tail;
            }
            out
        }
    }
}

// ----- framer -----

/// What a framer made of a byte stream: the frames, then the error that stopped it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FramerOutcome {
    /// Every frame, in order.
    pub frames: Vec<Frame>,
    /// The error framing stopped on, if any.
    pub error: Option<FrameError>,
}

/// The `framer` target: [`Framer`] fed whole, byte by byte and in `split`-chosen pieces, each
/// way ([`Feed`]: copied in by `push`, handed over as `Bytes` by `push_bytes`, or both in
/// turn), must agree with [`reference_frames`], and hold at most `max + 2` bytes (12 while
/// reading a count) between pushes.
pub fn framer(data: &[u8]) -> FramerOutcome {
    let ([mode, max_lo, max_hi, split], body) = header::<4>(data);
    let framing = if mode & 1 == 0 {
        Framing::Crlf
    } else {
        Framing::Length
    };
    let max = usize::from(u16::from_le_bytes([max_lo, max_hi]));
    let expected = reference_frames(framing, max, body);
    for cut in [0, 1, split] {
        if cut == 1 && body.len() > BYTEWISE_LIMIT {
            continue;
        }
        for feed in [Feed::Copy, Feed::Bytes, Feed::Mixed] {
            let got = run_framer(framing, max, &pieces(body, cut), feed);
            let what = format!("{framing:?} max {max}, split {cut}, {feed:?}");
            same_items(&expected.frames, &got.frames, &what);
            assert_eq!(expected.error, got.error, "{what}");
        }
    }
    expected
}

/// How pieces are handed to a [`Framer`] or a [`ResponseReader`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// `push(&[u8])`: copied in.
    Copy,
    /// `push_bytes(Bytes)`: each piece a slice of one `Bytes` holding the whole input, as a
    /// driver reading into one block hands them over (zero-copy).
    Bytes,
    /// `push_bytes` and `push` in turn.
    Mixed,
}

/// `pieces` (consecutive slices of one input) as slices of one `Bytes` copy of that input.
fn as_bytes_slices(pieces: &[&[u8]]) -> Vec<bytes::Bytes> {
    let whole = bytes::Bytes::from(pieces.concat());
    let mut at = 0;
    pieces
        .iter()
        .map(|piece| {
            at += piece.len();
            whole.slice(at - piece.len()..at)
        })
        .collect()
}

fn run_framer(framing: Framing, max: usize, pieces: &[&[u8]], feed: Feed) -> FramerOutcome {
    let mut framer = Framer::new(framing, max);
    let mut out = FramerOutcome::default();
    let slices = as_bytes_slices(pieces);
    for (i, (piece, slice)) in pieces.iter().zip(slices).enumerate() {
        if feed == Feed::Bytes || (feed == Feed::Mixed && i % 2 == 0) {
            framer.push_bytes(slice);
        } else {
            framer.push(piece);
        }
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => out.frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    // Errors are sticky, the buffer is dropped and later pushes are ignored.
                    assert_eq!(framer.next_frame(), Err(e.clone()));
                    framer.push(b"1\r\nx\r\n");
                    assert_eq!(framer.buffered(), 0);
                    assert_eq!(framer.next_frame(), Err(e.clone()));
                    out.error = Some(e);
                    return out;
                }
            }
        }
        let bound = (max + 2).max(12);
        assert!(
            framer.buffered() <= bound,
            "framer holds {} bytes after draining (max {max})",
            framer.buffered()
        );
    }
    out
}

/// A whole-input splitter written from the framing rules alone, with no incremental state.
///
/// CRLF: a message ends at the first `\r\n`; an empty line or a lone `\n` where a message
/// would start is a keep-alive; a message (or an unterminated rest, less one final `\r`)
/// longer than `max` is an error. Length: a line of decimal digits (at most 10) ending in `\n`
/// or `\r\n` is a count, a line without digits a keep-alive; the next `count` bytes are the
/// frame, whose trailing `\r\n` is dropped; a count of 0, a bad byte, or a frame longer than
/// `max` (decided from the count as soon as `count - 2 > max`) is an error.
pub fn reference_frames(framing: Framing, max: usize, data: &[u8]) -> FramerOutcome {
    let mut out = FramerOutcome::default();
    let mut rest = data;
    let too_long = FrameError::TooLong { limit: max };
    match framing {
        Framing::Crlf => loop {
            if let Some(after) = rest.strip_prefix(b"\n") {
                out.frames.push(Frame::KeepAlive);
                rest = after;
                continue;
            }
            match rest.windows(2).position(|w| w == b"\r\n") {
                Some(end) => {
                    if end > max {
                        out.error = Some(too_long);
                        return out;
                    }
                    out.frames.push(if end == 0 {
                        Frame::KeepAlive
                    } else {
                        Frame::Message(rest[..end].to_vec().into())
                    });
                    rest = &rest[end + 2..];
                }
                None => {
                    let pending = rest.len() - usize::from(rest.ends_with(b"\r"));
                    if pending > max {
                        out.error = Some(too_long);
                    }
                    return out;
                }
            }
        },
        Framing::Length => loop {
            let mut digits = 0usize;
            let mut value: u64 = 0;
            let mut line_end = None;
            let mut i = 0;
            while i < rest.len() {
                match rest[i] {
                    b @ b'0'..=b'9' => {
                        digits += 1;
                        if digits > 10 {
                            out.error = Some(FrameError::CountTooManyDigits);
                            return out;
                        }
                        value = value * 10 + u64::from(b - b'0');
                    }
                    b'\n' => {
                        line_end = Some(i + 1);
                        break;
                    }
                    b'\r' => match rest.get(i + 1) {
                        None => return out,
                        Some(b'\n') => {
                            line_end = Some(i + 2);
                            break;
                        }
                        Some(_) => {
                            out.error = Some(FrameError::InvalidCount(b'\r'));
                            return out;
                        }
                    },
                    other => {
                        out.error = Some(FrameError::InvalidCount(other));
                        return out;
                    }
                }
                i += 1;
            }
            let Some(line_end) = line_end else {
                return out;
            };
            rest = &rest[line_end..];
            if digits == 0 {
                out.frames.push(Frame::KeepAlive);
                continue;
            }
            if value == 0 {
                out.error = Some(FrameError::ZeroCount);
                return out;
            }
            if value.saturating_sub(2) > max as u64 {
                out.error = Some(too_long);
                return out;
            }
            let len = value as usize; // At most 10 digits and <= max + 2: fits.
            if rest.len() < len {
                return out;
            }
            let mut frame = &rest[..len];
            rest = &rest[len..];
            if let Some(body) = frame.strip_suffix(b"\r\n") {
                frame = body;
            }
            if frame.len() > max {
                out.error = Some(too_long);
                return out;
            }
            out.frames.push(if frame.is_empty() {
                Frame::KeepAlive
            } else {
                Frame::Message(frame.to_vec().into())
            });
        },
    }
}

// ----- chunked -----

/// What a chunked decoder made of a body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkedOutcome {
    /// The payload handed out.
    pub payload: Vec<u8>,
    /// Whether the last chunk and the trailers were read.
    pub done: bool,
    /// Bytes of the input that belonged to the body (0 when it failed).
    pub consumed: usize,
    /// The error decoding stopped on, if any.
    pub error: Option<ChunkedError>,
}

/// The `chunked` target: [`ChunkedDecoder`] fed whole must agree with the same decoder fed
/// byte by byte and in `split`-chosen pieces; every call on non-empty input before the end
/// makes progress, and the payload is a sub-slice of the input.
pub fn chunked(data: &[u8]) -> ChunkedOutcome {
    let ([split], body) = header::<1>(data);
    let whole = run_chunked(&pieces(body, 0));
    for cut in [1, split] {
        let got = run_chunked(&pieces(body, cut));
        let what = format!("split {cut}");
        same_items(&whole.payload, &got.payload, &what);
        assert_eq!(
            (whole.done, whole.consumed, &whole.error),
            (got.done, got.consumed, &got.error),
            "{what}"
        );
    }
    whole
}

fn run_chunked(pieces: &[&[u8]]) -> ChunkedOutcome {
    let mut decoder = ChunkedDecoder::new();
    let mut out = ChunkedOutcome::default();
    for piece in pieces {
        let mut input: &[u8] = piece;
        loop {
            match decoder.decode(input) {
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    assert_eq!(decoder.decode(b"0\r\n\r\n"), Err(e.clone()), "sticky");
                    out.error = Some(e);
                    out.consumed = 0;
                    return out;
                }
                Ok(step) => {
                    assert!(step.consumed <= input.len());
                    if !step.data.is_empty() {
                        let start = step.consumed.checked_sub(step.data.len());
                        let start = start.expect("data lies within the consumed bytes");
                        assert!(
                            std::ptr::eq(step.data.as_ptr(), input[start..].as_ptr()),
                            "data is the end of the consumed input"
                        );
                    }
                    assert_eq!(step.done, decoder.is_done());
                    if !input.is_empty() && !step.done {
                        assert!(step.consumed > 0, "no progress on non-empty input");
                    }
                    out.payload.extend_from_slice(step.data);
                    out.consumed += step.consumed;
                    input = &input[step.consumed..];
                    if step.done {
                        out.done = true;
                        let again = decoder.decode(b"5\r\nhello\r\n").expect("done is no error");
                        assert_eq!((again.consumed, again.done), (0, true));
                        return out;
                    }
                    if input.is_empty() {
                        break;
                    }
                }
            }
        }
    }
    out
}

// ----- response head -----

/// What [`parse_head`] made of a buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadOutcome {
    /// The head and its length, once complete.
    pub head: Option<(ResponseHead, usize)>,
    /// Why it was refused.
    pub error: Option<HeadError>,
}

/// The `response_head` target: [`parse_head`] answers the same for the head alone, the head
/// with more bytes after it and (`Ok(None)`) for prefixes; errors stay errors as bytes are
/// added; `TooLarge` only at [`MAX_HEAD_BYTES`]; and a [`ResponseReader`] fed the bytes in
/// `split`-chosen pieces reports the same head or head error.
pub fn response_head(data: &[u8]) -> HeadOutcome {
    let ([split], buf) = header::<1>(data);
    let result = parse_head(buf);
    let mut extended = buf.to_vec();
    extended.extend_from_slice(b"X-Later: 1\r\n\r\nbody");
    let samples = sample_points(buf.len(), split);
    match &result {
        Ok(Some((head, n))) => {
            assert!(*n <= buf.len() && *n <= MAX_HEAD_BYTES);
            assert_eq!(parse_head(&buf[..*n]), result, "the head alone");
            assert_eq!(parse_head(&extended), result, "with more bytes after");
            for p in samples.into_iter().filter(|p| p < n) {
                assert_eq!(parse_head(&buf[..p]), Ok(None), "prefix of {p} bytes");
            }
            // Three digits; "000" is accepted too (and classified as an HTTP error).
            assert!(head.status <= 999);
            assert_eq!(
                head.class(),
                sitebucket_proto::_benchable::classify(head.status)
            );
        }
        Ok(None) => {
            assert!(buf.len() < MAX_HEAD_BYTES);
            for p in samples {
                assert_eq!(parse_head(&buf[..p]), Ok(None), "prefix of {p} bytes");
            }
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            if matches!(e, HeadError::TooLarge { .. }) {
                assert!(buf.len() >= MAX_HEAD_BYTES);
            }
            assert_eq!(parse_head(&extended), result, "an error stays an error");
        }
    }
    // The reader, fed in pieces, reports the same head (or head error).
    let mut reader = ResponseReader::new(Framing::Crlf, 1 << 20);
    let mut seen_head = None;
    let mut seen_error = None;
    for piece in pieces(buf, split) {
        match reader.push(piece) {
            Ok(Some(head)) => seen_head = Some(head),
            Ok(None) => {}
            Err(e) => {
                seen_error = Some(e);
                break;
            }
        }
        if seen_head.is_some() {
            break;
        }
    }
    match &result {
        Ok(Some((head, _))) => assert_eq!(seen_head.as_ref(), Some(head), "{seen_error:?}"),
        Ok(None) => assert_eq!((seen_head, seen_error), (None, None)),
        Err(e) => assert_eq!(seen_error, Some(ReadError::Head(e.clone()))),
    }
    let (head, error) = match result {
        Ok(head) => (head, None),
        Err(e) => (None, Some(e)),
    };
    HeadOutcome { head, error }
}

/// A few prefix lengths below `len` worth checking: the ends and some spread by `seed`.
fn sample_points(len: usize, seed: u8) -> Vec<usize> {
    let mut points = vec![0, len / 2, len.saturating_sub(1), len.saturating_sub(2)];
    let mut state = u64::from(seed) | 0x100;
    for _ in 0..4 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        points.push((state >> 33) as usize % (len + 1));
    }
    points.retain(|&p| p < len);
    points
}

// ----- gzip body -----

/// The most decoded bytes the `gzip_body` target keeps before it stops comparing.
pub const GZIP_OUTPUT_CAP: usize = 16 << 20;
/// The most `decode_into` calls the `gzip_body` target makes.
const GZIP_CALL_CAP: usize = 1_000_000;

/// What a content decoder made of a body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GzipOutcome {
    /// The decoded bytes (up to [`GZIP_OUTPUT_CAP`]).
    pub output: Vec<u8>,
    /// The error decoding stopped on, if any.
    pub error: Option<DecodeError>,
    /// Whether the stream ended with nothing after it.
    pub finished: bool,
    /// Whether decoding stopped at a cap, so nothing was compared.
    pub capped: bool,
    /// flate2's own one-shot decode, when it succeeded.
    pub reference: Option<Vec<u8>>,
}

/// The `gzip_body` target: [`ContentDecoder`] fed in `split`-chosen pieces and drained
/// through windows of `1 + window²` bytes never writes more than the window per call, agrees
/// with itself fed whole, and agrees with flate2's one-shot decoder (`MultiGzDecoder`,
/// `ZlibDecoder` or `DeflateDecoder`) whenever that one succeeds — except where the decoder
/// refuses by design (a gzip `FNAME`/`FCOMMENT` over its limit, bytes after a deflate stream).
pub fn gzip_body(data: &[u8]) -> GzipOutcome {
    let ([mode, window, split], body) = header::<3>(data);
    let encoding = match mode % 3 {
        0 => ContentEncoding::Gzip,
        1 => ContentEncoding::Deflate,
        _ => ContentEncoding::Identity,
    };
    let max_out = 1 + usize::from(window) * usize::from(window);
    let mut outcome = run_content(encoding, &pieces(body, split), max_out);
    if outcome.capped {
        return outcome;
    }
    let whole = run_content(encoding, &pieces(body, 0), 1 << 16);
    if !whole.capped {
        let what = format!("{encoding:?}, whole vs split {split}, window {max_out}");
        assert_eq!(
            (&whole.error, whole.finished),
            (&outcome.error, outcome.finished),
            "{what}"
        );
        if whole.error.is_none() {
            same_bytes(&whole.output, &outcome.output, &what);
        } else {
            // How much the inflater hands out before it reports corrupt data depends on the
            // buffer sizes it was given; what it hands out is the same.
            let n = whole.output.len().min(outcome.output.len());
            same_bytes(&whole.output[..n], &outcome.output[..n], &what);
        }
    }
    outcome.reference = one_shot(encoding, body);
    match &outcome.reference {
        Some(reference) => match &outcome.error {
            Some(DecodeError::GzipFieldTooLong { .. }) => {
                assert!(reference.starts_with(&outcome.output));
            }
            Some(DecodeError::TrailingData) => {
                assert_eq!(encoding, ContentEncoding::Deflate);
                same_bytes(reference, &outcome.output, "output before trailing data");
            }
            Some(e) => panic!("{encoding:?}: flate2 decodes the body, we fail: {e}"),
            None => {
                same_bytes(
                    reference,
                    &outcome.output,
                    &format!("{encoding:?} vs flate2"),
                );
                if encoding == ContentEncoding::Gzip && !body.is_empty() {
                    assert!(outcome.finished, "gzip: flate2 saw the end, we did not");
                }
            }
        },
        None => {
            assert!(
                !(outcome.finished && outcome.error.is_none()),
                "{encoding:?}: we decode the whole body, flate2 fails"
            );
        }
    }
    outcome
}

/// Asserts `actual == expected` without printing megabytes when they differ.
fn same_bytes(expected: &[u8], actual: &[u8], what: &str) {
    same_items(expected, actual, what);
}

fn run_content(encoding: ContentEncoding, pieces: &[&[u8]], max_out: usize) -> GzipOutcome {
    let mut decoder = ContentDecoder::new(encoding);
    let mut outcome = GzipOutcome::default();
    let mut calls = 0usize;
    for piece in pieces {
        let before = decoder.buffered_input();
        decoder.push(piece);
        assert_eq!(decoder.buffered_input(), before + piece.len());
        loop {
            calls += 1;
            if calls > GZIP_CALL_CAP || outcome.output.len() > GZIP_OUTPUT_CAP {
                outcome.capped = true;
                return outcome;
            }
            let mut out = BytesMut::new();
            let buffered = decoder.buffered_input();
            match decoder.decode_into(&mut out, max_out) {
                Ok(n) => {
                    assert!(n <= max_out, "{n} bytes out of a {max_out}-byte window");
                    assert_eq!(out.len(), n);
                    assert!(decoder.buffered_input() <= buffered);
                    outcome.output.extend_from_slice(&out);
                    if n == 0 {
                        break;
                    }
                }
                Err(e) => {
                    // Bytes decoded before the error in this call stay in `out`.
                    assert!(
                        out.len() <= max_out,
                        "{} bytes out of a {max_out}-byte window",
                        out.len()
                    );
                    outcome.output.extend_from_slice(&out);
                    assert!(!e.to_string().is_empty());
                    assert_eq!(decoder.decode_into(&mut out, max_out), Err(e.clone()));
                    decoder.push(b"more");
                    assert_eq!(decoder.buffered_input(), 0, "input dropped after an error");
                    outcome.error = Some(e);
                    return outcome;
                }
            }
        }
    }
    outcome.finished = decoder.is_finished();
    outcome
}

/// flate2's own decode of the whole body, `None` when it fails or exceeds the cap.
fn one_shot(encoding: ContentEncoding, body: &[u8]) -> Option<Vec<u8>> {
    let reader: Box<dyn Read + '_> = match encoding {
        ContentEncoding::Identity => return Some(body.to_vec()),
        ContentEncoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(body)),
        ContentEncoding::Deflate => match body {
            [cmf, flg, ..] if looks_like_zlib(*cmf, *flg) => {
                Box::new(flate2::read::ZlibDecoder::new(body))
            }
            _ => Box::new(flate2::read::DeflateDecoder::new(body)),
        },
    };
    let mut out = Vec::new();
    reader
        .take(GZIP_OUTPUT_CAP as u64 + 1)
        .read_to_end(&mut out)
        .ok()?;
    (out.len() <= GZIP_OUTPUT_CAP).then_some(out)
}

/// RFC 1950 §2.2: method 8, window ≤ 32 KiB, and the check bits (the decoder's documented
/// rule for telling zlib from raw deflate).
fn looks_like_zlib(cmf: u8, flg: u8) -> bool {
    cmf & 0x0F == 8 && cmf >> 4 <= 7 && (u16::from(cmf) * 256 + u16::from(flg)) % 31 == 0
}

// ----- stream -----

/// The stream's endpoint: plain HTTP, so the bytes are the plaintext.
pub const STREAM_URL: &str = "http://127.0.0.1:8080/1.1/site.json";
/// The users followed.
pub const STREAM_FOLLOW: [u64; 3] = [1, 2, 3];
/// The wall-clock seconds at the start of a run (requests are signed with it).
pub const UNIX_START: u64 = 1_700_000_000;
/// The jitter RNG's seed.
const JITTER_SEED: u64 = 7;
/// `poll_action` calls one drain may take before the harness calls it a hang.
const DRAIN_LIMIT: usize = 20_000_000;

/// The stream's configuration, as fuzzed.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Setup {
    /// `delimited=length` instead of CRLF framing.
    pub length_framing: bool,
    /// Ask for gzip (the server decides; the response head says what came).
    pub gzip: bool,
    /// `max_message_bytes` (0 reads as 1).
    pub max_message: u16,
    /// The squared backoff policy instead of Twitter's.
    pub squared: bool,
    /// Jitter fraction in 255ths (0: no jitter).
    pub jitter: u8,
    /// Retry limit (0: unlimited).
    pub retry_limit: u8,
    /// Stall timeout in tenths of a second, minus one.
    pub stall_tenths: u16,
    /// Connect timeout in tenths of a second, minus one.
    pub connect_tenths: u16,
}

impl Setup {
    /// Realistic defaults: CRLF, no gzip, 64 KiB messages, Twitter backoff, 90 s stall,
    /// 40 s connect timeout.
    pub fn realistic() -> Setup {
        Setup {
            length_framing: false,
            gzip: false,
            max_message: u16::MAX,
            squared: false,
            jitter: 0,
            retry_limit: 0,
            stall_tenths: 899,
            connect_tenths: 399,
        }
    }

    /// The backoff policy.
    pub fn policy(&self) -> BackoffPolicy {
        if self.squared {
            BackoffPolicy::Squared(SquaredBackoff::default())
        } else {
            BackoffPolicy::default()
        }
    }

    /// The jitter fraction, 0.0 to 1.0.
    pub fn jitter_fraction(&self) -> f64 {
        f64::from(self.jitter) / 255.0
    }

    /// `max_message_bytes`.
    pub fn max_message_bytes(&self) -> usize {
        usize::from(self.max_message.max(1))
    }

    /// The checked configuration (the test server's default credentials).
    pub fn config(&self) -> Config {
        let credentials = Credentials::new(
            "sitebucket-test-consumer-key",
            "sitebucket-test-consumer-secret",
            "1234567890-sitebucket-test-token",
            "sitebucket-test-token-secret",
        );
        let tenths = |t: u16| Duration::from_millis(100 * (u64::from(t) + 1));
        Config::builder(STREAM_FOLLOW, credentials)
            .url(STREAM_URL)
            .framing(if self.length_framing {
                Framing::Length
            } else {
                Framing::Crlf
            })
            .gzip(self.gzip)
            .max_message_bytes(self.max_message_bytes())
            .backoff(self.policy())
            .jitter((self.jitter > 0).then(|| Jitter {
                fraction: self.jitter_fraction(),
                seed: JITTER_SEED,
            }))
            .retry_limit((self.retry_limit > 0).then_some(u32::from(self.retry_limit)))
            .stall_timeout(tenths(self.stall_tenths))
            .connect_timeout(tenths(self.connect_tenths))
            // A fixed nonce seed: the same input signs the same requests on every run.
            .rng_seed(0)
            .build()
            .expect("every fuzzed setup is a valid config")
    }
}

/// Bytes from the connection: a `u16` length, then that many bytes (fewer at the end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk(pub Vec<u8>);

impl<'a> Arbitrary<'a> for Chunk {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let len = usize::from(u16::arbitrary(u)?).min(u.len());
        Ok(Chunk(u.bytes(len)?.to_vec()))
    }
}

/// One thing that happens to the stream. After each, the harness drains `poll_action`.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `handle_input` (or `handle_input_bytes`, for odd lengths) with these bytes.
    Input(Chunk),
    /// `handle_eof`.
    Eof,
    /// `handle_connected`.
    Connected,
    /// `handle_connect_failed` with one of a few error kinds.
    ConnectFailed(u8),
    /// Time moves on by this many milliseconds.
    Advance(u16),
    /// Time moves to the stream's deadline, then `handle_timeout`.
    ToDeadline,
    /// A spurious `handle_timeout` now.
    Timeout,
    /// `disconnect()`.
    Disconnect,
    /// `reset_throttles()`.
    ResetThrottles,
}

/// The `stream` target's whole input.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct StreamInput {
    /// The configuration.
    pub setup: Setup,
    /// What happens, in order.
    pub ops: Vec<Op>,
}

const OP_VARIANTS: u64 = 9;

impl StreamInput {
    /// Decodes fuzz bytes (never fails: missing bytes read as zero, the op list ends early).
    pub fn from_bytes(data: &[u8]) -> StreamInput {
        StreamInput::arbitrary_take_rest(Unstructured::new(data))
            .expect("every byte string decodes")
    }

    /// The bytes [`from_bytes`](Self::from_bytes) decodes back into `self` — how seeds are
    /// written. Chunks must be at most 65535 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let s = &self.setup;
        let mut out = vec![
            u8::from(s.length_framing),
            u8::from(s.gzip),
            s.max_message.to_le_bytes()[0],
            s.max_message.to_le_bytes()[1],
            u8::from(s.squared),
            s.jitter,
            s.retry_limit,
        ];
        out.extend_from_slice(&s.stall_tenths.to_le_bytes());
        out.extend_from_slice(&s.connect_tenths.to_le_bytes());
        for op in &self.ops {
            out.push(1); // "one more element"
            let (index, fields): (u64, Vec<u8>) = match op {
                Op::Input(Chunk(bytes)) => {
                    let len = u16::try_from(bytes.len()).expect("chunks are at most 65535 bytes");
                    let mut f = len.to_le_bytes().to_vec();
                    f.extend_from_slice(bytes);
                    (0, f)
                }
                Op::Eof => (1, vec![]),
                Op::Connected => (2, vec![]),
                Op::ConnectFailed(k) => (3, vec![*k]),
                Op::Advance(ms) => (4, ms.to_le_bytes().to_vec()),
                Op::ToDeadline => (5, vec![]),
                Op::Timeout => (6, vec![]),
                Op::Disconnect => (7, vec![]),
                Op::ResetThrottles => (8, vec![]),
            };
            // The derive picks variant `(u32 * count) >> 32`: take the smallest u32 that maps
            // to `index`.
            let tag = (index << 32).div_ceil(OP_VARIANTS);
            out.extend_from_slice(&(tag as u32).to_le_bytes());
            out.extend_from_slice(&fields);
        }
        out
    }
}

/// What a `stream` run did, for tests to check what a seed exercised.
#[derive(Clone, Debug, Default)]
pub struct StreamReport {
    /// `Connect` actions.
    pub connects: usize,
    /// The status of every response head.
    pub statuses: Vec<u16>,
    /// Messages handed out.
    pub messages: usize,
    /// Keep-alives handed out.
    pub keep_alives: usize,
    /// Every `Disconnected` error, as text.
    pub disconnects: Vec<String>,
    /// How the stream ended, if it did.
    pub outcome: Option<Outcome>,
    /// Frames the shadow reader had that the stream dropped when corrupt compressed data
    /// closed the connection (see `ConnModel::expect`; any other read error drops none).
    pub frames_dropped_on_error: usize,
    /// The most bytes the stream buffered at any check.
    pub max_buffered: usize,
}

/// One open connection as the harness sees it, with a shadow reader fed the same bytes cut
/// differently (pieces of at most 64 bytes, drained after each): the frames the stream must
/// hand out, in order.
struct ConnModel {
    shadow: ResponseReader,
    pending: VecDeque<Frame>,
    shadow_status: Option<u16>,
    shadow_error: Option<ReadError>,
    heads: usize,
    established: bool,
    eof: bool,
    requests: usize,
    /// The stream went past the shadow's frames on corrupt compressed data (see
    /// [`ConnModel::expect`]): frames are no longer compared on this connection.
    diverged: bool,
}

impl ConnModel {
    fn new(setup: &Setup) -> Self {
        let framing = if setup.length_framing {
            Framing::Length
        } else {
            Framing::Crlf
        };
        ConnModel {
            shadow: ResponseReader::new(framing, setup.max_message_bytes()),
            pending: VecDeque::new(),
            shadow_status: None,
            shadow_error: None,
            heads: 0,
            established: false,
            eof: false,
            requests: 0,
            diverged: false,
        }
    }

    /// Checks that the stream's next frame is the shadow's next one.
    ///
    /// One exception: on corrupt deflate data, how much output the inflater (miniz_oxide)
    /// hands out before it reports the error depends on the sizes of the buffers it is given —
    /// flate2's own `Decompress` does the same — so the stream may hand out a few more frames
    /// than the shadow, or a few fewer (see `close`). Every frame both produced is compared.
    fn expect(&mut self, frame: Frame) {
        if self.diverged {
            return;
        }
        match self.pending.pop_front() {
            Some(expected) => assert_eq!(expected, frame, "frame out of order"),
            None if is_corrupt(self.shadow_error.as_ref()) => self.diverged = true,
            None => panic!("a frame the shadow reader does not have: {frame:?}"),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for byte in pieces(bytes, 6) {
            if self.shadow_error.is_some() {
                return;
            }
            match self.shadow.push(byte) {
                Ok(Some(head)) => self.shadow_status = Some(head.status),
                Ok(None) => {}
                Err(e) => {
                    self.shadow_error = Some(e);
                    return;
                }
            }
            loop {
                match self.shadow.poll_frame() {
                    Ok(Some(frame)) => self.pending.push_back(frame),
                    Ok(None) => break,
                    Err(e) => {
                        self.shadow_error = Some(e);
                        return;
                    }
                }
            }
        }
    }
}

/// Whether `error` is corrupt deflate data.
fn is_corrupt(error: Option<&ReadError>) -> bool {
    matches!(error, Some(ReadError::Decode(DecodeError::Corrupt { .. })))
}

enum Socket {
    None,
    Connecting,
    Open(Box<ConnModel>),
}

/// The `stream` target: a whole [`SiteStream`] driven by a fuzzed sequence of [`Op`]s,
/// draining `poll_action` after each as the drain contract says. Checked throughout:
/// - every `Wait` deadline lies after `now` and equals `deadline()`;
/// - no `Connect` after `disconnect()` until `reset_throttles()`, and never while a connection
///   or attempt is active; `Transmit` only on an open connection; `Close` only with one;
///   `Finished` only with none;
/// - `buffered()` ≤ `max_message_bytes` + 64 KiB + the last input chunk's size;
/// - every `Disconnected.retry_in` within the policy's bounds for its failure kind (less
///   the jitter fraction), and never for an error that should finish the stream;
/// - messages and keep-alives only after a `200` head, in exactly the order and content a
///   reader fed the same bytes in other pieces produces; none left unhanded at a `Wait` or when
///   the peer closed; no `Wait` on a connection at EOF;
/// - `poll_action` settles (returns `Wait` or `Finished`) after every step.
pub fn stream(data: &[u8]) -> StreamReport {
    run_stream(&StreamInput::from_bytes(data))
}

/// [`stream`] on a decoded input.
pub fn run_stream(input: &StreamInput) -> StreamReport {
    let setup = &input.setup;
    let config = setup.config();
    let max = setup.max_message_bytes();
    let policy = setup.policy();
    let retry_limit = config.retry_limit();
    let start = Instant::now();
    let mut h = Harness {
        setup,
        max,
        policy,
        retry_limit,
        stream: SiteStream::new(config),
        now: start,
        socket: Socket::None,
        stopped: false,
        finished: None,
        last_chunk: 0,
        stop_requested: false,
        report: StreamReport::default(),
    };
    h.drain();
    for op in &input.ops {
        h.stop_requested = false;
        h.apply(op, start);
        h.drain();
    }
    h.report
}

struct Harness<'a> {
    setup: &'a Setup,
    max: usize,
    policy: BackoffPolicy,
    retry_limit: Option<u32>,
    stream: SiteStream,
    now: Instant,
    socket: Socket,
    /// `disconnect()` was called and `reset_throttles()` not since.
    stopped: bool,
    finished: Option<Outcome>,
    last_chunk: usize,
    /// `disconnect()` was called in the current step.
    stop_requested: bool,
    report: StreamReport,
}

impl Harness<'_> {
    fn apply(&mut self, op: &Op, start: Instant) {
        let now = self.now;
        match op {
            Op::Input(Chunk(bytes)) => {
                if let Socket::Open(conn) = &mut self.socket {
                    conn.feed(bytes);
                }
                self.last_chunk = bytes.len();
                // Both ways in: borrowed (copied by the core) and owned (framed in place).
                if bytes.len() % 2 == 0 {
                    self.stream.handle_input(now, bytes);
                } else {
                    let owned = bytes::Bytes::copy_from_slice(bytes);
                    self.stream.handle_input_bytes(now, owned);
                }
                self.check_buffered();
            }
            Op::Eof => {
                if let Socket::Open(conn) = &mut self.socket {
                    conn.eof = true;
                }
                self.stream.handle_eof(now);
            }
            Op::Connected => {
                if matches!(self.socket, Socket::Connecting) {
                    self.socket = Socket::Open(Box::new(ConnModel::new(self.setup)));
                }
                let unix = UNIX_START + now.duration_since(start).as_secs();
                self.stream.handle_connected(now, unix);
            }
            Op::ConnectFailed(k) => {
                // The driver knows its attempt failed: no Close follows.
                if matches!(self.socket, Socket::Connecting) {
                    self.socket = Socket::None;
                }
                const KINDS: [io::ErrorKind; 6] = [
                    io::ErrorKind::ConnectionRefused,
                    io::ErrorKind::ConnectionReset,
                    io::ErrorKind::TimedOut,
                    io::ErrorKind::NotFound,
                    io::ErrorKind::AddrNotAvailable,
                    io::ErrorKind::Other,
                ];
                self.stream
                    .handle_connect_failed(now, KINDS[usize::from(*k) % KINDS.len()]);
            }
            Op::Advance(ms) => self.now += Duration::from_millis(u64::from(*ms)),
            Op::ToDeadline => {
                if let Some(deadline) = self.stream.deadline() {
                    self.now = self.now.max(deadline);
                }
                self.stream.handle_timeout(self.now);
            }
            Op::Timeout => self.stream.handle_timeout(now),
            Op::Disconnect => {
                self.stream.disconnect();
                assert!(self.stream.disconnect_issued());
                assert!(!self.stream.running());
                self.stopped = true;
                self.stop_requested = true;
            }
            Op::ResetThrottles => {
                self.stream.reset_throttles();
                assert!(!self.stream.disconnect_issued());
                assert!(self.stream.running(), "reset_throttles revives the stream");
                assert_eq!(self.stream.error_count(), 0);
                self.stopped = false;
                self.finished = None;
            }
        }
    }

    fn check_buffered(&mut self) {
        let buffered = self.stream.buffered();
        self.report.max_buffered = self.report.max_buffered.max(buffered);
        let bound = self.max + (64 << 10) + self.last_chunk;
        assert!(
            buffered <= bound,
            "stream buffers {buffered} bytes; bound {bound} (max_message_bytes {} + 64 KiB + chunk {})",
            self.max,
            self.last_chunk
        );
        if !matches!(self.socket, Socket::Open(_)) {
            assert_eq!(buffered, 0, "bytes buffered without a connection");
        }
    }

    /// Calls `poll_action` until `Wait` or `Finished`, checking each action.
    fn drain(&mut self) {
        let now = self.now;
        for _ in 0..DRAIN_LIMIT {
            match self.stream.poll_action(now) {
                Action::Connect { host, port, tls } => {
                    assert!(!self.stopped, "Connect after disconnect()");
                    assert!(self.finished.is_none(), "Connect after Finished");
                    assert!(
                        matches!(self.socket, Socket::None),
                        "Connect while a connection or attempt is active"
                    );
                    assert_eq!((host.as_str(), port, tls), ("127.0.0.1", 8080, false));
                    self.socket = Socket::Connecting;
                    self.report.connects += 1;
                }
                Action::Transmit(bytes) => {
                    let Socket::Open(conn) = &mut self.socket else {
                        panic!("Transmit without an open connection");
                    };
                    conn.requests += 1;
                    assert_eq!(conn.requests, 1, "one request per connection");
                    assert!(bytes.starts_with(b"GET /1.1/site.json?"), "{bytes:?}");
                }
                Action::Event(event) => self.event(event),
                Action::Close => self.close(),
                Action::Wait(deadline) => {
                    assert!(
                        deadline > now,
                        "Wait({deadline:?}) is not after now ({now:?})"
                    );
                    assert_eq!(Some(deadline), self.stream.deadline());
                    assert!(self.stream.running());
                    if let Socket::Open(conn) = &self.socket {
                        assert!(!conn.eof, "waiting on a connection the peer closed");
                        assert_eq!(conn.shadow_error, None, "the stream missed a read error");
                        assert!(
                            conn.pending.is_empty(),
                            "{} complete frames not handed out before Wait",
                            conn.pending.len()
                        );
                    }
                    self.settled();
                    return;
                }
                Action::Finished(outcome) => {
                    assert!(
                        matches!(self.socket, Socket::None),
                        "Finished with a connection or attempt still active"
                    );
                    assert!(!self.stream.running());
                    if let Some(previous) = &self.finished {
                        assert_eq!(previous, &outcome, "the outcome never changes");
                    } else if self.stop_requested {
                        assert_eq!(outcome, Outcome::Stopped);
                    }
                    if let Outcome::GaveUp { attempts, .. } = &outcome {
                        assert_eq!(Some(*attempts), self.retry_limit);
                    }
                    assert!(!outcome.to_string().is_empty());
                    self.finished = Some(outcome.clone());
                    self.report.outcome = Some(outcome);
                    self.settled();
                    return;
                }
            }
        }
        panic!("poll_action did not settle after {DRAIN_LIMIT} calls");
    }

    /// Checks that hold whenever the stream waits or has finished.
    fn settled(&mut self) {
        self.check_buffered();
        if let Some(limit) = self.retry_limit {
            assert!(self.stream.error_count() <= limit);
        }
        assert_eq!(
            self.stream.is_established(),
            matches!(&self.socket, Socket::Open(c) if c.established)
        );
    }

    fn event(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Connected { status, .. } => {
                let Socket::Open(conn) = &mut self.socket else {
                    panic!("a response head without an open connection");
                };
                conn.heads += 1;
                assert_eq!(conn.heads, 1, "one head per connection");
                assert_eq!(conn.shadow_status, Some(status));
                conn.established = status == 200;
                self.report.statuses.push(status);
            }
            StreamEvent::Message(message) => {
                assert!(!message.is_empty() && message.len() <= self.max);
                self.established_conn().expect(Frame::Message(message));
                self.report.messages += 1;
            }
            StreamEvent::KeepAlive => {
                self.established_conn().expect(Frame::KeepAlive);
                self.report.keep_alives += 1;
            }
            StreamEvent::Disconnected { error, retry_in } => {
                assert!(!self.stopped, "Disconnected after disconnect()");
                assert!(
                    matches!(self.socket, Socket::None),
                    "Disconnected before the Close of the connection or attempt: {error}"
                );
                let kind = error
                    .failure_kind()
                    .unwrap_or_else(|| panic!("{error} must finish the stream, not retry"));
                self.check_retry(kind, retry_in);
                self.report.disconnects.push(error.to_string());
            }
            _ => {}
        }
    }

    fn established_conn(&mut self) -> &mut ConnModel {
        match &mut self.socket {
            Socket::Open(conn) if conn.established => conn,
            _ => panic!("a frame without an established connection"),
        }
    }

    fn check_retry(&self, kind: FailureKind, retry_in: Duration) {
        // Jitter never takes a wait below its kind's minimum.
        let (low, high) = self.policy.bounds(kind);
        assert!(
            low <= retry_in && retry_in <= high,
            "retry_in {retry_in:?} for {kind:?} outside {low:?}..={high:?}"
        );
    }

    fn close(&mut self) {
        let socket = std::mem::replace(&mut self.socket, Socket::None);
        let conn = match socket {
            Socket::None => panic!("Close without a connection"),
            Socket::Connecting => return,
            Socket::Open(conn) => conn,
        };
        if self.stop_requested || !conn.established {
            return;
        }
        // The reason is recorded before the Close is queued.
        match &self.stream.stats().last_error {
            Some(StreamError::Closed | StreamError::ClosedMidMessage { .. }) => {
                assert_eq!(conn.shadow_error, None);
                assert!(
                    conn.pending.is_empty(),
                    "{} complete frames lost when the peer closed",
                    conn.pending.len()
                );
            }
            Some(StreamError::Read(e)) => {
                // On corrupt deflate data either side may have decoded further (see
                // `ConnModel::expect`) and so stopped on another error; otherwise the errors
                // agree and every frame before the error was handed out.
                if !is_corrupt(Some(e)) && !is_corrupt(conn.shadow_error.as_ref()) {
                    assert_eq!(
                        conn.shadow_error.as_ref(),
                        Some(e),
                        "a different read error"
                    );
                    assert!(
                        conn.pending.is_empty(),
                        "{} complete frames dropped by the read error {e}",
                        conn.pending.len()
                    );
                }
                self.report.frames_dropped_on_error += conn.pending.len();
            }
            Some(StreamError::Stall(_)) => {
                assert!(
                    conn.pending.is_empty(),
                    "frames left when a stall was declared"
                );
            }
            _ => {}
        }
    }
}

/// `message`: [`Message::from_slice`](sitebucket_proto::message::Message::from_slice) (the
/// crate's own JSON scanner) gives exactly what its serde reference gives, the same message
/// or the same error, and never panics. Returns whether the input decoded.
pub fn message(data: &[u8]) -> bool {
    use sitebucket_proto::message::Message;
    let fast = Message::from_slice(data);
    let reference = Message::from_slice_serde(data);
    assert_eq!(fast, reference, "{:?}", String::from_utf8_lossy(data));
    fast.is_ok()
}
