//! The HTTP response head: status, how the body is framed and how it is encoded.
//!
//! [`parse_head`] is a thin, bounded layer over [`httparse`]: feed it everything received so far
//! and it says whether a complete head is there yet. A caller never needs to keep more than
//! [`MAX_HEAD_BYTES`] bytes while waiting for one: past that the head is rejected.

use std::fmt;

/// The largest response head accepted, status line and headers included.
///
/// A caller waiting for a head may keep at most this many bytes: once `buf.len()` reaches it
/// without a complete head, [`parse_head`] returns [`HeadError::TooLarge`].
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The most headers a response head may carry.
pub const MAX_HEADERS: usize = 64;

/// The most characters of any server text the core keeps: a reason phrase, a `disconnect`
/// reason, a TLS error. Longer text is cut (on a character boundary) where it is taken in,
/// ending in `…`, so errors, stats and outcomes stay small whatever a server sends.
pub const MAX_SERVER_TEXT_CHARS: usize = 200;

/// `text`, cut to at most [`MAX_SERVER_TEXT_CHARS`] characters: a longer text keeps its first
/// `MAX_SERVER_TEXT_CHARS - 1` characters and ends in `…`.
///
/// ```
/// use sitebucket_proto::{MAX_SERVER_TEXT_CHARS, _benchable::bounded_text};
///
/// assert_eq!(bounded_text("Enhance Your Calm"), "Enhance Your Calm");
/// let long = "é".repeat(500);
/// let cut = bounded_text(&long);
/// assert_eq!(cut.chars().count(), MAX_SERVER_TEXT_CHARS);
/// assert!(cut.ends_with('…'));
/// ```
pub fn bounded_text(text: &str) -> String {
    match text.char_indices().nth(MAX_SERVER_TEXT_CHARS) {
        None => text.to_owned(),
        Some(_) => {
            // The byte offset of the last character kept: a char boundary by construction.
            let end = text
                .char_indices()
                .nth(MAX_SERVER_TEXT_CHARS - 1)
                .map_or(text.len(), |(at, _)| at);
            let mut out = String::with_capacity(end + '…'.len_utf8());
            out.push_str(text.get(..end).unwrap_or_default());
            out.push('…');
            out
        }
    }
}

/// A parsed HTTP/1.x response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code, such as `200`.
    pub status: u16,
    /// The reason phrase, such as `OK` (empty when missing), cut to
    /// [`MAX_SERVER_TEXT_CHARS`] characters.
    pub reason: String,
    /// How the body that follows the head is delimited.
    pub body: BodyKind,
    /// How the body is compressed (`Content-Encoding`).
    pub encoding: ContentEncoding,
    /// Every header in order, names as sent, values decoded as UTF-8 lossily.
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// What the status means for a streaming client; see [`classify`].
    pub fn class(&self) -> StatusClass {
        classify(self.status)
    }

    /// The value of the first header named `name` (compared ASCII case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How the response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BodyKind {
    /// `Transfer-Encoding: chunked` (it wins over any `Content-Length`).
    Chunked,
    /// Exactly this many bytes (`Content-Length`, or `0` for 1xx, 204 and 304 responses).
    ContentLength(u64),
    /// The body runs until the connection closes.
    UntilEof,
}

/// The `Content-Encoding` of the body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ContentEncoding {
    /// No compression.
    #[default]
    Identity,
    /// `gzip` (or its alias `x-gzip`), RFC 1952.
    Gzip,
    /// `deflate`: zlib-wrapped (RFC 1950) deflate, raw deflate tolerated.
    Deflate,
}

/// What a response status means for a streaming client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusClass {
    /// `200`: the stream is up.
    Success,
    /// Any other status retrying may fix: back off exponentially and reconnect.
    HttpError,
    /// `420` or `429`: rate limited, back off from a longer base.
    RateLimited,
    /// `401`, `403`, `404`, `406`, `413`, `416`: retrying cannot fix it; stop.
    Fatal,
}

