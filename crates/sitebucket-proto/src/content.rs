//! `Content-Encoding` decoding (identity, gzip, deflate) with bounded output.
//!
//! [`ContentDecoder::push`] buffers encoded bytes; [`ContentDecoder::decode_into`] writes at most
//! `max_out` decoded bytes per call. However well the input compresses (a "gzip bomb" turns
//! 1 MB into 1 GB), a caller that drains its output between calls holds at most `max_out`
//! decoded bytes, plus the decoder's fixed 32 KiB deflate window.
//!
//! Gzip (RFC 1952) is decoded with this module's own incremental header and trailer parser
//! around [`flate2::Decompress`] in raw-deflate mode, so the header may arrive split anywhere,
//! header CRC, body CRC-32 and length are all checked, and several members may follow one
//! another. Deflate is zlib-wrapped (RFC 1950) deflate; raw deflate, which some servers send
//! instead, is detected from the first two bytes and accepted too.
//!
//! ```
//! use bytes::BytesMut;
//! use sitebucket_proto::_benchable::ContentDecoder;
//! use sitebucket_proto::_benchable::ContentEncoding;
//!
//! let mut decoder = ContentDecoder::new(ContentEncoding::Identity);
//! decoder.push(b"hello");
//! let mut out = BytesMut::new();
//! assert_eq!(decoder.decode_into(&mut out, 3).unwrap(), 3);
//! assert_eq!(decoder.decode_into(&mut out, 3).unwrap(), 2);
//! assert_eq!(decoder.decode_into(&mut out, 3).unwrap(), 0); // needs more input
//! assert_eq!(&out[..], b"hello");
//! ```

use std::fmt;

use bytes::{Buf, BytesMut};
use flate2::{Crc, Decompress, FlushDecompress, Status};

use crate::response::ContentEncoding;

/// The longest gzip `FNAME` or `FCOMMENT` field accepted, its terminating zero included.
pub const MAX_GZIP_TEXT_FIELD: usize = 1024;

/// How many output bytes are made room for at a time, whatever `max_out` is.
const OUTPUT_STEP: usize = 32 * 1024;

/// Gzip header flag bits (RFC 1952 §2.3.1).
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xE0;

/// Why an encoded body could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A gzip member did not start with the magic bytes `1f 8b`.
    GzipBadMagic,
    /// A gzip compression method other than 8 (deflate).
    GzipUnsupportedMethod(u8),
    /// Reserved gzip flag bits were set.
    GzipReservedFlags(u8),
    /// A gzip `FNAME` or `FCOMMENT` field longer than [`MAX_GZIP_TEXT_FIELD`].
    GzipFieldTooLong {
        /// `"FNAME"` or `"FCOMMENT"`.
        field: &'static str,
    },
    /// The gzip header's CRC-16 (`FHCRC`) did not match the header.
    GzipHeaderCrcMismatch {
        /// The value in the header.
        expected: u16,
        /// The value computed from the header bytes.
        actual: u16,
    },
    /// The gzip trailer's CRC-32 did not match the decoded data.
    GzipCrcMismatch {
        /// The value in the trailer.
        expected: u32,
        /// The value computed from the decoded data.
        actual: u32,
    },
    /// The gzip trailer's ISIZE did not match the decoded length (mod 2^32).
    GzipSizeMismatch {
        /// The value in the trailer.
        expected: u32,
        /// The decoded length mod 2^32.
        actual: u32,
    },
    /// The compressed data is not a valid deflate (or zlib) stream.
    Corrupt {
        /// `"gzip"` or `"deflate"`.
        encoding: &'static str,
        /// What the inflater said.
        detail: String,
    },
    /// Bytes arrived after the end of a deflate stream.
    TrailingData,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::GzipBadMagic => {
                f.write_str("gzip member does not start with the magic bytes 1f 8b")
            }
            DecodeError::GzipUnsupportedMethod(m) => {
                write!(
                    f,
                    "gzip compression method {m} is not supported (only 8, deflate)"
                )
            }
            DecodeError::GzipReservedFlags(flg) => {
                write!(f, "gzip header sets reserved flag bits (FLG = {flg:#04x})")
            }
            DecodeError::GzipFieldTooLong { field } => write!(
                f,
                "gzip header field {field} is longer than {MAX_GZIP_TEXT_FIELD} bytes"
            ),
            DecodeError::GzipHeaderCrcMismatch { expected, actual } => write!(
                f,
                "gzip header CRC mismatch: header says {expected:#06x}, computed {actual:#06x}"
            ),
            DecodeError::GzipCrcMismatch { expected, actual } => write!(
                f,
                "gzip CRC-32 mismatch: trailer says {expected:#010x}, data has {actual:#010x}"
            ),
            DecodeError::GzipSizeMismatch { expected, actual } => write!(
                f,
                "gzip length mismatch: trailer says {expected} bytes (mod 2^32), decoded {actual}"
            ),
            DecodeError::Corrupt { encoding, detail } => {
                write!(f, "corrupt {encoding} body: {detail}")
            }
            DecodeError::TrailingData => {
                f.write_str("unexpected bytes after the end of the deflate stream")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Where the decoder is in the encoded stream.
#[derive(Debug)]
enum Stage {
    /// No encoding: bytes pass through.
    Identity,
    /// Reading a gzip member's header.
    GzipHeader(GzipHeader),
    /// Inflating a gzip member's raw deflate data.
    GzipBody,
    /// Reading a gzip member's 8-byte trailer.
    GzipTrailer { bytes: [u8; 8], have: usize },
    /// A gzip member ended; more input starts a new member.
    GzipMemberEnd,
    /// Deflate: waiting for two bytes to tell zlib from raw deflate.
    DeflateDetect,
    /// Inflating a deflate stream.
    DeflateBody,
    /// The deflate stream ended.
    DeflateEnd,
}

/// A streaming `Content-Encoding` decoder with bounded output per call.
pub struct ContentDecoder {
    encoding: ContentEncoding,
    input: BytesMut,
    stage: Stage,
    inflate: Option<Decompress>,
    /// CRC-32 of the current gzip member's decoded bytes.
    crc: Crc,
    /// Decoded length of the current gzip member, mod 2^32.
    size: u32,
    /// The first error, returned again by every later call.
    failed: Option<DecodeError>,
}

impl fmt::Debug for ContentDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContentDecoder")
            .field("encoding", &self.encoding)
            .field("buffered_input", &self.input.len())
            .field("stage", &self.stage)
            .field("failed", &self.failed)
            .finish()
    }
}

