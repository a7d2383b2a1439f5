//! Debian's `prometheus` scrapes the generator's and the dashboard's `/metrics` while the
//! whole stack runs (the predictor's page has its own test: `services/predictor/tests/
//! prometheus_scrape.rs`): PromQL through Prometheus's HTTP API returns the generator's
//! ticks and published records, the dashboard's snapshots received and the render time of a
//! page that was requested.

use std::time::{Duration, Instant};

use e2e::{all_forecast, auth_server, url_for, Service, SnapshotWatch};
use testkit::prometheus::Prometheus;

const SERVERS: usize = 12;

/// The first sample's value of `promql`, once it returns one that `ok` accepts.
async fn until_value(prom: &Prometheus, promql: &str, timeout: Duration, ok: impl Fn(f64) -> bool) -> anyhow::Result<f64> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("nothing");
    while Instant::now() < deadline {
        match prom.query(promql) {
            Ok(result) => {
                let v = result.first().and_then(|r| r["value"][1].as_str()).and_then(|s| s.parse::<f64>().ok());
                if let Some(v) = v.filter(|v| ok(*v)) {
                    return Ok(v);
                }
                last = format!("{result:?}");
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("{promql}: no accepted value within {timeout:?}; last {last}\nprometheus log:\n{}", prom.log())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_generator_and_the_dashboard() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let nats = auth_server()?;
    let env = |user: &str| [("NATS_URL", url_for(&nats, user))];
    let client = fleetbus::connect("test", &url_for(&nats, "admin")).await?;
    let mut watch = SnapshotWatch::new(&client).await?;

    let gen_metrics = format!("127.0.0.1:{}", testkit::free_port());
    let dash_metrics = format!("127.0.0.1:{}", testkit::free_port());
    let listen = format!("127.0.0.1:{}", testkit::free_port());
    let _predictor = Service::start(dir.path(), "predictor", &[], &env("predictor")).await?;
    let servers = SERVERS.to_string();
    let gen_args = ["--servers", &servers, "--tick", "500ms", "--seed", "5", "--metrics-listen", &gen_metrics];
    let _generator = Service::start(dir.path(), "generator", &gen_args, &env("generator")).await?;
    let dash_args = ["--listen", &listen, "--metrics-listen", &dash_metrics];
    let _dashboard = Service::start(dir.path(), "dashboard", &dash_args, &env("dashboard")).await?;

    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: fleetcast\n    static_configs:\n      - targets: ['{gen_metrics}', '{dash_metrics}']\n"
    );
    let prom = Prometheus::start(&config)?;

    // Snapshots flow, so the dashboard has something to count and render.
    watch.until(Duration::from_secs(120), |s| all_forecast(s, SERVERS)).await?;
    let page = http_get(&listen, "/").await?;
    assert!(page.starts_with("HTTP/1.1 200"), "{}", page.lines().next().unwrap_or(""));

    let wait = Duration::from_secs(90);
    for target in [&gen_metrics, &dash_metrics] {
        until_value(&prom, &format!("up{{job=\"fleetcast\",instance=\"{target}\"}}"), wait, |v| v == 1.0).await?;
    }
    // The generator: ticks and records published (every tick publishes every server).
    let ticks = until_value(&prom, "fleetcast_generator_ticks_total", wait, |v| v >= 2.0).await?;
    let records = until_value(&prom, "fleetcast_generator_records_published_total", wait, |v| v >= SERVERS as f64).await?;
    assert!(records >= ticks, "{records} records over {ticks} ticks");
    until_value(&prom, "fleetcast_generator_publish_errors_total", wait, |v| v == 0.0).await?;
    // The dashboard: snapshots received, the overview's render time, no SSE client open.
    until_value(&prom, "fleetcast_dashboard_snapshots_received_total", wait, |v| v >= 1.0).await?;
    until_value(&prom, "fleetcast_dashboard_page_render_seconds_count{page=\"/\"}", wait, |v| v >= 1.0).await?;
    until_value(&prom, "fleetcast_dashboard_sse_clients", wait, |v| v == 0.0).await?;
    // Counters keep moving while the stack runs: the generator's ticks grow between scrapes.
    until_value(&prom, "fleetcast_generator_ticks_total", wait, |v| v > ticks).await?;
    Ok(())
}

/// A minimal HTTP/1.1 GET over a TCP socket (no client library needed for one request).
async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
