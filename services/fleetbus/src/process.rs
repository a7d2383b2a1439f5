//! What every Fleetcast binary does before and around its work: logs to stderr filtered by
//! `RUST_LOG`, and one shutdown signal. Here once so the services cannot drift apart.

use tracing_subscriber::EnvFilter;

/// Installs the `tracing` subscriber: formatted lines on stderr, filtered by `RUST_LOG`
/// (default `info`). Call once, first thing in `main`.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM (what `kill`, systemd and `just down` send). Where
/// SIGTERM cannot be watched, on Ctrl-C alone.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested");
}
