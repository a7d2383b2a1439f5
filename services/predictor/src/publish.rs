//! Everything the predictor sends: per-server forecasts in KV `forecasts`, snapshot parts
//! (per-server summaries) on `predictions.current` (JetStream, so the `PREDICTIONS` stream
//! keeps them for late subscribers), the tick summary and alert events into `HISTORY`, and
//! rejected records on `metrics.rejected`. All MessagePack with
//! `Content-Type: application/msgpack`.

use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;
use fleetbus::acks::AckWindow;
use schemas::{subjects, Rejection, ServerForecast, CONTENT_TYPE, CONTENT_TYPE_HEADER};

use futures::StreamExt;

use crate::store::{publish_all, publish_stream, WriteError};
use crate::tick::{Engine, TickOutput};

/// Snapshot parts sent but not yet acknowledged (bounds the memory a large snapshot takes).
const PARTS_IN_FLIGHT: usize = 4;

fn headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE_HEADER, CONTENT_TYPE);
    h
}

pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    forecasts_prefix: String,
    /// `predictions.current`, or `predictions.current.<k>` for partition k.
    snapshot_subject: String,
    /// The saved domain state's key in KV `state`: `domain`, or `domain.p<k>`.
    state_key: String,
}

impl Publisher {
    pub fn new(client: async_nats::Client, js: jetstream::Context) -> Publisher {
        Publisher {
            client,
            js,
            forecasts_prefix: format!("$KV.{}.", subjects::BUCKET_FORECASTS),
            snapshot_subject: subjects::PREDICTIONS_CURRENT.to_string(),
            state_key: crate::streams::STATE_KEY.to_string(),
        }
    }

    /// Publishes one partition's snapshot and state ([`crate::streams::state_key`]).
    pub fn for_partition(mut self, partition: Option<schemas::partition::PartitionInfo>) -> Publisher {
        if let Some(p) = partition {
            self.snapshot_subject = schemas::partition::snapshot_subject(p.index, p.count);
        }
        self.state_key = crate::streams::state_key(partition);
        self
    }

    /// The number of the last snapshot on this publisher's subject ([`last_seq_on`]).
    pub async fn last_snapshot_seq(&self) -> u64 {
        last_seq_on(&self.js, &self.snapshot_subject).await
    }

    /// Saves `slices` of the servers' method records (`(slice, Slice msgpack)`, e.g. every one
    /// from [`Engine::record_slices`] when the loop stops, so that a successor finds them all as
    /// of the last tick instead of up to an hour old) as save `gen`; returns once all are stored.
    pub async fn save_records(&self, slices: &[(u64, Bytes)], gen: u64, max_payload: usize) -> Result<(), WriteError> {
        let mut acks = AckWindow::new(fleetbus::acks::DEFAULT_LIMIT);
        for (slice, bytes) in slices {
            self.put_saved(&crate::streams::records_key(&self.state_key, *slice), bytes, gen, max_payload, &mut acks).await?;
        }
        acks.finish().await?;
        Ok(())
    }

    /// Writes `bytes` at `key` in KV `state` as save `gen`, in pieces when over one message
    /// (`saved_state.rs`, the head last).
    async fn put_saved(&self, key: &str, bytes: &[u8], gen: u64, max_payload: usize, acks: &mut AckWindow) -> Result<(), WriteError> {
        for (key, value) in crate::saved_state::split(key, bytes, gen, max_payload.saturating_sub(1024))? {
            let subject = format!("$KV.{}.{key}", crate::streams::BUCKET_STATE);
            acks.push(self.js.publish(subject, value).await?).await?;
        }
        Ok(())
    }

    async fn send(&self, subject: String, payload: Bytes, acks: &mut AckWindow) -> Result<(), WriteError> {
        Ok(acks.push(self.js.publish_with_headers(subject, headers(), payload).await?).await?)
    }

