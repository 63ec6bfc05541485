//! [`ReadGate`]: a switch that pauses reading from the sockets of many streams at once,
//! without blocking the thread they run on.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::sync::lock;

/// Backpressure for readers: while the gate is [paused](Self::pause), a driver that honours
/// it reads nothing from its streams' sockets, yet keeps running everything else: the core's
/// timers (so a stream silent for its stall timeout reconnects through the core's normal
/// path, with the core's backoff), stop requests, writes, and the other tasks of its
/// runtime. [`resume`](Self::resume) wakes every paused reader.
///
/// Whoever holds what the streams produce (a publisher with a bound on what it holds) pauses
/// the gate when it is full and resumes it when it has room again; the streams share one gate
/// through [`RunState::set_read_gate`](crate::RunState::set_read_gate),
/// [`ListenThread::set_read_gate`](crate::ListenThread::set_read_gate) or
/// [`Monitor::set_read_gate`](crate::Monitor::set_read_gate). The gate is checked before
/// every read, never in the middle of one: a reader that found it open hands the whole read
/// (at most [`READ_BUFFER_BYTES`](crate::READ_BUFFER_BYTES), plus the end of a message the
/// core had already buffered) to its parser, so the holder's bound can be passed by that much
/// per thread reading at the same moment, and nothing read is ever dropped.
///
/// Honoured by the async loop of the smol and tokio drivers (`sitebucket-async`), whose
/// waiting task registers a [`GateWaiter`]. The thread and mio drivers ignore it: with them a
/// full parser can only block its caller.
///
/// Clones share the gate. A new gate is open.
#[derive(Clone, Default)]
pub struct ReadGate {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    paused: AtomicBool,
    waiters: Mutex<Waiters>,
}

#[derive(Default)]
struct Waiters {
    next_id: u64,
    /// The waker of each waiter that found the gate paused, by waiter id.
    wakers: BTreeMap<u64, Waker>,
}

impl fmt::Debug for ReadGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadGate")
            .field("paused", &self.is_paused())
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl ReadGate {
    /// An open gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pauses reading: from now on, readers that honour the gate read nothing until
    /// [`resume`](Self::resume). Idempotent.
    pub fn pause(&self) {
        self.inner.paused.store(true, Ordering::SeqCst);
    }

    /// Lets reading go on, and wakes every reader waiting for it. Idempotent.
    pub fn resume(&self) {
        self.inner.paused.store(false, Ordering::SeqCst);
        let woken = std::mem::take(&mut lock(&self.inner.waiters).wakers);
        for waker in woken.into_values() {
            waker.wake();
        }
    }

    /// Whether reading is paused.
    pub fn is_paused(&self) -> bool {
        self.inner.paused.load(Ordering::SeqCst)
    }

    /// How many readers are waiting for a [`resume`](Self::resume) now.
    pub fn waiting(&self) -> usize {
        lock(&self.inner.waiters).wakers.len()
    }

    /// A handle for one reader (one driver loop) to wait on the gate with.
    pub fn waiter(&self) -> GateWaiter {
        let id = {
            let mut waiters = lock(&self.inner.waiters);
            waiters.next_id += 1;
            waiters.next_id
        };
        GateWaiter {
            gate: self.clone(),
            id,
        }
    }
}

/// One reader's place at a [`ReadGate`]: it keeps at most one waker there, which
/// [`ReadGate::resume`] wakes, and takes it away when dropped.
pub struct GateWaiter {
    gate: ReadGate,
    id: u64,
}

impl fmt::Debug for GateWaiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateWaiter")
            .field("id", &self.id)
            .field("gate", &self.gate)
            .finish()
    }
}

impl GateWaiter {
    /// Ready while the gate is open. While it is paused: pending, with the task's waker kept
    /// (replacing this waiter's earlier one) for [`ReadGate::resume`].
    pub fn poll_open(&self, cx: &mut Context<'_>) -> Poll<()> {
        let inner = &self.gate.inner;
        if !inner.paused.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        let mut waiters = lock(&inner.waiters);
        // A resume between the check above and this lock took the wakers before this one
        // was kept: look again under the lock, which `resume` takes after lowering the flag.
        if !inner.paused.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        match waiters.wakers.get_mut(&self.id) {
            Some(kept) if kept.will_wake(cx.waker()) => {}
            Some(kept) => kept.clone_from(cx.waker()),
            None => {
                waiters.wakers.insert(self.id, cx.waker().clone());
            }
        }
        Poll::Pending
    }

    /// The gate this waiter waits on.
    pub fn gate(&self) -> &ReadGate {
        &self.gate
    }
}

impl Drop for GateWaiter {
    fn drop(&mut self) {
        lock(&self.gate.inner.waiters).wakers.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    /// A waker counting its wakes.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn an_open_gate_is_ready_and_keeps_no_waker() {
        let gate = ReadGate::new();
        let waiter = gate.waiter();
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert!(waiter.poll_open(&mut cx).is_ready());
        assert_eq!(gate.waiting(), 0);
        gate.resume();
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_pause_holds_every_waiter_until_resume_wakes_each_once() {
        let gate = ReadGate::new();
        gate.pause();
        gate.pause();
        assert!(gate.is_paused());
        let (a, b) = (gate.waiter(), gate.clone().waiter());
        let (count_a, waker_a) = counting();
        let (count_b, waker_b) = counting();
        // Polled again and again while paused (a timer wakes the task): one waker each.
        for _ in 0..5 {
            assert!(a.poll_open(&mut Context::from_waker(&waker_a)).is_pending());
            assert!(b.poll_open(&mut Context::from_waker(&waker_b)).is_pending());
        }
        assert_eq!(gate.waiting(), 2);
        gate.resume();
        assert!(!gate.is_paused());
        assert_eq!(count_a.0.load(Ordering::SeqCst), 1);
        assert_eq!(count_b.0.load(Ordering::SeqCst), 1);
        assert_eq!(gate.waiting(), 0);
        assert!(a.poll_open(&mut Context::from_waker(&waker_a)).is_ready());
        // A second resume wakes nobody.
        gate.resume();
        assert_eq!(count_a.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_new_waker_replaces_the_old_one_and_a_dropped_waiter_leaves() {
        let gate = ReadGate::new();
        gate.pause();
        let waiter = gate.waiter();
        let (old, old_waker) = counting();
        let (new, new_waker) = counting();
        assert!(waiter
            .poll_open(&mut Context::from_waker(&old_waker))
            .is_pending());
        assert!(waiter
            .poll_open(&mut Context::from_waker(&new_waker))
            .is_pending());
        assert_eq!(gate.waiting(), 1);
        drop(waiter);
        assert_eq!(gate.waiting(), 0);
        gate.resume();
        assert_eq!(old.0.load(Ordering::SeqCst), 0);
        assert_eq!(new.0.load(Ordering::SeqCst), 0, "dropped: nobody to wake");
    }

    #[test]
    fn a_resume_from_another_thread_wakes_a_blocked_task() {
        let gate = ReadGate::new();
        gate.pause();
        let waiter = gate.waiter();
        let resumer = gate.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            resumer.resume();
        });
        // Parks until the waker is woken: this returns only through `resume`.
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let started = std::time::Instant::now();
        let deadline = started + std::time::Duration::from_secs(10);
        while waiter
            .poll_open(&mut Context::from_waker(&waker))
            .is_pending()
        {
            let now = std::time::Instant::now();
            assert!(now < deadline, "never woken");
            std::thread::park_timeout(deadline - now);
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "woken by the timeout, not by the resume"
        );
        thread.join().unwrap();
        assert!(!gate.is_paused());
    }
}
