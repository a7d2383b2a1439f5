//! The whole path into Debian's `prometheus-alertmanager` with nothing hand-made: the real
//! generator's `critical` scenario -> the real predictor's forecasts and alert book ->
//! `alerts.>` in stream HISTORY -> the notifier -> Alertmanager's API v2. Every service runs as
//! a process with its least-privilege NATS user (deploy/nats-auth.conf).
//!
//! `GET /api/v2/alerts` lists the scenario's alerts with the right labels, holds exactly the
//! set of alerts the predictor's snapshot has active, and after the generator returns to
//! `healthy` the scenario's alerts resolve there as the predictor resolves them (the notifier
//! posts `endsAt`; Alertmanager's own expiry, 4 resend periods = 4 min, is longer than the
//! wait).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use e2e::{all_forecast, auth_server, url_for, Service, SnapshotWatch};
use futures::StreamExt;
use schemas::{AlertEvent, Level, Scenario, ScenarioReply, ScenarioRequest, Snapshot, Target};
use testkit::alertmanager::Alertmanager;

const SERVERS: usize = 30;

type Key = (String, String, String);

/// `(server, target, severity)` of every alert Alertmanager lists as active, after checking
/// each one's labels and annotations.
fn firing(am: &Alertmanager) -> anyhow::Result<BTreeSet<Key>> {
    let alerts = am.alerts()?;
    let mut out = BTreeSet::new();
    for a in alerts.as_array().context("alerts is not an array")? {
        let l = &a["labels"];
        let s = |k: &str| l[k].as_str().unwrap_or("").to_string();
        if s("alertname") != "FleetcastPredictedBreach" {
            bail!("alertname: {l}");
        }
        if !Target::ALL.iter().any(|t| t.name() == s("target")) {
            bail!("target: {l}");
        }
        if !["warning", "critical"].contains(&s("severity").as_str()) {
            bail!("severity: {l}");
        }
        if s("server").is_empty() || s("profile").is_empty() {
            bail!("server/profile: {l}");
        }
        let ann = &a["annotations"];
        for k in ["summary", "predicted", "threshold", "minutes_ahead", "basis", "dashboard"] {
            if !ann[k].is_string() {
                bail!("annotation {k} missing: {ann}");
            }
        }
        out.insert((s("server"), s("target"), s("severity")));
    }
    Ok(out)
}

/// The snapshot's active alerts as Alertmanager labels them.
fn active(snap: &Snapshot) -> BTreeSet<Key> {
    snap.servers
        .iter()
        .flat_map(|s| s.alerts.iter().map(move |a| (s.server.clone(), a.target.name().to_string(), a.severity.name().to_string())))
        .collect()
}

async fn scenario(client: &async_nats::Client, to: Scenario) -> anyhow::Result<ScenarioReply> {
    let req = schemas::encode(&ScenarioRequest { scenario: to })?;
    let reply = client.request(schemas::subjects::CONTROL_SCENARIO_SET, req.into()).await?;
    let reply: ScenarioReply = schemas::decode(&reply.payload)?;
    anyhow::ensure!(reply.scenario == to, "{reply:?}");
    Ok(reply)
}

