//! Helpers shared by the dashboard's integration tests: an app over a fixture snapshot and
//! requests through the real router (middleware, headers, compression included).
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use dashboard::{fixture, AppState, Args, Shared};
use tower::ServiceExt;

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
    /// The session cookie pair (`fc_session=...`) set by this response, if any.
    pub fn cookie(&self) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("fc_session=") && !c.starts_with("fc_session=;"))
            .and_then(|c| c.split(';').next())
            .map(str::to_string)
    }
    /// The CSRF token embedded in a form on the page.
    pub fn csrf(&self) -> Option<String> {
        let at = self.body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
        Some(self.body[at..].chars().take_while(|c| *c != '"').collect())
    }
}

pub fn args() -> Args {
    Args::for_tests("nats://127.0.0.1:1")
}

/// State holding one fixture snapshot and its servers' forecasts in memory, as
/// `--demo-fixture` runs (no NATS; `nats.rs` and `browser.rs` read them from KV).
pub fn state_with(spec: &fixture::Spec, args: Args) -> Shared {
    let st = AppState::new(args);
    let forecasts = fixture::forecasts(spec);
    st.publish(fixture::snapshot_of(spec, &forecasts));
    st.forecasts.set_fixture(forecasts);
    st
}

pub fn router(st: &Shared) -> Router {
    dashboard::routes::router(st.clone())
}

pub async fn send(app: &Router, method: Method, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    let mut req = Request::builder().method(method).uri(path).header(header::HOST, "127.0.0.1:8080");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let resp = app.clone().oneshot(req.body(body).expect("request")).await.expect("router never fails");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20).await.expect("body");
    Resp { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

pub async fn get(app: &Router, path: &str) -> Resp {
    send(app, Method::GET, path, &[], None).await
}

pub async fn get_with(app: &Router, path: &str, headers: &[(&str, &str)]) -> Resp {
    send(app, Method::GET, path, headers, None).await
}

pub async fn post(app: &Router, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    send(app, Method::POST, path, headers, Some(body)).await
}

/// Waits until the broker lists a subscription to `subject` (read from its monitoring
/// endpoint): from then on a message published there reaches the subscriber.
pub async fn subscribed(monitor: u16, subject: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let needle = format!("\"subject\": {}", serde_json::to_string(subject).unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        // HTTP/1.0: the body comes whole, not chunked.
        let mut text = String::new();
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", monitor)).await {
            let _ = s.write_all(b"GET /subsz?subs=1&limit=100000 HTTP/1.0\r\n\r\n").await;
            let _ = s.read_to_string(&mut text).await;
        }
        if text.contains(&needle) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no subscription to {subject} registered at the broker within 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// KV `forecasts` as the predictor creates it (history 1).
pub async fn forecasts_bucket(client: &async_nats::Client) -> async_nats::jetstream::kv::Store {
    let js = async_nats::jetstream::new(client.clone());
    let config = async_nats::jetstream::kv::Config { bucket: schemas::subjects::BUCKET_FORECASTS.into(), history: 1, ..Default::default() };
    js.create_key_value(config).await.expect("KV forecasts")
}

/// Every server's forecast of `spec`'s fleet into KV `forecasts`, as the predictor writes them.
pub async fn store_forecasts(client: &async_nats::Client, spec: &fixture::Spec) -> Vec<schemas::ServerForecast> {
    let kv = forecasts_bucket(client).await;
    let forecasts = fixture::forecasts(spec);
    for f in &forecasts {
        kv.put(&f.server, schemas::encode(f).expect("a forecast encodes").into()).await.expect("KV put");
    }
    forecasts
}

/// What the predictor publishes for `spec`'s fleet, in its order: every server's full forecast
/// into KV `forecasts`, then the snapshot of their summaries on `predictions.current` in
/// `parts` parts. Returns the snapshot as the dashboard decodes it.
pub async fn publish_fleet(client: &async_nats::Client, spec: &fixture::Spec, parts: u16) -> schemas::Snapshot {
    let forecasts = store_forecasts(client, spec).await;
    let snapshot = fixture::snapshot_of(spec, &forecasts);
    for p in fixture::split(&snapshot, parts) {
        client.publish(schemas::subjects::PREDICTIONS_CURRENT, schemas::encode(&p).expect("a part encodes").into()).await.expect("publish");
    }
    client.flush().await.expect("flush");
    fixture::wire(snapshot)
}
