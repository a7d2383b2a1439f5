//! Live mode against a real nats-server: backfill, streaming, fleet on the wire, splitting
//! to max_payload, waiting for the stream, determinism and shutdown.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use generator::fleet::composition;
use generator::live::now_ms;
use generator::{align, SimConfig, Simulator};
use schemas::{Profile, STEP_MS};
use testkit::NatsServer;

#[tokio::test]
async fn backfills_a_day_then_streams_valid_batches_one_record_per_server() {
    let nats = NatsServer::start().unwrap();
    let client = nats.connect().await.unwrap();
    create_stream(&client).await;
    let before = align(now_ms());
    let mut opts = options(&nats.url(), 20, 11);
    opts.backfill_steps = 288;
    opts.max_steps = Some(300);
    let summary = run_to_end(opts, 120).await;
    assert_eq!(summary.steps, 300);

    let stored = read_stream(&client).await;
    assert_eq!(stored.len(), 300, "one message per tick for 20 servers, every one acknowledged");
    for (i, m) in stored.iter().enumerate() {
        assert_eq!(m.seq, i as u64);
        assert_eq!(m.subject, "metrics.batch.generator");
        assert_eq!(m.content_type.as_deref(), Some("application/msgpack"));
        let ts: BTreeSet<i64> = m.records.iter().map(|r| r.ts_ms).collect();
        assert_eq!(ts.len(), 1, "a tick is one step");
        assert_eq!(m.clock_ms, ts.first().unwrap() + STEP_MS, "clock_ms closes the step");
    }

    // The backfill: 288 distinct 5-minute steps, the last one ending at (about) now.
    let steps: Vec<i64> = stored.iter().take(288).map(|m| m.records[0].ts_ms).collect();
    assert!(steps.windows(2).all(|w| w[1] - w[0] == STEP_MS));
    let start = steps[0];
    assert!(start == before - 288 * STEP_MS || start == before - 287 * STEP_MS, "start {start}, now step {before}");
    assert_eq!(steps[287] - steps[0], 287 * STEP_MS, "24 h of history");
    assert!((now_ms() - (steps[287] + STEP_MS)).abs() < 2 * STEP_MS, "backfill ends near now");

    // One record per server that is not offline, exactly what the simulation says.
    let mut sim = Simulator::new(SimConfig { servers: 20, seed: 11, start_ms: start }).unwrap();
    for m in &stored {
        let step = sim.step();
        assert_eq!(m.records, step.records(), "tick {}", m.seq);
        let names: BTreeSet<&str> = m.records.iter().map(|r| r.server.as_str()).collect();
        assert_eq!(names.len(), m.records.len(), "no server twice in a tick");
        let online = step.rows.iter().filter(|r| r.metrics.is_some()).count();
        assert_eq!(m.records.len(), online);
    }
}

#[tokio::test]
async fn fleet_composition_on_the_wire_matches_the_original_split() {
    let nats = NatsServer::start().unwrap();
    let client = nats.connect().await.unwrap();
    create_stream(&client).await;
    for n in [20usize, 45, 90, 100] {
        let mut opts = options(&nats.url(), n, 42);
        opts.source = format!("fleet{n}");
        opts.max_steps = Some(1);
        run_to_end(opts, 60).await;
    }
    let stored = read_stream(&client).await;
    for n in [20usize, 45, 90, 100] {
        let m = stored.iter().find(|m| m.subject == format!("metrics.batch.fleet{n}")).unwrap();
        // Every server starts healthy, so the first tick has all of them.
        assert_eq!(m.records.len(), n);
        let mut counts: BTreeMap<Profile, usize> = BTreeMap::new();
        for r in &m.records {
            let p = r.profile.unwrap();
            assert_eq!(Profile::detect(&r.server), p, "{} named for its profile", r.server);
            *counts.entry(p).or_default() += 1;
        }
        let want: BTreeMap<Profile, usize> = composition(n).unwrap().into_iter().collect();
        assert_eq!(counts, want, "fleet of {n}");
        let names: BTreeSet<&str> = m.records.iter().map(|r| r.server.as_str()).collect();
        for first in ["ppml0001", "ppdb001", "ppweb001", "ppetl001", "pprisk001", "ppgen001", "ppcon01"] {
            assert!(names.contains(first), "{first} in fleet of {n}");
        }
    }
}

#[tokio::test]
async fn ticks_are_split_under_the_servers_max_payload() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("small.conf");
    std::fs::write(&conf, "max_payload: 65536\n").unwrap();
    let nats = NatsServer::start_with(&["-c", conf.to_str().unwrap()]).unwrap();
    let client = nats.connect().await.unwrap();
    assert_eq!(client.server_info().max_payload, 65536);
    create_stream(&client).await;
    let mut opts = options(&nats.url(), 1000, 3);
    opts.max_steps = Some(3);
    run_to_end(opts, 120).await;

    let stored = read_stream(&client).await;
    let mut per_tick: BTreeMap<u64, Vec<&Stored>> = BTreeMap::new();
    for m in &stored {
        assert!(m.bytes <= 65536, "a part of {} bytes", m.bytes);
        per_tick.entry(m.seq).or_default().push(m);
    }
    assert_eq!(per_tick.len(), 3);
    for (seq, parts) in per_tick {
        assert!(parts.len() >= 5, "tick {seq} in {} parts", parts.len());
        assert!(parts.iter().all(|p| p.clock_ms == parts[0].clock_ms));
        let names: Vec<&str> = parts.iter().flat_map(|p| p.records.iter().map(|r| r.server.as_str())).collect();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "no record in two parts");
        assert!(names.len() > 990, "tick {seq}: {} records", names.len());
    }
}

