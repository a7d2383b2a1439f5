//! Publishing one tick of a metrics source through JetStream, shared by every source (the
//! generator, `ingest`) so they split, label and retry the same way: the tick's batch is split
//! so every message fits the server's `max_payload`, each part carries the `Fleetcast-Part`
//! header (the last one ends the tick for the predictor) and a `Nats-Msg-Id`
//! (`<run_id>.<seq>.<part>`), the parts are pipelined, and the tick counts as sent only once the
//! METRICS stream has acknowledged every part. When no stream answers (the predictor, which
//! creates it, is not up yet) the same parts are retried with backoff, never dropped; message
//! ids let the stream discard a part it already stored. The caller passes the future that
//! aborts the retries (its shutdown signal), so this module knows no service's shutdown type.
//!
//! With a partition count above one ([`Publisher::with_partitions`]) the tick is published
//! as one batch per partition present (`metrics.batch.<source>.<partition>`, parts counted
//! and ids `<run_id>.<seq>.p<partition>.<part>` per partition; see `partitioned`); the tick
//! still counts as sent only once every part of every partition is acknowledged.

mod partitioned;

use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use bytes::Bytes;
use futures::future::join_all;
use schemas::{MetricRecord, MetricsBatch, CONTENT_TYPE, CONTENT_TYPE_HEADER};
use tracing::warn;

use self::partitioned::Part;

/// Bytes kept free under `max_payload` for the headers and protocol framing.
pub const HEADER_MARGIN: usize = 512;
/// What to assume before the server has said its `max_payload` (the NATS default).
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// Bytes per encoded record before the first tick has measured it.
const FIRST_GUESS_PER_RECORD: f64 = 320.0;
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("record of server {server:?} alone encodes to {bytes} bytes, over the {limit}-byte limit")]
    RecordTooLarge { server: String, bytes: usize, limit: usize },
    #[error("encoding the batch: {0}")]
    Encode(#[from] schemas::CodecError),
    #[error("shutting down before tick {seq} was acknowledged")]
    Aborted { seq: u64 },
}

/// Splits a tick's records into encoded batches (same `seq` and `clock_ms`) of at most
/// `limit` bytes each. Remembers the bytes per record of the last tick, so a tick that needs
/// splitting is usually encoded once, not twice.
#[derive(Debug, Default)]
pub struct Splitter {
    bytes_per_record: Option<f64>,
}

impl Splitter {
    pub fn split(
        &mut self,
        source: &str,
        seq: u64,
        clock_ms: i64,
        records: Vec<MetricRecord>,
        limit: usize,
    ) -> Result<Vec<Bytes>, PublishError> {
        let n = records.len();
        let mut out = Vec::new();
        let first_chunk = match self.bytes_per_record {
            // Aim under the limit: record sizes vary a little (names, rounding of values).
            Some(b) if b * n as f64 > limit as f64 * 0.9 => ((limit as f64 * 0.85 / b) as usize).max(1),
            _ => n.max(1),
        };
        let mut total = 0usize;
        let mut rest = records;
        while !rest.is_empty() || (n == 0 && out.is_empty()) {
            let tail = rest.split_off(first_chunk.min(rest.len()));
            let chunk = std::mem::replace(&mut rest, tail);
            let hint = self.bytes_per_record.unwrap_or(FIRST_GUESS_PER_RECORD);
            for part in encode_within(source, seq, clock_ms, chunk, limit, hint)? {
                total += part.len();
                out.push(part);
            }
        }
        if n > 0 {
            self.bytes_per_record = Some(total as f64 / n as f64);
        }
        Ok(out)
    }
}

