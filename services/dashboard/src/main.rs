//! `dashboard` binary: parses the configuration, starts the server and waits for a signal.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fleetbus::process::init_tracing();
    let args = dashboard::Args::parse();
    let running = dashboard::start(args).await?;
    println!("Fleetcast dashboard: http://{}/", running.addr);
    // `just up` and the end-to-end tests wait for this line.
    tracing::info!(url = %format!("http://{}/", running.addr), "dashboard ready");
    fleetbus::process::shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}
