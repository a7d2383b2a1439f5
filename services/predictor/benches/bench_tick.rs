//! Tick benchmark: drives the real pipeline (the release `predictor` binary against a real
//! nats-server, real ONNX Runtime) with 100, 1,000 and 10,000 servers and prints, per fleet
//! size, the tick latency percentiles, the per-stage timing (decode, KV, features, inference,
//! risk, encode, publish) and the predictor's resident memory. First it measures inference
//! alone per worker count, intra-op thread count and chunk size, and runs the fleets with the
//! fastest.
//!
//!     cargo bench -p predictor --bench bench_tick -- [--sizes 100,1000,10000] [--ticks 20]
//!         [--chunks 16,32,64,128,256] [--threads 1,2] [--workers 1,2] [--model models/tft.onnx]
//!
//! Uses `models/tft.onnx` when it exists, else the tiny test model (numbers then say little
//! about inference). Latency = from the first batch part's publish to the tick's summary on
//! `history.tick`, which the predictor sends right after the snapshot's last part.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use clap::Parser;
use predictor::model::{Model, Outputs};
use testkit::bench_fleet::{pct, rss_mb, BenchFleet};

#[derive(Parser)]
struct Args {
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    sizes: Vec<usize>,
    /// Measured ticks per size (10,000 servers: a third of it).
    #[arg(long, default_value_t = 20)]
    ticks: usize,
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    chunks: Vec<usize>,
    #[arg(long)]
    model: Option<PathBuf>,
    /// Run the fleets with this chunk instead of the sweep's fastest.
    #[arg(long)]
    chunk: Option<usize>,
    /// ONNX Runtime intra-op threads per worker for the sweep (0 = one per core).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Inference workers (sessions side by side) for the sweep; default 1 and one per core.
    #[arg(long, value_delimiter = ',')]
    workers: Vec<usize>,
    /// Pause between measured ticks.
    #[arg(long, default_value_t = 500)]
    gap_ms: u64,
    /// Predictor binaries to run the fleets on, each size on each in turn (side by side in
    /// one run: two builds compare on this noisy machine); default the one built with this
    /// bench.
    #[arg(long, value_delimiter = ',')]
    predictor: Vec<PathBuf>,
    /// Steps published before the measured ticks (default: the model's `min_history_steps`
    /// and one more, the fewest that give every server a forecast). The statistical methods
    /// read up to a day and 8 h (384 steps), so a fleet warmed that long measures a steady
    /// state's tick; the short default keeps `just bench` at 100,000 servers within minutes.
    #[arg(long)]
    warm_steps: Option<i64>,
    /// Cargo passes `--bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn model_path(arg: Option<PathBuf>) -> PathBuf {
    arg.unwrap_or_else(|| {
        let real = testkit::workspace_root().join("models/tft.onnx");
        if real.exists() && real.with_extension("json").exists() {
            real
        } else {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny.onnx")
        }
    })
}

/// One session with `chunk` servers of plausible inputs (a few windows partly masked).
fn session(model: &Path, chunk: usize, threads: usize) -> anyhow::Result<Model> {
    let mut m = Model::load(model, &model.with_extension("json"), &testkit::ort_dylib(), chunk, threads)?;
    let t = m.manifest.encoder_steps;
    for (i, v) in m.inputs.past.iter_mut().enumerate() {
        *v = (i % 97) as f32 * 0.5;
    }
    m.inputs.mask.fill(1.0);
    for k in 0..chunk {
        m.inputs.mask[k * t * 14..k * t * 14 + (k % t) * 14].fill(0.0);
        m.inputs.profile[k] = (k % 7) as i64;
    }
    Ok(m)
}

/// `calls` runs of a full chunk on `m`, reusing one output buffer as the predictor does.
fn runs(m: &mut Model, calls: usize) -> anyhow::Result<()> {
    let mut out = Outputs::default();
    for _ in 0..calls {
        m.run(m.capacity(), &mut out)?;
    }
    Ok(())
}

/// Inference alone, as the predictor's workers run it: `workers` sessions side by side (one
/// thread each), every one running chunks of `chunk` servers with `threads` intra-op threads.
/// Returns milliseconds per round (one call on every worker) and per server.
fn measure(model: &Path, workers: usize, threads: usize, chunk: usize) -> anyhow::Result<(f64, f64)> {
    let mut sessions = (0..workers).map(|_| session(model, chunk, threads)).collect::<anyhow::Result<Vec<_>>>()?;
    for m in &mut sessions {
        runs(m, 1)?; // warm-up
    }
    let calls = (1024 / chunk).max(3);
    let start = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = sessions.iter_mut().map(|m| scope.spawn(move || runs(m, calls))).collect();
        handles.into_iter().try_for_each(|h| h.join().map_err(|_| anyhow::anyhow!("a worker panicked"))?)
    })?;
    let wall = start.elapsed().as_secs_f64() * 1000.0;
    Ok((wall / calls as f64, wall / (calls * chunk * workers) as f64))
}

