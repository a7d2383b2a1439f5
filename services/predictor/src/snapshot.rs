//! Each server's [`ServerForecast`] (KV `forecasts`) from its window and its row of model
//! outputs, and the snapshot on `predictions.current` written from the servers' summaries
//! (`schemas::ServerSummary`, encoded once when the server changes), split into parts under the
//! server's max_payload.
//!
//! Parts are written by `schemas::SnapshotHeader::write_part` (the one wire layout of a part,
//! beside `SnapshotAssembler`), byte-identical to `schemas::encode(&Snapshot)` of a snapshot
//! holding that part's servers; the summaries' bytes are copied, never re-encoded.

use bytes::Bytes;
use schemas::snapshot::{TargetHistory, VariableWeight};
use schemas::{
    CodecError, Explanation, Metric, Metrics, PartInfo, ServerForecast, Snapshot, SnapshotHeader, Target, TargetForecast, Warmup,
    TARGET_COUNT,
};

use crate::domain::risk::Assessment;
use crate::domain::Verdict;
use crate::model::QUANTILES;
use crate::window::ServerWindow;

/// Room left under max_payload for the message's headers.
const HEADER_ROOM: usize = 512;

/// Fills `out` with the forecast of one server from its `quantiles` row (`[H, 8, 3]`).
/// The three quantiles are put in order, so P10 <= P50 <= P90 holds even for a model that
/// lets them cross. The forecasts already in `out` are overwritten, so their buffers are
/// reused (the inference workers hand in recycled ones: a tick allocates nothing for them).
pub fn forecast_from(row: &[f32], h: usize, out: &mut Vec<TargetForecast>) {
    out.truncate(TARGET_COUNT);
    let empty = || TargetForecast { target: Target::Cpu, method: schemas::Method::Model, p10: vec![], p50: vec![], p90: vec![] };
    out.resize_with(TARGET_COUNT, empty);
    // Sized once, then written in one pass over the row's steps: no capacity check per value,
    // as pushing each one had (1.9 % of `bench_engine`'s samples). Every value is overwritten.
    let steps = row.chunks_exact(TARGET_COUNT * QUANTILES).take(h);
    let n = steps.len();
    for ((j, target), f) in Target::ALL.iter().enumerate().zip(out.iter_mut()) {
        f.target = *target;
        f.method = schemas::Method::Model;
        for c in [&mut f.p10, &mut f.p50, &mut f.p90] {
            c.resize(n, 0.0);
        }
        let curves = f.p10.iter_mut().zip(f.p50.iter_mut()).zip(f.p90.iter_mut());
        for (((lo, mid), hi), step) in curves.zip(steps.clone()) {
            let (a, b, c) = (step[j * QUANTILES], step[j * QUANTILES + 1], step[j * QUANTILES + 2]);
            (*lo, *mid, *hi) = (a.min(b).min(c), median3(a, b, c), a.max(b).max(c));
        }
    }
}

/// Drops the targets whose source metric was never observed in the window: the model still
/// gives numbers for them, but they carry no information (models/CONTRACT.md).
pub fn drop_unobserved(forecast: &mut Vec<TargetForecast>, observed: u16) {
    forecast.retain(|f| {
        let metric = f.target.source_metric();
        observed & (1 << metric.index()) != 0
    });
}

fn median3(a: f32, b: f32, c: f32) -> f32 {
    a.min(b).max(a.max(b).min(c))
}

/// The model's explanation: variable weights largest first, attention as given.
pub fn explanation_from(var_weights: &[f32], attention: &[f32]) -> Explanation {
    let mut variables: Vec<VariableWeight> =
        Metric::ALL.iter().zip(var_weights).map(|(m, w)| VariableWeight { name: m.name().to_string(), weight: *w }).collect();
    variables.sort_by(|a, b| b.weight.total_cmp(&a.weight));
    Explanation { variables, attention: attention.to_vec() }
}

/// The last `n` actual steps of every target, for charts, from the first reported one.
pub fn recent_of(w: &ServerWindow, n: usize) -> Vec<TargetHistory> {
    let n = w.known_span(n);
    Target::ALL
        .iter()
        .map(|t| {
            let mut values = Vec::with_capacity(n);
            w.recent(*t, n, &mut values);
            TargetHistory { target: *t, values }
        })
        .collect()
}

