//! Fleetcast's operator dashboard.
//!
//! The dashboard keeps the latest forecast snapshot from `predictions.current` (or the merge
//! of every partition's, from `predictions.current.<k>`: `partitions.rs`) in memory and
//! renders every view from it with askama; htmx re-fetches only the visible view's fragment
//! when the server pushes a one-line SSE event per new snapshot. No request ever re-runs
//! inference (the original re-ran its model on every GET). Everything under `views/` and the
//! geometry in `charts.rs` is pure so it is tested without I/O; NATS, HTTP and files stay at
//! the edges (`subscribe.rs`, `history/feed.rs`, `control.rs`, `routes/`).

pub mod alertmanager;
pub mod assets;
pub mod auth;
pub mod charts;
pub mod config;
pub mod control;
pub mod cost;
pub mod fixture;
pub mod forecasts;
pub mod format;
pub mod history;
pub mod locks;
pub mod metrics;
pub mod model_card;
pub mod partitions;
pub mod remediation;
pub mod routes;
pub mod security;
pub mod server;
pub mod settings;
pub mod sse;
pub mod state;
pub mod subscribe;
pub mod testing;
pub mod thresholds;
pub mod views;

pub use config::Args;
pub use server::{start, Running};
pub use state::{AppState, Latest, Shared};
