//! Starting and running the predictor: connect, create the streams, load the model, register
//! the stats service and `/metrics`, then run the loop (`consume.rs`) over the whole fleet, or,
//! with `--partitions N > 1`, the partition supervisor (`partitions/`), which runs one loop per
//! partition this predictor holds. [`start`] returns a handle, so tests and the benchmark run
//! the predictor in-process and can stop it gracefully or abort it like a crash; the binary
//! calls [`run`].

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_nats::jetstream;
use schemas::partition::PartitionInfo;
use schemas::subjects;
use tokio::sync::watch;

use crate::config::Config;
use crate::consume::{pull, Loop, Messages};
use crate::publish::Publisher;
use crate::registry::Registry;
use crate::stats::{ms, Stages, Stats};
use crate::store::WindowStore;
use crate::tick::{Engine, SharedWorkers};
use crate::workers::Workers;

pub fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A predictor running in this process.
pub struct Running {
    pub stats: Stats,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    service_task: tokio::task::AbortHandle,
}

impl Running {
    /// Finishes the current message group, stores it, and returns the loop's result.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.context("predictor task")?
    }

    /// Drops the predictor where it stands, as a crash would (unacked messages are redelivered).
    pub fn abort(self) {
        self.task.abort();
        self.service_task.abort();
    }

    /// Waits for the loop to end on its own (an error).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("predictor task")?
    }
}

/// How long a graceful stop may take before the process gives up waiting for the broker.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs until `shutdown` resolves (then stops gracefully) or the loop fails.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let Running { shutdown: stop, mut task, .. } = start(config).await?;
    let ended = tokio::select! {
        _ = shutdown => None,
        r = &mut task => Some(r),
    };
    match ended {
        Some(r) => r.context("predictor task")?,
        None => {
            tracing::info!("shutting down: finishing the current messages");
            let _ = stop.send(true);
            // Bounded: with the broker gone the final flush would wait forever. Exiting is
            // safe, because what was not stored was not acked and JetStream redelivers it.
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
                Ok(r) => r.context("predictor task")?,
                Err(_) => {
                    tracing::warn!(grace = ?SHUTDOWN_GRACE, "shutdown did not finish in time (NATS unreachable?); exiting, unacked batches will be redelivered");
                    task.abort();
                    Ok(())
                }
            }
        }
    }
}

/// What every loop of this process shares: the connection, the model's workers, the streams,
/// the stats and `/metrics` counters.
pub(crate) struct Base {
    pub config: Config,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub workers: SharedWorkers,
    pub streams: crate::streams::Streams,
    pub stats: Stats,
    pub prom: crate::prom::Metrics,
    pub max_payload: usize,
}

/// Sets everything up and spawns the loop (or the partition supervisor).
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let client = fleetbus::connect("predictor", &config.nats_url).await?;
    let js = jetstream::new(client.clone());
    let (model_path, manifest_path, dylib) = (config.model.clone(), config.manifest_path(), config.ort_dylib.clone());
    let (workers, chunk, threads) = (config.workers(), config.chunk_size.max(1), config.intra_threads);
    let workers = tokio::task::spawn_blocking(move || Workers::load(&model_path, &manifest_path, &dylib, workers, chunk, threads))
        .await
        .context("model loader")??;
    let version = workers.manifest().version.clone();
    let streams = ensure_streams(&js, &config).await?;
    tracing::debug!("streams ready");
    let stats = Stats::default();
    stats.set_model(&version);
    let (service, service_task) = crate::service::start(&client, &config.service_name, stats.clone()).await?;
    let service_abort = service_task.abort_handle();
    tracing::debug!("stats service registered");
    let max_payload = config.max_payload.unwrap_or_else(|| client.server_info().max_payload).max(4096);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (prom, series, registry) = crate::prom::Metrics::new(&version);
    let mut metrics_stop = shutdown_rx.clone();
    // Stops with the loop's shutdown (or when the `Running` is dropped).
    let metrics = fleetbus::metrics::serve_if(&config.metrics, std::sync::Arc::new(registry), async move {
        let _ = metrics_stop.wait_for(|stop| *stop).await;
    })
    .await?;
    let workers = std::sync::Arc::new(std::sync::Mutex::new(workers));
    let base = Base { config, client: client.clone(), js, workers, streams, stats: stats.clone(), prom, max_payload };
    let task = if base.config.partitions > 1 {
        tracing::info!(partitions = base.config.partitions, instance = %base.config.instance_name(), model = %version, "predictor ready (partitioned)");
        tokio::spawn(async move {
            let _metrics = metrics;
            let result = crate::partitions::supervise(base, shutdown_rx).await;
            finish(service, service_task, client, result).await
        })
    } else {
        let (mut lp, messages) = open_loop(&base, None, Some(series), shutdown_rx).await?;
        tracing::info!(servers = lp.reg.len(), model = %version, "predictor ready");
        tokio::spawn(async move {
            let _metrics = metrics;
            let result = lp.run(messages).await;
            finish(service, service_task, client, result).await
        })
    };
    Ok(Running { stats, shutdown, task, service_task: service_abort })
}

