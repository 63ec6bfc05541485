//! `listen` for more than 100 users (or with a `--follow-file` that SIGHUP re-reads): a
//! [`Monitor`] runs the streams on the chosen driver, and a supervisor thread steers it.
//!
//! - First wave: as many streams as 1,000-user connections are needed, each connecting
//!   with 100 users (the most a `follow` list takes).
//! - Once they have announced their control streams (or it is clear they will not: one has
//!   been streaming for [`ANNOUNCE_WAIT`] without announcing, or [`FIRST_WAVE_WAIT`] has
//!   passed), the other users are added: through control streams up to 1,000 users a
//!   connection, then on new connections of 100.
//! - A stream that ends for good (401, revoked, `--retry-limit`) is logged with its users,
//!   which are then dropped; the others go on. When every stream has ended so, the run
//!   gives up.
//! - SIGHUP re-reads `--follow-file` and adds and removes the difference.
//! - Every few hundred milliseconds the monitor restarts a stream that lost its run and
//!   re-applies control changes to connections that reconnected.
//!
//! Messages of every stream go to one locked [`Output`]; the log
//! lines of stream N start with `stream N: `.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use sitebucket_proto::control::MAX_USERS_PER_STREAM;
use sitebucket_proto::Config;
use sitebucket_proto::Outcome;
use sitebucket_proto::FOLLOW_LIMIT;
use sitebucket_thread::{Driver, Monitor, RunState};

use crate::drivers::WithDriver;
use crate::ids;
use crate::listen::{Book, Logger, Output, Printer, RunEnd};

/// How often the supervisor looks at the streams.
const TICK: Duration = Duration::from_millis(200);

/// How long a first-wave stream may stream without announcing a control stream before the
/// other users go on connections of their own.
pub(crate) const ANNOUNCE_WAIT: Duration = Duration::from_secs(3);

/// The longest the other users wait for the first wave to announce, however it fares.
pub(crate) const FIRST_WAVE_WAIT: Duration = Duration::from_secs(30);

/// How long a stop waits for the streams to close before the process exits anyway.
const CLOSE_WAIT: Duration = Duration::from_millis(300);

/// The monitored run: what `listen` hands over.
pub(crate) struct Many {
    /// Every stream's config, but for its follow list.
    pub template: Config,
    /// Every user, sorted, each once.
    pub follow: Vec<u64>,
    /// The ids of `--follow`, kept across SIGHUP re-reads of the file.
    pub fixed: Vec<u64>,
    /// The file SIGHUP re-reads.
    pub follow_file: Option<PathBuf>,
    /// stdout.
    pub output: Arc<Output>,
    /// The streams' state, kept by their observers.
    pub book: Arc<Book>,
    /// The run's stop flag (signals, `--max-messages`, stdout closed).
    pub stop: Arc<RunState>,
    /// One `()` per SIGHUP.
    pub hup: mpsc::Receiver<()>,
}

/// Why the supervisor ended.
enum Ending {
    Stop,
    AllGaveUp,
}

impl WithDriver for Many {
    type Output = RunEnd;

