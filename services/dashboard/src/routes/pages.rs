//! GET handlers: each picks the latest snapshot from memory, builds its view and responds
//! with the page (or just the fragment for htmx). Only the server view touches NATS: one KV
//! get for the server's full forecast (`forecasts.rs`).

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;

use crate::auth::Session;
use crate::cost::CostForm;
use crate::history::agg::{self, Range};
use crate::locks::{lock, read};
use crate::state::Shared;
use crate::views::{self, query_suffix, render, respond, Rendered, ViewId};

type Sess = Extension<Session>;

pub async fn overview(
    State(st): State<Shared>,
    Extension(s): Sess,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<views::overview::OverviewQuery>,
) -> Response {
    let latest = st.latest();
    let live = render(&views::overview::build(latest.as_deref(), &q));
    respond(&st, &s, &headers, ViewId::Overview, Rendered::new("Fleet overview", live, format!("/{}", query_suffix(&uri))))
}

pub async fn heatmap(
    State(st): State<Shared>,
    Extension(s): Sess,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<views::heatmap::HeatmapQuery>,
) -> Response {
    let by = views::heatmap::By::parse(q.by.as_deref());
    let latest = st.latest();
    let mut r = Rendered::new("Heatmap", render(&views::heatmap::build(latest.as_deref(), by)), format!("/heatmap{}", query_suffix(&uri)));
    r.controls = render(&views::heatmap::controls(by));
    respond(&st, &s, &headers, ViewId::Heatmap, r)
}

/// `GET /servers/<name>`: 404 for a server the snapshot does not list; else its full forecast
/// from KV `forecasts` (one get), or a page that says why there is none (200 when the entry is
/// missing, 503 when KV cannot be read).
pub async fn server(State(st): State<Shared>, Extension(s): Sess, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let latest = st.latest();
    let url = crate::format::server_url(&name);
    let title = format!("Server {name}");
    let Some(l) = latest.as_deref().filter(|l| l.server(&name).is_some()) else {
        let mut r = Rendered::new(
            title,
            format!(
                "<div class=\"panel\"><p>No server named <code>{}</code> in the latest snapshot. <a href=\"/heatmap\">Find it on the heatmap</a>.</p></div>",
                crate::format::escape_html(&name)
            ),
            url,
        );
        r.status = StatusCode::NOT_FOUND;
        return respond(&st, &s, &headers, ViewId::Server, r);
    };
    let r = match st.forecast(&name).await {
        Ok(Some(sf)) => Rendered::new(title, render(&views::server::build(l, &sf)), url),
        Ok(None) => Rendered::new(
            title,
            views::server::without_forecast(&name, "its entry in KV forecasts is missing (not written yet, or expired)"),
            url,
        ),
        Err(e) => {
            tracing::warn!(server = %name, error = %e, "reading the server's forecast failed");
            let mut r = Rendered::new(title, views::server::without_forecast(&name, &e.to_string()), url);
            r.status = StatusCode::SERVICE_UNAVAILABLE;
            r
        }
    };
    respond(&st, &s, &headers, ViewId::Server, r)
}

pub async fn alerts(
    State(st): State<Shared>,
    Extension(s): Sess,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<views::alerts::AlertsQuery>,
) -> Response {
    let ams = st.alertmanagers.statuses().await;
    let latest = st.latest();
    let mut r = Rendered::new(
        "Predicted alerts",
        render(&views::alerts::build(latest.as_deref(), &q, &ams)),
        format!("/alerts{}", query_suffix(&uri)),
    );
    r.controls = render(&views::alerts::controls(&q, &ams));
    respond(&st, &s, &headers, ViewId::Alerts, r)
}

/// Runs polars work on the blocking pool: polars blocks on its own async runtime inside
/// `collect`, which must not happen on (and would stall) an async worker thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("aggregation failed: {e}")).into_response())
}

pub async fn history(
    State(st): State<Shared>,
    Extension(s): Sess,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<views::history::HistoryQuery>,
) -> Response {
    let (st2, q2) = (st.clone(), q.clone());
    let live = match blocking(move || render(&views::history::build(&read(&st2.history), &q2))).await {
        Ok(html) => html,
        Err(resp) => return resp,
    };
    let mut r = Rendered::new("History", live, format!("/history{}", query_suffix(&uri)));
    r.controls = render(&views::history::controls(&q));
    // Aggregation costs more than a fragment; a summary arrives once per tick anyway.
    r.trigger = "sse:snapshot throttle:10s";
    respond(&st, &s, &headers, ViewId::History, r)
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct CsvQuery {
    pub table: Option<String>,
    pub range: Option<String>,
    pub server: Option<String>,
}

pub async fn history_csv(State(st): State<Shared>, Query(q): Query<CsvQuery>) -> Response {
    blocking(move || history_csv_now(&st, &q)).await.unwrap_or_else(|resp| resp)
}

fn history_csv_now(st: &Shared, q: &CsvQuery) -> Response {
    let range = Range::parse(q.range.as_deref());
    let store = read(&st.history);
    let table = q.table.as_deref().unwrap_or("fleet");
    let frame = match table {
        "fleet" => agg::fleet(&store, range),
        "servers" => agg::top_servers(&store, range, 10_000),
        "server" => match q.server.as_deref().and_then(|n| store.id_of(n)) {
            Some(id) => agg::server(&store, range, id),
            None => return (StatusCode::NOT_FOUND, "server: no history for that server").into_response(),
        },
        other => return (StatusCode::BAD_REQUEST, format!("table: {other:?} is not one of fleet, servers, server")).into_response(),
    };
    let bytes = frame.and_then(|mut df| agg::csv(&mut df));
    match bytes {
        Ok(b) => {
            let name = format!("attachment; filename=\"fleetcast-{table}-{}.csv\"", range.name());
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                    (header::CONTENT_DISPOSITION, name),
                    (header::CACHE_CONTROL, "no-store".into()),
                ],
                b,
            )
                .into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("aggregation failed: {e}")).into_response(),
    }
}

