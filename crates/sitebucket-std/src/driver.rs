//! [`StdDriver`]: the core over a blocking std socket, one thread per stream.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use sitebucket_proto::control::{ControlCall, ControlError, ControlResponse};
use sitebucket_proto::{Action, Outcome, ReadBuffer, StreamEvent};
use sitebucket_proto::{Parser, SiteStream};
use sitebucket_thread::sync::lock;
use sitebucket_thread::time::unix_secs;
use sitebucket_thread::{Driver, Resolver, RunState, READ_BUFFER_BYTES, READ_COPY_BELOW_BYTES};

const CONNECTING: Token = Token(0);
const WAKE: Token = Token(1);

/// Runs a [`SiteStream`] on blocking std sockets: one thread per stream.
///
/// The connect is non-blocking (a `mio` poll, so a stop interrupts it); reads block with a
/// read timeout set to the core's next deadline; backoff waits sleep on a condition
/// variable. A stop shuts the socket down from the stopping thread, wakes the poll and the
/// condition variable, so [`ListenThread::close`](sitebucket_thread::ListenThread::close)
/// takes effect at once in every state.
///
/// The driver decides nothing about the protocol: it connects where the core says, writes
/// what it transmits, feeds it what arrives and waits until its deadline.
///
/// Reads go into 64 KiB blocks ([`ReadBuffer`]) handed to the core without a copy, so each
/// message the parser gets is a slice of a block, which it keeps alive while it lives (the
/// block is read into again once its messages are all dropped).
///
/// Host names are resolved by a [`Resolver`] (the system's unless
/// [`with_resolver`](StdDriver::with_resolver) says otherwise) on its bounded pool of
/// lookup threads, while the stream's thread waits for the answer, a stop and the core's connect
/// deadline at once: a slow lookup neither delays `close()` nor outlives the deadline (the
/// abandoned lookup ends on its own, its answer dropped). IP literals need no lookup.
#[derive(Debug, Clone, Default)]
pub struct StdDriver {
    resolver: Resolver,
}

impl StdDriver {
    /// The driver with the system resolver.
    pub fn new() -> Self {
        Self::default()
    }

    /// The driver resolving host names with `resolver` (your own DNS, a fixed map), for
    /// streams and control calls alike.
    pub fn with_resolver(resolver: Resolver) -> Self {
        Self { resolver }
    }

    /// The resolver the driver looks host names up with.
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }
}

impl Driver for StdDriver {
    /// `"thread"`: the name the CLI's `--driver` takes for it (one thread per stream).
    fn name(&self) -> &'static str {
        "thread"
    }

    fn run(
        &self,
        stream: &mut SiteStream,
        parser: &mut dyn Parser,
        control: &Arc<RunState>,
    ) -> Outcome {
        let poll = match Poll::new().and_then(|poll| {
            let waker = mio::Waker::new(poll.registry(), WAKE)?;
            Ok((poll, waker))
        }) {
            Ok(pair) => pair,
            Err(e) => return Outcome::driver_io("creating a poller for connects", e),
        };
        let (mut poll, waker) = poll;
        // One waker per poll: a stop and a finished lookup both wake it.
        let waker = Arc::new(waker);
        let wake = Arc::new(Wake {
            state: Mutex::new(WakeState {
                socket: None,
                poll_waker: Some(waker.clone()),
            }),
            cond: Condvar::new(),
        });
        let hook = wake.clone();
        control.set_waker(Arc::new(move || hook.wake()));
        let mut connector = Connector {
            poll: &mut poll,
            waker: &waker,
            resolver: &self.resolver,
        };
        let outcome = drive(stream, parser, control, &wake, &mut connector);
        control.clear_waker();
        control.publish(stream);
        outcome
    }

    /// Runs the call on a blocking socket of its own in the calling thread
    /// ([`run_control_with`](crate::run_control_with), with this driver's resolver).
    fn control(&self, call: ControlCall) -> Result<ControlResponse, ControlError> {
        crate::run_control_with(call, &self.resolver)
    }
}