    fn with<D: Driver>(self, driver: D) -> RunEnd {
        let url = self.template.url();
        let printer_output = self.output.clone();
        let monitor = Arc::new(Monitor::new(driver, self.template, move || {
            Box::new(Printer(printer_output.clone()))
        }));
        if let Some(gate) = self.output.read_gate() {
            monitor.set_read_gate(gate);
        }
        {
            let (output, book) = (self.output.clone(), self.book.clone());
            monitor.set_observers(move |number| {
                Arc::new(Logger::new(
                    Some(number),
                    url.clone(),
                    output.clone(),
                    book.clone(),
                ))
            });
        }
        // Streams the monitor sets aside itself (a 401 or a revoke it saw first) are logged
        // the same way as those the supervisor retires.
        {
            let book = self.book.clone();
            monitor.set_failed_hook(move |failed| {
                log_given_up(&book, &failed.follows, &failed.outcome);
            });
        }
        let (done, ended) = mpsc::channel();
        let stopped = done.clone();
        // Called at once if a stop came first.
        self.stop.set_waker(Arc::new(move || {
            let _ = stopped.send(Ending::Stop);
        }));
        let supervisor = Supervisor {
            monitor: monitor.clone(),
            desired: self.follow.iter().copied().collect(),
            pending: Vec::new(),
            fixed: self.fixed,
            follow_file: self.follow_file,
            book: self.book,
            stop: self.stop.clone(),
            hup: self.hup,
        };
        let spawned = std::thread::Builder::new()
            .name("sitebucket-supervisor".into())
            .spawn(move || {
                let ending = supervisor.run(&self.follow);
                let _ = done.send(ending);
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the supervisor thread: {e}");
            return RunEnd::AllGaveUp;
        }
        let ending = ended.recv().unwrap_or(Ending::Stop);
        self.output.close();
        // Close every stream; should a control request hold the monitor, do not wait long:
        // the process's exit closes the connections all the same.
        let (closed_tx, closed) = mpsc::channel();
        let closing = monitor.clone();
        let _ = std::thread::Builder::new()
            .name("sitebucket-close".into())
            .spawn(move || {
                closing.disconnect();
                let _ = closed_tx.send(());
            });
        let _ = closed.recv_timeout(CLOSE_WAIT);
        match ending {
            Ending::Stop => RunEnd::Stopped,
            Ending::AllGaveUp => RunEnd::AllGaveUp,
        }
    }
}

/// Steers the monitor (see the module's doc).
struct Supervisor<D: Driver> {
    monitor: Arc<Monitor<D>>,
    /// The users the run should follow: `--follow` and the file as last read.
    desired: BTreeSet<u64>,
    /// Users waiting for the first wave to announce.
    pending: Vec<u64>,
    fixed: Vec<u64>,
    follow_file: Option<PathBuf>,
    book: Arc<Book>,
    stop: Arc<RunState>,
    hup: mpsc::Receiver<()>,
}

impl<D: Driver> Supervisor<D> {
    fn run(mut self, follow: &[u64]) -> Ending {
        let started = Instant::now();
        let connections = follow.len().div_ceil(MAX_USERS_PER_STREAM);
        let first = follow.len().min(connections * FOLLOW_LIMIT);
        self.pending = follow[first..].to_vec();
        if let Err(e) = self.monitor.add_follows(&follow[..first]) {
            tracing::error!("cannot start the streams: {e}");
            return Ending::AllGaveUp;
        }
        if self.pending.is_empty() {
            tracing::info!(
                "{} stream(s) started for {} user(s)",
                self.monitor.streams().len(),
                follow.len()
            );
        } else {
            tracing::info!(
                "{} stream(s) started with {first} user(s); the other {} join once they announce control streams",
                self.monitor.streams().len(),
                self.pending.len()
            );
        }
        let mut first_up: Option<Instant> = None;
        loop {
            if self.stop.stop_requested() {
                return Ending::Stop;
            }
            self.retire_failed();
            if self.monitor.streams().is_empty() {
                // Every stream gave up (the first wave is never empty, and a SIGHUP never
                // empties the set); users still waiting would meet the same answer.
                if !self.pending.is_empty() {
                    tracing::error!(
                        "the other {} user(s) were never started: every stream gave up first",
                        self.pending.len()
                    );
                }
                return Ending::AllGaveUp;
            }
            if !self.pending.is_empty() {
                if first_up.is_none() && self.book.streams_up().0 > 0 {
                    first_up = Some(Instant::now());
                }
                let streams = self.monitor.streams();
                let all_announced = streams.iter().all(|s| s.status.stream_id.is_some());
                let waited_enough = first_up.is_some_and(|at| at.elapsed() >= ANNOUNCE_WAIT)
                    || started.elapsed() >= FIRST_WAVE_WAIT;
                if all_announced || waited_enough {
                    self.add_pending(all_announced);
                }
            }
            if self.stop.stop_requested() {
                return Ending::Stop;
            }
            // Restarts a run its driver lost; re-applies control changes after reconnects.
            if let Err(e) = self.monitor.check() {
                tracing::warn!("{e}");
            }
            match self.hup.recv_timeout(TICK) {
                Ok(()) => self.reload(),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(TICK),
            }
        }
    }

