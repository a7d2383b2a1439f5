//! Benchmark: simulate, encode and publish one tick of 10,000 servers through JetStream to a
//! real nats-server, until the METRICS stream has acknowledged every part. Target: encode +
//! publish < 50 ms per tick (release). Prints a table.
//!
//! `cargo run --release -p generator --example bench_publish [-- --servers 10000 --ticks 40]`

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use fleetbus::publish::Publisher;
use generator::shutdown::Shutdown;
use generator::{SimConfig, Simulator};
use schemas::subjects::{METRICS_BATCH_ALL, STREAM_METRICS};
use schemas::STEP_MS;

struct Row {
    label: String,
    records: usize,
    parts: usize,
    kib: usize,
    sim: Vec<Duration>,
    encode: Vec<Duration>,
    publish: Vec<Duration>,
    total: Vec<Duration>,
}

fn pct(v: &[Duration], p: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    s.sort_by(f64::total_cmp);
    s[((s.len() - 1) as f64 * p).round() as usize]
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn run(label: &str, extra: &[&str], servers: usize, ticks: usize) -> anyhow::Result<Row> {
    let nats = testkit::NatsServer::start_with(extra)?;
    let client = nats.connect().await?;
    jetstream::new(client.clone())
        .get_or_create_stream(stream::Config {
            name: STREAM_METRICS.into(),
            subjects: vec![METRICS_BATCH_ALL.into()],
            ..Default::default()
        })
        .await?;
    let mut sim = Simulator::new(SimConfig { servers, seed: 1, start_ms: 1_767_571_200_000 })?;
    let mut publisher = Publisher::new(client.clone(), "bench", "bench");
    let mut shutdown = Shutdown::never();
    let mut row = Row { label: label.into(), records: 0, parts: 0, kib: 0, sim: vec![], encode: vec![], publish: vec![], total: vec![] };
    for i in 0..ticks + 3 {
        let t0 = Instant::now();
        let step = sim.step();
        let (seq, clock, records) = (step.index, step.ts_ms + STEP_MS, step.records());
        let sim_time = t0.elapsed();
        let n = records.len();
        let r = publisher.publish(seq, clock, records, shutdown.wait()).await?;
        if i >= 3 {
            // The first ticks warm the connection, the stream and the splitter's estimate.
            row.records = n;
            row.parts = r.parts;
            row.kib = r.bytes / 1024;
            row.sim.push(sim_time);
            row.encode.push(r.encode);
            row.publish.push(r.publish);
            row.total.push(r.encode + r.publish);
        }
    }
    Ok(row)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let servers = arg("--servers", 10_000);
    let ticks = arg("--ticks", 40);
    let dir = tempfile::tempdir()?;
    let conf = dir.path().join("fleetcast.conf");
    std::fs::write(&conf, "max_payload: 8MB\n")?;
    let conf = conf.to_string_lossy().to_string();
    let rows = vec![
        run("max_payload 1 MiB (nats default)", &[], servers, ticks).await?,
        run("max_payload 8 MiB (nats.conf)", &["-c", &conf], servers, ticks).await?,
    ];
    println!("\nencode + publish of one tick through JetStream, {servers} servers, {ticks} ticks (ms)\n");
    println!("| setup | records | parts | KiB | simulate p50 | encode p50 | publish+ack p50 | encode+publish p50 | p95 | max | target |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | **{:.1}** | {:.1} | {:.1} | {} |",
            r.label,
            r.records,
            r.parts,
            r.kib,
            pct(&r.sim, 0.5),
            pct(&r.encode, 0.5),
            pct(&r.publish, 0.5),
            pct(&r.total, 0.5),
            pct(&r.total, 0.95),
            pct(&r.total, 1.0),
            if pct(&r.total, 0.5) < 50.0 { "< 50 ms: met" } else { "< 50 ms: MISSED" }
        );
    }
    Ok(())
}
