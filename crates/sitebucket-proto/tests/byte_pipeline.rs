//! The whole byte pipeline — response head, chunked decoder, content decoder, framer — fed a
//! realistic stream whole, byte by byte and at proptest-chosen cuts: the same messages come out.

use std::io::Write;

use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use proptest::prelude::*;
use sitebucket_proto::{
    _benchable::{
        parse_head, BodyKind, ChunkedDecoder, ContentDecoder, ContentEncoding, Frame, Framer,
        ResponseHead, StatusClass,
    },
    Framing,
};

/// How many decoded bytes are moved into the framer per step.
const WINDOW: usize = 1024;
const MAX_MESSAGE: usize = 4096;

/// The glue a driver would write: bytes in, frames out.
struct Pipeline {
    framing: Framing,
    head_buf: Vec<u8>,
    head: Option<ResponseHead>,
    chunked: ChunkedDecoder,
    content: Option<ContentDecoder>,
    framer: Framer,
    frames: Vec<Frame>,
    body_done: bool,
}

impl Pipeline {
    fn new(framing: Framing) -> Self {
        Pipeline {
            framing,
            head_buf: Vec::new(),
            head: None,
            chunked: ChunkedDecoder::new(),
            content: None,
            framer: Framer::new(framing, MAX_MESSAGE),
            frames: Vec::new(),
            body_done: false,
        }
    }

    fn feed(&mut self, data: &[u8]) -> Result<(), String> {
        let body: Vec<u8>;
        let mut input = data;
        if self.head.is_none() {
            self.head_buf.extend_from_slice(data);
            let Some((head, consumed)) = parse_head(&self.head_buf).map_err(|e| e.to_string())?
            else {
                assert!(self.head_buf.len() < sitebucket_proto::_benchable::MAX_HEAD_BYTES);
                return Ok(());
            };
            assert_eq!(head.body, BodyKind::Chunked);
            self.content = Some(ContentDecoder::new(head.encoding));
            self.head = Some(head);
            body = self.head_buf.split_off(consumed);
            input = &body;
        }
        let content = self.content.as_mut().expect("set with the head");
        loop {
            let step = self.chunked.decode(input).map_err(|e| e.to_string())?;
            content.push(step.data);
            input = &input[step.consumed..];
            if step.done {
                self.body_done = true;
                break;
            }
            if step.consumed == 0 {
                break;
            }
        }
        loop {
            let n = content
                .decode_into(self.framer.buffer_mut(), WINDOW)
                .map_err(|e| e.to_string())?;
            while let Some(frame) = self.framer.next_frame().map_err(|e| e.to_string())? {
                self.frames.push(frame);
            }
            assert!(self.framer.buffered() <= MAX_MESSAGE + 2 + WINDOW);
            if n == 0 {
                break;
            }
        }
        Ok(())
    }
}

/// Realistic messages: JSON, some with a bare `\n` inside, keep-alives between some.
fn messages() -> Vec<Option<String>> {
    let mut items = Vec::new();
    for i in 0..120u64 {
        if i % 7 == 3 {
            items.push(None);
        }
        let text = "x".repeat((i * 37 % 300) as usize);
        let message = if i % 5 == 0 {
            format!(
                "{{\"for_user\":\"{}\",\"message\":{{\"id\":{},\"text\":\"two\nlines {text}\"}}}}",
                1_000_000 + i,
                (1u64 << 60) + i
            )
        } else {
            format!("{{\"for_user\":{i},\"message\":{{\"delete\":{{\"status\":{{\"id\":{i}}}}},\"t\":\"{text}\"}}}}")
        };
        items.push(Some(message));
    }
    items
}

fn expected(items: &[Option<String>]) -> Vec<Frame> {
    items
        .iter()
        .map(|item| match item {
            Some(m) => Frame::Message(m.clone().into_bytes().into()),
            None => Frame::KeepAlive,
        })
        .collect()
}