impl ContentDecoder {
    /// A decoder for a body with the given `Content-Encoding`.
    pub fn new(encoding: ContentEncoding) -> Self {
        let (stage, inflate) = match encoding {
            ContentEncoding::Identity => (Stage::Identity, None),
            ContentEncoding::Gzip => (
                Stage::GzipHeader(GzipHeader::new()),
                Some(Decompress::new(false)),
            ),
            ContentEncoding::Deflate => (Stage::DeflateDetect, None),
        };
        ContentDecoder {
            encoding,
            input: BytesMut::new(),
            stage,
            inflate,
            crc: Crc::new(),
            size: 0,
            failed: None,
        }
    }

    /// The encoding this decoder undoes.
    pub fn encoding(&self) -> ContentEncoding {
        self.encoding
    }

    /// Buffers encoded bytes. The caller bounds how much it pushes before draining with
    /// [`decode_into`](Self::decode_into); see [`buffered_input`](Self::buffered_input).
    pub fn push(&mut self, input: &[u8]) {
        if self.failed.is_none() {
            self.input.extend_from_slice(input);
        }
    }

    /// How many encoded bytes are buffered and not yet decoded.
    pub fn buffered_input(&self) -> usize {
        self.input.len()
    }

    /// Whether a gzip or deflate stream has ended with nothing buffered after it.
    ///
    /// An identity body has no end marker, so this is always `false` for it.
    pub fn is_finished(&self) -> bool {
        match self.stage {
            Stage::GzipMemberEnd | Stage::DeflateEnd => self.input.is_empty(),
            _ => false,
        }
    }

