//! `sitebucket serve`, black-box: README "`sitebucket serve [--port P] [--tls] [--scenario
//! NAME] [--replay FILE]`" — prints the URL, the credentials it accepts and (with `--tls`)
//! its CA certificate's path; `sitebucket listen` works with what it printed; the control
//! streams it announces answer `sitebucket control`; `--replay` streams a recording;
//! SIGINT/SIGTERM stop it.

mod common;

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

/// What the banner said.
struct Banner {
    url: String,
    ca: Option<String>,
    exports: Vec<(String, String)>,
}

fn serve(args: &[&str]) -> (Running, Banner) {
    let mut command = sitebucket();
    command.arg("serve").args(args);
    let running = spawn(command, format!("serve {args:?}"));
    assert!(
        running.stdout.wait_for(Duration::from_secs(10), |b| {
            String::from_utf8_lossy(b).contains("# Then:")
        }),
        "no banner: {}",
        String::from_utf8_lossy(&running.stderr.snapshot())
    );
    let text = String::from_utf8(running.stdout.snapshot()).unwrap();
    let mut banner = Banner {
        url: String::new(),
        ca: None,
        exports: Vec::new(),
    };
    for line in text.lines() {
        if let Some(url) = line.strip_prefix("# URL: ") {
            banner.url = url.to_owned();
        } else if let Some(ca) = line.strip_prefix("# CA certificate: ") {
            banner.ca = Some(ca.to_owned());
        } else if let Some(export) = line.strip_prefix("export ") {
            let (name, value) = export.split_once('=').unwrap();
            banner.exports.push((name.to_owned(), value.to_owned()));
        } else {
            assert!(line.starts_with("# "), "not shell: {line}");
        }
    }
    (running, banner)
}

fn listen_with(banner: &Banner, driver: &str, extra: &[&str]) -> Command {
    let mut command = sitebucket();
    command.args([
        "listen",
        "--url",
        &banner.url,
        "--follow",
        "12",
        "--driver",
        driver,
    ]);
    command.args(extra);
    if let Some(ca) = &banner.ca {
        command.args(["--ca-file", ca]);
    }
    for (name, value) in &banner.exports {
        command.env(name, value);
    }
    command
}

#[test]
fn serve_prints_what_listen_needs_and_stops_on_a_signal() {
    for (tls, signal) in [(false, Signal::SIGTERM), (true, Signal::SIGINT)] {
        let args: &[&str] = if tls { &["--tls"] } else { &[] };
        let (running, banner) = serve(args);
        let scheme = if tls {
            "https://127.0.0.1:"
        } else {
            "http://127.0.0.1:"
        };
        assert!(banner.url.starts_with(scheme), "{}", banner.url);
        assert!(banner.url.ends_with("/1.1/site.json"));
        let names: Vec<&str> = banner.exports.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "SITEBUCKET_CONSUMER_KEY",
                "SITEBUCKET_CONSUMER_SECRET",
                "SITEBUCKET_TOKEN",
                "SITEBUCKET_TOKEN_SECRET"
            ]
        );
        assert_eq!(banner.ca.is_some(), tls);
        if let Some(ca) = &banner.ca {
            let pem = std::fs::read_to_string(ca).unwrap();
            assert!(pem.contains("-----BEGIN CERTIFICATE-----"));
        }
        for driver in DRIVERS {
            let done = run(
                listen_with(&banner, driver, &["--max-messages", "6"]),
                format!("listen to serve, {driver}"),
            );
            assert_eq!(done.code(), 0, "{driver}: {}", done.stderr);
            let text = done.stdout_text();
            assert_eq!(text.lines().count(), 6, "{text}");
            assert!(text.starts_with("{\"control\":"), "{text}");
        }
        let done = running.signal_and_wait(signal, Duration::from_secs(5));
        assert_eq!(done.code(), 0, "{}", done.stderr);
        assert!(done.elapsed < Duration::from_secs(1), "{:?}", done.elapsed);
        if let Some(ca) = &banner.ca {
            assert!(!std::path::Path::new(ca).exists(), "the CA file is removed");
        }
    }
}

#[test]
fn serve_takes_a_port_and_every_builtin_scenario() {
    for scenario in ["steady", "flaky", "firehose"] {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let port = port.to_string();
        let (running, banner) = serve(&["--port", &port, "--scenario", scenario]);
        assert_eq!(banner.url, format!("http://127.0.0.1:{port}/1.1/site.json"));
        let done = run(
            listen_with(
                &banner,
                "thread",
                &[
                    "--max-messages",
                    "3",
                    "--http-backoff-start",
                    "10ms",
                    "--rate-limit-backoff-start",
                    "10ms",
                    "--network-backoff-step",
                    "10ms",
                ],
            ),
            format!("listen to {scenario}"),
        );
        assert_eq!(done.code(), 0, "{scenario}: {}", done.stderr);
        assert_eq!(done.stdout_text().lines().count(), 3);
        let done = running.signal_and_wait(Signal::SIGTERM, Duration::from_secs(5));
        assert_eq!(done.code(), 0, "{}", done.stderr);
    }
}

#[test]
fn serve_usage_errors_and_a_busy_port() {
    for args in [
        &["serve", "--scenario", "nope"][..],
        &["serve", "--port", "70000"],
        &["serve", "--bogus"],
    ] {
        let mut command = sitebucket();
        command.args(args);
        let done = run(command, format!("{args:?}"));
        assert_eq!(done.code(), 2, "{args:?}: {}", done.stderr);
    }
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let mut command = sitebucket();
    command.args(["serve", "--port", &port]);
    let done = run(command, "busy port");
    assert_eq!(done.code(), 1, "{}", done.stderr);
    assert!(
        done.stderr.contains("cannot start the test server"),
        "{}",
        done.stderr
    );
}

