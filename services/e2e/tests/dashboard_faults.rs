//! The dashboard under faults, with the real binaries: stuck SSE clients never slow the
//! pipeline nor starve normal readers, and with NATS gone the pages still render the last
//! snapshot under a "Stale since" banner.

use std::time::{Duration, Instant};

use e2e::{all_forecast, NatsServer, Service, SnapshotWatch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVERS: usize = 20;

async fn get(addr: &str, path: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await??;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn healthz_seq(body: &str) -> Option<u64> {
    let json = body.split("\r\n\r\n").nth(1)?;
    let json = json.trim_start_matches(|c: char| c.is_ascii_hexdigit() || c == '\r' || c == '\n');
    let v: serde_json::Value = serde_json::from_str(json.trim_end_matches(|c: char| c != '}')).ok()?;
    v["snapshot"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_clients_and_a_lost_broker() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut nats = NatsServer::start()?;
    let url = nats.url();
    let env = [("NATS_URL", url.as_str())];
    let _predictor = Service::start(dir.path(), "predictor", &[], &env).await?;
    let n = SERVERS.to_string();
    let _generator = Service::start(dir.path(), "generator", &["--servers", &n, "--tick", "300ms", "--seed", "3"], &env).await?;
    let addr = format!("127.0.0.1:{}", testkit::free_port());
    let _dashboard = Service::start(dir.path(), "dashboard", &["--listen", &addr], &env).await?;
    let client = nats.connect().await?;
    let mut watch = SnapshotWatch::new(&client).await?;
    watch.until(Duration::from_secs(60), |s| all_forecast(s, SERVERS)).await?;

    // 100 SSE clients that connect and then never read a byte.
    let mut stuck = Vec::new();
    for _ in 0..100 {
        let mut s = tokio::net::TcpStream::connect(&addr).await?;
        s.write_all(format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n").as_bytes()).await?;
        stuck.push(s);
    }
    // For 8 s the pipeline keeps its pace and a normal reader sees every new snapshot.
    let start = Instant::now();
    let mut last = Instant::now();
    let mut worst_gap = Duration::ZERO;
    let mut latest_seq = 0;
    while start.elapsed() < Duration::from_secs(8) {
        let snap = watch.next(Duration::from_secs(5)).await?;
        worst_gap = worst_gap.max(last.elapsed());
        last = Instant::now();
        latest_seq = snap.seq;
    }
    assert!(worst_gap < Duration::from_secs(2), "a snapshot gap of {worst_gap:?} with stuck clients");
    let shown = healthz_seq(&get(&addr, "/healthz").await?).unwrap_or(0);
    assert!(shown + 3 >= latest_seq, "dashboard shows snapshot {shown}, latest {latest_seq}");
    drop(stuck);

    // The broker goes away: pages still render the last snapshot, marked stale.
    nats.stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = get(&addr, "/").await?;
        if page.starts_with("HTTP/1.1 200") && page.contains("Stale since") {
            assert!(page.contains("ppweb") || page.contains("ppml"), "the last snapshot's servers are still shown");
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "no stale banner 20 s after NATS went away");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}
