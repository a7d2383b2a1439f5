//! Two predictor processes share a fleet of 4 partitions (`--partitions 4`, the generator
//! publishing by partition too). One is killed with SIGKILL mid-stream: within 30 s the other
//! publishes every partition again, nobody warms up again, every value it holds is the one the
//! generator sent (no acknowledged batch or window lost), and no alert is opened twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use e2e::{sent_metrics, window_mismatches, NatsServer, Service};
use futures::StreamExt;
use schemas::{partition, AlertEvent, Snapshot, SnapshotAssembler};

const SERVERS: usize = 24;
const PARTITIONS: &str = "4";

/// The newest whole snapshot of each partition, from `predictions.current.*`.
struct Watch {
    sub: async_nats::Subscriber,
    asm: SnapshotAssembler,
    newest: HashMap<u16, Snapshot>,
}

impl Watch {
    async fn new(client: &async_nats::Client) -> anyhow::Result<Watch> {
        Ok(Watch { sub: client.subscribe("predictions.current.*").await?, asm: SnapshotAssembler::default(), newest: HashMap::new() })
    }

    /// Reads until the merge of the partitions' newest snapshots satisfies `done` and each of
    /// them was published at or after `since_ms`; returns the merge.
    async fn until(&mut self, within: Duration, what: &str, since_ms: i64, done: impl Fn(&Snapshot) -> bool) -> anyhow::Result<Snapshot> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(m) = partition::merge(self.newest.values().cloned().collect()) {
                let fresh = self.newest.values().all(|s| s.published_ms >= since_ms);
                if self.newest.len() == 4 && fresh && done(&m) {
                    return Ok(m);
                }
            }
            let Ok(Some(msg)) = tokio::time::timeout_at(deadline, self.sub.next()).await else {
                let seen: Vec<_> = self.newest.iter().map(|(p, s)| (*p, s.tick_ms, s.servers.len())).collect();
                anyhow::bail!("{what}: not within {within:?}; newest (partition, tick, servers): {seen:?}");
            };
            if let Some(whole) = self.asm.push(schemas::decode(&msg.payload)?) {
                let p = whole.partition.map_or(u16::MAX, |p| p.index);
                self.newest.insert(p, whole);
            }
        }
    }
}

fn ready(s: &Snapshot) -> bool {
    s.servers.len() == SERVERS && s.fleet.warming == 0 && s.servers.iter().all(|x| x.forecast_count() > 0)
}

/// A broker, two partitioned predictors `a` and `b` (each logging in its own directory) and a
/// partitioned generator sending a step every `tick`; the watch subscribed before any of them.
struct Pair {
    dirs: (tempfile::TempDir, tempfile::TempDir),
    nats: NatsServer,
    client: async_nats::Client,
    watch: Watch,
    /// `alerts.>` from before the first batch.
    alerts: async_nats::Subscriber,
    a: Service,
    b: Service,
    generator: Service,
}

