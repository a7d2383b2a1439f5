//! The time rules real sources need (issue 12), each a small input with a known right answer,
//! fed through a real nats-server into the predictor as a source would send it
//! (`clock_ms = ts + 300000` unless the case says otherwise; the base record of the quality
//! issue). Each test starts its own broker and predictor.
//!
//! 1. A record stamped after its batch's clock is `timestamp_skew`; its server goes on, and a
//!    source whose every record is 5 h ahead drags no tick.
//! 2. Late data inside the window fills its step (and survives a restart); older than the
//!    window is `too_late`.
//! 3. The order of records within a batch does not matter.
//! 4. A repeated batch or record counts once.
//! 5. Every server's alert events match `alerts.<state>.*`: a dotted name is rejected.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use common::*;
use futures::{StreamExt, TryStreamExt};
use predictor::Config;
use schemas::{MetricRecord, Metrics, MetricsBatch, Profile, RejectReason, Rejection, ServerForecast, Snapshot, Target, STEP_MS};

const WAIT: Duration = Duration::from_secs(30);
const FIVE_H: i64 = 5 * 3_600_000;

async fn publish(js: &jetstream::Context, batch: &MetricsBatch) {
    let payload = schemas::encode(batch).expect("encode");
    js.publish(schemas::subjects::metrics_batch(&batch.source), payload.into()).await.expect("publish").await.expect("stored in METRICS");
}

fn record(server: &str, ts_ms: i64, metrics: Metrics) -> MetricRecord {
    MetricRecord { server: server.into(), ts_ms, profile: None, metrics }
}

/// The base record with CPU used at `used` % (user takes the change; the parts sum to 100).
fn cpu_used(used: f32) -> Metrics {
    let mut m = base_record();
    m.cpu_idle_pct = Some(100.0 - used);
    m.cpu_user_pct = Some(used - 7.0);
    m
}

/// Every rejection that arrives within `quiet` of the last one.
async fn drain(sub: &mut async_nats::Subscriber, quiet: Duration) -> Vec<Rejection> {
    let mut out = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(quiet, sub.next()).await {
        out.push(schemas::decode(&msg.payload).expect("a Rejection decodes"));
    }
    out
}

/// `name`'s full forecast (KV `forecasts`, stored before `snap` was published), once `snap`
/// lists it.
async fn server(client: &async_nats::Client, snap: &Snapshot, name: &str) -> ServerForecast {
    assert!(snap.servers.iter().any(|s| s.server == name), "{name} in the snapshot at {}", snap.tick_ms);
    let bucket = fleetbus::forecasts::open(&jetstream::new(client.clone())).await.expect("KV forecasts");
    fleetbus::forecasts::get(&bucket, name).await.expect("KV read").unwrap_or_else(|| panic!("{name} in KV forecasts"))
}

fn recent(s: &ServerForecast, target: Target) -> &[Option<f32>] {
    &s.recent.iter().find(|h| h.target == target).expect("recent values of the target").values
}

struct Rig {
    _nats: testkit::NatsServer,
    client: async_nats::Client,
    js: jetstream::Context,
    running: predictor::Running,
    rejected: async_nats::Subscriber,
    snaps: Snapshots,
}

async fn rig(tune: impl FnOnce(&mut Config)) -> Rig {
    let nats = testkit::NatsServer::start().expect("nats-server");
    let client = nats.connect().await.expect("connect");
    let js = jetstream::new(client.clone());
    let mut cfg = config(&nats.url());
    tune(&mut cfg);
    let running = predictor::start(cfg).await.expect("predictor starts");
    let rejected = client.subscribe(schemas::subjects::METRICS_REJECTED).await.unwrap();
    let snaps = Snapshots::subscribe(&client).await;
    client.flush().await.unwrap();
    Rig { _nats: nats, client, js, running, rejected, snaps }
}