    /// The users held back for the first wave, now: through control where streams
    /// announced, on new connections otherwise.
    fn add_pending(&mut self, all_announced: bool) {
        let users = std::mem::take(&mut self.pending);
        let before = self.monitor.streams().len();
        if !all_announced {
            tracing::info!(
                "not every stream announced a control stream: the other users go on connections of their own"
            );
        }
        match self.monitor.add_follows(&users) {
            Ok(()) => tracing::info!(
                "added {} user(s): {} stream(s) now ({} new)",
                users.len(),
                self.monitor.streams().len(),
                self.monitor.streams().len().saturating_sub(before)
            ),
            Err(e) => tracing::error!("cannot add {} user(s): {e}", users.len()),
        }
    }

    /// Logs and closes each stream that ended for good, dropping its users: those the monitor
    /// would restart (`--retry-limit` reached) as well as those it sets aside itself.
    fn retire_failed(&mut self) {
        for stream in self.monitor.streams() {
            let Some(outcome) = stream.status.outcome.as_ref().filter(|o| o.is_failure()) else {
                continue;
            };
            let name = log_given_up(&self.book, &stream.follow, outcome);
            if let Err(e) = self.monitor.remove_follows(&stream.follow) {
                tracing::warn!("{name}: {e}");
            }
        }
    }

    /// SIGHUP: reads the file again and applies the difference.
    fn reload(&mut self) {
        let Some(path) = &self.follow_file else {
            tracing::info!("received SIGHUP: no --follow-file to re-read; ignored");
            return;
        };
        let read = ids::read_file(path).and_then(|from_file| {
            ids::check(self.fixed.iter().copied().chain(from_file).collect())
        });
        let now: BTreeSet<u64> = match read {
            Ok(ids) => ids.into_iter().collect(),
            Err(e) => {
                tracing::error!("received SIGHUP: {e}; still following the same users");
                return;
            }
        };
        let added: Vec<u64> = now.difference(&self.desired).copied().collect();
        let removed: Vec<u64> = self.desired.difference(&now).copied().collect();
        self.desired = now;
        tracing::info!(
            "received SIGHUP: re-read {}: {} user(s) to add{}, {} to remove{}",
            path.display(),
            added.len(),
            sample(&added),
            removed.len(),
            sample(&removed)
        );
        if !removed.is_empty() {
            self.pending.retain(|u| removed.binary_search(u).is_err());
            match self.monitor.remove_follows(&removed) {
                Ok(closed) if closed > 0 => {
                    tracing::info!("closed {closed} stream(s) left with no user")
                }
                Ok(_) => {}
                Err(e) => tracing::error!("cannot remove every user: {e}"),
            }
        }
        if !added.is_empty() {
            if self.pending.is_empty() {
                let before = self.monitor.streams().len();
                match self.monitor.add_follows(&added) {
                    Ok(()) => {}
                    Err(e) => tracing::error!("cannot add every user: {e}"),
                }
                let after = self.monitor.streams().len();
                if after > before {
                    tracing::info!("opened {} new stream(s)", after - before);
                }
            } else {
                self.pending.extend(added);
            }
        }
        tracing::info!(
            "following {} user(s) on {} stream(s)",
            self.monitor.follows().len(),
            self.monitor.streams().len()
        );
    }
}

/// Logs a stream that gave up for good, with why and its users; returns its name.
fn log_given_up(book: &Book, users: &[u64], outcome: &Outcome) -> String {
    let name = book
        .number_of(users)
        .map_or_else(|| "a stream".to_owned(), |n| format!("stream {n}"));
    let ids: Vec<String> = users.iter().map(u64::to_string).collect();
    tracing::error!(
        "{name}: giving up: {}; no longer following its {} user(s): {}",
        describe(outcome),
        ids.len(),
        ids.join(",")
    );
    name
}

/// ` (1,2,3)` for a few users, nothing for many.
fn sample(users: &[u64]) -> String {
    if users.is_empty() || users.len() > 20 {
        return String::new();
    }
    let ids: Vec<String> = users.iter().map(u64::to_string).collect();
    format!(" ({})", ids.join(","))
}

/// Why a stream ended for good, in the words of the single-stream log.
fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Revoked { code, reason } => {
            format!("disconnect message received (code {code}: {reason}); reconnecting cannot help")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_list_few_users_only() {
        assert_eq!(sample(&[]), "");
        assert_eq!(sample(&[1, 2]), " (1,2)");
        let many: Vec<u64> = (1..=21).collect();
        assert_eq!(sample(&many), "");
    }
}
