//! The command line: subcommands, options and the parsers of their values.
//!
//! Every parser returns an error that says what was wrong and what is expected; clap prints
//! it after `invalid value '...' for '--option'` and exits with status 2.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use sitebucket_proto::config::{DEFAULT_URL, FOLLOW_LIMIT};
use sitebucket_proto::control::{
    is_valid_stream_id, stream_id_from_uri, MAX_STREAM_ID_BYTES, MAX_USERS_PER_STREAM,
};
use sitebucket_testserver::BUILTIN_SCENARIOS;

/// The longest duration any option accepts: a week. Longer values are certainly typos, and
/// refusing them keeps every deadline far from `Instant` overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// `sitebucket`: a Site Streams client and a scripted test server.
#[derive(Debug, Parser)]
#[command(name = "sitebucket", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect to a Site Streams endpoint and print its messages, one per line.
    ///
    /// Credentials come from SITEBUCKET_CONSUMER_KEY, SITEBUCKET_CONSUMER_SECRET,
    /// SITEBUCKET_TOKEN and SITEBUCKET_TOKEN_SECRET. Exit status: 0 stopped on request
    /// (--max-messages, SIGINT, SIGTERM), 1 gave up, 2 usage error.
    Listen(ListenArgs),
    /// Run the scripted test server on 127.0.0.1 until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Change or inspect a live stream through its control stream, without reconnecting it.
    ///
    /// The stream id is the one its control message announced
    /// ({"control":{"control_uri":"/1.1/site/c/ID"}}, printed by `listen`). Exit status:
    /// 0 done, 1 the request failed (the error says why), 2 usage error (nothing sent).
    Control(ControlArgs),
}

/// Options of `sitebucket control`.
#[derive(Debug, Args)]
pub struct ControlArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ControlCommand,
}

/// The `control` subcommands.
#[derive(Debug, Subcommand)]
pub enum ControlCommand {
    /// Add users to the live stream (POST …/add_user.json, 100 users per request).
    Add(ControlUsersArgs),
    /// Remove users from the live stream (POST …/remove_user.json, 100 per request).
    Remove(ControlUsersArgs),
    /// Print whom the live stream follows, and its options, as one line of JSON
    /// (GET …/info.json).
    Info(ControlTarget),
    /// Print every id a followed user follows, as one line of JSON, paging through
    /// POST …/friends/ids.json.
    Friends(ControlFriendsArgs),
}

/// Which live stream a control request goes to, and how.
#[derive(Debug, Args)]
pub struct ControlTarget {
    /// The stream's endpoint (the control path sits beside it: /1.1/site.json →
    /// /1.1/site/c/ID/...).
    #[arg(long, value_name = "URL", default_value = DEFAULT_URL)]
    pub url: String,

    /// The control stream id, or the whole control URI (/1.1/site/c/ID).
    #[arg(long, value_name = "ID", required = true, value_parser = parse_stream_id)]
    pub stream_id: String,

    /// Which driver carries out the request.
    #[arg(long, value_enum, default_value_t = DriverName::Thread)]
    pub driver: DriverName,

    /// How long each request may take, connect to last byte.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Extra trusted root certificate(s) for TLS, PEM.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
}

/// Options of `sitebucket control friends`.
#[derive(Debug, Args)]
pub struct ControlFriendsArgs {
    /// Where the request goes.
    #[command(flatten)]
    pub target: ControlTarget,

    /// The user whose friends to list (one the stream follows).
    #[arg(long, value_name = "ID", required = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub user: u64,
}

/// Options of `sitebucket control add` and `remove`.
#[derive(Debug, Args)]
pub struct ControlUsersArgs {
    /// Where the request goes.
    #[command(flatten)]
    pub target: ControlTarget,

    /// User ids, comma-separated: 1 to 1000 decimal ids (a stream follows at most 1000).
    #[arg(
        long,
        value_name = "ID[,ID...]",
        required = true,
        allow_negative_numbers = true,
        value_parser = parse_users
    )]
    pub users: FollowIds,
}

