//! `listen --sink nats://HOST:PORT/SUBJECT`: every message published to JetStream instead of
//! printed, the way a fleet worker publishes (see `sitebucket_fleet::output`): subjects
//! `SUBJECT.msg.<for_user>` and `SUBJECT.stream.<kind>`, the raw bytes, `Nats-Msg-Id` a keyed
//! hash of the user and the bytes (the stream's key in the bucket `sitebucket-ids`, shared with
//! a fleet publishing into the same stream), a bounded number in flight and held (beyond it the streams' read gate
//! pauses on the smol and tokio drivers; on the thread and mio drivers the reader waits).
//! The stream (`SUBJECT` upper-cased, `.` and `-` as `_`) is created if missing. At the end
//! of the run what is held is drained to NATS.

use std::sync::mpsc;
use std::time::Duration;

use sitebucket_fleet::{Metrics, OutputConfig, PublishSender, Publisher};

/// How long the end of a run waits for NATS to acknowledge what is held.
const DRAIN: Duration = Duration::from_secs(10);

/// A parsed `--sink`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SinkUrl {
    /// `nats://HOST:PORT`.
    pub server: String,
    /// The subject prefix.
    pub subject: String,
}

/// Parses `nats://HOST:PORT/SUBJECT`; the subject is tokens of letters, digits, `_` and `-`
/// separated by dots.
pub(crate) fn parse_sink(text: &str) -> Result<SinkUrl, String> {
    let expected = "expected nats://HOST:PORT/SUBJECT, like nats://127.0.0.1:4222/sitebucket";
    let rest = text
        .strip_prefix("nats://")
        .ok_or_else(|| format!("{text:?} is not a nats:// URL; {expected}"))?;
    let (server, subject) = rest
        .split_once('/')
        .ok_or_else(|| format!("{text:?} has no subject; {expected}"))?;
    let valid = !subject.is_empty()
        && subject.split('.').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if server.is_empty() || !valid {
        return Err(format!(
            "{text:?}: the subject must be dot-separated tokens of letters, digits, '_' and '-'; {expected}"
        ));
    }
    Ok(SinkUrl {
        server: format!("nats://{server}"),
        subject: subject.to_owned(),
    })
}

/// The publishing side of `listen --sink`, on a thread and runtime of its own.
pub(crate) struct NatsSink {
    sender: PublishSender,
    subject: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: mpsc::Receiver<usize>,
    metrics: std::sync::Arc<Metrics>,
}

impl NatsSink {
    /// Connects and makes sure the stream exists; an error says why not.
    pub(crate) fn start(url: &SinkUrl) -> Result<Self, String> {
        let (ready_tx, ready) = mpsc::channel();
        let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = mpsc::channel();
        let url = url.clone();
        let subject = url.subject.clone();
        let metrics = std::sync::Arc::new(Metrics::default());
        let thread_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("sitebucket-nats".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start a runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let client = match async_nats::connect(&url.server).await {
                        Ok(client) => client,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!(
                                "cannot connect to NATS at {}: {e}",
                                url.server
                            )));
                            return;
                        }
                    };
                    let mut config = OutputConfig::new(format!("listen-{}", std::process::id()));
                    config.subject_prefix = url.subject.clone();
                    config.stream = url.subject.to_ascii_uppercase().replace(['.', '-'], "_");
                    let publisher = match Publisher::start(client, config, thread_metrics).await {
                        Ok(publisher) => publisher,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(publisher.sender()));
                    let _ = stop.await;
                    let left = publisher.drain(DRAIN).await;
                    let _ = done_tx.send(left);
                });
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        let sender = ready
            .recv()
            .map_err(|_| "the NATS thread ended".to_owned())??;
        Ok(NatsSink {
            sender,
            subject,
            stop: Some(stop_tx),
            done,
            metrics,
        })
    }

    /// The handle that hands messages over.
    pub(crate) fn sender(&self) -> PublishSender {
        self.sender.clone()
    }

    /// The subject prefix.
    pub(crate) fn subject(&self) -> &str {
        &self.subject
    }

    /// Drains what is held; returns how many messages were not acknowledged in time.
    pub(crate) fn finish(&mut self) -> usize {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let left = self
            .done
            .recv_timeout(DRAIN + Duration::from_secs(1))
            .unwrap_or(usize::MAX);
        let acked = self
            .metrics
            .acked
            .load(std::sync::atomic::Ordering::Relaxed);
        if left == 0 {
            tracing::info!("published to NATS: {acked} message(s), every one acknowledged");
        }
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_urls_say_what_is_wrong() {
        assert_eq!(
            parse_sink("nats://127.0.0.1:4222/sitebucket.dev"),
            Ok(SinkUrl {
                server: "nats://127.0.0.1:4222".into(),
                subject: "sitebucket.dev".into()
            })
        );
        for (bad, why) in [
            ("http://x/y", "not a nats:// URL"),
            ("nats://x:1", "has no subject"),
            ("nats://x:1/", "the subject must be"),
            ("nats://x:1/a..b", "the subject must be"),
            ("nats://x:1/a.*", "the subject must be"),
            ("nats:///a", "the subject must be"),
        ] {
            let error = parse_sink(bad).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }
}
