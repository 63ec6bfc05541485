//! Two small runtime-free wake-ups: the stop request a loop waits on ([`Stop`]) and the one
//! answer of a lookup thread ([`answer`]).

use std::sync::{Arc, Mutex};

use sitebucket_thread::sync::lock;
use std::task::{Context, Poll, Waker};

/// A stop request: raised from any thread ([`raise`](Self::raise)), awaited by one task
/// ([`poll`](Self::poll)). A raise while nobody waits is kept for the next wait, so none is
/// lost between two waits.
#[derive(Default)]
pub(crate) struct Stop {
    state: Mutex<Flag>,
}

#[derive(Default)]
struct Flag {
    raised: bool,
    waiter: Option<Waker>,
}

impl Stop {
    /// Raises the flag and wakes the waiting task, if any.
    pub(crate) fn raise(&self) {
        let waiter = {
            let mut state = lock(&self.state);
            state.raised = true;
            state.waiter.take()
        };
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }

    /// Ready (and the flag lowered) once raised; otherwise pending, with the task's waker
    /// kept for [`raise`](Self::raise).
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = lock(&self.state);
        if std::mem::take(&mut state.raised) {
            return Poll::Ready(());
        }
        match &mut state.waiter {
            Some(waiter) if waiter.will_wake(cx.waker()) => {}
            waiter => *waiter = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// The slot one answer goes through.
struct Slot<T> {
    value: Option<T>,
    /// The sender is gone (answered or dropped).
    closed: bool,
    waiter: Option<Waker>,
}

/// A one-answer channel: the [`Answer`] is sent from any thread, the [`Answered`] future
/// awaits it (`None` if the sender was dropped without answering).
pub(crate) fn answer<T>() -> (Answer<T>, Answered<T>) {
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        closed: false,
        waiter: None,
    }));
    (Answer(slot.clone()), Answered(slot))
}

/// The sending half of [`answer`].
pub(crate) struct Answer<T>(Arc<Mutex<Slot<T>>>);

impl<T> Answer<T> {
    /// Hands `value` to the waiting future (dropped if the future is gone).
    pub(crate) fn send(self, value: T) {
        lock(&self.0).value = Some(value);
        // `drop` closes the slot and wakes the future.
    }
}

impl<T> Drop for Answer<T> {
    fn drop(&mut self) {
        let waiter = {
            let mut slot = lock(&self.0);
            slot.closed = true;
            slot.waiter.take()
        };
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }
}

/// The receiving half of [`answer`]: a future of the answer.
pub(crate) struct Answered<T>(Arc<Mutex<Slot<T>>>);

impl<T> std::future::Future for Answered<T> {
    type Output = Option<T>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut slot = lock(&self.0);
        if let Some(value) = slot.value.take() {
            return Poll::Ready(Some(value));
        }
        if slot.closed {
            return Poll::Ready(None);
        }
        slot.waiter = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn a_stop_raised_before_the_wait_is_kept_and_taken_once() {
        let stop = Stop::default();
        stop.raise();
        stop.raise();
        assert!(future::block_on(future::poll_fn(|cx| Poll::Ready(stop.poll(cx)))).is_ready());
        assert!(future::block_on(future::poll_fn(|cx| Poll::Ready(stop.poll(cx)))).is_pending());
    }

    #[test]
    fn a_stop_raised_from_another_thread_wakes_the_waiting_task() {
        let stop = Arc::new(Stop::default());
        let raiser = stop.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            raiser.raise();
        });
        future::block_on(future::poll_fn(|cx| stop.poll(cx)));
        thread.join().unwrap();
    }

    #[test]
    fn an_answer_arrives_and_a_dropped_sender_is_no_answer() {
        let (tx, rx) = answer();
        std::thread::spawn(move || tx.send(7));
        assert_eq!(future::block_on(rx), Some(7));
        let (tx, rx) = answer::<u8>();
        std::thread::spawn(move || drop(tx));
        assert_eq!(future::block_on(rx), None);
    }
}
