//! The one way out to NATS: closed steps go through the shared `fleetbus::publish::Publisher`
//! on `metrics.batch.<source>` (or, partitioned, `metrics.batch.<source>.<partition>`; split at
//! max_payload, `Fleetcast-Part`, `Nats-Msg-Id`, retried with backoff), rejections on `metrics.rejected` in the predictor's `Rejection` shape. One task
//! owns the publisher, so batches leave in the order the steps closed, whichever path (push or
//! pull) made them.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use fleetbus::publish::{PublishError, Publisher};
use schemas::{MetricRecord, RejectReason, Rejection, ValidationError, CONTENT_TYPE, CONTENT_TYPE_HEADER, SCHEMA_VERSION};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::stats::Stats;

/// What the sink publishes.
#[derive(Debug)]
pub enum Out {
    /// One tick: records (any steps, oldest first) and the batch's `clock_ms`.
    Batch {
        clock_ms: i64,
        records: Vec<MetricRecord>,
    },
    Rejections(Vec<Rejection>),
}

/// Collects rejections of one request or step, one per (field, reason): a request of 10,000
/// samples without a host label is one message naming the first and the count, not 10,000.
#[derive(Debug, Default)]
pub struct Tally {
    by: BTreeMap<(String, RejectReason), (u64, ValidationError, Option<String>)>,
}

impl Tally {
    /// One rejection of `e`'s kind; the first of a kind is the one the message shows.
    pub fn add(&mut self, e: ValidationError, server: Option<&str>) {
        self.add_n(e, server, 1);
    }

    /// `n` rejections of `e`'s kind at once (e.g. every host cut by the fleet bound).
    pub fn add_n(&mut self, e: ValidationError, server: Option<&str>, n: u64) {
        let slot = self.by.entry((e.field.clone(), e.reason)).or_insert_with(|| (0, e, server.map(str::to_owned)));
        slot.0 += n;
    }

    /// Nothing was rejected.
    pub fn is_empty(&self) -> bool {
        self.by.is_empty()
    }

    /// Counts every rejection in `stats` (`rejected{reason}`) and returns one message per kind.
    pub fn into_rejections(self, source: &str, stats: &Stats, wall_ms: i64) -> Vec<Rejection> {
        self.by
            .into_values()
            .map(|(n, mut error, server)| {
                stats.add("rejected", "reason", error.reason.name(), n);
                if n > 1 {
                    error.rule = format!("{} ({n} alike in this request, the first shown)", error.rule);
                }
                Rejection { v: SCHEMA_VERSION, source: source.to_owned(), seq: None, index: None, server, error, rejected_ms: wall_ms }
            })
            .collect()
    }
}

/// Publishes everything sent on `rx` until the channel closes (every sender gone) or `abort`
/// fires. `seq_start` should grow across restarts (the start's wall clock), so a restarted
/// ingest is never taken for a repeat of the previous run's batches. `partitions` is the
/// publisher's partition count (1: unpartitioned; see `Publisher::with_partitions`).
pub async fn run(
    client: async_nats::Client,
    source: String,
    partitions: u16,
    seq_start: u64,
    mut rx: mpsc::Receiver<Out>,
    stats: Arc<Stats>,
    mut abort: watch::Receiver<bool>,
) {
    let mut publisher = Publisher::new(client.clone(), &source, format!("{source}-{seq_start}")).with_partitions(partitions);
    let mut seq = seq_start;
    while let Some(out) = rx.recv().await {
        match out {
            Out::Batch { clock_ms, records } => {
                let n = records.len();
                let stop = async {
                    let _ = abort.wait_for(|a| *a).await;
                };
                match publisher.publish(seq, clock_ms, records, stop).await {
                    Ok(r) => {
                        stats.add("published", "what", "batches", 1);
                        stats.add("published", "what", "records", n as u64);
                        debug!(seq, clock_ms, records = n, parts = r.parts, partitions = r.partitions, "batch published");
                    }
                    Err(PublishError::Aborted { .. }) => {
                        info!(seq, "shutting down with a batch unacknowledged");
                        return;
                    }
                    Err(e) => {
                        stats.add("publish_errors", "kind", "unsendable", 1);
                        warn!(seq, "batch not sendable: {e}");
                    }
                }
                seq += 1;
            }
            Out::Rejections(list) => {
                for r in list {
                    let e = &r.error;
                    warn!(server = r.server.as_deref().unwrap_or("-"), field = %e.field, reason = e.reason.name(), "rejected: {}", e.rule);
                    let Ok(payload) = schemas::encode(&r) else {
                        continue;
                    };
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(CONTENT_TYPE_HEADER, CONTENT_TYPE);
                    if let Err(e) = client.publish_with_headers(schemas::subjects::METRICS_REJECTED, headers, Bytes::from(payload)).await {
                        warn!("publishing a rejection: {e}");
                    }
                }
            }
        }
    }
}
