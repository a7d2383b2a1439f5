//! `ingest`: parses the configuration, logs, stops on Ctrl-C or SIGTERM; the work is in
//! `ingest::service`.

use clap::Parser;
use tokio::sync::watch;

/// mimalloc instead of glibc's malloc: see the dependency's note in Cargo.toml and the CPU
/// figures in the README's Cost section.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fleetbus::process::init_tracing();
    let cfg = ingest::Config::parse();
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        fleetbus::process::shutdown_signal().await;
        tx.send_replace(true);
    });
    ingest::service::run(cfg, rx).await?;
    Ok(())
}
