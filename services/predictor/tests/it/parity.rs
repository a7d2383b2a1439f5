//! Rust-side parity: the predictor's `ort` session on a model gives the outputs recorded with
//! Python onnxruntime (tiny test model) or PyTorch (the real model's `models/golden.json`),
//! within 1e-4. Real ONNX Runtime, real ONNX files. And the model's inputs: the predictor's
//! ingest and feature builder turn the records of `fixtures/features_parity.json` into the
//! tensors CONTRACT.md prescribes (the trainer's pytest checks its builder on the same file).

use crate::common;

use std::path::Path;

use predictor::features::FeatureBuilder;
use predictor::ingest::{ingest, Limits};
use predictor::model::{Inputs, Manifest, Model, Outputs};
use predictor::registry::Registry;
use predictor::step::step_start;
use schemas::{MetricRecord, MetricsBatch, METRIC_COUNT, SCHEMA_VERSION};
use serde::Deserialize;
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
            let shape: Option<Vec<usize>> =
                v.get("shape").and_then(Value::as_array).map(|s| s.iter().filter_map(Value::as_u64).map(|d| d as usize).collect());
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

/// `fixtures/features_parity.json`, written by `fixtures/make_features_parity.py` from
/// CONTRACT.md alone: the batches a generator would send, and per server the tensors
/// (flattened row-major) its window must give.
#[derive(Deserialize)]
struct FeaturesFixture {
    encoder_steps: usize,
    horizon_steps: usize,
    metrics: Vec<String>,
    float_tolerance: f32,
    batches: Vec<FixtureBatch>,
    servers: Vec<Expected>,
}

#[derive(Deserialize)]
struct FixtureBatch {
    clock_ms: i64,
    records: Vec<MetricRecord>,
}

#[derive(Deserialize)]
struct Expected {
    server: String,
    last_ts_ms: i64,
    past: Vec<f32>,
    past_mask: Vec<f32>,
    time_feat: Vec<f32>,
    profile: i64,
}

#[test]
fn features_match_the_contract_fixture() {
    let text = std::fs::read_to_string(common::fixture("features_parity.json")).expect("features fixture");
    let fx: FeaturesFixture = serde_json::from_str(&text).expect("features fixture JSON");
    let manifest = Manifest::load(&testkit::workspace_root().join("models/tft.json")).expect("shipped manifest");
    let (t, h) = (manifest.encoder_steps, manifest.horizon_steps);
    assert_eq!((fx.encoder_steps, fx.horizon_steps), (t, h), "fixture made for another window: rerun make_features_parity.py");
    assert_eq!(fx.metrics, manifest.metrics);
    // As the service: batches through ingest into a registry as long as run.rs makes it.
    let mut reg = Registry::new(t.max(predictor::methods::HISTORY_STEPS));
    let limits = Limits { max_bytes: 1 << 20, max_servers: 100 };
    for (seq, b) in fx.batches.iter().enumerate() {
        let batch = MetricsBatch {
            v: SCHEMA_VERSION,
            source: "generator".into(),
            seq: seq as u64,
            clock_ms: b.clock_ms,
            records: b.records.clone(),
        };
        let report = ingest(&mut reg, "metrics.batch.generator", &schemas::encode(&batch).expect("encode"), limits, b.clock_ms);
        assert!(report.rejected.is_empty(), "batch {seq} had rejections: {:?}", report.rejected);
        assert_eq!(report.accepted, b.records.len(), "batch {seq}: every record counts");
    }
    // NaN and -1: a cell the builder does not write shows up.
    let (s, n) = (manifest.sizes(), fx.servers.len());
    let mut inputs = Inputs {
        past: vec![f32::NAN; n * s.past],
        mask: vec![f32::NAN; n * s.past],
        time: vec![f32::NAN; n * s.time],
        profile: vec![-1; n],
    };
    let mut builder = FeatureBuilder::new(t, h, s);
    // The fixture's order alternates last steps (L, L-12, L, L), so the calendar cache must follow.
    for (row, want) in fx.servers.iter().enumerate() {
        let w = reg.server(reg.id_of(&want.server).unwrap_or_else(|| panic!("{} not ingested", want.server)));
        assert_eq!(w.last_closed().map(step_start), Some(want.last_ts_ms), "{}: last closed step", want.server);
        builder.fill(&mut inputs, row, w);
    }
    let tol = fx.float_tolerance;
    let (mut worst, mut observed) = (0.0f32, 0);
    for (row, want) in fx.servers.iter().enumerate() {
        let name = &want.server;
        let cell = |i: usize| format!("{name}: past step {} of {t}, {}", i / METRIC_COUNT, fx.metrics[i % METRIC_COUNT]);
        let (past, mask) = (&inputs.past[row * s.past..][..s.past], &inputs.mask[row * s.past..][..s.past]);
        assert_eq!((want.past.len(), want.past_mask.len(), want.time_feat.len()), (s.past, s.past, s.time), "{name}: fixture sizes");
        for i in 0..s.past {
            // Masks and padding exactly; observed values within the tolerance.
            assert_eq!(mask[i], want.past_mask[i], "{}: mask", cell(i));
            if want.past_mask[i] == 0.0 {
                assert_eq!(past[i], 0.0, "{}: an unknown value is 0", cell(i));
            } else {
                observed += 1;
                worst = worst.max((past[i] - want.past[i]).abs());
                assert!((past[i] - want.past[i]).abs() <= tol, "{}: {} vs {}", cell(i), past[i], want.past[i]);
            }
        }
        for (i, (got, w)) in inputs.time[row * s.time..][..s.time].iter().zip(&want.time_feat).enumerate() {
            worst = worst.max((got - w).abs());
            assert!((got - w).abs() <= tol, "{name}: time_feat step {} of {}, feature {}: {got} vs {w}", i / 4, t + h, i % 4);
        }
        assert_eq!(inputs.profile[row], want.profile, "{name}: profile index");
    }
    eprintln!("{n} servers, {observed} observed values: masks, padding and profiles exact, worst float difference {worst:e}");
}
