//! The command line: subcommands, options and the parsers of their values.
//!
//! Every parser returns an error that says what was wrong and what is expected; clap prints
//! it after `invalid value '...' for '--option'` and exits with status 2.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::PossibleValuesParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use sitebucket_proto::control::{is_valid_stream_id, stream_id_from_uri, MAX_STREAM_ID_BYTES};
use sitebucket_proto::{DEFAULT_URL, V2_FILTERED_URL};
use sitebucket_testserver::BUILTIN_SCENARIOS;

pub(crate) use crate::drivers::DriverName;

/// The most distinct user ids one `listen` follows (`--follow` and `--follow-file`
/// together): 100 connections of 1,000 users.
pub(crate) const MAX_FOLLOWS: usize = 100_000;

/// The longest duration any option accepts: a week. Longer values are certainly typos, and
/// refusing them keeps every deadline far from `Instant` overflow.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// `sitebucket`: a Site Streams client and a scripted test server.
#[derive(Debug, Parser)]
#[command(name = "sitebucket", version, about, long_about = None)]
pub(crate) struct Cli {
    /// How much to log, and how.
    #[command(flatten)]
    pub log: LogArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The logging options, taken by every subcommand.
#[derive(Debug, Clone, Args)]
pub(crate) struct LogArgs {
    /// Log more: -v debug, -vv trace (the default is info). Overrides RUST_LOG.
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "quiet", help_heading = "Logging")]
    pub verbose: u8,

    /// Log less: -q warnings and errors only, -qq errors only. Overrides RUST_LOG.
    #[arg(short, long, action = ArgAction::Count, global = true, help_heading = "Logging")]
    pub quiet: u8,

    /// Log line format on stderr: text, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, help_heading = "Logging")]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (tracing-subscriber's json format).
    Json,
}

/// The OAuth 1.0a credentials, from the environment (or, less safely, from flags: any
/// local user can read a process's arguments).
#[derive(Debug, Clone, Args)]
pub(crate) struct CredentialArgs {
    /// OAuth consumer key.
    #[arg(
        long,
        value_name = "KEY",
        env = "SITEBUCKET_CONSUMER_KEY",
        hide_env_values = true,
        help_heading = "Credentials"
    )]
    pub consumer_key: Option<String>,

    /// OAuth consumer secret (prefer the environment: arguments are visible to `ps`).
    #[arg(
        long,
        value_name = "SECRET",
        env = "SITEBUCKET_CONSUMER_SECRET",
        hide_env_values = true,
        help_heading = "Credentials"
    )]
    pub consumer_secret: Option<String>,

    /// OAuth access token.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SITEBUCKET_TOKEN",
        hide_env_values = true,
        help_heading = "Credentials"
    )]
    pub token: Option<String>,

    /// OAuth access token secret (prefer the environment: arguments are visible to `ps`).
    #[arg(
        long,
        value_name = "SECRET",
        env = "SITEBUCKET_TOKEN_SECRET",
        hide_env_values = true,
        help_heading = "Credentials"
    )]
    pub token_secret: Option<String>,
}

/// The X API v2 Bearer token, from the environment (or, less safely, from a flag).
#[derive(Debug, Clone, Args)]
pub(crate) struct BearerArgs {
    /// X API v2 Bearer token (app-only); prefer the environment: arguments are visible to `ps`.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SITEBUCKET_BEARER_TOKEN",
        hide_env_values = true,
        help_heading = "Credentials"
    )]
    pub bearer_token: Option<String>,
}

/// `--api` of `listen`: which streaming API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ApiArg {
    /// Site Streams (v1.1): --follow, OAuth 1.0a.
    Site,
    /// X API v2 filtered stream (GET /2/tweets/search/stream): the app's rules, a Bearer token.
    V2Filtered,
    /// X API v2 sample stream (GET /2/tweets/sample/stream), a Bearer token.
    V2Sample,
}

