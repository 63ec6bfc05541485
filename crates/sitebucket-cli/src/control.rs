//! `sitebucket control add|remove|info|friends`: signed control requests to a live stream,
//! each on a connection of its own, carried out by the chosen driver.
//!
//! `add` and `remove` send the users in requests of at most 100, paced under Twitter's 25
//! per second, and log what was done on stderr; `info` prints the stream's answer as one
//! line of JSON on stdout; `friends` pages through a followed user's friends (each page a
//! paced request) and prints them all as one line of JSON. Problems found before anything is sent (a bad URL, a missing
//! credential, an unreadable `--ca-file`) exit with status 2; a request that fails exits
//! with status 1 after saying why (and how many requests had gone through).

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Instant;

use sitebucket_proto::config::Endpoint;
use sitebucket_proto::control::{
    ControlCall, ControlError, ControlPacer, ControlRequest, ControlResponse, StreamInfo,
    FIRST_CURSOR,
};
use sitebucket_proto::Credentials;
use sitebucket_thread::{os_entropy, Driver};

use crate::args::{ControlArgs, ControlCommand, ControlFriendsArgs, ControlTarget, DriverName};
use crate::listen::credentials_from_env;

/// The most `friends/ids.json` pages one `control friends` reads (Twitter's pages hold 5,000
/// ids): a server that never ends its cursor chain cannot keep the command going.
pub const MAX_FRIENDS_PAGES: usize = 10_000;

/// Runs `sitebucket control` and returns the process's exit status.
pub fn run(args: ControlArgs) -> ExitCode {
    let (target, verb, requests) = match &args.command {
        ControlCommand::Friends(friends) => return run_friends(friends),
        ControlCommand::Add(a) => (
            &a.target,
            "added",
            ControlRequest::add_users_batched(&a.users.0),
        ),
        ControlCommand::Remove(a) => (
            &a.target,
            "removed",
            ControlRequest::remove_users_batched(&a.users.0),
        ),
        ControlCommand::Info(target) => (target, "info", Ok(vec![ControlRequest::info()])),
    };
    let prepared = requests
        .map_err(|e| e.to_string())
        .and_then(|requests| Ok((Sender::new(target)?, requests)));
    let (mut sender, requests) = match prepared {
        Ok(prepared) => prepared,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let users: usize = requests.iter().map(|r| r.users().len()).sum();
    for (done, request) in requests.into_iter().enumerate() {
        match sender.send(request) {
            Ok(ControlResponse::Info(info)) => println!("{}", info_json(&target.stream_id, &info)),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(
                    "control stream {}: {e} ({done} request(s) had gone through)",
                    target.stream_id
                );
                return ExitCode::from(1);
            }
        }
    }
    if verb != "info" {
        tracing::info!(
            "{verb} {users} user(s) on control stream {} at {}",
            target.stream_id,
            sender.endpoint.url()
        );
    }
    ExitCode::SUCCESS
}

/// `control friends`: every page of the user's friends, in order, then one line of JSON.
fn run_friends(args: &ControlFriendsArgs) -> ExitCode {
    let target = &args.target;
    let mut sender = match Sender::new(target) {
        Ok(sender) => sender,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let mut friends = Vec::new();
    let mut cursor = FIRST_CURSOR;
    let mut seen_cursors = std::collections::HashSet::new();
    for page in 0..MAX_FRIENDS_PAGES {
        let failed = |why: &dyn std::fmt::Display| {
            tracing::error!(
                "control stream {}: friends of user {}: {why} ({page} page(s) had been read)",
                target.stream_id,
                args.user
            );
            ExitCode::from(1)
        };
        let next = match sender.send(ControlRequest::friends_ids(args.user, cursor)) {
            Ok(ControlResponse::Friends(page)) => {
                friends.extend(page.friends);
                page.next_cursor
            }
            Ok(other) => return failed(&format_args!("unexpected answer {other:?}")),
            Err(e) => return failed(&e),
        };
        if next == 0 {
            tracing::info!(
                "{} friend(s) of user {} in {} page(s) from control stream {}",
                friends.len(),
                args.user,
                page + 1,
                target.stream_id
            );
            println!("{}", friends_json(args.user, &friends));
            return ExitCode::SUCCESS;
        }
        if !seen_cursors.insert(next) {
            return failed(&format_args!("the server gave cursor {next} a second time"));
        }
        cursor = next;
    }
    tracing::error!(
        "control stream {}: friends of user {}: still more after {MAX_FRIENDS_PAGES} pages",
        target.stream_id,
        args.user
    );
    ExitCode::from(1)
}

/// `friends` as one line of JSON: `{"user_id":U,"friends":[...]}`.
pub fn friends_json(user: u64, friends: &[u64]) -> String {
    let ids: Vec<String> = friends.iter().map(u64::to_string).collect();
    format!("{{\"user_id\":{user},\"friends\":[{}]}}", ids.join(","))
}

/// Sends one command's requests in turn to the target's control stream: each paced under
/// Twitter's rate, signed with a nonce of its own, on a connection of its own.
struct Sender<'a> {
    target: &'a ControlTarget,
    endpoint: Endpoint,
    credentials: Credentials,
    roots: Vec<u8>,
    seed: u64,
    sent: u64,
    pacer: ControlPacer,
}