/// Classifies a status code.
///
/// `200` is [`StatusClass::Success`]; `420` and `429` are [`StatusClass::RateLimited`]; `401`,
/// `403`, `404`, `406`, `413` and `416` are [`StatusClass::Fatal`]; every other code (other 2xx
/// and 3xx included: a stream only starts on `200`) is [`StatusClass::HttpError`].
pub fn classify(status: u16) -> StatusClass {
    match status {
        200 => StatusClass::Success,
        420 | 429 => StatusClass::RateLimited,
        401 | 403 | 404 | 406 | 413 | 416 => StatusClass::Fatal,
        _ => StatusClass::HttpError,
    }
}

/// Why a response head was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// No complete head within [`MAX_HEAD_BYTES`].
    TooLarge {
        /// The limit, [`MAX_HEAD_BYTES`].
        limit: usize,
    },
    /// More than [`MAX_HEADERS`] headers.
    TooManyHeaders {
        /// The limit, [`MAX_HEADERS`].
        limit: usize,
    },
    /// The bytes are not an HTTP/1.x response head.
    Malformed(httparse::Error),
    /// A status code outside 100–599 (RFC 9110 §15), such as `000`: three digits, but no
    /// response status a client can act on.
    InvalidStatus(u16),
    /// A `Transfer-Encoding` other than exactly `chunked`.
    UnsupportedTransferEncoding(String),
    /// A `Content-Length` that is not a decimal number fitting in 64 bits.
    InvalidContentLength(String),
    /// Several `Content-Length` values that disagree.
    ConflictingContentLength {
        /// The first value seen.
        first: u64,
        /// A later, different value.
        second: u64,
    },
    /// A `Content-Encoding` this crate cannot decode (or more than one stacked).
    UnsupportedContentEncoding(String),
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TooLarge { limit } => write!(
                f,
                "response head is larger than {limit} bytes (no blank line ending the headers)"
            ),
            HeadError::TooManyHeaders { limit } => {
                write!(f, "response head has more than {limit} headers")
            }
            HeadError::Malformed(e) => write!(f, "malformed response head: {e}"),
            HeadError::InvalidStatus(code) => {
                write!(f, "invalid status code {code:03} (expected 100 to 599)")
            }
            HeadError::UnsupportedTransferEncoding(v) => write!(
                f,
                "unsupported Transfer-Encoding {v:?} (only \"chunked\" is supported)"
            ),
            HeadError::InvalidContentLength(v) => {
                write!(
                    f,
                    "invalid Content-Length {v:?} (expected a decimal byte count)"
                )
            }
            HeadError::ConflictingContentLength { first, second } => {
                write!(f, "conflicting Content-Length values {first} and {second}")
            }
            HeadError::UnsupportedContentEncoding(v) => write!(
                f,
                "unsupported Content-Encoding {v:?} (supported: identity, gzip, x-gzip, deflate)"
            ),
        }
    }
}

impl std::error::Error for HeadError {}

/// Parses a response head from the start of `buf`.
///
/// Returns `Ok(None)` while more bytes are needed, `Ok(Some((head, consumed)))` once the head
/// is complete (`consumed` bytes, the blank line included; the body starts at
/// `buf[consumed..]`), and an error when the head is malformed, has more than [`MAX_HEADERS`]
/// headers, or does not end within [`MAX_HEAD_BYTES`]. Only the first [`MAX_HEAD_BYTES`] of
/// `buf` are looked at, so the answer does not depend on how much body follows. HTTP/1.0 and
/// HTTP/1.1 are accepted.
pub fn parse_head(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let window = &buf[..buf.len().min(MAX_HEAD_BYTES)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let consumed = match response.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= MAX_HEAD_BYTES {
                return Err(HeadError::TooLarge {
                    limit: MAX_HEAD_BYTES,
                });
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::TooManyHeaders { limit: MAX_HEADERS })
        }
        Err(e) => return Err(HeadError::Malformed(e)),
    };
    // A complete parse always sets the code; treat its absence as a malformed status line.
    let status = response
        .code
        .ok_or(HeadError::Malformed(httparse::Error::Status))?;
    if !(100..=599).contains(&status) {
        return Err(HeadError::InvalidStatus(status));
    }
    let reason = bounded_text(response.reason.unwrap_or(""));
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let mut body = body_kind(&headers)?;
    let encoding = content_encoding(&headers)?;
    if (100..200).contains(&status) || status == 204 || status == 304 {
        // These responses never have a body, whatever the headers say (RFC 9112 §6.3).
        body = BodyKind::ContentLength(0);
    }
    Ok(Some((
        ResponseHead {
            status,
            reason,
            body,
            encoding,
            headers,
        },
        consumed,
    )))
}

