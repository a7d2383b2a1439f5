//! Model selection by live backtest: for every server and target, publish the forecast of the
//! method that has been best there recently, judged on its own matured forecasts with the same
//! pinball losses as the live accuracy (`accuracy.rs`, [`crate::accuracy::ServerScore`]).
//!
//! Why not always the model: a TFT trained on some fleets can be worse than "same as now" on a
//! server unlike them, and a filling disk needs a trend the model may not extrapolate. Running
//! the cheap statistical methods beside it (`methods.rs`) and switching per server lets the
//! product be at least as good as the best of them wherever the model is not, and say so
//! (each published target names its method).
//!
//! The P50 and the band are chosen apart (worth 2 points of P50 q-risk and 8 points of "series
//! at or below the better naive" at P90 on the Bitbrains tuning VMs):
//! - The P50 curve is the method with the lowest recent P50 pinball loss: the [`DEFAULT`]
//!   method (the ensemble: no one member's failure dominates it) until another candidate has
//!   [`MIN_WEIGHT`] scored points and a decayed loss at least [`MARGIN`] below the default's.
//!   The published forecast names this method. Averaging the P50s by loss instead (as the band
//!   is) made it worse: held-out VMs 0.377 to 0.384.
//! - The P10/P90 band is the proven candidates' bands averaged per lead, weighted by how close
//!   each one's recent P90 loss is to the best ([`band_weights`]); before two are proven, the
//!   band of the one chosen by P90 loss as the P50 is chosen.
//!
//! Tried and dropped: choosing the band once by the near leads' P90 loss and once by the far
//! leads', blended over the leads. `just backtest` (with a model retrained on the current
//! generator, `tft-20261130-c4db7275`, not shipped) liked it: P90 q-risk 0.324 to 0.322 on the
//! held-out VMs, CPU breach F1 at 30 min 0.26 to 0.31; but the far leads' band then often came
//! from a method whose P90 still held a past spike, so an alert stayed open for 16 to 24 steps
//! after a disk came back from 99 % (within 12 before; `takeover.rs`). Shifting the band with
//! the P50 where the two methods differ (P90 = P50 + the band's own P90 - P50) made P90 q-risk
//! a little worse (tuning VMs 0.346 to 0.347), and so did weighting the bands by the near leads'
//! P90 loss at the near leads and the far leads' at the far ones (0.342 to 0.343; again on
//! 2026-12-02, blended over the leads as the ensemble's weights are: held-out VMs at or below
//! the better naive at P90 72 % to 78 %, but NAB 90 % to 80 % and P90 0.542 to 0.544, CPU
//! breach F1 within 30 min 0.42 to 0.45 on the tuning VMs, the same elsewhere). Adding the
//! last value's band to the weighted bands (it is one of the two naives the product is judged
//! against) moved the tuning VMs to 0.343 and the held-out VMs from 0.320 to 0.321, with fewer
//! of them at or below the better naive at P90 (72 % to 70 %).
//!
//! Also tried and dropped (2026-12-01, `just backtest`, held-out / tuning VMs / NAB published
//! P90 q-risk from 0.320 / 0.342 / 0.542): raising the published P90 past the first hour to
//! the seasonal naive's P50 (yesterday's value) gave 0.313 / 0.340 / 0.557, held-out VMs at or
//! below the better naive 72 % to 78 % and CPU breach F1 within 8 h 0.54 to 0.55, but NAB's
//! bursty series (disk writes, requests) lost, NAB at or below 90 % to 70 %; AWS CloudWatch
//! series are what the product is judged on. Gated per server and target by a live record of
//! the P90 loss with and without it, the gain went too (0.321-0.322 / 0.342-0.343 / 0.545,
//! proven on or off, decay per scored step 0.9976 or 0.99): the record lags regime changes
//! (the Bitbrains VMs that run at 100 % for days and then idle) by more than it gains. Scaled
//! by the seasonal naive's P90 loss against the best candidate's, `(best / its)^2`: 0.317 /
//! 0.340 / 0.552, NAB at or below 80 %. Only at leads where the seasonal naive's band is
//! narrower than the day's range (yesterday explains today): 0.318 / 0.342 / 0.552; narrower
//! than half of it: 0.321 / 0.342 / 0.549.
//!
//! Also dropped (2026-12-01): a P90 record decaying three times slower than the P50's (a
//! three-day half-life; spikes are rare): 0.321 / 0.343 / 0.542. No seasonal naive until the
//! window spans a day (before, its first leads repeat the level, and that record followed it
//! into its seasonal days): 0.321 / 0.345 / 0.550, and P50 0.375 to 0.385 on the held-out VMs.
//! Its fresh record, near leads first, chose it on servers where yesterday is a poor P50; the
//! level-like first day had kept it out. Published P90 not raised to the published P50 where
//! the band is below it: 0.323 / 0.344 / 0.542, coverage 81 % to 78 %.
//!
//! A candidate whose curves are not all finite is never published; a target none of whose
//! candidates is usable is left out.

