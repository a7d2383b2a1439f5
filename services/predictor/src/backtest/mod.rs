//! The backtest: replays series step by step through the predictor's own code (validation and
//! windows in `ingest`, the model in the inference workers, the statistical methods, the
//! per-server choice of method in the domain) and scores, at every origin (every 5-minute
//! step, all phases) and every lead 1..=96, what the product published and each method on its
//! own, with the live accuracy's q-risk (`2·Σ pinball / Σ |actual|`, the TFT paper's).
//!
//! Nothing is mocked: the engine is the one the service runs; only NATS is left out (batches
//! go straight into `ingest`, as the consumer would hand them over).

pub mod data;
pub mod report;

use std::collections::HashMap;
use std::path::Path;

use schemas::{Method, MetricRecord, MetricsBatch, Target, TargetForecast, HORIZON_STEPS, STEP_MS};

use crate::accuracy::pinball;
use crate::domain::recurrence::day_ago_crossing;
use crate::ingest::{ingest, Limits};
use crate::registry::Registry;
use crate::select::Candidates;
use crate::tick::Engine;
use crate::window::ServerWindow;
use crate::workers::Workers;
use data::Series;

/// Score slots: each method of [`Method::ALL`] on its own, then what was published.
pub const SLOTS: usize = Method::ALL.len() + 1;
/// The slot of the published forecast.
pub const PUBLISHED: usize = Method::ALL.len();

/// Breach windows scored (steps): within 30 min and within 8 h.
pub const BREACH_WINDOWS: [usize; 2] = [6, 96];
/// The breach threshold on the `cpu` target (percent), as in the model card.
pub const CPU_BREACH: f32 = 90.0;

/// Sums of one slot over every origin and lead of one series and target.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Sums {
    pub n: u64,
    pub covered: u64,
    pub pin50: f64,
    pub pin90: f64,
    pub abs: f64,
    /// Origins at which this slot's forecast was the one published (published slot: all).
    pub published: u64,
}

impl Sums {
    /// Σ|actual|, floored at 0.01 per point as the live accuracy does (`accuracy.rs`), so a
    /// series that sits at 0 (an idle VM's CPU) does not divide by nothing.
    fn denominator(&self) -> f64 {
        self.abs.max(0.01 * self.n as f64)
    }
    pub fn qrisk_p50(&self) -> f64 {
        2.0 * self.pin50 / self.denominator()
    }
    pub fn qrisk_p90(&self) -> f64 {
        2.0 * self.pin90 / self.denominator()
    }
    pub fn coverage(&self) -> f64 {
        self.covered as f64 / self.n.max(1) as f64
    }
}

/// Confusion counts of "P90 crosses the threshold within the window" (the published slot: or its
/// seasonal alert, `recurrence.rs`) against "the actual does",
/// over origins whose current value was still at or below it.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
}

/// One series and target's scores.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scored {
    pub series: String,
    pub group: String,
    pub target: Target,
    pub slots: [Sums; SLOTS],
    /// `[slot][window]` for the `cpu` target.
    pub breaches: [[Confusion; BREACH_WINDOWS.len()]; SLOTS],
}

/// How to run the engine.
#[derive(Debug, Clone)]
pub struct Options {
    /// Origins start this many steps after a series' first step (the warm-up a live server has).
    pub from_steps: i64,
    pub workers: usize,
}

