//! Predicted alerts: which targets of a server the forecast takes over a threshold, and the
//! lifecycle book that turns each tick's predictions into opened/updated/resolved events.
//!
//! The original emitted one alert per crossing *step* (up to 12 per metric per poll), never
//! de-duplicated, and called step `i` "(i+1)·5 minutes" on 5-second ticks. Here a server has
//! at most one alert per target (its worst severity, earliest crossing), steps are 5 minutes,
//! and an alert only produces an event when something an operator would care about changed.
//! A book restored from an older save is caught up with the events published since
//! ([`AlertBook::fold`]), so a takeover never announces an alert twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use schemas::{Alert, AlertBasis, AlertEvent, AlertState, Level, Metrics, Profile, Target, TargetForecast};

use super::horizon::STEP_MINUTES;
use super::recurrence::Recurrence;
use super::thresholds::thresholds;

/// The worst predicted crossing of one target within the horizon.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Breach {
    pub target: Target,
    /// `Warning` or `Critical`.
    pub severity: Level,
    pub basis: AlertBasis,
    pub threshold: f32,
    /// The quantile's value at the first crossing step.
    pub predicted: f32,
    pub current: Option<f32>,
    /// 1-based step of the first crossing.
    pub steps_ahead: u16,
}

impl Breach {
    pub fn minutes_ahead(&self) -> u32 {
        u32::from(self.steps_ahead) * STEP_MINUTES
    }
}

/// First 1-based step at which `xs` reaches `threshold`, with the value there. Non-finite
/// values never cross (an infinite step is a broken forecast, not a breach).
fn first_crossing(xs: &[f32], threshold: f32) -> Option<(u16, f32)> {
    xs.iter().position(|&x| x.is_finite() && x >= threshold).map(|i| ((i + 1) as u16, xs[i]))
}

/// Appends to `out` (without clearing it) one [`Breach`] per target whose P50 or P90 reaches a
/// warning or critical threshold within the forecast, or whose value a day before a coming step
/// did (its entry in `recurring`, `recurrence.rs`; a warning, [`AlertBasis::Seasonal`]): the
/// worst severity; for it, the earliest step; on a tie, P50 (the expected path) over P90 over
/// the seasonal recurrence. Breaches follow the forecast's target order; a target repeated in
/// `forecast` still yields at most one breach, and a target without a forecast none.
pub fn breaches_into(profile: Profile, current: &Metrics, forecast: &[TargetForecast], recurring: &[Recurrence], out: &mut Vec<Breach>) {
    let start = out.len();
    for f in forecast {
        let Some(th) = thresholds(profile, f.target) else { continue };
        if out[start..].iter().any(|b| b.target == f.target) {
            continue;
        }
        let current = current.target(f.target).filter(|v| v.is_finite());
        // Critical needs the expected path (P50) to cross the critical line. The P90 alone
        // crossing it is a plausible worst case: a warning, or on a fleet of hundreds the
        // critical list fills with servers that merely have wide intervals.
        let critical = th.of(Level::Critical);
        let pick = if let Some(p50) = first_crossing(&f.p50, critical) {
            Some((Level::Critical, AlertBasis::P50, critical, p50))
        } else {
            let warning = th.of(Level::Warning);
            let seasonal = recurring.iter().find(|r| r.target == f.target);
            let candidates = [
                first_crossing(&f.p90, critical).map(|b| (AlertBasis::P90, critical, b)),
                first_crossing(&f.p50, warning).map(|b| (AlertBasis::P50, warning, b)),
                first_crossing(&f.p90, warning).map(|b| (AlertBasis::P90, warning, b)),
                seasonal.map(|r| (AlertBasis::Seasonal, r.threshold, (r.steps_ahead, r.value))),
            ];
            // The earliest warning sign; on a tie the first listed (the more severe story).
            candidates.into_iter().flatten().min_by_key(|(_, _, (step, _))| *step).map(|(basis, th, b)| (Level::Warning, basis, th, b))
        };
        if let Some((severity, basis, threshold, (steps_ahead, predicted))) = pick {
            out.push(Breach { target: f.target, severity, basis, threshold, predicted, current, steps_ahead });
        }
    }
}

/// [`breaches_into`] into a fresh vector.
pub fn breaches(profile: Profile, current: &Metrics, forecast: &[TargetForecast]) -> Vec<Breach> {
    let mut out = Vec::new();
    breaches_into(profile, current, forecast, &[], &mut out);
    out
}

/// Active alerts by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlertCounts {
    pub warning: u32,
    pub critical: u32,
}

/// How eagerly the book opens, updates and resolves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BookConfig {
    /// Ticks a target must stay below an alert's severity before the alert is downgraded or
    /// resolved (escalation is immediate). Stops flapping around a threshold.
    pub resolve_after: u32,
    /// Ticks a server may go without a forecast before its alerts are resolved.
    pub forget_after: u32,
    /// An update is published when the predicted breach *time* (tick + lead, so a steady
    /// forecast counts down silently) moves by at least this many minutes...
    pub min_shift_minutes: u32,
    /// ...and by at least this share of the new lead.
    pub rel_shift: f32,
}