/// Options of `sitebucket listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Stream endpoint: http:// is plain TCP, https:// is TLS (verified).
    #[arg(long, value_name = "URL", default_value = DEFAULT_URL)]
    pub url: String,

    /// User ids to follow, comma-separated: 1 to 100 decimal ids.
    #[arg(
        long,
        value_name = "ID[,ID...]",
        required = true,
        allow_negative_numbers = true,
        value_parser = parse_follow
    )]
    pub follow: FollowIds,

    /// The `with` parameter.
    #[arg(long, value_enum, default_value_t = WithArg::User)]
    pub with: WithArg,

    /// Which driver runs the stream.
    #[arg(long, value_enum, default_value_t = DriverName::Thread)]
    pub driver: DriverName,

    /// Send delimited=length and read length-prefixed framing.
    #[arg(long)]
    pub delimited: bool,

    /// Send stall_warnings=true.
    #[arg(long)]
    pub stall_warnings: bool,

    /// Send replies=all.
    #[arg(long)]
    pub replies_all: bool,

    /// Send stringify_friend_ids=true.
    #[arg(long)]
    pub stringify_friend_ids: bool,

    /// Send `Accept-Encoding: deflate, gzip` and decode a compressed body.
    #[arg(long)]
    pub gzip: bool,

    /// Exit 0 after printing N messages (control and disconnect messages count).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_messages: Option<u64>,

    /// Exit 1 after N consecutive failed connection attempts (default: unlimited).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub retry_limit: Option<u32>,

    /// No byte (keep-alives count) for this long: close and reconnect.
    #[arg(long, value_name = "DUR", default_value = "90s", value_parser = parse_duration)]
    pub stall_timeout: Duration,

    /// Reconnect policy.
    #[arg(long, value_enum, default_value_t = BackoffName::Twitter)]
    pub backoff: BackoffName,

    /// Linear backoff step after network errors.
    #[arg(long, value_name = "DUR", default_value = "250ms", value_parser = parse_duration)]
    pub network_backoff_step: Duration,

    /// Ceiling of the network-error backoff.
    #[arg(long, value_name = "DUR", default_value = "16s", value_parser = parse_duration)]
    pub network_backoff_max: Duration,

    /// First wait after an HTTP error (doubling).
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    pub http_backoff_start: Duration,

    /// Ceiling of the HTTP-error backoff (and of the squared policy).
    #[arg(long, value_name = "DUR", default_value = "320s", value_parser = parse_duration)]
    pub http_backoff_max: Duration,

    /// First wait after a 420 or 429 (doubling, capped at 16 min).
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_duration)]
    pub rate_limit_backoff_start: Duration,

    /// Longest message payload accepted (without its CRLF); a longer one drops the connection.
    #[arg(long, value_name = "N", default_value_t = 8_388_608)]
    pub max_message_bytes: usize,

    /// Extra trusted root certificate(s) for TLS, PEM.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
}

/// Options of `sitebucket serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port on 127.0.0.1 (default: any free port).
    #[arg(long, value_name = "P")]
    pub port: Option<u16>,

    /// Serve TLS with a CA made at start-up (its path is printed).
    #[arg(long)]
    pub tls: bool,

    /// Built-in scenario to play.
    #[arg(long, value_name = "NAME", default_value = "steady",
          value_parser = PossibleValuesParser::new(BUILTIN_SCENARIOS))]
    pub scenario: String,
}

/// `--with`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WithArg {
    /// `with=user`.
    User,
    /// `with=followings`.
    Followings,
}

/// `--driver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriverName {
    /// Blocking std sockets on a thread (sitebucket-std).
    Thread,
    /// A mio event loop (sitebucket-mio).
    Mio,
    /// smol async I/O (sitebucket-smol).
    Smol,
    /// A tokio runtime of the driver's own (sitebucket-tokio).
    Tokio,
}

/// `--backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackoffName {
    /// Twitter's rules: linear after network errors, exponential after HTTP errors and 420/429.
    Twitter,
    /// The original sitebucket policy: wait 2 s, then square it, capped at --http-backoff-max.
    Squared,
}

/// The ids of `--follow`, in the order given (duplicates kept; the core removes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowIds(pub Vec<u64>);

/// Parses `--follow`: 1 to [`FOLLOW_LIMIT`] comma-separated decimal `u64` ids, none of them 0.
pub fn parse_follow(text: &str) -> Result<FollowIds, String> {
    parse_ids(text, FOLLOW_LIMIT)
}

