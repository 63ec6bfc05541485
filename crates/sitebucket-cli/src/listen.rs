//! `sitebucket listen`: the options mapped onto a [`Config`], the run on the chosen driver,
//! the messages on stdout and the story on stderr.
//!
//! Up to 100 users (and no `--follow-file`) run as one stream in this thread; more go to a
//! `Monitor` steered by [`crate::many`]. Either way, stdout gets each message's payload as
//! one line (a raw CR or LF byte printed as a space) through one locked buffer, flushed
//! whenever a driver has drained its core (it has no further complete message in hand and is
//! about to wait): fast under a firehose, prompt when the stream goes quiet. Each driver tells
//! the CLI through an [`Observer`] on its [`RunState`] ([`Logger`]), which also carries every
//! event of the core (status, backoff, stall, disconnect) into the log lines. SIGINT and
//! SIGTERM stop the run through [`RunState::request_stop`] — what `ListenThread::close` does;
//! SIGHUP goes to the monitor, which re-reads the follow file.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use sitebucket_proto::FrameError;
use sitebucket_proto::ReadError;
use sitebucket_proto::FOLLOW_LIMIT;
use sitebucket_proto::{Api, Auth, BearerToken, ConfigError, V2Param};
use sitebucket_proto::{BackoffPolicy, SquaredBackoff, TwitterBackoff};
use sitebucket_proto::{Config, Credentials, Framing, Parser, SiteStream, With};
use sitebucket_proto::{Outcome, StreamError, StreamEvent};
use sitebucket_thread::sync::lock;
use sitebucket_thread::{Driver, Observer, ReadGate, RunState};

use crate::args::{ApiArg, BackoffName, BearerArgs, CredentialArgs, ListenArgs, WithArg};
use crate::drivers::{with_driver, DriverName, WithDriver};
use crate::ids;
use crate::many::Many;
use crate::sink::NatsSink;

/// The environment variables the credentials come from, in the order `Credentials::new`
/// takes them.
pub(crate) const CREDENTIAL_VARS: [&str; 4] = [
    "SITEBUCKET_CONSUMER_KEY",
    "SITEBUCKET_CONSUMER_SECRET",
    "SITEBUCKET_TOKEN",
    "SITEBUCKET_TOKEN_SECRET",
];

/// Capacity of the stdout buffer.
const STDOUT_BUFFER: usize = 64 * 1024;

/// How long a stopped run may take to end before the process exits anyway.
pub(crate) const STOP_GRACE: Duration = Duration::from_millis(500);

/// Runs `sitebucket listen` and returns the process's exit status.
pub(crate) fn run(args: ListenArgs) -> ExitCode {
    let v2 = is_v2(&args);
    let prepared = if v2 {
        // A v2 stream follows no ids: its rules (or the sample) say what comes.
        follow_refused(&args).and_then(|()| Ok((build_config(&args, &[])?, Vec::new())))
    } else {
        ids::collect(&args).and_then(|follow| {
            let first = &follow[..follow.len().min(FOLLOW_LIMIT)];
            Ok((build_config(&args, first)?, follow))
        })
    };
    let (config, follow) = match prepared {
        Ok(prepared) => prepared,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    // Registered before anything is sent, so a signal at any moment stops the run cleanly.
    let signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("error: cannot install the SIGINT/SIGTERM/SIGHUP handlers: {e}");
            return ExitCode::from(1);
        }
    };
    // The run's stop flag: the single stream's own control, or the monitor's supervisor's.
    let stop = RunState::new();
    let mut output = Output::new(stdout_writer(), args.max_messages, stop.clone());
    if let Some(url) = &args.sink {
        match NatsSink::start(url) {
            Ok(sink) => {
                tracing::info!(
                    "publishing every message to NATS at {} under {}.>",
                    url.server,
                    url.subject
                );
                // The async drivers honour a read gate: handing a message over never blocks
                // their runtime. The thread and mio drivers cannot, so their readers wait.
                let gated = matches!(args.driver, DriverName::Smol | DriverName::Tokio);
                output = output.with_nats(sink, gated);
            }
            Err(why) => {
                eprintln!("error: --sink: {why}");
                return ExitCode::from(1);
            }
        }
    }
    let output = Arc::new(output);
    let book = Arc::new(Book::default());
    // A follow file other than stdin can be read again on SIGHUP: that needs the monitor.
    let reloadable: Option<PathBuf> = args
        .follow_file
        .clone()
        .filter(|path| path.as_os_str() != "-");
    let (hup_tx, hup_rx) = mpsc::channel();
    stop_on_signals(signals, stop.clone(), hup_tx);
    if let Some(every) = args.stats_every {
        report_stats(every, output.clone(), book.clone());
    }
    if v2 {
        tracing::info!(
            "listening to the X API v2 stream ({}) at {} with the {} driver",
            config.api(),
            config.url(),
            args.driver.label()
        );
    } else {
        tracing::info!(
            "listening for {} user(s) at {} with the {} driver",
            follow.len(),
            config.url(),
            args.driver.label()
        );
    }
    if config.endpoint().is_cleartext_remote() {
        tracing::warn!(
            "{} is plain http:// to a host that is not loopback: the request's credentials and \
             every message travel in clear; use https://",
            config.url()
        );
    }
    let outcome = if follow.len() > FOLLOW_LIMIT || reloadable.is_some() {
        with_driver(
            args.driver,
            Many {
                template: config,
                follow,
                fixed: args.follow.clone(),
                follow_file: reloadable,
                output: output.clone(),
                book,
                stop,
                hup: hup_rx,
            },
        )
    } else {
        // One stream on its own. SIGHUP has nothing to re-read: the signal thread
        // says so when it finds nobody listening.
        drop(hup_rx);
        let logger = Logger::new(None, config.url(), output.clone(), book);
        stop.set_observer(Arc::new(logger));
        if let Some(gate) = output.read_gate() {
            stop.set_read_gate(gate);
        }
        with_driver(
            args.driver,
            Single {
                stream: SiteStream::new(config),
                output: output.clone(),
                control: stop,
            },
        )
    };
    output.flush();
    let unacknowledged = output.finish_nats();
    if unacknowledged > 0 {
        tracing::error!(
            "giving up: {unacknowledged} message(s) read were not acknowledged by NATS in time"
        );
        return ExitCode::from(1);
    }
    finish(&outcome, &output)
}

