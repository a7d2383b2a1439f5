//! Deterministic fixture snapshots and history built with the `schemas` types, for tests, the
//! benchmark and `--demo-fixture`. The numbers are plausible, not a model: they only have to
//! exercise every view (all levels, alerts, warm-up, explanations, gaps, hostile names).

use schemas::{
    Alert, AlertBasis, AlertEvent, AlertState, Explanation, FleetFigures, Level, Metric, Metrics, ModelInfo,
    PartInfo, Profile, ServerForecast, Snapshot, Target, TargetAccuracy, TargetForecast, TargetThresholds, Warmup, HORIZON_STEPS,
    SCHEMA_VERSION, STEP_MS,
};
use schemas::history::TickSummary;
use schemas::snapshot::{LevelCounts, RiskReason, TargetHistory, VariableWeight};

use crate::thresholds;

/// A name no validator would pass, to prove that every view escapes what comes off the bus.
pub const HOSTILE_NAME: &str = "<script>alert(\"pwned\")</script>";

#[derive(Debug, Clone)]
pub struct Spec {
    pub servers: usize,
    pub seq: u64,
    pub seed: u64,
    /// Source time of the closed step (Unix ms).
    pub tick_ms: i64,
    /// How many servers are still warming up.
    pub warming: usize,
    /// Adds a server named [`HOSTILE_NAME`] at critical risk.
    pub hostile: bool,
    /// Recent actual steps per target.
    pub history_steps: usize,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            servers: 20,
            seq: 1,
            seed: 42,
            tick_ms: 1_764_162_000_000,
            warming: 0,
            hostile: false,
            history_steps: 48,
        }
    }
}

/// splitmix64: tiny, deterministic, good enough for fixtures.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Server names and profiles in the original's fleet split (web 28%, ML 22%, DB 17%, ETL 11%,
/// risk 9%, conductor 6%, generic 7% capped at 10; each at least one; the rest to web).
pub fn names(n: usize) -> Vec<(String, Profile)> {
    let order = [
        (Profile::WebApi, 0.28),
        (Profile::MlCompute, 0.22),
        (Profile::Database, 0.17),
        (Profile::DataIngest, 0.11),
        (Profile::RiskAnalytics, 0.09),
        (Profile::ConductorMgmt, 0.06),
        (Profile::Generic, 0.07),
    ];
    let mut counts: Vec<usize> = order.iter().map(|(_, p)| ((n as f64) * p).floor() as usize).collect();
    counts[6] = counts[6].min(10);
    if n >= order.len() {
        counts.iter_mut().for_each(|c| *c = (*c).max(1));
    }
    let assigned: usize = counts.iter().sum();
    if assigned <= n {
        counts[0] += n - assigned;
    } else {
        counts = vec![0; 7];
        (0..n).for_each(|i| counts[i % 7] += 1);
    }
    let mut out = Vec::with_capacity(n);
    for ((profile, _), count) in order.iter().zip(counts) {
        for i in 1..=count {
            let name = match profile {
                Profile::WebApi => format!("ppweb{i:03}"),
                Profile::MlCompute => format!("ppml{i:04}"),
                Profile::Database => format!("ppdb{i:03}"),
                Profile::DataIngest => format!("ppetl{i:03}"),
                Profile::RiskAnalytics => format!("pprisk{i:03}"),
                Profile::ConductorMgmt => format!("ppcon{i:02}"),
                Profile::Generic => format!("ppgen{i:03}"),
            };
            out.push((name, *profile));
        }
    }
    out
}

/// Current value of a target for a server at `risk` (0-100), `u` in [0, 1) adds spread.
fn current_of(t: Target, risk: f32, u: f32) -> f32 {
    match t {
        Target::Cpu => (25.0 + risk * 0.7 + u * 8.0).min(99.5),
        Target::Mem => (38.0 + risk * 0.58 + u * 6.0).min(99.5),
        Target::Iowait => 1.0 + risk * 0.3 + u * 3.0,
        Target::Swap => (risk - 20.0).max(0.0) * 0.5 + u * 2.0,
        Target::Disk => 40.0 + u * 35.0,
        Target::Load => 0.8 + risk * 0.11 + u,
        Target::NetIn => 20.0 + u * 120.0,
        Target::NetOut => 30.0 + u * 110.0,
    }
}

