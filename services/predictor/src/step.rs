//! Five-minute steps: which step a timestamp falls in, and the accumulator that averages the
//! several reports a real feed sends within one step (every 5 s, 15 s or 1 min) into the one
//! value per metric the model reads. Only observed values count; the observed mask is kept.

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
        for (i, metric) in Metric::ALL.iter().enumerate() {
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
}
