//! What users of ripgrep or kafkacat expect, black-box (README "Options", "Output",
//! "Logging", "Exit status"): `--follow` repeated and comma lists, `--follow-file` (stdin
//! too) with named bad lines and a stated limit, one message per line, `-v`/`-q`/`RUST_LOG`,
//! `--log-format json`, credentials shown in `--help` as `[env: …]` without their values,
//! completions, one log line per HTTP error, `--stats-every`.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use sitebucket_testserver::{AttemptPlan, End, Step};

/// A server that sends `messages`, then keeps the connection open and silent.
fn sending(messages: &[&[u8]]) -> sitebucket_testserver::TestServer {
    let steps = messages.iter().map(|m| Step::Message(m.to_vec())).collect();
    server(vec![AttemptPlan::ok(steps).with_end(End::Stall)])
}

/// The ids of the (only) stream attempt.
fn sent_follow(server: &sitebucket_testserver::TestServer) -> String {
    let attempts = server.attempts();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    attempts[0].query_param("follow").unwrap_or("").to_owned()
}

/// README "Options": `--follow` repeats and takes comma lists; `--follow-file` adds one id a
/// line (comments, blank lines); duplicates are sent once, sorted.
#[test]
fn follow_repeats_and_a_file_adds_ids() {
    for driver in DRIVERS {
        let server = sending(&[b"{}"]);
        let file = std::env::temp_dir().join(format!("sitebucket-cli-ids-{driver}.txt"));
        std::fs::write(&file, "# friends\n7\n\n  5 # again\n3\n").unwrap();
        let done = run(
            listen_args(
                &server.url(),
                driver,
                &[
                    "--follow",
                    "9,3",
                    "--follow=1",
                    "--follow-file",
                    file.to_str().unwrap(),
                    "--max-messages",
                    "1",
                ],
            ),
            driver,
        );
        assert_eq!(done.code(), 0, "{driver}: {}", done.stderr);
        assert_eq!(sent_follow(&server), "1,3,5,7,9", "{driver}");
        let _ = std::fs::remove_file(file);
    }
}

/// README "Options": `--follow-file -` reads stdin.
#[test]
fn follow_file_dash_reads_stdin() {
    let server = sending(&[b"{}"]);
    let mut command = listen_args(
        &server.url(),
        "thread",
        &["--follow-file", "-", "--max-messages", "1"],
    );
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"42\n# c\n41\n")
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < RUN_BOUND, "still running");
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(sent_follow(&server), "41,42");
}

/// README "Exit status" 2: a bad line names the file and the line; past the stated limit
/// of 100,000 distinct ids, a usage error; nothing is sent.
#[test]
fn follow_file_problems_are_usage_errors() {
    let server = sending(&[b"{}"]);
    let dir = std::env::temp_dir();
    let bad = dir.join(format!("sitebucket-cli-bad-{}.txt", std::process::id()));
    std::fs::write(&bad, "1\n2\n\n3x\n").unwrap();
    let over = id_file("over", 1..=100_001);
    let at_limit = id_file("at-limit", 1..=100_000);
    let cases = [
        (
            vec!["--follow-file", bad.to_str().unwrap()],
            format!(
                "--follow-file {} line 4: user id \"3x\" is not a decimal number",
                bad.display()
            ),
        ),
        (
            vec!["--follow-file", "/nonexistent/ids.txt"],
            "cannot read --follow-file /nonexistent/ids.txt".to_owned(),
        ),
        (
            vec!["--follow-file", over.to_str().unwrap()],
            "100001 distinct user ids given (--follow and --follow-file); at most 100000"
                .to_owned(),
        ),
        (
            vec![
                "--follow",
                "100001",
                "--follow-file",
                at_limit.to_str().unwrap(),
            ],
            "100001 distinct user ids given".to_owned(),
        ),
    ];
    for (args, expected) in cases {
        let done = run(listen_args(&server.url(), "thread", &args), "file");
        assert_eq!(done.code(), 2, "{args:?}: {}", done.stderr);
        assert!(done.stderr.contains(&expected), "{args:?}: {}", done.stderr);
        assert!(done.stdout.is_empty());
    }
    assert!(!server.wait_for_attempts(1, Duration::from_millis(50)));
    for path in [bad, over, at_limit] {
        let _ = std::fs::remove_file(path);
    }
}

