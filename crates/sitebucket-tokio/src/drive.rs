//! [`drive`]: the async loop that runs one [`SiteStream`] over tokio's sockets and timers.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{pending, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use sitebucket_proto::{Action, Outcome, ReadBuffer, StreamEvent};
use sitebucket_proto::{Parser, SiteStream};
use sitebucket_thread::{Control, Resolver};

use crate::connect::connect;

/// Work between two yields to the runtime while bytes keep arriving, at most: reads are
/// handed back after this long even before [`Yield::Every`]'s count (a slow parser, a
/// debug build), so the runtime's other tasks and a cancellation wait no longer.
const YIELD_AFTER: Duration = Duration::from_millis(2);
/// Bytes asked of the socket per read: the size of a read block.
const READ_BUFFER: usize = 64 * 1024;
/// Reads shorter than this are copied out rather than handed over in their block.
const COPY_BELOW: usize = 8 * 1024;

thread_local! {
    /// The read buffer of every stream on this runtime thread. A read borrows it only
    /// between a socket's readiness and the end of the (non-blocking) read, never across an
    /// await, so one buffer serves all the thread's streams, as a mio loop's does: an idle
    /// stream holds no block of its own.
    static SHARED_BUFFER: RefCell<ReadBuffer> =
        RefCell::new(ReadBuffer::new(READ_BUFFER, COPY_BELOW));
}

/// A connection attempt in progress: resolve the host, then try its addresses in turn.
type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// An open connection.
struct Link {
    socket: TcpStream,
    /// What the core asked to send and the socket has not taken yet.
    outbox: VecDeque<Bytes>,
    /// The peer closed (or broke) the read side: do not read again.
    read_closed: bool,
    /// A write failed: drop what the core sends from now on and let the read side, or the
    /// core's stall deadline, tell how the connection ended.
    write_failed: bool,
}

/// What ended one wait.
enum Wake {
    /// The stop was notified (the flag is read at the top of the loop).
    Stop,
    /// The core's deadline came.
    Deadline,
    /// The connection attempt finished.
    Connected(io::Result<TcpStream>),
    /// A read finished (empty is the peer's close).
    Read(io::Result<Bytes>),
    /// A write finished.
    Wrote(io::Result<usize>),
}

/// Removes the driver's waker from the [`Control`] when the run ends or its future is dropped.
struct WakerGuard<'a>(&'a Control);

impl Drop for WakerGuard<'_> {
    fn drop(&mut self) {
        self.0.clear_waker();
    }
}

/// Runs `stream` until it finishes, handing each message to `parser`.
///
/// The loop follows the core's drain contract: it carries out every [`Action`] until
/// `Wait(deadline)`, publishes the status to `control`, then waits for whichever comes first
/// of a stop request ([`Control::request_stop`]), the connection attempt, bytes from the
/// socket, room to write, or the deadline. On a stop it calls [`SiteStream::disconnect`],
/// drains, closes the socket and returns [`Outcome::Stopped`]. It makes no protocol
/// decision: timeouts, retries and backoff are all the core's.
///
/// Reads go into 64 KiB blocks ([`ReadBuffer`], one per runtime thread, shared by every
/// stream on it) handed to the core without a copy, so each message the parser gets is a
/// slice of a block, which it keeps alive while it lives.
///
/// While bytes keep arriving it yields to the runtime after every 16 reads (at most 1 MiB)
/// or 2 ms of work, whichever comes first, so the runtime's other tasks, its timers and a
/// cancellation get their turn. (Not on
/// tokio's cooperative budget alone: it counts a read of 64 KiB, a millisecond of framing
/// and parsing, as one of its 128 units, so a flood would hold the thread for 100 ms at a
/// time.) It never blocks the thread it runs on: host names are looked up on a thread of
/// their own (see [`drive_with`]).
///
/// It must run inside a tokio runtime with I/O and time enabled (`enable_all`), on either
/// flavour; polled outside any runtime it ends at once with [`Outcome::InvalidConfig`]
/// saying so. The future is `Send`; dropping it (or aborting its task) closes the socket at
/// once and abandons a lookup in progress.
///
/// Host names go to the system resolver: see [`drive_with`].
pub async fn drive(stream: &mut SiteStream, parser: &mut dyn Parser, control: &Control) -> Outcome {
    drive_with(stream, parser, control, &Resolver::system()).await
}

/// [`drive`] with host names looked up by `resolver`. Each lookup runs on a short-lived
/// thread of its own ([`Resolver::spawn_lookup`]) that hands its answer to a oneshot channel
/// the loop awaits like the connect that follows it, raced against a stop and the core's
/// deadline: a slow lookup blocks neither the runtime nor a stop, and one abandoned (stop,
/// connect timeout) ends on its own with its answer dropped. IP literals need no lookup. The
/// addresses are tried in turn; the last one's error is the failed connect's.
pub async fn drive_with(
    stream: &mut SiteStream,
    parser: &mut dyn Parser,
    control: &Control,
    resolver: &Resolver,
) -> Outcome {
    drive_yielding(stream, parser, control, resolver, Yield::Every(16)).await
}