/// The decoded body, as the server wrote it, one piece per message.
fn body_pieces(items: &[Option<String>], framing: Framing) -> Vec<Vec<u8>> {
    items
        .iter()
        .map(|item| match (item, framing) {
            (None, _) => b"\r\n".to_vec(),
            (Some(m), Framing::Crlf) => format!("{m}\r\n").into_bytes(),
            (Some(m), Framing::Length) => format!("{}\r\n{m}\r\n", m.len() + 2).into_bytes(),
        })
        .collect()
}

/// Compresses like a streaming server: a sync flush after every message.
fn encode(pieces: &[Vec<u8>], encoding: ContentEncoding) -> Vec<u8> {
    match encoding {
        ContentEncoding::Identity => pieces.concat(),
        ContentEncoding::Gzip => {
            let mut e = GzEncoder::new(Vec::new(), Compression::default());
            for p in pieces {
                e.write_all(p).unwrap();
                e.flush().unwrap();
            }
            e.finish().unwrap()
        }
        ContentEncoding::Deflate => {
            let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
            for p in pieces {
                e.write_all(p).unwrap();
                e.flush().unwrap();
            }
            e.finish().unwrap()
        }
    }
}

/// A full response: head, then the encoded body in chunks of varied, seeded sizes.
fn response(framing: Framing, encoding: ContentEncoding) -> Vec<u8> {
    chunked_response(
        &encode(&body_pieces(&messages(), framing), encoding),
        encoding,
    )
}

fn chunked_response(body: &[u8], encoding: ContentEncoding) -> Vec<u8> {
    let coding = match encoding {
        ContentEncoding::Identity => "",
        ContentEncoding::Gzip => "Content-Encoding: gzip\r\n",
        ContentEncoding::Deflate => "Content-Encoding: deflate\r\n",
    };
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{coding}\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    let mut state: u32 = 12345;
    let mut rest = body;
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let n = ((state >> 16) as usize % 700 + 1).min(rest.len());
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn run<'a>(framing: Framing, pieces: impl IntoIterator<Item = &'a [u8]>) -> Pipeline {
    let mut p = Pipeline::new(framing);
    for piece in pieces {
        p.feed(piece).unwrap();
    }
    p
}

fn check(p: &Pipeline) {
    let head = p.head.as_ref().expect("head parsed");
    assert_eq!(head.class(), StatusClass::Success);
    assert_eq!(p.frames, expected(&messages()));
    assert!(p.body_done);
    assert_eq!(p.framer.buffered(), 0);
}

const CASES: [(Framing, ContentEncoding); 4] = [
    (Framing::Crlf, ContentEncoding::Gzip),
    (Framing::Length, ContentEncoding::Gzip),
    (Framing::Crlf, ContentEncoding::Deflate),
    (Framing::Length, ContentEncoding::Identity),
];

#[test]
fn whole_stream() {
    for (framing, encoding) in CASES {
        let input = response(framing, encoding);
        let p = run(framing, [&input[..]]);
        assert_eq!(p.head.as_ref().unwrap().encoding, encoding);
        check(&p);
    }
}

#[test]
fn byte_by_byte() {
    for (framing, encoding) in CASES {
        let input = response(framing, encoding);
        check(&run(framing, input.chunks(1)));
    }
}

#[test]
fn corrupted_body_is_reported() {
    let mut body = encode(
        &body_pieces(&messages(), Framing::Crlf),
        ContentEncoding::Gzip,
    );
    let n = body.len();
    body[n - 8] ^= 1; // The first byte of the trailer's CRC-32.
    let input = chunked_response(&body, ContentEncoding::Gzip);
    let mut p = Pipeline::new(Framing::Crlf);
    let err = p.feed(&input).unwrap_err();
    assert!(err.contains("CRC-32 mismatch"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5173_b0c4),
        ..ProptestConfig::default()
    })]
    #[test]
    fn proptest_cuts(case in 0usize..CASES.len(), cuts in proptest::collection::vec(any::<usize>(), 0..40)) {
        let (framing, encoding) = CASES[case];
        let input = response(framing, encoding);
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut last = 0;
        for p in points {
            pieces.push(&input[last..p]);
            last = p;
        }
        pieces.push(&input[last..]);
        let p = run(framing, pieces);
        prop_assert!(p.framing == framing);
        check(&p);
    }
}