/// `--api` of `serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ServeApi {
    /// Site Streams, OAuth 1.0a.
    Site,
    /// X API v2 filtered and sample streams and the rules endpoint, a Bearer token.
    V2,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Connect to a Site Streams endpoint (or, with --api, an X API v2 stream) and print its
    /// messages, one per line.
    ///
    /// Each message is exactly one line on stdout: a raw CR or LF byte inside a payload
    /// (pretty-printed JSON) is printed as a space. Logs go to stderr. Credentials come from
    /// SITEBUCKET_CONSUMER_KEY, SITEBUCKET_CONSUMER_SECRET, SITEBUCKET_TOKEN and
    /// SITEBUCKET_TOKEN_SECRET (an X API v2 stream: SITEBUCKET_BEARER_TOKEN). More than 100
    /// users run on several connections (filled through control streams when the server
    /// has them); SIGHUP re-reads --follow-file.
    /// Exit status: 0 stopped on request (--max-messages, SIGINT, SIGTERM), 1 gave up (with
    /// many users: every stream gave up), 2 usage error. The full reference is the
    /// sitebucket-cli README.
    Listen(Box<ListenArgs>),
    /// Run the scripted test server on 127.0.0.1 until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Change or inspect a live stream through its control stream, without reconnecting it.
    ///
    /// The stream id is the one its control message announced
    /// ({"control":{"control_uri":"/1.1/site/c/ID"}}, printed by `listen`). Exit status:
    /// 0 done, 1 the request failed (the error says why), 2 usage error (nothing sent).
    Control(ControlArgs),
    /// Manage the X API v2 filtered stream's rules (GET/POST /2/tweets/search/stream/rules).
    ///
    /// `list` prints the rules; `add` and `delete` change them (`--dry-run` only checks).
    /// The server's answer is printed on stdout as one line of JSON. Exit status: 0 done,
    /// 1 the request failed or the server turned part of the change down (the log says
    /// what), 2 usage error (nothing sent).
    Rules(RulesArgs),
    /// Manage the follow set of a fleet on NATS JetStream (a key-value bucket, key = user id).
    ///
    /// Exit status: 0 done, 1 NATS unreachable or refused (the error says why), 2 usage error.
    Follow(FollowArgs),
    /// Run one worker of a fleet on NATS JetStream (`--worker NAME`), or inspect the fleet
    /// (`fleet status`).
    ///
    /// A worker announces itself, takes its fair share of the shards through leases, streams
    /// their users and publishes every message to a JetStream stream. SIGINT or SIGTERM: stop
    /// reading, drain what is held to NATS, release the leases. Exit status: 0 done (every
    /// message read acknowledged), 1 NATS unreachable or refused, or messages left
    /// unacknowledged (the error says why), 2 usage error.
    Fleet(FleetArgs),
    /// Print a shell completion script on stdout (e.g. `sitebucket completions bash >
    /// ~/.local/share/bash-completion/completions/sitebucket`).
    Completions(CompletionsArgs),
}

/// Where a fleet's buckets are.
#[derive(Debug, Args)]
pub(crate) struct NatsArgs {
    /// The NATS server(s), JetStream enabled: several URLs of one cluster comma-separated
    /// (the client connects to one and fails over to the others).
    #[arg(
        long,
        value_name = "URL[,URL...]",
        default_value = "nats://127.0.0.1:4222",
        env = "SITEBUCKET_NATS"
    )]
    pub nats: String,

    /// The follow set bucket.
    #[arg(long, value_name = "BUCKET", default_value = "sitebucket-follows")]
    pub follows_bucket: String,

    /// Replicas of the buckets (and a worker's output stream) when this command creates them:
    /// 1 on a single server, 3 on a three-node cluster.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub replicas: usize,
}

/// Options of `sitebucket follow`.
#[derive(Debug, Args)]
pub(crate) struct FollowArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: FollowCommand,
}

/// The `follow` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum FollowCommand {
    /// Add users to the follow set (adding a present user changes nothing).
    Add(FollowUsersArgs),
    /// Remove users from the follow set (removing an absent user changes nothing).
    Remove(FollowUsersArgs),
    /// Print every user of the follow set, one id per line, sorted.
    List(NatsArgs),
}

/// Users for `follow add|remove`, given as for `listen`.
#[derive(Debug, Args)]
pub(crate) struct FollowUsersArgs {
    /// Where the follow set is.
    #[command(flatten)]
    pub nats: NatsArgs,

