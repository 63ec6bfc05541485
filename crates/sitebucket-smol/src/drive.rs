//! [`drive`]: the async loop that runs one [`SiteStream`] over smol's sockets and timers.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_channel::Receiver;
use async_io::Timer;
use async_net::TcpStream;
use bytes::{Buf, Bytes};
use futures_lite::future::{or, pending, yield_now};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use sitebucket_proto::{Action, Outcome, ReadBuffer, StreamEvent};
use sitebucket_proto::{Parser, SiteStream};
use sitebucket_thread::{Control, Resolver};

use crate::connect::connect;

/// Reads in a row between two yields to the executor.
const READS_PER_YIELD: u32 = 16;
/// Bytes asked of the socket per read: the size of a read block.
const READ_BUFFER: usize = 64 * 1024;
/// Reads shorter than this are copied out rather than handed over in their block.
const COPY_BELOW: usize = 8 * 1024;

/// A connection attempt in progress: resolve the host, then try its addresses in turn.
type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// An open connection. The socket is held twice (smol's `TcpStream` is a shared handle) so a
/// read and a write can wait at the same time.
struct Link {
    reader: TcpStream,
    writer: TcpStream,
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
    /// The stop channel fired (the flag is read at the top of the loop).
    Stop,
    /// The core's deadline came.
    Deadline,
    /// The connection attempt finished.
    Connected(io::Result<TcpStream>),
    /// A read finished (`Ok(0)` is the peer's close).
    Read(io::Result<usize>),
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
/// of the connection attempt, bytes from the socket, room to write, the deadline, or a stop
/// request ([`Control::request_stop`]). On a stop it calls [`SiteStream::disconnect`],
/// drains, closes the socket and returns [`Outcome::Stopped`]. It makes no protocol decision:
/// timeouts, retries and backoff are all the core's.
///
/// Reads go into 64 KiB blocks ([`ReadBuffer`]) handed to the core without a copy, so each
/// message the parser gets is a slice of a block, which it keeps alive while it lives (the
/// block is read into again once its messages are all dropped).
///
/// While bytes keep arriving, it yields to the executor after every 16 reads (1 MiB), so the
/// other tasks of the executor get to run. (Each yield costs `smol::block_on` a round of the
/// reactor, a few system calls: once per read, that was a third of the driver's CPU.)
///
/// Host names go to the system resolver: see [`drive_with`].
///
/// Any smol-compatible executor can run it (`smol::block_on`, a `smol::Executor` task).
/// Dropping the future closes the socket at once.
pub async fn drive(stream: &mut SiteStream, parser: &mut dyn Parser, control: &Control) -> Outcome {
    drive_with(stream, parser, control, &Resolver::system()).await
}

/// [`drive`] with host names looked up by `resolver`. Each lookup runs on a short-lived
/// thread of its own ([`Resolver::spawn_lookup`]) whose answer the loop awaits like the
/// connect that follows it, raced against a stop and the core's deadline: a slow lookup
/// blocks neither the executor nor a stop, and one abandoned (stop, connect timeout) ends on
/// its own with its answer dropped. IP literals need no lookup. The addresses are tried in
/// turn; the last one's error is the failed connect's.
pub async fn drive_with(
    stream: &mut SiteStream,
    parser: &mut dyn Parser,
    control: &Control,
    resolver: &Resolver,
) -> Outcome {
    drive_yielding(stream, parser, control, resolver, READS_PER_YIELD).await
}

/// [`drive_with`], yielding to the executor after every `reads_per_yield` reads (at least 1).
pub(crate) async fn drive_yielding(
    stream: &mut SiteStream,
    parser: &mut dyn Parser,
    control: &Control,
    resolver: &Resolver,
    reads_per_yield: u32,
) -> Outcome {
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    // A full channel already holds a pending stop, so a failed `try_send` loses nothing.
    control.set_waker(Arc::new(move || {
        let _ = stop_tx.try_send(());
    }));
    let _guard = WakerGuard(control);
    let outcome = run_loop(
        stream,
        parser,
        control,
        resolver,
        &stop_rx,
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
    stop: &Receiver<()>,
    reads_per_yield: u32,
) -> Outcome {
    let mut buf = ReadBuffer::new(READ_BUFFER, COPY_BELOW);
    let mut reads_since_yield = 0;
    let mut connecting: Option<Connecting> = None;
    let mut link: Option<Link> = None;
    let mut timer = Timer::never();
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

        // Setting a timer costs the reactor several system calls, and the stall deadline
        // moves with every read: set it only when the deadline comes sooner than the one
        // set. A later deadline is reached through an early wake-up, which the core ignores,
        // after which the timer is set again.
        if armed.is_none_or(|at| deadline < at) {
            timer.set_at(deadline);
            armed = Some(deadline);
        }
        let wake = or(
            async {
                match stop.recv().await {
                    Ok(()) => Wake::Stop,
                    // Our waker was replaced and dropped: no stop can come through here.
                    Err(_) => pending().await,
                }
            },
            or(wait_io(&mut connecting, &mut link, &mut buf), async {
                (&mut timer).await;
                Wake::Deadline
            }),
        )
        .await;

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
                            reader: socket.clone(),
                            writer: socket,
                            outbox: VecDeque::new(),
                            read_closed: false,
                            write_failed: false,
                        });
                        stream.handle_connected(now, unix_secs());
                    }
                    Err(e) => stream.handle_connect_failed(now, e.kind()),
                }
            }
            Wake::Read(Ok(n)) if n > 0 => {
                // `n` is at most the room offered: `read` never reports more than it got.
                stream.handle_input_bytes(now, buf.filled(n));
                // Let other tasks (and a `MessageStream`'s consumer) in between reads.
                reads_since_yield += 1;
                if reads_since_yield >= reads_per_yield {
                    reads_since_yield = 0;
                    yield_now().await;
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
                                front.advance(n);
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
async fn wait_io(
    connecting: &mut Option<Connecting>,
    link: &mut Option<Link>,
    buf: &mut ReadBuffer,
) -> Wake {
    if let Some(attempt) = connecting {
        return Wake::Connected(attempt.await);
    }
    let Some(Link {
        reader,
        writer,
        outbox,
        read_closed,
        ..
    }) = link
    else {
        return pending().await;
    };
    let read = async {
        if *read_closed {
            pending().await
        } else {
            Wake::Read(reader.read(buf.spare()).await)
        }
    };
    let write = async {
        match outbox.front() {
            Some(bytes) => Wake::Wrote(writer.write(bytes).await),
            None => pending().await,
        }
    };
    or(read, write).await
}

/// Wall-clock seconds for the request's OAuth timestamp (0 if the clock is before 1970).
fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
