//! Properties of the pure domain logic over random forecasts: risk grows with the forecast,
//! odds are probabilities, breaches are one per target.

use predictor::alerts::breaches;
use predictor::fleet::{figures, ServerStatus};
use predictor::risk::assess;
use proptest::prelude::*;
use schemas::{Metrics, Profile, Target, TargetForecast};

fn profile() -> impl Strategy<Value = Profile> {
    prop::sample::select(Profile::ALL.to_vec())
}

/// A random non-crossing forecast of every target: a level, a per-step drift and a spread.
fn forecast() -> impl Strategy<Value = Vec<TargetForecast>> {
    prop::collection::vec((0.0f32..100.0, -1.0f32..1.0, 0.0f32..15.0, 0.0f32..15.0), 8).prop_map(|params| {
        Target::ALL
            .iter()
            .zip(params)
            .map(|(&target, (level, drift, lo, hi))| {
                let scale = if target == Target::Load { 0.16 } else { 1.0 };
                let mid: Vec<f32> = (0..96).map(|k| ((level + drift * k as f32) * scale).max(0.0)).collect();
                TargetForecast {
                    target,
                    method: schemas::Method::Model,
                    p10: mid.iter().map(|m| (m - lo * scale).max(0.0)).collect(),
                    p90: mid.iter().map(|m| m + hi * scale).collect(),
                    p50: mid,
                }
            })
            .collect()
    })
}

fn shifted(fc: &[TargetForecast], by: f32) -> Vec<TargetForecast> {
    let up = |v: &Vec<f32>| v.iter().map(|x| x + by).collect();
    fc.iter().map(|f| TargetForecast { target: f.target, method: f.method, p10: up(&f.p10), p50: up(&f.p50), p90: up(&f.p90) }).collect()
}

fn current(fc: &[TargetForecast]) -> Metrics {
    let mut m = Metrics::default();
    for f in fc {
        let v = f.p50[0];
        match f.target {
            Target::Cpu => m.cpu_idle_pct = Some((100.0 - v).clamp(0.0, 100.0)),
            t => m.set(t.source_metric(), Some(v)),
        }
    }
    m
}

proptest! {
    #[test]
    fn risk_and_odds_never_fall_when_the_forecast_rises(p in profile(), fc in forecast(), by in 0.0f32..20.0) {
        let now = current(&fc);
        let low = assess(p, &now, &fc);
        let high = assess(p, &now, &shifted(&fc, by));
        prop_assert!((0.0..=100.0).contains(&low.risk));
        prop_assert!(high.risk >= low.risk - 1e-4, "{} < {}", high.risk, low.risk);
        prop_assert!(high.level >= low.level);
        prop_assert!(high.odds.within_30m >= low.odds.within_30m - 1e-6);
        prop_assert!(high.odds.within_8h >= low.odds.within_8h - 1e-6);
        for o in [low.odds, high.odds] {
            prop_assert!((0.0..=1.0).contains(&o.within_30m) && (0.0..=1.0).contains(&o.within_8h));
            prop_assert!(o.within_30m <= o.within_8h + 1e-6);
        }
    }

    #[test]
    fn one_breach_per_target_at_most(p in profile(), fc in forecast()) {
        let b = breaches(p, &current(&fc), &fc);
        for (i, x) in b.iter().enumerate() {
            prop_assert!(b[i + 1..].iter().all(|y| y.target != x.target));
            prop_assert!(x.steps_ahead >= 1 && x.steps_ahead <= 96);
            prop_assert_eq!(x.minutes_ahead(), u32::from(x.steps_ahead) * 5);
        }
    }

    #[test]
    fn fleet_odds_are_probabilities_and_grow_with_the_fleet(fcs in prop::collection::vec((profile(), forecast()), 1..12)) {
        let assessed: Vec<_> = fcs.iter().map(|(p, fc)| assess(*p, &current(fc), fc)).collect();
        let names: Vec<String> = (0..assessed.len()).map(|i| format!("s{i}")).collect();
        let mut last = (0.0f32, 0.0f32);
        for n in 1..=assessed.len() {
            let f = figures(
                (0..n).map(|i| ServerStatus { server: &names[i], assessment: &assessed[i], warming: false }),
                Default::default(),
            );
            prop_assert!((0.0..=1.0).contains(&f.prob_incident_30m) && (0.0..=1.0).contains(&f.prob_incident_8h));
            prop_assert!(f.prob_incident_30m <= f.prob_incident_8h + 1e-6);
            prop_assert!(f.prob_incident_30m >= last.0 - 1e-6 && f.prob_incident_8h >= last.1 - 1e-6);
            last = (f.prob_incident_30m, f.prob_incident_8h);
        }
    }
}
