//! Test support: a tiny independent OAuth signer, request builders, and a simple reference
//! decoder for responses (head, chunked, gzip/deflate, CRLF or length framing).

use std::io::Read as _;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::Credentials;

/// RFC 3986 percent-encoding, written out by hand (independent of the server's encoder).
pub(crate) fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Signs a request and returns the `Authorization` header value.
///
/// `url` is `scheme://host[:port]/path` (no query); `params` are the query and form
/// parameters, unencoded.
pub(crate) fn sign(
    method: &str,
    url: &str,
    params: &[(&str, &str)],
    creds: &Credentials,
    nonce: &str,
    timestamp: &str,
) -> (String, String) {
    let oauth = [
        ("oauth_consumer_key", creds.consumer_key.as_str()),
        ("oauth_nonce", nonce),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", timestamp),
        ("oauth_token", creds.token.as_str()),
        ("oauth_version", "1.0"),
    ];
    let mut all: Vec<(String, String)> = params
        .iter()
        .chain(oauth.iter())
        .map(|(k, v)| (pct(k), pct(v)))
        .collect();
    all.sort();
    let joined: Vec<String> = all.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let base = format!("{method}&{}&{}", pct(url), pct(&joined.join("&")));
    let key = format!(
        "{}&{}",
        pct(&creds.consumer_secret),
        pct(&creds.token_secret)
    );
    let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(base.as_bytes());
    let signature = BASE64.encode(mac.finalize().into_bytes());
    let mut header = String::from("OAuth ");
    let mut fields: Vec<String> = oauth
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", pct(v)))
        .collect();
    fields.push(format!("oauth_signature=\"{}\"", pct(&signature)));
    header.push_str(&fields.join(", "));
    (header, signature)
}

/// A signed `GET /1.1/site.json?<query>` for `host`, with extra headers.
pub(crate) fn site_request(
    creds: &Credentials,
    tls: bool,
    host: &str,
    query: &[(&str, &str)],
    extra_headers: &[(&str, &str)],
) -> Vec<u8> {
    let scheme = if tls { "https" } else { "http" };
    let url = format!("{scheme}://{host}/1.1/site.json");
    let (auth, _) = sign("GET", &url, query, creds, "nonce12345", "1318622958");
    let q: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect();
    let mut req = format!(
        "GET /1.1/site.json?{} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sitebucket-test\r\nAuthorization: {auth}\r\n",
        q.join("&")
    );
    for (name, value) in extra_headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// A decoded response.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body after transfer decoding and decompression.
    pub body: Vec<u8>,
    /// Whether the chunked body ended with its last chunk (always true otherwise).
    pub complete: bool,
    /// The chunk sizes seen (chunked only).
    pub chunk_sizes: Vec<usize>,
}

