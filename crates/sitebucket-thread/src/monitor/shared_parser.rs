//! A parser adapter: one parser behind a mutex, fed by several streams.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use sitebucket_proto::Parser;

use crate::sync::lock;

/// One parser shared by several streams (behind a mutex): clone it into each stream.
pub struct SharedParser<P>(Arc<Mutex<P>>);

impl<P: Parser> SharedParser<P> {
    /// Shares `parser`.
    pub fn new(parser: P) -> Self {
        Self(Arc::new(Mutex::new(parser)))
    }

    /// The parser, locked (e.g. to read what it gathered).
    pub fn lock(&self) -> MutexGuard<'_, P> {
        // A parser that panicked mid-message is still the user's to inspect.
        lock(&self.0)
    }
}

impl<P> Clone for SharedParser<P> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<P> fmt::Debug for SharedParser<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedParser").finish_non_exhaustive()
    }
}

impl<P: Parser> Parser for SharedParser<P> {
    fn parse(&mut self, message: Bytes) {
        self.lock().parse(message);
    }
}
