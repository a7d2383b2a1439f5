//! Overview: fleet health, the expected number of servers with an incident and who carries
//! it, servers per level, warm-up progress and a sortable table of the riskiest servers with
//! forecast sparklines. The level rule the predictor applies (`services/predictor/src/risk.rs`)
//! is stated on the page. For a partitioned fleet, a partition that stopped publishing (or has
//! not yet) is named above the figures, which still include its last known servers.

use std::time::{Duration, SystemTime};

use askama::Template;
use serde::Deserialize;

use schemas::{FleetFigures, Level, ServerOdds, ServerSummary, Target};

use super::chart::{self, Sparkline};
use super::{level_class, level_label, Stamp};
use crate::format;
use crate::partitions;
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

/// The expected number of servers with an incident within one horizon, and who carries it.
pub struct Expected {
    /// Element id: `e30`, `e8h`.
    pub id: &'static str,
    /// "30 min", "8 h".
    pub horizon: &'static str,
    /// "2.4" servers.
    pub count: String,
    /// "web003 100 %, db001 80 %" (at most 5).
    pub carriers: Vec<Carrier>,
    /// "these carry 1.8 of 2.4", when the list does not carry all of it.
    pub share: String,
}

pub struct Carrier {
    pub name: String,
    pub href: String,
    pub p: String,
}

pub struct Warm {
    pub ready: u32,
    pub servers: u32,
    pub warming: u32,
    pub detail: String,
}

/// A partition the merged view is short of, in words.
pub struct PartitionNote {
    pub index: u16,
    /// "Partition 3 of 4 (predictions.current.3): last snapshot 12 min ago; its 250 servers
    /// are shown as of then."
    pub text: String,
}

