//! Partitions: how a fleet is split among predictors, and how the snapshots of the parts are
//! joined back into one fleet view. Exists so publishers, predictors and readers compute the
//! same assignment with one function, and every reader merges the same way.
//!
//! A server's partition is `fnv1a_32(name) % count`: NATS's own `partition(count, token)`
//! subject-mapping function (nats-server `subject_transform.go`, `getHashPartition`), so any
//! NATS client, or a server-side mapping of `metrics.server.*`, computes the same number.
//!
//! With `count` partitions (`count > 1`):
//! - a source publishes each server's records on `metrics.batch.<source>.<partition>`
//!   ([`metrics_batch_subject`]), one batch per partition present in its tick;
//! - each partition's predictor publishes its snapshot on `predictions.current.<partition>`
//!   ([`snapshot_subject`]), with [`PartitionInfo`] set;
//! - a reader keeps the newest snapshot of each partition and shows [`merge`] of them.
//!
//! With one partition (the default) nothing changes: `metrics.batch.<source>` and
//! `predictions.current`, byte for byte as before.

use serde::{Deserialize, Serialize};

use crate::alert::Level;
use crate::snapshot::{FleetFigures, MethodAccuracy, ServerOdds, Snapshot, TargetAccuracy};
use crate::subjects::{METRICS_BATCH_PREFIX, PREDICTIONS_CURRENT};

/// Partition `index` of `count` (0-based). Absent on an unpartitioned snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub index: u16,
    pub count: u16,
}

/// FNV-1a, 32 bits (offset basis 2166136261, prime 16777619; Fowler, Noll, Vo), as Go's
/// `hash/fnv.New32a`.
pub fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// The partition (0..count) of `server`; 0 when `count` is 0 or 1.
pub fn of(server: &str, count: u16) -> u16 {
    if count <= 1 {
        return 0;
    }
    (fnv1a_32(server.as_bytes()) % u32::from(count)) as u16
}

/// Where a source publishes the records of `partition`: `metrics.batch.<source>` with one
/// partition, `metrics.batch.<source>.<partition>` with more.
pub fn metrics_batch_subject(source: &str, partition: u16, count: u16) -> String {
    if count <= 1 {
        format!("{METRICS_BATCH_PREFIX}.{source}")
    } else {
        format!("{METRICS_BATCH_PREFIX}.{source}.{partition}")
    }
}

/// What a partition's consumer reads: `metrics.batch.*.<partition>` (every source), or
/// `metrics.batch.>` with one partition.
pub fn metrics_batch_filter(partition: u16, count: u16) -> String {
    if count <= 1 {
        format!("{METRICS_BATCH_PREFIX}.>")
    } else {
        format!("{METRICS_BATCH_PREFIX}.*.{partition}")
    }
}

/// The source and partition tokens of a `metrics.batch.<source>[.<partition>]` subject. When
/// the last token is not a partition number, everything after `metrics.batch.` is the source
/// (so a dotted source stays dotted, and is refused as such by the reader).
pub fn parse_metrics_batch(subject: &str) -> (&str, Option<u16>) {
    let rest = subject.strip_prefix(METRICS_BATCH_PREFIX).and_then(|s| s.strip_prefix('.')).unwrap_or(subject);
    match rest.rsplit_once('.').map(|(source, p)| (source, p.parse::<u16>())) {
        Some((source, Ok(p))) => (source, Some(p)),
        _ => (rest, None),
    }
}

/// Where a partition's snapshot is published: `predictions.current` with one partition,
/// `predictions.current.<partition>` with more (`nats sub 'predictions.current.>'` sees all).
pub fn snapshot_subject(partition: u16, count: u16) -> String {
    if count <= 1 {
        PREDICTIONS_CURRENT.to_string()
    } else {
        format!("{PREDICTIONS_CURRENT}.{partition}")
    }
}

/// How many of the `likely_incidents_*` and `top` entries a merged snapshot keeps (as one
/// predictor does).
const LIKELY_MAX: usize = 5;
const TOP_MAX: usize = 20;

