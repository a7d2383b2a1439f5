//! A server's 0-100 risk score, its level and the reasons behind it, from its current values
//! and its forecast.
//!
//! The structure is the original's: `risk = clamp(0.7·current points + 0.3·predicted points)`
//! summed over targets, with the original's points per target. What changed:
//! - the tiers come from the profile's [`thresholds`], so a database at 95 % memory scores
//!   nothing while a web server at 95 % scores the full memory points;
//! - within a band the points grow linearly (the original's steps made ties and jumps), with
//!   jumps only where a threshold is crossed;
//! - "predicted" reads the real horizons: the worst P90 of the next 30 min (6 steps), plus a
//!   smaller weight for the worst P50 over the whole 8 h (P50 there, because an 8-hour P90 is
//!   wide enough to keep every busy server alarmed);
//! - every point is explained in words ([`RiskReason`]).
//!
//! The level is [`Level::from_risk`], the product's one scheme.

use schemas::snapshot::RiskReason;
use schemas::metric::Unit;
use schemas::{Level, Metrics, Profile, Target, TargetForecast};

use crate::fleet::{incident_odds, IncidentOdds};
use crate::thresholds::{thresholds, Thresholds};

/// Steps in the near horizon (6 × 5 min = 30 min).
pub const NEAR_STEPS: usize = 6;
/// Minutes per forecast step.
pub const STEP_MINUTES: u32 = 5;

const CURRENT_WEIGHT: f32 = 0.7;
const PREDICTED_WEIGHT: f32 = 0.3;
/// Split of the predicted points between the next 30 min and the whole 8 h.
const NEAR_SHARE: f32 = 0.8;
const FAR_SHARE: f32 = 0.2;

/// Full points per target: (current, predicted). CPU, memory and iowait are the original's
/// maxima; the original scored swap and load only now and disk not at all. Disk gets points
/// both ways because a filling disk is exactly what a forecast sees coming; swap and load get
/// half their current points as predicted. Network has no thresholds, hence no points.
const POINTS: [(Target, f32, f32); 6] = [
    (Target::Cpu, 60.0, 40.0),
    (Target::Mem, 50.0, 30.0),
    (Target::Iowait, 40.0, 25.0),
    (Target::Swap, 30.0, 15.0),
    (Target::Disk, 30.0, 20.0),
    (Target::Load, 20.0, 10.0),
];

/// The least risk of a server with a resource that is critical now and that the P50 keeps
/// critical through the next 30 min: such a server is in trouble whatever the other resources
/// do, so it is `Critical` even though the summed points of one target stay below 70.
const SUSTAINED_CRITICAL_FLOOR: f32 = 75.0;

/// A server's assessment for one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// 0-100.
    pub risk: f32,
    pub level: Level,
    /// Contributions, largest first; their `points` sum to the unclamped risk.
    pub reasons: Vec<RiskReason>,
    /// Odds of a critical breach within 30 min / 8 h (see [`crate::fleet`]).
    pub odds: IncidentOdds,
}

/// The share (0-1) of a target's points that a value earns: 0 below the approaching band
/// ([`Thresholds::approach`]), rising to 0.25 at `warning`, 0.4-0.7 across the warning band, 1 from `critical`.
/// Non-decreasing in `value`; non-finite values earn nothing.
pub fn share(th: &Thresholds, value: f32) -> f32 {
    if !value.is_finite() {
        return 0.0;
    }
    let band = th.band();
    if value >= th.critical {
        1.0
    } else if value >= th.warning {
        0.4 + 0.3 * (value - th.warning) / band
    } else if value > th.approach() {
        0.25 * (value - th.approach()) / band
    } else {
        0.0
    }
}

/// The largest finite value of `xs` and its 1-based step (the first, on ties).
pub(crate) fn peak(xs: &[f32]) -> Option<(f32, u16)> {
    let mut best: Option<(f32, u16)> = None;
    for (i, &x) in xs.iter().enumerate() {
        if x.is_finite() && best.is_none_or(|(b, _)| x > b) {
            best = Some((x, (i + 1) as u16));
        }
    }
    best
}

