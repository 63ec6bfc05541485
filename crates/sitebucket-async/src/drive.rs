//! [`drive_with`]: the async loop that runs one [`SiteStream`] over a [`Runtime`]'s sockets
//! and timer.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};

use sitebucket_proto::{Action, Outcome, ReadBuffer, StreamEvent};
use sitebucket_proto::{Parser, SiteStream};
use sitebucket_thread::time::unix_secs;
use sitebucket_thread::{GateWaiter, Resolver, RunState, READ_BUFFER_BYTES, READ_COPY_BELOW_BYTES};

use crate::connect::connect;
use crate::runtime::Runtime;
use crate::signal::Stop;

/// Reads in a row between two yields to the executor while bytes keep arriving.
pub(crate) const READS_PER_YIELD: u32 = 16;
/// Work between two yields to the executor while bytes keep arriving, at most: reads are
/// handed back after this long even before [`READS_PER_YIELD`] (a slow parser, a debug
/// build), so the executor's other tasks and a cancellation wait no longer.
const YIELD_AFTER: Duration = Duration::from_millis(2);

thread_local! {
    /// The read buffer of every stream polled on this thread. A read borrows it only for
    /// one non-blocking read inside a poll, never across an await, so one buffer serves all
    /// the thread's streams, as a mio loop's does: an idle stream holds no block of its own.
    static SHARED_BUFFER: RefCell<ReadBuffer> =
        RefCell::new(ReadBuffer::new(READ_BUFFER_BYTES, READ_COPY_BELOW_BYTES));
}

/// A connection attempt in progress: resolve the host, then try its addresses in turn.
type Connecting<S> = Pin<Box<dyn Future<Output = io::Result<S>> + Send>>;

/// An open connection.
struct Link<S> {
    socket: S,
    /// What the core asked to send and the socket has not taken yet.
    outbox: VecDeque<Bytes>,
    /// The peer closed (or broke) the read side: do not read again.
    read_closed: bool,
    /// A write failed: drop what the core sends from now on and let the read side, or the
    /// core's stall deadline, tell how the connection ended.
    write_failed: bool,
}

/// What ended one wait.
enum Wake<S> {
    /// The stop was raised (the flag is read at the top of the loop).
    Stop,
    /// The core's deadline came.
    Deadline,
    /// The connection attempt finished.
    Connected(io::Result<S>),
    /// A read finished (empty is the peer's close).
    Read(io::Result<Bytes>),
    /// A write finished.
    Wrote(io::Result<usize>),
}

/// Removes the loop's waker from the [`RunState`] when the run ends or its future is dropped.
struct WakerGuard<'a>(&'a RunState);

impl Drop for WakerGuard<'_> {
    fn drop(&mut self) {
        self.0.clear_waker();
    }
}

/// Runs `stream` over the runtime `R` until it finishes, handing each message to `parser`
/// and looking host names up with `resolver`.
///
/// The loop follows the core's drain contract: it carries out every [`Action`] until
/// `Wait(deadline)`, publishes the status to `control`, then waits for whichever comes first
/// of a stop request ([`RunState::request_stop`]), the connection attempt, bytes from the
/// socket, room to write, or the deadline (in that order when several are ready; a deadline
/// that comes while the runtime reports no bytes first reads the socket itself,
/// [`Runtime::try_read`], and hands the core what it finds, bytes or the peer's close,
/// instead: a readiness the reactor reports late never turns data into a stall). On a stop
/// it calls [`SiteStream::disconnect`], drains, closes the socket and returns
/// [`Outcome::Stopped`]. It makes no protocol decision: timeouts, retries and backoff are
/// all the core's.
///
/// Reads go into 64 KiB blocks ([`ReadBuffer`], one per thread, shared by every stream
/// polled on it) handed to the core without a copy, so each message the parser gets is a
/// slice of a block, which it keeps alive while it lives.
///
/// While bytes keep arriving it yields to the executor after every 16 reads (at most 1 MiB)
/// or 2 ms of work since it last gave the thread back (a yield, or a wait that was pending),
/// whichever comes first, so the executor's other tasks, its timers and a cancellation get
/// their turn. It yields once the core has drained the last read, its messages handed to
/// the parser: no read's block is held across a yield, so the shared buffer recycles its
/// blocks however many streams take turns on the thread.
///
/// If `control` has a [`ReadGate`](sitebucket_thread::ReadGate)
/// ([`RunState::set_read_gate`]), the loop reads only while the gate is open: while it is
/// paused, the loop waits for the stop, the connection attempt, room to write, the core's
/// deadline and the gate's resume, but reads nothing. The core's stall timer therefore runs
/// on, and a stream silent for its stall timeout is reconnected by the core as any stalled
/// stream is; the thread is never blocked. The gate is looked at before each read: a read
/// begun is handed to the core whole, before the yield.
///
/// Each lookup runs on a short-lived thread of its own ([`Resolver::spawn_lookup`]) whose
/// answer the loop awaits like the connect that follows it, raced against a stop and the
/// core's deadline: a slow lookup blocks neither the executor nor a stop, and one abandoned
/// (stop, connect timeout) ends on its own with its answer dropped. IP literals need no
/// lookup. The addresses are tried in turn; the last one's error is the failed connect's.
///
/// If [`Runtime::check_context`] refuses the calling context, the run ends at once with
/// [`Outcome::InvalidConfig`] giving its reason. Dropping the future closes the socket at
/// once and abandons a lookup in progress.
pub async fn drive_with<R: Runtime>(
    stream: &mut SiteStream,
    parser: &mut dyn Parser,
    control: &RunState,
    resolver: &Resolver,
) -> Outcome {
    drive_yielding::<R>(stream, parser, control, resolver, READS_PER_YIELD).await
}