    /// Decodes buffered input, appending at most `max_out` bytes to `out`; returns how many.
    ///
    /// `0` means more input is needed (or the stream is finished, see
    /// [`is_finished`](Self::is_finished)); a caller that got `max_out` bytes should call again
    /// after draining `out`, as more may be ready. After an error, every later call returns the
    /// same error; bytes decoded in the failing call before the error (at most `max_out`) stay
    /// appended to `out`.
    pub fn decode_into(
        &mut self,
        out: &mut BytesMut,
        max_out: usize,
    ) -> Result<usize, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.decode_inner(out, max_out);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.input = BytesMut::new();
        }
        result
    }

    fn decode_inner(&mut self, out: &mut BytesMut, max_out: usize) -> Result<usize, DecodeError> {
        let mut written = 0;
        while written < max_out {
            match &mut self.stage {
                Stage::Identity => {
                    let n = self.input.len().min(max_out - written);
                    out.extend_from_slice(&self.input[..n]); // In bounds: n <= input.len().
                    self.input.advance(n);
                    written += n;
                    break;
                }
                Stage::GzipHeader(header) => {
                    let (consumed, complete) = header.feed(&self.input)?;
                    self.input.advance(consumed);
                    if !complete {
                        break; // The parser used every buffered byte.
                    }
                    if let Some(inflate) = &mut self.inflate {
                        inflate.reset(false);
                    }
                    self.crc.reset();
                    self.size = 0;
                    self.stage = Stage::GzipBody;
                }
                Stage::GzipBody | Stage::DeflateBody => {
                    let (produced, progressed, ended) =
                        self.inflate_step(out, max_out - written)?;
                    written += produced;
                    if ended {
                        self.stage = match self.stage {
                            Stage::GzipBody => Stage::GzipTrailer {
                                bytes: [0; 8],
                                have: 0,
                            },
                            _ => Stage::DeflateEnd,
                        };
                    } else if !progressed {
                        break;
                    }
                }
                Stage::GzipTrailer { bytes, have } => {
                    let n = (8 - *have).min(self.input.len());
                    // In bounds: have + n <= 8 and n <= input.len().
                    bytes[*have..*have + n].copy_from_slice(&self.input[..n]);
                    *have += n;
                    self.input.advance(n);
                    if *have < 8 {
                        break;
                    }
                    let expected_crc = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                    let expected_size =
                        u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
                    let actual_crc = self.crc.sum();
                    if expected_crc != actual_crc {
                        return Err(DecodeError::GzipCrcMismatch {
                            expected: expected_crc,
                            actual: actual_crc,
                        });
                    }
                    if expected_size != self.size {
                        return Err(DecodeError::GzipSizeMismatch {
                            expected: expected_size,
                            actual: self.size,
                        });
                    }
                    self.stage = Stage::GzipMemberEnd;
                }
                Stage::GzipMemberEnd => {
                    if self.input.is_empty() {
                        break;
                    }
                    // Concatenated members (RFC 1952 §2.2): anything else is a bad header.
                    self.stage = Stage::GzipHeader(GzipHeader::new());
                }
                Stage::DeflateDetect => {
                    if self.input.len() < 2 {
                        break;
                    }
                    let zlib = looks_like_zlib(self.input[0], self.input[1]); // len >= 2.
                    self.inflate = Some(Decompress::new(zlib));
                    self.stage = Stage::DeflateBody;
                }
                Stage::DeflateEnd => {
                    if !self.input.is_empty() {
                        return Err(DecodeError::TrailingData);
                    }
                    break;
                }
            }
        }
        Ok(written)
    }

    /// Runs the inflater once into at most `room` new bytes of `out`.
    ///
    /// Returns (bytes produced, whether anything happened, whether the stream ended).
    fn inflate_step(
        &mut self,
        out: &mut BytesMut,
        room: usize,
    ) -> Result<(usize, bool, bool), DecodeError> {
        let gzip = matches!(self.stage, Stage::GzipBody);
        let encoding = if gzip { "gzip" } else { "deflate" };
        let Some(inflate) = &mut self.inflate else {
            // Both body stages are only entered with an inflater set.
            return Err(DecodeError::Corrupt {
                encoding,
                detail: "internal error: no inflater".into(),
            });
        };
        let step = room.min(OUTPUT_STEP);
        let start = out.len();
        out.resize(start + step, 0);
        let (in_before, out_before) = (inflate.total_in(), inflate.total_out());
        let status = inflate.decompress(&self.input, &mut out[start..], FlushDecompress::None);
        // The inflater never reports more than the slices it was given, so both fit in usize.
        let consumed = (inflate.total_in() - in_before) as usize;
        let produced = (inflate.total_out() - out_before) as usize;
        out.truncate(start + produced);
        self.input.advance(consumed.min(self.input.len()));
        if gzip {
            self.crc.update(&out[start..]);
            // ISIZE is the length mod 2^32 (RFC 1952 §2.3.1), so truncation is intended.
            self.size = self.size.wrapping_add(produced as u32);
        }
        let status = status.map_err(|e| DecodeError::Corrupt {
            encoding,
            detail: e.to_string(),
        })?;
        let ended = status == Status::StreamEnd;
        Ok((produced, consumed > 0 || produced > 0, ended))
    }
}