use schemas::{Method, Target, TargetForecast};

use crate::accuracy::ServerScore;

/// The methods that may be published. Last value is scored beside them as the baseline, never
/// published: on one spike it forecasts the spike for 8 hours.
pub const CANDIDATES: [Method; 7] =
    [Method::Model, Method::Level, Method::SeasonalNaive, Method::Trend, Method::Climatology, Method::Blend, Method::Ensemble];

/// The members of [`Method::Ensemble`]: methods whose errors differ in kind (a learned model,
/// a flat line at now, yesterday's curve, the day's range), so their mean cancels some of each.
/// Adding the trend made the tuning VMs' published P50 q-risk worse (0.417 to 0.419); adding
/// the blend left both q-risks as they were (0.417 / 0.342) for a fifth more combining.
pub const ENSEMBLE_MEMBERS: [Method; 4] = [Method::Model, Method::Level, Method::SeasonalNaive, Method::Climatology];

/// Published while nothing has proven better on this server. The ensemble rather than the recent
/// level: on the Bitbrains VMs (backtest, 12 days) it moved the published P50 / P90 q-risk from
/// 0.382 / 0.327 to 0.380 / 0.326 on the held-out VMs and the share of them at or below the
/// better naive from 78 % / 55 % to 80 % / 60 % (tuning VMs: 0.428 / 0.352 to 0.427 / 0.352,
/// 75 % / 55 % to 76 % / 58 %); chosen on the tuning VMs, confirmed on the held-out ones.
/// Weighting its members by inverse recent loss instead of equally ([`member_weights`]) moved
/// the tuning VMs to 0.426 / 0.351 (held-out 0.379 / 0.326, NAB 0.384 / 0.548 from 0.386 /
/// 0.549). Tried and dropped: widening or narrowing each server's published band online until
/// 10 % of actuals fall above its P90 (adaptive conformal inference): NAB's P90 improved
/// (0.537) but the tuning VMs' worsened to 0.362, one band width for all leads fits no lead.
/// Again (2026-12-01) with one log width factor per target and scored lead, above and below
/// the P50, interpolated between leads: step 0.02, held-out / tuning VMs' P90 0.320 / 0.342
/// to 0.325 / 0.349; step 0.005, 0.321 / 0.343 (NAB coverage 86 % to 85 %); step 0.005
/// times the band's width over its running mean (the pinball loss's own gradient), the same
/// 0.321 / 0.343: the loss-weighted band is already about as wide as the pinball loss wants.
pub const DEFAULT: Method = Method::Ensemble;

/// A candidate must beat the default's recent loss by this share to replace it (so a tie does
/// not flip the published method back and forth). Between two non-default candidates there is
/// no margin, so a near tie can flip the chart's method from tick to tick; tried and dropped
/// (2026-12-01): the method published last keeps its place unless another is this share
/// better. `just backtest`: P50 q-risk held-out VMs 0.375 to 0.376 (at or below the better
/// naive 85 % to 80 %), tuning 0.417 to 0.416, NAB 0.374 to 0.378. `just backtest`, Bitbrains tuning VMs (with
/// [`WEIGHT_POWER`] 1), published P50 q-risk: 0.10 gave 0.423, 0.05 0.420, 0.02 0.418, none
/// 0.418 (with fewer series at or below the better naive, 79 % against 80 %).
pub const MARGIN: f32 = 0.02;

