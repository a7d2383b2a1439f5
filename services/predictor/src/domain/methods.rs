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
//! [`crate::bands::ANCHORS`], linearly interpolated in between (`bands.rs`). The seasonal naive's band is the spread of
//! its own day-over-day errors `y[s] - y[s-288]`; the climatology's is the last day's own
//! 10th-90th percentile range. Calibration was checked on real VMs (Bitbrains tuning VMs, never
//! the held-out ones): raw percentiles, unwidened, cover 77-80 % for the level, trend, blend and
//! climatology, so no widening factor is applied.

use schemas::{Method, Target, TargetForecast};

use crate::bands::{median, median_large, p10_p50_p90, p10_p90, Bands, ServerBands, MIN_SAMPLES};
use crate::domain::recurrence::recurrence;
use crate::domain::thresholds::thresholds;
use crate::select::Candidates;
use crate::window::ServerWindow;

/// Steps in a day: the seasonal naive's season (5-minute steps).
pub const SEASON: usize = 288;

/// Closed steps a window must keep for these methods: a day for the season plus the horizon,
/// so every future step of an 8-hour forecast has its value one day earlier.
pub const HISTORY_STEPS: usize = SEASON + schemas::HORIZON_STEPS;

/// The recent level is the median of this many last observed steps (30 min): up to two
/// outlying steps (a spike) cannot move it, a new level held for four steps does. Chosen over
/// 3 and over the last value on the Bitbrains tuning VMs (P50 q-risk 0.423 vs 0.437 vs 0.474
/// for CPU; held-out VMs 0.399 / 0.418 / 0.480), never on the held-out ones.
const LEVEL_STEPS: usize = 6;

/// The trend's slope is the Theil–Sen median of pairwise slopes over this many last steps
/// (4 h), its intercept the median of the last [`TREND_ANCHOR_STEPS`] steps projected to now.
const TREND_STEPS: usize = 48;
const TREND_ANCHOR_STEPS: usize = 6;
/// Fewest pairwise slopes the trend is fitted from (4 reported steps); with fewer it is flat
/// at the level.
const MIN_SLOPES: usize = 6;

/// The statistical methods, in the order [`Basis::curves`] accepts.
pub const STATISTICAL: [Method; 6] =
    [Method::LastValue, Method::Level, Method::SeasonalNaive, Method::Trend, Method::Climatology, Method::Blend];

/// What the statistical methods need from one target's history: the last value, the level,
/// the trend's intercept, the day's values and the seasonal spread, computed every tick, and
/// the [`Bands`] and the trend's slope, which may be up to [`REFRESH_STEPS`] old
/// ([`Basis::with_slope`]).
#[derive(Debug, Clone)]
pub struct Basis {
    last: f32,
    level: f32,
    slope: f32,
    /// Whether `slope` is a Theil–Sen fit (else too few steps: 0, the trend flat at the level).
    fitted: bool,
    intercept: f32,
    /// Quantiles (P10, P90) of the day-over-day errors, when enough are known. Computed every
    /// tick: the window holds only 96 of them (a day and 8 h of history), so an hour-old
    /// sample is an eighth stale (the seasonal naive's P90 q-risk was 1.6 % worse cached).
    season: Option<(f32, f32)>,
    /// The last day's (P10, P50, P90) of the values themselves. Computed every tick: kept with
    /// the [`Bands`] for up to an hour instead, it saved about 3 % of the statistical methods'
    /// time and cost quality (`just backtest`: held-out VMs' P90 q-risk 0.320 to 0.321 and
    /// their P50 15.9 % to 15.7 % below the better naive; tuning VMs at or below the better
    /// naive at P90 70 % to 69 %).
    day: (f32, f32, f32),
    bands: Bands,
}

/// Reusable buffers, so a tick allocates nothing per server.
#[derive(Debug, Default)]
pub struct Scratch {
    values: Vec<f32>,
    lo: Vec<f32>,
    hi: Vec<f32>,
    /// [`median_large`]'s bracket.
    band: Vec<i32>,
}

impl Basis {
    /// The basis of `history` with its [`Bands`] (from [`Bands::new`] on this or a recent
    /// history); `None` when no step was observed.
    pub fn new(history: &[f32], bands: Bands, scratch: &mut Scratch) -> Option<Basis> {
        Basis::with_slope(history, bands, None, scratch)
    }

