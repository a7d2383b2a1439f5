//! Fleetcast's ingest service: real fleets in. A team's Prometheus pushes node_exporter series
//! by remote-write (`remote_write`, bodies decoded by prost into `prompb`), or ingest pulls them
//! by PromQL with history backfill (`pull`, which can also backfill pushed hosts); either way the
//! series are mapped to the 14 Fleetcast metrics (`mapping`, `promql`), aligned into 5-minute
//! steps (`align`) and published as `MetricsBatch`es through the shared publisher (`sink`,
//! `fleetbus::publish`). Bad input is rejected per sample or request,
//! counted (`stats`) and reported on `metrics.rejected`.

pub mod align;
pub mod config;
pub mod mapping;
pub mod names;
pub mod promapi;
pub mod promjson;
pub mod prompb;
pub mod promql;
pub mod pull;
pub mod remote_write;
pub mod service;
pub mod sink;
pub mod stats;

pub use config::{Config, PullMode};