    /// Publishes a tick: first the servers' forecasts into KV `forecasts` (stored before any
    /// part is sent, so a reader that saw a server in a snapshot finds its curves at least as
    /// new in KV), then the snapshot parts in order on one connection (each written just
    /// before it is sent, with a few acks in flight, so the snapshot is never held whole a
    /// second time), then the summary, the alert events and the saved state; returns once all
    /// are stored. Returns the snapshot's size in bytes. Stops at the first failure; the caller
    /// logs it and the next tick publishes a whole snapshot again.
    ///
    /// `streamed`: the [`ForecastWriter`] the tick's entries went to while it computed
    /// ([`Engine::compute_streaming`]); its writes are awaited before any part is sent.
    /// `max_payload`: the most bytes of one message (the tick summary is split to fit, as the
    /// snapshot's parts were planned to).
    pub async fn tick(
        &self,
        engine: &Engine,
        out: &TickOutput,
        streamed: Option<ForecastWriter>,
        max_payload: usize,
    ) -> Result<usize, WriteError> {
        let forecasts = out.forecasts.iter().map(|(server, v)| (format!("{}{server}", self.forecasts_prefix), v.clone())).collect();
        publish_all(&self.js, forecasts).await?;
        if let Some(writer) = streamed {
            writer.finish().await?;
        }
        let mut bytes = 0;
        let mut parts = AckWindow::new(PARTS_IN_FLIGHT);
        for k in 0..out.plan.count() {
            let part = engine.part(out, k)?;
            bytes += part.len();
            self.send(self.snapshot_subject.clone(), part, &mut parts).await?;
        }
        // The last parts' acks stay outstanding behind the small messages that follow. A tick
        // can announce tens of thousands of alert events; the window keeps their acks under
        // async-nats's per-context limit (see `fleetbus::acks`).
        let mut acks = parts.with_limit(fleetbus::acks::DEFAULT_LIMIT);
        // Every server's risk and level: split when over the broker's payload (100,000 servers
        // take about 2 MB).
        for part in out.summary.encode_parts(max_payload.saturating_sub(1024).max(4096))? {
            self.send(subjects::HISTORY_TICK.to_string(), Bytes::from(part), &mut acks).await?;
        }
        for e in &out.events {
            let subject = subjects::alert_event(e.alert.state, &e.alert.server);
            self.send(subject, Bytes::from(schemas::encode(e)?), &mut acks).await?;
        }
        // The saved state (the alert book after these events) goes out right behind the events,
        // before the last of their acks is awaited: on one connection the broker stores them in
        // order, so a predictor killed once both are written leaves a successor the book that
        // already holds the alerts it announced (awaiting the events' acks first left a window
        // of milliseconds in which a kill meant the successor announced them again).
        // Saved in pieces when over one message (`saved_state.rs`), the head last.
        if let Some(state) = &out.state {
            self.put_saved(&self.state_key, state, out.seq, max_payload, &mut acks).await?;
        }
        // This tick's slice of the method records goes last, in pieces the same way.
        if let Some((slice, bytes)) = &out.records {
            self.put_saved(&crate::streams::records_key(&self.state_key, *slice), bytes, out.seq, max_payload, &mut acks).await?;
        }
        acks.finish().await?;
        Ok(bytes)
    }

    /// Starts encoding and writing KV `forecasts` entries as they are sent to the returned
    /// writer's [`ForecastWriter::put`], up to the store's in-flight limit at once. The
    /// encoding happens in the writer's task, off the thread that computes the tick.
    ///
    /// `bound`: the most entries queued at once ([`FORECAST_QUEUE`] in the predictor); `put`
    /// then blocks while the queue is full, so it must run where blocking is allowed (inside
    /// `tokio::task::block_in_place`, as the tick does on a multi-threaded runtime). `None`:
    /// unbounded, for a current-thread runtime, where waiting would stop the very task that
    /// drains the queue.
    pub fn forecast_writer(&self, bound: Option<usize>) -> ForecastWriter {
        let (tx, rx) = tokio::sync::mpsc::channel::<ServerForecast>(bound.unwrap_or(NO_BOUND).clamp(1, NO_BOUND));
        let (js, prefix) = (self.js.clone(), self.forecasts_prefix.clone());
        let unencoded = std::sync::Arc::new(std::sync::Mutex::new(None));
        let first_error = unencoded.clone();
        let task = tokio::spawn(async move {
            let writes = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|w| (w, rx)) }).filter_map(move |sf| {
                let encoded = schemas::encode(&sf).map(|b| (format!("{prefix}{}", sf.server), Bytes::from(b)));
                let kept = match encoded {
                    Ok(write) => Some(write),
                    Err(e) => {
                        tracing::error!(server = %sf.server, error = %e, "encoding a forecast for KV failed");
                        if let Ok(mut first) = first_error.lock() {
                            first.get_or_insert(e);
                        }
                        None
                    }
                };
                std::future::ready(kept)
            });
            publish_stream(&js, writes).await
        });
        ForecastWriter { tx, task, unencoded }
    }

    /// Rejections go out on core NATS: they are for watching, not for replay.
    pub async fn rejections(&self, rejected: &[Rejection]) -> Result<(), RejectionsError> {
        for r in rejected {
            let payload = Bytes::from(schemas::encode(r)?);
            self.client.publish_with_headers(subjects::METRICS_REJECTED, headers(), payload).await?;
        }
        Ok(())
    }
}

