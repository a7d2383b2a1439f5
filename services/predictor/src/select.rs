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
//! The rule: the [`DEFAULT`] method (the recent level: robust to one spike, never worse than
//! last value by much) is published until another candidate has [`MIN_WEIGHT`] scored points
//! and a decayed loss at least [`MARGIN`] below the default's; then the candidate with the
//! lowest loss. A candidate whose curves are not all finite is never published; a target none
//! of whose candidates is usable is left out of the forecast.

use schemas::{Method, Target, TargetForecast};

use crate::accuracy::ServerScore;

/// The methods that may be published. Last value is scored beside them as the baseline, never
/// published: on one spike it forecasts the spike for 8 hours.
pub const CANDIDATES: [Method; 4] = [Method::Model, Method::Level, Method::SeasonalNaive, Method::Trend];

/// Published while nothing has proven better on this server.
pub const DEFAULT: Method = Method::Level;

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
}

impl Candidates {
    pub fn clear(&mut self) {
        self.by_method.iter_mut().for_each(Vec::clear);
    }

    pub fn of(&self, method: Method) -> &[TargetForecast] {
        &self.by_method[method.index()]
    }

    pub fn of_mut(&mut self, method: Method) -> &mut Vec<TargetForecast> {
        &mut self.by_method[method.index()]
    }

    /// `method`'s forecast of `target`, if it has one whose values are all finite.
    pub fn usable(&self, method: Method, target: Target) -> Option<&TargetForecast> {
        self.of(method).iter().find(|f| f.target == target).filter(|f| is_finite(f))
    }
}

fn is_finite(f: &TargetForecast) -> bool {
    f.p10.iter().chain(&f.p50).chain(&f.p90).all(|v| v.is_finite())
}

/// The method to publish for one target, given which candidates are usable and each one's
/// recent record on this server (see the module doc); `None` when no candidate is usable.
pub fn choose(usable: impl Fn(Method) -> bool, score: impl Fn(Method) -> Option<ServerScore>) -> Option<Method> {
    let proven = |m: Method| score(m).filter(|s| s.weight >= MIN_WEIGHT);
    let best = CANDIDATES
        .iter()
        .copied()
        .filter(|&m| usable(m))
        .filter_map(|m| proven(m).map(|s| (m, s.loss)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    if !usable(DEFAULT) {
        return best.map(|(m, _)| m).or_else(|| CANDIDATES.iter().copied().find(|&m| usable(m)));
    }
    match (best, proven(DEFAULT)) {
        (Some((m, loss)), Some(d)) if loss < (1.0 - MARGIN) * d.loss => Some(m),
        _ => Some(DEFAULT),
    }
}

/// Fills `out` with the published forecast: for each target any candidate forecasts, the
/// chosen method's curves (each naming its method), in [`Target::ALL`] order.
pub fn publish(candidates: &Candidates, score: impl Fn(Method, Target) -> Option<ServerScore>, out: &mut Vec<TargetForecast>) {
    out.clear();
    for target in Target::ALL {
        let usable = |m: Method| candidates.usable(m, target).is_some();
        if let Some(f) = choose(usable, |m| score(m, target)).and_then(|m| candidates.usable(m, target)) {
            out.push(f.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(loss: f32, weight: f32) -> Option<ServerScore> {
        Some(ServerScore { loss, weight })
    }

    #[test]
    fn the_default_holds_until_another_is_proven_better_by_the_margin() {
        let all = |_| true;
        assert_eq!(choose(all, |_| None), Some(DEFAULT), "nothing scored yet");
        let close = |m: Method| if m == Method::Model { s(0.97, 50.0) } else { s(1.0, 50.0) };
        assert_eq!(choose(all, close), Some(DEFAULT), "3 % better is within the margin");
        let better = |m: Method| if m == Method::Trend { s(0.5, 50.0) } else { s(1.0, 50.0) };
        assert_eq!(choose(all, better), Some(Method::Trend));
        let unproven = |m: Method| if m == Method::Trend { s(0.1, 3.0) } else { s(1.0, 50.0) };
        assert_eq!(choose(all, unproven), Some(DEFAULT), "too few scored points");
    }

    #[test]
    fn unusable_candidates_are_skipped_and_last_value_is_never_published() {
        let scores = |m: Method| if m == Method::LastValue { s(0.0, 99.0) } else if m == Method::Model { s(0.2, 50.0) } else { s(1.0, 50.0) };
        assert_eq!(choose(|_| true, scores), Some(Method::Model));
        assert_eq!(choose(|m| m != Method::Model, scores), Some(DEFAULT), "a non-finite model forecast is not published");
        assert_eq!(choose(|m| m == Method::Trend, |_| None), Some(Method::Trend), "the default unusable: any usable one");
        assert_eq!(choose(|_| false, scores), None);
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
        assert_eq!(out.iter().map(|f| (f.target, f.method)).collect::<Vec<_>>(), [(Target::Cpu, Method::Model), (Target::Mem, Method::Level)]);
    }
}