/// A server's snapshot entry, the one place one is built: its window's name, profile and
/// recent actuals (`recent_steps` steps), what the domain decided ([`Verdict`], moved in), and
/// either its model explanation (past warm-up) or its warm-up progress. Returns the entry and
/// the assessment, which the pipeline keeps for the fleet figures and the tick summary.
pub fn entry(
    w: &ServerWindow,
    last_ms: i64,
    current: Metrics,
    recent_steps: usize,
    verdict: Verdict,
    warmup: Option<Warmup>,
    explanation: Option<Explanation>,
) -> (ServerForecast, Assessment) {
    let Verdict { assessment, forecast, no_forecast, alerts, thresholds } = verdict;
    let sf = ServerForecast {
        server: w.name.clone(),
        profile: w.profile,
        last_ms,
        risk: assessment.risk,
        level: assessment.level,
        reasons: assessment.reasons.clone(),
        current,
        recent: recent_of(w, recent_steps),
        warmup,
        no_forecast,
        forecast,
        explanation,
        alerts,
        thresholds,
    };
    (sf, assessment)
}

/// Which servers go in which part: consecutive runs whose encoding stays under max_payload.
/// Parts are then written one at a time, so a 10,000-server snapshot is never held twice.
#[derive(Debug, Clone, Default)]
pub struct PartPlan {
    groups: Vec<std::ops::Range<usize>>,
}

impl PartPlan {
    /// Plans parts of at most `max_payload` bytes for servers of the given encoded sizes. A
    /// server too large for any part on its own still goes out, alone in its part.
    pub fn new(h: &SnapshotHeader, sizes: impl Iterator<Item = usize>, max_payload: usize) -> Result<PartPlan, CodecError> {
        let mut probe = Vec::new();
        h.write_part(&mut probe, PartInfo { index: u16::MAX, count: u16::MAX }, &[])?;
        let budget = max_payload.saturating_sub(HEADER_ROOM + probe.len() + 5).max(1);
        let mut groups = Vec::new();
        let (mut start, mut size, mut n) = (0, 0, 0);
        for (i, len) in sizes.enumerate() {
            if i > start && size + len > budget {
                groups.push(start..i);
                (start, size) = (i, 0);
            }
            size += len;
            n = i + 1;
        }
        groups.push(start..n);
        Ok(PartPlan { groups })
    }

    pub fn count(&self) -> usize {
        self.groups.len()
    }

    /// The servers (indexes into the planned list) of part `k`.
    pub fn range(&self, k: usize) -> std::ops::Range<usize> {
        self.groups[k].clone()
    }

    /// Writes part `k` of `servers` (the whole planned list).
    pub fn write(&self, k: usize, h: &SnapshotHeader, servers: &[&[u8]]) -> Result<Bytes, CodecError> {
        let count = self.groups.len().min(u16::MAX as usize) as u16;
        let mut buf = Vec::new();
        h.write_part(&mut buf, PartInfo { index: k as u16, count }, servers)?;
        Ok(Bytes::from(buf))
    }
}

/// Splits the servers into parts of at most `max_payload` bytes each and writes them all.
pub fn write_parts(h: &SnapshotHeader, servers: &[&[u8]], max_payload: usize) -> Result<Vec<Bytes>, CodecError> {
    let plan = PartPlan::new(h, servers.iter().map(|s| s.len()), max_payload)?;
    (0..plan.count()).map(|k| plan.write(k, h, &servers[plan.range(k)])).collect()
}