impl Default for BookConfig {
    fn default() -> Self {
        BookConfig { resolve_after: 3, forget_after: 12, min_shift_minutes: 30, rel_shift: 0.5 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tracked {
    alert: Alert,
    /// Breach time and basis as last published (what subscribers believe).
    published_breach_ms: i64,
    published_basis: AlertBasis,
    /// Consecutive observed ticks predicting less than `alert.severity`.
    calm: u32,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct ServerAlerts {
    tracked: Vec<Tracked>,
    /// Finished ticks since the server was last observed.
    missed: u32,
    seen: bool,
}

/// The lifecycle of every active alert. Per tick: [`AlertBook::observe`] each server that got
/// a forecast, then [`AlertBook::finish_tick`]. Serde-serialisable so it survives a restart;
/// only servers with active alerts are stored.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AlertBook {
    #[serde(default)]
    config: BookConfig,
    servers: BTreeMap<String, ServerAlerts>,
}

fn event(tick_ms: i64, alert: &Alert) -> AlertEvent {
    AlertEvent { v: schemas::SCHEMA_VERSION, tick_ms, alert: alert.clone() }
}

fn breach_ms(tick_ms: i64, b: &Breach) -> i64 {
    tick_ms + i64::from(b.minutes_ahead()) * 60_000
}

impl AlertBook {
    pub fn new(config: BookConfig) -> Self {
        AlertBook { config, servers: BTreeMap::new() }
    }

    /// Replaces the configuration (e.g. after restoring a persisted book).
    pub fn set_config(&mut self, config: BookConfig) {
        self.config = config;
    }

    pub fn config(&self) -> BookConfig {
        self.config
    }

    /// Feeds one forecast server's breaches (from [`breaches_into`]) for the tick at
    /// `tick_ms`; appends the events it causes to `events`.
    pub fn observe(&mut self, tick_ms: i64, server: &str, profile: Profile, breaches: &[Breach], events: &mut Vec<AlertEvent>) {
        let cfg = self.config;
        let entry = match self.servers.get_mut(server) {
            Some(e) => e,
            None if breaches.is_empty() => return,
            None => self.servers.entry(server.to_string()).or_default(),
        };
        entry.seen = true;
        entry.missed = 0;
        entry.tracked.retain_mut(|t| {
            let b = breaches.iter().find(|b| b.target == t.alert.target);
            match b {
                Some(b) if b.severity > t.alert.severity => {
                    t.calm = 0;
                    set_published(t, tick_ms, b, profile, AlertState::Updated);
                    events.push(event(tick_ms, &t.alert));
                }
                Some(b) if b.severity == t.alert.severity => {
                    t.calm = 0;
                    // A published breach time that has come is "now": an ongoing breach
                    // (lead 1 every tick) must not drift into an update.
                    let expected = t.published_breach_ms.max(tick_ms + schemas::STEP_MS);
                    let (shift, lead) = ((breach_ms(tick_ms, b) - expected).abs() / 60_000, b.minutes_ahead());
                    let needed = f64::from(cfg.min_shift_minutes).max(f64::from(cfg.rel_shift) * f64::from(lead));
                    let firmer = b.basis == AlertBasis::P50 && t.published_basis == AlertBasis::P90;
                    if shift as f64 >= needed || firmer {
                        set_published(t, tick_ms, b, profile, AlertState::Updated);
                        events.push(event(tick_ms, &t.alert));
                    } else {
                        refresh(&mut t.alert, b, profile);
                    }
                }
                // A seasonal alert is held until its breach is due: the recurrence is not looked
                // for within the next 30 min (`recurrence.rs`), so it leaves the breaches half
                // an hour before its time, not because the day has changed.
                None if t.published_basis == AlertBasis::Seasonal && tick_ms < t.published_breach_ms => {}
                lower => {
                    t.calm += 1;
                    if let Some(b) = lower {
                        t.alert.current = b.current;
                    }
                    if t.calm >= cfg.resolve_after {
                        match lower {
                            Some(b) => {
                                t.calm = 0;
                                set_published(t, tick_ms, b, profile, AlertState::Updated);
                            }
                            None => {
                                t.alert.state = AlertState::Resolved;
                                t.alert.updated_ms = tick_ms;
                            }
                        }
                        events.push(event(tick_ms, &t.alert));
                    }
                }
            }
            t.alert.state != AlertState::Resolved
        });
        for b in breaches {
            if entry.tracked.iter().any(|t| t.alert.target == b.target) {
                continue;
            }
            let alert = Alert {
                id: format!("{server}.{}", b.target.name()),
                server: server.to_string(),
                profile,
                target: b.target,
                severity: b.severity,
                basis: b.basis,
                threshold: b.threshold,
                predicted: b.predicted,
                current: b.current,
                steps_ahead: b.steps_ahead,
                minutes_ahead: b.minutes_ahead(),
                state: AlertState::Opened,
                opened_ms: tick_ms,
                updated_ms: tick_ms,
            };
            events.push(event(tick_ms, &alert));
            let t = Tracked { alert, published_breach_ms: breach_ms(tick_ms, b), published_basis: b.basis, calm: 0 };
            entry.tracked.push(t);
        }
        entry.tracked.sort_by_key(|t| t.alert.target);
    }

    /// Closes a tick: servers not observed since the last call age by one tick, and those
    /// unseen for `forget_after` ticks have their alerts resolved. Appends events to `events`.
    pub fn finish_tick(&mut self, tick_ms: i64, events: &mut Vec<AlertEvent>) {
        let forget_after = self.config.forget_after;
        self.servers.retain(|_, s| {
            if !std::mem::take(&mut s.seen) {
                s.missed += 1;
                if s.missed >= forget_after {
                    for t in &mut s.tracked {
                        t.alert.state = AlertState::Resolved;
                        t.alert.updated_ms = tick_ms;
                        events.push(event(tick_ms, &t.alert));
                    }
                    s.tracked.clear();
                }
            }
            !s.tracked.is_empty()
        });
    }

    /// Brings a restored book up to date with alert events published after it was saved
    /// (`events`, in the order they were published): an `opened` or `updated` event makes its
    /// alert tracked as the event says (calm 0, its breach time and basis as published), a
    /// `resolved` one removes it. So a predictor that takes over a book saved one tick before
    /// its last holder's announcements does not announce them again.
    ///
    /// Idempotent against what the book already holds: an event no newer than the tracked
    /// alert's `updated_ms` is skipped (a resolve of the same instant still applies), so events
    /// of the saved tick itself may be folded again. What no event says (the silent countdown
    /// and calm ticks of the missing ticks) is not recovered: an alert may resolve a tick late.
    /// Returns how many events changed the book.
    pub fn fold(&mut self, events: &[AlertEvent]) -> usize {
        let mut changed = 0;
        for e in events {
            let a = &e.alert;
            let tracked = self.servers.get_mut(&a.server).and_then(|s| s.tracked.iter_mut().find(|t| t.alert.target == a.target));
            match (a.state, tracked) {
                (AlertState::Resolved, Some(t)) if t.alert.updated_ms <= a.updated_ms => {
                    if let Some(s) = self.servers.get_mut(&a.server) {
                        s.tracked.retain(|t| t.alert.target != a.target);
                        if s.tracked.is_empty() {
                            self.servers.remove(&a.server);
                        }
                    }
                }
                (AlertState::Resolved, _) => continue,
                (_, Some(t)) if t.alert.updated_ms >= a.updated_ms => continue,
                (_, Some(t)) => *t = published(e),
                (_, None) => {
                    let s = self.servers.entry(a.server.clone()).or_default();
                    s.tracked.push(published(e));
                    s.tracked.sort_by_key(|t| t.alert.target);
                }
            }
            changed += 1;
        }
        changed
    }

    /// A server's active alerts, in [`Target::ALL`] order.
    pub fn active(&self, server: &str) -> impl Iterator<Item = &Alert> + '_ {
        self.servers.get(server).into_iter().flat_map(|s| s.tracked.iter().map(|t| &t.alert))
    }

    /// Every active alert, by server name then target.
    pub fn all_active(&self) -> impl Iterator<Item = &Alert> + '_ {
        self.servers.values().flat_map(|s| s.tracked.iter().map(|t| &t.alert))
    }

    pub fn counts(&self) -> AlertCounts {
        let mut c = AlertCounts::default();
        for a in self.all_active() {
            match a.severity {
                Level::Critical => c.critical += 1,
                _ => c.warning += 1,
            }
        }
        c
    }
}

/// An alert as an `opened` or `updated` event published it, tracked from there.
fn published(e: &AlertEvent) -> Tracked {
    Tracked {
        alert: e.alert.clone(),
        published_breach_ms: e.tick_ms + i64::from(e.alert.minutes_ahead) * 60_000,
        published_basis: e.alert.basis,
        calm: 0,
    }
}

/// Copies a breach's figures into an alert without changing its state or times.
fn refresh(alert: &mut Alert, b: &Breach, profile: Profile) {
    alert.profile = profile;
    alert.severity = b.severity;
    alert.basis = b.basis;
    alert.threshold = b.threshold;
    alert.predicted = b.predicted;
    alert.current = b.current;
    alert.steps_ahead = b.steps_ahead;
    alert.minutes_ahead = b.minutes_ahead();
}

/// Refreshes an alert from a breach and marks it published at `tick_ms` with `state`.
fn set_published(t: &mut Tracked, tick_ms: i64, b: &Breach, profile: Profile, state: AlertState) {
    refresh(&mut t.alert, b, profile);
    t.alert.state = state;
    t.alert.updated_ms = tick_ms;
    t.published_breach_ms = breach_ms(tick_ms, b);
    t.published_basis = b.basis;
}

#[cfg(test)]
#[path = "alerts_tests.rs"]
mod tests;