fn clamp_target(t: Target, v: f32) -> f32 {
    if t.unit().is_percent() {
        v.clamp(0.0, 100.0)
    } else {
        v.max(0.0)
    }
}

/// One server with a forecast shaped by its risk: riskier servers trend up faster.
pub fn server(name: &str, profile: Profile, risk: f32, tick_ms: i64) -> ServerForecast {
    server_with(name, profile, risk, tick_ms, 48, 0x5EED ^ name.len() as u64)
}

fn server_with(name: &str, profile: Profile, risk: f32, tick_ms: i64, history: usize, seed: u64) -> ServerForecast {
    let mut rng = Rng(seed);
    let mut current = Metrics::default();
    let mut recent = Vec::new();
    let mut forecast = Vec::new();
    let mut alerts = Vec::new();
    for t in Target::ALL {
        let now = clamp_target(t, current_of(t, risk, rng.unit()));
        let slope = (risk - 35.0) / 100.0 * now.max(1.0) * 0.004;
        let wobble = rng.unit() * 6.0;
        let hist: Vec<Option<f32>> = (0..history)
            .map(|j| {
                let back = (history - 1 - j) as f32;
                (j % 29 != 17).then(|| clamp_target(t, now - slope * back + (back * 0.4 + wobble).sin() * now * 0.03))
            })
            .collect();
        recent.push(TargetHistory { target: t, values: hist });
        let spread = now.max(1.0) * 0.012;
        let p50: Vec<f32> =
            (1..=HORIZON_STEPS).map(|k| clamp_target(t, now + slope * k as f32 * (1.0 - k as f32 / 300.0))).collect();
        let p10: Vec<f32> = p50.iter().enumerate().map(|(k, v)| clamp_target(t, v - spread * ((k + 1) as f32).sqrt())).collect();
        let p90: Vec<f32> = p50.iter().enumerate().map(|(k, v)| clamp_target(t, v + spread * ((k + 1) as f32).sqrt())).collect();
        if let Some((warn, crit)) = thresholds::reference(t) {
            let crossing = |series: &[f32], th: f32| series.iter().position(|v| *v >= th);
            let found = crossing(&p50, crit)
                .map(|k| (Level::Critical, AlertBasis::P50, crit, k))
                .or_else(|| crossing(&p90, crit).map(|k| (Level::Critical, AlertBasis::P90, crit, k)))
                .or_else(|| crossing(&p50, warn).map(|k| (Level::Warning, AlertBasis::P50, warn, k)));
            if let Some((severity, basis, threshold, k)) = found {
                let predicted = if basis == AlertBasis::P50 { p50[k] } else { p90[k] };
                alerts.push(Alert {
                    id: format!("{name}.{}", t.name()),
                    server: name.to_string(),
                    profile,
                    target: t,
                    severity,
                    basis,
                    threshold,
                    predicted,
                    current: Some(now),
                    steps_ahead: (k + 1) as u16,
                    minutes_ahead: (k as u32 + 1) * 5,
                    state: if k % 2 == 0 { AlertState::Opened } else { AlertState::Updated },
                    opened_ms: tick_ms - (k as i64 % 7) * STEP_MS,
                    updated_ms: tick_ms,
                });
            }
        }
        if t == Target::Cpu {
            current.cpu_idle_pct = Some(100.0 - now);
            current.cpu_user_pct = Some(now * 0.7);
            current.cpu_sys_pct = Some(now * 0.2);
            current.java_cpu_pct = Some(now * 0.5);
        } else {
            current.set(t.source_metric(), Some(now));
        }
        forecast.push(TargetForecast { target: t, p10, p50, p90 });
    }
    current.back_close_wait = Some((risk / 5.0).floor());
    current.front_close_wait = Some((risk / 9.0).floor());
    current.uptime_days = Some(25.0);
    alerts.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.steps_ahead.cmp(&b.steps_ahead)));
    let reasons = if risk >= 20.0 {
        vec![
            RiskReason { target: Target::Cpu, points: risk * 0.55, text: format!("CPU used {:.0}% and rising", current.target(Target::Cpu).unwrap_or(0.0)) },
            RiskReason { target: Target::Mem, points: risk * 0.3, text: format!("Memory {:.0}%", current.mem_used_pct.unwrap_or(0.0)) },
            RiskReason { target: Target::Iowait, points: risk * 0.15, text: "I/O wait forecast above its P90 band".into() },
        ]
    } else {
        vec![]
    };
    let mut weights: Vec<VariableWeight> =
        Metric::ALL.iter().map(|m| VariableWeight { name: m.name().into(), weight: rng.unit() + 0.05 }).collect();
    let total: f32 = weights.iter().map(|w| w.weight).sum();
    weights.iter_mut().for_each(|w| w.weight /= total);
    weights.sort_by(|a, b| b.weight.total_cmp(&a.weight));
    let attention: Vec<f32> = (0..288).map(|i| (-(287 - i) as f32 * 0.012).exp() + if i % 48 == 10 { 0.6 } else { 0.0 }).collect();
    let att_total: f32 = attention.iter().sum();
    ServerForecast {
        server: name.to_string(),
        profile,
        last_ms: tick_ms,
        risk,
        level: Level::from_risk(risk),
        reasons,
        current,
        recent,
        warmup: None,
        forecast,
        explanation: Some(Explanation { variables: weights, attention: attention.iter().map(|a| a / att_total).collect() }),
        alerts,
        thresholds: Target::ALL
            .iter()
            .filter_map(|t| thresholds::reference(*t).map(|(warning, critical)| TargetThresholds { target: *t, warning, critical }))
            .collect(),
    }
}

