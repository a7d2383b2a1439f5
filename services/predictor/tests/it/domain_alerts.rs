//! Predicted alerts and their lifecycle: de-duplication, time to breach, profile awareness,
//! open / update / resolve with hysteresis, vanished servers, and persistence.

use predictor::alerts::{breaches, AlertBook, AlertCounts, BookConfig, Breach};
use schemas::{AlertBasis, AlertEvent, AlertState, Level, Metrics, Profile, Target, TargetForecast, STEP_MS};

fn flat(target: Target, p10: f32, p50: f32, p90: f32) -> TargetForecast {
    TargetForecast { target, method: schemas::Method::Model, p10: vec![p10; 96], p50: vec![p50; 96], p90: vec![p90; 96] }
}

/// Memory forecast on a generic server (warning 90, critical 98): P50 from step `p50_at`
/// and P90 from step `p90_at` (1-based) reach `level`; before that both stay at 50.
fn mem_rising(p50_at: usize, p90_at: usize, level: f32) -> TargetForecast {
    let mut f = flat(Target::Mem, 45.0, 50.0, 55.0);
    for k in p50_at - 1..96 {
        f.p50[k] = level;
    }
    for k in p90_at - 1..96 {
        f.p90[k] = level + 1.0;
    }
    f
}

fn generic_mem(f: TargetForecast) -> Vec<Breach> {
    breaches(Profile::Generic, &Metrics { mem_used_pct: Some(50.0), ..Default::default() }, &[f])
}

#[test]
fn p50_and_p90_crossing_the_same_target_make_one_alert() {
    let b = generic_mem(mem_rising(10, 4, 99.0));
    assert_eq!(b.len(), 1, "{b:?}");
    let b = b[0];
    // Critical rests on the expected path: the P50's crossing, not the P90's earlier one.
    assert_eq!((b.target, b.severity, b.basis), (Target::Mem, Level::Critical, AlertBasis::P50));
    assert_eq!((b.steps_ahead, b.minutes_ahead()), (10, 50), "steps are 5 minutes");
    assert_eq!((b.threshold, b.predicted, b.current), (98.0, 99.0, Some(50.0)));
}

#[test]
fn worst_severity_wins_then_earliest_then_p50() {
    // P50 reaches warning at step 2; P90 reaches critical only at step 50: a P90-only
    // critical crossing is a warning, and the earliest warning sign is the P50's.
    let mut f = mem_rising(2, 96, 92.0);
    for k in 49..96 {
        f.p90[k] = 99.0;
    }
    let b = generic_mem(f)[0];
    assert_eq!((b.severity, b.basis, b.steps_ahead, b.minutes_ahead()), (Level::Warning, AlertBasis::P50, 2, 10));
    // Only the P90 reaches critical: a warning at the critical line.
    let b = generic_mem(mem_rising(96, 30, 97.5))[0];
    assert_eq!((b.severity, b.basis, b.threshold, b.steps_ahead), (Level::Warning, AlertBasis::P90, 98.0, 30));
    // The P50 reaches critical: critical, however late.
    let b = generic_mem(mem_rising(80, 30, 98.5))[0];
    assert_eq!((b.severity, b.basis, b.steps_ahead), (Level::Critical, AlertBasis::P50, 80));
    // Both cross at the same step: the expected path (P50) is the basis.
    let b = generic_mem(mem_rising(7, 7, 92.0))[0];
    assert_eq!((b.severity, b.basis, b.steps_ahead), (Level::Warning, AlertBasis::P50, 7));
}

#[test]
fn alerts_are_profile_aware_and_skip_network() {
    let fc = [flat(Target::Mem, 94.0, 95.0, 96.0), flat(Target::NetOut, 500.0, 900.0, 999.0)];
    let now = Metrics { mem_used_pct: Some(95.0), ..Default::default() };
    assert!(breaches(Profile::Database, &now, &fc).is_empty(), "a database at 95 % memory is normal");
    let web = breaches(Profile::WebApi, &now, &fc);
    assert_eq!(web.len(), 1);
    assert_eq!((web[0].severity, web[0].steps_ahead), (Level::Critical, 1));
}

const T0: i64 = 1_800_000_000_000 / STEP_MS * STEP_MS;

