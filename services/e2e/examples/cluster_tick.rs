//! Predictor tick latency and cost when the fleet is split: one predictor holding the whole
//! fleet on a single nats-server (R1) beside two predictors sharing `--partitions P` on a
//! 3-node cluster (R3), and, to tell the cluster's cost from partitioning's, the same two on
//! the single node. Same fleet, same run. `just bench` writes its tables into BENCHMARKS.md,
//! and `deploy/bench/million.py` reads its `RESULT` line for the 1,000,000-server arithmetic.
//!
//! The release `predictor` binary as processes; batches published as the generator does
//! (`testkit::bench_fleet`: parts of 1,000 records, per partition with partitions). Measured
//! per step: the whole fleet's latency (first batch part published -> the last partition's
//! tick summary on `history.tick`) and each partition's (-> its own summary); each
//! predictor's per-stage timings of every partition's tick (its `$SRV.<name>.stats`,
//! `partitions`); CPU seconds of the predictors and the nats-servers over the measured ticks
//! (`/proc`), their resident memory; and what the tick wrote into each stream.
//!
//!     cargo build --release --workspace --all-targets
//!     target/release/examples/cluster_tick [SERVERS=10000] [TICKS=5] [--partitions 8]
//!         [--single-partitioned false]
//!
//! Two predictors share this machine's cores (each runs cores/2 inference workers, so the
//! layouts run as many workers in all); on separate machines each would have its own.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream;
use clap::Parser;
use serde_json::{json, Value};
use testkit::bench_fleet::{cpu_s, pct, rss_mb, BenchFleet};

#[derive(Parser)]
struct Args {
    /// Servers in the fleet.
    #[arg(default_value_t = 10_000)]
    servers: usize,
    /// Measured ticks per layout.
    #[arg(default_value_t = 5)]
    ticks: usize,
    /// Partitions the two predictors share. 8: what `just up-cluster` runs, 4 for each of two
    /// predictors (the assignment's bound makes the split exact), about 1,250 servers apiece at
    /// 10,000, so a partition's fixed costs (its snapshot header, saved state, KV round trips)
    /// do not drown its per-server cost, while a hand-over still moves an eighth of the fleet.
    #[arg(long, default_value_t = 8)]
    partitions: u16,
    /// Also run the two partitioned predictors on the single node.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    single_partitioned: bool,
    /// Pause between measured ticks.
    #[arg(long, default_value_t = 500)]
    gap_ms: u64,
}

/// Streams whose growth per tick is reported: limits retention (every message kept during
/// the run, so their bytes grow by what was written) and KV buckets (history 1: a rewritten
/// key replaces its value, so what was written is messages x stored bytes per message).
const STREAMS: [(&str, &str); 6] = [
    ("METRICS", "METRICS"),
    ("KV_windows", "KV windows"),
    ("KV_forecasts", "KV forecasts"),
    ("PREDICTIONS", "snapshots (PREDICTIONS)"),
    ("HISTORY", "HISTORY"),
    ("KV_state", "KV state"),
];

/// How the fleet is served in one run.
#[derive(Clone, Copy)]
struct Layout {
    label: &'static str,
    /// nats-servers (1, or a cluster of 3); streams and buckets have as many replicas.
    nodes: usize,
    predictors: usize,
    /// 1: unpartitioned.
    partitions: u16,
}

enum Broker {
    Single(testkit::NatsServer),
    Cluster(testkit::NatsCluster),
}

impl Broker {
    fn start(nodes: usize) -> anyhow::Result<Broker> {
        let conf = "max_payload: 8MB\n";
        Ok(if nodes == 1 {
            Broker::Single(testkit::NatsServer::start_with_config(conf, &[])?)
        } else {
            Broker::Cluster(testkit::NatsCluster::start_with_config(nodes, conf, &[])?)
        })
    }

    /// Node `i`'s URL (modulo the nodes).
    fn url(&self, i: usize) -> String {
        match self {
            Broker::Single(s) => s.url(),
            Broker::Cluster(c) => c.url(i % c.len()),
        }
    }

