//! Faults with real processes: the predictor killed with SIGKILL mid-stream, the broker
//! restarted under load, the dashboard without NATS, and stuck dashboard clients.

use std::time::{Duration, Instant};

use e2e::{all_forecast, NatsServer, Service, SnapshotWatch};
use schemas::{Snapshot, Target};

const SERVERS: usize = 20;
const TICK: &str = "300ms";

struct Stack {
    dir: tempfile::TempDir,
    nats: NatsServer,
    predictor: Service,
    generator: Service,
}

async fn stack() -> anyhow::Result<Stack> {
    let dir = tempfile::tempdir()?;
    let nats = NatsServer::start()?;
    let url = nats.url();
    let env = [("NATS_URL", url.as_str())];
    let predictor = Service::start(dir.path(), "predictor", &[], &env).await?;
    let n = SERVERS.to_string();
    let generator = Service::start(dir.path(), "generator", &["--servers", &n, "--tick", TICK, "--seed", "5"], &env).await?;
    Ok(Stack { dir, nats, predictor, generator })
}

/// Steps of the recent CPU history where most servers have no value: a lost step shows up
/// as a hole shared by the whole fleet (an offline server only leaves its own).
fn fleet_holes(snap: &Snapshot) -> Vec<usize> {
    let rows: Vec<&Vec<Option<f32>>> = snap
        .servers
        .iter()
        .filter_map(|s| s.recent.iter().find(|h| h.target == Target::Cpu).map(|h| &h.values))
        .collect();
    let len = rows.iter().map(|r| r.len()).min().unwrap_or(0);
    (0..len).filter(|&k| rows.iter().filter(|r| r[r.len() - len + k].is_none()).count() * 2 > rows.len()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictor_killed_mid_stream_loses_nothing() -> anyhow::Result<()> {
    let mut st = stack().await?;
    let client = st.nats.connect().await?;
    let mut watch = SnapshotWatch::new(&client).await?;
    let before = watch.until(Duration::from_secs(60), |s| all_forecast(s, SERVERS)).await?;

    st.predictor.kill9().await?;
    // The generator keeps publishing while the predictor is dead; JetStream holds the batches.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restarted = Instant::now();
    st.predictor.restart().await?;

    let after = watch
        .until(Duration::from_secs(10), |s| s.tick_ms > before.tick_ms && all_forecast(s, SERVERS))
        .await?;
    assert!(restarted.elapsed() < Duration::from_secs(10), "snapshots resumed in {:?}", restarted.elapsed());
    // Windows came back from KV: nobody is warming up again, and no step is missing.
    assert_eq!(after.fleet.warming, 0);
    // The batches published while the predictor was dead were all processed: a few ticks
    // later the recent history has no fleet-wide hole.
    let later = watch.until(Duration::from_secs(10), |s| s.tick_ms >= after.tick_ms + 2 * schemas::STEP_MS).await?;
    assert_eq!(fleet_holes(&later), Vec::<usize>::new(), "steps lost across the kill");
    drop(st.dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_under_load_resumes_with_state() -> anyhow::Result<()> {
    let mut st = stack().await?;
    let client = st.nats.connect().await?;
    let mut watch = SnapshotWatch::new(&client).await?;
    let before = watch.until(Duration::from_secs(60), |s| all_forecast(s, SERVERS)).await?;

    st.nats.restart()?;
    let restarted = Instant::now();
    let after = watch
        .until(Duration::from_secs(15), |s| s.tick_ms > before.tick_ms && all_forecast(s, SERVERS))
        .await?;
    assert!(restarted.elapsed() < Duration::from_secs(15), "resumed in {:?}", restarted.elapsed());
    // KV state survived the restart: no server went back to warming up.
    assert_eq!(after.fleet.warming, 0);
    assert!(!st.predictor.log_text().contains("panicked"));
    assert!(!st.generator.log_text().contains("panicked"));
    Ok(())
}
