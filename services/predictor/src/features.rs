//! Model inputs from windows, written in place into the reused input buffers
//! (`models/CONTRACT.md`): `past` and `past_mask` from the window, `time_feat` for the `T`
//! past and `H` future steps, `profile` as the profile's index.
//!
//! Calendar features depend only on the last closed step, which most servers share in a tick,
//! so they are computed once per distinct last step and copied.

use std::f64::consts::TAU;

use crate::model::{Inputs, Sizes, TIME_FEATURES};
use crate::step::step_start;
use crate::window::ServerWindow;

const DAY_MS: i64 = 86_400_000;

/// `sin/cos(2π·tod), sin/cos(2π·dow)` of the step starting at `ts_ms` (UTC, Monday = 0).
pub fn calendar(ts_ms: i64) -> [f32; TIME_FEATURES] {
    let tod = ts_ms.rem_euclid(DAY_MS) as f64 / DAY_MS as f64;
    let dow = (ts_ms.div_euclid(DAY_MS) + 3).rem_euclid(7) as f64 / 7.0;
    [(TAU * tod).sin() as f32, (TAU * tod).cos() as f32, (TAU * dow).sin() as f32, (TAU * dow).cos() as f32]
}

/// Time features of the `t` past steps ending at `last` and the `h` steps after it.
pub fn time_features(last: i64, t: usize, h: usize, out: &mut [f32]) {
    let first = last - t as i64 + 1;
    for (k, dst) in out.chunks_exact_mut(TIME_FEATURES).take(t + h).enumerate() {
        dst.copy_from_slice(&calendar(step_start(first + k as i64)));
    }
}

/// Fills rows of the input buffers, caching the calendar of the last step seen.
pub struct FeatureBuilder {
    t: usize,
    h: usize,
    sizes: Sizes,
    cached_last: Option<i64>,
    cached: Vec<f32>,
}

impl FeatureBuilder {
    pub fn new(t: usize, h: usize, sizes: Sizes) -> FeatureBuilder {
        FeatureBuilder { t, h, sizes, cached_last: None, cached: vec![0.0; sizes.time] }
    }

    /// Writes `w` as row `row`; `w` must have a closed step.
    pub fn fill(&mut self, inputs: &mut Inputs, row: usize, w: &ServerWindow) {
        let Some(last) = w.last_closed() else { return };
        let s = self.sizes;
        let past = row * s.past..(row + 1) * s.past;
        w.fill_past(&mut inputs.past[past.clone()], &mut inputs.mask[past]);
        if self.cached_last != Some(last) {
            time_features(last, self.t, self.h, &mut self.cached);
            self.cached_last = Some(last);
        }
        inputs.time[row * s.time..(row + 1) * s.time].copy_from_slice(&self.cached);
        inputs.profile[row] = w.profile.as_index() as i64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn calendar_follows_the_contract() {
        // 1970-01-05 00:00 UTC was a Monday: dow 0, tod 0.
        let monday = 4 * DAY_MS;
        let f = calendar(monday);
        assert!(close(f[0], 0.0) && close(f[1], 1.0) && close(f[2], 0.0) && close(f[3], 1.0), "{f:?}");
        // Six hours later: tod = 0.25.
        let f = calendar(monday + DAY_MS / 4);
        assert!(close(f[0], 1.0) && close(f[1], 0.0), "{f:?}");
        // 1970-01-01 was a Thursday: dow 3/7.
        let f = calendar(0);
        assert!(close(f[2], (TAU * 3.0 / 7.0).sin() as f32), "{f:?}");
    }

    #[test]
    fn past_then_future_steps() {
        let mut out = vec![0.0; (3 + 2) * TIME_FEATURES];
        time_features(100, 3, 2, &mut out);
        assert_eq!(&out[..4], &calendar(step_start(98)));
        assert_eq!(&out[2 * 4..3 * 4], &calendar(step_start(100)), "the last past step is the one that closed");
        assert_eq!(&out[4 * 4..], &calendar(step_start(102)), "future step k is last + k");
    }
}
