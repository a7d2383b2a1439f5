//! The statistical forecasters that run beside the TFT for every server and target: last
//! value, recent level, daily seasonal naive and robust trend (see [`schemas::Method`]). They
//! are the yardstick the model is checked against per server (`select.rs` publishes whichever
//! has been best there recently), and the fallback where the model does badly: a server it
//! never saw the like of, a disk filling at a steady rate, a model output that is not finite.
//!
//! Pure functions over one target's history: `history` holds the server's last closed steps,
//! oldest first, the latest last, NaN where a step was not reported. Everything is in the
//! target's own unit.
//!
//! Bands (P10/P90) are empirical, as for the trainer's baselines
//! (`services/trainer/fleetcast_trainer/baselines.py`): the 10th and 90th percentiles of the
//! server's own k-step changes `y[s] - y[s-k]` over the last day, at the anchor leads
//! [`ANCHORS`], linearly interpolated in between. The seasonal naive's band is the spread of
//! its own day-over-day errors `y[s] - y[s-288]`; the climatology's is the last day's own
//! 10th-90th percentile range. Calibration was checked on real VMs (Bitbrains tuning VMs, never
//! the held-out ones): raw percentiles, unwidened, cover 77-80 % for the level, trend, blend and
//! climatology, so no widening factor is applied.

use schemas::{Method, Target, TargetForecast};

use crate::select::Candidates;
use crate::window::ServerWindow;

/// Steps in a day: the seasonal naive's season (5-minute steps).
pub const SEASON: usize = 288;

/// Closed steps a window must keep for these methods: a day for the season plus the horizon,
/// so every future step of an 8-hour forecast has its value one day earlier.
pub const HISTORY_STEPS: usize = SEASON + schemas::HORIZON_STEPS;

/// Leads (steps) at which the change quantiles are measured; others are interpolated.
pub const ANCHORS: [usize; 9] = [1, 2, 3, 6, 12, 24, 48, 72, 96];

/// The bands are drawn from the changes of the last day.
const BAND_STEPS: usize = SEASON;

/// Fewest changes from which a quantile is taken; a lead with fewer borrows the longest lead
/// that has enough, widened by the square root of the lead ratio (random-walk growth).
const MIN_SAMPLES: usize = 8;

/// The recent level is the median of this many last observed steps (30 min): up to two
/// outlying steps (a spike) cannot move it, a new level held for four steps does. Chosen over
/// 3 and over the last value on the Bitbrains tuning VMs (P50 q-risk 0.423 vs 0.437 vs 0.474
/// for CPU; held-out VMs 0.399 / 0.418 / 0.480), never on the held-out ones.
const LEVEL_STEPS: usize = 6;

/// The trend's slope is the Theil–Sen median of pairwise slopes over this many last steps
/// (4 h), its intercept the median of the last [`TREND_ANCHOR_STEPS`] steps projected to now.
const TREND_STEPS: usize = 48;
const TREND_ANCHOR_STEPS: usize = 6;

/// The statistical methods, in the order [`Basis::curves`] accepts.
pub const STATISTICAL: [Method; 6] =
    [Method::LastValue, Method::Level, Method::SeasonalNaive, Method::Trend, Method::Climatology, Method::Blend];

/// What the statistical methods need from one target's history, computed once.
#[derive(Debug, Clone)]
pub struct Basis {
    last: f32,
    level: f32,
    slope: f32,
    intercept: f32,
    /// Quantiles (P10, P90) of the k-step changes at each of [`ANCHORS`].
    change: [(f32, f32); ANCHORS.len()],
    /// Quantiles (P10, P90) of the day-over-day errors, when enough are known.
    season: Option<(f32, f32)>,
    /// The last day's (P10, P50, P90) of the values themselves.
    day: (f32, f32, f32),
}

/// Reusable buffers, so a tick allocates nothing per server.
#[derive(Debug, Default)]
pub struct Scratch {
    values: Vec<f32>,
}

