//! The dashboard's integration tests: a real nats-server, the service as a process, headless Chromium.
//!
//! One test binary for the crate (each former `tests/*.rs` file is a module here), so the
//! suite links once instead of once per file.

mod cdp;
mod common;

mod assets;
mod auth;
mod browser;
mod live_predictor;
mod nats;
mod partitions;
mod settings;
mod views;
