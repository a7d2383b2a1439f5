//! [`AlertBook::fold`]: a book saved one tick before its holder's last announcements, caught
//! up with those announcements, continues exactly as the holder's book would have.

use super::*;
use schemas::alert::reopened;
use schemas::STEP_MS;

const T0: i64 = 1_800_000_000_000 / STEP_MS * STEP_MS;

fn tick(n: i64) -> i64 {
    T0 + n * STEP_MS
}

/// A memory breach of `severity` predicted for absolute step `at_step` (its lead shrinks as
/// ticks pass).
fn mem(severity: Level, now: i64, at_step: i64) -> Breach {
    Breach {
        target: Target::Mem,
        severity,
        basis: AlertBasis::P90,
        threshold: if severity == Level::Critical { 98.0 } else { 90.0 },
        predicted: 99.0,
        current: Some(80.0),
        steps_ahead: (at_step - now).max(1) as u16,
    }
}

fn run(book: &mut AlertBook, n: i64, server_breaches: &[(&str, Vec<Breach>)]) -> Vec<AlertEvent> {
    let mut events = Vec::new();
    for (server, b) in server_breaches {
        book.observe(tick(n), server, Profile::Generic, b, &mut events);
    }
    book.finish_tick(tick(n), &mut events);
    events
}

fn states(events: &[AlertEvent]) -> Vec<(&str, AlertState)> {
    events.iter().map(|e| (e.alert.server.as_str(), e.alert.state)).collect()
}

/// Ticks 0..=2: web1 (warning) and db1 (critical) open at 0, db1 calms from 1 on. Returns the
/// book after tick 2 and what tick 3 announces: new1 opened, web1 escalated, db1 resolved.
fn holder() -> (AlertBook, AlertBook, Vec<AlertEvent>) {
    let mut book = AlertBook::new(BookConfig::default());
    run(&mut book, 0, &[("web1", vec![mem(Level::Warning, 0, 24)]), ("db1", vec![mem(Level::Critical, 0, 3)])]);
    for n in 1..=2 {
        assert!(run(&mut book, n, &[("web1", vec![mem(Level::Warning, n, 24)]), ("db1", vec![])]).is_empty());
    }
    let saved = book.clone();
    let events = run(&mut book, 3, &tick_3_on());
    assert_eq!(states(&events), [("web1", AlertState::Updated), ("db1", AlertState::Resolved), ("new1", AlertState::Opened)]);
    (saved, book, events)
}

fn tick_3_on() -> Vec<(&'static str, Vec<Breach>)> {
    vec![("web1", vec![mem(Level::Critical, 3, 24)]), ("db1", vec![]), ("new1", vec![mem(Level::Warning, 3, 10)])]
}

#[test]
fn a_book_one_tick_behind_caught_up_is_the_holders_book() {
    let (mut saved, mut live, events) = holder();
    let mut unfolded = saved.clone();
    assert_eq!(saved.fold(&events), 3);
    assert_eq!(saved, live, "opened -> tracked, updated -> updated, resolved -> gone");
    // The next tick: the same events from both, so nothing announced twice.
    let (a, b) = (run(&mut live, 4, &tick_3_on()), run(&mut saved, 4, &tick_3_on()));
    assert_eq!(a, b);
    let both: Vec<AlertEvent> = events.iter().chain(&b).cloned().collect();
    assert!(reopened(&both).is_none());
    // Without the fold the successor announces new1 again (and db1's resolve, and web1's update).
    let again = run(&mut unfolded, 4, &tick_3_on());
    let both: Vec<AlertEvent> = events.iter().chain(&again).cloned().collect();
    assert_eq!(reopened(&both).map(|e| e.alert.id.as_str()), Some("new1.mem"));
}

#[test]
fn folding_what_the_book_already_holds_changes_nothing() {
    let (_, mut live, events) = holder();
    let before = live.clone();
    assert_eq!(live.fold(&events), 0);
    assert_eq!(live, before);
}

#[test]
fn events_older_than_the_tracked_alert_are_skipped() {
    let mut book = AlertBook::new(BookConfig::default());
    let opened = run(&mut book, 6, &[("web1", vec![mem(Level::Warning, 6, 24)])]);
    let before = book.clone();
    // An earlier incarnation's lifecycle (opened at 1, escalated at 2, resolved at 5).
    let mut old = AlertBook::new(BookConfig::default());
    let mut stale = run(&mut old, 1, &[("web1", vec![mem(Level::Warning, 1, 24)])]);
    stale.extend(run(&mut old, 2, &[("web1", vec![mem(Level::Critical, 2, 24)])]));
    for n in 3..6 {
        stale.extend(run(&mut old, n, &[("web1", vec![])]));
    }
    assert_eq!(states(&stale), [("web1", AlertState::Opened), ("web1", AlertState::Updated), ("web1", AlertState::Resolved)]);
    assert_eq!(book.fold(&stale), 0);
    assert_eq!(book, before);
    assert_eq!(book.active("web1").next().map(|a| a.opened_ms), Some(opened[0].alert.opened_ms));
}