    /// User ids, comma-separated; may be repeated.
    #[arg(
        long,
        value_name = "ID[,ID...]",
        required_unless_present = "follow_file",
        allow_negative_numbers = true,
        action = ArgAction::Append,
        value_delimiter = ',',
        value_parser = parse_user_id
    )]
    pub follow: Vec<u64>,

    /// A file of user ids, one per line (`#` starts a comment; blank lines are skipped),
    /// added to --follow; `-` reads stdin.
    #[arg(long, value_name = "PATH")]
    pub follow_file: Option<PathBuf>,
}

/// Options of `sitebucket fleet`: a worker, or (with a subcommand) a look at the fleet.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct FleetArgs {
    /// A look at the fleet instead of running a worker.
    #[command(subcommand)]
    pub command: Option<FleetCommand>,

    /// The worker's options.
    #[command(flatten)]
    pub worker: FleetWorkerArgs,
}

/// Options of `sitebucket fleet --worker NAME`: one worker of a fleet.
#[derive(Debug, Args)]
pub(crate) struct FleetWorkerArgs {
    /// Where the fleet's buckets and output stream are.
    #[command(flatten)]
    pub nats: NatsArgs,

    /// This worker's name: unique in the fleet; letters, digits, '-' and '_'.
    #[arg(long, value_name = "NAME")]
    pub worker: Option<String>,

    /// The fleet's shard count (every worker must agree).
    #[arg(long, value_name = "N", default_value_t = sitebucket_fleet::DEFAULT_SHARDS)]
    pub shards: u32,

    /// The lease TTL: a dead worker's shards are taken over within about this plus a third.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub lease_ttl: Duration,

    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464; port 0: any free
    /// port, logged).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// The JetStream stream messages are published to (created if missing).
    #[arg(long, value_name = "NAME", default_value = "SITEBUCKET")]
    pub stream: String,

    /// The most publishes awaiting their acknowledgement at once.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_in_flight: usize,

    /// The most bytes of messages held unacknowledged; reading pauses beyond it.
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    pub max_held_bytes: usize,

    /// How long a SIGTERM waits for NATS to acknowledge what was read.
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Stream endpoint: http:// is plain TCP, https:// is TLS (verified).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// No byte (keep-alives count) for this long: close and reconnect.
    #[arg(long, value_name = "DUR", default_value = "90s", value_parser = parse_duration)]
    pub stall_timeout: Duration,

    /// Extra trusted root certificate(s) for TLS, PEM.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,

    /// The credentials that sign each connection.
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

/// The `fleet` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum FleetCommand {
    /// Print who holds which shards and how many users each streams, read from the buckets.
    Status(FleetStatusArgs),
}

/// Options of `sitebucket fleet status`.
#[derive(Debug, Args)]
pub(crate) struct FleetStatusArgs {
    /// Where the fleet's buckets are.
    #[command(flatten)]
    pub nats: NatsArgs,

    /// The fleet's shard count.
    #[arg(long, value_name = "N", default_value_t = sitebucket_fleet::DEFAULT_SHARDS)]
    pub shards: u32,
}

/// Options of `sitebucket completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Options of `sitebucket control`.
#[derive(Debug, Args)]
pub(crate) struct ControlArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ControlCommand,
}

/// The `control` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ControlCommand {
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
pub(crate) struct ControlTarget {
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

    /// The credentials that sign the request.
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

/// Options of `sitebucket control friends`.
#[derive(Debug, Args)]
pub(crate) struct ControlFriendsArgs {
    /// Where the request goes.
    #[command(flatten)]
    pub target: ControlTarget,

    /// The user whose friends to list (one the stream follows).
    #[arg(long, value_name = "ID", required = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub user: u64,
}

/// Options of `sitebucket control add` and `remove`.
#[derive(Debug, Args)]
pub(crate) struct ControlUsersArgs {
    /// Where the request goes.
    #[command(flatten)]
    pub target: ControlTarget,

    /// User ids, comma-separated (may repeat): 1 to 1000 decimal ids (a stream follows at
    /// most 1000).
    #[arg(
        long,
        value_name = "ID[,ID...]",
        required = true,
        allow_negative_numbers = true,
        action = ArgAction::Append,
        value_delimiter = ',',
        value_parser = parse_user_id
    )]
    pub users: Vec<u64>,
}

