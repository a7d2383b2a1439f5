//! Partitioned publishing against a real nats-server: `fleetbus::publish::Publisher` with
//! `with_partitions` puts each server's record on its partition's subject exactly once, parts
//! counted per partition, and one partition is exactly the unpartitioned shape; the generator's
//! `partitions` option reaches its publisher.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use async_nats::jetstream;
use common::*;
use fleetbus::publish::Publisher;
use schemas::partition;
use schemas::subjects::{is_last_part, PART_HEADER, STREAM_METRICS};
use schemas::{Metric, MetricRecord, Metrics, MetricsBatch, STEP_MS};
use testkit::NatsServer;

const TS_MS: i64 = 1_767_571_200_000;

/// One record per server, every metric set.
fn tick(servers: usize) -> Vec<MetricRecord> {
    (0..servers)
        .map(|i| {
            let mut metrics = Metrics::default();
            for (k, m) in Metric::ALL.iter().enumerate() {
                metrics.set(*m, Some(((i * 37 + k * 11) % 97) as f32 + 0.5));
            }
            MetricRecord { server: format!("ppweb{i:04}"), ts_ms: TS_MS, profile: None, metrics }
        })
        .collect()
}

/// One stored message with the headers a consumer reads.
#[derive(Debug)]
struct Raw {
    subject: String,
    part: String,
    id: String,
    batch: MetricsBatch,
}

async fn read_raw(client: &async_nats::Client) -> Vec<Raw> {
    let js = jetstream::new(client.clone());
    let mut stream = js.get_stream(STREAM_METRICS).await.expect("METRICS stream");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        let m = stream.get_raw_message(seq).await.expect("stored message");
        let header = |name: &str| m.headers.get(name).map(|v| v.to_string()).unwrap_or_default();
        out.push(Raw {
            subject: m.subject.to_string(),
            part: header(PART_HEADER),
            id: header("Nats-Msg-Id"),
            batch: schemas::decode(&m.payload).expect("a MetricsBatch"),
        });
    }
    out
}

/// Publishes one tick of `servers` servers in `partitions` partitions (source `part`, seq 5)
/// to a server with `max_payload` bytes at most; returns what the stream stored and the report.
async fn publish_one(servers: usize, partitions: u16, max_payload: usize) -> (Vec<Raw>, fleetbus::publish::TickReport) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("small.conf");
    std::fs::write(&conf, format!("max_payload: {max_payload}\n")).unwrap();
    let nats = NatsServer::start_with(&["-c", conf.to_str().unwrap()]).unwrap();
    let client = nats.connect().await.unwrap();
    assert_eq!(client.server_info().max_payload, max_payload);
    create_stream(&client).await;
    let mut publisher = Publisher::new(client.clone(), "part", "run1").with_partitions(partitions);
    assert_eq!(publisher.partitions(), partitions);
    let report = publisher.publish(5, TS_MS + STEP_MS, tick(servers), std::future::pending()).await.expect("tick published");
    (read_raw(&client).await, report)
}

