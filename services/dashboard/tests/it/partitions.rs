//! A partitioned fleet against a real nats-server: each partition's snapshot (some in parts,
//! interleaved with the others') on `predictions.current.<k>` is merged into one fleet view; a
//! partition whose predictor stopped is named on the overview while its servers stay shown; a
//! dashboard started late reads every partition's retained snapshot from the stream.

use crate::common::{store_forecasts, subscribed};

use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, stream};
use dashboard::fixture::{self, Spec};
use dashboard::{Args, Running};
use schemas::partition::snapshot_subject;
use schemas::subjects::{self, PREDICTIONS_CURRENT};
use schemas::Snapshot;
use testkit::NatsServer;

const MIN: i64 = 60_000;

async fn start(url: &str) -> Running {
    let mut a = Args::for_tests(url);
    a.stale_after = Duration::from_secs(60);
    dashboard::start(a).await.expect("dashboard starts")
}

async fn eventually(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The two partitions of a 30-server fleet, published at `at` (seq `seq` each), as they read
/// back off the wire (so merging them is what the dashboard shows).
fn two_partitions(seq: u64, at: i64) -> [Snapshot; 2] {
    let parts: Vec<Snapshot> =
        fixture::partitions(&Spec { servers: 30, seq, ..Default::default() }, 2).into_iter().map(fixture::wire).collect();
    let mut two: [Snapshot; 2] = parts.try_into().unwrap();
    for p in &mut two {
        p.published_ms = at;
    }
    assert!(two.iter().all(|p| !p.servers.is_empty()), "both partitions hold servers");
    two
}

/// (subject, message) for partition `s` in `parts` parts.
fn messages(s: &Snapshot, parts: u16) -> Vec<(String, Snapshot)> {
    let p = s.partition.unwrap();
    fixture::split(s, parts).into_iter().map(|m| (snapshot_subject(p.index, p.count), m)).collect()
}

/// `a`'s parts with `b`'s between them: a0, b0, a1, b1, ...
fn interleave(a: Vec<(String, Snapshot)>, b: Vec<(String, Snapshot)>) -> Vec<(String, Snapshot)> {
    let (mut a, mut b) = (a.into_iter(), b.into_iter());
    let mut out = Vec::new();
    loop {
        match (a.next(), b.next()) {
            (None, None) => return out,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
}

async fn publish(client: &async_nats::Client, msgs: &[(String, Snapshot)]) {
    for (subject, m) in msgs {
        client.publish(subject.clone(), schemas::encode(m).unwrap().into()).await.unwrap();
    }
    client.flush().await.unwrap();
}

/// A plain HTTP/1.1 GET (Connection: close) returning the response.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// The overview lists every server of both partitions and the merged fleet's size, and each
/// partition's servers have their page.
async fn shows_both_partitions(dash: &Running, two: &[Snapshot; 2]) {
    let overview = get(dash.addr, "/?n=200").await;
    assert!(overview.contains("id=\"fleet-size\">30</div>"), "merged fleet size");
    for p in two {
        for s in &p.servers {
            assert!(overview.contains(&format!("<a href=\"/servers/{0}\">{0}</a>", s.server)), "{} is listed", s.server);
        }
        let one = &p.servers[0].server;
        let page = get(dash.addr, &format!("/servers/{one}")).await;
        assert!(page.starts_with("HTTP/1.1 200") && page.contains(&format!("id=\"server-name\">{one}</div>")), "{page}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_merged_and_a_stale_one_is_named() {
    let monitor = testkit::free_port();
    let nats = NatsServer::start_with(&["-m", &monitor.to_string()]).unwrap();
    let client = nats.connect().await.unwrap();
    let dash = start(&nats.url()).await;
    subscribed(monitor, PREDICTIONS_CURRENT).await;
    subscribed(monitor, &format!("{PREDICTIONS_CURRENT}.*")).await;
    // The servers' pages read their forecasts from KV (the names are the same at every seq).
    store_forecasts(&client, &Spec { servers: 30, ..Default::default() }).await;

    // Partition 0 in two parts, partition 1's whole snapshot between them.
    let t0 = now_ms() - 15 * MIN;
    let two = two_partitions(10, t0);
    let mut msgs = messages(&two[0], 2);
    assert_eq!(msgs.len(), 2);
    msgs.insert(1, messages(&two[1], 1).remove(0));
    publish(&client, &msgs).await;
    eventually("both partitions merged", Duration::from_secs(10), || dash.state.latest().is_some_and(|l| l.snapshot.servers.len() == 30))
        .await;
    let latest = dash.state.latest().unwrap();
    let f = &latest.snapshot.fleet;
    assert_eq!((latest.snapshot.seq, latest.snapshot.partition, f.servers, f.ready), (20, None, 30, 30));
    assert_eq!(latest.snapshot, schemas::partition::merge(two.to_vec()).unwrap());
    shows_both_partitions(&dash, &two).await;
    assert!(!get(dash.addr, "/").await.contains("id=\"partitions\""), "partitions in step: nothing to say");

    // Partition 1's predictor stops; partition 0 goes on: partition 1 is 15 min behind.
    let next = two_partitions(11, now_ms())[0].clone();
    publish(&client, &messages(&next, 2)).await;
    eventually("partition 0's next snapshot", Duration::from_secs(10), || dash.state.latest().is_some_and(|l| l.snapshot.seq == 21)).await;
    let overview = get(dash.addr, "/?n=200").await;
    let line = format!(
        "<div id=\"partition-1\">Partition 1 of 2 (predictions.current.1): last snapshot 15 min ago; its {} servers are shown as of then.</div>",
        two[1].servers.len()
    );
    assert!(overview.contains(&line), "{overview}");
    assert!(!overview.contains("id=\"partition-0\""));
    shows_both_partitions(&dash, &[next, two[1].clone()]).await;

    // Back to one predictor: its snapshot is shown as it is, the partitions forgotten.
    let one = fixture::wire(fixture::snapshot(&Spec { servers: 5, seq: 3, ..Default::default() }));
    publish(&client, &[(PREDICTIONS_CURRENT.to_string(), one.clone())]).await;
    eventually("the unpartitioned snapshot", Duration::from_secs(10), || {
        dash.state.latest().is_some_and(|l| l.snapshot.servers.len() == 5)
    })
    .await;
    assert_eq!(dash.state.latest().unwrap().snapshot, one);
    assert!(!get(dash.addr, "/").await.contains("id=\"partitions\""));
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_start_reads_every_partitions_retained_snapshot() {
    let nats = NatsServer::start().unwrap();
    let client = nats.connect().await.unwrap();
    let js = jetstream::new(client.clone());
    // as the partitioned predictor creates it
    js.create_stream(stream::Config {
        name: subjects::STREAM_PREDICTIONS.into(),
        subjects: vec![PREDICTIONS_CURRENT.into(), format!("{PREDICTIONS_CURRENT}.>")],
        allow_direct: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let now = now_ms();
    // An older unpartitioned snapshot, from before the fleet was split: not shown.
    let mut before = fixture::snapshot(&Spec { servers: 8, seq: 90, ..Default::default() });
    before.published_ms = now - 14 * MIN;
    let mut msgs = vec![(PREDICTIONS_CURRENT.to_string(), before)];
    // Two rounds of both partitions, partition 0 in 3 parts and partition 1 in 2, interleaved.
    // Partition 1's predictor stopped after the first round (13 min ago).
    let old = two_partitions(1, now - 13 * MIN);
    msgs.extend(interleave(messages(&old[0], 3), messages(&old[1], 2)));
    let [p0, _] = two_partitions(2, now);
    msgs.extend(interleave(messages(&p0, 3), Vec::new()));
    // and partition 1's newer snapshot was cut off after its first part: skipped
    let [_, cut] = two_partitions(3, now);
    msgs.push(messages(&cut, 2).remove(0));
    for (subject, m) in &msgs {
        js.publish(subject.clone(), schemas::encode(m).unwrap().into()).await.unwrap().await.unwrap();
    }

    store_forecasts(&client, &Spec { servers: 30, ..Default::default() }).await;
    let dash = start(&nats.url()).await;
    eventually("retained partitions read", Duration::from_secs(10), || dash.state.latest().is_some_and(|l| l.partitions.len() == 2)).await;
    let latest = dash.state.latest().unwrap();
    assert_eq!(latest.snapshot, schemas::partition::merge(vec![p0.clone(), old[1].clone()]).unwrap());
    assert_eq!(latest.snapshot.seq, 3);
    shows_both_partitions(&dash, &[p0, old[1].clone()]).await;
    let overview = get(dash.addr, "/").await;
    assert!(overview.contains("<div id=\"partition-1\">Partition 1 of 2 (predictions.current.1): last snapshot 13 min ago"), "{overview}");
    dash.stop().await;
}
