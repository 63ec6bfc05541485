//! A sans-IO decoder for `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1).
//!
//! [`ChunkedDecoder::decode`] takes whatever bytes have arrived and hands back zero-copy slices
//! of the payload. All state lives in the decoder, so the input may be split anywhere: inside a
//! size line, between `\r` and `\n`, inside a trailer. Every call on non-empty input makes
//! progress, so a caller's loop never spins:
//!
//! ```
//! use sitebucket_proto::_benchable::ChunkedDecoder;
//!
//! let mut decoder = ChunkedDecoder::new();
//! let mut input: &[u8] = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
//! let mut body = Vec::new();
//! loop {
//!     let step = decoder.decode(input).unwrap();
//!     body.extend_from_slice(step.data);
//!     input = &input[step.consumed..];
//!     if step.done || (step.consumed == 0 && step.data.is_empty()) {
//!         break;
//!     }
//! }
//! assert_eq!(body, b"hello world");
//! assert!(decoder.is_done());
//! ```

use std::fmt;
use std::ops::Range;

/// The most hex digits a chunk size may have (a `u64`).
pub const MAX_SIZE_DIGITS: u32 = 16;
/// The longest chunk-size line, extensions included, line end excluded.
pub const MAX_SIZE_LINE_BYTES: usize = 4 * 1024;
/// The longest single trailer line, line end excluded.
pub const MAX_TRAILER_LINE_BYTES: usize = 4 * 1024;
/// The most trailer bytes in total, line ends included.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Why a chunked body was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkedError {
    /// A size line with no hex digit before its end or extension.
    EmptySize,
    /// A byte that is neither a hex digit, `;`, whitespace nor a line end in a size.
    InvalidSizeByte(u8),
    /// A chunk size with more than [`MAX_SIZE_DIGITS`] hex digits.
    SizeTooManyDigits,
    /// A size line (with extensions) longer than [`MAX_SIZE_LINE_BYTES`].
    SizeLineTooLong,
    /// A `\r` in a size or trailer line not followed by `\n`.
    BareCarriageReturn,
    /// The byte after a chunk's data was not the expected part of `\r\n`.
    MissingCrlfAfterData(u8),
    /// A trailer line longer than [`MAX_TRAILER_LINE_BYTES`].
    TrailerLineTooLong,
    /// Trailers longer than [`MAX_TRAILER_BYTES`] in total.
    TrailersTooLong,
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkedError::EmptySize => f.write_str("chunk size line has no hex digits"),
            ChunkedError::InvalidSizeByte(b) => write!(
                f,
                "invalid byte {:?} in chunk size (expected hex digits)",
                char::from(*b)
            ),
            ChunkedError::SizeTooManyDigits => {
                write!(f, "chunk size has more than {MAX_SIZE_DIGITS} hex digits")
            }
            ChunkedError::SizeLineTooLong => write!(
                f,
                "chunk size line is longer than {MAX_SIZE_LINE_BYTES} bytes"
            ),
            ChunkedError::BareCarriageReturn => {
                f.write_str("carriage return not followed by line feed in chunked framing")
            }
            ChunkedError::MissingCrlfAfterData(b) => write!(
                f,
                "missing CRLF after chunk data (found byte {:?})",
                char::from(*b)
            ),
            ChunkedError::TrailerLineTooLong => write!(
                f,
                "chunked trailer line is longer than {MAX_TRAILER_LINE_BYTES} bytes"
            ),
            ChunkedError::TrailersTooLong => write!(
                f,
                "chunked trailers are longer than {MAX_TRAILER_BYTES} bytes in total"
            ),
        }
    }
}

impl std::error::Error for ChunkedError {}

/// The outcome of one [`ChunkedDecoder::decode`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkStep<'a> {
    /// How many bytes of the input were used; call again with `&input[consumed..]`.
    pub consumed: usize,
    /// Payload bytes: a sub-slice of the input (possibly empty).
    pub data: &'a [u8],
    /// The terminal zero-size chunk and its trailers have been read; the body is over.
    pub done: bool,
}

impl ChunkStep<'_> {
    /// Where [`data`](Self::data) lies in the input: always the last `data.len()` bytes of
    /// the `consumed` prefix. A caller holding the input as `Bytes` can slice this range out
    /// of it instead of copying the data.
    pub fn data_range(&self) -> Range<usize> {
        self.consumed.saturating_sub(self.data.len())..self.consumed
    }
}

