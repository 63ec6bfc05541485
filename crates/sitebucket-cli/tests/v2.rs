//! X API v2, black-box: `sitebucket listen --api v2-filtered|v2-sample` and `sitebucket rules
//! list|add|delete` against the test server speaking v2 (`serve --api v2`'s server), on every
//! driver. The Bearer token signs every request and never shows in the log; a bad one exits
//! 1 without a retry; the v2 disconnect message and 429 follow the reconnect rules.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use sitebucket_testserver::{AttemptPlan, End, Scenario, ServerOptions, Step, TestServer};

/// The token the test server accepts.
const TOKEN: &str = "AAAAAAAAAAAAAAAAAAAAA-test-bearer-SECRET";

fn v2_server(plans: Vec<AttemptPlan>) -> TestServer {
    let options = ServerOptions {
        bearer_token: Some(TOKEN.into()),
        ..ServerOptions::plain()
    };
    TestServer::start(Scenario::new(plans), options).expect("test server starts")
}

/// `sitebucket listen --api <api> --url <url> --driver <driver> <extra...>` with `token`.
fn listen_v2(api: &str, url: &str, driver: &str, token: &str, extra: &[&str]) -> Command {
    let mut command = sitebucket();
    command
        .args(["listen", "--api", api, "--url", url, "--driver", driver])
        .args(extra)
        .env("SITEBUCKET_BEARER_TOKEN", token);
    command
}

fn tweet(id: u64) -> Vec<u8> {
    format!(
        "{{\"data\":{{\"id\":\"{id}\",\"text\":\"tweet {id}\"}},\"matching_rules\":[{{\"id\":\"7\",\"tag\":\"t\"}}]}}"
    )
    .into_bytes()
}

const DISCONNECT: &[u8] = b"{\n\t\"errors\": [{\n\t\t\"title\": \"operational-disconnect\",\n\t\t\"disconnect_type\": \"UpstreamOperationalDisconnect\",\n\t\t\"detail\": \"This stream has been disconnected upstream for operational reasons.\",\n\t\t\"type\": \"https://api.twitter.com/2/problems/operational-disconnect\"\n\t}]\n}";

#[test]
fn listen_prints_v2_messages_with_the_bearer_token_and_v2_parameters_on_every_driver() {
    for driver in DRIVERS {
        let messages = vec![tweet(1), tweet(2), tweet(3)];
        let steps = messages.iter().cloned().map(Step::Message).collect();
        let server =
            v2_server(vec![AttemptPlan::ok(steps)
                .with_end(End::HoldWithKeepAlives(Duration::from_millis(100)))]);
        let finished = run(
            listen_v2(
                "v2-filtered",
                &server.url(),
                driver,
                TOKEN,
                &[
                    "--max-messages",
                    "3",
                    "--tweet-fields",
                    "created_at,lang",
                    "--expansions",
                    "author_id",
                    "--backfill-minutes",
                    "2",
                ],
            ),
            format!("v2 listen {driver}"),
        );
        assert_eq!(finished.code(), 0, "{driver}: {}", finished.stderr);
        assert_eq!(finished.stdout, lines(&messages), "{driver}");
        let attempts = server.attempts();
        assert_eq!(attempts.len(), 1, "{driver}");
        let attempt = &attempts[0];
        assert_eq!(attempt.path, "/2/tweets/search/stream");
        assert_eq!(
            sorted_query(&attempt.query),
            pairs(&[
                ("backfill_minutes", "2"),
                ("expansions", "author_id"),
                ("tweet.fields", "created_at,lang"),
            ])
        );
        assert_eq!(
            attempt.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert!(attempt
            .header("user-agent")
            .is_some_and(|ua| ua.starts_with("sitebucket/")));
        assert_no_secrets(&finished.stderr, Some(&server), &[TOKEN]);
    }
}

#[test]
fn the_sample_stream_and_the_built_in_v2_scenario_stream_too() {
    let options = ServerOptions {
        bearer_token: Some(TOKEN.into()),
        ..ServerOptions::plain()
    };
    let server = TestServer::start(Scenario::builtin_v2("steady").unwrap(), options).unwrap();
    for driver in DRIVERS {
        let finished = run(
            listen_v2(
                "v2-sample",
                &server.sample_url(),
                driver,
                TOKEN,
                &["--max-messages", "2"],
            ),
            format!("v2 sample {driver}"),
        );
        assert_eq!(finished.code(), 0, "{driver}: {}", finished.stderr);
        let text = finished.stdout_text();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.lines().all(|l| l.starts_with("{\"data\":")), "{text}");
    }
    assert!(server
        .attempts()
        .iter()
        .all(|a| a.path == "/2/tweets/sample/stream" && a.query.is_empty()));
}

