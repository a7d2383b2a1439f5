//! Bad input never crashes the predictor: every class of bad record is rejected on its own with
//! the right reason and published on `metrics.rejected`, the good records of the same batch
//! still count, and malformed MessagePack, a wrong version and an oversize message are
//! rejected whole. Real nats-server, real model.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use common::*;
use futures::StreamExt;
use rmpv::Value as V;
use schemas::{MetricRecord, Metrics, RejectReason, Rejection, STEP_MS};

fn record(server: &str, ts: i64, metrics: Vec<(&str, V)>) -> V {
    V::Map(vec![
        (V::from("server"), V::from(server)),
        (V::from("ts_ms"), V::from(ts)),
        (V::from("metrics"), V::Map(metrics.into_iter().map(|(k, v)| (V::from(k), v)).collect())),
    ])
}

fn good(server: &str, ts: i64) -> V {
    let r = MetricRecord { server: server.into(), ts_ms: ts, profile: None, metrics: metrics(0, ts / STEP_MS) };
    rmpv::decode::read_value(&mut &schemas::encode(&r).unwrap()[..]).unwrap()
}

fn with(mut rec: V, key: &str, value: V) -> V {
    if let V::Map(entries) = &mut rec {
        entries.retain(|(k, _)| k.as_str() != Some(key));
        entries.push((V::from(key), value));
    }
    rec
}

fn without(mut rec: V, key: &str) -> V {
    if let V::Map(entries) = &mut rec {
        entries.retain(|(k, _)| k.as_str() != Some(key));
    }
    rec
}