/// Replays `series` (one timeline: all of them are one fleet) and scores them.
pub fn run(series: &[Series], model: &Path, dylib: &Path, opts: &Options) -> anyhow::Result<Vec<Scored>> {
    let workers = Workers::load(model, &model.with_extension("json"), dylib, opts.workers, 128, 1)?;
    let encoder = workers.manifest().encoder_steps;
    let capacity = encoder.max(crate::methods::HISTORY_STEPS);
    let mut engine = Engine::new(workers, 12);
    let mut reg = Registry::tiered(capacity, encoder);
    let index: HashMap<&str, usize> = series.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    let mut scored: Vec<Scored> = series
        .iter()
        .flat_map(|s| {
            s.scored.iter().map(|t| Scored {
                series: s.name.clone(),
                group: s.group.clone(),
                target: *t,
                slots: [Sums::default(); SLOTS],
                breaches: [[Confusion::default(); BREACH_WINDOWS.len()]; SLOTS],
            })
        })
        .collect();
    let mut first_row = Vec::with_capacity(series.len());
    let mut rows = 0;
    for s in series {
        first_row.push(rows);
        rows += s.scored.len();
    }
    let (Some(first), Some(last)) = (series.iter().map(|s| s.first_step).min(), series.iter().map(Series::last_step).max()) else {
        return Ok(scored);
    };
    let limits = Limits { max_bytes: usize::MAX, max_servers: usize::MAX };
    let subject = schemas::subjects::metrics_batch("backtest");
    for (seq, step) in (first..=last).enumerate() {
        let ts = step * STEP_MS;
        let records: Vec<MetricRecord> = series
            .iter()
            .filter_map(|s| {
                let m = s.steps.get(usize::try_from(step - s.first_step).ok()?)?.as_ref()?;
                Some(MetricRecord { server: s.name.clone(), ts_ms: ts, profile: None, metrics: *m })
            })
            .collect();
        let payload = schemas::encode(&MetricsBatch::new("backtest", seq as u64, ts + STEP_MS, records))?;
        let report = ingest(&mut reg, &subject, &payload, limits, ts + STEP_MS);
        if let Some(r) = report.rejected.first() {
            tracing::debug!(rejected = report.rejected.len(), first = %r.error, "records rejected");
        }
        let due = reg.take_due();
        engine.compute_observed(&reg, &due, ts + STEP_MS, usize::MAX / 2, &mut |w, candidates, published| {
            let Some(&i) = index.get(w.name.as_str()) else { return };
            let s = &series[i];
            let Some(issue) = w.last_closed() else { return };
            if issue - s.first_step < opts.from_steps || issue + HORIZON_STEPS as i64 > s.last_step() {
                return;
            }
            for (j, target) in s.scored.iter().enumerate() {
                score_origin(s, *target, issue, w, candidates, published, &mut scored[first_row[i] + j]);
            }
        })?;
    }
    Ok(scored)
}

/// Scores every slot's forecast of `target` issued at step `issue`.
fn score_origin(
    s: &Series,
    target: Target,
    issue: i64,
    w: &ServerWindow,
    candidates: &Candidates,
    published: &[TargetForecast],
    out: &mut Scored,
) {
    let find = |fs: &[TargetForecast]| fs.iter().position(|f| f.target == target);
    let published_method = find(published).map(|i| published[i].method);
    let current = w.latest().and_then(|v| v.to_metrics().target(target));
    // What the product's seasonal alerts see (`recurrence.rs`): the first lead past 30 min whose
    // value a day earlier crosses the breach line.
    let seasonal = (target == Target::Cpu).then(|| {
        let mut history = Vec::new();
        w.history(target, &mut history);
        day_ago_crossing(&history, CPU_BREACH, HORIZON_STEPS).map(|(lead, _)| usize::from(lead))
    });
    for slot in 0..SLOTS {
        let forecasts = if slot == PUBLISHED { published } else { candidates.of(Method::ALL[slot]) };
        let Some(f) = find(forecasts).map(|i| &forecasts[i]) else { continue };
        let sums = &mut out.slots[slot];
        sums.published += u64::from(slot == PUBLISHED || published_method == Some(Method::ALL[slot]));
        for k in 0..f.p50.len() {
            let Some(y) = s.actual(target, issue + 1 + k as i64) else { continue };
            let (y, lo, mid, hi) = (f64::from(y), f64::from(f.p10[k]), f64::from(f.p50[k]), f64::from(f.p90[k]));
            sums.n += 1;
            sums.covered += u64::from(lo <= y && y <= hi);
            sums.pin50 += pinball(0.5, y, mid);
            sums.pin90 += pinball(0.9, y, hi);
            sums.abs += y.abs();
        }
        if target == Target::Cpu && current.is_some_and(|c| c <= CPU_BREACH) {
            for (wi, &window) in BREACH_WINDOWS.iter().enumerate() {
                let actual = (1..=window as i64).any(|k| s.actual(target, issue + k).is_some_and(|y| y > CPU_BREACH));
                // The published forecast's breach is its alert's: its P90 crossing, or the
                // seasonal recurrence within the window.
                let recurs = slot == PUBLISHED && seasonal.flatten().is_some_and(|lead| lead <= window);
                let predicted = recurs || f.p90.iter().take(window).any(|v| *v > CPU_BREACH);
                let c = &mut out.breaches[slot][wi];
                c.tp += u64::from(actual && predicted);
                c.fp += u64::from(!actual && predicted);
                c.fn_ += u64::from(actual && !predicted);
            }
        }
    }
}
