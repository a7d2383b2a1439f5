use super::*;
use crate::alert::{Alert, AlertBasis, AlertState, Level};
use crate::method::Method;
use crate::metric::{Metrics, Target};
use crate::profile::Profile;
use crate::snapshot::{
    Explanation, LevelCounts, MethodAccuracy, ProfileThresholds, RiskReason, ServerForecast, ServerOdds, TargetForecast, TargetHistory,
    TargetThresholds, VariableWeight, Warmup,
};
use crate::summary::ServerSummary;

/// A snapshot part with every kind of field filled: a warming server and one with a
/// forecast, a reason and an alert (the golden bytes below are this snapshot at `v` 2, the
/// summary layout, written deliberately when the summaries replaced the full forecasts).
fn golden_snapshot() -> Snapshot {
    let server = |i: usize| ServerForecast {
        server: format!("ppdb{i:03}"),
        profile: Profile::Database,
        last_ms: 1_800_000_000_000 + i as i64,
        risk: 12.5 * i as f32,
        level: if i == 0 { Level::Healthy } else { Level::Warning },
        reasons: vec![RiskReason { target: Target::Cpu, points: 5.0, text: "CPU 96 % in 30 min".into() }],
        current: Metrics { cpu_idle_pct: Some(50.0), mem_used_pct: Some(71.5), ..Default::default() },
        recent: vec![TargetHistory { target: Target::Mem, values: vec![Some(1.0), None, Some(2.5)] }],
        warmup: (i == 0).then_some(Warmup { have_steps: 3, need_steps: 6 }),
        no_forecast: (i == 1).then(|| "no method gave finite numbers".to_string()),
        forecast: vec![TargetForecast {
            target: Target::Cpu,
            method: Method::SeasonalNaive,
            p10: vec![1.0, 2.0],
            p50: vec![2.0, 3.0],
            p90: vec![3.0, 4.5],
        }],
        explanation: Some(Explanation {
            variables: vec![VariableWeight { name: "cpu_idle_pct".into(), weight: 0.25 }],
            attention: vec![0.5, 0.5],
        }),
        alerts: vec![Alert {
            id: format!("ppdb{i:03}.cpu"),
            server: format!("ppdb{i:03}"),
            profile: Profile::Database,
            target: Target::Cpu,
            severity: Level::Critical,
            basis: AlertBasis::P90,
            threshold: 95.0,
            predicted: 97.25,
            current: Some(80.0),
            steps_ahead: 6,
            minutes_ahead: 30,
            state: AlertState::Opened,
            opened_ms: 1_799_999_000_000,
            updated_ms: 1_800_000_000_000,
        }],
        thresholds: vec![TargetThresholds { target: Target::Cpu, warning: 80.0, critical: 95.0 }],
    };
    Snapshot {
        v: crate::SNAPSHOT_VERSION,
        seq: 42,
        tick_ms: 1_800_000_000_000,
        published_ms: 1_700_000_000_123,
        part: PartInfo { index: 1, count: 3 },
        model: ModelInfo {
            version: "tft-golden".into(),
            horizon_steps: 96,
            step_ms: 300_000,
            encoder_steps: 288,
            min_history_steps: 6,
            quantiles: vec![0.1, 0.5, 0.9],
        },
        fleet: FleetFigures {
            servers: 2,
            ready: 1,
            warming: 1,
            levels: LevelCounts { healthy: 1, watch: 0, warning: 1, critical: 0 },
            prob_incident_30m: 0.25,
            health: Level::Warning,
            top: vec!["ppdb001".into()],
            alerts_critical: 2,
            expected_incidents_8h: 0.5,
            likely_incidents_8h: vec![ServerOdds { server: "ppdb001".into(), p: 0.5 }],
            ..Default::default()
        },
        accuracy: vec![TargetAccuracy {
            target: Target::Cpu,
            samples: 960,
            qrisk_p50: 0.125,
            qrisk_p90: 0.0625,
            coverage: 0.75,
            methods: vec![MethodAccuracy { method: Method::Level, samples: 960, qrisk_p50: 0.25, qrisk_p90: 0.125, coverage: Some(0.5) }],
        }],
        partition: None,
        thresholds: vec![ProfileThresholds {
            profile: Profile::Database,
            targets: vec![TargetThresholds { target: Target::Cpu, warning: 80.0, critical: 95.0 }],
        }],
        servers: (0..2).map(|i| ServerSummary::of(&server(i))).collect(),
    }
}