    /// [`Basis::new`] reusing `slope`, a Theil–Sen slope [`Basis::fitted_slope`] gave on a
    /// recent history of the same target (`None`: fit it here). The slope was the costliest
    /// statistic (a median of 1,128 pairwise slopes per target) and moves slowly, so the
    /// predictor keeps it with the [`Bands`] for up to [`REFRESH_STEPS`], unless the latest steps
    /// leave the trend's band ([`departs`]: a new ramp is fitted at once); the intercept, which
    /// sets where the trend starts, is fitted to the latest steps every time. Measured side by
    /// side (`bench_engine --servers 1000 --ticks 20 --chunk 32`, 4 alternated runs each):
    /// 8,973-9,320 forecasts/s fitting it every tick, 10,205-10,685 keeping it; `just backtest`
    /// moved no group's published q-risk by more than 0.001 (held-out VMs' P50 0.375 to
    /// 0.374).
    pub fn with_slope(history: &[f32], bands: Bands, slope: Option<f32>, scratch: &mut Scratch) -> Option<Basis> {
        let last_at = history.iter().rposition(|v| v.is_finite())?;
        let last = history[last_at];
        Some(Basis::constant(history, last, bands).unwrap_or_else(|| Basis::general(history, last, bands, slope, scratch)))
    }

    /// The Theil–Sen slope this basis fitted or reused; `None` when there were too few
    /// reported steps and the trend is flat at the level.
    pub fn fitted_slope(&self) -> Option<f32> {
        self.fitted.then_some(self.slope)
    }

    /// [`Basis::new`] of any history whose latest reported value is `last`.
    fn general(history: &[f32], last: f32, bands: Bands, slope: Option<f32>, scratch: &mut Scratch) -> Basis {
        let n = history.len();
        let buf = &mut scratch.values;

        buf.clear();
        buf.extend(history.iter().rev().filter(|v| v.is_finite()).take(LEVEL_STEPS));
        let level = median(buf);

        let recent = &history[n.saturating_sub(TREND_STEPS)..];
        let slope = slope.or_else(|| theil_sen_slope(recent, buf, &mut scratch.band));
        let (fitted, slope, intercept) = match slope {
            Some(b) => (true, b, anchored_intercept(recent, b, buf)),
            None => (false, 0.0, level),
        };

        buf.clear();
        buf.extend((SEASON..n).map(|s| history[s] - history[s - SEASON]).filter(|d| d.is_finite()));
        let season = (buf.len() >= MIN_SAMPLES).then(|| p10_p90(buf));

        buf.clear();
        buf.extend(history[n.saturating_sub(SEASON)..].iter().filter(|v| v.is_finite()));
        let day = p10_p50_p90(buf);
        Basis { last, level, slope, fitted, intercept, season, day, bands }
    }

    /// [`Basis::new`] of a history whose reported values all have the bits of `c` (swap at 0
    /// on most servers, a disk that does not move): every statistic is then `c` or `c - c`
    /// (+0.0), so the selections (a seventh of a tick) are skipped. `None` when a value
    /// differs. Gives what the general path gives, bit for bit, including short histories and
    /// gaps (`methods_tests.rs`).
    fn constant(history: &[f32], c: f32, bands: Bands) -> Option<Basis> {
        let bits = c.to_bits();
        if !history.iter().all(|v| !v.is_finite() || v.to_bits() == bits) {
            return None;
        }
        let n = history.len();
        let reported = |r: &[f32]| r.iter().filter(|v| v.is_finite()).count();
        // Theil-Sen: every slope is +0.0; with fewer than MIN_SLOPES the trend falls back to the
        // level, otherwise the intercept is the anchors projected along a zero slope, `c + 0.0`.
        let m = reported(&history[n.saturating_sub(TREND_STEPS)..]);
        let fitted = m * m.saturating_sub(1) / 2 >= MIN_SLOPES;
        let intercept = if fitted { c + 0.0 } else { c };
        let pairs = (SEASON..n).filter(|&s| history[s].is_finite() && history[s - SEASON].is_finite()).count();
        let season = (pairs >= MIN_SAMPLES).then_some((0.0, 0.0));
        let day = if reported(&history[n.saturating_sub(SEASON)..]) > 0 { (c, c, c) } else { (f32::NAN, f32::NAN, f32::NAN) };
        Some(Basis { last: c, level: c, slope: 0.0, fitted, intercept, season, day, bands })
    }

    /// The basis of `history` with bands computed from it too.
    pub fn fresh(history: &[f32], scratch: &mut Scratch) -> Option<Basis> {
        Basis::new(history, Bands::new(history, &mut scratch.values)?, scratch)
    }

