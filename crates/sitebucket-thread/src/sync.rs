//! Locking shared by the handle crate and every driver.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, tolerating poison: a panic elsewhere while holding the lock leaves plain
/// data behind (counters, queues, flags), which stays usable, so a panicked thread does not
/// take every other user of the data down with it.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock poisoned by a panicking holder still hands out the data.
    #[test]
    fn a_poisoned_lock_still_locks() {
        let m = std::sync::Arc::new(Mutex::new(7));
        let held = m.clone();
        let _ = std::thread::spawn(move || {
            let _guard = held.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 8);
    }
}