/// Assesses one server. `forecast` is empty for a server that is warming up: its risk then
/// comes from its current values alone. Unknown current values score nothing (never zero).
pub fn assess(profile: Profile, current: &Metrics, forecast: &[TargetForecast]) -> Assessment {
    let mut total = 0.0;
    let mut sustained_critical = false;
    let mut reasons = Vec::new();
    for (target, cur_full, pred_full) in POINTS {
        let Some(th) = thresholds(profile, target) else { continue };
        let now = current.target(target).filter(|v| v.is_finite());
        let fc = forecast.iter().find(|f| f.target == target);
        let near = fc.and_then(|f| peak(&f.p90[..f.p90.len().min(NEAR_STEPS)]));
        let far = fc.and_then(|f| peak(&f.p50));
        let cur_pts = cur_full * now.map_or(0.0, |v| share(&th, v));
        let near_share = near.map_or(0.0, |(v, _)| share(&th, v));
        let far_share = far.map_or(0.0, |(v, _)| share(&th, v));
        let pred_pts = pred_full * (NEAR_SHARE * near_share + FAR_SHARE * far_share);
        let near_p50 = fc.and_then(|f| f.p50[..f.p50.len().min(NEAR_STEPS)].iter().copied().reduce(f32::min));
        sustained_critical |= now.is_some_and(|v| v >= th.critical) && near_p50.is_some_and(|v| v >= th.critical);
        let points = CURRENT_WEIGHT * cur_pts + PREDICTED_WEIGHT * pred_pts;
        if points <= 0.0 {
            continue;
        }
        total += points;
        let text = reason_text(target, &th, now, near.filter(|_| near_share > 0.0), far.filter(|_| far_share > 0.0));
        reasons.push(RiskReason { target, points, text });
    }
    reasons.sort_by(|a, b| b.points.total_cmp(&a.points));
    let floor = if sustained_critical { SUSTAINED_CRITICAL_FLOOR } else { 0.0 };
    let risk = total.max(floor).clamp(0.0, 100.0);
    Assessment { risk, level: Level::from_risk(risk), reasons, odds: incident_odds(profile, current, forecast) }
}

/// "Memory 96 % now (critical from 95 %), P90 reaches 99 % in 25 min, P50 reaches 99 % in 3 h 20 min".
fn reason_text(
    target: Target,
    th: &Thresholds,
    now: Option<f32>,
    near: Option<(f32, u16)>,
    far: Option<(f32, u16)>,
) -> String {
    let mut s = String::from(target.label());
    match now {
        Some(v) => {
            s.push(' ');
            s.push_str(&format_value(target, v));
            s.push_str(" now");
            match th.severity(v) {
                Some(Level::Critical) => s.push_str(&format!(" (critical from {})", format_value(target, th.critical))),
                Some(_) => s.push_str(&format!(" (warning from {})", format_value(target, th.warning))),
                None if share(th, v) > 0.0 => {
                    s.push_str(&format!(" (nearing warning at {})", format_value(target, th.warning)))
                }
                None => {}
            }
        }
        None => s.push_str(" unknown now"),
    }
    if let Some((v, step)) = near {
        s.push_str(&format!(", P90 reaches {} in {}", format_value(target, v), format_lead(step)));
    }
    // The 8-hour peak adds news only beyond the near horizon.
    if let Some((v, step)) = far.filter(|&(_, step)| usize::from(step) > NEAR_STEPS) {
        s.push_str(&format!(", P50 reaches {} in {}", format_value(target, v), format_lead(step)));
    }
    s
}

/// A value in its target's unit, for people: "96 %", "12.4", "180 MB/s".
pub fn format_value(target: Target, v: f32) -> String {
    match target.unit() {
        Unit::Percent => format!("{v:.0} %"),
        Unit::MegabytesPerSecond => format!("{v:.0} MB/s"),
        _ => format!("{v:.1}"),
    }
}

