//! The predictor's `/metrics` as ops would use it: a real nats-server, the real predictor
//! binary with `--metrics-listen` and the shipped model, batches the way an agent sends them
//! (one per 5-minute step) plus one bad message, and Debian's real Prometheus scraping the
//! predictor every second with `deploy/prometheus/fleetcast_rules.yml` loaded. PromQL through
//! its HTTP API must return the risk of a server held at 98 % CPU (critical), a predicted disk
//! breach, and the rejected-records counter.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::*;
use schemas::{MetricRecord, Metrics, MetricsBatch, STEP_MS};

const STEPS: i64 = 48;

/// Step `k`'s records: a disk filling 0.5 %/step, a web server at 98 % CPU for the last hour,
/// a quiet database.
fn records(k: i64) -> Vec<(&'static str, Metrics)> {
    let mut disk = base_record();
    disk.disk_usage_pct = Some(50.0 + 0.5 * k as f32);
    let mut hot = base_record();
    if k >= STEPS - 12 {
        hot.cpu_idle_pct = Some(2.0);
        hot.cpu_user_pct = Some(90.0);
        hot.cpu_sys_pct = Some(6.0);
        hot.cpu_iowait_pct = Some(2.0);
    }
    vec![("ppgen001", disk), ("ppweb002", hot), ("ppdb003", base_record())]
}

struct Predictor {
    child: Child,
    log: std::path::PathBuf,
}

impl Predictor {
    fn start(nats: &str, metrics_port: u16, dir: &std::path::Path) -> Predictor {
        let log = dir.join("predictor.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_predictor"))
            .args(["--nats-url", nats, "--model"])
            .arg(testkit::workspace_root().join("models/tft.onnx"))
            .args(["--coalesce", "20ms", "--intra-threads", "1", "--inference-workers", "1"])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .env("ORT_DYLIB_PATH", testkit::ort_dylib())
            .env("RUST_LOG", "info")
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .expect("the predictor binary starts");
        Predictor { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the "predictor ready" log line (streams created, model loaded).
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let log = self.log();
            if log.contains("predictor ready") {
                assert!(log.contains("serving metrics at /metrics"), "{log}");
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the predictor exited with {status}:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("predictor not ready within 120 s:\n{}", self.log());
    }
}

impl Drop for Predictor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `promql` until `check` accepts its result, or panics after `within` with the last one.
fn until(
    prom: &testkit::prometheus::Prometheus,
    promql: &str,
    within: Duration,
    check: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + within;
    let mut last = Vec::new();
    while Instant::now() < deadline {
        match prom.query(promql) {
            Ok(r) if check(&r) => return r,
            Ok(r) => last = r,
            Err(e) => eprintln!("{e:#}"),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{promql}: no matching answer within {within:?}; last {last:?}\nprometheus log:\n{}", prom.log());
}

fn value(series: &serde_json::Value) -> f64 {
    series["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_forecasts_and_rejections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = testkit::NatsServer::start().expect("nats-server");
    let client = nats.connect().await.expect("connect");
    let js = jetstream::new(client.clone());
    let mut snaps = Snapshots::subscribe(&client).await;
    client.flush().await.expect("flush");
    let port = testkit::free_port();
    let mut predictor = Predictor::start(&nats.url(), port, dir.path());
    predictor.wait_ready().await;

    let t = t0() - STEPS * STEP_MS;
    for k in 0..STEPS {
        let ts = t + k * STEP_MS;
        let recs = records(k)
            .into_iter()
            .map(|(server, metrics)| MetricRecord { server: server.into(), ts_ms: ts, profile: None, metrics })
            .collect();
        publish_batch(&js, &MetricsBatch::new(SOURCE, k as u64 + 1, ts + STEP_MS, recs)).await;
        // One tick per step, as with a live source (the alert book sees every step).
        let deadline = Duration::from_secs(60);
        if tokio::time::timeout(deadline, snaps.until(deadline, |s| s.tick_ms == ts)).await.is_err() {
            panic!("no snapshot for step {k}; predictor log:\n{}", predictor.log());
        }
    }
    publish_raw(&js, b"\xc1 not a batch".to_vec()).await;

    let rules = testkit::workspace_root().join("deploy/prometheus/fleetcast_rules.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: predictor\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n",
        rules.display()
    );
    let prom = testkit::prometheus::Prometheus::start(&config).expect("prometheus");
    let within = Duration::from_secs(60);

    until(&prom, "up{job=\"predictor\"}", within, |r| r.len() == 1 && value(&r[0]) == 1.0);
    let risk = until(&prom, "fleetcast_risk_score{server=\"ppweb002\"}", within, |r| r.len() == 1);
    assert_eq!(risk[0]["metric"]["profile"], "web_api");
    assert!(value(&risk[0]) >= 50.0, "98 % CPU held for an hour: risk {risk:?}");
    let level = until(&prom, "fleetcast_level{server=\"ppweb002\"}", within, |r| r.len() == 1);
    assert_eq!(value(&level[0]), 3.0, "critical: {level:?}");
    let quiet = until(&prom, "fleetcast_level{server=\"ppdb003\"}", within, |r| r.len() == 1);
    assert!(value(&quiet[0]) <= 1.0, "the quiet database: {quiet:?}");

    // The bad message: one malformed rejection from source `test`.
    let rejected = until(&prom, "fleetcast_predictor_records_rejected_total", within, |r| !r.is_empty());
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["metric"]["source"], SOURCE);
    assert_eq!(rejected[0]["metric"]["reason"], "malformed");
    assert_eq!(value(&rejected[0]), 1.0);
    let accepted = until(&prom, "sum(fleetcast_predictor_records_accepted_total)", within, |r| r.len() == 1);
    assert_eq!(value(&accepted[0]), (3 * STEPS) as f64);

    // The filling disk: a forecast above today's value, and an open predicted alert.
    let disk =
        until(&prom, "fleetcast_forecast{server=\"ppgen001\",target=\"disk\",quantile=\"0.5\",horizon=\"8h\"}", within, |r| r.len() == 1);
    assert!(value(&disk[0]) > 73.0, "rising disk at 8 h: {disk:?}");
    let breach = until(&prom, "fleetcast_time_to_breach_seconds{server=\"ppgen001\",target=\"disk\"}", within, |r| !r.is_empty());
    assert!(breach.iter().all(|s| value(s) > 0.0), "{breach:?}");
    // 5 horizons x 3 quantiles per forecast target.
    let n = until(&prom, "count(fleetcast_forecast{server=\"ppdb003\",target=\"cpu\"})", within, |r| r.len() == 1);
    assert_eq!(value(&n[0]), 15.0);

    // The example rules load and evaluate on these series.
    until(&prom, "fleetcast:servers:count_by_level{level=\"critical\"}", within, |r| r.len() == 1 && value(&r[0]) >= 1.0);
    let alerts = until(&prom, "ALERTS{alertname=\"FleetcastServerCritical\"}", within, |r| !r.is_empty());
    assert!(alerts.iter().any(|a| a["metric"]["server"] == "ppweb002"), "{alerts:?}");
}
