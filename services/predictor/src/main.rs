//! The predictor binary: configuration from flags and environment, logs, then the loop until
//! SIGINT or SIGTERM (the current messages are finished and stored before it exits).

use clap::Parser;
use predictor::Config;

/// mimalloc instead of glibc's malloc: a tick allocates and frees a few small buffers per
/// server (forecast curves, encodings) across threads, and at 100,000 servers glibc's
/// malloc and free were 11 % of the predictor's CPU (`perf record` on `bench_tick`). Side by
/// side (`bench_tick --predictor glibc,mimalloc`, 2 workers, chunk 256): 100,000 servers
/// 26.4 s to 25.1 s a tick (the judging thread's stages 8.4 s to 6.1 s), resident memory
/// 3.97 to 4.01 GB; 10,000 servers 2,223 / 2,264 ms (noise).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fleetbus::process::init_tracing();
    let config = Config::parse();
    tracing::info!(nats = %fleetbus::redact(&config.nats_url), model = %config.model.display(), "predictor starting");
    predictor::run(config, fleetbus::process::shutdown_signal()).await
}
