use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::scenario::{AttemptPlan, BodyEncoding, End, Framing, Step, Transfer};
use crate::testutil::{decode, site_request, split_crlf, Item};

/// Every blocking read in these tests gives up after this long.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

fn connect(server: &TestServer) -> TcpStream {
    let stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
}

fn host(server: &TestServer) -> String {
    format!("127.0.0.1:{}", server.port())
}

/// Reads until the server closes (EOF or reset); panics on a timeout.
fn read_to_close(stream: &mut impl Read) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the server did not close in time; got {} bytes", all.len())
            }
            Err(_) => return all,
        }
    }
}

/// Reads until `want` bytes have arrived.
fn read_exactly(stream: &mut impl Read, want: usize) -> Vec<u8> {
    let mut all = vec![0u8; want];
    stream.read_exact(&mut all).expect("bytes in time");
    all
}

/// What `simple_plan` sends before its end.
const SIMPLE_STREAMED: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"control\":{}}\r\n\r\n2\r\n\r\n\r\n12\r\n{\"text\":\"café\"}\r\n\r\n";

fn simple_plan() -> AttemptPlan {
    AttemptPlan::ok(vec![
        Step::Message(b"{\"control\":{}}".to_vec()),
        Step::KeepAlive,
        Step::Message("{\"text\":\"caf\u{e9}\"}".as_bytes().to_vec()),
    ])
    .with_encoding(BodyEncoding::Identity)
    .with_framing(Framing::Crlf)
}

#[test]
fn a_scripted_attempt_arrives_byte_exact_and_is_recorded() {
    let server =
        TestServer::start(Scenario::single(simple_plan()), ServerOptions::plain()).unwrap();
    assert_eq!(
        server.url(),
        format!("http://127.0.0.1:{}/1.1/site.json", server.port())
    );
    assert!(server.ca_pem().is_none() && server.ca_path().is_none());
    let mut client = connect(&server);
    let request = site_request(
        server.credentials(),
        false,
        &host(&server),
        &[("follow", "12,34"), ("with", "user")],
        &[],
    );
    client.write_all(&request).unwrap();
    let got = read_to_close(&mut client);
    let expected = format!("{SIMPLE_STREAMED}0\r\n\r\n");
    assert_eq!(String::from_utf8(got).unwrap(), expected);
    assert!(server.wait_for_attempts(1, READ_TIMEOUT));
    assert!(server.wait_for_open_connections(0, READ_TIMEOUT));
    let attempts = server.attempts();
    assert_eq!(attempts.len(), 1);
    let a = &attempts[0];
    assert_eq!(a.index, 0);
    assert!(a.signature_ok, "{:?}", a.rejection);
    assert_eq!(a.status, Some(200));
    assert!(!a.tls);
    assert_eq!(a.method, "GET");
    assert_eq!(a.path, "/1.1/site.json");
    assert_eq!(a.query_param("follow"), Some("12,34"));
    assert_eq!(a.header("host"), Some(host(&server).as_str()));
    assert!(a.request_at.unwrap() >= a.at);
}

#[test]
fn every_attempt_is_recorded_in_order_with_its_answer() {
    let scenario = Scenario::new(vec![
        AttemptPlan::status(503, "Service Unavailable"),
        simple_plan(),
    ]);
    let server = TestServer::start(scenario, ServerOptions::plain()).unwrap();
    let good = site_request(
        server.credentials(),
        false,
        &host(&server),
        &[("follow", "1")],
        &[],
    );
    let mut wrong = server.credentials().clone();
    wrong.consumer_secret = "not-the-secret".into();
    let bad = site_request(&wrong, false, &host(&server), &[("follow", "1")], &[]);
    let mut statuses = Vec::new();
    for request in [&good, &bad, &good, &good] {
        let mut client = connect(&server);
        client.write_all(request).unwrap();
        statuses.push(decode(&read_to_close(&mut client)).status);
    }
    assert_eq!(statuses, [503, 401, 200, 200]);
    assert!(server.wait_for_attempts(4, READ_TIMEOUT));
    let attempts = server.attempts();
    let seen: Vec<(usize, Option<u16>, bool)> = attempts
        .iter()
        .map(|a| (a.index, a.status, a.signature_ok))
        .collect();
    assert_eq!(
        seen,
        [
            (0, Some(503), true),
            (1, Some(401), false),
            (2, Some(200), true),
            (3, Some(200), true)
        ]
    );
    assert!(attempts.windows(2).all(|w| w[0].at <= w[1].at));
}

