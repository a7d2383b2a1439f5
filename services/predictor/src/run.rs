//! Starting and running the predictor: connect, create the streams, load the model, rebuild
//! the windows from KV, register the stats service, then loop. [`start`] returns a handle, so
//! tests and the benchmark run the predictor in-process and can stop it gracefully or abort
//! it like a crash; the binary calls [`run`].
//!
//! The loop takes messages in groups: apply each, publish its rejections, store the changed
//! windows, then ack the group (a crash before the ack means redelivery, and a redelivered
//! record for a closed step is ignored as late). When steps have closed and no message
//! follows within `coalesce` (the rest of a split tick arrives back to back), or a backlog has
//! kept the tick waiting `tick_max_delay`, the tick runs.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_nats::jetstream;
use futures::{FutureExt, StreamExt};
use schemas::subjects;
use tokio::sync::watch;

use crate::config::Config;
use crate::ingest::{ingest, Limits};
use crate::publish::Publisher;
use crate::registry::Registry;
use crate::stats::{ms, Stages, Stats, TickRecord};
use crate::store::WindowStore;
use crate::tick::Engine;
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

/// Sets everything up and spawns the loop.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let client = fleetbus::connect("predictor", &config.nats_url).await?;
    let js = jetstream::new(client.clone());
    let (model_path, manifest_path, dylib) = (config.model.clone(), config.manifest_path(), config.ort_dylib.clone());
    let (workers, chunk, threads) = (config.workers(), config.chunk_size.max(1), config.intra_threads);
    let workers = tokio::task::spawn_blocking(move || Workers::load(&model_path, &manifest_path, &dylib, workers, chunk, threads))
        .await
        .context("model loader")??;
    let streams = crate::streams::ensure(&js, &config).await?;
    tracing::debug!("streams ready");
    // The window keeps what the model reads and what the statistical methods read (a day and
    // the horizon), whichever is longer.
    let capacity = workers.manifest().encoder_steps.max(crate::methods::HISTORY_STEPS);
    let store = WindowStore::open(&js, subjects::BUCKET_WINDOWS, capacity, config.kv_max_age).await?;
    let mut reg = Registry::new(capacity);
    let clock = Instant::now();
    let restored = store.load(&mut reg, wall_ms()).await?;
    tracing::info!(servers = restored, ms = ms(clock.elapsed()), "windows rebuilt from KV");
    tracing::debug!("reading the last snapshot number");
    let last_seq = crate::publish::latest_snapshot(&js).await.ok().flatten().map_or(0, |s| s.seq);
    let stats = Stats::default();
    stats.set_model(&workers.manifest().version);
    let mut engine = Engine::new(workers, config.recent_steps, last_seq);
    engine.keep_gauges(config.metrics.metrics_listen.is_some());
    match streams.state.get(crate::streams::STATE_KEY).await {
        Ok(Some(bytes)) => match engine.restore_domain(&bytes) {
            Ok(()) => tracing::info!(bytes = bytes.len(), "alert book and accuracy restored"),
            Err(e) => tracing::warn!(error = %e, "ignoring unreadable saved state"),
        },
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "reading saved state"),
    }
    let (service, service_task) = crate::service::start(&client, &config.service_name, stats.clone()).await?;
    let service_abort = service_task.abort_handle();
    tracing::debug!("stats service registered");
    let messages = pull(&streams.consumer, config.group_messages).await?;
    let max_payload = config.max_payload.unwrap_or_else(|| client.server_info().max_payload).max(4096);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (prom, series, registry) = crate::prom::Metrics::new(&engine.manifest().version);
    let mut metrics_stop = shutdown_rx.clone();
    // Stops with the loop's shutdown (or when the `Running` is dropped).
    let _metrics = fleetbus::metrics::serve_if(&config.metrics, std::sync::Arc::new(registry), async move {
        let _ = metrics_stop.wait_for(|stop| *stop).await;
    })
    .await?;
    let mut lp = Loop {
        config,
        reg,
        store,
        engine,
        publisher: Publisher::new(client.clone(), js.clone()),
        stats: stats.clone(),
        prom,
        series,
        max_payload,
        acc: Stages::default(),
        due_since: None,
        first_published_ms: None,
        consumer: streams.consumer,
        shutdown: shutdown_rx,
    };
    tracing::info!(servers = lp.reg.len(), model = %lp.engine.manifest().version, "predictor ready");
    let task = tokio::spawn(async move {
        let result = lp.run(messages).await;
        service_task.abort();
        let _ = service.stop().await;
        let _ = client.flush().await;
        if let Err(e) = &result {
            tracing::error!(error = %format!("{e:#}"), "predictor loop failed");
        }
        result
    });
    Ok(Running { stats, shutdown, task, service_task: service_abort })
}

