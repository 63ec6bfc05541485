//! One stream's transport on a mio loop: its socket, unsent bytes and next deadline.
//!
//! A [`Conn`] carries out the core's actions and feeds it what the socket says; it makes no
//! protocol decision. It holds no read buffer: the loop lends it one shared [`ReadBuffer`] per
//! event, whose reads the core frames in place (a message keeps its read's block alive while
//! it lives; the core copies only the start of an unfinished message, and short reads are
//! copied out), so an idle stream costs a few words here plus the core's own state.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use std::vec;

use bytes::Bytes;
use mio::{Interest, Registry, Token};
use sitebucket_proto::{Action, Outcome, ReadBuffer, StreamEvent};
use sitebucket_proto::{Parser, SiteStream};
use sitebucket_thread::time::unix_secs;
use sitebucket_thread::{Resolver, RunState};

use crate::socket::{connect_result, write_queue, Socket};

/// What one run works on: the core, the user's parser, the shared control and the loop's
/// lookups.
pub(crate) struct Parts<'a> {
    pub stream: &'a mut SiteStream,
    pub parser: &'a mut dyn Parser,
    pub control: &'a RunState,
    pub lookups: &'a Lookups,
}

/// A lookup's answer on its way to the loop: the conn's token, the conn's number for the
/// lookup, and the addresses.
pub(crate) struct Answer {
    pub token: Token,
    pub lookup: u64,
    pub result: io::Result<Vec<SocketAddr>>,
}

/// How a loop resolves host names: on the resolver's pool of lookup threads, whose answer
/// `deliver` hands to the loop (queue it, then wake the loop's one `Waker`).
pub(crate) struct Lookups {
    pub resolver: Resolver,
    pub deliver: Arc<dyn Fn(Answer) + Send + Sync>,
}

impl Lookups {
    /// Starts looking up `host:port` for the conn `token`, as its lookup number `lookup`.
    fn start(&self, token: Token, lookup: u64, host: &str, port: u16) -> io::Result<()> {
        let deliver = self.deliver.clone();
        self.resolver.spawn_lookup(host, port, move |result| {
            deliver(Answer {
                token,
                lookup,
                result,
            })
        })
    }
}

/// One stream's socket state on a loop, registered under `token`.
pub(crate) struct Conn {
    token: Token,
    socket: Socket,
    /// Bytes the socket did not take yet, in order (the front may be partly written).
    out: VecDeque<Bytes>,
    /// The interest the socket is registered with, if it is registered.
    interest: Option<Interest>,
    /// The core's current deadline (from its last `Wait`).
    pub deadline: Option<Instant>,
    /// The number of the lookup whose answer the connect waits for, if one does. A closed
    /// connection forgets it: a later answer with its number is dropped.
    resolving: Option<u64>,
    /// Lookups started so far (their numbers).
    lookups: u64,
}

impl Conn {
    pub(crate) fn new(token: Token) -> Self {
        Self {
            token,
            socket: Socket::None,
            out: VecDeque::new(),
            interest: None,
            deadline: None,
            resolving: None,
            lookups: 0,
        }
    }

    /// Drains the core (after a stop request, a deadline or new input), carrying out each
    /// action, then publishes the status. `Some` once the stream has finished.
    pub(crate) fn drive(&mut self, registry: &Registry, parts: &mut Parts<'_>) -> Option<Outcome> {
        if parts.control.stop_requested() {
            parts.stream.disconnect();
        }
        let mut now = Instant::now();
        let outcome = loop {
            let action = parts.stream.poll_action(now);
            // The events after a read come in a burst: one clock reading serves them all.
            // Any other action may take a while (a write), so read it again.
            let event = matches!(action, Action::Event(_));
            match action {
                Action::Connect { host, port, .. } => {
                    self.connect(registry, &host, port, parts, now)
                }
                Action::Transmit(bytes) => {
                    self.out.push_back(bytes);
                    self.flush_or_fail(registry, parts.stream, now);
                }
                Action::Event(StreamEvent::Message(message)) => parts.parser.parse(message),
                Action::Event(event) => parts.control.observe(&event),
                Action::Close => self.close(registry),
                Action::Wait(deadline) => {
                    self.deadline = Some(deadline);
                    if self.update_interest(registry).is_ok() {
                        break None;
                    }
                    // The socket cannot be watched: for the core, the connection is lost.
                    parts.stream.handle_eof(now);
                    self.close(registry);
                }
                Action::Finished(outcome) => {
                    self.close(registry);
                    self.deadline = None;
                    break Some(outcome);
                }
            }
            if !event {
                now = Instant::now();
            }
        };
        parts.control.publish(parts.stream);
        outcome
    }