/// Parses `control --users`: 1 to [`MAX_USERS_PER_STREAM`] ids, like `--follow`.
pub fn parse_users(text: &str) -> Result<FollowIds, String> {
    parse_ids(text, MAX_USERS_PER_STREAM)
}

/// Parses `control --stream-id`: an id, or a control URI (`/1.1/site/c/ID`, also a whole
/// URL) whose id is taken.
pub fn parse_stream_id(text: &str) -> Result<String, String> {
    let text = text.trim();
    let id = if text.contains('/') {
        stream_id_from_uri(text).ok_or_else(|| {
            format!("{text:?} is not a control URI; expected an id or /1.1/site/c/ID")
        })?
    } else {
        text
    };
    if !is_valid_stream_id(id) {
        return Err(format!(
            "{id:?} is not a stream id; ids are 1 to {MAX_STREAM_ID_BYTES} letters, digits, \
             '_', '-', '.' or '~'"
        ));
    }
    Ok(id.to_owned())
}

/// Parses 1 to `limit` comma-separated decimal `u64` ids, none of them 0.
fn parse_ids(text: &str, limit: usize) -> Result<FollowIds, String> {
    if text.trim().is_empty() {
        return Err(format!(
            "the list is empty; give 1 to {limit} user ids, comma-separated"
        ));
    }
    let mut ids = Vec::new();
    for (n, part) in text.split(',').enumerate() {
        let part = part.trim();
        let position = n + 1;
        if part.is_empty() {
            return Err(format!(
                "user id #{position} is empty; write ids separated by single commas, like 12,34"
            ));
        }
        if part.starts_with('-') {
            return Err(format!(
                "user id {part:?} is negative; user ids are positive decimal numbers"
            ));
        }
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "user id {part:?} is not a decimal number; user ids are digits only"
            ));
        }
        let id: u64 = part
            .parse()
            .map_err(|_| format!("user id {part:?} is too large; the largest is {}", u64::MAX))?;
        if id == 0 {
            return Err("user id 0 does not exist; user ids start at 1".to_owned());
        }
        ids.push(id);
    }
    if ids.len() > limit {
        return Err(format!(
            "{} user ids given; at most {limit} are allowed",
            ids.len()
        ));
    }
    Ok(FollowIds(ids))
}