    fn last(&self) -> usize {
        match self {
            Broker::Single(_) => 0,
            Broker::Cluster(c) => c.len() - 1,
        }
    }

    fn pids(&self) -> Vec<u32> {
        match self {
            Broker::Single(s) => vec![s.pid()],
            Broker::Cluster(c) => (0..c.len()).filter_map(|i| c.pid(i)).collect(),
        }
    }
}

/// The predictors of a layout, killed on drop.
struct Predictors {
    children: Vec<Child>,
    logs: Vec<std::path::PathBuf>,
    /// Holds the logs.
    dir: tempfile::TempDir,
}

impl Drop for Predictors {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The release `predictor` beside this example (`target/release/examples/..`).
fn predictor_bin() -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().and_then(|d| d.parent()).map(|d| d.join("predictor")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| testkit::workspace_root().join("target/release/predictor"))
}

fn service(k: usize) -> String {
    format!("bench-{k}")
}

fn stats_subject(k: usize) -> String {
    format!("$SRV.{}.stats", service(k))
}

async fn stats(client: &async_nats::Client, k: usize) -> anyhow::Result<Value> {
    let reply = tokio::time::timeout(Duration::from_secs(10), client.request(stats_subject(k), "".into())).await??;
    Ok(serde_json::from_slice(&reply.payload)?)
}

