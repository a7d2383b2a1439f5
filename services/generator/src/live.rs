//! Live mode: connect, start the control service, backfill `backfill_steps` steps as fast as
//! the stream acknowledges them, then stream one step per `tick` until shutdown.
//!
//! The simulated clock starts at a step boundary `backfill_steps` steps before now, so the
//! backfill ends just before the present and forecasts are possible at once; after that the
//! clock advances one 5-minute step per tick (`--tick 5m` is real time). A restarted generator
//! without `--start` resumes after its source's last batch in the stream instead (`resume.rs`),
//! backfilling only the steps between that and now, if any.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use fleetbus::publish::{PublishError, Publisher};
use schemas::{Scenario, STEP_MS};
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn, Instrument};

use crate::control;
use crate::fleet_sim::{align, SimConfig, Simulator};
use crate::resume;
use crate::shutdown::Shutdown;

#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub nats_url: String,
    pub servers: usize,
    pub seed: u64,
    /// Wall time per simulated step; zero runs as fast as the stream acknowledges.
    pub tick: Duration,
    pub backfill_steps: u64,
    /// Last token of the subject, `metrics.batch.<source>`.
    pub source: String,
    /// Partitions of the fleet (1: unpartitioned, `metrics.batch.<source>`; more: one batch
    /// per partition on `metrics.batch.<source>.<partition>`; see `Publisher::with_partitions`).
    pub partitions: u16,
    /// Scenario to switch to once the backfill is done.
    pub scenario: Option<Scenario>,
    /// Start of the first step; default: `backfill_steps` steps before now.
    pub start_ms: Option<i64>,
    /// Stop after this many steps in all (backfill included).
    pub max_steps: Option<u64>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveSummary {
    pub steps: u64,
    pub records: u64,
    pub messages: u64,
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A source name must be one subject token.
pub fn check_source(source: &str) -> anyhow::Result<()> {
    if source.is_empty() || !source.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        bail!("source {source:?}: must be 1 or more of [A-Za-z0-9_-] (it is the last token of metrics.batch.<source>)");
    }
    Ok(())
}

/// Runs until `shutdown` fires or `max_steps` steps are published.
pub async fn run(opts: LiveOptions, shutdown: Shutdown) -> anyhow::Result<LiveSummary> {
    run_counted(opts, shutdown, crate::metrics::Metrics::default()).await
}

/// [`run`], counting ticks, publishes and errors in `metrics` (`/metrics`).
pub async fn run_counted(opts: LiveOptions, mut shutdown: Shutdown, metrics: crate::metrics::Metrics) -> anyhow::Result<LiveSummary> {
    check_source(&opts.source)?;
    let fresh_start = align(now_ms()) - opts.backfill_steps as i64 * STEP_MS;
    // A bad fleet size fails before connecting; the simulator is built once its start is known.
    crate::fleet::composition(opts.servers)?;
    // fleetbus takes the credentials from the URL (async-nats ignores them there) and retries.
    let client = fleetbus::connect(&format!("fleetcast-generator-{}", opts.source), &opts.nats_url).await?;
    if !wait_connected(&client, &opts.nats_url, &mut shutdown).await {
        return Ok(LiveSummary::default());
    }
    let run_id = format!("{:x}-{:x}", now_ms(), std::process::id());
    let mut publisher = Publisher::new(client.clone(), &opts.source, run_id).with_partitions(opts.partitions);
    let (start_ms, backfill_steps) = match opts.start_ms {
        Some(start) => (start, opts.backfill_steps),
        None => match resume::last_clock(&client, publisher.subjects()).await {
            Some(clock) if clock > fresh_start => {
                let start = align(clock);
                let behind = u64::try_from((align(now_ms()) - start) / STEP_MS).unwrap_or(0);
                info!(resume_from = %fmt_ms(start), "resuming after this source's last batch in the METRICS stream");
                (start, behind.min(opts.backfill_steps))
            }
            _ => (fresh_start, opts.backfill_steps),
        },
    };
    let sim = Arc::new(Mutex::new(Simulator::new(SimConfig { servers: opts.servers, seed: opts.seed, start_ms })?));
    let control = control::start(&client, sim.clone()).await?;
    info!(
        servers = opts.servers,
        seed = opts.seed,
        subject = publisher.subject(),
        partitions = publisher.partitions(),
        max_message = publisher.limit(),
        "backfilling {} steps from {}",
        backfill_steps,
        fmt_ms(start_ms)
    );

    let mut summary = LiveSummary::default();
    let limit = opts.max_steps.unwrap_or(u64::MAX);
    let result = async {
        while summary.steps < backfill_steps.min(limit) && !shutdown.is_set() {
            one_step(&sim, &opts.source, &mut publisher, &mut shutdown, &mut summary, &metrics).await?;
        }
        if shutdown.is_set() || summary.steps >= limit {
            return Ok(());
        }
        info!(
            steps = summary.steps,
            records = summary.records,
            tick = %humantime::format_duration(opts.tick),
            "generator ready: backfill done, streaming one 5-minute step per tick; scenario control on {}",
            schemas::subjects::CONTROL_SCENARIO_SET
        );
        if let Some(s) = opts.scenario {
            let switch = lock(&sim).set_scenario(s);
            info!(scenario = s.name(), affected = switch.current.affected.len(), "initial scenario set");
        }
        let mut interval = tokio::time::interval(opts.tick.max(Duration::from_millis(1)));
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        while summary.steps < limit {
            if opts.tick.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = shutdown.wait() => break,
                }
            }
            if shutdown.is_set() {
                break;
            }
            one_step(&sim, &opts.source, &mut publisher, &mut shutdown, &mut summary, &metrics).await?;
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    control.stop().await;
    if let Err(e) = client.flush().await {
        warn!("flushing the NATS connection: {e}");
    }
    info!(steps = summary.steps, records = summary.records, messages = summary.messages, "generator stopped");
    result.map(|()| summary)
}

