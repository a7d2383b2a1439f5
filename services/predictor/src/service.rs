//! The predictor's stats through async-nats' `service` API: `nats micro info predictor` lists
//! it, `nats micro stats predictor` shows the figures of [`crate::stats::Report`] as the
//! endpoint's custom data, and a request on `$SRV.<name>.stats` returns the same JSON (under
//! `$SRV`, because the predictor's NATS user may only subscribe there and to its inbox).

use anyhow::anyhow;
use async_nats::service::ServiceExt;
use futures::StreamExt;

use crate::stats::Stats;

/// Registers the service and answers `$SRV.<name>.stats` until the returned task is aborted.
pub async fn start(
    client: &async_nats::Client,
    name: &str,
    stats: Stats,
) -> anyhow::Result<(async_nats::service::Service, tokio::task::JoinHandle<()>)> {
    let for_handler = stats.clone();
    let service = client
        .service_builder()
        .description("Fleetcast predictor: batched TFT forecasts of every server")
        .stats_handler(move |_endpoint, _stats| serde_json::to_value(for_handler.report()).unwrap_or_default())
        .start(name, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| anyhow!("starting service {name}: {e}"))?;
    let mut endpoint = service.endpoint(stats_subject(name)).await.map_err(|e| anyhow!("adding the stats endpoint: {e}"))?;
    let task = tokio::spawn(async move {
        while let Some(request) = endpoint.next().await {
            let body = serde_json::to_vec(&stats.report()).unwrap_or_default();
            if let Err(e) = request.respond(Ok(body.into())).await {
                tracing::debug!(error = %e, "stats reply failed");
            }
        }
    });
    Ok((service, task))
}

/// The subject of the stats endpoint.
pub fn stats_subject(name: &str) -> String {
    format!("$SRV.{name}.stats")
}