/// Decayed scored points a candidate needs before it can replace the default: about an hour of
/// steps at the short leads. 6 and 24 gave the same backtest as 12 to three decimals.
pub const MIN_WEIGHT: f32 = 12.0;

/// Every method's forecasts of one server, one `Vec` per [`Method::ALL`] entry (targets that a
/// method could not forecast are absent).
#[derive(Debug, Default)]
pub struct Candidates {
    by_method: [Vec<TargetForecast>; Method::ALL.len()],
    /// Recycled forecasts whose buffers the forecasts added later reuse ([`Candidates::stock`]):
    /// the ensemble's in [`Candidates::combine`], the model's ([`Candidates::lend`]), so that
    /// the tick's sequential part allocates none.
    spare: Vec<TargetForecast>,
    /// The targets whose values a day before a coming step crossed a threshold of the server's
    /// profile (`recurrence.rs`), found where the statistical methods read the history.
    pub recurring: Vec<crate::domain::recurrence::Recurrence>,
}

impl Candidates {
    pub fn clear(&mut self) {
        self.by_method.iter_mut().for_each(Vec::clear);
        self.recurring.clear();
    }

    /// Moves every forecast into `pool` (so their buffers can be reused), leaving `self` empty.
    pub fn drain_into(&mut self, pool: &mut Vec<TargetForecast>) {
        for v in &mut self.by_method {
            pool.append(v);
        }
        pool.append(&mut self.spare);
        self.recurring.clear();
    }

    /// Keeps up to `n` of `pool`'s forecasts as spare buffers (see [`Candidates::lend`]).
    pub fn stock(&mut self, pool: &mut Vec<TargetForecast>, n: usize) {
        let from = pool.len().saturating_sub(n);
        self.spare.extend(pool.drain(from..));
    }

    /// Moves up to `n` spare forecasts into `method`'s, for a writer that overwrites what it
    /// finds there (`snapshot::forecast_from`); their contents are stale until it does.
    pub fn lend(&mut self, method: Method, n: usize) {
        let from = self.spare.len().saturating_sub(n);
        self.by_method[method.index()].extend(self.spare.drain(from..));
    }

    pub fn of(&self, method: Method) -> &[TargetForecast] {
        &self.by_method[method.index()]
    }

    pub fn of_mut(&mut self, method: Method) -> &mut Vec<TargetForecast> {
        &mut self.by_method[method.index()]
    }

