//! The shared event-loop thread that runs many streams, and the private one-stream loop
//! behind `Driver::run`.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use mio::{Events, Poll, Token, Waker};
use sitebucket_proto::{Action, Outcome, ReadBuffer};
use sitebucket_proto::{Parser, SiteStream};
use sitebucket_thread::sync::lock;
use sitebucket_thread::{
    Finished, Resolver, RunHandle, RunState, READ_BUFFER_BYTES, READ_COPY_BELOW_BYTES,
};

use crate::conn::{Answer, Conn, Lookups, Parts};

/// The token of the loop's `mio::Waker`; streams use their id as token.
const WAKER: Token = Token(usize::MAX);

/// A stream handed to the loop thread.
struct Spawn {
    id: usize,
    stream: SiteStream,
    parser: Box<dyn Parser>,
    control: Arc<RunState>,
    done: mpsc::Sender<Finished>,
}

/// What other threads hand the loop; the loop takes it all after each wake-up.
#[derive(Default)]
struct Inbox {
    spawns: Vec<Spawn>,
    /// Ids of streams whose control asked for a stop.
    stops: Vec<usize>,
    /// Answers of lookups (their token is the stream's id).
    answers: Vec<Answer>,
    /// Every `MioDriver` handle is gone: exit once no stream is left.
    closed: bool,
    /// The loop thread has exited; nothing more is accepted.
    exited: bool,
}

/// The part of a loop that other threads share: its waker, inbox and stream count.
pub(crate) struct Shared {
    waker: Waker,
    inbox: Mutex<Inbox>,
    live: AtomicUsize,
    next_id: AtomicUsize,
}

impl Shared {
    /// Starts a loop thread, which looks host names up with `resolver`.
    pub(crate) fn start(resolver: Resolver) -> io::Result<(Arc<Shared>, JoinHandle<()>)> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let shared = Arc::new(Shared {
            waker,
            inbox: Mutex::new(Inbox::default()),
            live: AtomicUsize::new(0),
            next_id: AtomicUsize::new(0),
        });
        // A weak reference: a lookup that outlives the loop keeps nothing of it alive.
        let weak = Arc::downgrade(&shared);
        let lookups = Lookups {
            resolver,
            deliver: Arc::new(move |answer| {
                if let Some(shared) = weak.upgrade() {
                    lock(&shared.inbox).answers.push(answer);
                    shared.wake();
                }
            }),
        };
        let event_loop = EventLoop {
            poll,
            lookups,
            shared: shared.clone(),
            entries: HashMap::new(),
            timers: BTreeSet::new(),
            buf: ReadBuffer::new(READ_BUFFER_BYTES, READ_COPY_BELOW_BYTES),
        };
        let thread = std::thread::Builder::new()
            .name("sitebucket-mio".into())
            .spawn(move || event_loop.run())?;
        Ok((shared, thread))
    }

    /// Hands a stream to the loop and wakes it.
    pub(crate) fn spawn(
        self: &Arc<Self>,
        stream: SiteStream,
        parser: Box<dyn Parser>,
        control: Arc<RunState>,
    ) -> io::Result<RunHandle> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (done, finished) = mpsc::channel();
        // A weak reference: a control that outlives the loop keeps nothing of it alive.
        let shared = Arc::downgrade(self);
        control.set_waker(Arc::new(move || {
            if let Some(shared) = shared.upgrade() {
                lock(&shared.inbox).stops.push(id);
                shared.wake();
            }
        }));
        {
            let mut inbox = lock(&self.inbox);
            if inbox.exited {
                control.clear_waker();
                return Err(io::Error::other("the mio event loop thread has exited"));
            }
            self.live.fetch_add(1, Ordering::SeqCst);
            inbox.spawns.push(Spawn {
                id,
                stream,
                parser,
                control,
                done,
            });
        }
        self.wake();
        Ok(RunHandle::new(finished, None))
    }

    /// Streams handed to the loop and not yet finished.
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Tells the loop that no handle is left: it exits once its last stream finishes.
    pub(crate) fn close(&self) {
        lock(&self.inbox).closed = true;
        self.wake();
    }

    fn wake(&self) {
        // Waking fails only if the loop's poll is gone, i.e. the loop has exited.
        let _ = self.waker.wake();
    }
}

