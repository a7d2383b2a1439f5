//! The loop of one fleet, or of one partition of it: take messages in groups, apply each,
//! publish its rejections, store the changed windows, then ack the group (a crash before the
//! ack means redelivery, and a redelivered record for a closed step is ignored as late). When
//! steps have closed and no message follows within `coalesce` (the rest of a split tick
//! arrives back to back), or a backlog has kept the tick waiting `tick_max_delay`, the tick
//! runs. A partitioned predictor runs one of these per partition it holds (`partitions/`).

use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::{FutureExt, StreamExt};
use schemas::subjects;
use tokio::sync::watch;

use crate::config::Config;
use crate::ingest::{ingest, Limits};
use crate::publish::Publisher;
use crate::registry::Registry;
use crate::run::wall_ms;
use crate::stats::{ms, Stages, Stats, TickRecord};
use crate::store::WindowStore;
use crate::tick::Engine;

pub(crate) type Consumer = jetstream::consumer::Consumer<jetstream::consumer::pull::Config>;
pub(crate) type Messages = async_nats::jetstream::consumer::pull::Stream;

/// Most bytes one pull request asks for. nats-server drops a client whose undelivered bytes
/// pass its `max_pending` (64 MiB) as a slow consumer; a pull of 256 batches of 1,000 records
/// (about 110 KB each, 28 MB), refilled at half, plus a tick's KV acks did that during a
/// 100,000-server backlog while the predictor computed a tick, and the lost deliveries came
/// again only after `ack_wait`. 8 MiB per pull keeps what is in flight far below the limit
/// (a pull must still fit the largest message: at least twice the max payload is asked).
pub const PULL_MAX_BYTES: usize = 8 << 20;

/// Opens the pull stream; `group` is the priority group of a partition consumer;
/// `max_payload`: the broker's, bytes.
pub(crate) async fn pull(
    consumer: &Consumer,
    group_messages: usize,
    max_payload: usize,
    group: Option<&str>,
    expires: Duration,
) -> anyhow::Result<Messages> {
    let stream = consumer
        .stream()
        .max_messages_per_batch(group_messages.max(1))
        .max_bytes_per_batch(PULL_MAX_BYTES.max(2 * max_payload))
        .heartbeat(Duration::from_secs(5).min(expires / 2))
        .expires(expires);
    let stream = match group {
        Some(g) => stream.group(g),
        None => stream,
    };
    anyhow::Context::context(stream.messages().await, "pulling from METRICS")
}

pub(crate) struct Loop {
    pub config: Config,
    pub reg: Registry,
    pub store: WindowStore,
    pub engine: Engine,
    pub publisher: Publisher,
    pub stats: Stats,
    /// The partition this loop holds (its figures are kept apart in the stats); `None`: the whole fleet.
    pub partition: Option<u16>,
    /// `/metrics`: pipeline counters, and the per-server gauges refilled on every tick.
    pub prom: crate::prom::Metrics,
    /// The per-server gauges; `None` on a partition's loop (they would hold only its servers).
    pub series: Option<crate::prom_series::ServerFamilies>,
    pub max_payload: usize,
    /// Decode and KV time since the last tick.
    pub acc: Stages,
    pub due_since: Option<Instant>,
    /// JetStream publish time of the earliest batch that closed a step not yet ticked.
    pub first_published_ms: Option<i64>,
    pub consumer: Consumer,
    /// The priority group pulled in (partition consumers) and the pull requests' expiry.
    pub group: Option<&'static str>,
    pub expires: Duration,
    pub shutdown: watch::Receiver<bool>,
    /// Whether the subject's last snapshot number was read since the loop opened (on its first
    /// tick: see [`Loop::tick`]).
    pub seq_read: bool,
}

impl Loop {
    pub(crate) async fn run(&mut self, mut messages: Messages) -> anyhow::Result<()> {
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
                    match pull(&self.consumer, self.config.group_messages, self.max_payload, self.group, self.expires).await {
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
        // A graceful stop (a rolling restart, a partition handed over) saves every server's
        // method record as of the last tick; a tick saves a twelfth of them.
        let slices = self.engine.record_slices(&self.reg);
        if let Err(e) = self.publisher.save_records(&slices, self.engine.seq(), self.max_payload).await {
            tracing::warn!(error = %e, "saving the method records at the stop failed; the per-tick slices stand");
        } else if !slices.is_empty() {
            tracing::info!(slices = slices.len(), "method records saved at the stop");
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
        // The snapshot numbers continue from the subject's last one, read here rather than when
        // the loop opened: a partition's previous holder, stopping, can still publish its last
        // tick after the new one opened (the pinned consumer serves the new holder only once the
        // old has let go, which is before this first tick), and a number read earlier repeated.
        if !self.seq_read {
            self.seq_read = true;
            let last = self.publisher.last_snapshot_seq().await;
            tracing::debug!(last, partition = ?self.partition, "snapshot numbers continue from the subject's last");
            self.engine.continue_after(last);
        }
        let due = self.reg.take_due();
        self.due_since = None;
        let published_ms = self.first_published_ms.take();
        let wall = wall_ms();
        let (engine, reg, max_payload) = (&mut self.engine, &self.reg, self.max_payload);
        // The servers' KV entries are encoded and written while the tick computes (a task on
        // the runtime's other thread), so they are never all held at once; the queue between
        // them is bounded where the tick may block (`publish::FORECAST_QUEUE`).
        let blocking = tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread;
        let writer = self.publisher.forecast_writer(blocking.then_some(crate::publish::FORECAST_QUEUE));
        let mut kv = |entry: schemas::ServerForecast| writer.put(entry);
        let computed = if blocking {
            tokio::task::block_in_place(|| engine.compute_streaming(reg, &due, wall, max_payload, &mut kv))
        } else {
            engine.compute_streaming(reg, &due, wall, max_payload, &mut kv)
        };
        let out = match computed {
            Ok(out) => out,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), servers = due.len(), "tick failed");
                return;
            }
        };
        let clock = Instant::now();
        let bytes = match self.publisher.tick(&self.engine, &out, Some(writer), self.max_payload).await {
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
            partition: self.partition,
            windows: self.reg.len(),
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
        let Some(series) = self.series.as_mut() else {
            return;
        };
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
        series.fill(&self.config.series(), rows);
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
