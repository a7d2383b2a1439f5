//! Shared by the predictor's integration tests: the tiny model, a predictor running in-process
//! against a real nats-server, batches built from schemas types, and snapshot collection.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use predictor::Config;
use schemas::{MetricRecord, Metrics, MetricsBatch, Profile, Snapshot, SnapshotAssembler, STEP_MS};

pub const SOURCE: &str = "test";

/// A step-aligned start a few hours ago, so the stream clock accepts it.
pub fn t0() -> i64 {
    let now = predictor::run::wall_ms() - 6 * 3_600_000;
    now - now.rem_euclid(STEP_MS)
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Logs of the predictor under test, shown with `RUST_LOG=predictor=debug` and `--no-capture`.
pub fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

pub fn config(url: &str) -> Config {
    logs();
    let mut c = Config::new(url, fixture("tiny.onnx"));
    c.ort_dylib = testkit::ort_dylib();
    c.intra_threads = 1;
    c.chunk_size = 16;
    c.coalesce = Duration::from_millis(20);
    c
}

pub fn server_names(n: usize) -> Vec<String> {
    testkit::server_names(n, 4)
}

/// Plausible metrics of server `i` at step `s` (deterministic, within every range).
pub fn metrics(i: usize, s: i64) -> Metrics {
    let wave = ((s as f32) * 0.3 + i as f32).sin();
    let busy = 20.0 + 10.0 * wave + (i % 5) as f32 * 5.0;
    Metrics {
        cpu_user_pct: Some(busy * 0.7),
        cpu_sys_pct: Some(busy * 0.2),
        cpu_iowait_pct: Some(busy * 0.1),
        cpu_idle_pct: Some(100.0 - busy),
        java_cpu_pct: Some(busy * 0.5),
        mem_used_pct: Some(40.0 + 20.0 * wave.abs()),
        swap_used_pct: Some(2.0),
        disk_usage_pct: Some(50.0 + (i % 30) as f32),
        net_in_mb_s: Some(10.0 + 5.0 * wave.abs()),
        net_out_mb_s: Some(8.0),
        back_close_wait: Some(1.0),
        front_close_wait: Some(0.0),
        load_average: Some(1.5 + wave.abs()),
        uptime_days: Some(30.0),
    }
}

/// The forecast-quality issue's base record: user 20, sys 5, iowait 2, idle 73, mem 45, swap 0,
/// disk 50, net in 5 / out 3 MB/s, CLOSE_WAIT 1/1, load 1.5, uptime 30 days.
pub fn base_record() -> Metrics {
    Metrics {
        cpu_user_pct: Some(20.0),
        cpu_sys_pct: Some(5.0),
        cpu_iowait_pct: Some(2.0),
        cpu_idle_pct: Some(73.0),
        java_cpu_pct: None,
        mem_used_pct: Some(45.0),
        swap_used_pct: Some(0.0),
        disk_usage_pct: Some(50.0),
        net_in_mb_s: Some(5.0),
        net_out_mb_s: Some(3.0),
        back_close_wait: Some(1.0),
        front_close_wait: Some(1.0),
        load_average: Some(1.5),
        uptime_days: Some(30.0),
    }
}

/// The generator's way: one record per server stamped at the step start, `clock_ms` = its end.
pub fn step_batch(names: &[String], step_start: i64, seq: u64) -> MetricsBatch {
    let s = step_start / STEP_MS;
    let records = names
        .iter()
        .enumerate()
        .map(|(i, n)| MetricRecord { server: n.clone(), ts_ms: step_start, profile: None, metrics: metrics(i, s) })
        .collect();
    MetricsBatch::new(SOURCE, seq, step_start + STEP_MS, records)
}

pub async fn publish_batch(js: &jetstream::Context, batch: &MetricsBatch) {
    publish_part(js, batch, None).await;
}

/// Publishes `batch` as part `(index, count)` of its tick (the `Fleetcast-Part` header), or
/// without the header.
pub async fn publish_part(js: &jetstream::Context, batch: &MetricsBatch, part: Option<(usize, usize)>) {
    let mut headers = async_nats::HeaderMap::new();
    if let Some((index, count)) = part {
        headers.insert(schemas::subjects::PART_HEADER, schemas::subjects::part_header(index, count).as_str());
    }
    let payload = schemas::encode(batch).expect("encode");
    js.publish_with_headers(schemas::subjects::metrics_batch(SOURCE), headers, payload.into())
        .await
        .expect("publish")
        .await
        .expect("stored in METRICS");
}

pub async fn publish_raw(js: &jetstream::Context, payload: Vec<u8>) {
    js.publish(schemas::subjects::metrics_batch(SOURCE), payload.into()).await.expect("publish").await.expect("stored in METRICS");
}

/// Whole snapshots from `predictions.current`.
pub struct Snapshots {
    sub: async_nats::Subscriber,
    asm: SnapshotAssembler,
}

impl Snapshots {
    pub async fn subscribe(client: &async_nats::Client) -> Snapshots {
        let sub = client.subscribe(schemas::subjects::PREDICTIONS_CURRENT).await.expect("subscribe");
        Snapshots { sub, asm: SnapshotAssembler::default() }
    }

    /// The next whole snapshot, or `None` after `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Snapshot> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.sub.next()).await.ok()??;
            let part: Snapshot = schemas::decode(&msg.payload).expect("a snapshot part decodes");
            if let Some(whole) = self.asm.push(part) {
                return Some(whole);
            }
        }
    }

    /// Waits for a snapshot satisfying `pred`.
    pub async fn until(&mut self, within: Duration, pred: impl Fn(&Snapshot) -> bool) -> Snapshot {
        let deadline = tokio::time::Instant::now() + within;
        let mut last_seq = None;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(s) if pred(&s) => return s,
                Some(s) => last_seq = Some((s.seq, s.tick_ms, s.servers.len())),
                None => panic!("no matching snapshot within {within:?}; last seen (seq, tick_ms, servers) = {last_seq:?}"),
            }
        }
    }
}

/// The predictor's stats as its service endpoint reports them.
pub async fn stats(client: &async_nats::Client) -> serde_json::Value {
    let reply = client.request(predictor::service::stats_subject("predictor"), "".into()).await.expect("stats request");
    serde_json::from_slice(&reply.payload).expect("stats JSON")
}

pub fn profile_of(name: &str) -> Profile {
    Profile::detect(name)
}

/// The tick engine alone (no NATS) on the shipped model, one worker, and a registry whose
/// windows hold what the model and the statistical methods read.
pub fn engine_alone() -> (predictor::tick::Engine, predictor::registry::Registry) {
    let model = testkit::workspace_root().join("models/tft.onnx");
    let workers =
        predictor::workers::Workers::load(&model, &model.with_extension("json"), &testkit::ort_dylib(), 1, 64, 1).expect("model loads");
    let engine = predictor::tick::Engine::new(workers, 12);
    let reg = predictor::registry::Registry::new(engine.manifest().encoder_steps.max(predictor::methods::HISTORY_STEPS));
    (engine, reg)
}