/// Encodes `records` as one batch, or splits them until every part fits. The buffer is sized
/// from the expected bytes per record, so a large batch is not copied as it grows.
fn encode_within(
    source: &str,
    seq: u64,
    clock_ms: i64,
    records: Vec<MetricRecord>,
    limit: usize,
    per_record: f64,
) -> Result<Vec<Bytes>, PublishError> {
    let batch = MetricsBatch::new(source, seq, clock_ms, records);
    let mut bytes = Vec::with_capacity((batch.records.len() as f64 * per_record * 1.05) as usize + 64);
    schemas::codec::encode_into(&mut bytes, &batch)?;
    if bytes.len() <= limit {
        return Ok(vec![Bytes::from(bytes)]);
    }
    let mut records = batch.records;
    if records.len() <= 1 {
        let server = records.pop().map(|r| r.server).unwrap_or_default();
        return Err(PublishError::RecordTooLarge { server, bytes: bytes.len(), limit });
    }
    let parts = bytes.len().div_ceil(limit * 9 / 10).max(2);
    let size = records.len().div_ceil(parts);
    let mut out = Vec::with_capacity(parts);
    while !records.is_empty() {
        let tail = records.split_off(size.min(records.len()));
        let chunk = std::mem::replace(&mut records, tail);
        out.extend(encode_within(source, seq, clock_ms, chunk, limit, per_record)?);
    }
    Ok(out)
}

/// How one tick went out.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TickReport {
    /// Messages the tick took, every partition's together (parts cut again count once).
    pub parts: usize,
    /// Partitions the tick reached (1 unpartitioned).
    pub partitions: usize,
    pub bytes: usize,
    /// Time spent encoding and splitting.
    pub encode: Duration,
    /// Time from the first publish to the last acknowledgement (retries included).
    pub publish: Duration,
    /// Rounds that failed and were retried after a backoff.
    pub retries: u32,
    /// Parts cut again because the server's max_payload turned out lower.
    pub resplit: usize,
}

/// Publishes ticks of one source on `metrics.batch.<source>`, or with `count` partitions
/// on `metrics.batch.<source>.<partition>` (`schemas::partition::metrics_batch_subject`).
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    subject: String,
    /// The subject of each partition (one: `metrics.batch.<source>`).
    subjects: Vec<String>,
    partitions: u16,
    source: String,
    run_id: String,
    splitter: Splitter,
}

impl Publisher {
    /// `run_id` makes message ids unique to this run, so a restarted source is never
    /// mistaken for a duplicate of the previous one (a source that must de-duplicate across
    /// restarts, such as a backfill, passes an id stable across them). Unpartitioned, as
    /// [`with_partitions`](Self::with_partitions)`(1)`.
    pub fn new(client: async_nats::Client, source: &str, run_id: impl Into<String>) -> Self {
        let subject = schemas::subjects::metrics_batch(source);
        Publisher {
            js: jetstream::new(client.clone()),
            client,
            subjects: vec![subject.clone()],
            subject,
            partitions: 1,
            source: source.to_owned(),
            run_id: run_id.into(),
            splitter: Splitter::default(),
        }
    }

    /// Splits every tick among `count` partitions by server (`schemas::partition::of`): each
    /// partition present in a tick is its own batch on `metrics.batch.<source>.<partition>`,
    /// its parts numbered `1/n..n/n` within the partition and identified
    /// `<run_id>.<seq>.p<partition>.<part>`. 1 (the default; 0 is taken as 1) publishes
    /// exactly as unpartitioned: `metrics.batch.<source>`, ids `<run_id>.<seq>.<part>`.
    pub fn with_partitions(mut self, count: u16) -> Self {
        let count = count.max(1);
        self.partitions = count;
        self.subjects = (0..count).map(|p| schemas::partition::metrics_batch_subject(&self.source, p, count)).collect();
        self.subject = if count == 1 { self.subjects[0].clone() } else { format!("{}.*", schemas::subjects::metrics_batch(&self.source)) };
        self
    }

    /// The partition count (1 unpartitioned).
    pub fn partitions(&self) -> u16 {
        self.partitions
    }

    /// Where ticks go: `metrics.batch.<source>`, or with partitions the wildcard of them all,
    /// `metrics.batch.<source>.*` (for logs; [`subjects`](Self::subjects) lists them).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The subject of each partition, by partition (one unpartitioned).
    pub fn subjects(&self) -> &[String] {
        &self.subjects
    }

