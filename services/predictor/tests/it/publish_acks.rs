//! Writing many JetStream messages in one go, against a real nats-server: the bounded ack
//! window (`fleetbus::acks`) that keeps a tick with tens of thousands of alert events from
//! waiting forever on async-nats's per-context ack permits, and the saved state written in
//! pieces (`saved_state.rs`) read back through KV as a restoring predictor reads it.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use fleetbus::acks::AckWindow;
use predictor::{resume, saved_state};

async fn stream_on(js: &jetstream::Context, subject: &str) {
    js.get_or_create_stream(stream::Config { name: "ACKS".into(), subjects: vec![subject.into()], ..Default::default() }).await.unwrap();
}

/// async-nats holds one of 5,000 permits per publish not yet acknowledged, and the next
/// publish waits for one with no timeout: holding every ack of a large tick stalls the
/// publisher forever (the 100,000-server stall of issue 14). The window must not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_thousand_publishes_through_the_window_complete() {
    let nats = testkit::NatsServer::start().unwrap();
    let js = jetstream::new(nats.connect().await.unwrap());
    stream_on(&js, "acks.>").await;
    let mut window = AckWindow::new(fleetbus::acks::DEFAULT_LIMIT);
    let sent = tokio::time::timeout(Duration::from_secs(60), async {
        for i in 0..6_000u32 {
            let ack = js.publish(format!("acks.{}", i % 7), Bytes::from(i.to_be_bytes().to_vec())).await.unwrap();
            window.push(ack).await.unwrap();
            assert!(window.outstanding() <= fleetbus::acks::DEFAULT_LIMIT);
        }
        window.finish().await.unwrap();
    })
    .await;
    assert!(sent.is_ok(), "6,000 publishes did not complete within 60 s");
    let info = js.get_stream("ACKS").await.unwrap().info().await.unwrap().state.clone();
    assert_eq!(info.messages, 6_000);

    // The behaviour the window exists for: with every ack held, publish 5,001 does not return.
    let mut held = Vec::new();
    for i in 0..5_000u32 {
        held.push(js.publish("acks.held", Bytes::from(i.to_be_bytes().to_vec())).await.unwrap());
    }
    let next = tokio::time::timeout(Duration::from_secs(3), js.publish("acks.held", Bytes::from_static(b"x"))).await;
    assert!(next.is_err(), "async-nats no longer blocks the 5,001st publish; fleetbus::acks' reason to exist changed");
    drop(held);
}

/// A 3 MB state saved in pieces under a 1 MiB payload and read back whole, then a newer save
/// read over it; a whole state from before the pieces is read as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_over_one_message_round_trips_through_kv() {
    let nats = testkit::NatsServer::start().unwrap();
    let js = jetstream::new(nats.connect().await.unwrap());
    let bucket = js.create_key_value(kv::Config { bucket: "state".into(), history: 1, ..Default::default() }).await.unwrap();
    let save = |gen: u64, len: usize| {
        let state: Vec<u8> = (0..len).map(|i| ((i as u64 * 7 + gen) % 256) as u8).collect();
        (state.clone(), saved_state::split("domain.p2", &state, gen, 1_047_552).unwrap())
    };
    for (gen, len) in [(7u64, 3_000_000usize), (8, 2_500_000), (9, 400)] {
        let (state, writes) = save(gen, len);
        let mut window = AckWindow::new(4);
        for (key, value) in writes {
            assert!(value.len() <= 1_048_576, "{key}: {} bytes, over the max payload", value.len());
            window.push(js.publish(format!("$KV.state.{key}"), value).await.unwrap()).await.unwrap();
        }
        window.finish().await.unwrap();
        let (read, _) = resume::read_saved(&bucket, "domain.p2").await.unwrap().expect("a saved state");
        assert_eq!(read.len(), state.len(), "save {gen}");
        assert!(read == state, "save {gen}: the bytes read back differ");
    }
    bucket.put("domain", Bytes::from_static(b"\x81\xa7tick_ms\x05")).await.unwrap();
    let (legacy, _) = resume::read_saved(&bucket, "domain").await.unwrap().expect("the whole state");
    assert_eq!(legacy, b"\x81\xa7tick_ms\x05");
    assert!(resume::read_saved(&bucket, "domain.p5").await.unwrap().is_none(), "nothing saved");
}

/// A server's KV `forecasts` entry with one CPU forecast.
fn entry(i: usize) -> schemas::ServerForecast {
    let curve = vec![i as f32 % 100.0; 96];
    schemas::ServerForecast {
        server: format!("srv{i:04}"),
        profile: schemas::Profile::Generic,
        last_ms: 1_800_000_000_000,
        risk: 0.0,
        level: schemas::Level::Healthy,
        reasons: Vec::new(),
        current: schemas::Metrics::default(),
        recent: Vec::new(),
        warmup: None,
        no_forecast: None,
        forecast: vec![schemas::TargetForecast {
            target: schemas::Target::Cpu,
            method: schemas::Method::Model,
            p10: curve.clone(),
            p50: curve.clone(),
            p90: curve,
        }],
        explanation: None,
        alerts: Vec::new(),
        thresholds: Vec::new(),
    }
}

/// The queue between the tick's computing thread and the task that writes KV `forecasts` is
/// bounded (`publish::FORECAST_QUEUE` in the predictor): with room for 4 entries, 300 entries
/// put from a blocking section (as the tick does, inside `block_in_place`) never queue more
/// than 4, wait for the broker instead, and every one is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_forecast_queue_waits_for_the_broker_and_stores_every_entry() {
    let nats = testkit::NatsServer::start().unwrap();
    let client = nats.connect().await.unwrap();
    let js = jetstream::new(client.clone());
    let bucket = kv::Config { bucket: schemas::subjects::BUCKET_FORECASTS.into(), ..Default::default() };
    let store = js.create_key_value(bucket).await.unwrap();
    let publisher = predictor::publish::Publisher::new(client, js.clone());
    let writer = publisher.forecast_writer(Some(4));
    let most = tokio::task::block_in_place(|| {
        let mut most = 0;
        for i in 0..300 {
            writer.put(entry(i));
            most = most.max(writer.queued().unwrap_or(usize::MAX));
        }
        most
    });
    assert!(most <= 4, "{most} entries queued at once");
    tokio::time::timeout(Duration::from_secs(60), writer.finish()).await.expect("written within 60 s").unwrap();
    let mut kv_stream = js.get_stream(format!("KV_{}", schemas::subjects::BUCKET_FORECASTS)).await.unwrap();
    assert_eq!(kv_stream.info().await.unwrap().state.messages, 300);
    let last = store.get("srv0299").await.unwrap().expect("the last entry");
    let back: schemas::ServerForecast = schemas::decode(&last).unwrap();
    assert_eq!(back.server, "srv0299");
    assert!((back.forecast[0].p50[0] - 99.0).abs() < 0.01, "{:?}", back.forecast[0].p50[0]);
}
