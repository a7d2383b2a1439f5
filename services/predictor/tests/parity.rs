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

/// A tensor of the golden file: `{"shape", "dtype", "data"}` with `data` flattened row-major
/// (models/CONTRACT.md); nested arrays are accepted too.
fn tensor(golden: &Value, group: &str, name: &str) -> (Vec<usize>, Vec<f64>) {
    let v = golden.get(group).and_then(|g| g.get(name)).unwrap_or_else(|| panic!("golden has no {group}.{name}"));
    let (shape, data) = match v.get("data") {
        Some(data) => {
            let shape: Option<Vec<usize>> = v.get("shape").and_then(Value::as_array).map(|s| s.iter().filter_map(Value::as_u64).map(|d| d as usize).collect());
            (shape, data)
        }
        None => (None, v),
    };
    let mut out = Vec::new();
    flat(data, &mut out);
    if let Some(shape) = &shape {
        assert_eq!(shape.iter().product::<usize>(), out.len(), "{group}.{name}: shape {shape:?} vs {} values", out.len());
    }
    (shape.unwrap_or_default(), out)
}

/// Runs the golden inputs through `model` and checks every output elementwise:
/// `|got - expected| <= atol + rtol * |expected|`. Returns the worst absolute difference.
fn check(model_path: &Path, manifest: &Path, golden: &Path) -> f64 {
    let text = std::fs::read_to_string(golden).expect("golden file");
    let golden: Value = serde_json::from_str(&text).expect("golden JSON");
    let atol = golden.get("atol").and_then(Value::as_f64).unwrap_or(1e-4);
    let rtol = golden.get("rtol").and_then(Value::as_f64).unwrap_or(1e-4);
    let (_, profile) = tensor(&golden, "inputs", "profile");
    let n = profile.len();
    let mut model = Model::load(model_path, manifest, &testkit::ort_dylib(), n, 1).expect("model loads");
    let s = model.sizes();
    let (_, past) = tensor(&golden, "inputs", "past");
    let (_, mask) = tensor(&golden, "inputs", "past_mask");
    let (_, time) = tensor(&golden, "inputs", "time_feat");
    assert_eq!((past.len(), mask.len(), time.len()), (n * s.past, n * s.past, n * s.time), "input sizes vs the manifest");
    for (dst, src) in [(&mut model.inputs.past, &past), (&mut model.inputs.mask, &mask), (&mut model.inputs.time, &time)] {
        dst.iter_mut().zip(src.iter()).for_each(|(d, s)| *d = *s as f32);
    }
    model.inputs.profile.iter_mut().zip(&profile).for_each(|(d, s)| *d = *s as i64);
    let mut out = Outputs::default();
    model.run(n, &mut out).expect("inference runs");
    let mut worst = 0.0f64;
    for (name, got) in [("quantiles", &out.quantiles), ("var_weights", &out.var_weights), ("attention", &out.attention)] {
        let (shape, want) = tensor(&golden, "outputs", name);
        assert_eq!(got.len(), want.len(), "{name}: {} values, golden {shape:?}", got.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let d = (f64::from(*g) - w).abs();
            assert!(d <= atol + rtol * w.abs(), "{name}[{i}] = {g}, golden {w} (diff {d:e})");
            worst = worst.max(d);
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
    // The shipped model is committed; a checkout without it is broken, not a reason to skip.
    assert!(missing.is_empty(), "the shipped model's files are missing: {missing:?}");
    let worst = check(&onnx, &manifest, &golden);
    eprintln!("real model: worst |rust - pytorch| = {worst:e}");
}
