//! The benchmark stream: realistic, seeded, and the same for every figure.
//!
//! [`BenchStream::generate`] draws `for_user` tweets of 2–7 KB from the test server's
//! [`Corpus`] (Twitter v1.1 JSON style, `\/` in URLs, `\uXXXX` escapes, ids above 2^53),
//! starts with a `control` message, and puts a blank keep-alive line after about one message
//! in fifty. The same messages are rendered with `\r\n` framing ([`BenchStream::crlf`]) and
//! with `delimited=length` framing ([`BenchStream::length`]); [`chunked`] splits a body into
//! HTTP chunks of 16 B to 32 KiB (log-uniform, so every size class is as likely) with no
//! regard to message boundaries, except that about 1% of chunks are made to end between the
//! `\r` and the `\n` of a line end. [`gzip`] compresses a body the way a streaming server
//! does: one sync flush per message.
//!
//! Everything is a pure function of the seed.

use std::io::Write;

use sitebucket_testserver::corpus::{self, Corpus};

/// The response head of a plain chunked stream.
pub const HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";

/// The response head of a gzip-encoded chunked stream.
pub const HEAD_GZIP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";

/// The last chunk of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The smallest chunk.
pub const CHUNK_MIN: usize = 16;
/// The largest chunk (before snapping a chunk end onto a line end).
pub const CHUNK_MAX: usize = 32 * 1024;
/// How many chunks in a thousand end between `\r` and `\n`.
pub const SPLIT_CRLF_PER_MILLE: u64 = 10;
/// One message in this many is followed by a keep-alive line.
pub const KEEP_ALIVE_EVERY: u64 = 50;
/// The bytes a driver asks of its socket per read; in-process figures push this much at once.
pub const READ_BYTES: usize = 64 * 1024;

/// SplitMix64: a tiny seeded generator (Steele, Lea and Flood), enough for sizes and choices.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose every output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A uniform float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A size in `min..=max`, log-uniformly distributed.
    pub fn log_uniform(&mut self, min: usize, max: usize) -> usize {
        let (lo, hi) = ((min.max(1) as f64).ln(), ((max.max(min) + 1) as f64).ln());
        let size = (lo + (hi - lo) * self.unit()).exp() as usize;
        size.clamp(min, max)
    }
}

/// An order-sensitive hash of a sequence of messages, cheap enough to run on every message
/// of a loopback figure (four independent lanes of 8 bytes a step, so it costs a small part
/// of reading the bytes): a client and the server that sent the messages compute it the same
/// way, so equal hashes and counts mean every message arrived whole, unchanged and in order.
/// Not cryptographic: it catches accidents, not adversaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHash(pub u64);

impl Default for MessageHash {
    fn default() -> Self {
        MessageHash(0x243f_6a88_85a3_08d3)
    }
}

impl MessageHash {
    /// Adds one message (its bytes without the line end).
    pub fn add(&mut self, message: &[u8]) {
        const K: [u64; 4] = [
            0x9e37_79b9_7f4a_7c15,
            0xc2b2_ae3d_27d4_eb4f,
            0x1656_67b1_9e37_79f9,
            0x85eb_ca77_c2b2_ae63,
        ];
        let word = |bytes: &[u8]| {
            let mut w = [0u8; 8];
            w[..bytes.len()].copy_from_slice(bytes);
            u64::from_le_bytes(w)
        };
        let mut lanes = [
            self.0 ^ message.len() as u64,
            self.0.rotate_left(16),
            self.0.rotate_left(32),
            self.0.rotate_left(48),
        ];
        let mut blocks = message.chunks_exact(32);
        for block in &mut blocks {
            for (lane, (bytes, k)) in lanes.iter_mut().zip(block.chunks_exact(8).zip(K)) {
                *lane = (*lane ^ word(bytes)).wrapping_mul(k).rotate_left(29);
            }
        }
        for (lane, (bytes, k)) in lanes.iter_mut().zip(blocks.remainder().chunks(8).zip(K)) {
            *lane = (*lane ^ word(bytes)).wrapping_mul(k).rotate_left(29);
        }
        let h = lanes.iter().fold(0u64, |h, lane| {
            (h ^ lane).wrapping_mul(K[0]).rotate_left(31)
        });
        self.0 = h ^ (h >> 32);
    }
}

