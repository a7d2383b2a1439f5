//! Integration tests of `ingest` against real parts: a real nats-server (testkit), the real
//! `ingest` binary, and for the end-to-end cases Debian's real Prometheus 2.42 and
//! node_exporter 1.5 (testkit::prometheus). Every wait is a condition with a generous deadline.

mod backfill;
mod bad_input;
mod common;
mod promdata;
mod prometheus_push;
mod pull_faults;
mod pull_hosts;
mod push_history;
mod steps;
