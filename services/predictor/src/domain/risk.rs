//! A server's 0-100 risk score, its level and the reasons behind it, from its current values,
//! its forecast and its active predicted alerts.
//!
//! # The level rule (one rule for levels, reasons, first breach and fleet health)
//!
//! Each resource (target with thresholds) gets a level of its own ([`target_level`]):
//!
//! | the resource | level |
//! |---|---|
//! | at or over its **critical** threshold now | `critical` |
//! | ... but its P50 falls back under the warning threshold within 30 min (a spike) | `warning` |
//! | has a **critical** predicted alert (P50 crosses critical) due within 30 min | `critical` |
//! | at or over its **warning** threshold now | at least `warning` |
//! | has any predicted alert due within 30 min | at least `warning` |
//! | has a critical predicted alert due later (within 8 h) | at least `warning` |
//! | has any other predicted alert (a warning due in 35 min - 8 h) | at least `watch` |
//! | otherwise | `healthy` |
//!
//! A server's level is its worst resource's ([`server_level`]); fleet health is the worst
//! server's ([`super::fleet::fleet_health`]). "Predicted alert" is the alert book's active alert
//! for the target, the same one the snapshot lists and the dashboard's "first breach" reads,
//! so a healthy server never shows a breach and a breach within 30 min is never below warning.
//!
//! The risk score orders servers: `0.7·current points + 0.3·predicted points` summed over
//! targets (the original's structure and points per target), then held inside its level's
//! band ([`in_band`]: healthy 0-19, watch 20-39, warning 40-69, critical 70-100), so
//! `Level::from_risk(risk) == level` always holds and the riskiest list is level-ordered. What
//! changed from the original:
//! - the tiers come from the profile's [`thresholds`], so a database at 95 % memory scores
//!   nothing while a web server at 95 % scores the full memory points;
//! - within a band the points grow linearly (the original's steps made ties and jumps), with
//!   jumps only where a threshold is crossed;
//! - "predicted" reads the real horizons: the worst P90 of the next 30 min (6 steps), plus a
//!   smaller weight for the worst P50 over the whole 8 h (P50 there, because an 8-hour P90 is
//!   wide enough to keep every busy server alarmed);
//! - every point is explained in words ([`RiskReason`]); reasons are ordered by their
//!   resource's level, then points, so the first reason is the one that sets the level.

use schemas::metric::Unit;
use schemas::snapshot::RiskReason;
use schemas::{Alert, AlertBasis, Level, Metrics, Profile, Target, TargetForecast};

use super::alerts::{breaches, Breach};
use super::horizon::{NEAR_STEPS, STEP_MINUTES};
use super::odds::{incident_odds, IncidentOdds};
use super::thresholds::{thresholds, Thresholds};

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

/// A predicted breach (an alert book's active alert, or a fresh [`Breach`]) as the level rule
/// reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Predicted {
    pub target: Target,
    /// `Warning` or `Critical`.
    pub severity: Level,
    pub basis: AlertBasis,
    pub threshold: f32,
    /// 1-based step of the first crossing.
    pub steps_ahead: u16,
}

impl From<&Alert> for Predicted {
    fn from(a: &Alert) -> Self {
        Predicted { target: a.target, severity: a.severity, basis: a.basis, threshold: a.threshold, steps_ahead: a.steps_ahead }
    }
}

impl From<&Breach> for Predicted {
    fn from(b: &Breach) -> Self {
        Predicted { target: b.target, severity: b.severity, basis: b.basis, threshold: b.threshold, steps_ahead: b.steps_ahead }
    }
}

/// The level of one resource: its value now against its thresholds, whether its forecast
/// says a critical value now is a spike (`back_under`: the step within 30 min at which its
/// P50 is back under the warning threshold), and its predicted alert, if any (the table in
/// the module doc). Non-finite or unknown values count as below warning.
pub fn target_level(th: &Thresholds, now: Option<f32>, back_under: Option<u16>, predicted: Option<&Predicted>) -> Level {
    let now = match now.filter(|v| v.is_finite()).and_then(|v| th.severity(v)) {
        Some(Level::Critical) if back_under.is_some() => Level::Warning,
        Some(l) => l,
        None => Level::Healthy,
    };
    let ahead = predicted.map_or(Level::Healthy, |p| {
        let imminent = usize::from(p.steps_ahead) <= NEAR_STEPS;
        match (p.severity, imminent) {
            (Level::Critical, true) => Level::Critical,
            (Level::Critical, false) | (_, true) => Level::Warning,
            _ => Level::Watch,
        }
    });
    now.max(ahead)
}

