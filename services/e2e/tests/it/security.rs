//! The broker's least-privilege users (deploy/nats-auth.conf): each service can do its job and
//! nothing else. A generator cannot forge predictions; the dashboard cannot inject metrics.

use std::time::Duration;

use futures::StreamExt;
use testkit::NatsServer;

use e2e::auth_server;

/// Publishes as `user` on `subject` and reports whether an admin subscriber received it.
async fn delivered(nats: &NatsServer, user: &str, pw: &str, subject: &str) -> anyhow::Result<bool> {
    let admin = fleetbus::connect("test", &nats.url_as("admin", "a-secret")).await?;
    let mut sub = admin.subscribe(subject.to_string()).await?;
    admin.flush().await?;
    let client = fleetbus::connect("test", &nats.url_as(user, pw)).await?;
    client.publish(subject.to_string(), "forged".into()).await?;
    client.flush().await?;
    Ok(tokio::time::timeout(Duration::from_millis(500), sub.next()).await.is_ok())
}

#[tokio::test]
async fn services_cannot_publish_outside_their_permissions() -> anyhow::Result<()> {
    let nats = auth_server()?;
    // Allowed: the generator publishes metrics, the predictor snapshots.
    assert!(delivered(&nats, "generator", "g-secret", "metrics.batch.generator").await?);
    assert!(delivered(&nats, "predictor", "p-secret", "predictions.current").await?);
    // Denied: forging snapshots, alerts or metrics from the wrong service.
    assert!(!delivered(&nats, "generator", "g-secret", "predictions.current").await?);
    assert!(!delivered(&nats, "generator", "g-secret", "alerts.opened.ppdb001").await?);
    assert!(!delivered(&nats, "dashboard", "d-secret", "metrics.batch.generator").await?);
    assert!(!delivered(&nats, "dashboard", "d-secret", "predictions.current").await?);
    Ok(())
}

#[tokio::test]
async fn wrong_password_and_no_password_are_refused() -> anyhow::Result<()> {
    let nats = auth_server()?;
    let wrong = async_nats::ConnectOptions::with_user_and_password("generator".into(), "wrong".into());
    let err = wrong.connect(nats.url()).await.expect_err("a wrong password connected");
    assert!(err.to_string().contains("authorization violation"), "{err}");
    let err = async_nats::connect(nats.url()).await.expect_err("an anonymous client connected");
    assert!(err.to_string().contains("authorization violation"), "{err}");
    Ok(())
}

#[tokio::test]
async fn generator_cannot_read_predictions_or_history() -> anyhow::Result<()> {
    let nats = auth_server()?;
    let gen = fleetbus::connect("test", &nats.url_as("generator", "g-secret")).await?;
    let mut sub = gen.subscribe("predictions.current").await?;
    gen.flush().await?;
    let predictor = fleetbus::connect("test", &nats.url_as("predictor", "p-secret")).await?;
    predictor.publish("predictions.current", "x".into()).await?;
    predictor.flush().await?;
    let got = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
    assert!(!matches!(got, Ok(Some(_))), "the generator read a snapshot");
    Ok(())
}