/// Inference alone: milliseconds per server for each worker count, thread count and chunk
/// size; returns the fastest (workers, threads, chunk).
fn sweep(model: &Path, workers: &[usize], threads: &[usize], chunks: &[usize]) -> anyhow::Result<(usize, usize, usize)> {
    println!("\n## inference alone (one session per worker, {} cores)", cores());
    println!("| threads | chunk | workers | ms/call | ms/server | servers/s |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut best = (f64::MAX, (1, 1, 64));
    for &w in workers {
        for &th in threads {
            for &chunk in chunks {
                let (per_call, per_server) = measure(model, w, th, chunk)?;
                println!("| {th} | {chunk} | {w} | {per_call:.1} | {per_server:.3} | {:.0} |", 1000.0 / per_server);
                if per_server < best.0 {
                    best = (per_server, (w, th, chunk));
                }
            }
        }
    }
    let (w, th, chunk) = best.1;
    println!("fastest: {w} worker(s) x {th} thread(s), chunk {chunk}");
    Ok(best.1)
}

/// Inference alone at the batch sizes the issue names (one session, whole batch per call),
/// for each thread count: the same ONNX Runtime calls as the Python baseline's ORT table.
fn batch_table(model: &Path, batches: &[usize], threads: &[usize]) -> anyhow::Result<()> {
    println!("\n## inference alone per batch size (one session, the whole batch in one call)");
    println!("| batch | intra-op threads | ms/call | servers/s |");
    println!("|---:|---:|---:|---:|");
    for &b in batches {
        for &th in threads {
            let (per_call, per_server) = measure(model, 1, th, b)?;
            println!("| {b} | {th} | {per_call:.2} | {:.0} |", 1000.0 / per_server);
        }
    }
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `--max-servers` of the benchmark's predictor: room for the largest fleet it is given.
const MAX_SERVERS: &str = "200000";

struct Run {
    latency: Vec<f64>,
    stages: Vec<serde_json::Value>,
    rss: (f64, f64),
    bytes: u64,
    parts: u64,
}

/// How the predictor runs inference: workers, intra-op threads per worker, most servers per call.
#[derive(Clone, Copy)]
struct Setup {
    workers: usize,
    threads: usize,
    chunk: usize,
    /// Steps each fleet is warmed for ([`warm_up_steps`]).
    warm_steps: i64,
}

async fn run_fleet(n: usize, ticks: usize, model: &Path, binary: &Path, setup: Setup, gap: Duration) -> anyhow::Result<Run> {
    let nats = testkit::NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let log = std::fs::File::create(dir.path().join("predictor.log"))?;
    let mut child: Child = Command::new(binary)
        .args(["--nats-url", &nats.url(), "--chunk-size", &setup.chunk.to_string(), "--intra-threads", &setup.threads.to_string()])
        .args(["--inference-workers", &setup.workers.to_string(), "--max-servers", MAX_SERVERS, "--model"])
        .arg(model)
        .env("ORT_DYLIB_PATH", testkit::ort_dylib())
        .env("RUST_LOG", std::env::var("BENCH_PREDICTOR_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()?;
    let pid = child.id();
    eprintln!("  logs: {} and {}", dir.path().join("predictor.log").display(), nats.log_path().display());
    let result = drive(&nats, n, ticks, gap, pid, setup.warm_steps).await;
    let _ = child.kill();
    let _ = child.wait();
    if result.is_err() {
        eprintln!("{}", std::fs::read_to_string(dir.path().join("predictor.log")).unwrap_or_default());
        eprintln!("nats-server log (last 40 lines):\n{}", nats.log_tail(40));
    }
    result
}

/// Steps a fleet is warmed for: `requested`, or by default (and at least) the fewest that give
/// every server a forecast, `min_history` and one more.
fn warm_up_steps(requested: Option<i64>, min_history: i64) -> i64 {
    requested.unwrap_or(0).max(min_history + 1)
}

async fn drive(nats: &testkit::NatsServer, n: usize, ticks: usize, gap: Duration, pid: u32, warm: i64) -> anyhow::Result<Run> {
    let client = nats.connect().await?;
    let js = jetstream::new(client.clone());
    let mut summaries = client.subscribe("history.tick").await?;
    // Wait for the predictor's streams and service.
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.request(predictor::service::stats_subject("predictor"), "".into()).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the predictor did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fleet = BenchFleet::new(n, 1);
    let first = testkit::bench_fleet::first_step(warm - 1, ticks);
    // Ticks run while the backlog drains; the warm-up ends with the tick that has them all ready.
    let took = fleet.warm_up(&js, &mut summaries, first, warm, Duration::from_secs(600)).await?;
    eprintln!("  {n} servers: warm-up of {warm} steps took {:.1} s", took.as_secs_f64());
    let mut run = Run { latency: Vec::new(), stages: Vec::new(), rss: (0.0, 0.0), bytes: 0, parts: 0 };
    for k in 0..ticks {
        let step = first + warm + k as i64;
        let t = Instant::now();
        fleet.publish_step(&js, step).await?;
        let arrived = fleet.wait_step(&mut summaries, step, t).await?;
        let s = &arrived.first().ok_or_else(|| anyhow::anyhow!("no summary"))?.summary;
        run.latency.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(s.fleet.ready as usize == n, "tick {k}: {} of {n} forecast", s.fleet.ready);
        let reply = client.request(predictor::service::stats_subject("predictor"), "".into()).await?;
        let st: serde_json::Value = serde_json::from_slice(&reply.payload)?;
        run.bytes = st["last_snapshot_bytes"].as_u64().unwrap_or(0);
        run.parts = st["last_snapshot_parts"].as_u64().unwrap_or(0);
        run.stages.push(st["last_tick"].clone());
        let rss = rss_mb(pid);
        run.rss = (run.rss.0.max(rss.0), rss.1);
        tokio::time::sleep(gap).await;
    }
    Ok(run)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let model = model_path(args.model);
    println!("# predictor tick benchmark\nmodel: {}", model.display());
    let mut workers = args.workers.clone();
    if workers.is_empty() {
        workers = vec![1, cores()];
        workers.dedup();
    }
    batch_table(&model, &[1, 100, 1000], &args.threads)?;
    let (w, threads, fastest) = sweep(&model, &workers, &args.threads, &args.chunks)?;
    let min_history = predictor::model::Manifest::load(&model.with_extension("json"))?.min_history_steps as i64;
    let warm = warm_up_steps(args.warm_steps, min_history);
    let setup = Setup { workers: w, threads, chunk: args.chunk.unwrap_or(fastest), warm_steps: warm };
    println!(
        "\n## ticks through the pipeline (release predictor binary, real nats-server, {w} worker(s) x {threads} thread(s), chunk {})",
        setup.chunk
    );
    println!("| servers | ticks | latency p50 / p95 / p99 / max (ms) | decode | KV | features | inference | risk | encode | publish | snapshot | RSS (peak) MB |");
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    let binaries = if args.predictor.is_empty() { vec![PathBuf::from(env!("CARGO_BIN_EXE_predictor"))] } else { args.predictor.clone() };
    for (n, binary) in args.sizes.iter().flat_map(|&n| binaries.iter().map(move |b| (n, b))) {
        let ticks = if n >= 10_000 { (args.ticks / 3).max(3) } else { args.ticks };
        // Side by side, each row names its binary in the servers column, so the table stays one table.
        let label = if args.predictor.is_empty() { n.to_string() } else { format!("{n} ({})", binary.display()) };
        let run = run_fleet(n, ticks, &model, binary, setup, Duration::from_millis(args.gap_ms)).await?;
        let mut lat = run.latency.clone();
        let avg = |key: &str| run.stages.iter().filter_map(|s| s[key].as_f64()).sum::<f64>() / run.stages.len().max(1) as f64;
        println!(
            "| {label} | {ticks} | {:.0} / {:.0} / {:.0} / {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} MB in {} parts | {:.0} ({:.0}) |",
            pct(&mut lat, 0.5), pct(&mut lat, 0.95), pct(&mut lat, 0.99), pct(&mut lat, 1.0),
            avg("decode_ms"), avg("kv_ms"), avg("features_ms"), avg("inference_ms"), avg("risk_ms"), avg("encode_ms"), avg("publish_ms"),
            run.bytes as f64 / 1e6, run.parts, run.rss.0, run.rss.1,
        );
    }
    println!("\nstage columns: mean ms per tick inside the predictor; latency: first batch part published -> tick summary received");
    println!(
        "each fleet was warmed for {warm} steps before the measured ticks; the statistical methods read up to {} (`--warm-steps` for a steady state's tick)",
        predictor::methods::HISTORY_STEPS
    );
    Ok(())
}
