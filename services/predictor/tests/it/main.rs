//! The predictor's integration tests: a real nats-server, the shipped ONNX model, the service as a process.
//!
//! One test binary for the crate (each former `tests/*.rs` file is a module here), so the
//! suite links once instead of once per file.

mod common;

mod bad_input;
mod continuity;
mod determinism;
mod domain_accuracy;
mod domain_alerts;
mod domain_props;
mod e2e;
mod kv_rebuild;
mod last_part;
mod parity;
mod partitioned;
mod prometheus_scrape;
mod publish_acks;
mod quality_cases;
mod records_restart;
mod restart;
mod seasonal_alerts;
mod takeover;
mod time_rules;
