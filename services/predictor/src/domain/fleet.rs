//! Fleet-level figures over every server's assessment this tick.
//!
//! The fleet's incident figures add up the servers' own odds ([`super::odds`]): the *expected
//! number of servers with an incident*, `Σ p_server`, and the servers that carry most of it
//! (up to [`LIKELY_SERVERS`], likeliest first). "At least one incident", `1 − Π(1 − p_server)`
//! (summed in log space), is still published but saturates at 100 % on any fleet of size, so
//! it helps nobody decide anything. Every server added can only raise these figures.
//!
//! Fleet health is the worst level of any server ([`fleet_health`]; the level rule is in
//! [`super::risk`]): one critical server makes the fleet critical, and the level counts beside
//! it say how many.

use schemas::{FleetFigures, Level, ServerOdds};

use super::alerts::AlertCounts;
use super::risk::Assessment;

/// How many riskiest servers the figures list.
pub const TOP_SERVERS: usize = 20;
/// How many servers each "likely incidents" list names.
pub const LIKELY_SERVERS: usize = 5;
/// Servers with lower odds are not named in the lists.
pub const LIKELY_MIN_ODDS: f32 = 0.01;

/// One server's part in the fleet figures.
#[derive(Debug, Clone, Copy)]
pub struct ServerStatus<'a> {
    pub server: &'a str,
    pub assessment: &'a Assessment,
    /// Below the minimum history (no forecast yet).
    pub warming: bool,
}

/// Fleet figures over every server assessed this tick, with the alert book's active counts.
/// Levels, risk, odds and the top lists count warming servers too (their risk and odds come
/// from current values); health is the worst server's level.
pub fn figures<'a>(servers: impl IntoIterator<Item = ServerStatus<'a>>, alerts: AlertCounts) -> FleetFigures {
    let mut f = FleetFigures::default();
    let mut risk_sum = 0.0_f64;
    // Σ ln(1 − p): stays exact for thousands of small odds.
    let (mut ln_calm_30m, mut ln_calm_8h) = (0.0_f64, 0.0_f64);
    let mut top: Vec<(f32, &str)> = Vec::with_capacity(TOP_SERVERS + 1);
    let (mut sum_30m, mut sum_8h) = (0.0_f64, 0.0_f64);
    let mut likely_30m: Vec<(f32, &str)> = Vec::with_capacity(LIKELY_SERVERS + 1);
    let mut likely_8h: Vec<(f32, &str)> = Vec::with_capacity(LIKELY_SERVERS + 1);
    for s in servers {
        let a = s.assessment;
        f.servers += 1;
        if s.warming {
            f.warming += 1;
        } else {
            f.ready += 1;
        }
        f.levels.add(a.level);
        risk_sum += f64::from(a.risk);
        f.max_risk = f.max_risk.max(a.risk);
        ln_calm_30m += (-f64::from(a.odds.within_30m.clamp(0.0, 1.0))).ln_1p();
        ln_calm_8h += (-f64::from(a.odds.within_8h.clamp(0.0, 1.0))).ln_1p();
        let (p30, p8h) = (odds(a.odds.within_30m), odds(a.odds.within_8h));
        sum_30m += f64::from(p30);
        sum_8h += f64::from(p8h);
        rank_into(&mut likely_30m, LIKELY_SERVERS, p30, s.server, LIKELY_MIN_ODDS);
        rank_into(&mut likely_8h, LIKELY_SERVERS, p8h, s.server, LIKELY_MIN_ODDS);
        rank_into(&mut top, TOP_SERVERS, a.risk, s.server, f32::NEG_INFINITY);
    }
    if f.servers > 0 {
        f.avg_risk = (risk_sum / f64::from(f.servers)) as f32;
    }
    f.prob_incident_30m = (1.0 - ln_calm_30m.exp()).clamp(0.0, 1.0) as f32;
    f.prob_incident_8h = (1.0 - ln_calm_8h.exp()).clamp(0.0, 1.0) as f32;
    f.health = fleet_health(Level::ALL.into_iter().filter(|l| f.levels.get(*l) > 0));
    f.top = top.into_iter().map(|(_, n)| n.to_string()).collect();
    f.expected_incidents_30m = sum_30m as f32;
    f.expected_incidents_8h = sum_8h as f32;
    let named = |v: Vec<(f32, &str)>| v.into_iter().map(|(p, n)| ServerOdds { server: n.to_string(), p }).collect();
    f.likely_incidents_30m = named(likely_30m);
    f.likely_incidents_8h = named(likely_8h);
    f.alerts_warning = alerts.warning;
    f.alerts_critical = alerts.critical;
    f
}

/// Fleet health: the worst level of any server (`healthy` for an empty fleet).
pub fn fleet_health(levels: impl IntoIterator<Item = Level>) -> Level {
    super::risk::server_level(levels)
}