/// What a stop must reach: the open socket, the connect poll, the backoff sleep.
struct Wake {
    state: Mutex<WakeState>,
    cond: Condvar,
}

struct WakeState {
    /// A clone of the open socket, shut down on a stop so a blocked read returns.
    socket: Option<TcpStream>,
    /// Wakes the poll a connect (or its lookup) waits in.
    poll_waker: Option<Arc<mio::Waker>>,
}

impl Wake {
    fn lock(&self) -> MutexGuard<'_, WakeState> {
        // The state is a socket clone and a waker: still usable after a panic elsewhere.
        lock(&self.state)
    }

    /// Called by `RunState::request_stop` (after the stop flag is set), from any thread.
    fn wake(&self) {
        let state = self.lock();
        if let Some(socket) = &state.socket {
            let _ = socket.shutdown(Shutdown::Both);
        }
        if let Some(waker) = &state.poll_waker {
            let _ = waker.wake();
        }
        // Notified under the lock, so a sleeper that checked the flag is already waiting.
        self.cond.notify_all();
    }

    fn set_socket(&self, socket: Option<TcpStream>) {
        self.lock().socket = socket;
    }

    /// Sleeps until `deadline` or a stop, whichever comes first.
    fn sleep_until(&self, deadline: Instant, control: &RunState) {
        let mut state = self.lock();
        loop {
            let now = Instant::now();
            if control.stop_requested() || now >= deadline {
                return;
            }
            state = match self.cond.wait_timeout(state, deadline - now) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// The drain loop of the core's contract (see `sitebucket_proto::stream`).
fn drive(
    stream: &mut SiteStream,
    parser: &mut dyn Parser,
    control: &RunState,
    wake: &Wake,
    connector: &mut Connector<'_>,
) -> Outcome {
    let mut socket: Option<TcpStream> = None;
    // The read timeout set on `socket`, if any.
    let mut read_timeout = None;
    let mut buf = ReadBuffer::new(READ_BUFFER_BYTES, READ_COPY_BELOW_BYTES);
    let mut now = Instant::now();
    loop {
        if control.stop_requested() && !stream.disconnect_issued() {
            stream.disconnect();
        }
        let action = stream.poll_action(now);
        // The events after a read come in a burst: one clock reading serves them all. Any
        // other action may take a while (a connect, a write, a wait), so read it again.
        let event = matches!(action, Action::Event(_));
        match action {
            Action::Connect { host, port, .. } => {
                // The connect blocks this thread: show the attempt first.
                control.publish(stream);
                let deadline = stream.deadline();
                match connector.connect(&host, port, deadline, control) {
                    Connected::Up(up) => {
                        wake.set_socket(up.try_clone().ok());
                        socket = Some(up);
                        read_timeout = None;
                        stream.handle_connected(Instant::now(), unix_secs());
                    }
                    Connected::Failed(kind) => stream.handle_connect_failed(Instant::now(), kind),
                    Connected::TimedOut => stream.handle_timeout(Instant::now()),
                    // The next turn of the loop disconnects.
                    Connected::Stopped => {}
                }
            }
            Action::Transmit(bytes) => {
                if let Some(up) = &mut socket {
                    // `write_all` retries partial writes. A failed write means the
                    // connection is gone: the core hears it as the peer closing.
                    if up.write_all(&bytes).is_err() {
                        stream.handle_eof(Instant::now());
                    }
                }
            }
            Action::Event(StreamEvent::Message(message)) => parser.parse(message),
            Action::Event(event) => control.observe(&event),
            Action::Close => {
                wake.set_socket(None);
                if let Some(up) = socket.take() {
                    let _ = up.shutdown(Shutdown::Both);
                }
            }
            Action::Wait(deadline) => {
                control.publish(stream);
                match &mut socket {
                    Some(up) => read_until(stream, up, &mut read_timeout, &mut buf, deadline),
                    None => {
                        wake.sleep_until(deadline, control);
                        stream.handle_timeout(Instant::now());
                    }
                }
            }
            Action::Finished(outcome) => return outcome,
        }
        if !event {
            now = Instant::now();
        }
    }
}

/// One blocking read, bounded by `deadline`; its result goes to the core. `read_timeout`
/// is the timeout set on `socket` (kept, to set it only when it changes).
fn read_until(
    stream: &mut SiteStream,
    socket: &mut TcpStream,
    read_timeout: &mut Option<Duration>,
    buf: &mut ReadBuffer,
    deadline: Instant,
) {
    let left = deadline.saturating_duration_since(Instant::now());
    // A zero read timeout means "block forever" to the OS. The deadline is due, but bytes
    // may have arrived while this thread was busy (a slow parser, a starved CPU): read what
    // the socket already holds without waiting and hand it in first, so the core declares
    // a stall only on a socket that truly had nothing.
    if left.is_zero() {
        if socket.set_nonblocking(true).is_err() {
            stream.handle_timeout(Instant::now());
            return;
        }
        let result = socket.read(buf.spare());
        if socket.set_nonblocking(false).is_err() {
            // The socket can no longer be read as this driver reads it: for the core, the
            // connection is lost.
            stream.handle_eof(Instant::now());
            return;
        }
        return hand_in(stream, buf, result);
    }
    let timeout = coarse_timeout(left);
    if *read_timeout != Some(timeout) {
        if socket.set_read_timeout(Some(timeout)).is_err() {
            stream.handle_timeout(Instant::now());
            return;
        }
        *read_timeout = Some(timeout);
    }
    let result = socket.read(buf.spare());
    hand_in(stream, buf, result);
}

/// Hands the result of one read to the core: bytes, the end, or (nothing to read before the
/// deadline) a timeout.
fn hand_in(stream: &mut SiteStream, buf: &mut ReadBuffer, result: io::Result<usize>) {
    match result {
        // A stop shuts the socket down, which also lands here; the loop checks the flag.
        Ok(0) => stream.handle_eof(Instant::now()),
        Ok(n) => stream.handle_input_bytes(Instant::now(), buf.filled(n)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            stream.handle_timeout(Instant::now())
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
        Err(_) => stream.handle_eof(Instant::now()),
    }
}

/// The read timeout for a deadline `left` away: whole seconds (rounded down) when it is more
/// than two seconds away, so that a stall deadline, which moves with every read, changes the
/// socket's timeout about once a second rather than on every read. Waking up to a second
/// early only costs a spurious (ignored) timeout; never waking late.
fn coarse_timeout(left: Duration) -> Duration {
    if left > Duration::from_secs(2) {
        Duration::from_secs(left.as_secs())
    } else {
        left
    }
}

enum Connected {
    Up(TcpStream),
    Failed(io::ErrorKind),
    TimedOut,
    Stopped,
}

/// What a connect needs: the poll a stop wakes, its one waker (shared with lookup threads)
/// and the resolver.
struct Connector<'a> {
    poll: &'a mut Poll,
    waker: &'a Arc<mio::Waker>,
    resolver: &'a Resolver,
}

impl Connector<'_> {
    /// Resolves `host` and connects to its addresses in turn, without blocking a stop: the
    /// lookup runs on a thread of its own and each attempt is a non-blocking connect, both
    /// waited for in the poll (which the stop wakes) until `deadline`.
    fn connect(
        &mut self,
        host: &str,
        port: u16,
        deadline: Option<Instant>,
        control: &RunState,
    ) -> Connected {
        let addrs = match Resolver::literal(host, port) {
            Some(addr) => vec![addr],
            None => match self.resolve(host, port, deadline, control) {
                Ok(addrs) => addrs,
                Err(ended) => return ended,
            },
        };
        let mut last = Connected::Failed(io::ErrorKind::NotFound);
        for addr in addrs {
            last = match mio::net::TcpStream::connect(addr) {
                Ok(pending) => wait_connected(pending, deadline, control, self.poll),
                Err(e) => Connected::Failed(e.kind()),
            };
            if !matches!(last, Connected::Failed(_)) {
                break;
            }
        }
        last
    }

    /// Looks `host` up on a lookup thread, which puts the answer in a slot and wakes the
    /// poll; waits for it, a stop or `deadline`. An abandoned lookup finishes on its own
    /// and fills a slot nobody reads (its wake-up is a spurious one for later waits).
    fn resolve(
        &mut self,
        host: &str,
        port: u16,
        deadline: Option<Instant>,
        control: &RunState,
    ) -> Result<Vec<SocketAddr>, Connected> {
        let slot: Arc<Mutex<Option<io::Result<Vec<SocketAddr>>>>> = Arc::default();
        let (answer, waker) = (slot.clone(), self.waker.clone());
        let started = self.resolver.spawn_lookup(host, port, move |result| {
            *lock(&answer) = Some(result);
            let _ = waker.wake();
        });
        if let Err(e) = started {
            return Err(Connected::Failed(e.kind()));
        }
        let mut events = Events::with_capacity(4);
        loop {
            if control.stop_requested() {
                return Err(Connected::Stopped);
            }
            if let Some(result) = lock(&slot).take() {
                return result.map_err(|e| Connected::Failed(e.kind()));
            }
            let Some(timeout) = time_left(deadline) else {
                return Err(Connected::TimedOut);
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Connected::Failed(e.kind())),
            }
        }
    }
}