/// One stream on the shared loop.
struct Entry {
    stream: SiteStream,
    parser: Box<dyn Parser>,
    control: Arc<RunState>,
    done: mpsc::Sender<Finished>,
    conn: Conn,
    /// The deadline this entry is filed under in the timer set.
    timer: Option<Instant>,
}

struct EventLoop {
    poll: Poll,
    /// Host-name lookups, on the resolver's pool of lookup threads, answered through the inbox.
    lookups: Lookups,
    shared: Arc<Shared>,
    entries: HashMap<usize, Entry>,
    /// Every stream's next deadline, nearest first.
    timers: BTreeSet<(Instant, usize)>,
    /// Shared by every stream of the loop: an idle stream holds none of it.
    buf: ReadBuffer,
}

/// Marks the loop exited (even if it panicked), so later spawns fail instead of hanging.
struct ExitGuard(Arc<Shared>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let mut inbox = lock(&self.0.inbox);
        inbox.exited = true;
        // Their `done` senders drop with them: their joins return `None`.
        inbox.spawns.clear();
        inbox.answers.clear();
    }
}

impl EventLoop {
    fn run(mut self) {
        let _exit = ExitGuard(self.shared.clone());
        let mut events = Events::with_capacity(1024);
        loop {
            let (spawns, stops, answers, closed) = {
                let mut inbox = lock(&self.shared.inbox);
                let spawns = std::mem::take(&mut inbox.spawns);
                let stops = std::mem::take(&mut inbox.stops);
                let answers = std::mem::take(&mut inbox.answers);
                (spawns, stops, answers, inbox.closed)
            };
            for spawn in spawns {
                let id = spawn.id;
                let entry = Entry {
                    stream: spawn.stream,
                    parser: spawn.parser,
                    control: spawn.control,
                    done: spawn.done,
                    conn: Conn::new(Token(id)),
                    timer: None,
                };
                self.entries.insert(id, entry);
                self.step(id, Step::Drive);
            }
            for id in stops {
                self.step(id, Step::Drive);
            }
            for answer in answers {
                // A stream that has finished since has no entry: its answer is dropped.
                self.step(answer.token.0, Step::Resolved(answer));
            }
            if closed && self.entries.is_empty() {
                // No handle is left, so no spawn can arrive any more.
                return;
            }
            let timeout = self
                .timers
                .first()
                .map(|(deadline, _)| deadline.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The loop cannot go on: its streams drop, and their joins return `None`.
                Err(_) => return,
            }
            for event in events.iter() {
                if event.token() != WAKER {
                    self.step(event.token().0, Step::Ready(event.is_writable()));
                }
            }
            let now = Instant::now();
            while let Some(&(deadline, id)) = self.timers.first() {
                if deadline > now {
                    break;
                }
                self.step(id, Step::Due);
                // `step` refiles the entry under its new deadline, which the core always
                // sets after `now`; drop the due one in case the entry is gone.
                self.timers.remove(&(deadline, id));
            }
        }
    }

    /// Drives one stream (after readiness, a lookup's answer, a stop request or a
    /// deadline), then refiles its timer or finishes it.
    fn step(&mut self, id: usize, why: Step) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let registry = self.poll.registry();
        let mut parts = Parts {
            stream: &mut entry.stream,
            parser: entry.parser.as_mut(),
            control: &entry.control,
            lookups: &self.lookups,
        };
        let outcome = match why {
            Step::Ready(writable) => {
                entry
                    .conn
                    .ready(registry, writable, &mut self.buf, &mut parts)
            }
            Step::Resolved(answer) => entry.conn.resolved(registry, answer, &mut parts),
            Step::Drive => entry.conn.drive(registry, &mut parts),
            Step::Due => entry.conn.due(registry, &mut self.buf, &mut parts),
        };
        let next = if outcome.is_some() {
            None
        } else {
            entry.conn.deadline
        };
        if entry.timer != next {
            if let Some(old) = entry.timer.take() {
                self.timers.remove(&(old, id));
            }
            if let Some(new) = next {
                self.timers.insert((new, id));
                entry.timer = Some(new);
            }
        }
        if let Some(outcome) = outcome {
            if let Some(entry) = self.entries.remove(&id) {
                entry.control.clear_waker();
                self.shared.live.fetch_sub(1, Ordering::SeqCst);
                // The receiver may be gone (the handle was dropped unjoined): nothing to do.
                let _ = entry.done.send(Finished {
                    stream: entry.stream,
                    parser: entry.parser,
                    outcome,
                });
            }
        }
    }
}