/// When the loop hands the runtime back while bytes keep arriving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Yield {
    /// After this many reads in a row (at least 1): `Every(1)` lets whoever polls the loop
    /// see each read's messages at once.
    Every(u32),
}

/// [`drive_with`], yielding to the runtime as `yielding` says.
pub(crate) async fn drive_yielding(
    stream: &mut SiteStream,
    parser: &mut dyn Parser,
    control: &Control,
    resolver: &Resolver,
    yielding: Yield,
) -> Outcome {
    if tokio::runtime::Handle::try_current().is_err() {
        // Tokio's sockets and timers would panic: say what is wrong instead.
        let outcome = Outcome::InvalidConfig(
            "sitebucket-tokio's futures must be polled inside a tokio runtime (with I/O and \
             time enabled): run them in a task, or under Runtime::block_on"
                .into(),
        );
        control.publish(stream);
        return outcome;
    }
    let stop = Arc::new(Notify::new());
    let notify = stop.clone();
    // `notify_one` keeps a permit when nobody waits, so a stop between two waits is kept.
    control.set_waker(Arc::new(move || notify.notify_one()));
    let _guard = WakerGuard(control);
    let Yield::Every(reads_per_yield) = yielding;
    let outcome = run_loop(
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

async fn run_loop(
    stream: &mut SiteStream,
    parser: &mut dyn Parser,
    control: &Control,
    resolver: &Resolver,
    stop: &Notify,
    reads_per_yield: u32,
) -> Outcome {
    let mut reads_since_yield = 0;
    let mut last_yield = Instant::now();
    let mut connecting: Option<Connecting> = None;
    let mut link: Option<Link> = None;
    let timer = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(timer);
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
                    connecting = Some(Box::pin(connect(resolver.clone(), host, port)));
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
        control.publish(stream);

        // The stall deadline moves with every read: re-arm the timer only when the deadline
        // comes sooner than the one set. A later deadline is reached through an early
        // wake-up, which the core ignores, after which the timer is set again.
        if armed.is_none_or(|at| deadline < at) {
            timer
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
            armed = Some(deadline);
        }
        let wake = tokio::select! {
            biased;
            () = stop.notified() => Wake::Stop,
            wake = wait_io(&mut connecting, &mut link) => wake,
            () = timer.as_mut() => Wake::Deadline,
        };

        let now = Instant::now();
        match wake {
            Wake::Stop => {}
            Wake::Deadline => {
                armed = None;
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
                reads_since_yield += 1;
                if reads_since_yield >= reads_per_yield
                    || now.saturating_duration_since(last_yield) >= YIELD_AFTER
                {
                    reads_since_yield = 0;
                    tokio::task::yield_now().await;
                    last_yield = Instant::now();
                }
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
                                // `write` took `n` bytes of `front`, so `n <= front.len()`.
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

/// Waits on the socket: the connection attempt if there is one, else a read (unless the
/// peer closed) and, with bytes to send, a write. Pending forever with no socket.
async fn wait_io(connecting: &mut Option<Connecting>, link: &mut Option<Link>) -> Wake {
    if let Some(attempt) = connecting {
        return Wake::Connected(attempt.await);
    }
    let Some(link) = link else {
        return pending().await;
    };
    let (socket, outbox, read_closed) = (&link.socket, &link.outbox, link.read_closed);
    let read = async {
        if read_closed {
            return pending().await;
        }
        loop {
            if let Err(e) = socket.readable().await {
                return Wake::Read(Err(e));
            }
            match read_shared(socket) {
                // A spurious readiness: wait again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Wake::Read(result),
            }
        }
    };
    let write = async {
        let Some(bytes) = outbox.front() else {
            return pending().await;
        };
        loop {
            if let Err(e) = socket.writable().await {
                return Wake::Wrote(Err(e));
            }
            match socket.try_write(bytes) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Wake::Wrote(result),
            }
        }
    };
    tokio::select! {
        biased;
        wake = read => wake,
        wake = write => wake,
    }
}

/// One non-blocking read of `socket` into this thread's shared [`ReadBuffer`], handed out
/// as [`Bytes`] (empty: the peer closed).
fn read_shared(socket: &TcpStream) -> io::Result<Bytes> {
    SHARED_BUFFER.with_borrow_mut(|buf| {
        let n = socket.try_read(buf.spare())?;
        Ok(buf.filled(n))
    })
}

/// Wall-clock seconds for the request's OAuth timestamp (0 if the clock is before 1970).
pub(crate) fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