/// Risk of server `i` at snapshot `seq`: a fixed base (mostly low, a few high) plus a drift.
fn risk_of(seed: u64, i: usize, seq: u64) -> f32 {
    let mut rng = Rng(seed.wrapping_mul(31).wrapping_add(i as u64));
    let u = rng.unit();
    let base = 100.0 * u.powi(4);
    (base + 6.0 * ((seq as f32) * 0.7 + i as f32).sin()).clamp(0.0, 100.0)
}

/// Stand-in incident probabilities: each critical server a 4% chance in 30 min, each warning
/// one 1%, independent; 8 h is three times as likely per server.
fn incident_probs(levels: &LevelCounts) -> (f32, f32) {
    let p = |c: f32, w: f32| 1.0 - (1.0 - c).powi(levels.critical as i32) * (1.0 - w).powi(levels.warning as i32);
    (p(0.04, 0.01), p(0.12, 0.03))
}

/// Fleet figures over a set of servers (the predictor computes its own; this is a stand-in).
pub fn fleet_of(servers: &[ServerForecast]) -> FleetFigures {
    let mut levels = LevelCounts::default();
    let (mut sum, mut max, mut ready, mut aw, mut ac) = (0.0f32, 0.0f32, 0u32, 0u32, 0u32);
    for s in servers {
        levels.add(s.level);
        sum += s.risk;
        max = max.max(s.risk);
        ready += u32::from(s.warmup.is_none());
        aw += s.alerts.iter().filter(|a| a.severity == Level::Warning).count() as u32;
        ac += s.alerts.iter().filter(|a| a.severity == Level::Critical).count() as u32;
    }
    let (p30, p8) = incident_probs(&levels);
    let health = if p30 > 0.6 { Level::Critical } else if p30 > 0.3 { Level::Warning } else if p30 > 0.1 { Level::Watch } else { Level::Healthy };
    let mut by_risk: Vec<&ServerForecast> = servers.iter().collect();
    by_risk.sort_by(|a, b| b.risk.total_cmp(&a.risk));
    FleetFigures {
        servers: servers.len() as u32,
        ready,
        warming: servers.len() as u32 - ready,
        levels,
        prob_incident_30m: p30,
        prob_incident_8h: p8,
        avg_risk: if servers.is_empty() { 0.0 } else { sum / servers.len() as f32 },
        max_risk: max,
        health,
        top: by_risk.iter().take(20).map(|s| s.server.clone()).collect(),
        alerts_warning: aw,
        alerts_critical: ac,
    }
}

pub fn model_info() -> ModelInfo {
    ModelInfo {
        version: "tft-20261126-fixture".into(),
        horizon_steps: HORIZON_STEPS as u16,
        step_ms: STEP_MS,
        encoder_steps: 288,
        min_history_steps: 36,
        quantiles: vec![0.1, 0.5, 0.9],
    }
}

