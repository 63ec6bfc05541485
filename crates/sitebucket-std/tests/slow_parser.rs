//! A slow parser holds the std driver's thread past the stall deadline while the server
//! keeps writing: the bytes waiting in the socket count, and no stall is declared.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sitebucket_e2e::{config_for, numbered_messages, server, wait_for, Transport};
use sitebucket_proto::Outcome;
use sitebucket_proto::Parser;
use sitebucket_std::StdDriver;
use sitebucket_testserver::{AttemptPlan, End, Scenario, Step};
use sitebucket_thread::{ListenThread, SiteStream};

/// Holds the driver's thread for `hold` on every message; counts those it finished.
struct SlowParser {
    hold: Duration,
    done: Arc<AtomicUsize>,
}

impl Parser for SlowParser {
    fn parse(&mut self, _message: Bytes) {
        std::thread::sleep(self.hold);
        self.done.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_slow_parser_does_not_make_a_writing_server_look_stalled() {
    // A keep-alive every 50 ms, far inside the 500 ms stall timeout; each message holds the
    // thread for 1.2 s, during which the keep-alives wait in the socket. When the parser
    // returns, the stall deadline is past: the driver must read what is there first.
    let keepalives = |for_: Duration| {
        let n = for_.as_millis() / 50;
        (0..n).flat_map(|_| [Step::KeepAlive, Step::Wait(Duration::from_millis(50))])
    };
    let sent = numbered_messages(0..3);
    let mut steps = Vec::new();
    for message in &sent {
        steps.push(Step::Message(message.clone()));
        steps.extend(keepalives(Duration::from_millis(300)));
    }
    // Room to look at the stream before the server falls silent.
    steps.extend(keepalives(Duration::from_secs(10)));
    let plan = AttemptPlan::ok(steps).with_end(End::Stall);
    let server = server(Scenario::single(plan), Transport::Plain);
    let config = config_for(&server, [12])
        .stall_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let parser = SlowParser {
        hold: Duration::from_millis(1200),
        done: done.clone(),
    };
    let mut stream =
        ListenThread::spawn(StdDriver::new(), SiteStream::new(config), parser).unwrap();
    wait_for("the parser to finish all 3 messages", || {
        done.load(Ordering::SeqCst) >= sent.len()
    });
    let status = stream.status();
    assert_eq!(
        (status.stats.attempts, status.stats.last_error),
        (1, None),
        "the stream was not failed while its server kept writing"
    );
    assert_eq!(server.attempts().len(), 1, "no reconnect");
    stream.close();
    assert_eq!(stream.join(), Some(Outcome::Stopped));
}
