//! `Messages`: the blocking iterator over a stream, against the test server.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sitebucket_e2e::{config_for, numbered_messages, server, Transport, CLOSE_WITHIN};
use sitebucket_proto::stream::Outcome;
use sitebucket_std::{messages, Messages, StdDriver};
use sitebucket_testserver::{AttemptPlan, End, Repeat, Scenario, Step};
use sitebucket_thread::SiteStream;

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
    for message in &mut stream {
        got.push(message);
        if got.len() == sent.len() {
            // Close from elsewhere while the iterator waits on a silent connection.
            let closer = closer.clone();
            std::thread::spawn(move || closer.close());
        }
    }
    let expected: Vec<Bytes> = sent.into_iter().map(Bytes::from).collect();
    assert_eq!(got, expected);
    assert_eq!(stream.outcome(), Some(Outcome::Stopped));
    assert!(server.wait_for_open_connections(0, Duration::from_secs(10)));
}

#[test]
fn close_is_prompt_while_the_stream_waits_for_a_slow_consumer() {
    // A flood into a queue of one message that nobody reads: the stream's thread waits
    // for room, and close() must still end it at once.
    let plan = AttemptPlan::ok(vec![Step::Repeat(Repeat::endless(numbered_messages(0..5)))]);
    let server = server(Scenario::single(plan), Transport::Plain);
    let config = config_for(&server, [12]).build().expect("valid config");
    let mut stream = Messages::spawn(StdDriver::new(), SiteStream::new(config), 1).expect("spawn");
    let first = stream.next().expect("a first message");
    assert_eq!(first, Bytes::from(numbered_messages(0..1).remove(0)));
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
    assert_eq!(stream.by_ref().count(), 0);
    assert!(
        matches!(stream.outcome(), Some(Outcome::Fatal { status: 401, .. })),
        "{:?}",
        stream.outcome()
    );
    assert!(!stream.status().healthy);
}
