//! The predictor binary: configuration from flags and environment, logs, then the loop until
//! SIGINT or SIGTERM (the current messages are finished and stored before it exits).

use clap::Parser;
use predictor::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fleetbus::process::init_tracing();
    let config = Config::parse();
    tracing::info!(nats = %fleetbus::redact(&config.nats_url), model = %config.model.display(), "predictor starting");
    predictor::run(config, fleetbus::process::shutdown_signal()).await
}