#[tokio::test]
async fn each_record_reaches_its_partition_once_with_parts_counted_per_partition() {
    // 2 KiB messages: about four records a part, so every partition takes several parts.
    let (stored, report) = publish_one(50, 4, 2048).await;
    assert_eq!(report.parts, stored.len());
    assert_eq!(report.partitions, 4, "50 servers reach all 4 partitions");

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_subject: BTreeMap<&str, Vec<&Raw>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for m in &stored {
        assert_eq!((m.batch.source.as_str(), m.batch.seq, m.batch.clock_ms), ("part", 5, TS_MS + STEP_MS));
        assert!(ids.insert(m.id.clone()), "message id {} twice", m.id);
        for r in &m.batch.records {
            let p = partition::of(&r.server, 4);
            assert_eq!(m.subject, partition::metrics_batch_subject("part", p, 4), "{} on its partition's subject", r.server);
            assert_eq!(m.subject, format!("metrics.batch.part.{p}"));
            *seen.entry(r.server.clone()).or_default() += 1;
        }
        by_subject.entry(&m.subject).or_default().push(m);
    }
    let expected: BTreeMap<String, usize> = tick(50).into_iter().map(|r| (r.server, 1)).collect();
    assert_eq!(seen, expected, "every record exactly once");

    assert_eq!(by_subject.len(), 4);
    for (subject, parts) in &by_subject {
        let p: u16 = subject.rsplit('.').next().unwrap().parse().unwrap();
        let n = parts.len();
        assert!(n > 1, "{subject}: the small max_payload splits each partition");
        let labels: Vec<&str> = parts.iter().map(|m| m.part.as_str()).collect();
        let want: Vec<String> = (1..=n).map(|i| format!("{i}/{n}")).collect();
        assert_eq!(labels, want, "{subject}: parts numbered within the partition, in order");
        assert!(is_last_part(&parts[n - 1].part) && parts[..n - 1].iter().all(|m| !is_last_part(&m.part)));
        let want_ids: Vec<String> = (0..n).map(|i| format!("run1.5.p{p}.{i}")).collect();
        assert_eq!(parts.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), want_ids);
    }
}

#[tokio::test]
async fn one_partition_publishes_exactly_as_unpartitioned() {
    let (stored, report) = publish_one(50, 1, 1 << 20).await;
    assert_eq!((report.parts, report.partitions, stored.len()), (1, 1, 1));
    let m = &stored[0];
    assert_eq!((m.subject.as_str(), m.part.as_str(), m.id.as_str()), ("metrics.batch.part", "1/1", "run1.5.0"));
    assert_eq!(m.batch.records, tick(50), "the whole tick, in order");
}

#[tokio::test]
async fn an_empty_tick_reaches_every_partition() {
    let nats = NatsServer::start().unwrap();
    let client = nats.connect().await.unwrap();
    create_stream(&client).await;
    let mut publisher = Publisher::new(client.clone(), "part", "run1").with_partitions(3);
    let report = publisher.publish(9, TS_MS, Vec::new(), std::future::pending()).await.unwrap();
    assert_eq!((report.parts, report.partitions), (3, 3));
    let stored = read_raw(&client).await;
    let shapes: BTreeSet<(String, String)> = stored.iter().map(|m| (m.subject.clone(), m.part.clone())).collect();
    let want: BTreeSet<(String, String)> = (0..3).map(|p| (format!("metrics.batch.part.{p}"), "1/1".to_string())).collect();
    assert_eq!(shapes, want);
    assert!(stored.iter().all(|m| m.batch.records.is_empty() && m.batch.clock_ms == TS_MS));
}

#[tokio::test]
async fn the_generator_publishes_on_its_partitions() {
    let nats = NatsServer::start().unwrap();
    let client = nats.connect().await.unwrap();
    create_stream(&client).await;
    let mut opts = options(&nats.url(), 40, 5);
    opts.partitions = 3;
    opts.max_steps = Some(2);
    let summary = run_to_end(opts, 60).await;
    assert_eq!(summary.steps, 2);

    let stored = read_stream(&client).await;
    assert_eq!(summary.messages as usize, stored.len());
    let mut per_tick: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for m in &stored {
        let servers: BTreeSet<&str> = m.records.iter().map(|r| r.server.as_str()).collect();
        assert_eq!(servers.len(), m.records.len());
        for s in &servers {
            assert_eq!(m.subject, format!("metrics.batch.generator.{}", partition::of(s, 3)), "{s}");
            assert!(per_tick.entry(m.seq).or_default().insert(s), "{s} twice in tick {}", m.seq);
        }
    }
    assert_eq!(per_tick.len(), 2);
    // Every server starts healthy, so the first tick has the whole fleet.
    assert_eq!(per_tick[&0].len(), 40);
}
