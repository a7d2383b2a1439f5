//! Alertmanager down while alerts open, change and close: once it is back (a restart, with
//! nothing in memory) it ends with exactly the right set, and no event was acknowledged
//! before it took it. With two Alertmanagers, the one that stayed up gets every change too.

use schemas::{AlertState, Level, Target};
use testkit::alertmanager::Alertmanager;
use testkit::NatsServer;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alertmanager_that_was_down_ends_with_exactly_the_right_set() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let js = async_nats::jetstream::new(nats.connect().await?);
    create_history(&js).await?;
    let mut flaky = Alertmanager::start()?;
    let steady = Alertmanager::start()?;
    let notifier = Notifier::start(&nats.url(), &[&flaky, &steady], &[]).await?;

    publish(&js, alert("ppdb001", Target::Cpu, Level::Critical, AlertState::Opened)).await?;
    publish(&js, alert("ppweb002", Target::Mem, Level::Warning, AlertState::Opened)).await?;
    let before = set(&[("ppdb001", "cpu", "critical"), ("ppweb002", "mem", "warning")]);
    until_firing(&flaky, &before).await?;
    until_firing(&steady, &before).await?;

    flaky.stop();
    publish(&js, alert("ppdb001", Target::Cpu, Level::Critical, AlertState::Resolved)).await?;
    publish(&js, alert("ppweb002", Target::Mem, Level::Critical, AlertState::Updated)).await?;
    publish(&js, alert("ppml0003", Target::Swap, Level::Warning, AlertState::Opened)).await?;
    publish(&js, alert("ppetl004", Target::Load, Level::Warning, AlertState::Opened)).await?;
    publish(&js, alert("ppetl004", Target::Load, Level::Warning, AlertState::Resolved)).await?;
    // The notifier keeps trying the one that is down (and holds the events for it).
    notifier
        .until_metric(&format!("fleetcast_notifier_alerts_sent_total{{alertmanager=\"{}\",result=\"failed\"}}", flaky.url()), |v| v >= 1.0)
        .await?;

    flaky.restart()?;
    let after = set(&[("ppweb002", "mem", "critical"), ("ppml0003", "swap", "warning")]);
    until_firing(&flaky, &after).await?;
    until_firing(&steady, &after).await?;
    notifier.until_metric("fleetcast_notifier_consumer_pending", |v| v == 0.0).await?;
    notifier.until_metric("fleetcast_notifier_active_alerts", |v| v == 2.0).await?;
    Ok(())
}
