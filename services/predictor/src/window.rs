//! One server's window: its last closed steps in a ring indexed by step number (at least the
//! model's `encoder_steps`, and the day-plus-horizon the statistical methods read:
//! `methods::HISTORY_STEPS`), plus the one open step still collecting reports.
//!
//! A step closes when a report for a later step arrives, or when the source's clock passes
//! its end ([`ServerWindow::close_until`]). Real sources are late (CloudWatch sends a metric
//! minutes after the fact) and repeat themselves (a batch re-sent after a lost ack, a
//! redelivery), so a report is placed by its own step ([`ServerWindow::add`]): the open step
//! averages it in unless it repeats a counted time and metric ([`Seen`]); a closed step inside
//! the window takes the metrics it lacks (a closed step's values are final otherwise, which
//! also makes a redelivered batch harmless); a step older than the window is refused. The
//! window remembers which one-hour chunks changed so the KV store rewrites only those
//! (see `store.rs`), late fills included.
//!
//! Two tiers, because the window is most of a server's memory (issue 14: 100,000 servers in
//! one predictor): every metric of the newest `full` steps (what the model reads, its
//! `encoder_steps`), and only the targets of every step the window holds, as half floats
//! (`tail.rs`; the statistical methods read a day and the horizon of targets, nothing else).
//! 384 steps at 48 full: 9.8 KB a server, against 23 KB with every metric of every step and
//! 16.7 KB with the tail in `f32`. A step older than the full tier reads back with its
//! targets' sources only ([`ServerWindow::step`]).

use schemas::{Metric, Metrics, Profile, Target, METRIC_COUNT};

use crate::accuracy::target_index;
use crate::step::{mask_of, step_end, step_of, step_start, OpenStep, Seen, StepValues};
use crate::tail::{source_bits, Tail};

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
    /// Its step had closed, or lies before the open one, but is still inside the window: it
    /// filled the metrics that step lacked (the next forecast reads them).
    Filled,
    /// Nothing in it was new: every metric was already counted at its `ts_ms` in the open
    /// step, or its closed step already has every metric it carries.
    Duplicate,
    /// Its step is older than the window; `oldest` is the oldest step still taken.
    TooLate { oldest: i64 },
}

#[derive(Debug, Clone)]
pub struct ServerWindow {
    pub name: String,
    pub profile: Profile,
    /// Index of the source that last reported the server (whose clock closes its steps).
    pub source: u16,
    /// Every metric of the newest steps (slot = step mod its length).
    ring: Box<[StepValues]>,
    /// The targets' sources of every step of the window (slot = step mod its length, the capacity).
    tail: Tail,
    last_closed: Option<i64>,
    open: Option<OpenStep>,
    /// Report times the open step has counted (empty while there is none).
    seen: Seen,
    observed: usize,
    dirty: Vec<i64>,
}

impl ServerWindow {
    /// A window of `capacity` steps with every metric kept for all of them.
    pub fn new(name: String, profile: Profile, source: u16, capacity: usize) -> ServerWindow {
        Self::tiered(name, profile, source, capacity, capacity)
    }

