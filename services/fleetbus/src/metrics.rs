//! `GET /metrics` for every Fleetcast service, in one place: a service builds a
//! [`prometheus_client::registry::Registry`] with its own metrics and hands it to [`serve`],
//! which answers on `--metrics-listen ADDR` (off by default; [`MetricsArgs`] is the flag) in the
//! OpenMetrics text format with its registered content type, until the given shutdown future
//! completes. Only `/metrics` is routed; anything else is 404.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fleetbus::metrics::MetricsError> {
//! use prometheus_client::{metrics::counter::Counter, registry::Registry};
//! let mut registry = Registry::with_prefix("fleetcast_example");
//! let sent: Counter = Counter::default();
//! registry.register("sent", "Messages sent", sent.clone());
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = fleetbus::metrics::serve("127.0.0.1:0".parse().unwrap(), registry.into(), async {
//!     let _ = stopped.await;
//! })
//! .await?;
//! println!("scrape http://{}/metrics", server.local_addr());
//! let _ = stop.send(());
//! server.join().await;
//! # Ok(()) }
//! ```
//!
//! Why a shared helper: every service must expose the same thing the same way (content type,
//! address flag, clean shutdown), and a scrape must never block a service's own work; encoding
//! reads the metrics' atomics and takes no service lock.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

/// The registered OpenMetrics 1.0 text content type; Prometheus (2.x and later) negotiates it
/// and parses counters' `_total`, `# EOF` and info metrics accordingly.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `--metrics-listen ADDR` flag, for `#[command(flatten)]` in a service's clap config.
/// Absent (the default) means no metrics endpoint. Put it on loopback (`127.0.0.1:9464`) unless
/// a scraper on another host needs it: the page names every server of the fleet.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics; off when absent.
    #[arg(long = "metrics-listen", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("binding the metrics endpoint to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running metrics endpoint; it stops when the shutdown future given to [`serve`] completes.
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// The address actually bound (the port is the kernel's choice when `ADDR` said `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the server has stopped (after its shutdown future completed and open
    /// scrapes finished).
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "metrics endpoint task failed");
        }
    }
}

/// The registry as OpenMetrics text (what `GET /metrics` returns), ending in `# EOF`.
/// Errors only if a custom collector fails to format.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(4096);
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

/// The `/metrics` route alone, for a service that wants it on its existing axum server.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new().route("/metrics", get(move || scrape(registry.clone())))
}

async fn scrape(registry: Arc<Registry>) -> Response {
    match render(&registry) {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "encoding metrics failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "encoding metrics failed\n").into_response()
        }
    }
}

/// Binds `addr` now (so a taken port is an error at start, not a log line later) and serves
/// `GET /metrics` from `registry` on a background task until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<MetricsServer, MetricsError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| MetricsError::Bind { addr, source })?;
    let local_addr = listener.local_addr().map_err(|source| MetricsError::Bind { addr, source })?;
    let app = router(registry);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::warn!(error = %e, "metrics endpoint stopped with an error");
        }
    });
    tracing::info!(%local_addr, "serving metrics at /metrics");
    Ok(MetricsServer { local_addr, task })
}

/// [`serve`] when `args` names an address, else nothing (the endpoint is off by default).
pub async fn serve_if(
    args: &MetricsArgs,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Option<MetricsServer>, MetricsError> {
    match args.metrics_listen {
        Some(addr) => serve(addr, registry, shutdown).await.map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        conn.write_all(req.as_bytes()).await.expect("write");
        let mut out = String::new();
        conn.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn serves_openmetrics_until_shutdown() {
        let mut registry = Registry::with_prefix("fleetcast_test");
        let sent: Counter = Counter::default();
        registry.register("sent", "Messages sent", sent.clone());
        sent.inc_by(3);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = serve("127.0.0.1:0".parse().expect("addr"), Arc::new(registry), async {
            let _ = stopped.await;
        })
        .await
        .expect("serve");
        let addr = server.local_addr();
        let page = get(addr, "/metrics").await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.to_ascii_lowercase().contains(&format!("content-type: {CONTENT_TYPE}")), "{page}");
        assert!(page.contains("fleetcast_test_sent_total 3"), "{page}");
        assert!(page.trim_end().ends_with("# EOF"), "{page}");
        assert!(get(addr, "/other").await.starts_with("HTTP/1.1 404"));
        let _ = stop.send(());
        server.join().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still listening after shutdown");
    }

    #[tokio::test]
    async fn off_without_an_address_and_bind_errors_name_it() {
        let none = serve_if(&MetricsArgs::default(), Arc::new(Registry::default()), async {}).await.expect("off");
        assert!(none.is_none());
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        match serve(addr, Arc::new(Registry::default()), async {}).await {
            Err(e @ MetricsError::Bind { .. }) => {
                assert!(e.to_string().contains(&addr.to_string()))
            }
            Ok(_) => panic!("bound a taken port"),
        }
    }
}
