//! Forecast curves are continuous where the data is: servers of every profile that report the
//! same steady values for four hours get, from the shipped model and from every statistical
//! method, curves with no jump between neighbouring steps — neither at a clock hour or midnight
//! (the Sunday-to-Monday one included, where a model trained on step-shaped days jumped) nor
//! every other step (the saw-tooth of a decoder that emits two steps per position).
//! Real ONNX Runtime on `models/tft.onnx`; no NATS (the engine alone).

use crate::common;

use std::cell::RefCell;

use schemas::{Method, MetricRecord, Profile, Target, STEP_MS};

/// Largest step-to-step change of a P50 curve allowed on steady input, per target unit: a
/// tenth of the gap between a typical warning and critical line for percentages.
fn max_jump(t: Target) -> f32 {
    match t {
        Target::Load => 0.2,
        Target::NetIn | Target::NetOut => 0.5,
        _ => 1.0,
    }
}

#[test]
fn steady_servers_get_curves_without_jumps_across_midnight() {
    let (mut engine, mut reg) = common::engine_alone();
    // 2026-11-29 (a Sunday) 20:00 UTC: the 8-hour horizon crosses midnight into Monday.
    let sunday_20h = 1_795_982_400_000;
    let steps = 48;
    let t0 = sunday_20h - steps * STEP_MS;
    let source = reg.source_id(common::SOURCE, t0);
    let names: Vec<String> = Profile::ALL.iter().map(|p| format!("steady-{}", p.name().replace('_', "-"))).collect();
    let seen = RefCell::new(Vec::new());
    for s in 0..steps {
        let start = t0 + s * STEP_MS;
        for (name, profile) in names.iter().zip(Profile::ALL) {
            reg.apply(source, &MetricRecord { server: name.clone(), ts_ms: start, profile: Some(profile), metrics: common::base_record() });
        }
        reg.advance(source, start + STEP_MS, start + STEP_MS);
        let due = reg.take_due();
        seen.borrow_mut().clear();
        engine
            .compute_observed(&reg, &due, start + STEP_MS, 1 << 20, &mut |w, candidates, _| {
                for m in Method::ALL {
                    for f in candidates.of(m) {
                        seen.borrow_mut().push((w.name.clone(), m, f.clone()));
                    }
                }
            })
            .expect("tick");
    }
    let seen = seen.into_inner();
    assert!(seen.iter().any(|(_, m, _)| *m == Method::Model), "the model forecast every server");
    let mut worst = Vec::new();
    for (server, method, f) in &seen {
        let jump = f.p50.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0f32, f32::max);
        if jump > max_jump(f.target) {
            let at = f.p50.windows(2).position(|w| (w[1] - w[0]).abs() == jump).unwrap_or(0) + 1;
            worst.push(format!("{server} {method:?} {:?}: {jump:.2} at step {at}", f.target));
        }
    }
    assert!(worst.is_empty(), "curves jump on steady input:\n{}", worst.join("\n"));
}