/// Why rejections were not told (core NATS: nothing to retry, the caller logs it).
#[derive(Debug, thiserror::Error)]
pub enum RejectionsError {
    #[error("encoding a rejection: {0}")]
    Encode(#[from] schemas::CodecError),
    #[error("publishing a rejection: {0}")]
    Publish(#[from] async_nats::PublishError),
}

/// The newest complete snapshot retained in `PREDICTIONS` (shared with the dashboard).
pub use fleetbus::latest_snapshot;

/// The number of the last snapshot (any part) retained on `subject`; 0 when there is none.
/// A partition's next snapshot continues from it, whoever published it before. Reads `seq`
/// alone, so a snapshot of an older layout (`v` 1, before the summaries) still counts.
pub async fn last_seq_on(js: &jetstream::Context, subject: &str) -> u64 {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: u64,
    }
    let Ok(stream) = js.get_stream(subjects::STREAM_PREDICTIONS).await else {
        return 0;
    };
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => schemas::decode::<Seq>(&m.payload).map_or(0, |s| s.seq),
        Err(_) => 0,
    }
}

/// Most KV `forecasts` entries a tick queues for the writer's task before the tick waits for
/// the broker ([`Publisher::forecast_writer`]). An entry holds a server's curves unencoded,
/// about 10 KB, so 1,024 of them are about 10 MB; unbounded, a broker slower than the tick
/// (a cluster under load) let the queue grow toward the whole tick, about 1 GB at 100,000
/// servers.
pub const FORECAST_QUEUE: usize = 1024;

/// The capacity of an unbounded [`ForecastWriter`]: the largest a tokio channel takes
/// (`tokio::sync::batch_semaphore::Semaphore::MAX_PERMITS`, `usize::MAX >> 3`). Its buffer
/// grows with what is queued, not with the capacity, so this is an unbounded queue that a
/// `try_send` never finds full.
const NO_BOUND: usize = usize::MAX >> 3;

/// A tick's KV `forecasts` writes in progress ([`Publisher::forecast_writer`]): entries are
/// queued by [`ForecastWriter::put`] from the computing thread and published by a task as they
/// come, so the queue holds what the broker has not taken yet, not the whole tick.
pub struct ForecastWriter {
    tx: tokio::sync::mpsc::Sender<ServerForecast>,
    task: tokio::task::JoinHandle<Result<(), WriteError>>,
    /// The first entry that could not be encoded (logged and skipped when it happened).
    unencoded: std::sync::Arc<std::sync::Mutex<Option<schemas::CodecError>>>,
}

impl ForecastWriter {
    /// Queues a server's entry, waiting while a bounded queue is full (see
    /// [`Publisher::forecast_writer`]). After a failed write the rest are dropped; the failure
    /// comes out of [`ForecastWriter::finish`].
    pub fn put(&self, entry: ServerForecast) {
        // Only a full queue waits (an unbounded one never is); a send fails only once the task
        // has stopped, after a failed write.
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(entry)) = self.tx.try_send(entry) {
            let _ = self.tx.blocking_send(entry);
        }
    }

    /// Entries queued and not yet taken by the writer's task.
    pub fn queued(&self) -> Option<usize> {
        Some(self.tx.max_capacity() - self.tx.capacity())
    }

    /// Waits until every queued entry is stored; the first failure (a write, or an entry that
    /// did not encode) if one was not.
    pub async fn finish(self) -> Result<(), WriteError> {
        let ForecastWriter { tx, task, unencoded } = self;
        drop(tx);
        match task.await {
            Ok(Ok(())) => match unencoded.lock().ok().and_then(|mut e| e.take()) {
                Some(e) => Err(WriteError::Encode(e)),
                None => Ok(()),
            },
            Ok(Err(e)) => Err(e),
            Err(e) => Err(WriteError::Task(e.to_string())),
        }
    }
}
