//! Live accuracy: hand-computed scores, a perfect forecast, the rolling window, ordering,
//! persistence and the memory bound.

use predictor::accuracy::{pinball, AccuracyTracker, Kept, Pending, LEADS, SLOTS};
use schemas::{Metrics, Target, TargetForecast, STEP_MS};

const T0: i64 = 1_800_000_000_000 / STEP_MS * STEP_MS;

fn at(step: i64) -> i64 {
    T0 + step * STEP_MS
}

fn mem(v: f32) -> Metrics {
    Metrics { mem_used_pct: Some(v), ..Default::default() }
}

/// A memory forecast whose k-th step (1-based) is `f(k)` for every quantile triple.
fn mem_forecast(f: impl Fn(usize) -> (f32, f32, f32)) -> TargetForecast {
    let (mut p10, mut p50, mut p90) = (vec![], vec![], vec![]);
    for k in 1..=96 {
        let (a, b, c) = f(k);
        p10.push(a);
        p50.push(b);
        p90.push(c);
    }
    TargetForecast { target: Target::Mem, method: schemas::Method::Model, p10, p50, p90 }
}

#[test]
fn pinball_matches_its_definition() {
    assert_eq!(pinball(0.5, 14.0, 10.0), 2.0);
    assert!((pinball(0.9, 14.0, 12.0) - 1.8).abs() < 1e-12);
    assert!((pinball(0.9, 10.0, 12.0) - 0.2).abs() < 1e-12, "over-forecast costs 1 − q");
    assert_eq!(pinball(0.9, 7.0, 7.0), 0.0);
}

#[test]
fn hand_computed_scores() {
    let mut acc = AccuracyTracker::new(288);
    // Issued at step 0: lead 1 says 8/10/12; lead 6 says 20/30/40.
    acc.record_forecast("db1", at(0), &[mem_forecast(|k| if k == 1 { (8.0, 10.0, 12.0) } else { (20.0, 30.0, 40.0) })]);
    assert!(acc.report().is_empty(), "nothing matured yet");
    // Step 1 happened at 14: outside [8, 12]; pinball P50 = 0.5·4 = 2, P90 = 0.9·2 = 1.8.
    assert_eq!(acc.record_actual("db1", at(1), &mem(14.0)), 1);
    // Step 6 happened at 25: inside [20, 40]; P50 = 0.5·5 = 2.5, P90 = 0.1·15 = 1.5.
    assert_eq!(acc.record_actual("db1", at(6), &mem(25.0)), 1);
    let r = acc.report();
    assert_eq!(r.len(), 1);
    let m = &r[0];
    assert_eq!((m.target, m.samples), (Target::Mem, 2));
    assert!((m.qrisk_p50 - 2.0 * 4.5 / 39.0).abs() < 1e-6, "{m:?}");
    assert!((m.qrisk_p90 - 2.0 * 3.3 / 39.0).abs() < 1e-6, "{m:?}");
    assert_eq!(m.coverage, 0.5);
    // The same actual again scores nothing twice; unknown servers score nothing.
    assert_eq!(acc.record_actual("db1", at(1), &mem(14.0)), 0);
    assert_eq!(acc.record_actual("nobody", at(1), &mem(14.0)), 0);
}

/// A method's tracker keeps no P10s: it scores the same points, losses and record as one that
/// keeps them, counts none of them covered, and holds a third fewer half floats.
#[test]
fn a_tracker_without_p10s_scores_the_same_losses_and_no_coverage() {
    let (mut band, mut losses) = (Pending::new(0), Pending::keeping(Kept::Losses, 0));
    let (mut n, mut sums) = (0, Vec::new());
    for step in 0..300 {
        let actual = mem(truth(step));
        let (a, b) = (band.record_actual(step, &actual), losses.record_actual(step, &actual));
        if let (Some(a), Some(b)) = (a, b) {
            let (a, b) = (a[1], b[1]);
            assert_eq!((a.n, a.pin50, a.pin90, a.abs), (b.n, b.pin50, b.pin90, b.abs), "step {step}");
            assert_eq!(b.covered, 0, "no P10, no coverage");
            n += a.n;
            sums.push(a.covered);
        } else {
            assert_eq!(a.is_some(), b.is_some(), "step {step}");
        }
        let f = [mem_forecast(|k| (truth(step + k as i64) - 3.0, truth(step + k as i64) + 0.5, truth(step + k as i64) + 2.0))];
        band.record_forecast(step, &f);
        losses.record_forecast(step, &f);
    }
    assert!(n > 500, "{n} points scored");
    assert!(sums.iter().sum::<u32>() > 0, "the banded tracker counts coverage");
    assert_eq!(band.record(), losses.record(), "the same record, which the choice reads");
    assert_eq!(Kept::Band.per_target() * 2, Kept::Losses.per_target() * 3);
}

fn truth(step: i64) -> f32 {
    40.0 + (step % 17) as f32 + 0.5 * (step % 5) as f32
}

#[test]
fn a_perfect_forecast_scores_zero_loss_and_full_coverage() {
    let mut acc = AccuracyTracker::new(10_000);
    let steps = 300_i64;
    for s in 0..steps {
        // The step that just closed happened as predicted, then the next forecast is issued.
        acc.record_actual("web1", at(s), &mem(truth(s)));
        acc.record_forecast(
            "web1",
            at(s),
            &[mem_forecast(|k| {
                let y = truth(s + k as i64);
                (y, y, y)
            })],
        );
    }
    let r = acc.report();
    let m = &r[0];
    let expected: u64 = LEADS
        .iter()
        .map(|&(lead, stride)| {
            (0..steps).filter(|i| i - i64::from(lead) >= 0 && (i - i64::from(lead)) % i64::from(stride) == 0).count() as u64
        })
        .sum();
    assert_eq!((m.samples, m.qrisk_p50, m.qrisk_p90, m.coverage), (expected, 0.0, 0.0, 1.0));
}

