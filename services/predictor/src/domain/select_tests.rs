//! Tests of `select.rs`: the P50's choice, the ensemble, the combined band.

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
    let close = |m: Method| if m == Method::Model { s(0.99, 50.0) } else { s(1.0, 50.0) };
    assert_eq!(choose(all, close, p50_loss), Some(DEFAULT), "1 % better is within the margin");
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
    assert_eq!(out.iter().map(|f| (f.target, f.method)).collect::<Vec<_>>(), [(Target::Cpu, Method::Model), (Target::Mem, Method::Level)]);
}

#[test]
fn finite_means_no_nan_and_no_infinity() {
    let f = |v: f32| TargetForecast { target: Target::Cpu, method: Method::Level, p10: vec![0.0; 5], p50: vec![1.0, v, -2.0], p90: vec![] };
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
    assert!((w[0] - 0.9).abs() < 1e-6 && (w[1] - 0.1).abs() < 1e-6, "{w:?}");
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
    assert!((e.p50[0] - 11.0).abs() < 1e-4, "P50 leans to the model: {}", e.p50[0]);
    assert!((e.p90[0] - 20.0).abs() < 1e-4, "P90 leans to the level: {}", e.p90[0]);
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
    assert!((e.p50[0] - 11.0).abs() < 1e-4 && (e.p50[95] - 19.0).abs() < 1e-4, "{} {}", e.p50[0], e.p50[95]);
    assert!(e.p50.windows(2).all(|w| w[1] >= w[0] && w[1] - w[0] < 0.25), "monotone and smooth between");
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
    // The band leans on the climatology's (by far the best P90 loss), not exactly: the others
    // keep a weight of (1/5)^8 and (1/9)^8.
    let (f, near) = (&out[0], |a: f32, b: f32| (a - b).abs() < 1e-3);
    assert_eq!((f.method, f.p50[0]), (Method::Trend, 50.0));
    assert!(near(f.p10[0], 10.0) && near(f.p90[0], 60.0), "{} {}", f.p10[0], f.p90[0]);
    // With one proven candidate, the band is the one chosen by P90 loss: here its own.
    let one = |m: Method, _| if m == Method::Trend { Some(rec(1.0, 9.0, 50.0)) } else { None };
    publish(&c, one, &mut out);
    assert_eq!((out[0].p10[0], out[0].p90[0]), (49.0, 51.0));
}

#[test]
fn bands_weigh_by_how_close_their_loss_is_to_the_best() {
    let w = band_weights(&[Some(1.0), Some(1.0), None]);
    assert_eq!(w, [Some(0.5), Some(0.5), None], "equal losses, equal weights; no record, no weight");
    let w = band_weights(&[Some(1.0), Some(1.05)]).map(Option::unwrap);
    let ratio = (1.0_f32 / 1.05).powf(BAND_POWER);
    assert!((w[1] / w[0] - ratio).abs() < 1e-5 && w[1] > 0.3, "a band 5 % worse still counts: {w:?}");
    let w = band_weights(&[Some(1.0), Some(2.0)]).map(Option::unwrap);
    assert!(w[0] > 0.99, "one twice as bad hardly counts: {w:?}");
    let w = band_weights(&[Some(1e-30), Some(1e-20), Some(f32::NAN), Some(0.0)]).map(Option::unwrap);
    assert!(w[0] > 0.999 && w[2] == 0.0 && w[3] == 0.0 && (w.iter().sum::<f32>() - 1.0).abs() < 1e-6, "tiny losses do not overflow: {w:?}");
    assert_eq!(band_weights(&[Some(f32::NAN), Some(0.0)]), [Some(0.5), Some(0.5)], "no usable loss: equal");
}

#[test]
fn the_combined_band_is_each_leads_weighted_mean_around_the_p50() {
    let f = |method, lo: Vec<f32>, hi: Vec<f32>| TargetForecast { target: Target::Disk, method, p50: vec![50.0; 2], p10: lo, p90: hi };
    let mut c = Candidates::default();
    c.of_mut(Method::Level).push(f(Method::Level, vec![40.0, 30.0], vec![60.0, 70.0]));
    c.of_mut(Method::Trend).push(f(Method::Trend, vec![48.0, 60.0], vec![52.0, 56.0]));
    let equal = |_: Method, _| Some(rec(1.0, 1.0, 50.0));
    let mut out = Vec::new();
    publish(&c, equal, &mut out);
    assert_eq!(out[0].p10, [44.0, 45.0]);
    assert_eq!(out[0].p90, [56.0, 63.0]);
    // A mean P10 above the P50 is held at it.
    c.of_mut(Method::Level)[0].p10 = vec![40.0, 60.0];
    publish(&c, equal, &mut out);
    assert_eq!(out[0].p10, [44.0, 50.0]);
}
