//! The training set: the same simulation as live mode, written to parquet with polars, one
//! row per server per step. Offline servers get a row with null metrics (they reported
//! nothing), so the trainer sees the gap the predictor will see.
//!
//! Columns, exactly: `server, profile, ts_ms, step`, the 14 metrics (f32, null when not
//! reported), `state, scenario, problem_child, cascade_impact`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use polars::prelude::*;
use schemas::{Metric, METRIC_COUNT};

use crate::fleet_sim::{SimConfig, Simulator, Step};

/// Steps per written row group: one simulated day.
const CHUNK_STEPS: u64 = 288;

/// The export's column names, in order.
pub fn column_names() -> Vec<&'static str> {
    let mut v = vec!["server", "profile", "ts_ms", "step"];
    v.extend(Metric::ALL.iter().map(|m| m.name()));
    v.extend(["state", "scenario", "problem_child", "cascade_impact"]);
    v
}

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub servers: usize,
    pub seed: u64,
    pub start_ms: i64,
    pub steps: u64,
    pub out: PathBuf,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    pub rows: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

/// Column buffers for one chunk of steps.
#[derive(Default)]
struct Chunk {
    server: Vec<u32>,
    ts_ms: Vec<i64>,
    step: Vec<i64>,
    metrics: Vec<Vec<Option<f32>>>,
    state: Vec<&'static str>,
    scenario: Vec<&'static str>,
    cascade_impact: Vec<f32>,
}

impl Chunk {
    fn with_capacity(rows: usize) -> Self {
        Chunk {
            server: Vec::with_capacity(rows),
            ts_ms: Vec::with_capacity(rows),
            step: Vec::with_capacity(rows),
            metrics: (0..METRIC_COUNT).map(|_| Vec::with_capacity(rows)).collect(),
            state: Vec::with_capacity(rows),
            scenario: Vec::with_capacity(rows),
            cascade_impact: Vec::with_capacity(rows),
        }
    }

    fn push(&mut self, step: &Step) {
        for (i, row) in step.rows.iter().enumerate() {
            self.server.push(i as u32);
            self.ts_ms.push(step.ts_ms);
            self.step.push(step.index as i64);
            for (k, m) in Metric::ALL.iter().enumerate() {
                self.metrics[k].push(row.metrics.and_then(|x| x.get(*m)));
            }
            self.state.push(row.state.name());
            self.scenario.push(row.scenario.name());
            self.cascade_impact.push(row.cascade_impact);
        }
    }

    fn frame(self, sim: &Simulator) -> PolarsResult<DataFrame> {
        let servers = &sim.fleet().servers;
        let at = |i: &u32| &servers[*i as usize];
        let height = self.server.len();
        let mut cols = vec![
            Column::new("server".into(), self.server.iter().map(|i| at(i).name.as_str()).collect::<Vec<_>>()),
            Column::new("profile".into(), self.server.iter().map(|i| at(i).profile.name()).collect::<Vec<_>>()),
            Column::new("ts_ms".into(), self.ts_ms),
            Column::new("step".into(), self.step),
        ];
        for (m, values) in Metric::ALL.iter().zip(self.metrics) {
            cols.push(Column::new(m.name().into(), values));
        }
        cols.push(Column::new("state".into(), self.state));
        cols.push(Column::new("scenario".into(), self.scenario));
        cols.push(Column::new("problem_child".into(), self.server.iter().map(|i| at(i).problem_child).collect::<Vec<_>>()));
        cols.push(Column::new("cascade_impact".into(), self.cascade_impact));
        DataFrame::new(height, cols)
    }
}

/// Simulates `opts.steps` steps of the fleet and writes them to `opts.out`.
pub fn export(opts: &ExportOptions) -> anyhow::Result<ExportSummary> {
    let t0 = Instant::now();
    let mut sim = Simulator::new(SimConfig { servers: opts.servers, seed: opts.seed, start_ms: opts.start_ms })?;
    create_parent(&opts.out)?;
    let file = File::create(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    let bar = progress_bar(opts.progress, opts.steps);
    let mut writer = None;
    let mut rows = 0u64;
    let mut done = 0u64;
    while done < opts.steps || writer.is_none() {
        let n = CHUNK_STEPS.min(opts.steps - done);
        let mut chunk = Chunk::with_capacity(n as usize * opts.servers);
        for _ in 0..n {
            chunk.push(&sim.step());
        }
        let df = chunk.frame(&sim)?;
        if writer.is_none() {
            let file = file.try_clone()?;
            writer = Some(ParquetWriter::new(file).with_compression(ParquetCompression::Zstd(None)).batched(df.schema())?);
        }
        if let Some(w) = &mut writer {
            w.write_batch(&df)?;
        }
        rows += df.height() as u64;
        done += n;
        bar.inc(n);
        if n == 0 {
            break;
        }
    }
    if let Some(w) = writer {
        w.finish()?;
    }
    bar.finish_and_clear();
    let bytes = std::fs::metadata(&opts.out).map(|m| m.len()).unwrap_or(0);
    Ok(ExportSummary { rows, bytes, elapsed: t0.elapsed() })
}

fn create_parent(path: &Path) -> anyhow::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))
        }
        _ => Ok(()),
    }
}

fn progress_bar(show: bool, steps: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    if let Ok(style) = ProgressStyle::with_template("{spinner} simulating [{bar:40}] {pos}/{len} steps ({eta} left)") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
