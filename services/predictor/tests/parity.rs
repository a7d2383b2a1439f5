//! Rust-side parity: the predictor's `ort` session on a model gives the outputs recorded with
//! Python onnxruntime (tiny test model) or PyTorch (the real model's `models/golden.json`),
//! within 1e-4. Real ONNX Runtime, real ONNX files.

mod common;

use std::path::Path;

use predictor::model::{Model, Outputs};
use serde_json::Value;

/// Flattens nested JSON arrays of numbers (any depth) in row-major order.
fn flat(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flat(i, out)),
        Value::Number(n) => out.push(n.as_f64().unwrap_or(f64::NAN)),
        other => panic!("golden value is not a number or array: {other}"),
    }
}

fn tensor(case: &Value, group: &str, name: &str) -> Vec<f64> {
    let v = case.get(group).and_then(|g| g.get(name)).unwrap_or_else(|| panic!("golden case has no {group}.{name}"));
    let mut out = Vec::new();
    flat(v, &mut out);
    out
}

/// Runs every case of `golden` through `model` and returns the largest absolute difference.
fn check(model_path: &Path, manifest: &Path, golden: &Path) -> f64 {
    let text = std::fs::read_to_string(golden).expect("golden file");
    let golden: Value = serde_json::from_str(&text).expect("golden JSON");
    let cases: Vec<&Value> = match golden.get("cases").and_then(Value::as_array) {
        Some(cases) => cases.iter().collect(),
        None => vec![&golden],
    };
    assert!(!cases.is_empty(), "golden has no cases");
    let tolerance = golden.get("tolerance").and_then(Value::as_f64).unwrap_or(1e-4).max(1e-4);
    let mut worst = 0.0f64;
    for (k, case) in cases.iter().enumerate() {
        let profile = tensor(case, "inputs", "profile");
        let n = profile.len();
        let mut model = Model::load(model_path, manifest, &testkit::ort_dylib(), n, 1).expect("model loads");
        let s = model.sizes();
        let (past, mask, time) = (tensor(case, "inputs", "past"), tensor(case, "inputs", "past_mask"), tensor(case, "inputs", "time_feat"));
        assert_eq!((past.len(), mask.len(), time.len()), (n * s.past, n * s.past, n * s.time), "case {k}: input sizes");
        for (dst, src) in [(&mut model.inputs.past, &past), (&mut model.inputs.mask, &mask), (&mut model.inputs.time, &time)] {
            dst.iter_mut().zip(src.iter()).for_each(|(d, s)| *d = *s as f32);
        }
        model.inputs.profile.iter_mut().zip(&profile).for_each(|(d, s)| *d = *s as i64);
        let mut out = Outputs::default();
        model.run(n, &mut out).expect("inference runs");
        for (name, got) in [("quantiles", &out.quantiles), ("var_weights", &out.var_weights), ("attention", &out.attention)] {
            let want = tensor(case, "outputs", name);
            assert_eq!(got.len(), want.len(), "case {k}: {name} size");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let d = (f64::from(*g) - w).abs();
                assert!(d <= tolerance, "case {k}: {name}[{i}] = {g}, golden {w} (diff {d:e} > {tolerance:e})");
                worst = worst.max(d);
            }
        }
    }
    worst
}

#[test]
fn tiny_model_matches_onnxruntime_python() {
    let worst = check(&common::fixture("tiny.onnx"), &common::fixture("tiny.json"), &common::fixture("tiny_golden.json"));
    eprintln!("tiny model: worst |rust - python| = {worst:e}");
}

#[test]
fn real_model_matches_golden() {
    let models = testkit::workspace_root().join("models");
    let (onnx, manifest, golden) = (models.join("tft.onnx"), models.join("tft.json"), models.join("golden.json"));
    let missing: Vec<_> = [&onnx, &manifest, &golden].into_iter().filter(|p| !p.exists()).collect();
    if !missing.is_empty() {
        eprintln!("SKIPPED real-model parity: {missing:?} not there yet (the model issue commits them); the tiny model's parity ran instead");
        return;
    }
    let worst = check(&onnx, &manifest, &golden);
    eprintln!("real model: worst |rust - pytorch| = {worst:e}");
}
