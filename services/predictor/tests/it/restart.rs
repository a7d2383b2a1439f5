//! Crash and restart: the predictor dies mid-stream (its task aborted in-process while the
//! `windows` bucket refuses writes, or the binary frozen and killed with SIGKILL) holding
//! batches it took and has not acknowledged, while batches keep coming; started again, it
//! rebuilds the windows from KV, takes the unacked and new batches from the durable consumer,
//! and the next snapshot continues: snapshot numbers keep counting, and every step of every
//! server, in the snapshot and in the `windows` bucket, holds the values that were sent.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use common::*;
use predictor::registry::Registry;
use predictor::store::WindowStore;
use schemas::{Metric, Snapshot, Target, STEP_MS};

const SERVERS: usize = 20;
const STEPS: i64 = 40;
/// Steps applied and acknowledged before the crash.
const BEFORE: i64 = 12;
/// Steps published back to back just before the crash.
const BURST: i64 = 12;

/// The step number of the test's step `s` (what `metrics(i, step)` was sent for).
fn step_no(t0: i64, s: i64) -> i64 {
    (t0 + s * STEP_MS).div_euclid(STEP_MS)
}

/// Within a half float of `want`: the window keeps steps older than the model's encoder steps
/// as half floats (`src/tail.rs`), and this test's recent history reaches past them.
fn close(got: f32, want: f32) -> bool {
    (got - want).abs() <= want.abs().max(1.0) * predictor::domain::half::PRECISION
}