#[test]
fn several_ticks_fold_in_order() {
    let mut holder = AlertBook::new(BookConfig::default());
    let mut events = run(&mut holder, 0, &[("web1", vec![mem(Level::Warning, 0, 24)])]);
    for n in 1..=3 {
        events.extend(run(&mut holder, n, &[("web1", vec![])]));
    }
    events.extend(run(&mut holder, 4, &[("web1", vec![mem(Level::Critical, 4, 6)])]));
    assert_eq!(states(&events), [("web1", AlertState::Opened), ("web1", AlertState::Resolved), ("web1", AlertState::Opened)]);
    let mut empty = AlertBook::new(BookConfig::default());
    assert_eq!(empty.fold(&events), 3);
    assert_eq!(empty, holder, "opened, resolved, opened again: open since tick 4");
    assert_eq!(empty.active("web1").next().map(|a| (a.opened_ms, a.severity)), Some((tick(4), Level::Critical)));
}

/// [`breaches_into`] with a seasonal recurrence (`recurrence.rs`) beside a CPU forecast at
/// `p50`/`p90` (a generic server: CPU warning 85, critical 95).
fn cpu_breaches(p50: &[(usize, f32)], p90: &[(usize, f32)], recurring: &[Recurrence]) -> Vec<Breach> {
    let mut f = TargetForecast {
        target: Target::Cpu,
        method: schemas::Method::Level,
        p10: vec![30.0; 96],
        p50: vec![30.0; 96],
        p90: vec![30.0; 96],
    };
    for &(k, v) in p50 {
        f.p50[k - 1] = v;
    }
    for &(k, v) in p90 {
        f.p90[k - 1] = v;
    }
    let mut out = Vec::new();
    breaches_into(Profile::Generic, &Metrics::default(), &[f], recurring, &mut out);
    out
}

#[test]
fn a_seasonal_recurrence_warns_unless_the_forecast_tells_an_earlier_or_firmer_story() {
    let yesterday = Recurrence { target: Target::Cpu, threshold: 95.0, steps_ahead: 40, value: 97.0 };
    let seen = |b: &[Breach]| b.iter().map(|b| (b.severity, b.basis, b.threshold, b.steps_ahead, b.predicted)).collect::<Vec<_>>();
    assert_eq!(seen(&cpu_breaches(&[], &[], &[yesterday])), [(Level::Warning, AlertBasis::Seasonal, 95.0, 40, 97.0)]);
    assert_eq!(seen(&cpu_breaches(&[], &[], &[])), [], "a calm forecast and no recurrence");
    // An earlier warning sign of the forecast's own is the story told.
    assert_eq!(seen(&cpu_breaches(&[], &[(10, 88.0)], &[yesterday])), [(Level::Warning, AlertBasis::P90, 85.0, 10, 88.0)]);
    // The same step: the forecast's P90 is listed before the recurrence.
    assert_eq!(seen(&cpu_breaches(&[], &[(40, 96.0)], &[yesterday])), [(Level::Warning, AlertBasis::P90, 95.0, 40, 96.0)]);
    // The expected path crossing critical, even later, is critical.
    assert_eq!(seen(&cpu_breaches(&[(80, 96.0)], &[(80, 96.0)], &[yesterday])), [(Level::Critical, AlertBasis::P50, 95.0, 80, 96.0)]);
    // Another target's recurrence says nothing about this one.
    let memory = Recurrence { target: Target::Mem, ..yesterday };
    assert_eq!(seen(&cpu_breaches(&[], &[], &[memory])), []);
}

/// A seasonal alert (`recurrence.rs`) stays open until its breach is due, though the recurrence
/// is not reported within the last 30 min before it; then it calms and resolves as any other.
#[test]
fn a_seasonal_alert_is_held_until_its_breach_is_due() {
    let mut book = AlertBook::new(BookConfig::default());
    let seasonal = Breach { basis: AlertBasis::Seasonal, ..mem(Level::Warning, 0, 10) };
    let opened = run(&mut book, 0, &[("web1", vec![seasonal])]);
    assert_eq!(states(&opened), [("web1", AlertState::Opened)]);
    // Due at tick 10; from tick 4 on (lead 6) the recurrence is no longer reported.
    for n in 1..=3 {
        let b = Breach { basis: AlertBasis::Seasonal, ..mem(Level::Warning, n, 10) };
        assert!(run(&mut book, n, &[("web1", vec![b])]).is_empty(), "tick {n}");
    }
    for n in 4..=11 {
        assert!(run(&mut book, n, &[("web1", vec![])]).is_empty(), "held at tick {n}");
    }
    assert_eq!(states(&run(&mut book, 12, &[("web1", vec![])])), [("web1", AlertState::Resolved)], "calm for 3 ticks from tick 10");
    // A P90 alert with the same breach leaves after three calm ticks, long before it is due.
    let mut book = AlertBook::new(BookConfig::default());
    run(&mut book, 0, &[("web1", vec![mem(Level::Warning, 0, 10)])]);
    let resolved = (1..=3).flat_map(|n| run(&mut book, n, &[("web1", vec![])])).collect::<Vec<_>>();
    assert_eq!(states(&resolved), [("web1", AlertState::Resolved)]);
}
