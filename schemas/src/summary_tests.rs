use super::*;
use crate::alert::{Alert, AlertBasis, AlertState, Level};
use crate::metric::Metrics;
use crate::snapshot::{Explanation, RiskReason, TargetForecast, TargetHistory, TargetThresholds, VariableWeight};

/// A server as the predictor publishes it: 8 targets with 96-step curves, a day of recent
/// actuals, the model's explanation, `reasons` reasons in the predictor's words and `alerts`
/// active alerts (CPU, memory, ...).
pub(crate) fn realistic(name: &str, reasons: usize, alerts: usize) -> ServerForecast {
    let curve = |base: f32, slope: f32| (0..96).map(|k| base + slope * k as f32 + (k as f32 * 0.3).sin()).collect::<Vec<f32>>();
    let forecast = Target::ALL
        .iter()
        .enumerate()
        .map(|(i, &target)| {
            let p50 = curve(40.0 + i as f32 * 3.1, 0.21);
            TargetForecast {
                target,
                method: Method::ALL[i % Method::ALL.len()],
                p10: p50.iter().map(|v| v - 4.0).collect(),
                p90: p50.iter().map(|v| v + 4.0).collect(),
                p50,
            }
        })
        .collect();
    let texts = [
        "Memory 96 % now (critical from 95 %), P90 reaches 99 % in 25 min, P50 reaches 99 % in 3 h 20 min",
        "CPU used 80 % now, P90 crosses warning 85 % in 5 min",
        "Disk 71 % now (nearing warning at 85 %)",
    ];
    let alert = |i: usize| {
        let target = Target::ALL[i];
        Alert {
            id: format!("{name}.{}", target.name()),
            server: name.to_string(),
            profile: Profile::WebApi,
            target,
            severity: if i == 0 { Level::Critical } else { Level::Warning },
            basis: AlertBasis::P90,
            threshold: 95.0,
            predicted: 97.25,
            current: Some(88.5),
            steps_ahead: 5 + i as u16,
            minutes_ahead: 25 + 5 * i as u32,
            state: AlertState::Updated,
            opened_ms: 1_800_000_000_000 - 3_600_000,
            updated_ms: 1_800_000_000_000,
        }
    };
    ServerForecast {
        server: name.to_string(),
        profile: Profile::WebApi,
        last_ms: 1_800_000_000_000,
        risk: 52.5,
        level: if alerts > 0 { Level::Warning } else { Level::Healthy },
        reasons: (0..reasons)
            .map(|i| RiskReason { target: Target::ALL[(i + 1) % 8], points: 12.4 - i as f32, text: texts[i % texts.len()].into() })
            .collect(),
        current: Metrics {
            cpu_idle_pct: Some(19.5),
            mem_used_pct: Some(96.2),
            cpu_iowait_pct: Some(3.25),
            swap_used_pct: Some(0.0),
            disk_usage_pct: Some(71.0),
            load_average: Some(7.9),
            net_in_mb_s: Some(180.5),
            net_out_mb_s: Some(1234.0),
            ..Default::default()
        },
        recent: Target::ALL.iter().map(|&target| TargetHistory { target, values: vec![Some(50.0); 288] }).collect(),
        warmup: None,
        no_forecast: None,
        forecast,
        explanation: Some(Explanation {
            variables: vec![VariableWeight { name: "cpu_idle_pct".into(), weight: 0.25 }; 14],
            attention: vec![0.01; 288],
        }),
        alerts: (0..alerts).map(alert).collect(),
        thresholds: vec![TargetThresholds { target: Target::Cpu, warning: 85.0, critical: 95.0 }; 6],
    }
}

fn wire_len(s: &ServerSummary) -> usize {
    crate::encode(s).unwrap().len()
}

