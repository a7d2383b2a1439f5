//! A batch part whose `Fleetcast-Part` header says it ends its source's tick is forecast at
//! once; without the header the predictor waits its coalesce time for more parts. The coalesce
//! time here is 8 s, so only the header can explain a snapshot within 3 s.
//! Real nats-server, real ONNX Runtime, the tiny test model.

use crate::common;

use std::time::Duration;

use async_nats::jetstream;
use common::*;
use schemas::STEP_MS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_part_ticks_without_waiting() {
    let nats = testkit::NatsServer::start().expect("nats-server");
    let client = nats.connect().await.expect("connect");
    let js = jetstream::new(client.clone());
    let mut c = config(&nats.url());
    c.coalesce = Duration::from_secs(8);
    c.tick_max_delay = Duration::from_secs(60);
    let running = predictor::start(c).await.expect("predictor starts");
    let mut snaps = Snapshots::subscribe(&client).await;
    let names = server_names(20);
    let t0 = t0();

    // Two parts of one tick: the first (1/2) must not end it, the second (2/2) does.
    let step = step_batch(&names, t0, 1);
    let (a, b) = step.records.split_at(10);
    let part = |records: &[schemas::MetricRecord]| schemas::MetricsBatch::new(SOURCE, 1, t0 + STEP_MS, records.to_vec());
    publish_part(&js, &part(a), Some((0, 2))).await;
    assert!(snaps.next(Duration::from_secs(2)).await.is_none(), "a first part alone must wait for the rest");
    publish_part(&js, &part(b), Some((1, 2))).await;
    let snap = snaps.next(Duration::from_secs(3)).await.expect("the last part ends the tick at once");
    assert_eq!(snap.servers.len(), 20, "both parts in one snapshot");

    // Without the header the coalesce wait applies.
    publish_part(&js, &step_batch(&names, t0 + STEP_MS, 2), None).await;
    assert!(snaps.next(Duration::from_secs(3)).await.is_none(), "no header: waits the 8 s coalesce time");
    let snap = snaps.next(Duration::from_secs(15)).await.expect("ticks after the coalesce time");
    assert_eq!(snap.tick_ms, t0 + STEP_MS);
    running.stop().await.expect("graceful stop");
}
