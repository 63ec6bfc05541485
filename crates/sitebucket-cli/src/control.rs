//! `sitebucket control add|remove|info|friends`: signed control requests to a live stream,
//! each on a connection of its own, carried out by the chosen driver.
//!
//! `add` and `remove` send the users in requests of at most 100, paced under Twitter's 25
//! per second, and log what was done on stderr; `info` prints the stream's answer as one
//! line of JSON on stdout; `friends` pages through a followed user's friends (each page a
//! paced request) and prints them all as one line of JSON. Problems found before anything is sent (a bad URL, a missing
//! credential, an unreadable `--ca-file`) exit with status 2; a request that fails exits
//! with status 1 after saying why (and how many requests had gone through).

use std::process::ExitCode;
use std::time::Instant;

use serde::Serialize;

use sitebucket_proto::control::MAX_USERS_PER_STREAM;
use sitebucket_proto::control::{
    ControlCall, ControlError, ControlPacer, ControlRequest, ControlResponse, StreamInfo,
    FIRST_CURSOR,
};
use sitebucket_proto::Credentials;
use sitebucket_proto::Endpoint;
use sitebucket_thread::Driver;

use crate::args::{ControlArgs, ControlCommand, ControlFriendsArgs, ControlTarget};
use crate::drivers::{with_driver, DriverName, WithDriver};
use crate::listen::credentials;

/// The most `friends/ids.json` pages one `control friends` reads (Twitter's pages hold 5,000
/// ids): a server that never ends its cursor chain cannot keep the command going.
pub(crate) const MAX_FRIENDS_PAGES: usize = 10_000;

/// Runs `sitebucket control` and returns the process's exit status.
pub(crate) fn run(args: ControlArgs) -> ExitCode {
    let (target, verb, requests) = match &args.command {
        ControlCommand::Friends(friends) => return run_friends(friends),
        ControlCommand::Add(a) => (
            &a.target,
            "added",
            distinct_users(&a.users)
                .and_then(|u| ControlRequest::add_users_batched(&u).map_err(|e| e.to_string())),
        ),
        ControlCommand::Remove(a) => (
            &a.target,
            "removed",
            distinct_users(&a.users)
                .and_then(|u| ControlRequest::remove_users_batched(&u).map_err(|e| e.to_string())),
        ),
        ControlCommand::Info(target) => (target, "info", Ok(vec![ControlRequest::info()])),
    };
    let prepared = requests.and_then(|requests| Ok((Sender::new(target)?, requests)));
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

/// `--users` without repeats, in their first order: 1 to [`MAX_USERS_PER_STREAM`] of them
/// (a stream follows at most that many).
fn distinct_users(users: &[u64]) -> Result<Vec<u64>, String> {
    let mut seen = std::collections::BTreeSet::new();
    let users: Vec<u64> = users.iter().copied().filter(|u| seen.insert(*u)).collect();
    if users.len() > MAX_USERS_PER_STREAM {
        return Err(format!(
            "{} user ids given to --users; at most {MAX_USERS_PER_STREAM} are allowed",
            users.len()
        ));
    }
    Ok(users)
}

/// `friends` as one line of JSON: `{"user_id":U,"friends":[...]}`.
pub(crate) fn friends_json(user: u64, friends: &[u64]) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        user_id: u64,
        friends: &'a [u64],
    }
    to_json(&Line {
        user_id: user,
        friends,
    })
}

/// One line of JSON (serializing these plain structs cannot fail).
fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Sends one command's requests in turn to the target's control stream: each paced under
/// Twitter's rate, signed with a nonce of its own, on a connection of its own.
struct Sender<'a> {
    target: &'a ControlTarget,
    endpoint: Endpoint,
    credentials: Credentials,
    roots: Vec<u8>,
    pacer: ControlPacer,
}

