//! Pull mode with history: six hours of node_exporter-like series for a host are loaded into a
//! real Prometheus with `promtool tsdb create-blocks-from openmetrics` before it starts; `ingest
//! --prometheus-url` must publish those steps first, oldest first, so the host is forecast at
//! the first tick. Also: a Prometheus that is down leaves remote-write working.

use std::fmt::Write;
use std::process::Command;
use std::time::Duration;

use schemas::STEP_MS;
use testkit::prometheus::{promtool, Prometheus};

use crate::common::{boundary_ago, now_ms, request, series, Stack};

/// OpenMetrics text of `hosts` over [start, end) every 60 s: CPU idle 60 %, user 30 %, system
/// 10 %, memory 75 % used, root disk 40 % used, load 1.5.
pub fn history(hosts: &[&str], start_ms: i64, end_ms: i64) -> String {
    let mut out = String::new();
    let mut t = start_ms;
    while t < end_ms {
        let secs = (t - start_ms) as f64 / 1e3;
        let ts = t as f64 / 1e3;
        for h in hosts {
            let l = format!("instance=\"{h}\",job=\"node\"");
            for (mode, rate) in [("idle", 0.6), ("user", 0.3), ("system", 0.1)] {
                let _ = writeln!(out, "node_cpu_seconds_total{{cpu=\"0\",mode=\"{mode}\",{l}}} {} {ts}", 1000.0 + rate * secs);
            }
            let _ = writeln!(out, "node_memory_MemTotal_bytes{{{l}}} 8e+09 {ts}");
            let _ = writeln!(out, "node_memory_MemAvailable_bytes{{{l}}} 2e+09 {ts}");
            let _ = writeln!(out, "node_filesystem_size_bytes{{mountpoint=\"/\",{l}}} 1e+11 {ts}");
            let _ = writeln!(out, "node_filesystem_avail_bytes{{mountpoint=\"/\",{l}}} 6e+10 {ts}");
            let _ = writeln!(out, "node_load1{{{l}}} 1.5 {ts}");
        }
        t += 60_000;
    }
    out.push_str("# EOF\n");
    out
}

/// A real Prometheus whose TSDB holds `openmetrics` (loaded with promtool before it starts).
fn prometheus_with_history(openmetrics: &str) -> Prometheus {
    prometheus_with("global:\n  scrape_interval: 15s\n", openmetrics)
}