/// Whether two bytes form a zlib header (RFC 1950 §2.2): method 8, window ≤ 32 KiB, check bits.
fn looks_like_zlib(cmf: u8, flg: u8) -> bool {
    cmf & 0x0F == 8 && cmf >> 4 <= 7 && (u16::from(cmf) * 256 + u16::from(flg)) % 31 == 0
}

/// An incremental RFC 1952 member-header parser.
#[derive(Debug)]
struct GzipHeader {
    /// Bytes of the fixed 10-byte part seen so far.
    fixed_have: usize,
    flags: u8,
    step: HeaderStep,
    /// CRC-32 of the header bytes so far (its low 16 bits are `FHCRC`).
    crc: Crc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderStep {
    /// The fixed part: magic, method, flags, mtime, xfl, os.
    Fixed,
    /// `XLEN`, two little-endian bytes.
    ExtraLen { low: Option<u8> },
    /// Skipping `remaining` bytes of `FEXTRA`.
    Extra { remaining: u16 },
    /// A zero-terminated field (`FNAME` or `FCOMMENT`), `len` bytes so far.
    Text { comment: bool, len: usize },
    /// The `FHCRC` header CRC-16, two little-endian bytes.
    Crc16 { low: Option<u8> },
    /// Header complete.
    Done,
}

impl GzipHeader {
    fn new() -> Self {
        GzipHeader {
            fixed_have: 0,
            flags: 0,
            step: HeaderStep::Fixed,
            crc: Crc::new(),
        }
    }

    /// Consumes header bytes from `input`; returns (consumed, header complete).
    fn feed(&mut self, input: &[u8]) -> Result<(usize, bool), DecodeError> {
        let mut pos = 0;
        while pos < input.len() && self.step != HeaderStep::Done {
            if let HeaderStep::Extra { remaining } = self.step {
                // Skip a run of FEXTRA bytes at once.
                let n = usize::from(remaining).min(input.len() - pos);
                self.crc.update(&input[pos..pos + n]); // In bounds: n <= input.len() - pos.
                pos += n;
                // n <= remaining, which is a u16.
                let remaining = remaining - n as u16;
                if remaining == 0 {
                    self.after_extra();
                } else {
                    self.step = HeaderStep::Extra { remaining };
                }
                continue;
            }
            let byte = input[pos]; // In bounds: pos < input.len().
            pos += 1;
            if !matches!(self.step, HeaderStep::Crc16 { .. }) {
                self.crc.update(&[byte]);
            }
            self.byte(byte)?;
        }
        Ok((pos, self.step == HeaderStep::Done))
    }

    fn byte(&mut self, byte: u8) -> Result<(), DecodeError> {
        match self.step {
            HeaderStep::Fixed => {
                match self.fixed_have {
                    0 if byte != 0x1f => return Err(DecodeError::GzipBadMagic),
                    1 if byte != 0x8b => return Err(DecodeError::GzipBadMagic),
                    2 if byte != 8 => return Err(DecodeError::GzipUnsupportedMethod(byte)),
                    3 if byte & FRESERVED != 0 => return Err(DecodeError::GzipReservedFlags(byte)),
                    3 => self.flags = byte,
                    _ => {}
                }
                self.fixed_have += 1;
                if self.fixed_have == 10 {
                    if self.flags & FEXTRA != 0 {
                        self.step = HeaderStep::ExtraLen { low: None };
                    } else {
                        self.after_extra();
                    }
                }
            }
            HeaderStep::ExtraLen { low: None } => {
                self.step = HeaderStep::ExtraLen { low: Some(byte) }
            }
            HeaderStep::ExtraLen { low: Some(low) } => {
                let remaining = u16::from_le_bytes([low, byte]);
                if remaining == 0 {
                    self.after_extra();
                } else {
                    self.step = HeaderStep::Extra { remaining };
                }
            }
            HeaderStep::Text { comment, len } => {
                let len = len + 1;
                if byte == 0 {
                    if comment {
                        self.after_comment();
                    } else {
                        self.after_name();
                    }
                } else if len >= MAX_GZIP_TEXT_FIELD {
                    // `len` bytes and no terminator yet: with it the field would be longer.
                    return Err(DecodeError::GzipFieldTooLong {
                        field: if comment { "FCOMMENT" } else { "FNAME" },
                    });
                } else {
                    self.step = HeaderStep::Text { comment, len };
                }
            }
            HeaderStep::Crc16 { low: None } => self.step = HeaderStep::Crc16 { low: Some(byte) },
            HeaderStep::Crc16 { low: Some(low) } => {
                let expected = u16::from_le_bytes([low, byte]);
                // FHCRC is the low 16 bits of the header's CRC-32 (RFC 1952 §2.3.1).
                let actual = (self.crc.sum() & 0xFFFF) as u16;
                if expected != actual {
                    return Err(DecodeError::GzipHeaderCrcMismatch { expected, actual });
                }
                self.step = HeaderStep::Done;
            }
            // Extra runs are handled in `feed`; Done stops `feed`'s loop.
            HeaderStep::Extra { .. } | HeaderStep::Done => {}
        }
        Ok(())
    }

