//! The level rule and the risk score ([`super`]), case by case.

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

fn p(target: Target, severity: Level, steps_ahead: u16) -> Predicted {
    Predicted { target, severity, basis: AlertBasis::P50, threshold: 0.0, steps_ahead }
}

/// The rule's table, row by row, on one resource (generic memory: warning 90, critical 98).
#[test]
fn target_level_follows_the_table() {
    let th = thresholds(Profile::Generic, Target::Mem).unwrap();
    let m = Target::Mem;
    let cases: [(Option<f32>, Option<Predicted>, Level); 14] = [
        (None, None, Level::Healthy),
        (Some(50.0), None, Level::Healthy),
        (Some(f32::NAN), None, Level::Healthy),
        (Some(89.9), None, Level::Healthy),
        (Some(90.0), None, Level::Warning),
        (Some(98.0), None, Level::Critical),
        (Some(100.0), None, Level::Critical),
        // A critical predicted alert within 30 min, later, and a warning one.
        (Some(50.0), Some(p(m, Level::Critical, 6)), Level::Critical),
        (Some(50.0), Some(p(m, Level::Critical, 7)), Level::Warning),
        (Some(50.0), Some(p(m, Level::Warning, 1)), Level::Warning),
        (Some(50.0), Some(p(m, Level::Warning, 6)), Level::Warning),
        (Some(50.0), Some(p(m, Level::Warning, 7)), Level::Watch),
        (None, Some(p(m, Level::Warning, 96)), Level::Watch),
        // The worse of now and ahead.
        (Some(99.0), Some(p(m, Level::Warning, 90)), Level::Critical),
    ];
    for (now, pred, want) in cases {
        assert_eq!(target_level(&th, now, None, pred.as_ref()), want, "{now:?} {pred:?}");
    }
    // A critical value now that the P50 puts back under warning within 30 min: a spike.
    assert_eq!(target_level(&th, Some(99.0), Some(2), None), Level::Warning);
    assert_eq!(target_level(&th, Some(99.0), Some(2), Some(&p(m, Level::Critical, 1))), Level::Critical);
    assert_eq!(target_level(&th, Some(95.0), Some(2), None), Level::Warning, "only critical values are spikes");
    assert_eq!(back_under(&[99.0, 97.0, 80.0, 70.0, 60.0, 50.0, 40.0], 90.0), Some(3));
    assert_eq!(back_under(&[99.0, 97.0, 95.0, 95.0, 95.0, 95.0, 40.0], 90.0), None, "beyond 30 min");
    assert_eq!(server_level([]), Level::Healthy);
    assert_eq!(server_level([Level::Watch, Level::Critical, Level::Healthy]), Level::Critical);
}

#[test]
fn risk_stays_in_its_levels_band() {
    for level in Level::ALL {
        for points in [-5.0, 0.0, 10.0, 19.5, 25.0, 45.0, 69.9, 80.0, 150.0, f32::NAN] {
            let r = in_band(points, level);
            assert_eq!(Level::from_risk(r), level, "{points} {level:?}");
            assert_eq!(Level::from_risk(r.round()), level, "the history's rounded u8 too");
        }
    }
    assert_eq!(in_band(55.0, Level::Warning), 55.0, "inside the band the points are the risk");
}

/// The case: "CPU used 100 % now (critical from 99 %)" on an ML node was shown as
/// Warning. A resource critical now makes the server critical, whatever the forecast says,
/// and that reason comes first.
#[test]
fn critical_now_is_critical() {
    let pegged = Metrics { cpu_idle_pct: Some(0.0), mem_used_pct: Some(96.0), ..Default::default() };
    for fc in [vec![], vec![flat(Target::Cpu, 95.0, 97.0, 98.0)], vec![flat(Target::Cpu, 99.0, 100.0, 100.0)]] {
        let a = assess(Profile::MlCompute, &pegged, &fc);
        assert_eq!(a.level, Level::Critical, "{a:?}");
        assert!(a.risk >= 70.0);
        assert!(a.reasons[0].text.starts_with("CPU used 100 % now (critical from 99 %)"), "{}", a.reasons[0].text);
    }
    // A spike: the P50 is back under the warning line (95) within 30 min. Warning, and the
    // reason says why it is not critical.
    let mut spike = flat(Target::Cpu, 50.0, 60.0, 70.0);
    (spike.p50[0], spike.p50[1], spike.p90[0], spike.p90[1]) = (98.0, 96.0, 99.5, 98.0);
    let a = assess(Profile::MlCompute, &pegged, &[spike]);
    assert_eq!(a.level, Level::Warning, "{a:?}");
    assert_eq!(a.reasons[0].text, "CPU used 100 % now (critical from 99 %), P50 back under 95 % in 15 min");
    // Memory 96 % on an ML node is in its warning band (94-98.5): warning, listed second.
    let a = assess(Profile::MlCompute, &pegged, &[]);
    assert_eq!(a.reasons[1].target, Target::Mem);
    assert!(a.reasons[1].text.contains("(warning from 94 %)"), "{}", a.reasons[1].text);
}