/// Rule 1. Source `skew1` reports `ppdb001` for steps 0..29; batch 20 also carries a
/// `ppdb001` record stamped 5 h after its clock. Source `skew2` stamps every record 5 h ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_stamped_in_the_future_is_skewed_and_drags_no_tick() {
    let mut r = rig(|_| {}).await;
    let t = t0() - 30 * STEP_MS;
    let mut last = None;
    for k in 0..30 {
        let ts = t + k * STEP_MS;
        let clock = ts + STEP_MS;
        publish(&r.js, &MetricsBatch::new("skew2", k as u64, clock, vec![record("ppdb002", clock + FIVE_H, base_record())])).await;
        let mut recs = vec![record("ppdb001", ts, base_record())];
        if k == 20 {
            recs.push(record("ppdb001", clock + FIVE_H, cpu_used(99.0)));
        }
        publish(&r.js, &MetricsBatch::new("skew1", k as u64, clock, recs)).await;
        // Every snapshot up to this step's is of this step or earlier: no 5 h jump.
        loop {
            let snap = r.snaps.next(WAIT).await.unwrap_or_else(|| panic!("no snapshot for step {k}"));
            assert!(snap.tick_ms <= ts, "step {k}: tick_ms {} is {} ms ahead", snap.tick_ms, snap.tick_ms - ts);
            if snap.tick_ms == ts {
                last = Some(snap);
                break;
            }
        }
    }
    let snap = last.expect("30 snapshots");
    let db1 = &server(&r.client, &snap, "ppdb001").await;
    assert_eq!(db1.last_ms, t + 29 * STEP_MS, "ppdb001 goes on to step 29");
    let cpu = recent(db1, Target::Cpu);
    assert_eq!(cpu.len(), 30, "{cpu:?}");
    assert!(cpu.iter().all(|v| *v == Some(27.0)), "every step is the real report, none the skewed one: {cpu:?}");
    assert!(snap.servers.iter().all(|s| s.server != "ppdb002"), "no record of skew2 was taken");

    let rejections = drain(&mut r.rejected, Duration::from_millis(500)).await;
    let by_source = |src: &str| rejections.iter().filter(|j| j.source == src).collect::<Vec<_>>();
    let skew1 = by_source("skew1");
    assert_eq!(skew1.len(), 1, "{skew1:?}");
    let j = skew1[0];
    assert_eq!((j.seq, j.index, j.server.as_deref()), (Some(20), Some(1), Some("ppdb001")));
    assert_eq!((j.error.field.as_str(), j.error.reason), ("ts_ms", RejectReason::TimestampSkew));
    let skew2 = by_source("skew2");
    assert_eq!(skew2.len(), 30);
    assert!(skew2.iter().all(|j| j.error.reason == RejectReason::TimestampSkew && j.error.field == "ts_ms"), "{skew2:?}");
    r.running.stop().await.expect("clean stop");
}

/// Rule 2. Source `cw1`, server `ppweb001`: each batch carries CPU for its step and memory for
/// the step two before (CloudWatch-style delay); the last also memory from 400 steps back,
/// older than the window (384 steps).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_values_fill_their_step_and_older_than_the_window_is_too_late() {
    let mut r = rig(|_| {}).await;
    let steps = 30;
    let t = t0() - steps * STEP_MS;
    let mem_at = |k: i64| 40.0 + (k % 7) as f32;
    let cpu_only = {
        let b = base_record();
        Metrics {
            cpu_user_pct: b.cpu_user_pct,
            cpu_sys_pct: b.cpu_sys_pct,
            cpu_iowait_pct: b.cpu_iowait_pct,
            cpu_idle_pct: b.cpu_idle_pct,
            ..Default::default()
        }
    };
    let mem_only = |k: i64| Metrics { mem_used_pct: Some(mem_at(k)), ..Default::default() };
    let mut snap = None;
    for k in 0..steps {
        let ts = t + k * STEP_MS;
        let mut recs = vec![record("ppweb001", ts, cpu_only)];
        if k >= 2 {
            recs.push(record("ppweb001", ts - 2 * STEP_MS, mem_only(k - 2)));
        }
        if k == steps - 1 {
            recs.push(record("ppweb001", ts - 400 * STEP_MS, mem_only(0)));
        }
        publish(&r.js, &MetricsBatch::new("cw1", k as u64, ts + STEP_MS, recs)).await;
        snap = Some(r.snaps.until(WAIT, |s| s.tick_ms == ts).await);
    }
    let snap = snap.expect("snapshots");
    let web = &server(&r.client, &snap, "ppweb001").await;
    let want: Vec<Option<f32>> = (0..steps).map(|k| (k < steps - 2).then(|| mem_at(k))).collect();
    assert_eq!(recent(web, Target::Mem), want, "every late memory value filled its step");
    assert!(
        web.forecast_of(Target::Mem).is_some(),
        "the forecast reads memory: {:?}",
        web.forecast.iter().map(|f| f.target).collect::<Vec<_>>()
    );

    let rejections = drain(&mut r.rejected, Duration::from_millis(500)).await;
    assert_eq!(rejections.len(), 1, "nothing else is dropped: {rejections:?}");
    let j = &rejections[0];
    assert_eq!((j.seq, j.index, j.server.as_deref()), (Some(steps as u64 - 1), Some(2), Some("ppweb001")));
    assert_eq!((j.error.field.as_str(), j.error.reason), ("ts_ms", RejectReason::TooLate));
    let st = stats(&r.client).await;
    assert_eq!(st["late_filled"].as_u64(), Some(steps as u64 - 2), "{st}");

    // The filled steps are in KV `windows`: a predictor started again reads them.
    r.running.stop().await.expect("clean stop");
    let running = predictor::start(config(&r._nats.url())).await.expect("predictor starts again");
    let again = r.snaps.until(WAIT, |s| s.servers.iter().any(|s| s.server == "ppweb001")).await;
    assert_eq!(recent(&server(&r.client, &again, "ppweb001").await, Target::Mem), want, "the late values survive a restart");
    running.stop().await.expect("clean stop");
}