/// README "Output": a raw CR or LF byte inside a payload prints as a space, so each message
/// is exactly one line, with CRLF framing and with `--delimited` (whose frames may hold a
/// CRLF).
#[test]
fn every_message_is_exactly_one_line() {
    let pretty: &[u8] = b"{\n  \"a\": [1,\n 2]\n}";
    let with_cr: &[u8] = b"{\"b\":\r1,\r\n\"c\":2}";
    for driver in DRIVERS {
        let crlf = sending(&[pretty, b"{\"plain\":true}"]);
        let done = run(
            listen(&crlf.url(), driver, &["--max-messages", "2"]),
            driver,
        );
        assert_eq!(done.code(), 0, "{driver}: {}", done.stderr);
        assert_eq!(
            done.stdout, b"{   \"a\": [1,  2] }\n{\"plain\":true}\n",
            "{driver}"
        );

        let delimited = server(vec![AttemptPlan::ok(vec![Step::Message(with_cr.to_vec())])
            .with_framing(sitebucket_testserver::Framing::Length)
            .with_end(End::Stall)]);
        let done = run(
            listen(
                &delimited.url(),
                driver,
                &["--delimited", "--max-messages", "1"],
            ),
            driver,
        );
        assert_eq!(done.code(), 0, "{driver}: {}", done.stderr);
        assert_eq!(done.stdout, b"{\"b\": 1,  \"c\":2}\n", "{driver}");
    }
}

/// README "Logging": `-q` leaves warnings and errors only, `-v` adds debug lines
/// (keep-alives), `RUST_LOG` is honoured when no flag is given, and `--log-format json`
/// writes one JSON object per line.
#[test]
fn verbosity_and_log_format() {
    let server = server(vec![AttemptPlan::ok(vec![
        Step::KeepAlive,
        Step::Message(b"{}".to_vec()),
    ])
    .with_end(End::Stall)]);
    let url = server.url();
    let stderr_of = |extra: &[&str], rust_log: Option<&str>| {
        let mut args = vec!["--max-messages", "1"];
        args.extend_from_slice(extra);
        let mut command = listen(&url, "thread", &args);
        if let Some(value) = rust_log {
            command.env("RUST_LOG", value);
        }
        let done = run(command, format!("{extra:?} {rust_log:?}"));
        assert_eq!(done.code(), 0, "{extra:?}: {}", done.stderr);
        done.stderr
    };
    let default = stderr_of(&[], None);
    assert!(default.contains("connecting to"), "{default}");
    assert!(!default.contains("keep-alive"), "{default}");
    let quiet = stderr_of(&["-q"], None);
    assert!(quiet.trim().is_empty(), "{quiet}");
    let verbose = stderr_of(&["-v"], None);
    assert!(verbose.contains("keep-alive"), "{verbose}");
    let from_env = stderr_of(&[], Some("debug"));
    assert!(from_env.contains("keep-alive"), "{from_env}");
    let env_quiet = stderr_of(&[], Some("warn"));
    assert!(env_quiet.trim().is_empty(), "{env_quiet}");
    let flag_wins = stderr_of(&["-q"], Some("debug"));
    assert!(flag_wins.trim().is_empty(), "{flag_wins}");
    let json = stderr_of(&["--log-format", "json"], None);
    let lines: Vec<&str> = json.lines().collect();
    assert!(lines.len() >= 3, "{json}");
    for line in lines {
        let value: serde_json::Value = serde_json::from_str(line).expect(line);
        assert!(value["fields"]["message"].is_string(), "{line}");
        assert!(value["level"].is_string(), "{line}");
    }
}