async fn pair(tick: &str, extra: &[&str]) -> anyhow::Result<Pair> {
    let dirs = (tempfile::tempdir()?, tempfile::tempdir()?);
    let nats = NatsServer::start()?;
    let url = nats.url();
    let env = [("NATS_URL", url.as_str()), ("FLEETCAST_PARTITIONS", PARTITIONS)];
    let client = nats.connect().await?;
    let watch = Watch::new(&client).await?;
    let alerts = client.subscribe("alerts.>").await?;
    let args = |me: &'static str| [extra, &["--heartbeat", "300ms", "--member-ttl", "3s", "--instance", me]].concat();
    let a = Service::start(dirs.0.path(), "predictor", &args("a"), &env).await?;
    let b = Service::start(dirs.1.path(), "predictor", &args("b"), &env).await?;
    // Both in the member list before the first batch, so neither takes every partition first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let n = SERVERS.to_string();
    let generator = Service::start(dirs.0.path(), "generator", &["--servers", &n, "--tick", tick, "--seed", "5"], &env).await?;
    Ok(Pair { dirs, nats, client, watch, alerts, a, b, generator })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_predictors_partitions_resume_on_the_other() -> anyhow::Result<()> {
    let Pair { dirs, nats, client, mut watch, mut alerts, a, mut b, generator } = pair("300ms", &["--recent-steps", "300"]).await?;
    let before = watch.until(Duration::from_secs(90), "every partition forecast", 0, ready).await?;
    let held = |log: &str| log.matches("holding the partition").count();
    let (ha, hb) = (held(&a.log_text()), held(&b.log_text()));
    assert!(ha >= 1 && hb >= 1, "both predictors hold partitions: a {ha}, b {hb}");

    let killed = Instant::now();
    b.kill9().await?;
    let kill_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    // Steps the generator sent by the kill; every server must get past them.
    let (sent_by_kill, _) = sent_metrics(&client).await?;
    let last_sent = sent_by_kill.keys().map(|(_, step)| *step).max().unwrap_or(0) * schemas::STEP_MS;
    let after = watch
        .until(Duration::from_secs(30), "every partition after the kill", kill_ms, |m| {
            ready(m) && m.servers.iter().all(|s| s.last_ms > last_sent.max(before.tick_ms))
        })
        .await?;
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(30), "resumed in {took:?}");
    let took_over = a.log_text().matches("holding the partition").count();
    assert!(took_over > ha, "the survivor took the killed one's partitions (it held {ha}, now {took_over})");
    assert_eq!(after.fleet.warming, 0, "windows came back from KV");

    // Every value held, across the kill, is the one the generator sent.
    let stored = fleetbus::forecasts::of_snapshot(&client, &after).await?;
    let (sent, _) = sent_metrics(&client).await?;
    let (compared, bad) = window_mismatches(&stored, &sent);
    assert!(bad.is_empty(), "{} values differ from what was sent, e.g.\n{}", bad.len(), bad[..bad.len().min(10)].join("\n"));
    assert!(compared > SERVERS * 20, "only {compared} values compared");

    // No alert opened twice without a resolve in between.
    let mut events: Vec<AlertEvent> = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(300), alerts.next()).await {
        events.push(schemas::decode(&msg.payload)?);
    }
    if let Some(e) = schemas::alert::reopened(&events) {
        panic!("alert {} opened again at {} while open ({} events)", e.alert.id, e.tick_ms, events.len());
    }
    println!("partitions resumed on the surviving predictor {took:?} after SIGKILL; {compared} values compared");
    drop((a, generator, nats, dirs));
    Ok(())
}

/// Rolling restart: each of the two predictors is stopped (SIGTERM: it finishes its messages,
/// hands its partitions over and leaves) and started again, one after the other, while the
/// generator sends a step a second. No partition's snapshots skip more than 2 steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_leaves_no_gap_over_two_ticks() -> anyhow::Result<()> {
    let Pair { dirs, nats, client, mut watch, mut a, mut b, generator, .. } = pair("1s", &[]).await?;
    watch.until(Duration::from_secs(90), "every partition forecast", 0, ready).await?;
    // Caught up with the generator's start (its first steps come as a backlog, which one tick
    // takes at once): every partition at a step sent after the fleet was ready.
    let (sent, _) = sent_metrics(&client).await?;
    let caught_up = sent.keys().map(|(_, step)| *step).max().unwrap_or(0) * schemas::STEP_MS;
    watch.until(Duration::from_secs(30), "every partition caught up", 0, |m| m.servers.iter().all(|s| s.last_ms >= caught_up)).await?;

    // Every whole snapshot per partition from here on: its step (tick_ms), in arrival order.
    let ticks: std::sync::Arc<std::sync::Mutex<HashMap<u16, Vec<i64>>>> = Default::default();
    let mut sub = client.subscribe("predictions.current.*").await?;
    let into = ticks.clone();
    let collector = tokio::spawn(async move {
        let mut asm = SnapshotAssembler::default();
        while let Some(msg) = sub.next().await {
            let Ok(part) = schemas::decode::<Snapshot>(&msg.payload) else { continue };
            if let Some(whole) = asm.push(part) {
                let p = whole.partition.map_or(u16::MAX, |p| p.index);
                into.lock().unwrap_or_else(|e| e.into_inner()).entry(p).or_default().push(whole.tick_ms);
            }
        }
    });
    for p in [&mut a, &mut b] {
        let status = p.terminate().await?;
        assert!(status.success(), "a graceful stop: {status}\n{}", p.log_tail(20));
        p.restart().await?;
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    watch.until(Duration::from_secs(30), "every partition after the rolling restart", since, ready).await?;
    collector.abort();
    let ticks = ticks.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(ticks.len(), 4, "every partition published during the restarts: {:?}", ticks.keys());
    for (p, t) in &ticks {
        let widest = t.windows(2).map(|w| (w[1] - w[0]) / schemas::STEP_MS).max().unwrap_or(0);
        assert!(widest <= 2, "partition {p}: snapshots skipped {widest} steps during the rolling restart: {t:?}");
        assert!(t.len() >= 8, "partition {p}: only {} snapshots over the restarts", t.len());
    }
    let widest = ticks.values().flat_map(|t| t.windows(2).map(|w| (w[1] - w[0]) / schemas::STEP_MS)).max();
    println!("rolling restart: widest step jump between a partition's snapshots {widest:?}");
    drop((generator, nats, dirs));
    Ok(())
}
