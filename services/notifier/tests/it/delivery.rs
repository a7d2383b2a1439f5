//! Opened, updated and resolved events reach Alertmanager with the right labels and
//! annotations; a severity change replaces the label set; a bad event is counted and skipped
//! without holding up the ones behind it.

use schemas::{AlertState, Level, Target};
use testkit::alertmanager::Alertmanager;
use testkit::NatsServer;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_alertmanager_with_labels_and_resolve() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let js = async_nats::jetstream::new(nats.connect().await?);
    create_history(&js).await?;
    let am = Alertmanager::start()?;
    let notifier = Notifier::start(&nats.url(), &[&am], &[]).await?;

    open_three(&js, &am).await?;

    // Labels and annotations of one, as Alertmanager stores them.
    let all = am.alerts()?;
    let db = all
        .as_array()
        .and_then(|a| a.iter().find(|x| x["labels"]["server"] == "ppdb001"))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("ppdb001 missing in {all}"))?;
    assert_eq!(db["labels"]["profile"], "database", "{db}");
    assert_eq!(db["annotations"]["basis"], "P50", "{db}");
    assert_eq!(db["annotations"]["threshold"], "90", "{db}");
    assert_eq!(db["annotations"]["predicted"], "96.5", "{db}");
    assert_eq!(db["annotations"]["minutes_ahead"], "30", "{db}");
    assert_eq!(db["annotations"]["dashboard"], "http://dash.example:8080/servers/ppdb001", "{db}");
    assert_eq!(db["generatorURL"], "http://dash.example:8080/servers/ppdb001", "{db}");

    // A bad event in the middle is skipped; the ones after it still arrive.
    publish_raw(&js, "alerts.opened.ppbad001", b"not msgpack".to_vec()).await?;
    publish(&js, alert("ppweb002", Target::Mem, Level::Warning, AlertState::Resolved)).await?;
    // Warning -> critical: a new label set; the warning one must end.
    publish(&js, alert("ppml0003", Target::Disk, Level::Critical, AlertState::Updated)).await?;
    until_firing(&am, &set(&[("ppdb001", "cpu", "critical"), ("ppml0003", "disk", "critical")])).await?;

    notifier.until_metric("fleetcast_notifier_events_skipped_total{reason=\"undecodable\"}", |v| v == 1.0).await?;
    notifier.until_metric("fleetcast_notifier_active_alerts", |v| v == 2.0).await?;
    notifier.until_metric("fleetcast_notifier_events_total{state=\"opened\"}", |v| v == 3.0).await?;
    let page = notifier.scrape().await?;
    assert!(page.contains("fleetcast_notifier_delivery_latency_seconds_count 5"), "{page}");
    assert!(page.contains(&format!("fleetcast_notifier_alertmanager_up{{alertmanager=\"{}\"}} 1", am.url())), "{page}");
    Ok(())
}

/// A tick's worth of changes at the target size: 1,000 alerts opened at once all reach
/// Alertmanager. Prints the delivery-latency histogram (no timing assertion: the number is
/// for the report, the machine may be loaded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_changes_in_one_tick_all_arrive() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let js = async_nats::jetstream::new(nats.connect().await?);
    create_history(&js).await?;
    let am = Alertmanager::start()?;
    let notifier = Notifier::start(&nats.url(), &[&am], &[]).await?;

    let mut acks = Vec::with_capacity(1000);
    let mut want = std::collections::BTreeSet::new();
    for i in 0..1000 {
        let server = format!("ppweb{i:04}");
        want.insert((server.clone(), "cpu".to_string(), "critical".to_string()));
        let a = alert(&server, Target::Cpu, Level::Critical, AlertState::Opened);
        let subject = schemas::subjects::alert_event(a.state, &a.server);
        let payload = schemas::encode(&schemas::AlertEvent { v: 1, tick_ms: 1, alert: a })?;
        acks.push(js.publish(subject, payload.into()).await?);
    }
    for ack in acks {
        ack.await?;
    }
    until_firing(&am, &want).await?;
    notifier.until_metric("fleetcast_notifier_delivery_latency_seconds_count", |v| v == 1000.0).await?;
    let page = notifier.scrape().await?;
    let buckets: Vec<&str> = page.lines().filter(|l| l.starts_with("fleetcast_notifier_delivery_latency_seconds_bucket")).collect();
    eprintln!("delivery latency of 1,000 alert changes:\n{}", buckets.join("\n"));
    Ok(())
}
