//! What the pull tests put in front of `ingest`: a real Prometheus filled by remote-write
//! (history of node_exporter-like hosts), the `--pull-delay` that makes the first live pull round
//! come a few seconds after start (instead of waiting for the next 5-minute boundary), and a
//! small fault-injecting HTTP proxy in front of the real Prometheus (5xx, slow answers).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ingest::prompb::{encode_body, TimeSeries};
use schemas::STEP_MS;
use testkit::prometheus::Prometheus;

use crate::common::{now_ms, request, series};

/// A Prometheus (remote-write receiver on) that takes samples up to 6 h old in any order, so a
/// test can write a host's history after another's.
pub fn prometheus() -> Prometheus {
    Prometheus::start("global:\n  scrape_interval: 15s\nstorage:\n  tsdb:\n    out_of_order_time_window: 6h\n").expect("prometheus")
}

/// Remote-writes `all` into `prom`, 2,000 series a request; panics unless every request is taken.
pub async fn write(prom: &Prometheus, all: Vec<TimeSeries>) {
    let client = reqwest::Client::new();
    let mut all = all;
    while !all.is_empty() {
        let rest = all.split_off(all.len().min(2_000));
        let body = encode_body(&request(std::mem::replace(&mut all, rest)));
        let resp =
            ingest::prompb::post(&client, &format!("{}/api/v1/write", prom.url()), body).send().await.expect("remote-write to prometheus");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "prometheus answered {status}: {text}");
    }
}

/// Series of `host` over [start, end) every 60 s: CPU idle 60 %, user 30 %, system 10 %,
/// memory 75 % used, root disk 40 % used, load 1.5.
pub fn history(host: &str, start_ms: i64, end_ms: i64) -> Vec<TimeSeries> {
    let times: Vec<i64> = (start_ms..end_ms).step_by(60_000).collect();
    let at = |f: &dyn Fn(f64) -> f64| -> Vec<(i64, f64)> { times.iter().map(|&t| (t, f((t - start_ms) as f64 / 1e3))).collect() };
    let mut out = Vec::new();
    for (mode, rate) in [("idle", 0.6), ("user", 0.3), ("system", 0.1)] {
        out.push(series(
            &[("__name__", "node_cpu_seconds_total"), ("cpu", "0"), ("instance", host), ("job", "node"), ("mode", mode)],
            &at(&|s| 1000.0 + rate * s),
        ));
    }
    let gauge = |name: &str, extra: Option<(&str, &str)>, v: f64| {
        let mut labels = vec![("__name__", name), ("instance", host), ("job", "node")];
        labels.extend(extra);
        labels.sort();
        series(&labels, &at(&|_| v))
    };
    out.push(gauge("node_memory_MemTotal_bytes", None, 8e9));
    out.push(gauge("node_memory_MemAvailable_bytes", None, 2e9));
    out.push(gauge("node_filesystem_size_bytes", Some(("mountpoint", "/")), 1e11));
    out.push(gauge("node_filesystem_avail_bytes", Some(("mountpoint", "/")), 6e10));
    out.push(gauge("node_load1", None, 1.5));
    out
}

/// A `--pull-delay` (as humantime text) with which ingest's first live round comes `lead` after
/// now; the end of the step that round pulls (a past boundary); and when the round comes (ms).
pub fn live_round_in(lead: Duration) -> (String, i64, i64) {
    let now = now_ms();
    let lead = lead.as_millis() as i64;
    let delay = (now.rem_euclid(STEP_MS) + lead) % STEP_MS;
    (format!("{delay}ms"), now + lead - delay, now + lead)
}

/// What the proxy does to the queries passing through it.
#[derive(Debug, Default)]
pub struct Faults {
    /// Answer 503 to the first attempt of every distinct query (the retry passes).
    pub first_attempt_503: bool,
    /// Queries whose form body contains this text are answered only after this long.
    pub slow: Option<(String, Duration)>,
    /// Distinct queries seen, with their attempts.
    seen: HashMap<Vec<u8>, u32>,
}

/// A fault-injecting HTTP proxy in front of a real Prometheus; `url()` is what ingest queries.
pub struct Proxy {
    pub faults: Arc<Mutex<Faults>>,
    port: u16,
}

impl Proxy {
    /// Serves on a free loopback port, forwarding to `upstream` (e.g. `http://127.0.0.1:9090`).
    pub async fn start(upstream: String) -> Proxy {
        let faults = Arc::new(Mutex::new(Faults::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let state = (faults.clone(), upstream, reqwest::Client::new());
        let app = axum::Router::new().fallback(forward).with_state(Arc::new(state));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy { faults, port }
    }

    /// The base URL to give ingest.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Changes the faults.
    pub fn set(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.faults.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

type ProxyState = Arc<(Arc<Mutex<Faults>>, String, reqwest::Client)>;

async fn forward(
    axum::extract::State(s): axum::extract::State<ProxyState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (faults, upstream, client) = &*s;
    let mut key = uri.to_string().into_bytes();
    key.extend_from_slice(&body);
    let (fail, delay) = {
        let mut f = faults.lock().unwrap_or_else(|p| p.into_inner());
        let delay = f.slow.as_ref().filter(|(needle, _)| String::from_utf8_lossy(&body).contains(needle.as_str())).map(|(_, d)| *d);
        let first = f.first_attempt_503;
        let n = f.seen.entry(key).or_default();
        *n += 1;
        (first && *n == 1 && delay.is_none(), delay)
    };
    if fail {
        return (StatusCode::SERVICE_UNAVAILABLE, "proxy: injected 503\n").into_response();
    }
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let mut req = client.request(method, format!("{upstream}{uri}")).body(body);
    if let Some(ct) = headers.get("content-type") {
        req = req.header("content-type", ct);
    }
    match req.send().await {
        Ok(r) => {
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::OK);
            let ct = r.headers().get("content-type").cloned();
            let bytes = r.bytes().await.unwrap_or_default();
            let mut resp = (status, bytes).into_response();
            if let Some(ct) = ct {
                resp.headers_mut().insert("content-type", ct);
            }
            resp
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("proxy: {e}\n")).into_response(),
    }
}
