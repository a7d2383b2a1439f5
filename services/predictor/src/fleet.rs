//! Fleet-level figures, and the incident odds behind them.
//!
//! An *incident* is a target at or above its profile's critical threshold. The original added
//! fixed increments per server (+0.25, +0.10...) and averaged them, which is not a probability
//! of anything. Here the odds come from the forecast's own quantiles:
//!
//! 1. **Per step.** The predictive distribution of a target at step `k` is taken as a split
//!    normal with median P50, whose upper half has σ = (P90 − P50)/1.2816 and lower half
//!    σ = (P50 − P10)/1.2816, so it reproduces all three quantiles exactly and is skewed where
//!    the model is. `P(X_k ≥ critical)` follows from the normal tail of the half the threshold
//!    falls in; with no spread it is 1 or 0.
//! 2. **Within a horizon** (6 steps = 30 min, 96 = 8 h): the maximum over the steps. Errors of
//!    5-minute steps are strongly correlated (one unknown level shift moves them together), so
//!    the steps are treated as comonotone; this is the lower bound of the union and avoids the
//!    independence assumption that would turn 96 small chances into a certainty. A target
//!    already critical now counts as 1 (the incident is under way).
//! 3. **Per server:** targets combined as independent, `1 − Π(1 − p_target)`.
//! 4. **Fleet:** the *expected number of servers with an incident*, `Σ p_server`, and the
//!    servers that carry most of it (up to [`LIKELY_SERVERS`], likeliest first). "At least one
//!    incident", `1 − Π(1 − p_server)` (summed in log space), is still published but saturates
//!    at 100 % on any fleet of size, so it helps nobody decide anything.
//!
//! These odds grow when the whole forecast shifts up, when P90 widens above P50, and with
//! every server added; 30-minute odds never exceed 8-hour odds.
//!
//! Fleet health is the worst level of any server ([`fleet_health`]; the level rule is in
//! [`crate::risk`]): one critical server makes the fleet critical, and the level counts beside
//! it say how many.

use serde::{Deserialize, Serialize};

use schemas::{FleetFigures, Level, Metrics, Profile, ServerOdds, Target, TargetForecast};

use crate::alerts::AlertCounts;
use crate::risk::{Assessment, NEAR_STEPS};
use crate::thresholds::thresholds;

/// z of the 90th percentile of a standard normal.
const Z90: f64 = 1.281_551_565_5;
/// How many riskiest servers the figures list.
pub const TOP_SERVERS: usize = 20;
/// How many servers each "likely incidents" list names.
pub const LIKELY_SERVERS: usize = 5;
/// Servers with lower odds are not named in the lists.
pub const LIKELY_MIN_ODDS: f32 = 0.01;

/// A server's probability of an incident within 30 min and within 8 h.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct IncidentOdds {
    pub within_30m: f32,
    pub within_8h: f32,
}

/// `P(X ≥ threshold)` at one step, from its P10/P50/P90 (see the module doc). Non-finite
/// quantiles give 0.
pub fn exceedance(p10: f32, p50: f32, p90: f32, threshold: f32) -> f64 {
    match exceedance_z(p10, p50, p90, threshold) {
        Some(z) => normal_sf(z),
        None => 0.0,
    }
}