#[test]
fn waits_take_real_time() {
    let plan = AttemptPlan::ok(vec![
        Step::Message(b"{\"n\":1}".to_vec()),
        Step::Wait(Duration::from_millis(300)),
        Step::Message(b"{\"n\":2}".to_vec()),
    ])
    .with_encoding(BodyEncoding::Identity)
    .with_framing(Framing::Crlf)
    .with_transfer(Transfer::UntilEof);
    let server = TestServer::start(Scenario::single(plan), ServerOptions::plain()).unwrap();
    let mut client = connect(&server);
    client
        .write_all(&site_request(
            server.credentials(),
            false,
            &host(&server),
            &[],
            &[],
        ))
        .unwrap();
    let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"n\":1}\r\n";
    assert_eq!(read_exactly(&mut client, head.len()), head);
    let first = Instant::now();
    assert_eq!(read_to_close(&mut client), b"{\"n\":2}\r\n");
    assert!(
        first.elapsed() >= Duration::from_millis(250),
        "{:?}",
        first.elapsed()
    );
}

#[test]
fn kill_connections_drops_live_streams_promptly_and_keeps_serving() {
    let plan = simple_plan().with_end(End::Stall);
    let server = TestServer::start(Scenario::single(plan), ServerOptions::plain()).unwrap();
    let request = site_request(server.credentials(), false, &host(&server), &[], &[]);
    let mut clients: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut c = connect(&server);
            c.write_all(&request).unwrap();
            c
        })
        .collect();
    let mut received: Vec<Vec<u8>> = clients
        .iter_mut()
        .map(|c| read_exactly(c, SIMPLE_STREAMED.len()))
        .collect();
    assert_eq!(server.open_connections(), 2);
    let started = Instant::now();
    assert_eq!(server.kill_connections(), 2);
    assert_eq!(
        server.open_connections(),
        0,
        "kill waits for the threads to go"
    );
    for (client, got) in clients.iter_mut().zip(&mut received) {
        got.extend(read_to_close(client));
        let decoded = decode(got);
        assert!(!decoded.complete, "the stream was cut, not finished");
        let (items, _) = split_crlf(&decoded.body);
        assert_eq!(items.len(), 3);
        assert_eq!(items[1], Item::KeepAlive);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The server still takes new attempts.
    let mut again = connect(&server);
    again.write_all(&request).unwrap();
    assert!(server.wait_for_attempts(3, READ_TIMEOUT));
    assert_eq!(server.attempts()[2].index, 2);
    assert!(server.wait_for_open_connections(1, READ_TIMEOUT));
}

#[test]
fn the_client_closing_ends_the_connection() {
    let server = TestServer::start(
        Scenario::single(AttemptPlan::never_answers()),
        ServerOptions::plain(),
    )
    .unwrap();
    let mut client = connect(&server);
    client
        .write_all(&site_request(
            server.credentials(),
            false,
            &host(&server),
            &[],
            &[],
        ))
        .unwrap();
    assert!(server.wait_for_attempts(1, READ_TIMEOUT));
    assert_eq!(server.open_connections(), 1);
    drop(client);
    assert!(server.wait_for_open_connections(0, READ_TIMEOUT));
    let a = &server.attempts()[0];
    assert!(a.signature_ok);
    assert_eq!(a.status, None, "it never answered");
}

#[test]
fn shutdown_is_prompt_with_silent_and_blocked_connections() {
    let scenario = Scenario::new(vec![
        AttemptPlan::never_answers(),
        Scenario::firehose(1).plan_for(0),
        AttemptPlan::half_head(),
    ]);
    let mut server = TestServer::start(scenario, ServerOptions::plain()).unwrap();
    let request = site_request(server.credentials(), false, &host(&server), &[], &[]);
    let mut silent = connect(&server);
    silent.write_all(&request).unwrap();
    assert!(server.wait_for_attempts(1, READ_TIMEOUT));
    // The firehose client never reads, so the server ends up blocked writing to it.
    let mut flooded = connect(&server);
    flooded.write_all(&request).unwrap();
    assert!(server.wait_for_attempts(2, READ_TIMEOUT));
    std::thread::sleep(Duration::from_millis(200));
    // Half a head, then the server closes.
    let mut half = connect(&server);
    half.write_all(&request).unwrap();
    let got = read_to_close(&mut half);
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\nContent-T") && !got.ends_with(b"\r\n\r\n"));

    let started = Instant::now();
    server.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.open_connections(), 0);
    assert_eq!(
        read_to_close(&mut silent),
        b"",
        "the silent server closes without a byte"
    );
    // The flooded client finds the end of the stream after what was buffered.
    let got = read_to_close(&mut flooded);
    assert!(got.starts_with(b"HTTP/1.1 200 OK"));
    server.shutdown(); // idempotent
    assert!(
        TcpStream::connect(server.addr()).is_err(),
        "no longer listening"
    );
}

