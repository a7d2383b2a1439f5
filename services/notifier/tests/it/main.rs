//! The notifier against the real things: nats-server with JetStream (testkit), Debian's
//! Alertmanager 0.25 (testkit::alertmanager) and the `notifier` binary as a process. Every
//! wait is a condition polled under a deadline; nothing asserts on timing.

mod common;
mod delivery;
mod outage;
mod restart;