/// `GET /cost`: the projection under the saved assumptions, or under the query's fields read
/// over them (a what-if link, htmx's live refresh of an open page). A GET never changes what is
/// saved: that is `POST /cost` ([`save_cost`]).
pub async fn cost(State(st): State<Shared>, Extension(s): Sess, headers: HeaderMap, uri: Uri, Query(form): Query<CostForm>) -> Response {
    let (inputs, errors) = form.parse_over(&st.settings.cost());
    cost_page(&st, &s, &headers, format!("/cost{}", query_suffix(&uri)), &form, &inputs, errors)
}

/// `POST /cost` (the form; `auth.rs` has checked the session's CSRF token and the origin): the
/// fields read over the saved assumptions; without errors they become the saved assumptions
/// (`settings.rs` persists them in KV) and the browser is sent back to `GET /cost` (303,
/// post/redirect/get); with errors the page names each bad field (400) and nothing changes.
pub async fn save_cost(State(st): State<Shared>, Extension(s): Sess, headers: HeaderMap, Form(form): Form<CostForm>) -> Response {
    let (inputs, errors) = form.parse_over(&st.settings.cost());
    if errors.is_empty() {
        if st.settings.set_cost(inputs) {
            tracing::info!(?inputs, "cost assumptions changed");
        }
        return Redirect::to("/cost").into_response();
    }
    cost_page(&st, &s, &headers, "/cost".to_string(), &form, &inputs, errors)
}

fn cost_page(
    st: &Shared,
    s: &Session,
    headers: &HeaderMap,
    url: String,
    form: &CostForm,
    inputs: &crate::cost::CostInputs,
    errors: Vec<crate::cost::FieldError>,
) -> Response {
    let bad = !errors.is_empty();
    let latest = st.latest();
    let mut r = Rendered::new("Cost avoidance", render(&views::cost::build(latest.as_deref(), inputs)), url);
    r.controls = render(&views::cost::controls(form, inputs, errors, &s.csrf));
    if bad {
        r.status = StatusCode::BAD_REQUEST;
    }
    respond(st, s, headers, ViewId::Cost, r)
}

pub async fn remediation(State(st): State<Shared>, Extension(s): Sess, headers: HeaderMap) -> Response {
    let latest = st.latest();
    let r = Rendered::new("Auto-remediation", render(&views::remediation::build(latest.as_deref())), "/remediation".into());
    respond(&st, &s, &headers, ViewId::Remediation, r)
}

pub async fn model(State(st): State<Shared>, Extension(s): Sess, headers: HeaderMap) -> Response {
    let latest = st.latest();
    let card = st.card.get();
    let r = Rendered::new("Model", render(&views::model::build(latest.as_deref(), &card, st.args.drift_margin)), "/model".into());
    respond(&st, &s, &headers, ViewId::Model, r)
}

pub async fn demo(State(st): State<Shared>, Extension(s): Sess, headers: HeaderMap) -> Response {
    let available = st.generator_available();
    let g = lock(&st.generator).clone();
    let outcome = lock(&st.last_switch).clone();
    let live = render(&views::demo::build(&g, available, outcome.as_ref(), &s.csrf));
    let mut r = Rendered::new("Demo controls", live, "/demo".into());
    // The generator's status changes with each probe, not with snapshots; follow both.
    r.trigger = "sse:snapshot, every 5s";
    respond(&st, &s, &headers, ViewId::Demo, r)
}

pub async fn healthz(State(st): State<Shared>) -> Response {
    let h = st.health();
    let body = serde_json::json!({
        "link": format!("{:?}", h.link),
        "snapshot": st.latest().map(|l| l.snapshot.seq),
        "bad_messages": h.bad_messages,
        "history_ticks": read(&st.history).tick_count(),
        "sse_clients": st.sse_clients.load(std::sync::atomic::Ordering::Relaxed),
    });
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

pub async fn not_found(State(st): State<Shared>, Extension(s): Sess, headers: HeaderMap, uri: Uri) -> Response {
    let mut r = Rendered::new(
        "Not found",
        format!(
            "<div class=\"panel\"><p>Nothing at <code>{}</code>. <a href=\"/\">Back to the overview</a>.</p></div>",
            crate::format::escape_html(uri.path())
        ),
        uri.path().to_string(),
    );
    r.status = StatusCode::NOT_FOUND;
    r.trigger = "none";
    respond(&st, &s, &headers, ViewId::Overview, r)
}
