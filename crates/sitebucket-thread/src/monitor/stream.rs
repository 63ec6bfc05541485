//! What the monitor shows of its streams: each one running, and each one set aside.

use std::sync::Arc;

use sitebucket_proto::Outcome;

use crate::run_state::Status;

/// A monitored stream that ended in a way retrying cannot fix, as [`Monitor::failed`](super::Monitor::failed) shows
/// it: the monitor no longer runs it, and its users are no longer covered.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FailedStream {
    /// The users it followed (sorted): its `follow` list and the users moved onto it through
    /// its control stream.
    pub follows: Vec<u64>,
    /// How it ended, an end no retry can fix ([`Outcome::is_final`]): [`Outcome::Fatal`] (a status such as 401 or 403) or
    /// [`Outcome::Revoked`] (a `disconnect` message with code 6 or 7).
    pub outcome: Outcome,
}

/// Called once with each stream the monitor sets aside (see [`Monitor::set_failed_hook`](super::Monitor::set_failed_hook)).
pub type FailedStreamHook = Arc<dyn Fn(&FailedStream) + Send + Sync>;

/// One monitored stream, as [`Monitor::streams`](super::Monitor::streams) shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitoredStream {
    /// The users it follows (sorted): its `follow` list and the users moved onto it through
    /// its control stream.
    pub follow: Vec<u64>,
    /// Its live status (its control stream id included).
    pub status: Status,
}