/// How a run ended, for [`finish`].
pub(crate) enum RunEnd {
    /// The single stream's outcome.
    Stream(Outcome),
    /// The monitor stopped on request.
    Stopped,
    /// Every monitored stream gave up (each was logged as it did).
    AllGaveUp,
}

/// One stream on the chosen driver, in this thread.
struct Single {
    stream: SiteStream,
    output: Arc<Output>,
    control: Arc<RunState>,
}

impl WithDriver for Single {
    type Output = RunEnd;

    fn with<D: Driver>(mut self, driver: D) -> RunEnd {
        let mut parser = Printer(self.output);
        RunEnd::Stream(driver.run(&mut self.stream, &mut parser, &self.control))
    }
}

/// Stops the run on the first SIGINT or SIGTERM, through the same [`RunState::request_stop`]
/// as `ListenThread::close`; a second signal, or a run that does not end within
/// [`STOP_GRACE`], ends the process at once. SIGHUP is passed on to `hup`.
fn stop_on_signals(mut signals: Signals, control: Arc<RunState>, hup: mpsc::Sender<()>) {
    // Detached: it blocks in `forever` until the process exits.
    let _ = std::thread::Builder::new()
        .name("sitebucket-signals".into())
        .spawn(move || {
            let mut stopping = false;
            for signal in signals.forever() {
                if signal == SIGHUP {
                    if hup.send(()).is_err() {
                        tracing::info!("received SIGHUP: no --follow-file to re-read; ignored");
                    }
                    continue;
                }
                let name = if signal == SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                if stopping {
                    tracing::warn!("received {name} again: exiting now");
                    std::process::exit(0);
                }
                stopping = true;
                tracing::info!("received {name}: closing the stream");
                control.request_stop();
                // The contract is an exit within a second in every state; should the run
                // not end in time (a driver bug, a stdout nobody reads), end the process.
                let _ = std::thread::Builder::new()
                    .name("sitebucket-stop-watchdog".into())
                    .spawn(|| {
                        std::thread::sleep(STOP_GRACE);
                        tracing::warn!(
                            "the stream did not stop within {}: exiting now",
                            format_duration(STOP_GRACE)
                        );
                        std::process::exit(0);
                    });
            }
        });
}

/// Logs how the run ended and picks the exit status.
fn finish(end: &RunEnd, output: &Output) -> ExitCode {
    let sink = output.lock();
    if let Some(error) = &sink.write_error {
        tracing::error!("giving up: cannot write to stdout: {error}");
        return ExitCode::from(1);
    }
    let stopped = || {
        if sink.stdout_closed {
            tracing::info!("stdout was closed: stopped");
        } else if sink.limit_reached() {
            tracing::info!("printed {} message(s): stopped", sink.printed);
        } else {
            tracing::info!("stopped");
        }
        ExitCode::SUCCESS
    };
    match end {
        RunEnd::Stopped | RunEnd::Stream(Outcome::Stopped) => stopped(),
        RunEnd::AllGaveUp => {
            tracing::error!("giving up: every stream has given up (each reason is logged above)");
            ExitCode::from(1)
        }
        RunEnd::Stream(Outcome::Revoked { code, reason }) => {
            tracing::error!(
                "disconnect message received (code {code}: {reason}); giving up: reconnecting cannot help"
            );
            ExitCode::from(1)
        }
        RunEnd::Stream(other) => {
            tracing::error!("giving up: {other}");
            ExitCode::from(1)
        }
    }
}

