//! `--pull history`, the way `just up` runs it: Debian's Prometheus already holds six hours of
//! this machine's node_exporter series (loaded with promtool before it starts, under the very
//! `instance` and `job` labels its scrape of the real node_exporter gives), scrapes the
//! exporter and remote-writes to `ingest`. The first pushed sample of the machine must bring
//! its history from the query API in one batch, before its first pushed step closes, so it is
//! forecast at the first tick; the pushed steps then start exactly where the history ends. A
//! host the TSDB knows but that is never pushed is not read. Every wait is a condition with a
//! deadline.

use std::time::{Duration, Instant};

use schemas::STEP_MS;
use testkit::prometheus::NodeExporter;

use crate::backfill::{history, prometheus_with};
use crate::common::{boundary_ago, now_ms, request, series, Stack};
use crate::prometheus_push::highest_sent_ms;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_host_prometheus_knows_gets_its_history_before_its_first_pushed_step() {
    let exporter = NodeExporter::start(&[]).expect("node_exporter");
    let machine = exporter.target();
    let start = boundary_ago(6 * 12);
    let text = history(&[&machine, "quiet:9100"], start, now_ms() - 30_000);
    let http = testkit::free_port();
    let config = format!(
        "global:\n  scrape_interval: 2s\n\
         scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['{machine}']\n\
         remote_write:\n  - url: http://127.0.0.1:{http}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 1s\n",
    );
    let prom = prometheus_with(&config, &text);
    let mut s =
        Stack::start_at(http, &["--prometheus-url", &prom.url(), "--pull", "history", "--backfill", "6h", "--close-after", "5s"]).await;

    // The history batch: this machine's steps, oldest first, none of `quiet`. A pushed step
    // that closes meanwhile (the test started just before a boundary) is kept for below.
    let mut pushed = Vec::new();
    let (hist, clock) = loop {
        let b = s.next_batch(Duration::from_secs(90)).await;
        assert!(b.records.iter().all(|r| r.server != "quiet"), "a host that is never pushed is not read: {b:?}");
        let mine: Vec<_> = b.records.iter().filter(|r| r.server == "127_0_0_1").cloned().collect();
        if mine.len() > 1 {
            break (mine, b.clock_ms);
        }
        pushed.push(b);
    };
    assert!(hist.len() >= 60, "6 h of steps, got {}", hist.len());
    assert!(hist.windows(2).all(|w| w[1].ts_ms == w[0].ts_ms + STEP_MS), "one record per step, oldest first");
    assert!(hist[0].ts_ms <= start + STEP_MS, "from the history's start");
    let last = hist.last().map_or(0, |r| r.ts_ms);
    assert!(last + STEP_MS <= clock, "measured before the batch's clock");
    let near = |v: Option<f32>, want: f32| v.is_some_and(|v| (v - want).abs() < 0.05);
    for r in &hist {
        let m = &r.metrics;
        assert!(
            near(m.mem_used_pct, 75.0) && near(m.disk_usage_pct, 40.0) && near(m.load_average, 1.5),
            "the history's values, not this machine's: {m:?}"
        );
        assert!(near(m.cpu_idle_pct, 60.0) && near(m.cpu_user_pct, 30.0), "{m:?}");
    }

    // The first pushed step starts where the history ends: close it with a sample past its
    // end (+ --close-after) once Prometheus has sent 8 s of it.
    let first_pushed = last + STEP_MS;
    let is_first = |b: &schemas::MetricsBatch| b.clock_ms == first_pushed + STEP_MS;
    let pushed = match pushed.into_iter().find(is_first) {
        Some(b) => b,
        None => {
            let deadline = Instant::now() + Duration::from_secs(60);
            while highest_sent_ms(&prom).await.is_none_or(|t| t < first_pushed + 8_000) {
                assert!(Instant::now() < deadline, "Prometheus sent too little");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let closer = series(&[("__name__", "node_load1"), ("instance", "zz-closer:9100")], &[(first_pushed + STEP_MS + 6_000, 1.0)]);
            assert_eq!(s.write(&request(vec![closer])).await, 204);
            loop {
                let b = s.next_batch(Duration::from_secs(60)).await;
                if is_first(&b) {
                    break b;
                }
            }
        }
    };
    let live =
        pushed.records.iter().find(|r| r.server == "127_0_0_1").unwrap_or_else(|| panic!("this machine's first pushed step: {pushed:?}"));
    assert_eq!(live.ts_ms, first_pushed);
    assert!(live.metrics.mem_used_pct.is_some(), "{live:?}");
}