#[test]
fn forecast_recorded_before_the_same_steps_actual_is_still_scored() {
    let mut acc = AccuracyTracker::new(288);
    for s in 0..200 {
        acc.record_forecast("a", at(s), &[mem_forecast(|_| (40.0, 50.0, 60.0))]);
        acc.record_actual("a", at(s), &mem(50.0));
    }
    let mut acc2 = AccuracyTracker::new(288);
    for s in 0..200 {
        acc2.record_actual("a", at(s), &mem(50.0));
        acc2.record_forecast("a", at(s), &[mem_forecast(|_| (40.0, 50.0, 60.0))]);
    }
    assert_eq!(acc.report(), acc2.report());
    assert!(acc.report()[0].samples > 0);
}

#[test]
fn old_scores_leave_the_rolling_window() {
    let mut acc = AccuracyTracker::new(12);
    // A bad forecast early, perfect ones later.
    for s in 0..120 {
        acc.record_actual("a", at(s), &mem(50.0));
        let guess = if s < 10 { 90.0 } else { 50.0 };
        acc.record_forecast("a", at(s), &[mem_forecast(|_| (guess, guess, guess))]);
    }
    let m = &acc.report()[0];
    assert_eq!((m.qrisk_p50, m.coverage), (0.0, 1.0), "{m:?}");
}

#[test]
fn the_tracker_survives_a_restart() {
    let mut acc = AccuracyTracker::default();
    for s in 0..30 {
        acc.record_actual("a", at(s), &mem(50.0 + s as f32));
        acc.record_forecast("a", at(s), &[mem_forecast(|k| (45.0 + k as f32, 50.0 + k as f32, 55.0 + k as f32))]);
    }
    let bytes = rmp_serde::to_vec_named(&acc).expect("encode");
    let mut back: AccuracyTracker = rmp_serde::from_slice(&bytes).expect("decode");
    assert_eq!(back.report(), acc.report());
    for s in 30..40 {
        for t in [&mut acc, &mut back] {
            t.record_actual("a", at(s), &mem(50.0 + s as f32));
        }
    }
    assert_eq!(back.report(), acc.report());
    // The window alone and one server's pending forecasts persist separately too.
    let mut parts = AccuracyTracker::default();
    parts.set_scores(acc.scores().clone());
    parts.set_pending("a".into(), acc.pending("a").cloned().expect("pending"));
    assert_eq!(parts.report(), acc.report());
}

#[test]
fn memory_stays_bounded_for_ten_thousand_servers() {
    let mut acc = AccuracyTracker::default();
    let full: Vec<TargetForecast> = Target::ALL
        .iter()
        .map(|&target| TargetForecast {
            target,
            method: schemas::Method::Model,
            p10: vec![1.0; 96],
            p50: vec![2.0; 96],
            p90: vec![3.0; 96],
        })
        .collect();
    let names: Vec<String> = (0..10_000).map(|i| format!("ppweb{i:05}")).collect();
    for s in 0..150 {
        for n in &names[..if s < 149 { 10 } else { names.len() }] {
            acc.record_forecast(n, at(s), &full);
        }
    }
    let bytes = acc.approx_bytes();
    println!("accuracy tracker: {SLOTS} slots/server, ~{} B/server, ~{:.1} MB for 10,000 servers", bytes / 10_000, bytes as f64 / 1e6);
    assert!(bytes < 50_000_000, "{bytes}");
    // Servers that stop getting forecasts are pruned once nothing of theirs can mature.
    acc.prune(at(149 + 96));
    assert_eq!(acc.servers(), 10_000);
    acc.prune(at(149 + 97));
    assert_eq!(acc.servers(), 0);
}

#[test]
fn lead_weights_share_the_horizons_leads_out_between_the_scored_ones() {
    use predictor::accuracy::LEAD_WEIGHTS;
    let total: f32 = LEAD_WEIGHTS.iter().sum();
    assert!((total - schemas::HORIZON_STEPS as f32).abs() < 1e-3, "{total}");
    assert_eq!(LEAD_WEIGHTS, [3.0, 5.5, 21.0, 42.0, 24.5], "leads 1-3, 4-8 and half of 9, ...");
}

#[test]
fn a_servers_record_weighs_the_long_leads_by_how_many_they_stand_for() {
    // Two methods of one server: `near` is right for the first hour and 10 off after it,
    // `far` is 2 off for the first hour and right after it. Over the 96 published leads `far`
    // is the better forecast, although most scored points are short leads.
    let mut near = AccuracyTracker::default();
    let mut far = AccuracyTracker::default();
    for step in 0..400 {
        near.record_forecast(
            "db1",
            at(step),
            &[mem_forecast(|k| {
                let y = truth(step + k as i64);
                let v = if k > 12 { y + 10.0 } else { y };
                (v, v, v)
            })],
        );
        far.record_forecast(
            "db1",
            at(step),
            &[mem_forecast(|k| {
                let y = truth(step + k as i64);
                let v = if k > 12 { y } else { y + 2.0 };
                (v, v, v)
            })],
        );
        near.record_actual("db1", at(step), &mem(truth(step)));
        far.record_actual("db1", at(step), &mem(truth(step)));
    }
    let (n, f) = (
        near.server_scores("db1")[predictor::accuracy::target_index(Target::Mem)],
        far.server_scores("db1")[predictor::accuracy::target_index(Target::Mem)],
    );
    let (n, f) = (n.expect("scored"), f.expect("scored"));
    assert!(f.loss50 < n.loss50 && f.loss90 < n.loss90, "near {n:?} far {f:?}");
}