impl<'a> Sender<'a> {
    /// A sender for `target`, with credentials from the environment; a problem is a usage
    /// error, found before anything is sent.
    fn new(target: &'a ControlTarget) -> Result<Self, String> {
        let (endpoint, credentials, roots) = prepare(target, |name| std::env::var_os(name))?;
        Ok(Sender {
            target,
            endpoint,
            credentials,
            roots,
            seed: os_entropy(),
            sent: 0,
            pacer: ControlPacer::default(),
        })
    }

    /// Waits for the pacer, then carries out `request` on the chosen driver.
    fn send(&mut self, request: ControlRequest) -> Result<ControlResponse, ControlError> {
        let at = self.pacer.reserve(Instant::now());
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let target = self.target;
        let call = ControlCall::new(
            &self.endpoint,
            &self.credentials,
            Some(&target.stream_id),
            request,
        )
        .with_extra_roots(self.roots.clone())
        .with_timeout(target.timeout)
        .with_nonce_seed(self.seed.wrapping_add(self.sent));
        self.sent += 1;
        carry_out(target.driver, call)
    }
}

/// The endpoint, credentials (from `env`) and extra roots of a control request. Every
/// problem is a usage error, found before anything is sent.
fn prepare(
    target: &ControlTarget,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<(Endpoint, Credentials, Vec<u8>), String> {
    let endpoint =
        Endpoint::parse(&target.url).map_err(|e| format!("invalid --url {:?}: {e}", target.url))?;
    let credentials = credentials_from_env(env)?;
    let roots = match &target.ca_file {
        None => Vec::new(),
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read --ca-file {}: {e}", path.display()))?;
            sitebucket_proto::tls::parse_pem_roots(&pem)
                .map_err(|e| format!("--ca-file {} is not usable: {e}", path.display()))?;
            pem
        }
    };
    Ok((endpoint, credentials, roots))
}

/// One call on the chosen driver (each on a connection of its own).
fn carry_out(driver: DriverName, call: ControlCall) -> Result<ControlResponse, ControlError> {
    match driver {
        DriverName::Thread => sitebucket_std::StdDriver::new().control(call),
        DriverName::Mio => sitebucket_mio::MioDriver::new().control(call),
        DriverName::Smol => sitebucket_smol::SmolDriver::new().control(call),
        DriverName::Tokio => sitebucket_tokio::TokioDriver::new().control(call),
    }
}

