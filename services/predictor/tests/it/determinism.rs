//! The parallel tick is deterministic: the same registry run through one inference worker and
//! through several gives byte-identical forecasts, snapshot parts, tick summaries, alert events
//! and domain state, tick after tick. Real ONNX Runtime on the shipped model (its absence fails
//! the test). The chunk size stays the same: ONNX Runtime's output for a
//! server can differ in the last bit with the batch it ran in (see `workers::chunk_size`).

use crate::common;

use std::path::PathBuf;

use predictor::registry::Registry;
use predictor::tick::{Engine, TickOutput};
use predictor::workers::Workers;
use schemas::{MetricRecord, STEP_MS};

const SERVERS: usize = 150;
const MAX_PAYLOAD: usize = 256 * 1024;

fn model() -> (PathBuf, PathBuf) {
    let onnx = testkit::workspace_root().join("models/tft.onnx");
    let json = onnx.with_extension("json");
    assert!(onnx.exists() && json.exists(), "the shipped model ({}, {}) is missing", onnx.display(), json.display());
    (onnx, json)
}

fn engine(workers: usize, chunk: usize) -> Engine {
    let (onnx, json) = model();
    let w = Workers::load(&onnx, &json, &testkit::ort_dylib(), workers, chunk, 1).expect("model loads");
    Engine::new(w, 12)
}

/// Everything a tick publishes, as bytes.
fn bytes_of(e: &Engine, out: &TickOutput) -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = out.forecasts.iter().flat_map(|(name, b)| [name.as_bytes().to_vec(), b.to_vec()]).collect();
    all.extend((0..out.plan.count()).map(|k| e.part(out, k).expect("part").to_vec()));
    all.push(schemas::encode(&out.summary).expect("summary"));
    all.extend(out.events.iter().map(|ev| schemas::encode(ev).expect("event")));
    all.push(out.state.as_ref().map(|s| s.to_vec()).unwrap_or_default());
    all
}

#[test]
fn one_worker_and_many_give_identical_bytes() {
    let names = common::server_names(SERVERS);
    let mut engines = [engine(1, 16), engine(2, 16), engine(3, 16)];
    let min = engines[0].manifest().min_history_steps as i64;
    let mut reg = Registry::new(engines[0].manifest().encoder_steps);
    let t0 = common::t0() - (min + 8) * STEP_MS;
    let source = reg.source_id(common::SOURCE, t0);
    let (mut ready_ticks, mut events) = (0, 0);
    for s in 0..min + 6 {
        let start = t0 + s * STEP_MS;
        for (i, name) in names.iter().enumerate() {
            // Every fifth server joins later, so ticks mix forecasts and warm-ups; a few run
            // hot so alerts open.
            if i % 5 == 0 && s < 4 {
                continue;
            }
            let mut metrics = common::metrics(i, start / STEP_MS);
            if i % 11 == 0 && s > min - 3 {
                metrics.cpu_user_pct = Some(96.0);
                metrics.mem_used_pct = Some(97.0);
                metrics.cpu_idle_pct = Some(1.0);
            }
            reg.apply(source, &MetricRecord { server: name.clone(), ts_ms: start, profile: None, metrics });
        }
        reg.advance(source, start + STEP_MS, start + STEP_MS);
        let due = reg.take_due();
        let wall = start + STEP_MS + 1_000;
        let outs: Vec<TickOutput> = engines.iter_mut().map(|e| e.compute(&reg, &due, wall, MAX_PAYLOAD).expect("tick")).collect();
        let want = bytes_of(&engines[0], &outs[0]);
        for (k, (e, out)) in engines.iter().zip(&outs).enumerate().skip(1) {
            assert_eq!(out.forecast_count, outs[0].forecast_count);
            let got = bytes_of(e, out);
            assert_eq!(got.len(), want.len(), "step {s}, engine {k}: different number of pieces");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(g == w, "step {s}, engine {k}: piece {i} differs from the one-worker tick");
            }
        }
        ready_ticks += usize::from(outs[0].forecast_count > 0);
        events += outs[0].events.len();
    }
    assert!(ready_ticks >= 5, "only {ready_ticks} ticks had forecasts");
    eprintln!("{ready_ticks} ticks with forecasts, {events} alert events, all byte-identical");
}
