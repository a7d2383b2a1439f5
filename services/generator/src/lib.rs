//! Fleetcast's fleet generator: a seeded simulation of the original system's fleet (profiles,
//! states, calendar, incidents, cascades, per-server behaviours such as leaks and disk fill)
//! that streams MessagePack batches to NATS in live mode and writes the same process to
//! parquet for training.
//!
//! The simulation (`fleet` .. `fleet_sim`) is pure and tested without I/O; `control`, `live`
//! and `export` are the edges (ticks go out through `fleetbus::publish`, shared with `ingest`).

pub mod baseline;
pub mod behaviour;
pub mod calendar;
pub mod cascade;
pub mod control;
pub mod episode;
pub mod export;
pub mod fleet;
pub mod fleet_sim;
pub mod incident;
pub mod live;
pub mod metrics;
pub mod resume;
pub mod scenario;
pub mod seeds;
pub mod server_sim;
pub mod shutdown;
pub mod state;

pub use fleet::{Fleet, FleetError, Server};
pub use fleet_sim::{align, Row, SimConfig, Simulator, Step, Switch};