/// One fleet view from the newest snapshot of each partition (any order; whole snapshots, not
/// parts). Servers are joined; counts and expectations add up; the odds of at least one
/// incident are `1 - Π(1 - p)` over partitions (independent parts, as within one); averages are
/// weighted by servers (accuracy by samples); `seq` is the sum of the partitions' (it grows
/// whenever any partition publishes), `tick_ms` the newest; the profiles' thresholds are the
/// first partition's that has any (every predictor judges by the same). `partition` is left
/// unset. `None` for no snapshots.
pub fn merge(mut parts: Vec<Snapshot>) -> Option<Snapshot> {
    parts.sort_by_key(|s| s.partition.map(|p| p.index));
    let mut merged = parts.first()?.clone();
    merged.partition = None;
    merged.part = Default::default();
    merged.seq = parts.iter().map(|s| s.seq).sum();
    merged.tick_ms = parts.iter().map(|s| s.tick_ms).max().unwrap_or(0);
    merged.published_ms = parts.iter().map(|s| s.published_ms).max().unwrap_or(0);
    merged.servers = parts.iter().flat_map(|s| s.servers.iter().cloned()).collect();
    merged.thresholds = parts.iter().map(|s| &s.thresholds).find(|t| !t.is_empty()).cloned().unwrap_or_default();
    merged.fleet = merge_fleet(&parts);
    merged.accuracy = merge_accuracy(&parts);
    Some(merged)
}

fn merge_fleet(parts: &[Snapshot]) -> FleetFigures {
    let figs: Vec<&FleetFigures> = parts.iter().map(|s| &s.fleet).collect();
    let sum = |f: fn(&FleetFigures) -> u32| figs.iter().map(|x| f(x)).sum::<u32>();
    let mut out = FleetFigures {
        servers: sum(|f| f.servers),
        ready: sum(|f| f.ready),
        warming: sum(|f| f.warming),
        alerts_warning: sum(|f| f.alerts_warning),
        alerts_critical: sum(|f| f.alerts_critical),
        ..Default::default()
    };
    for l in Level::ALL {
        for f in &figs {
            for _ in 0..f.levels.get(l) {
                out.levels.add(l);
            }
        }
    }
    let none = |f: fn(&FleetFigures) -> f32| 1.0 - figs.iter().map(|x| 1.0 - f(x)).product::<f32>();
    out.prob_incident_30m = none(|f| f.prob_incident_30m);
    out.prob_incident_8h = none(|f| f.prob_incident_8h);
    out.expected_incidents_30m = figs.iter().map(|f| f.expected_incidents_30m).sum();
    out.expected_incidents_8h = figs.iter().map(|f| f.expected_incidents_8h).sum();
    let servers = out.servers.max(1) as f32;
    out.avg_risk = figs.iter().map(|f| f.avg_risk * f.servers as f32).sum::<f32>() / servers;
    out.max_risk = figs.iter().map(|f| f.max_risk).fold(0.0, f32::max);
    out.health = figs.iter().map(|f| f.health).max().unwrap_or_default();
    let likely = |pick: fn(&FleetFigures) -> &Vec<ServerOdds>| {
        let mut all: Vec<ServerOdds> = figs.iter().flat_map(|f| pick(f).iter().cloned()).collect();
        all.sort_by(|a, b| b.p.total_cmp(&a.p).then_with(|| a.server.cmp(&b.server)));
        all.truncate(LIKELY_MAX);
        all
    };
    out.likely_incidents_30m = likely(|f| &f.likely_incidents_30m);
    out.likely_incidents_8h = likely(|f| &f.likely_incidents_8h);
    // Each partition's riskiest, ranked again by the risks its own snapshot carries (one pass
    // over each partition's servers, not a search of the fleet per name).
    let mut top: Vec<(f32, String)> = Vec::new();
    for s in parts {
        let named: std::collections::HashSet<&str> = s.fleet.top.iter().map(String::as_str).collect();
        let risks: std::collections::HashMap<&str, f32> =
            s.servers.iter().filter(|x| named.contains(x.server.as_str())).map(|x| (x.server.as_str(), x.risk)).collect();
        top.extend(s.fleet.top.iter().map(|n| (risks.get(n.as_str()).copied().unwrap_or(0.0), n.clone())));
    }
    top.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    out.top = top.into_iter().take(TOP_MAX).map(|(_, n)| n).collect();
    out
}