/// Options of `sitebucket rules`.
#[derive(Debug, Args)]
pub(crate) struct RulesArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: RulesCommand,
}

/// The `rules` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum RulesCommand {
    /// Print the filtered stream's rules (GET …/rules) as one line of JSON.
    List(RulesTarget),
    /// Add rules (POST …/rules {"add":[…]}).
    Add(RulesAddArgs),
    /// Delete rules by id (POST …/rules {"delete":{"ids":[…]}}).
    Delete(RulesDeleteArgs),
}

/// Where a rules request goes, and how.
#[derive(Debug, Args)]
pub(crate) struct RulesTarget {
    /// The filtered stream's endpoint (the rules endpoint is `<URL>/rules`).
    #[arg(long, value_name = "URL", default_value = V2_FILTERED_URL)]
    pub url: String,

    /// Which driver carries out the request.
    #[arg(long, value_enum, default_value_t = DriverName::Thread)]
    pub driver: DriverName,

    /// How long the request may take, connect to last byte.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Extra trusted root certificate(s) for TLS, PEM.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,

    /// The Bearer token.
    #[command(flatten)]
    pub bearer: BearerArgs,
}

/// Options of `sitebucket rules add`.
#[derive(Debug, Args)]
pub(crate) struct RulesAddArgs {
    /// Where the request goes.
    #[command(flatten)]
    pub target: RulesTarget,

    /// A rule's query, e.g. 'cat has:images -is:retweet'; may repeat.
    #[arg(long, value_name = "QUERY", required = true, action = ArgAction::Append)]
    pub rule: Vec<String>,

    /// A tag for the rules added (in each matching tweet's `matching_rules`).
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,

    /// Only check the rules (dry_run=true); change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Options of `sitebucket rules delete`.
#[derive(Debug, Args)]
pub(crate) struct RulesDeleteArgs {
    /// Where the request goes.
    #[command(flatten)]
    pub target: RulesTarget,

    /// Rule ids, comma-separated; may repeat.
    #[arg(long, value_name = "ID[,ID...]", required = true, action = ArgAction::Append,
          value_delimiter = ',', value_parser = parse_rule_id)]
    pub id: Vec<String>,

    /// Only check (dry_run=true); change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Options of `sitebucket listen`.
