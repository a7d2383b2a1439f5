//! Forecasts per second of the predictor's engine alone, every method included: the model in
//! the inference workers, the statistical methods (`domain/methods.rs`), the ensemble and the
//! per-server choice (`domain/select.rs`), accuracy scoring, alerts, risk and the snapshot
//! encoding, for one tick of `--servers` servers whose windows hold a day and 8 h of history.
//! No NATS: batches go straight into `ingest`, as in the backtest. Beside it, in the same run,
//! the model alone on the same sessions (the ratio says what the other methods cost).
//!
//!     cargo bench -p predictor --bench bench_engine -- [--servers 1000,10000] [--ticks 10]
//!
//! Issue 16's target: at least 10,000 server forecasts per second on 2 cores at 1,000 servers.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use predictor::domain::scoring::Scoring;
use predictor::ingest::{ingest, Limits};
use predictor::registry::Registry;
use predictor::tick::Engine;
use predictor::workers::Workers;
use schemas::{MetricRecord, Metrics, MetricsBatch, STEP_MS};

/// The predictor binary's allocator (`src/main.rs`), so the engine runs here as it does there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    servers: Vec<usize>,
    /// Measured ticks per fleet size (after the warm ones).
    #[arg(long, default_value_t = 10)]
    ticks: usize,
    /// Ticks computed before measuring, so every method has matured forecasts to be scored on.
    #[arg(long, default_value_t = 24)]
    warm_ticks: usize,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Most servers per chunk; the predictor's default unless given.
    #[arg(long, default_value_t = predictor::workers::DEFAULT_CHUNK)]
    chunk: usize,
    #[arg(long)]
    model: Option<PathBuf>,
    /// Cargo passes `--bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A server's values at step `s`: a daily wave, a per-server level and scale, noise and spikes,
/// so every method's quantiles, selections and alerts see realistic variety.
fn metrics(i: usize, s: i64) -> Metrics {
    let day = (s as f32 / 288.0 * std::f32::consts::TAU + i as f32 * 0.7).sin();
    let noise = ((s as u64).wrapping_mul(2_654_435_761).wrapping_add(i as u64 * 40_503) % 1000) as f32 / 1000.0 - 0.5;
    let spike = if (s + i as i64) % 97 == 0 { 40.0 } else { 0.0 };
    let busy = (15.0 + (i % 9) as f32 * 6.0 + 12.0 * day + 8.0 * noise + spike).clamp(1.0, 99.0);
    let mem = (40.0 + (i % 5) as f32 * 8.0 + 5.0 * day + ((s % 2000) as f32) * 0.004).min(99.0);
    Metrics {
        cpu_user_pct: Some(busy * 0.7),
        cpu_sys_pct: Some(busy * 0.2),
        cpu_iowait_pct: Some(busy * 0.1),
        cpu_idle_pct: Some(100.0 - busy),
        java_cpu_pct: Some(busy * 0.4),
        mem_used_pct: Some(mem),
        swap_used_pct: Some(2.0 + noise),
        disk_usage_pct: Some(30.0 + (i % 50) as f32 + (s % 3000) as f32 * 0.005),
        net_in_mb_s: Some((20.0 + 10.0 * day + 6.0 * noise).max(0.0)),
        net_out_mb_s: Some((12.0 + 4.0 * day).max(0.0)),
        back_close_wait: Some(2.0 + (s % 7) as f32),
        front_close_wait: Some(1.0),
        load_average: Some(busy / 20.0),
        uptime_days: Some(40.0),
    }
}

fn names(n: usize) -> Vec<String> {
    testkit::server_names(n, 5)
}

/// Feeds step `s` of the fleet into `reg`; returns the servers due.
fn step(reg: &mut Registry, fleet: &[String], s: i64) -> anyhow::Result<Vec<u32>> {
    let ts = s * STEP_MS;
    let records =
        fleet.iter().enumerate().map(|(i, n)| MetricRecord { server: n.clone(), ts_ms: ts, profile: None, metrics: metrics(i, s) });
    let payload = schemas::encode(&MetricsBatch::new("bench", s as u64, ts + STEP_MS, records.collect()))?;
    let limits = Limits { max_bytes: usize::MAX, max_servers: usize::MAX };
    let report = ingest(reg, &schemas::subjects::metrics_batch("bench"), &payload, limits, ts + STEP_MS);
    anyhow::ensure!(report.rejected.is_empty(), "bench records rejected: {}", report.rejected[0].error);
    Ok(reg.take_due())
}