/// Per target (and per method), scores weighted by the samples behind them. q-risk is a ratio
/// of sums, so a samples-weighted mean is its approximation when the partitions' actuals have
/// similar magnitudes; coverage is exact.
fn merge_accuracy(parts: &[Snapshot]) -> Vec<TargetAccuracy> {
    let mut out: Vec<TargetAccuracy> = Vec::new();
    for a in parts.iter().flat_map(|s| &s.accuracy) {
        match out.iter_mut().find(|o| o.target == a.target) {
            None => out.push(a.clone()),
            Some(o) => {
                [o.qrisk_p50, o.qrisk_p90, o.coverage, _] = weighted(
                    [o.qrisk_p50, o.qrisk_p90, o.coverage, o.samples as f32],
                    [a.qrisk_p50, a.qrisk_p90, a.coverage, a.samples as f32],
                );
                o.samples += a.samples;
                for m in &a.methods {
                    match o.methods.iter_mut().find(|x| x.method == m.method) {
                        None => o.methods.push(m.clone()),
                        Some(x) => merge_method(x, m),
                    }
                }
            }
        }
    }
    out
}

fn merge_method(x: &mut MethodAccuracy, m: &MethodAccuracy) {
    // A coverage only one side knows stays unknown: weighting it by the other side's samples
    // would count points it never scored.
    let both = x.coverage.zip(m.coverage);
    let [p50, p90, coverage, _] = weighted(
        [x.qrisk_p50, x.qrisk_p90, both.map_or(0.0, |c| c.0), x.samples as f32],
        [m.qrisk_p50, m.qrisk_p90, both.map_or(0.0, |c| c.1), m.samples as f32],
    );
    (x.qrisk_p50, x.qrisk_p90, x.coverage) = (p50, p90, both.map(|_| coverage));
    x.samples += m.samples;
}

