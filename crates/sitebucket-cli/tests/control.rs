//! `sitebucket control add|remove|info|friends`, black-box: the binary changes and reports whom a
//! live stream follows through its control stream, on every driver, plain and TLS; usage
//! errors send nothing (status 2); a failed request says why (status 1).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use sitebucket_proto::{Config, SiteStream};
use sitebucket_std::StdDriver;
use sitebucket_testserver::{
    AttemptPlan, Credentials, End, Scenario, ServerOptions, Step, TestServer,
};
use sitebucket_thread::ListenThread;

/// A server whose streams announce a control stream, and a live stream on it following
/// 12 and 13. Returns both and the stream's control stream id.
fn live_stream(tls: bool) -> (TestServer, ListenThread<StdDriver>, String) {
    let plan = AttemptPlan::ok(vec![Step::Control])
        .with_end(End::HoldWithKeepAlives(Duration::from_millis(50)));
    let options = if tls {
        ServerOptions::tls()
    } else {
        ServerOptions::plain()
    };
    let server = TestServer::start(Scenario::single(plan), options).expect("test server starts");
    let c = server.credentials();
    let credentials = sitebucket_proto::Credentials::new(
        c.consumer_key.clone(),
        c.consumer_secret.clone(),
        c.token.clone(),
        c.token_secret.clone(),
    );
    let mut builder = Config::builder([12, 13], credentials).url(server.url());
    if let Some(pem) = server.ca_pem() {
        builder = builder.extra_root_certs_pem(pem.into_bytes());
    }
    let config = builder.build().expect("valid config");
    let listener = ListenThread::spawn(
        StdDriver::new(),
        SiteStream::new(config),
        |_: bytes::Bytes| {},
    )
    .expect("spawn the stream");
    let deadline = Instant::now() + Duration::from_secs(10);
    while listener.stream_id().is_none() {
        assert!(
            Instant::now() < deadline,
            "the stream never announced itself"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let id = listener.stream_id().expect("announced");
    (server, listener, id)
}

/// `sitebucket control <args>` with the test credentials in the environment.
fn control(args: &[&str]) -> Command {
    let mut command = sitebucket();
    command.arg("control").args(args);
    let credentials = Credentials::test_default();
    command
        .env("SITEBUCKET_CONSUMER_KEY", &credentials.consumer_key)
        .env("SITEBUCKET_CONSUMER_SECRET", &credentials.consumer_secret)
        .env("SITEBUCKET_TOKEN", &credentials.token)
        .env("SITEBUCKET_TOKEN_SECRET", &credentials.token_secret);
    command
}

/// The control requests the server saw.
fn control_requests(server: &TestServer) -> Vec<sitebucket_testserver::AttemptRecord> {
    server
        .attempts()
        .into_iter()
        .filter(|a| a.path.contains("/c/"))
        .collect()
}

fn checked(server: &TestServer, command: Command, label: &str) -> Finished {
    let done = run(command, label);
    assert_no_secrets(&done.stderr, Some(server), &[]);
    done
}

#[test]
fn add_remove_and_info_on_every_driver() {
    for driver in DRIVERS {
        let (server, mut listener, id) = live_stream(false);
        let url = server.url();
        let users: Vec<String> = (1000..1150).map(|u| u.to_string()).collect();
        let users = users.join(",");
        let target = [
            "--url",
            url.as_str(),
            "--stream-id",
            id.as_str(),
            "--driver",
            driver,
        ];

        let mut args = vec!["add"];
        args.extend(target);
        args.extend(["--users", users.as_str()]);
        let done = checked(&server, control(&args), driver);
        assert_eq!(done.code(), 0, "{driver}: {}", done.stderr);
        assert!(done.stdout.is_empty());
        assert!(
            done.stderr
                .contains(&format!("added 150 user(s) on control stream {id}")),
            "{driver}: {}",
            done.stderr
        );
        let requests = control_requests(&server);
        assert_eq!(requests.len(), 2, "{driver}: 100 + 50");
        for request in &requests {
            assert!(request.signature_ok, "{driver}: signed right");
            assert_eq!(request.method, "POST");
            assert_eq!(request.path, format!("/1.1/site/c/{id}/add_user.json"));
        }
        assert_eq!(
            requests[1].form_param("user_id"),
            Some(
                (1100..1150)
                    .map(|u: u64| u.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
                    .as_str()
            )
        );
        let mut expected: Vec<u64> = vec![12, 13];
        expected.extend(1000..1150);
        assert_eq!(server.control_stream(&id).expect("live").follow, expected);

        let mut args = vec!["remove"];
        args.extend(target);
        args.extend(["--users", "12,1000"]);
        let done = checked(&server, control(&args), driver);
        assert_eq!(done.code(), 0, "{driver}: {}", done.stderr);
        assert!(done
            .stderr
            .contains(&format!("removed 2 user(s) on control stream {id}")));
        expected.retain(|u| *u != 12 && *u != 1000);

        let mut args = vec!["info"];
        args.extend(target);
        let done = checked(&server, control(&args), driver);
        assert_eq!(done.code(), 0, "{driver}: {}", done.stderr);
        let users: Vec<String> = expected
            .iter()
            .map(|u| format!("{{\"id\":{u},\"name\":\"user{u}\",\"dm\":false}}"))
            .collect();
        assert_eq!(
            done.stdout_text(),
            format!(
                "{{\"stream_id\":\"{id}\",\"users\":[{}],\"with\":\"user\",\"replies\":\"none\",\"delimited\":\"none\",\"include_followings_activity\":false,\"include_user_changes\":false}}\n",
                users.join(",")
            ),
            "{driver}"
        );
        assert_eq!(
            listener.status().stats.reconnects,
            0,
            "the stream was never touched"
        );
        listener.close();
        listener.join();
    }
}

#[test]
fn over_tls_with_a_ca_file_and_a_control_uri() {
    let (server, mut listener, id) = live_stream(true);
    let url = server.url();
    let ca = server.ca_path().expect("TLS server").display().to_string();
    let uri = format!("/1.1/site/c/{id}");
    let done = checked(
        &server,
        control(&[
            "add",
            "--url",
            &url,
            "--stream-id",
            &uri,
            "--ca-file",
            &ca,
            "--users",
            "77",
        ]),
        "tls",
    );
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let requests = control_requests(&server);
    assert_eq!(requests.len(), 1);
    assert!(requests[0].tls && requests[0].signature_ok);
    assert_eq!(
        server.control_stream(&id).expect("live").follow,
        [12, 13, 77]
    );

    // Without the CA, the certificate is refused: the request fails and says so.
    let done = checked(
        &server,
        control(&["info", "--url", &url, "--stream-id", &id]),
        "tls without CA",
    );
    assert_eq!(done.code(), 1, "{}", done.stderr);
    assert!(
        done.stderr.contains("control connection"),
        "{}",
        done.stderr
    );
    assert!(done.stdout.is_empty());
    listener.close();
    listener.join();
}

#[test]
fn a_failed_request_says_why_with_status_1() {
    let (server, mut listener, _) = live_stream(false);
    let url = server.url();
    for driver in DRIVERS {
        let done = checked(
            &server,
            control(&[
                "info",
                "--url",
                &url,
                "--stream-id",
                "sb_999",
                "--driver",
                driver,
            ]),
            driver,
        );
        assert_eq!(done.code(), 1, "{driver}: {}", done.stderr);
        assert!(
            done.stderr
                .contains("the server does not know control stream \"sb_999\" (404)"),
            "{driver}: {}",
            done.stderr
        );
    }
    // A refused connection.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let nowhere = format!("http://127.0.0.1:{port}/1.1/site.json");
    let done = checked(
        &server,
        control(&["add", "--url", &nowhere, "--stream-id", "x", "--users", "1"]),
        "refused",
    );
    assert_eq!(done.code(), 1, "{}", done.stderr);
    assert!(
        done.stderr.contains("control connection failed"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("0 request(s) had gone through"),
        "{}",
        done.stderr
    );
    listener.close();
    listener.join();
}

#[test]
fn friends_pages_through_every_cursor_on_every_driver() {
    let (server, mut listener, id) = live_stream(false);
    let url = server.url();
    let friends = sitebucket_testserver::control::friends_of(12);
    let pages = friends
        .len()
        .div_ceil(sitebucket_testserver::control::FRIENDS_PAGE);
    assert!(pages >= 3, "the test server pages this user's friends");
    for driver in DRIVERS {
        let before = control_requests(&server).len();
        let done = checked(
            &server,
            control(&[
                "friends",
                "--url",
                &url,
                "--stream-id",
                &id,
                "--driver",
                driver,
                "--user",
                "12",
            ]),
            driver,
        );
        assert_eq!(done.code(), 0, "{driver}: {}", done.stderr);
        let ids: Vec<String> = friends.iter().map(u64::to_string).collect();
        assert_eq!(
            done.stdout_text(),
            format!("{{\"user_id\":12,\"friends\":[{}]}}\n", ids.join(",")),
            "{driver}"
        );
        assert!(
            done.stderr.contains(&format!(
                "{} friend(s) of user 12 in {pages} page(s) from control stream {id}",
                friends.len()
            )),
            "{driver}: {}",
            done.stderr
        );
        let requests = control_requests(&server);
        let requests = &requests[before..];
        assert_eq!(requests.len(), pages, "{driver}: one request per page");
        for (page, request) in requests.iter().enumerate() {
            assert!(request.signature_ok, "{driver}: signed right");
            assert_eq!(request.method, "POST");
            assert_eq!(request.path, format!("/1.1/site/c/{id}/friends/ids.json"));
            assert_eq!(request.form_param("user_id"), Some("12"));
            let cursor = request.form_param("cursor").expect("a cursor");
            assert_eq!(
                cursor == "-1",
                page == 0,
                "{driver}: page {page} cursor {cursor}"
            );
        }
    }
    // A user the stream does not follow: the server's reason, status 1.
    let done = checked(
        &server,
        control(&["friends", "--url", &url, "--stream-id", &id, "--user", "99"]),
        "not followed",
    );
    assert_eq!(done.code(), 1, "{}", done.stderr);
    assert!(
        done.stderr
            .contains("user 99 is not followed by this stream"),
        "{}",
        done.stderr
    );
    assert!(done.stdout.is_empty());
    listener.close();
    listener.join();
}

#[test]
fn usage_errors_send_nothing() {
    let server = server(vec![
        AttemptPlan::ok(vec![Step::Control]).with_end(End::Stall)
    ]);
    let url = server.url();
    let too_many: Vec<String> = (1..=1001).map(|u| u.to_string()).collect();
    let too_many = too_many.join(",");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["add", "--url", &url, "--users", "1"], "--stream-id"),
        (vec!["add", "--url", &url, "--stream-id", "s"], "--users"),
        (
            vec!["add", "--url", &url, "--stream-id", "s", "--users", ""],
            "empty",
        ),
        (
            vec!["add", "--url", &url, "--stream-id", "s", "--users", "0"],
            "start at 1",
        ),
        (
            vec!["remove", "--url", &url, "--stream-id", "s", "--users", "-4"],
            "negative",
        ),
        (
            vec![
                "add",
                "--url",
                &url,
                "--stream-id",
                "s",
                "--users",
                &too_many,
            ],
            "1001 user ids given to --users; at most 1000",
        ),
        (
            vec!["info", "--url", &url, "--stream-id", "a b"],
            "not a stream id",
        ),
        (
            vec!["info", "--url", &url, "--stream-id", "/elsewhere/x"],
            "not a control URI",
        ),
        (
            vec![
                "info",
                "--url",
                "ftp://127.0.0.1/1.1/site.json",
                "--stream-id",
                "s",
            ],
            "invalid --url",
        ),
        (
            vec!["info", "--url", &url, "--stream-id", "s", "--timeout", "0s"],
            "is zero",
        ),
        (
            vec![
                "info",
                "--url",
                &url,
                "--stream-id",
                "s",
                "--driver",
                "glommio",
            ],
            "glommio",
        ),
        (
            vec![
                "info",
                "--url",
                &url,
                "--stream-id",
                "s",
                "--ca-file",
                "/nonexistent.pem",
            ],
            "cannot read --ca-file",
        ),
        (vec!["frobnicate"], "frobnicate"),
        (vec!["friends", "--url", &url, "--stream-id", "s"], "--user"),
        (
            vec!["friends", "--url", &url, "--stream-id", "s", "--user", "0"],
            "--user",
        ),
    ];
    for (args, expected) in cases {
        let done = checked(&server, control(&args), "usage");
        assert_eq!(done.code(), 2, "{args:?}: {}", done.stderr);
        assert!(
            done.stderr.contains(expected),
            "{args:?}: expected {expected:?} in:\n{}",
            done.stderr
        );
        assert!(done.stdout.is_empty(), "{args:?}");
    }
    // A missing credential is named.
    let mut command = sitebucket();
    command.args(["control", "info", "--url", &url, "--stream-id", "s"]);
    let done = checked(&server, command, "no credentials");
    assert_eq!(done.code(), 2);
    assert!(
        done.stderr.contains("SITEBUCKET_CONSUMER_KEY"),
        "{}",
        done.stderr
    );
    assert!(
        !server.wait_for_attempts(1, Duration::from_millis(50)) && server.attempts().is_empty(),
        "something was sent"
    );
}