/// Waits for the first connection (the client retries it), so the first tick is cut to the
/// server's real max_payload. False when shutdown comes first.
async fn wait_connected(client: &async_nats::Client, url: &str, shutdown: &mut Shutdown) -> bool {
    let t0 = std::time::Instant::now();
    let mut warned = false;
    while client.connection_state() != async_nats::connection::State::Connected {
        if !warned && t0.elapsed() > Duration::from_secs(2) {
            warn!("waiting for NATS at {}", fleetbus::redact(url));
            warned = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = shutdown.wait() => return false,
        }
    }
    true
}

fn lock(sim: &Mutex<Simulator>) -> std::sync::MutexGuard<'_, Simulator> {
    sim.lock().unwrap_or_else(|p| p.into_inner())
}

/// Simulates and publishes one step. A tick that can never be sent (a record larger than
/// any message) is logged and skipped; shutdown during retries ends the run.
async fn one_step(
    sim: &Mutex<Simulator>,
    source: &str,
    publisher: &mut Publisher,
    shutdown: &mut Shutdown,
    summary: &mut LiveSummary,
    metrics: &crate::metrics::Metrics,
) -> anyhow::Result<()> {
    let (seq, clock_ms, records) = {
        let mut s = lock(sim);
        let step = s.step();
        // Every step ending at or before clock_ms is complete, so the predictor closes it.
        (step.index, step.ts_ms + STEP_MS, step.records())
    };
    let n = records.len() as u64;
    // One span per published batch, with what an operator filters on; the events below are in it.
    let span = tracing::info_span!("batch", source, seq, records = n);
    let published = publisher.publish(seq, clock_ms, records, shutdown.wait()).instrument(span.clone()).await;
    let _in_batch = span.enter();
    match published {
        Ok(r) => {
            summary.records += n;
            summary.messages += r.parts as u64;
            metrics.records.inc_by(n);
            metrics.batches.inc_by(r.parts as u64);
            debug!(seq, records = n, parts = r.parts, bytes = r.bytes, publish_ms = r.publish.as_secs_f64() * 1e3, "tick published");
            if seq % 12 == 11 {
                info!(seq, ts = %fmt_ms(clock_ms - STEP_MS), records = n, parts = r.parts, "published through simulated {}", fmt_ms(clock_ms));
            }
        }
        Err(PublishError::Aborted { .. }) => return Ok(()),
        Err(e) => {
            metrics.publish_errors.inc();
            warn!(seq, "tick skipped: {e}")
        }
    }
    metrics.ticks.inc();
    summary.steps += 1;
    Ok(())
}

/// RFC 3339 rendering of Unix ms, for logs.
pub fn fmt_ms(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
