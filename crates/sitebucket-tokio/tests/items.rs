//! The tokio `Messages`'s items: connection events in order with the messages, the
//! outcome last, `messages_only` for the bytes alone; and a task consuming a flood still
//! lets the other tasks of its current-thread runtime run.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::StreamExt;
use sitebucket_e2e::{config_for, numbered_messages, server, Transport, PATIENCE};
use sitebucket_proto::{BackoffPolicy, SiteStream, TwitterBackoff};
use sitebucket_proto::{Outcome, StreamError};
use sitebucket_testserver::{AttemptPlan, End, Repeat, Scenario, Step};
use sitebucket_tokio::StreamItem;

/// `body` on a fresh current-thread runtime, failing the test after [`PATIENCE`].
fn bounded<T>(body: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
        .block_on(async {
            tokio::time::timeout(PATIENCE, body)
                .await
                .unwrap_or_else(|_| panic!("the test did not finish within {PATIENCE:?}"))
        })
}

fn steps(messages: &[Vec<u8>]) -> Vec<Step> {
    messages.iter().cloned().map(Step::Message).collect()
}

fn message_items(messages: &[Vec<u8>]) -> Vec<StreamItem> {
    messages
        .iter()
        .map(|m| StreamItem::Message(Bytes::from(m.clone())))
        .collect()
}

/// 20 ms steps for network errors and HTTP errors alike.
fn backoff() -> BackoffPolicy {
    BackoffPolicy::Twitter(TwitterBackoff {
        network_step: Duration::from_millis(20),
        network_max: Duration::from_millis(100),
        http_start: Duration::from_millis(20),
        http_max: Duration::from_millis(100),
        ..TwitterBackoff::default()
    })
}

#[test]
fn connection_events_arrive_in_order_with_the_messages() {
    let first = numbered_messages(0..3);
    let second = numbered_messages(3..6);
    let mut dropped = steps(&first);
    dropped.push(Step::CloseNow);
    let server = server(
        Scenario::new(vec![
            AttemptPlan::status(503, "Service Unavailable"),
            AttemptPlan::ok(dropped),
            AttemptPlan::ok(steps(&second)).with_end(End::Stall),
        ]),
        Transport::Plain,
    );
    let config = config_for(&server, [12])
        .backoff(backoff())
        .build()
        .unwrap();
    let ok = || StreamItem::Connected {
        status: 200,
        reason: "OK".into(),
    };
    let mut expected = vec![
        StreamItem::Connected {
            status: 503,
            reason: "Service Unavailable".into(),
        },
        StreamItem::Reconnecting {
            error: StreamError::Status {
                status: 503,
                reason: "Service Unavailable".into(),
            },
            retry_in: Duration::from_millis(20),
        },
        ok(),
    ];
    expected.extend(message_items(&first));
    // A drop after real messages: the first network step.
    expected.push(StreamItem::Reconnecting {
        error: StreamError::Closed,
        retry_in: Duration::from_millis(20),
    });
    expected.push(ok());
    expected.extend(message_items(&second));
    expected.push(StreamItem::Finished(Outcome::Stopped));

    let mut stream = sitebucket_tokio::messages(SiteStream::new(config));
    let got = bounded(async {
        // Everything up to the last message, then a stop on the silent third connection.
        let mut got: Vec<StreamItem> = (&mut stream).take(expected.len() - 1).collect().await;
        stream.stop();
        got.extend((&mut stream).collect::<Vec<_>>().await);
        got
    });
    assert_eq!(got, expected);
    assert_eq!(stream.outcome(), Some(&Outcome::Stopped));
}

#[test]
fn messages_only_keeps_the_bytes_and_the_outcome() {
    let sent = numbered_messages(0..10);
    let server = server(
        Scenario::single(AttemptPlan::ok(steps(&sent)).with_end(End::Stall)),
        Transport::Tls,
    );
    let config = config_for(&server, [12]).build().unwrap();
    let mut messages = sitebucket_tokio::messages(SiteStream::new(config)).messages_only();
    let got = bounded(async {
        let mut got: Vec<Bytes> = (&mut messages).take(sent.len()).collect().await;
        messages.get_ref().stop();
        got.extend((&mut messages).collect::<Vec<_>>().await);
        got
    });
    let got: Vec<Vec<u8>> = got.iter().map(|m| m.to_vec()).collect();
    assert_eq!(got, sent);
    assert_eq!(messages.outcome(), Some(&Outcome::Stopped));
}

