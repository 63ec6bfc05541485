//! [`Smol`]: smol's sockets, timer and yield as a [`Runtime`] for the shared async loop.

use std::future::Future;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::Timer;
use async_net::TcpStream;
use futures_lite::{AsyncRead, AsyncWrite};
use sitebucket_async::Runtime;
use socket2::SockRef;

/// smol as a [`Runtime`]: `async-net` sockets and `async-io` timers, driven by the
/// `async-io` reactor; any executor that lets that reactor run can poll the futures
/// (`smol::block_on`, a `smol::Executor` task, `async_io::block_on`).
///
/// [`drive_with`](crate::drive_with), [`run_control_with`](crate::run_control_with) and
/// [`Messages`](crate::Messages) are the shared loops of `sitebucket-async` run on it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Smol;

impl Runtime for Smol {
    type Socket = TcpStream;
    type Timer = Timer;
    type Budget = ();

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
        Pin::new(socket).poll_read(cx, buf)
    }

    fn try_read(socket: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        // The (non-blocking) socket itself, without registering for readiness.
        (&*SockRef::from(&*socket)).read(buf)
    }

    fn poll_write(
        socket: &mut TcpStream,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(socket).poll_write(cx, bytes)
    }

    fn timer(at: Instant) -> Timer {
        Timer::at(at)
    }

    fn reset_timer(timer: &mut Timer, at: Instant) {
        timer.set_at(at);
    }

    fn poll_timer(timer: &mut Timer, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(timer).poll(cx).map(drop)
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        futures_lite::future::yield_now()
    }

    fn poll_budget(_: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }

    fn made_progress((): ()) {}
}
