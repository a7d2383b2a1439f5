//! The model card: headline numbers from the trainer's manifest (`models/tft.json`, its
//! `evaluation` field), re-read when the file changes, and the drift check that compares the
//! snapshot's live rolling accuracy against it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Deserialize;

use schemas::{Target, TargetAccuracy};

use crate::locks::lock;

/// Fewest matured forecast points before a target's live accuracy is judged for drift.
pub const MIN_DRIFT_SAMPLES: u64 = 200;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Figures {
    pub qrisk_p50: Option<f64>,
    pub qrisk_p90: Option<f64>,
    pub coverage: Option<f64>,
    pub mase: Option<f64>,
    /// Which method these are (the trainer names its best baseline).
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Evaluation {
    pub generated: Option<Figures>,
    #[serde(default)]
    pub per_target: BTreeMap<String, Figures>,
    /// Anything else the trainer reports with the same figures (e.g. a naive baseline).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Training {
    pub rows: Option<u64>,
    pub seconds: Option<f64>,
    pub seed: Option<u64>,
    pub machine: Option<String>,
    pub data_fingerprint: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ModelCard {
    pub version: String,
    pub encoder_steps: Option<u32>,
    pub horizon_steps: Option<u32>,
    pub min_history_steps: Option<u32>,
    #[serde(default)]
    pub training: Training,
    pub evaluation: Option<Evaluation>,
}

impl ModelCard {
    pub fn parse(text: &str) -> Result<ModelCard, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// Other evaluation entries with q-risk figures, labelled: a flat entry (`best_baseline`,
    /// named by its `name`), or a group of methods (`nab: {tft: .., seasonal_naive: ..}`).
    pub fn comparisons(&self) -> Vec<(String, Figures)> {
        let Some(e) = &self.evaluation else { return vec![] };
        let figures = |v: &serde_json::Value| serde_json::from_value::<Figures>(v.clone()).ok().filter(|f| f.qrisk_p50.is_some());
        let mut out = Vec::new();
        for (key, v) in &e.other {
            let key = key.replace('_', " ");
            if let Some(f) = figures(v) {
                let label = match &f.name {
                    Some(n) => format!("{key} ({})", n.replace('_', " ")),
                    None => key,
                };
                out.push((label, f));
            } else if let Some(group) = v.as_object() {
                out.extend(group.iter().filter_map(|(m, v)| figures(v).map(|f| (format!("{key}: {}", m.replace('_', " ")), f))));
            }
        }
        out
    }

    pub fn target(&self, t: Target) -> Option<&Figures> {
        self.evaluation.as_ref()?.per_target.get(t.name())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Card {
    Missing(PathBuf),
    Invalid(PathBuf, String),
    Loaded(Box<ModelCard>),
}

/// Reads the card again only when the file's modification time changes.
#[derive(Debug)]
pub struct CardCache {
    path: PathBuf,
    cached: Mutex<Option<(Option<SystemTime>, Arc<Card>)>>,
}

impl CardCache {
    pub fn new(path: PathBuf) -> CardCache {
        CardCache { path, cached: Mutex::new(None) }
    }

    pub fn get(&self) -> Arc<Card> {
        let mtime = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        let mut cached = lock(&self.cached);
        if let Some((t, card)) = cached.as_ref() {
            if *t == mtime && mtime.is_some() {
                return card.clone();
            }
        }
        let card = Arc::new(match std::fs::read_to_string(&self.path) {
            Err(_) => Card::Missing(self.path.clone()),
            Ok(text) => match ModelCard::parse(&text) {
                Ok(c) => Card::Loaded(Box::new(c)),
                Err(e) => Card::Invalid(self.path.clone(), e),
            },
        });
        *cached = Some((mtime, card.clone()));
        card
    }
}

/// One target's live accuracy next to the card's.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftRow {
    pub target: Target,
    pub live: TargetAccuracy,
    pub card_qrisk_p50: Option<f64>,
    pub card_coverage: Option<f64>,
    /// Live q-risk at P50 exceeds the card's by more than the margin (with enough samples).
    pub drifting: bool,
}

pub fn drift(card: Option<&ModelCard>, live: &[TargetAccuracy], margin: f32) -> Vec<DriftRow> {
    live.iter()
        .map(|a| {
            let fig = card.and_then(|c| c.target(a.target)).or_else(|| card?.evaluation.as_ref()?.generated.as_ref());
            let card_q = fig.and_then(|f| f.qrisk_p50);
            let drifting = a.samples >= MIN_DRIFT_SAMPLES
                && a.qrisk_p50.is_finite()
                && card_q.is_some_and(|q| f64::from(a.qrisk_p50) > q * (1.0 + f64::from(margin)));
            DriftRow { target: a.target, live: a.clone(), card_qrisk_p50: card_q, card_coverage: fig.and_then(|f| f.coverage), drifting }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    #[test]
    fn reads_the_contract_shape() {
        let c = ModelCard::parse(&fixture::model_card_json()).unwrap();
        assert_eq!(c.version, "tft-20261126-fixture");
        assert_eq!(c.training.rows, Some(1_200_000));
        let e = c.evaluation.as_ref().unwrap();
        assert_eq!(e.generated.as_ref().unwrap().coverage, Some(0.81));
        assert_eq!(c.target(Target::Cpu).unwrap().coverage, Some(0.8));
        let cmp: Vec<String> = c.comparisons().into_iter().map(|(l, _)| l).collect();
        assert_eq!(cmp, ["best baseline (seasonal naive)", "nab: seasonal naive", "nab: tft"]);
        assert!(ModelCard::parse("{\"no\": 1}").is_err());
    }

    #[test]
    fn drift_needs_margin_and_samples() {
        let c = ModelCard::parse(&fixture::model_card_json()).unwrap();
        let mut live = fixture::accuracy(1);
        let rows = drift(Some(&c), &live, 0.25);
        // the fixture's iowait runs 0.08 above its card figure (0.08 vs 0.16): drifting
        let flagged: Vec<Target> = rows.iter().filter(|r| r.drifting).map(|r| r.target).collect();
        assert_eq!(flagged, [Target::Iowait]);
        live.iter_mut().for_each(|a| a.samples = 10);
        assert!(drift(Some(&c), &live, 0.25).iter().all(|r| !r.drifting), "too few samples");
        assert!(drift(None, &fixture::accuracy(1), 0.25).iter().all(|r| !r.drifting && r.card_qrisk_p50.is_none()));
    }

    #[test]
    fn cache_rereads_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tft.json");
        let cache = CardCache::new(path.clone());
        assert!(matches!(*cache.get(), Card::Missing(_)));
        std::fs::write(&path, "not json").unwrap();
        assert!(matches!(*cache.get(), Card::Invalid(..)));
        std::fs::write(&path, fixture::model_card_json()).unwrap();
        // mtime granularity can hide a rewrite within the same tick; a fresh cache sees it.
        let fresh = CardCache::new(path);
        assert!(matches!(*fresh.get(), Card::Loaded(_)));
    }
}