impl<'a> Sender<'a> {
    /// A sender for `target`, with credentials from the environment; a problem is a usage
    /// error, found before anything is sent.
    fn new(target: &'a ControlTarget) -> Result<Self, String> {
        let (endpoint, credentials, roots) = prepare(target)?;
        Ok(Sender {
            target,
            endpoint,
            credentials,
            roots,
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
        .with_timeout(target.timeout);
        carry_out(target.driver, call)
    }
}

/// The endpoint, credentials (from `env`) and extra roots of a control request. Every
/// problem is a usage error, found before anything is sent.
fn prepare(target: &ControlTarget) -> Result<(Endpoint, Credentials, Vec<u8>), String> {
    let endpoint =
        Endpoint::parse(&target.url).map_err(|e| format!("invalid --url {:?}: {e}", target.url))?;
    let credentials = credentials(&target.credentials)?;
    let roots = match &target.ca_file {
        None => Vec::new(),
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read --ca-file {}: {e}", path.display()))?;
            sitebucket_proto::parse_pem_roots(&pem)
                .map_err(|e| format!("--ca-file {} is not usable: {e}", path.display()))?;
            pem
        }
    };
    Ok((endpoint, credentials, roots))
}

/// One call on the chosen driver (each on a connection of its own).
pub(crate) fn carry_out(
    driver: DriverName,
    call: ControlCall,
) -> Result<ControlResponse, ControlError> {
    struct CarryOut(ControlCall);
    impl WithDriver for CarryOut {
        type Output = Result<ControlResponse, ControlError>;
        fn with<D: Driver>(self, driver: D) -> Self::Output {
            driver.control(self.0)
        }
    }
    with_driver(driver, CarryOut(call))
}

/// `info` as one line of JSON: the stream id, the users, `follows` when there are any, and
/// each option the server reported.
pub(crate) fn info_json(stream_id: &str, info: &StreamInfo) -> String {
    #[derive(Serialize)]
    struct User<'a> {
        id: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        dm: Option<bool>,
    }
    #[derive(Serialize)]
    struct Follows<'a> {
        user: u64,
        other_users: &'a [u64],
    }
    #[derive(Serialize)]
    struct Line<'a> {
        stream_id: &'a str,
        users: Vec<User<'a>>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        follows: Vec<Follows<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        with: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        replies: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        delimited: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        include_followings_activity: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        include_user_changes: Option<bool>,
    }
    let options = &info.options;
    to_json(&Line {
        stream_id,
        users: info
            .users
            .iter()
            .map(|u| User {
                id: u.id,
                name: u.name.as_deref(),
                dm: u.dm,
            })
            .collect(),
        follows: info
            .follows
            .iter()
            .map(|f| Follows {
                user: f.user,
                other_users: &f.other_users,
            })
            .collect(),
        with: options.with.as_deref(),
        replies: options.replies.as_deref(),
        delimited: options.delimited.as_deref(),
        include_followings_activity: options.include_followings_activity,
        include_user_changes: options.include_user_changes,
    })
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

    /// The target with every credential given by flag.
    fn signed(extra: &[&str]) -> ControlTarget {
        let mut all = vec![
            "--consumer-key",
            "value-of-SITEBUCKET_CONSUMER_KEY",
            "--consumer-secret",
            "cs",
            "--token",
            "value-of-SITEBUCKET_TOKEN",
            "--token-secret",
            "ts",
        ];
        all.extend_from_slice(extra);
        target(&all)
    }

    #[test]
    fn the_target_maps_onto_endpoint_and_credentials() {
        let t = signed(&[
            "--url",
            "http://127.0.0.1:9/2b/site.json",
            "--driver",
            "smol",
        ]);
        assert_eq!(t.driver, DriverName::Smol);
        assert_eq!(t.timeout, std::time::Duration::from_secs(10));
        let (endpoint, credentials, roots) = prepare(&t).expect("valid");
        assert_eq!(endpoint.url(), "http://127.0.0.1:9/2b/site.json");
        assert_eq!(credentials.token(), "value-of-SITEBUCKET_TOKEN");
        assert!(roots.is_empty());
    }

    #[test]
    fn problems_before_sending_say_what_is_wrong() {
        let bad_url = signed(&["--url", "ftp://x/1.1/site.json"]);
        assert!(prepare(&bad_url)
            .unwrap_err()
            .contains("invalid --url \"ftp://x/1.1/site.json\""));
        let mut no_secret = signed(&[]);
        no_secret.credentials.token_secret = None;
        let missing = prepare(&no_secret).unwrap_err();
        assert!(
            missing.contains("environment variable SITEBUCKET_TOKEN_SECRET is not set"),
            "{missing}"
        );
        let no_file = signed(&["--ca-file", "/nonexistent/ca.pem"]);
        assert!(prepare(&no_file)
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
        let mut odd = StreamInfo::default();
        odd.users.push(sitebucket_proto::control::InfoUser {
            id: 5,
            name: Some("a\u{1}\n\\".into()),
            dm: None,
        });
        assert_eq!(
            info_json("s", &odd),
            r#"{"stream_id":"s","users":[{"id":5,"name":"a\u0001\n\\"}]}"#
        );
        assert_eq!(friends_json(7, &[1, 2]), r#"{"user_id":7,"friends":[1,2]}"#);
        assert_eq!(
            distinct_users(&[3, 1, 3]),
            Ok(vec![3, 1]),
            "repeats are sent once"
        );
        let too_many: Vec<u64> = (1..=1001).collect();
        assert!(distinct_users(&too_many)
            .unwrap_err()
            .contains("1001 user ids given to --users; at most 1000"));
        assert_eq!(
            info_json("s", &StreamInfo::default()),
            r#"{"stream_id":"s","users":[]}"#
        );
    }
}
