//! Fleetcast predictor library (see main.rs for the binary).

// Pure domain logic (no I/O): risk, alerts, fleet figures, live accuracy.
pub mod accuracy;
pub mod alerts;
pub mod fleet;
pub mod risk;
pub mod thresholds;