#[derive(Template)]
#[template(path = "overview_live.html")]
pub struct OverviewLive {
    pub stamp: Option<Stamp>,
    /// Partitions lagging the newest by over two steps, or missing.
    pub partitions: Vec<PartitionNote>,
    pub health_class: &'static str,
    pub health_label: &'static str,
    /// "1 critical, 4 warning" (the servers at the fleet's worst levels), or "all healthy".
    pub health_detail: String,
    /// Within 30 min, within 8 h.
    pub expected: Vec<Expected>,
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

fn first_breach(s: &ServerSummary) -> Option<u32> {
    s.breach.map(|b| b.minutes_ahead)
}

/// "now" when an alert's threshold is already reached, else "in 25 min".
fn breach_text(s: &ServerSummary) -> Option<String> {
    let first = s.breach?;
    Some(if s.breached_now() { "now".into() } else { format::ahead(first.minutes_ahead) })
}

/// An expected count of servers, one decimal: "0.0", "2.4", "37.1".
fn count(x: f32) -> String {
    if x.is_finite() {
        format!("{:.1}", x.max(0.0))
    } else {
        "—".into()
    }
}

fn expected(id: &'static str, horizon: &'static str, total: f32, likely: &[ServerOdds]) -> Expected {
    let carried: f32 = likely.iter().map(|o| o.p).sum();
    let share = if !likely.is_empty() && total - carried > 0.05 {
        format!("these carry {} of {}", count(carried), count(total))
    } else {
        String::new()
    };
    Expected {
        id,
        horizon,
        count: count(total),
        carriers: likely
            .iter()
            .map(|o| Carrier { name: o.server.clone(), href: format::server_url(&o.server), p: format::prob(o.p) })
            .collect(),
        share,
    }
}

/// The partitions [`partitions::gaps`] names, with how old their snapshot is at `now`.
pub fn partition_notes(latest: &Latest, now: SystemTime) -> Vec<PartitionNote> {
    let now_ms = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    partitions::gaps(&latest.partitions, latest.snapshot.model.step_ms)
        .into_iter()
        .map(|g| {
            let what = match g.last {
                Some(p) => format!(
                    "last snapshot {} ago; its {} servers are shown as of then",
                    format::span(Duration::from_millis(now_ms.saturating_sub(p.published_ms).max(0) as u64)),
                    p.servers
                ),
                None => "no snapshot yet; its servers are missing".into(),
            };
            let subject = schemas::partition::snapshot_subject(g.index, g.count);
            PartitionNote { index: g.index, text: format!("Partition {} of {} ({subject}): {what}.", g.index, g.count) }
        })
        .collect()
}

/// The fleet's worst levels with their counts: "1 critical, 4 warning"; "all healthy".
fn health_detail(f: &FleetFigures) -> String {
    let parts: Vec<String> = [Level::Critical, Level::Warning, Level::Watch]
        .into_iter()
        .filter(|l| f.levels.get(*l) > 0)
        .map(|l| format!("{} {}", f.levels.get(l), l.name()))
        .collect();
    if parts.is_empty() {
        "all healthy".into()
    } else {
        parts.join(", ")
    }
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
            let next_dir = if *k == key && desc {
                "asc"
            } else if *k == key {
                "desc"
            } else {
                ""
            };
            let dir = if next_dir.is_empty() { String::new() } else { format!("&dir={next_dir}") };
            Header {
                label,
                href: format!("/?sort={name}{dir}&n={n}"),
                arrow: if *k != key {
                    ""
                } else if desc {
                    " ▼"
                } else {
                    " ▲"
                },
                num: matches!(k, SortKey::Risk | SortKey::Cpu | SortKey::Mem),
            }
        })
        .collect();
    let Some(latest) = latest else {
        return OverviewLive {
            stamp: None,
            partitions: Vec::new(),
            health_class: "unknown",
            health_label: "No data",
            health_detail: String::new(),
            expected: vec![expected("e30", "30 min", f32::NAN, &[]), expected("e8h", "8 h", f32::NAN, &[])],
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
            format!(
                "the furthest behind has {least} of {need} steps ({} of history needed)",
                format::span(std::time::Duration::from_secs(u64::from(need) * 300))
            )
        } else {
            String::new()
        };
        Warm { ready: f.ready, servers: f.servers, warming: f.warming, detail }
    });

    let mut picked: Vec<&ServerSummary> = latest.riskiest().take(n).collect();
    let cmp_f = |a: Option<f32>, b: Option<f32>| a.unwrap_or(f32::NEG_INFINITY).total_cmp(&b.unwrap_or(f32::NEG_INFINITY));
    picked.sort_by(|a, b| {
        let o = match key {
            // Least risky first, so that descending (the default) is `riskier_first`.
            SortKey::Risk => crate::state::riskier_first(a, b).reverse(),
            SortKey::Name => a.server.cmp(&b.server),
            SortKey::Profile => a.profile.name().cmp(b.profile.name()),
            SortKey::Cpu => cmp_f(a.current(Target::Cpu), b.current(Target::Cpu)),
            SortKey::Mem => cmp_f(a.current(Target::Mem), b.current(Target::Mem)),
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
            cpu: format::target_value(Target::Cpu, s.current(Target::Cpu)),
            mem: format::target_value(Target::Mem, s.current(Target::Mem)),
            // The headline of the reason that sets the level (the predictor lists it first).
            reason: s.reason.clone().unwrap_or_default(),
            breach: breach_text(s).unwrap_or_else(|| "—".into()),
            spark: chart::sparkline(s.spark.as_ref()),
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
        partitions: partition_notes(latest, SystemTime::now()),
        health_class: level_class(f.health),
        health_label: level_label(f.health),
        health_detail: health_detail(f),
        expected: vec![
            expected("e30", "30 min", f.expected_incidents_30m, &f.likely_incidents_30m),
            expected("e8h", "8 h", f.expected_incidents_8h, &f.likely_incidents_8h),
        ],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{self, Spec};
    use schemas::snapshot::LevelCounts;
    use schemas::{AlertBasis, AlertBrief, AlertState, Breach};
    use std::time::SystemTime;

    fn render(snapshot: schemas::Snapshot) -> String {
        let latest = Latest::new(snapshot, SystemTime::now(), 1);
        build(Some(&latest), &OverviewQuery::default()).render().unwrap()
    }

    /// The page states the level rule, shows the expected number of servers with an incident
    /// and who carries it instead of saturated odds, and names the worst levels beside the
    /// fleet's health.
    #[test]
    fn states_the_rule_and_shows_expected_incidents() {
        let mut snap = fixture::snapshot(&Spec::default());
        let f = &mut snap.fleet;
        f.prob_incident_30m = 1.0;
        f.prob_incident_8h = 1.0;
        f.expected_incidents_30m = 2.44;
        f.expected_incidents_8h = 7.0;
        f.likely_incidents_30m = vec![ServerOdds { server: "ppweb001".into(), p: 1.0 }, ServerOdds { server: "ppdb002".into(), p: 0.8 }];
        f.likely_incidents_8h = vec![ServerOdds { server: "ppweb001".into(), p: 1.0 }];
        f.levels = LevelCounts { healthy: 15, watch: 0, warning: 4, critical: 1 };
        f.health = Level::Critical;
        let page = render(snap);
        assert!(page.contains("id=\"level-rule\""), "the rule is on the page");
        assert!(page.contains("fleet health is the worst server's level"));
        assert!(page.contains("or its P50 forecast crosses the critical threshold within 30 min"));
        assert!(page.contains("<div class=\"big\" id=\"e30\">2.4</div>"), "{page}");
        assert!(page.contains("<div class=\"big\" id=\"e8h\">7.0</div>"));
        assert!(page.contains("<a href=\"/servers/ppdb002\">ppdb002</a> 80%"));
        assert!(page.contains("(these carry 1.0 of 7.0)"));
        assert!(!page.contains("100%</div>"), "no saturated fleet odds");
        assert!(page.contains(">Critical</span>") && page.contains("<div id=\"health-detail\">1 critical, 4 warning</div>"));
    }

    /// The server's forecast with one CPU alert due in `minutes_ahead`, CPU used at `cpu` now.
    fn alerted(mut sf: schemas::ServerForecast, minutes_ahead: u32, cpu: f32) -> ServerSummary {
        sf.current.cpu_idle_pct = Some(100.0 - cpu);
        sf.alerts = vec![schemas::Alert {
            id: format!("{}.cpu", sf.server),
            server: sf.server.clone(),
            profile: sf.profile,
            target: Target::Cpu,
            severity: Level::Warning,
            basis: AlertBasis::P90,
            threshold: 85.0,
            predicted: 86.0,
            current: Some(cpu),
            steps_ahead: (minutes_ahead / 5) as u16,
            minutes_ahead,
            state: AlertState::Opened,
            opened_ms: 0,
            updated_ms: 0,
        }];
        ServerSummary::of(&sf)
    }

    /// The row shows the headline of the predictor's first reason (the one that sets the
    /// level) and says "now" for a breach already under way.
    #[test]
    fn rows_show_the_level_setting_reason_and_breach_now() {
        let spec = Spec::default();
        let mut forecasts = fixture::forecasts(&spec);
        forecasts[0].reasons = vec![
            schemas::snapshot::RiskReason {
                target: Target::Cpu,
                points: 5.0,
                text: "CPU used 100 % now (critical from 99 %), P50 back under 85 % in 10 min".into(),
            },
            schemas::snapshot::RiskReason { target: Target::Mem, points: 30.0, text: "Memory 96 % now (warning from 94 %)".into() },
        ];
        let name = forecasts[0].server.clone();
        let mut snap = fixture::snapshot_of(&spec, &forecasts);
        snap.servers[0] = alerted(forecasts[0].clone(), 5, 90.0);
        let r = Latest::new(snap, SystemTime::now(), 1);
        let view = build(Some(&r), &OverviewQuery { n: Some(200), ..Default::default() });
        let row = view.rows.iter().find(|row| row.name == name).unwrap();
        assert_eq!(row.reason, "CPU used 100 % now (critical from 99 %)");
        assert_eq!(row.breach, "now");
        assert!(row.spark.as_ref().is_some_and(|s| s.label == Target::Cpu.label()), "the sparkline of the reason's target");
        let s = alerted(forecasts[0].clone(), 25, 60.0);
        assert_eq!(s.breach, Some(Breach { target: Target::Cpu, severity: Level::Warning, minutes_ahead: 25 }));
        assert_eq!(breach_text(&s).as_deref(), Some("in 25 min"));
        let calm = ServerSummary { breach: None, alerts: Vec::<AlertBrief>::new(), ..s };
        assert_eq!(breach_text(&calm), None);
    }

    /// A partition more than two steps behind the newest is named, with its servers' age; a
    /// missing one too; partitions in step are not.
    #[test]
    fn names_a_lagging_partition() {
        use crate::partitions::PartitionSeen;
        let t = 1_764_162_000_000i64;
        let mut latest = Latest::new(fixture::snapshot(&Spec::default()), SystemTime::now(), 1);
        let seen = |index, at| PartitionSeen { index, count: 4, published_ms: at, servers: 5 };
        latest.partitions = vec![seen(0, t), seen(1, t - 60_000), seen(3, t - 12 * 60_000)];
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis((t + 30_000) as u64);
        let notes: Vec<(u16, String)> = partition_notes(&latest, now).into_iter().map(|n| (n.index, n.text)).collect();
        assert_eq!(
            notes,
            [
                (2, "Partition 2 of 4 (predictions.current.2): no snapshot yet; its servers are missing.".to_string()),
                (3, "Partition 3 of 4 (predictions.current.3): last snapshot 12 min ago; its 5 servers are shown as of then.".to_string()),
            ]
        );
        let page = build(Some(&latest), &OverviewQuery::default()).render().unwrap();
        assert!(page.contains("id=\"partition-3\""), "{page}");
        latest.partitions.clear();
        assert!(!render_latest(&latest).contains("id=\"partitions\""), "nothing said when unpartitioned");
    }

    fn render_latest(latest: &Latest) -> String {
        build(Some(latest), &OverviewQuery::default()).render().unwrap()
    }

    #[test]
    fn no_data_says_so() {
        let view = build(None, &OverviewQuery::default());
        assert_eq!(view.health_label, "No data");
        assert!(view.expected.iter().all(|e| e.count == "—"));
    }
}