    /// Handles a readiness event for this conn's token, then drains the core.
    pub(crate) fn ready(
        &mut self,
        registry: &Registry,
        writable: bool,
        buf: &mut ReadBuffer,
        parts: &mut Parts<'_>,
    ) -> Option<Outcome> {
        let now = Instant::now();
        let connecting = matches!(self.socket, Socket::Connecting { .. });
        if connecting {
            // Any event (writable, error, hang-up) on a connecting socket: learn the result.
            self.finish_connect(registry, parts.stream, now);
        } else if writable {
            self.flush_or_fail(registry, parts.stream, now);
        }
        if connecting || writable {
            if let Some(outcome) = self.drive(registry, parts) {
                return Some(outcome);
            }
        }
        // Read until WouldBlock, draining the core after every read so its actions (a
        // `Close` after a bad status, a TLS reply) happen in order.
        while let Socket::Open(tcp) = &mut self.socket {
            let now = Instant::now();
            match tcp.read(buf.spare()) {
                Ok(0) => {
                    parts.stream.handle_eof(now);
                    self.close(registry);
                }
                Ok(n) => parts.stream.handle_input_bytes(now, buf.filled(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // A reset or other failure: for the core, the connection is gone.
                    parts.stream.handle_eof(now);
                    self.close(registry);
                }
            }
            if let Some(outcome) = self.drive(registry, parts) {
                return Some(outcome);
            }
        }
        None
    }

    /// The core's deadline is due: first hands it whatever the socket already holds (a
    /// connect that finished, bytes that arrived while the loop was busy with other
    /// streams and that the next poll would report), then drives it. The core then judges
    /// the deadline knowing about that input, so a stall or connect timeout is declared
    /// only on a socket that truly had nothing. This orders I/O; it decides nothing.
    pub(crate) fn due(
        &mut self,
        registry: &Registry,
        buf: &mut ReadBuffer,
        parts: &mut Parts<'_>,
    ) -> Option<Outcome> {
        if matches!(self.socket, Socket::Open(_) | Socket::Connecting { .. }) {
            if let Some(outcome) = self.ready(registry, false, buf, parts) {
                return Some(outcome);
            }
        }
        self.drive(registry, parts)
    }

    /// Connects to an IP literal at once; for a name, starts a lookup off the loop and
    /// connects when [`resolved`](Conn::resolved) hands over its answer.
    fn connect(
        &mut self,
        registry: &Registry,
        host: &str,
        port: u16,
        parts: &mut Parts<'_>,
        now: Instant,
    ) {
        self.close(registry);
        if let Some(addr) = Resolver::literal(host, port) {
            return self.try_connect(registry, vec![addr].into_iter(), parts.stream, now);
        }
        self.lookups = self.lookups.wrapping_add(1);
        match parts.lookups.start(self.token, self.lookups, host, port) {
            Ok(()) => self.resolving = Some(self.lookups),
            Err(e) => parts.stream.handle_connect_failed(now, e.kind()),
        }
    }

    /// A lookup's answer: if the connect still waits for it, connects to its addresses (or
    /// tells the core the attempt failed), then drains the core. An answer nobody waits for
    /// any more (the attempt was closed: a stop, the connect deadline) is dropped.
    pub(crate) fn resolved(
        &mut self,
        registry: &Registry,
        answer: Answer,
        parts: &mut Parts<'_>,
    ) -> Option<Outcome> {
        if self.resolving != Some(answer.lookup) {
            return None;
        }
        self.resolving = None;
        let now = Instant::now();
        match answer.result {
            Ok(addrs) => self.try_connect(registry, addrs.into_iter(), parts.stream, now),
            Err(e) => parts.stream.handle_connect_failed(now, e.kind()),
        }
        self.drive(registry, parts)
    }

    /// Starts a non-blocking connect to the first address that accepts one; tells the core
    /// the attempt failed if none does.
    fn try_connect(
        &mut self,
        registry: &Registry,
        rest: vec::IntoIter<SocketAddr>,
        stream: &mut SiteStream,
        now: Instant,
    ) {
        match Socket::connect(registry, self.token, Interest::WRITABLE, rest) {
            Ok(socket) => {
                self.interest = Some(Interest::WRITABLE);
                self.socket = socket;
            }
            Err(kind) => stream.handle_connect_failed(now, kind),
        }
    }

    /// Learns how the connect ended (see [`connect_result`]); a spurious event changes nothing.
    fn finish_connect(&mut self, registry: &Registry, stream: &mut SiteStream, now: Instant) {
        let Socket::Connecting { tcp, .. } = &self.socket else {
            return;
        };
        let Some(result) = connect_result(tcp) else {
            return;
        };
        let Socket::Connecting { mut tcp, rest } =
            std::mem::replace(&mut self.socket, Socket::None)
        else {
            return;
        };
        match result {
            Ok(()) => {
                // Small requests go out at once; a failure here only costs latency.
                let _ = tcp.set_nodelay(true);
                self.socket = Socket::Open(tcp);
                stream.handle_connected(now, unix_secs());
            }
            Err(e) => {
                let _ = registry.deregister(&mut tcp);
                self.interest = None;
                drop(tcp);
                if rest.len() == 0 {
                    stream.handle_connect_failed(now, e.kind());
                } else {
                    self.try_connect(registry, rest, stream, now);
                }
            }
        }
    }

    /// Writes what it can of the queued bytes; a write error is a lost connection.
    fn flush_or_fail(&mut self, registry: &Registry, stream: &mut SiteStream, now: Instant) {
        if let Err(_e) = self.flush() {
            stream.handle_eof(now);
            self.close(registry);
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let Socket::Open(tcp) = &mut self.socket else {
            // Nothing to write to (the core closes the connection itself).
            self.out.clear();
            return Ok(());
        };
        write_queue(tcp, &mut self.out)
    }

    /// Registers for writable only while bytes wait to be written.
    fn update_interest(&mut self, registry: &Registry) -> io::Result<()> {
        let Socket::Open(tcp) = &mut self.socket else {
            return Ok(());
        };
        let want = if self.out.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if self.interest != Some(want) {
            registry.reregister(tcp, self.token, want)?;
            self.interest = Some(want);
        }
        Ok(())
    }

    /// Drops the socket (deregistered first) and anything unsent, and forgets a lookup.
    pub(crate) fn close(&mut self, registry: &Registry) {
        self.resolving = None;
        self.socket.close(registry);
        self.interest = None;
        self.out.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::net::TcpStream;
    use mio::{Events, Poll};
    use std::time::Duration;

    /// A connected pair: the conn's end (non-blocking, registered) and a std peer.
    fn pair(poll: &Poll) -> (Conn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut tcp = TcpStream::from_std(ours);
        let mut conn = Conn::new(Token(7));
        poll.registry()
            .register(&mut tcp, conn.token, Interest::READABLE)
            .unwrap();
        conn.interest = Some(Interest::READABLE);
        conn.socket = Socket::Open(tcp);
        (conn, peer)
    }

    #[test]
    fn unsent_bytes_wait_for_writable_and_go_out_in_order() {
        let mut poll = Poll::new().unwrap();
        let (mut conn, mut peer) = pair(&poll);
        // Far more than loopback socket buffers hold, so the first flush is partial.
        let data: Vec<u8> = (0..32 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let half = data.len() / 2;
        conn.out.push_back(Bytes::copy_from_slice(&data[..half]));
        conn.out.push_back(Bytes::copy_from_slice(&data[half..]));
        conn.flush().unwrap();
        assert!(!conn.out.is_empty(), "the socket took only part of it");
        conn.update_interest(poll.registry()).unwrap();
        assert_eq!(
            conn.interest,
            Some(Interest::READABLE | Interest::WRITABLE),
            "writable interest while bytes wait"
        );

        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).unwrap();
            got
        });
        let mut events = Events::with_capacity(8);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !conn.out.is_empty() {
            assert!(Instant::now() < deadline, "the flush did not finish");
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            conn.flush().unwrap();
        }
        conn.update_interest(poll.registry()).unwrap();
        assert_eq!(
            conn.interest,
            Some(Interest::READABLE),
            "writable dropped once flushed"
        );
        conn.close(poll.registry());
        assert!(matches!(conn.socket, Socket::None));
        let got = reader.join().unwrap();
        assert!(got == data, "every byte arrived once, in order");
    }
}