#[cfg(test)]
mod message_hash_tests {
    use super::MessageHash;

    fn hash(messages: &[&[u8]]) -> u64 {
        let mut h = MessageHash::default();
        for m in messages {
            h.add(m);
        }
        h.0
    }

    #[test]
    fn order_lengths_and_every_byte_count() {
        let long: Vec<u8> = (0..100u8).collect();
        let mut changed = long.clone();
        changed[77] ^= 1;
        assert_eq!(hash(&[b"a", &long]), hash(&[b"a", &long]));
        assert_ne!(hash(&[b"a", &long]), hash(&[&long, b"a"]));
        assert_ne!(hash(&[&long]), hash(&[&changed]));
        assert_ne!(hash(&[b"ab", b"c"]), hash(&[b"a", b"bc"]));
        assert_ne!(hash(&[b"a\0"]), hash(&[b"a"]));
        assert_ne!(hash(&[]), hash(&[b""]));
    }
}

/// A rendered message body, with where its line ends are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// The decoded body bytes.
    pub bytes: Vec<u8>,
    /// Offsets of the `\r` of every `\r\n` that ends a message or keep-alive line.
    pub line_ends: Vec<usize>,
    /// Messages in the body.
    pub messages: usize,
    /// Keep-alive lines in the body.
    pub keep_alives: usize,
}

/// The seeded messages of one benchmark stream.
#[derive(Debug, Clone)]
pub struct BenchStream {
    seed: u64,
    /// The messages, in order, without line ends.
    pub messages: Vec<Vec<u8>>,
    /// After which messages (by index) a keep-alive line follows.
    pub keep_alive_after: Vec<bool>,
}

impl BenchStream {
    /// At least `body_bytes` of messages (a control message, then `for_user` tweets).
    pub fn generate(seed: u64, body_bytes: usize) -> Self {
        let mut corpus = Corpus::new(seed);
        let mut rng = SplitMix64::new(seed ^ 0x6b65_6570_616c_6976);
        let mut messages = vec![corpus::control(corpus::STREAM_ID)];
        let mut total = messages[0].len() + 2;
        while total < body_bytes {
            let message = corpus.firehose_message();
            total += message.len() + 2;
            messages.push(message);
        }
        let keep_alive_after = (0..messages.len())
            .map(|_| rng.below(KEEP_ALIVE_EVERY) == 0)
            .collect();
        BenchStream {
            seed,
            messages,
            keep_alive_after,
        }
    }

    /// The seed the stream was generated from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Total bytes of the messages, line ends excluded.
    pub fn payload_bytes(&self) -> usize {
        self.messages.iter().map(Vec::len).sum()
    }

    /// The body with `\r\n` framing.
    pub fn crlf(&self) -> Body {
        let mut body = Body {
            bytes: Vec::with_capacity(self.payload_bytes() + 3 * self.messages.len()),
            line_ends: Vec::with_capacity(self.messages.len() * 2),
            messages: self.messages.len(),
            keep_alives: 0,
        };
        for (message, keep_alive) in self.messages.iter().zip(&self.keep_alive_after) {
            body.bytes.extend_from_slice(message);
            body.line_ends.push(body.bytes.len());
            body.bytes.extend_from_slice(b"\r\n");
            if *keep_alive {
                body.line_ends.push(body.bytes.len());
                body.bytes.extend_from_slice(b"\r\n");
                body.keep_alives += 1;
            }
        }
        body
    }

    /// The body with `delimited=length` framing: the count (message plus its `\r\n`), `\r\n`,
    /// the message, `\r\n`; keep-alive lines come before a count.
    pub fn length(&self) -> Body {
        let mut body = Body {
            bytes: Vec::with_capacity(self.payload_bytes() + 9 * self.messages.len()),
            line_ends: Vec::with_capacity(self.messages.len() * 3),
            messages: self.messages.len(),
            keep_alives: 0,
        };
        let mut keep_alive_before = false;
        for (message, keep_alive) in self.messages.iter().zip(&self.keep_alive_after) {
            if keep_alive_before {
                body.line_ends.push(body.bytes.len());
                body.bytes.extend_from_slice(b"\r\n");
                body.keep_alives += 1;
            }
            write!(body.bytes, "{}", message.len() + 2).expect("writing to a Vec never fails");
            body.line_ends.push(body.bytes.len());
            body.bytes.extend_from_slice(b"\r\n");
            body.bytes.extend_from_slice(message);
            body.line_ends.push(body.bytes.len());
            body.bytes.extend_from_slice(b"\r\n");
            keep_alive_before = *keep_alive;
        }
        body
    }
}

