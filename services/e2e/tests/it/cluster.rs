//! The pipeline on a real 3-node NATS cluster (three nats-server processes with routes,
//! JetStream, the least-privilege users of deploy/nats-auth.conf) with every stream, the
//! consumer and the KV buckets at R3: one node is killed with SIGKILL under load (the node the
//! services are connected to, leading the METRICS stream and the predictor's consumer) and
//! restarted. The pipeline goes on without losing a step, the services reconnect by themselves,
//! and the restarted node catches up.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use e2e::{all_forecast, Service, SnapshotWatch, USERS};
use schemas::{Snapshot, Target};
use testkit::NatsCluster;

const SERVERS: usize = 30;
const TICK: &str = "300ms";
/// Every stream and bucket the predictor creates.
/// The generator's connection name (`fleetcast-generator-<source>`).
const GENERATOR_CLIENT: &str = "fleetcast-generator-generator";
const STREAMS: [&str; 6] = ["METRICS", "PREDICTIONS", "HISTORY", "KV_windows", "KV_forecasts", "KV_state"];

fn password(user: &str) -> &'static str {
    USERS.iter().find(|(_, u, _)| *u == user).map(|(_, _, p)| *p).unwrap_or("")
}

/// Steps of the recent CPU history where most servers have no value: a lost step shows up as a
/// hole shared by the whole fleet (as in faults.rs).
fn fleet_holes(forecasts: &[schemas::ServerForecast]) -> Vec<usize> {
    let rows: Vec<&Vec<Option<f32>>> =
        forecasts.iter().filter_map(|s| s.recent.iter().find(|h| h.target == Target::Cpu).map(|h| &h.values)).collect();
    let len = rows.iter().map(|r| r.len()).min().unwrap_or(0);
    (0..len).filter(|&k| rows.iter().filter(|r| r[r.len() - len + k].is_none()).count() * 2 > rows.len()).collect()
}