    fn after_extra(&mut self) {
        if self.flags & FNAME != 0 {
            self.step = HeaderStep::Text {
                comment: false,
                len: 0,
            };
        } else {
            self.after_name();
        }
    }

    fn after_name(&mut self) {
        if self.flags & FCOMMENT != 0 {
            self.step = HeaderStep::Text {
                comment: true,
                len: 0,
            };
        } else {
            self.after_comment();
        }
    }

    fn after_comment(&mut self) {
        self.step = if self.flags & FHCRC != 0 {
            HeaderStep::Crc16 { low: None }
        } else {
            HeaderStep::Done
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use proptest::prelude::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A gzip member with every optional header field, built by hand (FHCRC included).
    fn gzip_with_all_fields(data: &[u8]) -> Vec<u8> {
        let mut out = vec![
            0x1f,
            0x8b,
            8,
            FHCRC | FEXTRA | FNAME | FCOMMENT,
            1,
            2,
            3,
            4,
            0,
            3,
        ];
        out.extend_from_slice(&[5, 0, b'A', b'B', 3, 0, b'x']); // XLEN 5: one subfield.
        out.extend_from_slice(b"name.json\0");
        out.extend_from_slice(b"a comment\0");
        let mut crc = Crc::new();
        crc.update(&out);
        out.extend_from_slice(&((crc.sum() & 0xFFFF) as u16).to_le_bytes());
        out.extend_from_slice(&raw_deflate(data));
        let mut crc = Crc::new();
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out
    }

    /// Pushes `pieces` one at a time, draining with windows of `max_out`, like a driver would.
    fn decode_pieces<'a>(
        encoding: ContentEncoding,
        pieces: impl IntoIterator<Item = &'a [u8]>,
        max_out: usize,
    ) -> Result<(Vec<u8>, bool), DecodeError> {
        let mut d = ContentDecoder::new(encoding);
        let mut decoded = Vec::new();
        let mut out = BytesMut::new();
        for piece in pieces {
            d.push(piece);
            loop {
                let n = d.decode_into(&mut out, max_out)?;
                assert!(n <= max_out);
                assert_eq!(n, out.len());
                decoded.extend_from_slice(&out);
                out.clear();
                if n == 0 {
                    break;
                }
            }
        }
        Ok((decoded, d.is_finished()))
    }

    fn whole(enc: ContentEncoding, input: &[u8]) -> Result<(Vec<u8>, bool), DecodeError> {
        decode_pieces(enc, [input], usize::MAX)
    }

    /// Decodes whole with an unbounded window and byte by byte with tiny windows; they agree.
    fn decode_both(enc: ContentEncoding, input: &[u8]) -> Result<(Vec<u8>, bool), DecodeError> {
        let a = whole(enc, input);
        assert_eq!(
            a,
            decode_pieces(enc, input.chunks(1), 1),
            "byte by byte, 1-byte window"
        );
        assert_eq!(
            a,
            decode_pieces(enc, input.chunks(1), 7),
            "byte by byte, 7-byte window"
        );
        a
    }

    fn sample() -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..300 {
            v.extend_from_slice(
                format!("{{\"id\":{i},\"text\":\"tweet number {i}\"}}\r\n").as_bytes(),
            );
        }
        v
    }

