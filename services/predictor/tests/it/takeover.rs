//! A partition's holder dies after publishing a tick's alert events but before that tick's
//! state is stored (issue 14's race, made deterministic): the `state` bucket refuses writes
//! while the holder announces alerts, then the holder is dropped as a crash would. Its
//! successor restores a book from before those announcements and must catch it up from the
//! events in `HISTORY`: no alert is opened twice, none is resolved (or updated) while not open,
//! yet an alert that is genuinely new still opens, and one the dead holder opened still
//! resolves, once.
//!
//! One real nats-server; two partitions, held by one predictor (`a`) and then by another
//! (`b`), in-process with the tiny model. Disk at 99 % makes a server's disk alert.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream;
use common::*;
use futures::StreamExt;
use predictor::domain::Domain;
use schemas::partition;
use schemas::{AlertEvent, AlertState, MetricRecord, MetricsBatch, Snapshot, Target, STEP_MS};

const PARTITIONS: u16 = 2;
/// Opened by `a` while the state is not stored; resolved by `b`.
const X: &str = "ppweb0002";
/// Opened by `b` (after the takeover).
const Y: &str = "ppgen0006";
/// Opened by `a` (state stored), resolved by `a` while the state is not stored.
const Z: &str = "ppdb0001";

fn cfg(url: &str, instance: &str) -> predictor::Config {
    let mut c = config(url);
    c.partitions = PARTITIONS;
    c.instance = Some(instance.to_string());
    c.heartbeat = Duration::from_millis(300);
    c.member_ttl = Duration::from_secs(3);
    c
}

/// Step `s`: every server at the base record, those in `high` with disk at 99 %; one batch
/// per partition, each its partition's whole tick.
async fn publish_step(js: &jetstream::Context, names: &[String], t0: i64, s: i64, high: &[&str]) {
    let ts_ms = t0 + s * STEP_MS;
    let mut by: HashMap<u16, Vec<MetricRecord>> = HashMap::new();
    for n in names {
        let mut metrics = base_record();
        if high.contains(&n.as_str()) {
            metrics.disk_usage_pct = Some(99.0);
        }
        by.entry(partition::of(n, PARTITIONS)).or_default().push(MetricRecord { server: n.clone(), ts_ms, profile: None, metrics });
    }
    for (p, records) in by {
        let batch = MetricsBatch::new(SOURCE, s as u64, ts_ms + STEP_MS, records);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(schemas::subjects::PART_HEADER, "1/1");
        let subject = partition::metrics_batch_subject(SOURCE, p, PARTITIONS);
        let payload = schemas::encode(&batch).expect("encode");
        js.publish_with_headers(subject, headers, payload.into()).await.expect("publish").await.expect("stored in METRICS");
    }
}

/// What the predictors publish: the ticks of each partition's snapshots, and every alert event.
struct Watch {
    snaps: async_nats::Subscriber,
    alerts: async_nats::Subscriber,
    ticks: HashMap<u16, HashSet<i64>>,
    events: Vec<AlertEvent>,
}

impl Watch {
    async fn new(client: &async_nats::Client) -> Watch {
        let snaps = client.subscribe("predictions.current.*").await.expect("subscribe");
        let alerts = client.subscribe("alerts.>").await.expect("subscribe");
        Watch { snaps, alerts, ticks: HashMap::new(), events: Vec::new() }
    }

    /// Waits until both partitions have published a snapshot of the step starting `tick_ms`,
    /// collecting alert events meanwhile.
    async fn tick(&mut self, tick_ms: i64, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        // Exactly that tick: a loop that opens with no step due ticks at the wall clock.
        while !(0..PARTITIONS).all(|p| self.ticks.get(&p).is_some_and(|t| t.contains(&tick_ms))) {
            tokio::select! {
                m = tokio::time::timeout_at(deadline, self.snaps.next()) => {
                    let m = m.unwrap_or_else(|_| panic!("no snapshot of {tick_ms} within {within:?}: {:?}", self.ticks)).expect("subscribed");
                    let part: Snapshot = schemas::decode(&m.payload).expect("a snapshot part decodes");
                    let p = part.partition.expect("a partition snapshot").index;
                    self.ticks.entry(p).or_default().insert(part.tick_ms);
                }
                Some(m) = self.alerts.next() => self.events.push(schemas::decode(&m.payload).expect("an alert event")),
            }
        }
        self.drain(Duration::from_millis(100)).await;
    }

