//! [`Runtime`]: what an async runtime lends the shared loop — sockets, a timer, a yield.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Instant;

/// An async runtime, as the loops of this crate use it: a TCP connect, non-blocking reads and
/// writes on the connected socket, a resettable timer, a yield to the executor, and (where
/// the runtime has one) the polling task's cooperative budget.
///
/// It is implemented by a type with no values (`sitebucket_smol::Smol`,
/// `sitebucket_tokio::Tokio`): everything is an associated function, so the loops are
/// compiled once per runtime and call it without dynamic dispatch. Nothing here makes a
/// protocol decision; the runtime only moves bytes and tells the time.
///
/// Every function is called from inside a poll of the loop's future, on whatever thread the
/// executor polls it, so the runtime's context (tokio's, say) is the caller's.
pub trait Runtime: Send + Sync + 'static {
    /// A connected TCP socket. Dropping it closes the connection.
    type Socket: Send + 'static;
    /// A timer that fires at an [`Instant`] and can be set again.
    type Timer: Send + 'static;
    /// A unit of the polling task's cooperative budget ([`poll_budget`](Self::poll_budget)).
    type Budget;

    /// Whether the loops can run in the calling context: an error saying why not (such as
    /// "polled outside a tokio runtime", where the runtime's sockets would panic) ends a run
    /// at once with that reason instead. Called at the start of every run.
    fn check_context() -> Result<(), String> {
        Ok(())
    }

    /// Connects to `addr`. The future must not block its thread; dropping it abandons the
    /// attempt and closes a half-open socket.
    fn connect(addr: SocketAddr) -> impl Future<Output = io::Result<Self::Socket>> + Send;

    /// Turns Nagle's algorithm off on `socket` (control calls send one small request and
    /// wait for its answer).
    fn set_nodelay(socket: &Self::Socket) -> io::Result<()>;

    /// One read into `buf` once the socket has bytes: `Ok(0)` when the peer closed. Pending
    /// (with the task's waker registered) while there is nothing to read; a spurious
    /// readiness is waited out, never reported as `WouldBlock`.
    fn poll_read(
        socket: &mut Self::Socket,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>>;

    /// One non-blocking read into `buf` that asks the socket itself, whatever readiness the
    /// runtime has recorded for it: `Ok(0)` when the peer closed, `WouldBlock` when nothing
    /// is there. The loops call it when the core's deadline comes while
    /// [`poll_read`](Self::poll_read) is pending, so bytes already in the socket (whose
    /// readiness event the reactor has not handed out yet) reach the core before the
    /// deadline does.
    fn try_read(socket: &mut Self::Socket, buf: &mut [u8]) -> io::Result<usize>;

    /// One write of a prefix of `bytes` once the socket has room: how many bytes it took.
    /// Pending (with the task's waker registered) while there is no room.
    fn poll_write(
        socket: &mut Self::Socket,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>>;

    /// A timer set to fire at `at`.
    fn timer(at: Instant) -> Self::Timer;

    /// Sets `timer` to fire at `at` instead (whether or not it has fired).
    fn reset_timer(timer: &mut Self::Timer, at: Instant);

    /// Ready once `timer`'s instant has come; pending (with the task's waker registered)
    /// before. The loops [set](Self::reset_timer) a timer again before they poll it after it
    /// fired.
    fn poll_timer(timer: &mut Self::Timer, cx: &mut Context<'_>) -> Poll<()>;

    /// Hands the thread back to the executor once, so its other tasks (and its reactor) get a
    /// turn.
    fn yield_now() -> impl Future<Output = ()> + Send;

    /// Takes a unit of the polling task's cooperative budget: pending (the task is woken
    /// again) when the budget is spent, so a consumer of a flood of ready items still yields
    /// now and then. A runtime without such a budget is always ready.
    fn poll_budget(cx: &mut Context<'_>) -> Poll<Self::Budget>;

    /// Says the unit taken was used (an item was handed out); a unit dropped without this is
    /// given back.
    fn made_progress(budget: Self::Budget);
}
