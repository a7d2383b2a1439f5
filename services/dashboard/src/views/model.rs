//! Model: the model card's headline numbers, live rolling accuracy and coverage per target
//! from the snapshot, and a drift warning when live loss exceeds the card's by the margin.

use askama::Template;

use super::Stamp;
use crate::model_card::{self, Card, Figures};
use crate::state::Latest;

pub struct Headline {
    pub name: String,
    pub qrisk_p50: String,
    pub qrisk_p90: String,
    pub coverage: String,
    pub mase: String,
}

pub struct Row {
    pub target: &'static str,
    pub samples: u64,
    pub qrisk_p50: String,
    pub qrisk_p90: String,
    pub coverage: String,
    pub card_qrisk_p50: String,
    pub card_coverage: String,
    pub drifting: bool,
}

/// One target's live q-risk per method, beside what was published (the per-server pick).
pub struct MethodRow {
    pub target: &'static str,
    pub published: String,
    /// `P50 / P90` per method of [`schemas::Method::ALL`], "—" where not scored yet.
    pub cells: Vec<String>,
}

#[derive(Template)]
#[template(path = "model_live.html")]
pub struct ModelLive {
    pub stamp: Option<Stamp>,
    pub live_version: String,
    pub card_problem: Option<String>,
    pub card_version: Option<String>,
    pub mismatch: bool,
    pub facts: Vec<(&'static str, String)>,
    pub headlines: Vec<Headline>,
    pub rows: Vec<Row>,
    pub drifting: Vec<&'static str>,
    pub margin: String,
    pub min_samples: u64,
    pub method_names: Vec<&'static str>,
    pub method_rows: Vec<MethodRow>,
}

fn method_rows(live: &[schemas::TargetAccuracy]) -> Vec<MethodRow> {
    live.iter()
        .filter(|a| !a.methods.is_empty())
        .map(|a| MethodRow {
            target: a.target.label(),
            published: format!("{:.3} / {:.3}", a.qrisk_p50, a.qrisk_p90),
            cells: schemas::Method::ALL
                .iter()
                .map(|m| {
                    a.methods
                        .iter()
                        .find(|x| x.method == *m)
                        .map_or_else(|| "—".to_string(), |x| format!("{:.3} / {:.3}", x.qrisk_p50, x.qrisk_p90))
                })
                .collect(),
        })
        .collect()
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.filter(|v| v.is_finite()).map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "—".into())
}

fn headline(name: &str, f: &Figures) -> Headline {
    Headline {
        name: name.to_string(),
        qrisk_p50: opt(f.qrisk_p50, 3),
        qrisk_p90: opt(f.qrisk_p90, 3),
        coverage: opt(f.coverage.map(|c| c * 100.0), 1),
        mase: opt(f.mase, 2),
    }
}

pub fn build(latest: Option<&Latest>, card: &Card, margin: f32) -> ModelLive {
    let loaded = match card {
        Card::Loaded(c) => Some(c.as_ref()),
        _ => None,
    };
    let card_problem = match card {
        Card::Missing(p) => Some(format!("No model card at {} (the trainer writes it next to the ONNX file).", p.display())),
        Card::Invalid(p, e) => Some(format!("The model card at {} could not be read: {e}", p.display())),
        Card::Loaded(_) => None,
    };
    let mut facts = Vec::new();
    let mut headlines = Vec::new();
    if let Some(c) = loaded {
        if let Some(v) = c.encoder_steps {
            facts.push(("Past window", format!("{v} steps")));
        }
        if let Some(v) = c.horizon_steps {
            facts.push(("Horizon", format!("{v} steps ({} h)", v / 12)));
        }
        if let Some(v) = c.min_history_steps {
            facts.push(("Warm-up", format!("{v} steps")));
        }
        if let Some(v) = c.training.rows {
            facts.push(("Training rows", v.to_string()));
        }
        if let Some(v) = c.training.seconds {
            facts.push(("Training time", format!("{:.0} min", v / 60.0)));
        }
        if let Some(v) = &c.training.machine {
            facts.push(("Trained on", v.clone()));
        }
        if let Some(g) = c.evaluation.as_ref().and_then(|e| e.generated.as_ref()) {
            headlines.push(headline("TFT (held-out data)", g));
        }
        headlines.extend(c.comparisons().iter().map(|(n, f)| headline(n, f)));
    }
    let live = latest.map(|l| l.snapshot.accuracy.as_slice()).unwrap_or(&[]);
    let drift = model_card::drift(loaded, live, margin);
    let rows: Vec<Row> = drift
        .iter()
        .map(|d| Row {
            target: d.target.label(),
            samples: d.live.samples,
            qrisk_p50: format!("{:.3}", d.live.qrisk_p50),
            qrisk_p90: format!("{:.3}", d.live.qrisk_p90),
            coverage: format!("{:.1}", d.live.coverage * 100.0),
            card_qrisk_p50: opt(d.card_qrisk_p50, 3),
            card_coverage: opt(d.card_coverage.map(|c| c * 100.0), 1),
            drifting: d.drifting,
        })
        .collect();
    let live_version = latest.map(|l| l.snapshot.model.version.clone()).unwrap_or_default();
    ModelLive {
        stamp: latest.map(Stamp::of),
        mismatch: loaded.is_some_and(|c| !live_version.is_empty() && c.version != live_version),
        live_version,
        card_problem,
        card_version: loaded.map(|c| c.version.clone()),
        facts,
        headlines,
        drifting: drift.iter().filter(|d| d.drifting).map(|d| d.target.label()).collect(),
        rows,
        margin: format!("{:.0}", margin * 100.0),
        min_samples: model_card::MIN_DRIFT_SAMPLES,
        method_names: schemas::Method::ALL.iter().map(|m| m.label()).collect(),
        method_rows: method_rows(live),
    }
}
