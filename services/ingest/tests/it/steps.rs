//! Remote-write requests with explicit timestamps, built here with prost: steps close as the
//! timestamps move on, every host of a step is in its batch, counters become rates across a
//! reset, stale markers are no value, NaN and a missing host label are rejected and reported.

use std::time::Duration;

use ingest::align::STALE_NAN_BITS;
use schemas::{RejectReason, STEP_MS};

use crate::common::{boundary_ago, request, series, Stack};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_closes_into_one_batch_with_every_host() {
    let mut s = Stack::start(&["--close-after", "30s"]).await;
    let t0 = boundary_ago(10);
    let at = |sec: i64| t0 + sec * 1000;
    let stale = f64::from_bits(STALE_NAN_BITS);
    let mut all = Vec::new();
    for (host, avail) in [("web1.prod:9100", 2e9), ("db-1:9100", 6e9)] {
        let cpu = |mode: &str, rate: f64| {
            let samples: Vec<(i64, f64)> = (0..5).map(|i| (at(i * 60), 1e4 + rate * (i * 60) as f64)).collect();
            series(&[("__name__", "node_cpu_seconds_total"), ("cpu", "0"), ("instance", host), ("mode", mode)], &samples)
        };
        all.push(cpu("idle", 0.6));
        all.push(cpu("user", 0.3));
        all.push(cpu("system", 0.1));
        all.push(series(&[("__name__", "node_memory_MemTotal_bytes"), ("instance", host)], &[(at(0), 8e9), (at(120), 8e9)]));
        all.push(series(&[("__name__", "node_memory_MemAvailable_bytes"), ("instance", host)], &[(at(0), avail), (at(120), avail)]));
        // 1 MB/s with a counter reset in the middle.
        let rx = [(at(0), 5e9), (at(60), 5e9 + 60e6), (at(120), 60e6), (at(180), 120e6)];
        all.push(series(&[("__name__", "node_network_receive_bytes_total"), ("device", "eth0"), ("instance", host)], &rx));
        all.push(series(
            &[("__name__", "node_network_receive_bytes_total"), ("device", "lo"), ("instance", host)],
            &[(at(0), 0.0), (at(60), 9e12)],
        ));
        // The stale marker is no value; NaN is rejected.
        all.push(series(
            &[("__name__", "node_load1"), ("instance", host)],
            &[(at(0), 2.0), (at(30), stale), (at(60), 4.0), (at(90), f64::NAN)],
        ));
        all.push(series(&[("__name__", "go_goroutines"), ("instance", host)], &[(at(0), 12.0)]));
    }
    all.push(series(&[("__name__", "node_load1"), ("job", "node")], &[(at(0), 1.0)]));
    assert_eq!(s.write(&request(all)).await, 204);
    // A sample 31 s past the step's end closes it.
    let closer = series(&[("__name__", "node_load1"), ("instance", "db-1:9100")], &[(t0 + STEP_MS + 31_000, 1.0)]);
    assert_eq!(s.write(&request(vec![closer])).await, 204);

    let batch = s.next_batch(WAIT).await;
    assert_eq!((batch.source.as_str(), batch.clock_ms), ("ittest", t0 + STEP_MS));
    let names: Vec<&str> = batch.records.iter().map(|r| r.server.as_str()).collect();
    assert_eq!(names, ["db-1", "web1_prod"], "port stripped, '.' mapped to '_'");
    for r in &batch.records {
        let m = &r.metrics;
        assert_eq!(r.ts_ms, t0);
        let near = |v: Option<f32>, want: f32| v.is_some_and(|v| (v - want).abs() < 0.01);
        assert!(near(m.cpu_idle_pct, 60.0) && near(m.cpu_user_pct, 30.0) && near(m.cpu_sys_pct, 10.0), "{m:?}");
        assert!(near(m.net_in_mb_s, 1.0), "reset handled, lo left out: {m:?}");
        assert!(near(m.load_average, 3.0), "stale marker and NaN are no value: {m:?}");
        assert_eq!((m.cpu_iowait_pct, m.disk_usage_pct, m.swap_used_pct, m.uptime_days), (None, None, None, None), "unknown stays unknown");
    }
    assert_eq!(batch.records[0].metrics.mem_used_pct, Some(25.0));
    assert_eq!(batch.records[1].metrics.mem_used_pct, Some(75.0));

    let nan = s.rejection_where(WAIT, |r| r.error.reason == RejectReason::NotFinite).await;
    assert_eq!((nan.source.as_str(), nan.error.field.as_str()), ("ittest", "sample.value"));
    assert!(nan.server.is_some());
    let no_host = s.rejection_where(WAIT, |r| r.error.reason == RejectReason::MissingField).await;
    assert_eq!(no_host.error.field, "labels.instance");
    assert_eq!(s.counter("rejected", "not_finite").await, 2);
    assert_eq!(s.counter("rejected", "missing_field").await, 1);
    assert!(s.counter("samples", "stale").await >= 2);

    // A sample for the closed step is late: rejected with a reason, never silently dropped.
    let late = series(&[("__name__", "node_load1"), ("instance", "db-1:9100")], &[(t0 + 10_000, 1.0)]);
    assert_eq!(s.write(&request(vec![late])).await, 204);
    let r = s.rejection_where(WAIT, |r| r.error.reason == RejectReason::TimestampSkew).await;
    assert_eq!((r.error.field.as_str(), r.server.as_deref()), ("sample.timestamp", Some("db-1")));
}
