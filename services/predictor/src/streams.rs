//! The JetStream streams, consumer and buckets the predictor owns, configured in one place and
//! created idempotently on start (an existing stream is used as it is, never reconfigured
//! behind an operator's back).
//!
//! | name | subjects | retention |
//! |---|---|---|
//! | `METRICS` | `metrics.batch.>` | limits: `metrics_max_age` (8 d), `metrics_max_bytes` (4 GiB), file; durable pull consumer `predictor`, explicit ack |
//! | `PREDICTIONS` | `predictions.current` | limits: `predictions_max_age` (15 min), `predictions_max_bytes` (1 GiB), file, direct get |
//! | `HISTORY` | `history.tick`, `alerts.>` | limits: `history_max_age` (7 d), `history_max_bytes` (8 GiB), file |
//! | KV `windows` | `$KV.windows.>` | history 1, `kv_max_age` (8 d); layout in `chunk.rs` |
//! | KV `forecasts` | `$KV.forecasts.>` | history 1, `kv_max_age`; key = server, value = `ServerForecast` msgpack |
//! | KV `state` | `$KV.state.>` | history 1; key `domain` = alert book and accuracy sums (msgpack) |
//!
//! Every stream and bucket is created with `--replicas` (`PREDICTOR_REPLICAS`, default 1; 3 on
//! the 3-node cluster of `deploy/nats-cluster/`); the consumer has its stream's.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, kv};
use schemas::subjects;

use crate::config::Config;

/// Predictor-private state that survives a restart.
pub const BUCKET_STATE: &str = "state";
pub const STATE_KEY: &str = "domain";
/// The `windows` bucket's description (`store.rs` opens it).
pub const WINDOWS_DESCRIPTION: &str = "Fleetcast predictor: per-server windows in one-hour chunks (see chunk.rs)";

fn limits(name: &str, subjects: &[&str], max_age: Duration, max_bytes: i64, replicas: u8) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        discard: DiscardPolicy::Old,
        max_age,
        max_bytes,
        allow_direct: true,
        num_replicas: usize::from(replicas),
        ..Default::default()
    }
}

pub fn metrics_stream(c: &Config) -> stream::Config {
    limits(subjects::STREAM_METRICS, &[subjects::METRICS_BATCH_ALL], c.metrics_max_age, c.metrics_max_bytes, c.replicas)
}

pub fn predictions_stream(c: &Config) -> stream::Config {
    limits(subjects::STREAM_PREDICTIONS, &[subjects::PREDICTIONS_CURRENT], c.predictions_max_age, c.predictions_max_bytes, c.replicas)
}

pub fn history_stream(c: &Config) -> stream::Config {
    let alerts = format!("{}.>", subjects::ALERTS_PREFIX);
    limits(subjects::STREAM_HISTORY, &[subjects::HISTORY_TICK, &alerts], c.history_max_age, c.history_max_bytes, c.replicas)
}

pub fn consumer_config(c: &Config) -> pull::Config {
    pull::Config {
        durable_name: Some(c.consumer.clone()),
        description: Some("Fleetcast predictor: every metric batch, acked once its windows are stored".into()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(60),
        max_ack_pending: 20_000,
        filter_subject: subjects::METRICS_BATCH_ALL.to_string(),
        // num_replicas 0: the stream's (R3 on a cluster), never more than the stream has.
        ..Default::default()
    }
}

/// The handles the predictor works with.
pub struct Streams {
    pub consumer: jetstream::consumer::Consumer<pull::Config>,
    pub predictions: jetstream::stream::Stream,
    pub forecasts: kv::Store,
    pub state: kv::Store,
}

pub async fn ensure(js: &jetstream::Context, c: &Config) -> anyhow::Result<Streams> {
    let metrics = js.get_or_create_stream(metrics_stream(c)).await.context("creating stream METRICS")?;
    let predictions = js.get_or_create_stream(predictions_stream(c)).await.context("creating stream PREDICTIONS")?;
    js.get_or_create_stream(history_stream(c)).await.context("creating stream HISTORY")?;
    let consumer = metrics
        .get_or_create_consumer(&c.consumer, consumer_config(c))
        .await
        .with_context(|| format!("creating consumer {}", c.consumer))?;
    let forecasts = open_bucket_replicated(
        js,
        subjects::BUCKET_FORECASTS,
        "Fleetcast: each server's latest ServerForecast (MessagePack)",
        c.kv_max_age,
        c.replicas,
    )
    .await?;
    let state = open_bucket_replicated(
        js,
        BUCKET_STATE,
        "Fleetcast predictor: alert book and accuracy sums across restarts",
        c.kv_max_age,
        c.replicas,
    )
    .await?;
    // Created here with the replicas; `WindowStore::open` then finds it (same description).
    open_bucket_replicated(js, subjects::BUCKET_WINDOWS, WINDOWS_DESCRIPTION, c.kv_max_age, c.replicas).await?;
    reset_to_ack_floor(js, &c.consumer).await;
    Ok(Streams { consumer, predictions, forecasts, state })
}

/// Opens a history-1 KV bucket, creating it (one replica) when missing.
pub async fn open_bucket(js: &jetstream::Context, bucket: &str, description: &str, max_age: Duration) -> anyhow::Result<kv::Store> {
    open_bucket_replicated(js, bucket, description, max_age, 1).await
}

/// Opens a history-1 KV bucket, creating it with `replicas` replicas when missing.
pub async fn open_bucket_replicated(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    max_age: Duration,
    replicas: u8,
) -> anyhow::Result<kv::Store> {
    if let Ok(kv) = js.get_key_value(bucket).await {
        return Ok(kv);
    }
    js.create_key_value(kv::Config {
        bucket: bucket.to_string(),
        description: description.to_string(),
        history: 1,
        max_age,
        storage: StorageType::File,
        num_replicas: usize::from(replicas),
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating KV bucket {bucket}"))
}

/// Takes back deliveries a previous (crashed) instance pulled but never acked, so they come
/// again at once and in order rather than after `ack_wait`, when newer batches would already
/// have closed their steps (ADR-60 consumer reset, nats-server >= 2.14; acked messages above
/// the floor come again too and are ignored as late).
async fn reset_to_ack_floor(js: &jetstream::Context, consumer: &str) {
    let subject = format!("CONSUMER.RESET.{}.{consumer}", subjects::STREAM_METRICS);
    let reply: Result<serde_json::Value, _> = js.request(subject, &serde_json::json!({ "seq": 0 })).await;
    match reply {
        Ok(v) if v.get("error").is_none() => tracing::debug!(reply = %v, "consumer reset to its ack floor"),
        Ok(v) => tracing::warn!(reply = %v, "could not reset the consumer to its ack floor"),
        Err(e) => tracing::warn!(error = %e, "could not reset the consumer to its ack floor"),
    }
}
