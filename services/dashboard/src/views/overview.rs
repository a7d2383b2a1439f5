//! Overview: fleet health, incident probabilities, servers per level, warm-up progress and a
//! sortable table of the riskiest servers with forecast sparklines.

use askama::Template;
use serde::Deserialize;

use schemas::{Level, ServerForecast, Target};

use super::chart::{self, Sparkline};
use super::{level_class, level_label, Stamp};
use crate::format;
use crate::state::Latest;

pub const DEFAULT_ROWS: usize = 25;
pub const MAX_ROWS: usize = 200;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OverviewQuery {
    pub sort: Option<String>,
    pub dir: Option<String>,
    pub n: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Risk,
    Name,
    Profile,
    Cpu,
    Mem,
    Breach,
}

impl SortKey {
    const ALL: [(SortKey, &'static str, &'static str); 6] = [
        (SortKey::Name, "name", "Server"),
        (SortKey::Profile, "profile", "Profile"),
        (SortKey::Risk, "risk", "Risk"),
        (SortKey::Cpu, "cpu", "CPU now"),
        (SortKey::Mem, "mem", "Memory now"),
        (SortKey::Breach, "breach", "First breach"),
    ];

    fn parse(s: Option<&str>) -> SortKey {
        SortKey::ALL.iter().find(|(_, n, _)| Some(*n) == s).map(|(k, _, _)| *k).unwrap_or(SortKey::Risk)
    }
}

pub struct Header {
    pub label: &'static str,
    pub href: String,
    pub arrow: &'static str,
    pub num: bool,
}

pub struct Row {
    pub rank: usize,
    pub name: String,
    pub href: String,
    pub profile: &'static str,
    pub risk: String,
    pub level: &'static str,
    pub level_label: &'static str,
    pub cpu: String,
    pub mem: String,
    pub reason: String,
    pub breach: String,
    pub spark: Option<Sparkline>,
    pub warming: Option<String>,
}

pub struct LevelSlice {
    pub class: &'static str,
    pub label: &'static str,
    pub count: u32,
    pub x: f32,
    pub width: f32,
}

pub struct Warm {
    pub ready: u32,
    pub servers: u32,
    pub warming: u32,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "overview_live.html")]
pub struct OverviewLive {
    pub stamp: Option<Stamp>,
    pub health_class: &'static str,
    pub health_label: &'static str,
    pub p30: String,
    pub p8h: String,
    pub avg_risk: String,
    pub max_risk: String,
    pub servers: u32,
    pub alerts_warning: u32,
    pub alerts_critical: u32,
    pub levels: Vec<LevelSlice>,
    pub warm: Option<Warm>,
    pub headers: Vec<Header>,
    pub rows: Vec<Row>,
    pub shown: usize,
    pub more_href: Option<String>,
}

fn first_breach(s: &ServerForecast) -> Option<u32> {
    s.alerts.iter().map(|a| a.minutes_ahead).min()
}

/// The target a row's sparkline shows: the one behind the biggest risk reason, else CPU.
fn key_target(s: &ServerForecast) -> Target {
    s.reasons.iter().max_by(|a, b| a.points.total_cmp(&b.points)).map(|r| r.target).unwrap_or(Target::Cpu)
}