/// Starts the layout's predictors one after the other (the first creates the streams), each
/// connected to its own node, and waits until each answers its stats.
async fn start_predictors(layout: Layout, broker: &Broker, client: &async_nats::Client, n: usize) -> anyhow::Result<Predictors> {
    let dir = tempfile::tempdir()?;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let workers = (cores / layout.predictors).max(1);
    let mut p = Predictors { children: Vec::new(), logs: Vec::new(), dir };
    for k in 0..layout.predictors {
        let log_path = p.dir.path().join(format!("predictor-{k}.log"));
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = Command::new(predictor_bin());
        cmd.args(["--nats-url", &broker.url(k), "--replicas", &layout.nodes.to_string()]).args([
            "--service-name",
            &service(k),
            "--inference-workers",
            &workers.to_string(),
            "--max-servers",
            &n.to_string(),
        ]);
        if layout.partitions > 1 {
            cmd.args(["--partitions", &layout.partitions.to_string(), "--instance", &service(k)]);
        }
        let child = cmd
            .current_dir(testkit::workspace_root())
            .env("ORT_DYLIB_PATH", testkit::ort_dylib())
            // Hand-overs are logged at info: a failed run's logs say when partitions moved.
            .env("RUST_LOG", "warn,predictor::partitions=info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()?;
        p.children.push(child);
        p.logs.push(log_path);
        let deadline = Instant::now() + Duration::from_secs(120);
        while let Err(e) = stats(client, k).await {
            let exited = p.children[k].try_wait().ok().flatten();
            if Instant::now() >= deadline || exited.is_some() {
                // The tempdir goes with `p`: what the predictor said is printed before it does.
                let status = exited.map_or("still running".into(), |s| s.to_string());
                let log = std::fs::read_to_string(&p.logs[k]).unwrap_or_default();
                anyhow::bail!("predictor {k} did not answer its stats within 120 s ({status}; last error: {e}); its log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(p)
}

/// Which predictor holds each partition, once every partition is held by exactly one and
/// every predictor holds some (their stats' `partitions`); waits up to 2 minutes.
async fn wait_spread(client: &async_nats::Client, layout: Layout) -> anyhow::Result<BTreeMap<u16, usize>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut holder = BTreeMap::new();
        let mut twice = false;
        let mut idle = false;
        for k in 0..layout.predictors {
            let held: Vec<u16> = stats(client, k).await?["partitions"]
                .as_object()
                .map(|m| m.keys().filter_map(|p| p.parse().ok()).collect())
                .unwrap_or_default();
            idle |= held.is_empty();
            for p in held {
                twice |= holder.insert(p, k).is_some();
            }
        }
        if !twice && !idle && holder.len() == usize::from(layout.partitions) {
            return Ok(holder);
        }
        anyhow::ensure!(Instant::now() < deadline, "partitions not spread over the predictors within 2 minutes: {holder:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Which predictor holds each partition (all of them on the one predictor unpartitioned).
async fn holders(client: &async_nats::Client, layout: Layout) -> anyhow::Result<BTreeMap<u16, usize>> {
    if layout.partitions > 1 {
        wait_spread(client, layout).await
    } else {
        Ok(BTreeMap::from([(0, 0)]))
    }
}

/// (messages, bytes, last sequence) of each of [`STREAMS`].
async fn stream_states(js: &jetstream::Context) -> anyhow::Result<BTreeMap<&'static str, (u64, u64, u64)>> {
    let mut out = BTreeMap::new();
    for (name, _) in STREAMS {
        if let Ok(mut s) = js.get_stream(name).await {
            let st = &s.info().await?.state;
            out.insert(name, (st.messages, st.bytes, st.last_sequence));
        }
    }
    Ok(out)
}

/// Messages and bytes written per tick into each stream between two states.
fn written(before: &BTreeMap<&str, (u64, u64, u64)>, after: &BTreeMap<&str, (u64, u64, u64)>, ticks: usize) -> Value {
    let mut out = serde_json::Map::new();
    for (name, &(msgs, bytes, last)) in after {
        let (_, bytes0, last0) = before.get(name).copied().unwrap_or_default();
        let n = last.saturating_sub(last0) as f64 / ticks as f64;
        let b = if name.starts_with("KV_") {
            n * bytes as f64 / msgs.max(1) as f64
        } else {
            bytes.saturating_sub(bytes0) as f64 / ticks as f64
        };
        out.insert(name.to_string(), json!({ "msgs_per_tick": n, "bytes_per_tick": b }));
    }
    Value::Object(out)
}

fn cpu(pids: &[u32]) -> f64 {
    pids.iter().map(|&p| cpu_s(p)).sum()
}

const STAGES: [&str; 7] = ["decode_ms", "kv_ms", "features_ms", "inference_ms", "risk_ms", "encode_ms", "publish_ms"];

/// Runs one layout and returns its measures (the `RESULT` JSON of one layout).
async fn run(layout: Layout, n: usize, ticks: usize, gap: Duration) -> anyhow::Result<Value> {
    let broker = Broker::start(layout.nodes)?;
    let client = async_nats::connect(broker.url(broker.last())).await?;
    let predictors = start_predictors(layout, &broker, &client, n).await?;
    let result = drive(layout, &broker, &client, &predictors, n, ticks, gap).await.with_context(|| layout.label);
    if result.is_err() {
        for (k, log) in predictors.logs.iter().enumerate() {
            eprintln!("{}: predictor {k} log:\n{}", layout.label, std::fs::read_to_string(log).unwrap_or_default());
        }
    }
    result
}

async fn drive(
    layout: Layout,
    broker: &Broker,
    client: &async_nats::Client,
    predictors: &Predictors,
    n: usize,
    ticks: usize,
    gap: Duration,
) -> anyhow::Result<Value> {
    let js = jetstream::new(client.clone());
    let clock = Instant::now();
    holders(client, layout).await?;
    let spread_s = clock.elapsed().as_secs_f64();
    let mut summaries = client.subscribe(schemas::subjects::HISTORY_TICK).await?;
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(testkit::workspace_root().join("models/tft.json"))?)?;
    let min_history = manifest["min_history_steps"].as_i64().unwrap_or(12);
    let fleet = BenchFleet::new(n, layout.partitions);
    let first = testkit::bench_fleet::first_step(min_history, ticks);
    let warm = min_history + 1;
    let warmup = fleet.warm_up(&js, &mut summaries, first, warm, Duration::from_secs(900)).await?;
    // Measured from here on the holders of now (a hand-over during the warm-up, a predictor
    // late with its heartbeat on this busy machine, is waited out); one while measuring is told.
    let holder = holders(client, layout).await?;
    let pids: Vec<u32> = predictors.children.iter().map(Child::id).collect();
    let brokers = broker.pids();
    let streams_before = stream_states(&js).await?;
    let mut kv_before = 0.0;
    let mut seen: BTreeMap<(usize, String), u64> = BTreeMap::new();
    for k in 0..layout.predictors {
        let st = stats(client, k).await?;
        kv_before += st["kv_bytes_written"].as_f64().unwrap_or(0.0);
        for (p, f) in st["partitions"].as_object().into_iter().flatten() {
            seen.insert((k, p.clone()), f["ticks"].as_u64().unwrap_or(0));
        }
    }
    let (cpu0, broker0) = (cpu(&pids), cpu(&brokers));
    let mut fleet_ms = Vec::new();
    // Per partition: latencies, and the stages of each of its ticks.
    let mut part_ms: BTreeMap<u16, Vec<f64>> = BTreeMap::new();
    let mut part_stages: BTreeMap<u16, Vec<Value>> = BTreeMap::new();
    let mut snapshot_bytes: BTreeMap<u16, u64> = BTreeMap::new();
    let mut rss = vec![(0.0f64, 0.0f64); pids.len()];
    for t in 0..ticks {
        let step = first + warm + t as i64;
        let since = Instant::now();
        fleet.publish_step(&js, step).await?;
        let arrived = fleet.wait_step(&mut summaries, step, since).await?;
        for a in &arrived {
            let size = fleet.sizes()[usize::from(a.partition)];
            anyhow::ensure!(
                a.summary.fleet.ready as usize == size,
                "tick {t}, partition {}: {} of {size} forecast",
                a.partition,
                a.summary.fleet.ready
            );
            part_ms.entry(a.partition).or_default().push(a.after_ms);
        }
        fleet_ms.push(arrived.iter().map(|a| a.after_ms).fold(0.0, f64::max));
        tokio::time::sleep(gap).await;
        for (k, r) in rss.iter_mut().enumerate() {
            let (now, peak) = rss_mb(pids[k]);
            *r = (r.0.max(now), peak);
            let st = stats(client, k).await?;
            if layout.partitions == 1 {
                part_stages.entry(0).or_default().push(st["last_tick"].clone());
                snapshot_bytes.insert(0, st["last_snapshot_bytes"].as_u64().unwrap_or(0));
                continue;
            }
            // Each partition's own last tick, when it is a new one (its tick count grew).
            for (p, f) in st["partitions"].as_object().into_iter().flatten() {
                let count = f["ticks"].as_u64().unwrap_or(0);
                if seen.insert((k, p.clone()), count).is_some_and(|before| before < count) {
                    let p: u16 = p.parse()?;
                    part_stages.entry(p).or_default().push(f["last"]["stages"].clone());
                    snapshot_bytes.insert(p, f["last"]["bytes"].as_u64().unwrap_or(0));
                }
            }
        }
    }
    let moved = holders(client, layout).await? != holder;
    let predictor_cpu = (cpu(&pids) - cpu0) / ticks as f64;
    let broker_cpu = (cpu(&brokers) - broker0) / ticks as f64;
    let mut streams = written(&streams_before, &stream_states(&js).await?, ticks);
    let mut kv_after = 0.0;
    for k in 0..layout.predictors {
        kv_after += stats(client, k).await?["kv_bytes_written"].as_f64().unwrap_or(0.0);
    }
    // The windows bucket's writes are chunks of one hour that grow step by step, smaller than
    // the mean stored chunk: the predictors' own count of the bytes they put is exact.
    if let Some(w) = streams.get_mut("KV_windows") {
        w["bytes_per_tick"] = json!((kv_after - kv_before) / ticks as f64);
    }
    let mean = |vals: &[Value]| -> Value {
        STAGES
            .iter()
            .map(|s| (s.to_string(), json!(vals.iter().filter_map(|v| v[*s].as_f64()).sum::<f64>() / vals.len().max(1) as f64)))
            .collect()
    };
    let all: Vec<Value> = part_stages.values().flatten().cloned().collect();
    let per_partition: Vec<Value> = part_ms
        .iter()
        .map(|(p, ms)| {
            json!({
                "partition": p,
                "predictor": holder.get(p).copied().unwrap_or(0),
                "servers": fleet.sizes()[usize::from(*p)],
                "latency_ms": ms,
                "stages": mean(part_stages.get(p).map_or(&[][..], Vec::as_slice)),
                "stage_samples": part_stages.get(p).map_or(0, Vec::len),
                "snapshot_bytes": snapshot_bytes.get(p).copied().unwrap_or(0),
            })
        })
        .collect();
    Ok(json!({
        "label": layout.label,
        "nodes": layout.nodes,
        "replicas": layout.nodes,
        "predictors": layout.predictors,
        "partitions": layout.partitions,
        "servers": n,
        "ticks": ticks,
        "fleet_ms": fleet_ms,
        "partition_ms": part_ms.values().flatten().collect::<Vec<_>>(),
        "per_partition": per_partition,
        "stages": mean(&all),
        "predictor_cpu_s_per_tick": predictor_cpu,
        "broker_cpu_s_per_tick": broker_cpu,
        "rss_mb": rss.iter().map(|r| r.0).collect::<Vec<_>>(),
        "rss_peak_mb": rss.iter().map(|r| r.1).collect::<Vec<_>>(),
        "streams": streams,
        "warmup_s": warmup.as_secs_f64(),
        "spread_s": spread_s,
        "moved_while_measuring": moved,
    }))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// p50 / p95 / max of a JSON array of numbers.
fn spread(v: &Value) -> String {
    let mut x: Vec<f64> = v.as_array().into_iter().flatten().map(f).collect();
    format!("{:.0} / {:.0} / {:.0}", pct(&mut x, 0.5), pct(&mut x, 0.95), pct(&mut x, 1.0))
}

fn label(r: &Value) -> &str {
    r["label"].as_str().unwrap_or("")
}

/// Latency, CPU and memory per layout.
fn latency_table(n: usize, runs: &[Value]) {
    println!("| layout | predictors x partitions | ticks | whole fleet p50 / p95 / max (ms) | each partition p50 / p95 / max (ms) | predictor CPU s per tick | CPU ms per 1,000 servers | nats-server CPU s per tick | RSS MB per predictor | warm-up s |");
    println!("|---|---|---:|---|---|---:|---:|---:|---|---:|");
    for r in runs {
        let rss: Vec<String> = r["rss_mb"].as_array().into_iter().flatten().map(|v| format!("{:.0}", f(v))).collect();
        let cpu = f(&r["predictor_cpu_s_per_tick"]);
        let (fleet, part) = (spread(&r["fleet_ms"]), spread(&r["partition_ms"]));
        let (broker, warm) = (f(&r["broker_cpu_s_per_tick"]), f(&r["warmup_s"]));
        let per_1k = cpu * 1000.0 / (n as f64 / 1000.0);
        let shape = format!("{} x {}", r["predictors"], r["partitions"]);
        println!(
            "| {} | {shape} | {} | {fleet} | {part} | {cpu:.2} | {per_1k:.0} | {broker:.2} | {} | {warm:.1} |",
            label(r),
            r["ticks"],
            rss.join(" / ")
        );
    }
    for r in runs.iter().filter(|r| r["moved_while_measuring"].as_bool() == Some(true)) {
        println!(
            "\n{}: partitions changed hands while measuring (a predictor late with its heartbeat); its figures include a hand-over.",
            label(r)
        );
    }
    println!("\nwhole fleet: first batch part published -> the last partition's tick summary; each partition: -> its own summary. CPU: user + system seconds of the processes over the measured ticks and the pauses between them, per tick.");
}

/// Mean stage times of a layout's ticks (the whole fleet's, or a partition's).
fn stage_table(n: usize, runs: &[Value]) {
    println!("\n| layout | stage means per | servers | decode | KV | features | inference | risk | encode | publish | snapshot KB |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        let parts = r["per_partition"].as_array().cloned().unwrap_or_default();
        let per = if parts.len() > 1 { format!("partition tick (of {})", parts.len()) } else { "whole-fleet tick".to_string() };
        let servers = n as f64 / parts.len().max(1) as f64;
        let kb = parts.iter().map(|p| f(&p["snapshot_bytes"])).sum::<f64>() / parts.len().max(1) as f64 / 1000.0;
        let st: Vec<String> = STAGES.iter().map(|s| format!("{:.1}", f(&r["stages"][*s]))).collect();
        println!("| {} | {per} | {servers:.0} | {} | {kb:.0} |", label(r), st.join(" | "));
    }
    println!("\nstages: ms inside the predictor (its stats), decode and KV accumulated since the partition's previous tick. Partitions of one predictor tick side by side and share its inference workers, so their stage times overlap.");
}

/// Each partition of the partitioned layouts.
fn partition_table(runs: &[Value]) {
    println!("\n| layout | partition | predictor | servers | latency p50 / p95 / max (ms) | KV ms | inference ms | publish ms |");
    println!("|---|---:|---:|---:|---|---:|---:|---:|");
    for r in runs.iter().filter(|r| r["partitions"].as_u64().unwrap_or(1) > 1) {
        for p in r["per_partition"].as_array().into_iter().flatten() {
            let st: Vec<String> = ["kv_ms", "inference_ms", "publish_ms"].iter().map(|s| format!("{:.1}", f(&p["stages"][*s]))).collect();
            let latency = spread(&p["latency_ms"]);
            println!("| {} | {} | {} | {} | {latency} | {} |", label(r), p["partition"], p["predictor"], p["servers"], st.join(" | "));
        }
    }
}

/// What a tick wrote into each stream.
fn bytes_table(n: usize, runs: &[Value]) {
    let names: Vec<&str> = STREAMS.iter().map(|(_, label)| *label).collect();
    println!("\n| layout | {} | all, per replica | all, stored x replicas |", names.join(" | "));
    println!("|---|{}---:|---:|", "---:|".repeat(names.len()));
    for r in runs {
        let mut cells = Vec::new();
        let mut total = 0.0;
        for (name, _) in STREAMS {
            let s = &r["streams"][name];
            total += f(&s["bytes_per_tick"]);
            cells.push(format!("{:.0} KB ({:.0} msgs)", f(&s["bytes_per_tick"]) / 1000.0, f(&s["msgs_per_tick"])));
        }
        let replicas = f(&r["replicas"]);
        println!("| {} | {} | {:.1} MB | {:.1} MB |", label(r), cells.join(" | "), total / 1e6, total * replicas / 1e6);
    }
    println!("\nper tick of {n} servers: bytes and messages written into each stream (stored size; KV windows: the predictors' own count of the bytes they put, one-hour chunks rewritten each step, so it grows over the hour and differs with the time of the run).");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (n, p) = (args.servers, args.partitions.max(2));
    let mut layouts = vec![Layout { label: "single node, R1", nodes: 1, predictors: 1, partitions: 1 }];
    if args.single_partitioned {
        layouts.push(Layout { label: "single node, R1, partitioned", nodes: 1, predictors: 2, partitions: p });
    }
    layouts.push(Layout { label: "3-node cluster, R3", nodes: 3, predictors: 2, partitions: p });
    println!("# predictor tick at {n} servers: one predictor on one nats-server (R1) beside two predictors sharing {p} partitions on a 3-node cluster (R3)\n");
    let mut runs = Vec::new();
    for layout in layouts {
        eprintln!("{}: {} predictor(s), {} partition(s)...", layout.label, layout.predictors, layout.partitions);
        runs.push(run(layout, n, args.ticks, Duration::from_millis(args.gap_ms)).await?);
    }
    latency_table(n, &runs);
    stage_table(n, &runs);
    partition_table(&runs);
    bytes_table(n, &runs);
    println!("RESULT {}", json!({ "servers": n, "cores": std::thread::available_parallelism().map_or(1, |c| c.get()), "layouts": runs }));
    Ok(())
}