/// Every `every`, one stderr line: messages/s and bytes/s printed over the period,
/// reconnects so far, and streams connected / running.
fn report_stats(every: Duration, output: Arc<Output>, book: Arc<Book>) {
    let _ = std::thread::Builder::new()
        .name("sitebucket-stats".into())
        .spawn(move || {
            let (mut messages, mut bytes) = output.counts();
            let mut last = Instant::now();
            loop {
                std::thread::sleep(every);
                let now = Instant::now();
                let (m, b) = output.counts();
                let secs = now.duration_since(last).as_secs_f64().max(1e-3);
                let (up, total) = book.streams_up();
                tracing::info!(
                    "stats: {:.1} messages/s, {:.0} bytes/s, {} reconnect(s), {up}/{total} stream(s) up",
                    (m - messages) as f64 / secs,
                    (b - bytes) as f64 / secs,
                    book.reconnects.load(Ordering::Relaxed),
                );
                (messages, bytes, last) = (m, b, now);
            }
        });
}

/// The four credentials, from their options or (as clap reads them) their environment
/// variables. A missing or empty one is a usage error that names the variable(s).
pub(crate) fn credentials(args: &CredentialArgs) -> Result<Credentials, String> {
    let values = [
        &args.consumer_key,
        &args.consumer_secret,
        &args.token,
        &args.token_secret,
    ];
    let missing: Vec<&str> = CREDENTIAL_VARS
        .iter()
        .zip(values)
        .filter(|(_, value)| value.as_deref().is_none_or(str::is_empty))
        .map(|(name, _)| *name)
        .collect();
    if !missing.is_empty() {
        let (noun, verb) = if missing.len() == 1 {
            ("variable", "is")
        } else {
            ("variables", "are")
        };
        return Err(format!(
            "missing credential: environment {noun} {} {verb} not set (credentials come from {})",
            missing.join(", "),
            CREDENTIAL_VARS.join(", ")
        ));
    }
    let [consumer_key, consumer_secret, token, token_secret] =
        values.map(|value| value.clone().unwrap_or_default());
    Ok(Credentials::new(
        consumer_key,
        consumer_secret,
        token,
        token_secret,
    ))
}

/// The environment variable the Bearer token comes from.
pub(crate) const BEARER_VAR: &str = "SITEBUCKET_BEARER_TOKEN";

/// Whether `--api` names an X API v2 stream.
pub(crate) fn is_v2(args: &ListenArgs) -> bool {
    matches!(args.api, Some(ApiArg::V2Filtered | ApiArg::V2Sample))
}

/// A v2 stream takes no ids: `--follow` or `--follow-file` with one is a usage error.
fn follow_refused(args: &ListenArgs) -> Result<(), String> {
    if !args.follow.is_empty() || args.follow_file.is_some() {
        return Err(
            "--follow and --follow-file are Site Streams options; an X API v2 stream follows \
             its rules (see `sitebucket rules`) or samples every tweet"
                .to_owned(),
        );
    }
    Ok(())
}

/// The Bearer token, from `--bearer-token` or (as clap reads it) `SITEBUCKET_BEARER_TOKEN`.
/// A missing or empty one is a usage error that names the variable.
pub(crate) fn bearer_token(args: &BearerArgs) -> Result<BearerToken, String> {
    match args.bearer_token.as_deref() {
        Some(token) if !token.is_empty() => Ok(BearerToken::new(token)),
        _ => Err(format!(
            "missing credential: environment variable {BEARER_VAR} is not set (an X API v2 \
             stream signs in with a Bearer token)"
        )),
    }
}

