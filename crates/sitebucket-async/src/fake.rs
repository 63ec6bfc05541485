//! A [`Runtime`] for the tests: an in-memory network of scripted peers (no socket, no
//! port), a timer on a sleeping helper thread, and a yield that wakes itself.
//!
//! The network belongs to the test's thread ([`Net::new`] installs a fresh one there), so
//! tests running side by side never see each other's peers; the futures under test must be
//! polled on that thread (`futures_lite::future::block_on`).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use crate::runtime::Runtime;

/// The test runtime.
pub(crate) struct Fake;

/// What a listening peer does with a connection.
#[derive(Clone)]
pub(crate) enum Peer {
    /// Reads what it is sent and never answers.
    Silent,
    /// Closes at once: the first read returns 0.
    Closes,
    /// Sends these bytes, then closes.
    Replies(Vec<u8>),
    /// Sends these bytes and closes as [`Replies`](Self::Replies) does, but the runtime's
    /// readiness never reports them (a readiness event still queued in its reactor, as
    /// tokio's when more sockets are ready than one poll of the OS returns): only
    /// [`Runtime::try_read`], which asks the socket itself, finds them.
    Unannounced(Vec<u8>),
}

#[derive(Default)]
struct State {
    next_port: u16,
    listening: HashMap<SocketAddr, Peer>,
    attempts: Vec<SocketAddr>,
    /// What each accepted connection was sent, in the order they were accepted.
    wires: Vec<Arc<Mutex<Wire>>>,
}

/// One connection's bytes.
#[derive(Debug, Default)]
pub(crate) struct Wire {
    incoming: VecDeque<u8>,
    eof: bool,
    /// What `incoming` and `eof` hold is invisible to `poll_read`.
    unannounced: bool,
    written: Vec<u8>,
}

thread_local! {
    static NET: RefCell<Arc<Mutex<State>>> = RefCell::default();
}

fn net() -> Arc<Mutex<State>> {
    NET.with_borrow(Arc::clone)
}

/// The test thread's network, for setting up peers and looking at what happened.
pub(crate) struct Net(Arc<Mutex<State>>);

impl Net {
    /// A fresh, empty network for this thread.
    pub(crate) fn new() -> Self {
        let state = Arc::new(Mutex::new(State {
            next_port: 1000,
            ..State::default()
        }));
        NET.with_borrow_mut(|net| *net = state.clone());
        Self(state)
    }

    /// An address nothing listens on (a connect is refused).
    pub(crate) fn unused(&self) -> SocketAddr {
        let mut state = self.0.lock().unwrap();
        state.next_port += 1;
        SocketAddr::from(([127, 0, 0, 1], state.next_port))
    }

    /// A new address where `peer` accepts connections.
    pub(crate) fn listen(&self, peer: Peer) -> SocketAddr {
        let addr = self.unused();
        self.0.lock().unwrap().listening.insert(addr, peer);
        addr
    }

    /// Every address a connect was tried on, in order.
    pub(crate) fn attempts(&self) -> Vec<SocketAddr> {
        self.0.lock().unwrap().attempts.clone()
    }

    /// The bytes the peers sent that no read has taken yet, over every connection.
    pub(crate) fn unread(&self) -> usize {
        let state = self.0.lock().unwrap();
        state
            .wires
            .iter()
            .map(|wire| wire.lock().unwrap().incoming.len())
            .sum()
    }

    /// What each accepted connection was sent, in order.
    pub(crate) fn sent(&self) -> Vec<Vec<u8>> {
        let state = self.0.lock().unwrap();
        state
            .wires
            .iter()
            .map(|wire| wire.lock().unwrap().written.clone())
            .collect()
    }
}

/// A connection to a scripted [`Peer`].
#[derive(Debug)]
pub(crate) struct Socket {
    peer: SocketAddr,
    wire: Arc<Mutex<Wire>>,
}

impl Socket {
    /// The address connected to.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }
}

/// A timer whose helper thread wakes the task at its instant.
pub(crate) struct Timer {
    at: Instant,
    /// The instant a helper thread was started for.
    helper: Option<Instant>,
}

impl Runtime for Fake {
    type Socket = Socket;
    type Timer = Timer;
    type Budget = ();

    fn connect(addr: SocketAddr) -> impl Future<Output = io::Result<Socket>> + Send {
        let net = net();
        let mut state = net.lock().unwrap();
        state.attempts.push(addr);
        let connected = match state.listening.get(&addr).cloned() {
            None => Err(io::ErrorKind::ConnectionRefused.into()),
            Some(peer) => {
                let mut wire = Wire::default();
                match peer {
                    Peer::Silent => {}
                    Peer::Closes => wire.eof = true,
                    Peer::Replies(bytes) => {
                        wire.incoming.extend(bytes);
                        wire.eof = true;
                    }
                    Peer::Unannounced(bytes) => {
                        wire.incoming.extend(bytes);
                        wire.eof = true;
                        wire.unannounced = true;
                    }
                }
                let wire = Arc::new(Mutex::new(wire));
                state.wires.push(wire.clone());
                Ok(Socket { peer: addr, wire })
            }
        };
        std::future::ready(connected)
    }

    fn set_nodelay(_: &Socket) -> io::Result<()> {
        Ok(())
    }

    fn poll_read(
        socket: &mut Socket,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if socket.wire.lock().unwrap().unannounced {
            // Never reported: only a direct read finds the bytes.
            return Poll::Pending;
        }
        match Self::try_read(socket, buf) {
            // A silent peer: nothing ever comes.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            read => Poll::Ready(read),
        }
    }

    fn try_read(socket: &mut Socket, buf: &mut [u8]) -> io::Result<usize> {
        let mut wire = socket.wire.lock().unwrap();
        let n = buf.len().min(wire.incoming.len());
        if n == 0 && !wire.eof {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        for (slot, byte) in buf.iter_mut().zip(wire.incoming.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }

    fn poll_write(
        socket: &mut Socket,
        _: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        // A peer that takes at most 100 bytes a write, so writes come in several parts.
        let n = bytes.len().min(100);
        socket
            .wire
            .lock()
            .unwrap()
            .written
            .extend_from_slice(&bytes[..n]);
        Poll::Ready(Ok(n))
    }

    fn timer(at: Instant) -> Timer {
        Timer { at, helper: None }
    }

    fn reset_timer(timer: &mut Timer, at: Instant) {
        timer.at = at;
    }

    fn poll_timer(timer: &mut Timer, cx: &mut Context<'_>) -> Poll<()> {
        let now = Instant::now();
        if now >= timer.at {
            return Poll::Ready(());
        }
        if timer.helper != Some(timer.at) {
            timer.helper = Some(timer.at);
            let (waker, wait) = (cx.waker().clone(), timer.at - now);
            std::thread::spawn(move || {
                std::thread::sleep(wait);
                waker.wake();
            });
        }
        Poll::Pending
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        YieldNow(false)
    }

    fn poll_budget(_: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }

    fn made_progress((): ()) {}
}

/// Pending once (waking itself at once), then ready.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if std::mem::replace(&mut self.0, true) {
            return Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