#[test]
fn drop_is_prompt_too() {
    let server = TestServer::start(
        Scenario::single(AttemptPlan::never_answers()),
        ServerOptions::plain(),
    )
    .unwrap();
    let mut client = connect(&server);
    client
        .write_all(&site_request(
            server.credentials(),
            false,
            &host(&server),
            &[],
            &[],
        ))
        .unwrap();
    assert!(server.wait_for_attempts(1, READ_TIMEOUT));
    let started = Instant::now();
    drop(server);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(read_to_close(&mut client), b"");
}

#[test]
fn wait_for_attempts_times_out_when_nobody_comes() {
    let server =
        TestServer::start(Scenario::single(simple_plan()), ServerOptions::plain()).unwrap();
    let started = Instant::now();
    assert!(!server.wait_for_attempts(1, Duration::from_millis(100)));
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(server.attempts().is_empty());
}

fn tls_client(
    server: &TestServer,
    name: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            server.ca_der().unwrap(),
        ))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), server_name).unwrap();
    rustls::StreamOwned::new(conn, connect(server))
}

#[test]
fn tls_streams_verify_against_the_generated_ca() {
    let plan = simple_plan().with_encoding(BodyEncoding::Auto);
    let server = TestServer::start(Scenario::single(plan), ServerOptions::tls()).unwrap();
    assert!(server.url().starts_with("https://127.0.0.1:"));
    let pem = server.ca_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let path = server.ca_path().unwrap().to_path_buf();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), pem);
    let base64_body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let from_pem = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(base64_body)
            .unwrap()
    };
    assert_eq!(
        from_pem,
        server.ca_der().unwrap(),
        "the PEM file holds the CA"
    );

    for name in ["127.0.0.1", "localhost"] {
        let mut client = tls_client(&server, name);
        let request = site_request(
            server.credentials(),
            true,
            &host(&server),
            &[("follow", "7")],
            &[("Accept-Encoding", "deflate, gzip")],
        );
        client.write_all(&request).unwrap();
        let got = read_to_close(&mut client);
        assert!(!client.conn.is_handshaking(), "the handshake completed");
        let decoded = decode(&got);
        assert_eq!(decoded.header("content-encoding"), Some("gzip"));
        let (items, rest) = split_crlf(&decoded.body);
        assert!(rest.is_empty());
        assert_eq!(items.len(), 3, "{name}");
    }
    assert!(server.wait_for_attempts(2, READ_TIMEOUT));
    for a in server.attempts() {
        assert!(a.tls && a.signature_ok, "{a:?}");
    }
    // A request signed for http:// does not verify over TLS.
    let mut client = tls_client(&server, "localhost");
    client
        .write_all(&site_request(
            server.credentials(),
            false,
            &host(&server),
            &[],
            &[],
        ))
        .unwrap();
    assert_eq!(decode(&read_to_close(&mut client)).status, 401);
    drop(server);
    assert!(!path.exists(), "the CA file is removed on shutdown");
}

#[test]
fn tls_clients_that_do_not_trust_the_ca_fail_the_handshake() {
    let server = TestServer::start(Scenario::single(simple_plan()), ServerOptions::tls()).unwrap();
    let other = TestServer::start(Scenario::single(simple_plan()), ServerOptions::tls()).unwrap();
    // Trust the other server's CA only.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            other.ca_der().unwrap(),
        ))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn = rustls::ClientConnection::new(
        Arc::new(config),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut client = rustls::StreamOwned::new(conn, connect(&server));
    let request = site_request(server.credentials(), true, &host(&server), &[], &[]);
    let error = client.write_all(&request).and_then(|_| client.flush());
    let mut buf = [0u8; 64];
    let read = client.read(&mut buf);
    assert!(error.is_err() || read.is_err(), "the handshake must fail");
    assert!(server.wait_for_attempts(1, READ_TIMEOUT));
    assert!(!server.attempts()[0].request_complete());
}

/// `sitebucket serve` answers the control requests of what it announces: each connection of a
/// built-in scenario registers a live control stream of its own, following its `follow` list.
#[test]
fn builtin_scenarios_register_a_live_control_stream_per_connection() {
    for name in ["steady", "firehose"] {
        let server =
            TestServer::start(Scenario::builtin(name).unwrap(), ServerOptions::plain()).unwrap();
        let mut clients = Vec::new();
        for follow in ["12,34", "56"] {
            let mut client = connect(&server);
            let request = site_request(
                server.credentials(),
                false,
                &host(&server),
                &[("follow", follow), ("with", "user")],
                &[],
            );
            client.write_all(&request).unwrap();
            // The head has come: the response started, so its stream is registered.
            read_exactly(&mut client, 12);
            clients.push(client);
        }
        let mut streams = server.control_streams();
        streams.sort_by_key(|s| s.attempt);
        let follows: Vec<Vec<u64>> = streams.iter().map(|s| s.follow.clone()).collect();
        assert_eq!(follows, [vec![12, 34], vec![56]], "{name}");
        assert_ne!(streams[0].stream_id, streams[1].stream_id, "{name}");
        for (attempt, stream) in server.attempts().iter().zip(&streams) {
            assert_eq!(
                attempt.announced.as_ref(),
                Some(&stream.stream_id),
                "{name}"
            );
        }
    }
}