/// Parses a duration: a whole number and a unit, `ms`, `s`, `m` or `h` (`250ms`, `5s`, `2m`,
/// `1h`). It must be above zero and at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const EXPECTED: &str =
        "expected a whole number and a unit (ms, s, m or h), like 250ms, 5s, 2m or 1h";
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits);
    if number.is_empty() {
        return Err(format!("{text:?} does not start with a number; {EXPECTED}"));
    }
    let scale = match unit {
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "" => return Err(format!("{text:?} has no unit; {EXPECTED}")),
        other => {
            return Err(format!(
                "{text:?} has an unknown unit {other:?}; {EXPECTED}"
            ))
        }
    };
    let too_long = || format!("{text:?} is too long; the longest accepted is 168h (a week)");
    let count: u32 = number.parse().map_err(|_| too_long())?;
    let duration = scale.checked_mul(count).ok_or_else(too_long)?;
    if duration.is_zero() {
        return Err(format!("{text:?} is zero; it must be greater than zero"));
    }
    if duration > MAX_DURATION {
        return Err(too_long());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 90s "), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("168h"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("0010s"), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn bad_durations_say_what_is_wrong() {
        let cases = [
            ("5", "has no unit"),
            ("", "does not start with a number"),
            ("ms", "does not start with a number"),
            ("-5s", "does not start with a number"),
            ("+5s", "does not start with a number"),
            ("1.5s", "unknown unit \".5s\""),
            ("5 s", "unknown unit \" s\""),
            ("5sec", "unknown unit \"sec\""),
            ("5S", "unknown unit \"S\""),
            ("3d", "unknown unit \"d\""),
            ("0s", "is zero"),
            ("0ms", "is zero"),
            ("169h", "too long"),
            ("604801s", "too long"),
            ("99999999999999999999999h", "too long"),
            ("4294967296ms", "too long"),
        ];
        for (input, expected) in cases {
            let error = parse_duration(input).unwrap_err();
            assert!(error.contains(expected), "{input:?}: {error}");
            if !error.contains("too long") && !error.contains("zero") {
                assert!(error.contains("like 250ms"), "{input:?}: {error}");
            }
        }
    }

    #[test]
    fn follow_lists() {
        assert_eq!(parse_follow("1,2,3"), Ok(FollowIds(vec![1, 2, 3])));
        assert_eq!(parse_follow("3, 1 ,2"), Ok(FollowIds(vec![3, 1, 2])));
        assert_eq!(
            parse_follow("18446744073709551615"),
            Ok(FollowIds(vec![u64::MAX]))
        );
        let hundred: Vec<String> = (1..=100).map(|i| i.to_string()).collect();
        assert_eq!(parse_follow(&hundred.join(",")).unwrap().0.len(), 100);
    }

    #[test]
    fn bad_follow_lists_say_what_is_wrong() {
        let hundred_and_one: Vec<String> = (1..=101).map(|i| i.to_string()).collect();
        let too_many = hundred_and_one.join(",");
        let cases = [
            ("", "empty"),
            ("  ", "empty"),
            ("1,,2", "#2 is empty"),
            ("1,2,", "#3 is empty"),
            (",1", "#1 is empty"),
            ("-5", "negative"),
            ("1,-2", "negative"),
            ("abc", "not a decimal number"),
            ("1;2", "not a decimal number"),
            ("+5", "not a decimal number"),
            ("1e3", "not a decimal number"),
            ("18446744073709551616", "too large"),
            ("0", "start at 1"),
            (too_many.as_str(), "101 user ids given; at most 100"),
        ];
        for (input, expected) in cases {
            let error = parse_follow(input).unwrap_err();
            assert!(error.contains(expected), "{input:?}: {error}");
        }
    }

    #[test]
    fn the_command_line_parses_with_its_defaults() {
        let cli = Cli::try_parse_from(["sitebucket", "listen", "--follow", "7"]).unwrap();
        let Command::Listen(args) = cli.command else {
            panic!("listen expected")
        };
        assert_eq!(args.url, DEFAULT_URL);
        assert_eq!(args.follow, FollowIds(vec![7]));
        assert_eq!(args.with, WithArg::User);
        assert_eq!(args.driver, DriverName::Thread);
        assert_eq!(args.backoff, BackoffName::Twitter);
        assert_eq!(args.stall_timeout, Duration::from_secs(90));
        assert_eq!(args.network_backoff_step, Duration::from_millis(250));
        assert_eq!(args.network_backoff_max, Duration::from_secs(16));
        assert_eq!(args.http_backoff_start, Duration::from_secs(5));
        assert_eq!(args.http_backoff_max, Duration::from_secs(320));
        assert_eq!(args.rate_limit_backoff_start, Duration::from_secs(60));
        assert_eq!(args.max_message_bytes, 8_388_608);
        assert_eq!(args.max_messages, None);
        assert_eq!(args.retry_limit, None);
        assert!(!args.delimited && !args.gzip && !args.stall_warnings);
        assert!(!args.replies_all && !args.stringify_friend_ids);
        assert_eq!(args.ca_file, None);
    }

    #[test]
    fn usage_errors_are_clap_errors_with_status_2() {
        for argv in [
            &["sitebucket", "listen"][..],
            &["sitebucket", "listen", "--follow", "1", "--bogus"],
            &[
                "sitebucket",
                "listen",
                "--follow",
                "1",
                "--with",
                "everyone",
            ],
            &[
                "sitebucket",
                "listen",
                "--follow",
                "1",
                "--driver",
                "glommio",
            ],
            &[
                "sitebucket",
                "listen",
                "--follow",
                "1",
                "--max-messages",
                "0",
            ],
            &[
                "sitebucket",
                "listen",
                "--follow",
                "1",
                "--retry-limit",
                "0",
            ],
            &["sitebucket", "listen", "--follow", "-1"],
            &["sitebucket", "listen", "--follow", "1", "--follow", "2"],
            &["sitebucket", "serve", "--scenario", "nope"],
            &["sitebucket", "serve", "--port", "65536"],
        ] {
            let error = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{argv:?}: {error}");
        }
    }
}
