//! [`Tokio`]: tokio's sockets, timer, yield and cooperative budget as a [`Runtime`] for the
//! shared async loop.

use std::future::Future;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use sitebucket_async::Runtime;
use socket2::SockRef;
use tokio::net::TcpStream;
use tokio::task::coop::RestoreOnPending;
use tokio::time::Sleep;

/// tokio as a [`Runtime`]: tokio's sockets and timers, so the futures must be polled inside
/// a tokio runtime with I/O and time enabled (`enable_all`), of either flavour; polled
/// outside any runtime, a run ends at once with
/// [`Outcome::InvalidConfig`](sitebucket_proto::Outcome::InvalidConfig) saying so.
/// Each item of a [`Messages`](crate::Messages) spends a unit of the polling task's tokio
/// budget (`tokio::task::coop`).
///
/// [`drive_with`](crate::drive_with), [`run_control_with`](crate::run_control_with) and
/// [`Messages`](crate::Messages) are the shared loops of `sitebucket-async` run on it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

impl Runtime for Tokio {
    type Socket = TcpStream;
    type Timer = Pin<Box<Sleep>>;
    type Budget = RestoreOnPending;

    fn check_context() -> Result<(), String> {
        match tokio::runtime::Handle::try_current() {
            Ok(_) => Ok(()),
            // Tokio's sockets and timers would panic: say what is wrong instead.
            Err(_) => Err(
                "sitebucket-tokio's futures must be polled inside a tokio runtime (with I/O and \
                 time enabled): run them in a task, or under Runtime::block_on"
                    .into(),
            ),
        }
    }

    fn connect(addr: SocketAddr) -> impl Future<Output = io::Result<TcpStream>> + Send {
        TcpStream::connect(addr)
    }

    fn set_nodelay(socket: &TcpStream) -> io::Result<()> {
        socket.set_nodelay(true)
    }

    fn poll_read(
        socket: &mut TcpStream,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        when_ready(cx, |cx| socket.poll_read_ready(cx), || socket.try_read(buf))
    }

    fn try_read(socket: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        // `TcpStream::try_read` answers `WouldBlock` while tokio has no readiness recorded:
        // read the (non-blocking) socket itself. tokio's readiness is left as it is, and is
        // cleared by the next read that would block.
        (&*SockRef::from(&*socket)).read(buf)
    }

    fn poll_write(
        socket: &mut TcpStream,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        when_ready(
            cx,
            |cx| socket.poll_write_ready(cx),
            || socket.try_write(bytes),
        )
    }

    fn timer(at: Instant) -> Self::Timer {
        Box::pin(tokio::time::sleep_until(at.into()))
    }

    fn reset_timer(timer: &mut Self::Timer, at: Instant) {
        timer.as_mut().reset(at.into());
    }

    fn poll_timer(timer: &mut Self::Timer, cx: &mut Context<'_>) -> Poll<()> {
        timer.as_mut().poll(cx)
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        tokio::task::yield_now()
    }

    fn poll_budget(cx: &mut Context<'_>) -> Poll<RestoreOnPending> {
        tokio::task::coop::poll_proceed(cx)
    }

    fn made_progress(budget: RestoreOnPending) {
        budget.made_progress();
    }
}

/// `attempt` (a non-blocking read or write) once `ready` says the socket is ready, waiting
/// again after a spurious readiness (tokio clears it when the attempt would block).
fn when_ready(
    cx: &mut Context<'_>,
    mut ready: impl FnMut(&mut Context<'_>) -> Poll<io::Result<()>>,
    mut attempt: impl FnMut() -> io::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(ready(cx))?;
        match attempt() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return Poll::Ready(result),
        }
    }
}