/// Maps the options onto a checked [`Config`] following `follow` (at most
/// [`FOLLOW_LIMIT`] ids: the first stream's; a monitor gives each stream its own). Every
/// problem is a usage error, found before anything is sent.
pub(crate) fn build_config(args: &ListenArgs, follow: &[u64]) -> Result<Config, String> {
    let api = match args.api {
        None | Some(ApiArg::Site) => Api::SiteStreams,
        Some(ApiArg::V2Filtered) => Api::V2Filtered,
        Some(ApiArg::V2Sample) => Api::V2Sample,
    };
    let auth: Auth = if api.is_v2() {
        bearer_token(&args.bearer)?.into()
    } else {
        credentials(&args.credentials)?.into()
    };

    let backoff = match args.backoff {
        BackoffName::Twitter => BackoffPolicy::Twitter(TwitterBackoff {
            network_step: args.network_backoff_step,
            network_max: args.network_backoff_max,
            http_start: args.http_backoff_start,
            http_max: args.http_backoff_max,
            rate_limit_start: args.rate_limit_backoff_start,
            ..TwitterBackoff::default()
        }),
        BackoffName::Squared => BackoffPolicy::Squared(SquaredBackoff {
            max: args.http_backoff_max,
            ..SquaredBackoff::default()
        }),
    };
    let mut builder = Config::builder(follow.iter().copied(), Credentials::new("", "", "", ""))
        .api(api)
        .auth(auth)
        .with(match args.with {
            WithArg::User => With::User,
            WithArg::Followings => With::Followings,
        })
        .framing(if args.delimited {
            Framing::Length
        } else {
            Framing::Crlf
        })
        .stall_warnings(args.stall_warnings)
        .replies_all(args.replies_all)
        .stringify_friend_ids(args.stringify_friend_ids)
        .gzip(args.gzip)
        .max_message_bytes(args.max_message_bytes)
        .stall_timeout(args.stall_timeout)
        .backoff(backoff)
        // Explicit, so the squared policy's own default limit does not apply: unlimited
        // unless --retry-limit says otherwise.
        .retry_limit(args.retry_limit);
    if let Some(url) = &args.url {
        builder = builder.url(url.clone());
    }
    let v2_params = [
        (V2Param::Expansions, args.expansions.clone()),
        (V2Param::TweetFields, args.tweet_fields.clone()),
        (V2Param::UserFields, args.user_fields.clone()),
        (V2Param::MediaFields, args.media_fields.clone()),
        (V2Param::PlaceFields, args.place_fields.clone()),
        (V2Param::PollFields, args.poll_fields.clone()),
        (
            V2Param::BackfillMinutes,
            args.backfill_minutes.map(|n| n.to_string()),
        ),
        (V2Param::Partition, args.partition.map(|n| n.to_string())),
    ];
    for (param, value) in v2_params {
        if let Some(value) = value {
            builder = builder.v2_param(param, value);
        }
    }
    // No rng_seed: the core draws each stream's nonce seed from the OS, so nonces differ
    // between runs, not only between attempts of one run.
    if let Some(path) = &args.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read --ca-file {}: {e}", path.display()))?;
        sitebucket_proto::parse_pem_roots(&pem)
            .map_err(|e| format!("--ca-file {} is not usable: {e}", path.display()))?;
        builder = builder.extra_root_certs_pem(pem);
    }
    builder.build().map_err(|e| match e {
        ConfigError::NotForApi { option, api } => format!(
            "{} is not an option of the {api} stream",
            option_flag(option)
        ),
        other => other.to_string(),
    })
}

/// The command-line flag of a query parameter, for usage errors.
fn option_flag(option: &str) -> String {
    match option {
        "delimited" => "--delimited".to_owned(),
        "replies" => "--replies-all".to_owned(),
        other => format!("--{}", other.replace(['.', '_'], "-")),
    }
}

/// stdout as a plain file descriptor, so the only buffer is ours (`Stdout` adds a line buffer).
#[cfg(unix)]
fn stdout_writer() -> Box<dyn Write + Send> {
    use std::os::fd::AsFd;
    match io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(std::fs::File::from(fd)),
        Err(_) => Box::new(io::stdout()),
    }
}

#[cfg(not(unix))]
fn stdout_writer() -> Box<dyn Write + Send> {
    Box::new(io::stdout())
}

/// The buffered stdout, shared by every stream's parser (which writes) and observer (which
/// flushes): one locked writer, so no two messages ever mix inside a line.
pub(crate) struct Output {
    sink: Mutex<Sink>,
    control: Arc<RunState>,
    /// `--sink`: messages go to NATS instead of stdout.
    nats: Option<NatsOut>,
}

/// `--sink`'s hand-over (outside any lock) and its publisher (to drain at the end).
struct NatsOut {
    sender: sitebucket_fleet::PublishSender,
    subject: String,
    sink: Mutex<NatsSink>,
    /// The streams honour the publisher's read gate (smol, tokio): hand over without
    /// waiting. Otherwise a reader waits for room.
    gated: bool,
}

/// What [`Output`] guards.
pub(crate) struct Sink {
    writer: BufWriter<Box<dyn Write + Send>>,
    printed: u64,
    bytes: u64,
    limit: Option<u64>,
    closed: bool,
    stdout_closed: bool,
    write_error: Option<io::Error>,
}

impl Sink {
    fn limit_reached(&self) -> bool {
        self.limit.is_some_and(|limit| self.printed >= limit)
    }

    fn done(&self) -> bool {
        self.closed || self.stdout_closed || self.write_error.is_some() || self.limit_reached()
    }

    /// Records a failed write: a closed reader ends the run quietly, anything else is an error.
    fn failed(&mut self, error: io::Error) {
        if error.kind() == io::ErrorKind::BrokenPipe {
            self.stdout_closed = true;
        } else {
            self.write_error = Some(error);
        }
    }
}