/// Reads `Transfer-Encoding` and `Content-Length`.
fn body_kind(headers: &[(String, String)]) -> Result<BodyKind, HeadError> {
    let mut codings: Vec<String> = Vec::new();
    let mut length: Option<u64> = None;
    let mut length_error: Option<HeadError> = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("transfer-encoding") {
            for coding in value.split(',') {
                let coding = coding.trim();
                if !coding.is_empty() {
                    codings.push(coding.to_ascii_lowercase());
                }
            }
            if value.trim().is_empty() {
                return Err(HeadError::UnsupportedTransferEncoding(value.clone()));
            }
        } else if name.eq_ignore_ascii_case("content-length") && length_error.is_none() {
            // One header may list the same value several times ("5, 5"): RFC 9110 §8.6.
            for item in value.split(',') {
                match parse_decimal(item.trim()) {
                    None => {
                        length_error = Some(HeadError::InvalidContentLength(value.clone()));
                        break;
                    }
                    Some(n) => match length {
                        Some(first) if first != n => {
                            length_error =
                                Some(HeadError::ConflictingContentLength { first, second: n });
                            break;
                        }
                        _ => length = Some(n),
                    },
                }
            }
        }
    }
    if !codings.is_empty() {
        if codings.len() == 1 && codings[0] == "chunked" {
            // Chunked wins: any Content-Length is ignored.
            return Ok(BodyKind::Chunked);
        }
        return Err(HeadError::UnsupportedTransferEncoding(codings.join(", ")));
    }
    if let Some(e) = length_error {
        return Err(e);
    }
    Ok(match length {
        Some(n) => BodyKind::ContentLength(n),
        None => BodyKind::UntilEof,
    })
}

/// Reads `Content-Encoding`: `identity` entries are skipped, at most one real coding remains.
fn content_encoding(headers: &[(String, String)]) -> Result<ContentEncoding, HeadError> {
    let mut found: Option<ContentEncoding> = None;
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("content-encoding") {
            continue;
        }
        for coding in value.split(',') {
            let coding = coding.trim();
            let parsed = if coding.is_empty() || coding.eq_ignore_ascii_case("identity") {
                continue;
            } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                ContentEncoding::Gzip
            } else if coding.eq_ignore_ascii_case("deflate") {
                ContentEncoding::Deflate
            } else {
                return Err(HeadError::UnsupportedContentEncoding(coding.to_string()));
            };
            if found.is_some() {
                // Stacked encodings ("gzip, gzip") are legal HTTP but never sent by a stream.
                return Err(HeadError::UnsupportedContentEncoding(value.clone()));
            }
            found = Some(parsed);
        }
    }
    Ok(found.unwrap_or(ContentEncoding::Identity))
}

