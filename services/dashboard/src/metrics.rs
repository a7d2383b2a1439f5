//! The dashboard's own metrics (served by `fleetbus::metrics` on `--metrics-listen`, a port of
//! its own, never behind the dashboard's login), all prefixed `fleetcast_dashboard_`.
//! Cardinality: one histogram per route pattern (`/servers/{name}` is one), nothing per server.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `sse_clients` | gauge | | open `/events` streams (one per browser tab) |
//! | `page_render_seconds` | histogram | `page` (route pattern) | request in -> response ready, every route but `/events` |
//! | `snapshots_received_total` | counter | | whole snapshots installed as the latest |

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::state::Shared;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PageLabels {
    pub page: String,
}

fn render_histogram() -> Histogram {
    // 0.5 ms .. ~8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// Handles to every metric; clones share the same values.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub sse_clients: Gauge,
    pub render: Family<PageLabels, Histogram, fn() -> Histogram>,
    pub snapshots: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them in a new registry (prefix `fleetcast_dashboard`).
    pub fn new() -> (Metrics, Registry) {
        let mut r = Registry::with_prefix("fleetcast_dashboard");
        let m = Metrics {
            sse_clients: Gauge::default(),
            render: Family::new_with_constructor(render_histogram as fn() -> Histogram),
            snapshots: Counter::default(),
        };
        r.register("sse_clients", "Open /events streams", m.sse_clients.clone());
        r.register("page_render_seconds", "Seconds from request to response ready, by route", m.render.clone());
        r.register("snapshots_received", "Whole snapshots installed as the latest", m.snapshots.clone());
        (m, r)
    }
}

/// Route middleware: times every matched route but the SSE stream.
pub async fn time_pages(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let page = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let clock = Instant::now();
    let response = next.run(req).await;
    if let Some(page) = page.filter(|p| p != "/events") {
        state.metrics.render.get_or_create(&PageLabels { page }).observe(clock.elapsed().as_secs_f64());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_by_route() {
        let (m, r) = Metrics::new();
        m.sse_clients.inc();
        m.snapshots.inc();
        m.render.get_or_create(&PageLabels { page: "/servers/{name}".into() }).observe(0.002);
        let page = fleetbus::metrics::render(&r).expect("renders");
        for line in [
            "fleetcast_dashboard_sse_clients 1",
            "fleetcast_dashboard_snapshots_received_total 1",
            "fleetcast_dashboard_page_render_seconds_count{page=\"/servers/{name}\"} 1",
        ] {
            assert!(page.contains(line), "missing {line:?} in:\n{page}");
        }
    }
}