/// The 1-based step within the next 30 min at which `p50` is first under `warning`: a value
/// critical now that the forecast sees back under the warning line that soon is a spike.
pub fn back_under(p50: &[f32], warning: f32) -> Option<u16> {
    p50.iter().take(NEAR_STEPS).position(|v| v.is_finite() && *v < warning).map(|i| (i + 1) as u16)
}

/// A server's level: its worst resource's (`healthy` without any).
pub fn server_level(levels: impl IntoIterator<Item = Level>) -> Level {
    levels.into_iter().max().unwrap_or(Level::Healthy)
}

/// The risk score held inside `level`'s band of [`Level::from_risk`] (healthy 0-19, watch
/// 20-39, warning 40-69, critical 70-100); non-finite points count as 0.
pub fn in_band(points: f32, level: Level) -> f32 {
    let (lo, hi) = level.risk_band();
    let points = if points.is_finite() { points } else { 0.0 };
    points.clamp(lo, hi)
}

/// A server's assessment for one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// 0-100.
    pub risk: f32,
    pub level: Level,
    /// Contributions, the level-setting resource first (then by points); their `points` sum
    /// to the risk before it is held in its level's band.
    pub reasons: Vec<RiskReason>,
    /// Odds of a critical breach within 30 min / 8 h (see [`super::odds`]).
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

/// Assesses one server with the breaches of its own forecast as its predicted alerts (what
/// the alert book opens for a server it has not seen before). `forecast` is empty for a server
/// that is warming up: its risk and level then come from its current values alone.
pub fn assess(profile: Profile, current: &Metrics, forecast: &[TargetForecast]) -> Assessment {
    let predicted: Vec<Predicted> = breaches(profile, current, forecast).iter().map(Predicted::from).collect();
    assess_with(profile, current, forecast, &predicted)
}

/// Assesses one server whose active predicted alerts are `predicted` (at most one per target;
/// the pipeline passes the alert book's, the same the snapshot lists). Unknown current values
/// score nothing (never zero).
pub fn assess_with(profile: Profile, current: &Metrics, forecast: &[TargetForecast], predicted: &[Predicted]) -> Assessment {
    let mut total = 0.0;
    let mut level = Level::Healthy;
    let mut reasons: Vec<(Level, RiskReason)> = Vec::new();
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
        let alert = predicted.iter().find(|p| p.target == target);
        let back = fc.and_then(|f| back_under(&f.p50, th.warning));
        let target_lvl = target_level(&th, now, back, alert);
        level = server_level([level, target_lvl]);
        let points = CURRENT_WEIGHT * cur_pts + PREDICTED_WEIGHT * pred_pts;
        if points <= 0.0 && target_lvl == Level::Healthy {
            continue;
        }
        let points = points.max(0.0);
        total += points;
        let text = reason_text(target, &th, now, back, alert, near.filter(|_| near_share > 0.0), far.filter(|_| far_share > 0.0));
        reasons.push((target_lvl, RiskReason { target, points, text }));
    }
    reasons.sort_by(|(la, a), (lb, b)| lb.cmp(la).then(b.points.total_cmp(&a.points)));
    let risk = in_band(total, level);
    let reasons = reasons.into_iter().map(|(_, r)| r).collect();
    Assessment { risk, level, reasons, odds: incident_odds(profile, current, forecast) }
}

/// "Memory 96 % now (critical from 95 %), P90 reaches 99 % in 25 min, P50 reaches 99 % in
/// 3 h 20 min"; with a predicted alert whose threshold is not reached yet, the alert's crossing
/// instead of the peaks: "CPU used 80 % now, P90 crosses warning 85 % in 5 min".
fn reason_text(
    target: Target,
    th: &Thresholds,
    now: Option<f32>,
    back_under: Option<u16>,
    alert: Option<&Predicted>,
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
                None if share(th, v) > 0.0 => s.push_str(&format!(" (nearing warning at {})", format_value(target, th.warning))),
                None => {}
            }
        }
        None => s.push_str(" unknown now"),
    }
    if let Some(step) = back_under.filter(|_| now.is_some_and(|v| v >= th.critical)) {
        s.push_str(&format!(", P50 back under {} in {}", format_value(target, th.warning), format_lead(step)));
    }
    if let Some(a) = alert {
        if now.is_none_or(|v| v < a.threshold) {
            let which = if a.threshold >= th.critical { "critical" } else { "warning" };
            let (line, lead) = (format_value(target, a.threshold), format_lead(a.steps_ahead));
            match a.basis {
                AlertBasis::Seasonal => s.push_str(&format!(", crossed {which} {line} at this time yesterday, due again in {lead}")),
                basis => s.push_str(&format!(", {} crosses {which} {line} in {lead}", basis.label())),
            }
        }
        return s;
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
#[path = "risk_tests.rs"]
pub(crate) mod tests;
