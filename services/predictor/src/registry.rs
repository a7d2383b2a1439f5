//! Every server's window and every source's clock, with the bookkeeping the loop needs: which
//! windows changed since the last store flush, and which servers closed a step since the
//! last tick.
//!
//! Each source keeps its own stream clock: it starts at the wall clock and advances to the
//! largest `clock_ms` the source has sent, so a simulated clock running ahead is fine while a
//! timestamp a year off is rejected (records are validated against it). A source that goes
//! silent is advanced by the wall clock (less a grace period), so a real-time adapter's last
//! step still closes.

use std::collections::HashMap;

use schemas::{MetricRecord, ValidationPolicy};

use crate::bands::{BandCache, ServerBands};
use crate::chunk::Chunk;
use crate::step::{step_end, Seen};
use crate::window::{AddOutcome, ServerWindow};

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    /// The source's stream clock (Unix ms, the source's time).
    pub clock_ms: i64,
    /// Wall time when `clock_ms` last advanced.
    pub advanced_wall_ms: i64,
    pub dirty: bool,
}

#[derive(Debug)]
pub struct Registry {
    capacity: usize,
    /// Steps of each window that keep every metric (the rest keep the targets' sources).
    full_steps: usize,
    servers: Vec<ServerWindow>,
    by_name: HashMap<String, u32>,
    sources: Vec<Source>,
    source_ids: HashMap<String, u16>,
    dirty: Vec<u32>,
    due: Vec<u32>,
    is_due: Vec<bool>,
    /// Each server's statistical bands, reused between ticks (`methods::BandCache`); derived
    /// from its window, never stored.
    bands: BandCache,
}

impl Registry {
    /// `capacity`: steps per window, every metric kept for all of them.
    pub fn new(capacity: usize) -> Registry {
        Self::tiered(capacity, capacity)
    }

