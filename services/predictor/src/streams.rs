//! The JetStream streams, consumer and buckets the predictor owns, configured in one place and
//! created idempotently on start (an existing stream is used as it is, never reconfigured
//! behind an operator's back).
//!
//! | name | subjects | retention |
//! |---|---|---|
//! | `METRICS` | `metrics.batch.>` | limits: `metrics_max_age` (8 d), `metrics_max_bytes` (4 GiB), file; durable pull consumer `predictor`, explicit ack (partitioned: `predictor-p<k>` on `metrics.batch.*.<k>`, pinned client in group `predictors`) |
//! | `PREDICTIONS` | `predictions.current`, `predictions.current.*` (partitions) | limits: `predictions_max_age` (15 min), `predictions_max_bytes` (1 GiB), file, direct get |
//! | `HISTORY` | `history.tick`, `alerts.>` | limits: `history_max_age` (7 d), `history_max_bytes` (8 GiB), file |
//! | KV `windows` | `$KV.windows.>` | history 1, `kv_max_age` (8 d); layout in `chunk.rs` |
//! | KV `forecasts` | `$KV.forecasts.>` | history 1, `kv_max_age`; key = server, value = `ServerForecast` msgpack |
//! | KV `state` | `$KV.state.>` | history 1; key `domain` (partitioned: `domain.p<k>`) = alert book, accuracy sums and the tick they were saved after (msgpack), in pieces of one message each (`saved_state.rs`) |
//! | KV `predictors` | `$KV.predictors.>` | history 1, max age `member_ttl`: one key per live partitioned predictor, its heartbeat |
//!
//! Every stream and bucket is created with `--replicas` (`PREDICTOR_REPLICAS`, default 1; 3 on
//! the 3-node cluster of `deploy/nats-cluster/`); the consumer has its stream's.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, kv};
use schemas::subjects;

use schemas::partition::PartitionInfo;

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

/// Snapshots of the whole fleet, and of each partition (`predictions.current.<k>`).
pub fn predictions_stream(c: &Config) -> stream::Config {
    let partitions = format!("{}.*", subjects::PREDICTIONS_CURRENT);
    limits(
        subjects::STREAM_PREDICTIONS,
        &[subjects::PREDICTIONS_CURRENT, &partitions],
        c.predictions_max_age,
        c.predictions_max_bytes,
        c.replicas,
    )
}

/// The saved domain state's key in KV `state`: `domain`, or `domain.p<k>` for partition k.
pub fn state_key(partition: Option<PartitionInfo>) -> String {
    match partition {
        Some(p) => format!("{STATE_KEY}.p{}", p.index),
        None => STATE_KEY.to_string(),
    }
}

/// The key of slice `slice` of the servers' method records (`domain/records.rs`) saved beside
/// the state at `state_key`: `domain.r<s>`, or `domain.p<k>.r<s>`.
pub fn records_key(state_key: &str, slice: u64) -> String {
    format!("{state_key}.r{slice}")
}

/// The priority group every partitioned predictor pulls in; JetStream pins one client per
/// partition consumer ([`partition_consumer_config`]).
pub const PRIORITY_GROUP: &str = "predictors";

/// Partition `p`'s durable consumer: `<consumer>-p<k>`, reading `metrics.batch.*.<k>`, with
/// the pinned-client priority policy, so one predictor at a time gets its messages; a pin not
/// renewed by a pull within `pin_ttl` (a predictor that died) passes to the next that pulls.
pub fn partition_consumer_config(c: &Config, p: PartitionInfo) -> pull::Config {
    pull::Config {
        durable_name: Some(partition_consumer_name(c, p)),
        description: Some(format!("Fleetcast predictor: partition {} of {}, one pinned predictor at a time", p.index, p.count)),
        filter_subject: schemas::partition::metrics_batch_filter(p.index, p.count),
        priority_policy: async_nats::jetstream::consumer::PriorityPolicy::PinnedClient,
        priority_groups: vec![PRIORITY_GROUP.to_string()],
        priority_timeout: c.pin_ttl(),
        ..consumer_config(c)
    }
}

pub fn partition_consumer_name(c: &Config, p: PartitionInfo) -> String {
    format!("{}-p{}", c.consumer, p.index)
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
    pub metrics: jetstream::stream::Stream,
    /// The whole fleet's consumer; `None` on a partitioned predictor.
    pub consumer: Option<jetstream::consumer::Consumer<pull::Config>>,
    pub predictions: jetstream::stream::Stream,
    pub forecasts: kv::Store,
    pub state: kv::Store,
}

pub async fn ensure(js: &jetstream::Context, c: &Config) -> anyhow::Result<Streams> {
    let metrics = js.get_or_create_stream(metrics_stream(c)).await.context("creating stream METRICS")?;
    let predictions = js.get_or_create_stream(predictions_stream(c)).await.context("creating stream PREDICTIONS")?;
    let predictions = add_partition_subjects(js, predictions).await?;
    js.get_or_create_stream(history_stream(c)).await.context("creating stream HISTORY")?;
    // A partitioned predictor makes its partitions' consumers as it takes them (`partitions/`).
    let consumer = if c.partitions <= 1 {
        let consumer = metrics
            .get_or_create_consumer(&c.consumer, consumer_config(c))
            .await
            .with_context(|| format!("creating consumer {}", c.consumer))?;
        reset_to_ack_floor(js, &c.consumer).await;
        Some(consumer)
    } else {
        None
    };
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
    Ok(Streams { metrics, consumer, predictions, forecasts, state })
}

/// Partition `p`'s consumer, created if missing, its unacked deliveries taken back.
pub async fn partition_consumer(
    js: &jetstream::Context,
    metrics: &jetstream::stream::Stream,
    c: &Config,
    p: PartitionInfo,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    let name = partition_consumer_name(c, p);
    let consumer = metrics
        .get_or_create_consumer(&name, partition_consumer_config(c, p))
        .await
        .with_context(|| format!("creating consumer {name}"))?;
    reset_to_ack_floor(js, &name).await;
    Ok(consumer)
}

/// A `PREDICTIONS` stream made before partitions existed holds only `predictions.current`;
/// partition snapshots need `predictions.current.*` too. The one change made to an existing
/// stream, and only ever adding a subject.
async fn add_partition_subjects(js: &jetstream::Context, mut stream: stream::Stream) -> anyhow::Result<stream::Stream> {
    let wanted = format!("{}.*", subjects::PREDICTIONS_CURRENT);
    let mut config = stream.info().await.context("stream PREDICTIONS info")?.config.clone();
    if config.subjects.iter().any(|s| *s == wanted || s == ">" || s == "predictions.>") {
        return Ok(stream);
    }
    config.subjects.push(wanted);
    js.update_stream(&config).await.context("adding predictions.current.* to stream PREDICTIONS")?;
    tracing::info!("stream PREDICTIONS now also holds partition snapshots (predictions.current.*)");
    js.get_stream(subjects::STREAM_PREDICTIONS).await.context("stream PREDICTIONS")
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
