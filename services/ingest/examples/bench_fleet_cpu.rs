//! Benchmark: the CPU the `ingest` process spends on a fleet remote-written to it, as a
//! Prometheus would send it. Target: a 10,000-host fleet at a 15 s scrape interval under 5 % of
//! one core on average.
//!
//! The real binary (`target/release/ingest`, beside this example's folder) runs with push on a
//! loopback port against a real nats-server (testkit) with the METRICS stream, so every closed
//! step is mapped, validated and published as it is in production. This process is the
//! Prometheus: every host is scraped once per interval at its own offset (Prometheus spreads
//! targets over the interval), the samples queue in scrape order, and a request leaves as soon
//! as it holds `max_samples_per_send` samples (500 in Prometheus 2.42, whose defaults
//! `/api/v1/status/config` shows; 2,000 from 2.45 on), snappy + protobuf as remote-write 1.0
//! says, up to 4 in flight. Rows:
//!
//! - **node_exporter series**: what the README's `write_relabel_configs` keeps of a 4-CPU host:
//!   `node_cpu_seconds_total` for 4 CPUs x 8 modes, memory and swap (4), filesystem avail and
//!   size for 4 mount points (8), network receive and transmit for 3 devices (6), load1 and
//!   boot time: 52 series with node_exporter's labels.
//! - **`fleetcast:*` only**: the recording rules' 11 series per host (those a node_exporter
//!   host without tcpstat and process-exporter has), evaluated at the same interval.
//!
//! One interval is sent first (every host is new then); after it, `utime + stime` of the
//! ingest process (`/proc/<pid>/stat`, in clock ticks) is read, the fleet runs `--seconds`
//! more (default 300 s: one 5-minute step, so the window holds exactly the one step close,
//! with its 10,000-record batch, that the long run has per step), and the ticks are read
//! again. CPU % = CPU seconds / wall seconds x 100, of one core. This process's own CPU (the
//! load generator) and nats-server's are not counted.
//!
//! `target/release/examples/bench_fleet_cpu [--hosts 10000 --interval 15 --seconds 300 --per-send 500]`

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use clap::Parser;
use ingest::prompb::{encode_body, Label, Sample, TimeSeries, WriteRequest};
use ingest::remote_write::now_ms;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    hosts: usize,
    /// Scrape (and rule evaluation) interval, seconds.
    #[arg(long, default_value_t = 15)]
    interval: u64,
    /// Measured seconds per row, after one interval of warm-up.
    #[arg(long, default_value_t = 300)]
    seconds: u64,
    /// Prometheus's `queue_config.max_samples_per_send`.
    #[arg(long, default_value_t = 500)]
    per_send: usize,
    /// Rows to run: `node`, `fleetcast` (comma-separated).
    #[arg(long, default_value = "node,fleetcast")]
    rows: String,
}

/// One series of one host: its labels (sorted by name, as Prometheus sends them) and how its
/// value moves with time: `base + per_s * seconds` (counters rise; gauges have `per_s` 0).
struct Series {
    labels: Vec<Label>,
    base: f64,
    per_s: f64,
}

fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
    let mut v: Vec<(&str, &str)> = pairs.to_vec();
    v.sort();
    v.iter().map(|(n, v)| Label::new(n, v)).collect()
}

