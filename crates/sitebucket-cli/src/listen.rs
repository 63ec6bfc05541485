//! `sitebucket listen`: the options mapped onto a [`Config`], the run on the chosen driver,
//! the messages on stdout and the story on stderr.
//!
//! stdout gets each message's exact payload bytes and a `\n`, through a buffer that is flushed
//! whenever the driver has drained the core (it has no further complete message in hand and is
//! about to wait): fast under a firehose, prompt when the stream goes quiet. The driver tells
//! the CLI through an [`Observer`] on its [`Control`], which also carries every event of the
//! core (status, backoff, stall, disconnect) into the log lines. SIGINT and SIGTERM stop the run
//! through [`Control::request_stop`] — what `ListenThread::close` does.

use std::ffi::OsString;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use sitebucket_proto::backoff::{BackoffPolicy, SquaredBackoff, TwitterBackoff};
use sitebucket_proto::framer::FrameError;
use sitebucket_proto::pipeline::ReadError;
use sitebucket_proto::stream::{Event, Outcome, StreamError};
use sitebucket_proto::{Config, Credentials, Framing, Parser, SiteStream, With};
use sitebucket_thread::{Control, Driver, Observer};

use crate::args::{BackoffName, DriverName, ListenArgs, WithArg};

/// The environment variables the credentials come from, in the order `Credentials::new`
/// takes them.
pub const CREDENTIAL_VARS: [&str; 4] = [
    "SITEBUCKET_CONSUMER_KEY",
    "SITEBUCKET_CONSUMER_SECRET",
    "SITEBUCKET_TOKEN",
    "SITEBUCKET_TOKEN_SECRET",
];

/// Capacity of the stdout buffer.
const STDOUT_BUFFER: usize = 64 * 1024;

/// How long a stopped run may take to end before the process exits anyway.
const STOP_GRACE: Duration = Duration::from_millis(500);