/// A lead of `steps` five-minute steps, for people: "25 min", "2 h 05 min", "8 h".
pub fn format_lead(steps: u16) -> String {
    let minutes = u32::from(steps) * STEP_MINUTES;
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m:02} min"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A forecast with every quantile of `target` flat at `p10`/`p50`/`p90` over 96 steps.
    pub(crate) fn flat(target: Target, p10: f32, p50: f32, p90: f32) -> TargetForecast {
        TargetForecast { target, method: schemas::Method::Model, p10: vec![p10; 96], p50: vec![p50; 96], p90: vec![p90; 96] }
    }

    fn mem(v: f32) -> Metrics {
        Metrics { mem_used_pct: Some(v), ..Default::default() }
    }

    #[test]
    fn database_at_95_percent_memory_is_healthy_web_is_not() {
        let fc = [flat(Target::Mem, 94.0, 95.0, 96.0)];
        let db = assess(Profile::Database, &mem(95.0), &fc);
        let web = assess(Profile::WebApi, &mem(95.0), &fc);
        assert_eq!(db.level, Level::Healthy, "{db:?}");
        assert!(db.risk < 1.0, "at most a hint that P90 nears the 97 % warning: {db:?}");
        assert!(web.level >= Level::Warning, "{web:?}");
        assert_eq!(web.reasons[0].target, Target::Mem);
        assert!(web.reasons[0].text.starts_with("Memory 95 % now (critical from 95 %)"), "{}", web.reasons[0].text);
    }

    #[test]
    fn one_resource_critical_now_and_ahead_makes_the_server_critical() {
        let web = assess(Profile::WebApi, &mem(99.0), &[flat(Target::Mem, 98.0, 99.0, 99.5)]);
        assert_eq!(web.level, Level::Critical, "{web:?}");
        // Critical now but forecast to recover within 30 min: not held at critical.
        let recovering = assess(Profile::WebApi, &mem(99.0), &[flat(Target::Mem, 60.0, 70.0, 80.0)]);
        assert!(recovering.level < Level::Critical, "{recovering:?}");
    }

    #[test]
    fn levels_follow_the_one_scheme() {
        let idle = assess(Profile::Generic, &Metrics::default(), &[]);
        assert_eq!((idle.risk, idle.level), (0.0, Level::Healthy));
        // Several targets critical now and ahead: clamped at 100.
        let hot = Metrics {
            cpu_idle_pct: Some(1.0),
            mem_used_pct: Some(99.0),
            cpu_iowait_pct: Some(50.0),
            ..Default::default()
        };
        let fc = [flat(Target::Cpu, 98.0, 99.0, 100.0), flat(Target::Mem, 98.0, 99.0, 100.0)];
        let a = assess(Profile::WebApi, &hot, &fc);
        assert_eq!((a.risk, a.level), (100.0, Level::Critical));
        let sum: f32 = a.reasons.iter().map(|r| r.points).sum();
        assert!(sum > 100.0, "reasons carry the unclamped points");
        // Memory in the web warning band now and ahead: a watch, not an alarm.
        let warm = assess(Profile::WebApi, &mem(88.0), &[flat(Target::Mem, 85.0, 88.0, 90.0)]);
        assert_eq!(warm.level, Level::Watch, "{warm:?}");
        // Critical memory now and ahead on a web server: held at the sustained-critical floor...
        let full = assess(Profile::WebApi, &mem(97.0), &[flat(Target::Mem, 96.0, 97.0, 98.0)]);
        assert!((full.risk - SUSTAINED_CRITICAL_FLOOR).abs() < 1e-3 && full.level == Level::Critical, "{full:?}");
        // ...critical memory now without a forecast (warming up) is only a watch...
        let warming = assess(Profile::WebApi, &mem(97.0), &[]);
        assert!((warming.risk - 35.0).abs() < 1e-3 && warming.level == Level::Watch, "{warming:?}");
        // ...and critical once CPU is pegged as well.
        let both = Metrics { cpu_idle_pct: Some(2.0), ..mem(97.0) };
        assert_eq!(assess(Profile::WebApi, &both, &[]).level, Level::Critical);
    }

    #[test]
    fn forecast_alone_raises_risk_and_says_when() {
        let now = mem(70.0);
        let calm = assess(Profile::WebApi, &now, &[flat(Target::Mem, 65.0, 70.0, 75.0)]);
        assert_eq!(calm.risk, 0.0);
        let mut rising = flat(Target::Mem, 65.0, 70.0, 75.0);
        rising.p90[4] = 96.0; // step 5 = 25 min
        rising.p50[40] = 96.0; // step 41 = 3 h 25 min
        let a = assess(Profile::WebApi, &now, &[rising]);
        assert!(a.risk > 0.0);
        let text = &a.reasons[0].text;
        assert_eq!(text, "Memory 70 % now, P90 reaches 96 % in 25 min, P50 reaches 96 % in 3 h 25 min");
    }

    #[test]
    fn unknown_current_is_not_zero_and_says_so() {
        let a = assess(Profile::Generic, &Metrics::default(), &[flat(Target::Swap, 40.0, 55.0, 60.0)]);
        assert!(a.risk > 0.0);
        assert!(a.reasons[0].text.starts_with("Swap unknown now, P90 reaches 60 %"), "{}", a.reasons[0].text);
    }

    #[test]
    fn non_finite_values_are_ignored() {
        let mut fc = flat(Target::Cpu, 10.0, 20.0, 30.0);
        fc.p90[0] = f32::NAN;
        fc.p50[3] = f32::INFINITY;
        let a = assess(Profile::Generic, &Metrics { cpu_idle_pct: Some(f32::NAN), ..Default::default() }, &[fc]);
        assert_eq!(a.risk, 0.0);
    }

    #[test]
    fn leads_are_minutes_of_five_minute_steps() {
        assert_eq!(format_lead(1), "5 min");
        assert_eq!(format_lead(12), "1 h");
        assert_eq!(format_lead(25), "2 h 05 min");
        assert_eq!(format_lead(96), "8 h");
    }

    #[test]
    fn share_is_monotone_with_jumps_at_thresholds() {
        let th = thresholds(Profile::Generic, Target::Mem).unwrap();
        let mut last = 0.0;
        for i in 0..=1000 {
            let s = share(&th, i as f32 / 10.0);
            assert!(s >= last && (0.0..=1.0).contains(&s));
            last = s;
        }
        assert_eq!(share(&th, th.critical), 1.0);
        assert_eq!(share(&th, th.warning), 0.4);
    }
}
