//! Predictor tick latency on a single nats-server (R1) beside a 3-node cluster (R3), same
//! fleet, same run: the release `predictor` binary, batches published as the generator does
//! (parts of 1,000 records), latency from a step's first publish to its tick summary on
//! `history.tick` (the method of `services/predictor/benches/bench_tick.rs`), plus the
//! predictor's own per-stage timings of the last tick (KV and publish are where replication
//! shows). Prints a table; writes nothing.
//!
//!     cargo build --release --workspace --all-targets
//!     target/release/examples/cluster_tick [SERVERS=10000] [TICKS=5]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use schemas::history::TickSummary;
use schemas::{MetricRecord, Metrics, MetricsBatch, STEP_MS};

fn names(n: usize) -> Vec<String> {
    testkit::server_names(n, 5)
}

fn metrics(i: usize, s: i64) -> Metrics {
    let wave = ((s as f32) * 0.2 + i as f32 * 0.37).sin();
    let busy = 25.0 + 15.0 * wave + (i % 5) as f32 * 4.0;
    Metrics {
        cpu_user_pct: Some(busy * 0.7),
        cpu_sys_pct: Some(busy * 0.2),
        cpu_iowait_pct: Some(busy * 0.1),
        cpu_idle_pct: Some(100.0 - busy),
        java_cpu_pct: Some(busy * 0.4),
        mem_used_pct: Some(45.0 + 25.0 * wave.abs()),
        swap_used_pct: Some(3.0),
        disk_usage_pct: Some(40.0 + (i % 40) as f32),
        net_in_mb_s: Some(20.0 + 10.0 * wave.abs()),
        net_out_mb_s: Some(12.0),
        back_close_wait: Some(2.0),
        front_close_wait: Some(1.0),
        load_average: Some(2.0 + 2.0 * wave.abs()),
        uptime_days: Some(40.0),
    }
}

/// One step of the fleet: parts of at most 1,000 records, each with its `Fleetcast-Part` header.
async fn publish_step(js: &jetstream::Context, names: &[String], step: i64) -> anyhow::Result<()> {
    let start = step * STEP_MS;
    let mut acks = Vec::new();
    let parts = names.len().div_ceil(1000);
    for (p, part) in names.chunks(1000).enumerate() {
        let records = part
            .iter()
            .enumerate()
            .map(|(k, n)| MetricRecord { server: n.clone(), ts_ms: start, profile: None, metrics: metrics(p * 1000 + k, step) })
            .collect();
        let batch = MetricsBatch::new("bench", step as u64, start + STEP_MS, records);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(schemas::subjects::PART_HEADER, schemas::subjects::part_header(p, parts).as_str());
        acks.push(js.publish_with_headers("metrics.batch.bench", headers, schemas::encode(&batch)?.into()).await?);
    }
    for a in acks {
        a.await?;
    }
    Ok(())
}

async fn wait_tick(summaries: &mut async_nats::Subscriber, n: usize, step: i64) -> anyhow::Result<TickSummary> {
    let want = step * STEP_MS;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(300), summaries.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("summary subscription closed"))?;
        let s: TickSummary = schemas::decode(&msg.payload)?;
        if s.tick_ms >= want && s.servers.len() == n {
            return Ok(s);
        }
    }
}

/// The release `predictor` beside this example (`target/release/examples/..`).
fn predictor_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().and_then(|d| d.parent()).map(|d| d.join("predictor")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| testkit::workspace_root().join("target/release/predictor"))
}

struct Result {
    latency: Vec<f64>,
    last: serde_json::Value,
    warmup_s: f64,
}

async fn run(label: &str, url: &str, replicas: u8, n: usize, ticks: usize) -> anyhow::Result<Result> {
    let dir = tempfile::tempdir()?;
    let log_path = dir.path().join("predictor.log");
    let log = std::fs::File::create(&log_path)?;
    let mut child: Child = Command::new(predictor_bin())
        .args(["--nats-url", url, "--replicas", &replicas.to_string()])
        .current_dir(testkit::workspace_root())
        .env("ORT_DYLIB_PATH", testkit::ort_dylib())
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()?;
    let result = drive(url, n, ticks).await;
    let _ = child.kill();
    let _ = child.wait();
    if result.is_err() {
        eprintln!("{label}: predictor log:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default());
    }
    result
}

async fn drive(url: &str, n: usize, ticks: usize) -> anyhow::Result<Result> {
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client.clone());
    let mut summaries = client.subscribe("history.tick").await?;
    let stats = "$SRV.predictor.stats";
    let deadline = Instant::now() + Duration::from_secs(120);
    while client.request(stats, "".into()).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the predictor did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(testkit::workspace_root().join("models/tft.json"))?)?;
    let min_history = manifest["min_history_steps"].as_i64().unwrap_or(12);
    let fleet = names(n);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let first = now / STEP_MS - 48 - min_history - ticks as i64;
    let warm = min_history + 1;
    let clock = Instant::now();
    for s in first..first + warm {
        publish_step(&js, &fleet, s).await?;
    }
    loop {
        let s = wait_tick(&mut summaries, n, first + warm - 1).await?;
        if s.fleet.ready as usize == n {
            break;
        }
        anyhow::ensure!(clock.elapsed() < Duration::from_secs(900), "after warm-up {} of {n} ready", s.fleet.ready);
    }
    let warmup_s = clock.elapsed().as_secs_f64();
    let mut latency = Vec::new();
    let mut last = serde_json::Value::Null;
    for k in 0..ticks {
        let step = first + warm + k as i64;
        let t = Instant::now();
        publish_step(&js, &fleet, step).await?;
        let s = wait_tick(&mut summaries, n, step).await?;
        latency.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(s.fleet.ready as usize == n, "tick {k}: {} of {n} forecast", s.fleet.ready);
        let reply = client.request(stats, "".into()).await?;
        let st: serde_json::Value = serde_json::from_slice(&reply.payload)?;
        last = st["last_tick"].clone();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(Result { latency, last, warmup_s })
}

fn row(label: &str, r: &Result) {
    let mut v = r.latency.clone();
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    let f = |k: &str| r.last[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "| {label} | {} | {:.0} / {:.0} / {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} |",
        v.len(),
        p(0.5),
        p(0.95),
        v.last().copied().unwrap_or(f64::NAN),
        f("kv_ms"),
        f("inference_ms"),
        f("encode_ms"),
        f("publish_ms"),
        r.warmup_s
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10_000);
    let ticks: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    println!("# predictor tick latency, {n} servers: single nats-server (R1) vs 3-node cluster (R3)");
    println!("| broker | ticks | latency p50 / p95 / max (ms) | KV ms | inference ms | encode ms | publish ms | warm-up s |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    {
        let single = testkit::NatsServer::start_with_config("max_payload: 8MB\n", &[])?;
        let r = run("single", &single.url(), 1, n, ticks).await?;
        row("single node, R1", &r);
    }
    {
        let cluster = testkit::NatsCluster::start_with_config(3, "max_payload: 8MB\n", &[])?;
        let r = run("cluster", &cluster.url(0), 3, n, ticks).await?;
        row("3-node cluster, R3", &r);
    }
    Ok(())
}