/// The value at rank `q` (0..=1, nearest rank) of `v`, reordering `v`; NaN when empty.
fn quantile(v: &mut [f32], q: f32) -> f32 {
    if v.is_empty() {
        return f32::NAN;
    }
    let k = ((v.len() - 1) as f32 * q).round() as usize;
    *v.select_nth_unstable_by(k, f32::total_cmp).1
}

fn median(v: &mut [f32]) -> f32 {
    quantile(v, 0.5)
}

impl Basis {
    /// The basis of `history` (see the module doc); `None` when no step was observed.
    pub fn new(history: &[f32], scratch: &mut Scratch) -> Option<Basis> {
        let n = history.len();
        let last_at = history.iter().rposition(|v| v.is_finite())?;
        let last = history[last_at];
        let buf = &mut scratch.values;

        buf.clear();
        buf.extend(history.iter().rev().filter(|v| v.is_finite()).take(LEVEL_STEPS));
        let level = median(buf);

        let (slope, intercept) = theil_sen(&history[n.saturating_sub(TREND_STEPS)..], buf).unwrap_or((0.0, level));

        let mut change = [(f32::NAN, f32::NAN); ANCHORS.len()];
        let from = n.saturating_sub(BAND_STEPS);
        for (c, &k) in change.iter_mut().zip(&ANCHORS) {
            buf.clear();
            buf.extend((from.max(k)..n).map(|s| history[s] - history[s - k]).filter(|d| d.is_finite()));
            if buf.len() >= MIN_SAMPLES {
                *c = (quantile(buf, 0.1), quantile(buf, 0.9));
            }
        }
        fill_short_leads(&mut change);

        buf.clear();
        buf.extend((SEASON..n).map(|s| history[s] - history[s - SEASON]).filter(|d| d.is_finite()));
        let season = (buf.len() >= MIN_SAMPLES).then(|| (quantile(buf, 0.1), quantile(buf, 0.9)));

        buf.clear();
        buf.extend(history[n.saturating_sub(SEASON)..].iter().filter(|v| v.is_finite()));
        let day = (quantile(buf, 0.1), quantile(buf, 0.5), quantile(buf, 0.9));

        Some(Basis { last, level, slope, intercept, change, season, day })
    }

    /// The quantiles (P10, P90) of the change over `k` steps, interpolated between anchors.
    fn change_at(&self, k: usize) -> (f32, f32) {
        let i = ANCHORS.partition_point(|&a| a <= k).clamp(1, ANCHORS.len() - 1);
        let (k0, k1) = (ANCHORS[i - 1] as f32, ANCHORS[i] as f32);
        let w = ((k as f32 - k0) / (k1 - k0)).clamp(0.0, 1.0);
        let (a, b) = (self.change[i - 1], self.change[i]);
        (a.0 + (b.0 - a.0) * w, a.1 + (b.1 - a.1) * w)
    }

    /// Writes `method`'s forecast of `target` for `h` steps into `out` (resized), clamped to
    /// the target's range (0..=100 for percentages, >= 0 otherwise) with P10 <= P50 <= P90.
    /// `history` must be the one the basis was made from. [`Method::Model`] and
    /// [`Method::Ensemble`] are not among these: they leave `out` empty.
    pub fn curves(&self, method: Method, history: &[f32], target: Target, h: usize, out: &mut TargetForecast) {
        out.target = target;
        out.method = method;
        for c in [&mut out.p10, &mut out.p50, &mut out.p90] {
            c.clear();
        }
        let upper = if target.unit().is_percent() { 100.0 } else { f32::MAX };
        let n = history.len();
        for k in 1..=h {
            let (lo, hi) = self.change_at(k);
            let (mid, lo, hi): (f32, f32, f32) = match method {
                // Not statistical: the model runs in the workers, the ensemble combines the rest.
                Method::Model | Method::Ensemble => return,
                Method::LastValue => (self.last, self.last + lo, self.last + hi),
                Method::Level => (self.level, self.level + lo, self.level + hi),
                Method::Climatology => (self.day.1, self.day.0, self.day.2),
                Method::Blend => {
                    let (dlo, dmid, dhi) = self.day;
                    (0.5 * (self.level + dmid), 0.5 * (self.level + lo + dlo), 0.5 * (self.level + hi + dhi))
                }
                Method::Trend => {
                    // The change quantiles include the trend itself; around a trend line the
                    // spread is the change less the trend's own k steps.
                    let mid = self.intercept + self.slope * k as f32;
                    let drift = self.slope * k as f32;
                    (mid, mid + lo - drift, mid + hi - drift)
                }
                Method::SeasonalNaive => {
                    let back = (n + k).checked_sub(SEASON + 1).and_then(|i| history.get(i)).copied().filter(|v| v.is_finite());
                    match (back, self.season) {
                        (Some(v), Some((slo, shi))) => (v, v + slo, v + shi),
                        (Some(v), None) => (v, v + lo, v + hi),
                        (None, _) => (self.level, self.level + lo, self.level + hi),
                    }
                }
            };
            let mid = mid.clamp(0.0, upper);
            out.p50.push(mid);
            out.p10.push(lo.clamp(0.0, upper).min(mid));
            out.p90.push(hi.clamp(0.0, upper).max(mid));
        }
    }
}