/// Messages the flood test's consumer takes at least (it keeps on until the ticker has
/// ticked [`TICKS`] times too).
const FLOOD_MESSAGES: u64 = 20_000;
/// Ticks of the ticker beside the flood.
const TICKS: u64 = 20;
/// Messages the consumer may take between two ticks of the ticker. Each item spends a unit
/// of the consumer's tokio budget (128 a poll) and the loop yields after 16 reads or 2 ms:
/// about 1,400 messages at most between two ticks in a debug build. A flood that starved
/// the ticker would go far past it, however loaded the machine.
const MOST_MESSAGES_BETWEEN_TICKS: u64 = 50_000;

#[test]
fn a_task_looping_over_a_flood_lets_the_other_tasks_run() {
    let server = server(
        Scenario::single(AttemptPlan::ok(vec![Step::Repeat(Repeat::endless(
            numbered_messages(0..20),
        ))])),
        Transport::Plain,
    );
    let config = config_for(&server, [12]).build().unwrap();
    // Measured in messages, not wall time: a loaded machine that takes the thread away for
    // a while delays both tasks alike, while a flood that starves the ticker shows as a long
    // run of messages with no tick in between, however fast or slow the machine.
    let ticks = Arc::new(AtomicU64::new(0));
    let seen = ticks.clone();
    let (messages, longest_run) = bounded(async {
        let consumer = tokio::spawn(async move {
            let mut items = sitebucket_tokio::messages(SiteStream::new(config));
            let (mut messages, mut run, mut longest_run) = (0u64, 0u64, 0u64);
            let mut last_tick = 0;
            // Never awaits anything but the stream: only its budget makes it yield.
            while messages < FLOOD_MESSAGES || seen.load(Ordering::Relaxed) < TICKS {
                let item = items.next().await;
                if item.is_none() {
                    // The stream ended: the assertions below say the flood was short.
                    break;
                }
                if let Some(StreamItem::Message(_)) = item {
                    messages += 1;
                    let now = seen.load(Ordering::Relaxed);
                    run = if now == last_tick { run + 1 } else { 1 };
                    last_tick = now;
                    longest_run = longest_run.max(run);
                    if run > MOST_MESSAGES_BETWEEN_TICKS {
                        break;
                    }
                }
            }
            (messages, longest_run)
        });
        while !consumer.is_finished() {
            tokio::time::sleep(Duration::from_millis(2)).await;
            ticks.fetch_add(1, Ordering::Relaxed);
        }
        consumer.await.expect("the consumer ran")
    });
    eprintln!("{messages} messages, at most {longest_run} between two ticks");
    assert!(
        longest_run <= MOST_MESSAGES_BETWEEN_TICKS,
        "{longest_run} messages in a row with no tick between them"
    );
    assert!(
        messages >= FLOOD_MESSAGES,
        "only {messages} messages in the flood"
    );
    assert!(ticks.load(Ordering::Relaxed) >= TICKS);
}

#[test]
fn polled_outside_a_tokio_runtime_it_ends_with_a_clear_outcome() {
    let config = sitebucket_proto::Config::builder(
        [12],
        sitebucket_proto::Credentials::new("ck", "cs", "t", "ts"),
    )
    .url("http://127.0.0.1:1/1.1/site.json")
    .build()
    .unwrap();
    let mut items = sitebucket_tokio::messages(SiteStream::new(config));
    // Another executor, no tokio runtime anywhere on this thread.
    let first = futures_lite::future::block_on(items.next());
    match first {
        Some(StreamItem::Finished(Outcome::InvalidConfig(why))) => {
            assert!(why.contains("inside a tokio runtime"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(futures_lite::future::block_on(items.next()), None);
}