/// How long the streams may take to answer at start: a cluster that just started elects its
/// JetStream leaders for a few seconds, and its API times out meanwhile.
const STREAMS_STARTUP: Duration = Duration::from_secs(60);

/// [`crate::streams::ensure`], tried again every second while JetStream is not answering yet.
async fn ensure_streams(js: &jetstream::Context, config: &Config) -> anyhow::Result<crate::streams::Streams> {
    let deadline = Instant::now() + STREAMS_STARTUP;
    loop {
        match crate::streams::ensure(js, config).await {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %format!("{e:#}"), "JetStream not ready; trying again in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.context(format!("JetStream did not answer within {STREAMS_STARTUP:?}"))),
        }
    }
}

async fn finish(
    service: async_nats::service::Service,
    service_task: tokio::task::JoinHandle<()>,
    client: async_nats::Client,
    result: anyhow::Result<()>,
) -> anyhow::Result<()> {
    service_task.abort();
    let _ = service.stop().await;
    let _ = client.flush().await;
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "predictor loop failed");
    }
    result
}

/// How long a partition consumer's pull request waits: short, so a pin is renewed well within
/// `member_ttl` and a takeover is not held up by a dead holder's outstanding request.
fn pull_expires(config: &Config, partition: Option<PartitionInfo>) -> Duration {
    match partition {
        Some(_) => (config.member_ttl / 2).clamp(Duration::from_secs(1), Duration::from_secs(30)),
        None => Duration::from_secs(30),
    }
}

/// A loop over the whole fleet (`partition` None) or over one partition: its windows rebuilt
/// from KV, its alert book and accuracy restored and caught up with the alert events published
/// after them (`resume.rs`), its snapshot numbers continued, and its consumer's pull stream
/// opened.
pub(crate) async fn open_loop(
    base: &Base,
    partition: Option<PartitionInfo>,
    series: Option<crate::prom_series::ServerFamilies>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(Loop, Messages)> {
    let config = &base.config;
    let manifest = base.workers.lock().unwrap_or_else(|p| p.into_inner()).manifest().clone();
    // The window keeps what the model reads and what the statistical methods read (a day and
    // the horizon), whichever is longer.
    let capacity = manifest.encoder_steps.max(crate::methods::HISTORY_STEPS);
    let store = WindowStore::open(&base.js, subjects::BUCKET_WINDOWS, capacity, config.kv_max_age).await?.for_partition(partition);
    let mut reg = Registry::tiered(capacity, manifest.encoder_steps);
    let clock = Instant::now();
    let restored = store.load(&mut reg, wall_ms()).await?;
    let part = partition.map(|p| p.index);
    tracing::info!(servers = restored, ?part, ms = ms(clock.elapsed()), "windows rebuilt from KV");
    // The snapshot numbers continue from the subject's last one, read at the loop's first tick
    // (`consume.rs`), not here: a partition's previous holder may still publish in between.
    let mut engine = Engine::shared(base.workers.clone(), config.recent_steps);
    engine.set_partition(partition);
    engine.keep_gauges(config.metrics.metrics_listen.is_some() && series.is_some());
    crate::resume::restore(&base.js, &base.streams.state, partition, &mut engine).await;
    crate::resume::restore_records(&base.streams.state, partition, &reg, &mut engine, wall_ms()).await;
    let (consumer, group) = match (partition, &base.streams.consumer) {
        (None, Some(c)) => (c.clone(), None),
        (None, None) => anyhow::bail!("no whole-fleet consumer on a partitioned predictor"),
        (Some(p), _) => {
            (crate::streams::partition_consumer(&base.js, &base.streams.metrics, config, p).await?, Some(crate::streams::PRIORITY_GROUP))
        }
    };
    let expires = pull_expires(config, partition);
    let messages = pull(&consumer, config.group_messages, base.max_payload, group, expires).await?;
    let lp = Loop {
        config: config.clone(),
        reg,
        store,
        engine,
        publisher: Publisher::new(base.client.clone(), base.js.clone()).for_partition(partition),
        stats: base.stats.clone(),
        partition: part,
        prom: base.prom.clone(),
        series,
        max_payload: base.max_payload,
        acc: Stages::default(),
        due_since: None,
        first_published_ms: None,
        consumer,
        group,
        expires,
        shutdown,
        seq_read: false,
    };
    Ok((lp, messages))
}