fn tick(n: i64) -> i64 {
    T0 + n * STEP_MS
}

/// A warning breach whose absolute time is `at_step` (so its lead shrinks as ticks pass).
fn warning_at(now: i64, at_step: i64) -> Breach {
    Breach {
        target: Target::Mem,
        severity: Level::Warning,
        basis: AlertBasis::P90,
        threshold: 90.0,
        predicted: 91.0,
        current: Some(80.0),
        steps_ahead: (at_step - now).max(1) as u16,
    }
}

fn critical_at(now: i64, at_step: i64) -> Breach {
    Breach { severity: Level::Critical, threshold: 98.0, predicted: 99.0, ..warning_at(now, at_step) }
}

fn run(book: &mut AlertBook, n: i64, server_breaches: &[(&str, Vec<Breach>)]) -> Vec<AlertEvent> {
    let mut events = Vec::new();
    for (server, b) in server_breaches {
        book.observe(tick(n), server, Profile::Generic, b, &mut events);
    }
    book.finish_tick(tick(n), &mut events);
    events
}

fn states(events: &[AlertEvent]) -> Vec<(AlertState, Level)> {
    events.iter().map(|e| (e.alert.state, e.alert.severity)).collect()
}

#[test]
fn lifecycle_opens_updates_on_change_only_and_resolves_after_hysteresis() {
    let mut book = AlertBook::new(BookConfig::default());
    let ev = run(&mut book, 0, &[("web1", vec![warning_at(0, 24)])]);
    assert_eq!(states(&ev), [(AlertState::Opened, Level::Warning)]);
    let a = &ev[0].alert;
    assert_eq!((a.id.as_str(), a.steps_ahead, a.minutes_ahead, a.opened_ms), ("web1.mem", 24, 120, tick(0)));
    assert_eq!(ev[0].tick_ms, tick(0));

    // The same breach time, counting down: no event, but the active alert shows the new lead.
    for n in 1..=5 {
        assert!(run(&mut book, n, &[("web1", vec![warning_at(n, 24)])]).is_empty(), "tick {n}");
    }
    let active: Vec<_> = book.active("web1").collect();
    assert_eq!((active.len(), active[0].steps_ahead, active[0].state), (1, 19, AlertState::Opened));
    // Jitter of a step or two in the breach time is not news either.
    assert!(run(&mut book, 6, &[("web1", vec![warning_at(6, 26)])]).is_empty());

    // Breach moves 2 h earlier: material.
    let ev = run(&mut book, 7, &[("web1", vec![warning_at(7, 10)])]);
    assert_eq!(states(&ev), [(AlertState::Updated, Level::Warning)]);
    assert_eq!((ev[0].alert.steps_ahead, ev[0].alert.updated_ms, ev[0].alert.opened_ms), (3, tick(7), tick(0)));

    // Escalation is immediate.
    let ev = run(&mut book, 8, &[("web1", vec![critical_at(8, 10)])]);
    assert_eq!(states(&ev), [(AlertState::Updated, Level::Critical)]);
    assert_eq!(book.counts(), AlertCounts { warning: 0, critical: 1 });

    // De-escalation waits out the hysteresis (3 ticks).
    assert!(run(&mut book, 9, &[("web1", vec![warning_at(9, 12)])]).is_empty());
    assert!(run(&mut book, 10, &[("web1", vec![warning_at(10, 12)])]).is_empty());
    assert_eq!(book.active("web1").next().map(|a| a.severity), Some(Level::Critical));
    let ev = run(&mut book, 11, &[("web1", vec![warning_at(11, 12)])]);
    assert_eq!(states(&ev), [(AlertState::Updated, Level::Warning)]);

    // A single calm tick between predictions does not resolve (no flapping)...
    assert!(run(&mut book, 12, &[("web1", vec![])]).is_empty());
    assert!(run(&mut book, 13, &[("web1", vec![])]).is_empty());
    assert!(run(&mut book, 14, &[("web1", vec![warning_at(14, 15)])]).is_empty());
    // ...three in a row do.
    assert!(run(&mut book, 15, &[("web1", vec![])]).is_empty());
    assert!(run(&mut book, 16, &[("web1", vec![])]).is_empty());
    let ev = run(&mut book, 17, &[("web1", vec![])]);
    assert_eq!(states(&ev), [(AlertState::Resolved, Level::Warning)]);
    assert_eq!((ev[0].alert.opened_ms, ev[0].alert.updated_ms), (tick(0), tick(17)));
    assert_eq!(book.active("web1").count(), 0);
    assert_eq!(book.counts(), AlertCounts::default());
}

