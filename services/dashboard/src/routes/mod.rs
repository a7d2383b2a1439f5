//! The HTTP surface: one URL per view (each works as plain HTML without JavaScript), the
//! SSE stream, the operator POST, login/logout, static assets and a health probe.
//! Layers: session/auth/CSRF gate, security headers, gzip/br compression, a tracing span per
//! request.

mod actions;
mod login;
mod pages;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tower_http::compression::CompressionLayer;
use tracing::Instrument;

use crate::state::Shared;
use crate::{assets, auth, security, sse};

pub fn router(state: Shared) -> Router {
    let app = Router::new()
        .route("/", get(pages::overview))
        .route("/heatmap", get(pages::heatmap))
        .route("/servers/{name}", get(pages::server))
        .route("/alerts", get(pages::alerts))
        .route("/history", get(pages::history))
        .route("/history.csv", get(pages::history_csv))
        .route("/cost", get(pages::cost).post(pages::save_cost))
        .route("/remediation", get(pages::remediation))
        .route("/model", get(pages::model))
        .route("/demo", get(pages::demo))
        .route("/demo/scenario", post(actions::scenario))
        .route("/login", get(login::page).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/events", get(sse::events))
        .route("/healthz", get(pages::healthz))
        .route("/static/{file}", get(assets::serve))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::metrics::time_pages))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::middleware))
        .with_state(state);
    // Compression skips text/event-stream by default, so SSE events are never buffered.
    security::apply(app).layer(CompressionLayer::new().gzip(true).br(true)).layer(axum::middleware::from_fn(request_span))
}

/// Outermost layer: one `request` span per HTTP request with the method, the route pattern
/// (`/servers/{name}` is one route; unmatched paths are `fallback`) and, once the response is
/// ready, its status, so `RUST_LOG` and any tracing subscriber can filter and time requests.
/// Everything logged while handling the request (auth, views, NATS calls) is inside it.
async fn request_span(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("fallback", |p| p.as_str()).to_owned();
    let span = tracing::info_span!("request", method = %req.method(), route = %route, status = tracing::field::Empty);
    let clock = std::time::Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    span.in_scope(|| tracing::debug!(ms = clock.elapsed().as_secs_f64() * 1e3, "response ready"));
    response
}