/// Writes `payload` with each raw CR or LF byte as a space, so it takes exactly one line.
/// In valid JSON a raw line break can only be whitespace, so the JSON means the same.
fn write_one_line(writer: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let mut rest = payload;
    while let Some(at) = rest.iter().position(|b| matches!(b, b'\r' | b'\n')) {
        writer.write_all(&rest[..at])?;
        writer.write_all(b" ")?;
        rest = &rest[at + 1..];
    }
    writer.write_all(rest)?;
    writer.write_all(b"\n")
}

impl Output {
    /// Output to `writer`, stopping the run through `control` after `limit` messages.
    pub(crate) fn new(
        writer: Box<dyn Write + Send>,
        limit: Option<u64>,
        control: Arc<RunState>,
    ) -> Self {
        Self {
            sink: Mutex::new(Sink {
                writer: BufWriter::with_capacity(STDOUT_BUFFER, writer),
                printed: 0,
                bytes: 0,
                limit,
                closed: false,
                stdout_closed: false,
                write_error: None,
            }),
            control,
            nats: None,
        }
    }

    /// Publishes to NATS through `sink` instead of printing; `gated`: the streams honour
    /// [`read_gate`](Self::read_gate), so a message is handed over without waiting.
    pub(crate) fn with_nats(mut self, sink: NatsSink, gated: bool) -> Self {
        self.nats = Some(NatsOut {
            sender: sink.sender(),
            subject: sink.subject().to_owned(),
            sink: Mutex::new(sink),
            gated,
        });
        self
    }

    /// `--sink` on a driver that honours it: the gate the publisher pauses while NATS is
    /// behind, for the streams.
    pub(crate) fn read_gate(&self) -> Option<ReadGate> {
        self.nats
            .as_ref()
            .filter(|nats| nats.gated)
            .map(|nats| nats.sender.read_gate())
    }

    /// `--sink`: counts the message as printed (for --max-messages), then hands it to NATS
    /// outside the lock (on the thread and mio drivers the hand-over waits while NATS is
    /// behind; on smol and tokio it never waits, and the read gate pauses the streams).
    fn publish(&self, nats: &NatsOut, message: bytes::Bytes) {
        {
            let mut sink = self.lock();
            if sink.done() {
                return;
            }
            sink.printed += 1;
            sink.bytes += message.len() as u64;
            if sink.limit_reached() {
                self.control.request_stop();
            }
        }
        let outgoing = sitebucket_fleet::Outgoing::new(
            &nats.subject,
            message,
            sitebucket_fleet::DEFAULT_SHARDS,
            nats.sender.id_key(),
        );
        if nats.gated {
            nats.sender.send(outgoing);
        } else {
            nats.sender.send_blocking(outgoing);
        }
    }

    /// `--sink`: drains what is held to NATS; how many messages were not acknowledged.
    pub(crate) fn finish_nats(&self) -> usize {
        match &self.nats {
            Some(nats) => nats
                .sink
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .finish(),
            None => 0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Sink> {
        // A panic while printing leaves a usable buffer behind.
        lock(&self.sink)
    }

    /// Prints one message as one line; stops the run once the limit is reached or stdout
    /// is gone. Messages after that are dropped.
    pub(crate) fn message(&self, payload: &[u8]) {
        let mut sink = self.lock();
        if sink.done() {
            return;
        }
        match write_one_line(&mut sink.writer, payload) {
            Ok(()) => {
                sink.printed += 1;
                sink.bytes += payload.len() as u64;
                if sink.limit_reached() {
                    if let Err(e) = sink.writer.flush() {
                        sink.failed(e);
                    }
                    self.control.request_stop();
                }
            }
            Err(e) => {
                sink.failed(e);
                self.control.request_stop();
            }
        }
    }

    /// Writes out everything buffered.
    pub(crate) fn flush(&self) {
        let mut sink = self.lock();
        if sink.stdout_closed || sink.write_error.is_some() {
            return;
        }
        if let Err(e) = sink.writer.flush() {
            sink.failed(e);
            self.control.request_stop();
        }
    }

    /// Writes out everything buffered and prints nothing more (the run is stopping).
    pub(crate) fn close(&self) {
        self.flush();
        self.lock().closed = true;
    }

    /// Messages printed and their payload bytes, so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let sink = self.lock();
        (sink.printed, sink.bytes)
    }
}

/// The parser: every message to [`Output`].
pub(crate) struct Printer(pub Arc<Output>);

impl Parser for Printer {
    fn parse(&mut self, message: bytes::Bytes) {
        match &self.0.nats {
            Some(nats) => self.0.publish(nats, message),
            None => self.0.message(&message),
        }
    }
}

/// What the observers know of every stream, for `--stats-every` and the monitor's
/// supervisor: reconnects so far, and each stream by number.
#[derive(Default)]
pub(crate) struct Book {
    /// Reconnects scheduled, all streams together.
    pub reconnects: AtomicU64,
    streams: Mutex<BTreeMap<u64, Entry>>,
}

/// One stream in the [`Book`].
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// The first user of its `follow` list: no other live stream follows that user.
    anchor: Option<u64>,
    running: bool,
    up: bool,
}