fn batch(v: u16, clock: i64, records: Vec<V>) -> Vec<u8> {
    let b = V::Map(vec![
        (V::from("v"), V::from(v)),
        (V::from("source"), V::from(SOURCE)),
        (V::from("seq"), V::from(1)),
        (V::from("clock_ms"), V::from(clock)),
        (V::from("records"), V::Array(records)),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &b).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_record_is_rejected_with_its_reason() {
    let nats = testkit::NatsServer::start().expect("nats-server");
    let client = nats.connect().await.expect("connect");
    let js = jetstream::new(client.clone());
    let mut cfg = config(&nats.url());
    cfg.max_message_bytes = 64 * 1024;
    cfg.max_servers = 3;
    let running = predictor::start(cfg).await.expect("predictor starts");
    let mut rejected = client.subscribe(schemas::subjects::METRICS_REJECTED).await.unwrap();
    let mut snaps = Snapshots::subscribe(&client).await;
    client.flush().await.unwrap();

    let t = t0();
    let year = 365 * 86_400_000i64;
    let records = vec![
        good("ppdb001", t),                                              // 0 ok
        record("ppdb002", t, vec![("cpu_user_pct", V::from("high"))]),   // 1 wrong_type
        without(good("ppdb003", t), "ts_ms"),                            // 2 missing_field
        with(good("ppdb004", t), "color", V::from("blue")),              // 3 unknown_field
        record("ppdb005", t, vec![("cascade_impact", V::from(0.5))]),    // 4 unknown_metric
        record("ppdb006", t, vec![("cpu_user_pct", V::from(f64::NAN))]), // 5 not_finite
        record("ppdb007", t, vec![("mem_used_pct", V::from(150.0))]),    // 6 out_of_range
        good("bad name!", t),                                            // 7 bad_server_name
        with(good("ppdb008", t), "profile", V::from("mainframe")),       // 8 bad_profile
        good("ppdb009", t + year),                                       // 9 timestamp_skew
        V::from(42),                                                     // 10 wrong_type (not a map)
        good("ppweb001", t),                                             // 11 ok
        record("ppdb010", t, vec![("net_in_mb_s", V::from(-1.0))]),      // 12 out_of_range
        good("ppapi001", t),                                             // 13 ok (third server)
        good("ppcon001", t),                                             // 14 fleet_limit
    ];
    publish_raw(&js, batch(schemas::SCHEMA_VERSION, t + STEP_MS, records)).await;
    publish_raw(&js, b"\xc1\xc1 not msgpack at all".to_vec()).await;
    publish_raw(&js, batch(99, t + STEP_MS, vec![good("ppdb001", t)])).await;
    publish_raw(&js, vec![0x90; 100 * 1024]).await;
    publish_raw(&js, batch(schemas::SCHEMA_VERSION, t + 400 * 86_400_000, vec![])).await;

    let want: Vec<(Option<u32>, RejectReason)> = vec![
        (Some(1), RejectReason::WrongType),
        (Some(2), RejectReason::MissingField),
        (Some(3), RejectReason::UnknownField),
        (Some(4), RejectReason::UnknownMetric),
        (Some(5), RejectReason::NotFinite),
        (Some(6), RejectReason::OutOfRange),
        (Some(7), RejectReason::BadServerName),
        (Some(8), RejectReason::BadProfile),
        (Some(9), RejectReason::TimestampSkew),
        (Some(10), RejectReason::WrongType),
        (Some(12), RejectReason::OutOfRange),
        (Some(14), RejectReason::FleetLimit),
        (None, RejectReason::Malformed),
        (None, RejectReason::UnsupportedVersion),
        (None, RejectReason::Oversize),
        (None, RejectReason::TimestampSkew),
    ];
    let mut got = Vec::new();
    while got.len() < want.len() {
        let msg = tokio::time::timeout(Duration::from_secs(10), rejected.next())
            .await
            .unwrap_or_else(|_| panic!("only {} rejections arrived: {got:?}", got.len()))
            .unwrap();
        let r: Rejection = schemas::decode(&msg.payload).expect("a Rejection decodes");
        assert_eq!(r.source, SOURCE);
        assert!(!r.error.field.is_empty() && !r.error.rule.is_empty(), "{r:?}");
        got.push(r);
    }
    let pairs: Vec<_> = got.iter().map(|r| (r.index, r.error.reason)).collect();
    assert_eq!(pairs, want);
    let field = |i: usize| got[i].error.field.as_str();
    assert_eq!(
        (field(0), field(3), field(5), field(6)),
        ("metrics.cpu_user_pct", "metrics.cascade_impact", "metrics.mem_used_pct", "server")
    );
    assert_eq!(got[5].server.as_deref(), Some("ppdb007"), "a valid server name is named");
    assert_eq!(got[6].server, None, "an invalid name is not");

    // The good records of the batch count: three servers, one step.
    let snap = snaps.until(Duration::from_secs(10), |s| s.tick_ms == t).await;
    let mut names: Vec<_> = snap.servers.iter().map(|s| s.server.as_str()).collect();
    names.sort();
    assert_eq!(names, ["ppapi001", "ppdb001", "ppweb001"]);
    let st = stats(&client).await;
    assert_eq!((st["accepted"].as_u64(), st["rejected"].as_u64()), (Some(3), Some(want.len() as u64)));
    let by_reason: BTreeMap<String, u64> = serde_json::from_value(st["rejects_by_reason"].clone()).unwrap();
    assert_eq!(by_reason["out_of_range"], 2);
    assert_eq!(by_reason["wrong_type"], 2);
    assert_eq!(st["rejects_by_source"][SOURCE]["fleet_limit"], 1);

    // And the predictor goes on: the next step is processed normally.
    let next = MetricRecord {
        server: "ppdb001".into(),
        ts_ms: t + STEP_MS,
        profile: None,
        metrics: Metrics { cpu_idle_pct: Some(50.0), ..Default::default() },
    };
    publish_batch(&js, &schemas::MetricsBatch::new(SOURCE, 2, t + 2 * STEP_MS, vec![next])).await;
    let snap = snaps.until(Duration::from_secs(10), |s| s.tick_ms == t + STEP_MS).await;
    assert_eq!(snap.servers.iter().find(|s| s.server == "ppdb001").unwrap().last_ms, t + STEP_MS);
    running.stop().await.expect("graceful stop");
}