/// Runs every statistical method on a window: the tick's glue around [`Basis`], with its
/// buffers kept between servers.
#[derive(Debug, Default)]
pub struct Statistical {
    scratch: Scratch,
    history: Vec<f32>,
}

impl Statistical {
    /// Adds to `out` each statistical method's `h`-step forecast of every target whose source
    /// metric `w` has observed.
    pub fn fill(&mut self, w: &ServerWindow, h: usize, out: &mut Candidates) {
        let observed = w.observed_mask();
        for target in Target::ALL {
            if observed & (1 << target.source_metric().index()) == 0 {
                continue;
            }
            w.history(target, &mut self.history);
            let Some(basis) = Basis::new(&self.history, &mut self.scratch) else { continue };
            for method in STATISTICAL {
                let mut f =
                    TargetForecast { target, method, p10: Vec::with_capacity(h), p50: Vec::with_capacity(h), p90: Vec::with_capacity(h) };
                basis.curves(method, &self.history, target, h, &mut f);
                out.of_mut(method).push(f);
            }
        }
    }
}

/// Gives leads without enough changes (a short history) the quantiles of the longest lead that
/// has them, scaled by `sqrt(k / k0)`; with none at all, zero-width bands.
fn fill_short_leads(change: &mut [(f32, f32); ANCHORS.len()]) {
    let Some(best) = (0..ANCHORS.len()).rev().find(|&i| change[i].0.is_finite()) else {
        *change = [(0.0, 0.0); ANCHORS.len()];
        return;
    };
    let (k0, (lo, hi)) = (ANCHORS[best] as f32, change[best]);
    for (i, c) in change.iter_mut().enumerate() {
        if !c.0.is_finite() || !c.1.is_finite() {
            let s = (ANCHORS[i] as f32 / k0).sqrt();
            *c = (lo * s, hi * s);
        }
    }
}

