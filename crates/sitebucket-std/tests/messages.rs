//! `Messages`: the blocking iterator over a stream's items, against the test server.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sitebucket_e2e::{
    config_for, fast_backoff, numbered_messages, server, Transport, CLOSE_WITHIN,
};
use sitebucket_proto::{Outcome, StreamError};
use sitebucket_std::{messages, Messages, StdDriver, StreamItem, DEFAULT_CAPACITY};
use sitebucket_testserver::{AttemptPlan, End, Repeat, Scenario, Step};
use sitebucket_thread::{Driver, SiteStream};

fn connected_ok() -> StreamItem {
    StreamItem::Connected {
        status: 200,
        reason: "OK".into(),
    }
}

fn as_items(messages: &[Vec<u8>]) -> Vec<StreamItem> {
    messages
        .iter()
        .map(|m| StreamItem::Message(Bytes::from(m.clone())))
        .collect()
}

#[test]
fn iterates_every_message_in_order_then_closes_from_another_thread() {
    let sent = numbered_messages(0..30);
    let steps = sent.iter().cloned().map(Step::Message).collect();
    let plan = AttemptPlan::ok(steps).with_end(End::Stall);
    let server = server(Scenario::single(plan), Transport::Plain);
    let config = config_for(&server, [12]).build().expect("valid config");
    let mut stream = messages(SiteStream::new(config)).expect("spawn");
    let closer = stream.closer();

    let mut got = Vec::new();
    for item in &mut stream {
        got.push(item);
        if got.len() == 1 + sent.len() {
            // Close from elsewhere while the iterator waits on a silent connection.
            let closer = closer.clone();
            std::thread::spawn(move || closer.close());
        }
    }
    let mut expected = vec![connected_ok()];
    expected.extend(as_items(&sent));
    expected.push(StreamItem::Finished(Outcome::Stopped));
    assert_eq!(got, expected);
    assert_eq!(stream.next(), None, "nothing after Finished");
    assert_eq!(stream.outcome(), Some(Outcome::Stopped));
    assert!(server.wait_for_open_connections(0, Duration::from_secs(10)));
}

#[test]
fn an_http_error_and_a_drop_arrive_as_reconnecting_items_in_order() {
    http_error_and_drop(StdDriver::new());
}

// The items come from what every driver reports to its `RunState`, so the iterator runs the
// same story on the other drivers too.
#[test]
fn the_mio_driver_under_the_iterator_yields_the_same_items() {
    http_error_and_drop(sitebucket_mio::MioDriver::new());
}

#[test]
fn the_smol_driver_under_the_iterator_yields_the_same_items() {
    http_error_and_drop(sitebucket_smol::SmolDriver::new());
}

#[test]
fn the_tokio_driver_under_the_iterator_yields_the_same_items() {
    http_error_and_drop(sitebucket_tokio::TokioDriver::new());
}

fn http_error_and_drop<D: Driver>(driver: D) {
    let first = numbered_messages(0..3);
    let second = numbered_messages(3..6);
    let mut dropped: Vec<Step> = first.iter().cloned().map(Step::Message).collect();
    dropped.push(Step::CloseNow);
    let scenario = Scenario::new(vec![
        AttemptPlan::status(503, "Service Unavailable"),
        AttemptPlan::ok(dropped),
        AttemptPlan::ok(second.iter().cloned().map(Step::Message).collect()).with_end(End::Stall),
    ]);
    let server = server(scenario, Transport::Plain);
    let config = config_for(&server, [12])
        .backoff(fast_backoff())
        .build()
        .expect("valid config");
    let mut expected = vec![
        StreamItem::Connected {
            status: 503,
            reason: "Service Unavailable".into(),
        },
        // HTTP errors back off from `http_start` (50 ms in `fast_backoff`).
        StreamItem::Reconnecting {
            error: StreamError::Status {
                status: 503,
                reason: "Service Unavailable".into(),
            },
            retry_in: Duration::from_millis(50),
        },
        connected_ok(),
    ];
    expected.extend(as_items(&first));
    // The drop came after real messages, so the HTTP sequence is forgiven: the first
    // network step (20 ms).
    expected.push(StreamItem::Reconnecting {
        error: StreamError::Closed,
        retry_in: Duration::from_millis(20),
    });
    expected.push(connected_ok());
    expected.extend(as_items(&second));
    expected.push(StreamItem::Finished(Outcome::Stopped));

    let mut stream =
        Messages::spawn(driver, SiteStream::new(config), DEFAULT_CAPACITY).expect("spawn");
    // Everything up to the last message, then a close while the third connection is silent.
    let mut got: Vec<StreamItem> = stream.by_ref().take(expected.len() - 1).collect();
    stream.close();
    got.extend(stream.by_ref());
    assert_eq!(got, expected);
    assert_eq!(server.attempts().len(), 3);
}

