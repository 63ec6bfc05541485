//! The loopback servers of the out-of-process figures.
//!
//! - [`Firehose`] replays the seeded benchmark stream (the same bytes as the in-process
//!   figures): after the request head it writes the response head, then one pre-rendered
//!   chunked segment again and again until the byte budget is spent, then a `disconnect`
//!   message with code 7 (so a client stops instead of reconnecting), the last chunk, and
//!   closes. Writing from memory costs the server almost nothing per byte, so the
//!   client, not the server, sets the pace. [`Firehose::notsent_lowat`] bounds what a
//!   connection queues beyond the client's window (on loopback, a client's ACK transmits
//!   that queue in the client's own context).
//! - [`run_idle`] answers every connection with `200`, a chunked head and one `control`
//!   message, then holds it open without a byte more: thousands of idle streams on one
//!   mio thread, plain or TLS.
//!
//! Both read the request head and ignore it (no OAuth check: the test server's
//! thread-per-connection design and its per-step rendering would be what is measured).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

use mio::net::TcpListener as MioListener;
use mio::{Events, Interest, Poll, Token};
use sitebucket_testserver::corpus;

use crate::stream::{self, BenchStream, MessageHash, HEAD, LAST_CHUNK};

/// The longest a connection waits for the rest of its batch (see [`Firehose::together`]).
pub const TOGETHER_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The longest request head read before answering anyway.
const MAX_REQUEST: usize = 64 * 1024;

/// The firehose: a pre-rendered chunked segment of the benchmark stream, repeated.
#[derive(Debug, Clone)]
pub struct Firehose {
    segment: Vec<u8>,
    /// A chunk with a final `disconnect` message (code 7, so the client stops at once
    /// instead of reconnecting), then the last chunk.
    last: Vec<u8>,
    segment_messages: u64,
    segment_keep_alives: u64,
    segment_body: u64,
    repeats: u64,
    /// The [`MessageHash`] of every message of one response, in order.
    hash: MessageHash,
    /// `TCP_NOTSENT_LOWAT` of every connection, if set (see [`Firehose::notsent_lowat`]).
    notsent_lowat: Option<u32>,
    /// Connections start streaming in batches of this many (see [`Firehose::together`]).
    together: u64,
    /// Connections that have sent their request so far, and its change.
    arrived: Arc<(std::sync::Mutex<u64>, std::sync::Condvar)>,
    /// Whether connections wait for [`Firehose::go`] after the head (see [`Firehose::gated`]).
    gated: bool,
    /// How many times [`Firehose::go`] was called, and its change.
    gos: Arc<(std::sync::Mutex<u64>, std::sync::Condvar)>,
    /// Messages per second each connection is paced to, if set (see [`Firehose::paced`]).
    rate: Option<u64>,
}

impl Firehose {
    /// The stream of `seed` with a segment of about `segment_bytes` of body, repeated until
    /// at least `total_bytes` of body have been sent.
    pub fn new(seed: u64, segment_bytes: usize, total_bytes: u64) -> Self {
        let stream = BenchStream::generate(seed, segment_bytes);
        let body = stream.crlf();
        let chunks = stream::chunked(&body.bytes, &body.line_ends, seed);
        let segment_body = body.bytes.len() as u64;
        let mut farewell = corpus::disconnect(7, "the benchmark's byte budget is spent");
        let repeats = total_bytes.div_ceil(segment_body).max(1);
        let mut hash = MessageHash::default();
        for _ in 0..repeats {
            for message in &stream.messages {
                hash.add(message);
            }
        }
        hash.add(&farewell);
        farewell.extend_from_slice(b"\r\n");
        let mut last = format!("{:x}\r\n", farewell.len()).into_bytes();
        last.extend_from_slice(&farewell);
        last.extend_from_slice(b"\r\n");
        last.extend_from_slice(LAST_CHUNK);
        Firehose {
            last,
            segment: chunks.wire,
            segment_messages: body.messages as u64,
            segment_keep_alives: body.keep_alives as u64,
            segment_body,
            repeats,
            hash,
            notsent_lowat: None,
            together: 1,
            arrived: Arc::default(),
            gated: false,
            gos: Arc::default(),
            rate: None,
        }
    }

    /// Paces every connection to about `messages_per_s` (by bytes: the segment's wire bytes
    /// per message), written in slices of a millisecond's worth, instead of as fast as the
    /// client reads: two clients of different speeds then read the same stream at the same
    /// rate, in reads of the same size. A client slower than the rate falls behind it.
    pub fn paced(mut self, messages_per_s: Option<u64>) -> Self {
        self.rate = messages_per_s.filter(|&rate| rate > 0);
        self
    }