#[tokio::test]
async fn waits_for_the_stream_instead_of_dropping_ticks() {
    let nats = NatsServer::start().unwrap();
    let client = nats.connect().await.unwrap();
    let mut opts = options(&nats.url(), 20, 5);
    opts.backfill_steps = 4;
    opts.max_steps = Some(6);
    let run = spawn(opts);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!run.task.is_finished(), "no stream answers, so the generator keeps retrying tick 0");
    create_stream(&client).await;
    let summary = tokio::time::timeout(Duration::from_secs(30), run.task).await.unwrap().unwrap().unwrap();
    assert_eq!(summary.steps, 6);
    let seqs: Vec<u64> = read_stream(&client).await.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4, 5], "nothing dropped, nothing stored twice");
}

#[tokio::test]
async fn same_seed_same_records_across_runs() {
    let nats = NatsServer::start().unwrap();
    let client = nats.connect().await.unwrap();
    create_stream(&client).await;
    for (source, seed) in [("a", 9), ("b", 9), ("c", 10)] {
        let mut opts = options(&nats.url(), 30, seed);
        opts.source = source.into();
        opts.start_ms = Some(1_767_571_200_000);
        opts.max_steps = Some(50);
        run_to_end(opts, 60).await;
    }
    let stored = read_stream(&client).await;
    let of = |s: &str| -> Vec<_> { stored.iter().filter(|m| m.subject.ends_with(s)).flat_map(|m| m.records.clone()).collect() };
    let (a, b, c) = (of(".a"), of(".b"), of(".c"));
    assert!(a.len() >= 50 * 29);
    assert_eq!(a, b, "same seed, same records");
    assert_ne!(a, c, "another seed, other records");
    assert_eq!(a[0].ts_ms, 1_767_571_200_000, "a fixed start replays the clock");
}

#[tokio::test]
async fn shuts_down_cleanly_on_signal() {
    let nats = NatsServer::start().unwrap();
    let client = nats.connect().await.unwrap();
    create_stream(&client).await;
    let mut opts = options(&nats.url(), 20, 1);
    opts.backfill_steps = 5;
    opts.tick = Duration::from_millis(50);
    let run = spawn(opts);
    tokio::time::sleep(Duration::from_millis(800)).await;
    run.trigger.fire();
    let summary = tokio::time::timeout(Duration::from_secs(10), run.task).await.unwrap().unwrap().unwrap();
    assert!(summary.steps > 5, "streamed past the backfill: {summary:?}");
    let stored = read_stream(&client).await;
    assert_eq!(stored.len() as u64, summary.steps, "every counted tick is in the stream");
    // The control service is gone with it.
    let err = client.request(schemas::subjects::CONTROL_SCENARIO_STATUS, "".into()).await.unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

#[tokio::test]
async fn a_restart_resumes_after_its_last_stored_batch_not_a_day_before_now() {
    let nats = NatsServer::start().unwrap();
    let client = nats.connect().await.unwrap();
    create_stream(&client).await;
    // Unpartitioned and partitioned sources, each run twice on the same stream.
    for (source, partitions) in [("solo", 1u16), ("split", 3)] {
        let mut opts = options(&nats.url(), 12, 4);
        (opts.source, opts.partitions, opts.backfill_steps) = (source.into(), partitions, 12);
        // Past the 12 backfill steps the clock runs ahead of the wall clock (tick 0).
        opts.max_steps = Some(40);
        run_to_end(opts.clone(), 60).await;
        let first: Vec<Stored> =
            read_stream(&client).await.into_iter().filter(|m| m.subject.starts_with(&format!("metrics.batch.{source}"))).collect();
        let last_clock = first.iter().map(|m| m.clock_ms).max().unwrap();
        assert!(last_clock > align(now_ms()) + 20 * STEP_MS, "{source}: the first run ran ahead of now");

        opts.max_steps = Some(3);
        run_to_end(opts, 60).await;
        let all: Vec<Stored> =
            read_stream(&client).await.into_iter().filter(|m| m.subject.starts_with(&format!("metrics.batch.{source}"))).collect();
        let resumed = &all[first.len()..];
        let steps: BTreeSet<i64> = resumed.iter().flat_map(|m| m.records.iter().map(|r| r.ts_ms)).collect();
        let want: BTreeSet<i64> = (0..3).map(|k| last_clock + k * STEP_MS).collect();
        assert_eq!(steps, want, "{source}: the restart sent the 3 steps after the last one stored, no backfill before it");
    }
}

#[tokio::test]
async fn a_stored_batch_older_than_the_backfill_does_not_pull_the_clock_back() {
    let nats = NatsServer::start().unwrap();
    let client = nats.connect().await.unwrap();
    create_stream(&client).await;
    let mut opts = options(&nats.url(), 8, 4);
    (opts.start_ms, opts.max_steps) = (Some(1_767_571_200_000), Some(2));
    run_to_end(opts, 60).await;

    let before = align(now_ms());
    let mut opts = options(&nats.url(), 8, 4);
    (opts.backfill_steps, opts.max_steps) = (12, Some(1));
    run_to_end(opts, 60).await;
    let stored = read_stream(&client).await;
    let start = stored[2].records[0].ts_ms;
    assert!(start == before - 12 * STEP_MS || start == before - 11 * STEP_MS, "a fresh backfill from 12 steps before now, got {start}");
}