pub fn accuracy(seq: u64) -> Vec<TargetAccuracy> {
    Target::ALL
        .iter()
        .enumerate()
        .map(|(i, t)| TargetAccuracy {
            target: *t,
            samples: 4_000 + seq * 10,
            qrisk_p50: 0.06 + 0.01 * i as f32 + if *t == Target::Iowait { 0.08 } else { 0.0 },
            qrisk_p90: 0.04 + 0.005 * i as f32,
            coverage: 0.74 + 0.01 * i as f32,
        })
        .collect()
}

pub fn snapshot(spec: &Spec) -> Snapshot {
    let mut servers: Vec<ServerForecast> = names(spec.servers)
        .into_iter()
        .enumerate()
        .map(|(i, (name, profile))| {
            let risk = risk_of(spec.seed, i, spec.seq);
            server_with(&name, profile, risk, spec.tick_ms, spec.history_steps, spec.seed ^ (i as u64) << 8)
        })
        .collect();
    // Warm-up: every k-th server has too little history for a forecast.
    if spec.warming > 0 && !servers.is_empty() {
        let k = (servers.len() / spec.warming).max(1);
        for (j, s) in servers.iter_mut().step_by(k).take(spec.warming).enumerate() {
            s.warmup = Some(Warmup { have_steps: 8 + (j % 25) as u16, need_steps: 36 });
            s.forecast.clear();
            s.alerts.clear();
            s.explanation = None;
            s.risk = s.risk.min(15.0);
            s.level = Level::from_risk(s.risk);
            s.reasons.clear();
        }
    }
    if spec.hostile {
        servers.push(server_with(HOSTILE_NAME, Profile::Generic, 88.0, spec.tick_ms, spec.history_steps, 7));
    }
    Snapshot {
        v: SCHEMA_VERSION,
        seq: spec.seq,
        tick_ms: spec.tick_ms,
        published_ms: spec.tick_ms + 1_500,
        part: PartInfo::default(),
        model: model_info(),
        fleet: fleet_of(&servers),
        accuracy: accuracy(spec.seq),
        servers,
    }
}

/// Splits a snapshot into `count` parts as the predictor does when one message is too big.
pub fn split(snapshot: &Snapshot, count: u16) -> Vec<Snapshot> {
    let count = count.max(1);
    let per = snapshot.servers.len().div_ceil(count as usize).max(1);
    let chunks: Vec<Vec<ServerForecast>> = snapshot.servers.chunks(per).map(|c| c.to_vec()).collect();
    let n = chunks.len().max(1) as u16;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, servers)| Snapshot { part: PartInfo { index: i as u16, count: n }, servers, ..snapshot.clone() })
        .collect()
}

/// `count` per-tick summaries ending at `spec.tick_ms`, one per step, as `history.tick` carries.
pub fn ticks(spec: &Spec, count: usize) -> Vec<TickSummary> {
    let names: Vec<String> = names(spec.servers).into_iter().map(|(n, _)| n).collect();
    (0..count)
        .map(|k| {
            let back = (count - 1 - k) as i64;
            let tick_ms = spec.tick_ms - back * STEP_MS;
            let seq = spec.seq.saturating_sub(back as u64);
            let day = ((tick_ms / STEP_MS) % 288) as f32 / 288.0;
            let risk: Vec<f32> = (0..names.len())
                .map(|i| (risk_of(spec.seed, i, seq) + 12.0 * (day * std::f32::consts::TAU).sin()).clamp(0.0, 100.0))
                .collect();
            let level: Vec<Level> = risk.iter().map(|r| Level::from_risk(*r)).collect();
            let mut levels = LevelCounts::default();
            level.iter().for_each(|l| levels.add(*l));
            let n = risk.len().max(1) as f32;
            let (p30, p8) = incident_probs(&levels);
            let fleet = FleetFigures {
                servers: names.len() as u32,
                ready: names.len() as u32,
                levels,
                prob_incident_30m: p30,
                prob_incident_8h: p8,
                avg_risk: risk.iter().sum::<f32>() / n,
                max_risk: risk.iter().copied().fold(0.0, f32::max),
                ..Default::default()
            };
            let opened = if k % 12 == 3 { names.first().map(|n| vec![format!("{n}.cpu")]).unwrap_or_default() } else { vec![] };
            let resolved = if k % 12 == 9 { names.first().map(|n| vec![format!("{n}.cpu")]).unwrap_or_default() } else { vec![] };
            TickSummary {
                v: SCHEMA_VERSION,
                seq,
                tick_ms,
                fleet,
                servers: names.clone(),
                risk: risk.iter().map(|r| r.round() as u8).collect(),
                level,
                opened,
                resolved,
            }
        })
        .collect()
}

