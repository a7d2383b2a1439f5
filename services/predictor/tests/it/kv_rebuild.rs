//! The `windows` KV bucket: windows written as one-hour chunks come back identical when a
//! predictor rebuilds from it, a step rewrites only the chunk it changed, and a predictor
//! started on a populated bucket forecasts every server at once. Real nats-server.

use crate::common;

use std::time::Duration;

use async_nats::jetstream;
use common::*;
use futures::TryStreamExt;
use predictor::ingest::{ingest, Limits};
use predictor::registry::Registry;
use predictor::store::WindowStore;
use schemas::{MetricRecord, Metrics, MetricsBatch, Target, STEP_MS};

const LIMITS: Limits = Limits { max_bytes: 1 << 20, max_servers: 10_000 };

fn apply(reg: &mut Registry, batch: &MetricsBatch, wall: i64) {
    let r = ingest(reg, "metrics.batch.test", &schemas::encode(batch).unwrap(), LIMITS, wall);
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
}

fn assert_same(a: &Registry, b: &Registry) {
    assert_eq!(a.len(), b.len());
    for w in a.servers() {
        let id = b.id_of(&w.name).unwrap_or_else(|| panic!("{} not rebuilt", w.name));
        let r = b.server(id);
        assert_eq!((r.profile, r.last_closed(), r.observed_steps()), (w.profile, w.last_closed(), w.observed_steps()), "{}", w.name);
        assert_eq!(r.open(), w.open(), "{}: open step", w.name);
        let last = w.last_closed().unwrap_or_default();
        for s in last - 30..=last {
            assert_eq!(r.step(s), w.step(s), "{} step {s}", w.name);
        }
        assert_eq!(b.source(r.source).name, a.source(w.source).name);
        assert_eq!(b.source(r.source).clock_ms, a.source(w.source).clock_ms);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_round_trip_and_only_changed_chunks_are_written() {
    let nats = testkit::NatsServer::start().expect("nats-server");
    let js = jetstream::new(nats.connect().await.unwrap());
    let mut store = WindowStore::open(&js, "windows", 24, Duration::from_secs(86_400)).await.unwrap();
    let (wall, t0) = (predictor::run::wall_ms(), t0());
    let names = server_names(30);
    let mut reg = Registry::new(24);
    for s in 0..30 {
        // Every 7th step some servers report nothing: gaps in the window.
        let kept: Vec<String> = names.iter().enumerate().filter(|(i, _)| (s + *i as i64) % 7 != 0).map(|(_, n)| n.clone()).collect();
        apply(&mut reg, &step_batch(&kept, t0 + s * STEP_MS, s as u64), wall);
    }
    // A real-time source reporting every minute into a step that is still open.
    let now_step = wall - wall.rem_euclid(STEP_MS);
    for k in 0..3 {
        let ts = now_step + k * 60_000;
        let r = MetricRecord {
            server: "rtweb01".into(),
            ts_ms: ts,
            profile: None,
            metrics: Metrics { mem_used_pct: Some(40.0 + k as f32), ..Default::default() },
        };
        let batch = MetricsBatch::new("rt", k as u64, ts, vec![r]);
        let r = ingest(&mut reg, "metrics.batch.rt", &schemas::encode(&batch).unwrap(), LIMITS, wall);
        assert_eq!((r.accepted, r.closed), (1, 0), "the step is still open");
    }
    // A simulated source whose clock runs an hour ahead of the wall clock: its clock is stored.
    let ahead = wall + 3_600_000;
    let sim = MetricRecord { server: "simsrv01".into(), ts_ms: ahead - STEP_MS, profile: None, metrics: metrics(0, 0) };
    let r = ingest(&mut reg, "metrics.batch.sim", &schemas::encode(&MetricsBatch::new("sim", 1, ahead, vec![sim])).unwrap(), LIMITS, wall);
    assert_eq!((r.accepted, r.closed), (1, 1));
    let writes = store.prepare(&mut reg);
    let stats = store.write(&writes).await.unwrap();
    assert!(writes.iter().all(|(_, v)| v.len() < 1024), "chunks stay under 1 KB");
    assert!(stats.keys <= 32 * 3 + 2, "{} writes: at most n_slots (3) per server and the clocks", stats.keys);

    let kv = js.get_key_value("windows").await.unwrap();
    let keys: Vec<String> = kv.keys().await.unwrap().try_collect().await.unwrap();
    assert!(keys.contains(&"=src.sim".to_string()), "{keys:?}");
    assert!(!keys.contains(&"=src.test".to_string()), "a clock still at its wall-clock start is not stored");
    assert!(keys.iter().filter(|k| k.starts_with(&format!("{}.", names[3]))).count() <= 3);

    let mut rebuilt = Registry::new(24);
    assert_eq!(store.load(&mut rebuilt, wall).await.unwrap(), 32);
    assert_same(&reg, &rebuilt);
    let rt = rebuilt.server(rebuilt.id_of("rtweb01").unwrap());
    assert_eq!((rt.open().unwrap().count[5], rt.open().unwrap().sum[5]), (3, 123.0), "open step sums survive");

    // One more step: one chunk per server (plus the clock), a few hundred bytes each.
    apply(&mut reg, &step_batch(&names, t0 + 31 * STEP_MS, 31), wall);
    let writes = store.prepare(&mut reg);
    let chunk_writes = writes.iter().filter(|(s, _)| !s.contains("=src.")).count();
    assert!(chunk_writes <= 30 + 3, "{chunk_writes} chunk writes for one step of 30 servers");
    let bytes: usize = writes.iter().map(|(_, v)| v.len()).sum();
    assert!(bytes < 30 * 1024, "{bytes} bytes written for one step");
    store.write(&writes).await.unwrap();
    let mut again = Registry::new(24);
    store.load(&mut again, wall).await.unwrap();
    assert_same(&reg, &again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predictor_started_on_a_populated_bucket_forecasts_at_once() {
    let nats = testkit::NatsServer::start().expect("nats-server");
    let client = nats.connect().await.unwrap();
    let js = jetstream::new(client.clone());
    let names = server_names(10);
    let t0 = t0();
    let mut snaps = Snapshots::subscribe(&client).await;
    let first = predictor::start(config(&nats.url())).await.unwrap();
    for s in 0..8 {
        publish_batch(&js, &step_batch(&names, t0 + s * STEP_MS, s as u64)).await;
    }
    let last = t0 + 7 * STEP_MS;
    let before = snaps.until(Duration::from_secs(20), |s| s.tick_ms == last).await;
    let stored = fleetbus::forecasts::of_snapshot(&client, &before).await.unwrap();
    first.stop().await.unwrap();

    // No new batch: the first snapshot comes from the rebuilt windows alone.
    let second = predictor::start(config(&nats.url())).await.unwrap();
    let after = snaps.until(Duration::from_secs(20), |s| s.seq > before.seq).await;
    assert_eq!(after.tick_ms, last);
    assert_eq!((after.fleet.ready, after.fleet.warming), (10, 0));
    let again = fleetbus::forecasts::of_snapshot(&client, &after).await.unwrap();
    assert_eq!(after.servers, before.servers, "the same summaries");
    for (b, a) in stored.iter().zip(&again) {
        assert_eq!(b.server, a.server);
        assert_eq!(a.recent, b.recent, "{}: same history", a.server);
        assert_eq!(a.forecast_of(Target::Cpu), b.forecast_of(Target::Cpu), "{}: same inputs, same forecast", a.server);
    }
    second.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_keep_their_identity_across_a_restart() {
    let nats = testkit::NatsServer::start().expect("nats-server");
    let client = nats.connect().await.unwrap();
    let js = jetstream::new(client.clone());
    let t0 = t0();
    let hot = |s: i64| {
        let mut m = metrics(0, s);
        m.mem_used_pct = Some(97.0); // critical for a web server (from 95 %)
        MetricsBatch::new(
            SOURCE,
            s as u64,
            t0 + (s + 1) * STEP_MS,
            vec![MetricRecord { server: "ppweb0001".into(), ts_ms: t0 + s * STEP_MS, profile: None, metrics: m }],
        )
    };
    let mut snaps = Snapshots::subscribe(&client).await;
    let first = predictor::start(config(&nats.url())).await.unwrap();
    for s in 0..8 {
        publish_batch(&js, &hot(s)).await;
    }
    let before = snaps.until(Duration::from_secs(20), |s| s.tick_ms == t0 + 7 * STEP_MS).await;
    let alert = before.servers[0].alerts.iter().find(|a| a.target == Target::Mem).cloned().expect("a memory alert");
    let id = alert.id(&before.servers[0].server);
    assert_eq!(alert.severity, schemas::Level::Critical);
    first.stop().await.unwrap();

    publish_batch(&js, &hot(8)).await;
    let second = predictor::start(config(&nats.url())).await.unwrap();
    let after = snaps.until(Duration::from_secs(20), |s| s.tick_ms == t0 + 8 * STEP_MS).await;
    let again = after.servers[0].alerts.iter().find(|a| a.target == Target::Mem).expect("still alerted");
    assert_eq!((again.id(&after.servers[0].server), again.opened_ms), (id, alert.opened_ms), "the same alert, not a new one");
    second.stop().await.unwrap();

    let history = js.get_stream("HISTORY").await.unwrap();
    let opened = history.info_with_subjects("alerts.opened.>").await.unwrap();
    let opened: u64 = futures::TryStreamExt::try_fold(opened, 0u64, |n, (_, c)| async move { Ok(n + c as u64) }).await.unwrap();
    assert_eq!(opened, 1, "opened once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_longer_than_the_window_writes_each_slot_once() {
    let nats = testkit::NatsServer::start().expect("nats-server");
    let js = jetstream::new(nats.connect().await.unwrap());
    let mut store = WindowStore::open(&js, "windows", 24, Duration::from_secs(86_400)).await.unwrap();
    let wall = predictor::run::wall_ms();
    let hour = 12 * STEP_MS;
    // Start mid-hour, and cover five one-hour chunks in one flush (the window holds three).
    let t0 = t0() - t0().rem_euclid(hour) - 5 * hour + 7 * STEP_MS;
    let names = server_names(5);
    let mut reg = Registry::new(24);
    for s in 0..60 {
        apply(&mut reg, &step_batch(&names, t0 + s * STEP_MS, s as u64), wall);
    }
    let writes = store.prepare(&mut reg);
    let mut subjects: Vec<&str> = writes.iter().map(|(s, _)| s.as_str()).collect();
    subjects.sort();
    let before = subjects.len();
    subjects.dedup();
    assert_eq!(subjects.len(), before, "no key written twice in one flush");
    assert!(before <= 5 * 3, "{before} writes for 5 servers x 3 slots");
    store.write(&writes).await.unwrap();
    let mut rebuilt = Registry::new(24);
    store.load(&mut rebuilt, wall).await.unwrap();
    assert_same(&reg, &rebuilt);
}