    /// The largest message this publisher sends: the `max_payload` the client enforces (the
    /// server's, once its INFO has arrived) less a margin for headers.
    pub fn limit(&self) -> usize {
        let max = match self.client.max_payload() {
            0 => DEFAULT_MAX_PAYLOAD,
            m => m,
        };
        max.saturating_sub(HEADER_MARGIN).max(1024)
    }

    /// Sends one tick and waits until the stream has acknowledged all of it (with partitions,
    /// every part of every partition present). Failed parts are retried with backoff (200 ms
    /// doubling to 5 s) until they are acknowledged or `abort` resolves, which ends the call
    /// with [`PublishError::Aborted`].
    pub async fn publish(
        &mut self,
        seq: u64,
        clock_ms: i64,
        records: Vec<MetricRecord>,
        abort: impl Future<Output = ()>,
    ) -> Result<TickReport, PublishError> {
        let mut abort = std::pin::pin!(abort);
        let t0 = Instant::now();
        let limit = self.limit();
        let mut parts = Vec::new();
        let groups = partitioned::group(records, self.partitions);
        let reached = groups.len();
        for (partition, records) in groups {
            for bytes in self.splitter.split(&self.source, seq, clock_ms, records, limit)? {
                parts.push(Part { partition, bytes });
            }
        }
        let mut report = TickReport {
            parts: parts.len(),
            partitions: reached,
            bytes: parts.iter().map(|p| p.bytes.len()).sum(),
            encode: t0.elapsed(),
            ..Default::default()
        };
        let t1 = Instant::now();
        let mut pending: Vec<usize> = (0..parts.len()).collect();
        let mut backoff = BACKOFF_FIRST;
        loop {
            let failed = self.send_round(seq, &parts, &pending).await;
            if failed.is_empty() {
                report.publish = t1.elapsed();
                report.parts = parts.len() - report.resplit;
                return Ok(report);
            }
            pending.clear();
            let mut wait = false;
            for (i, err) in failed {
                if err.kind() == PublishErrorKind::MaxPayloadExceeded {
                    // The server's limit is lower than the one this part was cut for (its INFO
                    // came late, or it changed on reconnect): cut the part again, at once.
                    let limit = self.limit();
                    let (partition, subject) = (parts[i].partition, self.subject_of(parts[i].partition));
                    warn!(subject, seq, bytes = parts[i].bytes.len(), limit, "part over the server's max_payload; splitting it again");
                    let batch: MetricsBatch = schemas::decode(&parts[i].bytes)?;
                    report.resplit += 1;
                    for bytes in self.splitter.split(&self.source, seq, clock_ms, batch.records, limit)? {
                        parts.push(Part { partition, bytes });
                        pending.push(parts.len() - 1);
                    }
                    continue;
                }
                if !wait {
                    let subject = self.subject_of(parts[i].partition);
                    if err.kind() == PublishErrorKind::StreamNotFound {
                        warn!(
                            subject,
                            seq,
                            "no JetStream stream answers on {subject} (the predictor creates stream {}); retrying the tick in {:?}",
                            schemas::subjects::STREAM_METRICS,
                            backoff
                        );
                    } else {
                        warn!(subject, seq, "publishing failed: {err}; retrying in {backoff:?}");
                    }
                }
                wait = true;
                pending.push(i);
            }
            if !wait {
                continue;
            }
            report.retries += 1;
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = &mut abort => return Err(PublishError::Aborted { seq }),
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn subject_of(&self, partition: u16) -> &str {
        self.subjects.get(usize::from(partition)).unwrap_or(&self.subject)
    }

    /// Publishes the `pending` parts back to back, then awaits their acks; returns failures.
    /// Parts are numbered within their partition (all of them unpartitioned). At most
    /// [`crate::acks::DEFAULT_LIMIT`] acks are held at once: async-nats's publish waits
    /// forever for a permit once 5,000 are held (see `acks.rs`).
    async fn send_round(&self, seq: u64, parts: &[Part], pending: &[usize]) -> Vec<(usize, jetstream::context::PublishError)> {
        let labels = partitioned::label(parts, self.partitions);
        let mut failed = Vec::new();
        for batch in pending.chunks(crate::acks::DEFAULT_LIMIT) {
            self.send_batch(seq, parts, batch, &labels, &mut failed).await;
        }
        failed.sort_by_key(|(i, _)| *i);
        failed
    }

    /// [`Self::send_round`] for one batch of parts: sends them, then awaits their acks,
    /// adding failures to `failed`.
    async fn send_batch(
        &self,
        seq: u64,
        parts: &[Part],
        pending: &[usize],
        labels: &[(usize, usize)],
        failed: &mut Vec<(usize, jetstream::context::PublishError)>,
    ) {
        let mut acks = Vec::with_capacity(pending.len());
        for &i in pending {
            let (p, (index, count)) = (parts[i].partition, labels[i]);
            let msg = PublishMessage::build()
                .payload(parts[i].bytes.clone())
                .header(CONTENT_TYPE_HEADER, CONTENT_TYPE)
                .header(schemas::subjects::PART_HEADER, schemas::subjects::part_header(index, count).as_str())
                .message_id(partitioned::message_id(&self.run_id, seq, p, self.partitions, index));
            match self.js.send_publish(self.subject_of(p).to_owned(), msg).await {
                Ok(ack) => acks.push(async move { (i, ack.await) }),
                Err(e) => failed.push((i, e)),
            }
        }
        for (i, res) in join_all(acks).await {
            if let Err(e) = res {
                failed.push((i, e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{Metric, Metrics};

    /// A tick of `servers` records with every metric set, names and values varied like a fleet's.
    fn tick(servers: usize) -> Vec<MetricRecord> {
        (0..servers)
            .map(|i| {
                let mut metrics = Metrics::default();
                for (k, m) in Metric::ALL.iter().enumerate() {
                    metrics.set(*m, Some(((i * 37 + k * 11) % 97) as f32 + 0.123));
                }
                MetricRecord { server: format!("ppweb{i:04}"), ts_ms: 1_767_571_200_000, profile: None, metrics }
            })
            .collect()
    }

    #[test]
    fn small_ticks_stay_whole() {
        let recs = tick(20);
        let parts = Splitter::default().split("generator", 3, 9, recs.clone(), 1 << 20).unwrap();
        assert_eq!(parts.len(), 1);
        let b = MetricsBatch::decode_lenient(&parts[0]).unwrap();
        assert_eq!((b.seq, b.clock_ms, b.records.len()), (3, 9, recs.len()));
    }

    #[test]
    fn big_ticks_split_under_the_limit_and_keep_every_record() {
        let recs = tick(500);
        let mut splitter = Splitter::default();
        for limit in [8_000, 20_000, 65_536] {
            for _ in 0..2 {
                // The second round uses the remembered record size.
                let parts = splitter.split("generator", 1, 2, recs.clone(), limit).unwrap();
                assert!(parts.len() > 1);
                assert!(parts.iter().all(|p| p.len() <= limit), "limit {limit}");
                let back: Vec<MetricRecord> =
                    parts.iter().flat_map(|p| MetricsBatch::decode_lenient(p).unwrap().records.into_iter().map(Result::unwrap)).collect();
                assert_eq!(back, recs);
            }
        }
    }

    #[test]
    fn a_record_too_big_for_any_message_is_an_error() {
        let err = Splitter::default().split("generator", 1, 2, tick(20), 50).unwrap_err();
        assert!(matches!(err, PublishError::RecordTooLarge { limit: 50, .. }), "{err}");
    }

    #[test]
    fn an_empty_tick_is_one_empty_batch() {
        let parts = Splitter::default().split("generator", 1, 2, Vec::new(), 1 << 20).unwrap();
        assert_eq!(parts.len(), 1);
        assert!(MetricsBatch::decode_lenient(&parts[0]).unwrap().records.is_empty());
    }
}
