//! Crash and restart: the predictor dies mid-stream (its task aborted in-process, or the
//! binary killed with SIGKILL) while batches keep coming; started again, it rebuilds the
//! windows from KV, takes the unacked and new batches from the durable consumer, and the next
//! snapshot continues: no window lost, no batch skipped, snapshot numbers keep counting.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use common::*;
use schemas::{Snapshot, Target, STEP_MS};

const SERVERS: usize = 20;
const STEPS: i64 = 40;

/// Every server has a value at every one of its recent steps, and all of them end at `last`.
fn assert_no_gap(snap: &Snapshot, last: i64, window: usize) {
    assert_eq!(snap.servers.len(), SERVERS);
    assert_eq!(snap.fleet.warming, 0, "nobody is warming up again");
    for s in &snap.servers {
        assert_eq!(s.last_ms, last, "{}", s.server);
        let cpu = &s.recent.iter().find(|r| r.target == Target::Cpu).unwrap().values;
        assert_eq!(cpu.len(), window, "{}: a full window", s.server);
        assert!(cpu.iter().all(Option::is_some), "{}: a step is missing: {cpu:?}", s.server);
        assert!(s.warmup.is_none() && !s.forecast.is_empty());
    }
}

async fn consumer_drained(js: &jetstream::Context) {
    let stream = js.get_stream("METRICS").await.unwrap();
    let mut info = None;
    for _ in 0..50 {
        let i = stream.consumer_info("predictor").await.unwrap();
        if i.num_pending == 0 && i.num_ack_pending == 0 {
            return;
        }
        info = Some((i.num_pending, i.num_ack_pending));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("consumer not drained: (pending, ack pending) = {info:?}");
}

/// Publishes steps `from..to`, one batch every `pace`.
fn feed(js: jetstream::Context, names: Vec<String>, t0: i64, from: i64, to: i64, pace: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for s in from..to {
            publish_batch(&js, &step_batch(&names, t0 + s * STEP_MS, s as u64)).await;
            tokio::time::sleep(pace).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_mid_stream_then_restarted_loses_nothing() {
    let nats = testkit::NatsServer::start().expect("nats-server");
    let client = nats.connect().await.unwrap();
    let js = jetstream::new(client.clone());
    let names = server_names(SERVERS);
    let t0 = t0();
    let mut snaps = Snapshots::subscribe(&client).await;

    let first = predictor::start(config(&nats.url())).await.expect("predictor starts");
    let feeder = feed(js.clone(), names.clone(), t0, 0, STEPS, Duration::from_millis(25));
    let before = snaps.until(Duration::from_secs(20), |s| s.tick_ms >= t0 + 12 * STEP_MS).await;
    first.abort(); // mid-stream: batches keep arriving, some taken but not acked
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = predictor::start(config(&nats.url())).await.expect("predictor restarts");
    feeder.await.unwrap();

    let last = t0 + (STEPS - 1) * STEP_MS;
    let after = snaps.until(Duration::from_secs(20), |s| s.tick_ms == last && s.servers.len() == SERVERS).await;
    assert!(after.seq > before.seq, "snapshot numbers continue: {} then {}", before.seq, after.seq);
    assert_no_gap(&after, last, config(&nats.url()).recent_steps);
    consumer_drained(&js).await;
    second.stop().await.expect("graceful stop");
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

    async fn wait_ready(&self) {
        for _ in 0..300 {
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
    let feeder = feed(js.clone(), names.clone(), t0, 0, STEPS, Duration::from_millis(25));
    let before = snaps.until(Duration::from_secs(20), |s| s.tick_ms >= t0 + 12 * STEP_MS).await;
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    let mut second = Binary::start(&nats.url(), dir.path(), 2);
    second.wait_ready().await;
    feeder.await.unwrap();

    let last = t0 + (STEPS - 1) * STEP_MS;
    let after = snaps.until(Duration::from_secs(20), |s| s.tick_ms == last && s.servers.len() == SERVERS).await;
    assert!(after.seq > before.seq);
    assert_no_gap(&after, last, config(&nats.url()).recent_steps);
    consumer_drained(&js).await;

    // SIGTERM: finishes, flushes and exits cleanly.
    Command::new("kill").args(["-TERM", &second.child.id().to_string()]).status().unwrap();
    let status = second.child.wait().unwrap();
    assert!(status.success(), "exit {status}:\n{}", second.log());
    assert!(!second.log().contains("panicked"), "{}", second.log());
}