impl Decoded {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Decodes a chunked body strictly; returns (data, complete, chunk sizes).
pub(crate) fn dechunk(mut wire: &[u8]) -> (Vec<u8>, bool, Vec<usize>) {
    let mut data = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let Some(line_end) = find(wire, b"\r\n") else {
            assert!(wire.len() < 20, "dangling bytes after chunks: {wire:?}");
            return (data, false, sizes);
        };
        let size_text = std::str::from_utf8(&wire[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text, 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size_text:?}"));
        wire = &wire[line_end + 2..];
        if size == 0 {
            assert_eq!(wire, b"\r\n", "last chunk ends the body");
            return (data, true, sizes);
        }
        if wire.len() < size + 2 {
            data.extend_from_slice(&wire[..wire.len().min(size)]);
            return (data, false, sizes);
        }
        data.extend_from_slice(&wire[..size]);
        assert_eq!(&wire[size..size + 2], b"\r\n", "chunk data ends with CRLF");
        sizes.push(size);
        wire = &wire[size + 2..];
    }
}

/// Inflates as much of a (possibly unfinished) gzip or zlib stream as is there.
pub(crate) fn inflate_partial(data: &[u8], gzip: bool) -> Vec<u8> {
    let (raw, zlib) = if gzip {
        assert!(data.len() >= 10, "gzip header present");
        assert_eq!(&data[..2], &[0x1f, 0x8b]);
        assert_eq!(data[3], 0, "no optional gzip header fields");
        (&data[10..], false)
    } else {
        (data, true)
    };
    let mut inflater = flate2::Decompress::new(zlib);
    let mut out = Vec::with_capacity(data.len() * 4 + 1024);
    let mut input = raw;
    loop {
        if out.capacity() - out.len() < 64 * 1024 {
            out.reserve(1024 * 1024);
        }
        let before_in = inflater.total_in();
        let before_out = inflater.total_out();
        let status = inflater
            .decompress_vec(input, &mut out, flate2::FlushDecompress::Sync)
            .expect("valid deflate data");
        let used = (inflater.total_in() - before_in) as usize;
        input = &input[used..];
        let made = inflater.total_out() - before_out;
        if status == flate2::Status::StreamEnd || (used == 0 && made == 0) {
            return out;
        }
    }
}

/// Decodes a whole response as the client would.
pub(crate) fn decode(wire: &[u8]) -> Decoded {
    let head_end = find(wire, b"\r\n\r\n").expect("a response head") + 4;
    let head = std::str::from_utf8(&wire[..head_end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let mut decoded = Decoded {
        status,
        headers,
        body: Vec::new(),
        complete: true,
        chunk_sizes: Vec::new(),
    };
    let rest = &wire[head_end..];
    let transfer_body = if decoded.header("transfer-encoding") == Some("chunked") {
        let (data, complete, sizes) = dechunk(rest);
        decoded.complete = complete;
        decoded.chunk_sizes = sizes;
        data
    } else if let Some(len) = decoded.header("content-length") {
        let len: usize = len.parse().unwrap();
        assert_eq!(rest.len(), len, "Content-Length matches the body sent");
        rest.to_vec()
    } else {
        rest.to_vec()
    };
    decoded.body = match decoded.header("content-encoding") {
        Some("gzip") => {
            if decoded.complete {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&transfer_body[..])
                    .read_to_end(&mut out)
                    .expect("a complete gzip stream with a valid trailer");
                assert_eq!(out, inflate_partial(&transfer_body, true));
                out
            } else {
                inflate_partial(&transfer_body, true)
            }
        }
        Some("deflate") => {
            if decoded.complete {
                let mut out = Vec::new();
                flate2::read::ZlibDecoder::new(&transfer_body[..])
                    .read_to_end(&mut out)
                    .expect("a complete zlib stream with a valid checksum");
                out
            } else {
                inflate_partial(&transfer_body, false)
            }
        }
        None => transfer_body,
        Some(other) => panic!("unexpected encoding {other}"),
    };
    decoded
}

/// One item of a decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    Message(Vec<u8>),
    KeepAlive,
}

/// Splits a CRLF-framed body; returns the items and the unterminated rest.
pub(crate) fn split_crlf(mut body: &[u8]) -> (Vec<Item>, Vec<u8>) {
    let mut items = Vec::new();
    while let Some(end) = find(body, b"\r\n") {
        if end == 0 {
            items.push(Item::KeepAlive);
        } else {
            items.push(Item::Message(body[..end].to_vec()));
        }
        body = &body[end + 2..];
    }
    (items, body.to_vec())
}

/// Splits a `delimited=length` body; returns the items and the incomplete rest.
pub(crate) fn split_length(mut body: &[u8]) -> (Vec<Item>, Vec<u8>) {
    let mut items = Vec::new();
    loop {
        if body.starts_with(b"\r\n") {
            items.push(Item::KeepAlive);
            body = &body[2..];
            continue;
        }
        let Some(end) = find(body, b"\r\n") else {
            return (items, body.to_vec());
        };
        let len: usize = std::str::from_utf8(&body[..end])
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("bad length line {:?}", &body[..end]));
        let frame = &body[end + 2..];
        if frame.len() < len {
            return (items, body.to_vec());
        }
        assert!(
            len >= 2 && &frame[len - 2..len] == b"\r\n",
            "frame ends with CRLF"
        );
        items.push(Item::Message(frame[..len - 2].to_vec()));
        body = &frame[len..];
    }
}
