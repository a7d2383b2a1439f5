//! Benchmark: remote-write throughput of `ingest` (decode + align, samples/s) against Prometheus
//! 2.42's own receiver (`--web.enable-remote-write-receiver`) on the same payloads in the same
//! run. Payloads: `--hosts` node_exporter-like hosts (2 CPUs x 5 modes, memory, root filesystem,
//! 2 NICs, load, boot time: 22 series) scraped every 15 s for 30 minutes, one request per scrape.
//! Prints a table.
//!
//! Then the pull side's target: a real Prometheus is filled (by remote-write, one hour of every
//! series per request, in time order) with `--backfill-hosts` hosts x 24 h at a 150 s scrape
//! interval, and ingest's start backfill (`Puller::backfill_all`: 14 `query_range`s at step
//! 300 s, read bounded, mapped, validated, one batch per step) is timed. Target: 1,000 hosts
//! under 30 s.
//!
//! `cargo run --release -p ingest --example bench_remote_write [-- --hosts 1000 --backfill-hosts 1000]`

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use clap::Parser;
use ingest::prompb::{encode_body, Label, Sample, TimeSeries, WriteRequest};
use ingest::remote_write::now_ms;

fn payloads(hosts: usize, scrapes: usize, start_ms: i64) -> (Vec<Vec<u8>>, usize) {
    let mut out = Vec::with_capacity(scrapes);
    let mut samples = 0;
    for k in 0..scrapes {
        let t = start_ms + k as i64 * 15_000;
        let secs = k as f64 * 15.0;
        let mut ts = Vec::new();
        for h in 0..hosts {
            let inst = format!("host{h:05}.dc1:9100");
            let mut push = |name: &str, extra: &[(&str, &str)], v: f64| {
                let mut labels = vec![Label::new("__name__", name)];
                labels.extend(extra.iter().map(|(n, v)| Label::new(n, v)));
                labels.push(Label::new("instance", &inst));
                labels.push(Label::new("job", "node"));
                ts.push(TimeSeries { labels, samples: vec![Sample { value: v, timestamp: t }] });
            };
            for cpu in ["0", "1"] {
                for (mode, rate) in [("idle", 0.6), ("user", 0.25), ("system", 0.1), ("iowait", 0.04), ("steal", 0.01)] {
                    push("node_cpu_seconds_total", &[("cpu", cpu), ("mode", mode)], 1e5 + rate * secs);
                }
            }
            push("node_memory_MemTotal_bytes", &[], 16e9);
            push("node_memory_MemAvailable_bytes", &[], 6e9 + (h % 7) as f64 * 1e8);
            push("node_memory_SwapTotal_bytes", &[], 2e9);
            push("node_memory_SwapFree_bytes", &[], 1.5e9);
            push("node_filesystem_size_bytes", &[("mountpoint", "/")], 1e11);
            push("node_filesystem_avail_bytes", &[("mountpoint", "/")], 4e10);
            for dev in ["eth0", "lo"] {
                push("node_network_receive_bytes_total", &[("device", dev)], 1e9 + 2e6 * secs);
                push("node_network_transmit_bytes_total", &[("device", dev)], 1e9 + 1e6 * secs);
            }
            push("node_load1", &[], 1.5);
            push("node_boot_time_seconds", &[], 1.7e9);
        }
        samples += ts.len();
        out.push(encode_body(&WriteRequest { timeseries: ts }));
    }
    (out, samples)
}

/// POSTs every payload in order; returns the elapsed time and the non-2xx answers.
async fn post_all(url: &str, bodies: &[Vec<u8>]) -> (Duration, usize) {
    let client = reqwest::Client::new();
    let t0 = Instant::now();
    let mut bad = 0;
    for b in bodies {
        let resp = ingest::prompb::post(&client, url, b.clone()).send().await;
        if !resp.is_ok_and(|r| r.status().is_success()) {
            bad += 1;
        }
    }
    (t0.elapsed(), bad)
}

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    hosts: usize,
    #[arg(long, default_value_t = 120)]
    scrapes: usize,
    /// Hosts of the backfill benchmark (0: skip it).
    #[arg(long, default_value_t = 1000)]
    backfill_hosts: usize,
}

/// One request's worth of history: `hosts` over [from, to) every 150 s, node_exporter-like.
fn history_slice(hosts: usize, from: i64, to: i64, origin: i64) -> Vec<TimeSeries> {
    let times: Vec<i64> = (from..to).step_by(150_000).collect();
    let mut out = Vec::with_capacity(hosts * 9);
    for h in 0..hosts {
        let inst = format!("host{h:05}.dc1:9100");
        let mut push = |name: &str, extra: &[(&str, &str)], f: &dyn Fn(f64) -> f64| {
            let mut labels = vec![Label::new("__name__", name)];
            labels.extend(extra.iter().map(|(n, v)| Label::new(n, v)));
            labels.push(Label::new("instance", &inst));
            labels.push(Label::new("job", "node"));
            let samples = times.iter().map(|&t| Sample { value: f((t - origin) as f64 / 1e3), timestamp: t }).collect();
            out.push(TimeSeries { labels, samples });
        };
        for (mode, rate) in [("idle", 0.6), ("iowait", 0.05), ("system", 0.1), ("user", 0.25)] {
            push("node_cpu_seconds_total", &[("cpu", "0"), ("mode", mode)], &|s| 1e5 + rate * s);
        }
        let day = |s: f64| (s / 86_400.0 * std::f64::consts::TAU).sin();
        push("node_memory_MemTotal_bytes", &[], &|_| 16e9);
        push("node_memory_MemAvailable_bytes", &[], &|s| 6e9 + 2e9 * day(s));
        push("node_filesystem_avail_bytes", &[("mountpoint", "/")], &|_| 4e10);
        push("node_filesystem_size_bytes", &[("mountpoint", "/")], &|_| 1e11);
        push("node_load1", &[], &|s| 1.5 + day(s));
    }
    out
}