    #[test]
    fn identity_passes_through_in_bounded_steps() {
        let (out, finished) = decode_both(ContentEncoding::Identity, b"hello world").unwrap();
        assert_eq!(out, b"hello world");
        assert!(!finished, "an identity body has no end marker");
        let mut d = ContentDecoder::new(ContentEncoding::Identity);
        d.push(b"abcdef");
        let mut out = BytesMut::new();
        assert_eq!(d.decode_into(&mut out, 4).unwrap(), 4);
        assert_eq!(d.buffered_input(), 2);
        assert_eq!(d.decode_into(&mut out, 0).unwrap(), 0);
        assert_eq!(d.decode_into(&mut out, 4).unwrap(), 2);
        assert_eq!(&out[..], b"abcdef");
    }

    #[test]
    fn gzip_round_trips_and_finishes() {
        let data = sample();
        let (out, finished) = decode_both(ContentEncoding::Gzip, &gzip(&data)).unwrap();
        assert_eq!(out, data);
        assert!(finished);
    }

    #[test]
    fn gzip_header_fields_are_parsed_and_checked() {
        let data = sample();
        let encoded = gzip_with_all_fields(&data);
        let (out, finished) = decode_both(ContentEncoding::Gzip, &encoded).unwrap();
        assert_eq!(out, data);
        assert!(finished);

        // Flip a byte of the file name: the header CRC no longer matches.
        let mut bad = encoded.clone();
        bad[18] ^= 0x20;
        let err = decode_both(ContentEncoding::Gzip, &bad).unwrap_err();
        assert!(
            matches!(err, DecodeError::GzipHeaderCrcMismatch { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("header CRC"));
    }

    #[test]
    fn gzip_header_errors() {
        let good = gzip(b"x");
        let mut magic = good.clone();
        magic[1] = 0x8c;
        assert_eq!(
            decode_both(ContentEncoding::Gzip, &magic),
            Err(DecodeError::GzipBadMagic)
        );
        let mut method = good.clone();
        method[2] = 7;
        assert_eq!(
            decode_both(ContentEncoding::Gzip, &method),
            Err(DecodeError::GzipUnsupportedMethod(7))
        );
        let mut flags = good.clone();
        flags[3] = 0x20;
        assert_eq!(
            decode_both(ContentEncoding::Gzip, &flags),
            Err(DecodeError::GzipReservedFlags(0x20))
        );
        // An FNAME without a terminator within the limit.
        let mut long_name = vec![0x1f, 0x8b, 8, FNAME, 0, 0, 0, 0, 0, 3];
        long_name.resize(10 + MAX_GZIP_TEXT_FIELD - 1, b'n');
        assert_eq!(
            decode_both(ContentEncoding::Gzip, &long_name),
            Ok((Vec::new(), false))
        );
        long_name.push(b'n');
        let err = decode_both(ContentEncoding::Gzip, &long_name).unwrap_err();
        assert_eq!(err, DecodeError::GzipFieldTooLong { field: "FNAME" });
        assert!(err.to_string().contains("FNAME"));
    }

    #[test]
    fn gzip_trailer_is_checked() {
        let data = sample();
        let good = gzip(&data);
        let n = good.len();
        let mut bad_crc = good.clone();
        bad_crc[n - 8] ^= 1;
        let err = decode_both(ContentEncoding::Gzip, &bad_crc).unwrap_err();
        assert!(matches!(err, DecodeError::GzipCrcMismatch { .. }));
        assert!(err.to_string().contains("CRC-32 mismatch"));
        let mut bad_size = good.clone();
        bad_size[n - 1] ^= 1;
        let err = decode_both(ContentEncoding::Gzip, &bad_size).unwrap_err();
        assert_eq!(
            err,
            DecodeError::GzipSizeMismatch {
                expected: data.len() as u32 | 1 << 24,
                actual: data.len() as u32
            }
        );
        // A truncated stream is simply unfinished.
        let (out, finished) = decode_both(ContentEncoding::Gzip, &good[..n - 3]).unwrap();
        assert_eq!(out, data);
        assert!(!finished);
    }

    #[test]
    fn corrupt_deflate_data_is_an_error_and_sticky() {
        let mut bad = gzip(&sample());
        for b in &mut bad[10..30] {
            *b = 0xff;
        }
        let mut d = ContentDecoder::new(ContentEncoding::Gzip);
        d.push(&bad);
        let mut out = BytesMut::new();
        let err = d.decode_into(&mut out, usize::MAX).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Corrupt {
                    encoding: "gzip",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().starts_with("corrupt gzip body"));
        assert_eq!(d.decode_into(&mut out, 10), Err(err));
        assert_eq!(d.buffered_input(), 0);
    }

    #[test]
    fn concatenated_gzip_members_and_trailing_garbage() {
        let mut two = gzip(b"first\r\n");
        two.extend_from_slice(&gzip_with_all_fields(b"second\r\n"));
        let (out, finished) = decode_both(ContentEncoding::Gzip, &two).unwrap();
        assert_eq!(out, b"first\r\nsecond\r\n");
        assert!(finished);
        let mut garbage = gzip(b"first\r\n");
        garbage.extend_from_slice(b"junk");
        assert_eq!(
            decode_both(ContentEncoding::Gzip, &garbage),
            Err(DecodeError::GzipBadMagic)
        );
    }

    #[test]
    fn deflate_accepts_zlib_and_raw() {
        let data = sample();
        for encoded in [zlib(&data), raw_deflate(&data)] {
            let (out, finished) = decode_both(ContentEncoding::Deflate, &encoded).unwrap();
            assert_eq!(out, data);
            assert!(finished);
        }
        let mut trailing = zlib(&data);
        trailing.push(0);
        assert_eq!(
            decode_both(ContentEncoding::Deflate, &trailing),
            Err(DecodeError::TrailingData)
        );
        // A zlib stream with a broken Adler-32 is corrupt.
        let mut bad = zlib(&data);
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(matches!(
            decode_both(ContentEncoding::Deflate, &bad),
            Err(DecodeError::Corrupt {
                encoding: "deflate",
                ..
            })
        ));
    }

    #[test]
    fn zlib_header_detection() {
        assert!(looks_like_zlib(0x78, 0x9c));
        assert!(looks_like_zlib(0x78, 0x01));
        assert!(looks_like_zlib(0x78, 0xda));
        assert!(!looks_like_zlib(0x78, 0x9d));
        assert!(!looks_like_zlib(0x1f, 0x8b));
    }

    #[test]
    fn gzip_bomb_decodes_in_bounded_steps() {
        // 64 MiB of zeros compress to about 64 KiB: a 1000:1 bomb.
        const DECODED: usize = 64 * 1024 * 1024;
        const WINDOW: usize = 64 * 1024;
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..DECODED / zeros.len() {
            e.write_all(&zeros).unwrap();
        }
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 1024 * 1024, "bomb is {} bytes", bomb.len());

        let mut d = ContentDecoder::new(ContentEncoding::Gzip);
        let mut out = BytesMut::new();
        let mut total = 0usize;
        let mut max_buffered = 0;
        for piece in bomb.chunks(16 * 1024) {
            d.push(piece);
            max_buffered = max_buffered.max(d.buffered_input());
            loop {
                let n = d.decode_into(&mut out, WINDOW).unwrap();
                assert!(out.len() <= WINDOW);
                assert!(out.capacity() <= 2 * WINDOW, "capacity {}", out.capacity());
                assert!(out.iter().all(|&b| b == 0));
                total += n;
                out.clear();
                if n == 0 {
                    break;
                }
            }
        }
        assert_eq!(total, DECODED);
        assert!(d.is_finished());
        assert!(max_buffered <= 16 * 1024);
    }

    proptest! {
        #[test]
        fn gzip_split_invariance(
            data in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'\r'), Just(b'\n'), any::<u8>()], 0..2000),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
            window in 1usize..5000,
            all_fields in any::<bool>(),
        ) {
            let encoded = if all_fields { gzip_with_all_fields(&data) } else { gzip(&data) };
            let pieces = crate::test_cuts::cut_at(&encoded, &cuts);
            let expected = Ok((data.clone(), true));
            prop_assert_eq!(whole(ContentEncoding::Gzip, &encoded), expected.clone());
            prop_assert_eq!(decode_pieces(ContentEncoding::Gzip, pieces, window), expected);
        }

        #[test]
        fn never_panics_on_arbitrary_input(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            gz in any::<bool>(),
        ) {
            let enc = if gz { ContentEncoding::Gzip } else { ContentEncoding::Deflate };
            let mut input = if gz { vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3] } else { Vec::new() };
            input.extend_from_slice(&data);
            let a = whole(enc, &input);
            prop_assert_eq!(decode_pieces(enc, input.chunks(3), 5), a);
        }
    }
}
