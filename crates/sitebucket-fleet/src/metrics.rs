//! A worker's counters and gauges, and a tiny HTTP server that exposes them in the Prometheus
//! text format (version 0.0.4): one `GET` per connection, any path, answered and closed.
//!
//! Hand-written rather than through a metrics crate: a dozen atomics and one histogram with
//! fixed buckets are all a worker needs, and the text format is a few lines per metric.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The upper bounds of the publish latency histogram's buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The kinds of reconnect counted apart (the `kind` label of
/// `sitebucket_reconnects_total`).
pub const RECONNECT_KINDS: [&str; 8] = [
    "stall",
    "closed",
    "connect",
    "http",
    "rate_limit",
    "disconnect_message",
    "read",
    "other",
];

/// Every counter and gauge of one worker. All fields are plain atomics: read them directly in
/// tests, or render them with [`Metrics::render`].
#[derive(Debug, Default)]
pub struct Metrics {
    /// Messages read from the streams (before the lease gate).
    pub messages_in: AtomicU64,
    /// Bytes of those messages.
    pub bytes_in: AtomicU64,
    /// Messages dropped because their user's shard is no longer held.
    pub dropped_not_held: AtomicU64,
    /// Publish attempts sent to NATS (retries included).
    pub published: AtomicU64,
    /// Messages acknowledged by the JetStream stream (each message once).
    pub acked: AtomicU64,
    /// Acknowledgements that said "duplicate": the dedupe window dropped a re-publish.
    pub duplicates: AtomicU64,
    /// Publishes that failed or were not acknowledged in time (each is retried).
    pub publish_errors: AtomicU64,
    /// Messages held: queued or in flight, not acknowledged yet.
    pub held_messages: AtomicU64,
    /// Bytes held.
    pub held_bytes: AtomicU64,
    /// Times reading paused because the publisher held its bound (NATS behind).
    pub paused: AtomicU64,
    /// 1 while reading is paused, 0 otherwise.
    pub reading_paused: AtomicU64,
    /// Streams reconnected after a stall while reading was paused: the pause outlasted
    /// their stall timeout (also counted in the `stall` kind of the reconnects).
    pub reconnects_while_paused: AtomicU64,
    /// Shards this worker holds and streams.
    pub shards_held: AtomicU64,
    /// Users this worker streams.
    pub users_held: AtomicU64,
    /// Leases lost: renewals refused or failed, deadlines passed, leases taken over.
    pub lease_renewals_failed: AtomicU64,
    reconnects: [AtomicU64; RECONNECT_KINDS.len()],
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    /// Counts one reconnect of `kind` (one of [`RECONNECT_KINDS`]; anything else counts as
    /// `other`).
    pub fn reconnect(&self, kind: &str) {
        let index = RECONNECT_KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(RECONNECT_KINDS.len() - 1);
        self.reconnects[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Reconnects of `kind` so far.
    pub fn reconnects(&self, kind: &str) -> u64 {
        RECONNECT_KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.reconnects[i].load(Ordering::Relaxed))
    }

    /// Records one publish's latency, from its send to its acknowledgement.
    pub fn observe_latency(&self, latency: Duration) {
        // One increment, in the smallest bucket that takes it (this runs for every message);
        // the exposition adds them up into Prometheus' cumulative buckets.
        let seconds = latency.as_secs_f64();
        if let Some(bucket) = LATENCY_BUCKETS
            .iter()
            .zip(&self.latency_buckets)
            .find_map(|(bound, bucket)| (seconds <= *bound).then_some(bucket))
        {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(
            u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The Prometheus text exposition of every metric, labelled with `worker`.
    pub fn render(&self, worker: &str) -> String {
        let mut out = String::with_capacity(4096);
        let worker = escape(worker);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let simple: [(&str, &str, &str, &AtomicU64); 15] = [
            (
                "sitebucket_messages_in_total",
                "counter",
                "Messages read from the streams.",
                &self.messages_in,
            ),
            (
                "sitebucket_bytes_in_total",
                "counter",
                "Bytes of the messages read from the streams.",
                &self.bytes_in,
            ),
            (
                "sitebucket_dropped_not_held_total",
                "counter",
                "Messages dropped because their shard is no longer held.",
                &self.dropped_not_held,
            ),
            (
                "sitebucket_published_total",
                "counter",
                "Publish attempts sent to JetStream (retries included).",
                &self.published,
            ),
            (
                "sitebucket_acked_total",
                "counter",
                "Messages acknowledged by the JetStream stream.",
                &self.acked,
            ),
            (
                "sitebucket_duplicates_total",
                "counter",
                "Acknowledgements flagged duplicate by the stream's dedupe window.",
                &self.duplicates,
            ),
            (
                "sitebucket_publish_errors_total",
                "counter",
                "Publishes failed or unacknowledged in time (retried).",
                &self.publish_errors,
            ),
            (
                "sitebucket_reading_paused_total",
                "counter",
                "Pauses of reading while the publisher held its bound (NATS behind).",
                &self.paused,
            ),
            (
                "sitebucket_reconnects_while_paused_total",
                "counter",
                "Stream reconnects after a stall while reading was paused.",
                &self.reconnects_while_paused,
            ),
            (
                "sitebucket_reading_paused",
                "gauge",
                "1 while reading is paused because NATS is behind.",
                &self.reading_paused,
            ),
            (
                "sitebucket_lease_renewals_failed_total",
                "counter",
                "Leases lost: renewal refused or failed, deadline passed, taken over.",
                &self.lease_renewals_failed,
            ),
            (
                "sitebucket_held_messages",
                "gauge",
                "Messages held, queued or in flight, not acknowledged.",
                &self.held_messages,
            ),
            (
                "sitebucket_held_bytes",
                "gauge",
                "Bytes held, queued or in flight, not acknowledged.",
                &self.held_bytes,
            ),
            (
                "sitebucket_shards_held",
                "gauge",
                "Shards this worker holds.",
                &self.shards_held,
            ),
            (
                "sitebucket_users_held",
                "gauge",
                "Users this worker streams.",
                &self.users_held,
            ),
        ];
        for (name, kind, help, value) in simple {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{{worker=\"{worker}\"}} {}", load(value));
        }
        let name = "sitebucket_reconnects_total";
        let _ = writeln!(
            out,
            "# HELP {name} Stream reconnects, by why the connection ended.\n# TYPE {name} counter"
        );
        for (kind, value) in RECONNECT_KINDS.iter().zip(&self.reconnects) {
            let _ = writeln!(
                out,
                "{name}{{worker=\"{worker}\",kind=\"{kind}\"}} {}",
                load(value)
            );
        }
        let name = "sitebucket_publish_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} From a publish to its acknowledgement.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += load(bucket);
            let _ = writeln!(
                out,
                "{name}_bucket{{worker=\"{worker}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = load(&self.latency_count);
        let _ = writeln!(
            out,
            "{name}_bucket{{worker=\"{worker}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "{name}_sum{{worker=\"{worker}\"}} {}",
            load(&self.latency_sum_micros) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{worker=\"{worker}\"}} {count}");
        out
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `metrics` on `addr` (port 0: any free port) on the current tokio runtime: every
/// connection gets the text exposition, whatever it asks, and is closed. Returns the address
/// bound and the server's task (abort it to stop).
pub async fn serve_metrics(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    worker: String,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let metrics = metrics.clone();
            let worker = worker.clone();
            tokio::spawn(async move {
                // The request is read (up to its head, bounded) and ignored.
                let mut request = [0u8; 2048];
                let mut read = 0;
                while read < request.len() {
                    let fut = socket.read(&mut request[read..]);
                    match tokio::time::timeout(Duration::from_secs(5), fut).await {
                        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                        Ok(Ok(n)) => read += n,
                    }
                    if request[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let body = metrics.render(&worker);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_every_metric_with_its_labels() {
        let metrics = Metrics::default();
        metrics.messages_in.fetch_add(3, Ordering::Relaxed);
        metrics.reconnect("stall");
        metrics.reconnect("no such kind");
        metrics.observe_latency(Duration::from_millis(3));
        let text = metrics.render("w\"1");
        assert!(text.contains("sitebucket_messages_in_total{worker=\"w\\\"1\"} 3"));
        assert!(text.contains("sitebucket_reconnects_total{worker=\"w\\\"1\",kind=\"stall\"} 1"));
        assert!(text.contains("sitebucket_reconnects_total{worker=\"w\\\"1\",kind=\"other\"} 1"));
        assert!(text.contains(
            "sitebucket_publish_latency_seconds_bucket{worker=\"w\\\"1\",le=\"0.0025\"} 0"
        ));
        assert!(text.contains(
            "sitebucket_publish_latency_seconds_bucket{worker=\"w\\\"1\",le=\"0.005\"} 1"
        ));
        assert!(text.contains("sitebucket_publish_latency_seconds_count{worker=\"w\\\"1\"} 1"));
        assert_eq!(metrics.reconnects("stall"), 1);
    }

    /// Each latency is counted once, and the exposition's buckets are cumulative.
    #[test]
    fn latency_buckets_are_cumulative() {
        let metrics = Metrics::default();
        for ms in [3, 3, 40, 20_000, 1] {
            metrics.observe_latency(Duration::from_millis(ms));
        }
        let text = metrics.render("w");
        let bucket = |le: &str| {
            let key =
                format!("sitebucket_publish_latency_seconds_bucket{{worker=\"w\",le=\"{le}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(key.as_str()))
                .unwrap_or_else(|| panic!("no bucket {le}: {text}"))
                .to_owned()
        };
        assert_eq!(bucket("0.001"), "1");
        assert_eq!(bucket("0.0025"), "1");
        assert_eq!(bucket("0.005"), "3");
        assert_eq!(bucket("0.05"), "4");
        assert_eq!(bucket("10"), "4");
        assert_eq!(bucket("+Inf"), "5");
    }
}
