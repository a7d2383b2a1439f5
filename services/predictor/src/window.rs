//! One server's window: its last closed steps in a ring indexed by step number (at least the
//! model's `encoder_steps`, and the day-plus-horizon the statistical methods read:
//! `methods::HISTORY_STEPS`), plus the one open step still collecting reports.
//!
//! A step closes when a report for a later step arrives, or when the source's clock passes
//! its end ([`ServerWindow::close_until`]). Reports for a step that already closed are late
//! and ignored, which also makes a redelivered batch harmless. The window remembers which
//! one-hour chunks changed so the KV store rewrites only those (see `store.rs`).

use schemas::{Metrics, Profile, Target, METRIC_COUNT};

use crate::step::{step_end, OpenStep, StepValues};

/// Steps per KV chunk: one hour.
pub const CHUNK_STEPS: i64 = 12;

pub fn chunk_of(step: i64) -> i64 {
    step.div_euclid(CHUNK_STEPS)
}

/// What a report did to a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// Added to the open step; `closed` is the step it closed first, if it started a new one.
    Added { closed: Option<i64> },
    /// Its step already closed (or is older than the open one): ignored.
    Late,
}

#[derive(Debug, Clone)]
pub struct ServerWindow {
    pub name: String,
    pub profile: Profile,
    /// Index of the source that last reported the server (whose clock closes its steps).
    pub source: u16,
    ring: Box<[StepValues]>,
    last_closed: Option<i64>,
    open: Option<OpenStep>,
    observed: usize,
    dirty: Vec<i64>,
}