    /// Collects alert events until none came for `quiet`.
    async fn drain(&mut self, quiet: Duration) {
        while let Ok(Some(m)) = tokio::time::timeout(quiet, self.alerts.next()).await {
            self.events.push(schemas::decode(&m.payload).expect("an alert event"));
        }
    }

    /// The tick times of `server`'s disk alert events in `state`.
    fn of(&self, server: &str, state: AlertState) -> Vec<i64> {
        let id = format!("{server}.disk");
        self.events.iter().filter(|e| e.alert.id == id && e.alert.state == state).map(|e| e.tick_ms).collect()
    }
}

/// The first `updated` or `resolved` event of an alert that was not open then (never opened,
/// or resolved since): a second resolve is the other half of announcing something twice.
fn out_of_turn(events: &[AlertEvent]) -> Option<&AlertEvent> {
    let mut open = HashSet::new();
    events.iter().find(|e| match e.alert.state {
        AlertState::Opened => {
            open.insert(e.alert.id.as_str());
            false
        }
        AlertState::Updated => !open.contains(e.alert.id.as_str()),
        AlertState::Resolved => !open.remove(e.alert.id.as_str()),
    })
}

/// Points the `state` bucket's stream at other subjects (`true`), so the predictor's state
/// writes find no stream and fail, or back at its own (`false`).
async fn pause_state(js: &jetstream::Context, pause: bool) {
    let mut stream = js.get_stream("KV_state").await.unwrap();
    let mut config = stream.info().await.unwrap().config.clone();
    config.subjects = vec![format!("$KV.{}.>", if pause { "paused" } else { "state" })];
    js.update_stream(config).await.unwrap();
}

/// The tick each partition's stored state was saved after.
async fn saved_ticks(js: &jetstream::Context) -> Vec<Option<i64>> {
    let kv = js.get_key_value("state").await.unwrap();
    let mut ticks = Vec::new();
    for p in 0..PARTITIONS {
        let (bytes, _) = predictor::resume::read_saved(&kv, &format!("domain.p{p}")).await.unwrap().expect("a saved state");
        ticks.push(Domain::saved_tick(&bytes).expect("a state that decodes"));
    }
    ticks
}

/// The fleet, the next step to publish, and what came out.
struct Rig {
    js: jetstream::Context,
    names: Vec<String>,
    t0: i64,
    next: i64,
    w: Watch,
}

impl Rig {
    /// Publishes the next step (`high` at 99 % disk) and waits for both partitions' ticks.
    async fn step(&mut self, high: &[&str], within: Duration) {
        publish_step(&self.js, &self.names, self.t0, self.next, high).await;
        self.w.tick(self.t0 + self.next * STEP_MS, within).await;
        self.next += 1;
    }

    /// Publishes steps until `done` holds, at most `max` of them.
    async fn until(&mut self, high: &[&str], max: usize, within: Duration, done: impl Fn(&Watch) -> bool) {
        for _ in 0..max {
            self.step(high, within).await;
            if done(&self.w) {
                return;
            }
        }
        let seen: Vec<_> = self.w.events.iter().map(|e| (&e.alert.id, e.alert.state, e.tick_ms)).collect();
        let kv = fleetbus::forecasts::open(&self.js).await.unwrap();
        for n in [X, Y, Z] {
            let disk = fleetbus::forecasts::get(&kv, n).await.ok().flatten().and_then(|f| f.forecast_of(Target::Disk).cloned());
            eprintln!("{n}: disk forecast {:?}", disk.map(|d| (d.method, d.p50.first().copied(), d.p90.first().copied())));
        }
        panic!("not within {max} steps (to step {}); events: {seen:?}", self.next);
    }