impl Book {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        lock(&self.streams)
    }

    /// Streams connected (a `200` stream open) and streams running.
    pub(crate) fn streams_up(&self) -> (usize, usize) {
        let streams = self.lock();
        let up = streams.values().filter(|e| e.running && e.up).count();
        let running = streams.values().filter(|e| e.running).count();
        (up, running)
    }

    /// The number of the latest stream whose `follow` list starts with a user of `users`.
    pub(crate) fn number_of(&self, users: &[u64]) -> Option<u64> {
        let streams = self.lock();
        streams
            .iter()
            .rev()
            .find(|(_, e)| e.anchor.is_some_and(|a| users.binary_search(&a).is_ok()))
            .map(|(number, _)| *number)
    }
}

/// The observer of one stream: log lines for the core's events (prefixed `stream N: ` when
/// there are several), its state in the [`Book`], and a flush at the end of every drain.
pub(crate) struct Logger {
    number: u64,
    prefix: String,
    url: String,
    attempts: AtomicU64,
    output: Arc<Output>,
    book: Arc<Book>,
}

impl Logger {
    /// The observer of stream `number` (`None`: the only stream, unnamed in the log).
    pub(crate) fn new(
        number: Option<u64>,
        url: String,
        output: Arc<Output>,
        book: Arc<Book>,
    ) -> Self {
        Self {
            number: number.unwrap_or(0),
            prefix: number.map_or_else(String::new, |n| format!("stream {n}: ")),
            url,
            attempts: AtomicU64::new(0),
            output,
            book,
        }
    }
}

impl Observer for Logger {
    fn event(&self, event: &StreamEvent) {
        let p = &self.prefix;
        match event {
            StreamEvent::Connected {
                status: 200,
                reason,
            } => {
                tracing::info!("{p}HTTP 200 {reason}: connected, streaming")
            }
            // Any other status is logged once, with what follows from it: the backoff
            // (a `Disconnected` event) or giving up (the run's outcome).
            StreamEvent::Connected { status, reason } => {
                tracing::debug!("{p}HTTP {status} {reason}")
            }
            StreamEvent::KeepAlive => tracing::debug!("{p}keep-alive"),
            StreamEvent::Disconnected { error, retry_in } => {
                self.book.reconnects.fetch_add(1, Ordering::Relaxed);
                log_disconnect(p, error, *retry_in)
            }
            _ => {}
        }
    }

    fn drained(&self, stream: &SiteStream) {
        let attempts = stream.stats().attempts;
        if attempts > self.attempts.swap(attempts, Ordering::Relaxed) {
            tracing::info!(
                "{}connecting to {} (attempt {attempts})",
                self.prefix,
                self.url
            );
        }
        {
            let mut streams = self.book.lock();
            let entry = streams.entry(self.number).or_default();
            entry.anchor = stream.config().follow().first().copied();
            entry.running = stream.running();
            entry.up = stream.running() && stream.is_established();
        }
        self.output.flush();
    }
}

/// One line for a failure the stream recovers from by waiting `retry_in`.
fn log_disconnect(p: &str, error: &StreamError, retry_in: Duration) {
    let wait = format_duration(retry_in);
    match error {
        StreamError::Stall(silence) => tracing::warn!(
            "{p}stall detected: no data for {}; backing off {wait} before reconnecting",
            format_duration(*silence)
        ),
        StreamError::DisconnectMessage { code, reason } => tracing::warn!(
            "{p}disconnect message received (code {code}: {reason}); backing off {wait} before reconnecting"
        ),
        StreamError::OperationalDisconnect {
            disconnect_type,
            detail,
        } => tracing::warn!(
            "{p}disconnect message received (operational-disconnect, {disconnect_type}: {detail}); backing off {wait} before reconnecting"
        ),
        StreamError::Read(ReadError::Frame(FrameError::TooLong { limit })) => tracing::warn!(
            "{p}frame too large: a message is longer than --max-message-bytes {limit}; dropped the connection; backing off {wait} before reconnecting"
        ),
        other => tracing::warn!("{p}{other}; backing off {wait} before reconnecting"),
    }
}

