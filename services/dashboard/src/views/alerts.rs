//! Alerts: every active predicted alert with its lifecycle and time to breach, filterable by
//! level, profile and target; and where alerts go: the Alertmanagers the notifier posts to,
//! whether each answers, and links to silence there (routing, grouping, silences and on-call
//! are Alertmanager's job, not the dashboard's).

use askama::Template;
use serde::Deserialize;

use schemas::{AlertBrief, Level, Profile, ServerSummary, Target};

use super::{level_class, level_label, Stamp};
use crate::alertmanager::{silence_link, AmStatus, ALERTNAME};
use crate::format;
use crate::state::Latest;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AlertsQuery {
    pub level: Option<String>,
    pub profile: Option<String>,
    pub target: Option<String>,
}

pub struct Filter {
    pub level: Option<Level>,
    pub profile: Option<Profile>,
    pub target: Option<Target>,
}

impl AlertsQuery {
    pub fn filter(&self) -> Filter {
        let pick = |s: &Option<String>| s.as_deref().filter(|s| !s.is_empty() && *s != "all").map(str::to_string);
        Filter {
            level: pick(&self.level).and_then(|s| Level::from_name(&s)),
            profile: pick(&self.profile).and_then(|s| Profile::from_name(&s)),
            target: pick(&self.target).and_then(|s| Target::from_name(&s)),
        }
    }
}

impl Filter {
    /// Whether alert `a` of server `s` passes the filter.
    pub fn matches(&self, s: &ServerSummary, a: &AlertBrief) -> bool {
        self.level.is_none_or(|l| a.severity == l)
            && self.profile.is_none_or(|p| s.profile == p)
            && self.target.is_none_or(|t| a.target == t)
    }
}

pub struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// One Alertmanager on the page.
pub struct AmLine {
    pub url: String,
    pub ready: bool,
    pub detail: String,
    /// Silence every predicted alert there.
    pub silence_all: String,
}

#[derive(Template)]
#[template(path = "alerts_controls.html")]
pub struct AlertsControls {
    pub levels: Vec<Choice>,
    pub profiles: Vec<Choice>,
    pub targets: Vec<Choice>,
    pub alertmanagers: Vec<AmLine>,
}

fn choices<T: Copy + PartialEq>(all: &[T], current: Option<T>, value: fn(T) -> &'static str, label: fn(T) -> &'static str) -> Vec<Choice> {
    let mut v = vec![Choice { value: "all", label: "All", selected: current.is_none() }];
    v.extend(all.iter().map(|x| Choice { value: value(*x), label: label(*x), selected: current == Some(*x) }));
    v
}

/// The filter form and the "where alerts go" panel (`ams`: the configured Alertmanagers'
/// probed status, in configuration order).
pub fn controls(q: &AlertsQuery, ams: &[AmStatus]) -> AlertsControls {
    let f = q.filter();
    AlertsControls {
        levels: choices(&[Level::Critical, Level::Warning], f.level, Level::name, level_label),
        profiles: choices(&Profile::ALL, f.profile, Profile::name, Profile::label),
        targets: choices(&Target::ALL, f.target, Target::name, Target::label),
        alertmanagers: ams
            .iter()
            .map(|a| AmLine {
                url: a.url.clone(),
                ready: a.ready,
                detail: a.detail.clone(),
                silence_all: silence_link(&a.url, &[("alertname", ALERTNAME)]),
            })
            .collect(),
    }
}

pub struct Line {
    pub class: &'static str,
    pub severity: &'static str,
    pub server: String,
    pub href: String,
    pub profile: &'static str,
    pub target: &'static str,
    pub predicted: String,
    pub threshold: String,
    pub basis: &'static str,
    pub current: String,
    pub breach: String,
    pub state: &'static str,
    pub open_for: String,
    /// Silence this server's alert on this target in the first Alertmanager (none configured: empty).
    pub silence: String,
}

#[derive(Template)]
#[template(path = "alerts_live.html")]
pub struct AlertsLive {
    pub stamp: Option<Stamp>,
    pub lines: Vec<Line>,
    pub total: usize,
    /// Expected servers with an incident within 30 min / 8 h (see the overview).
    pub e30: String,
    pub e8h: String,
}

/// Most alerts listed at once (critical first, then soonest breach).
pub const MAX_LINES: usize = 500;

pub fn build(latest: Option<&Latest>, q: &AlertsQuery, ams: &[AmStatus]) -> AlertsLive {
    let Some(latest) = latest else {
        return AlertsLive { stamp: None, lines: vec![], total: 0, e30: "—".into(), e8h: "—".into() };
    };
    let first_am = ams.first().map(|a| a.url.as_str());
    let f = q.filter();
    let tick = latest.snapshot.tick_ms;
    // Already in the page's order (critical first, then the soonest breach, then by id;
    // `Latest::alert_order`): a request only filters.
    let servers = &latest.snapshot.servers;
    let all: Vec<(&ServerSummary, &AlertBrief)> = latest
        .alert_order
        .iter()
        .filter_map(|&(i, j)| servers.get(i as usize).and_then(|s| s.alerts.get(j as usize).map(|a| (s, a))))
        .filter(|(s, a)| f.matches(s, a))
        .collect();
    let total = all.len();
    let lines = all
        .into_iter()
        .take(MAX_LINES)
        .map(|(s, a)| Line {
            class: level_class(a.severity),
            severity: level_label(a.severity),
            server: s.server.clone(),
            href: format::server_url(&s.server),
            profile: s.profile.label(),
            target: a.target.label(),
            predicted: format::target_value(a.target, Some(a.predicted)),
            threshold: format::target_value(a.target, Some(a.threshold)),
            basis: a.basis.label(),
            current: format::target_value(a.target, s.current(a.target)),
            breach: format::ahead(a.minutes_ahead),
            state: state_label(a.state, a.opened_ms, tick),
            open_for: format::span(std::time::Duration::from_millis(u64::try_from(tick - a.opened_ms).unwrap_or(0))),
            silence: first_am
                .map(|am| silence_link(am, &[("alertname", ALERTNAME), ("server", s.server.as_str()), ("target", a.target.name())]))
                .unwrap_or_default(),
        })
        .collect();
    let fleet = &latest.snapshot.fleet;
    AlertsLive {
        stamp: Some(Stamp::of(latest)),
        lines,
        total,
        e30: format!("{:.1}", fleet.expected_incidents_30m.max(0.0)),
        e8h: format!("{:.1}", fleet.expected_incidents_8h.max(0.0)),
    }
}

/// The State column's word for an active alert: `new` on the tick that opened it, `open` after
/// (its last event is still the opening one), `updated` once its severity or prediction changed.
/// The event's own name (`opened`) beside "Open for 1 d 2 h" read as if it had just opened.
pub fn state_label(state: schemas::AlertState, opened_ms: i64, tick_ms: i64) -> &'static str {
    match state {
        schemas::AlertState::Opened if opened_ms >= tick_ms => "new",
        schemas::AlertState::Opened => "open",
        schemas::AlertState::Updated => "updated",
        schemas::AlertState::Resolved => "resolved",
    }
}

#[cfg(test)]
mod tests {
    use super::state_label;
    use schemas::AlertState;

    #[test]
    fn an_alert_reads_new_only_on_the_tick_that_opened_it() {
        assert_eq!(state_label(AlertState::Opened, 1_000, 1_000), "new");
        assert_eq!(state_label(AlertState::Opened, 1_000, 301_000), "open");
        assert_eq!(state_label(AlertState::Updated, 1_000, 301_000), "updated");
    }
}
