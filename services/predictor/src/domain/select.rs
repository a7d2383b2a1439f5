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
//! The rule, applied twice per target: the P50 curve comes from the method with the lowest
//! recent P50 pinball loss, the P10/P90 band from the one with the lowest recent P90 loss
//! (choosing them apart was worth 2 points of P50 q-risk and 8 points of "series at or below the
//! better naive" at P90 on the Bitbrains tuning VMs). Tried and dropped: choosing the band once
//! by the near leads' P90 loss and once by the far leads', blended over the leads as the
//! ensemble blends its weights. `just backtest` (with a model retrained on the current
//! generator, `tft-20261130-c4db7275`, not shipped) liked it: P90 q-risk 0.324 to 0.322 on the
//! held-out VMs (at or below the better naive 62 % to 70 %), CPU breach F1 at 30 min 0.26 to
//! 0.31; but the far leads' band then often came from a method whose P90 still held a past
//! spike, so an alert stayed open for 16 to 24 steps after a disk came back from 99 % (within
//! 12 before; `takeover.rs`). The same split for
//! the P50 made it worse (held-out VMs 0.376 to 0.381). Each choice is the [`DEFAULT`] method (the
//! ensemble: no one member's failure dominates it) until another candidate has [`MIN_WEIGHT`] scored points
//! and a decayed loss at least [`MARGIN`] below the default's; then the candidate with the
//! lowest loss. The published forecast names the P50's method. A candidate whose curves are not
//! all finite is never published; a target none of whose candidates is usable is left out.

use schemas::{Method, Target, TargetForecast};

use crate::accuracy::ServerScore;

/// The methods that may be published. Last value is scored beside them as the baseline, never
/// published: on one spike it forecasts the spike for 8 hours.
pub const CANDIDATES: [Method; 7] =
    [Method::Model, Method::Level, Method::SeasonalNaive, Method::Trend, Method::Climatology, Method::Blend, Method::Ensemble];

/// The members of [`Method::Ensemble`]: methods whose errors differ in kind (a learned model,
/// a flat line at now, yesterday's curve, the day's range), so their mean cancels some of each.
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
pub const DEFAULT: Method = Method::Ensemble;

/// A candidate must beat the default's recent loss by this share to replace it (so a tie does
/// not flip the published method back and forth).
pub const MARGIN: f32 = 0.05;

/// Decayed scored points a candidate needs before it can replace the default: about an hour of
/// steps at the short leads.
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
}

impl Candidates {
    pub fn clear(&mut self) {
        self.by_method.iter_mut().for_each(Vec::clear);
    }