#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// Which streaming API: Site Streams (the default), or X API v2's filtered or sample
    /// stream (a Bearer token from SITEBUCKET_BEARER_TOKEN; no --follow).
    #[arg(long, value_enum, value_name = "API")]
    pub api: Option<ApiArg>,

    /// Stream endpoint: http:// is plain TCP, https:// is TLS (verified). Default: the
    /// API's (https://sitestream.twitter.com/1.1/site.json for Site Streams).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// User ids to follow, comma-separated; may repeat. Up to 100 ids: one connection;
    /// more (up to 100000 in all, duplicates removed): connections of at most 100 ids,
    /// filled to 1000 users each through control streams when the server announces them.
    /// Site Streams only.
    #[arg(
        long,
        value_name = "ID[,ID...]",
        required_unless_present_any = ["follow_file", "api"],
        allow_negative_numbers = true,
        action = ArgAction::Append,
        value_delimiter = ',',
        value_parser = parse_user_id
    )]
    pub follow: Vec<u64>,

    /// A file of user ids, one per line (`#` starts a comment; blank lines are skipped),
    /// added to --follow; `-` reads stdin. SIGHUP re-reads the file and applies the
    /// difference to the live streams.
    #[arg(long, value_name = "PATH")]
    pub follow_file: Option<PathBuf>,

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

    /// Exit 0 after printing N messages, counted across every stream (control and
    /// disconnect messages count).
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

    /// Every DUR, one stderr line: messages/s, bytes/s, reconnects, streams up / total.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub stats_every: Option<Duration>,

    /// Publish every message to NATS JetStream instead of printing it:
    /// nats://HOST:PORT/SUBJECT (subjects SUBJECT.msg.<for_user> and SUBJECT.stream.<kind>,
    /// the stream SUBJECT upper-cased created if missing, Nats-Msg-Id a keyed hash of the user
    /// and the bytes, its key in the bucket sitebucket-ids). Reading pauses while NATS is behind; at the end what is held is drained.
    #[arg(long, value_name = "URL", value_parser = crate::sink::parse_sink)]
    pub sink: Option<crate::sink::SinkUrl>,

    /// v2: `expansions`, sent as given (e.g. author_id,attachments.media_keys).
    #[arg(long, value_name = "LIST", help_heading = "X API v2 parameters")]
    pub expansions: Option<String>,

    /// v2: `tweet.fields`, sent as given (e.g. created_at,lang).
    #[arg(long, value_name = "LIST", help_heading = "X API v2 parameters")]
    pub tweet_fields: Option<String>,

    /// v2: `user.fields`, sent as given.
    #[arg(long, value_name = "LIST", help_heading = "X API v2 parameters")]
    pub user_fields: Option<String>,

    /// v2: `media.fields`, sent as given.
    #[arg(long, value_name = "LIST", help_heading = "X API v2 parameters")]
    pub media_fields: Option<String>,

    /// v2: `place.fields`, sent as given.
    #[arg(long, value_name = "LIST", help_heading = "X API v2 parameters")]
    pub place_fields: Option<String>,

    /// v2: `poll.fields`, sent as given.
    #[arg(long, value_name = "LIST", help_heading = "X API v2 parameters")]
    pub poll_fields: Option<String>,

    /// v2: `backfill_minutes`, minutes of missed tweets to recover on a reconnect.
    #[arg(long, value_name = "N", help_heading = "X API v2 parameters")]
    pub backfill_minutes: Option<u32>,

    /// v2: `partition`, for partitioned streams.
    #[arg(long, value_name = "N", help_heading = "X API v2 parameters")]
    pub partition: Option<u32>,

    /// The credentials that sign each connection (Site Streams).
    #[command(flatten)]
    pub credentials: CredentialArgs,

    /// The Bearer token (X API v2).
    #[command(flatten)]
    pub bearer: BearerArgs,
}

/// Options of `sitebucket serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Which API to speak: Site Streams (OAuth 1.0a), or X API v2 (a Bearer token; the
    /// filtered and sample streams and the rules endpoint).
    #[arg(long, value_enum, default_value_t = ServeApi::Site)]
    pub api: ServeApi,

    /// Port on 127.0.0.1 (default: any free port).
    #[arg(long, value_name = "P")]
    pub port: Option<u16>,

    /// Serve TLS with a CA made at start-up (its path is printed).
    #[arg(long)]
    pub tls: bool,

    /// Built-in scenario to play (with --replay: its pacing and faults around your
    /// messages).
    #[arg(long, value_name = "NAME", default_value = "steady",
          value_parser = PossibleValuesParser::new(BUILTIN_SCENARIOS))]
    pub scenario: String,

    /// Serve the messages of FILE (one JSON message per line, e.g. the output of
    /// `sitebucket listen`) as the stream, in a loop, instead of the built-in corpus.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
}

/// `--with`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum WithArg {
    /// `with=user`.
    User,
    /// `with=followings`.
    Followings,
}

/// `--backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BackoffName {
    /// Twitter's rules: linear after network errors, exponential after HTTP errors and 420/429.
    Twitter,
    /// Squared backoff: wait 2 s, then square it, capped at --http-backoff-max.
    Squared,
}

/// Parses one user id of `--follow`, `--follow-file` or `control --users`: a decimal `u64`,
/// not 0. (clap splits the comma lists.)
pub(crate) fn parse_user_id(text: &str) -> Result<u64, String> {
    let id = text.trim();
    if id.is_empty() {
        return Err(
            "a user id is empty; write ids separated by single commas, like 12,34".to_owned(),
        );
    }
    if id.starts_with('-') {
        return Err(format!(
            "user id {id:?} is negative; user ids are positive decimal numbers"
        ));
    }
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "user id {id:?} is not a decimal number; user ids are digits only"
        ));
    }
    let value: u64 = id
        .parse()
        .map_err(|_| format!("user id {id:?} is too large; the largest is {}", u64::MAX))?;
    if value == 0 {
        return Err("user id 0 does not exist; user ids start at 1".to_owned());
    }
    Ok(value)
}