#[test]
fn a_bad_token_exits_1_at_once_on_every_driver() {
    for driver in DRIVERS {
        let server = v2_server(vec![AttemptPlan::ok(vec![Step::Message(tweet(1))])]);
        let finished = run(
            listen_v2(
                "v2-filtered",
                &server.url(),
                driver,
                "wrong-token-value",
                &[],
            ),
            format!("v2 401 {driver}"),
        );
        assert_eq!(finished.code(), 1, "{driver}: {}", finished.stderr);
        assert!(finished.stderr.contains("HTTP 401"), "{}", finished.stderr);
        assert!(finished.stdout.is_empty());
        assert_eq!(server.attempts().len(), 1, "{driver}: no retry after a 401");
        assert_no_secrets(
            &finished.stderr,
            Some(&server),
            &["wrong-token-value", TOKEN],
        );
    }
}

#[test]
fn the_v2_disconnect_message_reconnects_after_a_step_on_every_driver() {
    for driver in DRIVERS {
        let server = v2_server(vec![
            AttemptPlan::ok(vec![
                Step::Message(tweet(1)),
                Step::Message(DISCONNECT.to_vec()),
            ])
            .with_end(End::HoldWithKeepAlives(Duration::from_millis(100))),
            AttemptPlan::ok(vec![Step::Message(tweet(2))])
                .with_end(End::HoldWithKeepAlives(Duration::from_millis(100))),
        ]);
        let finished = run(
            listen_v2(
                "v2-filtered",
                &server.url(),
                driver,
                TOKEN,
                &["--max-messages", "3", "--network-backoff-step", "50ms"],
            ),
            format!("v2 disconnect {driver}"),
        );
        assert_eq!(finished.code(), 0, "{driver}: {}", finished.stderr);
        assert_eq!(
            finished.stdout,
            lines(&[tweet(1), DISCONNECT.to_vec(), tweet(2)]),
            "{driver}"
        );
        assert!(
            finished.stderr.contains("operational-disconnect")
                && finished.stderr.contains("backing off 50ms"),
            "{}",
            finished.stderr
        );
        assert_eq!(server.attempts().len(), 2);
    }
}

#[test]
fn a_429_waits_for_its_rate_limit_reset() {
    let now = sitebucket_thread::time::unix_secs();
    // The window resets 2 s from now (whole seconds): the wait is over 1 s although the
    // backoff alone would be 100 ms.
    let reset = (now + 2).to_string();
    let server = v2_server(vec![
        AttemptPlan::status(429, "Too Many Requests").with_header("x-rate-limit-reset", &reset),
        AttemptPlan::ok(vec![Step::Message(tweet(1))])
            .with_end(End::HoldWithKeepAlives(Duration::from_millis(100))),
    ]);
    let finished = run(
        listen_v2(
            "v2-filtered",
            &server.url(),
            "thread",
            TOKEN,
            &["--max-messages", "1", "--rate-limit-backoff-start", "100ms"],
        ),
        "v2 429",
    );
    assert_eq!(finished.code(), 0, "{}", finished.stderr);
    assert!(finished.stderr.contains("HTTP 429"), "{}", finished.stderr);
    let gaps = gaps(&server);
    assert_eq!(gaps.len(), 1);
    assert!(gaps[0] >= Duration::from_millis(900), "{gaps:?}");
}

#[test]
fn usage_errors_send_nothing() {
    let server = v2_server(vec![AttemptPlan::ok(vec![])]);
    let url = server.url();
    for (extra, token, needle) in [
        (&["--follow", "1"][..], Some(TOKEN), "Site Streams options"),
        (
            &["--delimited"][..],
            Some(TOKEN),
            "--delimited is not an option",
        ),
        (
            &["--with", "followings"][..],
            Some(TOKEN),
            "--with is not an option",
        ),
        (&[][..], None, "SITEBUCKET_BEARER_TOKEN"),
        (&[][..], Some(""), "SITEBUCKET_BEARER_TOKEN"),
    ] {
        let mut command = sitebucket();
        command
            .args(["listen", "--api", "v2-filtered", "--url", &url])
            .args(extra);
        if let Some(token) = token {
            command.env("SITEBUCKET_BEARER_TOKEN", token);
        }
        let finished = run(command, format!("v2 usage {extra:?}"));
        assert_eq!(finished.code(), 2, "{extra:?}: {}", finished.stderr);
        assert!(
            finished.stderr.contains(needle),
            "{extra:?}: {}",
            finished.stderr
        );
    }
    // A Site Streams listen still needs its ids, and v2 parameters are refused there.
    let mut command = listen_args(&url, "thread", &["--api", "site"]);
    command.env("SITEBUCKET_BEARER_TOKEN", TOKEN);
    assert_eq!(run(command, "site without ids").code(), 2);
    let command = listen(&url, "thread", &["--tweet-fields", "lang"]);
    let finished = run(command, "site with v2 params");
    assert_eq!(finished.code(), 2);
    assert!(
        finished.stderr.contains("--tweet-fields"),
        "{}",
        finished.stderr
    );
    assert!(server.attempts().is_empty(), "nothing was sent");
}