/// Why the loop drives a stream.
enum Step {
    /// Readiness of its socket (`true`: writable).
    Ready(bool),
    /// The answer of a lookup it started.
    Resolved(Answer),
    /// A stop request (a spurious drive is a no-op).
    Drive,
    /// Its deadline is due. Its socket is read first: bytes that arrived while this batch
    /// of events was handled (a slow parser, a starved CPU) are not yet in any event, and
    /// a stall must not be declared over them.
    Due,
}

/// Runs one stream on a private loop in the current thread (`Driver::run`), looking host
/// names up with `resolver`.
pub(crate) fn run_here(
    stream: &mut SiteStream,
    parser: &mut dyn Parser,
    control: &Arc<RunState>,
    resolver: &Resolver,
) -> Outcome {
    let mut poll = match Poll::new() {
        Ok(poll) => poll,
        Err(e) => return loop_failed(stream, control, e),
    };
    let waker = match Waker::new(poll.registry(), WAKER) {
        Ok(waker) => Arc::new(waker),
        Err(e) => return loop_failed(stream, control, e),
    };
    // The poll's one waker serves both a stop and a lookup's answer.
    let stop_waker = waker.clone();
    control.set_waker(Arc::new(move || {
        let _ = stop_waker.wake();
    }));
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let inbox = answers.clone();
    let lookups = Lookups {
        resolver: resolver.clone(),
        deliver: Arc::new(move |answer| {
            lock(&inbox).push(answer);
            let _ = waker.wake();
        }),
    };
    let token = Token(0);
    let mut conn = Conn::new(token);
    let mut buf = ReadBuffer::new(READ_BUFFER_BYTES, READ_COPY_BELOW_BYTES);
    let mut events = Events::with_capacity(16);
    let mut parts = Parts {
        stream,
        parser,
        control,
        lookups: &lookups,
    };
    let mut outcome = conn.drive(poll.registry(), &mut parts);
    let outcome = loop {
        if let Some(outcome) = outcome {
            break outcome;
        }
        let timeout = conn
            .deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()));
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                conn.close(poll.registry());
                control.clear_waker();
                return loop_failed(parts.stream, control, e);
            }
        }
        for event in events.iter() {
            if event.token() == token && outcome.is_none() {
                outcome = conn.ready(poll.registry(), event.is_writable(), &mut buf, &mut parts);
            }
        }
        let answered = std::mem::take(&mut *lock(&answers));
        for answer in answered {
            if outcome.is_none() {
                outcome = conn.resolved(poll.registry(), answer, &mut parts);
            }
        }
        if outcome.is_none() {
            // A stop request or a deadline (spurious drives are no-ops). A due deadline
            // reads the socket first, so bytes that came after the poll count.
            outcome = match conn.deadline {
                Some(deadline) if deadline <= Instant::now() => {
                    conn.due(poll.registry(), &mut buf, &mut parts)
                }
                _ => conn.drive(poll.registry(), &mut parts),
            };
        }
    };
    control.clear_waker();
    outcome
}

/// The loop could not be set up or failed: stop the stream and say why.
fn loop_failed(stream: &mut SiteStream, control: &RunState, error: io::Error) -> Outcome {
    stream.disconnect();
    // Drain the core's `Close` (there is no socket left to close) to its end.
    while !matches!(stream.poll_action(Instant::now()), Action::Finished(_)) {}
    control.publish(stream);
    Outcome::driver_io("in the mio event loop", error)
}