/// [`drive_with`], yielding to the executor after every `reads_per_yield` reads (at least
/// 1): 1 lets whoever polls the loop see each read's messages at once.
pub(crate) async fn drive_yielding<R: Runtime>(
    stream: &mut SiteStream,
    parser: &mut dyn Parser,
    control: &RunState,
    resolver: &Resolver,
    reads_per_yield: u32,
) -> Outcome {
    if let Err(why) = R::check_context() {
        control.publish(stream);
        return Outcome::InvalidConfig(why);
    }
    let stop = Arc::new(Stop::default());
    let raise = stop.clone();
    // A raise while the loop is busy is kept for its next wait.
    control.set_waker(Arc::new(move || raise.raise()));
    let _guard = WakerGuard(control);
    let outcome = run_loop::<R>(
        stream,
        parser,
        control,
        resolver,
        &stop,
        reads_per_yield.max(1),
    )
    .await;
    control.publish(stream);
    outcome
}

async fn run_loop<R: Runtime>(
    stream: &mut SiteStream,
    parser: &mut dyn Parser,
    control: &RunState,
    resolver: &Resolver,
    stop: &Stop,
    reads_per_yield: u32,
) -> Outcome {
    // Reads since the loop last gave the thread back (a yield, or a wait that was pending),
    // and when that was.
    let mut reads_since_yield = 0;
    let mut last_yield = Instant::now();
    // A yield is owed once the core has drained the last read.
    let mut yield_due = false;
    // The deadline came but a read found bytes first: the core judges it once they are in.
    let mut timeout_owed = false;
    let gate: Option<GateWaiter> = control.read_gate().map(|gate| gate.waiter());
    let mut connecting: Option<Connecting<R::Socket>> = None;
    let mut link: Option<Link<R::Socket>> = None;
    let mut timer = R::timer(Instant::now());
    // The deadline `timer` is set to, until it fires.
    let mut armed: Option<Instant> = None;
    loop {
        if control.stop_requested() {
            // A no-op once the stream has finished.
            stream.disconnect();
        }
        let mut now = Instant::now();
        let deadline = loop {
            let action = stream.poll_action(now);
            // The events after a read come in a burst: one clock reading serves them all.
            let event = matches!(action, Action::Event(_));
            match action {
                Action::Connect { host, port, .. } => {
                    connecting = Some(Box::pin(connect::<R>(resolver.clone(), host, port)));
                }
                Action::Transmit(bytes) => {
                    if let Some(link) = link.as_mut().filter(|l| !l.write_failed) {
                        link.outbox.push_back(bytes);
                    }
                }
                Action::Event(StreamEvent::Message(message)) => parser.parse(message),
                Action::Event(event) => control.observe(&event),
                Action::Close => {
                    connecting = None;
                    link = None;
                }
                Action::Wait(deadline) => break deadline,
                Action::Finished(outcome) => return outcome,
            }
            if !event {
                now = Instant::now();
            }
        };
        if std::mem::take(&mut timeout_owed) {
            // Whatever else is due (a rate-limit reset, trust earned) is not put off by a
            // socket that always has bytes; a stall no longer is, the bytes having moved it.
            stream.handle_timeout(Instant::now());
            continue;
        }
        control.publish(stream);
        // Yield only now, with the read's messages handed out and the rest of it copied by
        // the core: a read's block is never held across a yield, so the thread's shared
        // buffer recycles its blocks however many streams take turns on it.
        if yield_due {
            yield_due = false;
            R::yield_now().await;
            reads_since_yield = 0;
            last_yield = Instant::now();
        }

        // Setting a timer can cost the reactor system calls, and the stall deadline moves
        // with every read: set it only when the deadline comes sooner than the one set. A
        // later deadline is reached through an early wake-up, which the core ignores, after
        // which the timer is set again.
        if armed.is_none_or(|at| deadline < at) {
            R::reset_timer(&mut timer, deadline);
            armed = Some(deadline);
        }
        let (mut waited, mut fired) = (false, false);
        let wake = poll_fn(|cx| {
            if stop.poll(cx).is_ready() {
                return Poll::Ready(Wake::Stop);
            }
            if let Poll::Ready(wake) = poll_io::<R>(cx, &mut connecting, &mut link, gate.as_ref()) {
                return Poll::Ready(wake);
            }
            if R::poll_timer(&mut timer, cx).is_ready() {
                fired = true;
                // The read below is one like any other: it waits for the task's budget, so
                // a flood whose deadlines keep coming still gives the thread back.
                let budget = std::task::ready!(R::poll_budget(cx));
                R::made_progress(budget);
                // The runtime's readiness can lag the socket (a readiness event still
                // queued in its reactor): ask the socket itself before the deadline wins.
                return Poll::Ready(match connecting {
                    Some(_) => Wake::Deadline,
                    // A paused read gate holds this read too: the deadline is the core's.
                    None if gate.as_ref().is_some_and(|g| g.gate().is_paused()) => Wake::Deadline,
                    None => read_before_deadline::<R>(&mut link),
                });
            }
            waited = true;
            Poll::Pending
        })
        .await;

        let now = Instant::now();
        if fired {
            // Set again before it is polled again, whatever the wait ended with.
            armed = None;
            timeout_owed = !matches!(wake, Wake::Deadline);
        }
        if waited {
            // The wait gave the thread back: the work since the last yield starts again.
            reads_since_yield = 0;
            last_yield = now;
        }
        match wake {
            Wake::Stop => {}
            Wake::Deadline => {
                stream.handle_timeout(now);
            }
            Wake::Connected(result) => {
                connecting = None;
                match result {
                    Ok(socket) => {
                        link = Some(Link {
                            socket,
                            outbox: VecDeque::new(),
                            read_closed: false,
                            write_failed: false,
                        });
                        stream.handle_connected(now, unix_secs());
                    }
                    Err(e) => stream.handle_connect_failed(now, e.kind()),
                }
            }
            Wake::Read(Ok(bytes)) if !bytes.is_empty() => {
                stream.handle_input_bytes(now, bytes);
                // Let other tasks (and a `Messages`' consumer) in between reads, once this
                // read is drained (at the top of the loop).
                reads_since_yield += 1;
                yield_due = reads_since_yield >= reads_per_yield
                    || now.saturating_duration_since(last_yield) >= YIELD_AFTER;
            }
            Wake::Read(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Wake::Read(_) => {
                if let Some(link) = &mut link {
                    link.read_closed = true;
                }
                stream.handle_eof(now);
            }
            Wake::Wrote(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Wake::Wrote(result) => {
                if let Some(link) = &mut link {
                    match result {
                        Ok(n) if n > 0 => {
                            if let Some(front) = link.outbox.front_mut() {
                                // The write took `n` bytes of `front`, so `n <= front.len()`.
                                front.advance(n.min(front.len()));
                                if front.is_empty() {
                                    link.outbox.pop_front();
                                }
                            }
                        }
                        _ => {
                            link.write_failed = true;
                            link.outbox.clear();
                        }
                    }
                }
            }
        }
    }
}

/// Polls the socket: the connection attempt if there is one, else a read (unless the peer
/// closed, or `gate` is paused: then the task waits for its resume) and, with bytes to send,
/// a write, in that order. Pending with no socket.
fn poll_io<R: Runtime>(
    cx: &mut Context<'_>,
    connecting: &mut Option<Connecting<R::Socket>>,
    link: &mut Option<Link<R::Socket>>,
    gate: Option<&GateWaiter>,
) -> Poll<Wake<R::Socket>> {
    if let Some(attempt) = connecting {
        return attempt.as_mut().poll(cx).map(Wake::Connected);
    }
    let Some(link) = link else {
        return Poll::Pending;
    };
    if !link.read_closed && gate.is_none_or(|gate| gate.poll_open(cx).is_ready()) {
        if let Poll::Ready(read) = poll_read_shared::<R>(&mut link.socket, cx) {
            return Poll::Ready(Wake::Read(read));
        }
    }
    match link.outbox.front() {
        Some(bytes) => R::poll_write(&mut link.socket, cx, bytes).map(Wake::Wrote),
        None => Poll::Pending,
    }
}

/// What a wait whose deadline came ends with: a read that finds bytes (or the peer's close)
/// the runtime had not reported yet, so the core sees them before its deadline, else the
/// deadline itself. The read asks the socket directly ([`Runtime::try_read`]): bytes that
/// came before the deadline are never lost to a stall a late readiness would call.
fn read_before_deadline<R: Runtime>(link: &mut Option<Link<R::Socket>>) -> Wake<R::Socket> {
    let Some(link) = link.as_mut().filter(|l| !l.read_closed) else {
        return Wake::Deadline;
    };
    let read = SHARED_BUFFER
        .with_borrow_mut(|buf| R::try_read(&mut link.socket, buf.spare()).map(|n| buf.filled(n)));
    match read {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Wake::Deadline
        }
        read => Wake::Read(read),
    }
}

/// One read of `socket` into this thread's shared [`ReadBuffer`], handed out as [`Bytes`]
/// (empty: the peer closed).
fn poll_read_shared<R: Runtime>(
    socket: &mut R::Socket,
    cx: &mut Context<'_>,
) -> Poll<io::Result<Bytes>> {
    SHARED_BUFFER.with_borrow_mut(|buf| {
        R::poll_read(socket, cx, buf.spare()).map(|read| read.map(|n| buf.filled(n)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use futures_lite::future;
    use sitebucket_proto::StreamError;
    use sitebucket_proto::{Config, Credentials};

    use crate::fake::{Fake, Net, Peer};

    /// A stream to `addr` that gives up after one failed attempt, with `timeout` for its
    /// connect and stall deadlines.
    fn stream_to(addr: SocketAddr, timeout: Duration) -> SiteStream {
        let config = Config::builder([1], Credentials::new("ck", "cs", "t", "ts"))
            .url(format!("http://{addr}/1.1/site.json"))
            .connect_timeout(timeout)
            .stall_timeout(timeout)
            .retry_limit(Some(1))
            .rng_seed(1)
            .build()
            .unwrap();
        SiteStream::new(config)
    }

    /// Runs `stream` on the fake runtime: the outcome and the messages.
    fn run(stream: &mut SiteStream, control: &RunState) -> (Outcome, Vec<Bytes>) {
        let messages = Mutex::new(Vec::new());
        let mut parser = |message: Bytes| messages.lock().unwrap().push(message);
        let outcome = future::block_on(drive_with::<Fake>(
            stream,
            &mut parser,
            control,
            &Resolver::system(),
        ));
        (outcome, messages.into_inner().unwrap())
    }

    fn gave_up(outcome: &Outcome) -> &StreamError {
        match outcome {
            Outcome::GaveUp {
                attempts: 1,
                last_error,
            } => last_error,
            other => panic!("expected GaveUp after one attempt, got {other:?}"),
        }
    }

    #[test]
    fn a_stop_while_waiting_on_a_silent_peer_ends_the_run_stopped() {
        let net = Net::new();
        let mut stream = stream_to(net.listen(Peer::Silent), Duration::from_secs(60));
        let control = RunState::new();
        let stopper = control.clone();
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            stopper.request_stop();
        });
        let (outcome, messages) = run(&mut stream, &control);
        thread.join().unwrap();
        assert_eq!(outcome, Outcome::Stopped);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the stop was not seen"
        );
        assert!(messages.is_empty());
        let sent = net.sent();
        assert_eq!(sent.len(), 1, "one connection");
        assert!(
            sent[0].starts_with(b"GET /1.1/site.json") && sent[0].ends_with(b"\r\n\r\n"),
            "the whole request went out, in parts: {:?}",
            String::from_utf8_lossy(&sent[0])
        );
        assert!(!control.status().running);
    }

    #[test]
    fn a_stop_before_the_run_is_kept() {
        let net = Net::new();
        let mut stream = stream_to(net.listen(Peer::Silent), Duration::from_secs(60));
        let control = RunState::new();
        control.request_stop();
        let (outcome, _) = run(&mut stream, &control);
        assert_eq!(outcome, Outcome::Stopped);
    }

    #[test]
    fn the_cores_deadline_fires_the_timer() {
        let net = Net::new();
        let timeout = Duration::from_millis(100);
        let mut stream = stream_to(net.listen(Peer::Silent), timeout);
        let started = Instant::now();
        let (outcome, _) = run(&mut stream, &RunState::new());
        assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
        let error = gave_up(&outcome);
        assert!(error.to_string().contains("no data"), "{error}");
    }

    #[test]
    fn a_read_of_zero_is_the_peers_close() {
        let net = Net::new();
        let mut stream = stream_to(net.listen(Peer::Closes), Duration::from_secs(60));
        let (outcome, messages) = run(&mut stream, &RunState::new());
        gave_up(&outcome);
        assert!(messages.is_empty());
        assert_eq!(net.sent().len(), 1);
    }

    #[test]
    fn a_refused_connect_is_a_failed_attempt() {
        let net = Net::new();
        let mut stream = stream_to(net.unused(), Duration::from_secs(60));
        let (outcome, _) = run(&mut stream, &RunState::new());
        let error = gave_up(&outcome);
        assert!(error.to_string().contains("refused"), "{error}");
        assert_eq!(net.attempts().len(), 1);
    }

    /// A peer that answers with a head and two messages, then closes.
    fn two_message_peer() -> Peer {
        Peer::Replies(two_messages())
    }

    #[test]
    fn a_paused_gate_reads_nothing_and_the_cores_stall_timer_still_fires() {
        let net = Net::new();
        let timeout = Duration::from_millis(100);
        let mut stream = stream_to(net.listen(two_message_peer()), timeout);
        let control = RunState::new();
        let gate = sitebucket_thread::ReadGate::new();
        gate.pause();
        control.set_read_gate(gate.clone());
        let started = Instant::now();
        // A message read would stop the run (the peer answers every reconnect alike).
        let stopper = control.clone();
        let messages = Mutex::new(Vec::new());
        let mut parser = |message: Bytes| {
            messages.lock().unwrap().push(message);
            stopper.request_stop();
        };
        let outcome = future::block_on(drive_with::<Fake>(
            &mut stream,
            &mut parser,
            &control,
            &Resolver::system(),
        ));
        let messages = messages.into_inner().unwrap();
        // Nothing was read (not even the peer's close), so the core's stall deadline ended
        // the connection, and the request still went out.
        assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
        let error = gave_up(&outcome);
        assert!(matches!(error, StreamError::Stall(_)), "{error}");
        assert!(messages.is_empty(), "{messages:?}");
        assert!(net.sent()[0].starts_with(b"GET /1.1/site.json"));
        assert_eq!(gate.waiting(), 0, "the run left no waker behind");
    }

    #[test]
    fn a_resumed_gate_lets_the_waiting_run_read() {
        let net = Net::new();
        let mut stream = stream_to(net.listen(two_message_peer()), Duration::from_secs(60));
        let control = RunState::new();
        let gate = sitebucket_thread::ReadGate::new();
        gate.pause();
        control.set_read_gate(gate.clone());
        let resumer = gate.clone();
        let paused = Duration::from_millis(100);
        let thread = std::thread::spawn(move || {
            std::thread::sleep(paused);
            resumer.resume();
        });
        let started = Instant::now();
        let stopper = control.clone();
        let messages = Mutex::new(Vec::new());
        let mut parser = |message: Bytes| {
            let mut messages = messages.lock().unwrap();
            messages.push(message);
            if messages.len() == 2 {
                stopper.request_stop();
            }
        };
        let outcome = future::block_on(drive_with::<Fake>(
            &mut stream,
            &mut parser,
            &control,
            &Resolver::system(),
        ));
        thread.join().unwrap();
        assert_eq!(outcome, Outcome::Stopped);
        assert!(started.elapsed() >= paused, "read before the resume");
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(
            messages.into_inner().unwrap(),
            [&b"{\"a\":1}"[..], &b"{\"b\":2}"[..]]
        );
    }

    #[test]
    fn a_stop_ends_a_paused_run() {
        let net = Net::new();
        let mut stream = stream_to(net.listen(two_message_peer()), Duration::from_secs(60));
        let control = RunState::new();
        let gate = sitebucket_thread::ReadGate::new();
        gate.pause();
        control.set_read_gate(gate);
        let stopper = control.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            stopper.request_stop();
        });
        let started = Instant::now();
        let (outcome, messages) = run(&mut stream, &control);
        thread.join().unwrap();
        assert_eq!(outcome, Outcome::Stopped);
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(messages.is_empty());
    }

    /// A chunked reply of two messages, `{"a":1}` and `{"b":2}`, and the end of the body.
    fn two_messages() -> Vec<u8> {
        let body = "{\"a\":1}\r\n{\"b\":2}\r\n";
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
        .into()
    }

    /// Runs `stream` on the fake runtime until its parser has two messages, then stops it.
    fn run_until_two(stream: &mut SiteStream) -> (Outcome, Vec<Bytes>, Arc<RunState>) {
        let control = RunState::new();
        let stopper = control.clone();
        let messages = Mutex::new(Vec::new());
        // The peer answers each reconnect the same way: stop once the first answer is in.
        let mut parser = |message: Bytes| {
            let mut messages = messages.lock().unwrap();
            messages.push(message);
            if messages.len() == 2 {
                stopper.request_stop();
            }
        };
        let outcome = future::block_on(drive_with::<Fake>(
            stream,
            &mut parser,
            &control,
            &Resolver::system(),
        ));
        (outcome, messages.into_inner().unwrap(), control)
    }

    #[test]
    fn bytes_in_the_socket_reach_the_core_before_its_deadline() {
        // The reply is in the socket from the start, but the runtime never reports it
        // readable (its readiness event is late): when the stall deadline comes, the loop
        // must read the socket itself and hand the core the bytes, not the deadline.
        let net = Net::new();
        let timeout = Duration::from_millis(100);
        let mut stream = stream_to(net.listen(Peer::Unannounced(two_messages())), timeout);
        let started = Instant::now();
        let (outcome, messages, control) = run_until_two(&mut stream);
        assert_eq!(outcome, Outcome::Stopped, "the deadline won over the bytes");
        assert_eq!(messages, [&b"{\"a\":1}"[..], &b"{\"b\":2}"[..]]);
        assert_eq!(control.status().stats.messages, 2);
        // The bytes were found when the deadline came, not before (nothing reported them).
        assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    }

    #[test]
    fn a_close_in_the_socket_reaches_the_core_before_its_deadline() {
        // Only the head and the close are there, unreported: the core sees the peer's close
        // (a lost connection), not a stall.
        let net = Net::new();
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                    Transfer-Encoding: chunked\r\n\r\n";
        let mut stream = stream_to(
            net.listen(Peer::Unannounced(head.into())),
            Duration::from_millis(100),
        );
        let (outcome, messages) = run(&mut stream, &RunState::new());
        let error = gave_up(&outcome);
        assert!(!error.to_string().contains("no data"), "a stall: {error}");
        assert!(messages.is_empty());
    }

    #[test]
    fn a_read_is_drained_before_the_loop_yields() {
        // With a yield after every read (as `Messages` runs it), the messages of a read
        // reach the parser before the yield, not after it: a yield never holds a read's
        // block, and the peer's close is read only once they are out.
        let net = Net::new();
        let mut stream = stream_to(
            net.listen(Peer::Replies(two_messages())),
            Duration::from_secs(60),
        );
        let control = RunState::new();
        let seen = Mutex::new(Vec::new());
        let mut parser = |message: Bytes| seen.lock().unwrap().push(message);
        let resolver = Resolver::system();
        let mut run = std::pin::pin!(drive_yielding::<Fake>(
            &mut stream,
            &mut parser,
            &control,
            &resolver,
            1,
        ));
        // Poll by hand until the first pending poll that follows a read: the yield.
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut polls = 0;
        while net.sent().is_empty() || net.unread() > 0 {
            assert!(run.as_mut().poll(&mut cx).is_pending(), "no yield");
            polls += 1;
            assert!(polls < 1000, "no read");
        }
        // The poll that read the reply ended in the yield: the messages are out.
        assert_eq!(
            seen.lock().unwrap().len(),
            2,
            "the yield came before the drain"
        );
    }

    #[test]
    fn a_reply_is_read_into_messages() {
        let net = Net::new();
        let mut stream = stream_to(
            net.listen(Peer::Replies(two_messages())),
            Duration::from_secs(60),
        );
        let (outcome, messages, control) = run_until_two(&mut stream);
        assert_eq!(outcome, Outcome::Stopped);
        assert_eq!(messages, [&b"{\"a\":1}"[..], &b"{\"b\":2}"[..]]);
        assert_eq!(control.status().stats.messages, 2);
    }
}