/// Where the decoder is in the chunked grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a size line.
    Size { value: u64, digits: u32, len: usize },
    /// After the digits: optional whitespace and `;extensions` until the line end.
    SizeRest {
        value: u64,
        len: usize,
        in_extension: bool,
    },
    /// Saw `\r` ending a size line; `\n` must follow.
    SizeLf { value: u64 },
    /// Inside a chunk's data.
    Data { remaining: u64 },
    /// Chunk data over; expecting `\r`.
    DataCr,
    /// Expecting the `\n` after chunk data.
    DataLf,
    /// After the zero-size chunk: reading a trailer line (`len` bytes so far).
    Trailer { len: usize },
    /// Saw `\r` ending a trailer line (`empty` if the line had no bytes).
    TrailerLf { empty: bool },
    /// The body is complete.
    Done,
}

/// A sans-IO `Transfer-Encoding: chunked` decoder.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Trailer bytes seen so far, line ends included.
    trailer_total: usize,
    /// The first error, returned again by every later call.
    failed: Option<ChunkedError>,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size {
                value: 0,
                digits: 0,
                len: 0,
            },
            trailer_total: 0,
            failed: None,
        }
    }

    /// Whether the terminal zero-size chunk and its trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes a prefix of `input`, returning at most one contiguous slice of payload.
    ///
    /// Call again with `&input[step.consumed..]` until `step.done`, or until a call returns
    /// `consumed == 0` with empty `data` (more input is needed: that only happens when `input`
    /// is empty). On non-empty input before the end, `consumed > 0` always. After `done`, the
    /// decoder consumes nothing more. After an error, every later call returns the same error.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<ChunkStep<'a>, ChunkedError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.decode_inner(input);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn decode_inner<'a>(&mut self, input: &'a [u8]) -> Result<ChunkStep<'a>, ChunkedError> {
        let mut pos = 0;
        while pos < input.len() {
            if let Some(used) = self.fast_line(input.get(pos..).unwrap_or(&[])) {
                pos += used;
                continue;
            }
            let byte = input[pos]; // In bounds: pos < input.len().
            let in_trailer = matches!(self.state, State::Trailer { .. } | State::TrailerLf { .. });
            match self.state {
                State::Done => break,
                State::Data { remaining } => {
                    if remaining == 0 {
                        self.state = State::DataCr;
                        continue;
                    }
                    let available = input.len() - pos;
                    // If `remaining` does not fit in usize it is larger than `available`.
                    let take = usize::try_from(remaining).map_or(available, |r| r.min(available));
                    // In bounds: take <= available = input.len() - pos.
                    let data = &input[pos..pos + take];
                    // take <= remaining, and a usize always fits in a u64 on supported targets.
                    self.state = State::Data {
                        remaining: remaining - take as u64,
                    };
                    return Ok(ChunkStep {
                        consumed: pos + take,
                        data,
                        done: false,
                    });
                }
                State::DataCr => {
                    if byte != b'\r' {
                        return Err(ChunkedError::MissingCrlfAfterData(byte));
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if byte != b'\n' {
                        return Err(ChunkedError::MissingCrlfAfterData(byte));
                    }
                    self.state = State::Size {
                        value: 0,
                        digits: 0,
                        len: 0,
                    };
                }
                State::Size { value, digits, len } => {
                    if let Some(d) = hex_value(byte) {
                        if digits >= MAX_SIZE_DIGITS {
                            return Err(ChunkedError::SizeTooManyDigits);
                        }
                        // At most 16 hex digits reach here, so the shift loses no bits.
                        self.state = State::Size {
                            value: (value << 4) | u64::from(d),
                            digits: digits + 1,
                            len: bump_line(
                                len,
                                MAX_SIZE_LINE_BYTES,
                                ChunkedError::SizeLineTooLong,
                            )?,
                        };
                    } else if digits == 0 {
                        return Err(match byte {
                            b'\r' | b'\n' | b';' => ChunkedError::EmptySize,
                            other => ChunkedError::InvalidSizeByte(other),
                        });
                    } else {
                        self.size_rest(byte, value, len, false)?;
                    }
                }
                State::SizeRest {
                    value,
                    len,
                    in_extension,
                } => self.size_rest(byte, value, len, in_extension)?,
                State::SizeLf { value } => {
                    if byte != b'\n' {
                        return Err(ChunkedError::BareCarriageReturn);
                    }
                    self.end_size_line(value);
                }
                State::Trailer { len } => match byte {
                    b'\r' => self.state = State::TrailerLf { empty: len == 0 },
                    b'\n' => self.end_trailer_line(len == 0),
                    _ => {
                        let len = bump_line(
                            len,
                            MAX_TRAILER_LINE_BYTES,
                            ChunkedError::TrailerLineTooLong,
                        )?;
                        self.state = State::Trailer { len };
                    }
                },
                State::TrailerLf { empty } => {
                    if byte != b'\n' {
                        return Err(ChunkedError::BareCarriageReturn);
                    }
                    self.end_trailer_line(empty);
                }
            }
            if in_trailer {
                self.trailer_total += 1;
                if self.trailer_total > MAX_TRAILER_BYTES {
                    return Err(ChunkedError::TrailersTooLong);
                }
            }
            pos += 1;
        }
        Ok(ChunkStep {
            consumed: pos,
            data: &[],
            done: self.state == State::Done,
        })
    }

    /// The common case in one step: the `\r\n` after a chunk's data, or a whole size line
    /// of bare hex digits and `\r\n` at the start of `input`. Returns the bytes used, or
    /// `None` (nothing changed) to let the byte-by-byte path take them — which reaches the
    /// same state, or the error, either way.
    fn fast_line(&mut self, input: &[u8]) -> Option<usize> {
        match self.state {
            State::DataCr if input.starts_with(b"\r\n") => {
                self.state = State::Size {
                    value: 0,
                    digits: 0,
                    len: 0,
                };
                Some(2)
            }
            State::Size {
                value: 0,
                digits: 0,
                len: 0,
            } => {
                let mut value = 0u64;
                let mut digits = 0;
                for &byte in input.iter().take(MAX_SIZE_DIGITS as usize) {
                    let Some(d) = hex_value(byte) else { break };
                    // At most 16 hex digits: the shift loses no bits.
                    value = (value << 4) | u64::from(d);
                    digits += 1;
                }
                let line_end = input.get(digits..digits + 2)?;
                if digits == 0 || line_end != b"\r\n" {
                    return None;
                }
                self.end_size_line(value);
                Some(digits + 2)
            }
            _ => None,
        }
    }

    /// Handles a byte after the size digits: whitespace, `;extension`, or the line end.
    fn size_rest(
        &mut self,
        byte: u8,
        value: u64,
        len: usize,
        in_extension: bool,
    ) -> Result<(), ChunkedError> {
        match byte {
            b'\r' => self.state = State::SizeLf { value },
            b'\n' => self.end_size_line(value),
            b' ' | b'\t' | b';' => {
                self.state = State::SizeRest {
                    value,
                    len: bump_line(len, MAX_SIZE_LINE_BYTES, ChunkedError::SizeLineTooLong)?,
                    in_extension: in_extension || byte == b';',
                }
            }
            // Extension contents are skipped.
            _ if in_extension => {
                self.state = State::SizeRest {
                    value,
                    len: bump_line(len, MAX_SIZE_LINE_BYTES, ChunkedError::SizeLineTooLong)?,
                    in_extension,
                }
            }
            other => return Err(ChunkedError::InvalidSizeByte(other)),
        }
        Ok(())
    }

    /// A size line ended: start the chunk's data, or the trailers after the zero-size chunk.
    fn end_size_line(&mut self, value: u64) {
        self.state = if value == 0 {
            State::Trailer { len: 0 }
        } else {
            State::Data { remaining: value }
        };
    }

    /// A trailer line ended; an empty line ends the body.
    fn end_trailer_line(&mut self, empty: bool) {
        self.state = if empty {
            State::Done
        } else {
            State::Trailer { len: 0 }
        };
    }
}

