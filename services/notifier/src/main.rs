//! `notifier`: see the crate docs and services/notifier/README.md.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fleetbus::process::init_tracing();
    let cfg = notifier::Config::parse();
    notifier::run(cfg, fleetbus::process::shutdown_signal()).await?;
    Ok(())
}
