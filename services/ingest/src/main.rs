//! `ingest`: parses the configuration, logs, stops on Ctrl-C or SIGTERM; the work is in
//! `ingest::service`.

use clap::Parser;
use tokio::sync::watch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cfg = ingest::Config::parse();
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown requested");
        tx.send_replace(true);
        Ok::<_, std::io::Error>(())
    });
    ingest::service::run(cfg, rx).await?;
    Ok(())
}