#[test]
fn messages_only_yields_exactly_the_messages_and_keeps_the_outcome() {
    let sent = numbered_messages(0..5);
    let mut steps: Vec<Step> = sent.iter().cloned().map(Step::Message).collect();
    steps.insert(2, Step::KeepAlive);
    let scenario = Scenario::new(vec![
        AttemptPlan::status(500, "Internal Server Error"),
        AttemptPlan::ok(steps),
        AttemptPlan::status(401, "Unauthorized"),
    ]);
    let server = server(scenario, Transport::Plain);
    let config = config_for(&server, [12])
        .backoff(fast_backoff())
        .build()
        .expect("valid config");
    let mut only = messages(SiteStream::new(config))
        .expect("spawn")
        .messages_only();
    let got: Vec<Bytes> = only.by_ref().collect();
    let expected: Vec<Bytes> = sent.into_iter().map(Bytes::from).collect();
    assert_eq!(got, expected);
    assert!(
        matches!(only.outcome(), Some(Outcome::Fatal { status: 401, .. })),
        "{:?}",
        only.outcome()
    );
    assert_eq!(only.get_ref().outcome(), only.outcome().cloned());
}

#[test]
fn close_is_prompt_while_the_stream_waits_for_a_slow_consumer() {
    // A flood into a queue of one item that nobody reads: the stream's thread waits
    // for room, and close() must still end it at once.
    let plan = AttemptPlan::ok(vec![Step::Repeat(Repeat::endless(numbered_messages(0..5)))]);
    let server = server(Scenario::single(plan), Transport::Plain);
    let config = config_for(&server, [12]).build().expect("valid config");
    let mut stream = Messages::spawn(StdDriver::new(), SiteStream::new(config), 1).expect("spawn");
    assert_eq!(stream.next(), Some(connected_ok()));
    let first = stream.next().expect("a first message");
    assert_eq!(first, as_items(&numbered_messages(0..1)).remove(0));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(stream.outcome(), None, "still running");
    let started = Instant::now();
    let outcome = stream.finish();
    assert!(
        started.elapsed() < CLOSE_WITHIN,
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(outcome, Outcome::Stopped);
}

#[test]
fn the_iterator_ends_with_the_stream_and_reports_why() {
    let server = server(
        Scenario::single(AttemptPlan::status(401, "Unauthorized")),
        Transport::Plain,
    );
    let config = config_for(&server, [12]).build().expect("valid config");
    let mut stream = messages(SiteStream::new(config)).expect("spawn");
    let items: Vec<StreamItem> = stream.by_ref().collect();
    assert_eq!(
        items[0],
        StreamItem::Connected {
            status: 401,
            reason: "Unauthorized".into()
        }
    );
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(
        matches!(
            items[1],
            StreamItem::Finished(Outcome::Fatal { status: 401, .. })
        ),
        "{items:?}"
    );
    assert_eq!(items[1].outcome().cloned(), stream.outcome());
    assert!(!stream.status().healthy);
}

#[test]
fn a_disconnect_message_and_a_stall_arrive_as_reconnecting_items() {
    let one = numbered_messages(0..1);
    let two = numbered_messages(1..2);
    let mut first: Vec<Step> = one.iter().cloned().map(Step::Message).collect();
    first.push(Step::Disconnect {
        code: 12,
        reason: "shed load".into(),
    });
    let scenario = Scenario::new(vec![
        AttemptPlan::ok(first),
        AttemptPlan::ok(two.iter().cloned().map(Step::Message).collect()).with_end(End::Stall),
        AttemptPlan::status(401, "Unauthorized"),
    ]);
    let server = server(scenario, Transport::Plain);
    let config = config_for(&server, [12])
        // Long enough that a loaded machine does not stall the second connection before its
        // message (the items would then differ), short enough to keep the test quick.
        .stall_timeout(Duration::from_secs(1))
        .build()
        .expect("valid config");
    let items: Vec<StreamItem> = messages(SiteStream::new(config)).expect("spawn").collect();
    let disconnect =
        br#"{"disconnect":{"code":12,"stream_name":"sitebucket-testserver","reason":"shed load"}}"#;
    let mut expected = vec![connected_ok()];
    expected.extend(as_items(&one));
    // The disconnect message is a message like any other, then the reason to reconnect.
    expected.push(StreamItem::Message(Bytes::from_static(disconnect)));
    expected.push(StreamItem::Reconnecting {
        error: StreamError::DisconnectMessage {
            code: 12,
            reason: "shed load".into(),
        },
        retry_in: Duration::from_millis(20),
    });
    expected.push(connected_ok());
    expected.extend(as_items(&two));
    expected.push(StreamItem::Reconnecting {
        error: StreamError::Stall(Duration::from_secs(1)),
        retry_in: Duration::from_millis(20),
    });
    expected.push(StreamItem::Connected {
        status: 401,
        reason: "Unauthorized".into(),
    });
    expected.push(StreamItem::Finished(Outcome::Fatal {
        status: 401,
        reason: "Unauthorized".into(),
    }));
    assert_eq!(items, expected);
}
