//! Control calls on a blocking std socket of their own.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Instant;

use sitebucket_proto::control::{ControlAction, ControlCall, ControlError, ControlResponse};
use sitebucket_thread::time::unix_secs;
use sitebucket_thread::Resolver;

/// Carries out `call` on a new blocking socket in the calling thread, until it finishes: a
/// connect bounded by the call's deadline, a blocking write, and reads with a read timeout
/// up to the deadline. It makes no protocol decision; the call says what to do.
///
/// This is what [`StdDriver`](crate::StdDriver) runs for
/// [`ListenThread::add_users`](sitebucket_thread::ListenThread::add_users) and its siblings;
/// it never touches the stream's connection. Host names go to the system resolver: see
/// [`run_control_with`].
pub fn run_control(call: ControlCall) -> Result<ControlResponse, ControlError> {
    run_control_with(call, &Resolver::system())
}

/// [`run_control`] with host names looked up by `resolver`, on a lookup thread of its own
/// whose answer is waited for no longer than the call's deadline (a control call has no
/// stop of its own: its deadline bounds it). An abandoned lookup ends on its own.
pub fn run_control_with(
    mut call: ControlCall,
    resolver: &Resolver,
) -> Result<ControlResponse, ControlError> {
    let mut socket: Option<TcpStream> = None;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match call.poll_action(Instant::now()) {
            ControlAction::Connect { host, port, .. } => {
                match connect(resolver, &host, port, call.deadline()) {
                    Ok(up) => {
                        socket = Some(up);
                        call.handle_connected(Instant::now(), unix_secs());
                    }
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                        call.handle_timeout(Instant::now());
                        // Not yet due by the call's clock: it is a failed connect after all.
                        call.handle_connect_failed(Instant::now(), e.kind());
                    }
                    Err(e) => call.handle_connect_failed(Instant::now(), e.kind()),
                }
            }
            ControlAction::Transmit(bytes) => {
                if let Some(up) = &mut socket {
                    // A failed write means the connection is gone: the call hears the close.
                    if up.write_all(&bytes).is_err() {
                        call.handle_eof(Instant::now());
                    }
                }
            }
            ControlAction::Close => {
                if let Some(up) = socket.take() {
                    let _ = up.shutdown(Shutdown::Both);
                }
            }
            ControlAction::Wait(deadline) => match &mut socket {
                Some(up) => read_until(&mut call, up, &mut buf, deadline),
                None => {
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    call.handle_timeout(Instant::now());
                }
            },
            ControlAction::Finished(result) => return result,
        }
    }
}

/// One blocking read, bounded by `deadline`; its result goes to the call.
fn read_until(call: &mut ControlCall, socket: &mut TcpStream, buf: &mut [u8], deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    // A zero read timeout means "block forever" to the OS: treat it as due at once.
    if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
        call.handle_timeout(Instant::now());
        return;
    }
    match socket.read(buf) {
        Ok(0) => call.handle_eof(Instant::now()),
        Ok(n) => call.handle_input(Instant::now(), &buf[..n]),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            call.handle_timeout(Instant::now())
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
        Err(_) => call.handle_eof(Instant::now()),
    }
}

/// Connects to the addresses of `host:port` in turn, the lookup and each attempt bounded by
/// what is left until `deadline`.
fn connect(
    resolver: &Resolver,
    host: &str,
    port: u16,
    deadline: Option<Instant>,
) -> io::Result<TcpStream> {
    let addrs = resolve(resolver, host, port, deadline)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in addrs {
        let result = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                TcpStream::connect_timeout(&addr, left)
            }
            None => TcpStream::connect(addr),
        };
        match result {
            Ok(up) => {
                let _ = up.set_nodelay(true);
                return Ok(up);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The addresses of `host:port`: an IP literal at once, a name from a lookup thread, waited
/// for until `deadline` (then `TimedOut`).
fn resolve(
    resolver: &Resolver,
    host: &str,
    port: u16,
    deadline: Option<Instant>,
) -> io::Result<Vec<SocketAddr>> {
    if let Some(addr) = Resolver::literal(host, port) {
        return Ok(vec![addr]);
    }
    let (answer, answered) = mpsc::channel();
    resolver.spawn_lookup(host, port, move |result| {
        // The call may have given up already: then nobody wants the answer.
        let _ = answer.send(result);
    })?;
    let answer = match deadline {
        Some(deadline) => answered
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|e| match e {
                mpsc::RecvTimeoutError::Timeout => io::ErrorKind::TimedOut,
                mpsc::RecvTimeoutError::Disconnected => io::ErrorKind::Other,
            }),
        None => answered.recv().map_err(|_| io::ErrorKind::Other),
    };
    // `Other`: the lookup thread ended without an answer (it always sends one).
    answer.map_err(io::Error::from)?
}