/// Moves the leader of a stream (`consumer` None) or of a consumer to node `want`, by asking the
/// current leader to step down with `want` preferred (nats-server >= 2.11). Best effort: returns
/// whether `want` leads afterwards.
async fn lead_on(cluster: &NatsCluster, js: &jetstream::Context, stream: &str, consumer: Option<&str>, want: usize) -> bool {
    let leader = |c: &NatsCluster| match consumer {
        None => c.stream(want, stream).ok().flatten().map(|s| s.leader),
        Some(name) => c.consumer(want, stream, name).ok().flatten().map(|s| s.leader),
    };
    let subject = match consumer {
        None => format!("STREAM.LEADER.STEPDOWN.{stream}"),
        Some(name) => format!("CONSUMER.LEADER.STEPDOWN.{stream}.{name}"),
    };
    for _ in 0..10 {
        let now = leader(cluster);
        if now.as_deref() == Some(cluster.name(want)) {
            return true;
        }
        if now.as_deref().is_some_and(|l| !l.is_empty()) {
            let body = serde_json::json!({ "placement": { "preferred": cluster.name(want) } });
            let reply: Result<serde_json::Value, _> = js.request(subject.clone(), &body).await;
            if let Ok(v) = reply {
                if v.get("error").is_some() {
                    eprintln!("stepdown {subject}: {v}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    leader(cluster).as_deref() == Some(cluster.name(want))
}

/// Reads snapshots until `pred` holds, checking every whole snapshot seen on the way for a
/// fleet-wide hole in its servers' recent history, read from KV `forecasts` (a lost step stays
/// visible for `recent_steps` ticks). While a node is down KV may not answer for a moment: such
/// a snapshot is counted in `unread` and not checked (the next readable one covers its steps).
async fn until_checked(
    watch: &mut SnapshotWatch,
    timeout: Duration,
    (seen, unread): (&mut usize, &mut usize),
    mut pred: impl FnMut(&Snapshot) -> bool,
) -> anyhow::Result<Snapshot> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        anyhow::ensure!(!left.is_zero(), "no matching snapshot within {timeout:?}");
        let snap = watch.next(left).await?;
        if snap.servers.len() == SERVERS {
            let read = tokio::time::timeout(Duration::from_secs(2), fleetbus::forecasts::of_snapshot(watch.client(), &snap)).await;
            match read {
                Ok(Ok(stored)) => {
                    *seen += 1;
                    let holes = fleet_holes(&stored);
                    anyhow::ensure!(holes.is_empty(), "tick {}: fleet-wide holes at recent steps {holes:?}", snap.tick_ms);
                }
                _ => *unread += 1,
            }
        }
        if pred(&snap) {
            return Ok(snap);
        }
    }
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_killed_under_load_loses_nothing_and_catches_up() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let conf = std::fs::read_to_string(testkit::workspace_root().join("deploy/nats-auth.conf"))?;
    let env: Vec<(&str, &str)> = USERS.iter().map(|(var, _, pw)| (*var, *pw)).collect();
    let mut cluster = NatsCluster::start_with_config(3, &conf, &env)?;
    let result = run(&mut cluster, dir.path()).await;
    if result.is_err() {
        // What the brokers said about connections (slow consumers, closed clients, elections).
        for i in 0..cluster.len() {
            let log = cluster.log(i);
            let lines: Vec<&str> = log.lines().filter(|l| l.contains("[WRN]") || l.contains("[ERR]") || l.contains("Slow")).collect();
            eprintln!(
                "--- {} ({} warnings/errors, last 20)\n{}",
                cluster.name(i),
                lines.len(),
                lines[lines.len().saturating_sub(20)..].join("\n")
            );
        }
    }
    result
}

async fn run(cluster: &mut NatsCluster, dir: &std::path::Path) -> anyhow::Result<()> {
    // The services are given n1 only and learn n2 and n3 from the cluster; the observer
    // watches from n3.
    let url = |user: &str| cluster.url_as(0, user, password(user));
    let predictor_env = [("NATS_URL", url("predictor")), ("PREDICTOR_REPLICAS", "3".to_string())];
    let mut predictor = Service::start(dir, "predictor", &[], &predictor_env).await?;
    let n = SERVERS.to_string();
    let gen_args = ["--servers", n.as_str(), "--tick", TICK, "--seed", "5"];
    let mut generator = Service::start(dir, "generator", &gen_args, &[("NATS_URL", url("generator"))]).await?;
    let admin = fleetbus::connect("cluster-test", &cluster.url_as(2, "admin", password("admin"))).await?;
    let js = jetstream::new(admin.clone());
    let mut watch = SnapshotWatch::new(&admin).await?;
    let (mut seen, mut unread) = (0usize, 0usize);

    let before = until_checked(&mut watch, Duration::from_secs(120), (&mut seen, &mut unread), |s| all_forecast(s, SERVERS)).await?;

    // R3 everywhere: every node holds a replica of every stream and bucket.
    for name in STREAMS {
        let info = js.get_stream(name).await?.get_info().await?;
        assert_eq!(info.config.num_replicas, 3, "{name} replicas");
        for node in 0..3 {
            assert!(cluster.stream(node, name)?.is_some(), "{} holds no replica of {name}", cluster.name(node));
        }
    }
    let consumer = js.get_stream("METRICS").await?.consumer_info("predictor").await?;
    assert_eq!(consumer.config.num_replicas, 0, "the consumer has its stream's replicas");
    assert_eq!(consumer.cluster.as_ref().map(|c| c.replicas.len()), Some(2), "consumer replicas: {:?}", consumer.cluster);

    // The worst node to lose: the one the predictor is connected to, made leader of METRICS,
    // of the predictor's consumer and of KV windows (best effort: the test holds wherever the
    // leaders are; it prints where they were).
    let victim = cluster.node_of("predictor").ok_or_else(|| anyhow::anyhow!("the predictor is connected to no node"))?;
    let metrics_led = lead_on(cluster, &js, "METRICS", None, victim).await;
    let consumer_led = lead_on(cluster, &js, "METRICS", Some("predictor"), victim).await;
    let windows_led = lead_on(cluster, &js, "KV_windows", None, victim).await;
    let generator_there = cluster.node_of(GENERATOR_CLIENT) == Some(victim);
    eprintln!(
        "victim {}: predictor connected, generator connected: {generator_there}, leads METRICS: {metrics_led}, consumer: {consumer_led}, KV_windows: {windows_led}",
        cluster.name(victim)
    );
    let (predictor_pid, generator_pid) = (predictor.pid(), generator.pid());
    let disconnects = |s: &Service| count(&s.log_text(), "disconnected from NATS");
    let (p_disc, g_disc) = (disconnects(&predictor), disconnects(&generator));

    // A little more load first, then SIGKILL the node mid-stream.
    let mid = until_checked(&mut watch, Duration::from_secs(60), (&mut seen, &mut unread), |s| {
        s.tick_ms >= before.tick_ms + 2 * schemas::STEP_MS
    })
    .await?;
    cluster.kill(victim);
    let killed = Instant::now();

    // The pipeline goes on on two nodes: new ticks for every server while the node is down,
    // beyond whatever was already on its way when it died (read and checked first).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut at_kill = mid.tick_ms;
    while let Ok(s) = until_checked(&mut watch, Duration::from_millis(300), (&mut seen, &mut unread), |_| true).await {
        at_kill = at_kill.max(s.tick_ms);
    }
    let during = until_checked(&mut watch, Duration::from_secs(180), (&mut seen, &mut unread), |s| {
        s.tick_ms >= at_kill + 5 * schemas::STEP_MS && all_forecast(s, SERVERS)
    })
    .await?;
    eprintln!("5 more ticks {:?} after the kill (tick {} -> {} -> {})", killed.elapsed(), mid.tick_ms, at_kill, during.tick_ms);
    // The services reconnected by themselves: the same processes, now clients of the others.
    assert_eq!((predictor.pid(), generator.pid()), (predictor_pid, generator_pid));
    assert!(disconnects(&predictor) > p_disc, "the predictor saw no disconnect:\n{}", predictor.log_tail(30));
    if generator_there {
        assert!(disconnects(&generator) > g_disc, "the generator saw no disconnect:\n{}", generator.log_tail(30));
    }
    for client in ["predictor", GENERATOR_CLIENT] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while cluster.node_of(client).is_none_or(|i| i == victim) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let on = cluster.node_of(client);
        assert!(on.is_some_and(|i| i != victim), "{client} is not connected to a surviving node ({on:?})");
    }

    // The node comes back on its ports and store, under load.
    cluster.restart(victim)?;
    let restarted = Instant::now();
    let after = until_checked(&mut watch, Duration::from_secs(180), (&mut seen, &mut unread), |s| {
        s.tick_ms >= during.tick_ms + 5 * schemas::STEP_MS && all_forecast(s, SERVERS)
    })
    .await?;
    assert_eq!(after.fleet.warming, 0, "windows survived: nobody warms up again");

    // Quiesce: the generator stops (its last tick acknowledged), then every published batch is
    // applied: the consumer's ack floor reaches the stream's last sequence, nothing pending.
    generator.terminate().await?;
    let deadline = Instant::now() + Duration::from_secs(180);
    let (metrics_last, acked) = loop {
        let leader = cluster.stream_leader("METRICS").unwrap_or((victim + 1) % 3);
        let last = cluster.stream(leader, "METRICS")?.map_or(0, |s| s.last_seq);
        let c = cluster.consumer(leader, "METRICS", "predictor")?;
        if let Some(c) = &c {
            if last > 0 && c.ack_floor_stream_seq == last && c.num_pending == 0 && c.num_ack_pending == 0 {
                break (last, c.clone());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not every batch applied: METRICS last seq {last}, consumer {c:?}\n{}",
            predictor.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("METRICS last seq {metrics_last}; consumer {acked:?}");

    // The restarted node caught up: its own copy of every stream ends at the same sequence as
    // the others'.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut lag = Vec::new();
        for name in STREAMS {
            let seqs: Vec<Option<u64>> = (0..3).map(|i| cluster.stream(i, name).ok().flatten().map(|s| s.last_seq)).collect();
            if seqs.iter().any(|s| s.is_none() || *s != seqs[0]) {
                lag.push(format!("{name}: {seqs:?}"));
            }
        }
        if lag.is_empty() {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{} did not catch up: {lag:?}", cluster.name(victim));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let replica = cluster.stream(victim, "METRICS")?.ok_or_else(|| anyhow::anyhow!("the victim holds no METRICS"))?;
    assert!(replica.last_seq >= metrics_last, "the victim's METRICS ends at {} < {metrics_last}", replica.last_seq);
    eprintln!(
        "{} caught up {:?} after its restart; {seen} snapshots checked, none with a lost step ({unread} taken while KV did not answer)",
        cluster.name(victim),
        restarted.elapsed()
    );

    anyhow::ensure!(seen > 2 * unread, "only {seen} snapshots checked, {unread} not readable");
    for svc in [&predictor, &generator] {
        assert!(!svc.log_text().contains("panicked"), "{} panicked:\n{}", svc.name, svc.log_tail(40));
    }
    predictor.terminate().await?;
    Ok(())
}