/// How long a poll may wait for `deadline`: `None` once it has passed, `Some(None)` without
/// one. Rounded up to a millisecond so a sub-millisecond wait does not spin.
fn time_left(deadline: Option<Instant>) -> Option<Option<Duration>> {
    match deadline {
        None => Some(None),
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| Some(left.max(Duration::from_millis(1))))
        }
    }
}

fn wait_connected(
    mut pending: mio::net::TcpStream,
    deadline: Option<Instant>,
    control: &RunState,
    poll: &mut Poll,
) -> Connected {
    if let Err(e) = poll
        .registry()
        .register(&mut pending, CONNECTING, Interest::WRITABLE)
    {
        return Connected::Failed(e.kind());
    }
    let mut events = Events::with_capacity(4);
    let connected = loop {
        if control.stop_requested() {
            break Err(Connected::Stopped);
        }
        let Some(timeout) = time_left(deadline) else {
            break Err(Connected::TimedOut);
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break Err(Connected::Failed(e.kind()));
        }
        if !events.iter().any(|e| e.token() == CONNECTING) {
            continue;
        }
        // Writable: the connect finished, one way or the other (mio's documented check).
        match pending.take_error() {
            Ok(Some(e)) | Err(e) => break Err(Connected::Failed(e.kind())),
            Ok(None) => {}
        }
        match pending.peer_addr() {
            Ok(_) => break Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => continue,
            Err(e) => break Err(Connected::Failed(e.kind())),
        }
    };
    let _ = poll.registry().deregister(&mut pending);
    match connected {
        Ok(()) => {
            let socket = TcpStream::from(pending);
            // Reads and writes block from here on (with a read timeout).
            match socket.set_nonblocking(false) {
                Ok(()) => {
                    let _ = socket.set_nodelay(true);
                    Connected::Up(socket)
                }
                Err(e) => Connected::Failed(e.kind()),
            }
        }
        Err(other) => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_timeouts_never_overshoot_and_rarely_change() {
        for ms in [1, 999, 2_000, 2_001, 2_999, 89_999, 90_000] {
            let left = Duration::from_millis(ms);
            let timeout = coarse_timeout(left);
            assert!(
                timeout <= left && !timeout.is_zero(),
                "{left:?} -> {timeout:?}"
            );
            assert!(
                left - timeout < Duration::from_secs(1),
                "{left:?} -> {timeout:?}"
            );
        }
        // A stall deadline about 90 s out, read against again and again for half a second:
        // the socket's timeout is set once.
        let timeouts: std::collections::HashSet<_> = (0..500)
            .map(|ms| coarse_timeout(Duration::from_millis(89_900 - ms)))
            .collect();
        assert_eq!(timeouts.len(), 1);
    }
}
