//! Five-minute steps: which step a timestamp falls in, and the accumulator that averages the
//! several reports a real feed sends within one step (every 5 s, 15 s or 1 min) into the one
//! value per metric the model reads. Only observed values count; the observed mask is kept.
//! [`Seen`] remembers which report times an open step has counted, so a repeat counts once.
//! `tail.rs` keeps steps as the window's long tier does (`window.rs`).

use schemas::{Metric, Metrics, METRIC_COUNT, STEP_MS};

/// Index of the step containing `ts_ms` (floor division, so pre-1970 times stay ordered).
pub fn step_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(STEP_MS)
}

/// Start of step `step` in Unix ms.
pub fn step_start(step: i64) -> i64 {
    step.saturating_mul(STEP_MS)
}

/// End of step `step` (exclusive) in Unix ms: the step is complete once a clock reaches it.
pub fn step_end(step: i64) -> i64 {
    step_start(step.saturating_add(1))
}

/// One closed step: the averaged value of each metric and a bit per metric that was observed
/// (bit `i` = `Metric::ALL[i]`). Unobserved values are 0 and mean nothing.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepValues {
    pub mask: u16,
    pub values: [f32; METRIC_COUNT],
}

impl StepValues {
    pub const EMPTY: StepValues = StepValues { mask: 0, values: [0.0; METRIC_COUNT] };

    pub fn is_observed(&self) -> bool {
        self.mask != 0
    }

    pub fn get(&self, i: usize) -> Option<f32> {
        (self.mask & (1 << i) != 0).then(|| self.values[i])
    }

    pub fn to_metrics(&self) -> Metrics {
        let mut m = Metrics::default();
        for (i, metric) in Metric::ALL.iter().enumerate() {
            m.set(*metric, self.get(i));
        }
        m
    }
}

/// The open (not yet closed) step of one server: sums and counts per metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenStep {
    pub step: i64,
    pub sum: [f64; METRIC_COUNT],
    pub count: [u16; METRIC_COUNT],
}

impl OpenStep {
    pub fn new(step: i64) -> OpenStep {
        OpenStep { step, sum: [0.0; METRIC_COUNT], count: [0; METRIC_COUNT] }
    }

    /// Adds one report; unreported metrics leave their sums untouched.
    pub fn add(&mut self, metrics: &Metrics) {
        self.add_only(metrics, u16::MAX);
    }

    /// Adds the metrics of one report whose bit is set in `mask` (bit `i` = `Metric::ALL[i]`).
    pub fn add_only(&mut self, metrics: &Metrics, mask: u16) {
        for (i, metric) in Metric::ALL.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0) {
            if let Some(v) = metrics.get(*metric) {
                if self.count[i] < u16::MAX {
                    self.sum[i] += f64::from(v);
                    self.count[i] += 1;
                }
            }
        }
    }

    pub fn mask(&self) -> u16 {
        self.count.iter().enumerate().fold(0u16, |m, (i, c)| if *c > 0 { m | (1 << i) } else { m })
    }

    /// The averages; a metric never reported stays unobserved.
    pub fn close(&self) -> StepValues {
        let mut out = StepValues::EMPTY;
        for i in 0..METRIC_COUNT {
            if self.count[i] > 0 {
                out.values[i] = (self.sum[i] / f64::from(self.count[i])) as f32;
                out.mask |= 1 << i;
            }
        }
        out
    }
}

/// The metrics a report carries, as a mask (bit `i` = `Metric::ALL[i]`).
pub fn mask_of(metrics: &Metrics) -> u16 {
    Metric::ALL.iter().enumerate().fold(0, |m, (i, metric)| if metrics.get(*metric).is_some() { m | (1 << i) } else { m })
}

/// Distinct report times an open step remembers (one report every 0.3 s); reports at further
/// times still count but are not checked for repeats, so a flood cannot grow memory.
pub const MAX_SEEN: usize = 1024;

/// Which metrics of which report times the open step has counted, so a repeated record (same
/// server, `ts_ms` and metric: a batch re-sent after a lost ack, a redelivery after a crash)
/// counts once. Entries are `(ms since the step's start, mask of the metrics counted)`, sorted
/// by time. Per metric, not per record: a source may send one metric of a time now and
/// another of the same time later (CloudWatch-style delays).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen(Vec<(u32, u16)>);