/// A first breach within 30 min is at least warning: a server is never healthy next to a
/// predicted alert, and its reason says when the alert's crossing is due.
#[test]
fn a_breach_soon_is_at_least_warning_and_no_breach_is_healthy() {
    let now = mem(60.0);
    let mut soon = flat(Target::Mem, 55.0, 60.0, 70.0);
    soon.p90[0] = 86.0; // P90 crosses the web warning (85) at step 1
    let a = assess(Profile::WebApi, &now, &[soon]);
    assert_eq!(a.level, Level::Warning, "{a:?}");
    assert_eq!(a.reasons[0].text, "Memory 60 % now, P90 crosses warning 85 % in 5 min");
    let mut later = flat(Target::Mem, 55.0, 60.0, 70.0);
    later.p90[30] = 86.0; // step 31 = 2 h 35 min
    let a = assess(Profile::WebApi, &now, &[later]);
    assert_eq!(a.level, Level::Watch, "{a:?}");
    assert_eq!(a.reasons[0].text, "Memory 60 % now, P90 crosses warning 85 % in 2 h 35 min");
    let calm = assess(Profile::WebApi, &now, &[flat(Target::Mem, 55.0, 60.0, 70.0)]);
    assert_eq!((calm.level, calm.risk), (Level::Healthy, 0.0));
    assert!(breaches(Profile::WebApi, &now, &[flat(Target::Mem, 55.0, 60.0, 70.0)]).is_empty());
}

/// The level reads the alerts it is given (the book's, with their hysteresis), not only the
/// forecast's own breaches: an alert still open keeps the server at its alert's level.
#[test]
fn active_alerts_set_the_level() {
    let now = mem(60.0);
    let fc = [flat(Target::Mem, 55.0, 60.0, 70.0)];
    let open = [Predicted { target: Target::Mem, severity: Level::Critical, basis: AlertBasis::P50, threshold: 95.0, steps_ahead: 3 }];
    let a = assess_with(Profile::WebApi, &now, &fc, &open);
    assert_eq!(a.level, Level::Critical);
    assert_eq!(a.reasons[0].text, "Memory 60 % now, P50 crosses critical 95 % in 15 min");
    assert_eq!(assess_with(Profile::WebApi, &now, &fc, &[]).level, Level::Healthy);
    // A seasonal recurrence (`recurrence.rs`) is a warning due past 30 min: watch, said so.
    let yesterday =
        [Predicted { target: Target::Mem, severity: Level::Warning, basis: AlertBasis::Seasonal, threshold: 95.0, steps_ahead: 24 }];
    let a = assess_with(Profile::WebApi, &now, &fc, &yesterday);
    assert_eq!(a.level, Level::Watch);
    assert_eq!(a.reasons[0].text, "Memory 60 % now, crossed critical 95 % at this time yesterday, due again in 2 h");
}

#[test]
fn levels_follow_the_one_scheme() {
    let idle = assess(Profile::Generic, &Metrics::default(), &[]);
    assert_eq!((idle.risk, idle.level), (0.0, Level::Healthy));
    // Several targets critical now and ahead: clamped at 100.
    let hot = Metrics { cpu_idle_pct: Some(1.0), mem_used_pct: Some(99.0), cpu_iowait_pct: Some(50.0), ..Default::default() };
    let fc = [flat(Target::Cpu, 98.0, 99.0, 100.0), flat(Target::Mem, 98.0, 99.0, 100.0)];
    let a = assess(Profile::WebApi, &hot, &fc);
    assert_eq!((a.risk, a.level), (100.0, Level::Critical));
    let sum: f32 = a.reasons.iter().map(|r| r.points).sum();
    assert!(sum > 100.0, "reasons carry the unclamped points");
    // Memory in the web warning band now and ahead: warning.
    let warm = assess(Profile::WebApi, &mem(88.0), &[flat(Target::Mem, 85.0, 88.0, 90.0)]);
    assert_eq!(warm.level, Level::Warning, "{warm:?}");
    assert!(warm.risk >= 40.0 && warm.risk < 70.0);
    // Critical memory now and ahead, or without a forecast (warming up): critical.
    for fc in [vec![flat(Target::Mem, 96.0, 97.0, 98.0)], vec![]] {
        let full = assess(Profile::WebApi, &mem(97.0), &fc);
        assert_eq!(full.level, Level::Critical, "{full:?}");
        assert_eq!(Level::from_risk(full.risk), Level::Critical);
    }
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
    // The P50 crosses critical (95) at step 41: a critical alert later than 30 min, warning.
    assert_eq!(a.level, Level::Warning);
    let text = &a.reasons[0].text;
    assert_eq!(text, "Memory 70 % now, P50 crosses critical 95 % in 3 h 25 min");
    // Without an alert (P90 only nears the warning), the reason names the peaks.
    let mut nearing = flat(Target::Mem, 65.0, 70.0, 75.0);
    nearing.p90[4] = 84.0;
    let a = assess(Profile::WebApi, &now, &[nearing]);
    assert_eq!((a.level, a.reasons[0].text.as_str()), (Level::Healthy, "Memory 70 % now, P90 reaches 84 % in 25 min"));
}

#[test]
fn unknown_current_is_not_zero_and_says_so() {
    let a = assess(Profile::Generic, &Metrics::default(), &[flat(Target::Swap, 40.0, 55.0, 60.0)]);
    assert!(a.risk > 0.0);
    // The P50 (55) is over the generic swap critical (50) from step 1: a critical alert.
    assert_eq!(a.reasons[0].text, "Swap unknown now, P50 crosses critical 50 % in 5 min");
    assert_eq!(a.level, Level::Critical);
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
