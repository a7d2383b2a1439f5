//! Partitioned predictors: two predictors (in-process, on one real nats-server) share a fleet
//! split into 4 partitions (`--partitions 4`). Each partition is held by exactly one of them
//! (pinned partition consumers), both hold some, and the partitions' snapshots together cover
//! every server. Then one dies as a crash would (its task dropped, nothing stored or acked on
//! the way out): within 30 s the other holds its partitions with their windows intact (no
//! server warms up again, every step still there), the partitions' snapshot numbers go on,
//! and no alert is opened twice.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::*;
use futures::StreamExt;
use schemas::partition;
use schemas::{AlertEvent, MetricsBatch, Snapshot, SnapshotAssembler, STEP_MS};

const PARTITIONS: u16 = 4;
const SERVERS: usize = 24;

fn cfg(url: &str, instance: &str) -> predictor::Config {
    let mut c = config(url);
    c.partitions = PARTITIONS;
    c.instance = Some(instance.to_string());
    c.heartbeat = Duration::from_millis(300);
    c.member_ttl = Duration::from_secs(3);
    c
}

/// What every test here starts with: a nats-server, a client and JetStream on it, the
/// fleet's server names and its first step.
struct Setup {
    nats: testkit::NatsServer,
    client: async_nats::Client,
    js: jetstream::Context,
    names: Vec<String>,
    t0: i64,
}

async fn setup() -> Setup {
    let nats = testkit::NatsServer::start().expect("nats-server");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    Setup { nats, client, js, names: server_names(SERVERS), t0: t0() }
}

/// Step `s` of the fleet, as a partitioned source sends it: one batch per partition, on
/// `metrics.batch.<source>.<partition>`, each the last part of its partition's tick.
async fn publish_step(js: &jetstream::Context, names: &[String], t0: i64, s: i64) {
    let whole = step_batch(names, t0 + s * STEP_MS, s as u64);
    let mut by: BTreeMap<u16, Vec<schemas::MetricRecord>> = BTreeMap::new();
    for r in whole.records {
        by.entry(partition::of(&r.server, PARTITIONS)).or_default().push(r);
    }
    for (p, records) in by {
        let batch = MetricsBatch::new(SOURCE, s as u64, whole.clock_ms, records);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(schemas::subjects::PART_HEADER, "1/1");
        let subject = partition::metrics_batch_subject(SOURCE, p, PARTITIONS);
        let payload = schemas::encode(&batch).expect("encode");
        js.publish_with_headers(subject, headers, payload.into()).await.expect("publish").await.expect("stored in METRICS");
    }
}

/// The newest whole snapshot of each partition, from `predictions.current.*`.
struct Partitions {
    sub: async_nats::Subscriber,
    asm: SnapshotAssembler,
    newest: HashMap<u16, Snapshot>,
    /// Every snapshot number seen per partition, in arrival order.
    seqs: HashMap<u16, Vec<u64>>,
}

impl Partitions {
    async fn subscribe(client: &async_nats::Client) -> Partitions {
        let sub = client.subscribe("predictions.current.*").await.expect("subscribe");
        Partitions { sub, asm: SnapshotAssembler::default(), newest: HashMap::new(), seqs: HashMap::new() }
    }

    /// Reads snapshots until `done(newest per partition)` holds; panics after `within`.
    async fn until(&mut self, within: Duration, what: &str, done: impl Fn(&HashMap<u16, Snapshot>) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        while !done(&self.newest) {
            let msg = match tokio::time::timeout_at(deadline, self.sub.next()).await {
                Ok(Some(m)) => m,
                _ => panic!("{what}: not within {within:?}; newest (partition, seq, tick, servers): {:?}", self.summary()),
            };
            let part: Snapshot = schemas::decode(&msg.payload).expect("a snapshot part decodes");
            if let Some(whole) = self.asm.push(part) {
                let p = whole.partition.expect("a partition snapshot says which").index;
                assert_eq!(msg.subject.as_str(), partition::snapshot_subject(p, PARTITIONS), "on its partition's subject");
                self.seqs.entry(p).or_default().push(whole.seq);
                self.newest.insert(p, whole);
            }
        }
    }

    fn summary(&self) -> Vec<(u16, u64, i64, usize)> {
        let mut v: Vec<_> = self.newest.iter().map(|(p, s)| (*p, s.seq, s.tick_ms, s.servers.len())).collect();
        v.sort_unstable();
        v
    }
}