    /// Writes `method`'s forecast of `target` for `h` steps into `out` (resized), clamped to
    /// the target's range (0..=100 for percentages, >= 0 otherwise) with P10 <= P50 <= P90.
    /// `history` must be the one the basis was made from. [`Method::Model`] and
    /// [`Method::Ensemble`] are not among these: they leave `out` empty.
    pub fn curves(&self, method: Method, history: &[f32], target: Target, h: usize, out: &mut TargetForecast) {
        let (mut lo, mut hi) = (Vec::new(), Vec::new());
        self.changes(h, &mut lo, &mut hi);
        self.write(method, history, target, &lo, &hi, out);
    }

    /// [`Basis::curves`] of every method of [`STATISTICAL`] at once, `outs[i]` for
    /// `STATISTICAL[i]`, interpolating the change quantiles once for all of them.
    pub fn all_curves(
        &self,
        history: &[f32],
        target: Target,
        h: usize,
        scratch: &mut Scratch,
        outs: &mut [TargetForecast; STATISTICAL.len()],
    ) {
        let (lo, hi) = (&mut scratch.lo, &mut scratch.hi);
        self.changes(h, lo, hi);
        for (out, method) in outs.iter_mut().zip(STATISTICAL) {
            self.write(method, history, target, lo, hi, out);
        }
    }

    /// The change quantiles (P10 into `lo`, P90 into `hi`) at leads 1..=h.
    fn changes(&self, h: usize, lo: &mut Vec<f32>, hi: &mut Vec<f32>) {
        lo.clear();
        hi.clear();
        for k in 1..=h {
            let (l, u) = self.bands.change_at(k);
            lo.push(l);
            hi.push(u);
        }
    }

    /// `method`'s curves from the change quantiles `lo`/`hi` (one per lead) into `out`.
    fn write(&self, method: Method, history: &[f32], target: Target, lo: &[f32], hi: &[f32], out: &mut TargetForecast) {
        out.target = target;
        out.method = method;
        for c in [&mut out.p10, &mut out.p50, &mut out.p90] {
            c.clear();
        }
        let w = Writer { upper: upper_bound(target), lo, hi };
        let (last, level) = (self.last, self.level);
        let (dlo, dmid, dhi) = self.day;
        match method {
            // Not statistical: the model runs in the workers, the ensemble combines the rest.
            Method::Model | Method::Ensemble => {}
            Method::LastValue => w.put(out, |_| last, |_, q| last + q, |_, q| last + q),
            Method::Level => w.put(out, |_| level, |_, q| level + q, |_, q| level + q),
            Method::Climatology => w.put(out, |_| dmid, |_, _| dlo, |_, _| dhi),
            Method::Blend => w.put(out, |_| 0.5 * (level + dmid), |_, q| 0.5 * (level + q + dlo), |_, q| 0.5 * (level + q + dhi)),
            // The change quantiles include the trend itself; around the trend line the spread
            // is the change less the trend's own k steps, which leaves the intercept.
            Method::Trend => {
                let (a, b) = (self.intercept, self.slope);
                w.put(out, |k| a + b * (k + 1) as f32, |_, q| a + q, |_, q| a + q)
            }
            Method::SeasonalNaive => {
                let n = history.len();
                // Lead k (0-based here) repeats the step a day before it: history[n + k - SEASON].
                let back = |k: usize| (n + k).checked_sub(SEASON).and_then(|i| history.get(i)).copied().filter(|v| v.is_finite());
                match self.season {
                    Some((slo, shi)) => w.put(
                        out,
                        |k| back(k).unwrap_or(level),
                        |k, q| back(k).map_or(level + q, |v| v + slo),
                        |k, q| back(k).map_or(level + q, |v| v + shi),
                    ),
                    None => {
                        w.put(out, |k| back(k).unwrap_or(level), |k, q| back(k).unwrap_or(level) + q, |k, q| back(k).unwrap_or(level) + q)
                    }
                }
            }
        }
    }
}

/// Writes curves lead by lead from the change quantiles `lo`/`hi` (one per lead), clamped to
/// `0..=upper` with P10 <= P50 <= P90. Each curve is one loop over zipped slices (no index,
/// so no bounds checks), which the compiler vectorises for every method but the seasonal
/// naive; with closures indexing the quantiles by lead it did not, and the curves were a
/// fifth of the statistical methods' time.
struct Writer<'a> {
    upper: f32,
    lo: &'a [f32],
    hi: &'a [f32],
}

