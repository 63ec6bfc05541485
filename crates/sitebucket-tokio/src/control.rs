//! [`run_control`]: a control call over tokio's sockets and timers.

use std::future::Future;
use std::io;
use std::time::Instant;

use tokio::net::TcpStream;

use sitebucket_proto::control::{ControlAction, ControlCall, ControlError, ControlResponse};
use sitebucket_thread::Resolver;

use crate::connect::{connect, read_some, write_all};
use crate::drive::unix_secs;

/// Carries out `call` on a new tokio socket of its own and returns its answer. Every wait
/// (connect, write, read) races the call's deadline. It makes no protocol decision; the call
/// says what to do.
///
/// Await it inside a tokio runtime (I/O and time enabled); [`TokioDriver`](crate::TokioDriver)
/// runs it on its runtime for
/// [`ListenThread::add_users`](sitebucket_thread::ListenThread::add_users) and its siblings.
/// The future is `Send`; dropping it closes the socket. Host names go to the system
/// resolver: see [`run_control_with`].
pub async fn run_control(call: ControlCall) -> Result<ControlResponse, ControlError> {
    run_control_with(call, &Resolver::system()).await
}

/// [`run_control`] with host names looked up by `resolver`, on a lookup thread of its own
/// whose answer is awaited no longer than the call's deadline (a control call has no stop of
/// its own: its deadline, or dropping the future, bounds it). An abandoned lookup ends on its
/// own, its answer dropped. The addresses are tried in turn within the same deadline.
pub async fn run_control_with(
    mut call: ControlCall,
    resolver: &Resolver,
) -> Result<ControlResponse, ControlError> {
    let mut socket: Option<TcpStream> = None;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match call.poll_action(Instant::now()) {
            ControlAction::Connect { host, port, .. } => {
                let connect = connect(resolver.clone(), host, port);
                match before(call.deadline(), connect).await {
                    Some(Ok(up)) => {
                        let _ = up.set_nodelay(true);
                        socket = Some(up);
                        call.handle_connected(Instant::now(), unix_secs());
                    }
                    Some(Err(e)) => call.handle_connect_failed(Instant::now(), e.kind()),
                    None => call.handle_timeout(Instant::now()),
                }
            }
            ControlAction::Transmit(bytes) => {
                if let Some(up) = &socket {
                    match before(call.deadline(), write_all(up, &bytes)).await {
                        Some(Ok(())) => {}
                        // A failed write means the connection is gone.
                        Some(Err(_)) => call.handle_eof(Instant::now()),
                        None => call.handle_timeout(Instant::now()),
                    }
                }
            }
            ControlAction::Close => socket = None,
            ControlAction::Wait(deadline) => {
                let Some(up) = &socket else {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
                    call.handle_timeout(Instant::now());
                    continue;
                };
                match before(Some(deadline), read_some(up, &mut buf)).await {
                    Some(Ok(0)) => call.handle_eof(Instant::now()),
                    // `n` is at most the buffer's length: `read` never reports more.
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

/// `work`'s output, or `None` if `deadline` comes first.
async fn before<T>(deadline: Option<Instant>, work: impl Future<Output = T>) -> Option<T> {
    match deadline {
        None => Some(work.await),
        Some(deadline) => tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), work)
            .await
            .ok(),
    }
}