/// The 52 node_exporter series of host `h` that the README's relabel rule keeps.
fn node_host(h: usize) -> Vec<Series> {
    let inst = format!("host{h:05}.dc1.example.com:9100");
    let mut out = Vec::new();
    let mut add = |name: &str, extra: &[(&str, &str)], base: f64, per_s: f64| {
        let mut pairs = vec![("__name__", name), ("instance", &inst), ("job", "node")];
        pairs.extend_from_slice(extra);
        out.push(Series { labels: labels(&pairs), base, per_s });
    };
    for cpu in ["0", "1", "2", "3"] {
        for (mode, rate) in [
            ("idle", 0.6),
            ("iowait", 0.04),
            ("irq", 0.0),
            ("nice", 0.0),
            ("softirq", 0.005),
            ("steal", 0.005),
            ("system", 0.1),
            ("user", 0.25),
        ] {
            let m = [("cpu", cpu), ("mode", mode)];
            add("node_cpu_seconds_total", &m, 1e5 * (1.0 + rate), rate);
        }
    }
    let mem = 6e9 + (h % 7) as f64 * 1e8;
    add("node_memory_MemTotal_bytes", &[], 16e9, 0.0);
    add("node_memory_MemAvailable_bytes", &[], mem, 0.0);
    add("node_memory_SwapTotal_bytes", &[], 2e9, 0.0);
    add("node_memory_SwapFree_bytes", &[], 1.5e9, 0.0);
    for (dev, fs, mnt, size) in [
        ("/dev/sda1", "ext4", "/", 1e11),
        ("/dev/sda2", "ext4", "/boot", 1e9),
        ("tmpfs", "tmpfs", "/run", 1.6e9),
        ("/dev/sdb1", "xfs", "/var/lib/data", 5e11),
    ] {
        let l = [("device", dev), ("fstype", fs), ("mountpoint", mnt)];
        add("node_filesystem_size_bytes", &l, size, 0.0);
        add("node_filesystem_avail_bytes", &l, size * 0.4, 0.0);
    }
    for (dev, rx) in [("eth0", 2e6), ("lo", 1e5), ("docker0", 5e4)] {
        let d = [("device", dev)];
        add("node_network_receive_bytes_total", &d, 1e12, rx);
        add("node_network_transmit_bytes_total", &d, 1e12, rx / 2.0);
    }
    add("node_load1", &[], 1.5, 0.0);
    add("node_boot_time_seconds", &[], 1.7e9, 0.0);
    out
}

/// The recording rules' series of host `h`: 11 `fleetcast:*` gauges.
fn fleetcast_host(h: usize) -> Vec<Series> {
    let inst = format!("host{h:05}.dc1.example.com:9100");
    [
        ("cpu_user_pct", 25.0),
        ("cpu_sys_pct", 10.0),
        ("cpu_iowait_pct", 4.0),
        ("cpu_idle_pct", 61.0),
        ("mem_used_pct", 62.5),
        ("swap_used_pct", 25.0),
        ("disk_usage_pct", 60.0),
        ("net_in_mb_s", 2.0),
        ("net_out_mb_s", 1.0),
        ("load_average", 1.5),
        ("uptime_days", 20.0),
    ]
    .into_iter()
    .map(|(m, v)| Series { labels: labels(&[("__name__", &format!("fleetcast:{m}")), ("instance", &inst)]), base: v, per_s: 0.0 })
    .collect()
}

/// `utime + stime` of process `pid`, seconds (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_seconds(pid: u32, ticks_per_s: f64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("/proc/<pid>/stat without ')'")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (u, s): (u64, u64) = (f[11].parse()?, f[12].parse()?);
    Ok((u + s) as f64 / ticks_per_s)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The release `ingest` binary with push on `listen`; its log goes to `log`.