/// Counts one more byte of a line, failing past `limit`.
fn bump_line(len: usize, limit: usize, error: ChunkedError) -> Result<usize, ChunkedError> {
    let len = len.saturating_add(1);
    if len > limit {
        Err(error)
    } else {
        Ok(len)
    }
}

/// The value of an ASCII hex digit.
fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What decoding a whole input gives: the payload, whether it ended, and bytes left after.
    #[derive(Clone, Debug, PartialEq)]
    struct Outcome {
        payload: Vec<u8>,
        done: bool,
        rest: Vec<u8>,
    }

    /// Feeds `pieces` one at a time the way a driver would, checking the progress contract.
    fn decode_pieces<'a>(
        pieces: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Outcome, ChunkedError> {
        let mut decoder = ChunkedDecoder::new();
        let mut payload = Vec::new();
        let mut rest = Vec::new();
        for piece in pieces {
            let mut input = piece;
            loop {
                let before = input.len();
                let step = match decoder.decode(input) {
                    Ok(step) => step,
                    Err(e) => {
                        assert_eq!(decoder.decode(b"0\r\n\r\n"), Err(e.clone()), "sticky");
                        return Err(e);
                    }
                };
                assert!(step.consumed <= before);
                if !step.data.is_empty() {
                    // The data is the sub-slice of the consumed prefix `data_range` names,
                    // ending at `consumed` (the very bytes, so a caller may slice them).
                    let range = step.data_range();
                    assert_eq!(range.end, step.consumed);
                    assert_eq!(input[range.clone()].as_ptr(), step.data.as_ptr());
                    assert_eq!(&input[range], step.data);
                }
                payload.extend_from_slice(step.data);
                input = &input[step.consumed..];
                if step.done {
                    assert!(decoder.is_done());
                    rest.extend_from_slice(input);
                    break;
                }
                if step.consumed == 0 {
                    assert!(step.data.is_empty());
                    assert!(input.is_empty(), "no progress on non-empty input");
                    break;
                }
            }
        }
        Ok(Outcome {
            payload,
            done: decoder.is_done(),
            rest,
        })
    }

    fn whole(input: &[u8]) -> Result<Outcome, ChunkedError> {
        decode_pieces([input])
    }

    fn byte_by_byte(input: &[u8]) -> Result<Outcome, ChunkedError> {
        decode_pieces(input.chunks(1))
    }

    fn at_cuts(input: &[u8], cuts: &[usize]) -> Result<Outcome, ChunkedError> {
        decode_pieces(crate::test_cuts::cut_at(input, cuts))
    }

    /// Asserts whole and byte-by-byte decoding agree, and returns the result.
    fn decode_both(input: &[u8]) -> Result<Outcome, ChunkedError> {
        let a = whole(input);
        assert_eq!(a, byte_by_byte(input), "split changed the result");
        a
    }

    fn encode(payload: &[u8], sizes: &[usize], extensions: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = payload;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes.get(i).copied().unwrap_or(7).clamp(1, rest.len());
            i += 1;
            out.extend_from_slice(format!("{n:X}").as_bytes());
            if extensions && i % 2 == 0 {
                out.extend_from_slice(b" ; name=\"va;l\"");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        out.extend_from_slice(b"0\r\n");
        if extensions {
            out.extend_from_slice(b"X-Trailer: yes\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    #[test]
    fn decodes_a_simple_body() {
        let out = decode_both(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nNEXT").unwrap();
        assert_eq!(out.payload, b"hello world");
        assert!(out.done);
        assert_eq!(out.rest, b"NEXT");
    }

    #[test]
    fn needs_more_input_until_the_end() {
        let input = b"3\r\nabc\r\n0\r\n\r\n";
        for cut in 0..input.len() {
            let out = whole(&input[..cut]).unwrap();
            assert!(!out.done, "done too early at {cut}");
        }
        assert!(whole(input).unwrap().done);
    }

    #[test]
    fn returns_one_slice_per_call_and_zero_copy() {
        let input = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let mut d = ChunkedDecoder::new();
        let step = d.decode(input).unwrap();
        assert_eq!(step.data, b"abc");
        assert_eq!(step.consumed, 6);
        assert_eq!(step.data.as_ptr(), input[3..].as_ptr());
        let step = d.decode(&input[6..]).unwrap();
        assert_eq!(step.data, b"de");
        let step = d.decode(&input[6 + step.consumed..]).unwrap();
        assert!(step.done && step.data.is_empty());
        // After the end nothing more is consumed.
        let step = d.decode(b"more").unwrap();
        assert_eq!((step.consumed, step.done), (0, true));
    }

    #[test]
    fn sixteen_hex_digits_are_fine_seventeen_and_twenty_are_not() {
        let out = decode_both(b"0000000000000003\r\nabc\r\n0\r\n\r\n").unwrap();
        assert_eq!(out.payload, b"abc");
        for digits in [17, 20] {
            let line = format!("{}\r\n", "1".repeat(digits));
            let err = decode_both(line.as_bytes()).unwrap_err();
            assert_eq!(err, ChunkedError::SizeTooManyDigits);
            assert_eq!(err.to_string(), "chunk size has more than 16 hex digits");
        }
    }

    #[test]
    fn huge_sizes_stream_without_buffering() {
        let mut input = b"FFFFFFFFFFFFFFFF\r\n".to_vec();
        input.extend_from_slice(&[b'x'; 1000]);
        let out = decode_both(&input).unwrap();
        assert_eq!(out.payload.len(), 1000);
        assert!(!out.done);
    }

    #[test]
    fn bad_sizes_are_errors() {
        let cases: [(&[u8], ChunkedError); 7] = [
            (b"\r\n", ChunkedError::EmptySize),
            (b";ext\r\n", ChunkedError::EmptySize),
            (b"-5\r\n", ChunkedError::InvalidSizeByte(b'-')),
            (b"g\r\n", ChunkedError::InvalidSizeByte(b'g')),
            (b"5x\r\n", ChunkedError::InvalidSizeByte(b'x')),
            (b" 5\r\n", ChunkedError::InvalidSizeByte(b' ')),
            (b"5\rX", ChunkedError::BareCarriageReturn),
        ];
        for (input, expected) in cases {
            assert_eq!(decode_both(input), Err(expected.clone()), "{input:?}");
            assert!(!expected.to_string().is_empty());
        }
        assert!(ChunkedError::InvalidSizeByte(b'-')
            .to_string()
            .contains("'-'"));
    }

    #[test]
    fn size_line_length_is_bounded() {
        let mut ok = b"1;".to_vec();
        ok.resize(MAX_SIZE_LINE_BYTES, b'e');
        ok.extend_from_slice(b"\r\nZ\r\n0\r\n\r\n");
        assert_eq!(decode_both(&ok).unwrap().payload, b"Z");
        let mut long = b"1;".to_vec();
        long.resize(MAX_SIZE_LINE_BYTES + 1, b'e');
        assert_eq!(decode_both(&long), Err(ChunkedError::SizeLineTooLong));
    }

    #[test]
    fn bare_lf_size_lines_are_accepted_but_data_needs_crlf() {
        let out = decode_both(b"2\nab\r\n0\n\n").unwrap();
        assert_eq!(out.payload, b"ab");
        assert!(out.done);
        assert_eq!(
            decode_both(b"2\r\nab\n0\r\n\r\n"),
            Err(ChunkedError::MissingCrlfAfterData(b'\n'))
        );
        let err = decode_both(b"2\r\nabc").unwrap_err();
        assert_eq!(err, ChunkedError::MissingCrlfAfterData(b'c'));
        assert!(err.to_string().contains("missing CRLF after chunk data"));
        assert_eq!(
            decode_both(b"2\r\nab\rX"),
            Err(ChunkedError::MissingCrlfAfterData(b'X'))
        );
    }

    #[test]
    fn trailers_are_skipped_and_bounded() {
        let out = decode_both(b"1\r\na\r\n0\r\nA: 1\r\nB: 2\n\r\nrest").unwrap();
        assert_eq!(out.payload, b"a");
        assert!(out.done);
        assert_eq!(out.rest, b"rest");

        let mut long_line = b"0\r\n".to_vec();
        long_line.resize(3 + MAX_TRAILER_LINE_BYTES + 1, b't');
        assert_eq!(
            decode_both(&long_line),
            Err(ChunkedError::TrailerLineTooLong)
        );
        let mut fits_line = b"0\r\n".to_vec();
        fits_line.resize(3 + MAX_TRAILER_LINE_BYTES, b't');
        fits_line.extend_from_slice(b"\r\n\r\n");
        assert!(decode_both(&fits_line).unwrap().done);

        let mut many = b"0\r\n".to_vec();
        let line = format!("X: {}\r\n", "v".repeat(1000));
        while many.len() < 4 + MAX_TRAILER_BYTES + 10 {
            many.extend_from_slice(line.as_bytes());
        }
        assert_eq!(decode_both(&many), Err(ChunkedError::TrailersTooLong));
    }

    #[test]
    fn empty_input_makes_no_progress_and_no_data() {
        let mut d = ChunkedDecoder::new();
        let step = d.decode(b"").unwrap();
        assert_eq!((step.consumed, step.data.len(), step.done), (0, 0, false));
    }

    proptest! {
        #[test]
        fn split_invariance_on_valid_bodies(
            payload in proptest::collection::vec(any::<u8>(), 0..600),
            sizes in proptest::collection::vec(1usize..300, 0..10),
            extensions in any::<bool>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let input = encode(&payload, &sizes, extensions);
            let expected = Outcome { payload: payload.clone(), done: true, rest: Vec::new() };
            prop_assert_eq!(whole(&input), Ok(expected));
            prop_assert_eq!(byte_by_byte(&input), whole(&input));
            prop_assert_eq!(at_cuts(&input, &cuts), whole(&input));
        }

        #[test]
        fn split_invariance_on_arbitrary_bytes(
            input in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'0'), Just(b'3'), Just(b'a'), Just(b';'), any::<u8>()],
                0..200),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let expected = whole(&input);
            prop_assert_eq!(byte_by_byte(&input), expected.clone());
            prop_assert_eq!(at_cuts(&input, &cuts), expected);
        }
    }
}