/// `sitebucket control …` with the banner's URL and credentials.
fn control_with(banner: &Banner, args: &[&str]) -> Command {
    let mut command = sitebucket();
    command
        .arg("control")
        .arg(args[0])
        .args(["--url", &banner.url])
        .args(&args[1..]);
    for (name, value) in &banner.exports {
        command.env(name, value);
    }
    command
}

/// The README's control tour, against `serve`: `listen` prints the control URI its
/// connection announced; `control add`, `info`, `remove` and `friends` act on that live
/// stream.
#[test]
fn the_control_tour_works_against_serve() {
    for scenario in ["steady", "firehose"] {
        let (server, banner) = serve(&["--scenario", scenario]);
        let listening = spawn(listen_with(&banner, "thread", &[]), "listen");
        assert!(
            listening.wait_stdout_lines(1, Duration::from_secs(10)),
            "{scenario}: {}",
            listening.stderr_text()
        );
        let first = String::from_utf8(listening.stdout.snapshot()).unwrap();
        let first = first.lines().next().unwrap().to_owned();
        let control: serde_json::Value = serde_json::from_str(&first).expect(&first);
        let uri = control["control"]["control_uri"]
            .as_str()
            .unwrap_or_else(|| panic!("{scenario}: not a control message: {first}"))
            .to_owned();
        assert!(uri.starts_with("/1.1/site/c/"), "{uri}");

        let done = run(
            control_with(&banner, &["add", "--stream-id", &uri, "--users", "42,43"]),
            "add",
        );
        assert_eq!(done.code(), 0, "{scenario} add: {}", done.stderr);

        let done = run(
            control_with(&banner, &["info", "--stream-id", &uri]),
            "info",
        );
        assert_eq!(done.code(), 0, "{scenario} info: {}", done.stderr);
        let info: serde_json::Value = serde_json::from_str(done.stdout_text().trim()).unwrap();
        let ids: Vec<u64> = info["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, [12, 42, 43], "{scenario}: {info}");

        let done = run(
            control_with(&banner, &["remove", "--stream-id", &uri, "--users", "42"]),
            "remove",
        );
        assert_eq!(done.code(), 0, "{scenario} remove: {}", done.stderr);
        let done = run(
            control_with(&banner, &["info", "--stream-id", &uri]),
            "info",
        );
        let info: serde_json::Value = serde_json::from_str(done.stdout_text().trim()).unwrap();
        assert_eq!(info["users"].as_array().unwrap().len(), 2, "{info}");

        let done = run(
            control_with(&banner, &["friends", "--stream-id", &uri, "--user", "12"]),
            "friends",
        );
        assert_eq!(done.code(), 0, "{scenario} friends: {}", done.stderr);
        let friends: serde_json::Value = serde_json::from_str(done.stdout_text().trim()).unwrap();
        assert_eq!(friends["user_id"], 12, "{friends}");
        assert!(
            !friends["friends"].as_array().unwrap().is_empty(),
            "{friends}"
        );

        let done = listening.signal_and_wait(Signal::SIGTERM, Duration::from_secs(5));
        assert_eq!(done.code(), 0, "{}", done.stderr);
        let done = server.signal_and_wait(Signal::SIGTERM, Duration::from_secs(5));
        assert_eq!(done.code(), 0, "{}", done.stderr);
    }
}

/// README "serve": `--replay FILE` streams the recording (one JSON message a line, e.g. a
/// previous `listen` output) after the connection's control message, in order, cycling;
/// with `--scenario flaky` its faults come around it; a bad file is a usage error.
#[test]
fn serve_replays_a_recording() {
    let path = std::env::temp_dir().join(format!(
        "sitebucket-cli-replay-{}.jsonl",
        std::process::id()
    ));
    std::fs::write(
        &path,
        "{\"mine\":1}\n\n{\"mine\":2,\"text\":\"caf\u{e9}\"}\n[3]\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let (server, banner) = serve(&["--replay", file]);
    let done = run(
        listen_with(&banner, "mio", &["--max-messages", "6"]),
        "listen to a replay",
    );
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let text = done.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("{\"control\":"), "{text}");
    assert_eq!(
        &lines[1..],
        [
            "{\"mine\":1}",
            "{\"mine\":2,\"text\":\"caf\u{e9}\"}",
            "[3]",
            "{\"mine\":1}",
            "{\"mine\":2,\"text\":\"caf\u{e9}\"}"
        ]
    );
    let done = server.signal_and_wait(Signal::SIGTERM, Duration::from_secs(5));
    assert_eq!(done.code(), 0, "{}", done.stderr);

    let (server, banner) = serve(&["--replay", file, "--scenario", "flaky"]);
    let done = run(
        listen_with(
            &banner,
            "thread",
            &[
                "--max-messages",
                "4",
                "--http-backoff-start",
                "10ms",
                "--network-backoff-step",
                "10ms",
            ],
        ),
        "listen to a flaky replay",
    );
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(done.stderr.contains("HTTP 503"), "{}", done.stderr);
    let text = done.stdout_text();
    assert!(text.contains("{\"mine\":1}\n"), "{text}");
    let done = server.signal_and_wait(Signal::SIGTERM, Duration::from_secs(5));
    assert_eq!(done.code(), 0, "{}", done.stderr);

    std::fs::write(&path, "{\"mine\":1}\nnot json\n").unwrap();
    let mut command = sitebucket();
    command.args(["serve", "--replay", file]);
    let done = run(command, "bad replay");
    assert_eq!(done.code(), 2, "{}", done.stderr);
    assert!(
        done.stderr.contains("line 2: not a JSON message"),
        "{}",
        done.stderr
    );
    let _ = std::fs::remove_file(path);
}