impl Writer<'_> {
    /// Sets `out`'s curves to `h` leads (`h` = the quantiles' length): P50 `mid(k)`, P10
    /// `lo(k, change P10 at k)`, P90 `hi(k, change P90 at k)`.
    fn put(&self, out: &mut TargetForecast, mid: impl Fn(usize) -> f32, lo: impl Fn(usize, f32) -> f32, hi: impl Fn(usize, f32) -> f32) {
        let (upper, h) = (self.upper, self.lo.len().min(self.hi.len()));
        for c in [&mut out.p10, &mut out.p50, &mut out.p90] {
            c.clear();
            c.resize(h, 0.0);
        }
        for (k, m) in out.p50.iter_mut().enumerate() {
            *m = mid(k).clamp(0.0, upper);
        }
        for (k, ((o, &m), &q)) in out.p10.iter_mut().zip(&out.p50).zip(self.lo).enumerate() {
            *o = lo(k, q).clamp(0.0, upper).min(m);
        }
        for (k, ((o, &m), &q)) in out.p90.iter_mut().zip(&out.p50).zip(self.hi).enumerate() {
            *o = hi(k, q).clamp(0.0, upper).max(m);
        }
    }
}

/// The largest value `target` can take: 100 for percentages, unbounded otherwise.
fn upper_bound(target: Target) -> f32 {
    if target.unit().is_percent() {
        100.0
    } else {
        f32::MAX
    }
}

fn empty_forecast(target: Target, h: usize) -> TargetForecast {
    TargetForecast { target, method: Method::LastValue, p10: Vec::with_capacity(h), p50: Vec::with_capacity(h), p90: Vec::with_capacity(h) }
}

/// Runs every statistical method on a window: the tick's glue around [`Basis`], with its
/// buffers kept between servers.
#[derive(Debug, Default)]
pub struct Statistical {
    scratch: Scratch,
    history: Vec<f32>,
    /// Forecasts handed back by [`Statistical::recycle`], whose buffers the next fill reuses.
    pool: Vec<TargetForecast>,
}

/// Most forecasts [`Statistical`] keeps for reuse: one server's worth of every method.
const POOL_CAP: usize = Method::ALL.len() * schemas::TARGET_COUNT;

impl Statistical {
    /// Adds to `out` each statistical method's `h`-step forecast of every target whose source
    /// metric `w` has observed, with the [`Bands`] in `cache` (server `id`'s) while they are
    /// fresh enough ([`REFRESH_STEPS`]), computed anew and kept there otherwise.
    pub fn fill(&mut self, w: &ServerWindow, id: u32, cache: &std::sync::Mutex<ServerBands>, h: usize, out: &mut Candidates) {
        let observed = w.observed_mask();
        let mut cached = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let refresh = cached.due(w.last_closed(), id);
        for (t, target) in Target::ALL.into_iter().enumerate() {
            if observed & (1 << target.source_metric().index()) == 0 {
                continue;
            }
            w.history(target, &mut self.history);
            let (bands, slope) = match cached.bands[t] {
                // A kept slope the latest steps have left is fitted again now.
                Some(b) if !refresh => (b, cached.slopes[t].filter(|&s| !departs(&self.history, s, b, &mut self.scratch.values))),
                _ => {
                    let Some(b) = Bands::new(&self.history, &mut self.scratch.values) else { continue };
                    cached.bands[t] = Some(b);
                    (b, None)
                }
            };
            let Some(basis) = Basis::with_slope(&self.history, bands, slope, &mut self.scratch) else { continue };
            cached.slopes[t] = basis.fitted_slope();
            if let Some(r) = thresholds(w.profile, target).and_then(|th| recurrence(target, &th, &self.history, h)) {
                out.recurring.push(r);
            }
            let mut fs = std::array::from_fn(|_| self.pool.pop().unwrap_or_else(|| empty_forecast(target, h)));
            basis.all_curves(&self.history, target, h, &mut self.scratch, &mut fs);
            for (f, method) in fs.into_iter().zip(STATISTICAL) {
                out.of_mut(method).push(f);
            }
        }
        if refresh {
            cached.at = w.last_closed();
        }
    }
}

impl Statistical {
    /// Empties `c`, keeping its forecasts' buffers (up to [`POOL_CAP`]) for the next fills.
    pub fn recycle(&mut self, c: &mut Candidates) {
        c.drain_into(&mut self.pool);
        self.pool.truncate(POOL_CAP);
    }

