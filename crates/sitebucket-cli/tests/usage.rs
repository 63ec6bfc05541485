//! Usage errors, black-box: README "Exit status" 2 — an unknown flag, a bad value, no or
//! malformed `--follow`, a missing credential (named) — and nothing is sent. Also `--help`,
//! `--version`, and that `--driver` takes the three names.

mod common;

use std::time::Duration;

use common::*;
use sitebucket_testserver::{AttemptPlan, End, Step};

/// Runs `listen` with `args` against a live server and checks the usage error: status 2,
/// `expected` in stderr, nothing on stdout, no connection made.
fn assert_usage_error(driver: &str, args: &[&str], expected: &str) {
    let server = server(vec![
        AttemptPlan::ok(vec![Step::Message(b"{}".to_vec())]).with_end(End::Stall)
    ]);
    let mut command = sitebucket();
    command.arg("listen");
    if !args.contains(&"--url") {
        command.args(["--url", &server.url()]);
    }
    if !args.contains(&"--driver") {
        command.args(["--driver", driver]);
    }
    command.args(args);
    let credentials = sitebucket_testserver::Credentials::test_default();
    command
        .env("SITEBUCKET_CONSUMER_KEY", &credentials.consumer_key)
        .env("SITEBUCKET_CONSUMER_SECRET", &credentials.consumer_secret)
        .env("SITEBUCKET_TOKEN", &credentials.token)
        .env("SITEBUCKET_TOKEN_SECRET", &credentials.token_secret);
    let done = run(command, format!("{driver} {args:?}"));
    assert_no_secrets(&done.stderr, Some(&server), &[]);
    assert_eq!(done.code(), 2, "{driver} {args:?}: {}", done.stderr);
    assert!(
        done.stderr.contains(expected),
        "{driver} {args:?}: expected {expected:?} in:\n{}",
        done.stderr
    );
    assert!(
        done.stdout.is_empty(),
        "{driver} {args:?}: {}",
        done.stdout_text()
    );
    assert!(
        !server.wait_for_attempts(1, Duration::from_millis(50)) && server.attempts().is_empty(),
        "{driver} {args:?}: something was sent"
    );
}

/// README "Exit status" 2: no or malformed `--follow` (empty, non-numeric, negative, above
/// `u64`); the limit of 100,000 ids is checked in `conventions.rs`.
#[test]
fn malformed_follow_lists() {
    let cases: [(&[&str], &str); 10] = [
        (&[], "--follow"),
        (&["--follow", ""], "empty"),
        (&["--follow", "1,,2"], "empty"),
        (&["--follow", "12a"], "not a decimal number"),
        (&["--follow", "-5"], "negative"),
        (&["--follow=-5"], "negative"),
        (&["--follow", "1,-5"], "negative"),
        (&["--follow", "18446744073709551616"], "too large"),
        (&["--follow", "1", "--follow", "x"], "not a decimal number"),
        (&["--follow", "0"], "start at 1"),
    ];
    for driver in DRIVERS {
        for (args, expected) in cases {
            assert_usage_error(driver, args, expected);
        }
    }
}

/// README "Exit status" 2: an unknown flag, a bad value (of every option that takes one).
#[test]
fn unknown_flags_and_bad_values() {
    let cases: [(&[&str], &str); 24] = [
        (&["--bogus"], "--bogus"),
        (&["--with", "everyone"], "everyone"),
        (&["--driver", "glommio"], "glommio"),
        (&["--backoff", "exponential"], "exponential"),
        (&["--max-messages", "0"], "--max-messages"),
        (&["--max-messages", "ten"], "--max-messages"),
        (&["--max-messages", "-1"], "-1"),
        (&["--retry-limit", "0"], "--retry-limit"),
        (&["--retry-limit", "4294967296"], "--retry-limit"),
        (&["--stall-timeout", "90"], "has no unit"),
        (&["--stall-timeout", "1.5s"], "unknown unit"),
        (&["--stall-timeout", "0s"], "zero"),
        (&["--stall-timeout", "5d"], "unknown unit"),
        (
            &["--network-backoff-step", "fast"],
            "does not start with a number",
        ),
        (&["--network-backoff-max", "169h"], "too long"),
        (&["--http-backoff-start", "5"], "has no unit"),
        (&["--http-backoff-max", "x"], "--http-backoff-max"),
        (&["--rate-limit-backoff-start", "1min"], "unknown unit"),
        (&["--max-message-bytes", "0"], "max_message_bytes"),
        (&["--max-message-bytes", "2000000000"], "max_message_bytes"),
        (&["--max-message-bytes", "-3"], "-3"),
        (&["--url", "ftp://example.com/"], "invalid URL"),
        (&["--url", "not a url"], "invalid URL"),
        (
            &["--ca-file", "/nonexistent/ca.pem"],
            "cannot read --ca-file",
        ),
    ];
    for driver in DRIVERS {
        for (args, expected) in cases {
            let mut all = vec!["--follow", FOLLOW];
            all.extend_from_slice(args);
            assert_usage_error(driver, &all, expected);
        }
        // A file that is no PEM certificate.
        let path = std::env::temp_dir().join(format!("sitebucket-cli-not-a-ca-{driver}.pem"));
        std::fs::write(&path, "this is not a certificate\n").unwrap();
        let path = path.to_str().unwrap().to_owned();
        assert_usage_error(
            driver,
            &["--follow", FOLLOW, "--ca-file", &path],
            "is not usable",
        );
        let _ = std::fs::remove_file(&path);
    }
}

