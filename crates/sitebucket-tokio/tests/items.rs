//! The tokio `Messages`'s items: connection events in order with the messages, the
//! outcome last, `messages_only` for the bytes alone; and a task consuming a flood still
//! lets the other tasks of its current-thread runtime run.

use std::future::Future;
use std::time::{Duration, Instant};

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

#[test]
fn a_task_looping_over_a_flood_lets_the_other_tasks_run() {
    let server = server(
        Scenario::single(AttemptPlan::ok(vec![Step::Repeat(Repeat::endless(
            numbered_messages(0..20),
        ))])),
        Transport::Plain,
    );
    let config = config_for(&server, [12]).build().unwrap();
    let (messages, ticks, worst) = bounded(async {
        let consumer = tokio::spawn(async move {
            let mut items = sitebucket_tokio::messages(SiteStream::new(config));
            let mut messages = 0u64;
            let started = Instant::now();
            // Never awaits anything but the stream: only its budget makes it yield.
            while started.elapsed() < Duration::from_millis(500) {
                if let Some(StreamItem::Message(_)) = items.next().await {
                    messages += 1;
                }
            }
            messages
        });
        let mut ticks = 0;
        let mut worst = Duration::ZERO;
        let mut last = Instant::now();
        while !consumer.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            worst = worst.max(last.elapsed());
            last = Instant::now();
            ticks += 1;
        }
        (consumer.await.expect("the consumer ran"), ticks, worst)
    });
    assert!(messages > 1000, "only {messages} messages in the flood");
    assert!(ticks >= 10, "the ticker ran {ticks} times beside the flood");
    assert!(
        worst < Duration::from_millis(250),
        "a tick waited {worst:?}"
    );
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