    /// Adds the [`Method::Ensemble`] forecast of every target that at least two of the
    /// [`ENSEMBLE_MEMBERS`] forecast with finite curves of the same length: per step, a weighted
    /// mean of their quantiles (see [`member_weights`]: equal until every member has a recent
    /// record on this server and target, then by inverse recent loss; the P50 by P50 loss, the
    /// P10/P90 by P90 loss; the near leads by the near leads' losses and the far by the far's,
    /// blended in between by [`far_share`]). Replaces any ensemble already there.
    pub fn combine(&mut self, score: impl Fn(Method, Target) -> Option<ServerScore>) {
        let mut out = std::mem::take(self.of_mut(Method::Ensemble));
        let mut spare = std::mem::take(&mut self.spare);
        spare.append(&mut out);
        for target in Target::ALL {
            let mut members: [Option<(&TargetForecast, Option<ServerScore>)>; ENSEMBLE_MEMBERS.len()] = [None; ENSEMBLE_MEMBERS.len()];
            for (slot, &m) in members.iter_mut().zip(&ENSEMBLE_MEMBERS) {
                *slot = self.usable(m, target).map(|f| (f, score(m, target)));
            }
            let Some(len) = members.iter().flatten().next().map(|(f, _)| f.p50.len()) else { continue };
            for slot in &mut members {
                *slot = slot.filter(|(f, _)| f.p50.len() == len);
            }
            let present = members.iter().flatten();
            if present.clone().count() < 2 {
                continue;
            }
            // Weights of the near leads and of the far ones, per member: [near50, near90, far50, far90].
            let mut w = [[0.0_f32; 4]; ENSEMBLE_MEMBERS.len()];
            let records = |part: fn(&ServerScore) -> f32| present.clone().map(move |(_, s)| s.map(|s| (part(&s), s.weight)));
            let parts: [fn(&ServerScore) -> f32; 4] = [|s| s.near50, |s| s.near90, |s| s.far().0, |s| s.far().1];
            for (j, part) in parts.into_iter().enumerate() {
                for (wi, v) in w.iter_mut().zip(member_weights(records(part))) {
                    wi[j] = v;
                }
            }
            // The leads' far shares from a table (the same values): with no call per lead the loop
            // below vectorises.
            let computed: Vec<f32>;
            let shares: &[f32] = match FAR_SHARES.get(..len) {
                Some(s) => s,
                None => {
                    computed = (1..=len).map(far_share).collect();
                    &computed
                }
            };
            let mut sum = spare.pop().unwrap_or_else(|| TargetForecast {
                target,
                method: Method::Ensemble,
                p10: Vec::new(),
                p50: Vec::new(),
                p90: Vec::new(),
            });
            (sum.target, sum.method) = (target, Method::Ensemble);
            for c in [&mut sum.p10, &mut sum.p50, &mut sum.p90] {
                c.clear();
                c.resize(len, 0.0);
            }
            for ((f, _), [n50, n90, f50, f90]) in present.zip(w) {
                // Sliced to `len` up front so the loop runs without bounds checks.
                let (x10, x50, x90) = (&f.p10[..len], &f.p50[..len], &f.p90[..len]);
                let (s10, s50, s90) = (&mut sum.p10[..len], &mut sum.p50[..len], &mut sum.p90[..len]);
                for k in 0..len {
                    let a = shares[k];
                    let (b50, b90) = (n50 + a * (f50 - n50), n90 + a * (f90 - n90));
                    s10[k] += b90 * x10[k];
                    s50[k] += b50 * x50[k];
                    s90[k] += b90 * x90[k];
                }
            }
            out.push(sum);
        }
        *self.of_mut(Method::Ensemble) = out;
        self.spare = spare;
    }

    /// `method`'s forecast of `target`, if it has one whose values are all finite.
    pub fn usable(&self, method: Method, target: Target) -> Option<&TargetForecast> {
        self.of(method).iter().find(|f| f.target == target).filter(|f| is_finite(f))
    }
}

/// Combination weights (summing to 1) for members whose recent records are `(decayed loss,
/// decayed points)`: proportional to `1 / loss^`[`WEIGHT_POWER`] once every member has
/// [`MIN_WEIGHT`] points, equal before (and where a loss is not positive and finite). Inverse-
/// error weighting is the classic combination of Bates & Granger (1969); the losses share one
/// decay and one set of matured points, so their ratio compares like with like.
pub fn member_weights(records: impl Iterator<Item = Option<(f32, f32)>> + Clone) -> impl Iterator<Item = f32> {
    let n = records.clone().count().max(1) as f32;
    let inverse = |r: Option<(f32, f32)>| {
        r.filter(|&(loss, w)| w >= MIN_WEIGHT && loss.is_finite() && loss > 0.0).map(|(loss, _)| loss.powf(-WEIGHT_POWER))
    };
    let total: Option<f32> = records.clone().map(inverse).sum();
    let total = total.filter(|t| t.is_finite() && *t > 0.0);
    records.map(move |r| match total {
        Some(t) => inverse(r).unwrap_or(0.0) / t,
        None => 1.0 / n,
    })
}