/// README "Credentials": `--help` shows each credential's variable, never its value.
#[test]
fn help_names_the_credential_variables_without_their_values() {
    let mut command = sitebucket();
    command.args(["listen", "--help"]);
    with_credentials(&mut command);
    let done = run(command, "help");
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let help = done.stdout_text();
    for name in [
        "SITEBUCKET_CONSUMER_KEY",
        "SITEBUCKET_CONSUMER_SECRET",
        "SITEBUCKET_TOKEN",
        "SITEBUCKET_TOKEN_SECRET",
    ] {
        assert!(help.contains(&format!("[env: {name}]")), "{name}:\n{help}");
    }
    let credentials = sitebucket_testserver::Credentials::test_default();
    for value in [
        &credentials.consumer_key,
        &credentials.consumer_secret,
        &credentials.token,
        &credentials.token_secret,
    ] {
        assert!(!help.contains(value.as_str()), "{value} shown:\n{help}");
    }
    for option in ["--follow-file", "--stats-every", "--log-format", "-v", "-q"] {
        assert!(help.contains(option), "{option}:\n{help}");
    }
    assert!(
        help.contains("as a space") || help.contains("one line"),
        "{help}"
    );
}

/// `sitebucket completions SHELL` prints a completion script naming the options.
#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let mut command = sitebucket();
        command.args(["completions", shell]);
        let done = run(command, shell);
        assert_eq!(done.code(), 0, "{shell}: {}", done.stderr);
        let script = done.stdout_text();
        assert!(script.contains("sitebucket"), "{shell}");
        assert!(script.contains("follow-file"), "{shell}");
    }
    let mut command = sitebucket();
    command.args(["completions", "tcsh"]);
    assert_eq!(run(command, "tcsh").code(), 2);
}

/// One log line per event: an HTTP error is logged once, with its backoff.
#[test]
fn an_http_error_is_one_log_line() {
    for driver in DRIVERS {
        let server = server(vec![
            AttemptPlan::status(503, "Service Unavailable"),
            AttemptPlan::ok(vec![Step::Message(b"{}".to_vec())]).with_end(End::Stall),
        ]);
        let done = run(
            listen(
                &server.url(),
                driver,
                &["--max-messages", "1", "--http-backoff-start", "10ms"],
            ),
            driver,
        );
        assert_eq!(done.code(), 0, "{driver}: {}", done.stderr);
        let lines: Vec<&str> = done
            .stderr
            .lines()
            .filter(|l| l.contains("HTTP 503"))
            .collect();
        assert_eq!(lines.len(), 1, "{driver}: {}", done.stderr);
        assert!(
            lines[0].contains("backing off 10ms before reconnecting"),
            "{}",
            lines[0]
        );
    }
}

/// README "Options": `--stats-every` logs messages/s, bytes/s, reconnects and streams up.
#[test]
fn stats_every_period() {
    let server = server(vec![AttemptPlan::ok(vec![Step::Repeat(
        sitebucket_testserver::Repeat::endless(vec![b"{\"s\":1}".to_vec()])
            .with_interval(Duration::from_millis(10)),
    )])]);
    let running = spawn(
        listen(&server.url(), "thread", &["--stats-every", "200ms"]),
        "stats",
    );
    assert!(
        running.wait_stderr("1/1 stream(s) up", Duration::from_secs(10)),
        "{}",
        running.stderr_text()
    );
    let done = running.signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(5));
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let line = done
        .stderr
        .lines()
        .find(|l| l.contains("1/1 stream(s) up"))
        .unwrap();
    assert!(
        line.contains("messages/s") && line.contains("bytes/s"),
        "{line}"
    );
    assert!(line.contains("0 reconnect(s)"), "{line}");
}

/// README "Many users": without a `--follow-file` to re-read, SIGHUP is logged and ignored
/// (it does not end the process, as it would by default).
#[test]
fn sighup_without_a_follow_file_is_ignored() {
    let server = server(vec![
        AttemptPlan::ok(vec![Step::Message(b"{}".to_vec())]).with_end(End::Stall)
    ]);
    let mut running = spawn(listen(&server.url(), "thread", &[]), "hup");
    assert!(running.wait_stdout_lines(1, Duration::from_secs(10)));
    running.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        running.wait_stderr(
            "no --follow-file to re-read; ignored",
            Duration::from_secs(10)
        ),
        "{}",
        running.stderr_text()
    );
    assert!(running.is_running());
    let done = running.signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(5));
    assert_eq!(done.code(), 0, "{}", done.stderr);
}
