//! In-memory history from the predictor's retained summaries (`history.tick`) and alert
//! events (`alerts.>`): 7 days of source time, compactly (server names interned, risk and
//! level one byte each, a tick's server list shared with the previous tick when unchanged).
//!
//! `feed` fills the store from the `HISTORY` stream; `agg` aggregates it with polars.

pub mod agg;
pub mod feed;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use schemas::history::TickSummary;
use schemas::{AlertEvent, AlertState, Level, Target};

pub const RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// Caps, in case ticks come faster than one per 5-minute step (an accelerated demo).
pub const MAX_TICKS: usize = 20_000;
pub const MAX_ALERT_EVENTS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct TickRow {
    pub seq: u64,
    pub tick_ms: i64,
    pub avg_risk: f32,
    pub max_risk: f32,
    pub p30: f32,
    pub p8h: f32,
    /// Servers per level: healthy, watch, warning, critical.
    pub levels: [u32; 4],
    pub alerts_warning: u32,
    pub alerts_critical: u32,
    pub opened: u32,
    pub resolved: u32,
    pub servers: Arc<[u32]>,
    pub risk: Vec<u8>,
    pub level: Vec<u8>,
    /// Parts of a split summary stored so far (bit `k` = part `k`; a whole summary is part 0).
    pub parts: u64,
}

#[derive(Debug, Clone)]
pub struct AlertRow {
    pub tick_ms: i64,
    pub state: AlertState,
    pub server: u32,
    pub target: Target,
    pub severity: Level,
    pub minutes_ahead: u32,
    pub predicted: f32,
    pub threshold: f32,
}

#[derive(Debug, Default)]
pub struct HistoryStore {
    names: Vec<String>,
    ids: HashMap<String, u32>,
    ticks: VecDeque<TickRow>,
    alerts: VecDeque<AlertRow>,
    /// Summaries refused as inconsistent (counted, never stored).
    pub rejected: u64,
}

pub fn level_code(l: Level) -> u8 {
    match l {
        Level::Healthy => 0,
        Level::Watch => 1,
        Level::Warning => 2,
        Level::Critical => 3,
    }
}