/// Rule 3. One batch: 48 records of `ppweb003` newest first, 48 of `ppweb004` oldest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_of_records_within_a_batch_does_not_matter() {
    let mut r = rig(|_| {}).await;
    let t = t0() - 48 * STEP_MS;
    let steps = |name: &str| (0..48).map(|k| record(name, t + k * STEP_MS, cpu_used(20.0 + (k % 10) as f32))).collect::<Vec<_>>();
    let mut recs: Vec<_> = steps("ppweb003").into_iter().rev().collect();
    recs.extend(steps("ppweb004"));
    publish(&r.js, &MetricsBatch::new("bulk1", 1, t + 48 * STEP_MS, recs)).await;
    let last = t + 47 * STEP_MS;
    let snap = r.snaps.until(WAIT, |s| s.tick_ms == last && s.servers.len() == 2).await;
    let want: Vec<Option<f32>> = (12..48).map(|k| Some(20.0 + (k % 10) as f32)).collect();
    for name in ["ppweb003", "ppweb004"] {
        let s = &server(&r.client, &snap, name).await;
        assert_eq!(s.last_ms, last, "{name}");
        assert!(s.warmup.is_none() && !s.forecast.is_empty(), "{name} has a forecast: {:?}", s.warmup);
        assert_eq!(recent(s, Target::Cpu), want, "{name}: every step, in order");
    }
    let st = stats(&r.client).await;
    assert_eq!((st["accepted"].as_u64(), st["rejected"].as_u64(), st["duplicates"].as_u64()), (Some(96), Some(0), Some(0)), "{st}");
    assert!(drain(&mut r.rejected, Duration::from_millis(300)).await.is_empty());
    r.running.stop().await.expect("clean stop");
}

/// Rule 4. A source whose clock runs ahead (so its step stays open) reports CPU used 10 % and
/// then 90 % within one step: the truth is 50 %. Batch A is re-sent (same bytes, no message
/// id) before B; B repeats `ppweb011`'s record from A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_batch_or_record_counts_once() {
    // The wall clock must not close the open step while the test runs.
    let mut r = rig(|c| c.grace = Duration::from_secs(3600)).await;
    let wall = predictor::run::wall_ms() + 3_600_000;
    let t = wall - wall.rem_euclid(STEP_MS);
    let a = MetricsBatch::new("dup1", 1, t + 60_000, vec![record("ppweb010", t, cpu_used(10.0)), record("ppweb011", t, cpu_used(10.0))]);
    publish(&r.js, &a).await;
    publish(&r.js, &a).await;
    let b = MetricsBatch::new(
        "dup1",
        2,
        t + STEP_MS,
        vec![
            record("ppweb010", t + 150_000, cpu_used(90.0)),
            record("ppweb011", t, cpu_used(10.0)),
            record("ppweb011", t + 150_000, cpu_used(90.0)),
        ],
    );
    publish(&r.js, &b).await;
    let snap = r.snaps.until(WAIT, |s| s.tick_ms == t).await;
    for name in ["ppweb010", "ppweb011"] {
        let used = server(&r.client, &snap, name).await.current.target(Target::Cpu);
        assert_eq!(used, Some(50.0), "{name}: each report once");
    }
    let st = stats(&r.client).await;
    assert_eq!((st["accepted"].as_u64(), st["duplicates"].as_u64(), st["rejected"].as_u64()), (Some(4), Some(3), Some(0)), "{st}");
    r.running.stop().await.expect("clean stop");
}