impl ServerWindow {
    pub fn new(name: String, profile: Profile, source: u16, capacity: usize) -> ServerWindow {
        let capacity = capacity.max(1);
        ServerWindow {
            name,
            profile,
            source,
            ring: vec![StepValues::EMPTY; capacity].into_boxed_slice(),
            last_closed: None,
            open: None,
            observed: 0,
            dirty: Vec::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.ring.len()
    }

    pub fn last_closed(&self) -> Option<i64> {
        self.last_closed
    }

    pub fn open(&self) -> Option<&OpenStep> {
        self.open.as_ref()
    }

    /// Closed steps in the window with at least one observed metric.
    pub fn observed_steps(&self) -> usize {
        self.observed
    }

    fn slot(&self, step: i64) -> usize {
        step.rem_euclid(self.ring.len() as i64) as usize
    }

    /// The closed step `step`, if it is inside the window.
    pub fn step(&self, step: i64) -> Option<&StepValues> {
        let last = self.last_closed?;
        (step <= last && step > last - self.ring.len() as i64).then(|| &self.ring[self.slot(step)])
    }

    /// The latest closed step's values.
    pub fn latest(&self) -> Option<&StepValues> {
        self.step(self.last_closed?)
    }

    /// Adds one report for `step`.
    pub fn add(&mut self, step: i64, metrics: &Metrics) -> AddOutcome {
        if self.last_closed.is_some_and(|last| step <= last) {
            return AddOutcome::Late;
        }
        let closed = match self.open {
            Some(o) if o.step == step => None,
            Some(o) if o.step > step => return AddOutcome::Late,
            Some(_) => self.close_open(),
            None => None,
        };
        let open = self.open.get_or_insert_with(|| OpenStep::new(step));
        open.add(metrics);
        self.mark_dirty(step);
        AddOutcome::Added { closed }
    }

    /// Closes the open step if a clock at `clock_ms` has passed its end.
    pub fn close_until(&mut self, clock_ms: i64) -> Option<i64> {
        match self.open {
            Some(o) if step_end(o.step) <= clock_ms => self.close_open(),
            _ => None,
        }
    }

    fn close_open(&mut self) -> Option<i64> {
        let open = self.open.take()?;
        self.write_closed(open.step, open.close());
        self.mark_dirty(open.step);
        Some(open.step)
    }

    /// Stores a closed step after `last_closed`, clearing the gap steps in between.
    fn write_closed(&mut self, step: i64, values: StepValues) {
        let cap = self.ring.len() as i64;
        let first = match self.last_closed {
            Some(last) if step - last < cap => last + 1,
            _ => step - cap + 1,
        };
        // The ring always holds exactly the window, so each slot overwritten here held a step
        // that now leaves it.
        for s in first..=step {
            let slot = self.slot(s);
            if std::mem::replace(&mut self.ring[slot], StepValues::EMPTY).is_observed() {
                self.observed -= 1;
            }
        }
        let slot = self.slot(step);
        self.ring[slot] = values;
        if values.is_observed() {
            self.observed += 1;
        }
        self.last_closed = Some(step);
    }

    /// Rebuild from the store: closed steps in ascending order, then the open step.
    pub fn restore_closed(&mut self, step: i64, values: StepValues) {
        if self.last_closed.is_none_or(|last| step > last) {
            self.write_closed(step, values);
        }
    }

    pub fn restore_open(&mut self, open: OpenStep) {
        if self.last_closed.is_none_or(|last| open.step > last) {
            self.open = Some(open);
        }
    }

    fn mark_dirty(&mut self, step: i64) {
        let c = chunk_of(step);
        if !self.dirty.contains(&c) {
            self.dirty.push(c);
        }
    }

    /// The chunks changed since the last call (the store rewrites these).
    pub fn take_dirty(&mut self, out: &mut Vec<i64>) {
        out.clear();
        out.append(&mut self.dirty);
    }

    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Writes the window as the model reads it: `T` steps ending at the last closed step,
    /// oldest first, 14 values and 14 mask flags each; unknown and padding steps are 0.
    /// `past` and `mask` hold `T * 14` values (`T` at most the capacity).
    pub fn fill_past(&self, past: &mut [f32], mask: &mut [f32]) {
        past.fill(0.0);
        mask.fill(0.0);
        let Some(last) = self.last_closed else { return };
        let t = (past.len().min(mask.len()) / METRIC_COUNT).min(self.ring.len()) as i64;
        for k in 0..t {
            let Some(v) = self.step(last - t + 1 + k).filter(|v| v.is_observed()) else { continue };
            let base = k as usize * METRIC_COUNT;
            for i in 0..METRIC_COUNT {
                if v.mask & (1 << i) != 0 {
                    past[base + i] = v.values[i];
                    mask[base + i] = 1.0;
                }
            }
        }
    }

    /// The metrics observed at least once in the window (bit `i` = `Metric::ALL[i]`).
    pub fn observed_mask(&self) -> u16 {
        if self.last_closed.is_none() {
            return 0;
        }
        self.ring.iter().fold(0, |m, v| m | v.mask)
    }

    /// How many of the last `n` closed steps lie at or after the oldest observed one among
    /// them (charts start at the first report, not at the window's empty start).
    pub fn known_span(&self, n: usize) -> usize {
        let Some(last) = self.last_closed else { return 0 };
        let n = n.min(self.ring.len()) as i64;
        (last - n + 1..=last)
            .find(|s| self.step(*s).is_some_and(StepValues::is_observed))
            .map_or(0, |first| (last - first + 1) as usize)
    }

    /// Every step the window holds of `target`, oldest first and the last closed step last,
    /// NaN where it was not reported (the statistical methods' input, `methods.rs`).
    pub fn history(&self, target: Target, out: &mut Vec<f32>) {
        out.clear();
        let Some(last) = self.last_closed else { return };
        let n = self.ring.len() as i64;
        let source = target.source_metric().index();
        out.extend((last - n + 1..=last).map(|s| self.ring[self.slot(s)].get(source).map_or(f32::NAN, |v| target.from_source(v))));
    }

    /// The last `n` closed steps' values of `target`, oldest first (`None` = not reported).
    pub fn recent(&self, target: Target, n: usize, out: &mut Vec<Option<f32>>) {
        out.clear();
        let Some(last) = self.last_closed else { return };
        let n = n.min(self.ring.len()) as i64;
        let source = target.source_metric().index();
        for s in last - n + 1..=last {
            out.push(self.step(s).and_then(|v| v.get(source)).map(|v| target.from_source(v)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(idle: f32) -> Metrics {
        Metrics { cpu_idle_pct: Some(idle), ..Default::default() }
    }

    fn win(cap: usize) -> ServerWindow {
        ServerWindow::new("ppdb001".into(), Profile::Database, 0, cap)
    }

    #[test]
    fn a_later_report_or_the_clock_closes_the_step() {
        let mut w = win(4);
        assert_eq!(w.add(10, &m(40.0)), AddOutcome::Added { closed: None });
        assert_eq!(w.add(10, &m(60.0)), AddOutcome::Added { closed: None });
        assert_eq!(w.add(11, &m(10.0)), AddOutcome::Added { closed: Some(10) });
        assert_eq!(w.step(10).unwrap().to_metrics().cpu_idle_pct, Some(50.0));
        assert_eq!(w.close_until(step_end(11) - 1), None, "clock before the end keeps it open");
        assert_eq!(w.close_until(step_end(11)), Some(11));
        assert_eq!(w.add(11, &m(1.0)), AddOutcome::Late);
        assert_eq!(w.add(5, &m(1.0)), AddOutcome::Late);
        assert_eq!(w.observed_steps(), 2);
    }

    #[test]
    fn ring_keeps_the_last_capacity_steps_and_counts_observed() {
        let mut w = win(4);
        for s in 0..10 {
            w.add(s, &m(s as f32));
            w.close_until(step_end(s));
        }
        assert_eq!(w.observed_steps(), 4);
        assert!(w.step(5).is_none());
        assert_eq!(w.step(6).unwrap().to_metrics().cpu_idle_pct, Some(6.0));
        // A gap of two steps leaves two unknown steps in the window.
        w.add(12, &m(12.0));
        w.close_until(step_end(12));
        assert_eq!(w.observed_steps(), 2, "steps 8 and 9 left, 10-11 unknown, 12 observed -> 9, 12");
        assert!(!w.step(11).unwrap().is_observed());
        // A gap longer than the window empties it.
        w.add(40, &m(1.0));
        w.close_until(step_end(40));
        assert_eq!(w.observed_steps(), 1);
    }

    #[test]
    fn fill_past_left_pads_short_histories() {
        let mut w = win(4);
        for s in [100, 101] {
            w.add(s, &m(30.0));
            w.close_until(step_end(s));
        }
        let (mut past, mut mask) = (vec![9.0; 4 * METRIC_COUNT], vec![9.0; 4 * METRIC_COUNT]);
        w.fill_past(&mut past, &mut mask);
        let idle = 3; // cpu_idle_pct
        let col = |v: &[f32]| (0..4).map(|k| v[k * METRIC_COUNT + idle]).collect::<Vec<_>>();
        assert_eq!(col(&past), [0.0, 0.0, 30.0, 30.0]);
        assert_eq!(col(&mask), [0.0, 0.0, 1.0, 1.0]);
        assert_eq!(mask.iter().sum::<f32>(), 2.0, "only idle was observed");
        let mut recent = Vec::new();
        w.recent(Target::Cpu, 3, &mut recent);
        assert_eq!(recent, [None, Some(70.0), Some(70.0)]);
        assert_eq!(w.known_span(3), 2);
        assert_eq!(w.observed_mask(), 1 << 3);
        assert_eq!(w.known_span(10), 2);
    }

    #[test]
    fn dirty_chunks_name_what_changed() {
        let mut w = win(24);
        w.add(11, &m(1.0));
        w.add(12, &m(1.0)); // closes 11 (chunk 0), opens 12 (chunk 1)
        let mut d = Vec::new();
        w.take_dirty(&mut d);
        d.sort();
        assert_eq!(d, [0, 1]);
        w.take_dirty(&mut d);
        assert!(d.is_empty());
    }

    #[test]
    fn restore_rebuilds_the_same_window() {
        let mut a = win(6);
        for s in 0..9 {
            a.add(s, &m(s as f32));
        }
        let mut b = win(6);
        for s in 0..=a.last_closed().unwrap() {
            if let Some(v) = a.step(s) {
                b.restore_closed(s, *v);
            }
        }
        b.restore_open(*a.open().unwrap());
        assert_eq!(b.observed_steps(), a.observed_steps());
        assert_eq!(b.last_closed(), a.last_closed());
        assert_eq!(b.open(), a.open());
    }
}