/// A whole snapshot from its header and server summaries (tests and small fleets).
pub fn assemble(h: &SnapshotHeader, servers: Vec<schemas::ServerSummary>) -> Snapshot {
    h.snapshot(PartInfo::default(), servers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{FleetFigures, Level, Metrics, ModelInfo, Profile, ServerForecast, ServerSummary, SnapshotAssembler, Warmup};

    /// A server's summary as a reader decodes it (half floats and all).
    fn server(name: &str, h: usize) -> ServerSummary {
        schemas::decode(&schemas::encode(&ServerSummary::of(&forecast(name, h))).unwrap()).unwrap()
    }

    fn forecast(name: &str, h: usize) -> ServerForecast {
        let row: Vec<f32> = (0..h * TARGET_COUNT * QUANTILES).map(|i| (i % 7) as f32).collect();
        let mut forecast = Vec::new();
        forecast_from(&row, h, &mut forecast);
        ServerForecast {
            server: name.into(),
            profile: Profile::Database,
            last_ms: 1_800_000_000_000,
            risk: 12.5,
            level: Level::Healthy,
            reasons: vec![],
            current: Metrics { cpu_idle_pct: Some(50.0), ..Default::default() },
            recent: vec![],
            warmup: (name.ends_with('w')).then_some(Warmup { have_steps: 3, need_steps: 6 }),
            no_forecast: None,
            forecast,
            explanation: Some(explanation_from(&[0.5; 14], &[0.1; 10])),
            alerts: vec![],
            thresholds: vec![],
        }
    }

    fn header() -> SnapshotHeader {
        SnapshotHeader {
            seq: 42,
            tick_ms: 1_800_000_000_000,
            published_ms: 1_700_000_000_000,
            model: ModelInfo {
                version: "tiny".into(),
                horizon_steps: 96,
                step_ms: 300_000,
                encoder_steps: 24,
                min_history_steps: 6,
                quantiles: vec![0.1, 0.5, 0.9],
            },
            fleet: FleetFigures { servers: 3, top: vec!["a".into()], ..Default::default() },
            accuracy: vec![],
            partition: None,
            thresholds: crate::domain::Domain::profile_thresholds(),
        }
    }

    #[test]
    fn quantiles_come_out_ordered() {
        let row = [3.0, 1.0, 2.0].repeat(TARGET_COUNT);
        let mut f = Vec::new();
        forecast_from(&row, 1, &mut f);
        for t in &f {
            assert_eq!((t.p10[0], t.p50[0], t.p90[0]), (1.0, 2.0, 3.0));
        }
    }

    #[test]
    fn unobserved_targets_are_not_shown() {
        let mut f = Vec::new();
        forecast_from(&[1.0; TARGET_COUNT * QUANTILES], 1, &mut f);
        // Only cpu_idle_pct (bit 3) and mem_used_pct (bit 5) were observed.
        drop_unobserved(&mut f, (1 << 3) | (1 << 5));
        let targets: Vec<Target> = f.iter().map(|t| t.target).collect();
        assert_eq!(targets, [Target::Cpu, Target::Mem]);
    }

    #[test]
    fn a_part_is_byte_identical_to_the_schema_encoding() {
        let servers: Vec<_> = (0..20).map(|i| server(&format!("ppdb{i:03}{}", if i % 3 == 0 { "w" } else { "" }), 4)).collect();
        let encoded: Vec<Vec<u8>> = servers.iter().map(|s| schemas::encode(s).unwrap()).collect();
        let refs: Vec<&[u8]> = encoded.iter().map(|v| v.as_slice()).collect();
        let mut out = Vec::new();
        header().write_part(&mut out, PartInfo::default(), &refs).unwrap();
        assert_eq!(out, schemas::encode(&assemble(&header(), servers.clone())).unwrap());
    }

    #[test]
    fn large_snapshots_split_and_reassemble() {
        let servers: Vec<_> = (0..300).map(|i| server(&format!("ppweb{i:04}"), 96)).collect();
        let encoded: Vec<Vec<u8>> = servers.iter().map(|s| schemas::encode(s).unwrap()).collect();
        let refs: Vec<&[u8]> = encoded.iter().map(|v| v.as_slice()).collect();
        let max = 8 * 1024;
        let parts = write_parts(&header(), &refs, max).unwrap();
        assert!(parts.len() > 3, "{} parts", parts.len());
        let mut asm = SnapshotAssembler::default();
        let mut whole = None;
        for p in &parts {
            assert!(p.len() + HEADER_ROOM <= max, "part of {} bytes", p.len());
            whole = asm.push(schemas::decode::<Snapshot>(p).unwrap());
        }
        assert_eq!(whole.unwrap(), assemble(&header(), servers));
        let single = write_parts(&header(), &refs[..2], max).unwrap();
        assert_eq!(single.len(), 1);
        assert_eq!(schemas::decode::<Snapshot>(&single[0]).unwrap().part, PartInfo::default());
    }
}
