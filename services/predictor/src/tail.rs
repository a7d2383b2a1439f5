//! The window's long tier (`window.rs`): for every step the window holds, each target's value
//! as a half float ([`crate::domain::half`]) and which of the targets' source metrics were
//! reported. The statistical methods read a day and the horizon of every target
//! (`methods::HISTORY_STEPS`, 384 steps), nothing else, and this is most of a server's window
//! (issue 14: 100,000 servers in one predictor): 18 bytes a step instead of 36 in `f32`.
//!
//! Target-major (one run of slots per target) so that one target's history is two contiguous
//! runs converted in bulk ([`half::slice::HalfFloatSliceExt::convert_to_f32_slice`], F16C
//! where the CPU has it) and nothing else: `bench_engine`'s forecasts of 1,000 servers took
//! 127-129 ms against 123-131 ms with the tail in `f32` (three runs each, alternated); read
//! value by value, or with a pass over the masks, 131-134 ms. The target's
//! value rather than its source's is kept, because an idle VM's CPU of 0.4 % stored as idle
//! 99.6 would keep 0.06 points of it (15 %), as CPU 0.05 %. Limits of the form: a value past
//! 65,504 is kept as 65,504 (a NIC at more than 524 Gbit/s in MB/s), and one below 6.1e-5
//! (61 bytes/s in MB/s) within 3e-8 rather than 0.05 %. The newest `encoder_steps` are read
//! from the window's full tier, in `f32`, instead (`ServerWindow::history`).

use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use schemas::{Target, METRIC_COUNT, TARGET_COUNT};

use crate::domain::half::{pack, unpack, NAN};
use crate::step::StepValues;

/// A slot's bit for "the step had some metric" (`StepValues` uses bits 0..14).
const ANY: u16 = 1 << 15;

/// Each target's source metric's index in `Metric::ALL`, in `Target::ALL` order.
pub(crate) fn sources() -> [usize; TARGET_COUNT] {
    static SOURCES: std::sync::LazyLock<[usize; TARGET_COUNT]> =
        std::sync::LazyLock::new(|| std::array::from_fn(|k| Target::ALL[k].source_metric().index()));
    *SOURCES
}

/// The `StepValues` bits of the targets' source metrics.
pub(crate) fn source_bits() -> u16 {
    sources().iter().fold(0, |m, i| m | (1 << i))
}

/// `len` slots (slot = step mod `len`, kept by the window), each the targets' values of one step.
#[derive(Debug, Clone)]
pub(crate) struct Tail {
    /// Per slot: the `StepValues` bits of the source metrics it has, plus [`ANY`].
    masks: Box<[u16]>,
    /// Target `k`'s value at slot `s` is at `k * len + s`; NaN exactly where its source was
    /// not reported ([`Tail::history`] relies on it).
    values: Box<[u16]>,
}

impl Tail {
    pub(crate) fn new(len: usize) -> Tail {
        Tail { masks: vec![0; len].into_boxed_slice(), values: vec![NAN; len * TARGET_COUNT].into_boxed_slice() }
    }

    pub(crate) fn len(&self) -> usize {
        self.masks.len()
    }

    pub(crate) fn is_observed(&self, slot: usize) -> bool {
        self.masks[slot] & ANY != 0
    }

    /// The `StepValues` bits of the source metrics that every slot together has.
    pub(crate) fn source_mask(&self) -> u16 {
        self.masks.iter().fold(0, |m, v| m | v) & !ANY
    }

    /// Stores step `v` (its targets' sources) at `slot`.
    pub(crate) fn set(&mut self, slot: usize, v: &StepValues) {
        let len = self.len();
        self.masks[slot] = (v.mask & source_bits()) | if v.is_observed() { ANY } else { 0 };
        for (k, i) in sources().into_iter().enumerate() {
            let value = if v.mask & (1 << i) != 0 { Target::ALL[k].from_source(v.values[i]) } else { f32::NAN };
            self.values[k * len + slot] = pack(value);
        }
    }

    /// Empties `slot`; returns whether it held an observed step.
    pub(crate) fn clear(&mut self, slot: usize) -> bool {
        let (was, len) = (self.is_observed(slot), self.len());
        self.masks[slot] = 0;
        for k in 0..TARGET_COUNT {
            self.values[k * len + slot] = NAN;
        }
        was
    }

    /// `slot` as a step: the targets' sources it has (CPU as idle again: `from_source` is its
    /// own inverse), nothing else.
    pub(crate) fn step(&self, slot: usize) -> StepValues {
        let mut v = StepValues { mask: self.masks[slot] & !ANY, values: [0.0; METRIC_COUNT] };
        for (k, i) in sources().into_iter().enumerate() {
            if v.mask & (1 << i) != 0 {
                v.values[i] = Target::ALL[k].from_source(unpack(self.values[k * self.len() + slot]));
            }
        }
        v
    }

    /// Target `k`'s value at `slot`, `None` when its source was not reported.
    pub(crate) fn target(&self, slot: usize, k: usize) -> Option<f32> {
        (self.masks[slot] & (1 << sources()[k]) != 0).then(|| unpack(self.values[k * self.len() + slot]))
    }

    /// Target `k`'s every slot into `out` (`len` values), from `oldest` on and wrapping: the
    /// window's history, oldest first; NaN where its source was not reported.
    pub(crate) fn history(&self, k: usize, oldest: usize, out: &mut Vec<f32>) {
        let len = self.len();
        out.clear();
        out.resize(len, f32::NAN);
        let run = self.values[k * len..(k + 1) * len].reinterpret_cast::<half::f16>();
        let (newer, older) = run.split_at(oldest);
        let (a, b) = out.split_at_mut(len - oldest);
        // No mask pass: [`Tail::set`] stores NaN exactly where the source was not reported
        // (ingest never admits a non-finite value), so the values alone say it.
        older.convert_to_f32_slice(a);
        newer.convert_to_f32_slice(b);
    }
}
