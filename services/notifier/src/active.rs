//! The set of active alerts, as the events in stream HISTORY make it: applying the stored
//! events in stream order gives the same set on every start (the state lives in JetStream,
//! this is only its fold). Each applied event yields the [`Posting`]s Alertmanager must get.

use std::collections::BTreeMap;

use schemas::{Alert, AlertState};

use crate::event::Stored;
use crate::mapping::{self, LabelKey, PostableAlert};

/// One alert as Alertmanager must learn it: firing (`resolved_ms` absent) or resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Posting {
    pub alert: Alert,
    /// Wall-clock Unix ms this label set started (the stored time of its first event).
    pub starts_ms: i64,
    /// Wall-clock Unix ms it ended; `None` while firing.
    pub resolved_ms: Option<i64>,
}

impl Posting {
    /// The Alertmanager body element; a firing alert ends at `now_ms + ttl_ms` unless re-sent.
    pub fn to_postable(&self, now_ms: i64, ttl_ms: i64, dashboard: &str) -> PostableAlert {
        let ends = self.resolved_ms.unwrap_or(now_ms.saturating_add(ttl_ms));
        mapping::postable(&self.alert, self.starts_ms, ends, dashboard)
    }
}

/// Active alerts by id (`<server>.<target>`), with the last stream sequence applied.
#[derive(Debug, Default, Clone)]
pub struct ActiveSet {
    alerts: BTreeMap<String, (Alert, i64)>,
    last_seq: u64,
}

impl ActiveSet {
    pub fn len(&self) -> usize {
        self.alerts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }

    /// The highest stream sequence applied (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Applies one stored event, pushing what changes for Alertmanager onto `out`. Returns
    /// false (and changes nothing) for an event at or below the last applied sequence: a
    /// redelivery of something already folded in.
    pub fn apply(&mut self, s: &Stored, out: &mut Vec<Posting>) -> bool {
        if s.seq <= self.last_seq {
            return false;
        }
        self.last_seq = s.seq;
        self.apply_event(&s.event.alert, s.stored_ms, out);
        true
    }

    /// Marks `seq` as applied without an event (a bad event that was skipped).
    pub fn skip(&mut self, seq: u64) {
        self.last_seq = self.last_seq.max(seq);
    }

    fn apply_event(&mut self, alert: &Alert, at_ms: i64, out: &mut Vec<Posting>) {
        let previous = self.alerts.remove(&alert.id);
        if alert.state == AlertState::Resolved {
            let starts_ms = previous.as_ref().map(|(_, s)| *s).unwrap_or(at_ms);
            // Resolve the label set Alertmanager has (the previous one when known).
            let ended = previous.map(|(a, _)| a).unwrap_or_else(|| alert.clone());
            out.push(Posting { alert: ended, starts_ms, resolved_ms: Some(at_ms) });
            return;
        }
        let starts_ms = match previous {
            Some((old, starts)) if mapping::label_key(&old) == mapping::label_key(alert) => starts,
            Some((old, starts)) => {
                // Severity or profile changed: a new label set, so the old one ends here.
                out.push(Posting { alert: old, starts_ms: starts, resolved_ms: Some(at_ms) });
                at_ms
            }
            None => at_ms,
        };
        self.alerts.insert(alert.id.clone(), (alert.clone(), starts_ms));
        out.push(Posting { alert: alert.clone(), starts_ms, resolved_ms: None });
    }

    /// Every active alert as a firing posting (for the periodic resend).
    pub fn firing(&self) -> Vec<Posting> {
        self.alerts.values().map(|(a, starts)| Posting { alert: a.clone(), starts_ms: *starts, resolved_ms: None }).collect()
    }
}

