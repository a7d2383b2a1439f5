//! Starting and stopping the dashboard: bind (loopback only without a key), spawn the NATS
//! tasks (or the demo fixture), serve, and shut down gracefully.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::config::{effective_listen, Args};
use crate::locks::write;
use crate::state::{AppState, Shared};
use crate::{control, fixture, history, routes, subscribe};

pub struct Running {
    pub addr: SocketAddr,
    pub state: Shared,
    server: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
    /// Writes the operator's settings; on stop it gets to save a last change.
    settings: Option<JoinHandle<()>>,
}

impl Running {
    /// Ends SSE streams and background tasks, lets in-flight requests finish (up to 5 s).
    pub async fn stop(self) {
        self.state.begin_shutdown();
        if tokio::time::timeout(Duration::from_secs(5), self.server).await.is_err() {
            tracing::warn!("open connections did not close within 5 s");
        }
        if let Some(settings) = self.settings {
            // It returns by itself on shutdown, after at most one last write.
            if tokio::time::timeout(Duration::from_secs(3), settings).await.is_err() {
                tracing::warn!("the settings writer did not finish within 3 s");
            }
        }
        for t in self.tasks {
            t.abort();
        }
        if let Some(c) = self.state.nats() {
            // Drain flushes what we published; never wait long for a broker that is gone.
            let _ = tokio::time::timeout(Duration::from_secs(1), c.drain()).await;
        }
    }
}

pub async fn start(args: Args) -> anyhow::Result<Running> {
    let has_key = args.access_key().is_some();
    let (listen, narrowed) = effective_listen(args.listen, has_key);
    if narrowed {
        tracing::warn!(requested = %args.listen, using = %listen, "no DASHBOARD_KEY: refusing to listen beyond loopback");
    }
    if has_key {
        tracing::info!("access key configured: login required, session cookie + CSRF tokens");
    } else {
        tracing::warn!(%listen, "no DASHBOARD_KEY: the dashboard is open to anyone who can reach it, so it listens on loopback only");
    }
    let state = AppState::new(args);
    let mut tasks = Vec::new();
    let mut settings = None;
    if state.args.demo_fixture {
        tracing::info!(servers = state.args.demo_servers, "demo fixture mode: no NATS, generated snapshots");
        tasks.push(tokio::spawn(demo_fixture(state.clone())));
    } else {
        let client = subscribe::connect(&state).await?;
        tasks.push(tokio::spawn(subscribe::watch_link(state.clone(), client.clone())));
        tasks.push(tokio::spawn(subscribe::run(state.clone(), client.clone())));
        tasks.push(tokio::spawn(history::feed::run(state.clone())));
        tasks.push(tokio::spawn(control::probe_loop(state.clone())));
        let st = state.clone();
        settings = Some(tokio::spawn(async move { st.settings.run(client, st.shutdown_signal()).await }));
    }
    let mut metrics_stop = state.shutdown_signal();
    // Stops with the dashboard (its task ends on its own; nothing to join).
    let _metrics = fleetbus::metrics::serve_if(&state.args.metrics, state.metrics_registry.clone(), async move {
        let _ = metrics_stop.wait_for(|stop| *stop).await;
    })
    .await?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = routes::router(state.clone());
    let mut shutdown = state.shutdown_signal();
    let server = tokio::spawn(async move {
        let graceful = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(graceful).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok(Running { addr, state, server, tasks, settings })
}

/// `--demo-fixture`: a week of synthetic history, then a new fixture snapshot every 5 s (and
/// its servers' forecasts in memory, where the live dashboard reads KV `forecasts`).
async fn demo_fixture(state: Shared) {
    let servers = state.args.demo_servers;
    let mut spec = fixture::Spec { servers, seq: 3000, warming: servers / 30, ..Default::default() };
    {
        let mut h = write(&state.history);
        for t in fixture::ticks(&spec, 7 * 288) {
            let _ = h.push_tick(t);
        }
        for e in fixture::alert_events(&fixture::forecasts(&spec), spec.tick_ms) {
            h.push_alert(e);
        }
    }
    let mut shutdown = state.shutdown_signal();
    loop {
        let forecasts = fixture::forecasts(&spec);
        let snapshot = fixture::snapshot_of(&spec, &forecasts);
        state.forecasts.set_fixture(forecasts);
        state.publish(snapshot);
        spec.seq += 1;
        spec.tick_ms += schemas::STEP_MS;
        if let Some(t) = fixture::ticks(&spec, 1).pop() {
            let _ = write(&state.history).push_tick(t);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