/// How far lead `k` (steps, 1-based) leans on the members' far-lead weights rather than their
/// near-lead ones in [`Candidates::combine`]: 0 up to lead 6 (30 min), 1 from lead 48 (4 h),
/// linear in between, so the combined curve has no jump where one weighting takes over.
pub fn far_share(k: usize) -> f32 {
    const FROM: f32 = 6.0;
    const TO: f32 = 48.0;
    ((k as f32 - FROM) / (TO - FROM)).clamp(0.0, 1.0)
}

/// [`far_share`] of leads 1..=[`schemas::HORIZON_STEPS`] (index `k` for lead `k + 1`).
static FAR_SHARES: std::sync::LazyLock<[f32; schemas::HORIZON_STEPS]> =
    std::sync::LazyLock::new(|| std::array::from_fn(|k| far_share(k + 1)));

/// The power of the inverse loss in [`member_weights`]. `just backtest`, Bitbrains tuning VMs
/// (with [`MARGIN`] 0.05), published P50 q-risk / series at or below the better naive: 0.5
/// 0.421 / 79 %, 1 0.420 / 80 %, 2 0.418 / 79 %, 3 0.418 / 77 %, 4 0.417 / 78 %. With
/// [`MARGIN`] 0.02, 2 gave 0.417 / 80 % (held-out VMs 0.375 / 85 %, from 0.377 / 82 % at
/// 1 and 0.05): the sharper weights lean on the member that is doing best, not all the way.
pub const WEIGHT_POWER: f32 = 2.0;

/// Whether every value of `f` is finite. It runs for every method and target of every server
/// each tick, so it is a fold the compiler vectorises: a value is finite when its exponent
/// bits are not all ones, so all are when the largest exponent field is below that (a fold
/// of `is_finite` with `&` did not vectorise and was 3 % of a tick).
fn is_finite(f: &TargetForecast) -> bool {
    const EXPONENT: u32 = 0x7f80_0000;
    let all = |v: &[f32]| v.iter().fold(0, |m: u32, x| m.max(x.to_bits() & EXPONENT)) < EXPONENT;
    all(&f.p10) & all(&f.p50) & all(&f.p90)
}

/// The method to take one part of a forecast from, given which candidates are usable, each
/// one's recent record on this server and which loss of it counts (`loss`: P50's or P90's;
/// see the module doc); `None` when no candidate is usable.
pub fn choose(
    usable: impl Fn(Method) -> bool,
    score: impl Fn(Method) -> Option<ServerScore>,
    loss: fn(&ServerScore) -> f32,
) -> Option<Method> {
    let proven = |m: Method| score(m).filter(|s| s.weight >= MIN_WEIGHT);
    let best = CANDIDATES
        .iter()
        .copied()
        .filter(|&m| usable(m))
        .filter_map(|m| proven(m).map(|s| (m, loss(&s))))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    if !usable(DEFAULT) {
        return best.map(|(m, _)| m).or_else(|| CANDIDATES.iter().copied().find(|&m| usable(m)));
    }
    match (best, proven(DEFAULT)) {
        (Some((m, l)), Some(d)) if l < (1.0 - MARGIN) * loss(&d) => Some(m),
        _ => Some(DEFAULT),
    }
}

/// [`choose`] by P50 loss.
pub fn p50_loss(s: &ServerScore) -> f32 {
    s.loss50
}

/// [`choose`] by P90 loss.
pub fn p90_loss(s: &ServerScore) -> f32 {
    s.loss90
}