/// Alert lifecycle events of a snapshot's alerts (all `opened`), as `alerts.>` carries them.
pub fn alert_events(snapshot: &Snapshot) -> Vec<AlertEvent> {
    snapshot
        .servers
        .iter()
        .flat_map(|s| s.alerts.iter())
        .map(|a| AlertEvent { v: SCHEMA_VERSION, tick_ms: snapshot.tick_ms, alert: Alert { state: AlertState::Opened, ..a.clone() } })
        .collect()
}

/// A model card as the trainer writes `models/tft.json` (see `models/CONTRACT.md`).
pub fn model_card_json() -> String {
    let per_target: Vec<String> = Target::ALL
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                "\"{}\": {{\"qrisk_p50\": {:.3}, \"qrisk_p90\": {:.3}, \"coverage\": {:.2}}}",
                t.name(),
                0.06 + 0.01 * i as f32,
                0.04 + 0.005 * i as f32,
                0.8
            )
        })
        .collect();
    format!(
        r#"{{"version": "tft-20261126-fixture", "onnx": "tft.onnx", "encoder_steps": 288, "horizon_steps": 96,
  "min_history_steps": 36, "step_ms": 300000, "quantiles": [0.1, 0.5, 0.9],
  "training": {{"data_fingerprint": "sha256:abc", "rows": 1200000, "seed": 42, "seconds": 5400, "machine": "fixture"}},
  "evaluation": {{"generated": {{"qrisk_p50": 0.091, "qrisk_p90": 0.052, "coverage": 0.81}},
                  "naive_baseline": {{"qrisk_p50": 0.143, "qrisk_p90": 0.097, "coverage": 0.55}},
                  "per_target": {{{}}}}}}}"#,
        per_target.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_split_matches_the_original() {
        let count = |n: usize, p: Profile| names(n).iter().filter(|(_, q)| *q == p).count();
        // 20 (demo) = web/ml/db/etl/risk/gen/con 8/4/3/2/1/1/1
        assert_eq!(
            [Profile::WebApi, Profile::MlCompute, Profile::Database, Profile::DataIngest, Profile::RiskAnalytics, Profile::Generic, Profile::ConductorMgmt]
                .map(|p| count(20, p)),
            [8, 4, 3, 2, 1, 1, 1]
        );
        assert_eq!(names(1000).len(), 1000);
        assert_eq!(count(1000, Profile::Generic), 10, "generic capped at 10");
        for (n, p) in names(90) {
            assert_eq!(Profile::detect(&n), p, "{n}");
        }
    }

    #[test]
    fn snapshots_are_consistent() {
        let s = snapshot(&Spec { servers: 50, warming: 5, hostile: true, ..Default::default() });
        assert_eq!(s.servers.len(), 51);
        assert_eq!(s.fleet.servers, 51);
        assert_eq!(s.fleet.warming, 5);
        for srv in &s.servers {
            for f in &srv.forecast {
                assert_eq!(f.p50.len(), HORIZON_STEPS);
                assert!(f.p10.iter().zip(&f.p50).zip(&f.p90).all(|((a, b), c)| a <= b && b <= c));
            }
            assert_eq!(srv.warmup.is_some(), srv.forecast.is_empty());
        }
        assert!(s.servers.iter().any(|x| x.level == Level::Critical && !x.alerts.is_empty()));
        let again = snapshot(&Spec { servers: 50, warming: 5, hostile: true, ..Default::default() });
        assert_eq!(s, again, "deterministic");
    }

    #[test]
    fn split_parts_reassemble() {
        let s = snapshot(&Spec { servers: 10, ..Default::default() });
        let parts = split(&s, 3);
        assert_eq!(parts.len(), 3);
        let mut asm = schemas::SnapshotAssembler::default();
        let whole = parts.into_iter().filter_map(|p| asm.push(p)).last().unwrap();
        assert_eq!(whole, s);
    }

    #[test]
    fn card_is_json() {
        let v: serde_json::Value = serde_json::from_str(&model_card_json()).unwrap();
        assert_eq!(v["evaluation"]["per_target"]["cpu"]["coverage"], 0.8);
    }
}