pub fn build(latest: Option<&Latest>, q: &OverviewQuery) -> OverviewLive {
    let n = q.n.unwrap_or(DEFAULT_ROWS).clamp(1, MAX_ROWS);
    let key = SortKey::parse(q.sort.as_deref());
    let desc = match q.dir.as_deref() {
        Some("asc") => false,
        Some("desc") => true,
        _ => matches!(key, SortKey::Risk | SortKey::Cpu | SortKey::Mem),
    };
    let headers = SortKey::ALL
        .iter()
        .map(|(k, name, label)| {
            let next_dir = if *k == key && desc { "asc" } else if *k == key { "desc" } else { "" };
            let dir = if next_dir.is_empty() { String::new() } else { format!("&dir={next_dir}") };
            Header {
                label,
                href: format!("/?sort={name}{dir}&n={n}"),
                arrow: if *k != key { "" } else if desc { " ▼" } else { " ▲" },
                num: matches!(k, SortKey::Risk | SortKey::Cpu | SortKey::Mem),
            }
        })
        .collect();
    let Some(latest) = latest else {
        return OverviewLive {
            stamp: None,
            health_class: "unknown",
            health_label: "No data",
            p30: "—".into(),
            p8h: "—".into(),
            avg_risk: "—".into(),
            max_risk: "—".into(),
            servers: 0,
            alerts_warning: 0,
            alerts_critical: 0,
            levels: vec![],
            warm: None,
            headers,
            rows: vec![],
            shown: 0,
            more_href: None,
        };
    };
    let f = &latest.snapshot.fleet;
    let total: u32 = Level::ALL.iter().map(|l| f.levels.get(*l)).sum::<u32>().max(1);
    let mut x = 0.0;
    let levels = Level::ALL
        .iter()
        .map(|l| {
            let count = f.levels.get(*l);
            let width = count as f32 / total as f32 * 100.0;
            let slice = LevelSlice { class: level_class(*l), label: level_label(*l), count, x, width };
            x += width;
            slice
        })
        .collect();
    let warm = (f.warming > 0).then(|| {
        let (mut least, mut need) = (u16::MAX, 0u16);
        for w in latest.snapshot.servers.iter().filter_map(|s| s.warmup) {
            least = least.min(w.have_steps);
            need = need.max(w.need_steps);
        }
        let detail = if need > 0 {
            format!("the furthest behind has {least} of {need} steps ({} of history needed)", format::span(std::time::Duration::from_secs(u64::from(need) * 300)))
        } else {
            String::new()
        };
        Warm { ready: f.ready, servers: f.servers, warming: f.warming, detail }
    });

    let mut picked: Vec<&ServerForecast> = latest.riskiest().take(n).collect();
    let cmp_f = |a: Option<f32>, b: Option<f32>| a.unwrap_or(f32::NEG_INFINITY).total_cmp(&b.unwrap_or(f32::NEG_INFINITY));
    picked.sort_by(|a, b| {
        let o = match key {
            SortKey::Risk => cmp_f(Some(a.risk), Some(b.risk)),
            SortKey::Name => a.server.cmp(&b.server),
            SortKey::Profile => a.profile.name().cmp(b.profile.name()),
            SortKey::Cpu => cmp_f(a.current.target(Target::Cpu), b.current.target(Target::Cpu)),
            SortKey::Mem => cmp_f(a.current.target(Target::Mem), b.current.target(Target::Mem)),
            SortKey::Breach => first_breach(a).unwrap_or(u32::MAX).cmp(&first_breach(b).unwrap_or(u32::MAX)),
        };
        let o = if desc { o.reverse() } else { o };
        o.then_with(|| a.server.cmp(&b.server))
    });
    let rows = picked
        .iter()
        .enumerate()
        .map(|(i, s)| Row {
            rank: i + 1,
            name: s.server.clone(),
            href: format::server_url(&s.server),
            profile: s.profile.label(),
            risk: format::risk(s.risk),
            level: level_class(s.level),
            level_label: level_label(s.level),
            cpu: format::target_value(Target::Cpu, s.current.target(Target::Cpu)),
            mem: format::target_value(Target::Mem, s.current.target(Target::Mem)),
            reason: s.reasons.iter().max_by(|a, b| a.points.total_cmp(&b.points)).map(|r| r.text.clone()).unwrap_or_default(),
            breach: first_breach(s).map(format::ahead).unwrap_or_else(|| "—".into()),
            spark: chart::sparkline(s.forecast_of(key_target(s))),
            warming: s.warmup.map(|w| format!("warming up {}/{}", w.have_steps, w.need_steps)),
        })
        .collect();
    let count = latest.snapshot.servers.len();
    let more_href = (n < count && n < MAX_ROWS).then(|| {
        let sort = q.sort.as_deref().map(|s| format!("sort={}&", format::url_component(s))).unwrap_or_default();
        format!("/?{sort}n={}", (n * 2).min(MAX_ROWS))
    });
    OverviewLive {
        stamp: Some(Stamp::of(latest)),
        health_class: level_class(f.health),
        health_label: level_label(f.health),
        p30: format::prob(f.prob_incident_30m),
        p8h: format::prob(f.prob_incident_8h),
        avg_risk: format::risk(f.avg_risk),
        max_risk: format::risk(f.max_risk),
        servers: f.servers,
        alerts_warning: f.alerts_warning,
        alerts_critical: f.alerts_critical,
        levels,
        warm,
        headers,
        shown: picked.len(),
        rows,
        more_href,
    }
}