/// `info` as one line of JSON: the stream id, the users, `follows` when there are any, and
/// each option the server reported.
pub fn info_json(stream_id: &str, info: &StreamInfo) -> String {
    let users: Vec<String> = info
        .users
        .iter()
        .map(|user| {
            let mut fields = vec![format!("\"id\":{}", user.id)];
            if let Some(name) = &user.name {
                fields.push(format!("\"name\":{}", json_string(name)));
            }
            if let Some(dm) = user.dm {
                fields.push(format!("\"dm\":{dm}"));
            }
            format!("{{{}}}", fields.join(","))
        })
        .collect();
    let mut fields = vec![
        format!("\"stream_id\":{}", json_string(stream_id)),
        format!("\"users\":[{}]", users.join(",")),
    ];
    if !info.follows.is_empty() {
        let follows: Vec<String> = info
            .follows
            .iter()
            .map(|f| {
                let others: Vec<String> = f.other_users.iter().map(u64::to_string).collect();
                format!(
                    "{{\"user\":{},\"other_users\":[{}]}}",
                    f.user,
                    others.join(",")
                )
            })
            .collect();
        fields.push(format!("\"follows\":[{}]", follows.join(",")));
    }
    let options = &info.options;
    for (name, value) in [
        ("with", &options.with),
        ("replies", &options.replies),
        ("delimited", &options.delimited),
    ] {
        if let Some(value) = value {
            fields.push(format!("\"{name}\":{}", json_string(value)));
        }
    }
    for (name, value) in [
        (
            "include_followings_activity",
            options.include_followings_activity,
        ),
        ("include_user_changes", options.include_user_changes),
    ] {
        if let Some(value) = value {
            fields.push(format!("\"{name}\":{value}"));
        }
    }
    format!("{{{}}}", fields.join(","))
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use sitebucket_proto::control::decode_info;

    use crate::args::{parse_stream_id, Cli, Command};

    fn target(extra: &[&str]) -> ControlTarget {
        let mut argv = vec!["sitebucket", "control", "info", "--stream-id", "s1"];
        argv.extend(extra);
        let Command::Control(ControlArgs {
            command: ControlCommand::Info(target),
        }) = Cli::try_parse_from(argv).expect("parses").command
        else {
            panic!("control info expected")
        };
        target
    }

    fn env(name: &str) -> Option<OsString> {
        Some(format!("value-of-{name}").into())
    }

    #[test]
    fn the_target_maps_onto_endpoint_and_credentials() {
        let t = target(&[
            "--url",
            "http://127.0.0.1:9/2b/site.json",
            "--driver",
            "smol",
        ]);
        assert_eq!(t.driver, DriverName::Smol);
        assert_eq!(t.timeout, std::time::Duration::from_secs(10));
        let (endpoint, credentials, roots) = prepare(&t, env).expect("valid");
        assert_eq!(endpoint.url(), "http://127.0.0.1:9/2b/site.json");
        assert_eq!(credentials.token(), "value-of-SITEBUCKET_TOKEN");
        assert!(roots.is_empty());
    }

    #[test]
    fn problems_before_sending_say_what_is_wrong() {
        let bad_url = target(&["--url", "ftp://x/1.1/site.json"]);
        assert!(prepare(&bad_url, env)
            .unwrap_err()
            .contains("invalid --url \"ftp://x/1.1/site.json\""));
        let missing = prepare(&target(&[]), |name| {
            (name != "SITEBUCKET_TOKEN_SECRET").then(|| OsString::from("x"))
        })
        .unwrap_err();
        assert!(
            missing.contains("environment variable SITEBUCKET_TOKEN_SECRET is not set"),
            "{missing}"
        );
        let no_file = target(&["--ca-file", "/nonexistent/ca.pem"]);
        assert!(prepare(&no_file, env)
            .unwrap_err()
            .contains("cannot read --ca-file"));
    }

    #[test]
    fn stream_ids_or_control_uris() {
        assert_eq!(parse_stream_id("sb_0"), Ok("sb_0".to_owned()));
        assert_eq!(
            parse_stream_id("/1.1/site/c/01_2_AB"),
            Ok("01_2_AB".to_owned())
        );
        assert_eq!(
            parse_stream_id("https://sitestream.twitter.com/1.1/site/c/x1"),
            Ok("x1".to_owned())
        );
        assert!(parse_stream_id("/elsewhere")
            .unwrap_err()
            .contains("not a control URI"));
        assert!(parse_stream_id("a b")
            .unwrap_err()
            .contains("not a stream id"));
        assert!(parse_stream_id("..")
            .unwrap_err()
            .contains("not a stream id"));
    }

    #[test]
    fn info_prints_as_json_the_way_the_fixture_reads() {
        let info = decode_info(include_bytes!(
            "../../sitebucket-proto/tests/fixtures/real/sferik__twitter/site_stream_info.json"
        ))
        .unwrap();
        assert_eq!(
            info_json("s\"1", &info),
            concat!(
                r#"{"stream_id":"s\"1","users":[{"id":1,"name":"raffi","dm":false},"#,
                r#"{"id":3,"name":"fiaz","dm":true}],"follows":[{"user":1,"other_users":[2,3]},"#,
                r#"{"user":3,"other_users":[1,2,99]}],"with":"followings","replies":"none","#,
                r#""delimited":"none","include_followings_activity":false,"include_user_changes":false}"#
            )
        );
        assert_eq!(json_string("a\u{1}\n\\"), r#""a\u0001\n\\""#);
        assert_eq!(
            info_json("s", &StreamInfo::default()),
            r#"{"stream_id":"s","users":[]}"#
        );
    }
}
