//! The generator's integration tests: the simulator, its CLI and export, publishing to a real nats-server.
//!
//! One test binary for the crate (each former `tests/*.rs` file is a module here), so the
//! suite links once instead of once per file.

mod common;

mod cli;
mod export;
mod live;
mod partitions;
mod scenario;
mod simulation;