    /// Moves every forecast into `pool` (so their buffers can be reused), leaving `self` empty.
    pub fn drain_into(&mut self, pool: &mut Vec<TargetForecast>) {
        for v in &mut self.by_method {
            pool.append(v);
        }
        pool.append(&mut self.spare);
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

/// The power of the inverse loss in [`member_weights`].
pub const WEIGHT_POWER: f32 = 1.0;

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
/// of the method chosen by P50 loss (naming it) with the P10/P90 band of the method chosen by
/// P90 loss, kept around the P50 (`p10 <= p50 <= p90`), in [`Target::ALL`] order.
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
        let band = choose(is_usable, |m| score(m, target), p90_loss).and_then(|m| usable[m.index()]);
        if let Some(b) = band.filter(|b| b.method != f.method && b.p50.len() == f.p50.len()) {
            for k in 0..f.p50.len() {
                f.p10[k] = b.p10[k].min(f.p50[k]);
                f.p90[k] = b.p90[k].max(f.p50[k]);
            }
        }
        out.push(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record whose losses are the same at the near and the far leads (half each).
    fn rec(loss50: f32, loss90: f32, weight: f32) -> ServerScore {
        ServerScore { loss50, loss90, weight, near50: loss50 / 2.0, near90: loss90 / 2.0 }
    }

    fn s(loss: f32, weight: f32) -> Option<ServerScore> {
        Some(rec(loss, loss, weight))
    }

    #[test]
    fn the_default_holds_until_another_is_proven_better_by_the_margin() {
        let all = |_| true;
        assert_eq!(choose(all, |_| None, p50_loss), Some(DEFAULT), "nothing scored yet");
        let close = |m: Method| if m == Method::Model { s(0.97, 50.0) } else { s(1.0, 50.0) };
        assert_eq!(choose(all, close, p50_loss), Some(DEFAULT), "3 % better is within the margin");
        let better = |m: Method| if m == Method::Trend { s(0.5, 50.0) } else { s(1.0, 50.0) };
        assert_eq!(choose(all, better, p50_loss), Some(Method::Trend));
        let unproven = |m: Method| if m == Method::Trend { s(0.1, 3.0) } else { s(1.0, 50.0) };
        assert_eq!(choose(all, unproven, p50_loss), Some(DEFAULT), "too few scored points");
    }

    #[test]
    fn unusable_candidates_are_skipped_and_last_value_is_never_published() {
        let scores = |m: Method| {
            if m == Method::LastValue {
                s(0.0, 99.0)
            } else if m == Method::Model {
                s(0.2, 50.0)
            } else {
                s(1.0, 50.0)
            }
        };
        assert_eq!(choose(|_| true, scores, p50_loss), Some(Method::Model));
        assert_eq!(choose(|m| m != Method::Model, scores, p50_loss), Some(DEFAULT), "a non-finite model forecast is not published");
        assert_eq!(choose(|m| m == Method::Trend, |_| None, p50_loss), Some(Method::Trend), "the default unusable: any usable one");
        assert_eq!(choose(|_| false, scores, p50_loss), None);
    }

    #[test]
    fn publish_takes_each_targets_choice_and_drops_non_finite_curves() {
        let f = |target, method, v: f32| TargetForecast { target, method, p10: vec![v], p50: vec![v], p90: vec![v] };
        let mut c = Candidates::default();
        c.of_mut(Method::Model).extend([f(Target::Cpu, Method::Model, 1.0), f(Target::Mem, Method::Model, f32::NAN)]);
        c.of_mut(Method::Level).extend([f(Target::Cpu, Method::Level, 2.0), f(Target::Mem, Method::Level, 3.0)]);
        let model_best = |m: Method, _| if m == Method::Model { s(0.1, 50.0) } else { s(1.0, 50.0) };
        let mut out = Vec::new();
        publish(&c, model_best, &mut out);
        assert_eq!(
            out.iter().map(|f| (f.target, f.method)).collect::<Vec<_>>(),
            [(Target::Cpu, Method::Model), (Target::Mem, Method::Level)]
        );
    }

    #[test]
    fn finite_means_no_nan_and_no_infinity() {
        let f =
            |v: f32| TargetForecast { target: Target::Cpu, method: Method::Level, p10: vec![0.0; 5], p50: vec![1.0, v, -2.0], p90: vec![] };
        for v in [0.0, -0.0, f32::MAX, f32::MIN, f32::MIN_POSITIVE, 1e-45, -1e-45] {
            assert!(is_finite(&f(v)), "{v}");
        }
        for v in [f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            assert!(!is_finite(&f(v)), "{v}");
        }
    }

    #[test]
    fn members_weigh_equally_until_all_are_proven_then_by_inverse_loss() {
        let w: Vec<f32> = member_weights([Some((1.0, 50.0)), None].into_iter()).collect();
        assert_eq!(w, [0.5, 0.5], "one member without a record: equal");
        let w: Vec<f32> = member_weights([Some((1.0, 50.0)), Some((3.0, 3.0))].into_iter()).collect();
        assert_eq!(w, [0.5, 0.5], "one member not yet proven: equal");
        let w: Vec<f32> = member_weights([Some((1.0, 50.0)), Some((3.0, 50.0))].into_iter()).collect();
        assert!((w[0] - 0.75).abs() < 1e-6 && (w[1] - 0.25).abs() < 1e-6, "{w:?}");
        let w: Vec<f32> = member_weights([Some((0.0, 50.0)), Some((3.0, 50.0))].into_iter()).collect();
        assert_eq!(w, [0.5, 0.5], "a zero loss gives no weight to divide by");
    }

    #[test]
    fn the_ensemble_mixes_p50s_by_p50_loss_and_bands_by_p90_loss() {
        let f = |method, v: f32| TargetForecast { target: Target::Cpu, method, p10: vec![v - 1.0], p50: vec![v], p90: vec![v + 1.0] };
        let mut c = Candidates::default();
        c.of_mut(Method::Model).push(f(Method::Model, 10.0));
        c.of_mut(Method::Level).push(f(Method::Level, 20.0));
        let score = |m: Method, _| match m {
            Method::Model => Some(rec(1.0, 3.0, 50.0)),
            _ => Some(rec(3.0, 1.0, 50.0)),
        };
        c.combine(score);
        let e = &c.of(Method::Ensemble)[0];
        assert!((e.p50[0] - 12.5).abs() < 1e-4, "P50 leans to the model: {}", e.p50[0]);
        assert!((e.p90[0] - 18.5).abs() < 1e-4, "P90 leans to the level: {}", e.p90[0]);
        // Near and far leads weighted apart: the model best near, the level far; in between
        // the weights move smoothly, so the curve has no jump.
        let mut c = Candidates::default();
        let flat = |method, v: f32| TargetForecast { target: Target::Cpu, method, p10: vec![v; 96], p50: vec![v; 96], p90: vec![v; 96] };
        c.of_mut(Method::Model).push(flat(Method::Model, 10.0));
        c.of_mut(Method::Level).push(flat(Method::Level, 20.0));
        let split = |m: Method, _| match m {
            Method::Model => Some(ServerScore { loss50: 4.0, loss90: 4.0, weight: 50.0, near50: 1.0, near90: 1.0 }),
            _ => Some(ServerScore { loss50: 4.0, loss90: 4.0, weight: 50.0, near50: 3.0, near90: 3.0 }),
        };
        c.combine(split);
        let e = &c.of(Method::Ensemble)[0];
        assert!((e.p50[0] - 12.5).abs() < 1e-4 && (e.p50[95] - 17.5).abs() < 1e-4, "{} {}", e.p50[0], e.p50[95]);
        assert!(e.p50.windows(2).all(|w| w[1] >= w[0] && w[1] - w[0] < 0.2), "monotone and smooth between");
        c.of_mut(Method::Level).clear();
        c.combine(score);
        assert!(c.of(Method::Ensemble).is_empty(), "one member is no ensemble");
    }

    #[test]
    fn the_p50_and_the_band_are_chosen_apart() {
        let f = |method, mid: f32, lo: f32, hi: f32| TargetForecast {
            target: Target::Cpu,
            method,
            p10: vec![lo; 2],
            p50: vec![mid; 2],
            p90: vec![hi; 2],
        };
        let mut c = Candidates::default();
        c.of_mut(Method::Trend).push(f(Method::Trend, 50.0, 49.0, 51.0));
        c.of_mut(Method::Climatology).push(f(Method::Climatology, 30.0, 10.0, 60.0));
        c.of_mut(Method::Level).push(f(Method::Level, 40.0, 35.0, 45.0));
        let score = |m: Method, _| match m {
            Method::Trend => Some(rec(1.0, 9.0, 50.0)),
            Method::Climatology => Some(rec(9.0, 1.0, 50.0)),
            _ => Some(rec(5.0, 5.0, 50.0)),
        };
        let mut out = Vec::new();
        publish(&c, score, &mut out);
        assert_eq!((out[0].method, out[0].p50[0], out[0].p10[0], out[0].p90[0]), (Method::Trend, 50.0, 10.0, 60.0));
    }
}