/// Theil–Sen line through the finite points of `y` (x = step index): the median of all
/// pairwise slopes (Sen 1968), and the value it gives at the last step from the median of the
/// last few points projected along it. `None` with fewer than 4 finite points.
fn theil_sen(y: &[f32], buf: &mut Vec<f32>) -> Option<(f32, f32)> {
    let n = y.len();
    buf.clear();
    for j in 0..n {
        if !y[j].is_finite() {
            continue;
        }
        for i in 0..j {
            if y[i].is_finite() {
                buf.push((y[j] - y[i]) / (j - i) as f32);
            }
        }
    }
    if buf.len() < 6 {
        return None;
    }
    let slope = median(buf);
    buf.clear();
    buf.extend((0..n).rev().filter(|&i| y[i].is_finite()).take(TREND_ANCHOR_STEPS).map(|i| y[i] + slope * (n - 1 - i) as f32));
    Some((slope, median(buf)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forecast(method: Method, history: &[f32], target: Target) -> TargetForecast {
        let mut s = Scratch::default();
        let b = Basis::new(history, &mut s).unwrap();
        let mut out = TargetForecast { target, method, p10: vec![], p50: vec![], p90: vec![] };
        b.curves(method, history, target, 96, &mut out);
        out
    }

    fn ordered(f: &TargetForecast) -> bool {
        (0..f.p50.len()).all(|k| f.p10[k] <= f.p50[k] && f.p50[k] <= f.p90[k])
    }

    #[test]
    fn a_filling_disk_is_extrapolated_and_capped() {
        // The quality issue's case 1: 48 steps rising 0.5 per step, last 73.5.
        let y: Vec<f32> = (0..48).map(|k| 50.0 + 0.5 * k as f32).collect();
        let f = forecast(Method::Trend, &y, Target::Disk);
        assert!((f.p50[0] - 74.0).abs() < 1e-3, "{}", f.p50[0]);
        let cross = |line: f32| f.p50.iter().position(|v| *v > line).map(|k| k + 1);
        assert_eq!(cross(85.0), Some(24), "85 % crossed at step 23-24");
        assert_eq!(cross(95.0), Some(44));
        assert_eq!(f.p50[95], 100.0, "capped at 100");
        assert!(ordered(&f));
    }

    #[test]
    fn one_spike_moves_neither_level_nor_trend() {
        let mut y: Vec<f32> = (0..47).map(|k| if k % 2 == 0 { 39.0 } else { 41.0 }).collect();
        y.push(98.0);
        for m in [Method::Level, Method::Trend] {
            let f = forecast(m, &y, Target::Cpu);
            assert!(f.p50.iter().all(|v| *v < 45.0), "{m:?}: {:?}", &f.p50[..4]);
        }
        assert_eq!(forecast(Method::LastValue, &y, Target::Cpu).p50[0], 98.0, "the naive forecast is fooled");
        // Held for 12 steps it is a new level.
        let mut held: Vec<f32> = (0..36).map(|k| if k % 2 == 0 { 39.0 } else { 41.0 }).collect();
        held.extend([98.0; 12]);
        assert!(forecast(Method::Level, &held, Target::Cpu).p50[0] > 97.0);
    }

    #[test]
    fn seasonal_naive_repeats_yesterday_and_falls_back_to_the_level() {
        let day: Vec<f32> = (0..HISTORY_STEPS).map(|s| if (s % SEASON) < 100 { 10.0 } else { 60.0 }).collect();
        let f = forecast(Method::SeasonalNaive, &day, Target::Mem);
        let n = day.len();
        for k in 1..=96 {
            assert_eq!(f.p50[k - 1], day[n + k - 1 - SEASON], "step {k}");
        }
        assert!(ordered(&f));
        let short = vec![33.0_f32; 30];
        let f = forecast(Method::SeasonalNaive, &short, Target::Mem);
        assert!(f.p50.iter().all(|v| *v == 33.0));
    }

    #[test]
    fn bands_widen_with_the_lead_and_cover_a_random_walk() {
        // A deterministic zig-zag random walk: y moves +-1 per step.
        let mut y = vec![50.0_f32];
        let mut state = 12345u32;
        for _ in 1..HISTORY_STEPS {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let step = if (state >> 16) & 1 == 0 { 1.0 } else { -1.0 };
            y.push((y[y.len() - 1] + step).clamp(20.0, 80.0));
        }
        let f = forecast(Method::LastValue, &y, Target::Mem);
        let width = |k: usize| f.p90[k] - f.p10[k];
        assert!(width(0) > 0.0 && width(95) > width(11) && width(11) > width(0), "{} {} {}", width(0), width(11), width(95));
        assert!(ordered(&f));
    }

    #[test]
    fn gaps_and_short_histories_still_give_finite_curves() {
        let mut y = vec![f32::NAN; 40];
        y[10] = 5.0;
        y[25] = 7.0;
        y[39] = 6.0;
        for m in STATISTICAL {
            let f = forecast(m, &y, Target::NetIn);
            assert_eq!(f.p50.len(), 96);
            assert!(f.p10.iter().chain(&f.p50).chain(&f.p90).all(|v| v.is_finite() && *v >= 0.0), "{m:?}");
        }
        assert!(Basis::new(&[f32::NAN; 10], &mut Scratch::default()).is_none());
    }
}