/// Keeps the last posting per label set, in first-seen order: within one POST the newest
/// state of each Alertmanager alert is enough, and sending two states of one alert in one
/// request would leave the result to Alertmanager's merge order.
pub fn collapse(postings: Vec<Posting>) -> Vec<Posting> {
    let mut index: BTreeMap<LabelKey, usize> = BTreeMap::new();
    let mut out: Vec<Posting> = Vec::with_capacity(postings.len());
    for p in postings {
        match index.get(&mapping::label_key(&p.alert)) {
            Some(&i) => out[i] = p,
            None => {
                index.insert(mapping::label_key(&p.alert), out.len());
                out.push(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{AlertBasis, AlertEvent, Level, Profile, Target};

    fn stored(seq: u64, server: &str, severity: Level, state: AlertState) -> Stored {
        let alert = Alert {
            id: format!("{server}.cpu"),
            server: server.into(),
            profile: Profile::Generic,
            target: Target::Cpu,
            severity,
            basis: AlertBasis::P50,
            threshold: 90.0,
            predicted: 95.0,
            current: None,
            steps_ahead: 3,
            minutes_ahead: 15,
            state,
            opened_ms: 0,
            updated_ms: 0,
        };
        Stored { seq, stored_ms: 1000 * seq as i64, event: AlertEvent { v: 1, tick_ms: 0, alert } }
    }

    #[test]
    fn opens_keeps_start_and_resolves() {
        let mut set = ActiveSet::default();
        let mut out = vec![];
        assert!(set.apply(&stored(1, "a", Level::Warning, AlertState::Opened), &mut out));
        assert!(set.apply(&stored(2, "a", Level::Warning, AlertState::Updated), &mut out));
        assert_eq!(set.len(), 1);
        assert_eq!(out.iter().map(|p| (p.starts_ms, p.resolved_ms)).collect::<Vec<_>>(), [(1000, None), (1000, None)]);
        out.clear();
        assert!(set.apply(&stored(3, "a", Level::Warning, AlertState::Resolved), &mut out));
        assert!(set.is_empty());
        assert_eq!(out.iter().map(|p| (p.starts_ms, p.resolved_ms)).collect::<Vec<_>>(), [(1000, Some(3000))]);
    }

    #[test]
    fn a_new_severity_ends_the_old_label_set() {
        let mut set = ActiveSet::default();
        let mut out = vec![];
        set.apply(&stored(1, "a", Level::Warning, AlertState::Opened), &mut out);
        out.clear();
        set.apply(&stored(5, "a", Level::Critical, AlertState::Updated), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].alert.severity, out[0].resolved_ms), (Level::Warning, Some(5000)));
        assert_eq!((out[1].alert.severity, out[1].starts_ms, out[1].resolved_ms), (Level::Critical, 5000, None));
        assert_eq!(set.firing().len(), 1);
    }

    #[test]
    fn redeliveries_change_nothing() {
        let mut set = ActiveSet::default();
        let mut out = vec![];
        set.apply(&stored(4, "a", Level::Warning, AlertState::Opened), &mut out);
        set.apply(&stored(6, "a", Level::Warning, AlertState::Resolved), &mut out);
        out.clear();
        assert!(!set.apply(&stored(4, "a", Level::Warning, AlertState::Opened), &mut out));
        set.skip(9);
        assert!(!set.apply(&stored(8, "b", Level::Warning, AlertState::Opened), &mut out));
        assert!(out.is_empty() && set.is_empty() && set.last_seq() == 9);
    }

    #[test]
    fn collapse_keeps_the_newest_state_per_label_set() {
        let mut set = ActiveSet::default();
        let mut out = vec![];
        set.apply(&stored(1, "a", Level::Warning, AlertState::Opened), &mut out);
        set.apply(&stored(2, "b", Level::Warning, AlertState::Opened), &mut out);
        set.apply(&stored(3, "a", Level::Warning, AlertState::Resolved), &mut out);
        let c = collapse(out);
        assert_eq!(c.iter().map(|p| (p.alert.server.as_str(), p.resolved_ms)).collect::<Vec<_>>(), [("a", Some(3000)), ("b", None)]);
    }
}