/// The byte budget (`schemas/README.md`, "ServerSummary"): 15 MB for 100,000 servers is
/// 150 bytes a server on average. A calm server (8 targets, a sparkline, no reason, no alert)
/// and a watched one (a reason) fit it with room; an alerted one with the longest headline the
/// predictor writes takes a little more, and a hot one more again (each alert ~25 bytes). Any
/// curve put back in the summary (96 steps = 384 bytes of f32) breaks all four.
#[test]
fn a_summary_fits_the_byte_budget() {
    let name = "ppweb012345";
    let calm = wire_len(&ServerSummary::of(&realistic(name, 0, 0)));
    let watched = wire_len(&ServerSummary::of(&realistic(name, 1, 0)));
    let alerted = wire_len(&ServerSummary::of(&realistic(name, 1, 1)));
    let hot = wire_len(&ServerSummary::of(&realistic(name, 3, 2)));
    let full = crate::encode(&realistic(name, 3, 2)).unwrap().len();
    println!("bytes per server: calm {calm}, watched {watched}, alerted {alerted}, hot {hot}; the KV entry {full}");
    assert!(calm <= 110, "calm server: {calm} bytes");
    assert!(watched <= 150, "a server with a reason: {watched} bytes");
    assert!(alerted <= 180, "a server with a reason and an alert: {alerted} bytes");
    assert!(hot <= 210, "a hot server with 3 reasons and 2 alerts: {hot} bytes");
    assert!(full > 50 * hot, "the KV entry ({full} bytes) is where the curves are");
}

#[test]
fn summarises_what_the_fleet_views_need() {
    let sf = realistic("ppweb001", 3, 2);
    let s = ServerSummary::of(&sf);
    assert_eq!((s.server.as_str(), s.profile, s.last_ms, s.risk, s.level), ("ppweb001", Profile::WebApi, sf.last_ms, 52.5, Level::Warning));
    assert_eq!(s.targets.len(), 8);
    assert_eq!(s.current(Target::Cpu), Some(80.5), "CPU used = 100 - idle");
    assert_eq!(s.target(Target::Mem).and_then(|t| t.method), Some(Method::ALL[1]));
    let peak = sf.forecast_of(Target::Disk).map(|f| f.p50.iter().copied().fold(f32::MIN, f32::max));
    assert_eq!(s.target(Target::Disk).and_then(|t| t.peak_p50), peak);
    assert_eq!(s.breach, Some(Breach { target: Target::Cpu, severity: Level::Critical, minutes_ahead: 25 }));
    assert_eq!(s.reasons.len(), 3);
    assert_eq!(s.reason.as_deref(), Some("Memory 96 % now (critical from 95 %)"), "the headline of the first reason");
    assert_eq!(headline("CPU used 80 % now"), "CPU used 80 % now");
    let spark = s.spark.as_ref().expect("a sparkline");
    assert_eq!((spark.target, spark.p50.len()), (sf.reasons[0].target, 24), "the first reason's target, 96 steps / 4");
    let p50 = &sf.forecast_of(spark.target).unwrap().p50;
    assert_eq!(spark.p50[1], p50[4..8].iter().copied().reduce(f32::max), "each point the highest of its steps");
    assert_eq!(s.alerts.len(), 2);
    assert_eq!(s.alerts[0].id("ppweb001"), sf.alerts[0].id);
    assert!(s.breached_now(), "memory at 96.2 % is over its alert's 95 % already");
    let mut calm = sf.clone();
    calm.current.mem_used_pct = Some(50.0);
    assert!(!ServerSummary::of(&calm).breached_now(), "CPU 80.5 % and memory 50 % are under 95 %");
}

/// Through the wire and back: exact where the views compare (names, risk, times, alerts),
/// within the documented quantization elsewhere.
#[test]
fn round_trips_within_the_quantization() {
    let s = ServerSummary::of(&realistic("ppweb001", 3, 2));
    let back: ServerSummary = crate::decode(&crate::encode(&s).unwrap()).unwrap();
    assert_eq!((&back.server, back.profile, back.last_ms, back.risk, back.level), (&s.server, s.profile, s.last_ms, s.risk, s.level));
    assert_eq!((&back.breach, &back.reason, back.warmup, back.no_forecast), (&s.breach, &s.reason, s.warmup, s.no_forecast));
    assert_eq!(back.alerts, s.alerts);
    for (a, b) in s.targets.iter().zip(&back.targets) {
        assert_eq!((a.target, a.method), (b.target, b.method));
        for (x, y) in [(a.current, b.current), (a.peak_p50, b.peak_p50)] {
            let (x, y) = (x.unwrap(), y.unwrap());
            assert!((x - y).abs() <= x.abs() / 1000.0, "{:?}: {x} read back as {y} (half float: 3 digits)", a.target);
        }
    }
    let (sa, sb) = (s.spark.unwrap(), back.spark.unwrap());
    let range = sa.p50.iter().flatten().fold(0.0f32, |m, v| m.max(*v)) - sa.p50.iter().flatten().fold(f32::MAX, |m, v| m.min(*v));
    for (x, y) in sa.p50.iter().zip(&sb.p50) {
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!((x - y).abs() <= range / 508.0 + x.abs() / 1000.0, "{x} vs {y}");
    }
    assert_eq!(back.reasons.iter().map(|r| (r.target, r.points)).collect::<Vec<_>>()[0], (s.reasons[0].target, 12.0), "whole points");
}

