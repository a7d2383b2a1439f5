//! A server's odds of an incident within 30 min and within 8 h, from its forecast's own
//! quantiles.
//!
//! An *incident* is a target at or above its profile's critical threshold. The original added
//! fixed increments per server (+0.25, +0.10...) and averaged them, which is not a probability
//! of anything. Here:
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
//!
//! These odds grow when the whole forecast shifts up and when P90 widens above P50; 30-minute
//! odds never exceed 8-hour odds. How the fleet adds them up is in [`super::fleet`].

use serde::{Deserialize, Serialize};

use schemas::{Metrics, Profile, Target, TargetForecast};

use super::horizon::NEAR_STEPS;
use super::thresholds::thresholds;

/// z of the 90th percentile of a standard normal.
const Z90: f64 = 1.281_551_565_5;
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
                        + t * (0.278_868_07 + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::risk::tests::flat;

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
}