/// README "Exit status" 2: a missing credential — the message names the variable — and an
/// empty one; nothing is sent.
#[test]
fn a_missing_credential_is_named() {
    let names = [
        "SITEBUCKET_CONSUMER_KEY",
        "SITEBUCKET_CONSUMER_SECRET",
        "SITEBUCKET_TOKEN",
        "SITEBUCKET_TOKEN_SECRET",
    ];
    for driver in DRIVERS {
        let server = server(vec![AttemptPlan::ok(vec![])]);
        for missing in names {
            for empty in [false, true] {
                let mut command = listen(&server.url(), driver, &[]);
                if empty {
                    command.env(missing, "");
                } else {
                    command.env_remove(missing);
                }
                let done = run(command, format!("{driver} without {missing}"));
                assert_no_secrets(&done.stderr, None, &[]);
                assert_eq!(done.code(), 2, "{driver} {missing}: {}", done.stderr);
                assert!(
                    done.stderr.contains(&format!("{missing} is not set")),
                    "{driver} {missing}: {}",
                    done.stderr
                );
                assert!(done.stdout.is_empty());
            }
        }
        assert!(!server.wait_for_attempts(1, Duration::from_millis(50)));
        assert!(server.attempts().is_empty(), "{driver}: something was sent");
    }
}

/// README options table `--driver thread|mio|smol|tokio`: each name is accepted and runs the stream.
#[test]
fn every_driver_name_is_accepted() {
    for driver in DRIVERS {
        let server = server(vec![AttemptPlan::ok(vec![Step::Message(
            b"{\"d\":1}".to_vec(),
        )])
        .with_end(End::Stall)]);
        let done = run(
            listen(&server.url(), driver, &["--max-messages", "1"]),
            driver,
        );
        assert_eq!(done.code(), 0, "{driver}: {}", done.stderr);
        assert_eq!(done.stdout, b"{\"d\":1}\n");
        assert!(
            done.stderr.contains(&format!("with the {driver} driver")),
            "{driver}: {}",
            done.stderr
        );
    }
}

/// `--help` lists every option of the README's table and exits 0; `--version` says the version.
#[test]
fn help_lists_every_option_and_version_prints() {
    let done = run(
        {
            let mut c = sitebucket();
            c.args(["listen", "--help"]);
            c
        },
        "help",
    );
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let help = done.stdout_text();
    for option in [
        "--url",
        "--follow",
        "--with",
        "--driver",
        "--delimited",
        "--stall-warnings",
        "--replies-all",
        "--stringify-friend-ids",
        "--gzip",
        "--max-messages",
        "--retry-limit",
        "--stall-timeout",
        "--backoff",
        "--network-backoff-step",
        "--network-backoff-max",
        "--http-backoff-start",
        "--http-backoff-max",
        "--rate-limit-backoff-start",
        "--max-message-bytes",
        "--ca-file",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    assert!(help.contains("https://sitestream.twitter.com/1.1/site.json"));
    let done = run(
        {
            let mut c = sitebucket();
            c.arg("--version");
            c
        },
        "version",
    );
    assert_eq!(done.code(), 0);
    assert_eq!(
        done.stdout_text(),
        format!("sitebucket {}\n", env!("CARGO_PKG_VERSION"))
    );
    let done = run(sitebucket(), "no subcommand");
    assert_eq!(done.code(), 2, "{}", done.stderr);
}