/// Parses a non-empty run of ASCII digits with checked arithmetic.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OK_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\n\
        Content-Type: application/json\r\n\
        Transfer-Encoding: chunked\r\n\
        Content-Encoding: gzip\r\n\
        \r\n";

    fn parse_all(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, HeadError> {
        parse_head(buf)
    }

    #[test]
    fn parses_a_complete_head_and_reports_consumed() {
        let mut buf = OK_HEAD.to_vec();
        buf.extend_from_slice(b"5\r\nhello\r\n");
        let (head, consumed) = parse_all(&buf).unwrap().unwrap();
        assert_eq!(consumed, OK_HEAD.len());
        assert_eq!(head.status, 200);
        assert_eq!(head.reason, "OK");
        assert_eq!(head.body, BodyKind::Chunked);
        assert_eq!(head.encoding, ContentEncoding::Gzip);
        assert_eq!(head.class(), StatusClass::Success);
        assert_eq!(head.headers.len(), 3);
        assert_eq!(head.header("content-type"), Some("application/json"));
    }

    #[test]
    fn status_codes_outside_100_to_599_are_refused() {
        for (line, code) in [("000", 0), ("099", 99), ("600", 600), ("999", 999)] {
            let head = format!("HTTP/1.1 {line} Odd\r\nContent-Length: 0\r\n\r\n");
            let error = parse_all(head.as_bytes()).unwrap_err();
            assert_eq!(error, HeadError::InvalidStatus(code));
            assert_eq!(
                error.to_string(),
                format!("invalid status code {line} (expected 100 to 599)")
            );
        }
        for code in [100, 599] {
            let head = format!("HTTP/1.1 {code} Edge\r\n\r\n");
            assert_eq!(parse_all(head.as_bytes()).unwrap().unwrap().0.status, code);
        }
    }

    #[test]
    fn every_prefix_is_partial_then_complete() {
        // Split invariance for a pure function of the prefix: every strict prefix asks for more.
        for cut in 0..OK_HEAD.len() {
            assert_eq!(parse_all(&OK_HEAD[..cut]), Ok(None), "prefix {cut}");
        }
        assert!(parse_all(OK_HEAD).unwrap().is_some());
    }

    #[test]
    fn http_1_0_is_accepted_and_defaults_to_until_eof() {
        let (head, _) = parse_all(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.body, BodyKind::UntilEof);
        assert_eq!(head.encoding, ContentEncoding::Identity);
    }

    #[test]
    fn content_length_rules() {
        let head = |h: &str| parse_all(format!("HTTP/1.1 200 OK\r\n{h}\r\n").as_bytes());
        assert_eq!(
            head("Content-Length: 42\r\n").unwrap().unwrap().0.body,
            BodyKind::ContentLength(42)
        );
        assert_eq!(
            head("Content-Length: 7, 7\r\nContent-Length: 7\r\n")
                .unwrap()
                .unwrap()
                .0
                .body,
            BodyKind::ContentLength(7)
        );
        assert_eq!(
            head("Content-Length: 7\r\nContent-Length: 8\r\n"),
            Err(HeadError::ConflictingContentLength {
                first: 7,
                second: 8
            })
        );
        assert_eq!(
            head("Content-Length: -1\r\n"),
            Err(HeadError::InvalidContentLength("-1".into()))
        );
        assert_eq!(
            head("Content-Length: 99999999999999999999999\r\n"),
            Err(HeadError::InvalidContentLength(
                "99999999999999999999999".into()
            ))
        );
        // Chunked wins over a Content-Length, even an odd one.
        assert_eq!(
            head("Content-Length: 10\r\nTransfer-Encoding: Chunked\r\n")
                .unwrap()
                .unwrap()
                .0
                .body,
            BodyKind::Chunked
        );
    }

    #[test]
    fn non_chunked_transfer_encoding_is_an_error() {
        let head = |h: &str| parse_all(format!("HTTP/1.1 200 OK\r\n{h}\r\n").as_bytes());
        let err = head("Transfer-Encoding: gzip, chunked\r\n").unwrap_err();
        assert_eq!(
            err,
            HeadError::UnsupportedTransferEncoding("gzip, chunked".into())
        );
        assert!(err.to_string().contains("gzip, chunked"));
        assert!(head("Transfer-Encoding: identity\r\n").is_err());
        assert!(head("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n").is_err());
    }

    #[test]
    fn content_encoding_rules() {
        let enc = |v: &str| {
            parse_all(format!("HTTP/1.1 200 OK\r\nContent-Encoding: {v}\r\n\r\n").as_bytes())
                .map(|h| h.unwrap().0.encoding)
        };
        assert_eq!(enc("GZIP"), Ok(ContentEncoding::Gzip));
        assert_eq!(enc("x-gzip"), Ok(ContentEncoding::Gzip));
        assert_eq!(enc("Deflate"), Ok(ContentEncoding::Deflate));
        assert_eq!(enc("identity"), Ok(ContentEncoding::Identity));
        assert_eq!(
            enc("br"),
            Err(HeadError::UnsupportedContentEncoding("br".into()))
        );
        assert!(enc("gzip, deflate").is_err());
    }

    #[test]
    fn classify_matches_the_reconnect_rules() {
        assert_eq!(classify(200), StatusClass::Success);
        for s in [420, 429] {
            assert_eq!(classify(s), StatusClass::RateLimited);
        }
        for s in [401, 403, 404, 406, 413, 416] {
            assert_eq!(classify(s), StatusClass::Fatal);
        }
        for s in [201, 204, 301, 302, 400, 500, 503, 100] {
            assert_eq!(classify(s), StatusClass::HttpError, "{s}");
        }
    }

    #[test]
    fn bodiless_statuses_have_empty_bodies() {
        let (head, _) = parse_all(b"HTTP/1.1 304 Not Modified\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.body, BodyKind::ContentLength(0));
        assert_eq!(head.class(), StatusClass::HttpError);
    }

    #[test]
    fn oversized_head_is_rejected_at_the_limit() {
        let mut buf = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
        buf.resize(MAX_HEAD_BYTES - 1, b'a');
        assert_eq!(parse_all(&buf), Ok(None));
        buf.push(b'a');
        assert_eq!(
            parse_all(&buf),
            Err(HeadError::TooLarge {
                limit: MAX_HEAD_BYTES
            })
        );
        // A head that ends exactly at the limit is fine.
        let mut exact = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
        exact.resize(MAX_HEAD_BYTES - 4, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(exact.len(), MAX_HEAD_BYTES);
        exact.extend_from_slice(b"body bytes");
        assert_eq!(parse_all(&exact).unwrap().unwrap().1, MAX_HEAD_BYTES);
        // One byte more and it no longer fits.
        let mut over = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
        over.resize(MAX_HEAD_BYTES - 3, b'a');
        over.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(parse_all(&over), Err(HeadError::TooLarge { .. })));
    }

    #[test]
    fn header_count_limit() {
        let mut ok = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..MAX_HEADERS {
            ok.push_str(&format!("X-{i}: v\r\n"));
        }
        let too_many = format!("{ok}X-last: v\r\n\r\n");
        ok.push_str("\r\n");
        assert_eq!(
            parse_all(ok.as_bytes()).unwrap().unwrap().0.headers.len(),
            MAX_HEADERS
        );
        let err = parse_all(too_many.as_bytes()).unwrap_err();
        assert_eq!(err, HeadError::TooManyHeaders { limit: MAX_HEADERS });
        assert!(err.to_string().contains("64"));
    }

    #[test]
    fn garbage_is_malformed() {
        let err = parse_all(b"SSH-2.0-OpenSSH\r\n\r\n").unwrap_err();
        assert!(matches!(err, HeadError::Malformed(_)));
        assert!(err.to_string().starts_with("malformed response head"));
    }

    #[test]
    fn a_long_reason_phrase_is_cut_when_parsed() {
        let reason = "x".repeat(5000);
        let head = format!("HTTP/1.1 503 {reason}\r\nContent-Length: 0\r\n\r\n");
        let (parsed, _) = parse_head(head.as_bytes()).unwrap().unwrap();
        assert_eq!(parsed.reason.chars().count(), MAX_SERVER_TEXT_CHARS);
        assert_eq!(
            parsed.reason,
            format!("{}…", "x".repeat(MAX_SERVER_TEXT_CHARS - 1))
        );
        // Exactly at the limit: kept whole; multi-byte characters are never split.
        let exact = "ü".repeat(MAX_SERVER_TEXT_CHARS);
        assert_eq!(bounded_text(&exact), exact);
        let over = format!("{exact}ü");
        let cut = bounded_text(&over);
        assert_eq!(cut.chars().count(), MAX_SERVER_TEXT_CHARS);
        assert!(cut.starts_with(&"ü".repeat(MAX_SERVER_TEXT_CHARS - 1)) && cut.ends_with('…'));
        assert_eq!(bounded_text(""), "");
    }

    #[test]
    fn header_values_are_lossy_utf8() {
        let (head, _) = parse_all(b"HTTP/1.1 200 OK\r\nX-Bin: a\xffb\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.header("x-bin"), Some("a\u{fffd}b"));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_head(&buf);
        }

        #[test]
        fn prefixes_of_a_valid_head_are_partial(cut in 0usize..OK_HEAD.len()) {
            prop_assert_eq!(parse_head(&OK_HEAD[..cut]), Ok(None));
        }
    }
}
