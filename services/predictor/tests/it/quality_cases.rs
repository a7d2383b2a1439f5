//! The forecast-quality issue's small inputs whose right answer is known, fed through a real
//! nats-server into the predictor with the shipped model (`models/tft.onnx`), as an operator's
//! agents would send them: one record per server per 5-minute step, `clock_ms = ts + 300000`.
//!
//! 1. A filling disk is extrapolated (crossings within 25 % of the truth) and raises a disk alert.
//! 2. One CPU spike is not a regime change (level at most warning, no critical alert); the same
//!    value held for an hour is critical.
//! 3. Counter wraps and absurd loads are rejected as implausible; no curve is ever non-finite.
//! 4. A zeroed agent and CPU sent as fractions are rejected as inconsistent; no alert.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use common::*;
use futures::StreamExt;
use predictor::Config;
use schemas::{AlertState, Level, Method, MetricRecord, Metrics, MetricsBatch, RejectReason, Rejection, ServerForecast, Target, STEP_MS};

const STEPS: i64 = 48;

fn cpu(m: &mut Metrics, used: f32) {
    // User takes the change, so the four parts still sum to 100.
    m.cpu_idle_pct = Some(100.0 - used);
    m.cpu_user_pct = Some(used - 7.0);
}

/// Every case server's record at step `k` (0-based), `None` where the case sends nothing.
fn records(k: i64) -> Vec<(&'static str, Metrics)> {
    let mut out = Vec::new();
    let mut disk = base_record();
    disk.disk_usage_pct = Some(50.0 + 0.5 * k as f32);
    out.push(("ppgen001", disk));

    let spike = |held: i64| {
        let mut m = base_record();
        if k >= STEPS - held {
            m.cpu_idle_pct = Some(2.0);
            m.cpu_user_pct = Some(90.0);
            m.cpu_sys_pct = Some(6.0);
            m.cpu_iowait_pct = Some(2.0);
        } else {
            cpu(&mut m, if k % 2 == 0 { 39.0 } else { 41.0 });
        }
        m
    };
    out.push(("ppweb001", spike(1)));
    out.push(("ppweb002", spike(12)));

    let mut wrap = base_record();
    wrap.net_in_mb_s = Some(120.0 + if k % 2 == 0 { 2.0 } else { -2.0 });
    let mut wrap2 = wrap;
    let mut load = base_record();
    if k == 30 {
        wrap.net_in_mb_s = Some(18446744073709551615.0_f64 as f32);
        wrap2.net_in_mb_s = Some(1e22);
    }
    if k == 20 || k == 40 {
        load.load_average = Some(2e38);
    }
    out.extend([("ppetl001", wrap), ("ppetl002", wrap2), ("ppetl003", load)]);

    if k < 24 {
        out.push(("ppdb005", base_record()));
    } else if k < 27 {
        let mut zero = Metrics::default();
        for m in schemas::Metric::ALL {
            zero.set(m, Some(0.0));
        }
        out.push(("ppdb005", zero));
    }
    let fractions = Metrics {
        cpu_user_pct: Some(0.30),
        cpu_sys_pct: Some(0.08),
        cpu_iowait_pct: Some(0.02),
        cpu_idle_pct: Some(0.60),
        mem_used_pct: Some(0.55),
        disk_usage_pct: Some(0.40),
        ..Default::default()
    };
    out.push(("ppweb005", fractions));
    out
}

fn real_model(url: &str) -> Config {
    let mut c = config(url);
    c.model = testkit::workspace_root().join("models/tft.onnx");
    c
}