/// Fills a real Prometheus with `hosts` x 24 h, then times ingest's start backfill from it.
async fn bench_backfill(hosts: usize) -> anyhow::Result<()> {
    use ingest::promapi::{Prom, PullConfig};
    let prom = testkit::prometheus::Prometheus::start("global:\n  scrape_interval: 1m\n")?;
    let end = ingest::align::step_start(now_ms());
    let origin = end - 86_400_000 - 3_600_000;
    let t = Instant::now();
    let mut samples = 0usize;
    for hour in 0..25 {
        let from = origin + hour * 3_600_000;
        let slice = history_slice(hosts, from, (from + 3_600_000).min(now_ms()), origin);
        samples += slice.iter().map(|s| s.samples.len()).sum::<usize>();
        for chunk in slice.chunks(4_500) {
            let body = encode_body(&WriteRequest { timeseries: chunk.to_vec() });
            let (_, bad) = post_all(&format!("{}/api/v1/write", prom.url()), &[body]).await;
            anyhow::ensure!(bad == 0, "Prometheus refused history: {}", prom.log());
        }
    }
    println!("backfill source: {hosts} hosts x 24 h, {samples} samples remote-written into Prometheus 2.42 in {:.1?}", t.elapsed());
    let stats = std::sync::Arc::new(ingest::stats::Stats::default());
    let cfg = PullConfig {
        url: prom.url(),
        bearer: None,
        basic: None,
        host_label: "instance".into(),
        backfill: Duration::from_secs(86_400),
        delay: Duration::ZERO,
        timeout: Duration::from_secs(120),
        max_hosts: 10_000,
        attempts: 1,
    };
    let mut puller = ingest::pull::Puller::new(Prom::new(cfg, stats.clone())?, "bench", stats);
    let t = Instant::now();
    let outs = puller.backfill_all(end - 86_400_000 + schemas::STEP_MS, end).await;
    let took = t.elapsed();
    let (mut batches, mut records, mut servers) = (0, 0, std::collections::HashSet::new());
    for o in &outs {
        if let ingest::sink::Out::Batch { records: r, .. } = o {
            batches += 1;
            records += r.len();
            servers.extend(r.iter().map(|r| r.server.clone()));
        }
    }
    println!("| backfill (pull) | time | steps | records | hosts | target |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {hosts} hosts x 24 h from Prometheus 2.42 | {took:.2?} | {batches} | {records} | {} | < 30 s: {} |",
        servers.len(),
        if took < Duration::from_secs(30) { "met" } else { "MISSED" }
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let start = ingest::align::step_start(now_ms()) - 35 * 60_000;
    let (bodies, samples) = payloads(args.hosts, args.scrapes, start);
    let mb = bodies.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    println!("{} requests, {samples} samples, {mb:.1} MB snappy", bodies.len());

    // In-process decode + map + align, no HTTP: the cost of ingest's own work.
    let mut aligner = ingest::align::Aligner::new(ingest::align::AlignConfig::default());
    let stats = ingest::stats::Stats::default();
    let (mut dec, mut app) = (Duration::ZERO, Duration::ZERO);
    for b in &bodies {
        let t = Instant::now();
        let req = ingest::remote_write::decode(&bytes::Bytes::from(b.clone()), 1 << 30)?;
        dec += t.elapsed();
        let t = Instant::now();
        let _ = ingest::remote_write::apply(&mut aligner, &req, "instance", &stats, now_ms());
        let _ = aligner.close_ready(now_ms());
        app += t.elapsed();
    }
    let core = dec + app;
    println!("in process: decode {dec:.2?}, map + align {app:.2?}");

    // ingest over HTTP (with NATS publishing), then Prometheus 2.42 over HTTP.
    let nats = testkit::NatsServer::start()?;
    let client = nats.connect().await?;
    jetstream::new(client)
        .get_or_create_stream(stream::Config { name: "METRICS".into(), subjects: vec!["metrics.batch.>".into()], ..Default::default() })
        .await?;
    let port = testkit::free_port();
    let listen = format!("127.0.0.1:{port}");
    let cfg = ingest::Config::parse_from(["ingest", "--nats-url", &nats.url(), "--listen", &listen, "--max-body", "67108864"]);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(ingest::service::run(cfg, stop));
    while reqwest::get(format!("http://{listen}/-/ready")).await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ing, ing_bad) = post_all(&format!("http://{listen}/api/v1/write"), &bodies).await;
    let prom = testkit::prometheus::Prometheus::start("global:\n  scrape_interval: 1m\n")?;
    let (pro, pro_bad) = post_all(&format!("{}/api/v1/write", prom.url()), &bodies).await;

    let rate = |d: Duration| samples as f64 / d.as_secs_f64();
    println!("| receiver | time | samples/s | refused requests |");
    println!("|---|---|---|---|");
    println!("| ingest decode + align (in process, 1 thread) | {core:.2?} | {:.0} | 0 |", rate(core));
    println!("| ingest over HTTP (+ NATS publish) | {ing:.2?} | {:.0} | {ing_bad} |", rate(ing));
    println!("| Prometheus 2.42 receiver over HTTP | {pro:.2?} | {:.0} | {pro_bad} |", rate(pro));
    println!("ingest over HTTP / Prometheus: {:.2}x", pro.as_secs_f64() / ing.as_secs_f64());
    drop(prom);
    if args.backfill_hosts > 0 {
        println!();
        bench_backfill(args.backfill_hosts).await?;
    }
    Ok(())
}