/// Fills `out` with the published forecast: for each target any candidate forecasts, the P50
/// of the method chosen by P50 loss (naming it) with a P10/P90 band, kept around the P50
/// (`p10 <= p50 <= p90`), in [`Target::ALL`] order. The band is the proven candidates' bands
/// averaged per lead with [`band_weights`] (by recent P90 loss), or, while fewer than two are
/// proven, the band of the method [`choose`] picks by P90 loss.
pub fn publish(candidates: &Candidates, score: impl Fn(Method, Target) -> Option<ServerScore>, out: &mut Vec<TargetForecast>) {
    out.clear();
    for target in Target::ALL {
        // Each method's usable forecast, looked up (and checked finite) once per target.
        let usable: [Option<&TargetForecast>; Method::ALL.len()] = Method::ALL.map(|m| candidates.usable(m, target));
        let is_usable = |m: Method| usable[m.index()].is_some();
        let Some(mid) = choose(is_usable, |m| score(m, target), p50_loss).and_then(|m| usable[m.index()]) else {
            continue;
        };
        let mut f = mid.clone();
        let len = f.p50.len();
        // The proven candidates' bands and P90 losses, for the combined band.
        let mut proven: [Option<(&TargetForecast, f32)>; CANDIDATES.len()] = [None; CANDIDATES.len()];
        for (slot, &m) in proven.iter_mut().zip(&CANDIDATES) {
            let record = score(m, target).filter(|s| s.weight >= MIN_WEIGHT).map(|s| s.loss90);
            *slot = usable[m.index()].filter(|b| b.p50.len() == len).zip(record);
        }
        // The band goes into `f`'s P10/P90, then is kept around its P50 (zipped slices, no
        // indexing: the loops vectorise, and this runs per target per server).
        let banded = if proven.iter().flatten().count() >= 2 {
            let losses = proven.map(|p| p.map(|(_, loss)| loss));
            f.p10.fill(0.0);
            f.p90.fill(0.0);
            for ((b, _), w) in proven.iter().flatten().zip(band_weights(&losses).into_iter().flatten()) {
                for (o, x) in f.p10.iter_mut().zip(&b.p10) {
                    *o += w * x;
                }
                for (o, x) in f.p90.iter_mut().zip(&b.p90) {
                    *o += w * x;
                }
            }
            true
        } else {
            let band = choose(is_usable, |m| score(m, target), p90_loss).and_then(|m| usable[m.index()]);
            let other = band.filter(|b| b.method != f.method && b.p50.len() == len);
            if let Some(b) = other {
                f.p10.iter_mut().zip(&b.p10).for_each(|(o, x)| *o = *x);
                f.p90.iter_mut().zip(&b.p90).for_each(|(o, x)| *o = *x);
            }
            other.is_some()
        };
        if banded {
            for ((lo, hi), mid) in f.p10.iter_mut().zip(f.p90.iter_mut()).zip(&f.p50) {
                *lo = lo.min(*mid);
                *hi = hi.max(*mid);
            }
        }
        out.push(f);
    }
}

/// The power of the loss ratio in [`band_weights`]. Chosen on the Bitbrains tuning VMs
/// (`just backtest`, published P90 q-risk / series at or below the better naive at P90): the
/// single best band ([`choose`], before) 0.346 / 64 %, power 4 0.346 / 69 %, 8 0.342 / 71 %,
/// 12 0.341 / 69 %, 30 0.343 / 64 %; the held-out VMs at 8: 0.324 / 62 % to 0.321 / 72 %.
pub const BAND_POWER: f32 = 8.0;

/// Weights (summing to 1) of the bands whose recent P90 losses are `losses` (`None`: not a
/// proven candidate, weight `None`): `(best / loss)^`[`BAND_POWER`], so the best band weighs
/// most and one a few percent worse still counts. A soft choice: picking the single best band
/// switched on noise, and on several bursty VMs the published P90 was then worse than every
/// method's own. A loss that is not positive and finite weighs nothing; when no loss is, the
/// weights are equal.
pub fn band_weights<const N: usize>(losses: &[Option<f32>; N]) -> [Option<f32>; N] {
    let ok = |l: &f32| l.is_finite() && *l > 0.0;
    let best = losses.iter().flatten().copied().filter(ok).fold(f32::INFINITY, f32::min);
    let raw = losses.map(|l| l.map(|l| if ok(&l) && best.is_finite() { (best / l).powf(BAND_POWER) } else { 0.0 }));
    let total: f32 = raw.iter().flatten().sum();
    let n = raw.iter().flatten().count().max(1) as f32;
    raw.map(|w| w.map(|w| if total > 0.0 { w / total } else { 1.0 / n }))
}

#[cfg(test)]
#[path = "select_tests.rs"]
mod tests;