/// Every server has every step, all ending at the last one, and each value of each target is
/// the one sent. The recent history in KV `forecasts` is `STEPS` long: it covers the whole run.
async fn assert_every_step_as_sent(client: &async_nats::Client, snap: &Snapshot, names: &[String], t0: i64) {
    let last = t0 + (STEPS - 1) * STEP_MS;
    assert_eq!(snap.servers.len(), SERVERS);
    assert_eq!(snap.fleet.warming, 0, "nobody is warming up again");
    let mut bad = Vec::new();
    for s in &fleetbus::forecasts::of_snapshot(client, snap).await.expect("every server in KV forecasts") {
        let i = names.iter().position(|n| *n == s.server).expect("a server that was sent");
        assert_eq!(s.last_ms, last, "{}", s.server);
        assert!(s.warmup.is_none() && !s.forecast.is_empty());
        assert_eq!(s.recent.len(), Target::ALL.len(), "{}: every target's history", s.server);
        for h in &s.recent {
            assert_eq!(h.values.len(), STEPS as usize, "{} {:?}: every step of the run", s.server, h.target);
            for (k, got) in h.values.iter().enumerate() {
                let want = metrics(i, step_no(t0, k as i64)).target(h.target);
                if !matches!((got, want), (Some(g), Some(w)) if close(*g, w)) {
                    bad.push(format!("{} {:?} step {k}: {got:?}, sent {want:?}", s.server, h.target));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{} values differ from what was sent:\n{}", bad.len(), bad[..bad.len().min(20)].join("\n"));
}

/// The `windows` bucket, read back as a starting predictor reads it, holds every step of every
/// server as sent: every metric of the steps the model reads (its encoder's), the targets'
/// source metrics of the older ones (all the window keeps of them, `window.rs`).
async fn assert_bucket_as_sent(js: &jetstream::Context, names: &[String], t0: i64) {
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture("tiny.json")).unwrap()).unwrap();
    // As `run.rs` sizes it: the model's encoder steps or the statistical methods' history.
    let encoder = manifest["encoder_steps"].as_u64().unwrap() as usize;
    let capacity = encoder.max(predictor::methods::HISTORY_STEPS);
    let store = WindowStore::open(js, schemas::subjects::BUCKET_WINDOWS, capacity, Duration::from_secs(8 * 86_400)).await.unwrap();
    let mut reg = Registry::tiered(capacity, encoder);
    let sources: Vec<Metric> = Target::ALL.iter().map(|t| t.source_metric()).collect();
    assert!((encoder as i64) < STEPS, "the run covers steps before the encoder's too");
    assert_eq!(store.load(&mut reg, predictor::run::wall_ms()).await.unwrap(), SERVERS, "servers in the bucket");
    let mut bad = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let w = reg.server(reg.id_of(name).unwrap_or_else(|| panic!("{name} not in the bucket")));
        assert_eq!(w.last_closed(), Some(step_no(t0, STEPS - 1)), "{name}: the stored window ends at the last step");
        for s in 0..STEPS {
            let sent = metrics(i, step_no(t0, s));
            let Some(stored) = w.step(step_no(t0, s)) else {
                bad.push(format!("{name} step {s}: not in the window"));
                continue;
            };
            let kept = if s >= STEPS - encoder as i64 { Metric::ALL.to_vec() } else { sources.clone() };
            for m in kept {
                let (got, want) = (stored.get(m.index()), sent.get(m));
                if !matches!((got, want), (Some(g), Some(w)) if close(g, w)) {
                    bad.push(format!("{name} step {s} {}: stored {got:?}, sent {want:?}", m.name()));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{} stored values differ from what was sent:\n{}", bad.len(), bad[..bad.len().min(20)].join("\n"));
}

/// What the durable consumer had not acknowledged when the predictor died.
#[derive(Debug)]
struct AtKill {
    /// Batches in METRICS.
    published: u64,
    /// The consumer's ack floor (stream sequence): every batch up to it is acknowledged.
    acked: u64,
    /// Batches not acknowledged: not yet delivered, or delivered and never acked.
    unacked: u64,
    /// Of those, delivered to the predictor that died with them.
    delivered: u64,
}

async fn at_kill(js: &jetstream::Context) -> AtKill {
    let mut stream = js.get_stream("METRICS").await.unwrap();
    let published = stream.info().await.unwrap().state.last_sequence;
    let c = stream.consumer_info("predictor").await.unwrap();
    AtKill {
        published,
        acked: c.ack_floor.stream_sequence,
        unacked: c.num_pending + c.num_ack_pending as u64,
        delivered: c.num_ack_pending as u64,
    }
}

/// Every batch delivered and acknowledged: the ack floor is the last batch.
async fn consumer_drained(js: &jetstream::Context) {
    let mut stream = js.get_stream("METRICS").await.unwrap();
    let mut info = None;
    for _ in 0..100 {
        let end = stream.info().await.unwrap().state.last_sequence;
        let i = stream.consumer_info("predictor").await.unwrap();
        if i.num_pending == 0 && i.num_ack_pending == 0 && i.ack_floor.stream_sequence == end {
            assert_eq!(end, STEPS as u64, "one batch per step in METRICS");
            return;
        }
        info = Some((i.num_pending, i.num_ack_pending, i.ack_floor.stream_sequence, end));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("consumer not drained: (pending, ack pending, ack floor, last) = {info:?}");
}

/// Publishes steps `from..to`, one batch every `pace`, each stored before the next.
fn feed(js: jetstream::Context, names: Vec<String>, t0: i64, from: i64, to: i64, pace: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for s in from..to {
            publish_batch(&js, &step_batch(&names, t0 + s * STEP_MS, s as u64)).await;
            tokio::time::sleep(pace).await;
        }
    })
}

/// Publishes steps `from..to` back to back (acks awaited after the last publish).
async fn burst(js: &jetstream::Context, names: &[String], t0: i64, from: i64, to: i64) {
    let mut acks = Vec::new();
    for s in from..to {
        let payload = schemas::encode(&step_batch(names, t0 + s * STEP_MS, s as u64)).unwrap();
        acks.push(js.publish(schemas::subjects::metrics_batch(SOURCE), payload.into()).await.expect("publish"));
    }
    for ack in acks {
        ack.await.expect("stored in METRICS");
    }
}

/// Points the `windows` bucket's stream at other subjects (`true`), so that the predictor's
/// KV writes find no stream and fail, or back at its own (`false`).
async fn pause_bucket(js: &jetstream::Context, pause: bool) {
    let mut stream = js.get_stream(format!("KV_{}", schemas::subjects::BUCKET_WINDOWS)).await.unwrap();
    let mut config = stream.info().await.unwrap().config.clone();
    let bucket = if pause { "paused" } else { schemas::subjects::BUCKET_WINDOWS };
    config.subjects = vec![format!("$KV.{bucket}.>")];
    js.update_stream(config).await.unwrap();
}

/// Steps `0..BEFORE`, applied and acknowledged (their snapshot is out).
async fn first_steps(js: &jetstream::Context, snaps: &mut Snapshots, names: &[String], t0: i64) -> Snapshot {
    feed(js.clone(), names.to_vec(), t0, 0, BEFORE, Duration::from_millis(25)).await.unwrap();
    snaps.until(Duration::from_secs(30), |s| s.tick_ms == t0 + (BEFORE - 1) * STEP_MS && s.servers.len() == SERVERS).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_mid_stream_then_restarted_loses_nothing() {
    let nats = testkit::NatsServer::start().expect("nats-server");
    let client = nats.connect().await.unwrap();
    let js = jetstream::new(client.clone());
    let names = server_names(SERVERS);
    let t0 = t0();
    let mut snaps = Snapshots::subscribe(&client).await;
    let cfg = || {
        let mut c = config(&nats.url());
        c.recent_steps = STEPS as usize;
        c
    };

    let first = predictor::start(cfg()).await.expect("predictor starts");
    let before = first_steps(&js, &mut snaps, &names, t0).await;
    // The bucket stops taking writes; a burst comes, the predictor takes it, cannot store
    // its windows, and dies: batches taken, applied in memory, not stored.
    pause_bucket(&js, true).await;
    burst(&js, &names, t0, BEFORE, BEFORE + BURST).await;
    for _ in 0..100 {
        if at_kill(&js).await.delivered > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // it tries to store them, and fails
    first.abort();
    tokio::time::sleep(Duration::from_millis(300)).await; // an ack already on its way lands
    let k = at_kill(&js).await;
    pause_bucket(&js, false).await;
    eprintln!("at the kill: {k:?}");
    assert_eq!(k.published, (BEFORE + BURST) as u64, "{k:?}");
    assert_eq!(k.acked, BEFORE as u64, "only batches whose windows were stored are acknowledged: {k:?}");
    assert_eq!(k.unacked, BURST as u64, "{k:?}");
    assert!(k.delivered > 0, "the predictor had taken part of the burst: {k:?}");
    // More batches come while the predictor is down and after it is back.
    let feeder = feed(js.clone(), names.clone(), t0, BEFORE + BURST, STEPS, Duration::from_millis(25));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = predictor::start(cfg()).await.expect("predictor restarts");
    feeder.await.unwrap();

    let last = t0 + (STEPS - 1) * STEP_MS;
    let after = snaps.until(Duration::from_secs(30), |s| s.tick_ms == last && s.servers.len() == SERVERS).await;
    assert!(after.seq > before.seq, "snapshot numbers continue: {} then {}", before.seq, after.seq);
    assert_every_step_as_sent(&client, &after, &names, t0).await;
    consumer_drained(&js).await;
    second.stop().await.expect("graceful stop");
    assert_bucket_as_sent(&js, &names, t0).await;
}

struct Binary {
    child: Child,
    log: std::path::PathBuf,
}

impl Binary {
    fn start(url: &str, dir: &std::path::Path, n: usize) -> Binary {
        let log = dir.join(format!("predictor-{n}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_predictor"))
            .args(["--nats-url", url, "--model"])
            .arg(fixture("tiny.onnx"))
            .args(["--coalesce", "20ms", "--chunk-size", "16", "--intra-threads", "1"])
            .args(["--recent-steps", &STEPS.to_string()])
            .env("ORT_DYLIB_PATH", testkit::ort_dylib())
            .env("RUST_LOG", "info")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .expect("the predictor binary starts");
        Binary { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig}");
    }

    async fn wait_ready(&self) {
        for _ in 0..600 {
            if self.log().contains("predictor ready") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("predictor not ready:\n{}", self.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_killed_with_sigkill_then_restarted_loses_nothing() {
    let nats = testkit::NatsServer::start().expect("nats-server");
    let client = nats.connect().await.unwrap();
    let js = jetstream::new(client.clone());
    let dir = tempfile::tempdir().unwrap();
    let names = server_names(SERVERS);
    let t0 = t0();
    let mut snaps = Snapshots::subscribe(&client).await;

    let mut first = Binary::start(&nats.url(), dir.path(), 1);
    first.wait_ready().await;
    let before = first_steps(&js, &mut snaps, &names, t0).await;
    // Frozen (SIGSTOP) with its pull request open: the burst is stored, and the broker hands
    // part of it to a process that will never acknowledge it. Then SIGKILL.
    first.signal("-STOP");
    burst(&js, &names, t0, BEFORE, BEFORE + BURST).await;
    let mut k = at_kill(&js).await;
    for _ in 0..50 {
        if k.delivered > 0 && k.acked >= BEFORE as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        k = at_kill(&js).await;
    }
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    eprintln!("at the kill: {k:?}");
    assert_eq!(k.published, (BEFORE + BURST) as u64, "{k:?}");
    assert_eq!(k.acked, BEFORE as u64, "the steps before the burst, and only those, were acknowledged: {k:?}");
    assert_eq!(k.unacked, BURST as u64, "{k:?}");
    assert!(k.delivered > 0, "some of the burst was delivered to the predictor that died: {k:?}");
    let feeder = feed(js.clone(), names.clone(), t0, BEFORE + BURST, STEPS, Duration::from_millis(25));
    let mut second = Binary::start(&nats.url(), dir.path(), 2);
    second.wait_ready().await;
    feeder.await.unwrap();

    let last = t0 + (STEPS - 1) * STEP_MS;
    let after = snaps.until(Duration::from_secs(30), |s| s.tick_ms == last && s.servers.len() == SERVERS).await;
    assert!(after.seq > before.seq);
    assert_every_step_as_sent(&client, &after, &names, t0).await;
    consumer_drained(&js).await;

    // SIGTERM: finishes, flushes and exits cleanly.
    second.signal("-TERM");
    let status = second.child.wait().unwrap();
    assert!(status.success(), "exit {status}:\n{}", second.log());
    assert!(!second.log().contains("panicked"), "{}", second.log());
    assert_bucket_as_sent(&js, &names, t0).await;
}