    /// A window of `capacity` steps keeping every metric for the newest `full` of them (at
    /// most `capacity`, at least 1) and the targets' sources for all.
    pub fn tiered(name: String, profile: Profile, source: u16, capacity: usize, full: usize) -> ServerWindow {
        let capacity = capacity.max(1);
        ServerWindow {
            name,
            profile,
            source,
            ring: vec![StepValues::EMPTY; full.clamp(1, capacity)].into_boxed_slice(),
            tail: Tail::new(capacity),
            last_closed: None,
            open: None,
            seen: Seen::default(),
            observed: 0,
            dirty: Vec::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.tail.len()
    }

    pub fn last_closed(&self) -> Option<i64> {
        self.last_closed
    }

    pub fn open(&self) -> Option<&OpenStep> {
        self.open.as_ref()
    }

    /// The report times the open step has counted (stored with it, so a redelivery after a
    /// restart still counts once).
    pub fn seen(&self) -> &Seen {
        &self.seen
    }

    /// Closed steps in the window with at least one observed metric.
    pub fn observed_steps(&self) -> usize {
        self.observed
    }

    fn slot(&self, step: i64) -> usize {
        step.rem_euclid(self.ring.len() as i64) as usize
    }

    fn tail_slot(&self, step: i64) -> usize {
        step.rem_euclid(self.tail.len() as i64) as usize
    }

    /// Whether closed step `step` is in the full tier (every metric kept).
    fn in_full(&self, step: i64) -> bool {
        self.last_closed.is_some_and(|last| step <= last && step > last - self.ring.len() as i64)
    }

    /// The closed step `step`, if it is inside the window: every metric in the full tier,
    /// the targets' sources only before it.
    pub fn step(&self, step: i64) -> Option<StepValues> {
        let last = self.last_closed?;
        if self.in_full(step) {
            return Some(self.ring[self.slot(step)]);
        }
        (step <= last && step > last - self.tail.len() as i64).then(|| self.tail.step(self.tail_slot(step)))
    }

    /// The latest closed step's values.
    pub fn latest(&self) -> Option<&StepValues> {
        let last = self.last_closed?;
        Some(&self.ring[self.slot(last)])
    }

    /// Adds one report measured at `ts_ms` (Unix ms) to the step it falls in; see
    /// [`AddOutcome`] for what can happen to it.
    pub fn add(&mut self, ts_ms: i64, metrics: &Metrics) -> AddOutcome {
        let step = step_of(ts_ms);
        let newest = self.open.map(|o| o.step).max(self.last_closed);
        if let Some(newest) = newest {
            let oldest = newest - self.tail.len() as i64 + 1;
            if step < oldest {
                return AddOutcome::TooLate { oldest };
            }
        }
        if self.last_closed.is_some_and(|last| step <= last) {
            return self.fill_closed(step, metrics);
        }
        let closed = match self.open {
            Some(o) if o.step == step => None,
            Some(o) if o.step > step => return self.fill_gap(step, metrics),
            Some(_) => self.close_open(),
            None => None,
        };
        let mask = mask_of(metrics);
        // In 0..STEP_MS: `step` is the step of `ts_ms`.
        let new = self.seen.admit((ts_ms - step_start(step)) as u32, mask);
        if mask != 0 && new == 0 {
            return AddOutcome::Duplicate;
        }
        let open = self.open.get_or_insert_with(|| OpenStep::new(step));
        open.add_only(metrics, new);
        self.mark_dirty(step);
        AddOutcome::Added { closed }
    }

    /// A late report for closed step `step` (inside the window): sets the metrics it lacks
    /// (before the full tier, the targets' sources it lacks).
    fn fill_closed(&mut self, step: i64, metrics: &Metrics) -> AddOutcome {
        let full = self.in_full(step);
        let (slot, tail_slot) = (self.slot(step), self.tail_slot(step));
        let mut v = if full { self.ring[slot] } else { self.tail.step(tail_slot) };
        let kept = if full { u16::MAX } else { source_bits() };
        let new = mask_of(metrics) & kept & !v.mask;
        if new == 0 {
            return AddOutcome::Duplicate;
        }
        let was_observed = self.tail.is_observed(tail_slot);
        for (i, metric) in Metric::ALL.iter().enumerate().filter(|(i, _)| new & (1 << i) != 0) {
            v.values[i] = metrics.get(*metric).unwrap_or_default();
        }
        v.mask |= new;
        if full {
            self.ring[slot] = v;
        }
        self.tail.set(tail_slot, &v);
        if !was_observed {
            self.observed += 1;
        }
        self.mark_dirty(step);
        AddOutcome::Filled
    }

    /// A late report for a step after the last closed one but before the open one: no report
    /// came for it in time, so it closes with this one's values.
    fn fill_gap(&mut self, step: i64, metrics: &Metrics) -> AddOutcome {
        if mask_of(metrics) == 0 {
            return AddOutcome::Duplicate;
        }
        let mut values = OpenStep::new(step);
        values.add(metrics);
        self.write_closed(step, values.close());
        self.mark_dirty(step);
        AddOutcome::Filled
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
        self.seen.clear();
        self.write_closed(open.step, open.close());
        self.mark_dirty(open.step);
        Some(open.step)
    }

    /// Stores a closed step after `last_closed`, clearing the gap steps in between.
    fn write_closed(&mut self, step: i64, values: StepValues) {
        let cap = self.tail.len() as i64;
        let first = match self.last_closed {
            Some(last) if step - last < cap => last + 1,
            _ => step - cap + 1,
        };
        // The tail always holds exactly the window, so each slot overwritten here held a step
        // that now leaves it; the full tier's slots are overwritten alike (or left to steps
        // that are no longer in it, never read).
        for s in first..=step {
            let slot = self.tail_slot(s);
            if self.tail.clear(slot) {
                self.observed -= 1;
            }
        }
        for s in first.max(step - self.ring.len() as i64 + 1)..=step {
            let slot = self.slot(s);
            self.ring[slot] = StepValues::EMPTY;
        }
        let (slot, tail_slot) = (self.slot(step), self.tail_slot(step));
        self.ring[slot] = values;
        self.tail.set(tail_slot, &values);
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

    pub fn restore_open(&mut self, open: OpenStep, seen: Seen) {
        if self.last_closed.is_none_or(|last| open.step > last) {
            self.open = Some(open);
            self.seen = seen;
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

    /// The metrics observed at least once in the window (bit `i` = `Metric::ALL[i]`): the
    /// targets' sources over the whole window, the other metrics over the full tier.
    pub fn observed_mask(&self) -> u16 {
        if self.last_closed.is_none() {
            return 0;
        }
        let full = self.ring.iter().fold(0, |m, v| m | v.mask);
        full | self.tail.source_mask()
    }

    /// How many of the last `n` closed steps lie at or after the oldest observed one among
    /// them (charts start at the first report, not at the window's empty start).
    pub fn known_span(&self, n: usize) -> usize {
        let Some(last) = self.last_closed else { return 0 };
        let n = n.min(self.tail.len()) as i64;
        (last - n + 1..=last).find(|s| self.tail.is_observed(self.tail_slot(*s))).map_or(0, |first| (last - first + 1) as usize)
    }

    /// Every step the window holds of `target`, oldest first and the last closed step last,
    /// NaN where it was not reported (the statistical methods' input, `methods.rs`): the full
    /// tier's steps as reported, older ones as the tail's half floats (within 0.05 %).
    pub fn history(&self, target: Target, out: &mut Vec<f32>) {
        out.clear();
        let Some(last) = self.last_closed else { return };
        // Steps last - len + 1 ..= last fill the tail from the slot after the latest's, wrapping.
        self.tail.history(target_index(target), self.tail_slot(last + 1), out);
        // The full tier's steps as reported (`f32`), over their half floats: the last value,
        // the level and the recent changes set every method's P50 and band edges, and an
        // actual equal to an edge (a VM idling at one value) is then inside the band, as it
        // was before the tail was half floats (with them the Bitbrains VMs' coverage fell a point).
        let n = self.ring.len().min(out.len());
        let (base, source) = (out.len() - n, target.source_metric().index());
        for (j, s) in (last - n as i64 + 1..=last).enumerate() {
            if let Some(v) = self.ring[self.slot(s)].get(source) {
                out[base + j] = target.from_source(v);
            }
        }
    }

    /// The last `n` closed steps' values of `target`, oldest first (`None` = not reported).
    pub fn recent(&self, target: Target, n: usize, out: &mut Vec<Option<f32>>) {
        out.clear();
        let Some(last) = self.last_closed else { return };
        let n = n.min(self.tail.len()) as i64;
        let (k, source) = (target_index(target), target.source_metric().index());
        for s in last - n + 1..=last {
            out.push(if self.in_full(s) {
                self.ring[self.slot(s)].get(source).map(|v| target.from_source(v))
            } else {
                self.tail.target(self.tail_slot(s), k)
            });
        }
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
