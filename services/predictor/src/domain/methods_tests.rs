//! Tests of `methods.rs` (a file of their own to keep that one short).

use super::*;

fn forecast(method: Method, history: &[f32], target: Target) -> TargetForecast {
    let mut s = Scratch::default();
    let b = Basis::fresh(history, &mut s).unwrap();
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
    assert!(Basis::fresh(&[f32::NAN; 10], &mut Scratch::default()).is_none());
}

#[test]
fn all_curves_match_each_methods_own_curves() {
    let y: Vec<f32> = (0..HISTORY_STEPS).map(|s| 40.0 + 20.0 * ((s as f32) * 0.05).sin() + ((s * 7919) % 13) as f32).collect();
    let mut scratch = Scratch::default();
    let b = Basis::fresh(&y, &mut scratch).unwrap();
    let mut all: [TargetForecast; STATISTICAL.len()] = std::array::from_fn(|_| empty_forecast(Target::Cpu, 96));
    b.all_curves(&y, Target::Cpu, 96, &mut scratch, &mut all);
    for (f, m) in all.iter().zip(STATISTICAL) {
        assert_eq!(f, &forecast(m, &y, Target::Cpu), "{m:?}");
        assert_eq!(f.method, m);
    }
}

/// Every number of a basis, as bits (NaN included), to compare two bases exactly.
fn bits(b: &Basis) -> Vec<u32> {
    let (season, day) = (b.season.unwrap_or((f32::NAN, -1.0)), b.day);
    [b.last, b.level, b.slope, b.intercept, season.0, season.1, day.0, day.1, day.2].map(f32::to_bits).to_vec()
}

#[test]
fn a_constant_history_takes_the_short_path_with_the_general_paths_values() {
    let mut scratch = Scratch::default();
    let mut state = 7u32;
    let mut shortcut = 0;
    for c in [0.0_f32, -0.0, 0.38, 100.0, 1e-30, 65_504.0] {
        for n in [1, 2, 3, 4, 5, 6, 40, 47, 48, 49, 100, 288, 295, 296, 300, HISTORY_STEPS] {
            for gaps in [0_u32, 10, 50, 90] {
                let history: Vec<f32> = (0..n)
                    .map(|_| {
                        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        if (state >> 16) % 100 < gaps {
                            f32::NAN
                        } else {
                            c
                        }
                    })
                    .collect();
                let Some(last) = history.iter().rev().copied().find(|v| v.is_finite()) else { continue };
                let bands = Bands::new(&history, &mut scratch.values).expect("a value was reported");
                let fast = Basis::constant(&history, last, bands).expect("constant");
                let general = Basis::general(&history, last, bands, None, &mut scratch);
                assert_eq!(bits(&fast), bits(&general), "c {c} n {n} gaps {gaps}%: {fast:?} vs {general:?}");
                shortcut += 1;
            }
        }
    }
    assert!(shortcut > 300, "{shortcut} histories compared");
    // One differing value (even -0.0 beside 0.0) takes the general path.
    let mut y = vec![0.0_f32; 100];
    y[50] = -0.0;
    assert!(Basis::constant(&y, 0.0, Bands::new(&y, &mut scratch.values).unwrap()).is_none());
}

#[test]
fn a_reused_slope_is_kept_and_the_trend_starts_from_the_latest_steps() {
    // A disk filling 0.5 a step, then a cleanup: 20 points down, filling 2 a step since.
    let y: Vec<f32> = (0..60).map(|k| 50.0 + 0.5 * k as f32).collect();
    let mut scratch = Scratch::default();
    let before = Basis::fresh(&y, &mut scratch).unwrap();
    assert_eq!(before.fitted_slope(), Some(0.5));
    let mut later = y.clone();
    later.extend((1..=6).map(|k| 59.5 - 20.0 + 2.0 * k as f32));
    let bands = Bands::new(&later, &mut scratch.values).unwrap();
    let reused = Basis::with_slope(&later, bands, before.fitted_slope(), &mut scratch).unwrap();
    assert_eq!((reused.slope, reused.fitted_slope()), (0.5, Some(0.5)), "the slope given is kept");
    // The intercept is the median of the last 6 steps (41.5, 43.5 .. 51.5) projected to now
    // along 0.5 (44, 45.5, 47, 48.5, 50, 51.5), at the nearest rank: from the latest steps,
    // not from before the cleanup.
    assert_eq!(reused.intercept, 48.5, "{reused:?}");
    let refit = Basis::with_slope(&later, bands, None, &mut scratch).unwrap();
    assert_eq!(bits(&refit), bits(&Basis::new(&later, bands, &mut scratch).unwrap()), "no slope given: fitted here");
    // Too few steps for a slope: the trend is flat at the level and nothing is kept.
    let short = Basis::fresh(&[1.0, 2.0, 3.0], &mut scratch).unwrap();
    assert_eq!((short.fitted_slope(), short.intercept), (None, short.level));
}

