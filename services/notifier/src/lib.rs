//! Fleetcast notifier: the predicted alerts on the bus (`alerts.<state>.<server>` in stream
//! `HISTORY`) posted to one or more Alertmanagers (API v2), where routing, grouping, silences
//! and on-call live. Prometheus calls this component the notifier; see README.md.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | flags and environment |
//! | [`event`] | decoding and checking one event; why a bad one is skipped |
//! | [`mapping`] | event -> Alertmanager alert JSON (pure) |
//! | [`active`] | the active set, folded from the stream; what each event changes |
//! | [`source`] | stream, durable consumer, rebuild on start |
//! | [`alertmanager`] | HTTP POSTs to every Alertmanager |
//! | [`metrics`] | the notifier's own `/metrics` |
//! | [`run`] | the loop |

pub mod active;
pub mod alertmanager;
pub mod config;
pub mod event;
pub mod mapping;
pub mod metrics;
pub mod run;
pub mod source;

pub use config::Config;
pub use run::run;
