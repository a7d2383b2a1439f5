//! Batches for 50 servers in, forecasts out: every server warms up with progress, then gets a
//! 96-step P10/P50/P90 forecast of every target in valid ranges in KV `forecasts`, stored
//! before the snapshot of their summaries on `predictions.current` (each summary is its
//! entry's); the latest snapshot is readable from the `PREDICTIONS` stream, the tick summaries
//! from `HISTORY`, and the figures from the service. Real nats-server, real ONNX Runtime, the
//! tiny test model.

use crate::common;

use std::time::Duration;

use async_nats::jetstream;
use common::*;
use schemas::metric::Unit;
use schemas::{ServerForecast, ServerSummary, Snapshot, Target, STEP_MS};

const SERVERS: usize = 50;

fn check_forecast(s: &ServerForecast, horizon: usize) {
    assert!(s.warmup.is_none(), "{} still warming", s.server);
    assert_eq!(s.forecast.len(), Target::ALL.len(), "{}: every target", s.server);
    for f in &s.forecast {
        assert_eq!((f.p10.len(), f.p50.len(), f.p90.len()), (horizon, horizon, horizon), "{} {:?}", s.server, f.target);
        for k in 0..horizon {
            let (a, b, c) = (f.p10[k], f.p50[k], f.p90[k]);
            assert!(a.is_finite() && b.is_finite() && c.is_finite(), "{} {:?} step {k}", s.server, f.target);
            assert!(a <= b && b <= c, "{} {:?} step {k}: {a} {b} {c}", s.server, f.target);
            assert!(a >= 0.0, "{} {:?} step {k}: P10 {a} < 0", s.server, f.target);
            if f.target.unit() == Unit::Percent {
                assert!(c <= 100.0, "{} {:?} step {k}: P90 {c} > 100 %", s.server, f.target);
            }
        }
    }
    let e = s.explanation.as_ref().expect("explanation from var_weights/attention");
    assert_eq!(e.variables.len(), 14);
    assert!((e.variables.iter().map(|v| v.weight).sum::<f32>() - 1.0).abs() < 1e-3);
    assert!(e.variables.windows(2).all(|w| w[0].weight >= w[1].weight), "largest first");
    assert!((0.0..=100.0).contains(&s.risk));
}