/// Runs `sitebucket listen` and returns the process's exit status.
pub fn run(args: ListenArgs) -> ExitCode {
    let config = match build_config(&args, |name| std::env::var_os(name)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    // Registered before anything is sent, so a signal at any moment stops the run cleanly.
    let signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("error: cannot install the SIGINT/SIGTERM handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let control = Control::new();
    let output = Arc::new(Output::new(
        stdout_writer(),
        args.max_messages,
        control.clone(),
    ));
    control.set_observer(Arc::new(Logger {
        url: config.url(),
        attempts: AtomicU64::new(0),
        output: output.clone(),
    }));
    stop_on_signals(signals, control.clone());

    tracing::info!(
        "listening for {} user(s) at {} with the {} driver",
        config.follow().len(),
        config.url(),
        driver_label(args.driver)
    );
    if config.endpoint().is_cleartext_remote() {
        tracing::warn!(
            "{} is plain http:// to a host that is not loopback: the signed request and every \
             message travel in clear; use https://",
            config.url()
        );
    }
    let mut stream = SiteStream::new(config);
    let mut parser = Printer(output.clone());
    let outcome = match args.driver {
        DriverName::Thread => drive(
            sitebucket_std::StdDriver::new(),
            &mut stream,
            &mut parser,
            &control,
        ),
        DriverName::Mio => drive(
            sitebucket_mio::MioDriver::new(),
            &mut stream,
            &mut parser,
            &control,
        ),
        DriverName::Smol => drive(
            sitebucket_smol::SmolDriver::new(),
            &mut stream,
            &mut parser,
            &control,
        ),
    };
    output.flush();
    finish(&outcome, &output)
}

/// Stops the run on the first SIGINT or SIGTERM, through the same [`Control::request_stop`]
/// as `ListenThread::close`; a second signal, or a run that does not end within
/// [`STOP_GRACE`], ends the process at once.
fn stop_on_signals(mut signals: Signals, control: Arc<Control>) {
    // Detached: it blocks in `forever` until the process exits.
    let _ = std::thread::Builder::new()
        .name("sitebucket-signals".into())
        .spawn(move || {
            let mut stopping = false;
            for signal in signals.forever() {
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

fn drive<D: Driver>(
    driver: D,
    stream: &mut SiteStream,
    parser: &mut dyn Parser,
    control: &Arc<Control>,
) -> Outcome {
    driver.run(stream, parser, control)
}

fn driver_label(driver: DriverName) -> &'static str {
    match driver {
        DriverName::Thread => "thread",
        DriverName::Mio => "mio",
        DriverName::Smol => "smol",
    }
}

/// Logs how the run ended and picks the exit status.
fn finish(outcome: &Outcome, output: &Output) -> ExitCode {
    let sink = output.lock();
    if let Some(error) = &sink.write_error {
        tracing::error!("giving up: cannot write to stdout: {error}");
        return ExitCode::from(1);
    }
    match outcome {
        Outcome::Stopped => {
            if sink.stdout_closed {
                tracing::info!("stdout was closed: stopped");
            } else if sink.limit_reached() {
                tracing::info!("printed {} message(s): stopped", sink.printed);
            } else {
                tracing::info!("stopped");
            }
            ExitCode::SUCCESS
        }
        Outcome::Revoked { code, reason } => {
            tracing::error!(
                "disconnect message received (code {code}: {reason}); giving up: reconnecting cannot help"
            );
            ExitCode::from(1)
        }
        other => {
            tracing::error!("giving up: {other}");
            ExitCode::from(1)
        }
    }
}

/// Reads the four credential variables through `env`. A missing, empty or non-UTF-8 one is a
/// usage error that names the variable(s).
pub fn credentials_from_env(env: impl Fn(&str) -> Option<OsString>) -> Result<Credentials, String> {
    let mut values = Vec::with_capacity(CREDENTIAL_VARS.len());
    let mut missing = Vec::new();
    for name in CREDENTIAL_VARS {
        match env(name).map(OsString::into_string) {
            Some(Ok(value)) if !value.is_empty() => values.push(value),
            Some(Ok(_)) | None => missing.push(name),
            Some(Err(_)) => return Err(format!("environment variable {name} is not valid UTF-8")),
        }
    }
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
    let [consumer_key, consumer_secret, token, token_secret]: [String; 4] = values
        .try_into()
        .map_err(|_| "internal error: credential count".to_owned())?;
    Ok(Credentials::new(
        consumer_key,
        consumer_secret,
        token,
        token_secret,
    ))
}

/// Maps the options and the credential variables (read through `env`) onto a checked
/// [`Config`]. Every problem is a usage error, found before anything is sent.
pub fn build_config(
    args: &ListenArgs,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Config, String> {
    let credentials = credentials_from_env(&env)?;

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
    let mut builder = Config::builder(args.follow.0.iter().copied(), credentials)
        .url(args.url.clone())
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
        // No rng_seed: the core draws each stream's nonce seed from the OS, so nonces differ
        // between runs, not only between attempts of one run.
        .retry_limit(args.retry_limit);
    if let Some(path) = &args.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read --ca-file {}: {e}", path.display()))?;
        sitebucket_proto::tls::parse_pem_roots(&pem)
            .map_err(|e| format!("--ca-file {} is not usable: {e}", path.display()))?;
        builder = builder.extra_root_certs_pem(pem);
    }
    builder.build().map_err(|e| e.to_string())
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

/// The buffered stdout, shared by the parser (which writes) and the observer (which
/// flushes). Both run on the driver's thread, so the lock is never contended.
pub struct Output {
    sink: Mutex<Sink>,
    control: Arc<Control>,
}

/// What [`Output`] guards.
pub struct Sink {
    writer: BufWriter<Box<dyn Write + Send>>,
    printed: u64,
    limit: Option<u64>,
    stdout_closed: bool,
    write_error: Option<io::Error>,
}

impl Sink {
    fn limit_reached(&self) -> bool {
        self.limit.is_some_and(|limit| self.printed >= limit)
    }

    fn done(&self) -> bool {
        self.stdout_closed || self.write_error.is_some() || self.limit_reached()
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

impl Output {
    /// Output to `writer`, stopping the run through `control` after `limit` messages.
    pub fn new(writer: Box<dyn Write + Send>, limit: Option<u64>, control: Arc<Control>) -> Self {
        Self {
            sink: Mutex::new(Sink {
                writer: BufWriter::with_capacity(STDOUT_BUFFER, writer),
                printed: 0,
                limit,
                stdout_closed: false,
                write_error: None,
            }),
            control,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Sink> {
        // A panic while printing leaves a usable buffer behind.
        self.sink
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Prints one message and a newline; stops the run once the limit is reached or stdout
    /// is gone. Messages after that are dropped.
    pub fn message(&self, payload: &[u8]) {
        let mut sink = self.lock();
        if sink.done() {
            return;
        }
        let written = sink
            .writer
            .write_all(payload)
            .and_then(|()| sink.writer.write_all(b"\n"));
        match written {
            Ok(()) => {
                sink.printed += 1;
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
    pub fn flush(&self) {
        let mut sink = self.lock();
        if sink.stdout_closed || sink.write_error.is_some() {
            return;
        }
        if let Err(e) = sink.writer.flush() {
            sink.failed(e);
            self.control.request_stop();
        }
    }
}

/// The parser: every message to [`Output`].
struct Printer(Arc<Output>);

impl Parser for Printer {
    fn parse(&mut self, message: bytes::Bytes) {
        self.0.message(&message);
    }
}

/// The observer: log lines for the core's events, and a flush at the end of every drain.
struct Logger {
    url: String,
    attempts: AtomicU64,
    output: Arc<Output>,
}

impl Observer for Logger {
    fn event(&self, event: &Event) {
        match event {
            Event::Connected {
                status: 200,
                reason,
            } => {
                tracing::info!("HTTP 200 {reason}: connected, streaming")
            }
            Event::Connected { status, reason } => tracing::warn!("HTTP {status} {reason}"),
            Event::KeepAlive => tracing::debug!("keep-alive"),
            Event::Disconnected { error, retry_in } => log_disconnect(error, *retry_in),
            _ => {}
        }
    }

    fn drained(&self, stream: &SiteStream) {
        let attempts = stream.stats().attempts;
        if attempts > self.attempts.swap(attempts, Ordering::Relaxed) {
            tracing::info!("connecting to {} (attempt {attempts})", self.url);
        }
        self.output.flush();
    }
}

/// One line for a failure the stream recovers from by waiting `retry_in`.
fn log_disconnect(error: &StreamError, retry_in: Duration) {
    let wait = format_duration(retry_in);
    match error {
        StreamError::Stall(silence) => tracing::warn!(
            "stall detected: no data for {}; backing off {wait} before reconnecting",
            format_duration(*silence)
        ),
        StreamError::DisconnectMessage { code, reason } => tracing::warn!(
            "disconnect message received (code {code}: {reason}); backing off {wait} before reconnecting"
        ),
        StreamError::Read(ReadError::Frame(FrameError::TooLong { limit })) => tracing::warn!(
            "frame too large: a message is longer than --max-message-bytes {limit}; dropped the connection; backing off {wait} before reconnecting"
        ),
        other => tracing::warn!("{other}; backing off {wait} before reconnecting"),
    }
}

/// `250ms`, `5s`, `1.5s`, `320s`: the units the options take.
pub fn format_duration(d: Duration) -> String {
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
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Listen(args) => args,
            _ => panic!("listen expected"),
        }
    }

    fn full_env(name: &str) -> Option<OsString> {
        Some(format!("value-of-{name}").into())
    }

    #[test]
    fn defaults_map_onto_the_config() {
        let config = build_config(&args(&[]), full_env).unwrap();
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
        assert_eq!(
            config.credentials().consumer_key(),
            "value-of-SITEBUCKET_CONSUMER_KEY"
        );
        assert_eq!(
            config.credentials().consumer_secret(),
            "value-of-SITEBUCKET_CONSUMER_SECRET"
        );
        assert_eq!(config.credentials().token(), "value-of-SITEBUCKET_TOKEN");
        assert_eq!(
            config.credentials().token_secret(),
            "value-of-SITEBUCKET_TOKEN_SECRET"
        );
        assert!(config.extra_root_certs_pem().is_empty());
    }

    #[test]
    fn every_option_maps_onto_the_config() {
        let config = build_config(
            &args(&[
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
            ]),
            full_env,
        )
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
        let config = build_config(
            &args(&["--backoff", "squared", "--http-backoff-max", "30s"]),
            full_env,
        )
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
        for missing in CREDENTIAL_VARS {
            let error = build_config(&args(&[]), |name| {
                (name != missing).then(|| OsString::from("x"))
            })
            .unwrap_err();
            assert!(error.contains(missing), "{error}");
            for other in CREDENTIAL_VARS.iter().filter(|n| **n != missing) {
                assert!(
                    !error.contains(&format!("{other} is")),
                    "{error} names {other}"
                );
            }
            let empty = build_config(&args(&[]), |name| {
                Some(if name == missing { "" } else { "x" }.into())
            })
            .unwrap_err();
            assert!(empty.contains(&format!("{missing} is not set")), "{empty}");
        }
        let none = build_config(&args(&[]), |_| None).unwrap_err();
        assert!(none.contains(&CREDENTIAL_VARS.join(", ")), "{none}");
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
            let error = build_config(&args(extra), full_env).unwrap_err();
            assert!(error.contains(expected), "{extra:?}: {error}");
        }
        let zero = Cli::try_parse_from(["sitebucket", "listen", "--follow", "0"]).unwrap_err();
        assert_eq!(zero.exit_code(), 2);
    }

    #[test]
    fn nonces_differ_between_runs() {
        // No fixed seed: each stream draws its own nonce seed from the OS.
        let config = build_config(&args(&[]), full_env).unwrap();
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
        let control = Control::new();
        let recorder = Recorder::default();
        let output = Output::new(Box::new(recorder.clone()), Some(3), control.clone());
        output.message(b"{\"a\":1}");
        output.message(b"{\"b\":\n2}");
        assert!(recorder.written.lock().unwrap().is_empty(), "buffered");
        output.flush();
        assert_eq!(
            &recorder.written.lock().unwrap()[..],
            b"{\"a\":1}\n{\"b\":\n2}\n"
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
    fn a_closed_stdout_stops_quietly() {
        let control = Control::new();
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