    /// The start of the last step published.
    fn last(&self) -> i64 {
        self.t0 + (self.next - 1) * STEP_MS
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_of_a_holder_killed_between_events_and_state_announces_nothing_twice() {
    let nats = testkit::NatsServer::start().expect("nats-server");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let names = server_names(8);
    for p in 0..PARTITIONS {
        assert!(names.iter().any(|n| partition::of(n, PARTITIONS) == p), "partition {p} has servers");
    }
    let mut r = Rig { js: js.clone(), names, t0: t0(), next: 0, w: Watch::new(&client).await };
    let short = Duration::from_secs(20);

    let a = predictor::start(cfg(&nats.url(), "a")).await.expect("predictor a");
    // Past the warm-up, then Z's disk alert opens and its state is stored.
    for _ in 0..8 {
        r.step(&[], short).await;
    }
    r.until(&[Z], 15, short, |w| !w.of(Z, AlertState::Opened).is_empty()).await;
    let stored = r.last();
    for _ in 0..100 {
        if saved_ticks(&js).await.iter().all(|t| *t == Some(stored)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(saved_ticks(&js).await, vec![Some(stored); PARTITIONS as usize], "both partitions' states stored at the last tick");

    // The race, held open: the state stops being stored while `a` opens X and resolves Z.
    pause_state(&js, true).await;
    r.until(&[X], 15, short, |w| !w.of(X, AlertState::Opened).is_empty() && !w.of(Z, AlertState::Resolved).is_empty()).await;
    // A few more ticks without a stored state; Z's window calms further (the successor ticks
    // the last step again, with every server on the default method).
    for _ in 0..3 {
        r.step(&[X], short).await;
    }
    let history = js.get_stream("HISTORY").await.unwrap();
    for subject in [schemas::subjects::alert_event(AlertState::Opened, X), schemas::subjects::alert_event(AlertState::Resolved, Z)] {
        let mut stored = false;
        for _ in 0..100 {
            stored = history.get_last_raw_message_by_subject(&subject).await.is_ok();
            if stored {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(stored, "{subject} is in HISTORY");
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // the state write fails
    a.abort();
    pause_state(&js, false).await;
    let x_opened = r.w.of(X, AlertState::Opened)[0];
    let states = saved_ticks(&js).await;
    assert!(states.iter().all(|t| t.is_some_and(|t| t < x_opened)), "the stored states are from before X opened: {states:?} < {x_opened}");

    // `b` takes both partitions over (once `a`'s heartbeat and pin lapse), X stays high and Y
    // rises: Y opens, X does not open again, Z does not resolve again.
    let b = predictor::start(cfg(&nats.url(), "b")).await.expect("predictor b");
    let after = r.t0 + r.next * STEP_MS;
    r.until(&[X, Y], 10, Duration::from_secs(30), |w| !w.of(Y, AlertState::Opened).is_empty()).await;
    // X calms: it resolves, once.
    r.until(&[Y], 12, short, |w| !w.of(X, AlertState::Resolved).is_empty()).await;
    r.w.drain(Duration::from_millis(300)).await;

    let w = &r.w;
    let summary: Vec<_> = w.events.iter().map(|e| (e.alert.id.as_str(), e.alert.state, (e.tick_ms - r.t0) / STEP_MS)).collect();
    if let Some(e) = schemas::alert::reopened(&w.events) {
        panic!("alert {} opened again at {} while open: {summary:?}", e.alert.id, e.tick_ms);
    }
    if let Some(e) = out_of_turn(&w.events) {
        panic!("alert {} {:?} at {} while not open: {summary:?}", e.alert.id, e.alert.state, e.tick_ms);
    }
    assert_eq!(w.of(X, AlertState::Opened).len(), 1, "{summary:?}");
    let (x_resolved, y_opened) = (w.of(X, AlertState::Resolved), w.of(Y, AlertState::Opened));
    assert!(x_resolved.len() == 1 && x_resolved[0] >= after, "X resolved once, by b: {summary:?}");
    assert!(y_opened.len() == 1 && y_opened[0] >= after, "Y opened once, by b: {summary:?}");
    // Z's resolve by `a` is not repeated (out of turn above). `b` may open Z anew: it forecasts
    // every server with the default method again, whose bands still hold Z's spike.
    let (z_opened, z_resolved) = (w.of(Z, AlertState::Opened), w.of(Z, AlertState::Resolved));
    assert!(z_opened[0] < after && z_resolved[0] < after, "Z opened and resolved by a: {summary:?}");
    b.stop().await.expect("b stops cleanly");
}