impl Seen {
    /// From stored entries (any order; repeated times are merged, at most [`MAX_SEEN`] kept).
    pub fn from_entries(mut entries: Vec<(u32, u16)>) -> Seen {
        entries.sort_unstable_by_key(|e| e.0);
        entries.dedup_by(|b, a| {
            let same = a.0 == b.0;
            if same {
                a.1 |= b.1;
            }
            same
        });
        entries.truncate(MAX_SEEN);
        Seen(entries)
    }

    /// Notes a report at `offset_ms` carrying `mask`; returns the bits not counted before at
    /// that time (the ones to add now).
    pub fn admit(&mut self, offset_ms: u32, mask: u16) -> u16 {
        match self.0.binary_search_by_key(&offset_ms, |e| e.0) {
            Ok(i) => {
                let new = mask & !self.0[i].1;
                self.0[i].1 |= new;
                new
            }
            Err(i) => {
                if self.0.len() < MAX_SEEN {
                    self.0.insert(i, (offset_ms, mask));
                }
                mask
            }
        }
    }

    pub fn entries(&self) -> &[(u32, u16)] {
        &self.0
    }

    /// Forgets every time (the step closed), keeping the allocation.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_by_timestamp() {
        assert_eq!(step_of(0), 0);
        assert_eq!(step_of(STEP_MS - 1), 0);
        assert_eq!(step_of(STEP_MS), 1);
        assert_eq!(step_of(-1), -1);
        assert_eq!(step_end(3), 4 * STEP_MS);
        assert_eq!(step_start(step_of(1_700_000_123_456)), 1_700_000_123_456 - 1_700_000_123_456 % STEP_MS);
    }

    #[test]
    fn averages_observed_values_only() {
        let mut o = OpenStep::new(10);
        o.add(&Metrics { cpu_idle_pct: Some(40.0), mem_used_pct: Some(50.0), ..Default::default() });
        o.add(&Metrics { cpu_idle_pct: Some(60.0), ..Default::default() });
        o.add(&Metrics::default());
        let s = o.close();
        assert_eq!(s.to_metrics().cpu_idle_pct, Some(50.0));
        assert_eq!(s.to_metrics().mem_used_pct, Some(50.0), "one report of mem is its average");
        assert_eq!(s.to_metrics().net_in_mb_s, None, "never reported stays unknown, not zero");
        assert_eq!(s.mask.count_ones(), 2);
        assert_eq!(o.mask(), s.mask);
    }

    #[test]
    fn a_repeated_report_counts_once_per_metric() {
        let mut seen = Seen::default();
        let (cpu, mem) = (1 << 3, 1 << 5);
        assert_eq!(seen.admit(0, cpu), cpu);
        assert_eq!(seen.admit(0, cpu), 0, "the same time and metric again");
        assert_eq!(seen.admit(0, cpu | mem), mem, "a metric of that time not yet counted");
        assert_eq!(seen.admit(150_000, cpu), cpu, "another time is another report");
        assert_eq!(seen.entries(), [(0, cpu | mem), (150_000, cpu)]);
        let back = Seen::from_entries(vec![(150_000, cpu), (0, cpu), (0, mem)]);
        assert_eq!(back, seen);
    }

    #[test]
    fn seen_is_bounded() {
        let mut seen = Seen::default();
        for t in 0..(MAX_SEEN as u32 + 10) {
            assert_eq!(seen.admit(t, 1), 1);
        }
        assert_eq!(seen.entries().len(), MAX_SEEN);
        assert_eq!(seen.admit(MAX_SEEN as u32 + 20, 1), 1, "past the bound reports still count");
    }

    #[test]
    fn masks_and_partial_adds() {
        let m = Metrics { cpu_idle_pct: Some(40.0), mem_used_pct: Some(50.0), ..Default::default() };
        assert_eq!(mask_of(&m), (1 << 3) | (1 << 5));
        let mut o = OpenStep::new(1);
        o.add_only(&m, 1 << 5);
        assert_eq!(o.close().to_metrics(), Metrics { mem_used_pct: Some(50.0), ..Default::default() });
    }
}