    /// Writes `bytes` at the paced rate, from `start` when `sent` bytes had gone before.
    fn write_paced(
        &self,
        socket: &mut TcpStream,
        bytes: &[u8],
        rate: u64,
        start: std::time::Instant,
        sent: &mut u64,
    ) -> io::Result<()> {
        let per_message = self.segment.len() as f64 / self.segment_messages.max(1) as f64;
        let bytes_per_s = rate as f64 * per_message;
        let slice = ((bytes_per_s / 1000.0) as usize).max(1);
        for piece in bytes.chunks(slice) {
            let due = start + std::time::Duration::from_secs_f64(*sent as f64 / bytes_per_s);
            let now = std::time::Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            socket.write_all(piece)?;
            *sent += piece.len() as u64;
        }
        Ok(())
    }

    /// Holds every connection after the response head until [`go`](Self::go) is called
    /// (each connection waits for the next call after its arrival), calling `on_wait` as it
    /// starts waiting: the process that measures a client can then read the client's CPU
    /// after its start-up and before the first message.
    pub fn gated(mut self, gated: bool) -> Self {
        self.gated = gated;
        self
    }

    /// Releases every connection waiting at the gate (see [`gated`](Self::gated)).
    pub fn go(&self) {
        let (count, changed) = &*self.gos;
        *count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        changed.notify_all();
    }