/// A chunked transfer encoding of `body` (without head or last chunk), and how many of its
/// chunks end between a `\r` and its `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunked {
    /// The chunks, back to back.
    pub wire: Vec<u8>,
    /// Chunks in `wire`.
    pub chunks: usize,
    /// Chunks whose data ends with the `\r` of a line end whose `\n` starts the next chunk.
    pub split_crlf: usize,
}

/// Splits `body` into chunks (see the [module docs](self)); `line_ends` are the offsets of
/// the `\r` of the line ends a chunk may be made to end after.
pub fn chunked(body: &[u8], line_ends: &[usize], seed: u64) -> Chunked {
    let mut rng = SplitMix64::new(seed ^ 0x6368_756e_6b73);
    let mut out = Chunked {
        wire: Vec::with_capacity(body.len() + body.len() / 256 + 64),
        chunks: 0,
        split_crlf: 0,
    };
    let mut pos = 0;
    while pos < body.len() {
        let size = rng.log_uniform(CHUNK_MIN, CHUNK_MAX);
        let mut end = (pos + size).min(body.len());
        if rng.below(1000) < SPLIT_CRLF_PER_MILLE {
            // End right after a `\r`: the last line end within the chunk, else the next one.
            let within = line_ends.partition_point(|&cr| cr < end);
            let cr = line_ends[..within]
                .iter()
                .rev()
                .find(|&&cr| cr >= pos)
                .or_else(|| line_ends.get(within));
            if let Some(&cr) = cr {
                end = cr + 1;
            }
        }
        let data = &body[pos..end];
        if data.last() == Some(&b'\r') && body.get(end) == Some(&b'\n') {
            out.split_crlf += 1;
        }
        write!(out.wire, "{:x}\r\n", data.len()).expect("writing to a Vec never fails");
        out.wire.extend_from_slice(data);
        out.wire.extend_from_slice(b"\r\n");
        out.chunks += 1;
        pos = end;
    }
    out
}

/// `body` gzip-compressed (level 6) with a sync flush after every line (`line_ends` are the
/// offsets of each line's `\r`), as a server that sends each message as it comes.
pub fn gzip(body: &[u8], line_ends: &[usize]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 3),
        flate2::Compression::default(),
    );
    let mut pos = 0;
    for &cr in line_ends {
        let end = (cr + 2).min(body.len());
        if end <= pos {
            continue;
        }
        encoder
            .write_all(&body[pos..end])
            .and_then(|()| encoder.flush())
            .expect("writing to a Vec never fails");
        pos = end;
    }
    encoder
        .write_all(&body[pos..])
        .expect("writing to a Vec never fails");
    encoder.finish().expect("writing to a Vec never fails")
}

/// A whole response: `head`, the chunks, the last chunk.
pub fn response(head: &[u8], chunks: &[u8]) -> Vec<u8> {
    let mut wire = Vec::with_capacity(head.len() + chunks.len() + LAST_CHUNK.len());
    wire.extend_from_slice(head);
    wire.extend_from_slice(chunks);
    wire.extend_from_slice(LAST_CHUNK);
    wire
}

#[cfg(test)]
mod tests {
    use super::*;
    use sitebucket_proto::_benchable::Frame;
    use sitebucket_proto::{_benchable::ResponseReader, Framing};

    /// Every frame of `wire`, pushed `read` bytes at a time.
    fn frames(wire: &[u8], framing: Framing, read: usize) -> (Vec<bytes::Bytes>, usize) {
        let mut reader = ResponseReader::new(framing, 1 << 20);
        let (mut messages, mut keep_alives) = (Vec::new(), 0);
        for piece in wire.chunks(read) {
            reader.push(piece).expect("a good head");
            while let Some(frame) = reader.poll_frame().expect("a good body") {
                match frame {
                    Frame::Message(m) => messages.push(m),
                    Frame::KeepAlive => keep_alives += 1,
                }
            }
        }
        assert!(reader.body_done(), "the last chunk ends the body");
        (messages, keep_alives)
    }