/// A summary read back encodes to the same bytes: quantizing twice changes nothing, so a
/// reader that re-publishes (or compares) what it read sees what was sent.
#[test]
fn a_decoded_summary_encodes_to_the_same_bytes() {
    for (reasons, alerts) in [(0, 0), (1, 1), (3, 2)] {
        let bytes = crate::encode(&ServerSummary::of(&realistic("ppweb001", reasons, alerts))).unwrap();
        let back: ServerSummary = crate::decode(&bytes).unwrap();
        assert_eq!(crate::encode(&back).unwrap(), bytes);
    }
    // A flat-ish curve whose lowest value lies between two half floats (25.88: 25.875 or
    // 25.890625): the scale must not drift when read back and written again.
    let p50: Vec<f32> = (0..96).map(|k| 28.11 - 0.0232 * k as f32).collect();
    let spark = Sparkline::of(Target::Cpu, &p50).unwrap();
    let s = ServerSummary { spark: Some(spark), ..ServerSummary::of(&realistic("ppweb001", 0, 0)) };
    let once: ServerSummary = crate::decode(&crate::encode(&s).unwrap()).unwrap();
    let twice: ServerSummary = crate::decode(&crate::encode(&once).unwrap()).unwrap();
    assert_eq!(once, twice);
}

#[test]
fn unknowns_and_warm_up_survive_the_wire() {
    let mut sf = realistic("ppdb002", 0, 0);
    sf.forecast.clear();
    sf.current = Metrics { mem_used_pct: Some(1e9), ..Default::default() };
    sf.warmup = Some(Warmup { have_steps: 3, need_steps: 6 });
    let s = ServerSummary::of(&sf);
    assert!(s.spark.is_none() && s.breach.is_none() && s.reason.is_none());
    let back: ServerSummary = crate::decode(&crate::encode(&s).unwrap()).unwrap();
    assert_eq!(back.warmup, Some(Warmup { have_steps: 3, need_steps: 6 }));
    assert_eq!(back.current(Target::Cpu), None, "unknown stays unknown, never 0");
    assert_eq!(back.current(Target::Mem), Some(65504.0), "beyond a half float: its largest");
    assert!(back.targets.iter().all(|t| t.method.is_none() && t.peak_p50.is_none()));
}

#[test]
fn json_names_every_field() {
    let s = ServerSummary::of(&realistic("ppweb001", 1, 1));
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["server"], "ppweb001");
    assert_eq!(json["profile"], "web_api");
    assert_eq!(json["targets"][0]["target"], "cpu");
    assert_eq!(json["breach"]["minutes_ahead"], 25);
    assert_eq!(json["alerts"][0]["basis"], "p90");
    assert_eq!(json["spark"]["p50"].as_array().map(Vec::len), Some(24));
}

#[test]
fn broken_summaries_are_clear_errors() {
    let good = crate::encode(&ServerSummary::of(&realistic("ppweb001", 1, 1))).unwrap();
    let mut value: rmpv::Value = rmp_serde::from_slice(&good).unwrap();
    if let rmpv::Value::Array(a) = &mut value {
        a[1] = rmpv::Value::from(99);
    }
    let bad = rmp_serde::to_vec(&value).unwrap();
    let e = crate::decode::<ServerSummary>(&bad).unwrap_err().to_string();
    assert!(e.contains("profile code 99"), "{e}");
    if let rmpv::Value::Array(a) = &mut value {
        a[1] = rmpv::Value::from(0);
        a[5] = rmpv::Value::Binary(vec![0; 7]);
    }
    let e = crate::decode::<ServerSummary>(&rmp_serde::to_vec(&value).unwrap()).unwrap_err().to_string();
    assert!(e.contains("targets blob of 7 bytes"), "{e}");
    assert!(crate::decode::<ServerSummary>(&good[..good.len() / 2]).is_err());
}