/// Parses a rule id of `rules delete --id`: decimal digits.
pub(crate) fn parse_rule_id(text: &str) -> Result<String, String> {
    let id = text.trim();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "rule id {id:?} is not a decimal number; rule ids are digits only (see `rules list`)"
        ));
    }
    Ok(id.to_owned())
}

/// Parses `control --stream-id`: an id, or a control URI (`/1.1/site/c/ID`, also a whole
/// URL) whose id is taken.
pub(crate) fn parse_stream_id(text: &str) -> Result<String, String> {
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

/// Parses a duration: a whole number and a unit, `ms`, `s`, `m` or `h` (`250ms`, `5s`, `2m`,
/// `1h`). It must be above zero and at most [`MAX_DURATION`].
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
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

    fn follows(argv: &[&str]) -> Result<Vec<u64>, clap::Error> {
        let mut all = vec!["sitebucket", "listen"];
        all.extend_from_slice(argv);
        match Cli::try_parse_from(all)?.command {
            Command::Listen(args) => Ok(args.follow),
            _ => panic!("listen expected"),
        }
    }

    #[test]
    fn follow_lists_split_by_clap_and_repeat() {
        assert_eq!(follows(&["--follow", "1,2,3"]).unwrap(), [1, 2, 3]);
        assert_eq!(follows(&["--follow", "3, 1 ,2"]).unwrap(), [3, 1, 2]);
        assert_eq!(
            follows(&["--follow", "5", "--follow", "6,7", "--follow=8"]).unwrap(),
            [5, 6, 7, 8]
        );
        assert_eq!(
            follows(&["--follow", "18446744073709551615"]).unwrap(),
            [u64::MAX]
        );
        let many: Vec<String> = (1..=1000).map(|i| i.to_string()).collect();
        assert_eq!(follows(&["--follow", &many.join(",")]).unwrap().len(), 1000);
        // --follow-file alone is enough.
        assert_eq!(
            follows(&["--follow-file", "ids.txt"]).unwrap(),
            [] as [u64; 0]
        );
    }

    #[test]
    fn bad_follow_lists_say_what_is_wrong() {
        let cases = [
            ("", "empty"),
            ("  ", "empty"),
            ("1,,2", "empty"),
            ("1,2,", "empty"),
            (",1", "empty"),
            ("-5", "negative"),
            ("1,-2", "negative"),
            ("abc", "not a decimal number"),
            ("1;2", "not a decimal number"),
            ("+5", "not a decimal number"),
            ("1e3", "not a decimal number"),
            ("18446744073709551616", "too large"),
            ("0", "start at 1"),
        ];
        for (input, expected) in cases {
            let error = follows(&["--follow", input]).unwrap_err();
            assert_eq!(error.exit_code(), 2);
            assert!(error.to_string().contains(expected), "{input:?}: {error}");
        }
    }

    #[test]
    fn the_command_line_parses_with_its_defaults() {
        let cli = Cli::try_parse_from(["sitebucket", "listen", "--follow", "7"]).unwrap();
        assert_eq!(cli.log.verbose, 0);
        assert_eq!(cli.log.log_format, LogFormat::Text);
        let Command::Listen(args) = cli.command else {
            panic!("listen expected")
        };
        assert_eq!(args.url, None);
        assert_eq!(args.api, None);
        assert_eq!(args.follow, [7]);
        assert_eq!(args.follow_file, None);
        assert_eq!(args.stats_every, None);
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
            &["sitebucket", "listen", "--follow", "1", "-v", "-q"],
            &[
                "sitebucket",
                "listen",
                "--follow",
                "1",
                "--log-format",
                "xml",
            ],
            &[
                "sitebucket",
                "listen",
                "--follow",
                "1",
                "--stats-every",
                "5",
            ],
            &["sitebucket", "completions", "tcsh"],
            &["sitebucket", "serve", "--scenario", "nope"],
            &["sitebucket", "serve", "--port", "65536"],
        ] {
            let error = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{argv:?}: {error}");
        }
    }
}