fn p50(s: &ServerForecast, t: Target) -> &[f32] {
    &s.forecast_of(t).unwrap_or_else(|| panic!("{} has a {t:?} forecast", s.server)).p50
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_answers_on_small_inputs() {
    let nats = testkit::NatsServer::start().expect("nats-server");
    let client = nats.connect().await.expect("connect");
    let js = jetstream::new(client.clone());
    let running = predictor::start(real_model(&nats.url())).await.expect("predictor starts");
    let mut rejected = client.subscribe(schemas::subjects::METRICS_REJECTED).await.unwrap();
    let mut alerts = client.subscribe("alerts.>").await.unwrap();
    let mut snaps = Snapshots::subscribe(&client).await;
    client.flush().await.unwrap();

    let t = t0() - STEPS * STEP_MS;
    let mut snap = None;
    for k in 0..STEPS {
        let ts = t + k * STEP_MS;
        let recs = records(k)
            .into_iter()
            .map(|(server, metrics)| MetricRecord { server: server.into(), ts_ms: ts, profile: None, metrics })
            .collect();
        publish_batch(&js, &MetricsBatch::new(SOURCE, k as u64 + 1, ts + STEP_MS, recs)).await;
        // One tick per step, as with a live source: each method's forecast of every step is
        // issued and later scored (a backlog would be coalesced into fewer ticks).
        snap = Some(snaps.until(Duration::from_secs(30), |s| s.tick_ms == ts).await);
    }
    let snap = snap.expect("48 snapshots");
    let stored = fleetbus::forecasts::of_snapshot(&client, &snap).await.expect("every server in KV forecasts");
    let by: BTreeMap<&str, &ServerForecast> = stored.iter().map(|s| (s.server.as_str(), s)).collect();

    // 1. The disk keeps rising ~0.5 per step: 85 crossed near step 23, 95 near step 43.
    let disk = by["ppgen001"];
    let d = p50(disk, Target::Disk);
    let cross = |line: f32| d.iter().position(|v| *v >= line).map(|k| k as f32 + 1.0);
    let (c85, c95) = (cross(85.0).expect("85 crossed"), cross(95.0).expect("95 crossed"));
    assert!((c85 - 23.0).abs() <= 0.25 * 23.0, "85 % crossed at step {c85}, truth 23");
    assert!((c95 - 43.0).abs() <= 0.25 * 43.0, "95 % crossed at step {c95}, truth 43");
    assert!(d.iter().all(|v| *v <= 100.0));
    assert_eq!(disk.forecast_of(Target::Disk).unwrap().method, Method::Trend, "the trend has proven itself");
    assert!(disk.alerts.iter().any(|a| a.target == Target::Disk), "a disk alert is open: {:?}", disk.alerts);

    // 2. One spike: back under the warning line (85) within 30 min, at most warning.
    let web1 = by["ppweb001"];
    let c = p50(web1, Target::Cpu);
    assert!(c[..6].iter().any(|v| *v < 85.0), "P50 back under 85 within 6 steps: {:?}", &c[..6]);
    assert!(web1.level <= Level::Warning, "one spike: {:?}", web1.level);
    assert!(!web1.alerts.iter().any(|a| a.severity == Level::Critical), "{:?}", web1.alerts);
    let web2 = by["ppweb002"];
    assert_eq!(web2.level, Level::Critical, "98 % held for an hour is critical");

    // 3. No curve anywhere is non-finite; the wrapped counters never reached the forecast.
    for s in &stored {
        for f in &s.forecast {
            assert!(f.p10.iter().chain(&f.p50).chain(&f.p90).all(|v| v.is_finite()), "{} {:?}", s.server, f.target);
        }
    }
    for name in ["ppetl001", "ppetl002"] {
        let n = p50(by[name], Target::NetIn);
        assert!(n.iter().all(|v| (100.0..=140.0).contains(v)), "{name}: {:?}", &n[..4]);
    }
    let etl3 = by["ppetl003"];
    assert!(etl3.no_forecast.is_none() && etl3.forecast_of(Target::Load).is_some());
    assert!(p50(etl3, Target::Load).iter().all(|v| *v < 10.0));

    // 4. ppdb005's zero records and every ppweb005 record were rejected: no alert, and
    //    ppdb005 still reads its last good values.
    assert!(!by.contains_key("ppweb005"), "no accepted record, no server");
    let db5 = by["ppdb005"];
    assert_eq!(db5.current.cpu_idle_pct, Some(73.0), "the zeroed steps never became values");
    assert!(db5.alerts.is_empty(), "{:?}", db5.alerts);

    // The rejections, each with its reason and a rule naming what is wrong.
    let mut reasons: BTreeMap<String, Vec<RejectReason>> = BTreeMap::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(500), rejected.next()).await {
        let r: Rejection = schemas::decode(&msg.payload).expect("rejection decodes");
        if r.error.reason == RejectReason::Inconsistent && r.server.as_deref() == Some("ppweb005") {
            assert!(r.error.value.contains("sum 1"), "the rule names the sum: {:?}", r.error);
        }
        reasons.entry(r.server.unwrap_or_default()).or_default().push(r.error.reason);
    }
    assert_eq!(reasons["ppetl001"], [RejectReason::Implausible]);
    assert_eq!(reasons["ppetl002"], [RejectReason::Implausible]);
    assert_eq!(reasons["ppetl003"], [RejectReason::Implausible; 2]);
    assert_eq!(reasons["ppdb005"], [RejectReason::Inconsistent; 3]);
    assert_eq!(reasons["ppweb005"].len(), STEPS as usize);
    assert!(reasons["ppweb005"].iter().all(|r| *r == RejectReason::Inconsistent));
    assert!(!reasons.contains_key("ppgen001") && !reasons.contains_key("ppweb001"));

    // No critical alert ever opened for the single spike, nor any alert for the broken agents.
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(300), alerts.next()).await {
        let ev: schemas::AlertEvent = schemas::decode(&msg.payload).expect("alert event decodes");
        let a = &ev.alert;
        assert!(!(a.server == "ppweb001" && a.severity == Level::Critical && ev.alert.state == AlertState::Opened), "{ev:?}");
        assert!(a.server != "ppdb005" && a.server != "ppweb005", "{ev:?}");
    }
    running.stop().await.expect("clean stop");
}
