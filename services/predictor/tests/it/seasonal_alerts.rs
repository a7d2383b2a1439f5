//! A daily peak opens a seasonal alert a day later: a web server whose CPU reached 97 % for
//! half an hour yesterday, and is calm now, gets a warning whose basis is `seasonal` due at the
//! same time of day today (`domain/recurrence.rs`), while an identical server without the peak
//! gets none. Real ONNX Runtime on `models/tft.onnx`; no NATS (the engine alone).

use crate::common;

use schemas::{AlertBasis, AlertState, Level, MetricRecord, Metrics, Profile, Target, STEP_MS};

#[test]
fn yesterdays_peak_opens_a_seasonal_warning_for_today() {
    let (mut engine, mut reg) = common::engine_alone();
    let t0 = 1_795_982_400_000; // 2026-11-29 20:00 UTC, step-aligned
    let source = reg.source_id(common::SOURCE, t0);
    // Steps 40..=45 of the daily server: CPU 97 % (user 90, sys 5, iowait 2, idle 3).
    let peak = Metrics { cpu_user_pct: Some(90.0), cpu_idle_pct: Some(3.0), ..common::base_record() };
    let (daily, steady) = ("ppweb-daily".to_string(), "ppweb-steady".to_string());
    let mut events = Vec::new();
    for s in 0..300_i64 {
        let start = t0 + s * STEP_MS;
        let daily_metrics = if (40..=45).contains(&s) { peak } else { common::base_record() };
        for (name, metrics) in [(&daily, daily_metrics), (&steady, common::base_record())] {
            reg.apply(source, &MetricRecord { server: name.clone(), ts_ms: start, profile: Some(Profile::WebApi), metrics });
        }
        reg.advance(source, start + STEP_MS, start + STEP_MS);
        let due = reg.take_due();
        let out = engine.compute(&reg, &due, start + STEP_MS, 1 << 20).expect("tick");
        events.extend(out.events.into_iter().map(|e| (s, e)));
    }
    assert!(events.iter().all(|(_, e)| e.alert.server == daily), "the steady server never alerts: {events:?}");
    let seasonal: Vec<_> = events.iter().filter(|(_, e)| e.alert.basis == AlertBasis::Seasonal).collect();
    let Some((at, opened)) = seasonal.iter().find(|(_, e)| e.alert.state == AlertState::Opened) else {
        panic!("no seasonal alert opened: {events:?}");
    };
    let a = &opened.alert;
    assert_eq!((a.target, a.severity, a.threshold), (Target::Cpu, Level::Warning, 95.0), "{a:?}");
    assert!((a.predicted - 97.0).abs() < 0.01, "the value a day earlier: {a:?}");
    // Due at the peak's first step one day later (step 40 + 288), from the step that closed.
    assert_eq!(at + i64::from(a.steps_ahead), 40 + 288, "{a:?} opened after step {at}");
    assert!(usize::from(a.steps_ahead) > 6, "never within the next 30 minutes: {a:?}");
}