#[test]
fn fill_keeps_each_targets_slope_with_its_bands_until_they_are_due() {
    use crate::bands::{ServerBands, REFRESH_STEPS};
    use crate::step::{step_end, step_start};
    use crate::window::ServerWindow;
    use schemas::{Metrics, Profile};
    let mut w = ServerWindow::new("ppgen001".into(), Profile::Generic, 0, HISTORY_STEPS);
    let (cache, mut st, mut c) = (std::sync::Mutex::new(ServerBands::default()), Statistical::default(), Candidates::default());
    let (mut history, mut scratch) = (Vec::new(), Scratch::default());
    // A disk filling with noise inside its band (no departure), so a slope fitted at any step
    // differs from the last's and a kept one is never fitted early.
    let (first, last) = (50, 50 + 2 * REFRESH_STEPS);
    let mut fitted_at = None;
    let mut kept = 0;
    for s in 0..=last {
        w.add(
            step_start(s),
            &Metrics { disk_usage_pct: Some(10.0 + 0.3 * s as f32 + 0.002 * (s * s) as f32 + noise(s)), ..Default::default() },
        );
        w.close_until(step_end(s));
        if s < first {
            continue;
        }
        st.recycle(&mut c);
        st.fill(&w, 0, &cache, 96, &mut c);
        let slope = cache.lock().unwrap().slopes[4].expect("a slope");
        w.history(Target::Disk, &mut history);
        let fresh = Basis::fresh(&history, &mut scratch).and_then(|b| b.fitted_slope()).expect("a slope");
        // Server id 0 is due when the step is a multiple of REFRESH_STEPS (and at its first fill).
        if s == first || s % REFRESH_STEPS == 0 {
            assert_eq!(slope, fresh, "step {s}: fitted again");
            fitted_at = Some(fresh);
        } else {
            assert_eq!(Some(slope), fitted_at, "step {s}: kept");
            assert_ne!(slope, fresh, "step {s}: the test's data must move the slope");
            kept += 1;
        }
    }
    assert_eq!(kept, 2 * REFRESH_STEPS - 2);
}

/// A repeating pattern of 13 deviations within +-0.9, as noise.
fn noise(s: i64) -> f32 {
    const PATTERN: [f32; 13] = [0.0, 0.8, -0.5, 0.3, -0.9, 0.6, -0.2, 0.9, -0.7, 0.1, 0.4, -0.4, 0.7];
    PATTERN[s.rem_euclid(13) as usize]
}

#[test]
fn a_kept_slope_the_latest_steps_leave_is_fitted_again_before_it_is_due() {
    use crate::bands::{ServerBands, REFRESH_STEPS};
    use crate::step::{step_end, step_start};
    use crate::window::ServerWindow;
    use schemas::{Metrics, Profile};
    let mut w = ServerWindow::new("ppgen001".into(), Profile::Generic, 0, HISTORY_STEPS);
    let (cache, mut st, mut c) = (std::sync::Mutex::new(ServerBands::default()), Statistical::default(), Candidates::default());
    let (mut history, mut scratch) = (Vec::new(), Scratch::default());
    // Flat at 40 with a little noise, then filling 2 points a step from the step after server
    // 0's refresh (due when the step is a multiple of REFRESH_STEPS) until the next one.
    let ramp = 8 * REFRESH_STEPS + 1;
    let disk = |s: i64| 40.0 + 0.2 * noise(s) + 2.0 * (s - ramp + 1).max(0) as f32;
    let mut kept = None;
    for s in 0..ramp + REFRESH_STEPS - 1 {
        w.add(step_start(s), &Metrics { disk_usage_pct: Some(disk(s)), ..Default::default() });
        w.close_until(step_end(s));
        if s < ramp - 2 * REFRESH_STEPS {
            continue;
        }
        st.recycle(&mut c);
        st.fill(&w, 0, &cache, 96, &mut c);
        let slope = cache.lock().unwrap().slopes[4].expect("a slope");
        w.history(Target::Disk, &mut history);
        let fresh = Basis::fresh(&history, &mut scratch).and_then(|b| b.fitted_slope()).expect("a slope");
        let departed = s >= ramp + DEPARTURE_STEPS as i64 - 1;
        if departed {
            assert_eq!(slope, fresh, "step {s}: fitted again as the ramp left the band");
        } else if s % REFRESH_STEPS == 0 {
            kept = Some(slope);
        } else if let Some(k) = kept {
            assert_eq!(slope, k, "step {s}: kept while the steps stay in the band");
        }
    }
    // The ramp moved the fit (Theil-Sen over 4 h moves slowly: 0.02 after 10 of its 48 steps);
    // a slope kept from before the ramp stays at 0.
    assert!(cache.lock().unwrap().slopes[4].unwrap() > kept.unwrap() + 0.01, "{:?} against {kept:?}", cache.lock().unwrap().slopes[4]);
}

#[test]
fn only_steps_that_all_leave_the_trends_band_on_one_side_depart() {
    let mut scratch = Scratch::default();
    let flat: Vec<f32> = (0..200).map(|s| 40.0 + noise(s)).collect();
    let bands = Bands::new(&flat, &mut scratch.values).unwrap();
    let with = |tail: &[f32]| [&flat[..], tail].concat();
    let mut check = |h: &[f32]| departs(h, 0.0, bands, &mut scratch.values);
    assert!(!check(&flat), "noise inside the band");
    assert!(!check(&with(&[40.0, 40.0, 98.0])), "one spike");
    assert!(!check(&with(&[60.0, 60.0, 40.0])), "two steps up, then back");
    assert!(!check(&with(&[60.0, 20.0, 60.0])), "out on both sides");
    assert!(check(&with(&[42.0, 44.0, 46.0])), "a ramp");
    assert!(check(&with(&[60.0, 60.0, 60.0])), "a level shift up");
    assert!(check(&with(&[20.0, 20.0, 20.0])), "a level shift down");
    assert!(!check(&with(&[60.0, f32::NAN, 60.0])), "an unreported step");
    // Along a kept slope of 2 a step, the same ramp is inside the band.
    let ramp: Vec<f32> = (0..200).map(|s| 2.0 * s as f32 + noise(s)).collect();
    assert!(!departs(&ramp, 2.0, bands, &mut scratch.values));
    assert!(departs(&ramp, 0.0, bands, &mut scratch.values), "a slope of 0 on the same ramp");
}