/// A real Prometheus running `config` whose TSDB holds `openmetrics` from the start.
pub fn prometheus_with(config: &str, openmetrics: &str) -> Prometheus {
    Prometheus::start_with_data(config, |data| {
        let file = data.join("history.om");
        std::fs::write(&file, openmetrics)?;
        let out = Command::new(promtool()).args(["tsdb", "create-blocks-from", "openmetrics"]).arg(&file).arg(data).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        anyhow::ensure!(out.status.success(), "promtool: {stderr}");
        std::fs::remove_file(&file)?;
        Ok(())
    })
    .expect("prometheus with history")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_prometheus_knows_is_backfilled_before_the_first_tick() {
    let end = now_ms() - 30_000;
    let start = boundary_ago(6 * 12);
    // The hosts were down for 17 minutes two hours in: the steps around the gap have windows
    // their samples only partly cover, where `rate()` understates every CPU mode alike.
    let gap = (start + 2 * 3_600_000 + 90_000, start + 2 * 3_600_000 + 90_000 + 17 * 60_000);
    let text: String = history(&["histhost:9100", "other.example:9100"], start, end)
        .lines()
        .filter(|l| {
            let ts = l.rsplit(' ').next().and_then(|t| t.parse::<f64>().ok()).map_or(0, |t| (t * 1e3) as i64);
            !(gap.0..gap.1).contains(&ts)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let prom = prometheus_with_history(&text);
    let mut s = Stack::start(&["--prometheus-url", &prom.url(), "--backfill", "6h", "--pull-delay", "0s"]).await;

    let mut clocks = Vec::new();
    while clocks.len() < 60 {
        let b = s.next_batch(Duration::from_secs(120)).await;
        let r = b.records.iter().find(|r| r.server == "histhost").unwrap_or_else(|| panic!("histhost in {b:?}"));
        assert_eq!(r.ts_ms, b.clock_ms - STEP_MS);
        let m = &r.metrics;
        let near = |v: Option<f32>, want: f32| v.is_some_and(|v| (v - want).abs() < 0.05);
        assert!(near(m.mem_used_pct, 75.0) && near(m.disk_usage_pct, 40.0) && near(m.load_average, 1.5), "{m:?}");
        // Every step with two CPU samples in its window, the first and those at the gap's
        // edges too: the shares, not rates a partly covered window understates.
        if m.cpu_idle_pct.is_some() {
            assert!(near(m.cpu_idle_pct, 60.0) && near(m.cpu_user_pct, 30.0) && near(m.cpu_sys_pct, 10.0), "{}: {m:?}", b.clock_ms);
        }
        assert!(b.records.iter().any(|r| r.server == "other_example"), "every host of the step");
        clocks.push(b.clock_ms);
    }
    assert_eq!(s.counter("rejected", "inconsistent").await, 0, "no step refused as inconsistent; log:\n{}", s.log_text());
    // One batch per step, oldest first; only steps whose 5-minute window the gap emptied
    // (at most 3 of a 17-minute gap) have none.
    assert!(clocks.windows(2).all(|w| w[1] > w[0] && (w[1] - w[0]) % STEP_MS == 0), "{clocks:?}");
    let missing: i64 = clocks.windows(2).map(|w| (w[1] - w[0]) / STEP_MS - 1).sum();
    assert!((1..=3).contains(&missing), "the gap's empty steps only: {missing} missing in {clocks:?}");
    assert!(clocks[0] <= start + 2 * STEP_MS, "the backfill starts at the history's start: {clocks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_that_is_down_leaves_remote_write_working() {
    let dead = format!("http://127.0.0.1:{}", testkit::free_port());
    let mut s = Stack::start(&["--prometheus-url", &dead, "--query-attempts", "2", "--close-after", "1s"]).await;
    let t0 = boundary_ago(4);
    let load = |t: i64| series(&[("__name__", "node_load1"), ("instance", "h1:9100")], &[(t, 2.0)]);
    assert_eq!(s.write(&request(vec![load(t0), load(t0 + STEP_MS + 2_000)])).await, 204);
    let b = s.next_batch(Duration::from_secs(60)).await;
    assert_eq!((b.clock_ms, b.records[0].metrics.load_average), (t0 + STEP_MS, Some(2.0)));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while s.counter("pull_errors", "mem_used_pct").await == 0 {
        assert!(std::time::Instant::now() < deadline, "pull errors are counted; log:\n{}", s.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_with_more_hosts_than_the_fleet_bound_is_cut_and_counted() {
    let end = now_ms() - 30_000;
    let start = boundary_ago(12);
    let names: Vec<String> = (0..30).map(|i| format!("bulk{i:02}:9100")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let text = history(&refs, start, end);
    let prom = prometheus_with_history(&text);
    let args = ["--prometheus-url", &prom.url(), "--backfill", "1h", "--pull-delay", "0s", "--max-hosts", "5"];
    let mut s = Stack::start(&args).await;
    for _ in 0..5 {
        let b = s.next_batch(Duration::from_secs(120)).await;
        assert!(!b.records.is_empty() && b.records.len() <= 5, "{} records", b.records.len());
    }
    let r = s.rejection_where(Duration::from_secs(60), |r| r.error.reason == schemas::RejectReason::FleetLimit).await;
    assert!(r.error.rule.contains("at most 5 hosts"), "{}", r.error.rule);
    assert!(s.counter("hosts_over_limit", "mem_used_pct").await >= 25);
}
