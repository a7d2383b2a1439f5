//! End to end with real parts: Debian's node_exporter is scraped by Debian's Prometheus, which
//! remote-writes to `ingest`; a batch for this very machine, with plausible CPU, memory and
//! disk, must arrive on NATS once its 5-minute step has closed (so this test waits for the next
//! step boundary: up to about 5 minutes).

use std::time::Duration;

use testkit::prometheus::{NodeExporter, Prometheus};

use crate::common::Stack;

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
    // The first step seen is partial (it may hold a single scrape); wait for a complete one.
    let deadline = std::time::Instant::now() + Duration::from_secs(12 * 60);
    let record = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no batch for this machine; prometheus log:\n{}",
            prom.log()
        );
        let batch = s.next_batch(Duration::from_secs(11 * 60)).await;
        assert_eq!(batch.source, "ittest");
        let Some(r) = batch.records.into_iter().find(|r| r.server == "127_0_0_1") else {
            continue;
        };
        if r.metrics.cpu_idle_pct.is_some() && r.metrics.mem_used_pct.is_some() {
            break r;
        }
    };
    let m = &record.metrics;
    let pct = |v: Option<f32>| v.is_some_and(|v| (0.0..=100.0).contains(&v));
    assert!(
        pct(m.cpu_idle_pct) && pct(m.cpu_user_pct) && pct(m.cpu_sys_pct),
        "{m:?}"
    );
    assert!(
        m.mem_used_pct.is_some_and(|v| v > 0.0 && v < 100.0),
        "{m:?}"
    );
    assert!(
        m.disk_usage_pct.is_some_and(|v| v > 0.0 && v <= 100.0),
        "root filesystem: {m:?}"
    );
    assert!(
        m.load_average.is_some_and(|v| v >= 0.0) && m.uptime_days.is_some_and(|v| v > 0.0),
        "{m:?}"
    );
    assert!(m.net_in_mb_s.is_some(), "{m:?}");
    assert_eq!(record.ts_ms % schemas::STEP_MS, 0);
    assert!(s.counter("samples", "accepted").await > 0);
    assert!(
        s.counter("samples", "ignored").await > 0,
        "node_exporter's other series are ignored, not rejected"
    );
}
