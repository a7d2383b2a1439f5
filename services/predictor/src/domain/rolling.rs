//! The fleet's rolling window of scored points: per 5-minute step and target, the sums the
//! live accuracy is computed from (`accuracy.rs` scores the points). Small and fleet-wide, so
//! it is what survives a restart (`Domain::save`); one per tracker (the published forecast
//! and each method).
//!
//! q-risk over the window: `2·Σ pinball / Σ |actual|` (the TFT paper's definition, as in
//! `schemas/README.md` and the model card), and coverage: the share of actuals inside
//! [P10, P90].

use serde::{Deserialize, Serialize};

use schemas::{Target, TargetAccuracy, TARGET_COUNT};

/// Below this Σ|actual| per sample the q-risk denominator is floored (an idle swap target is
/// all zeros; dividing by it would make any error infinite).
const ABS_FLOOR: f64 = 0.01;

/// Sums of one target's scored points over one step (of one server, a chunk of them or the
/// fleet): points, points inside [P10, P90], Σ pinball at P50 and at P90, Σ |actual|.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Sums {
    pub n: u32,
    pub covered: u32,
    pub pin50: f64,
    pub pin90: f64,
    pub abs: f64,
}

impl Sums {
    pub fn add(&mut self, o: &Sums) {
        self.n += o.n;
        self.covered += o.covered;
        self.pin50 += o.pin50;
        self.pin90 += o.pin90;
        self.abs += o.abs;
    }
}

/// The rolling window's per-step sums (fleet-wide, small; serialisable on its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Bucket `i` holds step `steps[i]` (`i64::MIN` = empty); index = step mod window.
    steps: Vec<i64>,
    sums: Vec<[Sums; TARGET_COUNT]>,
    latest: i64,
}

impl Scores {
    /// An empty window of `window` steps (at least 1).
    pub fn new(window: usize) -> Self {
        let window = window.max(1);
        Scores { steps: vec![i64::MIN; window], sums: vec![[Sums::default(); TARGET_COUNT]; window], latest: i64::MIN }
    }

    /// The bucket of `step`, cleared if it held an older step; `None` if `step` already left
    /// the window.
    fn bucket(&mut self, step: i64) -> Option<&mut [Sums; TARGET_COUNT]> {
        let w = self.steps.len() as i64;
        if w == 0 || self.sums.len() != self.steps.len() || (self.latest != i64::MIN && step <= self.latest - w) {
            return None;
        }
        self.latest = self.latest.max(step);
        let i = step.rem_euclid(w) as usize;
        if self.steps[i] != step {
            self.steps[i] = step;
            self.sums[i] = [Sums::default(); TARGET_COUNT];
        }
        Some(&mut self.sums[i])
    }

    /// Approximate heap bytes held.
    pub fn approx_bytes(&self) -> usize {
        self.steps.len() * (8 + std::mem::size_of::<[Sums; TARGET_COUNT]>())
    }

    /// Adds one step's scored points (`add`, per target) to the window; points of a step
    /// that already left it are dropped.
    pub fn add(&mut self, step: i64, add: &[Sums; TARGET_COUNT]) {
        if let Some(bucket) = self.bucket(step) {
            for (b, a) in bucket.iter_mut().zip(add) {
                b.add(a);
            }
        }
    }

    /// Rolling accuracy per target with at least one scored point, in [`Target::ALL`] order.
    pub fn report(&self) -> Vec<TargetAccuracy> {
        let w = self.steps.len() as i64;
        let mut total = [Sums::default(); TARGET_COUNT];
        for (step, sums) in self.steps.iter().zip(&self.sums) {
            if *step != i64::MIN && *step > self.latest - w {
                for (t, s) in total.iter_mut().zip(sums) {
                    t.add(s);
                }
            }
        }
        Target::ALL
            .iter()
            .zip(&total)
            .filter(|(_, s)| s.n > 0)
            .map(|(&target, s)| {
                let denom = s.abs.max(ABS_FLOOR * f64::from(s.n));
                TargetAccuracy {
                    target,
                    samples: u64::from(s.n),
                    qrisk_p50: (2.0 * s.pin50 / denom) as f32,
                    qrisk_p90: (2.0 * s.pin90 / denom) as f32,
                    coverage: s.covered as f32 / s.n as f32,
                    methods: Vec::new(),
                }
            })
            .collect()
    }
}
