//! [`control`]: a control call over smol's sockets and timers.

use std::future::Future;
use std::io;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_io::Timer;
use async_net::TcpStream;
use futures_lite::future::or;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use sitebucket_proto::control::{ControlAction, ControlCall, ControlError, ControlResponse};
use sitebucket_thread::Resolver;

use crate::connect::connect;

/// Carries out `call` on a new smol socket of its own and returns its answer. Every wait
/// (connect, write, read) races the call's deadline. It makes no protocol decision; the call
/// says what to do.
///
/// Any smol-compatible executor can run it; [`SmolDriver`](crate::SmolDriver) runs it with
/// `smol::block_on` for [`ListenThread::add_users`](sitebucket_thread::ListenThread::add_users)
/// and its siblings. Dropping the future closes the socket. Host names go to the system
/// resolver: see [`control_with`].
pub async fn control(call: ControlCall) -> Result<ControlResponse, ControlError> {
    control_with(call, &Resolver::system()).await
}

/// [`control`] with host names looked up by `resolver`, on a lookup thread of its own whose
/// answer is awaited no longer than the call's deadline (a control call has no stop of its
/// own: its deadline, or dropping the future, bounds it). An abandoned lookup ends on its
/// own, its answer dropped. The addresses are tried in turn within the same deadline.
pub async fn control_with(
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
                if let Some(up) = &mut socket {
                    match before(call.deadline(), up.write_all(&bytes)).await {
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
                    Timer::at(deadline).await;
                    call.handle_timeout(Instant::now());
                    continue;
                };
                match before(Some(deadline), up.read(&mut buf)).await {
                    Some(Ok(0)) => call.handle_eof(Instant::now()),
                    // `n` is at most the buffer's length: `read` never reports more.
                    Some(Ok(n)) => call.handle_input(Instant::now(), &buf[..n]),
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
    let Some(deadline) = deadline else {
        return Some(work.await);
    };
    or(async { Some(work.await) }, async {
        Timer::at(deadline).await;
        None
    })
    .await
}

/// Wall-clock seconds for the request's OAuth timestamp (0 if the clock is before 1970).
fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
