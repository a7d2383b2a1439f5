//! Historical: fleet risk, levels and alerts over 30 minutes to 7 days from the predictor's
//! retained summaries, aggregated with polars; per-server when a server is chosen; CSV export.

use askama::Template;
use serde::Deserialize;

use super::chart::{self, SeriesChart};
use crate::format;
use crate::history::agg::{self, Range};
use crate::history::HistoryStore;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HistoryQuery {
    pub range: Option<String>,
    pub server: Option<String>,
}

impl HistoryQuery {
    pub fn range(&self) -> Range {
        Range::parse(self.range.as_deref())
    }
    pub fn server(&self) -> Option<&str> {
        self.server.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }
    /// The query string for links (CSV, live refresh).
    pub fn query(&self) -> String {
        let mut q = format!("range={}", self.range().name());
        if let Some(s) = self.server() {
            q.push_str(&format!("&server={}", format::url_component(s)));
        }
        q
    }
}

pub struct RangeChoice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "history_controls.html")]
pub struct HistoryControls {
    pub ranges: Vec<RangeChoice>,
    pub server: String,
}

pub fn controls(q: &HistoryQuery) -> HistoryControls {
    let r = q.range();
    HistoryControls {
        ranges: Range::ALL.iter().map(|x| RangeChoice { value: x.name(), label: x.label(), selected: *x == r }).collect(),
        server: q.server().unwrap_or("").to_string(),
    }
}

pub struct TopRow {
    pub name: String,
    pub href: String,
    pub mean: String,
    pub max: String,
    pub critical_ticks: i64,
}

pub struct EventRow {
    pub time: String,
    pub state: &'static str,
    pub server: String,
    pub href: String,
    pub target: &'static str,
    pub severity: &'static str,
    pub class: &'static str,
}

pub struct ServerPart {
    pub name: String,
    pub href: String,
    pub found: bool,
    pub chart: Option<SeriesChart>,
    pub worst: String,
}

#[derive(Template)]
#[template(path = "history_live.html")]
pub struct HistoryLive {
    pub range_label: &'static str,
    pub has_data: bool,
    pub newest: String,
    pub ticks: i64,
    pub mean_risk: String,
    pub peak_risk: String,
    pub opened: i64,
    pub resolved: i64,
    pub risk_chart: Option<SeriesChart>,
    pub level_chart: Option<SeriesChart>,
    pub top: Vec<TopRow>,
    pub events: Vec<EventRow>,
    pub server: Option<ServerPart>,
    pub csv_fleet: String,
    pub csv_top: String,
    pub csv_server: Option<String>,
    pub error: Option<String>,
}