fn start_ingest(nats: &str, listen: &str, log: &std::path::Path) -> anyhow::Result<Child> {
    let exe = std::env::current_exe()?;
    let bin = exe.parent().and_then(|examples| examples.parent()).map(|release| release.join("ingest")).context("no target folder")?;
    anyhow::ensure!(bin.exists(), "{} missing: cargo build --release --workspace --all-targets", bin.display());
    Ok(Command::new(bin)
        .args(["--nats-url", nats, "--listen", listen, "--source", "bench"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()?)
}

struct RowResult {
    samples: usize,
    requests: usize,
    refused: usize,
    wall: f64,
    cpu: f64,
    behind_ms: i64,
    records: u64,
}

/// Runs one row: a fresh ingest, one warm-up interval, then `seconds` measured.
async fn row(args: &Args, fleet: &[Vec<Series>], nats_url: &str) -> anyhow::Result<RowResult> {
    let dir = tempfile::tempdir()?;
    let listen = format!("127.0.0.1:{}", testkit::free_port());
    let mut child = start_ingest(nats_url, &listen, &dir.path().join("ingest.log"))?;
    let pid = child.id();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(format!("http://{listen}/-/ready")).send().await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "ingest not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("http://{listen}/api/v1/write");
    let ticks = clock_ticks();
    let interval_ms = args.interval as i64 * 1000;
    let intervals = 1 + (args.seconds * 1000).div_ceil(args.interval * 1000) as i64;
    let t0 = now_ms() + 200;
    let hosts = fleet.len();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(4));
    let refused = Arc::new(AtomicUsize::new(0));
    let (mut samples, mut requests, mut behind_ms) = (0usize, 0usize, 0i64);
    let mut measured: Option<(Instant, f64)> = None;
    let mut batch: Vec<TimeSeries> = Vec::with_capacity(args.per_send);
    for k in 0..intervals {
        if k == 1 {
            measured = Some((Instant::now(), cpu_seconds(pid, ticks)?));
            samples = 0;
            requests = 0;
        }
        for (h, series) in fleet.iter().enumerate() {
            // Host h is scraped at its offset within the interval.
            let t = t0 + k * interval_ms + (h as i64 * interval_ms) / hosts as i64;
            let secs = (t - t0) as f64 / 1e3;
            for s in series {
                batch.push(TimeSeries { labels: s.labels.clone(), samples: vec![Sample { value: s.base + s.per_s * secs, timestamp: t }] });
                if batch.len() < args.per_send {
                    continue;
                }
                // Full: it leaves once its newest sample has been scraped.
                let late = now_ms() - t;
                if late < 0 {
                    tokio::time::sleep(Duration::from_millis(-late as u64)).await;
                }
                behind_ms = behind_ms.max(late);
                let body = Bytes::from(encode_body(&WriteRequest { timeseries: std::mem::take(&mut batch) }));
                samples += args.per_send;
                requests += 1;
                let permit = in_flight.clone().acquire_owned().await?;
                let (client, url, refused) = (client.clone(), url.clone(), refused.clone());
                tokio::spawn(async move {
                    let ok = ingest::prompb::post(&client, &url, body).send().await.is_ok_and(|r| r.status().is_success());
                    if !ok {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(permit);
                });
            }
        }
    }
    // Every request answered, then the last tick count.
    let _ = in_flight.acquire_many(4).await?;
    let (start, cpu0) = measured.context("at least two intervals")?;
    let cpu = cpu_seconds(pid, ticks)? - cpu0;
    let wall = start.elapsed().as_secs_f64();
    let metrics = client.get(format!("http://{listen}/metrics")).send().await?.text().await?;
    let records = metrics
        .lines()
        .filter(|l| l.starts_with("fleetcast_ingest_published_total") && l.contains("records"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    let _ = child.kill();
    let _ = child.wait();
    Ok(RowResult { samples, requests, refused: refused.load(Ordering::Relaxed), wall, cpu, behind_ms, records })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let nats = testkit::NatsServer::start()?;
    jetstream::new(nats.connect().await?)
        .get_or_create_stream(stream::Config { name: "METRICS".into(), subjects: vec!["metrics.batch.>".into()], ..Default::default() })
        .await?;
    println!(
        "{} hosts, scraped every {} s, max_samples_per_send {}, {} s measured per row after one interval of warm-up",
        args.hosts, args.interval, args.per_send, args.seconds
    );
    println!("| remote-written series | series/host | samples/s | requests/s | measured | ingest CPU | % of one core | refused | records published | target < 5 % |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for name in args.rows.split(',').map(str::trim) {
        let (what, make): (&str, fn(usize) -> Vec<Series>) = match name {
            "node" => ("node_exporter (relabelled)", node_host),
            "fleetcast" => ("`fleetcast:*` only", fleetcast_host),
            other => anyhow::bail!("unknown row {other:?}: node or fleetcast"),
        };
        let fleet: Vec<Vec<Series>> = (0..args.hosts).map(make).collect();
        let r = row(&args, &fleet, &nats.url()).await?;
        let pct = 100.0 * r.cpu / r.wall;
        println!(
            "| {what} | {} | {:.0} | {:.1} | {:.0} s | {:.2} s | {pct:.2} % | {} | {} | {} |",
            fleet[0].len(),
            r.samples as f64 / r.wall,
            r.requests as f64 / r.wall,
            r.wall,
            r.cpu,
            r.refused,
            r.records,
            if pct < 5.0 { "met" } else { "MISSED" }
        );
        if r.behind_ms > 1_000 {
            println!("(the load generator fell up to {} ms behind the scrape schedule)", r.behind_ms);
        }
    }
    Ok(())
}