    /// Waits for the next [`go`](Self::go).
    fn wait_for_go(&self, on_wait: &dyn Fn()) {
        let (count, changed) = &*self.gos;
        let mut gos = count.lock().unwrap_or_else(|p| p.into_inner());
        let arrived_at = *gos;
        on_wait();
        while *gos == arrived_at {
            gos = changed.wait(gos).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Holds every connection after the response head until `connections` have arrived
    /// (counting from the first in batches of `connections`; at most [`TOGETHER_WAIT`]), so
    /// that many streams are all active at once instead of the first ones ending before the
    /// last ones have connected.
    pub fn together(mut self, connections: u64) -> Self {
        self.together = connections.max(1);
        self
    }

    /// Waits until this connection's batch has arrived (see [`together`](Self::together)).
    fn wait_for_batch(&self) {
        let (count, changed) = &*self.arrived;
        let mut arrived = count.lock().unwrap_or_else(|p| p.into_inner());
        *arrived += 1;
        let batch_full = arrived.div_ceil(self.together) * self.together;
        changed.notify_all();
        let deadline = std::time::Instant::now() + TOGETHER_WAIT;
        while *arrived < batch_full {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            arrived = changed
                .wait_timeout(arrived, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Queues at most `bytes` of unsent data per connection beyond what the client's window
    /// takes (`TCP_NOTSENT_LOWAT`), as servers that stream to many clients do.
    pub fn notsent_lowat(mut self, bytes: Option<u32>) -> Self {
        self.notsent_lowat = bytes;
        self
    }

    /// The [`MessageHash`] of every message of one response, the final `disconnect` included.
    pub fn hash(&self) -> u64 {
        self.hash.0
    }

    /// Messages a client receives in one response (the final `disconnect` included).
    pub fn messages(&self) -> u64 {
        self.segment_messages * self.repeats + 1
    }

    /// Keep-alive lines in one response.
    pub fn keep_alives(&self) -> u64 {
        self.segment_keep_alives * self.repeats
    }

    /// Decoded body bytes of one response.
    pub fn body_bytes(&self) -> u64 {
        self.segment_body * self.repeats
    }

    /// Bytes on the wire of one response (head, chunks, last chunk).
    pub fn wire_bytes(&self) -> u64 {
        (HEAD.len() + self.last.len()) as u64 + self.segment.len() as u64 * self.repeats
    }

    /// Answers one connection: reads the request head, writes the whole response, closes.
    /// A gated firehose calls `on_wait` once the head is written and waits for
    /// [`go`](Self::go) (see [`gated`](Self::gated)).
    pub fn serve(&self, mut socket: TcpStream, on_wait: &dyn Fn()) -> io::Result<()> {
        read_request_head(&mut socket)?;
        let _ = socket.set_nodelay(true);
        if let Some(bytes) = self.notsent_lowat {
            crate::os::set_notsent_lowat(&socket, bytes)?;
        }
        socket.write_all(HEAD)?;
        if self.together > 1 {
            self.wait_for_batch();
        }
        if self.gated {
            self.wait_for_go(on_wait);
        }
        match self.rate {
            None => {
                for _ in 0..self.repeats {
                    socket.write_all(&self.segment)?;
                }
            }
            Some(rate) => {
                let (start, mut sent) = (std::time::Instant::now(), 0);
                for _ in 0..self.repeats {
                    self.write_paced(&mut socket, &self.segment, rate, start, &mut sent)?;
                }
            }
        }
        socket.write_all(&self.last)?;
        socket.flush()?;
        // Close only after the client has: bytes of its request left unread here (a POST
        // body) would make the close a reset, which can destroy response bytes the client
        // has not read yet.
        socket.shutdown(std::net::Shutdown::Write)?;
        socket.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
        let mut sink = [0u8; 4096];
        while matches!(socket.read(&mut sink), Ok(n) if n > 0) {}
        Ok(())
    }

    /// Serves every connection of `listener` (one thread each), forever.
    pub fn run(self: Arc<Self>, listener: TcpListener) -> io::Result<()> {
        self.run_with(listener, Arc::new(|| {}))
    }

    /// [`run`](Self::run), calling `on_wait` whenever a connection starts waiting at the
    /// gate (see [`gated`](Self::gated)).
    pub fn run_with(
        self: Arc<Self>,
        listener: TcpListener,
        on_wait: Arc<dyn Fn() + Send + Sync>,
    ) -> io::Result<()> {
        for socket in listener.incoming() {
            let socket = socket?;
            let (firehose, on_wait) = (self.clone(), on_wait.clone());
            std::thread::spawn(move || {
                // A client that hangs up early is not the server's problem.
                let _ = firehose.serve(socket, &*on_wait);
            });
        }
        Ok(())
    }
}

/// Reads until the end of an HTTP request head (`\r\n\r\n`), EOF, or [`MAX_REQUEST`].
fn read_request_head(socket: &mut TcpStream) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    while memchr::memmem::find(&buf, b"\r\n\r\n").is_none() && buf.len() < MAX_REQUEST {
        let n = socket.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

/// What an idle stream gets: the head and a chunk with the `control` message.
pub fn idle_response() -> Vec<u8> {
    let mut line = corpus::control(corpus::STREAM_ID);
    line.extend_from_slice(b"\r\n");
    let mut out = HEAD.to_vec();
    out.extend_from_slice(format!("{:x}\r\n", line.len()).as_bytes());
    out.extend_from_slice(&line);
    out.extend_from_slice(b"\r\n");
    out
}

/// A certificate authority and a server config for `localhost` and `127.0.0.1`: the test
/// server's, made fresh for every call.
pub use sitebucket_testserver::tls::{generate as tls_material, TlsMaterial};

/// One held connection of the idle server.
struct Held {
    socket: mio::net::TcpStream,
    tls: Option<rustls::ServerConnection>,
    request: Vec<u8>,
    answered: bool,
}

const LISTENER: Token = Token(usize::MAX);

/// Runs the idle server on `listener` forever (see the [module docs](self)); `tls` makes it
/// a TLS server. `on_change` is told the number of answered connections whenever it grows.
pub fn run_idle(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut on_change: impl FnMut(usize),
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = MioListener::from_std(listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let response = idle_response();
    let mut held: HashMap<usize, Held> = HashMap::new();
    let mut next = 0usize;
    let mut answered = 0usize;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        poll.poll(&mut events, None)?;
        for event in events.iter() {
            if event.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut socket, _)) => {
                            let token = Token(next);
                            next += 1;
                            poll.registry().register(
                                &mut socket,
                                token,
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            let tls = match &tls {
                                Some(config) => Some(
                                    rustls::ServerConnection::new(config.clone())
                                        .map_err(io::Error::other)?,
                                ),
                                None => None,
                            };
                            held.insert(
                                token.0,
                                Held {
                                    socket,
                                    tls,
                                    request: Vec::new(),
                                    answered: false,
                                },
                            );
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        // Out of descriptors or similar: try again on the next event.
                        Err(_) => break,
                    }
                }
                continue;
            }
            let id = event.token().0;
            let Some(conn) = held.get_mut(&id) else {
                continue;
            };
            let was_answered = conn.answered;
            let keep = conn.step(&response, &mut buf);
            if !keep {
                if let Some(mut conn) = held.remove(&id) {
                    let _ = poll.registry().deregister(&mut conn.socket);
                    if conn.answered {
                        answered -= 1;
                        on_change(answered);
                    }
                }
            } else if conn.answered && !was_answered {
                answered += 1;
                on_change(answered);
            }
        }
    }
}

impl Held {
    /// Moves what it can; `false` once the connection is over.
    fn step(&mut self, response: &[u8], buf: &mut [u8]) -> bool {
        match &mut self.tls {
            None => {
                loop {
                    match self.socket.read(buf) {
                        Ok(0) => return false,
                        Ok(n) => {
                            if !self.answered {
                                self.request.extend_from_slice(&buf[..n]);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => return false,
                    }
                }
                if !self.answered && request_complete(&self.request) {
                    self.answered = true;
                    self.request = Vec::new();
                    // A fresh socket's send buffer takes a few hundred bytes at once.
                    if self.socket.write_all(response).is_err() {
                        return false;
                    }
                }
                true
            }
            Some(tls) => {
                loop {
                    match tls.read_tls(&mut self.socket) {
                        Ok(0) => return false,
                        Ok(_) => {
                            if tls.process_new_packets().is_err() {
                                let _ = tls.write_tls(&mut self.socket);
                                return false;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => return false,
                    }
                }
                loop {
                    match tls.reader().read(buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if !self.answered {
                                self.request.extend_from_slice(&buf[..n]);
                            }
                        }
                        Err(_) => break,
                    }
                }
                if !self.answered && request_complete(&self.request) {
                    self.answered = true;
                    self.request = Vec::new();
                    if tls.writer().write_all(response).is_err() {
                        return false;
                    }
                }
                while tls.wants_write() {
                    match tls.write_tls(&mut self.socket) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => return false,
                    }
                }
                true
            }
        }
    }
}

fn request_complete(request: &[u8]) -> bool {
    request.len() >= MAX_REQUEST || memchr::memmem::find(request, b"\r\n\r\n").is_some()
}

/// Binds 127.0.0.1 on any free port with a long accept queue.
pub fn bind_loopback() -> io::Result<(TcpListener, SocketAddr)> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    socket.listen(4096)?;
    let listener: TcpListener = socket.into();
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inproc;
    use rustls::pki_types::pem::PemObject;
    use sitebucket_proto::Framing;

    /// Serves `firehose` on loopback, makes one request and reads the whole answer: the bytes
    /// and how long they took from the connect.
    fn fetch_once(firehose: &Arc<Firehose>) -> (Vec<u8>, std::time::Duration) {
        let (listener, addr) = bind_loopback().unwrap();
        std::thread::spawn({
            let firehose = firehose.clone();
            move || firehose.run(listener)
        });
        let started = std::time::Instant::now();
        let mut client = TcpStream::connect(addr).unwrap();
        client
            .write_all(b"GET /1.1/site.json HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut wire = Vec::new();
        client.read_to_end(&mut wire).unwrap();
        (wire, started.elapsed())
    }

    #[test]
    fn the_firehose_sends_its_budget_as_a_valid_stream() {
        let firehose = Arc::new(Firehose::new(21, 256 * 1024, 1 << 20));
        assert_eq!(firehose.repeats, 4);
        let (wire, _) = fetch_once(&firehose);
        assert_eq!(wire.len() as u64, firehose.wire_bytes());
        let counts = inproc::pipeline(&wire, Framing::Crlf, 65536);
        assert_eq!(counts.messages as u64, firehose.messages());
        assert_eq!(counts.keep_alives as u64, firehose.keep_alives());
        assert!(firehose.body_bytes() >= 1 << 20);
    }

    #[test]
    fn a_paced_firehose_sends_the_same_stream_no_faster_than_its_rate() {
        let firehose = Arc::new(Firehose::new(21, 256 * 1024, 256 * 1024));
        // A quarter of a second's worth of messages at this rate.
        let rate = (firehose.messages() * 4).max(1);
        let paced = Arc::new(Firehose::new(21, 256 * 1024, 256 * 1024).paced(Some(rate)));
        let (unpaced_wire, _) = fetch_once(&firehose);
        let (wire, took) = fetch_once(&paced);
        assert_eq!(wire.len() as u64, firehose.wire_bytes());
        assert!(wire == unpaced_wire, "pacing changed the bytes sent");
        let counts = inproc::pipeline(&wire, Framing::Crlf, 65536);
        assert_eq!(counts.messages as u64, firehose.messages());
        // The last slice is due a millisecond's worth before the end: at least 240 ms.
        assert!(
            took >= std::time::Duration::from_millis(240),
            "paced to a quarter of a second, sent in {took:?}"
        );
    }

    #[test]
    fn a_firehose_batch_starts_streaming_only_once_all_its_connections_are_in() {
        let firehose = Arc::new(
            Firehose::new(21, 64 * 1024, 64 * 1024)
                .notsent_lowat(Some(16 * 1024))
                .together(2),
        );
        let (listener, addr) = bind_loopback().unwrap();
        std::thread::spawn({
            let firehose = firehose.clone();
            move || firehose.run(listener)
        });
        let request = b"GET /1.1/site.json HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut first = TcpStream::connect(addr).unwrap();
        first.write_all(request).unwrap();
        let mut head = vec![0u8; HEAD.len()];
        first.read_exact(&mut head).unwrap();
        assert_eq!(head, HEAD);
        // Alone, the first connection gets nothing past the head.
        first
            .set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert!(first.read(&mut byte).is_err(), "held until the batch is in");
        let mut second = TcpStream::connect(addr).unwrap();
        second.write_all(request).unwrap();
        first.set_read_timeout(None).unwrap();
        let mut rest = Vec::new();
        first.read_to_end(&mut rest).unwrap();
        assert_eq!((HEAD.len() + rest.len()) as u64, firehose.wire_bytes());
        let mut wire = Vec::new();
        second.read_to_end(&mut wire).unwrap();
        assert_eq!(wire.len() as u64, firehose.wire_bytes());
    }

    #[test]
    fn the_idle_server_answers_and_holds_plain_and_tls() {
        for tls in [false, true] {
            let material = tls_material().unwrap();
            let (listener, addr) = bind_loopback().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let config = tls.then(|| material.config.clone());
            std::thread::spawn(move || {
                run_idle(listener, config, move |n| {
                    let _ = tx.send(n);
                })
            });
            let mut socket = TcpStream::connect(addr).unwrap();
            let request = b"GET /1.1/site.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
            let expected = idle_response();
            let got = if tls {
                let mut roots = rustls::RootCertStore::empty();
                let der =
                    rustls::pki_types::CertificateDer::from_pem_slice(material.ca_pem.as_bytes())
                        .unwrap();
                roots.add(der).unwrap();
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
                let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
                let mut tls_stream = rustls::Stream::new(&mut conn, &mut socket);
                tls_stream.write_all(request).unwrap();
                let mut got = vec![0u8; expected.len()];
                tls_stream.read_exact(&mut got).unwrap();
                got
            } else {
                socket.write_all(request).unwrap();
                let mut got = vec![0u8; expected.len()];
                socket.read_exact(&mut got).unwrap();
                got
            };
            assert_eq!(got, expected, "tls {tls}");
            assert_eq!(rx.recv().unwrap(), 1);
            // Held: nothing more arrives.
            socket
                .set_read_timeout(Some(std::time::Duration::from_millis(200)))
                .unwrap();
            let mut more = [0u8; 16];
            assert!(
                socket.read(&mut more).is_err(),
                "tls {tls}: the server stays silent"
            );
            drop(socket);
            assert_eq!(rx.recv().unwrap(), 0, "a closed connection is forgotten");
        }
    }

    #[test]
    fn a_gated_firehose_streams_only_after_go() {
        let firehose = Arc::new(Firehose::new(21, 64 * 1024, 64 * 1024).gated(true));
        let (listener, addr) = bind_loopback().unwrap();
        let (waiting_tx, waiting) = std::sync::mpsc::channel::<()>();
        let waiting_tx = std::sync::Mutex::new(waiting_tx);
        std::thread::spawn({
            let firehose = firehose.clone();
            move || {
                firehose.run_with(
                    listener,
                    Arc::new(move || {
                        let _ = waiting_tx.lock().unwrap().send(());
                    }),
                )
            }
        });
        let mut client = TcpStream::connect(addr).unwrap();
        client
            .write_all(b"GET /1.1/site.json HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        waiting
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the connection waits at the gate");
        let mut head = vec![0u8; HEAD.len()];
        client.read_exact(&mut head).unwrap();
        assert_eq!(head, HEAD);
        client
            .set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert!(client.read(&mut byte).is_err(), "held until go");
        firehose.go();
        client.set_read_timeout(None).unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        assert_eq!((HEAD.len() + rest.len()) as u64, firehose.wire_bytes());
    }
}
