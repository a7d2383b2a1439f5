//! Wires the parts of one ingest process: NATS connection and sink, the remote-write server
//! and its idle flush, the pull loop. Exists so `main` stays argument parsing and signals, and
//! an embedding (a test, a bench) can run the same thing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::info;

use crate::align::{AlignConfig, Aligner};
use crate::config::{Config, PullMode};
use crate::promapi::{Prom, PullConfig};
use crate::pull::Puller;
use crate::remote_write::{flush_loop, now_ms, router, PushState};
use crate::sink;
use crate::stats::Stats;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Connect(#[from] fleetbus::ConnectError),
    #[error("listening on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Runs until `stop` turns true.
pub async fn run(cfg: Config, stop: watch::Receiver<bool>) -> Result<(), ServiceError> {
    cfg.check().map_err(ServiceError::Config)?;
    let client = fleetbus::connect("ingest", &cfg.nats_url).await?;
    let stats = Arc::new(Stats::default());
    let (tx, rx) = mpsc::channel(cfg.backlog);
    let sink =
        tokio::spawn(sink::run(client.clone(), cfg.source.clone(), cfg.partitions, now_ms() as u64, rx, stats.clone(), stop.clone()));
    let mut tasks = Vec::new();
    let history = cfg.pull == PullMode::History;
    let (fresh_tx, fresh_rx) = mpsc::unbounded_channel();
    if let Some(addr) = cfg.listen {
        let align = AlignConfig {
            close_after_ms: cfg.close_after.as_millis() as i64,
            idle_close_ms: cfg.idle_close.as_millis() as i64,
            max_hosts: cfg.max_hosts,
            ..AlignConfig::default()
        };
        let state = Arc::new(PushState {
            aligner: Mutex::new(Aligner::new(align)),
            host_label: cfg.host_label.clone(),
            token: cfg.token.clone(),
            max_body: cfg.max_body,
            source: cfg.source.clone(),
            stats: stats.clone(),
            out: tx.clone(),
            fresh: history.then_some(fresh_tx),
        });
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServiceError::Listen { addr, source })?;
        let bound = listener.local_addr().unwrap_or(addr);
        info!(%bound, "remote-write receiver on http://{bound}/api/v1/write");
        let mut stop_http = stop.clone();
        let app = router(state.clone());
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_http.wait_for(|v| *v).await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                tracing::error!("remote-write server: {e}");
            }
        }));
        tasks.push(tokio::spawn(flush_loop(state, stop.clone())));
    }
    if let Some(url) = &cfg.prometheus_url {
        let prom = Prom::new(
            PullConfig {
                url: url.clone(),
                bearer: cfg.prometheus_token.clone(),
                basic: cfg.prometheus_basic_auth.clone(),
                host_label: cfg.host_label.clone(),
                backfill: cfg.backfill,
                delay: cfg.pull_delay,
                timeout: cfg.query_timeout,
                max_hosts: cfg.max_hosts,
                attempts: cfg.query_attempts.max(1),
            },
            stats.clone(),
        )?;
        let puller = Puller::new(prom, &cfg.source, stats.clone());
        if history {
            info!(url = %url, backfill = ?cfg.backfill, "reading the history of each pushed host from the query API");
            tasks.push(tokio::spawn(puller.run_history(fresh_rx, tx.clone(), stop.clone())));
        } else {
            info!(url = %url, backfill = ?cfg.backfill, "pulling from the query API");
            tasks.push(tokio::spawn(puller.run(tx.clone(), stop.clone())));
        }
    }
    drop(tx);
    let subject = match cfg.partitions {
        1 => schemas::subjects::metrics_batch(&cfg.source),
        _ => format!("{}.*", schemas::subjects::metrics_batch(&cfg.source)),
    };
    info!(source = %cfg.source, %subject, partitions = cfg.partitions, "ingest ready");
    for t in tasks {
        let _ = t.await;
    }
    // Every producer is done: the sink drains what is queued (or gives up at `stop`).
    let _ = tokio::time::timeout(Duration::from_secs(10), sink).await;
    let _ = client.flush().await;
    Ok(())
}