/// Polls until Alertmanager lists exactly what the latest snapshot has active (a tick may
/// land between the two reads, so it tries again on the next one).
async fn until_same_set(watch: &mut SnapshotWatch, am: &Alertmanager, timeout: Duration) -> anyhow::Result<BTreeSet<Key>> {
    let deadline = Instant::now() + timeout;
    let mut last = (BTreeSet::new(), BTreeSet::new());
    while Instant::now() < deadline {
        let snap = watch.next(Duration::from_secs(30)).await?;
        let want = active(&snap);
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let got = firing(am)?;
            if got == want {
                return Ok(got);
            }
            last = (want.clone(), got);
        }
    }
    bail!("Alertmanager never held the snapshot's active set within {timeout:?}:\nsnapshot {:?}\nalertmanager {:?}", last.0, last.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_scenario_alerts_reach_alertmanager_and_resolve() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let nats = auth_server()?;
    let env = |user: &str| [("NATS_URL", url_for(&nats, user))];
    let client = fleetbus::connect("test", &url_for(&nats, "admin")).await?;
    let mut watch = SnapshotWatch::new(&client).await?;
    let am = Alertmanager::start()?;

    let _predictor = Service::start(dir.path(), "predictor", &[], &env("predictor")).await?;
    let servers = SERVERS.to_string();
    let gen_args = ["--servers", &servers, "--tick", "500ms", "--seed", "11"];
    let _generator = Service::start(dir.path(), "generator", &gen_args, &env("generator")).await?;
    let am_url = am.url();
    let notifier_args = ["--alertmanager-url", &am_url, "--retry-max", "500ms", "--dashboard-url", "http://dash.example:8080"];
    let notifier = Service::start(dir.path(), "notifier", &notifier_args, &env("notifier")).await?;

    watch.until(Duration::from_secs(120), |s| all_forecast(s, SERVERS)).await?;
    let reply = scenario(&client, Scenario::Critical).await?;
    assert!(!reply.affected.is_empty());
    let affected: BTreeSet<&str> = reply.affected.iter().map(String::as_str).collect();

    // Within the ramp (and generous slack for two shared cores), the affected servers have
    // critical alerts in Alertmanager, with the right labels.
    let ramp = Duration::from_millis(500) * (reply.ramp_steps + 40);
    let deadline = Instant::now() + ramp + Duration::from_secs(60);
    let mut scenario_alerts: BTreeSet<Key> = BTreeSet::new();
    loop {
        let now = firing(&am)?;
        scenario_alerts.extend(now.iter().filter(|(s, _, _)| affected.contains(s.as_str())).cloned());
        let critical: BTreeSet<&str> =
            now.iter().filter(|(s, _, sev)| sev == "critical" && affected.contains(s.as_str())).map(|(s, _, _)| s.as_str()).collect();
        if critical.len() * 2 >= affected.len() {
            break;
        }
        if Instant::now() > deadline {
            bail!("critical alerts on {critical:?} of {affected:?}; listed {now:?}\nnotifier:\n{}", notifier.log_tail(30));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The dashboard link points at the server's page.
    let listed = am.alerts()?;
    let one = listed.as_array().and_then(|a| a.first()).context("no alert")?;
    let server = one["labels"]["server"].as_str().unwrap_or("");
    assert_eq!(one["annotations"]["dashboard"].as_str(), Some(format!("http://dash.example:8080/servers/{server}").as_str()));

    // What Alertmanager holds is exactly what the predictor has active.
    let at_peak = until_same_set(&mut watch, &am, Duration::from_secs(90)).await?;
    let peak = at_peak.iter().filter(|k| affected.contains(k.0.as_str())).count();
    assert!(peak > 0);

    // Back to healthy: the scenario's alerts resolve in Alertmanager as the predictor resolves
    // them (the notifier posts `endsAt`), and it keeps holding exactly the predictor's set.
    // Not all of them within the wait: some affected servers keep predicted alerts for hours
    // of simulated time after the switch (see the report of issue 13).
    // The resolve path on its own: every alert the predictor resolves (and has not opened
    // again since) is gone from Alertmanager. New spontaneous incidents after `healthy` may
    // open other alerts, so "all resolve" is not asserted.
    let mut events = client.subscribe("alerts.>").await?;
    client.flush().await?;
    scenario(&client, Scenario::Healthy).await?;
    let mut resolved: BTreeSet<Key> = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(200);
    loop {
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(1), events.next()).await {
            let e: AlertEvent = schemas::decode(&msg.payload).context("an alert event")?;
            let key = (e.alert.server.clone(), e.alert.target.name().to_string(), e.alert.severity.name().to_string());
            if msg.subject.starts_with("alerts.resolved.") {
                resolved.insert(key);
            } else {
                resolved.remove(&key);
            }
        }
        let same = until_same_set(&mut watch, &am, Duration::from_secs(90)).await?;
        let left = same.iter().filter(|k| affected.contains(k.0.as_str())).count();
        let still_firing: Vec<&Key> = resolved.iter().filter(|k| same.contains(*k)).collect();
        if left < peak && !resolved.is_empty() && still_firing.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "after healthy: {left} of the scenario's {peak} alerts left; resolved by the predictor {resolved:?}, of which still in Alertmanager {still_firing:?}; listed {same:?}\nnotifier:\n{}",
                notifier.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(scenario_alerts.iter().any(|(_, _, sev)| sev == Level::Critical.name()), "{scenario_alerts:?}");
    Ok(())
}
