//! Test support shared by the parser adapters' memory-bound tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A read block that counts itself in `live` while any message sliced from it lives.
pub(crate) struct TrackedBlock {
    pub(crate) block: Vec<u8>,
    pub(crate) live: Arc<AtomicUsize>,
}

impl AsRef<[u8]> for TrackedBlock {
    fn as_ref(&self) -> &[u8] {
        &self.block
    }
}

impl Drop for TrackedBlock {
    fn drop(&mut self) {
        self.live.fetch_sub(self.block.len(), Ordering::SeqCst);
    }
}
