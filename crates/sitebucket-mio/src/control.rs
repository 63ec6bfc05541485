//! Control calls on a mio socket of their own, polled in the calling thread.
//!
//! A control call is one short request made by a handle that waits for its answer, so it
//! runs on a private `Poll` in the caller's thread rather than on the shared loop: the
//! loop's streams are never delayed by it, and the call never shares their sockets. Its name
//! lookup runs on the resolver's pool of lookup threads, waited for in the poll until the call's deadline.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use std::vec;

use bytes::Bytes;
use mio::{Events, Interest, Poll, Token, Waker};
use sitebucket_proto::control::{ControlAction, ControlCall, ControlError, ControlResponse};
use sitebucket_thread::sync::lock;
use sitebucket_thread::time::unix_secs;
use sitebucket_thread::Resolver;

use crate::socket::{connect_result, write_queue, Socket};

const CALL: Token = Token(0);
/// The poll's waker: a lookup's answer is in.
const ANSWER: Token = Token(1);

/// Where a lookup thread leaves its answer for the call.
type AnswerSlot = Arc<Mutex<Option<io::Result<Vec<SocketAddr>>>>>;

/// Carries out `call` on a new non-blocking socket, polled by a private mio `Poll` in the
/// calling thread until the call finishes (its deadline bounds the wait). It makes no
/// protocol decision; the call says what to do.
///
/// This is what [`MioDriver`](crate::MioDriver) runs for
/// [`ListenThread::add_users`](sitebucket_thread::ListenThread::add_users) and its siblings.
/// Host names go to the system resolver: see [`run_control_with`].
pub fn run_control(call: ControlCall) -> Result<ControlResponse, ControlError> {
    run_control_with(call, &Resolver::system())
}

/// [`run_control`] with host names looked up by `resolver`, on a lookup thread of its own
/// whose answer is waited for in the poll no longer than the call's deadline (a control call
/// has no stop of its own: its deadline bounds it). An abandoned lookup ends on its own.
pub fn run_control_with(
    mut call: ControlCall,
    resolver: &Resolver,
) -> Result<ControlResponse, ControlError> {
    let setup = |e: io::Error| {
        ControlError::InvalidConfig(format!("cannot create a mio poller for the call: {e}"))
    };
    let mut poll = Poll::new().map_err(setup)?;
    let waker = Arc::new(Waker::new(poll.registry(), ANSWER).map_err(setup)?);
    let mut events = Events::with_capacity(8);
    let mut socket = Socket::None;
    let mut lookup: Option<AnswerSlot> = None;
    let mut out: VecDeque<Bytes> = VecDeque::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let now = Instant::now();
        if let Some(result) = lookup.as_ref().and_then(|slot| lock(slot).take()) {
            lookup = None;
            match result {
                Ok(addrs) => socket = start_connect(&poll, addrs.into_iter(), &mut call),
                Err(e) => call.handle_connect_failed(now, e.kind()),
            }
        }
        match call.poll_action(now) {
            ControlAction::Connect { host, port, .. } => {
                if let Some(addr) = Resolver::literal(&host, port) {
                    socket = start_connect(&poll, vec![addr].into_iter(), &mut call);
                    continue;
                }
                let slot = AnswerSlot::default();
                let (answer, waker) = (slot.clone(), waker.clone());
                let started = resolver.spawn_lookup(&host, port, move |result| {
                    *lock(&answer) = Some(result);
                    let _ = waker.wake();
                });
                match started {
                    Ok(()) => lookup = Some(slot),
                    Err(e) => call.handle_connect_failed(now, e.kind()),
                }
            }
            ControlAction::Transmit(bytes) => {
                out.push_back(bytes);
                if flush(&mut socket, &mut out).is_err() {
                    call.handle_eof(now);
                }
            }
            ControlAction::Close => {
                socket.close(poll.registry());
                out.clear();
                // An answer nobody waits for any more.
                lookup = None;
            }
            ControlAction::Wait(deadline) => {
                // Round up so a sub-millisecond wait does not spin.
                let timeout = deadline
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1));
                match poll.poll(&mut events, Some(timeout)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        call.cancel();
                        continue;
                    }
                }
                if events.is_empty() {
                    call.handle_timeout(Instant::now());
                    continue;
                }
                if events.iter().all(|event| event.token() == ANSWER) {
                    // A lookup's answer (taken at the top of the loop), or a stale wake-up.
                    continue;
                }
                if matches!(socket, Socket::Connecting { .. }) {
                    socket = finish_connect(&poll, socket, &mut call);
                    continue;
                }
                if flush(&mut socket, &mut out).is_err() {
                    call.handle_eof(Instant::now());
                    continue;
                }
                read_available(&mut socket, &mut buf, &mut call);
            }
            ControlAction::Finished(result) => {
                socket.close(poll.registry());
                return result;
            }
        }
    }
}

/// Starts a non-blocking connect to the first address that takes one.
fn start_connect(poll: &Poll, rest: vec::IntoIter<SocketAddr>, call: &mut ControlCall) -> Socket {
    let interest = Interest::READABLE | Interest::WRITABLE;
    Socket::connect(poll.registry(), CALL, interest, rest).unwrap_or_else(|kind| {
        call.handle_connect_failed(Instant::now(), kind);
        Socket::None
    })
}

/// Learns how the connect ended (see [`connect_result`]); a spurious event changes nothing.
fn finish_connect(poll: &Poll, socket: Socket, call: &mut ControlCall) -> Socket {
    let Socket::Connecting { mut tcp, rest } = socket else {
        return socket;
    };
    let Some(result) = connect_result(&tcp) else {
        return Socket::Connecting { tcp, rest };
    };
    match result {
        Ok(()) => {
            let _ = tcp.set_nodelay(true);
            call.handle_connected(Instant::now(), unix_secs());
            Socket::Open(tcp)
        }
        Err(e) => {
            let _ = poll.registry().deregister(&mut tcp);
            if rest.len() == 0 {
                call.handle_connect_failed(Instant::now(), e.kind());
                Socket::None
            } else {
                start_connect(poll, rest, call)
            }
        }
    }
}

/// Writes what the socket takes of `out`; an error means the connection is gone.
fn flush(socket: &mut Socket, out: &mut VecDeque<Bytes>) -> io::Result<()> {
    let Socket::Open(tcp) = socket else {
        return Ok(());
    };
    write_queue(tcp, out)
}

/// Reads until `WouldBlock` (readiness is edge-triggered), handing everything to the call.
fn read_available(socket: &mut Socket, buf: &mut [u8], call: &mut ControlCall) {
    while let Socket::Open(tcp) = socket {
        match tcp.read(buf) {
            Ok(0) => {
                call.handle_eof(Instant::now());
                return;
            }
            Ok(n) => call.handle_input(Instant::now(), &buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                call.handle_eof(Instant::now());
                return;
            }
        }
        if call.result().is_some() {
            return;
        }
    }
}
