//! Fleetcast predictor library (see main.rs for the binary).

// Pure domain logic (no I/O): `domain/` (risk, odds, alerts, fleet figures, thresholds), the
// forecasting methods, the choice among them and live accuracy.
pub mod domain;
/// The domain modules at their former paths (`predictor::risk`, ...), which the integration
/// tests still use.
pub use domain::{accuracy, alerts, bands, fleet, methods, risk, rolling, select, thresholds};

// The I/O pipeline: ingest, windows in KV, batched inference, snapshot, publishing, stats.
pub mod backtest;
pub mod chunk;
pub mod config;
pub mod consume;
pub mod features;
pub mod ingest;
pub mod model;
pub mod partitions;
pub mod prom;
pub mod prom_series;
pub mod publish;
pub mod registry;
pub mod resume;
pub mod run;
pub mod saved_state;
pub mod service;
pub mod snapshot;
pub mod stats;
pub mod step;
pub mod store;
pub mod streams;
mod tail;
pub mod tick;
pub mod window;
pub mod workers;

pub use config::Config;
pub use run::{run, start, Running};