    /// `capacity` steps per window, every metric kept for the newest `full_steps` (the
    /// model's encoder length) and the targets' sources for all (`window.rs`).
    pub fn tiered(capacity: usize, full_steps: usize) -> Registry {
        Registry {
            capacity,
            full_steps,
            servers: Vec::new(),
            by_name: HashMap::new(),
            sources: Vec::new(),
            source_ids: HashMap::new(),
            dirty: Vec::new(),
            due: Vec::new(),
            is_due: Vec::new(),
            bands: BandCache::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    pub fn servers(&self) -> &[ServerWindow] {
        &self.servers
    }

    pub fn server(&self, id: u32) -> &ServerWindow {
        &self.servers[id as usize]
    }

    /// Server `id`'s cached statistical bands (see `methods::Statistical::fill`).
    pub fn bands(&self, id: u32) -> &std::sync::Mutex<ServerBands> {
        &self.bands[id as usize]
    }

    pub fn server_mut(&mut self, id: u32) -> &mut ServerWindow {
        &mut self.servers[id as usize]
    }

    pub fn id_of(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    pub fn source(&self, id: u16) -> &Source {
        &self.sources[id as usize]
    }

    /// The source's id, created with its clock at `wall_ms` the first time it is seen.
    pub fn source_id(&mut self, name: &str, wall_ms: i64) -> u16 {
        if let Some(id) = self.source_ids.get(name) {
            return *id;
        }
        let id = self.sources.len() as u16;
        self.sources.push(Source { name: name.to_string(), clock_ms: wall_ms, advanced_wall_ms: wall_ms, dirty: false });
        self.source_ids.insert(name.to_string(), id);
        id
    }

    /// The policy records of `source` are judged by.
    pub fn policy(&self, source: u16) -> ValidationPolicy {
        ValidationPolicy::at(self.sources[source as usize].clock_ms)
    }

    fn server_id(&mut self, record: &MetricRecord, source: u16) -> u32 {
        if let Some(id) = self.by_name.get(&record.server) {
            return *id;
        }
        let id = self.servers.len() as u32;
        self.servers.push(ServerWindow::tiered(record.server.clone(), record.profile(), source, self.capacity, self.full_steps));
        self.by_name.insert(record.server.clone(), id);
        self.is_due.push(false);
        self.bands.push(Default::default());
        id
    }

    /// Adds a validated record from `source` to its server's window (see [`AddOutcome`]); a
    /// late value that fills a closed step is stored like any other change.
    pub fn apply(&mut self, source: u16, record: &MetricRecord) -> AddOutcome {
        let id = self.server_id(record, source);
        let w = &mut self.servers[id as usize];
        w.source = source;
        if let Some(p) = record.profile {
            w.profile = p;
        }
        let was_dirty = w.is_dirty();
        let outcome = w.add(record.ts_ms, &record.metrics);
        match outcome {
            AddOutcome::Added { closed } => self.touched(id, was_dirty, closed.is_some()),
            AddOutcome::Filled => self.touched(id, was_dirty, false),
            AddOutcome::Duplicate | AddOutcome::TooLate { .. } => {}
        }
        outcome
    }

    /// Lists a changed server once for the store (a window is listed exactly while it has
    /// unstored chunks) and once for the next tick.
    fn touched(&mut self, id: u32, was_dirty: bool, closed: bool) {
        if !was_dirty && self.servers[id as usize].is_dirty() {
            self.dirty.push(id);
        }
        if closed && !self.is_due[id as usize] {
            self.is_due[id as usize] = true;
            self.due.push(id);
        }
    }

    /// Advances a source's clock (never backwards) and closes the steps it completes.
    /// Returns how many steps closed.
    pub fn advance(&mut self, source: u16, clock_ms: i64, wall_ms: i64) -> usize {
        let s = &mut self.sources[source as usize];
        if clock_ms > s.clock_ms {
            s.clock_ms = clock_ms;
            s.advanced_wall_ms = wall_ms;
            s.dirty = true;
        }
        let clock = s.clock_ms;
        self.close_source(source, clock)
    }

    fn close_source(&mut self, source: u16, clock_ms: i64) -> usize {
        let mut closed = 0;
        for id in 0..self.servers.len() as u32 {
            let w = &mut self.servers[id as usize];
            if w.source != source || w.open().is_none_or(|o| step_end(o.step) > clock_ms) {
                continue;
            }
            let was_dirty = w.is_dirty();
            if w.close_until(clock_ms).is_some() {
                closed += 1;
                self.touched(id, was_dirty, true);
            }
        }
        closed
    }

    /// Closes the open steps of silent sources: each source's clock is taken to run on with
    /// the wall clock since it last advanced, less `grace_ms`.
    pub fn close_by_wall(&mut self, wall_ms: i64, grace_ms: i64) -> usize {
        let mut closed = 0;
        for source in 0..self.sources.len() {
            let s = &self.sources[source];
            let estimate = s.clock_ms.saturating_add(wall_ms - s.advanced_wall_ms - grace_ms);
            if estimate > s.clock_ms {
                closed += self.close_source(source as u16, estimate);
            }
        }
        closed
    }

    /// Servers with window changes not yet stored; the list is emptied.
    pub fn take_dirty(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.dirty)
    }

    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty() || self.sources.iter().any(|s| s.dirty)
    }

    pub fn source_mut(&mut self, id: u16) -> &mut Source {
        &mut self.sources[id as usize]
    }

    /// Servers that closed a step since the last call, in first-closed order.
    pub fn take_due(&mut self) -> Vec<u32> {
        let due = std::mem::take(&mut self.due);
        for id in &due {
            self.is_due[*id as usize] = false;
        }
        due
    }

    pub fn due_count(&self) -> usize {
        self.due.len()
    }

    /// Rebuilds a server from its stored chunks (any order); the server counts as due so the
    /// first tick after a start forecasts it again.
    pub fn restore_server(&mut self, name: &str, mut chunks: Vec<Chunk>, n_slots: i64) {
        chunks.sort_by_key(|c| c.chunk);
        let Some(newest) = chunks.last() else { return };
        let oldest_kept = newest.chunk - n_slots + 1;
        let (profile, source_name) = (newest.profile, newest.source.clone());
        let source = self.source_id(&source_name, i64::MIN);
        let id = self.servers.len() as u32;
        let mut w = ServerWindow::tiered(name.to_string(), profile, source, self.capacity, self.full_steps);
        let mut open = None;
        for c in chunks.iter().filter(|c| c.chunk >= oldest_kept) {
            for (step, values) in &c.steps {
                w.restore_closed(*step, *values);
            }
            if let Some(o) = c.open {
                open = Some((o, &c.seen));
            }
        }
        if let Some((o, seen)) = open {
            w.restore_open(o, Seen::clone(seen));
        }
        let mut scratch = Vec::new();
        w.take_dirty(&mut scratch);
        self.servers.push(w);
        self.by_name.insert(name.to_string(), id);
        self.is_due.push(false);
        self.bands.push(Default::default());
        if self.servers[id as usize].last_closed().is_some() {
            self.is_due[id as usize] = true;
            self.due.push(id);
        }
    }

    /// Sets a restored source's clock from the store.
    pub fn restore_source(&mut self, name: &str, clock_ms: i64, wall_ms: i64) {
        let id = self.source_id(name, clock_ms);
        let s = &mut self.sources[id as usize];
        s.clock_ms = s.clock_ms.max(clock_ms);
        s.advanced_wall_ms = wall_ms;
    }

    /// Sources created by [`Registry::restore_server`] without a stored clock start at the
    /// wall clock.
    pub fn finish_restore(&mut self, wall_ms: i64) {
        for s in &mut self.sources {
            if s.clock_ms == i64::MIN {
                s.clock_ms = wall_ms;
                s.advanced_wall_ms = wall_ms;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{Metrics, STEP_MS};

    fn rec(server: &str, ts_ms: i64, idle: f32) -> MetricRecord {
        MetricRecord { server: server.into(), ts_ms, profile: None, metrics: Metrics { cpu_idle_pct: Some(idle), ..Default::default() } }
    }

    const T0: i64 = 1_800_000_000_000 - 1_800_000_000_000 % STEP_MS;

    #[test]
    fn the_source_clock_closes_steps_of_its_servers_only() {
        let mut r = Registry::new(12);
        let gen = r.source_id("generator", T0);
        let other = r.source_id("adapter", T0);
        r.apply(gen, &rec("ppdb001", T0, 50.0));
        r.apply(other, &rec("ppweb001", T0, 50.0));
        assert_eq!(r.advance(gen, T0 + STEP_MS, T0), 1);
        let due: Vec<_> = r.take_due().iter().map(|id| r.server(*id).name.clone()).collect();
        assert_eq!(due, ["ppdb001"]);
        assert!(r.take_due().is_empty());
        assert_eq!(r.take_dirty().len(), 2);
    }

    #[test]
    fn a_silent_source_closes_by_the_wall_clock_after_grace() {
        let mut r = Registry::new(12);
        let s = r.source_id("adapter", T0);
        r.apply(s, &rec("ppweb001", T0 + 1_000, 50.0));
        r.advance(s, T0 + 2_000, T0 + 2_000);
        assert_eq!(r.close_by_wall(T0 + STEP_MS + 10_000, 30_000), 0, "within grace");
        assert_eq!(r.close_by_wall(T0 + STEP_MS + 40_000, 30_000), 1);
    }

    #[test]
    fn the_clock_never_goes_back() {
        let mut r = Registry::new(12);
        let s = r.source_id("generator", T0);
        r.advance(s, T0 + 10 * STEP_MS, T0);
        r.advance(s, T0, T0);
        assert_eq!(r.source(s).clock_ms, T0 + 10 * STEP_MS);
        assert_eq!(r.policy(s).now_ms, T0 + 10 * STEP_MS);
    }
}
