//! The ONNX model: its manifest (`models/tft.json`, see `models/CONTRACT.md`) and one `ort`
//! session that runs batches of servers through reused input and output buffers.
//!
//! ONNX Runtime is loaded at run time (`load-dynamic`) from the configured library path; ort
//! allows one environment per process, so it is created once and shared by every session
//! (tests start several predictors in one process).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context};
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;
use schemas::{Metric, ModelInfo, Profile, Target, METRIC_COUNT, TARGET_COUNT};
use serde::Deserialize;

/// Time features per step (sin/cos of time of day and day of week).
pub const TIME_FEATURES: usize = 4;
/// Quantiles per target: P10, P50, P90.
pub const QUANTILES: usize = 3;

/// `models/tft.json`; fields this service does not use are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub version: String,
    pub encoder_steps: usize,
    pub horizon_steps: usize,
    pub min_history_steps: usize,
    pub step_ms: i64,
    pub metrics: Vec<String>,
    pub targets: Vec<String>,
    pub profiles: Vec<String>,
    pub quantiles: Vec<f32>,
}

impl Manifest {
    pub fn load(path: &Path) -> anyhow::Result<Manifest> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading manifest {}", path.display()))?;
        let m: Manifest = serde_json::from_str(&text).with_context(|| format!("parsing manifest {}", path.display()))?;
        m.check().with_context(|| format!("manifest {}", path.display()))?;
        Ok(m)
    }

    /// The manifest must list metrics, targets and profiles in the contract's order, since
    /// the input and output tensors are laid out by them.
    pub fn check(&self) -> anyhow::Result<()> {
        let same = |field: &str, got: &[String], want: Vec<&str>| -> anyhow::Result<()> {
            if got.iter().map(String::as_str).ne(want.iter().copied()) {
                bail!("{field} must be {want:?} (schemas order), got {got:?}");
            }
            Ok(())
        };
        same("metrics", &self.metrics, Metric::ALL.iter().map(|m| m.name()).collect())?;
        same("targets", &self.targets, Target::ALL.iter().map(|t| t.name()).collect())?;
        same("profiles", &self.profiles, Profile::ALL.iter().map(|p| p.name()).collect())?;
        if self.quantiles.len() != QUANTILES {
            bail!("quantiles must be 3 (P10, P50, P90), got {:?}", self.quantiles);
        }
        if self.step_ms != schemas::STEP_MS {
            bail!("step_ms must be {}, got {}", schemas::STEP_MS, self.step_ms);
        }
        if self.encoder_steps == 0 || self.horizon_steps == 0 || self.min_history_steps > self.encoder_steps {
            bail!("bad sizes: encoder {} horizon {} min history {}", self.encoder_steps, self.horizon_steps, self.min_history_steps);
        }
        Ok(())
    }

    pub fn model_info(&self) -> ModelInfo {
        ModelInfo {
            version: self.version.clone(),
            horizon_steps: self.horizon_steps as u16,
            step_ms: self.step_ms,
            encoder_steps: self.encoder_steps as u16,
            min_history_steps: self.min_history_steps as u16,
            quantiles: self.quantiles.clone(),
        }
    }

    /// Floats per server in each tensor.
    pub fn sizes(&self) -> Sizes {
        let (t, h) = (self.encoder_steps, self.horizon_steps);
        Sizes { past: t * METRIC_COUNT, time: (t + h) * TIME_FEATURES, quantiles: h * TARGET_COUNT * QUANTILES, attention: t }
    }
}

/// Per-server element counts of the tensors.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub past: usize,
    pub time: usize,
    pub quantiles: usize,
    pub attention: usize,
}

/// Input buffers for up to `capacity` servers, filled in place each tick.
#[derive(Debug)]
pub struct Inputs {
    pub past: Vec<f32>,
    pub mask: Vec<f32>,
    pub time: Vec<f32>,
    pub profile: Vec<i64>,
}

/// Outputs of the servers of one run, copied out of ort's buffers (which borrow the session).
#[derive(Debug, Default)]
pub struct Outputs {
    pub quantiles: Vec<f32>,
    pub var_weights: Vec<f32>,
    pub attention: Vec<f32>,
    /// Per row, the statistical methods' forecasts and the model's own (from `quantiles`),
    /// filled by the inference worker (`workers.rs`) so they run in parallel too; [`Model::run`]
    /// leaves them.
    pub statistical: Vec<crate::select::Candidates>,
    /// Per row, the published forecast the worker chose from them
    /// (`domain::scoring::Scoring::choose`); empty for a row not past warm-up.
    pub published: Vec<Vec<schemas::TargetForecast>>,
    /// Per row, the server's values in its latest closed step (what the forecasts were scored
    /// against), read from its window once, by the worker.
    pub current: Vec<schemas::Metrics>,
    /// What the chunk's scored points add to the fleet's rolling sums, in row order.
    pub sums: crate::domain::scoring::StepSums,
}

