//! End-to-end tests of the whole stack, one test binary (one link of the release build instead
//! of one per file): the real binaries as processes against a real nats-server, watched from
//! outside. One module per scenario; each test still runs in its own process under nextest.

mod alertmanager_scenario;
mod bad_input;
mod cluster;
mod dashboard_faults;
mod faults;
mod partitioned;
mod production_config;
mod prometheus_services;
mod security;
mod stack;
