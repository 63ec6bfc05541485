//! [`run_control_with`]: a control call over a [`Runtime`]'s sockets and timer.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::Poll;
use std::time::Instant;

use sitebucket_proto::control::{ControlAction, ControlCall, ControlError, ControlResponse};
use sitebucket_thread::Resolver;

use crate::connect::connect;
use crate::runtime::Runtime;
use sitebucket_thread::time::unix_secs;

/// Bytes asked of the socket per read of a control call's answer.
const CONTROL_READ_BYTES: usize = 16 * 1024;

/// Carries out `call` on a new socket of its own over the runtime `R` and returns its
/// answer. Every wait (connect, write, read) races the call's deadline. It makes no
/// protocol decision; the call says what to do.
///
/// Host names are looked up by `resolver` on a lookup thread of its own whose answer is
/// awaited no longer than the call's deadline (a control call has no stop of its own: its
/// deadline, or dropping the future, bounds it). An abandoned lookup ends on its own, its
/// answer dropped. The addresses are tried in turn within the same deadline. Dropping the
/// future closes the socket.
pub async fn run_control_with<R: Runtime>(
    mut call: ControlCall,
    resolver: &Resolver,
) -> Result<ControlResponse, ControlError> {
    let mut socket: Option<R::Socket> = None;
    let mut buf = vec![0u8; CONTROL_READ_BYTES];
    loop {
        match call.poll_action(Instant::now()) {
            ControlAction::Connect { host, port, .. } => {
                let connect = connect::<R>(resolver.clone(), host, port);
                match before::<R, _>(call.deadline(), connect).await {
                    Some(Ok(up)) => {
                        let _ = R::set_nodelay(&up);
                        socket = Some(up);
                        call.handle_connected(Instant::now(), unix_secs());
                    }
                    Some(Err(e)) => call.handle_connect_failed(Instant::now(), e.kind()),
                    None => call.handle_timeout(Instant::now()),
                }
            }
            ControlAction::Transmit(bytes) => {
                if let Some(up) = &mut socket {
                    match before::<R, _>(call.deadline(), write_all::<R>(up, &bytes)).await {
                        Some(Ok(())) => {}
                        // A failed write means the connection is gone.
                        Some(Err(_)) => call.handle_eof(Instant::now()),
                        None => call.handle_timeout(Instant::now()),
                    }
                }
            }
            ControlAction::Close => socket = None,
            ControlAction::Wait(deadline) => {
                let Some(up) = &mut socket else {
                    let mut timer = R::timer(deadline);
                    poll_fn(|cx| R::poll_timer(&mut timer, cx)).await;
                    call.handle_timeout(Instant::now());
                    continue;
                };
                let read = poll_fn(|cx| R::poll_read(up, cx, &mut buf));
                match before::<R, _>(Some(deadline), read).await {
                    Some(Ok(0)) => call.handle_eof(Instant::now()),
                    // `n` is at most the buffer's length: a read never reports more.
                    Some(Ok(n)) => call.handle_input(Instant::now(), &buf[..n.min(buf.len())]),
                    Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Some(Err(_)) => call.handle_eof(Instant::now()),
                    None => call.handle_timeout(Instant::now()),
                }
            }
            ControlAction::Finished(result) => return result,
        }
    }
}

/// `work`'s output, or `None` if `deadline` comes first (`work` is polled first).
async fn before<R: Runtime, T>(
    deadline: Option<Instant>,
    work: impl Future<Output = T>,
) -> Option<T> {
    let Some(deadline) = deadline else {
        return Some(work.await);
    };
    let mut work = pin!(work);
    let mut timer = R::timer(deadline);
    poll_fn(|cx| {
        if let Poll::Ready(done) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(done));
        }
        R::poll_timer(&mut timer, cx).map(|()| None)
    })
    .await
}

/// Writes all of `bytes`, waiting for room as needed (`WriteZero` if the socket takes
/// nothing).
async fn write_all<R: Runtime>(socket: &mut R::Socket, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match poll_fn(|cx| R::poll_write(socket, cx, bytes)).await {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