/// `250ms`, `5s`, `1.5s`, `320s`: the units the options take.
pub(crate) fn format_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let millis = d.subsec_millis();
    if millis == 0 {
        format!("{}s", d.as_secs())
    } else {
        let fraction = format!("{millis:03}");
        format!("{}.{}s", d.as_secs(), fraction.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser as _;

    fn args(extra: &[&str]) -> ListenArgs {
        let mut argv = vec!["sitebucket", "listen", "--follow", "3,1,2"];
        let values: Vec<String> = CREDENTIAL_VARS
            .iter()
            .map(|name| format!("value-of-{name}"))
            .collect();
        for (flag, value) in [
            "--consumer-key",
            "--consumer-secret",
            "--token",
            "--token-secret",
        ]
        .iter()
        .zip(&values)
        {
            argv.extend([*flag, value.as_str()]);
        }
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Listen(args) => *args,
            _ => panic!("listen expected"),
        }
    }

    fn build(args: &ListenArgs) -> Result<Config, String> {
        build_config(args, &args.follow)
    }

    #[test]
    fn defaults_map_onto_the_config() {
        let config = build(&args(&[])).unwrap();
        assert_eq!(config.follow(), &[1, 2, 3]);
        assert_eq!(config.url(), "https://sitestream.twitter.com/1.1/site.json");
        assert_eq!(config.with(), With::User);
        assert_eq!(config.framing(), Framing::Crlf);
        assert!(!config.gzip() && !config.stall_warnings());
        assert!(!config.replies_all() && !config.stringify_friend_ids());
        assert_eq!(config.retry_limit(), None);
        assert_eq!(config.stall_timeout(), Duration::from_secs(90));
        assert_eq!(config.max_message_bytes(), 8 * 1024 * 1024);
        assert_eq!(
            config.backoff(),
            &BackoffPolicy::Twitter(TwitterBackoff::default())
        );
        let credentials = config.credentials().expect("OAuth 1.0a for Site Streams");
        assert_eq!(
            credentials.consumer_key(),
            "value-of-SITEBUCKET_CONSUMER_KEY"
        );
        assert_eq!(
            credentials.consumer_secret(),
            "value-of-SITEBUCKET_CONSUMER_SECRET"
        );
        assert_eq!(credentials.token(), "value-of-SITEBUCKET_TOKEN");
        assert_eq!(
            credentials.token_secret(),
            "value-of-SITEBUCKET_TOKEN_SECRET"
        );
        assert!(config.extra_root_certs_pem().is_empty());
    }

    #[test]
    fn every_option_maps_onto_the_config() {
        let config = build(&args(&[
            "--url",
            "http://127.0.0.1:9/2b/site.json",
            "--with",
            "followings",
            "--delimited",
            "--stall-warnings",
            "--replies-all",
            "--stringify-friend-ids",
            "--gzip",
            "--retry-limit",
            "4",
            "--stall-timeout",
            "2m",
            "--network-backoff-step",
            "1s",
            "--network-backoff-max",
            "3s",
            "--http-backoff-start",
            "7s",
            "--http-backoff-max",
            "1h",
            "--rate-limit-backoff-start",
            "90s",
            "--max-message-bytes",
            "1000",
        ]))
        .unwrap();
        assert_eq!(config.url(), "http://127.0.0.1:9/2b/site.json");
        assert_eq!(config.with(), With::Followings);
        assert_eq!(config.framing(), Framing::Length);
        assert!(config.gzip() && config.stall_warnings());
        assert!(config.replies_all() && config.stringify_friend_ids());
        assert_eq!(config.retry_limit(), Some(4));
        assert_eq!(config.stall_timeout(), Duration::from_secs(120));
        assert_eq!(config.max_message_bytes(), 1000);
        assert_eq!(
            config.backoff(),
            &BackoffPolicy::Twitter(TwitterBackoff {
                network_step: Duration::from_secs(1),
                network_max: Duration::from_secs(3),
                http_start: Duration::from_secs(7),
                http_max: Duration::from_secs(3600),
                rate_limit_start: Duration::from_secs(90),
                rate_limit_max: Duration::from_secs(16 * 60),
            })
        );
    }

    #[test]
    fn squared_is_capped_by_the_http_max_and_unlimited_unless_told() {
        let config = build(&args(&[
            "--backoff",
            "squared",
            "--http-backoff-max",
            "30s",
        ]))
        .unwrap();
        assert_eq!(
            config.backoff(),
            &BackoffPolicy::Squared(SquaredBackoff {
                start: Duration::from_secs(2),
                max: Duration::from_secs(30),
            })
        );
        assert_eq!(config.retry_limit(), None);
    }

    #[test]
    fn a_missing_or_empty_credential_is_named() {
        let full = args(&[]).credentials;
        for (index, missing) in CREDENTIAL_VARS.iter().enumerate() {
            for value in [None, Some(String::new())] {
                let mut partial = full.clone();
                *[
                    &mut partial.consumer_key,
                    &mut partial.consumer_secret,
                    &mut partial.token,
                    &mut partial.token_secret,
                ][index] = value;
                let error = credentials(&partial).unwrap_err();
                assert!(error.contains(&format!("{missing} is not set")), "{error}");
                for other in CREDENTIAL_VARS.iter().filter(|n| *n != missing) {
                    assert!(
                        !error.contains(&format!("{other} is")),
                        "{error} names {other}"
                    );
                }
            }
        }
        let none = CredentialArgs {
            consumer_key: None,
            consumer_secret: None,
            token: None,
            token_secret: None,
        };
        let error = credentials(&none).unwrap_err();
        assert!(error.contains(&CREDENTIAL_VARS.join(", ")), "{error}");
    }

    #[test]
    fn config_rules_become_usage_errors() {
        let cases: [(&[&str], &str); 4] = [
            (&["--url", "ftp://x/"], "invalid URL"),
            (&["--max-message-bytes", "0"], "max_message_bytes"),
            (
                &["--ca-file", "/nonexistent/ca.pem"],
                "cannot read --ca-file",
            ),
            (&["--ca-file", "Cargo.toml"], "is not usable"),
        ];
        for (extra, expected) in cases {
            let error = build(&args(extra)).unwrap_err();
            assert!(error.contains(expected), "{extra:?}: {error}");
        }
        let zero = Cli::try_parse_from(["sitebucket", "listen", "--follow", "0"]).unwrap_err();
        assert_eq!(zero.exit_code(), 2);
    }

    #[test]
    fn nonces_differ_between_runs() {
        // No fixed seed: each stream draws its own nonce seed from the OS.
        let config = build(&args(&[])).unwrap();
        assert_eq!(config.rng_seed(), None);
        let nonce = |config: &sitebucket_proto::Config| {
            let mut stream = SiteStream::new(config.clone());
            let now = std::time::Instant::now();
            let _ = stream.poll_action(now);
            stream.handle_connected(now, 1_700_000_000);
            let request = stream.last_request().expect("signed").clone();
            let text = String::from_utf8_lossy(&request).into_owned();
            text.split("oauth_nonce=\"")
                .nth(1)
                .unwrap_or_default()
                .to_owned()
        };
        assert_ne!(nonce(&config), nonce(&config));
    }

    #[test]
    fn durations_print_in_option_units() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(1250)), "1.25s");
        assert_eq!(format_duration(Duration::from_secs(320)), "320s");
    }

    /// A writer that records what reaches it, and can fail like a closed pipe.
    #[derive(Clone, Default)]
    struct Recorder {
        written: Arc<Mutex<Vec<u8>>>,
        flushes: Arc<AtomicU64>,
        broken: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.flushes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn output_buffers_until_flushed_and_stops_at_the_limit() {
        let control = RunState::new();
        let recorder = Recorder::default();
        let output = Output::new(Box::new(recorder.clone()), Some(3), control.clone());
        output.message(b"{\"a\":1}");
        output.message(b"{\"b\":\r\n2}");
        assert!(recorder.written.lock().unwrap().is_empty(), "buffered");
        output.flush();
        assert_eq!(
            &recorder.written.lock().unwrap()[..],
            b"{\"a\":1}\n{\"b\":  2}\n"
        );
        assert!(!control.stop_requested());
        output.message(b"3");
        assert!(
            control.stop_requested(),
            "the third message reaches the limit"
        );
        assert!(recorder.written.lock().unwrap().ends_with(b"\n3\n"));
        output.message(b"4");
        output.flush();
        assert_eq!(output.lock().printed, 3);
        assert!(!recorder.written.lock().unwrap().ends_with(b"4\n"));
    }

    #[test]
    fn the_book_names_a_stream_by_the_first_user_of_its_follow_list() {
        let book = Book::default();
        for (number, anchor, running) in [(1, 10, true), (2, 20, false), (3, 20, true)] {
            book.lock().insert(
                number,
                Entry {
                    anchor: Some(anchor),
                    running,
                    up: running,
                },
            );
        }
        assert_eq!(book.number_of(&[5, 10, 11]), Some(1));
        assert_eq!(book.number_of(&[20, 1000]), Some(3), "the latest stream");
        assert_eq!(book.number_of(&[7]), None);
        assert_eq!(book.streams_up(), (2, 2));
    }

    #[test]
    fn a_closed_output_prints_nothing_more() {
        let control = RunState::new();
        let recorder = Recorder::default();
        let output = Output::new(Box::new(recorder.clone()), None, control.clone());
        output.message(b"1");
        output.close();
        output.message(b"2");
        output.flush();
        assert_eq!(&recorder.written.lock().unwrap()[..], b"1\n");
        assert_eq!(output.counts(), (1, 1));
    }

    #[test]
    fn a_closed_stdout_stops_quietly() {
        let control = RunState::new();
        let recorder = Recorder::default();
        let output = Output::new(Box::new(recorder.clone()), None, control.clone());
        output.message(b"x");
        recorder.broken.store(true, Ordering::SeqCst);
        output.flush();
        assert!(control.stop_requested());
        let sink = output.lock();
        assert!(sink.stdout_closed && sink.write_error.is_none());
    }
}