fn environment(dylib: &Path) -> anyhow::Result<&'static Environment> {
    static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();
    let env = ENV.get_or_init(|| {
        let builder = ort::init_from(dylib).map_err(|e| format!("loading ONNX Runtime from {}: {e}", dylib.display()))?;
        builder.with_name("fleetcast-predictor").build().map_err(|e| format!("creating the ONNX Runtime environment: {e}"))
    });
    env.as_ref().map_err(|e| anyhow!("{e}"))
}

pub struct Model {
    session: Session,
    pub manifest: Manifest,
    pub path: PathBuf,
    sizes: Sizes,
    capacity: usize,
    pub inputs: Inputs,
}

impl Model {
    /// Loads the manifest and the graph; `capacity` is the largest batch a run takes.
    pub fn load(model: &Path, manifest: &Path, dylib: &Path, capacity: usize, threads: usize) -> anyhow::Result<Model> {
        let manifest = Manifest::load(manifest)?;
        let env = environment(dylib)?;
        let err = |what: &str| {
            let what = what.to_string();
            move |e: ort::Error<ort::session::builder::SessionBuilder>| anyhow!("{what}: {e}")
        };
        let mut builder = Session::builder(env).map_err(|e| anyhow!("session builder: {e}"))?;
        builder = builder.with_optimization_level(GraphOptimizationLevel::Level3).map_err(err("optimization level"))?;
        // Idle ORT threads spin by default; on a small box shared with nats-server that burns
        // the CPU the broker and the loop need (measured: 2 spinning threads were slower per
        // server than 1 thread on a busy 2-core machine).
        builder = builder.with_intra_op_spinning(false).map_err(err("intra-op spinning"))?;
        // Measured and left at their defaults (2 workers x 1 thread, 2 cores): flush-to-zero,
        // no memory pattern and no prepacking were all within 2 % (noise); copying the outputs
        // out is 0.3 % of a run, so IoBinding would not pay either.
        if threads > 0 {
            builder = builder.with_intra_threads(threads).map_err(err("intra threads"))?;
        }
        let session = builder.commit_from_file(model).map_err(|e| anyhow!("loading {}: {e}", model.display()))?;
        for name in ["past", "past_mask", "time_feat", "profile"] {
            if !session.inputs().iter().any(|i| i.name() == name) {
                bail!("{} has no input {name:?} (see models/CONTRACT.md)", model.display());
            }
        }
        for name in ["quantiles", "var_weights", "attention"] {
            if !session.outputs().iter().any(|o| o.name() == name) {
                bail!("{} has no output {name:?} (see models/CONTRACT.md)", model.display());
            }
        }
        let sizes = manifest.sizes();
        let capacity = capacity.max(1);
        let inputs = Inputs {
            past: vec![0.0; capacity * sizes.past],
            mask: vec![0.0; capacity * sizes.past],
            time: vec![0.0; capacity * sizes.time],
            profile: vec![0; capacity],
        };
        tracing::info!(version = %manifest.version, path = %model.display(), encoder = manifest.encoder_steps,
            horizon = manifest.horizon_steps, "model loaded");
        Ok(Model { session, manifest, path: model.to_path_buf(), sizes, capacity, inputs })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn sizes(&self) -> Sizes {
        self.sizes
    }

    /// Runs the first `n` servers of [`Model::inputs`]; `out` then holds their outputs (its
    /// buffers are reused, not appended to).
    pub fn run(&mut self, n: usize, out: &mut Outputs) -> anyhow::Result<()> {
        out.quantiles.clear();
        out.var_weights.clear();
        out.attention.clear();
        if n == 0 {
            return Ok(());
        }
        if n > self.capacity {
            bail!("batch of {n} exceeds the input capacity {}", self.capacity);
        }
        let (t, h) = (self.manifest.encoder_steps, self.manifest.horizon_steps);
        let s = self.sizes;
        let past = TensorRef::from_array_view(([n, t, METRIC_COUNT], &self.inputs.past[..n * s.past]))?;
        let mask = TensorRef::from_array_view(([n, t, METRIC_COUNT], &self.inputs.mask[..n * s.past]))?;
        let time = TensorRef::from_array_view(([n, t + h, TIME_FEATURES], &self.inputs.time[..n * s.time]))?;
        let profile = TensorRef::from_array_view(([n], &self.inputs.profile[..n]))?;
        let outputs = self.session.run(ort::inputs![
            "past" => past,
            "past_mask" => mask,
            "time_feat" => time,
            "profile" => profile,
        ])?;
        let copy = |name: &str, per: usize, dst: &mut Vec<f32>| -> anyhow::Result<()> {
            let value = outputs.get(name).ok_or_else(|| anyhow!("model gave no {name:?}"))?;
            let (_, data) = value.try_extract_tensor::<f32>()?;
            if data.len() != n * per {
                bail!("{name} has {} values, expected {n} x {per}", data.len());
            }
            dst.extend_from_slice(data);
            Ok(())
        };
        copy("quantiles", s.quantiles, &mut out.quantiles)?;
        copy("var_weights", METRIC_COUNT, &mut out.var_weights)?;
        copy("attention", s.attention, &mut out.attention)?;
        Ok(())
    }
}