async fn pull(consumer: &jetstream::consumer::Consumer<jetstream::consumer::pull::Config>, group: usize) -> anyhow::Result<Messages> {
    consumer
        .stream()
        .max_messages_per_batch(group.max(1))
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .context("pulling from METRICS")
}

struct Loop {
    config: Config,
    reg: Registry,
    store: WindowStore,
    engine: Engine,
    publisher: Publisher,
    stats: Stats,
    /// `/metrics`: pipeline counters, and the per-server gauges refilled on every tick.
    prom: crate::prom::Metrics,
    series: crate::prom_series::ServerFamilies,
    max_payload: usize,
    /// Decode and KV time since the last tick.
    acc: Stages,
    due_since: Option<Instant>,
    /// JetStream publish time of the earliest batch that closed a step not yet ticked.
    first_published_ms: Option<i64>,
    consumer: jetstream::consumer::Consumer<jetstream::consumer::pull::Config>,
    shutdown: watch::Receiver<bool>,
}

type Messages = async_nats::jetstream::consumer::pull::Stream;

impl Loop {
    async fn run(&mut self, mut messages: Messages) -> anyhow::Result<()> {
        let mut shutdown = self.shutdown.clone();
        if self.reg.due_count() > 0 {
            self.tick().await;
        }
        let mut last_grace = Instant::now();
        loop {
            let wait = if self.reg.due_count() > 0 { self.config.coalesce } else { Duration::from_secs(1) };
            let first = tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                next = tokio::time::timeout(wait, messages.next()) => next,
            };
            match first {
                Ok(Some(Ok(msg))) => {
                    let mut group = vec![msg];
                    while group.len() < self.config.group_messages {
                        match messages.next().now_or_never() {
                            Some(Some(Ok(m))) => group.push(m),
                            _ => break,
                        }
                    }
                    if self.group(group).await? && self.reg.due_count() > 0 {
                        // The source said this was its tick's last part: no coalesce wait.
                        self.tick().await;
                    }
                }
                Ok(Some(Err(e))) => tracing::warn!(error = %e, "pulling from METRICS"),
                Ok(None) => {
                    tracing::warn!("the METRICS pull stream ended; pulling again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    match pull(&self.consumer, self.config.group_messages).await {
                        Ok(m) => messages = m,
                        Err(e) => tracing::warn!(error = %format!("{e:#}"), "pulling from METRICS"),
                    }
                }
                Err(_idle) => {
                    if self.reg.due_count() > 0 {
                        self.tick().await;
                    }
                }
            }
            if last_grace.elapsed() >= Duration::from_secs(1) {
                last_grace = Instant::now();
                let closed = self.reg.close_by_wall(wall_ms(), self.config.grace.as_millis() as i64);
                if closed > 0 {
                    tracing::debug!(closed, "steps closed by the wall clock");
                    self.flush().await?;
                }
            }
            if self.reg.due_count() > 0 {
                let since = *self.due_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.config.tick_max_delay {
                    self.tick().await;
                }
            }
        }
        Ok(())
    }

    /// Applies, stores and acks one group of messages. Returns whether the group drained the
    /// stream (it is not full) and ends with a part its source marked as its tick's last
    /// ([`subjects::PART_HEADER`]): then nothing is worth waiting for. A backlog keeps
    /// coalescing, because its groups come full.
    async fn group(&mut self, group: Vec<jetstream::Message>) -> anyhow::Result<bool> {
        let ends_tick = group.len() < self.config.group_messages
            && group
                .last()
                .and_then(|m| m.headers.as_ref())
                .and_then(|h| h.get(subjects::PART_HEADER))
                .is_some_and(|v| subjects::is_last_part(v.as_str()));
        let clock = Instant::now();
        let mut reports = Vec::with_capacity(group.len());
        for msg in &group {
            let limits = Limits { max_bytes: self.config.max_message_bytes, max_servers: self.config.max_servers };
            let report = ingest(&mut self.reg, msg.subject.as_str(), &msg.payload, limits, wall_ms());
            if report.closed > 0 && self.first_published_ms.is_none() {
                self.first_published_ms = msg.info().ok().map(|i| (i.published.unix_timestamp_nanos() / 1_000_000) as i64);
            }
            reports.push(report);
        }
        self.acc.decode_ms += ms(clock.elapsed());
        for r in &reports {
            self.stats.message(r);
            self.prom.message(r);
            if !r.rejected.is_empty() {
                for j in &r.rejected {
                    tracing::debug!(source = %j.source, index = ?j.index, error = %j.error, "rejected");
                }
                if let Err(e) = self.publisher.rejections(&r.rejected).await {
                    tracing::warn!(error = %e, "publishing rejections");
                }
            }
        }
        self.flush().await?;
        for msg in &group {
            if let Err(e) = msg.ack().await {
                tracing::warn!(error = %e, "ack failed (the message will be redelivered)");
            }
        }
        if self.reg.due_count() > 0 {
            self.due_since.get_or_insert_with(Instant::now);
        }
        Ok(ends_tick)
    }

    /// Stores the changed windows. While the broker is away (a retryable `store::WriteError`)
    /// it retries, acking nothing; a shutdown then gives up (unacked messages are redelivered).
    /// A refused write would be refused forever: counted, logged and skipped (memory is whole).
    async fn flush(&mut self) -> anyhow::Result<()> {
        if !self.reg.has_dirty() {
            return Ok(());
        }
        let clock = Instant::now();
        let writes = self.store.prepare(&mut self.reg);
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.store.write(&writes).await {
                Ok(flushed) => {
                    self.acc.kv_ms += ms(clock.elapsed());
                    self.stats.kv(flushed.keys, flushed.bytes);
                    return Ok(());
                }
                Err(e) if !e.is_retryable() => {
                    self.prom.kv_write_errors.inc();
                    tracing::error!(error = %e, keys = writes.len(), "storing windows refused; going on without storing them");
                    return Ok(());
                }
                Err(e) => {
                    self.prom.kv_write_errors.inc();
                    tracing::warn!(error = %e, retry_in = ?backoff, "storing windows failed");
                    if *self.shutdown.borrow() {
                        anyhow::bail!("shutting down with windows not stored: {e}");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn tick(&mut self) {
        let due = self.reg.take_due();
        self.due_since = None;
        let published_ms = self.first_published_ms.take();
        let wall = wall_ms();
        let (engine, reg, max_payload) = (&mut self.engine, &self.reg, self.max_payload);
        let computed = if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            tokio::task::block_in_place(|| engine.compute(reg, &due, wall, max_payload))
        } else {
            engine.compute(reg, &due, wall, max_payload)
        };
        let out = match computed {
            Ok(out) => out,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), servers = due.len(), "tick failed");
                return;
            }
        };
        let clock = Instant::now();
        let bytes = match self.publisher.tick(&self.engine, &out).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), seq = out.seq, "publishing the tick failed");
                0
            }
        };
        let mut stages = std::mem::take(&mut self.acc);
        stages.add(&out.stages);
        stages.publish_ms += ms(clock.elapsed());
        let record = TickRecord {
            seq: out.seq,
            stages,
            servers: out.forecast_count,
            parts: out.plan.count(),
            bytes,
            latency_ms: published_ms.map(|p| (wall_ms() - p) as f64),
        };
        self.stats.tick(&record);
        let warming = self.engine.warming();
        self.stats.windows(self.reg.len(), warming);
        self.prom.tick(&record, self.reg.len(), warming);
        self.fill_series(&out.order);
        tracing::debug!(seq = out.seq, forecast = out.forecast_count, warming = out.warming_count, parts = out.plan.count(), "tick");
        drop(out);
        release_memory();
    }

    /// Replaces the per-server `/metrics` gauges with the servers of the snapshot (`order`).
    fn fill_series(&mut self, order: &[u32]) {
        if self.config.metrics.metrics_listen.is_none() {
            return;
        }
        let (reg, engine) = (&self.reg, &self.engine);
        let rows = order.iter().filter_map(|&id| {
            let (w, o) = (reg.server(id), engine.out(id)?);
            Some(crate::prom_series::ServerRow {
                name: &w.name,
                profile: w.profile,
                risk: o.assessment.risk,
                level: o.assessment.level,
                gauges: &o.gauges,
            })
        });
        self.series.fill(&self.config.series(), rows);
    }
}

/// A large tick allocates and frees hundreds of MB (outputs, encodings, parts); glibc keeps
/// freed memory in its arenas unless asked, so resident memory would stay at the peak.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_memory() {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: malloc_trim only hands free heap pages back to the kernel; no preconditions.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_memory() {}