/// The standard score whose upper tail is [`exceedance`]: `±∞` where the spread is nil (certain
/// either way), `None` where a quantile is not finite (odds 0). The tail falls as `z` grows, so
/// the largest odds over many steps are the tail of their smallest `z`: one `exp` per target
/// instead of one per step.
fn exceedance_z(p10: f32, p50: f32, p90: f32, threshold: f32) -> Option<f64> {
    if !(p10.is_finite() && p50.is_finite() && p90.is_finite() && threshold.is_finite()) {
        return None;
    }
    let (m, c) = (f64::from(p50), f64::from(threshold));
    let spread = if c >= m { f64::from(p90) - m } else { m - f64::from(p10) };
    let sigma = spread.max(0.0) / Z90;
    if sigma <= 1e-9 * (1.0 + m.abs()) {
        return Some(if m >= c { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    Some((c - m) / sigma)
}

/// Upper tail of the standard normal, `1 − Φ(z)`, via the Numerical Recipes erfc (relative
/// error < 1.2e-7 everywhere).
pub fn normal_sf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.5 * a);
    let poly = -a * a - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    let erfc = if x >= 0.0 { erfc } else { 2.0 - erfc };
    (erfc / 2.0).clamp(0.0, 1.0)
}

/// The odds that any target of a server breaches its critical threshold within 30 min / 8 h.
pub fn incident_odds(profile: Profile, current: &Metrics, forecast: &[TargetForecast]) -> IncidentOdds {
    // Running products of (1 − p) over targets.
    let (mut calm_30m, mut calm_8h) = (1.0_f64, 1.0_f64);
    for target in Target::ALL {
        let Some(th) = thresholds(profile, target) else { continue };
        let now = current.target(target).is_some_and(|v| v >= th.critical);
        let (mut p30, mut p8h) = if now { (1.0, 1.0) } else { (0.0, 0.0) };
        if let Some(f) = forecast.iter().find(|f| f.target == target) {
            let steps = f.p10.len().min(f.p50.len()).min(f.p90.len());
            let (mut z30, mut z8h) = (f64::INFINITY, f64::INFINITY);
            for k in 0..steps {
                if let Some(z) = exceedance_z(f.p10[k], f.p50[k], f.p90[k], th.critical) {
                    z8h = z8h.min(z);
                    if k < NEAR_STEPS {
                        z30 = z30.min(z);
                    }
                }
            }
            // normal_sf(+inf) is 0, the same as no finite step.
            p30 = f64::max(p30, normal_sf(z30));
            p8h = f64::max(p8h, normal_sf(z8h));
        }
        calm_30m *= 1.0 - p30;
        calm_8h *= 1.0 - p8h;
    }
    IncidentOdds { within_30m: (1.0 - calm_30m) as f32, within_8h: (1.0 - calm_8h) as f32 }
}

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
    crate::risk::server_level(levels)
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
    use crate::risk::{assess, tests::flat};

    #[test]
    fn exceedance_reproduces_the_quantiles() {
        assert!((exceedance(10.0, 20.0, 30.0, 30.0) - 0.1).abs() < 1e-6);
        assert!((exceedance(10.0, 20.0, 30.0, 20.0) - 0.5).abs() < 1e-6);
        assert!((exceedance(10.0, 20.0, 30.0, 10.0) - 0.9).abs() < 1e-6);
        assert_eq!(exceedance(20.0, 20.0, 20.0, 20.0), 1.0);
        assert_eq!(exceedance(20.0, 20.0, 20.0, 20.1), 0.0);
        assert_eq!(exceedance(f32::NAN, 20.0, 30.0, 25.0), 0.0);
        assert!(normal_sf(-40.0) <= 1.0 && normal_sf(40.0) >= 0.0);
    }

    #[test]
    fn odds_are_probabilities_and_grow_with_the_forecast() {
        let mut last = IncidentOdds::default();
        for shift in 0..40 {
            let m = 70.0 + shift as f32;
            let fc = [flat(Target::Mem, m - 5.0, m, m + 4.0)];
            let o = incident_odds(Profile::Generic, &Metrics::default(), &fc);
            assert!((0.0..=1.0).contains(&o.within_30m) && (0.0..=1.0).contains(&o.within_8h));
            assert!(o.within_30m <= o.within_8h);
            assert!(o.within_30m >= last.within_30m && o.within_8h >= last.within_8h, "{m}: {o:?} < {last:?}");
            last = o;
        }
        assert!(last.within_30m > 0.99);
    }

    /// The odds are the largest per-step exceedance, computed from the smallest z: same numbers
    /// as taking the max of `exceedance` over the steps, on forecasts of every shape.
    #[test]
    fn odds_equal_the_largest_step_exceedance() {
        let mut seed = 0x9e37_79b9_u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as f32 / (1u64 << 31) as f32
        };
        for case in 0..300 {
            let mut f = flat(Target::Cpu, 0.0, 0.0, 0.0);
            for k in 0..f.p50.len() {
                let m = 60.0 + 45.0 * next();
                let (lo, hi) = if case % 7 == 0 { (0.0, 0.0) } else { (8.0 * next(), 8.0 * next()) };
                (f.p10[k], f.p50[k], f.p90[k]) = (m - lo, m, m + hi);
            }
            if case % 11 == 0 {
                f.p90[case % 96] = f32::NAN;
            }
            let th = thresholds(Profile::Generic, Target::Cpu).unwrap();
            let step = |k: usize| exceedance(f.p10[k], f.p50[k], f.p90[k], th.critical);
            let want_8h = (0..f.p50.len()).map(step).fold(0.0, f64::max);
            let want_30m = (0..NEAR_STEPS).map(step).fold(0.0, f64::max);
            let o = incident_odds(Profile::Generic, &Metrics::default(), std::slice::from_ref(&f));
            assert_eq!(o.within_8h, want_8h as f32, "case {case}");
            assert_eq!(o.within_30m, want_30m as f32, "case {case}");
        }
    }

    #[test]
    fn late_breach_counts_for_8h_only() {
        let mut f = flat(Target::Disk, 50.0, 52.0, 55.0);
        for k in 60..96 {
            (f.p10[k], f.p50[k], f.p90[k]) = (94.0, 97.0, 99.0);
        }
        let o = incident_odds(Profile::Generic, &Metrics::default(), &[f]);
        assert!(o.within_30m < 1e-6, "{o:?}");
        assert!(o.within_8h > 0.8, "{o:?}");
        let now = Metrics { disk_usage_pct: Some(96.0), ..Default::default() };
        assert_eq!(incident_odds(Profile::Generic, &now, &[]).within_30m, 1.0, "critical now is an incident");
    }

    fn status<'a>(server: &'a str, a: &'a Assessment, warming: bool) -> ServerStatus<'a> {
        ServerStatus { server, assessment: a, warming }
    }

    #[test]
    fn figures_count_rank_and_combine() {
        let calm = assess(Profile::Generic, &Metrics::default(), &[flat(Target::Mem, 40.0, 50.0, 60.0)]);
        let hot = assess(
            Profile::WebApi,
            &Metrics { mem_used_pct: Some(96.0), ..Default::default() },
            &[flat(Target::Mem, 90.0, 94.0, 97.0)],
        );
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
            let a = Assessment { risk: 0.0, level: Level::Healthy, reasons: vec![], odds: IncidentOdds { within_30m: p / 2.0, within_8h: p } };
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
