//! Server detail: every target's forecast chart, current values, the risk and its reasons,
//! predicted alerts with time to breach, and the model's own explanation (variable-selection
//! weights and attention over the past window, straight from the ONNX outputs). Built from the
//! server's full forecast, read from KV `forecasts` per request (the snapshot has summaries).

use askama::Template;

use schemas::{Metric, ServerForecast, Target};

use super::chart::{self, ForecastChart};
use super::{level_class, level_label, Stamp};
use crate::charts::{self, Frame, Scale};
use crate::format;
use crate::remediation;
use crate::state::Latest;
use crate::thresholds;

pub struct Reason {
    pub target: &'static str,
    pub points: String,
    pub text: String,
}

pub struct Current {
    pub name: &'static str,
    pub value: String,
}

pub struct AlertLine {
    pub class: &'static str,
    pub severity: &'static str,
    pub target: &'static str,
    pub predicted: String,
    pub threshold: String,
    pub basis: &'static str,
    pub breach: String,
    pub breach_at: String,
    pub state: &'static str,
}

pub struct VarBar {
    pub name: String,
    pub pct: String,
    pub y: f32,
    pub width: f32,
}

pub struct Attention {
    pub d: String,
    pub steps: usize,
    pub peak: String,
}

#[derive(Template)]
#[template(path = "server_live.html")]
pub struct ServerLive {
    pub stamp: Option<Stamp>,
    pub name: String,
    pub profile: &'static str,
    pub risk: String,
    pub level: &'static str,
    pub level_label: &'static str,
    pub last_step: String,
    pub warmup: Option<String>,
    pub no_forecast: Option<String>,
    pub reasons: Vec<Reason>,
    pub current: Vec<Current>,
    pub alerts: Vec<AlertLine>,
    pub charts: Vec<ForecastChart>,
    pub vars: Vec<VarBar>,
    pub vars_height: f32,
    pub attention: Option<Attention>,
    pub action: Option<(String, String)>,
}

fn attention(weights: &[f32]) -> Option<Attention> {
    if weights.len() < 2 {
        return None;
    }
    let frame = Frame { width: 560.0, height: 70.0, left: 4.0, right: 4.0, top: 4.0, bottom: 4.0 };
    let max = weights.iter().copied().filter(|w| w.is_finite()).fold(0.0f32, f32::max);
    let s = Scale { frame, x_min: 0.0, x_max: (weights.len() - 1) as f32, y_min: 0.0, y_max: max.max(1e-6) };
    let d = charts::line_path(weights.iter().enumerate().map(|(i, w)| (i as f32, Some(*w))), &s);
    let peak_i = weights.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0);
    let back = weights.len() - 1 - peak_i;
    let peak = if back == 0 {
        "the model attends most to the latest step".to_string()
    } else {
        format!("the model attends most to the step {} ago", format::span(std::time::Duration::from_secs(back as u64 * 300)))
    };
    Some(Attention { d, steps: weights.len(), peak })
}

/// The page of a server the snapshot lists but whose full forecast cannot be shown, and why.
pub fn without_forecast(name: &str, why: &str) -> String {
    format!(
        "<div class=\"warnbox\" id=\"no-kv-entry\">No forecast to show for <code>{}</code>: {}. \
         The overview and the heatmap show its summary; this page fills in once the predictor writes its forecast.</div>",
        format::escape_html(name),
        format::escape_html(why)
    )
}

pub fn build(latest: &Latest, s: &ServerForecast) -> ServerLive {
    let tick = latest.snapshot.tick_ms;
    let charts = Target::ALL
        .iter()
        .map(|t| chart::forecast(*t, s.recent.iter().find(|r| r.target == *t), s.forecast_of(*t), thresholds::for_server(s, *t)))
        .collect();
    // The predictor's order: the reason that sets the level first, then by points.
    let reasons: Vec<&schemas::snapshot::RiskReason> = s.reasons.iter().collect();
    let (vars, vars_height) = match &s.explanation {
        Some(e) => {
            let max = e.variables.iter().map(|v| v.weight).filter(|w| w.is_finite()).fold(0.0f32, f32::max).max(1e-6);
            let bars: Vec<VarBar> = e
                .variables
                .iter()
                .take(14)
                .enumerate()
                .map(|(i, v)| VarBar {
                    name: v.name.clone(),
                    pct: format!("{:.1}%", v.weight * 100.0),
                    y: i as f32 * 18.0,
                    width: charts::px(if v.weight.is_finite() { v.weight / max * 300.0 } else { 0.0 }),
                })
                .collect();
            let h = bars.len() as f32 * 18.0;
            (bars, h)
        }
        None => (vec![], 0.0),
    };
    ServerLive {
        stamp: Some(Stamp::of(latest)),
        name: s.server.clone(),
        profile: s.profile.label(),
        risk: format::risk(s.risk),
        level: level_class(s.level),
        level_label: level_label(s.level),
        last_step: format::utc_ms(s.last_ms),
        warmup: s.warmup.map(|w| format!("Warming up: {} of {} steps of history; no forecast until then.", w.have_steps, w.need_steps)),
        no_forecast: s.no_forecast.as_ref().map(|r| format!("No forecast: {r}. The level comes from the current values alone.")),
        reasons: reasons
            .iter()
            .map(|r| Reason { target: r.target.label(), points: format!("{:.1}", r.points), text: r.text.clone() })
            .collect(),
        current: Metric::ALL.iter().map(|m| Current { name: m.name(), value: format::value(m.unit(), s.current.get(*m)) }).collect(),
        alerts: s
            .alerts
            .iter()
            .map(|a| AlertLine {
                class: level_class(a.severity),
                severity: level_label(a.severity),
                target: a.target.label(),
                predicted: format::target_value(a.target, Some(a.predicted)),
                threshold: format::target_value(a.target, Some(a.threshold)),
                basis: a.basis.label(),
                breach: format::ahead(a.minutes_ahead),
                breach_at: format::utc_ms(tick.saturating_add(i64::from(a.minutes_ahead) * 60_000)),
                state: a.state.name(),
            })
            .collect(),
        charts,
        vars,
        vars_height,
        attention: s.explanation.as_ref().and_then(|e| attention(&e.attention)),
        action: remediation::triggers(s.risk)
            .then(|| (remediation::playbook(s.profile).action.to_string(), remediation::command(&s.server, s.profile, s.risk))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_finds_its_peak() {
        let a = attention(&[0.1, 0.5, 0.2, 0.2]).unwrap();
        assert_eq!(a.steps, 4);
        assert!(a.peak.contains("10 min ago"), "{}", a.peak);
        assert!(attention(&[1.0]).is_none());
        assert!(attention(&[0.0, 1.0]).unwrap().peak.contains("latest"));
    }
}