/// `[q-risk P50, q-risk P90, coverage, samples]` of two scores: the first three weighted by the
/// samples (the first's when neither has any), the samples as they were.
fn weighted(a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
    let (n0, n1) = (a[3], b[3]);
    let w = |x: f32, y: f32| if n0 + n1 > 0.0 { (x * n0 + y * n1) / (n0 + n1) } else { x };
    [w(a[0], b[0]), w(a[1], b[1]), w(a[2], b[2]), a[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_methods_coverage_merges_only_where_both_partitions_know_it() {
        let m = |samples: u64, coverage: Option<f32>| MethodAccuracy {
            method: crate::Method::Level,
            samples,
            qrisk_p50: 0.2,
            qrisk_p90: 0.1,
            coverage,
        };
        let mut x = m(100, Some(0.9));
        merge_method(&mut x, &m(300, Some(0.7)));
        assert_eq!(x.samples, 400);
        assert!((x.coverage.unwrap_or(f32::NAN) - 0.75).abs() < 1e-6, "{x:?}");
        let mut x = m(100, Some(0.9));
        merge_method(&mut x, &m(300, None));
        assert_eq!((x.samples, x.coverage), (400, None), "unknown on one side: unknown");
        assert!((x.qrisk_p50 - 0.2).abs() < 1e-6);
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // From the FNV reference test suite (isthe.com/chongo/src/fnv/test_fnv.c).
        assert_eq!(fnv1a_32(b""), 0x811c9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        assert_eq!(of("ppweb001", 1), 0);
        assert_eq!(of("anything", 0), 0);
        assert_eq!(of("foobar", 7), (0xbf9cf968u32 % 7) as u16);
        let mut counts = [0u32; 8];
        for i in 0..8000 {
            counts[usize::from(of(&format!("ppweb{i:04}"), 8))] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }

    #[test]
    fn subjects_round_trip() {
        assert_eq!(metrics_batch_subject("generator", 3, 1), "metrics.batch.generator");
        assert_eq!(metrics_batch_subject("generator", 3, 8), "metrics.batch.generator.3");
        assert_eq!(parse_metrics_batch("metrics.batch.generator.3"), ("generator", Some(3)));
        assert_eq!(parse_metrics_batch("metrics.batch.prometheus"), ("prometheus", None));
        assert_eq!(parse_metrics_batch("metrics.batch.a.b"), ("a.b", None));
        assert_eq!(metrics_batch_filter(2, 4), "metrics.batch.*.2");
        assert_eq!(snapshot_subject(0, 1), "predictions.current");
        assert_eq!(snapshot_subject(5, 8), "predictions.current.5");
    }

    fn part(index: u16, seq: u64, servers: &[(&str, f32)], fleet: FleetFigures) -> Snapshot {
        let mut s = crate::parts::SnapshotHeader {
            seq,
            tick_ms: 1000 + i64::from(index),
            published_ms: 2000,
            partition: Some(PartitionInfo { index, count: 2 }),
            model: Default::default(),
            fleet,
            accuracy: Vec::new(),
            thresholds: Vec::new(),
        }
        .snapshot(Default::default(), Vec::new());
        s.servers = servers
            .iter()
            .map(|(n, r)| crate::summary::ServerSummary {
                server: n.to_string(),
                profile: crate::Profile::Generic,
                last_ms: 0,
                risk: *r,
                level: Level::from_risk(*r),
                targets: Vec::new(),
                breach: None,
                reasons: Vec::new(),
                reason: None,
                spark: None,
                warmup: None,
                no_forecast: false,
                alerts: Vec::new(),
            })
            .collect();
        s
    }

    #[test]
    fn scores_are_weighted_by_their_samples() {
        assert_eq!(weighted([0.2, 0.4, 0.8, 100.0], [0.6, 0.0, 0.5, 300.0]), [0.5, 0.1, 0.575, 100.0]);
        assert_eq!(weighted([0.2, 0.4, 0.8, 0.0], [0.6, 0.0, 0.5, 0.0]), [0.2, 0.4, 0.8, 0.0]);
    }

    #[test]
    fn merge_adds_counts_and_combines_odds() {
        let mut a = FleetFigures { servers: 2, ready: 2, avg_risk: 10.0, max_risk: 15.0, prob_incident_8h: 0.5, ..Default::default() };
        a.levels.healthy = 2;
        a.top = vec!["a1".into(), "a2".into()];
        a.expected_incidents_8h = 0.6;
        a.likely_incidents_8h = vec![ServerOdds { server: "a1".into(), p: 0.4 }];
        let mut b = FleetFigures { servers: 1, ready: 1, avg_risk: 80.0, max_risk: 80.0, prob_incident_8h: 0.5, ..Default::default() };
        b.levels.critical = 1;
        b.health = Level::Critical;
        b.alerts_critical = 2;
        b.top = vec!["b1".into()];
        b.expected_incidents_8h = 0.9;
        b.likely_incidents_8h = vec![ServerOdds { server: "b1".into(), p: 0.9 }];
        let m = merge(vec![part(1, 7, &[("b1", 80.0)], b), part(0, 5, &[("a1", 15.0), ("a2", 5.0)], a)]).unwrap();
        assert_eq!((m.seq, m.tick_ms, m.partition), (12, 1001, None));
        assert_eq!(m.servers.iter().map(|s| s.server.as_str()).collect::<Vec<_>>(), ["a1", "a2", "b1"]);
        let f = &m.fleet;
        assert_eq!((f.servers, f.ready, f.levels.healthy, f.levels.critical, f.alerts_critical), (3, 3, 2, 1, 2));
        assert_eq!((f.health, f.max_risk), (Level::Critical, 80.0));
        assert!((f.avg_risk - 100.0 / 3.0).abs() < 1e-4, "{}", f.avg_risk);
        assert!((f.prob_incident_8h - 0.75).abs() < 1e-6);
        assert!((f.expected_incidents_8h - 1.5).abs() < 1e-6);
        assert_eq!(f.top, ["b1", "a1", "a2"]);
        assert_eq!(f.likely_incidents_8h.iter().map(|o| o.server.as_str()).collect::<Vec<_>>(), ["b1", "a1"]);
        assert!(merge(Vec::new()).is_none());
    }
}