#[test]
fn an_ongoing_breach_does_not_drift_into_updates() {
    let mut book = AlertBook::new(BookConfig::default());
    run(&mut book, 0, &[("web1", vec![critical_at(0, 1)])]);
    for n in 1..40 {
        assert!(run(&mut book, n, &[("web1", vec![critical_at(n, n + 1)])]).is_empty(), "tick {n}");
    }
}

#[test]
fn p50_confirming_a_p90_alert_is_an_update() {
    let mut book = AlertBook::new(BookConfig::default());
    run(&mut book, 0, &[("db1", vec![warning_at(0, 30)])]);
    let firmer = Breach { basis: AlertBasis::P50, ..warning_at(1, 30) };
    let ev = run(&mut book, 1, &[("db1", vec![firmer])]);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].alert.basis, AlertBasis::P50);
    // Back to P90 and to P50 again: still the same alert, no spam.
    assert!(run(&mut book, 2, &[("db1", vec![warning_at(2, 30)])]).is_empty());
    assert!(run(&mut book, 3, &[("db1", vec![Breach { basis: AlertBasis::P50, ..warning_at(3, 30) }])]).is_empty());
}

#[test]
fn one_alert_per_server_and_target_across_servers() {
    let mut book = AlertBook::new(BookConfig::default());
    let swap = Breach { target: Target::Swap, threshold: 25.0, ..warning_at(0, 3) };
    let ev = run(&mut book, 0, &[("a", vec![warning_at(0, 5), swap]), ("b", vec![critical_at(0, 2)])]);
    assert_eq!(ev.len(), 3);
    let ids: Vec<_> = book.all_active().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["a.mem", "a.swap", "b.mem"]);
    assert_eq!(book.counts(), AlertCounts { warning: 2, critical: 1 });
    // Re-predicting the same alerts opens nothing new.
    assert!(run(&mut book, 1, &[("a", vec![warning_at(1, 5), swap]), ("b", vec![critical_at(1, 2)])]).is_empty());
    assert_eq!(book.all_active().count(), 3);
}

#[test]
fn vanished_servers_have_their_alerts_resolved() {
    let cfg = BookConfig { forget_after: 4, ..BookConfig::default() };
    let mut book = AlertBook::new(cfg);
    run(&mut book, 0, &[("gone", vec![critical_at(0, 4)]), ("stays", vec![warning_at(0, 8)])]);
    for n in 1..4 {
        assert!(run(&mut book, n, &[("stays", vec![warning_at(n, 8)])]).is_empty(), "tick {n}");
    }
    let ev = run(&mut book, 4, &[("stays", vec![warning_at(4, 8)])]);
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].alert.server.as_str(), ev[0].alert.state), ("gone", AlertState::Resolved));
    assert_eq!(book.active("gone").count(), 0);
    assert_eq!(book.active("stays").count(), 1);
}

#[test]
fn the_book_survives_a_restart() {
    let mut book = AlertBook::new(BookConfig::default());
    run(&mut book, 0, &[("web1", vec![warning_at(0, 24)]), ("db1", vec![critical_at(0, 3)])]);
    run(&mut book, 1, &[("web1", vec![])]);
    let bytes = rmp_serde::to_vec_named(&book).expect("encode");
    let mut back: AlertBook = rmp_serde::from_slice(&bytes).expect("decode");
    assert_eq!(back, book);
    // The restored book continues the same lifecycle: two more calm ticks resolve web1.
    let mut events_a = Vec::new();
    let mut events_b = Vec::new();
    for n in 2..=3 {
        events_a.extend(run(&mut book, n, &[("web1", vec![]), ("db1", vec![critical_at(n, 3)])]));
        events_b.extend(run(&mut back, n, &[("web1", vec![]), ("db1", vec![critical_at(n, 3)])]));
    }
    assert_eq!(events_a, events_b);
    assert_eq!(states(&events_b), [(AlertState::Resolved, Level::Warning)]);
}