/// `sitebucket rules <args> --url <url> --driver <driver>` with `token`.
fn rules(url: &str, driver: &str, token: Option<&str>, args: &[&str]) -> Command {
    let mut command = sitebucket();
    command
        .arg("rules")
        .args(args)
        .args(["--url", url, "--driver", driver]);
    if let Some(token) = token {
        command.env("SITEBUCKET_BEARER_TOKEN", token);
    }
    command
}

#[test]
fn rules_list_add_delete_and_dry_run_on_every_driver() {
    for driver in DRIVERS {
        let server = v2_server(vec![AttemptPlan::ok(vec![])]);
        let url = server.url();
        let v2 = server.v2().expect("a v2 server");
        let ok = |args: &[&str]| {
            let finished = run(
                rules(&url, driver, Some(TOKEN), args),
                format!("rules {args:?}"),
            );
            assert_eq!(finished.code(), 0, "{driver} {args:?}: {}", finished.stderr);
            assert_no_secrets(&finished.stderr, None, &[TOKEN]);
            let text = finished.stdout_text();
            assert_eq!(text.lines().count(), 1, "{text}");
            serde_json::from_str::<serde_json::Value>(&text).expect("one line of JSON")
        };
        assert_eq!(ok(&["list"])["meta"]["result_count"], 0);
        let dry = ok(&["add", "--rule", "cat has:images", "--dry-run"]);
        assert_eq!(dry["meta"]["summary"]["valid"], 1);
        assert!(v2.rules().is_empty(), "a dry run changes nothing");
        let added = ok(&[
            "add",
            "--rule",
            "cat has:images",
            "--rule",
            "dog",
            "--tag",
            "pets",
        ]);
        assert_eq!(added["meta"]["summary"]["created"], 2);
        let held = v2.rules();
        assert_eq!(held.len(), 2);
        assert!(held.iter().all(|r| r.tag.as_deref() == Some("pets")));
        let listed = ok(&["list"]);
        assert_eq!(listed["data"][1]["value"], "dog");
        // A duplicate is turned down: status 1, the reason in the log, the answer printed.
        let finished = run(
            rules(&url, driver, Some(TOKEN), &["add", "--rule", "dog"]),
            "duplicate",
        );
        assert_eq!(finished.code(), 1, "{}", finished.stderr);
        assert!(
            finished.stderr.contains("DuplicateRule"),
            "{}",
            finished.stderr
        );
        assert!(finished.stdout_text().contains("DuplicateRule"));
        let first = held[0].id.clone();
        ok(&["delete", "--id", &first, "--dry-run"]);
        assert_eq!(v2.rules().len(), 2);
        let deleted = ok(&["delete", "--id", &first]);
        assert_eq!(deleted["meta"]["summary"]["deleted"], 1);
        assert_eq!(v2.rules().len(), 1);
        // Every request carried the token.
        assert!(server
            .attempts()
            .iter()
            .all(|a| a.header("authorization") == Some(format!("Bearer {TOKEN}").as_str())));
    }
}

#[test]
fn rules_without_a_good_token_fail() {
    let server = v2_server(vec![AttemptPlan::ok(vec![])]);
    let url = server.url();
    let finished = run(
        rules(&url, "thread", Some("nope-nope-nope"), &["list"]),
        "bad token",
    );
    assert_eq!(finished.code(), 1, "{}", finished.stderr);
    assert!(finished.stderr.contains("401"), "{}", finished.stderr);
    let finished = run(rules(&url, "thread", None, &["list"]), "no token");
    assert_eq!(finished.code(), 2);
    assert!(finished.stderr.contains("SITEBUCKET_BEARER_TOKEN"));
    let finished = run(
        rules(&url, "thread", Some(TOKEN), &["delete", "--id", "x1"]),
        "bad id",
    );
    assert_eq!(finished.code(), 2);
    assert_eq!(server.attempts().len(), 1, "usage errors send nothing");
}