/// The snapshot's summary of a server is its KV entry's, except that the entry's curves travel
/// scaled (`schemas/src/curves.rs`: within half a step of 1/65,535 of their range) while the
/// summary was made from the unrounded ones: a peak or sparkline value (itself a half float)
/// may differ by a rounding, nothing else may.
fn assert_same_summary(published: &ServerSummary, from_kv: &ServerSummary, name: &str) {
    let close = |a: Option<f32>, b: Option<f32>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 2e-3 * a.abs().max(1.0),
        (a, b) => a == b,
    };
    let (mut a, mut b) = (published.clone(), from_kv.clone());
    for (x, y) in a.targets.iter_mut().zip(&mut b.targets) {
        assert!(close(x.peak_p50, y.peak_p50), "{name} {:?}: peak P50 {:?} against {:?}", x.target, x.peak_p50, y.peak_p50);
        (x.peak_p50, y.peak_p50) = (None, None);
    }
    if let (Some(x), Some(y)) = (a.spark.as_mut(), b.spark.as_mut()) {
        assert_eq!(x.p50.len(), y.p50.len(), "{name}");
        for (u, v) in x.p50.iter_mut().zip(&mut y.p50) {
            assert!(close(*u, *v), "{name}: sparkline {u:?} against {v:?}");
            (*u, *v) = (None, None);
        }
    }
    assert_eq!(a, b, "{name}: the snapshot's summary is its KV entry's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_servers_get_full_forecasts() {
    let nats = testkit::NatsServer::start().expect("nats-server");
    let client = nats.connect().await.expect("connect");
    let js = jetstream::new(client.clone());
    let running = predictor::start(config(&nats.url())).await.expect("predictor starts");
    let mut snaps = Snapshots::subscribe(&client).await;
    let names = server_names(SERVERS);
    let (t0, min_history, horizon) = (t0(), 6usize, 96usize);

    // Warm-up: progress counts up with each step, no forecast.
    for s in 0..3 {
        publish_batch(&js, &step_batch(&names, t0 + s * STEP_MS, s as u64)).await;
        let want = (s + 1) as u16;
        let snap = snaps.until(Duration::from_secs(20), |x| x.tick_ms == t0 + s * STEP_MS).await;
        assert_eq!(snap.servers.len(), SERVERS);
        assert_eq!(snap.fleet.warming, SERVERS as u32);
        for srv in &snap.servers {
            let w = srv.warmup.expect("warming up");
            assert_eq!((w.have_steps, w.need_steps), (want, min_history as u16), "{}", srv.server);
            assert_eq!(srv.forecast_count(), 0, "no fake forecast while warming");
        }
    }
    for s in 3..(min_history as i64 + 2) {
        publish_batch(&js, &step_batch(&names, t0 + s * STEP_MS, s as u64)).await;
    }
    let last = t0 + (min_history as i64 + 1) * STEP_MS;
    let snap: Snapshot = snaps.until(Duration::from_secs(20), |x| x.tick_ms == last).await;
    assert_eq!(snap.servers.len(), SERVERS);
    assert_eq!((snap.fleet.servers, snap.fleet.ready, snap.fleet.warming), (SERVERS as u32, SERVERS as u32, 0));
    assert_eq!(snap.model.version, "tiny-test-0001");
    assert_eq!(snap.model.horizon_steps as usize, horizon);
    let mut seen: Vec<&str> = snap.servers.iter().map(|s| s.server.as_str()).collect();
    seen.sort();
    let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(seen, want);
    // Every entry of KV `forecasts` is this tick's already: the predictor stores them before it
    // publishes the snapshot, so no reader sees a summary newer than the curves.
    let forecasts = fleetbus::forecasts::of_snapshot(&client, &snap).await.expect("every server's forecast in KV");
    for (i, name) in names.iter().enumerate() {
        let s = forecasts.iter().find(|s| &s.server == name).unwrap();
        let summary = snap.servers.iter().find(|s| &s.server == name).unwrap();
        let wire = |x: &ServerSummary| schemas::decode::<ServerSummary>(&schemas::encode(x).unwrap()).unwrap();
        assert_same_summary(summary, &wire(&ServerSummary::of(s)), name);
        check_forecast(s, horizon);
        assert_eq!(s.last_ms, last);
        assert_eq!(s.profile, profile_of(name));
        let mem_now = metrics(i, last / STEP_MS).mem_used_pct.unwrap();
        assert_eq!(s.current.mem_used_pct, Some(mem_now));
        let recent = &s.recent.iter().find(|r| r.target == Target::Mem).unwrap().values;
        // Too few forecasts have matured for any method to prove itself, so every target
        // publishes the default, the ensemble: the mean of the model, the recent level, the
        // seasonal naive (the level, with no day of history yet) and the history's median. Three
        // of the four lie within what the memory has shown, the model within 0..=100 %.
        let mem = s.forecast_of(Target::Mem).unwrap();
        assert_eq!(mem.method, predictor::select::DEFAULT, "{name}");
        let seen: Vec<f32> = recent.iter().flatten().copied().collect();
        let (lo, hi) = seen.iter().fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        let (low, high) = (0.75 * lo, 0.75 * hi + 25.0);
        assert!((low - 1e-3..=high + 1e-3).contains(&mem.p50[0]), "{name}: {} outside {low}..{high}", mem.p50[0]);
        assert_eq!(recent.len(), min_history + 2, "every step so far is in the chart history");
        assert!(recent.iter().all(Option::is_some));
        assert!(!s.thresholds.is_empty(), "{name}: profile thresholds for the charts");
    }

    // One server alone from KV `forecasts`, as any client reads it.
    let kv = js.get_key_value("forecasts").await.expect("forecasts bucket");
    let one: ServerForecast = schemas::decode(&kv.get(names[7].as_str()).await.unwrap().expect("key")).unwrap();
    assert_eq!(one.last_ms, last);
    check_forecast(&one, horizon);

    // A late subscriber reads the newest snapshot from the stream.
    let late = predictor::publish::latest_snapshot(&js).await.unwrap().expect("a snapshot in PREDICTIONS");
    assert_eq!(late.seq, snap.seq);
    assert_eq!(late.servers.len(), SERVERS);

    // Every tick left a summary in HISTORY.
    let history = js.get_stream("HISTORY").await.unwrap();
    let tick = history.get_last_raw_message_by_subject("history.tick").await.unwrap();
    let summary: schemas::history::TickSummary = schemas::decode(&tick.payload).unwrap();
    assert_eq!(summary.seq, snap.seq);
    assert_eq!((summary.servers.len(), summary.risk.len(), summary.level.len()), (SERVERS, SERVERS, SERVERS));

    let st = stats(&client).await;
    assert_eq!(st["batches"], (min_history + 2) as u64);
    assert_eq!(st["accepted"], (SERVERS * (min_history + 2)) as u64);
    assert_eq!(st["rejected"], 0);
    assert_eq!(st["windows"], SERVERS as u64);
    assert_eq!(st["warming"], 0);
    assert!(st["tick_latency_ms"]["samples"].as_u64().unwrap() >= 1);
    running.stop().await.expect("graceful stop");
}