/// CPU time this process has used, all threads (ms; from `/proc/self/stat`, 10 ms ticks on
/// Linux): on a busy machine it says more about the work done than the wall clock does.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime are 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<f64> = after.split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) * 10.0
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let model = args.model.unwrap_or_else(|| testkit::workspace_root().join("models/tft.onnx"));
    let (w, th, chunk) = (args.workers, args.threads, args.chunk);
    println!("# predictor engine: every method, one tick ({w} worker(s) x {th} thread(s), chunk {chunk})");
    println!(
        "| servers | ticks | forecasts alone ms | forecasts/s (all methods) | target >= 10,000/s | whole engine ms p50 / max | engine CPU µs per server | servers/s (whole engine) | model alone ms | model alone forecasts/s | all methods / model alone |"
    );
    println!("|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|");
    for &n in &args.servers {
        let workers = Workers::load(&model, &model.with_extension("json"), &testkit::ort_dylib(), w, chunk, th)?;
        let history = workers.manifest().encoder_steps.max(predictor::methods::HISTORY_STEPS);
        let workers_encoder = workers.manifest().encoder_steps;
        let mut engine = Engine::new(workers, 12);
        let mut reg = Registry::tiered(history, workers_encoder);
        let fleet = names(n);
        let first = 1_000_000;
        let filled = first + history as i64;
        for s in first..filled {
            step(&mut reg, &fleet, s)?;
        }
        let mut engine_ms = Vec::new();
        let mut engine_cpu = 0.0;
        for k in 0..args.warm_ticks + args.ticks {
            let s = filled + k as i64;
            let due = step(&mut reg, &fleet, s)?;
            let (clock, cpu) = (Instant::now(), cpu_ms());
            let out = engine.compute(&reg, &due, (s + 1) * STEP_MS, 1 << 20)?;
            let elapsed = clock.elapsed().as_secs_f64() * 1000.0;
            if k >= args.warm_ticks {
                engine_cpu += cpu_ms() - cpu;
            }
            anyhow::ensure!(out.forecast_count == n, "tick {k}: {} of {n} forecast", out.forecast_count);
            if k >= args.warm_ticks {
                engine_ms.push(elapsed);
            }
        }
        let alone = model_alone(&model, n, w, th, chunk, args.ticks)?;
        let mut forecasting = Workers::load(&model, &model.with_extension("json"), &testkit::ort_dylib(), w, chunk, th)?;
        let ready: Vec<u32> = (0..n as u32).collect();
        let forecasts = forecasts_alone(&mut forecasting, &reg, &ready, args.ticks)?;
        let p50 = pct(&mut engine_ms, 0.5);
        let rate = |ms: f64| n as f64 / ms * 1000.0;
        let verdict = if n == 1000 {
            if rate(forecasts) >= 10_000.0 {
                "met"
            } else {
                "missed"
            }
        } else {
            ""
        };
        println!(
            "| {n} | {} | {forecasts:.0} | {:.0} | {verdict} | {p50:.0} / {:.0} | {:.0} | {:.0} | {alone:.0} | {:.0} | {:.2} |",
            args.ticks,
            rate(forecasts),
            pct(&mut engine_ms, 1.0),
            engine_cpu * 1000.0 / (args.ticks * n) as f64,
            rate(p50),
            rate(alone),
            rate(forecasts) / rate(alone)
        );
    }
    println!(
        "\nforecasts alone = features, the TFT, the 6 statistical methods, the ensemble and the per-server choice for every server (the predictor's workers and code, no scoring); whole engine = `Engine::compute` (also accuracy scoring, alerts, risk and the snapshot encoding); model alone = the same sessions running only the TFT on as many servers; medians of the ticks"
    );
    Ok(())
}

/// Median ms of one tick's forecasts of `ready`, every method: the workers fill features, run
/// the statistical methods and the model, turn its outputs into forecasts, combine the
/// ensemble and choose each target's method, as the engine does, without a server's record
/// (so the default choice; nothing scored or recorded).
fn forecasts_alone(workers: &mut Workers, reg: &Registry, ready: &[u32], ticks: usize) -> anyhow::Result<f64> {
    let no_records = Scoring::default();
    let mut times = Vec::new();
    let mut count = 0;
    for _ in 0..ticks.max(3) {
        let clock = Instant::now();
        workers.run(reg, &no_records, ready, |chunk, out| {
            count += out.published[..chunk.len()].iter().filter(|p| !p.is_empty()).count();
            Ok(())
        })?;
        times.push(clock.elapsed().as_secs_f64() * 1000.0);
    }
    anyhow::ensure!(count == ready.len() * times.len(), "{count} of {} forecasts published", ready.len() * times.len());
    Ok(pct(&mut times, 0.5))
}

/// Median ms of the model alone over `n` servers, on `workers` sessions side by side (the
/// predictor's own split of a tick into chunks).
fn model_alone(model: &std::path::Path, n: usize, workers: usize, threads: usize, chunk: usize, ticks: usize) -> anyhow::Result<f64> {
    let mut sessions = (0..workers)
        .map(|_| predictor::model::Model::load(model, &model.with_extension("json"), &testkit::ort_dylib(), chunk, threads))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for m in &mut sessions {
        m.inputs.mask.fill(1.0);
    }
    let calls = n.div_ceil(chunk).div_ceil(workers);
    let mut times = Vec::new();
    for _ in 0..ticks.max(3) {
        let clock = Instant::now();
        std::thread::scope(|scope| {
            let handles: Vec<_> = sessions
                .iter_mut()
                .map(|m| {
                    scope.spawn(move || -> anyhow::Result<()> {
                        let mut out = predictor::model::Outputs::default();
                        for _ in 0..calls {
                            m.run(m.capacity(), &mut out)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| h.join().map_err(|_| anyhow::anyhow!("a worker panicked"))?)
        })?;
        times.push(clock.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(pct(&mut times, 0.5))
}