/// `parts_golden.hex`: `encode(&golden_snapshot())` at `v` 2. Regenerate only for a deliberate
/// change of the wire layout, with a new `SNAPSHOT_VERSION`:
/// `FLEETCAST_WRITE_GOLDEN=1 cargo nextest run -E 'test(golden)'` writes it.
fn golden_bytes() -> Vec<u8> {
    let hex = include_str!("parts_golden.hex").trim();
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

fn header_of(s: &Snapshot) -> SnapshotHeader {
    SnapshotHeader {
        seq: s.seq,
        tick_ms: s.tick_ms,
        published_ms: s.published_ms,
        model: s.model.clone(),
        fleet: s.fleet.clone(),
        accuracy: s.accuracy.clone(),
        partition: s.partition,
        thresholds: s.thresholds.clone(),
    }
}

fn encoded(servers: &[ServerSummary]) -> Vec<Vec<u8>> {
    servers.iter().map(|s| crate::encode(s).unwrap()).collect()
}

#[test]
fn a_snapshot_encodes_to_the_golden_bytes() {
    if std::env::var_os("FLEETCAST_WRITE_GOLDEN").is_some() {
        let hex: String = crate::encode(&golden_snapshot()).unwrap().iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/src/parts_golden.hex"), hex + "\n").unwrap();
    }
    let golden = golden_bytes();
    assert_eq!(golden[..3], [0x8a, 0xa1, b'v'], "a map of 10 fields, `v` first");
    assert_eq!(crate::decode::<Snapshot>(&golden).unwrap().v, crate::SNAPSHOT_VERSION);
    assert_eq!(crate::encode(&golden_snapshot()).unwrap(), golden);
    assert_eq!(crate::decode::<Snapshot>(&golden).unwrap(), golden_snapshot());
}

#[test]
fn a_part_from_encoded_servers_is_the_golden_bytes() {
    let snap = golden_snapshot();
    let servers = encoded(&snap.servers);
    let refs: Vec<&[u8]> = servers.iter().map(|v| v.as_slice()).collect();
    let mut out = vec![0xff; 3];
    header_of(&snap).write_part(&mut out, snap.part, &refs).unwrap();
    assert_eq!(out, golden_bytes());
}

/// The servers array's length marker at every size class: fixarray (< 16), array16, array32.
#[test]
fn a_part_from_encoded_servers_equals_the_schema_encoding_at_every_length() {
    let snap = golden_snapshot();
    let h = header_of(&snap);
    let one = crate::encode(&snap.servers[1]).unwrap();
    for n in [0usize, 1, 15, 16, 65_535, 65_536] {
        let servers = vec![snap.servers[1].clone(); n];
        let refs = vec![one.as_slice(); n];
        let part = PartInfo { index: 0, count: 1 };
        let mut out = Vec::new();
        h.write_part(&mut out, part, &refs).unwrap();
        let whole = h.snapshot(part, servers);
        assert!(out == crate::encode(&whole).unwrap(), "{n} servers: the two encodings differ");
        if n < 20 {
            assert_eq!(crate::decode::<Snapshot>(&out).unwrap(), whole);
        }
    }
}

fn part(seq: u64, index: u16, count: u16, servers: &[&str]) -> Snapshot {
    let mut s = golden_snapshot();
    s.seq = seq;
    s.part = PartInfo { index, count };
    let template = s.servers[0].clone();
    s.servers = servers.iter().map(|name| ServerSummary { server: name.to_string(), ..template.clone() }).collect();
    s
}

fn names(s: &Snapshot) -> Vec<&str> {
    s.servers.iter().map(|s| s.server.as_str()).collect()
}

#[test]
fn joins_parts_in_order() {
    let mut a = SnapshotAssembler::default();
    assert!(a.push(part(1, 0, 3, &["a"])).is_none());
    assert!(a.push(part(1, 1, 3, &["b"])).is_none());
    let whole = a.push(part(1, 2, 3, &["c"])).unwrap();
    assert_eq!(names(&whole), ["a", "b", "c"]);
    assert_eq!(whole.part, PartInfo::default());
}

#[test]
fn never_mixes_snapshots() {
    let mut a = SnapshotAssembler::default();
    assert!(a.push(part(1, 0, 2, &["a"])).is_none());
    assert!(a.push(part(2, 1, 2, &["x"])).is_none());
    assert!(a.push(part(1, 1, 2, &["b"])).is_none(), "pending dropped by the newer part");
    let single = a.push(part(3, 0, 1, &["z"])).unwrap();
    assert_eq!(names(&single), ["z"]);
}

#[test]
fn joins_partitions_apart_and_keeps_their_number() {
    let of = |p: u16, seq: u64, index: u16, names: &[&str]| {
        let mut s = part(seq, index, 2, names);
        s.partition = Some(crate::partition::PartitionInfo { index: p, count: 2 });
        s
    };
    let mut a = SnapshotAssembler::default();
    assert!(a.push(of(0, 1, 0, &["a"])).is_none());
    assert!(a.push(of(1, 9, 0, &["x"])).is_none());
    let zero = a.push(of(0, 1, 1, &["b"])).unwrap();
    let one = a.push(of(1, 9, 1, &["y"])).unwrap();
    assert_eq!((names(&zero), names(&one)), (vec!["a", "b"], vec!["x", "y"]));
    assert_eq!(one.partition, Some(crate::partition::PartitionInfo { index: 1, count: 2 }));
    // On the wire and back, through both writers.
    let bytes = crate::encode(&one).unwrap();
    let back: Snapshot = crate::decode(&bytes).unwrap();
    assert_eq!(back, one);
    let mut written = Vec::new();
    let servers = encoded(&one.servers);
    let refs: Vec<&[u8]> = servers.iter().map(|v| v.as_slice()).collect();
    header_of(&one).write_part(&mut written, one.part, &refs).unwrap();
    assert_eq!(written, bytes);
}