    /// Gives `c` recycled buffers for the forecasts added after these methods' (the model's and
    /// the ensemble's, one per target each; [`Candidates::stock`]).
    pub fn stock(&mut self, c: &mut Candidates) {
        c.stock(&mut self.pool, 2 * schemas::TARGET_COUNT);
    }
}

/// Theil–Sen slope through the finite points of `y` (x = step index): the median of pairwise
/// slopes (Sen 1968); [`anchored_intercept`] places the line. `None` with fewer than
/// [`MIN_SLOPES`] slopes. All pairs: keeping only pairs far apart (a quarter of the work) made the trend's P50 q-risk 5 % worse on the Bitbrains
/// VMs, the noisy close pairs pull the slope toward 0, which pays off 8 hours out.
fn theil_sen_slope(y: &[f32], buf: &mut Vec<f32>, band: &mut Vec<i32>) -> Option<f32> {
    let n = y.len();
    buf.clear();
    // Multiplying by a reciprocal from this table instead of dividing.
    static RECIPROCAL: std::sync::LazyLock<[f32; TREND_STEPS]> =
        std::sync::LazyLock::new(|| std::array::from_fn(|d| 1.0 / d.max(1) as f32));
    let (head, reciprocal) = (&y[..n.min(TREND_STEPS)], &*RECIPROCAL);
    if head.iter().all(|v| v.is_finite()) {
        // The usual case, every step reported: the same slopes in the same order, each row
        // without a test per pair, so the compiler vectorises it (d = j - i counts down to 1).
        for (j, &yj) in head.iter().enumerate().skip(1) {
            buf.extend(head[..j].iter().zip(reciprocal[1..=j].iter().rev()).map(|(yi, r)| (yj - yi) * r));
        }
    } else {
        for j in 0..n.min(TREND_STEPS) {
            if !y[j].is_finite() {
                continue;
            }
            for i in 0..j {
                if y[i].is_finite() {
                    buf.push((y[j] - y[i]) * reciprocal[j - i]);
                }
            }
        }
    }
    if buf.len() < MIN_SLOPES {
        return None;
    }
    Some(median_large(buf, band))
}

/// Latest steps that must each lie outside, and on the same side of, the band the trend
/// published for them one step ahead before a kept slope is fitted again ahead of its refresh
/// ([`departs`]). With noise inside the band that is one chance in a thousand (10 % a side, 3
/// steps); a new ramp or a level shift passes it within a few steps.
pub const DEPARTURE_STEPS: usize = 3;

/// Whether each of the latest [`DEPARTURE_STEPS`] steps of `history` lies outside the trend's
/// own lead-1 band (P10/P90 from `bands`, around the line with `slope` anchored on the steps
/// before it), all above or all below. A slope kept for up to an hour ([`Basis::with_slope`])
/// would otherwise hold a flat trend through the first hour of a disk starting to fill; a
/// departure makes the caller fit it again at once, so the trend reacts as when the slope was
/// fitted every step. An unreported step among them: `false`.
pub fn departs(history: &[f32], slope: f32, bands: Bands, buf: &mut Vec<f32>) -> bool {
    let recent = &history[history.len().saturating_sub(TREND_STEPS)..];
    let (lo, hi) = bands.change_at(1);
    let mut sides = (1..=DEPARTURE_STEPS).map(|j| {
        let at = recent.len().checked_sub(j)?;
        let (before, y) = (&recent[..at], recent[at]);
        if !y.is_finite() || !before.iter().any(|v| v.is_finite()) {
            return None;
        }
        let a = anchored_intercept(before, slope, buf);
        let mid = a + slope;
        if y > (a + hi).max(mid) {
            Some(1)
        } else if y < (a + lo).min(mid) {
            Some(-1)
        } else {
            None
        }
    });
    let Some(Some(first)) = sides.next() else { return false };
    sides.all(|s| s == Some(first))
}

/// The trend line's value at the last step of `y`: the median of its last
/// [`TREND_ANCHOR_STEPS`] finite points projected along `slope` (`buf` is scratch).
fn anchored_intercept(y: &[f32], slope: f32, buf: &mut Vec<f32>) -> f32 {
    let n = y.len();
    buf.clear();
    buf.extend((0..n).rev().filter(|&i| y[i].is_finite()).take(TREND_ANCHOR_STEPS).map(|i| y[i] + slope * (n - 1 - i) as f32));
    median(buf)
}

#[cfg(test)]
#[path = "methods_tests.rs"]
mod tests;
