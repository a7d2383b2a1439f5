//! Hostile input against the running predictor binary: every class of bad record is rejected
//! with its reason and counted, a message over the broker's limit never arrives, 100,000
//! distinct server names cannot grow memory without bound, and good records sent alongside
//! still land. Observed from outside: `metrics.rejected`, the stats service and /proc.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use e2e::{NatsServer, Service, SnapshotWatch};
use schemas::{MetricRecord, Metrics, MetricsBatch, STEP_MS};

fn rec(server: &str, ts_ms: i64, metrics: Metrics) -> MetricRecord {
    MetricRecord { server: server.into(), ts_ms, profile: None, metrics }
}

fn cpu(v: f32) -> Metrics {
    Metrics { cpu_idle_pct: Some(100.0 - v.clamp(0.0, 100.0)), cpu_user_pct: Some(v), mem_used_pct: Some(40.0), ..Default::default() }
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn stats(client: &async_nats::Client) -> anyhow::Result<serde_json::Value> {
    let reply = client.request("$SRV.predictor.stats", "".into()).await?;
    Ok(serde_json::from_slice(&reply.payload)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_rejected_counted_and_bounded() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let nats = NatsServer::start()?;
    let url = nats.url();
    let predictor =
        Service::start(dir.path(), "predictor", &["--max-servers", "20000"], &[("NATS_URL", url.as_str())]).await?;
    let pid = predictor.pid().expect("running");
    let client = nats.connect().await?;
    let js = jetstream::new(client.clone());
    let mut watch = SnapshotWatch::new(&client).await?;

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let ts = now - now.rem_euclid(STEP_MS) - STEP_MS;
    let year = 365 * 86_400_000;
    let mut nan = cpu(10.0);
    nan.load_average = Some(f32::NAN);
    let mut over = cpu(10.0);
    over.mem_used_pct = Some(140.0);
    let mut negative = cpu(10.0);
    negative.net_in_mb_s = Some(-3.0);
    let mut records = vec![rec("good-1", ts, cpu(20.0)), rec("good-2", ts, cpu(30.0))];
    for name in ["a*b", "a>b", "has space", "a..b", "ünïcode", "<script>alert(1)</script>", ""] {
        records.push(rec(name, ts, cpu(10.0)));
    }
    records.push(rec("future", ts + year, cpu(10.0)));
    records.push(rec("past", ts - year, cpu(10.0)));
    records.push(rec("nan", ts, nan));
    records.push(rec("over", ts, over));
    records.push(rec("negative", ts, negative));
    let batch = MetricsBatch::new("evil", 1, ts + STEP_MS, records);
    js.publish("metrics.batch.evil", schemas::encode(&batch)?.into()).await?.await?;
    // Malformed MessagePack.
    js.publish("metrics.batch.evil", b"\xc1\xc1\xc1 not msgpack".to_vec().into()).await?.await?;
    // 50 MB: over the broker's max_payload, so it is refused before any service sees it, and
    // the publisher gets the error.
    let huge = vec![0u8; 50 << 20];
    let err = client.publish("metrics.batch.evil", huge.into()).await.expect_err("50 MB accepted");
    assert!(err.to_string().contains("payload"), "{err}");

    // The two good records of the bad batch land: they are in the next snapshot (warming up).
    let snap = watch
        .until(Duration::from_secs(20), |s| s.servers.iter().filter(|f| f.server.starts_with("good-")).count() == 2)
        .await?;
    assert!(snap.servers.iter().all(|s| !s.server.contains('<') && !s.server.contains('*')));

    let s = stats(&client).await?;
    let by: BTreeMap<String, u64> = serde_json::from_value(s["rejects_by_reason"].clone())?;
    assert_eq!(by.get("bad_server_name"), Some(&7), "{by:?}");
    assert_eq!(by.get("timestamp_skew"), Some(&2), "{by:?}");
    assert_eq!(by.get("not_finite"), Some(&1), "{by:?}");
    assert_eq!(by.get("out_of_range"), Some(&2), "{by:?}");
    assert_eq!(by.get("malformed"), Some(&1), "{by:?}");

    // 100,000 distinct names in 20 batches of 5,000: the first 20,000 are kept (the fleet
    // limit), the rest rejected as fleet_limit; memory stays bounded.
    let base_rss = rss_mib(pid);
    for b in 0..20 {
        let records = (0..5000).map(|i| rec(&format!("flood-{b}-{i}"), ts, cpu(5.0))).collect();
        let batch = MetricsBatch::new("flood", b as u64, ts + STEP_MS, records);
        js.publish("metrics.batch.flood", schemas::encode(&batch)?.into()).await?.await?;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let flood = loop {
        let s = stats(&client).await?;
        let limited = s["rejects_by_reason"]["fleet_limit"].as_u64().unwrap_or(0);
        if s["batches"].as_u64().unwrap_or(0) >= 22 || std::time::Instant::now() > deadline {
            break (s, limited);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (s, limited) = flood;
    assert!(s["windows"].as_u64().unwrap_or(u64::MAX) <= 20_000, "{s}");
    assert!(limited >= 80_000, "fleet_limit rejects: {limited}; {s}");
    let rss = rss_mib(pid);
    assert!(rss < base_rss + 800.0 && rss < 1024.0, "predictor RSS {base_rss:.0} -> {rss:.0} MiB");
    // Still alive and answering.
    assert!(stats(&client).await.is_ok());
    assert!(!predictor.log_text().contains("panicked"));
    Ok(())
}