/// Every partition's newest snapshot is at step `s` (tick_ms) and holds exactly its servers.
fn all_at(newest: &HashMap<u16, Snapshot>, names: &[String], tick_ms: i64) -> bool {
    (0..PARTITIONS).all(|p| {
        newest.get(&p).is_some_and(|snap| {
            let mine = names.iter().filter(|n| partition::of(n, PARTITIONS) == p).count();
            snap.tick_ms >= tick_ms && snap.servers.len() == mine
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_whose_predictor_dies_resumes_on_the_other_with_its_state() {
    let Setup { nats, client, js, names, t0 } = setup().await;
    let mut snaps = Partitions::subscribe(&client).await;
    let mut alerts = client.subscribe("alerts.>").await.unwrap();

    let a = predictor::start(cfg(&nats.url(), "a")).await.expect("predictor a");
    let b = predictor::start(cfg(&nats.url(), "b")).await.expect("predictor b");
    // Both see each other before the first batch, so neither takes every partition first.
    tokio::time::sleep(Duration::from_secs(1)).await;

    const BEFORE: i64 = 14;
    for s in 0..BEFORE {
        publish_step(&js, &names, t0, s).await;
    }
    let last_before = t0 + (BEFORE - 1) * STEP_MS;
    snaps.until(Duration::from_secs(60), "every partition at the last step", |n| all_at(n, &names, last_before)).await;
    let merged = partition::merge(snaps.newest.values().cloned().collect()).unwrap();
    assert_eq!(merged.servers.len(), SERVERS, "the partitions together cover the fleet");
    assert_eq!(merged.fleet.warming, 0, "{BEFORE} steps are past the tiny model's warm-up");
    let (ticks_a, ticks_b) = (a.stats.report().ticks, b.stats.report().ticks);
    assert!(ticks_a > 0 && ticks_b > 0, "both predictors hold partitions: ticks {ticks_a} / {ticks_b}");

    // Each partition consumer is pinned to one predictor: every batch delivered once.
    let metrics = js.get_stream("METRICS").await.unwrap();
    for p in 0..PARTITIONS {
        let info = metrics.consumer_info(format!("predictor-p{p}")).await.unwrap();
        assert_eq!(info.num_redelivered, 0, "partition {p}: no batch went to two predictors");
    }

    // The crash: `a` is dropped where it stands; its heartbeat stops, its pins lapse.
    let killed = Instant::now();
    a.abort();
    const AFTER: i64 = 6;
    for s in BEFORE..BEFORE + AFTER {
        publish_step(&js, &names, t0, s).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let last = t0 + (BEFORE + AFTER - 1) * STEP_MS;
    snaps.until(Duration::from_secs(30), "every partition resumed after the crash", |n| all_at(n, &names, last)).await;
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(30), "resumed in {took:?}");

    let merged = partition::merge(snaps.newest.values().cloned().collect()).unwrap();
    assert_eq!(merged.servers.len(), SERVERS);
    assert_eq!(merged.fleet.warming, 0, "no server warms up again: windows came back from KV");
    for s in &fleetbus::forecasts::of_snapshot(&client, &merged).await.expect("every server in KV forecasts") {
        assert_eq!(s.last_ms, last, "{}: at the last step", s.server);
        let cpu = s.recent.iter().find(|h| h.target == schemas::Target::Cpu).expect("cpu history");
        let have = cpu.values.iter().rev().take((BEFORE + AFTER) as usize).filter(|v| v.is_some()).count();
        assert_eq!(have, (BEFORE + AFTER) as usize, "{}: every step sent, before and after the crash", s.server);
    }
    for (p, seqs) in &snaps.seqs {
        assert!(seqs.windows(2).all(|w| w[1] > w[0]), "partition {p}: snapshot numbers go on across the takeover: {seqs:?}");
    }

    // No alert opened twice without a resolve in between.
    let mut events: Vec<AlertEvent> = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(300), alerts.next()).await {
        events.push(schemas::decode(&msg.payload).expect("an alert event"));
    }
    if let Some(e) = schemas::alert::reopened(&events) {
        panic!("alert {} opened again at {} while open ({} events)", e.alert.id, e.tick_ms, events.len());
    }
    b.stop().await.expect("b stops cleanly");
}

/// A partition's snapshot numbers follow one published after its loop opened: a stopping
/// holder's last tick can land there after the new holder read the number (seen once, as
/// `25, 26, 26, 27`, when membership flapped under load). Made deterministic: a snapshot
/// numbered 100 appears on partition 0's subject once the loop is open and before its first
/// tick, and the loop's first snapshot is 101.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_published_after_the_loop_opened_is_continued_not_repeated() {
    let Setup { nats, client, js, names, t0 } = setup().await;
    let subject = partition::snapshot_subject(0, PARTITIONS);
    let mut sub = client.subscribe(subject.clone()).await.unwrap();

    let a = predictor::start(cfg(&nats.url(), "a")).await.expect("predictor a");
    // Its partitions' loops open (it is the only member, so it holds all of them).
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.stats.report().partitions.len() < PARTITIONS as usize {
        assert!(Instant::now() < deadline, "a holds every partition: {:?}", a.stats.report().partitions.keys());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    #[derive(serde::Serialize)]
    struct Seq {
        seq: u64,
    }
    let earlier = schemas::encode(&Seq { seq: 100 }).unwrap();
    js.publish(subject.clone(), earlier.into()).await.unwrap().await.expect("stored in PREDICTIONS");
    for s in 0..14 {
        publish_step(&js, &names, t0, s).await;
    }
    let first = loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), sub.next()).await.expect("a snapshot").expect("subscribed");
        if let Ok(part) = schemas::decode::<Snapshot>(&msg.payload) {
            break part;
        }
    };
    assert_eq!(first.seq, 101, "the loop's first snapshot follows the one published after it opened");
    a.stop().await.expect("a stops cleanly");
}