/// Odds clamped to 0-1, non-finite as 0.
fn odds(p: f32) -> f32 {
    if p.is_finite() {
        p.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Keeps `list` the `cap` largest `(value, name)` pairs with `value >= min`, largest first,
/// ties by name.
fn rank_into<'a>(list: &mut Vec<(f32, &'a str)>, cap: usize, value: f32, name: &'a str, min: f32) {
    if value < min {
        return;
    }
    let before = |&(v, n): &(f32, &str)| v > value || (v == value && n <= name);
    let at = list.partition_point(before);
    if at < cap {
        list.insert(at, (value, name));
        list.truncate(cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::odds::IncidentOdds;
    use crate::domain::risk::{assess, tests::flat};
    use schemas::{Metrics, Profile, Target};

    fn status<'a>(server: &'a str, a: &'a Assessment, warming: bool) -> ServerStatus<'a> {
        ServerStatus { server, assessment: a, warming }
    }

    #[test]
    fn figures_count_rank_and_combine() {
        let calm = assess(Profile::Generic, &Metrics::default(), &[flat(Target::Mem, 40.0, 50.0, 60.0)]);
        let hot =
            assess(Profile::WebApi, &Metrics { mem_used_pct: Some(96.0), ..Default::default() }, &[flat(Target::Mem, 90.0, 94.0, 97.0)]);
        let names: Vec<String> = (0..30).map(|i| format!("s{i:02}")).collect();
        let mut all: Vec<ServerStatus> = names.iter().map(|n| status(n, &calm, false)).collect();
        let one = figures(all.iter().copied().take(1), AlertCounts::default());
        all.push(status("web", &hot, false));
        all.push(status("new", &calm, true));
        let f = figures(all.iter().copied(), AlertCounts { warning: 2, critical: 1 });
        assert_eq!((f.servers, f.ready, f.warming), (32, 31, 1));
        assert_eq!(f.levels.get(hot.level), 1);
        assert_eq!(f.levels.healthy, 31);
        assert_eq!(f.top.len(), TOP_SERVERS);
        assert_eq!(f.top[0], "web");
        assert_eq!(f.top[1], "new", "ties ranked by name");
        assert_eq!(f.max_risk, hot.risk);
        assert!((f.avg_risk - hot.risk / 32.0).abs() < 1e-4);
        assert_eq!(f.health, Level::Critical, "one critical server makes the fleet critical");
        assert!(f.prob_incident_30m >= hot.odds.within_30m && f.prob_incident_8h <= 1.0);
        assert!(f.prob_incident_30m >= one.prob_incident_30m, "adding servers never lowers the odds");
        assert_eq!((f.alerts_warning, f.alerts_critical), (2, 1));
        // Memory critical now: an incident under way, odds 1; the calm ones add nothing.
        assert!((f.expected_incidents_30m - 1.0).abs() < 1e-3 && (f.expected_incidents_8h - 1.0).abs() < 1e-3, "{f:?}");
        let web = vec![ServerOdds { server: "web".into(), p: 1.0 }];
        assert_eq!((&f.likely_incidents_30m, &f.likely_incidents_8h), (&web, &web));
    }

    /// The case: the fleet odds "incident in 30 min: 100 %" saturate, the expected
    /// number of servers does not, and the lists name who carries it.
    #[test]
    fn expected_incidents_add_up_and_name_the_carriers() {
        let mut names = Vec::new();
        let mut assessed = Vec::new();
        for i in 0..100 {
            let p = [0.0f32, 0.02, 0.3, 0.6, 0.9][i % 5] + i as f32 * 1e-4;
            let a =
                Assessment { risk: 0.0, level: Level::Healthy, reasons: vec![], odds: IncidentOdds { within_30m: p / 2.0, within_8h: p } };
            names.push(format!("s{i:03}"));
            assessed.push(a);
        }
        let f = figures(names.iter().zip(&assessed).map(|(n, a)| status(n, a, false)), AlertCounts::default());
        let want_8h: f32 = assessed.iter().map(|a| a.odds.within_8h).sum();
        assert!((f.expected_incidents_8h - want_8h).abs() < 1e-3, "{} vs {want_8h}", f.expected_incidents_8h);
        assert!(f.expected_incidents_8h > 30.0 && f.prob_incident_8h > 0.999, "the old figure saturates");
        assert!(f.expected_incidents_30m < f.expected_incidents_8h);
        assert_eq!(f.likely_incidents_8h.len(), LIKELY_SERVERS);
        assert_eq!(f.likely_incidents_8h[0].server, "s099", "the likeliest first");
        assert!(f.likely_incidents_8h.windows(2).all(|w| w[0].p >= w[1].p));
        // Servers below 1 % are never named.
        let low = Assessment { odds: IncidentOdds { within_30m: 0.001, within_8h: 0.009 }, ..assessed[0].clone() };
        let f = figures([status("x", &low, false)], AlertCounts::default());
        assert!(f.likely_incidents_30m.is_empty() && f.likely_incidents_8h.is_empty());
        assert!((f.expected_incidents_8h - 0.009).abs() < 1e-6);
    }

    /// Fleet health is the worst server's level: "Fleet health: Healthy" next to a critical
    /// server cannot happen.
    #[test]
    fn health_is_the_worst_servers_level() {
        let hot = assess(Profile::WebApi, &Metrics { mem_used_pct: Some(99.0), ..Default::default() }, &[]);
        assert_eq!(hot.level, Level::Critical, "{hot:?}");
        let warm = assess(Profile::WebApi, &Metrics { mem_used_pct: Some(90.0), ..Default::default() }, &[]);
        assert_eq!(warm.level, Level::Warning, "{warm:?}");
        let calm = assess(Profile::Generic, &Metrics::default(), &[]);
        let mut all: Vec<ServerStatus> = (0..999).map(|_| status("b", &calm, false)).collect();
        assert_eq!(figures(all.iter().copied(), AlertCounts::default()).health, Level::Healthy);
        all.push(status("w", &warm, false));
        assert_eq!(figures(all.iter().copied(), AlertCounts::default()).health, Level::Warning);
        all.push(status("a", &hot, true));
        assert_eq!(figures(all.iter().copied(), AlertCounts::default()).health, Level::Critical, "warming servers count");
        assert_eq!(figures([], AlertCounts::default()).health, Level::Healthy);
        assert_eq!(fleet_health([Level::Watch, Level::Healthy]), Level::Watch);
    }
}