/// The ended hook sees each attempt's whole final record (with its messages counted as
/// written) once, before `kill_connections` returns; the stored record is then kept light.
#[test]
fn the_ended_hook_sees_each_final_record_and_the_stored_one_is_kept_light() {
    let plan = AttemptPlan::ok(vec![
        Step::Message(b"{\"a\":1}".to_vec()),
        Step::Message(b"{\"b\":2}".to_vec()),
    ])
    .with_end(End::Stall);
    let server = TestServer::start(Scenario::single(plan), ServerOptions::plain()).unwrap();
    let seen: Arc<Mutex<Vec<AttemptRecord>>> = Arc::default();
    let sink = seen.clone();
    server.set_ended_hook(move |r| sink.lock().unwrap().push(r.clone()));
    let mut client = connect(&server);
    let request = site_request(
        server.credentials(),
        false,
        &host(&server),
        &[("follow", "7,8")],
        &[],
    );
    client.write_all(&request).unwrap();
    let mut wire = Vec::new();
    let mut buf = [0u8; 4096];
    let both = |w: &[u8]| {
        w.windows(4).any(|x| x == b"\r\n\r\n") && split_crlf(&decode(w).body).0.len() >= 2
    };
    while !both(&wire) {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0, "closed early");
        wire.extend_from_slice(&buf[..n]);
    }
    assert!(seen.lock().unwrap().is_empty(), "told before the end");
    assert_eq!(server.kill_connections(), 1);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "told once, before kill_connections returned");
    assert_eq!(seen[0].messages_sent, 2);
    assert_eq!(seen[0].query_param("follow"), Some("7,8"));
    assert!(seen[0].ended_at.is_some() && seen[0].last_sent_at.is_some());
    let stored = &server.attempts()[0];
    assert!(stored.query.is_empty() && stored.headers.is_empty());
    assert_eq!(stored.messages_sent, 2);
    assert_eq!(stored.ended_at, seen[0].ended_at);
}

#[test]
fn a_v2_server_checks_the_bearer_token_streams_and_answers_rules() {
    let options = ServerOptions {
        bearer_token: Some("T0KEN".into()),
        ..ServerOptions::plain()
    };
    let scenario = Scenario::single(
        AttemptPlan::ok(vec![Step::Message(
            b"{\"data\":{\"id\":\"1\",\"text\":\"hi\"}}".to_vec(),
        )])
        .with_encoding(BodyEncoding::Identity)
        .with_framing(Framing::Crlf)
        .with_end(End::Close),
    );
    let server = TestServer::start(scenario, options).unwrap();
    assert!(server.url().ends_with("/2/tweets/search/stream"));
    assert!(server.sample_url().ends_with("/2/tweets/sample/stream"));
    let request = |line: &str, auth: &str, body: &str| {
        let mut stream = connect(&server);
        let head = format!(
            "{line} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            host(&server),
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        String::from_utf8(read_to_close(&mut stream)).unwrap()
    };
    let good = "Authorization: Bearer T0KEN\r\n";
    for auth in [
        "",
        "Authorization: Bearer nope\r\n",
        "Authorization: OAuth x=\"y\"\r\n",
    ] {
        let answer = request("GET /2/tweets/search/stream", auth, "");
        assert!(
            answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
            "{answer}"
        );
        assert!(answer.contains("\"title\":\"Unauthorized\""), "{answer}");
    }
    for path in [
        "/2/tweets/search/stream",
        "/2/tweets/sample/stream?backfill_minutes=1",
    ] {
        let answer = request(&format!("GET {path}"), good, "");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(
            answer.contains("{\"data\":{\"id\":\"1\",\"text\":\"hi\"}}\r\n"),
            "{answer}"
        );
    }
    let added = request(
        "POST /2/tweets/search/stream/rules",
        good,
        r#"{"add":[{"value":"cat","tag":"cats"}]}"#,
    );
    assert!(added.starts_with("HTTP/1.1 201 Created\r\n"), "{added}");
    let rules = server.v2().unwrap().rules();
    assert_eq!(rules.len(), 1);
    let listed = request("GET /2/tweets/search/stream/rules", good, "");
    assert!(
        listed.contains(&format!("\"id\":\"{}\"", rules[0].id)),
        "{listed}"
    );
    assert!(request("GET /1.1/site.json", good, "").starts_with("HTTP/1.1 404"));
}
