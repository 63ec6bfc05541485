//! What a simulation run did: every action of the core with its virtual time, every
//! connection, every server attempt, and every broken invariant.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use sitebucket_proto::{Outcome, StreamError};
use sitebucket_testserver::AttemptRecord;

use crate::network::Fault;

/// How much of a run the [`Trace`] keeps. The checks run the same either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recording {
    /// Every action, and every message's bytes per connection.
    Everything,
    /// Only connects, heads, transmits, closes, disconnects and the finish; messages and
    /// keep-alives are counted, not kept. For long runs.
    Lifecycle,
}

/// One action of the core, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// `Action::Connect`.
    Connect {
        /// Host asked for.
        host: String,
        /// Port asked for.
        port: u16,
        /// Whether TLS was asked for.
        tls: bool,
    },
    /// `Action::Transmit` of this many bytes.
    Transmit(usize),
    /// `StreamEvent::Connected`.
    Connected {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
    },
    /// `StreamEvent::Message` of this many bytes (the bytes are in [`ConnectionLog::messages`]).
    Message(usize),
    /// `StreamEvent::KeepAlive`.
    KeepAlive,
    /// `StreamEvent::Disconnected`.
    Disconnected {
        /// Why.
        error: StreamError,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
    /// `Action::Close`.
    Close,
    /// `Action::Finished` (recorded once).
    Finished(Outcome),
}

impl fmt::Display for Recorded {
    /// The compact form [`Trace::story`] uses. Transmit sizes are left out (a signed request's
    /// length varies with its percent-encoded signature); they stay in the [`Entry`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recorded::Connect { host, port, tls } => {
                write!(f, "connect {host}:{port}{}", if *tls { " tls" } else { "" })
            }
            Recorded::Transmit(_) => f.write_str("transmit"),
            Recorded::Connected { status, reason } => write!(f, "connected {status} {reason}"),
            Recorded::Message(_) => f.write_str("message"),
            Recorded::KeepAlive => f.write_str("keep-alive"),
            Recorded::Disconnected { error, retry_in } => {
                write!(f, "disconnected ({error}), retry in {retry_in:?}")
            }
            Recorded::Close => f.write_str("close"),
            Recorded::Finished(outcome) => write!(f, "finished: {outcome}"),
        }
    }
}

/// One recorded action.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Virtual time since the start of the run.
    pub at: Duration,
    /// The connection it belongs to (the client's `Connect` ordinal), if any.
    pub connection: Option<usize>,
    /// What the core did.
    pub what: Recorded,
}

/// One connection attempt, from the client's `Connect` to its `Close`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionLog {
    /// The client's `Connect` ordinal (0-based).
    pub index: usize,
    /// When the client asked to connect.
    pub connect_at: Duration,
    /// The fault the network applied, if any.
    pub fault: Option<Fault>,
    /// The server's attempt index, if the server accepted it.
    pub attempt: Option<usize>,
    /// The status of the head the client saw.
    pub status: Option<u16>,
    /// The messages the client handed out, in order (with [`Recording::Everything`]).
    pub messages: Vec<Bytes>,
    /// How many messages the client handed out.
    pub message_count: u64,
    /// How many keep-alives the client handed out.
    pub keep_alives: u64,
    /// Bytes the client transmitted.
    pub bytes_sent: u64,
    /// Bytes the network delivered to the client on this connection.
    pub bytes_received: u64,
    /// When the client closed it (or the attempt failed).
    pub closed_at: Option<Duration>,
}

/// Everything a run recorded. See [`Sim::trace`](crate::Sim::trace).
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// The core's actions in order (`Wait` is checked, not recorded).
    pub actions: Vec<Entry>,
    /// What the server saw of each attempt it accepted, in accept order.
    pub attempts: Vec<AttemptRecord>,
    /// Every connection the client started, in order.
    pub connections: Vec<ConnectionLog>,
    /// Every broken invariant, with its virtual time. Empty in a correct run.
    pub violations: Vec<String>,
    /// Messages handed out in all.
    pub messages: u64,
    /// Keep-alives handed out in all.
    pub keep_alives: u64,
    /// How the core finished, once it has.
    pub outcome: Option<Outcome>,
}

impl Trace {
    /// The actions as `"<seconds>.<millis> <action>"` lines, e.g. `"60.000 connect
    /// 127.0.0.1:8080"`: the form the scenario tests compare whole.
    pub fn story(&self) -> Vec<String> {
        self.actions
            .iter()
            .map(|e| format!("{}.{:03} {}", e.at.as_secs(), e.at.subsec_millis(), e.what))
            .collect()
    }

    /// When each `Connect` happened.
    pub fn connect_times(&self) -> Vec<Duration> {
        self.connections.iter().map(|c| c.connect_at).collect()
    }

    /// Every `Disconnected` wait, in order.
    pub fn retry_waits(&self) -> Vec<Duration> {
        self.actions
            .iter()
            .filter_map(|e| match &e.what {
                Recorded::Disconnected { retry_in, .. } => Some(*retry_in),
                _ => None,
            })
            .collect()
    }

    /// How many `Connect` actions there were.
    pub fn connects(&self) -> usize {
        self.connections.len()
    }

    /// Panics with every violation (and the story's tail) if there is any.
    pub fn assert_clean(&self) {
        if self.violations.is_empty() {
            return;
        }
        let story = self.story();
        let tail = &story[story.len().saturating_sub(40)..];
        panic!(
            "{} invariant violation(s):\n  {}\nlast actions:\n  {}",
            self.violations.len(),
            self.violations.join("\n  "),
            tail.join("\n  ")
        );
    }
}
