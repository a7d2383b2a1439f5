//! End to end with real parts: Debian's node_exporter is scraped by Debian's Prometheus, which
//! remote-writes to `ingest`; a batch for this very machine, with plausible CPU, memory and
//! disk, must arrive on NATS once its 5-minute step has closed. The test does not wait for the
//! wall clock's step boundary: once Prometheus reports (its own
//! `prometheus_remote_storage_queue_highest_sent_timestamp_seconds`) that ingest has taken at
//! least four scrapes of the current step (8 s of them since it was ready), a second sender remote-writes one sample stamped
//! past the step's end plus `--close-after`, and the watermark closes the step, as a sample
//! from any host past that point does. Every wait is a condition with a deadline: seconds.

use std::time::{Duration, Instant};

use testkit::prometheus::{NodeExporter, Prometheus};

use crate::common::{now_ms, request, series, Stack};

/// The newest sample timestamp (ms) Prometheus has remote-written successfully, if any.
pub async fn highest_sent_ms(prom: &Prometheus) -> Option<i64> {
    let text = reqwest::get(format!("{}/metrics", prom.url())).await.ok()?.text().await.ok()?;
    text.lines()
        .filter(|l| l.starts_with("prometheus_remote_storage_queue_highest_sent_timestamp_seconds{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|s| (s * 1e3) as i64)
        .max()
        .filter(|&ms| ms > 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_remote_writes_this_machine() {
    let mut s = Stack::start(&["--close-after", "5s"]).await;
    let exporter = NodeExporter::start(&[]).expect("node_exporter");
    let config = format!(
        "global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\n\
         scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['{target}']\n\
         remote_write:\n  - url: {ingest}\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 1s\n",
        target = exporter.target(),
        ingest = s.url("/api/v1/write"),
    );
    let prom = Prometheus::start(&config).expect("prometheus");
    // Ready: it scrapes from here on.
    let started = now_ms();
    // Wait until ingest holds at least 4 scrapes (8 s of them) of the newest step.
    let deadline = Instant::now() + Duration::from_secs(60);
    let sent = loop {
        assert!(Instant::now() < deadline, "Prometheus sent too little to ingest; its log:\n{}\ningest log:\n{}", prom.log(), s.log_text());
        if let Some(sent) = highest_sent_ms(&prom).await {
            let step = ingest::align::step_start(sent);
            if sent >= step.max(started) + 8_000 {
                break sent;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let step = ingest::align::step_start(sent);
    let end = step + schemas::STEP_MS;
    // Another host's sample past the step's end + --close-after moves the watermark on.
    let closer = series(&[("__name__", "node_load1"), ("instance", "zz-closer:9100")], &[(end + 6_000, 1.0)]);
    assert_eq!(s.write(&request(vec![closer])).await, 204);
    let record = loop {
        let batch = s.next_batch(Duration::from_secs(30)).await;
        assert_eq!(batch.source, "ittest");
        assert!(batch.clock_ms <= end, "{batch:?}");
        if batch.clock_ms == end {
            let r = batch.records.into_iter().find(|r| r.server == "127_0_0_1");
            break r.expect("this machine in its step's batch");
        }
    };
    let m = &record.metrics;
    let pct = |v: Option<f32>| v.is_some_and(|v| (0.0..=100.0).contains(&v));
    assert!(pct(m.cpu_idle_pct) && pct(m.cpu_user_pct) && pct(m.cpu_sys_pct), "{m:?}");
    assert!(m.mem_used_pct.is_some_and(|v| v > 0.0 && v < 100.0), "{m:?}");
    assert!(m.disk_usage_pct.is_some_and(|v| v > 0.0 && v <= 100.0), "root filesystem: {m:?}");
    assert!(m.load_average.is_some_and(|v| v >= 0.0) && m.uptime_days.is_some_and(|v| v > 0.0), "{m:?}");
    assert!(m.net_in_mb_s.is_some(), "{m:?}");
    assert_eq!(record.ts_ms, step);
    assert!(s.counter("samples", "accepted").await > 0);
    assert!(s.counter("samples", "ignored").await > 0, "node_exporter's other series are ignored, not rejected");
}