pub fn build(store: &HistoryStore, q: &HistoryQuery) -> HistoryLive {
    let range = q.range();
    let mut out = HistoryLive {
        range_label: range.label(),
        has_data: store.tick_count() > 0,
        newest: store.newest_ms().map(format::utc_ms).unwrap_or_default(),
        ticks: 0,
        mean_risk: "—".into(),
        peak_risk: "—".into(),
        opened: 0,
        resolved: 0,
        risk_chart: None,
        level_chart: None,
        top: vec![],
        events: vec![],
        server: None,
        csv_fleet: format!("/history.csv?table=fleet&{}", q.query()),
        csv_top: format!("/history.csv?table=servers&{}", q.query()),
        csv_server: q.server().map(|_| format!("/history.csv?table=server&{}", q.query())),
        error: None,
    };
    if !out.has_data {
        return out;
    }
    match agg::fleet(store, range) {
        Ok(df) => {
            let t: Vec<i64> = agg::i64s(&df, "time_ms").into_iter().map(|v| v.unwrap_or(0)).collect();
            let avg = agg::f64s(&df, "avg_risk");
            let max = agg::f64s(&df, "max_risk");
            let ticks = agg::i64s(&df, "ticks");
            out.ticks = ticks.iter().flatten().sum();
            let weighted: f64 = avg.iter().zip(&ticks).map(|(a, n)| a.unwrap_or(0.0) * n.unwrap_or(0) as f64).sum();
            if out.ticks > 0 {
                out.mean_risk = format!("{:.1}", weighted / out.ticks as f64);
            }
            out.peak_risk = max.iter().flatten().copied().reduce(f64::max).map(|m| format!("{m:.1}")).unwrap_or_else(|| "—".into());
            out.opened = agg::i64s(&df, "opened").into_iter().flatten().sum();
            out.resolved = agg::i64s(&df, "resolved").into_iter().flatten().sum();
            out.risk_chart = Some(chart::series(&t, &[("avg", avg), ("max", max)], &[], Some(100.0)));
            let layer = |name: &str| agg::f64s(&df, name).into_iter().map(|v| v.unwrap_or(0.0)).collect::<Vec<f64>>();
            out.level_chart = Some(chart::series(
                &t,
                &[],
                &[
                    ("f-healthy", layer("healthy")),
                    ("f-watch", layer("watch")),
                    ("f-warning", layer("warning")),
                    ("f-critical", layer("critical")),
                ],
                None,
            ));
        }
        Err(e) => out.error = Some(format!("aggregating the fleet history failed: {e}")),
    }
    match agg::top_servers(store, range, 15) {
        Ok(df) => {
            let names = agg::strings(&df, "server");
            let mean = agg::f64s(&df, "mean_risk");
            let max = agg::f64s(&df, "max_risk");
            let crit = agg::i64s(&df, "critical_ticks");
            out.top = names
                .into_iter()
                .enumerate()
                .map(|(i, name)| TopRow {
                    href: format!("/history?range={}&server={}", range.name(), format::url_component(&name)),
                    name,
                    mean: mean[i].map(|v| format!("{v:.1}")).unwrap_or_default(),
                    max: max[i].map(|v| format!("{v:.0}")).unwrap_or_default(),
                    critical_ticks: crit[i].unwrap_or(0),
                })
                .collect();
        }
        Err(e) => out.error = Some(format!("ranking servers failed: {e}")),
    }
    let from = agg::from_ms(store, range).unwrap_or(i64::MAX);
    let wanted = q.server().and_then(|s| store.id_of(s));
    out.events = store
        .alerts_since(from)
        .rev()
        .filter(|a| q.server().is_none() || Some(a.server) == wanted)
        .take(50)
        .map(|a| {
            let name = store.name(a.server).to_string();
            EventRow {
                time: format::utc_ms(a.tick_ms),
                state: a.state.name(),
                href: format::server_url(&name),
                server: name,
                target: a.target.label(),
                severity: super::level_label(a.severity),
                class: super::level_class(a.severity),
            }
        })
        .collect();
    if let Some(name) = q.server() {
        let part = match wanted {
            None => ServerPart { name: name.to_string(), href: format::server_url(name), found: false, chart: None, worst: String::new() },
            Some(id) => match agg::server(store, range, id) {
                Ok(df) => {
                    let t: Vec<i64> = agg::i64s(&df, "time_ms").into_iter().map(|v| v.unwrap_or(0)).collect();
                    let worst = agg::i64s(&df, "worst_level_code").into_iter().flatten().max().unwrap_or(0);
                    ServerPart {
                        name: name.to_string(),
                        href: format::server_url(name),
                        found: true,
                        chart: Some(chart::series(
                            &t,
                            &[("risk", agg::f64s(&df, "mean_risk")), ("max", agg::f64s(&df, "max_risk"))],
                            &[],
                            Some(100.0),
                        )),
                        worst: ["healthy", "watch", "warning", "critical"].get(worst as usize).unwrap_or(&"healthy").to_string(),
                    }
                }
                Err(e) => {
                    out.error = Some(format!("aggregating {name} failed: {e}"));
                    ServerPart { name: name.to_string(), href: format::server_url(name), found: true, chart: None, worst: String::new() }
                }
            },
        };
        out.server = Some(part);
    }
    out
}
