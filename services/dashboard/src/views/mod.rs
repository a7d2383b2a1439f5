//! View models and templates. Each view has a pure `build` from the latest snapshot (and its
//! query) to a fragment template; `respond` wraps the fragment in the page chrome for a
//! normal GET, or returns the fragment alone for htmx's live refresh (`HX-Request`).

pub mod alerts;
pub mod chart;
pub mod cost;
pub mod demo;
pub mod heatmap;
pub mod history;
pub mod model;
pub mod overview;
pub mod remediation;
pub mod server;

use std::time::SystemTime;

use askama::Template;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::assets;
use crate::auth::Session;
use crate::format;
use crate::state::{AppState, Banner, Latest};

/// The views, in navigation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewId {
    Overview,
    Heatmap,
    Server,
    Alerts,
    History,
    Cost,
    Remediation,
    Model,
    Demo,
}

impl ViewId {
    const NAV: [ViewId; 8] = [
        ViewId::Overview,
        ViewId::Heatmap,
        ViewId::Alerts,
        ViewId::History,
        ViewId::Cost,
        ViewId::Remediation,
        ViewId::Model,
        ViewId::Demo,
    ];

    pub fn href(self) -> &'static str {
        match self {
            ViewId::Overview => "/",
            ViewId::Heatmap => "/heatmap",
            ViewId::Server => "/servers",
            ViewId::Alerts => "/alerts",
            ViewId::History => "/history",
            ViewId::Cost => "/cost",
            ViewId::Remediation => "/remediation",
            ViewId::Model => "/model",
            ViewId::Demo => "/demo",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ViewId::Overview => "Overview",
            ViewId::Heatmap => "Heatmap",
            ViewId::Server => "Server",
            ViewId::Alerts => "Alerts",
            ViewId::History => "History",
            ViewId::Cost => "Cost avoidance",
            ViewId::Remediation => "Auto-remediation",
            ViewId::Model => "Model",
            ViewId::Demo => "Demo controls",
        }
    }

    pub fn slug(self) -> &'static str {
        match self {
            ViewId::Overview => "overview",
            ViewId::Heatmap => "heatmap",
            ViewId::Server => "server",
            ViewId::Alerts => "alerts",
            ViewId::History => "history",
            ViewId::Cost => "cost",
            ViewId::Remediation => "remediation",
            ViewId::Model => "model",
            ViewId::Demo => "demo",
        }
    }
}

pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub active: bool,
}

/// The line at the top of every live fragment: which snapshot the numbers come from.
pub struct Stamp {
    pub seq: u64,
    pub tick: String,
    pub model: String,
    pub received: String,
}

impl Stamp {
    pub fn of(latest: &Latest) -> Stamp {
        let ago = SystemTime::now().duration_since(latest.received).unwrap_or_default();
        let model = &latest.snapshot.model.version;
        Stamp {
            seq: latest.snapshot.seq,
            tick: format::utc_ms(latest.snapshot.tick_ms),
            model: if model.is_empty() { "unknown".into() } else { model.clone() },
            received: format!("{} ago", format::span(ago)),
        }
    }
}

#[derive(Template)]
#[template(path = "banner.html")]
pub struct BannerView<'a> {
    pub banner: Option<&'a Banner>,
}

pub fn render_banner(banner: Option<&Banner>) -> String {
    render(&BannerView { banner })
}

#[derive(Template)]
#[template(path = "page.html")]
struct Page<'a> {
    title: &'a str,
    view: &'static str,
    nav: Vec<NavItem>,
    show_logout: bool,
    csrf: &'a str,
    banner: String,
    controls: &'a str,
    live: &'a str,
    live_url: &'a str,
    trigger: &'a str,
    css_url: &'static str,
    htmx_url: &'static str,
    sse_url: &'static str,
    morph_url: &'static str,
    app_url: &'static str,
}

/// What a view handler produces.
pub struct Rendered {
    pub title: String,
    /// Forms and other parts outside the live region (not re-rendered on updates).
    pub controls: String,
    /// The live fragment.
    pub live: String,
    /// URL htmx re-fetches the fragment from (the view's own URL with its query).
    pub live_url: String,
    /// htmx trigger for the refresh; `none` for views that do not follow snapshots.
    pub trigger: &'static str,
    pub status: StatusCode,
}

impl Rendered {
    pub fn new(title: impl Into<String>, live: String, live_url: String) -> Rendered {
        Rendered { title: title.into(), controls: String::new(), live, live_url, trigger: "sse:snapshot", status: StatusCode::OK }
    }
}

/// Renders a template; a template error (a bug, not bad data) becomes a visible message.
pub fn render<T: Template>(t: &T) -> String {
    t.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "template failed");
        format!("<p class=\"errors\">This part failed to render: {}</p>", format::escape_html(&e.to_string()))
    })
}

/// True for htmx's own requests for a fragment (not for boosted navigation).
pub fn wants_fragment(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request") && !headers.contains_key("hx-boosted")
}

pub fn respond(state: &AppState, session: &Session, headers: &HeaderMap, view: ViewId, r: Rendered) -> Response {
    let common = [(header::CACHE_CONTROL, "no-store"), (header::VARY, "HX-Request, Cookie")];
    if wants_fragment(headers) {
        return (r.status, common, Html(r.live)).into_response();
    }
    let generator = state.generator_available();
    let nav = ViewId::NAV
        .iter()
        .filter(|v| **v != ViewId::Demo || generator || view == ViewId::Demo)
        .map(|v| NavItem { href: v.href(), label: v.label(), active: *v == view })
        .collect();
    let page = Page {
        title: &r.title,
        view: view.slug(),
        nav,
        show_logout: state.args.access_key().is_some() && session.authed,
        csrf: &session.csrf,
        banner: render_banner(state.banner().as_ref()),
        controls: &r.controls,
        live: &r.live,
        live_url: &r.live_url,
        trigger: r.trigger,
        css_url: assets::url("app.css"),
        htmx_url: assets::url("htmx.min.js"),
        sse_url: assets::url("sse.min.js"),
        morph_url: assets::url("idiomorph-ext.min.js"),
        app_url: assets::url("app.js"),
    };
    (r.status, common, Html(render(&page))).into_response()
}

/// A level's CSS class suffix and label.
pub fn level_class(level: schemas::Level) -> &'static str {
    level.name()
}

pub fn level_label(level: schemas::Level) -> &'static str {
    match level {
        schemas::Level::Healthy => "Healthy",
        schemas::Level::Watch => "Watch",
        schemas::Level::Warning => "Warning",
        schemas::Level::Critical => "Critical",
    }
}

/// The request's query string, `?`-prefixed, or "" (to carry a view's query into its live URL).
pub fn query_suffix(uri: &axum::http::Uri) -> String {
    uri.query().map(|q| format!("?{q}")).unwrap_or_default()
}
