//! Pull against a query API in trouble: a real Prometheus that is down at start and comes back,
//! and one behind a proxy that answers 503 or too slowly. Each failure is retried with backoff,
//! counted by reason and metric, logged, the metrics that answer keep flowing, and once the
//! API answers again the missed steps are re-read: no data the TSDB holds is lost. The first
//! live round is brought to a few seconds after start (`live_round_in`), never waited for.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use schemas::{Metrics, MetricsBatch, STEP_MS};

use crate::common::{now_ms, Stack};
use crate::promdata::{history, live_round_in, prometheus, write, Proxy};

const WINDOW_STEPS: i64 = 12; // --backfill 1h

/// Adds `host`'s records of `b` to `steps` (step start -> metrics, merged).
fn collect(steps: &mut BTreeMap<i64, Metrics>, b: &MetricsBatch, host: &str) {
    for r in b.records.iter().filter(|r| r.server == host) {
        let slot = steps.entry(r.ts_ms).or_default();
        for (m, v) in r.metrics.known() {
            slot.set(m, Some(v));
        }
    }
}

/// Reads batches until the one with `clock_ms == end` (the live round), collecting `host`'s
/// records into `steps`.
async fn until_live(s: &mut Stack, end: i64, host: &str, steps: &mut BTreeMap<i64, Metrics>) {
    loop {
        let b: MetricsBatch = s.next_batch(Duration::from_secs(90)).await;
        collect(steps, &b, host);
        assert!(b.clock_ms <= end, "no live batch at {end}: {}", b.clock_ms);
        if b.clock_ms == end {
            return;
        }
    }
}

fn complete(m: &Metrics) -> bool {
    let near = |v: Option<f32>, want: f32| v.is_some_and(|v| (v - want).abs() < 0.05);
    // CPU as shares: at the history's edge Prometheus's rate() extrapolates a window short of
    // samples, scaling every mode alike.
    let cpu = m.cpu_idle_pct.zip(m.cpu_user_pct).zip(m.cpu_sys_pct);
    let idle_share = cpu.map(|((i, u), s)| i / (i + u + s));
    near(idle_share, 0.6) && near(m.mem_used_pct, 75.0) && near(m.disk_usage_pct, 40.0) && near(m.load_average, 1.5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_down_at_start_loses_no_steps_once_it_is_back() {
    let mut prom = prometheus();
    let now = now_ms();
    write(&prom, history("steady:9100", now - 90 * 60_000, now)).await;
    prom.stop().expect("stop prometheus");
    let (delay, live_end, round_at) = live_round_in(Duration::from_secs(30));
    let mut s = Stack::start(&["--prometheus-url", &prom.url(), "--backfill", "1h", "--pull-delay", &delay, "--query-attempts", "2"]).await;
    // Every metric's backfill query fails (connection refused), is retried once, and counted.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut failed = 0;
        for m in schemas::Metric::ALL {
            failed += (s.counter("pull_errors", m.name()).await > 0) as usize;
        }
        if failed == schemas::Metric::ALL.len() {
            break;
        }
        assert!(Instant::now() < deadline, "log:\n{}", s.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(s.counter("query_failures", "unreachable").await >= 28);
    let log = s.log_text();
    assert!(log.contains("retrying in") && log.contains("left unknown"), "{log}");
    assert!(now_ms() < round_at, "the test was too slow to restart in time");
    prom.restart().expect("restart prometheus");

    let mut steps = BTreeMap::new();
    until_live(&mut s, live_end, "steady", &mut steps).await;
    let want: Vec<i64> = (0..=WINDOW_STEPS).map(|k| live_end - STEP_MS - k * STEP_MS).rev().collect();
    assert_eq!(steps.keys().copied().collect::<Vec<_>>(), want, "the window missed while down, and the live step");
    for (ts, m) in &steps {
        assert!(complete(m), "step {ts}: {m:?}");
    }
    assert_eq!(s.counter("pull_steps_lost", "mem_used_pct").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_fail_or_are_slow_are_retried_counted_and_refilled() {
    let prom = prometheus();
    let now = now_ms();
    write(&prom, history("steady:9100", now - 90 * 60_000, now)).await;
    let proxy = Proxy::start(prom.url()).await;
    proxy.set(|f| {
        f.first_attempt_503 = true;
        f.slow = Some(("node_load1".into(), Duration::from_secs(3)));
    });
    let (delay, live_end, round_at) = live_round_in(Duration::from_secs(30));
    let mut s = Stack::start(&[
        "--prometheus-url",
        &proxy.url(),
        "--backfill",
        "1h",
        "--pull-delay",
        &delay,
        "--query-attempts",
        "2",
        "--query-timeout",
        "1s",
    ])
    .await;
    // The backfill: every step, with every metric but the slow one (its query timed out twice).
    let mut steps = BTreeMap::new();
    let mut backfilled = 0;
    while backfilled < WINDOW_STEPS {
        let b = s.next_batch(Duration::from_secs(60)).await;
        collect(&mut steps, &b, "steady");
        let r = b.records.iter().find(|r| r.server == "steady").unwrap_or_else(|| panic!("steady in {b:?}"));
        assert_eq!(r.metrics.load_average, None, "{:?}", r.metrics);
        let mut with_load = r.metrics;
        with_load.load_average = Some(1.5);
        assert!(complete(&with_load), "{:?}", r.metrics);
        backfilled += 1;
    }
    assert_eq!(s.counter("pull_errors", "load_average").await, 1);
    assert_eq!(s.counter("pull_errors", "mem_used_pct").await, 0, "503 retried");
    assert!(s.counter("query_failures", "status_5xx").await >= 13);
    assert_eq!(s.counter("query_failures", "timeout").await, 2);
    let log = s.log_text();
    assert!(log.contains("503") && log.contains("timeout"), "{log}");

    // The API is quick again: the live round re-reads the load of every backfilled step.
    proxy.set(|f| f.slow = None);
    assert!(now_ms() < round_at, "the test was too slow");
    until_live(&mut s, live_end, "steady", &mut steps).await;
    assert_eq!(steps.len() as i64, WINDOW_STEPS + 1, "{steps:?}");
    for (ts, m) in &steps {
        assert!(complete(m), "step {ts}: {m:?}");
    }
}
