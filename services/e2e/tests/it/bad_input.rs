//! Hostile input against the running predictor binary: every class of bad record is rejected
//! with its reason and counted, a message over the broker's limit is refused by the broker
//! itself (a raw protocol client, so no client library's own check gets in the way) and never
//! arrives, 100,000 distinct server names cannot grow memory without bound, and good records
//! sent alongside and after still land. Observed from outside: `metrics.rejected`, the stats
//! service and /proc.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;
use e2e::{NatsServer, Service, SnapshotWatch};
use schemas::{MetricRecord, Metrics, MetricsBatch, STEP_MS};

fn rec(server: &str, ts_ms: i64, metrics: Metrics) -> MetricRecord {
    MetricRecord { server: server.into(), ts_ms, profile: None, metrics }
}

fn cpu(v: f32) -> Metrics {
    Metrics { cpu_idle_pct: Some(100.0 - v.clamp(0.0, 100.0)), cpu_user_pct: Some(v), mem_used_pct: Some(40.0), ..Default::default() }
}

/// Resident memory of process `pid` in MiB (`VmRSS` of `/proc/<pid>/status`, which is in kB).
/// An error when it cannot be read, so a memory bound built on it cannot pass on a zero.
fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .with_context(|| format!("no VmRSS line in {path}"))?;
    anyhow::ensure!(kb > 0.0, "{path}: VmRSS is {kb} kB");
    Ok(kb / 1024.0)
}

/// Publishes `bytes` zero bytes on `subject` over a raw NATS protocol connection (no client
/// library, whose own max_payload check would refuse it before the broker sees it) and
/// returns the broker's answer: the `-ERR` line it sends before closing the connection.
async fn raw_publish_refusal(port: u16, subject: &str, bytes: usize) -> anyhow::Result<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let info = lines.next_line().await?.context("no INFO from the broker")?;
    anyhow::ensure!(info.starts_with("INFO "), "{info}");
    write.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n").await?;
    write.write_all(format!("PUB {subject} {bytes}\r\n").as_bytes()).await?;
    // The broker refuses on the PUB line; the payload may meet a closed socket.
    let body = tokio::spawn(async move {
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..bytes.div_ceil(chunk.len()) {
            if write.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let answer = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with("-ERR") {
                return Ok(line);
            }
        }
        anyhow::bail!("the broker closed the connection without an -ERR")
    })
    .await
    .context("no answer from the broker within 20 s")??;
    body.abort();
    Ok(answer)
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
    let predictor = Service::start(dir.path(), "predictor", &["--max-servers", "20000"], &[("NATS_URL", url.as_str())]).await?;
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
    // 50 MB: over the broker's max_payload (1 MB, the default), so the broker refuses it
    // before any service sees it (`malformed` below stays at the one above), and says why.
    let refusal = raw_publish_refusal(nats.port(), "metrics.batch.evil", 50 << 20).await?;
    assert!(refusal.contains("Maximum Payload Violation"), "{refusal}");
    // A good batch sent after the refusal lands too: the refusal cost nothing else.
    let after = MetricsBatch::new("evil", 2, ts + STEP_MS, vec![rec("good-3", ts, cpu(25.0))]);
    js.publish("metrics.batch.evil", schemas::encode(&after)?.into()).await?.await?;

    // The good records of the bad batch and the one after land: they are in a snapshot
    // (warming up).
    let snap = watch.until(Duration::from_secs(20), |s| s.servers.iter().filter(|f| f.server.starts_with("good-")).count() == 3).await?;
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
    let base_rss = rss_mib(pid)?;
    for b in 0..20 {
        let records = (0..5000).map(|i| rec(&format!("flood-{b}-{i}"), ts, cpu(5.0))).collect();
        let batch = MetricsBatch::new("flood", b as u64, ts + STEP_MS, records);
        js.publish("metrics.batch.flood", schemas::encode(&batch)?.into()).await?.await?;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Batches: the bad one, the malformed one, the one after the refusal, then the 20 floods.
    let flood = loop {
        let s = stats(&client).await?;
        let limited = s["rejects_by_reason"]["fleet_limit"].as_u64().unwrap_or(0);
        if s["batches"].as_u64().unwrap_or(0) >= 23 || std::time::Instant::now() > deadline {
            break (s, limited);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (s, limited) = flood;
    assert!(s["windows"].as_u64().unwrap_or(u64::MAX) <= 20_000, "{s}");
    assert!(limited >= 80_000, "fleet_limit rejects: {limited}; {s}");
    let rss = rss_mib(pid)?;
    assert!(rss < base_rss + 800.0 && rss < 1024.0, "predictor RSS {base_rss:.0} -> {rss:.0} MiB");
    // Still alive and answering.
    assert!(stats(&client).await.is_ok());
    assert!(!predictor.log_text().contains("panicked"));
    Ok(())
}