/// Rule 5. `ppdb001.prod` would publish on `alerts.opened.ppdb001.prod`, which the documented
/// `alerts.opened.*` never sees: it is rejected (`bad_server_name`), the same everywhere, and
/// the hot `ppdb001-prod` beside it gets its events on one token. A window an older predictor
/// stored under a dotted name is not rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_event_matches_the_documented_alert_pattern() {
    let nats = testkit::NatsServer::start().expect("nats-server");
    let client = nats.connect().await.expect("connect");
    let js = jetstream::new(client.clone());
    // An older predictor's window of a dotted server, beside a valid one.
    {
        use predictor::{chunk, store::WindowStore, window::ServerWindow};
        let capacity = 24usize.max(predictor::methods::HISTORY_STEPS);
        let store = WindowStore::open(&js, schemas::subjects::BUCKET_WINDOWS, capacity, Duration::from_secs(86_400)).await.unwrap();
        let kv = js.get_key_value(schemas::subjects::BUCKET_WINDOWS).await.unwrap();
        let t = t0() - 12 * STEP_MS;
        for name in ["ppold.prod", "ppold-prod"] {
            let mut w = ServerWindow::new(name.into(), Profile::WebApi, 0, capacity);
            for k in 0..8 {
                w.add(t + k * STEP_MS, &base_record());
            }
            w.close_until(t + 8 * STEP_MS);
            let c = predictor::window::chunk_of((t + 7 * STEP_MS) / STEP_MS);
            let mut value = Vec::new();
            chunk::encode_chunk(&w, "old", c, &mut value);
            kv.put(chunk::chunk_key(name, c, store.n_slots()), value.into()).await.unwrap();
        }
    }
    let running = predictor::start(config(&nats.url())).await.expect("predictor starts");
    let mut rejected = client.subscribe(schemas::subjects::METRICS_REJECTED).await.unwrap();
    let mut documented = client.subscribe("alerts.opened.*").await.unwrap();
    let mut every = client.subscribe("alerts.>").await.unwrap();
    let mut snaps = Snapshots::subscribe(&client).await;
    client.flush().await.unwrap();

    let t = t0() - 12 * STEP_MS;
    let hot =
        Metrics { cpu_user_pct: Some(92.0), cpu_sys_pct: Some(5.0), cpu_iowait_pct: Some(2.5), cpu_idle_pct: Some(0.5), ..base_record() };
    let mut snap = None;
    for k in 0..12 {
        let ts = t + k * STEP_MS;
        let recs = ["ppdb001.prod", "ppdb001-prod"]
            .into_iter()
            .map(|name| MetricRecord { server: name.into(), ts_ms: ts, profile: Some(Profile::WebApi), metrics: hot })
            .collect();
        publish(&js, &MetricsBatch::new("names1", k as u64, ts + STEP_MS, recs)).await;
        snap = Some(snaps.until(WAIT, |s| s.tick_ms == ts).await);
    }
    let snap = snap.expect("snapshots");
    let names: Vec<&str> = snap.servers.iter().map(|s| s.server.as_str()).collect();
    assert!(names.contains(&"ppdb001-prod") && names.contains(&"ppold-prod"), "{names:?}");
    assert!(names.iter().all(|n| !n.contains('.')), "no dotted server anywhere: {names:?}");

    // The documented pattern sees the hot server's alert.
    let msg = tokio::time::timeout(WAIT, documented.next()).await.expect("an alert on alerts.opened.*").unwrap();
    let ev: schemas::AlertEvent = schemas::decode(&msg.payload).unwrap();
    assert_eq!((msg.subject.as_str(), ev.alert.server.as_str()), ("alerts.opened.ppdb001-prod", "ppdb001-prod"));
    // Every event on `alerts.>` is three tokens, the last its server.
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(500), every.next()).await {
        let ev: schemas::AlertEvent = schemas::decode(&msg.payload).unwrap();
        let tokens: Vec<&str> = msg.subject.split('.').collect();
        assert_eq!((tokens.len(), tokens[2]), (3, ev.alert.server.as_str()), "{}", msg.subject);
    }
    // KV keys name the same servers, one token each.
    let forecasts = js.get_key_value(schemas::subjects::BUCKET_FORECASTS).await.unwrap();
    let keys: Vec<String> = forecasts.keys().await.unwrap().try_collect().await.unwrap();
    assert!(keys.contains(&"ppdb001-prod".to_string()) && keys.iter().all(|k| !k.contains('.')), "{keys:?}");
    let windows = js.get_key_value(schemas::subjects::BUCKET_WINDOWS).await.unwrap();
    let keys: Vec<String> = windows.keys().await.unwrap().try_collect().await.unwrap();
    assert!(!keys.iter().any(|k| k.starts_with("ppdb001.prod")), "{keys:?}");

    let rejections = drain(&mut rejected, Duration::from_millis(500)).await;
    let mut by: BTreeMap<(String, RejectReason), usize> = BTreeMap::new();
    for j in &rejections {
        assert_eq!(j.server, None, "an invalid name is not echoed as a server");
        assert!(j.error.value.contains("ppdb001.prod"), "{j:?}");
        *by.entry((j.error.field.clone(), j.error.reason)).or_default() += 1;
    }
    assert_eq!(by, BTreeMap::from([(("server".to_string(), RejectReason::BadServerName), 12)]));
    running.stop().await.expect("clean stop");
}
