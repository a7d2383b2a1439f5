//! The `fcmsg` CLI turns contract messages into JSON and back.

use std::io::Write;
use std::process::{Command, Stdio};

use schemas::{encode, MetricRecord, Metrics, MetricsBatch};

fn run(args: &[&str], input: &[u8]) -> (bool, Vec<u8>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fcmsg"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn decode_then_encode_round_trips_a_batch() {
    let batch = MetricsBatch::new(
        "generator",
        9,
        1_764_000_300_000,
        vec![MetricRecord {
            server: "ppdb001".into(),
            ts_ms: 1_764_000_000_000,
            profile: None,
            metrics: Metrics { mem_used_pct: Some(91.5), ..Default::default() },
        }],
    );
    let (ok, json, _) = run(&["decode"], &encode(&batch).unwrap());
    assert!(ok);
    let text = String::from_utf8(json.clone()).unwrap();
    assert!(text.contains("\"server\": \"ppdb001\""), "{text}");
    assert!(text.contains("\"mem_used_pct\": 91.5"), "{text}");
    let (ok, msgpack, _) = run(&["encode"], &json);
    assert!(ok);
    let back: MetricsBatch = schemas::decode(&msgpack).unwrap();
    assert_eq!(back, batch);
}

#[test]
fn garbage_is_a_clear_error() {
    let (ok, _, err) = run(&["decode"], b"\xc1\xc1");
    assert!(!ok);
    assert!(err.contains("not valid MessagePack"), "{err}");
    let (ok, _, err) = run(&["encode"], b"{nope");
    assert!(!ok);
    assert!(err.contains("not valid JSON"), "{err}");
}

#[test]
fn forecast_curves_print_as_plain_arrays() {
    use schemas::{Level, Profile, ServerForecast, Target, TargetForecast};
    let sf = ServerForecast {
        server: "ppdb001".into(),
        profile: Profile::Database,
        last_ms: 1_764_000_000_000,
        risk: 12.5,
        level: Level::Healthy,
        reasons: vec![],
        current: Metrics::default(),
        recent: vec![],
        warmup: None,
        no_forecast: None,
        forecast: vec![TargetForecast {
            target: Target::Mem,
            method: schemas::Method::Model,
            p10: vec![40.0, 41.0],
            p50: vec![50.0, 51.0],
            p90: vec![60.0, 61.0],
        }],
        explanation: None,
        alerts: vec![],
        thresholds: vec![],
    };
    let wire = encode(&sf).unwrap();
    assert!(!String::from_utf8_lossy(&wire).contains("p50"), "on the wire the curves are one blob");
    let (ok, json, err) = run(&["decode", "--compact"], &wire);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    // The curves travel scaled to the three curves' range (40-61): within half a step of 21 / 65,535.
    let near = |got: &serde_json::Value, want: [f64; 2]| {
        let got: Vec<f64> = got.as_array().map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect()).unwrap_or_default();
        got.len() == 2 && got.iter().zip(want).all(|(g, w)| (g - w).abs() <= 0.51 * 21.0 / 65_535.0 + 1e-5)
    };
    assert!(near(&v["forecast"][0]["p50"], [50.0, 51.0]), "{v}");
    assert!(near(&v["forecast"][0]["p90"], [60.0, 61.0]), "{v}");
    assert_eq!(v["forecast"][0]["p10"][0], serde_json::json!(40.0), "the range's ends come back exactly: {v}");
}

/// A summary snapshot, as `nats sub predictions.current` delivers it, prints each server with
/// its field names (on the wire a server is a positional array).
#[test]
fn a_snapshot_prints_named_server_summaries() {
    use schemas::{Level, Profile, ServerForecast, ServerSummary, SnapshotHeader, Target};
    let sf = ServerForecast {
        server: "ppdb001".into(),
        profile: Profile::Database,
        last_ms: 1_764_000_000_000,
        risk: 45.0,
        level: Level::Warning,
        reasons: vec![],
        current: Metrics { mem_used_pct: Some(91.5), ..Default::default() },
        recent: vec![],
        warmup: None,
        no_forecast: None,
        forecast: vec![],
        explanation: None,
        alerts: vec![],
        thresholds: vec![],
    };
    let header = SnapshotHeader {
        seq: 7,
        tick_ms: 1_764_000_000_000,
        published_ms: 1_764_000_001_000,
        model: Default::default(),
        fleet: Default::default(),
        accuracy: vec![],
        partition: None,
        thresholds: vec![],
    };
    let wire = encode(&header.snapshot(Default::default(), vec![ServerSummary::of(&sf)])).unwrap();
    let (ok, json, err) = run(&["decode", "--compact"], &wire);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["v"], schemas::SNAPSHOT_VERSION);
    let s = &v["servers"][0];
    assert_eq!((s["server"].as_str(), s["profile"].as_str(), s["level"].as_str()), (Some("ppdb001"), Some("database"), Some("warning")));
    let mem = &s["targets"][Target::ALL.iter().position(|t| *t == Target::Mem).unwrap()];
    assert_eq!((mem["target"].as_str(), mem["current"].as_f64()), (Some("mem"), Some(91.5)), "{s}");
}
