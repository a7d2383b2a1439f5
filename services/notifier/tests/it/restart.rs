//! The active set lives in JetStream: a notifier killed (SIGKILL) and started again, facing an
//! Alertmanager that forgot everything, re-sends exactly the alerts still open, including what
//! changed while it was down; SIGTERM stops it cleanly. Runs with the project's NATS users, so
//! it also proves the notifier's permissions are enough.

use schemas::{AlertState, Level, Target};
use testkit::alertmanager::Alertmanager;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_notifier_remembers_the_active_alerts() -> anyhow::Result<()> {
    // Each side as its least-privilege user (deploy/nats-auth.conf): the predictor's creates
    // the stream and publishes; the notifier's can only read it.
    let nats = auth_nats()?;
    let predictor = fleetbus::connect("predictor", &url_as(&nats, "predictor")).await?;
    let js = async_nats::jetstream::new(predictor);
    create_history(&js).await?;
    let mut am = Alertmanager::start()?;
    let mut notifier = Notifier::start(&url_as(&nats, "notifier"), &[&am], &[]).await?;

    open_three(&js, &am).await?;
    notifier.until_metric("fleetcast_notifier_consumer_pending", |v| v == 0.0).await?;

    notifier.kill9().await?;
    publish(&js, alert("ppweb002", Target::Mem, Level::Warning, AlertState::Resolved)).await?;
    publish(&js, alert("ppetl004", Target::Cpu, Level::Warning, AlertState::Opened)).await?;
    am.restart()?;
    assert!(firing(&am)?.is_empty(), "a restarted Alertmanager starts empty");

    notifier.restart().await?;
    until_firing(&am, &set(&[("ppdb001", "cpu", "critical"), ("ppml0003", "disk", "warning"), ("ppetl004", "cpu", "warning")])).await?;
    notifier.until_metric("fleetcast_notifier_active_alerts", |v| v == 3.0).await?;
    let status = notifier.terminate().await?;
    assert!(status.success(), "SIGTERM exit {status}");
    Ok(())
}