impl HistoryStore {
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map(String::as_str).unwrap_or("?")
    }

    pub fn id_of(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// Stores one summary; replays (same seq and tick) are ignored. Err names what is wrong.
    pub fn push_tick(&mut self, t: TickSummary) -> Result<(), String> {
        if t.risk.len() != t.servers.len() || t.level.len() != t.servers.len() {
            self.rejected += 1;
            return Err(format!(
                "history.tick seq {}: {} servers but {} risks and {} levels",
                t.seq,
                t.servers.len(),
                t.risk.len(),
                t.level.len()
            ));
        }
        // A split summary (`TickSummary::split`) arrives in parts: each after the first joins
        // its tick's row. Replays (same seq, tick and part) are ignored.
        let bit = 1u64 << t.part.map_or(0, |(k, _)| k.min(63));
        let same = |r: &TickRow| r.seq == t.seq && r.tick_ms == t.tick_ms;
        if let Some(at) = self.ticks.iter().rev().take(64).position(same).map(|back| self.ticks.len() - 1 - back) {
            if self.ticks[at].parts & bit != 0 {
                return Ok(());
            }
            let ids: Vec<u32> = t.servers.iter().map(|s| self.intern(s)).collect();
            let row = &mut self.ticks[at];
            row.servers = row.servers.iter().copied().chain(ids).collect();
            row.risk.extend(t.risk);
            row.level.extend(t.level.iter().map(|l| level_code(*l)));
            row.opened += t.opened.len() as u32;
            row.resolved += t.resolved.len() as u32;
            row.parts |= bit;
            return Ok(());
        }
        let ids: Vec<u32> = t.servers.iter().map(|s| self.intern(s)).collect();
        let servers: Arc<[u32]> = match self.ticks.back() {
            Some(prev) if *prev.servers == *ids => prev.servers.clone(),
            _ => ids.into(),
        };
        let f = &t.fleet;
        let row = TickRow {
            seq: t.seq,
            tick_ms: t.tick_ms,
            avg_risk: f.avg_risk,
            max_risk: f.max_risk,
            p30: f.prob_incident_30m,
            p8h: f.prob_incident_8h,
            levels: [f.levels.healthy, f.levels.watch, f.levels.warning, f.levels.critical],
            alerts_warning: f.alerts_warning,
            alerts_critical: f.alerts_critical,
            opened: t.opened.len() as u32,
            resolved: t.resolved.len() as u32,
            servers,
            risk: t.risk,
            level: t.level.iter().map(|l| level_code(*l)).collect(),
            parts: bit,
        };
        let at = self.ticks.partition_point(|r| r.tick_ms <= row.tick_ms);
        self.ticks.insert(at, row);
        self.prune();
        Ok(())
    }

    pub fn push_alert(&mut self, e: AlertEvent) {
        let server = self.intern(&e.alert.server);
        let a = &e.alert;
        let row = AlertRow {
            tick_ms: e.tick_ms,
            state: a.state,
            server,
            target: a.target,
            severity: a.severity,
            minutes_ahead: a.minutes_ahead,
            predicted: a.predicted,
            threshold: a.threshold,
        };
        let at = self.alerts.partition_point(|r| r.tick_ms <= row.tick_ms);
        self.alerts.insert(at, row);
        self.prune();
    }

    fn prune(&mut self) {
        let newest = self.newest_ms().unwrap_or(i64::MIN);
        let cutoff = newest.saturating_sub(RETENTION_MS);
        while self.ticks.front().is_some_and(|r| r.tick_ms < cutoff) || self.ticks.len() > MAX_TICKS {
            self.ticks.pop_front();
        }
        while self.alerts.front().is_some_and(|r| r.tick_ms < cutoff) || self.alerts.len() > MAX_ALERT_EVENTS {
            self.alerts.pop_front();
        }
    }

    /// The newest source time seen (ticks or alert events).
    pub fn newest_ms(&self) -> Option<i64> {
        let t = self.ticks.back().map(|r| r.tick_ms);
        let a = self.alerts.back().map(|r| r.tick_ms);
        t.max(a)
    }

    pub fn ticks_since(&self, from_ms: i64) -> impl Iterator<Item = &TickRow> {
        let start = self.ticks.partition_point(|r| r.tick_ms < from_ms);
        self.ticks.range(start..)
    }

    pub fn alerts_since(&self, from_ms: i64) -> impl DoubleEndedIterator<Item = &AlertRow> {
        let start = self.alerts.partition_point(|r| r.tick_ms < from_ms);
        self.alerts.range(start..)
    }

    pub fn tick_count(&self) -> usize {
        self.ticks.len()
    }

    pub fn alert_count(&self) -> usize {
        self.alerts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    #[test]
    fn stores_in_order_dedupes_and_shares_server_lists() {
        let spec = fixture::Spec { servers: 10, seq: 100, ..Default::default() };
        let mut ticks = fixture::ticks(&spec, 5);
        let mut h = HistoryStore::default();
        let last = ticks.pop().unwrap();
        for t in ticks.iter().rev() {
            h.push_tick(t.clone()).unwrap();
        }
        h.push_tick(last.clone()).unwrap();
        h.push_tick(last.clone()).unwrap();
        assert_eq!(h.tick_count(), 5, "replayed tick ignored");
        let times: Vec<i64> = h.ticks_since(i64::MIN).map(|r| r.tick_ms).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "kept in time order");
        let rows: Vec<&TickRow> = h.ticks_since(i64::MIN).collect();
        assert!(Arc::ptr_eq(&rows[3].servers, &rows[4].servers), "unchanged list shared");
        assert_eq!(h.name(rows[0].servers[0]), "ppweb001");
    }

    #[test]
    fn a_split_summary_becomes_one_row_and_replayed_parts_count_once() {
        let spec = fixture::Spec { servers: 3000, ..Default::default() };
        let whole = fixture::ticks(&spec, 1).remove(0);
        let parts = whole.clone().split(20_000).unwrap();
        assert!(parts.len() >= 3, "{} parts", parts.len());
        let mut h = HistoryStore::default();
        for p in parts.iter().chain(&parts[1..2]) {
            h.push_tick(p.clone()).unwrap();
        }
        assert_eq!(h.tick_count(), 1, "one tick");
        let row = h.ticks_since(i64::MIN).next().unwrap();
        assert_eq!(row.servers.len(), whole.servers.len(), "every part's servers once");
        let names: Vec<&str> = row.servers.iter().map(|id| h.name(*id)).collect();
        assert_eq!(names, whole.servers.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(row.risk, whole.risk);
        assert_eq!(row.opened as usize, whole.opened.len());
    }

    #[test]
    fn rejects_inconsistent_summaries() {
        let mut t = fixture::ticks(&fixture::Spec::default(), 1).remove(0);
        t.risk.pop();
        let mut h = HistoryStore::default();
        let err = h.push_tick(t).unwrap_err();
        assert!(err.contains("risks"), "{err}");
        assert_eq!(h.rejected, 1);
        assert_eq!(h.tick_count(), 0);
    }

    #[test]
    fn keeps_seven_days() {
        let spec = fixture::Spec { servers: 3, ..Default::default() };
        let mut h = HistoryStore::default();
        for t in fixture::ticks(&spec, 2100) {
            h.push_tick(t).unwrap();
        }
        let span = h.newest_ms().unwrap() - h.ticks_since(i64::MIN).next().unwrap().tick_ms;
        assert!(span <= RETENTION_MS);
        assert_eq!(h.tick_count(), 2017, "7 days of 5-minute steps, both ends included");
    }

    #[test]
    fn alert_events_are_kept() {
        let spec = fixture::Spec { servers: 40, ..Default::default() };
        let events = fixture::alert_events(&fixture::forecasts(&spec), spec.tick_ms);
        assert!(!events.is_empty());
        let mut h = HistoryStore::default();
        events.into_iter().for_each(|e| h.push_alert(e));
        assert!(h.alert_count() > 0);
        assert_eq!(h.newest_ms(), Some(spec.tick_ms));
    }
}