    #[test]
    fn the_stream_is_a_pure_function_of_the_seed() {
        let a = BenchStream::generate(7, 200_000);
        let b = BenchStream::generate(7, 200_000);
        let c = BenchStream::generate(8, 200_000);
        assert_eq!(a.messages, b.messages);
        assert_eq!(a.keep_alive_after, b.keep_alive_after);
        assert_ne!(a.messages, c.messages);
        let body = a.crlf();
        assert_eq!(
            chunked(&body.bytes, &body.line_ends, 7),
            chunked(&body.bytes, &body.line_ends, 7)
        );
    }

    #[test]
    fn messages_are_realistic_tweets() {
        let stream = BenchStream::generate(1, 1_000_000);
        assert!(stream.messages[0].starts_with(b"{\"control\""));
        let tweets = &stream.messages[1..];
        assert!(tweets.len() > 100);
        for tweet in tweets {
            assert!(
                (2_000..=7_600).contains(&tweet.len()),
                "{} bytes",
                tweet.len()
            );
            assert!(tweet.starts_with(b"{\"for_user\":"));
        }
        let all: Vec<u8> = tweets.concat();
        assert!(
            memchr::memmem::find(&all, b"\\/").is_some(),
            "escaped slashes"
        );
        assert!(
            memchr::memmem::find(&all, b"\\u").is_some(),
            "unicode escapes"
        );
        assert!(stream.crlf().bytes.len() >= 1_000_000);
    }

    #[test]
    fn chunks_span_the_sizes_and_about_one_percent_split_a_line_end() {
        let stream = BenchStream::generate(3, 8 << 20);
        let body = stream.crlf();
        let chunked = chunked(&body.bytes, &body.line_ends, 3);
        // Walk the chunk sizes back out of the wire.
        let (mut pos, mut sizes) = (0, Vec::new());
        while pos < chunked.wire.len() {
            let line = memchr::memmem::find(&chunked.wire[pos..], b"\r\n").unwrap();
            let size = usize::from_str_radix(
                std::str::from_utf8(&chunked.wire[pos..pos + line]).unwrap(),
                16,
            )
            .unwrap();
            sizes.push(size);
            pos += line + 2 + size + 2;
        }
        assert_eq!(sizes.len(), chunked.chunks);
        assert!(sizes.iter().any(|&s| s < 64), "small chunks");
        assert!(sizes.iter().any(|&s| s > 16 * 1024), "large chunks");
        assert!(sizes[..sizes.len() - 1].iter().all(|&s| s >= CHUNK_MIN));
        let share = chunked.split_crlf as f64 / chunked.chunks as f64;
        assert!((0.005..0.02).contains(&share), "{share}");
    }

    #[test]
    fn the_proto_pipeline_reads_back_every_message_in_both_framings() {
        let stream = BenchStream::generate(5, 2 << 20);
        for (framing, body) in [
            (Framing::Crlf, stream.crlf()),
            (Framing::Length, stream.length()),
        ] {
            let chunks = chunked(&body.bytes, &body.line_ends, 5);
            let wire = response(HEAD, &chunks.wire);
            for read in [READ_BYTES, 1000, 7] {
                let (messages, keep_alives) = frames(&wire, framing, read);
                assert_eq!(messages.len(), stream.messages.len(), "{framing:?} {read}");
                assert!(messages
                    .iter()
                    .zip(&stream.messages)
                    .all(|(a, b)| a[..] == b[..]));
                assert_eq!(keep_alives, body.keep_alives, "{framing:?}");
                assert!(keep_alives > 0);
            }
        }
    }

    #[test]
    fn the_gzip_stream_decodes_to_the_body() {
        let stream = BenchStream::generate(9, 1 << 20);
        let body = stream.crlf();
        let compressed = gzip(&body.bytes, &body.line_ends);
        assert!(compressed.len() < body.bytes.len() / 2);
        let chunks = chunked(&compressed, &[], 9);
        let (messages, keep_alives) = frames(
            &response(HEAD_GZIP, &chunks.wire),
            Framing::Crlf,
            READ_BYTES,
        );
        assert_eq!(messages.len(), stream.messages.len());
        assert_eq!(keep_alives, body.keep_alives);
    }
}
